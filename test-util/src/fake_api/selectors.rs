//! Label and field selectors as the API server parses them from
//! `labelSelector` / `fieldSelector` query parameters.

use std::collections::BTreeMap;

use serde_json::Value;

use super::registry::{ResourceType, field_value};

#[derive(Debug, Clone, PartialEq, Eq)]
enum LabelReq {
    Eq(String, String),
    Ne(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed `labelSelector`: every requirement must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(Vec<LabelReq>);

/// Splits on commas outside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out.into_iter().map(str::trim).filter(|p| !p.is_empty()).collect()
}

fn set_of(text: &str, selector: &str) -> Result<Vec<String>, String> {
    let inner = text
        .trim()
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .ok_or_else(|| format!("unable to parse requirement: {selector:?}: expected a parenthesised set"))?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect())
}

impl LabelSelector {
    pub fn parse(text: &str) -> Result<LabelSelector, String> {
        let mut reqs = Vec::new();
        for part in split_top(text) {
            let req = if let Some(k) = part.strip_prefix('!') {
                LabelReq::NotExists(k.trim().to_owned())
            } else if let Some((k, v)) = part.split_once(" notin ") {
                LabelReq::NotIn(k.trim().to_owned(), set_of(v, part)?)
            } else if let Some((k, v)) = part.split_once(" in ") {
                LabelReq::In(k.trim().to_owned(), set_of(v, part)?)
            } else if let Some((k, v)) = part.split_once("!=") {
                LabelReq::Ne(k.trim().to_owned(), v.trim().to_owned())
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                LabelReq::Eq(k.trim().to_owned(), v.trim().to_owned())
            } else if part.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c)) {
                LabelReq::Exists(part.to_owned())
            } else {
                return Err(format!("unable to parse requirement: {part:?}"));
            };
            reqs.push(req);
        }
        Ok(LabelSelector(reqs))
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            LabelReq::Eq(k, v) => labels.get(k) == Some(v),
            LabelReq::Ne(k, v) => labels.get(k) != Some(v),
            LabelReq::In(k, vs) => labels.get(k).is_some_and(|l| vs.contains(l)),
            LabelReq::NotIn(k, vs) => labels.get(k).is_none_or(|l| !vs.contains(l)),
            LabelReq::Exists(k) => labels.contains_key(k),
            LabelReq::NotExists(k) => !labels.contains_key(k),
        })
    }
}

/// A parsed `fieldSelector`: `path=value`, `path==value`, `path!=value`,
/// comma-separated, on the fields the resource supports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(Vec<(String, String, bool)>);

impl FieldSelector {
    pub fn parse(text: &str, rt: &ResourceType) -> Result<FieldSelector, String> {
        let mut reqs = Vec::new();
        for part in split_top(text) {
            let (path, value, equal) = if let Some((k, v)) = part.split_once("!=") {
                (k, v, false)
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                (k, v, true)
            } else {
                return Err(format!("invalid selector: {part:?}; can't understand it"));
            };
            let path = path.trim();
            let supported = ["metadata.name", "metadata.namespace"].contains(&path) || rt.fields.contains(&path);
            if !supported {
                return Err(format!(
                    "field label not supported: {path} (for {} {})",
                    rt.api_version(),
                    rt.kind
                ));
            }
            reqs.push((path.to_owned(), value.trim().to_owned(), equal));
        }
        Ok(FieldSelector(reqs))
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.0
            .iter()
            .all(|(path, value, equal)| (field_value(obj, path) == *value) == *equal)
    }
}

/// The labels of an object.
pub fn labels(obj: &Value) -> BTreeMap<String, String> {
    obj.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn label_selectors_follow_the_api_grammar() {
        let s = LabelSelector::parse("app=web,tier in (a, b),!legacy,env!=prod,zone").expect("parses");
        assert!(s.matches(&l(&[("app", "web"), ("tier", "b"), ("zone", "z1")])));
        assert!(!s.matches(&l(&[("app", "web"), ("tier", "c"), ("zone", "z1")])));
        assert!(!s.matches(&l(&[("app", "web"), ("tier", "a"), ("zone", "z1"), ("legacy", "")])));
        assert!(!s.matches(&l(&[("app", "web"), ("tier", "a")])));
        let n = LabelSelector::parse("x notin (1)").expect("parses");
        assert!(n.matches(&l(&[])) && !n.matches(&l(&[("x", "1")])));
        assert!(LabelSelector::parse("a in b").is_err());
    }
}
