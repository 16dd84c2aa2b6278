//! Clients for tests: swaks (the real-world SMTP/LMTP test tool) and a raw line
//! client for exact protocol checks.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

/// What swaks printed and how it exited.
#[derive(Debug)]
pub struct SwaksRun {
    /// Exit status (0: all accepted; swaks uses 23–29 for rejections at each step).
    pub status: i32,
    /// The transcript (stdout and stderr).
    pub transcript: String,
}

/// Runs swaks with `args` (blocking); panics if swaks is not installed.
pub fn swaks(args: &[String]) -> SwaksRun {
    let output = Command::new("swaks")
        .args(args)
        .arg("--timeout")
        .arg("20")
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run swaks ({e}): install it with `apt-get install swaks` (scripts/test does this)")
        });
    SwaksRun {
        status: output.status.code().unwrap_or(-1),
        transcript: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

/// [`swaks`] on the blocking pool, so the runtime keeps serving the server under test.
pub async fn swaks_async(args: Vec<String>) -> SwaksRun {
    tokio::task::spawn_blocking(move || swaks(&args))
        .await
        .expect("swaks thread")
}

/// Arguments as owned strings.
pub fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// The lines of the transcript that swaks marks as server replies (`<-` or `<~`, or
/// `<**` for errors), without the marker.
pub fn server_replies(transcript: &str) -> Vec<String> {
    transcript
        .lines()
        .filter_map(|l| {
            let l = l.trim_start();
            ["<** ", "<-  ", "<~  ", "<~* "]
                .iter()
                .find_map(|m| l.strip_prefix(m))
                .map(str::to_string)
        })
        .collect()
}

/// A raw client: send bytes, read reply lines.
pub struct Wire<S> {
    reader: BufReader<S>,
}

impl Wire<tokio::net::TcpStream> {
    /// Connects over TCP.
    pub async fn tcp(addr: SocketAddr) -> Self {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        Wire {
            reader: BufReader::new(stream),
        }
    }
}

impl Wire<tokio::net::UnixStream> {
    /// Connects over a unix socket.
    pub async fn unix(path: &Path) -> Self {
        let stream = tokio::net::UnixStream::connect(path)
            .await
            .unwrap_or_else(|e| panic!("connect to {}: {e}", path.display()));
        Wire {
            reader: BufReader::new(stream),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Wire<S> {
    /// Sends raw bytes.
    pub async fn send(&mut self, bytes: impl AsRef<[u8]>) {
        let stream = self.reader.get_mut();
        stream.write_all(bytes.as_ref()).await.expect("send");
        stream.flush().await.expect("flush");
    }

    /// One reply line (without CRLF); `None` when the server closed the connection.
    pub async fn line(&mut self) -> Option<String> {
        let mut line = String::new();
        let read = tokio::time::timeout(Duration::from_secs(10), self.reader.read_line(&mut line))
            .await
            .expect("server did not answer within 10 s");
        match read {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line.trim_end_matches(['\r', '\n']).to_string()),
        }
    }

    /// One complete reply (all lines of a multi-line reply).
    pub async fn reply(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self.line().await.expect("connection closed before a reply");
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line);
            if last {
                return lines;
            }
        }
    }

    /// The last line of the next reply, which must start with `prefix`.
    pub async fn expect(&mut self, prefix: &str) -> String {
        let reply = self.reply().await;
        let last = reply.last().cloned().unwrap_or_default();
        assert!(
            last.starts_with(prefix),
            "expected {prefix:?}, got {reply:?}"
        );
        last
    }

    /// True if the server closed the connection (reads until EOF, at most 10 s).
    pub async fn closed(&mut self) -> bool {
        self.line().await.is_none()
    }
}

/// Sends one message over SMTP to `port` on 127.0.0.1 (a Postfix smtpd), as another
/// mail server would; every reply must be the expected success. `message` must not
/// hold a line that starts with a dot.
pub fn smtp_send(port: u16, from: &str, to: &[&str], message: &str) {
    use std::io::{BufRead, Write};
    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("smtpd");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut reader = std::io::BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    let mut expect = |code: &str| loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("reply");
        assert!(line.starts_with(code), "expected {code}, got {line:?}");
        if line.as_bytes().get(3) != Some(&b'-') {
            break;
        }
    };
    expect("220");
    let mut say = |line: &str, code: &str, writer: &mut std::net::TcpStream| {
        writer
            .write_all(format!("{line}\r\n").as_bytes())
            .expect("write");
        expect(code);
    };
    say("EHLO example.net", "250", &mut writer);
    say(&format!("MAIL FROM:<{from}>"), "250", &mut writer);
    for rcpt in to {
        say(&format!("RCPT TO:<{rcpt}>"), "250", &mut writer);
    }
    say("DATA", "354", &mut writer);
    say(&format!("{message}.\r"), "250", &mut writer);
    let _ = writer.write_all(b"QUIT\r\n");
}

/// Runs `command` to its end; it must succeed. `what` names it in a failure, which
/// shows its stderr. Its output.
pub fn run_ok(command: &mut Command, what: &str) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what} ({e}): is it installed?"));
    assert!(
        output.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Starts `command` (a server in the foreground) with no input, its output going to
/// `dir/stdout` and `dir/stderr`; `what` names it when it cannot be run.
pub fn spawn_logged(command: &mut Command, dir: &Path, what: &str) -> Child {
    command
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join("stdout")).expect("stdout file"))
        .stderr(std::fs::File::create(dir.join("stderr")).expect("stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"))
}
