//! The control socket: how `imipd queue`, `status`, `scan` and `inject` talk to the
//! running daemon, which holds the state database open (redb allows one process).
//!
//! The protocol is small and versioned. The client connects to the unix socket of
//! `[control] socket` and sends one request as a JSON line; a request that carries a
//! message (`inject`) announces its length and the raw bytes follow the line. The
//! daemon answers with one JSON line and closes:
//!
//! ```text
//! → {"version":1,"command":"queue-list"}
//! ← {"version":1,"exit":0,"text":"the queue is empty\n"}
//! → {"version":1,"command":"inject","rcpt":"alice@example.com","length":812}\n<812 bytes>
//! ← {"version":1,"exit":0,"text":"alice@example.com: 250 2.0.0 REPLY applied ...\n"}
//! ```
//!
//! `exit` is the exit code the command line passes on; `error` (instead of `text`)
//! is printed to stderr. A request of another `version` is answered with an error that
//! names both versions, and a client that gets an answer of another version says so.
//!
//! The socket is created mode 0660 (group from `[control] group`): whoever may use it
//! may steer the queue, so it is never world-accessible. This module does not decide
//! anything itself: it calls the same functions the commands use without a daemon.

use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;

/// The version of the protocol this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// The largest message `inject` passes through the socket (bytes).
pub const MAX_PAYLOAD: usize = 64 * 1024 * 1024;

/// One request to the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub enum Request {
    /// `imipd status`.
    Status,
    /// `imipd queue list`.
    QueueList,
    /// `imipd queue retry ID`.
    QueueRetry {
        /// Queue id.
        id: u64,
    },
    /// `imipd queue drop ID`.
    QueueDrop {
        /// Queue id.
        id: u64,
    },
    /// `imipd scan`.
    Scan,
    /// `imipd inject` (and `imipd deliver`): the message follows the line.
    Inject {
        /// The envelope recipient.
        rcpt: String,
        /// Only report what would happen.
        #[serde(default)]
        dry_run: bool,
        /// The envelope sender, if known.
        #[serde(default)]
        mail_from: String,
        /// Length of the message that follows the request line.
        length: usize,
    },
}

/// A request line on the wire: the version beside the command.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope<T> {
    version: u32,
    /// The state database of the client's configuration: a daemon running with
    /// another one refuses, so a command never steers the wrong instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    state: Option<PathBuf>,
    #[serde(flatten)]
    body: T,
}

/// The daemon's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// The protocol version of the daemon.
    pub version: u32,
    /// Exit code for the command line.
    pub exit: u8,
    /// Text for stdout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Text for stderr.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Response {
    /// A successful answer with `exit` 0.
    pub fn ok(text: impl Into<String>) -> Self {
        Response::with_exit(0, text)
    }

    /// An answer with the given exit code, printed on stdout.
    pub fn with_exit(exit: u8, text: impl Into<String>) -> Self {
        Response {
            version: PROTOCOL_VERSION,
            exit,
            text: Some(text.into()),
            error: None,
        }
    }

    /// A failed command (exit 1, printed on stderr).
    pub fn failed(error: impl Into<String>) -> Self {
        Response {
            version: PROTOCOL_VERSION,
            exit: 1,
            text: None,
            error: Some(error.into()),
        }
    }
}

