//! Patches: JSON merge patch (RFC 7386), JSON patch (RFC 6902), and the
//! field bookkeeping server-side apply needs.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

/// RFC 7386: objects merge key by key, `null` removes, anything else
/// replaces (lists included).
pub fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

/// Splits a JSON pointer into its parent pointer and last token.
fn parent_of(path: &str) -> Result<(&str, String), String> {
    let i = path
        .rfind('/')
        .ok_or_else(|| format!("invalid JSON pointer {path:?}"))?;
    Ok((&path[..i], unescape(&path[i + 1..])))
}

fn add(doc: &mut Value, path: &str, value: Value) -> Result<(), String> {
    if path.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (parent, key) = parent_of(path)?;
    match doc.pointer_mut(parent) {
        Some(Value::Object(m)) => {
            m.insert(key, value);
            Ok(())
        }
        Some(Value::Array(a)) => {
            let i = if key == "-" {
                a.len()
            } else {
                key.parse::<usize>()
                    .ok()
                    .filter(|i| *i <= a.len())
                    .ok_or_else(|| format!("index {key:?} out of range at {path:?}"))?
            };
            a.insert(i, value);
            Ok(())
        }
        _ => Err(format!("path {parent:?} does not exist")),
    }
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, key) = parent_of(path)?;
    match doc.pointer_mut(parent) {
        Some(Value::Object(m)) => m.remove(&key).ok_or_else(|| format!("path {path:?} does not exist")),
        Some(Value::Array(a)) => {
            let i = key
                .parse::<usize>()
                .ok()
                .filter(|i| *i < a.len())
                .ok_or_else(|| format!("index {key:?} out of range at {path:?}"))?;
            Ok(a.remove(i))
        }
        _ => Err(format!("path {path:?} does not exist")),
    }
}

/// RFC 6902 operations, all or nothing.
pub fn json_patch(doc: &Value, ops: &Value) -> Result<Value, String> {
    let ops = ops.as_array().ok_or("a JSON patch is a list of operations")?;
    let mut out = doc.clone();
    for (i, op) in ops.iter().enumerate() {
        let field = |name: &str| {
            op.get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| format!("operation {i}: missing {name:?}"))
        };
        let path = field("path")?;
        let value = || {
            op.get("value")
                .cloned()
                .ok_or_else(|| format!("operation {i}: missing \"value\""))
        };
        match field("op")? {
            "add" => add(&mut out, path, value()?)?,
            "remove" => {
                remove(&mut out, path)?;
            }
            "replace" => {
                remove(&mut out, path)?;
                add(&mut out, path, value()?)?;
            }
            "move" => {
                let v = remove(&mut out, field("from")?)?;
                add(&mut out, path, v)?;
            }
            "copy" => {
                let v = out
                    .pointer(field("from")?)
                    .cloned()
                    .ok_or_else(|| format!("operation {i}: \"from\" does not exist"))?;
                add(&mut out, path, v)?;
            }
            "test" => {
                if out.pointer(path) != Some(&value()?) {
                    return Err(format!("operation {i}: test failed at {path:?}"));
                }
            }
            other => return Err(format!("operation {i}: unknown op {other:?}")),
        }
    }
    Ok(out)
}

/// The leaf fields of an applied configuration, as JSON pointers; lists are
/// leaves (atomic), as for fields without a list-map schema.
pub fn leaves(v: &Value) -> BTreeSet<String> {
    fn walk(v: &Value, at: String, out: &mut BTreeSet<String>) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, child) in m {
                    walk(child, format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")), out);
                }
            }
            _ => {
                out.insert(at);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(v, String::new(), &mut out);
    // Identity fields belong to nobody.
    for skip in ["/apiVersion", "/kind", "/metadata/name", "/metadata/namespace"] {
        out.remove(skip);
    }
    out
}

/// Which apply manager owns which fields of one object.
pub type Owners = BTreeMap<String, BTreeSet<String>>;

