//! Every manifest under configs/deploy/device-plugin parses into its typed
//! k8s-openapi struct and back without losing a field (so a typo fails), and
//! the manifests agree with the plugin: the RBAC covers its API calls, the
//! admission policy confines its Node writes to its own Node and annotation,
//! the DaemonSet's env and args are the plugin's flags and it mounts only
//! the CRI socket, the named configs parse.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use clap::{CommandFactory, Parser};
use k8s_openapi::api::admissionregistration::v1::{ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use railyard_core::config::DevicePluginConfig;
use railyard_device_plugin::Options;
use railyard_device_plugin::decisions::{ALLOCATED_ANNOTATION, DECISION_ANNOTATION};
use railyard_device_plugin::topology::TOPOLOGY_ANNOTATION;
use railyard_test_util::manifest::typed;
use serde_json::Value;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../configs/deploy/device-plugin")
}

#[derive(Default)]
struct Manifests {
    service_accounts: Vec<ServiceAccount>,
    roles: Vec<ClusterRole>,
    bindings: Vec<ClusterRoleBinding>,
    daemonsets: Vec<DaemonSet>,
    config_maps: Vec<ConfigMap>,
    policies: Vec<ValidatingAdmissionPolicy>,
    policy_bindings: Vec<ValidatingAdmissionPolicyBinding>,
}

fn load() -> Manifests {
    let mut m = Manifests::default();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let docs: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        for (i, doc) in docs.into_iter().enumerate() {
            let what = format!("{} document {i}", f.display());
            if doc.is_null() {
                continue;
            }
            let kind = doc["kind"].as_str().unwrap_or_else(|| panic!("{what}: no kind"));
            let what = format!("{what} ({kind})");
            match kind {
                "ServiceAccount" => m.service_accounts.push(typed(&doc, &what)),
                "ClusterRole" => m.roles.push(typed(&doc, &what)),
                "ClusterRoleBinding" => m.bindings.push(typed(&doc, &what)),
                "DaemonSet" => m.daemonsets.push(typed(&doc, &what)),
                "ConfigMap" => m.config_maps.push(typed(&doc, &what)),
                "ValidatingAdmissionPolicy" => m.policies.push(typed(&doc, &what)),
                "ValidatingAdmissionPolicyBinding" => m.policy_bindings.push(typed(&doc, &what)),
                other => panic!("{what}: unexpected kind {other}"),
            }
        }
    }
    m
}

#[test]
fn every_manifest_parses_into_its_typed_struct() {
    let m = load();
    assert_eq!(m.service_accounts.len(), 1);
    assert_eq!(m.roles.len(), 1);
    assert_eq!(m.bindings.len(), 1);
    assert_eq!(m.daemonsets.len(), 1);
    assert_eq!(m.config_maps.len(), 1);
    // One for Node writes, one for pod writes.
    assert_eq!(m.policies.len(), 2);
    assert_eq!(m.policy_bindings.len(), 2);
    for p in &m.policies {
        assert_eq!(p.metadata.namespace, None, "cluster-scoped");
    }
}

/// Parentheses, brackets and quotes balance: a cheap guard against a
/// truncated or mis-folded YAML scalar (the API server compiles the CEL).
fn balanced(expr: &str) -> bool {
    let mut stack = Vec::new();
    let mut quote = None;
    for c in expr.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '(' | '[' | '{') => stack.push(c),
            (None, ')') if stack.pop() != Some('(') => return false,
            (None, ']') if stack.pop() != Some('[') => return false,
            (None, '}') if stack.pop() != Some('{') => return false,
            _ => {}
        }
    }
    stack.is_empty() && quote.is_none()
}

/// The policy matching UPDATEs of `resource` (a patch is an UPDATE).
fn policy_for<'a>(m: &'a Manifests, resource: &str) -> &'a ValidatingAdmissionPolicy {
    let found: Vec<&ValidatingAdmissionPolicy> = m
        .policies
        .iter()
        .filter(|p| {
            let spec = p.spec.as_ref().unwrap();
            let rules = spec
                .match_constraints
                .as_ref()
                .unwrap()
                .resource_rules
                .as_ref()
                .unwrap();
            rules.iter().any(|r| {
                r.api_groups.as_ref().is_some_and(|g| g.iter().any(|g| g.is_empty()))
                    && r.resources.as_ref().is_some_and(|x| x.iter().any(|x| x == resource))
                    && r.operations.as_ref().is_some_and(|o| o.iter().any(|o| o == "UPDATE"))
            })
        })
        .collect();
    assert_eq!(found.len(), 1, "one policy for {resource} updates");
    found[0]
}

