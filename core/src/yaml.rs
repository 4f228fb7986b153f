//! Parsing YAML configs with errors that name the field path and the bad
//! value, the way users of NVIDIA's tools expect to be told what is wrong.

use serde::de::DeserializeOwned;

/// A config that failed to parse or validate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Syntax or type error; `path` is the dotted field path (`sharing.timeSlicing.resources[0].replicas`).
    #[error("{what}: {path}: {message}")]
    Parse {
        what: String,
        path: String,
        message: String,
    },
    /// The document parsed but a value is not allowed.
    #[error("{what}: {path}: invalid value {value}: {reason}")]
    Invalid {
        what: String,
        path: String,
        value: String,
        reason: String,
    },
}

impl ConfigError {
    pub fn invalid(
        what: &str,
        path: impl Into<String>,
        value: impl std::fmt::Display,
        reason: impl Into<String>,
    ) -> Self {
        ConfigError::Invalid {
            what: what.into(),
            path: path.into(),
            value: format!("{:?}", value.to_string()),
            reason: reason.into(),
        }
    }

    /// The field path the error points at.
    pub fn path(&self) -> &str {
        match self {
            ConfigError::Parse { path, .. } | ConfigError::Invalid { path, .. } => path,
        }
    }
}

/// Deserializes `text` as `T`, reporting the failing field's path.
/// `what` names the document in messages, e.g. `device plugin config`.
pub fn from_yaml<T: DeserializeOwned>(what: &str, text: &str) -> Result<T, ConfigError> {
    crate::config::budget::parse(what, text, None)
}

/// serde-saphyr's options for configs, close to what serde_yaml did: YAML
/// 1.2 booleans (`yes`, `on` are strings), `.inf` and `.nan` passed to
/// float fields, duplicate keys refused, errors as one line (`... at line
/// L, column C`) without a source snippet.
pub(crate) fn options() -> serde_saphyr::Options {
    let mut o = serde_saphyr::Options::default();
    o.strict_booleans = true;
    o.non_finite_float_policy = serde_saphyr::NonFiniteFloatPolicy::PassThrough;
    o.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
    o.with_snippet = false;
    o
}

/// A deserialization error as a [`ConfigError::Parse`] naming the path.
/// `path` is serde_path_to_error's (`None` where the error came from outside
/// the deserialization, e.g. trailing content after the document).
pub(crate) fn parse_error(what: &str, path: Option<String>, e: &serde_saphyr::Error) -> ConfigError {
    let e = e.without_snippet();
    let mut path = path.unwrap_or_else(|| ".".to_string());
    let mut message = e.to_string();
    if let serde_saphyr::Error::DuplicateMappingKey { key, location } = e {
        // The path ends in an unknown segment (`?`, the key not read yet);
        // name the key instead, and leave out saphyr's advice to developers.
        let parent = path.strip_suffix('?').unwrap_or(&path).trim_end_matches('.');
        let parent = if parent.is_empty() { "." } else { parent };
        message = format!(
            "duplicate key at line {}, column {}",
            location.line(),
            location.column()
        );
        if let Some(key) = key {
            path = match parent {
                "." => key.clone(),
                _ => format!("{parent}.{key}"),
            };
        } else {
            path = parent.to_string();
        }
    }
    let path = match path.as_str() {
        "." => "(document)".to_string(),
        // A key that is the empty string (`"": 1`, or `:` at the top level):
        // quoted, so the message still says where.
        "" => "\"\"".to_string(),
        _ => path,
    };
    // saphyr appends " at line L, column C"; keep that, it helps find the spot.
    ConfigError::Parse {
        what: what.to_string(),
        path,
        message,
    }
}

/// Any YAML value, as parsed: for fields whose shape is free
/// (`health.criticalXIDs`) and for hand-written `Deserialize` impls that
/// look at the node before deciding. Mappings keep their order.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    /// A non-negative integer.
    UInt(u64),
    /// A negative integer.
    Int(i64),
    Float(f64),
    String(String),
    Sequence(Vec<Value>),
    Mapping(Vec<(Value, Value)>),
}

impl Value {
    /// The value as a non-negative integer, if it is one.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::UInt(n) => Some(*n),
            _ => None,
        }
    }

    /// The value as a string, if it is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
}

/// The value as YAML (flow or block, as the serializer writes it), trimmed,
/// for error messages.
impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::UInt(n) => write!(f, "{n}"),
            Value::Int(n) => write!(f, "{n}"),
            Value::Float(x) => write!(f, "{x}"),
            other => match serde_saphyr::to_string(other) {
                Ok(s) => f.write_str(s.trim()),
                Err(_) => write!(f, "{other:?}"),
            },
        }
    }
}

impl serde::Serialize for Value {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::UInt(n) => s.serialize_u64(*n),
            Value::Int(n) => s.serialize_i64(*n),
            Value::Float(x) => s.serialize_f64(*x),
            Value::String(v) => s.serialize_str(v),
            Value::Sequence(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Value::Mapping(entries) => {
                let mut map = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> serde::Deserialize<'de> for Value {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> serde::de::Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(u64::try_from(v).map_or(Value::Int(v), Value::UInt))
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::UInt(v))
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        serde::Deserialize::deserialize(d)
    }
    fn visit_newtype_struct<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        serde::Deserialize::deserialize(d)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Sequence(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry()? {
            entries.push(entry);
        }
        Ok(Value::Mapping(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        inner: Vec<Inner>,
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        count: u32,
    }

    #[test]
    fn errors_name_the_path() {
        let e = from_yaml::<Outer>("test config", "inner:\n  - count: 1\n  - count: many\n").unwrap_err();
        assert_eq!(e.path(), "inner[1].count");
        assert!(
            e.to_string()
                .starts_with("test config: inner[1].count: invalid type: string \"many\""),
            "{e}"
        );
        let e = from_yaml::<Outer>("test config", "inner: []\nextra: 1\n").unwrap_err();
        assert!(e.to_string().contains("unknown field `extra`"), "{e}");
    }

    #[test]
    fn an_empty_key_is_named_quoted() {
        for text in ["\"\": 1\n", "inner: []\n\"\": 1\n"] {
            let e = from_yaml::<Outer>("test config", text).unwrap_err();
            assert_eq!(e.path(), "\"\"", "{text:?}: {e}");
            assert!(e.to_string().starts_with("test config: \"\": "), "{e}");
        }
    }

    #[test]
    fn bad_numbers_and_duplicate_keys_name_the_value_and_key() {
        let e = from_yaml::<Outer>("t", "inner:\n  - count: -1\n").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("t: inner[0].count: invalid value: integer `-1`"),
            "{e}"
        );
        let e = from_yaml::<Outer>("t", "inner:\n  - count: yes\n").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("t: inner[0].count: invalid type: string \"yes\""),
            "{e}"
        );
        let e = from_yaml::<Outer>("t", "inner: []\ninner: []\n").unwrap_err();
        assert_eq!(e.path(), "inner", "{e}");
        assert!(e.to_string().contains("duplicate key at line 2"), "{e}");
    }

    #[test]
    fn invalid_quotes_the_value() {
        let e = ConfigError::invalid("cfg", "a.b", "x y", "must be a number");
        assert_eq!(e.to_string(), "cfg: a.b: invalid value \"x y\": must be a number");
        let e = ConfigError::invalid("cfg", "a.b", 1, "must be at least 2");
        assert_eq!(e.to_string(), "cfg: a.b: invalid value \"1\": must be at least 2");
    }
}
