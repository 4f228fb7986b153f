//! Property tests of the extender bodies, through the router as
//! kube-scheduler reaches it: arbitrary bytes, valid ExtenderArgs /
//! ExtenderBindingArgs / ExtenderPreemptionArgs with bytes mutated, and with
//! values swapped for arbitrary JSON. Never a panic (a 500), every refusal
//! has a message, every 200 is JSON, and no request adds a node to the view.
//! A fixed case budget keeps CI fast.

mod common;

use std::sync::OnceLock;

use axum::http::StatusCode;
use common::{Fixture, node, pod};
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{Value, json};

const CASES: u32 = 256;
const VERBS: [&str; 4] = ["filter", "prioritize", "bind", "preempt"];

fn config() -> Config {
    Config {
        cases: CASES,
        // No regression files in the source tree; a failure prints its case.
        failure_persistence: None,
        ..Config::default()
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    })
}

fn fixture() -> Fixture {
    let f = Fixture::new(60_000);
    let labels = [("nvidia.com/gpu.count", "2"), ("nvidia.com/gpu.replicas", "4")];
    f.add_node(&node("s1", &[("nvidia.com/gpu.shared", "8")], &labels, None));
    f.add_node(&node("g1", &[("nvidia.com/gpu", "2")], &[], None));
    f.add_node(&node("g2", &[("nvidia.com/gpu", "8")], &[], None));
    f
}

/// Valid requests of every verb and form, as (verb, body).
fn bases() -> Vec<(&'static str, Value)> {
    let p = pod("ns", "p", "uid-p", &[("nvidia.com/gpu", "1")], &[]);
    let shared = pod("ns", "q", "uid-q", &[("nvidia.com/gpu.shared", "2")], &[]);
    let gang = pod(
        "ns",
        "m",
        "uid-m",
        &[("nvidia.com/gpu", "1")],
        &[("scheduling.x-k8s.io/pod-group", "pg")],
    );
    let nodes = json!({"metadata": {}, "items": [
        node("g1", &[("nvidia.com/gpu", "2")], &[], None),
        node("ghost", &[("nvidia.com/gpu", "8")], &[], None),
    ]});
    let mut victim = pod("ns", "v", "uid-v", &[("nvidia.com/gpu", "1")], &[]);
    victim["spec"]["nodeName"] = json!("g1");
    vec![
        (
            "filter",
            json!({"Pod": p, "Nodes": null, "NodeNames": ["g1", "g2", "s1", "x"]}),
        ),
        ("filter", json!({"Pod": shared, "Nodes": nodes, "NodeNames": null})),
        ("filter", json!({"Pod": gang, "NodeNames": ["g1", "g1"]})),
        (
            "prioritize",
            json!({"Pod": p, "Nodes": null, "NodeNames": ["g1", "g2"]}),
        ),
        ("prioritize", json!({"Pod": shared, "Nodes": nodes, "NodeNames": null})),
        (
            "bind",
            json!({"PodName": "p", "PodNamespace": "ns", "PodUID": "uid-p", "Node": "g2"}),
        ),
        (
            "preempt",
            json!({"Pod": p, "NodeNameToVictims": null, "NodeNameToMetaVictims": {
                "g1": {"Pods": [{"UID": "uid-v"}], "NumPDBViolations": 0},
                "ghost": {"Pods": [], "NumPDBViolations": 1},
            }}),
        ),
        (
            "preempt",
            json!({"Pod": p, "NodeNameToVictims": {"g1": {"Pods": [victim], "NumPDBViolations": 0}}}),
        ),
    ]
}

