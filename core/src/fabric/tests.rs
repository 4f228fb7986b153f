use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::machine::MachineProfile;
use crate::topology::{NodeTopology, TopologyLevel};

fn clusters_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs")
}

fn load(rel: &str) -> String {
    let p = clusters_dir().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A DGX H100-like node, small enough to read: 8 NVSwitch GPUs, GPU i and
/// NIC i (400 Gb/s, rail i) on PCIe switch i, plus a front-end NIC.
fn dgx_inline() -> MachineProfile {
    let mut y = String::from(
        "name: dgx-h100\nnuma_nodes: [{id: 0, cpus: \"0-55\"}, {id: 1, cpus: \"56-111\"}]\nnvlink: {nvswitch: true}\npcie_switches:\n",
    );
    for i in 0..8 {
        y += &format!("  - {{id: sw{i}, root: \"pci0000:{i:02x}\", numa_node: {}}}\n", i / 4);
    }
    y += "gpus:\n";
    for i in 0..8 {
        y += &format!(
            "  - {{index: {i}, product_name: \"NVIDIA H100 80GB HBM3\", uuid: GPU-{i}, pci_bus_id: \"0000:{:02x}:00.0\", numa_node: {}, pcie_switch: sw{i}}}\n",
            0x10 + i,
            i / 4
        );
    }
    y += "nics:\n";
    for i in 0..8 {
        y += &format!(
            "  - {{name: mlx5_{i}, pci_bus_id: \"0000:{:02x}:00.0\", numa_node: {}, pcie_switch: sw{i}, speed_gbps: 400, rail: {i}}}\n",
            0x40 + i,
            i / 4
        );
    }
    y += "  - {name: mlx5_8, pci_bus_id: \"0000:80:00.0\", numa_node: 0, pcie_root: \"pci0000:80\", speed_gbps: 200, link_layer: ethernet}\n";
    MachineProfile::from_yaml(&y).expect("inline profile")
}

/// Two PCIe-only GPUs (no NVLink) and one 100 Gb/s NIC without a rail.
fn pcie_box() -> MachineProfile {
    MachineProfile::from_yaml(
        r#"
name: l40s-2x
numa_nodes: [{id: 0, cpus: "0-31"}]
gpus:
  - {index: 0, product_name: "NVIDIA L40S", uuid: GPU-a, pci_bus_id: "0000:17:00.0", numa_node: 0, pcie_root: "pci0000:10"}
  - {index: 1, product_name: "NVIDIA L40S", uuid: GPU-b, pci_bus_id: "0000:31:00.0", numa_node: 0, pcie_root: "pci0000:30"}
nics: [{name: mlx5_0, pci_bus_id: "0000:18:00.0", numa_node: 0, pcie_root: "pci0000:10", speed_gbps: 100}]
"#,
    )
    .expect("inline profile")
}

fn topologies(profiles: impl IntoIterator<Item = MachineProfile>) -> BTreeMap<String, NodeTopology> {
    profiles
        .into_iter()
        .map(|m| (m.name.clone(), NodeTopology::from_profile(&m).expect("topology")))
        .collect()
}

fn machines() -> BTreeMap<String, NodeTopology> {
    topologies([dgx_inline(), pcie_box()])
}

fn file_machines() -> BTreeMap<String, NodeTopology> {
    topologies([MachineProfile::from_yaml(&load("machines/dgx-h100.yaml")).expect("dgx-h100.yaml")])
}

fn g(node: &str, gpu: u32) -> GpuRef<'_> {
    GpuRef::new(node, gpu)
}

fn pod32() -> Fabric {
    Fabric::from_yaml(&load("clusters/dgx-h100-pod32.yaml")).expect("pod32")
}

fn pod128() -> Fabric {
    Fabric::from_yaml(&load("clusters/dgx-h100-4pod128.yaml")).expect("4pod128")
}

