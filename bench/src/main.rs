//! `railyard-bench replay`, `gang`, `load` and `cluster`: see bench/README.md.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use railyard_core::packing::PolicyKind;
use railyard_core::packing::policies::RailyardConfig;

use railyard_bench::report::{self, Summary};
use railyard_bench::run::{self, Options, Trace};
use railyard_bench::trace::{parse_nodes, parse_pods};
use railyard_bench::variants::{Family, SpecOptions, SpecWeight, constrain, reshape, to_csv};

#[derive(Debug, Parser)]
#[command(
    name = "railyard-bench",
    version,
    about = "Cluster simulator and trace replay for Railyard"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Fractional pods time-slice a GPU (the paper's setting).
    Timeslice,
    /// MIG-capable nodes serve fractional pods with MIG instances.
    Mig,
    /// Both, side by side.
    Both,
}

#[derive(Debug, clap::Args)]
struct ReplayArgs {
    /// Shipped traces to replay: default, gpushare100, multigpu50 or all.
    #[arg(long, value_delimiter = ',', default_value = "default")]
    trace: Vec<String>,
    /// Pod list file(s) in the openb format (replaces --trace).
    #[arg(long = "pods", value_delimiter = ',')]
    pods: Vec<PathBuf>,
    /// Node list file.
    #[arg(long)]
    nodes: Option<PathBuf>,
    /// Policies, comma-separated (random, dotprod, clustering, packing,
    /// bestfit, kube-default, fgd, railyard) or "all".
    #[arg(long, value_delimiter = ',', default_value = "all")]
    policies: Vec<String>,
    /// Seeds: a range "42-51", a list "42,43" or one seed.
    #[arg(long, default_value = "42-51")]
    seeds: String,
    /// Output directory for CSV files and SVG plots.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Time-slicing, MIG, or both.
    #[arg(long, value_enum, default_value = "timeslice")]
    mode: Mode,
    /// Node model partitioned with MIG in MIG mode (8-GPU nodes of it).
    #[arg(long, default_value = "G2")]
    mig_model: String,
    /// Sampled GPU request as a multiple of cluster capacity.
    #[arg(long, default_value_t = 1.3)]
    tune: f64,
    /// Share of pods covered by the typical task distribution.
    #[arg(long, default_value_t = 0.95)]
    popularity: f64,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Skip the SVG plots.
    #[arg(long)]
    no_plots: bool,
    /// Baselines break score ties at random (kube-scheduler's selectHost)
    /// instead of taking the first node in list order.
    #[arg(long)]
    random_ties: bool,
    /// Drop memory requests (to study how much memory constrains packing).
    #[arg(long)]
    ignore_memory: bool,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
    /// Railyard: score differences below this many milli-GPU are ties,
    /// broken toward nodes in use, then the node left with least idle GPU.
    #[arg(long, default_value_t = RailyardConfig::DEFAULT.eps, value_name = "MILLI")]
    railyard_epsilon: f64,
    /// Railyard: weight of CPU/memory-stranded GPU growth against
    /// fragmentation growth (0 turns stranding off).
    #[arg(long, default_value_t = RailyardConfig::DEFAULT.strand, value_name = "W")]
    railyard_strand: f64,
    /// Railyard: multiplier on the workload's mean CPU and memory per GPU
    /// used to decide which idle GPUs are stranded.
    #[arg(long, default_value_t = RailyardConfig::DEFAULT.rate_scale, value_name = "X")]
    railyard_rate_scale: f64,
    /// Railyard: plain lowest-index ties (no in-use / least-idle tie-breaks).
    #[arg(long)]
    railyard_index_ties: bool,
    /// Railyard, with constrained pods: weight of the cost of placing GPU
    /// on a model that constrained demand needs (0 = off).
    #[arg(long, default_value_t = RailyardConfig::DEFAULT.demand, value_name = "W")]
    railyard_demand: f64,
    /// Railyard, with constrained pods: score nodes against the whole mix
    /// instead of the tasks that can use their model.
    #[arg(long)]
    railyard_no_class_mix: bool,
    /// Share of GPU pods given a GPU-model constraint (`gpu_spec`); a list
    /// replays each share as its own trace.
    #[arg(long, value_delimiter = ',', value_name = "SHARE")]
    gpu_spec_share: Vec<f64>,
    /// Seeds for the constraints (a list replays each as its own trace).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    gpu_spec_seed: Vec<u64>,
    /// How single-model constraints are spread: in proportion to each
    /// model's GPUs or to its nodes.
    #[arg(long, value_enum, default_value = "gpus")]
    gpu_spec_weight: SpecWeightArg,
    /// Share of constraints that are sets of several models.
    #[arg(long, default_value_t = 0.1)]
    gpu_spec_multi: f64,
    /// Family variant: share of pods that are CPU-only (a list: one trace each).
    #[arg(long, value_delimiter = ',', value_name = "SHARE")]
    cpu_pods: Vec<f64>,
    /// Family variant: share of GPU request from shared-GPU pods.
    #[arg(long, value_delimiter = ',', value_name = "SHARE")]
    share_gpu: Vec<f64>,
    /// Family variant: share of GPU request from multi-GPU pods.
    #[arg(long, value_delimiter = ',', value_name = "SHARE")]
    multi_gpu: Vec<f64>,
    /// Seed for the family variants.
    #[arg(long, default_value_t = 1)]
    variant_seed: u64,
    /// Write each generated pod list as CSV into this directory.
    #[arg(long, value_name = "DIR")]
    write_pods: Option<PathBuf>,
    /// Also print allocation by GPU model and failures by constraint.
    #[arg(long)]
    by_model: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SpecWeightArg {
    Gpus,
    Nodes,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Replay pod lists through the placement policies (FGD paper method).
    Replay(ReplayArgs),
    /// Distributed-training gangs on a rail-optimized cluster: busbw,
    /// queueing, allocation and partial gangs per policy.
    Gang(railyard_bench::gang::cli::GangArgs),
    /// Drive the scheduler extender over HTTP (filter + prioritize pairs):
    /// p50/p99 latency and throughput at 1,000 / 5,000 / 10,000 nodes.
    Load(railyard_bench::load::LoadArgs),
    /// The whole system in one process: simulated nodes running the real
    /// device plugin against fake kubelets, the real extender over HTTP and
    /// a kube-scheduler loop on a fake API server, through a scripted mix.
    Cluster(railyard_cluster::cli::ClusterArgs),
}

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data")
}

