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
    AskError, GangSpec, GpuAsk, MIG_RESOURCE_PREFIX, NodeInput, PlanRecord, PodAsk, PodObservation,
    SINGLE_NUMA_ANNOTATION,
};
use railyard_core::machine::MachineProfile;
use serde::{Deserialize, Serialize};

use crate::app::{GangIndex, PREFERRED_LEVEL_ANNOTATION, REQUIRED_LEVEL_ANNOTATION};

/// Node annotation written by the device plugin: the machine profile as JSON.
pub const TOPOLOGY_ANNOTATION: &str = "railyard.dev/gpu-topology";
/// Pod annotation recorded at bind: GPU indices, comma-separated.
pub const GPUS_ANNOTATION: &str = "railyard.dev/gpus";
/// Pod annotation recorded at bind: the gang plan (JSON `PlanRecord`).
pub const GANG_PLAN_ANNOTATION: &str = "railyard.dev/gang-plan";
/// Pod annotation recorded at bind: this member's slot in the plan.
pub const GANG_SLOT_ANNOTATION: &str = "railyard.dev/gang-slot";
/// scheduler-plugins Coscheduling: the pod's PodGroup.
pub const POD_GROUP_LABEL: &str = "scheduling.x-k8s.io/pod-group";
/// Labels giving a member's rank, first found wins.
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

/// A Kubernetes quantity as a number (`500m` → 0.5, `1Gi` → 2^30, `1e3`).
pub fn parse_quantity(q: &str) -> Option<f64> {
    let q = q.trim();
    let (num, mult) = match q {
        _ if q.ends_with("Ki") => (&q[..q.len() - 2], 1024f64),
        _ if q.ends_with("Mi") => (&q[..q.len() - 2], 1024f64.powi(2)),
        _ if q.ends_with("Gi") => (&q[..q.len() - 2], 1024f64.powi(3)),
        _ if q.ends_with("Ti") => (&q[..q.len() - 2], 1024f64.powi(4)),
        _ if q.ends_with("Pi") => (&q[..q.len() - 2], 1024f64.powi(5)),
        _ if q.ends_with("Ei") => (&q[..q.len() - 2], 1024f64.powi(6)),
        _ if q.ends_with('n') => (&q[..q.len() - 1], 1e-9),
        _ if q.ends_with('u') => (&q[..q.len() - 1], 1e-6),
        _ if q.ends_with('m') => (&q[..q.len() - 1], 1e-3),
        _ if q.ends_with('k') => (&q[..q.len() - 1], 1e3),
        _ if q.ends_with('M') => (&q[..q.len() - 1], 1e6),
        _ if q.ends_with('G') => (&q[..q.len() - 1], 1e9),
        _ if q.ends_with('T') => (&q[..q.len() - 1], 1e12),
        _ if q.ends_with('P') => (&q[..q.len() - 1], 1e15),
        _ if q.ends_with('E') && !q.contains(['e']) && q.len() > 1 => (&q[..q.len() - 1], 1e18),
        _ => (q, 1.0),
    };
    let v: f64 = num.parse().ok()?;
    (v.is_finite() && v >= 0.0).then_some(v * mult)
}

/// The pod's effective requests: max(sum over containers, each init
/// container), requests else limits.
pub fn effective_requests(pod: &LeanPod) -> BTreeMap<String, f64> {
    let mut sum: BTreeMap<String, f64> = BTreeMap::new();
    let Some(spec) = &pod.spec else { return sum };
    let of = |c: &LeanContainer| -> BTreeMap<String, f64> {
        let mut m = BTreeMap::new();
        if let Some(r) = &c.resources {
            for src in [&r.limits, &r.requests].into_iter().flatten() {
                for (k, v) in src {
                    if let Some(x) = parse_quantity(v) {
                        m.insert(k.clone(), x);
                    }
                }
            }
        }
        m
    };
    for c in &spec.containers {
        for (k, v) in of(c) {
            *sum.entry(k).or_default() += v;
        }
    }
    for c in spec.init_containers.iter().flatten() {
        for (k, v) in of(c) {
            let e = sum.entry(k).or_default();
            *e = e.max(v);
        }
    }
    sum
}

