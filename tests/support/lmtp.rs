//! A recording [`LmtpHandler`] and a running imipd LMTP server for it.

use imipd::smtp::{
    LmtpConfig, LmtpHandler, LmtpServer, ReceivedMessage, RecipientCheck, RecipientOutcome,
};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// What the handler does for one address.
#[derive(Debug, Clone)]
enum Rule {
    /// Accept at RCPT, then answer this after DATA.
    Deliver(RecipientOutcome),
    /// Answer RCPT with a temporary failure.
    CheckTempFail(String),
}

/// A handler with a fixed list of addresses; records every delivered message.
#[derive(Default)]
pub struct RecordingHandler {
    rules: Mutex<HashMap<String, Rule>>,
    /// Domains whose every address is accepted and delivered (bounce domains).
    domains: Mutex<Vec<String>>,
    received: Mutex<Vec<ReceivedMessage>>,
    /// How long `deliver` takes (to test shutdown during a delivery).
    delay: Mutex<Duration>,
}

impl RecordingHandler {
    /// A handler that knows nobody.
    pub fn new() -> Arc<Self> {
        Arc::new(RecordingHandler::default())
    }

    /// `address` is a user whose mail is accepted.
    pub fn user(&self, address: &str) -> &Self {
        self.user_with(
            address,
            RecipientOutcome::Accepted("delivered to calendar".into()),
        )
    }

    /// `address` is accepted at RCPT time and its delivery ends in `outcome`.
    pub fn user_with(&self, address: &str, outcome: RecipientOutcome) -> &Self {
        self.lock_rules()
            .insert(address.to_ascii_lowercase(), Rule::Deliver(outcome));
        self
    }

    /// RCPT for `address` fails temporarily with `reason`.
    pub fn check_fails(&self, address: &str, reason: &str) -> &Self {
        self.lock_rules().insert(
            address.to_ascii_lowercase(),
            Rule::CheckTempFail(reason.into()),
        );
        self
    }

    /// Every address at `domain` is accepted.
    pub fn domain(&self, domain: &str) -> &Self {
        self.domains
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(domain.to_ascii_lowercase());
        self
    }

    /// Makes each delivery take `delay`.
    pub fn slow(&self, delay: Duration) -> &Self {
        *self.delay.lock().unwrap_or_else(|e| e.into_inner()) = delay;
        self
    }

    /// The messages delivered so far.
    pub fn received(&self) -> Vec<ReceivedMessage> {
        self.received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits until `n` messages were delivered; panics after `timeout`.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<ReceivedMessage> {
        let arrived = async {
            while self.received().len() < n {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        if tokio::time::timeout(timeout, arrived).await.is_err() {
            panic!(
                "handler got {} of {n} messages within {timeout:?}",
                self.received().len()
            );
        }
        self.received()
    }

    fn lock_rules(&self) -> std::sync::MutexGuard<'_, HashMap<String, Rule>> {
        self.rules.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn rule(&self, address: &str) -> Option<Rule> {
        let address = address.to_ascii_lowercase();
        if let Some(rule) = self.lock_rules().get(&address) {
            return Some(rule.clone());
        }
        let domain = address.rsplit_once('@').map(|(_, d)| d.to_string())?;
        let domains = self.domains.lock().unwrap_or_else(|e| e.into_inner());
        domains
            .contains(&domain)
            .then(|| Rule::Deliver(RecipientOutcome::Accepted("bounce recorded".into())))
    }
}

impl LmtpHandler for RecordingHandler {
    fn check_recipient(&self, recipient: &str) -> RecipientCheck {
        match self.rule(recipient) {
            Some(Rule::Deliver(_)) => RecipientCheck::Accept,
            Some(Rule::CheckTempFail(reason)) => RecipientCheck::TempFail(reason),
            None => RecipientCheck::Unknown,
        }
    }

    async fn deliver(&self, message: ReceivedMessage) -> Vec<RecipientOutcome> {
        let delay = *self.delay.lock().unwrap_or_else(|e| e.into_inner());
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let outcomes = message
            .recipients
            .iter()
            .map(|r| match self.rule(r) {
                Some(Rule::Deliver(outcome)) => outcome,
                _ => RecipientOutcome::TempFail {
                    enhanced: "4.3.0".into(),
                    reason: "unexpected recipient".into(),
                },
            })
            .collect();
        self.received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(message);
        outcomes
    }
}

/// A running LMTP server.
pub struct RunningLmtp {
    /// The TCP address, if it listens on TCP.
    pub addr: Option<SocketAddr>,
    /// The socket path, if it listens on a unix socket.
    pub socket: Option<PathBuf>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl RunningLmtp {
    /// The TCP address; panics if the server has none.
    pub fn tcp(&self) -> SocketAddr {
        self.addr.expect("this LMTP server listens on TCP")
    }

    /// Starts graceful shutdown and waits until `serve` returned.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Starts graceful shutdown without waiting; the returned handle finishes when
    /// `serve` returns.
    pub fn begin_shutdown(mut self) -> JoinHandle<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.take().expect("server task")
    }
}

impl Drop for RunningLmtp {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A configuration for tests: loopback TCP on a free port, short idle timeout.
pub fn test_config() -> LmtpConfig {
    LmtpConfig {
        tcp: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        hostname: "lmtp.imipd.test".into(),
        max_message_size: 64 * 1024,
        idle_timeout: Duration::from_secs(10),
        shutdown_grace: Duration::from_secs(10),
        ..LmtpConfig::default()
    }
}

/// [`test_config`] listening only on the Unix socket `path`, made with mode `mode`.
pub fn unix_config(path: &Path, mode: u32) -> LmtpConfig {
    LmtpConfig {
        tcp: None,
        unix: Some(path.to_path_buf()),
        unix_mode: Some(mode),
        ..test_config()
    }
}

/// A handler that knows one user, `alice@imip.test` (the LMTP tests' domain).
pub fn alice_handler() -> Arc<RecordingHandler> {
    let handler = RecordingHandler::new();
    handler.user("alice@imip.test");
    handler
}

/// Binds and serves `config` with `handler` on the current runtime.
pub async fn start_lmtp(config: LmtpConfig, handler: Arc<RecordingHandler>) -> RunningLmtp {
    let server = LmtpServer::bind(config, handler)
        .await
        .unwrap_or_else(|e| panic!("LMTP server: {e}"));
    let addr = server.tcp_addr();
    let socket = server.unix_path().map(PathBuf::from);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(async move {
        let _ = stopped.await;
    }));
    RunningLmtp {
        addr,
        socket,
        stop: Some(stop),
        task: Some(task),
    }
}
