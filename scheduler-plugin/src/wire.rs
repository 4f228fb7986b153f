//! Extender v1 JSON (kube-scheduler `k8s.io/kube-scheduler/extender/v1`).
//!
//! The Go types have no json tags, so keys are the Go field names in
//! PascalCase; nil pointers and maps are `null`. Requests are read with the
//! exact names (lower-case aliases accepted, as Go's decoder is
//! case-insensitive); responses use the exact names.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta;
use serde::{Deserialize, Serialize};

use crate::k8s::LeanPod;

/// `v1.NodeList` as the scheduler sends it: `{"metadata":{},"items":[…]}`
/// (no `kind`/`apiVersion`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NodeList {
    #[serde(default)]
    pub metadata: ListMeta,
    #[serde(default)]
    pub items: Vec<Node>,
}

/// Filter and prioritize request.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExtenderArgs {
    #[serde(rename = "Pod", alias = "pod", default)]
    pub pod: Option<LeanPod>,
    #[serde(rename = "Nodes", alias = "nodes", default)]
    pub nodes: Option<NodeList>,
    #[serde(rename = "NodeNames", alias = "nodeNames", alias = "nodenames", default)]
    pub node_names: Option<Vec<String>>,
}

/// Filter response.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExtenderFilterResult {
    #[serde(rename = "Nodes", default)]
    pub nodes: Option<NodeList>,
    #[serde(rename = "NodeNames", default)]
    pub node_names: Option<Vec<String>>,
    #[serde(rename = "FailedNodes", default)]
    pub failed_nodes: Option<BTreeMap<String, String>>,
    #[serde(rename = "FailedAndUnresolvableNodes", default)]
    pub failed_and_unresolvable_nodes: Option<BTreeMap<String, String>>,
    #[serde(rename = "Error", default)]
    pub error: String,
}

/// One entry of the prioritize response (`HostPriorityList` is an array).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostPriority {
    #[serde(rename = "Host")]
    pub host: String,
    #[serde(rename = "Score")]
    pub score: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExtenderBindingArgs {
    #[serde(rename = "PodName", alias = "podName")]
    pub pod_name: String,
    #[serde(rename = "PodNamespace", alias = "podNamespace")]
    pub pod_namespace: String,
    #[serde(rename = "PodUID", alias = "podUID", alias = "podUid")]
    pub pod_uid: String,
    #[serde(rename = "Node", alias = "node")]
    pub node: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExtenderBindingResult {
    #[serde(rename = "Error", default)]
    pub error: String,
}

/// Victims on one node, full pods (when not nodeCacheCapable).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Victims {
    #[serde(rename = "Pods", default)]
    pub pods: Option<Vec<LeanPod>>,
    #[serde(rename = "NumPDBViolations", default)]
    pub num_pdb_violations: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaPod {
    #[serde(rename = "UID")]
    pub uid: String,
}

/// Victims on one node, by UID.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaVictims {
    #[serde(rename = "Pods", default)]
    pub pods: Option<Vec<MetaPod>>,
    #[serde(rename = "NumPDBViolations", default)]
    pub num_pdb_violations: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExtenderPreemptionArgs {
    #[serde(rename = "Pod", alias = "pod", default)]
    pub pod: Option<LeanPod>,
    #[serde(rename = "NodeNameToVictims", default)]
    pub node_name_to_victims: Option<BTreeMap<String, Victims>>,
    #[serde(rename = "NodeNameToMetaVictims", default)]
    pub node_name_to_meta_victims: Option<BTreeMap<String, MetaVictims>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExtenderPreemptionResult {
    #[serde(rename = "NodeNameToMetaVictims", default)]
    pub node_name_to_meta_victims: Option<BTreeMap<String, MetaVictims>>,
}

/// `ExtenderFilterResult` written from borrowed parts (the hot path):
/// maps keep the request's node order.
#[derive(Debug)]
pub struct FilterResultOut<'a> {
    pub nodes: Option<&'a NodeList>,
    pub node_names: Option<Vec<&'a str>>,
    pub failed_nodes: Option<Vec<(&'a str, &'a str)>>,
    pub failed_and_unresolvable_nodes: Option<Vec<(&'a str, &'a str)>>,
    pub error: &'a str,
}

struct Pairs<'b, 'a>(&'b [(&'a str, &'a str)]);

impl Serialize for Pairs<'_, '_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl Serialize for FilterResultOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("ExtenderFilterResult", 5)?;
        st.serialize_field("Nodes", &self.nodes)?;
        st.serialize_field("NodeNames", &self.node_names)?;
        st.serialize_field("FailedNodes", &self.failed_nodes.as_deref().map(Pairs))?;
        st.serialize_field(
            "FailedAndUnresolvableNodes",
            &self.failed_and_unresolvable_nodes.as_deref().map(Pairs),
        )?;
        st.serialize_field("Error", self.error)?;
        st.end()
    }
}
