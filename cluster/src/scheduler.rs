//! kube-scheduler's role, exactly as far as the extender protocol goes: for
//! each pending pod of the extender's scheduler name, in queue order
//! (priority, then arrival), the in-tree filters kube-scheduler would run
//! first (resources fit, node selector, unschedulable, taints), then the
//! extender's `filter` and `prioritize` over HTTP with node names only
//! (`nodeCacheCapable`), the highest score, and the extender's `bind`. A
//! pod no node passes gets `PodScheduled=False` with kube-scheduler's
//! "0/N nodes are available" message, and is retried on the next pass.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams};
use railyard_scheduler::k8s::{LeanPod, effective_requests, parse_quantity};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::extender::SCHEDULER_NAME;
use crate::http::ExtenderClient;

/// The latest outcome of scheduling one pod.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Bound to `node`, with the extender's score there and the number of
    /// nodes that passed its filter.
    Bound { node: String, score: i64, passed: usize },
    /// No node fits now; kube-scheduler's message.
    Unschedulable(String),
    /// The extender answered with an error (or could not be reached).
    Error(String),
}

/// One binding, in the order they happened.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    pub pod: String,
    pub node: String,
    pub score: i64,
    pub passed: usize,
    /// Which pass bound it (1-based).
    pub pass: u64,
}

#[derive(Debug, Default)]
struct Log {
    latest: BTreeMap<String, Outcome>,
    placements: Vec<Placement>,
    passes: u64,
}

/// The scheduler loop's state; cheap to clone.
#[derive(Clone)]
pub struct Scheduler {
    client: Client,
    extender: Arc<Mutex<ExtenderClient>>,
    log: Arc<Mutex<Log>>,
    arrival: Arc<Mutex<HashMap<String, u64>>>,
    passes: watch::Sender<u64>,
}

/// Free resources of one node during a pass.
#[derive(Debug, Clone)]
struct NodeFit {
    name: String,
    labels: BTreeMap<String, String>,
    taints: Vec<(String, String, String)>,
    unschedulable: bool,
    free: BTreeMap<String, f64>,
}

fn quantity(v: &Value) -> Option<f64> {
    v.as_str().and_then(|s| parse_quantity(s).ok())
}

/// A pod's effective requests, as kube-scheduler's `NodeResourcesFit`
/// computes them (the extender's [`effective_requests`]: the sum over
/// containers, requests else limits, the largest init container where that
/// is larger), and one `pods`.
fn requests(pod: &Value) -> Result<BTreeMap<String, f64>, String> {
    let lean: LeanPod = serde_json::from_value(pod.clone()).map_err(|e| format!("not a pod: {e}"))?;
    let mut sum = effective_requests(&lean).map_err(|e| e.to_string())?;
    *sum.entry("pods".into()).or_default() += 1.0;
    Ok(sum)
}

fn tolerated(pod: &Value, (key, value, effect): &(String, String, String)) -> bool {
    pod["spec"]["tolerations"].as_array().into_iter().flatten().any(|t| {
        let k = t["key"].as_str().unwrap_or_default();
        let e = t["effect"].as_str().unwrap_or_default();
        let key_ok = k.is_empty() || k == key;
        let effect_ok = e.is_empty() || e == effect;
        let value_ok = t["operator"].as_str() == Some("Exists") || t["value"].as_str().unwrap_or_default() == value;
        key_ok && effect_ok && value_ok
    })
}

impl NodeFit {
    fn of(node: &Node) -> Option<NodeFit> {
        let v = serde_json::to_value(node).ok()?;
        let free = v["status"]["allocatable"]
            .as_object()
            .map(|m| m.iter().filter_map(|(k, q)| Some((k.clone(), quantity(q)?))).collect())
            .unwrap_or_default();
        let taints = v["spec"]["taints"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| matches!(t["effect"].as_str(), Some("NoSchedule" | "NoExecute")))
            .map(|t| {
                let s = |k: &str| t[k].as_str().unwrap_or_default().to_string();
                (s("key"), s("value"), s("effect"))
            })
            .collect();
        Some(NodeFit {
            name: node.metadata.name.clone()?,
            labels: node.metadata.labels.clone().unwrap_or_default(),
            taints,
            unschedulable: v["spec"]["unschedulable"].as_bool().unwrap_or(false),
            free,
        })
    }

    /// Why `pod` cannot go here, as kube-scheduler words it; `None`: fits.
    fn misfit(&self, pod: &Value, req: &BTreeMap<String, f64>) -> Option<String> {
        if self.unschedulable {
            return Some("node(s) were unschedulable".into());
        }
        let selector_ok = pod["spec"]["nodeSelector"]
            .as_object()
            .into_iter()
            .flatten()
            .all(|(k, v)| self.labels.get(k).map(String::as_str) == v.as_str());
        if !selector_ok {
            return Some("node(s) didn't match Pod's node affinity/selector".into());
        }
        if let Some((k, v, _)) = self.taints.iter().find(|t| !tolerated(pod, t)) {
            return Some(format!("node(s) had untolerated taint {{{k}: {v}}}"));
        }
        for (r, want) in req {
            if *want > 0.0 && self.free.get(r).copied().unwrap_or(0.0) + 1e-9 < *want {
                return Some(format!("Insufficient {r}"));
            }
        }
        None
    }

