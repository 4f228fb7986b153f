//! Reads what the watchdog needs from `/proc`, under a configurable root so
//! tests can lay out a fake one.

use std::io;
use std::path::{Path, PathBuf};

/// A view of `/proc` (or a test's stand-in) rooted at `root`.
#[derive(Debug, Clone)]
pub struct ProcFs {
    root: PathBuf,
}

impl Default for ProcFs {
    fn default() -> Self {
        ProcFs::new("/proc")
    }
}

impl ProcFs {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ProcFs { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Text of `<root>/<pid>/cgroup`.
    pub fn cgroup(&self, pid: u32) -> io::Result<String> {
        std::fs::read_to_string(self.root.join(pid.to_string()).join("cgroup"))
    }

    /// The process's start time in clock ticks since boot (`stat` field 22).
    /// Together with the PID it names one process for its whole life, which
    /// is what guards a signal against PID reuse.
    pub fn start_time(&self, pid: u32) -> io::Result<u64> {
        let stat = std::fs::read_to_string(self.root.join(pid.to_string()).join("stat"))?;
        parse_start_time(&stat)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("pid {pid}: malformed stat")))
    }
}

/// Field 22 of `/proc/<pid>/stat`. The command name (field 2) may hold
/// spaces and parentheses, so fields are counted after its last `)`.
pub fn parse_start_time(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    // `after` starts with field 3 (state); field 22 is the 20th from there.
    after.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_survives_odd_command_names() {
        let stat = "4242 (my (odd) proc) S 1 4242 4242 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 987654 1234 56 18446744073709551615";
        assert_eq!(parse_start_time(stat), Some(987654));
        assert_eq!(parse_start_time("garbage"), None);
    }

    #[test]
    fn reads_this_process_from_the_real_proc() {
        let me = std::process::id();
        let p = ProcFs::default();
        assert!(p.start_time(me).is_ok());
        assert!(p.cgroup(me).is_ok());
    }
}
