//! Gangs without a PodGroup, end to end on a stateful fake API server: the
//! user submits a training workload (the manifests in
//! `configs/examples/training/`), the test plays its controller (pods
//! created one by one with that controller's labels and ownerReferences,
//! see `common/training.rs`), and the extender, with its real watches and
//! binder, places each workload as one all-or-nothing gang in rank order,
//! through kube-scheduler's filter → prioritize → bind.
//!
//! Nothing is timed: each step waits for the state it needs, with a
//! generous bound.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::Request;
use k8s_openapi::api::batch::v1::Job;
use railyard_core::extender::ViewConfig;
use railyard_scheduler::binder::KubeBinder;
use railyard_scheduler::owners::{OwnerKind, Watched};
use railyard_scheduler::{AppState, Config, app};
use railyard_test_util::fake_api::{Builder, FakeApiServer, ResourceType};
use serde_json::{Value, json};
use tower::ServiceExt;

use common::training::*;
use common::{dgx_profile_json, test_key};

const PREFIX: &str = "/railyard";
/// Bound on every wait; the waits end as soon as their state is reached.
const T: Duration = Duration::from_secs(60);

/// `batch/v1` Jobs, validated as the API server decodes them.
fn jobs() -> ResourceType {
    ResourceType {
        validate: Some(|v| {
            serde_json::from_value::<Job>(v.clone())
                .map(|_| ())
                .map_err(|e| e.to_string())
        }),
        ..ResourceType::custom("batch", "v1", "Job", "jobs", true)
    }
}

/// A cluster with every owner kind's API installed.
fn with_all_crds() -> Builder {
    FakeApiServer::builder()
        .custom(jobs())
        .custom(ResourceType::custom(
            "jobset.x-k8s.io",
            "v1alpha2",
            "JobSet",
            "jobsets",
            true,
        ))
        .custom(ResourceType::custom(
            "kubeflow.org",
            "v1",
            "PyTorchJob",
            "pytorchjobs",
            true,
        ))
        .custom(ResourceType::custom(
            "kubeflow.org",
            "v2beta1",
            "MPIJob",
            "mpijobs",
            true,
        ))
        .custom(ResourceType::custom(
            "leaderworkerset.x-k8s.io",
            "v1",
            "LeaderWorkerSet",
            "leaderworkersets",
            true,
        ))
}

struct Cluster {
    api: FakeApiServer,
    state: Arc<AppState>,
    nodes: Vec<String>,
    watch: tokio::task::JoinHandle<()>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.watch.abort();
    }
}

/// `n` DGX H100 nodes, four per leaf switch (`dgx0-3` on leaf0, …), and the
/// extender watching the fake; returns once it is ready.
async fn cluster(b: Builder, n: usize) -> Cluster {
    let api = b.start().await.expect("fake API");
    let topo = dgx_profile_json();
    let nodes: Vec<String> = (0..n).map(|i| format!("dgx{i}")).collect();
    for (i, name) in nodes.iter().enumerate() {
        let mut node = common::node(
            name,
            &[("nvidia.com/gpu", "8")],
            &[("fabric.topograph.run/tier-0", &format!("leaf{}", i / 4))],
            Some(&topo),
        );
        node["apiVersion"] = json!("v1");
        node["kind"] = json!("Node");
        api.create(node).expect("node");
    }
    let client = api.client().expect("client");
    let state = Arc::new(
        AppState::new(
            Config {
                url_prefix: PREFIX.into(),
                view: ViewConfig {
                    reservation_ttl_ms: 600_000,
                    ..ViewConfig::default()
                },
            },
            Arc::new(KubeBinder::new(client.clone())),
            prometheus_client::registry::Registry::default(),
        )
        .with_decision_key(test_key()),
    );
    let watch = tokio::spawn(railyard_scheduler::watch::run(client, state.clone()));
    let c = Cluster {
        api,
        state,
        nodes,
        watch,
    };
    let n_nodes = c.nodes.len();
    c.until("ready with every node", move |s| {
        s.ready.load(std::sync::atomic::Ordering::Relaxed) && s.view().node_count() == n_nodes
    })
    .await;
    c
}

