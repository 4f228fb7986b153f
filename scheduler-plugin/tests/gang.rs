//! Gangs end to end through the HTTP API over fixture cluster state.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use common::*;
use serde_json::{Value, json};

const GROUP: &str = "scheduling.x-k8s.io/pod-group";
const INDEX: &str = "batch.kubernetes.io/job-completion-index";

fn dgx_fixture(nodes: usize, ttl_ms: u64) -> Fixture {
    let f = Fixture::new(ttl_ms);
    let topo = dgx_profile_json();
    for i in 0..nodes {
        let leaf = format!("leaf{}", i / 4);
        f.add_node(&node(
            &format!("dgx{i}"),
            &[("nvidia.com/gpu", "8")],
            &[("fabric.topograph.run/tier-0", leaf.as_str())],
            Some(&topo),
        ));
    }
    f
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("dgx{i}")).collect()
}

fn member(job: &str, i: usize, gpus: &str) -> Value {
    let idx = i.to_string();
    pod(
        "ns",
        &format!("{job}-{i}"),
        &format!("uid-{job}-{i}"),
        &[("nvidia.com/gpu", gpus)],
        &[(GROUP, job), (INDEX, idx.as_str())],
    )
}

fn pod_group(f: &Fixture, job: &str, min: u32) {
    f.state.gang_index_mut().pod_groups.insert(format!("ns/{job}"), min);
}

async fn schedule_all(f: &Fixture, pods: &[Value], nodes: &[String]) -> Vec<Result<String, Value>> {
    let refs: Vec<&str> = nodes.iter().map(String::as_str).collect();
    let mut out = Vec::new();
    for p in pods {
        out.push(f.schedule(p, &refs).await);
    }
    out
}

#[tokio::test]
async fn a_gang_that_fits_gets_its_planned_nodes() {
    let f = dgx_fixture(8, 60_000);
    // Something on leaf0 already: the gang should take a clean leaf group.
    let mut other = pod("ns", "other", "uid-other", &[("nvidia.com/gpu", "1")], &[]);
    other["spec"]["nodeName"] = json!("dgx1");
    f.observe(&other);
    pod_group(&f, "job", 4);
    let pods: Vec<Value> = (0..4).map(|i| member("job", i, "8")).collect();
    let nodes = names(8);
    // Members arrive out of order.
    let order = [2usize, 0, 3, 1];
    let mut bound = BTreeMap::new();
    for &i in &order {
        let refs: Vec<&str> = nodes.iter().map(String::as_str).collect();
        let node = f.schedule(&pods[i], &refs).await.expect("member placed");
        bound.insert(i, node);
    }
    let plan = f.state.view().reservation("ns/job").expect("reservation").plan.clone();
    for (i, n) in &bound {
        assert_eq!(&plan.slots[*i].node, n, "member {i} follows the plan");
    }
    let set: BTreeSet<&String> = bound.values().collect();
    assert_eq!(set.len(), 4);
    assert!(
        set.iter()
            .all(|n| ["dgx4", "dgx5", "dgx6", "dgx7"].contains(&n.as_str())),
        "{set:?}"
    );
    // Each binding carries the plan and the member's slot.
    let rec = f.binder.bound.lock().unwrap().clone();
    assert_eq!(rec.len(), 4);
    for b in &rec {
        let p: Value = serde_json::from_str(&b.annotations["railyard.dev/gang-plan"]).unwrap();
        assert_eq!(p["gang"], "ns/job");
        assert_eq!(b.annotations["railyard.dev/gpus"], "0,1,2,3,4,5,6,7");
    }
}

#[tokio::test]
async fn reserved_nodes_are_not_offered_to_other_pods() {
    let f = dgx_fixture(4, 60_000);
    pod_group(&f, "job", 2);
    let m0 = member("job", 0, "8");
    let r = f.post_json("filter", &json!({"Pod": m0, "NodeNames": names(4)})).await;
    let slot: Vec<String> = serde_json::from_value(r["NodeNames"].clone()).unwrap();
    assert_eq!(slot.len(), 1);
    assert_eq!(r["FailedNodes"].as_object().unwrap().len(), 3);
    let plan = f.state.view().reservation("ns/job").unwrap().plan.clone();
    let reserved: Vec<&str> = plan.slots.iter().map(|s| s.node.as_str()).collect();
    let single = pod("ns", "single", "uid-single", &[("nvidia.com/gpu", "1")], &[]);
    let r = f
        .post_json("filter", &json!({"Pod": single, "NodeNames": reserved}))
        .await;
    assert_eq!(r["NodeNames"], json!([]), "{r}");
    // Prioritize steers the member to its slot.
    let pr = f
        .post_json("prioritize", &json!({"Pod": m0, "NodeNames": names(4)}))
        .await;
    for h in pr.as_array().unwrap() {
        let want = if h["Host"] == slot[0].as_str() { 10 } else { 0 };
        assert_eq!(h["Score"], want);
    }
}

