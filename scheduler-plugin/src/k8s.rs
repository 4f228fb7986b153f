//! Kubernetes objects → `core::extender` inputs.
//!
//! Pods are read into [`LeanPod`], which keeps only what the extender uses
//! (and the upstream Workload API's pod fields, whatever the k8s-openapi
//! version): parsing is cheaper and unknown fields are ignored.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use railyard_core::extender::{
    AskError, GangSpec, GpuAsk, GpuProducts, MIG_RESOURCE_PREFIX, NodeInput, PlanRecord, PodAsk, PodObservation,
    Requirement, SINGLE_NUMA_ANNOTATION,
};
use railyard_core::machine::MachineProfile;
use serde::{Deserialize, Serialize};

use crate::app::{GangIndex, PREFERRED_LEVEL_ANNOTATION, REQUIRED_LEVEL_ANNOTATION};
use crate::decision::{Decision, DecisionKey, SIGNATURE_ANNOTATION};
use crate::owners::{self, OwnerRef};

/// Node annotation written by the device plugin: the machine profile as JSON.
pub const TOPOLOGY_ANNOTATION: &str = "railyard.dev/gpu-topology";
/// Pod annotation recorded at bind: GPU indices, comma-separated.
pub const GPUS_ANNOTATION: &str = "railyard.dev/gpus";
/// Written by Railyard's device plugin after kubelet allocated: the GPU
/// indices the pod actually got, comma-separated (see `writeback` in core).
pub const ALLOCATED_ANNOTATION: &str = "railyard.dev/allocated-gpus";
/// A GPU-index list longer than this is not parsed (untrusted input; 64
/// indices fit in well under 1 KiB).
pub const MAX_GPU_LIST_BYTES: usize = 1024;
/// Pod annotation recorded at bind: the gang plan (JSON `PlanRecord`).
pub const GANG_PLAN_ANNOTATION: &str = "railyard.dev/gang-plan";
/// Pod annotation recorded at bind: this member's slot in the plan.
pub const GANG_SLOT_ANNOTATION: &str = "railyard.dev/gang-slot";
/// scheduler-plugins Coscheduling: the pod's PodGroup.
pub const POD_GROUP_LABEL: &str = "scheduling.x-k8s.io/pod-group";
/// Labels giving a member's rank in an explicit group (PodGroup, Workload),
/// first found wins. An inferred gang's ranks come from its owner
/// (`crate::owners`).
pub const RANK_LABELS: [&str; 3] = [
    "batch.kubernetes.io/job-completion-index",
    "training.kubeflow.org/replica-index",
    "jobset.sigs.k8s.io/job-index",
];

/// The parts of a Pod the extender reads.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LeanPod {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: Option<LeanPodSpec>,
    #[serde(default)]
    pub status: Option<LeanPodStatus>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeanPodSpec {
    #[serde(default)]
    pub node_name: Option<String>,
    /// Which scheduler places the pod (`default-scheduler` when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler_name: Option<String>,
    #[serde(default)]
    pub containers: Vec<LeanContainer>,
    #[serde(default)]
    pub init_containers: Option<Vec<LeanContainer>>,
    /// `scheduling.k8s.io/v1alpha1` (1.35): `{name, podGroup, podGroupReplicaKey?}`.
    #[serde(default)]
    pub workload_ref: Option<WorkloadRef>,
    /// `scheduling.k8s.io/v1alpha2` (1.36): `{podGroupName}`.
    #[serde(default)]
    pub scheduling_group: Option<SchedulingGroup>,
    /// Read for the GPU product it allows (`nvidia.com/gpu.product`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<LeanAffinity>,
}

