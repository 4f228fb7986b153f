//! The HTTP side: URL layout, verbs, discovery and `Status` errors.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::response::Response;
use serde_json::{Value, json};

use super::selectors::{FieldSelector, LabelSelector, labels};
use super::store::{ApiError, Part};
use super::{RequestRecord, Shared, watch};

/// The largest request body accepted.
const MAX_BODY: usize = 3 << 20;

pub(super) fn app(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

pub(super) fn respond(code: u16, body: &Value) -> Response {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap_or_default()
}

fn error(e: &ApiError) -> Response {
    respond(e.code, &e.status())
}

/// RFC 3339 UTC, seconds precision, as `metav1.Time` is written.
pub(super) fn now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| char::from(b).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(super) fn query_map(q: &str) -> BTreeMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(p), String::new()),
        })
        .collect()
}

/// What a resource path names.
#[derive(Debug)]
pub(super) struct Target {
    pub resource: usize,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub sub: Option<String>,
}

enum Route {
    Discovery(Value),
    Resource(Target),
    NotFound,
}

fn route(shared: &Shared, path: &str) -> Route {
    let segs: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let store = shared.store();
    let rs = &store.resources;
    let (group, version, rest) = match segs.as_slice() {
        ["version"] => {
            let (major, minor) = shared.version;
            return Route::Discovery(json!({
                "major": major.to_string(), "minor": minor.to_string(),
                "gitVersion": format!("v{major}.{minor}.0"), "platform": "linux/amd64",
            }));
        }
        ["api"] => {
            return Route::Discovery(json!({
                "kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": shared.addr.to_string()}],
            }));
        }
        ["apis"] => {
            let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
            for r in rs.iter().filter(|r| !r.group.is_empty()) {
                let v = groups.entry(&r.group).or_default();
                if !v.contains(&r.version.as_str()) {
                    v.push(&r.version);
                }
            }
            let groups: Vec<Value> = groups.iter().map(|(g, vs)| group_json(g, vs)).collect();
            return Route::Discovery(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}));
        }
        ["apis", g] => {
            let vs: Vec<&str> = rs
                .iter()
                .filter(|r| r.group == *g)
                .map(|r| r.version.as_str())
                .collect();
            if vs.is_empty() {
                return Route::NotFound;
            }
            let mut uniq = vs.clone();
            uniq.dedup();
            return Route::Discovery(group_json(g, &uniq));
        }
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Route::NotFound,
    };
    let in_gv: Vec<usize> = (0..rs.len())
        .filter(|&i| rs[i].group == group && rs[i].version == version)
        .collect();
    if in_gv.is_empty() {
        return Route::NotFound;
    }
    let find = |plural: &str| in_gv.iter().copied().find(|&i| rs[i].plural == plural);
    let target = |resource: usize, namespace: Option<&str>, name: Option<&str>, sub: Option<&str>| {
        Route::Resource(Target {
            resource,
            namespace: namespace.map(str::to_owned),
            name: name.map(str::to_owned),
            sub: sub.map(str::to_owned),
        })
    };
    let namespaced = |i: usize| rs[i].namespaced;
    match rest {
        [] => {
            let gv = if group.is_empty() {
                version.to_owned()
            } else {
                format!("{group}/{version}")
            };
            let mut resources = Vec::new();
            for &i in &in_gv {
                let r = &rs[i];
                resources.push(json!({
                    "name": r.plural, "singularName": r.kind.to_ascii_lowercase(), "namespaced": r.namespaced,
                    "kind": r.kind, "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
                }));
                for s in &r.subresources {
                    let (kind, verbs) = match *s {
                        "binding" => ("Binding", json!(["create"])),
                        _ => (r.kind.as_str(), json!(["get", "patch", "update"])),
                    };
                    resources.push(json!({"name": format!("{}/{s}", r.plural), "singularName": "", "namespaced": r.namespaced, "kind": kind, "verbs": verbs}));
                }
            }
            Route::Discovery(
                json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
            )
        }
        ["namespaces", ns, plural, tail @ ..] if find(plural).is_some_and(namespaced) => {
            let Some(i) = find(plural) else {
                return Route::NotFound;
            };
            match tail {
                [] => target(i, Some(ns), None, None),
                [name] => target(i, Some(ns), Some(name), None),
                [name, sub] if rs[i].subresources.contains(sub) => target(i, Some(ns), Some(name), Some(sub)),
                _ => Route::NotFound,
            }
        }
        [plural, tail @ ..] => {
            let Some(i) = find(plural) else {
                return Route::NotFound;
            };
            match tail {
                // A namespaced kind listed or watched across namespaces.
                [] => target(i, None, None, None),
                [name] if !rs[i].namespaced => target(i, None, Some(name), None),
                [name, sub] if !rs[i].namespaced && rs[i].subresources.contains(sub) => {
                    target(i, None, Some(name), Some(sub))
                }
                _ => Route::NotFound,
            }
        }
    }
}

