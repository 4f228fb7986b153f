//! Gangs inferred from the workload that owns the pods, for users who do
//! not write a PodGroup or Workload: an Indexed Job, a JobSet, a Kubeflow
//! PyTorchJob or MPIJob, a LeaderWorkerSet.
//!
//! A pod names its owner by the labels its controller sets (and, for Jobs,
//! its controller ownerReference); the owner object, watched where the
//! cluster serves its API, gives the gang's size and the rank order. Each
//! kind's labels and spec are read in its own file; what they share is the
//! shape of a gang: ordered member [`Class`]es (a PyTorchJob's master then
//! its workers, a JobSet's replicated jobs in spec order), of which the
//! classes whose pods ask for whole GPUs are the gang, ranked class by
//! class. Pods and owner objects are untrusted: a label or field that does
//! not parse is an error naming it, never a panic.
//!
//! Precedence (README, "Submitting training jobs"): an explicit PodGroup or
//! Workload reference wins ([`crate::k8s::gang_ref`] looks at those first);
//! [`GANG_ANNOTATION`] `"false"` on the owner or the pod opts out.

pub mod job;
pub mod jobset;
pub mod kubeflow;
pub mod lws;
pub mod watch;

use std::collections::{BTreeMap, HashMap, VecDeque};

use kube::api::DynamicObject;
use railyard_core::extender::{GpuAsk, PodAsk};
use serde_json::Value;

use crate::app::{PREFERRED_LEVEL_ANNOTATION, REQUIRED_LEVEL_ANNOTATION};
use crate::k8s::{self, LeanPod};

/// Owner or pod annotation: `"false"` places the pods one by one, as if no
/// gang were inferred; `"true"` (or absent) infers it.
pub const GANG_ANNOTATION: &str = "railyard.dev/gang";
/// JobSet annotation: `jobset` (default) makes the whole JobSet one gang,
/// `replicated-job` makes each replicated job its own.
pub const GANG_SCOPE_ANNOTATION: &str = "railyard.dev/gang-scope";
/// Deleted owners remembered, so their remaining pods are told why they
/// wait (bounded: the reason is a courtesy, not state).
const TOMBSTONES: usize = 4096;

/// A workload kind whose pods form a gang.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OwnerKind {
    /// `batch/v1` Job in `Indexed` completion mode.
    Job,
    /// `jobset.x-k8s.io` JobSet.
    JobSet,
    /// `kubeflow.org/v1` PyTorchJob (training-operator).
    PyTorchJob,
    /// `kubeflow.org` MPIJob (`v2beta1` of mpi-operator, `v1` of
    /// training-operator).
    MpiJob,
    /// `leaderworkerset.x-k8s.io/v1` LeaderWorkerSet.
    LeaderWorkerSet,
}

impl OwnerKind {
    pub const ALL: [OwnerKind; 5] = [
        OwnerKind::Job,
        OwnerKind::JobSet,
        OwnerKind::PyTorchJob,
        OwnerKind::MpiJob,
        OwnerKind::LeaderWorkerSet,
    ];

    /// The kind as the API names it (and gang ids carry it).
    pub fn name(self) -> &'static str {
        match self {
            OwnerKind::Job => "Job",
            OwnerKind::JobSet => "JobSet",
            OwnerKind::PyTorchJob => "PyTorchJob",
            OwnerKind::MpiJob => "MPIJob",
            OwnerKind::LeaderWorkerSet => "LeaderWorkerSet",
        }
    }

    pub fn group(self) -> &'static str {
        match self {
            OwnerKind::Job => "batch",
            OwnerKind::JobSet => "jobset.x-k8s.io",
            OwnerKind::PyTorchJob | OwnerKind::MpiJob => "kubeflow.org",
            OwnerKind::LeaderWorkerSet => "leaderworkerset.x-k8s.io",
        }
    }

    /// Reads an owner object's gang shape.
    fn shape(self, o: &DynamicObject) -> Shape {
        let spec = o.data.get("spec").unwrap_or(&Value::Null);
        match self {
            OwnerKind::Job => job::shape(spec),
            OwnerKind::JobSet => jobset::shape(spec),
            OwnerKind::PyTorchJob => kubeflow::shape(spec, kubeflow::PYTORCH),
            OwnerKind::MpiJob => kubeflow::shape(spec, kubeflow::MPI),
            OwnerKind::LeaderWorkerSet => lws::shape(spec),
        }
    }
}