#[tokio::test]
async fn a_gang_that_does_not_fit_places_no_member() {
    // Two DGX nodes, one GPU taken: a gang of 2 x 8 waits (would fit empty).
    let f = dgx_fixture(2, 60_000);
    let mut other = pod("ns", "other", "uid-other", &[("nvidia.com/gpu", "1")], &[]);
    other["spec"]["nodeName"] = json!("dgx0");
    f.observe(&other);
    pod_group(&f, "wait", 2);
    let pods: Vec<Value> = (0..2).map(|i| member("wait", i, "8")).collect();
    for r in schedule_all(&f, &pods, &names(2)).await {
        let r = r.expect_err("must not place");
        assert_eq!(r["NodeNames"], json!([]));
        let failed = r["FailedNodes"].as_object().unwrap();
        assert_eq!(failed.len(), 2);
        assert!(failed["dgx1"].as_str().unwrap().contains("gang ns/wait waits"), "{r}");
        assert!(r["FailedAndUnresolvableNodes"].as_object().unwrap().is_empty());
    }
    // A gang of 3 x 8 could never fit on 2 nodes.
    pod_group(&f, "never", 3);
    let pods: Vec<Value> = (0..3).map(|i| member("never", i, "8")).collect();
    for r in schedule_all(&f, &pods, &names(2)).await {
        let r = r.expect_err("must not place");
        assert_eq!(r["FailedAndUnresolvableNodes"].as_object().unwrap().len(), 2, "{r}");
    }
    // Members of a PodGroup the API has not shown yet wait too.
    let ghost = member("ghost", 0, "8");
    let r = f
        .post_json("filter", &json!({"Pod": ghost, "NodeNames": names(2)}))
        .await;
    assert!(
        r["FailedNodes"]["dgx0"]
            .as_str()
            .unwrap()
            .contains("waiting for PodGroup ns/ghost")
    );
    assert!(f.binder.bound.lock().unwrap().is_empty());
    assert!(f.state.view().reservation("ns/wait").is_none());
}

#[tokio::test]
async fn an_extender_restart_mid_gang_rebuilds_the_reservation() {
    let f = dgx_fixture(8, 600_000);
    pod_group(&f, "job", 4);
    let pods: Vec<Value> = (0..4).map(|i| member("job", i, "8")).collect();
    for p in &pods[..2] {
        f.schedule(p, &names(8).iter().map(String::as_str).collect::<Vec<_>>())
            .await
            .expect("placed");
    }
    let plan = f.state.view().reservation("ns/job").unwrap().plan.clone();

    // A new extender process: same cluster, state only from the API. The two
    // bound members carry the binding's annotations.
    let g = dgx_fixture(8, 600_000);
    g.clock.store(f.clock.load(Ordering::Relaxed) + 1000, Ordering::Relaxed);
    pod_group(&g, "job", 4);
    for b in f.binder.bound.lock().unwrap().iter() {
        let i: usize = b.name.rsplit('-').next().unwrap().parse().unwrap();
        let mut p = pods[i].clone();
        p["spec"]["nodeName"] = json!(b.node);
        p["metadata"]["annotations"] = serde_json::to_value(&b.annotations).unwrap();
        p["status"]["phase"] = json!("Running");
        g.observe(&p);
    }
    let r = g.state.view().reservation("ns/job").expect("rebuilt").clone();
    assert_eq!(r.plan, plan);
    assert_eq!(r.held, vec![false, false, true, true]);
    // Another pod cannot take the held nodes meanwhile.
    let single = pod("ns", "single", "uid-single", &[("nvidia.com/gpu", "1")], &[]);
    let held: Vec<&str> = plan.slots[2..].iter().map(|s| s.node.as_str()).collect();
    let out = g.post_json("filter", &json!({"Pod": single, "NodeNames": held})).await;
    assert_eq!(out["NodeNames"], json!([]));
    for (i, p) in pods.iter().enumerate().skip(2) {
        let node = g
            .schedule(p, &names(8).iter().map(String::as_str).collect::<Vec<_>>())
            .await
            .expect("placed after restart");
        assert_eq!(node, plan.slots[i].node);
    }
}

