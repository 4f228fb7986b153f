//! The rules of owner-inferred gangs, on fixture state (owner events fed
//! to the owner watch's handler, pods through the HTTP API): any arrival
//! order, precedence of explicit groups, opting out, levels on the owner,
//! JobSet scopes and restarts, replaced owners, untrusted labels, and an
//! extender restart mid-gang.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use kube::api::DynamicObject;
use kube::runtime::watcher::Event;
use railyard_scheduler::k8s::{self, LeanPod};
use railyard_scheduler::owners::watch::{OwnerApi, apply_owner_object};
use railyard_scheduler::owners::{OwnerKind, Watched};
use serde_json::{Value, json};

use common::training::*;
use common::*;

/// `n` DGX nodes, four per leaf, every owner kind listed.
fn fixture(n: usize) -> Fixture {
    let f = Fixture::new(600_000);
    let topo = dgx_profile_json();
    for i in 0..n {
        let leaf = format!("leaf{}", i / 4);
        f.add_node(&node(
            &format!("dgx{i}"),
            &[("nvidia.com/gpu", "8")],
            &[("fabric.topograph.run/tier-0", leaf.as_str())],
            Some(&topo),
        ));
    }
    for k in OwnerKind::ALL {
        f.state.gang_index_mut().owners.watched.insert(k, Watched::Synced);
    }
    f
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("dgx{i}")).collect()
}

/// Stores `o` as the API would (a uid), and feeds it to the owner watch.
fn submit(f: &Fixture, api: OwnerApi, mut o: Value) -> Value {
    let n = o["metadata"]["name"].as_str().unwrap().to_string();
    o["metadata"]["uid"] = json!(format!("uid-{n}"));
    let d: DynamicObject = serde_json::from_value(o.clone()).unwrap();
    apply_owner_object(&f.state, api, Event::Apply(d), &mut None);
    o
}

fn with_uid(mut p: Value) -> Value {
    let n = p["metadata"]["name"].as_str().unwrap().to_string();
    p["metadata"]["uid"] = json!(format!("uid-{n}"));
    p
}

async fn filter(f: &Fixture, p: &Value, n: usize) -> Value {
    f.post_json("filter", &json!({"Pod": p, "NodeNames": names(n)})).await
}

fn lean(p: &Value) -> LeanPod {
    serde_json::from_value(p.clone()).unwrap()
}

fn spec_of(f: &Fixture, p: &Value) -> Result<Option<railyard_core::extender::GangSpec>, String> {
    let p = lean(p);
    let ask = k8s::pod_ask(&p).unwrap();
    k8s::gang_spec(&p, &ask, &f.state.gangs.read().unwrap())
}

fn job_with(parallelism: u32, annotations: Value) -> Value {
    let mut j = example("indexed-job.yaml");
    j["metadata"]["name"] = json!("job");
    j["metadata"]["annotations"] = annotations;
    j["spec"]["parallelism"] = json!(parallelism);
    j["spec"]["completions"] = json!(parallelism);
    j
}

/// Every one of the 24 arrival orders of a 4-member Indexed Job places
/// each member in its rank's slot, four nodes under one leaf.
#[tokio::test]
async fn every_arrival_order_places_members_by_rank() {
    let mut perm: Vec<usize> = (0..4).collect();
    let mut orders = Vec::new();
    // Heap's algorithm, iteratively: all 24 orders.
    let mut c = [0usize; 4];
    orders.push(perm.clone());
    let mut i = 0;
    while i < 4 {
        if c[i] < i {
            let j = if i % 2 == 0 { 0 } else { c[i] };
            perm.swap(j, i);
            orders.push(perm.clone());
            c[i] += 1;
            i = 0;
        } else {
            c[i] = 0;
            i += 1;
        }
    }
    assert_eq!(orders.len(), 24);
    for order in orders {
        let f = fixture(8);
        let job = submit(&f, OwnerApi::Job, job_with(4, json!({})));
        let pods: Vec<Value> = indexed_job_pods(&job, &json!({})).into_iter().map(with_uid).collect();
        let refs: Vec<String> = names(8);
        let refs: Vec<&str> = refs.iter().map(String::as_str).collect();
        let mut at = vec![String::new(); 4];
        for &i in &order {
            at[i] = f.schedule(&pods[i], &refs).await.expect("placed");
        }
        let plan = f.state.view().reservation("ml/Job:job").expect("reserved").plan.clone();
        for (rank, node) in at.iter().enumerate() {
            assert_eq!(&plan.slots[rank].node, node, "order {order:?}: rank {rank}");
        }
        let nodes: BTreeSet<&String> = at.iter().collect();
        assert_eq!(nodes.len(), 4, "order {order:?}");
    }
}

