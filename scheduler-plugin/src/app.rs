//! The extender's HTTP API: `POST <prefix>/{filter,prioritize,bind,preempt}`,
//! `GET /healthz`, `GET /metrics`.
//!
//! Bodies that do not parse get HTTP 400 with a message; requests that
//! parse but cannot be served get 200 with `Error` set in the result (what
//! kube-scheduler expects). A panic inside a handler is caught, counted
//! (`railyard_scheduler_handler_panics_total`) and answered with a 500 that
//! says so, never an empty one; the locks it may have held recover from
//! poisoning, so later requests are served as before.
//!
//! Bodies are read before any handler runs, bounded by [`RequestLimits`]:
//! larger than `max_request_bytes` gets 413, slower than `body_timeout` 408,
//! both closing the connection.
//!
//! Nodes come from the node watch only. A `Nodes` list in a request (a
//! kube-scheduler without `nodeCacheCapable`) is never added to the view:
//! its unknown names are answered as failed and forgotten.

use crate::decision::DecisionKey;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::{FutureExt, StreamExt};
use prometheus_client::registry::Registry;
use railyard_core::extender::{ClusterView, GangFilter, PodAsk, ViewConfig};
use serde::Serialize;

use crate::k8s::{self, GangRef, LeanPod};
use crate::metrics::{Metrics, StateLabels};
use crate::wire::{
    ExtenderArgs, ExtenderBindingArgs, ExtenderPreemptionArgs, ExtenderPreemptionResult, MetaPod, MetaVictims,
    NodeList, NodeName, host_priorities_json, push_json_list, push_json_map, push_json_str,
};

/// Pod annotations naming topology levels for a gang (`node`, `nvlink`,
/// `leaf`, `tier-N`, …; see `core::gang::Level::parse`).
pub const REQUIRED_LEVEL_ANNOTATION: &str = "railyard.dev/gang-required-level";
pub const PREFERRED_LEVEL_ANNOTATION: &str = "railyard.dev/gang-preferred-level";

/// Creates the Binding in the API, carrying the decision annotations (the
/// API server copies a Binding's annotations onto the pod).
pub trait Binder: Send + Sync + std::fmt::Debug + 'static {
    fn bind(&self, req: BindRequest) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'static>>;

    /// Reads a pod from the API: `Ok(None)` when it does not exist. Bind
    /// uses it for pods this extender did not filter (it restarted between
    /// kube-scheduler's filter and bind, or another replica filtered them).
    fn get_pod(
        &self,
        namespace: &str,
        name: &str,
    ) -> Pin<Box<dyn Future<Output = Result<Option<LeanPod>, String>> + Send + 'static>>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindRequest {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub node: String,
    pub annotations: BTreeMap<String, String>,
}

/// Accepts every binding and records it (tests, the load bench).
#[derive(Debug, Clone, Default)]
pub struct RecordingBinder {
    pub bound: Arc<Mutex<Vec<BindRequest>>>,
    /// Fail binds to these nodes.
    pub fail_nodes: Arc<Mutex<Vec<String>>>,
    /// The pods `get_pod` finds, by `<namespace>/<name>`.
    pub pods: Arc<Mutex<BTreeMap<String, LeanPod>>>,
}

impl Binder for RecordingBinder {
    fn bind(&self, req: BindRequest) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'static>> {
        let fail = self.fail_nodes.lock().map(|f| f.contains(&req.node)).unwrap_or(false);
        let bound = self.bound.clone();
        Box::pin(async move {
            if fail {
                return Err(format!("binding to {} refused", req.node));
            }
            bound.lock().map_err(|e| e.to_string())?.push(req);
            Ok(())
        })
    }

    fn get_pod(
        &self,
        namespace: &str,
        name: &str,
    ) -> Pin<Box<dyn Future<Output = Result<Option<LeanPod>, String>> + Send + 'static>> {
        let found = self
            .pods
            .lock()
            .map(|p| p.get(&format!("{namespace}/{name}")).cloned())
            .map_err(|e| e.to_string());
        Box::pin(async move { found })
    }
}

/// Gang sizes from the API objects.
#[derive(Debug, Clone, Default)]
pub struct GangIndex {
    /// scheduler-plugins PodGroups: `<ns>/<name>` → `minMember`.
    pub pod_groups: HashMap<String, u32>,
    /// Upstream Workloads (1.35): `<ns>/<name>` → pod group → gang
    /// `minCount` (`None`: basic policy). Replicas of a pod group
    /// (`podGroupReplicaKey`) are not objects: each is a gang of this size.
    pub workloads: HashMap<String, HashMap<String, Option<u32>>>,
    /// Upstream PodGroups (1.36): `<ns>/<name>` → gang `minCount`.
    pub scheduling_groups: HashMap<String, Option<u32>>,
    /// Gang id → UIDs of its live members that ask for no GPU (an MPIJob's
    /// launcher). They count toward `minMember` but are never sent to the
    /// extender, so the planner places that many fewer GPU members.
    pub gpuless_members: HashMap<String, HashSet<String>>,
    /// Owner objects gangs are inferred from (Jobs, JobSets, …).
    pub owners: crate::owners::OwnerIndex,
}