#[tokio::test]
async fn an_expired_reservation_is_released_and_replanned() {
    let f = dgx_fixture(4, 1_000);
    pod_group(&f, "job", 2);
    let m0 = member("job", 0, "8");
    f.post_json("filter", &json!({"Pod": m0, "NodeNames": names(4)})).await;
    assert!(f.state.view().reservation("ns/job").is_some());
    assert_eq!(
        f.state.view().free_gpus("dgx0").unwrap().len() + f.state.view().free_gpus("dgx1").unwrap().len(),
        0
    );
    // Nobody binds; the reservation expires and its GPUs come back.
    f.clock.fetch_add(2_000, Ordering::Relaxed);
    f.state.tick();
    assert!(f.state.view().reservation("ns/job").is_none());
    assert_eq!(f.state.view().free_gpus("dgx0").unwrap().len(), 8);
    // The next member re-plans the whole gang.
    let m1 = member("job", 1, "8");
    let r = f.post_json("filter", &json!({"Pod": m1, "NodeNames": names(4)})).await;
    assert_eq!(r["NodeNames"].as_array().unwrap().len(), 1);
    assert!(f.state.view().reservation("ns/job").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_never_double_book() {
    let f = Arc::new(dgx_fixture(2, 60_000));
    let nodes = names(2);
    let mut tasks = Vec::new();
    for i in 0..24 {
        let f = f.clone();
        let nodes = nodes.clone();
        tasks.push(tokio::spawn(async move {
            let p = pod(
                "ns",
                &format!("p{i}"),
                &format!("uid-p{i}"),
                &[("nvidia.com/gpu", "1")],
                &[],
            );
            let refs: Vec<&str> = nodes.iter().map(String::as_str).collect();
            // As kube-scheduler does: retry a pod whose bind was refused.
            for _ in 0..30 {
                if f.schedule(&p, &refs).await.is_ok() {
                    return true;
                }
            }
            false
        }));
    }
    let mut placed = 0;
    for t in tasks {
        if t.await.unwrap() {
            placed += 1;
        }
    }
    assert_eq!(placed, 16);
    let bound = f.binder.bound.lock().unwrap().clone();
    let mut seen = BTreeSet::new();
    for b in &bound {
        let gpu = b.annotations["railyard.dev/gpus"].clone();
        assert!(seen.insert((b.node.clone(), gpu)), "double-booked {b:?}");
    }
    assert_eq!(seen.len(), 16);
}

/// An MPIJob-style group: `minMember` counts a launcher that asks for no
/// GPU and is never sent to the extender. Once the pod watch has seen it,
/// the gang needs one GPU member fewer.
#[tokio::test]
async fn a_gpu_less_launcher_counts_toward_min_member() {
    use kube::runtime::watcher::Event;
    let f = dgx_fixture(2, 60_000);
    pod_group(&f, "mpi", 3);
    let workers = [member("mpi", 0, "8"), member("mpi", 1, "8")];
    // Launcher not seen yet: 3 members of 8 GPUs on 2 nodes never fit.
    let r = f.schedule(&workers[0], &["dgx0", "dgx1"]).await;
    assert!(r.is_err(), "{r:?}");
    let launcher = pod("ns", "mpi-launcher", "uid-mpi-launcher", &[], &[(GROUP, "mpi")]);
    let launcher: railyard_scheduler::k8s::LeanPod = serde_json::from_value(launcher).expect("pod");
    railyard_scheduler::watch::apply_pod(&f.state, Event::Apply(launcher.clone()), &mut None);
    let placed = schedule_all(&f, &workers, &names(2)).await;
    let nodes: BTreeSet<String> = placed.into_iter().map(|r| r.expect("placed")).collect();
    assert_eq!(nodes.len(), 2, "both workers placed, one per node");
    // The launcher finishing (or being deleted) does not shrink a later gang
    // of the same group below its GPU members.
    railyard_scheduler::watch::apply_pod(&f.state, Event::Delete(launcher), &mut None);
    assert!(f.state.gang_index_mut().gpuless_members.is_empty());
}
