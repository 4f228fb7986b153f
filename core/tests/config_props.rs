//! Property tests for the two config parsers a ConfigMap reaches: NVIDIA's
//! device plugin config and mig-parted's config. Over arbitrary text,
//! mutated text of the shipped files and structurally mutated valid configs
//! they never panic, a refusal names a field path, and what they accept
//! costs work bounded by the input and the inventory: no accepted device
//! plugin config expands past the per-resource bound, no accepted mig-parted
//! config resolves to more instances than a GPU holds. YAML alias bombs,
//! nested and wide, are refused, not expanded. A fixed case budget keeps CI
//! fast.
#![allow(clippy::unwrap_used)] // test helpers: a missing seed file should fail loudly

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::OnceLock;

use proptest::prelude::*;
use proptest::sample::Index;
use railyard_core::config::device_plugin::{MAX_DEVICES_PER_RESOURCE, MAX_REPLICAS};
use railyard_core::config::mig_parted::GpuTarget;
use railyard_core::config::{DevicePluginConfig, MigPartedConfig};
use railyard_core::machine::MachineProfile;
use railyard_core::mig::{MigFamily, MigLayout, ProfileKind};
use railyard_core::resources::{GpuInventory, ResourceError, advertised_resources, mig_devices};
use railyard_core::yaml::ConfigError;
use railyard_core::yaml::Value;

const CASES: u32 = 256;

fn configs(sub: &str) -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs").join(sub);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files.iter().map(|p| std::fs::read_to_string(p).unwrap()).collect()
}

fn dp_seeds() -> &'static [String] {
    static S: OnceLock<Vec<String>> = OnceLock::new();
    S.get_or_init(|| configs("device-plugin"))
}

fn mp_seeds() -> &'static [String] {
    static S: OnceLock<Vec<String>> = OnceLock::new();
    S.get_or_init(|| configs("mig-parted"))
}

fn machines() -> &'static [MachineProfile] {
    static S: OnceLock<Vec<MachineProfile>> = OnceLock::new();
    S.get_or_init(|| {
        configs("machines")
            .iter()
            .map(|t| MachineProfile::from_yaml(t).unwrap())
            .collect()
    })
}

/// Whole GPUs, all-MIG GPUs and a mix: what `advertised_resources` sees.
fn inventories() -> &'static [Vec<GpuInventory>] {
    static S: OnceLock<Vec<Vec<GpuInventory>>> = OnceLock::new();
    S.get_or_init(|| {
        let gpu = |i: u32, mig: Option<MigLayout>| {
            let uuid = format!("GPU-{i:08x}-1111-2222-3333-444444444444");
            GpuInventory {
                index: i,
                memory_mib: 40960,
                numa_node: Some(i / 4),
                mig_enabled: mig.is_some(),
                mig_devices: mig.map(|l| mig_devices(&uuid, &l)).unwrap_or_default(),
                uuid,
            }
        };
        let seven = MigLayout::pack(MigFamily::A100_40gb, &[(ProfileKind::G1, 7)]).unwrap();
        let split = MigLayout::pack(MigFamily::A100_40gb, &[(ProfileKind::G3, 1), (ProfileKind::G2, 1)]).unwrap();
        vec![
            (0..8).map(|i| gpu(i, None)).collect(),
            (0..8).map(|i| gpu(i, Some(seven.clone()))).collect(),
            (0..8)
                .map(|i| match i % 3 {
                    0 => gpu(i, None),
                    1 => gpu(i, Some(seven.clone())),
                    _ => gpu(i, Some(split.clone())),
                })
                .collect(),
        ]
    })
}

// ---------------------------------------------------------------------------
// What every outcome must satisfy.

/// A refusal names where: a non-empty path that the message repeats. A
/// path of the whole document only for text that is not a mapping, a
/// missing top-level field, or a document-level limit.
fn check_refusal(e: &ConfigError) {
    let path = e.path();
    let msg = e.to_string();
    assert!(!path.is_empty(), "no path: {msg}");
    assert!(msg.contains(path), "the message does not name {path}: {msg}");
}