impl GangIndex {
    /// Records whether pod `uid` of gang `id` is a live member without GPUs.
    pub fn note_member(&mut self, id: &str, uid: &str, gpuless_and_live: bool) {
        if gpuless_and_live {
            self.gpuless_members
                .entry(id.to_string())
                .or_default()
                .insert(uid.to_string());
        } else if let Some(set) = self.gpuless_members.get_mut(id) {
            set.remove(uid);
            if set.is_empty() {
                self.gpuless_members.remove(id);
            }
        }
    }

    /// Forgets every GPU-less member not in `live` (after a relist).
    pub fn keep_members(&mut self, live: &HashSet<String>) {
        self.gpuless_members.retain(|_, set| {
            set.retain(|u| live.contains(u));
            !set.is_empty()
        });
    }

    /// GPU members a gang needs: `min` less its GPU-less members.
    pub fn gpu_members(&self, id: &str, min: u32) -> u32 {
        let gpuless = self.gpuless_members.get(id).map_or(0, HashSet::len) as u32;
        min.saturating_sub(gpuless)
    }

    /// `Ok(Some(min))` for a gang, `Ok(None)` for a pod scheduled alone,
    /// `Err` when the group object is not known (yet).
    pub fn resolve(&self, r: &GangRef) -> Result<Option<u32>, String> {
        let min = match r {
            GangRef::PodGroup(id) => Some(
                *self
                    .pod_groups
                    .get(id)
                    .ok_or_else(|| format!("waiting for PodGroup {id} (scheduling.x-k8s.io/v1alpha1)"))?,
            ),
            // Every replica of a pod group is sized by the group's minCount.
            GangRef::Workload {
                workload: w,
                pod_group: g,
                replica: _,
            } => *self
                .workloads
                .get(w)
                .ok_or_else(|| format!("waiting for Workload {w} (scheduling.k8s.io)"))?
                .get(g)
                .ok_or_else(|| format!("Workload {w} has no pod group {g:?}"))?,
            GangRef::SchedulingGroup(id) => *self
                .scheduling_groups
                .get(id)
                .ok_or_else(|| format!("waiting for PodGroup {id} (scheduling.k8s.io)"))?,
            GangRef::Owner(o) => self.owners.size(o)?,
        };
        Ok(min.filter(|&m| m > 1))
    }
}

#[derive(Debug, Clone, Default)]
pub struct Config {
    /// URL prefix of the verbs, e.g. `/railyard` → `POST /railyard/filter`.
    pub url_prefix: String,
    pub view: ViewConfig,
}

/// Default of `--max-request-bytes`. kube-scheduler with `nodeCacheCapable`
/// sends the Pod and one name per candidate node: at 10,000 nodes with
/// names of the longest legal length (253 bytes) that is 2.6 MB of names,
/// plus a Pod of at most ~1.5 MB (etcd's object limit), so 16 MiB leaves room
/// for 50,000 such nodes. Without `nodeCacheCapable` each Node object (5-20
/// KB) is sent: 16 MiB is about 1,000-3,000 nodes; raise the limit to about
/// 20 KB per node for that mode, and the memory limit with it (README).
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 16 << 20;
/// Default of `--http-body-timeout-seconds`: a local kube-scheduler sends a
/// body of a few MB in milliseconds.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of `--max-inflight-request-bytes`: four bodies of the default
/// limit, or ~150 nodeCacheCapable requests at 10,000 nodes, at once.
pub const DEFAULT_MAX_INFLIGHT_BYTES: usize = 64 << 20;

/// Per-request limits, enforced before any handler runs (so for every
/// transport, and for `Router::oneshot` in tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    /// Larger bodies get 413 (a `Content-Length` above it before any of
    /// the body is read).
    pub max_request_bytes: usize,
    /// The whole body must arrive within this time from the end of the
    /// request head, or the request gets 408. Zero: no timeout.
    pub body_timeout: Duration,
    /// Bytes of bodies held at once by all requests together, from before
    /// the body is read until the handler is done with it (a request
    /// reserves its `Content-Length`, or `max_request_bytes` without one).
    /// A request over budget waits (within `body_timeout`): what requests
    /// cost in memory is bounded by this times the parse overhead, however
    /// many connections there are. At least `max_request_bytes`.
    pub max_inflight_bytes: usize,
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits {
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            max_inflight_bytes: DEFAULT_MAX_INFLIGHT_BYTES,
        }
    }
}

