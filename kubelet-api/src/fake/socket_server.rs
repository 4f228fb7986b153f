//! A tonic router served on a unix socket for as long as the value lives:
//! dropping it stops the server and removes the socket, as a test expects.

use std::io;
use std::path::{Path, PathBuf};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::server::Router;

use crate::unix;

#[derive(Debug)]
pub(crate) struct SocketServer {
    path: PathBuf,
    running: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl SocketServer {
    /// Binds `path` and serves `router` on it; `what` names it in logs.
    pub(crate) fn start(path: &Path, router: Router, what: &'static str) -> io::Result<SocketServer> {
        let listener = unix::bind(path).map_err(io::Error::other)?;
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            if let Err(e) = unix::serve(router, listener, async {
                let _ = rx.await;
            })
            .await
            {
                tracing::warn!(error = %e, server = what, "fake server failed");
            }
        });
        Ok(SocketServer {
            path: path.to_path_buf(),
            running: Some((tx, task)),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SocketServer {
    fn drop(&mut self) {
        if let Some((tx, task)) = self.running.take() {
            let _ = tx.send(());
            task.abort();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}
