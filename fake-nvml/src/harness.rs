//! Test harness: a private copy of the fake library in a temp dir, with its
//! machine profile, control file and a sysfs tree, ready for
//! `NvmlBackend::new(fake.config())`.
//!
//! Each copy is its own machine: the dynamic loader keys libraries by file,
//! so two copies loaded in one process do not share state.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use railyard_core::machine::MachineProfile;
use railyard_gpu::{HealthConfig, NvmlConfig};

use crate::state::{CONTROL_FILE, PROFILE_FILE};

/// Environment variable overriding where the built library is.
pub const LIB_ENV: &str = "RAILYARD_FAKE_NVML_LIB";
const LIB_NAME: &str = "librailyard_fake_nvml.so";

/// The built fake library: `$RAILYARD_FAKE_NVML_LIB`, else the newest
/// `librailyard_fake_nvml.so` next to the running test binary (cargo builds
/// the cdylib into `target/<profile>/deps` with the crate's tests, and into
/// `target/<profile>` for `cargo build`).
pub fn library_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(LIB_ENV) {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    let deps = exe.parent()?;
    let dirs = [deps.to_path_buf(), deps.parent()?.to_path_buf()];
    dirs.iter()
        .map(|d| d.join(LIB_NAME))
        .filter_map(|p| Some((fs::metadata(&p).ok()?.modified().ok()?, p)))
        .max_by_key(|(t, _)| *t)
        .map(|(_, p)| p)
}

/// One fake machine in a temp dir; removed on drop.
#[derive(Debug)]
pub struct FakeNvml {
    pub dir: PathBuf,
    /// `<dir>/libnvidia-ml.so.1`.
    pub lib: PathBuf,
    pub control: PathBuf,
    pub sysfs: PathBuf,
    pub profile: MachineProfile,
}

impl FakeNvml {
    /// A machine from a profile file.
    pub fn from_file(profile: &Path) -> io::Result<FakeNvml> {
        let text = fs::read_to_string(profile)?;
        FakeNvml::from_yaml(&text)
    }

    pub fn from_yaml(text: &str) -> io::Result<FakeNvml> {
        let profile =
            MachineProfile::from_yaml(text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        let built = library_path().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{LIB_NAME} not found next to the test binary; build railyard-fake-nvml or set {LIB_ENV}"),
            )
        })?;
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .subsec_nanos();
        let dir = std::env::temp_dir().join(format!(
            "railyard-fake-nvml-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&dir)?;
        let lib = dir.join("libnvidia-ml.so.1");
        fs::copy(&built, &lib)?;
        fs::write(dir.join(PROFILE_FILE), text)?;
        let control = dir.join(CONTROL_FILE);
        fs::write(&control, "")?;
        let sysfs = dir.join("sys");
        railyard_gpu::sysfs::write_profile_tree(&profile, &sysfs)?;
        Ok(FakeNvml {
            dir,
            lib,
            control,
            sysfs,
            profile,
        })
    }

    /// Backend config for this machine, polling health every 10 ms.
    pub fn config(&self) -> NvmlConfig {
        NvmlConfig {
            lib_path: Some(self.lib.clone()),
            sysfs_root: self.sysfs.clone(),
            health: HealthConfig {
                poll_interval: Duration::from_millis(10),
                ..HealthConfig::default()
            },
        }
    }

    /// Appends a control line (see the crate docs); the library applies it
    /// on its next call.
    pub fn control(&self, line: &str) -> io::Result<()> {
        let mut f = OpenOptions::new().append(true).open(&self.control)?;
        writeln!(f, "{line}")
    }
}

impl Drop for FakeNvml {
    fn drop(&mut self) {
        // A loaded copy stays mapped; unlinking it is fine.
        let _ = fs::remove_dir_all(&self.dir);
    }
}
