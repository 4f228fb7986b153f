//! The training manifests users copy (`configs/examples/training/`, one per
//! kind): each parses into its typed struct where k8s-openapi has one (the
//! Job; the pod and job templates inside the custom resources) without
//! losing a field, the custom resources' schema-relevant fields are
//! checked against their projects' types, every pod asks for the Railyard
//! scheduler, and the extender reads each one as the gang it promises.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;

use k8s_openapi::api::batch::v1::{Job, JobTemplateSpec};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::api::DynamicObject;
use railyard_scheduler::owners::{Owner, OwnerKind, Shape};
use railyard_test_util::manifest::typed;
use serde_json::Value;

use common::training::{example, examples_dir};

/// Only `allowed` keys in `v` (the project's type has no others).
fn keys_within(v: &Value, allowed: &[&str], what: &str) {
    let m = v.as_object().unwrap_or_else(|| panic!("{what}: not a map"));
    for k in m.keys() {
        assert!(
            allowed.contains(&k.as_str()),
            "{what}: unknown field {k:?} (allowed: {allowed:?})"
        );
    }
}

/// A pod template for the Railyard scheduler, asking whole GPUs (or none).
fn pod_template(t: &Value, what: &str) -> Option<u32> {
    let t: PodTemplateSpec = typed(t, what);
    let spec = t.spec.expect("spec");
    assert_eq!(
        spec.scheduler_name.as_deref(),
        Some("railyard"),
        "{what}: schedulerName"
    );
    let gpus: Vec<u32> = spec
        .containers
        .iter()
        .filter_map(|c| c.resources.as_ref()?.limits.as_ref()?.get("nvidia.com/gpu"))
        .map(|q| q.0.parse().expect("whole GPUs"))
        .collect();
    gpus.first().copied()
}

fn metadata(doc: &Value, api_version: &str, kind: &str, file: &str) {
    assert_eq!(doc["apiVersion"], api_version, "{file}");
    assert_eq!(doc["kind"], kind, "{file}");
    keys_within(doc, &["apiVersion", "kind", "metadata", "spec"], file);
    let m: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta = typed(&doc["metadata"], file);
    assert!(m.name.is_some() && m.namespace.is_some(), "{file}: name and namespace");
}

/// The gang the extender reads from the manifest: its GPU members.
fn gang_size(doc: &Value, kind: OwnerKind) -> u32 {
    let o: DynamicObject = serde_json::from_value(doc.clone()).unwrap();
    let owner = Owner::from_object(kind, &o);
    assert_eq!(owner.enabled, Ok(true));
    let Shape::Classes(classes) = owner.shape else {
        panic!("{kind:?}: not a gang: {:?}", owner.shape)
    };
    classes.iter().filter(|c| c.gpus.is_some()).map(|c| c.count).sum()
}

