//! Decision drift: how many pods get other GPUs than the extender decided.
//! A scripted sequence of pods (whole 1/2/4/8-GPU pods on one DGX H100,
//! shared 1- and 2-replica pods on a time-sliced one) is placed by the
//! extender's own view (`railyard_core::extender::ClusterView::assume`, as
//! its bind does) and admitted through the fake kubelet; each pod's actual
//! GPUs are compared with the decision, and the view is told what kubelet
//! gave (the write-back, as the extender reconciles it). Three ways:
//! (a) `--follow-decisions` off, (b) on with serial admission, (c) on with
//! bursts of concurrent admissions on the node. Prints the figures (run with
//! `--nocapture`); asserts only that (b) has no drift and that nothing ever
//! fails an allocation, never on timing.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use common::api::gpu_pod;
use common::node::{GPU, Node, SHARED, node_with};
use common::*;
use railyard_core::extender::{ClusterView, NodeInput, PodAsk, PodObservation, ViewConfig};

/// Runs every future to completion, interleaved on this task (they borrow
/// the node, so they cannot be spawned).
async fn join_all<F: Future>(futs: Vec<F>) -> Vec<F::Output> {
    let mut futs: Vec<Pin<Box<F>>> = futs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, o) in futs.iter_mut().zip(out.iter_mut()) {
            if o.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *o = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending { Poll::Pending } else { Poll::Ready(()) }
    })
    .await;
    out.into_iter().map(|o| o.unwrap()).collect()
}

/// A deterministic script: (resource, count) per pod.
fn script(shared: bool, n: usize) -> Vec<(&'static str, u32)> {
    let mut x: u64 = 0x5eed;
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let r = (x >> 33) % 10;
            if shared {
                (SHARED, if r < 8 { 1 } else { 2 })
            } else {
                (GPU, [1, 1, 1, 1, 2, 2, 2, 4, 4, 8][r as usize])
            }
        })
        .collect()
}

#[derive(Debug, Default, Clone, Copy)]
struct Drift {
    pods: usize,
    differ: usize,
    failed: usize,
}

struct Running {
    name: String,
    uid: String,
    resource: &'static str,
    devices: Vec<String>,
}

fn extender(n: &Node, shared: bool) -> ClusterView {
    let mut view = ClusterView::new(ViewConfig::default());
    let mut labels = BTreeMap::from([("nvidia.com/gpu.count".to_string(), "8".to_string())]);
    let allocatable = if shared {
        labels.insert("nvidia.com/gpu.replicas".into(), "4".into());
        labels.insert("nvidia.com/gpu.sharing-strategy".into(), "time-slicing".into());
        BTreeMap::from([(SHARED.to_string(), 32)])
    } else {
        BTreeMap::from([(GPU.to_string(), 8)])
    };
    view.upsert_node(NodeInput {
        name: "node-a".into(),
        labels,
        allocatable,
        cpu_milli: 1_000_000,
        memory_mib: 1 << 30,
        topology: Some(Arc::new(n.machine.clone())),
        unschedulable: false,
    });
    view
}

fn ask(resource: &str, count: u32) -> PodAsk {
    PodAsk::from_resources([(resource, i64::from(count))], 0, 0, false).unwrap()
}

/// How a run admits its pods.
#[derive(Debug, Clone, Copy)]
struct Mode {
    name: &'static str,
    follow: bool,
    /// Pods the extender binds before kubelet admits any.
    batch: usize,
    /// Admit a batch's pods all at once (else one after the other, as
    /// kubelet's pod admission does).
    concurrent: bool,
    /// kubelet's PodResources reachable by the plugin.
    pod_resources: bool,
}

const MODES: [Mode; 5] = [
    Mode {
        name: "(a) off, serial",
        follow: false,
        batch: 1,
        concurrent: false,
        pod_resources: true,
    },
    Mode {
        name: "(b) on, serial",
        follow: true,
        batch: 1,
        concurrent: false,
        pod_resources: true,
    },
    Mode {
        name: "on, bursts of 6 bound, admitted one by one",
        follow: true,
        batch: 6,
        concurrent: false,
        pod_resources: true,
    },
    Mode {
        name: "on, same, pod watch only (no PodResources)",
        follow: true,
        batch: 6,
        concurrent: false,
        pod_resources: false,
    },
    Mode {
        name: "(c) on, bursts of 6 admitted concurrently",
        follow: true,
        batch: 6,
        concurrent: true,
        pod_resources: true,
    },
];

