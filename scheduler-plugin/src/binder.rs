//! Creating the Binding through the API, and reading the pod when bind
//! meets one this extender did not filter.

use std::future::Future;
use std::pin::Pin;

use kube::Client;
use kube::api::{Api, PostParams};

use crate::app::{BindRequest, Binder};
use crate::k8s::LeanPod;

/// `POST /api/v1/namespaces/{ns}/pods/{name}/binding` with the decision
/// annotations in the Binding's metadata (the API server copies them onto
/// the pod in the same write).
#[derive(Clone)]
pub struct KubeBinder {
    client: Client,
}

impl std::fmt::Debug for KubeBinder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KubeBinder")
    }
}

impl KubeBinder {
    pub fn new(client: Client) -> Self {
        KubeBinder { client }
    }
}

/// The Binding object for a request.
pub fn binding_body(req: &BindRequest) -> serde_json::Value {
    let mut meta = serde_json::json!({
        "name": req.name,
        "namespace": req.namespace,
        "annotations": req.annotations,
    });
    if !req.uid.is_empty() {
        meta["uid"] = serde_json::Value::String(req.uid.clone());
    }
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": meta,
        "target": {"apiVersion": "v1", "kind": "Node", "name": req.node},
    })
}

impl Binder for KubeBinder {
    fn bind(&self, req: BindRequest) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'static>> {
        let client = self.client.clone();
        Box::pin(async move {
            let api: Api<LeanPod> = Api::namespaced(client, &req.namespace);
            let body = binding_body(&req);
            api.create_subresource::<_, serde_json::Value>("binding", &req.name, &PostParams::default(), &body)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }

    /// `GET /api/v1/namespaces/{ns}/pods/{name}`; a 404 is `Ok(None)`.
    fn get_pod(
        &self,
        namespace: &str,
        name: &str,
    ) -> Pin<Box<dyn Future<Output = Result<Option<LeanPod>, String>> + Send + 'static>> {
        let api: Api<LeanPod> = Api::namespaced(self.client.clone(), namespace);
        let name = name.to_string();
        Box::pin(async move { api.get_opt(&name).await.map_err(|e| e.to_string()) })
    }
}
