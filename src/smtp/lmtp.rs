//! The LMTP server (RFC 2033) the MTA delivers incoming iMIP mail and bounces to.
//!
//! [`LmtpServer::bind`] opens the configured listeners (TCP, a unix socket, or both)
//! so a wrong address fails at start-up; [`LmtpServer::serve`] accepts connections
//! and runs one [session](super::session) per connection until the shutdown future
//! resolves. Three mechanisms are visible here:
//!
//! - **Connection limit**: a semaphore with [`LmtpConfig::max_connections`] permits;
//!   a connection that finds none is answered `421 4.3.2` and closed (the MTA retries).
//! - **Shutdown**: when the future passed to `serve` resolves, the listeners close
//!   (and the socket file is removed), a `watch` channel tells every session to stop,
//!   sessions finish the transaction they are in and answer their next command with
//!   `421 4.3.2`, and `serve` returns once all have ended (or after
//!   [`LmtpConfig::shutdown_grace`], when the stragglers are dropped).
//! - **Per-session limits** (idle time, line length, commands, errors, size) are
//!   enforced by the session itself from [`LmtpConfig`].
//!
//! What a message means is not this module's business: that is the [`LmtpHandler`].

use super::handler::LmtpHandler;
pub use super::lmtp_config::LmtpConfig;
use super::session;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

/// Why the LMTP server could not start.
#[derive(Debug, thiserror::Error)]
pub enum LmtpError {
    /// Neither a TCP address nor a socket path was configured.
    #[error("LMTP server has nowhere to listen: set lmtp.listen and/or lmtp.socket")]
    NoListener,
    /// Binding the TCP address failed.
    #[error("cannot listen for LMTP on {addr}: {source}{hint}")]
    Tcp {
        /// The configured address.
        addr: SocketAddr,
        /// What the system said.
        source: io::Error,
        /// A suggestion for the admin.
        hint: &'static str,
    },
    /// Creating the unix socket failed.
    #[error("cannot listen for LMTP on socket {path}: {reason}")]
    Unix {
        /// The configured path.
        path: PathBuf,
        /// What went wrong, with a suggestion.
        reason: String,
    },
}

/// A bound LMTP server, ready to [`serve`](Self::serve).
pub struct LmtpServer<H> {
    config: Arc<LmtpConfig>,
    handler: Arc<H>,
    tcp: Option<TcpListener>,
    unix: Option<UnixListener>,
}

impl<H: LmtpHandler> LmtpServer<H> {
    /// Opens the configured listeners.
    pub async fn bind(config: LmtpConfig, handler: Arc<H>) -> Result<Self, LmtpError> {
        if config.tcp.is_none() && config.unix.is_none() {
            return Err(LmtpError::NoListener);
        }
        let tcp = match config.tcp {
            Some(addr) => Some(TcpListener::bind(addr).await.map_err(|source| {
                let hint = match source.kind() {
                    io::ErrorKind::AddrInUse => " (is another imipd or LMTP server running?)",
                    io::ErrorKind::PermissionDenied => " (ports below 1024 need privileges)",
                    io::ErrorKind::AddrNotAvailable => " (that address is not on this machine)",
                    _ => "",
                };
                LmtpError::Tcp { addr, source, hint }
            })?),
            None => None,
        };
        let unix = match &config.unix {
            Some(path) => Some(bind_unix(path, config.unix_mode)?),
            None => None,
        };
        Ok(LmtpServer {
            config: Arc::new(config),
            handler,
            tcp,
            unix,
        })
    }

    /// The TCP address actually bound (useful with port 0).
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The unix socket path, if any.
    pub fn unix_path(&self) -> Option<&Path> {
        self.config.unix.as_deref()
    }

