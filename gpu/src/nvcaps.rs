//! The nvidia-caps device nodes of MIG devices. A container using a MIG
//! device needs, besides its parent's `/dev/nvidia<minor>`, the capability
//! nodes of its GPU instance and compute instance:
//! `/dev/nvidia-caps/nvidia-cap<M>`. The driver lists the minors `M` in
//! `/proc/driver/nvidia-caps/mig-minors`, one `<capability> <minor>` a line:
//!
//! ```text
//! config 1
//! monitor 2
//! gpu0/gi1/access 12
//! gpu0/gi1/ci0/access 13
//! ```
//!
//! where `gpu<N>` is the GPU's minor number, not its NVML index. NVIDIA's
//! container toolkit (`internal/nvcaps`) and device plugin read the same file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::NodeInventory;

/// The minors file, relative to the host's `/proc`. Procfs is the kernel's,
/// so it is read there, never under a driver root (as NVIDIA's tools do).
pub const MIG_MINORS: &str = "driver/nvidia-caps/mig-minors";
/// Where the capability device nodes are.
pub const CAPS_DEV_DIR: &str = "/dev/nvidia-caps";

/// `/dev/nvidia-caps/nvidia-cap<minor>`.
pub fn cap_device(minor: u32) -> String {
    format!("{CAPS_DEV_DIR}/nvidia-cap{minor}")
}

pub fn minors_path(proc_root: &Path) -> PathBuf {
    proc_root.join(MIG_MINORS)
}

#[derive(Debug, thiserror::Error)]
pub enum MigMinorsError {
    #[error("reading {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}: line {line}: {problem}: {text:?}", path.display())]
    Malformed {
        path: PathBuf,
        line: usize,
        text: String,
        problem: &'static str,
    },
}

/// The capability minors of every GPU instance and compute instance, by GPU
/// minor number.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigMinors {
    /// `(gpu minor, GI id)` → minor of `gpu<N>/gi<G>/access`.
    pub gpu_instances: BTreeMap<(u32, u32), u32>,
    /// `(gpu minor, GI id, CI id)` → minor of `gpu<N>/gi<G>/ci<C>/access`.
    pub compute_instances: BTreeMap<(u32, u32, u32), u32>,
}

/// A decimal `u32`, digits only (no sign, no spaces).
fn number(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

enum Cap {
    Gi(u32, u32),
    Ci(u32, u32, u32),
}

/// `gpu<N>/gi<G>/access` or `gpu<N>/gi<G>/ci<C>/access`.
fn gpu_cap(name: &str) -> Option<Cap> {
    let parts: Vec<&str> = name.split('/').collect();
    let gpu = number(parts.first()?.strip_prefix("gpu")?)?;
    let gi = number(parts.get(1)?.strip_prefix("gi")?)?;
    match parts.as_slice() {
        [_, _, "access"] => Some(Cap::Gi(gpu, gi)),
        [_, _, ci, "access"] => Some(Cap::Ci(gpu, gi, number(ci.strip_prefix("ci")?)?)),
        _ => None,
    }
}

impl MigMinors {
    /// Parses the file's text; `path` only names it in errors. Capabilities
    /// that are not per GPU (`config`, `monitor`, any a newer driver adds)
    /// are skipped; a line that is not `<capability> <minor>`, or a `gpu…`
    /// capability of another shape, is an error.
    pub fn parse(path: &Path, text: &str) -> Result<MigMinors, MigMinorsError> {
        let mut m = MigMinors::default();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() {
                continue;
            }
            let bad = |problem| MigMinorsError::Malformed {
                path: path.to_path_buf(),
                line: n + 1,
                text: raw.to_string(),
                problem,
            };
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [name, minor] = fields.as_slice() else {
                return Err(bad("expected `<capability> <minor>`"));
            };
            let minor = number(minor).ok_or_else(|| bad("the minor is not a number"))?;
            if !name.starts_with("gpu") {
                continue;
            }
            match gpu_cap(name).ok_or_else(|| bad("expected gpu<N>/gi<G>/access or gpu<N>/gi<G>/ci<C>/access"))? {
                Cap::Gi(gpu, gi) => m.gpu_instances.insert((gpu, gi), minor),
                Cap::Ci(gpu, gi, ci) => m.compute_instances.insert((gpu, gi, ci), minor),
            };
        }
        Ok(m)
    }

    /// Reads `<proc_root>/driver/nvidia-caps/mig-minors`; `None` when there is
    /// no such file (no MIG support in the driver, or no MIG GPU).
    pub fn read(proc_root: &Path) -> Result<Option<MigMinors>, MigMinorsError> {
        let path = minors_path(proc_root);
        match std::fs::read_to_string(&path) {
            Ok(text) => MigMinors::parse(&path, &text).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(MigMinorsError::Read { path, source }),
        }
    }

    /// `[GI access minor, CI access minor]` of a MIG device.
    pub fn device(&self, p: MigPlacement) -> Option<[u32; 2]> {
        Some([
            *self.gpu_instances.get(&(p.gpu_minor, p.gpu_instance_id))?,
            *self
                .compute_instances
                .get(&(p.gpu_minor, p.gpu_instance_id, p.compute_instance_id))?,
        ])
    }
}

/// Where a MIG device is: its parent's minor number and its instance ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct MigPlacement {
    pub gpu_minor: u32,
    pub gpu_instance_id: u32,
    pub compute_instance_id: u32,
}

