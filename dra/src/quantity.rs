//! Kubernetes resource quantities (`k8s.io/apimachinery/pkg/api/resource`)
//! with their exact semantics: parsing, numeric equality across units,
//! ordering, arithmetic and canonical formatting.
//!
//! A value is `mantissa × 10^scale` with an `i128` mantissa, never a float.
//! Like upstream `ParseQuantity`:
//! - precision below nano (10⁻⁹) is rounded away from zero to the next nano
//!   ("0.0000000001" is "1n", "3.001n" is "4n"), so every scale is ≥ -9;
//! - a binarySI quantity is capped, silently, at 2⁶³-1 in magnitude ("9Ei");
//! - a binarySI quantity strictly between -1 and 1 switches to DecimalSI.
//!
//! Where upstream is unbounded (decimal quantities use big decimals there)
//! this type is bounded: a mantissa beyond ±(2¹²⁷-1) after removing trailing
//! zeros, or a base-10 exponent beyond `i32`, is an error, never a wrap or a
//! panic. Deliberate differences from upstream's scanner: a number needs at
//! least one digit (upstream reads "+", ".", "Gi" and "m" as zero), and an
//! exponent outside `i32` is an error (upstream wraps it).

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
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
///
/// Invariant: the mantissa has no trailing decimal zeros (zero is `0 × 10⁰`),
/// is never `i128::MIN`, and the scale is ≥ -9. So equal values have equal
/// fields, which is what `Hash` relies on; the format takes no part in
/// equality, ordering or hashing.
#[derive(Debug, Clone)]
pub struct Quantity {
    mantissa: i128,
    scale: i32,
    format: Format,
}

/// The largest magnitude a parsed binarySI quantity keeps (upstream's cap).
const BINARY_CAP: i128 = i64::MAX as i128;
/// Scale of the finest unit kept.
const NANO: i64 = -9;

fn pow10(n: i64) -> Option<u128> {
    u32::try_from(n).ok().and_then(|n| 10u128.checked_pow(n))
}

/// `m × 10^s` with trailing zeros moved into the scale; `None` if the scale
/// leaves `i32` or the mantissa is `i128::MIN`.
fn normalise(mut m: i128, mut s: i64) -> Option<(i128, i32)> {
    if m == 0 {
        return Some((0, 0));
    }
    if m == i128::MIN {
        return None;
    }
    while m % 10 == 0 {
        m /= 10;
        s += 1;
    }
    Some((m, i32::try_from(s).ok()?))
}

/// `m × 10^(from - to)` for `from ≥ to`.
fn align(m: i128, from: i32, to: i32) -> Option<i128> {
    let p = i128::try_from(pow10(i64::from(from) - i64::from(to))?).ok()?;
    m.checked_mul(p)
}

/// Compares `a × 10^sa` with `b × 10^sb` (magnitudes, both non-zero).
fn cmp_magnitude(a: u128, sa: i32, b: u128, sb: i32) -> Ordering {
    if sa >= sb {
        // A mantissa that overflows once aligned exceeds every u128.
        match pow10(i64::from(sa) - i64::from(sb)).and_then(|p| a.checked_mul(p)) {
            Some(x) => x.cmp(&b),
            None => Ordering::Greater,
        }
    } else {
        cmp_magnitude(b, sb, a, sa).reverse()
    }
}

/// `floor(a × 10^sa / (b × 10^sb))` for magnitudes (b > 0), and whether the
/// division was exact; `None` once the quotient exceeds `limit`. Long
/// division one decimal digit at a time so nothing needs more than u128.
fn div_magnitude(a: u128, sa: i32, b: u128, sb: i32, limit: u128) -> Option<(u128, bool)> {
    let d = i64::from(sa) - i64::from(sb);
    if d < 0 {
        // Divisor b × 10^-d; if that overflows it exceeds a, so q = 0.
        return match pow10(-d).and_then(|p| b.checked_mul(p)) {
            Some(div) => Some((a / div, a.is_multiple_of(div))),
            None => Some((0, a == 0)),
        };
    }
    let (mut q, mut r) = (a / b, a % b);
    if q > limit {
        return None;
    }
    // Each step multiplies q by ten, so this ends within ~80 steps once q
    // is non-zero or r is zero, whatever d is.
    let mut left = d;
    while left > 0 && (q != 0 || r != 0) {
        left -= 1;
        // digit = (10r) / b and r = (10r) % b without computing 10r, which
        // may overflow: r < b ≤ 2^127 so r + b never does.
        let (mut digit, mut acc) = (0u128, 0u128);
        for _ in 0..10 {
            if acc >= b - r {
                acc -= b - r;
                digit += 1;
            } else {
                acc += r;
            }
        }
        r = acc;
        q = q.checked_mul(10)?.checked_add(digit)?;
        if q > limit {
            return None;
        }
    }
    Some((q, r == 0))
}

