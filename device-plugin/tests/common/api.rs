//! A mocked API server for the pod side (kube's tower-test pattern): pods
//! bound to `node-a` served to a watcher (list, then watches answered with
//! every event after the asked resourceVersion), and pod merge patches
//! applied to the pods, recorded for the test and echoed as watch events,
//! as the API server does.
#![allow(clippy::unwrap_used, dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};
use tokio::sync::watch;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// A pod PATCH as the mock received it.
#[derive(Debug, Clone)]
pub struct PatchRecord {
    pub path: String,
    pub query: String,
    pub content_type: String,
    pub body: Value,
}

impl PatchRecord {
    /// The one annotation the patch sets, checking the patch has nothing else.
    pub fn annotation(&self, key: &str) -> String {
        let b = &self.body;
        assert_eq!(b.as_object().unwrap().len(), 1, "only metadata: {b}");
        assert_eq!(b["metadata"].as_object().unwrap().len(), 1, "only annotations: {b}");
        let a = b["metadata"]["annotations"].as_object().unwrap();
        assert_eq!(a.len(), 1, "one annotation: {b}");
        a[key].as_str().unwrap().to_string()
    }
}

#[derive(Default)]
struct State {
    rv: u64,
    pods: BTreeMap<(String, String), Value>,
    /// (resourceVersion, type, object)
    events: Vec<(u64, &'static str, Value)>,
    patches: Vec<PatchRecord>,
    /// Patches still to answer with 500.
    fail_patches: u32,
    unexpected: Vec<String>,
}

#[derive(Clone)]
pub struct FakeApi {
    state: Arc<Mutex<State>>,
    rv: watch::Sender<u64>,
}

/// A client over the mock and the mock's controls.
pub fn fake_api() -> (kube::Client, FakeApi) {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let api = FakeApi {
        state: Arc::new(Mutex::new(State::default())),
        rv: watch::channel(0).0,
    };
    tokio::spawn(serve(handle, api.clone()));
    (kube::Client::new(svc, "default"), api)
}

fn respond(status: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap()
}

fn status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "message": reason, "code": code})
}

/// A pod bound to `node-a` asking for `count` of `resource` in container
/// `main`, with the extender's record when given.
pub fn gpu_pod(name: &str, resource: &str, count: u32, record: Option<&str>) -> Value {
    let mut annotations = serde_json::Map::new();
    if let Some(r) = record {
        annotations.insert("railyard.dev/gpus".into(), r.into());
        annotations.insert("railyard.dev/decision-signature".into(), "not-checked".into());
    }
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "ml", "uid": format!("uid-{name}"), "annotations": annotations},
        "spec": {"nodeName": "node-a", "containers": [
            {"name": "main", "image": "cuda", "resources": {"limits": {resource: count.to_string()}}}
        ]},
        "status": {"phase": "Pending"},
    })
}

impl FakeApi {
    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn event(&self, s: &mut State, kind: &'static str, mut pod: Value) {
        s.rv += 1;
        pod["metadata"]["resourceVersion"] = json!(s.rv.to_string());
        let key = (
            pod["metadata"]["namespace"].as_str().unwrap_or_default().to_string(),
            pod["metadata"]["name"].as_str().unwrap_or_default().to_string(),
        );
        if kind == "DELETED" {
            s.pods.remove(&key);
        } else {
            s.pods.insert(key, pod.clone());
        }
        s.events.push((s.rv, kind, pod));
        self.rv.send_replace(s.rv);
    }

    /// Adds (or replaces) a pod.
    pub fn put_pod(&self, pod: Value) {
        self.with(|s| {
            let kind = if s
                .pods
                .keys()
                .any(|k| Some(k.1.as_str()) == pod["metadata"]["name"].as_str())
            {
                "MODIFIED"
            } else {
                "ADDED"
            };
            self.event(s, kind, pod)
        });
    }

    pub fn delete_pod(&self, name: &str) {
        self.with(|s| {
            if let Some(p) = s.pods.get(&("ml".to_string(), name.to_string())).cloned() {
                self.event(s, "DELETED", p);
            }
        });
    }

