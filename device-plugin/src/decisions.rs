//! The extender's device decisions, as the plugin sees them: the pods bound
//! to this node, which of them are waiting for kubelet's admission, and the
//! rule that says when a `GetPreferredAllocation` or `Allocate` call belongs
//! to exactly one of them. Pure: [`PodDecisions::apply_event`] takes kube's
//! watcher events, [`KubeletView`] is what kubelet's PodResources `List`
//! said; the I/O is in `follow` (the handle the gRPC service uses) and
//! `kubepods` (the watch and the patches).
//!
//! ## The problem
//!
//! kubelet's device-plugin calls carry no pod: `GetPreferredAllocation`
//! gets a resource, the free ids and a size. The extender has decided the
//! GPUs at bind (`railyard.dev/gpus`), but the plugin has to guess which
//! bound pod a call is for.
//!
//! ## What HAMi does
//!
//! HAMi's scheduler takes a node lock at bind (a `hami.io/mutex.lock` Node
//! annotation, expiring after 5 minutes), writes the devices and
//! `hami.io/bind-phase: allocating` on the pod and binds; its device plugin,
//! in `Allocate`, asks the API for "the pending pod" of the node (the pod
//! the lock names, or in older versions the first / oldest-bound pod in
//! phase `allocating`), takes the devices from that pod's annotation
//! instead of the ids kubelet passed, writes `bind-phase: success` and
//! releases the lock. Its races, as reported against it: with two pending
//! pods (a lock that expired, a fallback listing that picks another pod,
//! pods kubelet admits in another order than they were bound) one pod gets
//! another's devices, and a pod can name its own devices; an `Allocate` with
//! no pending pod fails the pod; the lock serializes binding on the node and
//! puts an API round trip into every admission.
//!
//! ## What Railyard does instead
//!
//! - No lock: the extender binds freely. The plugin keeps every pod bound
//!   to the node from a watch, in memory; no API call is made on the
//!   admission path.
//! - kubelet decides, the record only advises. `GetPreferredAllocation`
//!   answers with the recorded devices only when they are all among the
//!   ids kubelet offers (and include its must-include ids); `Allocate`
//!   always serves the ids kubelet passed. A wrong or forged record can
//!   choose only among free devices, never a taken one.
//! - A call is matched to a pod only when exactly one pod can be the one
//!   being admitted: bound here, not started, not yet matched, and asking
//!   for this resource and size in its only GPU container. Pods without a
//!   record count too (they compete for the same call). kubelet's
//!   PodResources `List` narrows it further when it answers: kubelet lists
//!   the pod it is admitting (its pod manager adds a pod before admitting
//!   it) without devices of the resource, and lists admitted pods with
//!   theirs, so a pod the watch has not delivered yet, or one kubelet
//!   already admitted, is never taken for the one being admitted.
//! - Two candidates, a multi-container pod, a record that does not fit
//!   (stale: a recorded GPU is no longer free; invalid) all fall back to
//!   the plugin's own rule, counted by reason. Nothing fails an allocation.
//! - What was actually given is written back (`railyard.dev/allocated-gpus`)
//!   after a matched `Allocate`, and for every other GPU pod from
//!   PodResources, so the extender reconciles to what kubelet did even when
//!   the plugin could not tell which pod a call was for.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Container, Pod};
use kube::runtime::watcher;
use railyard_core::resources::{AdvertisedResource, parse_replica_id};
use railyard_kubelet_api::podresources::v1::ListPodResourcesResponse;

/// Pod annotation written by the extender at bind: the GPU indices (NVML
/// index, as in the machine profile) it chose, comma-separated; for a
/// shared pod the one GPU hosting its replicas.
pub const DECISION_ANNOTATION: &str = "railyard.dev/gpus";
/// Pod annotation written by this plugin: the GPU indices kubelet actually
/// allocated to the pod (whole GPUs and replicas; MIG devices are left
/// out), ascending, comma-separated, de-duplicated.
pub const ALLOCATED_ANNOTATION: &str = "railyard.dev/allocated-gpus";
/// The extender's signature over its decision. The key is the extender's,
/// so the plugin cannot verify it and ignores it (see the module docs for
/// why an unverified record is harmless here).
pub const SIGNATURE_ANNOTATION: &str = "railyard.dev/decision-signature";

