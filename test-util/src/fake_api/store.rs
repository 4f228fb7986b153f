//! The fake's state: objects by resource, namespace and name, one
//! resourceVersion counter for everything (as etcd's revision), and the
//! event history watches replay from. Pure: no I/O, no clock besides the
//! timestamps it is given.

use std::collections::{BTreeMap, VecDeque};

use serde_json::{Value, json};

use super::patch::{self, Owners};
use super::registry::ResourceType;

/// An API error as a `Status` object carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
        }
    }

    pub fn status(&self) -> Value {
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": self.message, "reason": self.reason, "code": self.code,
        })
    }

    fn not_found(rt: &ResourceType, name: &str) -> ApiError {
        ApiError::new(404, "NotFound", format!("{} {name:?} not found", plural_group(rt)))
    }

    fn conflict(rt: &ResourceType, name: &str) -> ApiError {
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} {name:?}: the object has been modified; please apply your changes to the latest version and try again",
                plural_group(rt)
            ),
        )
    }
}

fn plural_group(rt: &ResourceType) -> String {
    if rt.group.is_empty() {
        rt.plural.clone()
    } else {
        format!("{}.{}", rt.plural, rt.group)
    }
}

/// Where an object lives: (resource index, namespace or "", name).
pub type Key = (usize, String, String);

#[derive(Debug, Clone)]
pub struct Event {
    pub rv: u64,
    pub resource: usize,
    pub kind: &'static str,
    pub object: Value,
}

#[derive(Debug)]
pub struct Store {
    pub resources: Vec<ResourceType>,
    pub rv: u64,
    pub objects: BTreeMap<Key, Value>,
    /// Apply managers per object.
    owners: BTreeMap<Key, Owners>,
    pub history: VecDeque<Event>,
    /// Events at or below this revision are gone: a watch from before it
    /// gets 410 Expired.
    pub compacted: u64,
    pub history_limit: usize,
    uids: u64,
}

/// How a write treats the object's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The main resource: a status change is ignored where a status
    /// subresource exists.
    Main,
    /// The status subresource: only the status changes.
    Status,
}

fn meta<'v>(obj: &'v Value, field: &str) -> Option<&'v str> {
    obj.get("metadata")?.get(field)?.as_str()
}

fn set_meta(obj: &mut Value, field: &str, v: Value) {
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert(field.to_owned(), v);
    }
}

/// The object without metadata and status: what `generation` counts.
fn spec_part(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
    }
    v
}

impl Store {
    pub fn new(resources: Vec<ResourceType>, history_limit: usize) -> Store {
        Store {
            resources,
            rv: 1,
            objects: BTreeMap::new(),
            owners: BTreeMap::new(),
            history: VecDeque::new(),
            compacted: 0,
            history_limit,
            uids: 0,
        }
    }

    fn record(&mut self, resource: usize, kind: &'static str, object: Value) {
        self.history.push_back(Event {
            rv: self.rv,
            resource,
            kind,
            object,
        });
        while self.history.len() > self.history_limit {
            if let Some(e) = self.history.pop_front() {
                self.compacted = e.rv;
            }
        }
    }

    /// Drops the whole history: every watch from an older revision gets
    /// 410 Expired, as after an etcd compaction.
    pub fn compact(&mut self) {
        self.history.clear();
        self.compacted = self.rv;
    }

    fn validate(&self, ri: usize, obj: &Value, name: &str) -> Result<(), ApiError> {
        let rt = &self.resources[ri];
        let invalid = |m: String| {
            ApiError::new(
                422,
                "Invalid",
                format!("{} {} {name:?} is invalid: {m}", rt.kind, rt.api_version()),
            )
        };
        if obj.get("apiVersion").and_then(Value::as_str) != Some(rt.api_version().as_str()) {
            return Err(ApiError::new(
                400,
                "BadRequest",
                format!(
                    "apiVersion: expected {:?}, got {}",
                    rt.api_version(),
                    obj.get("apiVersion").unwrap_or(&Value::Null)
                ),
            ));
        }
        if obj.get("kind").and_then(Value::as_str) != Some(rt.kind.as_str()) {
            return Err(ApiError::new(
                400,
                "BadRequest",
                format!(
                    "kind: expected {:?}, got {}",
                    rt.kind,
                    obj.get("kind").unwrap_or(&Value::Null)
                ),
            ));
        }
        if !is_dns_subdomain(name) {
            return Err(invalid(format!(
                "metadata.name: Invalid value: {name:?}: must be a lowercase RFC 1123 subdomain"
            )));
        }
        match rt.validate {
            Some(check) => check(obj).map_err(invalid),
            None => Ok(()),
        }
    }

    fn next_uid(&mut self) -> String {
        self.uids += 1;
        format!("00000000-0000-4000-8000-{:012x}", self.uids)
    }

