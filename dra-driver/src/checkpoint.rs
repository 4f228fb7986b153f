//! The driver's checkpoint: what it prepared, per claim, as a state
//! machine (`PrepareStarted` → `PrepareCompleted`, `UnprepareStarted` →
//! gone), so a restart knows what a killed Prepare or Unprepare left.
//!
//! On disk: `{"version":1,"checksum":"fnv1a64:<hex>","data":{…}}`. The
//! checksum covers the canonical JSON of `data` (serde_json maps are
//! sorted), so a torn or hand-edited file is detected rather than
//! trusted. `data` carries the boot id: nothing prepared survives a reboot.
//! Fields are added with `#[serde(default)]` and unknown ones are ignored,
//! so a later version reads an older file and an older one a newer file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::fsutil;

pub const CHECKPOINT_VERSION: u32 = 1;
/// Larger files are not read: a corrupted length must not exhaust memory.
pub const MAX_CHECKPOINT_BYTES: u64 = 64 << 20;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Checkpoint {
    #[serde(default)]
    pub boot_id: String,
    /// By claim UID.
    #[serde(default)]
    pub claims: BTreeMap<String, ClaimRecord>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClaimState {
    /// Written, with the plan, before the first side effect.
    PrepareStarted,
    PrepareCompleted,
    /// Written before the first undo step; the record goes when all are done.
    UnprepareStarted,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimRecord {
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub name: String,
    pub state: ClaimState,
    #[serde(default)]
    pub devices: Vec<PreparedDevice>,
    /// The claim's CDI spec file name under the CDI root.
    #[serde(default)]
    pub cdi_spec: Option<String>,
    /// Dynamic MIG instances this claim creates (planned) or created.
    #[serde(default)]
    pub mig: Vec<MigRecord>,
    /// GPUs whose time slice this claim set (reset at Unprepare).
    #[serde(default)]
    pub time_sliced_gpus: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PreparedDevice {
    #[serde(default)]
    pub request_names: Vec<String>,
    pub pool: String,
    pub device: String,
    #[serde(default)]
    pub cdi_device_ids: Vec<String>,
    /// For devices allocated with `allowMultipleAllocations` (DRA v1).
    #[serde(default)]
    pub share_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MigRecord {
    pub gpu: u32,
    pub profile: String,
    pub start: u8,
    /// Set once the instance exists.
    #[serde(default)]
    pub gpu_instance_id: Option<u32>,
}

/// What reading the checkpoint found.
#[derive(Debug, Clone, PartialEq)]
pub enum Loaded {
    /// No file: a new node or a wiped plugin directory.
    Fresh,
    Current(Checkpoint),
    /// Written in another boot; its claims are void.
    Rebooted {
        previous_boot: String,
        dropped: Checkpoint,
    },
    /// Unreadable; rebuild from the node and the API, never crash-loop.
    Corrupt {
        reason: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Envelope {
    version: u32,
    checksum: String,
    data: Value,
}

/// FNV-1a, 64 bit: cheap, dependency-free, enough to catch torn writes.
fn checksum(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("fnv1a64:{h:016x}")
}

/// The checkpoint file at a path (`<plugin dir>/checkpoint.json`).
#[derive(Debug, Clone)]
pub struct CheckpointFile {
    path: PathBuf,
}

impl CheckpointFile {
    pub fn new(path: impl Into<PathBuf>) -> CheckpointFile {
        CheckpointFile { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn load(&self, boot_id: &str) -> Loaded {
        let bytes = match read_bounded(&self.path) {
            Ok(Some(b)) => b,
            Ok(None) => return Loaded::Fresh,
            Err(reason) => return Loaded::Corrupt { reason },
        };
        match decode(&bytes) {
            Err(reason) => Loaded::Corrupt { reason },
            Ok(cp) if cp.boot_id != boot_id => Loaded::Rebooted {
                previous_boot: cp.boot_id.clone(),
                dropped: cp,
            },
            Ok(cp) => Loaded::Current(cp),
        }
    }

    pub fn store(&self, cp: &Checkpoint) -> std::io::Result<()> {
        fsutil::write_atomic(&self.path, &encode(cp)?)
    }

    /// Moves an unreadable checkpoint aside (`checkpoint.json.corrupt`), so
    /// it can be inspected and is not read again.
    pub fn quarantine(&self) -> std::io::Result<PathBuf> {
        let mut aside = self.path.clone().into_os_string();
        aside.push(".corrupt");
        let aside = PathBuf::from(aside);
        std::fs::rename(&self.path, &aside)?;
        Ok(aside)
    }
}

fn read_bounded(path: &Path) -> Result<Option<Vec<u8>>, String> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
        Ok(m) if m.len() > MAX_CHECKPOINT_BYTES => {
            return Err(format!(
                "{}: {} bytes, more than the {MAX_CHECKPOINT_BYTES}-byte limit",
                path.display(),
                m.len()
            ));
        }
        Ok(_) => {}
    }
    std::fs::read(path)
        .map(Some)
        .map_err(|e| format!("{}: {e}", path.display()))
}

pub fn encode(cp: &Checkpoint) -> std::io::Result<Vec<u8>> {
    let data = serde_json::to_value(cp).map_err(std::io::Error::other)?;
    let canonical = serde_json::to_vec(&data).map_err(std::io::Error::other)?;
    let env = Envelope {
        version: CHECKPOINT_VERSION,
        checksum: checksum(&canonical),
        data,
    };
    serde_json::to_vec_pretty(&env).map_err(std::io::Error::other)
}

pub fn decode(bytes: &[u8]) -> Result<Checkpoint, String> {
    let env: Envelope = serde_json::from_slice(bytes).map_err(|e| format!("not a checkpoint: {e}"))?;
    if env.version == 0 {
        return Err("version: 0 is not a checkpoint version".into());
    }
    let canonical = serde_json::to_vec(&env.data).map_err(|e| e.to_string())?;
    let actual = checksum(&canonical);
    if actual != env.checksum {
        return Err(format!("checksum: file says {}, data has {actual}", env.checksum));
    }
    // A newer version's extra fields are ignored: its claims are still ours.
    serde_json::from_value(env.data).map_err(|e| format!("data: {e}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("railyard-checkpoint-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn sample() -> Checkpoint {
        let mut cp = Checkpoint {
            boot_id: "boot-1".into(),
            ..Checkpoint::default()
        };
        cp.claims.insert(
            "uid-1".into(),
            ClaimRecord {
                namespace: "ml".into(),
                name: "train".into(),
                state: ClaimState::PrepareCompleted,
                devices: vec![PreparedDevice {
                    request_names: vec!["gpu".into()],
                    pool: "node-a".into(),
                    device: "gpu-0-mig-1g10gb-19-0".into(),
                    cdi_device_ids: vec!["k8s.gpu.nvidia.com/claim=uid-1-gpu-0-mig-1g10gb-19-0".into()],
                    share_id: None,
                }],
                cdi_spec: Some("k8s.gpu.nvidia.com-claim_uid-1.yaml".into()),
                mig: vec![MigRecord {
                    gpu: 0,
                    profile: "1g.10gb".into(),
                    start: 0,
                    gpu_instance_id: Some(7),
                }],
                time_sliced_gpus: Vec::new(),
            },
        );
        cp
    }

    #[test]
    fn round_trips_and_knows_the_boot() {
        let d = dir("rt");
        let f = CheckpointFile::new(d.join("checkpoint.json"));
        assert_eq!(f.load("boot-1"), Loaded::Fresh);
        f.store(&sample()).unwrap();
        assert_eq!(f.load("boot-1"), Loaded::Current(sample()));
        match f.load("boot-2") {
            Loaded::Rebooted { previous_boot, dropped } => {
                assert_eq!(previous_boot, "boot-1");
                assert_eq!(dropped.claims.len(), 1);
            }
            other => panic!("{other:?}"),
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn torn_edited_and_foreign_files_are_corrupt_not_fatal() {
        let d = dir("corrupt");
        let f = CheckpointFile::new(d.join("checkpoint.json"));
        let good = encode(&sample()).unwrap();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("torn", good[..good.len() / 2].to_vec()),
            (
                "edited",
                String::from_utf8(good.clone())
                    .unwrap()
                    .replace("PrepareCompleted", "PrepareStarted")
                    .into_bytes(),
            ),
            ("foreign", br#"{"checkpoint":"upstream"}"#.to_vec()),
            ("empty", Vec::new()),
        ];
        for (what, bytes) in cases {
            std::fs::write(f.path(), bytes).unwrap();
            match f.load("boot-1") {
                Loaded::Corrupt { reason } => assert!(!reason.is_empty(), "{what}"),
                other => panic!("{what}: {other:?}"),
            }
        }
        let aside = f.quarantine().unwrap();
        assert!(aside.ends_with("checkpoint.json.corrupt"));
        assert_eq!(f.load("boot-1"), Loaded::Fresh);
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// A checkpoint as the first release wrote it: no MIG records, no
    /// share ids, no time-slice list. It must still load.
    #[test]
    fn an_older_format_still_loads() {
        let data = serde_json::json!({
            "bootId": "boot-1",
            "claims": {"uid-9": {
                "namespace": "default", "name": "old", "state": "PrepareCompleted",
                "devices": [{"requestNames": ["gpu"], "pool": "node-a", "device": "gpu-3",
                             "cdiDeviceIds": ["k8s.gpu.nvidia.com/claim=uid-9-gpu-3"]}],
                "cdiSpec": "k8s.gpu.nvidia.com-claim_uid-9.yaml"
            }}
        });
        let canonical = serde_json::to_vec(&data).unwrap();
        let file = serde_json::json!({"version": 1, "checksum": checksum(&canonical), "data": data});
        let cp = decode(&serde_json::to_vec(&file).unwrap()).unwrap();
        let rec = &cp.claims["uid-9"];
        assert_eq!(rec.devices[0].device, "gpu-3");
        assert!(rec.mig.is_empty() && rec.time_sliced_gpus.is_empty());
        assert_eq!(rec.devices[0].share_id, None);
    }

    /// A newer driver's file (higher version, extra fields) read after a
    /// rollback keeps its claims.
    #[test]
    fn a_newer_format_keeps_its_claims() {
        let data = serde_json::json!({
            "bootId": "boot-1", "futureField": {"x": 1},
            "claims": {"uid-2": {"state": "PrepareStarted", "futureClaimField": true}}
        });
        let canonical = serde_json::to_vec(&data).unwrap();
        let file = serde_json::json!({"version": 7, "checksum": checksum(&canonical), "data": data});
        let cp = decode(&serde_json::to_vec(&file).unwrap()).unwrap();
        assert_eq!(cp.claims["uid-2"].state, ClaimState::PrepareStarted);
    }
}