fn parse_seeds(s: &str) -> Result<Vec<u64>> {
    let s = s.trim();
    let range = s.split_once("..=").or_else(|| s.split_once('-'));
    if let Some((a, b)) = range {
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

fn label_of(path: &Path) -> String {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("trace");
    stem.strip_prefix("openb_pod_list_").unwrap_or(stem).to_string()
}

fn main() -> Result<()> {
    let args = match Cli::parse().command {
        Command::Replay(args) => args,
        Command::Gang(args) => return railyard_bench::gang::cli::run(args),
        Command::Load(args) => return railyard_bench::load::run(args),
        Command::Cluster(args) => return railyard_cluster::cli::main(args),
    };
    let started = Instant::now();

    let policies: Vec<PolicyKind> = if args.policies.iter().any(|p| p == "all") {
        PolicyKind::ALL.to_vec()
    } else {
        args.policies
            .iter()
            .map(|p| PolicyKind::from_name(p).with_context(|| format!("unknown policy {p:?}")))
            .collect::<Result<_>>()?
    };
    let seeds = parse_seeds(&args.seeds)?;
    if !(args.railyard_epsilon >= 0.0 && args.railyard_strand >= 0.0 && args.railyard_rate_scale > 0.0) {
        bail!("--railyard-epsilon and --railyard-strand must be >= 0, --railyard-rate-scale > 0");
    }
    let pod_files: Vec<PathBuf> = if !args.pods.is_empty() {
        args.pods.clone()
    } else {
        let names: Vec<&str> = if args.trace.iter().any(|t| t == "all") {
            vec!["default", "gpushare100", "multigpu50"]
        } else {
            args.trace.iter().map(String::as_str).collect()
        };
        names
            .iter()
            .map(|n| data_dir().join(format!("openb_pod_list_{n}.csv")))
            .collect()
    };
    let node_file = args
        .nodes
        .clone()
        .unwrap_or_else(|| data_dir().join("openb_node_list_gpu_node.csv"));
    let node_text = std::fs::read_to_string(&node_file).with_context(|| format!("reading {}", node_file.display()))?;
    let (nodes, models) = parse_nodes(&node_text).with_context(|| format!("parsing {}", node_file.display()))?;

    let modes: Vec<bool> = match args.mode {
        Mode::Timeslice => vec![false],
        Mode::Mig => vec![true],
        Mode::Both => vec![false, true],
    };
    let mig_model = models.get(&args.mig_model);
    if args.mode != Mode::Timeslice && mig_model.is_none() {
        bail!("no node has model {:?} to partition with MIG", args.mig_model);
    }
    let mut traces = Vec::new();
    let mut variants: Vec<(String, Family)> = vec![(String::new(), Family::default())];
    for (flag, list) in [
        ("cpu", &args.cpu_pods),
        ("share", &args.share_gpu),
        ("multi", &args.multi_gpu),
    ] {
        for &x in list.iter() {
            if !(0.0..=1.0).contains(&x) {
                bail!("--{flag} shares are in 0..=1");
            }
            let mut f = Family::default();
            match flag {
                "cpu" => f.cpu_pods = Some(x),
                "share" => f.share_gpu = Some(x),
                _ => f.multi_gpu = Some(x),
            }
            variants.push((format!("+{flag}{:.0}", x * 100.0), f));
        }
    }
    if variants.len() > 1 {
        // Only the variants asked for, not the plain list too.
        variants.remove(0);
    }
    let mut specs: Vec<Option<SpecOptions>> = Vec::new();
    for &share in &args.gpu_spec_share {
        if !(0.0..=1.0).contains(&share) {
            bail!("--gpu-spec-share is in 0..=1");
        }
        for &seed in &args.gpu_spec_seed {
            let mut o = SpecOptions::new(share, seed);
            o.multi = args.gpu_spec_multi;
            o.weight = match args.gpu_spec_weight {
                SpecWeightArg::Gpus => SpecWeight::Gpus,
                SpecWeightArg::Nodes => SpecWeight::Nodes,
            };
            specs.push(Some(o));
        }
    }
    if specs.is_empty() {
        specs.push(None);
    }
    let mut lists = Vec::new();
    for f in &pod_files {
        let text = std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        let base = parse_pods(&text).with_context(|| format!("parsing {}", f.display()))?;
        for (vlabel, family) in &variants {
            let reshaped = reshape(&base, family, args.variant_seed);
            for spec in &specs {
                let mut pods = reshaped.clone();
                let mut label = format!("{}{vlabel}", label_of(f));
                if let Some(o) = spec {
                    constrain(&mut pods, &nodes, &models, o);
                    let w = if o.weight == SpecWeight::Nodes { "n" } else { "" };
                    label.push_str(&format!("+spec{:.0}{w}s{}", o.share * 100.0, o.seed));
                }
                lists.push((label, pods));
            }
        }
    }
    for (label, pods) in &lists {
        if let Some(dir) = &args.write_pods {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            let path = dir.join(format!("openb_pod_list_{label}.csv"));
            std::fs::write(&path, to_csv(pods)).with_context(|| format!("writing {}", path.display()))?;
        }
        let mut reqs: Vec<_> = pods.iter().map(|p| p.request(&models)).collect();
        if args.ignore_memory {
            reqs.iter_mut().for_each(|r| r.memory_mib = 0);
        }
        for &mig in &modes {
            let label = if mig { format!("{label}+mig") } else { label.clone() };
            let cluster = run::build_cluster(&nodes, if mig { mig_model } else { None });
            traces.push(Trace {
                label,
                pods: reqs.clone(),
                cluster,
            });
        }
    }
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let opts = Options {
        policies,
        seeds,
        tune: args.tune,
        threads,
        popularity: args.popularity,
        random_ties: args.random_ties,
        railyard: RailyardConfig {
            eps: args.railyard_epsilon,
            strand: args.railyard_strand,
            rate_scale: args.railyard_rate_scale,
            prefer_in_use: !args.railyard_index_ties,
            prefer_less_idle: !args.railyard_index_ties,
            class_mix: !args.railyard_no_class_mix,
            demand: args.railyard_demand,
        },
    };
    let gpus: u64 = nodes.iter().map(|n| n.gpus as u64).sum();
    eprintln!(
        "{} nodes, {} GPUs; {} trace(s) × {} policies × {} seeds on {} threads",
        nodes.len(),
        gpus,
        traces.len(),
        opts.policies.len(),
        opts.seeds.len(),
        threads
    );

    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(run::total_pods(&traces, &opts))
    };
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} pods ({eta} left)")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let runs = run::run_all(&traces, &opts, &|n| bar.inc(n));
    bar.finish_and_clear();

    let summaries = report::summarize(&runs);
    println!("{}", report::table(&summaries));
    if args.by_model {
        println!("{}", report::by_model_table(&runs, &models));
    }

    let out = args
        .out
        .clone()
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-out"));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    report::write_csvs(&out, &runs, &summaries).with_context(|| format!("writing CSV to {}", out.display()))?;
    if !args.no_plots {
        for t in &traces {
            let mine: Vec<&Summary> = summaries.iter().filter(|s| s.trace == t.label).collect();
            let title = format!(
                "{}: GPU allocation vs arrived request (mean of {} seeds)",
                t.label,
                opts.seeds.len()
            );
            report::plot(
                &out.join(format!("alloc_{}.svg", t.label)),
                &title,
                &mine,
                (0.0, 130.0),
                (0.0, 100.0),
            )
            .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
            report::plot(
                &out.join(format!("alloc_{}_zoom.svg", t.label)),
                &format!("{} (zoom)", t.label),
                &mine,
                (70.0, 130.0),
                (70.0, 100.0),
            )
            .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
        }
    }
    eprintln!(
        "wrote CSV{} to {} in {:.1}s",
        if args.no_plots { "" } else { " and SVG" },
        out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
