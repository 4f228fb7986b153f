//! The device plugin writes back the GPUs kubelet gave
//! (`railyard.dev/allocated-gpus`); the extender's view moves the pod there,
//! counts it, and bounds how long it waits for one.

mod common;

use std::sync::atomic::Ordering;

use common::*;
use kube::runtime::watcher::Event;
use railyard_scheduler::k8s::LeanPod;
use serde_json::{Value, json};

fn cluster(nodes: usize) -> Fixture {
    let f = Fixture::new(60_000);
    let topo = dgx_profile_json();
    for i in 0..nodes {
        f.add_node(&node(&format!("dgx{i}"), &[("nvidia.com/gpu", "8")], &[], Some(&topo)));
    }
    f
}

/// A pod bound on `node` with the extender's decision, and the device
/// plugin's write-back when `allocated` is given.
fn bound(uid: &str, gpus: u32, node: &str, decided: &str, allocated: Option<&str>) -> Value {
    let mut p = pod("ns", uid, uid, &[("nvidia.com/gpu", &gpus.to_string())], &[]);
    p["spec"]["nodeName"] = json!(node);
    p["status"]["phase"] = json!("Running");
    let mut ann = json!({"railyard.dev/gpus": decided});
    if let Some(a) = allocated {
        ann["railyard.dev/allocated-gpus"] = json!(a);
    }
    p["metadata"]["annotations"] = ann;
    p
}

fn watch_sees(f: &Fixture, p: &Value) {
    let pod: LeanPod = serde_json::from_value(p.clone()).expect("pod");
    railyard_scheduler::watch::apply_pod(&f.state, Event::Apply(pod), &mut None);
}

fn gpus_of(f: &Fixture, uid: &str) -> Vec<u32> {
    let (_, _, mut g) = f.state.view().pod_state(uid).expect("pod in view");
    g.sort_unstable();
    g
}