/// The owner a pod names: which object, and which part of it for kinds
/// with several gangs per object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerRef {
    pub kind: OwnerKind,
    /// `<ns>/<name>` of the owner object.
    pub key: String,
    /// JobSet: the replicated job; LeaderWorkerSet: the group index. `None`
    /// when the pod lacks the label (an error when resolved).
    pub part: Option<String>,
    /// JobSet: the restart attempt, so pods of a restarted JobSet do not
    /// join the gang of the pods it is replacing.
    pub attempt: Option<String>,
    /// The owner's uid as the pod records it (controller ownerReference,
    /// or JobSet's uid label), checked against the object's.
    pub uid: Option<String>,
}

impl OwnerRef {
    /// The gang id: `<ns>/<Kind>:<name>[@<attempt>][/<part>]`. Names and
    /// namespaces cannot hold `:`, `@` or `/`, so these never collide with
    /// PodGroup (`<ns>/<name>`) or Workload (`<ns>/<w>/<group>`) ids.
    pub fn id(&self, with_part: bool) -> String {
        let (ns, name) = self.key.split_once('/').unwrap_or(("default", &self.key));
        let mut id = format!("{ns}/{}:{name}", self.kind.name());
        if let Some(a) = &self.attempt {
            id.push('@');
            id.push_str(a);
        }
        if with_part && let Some(p) = &self.part {
            id.push('/');
            id.push_str(p);
        }
        id
    }

    /// The ids the pod's gang may have (a JobSet's whole-set and
    /// per-replicated-job gangs: which one applies is the JobSet's choice).
    pub fn ids(&self) -> Vec<String> {
        match self.kind {
            OwnerKind::JobSet => vec![self.id(false), self.id(true)],
            OwnerKind::LeaderWorkerSet => vec![self.id(true)],
            _ => vec![self.id(false)],
        }
    }
}

fn label<'a>(pod: &'a LeanPod, key: &str) -> Option<&'a str> {
    pod.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

fn annotation<'a>(pod: &'a LeanPod, key: &str) -> Option<&'a str> {
    pod.metadata.annotations.as_ref()?.get(key).map(String::as_str)
}

/// A label, or the annotation of the same key (controllers set both for
/// some keys; the label can be missing on older versions).
fn label_or_annotation<'a>(pod: &'a LeanPod, key: &str) -> Option<&'a str> {
    label(pod, key).or_else(|| annotation(pod, key))
}

/// The pod's controller ownerReference as `(apiVersion, kind, name, uid)`.
fn controller(pod: &LeanPod) -> Option<(&str, &str, &str, &str)> {
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
        .map(|r| (r.api_version.as_str(), r.kind.as_str(), r.name.as_str(), r.uid.as_str()))
}

/// The owner the pod's labels and ownerReferences name, if any: JobSet and
/// LeaderWorkerSet labels first (their pods are also owned by a Job or a
/// StatefulSet), then Kubeflow's (an MPIJob launcher is owned by a Job),
/// then a controlling batch/v1 Job.
pub fn owner_of(pod: &LeanPod) -> Option<OwnerRef> {
    let ns = k8s::namespace(pod);
    jobset::owner(pod, ns)
        .or_else(|| lws::owner(pod, ns))
        .or_else(|| kubeflow::owner(pod, ns))
        .or_else(|| job::owner(pod, ns))
}

/// One class of members, in rank order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Class {
    /// The replica type, replicated job or role, as the owner names it.
    pub name: String,
    pub count: u32,
    /// Whole GPUs each member asks for; `None` when it asks for none (or
    /// for a share or a MIG slice): such members are not in the gang.
    pub gpus: Option<u32>,
    /// Pods per Job of a JobSet's replicated job (its `parallelism`); 1
    /// for other kinds.
    pub stride: u32,
}

/// What an owner object says about its pods' gang.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// The pods go one by one, and why (a Job with `completions !=
    /// parallelism`, a LeaderWorkerSet that starts workers late).
    Alone(String),
    /// The object does not parse, and where: its pods wait, told why (the
    /// API validated it, so this is rare, and placing them one by one
    /// would break the gang they were meant to be).
    Invalid(String),
    /// The members, in rank order.
    Classes(Vec<Class>),
}

