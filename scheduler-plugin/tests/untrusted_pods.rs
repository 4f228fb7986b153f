//! Pods are written by users: what they carry must not steer the extender
//! beyond their own request. Gang plans read back from the API, resource
//! values the API would never store, and a pod that claims another
//! namespace's gang.

mod common;

use std::sync::atomic::Ordering;

use common::*;
use kube::runtime::watcher::Event;
use railyard_scheduler::decision::{Decision, DecisionKey};
use railyard_scheduler::k8s::LeanPod;
use serde_json::{Value, json};

const GROUP: &str = "scheduling.x-k8s.io/pod-group";

fn cluster(nodes: usize) -> Fixture {
    cluster_with(nodes, test_key())
}

fn cluster_with(nodes: usize, key: DecisionKey) -> Fixture {
    let f = Fixture::with_key(60_000, key);
    let topo = dgx_profile_json();
    for i in 0..nodes {
        f.add_node(&node(&format!("dgx{i}"), &[("nvidia.com/gpu", "8")], &[], Some(&topo)));
    }
    f
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("dgx{i}")).collect()
}

/// A plan with a slot on every GPU of every node, expiring never.
fn grab_everything(gang: &str, nodes: usize) -> String {
    let slots: Vec<Value> = (0..nodes)
        .flat_map(|n| (0..8).map(move |g| json!({"node": format!("dgx{n}"), "gpus": [g]})))
        .collect();
    json!({"gang": gang, "expires_ms": u64::MAX, "slots": slots}).to_string()
}

/// Sets the decision annotations, signed with the fixture extender's key
/// when `signed` (what its bind records), else as anyone could write them.
fn record(p: &mut Value, annotations: Value, signed: bool) {
    let mut ann = annotations;
    if signed {
        let get = |k: &str| ann[k].as_str().unwrap_or("").to_string();
        let sig = test_key().sign(&Decision {
            uid: p["metadata"]["uid"].as_str().expect("uid"),
            node: p["spec"]["nodeName"].as_str().expect("bound"),
            gpus: &get("railyard.dev/gpus"),
            plan: &get("railyard.dev/gang-plan"),
            slot: &get("railyard.dev/gang-slot"),
        });
        ann["railyard.dev/decision-signature"] = json!(sig);
    }
    p["metadata"]["annotations"] = ann;
}

/// The decision annotations of member 0 of a 2-node gang `ns/g` bound on
/// `dgx0`, with a plan that claims never to expire.
fn member_zero_of_two() -> Value {
    let plan = json!({"gang": "ns/g", "expires_ms": u64::MAX, "slots": [
        {"node": "dgx0", "gpus": [0, 1, 2, 3, 4, 5, 6, 7]},
        {"node": "dgx1", "gpus": [0, 1, 2, 3, 4, 5, 6, 7]},
    ]});
    json!({
        "railyard.dev/gang-plan": plan.to_string(),
        "railyard.dev/gang-slot": "0",
        "railyard.dev/gpus": "0,1,2,3,4,5,6,7",
    })
}

/// Feeds a pod through the pod watch's handler, as the API would deliver it.
fn watch_sees(f: &Fixture, p: &Value) {
    let pod: LeanPod = serde_json::from_value(p.clone()).expect("pod");
    railyard_scheduler::watch::apply_pod(&f.state, Event::Apply(pod), &mut None);
}

async fn free_everywhere(f: &Fixture, nodes: usize) -> Vec<String> {
    let p = pod("victim", "train", "uid-victim", &[("nvidia.com/gpu", "8")], &[]);
    let names = names(nodes);
    let r = f
        .post_json("filter", &json!({"Pod": p, "Nodes": null, "NodeNames": names}))
        .await;
    serde_json::from_value(r["NodeNames"].clone()).unwrap_or_default()
}

async fn ignored_metric(f: &Fixture, reason: &str) -> String {
    let (_, text) = f.get("/metrics").await;
    text.lines()
        .find(|l| l.starts_with("railyard_scheduler_gang_plans_ignored_total") && l.contains(reason))
        .unwrap_or("")
        .to_string()
}

