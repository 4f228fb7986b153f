//! Following the extender's decisions, end to end: the plugin over real
//! gRPC against the fake kubelet (admissions reported to a fake
//! PodResources, as kubelet's pod manager and device manager do), the pod
//! watch and the write-backs against a mocked API server. Every test waits
//! for events with generous timeouts and never asserts on timing.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::api::gpu_pod;
use common::node::{GPU, HOUR, SHARED, node};
use common::*;
use railyard_device_plugin::decisions::ALLOCATED_ANNOTATION;
use railyard_device_plugin::kubeapi::FIELD_MANAGER;

fn ids(v: &[u32]) -> String {
    v.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_4_gpu_pod_gets_the_extenders_gpus_when_the_plugins_rule_would_choose_others() {
    let n = node("version: v1\n", true, HOUR).await;
    n.env.devices(GPU, 8).await;
    // With all 8 free, the plugin's own rule takes NUMA node 0's GPUs.
    let own = n.own_rule(GPU, 4);
    assert_eq!(n.gpus(&own), [0, 1, 2, 3]);
    n.bind(gpu_pod("train", GPU, 4, Some("4,5,6,7"))).await;
    let a = n.admit("train", GPU, 4).await;
    let want: Vec<String> = (4..8).map(|i| n.uuid(i)).collect();
    assert_eq!(a.preferred.as_deref(), Some(&want[..]));
    assert_eq!(a.devices, want);

    // The write-back: a merge patch of that one annotation, by the plugin.
    assert_eq!(n.api.wait_allocated("train", T).await.as_deref(), Some("4,5,6,7"));
    let p = n.api.patches();
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].path, "/api/v1/namespaces/ml/pods/train");
    let params: Vec<&str> = p[0].query.split('&').filter(|q| !q.is_empty()).collect();
    assert_eq!(params, [format!("fieldManager={FIELD_MANAGER}")]);
    assert_eq!(p[0].content_type, "application/merge-patch+json");
    assert_eq!(p[0].annotation(ALLOCATED_ANNOTATION), "4,5,6,7");

    // The next 4-GPU pod is matched alone (the first was consumed at
    // Allocate, before its write-back), and follows its record too.
    n.bind(gpu_pod("train-2", GPU, 4, Some("0,1,2,3"))).await;
    let b = n.admit("train-2", GPU, 4).await;
    assert_eq!(n.gpus(&b.devices), [0, 1, 2, 3]);
    assert_eq!(n.api.wait_allocated("train-2", T).await.as_deref(), Some("0,1,2,3"));
    assert!(n.metric("railyard_device_plugin_decisions_followed_total{resource=\"nvidia.com/gpu\"} 2"));
    assert!(n.metric(
        "railyard_device_plugin_decision_allocations_total{resource=\"nvidia.com/gpu\",outcome=\"as_decided\"} 2"
    ));
    assert!(!n.env.metrics_text().contains("decision_fallbacks_total{"));
    n.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_pod_lands_on_the_gpu_the_extender_chose() {
    let n = node(&dp_config("time-slicing-4"), true, HOUR).await;
    n.env.devices(SHARED, 32).await;
    // The plugin's own rule (distributed) would start on GPU 0.
    assert_eq!(n.gpus(&n.own_rule(SHARED, 1)), [0]);
    n.bind(gpu_pod("nb-1", SHARED, 1, Some("5"))).await;
    let a = n.admit("nb-1", SHARED, 1).await;
    assert_eq!(n.gpus(&a.devices), [5]);
    // A second one packed onto the same GPU (distributed would spread it).
    n.bind(gpu_pod("nb-2", SHARED, 1, Some("5"))).await;
    let b = n.admit("nb-2", SHARED, 1).await;
    assert_eq!(n.gpus(&b.devices), [5]);
    assert_ne!(a.devices, b.devices);
    // Two replicas on GPU 6.
    n.bind(gpu_pod("nb-3", SHARED, 2, Some("6"))).await;
    let c = n.admit("nb-3", SHARED, 2).await;
    assert_eq!(n.gpus(&c.devices), [6]);
    assert_eq!(c.devices.len(), 2);
    for (pod, want) in [("nb-1", "5"), ("nb-2", "5"), ("nb-3", "6")] {
        assert_eq!(n.api.wait_allocated(pod, T).await.as_deref(), Some(want), "{pod}");
    }
    assert!(n.metric("railyard_device_plugin_decisions_followed_total{resource=\"nvidia.com/gpu.shared\"} 3"));
    n.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_and_stale_records_fall_back_and_the_real_gpus_are_written_back() {
    let n = node("version: v1\n", true, Duration::from_millis(50)).await;
    n.env.devices(GPU, 8).await;
    n.bind(gpu_pod("a", GPU, 4, Some("4,5,6,7"))).await;
    n.bind(gpu_pod("b", GPU, 4, Some("0,1,2,3"))).await;
    // kubelet has both in hand (two admissions in flight): admitting a
    // cannot be told from admitting b.
    n.pr.handle().add_pod("ml", "b", "main");
    let a = n.admit("a", GPU, 4).await;
    // The plugin's rule answered, and the allocation went through.
    assert_eq!(n.gpus(&a.devices), [0, 1, 2, 3]);
    assert!(
        n.metric("railyard_device_plugin_decision_fallbacks_total{resource=\"nvidia.com/gpu\",reason=\"ambiguous\"} 1")
    );
    assert!(n.metric(
        "railyard_device_plugin_decision_allocations_total{resource=\"nvidia.com/gpu\",outcome=\"unmatched\"} 1"
    ));
    // Not matched at Allocate: PodResources reconciliation writes a's real GPUs.
    assert_eq!(n.api.wait_allocated("a", T).await.as_deref(), Some("0,1,2,3"));
    assert!(n.follower().wait_for(T, |s| s.is_consumed("uid-a")).await);

    // b is now the only pod kubelet is admitting, but its GPUs went to a:
    // stale, so the plugin's rule answers again, and b still starts.
    let b = n.admit("b", GPU, 4).await;
    assert_eq!(n.gpus(&b.devices), [4, 5, 6, 7]);
    assert!(
        n.metric("railyard_device_plugin_decision_fallbacks_total{resource=\"nvidia.com/gpu\",reason=\"stale\"} 1")
    );
    assert!(n.metric(
        "railyard_device_plugin_decision_allocations_total{resource=\"nvidia.com/gpu\",outcome=\"differs\"} 1"
    ));
    assert_eq!(n.api.wait_allocated("b", T).await.as_deref(), Some("4,5,6,7"));
    // One patch per pod, each with only its real GPUs.
    let p = n.api.patches();
    assert_eq!(p.len(), 2, "{p:?}");
    for source in ["reconcile", "allocate"] {
        let line =
            format!("railyard_device_plugin_allocation_writebacks_total{{source=\"{source}\",result=\"written\"}} 1");
        assert!(n.wait_metric(&line).await, "{line}");
    }
    n.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_without_a_record_or_with_several_gpu_containers_are_not_followed() {
    let n = node("version: v1\n", true, HOUR).await;
    n.env.devices(GPU, 8).await;
    // A pod the extender did not place: the plugin's rule, written back.
    n.bind(gpu_pod("plain", GPU, 2, None)).await;
    let a = n.admit("plain", GPU, 2).await;
    assert_eq!(a.preferred, Some(n.own_rule(GPU, 2)));
    assert!(
        n.metric("railyard_device_plugin_decision_fallbacks_total{resource=\"nvidia.com/gpu\",reason=\"no_record\"} 1")
    );
    let want = ids(&n.gpus(&a.devices));
    assert_eq!(n.api.wait_allocated("plain", T).await, Some(want));
    // Two GPU containers: the call could be for either.
    let mut two = gpu_pod("two", GPU, 1, Some("6,7"));
    let second = serde_json::json!({"name": "side", "image": "cuda", "resources": {"limits": {GPU: "1"}}});
    two["spec"]["containers"].as_array_mut().unwrap().push(second);
    n.bind(two).await;
    n.admit("two", GPU, 1).await;
    assert!(n.metric(
        "railyard_device_plugin_decision_fallbacks_total{resource=\"nvidia.com/gpu\",reason=\"multi_container\"} 1"
    ));
    n.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_follow_decisions_off_the_plugins_rule_answers_and_allocations_are_still_written_back() {
    let n = node("version: v1\n", false, HOUR).await;
    n.env.devices(GPU, 8).await;
    n.bind(gpu_pod("train", GPU, 4, Some("4,5,6,7"))).await;
    let a = n.admit("train", GPU, 4).await;
    assert_eq!(n.gpus(&a.devices), [0, 1, 2, 3]);
    assert_eq!(n.api.wait_allocated("train", T).await.as_deref(), Some("0,1,2,3"));
    assert!(n.metric(
        "railyard_device_plugin_decision_allocations_total{resource=\"nvidia.com/gpu\",outcome=\"differs\"} 1"
    ));
    assert!(!n.env.metrics_text().contains("decision_fallbacks_total{"));
    n.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_back_is_retried() {
    let n = node("version: v1\n", true, HOUR).await;
    n.env.devices(GPU, 8).await;
    n.api.fail_patches(2);
    n.bind(gpu_pod("train", GPU, 1, Some("3"))).await;
    let a = n.admit("train", GPU, 1).await;
    assert_eq!(a.devices, [n.uuid(3)]);
    assert_eq!(n.api.wait_allocated("train", T).await.as_deref(), Some("3"));
    let p = n.api.patches();
    assert_eq!(p.len(), 3, "{p:?}");
    assert!(p.iter().all(|p| p.annotation(ALLOCATED_ANNOTATION) == "3"));
    n.shutdown().await;
}