/// `spec.affinity`, only the required node affinity.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeanAffinity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_affinity: Option<LeanNodeAffinity>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LeanNodeAffinity {
    #[serde(
        default,
        rename = "requiredDuringSchedulingIgnoredDuringExecution",
        skip_serializing_if = "Option::is_none"
    )]
    pub required: Option<LeanNodeSelector>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeanNodeSelector {
    #[serde(default)]
    pub node_selector_terms: Vec<LeanSelectorTerm>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeanSelectorTerm {
    #[serde(default)]
    pub match_expressions: Option<Vec<LeanRequirement>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LeanRequirement {
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub operator: String,
    #[serde(default)]
    pub values: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadRef {
    pub name: String,
    #[serde(default)]
    pub pod_group: String,
    /// Which replica of the pod group the pod is in; the group's policy
    /// applies to each replica on its own. Unset (or empty): one replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_group_replica_key: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchedulingGroup {
    pub pod_group_name: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LeanContainer {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub resources: Option<LeanResources>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LeanResources {
    #[serde(default)]
    pub requests: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub limits: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LeanPodStatus {
    #[serde(default)]
    pub phase: Option<String>,
}

impl kube::Resource for LeanPod {
    type DynamicType = ();
    type Scope = kube::core::NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        "Pod".into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        "".into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        "v1".into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        "pods".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// A Kubernetes quantity as a number (`500m` → 0.5, `1Gi` → 2^30, `1e3`),
/// in the API's grammar: an optional sign, digits with at most one point,
/// then one binary (`Ki`…`Ei`) or decimal (`n`…`E`) suffix or a decimal
/// exponent (`e3`, `E-2`). Anything else (`NaN`, `inf`, `0x10`, ``,
/// spaces) is refused with the reason; so is a negative value, which no
/// resource amount may be.
pub fn parse_quantity(q: &str) -> Result<f64, String> {
    if q.is_empty() {
        return Err("is empty, not a quantity".into());
    }
    let (negative, rest) = match q.as_bytes()[0] {
        b'-' => (true, &q[1..]),
        b'+' => (false, &q[1..]),
        _ => (false, q),
    };
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(end);
    if !number.bytes().any(|b| b.is_ascii_digit()) || number.matches('.').count() > 1 {
        return Err("is not a quantity (expected a number like 1, 0.5 or 500m)".into());
    }
    let base: f64 = number
        .parse()
        .map_err(|_| "is not a quantity (expected a number like 1, 0.5 or 500m)".to_string())?;
    let scale = match suffix {
        "" => 1.0,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        _ if suffix.starts_with(['e', 'E']) => {
            let exp = &suffix[1..];
            let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("has a malformed exponent `{suffix}`"));
            }
            let e: i32 = exp
                .parse()
                .map_err(|_| format!("has an exponent out of range `{suffix}`"))?;
            10f64.powi(e)
        }
        _ => {
            return Err(format!(
                "has an unknown suffix `{suffix}` (expected Ki, Mi, Gi, m, k, M, G, … or e<n>)"
            ));
        }
    };
    let v = base * scale;
    if !v.is_finite() {
        return Err("is too large".into());
    }
    if negative && v != 0.0 {
        return Err("is negative".into());
    }
    Ok(v)
}

/// The pod's effective requests: max(sum over containers, each init
/// container), requests else limits. A value that is not a valid quantity
/// is an error naming the resource and the value: dropping it would make a
/// GPU pod look GPU-less and pass CPU-only nodes.
pub fn effective_requests(pod: &LeanPod) -> Result<BTreeMap<String, f64>, AskError> {
    let mut sum: BTreeMap<String, f64> = BTreeMap::new();
    let Some(spec) = &pod.spec else { return Ok(sum) };
    let of = |c: &LeanContainer| -> Result<BTreeMap<String, f64>, AskError> {
        let mut m = BTreeMap::new();
        if let Some(r) = &c.resources {
            for src in [&r.limits, &r.requests].into_iter().flatten() {
                for (k, v) in src {
                    let x = parse_quantity(v).map_err(|reason| AskError::BadQuantity {
                        resource: k.clone(),
                        value: v.clone(),
                        reason,
                    })?;
                    if k.starts_with("nvidia.com/") {
                        device_count(k, v, x)?;
                    }
                    m.insert(k.clone(), x);
                }
            }
        }
        Ok(m)
    };
    for c in &spec.containers {
        for (k, v) in of(c)? {
            *sum.entry(k).or_default() += v;
        }
    }
    for c in spec.init_containers.iter().flatten() {
        for (k, v) in of(c)? {
            let e = sum.entry(k).or_default();
            *e = e.max(v);
        }
    }
    Ok(sum)
}

/// A device resource's value as a count: whole and at most
/// [`MAX_DEVICES_PER_POD`](railyard_core::extender::MAX_DEVICES_PER_POD).
fn device_count(resource: &str, text: &str, v: f64) -> Result<u32, AskError> {
    let bad = |reason: String| AskError::BadQuantity {
        resource: resource.to_string(),
        value: text.to_string(),
        reason,
    };
    if v.fract() != 0.0 {
        return Err(bad("is not a whole number of devices".into()));
    }
    let max = railyard_core::extender::MAX_DEVICES_PER_POD;
    if v > f64::from(max) {
        return Err(bad(format!("is more than the {max} devices a pod may ask for")));
    }
    Ok(v as u32)
}

/// The pod's ask.
pub fn pod_ask(pod: &LeanPod) -> Result<PodAsk, AskError> {
    let req = effective_requests(pod)?;
    let cpu = req
        .get("cpu")
        .map_or(0, |c| (c * 1000.0).round().min(u32::MAX as f64) as u32);
    let mem = req
        .get("memory")
        .map_or(0, |m| (m / 1048576.0).round().min(u32::MAX as f64) as u32);
    let single_numa = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(SINGLE_NUMA_ANNOTATION))
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let gpu: Vec<(&str, i64)> = req
        .iter()
        .filter(|(k, _)| k.starts_with("nvidia.com/"))
        .map(|(k, v)| (k.as_str(), if v.fract() == 0.0 { *v as i64 } else { -1 }))
        .collect();
    let mut ask = PodAsk::from_resources(gpu, cpu, mem, single_numa)?;
    ask.products = gpu_products(pod);
    Ok(ask)
}

/// The GPU products the pod's nodeSelector and required node affinity
/// allow (see `railyard_core::extender::GpuProducts`).
pub fn gpu_products(pod: &LeanPod) -> GpuProducts {
    let Some(spec) = pod.spec.as_ref() else {
        return GpuProducts::ANY;
    };
    let selected = spec
        .node_selector
        .as_ref()
        .and_then(|s| s.get(railyard_core::extender::GPU_PRODUCT_LABEL))
        .map(String::as_str);
    let terms = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| n.required.as_ref())
        .map_or(&[][..], |r| &r.node_selector_terms[..]);
    let reqs = terms.iter().map(|t| {
        t.match_expressions.iter().flatten().map(|r| Requirement {
            key: &r.key,
            operator: &r.operator,
            values: r.values.as_deref().unwrap_or(&[]),
        })
    });
    GpuProducts::from_pod(selected, reqs)
}

pub fn pod_uid(pod: &LeanPod) -> String {
    pod.metadata
        .uid
        .clone()
        .unwrap_or_else(|| format!("{}/{}", namespace(pod), pod.metadata.name.as_deref().unwrap_or("")))
}

pub fn namespace(pod: &LeanPod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or("default")
}

fn annotation<'a>(pod: &'a LeanPod, key: &str) -> Option<&'a str> {
    pod.metadata.annotations.as_ref()?.get(key).map(String::as_str)
}

/// Most slots a gang plan read back from the API may have (a 16,384-member
/// gang is far past any training job; the planner's own gangs are smaller).
pub const MAX_PLAN_SLOTS: usize = 16_384;

/// Why a gang plan recorded on a pod was not trusted. Pod annotations are
/// written by whoever may create or patch the pod, so a plan read back is
/// only rebuilt into a reservation when it is this pod's own decision: see
/// README, "Trust and limits". The label is the metric's `reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanRejected {
    /// The plan or slot annotation does not parse, or the plan is oversized.
    Malformed,
    /// The plan's gang is not the pod's own (another namespace's gang, or a
    /// gang the pod is not a member of).
    NotAMember,
    /// The pod asks for no whole GPU, so it cannot hold a gang slot.
    NoGpus,
    /// The pod's slot is not on its node, or not its GPU count or GPUs.
    SlotMismatch,
    /// No valid signature of this extender's key: the plan was not recorded
    /// by this extender's bind (or by one holding another key).
    Unsigned,
}