/// The hijack of finding 2: a pod bound to a node by its creator, asking for
/// no GPU, carrying a plan over every GPU of the cluster that never expires.
/// It held every GPU forever, across restarts. Not signed by the extender,
/// it is ignored; even signed (a leaked key), a GPU-less pod holds no slot.
#[tokio::test]
async fn a_gpu_less_pod_cannot_reserve_the_cluster() {
    for (signed, reason) in [(false, "unsigned"), (true, "no_gpus")] {
        let f = cluster(4);
        let mut p = pod("mallory", "grab", "uid-grab", &[], &[(GROUP, "g")]);
        p["spec"]["nodeName"] = json!("dgx0");
        let ann = json!({
            "railyard.dev/gang-plan": grab_everything("mallory/g", 4),
            "railyard.dev/gang-slot": "0",
        });
        record(&mut p, ann, signed);
        watch_sees(&f, &p);
        assert!(f.state.view().reservation("mallory/g").is_none());
        assert_eq!(free_everywhere(&f, 4).await, names(4));
        let m = ignored_metric(&f, reason).await;
        assert!(m.ends_with(" 1"), "{reason}: {m}");
    }
}

/// A plan copied from a pod the extender did bind onto another pod does not
/// verify there: the signature covers the pod's UID.
#[tokio::test]
async fn a_copied_signature_does_not_verify_on_another_pod() {
    let f = cluster(2);
    let ann = member_zero_of_two();
    let mut real = pod("ns", "m0", "uid-m0", &[("nvidia.com/gpu", "8")], &[(GROUP, "g")]);
    real["spec"]["nodeName"] = json!("dgx0");
    record(&mut real, ann, true);
    let mut copy = real.clone();
    copy["metadata"]["name"] = json!("m0-copy");
    copy["metadata"]["uid"] = json!("uid-copy");
    watch_sees(&f, &copy);
    assert!(f.state.view().reservation("ns/g").is_none());
    assert!(ignored_metric(&f, "unsigned").await.ends_with(" 1"));
    // The real one, signed for its own UID, is rebuilt.
    watch_sees(&f, &real);
    assert!(f.state.view().reservation("ns/g").is_some());
}

/// The same plan naming another namespace's gang is not this pod's.
#[tokio::test]
async fn a_pod_cannot_take_over_another_namespaces_gang() {
    let f = cluster(4);
    let mut p = pod(
        "mallory",
        "grab",
        "uid-grab",
        &[("nvidia.com/gpu", "1")],
        &[(GROUP, "g")],
    );
    p["spec"]["nodeName"] = json!("dgx0");
    let ann = json!({
        "railyard.dev/gang-plan": grab_everything("research/llm", 4),
        "railyard.dev/gang-slot": "0",
        "railyard.dev/gpus": "0",
    });
    record(&mut p, ann, true);
    watch_sees(&f, &p);
    assert!(f.state.view().reservation("research/llm").is_none());
    assert!(ignored_metric(&f, "not_a_member").await.ends_with(" 1"));
    // Its own GPU is still counted: the pod is bound and holds one.
    assert_eq!(free_everywhere(&f, 4).await, vec!["dgx1", "dgx2", "dgx3"]);
}

/// A slot that is not on the pod's node, or not its GPU count, is refused.
#[tokio::test]
async fn a_slot_must_match_the_pods_node_and_request() {
    let f = cluster(2);
    let mut p = pod("ns", "m", "uid-m", &[("nvidia.com/gpu", "1")], &[(GROUP, "g")]);
    p["spec"]["nodeName"] = json!("dgx0");
    let plan = json!({"gang": "ns/g", "expires_ms": u64::MAX, "slots": [
        {"node": "dgx1", "gpus": [0, 1, 2, 3, 4, 5, 6, 7]},
    ]});
    let ann = json!({
        "railyard.dev/gang-plan": plan.to_string(),
        "railyard.dev/gang-slot": "0",
    });
    record(&mut p, ann, true);
    watch_sees(&f, &p);
    assert!(f.state.view().reservation("ns/g").is_none());
    assert!(ignored_metric(&f, "slot_mismatch").await.ends_with(" 1"));
}

