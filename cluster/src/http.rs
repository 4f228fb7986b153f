//! kube-scheduler's side of the extender protocol over HTTP: JSON bodies
//! POSTed to `<urlPrefix>/<verb>` on the extender's address, as its
//! `HTTPExtender` sends them with `nodeCacheCapable: true` (node names only).

use std::net::SocketAddr;

use anyhow::{Context, Result, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use crate::extender::URL_PREFIX;

/// `ExtenderFilterResult`, the parts kube-scheduler reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FilterResult {
    pub node_names: Vec<String>,
    /// Node → reason; the scheduler may retry these later.
    pub failed: Vec<(String, String)>,
    /// Node → reason; preemption cannot help on these.
    pub unresolvable: Vec<(String, String)>,
    pub error: String,
}

/// A client of one extender.
#[derive(Debug, Clone)]
pub struct ExtenderClient {
    addr: SocketAddr,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl ExtenderClient {
    pub fn new(addr: SocketAddr) -> ExtenderClient {
        ExtenderClient {
            addr,
            http: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    async fn post(&self, verb: &str, body: &Value) -> Result<Value> {
        let uri = format!("http://{}{URL_PREFIX}/{verb}", self.addr);
        let req = http::Request::post(&uri)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .with_context(|| format!("building POST {uri}"))?;
        let resp = self.http.request(req).await.with_context(|| format!("POST {uri}"))?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .with_context(|| format!("reading the answer of POST {uri}"))?
            .to_bytes();
        if !status.is_success() {
            bail!("POST {uri}: {status}: {}", String::from_utf8_lossy(&bytes));
        }
        serde_json::from_slice(&bytes).with_context(|| format!("POST {uri}: the answer is not JSON"))
    }

    /// `filter` for `pod` over `nodes`.
    pub async fn filter(&self, pod: &Value, nodes: &[String]) -> Result<FilterResult> {
        let v = self
            .post("filter", &json!({"Pod": pod, "Nodes": null, "NodeNames": nodes}))
            .await?;
        let names = |key: &str| -> Vec<String> {
            v[key]
                .as_array()
                .map(|a| a.iter().filter_map(|n| n.as_str().map(str::to_owned)).collect())
                .unwrap_or_default()
        };
        let reasons = |key: &str| -> Vec<(String, String)> {
            let mut r: Vec<(String, String)> = v[key]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(n, why)| (n.clone(), why.as_str().unwrap_or_default().to_owned()))
                        .collect()
                })
                .unwrap_or_default();
            r.sort();
            r
        };
        Ok(FilterResult {
            node_names: names("NodeNames"),
            failed: reasons("FailedNodes"),
            unresolvable: reasons("FailedAndUnresolvableNodes"),
            error: v["Error"].as_str().unwrap_or_default().to_owned(),
        })
    }

    /// `prioritize`: (node, score) in the order asked.
    pub async fn prioritize(&self, pod: &Value, nodes: &[String]) -> Result<Vec<(String, i64)>> {
        let v = self
            .post("prioritize", &json!({"Pod": pod, "Nodes": null, "NodeNames": nodes}))
            .await?;
        let list = v
            .as_array()
            .context("prioritize: the answer is not a HostPriorityList")?;
        Ok(list
            .iter()
            .filter_map(|h| Some((h["Host"].as_str()?.to_owned(), h["Score"].as_i64()?)))
            .collect())
    }

    /// `bind`: the extender creates the Binding; `Err` carries its `Error`.
    pub async fn bind(&self, pod: &Value, node: &str) -> Result<()> {
        let m = &pod["metadata"];
        let v = self
            .post(
                "bind",
                &json!({"PodName": m["name"], "PodNamespace": m["namespace"], "PodUID": m["uid"], "Node": node}),
            )
            .await?;
        match v["Error"].as_str() {
            Some(e) if !e.is_empty() => bail!("{e}"),
            _ => Ok(()),
        }
    }
}
