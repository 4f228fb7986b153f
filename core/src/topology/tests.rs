use std::collections::BTreeSet;

use proptest::prelude::*;

use super::machine_profiles::load;
use super::*;
use crate::machine::{GpuSpec, MachineProfile, NicSpec, NumaNode, NvLinkPair, NvLinkSpec, PcieSwitch};

fn topo(stem: &str) -> NodeTopology {
    NodeTopology::from_profile(&load(stem)).unwrap()
}

fn set(v: &[u32]) -> BTreeSet<u32> {
    v.iter().copied().collect()
}

fn all_free(t: &NodeTopology) -> BTreeSet<u32> {
    t.gpu_indices().into_iter().collect()
}

#[test]
fn dgx_h100_every_pair_is_full_nvlink() {
    let p = load("dgx-h100");
    let t = NodeTopology::from_profile(&p).unwrap();
    for a in 0..8 {
        for b in 0..8 {
            if a != b {
                assert_eq!(t.nvlink_gbps(a, b).unwrap(), 450, "{a}-{b}");
                assert_eq!(t.nvlink_gbps(a, b).unwrap(), p.nvlink_gbps(a, b));
                assert_eq!(t.bandwidth_gbps(a, b).unwrap(), 450, "{a}-{b}");
            }
        }
    }
}

#[test]
fn dgx_h100_levels_and_nics() {
    let t = topo("dgx-h100");
    // Each switch holds one GPU, on its own host bridge.
    assert_eq!(t.level(0, 1).unwrap(), TopologyLevel::Node);
    assert_eq!(t.level(0, 4).unwrap(), TopologyLevel::System);
    assert_eq!(t.level(3, 3).unwrap(), TopologyLevel::Internal);
    assert_eq!(t.gpu_nic_level(0, "mlx5_0").unwrap(), TopologyLevel::Single);
    assert_eq!(t.gpu_nic_level(0, "mlx5_3").unwrap(), TopologyLevel::Node);
    assert_eq!(t.gpu_nic_level(0, "mlx5_6").unwrap(), TopologyLevel::System);
    let n = t.nearest_nic(5, None).unwrap().unwrap();
    assert_eq!(
        (n.name.as_str(), n.rail, n.level),
        ("mlx5_9", Some(5), TopologyLevel::Single)
    );
    // 400 Gb/s port = 50 GB/s, below the Gen5 x16 links.
    assert_eq!(n.gbps, 50);
    // With its own NIC taken, GPU 5 falls back to a rail NIC on the same NUMA node.
    let free: BTreeSet<String> = ["mlx5_6", "mlx5_0", "mlx5_7"].iter().map(|s| s.to_string()).collect();
    let n = t.nearest_nic(5, Some(&free)).unwrap().unwrap();
    assert_eq!((n.name.as_str(), n.level), ("mlx5_6", TopologyLevel::Node));
    assert_eq!(t.gpus_by_numa()[&0], vec![0, 1, 2, 3]);
    assert_eq!(t.gpus_on_numa(1).unwrap(), vec![4, 5, 6, 7]);
    assert_eq!(t.gpu_numa(6).unwrap(), 1);
}

#[test]
fn dgx_h100_best_two_share_numa_and_have_nics() {
    let t = topo("dgx-h100");
    let c = Constraints::default();
    let two = t.best_gpus(2, &all_free(&t), &c).unwrap();
    assert_eq!(two, vec![0, 1]);
    for g in &two {
        let n = t.nearest_nic(*g, None).unwrap().unwrap();
        assert_eq!(n.level, TopologyLevel::Single, "GPU {g}");
    }
    assert_eq!(t.gpu_numa(two[0]).unwrap(), t.gpu_numa(two[1]).unwrap());

    // With GPU 0's NIC taken, GPU 0 no longer has a free NIC on its switch.
    let nics: BTreeSet<String> = t
        .nic_names()
        .into_iter()
        .filter(|n| *n != "mlx5_0")
        .map(str::to_string)
        .collect();
    let c = Constraints {
        free_nics: Some(nics),
        ..Constraints::default()
    };
    assert_eq!(t.best_gpus(2, &all_free(&t), &c).unwrap(), vec![1, 2]);

    // Only GPUs 3 and 4 free on NUMA 0/1: crossing is unavoidable.
    assert_eq!(
        t.best_gpus(2, &set(&[3, 4, 5]), &Constraints::default()).unwrap(),
        vec![4, 5]
    );
}

