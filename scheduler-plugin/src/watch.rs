//! Keeping the view current from the API: watches (kube-rs `watcher`, with
//! relists handled as a reflector does) over Nodes, Pods, scheduler-plugins
//! PodGroups and, where the cluster serves them, the upstream Workload API
//! (`scheduling.k8s.io/v1alpha1` Workloads, `v1alpha2` PodGroups, and
//! `v1beta1` PodGroups, preferred where served), and the workloads gangs
//! are inferred from (`crate::owners::watch`). Groups
//! that are not served are skipped, never fatal, and asked about again
//! every [`REPROBE`]. Each watch is its own function over a `Client`, so
//! tests drive it against a mocked API server.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use railyard_core::extender::WriteBack;

use crate::app::AppState;
use crate::k8s::{self, LeanPod};

/// How often a gang API that is not served (or whose discovery failed) is
/// asked about again: a CRD installed after the extender started, or an API
/// server that was briefly unreachable, is then picked up without a restart.
pub const REPROBE: Duration = Duration::from_secs(60);

/// What the cluster serves of the gang APIs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Served {
    pub pod_groups: bool,
    pub workloads_v1alpha1: bool,
    pub pod_groups_v1alpha2: bool,
    pub pod_groups_v1beta1: bool,
}

/// Whether the API serves `kind`. A 404 (group-version not served) is a
/// plain `false`; other errors are logged, and also `false`.
pub async fn serves(client: &Client, kind: GangKind) -> bool {
    let (group_version, plural) = kind.discovery();
    serves_resource(client, group_version, plural).await
}

/// Whether the API serves `plural` in `group_version` (as [`serves`]).
pub async fn serves_resource(client: &Client, group_version: &str, plural: &str) -> bool {
    match client.list_api_group_resources(group_version).await {
        Ok(list) => list.resources.iter().any(|r| r.name == plural),
        Err(kube::Error::Api(s)) if s.is_not_found() => false,
        Err(e) => {
            tracing::warn!(error = %e, group_version, "discovery failed; asking again later");
            false
        }
    }
}

/// Asks the API which gang APIs exist.
pub async fn detect(client: &Client) -> Served {
    Served {
        pod_groups: serves(client, GangKind::PodGroup).await,
        workloads_v1alpha1: serves(client, GangKind::Workload).await,
        pod_groups_v1alpha2: serves(client, GangKind::UpstreamPodGroup).await,
        pod_groups_v1beta1: serves(client, GangKind::UpstreamPodGroupV1beta1).await,
    }
}

pub fn pod_group_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("scheduling.x-k8s.io", "v1alpha1", "PodGroup"),
        "podgroups",
    )
}

pub fn workload_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("scheduling.k8s.io", "v1alpha1", "Workload"),
        "workloads",
    )
}

pub fn upstream_pod_group_resource(version: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("scheduling.k8s.io", version, "PodGroup"),
        "podgroups",
    )
}

/// Applies node events to the view.
pub fn apply_node(state: &AppState, ev: Event<Node>, seen: &mut Option<HashSet<String>>) {
    match ev {
        Event::Apply(n) | Event::InitApply(n) => {
            if let Some(s) = seen.as_mut()
                && let Some(name) = &n.metadata.name
            {
                s.insert(name.clone());
            }
            let (input, problem) = k8s::node_input_checked(&n);
            if let Some(why) = problem {
                // The node is placed without topology, as a mislabelled one.
                tracing::warn!(node = %input.name, reason = %why, "ignoring the node's topology annotation");
            }
            state.view_mut().upsert_node(input);
        }
        Event::Delete(n) => {
            if let Some(name) = &n.metadata.name {
                state.view_mut().remove_node(name);
            }
        }
        Event::Init => *seen = Some(HashSet::new()),
        Event::InitDone => {
            if let Some(s) = seen.take() {
                let mut v = state.view_mut();
                for name in v.node_names() {
                    if !s.contains(&name) {
                        v.remove_node(&name);
                    }
                }
            }
        }
    }
}

