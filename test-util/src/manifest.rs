//! Checking manifests and examples against their typed k8s-openapi structs:
//! a document must parse into the type and serialize back to itself, so a
//! misspelt field (which serde would drop silently) fails the test.

use serde_json::Value;

/// Drops what serialization normalizes away: nulls and empty maps.
pub fn normalize(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| (k, normalize(v)))
                .filter(|(_, v)| !v.is_null() && v != &Value::Object(Default::default()))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(normalize).collect()),
        v => v,
    }
}

/// Parses `doc` as `T` and checks the round trip keeps every field; panics
/// naming `what` otherwise (it is for tests).
pub fn typed<T: serde::de::DeserializeOwned + serde::Serialize>(doc: &Value, what: &str) -> T {
    let t: T = serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{what}: {e}"));
    let back = serde_json::to_value(&t).unwrap_or_else(|e| panic!("{what}: serializing: {e}"));
    assert_eq!(
        normalize(doc.clone()),
        normalize(back),
        "{what}: a field was not understood (typo?)"
    );
    t
}