impl RequestLimits {
    /// The in-flight budget in KiB permits (never below one largest body).
    fn budget(&self) -> tokio::sync::Semaphore {
        let bytes = self.max_inflight_bytes.max(self.max_request_bytes);
        let kib = bytes.div_ceil(1024).min(tokio::sync::Semaphore::MAX_PERMITS);
        tokio::sync::Semaphore::new(kib)
    }
}

/// Why a node of the request failed when the view does not know it: nodes
/// come from the node watch only (a node just added is answered this way
/// until the watch delivers it).
pub const UNKNOWN_NODE: &str = "node is not known to the extender (not in its node watch)";

type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Locks a mutex whose holder may have panicked: what these mutexes guard
/// (caches, pending asks) is valid after any single operation.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Scores computed by filter, reused by the prioritize call that follows.
#[derive(Debug, Clone)]
struct Scored {
    generation: u64,
    /// The passed node names, in order, each followed by a 0 byte.
    names: Vec<u8>,
    scores: Vec<i64>,
}

impl Scored {
    /// Whether `names` are exactly the nodes these scores are for.
    fn same_names<'a>(&self, names: impl ExactSizeIterator<Item = &'a str>) -> bool {
        if names.len() != self.scores.len() {
            return false;
        }
        let mut at = 0;
        for n in names {
            let end = at + n.len();
            if self.names.get(at..end) != Some(n.as_bytes()) || self.names.get(end) != Some(&0) {
                return false;
            }
            at = end + 1;
        }
        at == self.names.len()
    }
}

/// Why a node failed: a fixed text or one shared by every node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    Static(&'static str),
    Shared(Arc<str>),
}

impl Reason {
    pub fn as_str(&self) -> &str {
        match self {
            Reason::Static(s) => s,
            Reason::Shared(s) => s,
        }
    }
}

/// A filter answer; nodes by position in `names` (the request's order).
#[derive(Debug, Clone, Default)]
pub struct FilterAnswer<'a> {
    pub names: Vec<NodeName<'a>>,
    pub passed: Vec<usize>,
    pub failed: Vec<(usize, Reason)>,
    pub unresolvable: Vec<(usize, Reason)>,
    /// Full-Nodes mode: the passed Node objects (else `NodeNames` is sent).
    pub nodes: Option<NodeList>,
    pub error: String,
}

impl FilterAnswer<'_> {
    pub fn passed_names(&self) -> Vec<String> {
        self.passed
            .iter()
            .filter_map(|&i| self.names.get(i).map(|n| n.as_str().to_string()))
            .collect()
    }

    fn error(error: String) -> Self {
        FilterAnswer {
            error,
            ..FilterAnswer::default()
        }
    }

    fn name(&self, i: usize) -> &str {
        self.names.get(i).map_or("", NodeName::as_str)
    }

    /// The `ExtenderFilterResult` JSON: `Nodes` or `NodeNames` (whichever
    /// the request used), `FailedNodes`, `FailedAndUnresolvableNodes` in
    /// the request's node order, `Error`; unset fields are `null`. Written
    /// by hand: at thousands of nodes encoding is a good part of a filter.
    pub fn to_json(&self) -> serde_json::Result<Vec<u8>> {
        let set = !self.error.is_empty();
        let mut out = Vec::with_capacity(64 + 48 * self.names.len());
        out.extend_from_slice(b"{\"Nodes\":");
        match (&self.nodes, set) {
            (Some(list), false) => serde_json::to_writer(&mut out, list)?,
            _ => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"NodeNames\":");
        let listed = !set && self.nodes.is_none();
        push_json_list(&mut out, listed.then(|| self.passed.iter().map(|&i| self.name(i))));
        out.extend_from_slice(b",\"FailedNodes\":");
        push_json_map(
            &mut out,
            (!set).then(|| self.failed.iter().map(|(i, r)| (self.name(*i), r.as_str()))),
        );
        out.extend_from_slice(b",\"FailedAndUnresolvableNodes\":");
        push_json_map(
            &mut out,
            (!set).then(|| self.unresolvable.iter().map(|(i, r)| (self.name(*i), r.as_str()))),
        );
        out.extend_from_slice(b",\"Error\":");
        push_json_str(&mut out, &self.error);
        out.push(b'}');
        Ok(out)
    }
}

/// Filter answers kept for the prioritize call that follows. kube-scheduler
/// filters and prioritizes one pod at a time, so a few suffice; each holds
/// the passed names (about 20 KB at 5,000 nodes), so many would cost memory.
const SCORED_MAX: usize = 64;
const PENDING_MAX: usize = 100_000;