#[test]
fn config_files_load() {
    let f = pod32();
    assert_eq!(f.name(), "dgx-h100-pod32");
    assert_eq!(f.nodes().len(), 32);
    assert_eq!(f.nodes()[0].name, "dgx-001");
    // 8 rail leaves + 1 spine block.
    assert_eq!(f.switches().len(), 9);
    let f = pod128();
    assert_eq!(f.nodes().len(), 128);
    assert_eq!(f.tiers().len(), 3);
    assert_eq!(f.tiers()[2].oversubscription, 2.0);
    // 32 leaves, 4 spine blocks, 1 core.
    assert_eq!(f.switches().len(), 37);
}

/// The cluster files against the real machine profile
/// (`configs/machines/dgx-h100.yaml`), not the inline stand-in.
#[test]
fn cluster_files_with_machine_profile_file() {
    let ms = file_machines();
    for f in [pod32(), pod128()] {
        let n = &f.nodes()[0];
        assert_eq!(ms.get(&n.machine).map(|m| m.gpus.len()), Some(8), "{}", n.machine);
        pod_checks(&f, &ms);
    }
    let f = pod128();
    let x = f.distance(&ms, g("dgx-001", 0), g("dgx-128", 0)).expect("distance");
    assert_eq!(
        x,
        Distance {
            route: Route::Network {
                tier: 2,
                via_other_rail: false
            },
            hops: 5,
            gbps: 25.0
        }
    );
}