/// A little-endian base-2³² natural number, only as big as binarySI parsing
/// needs (≤ ~90 decimal digits): exact `N × 2^e / 10^f` without floats.
struct Big(Vec<u32>);

impl Big {
    fn mul_add(&mut self, m: u32, add: u32) {
        let mut carry = u64::from(add);
        for limb in &mut self.0 {
            let v = u64::from(*limb) * u64::from(m) + carry;
            *limb = v as u32; // low half; the high half carries
            carry = v >> 32;
        }
        if carry != 0 {
            self.0.push(carry as u32);
        }
    }

    /// Divides in place, returning the remainder.
    fn div_rem(&mut self, d: u32) -> u32 {
        let mut rem = 0u64;
        for limb in self.0.iter_mut().rev() {
            let v = (rem << 32) | u64::from(*limb);
            *limb = (v / u64::from(d)) as u32; // < 2³² as rem < d
            rem = v % u64::from(d);
        }
        rem as u32
    }

    fn to_u128(&self) -> Option<u128> {
        let mut v = 0u128;
        for &limb in self.0.iter().rev() {
            if v >> 96 != 0 {
                return None;
            }
            v = (v << 32) | u128::from(limb);
        }
        Some(v)
    }
}

/// The value of a binarySI number `int.frac × 2^e` in nano units, rounded up,
/// or `None` when it is at least 2⁶³ (and so capped).
fn binary_nanos(int: &str, frac: &str, e: u32) -> Option<u128> {
    if int.len() > 19 {
        return None;
    }
    // Digits below 10^-(e+9) can only matter as "something non-zero is
    // there": every nano boundary k/(2^e·10⁹) is a decimal with at most e+9
    // fraction digits, so a truncated value at or above one stays so.
    let keep = e as usize + 9;
    let sticky = frac.len() > keep; // frac has no trailing zeros
    let frac = &frac[..frac.len().min(keep)];
    let mut n = Big(Vec::new());
    for b in int.bytes().chain(frac.bytes()) {
        n.mul_add(10, u32::from(b - b'0'));
    }
    let mut left = e;
    while left > 0 {
        let k = left.min(31);
        n.mul_add(1 << k, 0);
        left -= k;
    }
    // × 10⁹ / 10^f, rounding up (nested ceilings compose).
    let f = frac.len() as i64;
    let mut inexact = false;
    if f <= 9 {
        n.mul_add(10u32.pow((9 - f) as u32), 0);
    } else {
        let mut left = f - 9;
        while left > 0 {
            let k = left.min(9);
            if n.div_rem(10u32.pow(k as u32)) != 0 {
                inexact = true;
                n.mul_add(1, 1);
            }
            left -= k;
        }
    }
    if sticky && !inexact {
        n.mul_add(1, 1);
    }
    n.to_u128().filter(|&v| v <= BINARY_CAP as u128 * 1_000_000_000)
}

/// The value of decimal digits `digits × 10^scale`, rounded up to nano, as a
/// magnitude and scale; `None` if it does not fit.
fn decimal_value(digits: &str, scale: i64) -> Option<(u128, i64)> {
    let digits = digits.trim_start_matches('0');
    let (kept, sticky, scale) = if scale < NANO {
        let drop = NANO - scale; // > 0
        let cut = digits.len().saturating_sub(usize::try_from(drop).unwrap_or(usize::MAX));
        let (kept, dropped) = digits.split_at(cut);
        (kept, dropped.bytes().any(|b| b != b'0'), NANO)
    } else {
        (digits, false, scale)
    };
    let trimmed = kept.trim_end_matches('0');
    let scale = scale + (kept.len() - trimmed.len()) as i64;
    let mut m = 0u128;
    for b in trimmed.bytes() {
        m = m.checked_mul(10)?.checked_add(u128::from(b - b'0'))?;
    }
    Some((m.checked_add(u128::from(sticky))?, scale))
}

impl Quantity {
    pub fn parse(text: &str) -> Result<Quantity, QuantityError> {
        text.parse()
    }

    /// A plain count (`"7"`), decimal format.
    pub fn from_i64(v: i64) -> Quantity {
        Quantity::exact(v.into(), 0, Format::DecimalSI)
    }

