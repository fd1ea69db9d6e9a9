//! A TCP proxy in front of Postgres or Redis that a test can break: the dependency as seen by
//! the server stops (connections refused and cut, like a restart or a crash) or goes silent
//! (connections accepted and held without an answer, like a network partition), then comes
//! back.

use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Bytes flow both ways.
    Pass,
    /// Every connection is cut, new ones closed at once: the dependency is down.
    Down,
    /// Connections stay open and nothing flows: the dependency does not answer.
    Silent,
}

pub struct FaultProxy {
    pub port: u16,
    mode: Arc<watch::Sender<Mode>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
        let _ = self.mode.send(Mode::Down);
    }
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream` (`host:port`).
    pub async fn start(upstream: String) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (mode, _) = watch::channel(Mode::Pass);
        let mode = Arc::new(mode);
        let accepting = mode.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let watcher = accepting.subscribe();
                tokio::spawn(serve(client, upstream.clone(), watcher));
            }
        });
        FaultProxy { port, mode, task }
    }

    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
}

/// Waits until the mode is no longer `mode`.
async fn leaves(watcher: &mut watch::Receiver<Mode>, mode: Mode) {
    while *watcher.borrow_and_update() == mode {
        if watcher.changed().await.is_err() {
            return;
        }
    }
}

async fn serve(mut client: TcpStream, upstream: String, mut watcher: watch::Receiver<Mode>) {
    let mode = *watcher.borrow_and_update();
    match mode {
        Mode::Down => {
            let _ = client.shutdown().await;
        }
        Mode::Silent => {
            // Hold it, say nothing; when the partition ends the connection is cut.
            leaves(&mut watcher, Mode::Silent).await;
        }
        Mode::Pass => {
            let Ok(mut server) = TcpStream::connect(&upstream).await else {
                return;
            };
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                _ = leaves(&mut watcher, Mode::Pass) => {
                    // Down: cut now. Silent: hold both ends open, forwarding nothing, until
                    // the mode changes again, then cut.
                    if *watcher.borrow() == Mode::Silent {
                        leaves(&mut watcher, Mode::Silent).await;
                    }
                }
            }
        }
    }
}
