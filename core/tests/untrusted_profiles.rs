//! Property tests for the parsers a cluster can feed: cpulists, machine
//! profiles as YAML (`--machine`, configs/machines) and as the JSON of the
//! `railyard.dev/gpu-topology` node annotation, and the topology built from
//! them. Each asserts no panic, output bounded by the documented limits (and
//! so by the input), and an error that names a field on refusal. The case
//! budget is fixed so CI time is too.

use proptest::prelude::*;
use railyard_core::machine::{MachineProfile, NumaNode, limits, parse_cpulist};
use railyard_core::topology::NodeTopology;

fn profile_text(stem: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../configs/machines/{stem}.yaml"));
    std::fs::read_to_string(p).expect("profile file")
}

const STEMS: [&str; 5] = ["dgx-h100", "dgx-a100", "a100-pcie-4x", "t4-2x", "dgx-h100-mig"];

/// Vertices and edges of a built topology stay within a constant factor of
/// the profile's own entries: nothing in it is quadratic in the input.
fn assert_linear(p: &MachineProfile, t: &NodeTopology) {
    let entries = p.numa_nodes.len() + p.gpus.len() + p.nics.len() + p.pcie_switches.len() + p.nvlink.links.len();
    let g = t.graph();
    // Each entry adds at most one vertex and two edges, plus one per socket
    // and the fabric / NVSwitch hubs.
    let sockets = p.numa_nodes.len();
    assert!(
        g.node_count() <= 2 * entries + sockets + 2,
        "{} vertices for {entries} entries",
        g.node_count()
    );
    assert!(
        g.edge_count() <= 3 * entries + sockets + 2,
        "{} edges for {entries} entries",
        g.edge_count()
    );
}

/// A refusal names the field it is about.
fn assert_names_a_field(e: &railyard_core::yaml::ConfigError) {
    assert!(!e.path().is_empty(), "{e}");
    assert!(e.to_string().starts_with("machine profile: "), "{e}");
}

fn cpulist_part() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<u32>().prop_map(|a| a.to_string()),
        (any::<u32>(), any::<u32>()).prop_map(|(a, b)| format!("{a}-{b}")),
        (0u32..9000, 0u32..9000).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
        "[0-9a-z ,\\-]{0,12}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// A cpulist expands to at most `MAX_CPUS` ids below `MAX_CPUS`,
    /// whatever it says; `0-4294967295` is refused, not expanded.
    #[test]
    fn cpulists_are_bounded(parts in prop::collection::vec(cpulist_part(), 0..12)) {
        let text = parts.join(",");
        match parse_cpulist(&text) {
            Ok(cpus) => {
                prop_assert!(cpus.len() <= limits::MAX_CPUS as usize);
                prop_assert!(cpus.iter().all(|&c| c < limits::MAX_CPUS));
            }
            Err(e) => prop_assert!(e.contains('`') || e.contains("more than"), "{e}"),
        }
    }
}

/// Replaces the `n`th occurrence of a digit run with `with`.
fn replace_number(text: &str, n: usize, with: &str) -> String {
    let bytes = text.as_bytes();
    let mut runs = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            runs.push((start, i));
        } else {
            i += 1;
        }
    }
    if runs.is_empty() {
        return text.to_string();
    }
    let (a, b) = runs[n % runs.len()];
    format!("{}{with}{}", &text[..a], &text[b..])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Mutated profile files: a number replaced by a hostile one, a byte
    /// changed, a span deleted. Parsing never panics, refusals name a field,
    /// and what is accepted builds a topology linear in its size.
    #[test]
    fn mutated_profile_files_parse_or_name_the_field(
        stem in 0usize..STEMS.len(),
        which in 0u8..3,
        at in any::<usize>(),
        len in 0usize..40,
        number in prop_oneof![
            Just("4294967295".to_string()),
            Just("18446744073709551615".to_string()),
            Just("-1".to_string()),
            Just("0".to_string()),
            (0u64..100_000).prop_map(|n| n.to_string()),
        ],
        byte in any::<u8>(),
    ) {
        let text = profile_text(STEMS[stem]);
        let mutated = match which {
            0 => replace_number(&text, at, &number),
            1 => {
                let mut b = text.clone().into_bytes();
                let i = at % b.len();
                b[i] = byte;
                String::from_utf8_lossy(&b).into_owned()
            }
            _ => {
                let i = at % text.len();
                let j = (i + len).min(text.len());
                let boundary = |mut k: usize| {
                    while !text.is_char_boundary(k) {
                        k -= 1;
                    }
                    k
                };
                let (i, j) = (boundary(i), boundary(j));
                format!("{}{}", &text[..i], &text[j..])
            }
        };
        match MachineProfile::from_yaml(&mutated) {
            Ok(p) => {
                if let Ok(t) = NodeTopology::from_profile(&p) {
                    assert_linear(&p, &t);
                }
            }
            Err(e) => assert_names_a_field(&e),
        }
    }

    /// Profiles as the annotation carries them, with counts far past the
    /// limits: refused at the limit with the field, or built linearly.
    #[test]
    fn annotation_profiles_with_hostile_counts_are_bounded(
        stem in 0usize..STEMS.len(),
        numa in prop_oneof![0usize..4, 1000usize..1100, 5000usize..6500],
        cpus in prop_oneof![
            Just("0-4294967295".to_string()),
            Just("0-8191".to_string()),
            Just("0-3".to_string()),
            Just(String::new()),
        ],
        copies in prop_oneof![1usize..3, 60usize..70, 250usize..300],
    ) {
        let mut p = MachineProfile::from_yaml(&profile_text(STEMS[stem])).expect("shipped profile");
        if numa > 0 {
            p.numa_nodes = (0..numa)
                .map(|id| NumaNode { id: id as u32, cpus: cpus.clone(), socket: (id % 4) as u32 })
                .collect();
            for g in &mut p.gpus {
                g.numa_node = 0;
            }
            for n in &mut p.nics {
                n.numa_node = 0;
            }
            for s in &mut p.pcie_switches {
                s.numa_node = 0;
            }
        }
        // More GPUs: copies of the first, with fresh indices and UUIDs.
        let first = p.gpus[0].clone();
        for i in p.gpus.len()..p.gpus.len() * copies {
            let mut g = first.clone();
            g.index = 1000 + i as u32;
            g.uuid = format!("GPU-copy-{i}");
            g.pci_bus_id = format!("{:04x}:{:02x}:00.0", i / 256, i % 256);
            g.mig_enabled = false;
            g.mig_instances.clear();
            p.gpus.push(g);
        }
        let json = serde_json::to_string(&p).expect("json");
        let p: MachineProfile = serde_json::from_str(&json).expect("round trip");
        match p.validate() {
            Ok(()) => {
                prop_assert!(p.numa_nodes.len() <= limits::MAX_NUMA_NODES);
                prop_assert!(p.gpus.len() <= limits::MAX_GPUS);
                let total: usize = p
                    .numa_nodes
                    .iter()
                    .map(|n| parse_cpulist(&n.cpus).map_or(0, |c| c.len()))
                    .sum();
                prop_assert!(total <= limits::MAX_CPUS as usize);
                if let Ok(t) = NodeTopology::from_profile(&p) {
                    assert_linear(&p, &t);
                }
            }
            Err(e) => {
                assert_names_a_field(&e);
                // Whatever was refused, the topology builder refuses it too
                // or builds it within bounds: it never expands past them.
                if let Ok(t) = NodeTopology::from_profile(&p) {
                    assert_linear(&p, &t);
                }
            }
        }
    }
}