/// Everything the handlers share.
pub struct AppState {
    pub config: Config,
    view: RwLock<ClusterView>,
    pub gangs: RwLock<GangIndex>,
    pub(crate) binder: Arc<dyn Binder>,
    pub metrics: Metrics,
    registry: Arc<Registry>,
    clock: Clock,
    /// Asks seen by filter, for bind.
    pub(crate) pending: Mutex<HashMap<String, PodAsk>>,
    /// Scheduler names whose pods this extender places (`spec.schedulerName`);
    /// empty: any.
    scheduler_names: Vec<String>,
    /// Topology label problems last logged (logged again only on change).
    fabric_problems: Mutex<Vec<(String, String)>>,
    scored: Mutex<HashMap<String, Scored>>,
    /// Set once the watches have listed everything.
    pub ready: AtomicBool,
    /// Nodes, pods listed (the watches set these; `ready` needs both).
    pub(crate) listed: [AtomicBool; 2],
    limits: RequestLimits,
    /// Signs the decisions bind records; recorded gang plans count only
    /// with its signature (`decision`).
    decision_key: DecisionKey,
    /// [`RequestLimits::max_inflight_bytes`], in KiB.
    inflight: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("config", &self.config).finish()
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl AppState {
    /// Registers metrics in `registry`, then keeps it for `/metrics`.
    pub fn new(config: Config, binder: Arc<dyn Binder>, mut registry: Registry) -> AppState {
        let metrics = Metrics::new(&mut registry);
        AppState {
            view: RwLock::new(ClusterView::new(config.view.clone())),
            config,
            gangs: RwLock::new(GangIndex::default()),
            binder,
            metrics,
            registry: Arc::new(registry),
            clock: Arc::new(now_ms),
            pending: Mutex::new(HashMap::new()),
            fabric_problems: Mutex::new(Vec::new()),
            scheduler_names: Vec::new(),
            scored: Mutex::new(HashMap::new()),
            ready: AtomicBool::new(true),
            listed: [AtomicBool::new(false), AtomicBool::new(false)],
            limits: RequestLimits::default(),
            inflight: Arc::new(RequestLimits::default().budget()),
            decision_key: DecisionKey::random_or_unusable(),
        }
    }

    /// The key bind signs decisions with and the pod watch verifies them
    /// by (`--decision-key-file`); without one, a random per-process key.
    pub fn with_decision_key(mut self, key: DecisionKey) -> Self {
        self.decision_key = key;
        self
    }

    pub fn decision_key(&self) -> &DecisionKey {
        &self.decision_key
    }

    /// Replaces the body size limit and body timeout ([`RequestLimits`]).
    pub fn with_request_limits(mut self, limits: RequestLimits) -> Self {
        self.inflight = Arc::new(limits.budget());
        self.limits = limits;
        self
    }

    pub fn request_limits(&self) -> RequestLimits {
        self.limits
    }

    /// What is left of the in-flight body budget, in bytes (KiB granular).
    pub fn inflight_free_bytes(&self) -> usize {
        self.inflight.available_permits().saturating_mul(1024)
    }

    /// Places only pods whose `spec.schedulerName` is one of `names` (the
    /// kube-scheduler profiles that call this extender); others are refused
    /// by filter and bind.
    pub fn with_scheduler_names(mut self, names: Vec<String>) -> Self {
        self.scheduler_names = names;
        self
    }

    /// Whether this extender may place `pod`: not bound yet, and meant for
    /// one of its schedulers. Bind creates Bindings with the extender's own
    /// rights, so it must not bind a pod another scheduler owns.
    pub fn placeable(&self, pod: &LeanPod) -> Result<(), String> {
        let spec = pod.spec.as_ref();
        if let Some(node) = spec.and_then(|s| s.node_name.as_deref()).filter(|n| !n.is_empty()) {
            return Err(format!("pod {} is already bound to {node}", k8s::pod_uid(pod)));
        }
        if self.scheduler_names.is_empty() {
            return Ok(());
        }
        let name = spec
            .and_then(|s| s.scheduler_name.as_deref())
            .filter(|n| !n.is_empty())
            .unwrap_or("default-scheduler");
        if self.scheduler_names.iter().any(|n| n == name) {
            Ok(())
        } else {
            Err(format!(
                "pod {} is for scheduler {name:?}; this extender places pods of {:?} (--scheduler-name)",
                k8s::pod_uid(pod),
                self.scheduler_names
            ))
        }
    }

    /// Whether the pod watch has listed every pod (tests).
    pub fn listed_pods_for_test(&self) -> bool {
        self.listed[1].load(Ordering::Relaxed)
    }

    /// Replaces the clock (unix ms), for tests.
    pub fn with_clock(mut self, clock: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    pub fn now(&self) -> u64 {
        (self.clock)()
    }

    /// Read access to the view. A poisoned lock is recovered: the view's
    /// operations leave it consistent at every step that can panic.
    pub fn view(&self) -> RwLockReadGuard<'_, ClusterView> {
        self.view.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn view_mut(&self) -> RwLockWriteGuard<'_, ClusterView> {
        self.view.write().unwrap_or_else(|e| e.into_inner())
    }

    fn gang_index(&self) -> RwLockReadGuard<'_, GangIndex> {
        self.gangs.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn gang_index_mut(&self) -> RwLockWriteGuard<'_, GangIndex> {
        self.gangs.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Periodic upkeep: expire reservations, rebuild the packing mix,
    /// refresh gauges.
    pub fn tick(&self) {
        let now = self.now();
        let mut v = self.view_mut();
        v.refresh(now);
        let (complete, filling) = v.gang_counts();
        self.metrics.nodes.set(v.node_count() as i64);
        self.metrics.pods.set(v.pod_count() as i64);
        let wb = v.writeback_counts();
        let problems = v.fabric_problems().to_vec();
        drop(v);
        self.metrics.mislabelled_nodes.set(problems.len() as i64);
        self.metrics.unknown_pods.set(wb.unknown_pods as i64);
        self.metrics.unknown_nodes.set(wb.unknown_nodes as i64);
        self.metrics.writeback_nodes.set(wb.writeback_nodes as i64);
        if let Ok(mut last) = self.fabric_problems.lock()
            && *last != problems
        {
            for (node, why) in problems.iter().filter(|p| !last.contains(p)) {
                tracing::warn!(%node, %why, "topology labels ignored; the node is planned without topology");
            }
            *last = problems;
        }
        self.metrics
            .gangs
            .get_or_create(&StateLabels { state: "complete" })
            .set(complete as i64);
        self.metrics
            .gangs
            .get_or_create(&StateLabels { state: "filling" })
            .set(filling as i64);
    }

    fn remember(&self, uid: &str, ask: &PodAsk) {
        let mut p = lock(&self.pending);
        if p.len() >= PENDING_MAX {
            p.clear();
        }
        p.insert(uid.to_string(), ask.clone());
    }

    /// `filter`: the answer, or the message of a 400.
    pub fn filter<'a>(&self, args: ExtenderArgs<'a>) -> Result<FilterAnswer<'a>, String> {
        let pod = args.pod.ok_or("the request has no Pod")?;
        let full = args.nodes;
        let cache_mode = args.node_names.is_some();
        let names = request_names(args.node_names, full.as_ref())?;
        let ask = match k8s::pod_ask(&pod) {
            Ok(a) => a,
            Err(e) => {
                self.metrics.decision("filter", "error");
                return Ok(FilterAnswer::error(e.to_string()));
            }
        };
        if let Err(e) = self.placeable(&pod) {
            self.metrics.decision("filter", "error");
            return Ok(FilterAnswer::error(e));
        }
        let uid = k8s::pod_uid(&pod);
        self.remember(&uid, &ask);
        let mut answer = FilterAnswer::default();
        let all = |r: &str| {
            let r = Reason::Shared(Arc::from(r));
            (0..names.len()).map(|i| (i, r.clone())).collect::<Vec<_>>()
        };
        let mut plain = true;
        let member = k8s::gang_member(&pod, &ask, &self.gang_index());
        match member {
            Err(wait) => {
                plain = false;
                self.metrics.decision("filter", "gang_wait");
                answer.failed = all(&wait);
            }
            Ok(Some((spec, rank))) => {
                let now = self.now();
                let decided = self.view_mut().gang_filter(&spec, &uid, rank, now);
                match decided {
                    Err(e) => {
                        self.metrics.decision("filter", "error");
                        return Ok(FilterAnswer::error(format!("gang {}: {e}", spec.id)));
                    }
                    Ok(GangFilter::Plain) => {}
                    Ok(GangFilter::Slot { node, slot }) => {
                        plain = false;
                        self.metrics.decision("filter", "gang_slot");
                        let why = Reason::Shared(Arc::from(format!(
                            "gang {} member slot {slot} is reserved on {node}",
                            spec.id
                        )));
                        for (i, n) in names.iter().enumerate() {
                            if n.as_str() == node {
                                answer.passed.push(i);
                            } else {
                                answer.failed.push((i, why.clone()));
                            }
                        }
                    }
                    Ok(GangFilter::Wait(reason)) => {
                        plain = false;
                        self.metrics.decision("filter", "gang_wait");
                        answer.failed = all(&reason);
                    }
                    Ok(GangFilter::Never(reason)) => {
                        plain = false;
                        self.metrics.decision("filter", "gang_never");
                        answer.unresolvable = all(&reason);
                    }
                }
            }
            Ok(None) => {}
        }
        if plain {
            let v = self.view();
            let out = v.filter(&ask, names.iter().map(NodeName::as_str), true);
            let generation = v.generation();
            // Only failed nodes are looked up again, to tell unknown ones.
            let failed: Vec<_> = out
                .failed
                .into_iter()
                .map(|(i, r)| {
                    let known = names.get(i).is_some_and(|n| v.has_node(n.as_str()));
                    (i, Reason::Static(if known { r } else { UNKNOWN_NODE }))
                })
                .collect();
            drop(v);
            self.metrics
                .decision("filter", if out.passed.is_empty() { "no_fit" } else { "ok" });
            let mut passed = Vec::with_capacity(out.passed.len() * 16);
            for &i in &out.passed {
                passed.extend_from_slice(names[i].as_str().as_bytes());
                passed.push(0);
            }
            let entry = Scored {
                generation,
                names: passed,
                scores: out.scores,
            };
            {
                let mut s = lock(&self.scored);
                if s.len() >= SCORED_MAX {
                    s.clear();
                }
                s.insert(uid, entry);
            }
            answer.passed = out.passed;
            answer.failed = failed;
            answer.unresolvable = out
                .unresolvable
                .into_iter()
                .map(|(i, r)| (i, Reason::Static(r)))
                .collect();
        }
        if !cache_mode {
            let keep: std::collections::HashSet<&str> = answer.passed.iter().map(|&i| names[i].as_str()).collect();
            let items = full
                .map(|l| {
                    l.items
                        .into_iter()
                        .filter(|n| n.metadata.name.as_deref().is_some_and(|x| keep.contains(x)))
                        .collect()
                })
                .unwrap_or_default();
            answer.nodes = Some(NodeList {
                metadata: Default::default(),
                items,
            });
        }
        answer.names = names;
        Ok(answer)
    }

    /// `prioritize`: scores for every node asked about, in order.
    pub fn prioritize<'a>(&self, args: ExtenderArgs<'a>) -> Result<Vec<(NodeName<'a>, i64)>, String> {
        let pod = args.pod.ok_or("the request has no Pod")?;
        let names = request_names(args.node_names, args.nodes.as_ref())?;
        let Ok(ask) = k8s::pod_ask(&pod) else {
            // Prioritize errors are ignored by the scheduler; score nothing.
            return Ok(names.into_iter().map(|n| (n, 0)).collect());
        };
        // Nodes of a full `Nodes` list are neither added nor refreshed: only
        // the node watch writes nodes (unknown ones score 0).
        let uid = k8s::pod_uid(&pod);
        let v = self.view();
        if let Some((_, _, node)) = v.slot_of(&uid) {
            return Ok(names
                .into_iter()
                .map(|n| {
                    let score = if n.as_str() == node {
                        railyard_core::extender::MAX_SCORE
                    } else {
                        0
                    };
                    (n, score)
                })
                .collect());
        }
        let cached = lock(&self.scored).remove(&uid);
        if let Some(c) = cached
            && c.generation == v.generation()
            && c.same_names(names.iter().map(NodeName::as_str))
        {
            return Ok(names.into_iter().zip(c.scores).collect());
        }
        let scores = v.score(&ask, names.iter().map(NodeName::as_str));
        Ok(names.into_iter().zip(scores.into_iter().map(|(_, s)| s)).collect())
    }

    /// `preempt`: keeps the candidate nodes where evicting the proposed
    /// victims really frees a GPU the pod can use (per GPU, not per node
    /// total), and only the planned node for a gang member. Nodes the view
    /// does not know are dropped: filter would refuse them anyway.
    pub fn preempt(&self, args: ExtenderPreemptionArgs) -> Result<ExtenderPreemptionResult, String> {
        let pod = args.pod.ok_or("the request has no Pod")?;
        let mut candidates: BTreeMap<String, MetaVictims> = args.node_name_to_meta_victims.unwrap_or_default();
        for (node, v) in args.node_name_to_victims.unwrap_or_default() {
            let pods = v
                .pods
                .unwrap_or_default()
                .iter()
                .map(|p| MetaPod { uid: k8s::pod_uid(p) })
                .collect();
            candidates.insert(
                node,
                MetaVictims {
                    pods: Some(pods),
                    num_pdb_violations: v.num_pdb_violations,
                },
            );
        }
        let Ok(ask) = k8s::pod_ask(&pod) else {
            return Ok(ExtenderPreemptionResult {
                node_name_to_meta_victims: Some(BTreeMap::new()),
            });
        };
        let uid = k8s::pod_uid(&pod);
        let v = self.view();
        let slot = v.slot_of(&uid).map(|(_, _, n)| n);
        let kept = candidates
            .into_iter()
            .filter(|(node, victims)| {
                if slot.as_ref().is_some_and(|s| s != node) {
                    return false;
                }
                if !v.has_node(node) {
                    return false;
                }
                if !ask.wants_gpu() {
                    return true;
                }
                let uids: Vec<&str> = victims.pods.iter().flatten().map(|p| p.uid.as_str()).collect();
                v.fits_without(&ask, node, &uids)
            })
            .collect();
        self.metrics.decision("preempt", "ok");
        Ok(ExtenderPreemptionResult {
            node_name_to_meta_victims: Some(kept),
        })
    }
}