#[test]
fn dgx_h100_best_four_stays_on_one_numa_node() {
    let t = topo("dgx-h100");
    let four = t.best_gpus(4, &all_free(&t), &Constraints::default()).unwrap();
    assert_eq!(four, vec![0, 1, 2, 3]);
    let free = set(&[1, 2, 4, 5, 6, 7]);
    let four = t.best_gpus(4, &free, &Constraints::default()).unwrap();
    assert_eq!(four, vec![4, 5, 6, 7]);
    for _ in 0..3 {
        assert_eq!(
            t.best_gpus(4, &free, &Constraints::default()).unwrap(),
            four,
            "deterministic"
        );
    }
    // Heuristic and exhaustive search agree here.
    assert_eq!(t.best_gpus_heuristic(4, &free, &Constraints::default()).unwrap(), four);
    assert_eq!(
        t.best_gpus_heuristic(2, &all_free(&t), &Constraints::default())
            .unwrap(),
        vec![0, 1]
    );
}

#[test]
fn dgx_h100_constraints() {
    let t = topo("dgx-h100");
    let free = all_free(&t);
    let c = Constraints {
        must_include: set(&[6]),
        ..Constraints::default()
    };
    assert_eq!(t.best_gpus(2, &free, &c).unwrap(), vec![4, 6]);
    let c = Constraints {
        numa_node: Some(1),
        ..Constraints::default()
    };
    assert_eq!(t.best_gpus(3, &free, &c).unwrap(), vec![4, 5, 6]);
    let c = Constraints {
        single_numa: true,
        ..Constraints::default()
    };
    assert_eq!(t.best_gpus(3, &set(&[0, 1, 4, 5, 6]), &c).unwrap(), vec![4, 5, 6]);
    assert_eq!(
        t.best_gpus(5, &free, &c).unwrap_err(),
        TopologyError::NoSingleNumaFit { k: 5 }
    );
}

#[test]
fn best_gpus_errors_name_the_value() {
    let t = topo("dgx-h100");
    let free = set(&[0, 1, 2]);
    let d = Constraints::default();
    assert_eq!(
        t.best_gpus(4, &free, &d).unwrap_err(),
        TopologyError::NotEnoughFree { k: 4, free: 3 }
    );
    assert_eq!(
        t.best_gpus(1, &set(&[0, 9]), &d).unwrap_err(),
        TopologyError::UnknownGpu { gpu: 9 }
    );
    let c = Constraints {
        must_include: set(&[5]),
        ..Constraints::default()
    };
    let e = t.best_gpus(2, &free, &c).unwrap_err();
    assert_eq!(e, TopologyError::MustIncludeNotFree { gpu: 5 });
    assert_eq!(e.to_string(), "GPU 5 must be included but is not free");
    let c = Constraints {
        must_include: set(&[0, 1]),
        ..Constraints::default()
    };
    assert_eq!(
        t.best_gpus(1, &free, &c).unwrap_err(),
        TopologyError::MustIncludeTooMany { count: 2, k: 1 }
    );
    let c = Constraints {
        free_nics: Some(["mlx5_99".to_string()].into()),
        ..Constraints::default()
    };
    assert_eq!(
        t.best_gpus(1, &free, &c).unwrap_err(),
        TopologyError::UnknownNic { nic: "mlx5_99".into() }
    );
    let c = Constraints {
        numa_node: Some(7),
        ..Constraints::default()
    };
    assert_eq!(
        t.best_gpus(1, &free, &c).unwrap_err(),
        TopologyError::NoSuchNumaNode { numa: 7 }
    );
    let c = Constraints {
        numa_node: Some(1),
        ..Constraints::default()
    };
    assert_eq!(
        t.best_gpus(1, &free, &c).unwrap_err(),
        TopologyError::NumaNodeTooSmall { numa: 1, free: 0, k: 1 }
    );
    let c = Constraints {
        numa_node: Some(1),
        must_include: set(&[0]),
        ..Constraints::default()
    };
    let e = t.best_gpus(1, &set(&[0, 4]), &c).unwrap_err();
    assert_eq!(
        e,
        TopologyError::MustIncludeOffNuma {
            gpu: 0,
            gpu_numa: 0,
            numa: 1
        }
    );
    assert_eq!(t.best_gpus(0, &free, &d).unwrap(), Vec::<u32>::new());
    assert_eq!(t.score(&[1, 1], &d).unwrap_err(), TopologyError::RepeatedGpu { gpu: 1 });
    assert_eq!(
        t.level(0, 8).unwrap_err().to_string(),
        "no GPU with index 8 on this node"
    );
}

