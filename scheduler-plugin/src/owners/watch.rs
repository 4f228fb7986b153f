//! Watching the owner kinds the cluster serves, as the gang APIs are
//! watched (`crate::watch`): found by discovery, skipped when not served
//! (a CRD not installed) and asked about again every
//! [`crate::watch::REPROBE`], relists applied as a reflector does.
//!
//! Owners are read as `DynamicObject`s and only their gang shape is kept.
//! A watch the API refuses (401/403: the extender's RBAC lacks list/watch
//! of that kind) marks the kind [`Watched::Refused`]: its pods are then
//! placed one by one rather than wait for an owner the extender cannot see.

use std::collections::HashSet;
use std::sync::Arc;

use futures_util::StreamExt;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};

use super::{Owner, OwnerKind, Shape, Watched, key_of};
use crate::app::AppState;
use crate::watch::{REPROBE, serves_resource};

/// One served API version of an owner kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerApi {
    Job,
    JobSet,
    PyTorchJob,
    /// mpi-operator (v0.4+).
    MpiJobV2beta1,
    /// training-operator v1 (its MPIJob; the CRD name is the same as
    /// mpi-operator's, so a cluster has one or the other).
    MpiJobV1,
    LeaderWorkerSet,
}

impl OwnerApi {
    pub const ALL: [OwnerApi; 6] = [
        OwnerApi::Job,
        OwnerApi::JobSet,
        OwnerApi::PyTorchJob,
        OwnerApi::MpiJobV2beta1,
        OwnerApi::MpiJobV1,
        OwnerApi::LeaderWorkerSet,
    ];

    pub fn kind(self) -> OwnerKind {
        match self {
            OwnerApi::Job => OwnerKind::Job,
            OwnerApi::JobSet => OwnerKind::JobSet,
            OwnerApi::PyTorchJob => OwnerKind::PyTorchJob,
            OwnerApi::MpiJobV2beta1 | OwnerApi::MpiJobV1 => OwnerKind::MpiJob,
            OwnerApi::LeaderWorkerSet => OwnerKind::LeaderWorkerSet,
        }
    }

    /// Group-version and plural to look for in discovery.
    pub fn discovery(self) -> (&'static str, &'static str) {
        match self {
            OwnerApi::Job => ("batch/v1", "jobs"),
            OwnerApi::JobSet => ("jobset.x-k8s.io/v1alpha2", "jobsets"),
            OwnerApi::PyTorchJob => ("kubeflow.org/v1", "pytorchjobs"),
            OwnerApi::MpiJobV2beta1 => ("kubeflow.org/v2beta1", "mpijobs"),
            OwnerApi::MpiJobV1 => ("kubeflow.org/v1", "mpijobs"),
            OwnerApi::LeaderWorkerSet => ("leaderworkerset.x-k8s.io/v1", "leaderworkersets"),
        }
    }

    pub fn resource(self) -> ApiResource {
        let (gv, plural) = self.discovery();
        let (group, version) = gv.split_once('/').unwrap_or(("", gv));
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, self.kind().name()), plural)
    }
}

/// Which owner APIs the cluster serves now.
pub async fn detect(client: &Client) -> Vec<(OwnerApi, bool)> {
    let mut out = Vec::with_capacity(OwnerApi::ALL.len());
    for api in OwnerApi::ALL {
        let (gv, plural) = api.discovery();
        out.push((api, serves_resource(client, gv, plural).await));
    }
    out
}

/// The owner APIs to watch (now or once served): MPIJob `v1` only where
/// `v2beta1` is not served (both would be the same objects).
pub fn to_watch(served: &[(OwnerApi, bool)]) -> Vec<(OwnerApi, bool)> {
    let v2 = served.iter().any(|(a, s)| *a == OwnerApi::MpiJobV2beta1 && *s);
    served
        .iter()
        .copied()
        .filter(|(a, _)| !(v2 && *a == OwnerApi::MpiJobV1))
        .collect()
}