#[tokio::test]
async fn an_explicit_pod_group_wins_over_the_owner() {
    let f = fixture(8);
    let job = submit(&f, OwnerApi::Job, job_with(4, json!({})));
    let mut p = with_uid(indexed_job_pods(&job, &json!({})).remove(0));
    p["metadata"]["labels"]["scheduling.x-k8s.io/pod-group"] = json!("pg");
    let r = filter(&f, &p, 8).await;
    assert!(
        r["FailedNodes"]["dgx0"]
            .as_str()
            .unwrap()
            .contains("waiting for PodGroup ml/pg"),
        "{r}"
    );
    f.state.gang_index_mut().pod_groups.insert("ml/pg".into(), 2);
    assert_eq!(spec_of(&f, &p).unwrap().unwrap().id, "ml/pg");
}

#[tokio::test]
async fn the_gang_annotation_opts_out_on_the_owner_or_the_pod_and_refuses_other_values() {
    let f = fixture(8);
    let job = submit(&f, OwnerApi::Job, job_with(4, json!({"railyard.dev/gang": "false"})));
    let p = with_uid(indexed_job_pods(&job, &json!({})).remove(0));
    assert_eq!(spec_of(&f, &p), Ok(None));
    let r = filter(&f, &p, 8).await;
    assert_eq!(r["NodeNames"].as_array().unwrap().len(), 8, "placed alone: {r}");

    let job = submit(&f, OwnerApi::Job, job_with(4, json!({})));
    let mut p = with_uid(indexed_job_pods(&job, &json!({})).remove(1));
    p["metadata"]["annotations"]["railyard.dev/gang"] = json!("False");
    assert_eq!(spec_of(&f, &p), Ok(None));
    p["metadata"]["annotations"]["railyard.dev/gang"] = json!("maybe");
    let e = spec_of(&f, &p).expect_err("refused");
    assert!(e.contains("railyard.dev/gang") && e.contains("\"maybe\""), "{e}");

    let job = submit(&f, OwnerApi::Job, job_with(4, json!({"railyard.dev/gang": "yes"})));
    let p = with_uid(indexed_job_pods(&job, &json!({})).remove(0));
    let e = spec_of(&f, &p).expect_err("refused");
    assert!(e.contains("Job ml/job") && e.contains("\"yes\""), "{e}");
}

#[tokio::test]
async fn levels_on_the_owner_apply_unless_the_pod_sets_its_own() {
    let f = fixture(8);
    let ann = json!({"railyard.dev/gang-required-level": "tier-0", "railyard.dev/gang-preferred-level": "node"});
    let job = submit(&f, OwnerApi::Job, job_with(4, ann));
    let mut p = with_uid(indexed_job_pods(&job, &json!({})).remove(0));
    let s = spec_of(&f, &p).unwrap().unwrap();
    assert_eq!(
        (s.required.as_deref(), s.preferred.as_deref()),
        (Some("tier-0"), Some("node"))
    );
    p["metadata"]["annotations"]["railyard.dev/gang-required-level"] = json!("cluster");
    let s = spec_of(&f, &p).unwrap().unwrap();
    assert_eq!(
        (s.required.as_deref(), s.preferred.as_deref()),
        (Some("cluster"), Some("node"))
    );
}

/// Only Indexed Jobs running every index at once are gangs.
#[tokio::test]
async fn a_job_with_more_completions_than_parallelism_is_not_a_gang() {
    let f = fixture(8);
    let mut j = job_with(4, json!({}));
    j["spec"]["completions"] = json!(8);
    let job = submit(&f, OwnerApi::Job, j);
    let p = with_uid(indexed_job_pods(&job, &json!({})).remove(0));
    assert_eq!(spec_of(&f, &p), Ok(None));
}