/// Applies pod events to the view.
pub fn apply_pod(state: &AppState, ev: Event<LeanPod>, seen: &mut Option<HashSet<String>>) {
    match ev {
        Event::Apply(p) | Event::InitApply(p) => {
            let uid = k8s::pod_uid(&p);
            if let Some(s) = seen.as_mut() {
                s.insert(uid.clone());
            }
            note_gang_member(state, &p, &uid, true);
            let now = state.now();
            let (obs, rejected) = k8s::observation_checked(&p, state.decision_key());
            if let Some(why) = rejected {
                state.metrics.gang_plan_ignored(why.label());
                tracing::warn!(
                    pod = %uid,
                    reason = why.label(),
                    "ignoring the gang plan recorded on a pod: it is not consistent with the pod"
                );
            }
            match obs {
                Some(obs) => {
                    let out = state.view_mut().observe_pod(obs, now);
                    if out == WriteBack::Invalid {
                        tracing::warn!(pod = %uid, "ignoring the GPUs written back on a pod: not valid for its node or request");
                    }
                    state.metrics.writeback(out);
                }
                None => state.view_mut().remove_pod(&uid),
            }
        }
        Event::Delete(p) => {
            let uid = k8s::pod_uid(&p);
            note_gang_member(state, &p, &uid, false);
            state.view_mut().remove_pod(&uid);
        }
        Event::Init => *seen = Some(HashSet::new()),
        Event::InitDone => {
            if let Some(s) = seen.take() {
                state.gang_index_mut().keep_members(&s);
                let mut v = state.view_mut();
                for (uid, st) in v.pod_uids() {
                    if st == railyard_core::extender::PodState::Bound && !s.contains(&uid) {
                        v.remove_pod(&uid);
                    }
                }
            }
        }
    }
}

/// Keeps the gang index's count of a gang's GPU-less members (an MPIJob
/// launcher) current: they count toward `minMember` but never reach the
/// extender.
fn note_gang_member(state: &AppState, p: &LeanPod, uid: &str, present: bool) {
    let Some(r) = k8s::gang_ref(p) else { return };
    if matches!(r, k8s::GangRef::Owner(_)) {
        // An inferred gang leaves GPU-less members out by its owner's
        // pod templates (`owners`).
        return;
    }
    let finished = p
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|ph| ph == "Succeeded" || ph == "Failed");
    let gpuless = k8s::pod_ask(p).is_ok_and(|a| !a.wants_gpu());
    state
        .gang_index_mut()
        .note_member(&r.id(), uid, present && gpuless && !finished);
}

fn key(o: &DynamicObject) -> String {
    format!(
        "{}/{}",
        o.metadata.namespace.as_deref().unwrap_or("default"),
        o.metadata.name.as_deref().unwrap_or("")
    )
}

fn int(v: Option<&serde_json::Value>) -> Option<u32> {
    v.and_then(serde_json::Value::as_u64)
        .and_then(|x| u32::try_from(x).ok())
}

/// Which gang index a dynamic object feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GangKind {
    /// scheduler-plugins `scheduling.x-k8s.io/v1alpha1` PodGroup.
    PodGroup,
    /// Upstream `scheduling.k8s.io/v1alpha1` Workload (1.35).
    Workload,
    /// Upstream `scheduling.k8s.io/v1alpha2` PodGroup (1.36).
    UpstreamPodGroup,
    /// The same objects as `v1beta1` (1.37; `schedulingPolicy` unchanged per
    /// PROTOCOLS §7). Watched instead of `v1alpha2` where served.
    UpstreamPodGroupV1beta1,
}

impl GangKind {
    pub const ALL: [GangKind; 4] = [
        GangKind::PodGroup,
        GangKind::Workload,
        GangKind::UpstreamPodGroup,
        GangKind::UpstreamPodGroupV1beta1,
    ];

    /// Group-version and plural to look for in discovery.
    pub fn discovery(self) -> (&'static str, &'static str) {
        match self {
            GangKind::PodGroup => ("scheduling.x-k8s.io/v1alpha1", "podgroups"),
            GangKind::Workload => ("scheduling.k8s.io/v1alpha1", "workloads"),
            GangKind::UpstreamPodGroup => ("scheduling.k8s.io/v1alpha2", "podgroups"),
            GangKind::UpstreamPodGroupV1beta1 => ("scheduling.k8s.io/v1beta1", "podgroups"),
        }
    }