async fn metric(f: &Fixture, name: &str, labels: &str) -> Option<f64> {
    let (_, text) = f.get("/metrics").await;
    text.lines()
        .find(|l| l.starts_with(name) && l.contains(labels) && !l.starts_with('#'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Kubelet gave other GPUs than decided: the view books the pod where
/// kubelet put it, the GPUs it was decided on are free again, and the
/// drift is counted.
#[tokio::test]
async fn the_view_follows_the_gpus_written_back() {
    let f = cluster(1);
    let a = bound("uid-a", 4, "dgx0", "0,1,2,3", None);
    watch_sees(&f, &a);
    assert_eq!(gpus_of(&f, "uid-a"), vec![0, 1, 2, 3]);
    let a = bound("uid-a", 4, "dgx0", "0,1,2,3", Some("4,5,6,7"));
    watch_sees(&f, &a);
    assert_eq!(gpus_of(&f, "uid-a"), vec![4, 5, 6, 7]);
    assert_eq!(f.state.view().free_gpus("dgx0"), Some(vec![0, 1, 2, 3]));
    // The same write-back seen again (a resync) changes nothing.
    watch_sees(&f, &a);
    let drifted = r#"kind="whole",result="drifted""#;
    assert_eq!(
        metric(&f, "railyard_scheduler_writebacks_total", drifted).await,
        Some(1.0)
    );

    // A pod that got what was decided counts as followed.
    let b = bound("uid-b", 2, "dgx0", "0,1", Some("0,1"));
    watch_sees(&f, &b);
    assert_eq!(gpus_of(&f, "uid-b"), vec![0, 1]);
    let followed = r#"kind="whole",result="followed""#;
    assert_eq!(
        metric(&f, "railyard_scheduler_writebacks_total", followed).await,
        Some(1.0)
    );
    assert_eq!(f.state.view().free_gpus("dgx0"), Some(vec![2, 3]));
}

/// A write-back the node cannot have (an index past its GPUs, the wrong
/// count, garbage) is ignored and counted; the booking stays as decided.
#[tokio::test]
async fn invalid_write_backs_are_ignored_and_counted() {
    let f = cluster(1);
    for (i, bad) in ["9", "0,1,2", "4,5,x,7", "", "4,4,5,6"].into_iter().enumerate() {
        let uid = format!("uid-{i}");
        let p = bound(&uid, 4, "dgx0", "0,1,2,3", Some(bad));
        watch_sees(&f, &p);
        assert_eq!(gpus_of(&f, &uid), vec![0, 1, 2, 3], "write-back {bad:?}");
        f.state.view_mut().remove_pod(&uid);
    }
    let invalid = r#"result="invalid""#;
    // "4,5,x,7" and "" do not parse: they are no write-back at all.
    assert_eq!(
        metric(&f, "railyard_scheduler_writebacks_total", invalid).await,
        Some(3.0)
    );
}

/// On a node whose plugin writes back, a decision that waits past
/// `writeback_timeout_ms` makes the node's positions unknown: it scores
/// lowest for GPU asks until the write-back comes.
#[tokio::test]
async fn an_overdue_write_back_makes_the_node_score_lowest_until_it_comes() {
    let f = cluster(2);
    // Both nodes have written back before.
    watch_sees(&f, &bound("uid-a0", 1, "dgx0", "7", Some("7")));
    watch_sees(&f, &bound("uid-a1", 1, "dgx1", "7", Some("7")));
    // A pod on dgx0 awaiting its write-back.
    watch_sees(&f, &bound("uid-b", 4, "dgx0", "0,1,2,3", None));
    let ask = pod("ns", "next", "uid-next", &[("nvidia.com/gpu", "1")], &[]);
    let scores = |r: Value| -> Vec<(String, i64)> {
        r.as_array()
            .expect("scores")
            .iter()
            .map(|s| {
                (
                    s["Host"].as_str().unwrap_or("").to_string(),
                    s["Score"].as_i64().unwrap_or(-1),
                )
            })
            .collect()
    };
    let body = json!({"Pod": ask, "Nodes": null, "NodeNames": ["dgx0", "dgx1"]});
    f.state.tick();
    assert_eq!(
        metric(&f, "railyard_scheduler_unknown_position_pods", "").await,
        Some(0.0)
    );

    f.clock.fetch_add(60_001, Ordering::Relaxed);
    f.state.tick();
    assert_eq!(
        metric(&f, "railyard_scheduler_unknown_position_pods", "").await,
        Some(1.0)
    );
    assert_eq!(
        metric(&f, "railyard_scheduler_unknown_position_nodes", "").await,
        Some(1.0)
    );
    let s = scores(f.post_json("prioritize", &body).await);
    assert_eq!(s, vec![("dgx0".to_string(), 0), ("dgx1".to_string(), 10)], "{s:?}");
    // Still a fit: unknown positions are counted, not lost.
    let r = f.post_json("filter", &body).await;
    assert_eq!(r["NodeNames"], json!(["dgx0", "dgx1"]));

    watch_sees(&f, &bound("uid-b", 4, "dgx0", "0,1,2,3", Some("2,3,4,5")));
    f.state.tick();
    assert_eq!(
        metric(&f, "railyard_scheduler_unknown_position_pods", "").await,
        Some(0.0)
    );
    assert_eq!(gpus_of(&f, "uid-b"), vec![2, 3, 4, 5]);
    let s = scores(f.post_json("prioritize", &body).await);
    assert!(s[0].1 > 0, "dgx0 known again: {s:?}");
}

/// A list longer than any node could hold is not parsed.
#[test]
fn oversized_lists_are_not_parsed() {
    use railyard_scheduler::k8s::gpu_list;
    assert_eq!(gpu_list("0, 1,2"), Some(vec![0, 1, 2]));
    assert_eq!(gpu_list(""), None);
    assert_eq!(
        gpu_list(&(0..65).map(|i| i.to_string()).collect::<Vec<_>>().join(",")),
        None
    );
    assert_eq!(gpu_list(&"0,".repeat(600)), None);
}