/// The request's node names: `NodeNames`, else the names of `Nodes`.
fn request_names<'a>(names: Option<Vec<NodeName<'a>>>, full: Option<&NodeList>) -> Result<Vec<NodeName<'a>>, String> {
    match (names, full) {
        (Some(n), _) => Ok(n),
        (None, Some(list)) => Ok(list
            .items
            .iter()
            .filter_map(|n| n.metadata.name.clone().map(NodeName::from))
            .collect()),
        (None, None) => Err("the request has neither NodeNames nor Nodes".into()),
    }
}

/// The router. Verbs under `state.config.url_prefix`; `/healthz` and
/// `/metrics` at the root.
pub fn app(state: Arc<AppState>) -> Router {
    let prefix = state.config.url_prefix.trim_end_matches('/').to_string();
    let at = |verb: &str| format!("{prefix}/{verb}");
    Router::new()
        .route(&at("filter"), post(filter))
        .route(&at("prioritize"), post(prioritize))
        .route(&at("bind"), post(bind))
        .route(&at("preempt"), post(preempt))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        // `read_body` has already enforced the limit; this keeps the
        // extractor's own (2 MB) default from refusing a body it let pass.
        .layer(DefaultBodyLimit::max(state.limits.max_request_bytes))
        .layer(axum::middleware::from_fn_with_state(state.clone(), read_body))
        .with_state(state)
}

