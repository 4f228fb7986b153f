//! Kubernetes resource quantities (`k8s.io/apimachinery/pkg/api/resource`)
//! with their exact semantics: parsing, numeric equality across units,
//! ordering, arithmetic and canonical formatting.
//!

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

/// An exact quantity, held in nano-units (10^-9), the finest precision
/// Kubernetes keeps: finer input is rounded up, as upstream does.
#[derive(Debug, Clone)]
pub struct Quantity {
    nanos: i128,
    format: Format,
}

const NANO: i128 = 1_000_000_000;
/// Upstream's largest representable magnitude is about 9.2e18 (int64 of
/// the value's unit); anything beyond is refused rather than wrapped.
const MAX_NANOS: i128 = 9_223_372_036_854_775_807 * NANO;

impl Quantity {
    pub fn parse(text: &str) -> Result<Quantity, QuantityError> {
        text.parse()
    }

    /// A plain count (`"7"`), decimal format.
    pub fn from_i64(v: i64) -> Quantity {
        Quantity {
            nanos: i128::from(v) * NANO,
            format: Format::DecimalSI,
        }
    }

    /// A byte count, binary format (`"80Gi"`).
    pub fn from_bytes(v: i64) -> Quantity {
        Quantity {
            nanos: i128::from(v) * NANO,
            format: Format::BinarySI,
        }
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// The exact integer value, if it is one and fits in an i64.
    pub fn as_i64(&self) -> Option<i64> {
        if self.nanos % NANO != 0 {
            return None;
        }
        i64::try_from(self.nanos / NANO).ok()
    }

    pub fn is_integer(&self) -> bool {
        self.nanos % NANO == 0
    }

    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    /// -1, 0 or 1.
    pub fn sign(&self) -> i64 {
        self.nanos.signum() as i64
    }

    /// The nearest f64.
    pub fn as_f64(&self) -> f64 {
        self.nanos as f64 / NANO as f64
    }

    fn with(&self, nanos: Option<i128>) -> Option<Quantity> {
        nanos.filter(|n| n.abs() <= MAX_NANOS).map(|nanos| Quantity {
            nanos,
            format: self.format,
        })
    }

    /// `self + other`, in `self`'s format; `None` on overflow.
    pub fn checked_add(&self, other: &Quantity) -> Option<Quantity> {
        self.with(self.nanos.checked_add(other.nanos))
    }

    /// `self - other`, in `self`'s format; `None` on overflow.
    pub fn checked_sub(&self, other: &Quantity) -> Option<Quantity> {
        self.with(self.nanos.checked_sub(other.nanos))
    }

    /// `self × n`; `None` on overflow.
    pub fn checked_mul(&self, n: i64) -> Option<Quantity> {
        self.with(self.nanos.checked_mul(n.into()))
    }

    /// The smallest integer k with `k × step ≥ self` (`step > 0`); `None`
    /// if step is not positive or the result does not fit.
    pub fn div_ceil(&self, step: &Quantity) -> Option<i64> {
        if step.nanos <= 0 {
            return None;
        }
        let k = self.nanos.div_euclid(step.nanos) + i128::from(self.nanos.rem_euclid(step.nanos) != 0);
        i64::try_from(k).ok()
    }
}

/// `(multiplier numerator, power of ten, format)` of a suffix.
fn suffix(s: &str) -> Option<(i128, i32, Format)> {
    let bin = |k: u32| Some((1i128 << (10 * k), 0, Format::BinarySI));
    let dec = |e: i32| Some((1, e, Format::DecimalSI));
    match s {
        "Ki" => bin(1),
        "Mi" => bin(2),
        "Gi" => bin(3),
        "Ti" => bin(4),
        "Pi" => bin(5),
        "Ei" => bin(6),
        "n" => dec(-9),
        "u" => dec(-6),
        "m" => dec(-3),
        "" => dec(0),
        "k" => dec(3),
        "M" => dec(6),
        "G" => dec(9),
        "T" => dec(12),
        "P" => dec(15),
        "E" => dec(18),
        _ => {
            let exp = s.strip_prefix(['e', 'E'])?;
            let e: i32 = exp.parse().ok()?;
            (-9..=18).contains(&e).then_some((1, e, Format::DecimalExponent))
        }
    }
}

impl FromStr for Quantity {
    type Err = QuantityError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| QuantityError {
            text: text.to_owned(),
            reason: reason.to_owned(),
        };
        if text.len() > 64 {
            return Err(err("longer than 64 characters"));
        }
        let (negative, body) = match text.as_bytes().first() {
            Some(b'-') => (true, &text[1..]),
            Some(b'+') => (false, &text[1..]),
            _ => (false, text),
        };
        let num_end = body
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(body.len());
        let (num, suf) = body.split_at(num_end);
        let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(err("no digits"));
        }
        if frac_part.contains('.') {
            return Err(err("more than one decimal point"));
        }
        let (mul, exp, format) = suffix(suf).ok_or_else(|| err("unknown suffix (expected Ki..Ei, n..E, or e<int>)"))?;
        // The digits as an integer and its power of ten.
        let digits: String = format!("{int_part}{frac_part}").trim_start_matches('0').to_owned();
        if digits.len() > 30 {
            return Err(err("too many digits"));
        }
        let mantissa: i128 = if digits.is_empty() {
            0
        } else {
            digits.parse().map_err(|_| err("not a number"))?
        };
        let scale = exp - frac_part.len() as i32 + 9; // power of ten of one mantissa unit, in nanos
        let big = || err("too large");
        let nanos = if scale >= 0 {
            let p = 10i128.checked_pow(scale as u32).ok_or_else(big)?;
            mantissa
                .checked_mul(p)
                .and_then(|v| v.checked_mul(mul))
                .ok_or_else(big)?
        } else {
            // Finer than a nano-unit: round up, as upstream does.
            let p = 10i128.checked_pow((-scale) as u32).ok_or_else(big)?;
            let v = mantissa.checked_mul(mul).ok_or_else(big)?;
            v / p + i128::from(v % p != 0)
        };
        if nanos > MAX_NANOS {
            return Err(big());
        }
        Ok(Quantity {
            nanos: if negative { -nanos } else { nanos },
            format,
        })
    }
}

