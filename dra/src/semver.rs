//! Semantic versions (semver 2.0.0) as the Kubernetes CEL semver library
//! treats them: strict parsing, an optional normalisation of loose input,
//! and precedence ordering.
//!
//! STUB: placeholder; the full implementation replaces it and keeps this API.

use std::cmp::Ordering;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid semver {text:?}: {reason}")]
pub struct SemverError {
    pub text: String,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct Semver {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    pub pre: Vec<String>,
    pub build: Vec<String>,
}

impl Semver {
    /// Strict semver 2.0.0 (`1.2.3`, `1.2.3-rc.1+build`).
    pub fn parse(text: &str) -> Result<Semver, SemverError> {
        Self::parse_with(text, false)
    }

    /// With `normalize`, a leading `v` is stripped, missing minor/patch are
    /// padded with 0 and leading zeros dropped, as `semver(s, true)`.
    pub fn parse_with(text: &str, _normalize: bool) -> Result<Semver, SemverError> {
        let err = |reason: &str| SemverError {
            text: text.to_owned(),
            reason: reason.to_owned(),
        };
        let mut parts = text.split('.');
        let mut next = || {
            parts
                .next()
                .ok_or_else(|| err("missing part"))?
                .parse::<u64>()
                .map_err(|_| err("not a number"))
        };
        Ok(Semver {
            major: next()?,
            minor: next()?,
            patch: next()?,
            pre: vec![],
            build: vec![],
        })
    }
}

impl fmt::Display for Semver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl PartialEq for Semver {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Semver {}
impl PartialOrd for Semver {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Semver {
    /// Precedence as semver 2.0.0 §11; build metadata is ignored.
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch).cmp(&(other.major, other.minor, other.patch))
    }
}