impl PlanRejected {
    pub fn label(self) -> &'static str {
        match self {
            PlanRejected::Malformed => "malformed",
            PlanRejected::NotAMember => "not_a_member",
            PlanRejected::NoGpus => "no_gpus",
            PlanRejected::SlotMismatch => "slot_mismatch",
            PlanRejected::Unsigned => "unsigned",
        }
    }
}

/// A pod from the API as the view takes it; `None` when its request is
/// not one the extender understands (it then holds nothing in the view).
/// Recorded gang plans count only when signed with `key`.
pub fn observation(pod: &LeanPod, key: &DecisionKey) -> Option<PodObservation> {
    observation_checked(pod, key).0
}

/// [`observation`], and why a gang plan the pod carries was dropped.
pub fn observation_checked(pod: &LeanPod, key: &DecisionKey) -> (Option<PodObservation>, Option<PlanRejected>) {
    let Ok(ask) = pod_ask(pod) else { return (None, None) };
    let spec = pod.spec.as_ref();
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    let gpus = annotation(pod, GPUS_ANNOTATION).and_then(gpu_list);
    let allocated = annotation(pod, ALLOCATED_ANNOTATION).and_then(gpu_list);
    let node = spec.and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty());
    let (plan, rejected) = match (annotation(pod, GANG_PLAN_ANNOTATION), &node) {
        (Some(text), Some(node)) => match trusted_plan(pod, key, text, node, &ask, gpus.as_deref()) {
            Ok(p) => (Some(p), None),
            Err(why) => (None, Some(why)),
        },
        // A pending pod's plan holds nothing; there is nothing to check.
        _ => (None, None),
    };
    let obs = PodObservation {
        uid: pod_uid(pod),
        node,
        ask,
        finished: matches!(phase, Some("Succeeded" | "Failed")),
        gpus,
        plan,
        allocated,
    };
    (Some(obs), rejected)
}

