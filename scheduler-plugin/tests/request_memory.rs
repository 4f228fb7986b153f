//! Finding 8: what one request really costs in memory, measured with a
//! counting global allocator (this test binary only): the peak of live heap
//! bytes while the router answers one filter, above what was live before,
//! plus the body itself (which arrives over the connection and is held for
//! the request). Run with `--nocapture` to see the figures; the ignored test
//! measures the full `Nodes` form at 10,000 nodes (about 10 KB per Node):
//!
//! ```text
//! cargo test -p railyard-scheduler --test request_memory -- --include-ignored --nocapture
//! ```
//!
//! The assertions keep the peak proportional to the body (the class of
//! finding 8: memory bounded by input size, and input size bounded by
//! `--max-request-bytes`).
// The counting allocator is the only unsafe code, and it only forwards to
// the system allocator.
#![allow(unsafe_code)]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{Fixture, PREFIX};
use railyard_scheduler::app;
use serde_json::{Value, json};
use tower::ServiceExt;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call forwards to `System` with the caller's arguments; the
// counters are only bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Measurements must not overlap: the counters are process-wide.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A Node as kube-scheduler sends it without nodeCacheCapable: labels of a
/// GPU node (GPU feature discovery's included), the usual annotations,
/// taints, conditions, addresses, node info and 50 images (about 10 KB).
fn realistic_node(i: usize) -> Value {
    let name = format!(
        "ip-10-{}-{}-{}.us-west-2.compute.internal",
        i / 65536,
        (i / 256) % 256,
        i % 256
    );
    let mut labels = serde_json::Map::new();
    for (k, v) in [
        ("beta.kubernetes.io/arch", "amd64"),
        ("beta.kubernetes.io/instance-type", "p5.48xlarge"),
        ("beta.kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", "amd64"),
        ("kubernetes.io/os", "linux"),
        ("node.kubernetes.io/instance-type", "p5.48xlarge"),
        ("topology.kubernetes.io/region", "us-west-2"),
        ("topology.kubernetes.io/zone", "us-west-2a"),
        ("nvidia.com/gpu.count", "8"),
        ("nvidia.com/gpu.product", "NVIDIA-H100-80GB-HBM3"),
        ("nvidia.com/gpu.memory", "81559"),
        ("nvidia.com/gpu.family", "hopper"),
        ("nvidia.com/gpu.compute.major", "9"),
        ("nvidia.com/gpu.compute.minor", "0"),
        ("nvidia.com/cuda.driver.major", "550"),
        ("nvidia.com/cuda.driver.minor", "90"),
        ("nvidia.com/cuda.driver.rev", "07"),
        ("nvidia.com/cuda.runtime.major", "12"),
        ("nvidia.com/cuda.runtime.minor", "4"),
        ("nvidia.com/mig.capable", "true"),
        ("nvidia.com/gpu.present", "true"),
        ("nvidia.com/gpu.deploy.device-plugin", "true"),
        ("feature.node.kubernetes.io/cpu-model.vendor_id", "AMD"),
        ("feature.node.kubernetes.io/kernel-version.full", "6.1.0-1234-aws"),
        ("fabric.topograph.run/tier-0", "leaf-17"),
        ("fabric.topograph.run/tier-1", "spine-3"),
    ] {
        labels.insert(k.into(), json!(v));
    }
    labels.insert("kubernetes.io/hostname".into(), json!(name));
    let images: Vec<Value> = (0..50)
        .map(|k| {
            json!({
                "names": [
                    format!("registry.example.com/team-{k}/training-image@sha256:{:064x}", k * 7919 + i),
                    format!("registry.example.com/team-{k}/training-image:v1.{k}.0"),
                ],
                "sizeBytes": 1_234_567_890u64 + k as u64,
            })
        })
        .collect();
    let conditions: Vec<Value> = [
        "MemoryPressure",
        "DiskPressure",
        "PIDPressure",
        "Ready",
        "NetworkUnavailable",
    ]
    .iter()
    .map(|t| {
        json!({
            "type": t, "status": if *t == "Ready" { "True" } else { "False" },
            "lastHeartbeatTime": "2025-01-01T00:00:00Z", "lastTransitionTime": "2025-01-01T00:00:00Z",
            "reason": format!("Kubelet{t}Ok"), "message": format!("kubelet reports {t} as expected"),
        })
    })
    .collect();
    let res = json!({
        "cpu": "192", "memory": "2097152Mi", "ephemeral-storage": "7000Gi", "pods": "110",
        "hugepages-1Gi": "0", "hugepages-2Mi": "0", "nvidia.com/gpu": "8", "vpc.amazonaws.com/efa": "32",
    });
    json!({
        "metadata": {
            "name": name, "uid": format!("{:08x}-0000-4000-8000-{:012x}", i, i),
            "resourceVersion": "123456789", "creationTimestamp": "2025-01-01T00:00:00Z",
            "labels": labels,
            "annotations": {
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
                "csi.volume.kubernetes.io/nodeid": format!("{{\"ebs.csi.aws.com\":\"i-{:017x}\"}}", i),
                "alpha.kubernetes.io/provided-node-ip": format!("10.0.{}.{}", i / 256 % 256, i % 256),
            },
        },
        "spec": {
            "podCIDR": format!("100.64.{}.0/24", i % 256), "providerID": format!("aws:///us-west-2a/i-{:017x}", i),
            "taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}],
        },
        "status": {
            "capacity": res, "allocatable": res, "conditions": conditions,
            "addresses": [
                {"type": "InternalIP", "address": format!("10.0.{}.{}", i / 256 % 256, i % 256)},
                {"type": "Hostname", "address": name},
                {"type": "InternalDNS", "address": name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": format!("{:032x}", i), "systemUUID": format!("ec2{:029x}", i),
                "bootID": format!("{:08x}-1111-2222-3333-444444444444", i),
                "kernelVersion": "6.1.0-1234-aws", "osImage": "Amazon Linux 2023",
                "containerRuntimeVersion": "containerd://1.7.20", "kubeletVersion": "v1.34.1",
                "kubeProxyVersion": "v1.34.1", "operatingSystem": "linux", "architecture": "amd64",
            },
            "images": images,
        },
    })
}

/// A realistic training pod (a few KB): labels, annotations, env, mounts.
fn realistic_pod() -> Value {
    let mut p = common::pod("team-a", "trainer-0", "uid-trainer-0", &[("nvidia.com/gpu", "8")], &[]);
    let env: Vec<Value> = (0..40)
        .map(|k| json!({"name": format!("TRAINING_SETTING_{k}"), "value": format!("value-{k}-{}", "x".repeat(20))}))
        .collect();
    p["spec"]["containers"][0]["env"] = json!(env);
    p["metadata"]["annotations"] = json!({"kubectl.kubernetes.io/last-applied-configuration": "y".repeat(2000)});
    p
}

struct Measured {
    body: usize,
    /// Peak live heap above the baseline while answering, the body excluded.
    extra: usize,
    status: StatusCode,
}

impl Measured {
    fn peak(&self) -> usize {
        self.body + self.extra
    }
}

fn mib(b: usize) -> f64 {
    b as f64 / (1 << 20) as f64
}

/// One filter through the router with `body`, on a runtime built before
/// the measurement starts.
fn measure(f: &Fixture, body: Vec<u8>) -> Measured {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let router = app(f.state.clone());
    let len = body.len();
    let req = Request::post(format!("{PREFIX}/filter"))
        .header("content-type", "application/json")
        .header("content-length", len.to_string())
        .body(Body::from(body))
        .expect("request");
    let base = LIVE.load(Ordering::Relaxed);
    // The body is live already: counted once, as `body`.
    PEAK.store(base, Ordering::Relaxed);
    let status = rt.block_on(async move {
        let resp = router.oneshot(req).await.expect("infallible");
        let status = resp.status();
        let out = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("body");
        drop(out);
        status
    });
    let extra = PEAK.load(Ordering::Relaxed).saturating_sub(base);
    Measured {
        body: len,
        extra,
        status,
    }
}

fn with_nodes(names: &[String], max_request_bytes: usize) -> Fixture {
    let mut f = Fixture::new(60_000);
    let state = Arc::try_unwrap(f.state).expect("sole owner");
    f.state = Arc::new(state.with_request_limits(railyard_scheduler::app::RequestLimits {
        max_request_bytes,
        ..Default::default()
    }));
    for n in names {
        f.add_node(&common::node(n, &[("nvidia.com/gpu", "8")], &[], None));
    }
    f
}

#[test]
fn node_names_requests_at_10000_nodes() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let p = realistic_pod();
    for (what, len) in [
        ("typical names (~45 bytes)", 0usize),
        ("longest names (253 bytes)", 253),
    ] {
        let names: Vec<String> = (0..10_000)
            .map(|i| {
                if len == 0 {
                    format!("ip-10-0-{}-{}.us-west-2.compute.internal", i / 256, i % 256)
                } else {
                    format!("{i:05}-{}", "n".repeat(len - 6))
                }
            })
            .collect();
        let before = LIVE.load(Ordering::Relaxed);
        let f = with_nodes(&names, railyard_scheduler::app::DEFAULT_MAX_REQUEST_BYTES);
        let view = LIVE.load(Ordering::Relaxed).saturating_sub(before);
        let body = serde_json::to_vec(&json!({"Pod": p, "Nodes": null, "NodeNames": names})).expect("json");
        let m = measure(&f, body);
        assert_eq!(m.status, StatusCode::OK);
        println!(
            "NodeNames, 10,000 nodes, {what}: body {:.2} MiB, peak per request {:.2} MiB \
             (body + {:.2} MiB); the view of 10,000 such nodes: {:.1} MiB",
            mib(m.body),
            mib(m.peak()),
            mib(m.extra),
            mib(view)
        );
        // Proportional to the body: a few copies of the names at most.
        assert!(m.peak() < 4 * m.body + (1 << 20), "{} vs {}", m.peak(), m.body);
    }
}