fn jobset_two_kinds(scope: Option<&str>, driver_gpus: &str) -> Value {
    let mut js = example("jobset.yaml");
    js["metadata"]["name"] = json!("js");
    if let Some(s) = scope {
        js["metadata"]["annotations"]["railyard.dev/gang-scope"] = json!(s);
    }
    let mut driver = js["spec"]["replicatedJobs"][0].clone();
    driver["name"] = json!("driver");
    driver["replicas"] = json!(1);
    driver["template"]["spec"]["parallelism"] = json!(2);
    driver["template"]["spec"]["completions"] = json!(2);
    driver["template"]["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] =
        json!(driver_gpus);
    let workers = js["spec"]["replicatedJobs"][0].clone();
    js["spec"]["replicatedJobs"] = json!([driver, workers]);
    js
}

/// The JobSet's pods, per Job as the JobSet and Job controllers label them.
fn jobset_pods(js: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for mut job in jobset_jobs(js) {
        let n = job["metadata"]["name"].as_str().unwrap().to_string();
        job["metadata"]["uid"] = json!(format!("uid-{n}"));
        let labels = job["metadata"]["labels"].clone();
        out.extend(indexed_job_pods(&job, &labels).into_iter().map(with_uid));
    }
    out
}

#[tokio::test]
async fn a_jobset_is_one_gang_or_one_per_replicated_job() {
    let f = fixture(8);
    // Whole JobSet: driver (2 pods) then workers (2 x 2), 6 members.
    let js = submit(&f, OwnerApi::JobSet, jobset_two_kinds(None, "8"));
    let pods = jobset_pods(&js);
    let ranks: Vec<(String, u32, Option<u32>)> = pods
        .iter()
        .map(|p| {
            let lp = lean(p);
            let ask = k8s::pod_ask(&lp).unwrap();
            let (s, r) = k8s::gang_member(&lp, &ask, &f.state.gangs.read().unwrap())
                .unwrap()
                .unwrap();
            (s.id, s.min_members, r)
        })
        .collect();
    let want: Vec<(String, u32, Option<u32>)> = (0..6).map(|r| ("ml/JobSet:js@0".to_string(), 6, Some(r))).collect();
    assert_eq!(ranks, want);

    // Per replicated job: two gangs, ranked within each.
    let js = submit(&f, OwnerApi::JobSet, jobset_two_kinds(Some("replicated-job"), "8"));
    let specs: Vec<(String, u32)> = jobset_pods(&js)
        .iter()
        .map(|p| {
            let s = spec_of(&f, p).unwrap().unwrap();
            (s.id, s.min_members)
        })
        .collect();
    assert_eq!(&specs[0], &("ml/JobSet:js@0/driver".to_string(), 2));
    assert_eq!(&specs[2], &("ml/JobSet:js@0/workers".to_string(), 4));

    // Members asking different GPU counts cannot be one gang: refused, with
    // the way out.
    let js = submit(&f, OwnerApi::JobSet, jobset_two_kinds(None, "4"));
    let e = spec_of(&f, &jobset_pods(&js)[0]).expect_err("refused");
    assert!(
        e.contains("4 for driver, 8 for workers") && e.contains("railyard.dev/gang-scope"),
        "{e}"
    );
    // A GPU-less driver is no member: the workers are the gang.
    let js = submit(&f, OwnerApi::JobSet, jobset_two_kinds(None, "0"));
    let pods = jobset_pods(&js);
    assert_eq!(spec_of(&f, &pods[0]), Ok(None));
    let s = spec_of(&f, &pods[2]).unwrap().unwrap();
    assert_eq!(s.min_members, 4);
    let bad = submit(&f, OwnerApi::JobSet, {
        let mut j = jobset_two_kinds(Some("per-pod"), "8");
        j["metadata"]["name"] = json!("js");
        j
    });
    let e = spec_of(&f, &jobset_pods(&bad)[0]).expect_err("refused");
    assert!(
        e.contains("railyard.dev/gang-scope") && e.contains("\"per-pod\""),
        "{e}"
    );
}

#[tokio::test]
async fn a_restarted_jobset_is_a_new_gang_and_a_replaced_owner_holds_its_old_pods() {
    let f = fixture(8);
    let js = submit(&f, OwnerApi::JobSet, jobset_two_kinds(None, "8"));
    let mut p = jobset_pods(&js).remove(0);
    p["metadata"]["labels"]["jobset.sigs.k8s.io/restart-attempt"] = json!("1");
    assert_eq!(spec_of(&f, &p).unwrap().unwrap().id, "ml/JobSet:js@1");
    // Deleted and created again under the same name: a new uid. Pods of
    // the old one (still being deleted) wait rather than join.
    let mut again = jobset_two_kinds(None, "8");
    again["metadata"]["name"] = json!("js");
    let d: DynamicObject = serde_json::from_value({
        let mut a = again.clone();
        a["metadata"]["uid"] = json!("uid-js-2");
        a
    })
    .unwrap();
    apply_owner_object(&f.state, OwnerApi::JobSet, Event::Apply(d), &mut None);
    let e = spec_of(&f, &p).expect_err("waits");
    assert!(e.contains("uid-js") && e.contains("uid-js-2"), "{e}");
}

/// Labels are untrusted: a value that does not parse is a reason naming
/// the label and the value, never a panic or a silent solo placement.
#[tokio::test]
async fn bad_labels_give_a_reason() {
    let f = fixture(8);
    let js = submit(&f, OwnerApi::JobSet, jobset_two_kinds(None, "8"));
    let pj = submit(&f, OwnerApi::PyTorchJob, example("pytorchjob.yaml"));
    let lws = submit(&f, OwnerApi::LeaderWorkerSet, example("leaderworkerset.yaml"));
    let js_pod = jobset_pods(&js).remove(0);
    let pj_pod = with_uid(pytorchjob_pods(&pj).remove(1));
    let lws_pod = with_uid(lws_group_pods(&lws, 0).remove(1));
    let cases: Vec<(Value, &str, Value, &str)> = vec![
        (js_pod.clone(), "jobset.sigs.k8s.io/job-index", json!("one"), "\"one\""),
        (js_pod.clone(), "jobset.sigs.k8s.io/job-index", json!("-1"), "\"-1\""),
        (
            js_pod.clone(),
            "jobset.sigs.k8s.io/replicatedjob-name",
            json!("ghost"),
            "\"ghost\"",
        ),
        (
            js_pod.clone(),
            "batch.kubernetes.io/job-completion-index",
            json!("7"),
            "7 is not below",
        ),
        (
            pj_pod.clone(),
            "training.kubeflow.org/replica-type",
            json!("chief"),
            "\"chief\"",
        ),
        (
            pj_pod.clone(),
            "training.kubeflow.org/replica-index",
            json!("99"),
            "index 99",
        ),
        (
            pj_pod.clone(),
            "training.kubeflow.org/replica-index",
            json!("1e3"),
            "\"1e3\"",
        ),
        (
            lws_pod.clone(),
            "leaderworkerset.sigs.k8s.io/worker-index",
            json!("x"),
            "\"x\"",
        ),
        (
            lws_pod.clone(),
            "leaderworkerset.sigs.k8s.io/group-index",
            json!("g"),
            "\"g\"",
        ),
    ];
    for (mut p, key, value, why) in cases {
        p["metadata"]["labels"][key] = value.clone();
        if p["metadata"]["annotations"].get(key).is_some() {
            p["metadata"]["annotations"][key] = value.clone();
        }
        let r = filter(&f, &p, 8).await;
        let reason = r["FailedNodes"]["dgx0"].as_str().unwrap_or_default();
        assert!(reason.contains(why), "{key}={value}: {r}");
        assert_eq!(r["NodeNames"], json!([]), "{key}={value}: not placed alone");
    }
    // A missing label, too.
    let mut p = lws_pod;
    p["metadata"]["labels"]
        .as_object_mut()
        .unwrap()
        .remove("leaderworkerset.sigs.k8s.io/worker-index");
    let r = filter(&f, &p, 8).await;
    assert!(
        r["FailedNodes"]["dgx0"]
            .as_str()
            .unwrap()
            .contains("no leaderworkerset.sigs.k8s.io/worker-index"),
        "{r}"
    );
}

/// A pod naming an owner the index has not seen waits, naming it; one of
/// a kind still listing waits too.
#[tokio::test]
async fn members_wait_for_their_owner() {
    let f = fixture(8);
    let job = job_with(4, json!({}));
    let mut stored = job.clone();
    stored["metadata"]["uid"] = json!("uid-job");
    let p = with_uid(indexed_job_pods(&stored, &json!({})).remove(0));
    let e = spec_of(&f, &p).expect_err("waits");
    assert!(e.contains("waiting for Job ml/job (batch)"), "{e}");
    f.state
        .gang_index_mut()
        .owners
        .watched
        .insert(OwnerKind::Job, Watched::Listing);
    let e = spec_of(&f, &p).expect_err("waits");
    assert!(e.contains("still listing"), "{e}");
    submit(&f, OwnerApi::Job, job);
    assert_eq!(spec_of(&f, &p).unwrap().unwrap().min_members, 4);
}

/// A new extender process mid-gang rebuilds the reservation from the
/// signed plans on the bound members, with the inferred gang's id.
#[tokio::test]
async fn an_extender_restart_mid_gang_rebuilds_an_inferred_gang() {
    let f = fixture(8);
    let pj = submit(&f, OwnerApi::PyTorchJob, example("pytorchjob.yaml"));
    let pods: Vec<Value> = pytorchjob_pods(&pj).into_iter().map(with_uid).collect();
    let refs = names(8);
    let refs: Vec<&str> = refs.iter().map(String::as_str).collect();
    for p in &pods[..2] {
        f.schedule(p, &refs).await.expect("placed");
    }
    let plan = f
        .state
        .view()
        .reservation("ml/PyTorchJob:resnet-ddp")
        .unwrap()
        .plan
        .clone();

    let g = fixture(8);
    g.clock.store(f.clock.load(Ordering::Relaxed) + 1000, Ordering::Relaxed);
    submit(&g, OwnerApi::PyTorchJob, example("pytorchjob.yaml"));
    for b in f.binder.bound.lock().unwrap().iter() {
        let mut p = pods
            .iter()
            .find(|p| p["metadata"]["name"] == b.name.as_str())
            .unwrap()
            .clone();
        p["spec"]["nodeName"] = json!(b.node);
        p["metadata"]["annotations"] = serde_json::to_value(&b.annotations).unwrap();
        p["status"]["phase"] = json!("Running");
        g.observe(&p);
    }
    let r = g
        .state
        .view()
        .reservation("ml/PyTorchJob:resnet-ddp")
        .expect("rebuilt")
        .clone();
    assert_eq!(r.plan, plan);
    for (i, p) in pods.iter().enumerate().skip(2) {
        let node = g.schedule(p, &refs).await.expect("placed after restart");
        assert_eq!(node, plan.slots[i].node, "rank {i}");
    }
}

/// A bind for a member this extender never filtered (it restarted between
/// kube-scheduler's filter and bind) claims the slot of the member's rank
/// from its owner, as filter would have.
#[tokio::test]
async fn an_unfiltered_bind_claims_the_slot_of_the_owner_rank() {
    let f = fixture(8);
    // worker-0: rank 1 (the master is 0), though its replica index is 0.
    let pj = submit(&f, OwnerApi::PyTorchJob, example("pytorchjob.yaml"));
    let p = with_uid(pytorchjob_pods(&pj).remove(1));
    let name = p["metadata"]["name"].as_str().unwrap().to_string();
    f.binder.pods.lock().unwrap().insert(format!("ml/{name}"), lean(&p));
    let bind =
        |node: &str| json!({"PodName": name, "PodNamespace": "ml", "PodUID": p["metadata"]["uid"], "Node": node});
    let first = f.post_json("bind", &bind("dgx0")).await;
    let plan = f
        .state
        .view()
        .reservation("ml/PyTorchJob:resnet-ddp")
        .expect("planned at bind")
        .plan
        .clone();
    let slot = plan.slots[1].node.clone();
    if slot == "dgx0" {
        assert_eq!(first["Error"].as_str().unwrap_or(""), "", "{first}");
    } else {
        assert!(
            first["Error"]
                .as_str()
                .unwrap()
                .contains(&format!("reserved on {slot}")),
            "{first}"
        );
        let again = f.post_json("bind", &bind(&slot)).await;
        assert_eq!(again["Error"].as_str().unwrap_or(""), "", "{again}");
    }
    let bound = f.binder.bound.lock().unwrap().clone();
    assert_eq!(bound.len(), 1);
    assert_eq!(bound[0].node, slot, "rank 1 in slot 1");
    assert_eq!(bound[0].annotations["railyard.dev/gang-slot"], "1");
}