/// Why a command could not be put to the daemon.
#[derive(Debug, Error)]
pub enum ControlError {
    /// Nobody listens on the socket: the daemon is not running.
    #[error("the daemon is not running (no one listens on {0})")]
    NotRunning(PathBuf),
    /// The socket exists but may not be used by this user.
    #[error("cannot use the control socket {path}: {source} (run as the daemon's user, or join the group of [control] group)")]
    Denied {
        /// The socket.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The conversation broke off or made no sense.
    #[error("control socket {path}: {message}")]
    Protocol {
        /// The socket.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// Puts one request (with its payload, for `inject`) to the daemon listening on
/// `socket` and returns its answer. [`ControlError::NotRunning`] means the caller may
/// do the work itself on the state.
pub fn request(
    socket: &Path,
    state: Option<&Path>,
    request: &Request,
    payload: &[u8],
) -> Result<Response, ControlError> {
    let protocol = |message: String| ControlError::Protocol {
        path: socket.to_path_buf(),
        message,
    };
    let mut stream = match UnixStream::connect(socket) {
        Ok(stream) => stream,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(ControlError::NotRunning(socket.to_path_buf()))
        }
        Err(source) => {
            return Err(ControlError::Denied {
                path: socket.to_path_buf(),
                source,
            })
        }
    };
    // A scan of a large store may take minutes; status and queue commands are quick.
    let _ = stream.set_read_timeout(Some(Duration::from_secs(3600)));
    let line = serde_json::to_string(&Envelope {
        version: PROTOCOL_VERSION,
        state: state.map(Path::to_path_buf),
        body: request,
    })
    .map_err(|e| protocol(e.to_string()))?;
    stream
        .write_all(line.as_bytes())
        .and_then(|()| stream.write_all(b"\n"))
        .and_then(|()| stream.write_all(payload))
        .and_then(|()| stream.flush())
        .map_err(|e| protocol(format!("sending the request: {e}")))?;
    let mut answer = String::new();
    BufReader::new(stream)
        .take(MAX_PAYLOAD as u64)
        .read_line(&mut answer)
        .map_err(|e| protocol(format!("reading the answer: {e}")))?;
    if answer.is_empty() {
        return Err(protocol(
            "the daemon closed the connection without answering".into(),
        ));
    }
    let value: serde_json::Value =
        serde_json::from_str(&answer).map_err(|e| protocol(format!("unreadable answer: {e}")))?;
    let version = value.get("version").and_then(|v| v.as_u64());
    if version != Some(u64::from(PROTOCOL_VERSION)) {
        return Err(protocol(format!(
            "the daemon speaks control protocol version {}, this imipd speaks {PROTOCOL_VERSION}: use the imipd binary of the running daemon",
            version.map_or("?".to_string(), |v| v.to_string())
        )));
    }
    serde_json::from_value(value).map_err(|e| protocol(format!("unreadable answer: {e}")))
}

/// What the daemon does with a request; implemented by the service (see
/// [`super::serve`]), so this module stays the protocol only.
pub trait Commands: Send + Sync + 'static {
    /// The state database this daemon runs with.
    fn state_path(&self) -> PathBuf;

    /// Carries out `request` (with `payload` for `inject`) and answers.
    fn run(
        &self,
        request: Request,
        payload: Vec<u8>,
    ) -> impl std::future::Future<Output = Response> + Send;
}

/// Binds the control socket: refuses to take over the socket of a running daemon,
/// removes a stale one, and sets mode 0660 and the group.
pub fn bind(socket: &Path, group: Option<&str>) -> Result<UnixListener, String> {
    if let Some(dir) = socket.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("control socket: cannot create {}: {e}", dir.display()))?;
    }
    if socket.exists() {
        if UnixStream::connect(socket).is_ok() {
            return Err(format!(
                "control socket {} is in use: another imipd is running with this configuration (stop it, or give this one its own [control] socket)",
                socket.display()
            ));
        }
        std::fs::remove_file(socket).map_err(|e| {
            format!(
                "control socket: cannot remove the stale {}: {e}",
                socket.display()
            )
        })?;
    }
    let listener = UnixListener::bind(socket)
        .map_err(|e| format!("control socket: cannot listen on {}: {e}", socket.display()))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o660)).map_err(|e| {
        format!(
            "control socket {}: cannot set mode 0660: {e}",
            socket.display()
        )
    })?;
    if let Some(group) = group {
        let gid = group_id(group).ok_or_else(|| {
            format!(
                "control.group: no group {group:?} in /etc/group (create it, or remove the key)"
            )
        })?;
        std::os::unix::fs::chown(socket, None, Some(gid)).map_err(|e| {
            format!(
                "control socket {}: cannot give it to group {group}: {e}",
                socket.display()
            )
        })?;
    }
    Ok(listener)
}

/// The id of a group given by name or number.
fn group_id(group: &str) -> Option<u32> {
    if let Ok(gid) = group.parse() {
        return Some(gid);
    }
    let text = std::fs::read_to_string("/etc/group").ok()?;
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let _password = fields.next()?;
        let gid = fields.next()?;
        (name == group).then(|| gid.parse().ok()).flatten()
    })
}

/// Answers requests on `listener` until `stop` resolves; removes the socket then.
pub async fn serve<C: Commands>(
    listener: UnixListener,
    socket: PathBuf,
    commands: std::sync::Arc<C>,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        let stream = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "control socket: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let commands = commands.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let answer = answer(read, &*commands).await;
            let mut line = serde_json::to_string(&answer).unwrap_or_else(|e| {
                format!("{{\"version\":{PROTOCOL_VERSION},\"exit\":1,\"error\":\"{e}\"}}")
            });
            line.push('\n');
            let _ = write.write_all(line.as_bytes()).await;
            let _ = write.shutdown().await;
        });
    }
    let _ = std::fs::remove_file(&socket);
}