/// A comma-separated list of GPU indices, as the extender and the device
/// plugin write them; `None` when it does not parse, is empty, is longer
/// than [`MAX_GPU_LIST_BYTES`] or names more than a node may have. The
/// view checks the indices against the node.
pub fn gpu_list(v: &str) -> Option<Vec<u32>> {
    if v.len() > MAX_GPU_LIST_BYTES {
        return None;
    }
    let list = v
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse::<u32>().ok())
        .collect::<Option<Vec<u32>>>()?;
    (!list.is_empty() && list.len() <= railyard_core::extender::MAX_NODE_GPUS).then_some(list)
}

/// The pod's recorded plan and slot, if this extender recorded them (the
/// decision signature verifies under `key`) and they are consistent with
/// the pod: its own gang (so its own namespace), a whole-GPU ask, and a
/// slot on its node with exactly its GPUs. The consistency checks hold even
/// for a signed plan, so a leaked key cannot reach past the pod's own gang.
fn trusted_plan(
    pod: &LeanPod,
    key: &DecisionKey,
    text: &str,
    node: &str,
    ask: &PodAsk,
    gpus: Option<&[u32]>,
) -> Result<(PlanRecord, usize), PlanRejected> {
    let slot_text = annotation(pod, GANG_SLOT_ANNOTATION).unwrap_or("");
    let decision = Decision {
        uid: &pod_uid(pod),
        node,
        gpus: annotation(pod, GPUS_ANNOTATION).unwrap_or(""),
        plan: text,
        slot: slot_text,
    };
    let signed = annotation(pod, SIGNATURE_ANNOTATION).is_some_and(|s| key.verify(&decision, s));
    if !signed {
        return Err(PlanRejected::Unsigned);
    }
    let plan: PlanRecord = serde_json::from_str(text).map_err(|_| PlanRejected::Malformed)?;
    let slot: usize = slot_text.parse().map_err(|_| PlanRejected::Malformed)?;
    let max_gpus = railyard_core::extender::MAX_NODE_GPUS;
    if plan.slots.len() > MAX_PLAN_SLOTS || plan.slots.iter().any(|s| s.gpus.len() > max_gpus) {
        return Err(PlanRejected::Malformed);
    }
    if !gang_ref(pod).is_some_and(|r| r.is(&plan.gang)) {
        return Err(PlanRejected::NotAMember);
    }
    let GpuAsk::Whole(k) = ask.gpu else {
        return Err(PlanRejected::NoGpus);
    };
    let Some(own) = plan.slots.get(slot) else {
        return Err(PlanRejected::SlotMismatch);
    };
    let mut own_gpus = own.gpus.clone();
    own_gpus.sort_unstable();
    own_gpus.dedup();
    if own.node != node || own_gpus.len() != k as usize || own.gpus.len() != own_gpus.len() {
        return Err(PlanRejected::SlotMismatch);
    }
    if let Some(g) = gpus {
        let mut g = g.to_vec();
        g.sort_unstable();
        if g != own_gpus {
            return Err(PlanRejected::SlotMismatch);
        }
    }
    Ok((plan, slot))
}

