//! The resource types the fake serves: their names, scope, subresources,
//! the field selectors the real server supports for them, and how an
//! object is validated on write (through its `k8s-openapi` type).

use serde_json::Value;

/// Checks an object as the API server's decoding would: `Err` is the
/// message of a 422 Invalid / 400 BadRequest.
pub type Validate = fn(&Value) -> Result<(), String>;

/// One served resource.
#[derive(Debug, Clone)]
pub struct ResourceType {
    /// API group; empty for the core group.
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub namespaced: bool,
    /// Subresources served besides the object (`status`, `binding`).
    pub subresources: Vec<&'static str>,
    /// Field selector paths besides `metadata.name` / `metadata.namespace`.
    pub fields: Vec<&'static str>,
    /// Typed check of written objects; custom resources have none.
    pub validate: Option<Validate>,
}

impl ResourceType {
    /// A custom resource: any object with apiVersion, kind and a name.
    pub fn custom(group: &str, version: &str, kind: &str, plural: &str, namespaced: bool) -> ResourceType {
        ResourceType {
            group: group.to_owned(),
            version: version.to_owned(),
            kind: kind.to_owned(),
            plural: plural.to_owned(),
            namespaced,
            subresources: vec!["status"],
            fields: Vec::new(),
            validate: None,
        }
    }

    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn has_status(&self) -> bool {
        self.subresources.contains(&"status")
    }
}

fn typed<T: serde::de::DeserializeOwned>(v: &Value) -> Result<(), String> {
    serde_json::from_value::<T>(v.clone())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// A built-in kind at `api_version` (`v1`, `group/version`).
fn builtin(api_version: &str, kind: &str, plural: &str, namespaced: bool, validate: Validate) -> ResourceType {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    ResourceType {
        subresources: Vec::new(),
        validate: Some(validate),
        ..ResourceType::custom(group, version, kind, plural, namespaced)
    }
}

impl ResourceType {
    fn with(mut self, subresources: &[&'static str], fields: &[&'static str]) -> Self {
        self.subresources = subresources.to_vec();
        self.fields = fields.to_vec();
        self
    }
}

/// The built-in resources Railyard's components use.
pub fn builtins() -> Vec<ResourceType> {
    use k8s_openapi::api::{coordination, core, events, resource};
    vec![
        builtin("v1", "Pod", "pods", true, typed::<core::v1::Pod>).with(
            &["status", "binding"],
            &["spec.nodeName", "spec.schedulerName", "status.phase"],
        ),
        builtin("v1", "Node", "nodes", false, typed::<core::v1::Node>).with(&["status"], &["spec.unschedulable"]),
        builtin("v1", "Namespace", "namespaces", false, typed::<core::v1::Namespace>)
            .with(&["status"], &["status.phase"]),
        builtin("v1", "ConfigMap", "configmaps", true, typed::<core::v1::ConfigMap>),
        builtin("v1", "Event", "events", true, typed::<core::v1::Event>).with(
            &[],
            &[
                "involvedObject.kind",
                "involvedObject.name",
                "involvedObject.namespace",
                "involvedObject.uid",
                "reason",
                "type",
            ],
        ),
        builtin("events.k8s.io/v1", "Event", "events", true, typed::<events::v1::Event>).with(
            &[],
            &[
                "regarding.kind",
                "regarding.name",
                "regarding.namespace",
                "reason",
                "type",
            ],
        ),
        builtin(
            "coordination.k8s.io/v1",
            "Lease",
            "leases",
            true,
            typed::<coordination::v1::Lease>,
        ),
        builtin(
            "resource.k8s.io/v1",
            "ResourceSlice",
            "resourceslices",
            false,
            typed::<resource::v1::ResourceSlice>,
        )
        .with(&[], &["spec.nodeName", "spec.driver", "spec.pool.name"]),
        builtin(
            "resource.k8s.io/v1",
            "ResourceClaim",
            "resourceclaims",
            true,
            typed::<resource::v1::ResourceClaim>,
        )
        .with(&["status"], &[]),
        builtin(
            "resource.k8s.io/v1",
            "ResourceClaimTemplate",
            "resourceclaimtemplates",
            true,
            typed::<resource::v1::ResourceClaimTemplate>,
        ),
        builtin(
            "resource.k8s.io/v1",
            "DeviceClass",
            "deviceclasses",
            false,
            typed::<resource::v1::DeviceClass>,
        ),
    ]
}

/// The value at a dotted `path` of `obj`, as a field selector compares it
/// (strings as they are, booleans and numbers as text, absent as "").
pub fn field_value(obj: &Value, path: &str) -> String {
    let mut v = obj;
    for part in path.split('.') {
        match v.get(part) {
            Some(next) => v = next,
            None => return String::new(),
        }
    }
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}