impl fmt::Display for Quantity {
    /// Canonical form: the largest suffix of the quantity's format that
    /// keeps the number an integer (`1536Mi`, `1500m`, `2G`, `0`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.nanos;
        if n == 0 {
            return f.write_str("0");
        }
        if n % NANO == 0 {
            let v = n / NANO;
            if self.format == Format::BinarySI {
                for (k, s) in [(6, "Ei"), (5, "Pi"), (4, "Ti"), (3, "Gi"), (2, "Mi"), (1, "Ki")] {
                    let m = 1i128 << (10 * k);
                    if v % m == 0 {
                        return write!(f, "{}{s}", v / m);
                    }
                }
                return write!(f, "{v}");
            }
            for (e, s) in [(18, "E"), (15, "P"), (12, "T"), (9, "G"), (6, "M"), (3, "k")] {
                let m = 10i128.pow(e);
                if v % m == 0 {
                    return if self.format == Format::DecimalExponent {
                        write!(f, "{}e{e}", v / m)
                    } else {
                        write!(f, "{}{s}", v / m)
                    };
                }
            }
            return write!(f, "{v}");
        }
        for (d, s) in [(1_000_000, "m"), (1_000, "u"), (1, "n")] {
            if n % d == 0 {
                return write!(f, "{}{s}", n / d);
            }
        }
        write!(f, "{n}n")
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
        self.nanos.cmp(&other.nanos)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap()
    }

    #[test]
    fn equality_is_numeric_across_units() {
        assert_eq!(q("200M"), q("0.2G"));
        assert_eq!(q("1Ki"), q("1024"));
        assert_eq!(q("1000m"), q("1"));
        assert_eq!(q("1e3"), q("1k"));
        assert_eq!(q("1.5Gi").as_i64(), Some(1_610_612_736));
        assert!(q("1Gi") > q("1G"));
        assert!(q("999m") < q("1"));
        assert!(q("-1") < q("0"));
    }

    #[test]
    fn malformed_input_names_the_text() {
        for bad in [
            "",
            "Gi",
            "1 Gi",
            "1KI",
            "1.2.3",
            "abc",
            "1Gx",
            "1e40",
            "99999999999999999999E",
        ] {
            let e = Quantity::parse(bad).unwrap_err();
            assert_eq!(e.text, bad);
            assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn canonical_form_keeps_the_format_family() {
        for (input, canonical) in [
            ("1.5Gi", "1536Mi"),
            ("1000m", "1"),
            ("0.5", "500m"),
            ("100M", "100M"),
            ("1e3", "1e3"),
            ("1024", "1024"),
            ("2048Ki", "2Mi"),
            ("0", "0"),
            ("-1.5", "-1500m"),
            ("0.0000000001", "1n"),
        ] {
            assert_eq!(q(input).to_string(), canonical, "{input}");
            assert_eq!(q(&q(input).to_string()), q(input));
        }
    }

    #[test]
    fn arithmetic_and_rounding() {
        assert_eq!(q("1Gi").checked_add(&q("512Mi")).unwrap(), q("1.5Gi"));
        assert_eq!(q("1").checked_sub(&q("250m")).unwrap().to_string(), "750m");
        assert_eq!(q("10Gi").div_ceil(&q("3Gi")), Some(4));
        assert_eq!(q("1.5").div_ceil(&q("500m")), Some(3));
        assert_eq!(q("1").div_ceil(&q("0")), None);
        assert!(q("8E").checked_add(&q("8E")).is_none());
        assert!(q("1.5").as_i64().is_none() && !q("1.5").is_integer());
    }
}