/// A node as the view takes it. A topology annotation that does not parse
/// is ignored (the node is then scheduled without topology).
pub fn node_input(node: &Node) -> NodeInput {
    node_input_checked(node).0
}

/// [`node_input`], and why the node's topology annotation was refused. The
/// annotation is written by whoever may patch the Node: it is parsed only
/// up to [`limits::MAX_ANNOTATION_BYTES`](railyard_core::machine::limits)
/// and validated against the profile bounds before anything expands it.
pub fn node_input_checked(node: &Node) -> (NodeInput, Option<String>) {
    let meta = &node.metadata;
    let status = node.status.as_ref();
    let alloc = status.and_then(|s| s.allocatable.as_ref());
    let mut allocatable = BTreeMap::new();
    let (mut cpu, mut mem) = (0u64, 0u64);
    if let Some(a) = alloc {
        for (k, v) in a {
            // The API validated these; one that still does not parse is
            // left out (the node then offers none of it).
            let Ok(x) = parse_quantity(&v.0) else { continue };
            if k == "cpu" {
                cpu = (x * 1000.0) as u64;
            } else if k == "memory" {
                mem = (x / 1048576.0) as u64;
            } else if k.starts_with("nvidia.com/") {
                allocatable.insert(k.clone(), x as i64);
            }
        }
    }
    let annotation = meta.annotations.as_ref().and_then(|a| a.get(TOPOLOGY_ANNOTATION));
    let (topology, problem) = match annotation.map(|v| topology_of(v)) {
        None => (None, None),
        Some(Ok(p)) => (Some(Arc::new(p)), None),
        Some(Err(e)) => (None, Some(format!("{TOPOLOGY_ANNOTATION}: {e}"))),
    };
    let input = NodeInput {
        name: meta.name.clone().unwrap_or_default(),
        labels: meta.labels.clone().unwrap_or_default(),
        allocatable,
        cpu_milli: cpu,
        memory_mib: mem,
        topology,
        unschedulable: node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false),
    };
    (input, problem)
}

/// The machine profile of a topology annotation, bounded and validated.
fn topology_of(text: &str) -> Result<MachineProfile, String> {
    let max = railyard_core::machine::limits::MAX_ANNOTATION_BYTES;
    if text.len() > max {
        return Err(format!(
            "{} bytes, more than the {max} an annotation may hold",
            text.len()
        ));
    }
    let p: MachineProfile = serde_json::from_str(text).map_err(|e| format!("not a machine profile: {e}"))?;
    p.validate().map_err(|e| e.to_string())?;
    Ok(p)
}

