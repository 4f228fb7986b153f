//! A stateful fake Kubernetes API server on real HTTP (127.0.0.1) that an
//! unmodified `kube::Client` talks to.
//!
//! Served: discovery (`/api`, `/apis`, group versions, `/version`); get;
//! list with label and field selectors and `limit`/`continue`; watch from a
//! resourceVersion with bookmarks and 410 Expired once the history is
//! compacted; create (generateName, uid, resourceVersion,
//! creationTimestamp); update with the resourceVersion conflict check;
//! merge patch, JSON patch, strategic merge patch (as a merge patch: lists
//! are replaced, not merged by key) and server-side apply (field managers,
//! conflicts, force; lists are atomic); delete with finalizers and the
//! deletion timestamp; the `status` and `pods/binding` subresources.
//! Every written object is checked against its `k8s-openapi` type, so a
//! malformed object fails as the real server would fail it; custom
//! resources (the gang APIs) go through the same path.
//!
//! Not served: protobuf, tables, aggregated discovery, admission, RBAC,
//! `deletecollection`, graceful pod deletion. List pages beyond the first
//! come from the current state, not from the first page's snapshot.

mod http;
mod patch;
mod registry;
mod selectors;
mod store;
mod watch;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use tokio::sync::watch as tick;

pub use patch::{json_patch, merge};
pub use registry::{ResourceType, builtins};
pub use selectors::{FieldSelector, LabelSelector};
pub use store::ApiError;
use store::Store;

/// One request as the fake received it.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    pub query: String,
    pub content_type: Option<String>,
    pub body: Option<Value>,
}

/// An injected failure: the next `times` requests whose method matches and
/// whose path contains `path_contains` are answered `code`.
#[derive(Debug, Clone)]
struct Fault {
    method: String,
    path_contains: String,
    code: u16,
    times: u32,
}

#[derive(Debug, Default)]
struct Controls {
    requests: Vec<RequestRecord>,
    faults: Vec<Fault>,
    /// Bumped by [`FakeApiServer::bookmark`]: open watches that allow
    /// bookmarks send one.
    bookmarks: u64,
    /// Bumped by [`FakeApiServer::close_watches`].
    closes: u64,
}

#[derive(Debug)]
struct Shared {
    store: Mutex<Store>,
    controls: Mutex<Controls>,
    /// Ticks on every change watches care about.
    ticks: tick::Sender<u64>,
    version: (u32, u32),
    addr: SocketAddr,
}

impl Shared {
    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn controls(&self) -> MutexGuard<'_, Controls> {
        self.controls.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn tick(&self) {
        self.ticks.send_modify(|t| *t += 1);
    }
}

/// Builds a [`FakeApiServer`].
#[derive(Debug)]
pub struct Builder {
    resources: Vec<ResourceType>,
    history_limit: usize,
    version: (u32, u32),
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            resources: builtins(),
            history_limit: 10_000,
            version: (1, 34),
        }
    }
}

impl Builder {
    /// Serves a custom resource as well.
    pub fn custom(mut self, rt: ResourceType) -> Self {
        self.resources.push(rt);
        self
    }

    /// Stops serving every resource of `group` (a CRD that is not installed).
    pub fn without_group(mut self, group: &str) -> Self {
        self.resources.retain(|r| r.group != group);
        self
    }

    /// Events kept for watches; older ones are compacted away.
    pub fn history(mut self, events: usize) -> Self {
        self.history_limit = events.max(1);
        self
    }

    /// What `/version` reports (major, minor).
    pub fn server_version(mut self, major: u32, minor: u32) -> Self {
        self.version = (major, minor);
        self
    }

    /// Binds 127.0.0.1 on a free port and serves until dropped. Needs a
    /// tokio runtime.
    pub async fn start(self) -> std::io::Result<FakeApiServer> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::new(self.resources, self.history_limit)),
            controls: Mutex::new(Controls::default()),
            ticks: tick::channel(0).0,
            version: self.version,
            addr,
        });
        let app = http::app(shared.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(FakeApiServer {
            shared,
            _stop: stop,
            server,
        })
    }
}

/// The running fake; dropping it stops the server.
#[derive(Debug)]
pub struct FakeApiServer {
    shared: Arc<Shared>,
    _stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        // Open watches would otherwise hold the graceful shutdown forever.
        self.server.abort();
    }
}