    /// Accepts connections until `shutdown` resolves, then shuts down gracefully and
    /// returns when every session has ended.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) {
        let LmtpServer {
            config,
            handler,
            tcp,
            unix,
        } = self;
        let (stop_tx, stop_rx) = watch::channel(false);
        let permits = Arc::new(Semaphore::new(config.max_connections));
        let mut sessions = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                () = &mut shutdown => break,
                Some(done) = sessions.join_next(), if !sessions.is_empty() => {
                    if let Err(e) = done {
                        tracing::error!(error = %e, "LMTP session task failed");
                    }
                    continue;
                }
                conn = accept_tcp(tcp.as_ref()) => conn.map(|(s, peer)| Conn::Tcp(s, peer)),
                conn = accept_unix(unix.as_ref()) => conn.map(Conn::Unix),
            };
            let conn = match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "LMTP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            match permits.clone().try_acquire_owned() {
                Ok(permit) => {
                    let config = config.clone();
                    let handler = handler.clone();
                    let stop = stop_rx.clone();
                    let socket_path = config.unix.clone();
                    let (permits_left, max_sessions) = (permits.clone(), config.max_connections);
                    sessions.spawn(async move {
                        handler.session_opened();
                        match conn {
                            Conn::Tcp(stream, peer) => {
                                session::run(stream, peer.to_string(), &config, &*handler, stop)
                                    .await
                            }
                            Conn::Unix(stream) => {
                                let peer = socket_path.map_or("unix".to_string(), |p| {
                                    format!("unix:{}", p.display())
                                });
                                session::run(stream, peer, &config, &*handler, stop).await
                            }
                        }
                        handler.session_closed();
                        drop(permit);
                        if permits_left.available_permits() == max_sessions {
                            release_freed_memory();
                        }
                    });
                }
                Err(_) => {
                    let line = format!(
                        "421 4.3.2 {} too many connections, try again later\r\n",
                        config.hostname
                    );
                    tracing::warn!(
                        limit = config.max_connections,
                        "LMTP connection refused: limit reached"
                    );
                    sessions.spawn(async move {
                        let write = async move {
                            match conn {
                                Conn::Tcp(mut s, _) => {
                                    let _ = s.write_all(line.as_bytes()).await;
                                    let _ = s.shutdown().await;
                                }
                                Conn::Unix(mut s) => {
                                    let _ = s.write_all(line.as_bytes()).await;
                                    let _ = s.shutdown().await;
                                }
                            }
                        };
                        let _ = tokio::time::timeout(Duration::from_secs(5), write).await;
                    });
                }
            }
        }
        drop(tcp);
        drop(unix);
        if let Some(path) = &config.unix {
            let _ = std::fs::remove_file(path);
        }
        let _ = stop_tx.send(true);
        let drained = tokio::time::timeout(config.shutdown_grace, async {
            while sessions.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                remaining = sessions.len(),
                "LMTP sessions did not finish within the shutdown grace time; closing them"
            );
            sessions.shutdown().await;
        }
    }
}

/// Runs one session over `stream` exactly as [`LmtpServer::serve`] does for an accepted
/// connection (no shutdown requested), returning when the conversation ends.
///
/// Not part of the API: it lets the `lmtp_session` fuzz target (`fuzz/`) drive the
/// private session state machine over an in-memory stream, without sockets or timing.
#[doc(hidden)]
pub async fn run_session<S, H>(stream: S, config: &LmtpConfig, handler: &H)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    H: LmtpHandler,
{
    // Kept until the session ends: a dropped sender would read as "shut down".
    let (_no_shutdown, stop) = watch::channel(false);
    session::run(stream, "in-memory".to_string(), config, handler, stop).await;
}

/// An accepted connection.
enum Conn {
    Tcp(tokio::net::TcpStream, SocketAddr),
    Unix(tokio::net::UnixStream),
}

async fn accept_tcp(
    listener: Option<&TcpListener>,
) -> io::Result<(tokio::net::TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

async fn accept_unix(listener: Option<&UnixListener>) -> io::Result<tokio::net::UnixStream> {
    match listener {
        Some(l) => l.accept().await.map(|(s, _)| s),
        None => std::future::pending().await,
    }
}

/// Binds the unix socket, replacing a stale socket file but never a live one or a
/// file that is not a socket.
fn bind_unix(path: &Path, mode: Option<u32>) -> Result<UnixListener, LmtpError> {
    let fail = |reason: String| LmtpError::Unix {
        path: path.to_path_buf(),
        reason,
    };
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(fail(
                "a file that is not a socket is in the way (remove it or choose another path)"
                    .to_string(),
            ));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(fail(
                "another server is answering on it (is imipd already running?)".to_string(),
            ));
        }
        std::fs::remove_file(path)
            .map_err(|e| fail(format!("cannot remove the stale socket file: {e}")))?;
    }
    let listener = UnixListener::bind(path).map_err(|e| {
        let hint = match e.kind() {
            io::ErrorKind::NotFound => " (create the folder first)",
            io::ErrorKind::PermissionDenied => " (let the imipd user write to the folder)",
            _ => "",
        };
        fail(format!("{e}{hint}"))
    })?;
    if let Some(mode) = mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| fail(format!("cannot set its permissions: {e}")))?;
    }
    Ok(listener)
}

/// Hands the memory that finished sessions freed back to the system once no session
/// is open: glibc keeps freed blocks in its per-thread arenas, so after a burst of
/// sixteen 8 MB mails the daemon would otherwise stay near its peak for good.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory of the allocator to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}
