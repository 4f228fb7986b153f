//! `railyard-bench cluster`: the arguments and the entry point.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::run::{RunOptions, run};

/// Most nodes one process runs (each has its own plugin servers and
/// watches).
pub const MAX_NODES: usize = 256;

#[derive(Debug, clap::Args)]
pub struct ClusterArgs {
    /// Simulated nodes, machine profiles taken round-robin.
    #[arg(long, default_value_t = 16)]
    pub nodes: usize,
    /// Directory of machine profiles (`*.yaml`).
    #[arg(long, default_value = "configs/machines")]
    pub machines: PathBuf,
    /// Log level of the components (`RUST_LOG` syntax), on stderr.
    #[arg(long, default_value = "error")]
    pub log: String,
}

pub fn main(args: ClusterArgs) -> Result<()> {
    if args.nodes == 0 || args.nodes > MAX_NODES {
        bail!("--nodes {}: must be between 1 and {MAX_NODES}", args.nodes);
    }
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log)
        .with_context(|| format!("--log {:?}: not a log filter", args.log))?;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let opts = RunOptions {
        nodes: args.nodes,
        machines: args.machines,
    };
    let started = std::time::Instant::now();
    let summary = rt.block_on(async { run(&opts, &mut std::io::stdout()).await })?;
    println!("  took {:.1} s", started.elapsed().as_secs_f64());
    if !summary.partial_gangs.is_empty() {
        bail!("{} gang(s) were partially placed", summary.partial_gangs.len());
    }
    Ok(())
}
