//! A small SMTP server for tests: records what it accepts, answers what it is told.
//!
//! It runs on its own threads (so it works under any test runtime), listens on a
//! port of 127.0.0.1 chosen by the system, and advertises PIPELINING, SIZE, DSN,
//! 8BITMIME and ENHANCEDSTATUSCODES. It records every command line and every accepted
//! message with its envelope parameters. Tests can make it answer MAIL, a given RCPT
//! or DATA with any reply, drop its open connections (as a server does on idle
//! timeout), or be down (connections refused) for a while.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One message the sink accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkMessage {
    /// MAIL FROM address (inside the angle brackets).
    pub mail_from: String,
    /// MAIL FROM parameters as sent (`SIZE=… RET=HDRS ENVID=…`).
    pub mail_params: String,
    /// Accepted recipients with their parameters, in order.
    pub rcpts: Vec<(String, String)>,
    /// The message, dot-unstuffed.
    pub data: Vec<u8>,
    /// Which connection (1-based) it came over.
    pub connection: u64,
    /// When the sink accepted it (just before answering the end of DATA with 250),
    /// for benchmarks that time the handoff.
    pub arrived: Instant,
}

#[derive(Default)]
struct State {
    messages: Vec<SinkMessage>,
    commands: Vec<String>,
    mail_reply: Option<String>,
    rcpt_replies: HashMap<String, String>,
    data_reply: Option<String>,
}

struct Shared {
    state: Mutex<State>,
    connections: AtomicU64,
    /// Connections with a number at or below this close at their next chance.
    kick_upto: AtomicU64,
    down: AtomicBool,
    stop: AtomicBool,
    /// Whether EHLO offers PIPELINING.
    pipelining: AtomicBool,
    /// Command lines that arrived with more input already behind them: the client
    /// sent them without waiting for the reply (pipelined).
    pipelined: AtomicU64,
}