/// Which gang a pod belongs to, by source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GangRef {
    /// scheduler-plugins PodGroup `<ns>/<name>`.
    PodGroup(String),
    /// Upstream Workload (1.35): a replica of one of its pod groups. Each
    /// replica is a gang of its own, sized by the pod group's `minCount`.
    Workload {
        /// `<ns>/<workload>`.
        workload: String,
        /// The pod group's name in the Workload's `spec.podGroups`.
        pod_group: String,
        /// The pod's `podGroupReplicaKey`; `None` when unset or empty.
        replica: Option<String>,
    },
    /// Upstream PodGroup (1.36): `<ns>/<name>`.
    SchedulingGroup(String),
    /// No group object: the gang is inferred from the workload that owns
    /// the pod (`crate::owners`), `<ns>/<Kind>:<name>…`.
    Owner(OwnerRef),
}

impl GangRef {
    /// The gang id used in reservations and annotations: `<ns>/<name>` for
    /// PodGroups, `<ns>/<workload>/<podGroup>[/<replicaKey>]` for Workloads.
    /// A pod without a replica key keeps the id it had before replica keys
    /// were read, so plans recorded on bound pods stay valid across an
    /// upgrade. The key is a DNS label (no `/`), so ids do not collide.
    pub fn id(&self) -> String {
        match self {
            GangRef::PodGroup(n) | GangRef::SchedulingGroup(n) => n.clone(),
            GangRef::Workload {
                workload,
                pod_group,
                replica: None,
            } => format!("{workload}/{pod_group}"),
            GangRef::Workload {
                workload,
                pod_group,
                replica: Some(key),
            } => format!("{workload}/{pod_group}/{key}"),
            GangRef::Owner(o) => o.ids().swap_remove(0),
        }
    }

    /// Whether `id` is this pod's gang. Only an inferred JobSet gang has
    /// two possible ids (the whole set, or the pod's replicated job, as
    /// the JobSet chooses), both the pod's own.
    pub fn is(&self, id: &str) -> bool {
        match self {
            GangRef::Owner(o) => o.ids().iter().any(|i| i == id),
            _ => self.id() == id,
        }
    }
}

/// The pod's gang: an explicit PodGroup label, Workload reference or
/// scheduling group first, else the owner its labels name.
pub fn gang_ref(pod: &LeanPod) -> Option<GangRef> {
    let ns = namespace(pod);
    if let Some(g) = pod.metadata.labels.as_ref().and_then(|l| l.get(POD_GROUP_LABEL))
        && !g.is_empty()
    {
        return Some(GangRef::PodGroup(format!("{ns}/{g}")));
    }
    let Some(spec) = pod.spec.as_ref() else {
        return owners::owner_of(pod).map(GangRef::Owner);
    };
    if let Some(w) = &spec.workload_ref {
        return Some(GangRef::Workload {
            workload: format!("{ns}/{}", w.name),
            pod_group: w.pod_group.clone(),
            // The API serializes an unset key as absent, but an empty string
            // means the same (the field is optional, a DNS label when set).
            replica: w.pod_group_replica_key.clone().filter(|k| !k.is_empty()),
        });
    }
    if let Some(s) = &spec.scheduling_group {
        return Some(GangRef::SchedulingGroup(format!("{ns}/{}", s.pod_group_name)));
    }
    // No explicit group: the workload that owns the pod, if any.
    owners::owner_of(pod).map(GangRef::Owner)
}

/// The gang spec of a pod (`Ok(None)`: it is scheduled alone), or why it
/// waits (its group object is not known yet).
pub fn gang_spec(pod: &LeanPod, ask: &PodAsk, index: &GangIndex) -> Result<Option<GangSpec>, String> {
    gang_member(pod, ask, index).map(|m| m.map(|(spec, _)| spec))
}

