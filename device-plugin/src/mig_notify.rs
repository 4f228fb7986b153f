//! MIG layout notifications: how the MIG manager tells a running plugin to
//! re-read the GPU inventory, so new MIG devices are advertised without a
//! restart (NVIDIA's plugin must be restarted: k8s-device-plugin #992, #389).
//!
//! # Contract (the MIG manager implements the writing side)
//!
//! - **File.** `--mig-layout-file PATH` (env `MIG_LAYOUT_FILE`). Default:
//!   `<--device-plugin-dir>/railyard-mig-layout`, i.e.
//!   `/var/lib/kubelet/device-plugins/railyard-mig-layout`, a directory both
//!   DaemonSets mount. An empty value disables the notifications (SIGHUP still
//!   re-reads the inventory).
//! - **Writer.** After every MIG layout change (all instances created or
//!   destroyed), the MIG manager replaces the file atomically: it writes a
//!   temp file in the same directory, then renames it over the path. The new
//!   content must differ from the previous one, e.g. one line
//!   `generation=<n> gpus=<indices>` with `n` increasing.
//! - **Reader.** The content is opaque to the plugin: it never parses it. On
//!   every config check (`--config-poll-ms`, 1 s by default, so a change is
//!   advertised within about 1 s plus one inventory read) the plugin reads the
//!   file; when the content differs from the last content it saw, or the file
//!   appeared, it re-reads the inventory and re-applies the config, as SIGHUP
//!   does: new MIG resources get a server and a registration, changed ones a
//!   new ListAndWatch list, vanished ones are stopped.
//! - The first read at start only records the content (the inventory is read
//!   at start anyway, after that first read, so a change made in between is
//!   not lost). A missing file is no notification; removing it is no
//!   notification either (a later re-creation is one). A read error is logged
//!   once (until the error changes or a read succeeds) and keeps the last
//!   content seen. Only the first 64 KiB are compared; the file must be a
//!   regular file.
//! - Notifications are counted in `railyard_device_plugin_mig_layout_notifications_total`.

use std::io::Read;
use std::path::{Path, PathBuf};

/// The file's name in the device plugin directory, by default.
pub const DEFAULT_FILE_NAME: &str = "railyard-mig-layout";

/// Bytes of the file that are read and compared.
const MAX_BYTES: u64 = 64 * 1024;

/// Watches the notify file: [`LayoutWatch::poll`] at every config check.
#[derive(Debug)]
pub struct LayoutWatch {
    path: PathBuf,
    /// The last content read; `None`: absent (or never read successfully).
    last: Option<Vec<u8>>,
    /// The read error last logged, so each is logged once.
    logged_error: Option<String>,
}

impl LayoutWatch {
    /// Starts watching `path`, recording its current content (no
    /// notification for it).
    pub fn new(path: PathBuf) -> LayoutWatch {
        let mut w = LayoutWatch {
            path,
            last: None,
            logged_error: None,
        };
        w.poll();
        w
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the file; true when its content changed since the last read or
    /// the file appeared (the caller then re-reads the inventory).
    pub fn poll(&mut self) -> bool {
        match read(&self.path) {
            Ok(None) => {
                if self.last.take().is_some() {
                    tracing::debug!(path = %self.path.display(), "MIG layout file removed");
                }
                self.logged_error = None;
                false
            }
            Ok(Some(content)) => {
                self.logged_error = None;
                if self.last.as_ref() == Some(&content) {
                    return false;
                }
                self.last = Some(content);
                true
            }
            Err(e) => {
                let msg = e.to_string();
                if self.logged_error.as_deref() != Some(msg.as_str()) {
                    tracing::warn!(
                        path = %self.path.display(),
                        error = %msg,
                        "reading the MIG layout file failed; MIG layout notifications are paused until it reads again"
                    );
                    self.logged_error = Some(msg);
                }
                false
            }
        }
    }
}

/// The file's first [`MAX_BYTES`]; `None` when it does not exist.
fn read(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    // Opening a FIFO would block the control loop; a directory cannot be read.
    if !meta.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        // Replaced between the two calls by a rename is fine; removed is absent.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut buf = Vec::new();
    file.take(MAX_BYTES).read_to_end(&mut buf)?;
    Ok(Some(buf))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("railyard-mig-notify-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn replace(path: &Path, content: &str) {
        let t = path.with_extension("tmp");
        std::fs::write(&t, content).unwrap();
        std::fs::rename(&t, path).unwrap();
    }

    #[test]
    fn appearing_and_changing_notify_the_rest_does_not() {
        let d = tmp("changes");
        let p = d.join(DEFAULT_FILE_NAME);
        let mut w = LayoutWatch::new(p.clone());
        assert!(!w.poll(), "absent: nothing");
        replace(&p, "generation=1 gpus=0\n");
        assert!(w.poll(), "appeared");
        assert!(!w.poll(), "unchanged");
        replace(&p, "generation=1 gpus=0\n");
        assert!(!w.poll(), "rewritten with the same content");
        replace(&p, "generation=2 gpus=0,1\n");
        assert!(w.poll(), "changed");
        std::fs::remove_file(&p).unwrap();
        assert!(!w.poll(), "removed");
        replace(&p, "generation=2 gpus=0,1\n");
        assert!(w.poll(), "re-created, even with the old content");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn the_content_at_start_is_only_recorded_and_errors_keep_the_last_content() {
        let d = tmp("start");
        let p = d.join(DEFAULT_FILE_NAME);
        replace(&p, "generation=7\n");
        let mut w = LayoutWatch::new(p.clone());
        assert!(!w.poll(), "the content at start is no notification");
        // A directory in its place: an error, logged once, no notification,
        // and the last content stays recorded.
        std::fs::remove_file(&p).unwrap();
        std::fs::create_dir(&p).unwrap();
        assert!(!w.poll());
        assert!(w.logged_error.is_some());
        assert!(!w.poll());
        std::fs::remove_dir(&p).unwrap();
        replace(&p, "generation=7\n");
        assert!(!w.poll(), "same content as before the error");
        assert!(w.logged_error.is_none());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