/// The path of every node of `doc`, in serde_path_to_error's form.
fn doc_paths(doc: &Value) -> BTreeSet<String> {
    fn walk(v: &Value, at: &str, out: &mut BTreeSet<String>) {
        out.insert(at.to_string());
        match v {
            Value::Mapping(m) => {
                for (k, v) in m {
                    let k = k.as_str().map(str::to_string).unwrap_or_else(|| "?".into());
                    let p = if at.is_empty() { k } else { format!("{at}.{k}") };
                    walk(v, &p, out);
                }
            }
            Value::Sequence(s) => {
                for (i, v) in s.iter().enumerate() {
                    walk(v, &format!("{at}[{i}]"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    walk(doc, "", &mut out);
    out
}

/// For a refusal of a document we built: the path is a node of it, or a
/// field under one (a missing or unknown field, a defaulted value).
fn check_refusal_in(e: &ConfigError, doc: &Value) {
    check_refusal(e);
    let path = e.path();
    if path == "(document)" {
        let msg = e.to_string();
        assert!(
            !matches!(doc, Value::Mapping(_)) || msg.contains("missing field") || msg.contains("above the maximum"),
            "a mapping refused without a field path: {msg}"
        );
        return;
    }
    let paths = doc_paths(doc);
    let parent = path.rfind(['.', '[']).map_or("", |i| &path[..i]);
    assert!(
        paths.contains(path) || paths.contains(parent),
        "{path} is no field of the document: {e}"
    );
}

/// An accepted device plugin config expands, on every inventory, to at
/// most the per-resource bound, and in total to at most the inventory's
/// devices × the replica bound; or is refused with its field path.
fn check_device_plugin_expansion(c: &DevicePluginConfig) {
    for inv in inventories() {
        let units: usize = inv.iter().map(|g| 1 + g.mig_devices.len()).sum();
        match advertised_resources(inv, c) {
            Ok(res) => {
                let total: usize = res.iter().map(|r| r.devices.len()).sum();
                assert!(total <= units * MAX_REPLICAS as usize, "{total} devices from {units}");
                for r in &res {
                    assert!(
                        r.devices.len() <= MAX_DEVICES_PER_RESOURCE,
                        "{}: {}",
                        r.name,
                        r.devices.len()
                    );
                }
            }
            Err(ResourceError::Sharing { path, .. }) => {
                assert!(
                    path.starts_with("sharing.timeSlicing.resources[") || path.starts_with("sharing.mps.resources["),
                    "{path}"
                );
            }
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
}

/// An accepted mig-parted config resolves on every shipped machine to
/// valid layouts of at most 7 instances per GPU, or is refused with a
/// `mig-configs…` path.
fn check_mig_parted_targets(c: &MigPartedConfig) {
    for m in machines() {
        for name in c.names() {
            match c.targets(name, m) {
                Ok(t) => {
                    assert!(t.len() <= m.gpus.len());
                    for target in t.values() {
                        if let GpuTarget::MigEnabled(l) = target {
                            assert!(l.instances.len() <= 7, "{name}: {l:?}");
                            l.validate().unwrap();
                        }
                    }
                }
                Err(e) => {
                    check_refusal(&e);
                    assert!(e.path().starts_with("mig-configs"), "{e}");
                }
            }
        }
    }
}

fn device_plugin_outcome(text: &str) {
    match DevicePluginConfig::from_yaml(text) {
        Ok(c) => check_device_plugin_expansion(&c),
        Err(e) => check_refusal(&e),
    }
}

fn mig_parted_outcome(text: &str) {
    match MigPartedConfig::from_yaml(text) {
        Ok(c) => check_mig_parted_targets(&c),
        Err(e) => check_refusal(&e),
    }
}

// ---------------------------------------------------------------------------
// Structural mutations of a valid config.

#[derive(Debug, Clone)]
enum Mutation {
    Replace(Value),
    Delete,
    /// In a list: the item again after itself (duplicate entries).
    Duplicate,
    AddKey(String, Value),
    Wrap,
}

fn scalar() -> impl Strategy<Value = Value> {
    let ints = prop_oneof![
        Just(0i64),
        Just(1),
        Just(2),
        Just(-1),
        Just(7),
        Just(1024),
        Just(1025),
        Just(16_384),
        Just(2_147_483_648),
        Just(4_294_967_296),
        Just(i64::MAX),
        Just(i64::MIN),
        any::<i64>(),
    ];
    let words = prop_oneof![
        Just("".to_string()),
        Just("all".to_string()),
        Just("gpu".to_string()),
        Just("nvidia.com/gpu".to_string()),
        Just("nvidia.com/mig-1g.5gb".to_string()),
        Just("1g.5gb".to_string()),
        Just("7g.40gb".to_string()),
        Just("0:0".to_string()),
        Just("GPU-00000000-1111-2222-3333-444444444444".to_string()),
        Just("8Gi".to_string()),
        Just("1e30".to_string()),
        Just("-5".to_string()),
        Just("NaN".to_string()),
        Just("0x20B010DE".to_string()),
        Just("mixed".to_string()),
        Just("v1".to_string()),
        "[a-zA-Z0-9./:+_-]{0,12}",
        "\\PC{0,16}",
    ];
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        ints.prop_map(|n| u64::try_from(n).map_or(Value::Int(n), Value::UInt)),
        Just(Value::UInt(u64::MAX)),
        any::<f64>().prop_map(Value::Float),
        words.prop_map(Value::String),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Sequence),
            prop::collection::vec(("[a-zA-Z-]{1,10}", inner), 0..4).prop_map(|kv| {
                let mut m = Vec::new();
                for (k, v) in kv {
                    insert(&mut m, Value::String(k), v);
                }
                Value::Mapping(m)
            }),
        ]
    })
}

/// Sets `k` in a mapping's entries: in place where present (as a mapping
/// type would), else at the end.
fn insert(m: &mut Vec<(Value, Value)>, k: Value, v: Value) {
    match m.iter_mut().find(|(key, _)| *key == k) {
        Some((_, old)) => *old = v,
        None => m.push((k, v)),
    }
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => value().prop_map(Mutation::Replace),
        2 => Just(Mutation::Delete),
        2 => Just(Mutation::Duplicate),
        1 => ("[a-zA-Z-]{1,10}", value()).prop_map(|(k, v)| Mutation::AddKey(k, v)),
        1 => Just(Mutation::Wrap),
    ]
}

#[derive(Debug, Clone)]
enum Step {
    Key(Value),
    Index(usize),
}

fn node_steps(v: &Value) -> Vec<Vec<Step>> {
    fn walk(v: &Value, at: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
        out.push(at.clone());
        match v {
            Value::Mapping(m) => {
                for (k, v) in m {
                    at.push(Step::Key(k.clone()));
                    walk(v, at, out);
                    at.pop();
                }
            }
            Value::Sequence(s) => {
                for (i, v) in s.iter().enumerate() {
                    at.push(Step::Index(i));
                    walk(v, at, out);
                    at.pop();
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, &mut Vec::new(), &mut out);
    out
}

fn node_mut<'a>(v: &'a mut Value, steps: &[Step]) -> Option<&'a mut Value> {
    let mut cur = v;
    for s in steps {
        cur = match (s, cur) {
            (Step::Key(k), Value::Mapping(m)) => m.iter_mut().find(|(key, _)| key == k).map(|(_, v)| v)?,
            (Step::Index(i), Value::Sequence(s)) => s.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn apply(doc: &mut Value, pick: &Index, m: &Mutation) {
    let all = node_steps(doc);
    let steps = &all[pick.index(all.len())];
    match m {
        Mutation::Replace(v) => {
            if let Some(n) = node_mut(doc, steps) {
                *n = v.clone();
            }
        }
        Mutation::Wrap => {
            if let Some(n) = node_mut(doc, steps) {
                *n = Value::Sequence(vec![n.clone()]);
            }
        }
        Mutation::AddKey(k, v) => {
            if let Some(Value::Mapping(map)) = node_mut(doc, steps) {
                insert(map, Value::String(k.clone()), v.clone());
            }
        }
        Mutation::Delete | Mutation::Duplicate => {
            let Some((last, parent)) = steps.split_last() else {
                return;
            };
            match (node_mut(doc, parent), last, m) {
                (Some(Value::Mapping(map)), Step::Key(k), Mutation::Delete) => {
                    map.retain(|(key, _)| key != k);
                }
                (Some(Value::Sequence(s)), Step::Index(i), Mutation::Delete) => {
                    s.remove(*i);
                }
                (Some(Value::Sequence(s)), Step::Index(i), Mutation::Duplicate) => {
                    let item = s[*i].clone();
                    s.insert(*i + 1, item);
                }
                _ => {}
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Text mutations.

#[derive(Debug, Clone)]
enum TextEdit {
    Delete(Index, usize),
    Insert(Index, &'static str),
    DupLine(Index),
    DropLine(Index),
}

const SNIPPETS: &[&str] = &[
    "&a ",
    "*a",
    "*a\n",
    ": ",
    "\n- ",
    "[",
    "]",
    "{",
    "}",
    ",",
    "99999999999999999999",
    "2147483648",
    "-1",
    "\t",
    "\0",
    "~",
    "!!binary aGk=",
    "!!str ",
    "<<: *a\n",
    "'",
    "\"",
    "#",
    "---\n",
    "...\n",
    "? ",
    "|\n  x\n",
    ">-\n",
    "\u{feff}",
    "replicas: 2147483648\n",
    "  - name: gpu\n    replicas: 2\n",
    "devices: [0, 0]\n",
    "mig-devices: {\"1g.5gb\": 4294967295}\n",
    "%YAML 1.2\n",
    "  ",
    "\n",
];

fn text_edit() -> impl Strategy<Value = TextEdit> {
    prop_oneof![
        (any::<Index>(), 1usize..24).prop_map(|(i, n)| TextEdit::Delete(i, n)),
        (any::<Index>(), prop::sample::select(SNIPPETS)).prop_map(|(i, s)| TextEdit::Insert(i, s)),
        any::<Index>().prop_map(TextEdit::DupLine),
        any::<Index>().prop_map(TextEdit::DropLine),
    ]
}

fn edit_text(text: &str, edits: &[TextEdit]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for e in edits {
        match e {
            TextEdit::Delete(at, n) if !chars.is_empty() => {
                let i = at.index(chars.len());
                let end = (i + n).min(chars.len());
                chars.drain(i..end);
            }
            TextEdit::Insert(at, s) => {
                let i = at.index(chars.len() + 1);
                chars.splice(i..i, s.chars());
            }
            TextEdit::DupLine(at) | TextEdit::DropLine(at) => {
                let s: String = chars.iter().collect();
                let mut lines: Vec<&str> = s.split_inclusive('\n').collect();
                if lines.is_empty() {
                    continue;
                }
                let i = at.index(lines.len());
                if matches!(e, TextEdit::DupLine(_)) {
                    lines.insert(i, lines[i]);
                } else {
                    lines.remove(i);
                }
                chars = lines.concat().chars().collect();
            }
            TextEdit::Delete(..) => {}
        }
    }
    chars.into_iter().collect()
}

// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    #[test]
    fn device_plugin_config_mutated_structurally(
        seed in any::<Index>(),
        edits in prop::collection::vec((any::<Index>(), mutation()), 1..4),
    ) {
        let seeds = dp_seeds();
        let mut doc: Value = serde_saphyr::from_str(&seeds[seed.index(seeds.len())]).unwrap();
        for (pick, m) in &edits {
            apply(&mut doc, pick, m);
        }
        let text = serde_saphyr::to_string(&doc).unwrap();
        match DevicePluginConfig::from_yaml(&text) {
            Ok(c) => check_device_plugin_expansion(&c),
            Err(e) => check_refusal_in(&e, &doc),
        }
    }

    #[test]
    fn mig_parted_config_mutated_structurally(
        seed in any::<Index>(),
        edits in prop::collection::vec((any::<Index>(), mutation()), 1..4),
    ) {
        let seeds = mp_seeds();
        let mut doc: Value = serde_saphyr::from_str(&seeds[seed.index(seeds.len())]).unwrap();
        for (pick, m) in &edits {
            apply(&mut doc, pick, m);
        }
        let text = serde_saphyr::to_string(&doc).unwrap();
        match MigPartedConfig::from_yaml(&text) {
            Ok(c) => check_mig_parted_targets(&c),
            Err(e) => check_refusal_in(&e, &doc),
        }
    }

    #[test]
    fn shipped_configs_mutated_as_text(
        seed in any::<Index>(),
        edits in prop::collection::vec(text_edit(), 1..6),
    ) {
        let dp = dp_seeds();
        device_plugin_outcome(&edit_text(&dp[seed.index(dp.len())], &edits));
        let mp = mp_seeds();
        mig_parted_outcome(&edit_text(&mp[seed.index(mp.len())], &edits));
    }

    #[test]
    fn arbitrary_text(text in prop_oneof![
        "\\PC{0,200}",
        "[-a-z0-9:{}\\[\\],&*!|>'\"#\\n ]{0,300}",
        "(version: v1\n)?(sharing:\n  (timeSlicing|mps):\n    resources:\n(    - name: [a-z./-]{0,12}\n      replicas: [0-9]{1,12}\n){0,4})?",
    ]) {
        device_plugin_outcome(&text);
        mig_parted_outcome(&text);
    }

    /// Sharing sections built from the fields' whole ranges: whatever is
    /// accepted expands within the bounds on every inventory.
    #[test]
    fn generated_sharing_configs_expand_within_bounds(
        key in prop::sample::select(&["timeSlicing", "mps"][..]),
        mig in prop::sample::select(&["none", "single", "mixed"][..]),
        rename_by_default in any::<bool>(),
        entries in prop::collection::vec(
            (
                prop::sample::select(&["gpu", "nvidia.com/gpu", "mig-1g.5gb", "nvidia.com/mig-3g.20gb", "mig-2g.10gb", "other"][..]),
                prop_oneof![2u64..=4096, Just(u64::from(u32::MAX)), Just(2_147_483_648), any::<u64>()],
                prop_oneof![
                    Just("all".to_string()),
                    (1u64..=16).prop_map(|n| n.to_string()),
                    prop::collection::vec(prop::sample::select(&["0", "1", "7", "1:0", "2:1", "0:6"][..]), 1..4)
                        .prop_map(|l| format!("[{}]", l.iter().map(|x| format!("\"{x}\"")).collect::<Vec<_>>().join(", "))),
                ],
                prop::option::of(prop::sample::select(&["1Mi", "512Mi", "4Gi", "40Gi", "16Ti"][..])),
            ),
            1..4,
        ),
    ) {
        let mut text = format!(
            "version: v1\nflags:\n  migStrategy: {mig}\nsharing:\n  {key}:\n    renameByDefault: {rename_by_default}\n    resources:\n"
        );
        for (name, replicas, devices, memory) in &entries {
            text.push_str(&format!("    - name: {name}\n      replicas: {replicas}\n      devices: {devices}\n"));
            if let Some(m) = memory {
                text.push_str(&format!("      memoryPerReplica: {m}\n"));
            }
        }
        match DevicePluginConfig::from_yaml(&text) {
            Ok(c) => {
                for r in c.replicated().1.into_iter().flat_map(|r| &r.resources) {
                    prop_assert!(r.replicas <= MAX_REPLICAS);
                }
                check_device_plugin_expansion(&c);
            }
            Err(e) => {
                check_refusal(&e);
                prop_assert!(e.path().starts_with("sharing.") || e.path().starts_with("flags."), "{e}");
            }
        }
    }

    /// No false refusals: any alias-free document (the serializer writes none)
    /// fits the expansion budget, however dense.
    #[test]
    fn alias_free_documents_fit_the_budget(v in value()) {
        let doc = format!("version: v1\nhealth:\n  criticalXIDs:\n{}", indent(&serde_saphyr::to_string(&v).unwrap()));
        if let Err(e) = DevicePluginConfig::from_yaml(&doc) {
            prop_assert!(!e.to_string().contains("YAML aliases"), "{e}\n{doc}");
        }
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}

// ---------------------------------------------------------------------------
// Alias bombs and nesting.

#[test]
fn nested_alias_bomb_is_refused() {
    // "Billion laughs": 10^9 strings from nine lines.
    let mut doc = String::from(
        "version: v1\nhealth:\n  criticalXIDs:\n    - &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n",
    );
    for i in 1..9 {
        let refs = vec![format!("*l{}", i - 1); 10].join(", ");
        doc.push_str(&format!("    - &l{i} [{refs}]\n"));
    }
    let e = DevicePluginConfig::from_yaml(&doc).unwrap_err();
    check_refusal(&e);
    assert!(e.path().starts_with("health.criticalXIDs"), "{e}");
}

#[test]
fn wide_alias_bombs_are_refused() {
    // One anchored list referenced many times: 250,000 values, well inside
    // the YAML library's own alias limit (a million replayed events).
    let list = vec!["1"; 500].join(", ");
    let doc = format!(
        "version: v1\nhealth:\n  criticalXIDs:\n    - &a [{list}]\n{}",
        "    - *a\n".repeat(500)
    );
    let e = DevicePluginConfig::from_yaml(&doc).unwrap_err();
    assert!(
        e.path().starts_with("health.criticalXIDs") && e.to_string().contains("YAML aliases"),
        "{e}"
    );

    // The same through a typed field: every entry's `devices` the same
    // long list.
    let ids = vec!["\"0\""; 1000].join(", ");
    let mut doc = format!(
        "version: v1\nsharing:\n  timeSlicing:\n    resources:\n    - name: g0\n      replicas: 2\n      devices: &d [{ids}]\n"
    );
    for i in 1..300 {
        doc.push_str(&format!("    - {{name: g{i}, replicas: 2, devices: *d}}\n"));
    }
    let e = DevicePluginConfig::from_yaml(&doc).unwrap_err();
    assert!(
        e.path().starts_with("sharing.timeSlicing.resources[") && e.to_string().contains("YAML aliases"),
        "{e}"
    );

    // mig-parted: many named configs, each the same long entry list.
    let entry = "  - devices: all\n    mig-enabled: false\n";
    let doc = format!(
        "version: v1\nmig-configs:\n  c0: &e\n{}{}",
        entry
            .repeat(200)
            .replace("  - ", "    - ")
            .replace("\n    mig", "\n      mig"),
        (1..2000).map(|i| format!("  c{i}: *e\n")).collect::<String>()
    );
    let e = MigPartedConfig::from_yaml(&doc).unwrap_err();
    assert!(
        e.path().starts_with("mig-configs") && e.to_string().contains("YAML aliases"),
        "{e}"
    );
}

#[test]
fn modest_aliases_still_work() {
    let c = DevicePluginConfig::from_yaml(
        "version: v1\nsharing:\n  timeSlicing:\n    resources:\n    - name: gpu\n      replicas: &n 4\n    - name: nvidia.com/mig-1g.5gb\n      replicas: *n\n",
    )
    .unwrap();
    assert_eq!(c.replicated().1.unwrap().resources[1].replicas, 4);
    let m = MigPartedConfig::from_yaml(
        "version: v1\nmig-configs:\n  a: &x\n    - devices: all\n      mig-enabled: false\n  b: *x\n",
    )
    .unwrap();
    assert_eq!(m.names().count(), 2);
}

#[test]
fn deep_nesting_is_refused_without_overflowing_the_stack() {
    // Deeper than the parser's nesting limit (255 flow collections), short
    // of the flow-work bound, so the parser runs and refuses.
    let depth = 1_000;
    let doc = format!(
        "version: v1\nhealth:\n  criticalXIDs: {}{}\n",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    let e = DevicePluginConfig::from_yaml(&doc).unwrap_err();
    check_refusal(&e);
    assert!(e.to_string().contains("recursion limit"), "{e}");
    let doc = format!(
        "version: v1\nmig-configs: {}{}\n",
        "{a: ".repeat(depth),
        "}".repeat(depth)
    );
    let e = MigPartedConfig::from_yaml(&doc).unwrap_err();
    check_refusal(&e);
    // Far deeper is refused before the parser runs at all (the bound was
    // set for libyaml, whose scanner's work grew with the depth per token).
    let depth = 100_000;
    let doc = format!(
        "version: v1\nhealth:\n  criticalXIDs: {}{}\n",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    let e = DevicePluginConfig::from_yaml(&doc).unwrap_err();
    assert!(e.to_string().contains("flow collections"), "{e}");
}