/// Sends `body` to `verb` and checks the answer's contract.
fn check(f: &Fixture, verb: &str, body: Vec<u8>) -> Result<(), TestCaseError> {
    let (status, answer) = runtime().block_on(f.post(verb, body));
    let text = String::from_utf8_lossy(&answer);
    prop_assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "{}: {}", verb, text);
    if status == StatusCode::OK {
        prop_assert!(
            serde_json::from_slice::<Value>(&answer).is_ok(),
            "{}: 200 that is not JSON: {}",
            verb,
            text
        );
    } else {
        prop_assert!(
            status.is_client_error(),
            "{}: unexpected status {}: {}",
            verb,
            status,
            text
        );
        // A sentence naming the verb and what was wrong.
        prop_assert!(
            text.starts_with(verb) && text.len() > verb.len() + 10,
            "{}: {}",
            verb,
            text
        );
    }
    prop_assert_eq!(f.state.view().node_count(), 3, "a request changed the nodes");
    Ok(())
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Delete(usize, usize),
    Insert(usize, Vec<u8>),
    Truncate(usize),
    Repeat(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), 0usize..16).prop_map(|(i, n)| Mutation::Delete(i, n)),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8)).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), 1usize..64).prop_map(|(i, n)| Mutation::Repeat(i, n)),
    ]
}

fn apply(mut b: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for m in muts {
        let len = b.len().max(1);
        match m {
            Mutation::Flip(i, x) => {
                if let Some(c) = b.get_mut(i % len) {
                    *c = *x;
                }
            }
            Mutation::Delete(i, n) => {
                let at = (i % len).min(b.len());
                let end = (at + n).min(b.len());
                b.drain(at..end);
            }
            Mutation::Insert(i, bytes) => {
                let at = (i % len).min(b.len());
                b.splice(at..at, bytes.iter().copied());
            }
            Mutation::Truncate(i) => b.truncate(i % len),
            Mutation::Repeat(i, n) => {
                let at = (i % len).min(b.len());
                let end = (at + n).min(b.len());
                let piece = b[at..end].to_vec();
                b.splice(end..end, piece);
            }
        }
    }
    b
}

/// Arbitrary JSON, with the values extender decoders trip on: huge and
/// negative numbers, odd strings, deep and wide containers.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|x| serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)),
        prop_oneof![
            Just(String::new()),
            Just("-5".to_string()),
            Just("1e30".to_string()),
            Just("NaN".to_string()),
            Just("0x10".to_string()),
            Just("0-4294967295".to_string()),
            Just("a".repeat(300)),
            any::<String>(),
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("Pod".to_string()),
                    Just("NodeNames".to_string()),
                    Just("Nodes".to_string()),
                    Just("metadata".to_string()),
                    Just("spec".to_string()),
                    Just("items".to_string()),
                    Just("UID".to_string()),
                    any::<String>(),
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Replaces the value at the path that `steps` picks (each step chooses a
/// child, modulo the number of children) with `with`.
fn replace_at(v: &mut Value, steps: &[usize], with: Value) {
    let Some((&s, rest)) = steps.split_first() else {
        *v = with;
        return;
    };
    let child = match v {
        Value::Object(m) if !m.is_empty() => {
            let k = s % m.len();
            m.values_mut().nth(k)
        }
        Value::Array(a) if !a.is_empty() => {
            let k = s % a.len();
            a.get_mut(k)
        }
        _ => None,
    };
    match child {
        Some(c) => replace_at(c, rest, with),
        None => *v = with,
    }
}

fn shared() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(fixture)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_are_refused_clearly(verb in 0usize..4, body in prop::collection::vec(any::<u8>(), 0..512)) {
        check(shared(), VERBS[verb], body)?;
    }

    #[test]
    fn mutated_valid_bodies_never_panic(
        base in 0usize..8,
        muts in prop::collection::vec(mutation(), 1..8),
    ) {
        let bases = bases();
        let (verb, body) = &bases[base % bases.len()];
        let bytes = serde_json::to_vec(body).expect("json");
        check(shared(), verb, apply(bytes, &muts))?;
    }

    #[test]
    fn valid_bodies_with_arbitrary_values_never_panic(
        base in 0usize..8,
        steps in prop::collection::vec(any::<usize>(), 0..6),
        with in any_json(),
    ) {
        let bases = bases();
        let (verb, body) = &bases[base % bases.len()];
        let mut body = body.clone();
        replace_at(&mut body, &steps, with);
        check(shared(), verb, serde_json::to_vec(&body).expect("json"))?;
    }
}
