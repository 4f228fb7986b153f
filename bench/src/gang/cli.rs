//! `railyard-bench gang`: arguments and the run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use railyard_core::fabric::Fabric;
use railyard_core::gang::GangCluster;
use railyard_core::machine::MachineProfile;
use railyard_core::topology::NodeTopology;

use super::jct;
use super::limits::{self, LimitModel};
use super::policies::PolicyKind;
use super::report;
use super::sim::{BestCache, RunResult, SimOptions, best_busbw, simulate};
use super::workload::{self, Job, Mix};

#[derive(Debug, clap::Args)]
pub struct GangArgs {
    /// Cluster YAML.
    #[arg(long)]
    pub cluster: Option<PathBuf>,
    /// Directory of machine profiles.
    #[arg(long)]
    pub machines: Option<PathBuf>,
    /// Workload CSV to replay (replaces the generated one; seeds then only
    /// label runs).
    #[arg(long)]
    pub workload: Option<PathBuf>,
    /// Write the generated workload of the first seed to this CSV file.
    #[arg(long)]
    pub write_workload: Option<PathBuf>,
    /// Gang jobs per generated workload.
    #[arg(long, default_value_t = 1200)]
    pub jobs: usize,
    /// Offered load (requested GPU-time ÷ capacity over the arrival window).
    #[arg(long, default_value_t = 0.9)]
    pub load: f64,
    /// Share of GPU-time from single-GPU and fractional background pods.
    #[arg(long, default_value_t = 0.15)]
    pub background: f64,
    /// Policies, comma-separated (kube-default, bestfit, kueue-tas,
    /// volcano-hn, railyard) or "all".
    #[arg(long, value_delimiter = ',', default_value = "all")]
    pub policies: Vec<String>,
    /// Seeds: a range "42-44", a list "42,43" or one seed.
    #[arg(long, default_value = "42-44")]
    pub seeds: String,
    /// Output directory for CSV and SVG.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Allocation sample step, minutes.
    #[arg(long, default_value_t = 15.0)]
    pub sample_min: f64,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Railyard: start a gang at once only when its estimated busbw is at
    /// least this share of the best on an empty cluster (0: always at once) …
    #[arg(long, default_value_t = 0.95)]
    pub railyard_accept: f64,
    /// … else after waiting this share of its duration (with
    /// `--railyard-wait patience`).
    #[arg(long, default_value_t = 0.25)]
    pub railyard_max_wait: f64,
    /// Railyard's waiting rule: `reserve` (a gang below the accept ratio
    /// waits only when it finishes sooner by waiting for the placement
    /// running jobs' end times promise; that placement is reserved and
    /// later jobs backfill around it) or `patience` (wait up to
    /// `--railyard-max-wait` of its duration, no reservation).
    #[arg(long, default_value = "reserve")]
    pub railyard_wait: String,
    /// Share of a step spent in all-reduce at full bandwidth that Railyard's
    /// `reserve` rule assumes (kept apart from `--comm-share`, the true one,
    /// so the rule can be replayed against a world it was not tuned for).
    #[arg(long, default_value_t = 0.25)]
    pub railyard_comm_share: f64,
    /// True share `s` of every job's run spent in all-reduce at full
    /// bandwidth: a job placed at busbw ratio `r` runs `duration × ((1 − s)
    /// + s / r)`, under every policy.
    #[arg(long, default_value_t = 0.25)]
    pub comm_share: f64,
    /// How the time limits jobs declare (all reservations and backfill
    /// see) relate to their durations: `modal` (over-estimates rounded up
    /// to round values, 10% exact; see src/gang/limits.rs), `uniform:F`
    /// (duration × U[1, F]) or `exact` (limits = durations). Limits given
    /// in a `--workload` CSV are kept.
    #[arg(long, default_value = "modal")]
    pub limit_error: String,
    /// When a job ends before its limit, plan every reservation again
    /// (`on`, as Slurm's backfill pass) or keep them (`off`).
    #[arg(long, default_value = "on")]
    pub recompute: String,
    /// Least simulated seconds between two such replans (Slurm's
    /// `bf_interval`); early ends inside it are replanned together. 300 s:
    /// on seed 42 (150 jobs) 30 s replanned 8× as often for the same JCT
    /// (bench/README.md).
    #[arg(long, default_value_t = 300.0)]
    pub backfill_interval: f64,
    /// Most gangs larger than one node holding a reservation at once
    /// (Slurm's backfill depth).
    #[arg(long, default_value_t = 8)]
    pub railyard_reservations: usize,
    /// Most jobs that fit on one node (single pods, fractional ones
    /// included, and one-node gangs) holding a reservation at once, counted
    /// apart from the gangs; 0: the first rule (single pods never reserve,
    /// one-node gangs count against `--railyard-reservations`).
    #[arg(long, default_value_t = 256)]
    pub railyard_node_reservations: usize,
    #[arg(long)]
    pub no_plots: bool,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn parse_seeds(s: &str) -> Result<Vec<u64>> {
    let s = s.trim();
    if let Some((a, b)) = s.split_once('-') {
        let (a, b): (u64, u64) = (a.trim().parse()?, b.trim().parse()?);
        if b < a {
            bail!("seed range {s} is empty");
        }
        return Ok((a..=b).collect());
    }
    s.split(',')
        .map(|x| x.trim().parse::<u64>().with_context(|| format!("bad seed {x:?}")))
        .collect()
}

/// Every machine profile (`*.yaml`) in `dir`, as topologies by name.
pub fn load_machines(dir: &Path) -> Result<BTreeMap<String, NodeTopology>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = e?.path();
        if p.extension().and_then(|x| x.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
        let prof = MachineProfile::from_yaml(&text).with_context(|| format!("parsing {}", p.display()))?;
        let topo = NodeTopology::from_profile(&prof).with_context(|| format!("topology of {}", p.display()))?;
        out.insert(prof.name.clone(), topo);
    }
    Ok(out)
}

