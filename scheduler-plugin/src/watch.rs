//! Keeping the view current from the API: watches (kube-rs `watcher`, with
//! relists handled as a reflector does) over Nodes, Pods, scheduler-plugins
//! PodGroups and, where the cluster serves them, the upstream Workload API
//! (`scheduling.k8s.io/v1alpha1` Workloads, `v1alpha2` PodGroups). Groups
//! that are not served are skipped, never fatal.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};

use crate::app::AppState;
use crate::k8s::{self, LeanPod};

/// What the cluster serves of the gang APIs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Served {
    pub pod_groups: bool,
    pub workloads_v1alpha1: bool,
    pub pod_groups_v1alpha2: bool,
}

async fn serves(client: &Client, group_version: &str, plural: &str) -> bool {
    match client.list_api_group_resources(group_version).await {
        Ok(list) => list.resources.iter().any(|r| r.name == plural),
        Err(_) => false,
    }
}

/// Asks the API which gang APIs exist.
pub async fn detect(client: &Client) -> Served {
    Served {
        pod_groups: serves(client, "scheduling.x-k8s.io/v1alpha1", "podgroups").await,
        workloads_v1alpha1: serves(client, "scheduling.k8s.io/v1alpha1", "workloads").await,
        pod_groups_v1alpha2: serves(client, "scheduling.k8s.io/v1alpha2", "podgroups").await,
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

pub fn upstream_pod_group_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("scheduling.k8s.io", "v1alpha2", "PodGroup"),
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
            state.view_mut().upsert_node(k8s::node_input(&n));
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
            let now = state.now();
            match k8s::observation(&p) {
                Some(obs) => state.view_mut().observe_pod(obs, now),
                None => state.view_mut().remove_pod(&uid),
            }
        }
        Event::Delete(p) => state.view_mut().remove_pod(&k8s::pod_uid(&p)),
        Event::Init => *seen = Some(HashSet::new()),
        Event::InitDone => {
            if let Some(s) = seen.take() {
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
    PodGroup,
    Workload,
    UpstreamPodGroup,
}

/// Applies PodGroup / Workload events to the gang index.
pub fn apply_gang_object(state: &AppState, kind: GangKind, ev: Event<DynamicObject>) {
    let mut idx = state.gang_index_mut();
    let upsert = |idx: &mut crate::app::GangIndex, o: &DynamicObject| {
        let k = key(o);
        let spec = o.data.get("spec");
        match kind {
            GangKind::PodGroup => {
                let min = int(spec.and_then(|s| s.get("minMember"))).unwrap_or(1);
                idx.pod_groups.insert(k, min);
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
                    let min = int(g.pointer("/policy/gang/minCount"));
                    groups.insert(name.to_string(), min);
                }
                idx.workloads.insert(k, groups);
            }
            GangKind::UpstreamPodGroup => {
                let min = int(spec.and_then(|s| s.pointer("/schedulingPolicy/gang/minCount")));
                idx.scheduling_groups.insert(k, min);
            }
        }
    };
    let remove = |idx: &mut crate::app::GangIndex, k: &str| match kind {
        GangKind::PodGroup => {
            idx.pod_groups.remove(k);
        }
        GangKind::Workload => {
            idx.workloads.remove(k);
        }
        GangKind::UpstreamPodGroup => {
            idx.scheduling_groups.remove(k);
        }
    };
    match ev {
        Event::Apply(o) | Event::InitApply(o) => upsert(&mut idx, &o),
        Event::Delete(o) => remove(&mut idx, &key(&o)),
        Event::Init => match kind {
            GangKind::PodGroup => idx.pod_groups.clear(),
            GangKind::Workload => idx.workloads.clear(),
            GangKind::UpstreamPodGroup => idx.scheduling_groups.clear(),
        },
        Event::InitDone => {}
    }
}

/// Runs every watch until one ends (they retry with backoff, so normally
/// never). `/healthz` turns ready once nodes and pods are listed.
pub async fn run(client: Client, state: Arc<AppState>) {
    let served = detect(&client).await;
    tracing::info!(?served, "gang APIs served by the cluster");
    state.ready.store(false, Ordering::Relaxed);

    let nodes = {
        let state = state.clone();
        let api: Api<Node> = Api::all(client.clone());
        async move {
            let mut seen = None;
            let mut s = watcher::watcher(api, watcher::Config::default())
                .default_backoff()
                .boxed();
            while let Some(ev) = s.next().await {
                match ev {
                    Ok(ev) => apply_node(&state, ev, &mut seen),
                    Err(e) => tracing::warn!(error = %e, "node watch"),
                }
            }
        }
    };
    let pods = {
        let state = state.clone();
        let api: Api<LeanPod> = Api::all(client.clone());
        async move {
            let mut seen = None;
            let mut s = watcher::watcher(api, watcher::Config::default())
                .default_backoff()
                .boxed();
            while let Some(ev) = s.next().await {
                match ev {
                    Ok(ev) => {
                        let done = matches!(ev, Event::InitDone);
                        apply_pod(&state, ev, &mut seen);
                        if done {
                            state.tick();
                            state.ready.store(true, Ordering::Relaxed);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "pod watch"),
                }
            }
        }
    };
    let mut gang_watches = Vec::new();
    for (on, kind, ar) in [
        (served.pod_groups, GangKind::PodGroup, pod_group_resource()),
        (served.workloads_v1alpha1, GangKind::Workload, workload_resource()),
        (
            served.pod_groups_v1alpha2,
            GangKind::UpstreamPodGroup,
            upstream_pod_group_resource(),
        ),
    ] {
        if !on {
            continue;
        }
        let state = state.clone();
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        gang_watches.push(async move {
            let mut s = watcher::watcher(api, watcher::Config::default())
                .default_backoff()
                .boxed();
            while let Some(ev) = s.next().await {
                match ev {
                    Ok(ev) => apply_gang_object(&state, kind, ev),
                    Err(e) => tracing::warn!(error = %e, "gang object watch"),
                }
            }
        });
    }
    let gangs = futures_util::future::join_all(gang_watches);
    tokio::select! {
        _ = nodes => tracing::error!("node watch ended"),
        _ = pods => tracing::error!("pod watch ended"),
        _ = gangs => tracing::error!("gang watches ended"),
    }
}
