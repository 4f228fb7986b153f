//! The kubelet's part toward the API, on top of the fake device manager
//! ([`FakeKubelet`]): the Node's capacity and allocatable follow the device
//! plugins' `ListAndWatch` lists; a pod bound to the node is admitted (one
//! `GetPreferredAllocation` / `Allocate` per container and extended
//! resource, reported to PodResources) and its phase written; a pod that
//! ends or is deleted gives its devices back.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher::{self, Event};
use railyard_kubelet_api::fake::{AdmissionError, FakeKubelet, PodRef, PodResourcesHandle, is_extended_resource_name};
use serde_json::{Value, json};
use tokio::sync::watch;

/// Field manager of the kubelet's writes.
const FIELD_MANAGER: &str = "kubelet";
/// How long one wait for a device-list change lasts before waiting again.
const LIST_WAIT: Duration = Duration::from_secs(3600);

/// What the kubelet did for one pod.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodAdmission {
    pub uid: String,
    /// (container, resource, device ids) in admission order.
    pub devices: Vec<(String, String, Vec<String>)>,
    /// CDI device names the runtime would inject, every container.
    pub cdi_devices: Vec<String>,
    /// Env the plugin set, every container (`NVIDIA_VISIBLE_DEVICES`, ...).
    pub env: BTreeMap<String, String>,
    /// Why admission failed (the pod is `Failed`), if it did.
    pub failed: Option<String>,
}

/// Admissions by `namespace/name`, with a change counter to wait on.
#[derive(Debug, Clone)]
pub struct Admissions {
    pods: Arc<Mutex<BTreeMap<String, PodAdmission>>>,
    changed: watch::Sender<u64>,
}

impl Default for Admissions {
    fn default() -> Self {
        Admissions {
            pods: Arc::default(),
            changed: watch::channel(0).0,
        }
    }
}

impl Admissions {
    pub fn get(&self, key: &str) -> Option<PodAdmission> {
        self.lock().get(key).cloned()
    }

    pub fn all(&self) -> BTreeMap<String, PodAdmission> {
        self.lock().clone()
    }

    /// Changes so far; bumps on every admission or release.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, PodAdmission>> {
        self.pods.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self, key: String, a: PodAdmission) {
        self.lock().insert(key, a);
        self.changed.send_modify(|n| *n += 1);
    }

    fn remove(&self, key: &str) -> Option<PodAdmission> {
        let a = self.lock().remove(key);
        self.changed.send_modify(|n| *n += 1);
        a
    }
}

/// Healthy devices per registered resource, as kubelet counts allocatable.
fn device_counts(kubelet: &FakeKubelet) -> BTreeMap<String, usize> {
    kubelet
        .resources()
        .into_iter()
        .filter_map(|r| {
            let p = kubelet.plugin(&r)?;
            let n = if p.connected { p.healthy().len() } else { 0 };
            Some((r, n))
        })
        .collect()
}