/// A pod template's whole-GPU ask: `Ok(None)` when it asks none; `Err`
/// names the field that does not parse.
pub(crate) fn template_gpus(template: Option<&Value>, what: &str) -> Result<Option<u32>, String> {
    let Some(t) = template else { return Ok(None) };
    let pod: LeanPod = serde_json::from_value(t.clone()).map_err(|e| format!("{what}: not a pod template: {e}"))?;
    let ask: PodAsk = k8s::pod_ask(&pod).map_err(|e| format!("{what}: {e}"))?;
    Ok(match ask.gpu {
        GpuAsk::Whole(k) if k > 0 => Some(k),
        _ => None,
    })
}

/// A non-negative count field (`replicas`, `parallelism`, `size`), or
/// `default` when absent; `Err` names the field and value.
pub(crate) fn count(v: Option<&Value>, field: &str, default: u32) -> Result<u32, String> {
    match v {
        None | Some(Value::Null) => Ok(default),
        Some(x) => x
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| format!("{field}: {x} is not a non-negative 32-bit integer")),
    }
}

/// A label value that must be a non-negative integer.
pub(crate) fn index_label(pod: &LeanPod, key: &str) -> Result<Option<u32>, String> {
    match label_or_annotation(pod, key) {
        None => Ok(None),
        Some(v) => v
            .parse::<u32>()
            .map(Some)
            .map_err(|_| format!("label {key}: {v:?} is not a non-negative integer")),
    }
}

/// What the index keeps of an owner object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub uid: Option<String>,
    pub shape: Shape,
    /// [`GANG_ANNOTATION`]: `Err` when it is neither `true` nor `false`.
    pub enabled: Result<bool, String>,
    /// JobSet [`GANG_SCOPE_ANNOTATION`]: per replicated job.
    pub per_part: Result<bool, String>,
    pub required: Option<String>,
    pub preferred: Option<String>,
}

fn enabled(v: Option<&str>, whose: &str) -> Result<bool, String> {
    match v.map(str::trim) {
        None => Ok(true),
        Some(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Some(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        Some(s) => Err(format!(
            "{whose} annotation {GANG_ANNOTATION}: {s:?} is neither \"true\" nor \"false\""
        )),
    }
}

impl Owner {
    /// Reads an owner object of `kind`.
    pub fn from_object(kind: OwnerKind, o: &DynamicObject) -> Owner {
        let ann = o.metadata.annotations.as_ref();
        let get = |k: &str| ann.and_then(|a| a.get(k)).map(String::as_str);
        let what = format!("{} {}", kind.name(), key_of(o));
        let per_part = match (kind, get(GANG_SCOPE_ANNOTATION).map(str::trim)) {
            (_, None) | (_, Some("jobset")) => Ok(false),
            (OwnerKind::JobSet, Some("replicated-job")) => Ok(true),
            (_, Some(v)) => Err(format!(
                "{what}: annotation {GANG_SCOPE_ANNOTATION}: {v:?} is not \"jobset\" or \"replicated-job\" (JobSets only)"
            )),
        };
        Owner {
            uid: o.metadata.uid.clone(),
            shape: kind.shape(o),
            enabled: enabled(get(GANG_ANNOTATION), &what),
            per_part,
            required: get(REQUIRED_LEVEL_ANNOTATION).map(str::to_string),
            preferred: get(PREFERRED_LEVEL_ANNOTATION).map(str::to_string),
        }
    }
}

/// `<ns>/<name>` of an object.
pub fn key_of(o: &DynamicObject) -> String {
    format!(
        "{}/{}",
        o.metadata.namespace.as_deref().unwrap_or("default"),
        o.metadata.name.as_deref().unwrap_or("")
    )
}

/// Whether the extender can know a kind's objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Watched {
    /// Not served (or not watched): no such owner can exist, so pods that
    /// name one are placed one by one.
    #[default]
    No,
    /// Served; the first list has not completed: members wait.
    Listing,
    /// Listed: the index has every object.
    Synced,
    /// The API refused the extender (401/403: RBAC lacks list/watch):
    /// members are placed one by one rather than wait for ever.
    Refused,
}

/// A gang member as its owner resolves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    /// GPU members of the gang.
    pub size: u32,
    pub rank: u32,
    pub required: Option<String>,
    pub preferred: Option<String>,
}