#[test]
fn there_is_one_example_per_kind() {
    let files: BTreeSet<String> = std::fs::read_dir(examples_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let want: BTreeSet<String> = [
        "indexed-job.yaml",
        "jobset.yaml",
        "leaderworkerset.yaml",
        "mpijob.yaml",
        "pytorchjob.yaml",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(files, want);
}

#[test]
fn the_indexed_job_is_a_typed_job_of_one_gang() {
    let doc = example("indexed-job.yaml");
    let job: Job = typed(&doc, "indexed-job.yaml");
    let spec = job.spec.expect("spec");
    assert_eq!(spec.completion_mode.as_deref(), Some("Indexed"));
    assert_eq!(spec.parallelism, spec.completions, "every index at once");
    assert_eq!(pod_template(&doc["spec"]["template"], "template"), Some(8));
    assert_eq!(gang_size(&doc, OwnerKind::Job), 4);
}

#[test]
fn the_jobset_has_typed_job_templates_and_jobset_fields() {
    let file = "jobset.yaml";
    let doc = example(file);
    metadata(&doc, "jobset.x-k8s.io/v1alpha2", "JobSet", file);
    // JobSetSpec (jobset api/jobset/v1alpha2/jobset_types.go).
    keys_within(
        &doc["spec"],
        &[
            "replicatedJobs",
            "network",
            "successPolicy",
            "failurePolicy",
            "startupPolicy",
            "suspend",
            "coordinator",
            "managedBy",
            "ttlSecondsAfterFinished",
            "volumeClaimPolicies",
        ],
        file,
    );
    for (i, rj) in doc["spec"]["replicatedJobs"].as_array().unwrap().iter().enumerate() {
        let what = format!("{file}: replicatedJobs[{i}]");
        keys_within(rj, &["name", "groupName", "template", "replicas", "dependsOn"], &what);
        assert!(rj["name"].as_str().is_some_and(|n| !n.is_empty()), "{what}: name");
        assert!(rj["replicas"].as_u64().is_some(), "{what}: replicas");
        let t: JobTemplateSpec = typed(&rj["template"], &what);
        let s = t.spec.expect("job spec");
        assert_eq!(s.parallelism, s.completions, "{what}: every index at once");
        assert_eq!(pod_template(&rj["template"]["spec"]["template"], &what), Some(8));
    }
    assert_eq!(gang_size(&doc, OwnerKind::JobSet), 4);
}

/// Kubeflow's ReplicaSpec (training-operator `common_types.go`,
/// mpi-operator `v2beta1/types.go`).
fn replica_specs(doc: &Value, field: &str, types: &[&str], file: &str) -> Vec<Option<u32>> {
    let specs = doc["spec"][field]
        .as_object()
        .unwrap_or_else(|| panic!("{file}: spec.{field}"));
    let mut gpus = Vec::new();
    for (ty, s) in specs {
        let what = format!("{file}: {field}.{ty}");
        assert!(types.contains(&ty.as_str()), "{what}: replica types are {types:?}");
        keys_within(s, &["replicas", "template", "restartPolicy"], &what);
        assert!(s["replicas"].as_u64().is_some(), "{what}: replicas");
        if let Some(p) = s["restartPolicy"].as_str() {
            assert!(
                ["Always", "OnFailure", "Never", "ExitCode"].contains(&p),
                "{what}: restartPolicy {p}"
            );
        }
        gpus.push(pod_template(&s["template"], &what));
    }
    gpus
}

#[test]
fn the_pytorchjob_has_typed_pod_templates_and_pytorchjob_fields() {
    let file = "pytorchjob.yaml";
    let doc = example(file);
    metadata(&doc, "kubeflow.org/v1", "PyTorchJob", file);
    keys_within(
        &doc["spec"],
        &["runPolicy", "elasticPolicy", "nprocPerNode", "pytorchReplicaSpecs"],
        file,
    );
    let gpus = replica_specs(&doc, "pytorchReplicaSpecs", &["Master", "Worker"], file);
    assert!(gpus.iter().all(|g| *g == Some(8)), "{gpus:?}");
    // training-operator runs the container named "pytorch".
    for ty in ["Master", "Worker"] {
        assert_eq!(
            doc["spec"]["pytorchReplicaSpecs"][ty]["template"]["spec"]["containers"][0]["name"],
            "pytorch"
        );
    }
    assert_eq!(gang_size(&doc, OwnerKind::PyTorchJob), 4);
}

#[test]
fn the_mpijob_has_typed_pod_templates_and_mpijob_fields() {
    let file = "mpijob.yaml";
    let doc = example(file);
    metadata(&doc, "kubeflow.org/v2beta1", "MPIJob", file);
    keys_within(
        &doc["spec"],
        &[
            "slotsPerWorker",
            "runLauncherAsWorker",
            "runPolicy",
            "mpiReplicaSpecs",
            "sshAuthMountPath",
            "launcherCreationPolicy",
            "mpiImplementation",
        ],
        file,
    );
    assert!(doc["spec"]["slotsPerWorker"].as_u64().is_some());
    let policy = &doc["spec"]["runPolicy"];
    keys_within(
        policy,
        &[
            "cleanPodPolicy",
            "ttlSecondsAfterFinished",
            "activeDeadlineSeconds",
            "backoffLimit",
            "schedulingPolicy",
            "suspend",
            "managedBy",
        ],
        file,
    );
    let gpus = replica_specs(&doc, "mpiReplicaSpecs", &["Launcher", "Worker"], file);
    // Launcher (no GPU) then Worker: the map is sorted by type.
    assert_eq!(gpus, vec![None, Some(8)]);
    assert_eq!(gang_size(&doc, OwnerKind::MpiJob), 4);
}

#[test]
fn the_leaderworkerset_has_typed_pod_templates_and_lws_fields() {
    let file = "leaderworkerset.yaml";
    let doc = example(file);
    metadata(&doc, "leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet", file);
    // LeaderWorkerSetSpec (lws api/leaderworkerset/v1/leaderworkerset_types.go).
    keys_within(
        &doc["spec"],
        &[
            "replicas",
            "leaderWorkerTemplate",
            "rolloutStrategy",
            "startupPolicy",
            "networkConfig",
        ],
        file,
    );
    assert_ne!(
        doc["spec"]["startupPolicy"], "LeaderReady",
        "workers must not wait for the leader"
    );
    let t = &doc["spec"]["leaderWorkerTemplate"];
    keys_within(
        t,
        &[
            "leaderTemplate",
            "workerTemplate",
            "size",
            "restartPolicy",
            "subGroupPolicy",
            "volumeClaimTemplates",
            "persistentVolumeClaimRetentionPolicy",
        ],
        file,
    );
    assert!(t["size"].as_u64().is_some_and(|s| s >= 1));
    assert_eq!(pod_template(&t["workerTemplate"], "workerTemplate"), Some(8));
    if !t["leaderTemplate"].is_null() {
        pod_template(&t["leaderTemplate"], "leaderTemplate");
    }
    // One gang per group.
    assert_eq!(gang_size(&doc, OwnerKind::LeaderWorkerSet), 4);
}
