//! tonic over unix sockets: bind (replacing a stale socket), serve a router
//! until a shutdown future resolves, and dial a socket path.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::server::Router;
use tonic::transport::{Channel, Endpoint};

#[derive(Debug, thiserror::Error)]
pub enum UnixError {
    #[error("binding {path}: {source}")]
    Bind { path: PathBuf, source: io::Error },
    #[error("dialing {path}: {source}")]
    Dial {
        path: PathBuf,
        source: tonic::transport::Error,
    },
    #[error("serving on {path}: {source}")]
    Serve {
        path: PathBuf,
        source: tonic::transport::Error,
    },
}

/// The mode of every socket [`bind`] creates: owner only. Everything that
/// dials these sockets runs as root (kubelet dials the device plugin and
/// DRA sockets; the plugin dials kubelet.sock), and root needs no
/// permission bits, so nobody else needs any. The umask is not relied on:
/// it is process-wide and often 022, which would leave the socket
/// connectable (`w` bit) by the group or everyone where it is looser.
pub const SOCKET_MODE: u32 = 0o600;

/// Listens on `path` with mode [`SOCKET_MODE`], creating its directory and
/// replacing a stale socket.
pub fn bind(path: &Path) -> Result<UnixListener, UnixError> {
    bind_with_mode(path, SOCKET_MODE)
}

/// Listens on `path` with permission bits `mode` (e.g. 0o660 when a group
/// must connect). The socket is bound under a hidden name in the same
/// directory, given its mode, and renamed into place, so `path` never
/// exists with the umask's mode (kubelet's plugin watcher ignores dot
/// files, and a rename replaces a stale socket atomically). Where the
/// hidden name cannot be bound (a path at the 108-byte limit) it binds
/// `path` directly and sets the mode at once.
pub fn bind_with_mode(path: &Path, mode: u32) -> Result<UnixListener, UnixError> {
    use std::os::unix::fs::PermissionsExt;
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);

    let err = |source| UnixError::Bind {
        path: path.to_path_buf(),
        source,
    };
    let chmod = |p: &Path| std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode & 0o777));
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let remove = |p: &Path| match std::fs::remove_file(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    };
    let hidden_name = format!(
        ".{:x}-{:x}.sock",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let hidden = dir.map_or_else(|| PathBuf::from(&hidden_name), |d| d.join(&hidden_name));
    remove(&hidden).map_err(err)?;
    match UnixListener::bind(&hidden) {
        Ok(listener) => {
            let placed = chmod(&hidden).and_then(|()| std::fs::rename(&hidden, path));
            if let Err(e) = placed {
                let _ = std::fs::remove_file(&hidden);
                return Err(err(e));
            }
            Ok(listener)
        }
        Err(_) => {
            remove(path).map_err(err)?;
            let listener = UnixListener::bind(path).map_err(err)?;
            if let Err(e) = chmod(path) {
                let _ = std::fs::remove_file(path);
                return Err(err(e));
            }
            Ok(listener)
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves.
pub async fn serve(
    router: Router,
    listener: UnixListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), UnixError> {
    let path = listener
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(Path::to_path_buf))
        .unwrap_or_default();
    router
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await
        .map_err(|source| UnixError::Serve { path, source })
}

/// A channel to the gRPC server on the unix socket `path`. Connects now, so
/// a missing or dead socket is an error here rather than on the first call.
pub async fn dial(path: impl AsRef<Path>) -> Result<Channel, UnixError> {
    let path = path.as_ref().to_path_buf();
    let target = path.clone();
    // The URI is required by tonic but unused: the connector ignores it.
    let endpoint = Endpoint::from_static("http://localhost");
    endpoint
        .connect_with_connector(tower::service_fn(move |_| {
            let target = target.clone();
            async move { Ok::<_, io::Error>(TokioIo::new(UnixStream::connect(target).await?)) }
        }))
        .await
        .map_err(|source| UnixError::Dial { path, source })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};

    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("railyard-unix-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[tokio::test]
    async fn sockets_get_their_mode_not_the_umask_and_replace_stale_ones() {
        let d = tmp("mode");
        let p = d.join("plugin.sock");
        // A stale socket (here: a plain file) is replaced.
        std::fs::write(&p, "stale").unwrap();
        let l = bind(&p).unwrap();
        let meta = std::fs::metadata(&p).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(mode(&p), 0o600);
        // It is the listening socket: a client connects through the final path.
        let (_c, _s) = tokio::join!(UnixStream::connect(&p), l.accept());
        _c.unwrap();
        _s.unwrap();
        drop(l);

        let g = d.join("group.sock");
        let _l = bind_with_mode(&g, 0o660).unwrap();
        assert_eq!(mode(&g), 0o660);
        // No hidden names are left behind.
        let left: Vec<String> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(left.is_empty(), "{left:?}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[tokio::test]
    async fn a_path_too_long_for_a_hidden_name_still_gets_its_mode() {
        // sun_path holds 107 bytes and a NUL. A directory that leaves room
        // for the 8-byte final name but not for the longer hidden one takes
        // the direct path.
        let base = tmp("long");
        let name = "plug.sok";
        let want_dir = 107 - 1 - name.len();
        let Some(pad) = want_dir.checked_sub(base.as_os_str().len() + 1) else {
            return; // a temp dir this deep leaves no room to test
        };
        let d = base.join("d".repeat(pad.max(1)));
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join(name);
        assert!(p.as_os_str().len() <= 107, "{}", p.display());
        let _l = bind(&p).unwrap();
        assert!(std::fs::metadata(&p).unwrap().file_type().is_socket());
        assert_eq!(mode(&p), 0o600);
        std::fs::remove_dir_all(&base).unwrap();
    }
}
