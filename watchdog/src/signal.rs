//! Sending a signal to a process only if it is still the process that was
//! measured: the PID must carry the same start time, else the PID was reused
//! and the signal would hit an innocent process.

use rustix::process::{Pid, Signal, kill_process};

use crate::procfs::ProcFs;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sig {
    Term,
    Kill,
}

impl Sig {
    pub fn name(self) -> &'static str {
        match self {
            Sig::Term => "SIGTERM",
            Sig::Kill => "SIGKILL",
        }
    }
}

/// What happened when asked to signal a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignalOutcome {
    Sent,
    /// The process is gone already.
    Gone,
    /// The PID now belongs to another process (different start time).
    PidReused {
        expected: u64,
        found: u64,
    },
    Failed(String),
}

/// Signals `pid` if its start time is still `start_time`.
pub fn signal_checked(procfs: &ProcFs, pid: u32, start_time: u64, sig: Sig) -> SignalOutcome {
    let found = match procfs.start_time(pid) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return SignalOutcome::Gone,
        Err(e) => return SignalOutcome::Failed(format!("reading start time: {e}")),
    };
    if found != start_time {
        return SignalOutcome::PidReused {
            expected: start_time,
            found,
        };
    }
    let Some(p) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return SignalOutcome::Failed(format!("pid {pid} is not a valid process id"));
    };
    let s = match sig {
        Sig::Term => Signal::TERM,
        Sig::Kill => Signal::KILL,
    };
    match kill_process(p, s) {
        Ok(()) => SignalOutcome::Sent,
        Err(rustix::io::Errno::SRCH) => SignalOutcome::Gone,
        Err(e) => SignalOutcome::Failed(e.to_string()),
    }
}