#[test]
fn every_cluster_file_parses() {
    let dir = clusters_dir().join("clusters");
    let mut seen = 0;
    for e in std::fs::read_dir(&dir).expect("configs/clusters") {
        let p = e.expect("dir entry").path();
        if p.extension().is_some_and(|x| x == "yaml") {
            let text = std::fs::read_to_string(&p).expect("read");
            Fabric::from_yaml(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            seen += 1;
        }
    }
    assert!(seen >= 2);
}

#[test]
fn pod32_distances() {
    pod_checks(&pod32(), &machines());
}

/// Checks that hold in every DGX H100 scalable unit, pod32 and 4pod128 alike.
fn pod_checks(f: &Fabric, ms: &BTreeMap<String, NodeTopology>) {
    let d = |a, b| f.distance(ms, a, b).expect("distance");
    // Same GPU.
    assert_eq!(d(g("dgx-001", 3), g("dgx-001", 3)).route, Route::SameGpu);
    // NVSwitch pair: H100 SXM has 18 NVLink 4 links, 450 GB/s one way.
    let x = d(g("dgx-001", 0), g("dgx-001", 7));
    assert_eq!(
        x,
        Distance {
            route: Route::SameNode(NodeLink::NvLink { nvswitch: true }),
            hops: 1,
            gbps: 450.0
        }
    );
    // Same rail, two nodes of the SU: one leaf, 400 Gb/s = 50 GB/s.
    let x = d(g("dgx-001", 2), g("dgx-032", 2));
    assert_eq!(
        x,
        Distance {
            route: Route::Network {
                tier: 0,
                via_other_rail: false
            },
            hops: 1,
            gbps: 50.0
        }
    );
    // Different rails cross the spine; 1:1, so still 50 GB/s.
    let x = d(g("dgx-001", 2), g("dgx-002", 5));
    assert_eq!(
        x,
        Distance {
            route: Route::Network {
                tier: 1,
                via_other_rail: false
            },
            hops: 3,
            gbps: 50.0
        }
    );
}

#[test]
fn pod128_distances_and_groups() {
    let f = pod128();
    let ms = machines();
    pod_checks(&f, &ms);
    let d = |a, b| f.distance(&ms, a, b).expect("distance");
    assert_eq!(
        d(g("dgx-033", 1), g("dgx-064", 1)).route,
        Route::Network {
            tier: 0,
            via_other_rail: false
        }
    );
    let x = d(g("dgx-033", 1), g("dgx-064", 6));
    assert_eq!(
        (x.route, x.hops, x.gbps),
        (
            Route::Network {
                tier: 1,
                via_other_rail: false
            },
            3,
            50.0
        )
    );
    // Across pods: up to the core, 2:1 oversubscribed: 50 / 2.
    let x = d(g("dgx-001", 0), g("dgx-128", 0));
    assert_eq!(
        x,
        Distance {
            route: Route::Network {
                tier: 2,
                via_other_rail: false
            },
            hops: 5,
            gbps: 25.0
        }
    );

    assert_eq!(f.common_tier("dgx-001", "dgx-032"), Ok(Some(0)));
    assert_eq!(f.common_tier("dgx-001", "dgx-033"), Ok(Some(2)));
    assert_eq!(
        f.common_tier("dgx-001", "nope"),
        Err(FabricError::UnknownNode { node: "nope".into() })
    );
    let sizes = |t| f.groups_at_tier(t).iter().map(|g| g.nodes.len()).collect::<Vec<_>>();
    assert_eq!(sizes(0), vec![32; 4]);
    assert_eq!(sizes(1), vec![32; 4]);
    assert_eq!(sizes(2), vec![128]);
    let t1 = f.groups_at_tier(1);
    assert_eq!(t1[1].switch.map(|s| s.name.as_str()), Some("su2-spine"));
    assert_eq!(t1[1].nodes.first(), Some(&"dgx-033"));
}

#[test]
fn query_errors() {
    let f = pod32();
    let ms = machines();
    assert_eq!(
        f.distance(&ms, g("dgx-001", 8), g("dgx-002", 0)),
        Err(FabricError::UnknownGpu {
            node: "dgx-001".into(),
            machine: "dgx-h100".into(),
            gpu: 8
        })
    );
    assert_eq!(
        f.distance(&BTreeMap::new(), g("dgx-001", 0), g("dgx-002", 0)),
        Err(FabricError::UnknownMachine {
            node: "dgx-001".into(),
            machine: "dgx-h100".into()
        })
    );
}

const SMALL: &str = r#"
name: small
tiers: [{name: leaf}, {name: spine, oversubscription: 1.5}]
nvlink_domains: [{name: "7b968a6d-c8aa-45e1-9e07-e1e51be99c31.1", gbps: 900}]
groups:
  - names: [nvl-a, nvl-b]
    machine: dgx-h100
    rails: 2
    switches: ["l1-rail{rail}", s1]
    nvlink_domain: "7b968a6d-c8aa-45e1-9e07-e1e51be99c31.1"
  - names: [pcie-a, pcie-b]
    machine: l40s-2x
    switches: [l2, s1]
  - names: [island]
    machine: l40s-2x
"#;

#[test]
fn nvlink_domain_pcie_and_unreachable() {
    let f = Fabric::from_yaml(SMALL).expect("small");
    let ms = machines();
    let d = |a, b| f.distance(&ms, a, b).expect("distance");
    // Across nodes of one NVLink domain: the domain's bandwidth, not the NIC's.
    assert_eq!(
        d(g("nvl-a", 0), g("nvl-b", 5)),
        Distance {
            route: Route::NvlDomain,
            hops: 1,
            gbps: 900.0
        }
    );
    // L40S (Ada) has no NVLink: PCIe Gen4 x16, meeting at the NUMA node.
    let x = d(g("pcie-a", 0), g("pcie-a", 1));
    assert_eq!(
        x,
        Distance {
            route: Route::SameNode(NodeLink::Pcie {
                level: TopologyLevel::Node
            }),
            hops: 1,
            gbps: 32.0
        }
    );
    // Shared leaf, 100 Gb/s NIC.
    assert_eq!(d(g("pcie-a", 1), g("pcie-b", 0)).gbps, 12.5);
    // Through the spine at 1.5:1, limited by the slower NIC: 100/8/1.5.
    let x = d(g("nvl-a", 0), g("pcie-b", 0));
    assert_eq!(
        x.route,
        Route::Network {
            tier: 1,
            via_other_rail: false
        }
    );
    assert!((x.gbps - 100.0 / 8.0 / 1.5).abs() < 1e-9);
    // GPU 5's NIC is on rail 5, which this fabric does not cable.
    assert_eq!(d(g("island", 0), g("pcie-a", 0)).route, Route::Unreachable);
    assert_eq!(d(g("nvl-a", 5), g("pcie-a", 0)).route, Route::Unreachable);
    assert_eq!(f.common_tier("island", "pcie-a"), Ok(None));
    let groups = f.domain_groups();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].1, vec!["nvl-a", "nvl-b"]);
}