    pub fn resource(self) -> ApiResource {
        match self {
            GangKind::PodGroup => pod_group_resource(),
            GangKind::Workload => workload_resource(),
            GangKind::UpstreamPodGroup => upstream_pod_group_resource("v1alpha2"),
            GangKind::UpstreamPodGroupV1beta1 => upstream_pod_group_resource("v1beta1"),
        }
    }

    fn served(self, s: &Served) -> bool {
        match self {
            GangKind::PodGroup => s.pod_groups,
            GangKind::Workload => s.workloads_v1alpha1,
            GangKind::UpstreamPodGroup => s.pod_groups_v1alpha2,
            GangKind::UpstreamPodGroupV1beta1 => s.pod_groups_v1beta1,
        }
    }
}

/// Applies PodGroup / Workload events to the gang index. A relist replaces
/// the objects as a reflector does: entries stay while the list is read and
/// those the list no longer has go at `InitDone`, so gang members are not
/// told "waiting for PodGroup" in between.
pub fn apply_gang_object(
    state: &AppState,
    kind: GangKind,
    ev: Event<DynamicObject>,
    seen: &mut Option<HashSet<String>>,
) {
    let mut idx = state.gang_index_mut();
    match ev {
        Event::Apply(o) | Event::InitApply(o) => {
            let k = key(&o);
            let spec = o.data.get("spec");
            match kind {
                GangKind::PodGroup => {
                    let min = int(spec.and_then(|s| s.get("minMember"))).unwrap_or(1);
                    idx.pod_groups.insert(k.clone(), min);
                }
                GangKind::Workload => {
                    let mut groups = HashMap::new();
                    for g in spec
                        .and_then(|s| s.get("podGroups"))
                        .and_then(|v| v.as_array())
                        .into_iter()
                        .flatten()
                    {
                        let Some(name) = g.get("name").and_then(|v| v.as_str()) else {
                            continue;
                        };
                        // `policy: {basic: {}}` has no minCount: pods go alone.
                        // Replicas (the pods' `podGroupReplicaKey`) are not
                        // listed here; each is a gang of this minCount.
                        groups.insert(name.to_string(), int(g.pointer("/policy/gang/minCount")));
                    }
                    idx.workloads.insert(k.clone(), groups);
                }
                GangKind::UpstreamPodGroup | GangKind::UpstreamPodGroupV1beta1 => {
                    let min = int(spec.and_then(|s| s.pointer("/schedulingPolicy/gang/minCount")));
                    idx.scheduling_groups.insert(k.clone(), min);
                }
            }
            if let Some(s) = seen.as_mut() {
                s.insert(k);
            }
        }
        Event::Delete(o) => remove_gang(&mut idx, kind, &key(&o)),
        Event::Init => *seen = Some(HashSet::new()),
        Event::InitDone => {
            if let Some(s) = seen.take() {
                let known: Vec<String> = match kind {
                    GangKind::PodGroup => idx.pod_groups.keys().cloned().collect(),
                    GangKind::Workload => idx.workloads.keys().cloned().collect(),
                    GangKind::UpstreamPodGroup | GangKind::UpstreamPodGroupV1beta1 => {
                        idx.scheduling_groups.keys().cloned().collect()
                    }
                };
                for k in known.iter().filter(|k| !s.contains(*k)) {
                    remove_gang(&mut idx, kind, k);
                }
            }
        }
    }
}

fn remove_gang(idx: &mut crate::app::GangIndex, kind: GangKind, k: &str) {
    match kind {
        GangKind::PodGroup => {
            idx.pod_groups.remove(k);
        }
        GangKind::Workload => {
            idx.workloads.remove(k);
        }
        GangKind::UpstreamPodGroup | GangKind::UpstreamPodGroupV1beta1 => {
            idx.scheduling_groups.remove(k);
        }
    }
}

/// Feeds every event of `api`'s watch to `apply` (never ends: the watcher
/// relists and retries with backoff; errors are logged under `what`).
async fn drive<K>(api: Api<K>, what: &str, mut apply: impl FnMut(Event<K>))
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    let mut s = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(ev) = s.next().await {
        match ev {
            Ok(ev) => apply(ev),
            Err(e) => tracing::warn!(error = %e, watch = what, "watch error"),
        }
    }
}