/// What both policies share: failing closed, only the DaemonSet's service
/// account, balanced CEL with messages, the annotation rule for `key`,
/// labels and spec held, and a binding that denies with nothing narrowing
/// it.
fn check_common(m: &Manifests, p: &ValidatingAdmissionPolicy, key: &str) {
    let spec = p.spec.as_ref().unwrap();
    assert_eq!(spec.failure_policy.as_deref(), Some("Fail"));
    assert!(spec.param_kind.is_none());
    let sa = &m.service_accounts[0].metadata;
    let username = format!(
        "system:serviceaccount:{}:{}",
        sa.namespace.as_deref().unwrap(),
        sa.name.as_deref().unwrap()
    );
    let conditions = spec.match_conditions.as_ref().unwrap();
    assert!(
        conditions
            .iter()
            .any(|c| c.expression.contains("request.userInfo.username") && c.expression.contains(&username)),
        "{conditions:?}"
    );
    let validations = spec.validations.as_ref().unwrap();
    for v in validations {
        assert!(balanced(&v.expression), "{}", v.expression);
        assert!(v.message.is_some(), "{}", v.expression);
    }
    for c in conditions {
        assert!(balanced(&c.expression), "{}", c.expression);
    }
    // Its one annotation may change, compared with the old object, and no other.
    let annotation_rules: Vec<&str> = validations
        .iter()
        .map(|v| v.expression.as_str())
        .filter(|e| e.contains("object.metadata.annotations") && e.contains("oldObject.metadata.annotations"))
        .collect();
    assert_eq!(annotation_rules.len(), 1, "{annotation_rules:?}");
    let quoted: Vec<&str> = annotation_rules[0].split('\'').skip(1).step_by(2).collect();
    assert!(quoted.iter().all(|q| *q == key), "only {key} may change: {quoted:?}");
    assert!(!quoted.is_empty());
    // And labels and spec may not.
    for field in ["labels", "spec"] {
        let new = if field == "spec" {
            "object.spec == oldObject.spec".to_string()
        } else {
            format!("object.metadata.{field} == oldObject.metadata.{field}")
        };
        assert!(
            validations.iter().any(|v| v.expression.contains(&new)),
            "{field} not held unchanged"
        );
    }
    let bound: Vec<&ValidatingAdmissionPolicyBinding> = m
        .policy_bindings
        .iter()
        .filter(|b| b.spec.as_ref().unwrap().policy_name.as_ref() == p.metadata.name.as_ref())
        .collect();
    assert_eq!(bound.len(), 1, "{:?} bound once", p.metadata.name);
    let bs = bound[0].spec.as_ref().unwrap();
    assert_eq!(bs.validation_actions.as_deref(), Some(&["Deny".to_string()][..]));
    assert!(bs.param_ref.is_none() && bs.match_resources.is_none());
}

#[test]
fn admission_policy_confines_node_writes_to_the_plugins_own_node_and_annotation() {
    let m = load();
    let p = policy_for(&m, "nodes");
    check_common(&m, p, TOPOLOGY_ANNOTATION);
    let validations = p.spec.as_ref().unwrap().validations.as_ref().unwrap();
    // The Node's name must be the token's node.
    assert!(
        validations.iter().any(|v| {
            v.expression
                .contains("request.userInfo.extra['authentication.kubernetes.io/node-name']")
                && v.expression.contains("object.metadata.name")
        }),
        "no validation ties the Node to the token's node"
    );
}