fn group_json(g: &str, versions: &[&str]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
        .collect();
    json!({"kind": "APIGroup", "apiVersion": "v1", "name": g, "versions": vs, "preferredVersion": vs.first()})
}

async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or_default().to_owned();
    let (content_type, metadata_only) = {
        let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        // kube's *_metadata calls ask for PartialObjectMetadata(List).
        let accept = header("accept");
        (
            header("content-type"),
            accept.is_some_and(|a| a.contains("as=PartialObjectMetadata")),
        )
    };
    let bytes = match to_bytes(req.into_body(), MAX_BODY).await {
        Ok(b) => b,
        Err(e) => return error(&ApiError::new(413, "RequestEntityTooLarge", e.to_string())),
    };
    let body: Option<Value> = if bytes.is_empty() {
        None
    } else {
        match serde_json::from_slice(&bytes) {
            Ok(v) => Some(v),
            Err(e) => {
                return error(&ApiError::new(
                    400,
                    "BadRequest",
                    format!("the request body is not JSON: {e}"),
                ));
            }
        }
    };
    let fault = {
        let mut c = shared.controls();
        c.requests.push(RequestRecord {
            method: method.clone(),
            path: path.clone(),
            query: query.clone(),
            content_type: content_type.clone(),
            body: body.clone(),
        });
        let hit = c
            .faults
            .iter_mut()
            .find(|f| f.times > 0 && f.method == method && path.contains(&f.path_contains));
        hit.map(|f| {
            f.times -= 1;
            f.code
        })
    };
    if let Some(code) = fault {
        return error(&ApiError::new(
            code,
            "InternalError",
            format!("injected failure {code}"),
        ));
    }
    let target = match route(&shared, &path) {
        Route::Discovery(v) if method == "GET" => return respond(200, &v),
        Route::Resource(t) => t,
        _ => {
            return error(&ApiError::new(
                404,
                "NotFound",
                format!("the server could not find the requested resource ({path})"),
            ));
        }
    };
    let q = query_map(&query);
    let out = resource(&shared, &method, &target, &q, content_type.as_deref(), body.as_ref());
    match out {
        Ok(Reply::Json(code, v)) => {
            if method != "GET" {
                shared.tick();
            }
            respond(code, &if metadata_only { partial(v) } else { v })
        }
        Ok(Reply::Watch(w)) => watch::serve(shared.clone(), w, metadata_only),
        Err(e) => error(&e),
    }
}

/// An object (or list) as `PartialObjectMetadata(List)`.
pub(super) fn partial(v: Value) -> Value {
    let one =
        |o: &Value| json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": o["metadata"]});
    match v.get("items").and_then(Value::as_array) {
        Some(items) => json!({
            "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList",
            "metadata": v["metadata"], "items": items.iter().map(one).collect::<Vec<_>>(),
        }),
        None if v.get("kind").and_then(Value::as_str) == Some("Status") => v,
        None => one(&v),
    }
}

enum Reply {
    Json(u16, Value),
    Watch(watch::WatchRequest),
}