    pub fn pod(&self, name: &str) -> Option<Value> {
        self.with(|s| s.pods.get(&("ml".to_string(), name.to_string())).cloned())
    }

    /// The pod's `railyard.dev/allocated-gpus`, as the API holds it.
    pub fn allocated(&self, name: &str) -> Option<String> {
        self.pod(name)?["metadata"]["annotations"]["railyard.dev/allocated-gpus"]
            .as_str()
            .map(str::to_string)
    }

    pub fn patches(&self) -> Vec<PatchRecord> {
        self.with(|s| s.patches.clone())
    }

    /// The next `n` patches are answered 500.
    pub fn fail_patches(&self, n: u32) {
        self.with(|s| s.fail_patches = n);
    }

    /// Requests the mock did not expect.
    pub fn unexpected(&self) -> Vec<String> {
        self.with(|s| s.unexpected.clone())
    }

    /// Waits until `name` has a write-back; generous timeout.
    pub async fn wait_allocated(&self, name: &str, timeout: Duration) -> Option<String> {
        let mut rx = self.rv.subscribe();
        let check = async {
            loop {
                if let Some(v) = self.allocated(name) {
                    return v;
                }
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::time::timeout(timeout, check).await.ok()
    }
}

fn param<'a>(q: &'a str, key: &str) -> Option<&'a str> {
    q.split('&').find_map(|p| p.strip_prefix(key)?.strip_prefix('='))
}

async fn serve(mut handle: Handle, api: FakeApi) {
    while let Some((req, send)) = handle.next_request().await {
        let api = api.clone();
        tokio::spawn(async move {
            let resp = answer(&api, req).await;
            send.send_response(resp);
        });
    }
}

async fn answer(api: &FakeApi, req: Request<Body>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    if req.method() == Method::GET && path == "/api/v1/pods" {
        assert!(
            query.contains("fieldSelector=spec.nodeName%3Dnode-a"),
            "the pod watch must select this node: {query}"
        );
        if param(&query, "watch") != Some("true") {
            let (rv, items) = api.with(|s| (s.rv, s.pods.values().cloned().collect::<Vec<_>>()));
            return respond(
                StatusCode::OK,
                &json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": rv.to_string()}, "items": items}),
            );
        }
        let from: u64 = param(&query, "resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut rx = api.rv.subscribe();
        let _ = rx.wait_for(|v| *v > from).await;
        let mut body = Vec::new();
        api.with(|s| {
            for (rv, kind, obj) in s.events.iter().filter(|e| e.0 > from) {
                let _ = rv;
                body.extend(serde_json::to_vec(&json!({"type": kind, "object": obj})).unwrap());
                body.push(b'\n');
            }
        });
        return Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap();
    }
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if req.method() == Method::PATCH
        && let ["api", "v1", "namespaces", ns, "pods", name] = parts.as_slice()
    {
        let (ns, name) = (ns.to_string(), name.to_string());
        let content_type = req
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let bytes = req.into_body().collect_bytes().await.unwrap();
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        return api.with(|s| {
            s.patches.push(PatchRecord {
                path: path.clone(),
                query: query.clone(),
                content_type,
                body: body.clone(),
            });
            if s.fail_patches > 0 {
                s.fail_patches -= 1;
                return respond(StatusCode::INTERNAL_SERVER_ERROR, &status(500, "InternalError"));
            }
            let Some(mut pod) = s.pods.get(&(ns, name)).cloned() else {
                return respond(StatusCode::NOT_FOUND, &status(404, "NotFound"));
            };
            if let Some(a) = body["metadata"]["annotations"].as_object() {
                for (k, v) in a {
                    pod["metadata"]["annotations"][k] = v.clone();
                }
            }
            api.event(s, "MODIFIED", pod.clone());
            let meta = s.events.last().map(|e| e.2["metadata"].clone()).unwrap_or_default();
            respond(
                StatusCode::OK,
                &json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": meta}),
            )
        });
    }
    api.with(|s| s.unexpected.push(format!("{} {path}?{query}", req.method())));
    respond(StatusCode::NOT_FOUND, &status(404, "NotFound"))
}