#[test]
fn rail_only_goes_through_the_host() {
    let y = r#"
name: rail-only
tiers: [{name: leaf}, {name: spine}]
groups:
  - {pattern: "n{i}", count: 2, machine: dgx-h100, rails: 8, switches: ["leaf-r{rail}", "spine-r{rail}"]}
  - {pattern: "m{i}", count: 1, machine: dgx-h100, rails: 8, switches: ["leaf2-r{rail}", "spine-r{rail}"]}
"#;
    let f = Fabric::from_yaml(y).expect("rail-only");
    let ms = machines();
    let d = |a, b| f.distance(&ms, a, b).expect("distance");
    assert_eq!(
        d(g("n0", 3), g("n1", 3)).route,
        Route::Network {
            tier: 0,
            via_other_rail: false
        }
    );
    // Rails 0 and 1 never meet: NVLink to the GPU on rail 0 first (PXN).
    let x = d(g("n0", 0), g("n1", 1));
    assert_eq!(
        x,
        Distance {
            route: Route::Network {
                tier: 0,
                via_other_rail: true
            },
            hops: 2,
            gbps: 50.0
        }
    );
    assert_eq!(d(g("n1", 1), g("n0", 0)), x);
    let x = d(g("n0", 0), g("m0", 1));
    assert_eq!(
        x,
        Distance {
            route: Route::Network {
                tier: 1,
                via_other_rail: true
            },
            hops: 4,
            gbps: 50.0
        }
    );
}

fn err(y: &str) -> String {
    Fabric::from_yaml(y).map(|_| ()).expect_err("should fail").to_string()
}