    /// POST: create, naming from `generateName` where there is no name.
    pub fn create(&mut self, ri: usize, ns: &str, obj: Value, now: &str) -> Result<Value, ApiError> {
        self.create_with(ri, ns, obj, now, false)
    }

    /// [`Store::create`]; `keep_uid`: a uid the object carries stays (test
    /// seeding; the HTTP path always assigns one).
    pub fn create_with(
        &mut self,
        ri: usize,
        ns: &str,
        mut obj: Value,
        now: &str,
        keep_uid: bool,
    ) -> Result<Value, ApiError> {
        let rt = self.resources[ri].clone();
        if !obj.get("metadata").is_some_and(Value::is_object) {
            return Err(ApiError::new(400, "BadRequest", "metadata: Required value"));
        }
        if rt.namespaced {
            match meta(&obj, "namespace") {
                Some(n) if n != ns => {
                    return Err(ApiError::new(
                        400,
                        "BadRequest",
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => set_meta(&mut obj, "namespace", json!(ns)),
            }
        }
        let name = match (meta(&obj, "name"), meta(&obj, "generateName")) {
            (Some(n), _) if !n.is_empty() => n.to_owned(),
            (_, Some(prefix)) => {
                // Deterministic suffixes (the real server draws 5 random
                // characters): the uid counter in base 36.
                let mut n = self.uids + 1;
                let mut suffix = String::new();
                for _ in 0..5 {
                    suffix.push(char::from(b"bcdfghjklmnpqrstvwxz2456789"[(n % 27) as usize]));
                    n /= 27;
                }
                format!("{prefix}{suffix}")
            }
            _ => {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    "metadata.name: Required value: name or generateName is required",
                ));
            }
        };
        set_meta(&mut obj, "name", json!(name));
        let key = (
            ri,
            if rt.namespaced { ns.to_owned() } else { String::new() },
            name.clone(),
        );
        if self.objects.contains_key(&key) {
            return Err(ApiError::new(
                409,
                "AlreadyExists",
                format!("{} {name:?} already exists", plural_group(&rt)),
            ));
        }
        self.validate(ri, &obj, &name)?;
        self.rv += 1;
        let given = meta(&obj, "uid")
            .filter(|u| keep_uid && !u.is_empty())
            .map(str::to_owned);
        let uid = match given {
            Some(u) => u,
            None => self.next_uid(),
        };
        set_meta(&mut obj, "uid", json!(uid));
        set_meta(&mut obj, "resourceVersion", json!(self.rv.to_string()));
        set_meta(&mut obj, "creationTimestamp", json!(now));
        set_meta(&mut obj, "generation", json!(1));
        if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("deletionTimestamp");
        }
        self.objects.insert(key, obj.clone());
        self.record(ri, "ADDED", obj.clone());
        Ok(obj)
    }

