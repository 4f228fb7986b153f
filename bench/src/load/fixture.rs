//! A synthetic cluster for the extender load test and its benchmark.

use std::sync::Arc;

use prometheus_client::registry::Registry;
use railyard_core::extender::{GpuAsk, NodeInput, PodAsk, PodObservation, ViewConfig};
use railyard_core::packing::SplitMix64;
use railyard_scheduler::{AppState, Config, RecordingBinder};
use serde_json::{Value, json};

pub const PREFIX: &str = "/railyard";

pub fn node_name(i: usize) -> String {
    format!("node-{i}")
}

/// Node kinds: 60% 8 whole GPUs, 25% 8 GPUs shared 4 ways, 15% MIG.
fn node_input(i: usize, rng: &mut SplitMix64) -> NodeInput {
    let r = rng.below(100);
    let mut allocatable = std::collections::BTreeMap::new();
    let mut labels = std::collections::BTreeMap::new();
    labels.insert("fabric.topograph.run/tier-0".to_string(), format!("leaf{}", i / 32));
    if r < 60 {
        allocatable.insert("nvidia.com/gpu".to_string(), 8);
    } else if r < 85 {
        allocatable.insert("nvidia.com/gpu.shared".to_string(), 32);
        labels.insert("nvidia.com/gpu.count".to_string(), "8".to_string());
        labels.insert("nvidia.com/gpu.replicas".to_string(), "4".to_string());
    } else {
        allocatable.insert("nvidia.com/mig-1g.10gb".to_string(), 14);
        allocatable.insert("nvidia.com/mig-3g.40gb".to_string(), 4);
        allocatable.insert("nvidia.com/gpu".to_string(), 4);
        labels.insert("nvidia.com/gpu.count".to_string(), "8".to_string());
    }
    NodeInput {
        name: node_name(i),
        labels,
        allocatable,
        cpu_milli: 192_000,
        memory_mib: 2_000_000,
        topology: None,
        unschedulable: false,
    }
}

/// Pods already placed: about half of every node.
fn occupy(i: usize, node: &NodeInput, rng: &mut SplitMix64, out: &mut Vec<PodObservation>) {
    let mut push = |k: usize, gpu: GpuAsk, gpus: Option<Vec<u32>>| {
        out.push(PodObservation {
            uid: format!("pre-{i}-{k}"),
            node: Some(node.name.clone()),
            ask: PodAsk {
                gpu,
                single_numa: false,
                cpu_milli: 8000,
                memory_mib: 32_000,
                products: railyard_core::extender::GpuProducts::ANY,
            },
            finished: false,
            gpus,
            plan: None,
            allocated: None,
        });
    };
    if node.allocatable.contains_key("nvidia.com/gpu.shared") {
        for k in 0..rng.below(12) as usize {
            let g = rng.below(8) as u32;
            push(k, GpuAsk::Shared(1 + rng.below(2) as u32), Some(vec![g]));
        }
    } else if node.allocatable.contains_key("nvidia.com/mig-1g.10gb") {
        for k in 0..rng.below(10) as usize {
            push(
                k,
                GpuAsk::Mig {
                    resource: "nvidia.com/mig-1g.10gb".into(),
                    count: 1,
                },
                None,
            );
        }
    } else {
        let used = rng.below(9) as u32;
        if used > 0 {
            push(0, GpuAsk::Whole(used), Some((0..used).collect()));
        }
    }
}

/// An extender state over `n` synthetic nodes, half used.
pub fn build_state(n: usize, seed: u64) -> AppState {
    let state = AppState::new(
        Config {
            url_prefix: PREFIX.into(),
            view: ViewConfig::default(),
        },
        Arc::new(RecordingBinder::default()),
        Registry::default(),
    );
    let mut rng = SplitMix64::new(seed);
    {
        let mut v = state.view_mut();
        let mut pods = Vec::new();
        for i in 0..n {
            let node = node_input(i, &mut rng);
            occupy(i, &node, &mut rng, &mut pods);
            v.upsert_node(node);
        }
        for p in pods {
            v.observe_pod(p, 0);
        }
    }
    state.tick();
    state
}

/// Pending pods as kube-scheduler sends them: shared (1-3 replicas), whole
/// (1, 2, 4, 8 GPUs) and MIG, with CPU and memory.
pub fn pod_mix(seed: u64, count: usize) -> Vec<Value> {
    let mut rng = SplitMix64::new(seed ^ 0x5eed);
    (0..count)
        .map(|i| {
            let r = rng.below(100);
            let (res, qty) = if r < 40 {
                ("nvidia.com/gpu.shared", 1 + rng.below(3))
            } else if r < 65 {
                ("nvidia.com/gpu", 1)
            } else if r < 85 {
                ("nvidia.com/gpu", [2, 4, 8][rng.below(3) as usize])
            } else {
                ("nvidia.com/mig-1g.10gb", 1)
            };
            let cpu = 2 + rng.below(14);
            json!({
                "metadata": {"name": format!("load-{i}"), "namespace": "bench", "uid": format!("uid-load-{i}")},
                "spec": {"containers": [{"name": "main", "image": "trainer:latest", "resources": {
                    "requests": {"cpu": cpu.to_string(), "memory": format!("{}Gi", cpu * 4), res: qty.to_string()},
                    "limits": {res: qty.to_string()},
                }}]},
                "status": {"phase": "Pending"},
            })
        })
        .collect()
}
