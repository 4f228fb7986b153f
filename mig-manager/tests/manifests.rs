//! configs/deploy/mig-manager: every manifest parses into its typed
//! k8s-openapi struct and back without losing a field (a typo fails), the
//! RBAC covers exactly the agent's API calls, the DaemonSet's env names are
//! the binary's, and the ConfigMap's mig-parted config resolves on H100 and
//! A100 machines.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;

use common::*;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use railyard_core::config::{ConfigGpu, MigPartedConfig};
use serde_json::Value;

fn docs(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(repo(&format!("configs/deploy/mig-manager/{file}"))).unwrap();
    serde_saphyr::from_multiple::<Value>(&text)
        .unwrap_or_else(|e| panic!("{file}: {e}"))
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

fn typed<T: serde::de::DeserializeOwned + serde::Serialize>(doc: &Value) -> T {
    railyard_test_util::manifest::typed(doc, doc["kind"].as_str().unwrap_or("?"))
}

#[test]
fn rbac_is_nodes_and_events_only_and_binds_the_daemonsets_account() {
    let d = docs("rbac.yaml");
    let sa: ServiceAccount = typed(&d[0]);
    let role: ClusterRole = typed(&d[1]);
    let binding: ClusterRoleBinding = typed(&d[2]);
    let rules: BTreeSet<(String, String, String)> = role
        .rules
        .unwrap()
        .iter()
        .flat_map(|r| {
            let groups = r.api_groups.clone().unwrap_or_default();
            let resources = r.resources.clone().unwrap_or_default();
            let verbs = r.verbs.clone();
            groups.into_iter().flat_map(move |g| {
                let verbs = verbs.clone();
                resources.clone().into_iter().flat_map(move |res| {
                    verbs.clone().into_iter().map({
                        let g = g.clone();
                        move |v| (g.clone(), res.clone(), v)
                    })
                })
            })
        })
        .collect();
    let want: BTreeSet<(String, String, String)> = [
        ("", "nodes", "get"),
        ("", "nodes", "list"),
        ("", "nodes", "watch"),
        ("", "nodes", "patch"),
        ("events.k8s.io", "events", "create"),
    ]
    .iter()
    .map(|(g, r, v)| (g.to_string(), r.to_string(), v.to_string()))
    .collect();
    assert_eq!(rules, want);
    assert_eq!(binding.role_ref.name, role.metadata.name.unwrap());
    let subject = &binding.subjects.unwrap()[0];
    assert_eq!(Some(&subject.name), sa.metadata.name.as_ref());
    let ds: DaemonSet = typed(&docs("daemonset.yaml")[0]);
    let spec = ds.spec.unwrap().template.spec.unwrap();
    assert_eq!(spec.service_account_name, sa.metadata.name);
}

#[test]
fn the_daemonset_uses_the_binarys_flags_and_mounts_what_the_agent_reads() {
    let ds: DaemonSet = typed(&docs("daemonset.yaml")[0]);
    let spec = ds.spec.unwrap().template.spec.unwrap();
    let c = &spec.containers[0];
    assert_eq!(c.args.as_deref(), Some(&["run".to_string()][..]));
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_railyard-mig-manager"))
        .args(["run", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    for e in c.env.as_ref().unwrap() {
        if e.name.starts_with("NVIDIA_") {
            continue; // the container toolkit's
        }
        assert!(
            help.contains(&format!("[env: {}=", e.name)),
            "{} is not a flag's env: {help}",
            e.name
        );
    }
    let mounts: BTreeSet<String> = c
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .map(|m| m.mount_path.clone())
        .collect();
    for path in [
        "/var/lib/kubelet/pod-resources",
        "/var/lib/kubelet/device-plugins",
        "/mig-parted-config",
    ] {
        assert!(mounts.contains(path), "{path} not mounted: {mounts:?}");
    }
    // The defaults of the flags match the mounts.
    assert!(help.contains("/var/lib/kubelet/pod-resources/kubelet.sock"), "{help}");
    assert!(
        help.contains("/var/lib/kubelet/device-plugins/railyard-mig-layout"),
        "{help}"
    );
    let config = c
        .env
        .as_ref()
        .unwrap()
        .iter()
        .find(|e| e.name == "CONFIG_FILE")
        .unwrap();
    assert_eq!(config.value.as_deref(), Some("/mig-parted-config/config.yaml"));
}

#[test]
fn the_configmaps_config_resolves_on_h100_and_a100() {
    let cm: ConfigMap = typed(&docs("configmap.yaml")[0]);
    let text = &cm.data.unwrap()["config.yaml"];
    let config = MigPartedConfig::from_yaml(text).unwrap();
    for machine in ["dgx-h100", "dgx-a100"] {
        let gpus = ConfigGpu::from_machine(&profile(machine));
        for name in config.names() {
            config
                .targets_for(name, &gpus)
                .unwrap_or_else(|e| panic!("{machine} {name}: {e}"));
        }
    }
}