impl FakeApiServer {
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// With the built-in resources and defaults.
    pub async fn start() -> std::io::Result<FakeApiServer> {
        Builder::default().start().await
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.shared.addr)
    }

    /// An unmodified kube client for this server, default namespace
    /// `default`.
    pub fn client(&self) -> Result<kube::Client, kube::Error> {
        let uri: ::http::Uri = self
            .url()
            .parse()
            .map_err(|e: ::http::uri::InvalidUri| kube::Error::Service(e.into()))?;
        kube::Client::try_from(kube::Config::new(uri))
    }

    /// A kubeconfig for this server, for components run as processes
    /// (`KUBECONFIG=<path>`).
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster: {{server: {url}}}\ncontexts:\n- name: fake\n  context: {{cluster: fake, user: fake, namespace: default}}\ncurrent-context: fake\nusers:\n- name: fake\n  user: {{}}\n",
            url = self.url()
        )
    }

    fn resource_of(store: &Store, api_version: &str, kind: &str) -> Result<usize, ApiError> {
        store
            .resources
            .iter()
            .position(|r| r.api_version() == api_version && r.kind == kind)
            .ok_or_else(|| ApiError::new(404, "NotFound", format!("no resource for {api_version} {kind}")))
    }

    /// Creates `obj` as a POST would (the test's way to seed state), except
    /// that a uid it carries is kept, so fixtures can name it.
    pub fn create(&self, obj: Value) -> Result<Value, ApiError> {
        self.write(&obj, |store, ri, ns, _| {
            store.create_with(ri, ns, obj.clone(), &http::now(), true)
        })
    }

    /// Creates `obj`, or replaces the stored one unconditionally (as a PUT
    /// without resourceVersion); status is written too.
    pub fn put(&self, obj: Value) -> Result<Value, ApiError> {
        self.write(&obj, |store, ri, ns, name| {
            if store.get(ri, ns, name).is_err() {
                return store.create_with(ri, ns, obj.clone(), &http::now(), true);
            }
            let mut next = obj.clone();
            if let Some(m) = next.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("resourceVersion");
            }
            let status = next.get("status").cloned();
            let out = store.update(ri, ns, name, next.clone(), store::Part::Main)?;
            match status {
                Some(_) if store.resources[ri].has_status() => store.update(ri, ns, name, next, store::Part::Status),
                _ => Ok(out),
            }
        })
    }

    /// Deletes as a DELETE would (finalizers hold the object).
    pub fn delete(&self, api_version: &str, kind: &str, namespace: &str, name: &str) -> Result<Value, ApiError> {
        let obj = serde_json::json!({"apiVersion": api_version, "kind": kind, "metadata": {"namespace": namespace, "name": name}});
        self.write(&obj, |store, ri, ns, name| {
            store.delete(ri, ns, name, None, &http::now())
        })
    }

    fn write(
        &self,
        obj: &Value,
        f: impl FnOnce(&mut Store, usize, &str, &str) -> Result<Value, ApiError>,
    ) -> Result<Value, ApiError> {
        let api_version = obj["apiVersion"].as_str().unwrap_or_default();
        let kind = obj["kind"].as_str().unwrap_or_default();
        let ns = obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("default");
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let out = {
            let mut store = self.shared.store();
            let ri = Self::resource_of(&store, api_version, kind)?;
            f(&mut store, ri, ns, name)
        };
        self.shared.tick();
        out
    }

    /// Ticks on every write and control action: wait on it instead of
    /// sleeping.
    pub fn changes(&self) -> tick::Receiver<u64> {
        self.shared.ticks.subscribe()
    }

    /// The stored object, if any (`namespace` is ignored for cluster-scoped
    /// kinds).
    pub fn get(&self, api_version: &str, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let store = self.shared.store();
        let ri = Self::resource_of(&store, api_version, kind).ok()?;
        store.get(ri, namespace, name).ok()
    }

    /// Every stored object of a kind, in namespace/name order.
    pub fn list(&self, api_version: &str, kind: &str) -> Vec<Value> {
        let store = self.shared.store();
        let Ok(ri) = Self::resource_of(&store, api_version, kind) else {
            return Vec::new();
        };
        store
            .objects
            .iter()
            .filter(|((r, _, _), _)| *r == ri)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Drops the watch history: watches from older revisions get 410.
    pub fn compact(&self) {
        self.shared.store().compact();
        self.shared.tick();
    }

    /// Has every open watch that allows bookmarks send one now.
    pub fn bookmark(&self) {
        self.shared.controls().bookmarks += 1;
        self.shared.tick();
    }

    /// Ends every open watch, as an API server restart or a load balancer
    /// would.
    pub fn close_watches(&self) {
        self.shared.controls().closes += 1;
        self.shared.tick();
    }

    /// Answers the next `times` requests with `method` whose path contains
    /// `path_contains` with `code`.
    pub fn fail_next(&self, method: &str, path_contains: &str, code: u16, times: u32) {
        self.shared.controls().faults.push(Fault {
            method: method.to_ascii_uppercase(),
            path_contains: path_contains.to_owned(),
            code,
            times,
        });
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.controls().requests.clone()
    }

    /// The current resourceVersion (the store's revision).
    pub fn resource_version(&self) -> u64 {
        self.shared.store().rv
    }
}