/// A refusal before any handler: the connection is closed after it, as the
/// rest of the body (if any) is not read.
fn refuse(state: &AppState, status: StatusCode, reason: &'static str, msg: String) -> Response {
    state.metrics.refused(reason);
    (status, [(header::CONNECTION, "close")], msg).into_response()
}

/// Reads the whole body within the limits, then runs the handler on it.
async fn read_body(State(s): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let RequestLimits {
        max_request_bytes: limit,
        body_timeout,
        ..
    } = s.limits;
    let too_large = |s: &AppState| {
        refuse(
            s,
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("request body is larger than the extender's limit of {limit} bytes (--max-request-bytes)"),
        )
    };
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return too_large(&s);
    }
    let reserve = declared.map_or(limit, |n| n as usize);
    let kib = u32::try_from(reserve.div_ceil(1024).max(1)).unwrap_or(u32::MAX);
    let inflight = s.inflight.clone();
    let read = async move {
        // Never closed; the budget is at least one largest body, so this
        // always ends.
        let permit = inflight.acquire_many_owned(kib).await.ok();
        collect_body(body, limit, declared.map_or(0, |n| n as usize))
            .await
            .map(|b| (b, permit))
    };
    let read = if body_timeout.is_zero() {
        read.await
    } else {
        match tokio::time::timeout(body_timeout, read).await {
            Ok(r) => r,
            Err(_) => {
                return refuse(
                    &s,
                    StatusCode::REQUEST_TIMEOUT,
                    "body_timeout",
                    format!(
                        "request body not received within {:?} (--http-body-timeout-seconds)",
                        body_timeout
                    ),
                );
            }
        }
    };
    match read {
        // The budget is held until the handler is done with the body.
        Ok((bytes, _permit)) => next.run(Request::from_parts(parts, Body::from(bytes))).await,
        Err(BodyError::TooLarge) => too_large(&s),
        Err(BodyError::Broken(e)) => refuse(
            &s,
            StatusCode::BAD_REQUEST,
            "body_error",
            format!("reading the request body failed: {e}"),
        ),
    }
}

