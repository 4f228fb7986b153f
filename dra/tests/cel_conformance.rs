//! The CEL specification's simple conformance suite (`tests/data/
//! cel-conformance/`, see its PROVENANCE.md), run through the environment
//! selectors are compiled and evaluated in: the standard library, the
//! strings extension, the quantity and semver libraries and `cel.bind`,
//! with the same limits. Bindings become variables.
//!
//! Counts pass / fail / skip per file, prints the table, and fails if a
//! file passes fewer tests than its recorded baseline (a regression guard;
//! raise the baseline when the evaluator improves). Run with
//! `cargo test -p railyard-dra --test cel_conformance -- --nocapture` to
//! see the table and the failures of the files selectors depend on.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use cel::Value;
use cel::objects::{Key, Map};
use railyard_dra::cel::{Evaluated, Expression};
use serde_json::Value as Json;

/// Tests passing per file when the baseline was recorded.
const BASELINE: &[(&str, usize)] = &[
    ("basic", 43),
    ("bindings_ext", 8),
    ("comparisons", 332),
    ("conversions", 106),
    ("fields", 60),
    ("fp_math", 30),
    ("integer_math", 64),
    ("lists", 39),
    ("logic", 30),
    ("macros", 44),
    ("macros2", 46),
    ("optionals", 59),
    ("parse", 191),
    ("plumbing", 5),
    ("string", 51),
    ("string_ext", 206),
];

/// The files selectors depend on most: their failures are listed.
const SELECTOR_FILES: &[&str] = &[
    "basic",
    "comparisons",
    "logic",
    "string",
    "macros",
    "fields",
    "lists",
    "bindings_ext",
];

enum Outcome {
    Pass,
    Fail(String),
    Skip(String),
}

#[derive(Default)]
struct Tally {
    pass: usize,
    fail: usize,
    skip: usize,
    failures: Vec<String>,
    skips: BTreeMap<String, usize>,
}

fn base64(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter(|c| *c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// The expected value; `Err` names what cannot be represented.
#[derive(Debug)]
enum Expected {
    Value(Value),
    Type(String),
}

fn expected(v: &Json) -> Result<Expected, String> {
    let Some((kind, x)) = v.as_object().and_then(|o| o.iter().next()) else {
        return Err("empty value".to_owned());
    };
    let num = |x: &Json| x.as_str().map(str::to_owned).unwrap_or_else(|| x.to_string());
    Ok(Expected::Value(match kind.as_str() {
        "null_value" => Value::Null,
        "bool_value" => Value::Bool(x.as_bool().ok_or("bool")?),
        "int64_value" => Value::Int(num(x).parse().map_err(|_| "int64")?),
        "uint64_value" => Value::UInt(num(x).parse().map_err(|_| "uint64")?),
        "double_value" => Value::Float(match x {
            Json::String(s) if s == "NaN" => f64::NAN,
            Json::String(s) if s == "Infinity" => f64::INFINITY,
            Json::String(s) if s == "-Infinity" => f64::NEG_INFINITY,
            x => x.as_f64().ok_or("double")?,
        }),
        "string_value" => Value::String(Arc::new(x.as_str().ok_or("string")?.to_owned())),
        "bytes_value" => Value::Bytes(Arc::new(base64(x.as_str().ok_or("bytes")?).ok_or("base64")?)),
        "list_value" => {
            let values = x.get("values").and_then(Json::as_array).cloned().unwrap_or_default();
            let mut list = Vec::new();
            for v in &values {
                match expected(v)? {
                    Expected::Value(v) => list.push(v),
                    Expected::Type(_) => return Err("a type in a list".to_owned()),
                }
            }
            Value::List(Arc::new(list))
        }
        "map_value" => {
            let entries = x.get("entries").and_then(Json::as_array).cloned().unwrap_or_default();
            let mut map = HashMap::new();
            for e in &entries {
                let key = match expected(e.get("key").ok_or("map key")?)? {
                    Expected::Value(Value::Int(i)) => Key::Int(i),
                    Expected::Value(Value::UInt(u)) => Key::Uint(u),
                    Expected::Value(Value::Bool(b)) => Key::Bool(b),
                    Expected::Value(Value::String(s)) => Key::String(s),
                    other => return Err(format!("map key {other:?}")),
                };
                let Expected::Value(value) = expected(e.get("value").ok_or("map value")?)? else {
                    return Err("a type in a map".to_owned());
                };
                map.insert(key, value);
            }
            Value::Map(Map { map: Arc::new(map) })
        }
        "type_value" => return Ok(Expected::Type(x.as_str().ok_or("type")?.to_owned())),
        "object_value" => return Err("protobuf message value".to_owned()),
        other => return Err(format!("{other} value")),
    }))
}

/// Strict equality: the types must agree (`1` is not `1u`), NaN equals NaN.
/// Doubles may differ in the last bits: serde_json (default features)
/// parses decimal text only to within an ulp or so (`1.38e-23`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => {
            x == y || (x.is_nan() && y.is_nan()) || (x.is_finite() && (x - y).abs() <= 1e-15 * x.abs().max(y.abs()))
        }
        (Value::List(x), Value::List(y)) => x.len() == y.len() && x.iter().zip(y.iter()).all(|(a, b)| same(a, b)),
        (Value::Map(x), Value::Map(y)) => {
            x.map.len() == y.map.len() && x.map.iter().all(|(k, v)| y.map.get(k).is_some_and(|w| same(v, w)))
        }
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::UInt(x), Value::UInt(y)) => x == y,
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Bytes(x), Value::Bytes(y)) => x == y,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Null, Value::Null) => true,
        _ => false,
    }
}