#[test]
fn admission_policy_confines_pod_writes_to_the_nodes_pods_and_the_write_back() {
    let m = load();
    let p = policy_for(&m, "pods");
    assert_ne!(p.metadata.name, policy_for(&m, "nodes").metadata.name);
    check_common(&m, p, ALLOCATED_ANNOTATION);
    // The write-back only: never the extender's record.
    assert_ne!(ALLOCATED_ANNOTATION, DECISION_ANNOTATION);
    let validations = p.spec.as_ref().unwrap().validations.as_ref().unwrap();
    // The pod must be bound to the token's node (as it was: a pod is not moved).
    assert!(
        validations.iter().any(|v| {
            v.expression.contains(
                "request.userInfo.extra['authentication.kubernetes.io/node-name'] == [oldObject.spec.nodeName]",
            ) && v.expression.contains("has(oldObject.spec.nodeName)")
        }),
        "no validation ties the pod to the token's node"
    );
    // Only the main resource: no subresource is matched or needed.
    let rules = p
        .spec
        .as_ref()
        .unwrap()
        .match_constraints
        .as_ref()
        .unwrap()
        .resource_rules
        .as_ref()
        .unwrap();
    assert!(
        rules
            .iter()
            .flat_map(|r| r.resources.iter().flatten())
            .all(|r| r == "pods")
    );
}

#[test]
fn rbac_covers_the_api_calls_and_binds_the_daemonsets_account() {
    let m = load();
    // (group, resource) -> verbs
    let mut granted: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for rule in m.roles[0].rules.iter().flatten() {
        for g in rule.api_groups.iter().flatten() {
            for r in rule.resources.iter().flatten() {
                granted
                    .entry((g.clone(), r.clone()))
                    .or_default()
                    .extend(rule.verbs.iter().cloned());
            }
        }
    }
    let need = [
        // KubeNodeLabels: a watcher lists and watches the Node; KubeAnnotator gets and patches it.
        ("", "nodes", &["get", "list", "watch", "patch"][..]),
        // KubeEventRecorder: the pod's UID, then the Event; kubepods: the
        // node's pods watched, the write-back patched.
        ("", "pods", &["get", "list", "watch", "patch"]),
        ("events.k8s.io", "events", &["create"]),
    ];
    for (g, r, verbs) in need {
        let have = granted
            .get(&(g.to_string(), r.to_string()))
            .cloned()
            .unwrap_or_default();
        for v in verbs {
            assert!(have.contains(*v), "{g}/{r}: {v} not granted (have {have:?})");
        }
    }
    // Nothing beyond that.
    assert_eq!(granted.len(), 3, "{granted:?}");
    assert!(granted.values().flatten().all(|v| v != "*"));

    let sa = &m.service_accounts[0].metadata;
    let b = &m.bindings[0];
    assert_eq!(b.role_ref.kind, "ClusterRole");
    assert_eq!(Some(&b.role_ref.name), m.roles[0].metadata.name.as_ref());
    let subject = &b.subjects.as_ref().unwrap()[0];
    assert_eq!(subject.kind, "ServiceAccount");
    assert_eq!(Some(&subject.name), sa.name.as_ref());
    assert_eq!(subject.namespace, sa.namespace);
    let ds = &m.daemonsets[0];
    assert_eq!(ds.metadata.namespace, sa.namespace);
    let pod = ds.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(pod.service_account_name, sa.name);
}

