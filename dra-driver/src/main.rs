//! `railyard-dra-driver`: Railyard's DRA kubelet plugin for GPUs. This
//! build carries its offline commands: `--dry-run` prints the
//! ResourceSlices a node would publish, `check` the allocation the
//! scheduler would make for a claim.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use railyard_core::machine::MachineProfile;
use railyard_dra::config::DraConfig;
use railyard_dra::inventory;
use railyard_dra::slices::ServerVersion;

mod check;

#[derive(Parser, Debug)]
#[command(name = "railyard-dra-driver", version, about)]
struct Cli {
    /// Print the ResourceSlices this node would publish, as YAML, and exit.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    node: NodeArgs,
    /// Kubernetes server version whose slice layout to use (1.34: counters
    /// beside devices; 1.35+: counters alone in the first slice).
    #[arg(long, default_value = "1.35")]
    server_version: ServerVersion,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Args, Debug, Clone)]
struct NodeArgs {
    /// Machine profile (YAML, as under configs/machines/).
    #[arg(long, global = true)]
    machine: Option<PathBuf>,
    /// Driver config (YAML; see configs/dra/).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Node name (the pool's name); the profile's name by default.
    #[arg(long, global = true)]
    node_name: Option<String>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the allocation the scheduler would make for a claim on this
    /// node. Exit 0 = allocated, 1 = unsatisfiable, 2 = invalid input.
    Check(check::CheckArgs),
}

pub(crate) fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// The pool a node publishes.
/// The pool the node publishes, and its topology for the allocator.
pub(crate) fn node_pool(node: &NodeArgs) -> Result<(railyard_dra::device::Pool, railyard_dra::alloc::PoolTopology)> {
    let machine = node.machine.as_ref().context("--machine PROFILE is required")?;
    let profile =
        MachineProfile::from_yaml(&read(machine)?).with_context(|| format!("machine profile {}", machine.display()))?;
    let config = match &node.config {
        Some(p) => DraConfig::from_yaml(&read(p)?).with_context(|| format!("config {}", p.display()))?,
        None => DraConfig::default(),
    };
    let node_name = node.node_name.clone().unwrap_or_else(|| profile.name.clone());
    Ok((
        inventory::build_pool(&profile, &config, &node_name)?,
        inventory::pool_topology(&profile)?,
    ))
}

fn dry_run(cli: &Cli) -> Result<()> {
    let (pool, _) = node_pool(&cli.node)?;
    let slices = railyard_dra::api::pool_to_slices(&pool, cli.server_version, 1)?;
    let mut out = String::new();
    for s in &slices {
        let mut v = serde_json::to_value(s)?;
        if let Some(o) = v.as_object_mut() {
            // k8s-openapi writes apiVersion/kind; keep them first for readers.
            o.insert("apiVersion".into(), "resource.k8s.io/v1".into());
            o.insert("kind".into(), "ResourceSlice".into());
        }
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(&v)?);
    }
    write_stdout(&out)
}

/// Writes `text` to stdout; a closed pipe (`| head`) is not an error.
pub(crate) fn write_stdout(text: &str) -> Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Some(Command::Check(args)) => return check::run(&cli.node, args),
        None if cli.dry_run => dry_run(&cli),
        None => Err(anyhow::anyhow!(
            "the kubelet plugin is not part of this build; use --dry-run or check (see --help)"
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