/// Owner objects by kind and `<ns>/<name>`.
#[derive(Debug, Clone, Default)]
pub struct OwnerIndex {
    pub objects: HashMap<(OwnerKind, String), Owner>,
    pub watched: BTreeMap<OwnerKind, Watched>,
    deleted: VecDeque<(OwnerKind, String, Option<String>)>,
}

impl OwnerIndex {
    pub fn insert(&mut self, kind: OwnerKind, key: String, owner: Owner) {
        self.deleted.retain(|(k, n, _)| !(*k == kind && *n == key));
        self.objects.insert((kind, key), owner);
    }

    /// Forgets an owner, remembering that it was deleted.
    pub fn remove(&mut self, kind: OwnerKind, key: &str) {
        if let Some(o) = self.objects.remove(&(kind, key.to_string())) {
            if self.deleted.len() >= TOMBSTONES {
                self.deleted.pop_front();
            }
            self.deleted.push_back((kind, key.to_string(), o.uid));
        }
    }

    pub fn get(&self, kind: OwnerKind, key: &str) -> Option<&Owner> {
        self.objects.get(&(kind, key.to_string()))
    }

    pub fn keys(&self, kind: OwnerKind) -> Vec<String> {
        self.objects
            .keys()
            .filter(|(k, _)| *k == kind)
            .map(|(_, n)| n.clone())
            .collect()
    }

    pub fn watched(&self, kind: OwnerKind) -> Watched {
        self.watched.get(&kind).copied().unwrap_or_default()
    }

    fn was_deleted(&self, kind: OwnerKind, key: &str) -> bool {
        self.deleted.iter().any(|(k, n, _)| *k == kind && n == key)
    }

    /// The gang a pod owned by `r` is in: `Ok(None)` when it is placed
    /// alone (opted out, not a gang, a member without GPUs, or an owner
    /// kind the extender cannot watch), `Err` when it waits, with why.
    pub fn resolve(&self, r: &OwnerRef, pod: &LeanPod) -> Result<Option<Member>, String> {
        if !enabled(annotation(pod, GANG_ANNOTATION), "pod")? {
            return Ok(None);
        }
        let what = format!("{} {} ({})", r.kind.name(), r.key, r.kind.group());
        let owner = match self.watched(r.kind) {
            Watched::No | Watched::Refused => return Ok(None),
            Watched::Listing => {
                return self.get(r.kind, &r.key).map_or_else(
                    || Err(format!("waiting for {what}: still listing them")),
                    |o| self.member(r, pod, o),
                );
            }
            Watched::Synced => match self.get(r.kind, &r.key) {
                Some(o) => o,
                None if self.was_deleted(r.kind, &r.key) => {
                    return Err(format!("{what} was deleted: its remaining pods are not placed"));
                }
                None => return Err(format!("waiting for {what}")),
            },
        };
        self.member(r, pod, owner)
    }