/// Keeps the Node's extended resources equal to the plugins' healthy device
/// counts (kubelet's node status loop); `base` is the rest of capacity.
pub async fn sync_allocatable(client: Client, node: String, kubelet: Arc<FakeKubelet>, base: Value) {
    let api: Api<Node> = Api::all(client);
    let mut last: Option<BTreeMap<String, usize>> = None;
    loop {
        let counts = kubelet
            .wait_for(LIST_WAIT, |_| {
                let c = device_counts(&kubelet);
                (last.as_ref() != Some(&c)).then_some(c)
            })
            .await;
        let Some(counts) = counts else { continue };
        let mut resources = base.clone();
        for (r, n) in &counts {
            resources[r] = json!(n.to_string());
        }
        let patch = json!({"status": {"capacity": resources, "allocatable": resources}});
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        match api.patch_status(&node, &params, &Patch::Merge(&patch)).await {
            Ok(_) => last = Some(counts),
            Err(e) => {
                tracing::warn!(%node, error = %e, "node status update failed; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// The extended resources a container asks for (limits, else requests,
/// as kubelet's device manager reads them), in name order.
fn extended_asks(container: &Value) -> Vec<(String, usize)> {
    let r = &container["resources"];
    let mut out = BTreeMap::new();
    for part in ["requests", "limits"] {
        let Some(m) = r[part].as_object() else { continue };
        for (name, q) in m {
            if !is_extended_resource_name(name) {
                continue;
            }
            let n = q
                .as_str()
                .and_then(|s| s.parse::<usize>().ok())
                .or_else(|| q.as_u64().map(|n| n as usize));
            if let Some(n) = n.filter(|n| *n > 0) {
                out.insert(name.clone(), n);
            }
        }
    }
    out.into_iter().collect()
}

/// One node's kubelet toward the API.
#[derive(Clone)]
pub struct PodAdmitter {
    pub node: String,
    pub kubelet: Arc<FakeKubelet>,
    pub pod_resources: PodResourcesHandle,
    pub admissions: Admissions,
    client: Client,
}

fn key_of(pod: &Pod) -> Option<(String, String)> {
    Some((pod.metadata.namespace.clone()?, pod.metadata.name.clone()?))
}

impl PodAdmitter {
    pub fn new(client: Client, node: &str, kubelet: Arc<FakeKubelet>, pod_resources: PodResourcesHandle) -> Self {
        PodAdmitter {
            node: node.to_string(),
            kubelet,
            pod_resources,
            admissions: Admissions::default(),
            client,
        }
    }

    /// Watches the pods bound to this node until the watch ends.
    pub async fn run(self) {
        let api: Api<Pod> = Api::all(self.client.clone());
        let cfg = watcher::Config::default().fields(&format!("spec.nodeName={}", self.node));
        let mut stream = std::pin::pin!(watcher::watcher(api, cfg));
        let mut relisted: Option<BTreeSet<String>> = None;
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(Event::Init) => relisted = Some(BTreeSet::new()),
                Ok(Event::InitApply(pod)) => {
                    if let (Some(seen), Some((ns, name))) = (relisted.as_mut(), key_of(&pod)) {
                        seen.insert(format!("{ns}/{name}"));
                    }
                    self.observe(&pod).await;
                }
                Ok(Event::InitDone) => {
                    // Pods deleted while the watch was down.
                    if let Some(seen) = relisted.take() {
                        for key in self.admissions.all().into_keys().filter(|k| !seen.contains(k)) {
                            self.release(&key);
                        }
                    }
                }
                Ok(Event::Apply(pod)) => self.observe(&pod).await,
                Ok(Event::Delete(pod)) => {
                    if let Some((ns, name)) = key_of(&pod) {
                        self.release(&format!("{ns}/{name}"));
                    }
                }
                Err(e) => {
                    tracing::warn!(node = %self.node, error = %e, "kubelet pod watch error; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    async fn observe(&self, pod: &Pod) {
        let Some((ns, name)) = key_of(pod) else { return };
        let key = format!("{ns}/{name}");
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .unwrap_or("Pending");
        let known = self.admissions.get(&key);
        if known.as_ref().is_some_and(|a| a.uid != uid) {
            // The same name, a new pod: the old one is gone.
            self.release(&key);
        }
        let ended = matches!(phase, "Succeeded" | "Failed");
        if pod.metadata.deletion_timestamp.is_some() || ended {
            if known.is_some_and(|a| a.failed.is_none()) {
                self.release(&key);
            }
            return;
        }
        if self.admissions.get(&key).is_some() || phase != "Pending" {
            return;
        }
        let admission = self.admit(&ns, &name, &uid, pod).await;
        let status = match &admission.failed {
            None => json!({"phase": "Running", "conditions": [
                {"type": "Initialized", "status": "True"},
                {"type": "ContainersReady", "status": "True"},
                {"type": "Ready", "status": "True"},
            ]}),
            Some(why) => {
                let (reason, message) = why.split_once(": ").unwrap_or(("UnexpectedAdmissionError", why));
                json!({"phase": "Failed", "reason": reason, "message": message})
            }
        };
        self.admissions.set(key, admission);
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        if let Err(e) = api
            .patch_status(&name, &params, &Patch::Merge(&json!({"status": status})))
            .await
        {
            tracing::warn!(pod = %name, error = %e, "writing the pod's phase failed");
        }
    }

    /// Admits every container; on the first failure gives back what the
    /// pod got and records why, as kubelet's admission handler does.
    async fn admit(&self, ns: &str, name: &str, uid: &str, pod: &Pod) -> PodAdmission {
        let mut a = PodAdmission {
            uid: uid.to_string(),
            ..PodAdmission::default()
        };
        let spec = serde_json::to_value(&pod.spec).unwrap_or(Value::Null);
        let containers = spec["containers"].as_array().cloned().unwrap_or_default();
        for c in &containers {
            let cname = c["name"].as_str().unwrap_or_default();
            for (resource, n) in extended_asks(c) {
                let r = self
                    .kubelet
                    .admit_pod(&PodRef::new(ns, name, cname), &resource, n, &[])
                    .await;
                match r {
                    Ok(adm) => {
                        a.cdi_devices
                            .extend(adm.response.cdi_devices.iter().map(|d| d.name.clone()));
                        a.env.extend(adm.response.envs.clone());
                        a.devices.push((cname.to_string(), resource, adm.devices));
                    }
                    Err(e) => {
                        self.give_back(ns, name, &a);
                        a.failed = Some(match e {
                            AdmissionError::Insufficient {
                                resource,
                                requested,
                                available,
                            } => format!(
                                "OutOf{resource}: Pod was rejected: Node didn't have enough resource: {resource}, requested: {requested}, free: {available}"
                            ),
                            AdmissionError::NotRegistered(r) => format!(
                                "UnexpectedAdmissionError: Allocate failed due to no registered device plugin for {r}, which is unexpected"
                            ),
                            e => format!("UnexpectedAdmissionError: Allocate failed due to {e}, which is unexpected"),
                        });
                        a.devices.clear();
                        return a;
                    }
                }
            }
        }
        a
    }

    fn give_back(&self, ns: &str, name: &str, a: &PodAdmission) {
        for (_, resource, ids) in &a.devices {
            self.kubelet.release(resource, ids);
        }
        self.pod_resources.remove_pod(ns, name);
    }

    fn release(&self, key: &str) {
        if let Some(a) = self.admissions.remove(key)
            && let Some((ns, name)) = key.split_once('/')
        {
            self.give_back(ns, name, &a);
        }
    }
}

impl std::fmt::Debug for PodAdmitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodAdmitter")
            .field("node", &self.node)
            .field("admissions", &self.admissions)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extended_asks_take_limits_over_requests_and_skip_native_resources() {
        let c = json!({"resources": {
            "requests": {"cpu": "2", "nvidia.com/gpu": "1", "example.com/foo": "3"},
            "limits": {"nvidia.com/gpu": "2", "memory": "1Gi", "hugepages-2Mi": "1"},
        }});
        assert_eq!(
            extended_asks(&c),
            vec![("example.com/foo".to_string(), 3), ("nvidia.com/gpu".to_string(), 2)]
        );
        assert!(!is_extended_resource_name("kubernetes.io/foo"));
        assert!(!is_extended_resource_name("requests.nvidia.com/gpu"));
        assert!(!is_extended_resource_name("node.kubernetes.io/x"));
    }
}
