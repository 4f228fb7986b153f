//! Semantic versions (semver 2.0.0) as the Kubernetes CEL semver library
//! treats them: strict parsing, an optional normalisation of loose input,
//! and precedence ordering.
//!
//! Strict parsing follows `github.com/blang/semver/v4` `Parse`, which the
//! library calls; normalisation follows the library's `normalizeAndParse`.
//! As in blang, numeric parts (including numeric pre-release identifiers)
//! must fit a u64.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

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

fn is_numeric(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn is_identifier(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// A major, minor or patch number: digits, no leading zero, fits u64.
fn number(what: &str, s: &str) -> Result<u64, String> {
    if !is_numeric(s) {
        return Err(format!("{what} number {s:?} must be digits"));
    }
    if s.len() > 1 && s.starts_with('0') {
        return Err(format!("{what} number {s:?} must not have leading zeros"));
    }
    s.parse()
        .map_err(|_| format!("{what} number {s:?} does not fit in 64 bits"))
}

/// blang's `Parse`.
fn parse_strict(s: &str) -> Result<Semver, String> {
    if s.is_empty() {
        return Err("empty string".into());
    }
    let mut parts = s.splitn(3, '.');
    let (Some(major), Some(minor), Some(rest)) = (parts.next(), parts.next(), parts.next()) else {
        return Err("expected MAJOR.MINOR.PATCH".into());
    };
    let major = number("major", major)?;
    let minor = number("minor", minor)?;
    // Build metadata starts at the first '+', pre-release at the first '-'
    // before it; both may contain '-' themselves.
    let (rest, build) = match rest.split_once('+') {
        Some((r, b)) => (r, Some(b)),
        None => (rest, None),
    };
    let (patch, pre) = match rest.split_once('-') {
        Some((p, pre)) => (p, Some(pre)),
        None => (rest, None),
    };
    let patch = number("patch", patch)?;
    let mut v = Semver {
        major,
        minor,
        patch,
        pre: Vec::new(),
        build: Vec::new(),
    };
    for id in pre.into_iter().flat_map(|p| p.split('.')) {
        if id.is_empty() {
            return Err("empty pre-release identifier".into());
        }
        if is_numeric(id) {
            if id.len() > 1 && id.starts_with('0') {
                return Err(format!(
                    "numeric pre-release identifier {id:?} must not have leading zeros"
                ));
            }
            if id.parse::<u64>().is_err() {
                return Err(format!("numeric pre-release identifier {id:?} does not fit in 64 bits"));
            }
        } else if !is_identifier(id) {
            return Err(format!("pre-release identifier {id:?} may only hold [0-9A-Za-z-]"));
        }
        v.pre.push(id.to_owned());
    }
    for id in build.into_iter().flat_map(|b| b.split('.')) {
        if id.is_empty() {
            return Err("empty build metadata identifier".into());
        }
        if !is_identifier(id) {
            return Err(format!("build metadata identifier {id:?} may only hold [0-9A-Za-z-]"));
        }
        v.build.push(id.to_owned());
    }
    Ok(v)
}

/// The CEL library's `normalizeAndParse`: drop one leading `v`, strip
/// leading zeros from each of the (up to) three dot-separated parts (the
/// third includes pre-release and build, so only its start is touched), pad
/// a short version with `.0`, then parse strictly.
fn parse_normalized(s: &str) -> Result<Semver, String> {
    let s = s.strip_prefix('v').unwrap_or(s);
    let mut parts: Vec<String> = s
        .splitn(3, '.')
        .map(|p| {
            if p.len() <= 1 {
                return p.to_owned();
            }
            let t = p.trim_start_matches('0');
            if t.as_bytes().first().is_some_and(u8::is_ascii_digit) {
                t.to_owned()
            } else {
                format!("0{t}")
            }
        })
        .collect();
    if parts.len() < 3 {
        if parts.last().is_some_and(|p| p.contains(['+', '-'])) {
            return Err("a short version cannot have pre-release or build metadata".into());
        }
        parts.resize(3, "0".to_owned());
    }
    parse_strict(&parts.join("."))
}

/// Precedence of two pre-release identifiers (§11.4): numeric ones compare
/// numerically and sort before alphanumeric ones, which compare in ASCII.
fn cmp_identifier(a: &str, b: &str) -> Ordering {
    match (is_numeric(a), is_numeric(b)) {
        (true, true) => {
            // By length then digits: exact for any size, even for values
            // built by hand with leading zeros.
            let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
            a.len().cmp(&b.len()).then_with(|| a.cmp(b))
        }
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => a.cmp(b),
    }
}

impl Semver {
    /// `MAJOR.MINOR.PATCH` with no pre-release or build.
    pub fn new(major: u64, minor: u64, patch: u64) -> Semver {
        Semver {
            major,
            minor,
            patch,
            pre: Vec::new(),
            build: Vec::new(),
        }
    }

    /// Strict semver 2.0.0 (`1.2.3`, `1.2.3-rc.1+build`).
    pub fn parse(text: &str) -> Result<Semver, SemverError> {
        Self::parse_with(text, false)
    }

    /// With `normalize`, a leading `v` is stripped, missing minor/patch are
    /// padded with 0 and leading zeros dropped, as `semver(s, true)`.
    pub fn parse_with(text: &str, normalize: bool) -> Result<Semver, SemverError> {
        let parsed = if normalize {
            parse_normalized(text)
        } else {
            parse_strict(text)
        };
        parsed.map_err(|reason| SemverError {
            text: text.to_owned(),
            reason,
        })
    }

    /// -1, 0 or 1 as CEL's `compareTo`.
    pub fn compare_to(&self, other: &Semver) -> i64 {
        match self.cmp(other) {
            Ordering::Less => -1,
            Ordering::Equal => 0,
            Ordering::Greater => 1,
        }
    }
}

impl FromStr for Semver {
    type Err = SemverError;
    /// Strict, as [`Semver::parse`].
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Semver::parse(text)
    }
}

impl fmt::Display for Semver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        if !self.pre.is_empty() {
            write!(f, "-{}", self.pre.join("."))?;
        }
        if !self.build.is_empty() {
            write!(f, "+{}", self.build.join("."))?;
        }
        Ok(())
    }
}

impl PartialEq for Semver {
    /// blang's `Equals` is `Compare == 0`: build metadata is ignored.
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
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| {
                match (self.pre.is_empty(), other.pre.is_empty()) {
                    (true, true) => Ordering::Equal,
                    // A pre-release sorts before its release.
                    (true, false) => Ordering::Greater,
                    (false, true) => Ordering::Less,
                    (false, false) => {
                        for (a, b) in self.pre.iter().zip(&other.pre) {
                            let c = cmp_identifier(a, b);
                            if c != Ordering::Equal {
                                return c;
                            }
                        }
                        // All shared identifiers equal: the longer set wins.
                        self.pre.len().cmp(&other.pre.len())
                    }
                }
            })
    }
}
