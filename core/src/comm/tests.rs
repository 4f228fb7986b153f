use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::fabric::{Fabric, GpuRef};
use crate::machine::MachineProfile;
use crate::topology::NodeTopology;

pub(crate) fn machines() -> BTreeMap<String, NodeTopology> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/machines");
    ["dgx-h100", "a100-pcie-4x", "dgx-a100"]
        .iter()
        .map(|m| {
            let p = dir.join(format!("{m}.yaml"));
            let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            let prof = MachineProfile::from_yaml(&text).expect("profile");
            (prof.name.clone(), NodeTopology::from_profile(&prof).expect("topology"))
        })
        .collect()
}

/// Two DGX H100 scalable units of 4 nodes (`a0..a3`, `b0..b3`) under a 2:1
/// core, and one unit of 4 × A100-PCIe boxes (`p0..p3`, two rails).
pub(crate) const CLUSTER: &str = r#"
name: test
tiers:
  - {name: leaf, link_gbps: 400}
  - {name: spine, link_gbps: 400}
  - {name: core, link_gbps: 400, oversubscription: 2}
groups:
  - {pattern: "a{i}", count: 4, machine: dgx-h100, rails: 8, switches: ["su1-rail{rail}", "su1-spine", "core"]}
  - {pattern: "b{i}", count: 4, machine: dgx-h100, rails: 8, switches: ["su2-rail{rail}", "su2-spine", "core"]}
  - {pattern: "p{i}", count: 4, machine: a100-pcie-4x, rails: 2, switches: ["pc-rail{rail}", "pc-spine", "core"]}
"#;

pub(crate) fn fabric() -> Fabric {
    Fabric::from_yaml(CLUSTER).expect("cluster")
}

fn ranks<'a>(spec: &[(&'a str, &[u32])]) -> Vec<GpuRef<'a>> {
    spec.iter()
        .flat_map(|(n, gs)| gs.iter().map(move |&g| GpuRef::new(n, g)))
        .collect()
}

fn est(spec: &[(&str, &[u32])]) -> CommEstimate {
    estimate(&fabric(), &machines(), &ranks(spec)).expect("estimate")
}

const ALL8: &[u32] = &[0, 1, 2, 3, 4, 5, 6, 7];

#[test]
fn one_h100_node_matches_nccl_tests_nvls() {
    let e = est(&[("a0", ALL8)]);
    assert_eq!(e.algorithm, Algorithm::Nvls);
    assert!((450.0..=480.0).contains(&e.busbw_gbps), "{e:?}");
    assert_eq!(e.nodes, 1);
}

#[test]
fn two_h100_nodes_on_one_leaf_match_multi_node_ring() {
    let e = est(&[("a0", ALL8), ("a1", ALL8)]);
    assert_eq!(e.algorithm, Algorithm::Ring);
    assert!((370.0..=385.0).contains(&e.busbw_gbps), "{e:?}");
    assert_eq!(e.max_tier, Some(0));
    assert_eq!(e.rail_mismatches, 0);
}

#[test]
fn oversubscription_divides_cross_core_bandwidth() {
    let inside = est(&[("a0", ALL8), ("a1", ALL8)]).busbw_gbps;
    let across = est(&[("a0", ALL8), ("b0", ALL8)]);
    assert_eq!(across.max_tier, Some(2));
    assert!((across.busbw_gbps - inside / 2.0).abs() < 1e-6, "{across:?}");
}

#[test]
fn full_nodes_beat_half_nodes_on_nvswitch() {
    let full = est(&[("a0", ALL8), ("a1", ALL8)]).busbw_gbps;
    let half = est(&[
        ("a0", &[0, 1, 2, 3]),
        ("a1", &[0, 1, 2, 3]),
        ("a2", &[0, 1, 2, 3]),
        ("a3", &[0, 1, 2, 3]),
    ])
    .busbw_gbps;
    assert!(full > 1.9 * half, "full {full} half {half}");
}

#[test]
fn three_of_four_beats_four_of_four_on_pcie_boxes() {
    let four = est(&[("p0", &[0, 1, 2, 3]), ("p1", &[0, 1, 2, 3]), ("p2", &[0, 1, 2, 3])]);
    let three = est(&[
        ("p0", &[0, 1, 2]),
        ("p1", &[0, 1, 2]),
        ("p2", &[0, 1, 2]),
        ("p3", &[0, 1, 2]),
    ]);
    assert!(three.busbw_gbps > 1.2 * four.busbw_gbps, "3/4 {three:?} 4/4 {four:?}");
    assert!(four.host_contention < 1.0 && three.host_contention == 1.0);
    // Fewer than three per node gives up NICs or NVLink bridges for nothing.
    let two = est(&[("p0", &[0, 1]), ("p1", &[0, 1]), ("p2", &[0, 1]), ("p3", &[0, 1])]);
    assert!(three.busbw_gbps > two.busbw_gbps, "3/4 {three:?} 2/4 {two:?}");
}