/// Admits each batch as `mode` says. Returns the drift.
async fn run(shared: bool, mode: Mode) -> Drift {
    let config = if shared {
        dp_config("time-slicing-4")
    } else {
        "version: v1\n".to_string()
    };
    let n = node_with(&config, mode.follow, Duration::from_millis(50), mode.pod_resources).await;
    let batch = mode.batch;
    n.env
        .devices(if shared { SHARED } else { GPU }, if shared { 32 } else { 8 })
        .await;
    let mut view = extender(&n, shared);
    let mut running: VecDeque<Running> = VecDeque::new();
    let mut drift = Drift::default();
    let pods = script(shared, 64);
    let mut next = 0;
    while next < pods.len() {
        // The extender binds up to `batch` pods before kubelet admits any,
        // releasing the oldest running pods when the next does not fit.
        let mut bound: Vec<(String, &'static str, u32, Vec<u32>)> = Vec::new();
        while bound.len() < batch && next < pods.len() {
            let (resource, count) = pods[next];
            let name = format!("p{next}");
            let uid = format!("uid-{name}");
            match view.assume(&uid, &ask(resource, count), "node-a") {
                Ok(a) => {
                    bound.push((name, resource, count, a.gpus));
                    next += 1;
                }
                Err(_) => match running.pop_front() {
                    Some(r) => {
                        n.env.kubelet.release(r.resource, &r.devices);
                        n.pr.handle().remove_pod("ml", &r.name);
                        n.api.delete_pod(&r.name);
                        view.remove_pod(&r.uid);
                    }
                    None if bound.is_empty() => panic!("pod {next} fits nowhere on an empty node"),
                    None => break,
                },
            }
        }
        for (name, resource, count, gpus) in &bound {
            let rec = gpus.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
            n.bind(gpu_pod(name, resource, *count, Some(&rec))).await;
        }
        let results = if mode.concurrent {
            join_all(
                bound
                    .iter()
                    .map(|(name, resource, count, _)| n.try_admit(name, resource, *count as usize))
                    .collect(),
            )
            .await
        } else {
            let mut r = Vec::new();
            for (name, resource, count, _) in &bound {
                r.push(n.try_admit(name, resource, *count as usize).await);
            }
            r
        };
        for ((name, resource, count, decided), result) in bound.into_iter().zip(results) {
            drift.pods += 1;
            let uid = format!("uid-{name}");
            let a = match result {
                Ok(a) => a,
                Err(e) => {
                    eprintln!("{name}: admission failed: {e}");
                    drift.failed += 1;
                    view.remove_pod(&uid);
                    n.api.delete_pod(&name);
                    continue;
                }
            };
            let actual = n.gpus(&a.devices);
            let mut d = decided.clone();
            d.sort_unstable();
            if actual != d {
                drift.differ += 1;
            }
            // Every pod ends with its real GPUs written back (at Allocate, or
            // by reconciliation when the call could not be matched; without
            // PodResources only the matched ones are).
            if mode.pod_resources {
                let written = n.api.wait_allocated(&name, T).await;
                let want = actual.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
                assert_eq!(written.as_deref(), Some(want.as_str()), "{name}");
            }
            view.observe_pod(
                PodObservation {
                    uid: uid.clone(),
                    node: Some("node-a".into()),
                    ask: ask(resource, count),
                    finished: false,
                    gpus: Some(decided),
                    plan: None,
                    allocated: Some(actual.clone()),
                },
                0,
            );
            // The extender's view now books the pod where kubelet put it (a
            // shared pod on one of the GPUs its replicas are on).
            let (_, _, mut booked) = view.pod_state(&uid).expect("pod in the view");
            booked.sort_unstable();
            if shared {
                assert!(
                    booked.len() == 1 && actual.contains(&booked[0]),
                    "{name}: {booked:?} vs {actual:?}"
                );
            } else {
                assert_eq!(booked, actual, "{name}: the view follows the write-back");
            }
            running.push_back(Running {
                name,
                uid,
                resource,
                devices: a.devices,
            });
        }
    }
    n.shutdown().await;
    drift
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decision_drift_before_and_after_following_serial_and_in_bursts() {
    let mut rows = Vec::new();
    for shared in [false, true] {
        let kind = if shared {
            "shared 1-2 replicas (time-slicing-4)"
        } else {
            "whole 1/2/4/8 GPUs"
        };
        for mode in MODES {
            let d = run(shared, mode).await;
            assert_eq!(d.failed, 0, "{kind} {}: an allocation failed", mode.name);
            if mode.follow && !mode.concurrent && mode.batch == 1 {
                assert_eq!(d.differ, 0, "{kind}: serial admission follows every decision");
            }
            rows.push(format!(
                "| {kind} | {} | {} | {} | {} |",
                mode.name, d.pods, d.differ, d.failed
            ));
        }
    }
    println!("| pods | admission | pods | GPUs differ from the decision | failed allocations |");
    println!("|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
}
