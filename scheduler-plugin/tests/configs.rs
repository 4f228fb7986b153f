//! Every manifest under configs/scheduler parses into its typed struct and
//! back without losing a field (so a typo fails), the NetworkPolicy admits
//! only the railyard kube-scheduler to the extender, and the scheduler
//! configuration's extender stanza is complete.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, RoleBinding};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use railyard_core::mig::MigFamily;
use railyard_core::resources::mig_resource_name;
use railyard_test_util::manifest::typed;
use serde::Deserialize;
use serde_json::Value;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../configs/scheduler")
}

fn read(name: &str) -> String {
    std::fs::read_to_string(dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The documents of a multi-document YAML text.
fn documents(text: &str) -> Vec<Value> {
    serde_saphyr::from_multiple(text).unwrap_or_else(|e| panic!("{e}"))
}

/// The one document of `kind` named `name` in deploy.yaml's `docs`.
fn find<T: serde::de::DeserializeOwned + serde::Serialize>(docs: &[Value], kind: &str, name: &str) -> T {
    let doc = docs
        .iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("deploy.yaml has no {kind} {name}"));
    typed(doc, &format!("{kind} {name}"))
}

#[test]
fn every_manifest_parses_into_its_typed_struct() {
    let text = read("deploy.yaml");
    let mut kinds = Vec::new();
    let mut config_map = None;
    for (i, doc) in documents(&text).into_iter().enumerate() {
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
            "NetworkPolicy" => {
                typed::<NetworkPolicy>(&doc, &what);
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
        "NetworkPolicy",
    ] {
        assert!(kinds.iter().any(|x| x == k), "deploy.yaml has no {k}");
    }
    // The ConfigMap carries exactly the shipped scheduler configuration.
    let cm = config_map.expect("ConfigMap");
    let embedded = cm.data.expect("data")["scheduler-config.yaml"].clone();
    let a: Value = serde_saphyr::from_str(&embedded).expect("embedded config");
    let b: Value = serde_saphyr::from_str(&read("scheduler-config.yaml")).expect("config");
    assert_eq!(a, b, "ConfigMap and scheduler-config.yaml differ");
    // Comments too: the documented HTTPS variant is tested in the file only.
    assert_eq!(
        embedded,
        read("scheduler-config.yaml"),
        "ConfigMap and scheduler-config.yaml comments differ"
    );
}

/// The pod template labels of the Deployment `name`, and its namespace.
fn template_labels(docs: &[Value], name: &str) -> (BTreeMap<String, String>, Option<String>) {
    let d: Deployment = find(docs, "Deployment", name);
    let labels = d.spec.expect("spec").template.metadata.and_then(|m| m.labels);
    (labels.unwrap_or_default(), d.metadata.namespace)
}

/// Whether `selector` (matchLabels only; expressions are not used here)
/// selects pods labelled `labels`.
fn selects(
    selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    labels: &BTreeMap<String, String>,
) -> bool {
    assert!(selector.match_expressions.is_none(), "matchExpressions are not checked");
    let want = selector.match_labels.clone().unwrap_or_default();
    !want.is_empty() && want.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The extender's port is reachable only from the railyard kube-scheduler's
/// pods (and nothing else: no `from`-less rule, no namespace or IP peer).
#[test]
fn network_policy_admits_only_the_kube_scheduler_to_the_extender() {
    let docs = documents(&read("deploy.yaml"));
    let np: NetworkPolicy = find(&docs, "NetworkPolicy", "railyard-scheduler");
    let (extender, ns) = template_labels(&docs, "railyard-scheduler");
    let (scheduler, scheduler_ns) = template_labels(&docs, "railyard-kube-scheduler");
    assert_eq!(
        np.metadata.namespace, ns,
        "the policy must be in the extender's namespace"
    );
    assert_eq!(
        scheduler_ns, ns,
        "a bare podSelector peer selects pods of the policy's namespace only"
    );
    let spec = np.spec.expect("spec");
    let target = spec.pod_selector.as_ref().expect("podSelector");
    assert!(
        selects(target, &extender),
        "the policy does not select the extender's pods"
    );
    assert!(!selects(target, &scheduler), "the policy selects the scheduler's pods");
    assert_eq!(spec.policy_types, Some(vec!["Ingress".to_string()]));
    let ingress = spec.ingress.expect("ingress rules");
    assert_eq!(ingress.len(), 1, "{ingress:?}");
    let peers = ingress[0].from.clone().expect("a rule without `from` admits everyone");
    assert_eq!(peers.len(), 1, "{peers:?}");
    let peer = &peers[0];
    assert!(peer.namespace_selector.is_none() && peer.ip_block.is_none(), "{peer:?}");
    assert!(
        selects(peer.pod_selector.as_ref().expect("podSelector"), &scheduler),
        "{peer:?}"
    );
    assert!(
        !selects(peer.pod_selector.as_ref().expect("podSelector"), &extender),
        "{peer:?}"
    );
    // The port is the extender container's, by name or number.
    let d: Deployment = find(&docs, "Deployment", "railyard-scheduler");
    let container = d.spec.expect("spec").template.spec.expect("pod spec").containers[0].clone();
    let cport = container.ports.expect("ports")[0].clone();
    let ports = ingress[0]
        .ports
        .clone()
        .expect("a rule without ports admits every port");
    assert_eq!(ports.len(), 1, "{ports:?}");
    assert_eq!(ports[0].protocol.as_deref(), Some("TCP"));
    match ports[0].port.clone().expect("port") {
        IntOrString::String(name) => assert_eq!(Some(name), cport.name),
        IntOrString::Int(n) => assert_eq!(n, cport.container_port),
    }
}

/// The commented Prometheus option, uncommented, is a valid policy that adds
/// exactly one namespace peer to the scheduler's.
#[test]
fn network_policy_prometheus_option_is_valid() {
    let text = read("deploy.yaml");
    let lines: Vec<&str> = text.lines().collect();
    let first = lines
        .iter()
        .position(|l| l.trim_start() == "# - namespaceSelector:")
        .expect("documented Prometheus peer");
    let col = lines[first].find('#').expect("comment");
    let mut edited: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    for line in edited[first..].iter_mut() {
        if line.get(..col).is_some_and(|p| p.trim().is_empty()) && line[col..].starts_with("# ") {
            *line = format!("{}{}", &line[..col], &line[col + 2..]);
        } else {
            break;
        }
    }
    let docs = documents(&edited.join("\n"));
    let np: NetworkPolicy = find(&docs, "NetworkPolicy", "railyard-scheduler");
    let peers = np.spec.expect("spec").ingress.expect("ingress")[0]
        .from
        .clone()
        .expect("from");
    assert_eq!(peers.len(), 2, "{peers:?}");
    let prometheus = &peers[1];
    assert!(prometheus.pod_selector.is_none() && prometheus.ip_block.is_none());
    let ns = prometheus.namespace_selector.as_ref().expect("namespaceSelector");
    let labels = ns.match_labels.clone().unwrap_or_default();
    assert!(
        labels.contains_key("kubernetes.io/metadata.name"),
        "select the namespace by its name label: {labels:?}"
    );
}

/// Every flag the railyard-scheduler Deployment passes or documents in its
/// comments is one the binary knows.
#[test]
fn documented_extender_flags_exist() {
    let text = read("deploy.yaml");
    let doc = text
        .split("\n---\n")
        .find(|d| d.contains("kind: Deployment") && d.contains("image: ghcr.io/railyard/railyard-scheduler"))
        .expect("the extender's Deployment");
    let flags: BTreeSet<&str> = doc
        .match_indices("\"--")
        .map(|(i, _)| {
            let rest = &doc[i + 1..];
            &rest[..rest.find(['=', '"']).expect("flag end")]
        })
        .collect();
    assert!(flags.contains("--tls-client-ca-file"), "{flags:?}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_railyard-scheduler"))
        .arg("--help")
        .output()
        .expect("run railyard-scheduler --help");
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in flags {
        assert!(
            help.contains(&format!("{flag} ")),
            "{flag} is not a railyard-scheduler flag:\n{help}"
        );
    }
}

/// The decision key the extender is told to read is the Secret it mounts.
#[test]
fn the_decision_key_comes_from_a_mounted_secret() {
    use k8s_openapi::api::apps::v1::Deployment;
    let docs = documents(&read("deploy.yaml"));
    let d: Deployment = find(&docs, "Deployment", "railyard-scheduler");
    let pod = d.spec.and_then(|s| s.template.spec).expect("pod spec");
    let c = &pod.containers[0];
    let arg = c
        .args
        .iter()
        .flatten()
        .find_map(|a| a.strip_prefix("--decision-key-file="))
        .expect("--decision-key-file");
    let mount = c
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| arg.starts_with(&format!("{}/", m.mount_path)))
        .expect("a mount holding the key file");
    let volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == mount.name)
        .expect("the mounted volume");
    let secret = volume.secret.as_ref().expect("a Secret volume");
    assert_eq!(secret.secret_name.as_deref(), Some("railyard-scheduler-decision-key"));
    // Required: a missing Secret must not start the extender with a key of
    // its own, which would drop every recorded plan at each restart.
    assert_ne!(secret.optional, Some(true));
    assert_eq!(arg.rsplit('/').next(), Some("key"));
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SchedulerConfig {
    api_version: String,
    kind: String,
    #[serde(default)]
    leader_election: Option<Value>,
    #[serde(default)]
    profiles: Vec<Value>,
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
    let c: SchedulerConfig = serde_saphyr::from_str(&read("scheduler-config.yaml")).expect("config");
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
/// instructions fails too) that verifies the extender's certificate and
/// presents a client certificate (for --tls-client-ca-file) from the same
/// mounted directory the kube-scheduler Deployment documents.
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
    let overrides: serde_json::Map<String, Value> = serde_saphyr::from_str(&snippet).expect("documented HTTPS snippet");
    let mut config: Value = serde_saphyr::from_str(&text).expect("config");
    let extender = config["extenders"][0].as_object_mut().expect("extender");
    for (k, v) in overrides {
        assert!(
            extender.contains_key(&k) || k == "tlsConfig",
            "documented key {k:?} is not in the stanza"
        );
        extender.insert(k, v);
    }
    let c: SchedulerConfig = serde_json::from_value(config).expect("HTTPS variant");
    let e = &c.extenders[0];
    assert!(e.enable_https && e.url_prefix.starts_with("https://") && e.url_prefix.ends_with("/railyard"));
    let tls = e.tls_config.as_ref().expect("tlsConfig");
    assert!(!tls.insecure && tls.ca_file.is_some(), "{tls:?}");
    let files = [&tls.ca_file, &tls.cert_file, &tls.key_file].map(|f| f.clone().expect("caFile, certFile, keyFile"));
    let distinct: BTreeSet<&String> = files.iter().collect();
    assert_eq!(distinct.len(), 3, "{files:?}");
    // Mounted in the kube-scheduler's pod, as the deploy.yaml comments say.
    let deploy = read("deploy.yaml");
    for f in &files {
        let (dir, name) = f.rsplit_once('/').expect("absolute path");
        assert!(
            deploy.contains(&format!("mountPath: {dir},")),
            "{dir} is not a documented mount"
        );
        assert!(
            deploy.contains(&format!("path: {name}}}")),
            "{name} is not a documented projected file"
        );
    }
}
