//! File primitives the driver's state relies on: atomic replacement (a
//! crash leaves the old file or the new one, never a torn one), the
//! per-node lock that serialises Prepare / Unprepare across driver
//! processes (two pods overlap during a rolling update), and the boot id.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Where the kernel publishes the id of the current boot.
pub const BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";

/// Writes `bytes` to `path` atomically: a temp file in the same directory,
/// fsync, rename over `path`, then fsync of the directory so the rename
/// itself survives a power cut.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = parent(path)?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("{}: no file name", path.display())))?;
    let tmp = dir.join(format!(".{}.tmp.{}", name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        sync_dir(&dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Removes `path` (absent is fine) and makes the removal durable.
pub fn remove_durable(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => sync_dir(&parent(path)?),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn parent(path: &Path) -> io::Result<PathBuf> {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => Ok(p.to_path_buf()),
        Some(_) => Ok(PathBuf::from(".")),
        None => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: no parent directory", path.display()),
        )),
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The current boot's id, trimmed. Prepared state from another boot is
/// void: devices, MIG instances and MPS daemons do not survive a reboot.
pub fn read_boot_id(path: &Path) -> io::Result<String> {
    let id = std::fs::read_to_string(path)?.trim().to_owned();
    if id.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: empty boot id", path.display()),
        ));
    }
    Ok(id)
}

/// An exclusive advisory lock on a file (`flock`), held until dropped. Other
/// processes block in [`NodeLock::acquire`] until it is released; the
/// kernel releases it if the holder dies, so a killed driver never leaves
/// the node locked.
#[derive(Debug)]
pub struct NodeLock {
    file: File,
}

impl NodeLock {
    /// Blocks until the lock is held; run it off the async runtime
    /// ([`NodeLock::acquire_async`]).
    pub fn acquire(path: &Path) -> io::Result<NodeLock> {
        let file = OpenOptions::new().create(true).truncate(false).write(true).open(path)?;
        file.lock()?;
        Ok(NodeLock { file })
    }

    /// Without blocking: `None` when another holder has it.
    pub fn try_acquire(path: &Path) -> io::Result<Option<NodeLock>> {
        let file = OpenOptions::new().create(true).truncate(false).write(true).open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(NodeLock { file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }

    pub async fn acquire_async(path: PathBuf) -> io::Result<NodeLock> {
        tokio::task::spawn_blocking(move || NodeLock::acquire(&path))
            .await
            .map_err(io::Error::other)?
    }
}

impl Drop for NodeLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("railyard-fsutil-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp_file() {
        let d = temp_dir("write");
        let p = d.join("state.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.json")]);
        remove_durable(&p).unwrap();
        remove_durable(&p).unwrap();
        assert!(!p.exists());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_failed_write_keeps_the_old_file() {
        let d = temp_dir("fail");
        let p = d.join("sub");
        // The target is a non-empty directory: rename fails, the old content stays.
        std::fs::create_dir_all(p.join("x")).unwrap();
        assert!(write_atomic(&p, b"new").is_err());
        assert!(p.join("x").is_dir());
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn the_lock_excludes_a_second_holder_until_dropped() {
        let d = temp_dir("lock");
        let p = d.join("prepare.lock");
        let held = NodeLock::acquire(&p).unwrap();
        assert!(NodeLock::try_acquire(&p).unwrap().is_none());
        drop(held);
        assert!(NodeLock::try_acquire(&p).unwrap().is_some());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn boot_id_is_trimmed_and_empty_is_an_error() {
        let d = temp_dir("boot");
        let p = d.join("boot_id");
        std::fs::write(&p, "3f1c\n").unwrap();
        assert_eq!(read_boot_id(&p).unwrap(), "3f1c");
        std::fs::write(&p, "\n").unwrap();
        let e = read_boot_id(&p).unwrap_err().to_string();
        assert!(e.contains("empty boot id"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
