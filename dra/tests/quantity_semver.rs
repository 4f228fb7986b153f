//! Quantity and semver semantics against upstream's own expectations
//! (apimachinery's quantity_test.go, semver.org's examples).

use proptest::prelude::*;
use railyard_dra::quantity::{Format, Quantity};
use railyard_dra::semver::Semver;
use std::collections::HashSet;

fn q(s: &str) -> Quantity {
    Quantity::parse(s).unwrap_or_else(|e| panic!("{e}"))
}

fn v(s: &str) -> Semver {
    Semver::parse(s).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn equality_across_units() {
    for (a, b) in [
        ("200M", "0.2G"),
        ("1Ki", "1024"),
        ("1000m", "1"),
        ("1e3", "1k"),
        ("1.5Gi", "1610612736"),
        ("1Mi", "1024Ki"),
        ("0.5", "500m"),
        ("1E", "1e18"),
        ("0", "0Gi"),
        ("-0", "0n"),
        ("10000T", "1e16"),
        ("1.", "1"),
        (".5", "0.5"),
        ("+1", "1"),
    ] {
        assert_eq!(q(a), q(b), "{a} == {b}");
        assert_eq!(q(a).compare_to(&q(b)), 0);
        let set: HashSet<Quantity> = [q(a), q(b)].into_iter().collect();
        assert_eq!(set.len(), 1, "hash of {a} and {b}");
    }
    assert_eq!(q("1.5Gi").as_i64(), Some(1_610_612_736));
    assert_ne!(q("1k"), q("1Ki"));
}

#[test]
fn comparisons() {
    // From upstream's TestQuantityCmp and beyond.
    let chain = [
        "-1E", "-1Gi", "-1G", "-1.5", "-1", "-1n", "0", "1n", "2n", "1u", "1m", "50m", "100m", "1", "1001m", "1k",
        "1Ki", "1M", "1Mi", "1G", "1Gi", "100Gi", "10000T", "1E", "9Ei", "1e19", "1e30",
    ];
    for w in chain.windows(2) {
        assert!(q(w[0]) < q(w[1]), "{} < {}", w[0], w[1]);
        assert_eq!(q(w[0]).compare_to(&q(w[1])), -1);
        assert_eq!(q(w[1]).compare_to(&q(w[0])), 1);
    }
    for a in chain {
        for b in chain {
            assert_eq!(
                q(a).cmp(&q(b)),
                q(a).as_f64().partial_cmp(&q(b).as_f64()).unwrap(),
                "{a} vs {b}"
            );
        }
    }
    // Scales far apart must not overflow.
    assert!(q("1e2000000000") > q("99999999999999999999999999999999999999"));
    assert!(q("-1e2000000000") < q("-1n"));
}

#[test]
fn malformed_input_names_the_text() {
    for bad in [
        "",
        " ",
        " 1",
        "1 ",
        "1.2.3",
        "Gi",
        "1 Gi",
        "1KI",
        "1ki",
        "1Kix",
        "1.1.M",
        "1+1.0M",
        "0.1mi",
        "0.1am",
        "aoeu",
        ".5i",
        "1i",
        "-3.01i",
        "-3.01e-",
        "1e",
        "1e+",
        "1.5e",
        "1ee3",
        "1Ee3",
        "1e3.5",
        "+",
        "-",
        ".",
        "-.",
        "m",
        "e3",
        "1e99999999999",
        "1_000",
        "١",
        "1k ",
        "--1",
        "0x10",
    ] {
        let err = Quantity::parse(bad).expect_err(bad);
        assert_eq!(err.text, bad);
        let msg = err.to_string();
        assert!(msg.contains(&format!("{bad:?}")) && !err.reason.is_empty(), "{msg}");
    }
    // More significant digits than the i128 mantissa holds.
    let long = "1".repeat(60);
    assert!(
        Quantity::parse(&long)
            .unwrap_err()
            .reason
            .contains("significant digits")
    );
    // ...but trailing zeros and sub-nano digits are fine however many.
    assert_eq!(q(&format!("1{}", "0".repeat(30))), q("1e30"));
    assert_eq!(q(&format!("0.{}1", "0".repeat(100_000))), q("1n"));
    assert_eq!(q(&format!("1.{}Ki", "0".repeat(100_000))), q("1Ki"));
}

#[test]
fn parse_values_and_formats_from_upstream() {
    // (input, value as written by us, format) from TestQuantityParse.
    use Format::*;
    for (input, value, format) in [
        ("0", "0", DecimalSI),
        ("0Ki", "0", BinarySI),
        ("0m", "0", DecimalSI),
        ("1Ki", "1024", BinarySI),
        ("8Ki", "8192", BinarySI),
        ("3Ei", "3458764513820540928", BinarySI),
        ("5n", "0.000000005", DecimalSI),
        ("50k", "50000", DecimalSI),
        ("1E", "1e18", DecimalSI),
        ("1E-3", "0.001", DecimalExponent),
        ("1e3", "1000", DecimalExponent),
        ("1.3E+6", "1300000", DecimalExponent),
        ("100.035k", "100035", DecimalSI),
        ("0.0005k", "0.5", DecimalSI),
        ("0.5e-2", "0.005", DecimalExponent),
        ("7.123456M", "7123456", DecimalSI),
        ("1.01E", "101e16", DecimalSI),
        // Things that saturate/round.
        ("3.001n", "4e-9", DecimalSI),
        ("1.1E-9", "2e-9", DecimalExponent),
        ("0.0000000001", "1e-9", DecimalSI),
        ("0.0000000005", "1e-9", DecimalSI),
        ("0.00000000050", "1e-9", DecimalSI),
        ("0.5e-9", "1e-9", DecimalExponent),
        ("0.9n", "1e-9", DecimalSI),
        ("0.00000012345", "124e-9", DecimalSI),
        ("0.00000012354", "124e-9", DecimalSI),
        ("9Ei", "9223372036854775807", BinarySI),
        ("9223372036854775807Ki", "9223372036854775807", BinarySI),
        ("12E", "12e18", DecimalSI),
        // Fractional binary.
        ("100.035Ki", "102435.84", BinarySI),
        ("0.5Mi", "524288", BinarySI),
        ("0.05Gi", "53687091.2", BinarySI),
        ("0.025Ti", "27487790694.4", BinarySI),
        ("0.000000000001Ki", "2e-9", DecimalSI), // rounds up, changes format
        (".001", "0.001", DecimalSI),
        (".0001k", "0.1", DecimalSI),
        ("1.", "1", DecimalSI),
        ("1.G", "1e9", DecimalSI),
    ] {
        let got = q(input);
        assert_eq!(got, q(value), "{input}");
        assert_eq!(got.format(), format, "{input}");
        // And negated, and with an explicit +.
        let neg = q(&format!("-{input}"));
        assert_eq!(neg.checked_neg().unwrap(), got, "-{input}");
        assert_eq!(neg.format(), format, "-{input}");
        assert_eq!(q(&format!("+{input}")), got);
    }
    // Binary rounding is exact, not via floats: 1.000000000001Ki is
    // 1024.000000001024, rounded up to the next nano.
    assert_eq!(q("1.000000000001Ki"), q("1024.000000002"));
    assert_eq!(q("0.3Ki"), q("307.2"));
    assert_eq!(q("-0.3Ki").format(), Format::BinarySI);
    assert_eq!(q("-0.0003Ki").format(), Format::DecimalSI);
    assert_eq!(q("1.5Gi").format(), Format::BinarySI);
}

#[test]
fn canonical_output_from_upstream() {
    // TestQuantityString: (value, format) → expected, plus alternates.
    for (input, expect) in [
        ("1Gi", "1Gi"),
        ("1024Mi", "1Gi"),
        ("300Mi", "300Mi"),
        ("307200Ki", "300Mi"),
        ("6Ki", "6Ki"),
        ("1001Gi", "1001Gi"),
        ("1025024Mi", "1001Gi"),
        ("1Ti", "1Ti"),
        ("1024Gi", "1Ti"),
        ("1G", "1G"),
        ("1000M", "1G"),
        ("0.001T", "1G"),
        ("1m", "1m"),
        ("1000u", "1m"),
        ("80m", "80m"),
        ("1.08", "1080m"),
        ("1080000000n", "1080m"),
        ("300M", "300M"),
        ("1T", "1T"),
        ("1E", "1E"),
        ("1000E", "1e21"),
        ("5000E", "5e21"),
        ("1000000E", "1e24"),
        ("1234567M", "1234567M"),
        ("3k", "3k"),
        ("0", "0"),
        ("00", "0"),
        ("1e9", "1e9"),
        (".001e12", "1e9"),
        ("1e-3", "1e-3"),
        ("0.001e0", "1e-3"),
        ("1e-9", "1e-9"),
        ("1000e-12", "1e-9"),
        ("80e-3", "80e-3"),
        ("300e6", "300e6"),
        ("3e3", "3e3"),
        ("1n", "1n"),
        ("1080n", "1080n"),
        ("1u", "1u"),
        ("1080u", "1080u"),
        // TestQuantityParseEmit.
        ("1Ki", "1Ki"),
        ("1Mi", "1Mi"),
        (".001Ki", "1024m"),
        (".000001Ki", "1024u"),
        (".000000001Ki", "1024n"),
        (".000000000001Ki", "2n"),
        // The brief's examples and binary fallbacks.
        ("1.5Gi", "1536Mi"),
        ("1000m", "1"),
        ("0.5", "500m"),
        ("100M", "100M"),
        ("1e3", "1e3"),
        ("1024", "1024"),
        ("1.5Ki", "1536"),
        ("1025Ki", "1025Ki"),
        ("0.5Ki", "512"),
        ("1023.5Ki", "1048064"),
        ("100.035Ki", "102435840m"),
        ("0.3Ki", "307200m"),
        ("1e0", "1"),
        ("1.5e0", "1500e-3"),
        ("12E", "12E"),
        ("0.1", "100m"),
        ("1.2345", "1234500u"),
        ("18446744073709551616", "18446744073709551616"),
        ("9Ei", "9223372036854775807"),
        ("8Ei", "9223372036854775807"),
        ("7Ei", "7Ei"),
        ("0Gi", "0"),
    ] {
        assert_eq!(q(input).to_string(), expect, "{input}");
        if expect != "0" {
            assert_eq!(q(&format!("-{input}")).to_string(), format!("-{expect}"), "-{input}");
        }
    }
    assert_eq!(Quantity::from_i64(1000).to_string(), "1k");
    assert_eq!(Quantity::from_i64(1_234_000).to_string(), "1234k");
    assert_eq!(Quantity::from_bytes(1024).to_string(), "1Ki");
    assert_eq!(Quantity::from_bytes(1 << 20).to_string(), "1Mi");
    assert_eq!(Quantity::from_bytes(5).to_string(), "5");
    assert_eq!(Quantity::from_bytes(1024).checked_mul(1024).unwrap().to_string(), "1Mi");
    assert_eq!(
        Quantity::from_i64(1_000_000)
            .with_format(Format::DecimalExponent)
            .to_string(),
        "1e6"
    );
    // Past Ei upstream prints no suffix (a wrong value); we keep Ei.
    assert_eq!(q("1Ei").checked_mul(1024).unwrap().to_string(), "1024Ei");
}

#[test]
fn arithmetic() {
    let sum = q("1Gi").checked_add(&q("512Mi")).unwrap();
    assert_eq!(sum.to_string(), "1536Mi");
    assert_eq!(q("10").checked_add(&q("1Ki")).unwrap().to_string(), "1034");
    assert_eq!(q("10").checked_add(&q("1Ki")).unwrap().format(), Format::DecimalSI);
    assert_eq!(q("100m").checked_add(&q("0")).unwrap().to_string(), "100m");
    // A zero receiver takes the other's format (upstream Add/Sub).
    assert_eq!(q("0").checked_add(&q("1Gi")).unwrap().to_string(), "1Gi");
    assert_eq!(q("0").checked_sub(&q("1Gi")).unwrap().to_string(), "-1Gi");
    assert_eq!(q("0").add_int(5000).unwrap().to_string(), "5e3");
    assert_eq!(q("1k").add_int(1).unwrap().to_string(), "1001");
    assert_eq!(q("1k").sub_int(1000).unwrap().to_string(), "0");
    assert_eq!(q("1Gi").checked_sub(&q("1Gi")).unwrap(), Quantity::from_i64(0));
    assert_eq!(q("1.5").checked_sub(&q("2")).unwrap().to_string(), "-500m");
    assert_eq!(
        q("1n").checked_add(&q("1e20")).unwrap(),
        q("100000000000000000000.000000001")
    );
    assert_eq!(q("-9.01").checked_mul(-10).unwrap().to_string(), "90100m");
    assert_eq!(q("1Mi").checked_mul(0).unwrap().to_string(), "0");
    assert_eq!(
        Quantity::from_i64(i64::MAX).checked_mul(i64::MAX).unwrap().to_string(),
        "85070591730234615847396907784232501249"
    );
    assert_eq!(
        Quantity::from_i64(i64::MIN).checked_neg().unwrap(),
        q("9223372036854775808")
    );
    // Overflow is None, never a panic or a wrap.
    let big = q("99999999999999999999999999999999999999");
    assert!(big.checked_add(&big).is_none());
    assert!(big.checked_mul(2).is_none());
    assert!(big.checked_neg().unwrap().checked_sub(&big).is_none());
    assert!(q("1e30").checked_add(&q("1n")).is_none());
    assert!(q("5e2147483647").checked_add(&q("5e2147483647")).is_none());
    assert_eq!(
        q("5e2147483646").checked_add(&q("5e2147483646")).unwrap(),
        q("1e2147483647")
    );
    // Integer views.
    assert_eq!(q("1000m").as_i64(), Some(1));
    assert_eq!(q("1.5").as_i64(), None);
    assert!(!q("1.5").is_integer() && q("1e30").is_integer());
    assert_eq!(q("1e30").as_i64(), None);
    assert_eq!(q("9Ei").as_i64(), Some(i64::MAX));
    assert_eq!(q("-1.5").sign(), -1);
    assert_eq!(q("0Ki").sign(), 0);
    assert!(q("0.0").is_zero());
    assert_eq!(q("1.5Gi").as_f64(), 1_610_612_736.0);
    assert_eq!(q("0.1").as_f64(), 0.1);
    assert_eq!(q("1.1Ki").as_f64(), 1126.4);
    assert_eq!(q("1e400").as_f64(), f64::INFINITY);
    // Value/MilliValue round away from zero (TestQuantityRoundUp's values).
    assert_eq!(q("9.01").value(), Some(10));
    assert_eq!(q("-9.01").value(), Some(-10));
    assert_eq!(q("1n").milli_value(), Some(1));
    assert_eq!(q("1").milli_value(), Some(1000));
    assert_eq!(q("1e-3").scaled_value(-9), Some(1_000_000));
    assert_eq!(q("1e2").scaled_value(-2), Some(10_000));
    assert_eq!(q("1e19").value(), None);
    assert_eq!(q("9223372036854775807").value(), Some(i64::MAX));
    assert_eq!(q("-9223372036854775808").value(), Some(i64::MIN));
}

#[test]
fn div_ceil_and_round_up() {
    for (x, step, k) in [
        ("10", "3", Some(4)),
        ("9", "3", Some(3)),
        ("0", "3", Some(0)),
        ("-5", "2", Some(-2)),
        ("-6", "2", Some(-3)),
        ("1.5Gi", "1Gi", Some(2)),
        ("1Gi", "1Mi", Some(1024)),
        ("1Gi", "1.5Mi", Some(683)),
        ("1n", "1Ei", Some(1)),
        ("1", "1n", Some(1_000_000_000)),
        ("2.5", "500m", Some(5)),
        ("2.5000001", "500m", Some(6)),
        ("1e30", "1e29", Some(10)),
        ("1e30", "1n", None),
        ("9223372036854775807", "1", Some(i64::MAX)),
        ("9223372036854775808", "1", None),
        ("-9223372036854775808", "1", Some(i64::MIN)),
        ("1", "0", None),
        ("1", "-1", None),
    ] {
        assert_eq!(q(x).div_ceil(&q(step)), k, "{x} / {step}");
    }
    // Mantissas too wide to align in i128 still divide exactly.
    let wide = q("12345678901234567890123456789012345678e5");
    assert_eq!(
        wide.div_ceil(&q("12345678901234567890123456789012345678")),
        Some(100_000)
    );
    assert_eq!(q("1.2Gi").round_up_to(&q("256Mi")).unwrap().to_string(), "1280Mi");
    assert_eq!(q("1.2").round_up_to(&q("250m")).unwrap().to_string(), "1250m");
}

#[test]
fn semver_parse_valid() {
    for s in [
        "0.0.4",
        "1.2.3",
        "10.20.30",
        "1.1.2-prerelease+meta",
        "1.1.2+meta",
        "1.1.2+meta-valid",
        "1.0.0-alpha",
        "1.0.0-beta",
        "1.0.0-alpha.beta",
        "1.0.0-alpha.beta.1",
        "1.0.0-alpha.1",
        "1.0.0-alpha0.valid",
        "1.0.0-alpha.0valid",
        "1.0.0-alpha-a.b-c-somethinglong+build.1-aef.1-its-okay",
        "1.0.0-rc.1+build.1",
        "2.0.0-rc.1+build.123",
        "1.2.3-beta",
        "10.2.3-DEV-SNAPSHOT",
        "1.2.3-SNAPSHOT-123",
        "1.0.0",
        "2.0.0",
        "1.1.7",
        "2.0.0+build.1848",
        "2.0.1-alpha.1227",
        "1.0.0-alpha+beta",
        "1.2.3----RC-SNAPSHOT.12.9.1--.12+788",
        "1.2.3----R-S.12.9.1--.12+meta",
        "1.2.3----RC-SNAPSHOT.12.9.1--.12",
        "1.0.0+0.build.1-rc.10000aaa-kk-0.1",
        "18446744073709551615.18446744073709551615.18446744073709551615",
        "1.0.0-0A.is.legal",
    ] {
        let parsed = v(s);
        assert_eq!(parsed.to_string(), s, "Display keeps pre-release and build");
        assert_eq!(s.parse::<Semver>().unwrap().to_string(), s);
    }
    let p = v("1.2.3-rc.1+build.5");
    assert_eq!((p.major, p.minor, p.patch), (1, 2, 3));
    assert_eq!(p.pre, ["rc", "1"]);
    assert_eq!(p.build, ["build", "5"]);
}

#[test]
fn semver_parse_invalid_names_the_text() {
    for s in [
        "",
        "1",
        "1.2",
        "1.2.3-0123",
        "1.2.3-0123.0123",
        "1.1.2+.123",
        "+invalid",
        "-invalid",
        "-invalid+invalid",
        "-invalid.01",
        "alpha",
        "alpha.beta",
        "alpha.beta.1",
        "alpha.1",
        "alpha+beta",
        "alpha_beta",
        "alpha.",
        "alpha..",
        "beta",
        "1.0.0-alpha_beta",
        "-alpha.",
        "1.0.0-alpha..",
        "1.0.0-alpha..1",
        "1.0.0-alpha...1",
        "1.0.0-alpha....1",
        "1.0.0-alpha.....1",
        "1.0.0-alpha......1",
        "1.0.0-alpha.......1",
        "01.1.1",
        "1.01.1",
        "1.1.01",
        "1.2",
        "1.2.3.DEV",
        "1.2-SNAPSHOT",
        "1.2.31.2.3----RC-SNAPSHOT.12.09.1--..12+788",
        "1.2-RC-SNAPSHOT",
        "-1.0.3-gamma+b7718",
        "+justmeta",
        "9.8.7+meta+meta",
        "9.8.7-whatever+meta+meta",
        "99999999999999999999999.999999999999999999.99999999999999999----RC-SNAPSHOT.12.09.1--------------------------------..12",
        "v1.2.3",
        "1.2.3-",
        "1.2.3+",
        "1.2.3 ",
        " 1.2.3",
        "1.2.3-é",
        "1.0.0-99999999999999999999",
    ] {
        let err = Semver::parse(s).expect_err(s);
        assert_eq!(err.text, s);
        assert!(err.to_string().contains(&format!("{s:?}")) && !err.reason.is_empty());
    }
}

#[test]
fn semver_precedence() {
    let chain = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
        "1.0.1-0",
        "1.0.1",
        "1.1.0",
        "1.10.0",
        "2.0.0",
        "10.0.0",
    ];
    for (i, a) in chain.iter().enumerate() {
        for (j, b) in chain.iter().enumerate() {
            assert_eq!(v(a).cmp(&v(b)), i.cmp(&j), "{a} vs {b}");
            assert_eq!(v(a).compare_to(&v(b)), i.cmp(&j) as i64);
        }
    }
    // Build metadata takes no part in precedence or equality.
    assert_eq!(v("1.0.0+a"), v("1.0.0+b"));
    assert_eq!(v("1.0.0-rc.1+a").compare_to(&v("1.0.0-rc.1")), 0);
    // Numeric identifiers sort before alphanumeric ones, ASCII among those.
    assert!(v("1.0.0-999") < v("1.0.0-a"));
    assert!(v("1.0.0-Z") < v("1.0.0-a"));
    assert!(v("1.0.0-18446744073709551615") > v("1.0.0-9"));
}

