//! A JobSet (`jobset.x-k8s.io`): one gang over its replicated jobs, or one
//! per replicated job with [`GANG_SCOPE_ANNOTATION`](super::GANG_SCOPE_ANNOTATION)
//! `replicated-job`. Each replicated job is `replicas` Jobs of
//! `parallelism` pods; ranks run through the replicated jobs in spec order,
//! then the job index, then the completion index. A replicated job whose
//! Jobs are not Indexed with `completions == parallelism` holds no gang
//! members: its pods are placed one by one.

use serde_json::Value;

use super::job::{self, COMPLETION_INDEX};
use super::{Class, OwnerKind, OwnerRef, Shape, count, index_label, label, label_or_annotation};
use crate::k8s::LeanPod;

pub const JOBSET_NAME: &str = "jobset.sigs.k8s.io/jobset-name";
pub const JOBSET_UID: &str = "jobset.sigs.k8s.io/jobset-uid";
pub const REPLICATED_JOB_NAME: &str = "jobset.sigs.k8s.io/replicatedjob-name";
pub const JOB_INDEX: &str = "jobset.sigs.k8s.io/job-index";
pub const RESTART_ATTEMPT: &str = "jobset.sigs.k8s.io/restart-attempt";

/// A pod of a JobSet's Job, by the labels the JobSet controller puts on
/// its Jobs' pod templates.
pub fn owner(pod: &LeanPod, ns: &str) -> Option<OwnerRef> {
    let name = label(pod, JOBSET_NAME).filter(|n| !n.is_empty())?;
    Some(OwnerRef {
        kind: OwnerKind::JobSet,
        key: format!("{ns}/{name}"),
        part: label_or_annotation(pod, REPLICATED_JOB_NAME).map(str::to_string),
        attempt: label_or_annotation(pod, RESTART_ATTEMPT)
            .filter(|a| a.bytes().all(|b| b.is_ascii_digit()) && !a.is_empty())
            .map(str::to_string),
        uid: label(pod, JOBSET_UID).filter(|u| !u.is_empty()).map(str::to_string),
    })
}

/// One class per replicated job, in spec order.
pub fn shape(spec: &Value) -> Shape {
    match classes(spec) {
        Ok(c) if c.is_empty() => Shape::Alone("spec.replicatedJobs is empty".into()),
        Ok(c) => Shape::Classes(c),
        Err(e) => Shape::Invalid(e),
    }
}

fn classes(spec: &Value) -> Result<Vec<Class>, String> {
    let Some(list) = spec.get("replicatedJobs") else {
        return Ok(Vec::new());
    };
    let list = list
        .as_array()
        .ok_or_else(|| "spec.replicatedJobs is not a list".to_string())?;
    let mut out = Vec::with_capacity(list.len());
    for (i, rj) in list.iter().enumerate() {
        let at = format!("spec.replicatedJobs[{i}]");
        let name = rj
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| format!("{at}.name is missing"))?;
        let replicas = count(rj.get("replicas"), &format!("{at}.replicas"), 1)?;
        let job_spec = rj.pointer("/template/spec").unwrap_or(&Value::Null);
        let class = job::classes(job_spec, &format!("{at}.template.spec"), "Indexed")?;
        let (stride, gpus) = match class {
            Some(c) => (c.stride, c.gpus),
            // Not a gang: its pods go alone; the count still orders ranks.
            None => (
                count(
                    job_spec.get("parallelism"),
                    &format!("{at}.template.spec.parallelism"),
                    1,
                )?,
                None,
            ),
        };
        let total = replicas
            .checked_mul(stride)
            .ok_or_else(|| format!("{at}: replicas {replicas} x parallelism {stride} overflows"))?;
        out.push(Class {
            name: name.to_string(),
            count: total,
            gpus,
            stride,
        });
    }
    Ok(out)
}

/// The pod's replicated job (by name) and index within it.
pub fn position(pod: &LeanPod, r: &OwnerRef, classes: &[Class]) -> Result<(usize, u32), String> {
    let rj = r
        .part
        .as_deref()
        .ok_or_else(|| format!("the pod has no {REPLICATED_JOB_NAME} label"))?;
    let class = classes
        .iter()
        .position(|c| c.name == rj)
        .ok_or_else(|| format!("label {REPLICATED_JOB_NAME}: {rj:?} is not one of its replicated jobs"))?;
    let stride = classes[class].stride.max(1);
    let job = index_label(pod, JOB_INDEX)?.ok_or_else(|| format!("the pod has no {JOB_INDEX} label"))?;
    let within = match index_label(pod, COMPLETION_INDEX)? {
        Some(i) => i,
        None if stride == 1 => 0,
        None => return Err(format!("the pod has no {COMPLETION_INDEX} label or annotation")),
    };
    if within >= stride {
        return Err(format!(
            "label {COMPLETION_INDEX}: {within} is not below the replicated job's parallelism {stride}"
        ));
    }
    let index = job
        .checked_mul(stride)
        .and_then(|x| x.checked_add(within))
        .ok_or_else(|| format!("label {JOB_INDEX}: {job} is out of range"))?;
    Ok((class, index))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rjob(name: &str, replicas: u32, parallelism: u32, gpus: Option<&str>) -> Value {
        let res = gpus.map_or(json!({}), |g| json!({"limits": {"nvidia.com/gpu": g}}));
        json!({"name": name, "replicas": replicas, "template": {"spec": {
            "parallelism": parallelism, "completions": parallelism,
            "template": {"spec": {"containers": [{"name": "c", "resources": res}]}}}}})
    }

    #[test]
    fn replicated_jobs_are_classes_in_spec_order() {
        let s = shape(&json!({"replicatedJobs": [rjob("driver", 1, 1, None), rjob("workers", 2, 4, Some("8"))]}));
        let Shape::Classes(c) = s else { panic!("{s:?}") };
        assert_eq!(c.len(), 2);
        assert_eq!((c[0].name.as_str(), c[0].count, c[0].gpus), ("driver", 1, None));
        assert_eq!((c[1].count, c[1].gpus, c[1].stride), (8, Some(8), 4));
        let Shape::Invalid(why) = shape(&json!({"replicatedJobs": [{"replicas": 1}]})) else {
            panic!()
        };
        assert!(why.contains("spec.replicatedJobs[0].name"), "{why}");
        let Shape::Invalid(why) = shape(&json!({"replicatedJobs": [rjob("w", 1 << 20, 1 << 20, Some("1"))]})) else {
            panic!()
        };
        assert!(why.contains("overflows"), "{why}");
    }
}
