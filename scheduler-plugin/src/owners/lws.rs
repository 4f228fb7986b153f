//! A LeaderWorkerSet (`leaderworkerset.x-k8s.io/v1`): each group (a leader
//! and `size - 1` workers) is one gang; rank = the worker index (the
//! leader is 0). The leader's pod template may differ from the workers'
//! (`leaderTemplate`); a leader that asks for no GPU is not a member and
//! the workers are ranked from 0.
//!
//! The workers' StatefulSet is created once the leader pod exists
//! (`startupPolicy: LeaderCreated`, the default). With `LeaderReady` it
//! waits for the leader to run, which a gang holding the leader back
//! never lets happen: such groups are not gangs.

use serde_json::Value;

use super::{Class, OwnerKind, OwnerRef, Shape, count, index_label, label, template_gpus};
use crate::k8s::LeanPod;

pub const NAME: &str = "leaderworkerset.sigs.k8s.io/name";
pub const GROUP_INDEX: &str = "leaderworkerset.sigs.k8s.io/group-index";
pub const WORKER_INDEX: &str = "leaderworkerset.sigs.k8s.io/worker-index";

/// A pod of a LeaderWorkerSet group, by the labels its controller sets on
/// leader and worker pods.
pub fn owner(pod: &LeanPod, ns: &str) -> Option<OwnerRef> {
    let name = label(pod, NAME).filter(|n| !n.is_empty())?;
    Some(OwnerRef {
        kind: OwnerKind::LeaderWorkerSet,
        key: format!("{ns}/{name}"),
        part: label(pod, GROUP_INDEX).map(str::to_string),
        attempt: None,
        uid: None,
    })
}

/// The leader, then the workers.
pub fn shape(spec: &Value) -> Shape {
    match classes(spec) {
        Ok(c) => c,
        Err(e) => Shape::Invalid(e),
    }
}

fn classes(spec: &Value) -> Result<Shape, String> {
    if spec.get("startupPolicy").and_then(Value::as_str) == Some("LeaderReady") {
        return Ok(Shape::Alone(
            "startupPolicy LeaderReady starts workers only after the leader runs".into(),
        ));
    }
    let t = spec.get("leaderWorkerTemplate").unwrap_or(&Value::Null);
    let size = count(t.get("size"), "spec.leaderWorkerTemplate.size", 1)?;
    if size == 0 {
        return Err("spec.leaderWorkerTemplate.size: 0 is below the minimum 1".into());
    }
    let worker = template_gpus(t.get("workerTemplate"), "spec.leaderWorkerTemplate.workerTemplate")?;
    let leader = match t.get("leaderTemplate") {
        Some(l) if !l.is_null() => template_gpus(Some(l), "spec.leaderWorkerTemplate.leaderTemplate")?,
        _ => worker,
    };
    Ok(Shape::Classes(vec![
        Class {
            name: "leader".into(),
            count: 1,
            gpus: leader,
            stride: 1,
        },
        Class {
            name: "workers".into(),
            count: size - 1,
            gpus: worker,
            stride: 1,
        },
    ]))
}

/// Leader (worker index 0) or worker `i` (index `i - 1` among workers).
pub fn position(pod: &LeanPod, r: &OwnerRef, _classes: &[Class]) -> Result<(usize, u32), String> {
    match r.part.as_deref() {
        None => return Err(format!("the pod has no {GROUP_INDEX} label")),
        Some(g) if g.parse::<u32>().is_err() => {
            return Err(format!("label {GROUP_INDEX}: {g:?} is not a non-negative integer"));
        }
        Some(_) => {}
    }
    match index_label(pod, WORKER_INDEX)? {
        None => Err(format!("the pod has no {WORKER_INDEX} label")),
        Some(0) => Ok((0, 0)),
        Some(i) => Ok((1, i - 1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn leader_then_workers_and_the_leader_template_defaults_to_the_workers() {
        let t = json!({"spec": {"containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": "8"}}}]}});
        let Shape::Classes(c) = shape(&json!({"leaderWorkerTemplate": {"size": 4, "workerTemplate": t}})) else {
            panic!()
        };
        assert_eq!((c[0].count, c[0].gpus, c[1].count, c[1].gpus), (1, Some(8), 3, Some(8)));
        assert!(matches!(
            shape(&json!({"startupPolicy": "LeaderReady", "leaderWorkerTemplate": {"size": 4, "workerTemplate": t}})),
            Shape::Alone(_)
        ));
        let Shape::Invalid(why) = shape(&json!({"leaderWorkerTemplate": {"size": 0}})) else {
            panic!()
        };
        assert!(why.contains("size: 0"), "{why}");
    }
}