#[test]
fn dgx_a100_pairs_gpus_with_nics_in_switch_trees() {
    let t = topo("dgx-a100");
    assert_eq!(t.nvlink_gbps(0, 7).unwrap(), 300);
    // GPU and NIC sit on sibling sub-switches of one tree: PXB, as nvidia-smi shows.
    assert_eq!(t.gpu_nic_level(0, "mlx5_0").unwrap(), TopologyLevel::Multiple);
    assert_eq!(t.gpu_nic_level(0, "mlx5_1").unwrap(), TopologyLevel::Multiple);
    assert_eq!(t.gpu_nic_level(0, "mlx5_2").unwrap(), TopologyLevel::System);
    assert_eq!(t.level(0, 1).unwrap(), TopologyLevel::Multiple);
    assert_eq!(t.level(0, 2).unwrap(), TopologyLevel::System);
    let n = t.nearest_nic(3, None).unwrap().unwrap();
    assert_eq!((n.name.as_str(), n.rail), ("mlx5_2", Some(2)));
    assert_eq!(n.gbps, 25);
    assert_eq!(
        t.best_gpus(2, &all_free(&t), &Constraints::default()).unwrap(),
        vec![0, 1]
    );
    // Four GPUs span two NUMA nodes at best (NPS4: two GPUs per node); stay on one socket.
    let four = t.best_gpus(4, &all_free(&t), &Constraints::default()).unwrap();
    assert_eq!(four, vec![0, 1, 2, 3]);
    assert_eq!(t.score(&four, &Constraints::default()).unwrap().sockets, 1);
    assert_eq!(t.gpus_by_numa()[&3], vec![0, 1]);
    assert_eq!(t.gpus_by_numa()[&0], Vec::<u32>::new());
}

#[test]
fn a100_pcie_picks_bridged_pairs() {
    let t = topo("a100-pcie-4x");
    assert_eq!(t.nvlink_gbps(0, 1).unwrap(), 300);
    assert_eq!(t.nvlink_gbps(1, 2).unwrap(), 0);
    let two = t.best_gpus(2, &all_free(&t), &Constraints::default()).unwrap();
    assert!(two == vec![0, 1] || two == vec![2, 3], "{two:?}");
    assert_eq!(
        t.best_gpus(2, &set(&[0, 2, 3]), &Constraints::default()).unwrap(),
        vec![2, 3]
    );
    assert_eq!(
        t.best_gpus(2, &set(&[0, 1, 2]), &Constraints::default()).unwrap(),
        vec![0, 1]
    );
    // Three free GPUs without a bridged pair among the two chosen is never preferred.
    let three = t.best_gpus(3, &all_free(&t), &Constraints::default()).unwrap();
    assert_eq!(t.score(&three, &Constraints::default()).unwrap().nvlink_gbps, 300);
    // No PCIe switches: GPUs on different root ports of one socket are NODE, across sockets SYS.
    assert_eq!(t.level(0, 1).unwrap(), TopologyLevel::Node);
    assert_eq!(t.level(1, 2).unwrap(), TopologyLevel::System);
    // PCIe path 0 → 2 crosses the sockets: the inter-socket link is the bottleneck.
    assert_eq!(
        t.bandwidth_gbps(0, 2).unwrap(),
        INTER_SOCKET_GBPS.min(PCIE_GEN4_X16_GBPS)
    );
    assert_eq!(t.bandwidth_gbps(0, 1).unwrap(), 300);
    let n = t.nearest_nic(2, None).unwrap().unwrap();
    assert_eq!((n.name.as_str(), n.level), ("mlx5_1", TopologyLevel::Node));
}

