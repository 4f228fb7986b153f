//! Watches: newline-delimited `{"type", "object"}` events on a chunked
//! response, replayed from the store's history after the asked
//! resourceVersion, as the API server's watch cache does.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::Shared;
use super::selectors::{FieldSelector, LabelSelector, labels};
use super::store::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// Every current object as ADDED first (no resourceVersion, or "0").
    Initial { end_bookmark: bool },
    /// Events after this revision.
    After(u64),
}

#[derive(Debug)]
pub(super) struct WatchRequest {
    resource: usize,
    namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
    start: Start,
    bookmarks: bool,
    timeout: Option<Duration>,
}

pub(super) fn request(
    resource: usize,
    namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
    q: &BTreeMap<String, String>,
) -> Result<WatchRequest, ApiError> {
    let bookmarks = q.get("allowWatchBookmarks").is_some_and(|v| v == "true");
    let initial = q.get("sendInitialEvents").is_some_and(|v| v == "true");
    let rv = q.get("resourceVersion").map(String::as_str).unwrap_or("");
    let start = if initial {
        if !bookmarks {
            return Err(ApiError::new(
                422,
                "Invalid",
                "ListOptions.meta.k8s.io \"\" is invalid: allowWatchBookmarks: Required value: allowWatchBookmarks must be set to true when sendInitialEvents is set",
            ));
        }
        Start::Initial { end_bookmark: true }
    } else if rv.is_empty() || rv == "0" {
        Start::Initial { end_bookmark: false }
    } else {
        Start::After(
            rv.parse()
                .map_err(|_| ApiError::new(400, "BadRequest", format!("resourceVersion: Invalid value: {rv:?}")))?,
        )
    };
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs);
    Ok(WatchRequest {
        resource,
        namespace,
        labels,
        fields,
        start,
        bookmarks,
        timeout,
    })
}

fn line(kind: &str, object: &Value) -> String {
    let mut s = json!({"type": kind, "object": object}).to_string();
    s.push('\n');
    s
}

impl WatchRequest {
    fn wants(&self, ri: usize, obj: &Value) -> bool {
        let ns = obj.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("");
        ri == self.resource
            && self.namespace.as_deref().is_none_or(|n| n == ns)
            && self.labels.matches(&labels(obj))
            && self.fields.matches(obj)
    }
}

pub(super) fn serve(shared: Arc<Shared>, w: WatchRequest, metadata_only: bool) -> Response {
    let (tx, rx) = mpsc::channel::<Result<String, Infallible>>(256);
    tokio::spawn(run(shared, w, tx, metadata_only));
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(Body::from_stream(ReceiverStream::new(rx)))
        .unwrap_or_default()
}

async fn run(shared: Arc<Shared>, w: WatchRequest, tx: mpsc::Sender<Result<String, Infallible>>, metadata_only: bool) {
    let line = |kind: &str, object: &Value| {
        if metadata_only && kind != "ERROR" && kind != "BOOKMARK" {
            line(kind, &super::http::partial(object.clone()))
        } else {
            line(kind, object)
        }
    };
    let mut ticks = shared.ticks.subscribe();
    let deadline = w.timeout.map(|t| tokio::time::Instant::now() + t);
    let (mut bookmarks_seen, closes_seen) = {
        let c = shared.controls();
        (c.bookmarks, c.closes)
    };
    let (api_version, kind) = {
        let store = shared.store();
        let rt = &store.resources[w.resource];
        (rt.api_version(), rt.kind.clone())
    };
    let bookmark = |rv: u64, end: bool| {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        line(
            "BOOKMARK",
            &json!({"kind": kind, "apiVersion": api_version, "metadata": meta}),
        )
    };
    // The first batch: current objects, or a 410 for a compacted revision.
    let mut out = Vec::new();
    let mut cursor = {
        let store = shared.store();
        match w.start {
            Start::Initial { end_bookmark } => {
                for ((ri, _, _), obj) in &store.objects {
                    if w.wants(*ri, obj) {
                        out.push(line("ADDED", obj));
                    }
                }
                if end_bookmark {
                    out.push(bookmark(store.rv, true));
                }
                store.rv
            }
            Start::After(rv) if rv < store.compacted => {
                let e = ApiError::new(
                    410,
                    "Expired",
                    format!("too old resource version: {rv} ({})", store.compacted + 1),
                );
                out.push(line("ERROR", &e.status()));
                u64::MAX
            }
            Start::After(rv) => rv,
        }
    };
    loop {
        for l in out.drain(..) {
            if tx.send(Ok(l)).await.is_err() {
                return;
            }
        }
        if cursor == u64::MAX {
            return;
        }
        {
            let store = shared.store();
            if cursor < store.compacted {
                // Fell behind the retained history while blocked.
                let e = ApiError::new(410, "Expired", format!("too old resource version: {cursor}"));
                out.push(line("ERROR", &e.status()));
                cursor = u64::MAX;
                continue;
            }
            for e in store.history.iter().filter(|e| e.rv > cursor) {
                if w.wants(e.resource, &e.object) {
                    out.push(line(e.kind, &e.object));
                }
            }
            cursor = cursor.max(store.rv);
        }
        let (closes, bookmarks) = {
            let c = shared.controls();
            (c.closes, c.bookmarks)
        };
        if closes != closes_seen {
            // Flush what is due, then end as a dropped connection would.
            for l in out.drain(..) {
                let _ = tx.send(Ok(l)).await;
            }
            return;
        }
        if bookmarks != bookmarks_seen {
            bookmarks_seen = bookmarks;
            if w.bookmarks {
                out.push(bookmark(cursor, false));
            }
        }
        if !out.is_empty() {
            continue;
        }
        let changed = async {
            if ticks.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        let timeout = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = changed => {}
            () = timeout => return,
            () = tx.closed() => return,
        }
    }
}