/// Marks nodes (0) or pods (1) listed; ready once both are: a pod seen
/// before its node cannot rebuild its gang's reservation, so answering
/// before the nodes are in could plan a gang around members it cannot see.
fn listed(state: &AppState, which: usize) {
    state.listed[which].store(true, Ordering::Relaxed);
    if state.listed.iter().all(|l| l.load(Ordering::Relaxed)) {
        state.tick();
        state.ready.store(true, Ordering::Relaxed);
    }
}

/// Watches Nodes into the view.
pub async fn watch_nodes(client: Client, state: Arc<AppState>) {
    let mut seen = None;
    drive(Api::<Node>::all(client), "nodes", |ev| {
        let done = matches!(ev, Event::InitDone);
        apply_node(&state, ev, &mut seen);
        if done {
            listed(&state, 0);
        }
    })
    .await;
}

/// Watches Pods into the view; `/healthz` turns ready once nodes and pods
/// are listed.
pub async fn watch_pods(client: Client, state: Arc<AppState>) {
    let mut seen = None;
    drive(Api::<LeanPod>::all(client), "pods", |ev| {
        let done = matches!(ev, Event::InitDone);
        apply_pod(&state, ev, &mut seen);
        if done {
            listed(&state, 1);
        }
    })
    .await;
}

/// [`watch_pods`] once the node watch has listed every node. A bound gang
/// member rebuilds its gang's reservation from its recorded plan only when
/// its node is known: pods listed first (a restart where the pod list
/// answers before the node list) would leave the rest of the gang's plan
/// unheld, free for other pods to take.
pub async fn watch_pods_after_nodes(client: Client, state: Arc<AppState>) {
    while !state.listed[0].load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    watch_pods(client, state).await;
}

/// Watches one gang API's objects into the gang index.
pub async fn watch_gang_objects(client: Client, state: Arc<AppState>, kind: GangKind) {
    let mut seen = None;
    let api: Api<DynamicObject> = Api::all_with(client, &kind.resource());
    drive(api, kind.discovery().0, |ev| {
        apply_gang_object(&state, kind, ev, &mut seen)
    })
    .await;
}

/// Watches one gang API once the cluster serves it: `served_now` from
/// [`detect`]; while it is not served, asks again every [`REPROBE`].
pub async fn watch_gang_api(client: Client, state: Arc<AppState>, kind: GangKind, served_now: bool) {
    if !served_now {
        loop {
            tokio::time::sleep(REPROBE).await;
            if serves(&client, kind).await {
                tracing::info!(?kind, "gang API now served; watching it");
                break;
            }
        }
    }
    watch_gang_objects(client, state, kind).await;
}

/// The gang APIs to watch (now or once served): all but `v1alpha2`
/// PodGroups where `v1beta1` serves them.
pub fn to_watch(served: &Served) -> Vec<GangKind> {
    GangKind::ALL
        .into_iter()
        .filter(|k| !(*k == GangKind::UpstreamPodGroup && served.pod_groups_v1beta1))
        .collect()
}

/// Runs every watch until one ends (they retry with backoff, so normally
/// never). `/healthz` turns ready once nodes and pods are listed.
pub async fn run(client: Client, state: Arc<AppState>) {
    // Not ready until nodes and pods are listed, also while discovery runs.
    state.ready.store(false, Ordering::Relaxed);
    for l in &state.listed {
        l.store(false, Ordering::Relaxed);
    }
    let served = detect(&client).await;
    tracing::info!(?served, "gang APIs served by the cluster");
    // v1alpha2 and v1beta1 PodGroups are the same objects: with v1beta1
    // served, v1alpha2 is not watched. (Should both start being served
    // later, both are watched; they feed the same entries, so that only
    // costs a second watch.)
    let gangs = futures_util::future::join_all(
        to_watch(&served)
            .into_iter()
            .map(|kind| watch_gang_api(client.clone(), state.clone(), kind, kind.served(&served))),
    );
    tokio::select! {
        _ = watch_nodes(client.clone(), state.clone()) => tracing::error!("node watch ended"),
        _ = watch_pods_after_nodes(client.clone(), state.clone()) => tracing::error!("pod watch ended"),
        _ = gangs => tracing::error!("gang watches ended"),
        _ = crate::owners::watch::run(client.clone(), state.clone()) => tracing::error!("owner watches ended"),
    }
}