#[test]
fn t4_has_no_nvlink_and_one_ethernet_nic() {
    let t = topo("t4-2x");
    assert_eq!(t.nvlink_gbps(0, 1).unwrap(), 0);
    assert_eq!(t.bandwidth_gbps(0, 1).unwrap(), PCIE_GEN3_X16_GBPS);
    assert_eq!(t.level(0, 1).unwrap(), TopologyLevel::Node);
    let n = t.nearest_nic(1, None).unwrap().unwrap();
    assert_eq!((n.name.as_str(), n.rail), ("mlx5_0", None));
    assert_eq!(t.best_gpus(1, &all_free(&t), &Constraints::default()).unwrap(), vec![0]);
    assert_eq!(
        t.best_gpus(2, &all_free(&t), &Constraints::default()).unwrap(),
        vec![0, 1]
    );
}

#[test]
fn graph_has_the_expected_vertices() {
    let t = topo("dgx-h100");
    let g = t.graph();
    let count = |f: fn(&Vertex) -> bool| g.node_weights().filter(|v| f(v)).count();
    assert_eq!(count(|v| matches!(v, Vertex::Gpu(_))), 8);
    assert_eq!(count(|v| matches!(v, Vertex::NvSwitch)), 1);
    assert_eq!(count(|v| matches!(v, Vertex::PcieSwitch(_))), 8);
    assert_eq!(count(|v| matches!(v, Vertex::PcieRoot(_))), 10);
    assert_eq!(count(|v| matches!(v, Vertex::Numa(_))), 2);
    assert_eq!(count(|v| matches!(v, Vertex::Nic(_))), 10);
    let nv = t.vertex(&Vertex::NvSwitch).unwrap();
    assert_eq!(g.edges(nv).count(), 8);
    assert!(
        g.edge_weights()
            .any(|l| l.kind == LinkKind::InterSocket && l.gbps == INTER_SOCKET_GBPS)
    );
    assert!(
        g.edge_weights()
            .filter(|l| l.kind == LinkKind::Pcie)
            .all(|l| l.gbps == PCIE_GEN5_X16_GBPS || l.gbps == 50 || l.gbps == 25)
    );
}

#[test]
fn topology_errors_name_the_device() {
    let mut p = load("a100-pcie-4x");
    p.gpus[1].pcie_root = Some("pci0000:30".into()); // GPU 0's root is on NUMA 0; GPU 1 is on NUMA 0 too: fine
    assert!(NodeTopology::from_profile(&p).is_ok());
    p.gpus[2].pcie_root = Some("pci0000:30".into()); // GPU 2 is on NUMA 1
    let e = NodeTopology::from_profile(&p).unwrap_err();
    assert_eq!(
        e,
        TopologyError::PcieRootNumaConflict {
            root: "pci0000:30".into(),
            first: 0,
            second: 1,
            device: "GPU 2".into()
        }
    );

    let mut p = load("dgx-a100");
    p.pcie_switches[0].parent = Some("plx0-gpu0".into());
    assert_eq!(
        NodeTopology::from_profile(&p).unwrap_err(),
        TopologyError::PcieSwitchCycle { switch: "plx0".into() }
    );

    let mut p = load("dgx-h100");
    p.gpus[0].numa_node = 1;
    let e = NodeTopology::from_profile(&p).unwrap_err();
    assert!(e.to_string().contains("GPU 0") && e.to_string().contains("pex0"), "{e}");
    let mut p = load("dgx-h100");
    p.nics[0].pcie_switch = Some("nope".into());
    let e = NodeTopology::from_profile(&p).unwrap_err();
    assert_eq!(
        e,
        TopologyError::UnknownPcieSwitch {
            device: "NIC \"mlx5_0\"".into(),
            switch: "nope".into()
        }
    );
    let mut p = load("dgx-h100");
    p.gpus[3].index = 2;
    assert_eq!(
        NodeTopology::from_profile(&p).unwrap_err(),
        TopologyError::DuplicateGpu { gpu: 2 }
    );
}