/// Applies owner events to the index. A relist replaces the objects as a
/// reflector does: entries stay while the list is read and those it no
/// longer has go at `InitDone`, so members are not told "waiting" between.
pub fn apply_owner_object(
    state: &AppState,
    api: OwnerApi,
    ev: Event<DynamicObject>,
    seen: &mut Option<HashSet<String>>,
) {
    let kind = api.kind();
    let mut idx = state.gang_index_mut();
    let owners = &mut idx.owners;
    match ev {
        Event::Apply(o) | Event::InitApply(o) => {
            let k = key_of(&o);
            let owner = Owner::from_object(kind, &o);
            match &owner.shape {
                Shape::Invalid(why) => {
                    tracing::warn!(kind = kind.name(), owner = %k, reason = %why, "owner object does not parse; its pods wait");
                }
                Shape::Alone(why) => tracing::debug!(kind = kind.name(), owner = %k, reason = %why, "not a gang"),
                Shape::Classes(_) => {}
            }
            owners.insert(kind, k.clone(), owner);
            if let Some(s) = seen.as_mut() {
                s.insert(k);
            }
        }
        Event::Delete(o) => owners.remove(kind, &key_of(&o)),
        Event::Init => *seen = Some(HashSet::new()),
        Event::InitDone => {
            if let Some(s) = seen.take() {
                for k in owners.keys(kind).iter().filter(|k| !s.contains(*k)) {
                    owners.remove(kind, k);
                }
            }
            owners.watched.insert(kind, Watched::Synced);
        }
    }
}

/// Notes a watch error: a refusal before the kind was ever listed makes it
/// [`Watched::Refused`]; anything else is retried with backoff.
fn note_error(state: &AppState, api: OwnerApi, e: &watcher::Error) {
    let refused = match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s)) => s.code == 401 || s.code == 403,
        _ => false,
    };
    let kind = api.kind();
    let mut idx = state.gang_index_mut();
    let now = idx.owners.watched(kind);
    if refused && now != Watched::Synced {
        if now != Watched::Refused {
            tracing::warn!(
                group_version = api.discovery().0,
                kind = kind.name(),
                error = %e,
                "the API refuses to list this owner kind (RBAC?): its pods are placed one by one, not as gangs"
            );
        }
        idx.owners.watched.insert(kind, Watched::Refused);
    } else {
        tracing::warn!(error = %e, watch = api.discovery().0, "watch error");
    }
}

/// Watches one owner API's objects into the index.
pub async fn watch_owner_objects(client: Client, state: Arc<AppState>, api: OwnerApi) {
    {
        let mut idx = state.gang_index_mut();
        let w = &mut idx.owners.watched;
        if w.get(&api.kind()) != Some(&Watched::Synced) {
            w.insert(api.kind(), Watched::Listing);
        }
    }
    let mut seen = None;
    let objects: Api<DynamicObject> = Api::all_with(client, &api.resource());
    let mut s = watcher::watcher(objects, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(ev) = s.next().await {
        match ev {
            Ok(ev) => apply_owner_object(&state, api, ev, &mut seen),
            Err(e) => note_error(&state, api, &e),
        }
    }
}

/// Watches one owner API once the cluster serves it: `served_now` from
/// [`detect`]; while it is not served, asks again every `REPROBE`.
pub async fn watch_owner_api(client: Client, state: Arc<AppState>, api: OwnerApi, served_now: bool) {
    if !served_now {
        loop {
            tokio::time::sleep(REPROBE).await;
            let (gv, plural) = api.discovery();
            if serves_resource(&client, gv, plural).await {
                tracing::info!(?api, "owner API now served; watching it");
                break;
            }
        }
    }
    watch_owner_objects(client, state, api).await;
}

/// Every owner watch (they retry with backoff, so normally never end).
pub async fn run(client: Client, state: Arc<AppState>) {
    // Members wait while discovery runs, rather than go one by one.
    for api in OwnerApi::ALL {
        let mut idx = state.gang_index_mut();
        idx.owners.watched.entry(api.kind()).or_insert(Watched::Listing);
    }
    let served = detect(&client).await;
    {
        let mut idx = state.gang_index_mut();
        for kind in OwnerKind::ALL {
            let any = served.iter().any(|(a, s)| *s && a.kind() == kind);
            if !any && idx.owners.watched(kind) == Watched::Listing {
                idx.owners.watched.insert(kind, Watched::No);
            }
        }
    }
    tracing::info!(?served, "owner APIs served by the cluster");
    futures_util::future::join_all(
        to_watch(&served)
            .into_iter()
            .map(|(api, now)| watch_owner_api(client.clone(), state.clone(), api, now)),
    )
    .await;
}
