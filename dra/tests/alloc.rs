//! The allocator on the shipped machine profiles, with the claims users
//! write for NVIDIA's driver.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use railyard_dra::alloc::{AllocError, Allocator, Outcome, Taken};
use railyard_dra::cel::{CelError, SelectorCache};
use railyard_dra::config::DraConfig;
use railyard_dra::device::Pool;

fn allocate(pool: &Pool, claim: &railyard_dra::claim::ClaimSpec, taken: &Taken) -> Result<Outcome, AllocError> {
    let classes = common::classes(&pool.driver);
    let cache = SelectorCache::default();
    let pools = [pool.clone()];
    Allocator::new(&pools, &classes, &cache).allocate(claim, taken)
}

fn devices(o: &Outcome) -> Vec<String> {
    match o {
        Outcome::Allocated(a) => a.devices.iter().map(|d| d.id.device.clone()).collect(),
        other => panic!("not allocated: {other:?}"),
    }
}

/// Allocates `claim` repeatedly, booking each result, until it fails.
fn fill(pool: &Pool, claim: &railyard_dra::claim::ClaimSpec, max: usize) -> (Vec<Vec<String>>, Outcome, Taken) {
    let classes = common::classes(&pool.driver);
    let cache = SelectorCache::default();
    let pools = [pool.clone()];
    let alloc = Allocator::new(&pools, &classes, &cache);
    let mut taken = Taken::default();
    let mut got = Vec::new();
    for _ in 0..max {
        match alloc.allocate(claim, &taken).unwrap() {
            Outcome::Allocated(a) => {
                alloc.book(&mut taken, &a.devices);
                got.push(a.devices.iter().map(|d| d.id.device.clone()).collect());
            }
            other => return (got, other, taken),
        }
    }
    panic!("still allocating after {max}");
}