/// Full `Nodes` at the default limit, and (ignored: large) at 10,000 nodes.
fn full_nodes(count: usize, max_request_bytes: usize) -> Measured {
    let items: Vec<Value> = (0..count).map(realistic_node).collect();
    let names: Vec<String> = items
        .iter()
        .filter_map(|n| n["metadata"]["name"].as_str().map(String::from))
        .collect();
    let f = with_nodes(&names, max_request_bytes);
    let body = serde_json::to_vec(&json!({
        "Pod": realistic_pod(), "Nodes": {"metadata": {}, "items": items}, "NodeNames": null,
    }))
    .expect("json");
    drop(names);
    let m = measure(&f, body);
    println!(
        "Nodes, {count} nodes ({:.1} KB each): body {:.1} MiB, peak per request {:.1} MiB \
         (body + {:.1} MiB, {:.1}x the body)",
        m.body as f64 / count as f64 / 1000.0,
        mib(m.body),
        mib(m.peak()),
        mib(m.extra),
        m.peak() as f64 / m.body as f64
    );
    m
}

#[test]
fn full_nodes_at_the_default_limit() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let limit = railyard_scheduler::app::DEFAULT_MAX_REQUEST_BYTES;
    // As many ~10 KB Nodes as fit under the limit.
    let per = serde_json::to_vec(&realistic_node(0)).expect("json").len();
    let m = full_nodes(limit / per - 20, limit);
    assert_eq!(m.status, StatusCode::OK);
    assert!(m.body <= limit);
    assert!(m.peak() < 8 * m.body, "{} vs {}", m.peak(), m.body);
}

