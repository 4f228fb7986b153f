//! Training workloads as users submit them (the manifests in
//! `configs/examples/training/`) and their pods as each controller creates
//! them: the labels, annotations and ownerReferences of the Job controller,
//! the JobSet controller, Kubeflow's training-operator and mpi-operator,
//! and the LeaderWorkerSet controller (read from their sources; see the
//! README, "Submitting training jobs").
#![allow(dead_code)]

use std::path::PathBuf;

use serde_json::{Map, Value, json};

pub fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../configs/examples/training")
}

/// An example manifest as JSON.
pub fn example(file: &str) -> Value {
    let p = examples_dir().join(file);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
    docs.into_iter().next().unwrap_or_else(|| panic!("{file}: no document"))
}

fn name(o: &Value) -> &str {
    o["metadata"]["name"].as_str().expect("name")
}

fn ns(o: &Value) -> &str {
    o["metadata"]["namespace"].as_str().unwrap_or("default")
}

fn uid(o: &Value) -> &str {
    o["metadata"]["uid"].as_str().expect("a stored object has a uid")
}

/// A controller ownerReference to `o`.
pub fn controller_ref(o: &Value) -> Value {
    json!({"apiVersion": o["apiVersion"], "kind": o["kind"], "name": name(o), "uid": uid(o),
           "controller": true, "blockOwnerDeletion": true})
}

/// A pod from `template` (`{metadata?, spec}`) with `name`, the extra
/// labels and annotations, owned by `owner`.
pub fn pod_from(
    template: &Value,
    namespace: &str,
    pod_name: &str,
    labels: Value,
    annotations: Value,
    owner: Value,
) -> Value {
    let mut l: Map<String, Value> = template["metadata"]["labels"].as_object().cloned().unwrap_or_default();
    l.extend(labels.as_object().cloned().unwrap_or_default());
    let mut a: Map<String, Value> = template["metadata"]["annotations"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    a.extend(annotations.as_object().cloned().unwrap_or_default());
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": pod_name, "namespace": namespace, "labels": l, "annotations": a,
                        "ownerReferences": [owner]},
           "spec": template["spec"], "status": {"phase": "Pending"}})
}

/// The pods the Job controller creates for an Indexed Job (stored, with
/// its uid), index by index, with `extra` labels and annotations (the
/// JobSet controller's, which it puts on the Job's pod template).
pub fn indexed_job_pods(job: &Value, extra: &Value) -> Vec<Value> {
    let n = job["spec"]["parallelism"].as_u64().unwrap_or(1);
    let (jn, id) = (name(job), uid(job));
    (0..n)
        .map(|i| {
            let mut labels = json!({
                "batch.kubernetes.io/controller-uid": id, "batch.kubernetes.io/job-name": jn,
                "controller-uid": id, "job-name": jn,
                "batch.kubernetes.io/job-completion-index": i.to_string(),
            });
            let mut ann = json!({"batch.kubernetes.io/job-completion-index": i.to_string()});
            if let (Some(l), Some(a)) = (labels.as_object_mut(), ann.as_object_mut()) {
                l.extend(extra.as_object().cloned().unwrap_or_default());
                a.extend(extra.as_object().cloned().unwrap_or_default());
            }
            let mut p = pod_from(
                &job["spec"]["template"],
                ns(job),
                &format!("{jn}-{i}-x{i}q"),
                labels,
                ann,
                controller_ref(job),
            );
            p["spec"]["hostname"] = json!(format!("{jn}-{i}"));
            p
        })
        .collect()
}

