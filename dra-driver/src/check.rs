//! `check`: the allocation the scheduler would make.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::NodeArgs;

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// ResourceClaim or ResourceClaimTemplate (YAML).
    #[arg(long)]
    claim: PathBuf,
    /// DeviceClass files; Railyard's shipped classes when none is given.
    #[arg(long)]
    class: Vec<PathBuf>,
    /// Claims with status.allocation set, whose devices count as taken.
    #[arg(long)]
    allocated: Vec<PathBuf>,
}

pub fn run(node: &NodeArgs, args: &CheckArgs) -> ExitCode {
    let _ = (node, args);
    eprintln!("error: check is not implemented yet");
    ExitCode::from(2)
}