#[test]
fn product_name_claim_gets_a_whole_gpu_where_the_product_exists() {
    let claim = common::claim_file("h100-by-product.yaml");
    let h100 = common::pool("dgx-h100", &DraConfig::default());
    assert_eq!(
        devices(&allocate(&h100, &claim, &Taken::default()).unwrap()),
        vec!["gpu-0"]
    );
    let a100 = common::pool("a100-pcie-4x", &DraConfig::default());
    match allocate(&a100, &claim, &Taken::default()).unwrap() {
        Outcome::Unsatisfiable { request, reason } => {
            assert_eq!(request, "gpu");
            assert!(reason.contains("0 match the class, selectors and capacity"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // Eight H100s, then a clear refusal saying they are taken.
    let (got, last, _) = fill(&h100, &claim, 20);
    assert_eq!(got.len(), 8);
    let Outcome::Unsatisfiable { reason, .. } = last else {
        panic!("{last:?}")
    };
    assert!(reason.contains("8 match") && reason.contains("0 free"), "{reason}");
}

#[test]
fn mig_profile_claim_packs_one_gpu_then_refuses_the_eighth() {
    let claim = common::claim_file("mig-1g.yaml");
    let pool = common::single_gpu(common::pool("dgx-h100", &DraConfig::default()), 0);
    let (got, last, _) = fill(&pool, &claim, 20);
    assert_eq!(got.len(), 7, "{got:?}");
    let placements: BTreeSet<_> = got.iter().map(|d| d[0].clone()).collect();
    assert_eq!(placements.len(), 7);
    assert!(got.iter().all(|d| d[0].starts_with("gpu-0-mig-1g10gb-19-")));
    let Outcome::Unsatisfiable { request, reason } = last else {
        panic!("{last:?}")
    };
    assert_eq!(request, "mig");
    assert!(reason.contains("7 allocated to other claims"), "{reason}");
    // On the whole box the 1g devices go to one GPU before the next.
    let full = common::pool("dgx-h100", &DraConfig::default());
    let (got, _, _) = fill(&full, &claim, 100);
    assert_eq!(got.len(), 56);
    for (i, d) in got.iter().enumerate() {
        assert!(d[0].starts_with(&format!("gpu-{}-", i / 7)), "{i}: {d:?}");
    }
    // The same claim where no GPU is MIG-capable.
    let t4 = common::pool("t4-2x", &DraConfig::default());
    assert!(matches!(
        allocate(&t4, &claim, &Taken::default()).unwrap(),
        Outcome::Unsatisfiable { .. }
    ));
}

#[test]
fn whole_gpu_and_its_mig_devices_are_never_allocated_together() {
    let pool = common::single_gpu(common::pool("dgx-h100", &DraConfig::default()), 0);
    let whole = common::claim_file("h100-by-product.yaml");
    let mig = common::claim_file("mig-1g.yaml");
    // Whole GPU first: no MIG device of it is left.
    let (got, _, taken) = fill(&pool, &whole, 5);
    assert_eq!(got, vec![vec!["gpu-0".to_owned()]]);
    let Outcome::Unsatisfiable { reason, .. } = allocate(&pool, &mig, &taken).unwrap() else {
        panic!()
    };
    assert!(reason.contains("shared counters"), "{reason}");
    // One MIG device first: the whole GPU is no longer free.
    let classes = common::classes(&pool.driver);
    let cache = SelectorCache::default();
    let pools = [pool.clone()];
    let alloc = Allocator::new(&pools, &classes, &cache);
    let mut taken = Taken::default();
    let Outcome::Allocated(a) = alloc.allocate(&mig, &taken).unwrap() else {
        panic!()
    };
    alloc.book(&mut taken, &a.devices);
    let Outcome::Unsatisfiable { reason, .. } = alloc.allocate(&whole, &taken).unwrap() else {
        panic!()
    };
    assert!(reason.contains("shared counters"), "{reason}");
}

#[test]
fn each_share_of_a_shared_gpu_gets_its_own_share_id_reused_only_after_release() {
    let claim = common::claim_file("shared-10gi.yaml");
    let cfg = DraConfig::from_yaml("version: v1\nsharing: {shares: 16}\n").unwrap();
    let pool = common::single_gpu(common::pool("dgx-h100", &cfg), 0);
    let classes = common::classes(&pool.driver);
    let cache = SelectorCache::default();
    let pools = [pool.clone()];
    let alloc = Allocator::new(&pools, &classes, &cache);
    let mut taken = Taken::default();
    let mut shares = Vec::new();
    while let Outcome::Allocated(a) = alloc.allocate(&claim, &taken).unwrap() {
        alloc.book(&mut taken, &a.devices);
        shares.push(a.devices);
    }
    let ids: Vec<String> = shares.iter().map(|d| d[0].share_id.clone().unwrap()).collect();
    let distinct: std::collections::BTreeSet<_> = ids.iter().collect();
    assert_eq!(distinct.len(), 7, "{ids:?}");
    // The API's shareID is a UUID: 8-4-4-4-12 lower-case hex.
    for id in &ids {
        let groups: Vec<usize> = id.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12], "{id}");
        assert!(
            id.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase() || c == '-'),
            "{id}"
        );
    }
    // Release the third share: the next allocation takes its id, not one in use.
    alloc.release(&mut taken, &shares[2]);
    let Outcome::Allocated(again) = alloc.allocate(&claim, &taken).unwrap() else {
        panic!("a released share is free again")
    };
    assert_eq!(again.devices[0].share_id.as_deref(), Some(ids[2].as_str()));
    // Whole GPUs that are not shareable carry no share id.
    let whole = common::claim_file("h100-by-product.yaml");
    let plain = common::pool("dgx-h100", &DraConfig::default());
    let Outcome::Allocated(a) = allocate(&plain, &whole, &Taken::default()).unwrap() else {
        panic!()
    };
    assert_eq!(a.devices[0].share_id, None);
}

#[test]
fn memory_claim_gets_exactly_its_share_of_a_shared_gpu() {
    let claim = common::claim_file("shared-10gi.yaml");
    let cfg = DraConfig::from_yaml("version: v1\nsharing: {shares: 16}\n").unwrap();
    let pool = common::single_gpu(common::pool("dgx-h100", &cfg), 0);
    let (got, last, taken) = fill(&pool, &claim, 20);
    // 81559 MiB holds seven 10 GiB shares.
    assert_eq!(got.len(), 7, "{got:?}");
    assert!(got.iter().all(|d| d == &vec!["gpu-0".to_owned()]));
    let id = railyard_dra::alloc::DeviceId {
        driver: pool.driver.clone(),
        pool: pool.name.clone(),
        device: "gpu-0".into(),
    };
    assert_eq!(taken.capacity_used(&id, "memory").as_i64(), Some(7 * (10 << 30)));
    assert_eq!(taken.capacity_used(&id, "shares").as_i64(), Some(7));
    let Outcome::Unsatisfiable { reason, .. } = last else {
        panic!("{last:?}")
    };
    assert!(reason.contains("capacity"), "{reason}");
    // Where no GPU is shareable, the selector on allowMultipleAllocations
    // matches nothing.
    let plain = common::pool("dgx-h100", &DraConfig::default());
    assert!(matches!(
        allocate(&plain, &claim, &Taken::default()).unwrap(),
        Outcome::Unsatisfiable { .. }
    ));
}

#[test]
fn match_attribute_on_the_nvlink_island_picks_a_bridged_pair() {
    let claim = common::claim_file("bridged-pair.yaml");
    let cfg = DraConfig::from_yaml("version: v1\ndynamicMig: false\n").unwrap();
    let pool = common::pool("a100-pcie-4x", &cfg);
    let (got, last, _) = fill(&pool, &claim, 5);
    assert_eq!(
        got,
        vec![
            vec!["gpu-0".to_owned(), "gpu-1".to_owned()],
            vec!["gpu-2".to_owned(), "gpu-3".to_owned()]
        ]
    );
    assert!(matches!(last, Outcome::Unsatisfiable { .. }));
    // With GPU 1 taken by a single-GPU claim, the pair is 2-3, not 0-2.
    let one = common::claim(
        "devices:\n  requests:\n  - name: g\n    exactly:\n      deviceClassName: gpu.nvidia.com\n      selectors:\n      - cel: {expression: \"device.attributes['resource.kubernetes.io'].pciBusID == '0000:4b:00.0'\"}\n",
    );
    let (got, _, taken) = fill(&pool, &one, 2);
    assert_eq!(got, vec![vec!["gpu-1".to_owned()]]);
    assert_eq!(
        devices(&allocate(&pool, &claim, &taken).unwrap()),
        vec!["gpu-2", "gpu-3"]
    );
}

#[test]
fn first_available_falls_back_in_order_and_all_takes_every_match() {
    let pool = common::single_gpu(common::pool("dgx-h100", &DraConfig::default()), 0);
    let claim = common::claim(
        "devices:\n  requests:\n  - name: r\n    firstAvailable:\n    - {name: big, deviceClassName: mig.nvidia.com, count: 3, selectors: [{cel: {expression: \"device.attributes['gpu.nvidia.com'].profile == '3g.40gb'\"}}]}\n    - {name: small, deviceClassName: mig.nvidia.com, count: 2, selectors: [{cel: {expression: \"device.attributes['gpu.nvidia.com'].profile == '3g.40gb'\"}}]}\n",
    );
    let Outcome::Allocated(a) = allocate(&pool, &claim, &Taken::default()).unwrap() else {
        panic!()
    };
    assert!(a.devices.iter().all(|d| d.request == "r/small"));
    assert_eq!(a.devices.len(), 2);
    let all = common::claim(
        "devices:\n  requests:\n  - name: r\n    exactly: {deviceClassName: mig.nvidia.com, allocationMode: All, selectors: [{cel: {expression: \"device.attributes['gpu.nvidia.com'].profile == '3g.40gb'\"}}]}\n",
    );
    assert_eq!(devices(&allocate(&pool, &all, &Taken::default()).unwrap()).len(), 2);
}

#[test]
fn selector_errors_fail_the_allocation_with_a_clear_message() {
    let pool = common::pool("dgx-h100", &DraConfig::default());
    let claim = |expr: &str| {
        common::claim(&format!(
            "devices:\n  requests:\n  - name: g\n    exactly:\n      deviceClassName: gpu.nvidia.com\n      selectors:\n      - cel: {{expression: {expr:?}}}\n"
        ))
    };
    let err = |expr: &str| match allocate(&pool, &claim(expr), &Taken::default()) {
        Err(AllocError::Selector { source, .. }) => source,
        other => panic!("{expr}: {other:?}"),
    };
    assert!(matches!(
        err("device.attributes['gpu.nvidia.com'].productName =="),
        CelError::Compile { .. }
    ));
    let e = err("device.attributes['gpu.nvidia.com'].index == 0");
    let text = e.to_string();
    assert!(
        matches!(e, CelError::Eval { .. }) && text.contains("index") && !text.contains("productName"),
        "{text}"
    );
    assert!(
        text.contains("device.attributes['gpu.nvidia.com'].index == 0"),
        "{text}"
    );
    // An unknown domain is an empty map, not an error.
    let guarded = claim("'x' in device.attributes['dranet.example.com']");
    assert!(matches!(
        allocate(&pool, &guarded, &Taken::default()).unwrap(),
        Outcome::Unsatisfiable { .. }
    ));
    // Work bound: four nested comprehensions over 100 elements.
    let list = format!("[{}]", (0..100).map(|i| i.to_string()).collect::<Vec<_>>().join(","));
    let hostile = format!("{list}.all(a, {list}.all(b, {list}.all(c, {list}.all(d, a + b + c + d >= 0))))");
    let e = err(&hostile);
    assert!(matches!(e, CelError::CostLimit { .. }), "{e}");
    assert!(e.to_string().contains("cost limit"));
    let doubling = (0..24).fold("'ab'".to_owned(), |body, i| {
        format!("cel.bind(v{i}, {body}, v{i} + v{i})")
    });
    assert!(matches!(
        err(&format!("size({doubling}) > 0")),
        CelError::CostLimit { .. }
    ));
    let long = format!("true || {}", "true || ".repeat(2000));
    assert!(matches!(err(&long), CelError::TooLong { .. }));
    // Non-bool results are refused.
    assert!(matches!(err("1 + 1"), CelError::Eval { .. }));
}

#[test]
fn quantity_semver_and_bind_work_in_selectors() {
    let pool = common::single_gpu(common::pool("dgx-h100", &DraConfig::default()), 0);
    for (expr, want) in [
        (
            "device.capacity['gpu.nvidia.com'].memory.compareTo(quantity('40Gi')) >= 0",
            true,
        ),
        (
            "device.capacity['gpu.nvidia.com'].memory.isLessThan(quantity('40Gi'))",
            false,
        ),
        (
            "device.attributes['gpu.nvidia.com'].driverVersion.isGreaterThan(semver('535.0.0'))",
            true,
        ),
        (
            "device.attributes['gpu.nvidia.com'].cudaComputeCapability.major() >= 9",
            true,
        ),
        (
            "cel.bind(a, device.attributes['gpu.nvidia.com'], a.productName.startsWith('NVIDIA H100'))",
            true,
        ),
        ("quantity('200M') == quantity('200M')", true),
        ("isQuantity('10Gx')", false),
        (
            "quantity('1Gi').add(1).isGreaterThan(quantity('1Gi')) && quantity('1').sub(quantity('250m')) == quantity('750m')",
            true,
        ),
        (
            "semver('1.2.3-rc.1') < semver('1.2.3') || semver('1.2.3-rc.1').isLessThan(semver('1.2.3'))",
            true,
        ),
        ("device.attributes['resource.kubernetes.io'].numaNode == 0", true),
    ] {
        let claim = common::claim(&format!(
            "devices:\n  requests:\n  - name: g\n    exactly:\n      deviceClassName: gpu.nvidia.com\n      selectors:\n      - cel: {{expression: {expr:?}}}\n"
        ));
        let got = matches!(
            allocate(&pool, &claim, &Taken::default()).unwrap(),
            Outcome::Allocated(_)
        );
        assert_eq!(got, want, "{expr}");
    }
}

#[test]
fn the_search_gives_up_at_its_bound_instead_of_answering_unsatisfiable() {
    // Eight GPUs of one island, a distinct-attribute constraint no pair can
    // meet (every GPU shares its NUMA node with three others), so the
    // search must try many combinations.
    let pool = common::pool(
        "dgx-h100",
        &DraConfig::from_yaml("version: v1\ndynamicMig: false\n").unwrap(),
    );
    let claim = common::claim(
        "devices:\n  requests:\n  - name: g\n    exactly: {deviceClassName: gpu.nvidia.com, count: 3}\n  constraints:\n  - distinctAttribute: resource.kubernetes.io/numaNode\n",
    );
    let classes = common::classes(&pool.driver);
    let cache = SelectorCache::default();
    let pools = [pool];
    let mut alloc = Allocator::new(&pools, &classes, &cache);
    alloc.max_steps = 20;
    assert!(matches!(
        alloc.allocate(&claim, &Taken::default()).unwrap(),
        Outcome::GaveUp { steps: 21 }
    ));
    alloc.max_steps = railyard_dra::alloc::MAX_STEPS;
    assert!(matches!(
        alloc.allocate(&claim, &Taken::default()).unwrap(),
        Outcome::Unsatisfiable { .. }
    ));
}

/// A mix of claims users make on a MIG-capable box.
fn claim_mix() -> Vec<railyard_dra::claim::ClaimSpec> {
    let profile = |p: &str| {
        common::claim(&format!(
            "devices:\n  requests:\n  - name: m\n    exactly:\n      deviceClassName: mig.nvidia.com\n      selectors:\n      - cel: {{expression: \"device.attributes['gpu.nvidia.com'].profile == '{p}'\"}}\n"
        ))
    };
    vec![
        common::claim_file("h100-by-product.yaml"),
        profile("1g.10gb"),
        profile("1g.20gb"),
        profile("2g.20gb"),
        profile("3g.40gb"),
        profile("4g.40gb"),
        profile("7g.80gb"),
        profile("1g.10gb+me"),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// No counter is ever overdrawn, the MIG devices allocated on each GPU
    /// always form a layout the hardware accepts, and releasing every
    /// allocation restores the empty state.
    #[test]
    fn allocations_respect_counters_and_release_restores(picks in proptest::collection::vec(0usize..8, 1..40)) {
        let pool = common::pool("dgx-h100", &DraConfig::default());
        let pool = Pool { devices: pool.devices.into_iter().filter(|d| d.name.starts_with("gpu-0") || d.name.starts_with("gpu-1")).collect(), counter_sets: pool.counter_sets.into_iter().take(2).collect(), ..pool };
        let claims = claim_mix();
        let classes = common::classes(&pool.driver);
        let cache = SelectorCache::default();
        let pools = [pool.clone()];
        let alloc = Allocator::new(&pools, &classes, &cache);
        let mut taken = Taken::default();
        let mut all = Vec::new();
        for p in picks {
            if let Outcome::Allocated(a) = alloc.allocate(&claims[p], &taken).unwrap() {
                alloc.book(&mut taken, &a.devices);
                all.push(a.devices);
            }
            for set in &pool.counter_sets {
                for (name, total) in &set.counters {
                    prop_assert!(taken.counter(&pool.driver, &pool.name, &set.name, name) <= *total);
                }
            }
            let mut per_gpu: BTreeMap<u32, Vec<(railyard_core::mig::MigProfile, u8)>> = BTreeMap::new();
            for d in all.iter().flatten() {
                let dev = pool.devices.iter().find(|x| x.name == d.id.device).unwrap();
                if let Some(railyard_dra::device::AttrValue::String(p)) = dev.attributes.get("profile") {
                    let gpu: u32 = d.id.device[4..5].parse().unwrap();
                    let start: u8 = d.id.device.rsplit('-').next().unwrap().parse().unwrap();
                    let prof = railyard_core::mig::MigFamily::H100_80gb.profile_by_name(p).unwrap();
                    per_gpu.entry(gpu).or_default().push((prof, start));
                }
            }
            for (gpu, devs) in per_gpu {
                let layout = railyard_dra::inventory::layout_of(railyard_core::mig::MigFamily::H100_80gb, &devs);
                prop_assert!(layout.validate().is_ok(), "GPU {}: {:?}", gpu, layout.validate());
            }
        }
        for devices in all.iter().rev() {
            alloc.release(&mut taken, devices);
        }
        prop_assert_eq!(taken, Taken::default());
    }
}

/// Whole-GPU claims for `n` GPUs.
fn gpus_claim(n: u32) -> railyard_dra::claim::ClaimSpec {
    common::claim(&format!(
        "devices:\n  requests:\n  - name: gpus\n    exactly:\n      deviceClassName: gpu.nvidia.com\n      count: {n}\n"
    ))
}

#[test]
fn multi_gpu_claims_get_the_set_the_topology_ranks_best() {
    use railyard_core::topology::Constraints;
    // Every profile, 2..=4 GPUs, with each single GPU already taken: the
    // allocation is exactly best_gpus over the free GPUs.
    let mut differs_from_publish_order = 0;
    for profile in common::all_profiles() {
        let pool = railyard_dra::inventory::build_pool(&profile, &DraConfig::default(), "node-0").unwrap();
        let topo = railyard_dra::inventory::pool_topology(&profile).unwrap();
        let classes = common::classes(&pool.driver);
        let cache = SelectorCache::default();
        let pools = [pool.clone()];
        let alloc = Allocator::new(&pools, &classes, &cache).with_topology("node-0", &topo);
        // MIG-enabled GPUs are published as MIG devices only.
        let publishable: BTreeSet<u32> = profile
            .gpus
            .iter()
            .filter(|g| !g.mig_enabled)
            .map(|g| g.index)
            .collect();
        for taken_gpu in publishable.iter().copied() {
            let mut taken = Taken::default();
            let name = topo.gpus.iter().find(|(_, g)| **g == taken_gpu).unwrap().0.clone();
            let held = common::claim(&format!(
                "devices:\n  requests:\n  - name: g\n    exactly:\n      deviceClassName: gpu.nvidia.com\n      selectors:\n      - cel: {{expression: \"device.attributes['gpu.nvidia.com'].uuid == '{}'\"}}\n",
                profile.gpus.iter().find(|g| g.index == taken_gpu).unwrap().uuid
            ));
            let Outcome::Allocated(h) = alloc.allocate(&held, &taken).unwrap() else {
                panic!("{} gpu {taken_gpu}", profile.name)
            };
            assert_eq!(h.devices[0].id.device, name);
            alloc.book(&mut taken, &h.devices);
            let free: BTreeSet<u32> = publishable.iter().copied().filter(|g| *g != taken_gpu).collect();
            for n in 2..=4u32 {
                if (n as usize) > free.len() {
                    continue;
                }
                let Outcome::Allocated(a) = alloc.allocate(&gpus_claim(n), &taken).unwrap() else {
                    panic!("{}: {n} GPUs with gpu {taken_gpu} taken", profile.name)
                };
                let got: BTreeSet<u32> = a.devices.iter().map(|d| topo.gpus[&d.id.device]).collect();
                let want: BTreeSet<u32> = topo
                    .topology
                    .best_gpus(n as usize, &free, &Constraints::default())
                    .unwrap()
                    .into_iter()
                    .collect();
                assert_eq!(got, want, "{}: {n} GPUs with gpu {taken_gpu} taken", profile.name);
                let first_free: BTreeSet<u32> = free.iter().copied().take(n as usize).collect();
                differs_from_publish_order += usize::from(got != first_free);
            }
        }
    }
    // The ranking decides somewhere: otherwise this test would not notice
    // it being ignored.
    assert!(differs_from_publish_order > 0);
}

#[test]
fn allocation_with_the_deepest_selectors_runs_on_a_2_mib_stack() {
    use railyard_dra::cel::MAX_AST_DEPTH;
    // The allocator evaluates on the caller's thread: a claim whose
    // selectors are as deep as accepted must fit a spawned thread's default.
    let chain = format!("1{} > 0", " + 1".repeat(MAX_AST_DEPTH - 3));
    let nested = (0..MAX_AST_DEPTH / 2 - 2).fold("true".to_owned(), |body, i| format!("[{i}].all(x{i}, {body})"));
    let claim = common::claim(&format!(
        "devices:\n  requests:\n  - name: gpus\n    exactly:\n      deviceClassName: gpu.nvidia.com\n      count: 2\n      selectors:\n      - cel: {{expression: {chain:?}}}\n      - cel: {{expression: {nested:?}}}\n"
    ));
    let pool = common::pool("dgx-h100", &DraConfig::default());
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            let Outcome::Allocated(a) = allocate(&pool, &claim, &Taken::default()).unwrap() else {
                panic!("allocates")
            };
            assert_eq!(a.devices.len(), 2);
        })
        .unwrap()
        .join()
        .expect("no stack overflow");
}