#[test]
fn daemonset_mounts_env_and_args_match_the_plugin() {
    let m = load();
    let ds = &m.daemonsets[0];
    let spec = ds.spec.as_ref().unwrap();
    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.host_pid, Some(true), "the watchdog needs the host's PIDs");
    let c = &pod.containers[0];

    // hostPath volumes and where they are mounted.
    let host_paths: BTreeMap<String, String> = pod
        .volumes
        .iter()
        .flatten()
        .filter_map(|v| Some((v.name.clone(), v.host_path.as_ref()?.path.clone())))
        .collect();
    let mounted: BTreeMap<String, String> = c
        .volume_mounts
        .iter()
        .flatten()
        .filter_map(|vm| Some((host_paths.get(&vm.name)?.clone(), vm.mount_path.clone())))
        .collect();
    for p in [
        "/var/lib/kubelet/device-plugins",
        "/var/lib/kubelet/pod-resources",
        "/var/run/cdi",
    ] {
        assert_eq!(
            mounted.get(p).map(String::as_str),
            Some(p),
            "{p} not mounted at the same path"
        );
    }
    let caps = c.security_context.as_ref().unwrap().capabilities.as_ref().unwrap();
    assert!(caps.add.iter().flatten().any(|c| c == "KILL"));

    // Every env var is one of the plugin's (or the NVIDIA toolkit's).
    let plugin_env: BTreeSet<String> = Options::command()
        .get_arguments()
        .filter_map(|a| a.get_env().map(|e| e.to_string_lossy().to_string()))
        .collect();
    let env: BTreeMap<String, &k8s_openapi::api::core::v1::EnvVar> =
        c.env.iter().flatten().map(|e| (e.name.clone(), e)).collect();
    for name in env.keys() {
        assert!(
            plugin_env.contains(name) || name.starts_with("NVIDIA_"),
            "{name} is not a plugin flag's env var"
        );
    }
    let node = env["NODE_NAME"]
        .value_from
        .as_ref()
        .unwrap()
        .field_ref
        .as_ref()
        .unwrap();
    assert_eq!(node.field_path, "spec.nodeName");
    assert_eq!(env["KUBE_API"].value.as_deref(), Some("on"));

    // The args and the env values parse as the plugin's flags.
    let mut argv = vec!["railyard-device-plugin".to_string()];
    argv.extend(c.args.iter().flatten().cloned());
    for (name, e) in &env {
        let Some(v) = &e.value else { continue };
        if name.starts_with("NVIDIA_") {
            continue;
        }
        let arg = Options::command()
            .get_arguments()
            .find(|a| a.get_env().is_some_and(|x| x == name.as_str()))
            .unwrap()
            .get_long()
            .unwrap()
            .to_string();
        argv.push(format!("--{arg}={v}"));
    }
    let o = Options::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    assert!(o.publish_topology);

    // The CRI socket is mounted as a socket, at the path CRI_SOCKET names,
    // and no directory above it is mounted (the runtime's state directory
    // holds its shims' sockets and every container's bundle).
    let cri = o.cri_socket.as_ref().expect("CRI_SOCKET is set");
    let cri_volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| {
            v.host_path
                .as_ref()
                .is_some_and(|h| std::path::Path::new(&h.path) == cri)
        })
        .unwrap_or_else(|| panic!("no hostPath volume for {}", cri.display()));
    assert_eq!(
        cri_volume.host_path.as_ref().unwrap().type_.as_deref(),
        Some("Socket"),
        "{}",
        cri_volume.name
    );
    let cri_mount = c
        .volume_mounts
        .iter()
        .flatten()
        .find(|vm| vm.name == cri_volume.name)
        .unwrap();
    assert_eq!(std::path::Path::new(&cri_mount.mount_path), cri);
    for v in pod.volumes.iter().flatten() {
        let Some(h) = &v.host_path else { continue };
        let host = std::path::Path::new(&h.path);
        assert!(
            host == cri || !cri.starts_with(host),
            "volume {} mounts {}, a directory above the CRI socket",
            v.name,
            h.path
        );
        assert!(
            !host.starts_with("/run/containerd") || host == cri,
            "volume {} mounts {} from the runtime's state",
            v.name,
            h.path
        );
    }

    // The named configs: the ConfigMap mounted at CONFIG_DIR, every one
    // valid, DEFAULT_CONFIG among them.
    let cm = &m.config_maps[0];
    let cm_volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| {
            v.config_map
                .as_ref()
                .is_some_and(|x| Some(&x.name) == cm.metadata.name.as_ref())
        })
        .unwrap();
    let mount = c
        .volume_mounts
        .iter()
        .flatten()
        .find(|vm| vm.name == cm_volume.name)
        .unwrap();
    assert_eq!(o.config_dir.as_deref(), Some(std::path::Path::new(&mount.mount_path)));
    let data = cm.data.as_ref().unwrap();
    for (name, text) in data {
        DevicePluginConfig::from_yaml(text).unwrap_or_else(|e| panic!("config {name}: {e}"));
    }
    assert!(data.contains_key(o.default_config.as_deref().unwrap()));
}
