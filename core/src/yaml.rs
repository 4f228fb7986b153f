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
    let de = serde_yaml::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| parse_error(what, e))
}

/// A deserialization error as a [`ConfigError::Parse`] naming the path.
pub(crate) fn parse_error(what: &str, e: serde_path_to_error::Error<serde_yaml::Error>) -> ConfigError {
    let path = e.path().to_string();
    let path = match path.as_str() {
        "." => "(document)".to_string(),
        // A key that is the empty string (`"": 1`, or `:` at the top level):
        // quoted, so the message still says where.
        "" => "\"\"".to_string(),
        _ => path,
    };
    let message = e.into_inner().to_string();
    // serde_yaml sometimes prefixes the path itself; say it once.
    let message = message
        .strip_prefix(&format!("{path}: "))
        .map(str::to_string)
        .unwrap_or(message);
    // It appends " at line L column C"; keep that, it helps find the spot.
    ConfigError::Parse {
        what: what.to_string(),
        path,
        message,
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
    fn invalid_quotes_the_value() {
        let e = ConfigError::invalid("cfg", "a.b", "x y", "must be a number");
        assert_eq!(e.to_string(), "cfg: a.b: invalid value \"x y\": must be a number");
        let e = ConfigError::invalid("cfg", "a.b", 1, "must be at least 2");
        assert_eq!(e.to_string(), "cfg: a.b: invalid value \"1\": must be at least 2");
    }
}