pub fn run(args: GangArgs) -> Result<()> {
    let started = Instant::now();
    let cluster_path = args
        .cluster
        .clone()
        .unwrap_or_else(|| root().join("configs/clusters/dgx-h100-4pod128.yaml"));
    let text = std::fs::read_to_string(&cluster_path).with_context(|| format!("reading {}", cluster_path.display()))?;
    let fabric = Fabric::from_yaml(&text).with_context(|| format!("parsing {}", cluster_path.display()))?;
    let machines = load_machines(&args.machines.clone().unwrap_or_else(|| root().join("configs/machines")))?;
    let cluster = GangCluster::new(&fabric, &machines).context("indexing the cluster")?;

    let policies: Vec<PolicyKind> = if args.policies.iter().any(|p| p == "all") {
        PolicyKind::ALL.to_vec()
    } else {
        args.policies
            .iter()
            .map(|p| PolicyKind::from_name(p).with_context(|| format!("unknown policy {p:?}")))
            .collect::<Result<_>>()?
    };
    let seeds = parse_seeds(&args.seeds)?;
    if !(args.load > 0.0 && (0.0..1.0).contains(&args.background) && args.sample_min > 0.0) {
        bail!("--load must be > 0, --background in [0, 1), --sample-min > 0");
    }
    for (flag, v) in [
        ("--comm-share", args.comm_share),
        ("--railyard-comm-share", args.railyard_comm_share),
    ] {
        if !(0.0..=1.0).contains(&v) {
            bail!("{flag} must be in [0, 1], got {v}");
        }
    }
    if !(args.backfill_interval.is_finite() && args.backfill_interval >= 0.0) {
        bail!(
            "--backfill-interval must be a number of seconds ≥ 0, got {}",
            args.backfill_interval
        );
    }
    let limit_model = LimitModel::parse(&args.limit_error)?;
    let recompute = match args.recompute.as_str() {
        "on" => true,
        "off" => false,
        other => bail!("--recompute: `{other}` is not on or off"),
    };
    let fixed: Option<Vec<Job>> = match &args.workload {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            Some(workload::parse(&text).with_context(|| format!("parsing {}", p.display()))?)
        }
        None => None,
    };
    let mix = Mix {
        gangs: args.jobs,
        load: args.load,
        background: args.background,
        capacity_gpus: cluster.total_gpus(),
    };
    let workloads: Vec<(u64, Vec<Job>)> = seeds
        .iter()
        .map(|&s| {
            let mut jobs = fixed.clone().unwrap_or_else(|| workload::generate(&mix, s));
            limits::assign(&mut jobs, limit_model, s);
            (s, jobs)
        })
        .collect();
    if let (Some(path), Some((_, jobs))) = (&args.write_workload, workloads.first()) {
        std::fs::write(path, workload::to_csv(jobs)).with_context(|| format!("writing {}", path.display()))?;
    }
    let mut best = BestCache::new();
    for (_, jobs) in &workloads {
        for j in jobs.iter().filter(|j| j.is_gang()) {
            let key = (j.members, j.gpus_per_member);
            if let std::collections::hash_map::Entry::Vacant(v) = best.entry(key)
                && let Some(b) = best_busbw(&cluster, key.0, key.1)
            {
                v.insert(b);
            }
        }
    }
    let gangs = workloads[0].1.iter().filter(|j| j.is_gang()).count();
    eprintln!(
        "{}: {} nodes, {} GPUs; {} jobs ({} gangs) × {} policies × {} seeds",
        fabric.name(),
        cluster.len(),
        cluster.total_gpus(),
        workloads[0].1.len(),
        gangs,
        policies.len(),
        seeds.len()
    );

    let tasks: Vec<(usize, PolicyKind)> = (0..workloads.len())
        .flat_map(|w| policies.iter().map(move |&p| (w, p)))
        .collect();
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(tasks.len() as u64)
    };
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} runs")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let opts = SimOptions {
        sample_s: args.sample_min * 60.0,
        accept_ratio: args.railyard_accept,
        max_wait_frac: args.railyard_max_wait,
        reserve: match args.railyard_wait.as_str() {
            "reserve" => true,
            "patience" => false,
            other => bail!("--railyard-wait: `{other}` is not reserve or patience"),
        },
        comm_share: args.railyard_comm_share,
        max_reservations: args.railyard_reservations,
        node_reservations: args.railyard_node_reservations,
        job_comm_share: args.comm_share,
        recompute,
        backfill_interval_s: args.backfill_interval,
    };
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, RunResult)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&(w, p)) = tasks.get(i) else { break };
                    let (seed, jobs) = &workloads[w];
                    let r = simulate(&cluster, jobs, p, *seed, &best, &opts);
                    if let Ok(mut v) = results.lock() {
                        v.push((i, r));
                    }
                    bar.inc(1);
                }
            });
        }
    });
    bar.finish_and_clear();
    let mut runs = results.into_inner().map_err(|_| anyhow::anyhow!("a worker panicked"))?;
    runs.sort_by_key(|(i, _)| *i);
    let runs: Vec<RunResult> = runs.into_iter().map(|(_, r)| r).collect();

    let summaries = report::summarize(&runs);
    println!("{}", report::table(&summaries));
    println!("{}", report::wait_table(&summaries));
    let jcts = jct::summarize(&runs, cluster.total_gpus());
    println!("{}", jct::table(&jcts));
    println!("{}", jct::class_table(&jcts, "mean JCT min", |s| s.mean_min));
    println!("{}", jct::class_table(&jcts, "p95 JCT min", |s| s.p95_min));
    println!("{}", jct::class_table(&jcts, "slowdown", |s| s.slowdown_mean));
    println!("{}", jct::goal(&jcts, &summaries));
    let out = args.out.clone().unwrap_or_else(|| root().join("target/bench-out"));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    report::write_csvs(&out, &runs, &summaries).with_context(|| format!("writing CSV to {}", out.display()))?;
    jct::write_csv(&out, &jcts).with_context(|| format!("writing gang_jct.csv to {}", out.display()))?;
    if !args.no_plots {
        let what = format!("{} ({} seeds)", fabric.name(), seeds.len());
        report::plot_alloc(
            &out.join("gang_alloc.svg"),
            &format!("GPU allocation over time, {what}"),
            &summaries,
        )
        .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
        report::plot_ratio_cdf(
            &out.join("gang_busbw_cdf.svg"),
            &format!("Gang busbw vs best on an empty cluster, {what}"),
            &summaries,
        )
        .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
        jct::plot_slowdown_cdf(
            &out.join("gang_jct_slowdown_cdf.svg"),
            &format!("JCT slowdown, {what}"),
            &jcts,
        )
        .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
    }
    eprintln!(
        "wrote CSV/SVG to {} in {:.1}s",
        out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
