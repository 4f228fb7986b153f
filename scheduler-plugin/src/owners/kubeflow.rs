//! Kubeflow training jobs (`kubeflow.org`): a PyTorchJob's master and
//! workers, an MPIJob's launcher and workers, as one gang. Ranks: the
//! replica types in their fixed order (Master then Worker; Launcher then
//! Worker), then `training.kubeflow.org/replica-index`. A replica type
//! whose pods ask for no GPU (an MPIJob launcher, usually) holds no gang
//! members: its pods are placed one by one and the workers are ranked
//! from 0.

use serde_json::Value;

use super::{Class, OwnerKind, OwnerRef, Shape, controller, count, index_label, label, template_gpus};
use crate::k8s::LeanPod;

pub const JOB_NAME: &str = "training.kubeflow.org/job-name";
pub const OPERATOR_NAME: &str = "training.kubeflow.org/operator-name";
/// training-operator: `master`, `worker`, `launcher` (lower case).
pub const REPLICA_TYPE: &str = "training.kubeflow.org/replica-type";
pub const REPLICA_INDEX: &str = "training.kubeflow.org/replica-index";
/// mpi-operator v2: `launcher` or `worker` (it sets no replica-type).
pub const JOB_ROLE: &str = "training.kubeflow.org/job-role";

/// A Kubeflow kind's replica specs.
#[derive(Debug, Clone, Copy)]
pub struct Replicas {
    pub kind: OwnerKind,
    /// The spec field holding `{<Type>: {replicas, template}}`.
    pub field: &'static str,
    /// Replica types in rank order.
    pub order: &'static [&'static str],
}

pub const PYTORCH: Replicas = Replicas {
    kind: OwnerKind::PyTorchJob,
    field: "pytorchReplicaSpecs",
    order: &["Master", "Worker"],
};

pub const MPI: Replicas = Replicas {
    kind: OwnerKind::MpiJob,
    field: "mpiReplicaSpecs",
    order: &["Launcher", "Worker"],
};

/// A pod of a PyTorchJob or MPIJob: its `job-name` label, the kind from
/// its controller ownerReference (workers; an MPIJob v2 launcher is owned
/// by a Job) or else from `operator-name`.
pub fn owner(pod: &LeanPod, ns: &str) -> Option<OwnerRef> {
    let name = label(pod, JOB_NAME).filter(|n| !n.is_empty())?;
    let ctl = controller(pod).filter(|(av, _, _, _)| av.starts_with("kubeflow.org/"));
    let kind = match (ctl.map(|(_, k, _, _)| k), label(pod, OPERATOR_NAME)) {
        (Some("PyTorchJob"), _) | (None, Some("pytorchjob-controller")) => OwnerKind::PyTorchJob,
        (Some("MPIJob"), _) | (None, Some("mpi-operator" | "mpijob-controller")) => OwnerKind::MpiJob,
        // TFJob, XGBoostJob, …: not inferred.
        _ => return None,
    };
    Some(OwnerRef {
        kind,
        key: format!("{ns}/{name}"),
        part: None,
        attempt: None,
        uid: ctl
            .filter(|(_, _, n, u)| *n == name && !u.is_empty())
            .map(|(_, _, _, u)| u.to_string()),
    })
}

/// One class per replica type present, in rank order.
pub fn shape(spec: &Value, r: Replicas) -> Shape {
    match classes(spec, r) {
        Ok(c) if c.is_empty() => Shape::Alone(format!("spec.{} is empty", r.field)),
        Ok(c) => Shape::Classes(c),
        Err(e) => Shape::Invalid(e),
    }
}

fn classes(spec: &Value, r: Replicas) -> Result<Vec<Class>, String> {
    let Some(specs) = spec.get(r.field) else {
        return Ok(Vec::new());
    };
    let specs = specs
        .as_object()
        .ok_or_else(|| format!("spec.{} is not a map", r.field))?;
    if let Some(t) = specs.keys().find(|t| !r.order.contains(&t.as_str())) {
        return Err(format!(
            "spec.{}.{t}: not a replica type of {} (expected {:?})",
            r.field,
            r.kind.name(),
            r.order
        ));
    }
    // mpi-operator creates the launcher only once the workers are ready:
    // the workers cannot wait for it.
    let late_launcher = spec.get("launcherCreationPolicy").and_then(Value::as_str) == Some("WaitForWorkersReady");
    let mut out = Vec::new();
    for t in r.order {
        let Some(s) = specs.get(*t) else { continue };
        let at = format!("spec.{}.{t}", r.field);
        let gpus = template_gpus(s.get("template"), &format!("{at}.template"))?;
        out.push(Class {
            name: t.to_ascii_lowercase(),
            count: count(s.get("replicas"), &format!("{at}.replicas"), 1)?,
            gpus: gpus.filter(|_| !(late_launcher && *t == "Launcher")),
            stride: 1,
        });
    }
    Ok(out)
}

/// The pod's replica type (replica-type, else job-role) and index.
pub fn position(pod: &LeanPod, classes: &[Class]) -> Result<(usize, u32), String> {
    let (key, ty) = label(pod, REPLICA_TYPE)
        .map(|t| (REPLICA_TYPE, t))
        .or_else(|| label(pod, JOB_ROLE).map(|t| (JOB_ROLE, t)))
        .ok_or_else(|| format!("the pod has neither a {REPLICA_TYPE} nor a {JOB_ROLE} label"))?;
    let class = classes
        .iter()
        .position(|c| c.name.eq_ignore_ascii_case(ty))
        .ok_or_else(|| format!("label {key}: {ty:?} is not one of its replica types"))?;
    let index = match index_label(pod, REPLICA_INDEX)? {
        Some(i) => i,
        // mpi-operator's launcher carries no index; there is one.
        None if classes[class].count == 1 => 0,
        None => return Err(format!("the pod has no {REPLICA_INDEX} label")),
    };
    Ok((class, index))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn replica(n: u32, gpus: Option<&str>) -> Value {
        let res = gpus.map_or(json!({}), |g| json!({"limits": {"nvidia.com/gpu": g}}));
        json!({"replicas": n, "template": {"spec": {"containers": [{"name": "c", "resources": res}]}}})
    }

    #[test]
    fn replica_types_in_rank_order() {
        let s = shape(
            &json!({"pytorchReplicaSpecs": {"Worker": replica(3, Some("8")), "Master": replica(1, Some("8"))}}),
            PYTORCH,
        );
        let Shape::Classes(c) = s else { panic!("{s:?}") };
        let names: Vec<&str> = c.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["master", "worker"]);
        let Shape::Invalid(why) = shape(&json!({"pytorchReplicaSpecs": {"Chief": replica(1, None)}}), PYTORCH) else {
            panic!()
        };
        assert!(why.contains("spec.pytorchReplicaSpecs.Chief"), "{why}");
    }

    #[test]
    fn a_launcher_created_after_the_workers_is_not_a_member() {
        let spec = json!({"launcherCreationPolicy": "WaitForWorkersReady",
                          "mpiReplicaSpecs": {"Launcher": replica(1, Some("8")), "Worker": replica(2, Some("8"))}});
        let Shape::Classes(c) = shape(&spec, MPI) else { panic!() };
        assert_eq!((c[0].gpus, c[1].gpus), (None, Some(8)));
    }
}
