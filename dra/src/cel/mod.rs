//! CEL selectors in the DRA environment.
//!
//! STUB: the interface the allocator uses; the full implementation replaces
//! the bodies and keeps these signatures.

use crate::device::Device;

/// The longest selector expression the API accepts (`10 * 1024`).
pub const MAX_EXPRESSION_LEN: usize = 10 * 1024;
/// The API's runtime cost limit per evaluation.
pub const COST_LIMIT: u64 = 1_000_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CelError {
    #[error("selector is {len} bytes, longer than the limit of {limit}")]
    TooLong { len: usize, limit: usize },
    #[error("selector {expression:?} does not compile: {message}")]
    Compile { expression: String, message: String },
    #[error("selector {expression:?} exceeds the cost limit: {message}")]
    CostLimit { expression: String, message: String },
    #[error("selector {expression:?} failed on device {device:?}: {message}")]
    Eval {
        expression: String,
        device: String,
        message: String,
    },
}

/// A compiled selector.
#[derive(Debug)]
pub struct Selector {
    expression: String,
}

impl Selector {
    pub fn compile(expression: &str) -> Result<Selector, CelError> {
        if expression.len() > MAX_EXPRESSION_LEN {
            return Err(CelError::TooLong {
                len: expression.len(),
                limit: MAX_EXPRESSION_LEN,
            });
        }
        Ok(Selector {
            expression: expression.to_owned(),
        })
    }

    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// Whether `device`, published by `driver`, matches.
    pub fn matches(&self, driver: &str, device: &Device) -> Result<bool, CelError> {
        let _ = (driver, device);
        Ok(true)
    }
}

/// Compiles each distinct expression once (bounded; oldest entries are
/// dropped first).
#[derive(Debug, Default)]
pub struct SelectorCache {
    entries: std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<Selector>>>,
}

impl SelectorCache {
    pub fn get(&self, expression: &str) -> Result<std::sync::Arc<Selector>, CelError> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = entries.get(expression) {
            return Ok(s.clone());
        }
        let s = std::sync::Arc::new(Selector::compile(expression)?);
        entries.insert(expression.to_owned(), s.clone());
        Ok(s)
    }
}
