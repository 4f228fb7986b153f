//! Semantic versions (semver 2.0.0) as the Kubernetes CEL semver library
//! treats them: strict parsing, an optional normalisation of loose input
//! (`semver(s, true)`), and precedence ordering that ignores build metadata.

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

fn numeric(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())
}

fn valid_ident(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

impl Semver {
    /// Strict semver 2.0.0 (`1.2.3`, `1.2.3-rc.1+build`).
    pub fn parse(text: &str) -> Result<Semver, SemverError> {
        Self::parse_with(text, false)
    }

    /// With `normalize`, a leading `v` is stripped, missing minor/patch are
    /// padded with 0 and leading zeros of the core numbers dropped, as
    /// upstream's `normalizeVersion` does before parsing.
    pub fn parse_with(text: &str, normalize: bool) -> Result<Semver, SemverError> {
        let err = |reason: &str| SemverError {
            text: text.to_owned(),
            reason: reason.to_owned(),
        };
        if text.len() > 256 {
            return Err(err("longer than 256 characters"));
        }
        let mut s = text;
        if normalize {
            s = s.strip_prefix('v').unwrap_or(s);
        }
        let (rest, build) = match s.split_once('+') {
            Some((r, b)) => (r, Some(b)),
            None => (s, None),
        };
        let (core, pre) = match rest.split_once('-') {
            Some((c, p)) => (c, Some(p)),
            None => (rest, None),
        };
        let mut parts: Vec<String> = core.split('.').map(str::to_owned).collect();
        if normalize {
            while parts.len() < 3 {
                parts.push("0".into());
            }
            for p in &mut parts {
                let trimmed = p.trim_start_matches('0');
                *p = if trimmed.is_empty() && !p.is_empty() {
                    "0".into()
                } else {
                    trimmed.to_owned()
                };
            }
        }
        if parts.len() != 3 {
            return Err(err("expected MAJOR.MINOR.PATCH"));
        }
        let mut nums = [0u64; 3];
        for (i, p) in parts.iter().enumerate() {
            if !numeric(p) {
                return Err(err("MAJOR, MINOR and PATCH must be numbers"));
            }
            if p.len() > 1 && p.starts_with('0') {
                return Err(err("leading zero in a version number"));
            }
            nums[i] = p.parse().map_err(|_| err("version number too large"))?;
        }
        let ids = |s: Option<&str>, what: &str, check_zero: bool| -> Result<Vec<String>, SemverError> {
            let Some(s) = s else { return Ok(Vec::new()) };
            s.split('.')
                .map(|id| {
                    if !valid_ident(id) {
                        return Err(err(&format!("invalid {what} identifier {id:?}")));
                    }
                    if check_zero && numeric(id) && id.len() > 1 && id.starts_with('0') {
                        return Err(err(&format!("leading zero in {what} identifier {id:?}")));
                    }
                    Ok(id.to_owned())
                })
                .collect()
        };
        Ok(Semver {
            major: nums[0],
            minor: nums[1],
            patch: nums[2],
            pre: ids(pre, "pre-release", true)?,
            build: ids(build, "build", false)?,
        })
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
        let core = (self.major, self.minor, self.patch).cmp(&(other.major, other.minor, other.patch));
        if core != Ordering::Equal {
            return core;
        }
        match (self.pre.is_empty(), other.pre.is_empty()) {
            (true, true) => return Ordering::Equal,
            (true, false) => return Ordering::Greater,
            (false, true) => return Ordering::Less,
            _ => {}
        }
        for (a, b) in self.pre.iter().zip(&other.pre) {
            let o = match (numeric(a), numeric(b)) {
                // Equal-length digit strings compare as numbers without overflow.
                (true, true) => a.len().cmp(&b.len()).then_with(|| a.cmp(b)),
                (true, false) => Ordering::Less,
                (false, true) => Ordering::Greater,
                (false, false) => a.cmp(b),
            };
            if o != Ordering::Equal {
                return o;
            }
        }
        self.pre.len().cmp(&other.pre.len())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn precedence_follows_semver_2() {
        let chain = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.0.1",
            "1.10.0",
            "2.0.0",
        ];
        for w in chain.windows(2) {
            assert!(
                Semver::parse(w[0]).unwrap() < Semver::parse(w[1]).unwrap(),
                "{} < {}",
                w[0],
                w[1]
            );
        }
        assert_eq!(Semver::parse("1.0.0+build.1").unwrap(), Semver::parse("1.0.0").unwrap());
        assert_eq!(Semver::parse("1.2.3-rc.1+b").unwrap().to_string(), "1.2.3-rc.1+b");
    }

    #[test]
    fn strict_parsing_rejects_and_normalise_repairs() {
        for bad in [
            "",
            "1",
            "1.2",
            "v1.2.3",
            "01.2.3",
            "1.2.3-",
            "1.2.3-01",
            "1.2.3+",
            "1.2.3-a..b",
            "a.b.c",
            "1.2.3.4",
        ] {
            let e = Semver::parse(bad).unwrap_err();
            assert!(e.to_string().contains(&format!("{bad:?}")), "{bad}: {e}");
        }
        assert_eq!(Semver::parse_with("v1", true).unwrap().to_string(), "1.0.0");
        assert_eq!(Semver::parse_with("01.02.03", true).unwrap().to_string(), "1.2.3");
        assert_eq!(Semver::parse_with("v1.2-rc.1", true).unwrap().to_string(), "1.2.0-rc.1");
    }
}