async fn answer<C: Commands>(read: tokio::net::unix::OwnedReadHalf, commands: &C) -> Response {
    let mut reader = tokio::io::BufReader::new(read);
    let mut line = String::new();
    let header = tokio::time::timeout(
        Duration::from_secs(30),
        (&mut reader).take(64 * 1024).read_line(&mut line),
    )
    .await;
    if !matches!(header, Ok(Ok(n)) if n > 0) {
        return Response::failed("no request line within 30 s");
    }
    let value: serde_json::Value = match serde_json::from_str(&line) {
        Ok(value) => value,
        Err(e) => return Response::failed(format!("not a request: {e}")),
    };
    let version = value.get("version").and_then(|v| v.as_u64());
    if version != Some(u64::from(PROTOCOL_VERSION)) {
        return Response::failed(format!(
            "this daemon speaks control protocol version {PROTOCOL_VERSION}, the client {}: use the imipd binary of the running daemon",
            version.map_or("none".to_string(), |v| v.to_string())
        ));
    }
    if let Some(theirs) = value.get("state").and_then(|v| v.as_str()) {
        let ours = commands.state_path();
        if Path::new(theirs) != ours {
            return Response::failed(format!(
                "this daemon runs with the state {}, the command's configuration names {theirs}: give each instance its own [control] socket",
                ours.display()
            ));
        }
    }
    let request: Request = match serde_json::from_value(value) {
        Ok(request) => request,
        Err(e) => return Response::failed(format!("unknown request: {e}")),
    };
    let mut payload = Vec::new();
    if let Request::Inject { length, .. } = &request {
        if *length > MAX_PAYLOAD {
            return Response::failed(format!(
                "the message has {length} bytes, more than the {MAX_PAYLOAD} the control socket takes"
            ));
        }
        payload = vec![0; *length];
        let read =
            tokio::time::timeout(Duration::from_secs(60), reader.read_exact(&mut payload)).await;
        if !matches!(read, Ok(Ok(_))) {
            return Response::failed("the message ended before its announced length");
        }
    }
    commands.run(request, payload).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    struct Echo;

    impl Commands for Echo {
        fn state_path(&self) -> PathBuf {
            PathBuf::from("/var/lib/imipd/state.redb")
        }

        async fn run(&self, request: Request, payload: Vec<u8>) -> Response {
            Response::with_exit(
                7,
                format!("{request:?} {}", String::from_utf8_lossy(&payload)),
            )
        }
    }

    fn socket(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("imipd-control-{name}-{}.sock", std::process::id()))
    }

    /// Sends `req` with `payload` over the socket at `path` as a client whose
    /// configuration names the state `state`.
    async fn ask(
        path: &Path,
        state: &'static str,
        req: Request,
        payload: &'static [u8],
    ) -> Response {
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || request(&path, Some(Path::new(state)), &req, payload))
            .await
            .expect("client")
            .expect("answer")
    }

    #[tokio::test]
    async fn a_request_and_its_payload_reach_the_daemon_and_the_exit_code_comes_back() {
        let path = socket("echo");
        let listener = bind(&path, None).expect("bind");
        let mode = std::fs::metadata(&path)
            .expect("socket")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o660, "the socket is not world-accessible");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, path.clone(), Arc::new(Echo), async {
            let _ = stop_rx.await;
        }));
        let inject = Request::Inject {
            rcpt: "a@b.c".into(),
            dry_run: true,
            mail_from: String::new(),
            length: 5,
        };
        let answer = ask(&path, "/var/lib/imipd/state.redb", inject, b"hello").await;
        assert_eq!(answer.exit, 7);
        assert!(answer
            .text
            .as_deref()
            .is_some_and(|t| t.contains("a@b.c") && t.ends_with("hello")));
        // A command whose configuration names another state is refused.
        let wrong = ask(&path, "/srv/other/state.redb", Request::Status, b"").await;
        assert_eq!(wrong.exit, 1);
        assert!(wrong
            .error
            .is_some_and(|e| e.contains("/srv/other/state.redb")));
        // A second daemon on the same socket is refused while the first runs.
        assert!(bind(&path, None)
            .expect_err("in use")
            .contains("another imipd"));
        let _ = stop_tx.send(());
        server.await.expect("server");
        assert!(!path.exists(), "the socket is removed on shutdown");
    }

    #[tokio::test]
    async fn a_client_of_another_version_gets_a_clear_error() {
        let path = socket("version");
        let listener = bind(&path, None).expect("bind");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, path.clone(), Arc::new(Echo), async {
            let _ = stop_rx.await;
        }));
        let client_path = path.clone();
        let answer = tokio::task::spawn_blocking(move || {
            let mut stream = UnixStream::connect(&client_path).expect("connect");
            stream
                .write_all(b"{\"version\":99,\"command\":\"status\"}\n")
                .expect("write");
            let mut line = String::new();
            BufReader::new(stream).read_line(&mut line).expect("read");
            line
        })
        .await
        .expect("client");
        let answer: Response = serde_json::from_str(&answer).expect("json");
        assert_eq!(answer.exit, 1);
        let error = answer.error.expect("error");
        assert!(
            error.contains("version 1") && error.contains("99"),
            "{error}"
        );
        let _ = stop_tx.send(());
        server.await.expect("server");
    }

    #[test]
    fn no_daemon_means_not_running() {
        let path = socket("absent");
        let _ = std::fs::remove_file(&path);
        assert!(matches!(
            request(&path, None, &Request::Status, b""),
            Err(ControlError::NotRunning(_))
        ));
        // A stale socket file left by a killed daemon is "not running" too.
        let stale = std::os::unix::net::UnixListener::bind(&path).expect("bind");
        drop(stale);
        assert!(matches!(
            request(&path, None, &Request::Status, b""),
            Err(ControlError::NotRunning(_))
        ));
        let _ = std::fs::remove_file(&path);
    }
}
