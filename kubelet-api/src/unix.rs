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

/// Listens on `path`, creating its directory and replacing a stale socket.
pub fn bind(path: &Path) -> Result<UnixListener, UnixError> {
    let err = |source| UnixError::Bind {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    UnixListener::bind(path).map_err(err)
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