#[test]
fn node_share_prefers_three_per_pcie_box_and_eight_per_dgx() {
    let m = machines();
    let pcie = &m["a100-pcie-4x"];
    let share = |gs: &[u32]| node_share_gbps(pcie, gs);
    assert!(share(&[0, 1, 2]) > share(&[0, 1, 2, 3]));
    assert!(share(&[0, 1, 2]) > share(&[0, 1]));
    let dgx = &m["dgx-h100"];
    assert!(node_share_gbps(dgx, ALL8) > node_share_gbps(dgx, &[0, 1, 2, 3]));
}

#[test]
fn zig_zag_ranks_lose_the_ring_and_fall_back_to_tree() {
    let contiguous = est(&[("a0", &[0, 1]), ("a1", &[0, 1])]);
    let zigzag = est(&[("a0", &[0]), ("a1", &[0]), ("a0", &[1]), ("a1", &[1])]);
    assert!(zigzag.ring_gbps < contiguous.ring_gbps / 1.5, "{zigzag:?}");
    assert_eq!(zigzag.algorithm, Algorithm::Tree);
    assert!(zigzag.busbw_gbps < contiguous.busbw_gbps);
}

#[test]
fn misaligned_rails_cross_the_spine_at_full_speed_when_it_is_not_oversubscribed() {
    let aligned = est(&[("a0", &[0, 1, 2, 3]), ("a1", &[0, 1, 2, 3])]);
    let crossed = est(&[("a0", &[0, 1, 2, 3]), ("a1", &[4, 5, 6, 7])]);
    assert_eq!(crossed.rail_mismatches, 8);
    assert_eq!(crossed.spine_crossings, 2);
    assert_eq!(aligned.spine_crossings, 0);
    assert!((crossed.busbw_gbps - aligned.busbw_gbps).abs() < 1e-9);
}

#[test]
fn one_gpu_has_nothing_to_reduce() {
    let e = est(&[("a0", &[3])]);
    assert_eq!(e.algorithm, Algorithm::None);
    assert!(e.busbw_gbps.is_infinite());
}

#[test]
fn pcie_box_alone_is_limited_by_its_cross_socket_legs() {
    let e = est(&[("p0", &[0, 1, 2, 3])]);
    assert!(
        matches!(e.bottleneck, Bottleneck::Pcie { .. } | Bottleneck::CrossSocket { .. }),
        "{e:?}"
    );
    assert!(e.busbw_gbps < 40.0);
    let bridged = est(&[("p0", &[0, 1])]);
    assert!(bridged.busbw_gbps > 200.0, "{bridged:?}");
}

#[test]
fn errors_name_the_value() {
    let f = fabric();
    let m = machines();
    assert_eq!(estimate(&f, &m, &[]), Err(CommError::NoRanks));
    assert_eq!(
        estimate(&f, &m, &[GpuRef::new("zz", 0)]),
        Err(CommError::UnknownNode { node: "zz".into() })
    );
    assert_eq!(
        estimate(&f, &m, &[GpuRef::new("a0", 9)]),
        Err(CommError::UnknownGpu {
            node: "a0".into(),
            gpu: 9
        })
    );
    assert_eq!(
        estimate(&f, &m, &[GpuRef::new("a0", 1), GpuRef::new("a0", 1)]),
        Err(CommError::DuplicateGpu {
            node: "a0".into(),
            gpu: 1
        })
    );
}

fn placement() -> impl Strategy<Value = Vec<(usize, u32)>> {
    // Distinct (node, gpu) pairs over a0..a3, b0, p0, p1, shuffled.
    proptest::sample::subsequence(
        (0..7usize)
            .flat_map(|n| (0..if n >= 5 { 4 } else { 8 }).map(move |g| (n, g)))
            .collect::<Vec<_>>(),
        2..24,
    )
    .prop_shuffle()
}

const NAMES: [&str; 7] = ["a0", "a1", "a2", "a3", "b0", "p0", "p1"];

proptest! {
    #[test]
    fn estimates_are_bounded_and_symmetric_in_ring_direction(p in placement()) {
        let f = fabric();
        let m = machines();
        let rs: Vec<GpuRef<'_>> = p.iter().map(|&(n, g)| GpuRef::new(NAMES[n], g)).collect();
        let e = estimate(&f, &m, &rs).expect("estimate");
        prop_assert!(e.busbw_gbps > 0.0 && e.busbw_gbps.is_finite());
        prop_assert!(e.busbw_gbps <= 450.0 * calibration::NVLS_EFFICIENCY + 1e-9);
        prop_assert!(e.busbw_gbps >= e.ring_gbps);
        let mut rev = rs.clone();
        rev.reverse();
        let r = estimate(&f, &m, &rev).expect("estimate");
        prop_assert!((r.ring_gbps - e.ring_gbps).abs() < 1e-9, "{:?} vs {:?}", e, r);
        prop_assert!((r.busbw_gbps - e.busbw_gbps).abs() < 1e-9);
    }
}