/// A JobSet's child Jobs (unstored: create them, then call
/// [`indexed_job_pods`] with [`jobset_labels`] on each stored one).
pub fn jobset_jobs(js: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for rj in js["spec"]["replicatedJobs"].as_array().expect("replicatedJobs") {
        let rn = rj["name"].as_str().expect("name");
        for j in 0..rj["replicas"].as_u64().unwrap_or(1) {
            let labels = jobset_labels(js, rn, j, rj["replicas"].as_u64().unwrap_or(1));
            let mut spec = rj["template"]["spec"].clone();
            spec["completionMode"] = json!("Indexed");
            let mut tl = spec["template"]["metadata"]["labels"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            tl.extend(labels.as_object().cloned().unwrap_or_default());
            spec["template"]["metadata"]["labels"] = Value::Object(tl);
            out.push(json!({"apiVersion": "batch/v1", "kind": "Job",
                            "metadata": {"name": format!("{}-{rn}-{j}", name(js)), "namespace": ns(js),
                                         "labels": labels, "ownerReferences": [controller_ref(js)]},
                            "spec": spec}));
        }
    }
    out
}

/// The labels (and annotations) the JobSet controller sets on a child Job
/// and its pod template.
pub fn jobset_labels(js: &Value, rjob: &str, index: u64, replicas: u64) -> Value {
    json!({
        "jobset.sigs.k8s.io/jobset-name": name(js), "jobset.sigs.k8s.io/jobset-uid": uid(js),
        "jobset.sigs.k8s.io/replicatedjob-name": rjob,
        "jobset.sigs.k8s.io/replicatedjob-replicas": replicas.to_string(),
        "jobset.sigs.k8s.io/job-index": index.to_string(),
        "jobset.sigs.k8s.io/job-key": format!("{:x}", index + 0xabc0),
        "jobset.sigs.k8s.io/restart-attempt": "0",
    })
}

/// training-operator's PyTorchJob pods: `<name>-master-0`, `<name>-worker-<i>`.
pub fn pytorchjob_pods(pj: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for (ty, role) in [("Master", Some("master")), ("Worker", None)] {
        let spec = &pj["spec"]["pytorchReplicaSpecs"][ty];
        for i in 0..spec["replicas"].as_u64().unwrap_or(0) {
            let lower = ty.to_ascii_lowercase();
            let mut labels = json!({
                "training.kubeflow.org/job-name": name(pj),
                "training.kubeflow.org/operator-name": "pytorchjob-controller",
                "training.kubeflow.org/replica-type": lower, "training.kubeflow.org/replica-index": i.to_string(),
            });
            if let Some(r) = role {
                labels["training.kubeflow.org/job-role"] = json!(r);
            }
            out.push(pod_from(
                &spec["template"],
                ns(pj),
                &format!("{}-{lower}-{i}", name(pj)),
                labels,
                json!({}),
                controller_ref(pj),
            ));
        }
    }
    out
}

/// mpi-operator's launcher Job (unstored) for an MPIJob.
pub fn mpijob_launcher_job(mj: &Value) -> Value {
    let mut template = mj["spec"]["mpiReplicaSpecs"]["Launcher"]["template"].clone();
    template["metadata"]["labels"] = mpi_labels(mj, "launcher");
    template["spec"]["restartPolicy"] = json!("OnFailure");
    json!({"apiVersion": "batch/v1", "kind": "Job",
           "metadata": {"name": format!("{}-launcher", name(mj)), "namespace": ns(mj),
                        "labels": {"app": name(mj)}, "ownerReferences": [controller_ref(mj)]},
           "spec": {"backoffLimit": 6, "template": template}})
}

fn mpi_labels(mj: &Value, role: &str) -> Value {
    json!({"training.kubeflow.org/operator-name": "mpi-operator",
           "training.kubeflow.org/job-name": name(mj), "training.kubeflow.org/job-role": role})
}

/// The launcher's pod, as the Job controller creates it (NonIndexed).
pub fn mpijob_launcher_pod(launcher_job: &Value) -> Value {
    let (jn, id) = (name(launcher_job), uid(launcher_job));
    pod_from(
        &launcher_job["spec"]["template"],
        ns(launcher_job),
        &format!("{jn}-7xk2p"),
        json!({"batch.kubernetes.io/controller-uid": id, "batch.kubernetes.io/job-name": jn,
               "controller-uid": id, "job-name": jn}),
        json!({}),
        controller_ref(launcher_job),
    )
}

/// mpi-operator's worker pods, owned by the MPIJob itself.
pub fn mpijob_worker_pods(mj: &Value) -> Vec<Value> {
    let spec = &mj["spec"]["mpiReplicaSpecs"]["Worker"];
    (0..spec["replicas"].as_u64().unwrap_or(0))
        .map(|i| {
            let mut labels = mpi_labels(mj, "worker");
            labels["training.kubeflow.org/replica-index"] = json!(i.to_string());
            let mut p = pod_from(
                &spec["template"],
                ns(mj),
                &format!("{}-worker-{i}", name(mj)),
                labels,
                json!({}),
                controller_ref(mj),
            );
            p["spec"]["hostname"] = json!(format!("{}-worker-{i}", name(mj)));
            p["spec"]["subdomain"] = json!(name(mj));
            p
        })
        .collect()
}

/// The LeaderWorkerSet controller's pods of group `g`: the leader
/// `<name>-<g>` (owned by the leader StatefulSet `<name>`), then workers
/// `<name>-<g>-<i>` (owned by the group's StatefulSet `<name>-<g>`, which
/// the leader pod owns). The StatefulSets are not served by the fake; only
/// their names and uids matter to the pods.
pub fn lws_group_pods(lws: &Value, g: u32) -> Vec<Value> {
    let t = &lws["spec"]["leaderWorkerTemplate"];
    let size = t["size"].as_u64().unwrap_or(1);
    let n = name(lws);
    let common = |i: u64| {
        json!({"leaderworkerset.sigs.k8s.io/name": n, "leaderworkerset.sigs.k8s.io/group-index": g.to_string(),
               "leaderworkerset.sigs.k8s.io/worker-index": i.to_string(),
               "leaderworkerset.sigs.k8s.io/group-key": format!("{:040x}", g + 0xfeed),
               "leaderworkerset.sigs.k8s.io/template-revision-hash": "5c8f9d7b4"})
    };
    let sts = |sn: String, id: String| {
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "name": sn, "uid": id,
               "controller": true, "blockOwnerDeletion": true})
    };
    let leader_t = if t["leaderTemplate"].is_null() {
        &t["workerTemplate"]
    } else {
        &t["leaderTemplate"]
    };
    let mut out = vec![pod_from(
        leader_t,
        ns(lws),
        &format!("{n}-{g}"),
        common(0),
        json!({"leaderworkerset.sigs.k8s.io/size": size.to_string()}),
        sts(n.to_string(), format!("sts-{n}")),
    )];
    for i in 1..size {
        out.push(pod_from(
            &t["workerTemplate"],
            ns(lws),
            &format!("{n}-{g}-{i}"),
            common(i),
            json!({"leaderworkerset.sigs.k8s.io/size": size.to_string(),
                   "leaderworkerset.sigs.k8s.io/leader-name": format!("{n}-{g}")}),
            sts(format!("{n}-{g}"), format!("sts-{n}-{g}")),
        ));
    }
    out
}