enum BodyError {
    TooLarge,
    Broken(axum::Error),
}

/// The body as one buffer, refused once it passes `limit` bytes. `declared`
/// (the Content-Length, at most `limit`) sizes the buffer up front, so a
/// body of many chunks is copied once; a body of one chunk is not copied.
async fn collect_body(body: Body, limit: usize, declared: usize) -> Result<Bytes, BodyError> {
    let mut stream = body.into_data_stream();
    let mut first: Option<Bytes> = None;
    let mut buf: Vec<u8> = Vec::new();
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(BodyError::Broken)?;
        total = total.saturating_add(chunk.len());
        if total > limit {
            return Err(BodyError::TooLarge);
        }
        match first.take() {
            None if buf.is_empty() => first = Some(chunk),
            None => buf.extend_from_slice(&chunk),
            Some(f) => {
                buf.reserve(declared.max(total));
                buf.extend_from_slice(&f);
                buf.extend_from_slice(&chunk);
            }
        }
    }
    Ok(first.unwrap_or_else(|| Bytes::from(buf)))
}

fn json<T: Serialize>(v: &T) -> Response {
    match serde_json::to_vec(v) {
        Ok(body) => (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding the response failed: {e}"),
        )
            .into_response(),
    }
}

fn bad_request(state: &AppState, verb: &'static str, msg: String) -> Response {
    state.metrics.decision(verb, "bad_request");
    (StatusCode::BAD_REQUEST, format!("{verb}: {msg}")).into_response()
}