/// A record longer than this is not parsed (it is untrusted input).
pub const MAX_RECORD_BYTES: usize = 1024;
/// Most GPU indices a record may name.
pub const MAX_RECORD_GPUS: usize = 64;

/// Parses `"0,1,2,3"`: distinct indices, in the record's order.
pub fn parse_gpus(s: &str) -> Result<Vec<u32>, String> {
    if s.len() > MAX_RECORD_BYTES {
        return Err(format!("longer than {MAX_RECORD_BYTES} bytes"));
    }
    let mut out = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        let i: u32 = part.parse().map_err(|_| format!("{part:?} is not a GPU index"))?;
        if out.contains(&i) {
            return Err(format!("GPU {i} named twice"));
        }
        out.push(i);
        if out.len() > MAX_RECORD_GPUS {
            return Err(format!("more than {MAX_RECORD_GPUS} GPUs"));
        }
    }
    Ok(out)
}

/// The write-back value: ascending, de-duplicated, comma-separated.
pub fn format_gpus(indices: impl IntoIterator<Item = u32>) -> String {
    let set: BTreeSet<u32> = indices.into_iter().collect();
    set.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

/// One container's request of one extended resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuRequest {
    pub container: String,
    pub resource: String,
    pub count: u64,
}

/// The extender's record on a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Absent,
    Gpus(Vec<u32>),
    /// Present but unusable (unparsable, too long).
    Invalid,
}

/// A pod bound to this node that asks for extended resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodEntry {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub record: Record,
    /// This plugin's write-back, as the API last showed it.
    pub allocated: Option<String>,
    /// Per container (init containers included) and extended resource.
    pub requests: Vec<GpuRequest>,
    /// kubelet has started it (container statuses posted, or running):
    /// admission, and with it every `Allocate`, is behind it.
    pub started: bool,
}

impl PodEntry {
    /// Requests of the resources in `served`.
    pub fn served_requests<'a>(&'a self, served: &'a BTreeSet<String>) -> impl Iterator<Item = &'a GpuRequest> + 'a {
        self.requests.iter().filter(|r| served.contains(&r.resource))
    }
}

fn container_requests(c: &Container) -> impl Iterator<Item = GpuRequest> + '_ {
    let res = c.resources.as_ref();
    // Extended resources must have requests equal to limits; either names them.
    let mut names: BTreeMap<&str, &str> = BTreeMap::new();
    for m in [
        res.and_then(|r| r.requests.as_ref()),
        res.and_then(|r| r.limits.as_ref()),
    ]
    .into_iter()
    .flatten()
    {
        for (k, v) in m {
            if k.contains('/') {
                names.insert(k, &v.0);
            }
        }
    }
    names.into_iter().filter_map(|(k, v)| {
        let count: u64 = v.trim().parse().ok()?;
        (count > 0).then(|| GpuRequest {
            container: c.name.clone(),
            resource: k.to_string(),
            count,
        })
    })
}

/// The entry for `pod`, or `None` when it holds nothing this plugin cares
/// about: finished (Succeeded / Failed), being deleted, not bound, no
/// extended-resource request.
pub fn entry_of(pod: &Pod) -> Option<PodEntry> {
    let meta = &pod.metadata;
    if meta.deletion_timestamp.is_some() {
        return None;
    }
    let status = pod.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return None;
    }
    let spec = pod.spec.as_ref()?;
    spec.node_name.as_ref().filter(|n| !n.is_empty())?;
    let requests: Vec<GpuRequest> = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .flat_map(container_requests)
        .collect();
    if requests.is_empty() {
        return None;
    }
    let annotations = meta.annotations.as_ref();
    let record = match annotations.and_then(|a| a.get(DECISION_ANNOTATION)) {
        None => Record::Absent,
        Some(v) => parse_gpus(v).map(Record::Gpus).unwrap_or(Record::Invalid),
    };
    let started = phase == Some("Running")
        || status.is_some_and(|s| {
            s.container_statuses.as_ref().is_some_and(|c| !c.is_empty())
                || s.init_container_statuses.as_ref().is_some_and(|c| !c.is_empty())
        });
    Some(PodEntry {
        uid: meta.uid.clone()?,
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone()?,
        record,
        allocated: annotations.and_then(|a| a.get(ALLOCATED_ANNOTATION)).cloned(),
        requests,
        started,
    })
}