/// A synthetic NVLink domain: `n` H100s on one NVSwitch fabric, four NUMA
/// nodes on two sockets, one NIC per GPU on a shared switch.
fn nvl_domain(n: u32) -> MachineProfile {
    let per_numa = n.div_ceil(4);
    let numa_of = |i: u32| i / per_numa;
    MachineProfile {
        name: format!("nvl{n}"),
        description: String::new(),
        driver_version: "550.54.15".into(),
        cuda_driver_version: 12040,
        numa_nodes: (0..4)
            .map(|id| NumaNode {
                id,
                cpus: format!("{}-{}", id * 32, id * 32 + 31),
                socket: id / 2,
            })
            .collect(),
        pcie_switches: (0..n)
            .map(|i| PcieSwitch {
                id: format!("sw{i}"),
                root: format!("pci{:04x}:00", i),
                numa_node: numa_of(i),
                parent: None,
            })
            .collect(),
        gpus: (0..n)
            .map(|i| GpuSpec {
                index: i,
                product_name: "NVIDIA H100 80GB HBM3".into(),
                pci_device_id: Some(0x2330),
                uuid: format!("GPU-{i:08x}-0000-4000-8000-000000000000"),
                pci_bus_id: format!("{i:04x}:1b:00.0"),
                minor: None,
                numa_node: numa_of(i),
                pcie_switch: Some(format!("sw{i}")),
                pcie_root: None,
                memory_mib: None,
                mig_enabled: false,
                mig_instances: Vec::new(),
            })
            .collect(),
        nvlink: NvLinkSpec {
            nvswitch: true,
            links: Vec::new(),
        },
        nics: (0..n)
            .map(|i| NicSpec {
                name: format!("mlx5_{i}"),
                netdev: None,
                pci_bus_id: format!("{i:04x}:18:00.0"),
                numa_node: numa_of(i),
                pcie_switch: Some(format!("sw{i}")),
                pcie_root: None,
                speed_gbps: 400,
                rail: Some(i % 8),
                link_layer: Default::default(),
            })
            .collect(),
    }
}

#[test]
fn nvl72_domain_best_36_completes() {
    let p = nvl_domain(72);
    p.validate().unwrap();
    let t = NodeTopology::from_profile(&p).unwrap();
    let free: BTreeSet<u32> = (0..72).filter(|i| i % 5 != 3).collect();
    let got = t.best_gpus(36, &free, &Constraints::default()).unwrap();
    assert_eq!(got.len(), 36);
    assert!(got.iter().all(|g| free.contains(g)));
    assert!(got.windows(2).all(|w| w[0] < w[1]));
    let s = t.score(&got, &Constraints::default()).unwrap();
    assert_eq!(s.nvlink_gbps, 450 * 36 * 35 / 2);
    assert_eq!(s.nic_aligned, 36);
    // 18 GPUs per NUMA node, ~14 free each: three nodes are needed, on as few sockets as possible.
    assert_eq!(s.numa_nodes, 3);
    let c = Constraints {
        must_include: set(&[71]),
        ..Constraints::default()
    };
    let got = t.best_gpus(36, &free, &c).unwrap();
    assert!(got.contains(&71));
}

/// A random machine of `n` ≤ 8 GPUs: random NVLink pairs or an NVSwitch,
/// two NUMA nodes, GPUs and NICs on a few switches.
fn arb_machine() -> impl Strategy<Value = MachineProfile> {
    (2u32..=8)
        .prop_flat_map(|n| {
            let pairs = proptest::collection::vec((0..n, 0..n, 1u32..=12), 0..10);
            let switch_of = proptest::collection::vec(0u32..4, n as usize);
            let nic_switches = proptest::collection::vec(0u32..4, 0..4);
            (Just(n), any::<bool>(), pairs, switch_of, nic_switches)
        })
        .prop_map(|(n, nvswitch, pairs, switch_of, nic_switches)| {
            let mut p = nvl_domain(n);
            p.pcie_switches = (0..4)
                .map(|i| PcieSwitch {
                    id: format!("sw{i}"),
                    root: format!("pci0000:{i}0"),
                    numa_node: i / 2,
                    parent: None,
                })
                .collect();
            for (g, s) in p.gpus.iter_mut().zip(&switch_of) {
                g.pcie_switch = Some(format!("sw{s}"));
                g.numa_node = s / 2;
            }
            p.nics = nic_switches
                .iter()
                .enumerate()
                .map(|(i, s)| NicSpec {
                    name: format!("mlx5_{i}"),
                    netdev: None,
                    pci_bus_id: format!("0000:{:02x}:00.0", 0x80 + i),
                    numa_node: s / 2,
                    pcie_switch: Some(format!("sw{s}")),
                    pcie_root: None,
                    speed_gbps: 200,
                    rail: Some(i as u32),
                    link_layer: Default::default(),
                })
                .collect();
            p.nvlink = if nvswitch {
                NvLinkSpec {
                    nvswitch: true,
                    links: Vec::new(),
                }
            } else {
                let links = pairs
                    .into_iter()
                    .filter(|(a, b, _)| a != b)
                    .map(|(a, b, links)| NvLinkPair { gpus: [a, b], links })
                    .collect();
                NvLinkSpec { nvswitch: false, links }
            };
            p
        })
}

