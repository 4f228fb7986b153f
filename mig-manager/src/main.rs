//! `railyard-mig-manager`: so far only `plan`, which prints the steps the
//! manager would take to move a machine to a named mig-parted config,
//! without a GPU. The node agent (label protocol, apply, events) is not
//! built yet.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use railyard_core::config::MigPartedConfig;
use railyard_core::machine::MachineProfile;
use railyard_core::mig::{GpuMigState, InstanceRef, MigInstance, MigTarget, plan};

#[derive(Debug, Parser)]
#[command(name = "railyard-mig-manager", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the steps that move the machine's current MIG layout to a
    /// config of a mig-parted file: exit 0 when the target is reached, 1
    /// when busy instances block it (the steps then reach the closest
    /// layout), 2 on invalid input.
    Plan {
        /// Machine profile (YAML) whose GPUs and current instances are
        /// planned for.
        #[arg(long)]
        machine: PathBuf,
        /// mig-parted config file, as for `nvidia-mig-parted apply -f`.
        #[arg(short = 'f', long = "config-file")]
        config_file: PathBuf,
        /// The config to reach, as for `nvidia-mig-parted apply -c`.
        #[arg(short = 'c', long = "selected-config")]
        selected: String,
        /// Instances in use, which are never destroyed:
        /// `GPU:PROFILE@START`, comma-separated (e.g. `2:1g.10gb@3`).
        #[arg(long, value_delimiter = ',')]
        busy: Vec<String>,
    },
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// `GPU:PROFILE@START` on the machine's GPUs.
fn parse_busy(text: &str, gpus: &[GpuMigState]) -> Result<InstanceRef> {
    let bad = |why: &str| anyhow::anyhow!("--busy {text:?}: {why}; expected GPU:PROFILE@START, e.g. 2:1g.10gb@3");
    let (gpu, rest) = text.split_once(':').ok_or_else(|| bad("no ':'"))?;
    let (profile, start) = rest.split_once('@').ok_or_else(|| bad("no '@'"))?;
    let gpu: u32 = gpu.trim().parse().map_err(|_| bad("the GPU is not an index"))?;
    let start: u8 = start.trim().parse().map_err(|_| bad("the start is not a number"))?;
    let state = gpus
        .iter()
        .find(|g| g.index == gpu)
        .ok_or_else(|| bad("no such GPU on this machine"))?;
    let family = state.family.ok_or_else(|| bad("that GPU is not MIG-capable"))?;
    let p = family.profile_by_name(profile).ok_or_else(|| {
        let known: Vec<&str> = family.profiles().map(|p| p.name).collect();
        bad(&format!("unknown profile for this model (known: {})", known.join(", ")))
    })?;
    Ok(InstanceRef {
        gpu,
        instance: MigInstance::at(p.kind, start),
    })
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
fn write_stdout(text: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("writing stdout"),
    }
}

fn run_plan(machine: &Path, config_file: &Path, selected: &str, busy: &[String]) -> Result<bool> {
    let profile =
        MachineProfile::from_yaml(&read(machine)?).with_context(|| format!("machine profile {}", machine.display()))?;
    let config = MigPartedConfig::from_yaml(&read(config_file)?)
        .with_context(|| format!("mig-parted config {}", config_file.display()))?;
    let targets = config.targets(selected, &profile)?;
    let current = GpuMigState::from_machine(&profile)?;
    let busy: Vec<InstanceRef> = busy
        .iter()
        .filter(|b| !b.trim().is_empty())
        .map(|b| parse_busy(b, &current))
        .collect::<Result<_>>()?;
    let p = plan(&current, &busy, &MigTarget::from_mig_parted(&targets))?;
    let text = if p.steps().next().is_none() && !p.is_blocked() {
        format!("nothing to do: the machine already has {selected}\n")
    } else {
        p.to_string()
    };
    write_stdout(&text)?;
    Ok(!p.is_blocked())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match &cli.command {
        Command::Plan {
            machine,
            config_file,
            selected,
            busy,
        } => run_plan(machine, config_file, selected, busy),
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_cli_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }

    #[test]
    fn busy_entries_name_what_is_wrong() {
        let gpus = vec![super::GpuMigState::new(0, None, false, Vec::new())];
        for (text, why) in [
            ("0-1g.10gb@3", "no ':'"),
            ("0:1g.10gb", "no '@'"),
            ("x:1g.10gb@0", "not an index"),
            ("9:1g.10gb@0", "no such GPU"),
            ("0:1g.10gb@0", "not MIG-capable"),
        ] {
            let err = super::parse_busy(text, &gpus).expect_err(text).to_string();
            assert!(err.contains(why) && err.contains(text), "{err}");
        }
    }
}