    /// A byte count, binary format (`"80Gi"`).
    pub fn from_bytes(v: i64) -> Quantity {
        Quantity::exact(v.into(), 0, Format::BinarySI)
    }

    /// For values that always normalise (|m| ≤ 2⁶³, scale 0).
    fn exact(m: i128, s: i64, format: Format) -> Quantity {
        let (mantissa, scale) = normalise(m, s).unwrap_or((0, 0));
        Quantity {
            mantissa,
            scale,
            format,
        }
    }

    fn build(m: i128, s: i64, format: Format) -> Option<Quantity> {
        let (mantissa, scale) = normalise(m, s)?;
        Some(Quantity {
            mantissa,
            scale,
            format,
        })
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// The same value, written in `format`.
    pub fn with_format(&self, format: Format) -> Quantity {
        Quantity { format, ..self.clone() }
    }

    /// The exact value as `(mantissa, scale)`: `mantissa × 10^scale`, with
    /// no trailing zeros in the mantissa (zero is `(0, 0)`).
    pub fn mantissa_scale(&self) -> (i128, i32) {
        (self.mantissa, self.scale)
    }

    /// The exact integer value, if it is one and fits in an i64. This is what
    /// CEL's `isInteger()`/`asInteger()` need, except that upstream's
    /// `AsInt64` also fails for integral values it happens to store with a
    /// fraction scale or as a big decimal (e.g. "1000m", "1.5Gi").
    pub fn as_i64(&self) -> Option<i64> {
        if self.scale < 0 {
            return None;
        }
        let p = i128::try_from(pow10(i64::from(self.scale))?).ok()?;
        i64::try_from(self.mantissa.checked_mul(p)?).ok()
    }

    /// Whether the value is a whole number (of any size).
    pub fn is_integer(&self) -> bool {
        self.scale >= 0
    }

    pub fn is_zero(&self) -> bool {
        self.mantissa == 0
    }

    /// -1, 0 or 1.
    pub fn sign(&self) -> i64 {
        self.mantissa.signum() as i64
    }

    /// The nearest f64 (±infinity beyond its range).
    pub fn as_f64(&self) -> f64 {
        // Rust's float parsing rounds correctly; multiplying by a power of
        // ten would not.
        format!("{}e{}", self.mantissa, self.scale).parse().unwrap_or(f64::NAN)
    }

    /// `ceil(self / 10^scale)` rounded away from zero, as upstream's
    /// `ScaledValue`; `None` where upstream would silently overflow.
    pub fn scaled_value(&self, scale: i32) -> Option<i64> {
        let unit = Quantity {
            mantissa: 1,
            scale,
            format: Format::DecimalSI,
        };
        let (q, exact) = div_magnitude(self.mantissa.unsigned_abs(), self.scale, 1, unit.scale, 1 << 63)?;
        let q = i128::try_from(q + u128::from(!exact)).ok()?;
        i64::try_from(if self.mantissa < 0 { -q } else { q }).ok()
    }

    /// The value rounded away from zero to an integer (upstream `Value`).
    pub fn value(&self) -> Option<i64> {
        self.scaled_value(0)
    }

    /// The value in thousandths, rounded away from zero (`MilliValue`).
    pub fn milli_value(&self) -> Option<i64> {
        self.scaled_value(-3)
    }

    /// -1, 0 or 1 as CEL's `compareTo`.
    pub fn compare_to(&self, other: &Quantity) -> i64 {
        match self.cmp(other) {
            Ordering::Less => -1,
            Ordering::Equal => 0,
            Ordering::Greater => 1,
        }
    }

    /// `self + other`, in `self`'s format, except that a zero `self` takes
    /// `other`'s format as upstream `Add` does; `None` on overflow.
    pub fn checked_add(&self, other: &Quantity) -> Option<Quantity> {
        let format = if self.is_zero() { other.format } else { self.format };
        if other.is_zero() {
            return Some(Quantity { format, ..self.clone() });
        }
        if self.is_zero() {
            return Some(Quantity {
                format,
                ..other.clone()
            });
        }
        let s = self.scale.min(other.scale);
        let sum = align(self.mantissa, self.scale, s)?.checked_add(align(other.mantissa, other.scale, s)?)?;
        Quantity::build(sum, s.into(), format)
    }

    /// `self - other`, in `self`'s format (a zero `self` takes `other`'s, as
    /// upstream `Sub`); `None` on overflow.
    pub fn checked_sub(&self, other: &Quantity) -> Option<Quantity> {
        self.checked_add(&other.checked_neg()?)
    }

    /// `-self`, same format.
    pub fn checked_neg(&self) -> Option<Quantity> {
        // Never fails (the mantissa is never i128::MIN); Option for symmetry.
        Some(Quantity {
            mantissa: self.mantissa.checked_neg()?,
            ..self.clone()
        })
    }

    /// `self + n` as CEL's `add(int)`: `n` is a DecimalExponent quantity, so
    /// a zero `self` yields that format (`quantity("0").add(5000)` is "5e3").
    pub fn add_int(&self, n: i64) -> Option<Quantity> {
        self.checked_add(&Quantity::from_i64(n).with_format(Format::DecimalExponent))
    }

    /// `self - n` as CEL's `sub(int)` (see [`Quantity::add_int`]).
    pub fn sub_int(&self, n: i64) -> Option<Quantity> {
        self.checked_sub(&Quantity::from_i64(n).with_format(Format::DecimalExponent))
    }

    /// `self × n`; `None` on overflow.
    pub fn checked_mul(&self, n: i64) -> Option<Quantity> {
        Quantity::build(self.mantissa.checked_mul(n.into())?, self.scale.into(), self.format)
    }

    /// The smallest integer k with `k × step ≥ self` (`step > 0`); `None`
    /// if step is not positive or the result does not fit. Exact for
    /// fractional values too.
    pub fn div_ceil(&self, step: &Quantity) -> Option<i64> {
        if step.mantissa <= 0 {
            return None;
        }
        if self.is_zero() {
            return Some(0);
        }
        let limit = 1u128 << 63; // |k| ≤ 2⁶³ covers i64::MIN
        let (q, exact) = div_magnitude(
            self.mantissa.unsigned_abs(),
            self.scale,
            step.mantissa.unsigned_abs(),
            step.scale,
            limit,
        )?;
        let q = i128::try_from(q).ok()?;
        // ceil: up for a positive inexact quotient; truncation for negative.
        let k = if self.mantissa > 0 { q + i128::from(!exact) } else { -q };
        i64::try_from(k).ok()
    }

    /// The smallest multiple of `step` (`step > 0`) that is ≥ `self`, in
    /// `self`'s format; `None` if step is not positive or on overflow.
    pub fn round_up_to(&self, step: &Quantity) -> Option<Quantity> {
        let k = self.div_ceil(step)?;
        Some(step.checked_mul(k)?.with_format(self.format))
    }

    fn parse_text(text: &str) -> Result<Quantity, String> {
        let bytes = text.as_bytes();
        let mut pos = 0;
        let negative = match bytes.first() {
            Some(b'-') => {
                pos = 1;
                true
            }
            Some(b'+') => {
                pos = 1;
                false
            }
            Some(_) => false,
            None => return Err("empty string".into()),
        };
        let digits_from = |from: usize| from + bytes[from..].iter().take_while(|b| b.is_ascii_digit()).count();
        let int_end = digits_from(pos);
        let int = &text[pos..int_end];
        let (frac, num_end) = if bytes.get(int_end) == Some(&b'.') {
            let end = digits_from(int_end + 1);
            (&text[int_end + 1..end], end)
        } else {
            ("", int_end)
        };
        if int.is_empty() && frac.is_empty() {
            return Err("expected a number: optional sign, digits, optional '.' and digits".into());
        }
        let suffix = &text[num_end..];
        let (base, exponent, mut format) = match suffix {
            "" => (10, 0, Format::DecimalSI),
            "n" => (10, -9, Format::DecimalSI),
            "u" => (10, -6, Format::DecimalSI),
            "m" => (10, -3, Format::DecimalSI),
            "k" => (10, 3, Format::DecimalSI),
            "M" => (10, 6, Format::DecimalSI),
            "G" => (10, 9, Format::DecimalSI),
            "T" => (10, 12, Format::DecimalSI),
            "P" => (10, 15, Format::DecimalSI),
            "E" => (10, 18, Format::DecimalSI),
            "Ki" => (2, 10, Format::BinarySI),
            "Mi" => (2, 20, Format::BinarySI),
            "Gi" => (2, 30, Format::BinarySI),
            "Ti" => (2, 40, Format::BinarySI),
            "Pi" => (2, 50, Format::BinarySI),
            "Ei" => (2, 60, Format::BinarySI),
            s if s.starts_with(['e', 'E']) => {
                let exp = &s[1..];
                let body = exp.strip_prefix(['+', '-']).unwrap_or(exp);
                if body.is_empty() || !body.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(format!(
                        "unknown suffix {s:?}: an exponent is e or E and a signed integer"
                    ));
                }
                let e: i32 = exp.parse().map_err(|_| format!("exponent {exp} is out of range"))?;
                (10, e, Format::DecimalExponent)
            }
            s => {
                return Err(format!(
                    "unknown suffix {s:?}: expected one of Ki Mi Gi Ti Pi Ei, n u m k M G T P E, or e/E and an exponent"
                ));
            }
        };
        let (mantissa, scale) = if base == 2 {
            let int = int.trim_start_matches('0');
            let frac = frac.trim_end_matches('0');
            let e = exponent.unsigned_abs();
            let (m, s) = match binary_nanos(int, frac, e) {
                Some(nanos) => (nanos as i128, NANO), // ≤ 2⁶³·10⁹ fits
                None => (BINARY_CAP, 0),
            };
            if m != 0 && cmp_magnitude(m as u128, s as i32, 1, 0) == Ordering::Less {
                // Upstream writes a fraction of one in DecimalSI.
                format = Format::DecimalSI;
            }
            (m, s)
        } else {
            let digits = format!("{int}{frac}");
            let scale = i64::from(exponent) - frac.len() as i64;
            let (m, s) = decimal_value(&digits, scale).ok_or("too many significant digits to represent exactly")?;
            (
                i128::try_from(m).map_err(|_| "too many significant digits to represent exactly")?,
                s,
            )
        };
        let mantissa = if negative { -mantissa } else { mantissa };
        Quantity::build(mantissa, scale, format).ok_or_else(|| "exponent out of range".into())
    }