#[test]
fn an_allocator_kept_across_claims_answers_as_a_fresh_one() {
    // The allocator memoises selector verdicts per device: a sequence of
    // different claims on one allocator must give what fresh allocators
    // give, booking as it goes.
    let cfg = DraConfig::from_yaml("version: v1\nsharing: {shares: 4, gpus: [6, 7]}\n").unwrap();
    let pool = common::pool("dgx-h100", &cfg);
    let classes = common::classes(&pool.driver);
    let cache = SelectorCache::default();
    let pools = [pool.clone()];
    let kept = Allocator::new(&pools, &classes, &cache);
    let claims: Vec<_> = [
        "h100-by-product.yaml",
        "mig-1g.yaml",
        "shared-10gi.yaml",
        "bridged-pair.yaml",
    ]
    .iter()
    .map(|f| common::claim_file(f))
    .chain([gpus_claim(2), gpus_claim(3)])
    .collect();
    let mut taken = Taken::default();
    for round in 0..6 {
        for (i, claim) in claims.iter().enumerate() {
            let fresh_cache = SelectorCache::default();
            let fresh = Allocator::new(&pools, &classes, &fresh_cache).allocate(claim, &taken);
            let got = kept.allocate(claim, &taken);
            assert_eq!(got, fresh, "round {round}, claim {i}");
            if let Ok(Outcome::Allocated(a)) = got {
                kept.book(&mut taken, &a.devices);
            }
        }
    }
}