/// Every MIG device of the inventory (MIG mode on, compute instance
/// created), by MIG UUID.
pub fn mig_placements(inv: &NodeInventory) -> BTreeMap<String, MigPlacement> {
    let mut out = BTreeMap::new();
    for g in &inv.gpus {
        let Some(mig) = g.mig.as_ref().filter(|m| m.mode.current) else {
            continue;
        };
        for i in &mig.instances {
            if let (Some(uuid), Some(ci)) = (&i.uuid, i.compute_instance_id) {
                out.insert(
                    uuid.clone(),
                    MigPlacement {
                        gpu_minor: g.minor,
                        gpu_instance_id: i.gpu_instance_id,
                        compute_instance_id: ci,
                    },
                );
            }
        }
    }
    out
}

/// The cap minors of the MIG devices among `ids`, and what could not be
/// found: the problems to log. Devices without an entry keep only their
/// parent's node. `read` (the file at `path`) is called only when there is a
/// MIG device among `ids`.
pub fn device_caps<'a>(
    placements: &BTreeMap<String, MigPlacement>,
    ids: impl IntoIterator<Item = &'a str>,
    read: impl FnOnce() -> Result<Option<MigMinors>, MigMinorsError>,
    path: &Path,
) -> (BTreeMap<String, [u32; 2]>, Vec<String>) {
    let wanted: BTreeSet<(&str, MigPlacement)> = ids
        .into_iter()
        .filter_map(|id| Some((id, *placements.get(id)?)))
        .collect();
    let mut caps = BTreeMap::new();
    if wanted.is_empty() {
        return (caps, Vec::new());
    }
    let minors = match read() {
        Ok(Some(m)) => m,
        Ok(None) => {
            return (
                caps,
                vec![format!(
                    "{} does not exist: MIG devices get only their parent's /dev/nvidia<minor>, not their \
                     /dev/nvidia-caps nodes",
                    path.display()
                )],
            );
        }
        Err(e) => {
            return (
                caps,
                vec![format!(
                    "{e}: MIG devices get only their parent's /dev/nvidia<minor>, not their /dev/nvidia-caps nodes"
                )],
            );
        }
    };
    let mut problems = Vec::new();
    for (id, p) in wanted {
        match minors.device(p) {
            Some(m) => {
                caps.insert(id.to_string(), m);
            }
            None => problems.push(format!(
                "{}: no gpu{}/gi{}/access or gpu{}/gi{}/ci{}/access entry for MIG device {id}: it gets only \
                 /dev/nvidia{}",
                path.display(),
                p.gpu_minor,
                p.gpu_instance_id,
                p.gpu_minor,
                p.gpu_instance_id,
                p.compute_instance_id,
                p.gpu_minor
            )),
        }
    }
    (caps, problems)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const FILE: &str = "config 1\nmonitor 2\ngpu0/gi1/access 12\ngpu0/gi1/ci0/access 13\n\
                        gpu3/gi13/access 147\ngpu3/gi13/ci0/access 148\n";

    fn place(gpu_minor: u32, gi: u32, ci: u32) -> MigPlacement {
        MigPlacement {
            gpu_minor,
            gpu_instance_id: gi,
            compute_instance_id: ci,
        }
    }

    #[test]
    fn parses_the_drivers_format() {
        let m = MigMinors::parse(Path::new("/proc/x"), FILE).unwrap();
        assert_eq!(m.device(place(0, 1, 0)), Some([12, 13]));
        assert_eq!(m.device(place(3, 13, 0)), Some([147, 148]));
        // GI present, CI missing: no pair.
        assert_eq!(m.device(place(0, 1, 1)), None);
        assert_eq!(m.device(place(1, 1, 0)), None);
        assert_eq!(cap_device(13), "/dev/nvidia-caps/nvidia-cap13");
    }

    #[test]
    fn malformed_lines_name_the_file_and_line() {
        for (text, line, problem) in [
            ("config 1\ngpu0/gi1/access\n", 2, "expected `<capability> <minor>`"),
            ("gpu0/gi1/access x\n", 1, "the minor is not a number"),
            ("config 1\n\ngpu0/gi1/ci/access 4\n", 3, "expected gpu<N>/gi<G>"),
            ("gpu0/gi1/ci0/access -4\n", 1, "the minor is not a number"),
            ("gpu0/gi1/ci0/access 4 5\n", 1, "expected `<capability> <minor>`"),
        ] {
            let e = MigMinors::parse(Path::new("/p/mig-minors"), text)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(&format!("/p/mig-minors: line {line}: ")), "{e}");
            assert!(e.contains(problem), "{e}");
        }
        // Unknown capabilities that are not per GPU are skipped.
        assert!(MigMinors::parse(Path::new("/p"), "fabric-imex-mgmt 9\n").is_ok());
    }

    #[test]
    fn missing_file_is_none_and_missing_entries_are_reported() {
        let dir = std::env::temp_dir().join(format!("railyard-nvcaps-{}", std::process::id()));
        assert!(MigMinors::read(&dir).unwrap().is_none());
        let placements: BTreeMap<String, MigPlacement> = [
            ("MIG-a".to_string(), place(0, 1, 0)),
            ("MIG-b".to_string(), place(0, 2, 0)),
        ]
        .into();
        let path = minors_path(&dir);
        let parsed = || MigMinors::parse(&path, FILE).map(Some);
        let (caps, problems) = device_caps(&placements, ["MIG-a", "MIG-b", "GPU-c"], parsed, &path);
        assert_eq!(caps, [("MIG-a".to_string(), [12, 13])].into());
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].contains("gpu0/gi2/access") && problems[0].contains("MIG-b"),
            "{problems:?}"
        );
        let (caps, problems) = device_caps(&placements, ["MIG-a"], || Ok(None), &path);
        assert!(caps.is_empty());
        assert!(problems[0].contains("does not exist"), "{problems:?}");
        // No MIG device advertised: nothing to read, nothing to report.
        let (caps, problems) = device_caps(&placements, ["GPU-c"], || panic!("not read"), &path);
        assert!(caps.is_empty() && problems.is_empty());
    }
}
