//! Kubernetes resource quantities (`k8s.io/apimachinery/pkg/api/resource`)
//! with their exact semantics: parsing, numeric equality across units,
//! ordering, arithmetic and canonical formatting.
//!
//! STUB: integer-only placeholder; the full implementation replaces it and
//! keeps this API.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// The suffix family a quantity is written in; canonical output keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// `Ki`, `Mi`, `Gi`, ... (powers of 1024).
    BinarySI,
    /// `k`, `M`, `G`, `m`, `n`, ... (powers of 1000), or none.
    DecimalSI,
    /// `e3`, `E6`, ...
    DecimalExponent,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid quantity {text:?}: {reason}")]
pub struct QuantityError {
    pub text: String,
    pub reason: String,
}

/// An exact quantity.
#[derive(Debug, Clone)]
pub struct Quantity {
    value: i128,
    format: Format,
}

impl Quantity {
    pub fn parse(text: &str) -> Result<Quantity, QuantityError> {
        text.parse()
    }

    /// A plain count (`"7"`), decimal format.
    pub fn from_i64(v: i64) -> Quantity {
        Quantity {
            value: v.into(),
            format: Format::DecimalSI,
        }
    }

    /// A byte count, binary format (`"80Gi"`).
    pub fn from_bytes(v: i64) -> Quantity {
        Quantity {
            value: v.into(),
            format: Format::BinarySI,
        }
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// The exact integer value, if it is one and fits in an i64.
    pub fn as_i64(&self) -> Option<i64> {
        i64::try_from(self.value).ok()
    }

    pub fn is_integer(&self) -> bool {
        true
    }

    pub fn is_zero(&self) -> bool {
        self.value == 0
    }

    /// -1, 0 or 1.
    pub fn sign(&self) -> i64 {
        self.value.signum() as i64
    }

    /// The nearest f64.
    pub fn as_f64(&self) -> f64 {
        self.value as f64
    }

    /// `self + other`, in `self`'s format; `None` on overflow.
    pub fn checked_add(&self, other: &Quantity) -> Option<Quantity> {
        Some(Quantity {
            value: self.value.checked_add(other.value)?,
            format: self.format,
        })
    }

    /// `self - other`, in `self`'s format; `None` on overflow.
    pub fn checked_sub(&self, other: &Quantity) -> Option<Quantity> {
        Some(Quantity {
            value: self.value.checked_sub(other.value)?,
            format: self.format,
        })
    }

    /// `self × n`; `None` on overflow.
    pub fn checked_mul(&self, n: i64) -> Option<Quantity> {
        Some(Quantity {
            value: self.value.checked_mul(n.into())?,
            format: self.format,
        })
    }

    /// The smallest integer k with `k × step ≥ self` (`step > 0`); `None`
    /// if step is not positive or the result does not fit.
    pub fn div_ceil(&self, step: &Quantity) -> Option<i64> {
        if step.value <= 0 {
            return None;
        }
        i64::try_from(self.value.div_euclid(step.value) + i128::from(self.value.rem_euclid(step.value) != 0)).ok()
    }
}

impl FromStr for Quantity {
    type Err = QuantityError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| QuantityError {
            text: text.to_owned(),
            reason: reason.to_owned(),
        };
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '-' || c == '+'))
            .unwrap_or(text.len());
        let (num, suffix) = text.split_at(split);
        let n: i128 = num.parse().map_err(|_| err("not a number"))?;
        let (mul, format) = match suffix {
            "" => (1, Format::DecimalSI),
            "k" => (1000, Format::DecimalSI),
            "M" => (1_000_000, Format::DecimalSI),
            "G" => (1_000_000_000, Format::DecimalSI),
            "Ki" => (1 << 10, Format::BinarySI),
            "Mi" => (1 << 20, Format::BinarySI),
            "Gi" => (1 << 30, Format::BinarySI),
            "Ti" => (1 << 40, Format::BinarySI),
            _ => return Err(err("unknown suffix")),
        };
        Ok(Quantity { value: n * mul, format })
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.value)
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Quantity {}
impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.value.cmp(&other.value)
    }
}
