//! Extender v1 JSON (kube-scheduler `k8s.io/kube-scheduler/extender/v1`).
//!
//! The Go types have no json tags, so keys are the Go field names in
//! PascalCase; nil pointers and maps are `null`. Requests are read with the
//! exact names (lower-case aliases accepted, as Go's decoder is
//! case-insensitive); responses use the exact names.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::io::Write;

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

/// Filter and prioritize request. Node names are borrowed from the request
/// body when they need no unescaping (node names never do): thousands of
/// them arrive on every request.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExtenderArgs<'a> {
    #[serde(rename = "Pod", alias = "pod", default)]
    pub pod: Option<LeanPod>,
    #[serde(rename = "Nodes", alias = "nodes", default)]
    pub nodes: Option<NodeList>,
    #[serde(rename = "NodeNames", alias = "nodeNames", alias = "nodenames", default, borrow)]
    pub node_names: Option<Vec<NodeName<'a>>>,
}

/// One entry of `NodeNames`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeName<'a>(#[serde(borrow)] pub Cow<'a, str>);

impl NodeName<'_> {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<String> for NodeName<'static> {
    fn from(s: String) -> Self {
        NodeName(Cow::Owned(s))
    }
}

impl<'a> From<&'a str> for NodeName<'a> {
    fn from(s: &'a str) -> Self {
        NodeName(Cow::Borrowed(s))
    }
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

/// Appends `s` as a JSON string. Node names and reasons need no escaping
/// and are copied as they are; anything else goes through serde_json.
pub fn push_json_str(out: &mut Vec<u8>, s: &str) {
    if !needs_escape(s.as_bytes()) {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else if serde_json::to_writer(&mut *out, s).is_err() {
        // Writing a &str into a Vec cannot fail; keep the JSON valid anyway.
        out.extend_from_slice(b"\"\"");
    }
}

/// Whether JSON needs any byte of `b` escaped (control, `"` or `\\`):
/// eight bytes at a time, as this runs over every name of every answer.
fn needs_escape(b: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Some byte of x is zero / below 0x20 (the classic bit tricks; exact
    // for the "any byte" question asked here).
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let below_space = |x: u64| x.wrapping_sub(ONES * 0x20) & !x & HIGH;
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        let x = u64::from_le_bytes(w);
        if zero(x ^ (ONES * u64::from(b'"'))) | zero(x ^ (ONES * u64::from(b'\\'))) | below_space(x) != 0 {
            return true;
        }
    }
    chunks.remainder().iter().any(|&c| c < 0x20 || c == b'"' || c == b'\\')
}

/// Appends `{"k":"v",…}` or `null`. A key that comes again (a request that
/// named a node twice) is written once, with its first value: JSON objects
/// with duplicate keys are read differently by different decoders.
pub fn push_json_map<'a>(out: &mut Vec<u8>, pairs: Option<impl Iterator<Item = (&'a str, &'a str)>>) {
    let Some(pairs) = pairs else {
        out.extend_from_slice(b"null");
        return;
    };
    let pairs = pairs.into_iter();
    // Randomly keyed (std's SipHash): the keys come from the request.
    let mut seen: HashSet<&str> = HashSet::with_capacity(pairs.size_hint().0);
    out.push(b'{');
    let mut first = true;
    for (name, reason) in pairs {
        if !seen.insert(name) {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        push_json_str(out, name);
        out.push(b':');
        push_json_str(out, reason);
    }
    out.push(b'}');
}

/// Appends `["a",…]` or `null`.
pub fn push_json_list<'a>(out: &mut Vec<u8>, names: Option<impl Iterator<Item = &'a str>>) {
    let Some(names) = names else {
        out.extend_from_slice(b"null");
        return;
    };
    out.push(b'[');
    for (k, name) in names.enumerate() {
        if k > 0 {
            out.push(b',');
        }
        push_json_str(out, name);
    }
    out.push(b']');
}

/// A `HostPriorityList`: `[{"Host":"a","Score":7},…]`.
pub fn host_priorities_json<'a>(scores: impl Iterator<Item = (&'a str, i64)>) -> Vec<u8> {
    let mut out = Vec::with_capacity(4096);
    out.push(b'[');
    for (k, (host, score)) in scores.enumerate() {
        if k > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"Host\":");
        push_json_str(&mut out, host);
        out.extend_from_slice(b",\"Score\":");
        // Writing into a Vec cannot fail.
        let _ = write!(out, "{score}");
        out.push(b'}');
    }
    out.push(b']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_exactly_when_json_needs_it() {
        let cases = [
            "node-1",
            "ip-10-0-12-34.us-west-2.compute.internal",
            "nœud-ü-ñ-日本",
            "with\"quote-in-the-middle-of-a-long-name",
            "back\\slash",
            "tab\there",
            "ctl\u{1f}-after-eight-bytes",
            "\u{7f}del",
            "",
            "a\u{0}",
        ];
        for s in cases {
            let mut out = Vec::new();
            push_json_str(&mut out, s);
            assert_eq!(out, serde_json::to_vec(s).unwrap(), "{s:?}");
            assert_eq!(serde_json::from_slice::<String>(&out).unwrap(), s);
        }
        // Every byte value in every position of a word.
        for pos in 0..12 {
            for b in 0u8..0x80 {
                let mut v = vec![b'a'; 12];
                v[pos] = b;
                let s = std::str::from_utf8(&v).unwrap();
                let mut out = Vec::new();
                push_json_str(&mut out, s);
                assert_eq!(out, serde_json::to_vec(s).unwrap(), "byte {b:#x} at {pos}");
            }
        }
    }

    #[test]
    fn answers_are_valid_extender_json() {
        let mut out = Vec::new();
        push_json_map(&mut out, Some([("a", "no \"room\""), ("b", "x")].into_iter()));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v, serde_json::json!({"a": "no \"room\"", "b": "x"}));
        let mut out = Vec::new();
        push_json_map(&mut out, None::<std::iter::Empty<(&str, &str)>>);
        assert_eq!(out, b"null");
        let mut out = Vec::new();
        push_json_list(&mut out, Some(["a", "b"].into_iter()));
        assert_eq!(out, br#"["a","b"]"#);
        let body = host_priorities_json([("n1", 10), ("n2", 0), ("n3", -1)].into_iter());
        let back: Vec<HostPriority> = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            back,
            vec![
                HostPriority {
                    host: "n1".into(),
                    score: 10
                },
                HostPriority {
                    host: "n2".into(),
                    score: 0
                },
                HostPriority {
                    host: "n3".into(),
                    score: -1
                },
            ]
        );
    }
}
