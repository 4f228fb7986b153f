//! The pod side of the API for the device plugin's tests: the shared
//! stateful fake API server (`railyard-test-util`), with the pods these
//! tests bind and the write-backs they check.
#![allow(clippy::unwrap_used, dead_code)]

use std::sync::Arc;
use std::time::Duration;

use railyard_test_util::FakeApiServer;
use serde_json::{Value, json};

/// A pod PATCH as the server received it.
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

#[derive(Clone)]
pub struct FakeApi {
    server: Arc<FakeApiServer>,
}

/// A client of a fresh fake API server, and the server's controls.
pub async fn fake_api() -> (kube::Client, FakeApi) {
    let server = FakeApiServer::start().await.unwrap();
    let client = server.client().unwrap();
    (
        client,
        FakeApi {
            server: Arc::new(server),
        },
    )
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
    pub fn server(&self) -> &FakeApiServer {
        &self.server
    }

    /// Adds (or replaces) a pod.
    pub fn put_pod(&self, pod: Value) {
        self.server.put(pod).unwrap();
    }

    pub fn delete_pod(&self, name: &str) {
        let _ = self.server.delete("v1", "Pod", "ml", name);
    }

    pub fn pod(&self, name: &str) -> Option<Value> {
        self.server.get("v1", "Pod", "ml", name)
    }

    /// The pod's `railyard.dev/allocated-gpus`, as the API holds it.
    pub fn allocated(&self, name: &str) -> Option<String> {
        self.pod(name)?["metadata"]["annotations"]["railyard.dev/allocated-gpus"]
            .as_str()
            .map(str::to_string)
    }

    pub fn patches(&self) -> Vec<PatchRecord> {
        self.server
            .requests()
            .into_iter()
            .filter(|r| r.method == "PATCH")
            .map(|r| PatchRecord {
                path: r.path,
                query: r.query,
                content_type: r.content_type.unwrap_or_default(),
                body: r.body.unwrap_or_default(),
            })
            .collect()
    }

    /// The next `n` pod patches are answered 500.
    pub fn fail_patches(&self, n: u32) {
        self.server.fail_next("PATCH", "/pods/", 500, n);
    }

    /// Requests the plugin should not make: anything but pod patches and
    /// the pod list/watch, which must select this node.
    pub fn unexpected(&self) -> Vec<String> {
        self.server
            .requests()
            .into_iter()
            .filter(|r| {
                let pod_patch =
                    r.method == "PATCH" && r.path.starts_with("/api/v1/namespaces/") && r.path.contains("/pods/");
                let pod_watch = r.method == "GET"
                    && r.path == "/api/v1/pods"
                    && r.query.contains("fieldSelector=spec.nodeName%3Dnode-a");
                !(pod_patch || pod_watch)
            })
            .map(|r| format!("{} {}?{}", r.method, r.path, r.query))
            .collect()
    }

    /// Waits until `name` has a write-back; generous timeout.
    pub async fn wait_allocated(&self, name: &str, timeout: Duration) -> Option<String> {
        let mut rx = self.server.changes();
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