    fn member(&self, r: &OwnerRef, pod: &LeanPod, owner: &Owner) -> Result<Option<Member>, String> {
        let what = format!("{} {}", r.kind.name(), r.key);
        if let (Some(theirs), Some(ours)) = (&r.uid, &owner.uid)
            && theirs != ours
        {
            return Err(format!(
                "the pod's {what} has uid {theirs}, the {what} the extender knows has uid {ours}: waiting for the replaced one's pods to go"
            ));
        }
        if !owner.enabled.clone()? {
            return Ok(None);
        }
        let classes = match &owner.shape {
            Shape::Alone(_) => return Ok(None),
            Shape::Invalid(why) => return Err(format!("{what}: {why}")),
            Shape::Classes(c) => c,
        };
        let per_part = owner.per_part.clone()?;
        let (class, index) = match r.kind {
            OwnerKind::Job => job::position(pod, classes),
            OwnerKind::JobSet => jobset::position(pod, r, classes),
            OwnerKind::PyTorchJob | OwnerKind::MpiJob => kubeflow::position(pod, classes),
            OwnerKind::LeaderWorkerSet => lws::position(pod, r, classes),
        }
        .map_err(|e| format!("{what}: {e}"))?;
        // A JobSet's per-replicated-job gang is the pod's class alone.
        let gang: Vec<(usize, &Class)> = classes
            .iter()
            .enumerate()
            .filter(|(i, _)| !per_part || *i == class)
            .collect();
        let mut asks: Vec<(u32, &str)> = gang
            .iter()
            .filter_map(|(_, c)| c.gpus.map(|g| (g, c.name.as_str())))
            .collect();
        asks.dedup_by_key(|(g, _)| *g);
        if asks.len() > 1 {
            let list: Vec<String> = asks.iter().map(|(g, n)| format!("{g} for {n}")).collect();
            let hint = if r.kind == OwnerKind::JobSet {
                format!(" (annotate the JobSet {GANG_SCOPE_ANNOTATION}: replicated-job)")
            } else {
                String::new()
            };
            return Err(format!(
                "{what}: members ask for different GPU counts ({}); a gang's members must ask alike{hint}",
                list.join(", ")
            ));
        }
        let Some(own) = classes.get(class) else {
            return Err(format!("{what}: member class {class} out of range"));
        };
        if own.gpus.is_none() {
            return Ok(None);
        }
        if index >= own.count {
            return Err(format!(
                "{what}: the pod's index {index} in {} is not below its {} members",
                own.name, own.count
            ));
        }
        let before: u32 = gang
            .iter()
            .take_while(|(i, _)| *i != class)
            .filter(|(_, c)| c.gpus.is_some())
            .map(|(_, c)| c.count)
            .fold(0u32, u32::saturating_add);
        let size = gang
            .iter()
            .filter(|(_, c)| c.gpus.is_some())
            .map(|(_, c)| c.count)
            .fold(0u32, u32::saturating_add);
        if size <= 1 {
            return Ok(None);
        }
        // A recorded plan of more slots is refused when read back, so such
        // a gang could never be rebuilt after a restart.
        if size as usize > k8s::MAX_PLAN_SLOTS {
            return Err(format!(
                "{what}: a gang of {size} members is more than the {} a gang plan may hold",
                k8s::MAX_PLAN_SLOTS
            ));
        }
        Ok(Some(Member {
            id: r.id(per_part || r.kind == OwnerKind::LeaderWorkerSet),
            size,
            rank: before.saturating_add(index),
            required: owner.required.clone(),
            preferred: owner.preferred.clone(),
        }))
    }