fn resource(
    shared: &Shared,
    method: &str,
    t: &Target,
    q: &BTreeMap<String, String>,
    content_type: Option<&str>,
    body: Option<&Value>,
) -> Result<Reply, ApiError> {
    let ns = t.namespace.clone().unwrap_or_default();
    let body_or = || {
        body.cloned()
            .ok_or_else(|| ApiError::new(400, "BadRequest", "a request body is required"))
    };
    let mut store = shared.store();
    let rt = store.resources[t.resource].clone();
    if rt.namespaced && t.namespace.is_none() && method != "GET" {
        return Err(ApiError::new(
            405,
            "MethodNotAllowed",
            format!("{} must be written in a namespace", rt.plural),
        ));
    }
    let ri = t.resource;
    let part = if t.sub.as_deref() == Some("status") {
        Part::Status
    } else {
        Part::Main
    };
    match (method, t.name.as_deref(), t.sub.as_deref()) {
        ("GET", None, _) => {
            let labels_sel = LabelSelector::parse(q.get("labelSelector").map_or("", String::as_str))
                .map_err(|m| ApiError::new(400, "BadRequest", m))?;
            let fields_sel = FieldSelector::parse(q.get("fieldSelector").map_or("", String::as_str), &rt)
                .map_err(|m| ApiError::new(400, "BadRequest", m))?;
            if matches!(q.get("watch").map(String::as_str), Some("true" | "1")) {
                drop(store);
                return watch::request(ri, t.namespace.clone(), labels_sel, fields_sel, q).map(Reply::Watch);
            }
            let matching: Vec<&Value> = store
                .objects
                .iter()
                .filter(|((r, n, _), _)| *r == ri && t.namespace.as_ref().is_none_or(|ns| ns == n))
                .map(|(_, v)| v)
                .filter(|v| labels_sel.matches(&labels(v)) && fields_sel.matches(v))
                .collect();
            let offset = match q.get("continue").filter(|c| !c.is_empty()) {
                Some(c) => c
                    .split_once('/')
                    .and_then(|(_, o)| o.parse::<usize>().ok())
                    .ok_or_else(|| ApiError::new(400, "BadRequest", format!("invalid continue token {c:?}")))?,
                None => 0,
            };
            let limit = q.get("limit").and_then(|l| l.parse::<usize>().ok()).filter(|l| *l > 0);
            let end = limit.map_or(matching.len(), |l| (offset + l).min(matching.len()));
            let items: Vec<Value> = matching
                .iter()
                .skip(offset)
                .take(end.saturating_sub(offset))
                .map(|v| (*v).clone())
                .collect();
            let mut metadata = json!({"resourceVersion": store.rv.to_string()});
            if end < matching.len() {
                metadata["continue"] = json!(format!("{}/{end}", store.rv));
                metadata["remainingItemCount"] = json!(matching.len() - end);
            }
            Ok(Reply::Json(
                200,
                json!({"kind": format!("{}List", rt.kind), "apiVersion": rt.api_version(), "metadata": metadata, "items": items}),
            ))
        }
        ("GET", Some(name), _) => store.get(ri, &ns, name).map(|v| Reply::Json(200, v)),
        ("POST", None, None) => store.create(ri, &ns, body_or()?, &now()).map(|v| Reply::Json(201, v)),
        ("POST", Some(name), Some("binding")) => store.bind(ri, &ns, name, &body_or()?).map(|v| Reply::Json(201, v)),
        ("PUT", Some(name), None | Some("status")) => store
            .update(ri, &ns, name, body_or()?, part)
            .map(|v| Reply::Json(200, v)),
        ("PATCH", Some(name), None | Some("status")) => {
            let patch = body_or()?;
            let ct = content_type.unwrap_or_default();
            if ct.starts_with("application/apply-patch") {
                let manager = q
                    .get("fieldManager")
                    .filter(|m| !m.is_empty())
                    .ok_or_else(|| ApiError::new(422, "Invalid", "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"))?;
                let force = q.get("force").is_some_and(|f| f == "true");
                return store
                    .apply(ri, &ns, name, &patch, (manager, force), &now())
                    .map(|v| Reply::Json(200, v));
            }
            let current = store.get(ri, &ns, name)?;
            let mut next = current.clone();
            if ct.starts_with("application/json-patch+json") {
                next = super::patch::json_patch(&current, &patch).map_err(|m| ApiError::new(422, "Invalid", m))?;
            } else if ct.starts_with("application/merge-patch+json")
                || ct.starts_with("application/strategic-merge-patch+json")
            {
                super::patch::merge(&mut next, &patch);
            } else {
                return Err(ApiError::new(
                    415,
                    "UnsupportedMediaType",
                    format!(
                        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json; got {ct:?}"
                    ),
                ));
            }
            // A patch that names no resourceVersion is not checked against one.
            if patch.pointer("/metadata/resourceVersion").is_none()
                && let (Some(m), Some(rv)) = (
                    next.get_mut("metadata").and_then(Value::as_object_mut),
                    current.pointer("/metadata/resourceVersion"),
                )
            {
                m.insert("resourceVersion".into(), rv.clone());
            }
            store.update(ri, &ns, name, next, part).map(|v| Reply::Json(200, v))
        }
        ("DELETE", Some(name), None) => {
            let uid = body
                .and_then(|b| b.pointer("/preconditions/uid"))
                .and_then(Value::as_str);
            store.delete(ri, &ns, name, uid, &now()).map(|v| Reply::Json(200, v))
        }
        _ => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            format!("{method} is not supported here"),
        )),
    }
}