    /// Upstream's canonical form: number and suffix (`CanonicalizeBytes`).
    fn canonical(&self) -> (String, String) {
        if self.is_zero() {
            return ("0".into(), String::new());
        }
        let mut format = self.format;
        if format == Format::BinarySI {
            // Small or fractional values, and (unlike upstream, which
            // needs big integers) integers beyond i128, print in DecimalSI.
            let small = cmp_magnitude(self.mantissa.unsigned_abs(), self.scale, 1024, 0) == Ordering::Less;
            match self.as_i128().filter(|_| !small) {
                Some(mut v) => {
                    const SUFFIXES: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
                    let mut k = 0;
                    // Upstream would go past Ei and print no suffix (a
                    // corrupt value); stop at Ei.
                    while k < 6 && v % 1024 == 0 {
                        v /= 1024;
                        k += 1;
                    }
                    return (v.to_string(), SUFFIXES[k].into());
                }
                None => format = Format::DecimalSI,
            }
        }
        // The exponent goes down to a multiple of three; the mantissa takes
        // the difference as zeros.
        let s = i64::from(self.scale);
        let e3 = s.div_euclid(3) * 3;
        let number = format!("{}{}", self.mantissa, "0".repeat((s - e3) as usize));
        let si = match e3 {
            -9 => Some("n"),
            -6 => Some("u"),
            -3 => Some("m"),
            0 => Some(""),
            3 => Some("k"),
            6 => Some("M"),
            9 => Some("G"),
            12 => Some("T"),
            15 => Some("P"),
            18 => Some("E"),
            _ => None,
        };
        let suffix = match (format, si) {
            (Format::DecimalSI, Some(si)) => si.to_owned(),
            // No SI suffix beyond E: exponent notation, as upstream now does.
            _ if e3 == 0 => String::new(),
            _ => format!("e{e3}"),
        };
        (number, suffix)
    }

    /// The exact integer value if it is one and fits in an i128.
    fn as_i128(&self) -> Option<i128> {
        if self.scale < 0 {
            return None;
        }
        self.mantissa
            .checked_mul(i128::try_from(pow10(i64::from(self.scale))?).ok()?)
    }
}

impl FromStr for Quantity {
    type Err = QuantityError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Quantity::parse_text(text).map_err(|reason| QuantityError {
            text: text.to_owned(),
            reason,
        })
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (number, suffix) = self.canonical();
        write!(f, "{number}{suffix}")
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
    /// Numeric, whatever the units: `200M == 0.2G`, `1Ki == 1024`.
    fn cmp(&self, other: &Self) -> Ordering {
        let (a, b) = (self.mantissa.signum(), other.mantissa.signum());
        if a != b || a == 0 {
            return a.cmp(&b);
        }
        let mag = cmp_magnitude(
            self.mantissa.unsigned_abs(),
            self.scale,
            other.mantissa.unsigned_abs(),
            other.scale,
        );
        if a < 0 { mag.reverse() } else { mag }
    }
}
impl Hash for Quantity {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Normalised fields are equal exactly when values are.
        self.mantissa.hash(state);
        self.scale.hash(state);
    }
}