/// kubelet's PodResources `List`: per pod (namespace, name), the device ids
/// it holds per resource (empty while it is being admitted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KubeletView {
    pub pods: BTreeMap<(String, String), BTreeMap<String, Vec<String>>>,
}

impl KubeletView {
    pub fn from_list(resp: &ListPodResourcesResponse) -> KubeletView {
        let mut pods = BTreeMap::new();
        for p in &resp.pod_resources {
            let e: &mut BTreeMap<String, Vec<String>> = pods.entry((p.namespace.clone(), p.name.clone())).or_default();
            for c in &p.containers {
                for d in c.devices.iter().filter(|d| !d.device_ids.is_empty()) {
                    e.entry(d.resource_name.clone())
                        .or_default()
                        .extend(d.device_ids.iter().cloned());
                }
            }
        }
        KubeletView { pods }
    }

    /// Listed, and holding no device of `resource` yet.
    fn admitting(&self, e: &PodEntry, resource: &str) -> bool {
        self.pods
            .get(&(e.namespace.clone(), e.name.clone()))
            .is_some_and(|r| !r.contains_key(resource))
    }
}

/// Why a call was not answered from a record. `as_str` is the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// No pod can be the one being admitted, or the one that can has no
    /// record (not placed by the extender).
    NoRecord,
    /// More than one pod can be the one being admitted.
    Ambiguous,
    /// The one pod asks for GPU resources in more than one container (or
    /// for more than one GPU resource): the call may be for any of them.
    MultiContainer,
    /// The record does not parse, or does not fit the request (a whole-GPU
    /// record of another size, a shared record of several GPUs).
    InvalidRecord,
    /// A recorded device is not among the free ones kubelet offers (or a
    /// must-include id is not on the recorded GPUs).
    Stale,
}

impl Fallback {
    pub fn as_str(self) -> &'static str {
        match self {
            Fallback::NoRecord => "no_record",
            Fallback::Ambiguous => "ambiguous",
            Fallback::MultiContainer => "multi_container",
            Fallback::InvalidRecord => "invalid_record",
            Fallback::Stale => "stale",
        }
    }
}

/// The pods bound to this node, from a pod watch (field selector
/// `spec.nodeName=<node>`), plus the ones already matched to an `Allocate`.
#[derive(Debug, Clone, Default)]
pub struct PodDecisions {
    pods: BTreeMap<String, PodEntry>,
    /// Matched to an `Allocate`, or listed by kubelet with devices: admitted,
    /// whatever the watch still says. Kept until the pod goes.
    consumed: BTreeSet<String>,
    /// Entries of a (re)list in progress, swapped in at its end.
    relist: Option<BTreeMap<String, PodEntry>>,
    /// Bumped on every change, for whoever waits on the state.
    version: u64,
}

impl PodDecisions {
    /// Applies one watcher event. A (re)list replaces the state only when it
    /// ends, so calls in between see the last complete state.
    pub fn apply_event(&mut self, ev: watcher::Event<Pod>) {
        match ev {
            watcher::Event::Init => self.relist = Some(BTreeMap::new()),
            watcher::Event::InitApply(p) => {
                if let (Some(r), Some(e)) = (self.relist.as_mut(), entry_of(&p)) {
                    r.insert(e.uid.clone(), e);
                }
            }
            watcher::Event::InitDone => {
                if let Some(r) = self.relist.take() {
                    self.pods = r;
                    let pods = &self.pods;
                    self.consumed.retain(|u| pods.contains_key(u));
                }
            }
            watcher::Event::Apply(p) => match (entry_of(&p), p.metadata.uid) {
                (Some(e), _) => self.upsert(e),
                (None, Some(uid)) => self.remove(&uid),
                (None, None) => {}
            },
            watcher::Event::Delete(p) => {
                if let Some(uid) = p.metadata.uid {
                    self.remove(&uid);
                }
            }
        }
        self.version += 1;
    }