impl Cluster {
    async fn until(&self, what: &str, cond: impl Fn(&AppState) -> bool) {
        let poll = async {
            while !cond(&self.state) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        assert!(tokio::time::timeout(T, poll).await.is_ok(), "never: {what}");
    }

    fn create(&self, obj: Value) -> Value {
        self.api.create(obj).unwrap_or_else(|e| panic!("create: {e:?}"))
    }

    /// Submits an example manifest; returns it as stored once the
    /// extender's owner index has it.
    async fn submit(&self, file: &str, kind: OwnerKind) -> Value {
        let stored = self.create(example(file));
        let key = format!(
            "{}/{}",
            stored["metadata"]["namespace"].as_str().unwrap(),
            stored["metadata"]["name"].as_str().unwrap()
        );
        self.until(&format!("{kind:?} {key} in the owner index"), |s| {
            s.gangs.read().unwrap().owners.get(kind, &key).is_some()
        })
        .await;
        stored
    }

    async fn post(&self, verb: &str, body: &Value) -> Value {
        let req = Request::post(format!("{PREFIX}/{verb}"))
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let resp = app(self.state.clone()).oneshot(req).await.unwrap();
        assert!(resp.status().is_success(), "{verb}: {}", resp.status());
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    /// kube-scheduler's filter → prioritize → bind for `pod` over every
    /// node. `Ok((node, candidates))`, or the filter answer when no node
    /// passed.
    async fn schedule(&self, pod: &Value) -> Result<(String, usize), Value> {
        let f = self
            .post("filter", &json!({"Pod": pod, "Nodes": null, "NodeNames": self.nodes}))
            .await;
        let passed: Vec<String> = serde_json::from_value(f["NodeNames"].clone()).unwrap_or_default();
        if passed.is_empty() || !f["Error"].as_str().unwrap_or("").is_empty() {
            return Err(f);
        }
        let p = self
            .post("prioritize", &json!({"Pod": pod, "Nodes": null, "NodeNames": passed}))
            .await;
        let best = p
            .as_array()
            .unwrap()
            .iter()
            .max_by_key(|h| h["Score"].as_i64().unwrap_or(0))
            .unwrap()["Host"]
            .as_str()
            .unwrap()
            .to_string();
        let md = &pod["metadata"];
        let b = self
            .post(
                "bind",
                &json!({"PodName": md["name"], "PodNamespace": md["namespace"], "PodUID": md["uid"], "Node": best}),
            )
            .await;
        assert_eq!(b["Error"].as_str().unwrap_or(""), "", "bind: {b}");
        Ok((best, passed.len()))
    }

    /// Places gang `id`'s members in the order given, each `(pod, rank)`:
    /// every member is filtered to exactly one node, its plan slot (the
    /// slot of its rank), and bound there through the API; the gang stays
    /// within one leaf switch.
    async fn place_gang(&self, id: &str, members: &[(Value, u32)]) {
        let mut at: BTreeMap<u32, String> = BTreeMap::new();
        for (pod, rank) in members {
            let name = pod["metadata"]["name"].as_str().unwrap();
            let (node, candidates) = self
                .schedule(pod)
                .await
                .unwrap_or_else(|f| panic!("{name} (rank {rank}) not placed: {f}"));
            assert_eq!(candidates, 1, "{name}: a gang member is filtered to its slot");
            at.insert(*rank, node.clone());
            let stored = self.api.get("v1", "Pod", "ml", name).unwrap();
            assert_eq!(stored["spec"]["nodeName"], json!(node), "{name} bound through the API");
        }
        let plan = self
            .state
            .view()
            .reservation(id)
            .unwrap_or_else(|| panic!("a reservation for {id}"))
            .plan
            .clone();
        assert_eq!(plan.slots.len(), members.len(), "{id}: one slot per member");
        for (rank, node) in &at {
            assert_eq!(
                &plan.slots[*rank as usize].node, node,
                "{id}: rank {rank} is in its own slot"
            );
        }
        let distinct: BTreeSet<&String> = at.values().collect();
        assert_eq!(distinct.len(), members.len(), "{id}: one 8-GPU member per node");
        let leaves: BTreeSet<usize> = at
            .values()
            .map(|n| n.trim_start_matches("dgx").parse::<usize>().unwrap() / 4)
            .collect();
        assert_eq!(leaves.len(), 1, "{id}: within one leaf ({at:?})");
    }
}

/// A pod's rank label value, for the expected rank.
fn label_u32(p: &Value, key: &str) -> u32 {
    p["metadata"]["labels"][key].as_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_indexed_job_is_one_gang_ranked_by_completion_index() {
    let c = cluster(with_all_crds(), 8).await;
    let job = c.submit("indexed-job.yaml", OwnerKind::Job).await;
    let pods = indexed_job_pods(&job, &json!({}));
    // The Job controller creates the pods one by one, in no set order.
    let mut stored = BTreeMap::new();
    for i in [3usize, 1, 0, 2] {
        stored.insert(i, c.create(pods[i].clone()));
    }
    let order: Vec<(Value, u32)> = [2usize, 0, 3, 1]
        .iter()
        .map(|&i| (stored[&i].clone(), i as u32))
        .collect();
    c.place_gang("ml/Job:llama-finetune", &order).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobset_is_one_gang_over_its_jobs_ranked_by_job_then_completion_index() {
    let c = cluster(with_all_crds(), 8).await;
    let js = c.submit("jobset.yaml", OwnerKind::JobSet).await;
    let mut members = Vec::new();
    for job in jobset_jobs(&js) {
        // The JobSet controller creates the Jobs (Indexed Jobs themselves:
        // their pods still belong to the JobSet's gang, not the Job's).
        let job = c.create(job);
        let j: u32 = job["metadata"]["labels"]["jobset.sigs.k8s.io/job-index"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let labels = jobset_labels(&js, "workers", u64::from(j), 2);
        for p in indexed_job_pods(&job, &labels) {
            let p = c.create(p);
            let rank = 2 * j + label_u32(&p, "batch.kubernetes.io/job-completion-index");
            members.push((p, rank));
        }
    }
    members.reverse();
    c.place_gang("ml/JobSet:gpt-pretrain@0", &members).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pytorchjob_is_one_gang_with_the_master_at_rank_0() {
    let c = cluster(with_all_crds(), 8).await;
    let pj = c.submit("pytorchjob.yaml", OwnerKind::PyTorchJob).await;
    let mut members: Vec<(Value, u32)> = pytorchjob_pods(&pj)
        .into_iter()
        .map(|p| {
            let p = c.create(p);
            let master = p["metadata"]["labels"]["training.kubeflow.org/replica-type"] == "master";
            let i = label_u32(&p, "training.kubeflow.org/replica-index");
            (p, if master { 0 } else { 1 + i })
        })
        .collect();
    // Workers reach the scheduler first; the master last.
    members.rotate_left(1);
    c.place_gang("ml/PyTorchJob:resnet-ddp", &members).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mpijob_is_one_gang_of_its_workers_and_the_launcher_goes_alone() {
    let c = cluster(with_all_crds(), 8).await;
    let mj = c.submit("mpijob.yaml", OwnerKind::MpiJob).await;
    // mpi-operator: the launcher is a Job's pod; workers are the MPIJob's.
    let launcher_job = c.create(mpijob_launcher_job(&mj));
    let launcher = c.create(mpijob_launcher_pod(&launcher_job));
    let workers: Vec<Value> = mpijob_worker_pods(&mj).into_iter().map(|p| c.create(p)).collect();
    // The GPU-less launcher first: placed on its own, any node will do.
    let (_, candidates) = c.schedule(&launcher).await.expect("launcher placed");
    assert!(candidates > 1, "the launcher is not held to a gang slot");
    let members: Vec<(Value, u32)> = [3usize, 1, 2, 0]
        .iter()
        .map(|&i| (workers[i].clone(), i as u32))
        .collect();
    c.place_gang("ml/MPIJob:nccl-allreduce", &members).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_leaderworkerset_group_is_its_own_gang_ranked_by_worker_index() {
    let c = cluster(with_all_crds(), 8).await;
    let lws = c.submit("leaderworkerset.yaml", OwnerKind::LeaderWorkerSet).await;
    let g0 = lws_group_pods(&lws, 0);
    let g1 = lws_group_pods(&lws, 1);
    // Both groups' pods are created interleaved, leaders first.
    let mut s0 = Vec::new();
    let mut s1 = Vec::new();
    for (a, b) in g0.into_iter().zip(g1) {
        s0.push(c.create(a));
        s1.push(c.create(b));
    }
    let rank = |p: &Value| label_u32(p, "leaderworkerset.sigs.k8s.io/worker-index");
    let m1: Vec<(Value, u32)> = s1.iter().rev().map(|p| (p.clone(), rank(p))).collect();
    let m0: Vec<(Value, u32)> = s0.iter().map(|p| (p.clone(), rank(p))).collect();
    c.place_gang("ml/LeaderWorkerSet:llama-405b/1", &m1).await;
    c.place_gang("ml/LeaderWorkerSet:llama-405b/0", &m0).await;
}

/// All or nothing: a PyTorchJob of four 8-GPU members on three nodes
/// places no member at all, whatever order they come in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gang_that_cannot_fit_places_no_member() {
    let c = cluster(with_all_crds(), 3).await;
    let pj = c.submit("pytorchjob.yaml", OwnerKind::PyTorchJob).await;
    for p in pytorchjob_pods(&pj).into_iter().rev() {
        let p = c.create(p);
        let f = c.schedule(&p).await.expect_err("no member placed");
        let never = f["FailedAndUnresolvableNodes"].as_object().map_or(0, |m| m.len());
        assert_eq!(never, 3, "a gang larger than the cluster is unresolvable: {f}");
    }
    for p in c.api.list("v1", "Pod") {
        assert!(p["spec"]["nodeName"].is_null(), "nothing bound: {p}");
    }
}

/// An Indexed Job deleted with half its gang bound: the remaining members
/// are not placed, and say why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_deleted_mid_gang_places_no_further_member() {
    let c = cluster(with_all_crds(), 8).await;
    let job = c.submit("indexed-job.yaml", OwnerKind::Job).await;
    let pods: Vec<Value> = indexed_job_pods(&job, &json!({}))
        .into_iter()
        .map(|p| c.create(p))
        .collect();
    for p in &pods[..2] {
        let (_, candidates) = c.schedule(p).await.expect("placed while the Job exists");
        assert_eq!(candidates, 1);
    }
    c.api.delete("batch/v1", "Job", "ml", "llama-finetune").expect("delete");
    c.until("the Job is gone from the owner index", |s| {
        s.gangs
            .read()
            .unwrap()
            .owners
            .get(OwnerKind::Job, "ml/llama-finetune")
            .is_none()
    })
    .await;
    for p in &pods[2..] {
        let f = c.schedule(p).await.expect_err("not placed");
        let why = f["FailedNodes"]["dgx0"].as_str().unwrap_or_default().to_string();
        assert!(
            why.contains("Job ml/llama-finetune") && why.contains("was deleted"),
            "{f}"
        );
        let name = p["metadata"]["name"].as_str().unwrap();
        assert!(c.api.get("v1", "Pod", "ml", name).unwrap()["spec"]["nodeName"].is_null());
    }
}

/// An owner deleted while the extender's watch is down (the API server
/// restarted, its history compacted): the relist drops it, the rest of its
/// members are told it was deleted, and an owner that stayed is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_deleted_while_the_watch_was_down_goes_at_the_relist() {
    let c = cluster(with_all_crds(), 8).await;
    let job = c.submit("indexed-job.yaml", OwnerKind::Job).await;
    c.submit("pytorchjob.yaml", OwnerKind::PyTorchJob).await;
    let pods: Vec<Value> = indexed_job_pods(&job, &json!({}))
        .into_iter()
        .map(|p| c.create(p))
        .collect();
    // Every later request to the Job watch fails until the history is gone.
    c.api.fail_next("GET", "/apis/batch/v1/jobs", 503, 3);
    c.api.close_watches();
    c.api.delete("batch/v1", "Job", "ml", "llama-finetune").expect("delete");
    c.api.compact();
    c.until("the relist dropped the Job", |s| {
        s.gangs
            .read()
            .unwrap()
            .owners
            .get(OwnerKind::Job, "ml/llama-finetune")
            .is_none()
    })
    .await;
    let f = c.schedule(&pods[0]).await.expect_err("not placed");
    assert!(
        f["FailedNodes"]["dgx0"].as_str().unwrap().contains("was deleted"),
        "{f}"
    );
    let g = c.state.gangs.read().unwrap();
    assert!(g.owners.get(OwnerKind::PyTorchJob, "ml/resnet-ddp").is_some());
    assert_eq!(g.owners.watched(OwnerKind::Job), Watched::Synced);
}

/// A cluster without the CRDs: the extender runs (ready, nodes watched);
/// pods naming an owner kind it cannot watch are placed one by one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absent_crds_are_skipped_and_their_pods_go_alone() {
    let c = cluster(FakeApiServer::builder(), 4).await;
    c.until("discovery found no owner API", |s| {
        let g = s.gangs.read().unwrap();
        OwnerKind::ALL.iter().all(|k| g.owners.watched(*k) == Watched::No)
    })
    .await;
    let js = json!({"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet",
                    "metadata": {"name": "js", "namespace": "ml", "uid": "js-uid"}});
    let job = json!({"apiVersion": "batch/v1", "kind": "Job",
                     "metadata": {"name": "js-workers-0", "namespace": "ml", "uid": "job-uid"},
                     "spec": {"parallelism": 2, "template": example("jobset.yaml")["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]}});
    let p = c.create(indexed_job_pods(&job, &jobset_labels(&js, "workers", 0, 2)).remove(0));
    let (_, candidates) = c.schedule(&p).await.expect("placed alone");
    assert_eq!(candidates, 4, "not held to a gang slot");
}

/// The extender's RBAC lacks Jobs: the kind is marked refused and Job pods
/// are placed one by one rather than wait for an owner it cannot see.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_kind_the_api_refuses_does_not_hold_pods_back() {
    let api_b = with_all_crds();
    let c = cluster(api_b, 4).await;
    c.api.fail_next("GET", "/apis/batch/v1/jobs", 403, u32::MAX);
    c.api.close_watches();
    // Jobs were listed before the refusal: still trusted (Synced). A new
    // extender that is refused from the start marks the kind refused.
    let client = c.api.client().unwrap();
    let fresh = Arc::new(AppState::new(
        Config {
            url_prefix: PREFIX.into(),
            view: ViewConfig::default(),
        },
        Arc::new(KubeBinder::new(client.clone())),
        prometheus_client::registry::Registry::default(),
    ));
    let w = tokio::spawn(railyard_scheduler::watch::run(client, fresh.clone()));
    let poll = async {
        while fresh.gangs.read().unwrap().owners.watched(OwnerKind::Job) != Watched::Refused {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    assert!(tokio::time::timeout(T, poll).await.is_ok(), "Jobs never marked refused");
    // The other kinds' watches run on their own: they finish listing,
    // before or after the refusal.
    let synced = async {
        while fresh.gangs.read().unwrap().owners.watched(OwnerKind::JobSet) == Watched::Listing {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    assert!(tokio::time::timeout(T, synced).await.is_ok(), "JobSets never listed");
    let g = fresh.gangs.read().unwrap();
    assert_eq!(
        g.owners.watched(OwnerKind::JobSet),
        Watched::Synced,
        "other kinds still watched"
    );
    let job = json!({"apiVersion": "batch/v1", "kind": "Job",
                     "metadata": {"name": "j", "namespace": "ml", "uid": "j-uid"},
                     "spec": {"parallelism": 4, "template": example("indexed-job.yaml")["spec"]["template"]}});
    let p = indexed_job_pods(&job, &json!({})).remove(0);
    let p: railyard_scheduler::k8s::LeanPod = serde_json::from_value(p).unwrap();
    let ask = railyard_scheduler::k8s::pod_ask(&p).unwrap();
    assert_eq!(
        railyard_scheduler::k8s::gang_spec(&p, &ask, &g),
        Ok(None),
        "placed alone"
    );
    drop(g);
    w.abort();
}
