//! The scripted mix `railyard-bench cluster` runs: a training gang, single
//! GPU jobs, shared-GPU notebooks, MIG inference pods, a pod no node can
//! hold, and a second gang that must wait for the first to finish. The
//! script adapts to the fleet: gangs go to the GPU product with the most
//! 8-GPU nodes, MIG and shared pods only where such nodes exist.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::extender::SCHEDULER_NAME;
use crate::node::NodeSpec;

/// Namespace of every scripted object.
pub const NAMESPACE: &str = "ml";
/// scheduler-plugins' PodGroup label on members.
pub const POD_GROUP_LABEL: &str = "scheduling.x-k8s.io/pod-group";
/// The rank of a member (an Indexed Job's completion index).
pub const INDEX_LABEL: &str = "batch.kubernetes.io/job-completion-index";

/// One step of the script.
#[derive(Debug, Clone)]
pub enum Step {
    /// Objects a user creates (pods, PodGroups), in order.
    Submit { title: String, objects: Vec<Value> },
    /// Jobs that end: their pods' containers exit 0 (`Succeeded`).
    Finish { title: String, pods: Vec<String> },
}

impl Step {
    pub fn title(&self) -> &str {
        match self {
            Step::Submit { title, .. } | Step::Finish { title, .. } => title,
        }
    }
}

/// A pod as a user writes it for Railyard: `schedulerName`, one container
/// with CPU/memory requests and device limits.
pub fn pod(name: &str, devices: &[(&str, u32)], labels: &[(&str, String)], selector: Option<(&str, &str)>) -> Value {
    let mut limits = serde_json::Map::new();
    for (r, n) in devices {
        limits.insert((*r).to_string(), json!(n.to_string()));
    }
    let labels: BTreeMap<&str, &str> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut spec = json!({
        "schedulerName": SCHEDULER_NAME,
        "restartPolicy": "Never",
        "containers": [{
            "name": "main",
            "image": "nvcr.io/nvidia/pytorch:24.05-py3",
            "resources": {"requests": {"cpu": "4", "memory": "32Gi"}, "limits": limits},
        }],
    });
    if let Some((k, v)) = selector {
        spec["nodeSelector"] = json!({k: v});
    }
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels},
        "spec": spec,
    })
}

/// A gang: its PodGroup (`minMember` = size), then its members, ranked.
pub fn gang(job: &str, size: u32, gpus: u32, product: Option<&str>) -> Vec<Value> {
    let mut out = vec![json!({
        "apiVersion": "scheduling.x-k8s.io/v1alpha1", "kind": "PodGroup",
        "metadata": {"name": job, "namespace": NAMESPACE},
        "spec": {"minMember": size},
    })];
    for i in 0..size {
        out.push(pod(
            &format!("{job}-{i}"),
            &[("nvidia.com/gpu", gpus)],
            &[(POD_GROUP_LABEL, job.to_string()), (INDEX_LABEL, i.to_string())],
            product.map(|p| ("nvidia.com/gpu.product", p)),
        ));
    }
    out
}

/// Whole (non-MIG) GPUs of a node.
fn whole_gpus(n: &NodeSpec) -> usize {
    n.machine.gpus.iter().filter(|g| !g.mig_enabled).count()
}

fn shares(n: &NodeSpec) -> bool {
    n.plugin_config.contains("timeSlicing")
}

/// A MIG profile some node of the fleet has an instance of, smallest first.
fn mig_profiles(fleet: &[NodeSpec]) -> Vec<String> {
    let mut p: Vec<String> = fleet
        .iter()
        .filter(|n| n.plugin_config.contains("migStrategy: mixed"))
        .flat_map(|n| {
            n.machine
                .gpus
                .iter()
                .flat_map(|g| g.mig_instances.iter().map(|m| m.profile.clone()))
        })
        .collect();
    p.sort_by_key(|name| (name.split('g').next().and_then(|s| s.parse::<u32>().ok()), name.clone()));
    p.dedup();
    p
}

/// The script for `fleet`.
pub fn script(fleet: &[NodeSpec]) -> Vec<Step> {
    let mut steps = Vec::new();
    // The product with the most 8-GPU nodes (ties: the first in the fleet).
    let mut by_product: Vec<(String, usize)> = Vec::new();
    for n in fleet.iter().filter(|n| whole_gpus(n) >= 8) {
        let p = n.labels.get("nvidia.com/gpu.product").cloned().unwrap_or_default();
        match by_product.iter_mut().find(|(q, _)| *q == p) {
            Some((_, c)) => *c += 1,
            None => by_product.push((p, 1)),
        }
    }
    let best = by_product.iter().fold(None::<&(String, usize)>, |b, x| {
        if b.is_none_or(|b| x.1 > b.1) { Some(x) } else { b }
    });
    let gang_plan = best
        .filter(|(_, c)| *c >= 2)
        .map(|(p, c)| (p.clone(), (*c).min(4) as u32));
    if let Some((product, size)) = &gang_plan {
        steps.push(Step::Submit {
            title: format!(
                "training gang ml/llm-pretrain: {size} workers x 8 GPUs on {product} (PodGroup minMember {size})"
            ),
            objects: gang("llm-pretrain", *size, 8, Some(product)),
        });
    }
    let mut singles = vec![
        pod("finetune-a", &[("nvidia.com/gpu", 4)], &[], None),
        pod("eval-b", &[("nvidia.com/gpu", 2)], &[], None),
        pod("debug-c", &[("nvidia.com/gpu", 1)], &[], None),
    ];
    if fleet.iter().any(shares) {
        for i in 1..=3 {
            singles.push(pod(
                &format!("notebook-{i}"),
                &[("nvidia.com/gpu.shared", 1)],
                &[],
                None,
            ));
        }
    }
    for (i, profile) in mig_profiles(fleet).iter().take(2).enumerate() {
        singles.push(pod(
            &format!("infer-{}", i + 1),
            &[(&format!("nvidia.com/mig-{profile}"), 1)],
            &[],
            None,
        ));
    }
    singles.push(pod("too-big", &[("nvidia.com/gpu", 16)], &[], None));
    steps.push(Step::Submit {
        title: "single-GPU jobs, shared-GPU notebooks, MIG inference, and a 16-GPU pod no node holds".into(),
        objects: singles,
    });
    if let Some((product, size)) = &gang_plan {
        steps.push(Step::Submit {
            title: format!("a second gang ml/llm-sft: {size} x 8 GPUs on {product}, while llm-pretrain holds them"),
            objects: gang("llm-sft", *size, 8, Some(product)),
        });
        steps.push(Step::Finish {
            title: "llm-pretrain finishes".into(),
            pods: (0..*size).map(|i| format!("llm-pretrain-{i}")).collect(),
        });
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gang_is_a_pod_group_and_ranked_members() {
        let g = gang("job", 3, 8, Some("NVIDIA-H100-80GB-HBM3"));
        assert_eq!(g.len(), 4);
        assert_eq!(g[0]["spec"]["minMember"], 3);
        assert_eq!(g[2]["metadata"]["labels"][INDEX_LABEL], "1");
        assert_eq!(
            g[3]["spec"]["nodeSelector"]["nvidia.com/gpu.product"],
            "NVIDIA-H100-80GB-HBM3"
        );
        assert_eq!(
            g[1]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"],
            "8"
        );
        // Typed: the API server would accept it.
        let _: k8s_openapi::api::core::v1::Pod = serde_json::from_value(g[1].clone()).unwrap();
    }
}