    fn upsert(&mut self, e: PodEntry) {
        self.pods.insert(e.uid.clone(), e);
    }

    fn remove(&mut self, uid: &str) {
        self.pods.remove(uid);
        self.consumed.remove(uid);
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn len(&self) -> usize {
        self.pods.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }

    pub fn get(&self, uid: &str) -> Option<&PodEntry> {
        self.pods.get(uid)
    }

    /// The entry of `namespace/name`.
    pub fn by_name(&self, namespace: &str, name: &str) -> Option<&PodEntry> {
        self.pods.values().find(|e| e.namespace == namespace && e.name == name)
    }

    /// Every entry, by UID.
    pub fn entries(&self) -> impl Iterator<Item = &PodEntry> {
        self.pods.values()
    }

    /// The pod is admitted: no later call is for it.
    pub fn consume(&mut self, uid: &str) {
        if self.pods.contains_key(uid) && self.consumed.insert(uid.to_string()) {
            self.version += 1;
        }
    }

    pub fn is_consumed(&self, uid: &str) -> bool {
        self.consumed.contains(uid)
    }

    /// Whether `e` may be the pod kubelet is admitting for `resource`.
    fn admitting(&self, e: &PodEntry, resource: &str, kubelet: Option<&KubeletView>) -> bool {
        if self.consumed.contains(&e.uid) || e.started {
            return false;
        }
        match kubelet {
            Some(k) => k.admitting(e, resource),
            None => e.allocated.is_none(),
        }
    }

    /// The pods that may be the one a call for `size` of `resource` is for.
    pub fn candidates(&self, resource: &str, size: u64, kubelet: Option<&KubeletView>) -> Vec<&PodEntry> {
        self.pods
            .values()
            .filter(|e| e.requests.iter().any(|r| r.resource == resource && r.count == size))
            .filter(|e| self.admitting(e, resource, kubelet))
            .collect()
    }

    /// The one pod a call for `size` of `resource` is for, when exactly one
    /// can be and it has a single request of the `served` resources.
    pub fn match_call(
        &self,
        resource: &str,
        size: u64,
        served: &BTreeSet<String>,
        kubelet: Option<&KubeletView>,
    ) -> Result<&PodEntry, Fallback> {
        let c = self.candidates(resource, size, kubelet);
        match c.as_slice() {
            [] => Err(Fallback::NoRecord),
            [one] if one.served_requests(served).count() > 1 => Err(Fallback::MultiContainer),
            [one] => Ok(one),
            _ => Err(Fallback::Ambiguous),
        }
    }
}

/// Whether `r` is whole GPUs or replicas (MIG devices are not followed).
pub fn followable(r: &AdvertisedResource) -> bool {
    r.devices.iter().all(|d| d.device.mig_profile.is_none())
}

/// The ids the record asks for, out of `available`: the UUIDs (or whatever
/// ids the resource advertises) of the recorded GPUs, or `size` free
/// replicas of the one recorded GPU, must-include ids first.
pub fn recorded_ids(
    r: &AdvertisedResource,
    gpus: &[u32],
    available: &[String],
    must: &[String],
    size: usize,
) -> Result<Vec<String>, Fallback> {
    let replicated = r.devices.iter().any(|d| d.replica.is_some());
    let avail: BTreeSet<&str> = available.iter().map(String::as_str).collect();
    let gpu_of: BTreeMap<&str, u32> = r
        .devices
        .iter()
        .filter(|d| d.device.mig_profile.is_none())
        .map(|d| (d.id.as_str(), d.device.gpu))
        .collect();
    if must.iter().any(|m| !avail.contains(m.as_str())) {
        return Err(Fallback::Stale);
    }
    let mut out: Vec<String> = Vec::new();
    for m in must {
        if !gpu_of.get(m.as_str()).is_some_and(|g| gpus.contains(g)) {
            return Err(Fallback::Stale);
        }
        if !out.contains(m) {
            out.push(m.clone());
        }
    }
    if replicated {
        let [gpu] = gpus else {
            return Err(Fallback::InvalidRecord);
        };
        for a in available {
            if out.len() == size {
                break;
            }
            if gpu_of.get(a.as_str()) == Some(gpu) && !out.contains(a) {
                out.push(a.clone());
            }
        }
    } else {
        if gpus.len() != size {
            return Err(Fallback::InvalidRecord);
        }
        for g in gpus {
            let Some(d) = r
                .devices
                .iter()
                .find(|d| d.device.gpu == *g && d.device.mig_profile.is_none() && d.replica.is_none())
            else {
                return Err(Fallback::Stale);
            };
            if !avail.contains(d.id.as_str()) {
                return Err(Fallback::Stale);
            }
            if !out.contains(&d.id) {
                out.push(d.id.clone());
            }
        }
    }
    if out.len() != size {
        return Err(Fallback::Stale);
    }
    Ok(out)
}

/// GPU indices behind device ids: the advertised resources' ids first,
/// else a GPU UUID (possibly `<uuid>::<n>`), so replicas of an earlier
/// config still map. MIG devices map to nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceMap {
    /// Every resource name served now, MIG ones included.
    pub served: BTreeSet<String>,
    /// Resource names whose devices are written back (every whole-GPU or
    /// replica resource served so far).
    pub written: BTreeSet<String>,
    ids: BTreeMap<String, u32>,
    uuids: BTreeMap<String, u32>,
}