/// Every k-subset of `free` containing `must`, by brute force.
fn brute_force_best(t: &NodeTopology, k: usize, free: &BTreeSet<u32>, c: &Constraints) -> Option<Score> {
    let free: Vec<u32> = free.iter().copied().collect();
    let mut best = None;
    for mask in 0u32..(1 << free.len()) {
        if mask.count_ones() as usize != k {
            continue;
        }
        let pick: Vec<u32> = (0..free.len())
            .filter(|i| mask & (1 << i) != 0)
            .map(|i| free[i])
            .collect();
        if !c.must_include.iter().all(|m| pick.contains(m)) {
            continue;
        }
        let s = t.score(&pick, c).unwrap();
        best = best.max(Some(s));
    }
    best
}

fn arb_request() -> impl Strategy<Value = (MachineProfile, BTreeSet<u32>, usize, BTreeSet<u32>)> {
    arb_machine().prop_flat_map(|p| {
        let n = p.gpus.len() as u32;
        let free = proptest::collection::btree_set(0..n, 1..=n as usize);
        (Just(p), free).prop_flat_map(|(p, free)| {
            let f: Vec<u32> = free.iter().copied().collect();
            let len = f.len();
            (
                Just(p),
                Just(free),
                1..=len,
                proptest::sample::subsequence(f, 0..=len.min(2)),
            )
                .prop_map(|(p, free, k, must)| {
                    let must: BTreeSet<u32> = must.into_iter().take(k).collect();
                    (p, free, k, must)
                })
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn best_gpus_is_valid_and_optimal_on_small_nodes((p, free, k, must) in arb_request()) {
        let t = NodeTopology::from_profile(&p).unwrap();
        let c = Constraints { must_include: must.clone(), ..Constraints::default() };
        let got = t.best_gpus(k, &free, &c).unwrap();
        prop_assert_eq!(got.len(), k);
        prop_assert_eq!(got.iter().collect::<BTreeSet<_>>().len(), k);
        prop_assert!(got.iter().all(|g| free.contains(g)));
        prop_assert!(must.iter().all(|m| got.contains(m)));
        prop_assert!(got.windows(2).all(|w| w[0] < w[1]));
        let s = t.score(&got, &c).unwrap();
        let best = brute_force_best(&t, k, &free, &c).unwrap();
        prop_assert_eq!(s.nvlink_gbps, best.nvlink_gbps);
        prop_assert_eq!(s, best);
        prop_assert_eq!(t.best_gpus(k, &free, &c).unwrap(), got, "deterministic");
    }

    #[test]
    fn heuristic_is_valid_and_never_beats_brute_force((p, free, k, must) in arb_request()) {
        let t = NodeTopology::from_profile(&p).unwrap();
        let c = Constraints { must_include: must.clone(), ..Constraints::default() };
        let got = t.best_gpus_heuristic(k, &free, &c).unwrap();
        prop_assert_eq!(got.iter().collect::<BTreeSet<_>>().len(), k);
        prop_assert!(got.iter().all(|g| free.contains(g)));
        prop_assert!(must.iter().all(|m| got.contains(m)));
        let s = t.score(&got, &c).unwrap();
        let best = brute_force_best(&t, k, &free, &c).unwrap();
        prop_assert!(s <= best);
        // On NVSwitch machines every k-set has the same NVLink sum, so the heuristic is exact there.
        if p.nvlink.nvswitch {
            prop_assert_eq!(s.nvlink_gbps, best.nvlink_gbps);
        }
    }

    #[test]
    fn nvlink_matrix_matches_the_profile(p in arb_machine()) {
        let t = NodeTopology::from_profile(&p).unwrap();
        for a in 0..p.gpus.len() as u32 {
            for b in 0..p.gpus.len() as u32 {
                prop_assert_eq!(t.nvlink_gbps(a, b).unwrap(), p.nvlink_gbps(a, b));
                prop_assert_eq!(t.level(a, b).unwrap(), t.level(b, a).unwrap());
                if a != b {
                    prop_assert!(t.bandwidth_gbps(a, b).unwrap() >= p.nvlink_gbps(a, b));
                }
            }
        }
    }
}

/// Many NUMA nodes used to be fully meshed: 6,000 of them (a 133 KB
/// annotation) took 2.7 s and 414 MB to build. Now the graph has one edge per
/// NUMA node and per socket, and the count is bounded with a clear error.
#[test]
fn numa_nodes_grow_the_graph_linearly_and_are_bounded() {
    let mut p = nvl_domain(8);
    p.numa_nodes = (0..1024)
        .map(|id| NumaNode {
            id,
            cpus: format!("{}-{}", id * 8, id * 8 + 7),
            socket: id / 512,
        })
        .collect();
    p.validate().unwrap();
    let t = NodeTopology::from_profile(&p).unwrap();
    let g = t.graph();
    let numa_edges = g
        .edge_weights()
        .filter(|l| matches!(l.kind, LinkKind::IntraSocket | LinkKind::InterSocket))
        .count();
    // 1,024 NUMA-to-socket edges and 2 socket-to-fabric edges (a mesh: 523,776).
    assert_eq!(numa_edges, 1024 + 2);
    // Bandwidths are those of the mesh: narrowest link on the widest path.
    assert_eq!(t.bandwidth_gbps(0, 7).unwrap(), 450);

    p.numa_nodes.push(NumaNode {
        id: 1024,
        cpus: String::new(),
        socket: 0,
    });
    let e = p.validate().unwrap_err();
    assert_eq!(e.path(), "numa_nodes");
    assert!(e.to_string().contains("at most 1024 NUMA nodes"), "{e}");
    assert_eq!(
        NodeTopology::from_profile(&p).unwrap_err(),
        TopologyError::TooLarge {
            what: "NUMA nodes",
            count: 1025,
            max: 1024
        }
    );
}

/// Cross-socket and same-socket paths keep their bandwidth through the hubs.
#[test]
fn socket_hubs_keep_path_bandwidths() {
    let t = topo("a100-pcie-4x");
    let p = load("a100-pcie-4x");
    for a in &p.gpus {
        for b in &p.gpus {
            if a.index == b.index || p.nvlink_gbps(a.index, b.index) > 0 {
                continue;
            }
            let bw = t.bandwidth_gbps(a.index, b.index).unwrap();
            let expected = if a.numa_node == b.numa_node {
                PCIE_GEN4_X16_GBPS
            } else {
                PCIE_GEN4_X16_GBPS.min(INTER_SOCKET_GBPS)
            };
            assert_eq!(bw, expected, "GPU {} - GPU {}", a.index, b.index);
        }
    }
}

/// A parent chain longer than any real PCIe tree is refused, not walked.
#[test]
fn deep_switch_chains_are_refused() {
    let mut p = nvl_domain(2);
    let extra: Vec<PcieSwitch> = (0..40)
        .map(|i| PcieSwitch {
            id: format!("chain{i}"),
            root: "pci0000:00".into(),
            numa_node: 0,
            parent: (i > 0).then(|| format!("chain{}", i - 1)),
        })
        .collect();
    p.pcie_switches.extend(extra);
    let e = NodeTopology::from_profile(&p).unwrap_err();
    assert!(matches!(e, TopologyError::TooLarge { max: 16, .. }), "{e}");
}
