//! An Indexed Job (`batch/v1`): one gang of `parallelism` pods when
//! `completions == parallelism` (every index runs at once), ranked by the
//! completion index. Other Jobs (NonIndexed, or more completions than run
//! at once) are not gangs: their pods run in waves.

use serde_json::Value;

use super::{Class, OwnerKind, OwnerRef, Shape, controller, count, index_label, template_gpus};
use crate::k8s::LeanPod;

/// Label (1.28+, PodIndexLabel) and annotation of the pod's index.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";

/// A pod controlled by a `batch/v1` Job.
pub fn owner(pod: &LeanPod, ns: &str) -> Option<OwnerRef> {
    let (api_version, kind, name, uid) = controller(pod)?;
    (api_version == "batch/v1" && kind == "Job" && !name.is_empty()).then(|| OwnerRef {
        kind: OwnerKind::Job,
        key: format!("{ns}/{name}"),
        part: None,
        attempt: None,
        uid: (!uid.is_empty()).then(|| uid.to_string()),
    })
}

/// A Job spec's gang: `parallelism` members when Indexed with
/// `completions == parallelism`.
pub fn shape(spec: &Value) -> Shape {
    match classes(spec, "spec", "NonIndexed") {
        Ok(Some(c)) => Shape::Classes(vec![c]),
        Ok(None) => Shape::Alone("not an Indexed Job with completions == parallelism".into()),
        Err(e) => Shape::Invalid(e),
    }
}

/// The one class of a Job spec at `at` (also a JobSet's job template),
/// `Ok(None)` when its pods are not one gang. `default_mode` is the
/// completion mode when unset: `NonIndexed` for a Job (the API server's
/// default), `Indexed` in a JobSet template (its webhook's). `completions`
/// unset counts as `parallelism` (an Indexed Job must set it; a JobSet's
/// webhook sets it so).
pub(crate) fn classes(spec: &Value, at: &str, default_mode: &str) -> Result<Option<Class>, String> {
    let mode = spec
        .get("completionMode")
        .and_then(Value::as_str)
        .unwrap_or(default_mode);
    if mode != "Indexed" {
        return Ok(None);
    }
    let parallelism = count(spec.get("parallelism"), &format!("{at}.parallelism"), 1)?;
    let completions = count(spec.get("completions"), &format!("{at}.completions"), parallelism)?;
    if completions != parallelism {
        return Ok(None);
    }
    Ok(Some(Class {
        name: "indexes".into(),
        count: parallelism,
        gpus: template_gpus(spec.get("template"), &format!("{at}.template"))?,
        stride: parallelism,
    }))
}

/// The pod's completion index, as `(class 0, index)`.
pub fn position(pod: &LeanPod, _classes: &[Class]) -> Result<(usize, u32), String> {
    let i = index_label(pod, COMPLETION_INDEX)?
        .ok_or_else(|| format!("the pod has no {COMPLETION_INDEX} label or annotation"))?;
    Ok((0, i))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn template(gpus: &str) -> Value {
        json!({"spec": {"containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": gpus}}}]}})
    }

    #[test]
    fn only_indexed_jobs_running_every_index_at_once_are_gangs() {
        let s =
            shape(&json!({"completionMode": "Indexed", "parallelism": 4, "completions": 4, "template": template("8")}));
        let Shape::Classes(c) = s else { panic!("a gang: {s:?}") };
        assert_eq!((c[0].count, c[0].gpus), (4, Some(8)));
        for spec in [
            json!({"completionMode": "Indexed", "parallelism": 2, "completions": 4, "template": template("8")}),
            json!({"parallelism": 4, "completions": 4, "template": template("8")}),
        ] {
            assert!(matches!(shape(&spec), Shape::Alone(_)), "{spec}");
        }
        let Shape::Invalid(why) = shape(&json!({"completionMode": "Indexed", "parallelism": -3})) else {
            panic!("alone")
        };
        assert!(why.contains("spec.parallelism: -3"), "{why}");
        let Shape::Invalid(why) =
            shape(&json!({"completionMode": "Indexed", "parallelism": 2, "completions": 2, "template": template("x")}))
        else {
            panic!("alone")
        };
        assert!(why.contains("spec.template") && why.contains("\"x\""), "{why}");
    }
}