    fn take(&mut self, req: &BTreeMap<String, f64>) {
        for (r, n) in req {
            *self.free.entry(r.clone()).or_default() -= n;
        }
    }
}

/// kube-scheduler's diagnosis: "0/N nodes are available: 2 Insufficient
/// nvidia.com/gpu, 1 node(s) didn't match ...", reasons counted and sorted.
fn diagnosis(total: usize, reasons: &[String]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in reasons {
        *counts.entry(r.as_str()).or_default() += 1;
    }
    let parts: Vec<String> = counts.iter().map(|(r, n)| format!("{n} {r}")).collect();
    format!("0/{total} nodes are available: {}.", parts.join(", "))
}

fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

fn ended(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

impl Scheduler {
    pub fn new(client: Client, extender: ExtenderClient) -> Scheduler {
        Scheduler {
            client,
            extender: Arc::new(Mutex::new(extender)),
            log: Arc::default(),
            arrival: Arc::default(),
            passes: watch::channel(0).0,
        }
    }

    /// Talk to another extender process from the next request on.
    pub fn set_extender(&self, extender: ExtenderClient) {
        *self.extender.lock().unwrap_or_else(|e| e.into_inner()) = extender;
    }

    fn extender(&self) -> ExtenderClient {
        self.extender.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn log(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Latest outcome per pod.
    pub fn outcomes(&self) -> BTreeMap<String, Outcome> {
        self.log().latest.clone()
    }

    /// Every binding so far, in order.
    pub fn placements(&self) -> Vec<Placement> {
        self.log().placements.clone()
    }

    /// Passes completed; bumps after each.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.passes.subscribe()
    }

    /// Pending pods of this scheduler in queue order: priority, then the
    /// order this scheduler first saw them.
    fn queue(&self, pods: &[Pod]) -> Vec<Pod> {
        let mut arrival = self.arrival.lock().unwrap_or_else(|e| e.into_inner());
        let mut q: Vec<(i32, u64, Pod)> = Vec::new();
        for p in pods {
            let spec = p.spec.as_ref();
            let pending = spec.is_some_and(|s| s.node_name.as_deref().unwrap_or_default().is_empty())
                && spec.and_then(|s| s.scheduler_name.as_deref()) == Some(SCHEDULER_NAME)
                && p.metadata.deletion_timestamp.is_none()
                && !ended(p);
            if !pending {
                continue;
            }
            let uid = p.metadata.uid.clone().unwrap_or_default();
            let next = arrival.len() as u64;
            let seq = *arrival.entry(uid).or_insert(next);
            let priority = spec.and_then(|s| s.priority).unwrap_or(0);
            q.push((-priority, seq, p.clone()));
        }
        q.sort_by_key(|(p, s, _)| (*p, *s));
        q.into_iter().map(|(_, _, p)| p).collect()
    }

    /// One scheduling pass over every pending pod.
    pub async fn pass(&self) -> Result<()> {
        self.pass_limited(usize::MAX).await
    }

    /// A pass that stops after `max_binds` bindings (a scheduler that dies
    /// mid-gang, for tests).
    pub async fn pass_limited(&self, max_binds: usize) -> Result<()> {
        let nodes = Api::<Node>::all(self.client.clone())
            .list(&ListParams::default())
            .await
            .context("listing nodes")?;
        let pods = Api::<Pod>::all(self.client.clone())
            .list(&ListParams::default())
            .await
            .context("listing pods")?;
        let mut fits: Vec<NodeFit> = nodes.items.iter().filter_map(NodeFit::of).collect();
        fits.sort_by(|a, b| a.name.cmp(&b.name));
        for p in &pods.items {
            let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.as_deref()) else {
                continue;
            };
            if ended(p) {
                continue;
            }
            let v = serde_json::to_value(p).unwrap_or(Value::Null);
            if let (Some(f), Ok(req)) = (fits.iter_mut().find(|f| f.name == node), requests(&v)) {
                f.take(&req);
            }
        }
        let pass = self.log().passes + 1;
        let mut binds = 0;
        for pod in self.queue(&pods.items) {
            if binds >= max_binds {
                break;
            }
            let key = pod_key(&pod);
            let v = serde_json::to_value(&pod).context("encoding a pod")?;
            let outcome = self.schedule_one(&v, &mut fits).await;
            if let Outcome::Unschedulable(msg) = &outcome {
                self.mark_unschedulable(&pod, msg).await;
            }
            let mut log = self.log();
            if let Outcome::Bound { node, score, passed } = &outcome {
                binds += 1;
                log.placements.push(Placement {
                    pod: key.clone(),
                    node: node.clone(),
                    score: *score,
                    passed: *passed,
                    pass,
                });
            }
            log.latest.insert(key, outcome);
        }
        self.log().passes = pass;
        self.passes.send_modify(|n| *n = pass);
        Ok(())
    }

    async fn schedule_one(&self, pod: &Value, fits: &mut [NodeFit]) -> Outcome {
        let req = match requests(pod) {
            Ok(r) => r,
            Err(e) => return Outcome::Unschedulable(format!("pod's requests: {e}")),
        };
        let mut reasons = Vec::new();
        let mut feasible = Vec::new();
        for f in fits.iter() {
            match f.misfit(pod, &req) {
                Some(why) => reasons.push(why),
                None => feasible.push(f.name.clone()),
            }
        }
        if feasible.is_empty() {
            return Outcome::Unschedulable(diagnosis(fits.len(), &reasons));
        }
        let ext = self.extender();
        let filtered = match ext.filter(pod, &feasible).await {
            Ok(f) if !f.error.is_empty() => return Outcome::Error(f.error),
            Ok(f) => f,
            Err(e) => return Outcome::Error(format!("extender filter: {e:#}")),
        };
        if filtered.node_names.is_empty() {
            reasons.extend(filtered.failed.into_iter().map(|(_, why)| why));
            reasons.extend(filtered.unresolvable.into_iter().map(|(_, why)| why));
            return Outcome::Unschedulable(diagnosis(fits.len(), &reasons));
        }
        let scores = match ext.prioritize(pod, &filtered.node_names).await {
            Ok(s) => s,
            Err(e) => return Outcome::Error(format!("extender prioritize: {e:#}")),
        };
        // Highest score; ties go to the first in list order (kube-scheduler
        // picks one of the tied at random).
        let mut best: Option<(&str, i64)> = None;
        for n in &filtered.node_names {
            let s = scores.iter().find(|(h, _)| h == n).map_or(0, |(_, s)| *s);
            if best.is_none_or(|(_, b)| s > b) {
                best = Some((n, s));
            }
        }
        let Some((node, score)) = best else {
            return Outcome::Error("prioritize scored no node".into());
        };
        let node = node.to_string();
        if let Err(e) = ext.bind(pod, &node).await {
            return Outcome::Error(format!("binding to {node}: {e:#}"));
        }
        if let Some(f) = fits.iter_mut().find(|f| f.name == node) {
            f.take(&req);
        }
        Outcome::Bound {
            node,
            score,
            passed: filtered.node_names.len(),
        }
    }

    /// `PodScheduled=False`, reason `Unschedulable`, as kube-scheduler
    /// records it; written only when the message changed.
    async fn mark_unschedulable(&self, pod: &Pod, message: &str) {
        let current = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"))
            .and_then(|c| c.message.as_deref());
        if current == Some(message) {
            return;
        }
        let (Some(ns), Some(name)) = (pod.metadata.namespace.as_deref(), pod.metadata.name.as_deref()) else {
            return;
        };
        let patch = json!({"status": {"conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}
        ]}});
        let params = PatchParams {
            field_manager: Some("default-scheduler".into()),
            ..PatchParams::default()
        };
        if let Err(e) = Api::<Pod>::namespaced(self.client.clone(), ns)
            .patch_status(name, &params, &Patch::Strategic(&patch))
            .await
        {
            tracing::warn!(pod = %name, error = %e, "writing PodScheduled failed");
        }
    }

    /// Runs passes until aborted: after each, waits for a change in the API
    /// (`changes`), at most `period` (kube-scheduler also retries
    /// unschedulable pods on a timer).
    pub async fn run(self, mut changes: watch::Receiver<u64>, period: Duration) {
        loop {
            changes.borrow_and_update();
            if let Err(e) = self.pass().await {
                tracing::warn!(error = %e, "scheduling pass failed");
            }
            let _ = tokio::time::timeout(period, changes.changed()).await;
            // Let watches catch up with the change before the next pass.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("extender", &self.extender)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_sum_containers_take_the_larger_init_container_and_count_the_pod() {
        let pod = json!({"spec": {
            "containers": [
                {"resources": {"requests": {"cpu": "500m"}, "limits": {"nvidia.com/gpu": "2"}}},
                {"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}},
            ],
            "initContainers": [{"resources": {"requests": {"cpu": "4"}}}],
        }});
        let r = requests(&pod).unwrap();
        assert_eq!(r["cpu"], 4.0);
        assert_eq!(r["nvidia.com/gpu"], 2.0);
        assert_eq!(r["memory"], 1024.0 * 1024.0 * 1024.0);
        assert_eq!(r["pods"], 1.0);
        let bad = json!({"spec": {"containers": [{"resources": {"limits": {"cpu": "lots"}}}]}});
        assert!(requests(&bad).unwrap_err().contains("cpu"));
    }

    #[test]
    fn the_diagnosis_counts_reasons_as_kube_scheduler_does() {
        let r = vec![
            "Insufficient nvidia.com/gpu".to_string(),
            "node(s) didn't match Pod's node affinity/selector".to_string(),
            "Insufficient nvidia.com/gpu".to_string(),
        ];
        assert_eq!(
            diagnosis(3, &r),
            "0/3 nodes are available: 2 Insufficient nvidia.com/gpu, 1 node(s) didn't match Pod's node affinity/selector."
        );
    }
}
