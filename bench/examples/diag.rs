//! Which pods fail to place by arrived = 100%, by shape, for one policy.
//! `cargo run --release -p railyard-bench --example diag -- railyard default 42-51 [eps=50 strand=2 scale=1]`
//! prints, at arrived = 100%, the failed GPU request by pod shape, the idle
//! GPU by node class and the partly used GPUs by leftover size.

use std::path::Path;

use anyhow::Context;
use std::sync::Arc;

use railyard_bench::replay::sample;
use railyard_bench::trace::{parse_nodes, parse_pods};
use railyard_core::packing::policies::{Railyard, RailyardConfig};
use railyard_core::packing::{Cluster, PodRequest, PolicyKind, TaskDistribution};

fn class(p: &PodRequest) -> &'static str {
    if !p.wants_gpu() {
        "cpu-only"
    } else if p.is_share() {
        "share"
    } else {
        match p.num_gpu {
            1 => "1-gpu",
            2 => "2-gpu",
            4 => "4-gpu",
            8 => "8-gpu",
            _ => "n-gpu",
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let policy = PolicyKind::from_name(args.get(1).map_or("railyard", |s| s.as_str())).context("unknown policy")?;
    let trace = args.get(2).map_or("default", |s| s.as_str()).to_string();
    let seeds: Vec<u64> = match args.get(3).map(|s| s.as_str()).unwrap_or("42-51").split_once('-') {
        Some((a, b)) => (a.parse()?..=b.parse()?).collect(),
        None => vec![args[3].parse()?],
    };
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
    let (nodes, models) = parse_nodes(&std::fs::read_to_string(data.join("openb_node_list_gpu_node.csv"))?)?;
    let pods: Vec<PodRequest> = parse_pods(&std::fs::read_to_string(
        data.join(format!("openb_pod_list_{trace}.csv")),
    )?)?
    .iter()
    .map(|p| p.request(&models))
    .collect();
    let empty = Cluster::new(&nodes);
    let dist = Arc::new(TaskDistribution::with_options(&pods, policy.dist_options()));
    let classes = ["share", "1-gpu", "2-gpu", "4-gpu", "8-gpu", "n-gpu", "cpu-only"];
    let mut fail_milli = vec![0u64; classes.len()];
    let mut fail_n = vec![0u64; classes.len()];
    let mut arr_milli = vec![0u64; classes.len()];
    let mut total_unalloc = 0.0;
    let mut hist = [[0u64; 3]; 10];
    let mut idle_by: std::collections::BTreeMap<(String, bool), [u64; 2]> = Default::default();
    let mut fail_cpu: std::collections::BTreeMap<u32, u64> = Default::default();
    for &seed in &seeds {
        let work = sample(&pods, empty.gpu_capacity_milli, 1.3, seed);
        let mut c = empty.clone();
        let mut pol: Box<dyn railyard_core::packing::Policy> = if policy == PolicyKind::Railyard {
            let mut cfg = RailyardConfig::DEFAULT;
            for kv in args.iter().skip(4) {
                let (k, v) = kv.split_once('=').context("knobs are key=value")?;
                let v: f64 = v.parse()?;
                match k {
                    "eps" => cfg.eps = v,
                    "strand" => cfg.strand = v,
                    "scale" => cfg.rate_scale = v,
                    _ => anyhow::bail!("unknown knob {k} (eps, strand, scale)"),
                }
            }
            Box::new(Railyard::with_config(dist.clone(), cfg))
        } else {
            policy.build(seed ^ 0x5EED_F7A1, dist.clone())
        };
        let mut arrived = 0u64;
        for pod in &work {
            if arrived >= c.gpu_capacity_milli {
                break;
            }
            let k = classes
                .iter()
                .position(|&x| x == class(pod))
                .unwrap_or(classes.len() - 1);
            arr_milli[k] += pod.total_gpu_milli();
            let ok = pol.place(&c, pod).map(|p| c.apply(pod, p).is_ok()).unwrap_or(false);
            if !ok {
                fail_milli[k] += pod.total_gpu_milli();
                fail_n[k] += 1;
                if k == 1 {
                    *fail_cpu.entry(pod.cpu_milli).or_default() += 1;
                }
            }
            arrived += pod.total_gpu_milli();
        }
        total_unalloc += 100.0 - 100.0 * c.allocation_ratio();
        for nd in &c.nodes {
            for &g in nd.gpus() {
                if g == 0 || g == 1000 {
                    continue;
                }
                let b = [50u16, 110, 160, 191, 230, 320, 470, 650, 810, 1000]
                    .iter()
                    .position(|&x| g < x)
                    .unwrap_or(9);
                let cpu_b = if nd.cpu_left < 2000 {
                    0
                } else if nd.cpu_left < 6000 {
                    1
                } else {
                    2
                };
                hist[b][cpu_b] += g as u64;
            }
            let idle = nd.gpu_idle_milli() as u64;
            if idle == 0 {
                continue;
            }
            let m = nd.model.map_or("?", |m| models.name(m)).to_string();
            let key = format!("{}x{} cpu{}", nd.gpu_count, m, nd.cpu_cap / 1000);
            let free = nd.free_gpus() as u64 * 1000;
            let cpu_small = nd.cpu_left < 4000;
            let e = idle_by.entry((key, cpu_small)).or_insert([0u64; 2]);
            e[0] += free;
            e[1] += idle - free;
        }
    }
    let n = seeds.len() as f64;
    let cap = empty.gpu_capacity_milli as f64;
    println!(
        "{} {trace}: unallocated {:.2}% (mean of {} seeds)",
        policy.name(),
        total_unalloc / n,
        seeds.len()
    );
    for ((k, small), v) in &idle_by {
        println!(
            "  idle on {k:22} cpu<4: {small:5}  free GPUs {:5.2}%  partial {:5.2}%",
            100.0 * v[0] as f64 / n / cap,
            100.0 * v[1] as f64 / n / cap
        );
    }
    for (b, h) in hist.iter().enumerate() {
        println!(
            "  partial < {:4}: cpu<2 {:5.2}%  cpu<6 {:5.2}%  more {:5.2}%",
            [50u16, 110, 160, 191, 230, 320, 470, 650, 810, 1000][b],
            100.0 * h[0] as f64 / n / cap,
            100.0 * h[1] as f64 / n / cap,
            100.0 * h[2] as f64 / n / cap
        );
    }
    println!(
        "  failed 1-gpu by cpu: {:?}",
        fail_cpu
            .iter()
            .map(|(c, k)| (c / 1000, *k as f64 / n))
            .collect::<Vec<_>>()
    );
    for (k, c) in classes.iter().enumerate() {
        println!(
            "  {c:9} failed {:7.1} pods/seed, {:5.2}% of capacity; arrived {:5.2}%",
            fail_n[k] as f64 / n,
            100.0 * fail_milli[k] as f64 / n / cap,
            100.0 * arr_milli[k] as f64 / n / cap
        );
    }
    Ok(())
}
