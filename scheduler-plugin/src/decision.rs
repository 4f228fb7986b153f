//! Signing the decisions the extender records on a pod at bind, so that a
//! decision read back from the API is known to be this extender's own.
//!
//! Pod annotations can be written by anyone who may create or patch the
//! pod. The gang plan (`railyard.dev/gang-plan`) holds GPUs on other nodes
//! when it is rebuilt after a restart, so it is trusted only with a valid
//! `railyard.dev/decision-signature`: HMAC-SHA256, under a key only the
//! extender holds, over the pod's UID (assigned by the API server, so a
//! copied annotation does not verify on another pod), its node, and the
//! recorded annotations. The key comes from `--decision-key-file` (a Secret,
//! so every replica and every restart verifies the same records); without
//! one a random key is made at start, and plans recorded before a restart
//! are then ignored.

use std::fmt;
use std::path::Path;

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

/// Pod annotation recorded at bind: the signature of the decision.
pub const SIGNATURE_ANNOTATION: &str = "railyard.dev/decision-signature";

/// Fewest key bytes accepted: HMAC-SHA256's output size.
pub const MIN_KEY_BYTES: usize = 32;

/// What a signature covers: the pod and each decision annotation, in this
/// order (absent ones as empty).
#[derive(Debug, Clone, Copy)]
pub struct Decision<'a> {
    pub uid: &'a str,
    pub node: &'a str,
    pub gpus: &'a str,
    pub plan: &'a str,
    pub slot: &'a str,
}

impl Decision<'_> {
    /// Length-prefixed fields, so no two decisions share a message.
    fn message(&self) -> Vec<u8> {
        let fields = [self.uid, self.node, self.gpus, self.plan, self.slot];
        let mut m = Vec::with_capacity(fields.iter().map(|f| f.len() + 8).sum::<usize>() + 16);
        m.extend_from_slice(b"railyard.dev/decision/v1");
        for f in fields {
            m.extend_from_slice(&(f.len() as u64).to_le_bytes());
            m.extend_from_slice(f.as_bytes());
        }
        m
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("--decision-key-file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("--decision-key-file {path}: {len} bytes; at least {MIN_KEY_BYTES} are needed")]
    TooShort { path: String, len: usize },
    #[error("no random source for a decision key")]
    Random,
}

/// The extender's decision key.
#[derive(Clone)]
pub struct DecisionKey {
    /// `None`: no key could be made; nothing signs or verifies.
    key: Option<hmac::Key>,
}

impl fmt::Debug for DecisionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DecisionKey(..)")
    }
}

impl DecisionKey {
    pub fn from_bytes(bytes: &[u8]) -> DecisionKey {
        DecisionKey {
            key: Some(hmac::Key::new(hmac::HMAC_SHA256, bytes)),
        }
    }

    /// The key in a file (a mounted Secret), trailing newline excluded.
    pub fn from_file(path: &Path) -> Result<DecisionKey, KeyError> {
        let bytes = std::fs::read(path).map_err(|source| KeyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let trimmed = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
        if trimmed.len() < MIN_KEY_BYTES {
            return Err(KeyError::TooShort {
                path: path.display().to_string(),
                len: trimmed.len(),
            });
        }
        Ok(DecisionKey::from_bytes(trimmed))
    }

    /// A fresh random key (valid for this process only).
    pub fn random() -> Result<DecisionKey, KeyError> {
        let mut bytes = [0u8; 32];
        SystemRandom::new().fill(&mut bytes).map_err(|_| KeyError::Random)?;
        Ok(DecisionKey::from_bytes(&bytes))
    }

    /// A random key, or where the system has no random source (never seen
    /// on Linux) no key at all: recorded plans are then never trusted,
    /// rather than trusted under a guessable key.
    pub fn random_or_unusable() -> DecisionKey {
        DecisionKey::random().unwrap_or(DecisionKey { key: None })
    }

    /// The signature annotation's value: the tag in lowercase hex.
    pub fn sign(&self, d: &Decision<'_>) -> String {
        let Some(key) = &self.key else { return String::new() };
        let tag = hmac::sign(key, &d.message());
        tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// True when `signature` is this key's for `d` (constant time).
    pub fn verify(&self, d: &Decision<'_>, signature: &str) -> bool {
        let (Some(key), Some(tag)) = (&self.key, from_hex(signature)) else {
            return false;
        };
        hmac::verify(key, &d.message(), &tag).is_ok()
    }
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d<'a>(uid: &'a str, plan: &'a str) -> Decision<'a> {
        Decision {
            uid,
            node: "dgx0",
            gpus: "0,1",
            plan,
            slot: "0",
        }
    }

    #[test]
    fn a_signature_verifies_only_its_own_decision_and_key() {
        let k = DecisionKey::from_bytes(&[7; 32]);
        let s = k.sign(&d("uid-a", "{}"));
        assert_eq!(s.len(), 64);
        assert!(k.verify(&d("uid-a", "{}"), &s));
        // Another pod (a copied annotation), another plan, another key.
        assert!(!k.verify(&d("uid-b", "{}"), &s));
        assert!(!k.verify(&d("uid-a", "{\"x\":1}"), &s));
        assert!(!DecisionKey::from_bytes(&[8; 32]).verify(&d("uid-a", "{}"), &s));
        // Field boundaries are part of the message.
        let shifted = Decision {
            uid: "uid-adgx0",
            node: "",
            ..d("", "{}")
        };
        assert!(!k.verify(&shifted, &s));
        for bad in ["", "zz", &s[..63], &format!("{s}0")] {
            assert!(!k.verify(&d("uid-a", "{}"), bad), "{bad:?}");
        }
        let none = DecisionKey { key: None };
        assert!(!none.verify(&d("uid-a", "{}"), &none.sign(&d("uid-a", "{}"))));
    }

    #[test]
    fn key_files_must_hold_enough_bytes() {
        let dir = std::env::temp_dir().join(format!("railyard-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let short = dir.join("short");
        std::fs::write(&short, b"secret\n").expect("write");
        let e = DecisionKey::from_file(&short).unwrap_err().to_string();
        assert!(e.contains("6 bytes") && e.contains("at least 32"), "{e}");
        let good = dir.join("good");
        std::fs::write(&good, [b'k'; 40]).expect("write");
        let k = DecisionKey::from_file(&good).expect("key");
        let same = DecisionKey::from_bytes(&[b'k'; 40]);
        assert!(same.verify(&d("u", "p"), &k.sign(&d("u", "p"))));
        let missing = DecisionKey::from_file(&dir.join("nope")).unwrap_err().to_string();
        assert!(missing.contains("nope"), "{missing}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
