//! Every manifest under configs/scheduler parses into its typed struct and
//! back without losing a field (so a typo fails), and the scheduler
//! configuration's extender stanza is complete.

use std::collections::BTreeSet;
use std::path::PathBuf;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, RoleBinding};
use railyard_core::mig::MigFamily;
use railyard_core::resources::mig_resource_name;
use serde::Deserialize;
use serde_json::Value;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../configs/scheduler")
}

fn read(name: &str) -> String {
    std::fs::read_to_string(dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Drops what serialization normalizes away: nulls and empty maps/lists.
fn normalize(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| (k, normalize(v)))
                .filter(|(_, v)| !v.is_null() && v != &Value::Object(Default::default()))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(normalize).collect()),
        v => v,
    }
}

/// Parses `doc` as `T` and checks the round trip keeps every field.
fn typed<T: serde::de::DeserializeOwned + serde::Serialize>(doc: &Value, what: &str) -> T {
    let t: T = serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{what}: {e}"));
    let back = normalize(serde_json::to_value(&t).expect("serialize"));
    assert_eq!(
        normalize(doc.clone()),
        back,
        "{what}: a field was not understood (typo?)"
    );
    t
}

#[test]
fn every_manifest_parses_into_its_typed_struct() {
    let text = read("deploy.yaml");
    let mut kinds = Vec::new();
    let mut config_map = None;
    for (i, de) in serde_yaml::Deserializer::from_str(&text).enumerate() {
        let doc: Value = Value::deserialize(de).unwrap_or_else(|e| panic!("document {i}: {e}"));
        let kind = doc["kind"]
            .as_str()
            .unwrap_or_else(|| panic!("document {i} has no kind"))
            .to_string();
        let what = format!("document {i} ({kind} {})", doc["metadata"]["name"]);
        match kind.as_str() {
            "ServiceAccount" => {
                typed::<ServiceAccount>(&doc, &what);
            }
            "ClusterRole" => {
                let r = typed::<ClusterRole>(&doc, &what);
                // Least privilege: read-only except creating bindings.
                for rule in r.rules.unwrap_or_default() {
                    let res = rule.resources.clone().unwrap_or_default();
                    for verb in &rule.verbs {
                        let ok = ["get", "list", "watch"].contains(&verb.as_str())
                            || (verb == "create" && res == vec!["pods/binding".to_string()]);
                        assert!(ok, "{what}: verb {verb} on {res:?}");
                    }
                    assert!(!res.iter().any(|r| r == "*" || r == "secrets"), "{what}: {res:?}");
                }
            }
            "ClusterRoleBinding" => {
                typed::<ClusterRoleBinding>(&doc, &what);
            }
            "RoleBinding" => {
                typed::<RoleBinding>(&doc, &what);
            }
            "Service" => {
                typed::<Service>(&doc, &what);
            }
            "ConfigMap" => config_map = Some(typed::<ConfigMap>(&doc, &what)),
            "Deployment" => {
                let d = typed::<Deployment>(&doc, &what);
                let spec = d.spec.expect("spec");
                let labels = spec.template.metadata.and_then(|m| m.labels).unwrap_or_default();
                for (k, v) in spec.selector.match_labels.unwrap_or_default() {
                    assert_eq!(labels.get(&k), Some(&v), "{what}: selector does not match the template");
                }
            }
            other => panic!("{what}: no typed check for kind {other}"),
        }
        kinds.push(kind);
    }
    for k in [
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "ConfigMap",
    ] {
        assert!(kinds.iter().any(|x| x == k), "deploy.yaml has no {k}");
    }
    // The ConfigMap carries exactly the shipped scheduler configuration.
    let cm = config_map.expect("ConfigMap");
    let embedded = cm.data.expect("data")["scheduler-config.yaml"].clone();
    let a: Value = serde_yaml::from_str(&embedded).expect("embedded config");
    let b: Value = serde_yaml::from_str(&read("scheduler-config.yaml")).expect("config");
    assert_eq!(a, b, "ConfigMap and scheduler-config.yaml differ");
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SchedulerConfig {
    api_version: String,
    kind: String,
    #[serde(default)]
    leader_election: Option<serde_yaml::Value>,
    #[serde(default)]
    profiles: Vec<serde_yaml::Value>,
    extenders: Vec<Extender>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Extender {
    url_prefix: String,
    filter_verb: String,
    prioritize_verb: String,
    bind_verb: String,
    preempt_verb: String,
    weight: i64,
    #[serde(rename = "enableHTTPS")]
    enable_https: bool,
    node_cache_capable: bool,
    ignorable: bool,
    http_timeout: String,
    managed_resources: Vec<ManagedResource>,
    #[serde(default)]
    tls_config: Option<TlsConfig>,
}

/// kube-scheduler's `ExtenderTLSConfig`; every field is listed so that
/// `deny_unknown_fields` catches a misspelt one.
#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TlsConfig {
    #[serde(default)]
    insecure: bool,
    server_name: Option<String>,
    cert_file: Option<String>,
    key_file: Option<String>,
    ca_file: Option<String>,
    cert_data: Option<String>,
    key_data: Option<String>,
    ca_data: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ManagedResource {
    name: String,
    ignored_by_scheduler: bool,
}

#[test]
fn scheduler_config_has_the_extender_stanza() {
    let c: SchedulerConfig = serde_yaml::from_str(&read("scheduler-config.yaml")).expect("config");
    assert_eq!(c.api_version, "kubescheduler.config.k8s.io/v1");
    assert_eq!(c.kind, "KubeSchedulerConfiguration");
    assert!(c.leader_election.is_some() && !c.profiles.is_empty());
    assert_eq!(c.extenders.len(), 1);
    let e = &c.extenders[0];
    assert!(e.url_prefix.starts_with("http://") && e.url_prefix.ends_with("/railyard"));
    assert_eq!(
        (&*e.filter_verb, &*e.prioritize_verb, &*e.bind_verb, &*e.preempt_verb),
        ("filter", "prioritize", "bind", "preempt")
    );
    assert!(e.weight > 0);
    assert!(!e.enable_https);
    assert!(e.node_cache_capable);
    assert!(!e.ignorable);
    let secs: f64 = e.http_timeout.trim_end_matches('s').parse().expect("duration like 5s");
    assert!(e.http_timeout.ends_with('s') && secs > 0.0);
    // Every Railyard resource, once each, and none kube-scheduler skips.
    let names: Vec<&str> = e.managed_resources.iter().map(|r| r.name.as_str()).collect();
    let set: BTreeSet<&str> = names.iter().copied().collect();
    assert_eq!(set.len(), names.len(), "duplicate managed resource");
    assert!(e.managed_resources.iter().all(|r| !r.ignored_by_scheduler));
    let mut want: BTreeSet<String> = ["nvidia.com/gpu".to_string(), "nvidia.com/gpu.shared".to_string()].into();
    for f in MigFamily::all() {
        for p in f.profile_names() {
            want.insert(mig_resource_name(p));
        }
    }
    let have: BTreeSet<String> = set.iter().map(|s| s.to_string()).collect();
    assert_eq!(have, want, "managedResources must list every Railyard resource");
}

/// The HTTPS variant documented in the config's header comment, applied to
/// the shipped extender stanza, is a valid stanza (so a typo in the
/// instructions fails too) that verifies the extender's certificate.
#[test]
fn documented_https_variant_is_a_valid_stanza() {
    let text = read("scheduler-config.yaml");
    let lines: Vec<&str> = text.lines().collect();
    let first = lines
        .iter()
        .position(|l| l.starts_with("#   urlPrefix: https://"))
        .expect("documented HTTPS urlPrefix");
    let snippet: String = lines[first..]
        .iter()
        .take_while(|l| l.starts_with("#   "))
        .map(|l| format!("{}\n", &l[4..]))
        .collect();
    let overrides: serde_yaml::Mapping = serde_yaml::from_str(&snippet).expect("documented HTTPS snippet");
    let mut config: serde_yaml::Value = serde_yaml::from_str(&text).expect("config");
    let extender = config["extenders"][0].as_mapping_mut().expect("extender");
    for (k, v) in overrides {
        assert!(
            extender.contains_key(&k) || k == "tlsConfig",
            "documented key {k:?} is not in the stanza"
        );
        extender.insert(k, v);
    }
    let c: SchedulerConfig = serde_yaml::from_value(config).expect("HTTPS variant");
    let e = &c.extenders[0];
    assert!(e.enable_https && e.url_prefix.starts_with("https://") && e.url_prefix.ends_with("/railyard"));
    let tls = e.tls_config.as_ref().expect("tlsConfig");
    assert!(!tls.insecure && tls.ca_file.is_some(), "{tls:?}");
}