#[test]
#[ignore = "builds a ~100 MB request; run by hand for the figures"]
fn full_nodes_at_10000_nodes() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // Served only with the limit raised (the default refuses it with 413
    // before reading it: tests/http.rs).
    let m = full_nodes(10_000, 1 << 30);
    assert_eq!(m.status, StatusCode::OK);
    assert!(m.body > railyard_scheduler::app::DEFAULT_MAX_REQUEST_BYTES);
}

/// The view at 10,000 nodes with 8 one-GPU pods on each (80,000 pods): the
/// extender's standing memory, for the Deployment's memory limit.
#[test]
#[ignore = "observes 80,000 pods; run by hand for the figures"]
fn the_view_at_10000_nodes() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let names: Vec<String> = (0..10_000)
        .map(|i| format!("ip-10-0-{}-{}.us-west-2.compute.internal", i / 256, i % 256))
        .collect();
    let before = LIVE.load(Ordering::Relaxed);
    let f = with_nodes(&names, railyard_scheduler::app::DEFAULT_MAX_REQUEST_BYTES);
    let nodes = LIVE.load(Ordering::Relaxed).saturating_sub(before);
    let mut pods = Vec::new();
    for (i, n) in names.iter().enumerate() {
        for g in 0..8 {
            let mut p = common::pod(
                "team-a",
                &format!("job-{i}-{g}"),
                &format!("{i:08x}-{g:04x}-4000-8000-000000000000"),
                &[("nvidia.com/gpu", "1")],
                &[],
            );
            p["spec"]["nodeName"] = json!(n);
            p["status"]["phase"] = json!("Running");
            p["metadata"]["annotations"] = json!({"railyard.dev/gpus": g.to_string()});
            pods.push(p);
        }
    }
    let before = LIVE.load(Ordering::Relaxed);
    for p in &pods {
        f.observe(p);
    }
    f.state.tick();
    let with_pods = LIVE.load(Ordering::Relaxed).saturating_sub(before);
    println!(
        "the view: 10,000 nodes {:.1} MiB; 80,000 pods {:.1} MiB ({} bytes per pod)",
        mib(nodes),
        mib(with_pods),
        with_pods / 80_000
    );
}