/// A consistent plan is still rebuilt (restart recovery), but it holds the
/// unfilled slots for at most one TTL from when it was seen, whatever
/// expiry it records.
#[tokio::test]
async fn a_consistent_plan_is_rebuilt_with_its_expiry_capped() {
    let f = cluster(2);
    let mut p = pod("ns", "m0", "uid-m0", &[("nvidia.com/gpu", "8")], &[(GROUP, "g")]);
    p["spec"]["nodeName"] = json!("dgx0");
    let ann = member_zero_of_two();
    record(&mut p, ann, true);
    watch_sees(&f, &p);
    let now = f.state.now();
    let res = f.state.view().reservation("ns/g").expect("rebuilt").clone();
    assert_eq!(res.plan.expires_ms, now + 60_000);
    assert!(free_everywhere(&f, 2).await.is_empty(), "dgx1 is held for member 1");
    f.clock.fetch_add(60_001, Ordering::Relaxed);
    f.state.tick();
    assert_eq!(free_everywhere(&f, 2).await, vec!["dgx1"]);
}

/// Values the API would never store were dropped silently: the pod then
/// counted as GPU-less and passed CPU-only nodes.
#[tokio::test]
async fn bad_gpu_quantities_are_refused_with_the_value() {
    let f = Fixture::new(60_000);
    f.add_node(&node("cpu-only", &[], &[], None));
    for (value, expect) in [
        ("-5", "is negative"),
        ("NaN", "not a quantity"),
        ("", "is empty"),
        ("0x10", "unknown suffix"),
        ("1e30", "more than the 4096 devices"),
        ("0.5", "not a whole number"),
    ] {
        let p = pod("ns", "p", "uid-p", &[("nvidia.com/gpu", value)], &[]);
        let r = f
            .post_json("filter", &json!({"Pod": p, "Nodes": null, "NodeNames": ["cpu-only"]}))
            .await;
        let err = r["Error"].as_str().unwrap_or("");
        assert!(
            err.contains("nvidia.com/gpu") && err.contains(&format!("{value:?}")) && err.contains(expect),
            "{value}: {r}"
        );
        assert_eq!(r["NodeNames"], Value::Null, "{value}: nothing passes: {r}");
    }
}

/// What bind records is what a restarted extender trusts: a gang member
/// bound by one extender rebuilds its reservation in a fresh one holding the
/// same key (one Secret for the deployment), and in none holding another.
#[tokio::test]
async fn a_restarted_extender_trusts_only_what_its_key_signed() {
    let before = cluster(2);
    before.state.gang_index_mut().pod_groups.insert("ns/g".into(), 2);
    let member = |i: usize| {
        pod(
            "ns",
            &format!("m{i}"),
            &format!("uid-m{i}"),
            &[("nvidia.com/gpu", "8")],
            &[
                (GROUP, "g"),
                ("batch.kubernetes.io/job-completion-index", &i.to_string()),
            ],
        )
    };
    let node = before
        .schedule(&member(0), &["dgx0", "dgx1"])
        .await
        .expect("member 0 placed");
    let rec = before.binder.bound.lock().expect("lock")[0].clone();
    assert!(
        rec.annotations.contains_key("railyard.dev/decision-signature"),
        "{rec:?}"
    );
    let mut seen = member(0);
    seen["spec"]["nodeName"] = json!(node);
    seen["metadata"]["annotations"] = json!(rec.annotations);

    let after = cluster(2);
    watch_sees(&after, &seen);
    let res = after
        .state
        .view()
        .reservation("ns/g")
        .expect("rebuilt from the API")
        .clone();
    assert_eq!(res.plan.slots.len(), 2);

    let other = cluster_with(2, DecisionKey::from_bytes(&[7; 32]));
    watch_sees(&other, &seen);
    assert!(other.state.view().reservation("ns/g").is_none());
    assert!(ignored_metric(&other, "unsigned").await.ends_with(" 1"));
}