#[test]
fn yaml_errors_name_field_and_value() {
    let base = "name: x\ntiers: [{name: leaf}, {name: spine}]\ngroups:\n  - {pattern: \"n{i}\", count: 2, machine: m, switches: [l1, s1]}\n";
    assert!(Fabric::from_yaml(base).is_ok());
    let e = err(&base.replace("count: 2", "count: 2, colour: red"));
    assert!(e.contains("groups[0]") && e.contains("unknown field `colour`"), "{e}");
    let e = err(&base.replace("count: 2", "count: 0"));
    assert_eq!(
        e,
        "cluster fabric: groups[0].count: invalid value \"0\": must be 1..=100000"
    );
    let e = err(&base.replace("count: 2", "count: two"));
    assert!(
        e.starts_with("cluster fabric: groups[0].count: invalid type: string \"two\""),
        "{e}"
    );
    let e = err(&base.replace("\"n{i}\"", "node"));
    assert_eq!(
        e,
        "cluster fabric: groups[0].pattern: invalid value \"node\": pattern needs `{i}` or `{i:N}`"
    );
    let e = err(&base.replace("[l1, s1]", "[l1, s1, c1]"));
    assert_eq!(
        e,
        "cluster fabric: groups[0].switches[2]: invalid value \"c1\": tier 2 is not declared (the fabric has 2 tiers)"
    );
    let e = err(&base.replace("machine: m,", "machine: m, rails: 8,"));
    assert!(
        e.starts_with("cluster fabric: groups[0].switches[0]: invalid value \"l1\": with rails"),
        "{e}"
    );
    let e = err(&base.replace("{name: spine}", "{name: spine, oversubscription: 0.5}"));
    assert!(
        e.starts_with("cluster fabric: tiers[1].oversubscription: invalid value \"0.5\""),
        "{e}"
    );
    let e = err(&base.replace("{name: leaf}", "{name: leaf, oversubscription: 2}"));
    assert!(
        e.starts_with("cluster fabric: tiers[0].oversubscription: invalid value \"2\""),
        "{e}"
    );
    let e = err(&base.replace("switches: [l1, s1]}", "switches: [l1, s1], nvlink_domain: nvl9}"));
    assert_eq!(
        e,
        "cluster fabric: groups[0].nvlink_domain: invalid value \"nvl9\": no such NVLink domain"
    );
    // One leaf cannot hang off two spines.
    let two = format!("{base}  - {{names: [m1], machine: m, switches: [l1, s2]}}\n");
    let e = err(&two);
    assert!(
        e.starts_with(
            "cluster fabric: groups[1].switches[1]: invalid value \"s2\": switch `l1` (tier 0) is already under `s1`"
        ),
        "{e}"
    );
    let dup = format!("{base}  - {{names: [n1], machine: m, switches: [l1]}}\n");
    let e = err(&dup);
    assert!(
        e.starts_with("cluster fabric: groups[1].names[0]: invalid value \"n1\": duplicate node"),
        "{e}"
    );
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn opts_like(f: &Fabric, machine: &str, rails: Option<u32>) -> LabelOptions {
    LabelOptions {
        name: f.name().into(),
        tiers: f.tiers().to_vec(),
        rails,
        default_machine: Some(machine.into()),
        ..LabelOptions::default()
    }
}

#[test]
fn labels_build_the_yaml_fabric() {
    for file in [pod32(), pod128()] {
        let pods = file.tiers().len() == 3;
        let mut v1 = BTreeMap::new();
        let mut legacy = BTreeMap::new();
        for (i, n) in file.nodes().iter().enumerate() {
            let su = format!("su{}", i / 32 + 1);
            let spine = if pods { format!("{su}-spine") } else { "spine".into() };
            let mut l = labels(&[
                ("fabric.topograph.run/tier-0", &su),
                ("fabric.topograph.run/tier-1", &spine),
            ]);
            let mut old = labels(&[
                ("network.topology.nvidia.com/leaf", &su),
                ("network.topology.nvidia.com/spine", &spine),
            ]);
            if pods {
                l.insert("fabric.topograph.run/tier-2".into(), "core".into());
                old.insert("network.topology.nvidia.com/core".into(), "core".into());
            }
            v1.insert(n.name.clone(), l);
            legacy.insert(n.name.clone(), old);
        }
        let opts = opts_like(&file, "dgx-h100", Some(8));
        assert_eq!(Fabric::from_labels(&v1, &opts).as_ref(), Ok(&file));
        assert_eq!(Fabric::from_labels(&legacy, &opts).as_ref(), Ok(&file));
    }
}

#[test]
fn clique_and_kueue_levels_build_the_yaml_fabric() {
    let file = Fabric::from_yaml(
        r#"
name: gke
tiers: [{name: subblock}, {name: block}]
nvlink_domains: [{name: "7b968a6d-c8aa-45e1-9e07-e1e51be99c31.1"}, {name: nvl2}]
groups:
  - {names: [a, b], machine: dgx-h100, switches: [sb1, b1], nvlink_domain: "7b968a6d-c8aa-45e1-9e07-e1e51be99c31.1"}
  - {names: [c], machine: dgx-h100, switches: [sb2, b1], nvlink_domain: nvl2, sub_domain: nvl2.rack01}
  - {names: [d], machine: dgx-h100, switches: [sb3]}
"#,
    )
    .expect("gke");
    let block = "cloud.google.com/gce-topology-block";
    let sub = "cloud.google.com/gce-topology-subblock";
    let clique = "7b968a6d-c8aa-45e1-9e07-e1e51be99c31.1";
    let nodes: BTreeMap<String, BTreeMap<String, String>> = [
        (
            "a",
            labels(&[(block, "b1"), (sub, "sb1"), ("nvidia.com/gpu.clique", clique)]),
        ),
        (
            "b",
            labels(&[
                (block, "b1"),
                (sub, "sb1"),
                ("nvidia.com/gpu.clique", clique),
                ("kubernetes.io/hostname", "b"),
            ]),
        ),
        // The accelerator label wins over the clique.
        (
            "c",
            labels(&[
                (block, "b1"),
                (sub, "sb2"),
                ("nvidia.com/gpu.clique", clique),
                ("accelerator.topograph.run/domain", "nvl2"),
                ("accelerator.topograph.run/sub-domain", "nvl2.rack01"),
            ]),
        ),
        ("d", labels(&[(sub, "sb3")])),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let mut opts = opts_like(&file, "dgx-h100", None);
    opts.scheme = LabelScheme::Levels(vec![block.into(), sub.into(), "kubernetes.io/hostname".into()]);
    assert_eq!(Fabric::from_labels(&nodes, &opts).as_ref(), Ok(&file));

    // The same with topograph v1 tier labels.
    let v1: BTreeMap<String, BTreeMap<String, String>> = nodes
        .iter()
        .map(|(n, l)| {
            let l = l
                .iter()
                .map(|(k, v)| match k.as_str() {
                    k if k == sub => ("fabric.topograph.run/tier-0".to_string(), v.clone()),
                    k if k == block => ("fabric.topograph.run/tier-1".to_string(), v.clone()),
                    _ => (k.clone(), v.clone()),
                })
                .collect();
            (n.clone(), l)
        })
        .collect();
    assert_eq!(
        Fabric::from_labels(&v1, &opts_like(&file, "dgx-h100", None)).as_ref(),
        Ok(&file)
    );
}

#[test]
fn label_errors_name_label_and_value() {
    let opts = LabelOptions {
        default_machine: Some("m".into()),
        ..LabelOptions::default()
    };
    let one = |l: BTreeMap<String, String>| {
        let nodes = [("n1".to_string(), l)].into_iter().collect();
        Fabric::from_labels(&nodes, &opts)
            .map(|_| ())
            .expect_err("should fail")
            .to_string()
    };
    let e = one(labels(&[("nvidia.com/gpu.clique", "not-a-uuid.1")]));
    assert_eq!(
        e,
        "node labels: n1.labels[nvidia.com/gpu.clique]: invalid value \"not-a-uuid.1\": expected <ClusterUUID>.<CliqueID>"
    );
    let e = one(labels(&[("fabric.topograph.run/tier-1", "s1")]));
    assert!(
        e.starts_with("node labels: n1.labels[fabric.topograph.run/tier-0]: invalid value \"\": tier 0 is missing"),
        "{e}"
    );
    let e = one(labels(&[("fabric.topograph.run/tier-x", "s1")]));
    assert!(
        e.starts_with("node labels: n1.labels[fabric.topograph.run/tier-x]: invalid value \"s1\""),
        "{e}"
    );
    let e = one(labels(&[("accelerator.topograph.run/sub-domain", "r1")]));
    assert!(
        e.contains("n1.labels[accelerator.topograph.run/sub-domain]") && e.contains("needs an NVLink domain"),
        "{e}"
    );
    let nodes = [("n1".to_string(), BTreeMap::new())].into_iter().collect();
    let e = Fabric::from_labels(&nodes, &LabelOptions::default())
        .map(|_| ())
        .expect_err("no machine")
        .to_string();
    assert!(e.contains("no machine label"), "{e}");
    let bad = LabelOptions {
        scheme: LabelScheme::Levels(vec!["kubernetes.io/hostname".into(), "x".into()]),
        ..opts.clone()
    };
    let e = Fabric::from_labels(&BTreeMap::new(), &bad)
        .map(|_| ())
        .expect_err("levels")
        .to_string();
    assert!(e.starts_with("node labels: levels[0]"), "{e}");
}

#[test]
fn machine_label_and_partial_chains() {
    // A node labelled only with its leaf still reaches the spine other nodes report for that leaf.
    let nodes: BTreeMap<String, BTreeMap<String, String>> = [
        (
            "a",
            labels(&[
                ("fabric.topograph.run/tier-0", "l1"),
                ("fabric.topograph.run/tier-1", "s1"),
                ("railyard/machine", "l40s-2x"),
            ]),
        ),
        ("b", labels(&[("fabric.topograph.run/tier-0", "l1")])),
        (
            "c",
            labels(&[
                ("fabric.topograph.run/tier-0", "l2"),
                ("fabric.topograph.run/tier-1", "s1"),
            ]),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let opts = LabelOptions {
        machine_label: Some("railyard/machine".into()),
        default_machine: Some("dgx-h100".into()),
        ..LabelOptions::default()
    };
    let f = Fabric::from_labels(&nodes, &opts).expect("fabric");
    assert_eq!(f.node("a").map(|n| n.machine.as_str()), Some("l40s-2x"));
    assert_eq!(f.node("b").map(|n| n.machine.as_str()), Some("dgx-h100"));
    assert_eq!(
        f.tiers().iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        vec!["tier-0", "tier-1"]
    );
    assert_eq!(f.common_tier("b", "c"), Ok(Some(1)));
    assert_eq!(f.groups_at_tier(1).len(), 1);
}

#[test]
fn one_mislabelled_node_keeps_the_rest_of_the_topology_when_lenient() {
    let nodes: BTreeMap<String, BTreeMap<String, String>> = [
        (
            "a",
            labels(&[
                ("fabric.topograph.run/tier-0", "l1"),
                ("fabric.topograph.run/tier-1", "s1"),
            ]),
        ),
        (
            "b",
            labels(&[
                ("fabric.topograph.run/tier-0", "l1"),
                ("fabric.topograph.run/tier-1", "s1"),
            ]),
        ),
        (
            "c",
            labels(&[
                ("fabric.topograph.run/tier-0", "l2"),
                ("fabric.topograph.run/tier-1", "s1"),
            ]),
        ),
        // tier-1 without tier-0: this node's labels do not parse.
        ("bad", labels(&[("fabric.topograph.run/tier-1", "s1")])),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let opts = LabelOptions {
        default_machine: Some("dgx-h100".into()),
        ..LabelOptions::default()
    };
    assert!(
        Fabric::from_labels(&nodes, &opts).is_err(),
        "strict: one bad node fails all"
    );
    let (f, skipped) = Fabric::from_labels_lenient(&nodes, &opts).expect("lenient");
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0].0, "bad");
    assert!(
        skipped[0]
            .1
            .to_string()
            .contains("bad.labels[fabric.topograph.run/tier-0]"),
        "{}",
        skipped[0].1
    );
    assert_eq!(f.common_tier("a", "b"), Ok(Some(0)));
    assert_eq!(f.common_tier("a", "c"), Ok(Some(1)));
    assert!(f.node("bad").is_some(), "the node stays, without topology");
    // Errors that are not one node's own still fail.
    let bad_opts = LabelOptions {
        rails: Some(0),
        ..opts.clone()
    };
    assert!(Fabric::from_labels_lenient(&nodes, &bad_opts).is_err());
}

/// Random tree fabrics: node `n` sits under leaf `path[0]`, spine `path[1]`, …
/// Names carry the whole path so the switches always form a tree.
fn arb_fabric() -> impl Strategy<Value = (usize, bool, Vec<Vec<u8>>, Vec<f64>)> {
    (1usize..=3, any::<bool>()).prop_flat_map(|(tiers, rails)| {
        (
            Just(tiers),
            Just(rails),
            prop::collection::vec(prop::collection::vec(0u8..3, tiers), 1..12),
            prop::collection::vec(prop::sample::select(vec![1.0, 1.5, 2.0, 4.0]), tiers),
        )
    })
}

fn chain_names(path: &[u8]) -> Vec<String> {
    (0..path.len())
        .map(|t| {
            format!(
                "t{t}-{}",
                path[t..].iter().map(u8::to_string).collect::<Vec<_>>().join(".")
            )
        })
        .collect()
}

fn build_both(tiers: usize, rails: bool, paths: &[Vec<u8>], ratios: &[f64]) -> (Fabric, Fabric) {
    let mut y = String::from("name: prop\ntiers:\n");
    for (t, r) in ratios.iter().enumerate() {
        let r = if t == 0 { 1.0 } else { *r };
        y += &format!("  - {{name: t{t}, oversubscription: {r}}}\n");
    }
    y += "groups:\n";
    let mut nodes = BTreeMap::new();
    for (i, p) in paths.iter().enumerate() {
        let mut names = chain_names(p);
        let label: BTreeMap<String, String> = names
            .iter()
            .enumerate()
            .map(|(t, s)| (format!("fabric.topograph.run/tier-{t}"), s.clone()))
            .collect();
        nodes.insert(format!("n{i}"), label);
        let rail = if rails {
            names[0] += "-rail{rail}";
            "rails: 8, "
        } else {
            ""
        };
        y += &format!("  - {{names: [n{i}], machine: dgx-h100, {rail}switches: {names:?}}}\n");
    }
    let f = Fabric::from_yaml(&y).unwrap_or_else(|e| panic!("{e}\n{y}"));
    let _ = tiers;
    let opts = opts_like(&f, "dgx-h100", rails.then_some(8));
    let l = Fabric::from_labels(&nodes, &opts).unwrap_or_else(|e| panic!("{e}"));
    (f, l)
}

proptest! {
    #[test]
    fn labels_equal_yaml((tiers, rails, paths, ratios) in arb_fabric()) {
        let (f, l) = build_both(tiers, rails, &paths, &ratios);
        prop_assert_eq!(f, l);
    }

    #[test]
    fn distance_rules((tiers, rails, paths, ratios) in arb_fabric(), picks in prop::collection::vec((0usize..12, 0u32..8), 3)) {
        let (f, _) = build_both(tiers, rails, &paths, &ratios);
        let ms = machines();
        let names: Vec<&str> = f.nodes().iter().map(|n| n.name.as_str()).collect();
        let gpus: Vec<GpuRef<'_>> = picks.iter().map(|&(n, i)| g(names[n % names.len()], i)).collect();
        let (a, b, c) = (gpus[0], gpus[1], gpus[2]);
        let ab = f.distance(&ms, a, b).expect("ab");
        prop_assert_eq!(ab, f.distance(&ms, b, a).expect("ba"));
        if a.node != b.node {
            // Never more than either NIC gives (400 Gb/s = 50 GB/s).
            prop_assert!(ab.gbps <= 50.0, "{:?}", ab);
        }
        // Meeting tiers are an ultrametric: a and c meet no higher than the
        // higher of (a,b) and (b,c).
        let t = |x: &str, y: &str| f.common_tier(x, y).expect("nodes").unwrap_or(usize::MAX);
        prop_assert!(t(a.node, c.node) <= t(a.node, b.node).max(t(b.node, c.node)));
        // Climbing higher never gives more bandwidth.
        let bw: Vec<f64> = (0..tiers).map(|k| f.network_gbps(k, 400, 400)).collect();
        prop_assert!(bw.windows(2).all(|w| w[1] <= w[0]));
        // Grouping at a tier puts together exactly the nodes meeting at or below it.
        for k in 0..tiers {
            let groups = f.groups_at_tier(k);
            let of = |n: &str| groups.iter().position(|g| g.nodes.contains(&n));
            prop_assert_eq!(of(a.node) == of(c.node), t(a.node, c.node) <= k);
        }
    }
}