/// [`gang_spec`] and the member's rank in it: from its owner for an
/// inferred gang, else from the [`RANK_LABELS`].
pub fn gang_member(pod: &LeanPod, ask: &PodAsk, index: &GangIndex) -> Result<Option<(GangSpec, Option<u32>)>, String> {
    let Some(r) = gang_ref(pod) else { return Ok(None) };
    let GpuAsk::Whole(k) = ask.gpu else {
        // The planner places whole-GPU members; others go alone.
        return Ok(None);
    };
    let level = |key: &str| annotation(pod, key).map(str::to_string);
    let (id, min, rank, required, preferred) = match &r {
        GangRef::Owner(o) => {
            let Some(m) = index.owners.resolve(o, pod)? else {
                return Ok(None);
            };
            // Members without GPUs are left out of an inferred gang by its
            // owner's pod templates, so they are not subtracted again.
            (m.id, m.size, Some(m.rank), m.required, m.preferred)
        }
        _ => {
            let Some(min) = index.resolve(&r)? else {
                return Ok(None);
            };
            let id = r.id();
            let min = index.gpu_members(&id, min);
            (id, min, rank(pod), None, None)
        }
    };
    if min <= 1 {
        return Ok(None);
    }
    // The pod's own annotation wins over its owner's.
    Ok(Some((
        GangSpec {
            id,
            min_members: min,
            gpus_per_member: k,
            required: level(REQUIRED_LEVEL_ANNOTATION).or(required),
            preferred: level(PREFERRED_LEVEL_ANNOTATION).or(preferred),
            node_selector: pod
                .spec
                .as_ref()
                .and_then(|s| s.node_selector.clone())
                .unwrap_or_default(),
            products: ask.products.clone(),
        },
        rank,
    )))
}

/// The member's rank (its index in the job), if a known label gives it.
pub fn rank(pod: &LeanPod) -> Option<u32> {
    let labels = pod.metadata.labels.as_ref();
    let ann = pod.metadata.annotations.as_ref();
    RANK_LABELS.iter().find_map(|k| {
        labels
            .and_then(|l| l.get(*k))
            .or_else(|| ann.and_then(|a| a.get(*k)))
            .and_then(|v| v.parse().ok())
    })
}