/// Server-side apply of `applied` by `manager` onto `current` (None:
/// create). Fields the manager applied before and leaves out now are
/// removed unless another manager owns them; a field another manager owns
/// with a different value is a conflict unless `force`.
pub fn apply(
    current: Option<&Value>,
    applied: &Value,
    manager: &str,
    owners: &mut Owners,
    force: bool,
) -> Result<Value, String> {
    let fields = leaves(applied);
    let mut conflicts = Vec::new();
    if let Some(cur) = current {
        for (other, owned) in owners.iter() {
            if other == manager {
                continue;
            }
            for f in fields.intersection(owned) {
                if cur.pointer(f) != applied.pointer(f) {
                    conflicts.push(format!("{f} (owned by {other:?})"));
                }
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(format!(
            "Apply failed with {} conflict(s): {}",
            conflicts.len(),
            conflicts.join(", ")
        ));
    }
    let mut out = current.cloned().unwrap_or_else(|| Value::Object(Map::new()));
    let before = owners.get(manager).cloned().unwrap_or_default();
    for gone in before.difference(&fields) {
        let kept_by_other = owners.iter().any(|(m, owned)| m != manager && owned.contains(gone));
        if !kept_by_other {
            let _ = remove(&mut out, gone);
        }
    }
    merge(&mut out, applied);
    if force {
        for (other, owned) in owners.iter_mut() {
            if other != manager {
                owned.retain(|f| !fields.contains(f));
            }
        }
    }
    owners.insert(manager.to_owned(), fields);
    owners.retain(|_, f| !f.is_empty());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut doc = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge(&mut doc, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(doc, json!({"a": "z", "c": {"d": "e"}}));
    }

    #[test]
    fn json_patch_follows_rfc_6902() {
        let doc = json!({"foo": ["bar", "baz"], "x": {"y": 1}});
        let ops = json!([
            {"op": "add", "path": "/foo/1", "value": "qux"},
            {"op": "remove", "path": "/x/y"},
            {"op": "copy", "from": "/foo/0", "path": "/x/z"},
            {"op": "test", "path": "/x/z", "value": "bar"},
            {"op": "add", "path": "/a~1b", "value": true}
        ]);
        assert_eq!(
            json_patch(&doc, &ops).expect("applies"),
            json!({"foo": ["bar", "qux", "baz"], "x": {"z": "bar"}, "a/b": true})
        );
        let failing = json!([{"op": "add", "path": "/foo/9", "value": 1}]);
        assert!(json_patch(&doc, &failing).is_err());
        let test_fails =
            json!([{"op": "replace", "path": "/x/y", "value": 2}, {"op": "test", "path": "/x/y", "value": 1}]);
        assert!(json_patch(&doc, &test_fails).is_err());
    }

    #[test]
    fn apply_removes_what_the_manager_dropped_and_detects_conflicts() {
        let mut owners = Owners::new();
        let v1 = apply(
            None,
            &json!({"metadata": {"labels": {"a": "1", "b": "2"}}}),
            "m1",
            &mut owners,
            false,
        )
        .expect("creates");
        let v2 = apply(
            Some(&v1),
            &json!({"metadata": {"labels": {"a": "1"}}}),
            "m1",
            &mut owners,
            false,
        )
        .expect("applies");
        assert_eq!(v2, json!({"metadata": {"labels": {"a": "1"}}}));
        let err = apply(
            Some(&v2),
            &json!({"metadata": {"labels": {"a": "9"}}}),
            "m2",
            &mut owners,
            false,
        )
        .expect_err("conflicts");
        assert!(err.contains("/metadata/labels/a") && err.contains("m1"), "{err}");
        let forced = apply(
            Some(&v2),
            &json!({"metadata": {"labels": {"a": "9"}}}),
            "m2",
            &mut owners,
            true,
        )
        .expect("forced");
        assert_eq!(forced, json!({"metadata": {"labels": {"a": "9"}}}));
        assert!(!owners.contains_key("m1"));
    }
}