/// The pod's ask.
pub fn pod_ask(pod: &LeanPod) -> Result<PodAsk, AskError> {
    let req = effective_requests(pod);
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
    PodAsk::from_resources(gpu, cpu, mem, single_numa)
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

/// A pod from the API as the view takes it; `None` when its request is
/// not one the extender understands (it then holds nothing in the view).
pub fn observation(pod: &LeanPod) -> Option<PodObservation> {
    let ask = pod_ask(pod).ok()?;
    let spec = pod.spec.as_ref();
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    let gpus = annotation(pod, GPUS_ANNOTATION).and_then(|v| {
        v.split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.trim().parse::<u32>().ok())
            .collect::<Option<Vec<u32>>>()
    });
    let plan = annotation(pod, GANG_PLAN_ANNOTATION)
        .and_then(|v| serde_json::from_str::<PlanRecord>(v).ok())
        .zip(annotation(pod, GANG_SLOT_ANNOTATION).and_then(|s| s.parse::<usize>().ok()));
    Some(PodObservation {
        uid: pod_uid(pod),
        node: spec.and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty()),
        ask,
        finished: matches!(phase, Some("Succeeded" | "Failed")),
        gpus,
        plan,
    })
}

/// A node as the view takes it. A topology annotation that does not parse
/// is ignored (the node is then scheduled without topology).
pub fn node_input(node: &Node) -> NodeInput {
    let meta = &node.metadata;
    let status = node.status.as_ref();
    let alloc = status.and_then(|s| s.allocatable.as_ref());
    let mut allocatable = BTreeMap::new();
    let (mut cpu, mut mem) = (0u64, 0u64);
    if let Some(a) = alloc {
        for (k, v) in a {
            let Some(x) = parse_quantity(&v.0) else { continue };
            if k == "cpu" {
                cpu = (x * 1000.0) as u64;
            } else if k == "memory" {
                mem = (x / 1048576.0) as u64;
            } else if k.starts_with("nvidia.com/") {
                allocatable.insert(k.clone(), x as i64);
            }
        }
    }
    let topology = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(TOPOLOGY_ANNOTATION))
        .and_then(|v| serde_json::from_str::<MachineProfile>(v).ok())
        .filter(|p| p.validate().is_ok())
        .map(Arc::new);
    NodeInput {
        name: meta.name.clone().unwrap_or_default(),
        labels: meta.labels.clone().unwrap_or_default(),
        allocatable,
        cpu_milli: cpu,
        memory_mib: mem,
        topology,
        unschedulable: node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false),
    }
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
        }
    }
}

pub fn gang_ref(pod: &LeanPod) -> Option<GangRef> {
    let ns = namespace(pod);
    if let Some(g) = pod.metadata.labels.as_ref().and_then(|l| l.get(POD_GROUP_LABEL))
        && !g.is_empty()
    {
        return Some(GangRef::PodGroup(format!("{ns}/{g}")));
    }
    let spec = pod.spec.as_ref()?;
    if let Some(w) = &spec.workload_ref {
        return Some(GangRef::Workload {
            workload: format!("{ns}/{}", w.name),
            pod_group: w.pod_group.clone(),
            // The API serializes an unset key as absent, but an empty string
            // means the same (the field is optional, a DNS label when set).
            replica: w.pod_group_replica_key.clone().filter(|k| !k.is_empty()),
        });
    }
    spec.scheduling_group
        .as_ref()
        .map(|s| GangRef::SchedulingGroup(format!("{ns}/{}", s.pod_group_name)))
}

/// The gang spec of a pod (`Ok(None)`: it is scheduled alone), or why it
/// waits (its group object is not known yet).
pub fn gang_spec(pod: &LeanPod, ask: &PodAsk, index: &GangIndex) -> Result<Option<GangSpec>, String> {
    let Some(r) = gang_ref(pod) else { return Ok(None) };
    let GpuAsk::Whole(k) = ask.gpu else {
        // The planner places whole-GPU members; others go alone.
        return Ok(None);
    };
    let Some(min) = index.resolve(&r)? else {
        return Ok(None);
    };
    let id = r.id();
    let min = index.gpu_members(&id, min);
    if min <= 1 {
        return Ok(None);
    }
    let level = |key: &str| annotation(pod, key).map(str::to_string);
    Ok(Some(GangSpec {
        id,
        min_members: min,
        gpus_per_member: k,
        required: level(REQUIRED_LEVEL_ANNOTATION),
        preferred: level(PREFERRED_LEVEL_ANNOTATION),
    }))
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