fn run(test: &Json) -> Outcome {
    let expr = test.get("expr").and_then(Json::as_str).unwrap_or_default();
    for option in ["disable_macros", "check_only"] {
        if test.get(option).and_then(Json::as_bool) == Some(true) {
            return Outcome::Skip(format!("{option} (no type checker / macros always on)"));
        }
    }
    // Message literals and well-known wrapper types need protobuf
    // descriptors, which neither the evaluator nor selectors have.
    if ["TestAllTypes", "google.protobuf."].iter().any(|m| expr.contains(m)) {
        return Outcome::Skip("protobuf message types".to_owned());
    }
    let want = match (test.get("value"), test.get("eval_error")) {
        (Some(v), _) => match expected(v) {
            Ok(w) => Some(w),
            Err(why) => return Outcome::Skip(why),
        },
        (None, Some(_)) => None,
        // No matcher: the expected result is `true`.
        (None, None) => Some(Expected::Value(Value::Bool(true))),
    };
    let mut variables = Vec::new();
    if let Some(bindings) = test.get("bindings").and_then(Json::as_object) {
        for (name, b) in bindings {
            match b.get("value").map(expected) {
                Some(Ok(Expected::Value(v))) => variables.push((name.clone(), v)),
                Some(Ok(Expected::Type(_))) => return Outcome::Skip("type binding".to_owned()),
                Some(Err(why)) => return Outcome::Skip(format!("binding: {why}")),
                None => return Outcome::Skip("binding without a value".to_owned()),
            }
        }
    }
    let container = test.get("container").and_then(Json::as_str);
    let got = Expression::compile(expr, container).and_then(|e| e.evaluate(variables));
    match (want, got) {
        (None, Err(_)) => Outcome::Pass,
        (None, Ok(v)) => Outcome::Fail(format!("want an error, got {:?}", v.value)),
        (Some(w), Err(e)) => Outcome::Fail(format!("want {w:?}, got error: {}", first_line(&e.to_string()))),
        (Some(Expected::Value(w)), Ok(Evaluated { value, .. })) if same(&w, &value) => Outcome::Pass,
        (
            Some(Expected::Type(t)),
            Ok(Evaluated {
                value: Value::String(s),
                type_name,
            }),
        ) if type_name == "type" && *s == t => Outcome::Pass,
        (Some(w), Ok(v)) => Outcome::Fail(format!("want {w:?}, got {:?} ({})", v.value, v.type_name)),
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or_default()
}

#[test]
fn conformance_suite() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/cel-conformance");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("data directory")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut tallies: BTreeMap<String, Tally> = BTreeMap::new();
    for path in &files {
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned();
        let text = std::fs::read_to_string(path).expect("readable");
        let file: Json = serde_json::from_str(&text).expect("JSON");
        let tally = tallies.entry(name).or_default();
        for section in file.get("section").and_then(Json::as_array).into_iter().flatten() {
            let section_name = section.get("name").and_then(Json::as_str).unwrap_or_default();
            for test in section.get("test").and_then(Json::as_array).into_iter().flatten() {
                let test_name = test.get("name").and_then(Json::as_str).unwrap_or_default();
                let expr = test.get("expr").and_then(Json::as_str).unwrap_or_default();
                match run(test) {
                    Outcome::Pass => tally.pass += 1,
                    Outcome::Fail(why) => {
                        tally.fail += 1;
                        tally
                            .failures
                            .push(format!("{section_name}/{test_name}: `{expr}`: {why}"));
                    }
                    Outcome::Skip(why) => {
                        tally.skip += 1;
                        *tally.skips.entry(why).or_default() += 1;
                    }
                }
            }
        }
    }

    println!("| file | pass | fail | skip |\n|---|---:|---:|---:|");
    let (mut pass, mut fail, mut skip) = (0, 0, 0);
    for (name, t) in &tallies {
        println!("| {name} | {} | {} | {} |", t.pass, t.fail, t.skip);
        pass += t.pass;
        fail += t.fail;
        skip += t.skip;
    }
    println!("| **total** | {pass} | {fail} | {skip} |\n");
    for (name, t) in &tallies {
        if !t.skips.is_empty() {
            println!("{name} skipped: {:?}", t.skips);
        }
    }
    for name in SELECTOR_FILES {
        if let Some(t) = tallies.get(*name) {
            for f in &t.failures {
                println!("FAIL {name}/{f}");
            }
        }
    }
    if std::env::var_os("CEL_CONFORMANCE_ALL").is_some() {
        for (name, t) in &tallies {
            if !SELECTOR_FILES.contains(&name.as_str()) {
                for f in &t.failures {
                    println!("FAIL {name}/{f}");
                }
            }
        }
    }

    let mut regressions = Vec::new();
    for (name, min) in BASELINE {
        let got = tallies.get(*name).map_or(0, |t| t.pass);
        if got < *min {
            regressions.push(format!("{name}: {got} < {min}"));
        }
    }
    let recorded: Vec<&str> = BASELINE.iter().map(|(n, _)| *n).collect();
    for name in tallies.keys() {
        assert!(recorded.contains(&name.as_str()), "{name} has no baseline");
    }
    assert!(regressions.is_empty(), "conformance regressed: {regressions:?}");
}