/// True for MIG resources (used in metrics and docs).
pub fn is_mig_resource(name: &str) -> bool {
    name.starts_with(MIG_RESOURCE_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use railyard_core::extender::PodAsk;
    use serde_json::{Value, json};

    fn pod_with(labels: Value, spec_extra: Value) -> LeanPod {
        let mut spec = json!({"containers": [{"name": "c", "resources": {"requests": {"nvidia.com/gpu": "8"}}}]});
        if let (Some(s), Some(extra)) = (spec.as_object_mut(), spec_extra.as_object()) {
            s.extend(extra.clone());
        }
        serde_json::from_value(json!({
            "metadata": {"name": "m", "namespace": "ns", "uid": "u", "labels": labels},
            "spec": spec,
        }))
        .expect("pod")
    }

    fn workload_pod(key: Option<Value>) -> LeanPod {
        let mut r = json!({"name": "train", "podGroup": "workers"});
        if let Some(k) = key {
            r["podGroupReplicaKey"] = k;
        }
        pod_with(json!({}), json!({"workloadRef": r}))
    }

    fn index(min: Option<u32>) -> GangIndex {
        let mut idx = GangIndex::default();
        idx.workloads.insert(
            "ns/train".into(),
            std::collections::HashMap::from([("workers".to_string(), min)]),
        );
        idx
    }

    fn ask() -> PodAsk {
        pod_ask(&workload_pod(None)).expect("ask")
    }

    #[test]
    fn quantities_follow_the_api_grammar() {
        for (q, v) in [
            ("1", 1.0),
            ("500m", 0.5),
            ("1Gi", 1073741824.0),
            ("1.5Ki", 1536.0),
            ("1e3", 1000.0),
            ("1E3", 1000.0),
            ("2E", 2e18),
            ("+4", 4.0),
            ("-0", 0.0),
            (".5", 0.5),
            ("5.", 5.0),
            ("1e-3", 0.001),
        ] {
            assert_eq!(parse_quantity(q), Ok(v), "{q}");
        }
        for (q, why) in [
            ("", "empty"),
            ("-5", "negative"),
            ("NaN", "not a quantity"),
            ("inf", "not a quantity"),
            ("0x10", "unknown suffix `x10`"),
            ("1..2", "not a quantity"),
            ("1e", "malformed exponent"),
            ("1e99999999999", "exponent out of range"),
            ("1e400", "too large"),
            (" 1", "not a quantity"),
            ("1 ", "unknown suffix"),
            ("1KiB", "unknown suffix"),
        ] {
            let e = parse_quantity(q).expect_err(q);
            assert!(e.contains(why), "{q}: {e}");
        }
    }

    #[test]
    fn workload_pod_without_replica_key_keeps_its_gang_id() {
        let r = gang_ref(&workload_pod(None)).expect("gang member");
        assert_eq!(
            r,
            GangRef::Workload {
                workload: "ns/train".into(),
                pod_group: "workers".into(),
                replica: None
            }
        );
        // The id recorded in plans before replica keys were read.
        assert_eq!(r.id(), "ns/train/workers");
        // Empty and null keys are the unset key.
        for k in [json!(""), Value::Null] {
            let r = gang_ref(&workload_pod(Some(k.clone()))).expect("gang member");
            assert_eq!(r.id(), "ns/train/workers", "key {k}");
        }
    }

    #[test]
    fn each_replica_of_a_pod_group_is_its_own_gang() {
        let r0 = gang_ref(&workload_pod(Some(json!("0")))).expect("gang member");
        let r1 = gang_ref(&workload_pod(Some(json!("1")))).expect("gang member");
        assert_eq!(r0.id(), "ns/train/workers/0");
        assert_eq!(r1.id(), "ns/train/workers/1");
        assert_ne!(r0.id(), gang_ref(&workload_pod(None)).expect("member").id());
        // Both replicas take the pod group's minCount.
        let idx = index(Some(3));
        let s0 = gang_spec(&workload_pod(Some(json!("0"))), &ask(), &idx).expect("known");
        let s1 = gang_spec(&workload_pod(Some(json!("1"))), &ask(), &idx).expect("known");
        let (s0, s1) = (s0.expect("a gang"), s1.expect("a gang"));
        assert_eq!((s0.id.as_str(), s0.min_members), ("ns/train/workers/0", 3));
        assert_eq!((s1.id.as_str(), s1.min_members), ("ns/train/workers/1", 3));
    }

    #[test]
    fn replicas_of_a_basic_or_unknown_pod_group() {
        // Basic policy: every replica's pods go alone.
        let p = workload_pod(Some(json!("1")));
        assert_eq!(gang_spec(&p, &ask(), &index(None)), Ok(None));
        // Workload not yet seen: the replica waits, naming the Workload.
        let err = gang_spec(&p, &ask(), &GangIndex::default()).expect_err("waits");
        assert!(err.contains("ns/train"), "{err}");
    }

    #[test]
    fn pod_group_label_and_scheduling_group_ids_are_unchanged() {
        // The scheduler-plugins label wins over a workloadRef.
        let p = pod_with(
            json!({POD_GROUP_LABEL: "pg"}),
            json!({"workloadRef": {"name": "train", "podGroup": "workers", "podGroupReplicaKey": "0"}}),
        );
        let r = gang_ref(&p).expect("member");
        assert_eq!(r, GangRef::PodGroup("ns/pg".into()));
        assert_eq!(r.id(), "ns/pg");
        let p = pod_with(json!({}), json!({"schedulingGroup": {"podGroupName": "workers-0"}}));
        let r = gang_ref(&p).expect("member");
        assert_eq!(r, GangRef::SchedulingGroup("ns/workers-0".into()));
        assert_eq!(r.id(), "ns/workers-0");
        assert_eq!(gang_ref(&pod_with(json!({}), json!({}))), None);
    }

    #[test]
    fn replica_key_survives_a_round_trip_and_is_omitted_when_unset() {
        let p = workload_pod(Some(json!("a")));
        let back: LeanPod = serde_json::from_value(serde_json::to_value(&p).expect("json")).expect("pod");
        assert_eq!(gang_ref(&back).expect("member").id(), "ns/train/workers/a");
        let v = serde_json::to_value(workload_pod(None)).expect("json");
        assert_eq!(
            v["spec"]["workloadRef"],
            json!({"name": "train", "podGroup": "workers"})
        );
    }
}