/// A running sink; stopped on drop.
pub struct Sink {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl Sink {
    /// Starts a sink on a free loopback port.
    pub fn start() -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").expect("sink: bind a loopback port");
        let addr = listener.local_addr().expect("sink address");
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            connections: AtomicU64::new(0),
            kick_upto: AtomicU64::new(0),
            down: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            pipelining: AtomicBool::new(true),
            pipelined: AtomicU64::new(0),
        });
        let acceptor = {
            let shared = shared.clone();
            std::thread::spawn(move || accept_loop(Some(listener), addr, shared))
        };
        Sink {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Messages accepted so far.
    pub fn messages(&self) -> Vec<SinkMessage> {
        self.state().messages.clone()
    }

    /// How many messages were accepted so far (cheap enough to poll).
    pub fn message_count(&self) -> usize {
        self.state().messages.len()
    }

    /// Offer PIPELINING in EHLO (the default) or not, from the next connection on.
    pub fn offer_pipelining(&self, offer: bool) {
        self.shared.pipelining.store(offer, Ordering::SeqCst);
    }

    /// Command lines that arrived before the reply to the one before them was sent.
    pub fn pipelined_commands(&self) -> u64 {
        self.shared.pipelined.load(Ordering::SeqCst)
    }

    /// Every command line received so far (without CRLF).
    pub fn commands(&self) -> Vec<String> {
        self.state().commands.clone()
    }

    /// Waits until at least `n` messages were accepted; panics after `timeout`.
    pub fn wait_for_messages(&self, n: usize, timeout: Duration) -> Vec<SinkMessage> {
        let deadline = Instant::now() + timeout;
        loop {
            let messages = self.messages();
            if messages.len() >= n {
                return messages;
            }
            if Instant::now() > deadline {
                panic!(
                    "sink got {} of {n} messages within {timeout:?}; commands: {:?}",
                    messages.len(),
                    self.commands()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Answer every MAIL FROM with `reply` (e.g. `"451 4.3.0 try later"`); `None` for OK.
    pub fn reply_to_mail(&self, reply: Option<&str>) {
        self.state().mail_reply = reply.map(str::to_string);
    }

    /// Answer RCPT TO for `address` with `reply`; `None` for OK.
    pub fn reply_to_rcpt(&self, address: &str, reply: Option<&str>) {
        let mut state = self.state();
        match reply {
            Some(r) => state
                .rcpt_replies
                .insert(address.to_ascii_lowercase(), r.to_string()),
            None => state.rcpt_replies.remove(&address.to_ascii_lowercase()),
        };
    }

    /// Answer the end of DATA with `reply`; `None` for OK.
    pub fn reply_to_data(&self, reply: Option<&str>) {
        self.state().data_reply = reply.map(str::to_string);
    }

    /// Closes every open connection (without a reply), as a server does on idle timeout.
    pub fn drop_connections(&self) {
        let upto = self.connections();
        self.shared.kick_upto.store(upto, Ordering::SeqCst);
    }

    /// `true`: stop listening (connections are refused) and drop open connections;
    /// `false`: listen again on the same port.
    pub fn set_down(&self, down: bool) {
        if down {
            self.drop_connections();
        }
        self.shared.down.store(down, Ordering::SeqCst);
        // Give the acceptor a moment to close or reopen the listener.
        std::thread::sleep(Duration::from_millis(50));
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn accept_loop(mut listener: Option<TcpListener>, addr: SocketAddr, shared: Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        let down = shared.down.load(Ordering::SeqCst);
        if down && listener.is_some() {
            listener = None;
        } else if !down && listener.is_none() {
            listener = TcpListener::bind(addr).ok();
        }
        let Some(l) = listener.as_ref() else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let _ = l.set_nonblocking(true);
        match l.accept() {
            Ok((stream, _)) => {
                let number = shared.connections.fetch_add(1, Ordering::SeqCst) + 1;
                let shared = shared.clone();
                std::thread::spawn(move || {
                    let _ = serve(stream, number, &shared);
                });
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Reads one line, giving up when the sink stops or this connection is dropped.
fn read_line(reader: &mut BufReader<TcpStream>, number: u64, shared: &Shared) -> Option<Vec<u8>> {
    let mut line = Vec::new();
    loop {
        if shared.stop.load(Ordering::SeqCst) || shared.kick_upto.load(Ordering::SeqCst) >= number {
            return None;
        }
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => return None,
            // A line that arrives after the connection was dropped is not answered:
            // the client must see the connection gone, however the timing fell.
            Ok(_) if line.ends_with(b"\n") => {
                let kicked = shared.kick_upto.load(Ordering::SeqCst) >= number;
                return (!kicked).then_some(line);
            }
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => return None,
        }
    }
}

fn serve(stream: TcpStream, number: u64, shared: &Shared) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_millis(50)))?;
    let mut out = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let lock = || shared.state.lock().unwrap_or_else(|e| e.into_inner());
    out.write_all(b"220 sink.test ESMTP test sink\r\n")?;
    let mut mail: Option<(String, String)> = None;
    let mut rcpts: Vec<(String, String)> = Vec::new();
    while let Some(raw) = read_line(&mut reader, number, shared) {
        let line = String::from_utf8_lossy(&raw).trim_end().to_string();
        if !reader.buffer().is_empty() {
            shared.pipelined.fetch_add(1, Ordering::SeqCst);
        }
        lock().commands.push(line.clone());
        let upper = line.to_ascii_uppercase();
        let reply: String = if upper.starts_with("EHLO") {
            let pipelining = if shared.pipelining.load(Ordering::SeqCst) {
                "250-PIPELINING\r\n"
            } else {
                ""
            };
            format!(
                "250-sink.test\r\n{pipelining}250-SIZE 10485760\r\n250-DSN\r\n\
                 250-8BITMIME\r\n250 ENHANCEDSTATUSCODES"
            )
        } else if upper.starts_with("HELO") {
            "250 sink.test".to_string()
        } else if upper.starts_with("MAIL FROM:") {
            match lock().mail_reply.clone() {
                Some(r) => r,
                None => {
                    mail = Some(split_path(&line["MAIL FROM:".len()..]));
                    rcpts.clear();
                    "250 2.1.0 Ok".to_string()
                }
            }
        } else if upper.starts_with("RCPT TO:") {
            let (addr, params) = split_path(&line["RCPT TO:".len()..]);
            if mail.is_none() {
                "503 5.5.1 need MAIL".to_string()
            } else {
                match lock().rcpt_replies.get(&addr.to_ascii_lowercase()).cloned() {
                    Some(r) => r,
                    None => {
                        rcpts.push((addr, params));
                        "250 2.1.5 Ok".to_string()
                    }
                }
            }
        } else if upper == "DATA" {
            if mail.is_none() || rcpts.is_empty() {
                "554 5.5.1 no valid recipients".to_string()
            } else {
                out.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")?;
                let mut data = Vec::new();
                loop {
                    let Some(chunk) = read_line(&mut reader, number, shared) else {
                        return Ok(());
                    };
                    if chunk == b".\r\n" {
                        break;
                    }
                    let unstuffed = chunk.strip_prefix(b".").unwrap_or(&chunk);
                    data.extend_from_slice(unstuffed);
                }
                let mut state = lock();
                let reply = match state.data_reply.clone() {
                    Some(r) => r,
                    None => {
                        let (mail_from, mail_params) = mail.clone().unwrap_or_default();
                        state.messages.push(SinkMessage {
                            mail_from,
                            mail_params,
                            rcpts: rcpts.clone(),
                            data,
                            connection: number,
                            arrived: Instant::now(),
                        });
                        format!("250 2.0.0 Ok: queued as SINK{}", state.messages.len())
                    }
                };
                mail = None;
                rcpts.clear();
                reply
            }
        } else if upper == "RSET" {
            mail = None;
            rcpts.clear();
            "250 2.0.0 Ok".to_string()
        } else if upper.starts_with("NOOP") {
            "250 2.0.0 Ok".to_string()
        } else if upper == "QUIT" {
            out.write_all(b"221 2.0.0 Bye\r\n")?;
            return Ok(());
        } else {
            "502 5.5.2 command not recognized".to_string()
        };
        // One write per reply, without Nagle's algorithm: a reply split over two small
        // writes waits for the client's delayed acknowledgement (40 ms on Linux).
        out.write_all(format!("{reply}\r\n").as_bytes())?;
    }
    Ok(())
}

/// `<addr> PARAMS` → (addr, params).
fn split_path(rest: &str) -> (String, String) {
    let rest = rest.trim_start();
    match rest.strip_prefix('<').and_then(|r| r.split_once('>')) {
        Some((addr, params)) => (addr.to_string(), params.trim().to_string()),
        None => (rest.to_string(), String::new()),
    }
}