fn parse<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> Result<T, String> {
    if body.is_empty() {
        return Err("empty body; expected extender v1 JSON".into());
    }
    serde_json::from_slice(body).map_err(|e| format!("malformed extender v1 JSON: {e}"))
}

/// The answer to a request whose handler panicked (the panic hook has
/// logged the message and place).
fn panicked(state: &AppState, verb: &'static str) -> Response {
    state.metrics.decision(verb, "error");
    state.metrics.panicked(verb);
    tracing::error!(verb, "a request handler panicked; answered 500, still serving");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("{verb}: internal error (panic); see the extender's log"),
    )
        .into_response()
}

/// Runs a handler, timing it and turning a panic into a 500 with a message.
async fn guarded<F>(state: &AppState, verb: &'static str, f: F) -> Response
where
    F: Future<Output = Response>,
{
    let start = Instant::now();
    let out = match AssertUnwindSafe(f).catch_unwind().await {
        Ok(r) => r,
        Err(_) => panicked(state, verb),
    };
    state.metrics.observe(verb, start.elapsed().as_secs_f64());
    out
}

async fn filter(State(s): State<Arc<AppState>>, body: Bytes) -> Response {
    guarded(&s, "filter", async {
        match parse::<ExtenderArgs>(&body).and_then(|a| s.filter(a)) {
            Ok(r) => match r.to_json() {
                Ok(body) => (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
                Err(e) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("filter: encoding failed: {e}"),
                )
                    .into_response(),
            },
            Err(e) => bad_request(&s, "filter", e),
        }
    })
    .await
}

async fn prioritize(State(s): State<Arc<AppState>>, body: Bytes) -> Response {
    guarded(&s, "prioritize", async {
        match parse::<ExtenderArgs>(&body).and_then(|a| s.prioritize(a)) {
            Ok(r) => {
                s.metrics.decision("prioritize", "ok");
                let body = host_priorities_json(r.iter().map(|(n, score)| (n.as_str(), *score)));
                (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response()
            }
            Err(e) => bad_request(&s, "prioritize", e),
        }
    })
    .await
}

async fn bind(State(s): State<Arc<AppState>>, body: Bytes) -> Response {
    guarded(&s, "bind", async {
        match parse::<ExtenderBindingArgs>(&body) {
            // Its own task: if kube-scheduler gives up (httpTimeout) and
            // drops the connection, the assumption is still either bound or
            // undone, never left booking GPUs for a pod that is not there.
            Ok(a) => {
                let uid = bind_uid(&a);
                let state = s.clone();
                match tokio::spawn(async move { state.bind(a).await }).await {
                    Ok(r) => json(&r),
                    Err(e) if e.is_panic() => {
                        // As when the API refuses the Binding: whether or not
                        // it was created, the pod watch settles it; GPUs
                        // assumed for it must not stay booked.
                        s.view_mut().unassume(&uid);
                        panicked(&s, "bind")
                    }
                    Err(e) => {
                        s.metrics.decision("bind", "error");
                        (StatusCode::INTERNAL_SERVER_ERROR, format!("bind: internal error: {e}")).into_response()
                    }
                }
            }
            Err(e) => bad_request(&s, "bind", e),
        }
    })
    .await
}

/// The view UID `AppState::bind` assumes a pod under (its defaults).
fn bind_uid(a: &ExtenderBindingArgs) -> String {
    if !a.pod_uid.is_empty() {
        return a.pod_uid.clone();
    }
    let ns = if a.pod_namespace.is_empty() {
        "default"
    } else {
        a.pod_namespace.as_str()
    };
    format!("{ns}/{}", a.pod_name)
}

async fn preempt(State(s): State<Arc<AppState>>, body: Bytes) -> Response {
    guarded(&s, "preempt", async {
        match parse::<ExtenderPreemptionArgs>(&body).and_then(|a| s.preempt(a)) {
            Ok(r) => json(&r),
            Err(e) => bad_request(&s, "preempt", e),
        }
    })
    .await
}

async fn healthz(State(s): State<Arc<AppState>>) -> Response {
    if s.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "cluster view not synced yet").into_response()
    }
}

async fn metrics(State(s): State<Arc<AppState>>) -> Response {
    let mut out = String::new();
    match prometheus_client::encoding::text::encode(&mut out, &s.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            out,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("encoding metrics: {e}")).into_response(),
    }
}