    pub fn get(&self, ri: usize, ns: &str, name: &str) -> Result<Value, ApiError> {
        let key = self.key(ri, ns, name);
        self.objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&self.resources[ri], name))
    }

    pub fn key(&self, ri: usize, ns: &str, name: &str) -> Key {
        let ns = if self.resources[ri].namespaced { ns } else { "" };
        (ri, ns.to_owned(), name.to_owned())
    }

    /// PUT (or the result of a patch): `obj` replaces the stored object,
    /// checked against its resourceVersion when it carries one.
    pub fn update(&mut self, ri: usize, ns: &str, name: &str, mut obj: Value, part: Part) -> Result<Value, ApiError> {
        let rt = self.resources[ri].clone();
        let key = self.key(ri, ns, name);
        let current = self.get(ri, ns, name)?;
        if let Some(rv) = meta(&obj, "resourceVersion").filter(|rv| !rv.is_empty())
            && Some(rv) != meta(&current, "resourceVersion")
        {
            return Err(ApiError::conflict(&rt, name));
        }
        if meta(&obj, "name").is_some_and(|n| n != name) {
            return Err(ApiError::new(
                400,
                "BadRequest",
                format!(
                    "the name of the object ({}) does not match the name on the URL ({name})",
                    meta(&obj, "name").unwrap_or_default()
                ),
            ));
        }
        match part {
            Part::Status => {
                let mut next = current.clone();
                match obj.get("status") {
                    Some(s) => {
                        next["status"] = s.clone();
                    }
                    None => {
                        if let Some(m) = next.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
                obj = next;
            }
            Part::Main => {
                if rt.has_status() {
                    match current.get("status") {
                        Some(s) => obj["status"] = s.clone(),
                        None => {
                            if let Some(m) = obj.as_object_mut() {
                                m.remove("status");
                            }
                        }
                    }
                }
                // Server-owned metadata is kept.
                for f in [
                    "uid",
                    "creationTimestamp",
                    "deletionTimestamp",
                    "generation",
                    "namespace",
                ] {
                    match current.get("metadata").and_then(|m| m.get(f)) {
                        Some(v) => set_meta(&mut obj, f, v.clone()),
                        None => {
                            if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                                m.remove(f);
                            }
                        }
                    }
                }
            }
        }
        set_meta(&mut obj, "name", json!(name));
        self.validate(ri, &obj, name)?;
        let unchanged = {
            let mut a = obj.clone();
            set_meta(
                &mut a,
                "resourceVersion",
                current["metadata"]["resourceVersion"].clone(),
            );
            a == current
        };
        if unchanged {
            return Ok(current);
        }
        if spec_part(&obj) != spec_part(&current) {
            let g = current["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
            set_meta(&mut obj, "generation", json!(g));
        }
        self.rv += 1;
        set_meta(&mut obj, "resourceVersion", json!(self.rv.to_string()));
        let finalizing = obj.pointer("/metadata/deletionTimestamp").is_some()
            && obj
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_none_or(|f| f.is_empty());
        if finalizing {
            self.objects.remove(&key);
            self.owners.remove(&key);
            self.record(ri, "DELETED", obj.clone());
        } else {
            self.objects.insert(key, obj.clone());
            self.record(ri, "MODIFIED", obj.clone());
        }
        Ok(obj)
    }

    /// Server-side apply by `manager`, forced or not.
    pub fn apply(
        &mut self,
        ri: usize,
        ns: &str,
        name: &str,
        applied: &Value,
        (manager, force): (&str, bool),
        now: &str,
    ) -> Result<Value, ApiError> {
        let key = self.key(ri, ns, name);
        let current = self.objects.get(&key).cloned();
        let mut owners = self.owners.get(&key).cloned().unwrap_or_default();
        let next = patch::apply(current.as_ref(), applied, manager, &mut owners, force)
            .map_err(|m| ApiError::new(409, "Conflict", m))?;
        let out = match current {
            None => {
                let mut obj = next;
                set_meta(&mut obj, "name", json!(name));
                self.create(ri, ns, obj, now)?
            }
            Some(_) => self.update(ri, ns, name, next, Part::Main)?,
        };
        let key = self.key(ri, ns, name);
        if self.objects.contains_key(&key) {
            self.owners.insert(key, owners);
        }
        Ok(out)
    }

    /// DELETE: with finalizers the object only gets its deletionTimestamp.
    pub fn delete(&mut self, ri: usize, ns: &str, name: &str, uid: Option<&str>, now: &str) -> Result<Value, ApiError> {
        let key = self.key(ri, ns, name);
        let current = self.get(ri, ns, name)?;
        if let Some(uid) = uid
            && Some(uid) != meta(&current, "uid")
        {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta(&current, "uid").unwrap_or_default()
                ),
            ));
        }
        let has_finalizers = current
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty());
        let mut obj = current;
        if has_finalizers && obj.pointer("/metadata/deletionTimestamp").is_some() {
            // Already terminating: nothing changes.
            return Ok(obj);
        }
        self.rv += 1;
        if has_finalizers {
            set_meta(&mut obj, "deletionTimestamp", json!(now));
            set_meta(&mut obj, "deletionGracePeriodSeconds", json!(0));
            set_meta(&mut obj, "resourceVersion", json!(self.rv.to_string()));
            self.objects.insert(key, obj.clone());
            self.record(ri, "MODIFIED", obj.clone());
        } else {
            set_meta(&mut obj, "resourceVersion", json!(self.rv.to_string()));
            self.objects.remove(&key);
            self.owners.remove(&key);
            self.record(ri, "DELETED", obj.clone());
        }
        Ok(obj)
    }

    /// `pods/<name>/binding`: sets the node once.
    pub fn bind(&mut self, ri: usize, ns: &str, name: &str, binding: &Value) -> Result<Value, ApiError> {
        let node = binding
            .pointer("/target/name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| ApiError::new(422, "Invalid", "Binding target.name: Required value"))?
            .to_owned();
        let mut pod = self.get(ri, ns, name)?;
        if let Some(uid) = binding.pointer("/metadata/uid").and_then(Value::as_str)
            && Some(uid) != meta(&pod, "uid")
        {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!("Precondition failed: UID in precondition: {uid}"),
            ));
        }
        if let Some(on) = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!("pod {name} is already assigned to node {on:?}"),
            ));
        }
        pod["spec"]["nodeName"] = json!(node);
        // The API server copies the Binding's annotations onto the pod.
        if let Some(extra) = binding.pointer("/metadata/annotations").and_then(Value::as_object) {
            let meta = pod["metadata"].as_object_mut();
            if let Some(m) = meta {
                let a = m.entry("annotations").or_insert_with(|| json!({}));
                if let Some(a) = a.as_object_mut() {
                    for (k, v) in extra {
                        a.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        if let Some(m) = pod.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
        }
        self.update(ri, ns, name, pod, Part::Main)
            .map(|_| json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}))
    }
}

/// RFC 1123 subdomain, as `metadata.name` must be for most resources.
fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}