    /// The gang size for `r` without a pod (no rank): `Err` when unknown.
    pub fn size(&self, r: &OwnerRef) -> Result<Option<u32>, String> {
        let Some(o) = self.get(r.kind, &r.key) else {
            return match self.watched(r.kind) {
                Watched::No | Watched::Refused => Ok(None),
                _ => Err(format!("waiting for {} {} ({})", r.kind.name(), r.key, r.kind.group())),
            };
        };
        if !o.enabled.clone()? {
            return Ok(None);
        }
        let classes = match &o.shape {
            Shape::Alone(_) => return Ok(None),
            Shape::Invalid(why) => return Err(format!("{} {}: {why}", r.kind.name(), r.key)),
            Shape::Classes(c) => c,
        };
        let per_part = o.per_part.clone()?;
        let n = classes
            .iter()
            .filter(|c| !per_part || Some(&c.name) == r.part.as_ref())
            .filter(|c| c.gpus.is_some())
            .map(|c| c.count)
            .fold(0u32, u32::saturating_add);
        Ok((n > 1).then_some(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn class(name: &str, count: u32, gpus: Option<u32>) -> Class {
        Class {
            name: name.into(),
            count,
            gpus,
            stride: 1,
        }
    }

    #[test]
    fn ids_do_not_collide_with_pod_group_or_workload_ids() {
        let r = OwnerRef {
            kind: OwnerKind::JobSet,
            key: "ns/train".into(),
            part: Some("workers".into()),
            attempt: Some("2".into()),
            uid: None,
        };
        assert_eq!(r.ids(), vec!["ns/JobSet:train@2", "ns/JobSet:train@2/workers"]);
        assert!(r.id(false).contains(':'));
    }

    #[test]
    fn enabled_reads_true_false_and_refuses_the_rest() {
        assert_eq!(enabled(None, "pod"), Ok(true));
        assert_eq!(enabled(Some("False"), "pod"), Ok(false));
        assert_eq!(enabled(Some(" true "), "pod"), Ok(true));
        let e = enabled(Some("no"), "pod").expect_err("refused");
        assert!(e.contains("\"no\""), "{e}");
    }

    #[test]
    fn counts_refuse_negative_and_huge_values() {
        assert_eq!(count(None, "replicas", 1), Ok(1));
        assert_eq!(count(Some(&json!(3)), "replicas", 1), Ok(3));
        for bad in [json!(-1), json!(1.5), json!("3"), json!(1u64 << 40)] {
            let e = count(Some(&bad), "replicas", 1).expect_err("refused");
            assert!(e.starts_with("replicas: "), "{e}");
        }
    }

    #[test]
    fn a_gang_larger_than_a_plan_may_hold_is_refused() {
        let mut idx = OwnerIndex::default();
        idx.watched.insert(OwnerKind::Job, Watched::Synced);
        let owner = Owner {
            uid: None,
            shape: Shape::Classes(vec![class("indexes", 100_000, Some(8))]),
            enabled: Ok(true),
            per_part: Ok(false),
            required: None,
            preferred: None,
        };
        idx.insert(OwnerKind::Job, "ns/big".into(), owner);
        let pod: LeanPod = serde_json::from_value(json!({"metadata": {"namespace": "ns", "name": "big-7",
            "labels": {"batch.kubernetes.io/job-completion-index": "7"},
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "big", "uid": "u", "controller": true}]}}))
        .expect("pod");
        let r = owner_of(&pod).expect("an owner");
        let e = idx.resolve(&r, &pod).expect_err("refused");
        assert!(e.contains("100000 members"), "{e}");
    }

    #[test]
    fn gpu_less_classes_are_not_members_and_ranks_skip_them() {
        let mut idx = OwnerIndex::default();
        idx.watched.insert(OwnerKind::MpiJob, Watched::Synced);
        idx.insert(
            OwnerKind::MpiJob,
            "ns/mpi".into(),
            Owner {
                uid: Some("u".into()),
                shape: Shape::Classes(vec![class("launcher", 1, None), class("worker", 3, Some(8))]),
                enabled: Ok(true),
                per_part: Ok(false),
                required: None,
                preferred: Some("leaf".into()),
            },
        );
        let pod: LeanPod = serde_json::from_value(json!({"metadata": {"namespace": "ns", "name": "mpi-worker-2",
            "labels": {"training.kubeflow.org/job-name": "mpi", "training.kubeflow.org/operator-name": "mpi-operator",
                       "training.kubeflow.org/job-role": "worker", "training.kubeflow.org/replica-index": "2"}}}))
        .expect("pod");
        let r = owner_of(&pod).expect("an owner");
        let m = idx.resolve(&r, &pod).expect("resolves").expect("a member");
        assert_eq!((m.id.as_str(), m.size, m.rank), ("ns/MPIJob:mpi", 3, 2));
        assert_eq!(m.preferred.as_deref(), Some("leaf"));
        // Deleted: the rest waits, saying so.
        idx.remove(OwnerKind::MpiJob, "ns/mpi");
        let e = idx.resolve(&r, &pod).expect_err("waits");
        assert!(e.contains("was deleted"), "{e}");
        // A kind that is not served: alone.
        idx.watched.insert(OwnerKind::MpiJob, Watched::No);
        assert_eq!(idx.resolve(&r, &pod), Ok(None));
    }

    mod untrusted {
        use super::super::*;
        use proptest::prelude::*;
        use serde_json::{Value, json};

        /// Leaves an object could hold where a count, a name or a template
        /// is expected.
        fn leaf() -> impl Strategy<Value = Value> {
            prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                (0u64..6).prop_map(Value::from),
                any::<f64>().prop_map(|f| json!(f)),
                "[a-zA-Z0-9-]{0,6}".prop_map(Value::from),
                Just(
                    json!({"spec": {"containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": "8"}}}]}})
                ),
                Just(json!({"spec": {"containers": [{"resources": {"limits": {"nvidia.com/gpu": "NaN"}}}]}})),
                Just(json!([])),
                Just(json!({})),
            ]
        }

        fn label_value() -> impl Strategy<Value = String> {
            prop_oneof![
                (0u32..8).prop_map(|i| i.to_string()),
                Just("-1".to_string()),
                Just("4294967296".to_string()),
                Just(String::new()),
                "[a-z0-9.-]{0,5}",
            ]
        }

        fn spec(kind: OwnerKind, l: Vec<Value>) -> Value {
            let t = |i: usize| l[i % l.len()].clone();
            match kind {
                OwnerKind::Job => json!({"completionMode": if t(0).is_null() { json!("Indexed") } else { t(0) },
                                          "parallelism": t(1), "completions": t(2), "template": t(3)}),
                OwnerKind::JobSet => json!({"replicatedJobs": [
                    {"name": t(4), "replicas": t(1), "template": {"spec": {"parallelism": t(2), "completions": t(5), "template": t(3)}}},
                    {"name": "w", "replicas": t(6), "template": {"spec": {"parallelism": t(1), "template": t(7)}}},
                ]}),
                OwnerKind::PyTorchJob => json!({"pytorchReplicaSpecs": {"Master": {"replicas": t(1), "template": t(3)},
                                                                          "Worker": {"replicas": t(2), "template": t(7)}}}),
                OwnerKind::MpiJob => json!({"launcherCreationPolicy": t(4), "mpiReplicaSpecs": {
                    "Launcher": {"replicas": t(1), "template": t(3)}, "Worker": {"replicas": t(2), "template": t(7)}}}),
                OwnerKind::LeaderWorkerSet => json!({"startupPolicy": t(4), "leaderWorkerTemplate": {
                    "size": t(1), "leaderTemplate": t(5), "workerTemplate": t(3)}}),
            }
        }

        proptest! {
            /// Whatever owner object and pod labels arrive, resolving a
            /// member never panics, and a refusal says why.
            #[test]
            fn any_owner_and_labels_resolve_without_panic(
                k in 0usize..5,
                leaves in proptest::collection::vec(leaf(), 8),
                labels in proptest::collection::vec(label_value(), 8),
                annotation in prop_oneof![Just(None), Just(Some("false".to_string())), Just(Some("x".to_string()))],
            ) {
                let kind = OwnerKind::ALL[k];
                let mut meta = json!({"name": "o", "namespace": "ns", "uid": "u"});
                if let Some(a) = &annotation {
                    meta["annotations"] = json!({GANG_ANNOTATION: a, GANG_SCOPE_ANNOTATION: labels[7]});
                }
                let o: DynamicObject = serde_json::from_value(json!({"apiVersion": "x/v1", "kind": kind.name(),
                    "metadata": meta, "spec": spec(kind, leaves)})).expect("object");
                let mut idx = OwnerIndex::default();
                idx.watched.insert(kind, Watched::Synced);
                idx.insert(kind, "ns/o".into(), Owner::from_object(kind, &o));
                let keys = [
                    job::COMPLETION_INDEX, jobset::JOB_INDEX, jobset::REPLICATED_JOB_NAME, jobset::RESTART_ATTEMPT,
                    kubeflow::REPLICA_TYPE, kubeflow::REPLICA_INDEX, lws::GROUP_INDEX, lws::WORKER_INDEX,
                ];
                let mut l: serde_json::Map<String, Value> = keys.iter().zip(&labels).map(|(k, v)| (k.to_string(), json!(v))).collect();
                let owner_label = match kind {
                    OwnerKind::JobSet => Some((jobset::JOBSET_NAME, "o")),
                    OwnerKind::PyTorchJob => Some((kubeflow::OPERATOR_NAME, "pytorchjob-controller")),
                    OwnerKind::MpiJob => Some((kubeflow::OPERATOR_NAME, "mpi-operator")),
                    OwnerKind::LeaderWorkerSet => Some((lws::NAME, "o")),
                    OwnerKind::Job => None,
                };
                if let Some((key, v)) = owner_label {
                    l.insert(key.into(), json!(v));
                }
                if matches!(kind, OwnerKind::PyTorchJob | OwnerKind::MpiJob) {
                    l.insert(kubeflow::JOB_NAME.into(), json!("o"));
                }
                let pod: LeanPod = serde_json::from_value(json!({"metadata": {"namespace": "ns", "name": "p", "labels": l,
                    "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "o", "uid": "u", "controller": true}]}}))
                    .expect("pod");
                let r = owner_of(&pod).expect("an owner");
                prop_assert_eq!(r.kind, kind);
                match idx.resolve(&r, &pod) {
                    Ok(Some(m)) => {
                        prop_assert!(m.size > 1 && m.rank < m.size, "{:?}", m);
                    }
                    Ok(None) => {}
                    Err(e) => prop_assert!(!e.is_empty()),
                }
                let _ = idx.size(&r);
            }
        }
    }
}