impl DeviceMap {
    /// `gpus`: (UUID, index) of every physical GPU.
    pub fn new(resources: &[AdvertisedResource], gpus: impl IntoIterator<Item = (String, u32)>) -> DeviceMap {
        let mut m = DeviceMap {
            uuids: gpus.into_iter().collect(),
            ..DeviceMap::default()
        };
        m.add(resources);
        m
    }

    /// Adopts the resources of a newly applied config; names served before
    /// stay written back (their pods still hold devices).
    pub fn update(&mut self, resources: &[AdvertisedResource], gpus: impl IntoIterator<Item = (String, u32)>) {
        self.ids.clear();
        self.served.clear();
        self.uuids = gpus.into_iter().collect();
        self.add(resources);
    }

    fn add(&mut self, resources: &[AdvertisedResource]) {
        for r in resources {
            self.served.insert(r.name.clone());
            if followable(r) {
                self.written.insert(r.name.clone());
                for d in &r.devices {
                    self.ids.insert(d.id.clone(), d.device.gpu);
                }
            }
        }
    }

    pub fn gpu_of(&self, id: &str) -> Option<u32> {
        self.ids
            .get(id)
            .or_else(|| self.uuids.get(parse_replica_id(id).0))
            .copied()
    }

    /// The write-back value for what kubelet lists for a pod, or `None`
    /// when it holds no whole GPU or replica.
    pub fn allocated(&self, devices: &BTreeMap<String, Vec<String>>) -> Option<String> {
        let gpus: BTreeSet<u32> = devices
            .iter()
            .filter(|(r, _)| self.written.contains(*r))
            .flat_map(|(_, ids)| ids.iter().filter_map(|id| self.gpu_of(id)))
            .collect();
        (!gpus.is_empty()).then(|| format_gpus(gpus))
    }
}

/// A write-back to send: `value` on pod `uid` (`namespace/name`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteBack {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub value: String,
    /// `allocate` or `reconcile` (the metric label).
    pub source: &'static str,
}

/// What PodResources shows that the API does not: every pod of `state`
/// that kubelet lists with GPUs whose write-back is missing or different.
/// Pods listed with devices are admitted, so they are consumed as well.
pub fn reconcile(state: &mut PodDecisions, view: &KubeletView, map: &DeviceMap) -> Vec<WriteBack> {
    let mut out = Vec::new();
    for ((ns, name), devices) in &view.pods {
        let Some(value) = map.allocated(devices) else { continue };
        let Some(e) = state.by_name(ns, name) else { continue };
        let uid = e.uid.clone();
        if e.allocated.as_deref() != Some(value.as_str()) {
            out.push(WriteBack {
                uid: uid.clone(),
                namespace: ns.clone(),
                name: name.clone(),
                value,
                source: "reconcile",
            });
        }
        state.consume(&uid);
    }
    out
}

#[cfg(test)]
#[path = "decisions_tests.rs"]
mod tests;