#[test]
fn semver_normalisation() {
    for (input, expect) in [
        ("v1", "1.0.0"),
        ("1", "1.0.0"),
        ("v1.2", "1.2.0"),
        ("1.0", "1.0.0"),
        ("01.02.03", "1.2.3"),
        ("01.01.01", "1.1.1"),
        ("v01.002.0003", "1.2.3"),
        ("00.00.00", "0.0.0"),
        ("v1.0.0", "1.0.0"),
        ("1.2.03-rc.1+b.01", "1.2.3-rc.1+b.01"),
        ("1.2.0-alpha", "1.2.0-alpha"),
        ("1.2.00-alpha", "1.2.0-alpha"),
        ("1.2.3", "1.2.3"),
    ] {
        assert_eq!(
            Semver::parse_with(input, true)
                .unwrap_or_else(|e| panic!("{e}"))
                .to_string(),
            expect,
            "{input}"
        );
    }
    for strict_only_bad in ["v1", "1.0", "01.02.03", "v1.0.0", "1.2.03"] {
        assert!(Semver::parse(strict_only_bad).is_err(), "{strict_only_bad}");
    }
    for bad in [
        "", "v", "vv1.0.0", "V1.0.0", "1-rc.1", "1.2-rc.1", "1.2+b", " 1.0.0", "1.2.3-01", "x.y.z",
    ] {
        let err = Semver::parse_with(bad, true).expect_err(bad);
        assert_eq!(err.text, bad, "the error names the input, not the normalised text");
    }
}

fn quantity_text() -> impl Strategy<Value = String> {
    let suffix = prop::sample::select(vec![
        "", "n", "u", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "e-12", "e0", "e3", "E7",
        "e25",
    ]);
    (
        any::<bool>(),
        0u64..1_000_000_000,
        prop::option::of("[0-9]{1,12}"),
        suffix,
    )
        .prop_map(|(neg, int, frac, s)| {
            let sign = if neg { "-" } else { "" };
            match frac {
                Some(f) => format!("{sign}{int}.{f}{s}"),
                None => format!("{sign}{int}{s}"),
            }
        })
}

proptest! {
    #[test]
    fn display_round_trips(text in quantity_text()) {
        let a = q(&text);
        let shown = a.to_string();
        let b = q(&shown);
        prop_assert_eq!(&a, &b, "{} → {}", text, shown);
        // Canonical output is a fixed point.
        prop_assert_eq!(b.to_string(), shown);
    }

    #[test]
    fn ordering_agrees_with_f64(x in -1_000_000_000i64..1_000_000_000, y in -1_000_000_000i64..1_000_000_000,
                                sx in -9i32..6, sy in -9i32..6) {
        let a = q(&format!("{x}e{sx}"));
        let b = q(&format!("{y}e{sy}"));
        let (fa, fb) = (a.as_f64(), b.as_f64());
        if fa < fb { prop_assert!(a < b); }
        if fa > fb { prop_assert!(a > b); }
        if a < b { prop_assert!(fa <= fb); }
        prop_assert_eq!(a == b, a.cmp(&b) == std::cmp::Ordering::Equal);
        let d = a.checked_sub(&b).unwrap();
        prop_assert_eq!(d.sign(), a.compare_to(&b));
        prop_assert_eq!(d.checked_add(&b).unwrap(), a);
    }

    #[test]
    fn parse_never_panics(s in "\\PC{0,24}") {
        let _ = Quantity::parse(&s);
        let _ = Semver::parse_with(&s, true);
        let _ = Semver::parse(&s);
    }
}
