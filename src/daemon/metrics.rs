//! Prometheus metrics: what an admin graphs and alerts on.
//!
//! Counters live in one process-wide [`Metrics`] (atomics, so the loops update them
//! without locks); the queue's depth and age are read from the state when scraped. An
//! optional HTTP listener (`[metrics] listen`) serves them in the text exposition
//! format at any path.

use crate::store::state::State;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Upper bounds (seconds) of the change → handoff latency histogram.
const LATENCY_BUCKETS: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 300.0];

/// Every counter imipd keeps.
#[derive(Default)]
pub struct Metrics {
    /// Calendar object changes processed.
    pub changes: AtomicU64,
    /// Messages queued (one per recipient).
    pub queued: AtomicU64,
    /// Messages handed to the relay or outbox.
    pub sent: AtomicU64,
    /// Messages delivered into a local user's calendar.
    pub delivered_locally: AtomicU64,
    /// Messages that failed for good.
    pub failed: AtomicU64,
    /// Attempts that will be retried.
    pub retried: AtomicU64,
    /// LMTP verdicts per (outcome, reason).
    lmtp: Mutex<BTreeMap<(&'static str, String), u64>>,
    /// Latency histogram: counts per bucket, then +Inf, then sum (ms) and count.
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    latency_sum_ms: AtomicU64,
    latency_count: AtomicU64,
}

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::default)
}

impl Metrics {
    /// Adds one to a counter.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Records an LMTP verdict; `reason` is a short label (applied, ignored, refused…).
    pub fn lmtp(&self, outcome: &'static str, reason: &str) {
        if let Ok(mut map) = self.lmtp.lock() {
            *map.entry((outcome, reason.to_string())).or_insert(0) += 1;
        }
    }

    /// Records how long a change took from the user's save to the handoff.
    pub fn latency(&self, millis: u64) {
        let seconds = millis as f64 / 1000.0;
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.latency_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_ms.fetch_add(millis, Ordering::Relaxed);
        self.latency_count.fetch_add(1, Ordering::Relaxed);
    }

    /// The text exposition, with queue depth and age read from `state`.
    pub fn render(&self, state: Option<&State>, now: i64) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        };
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let counters = [
            (
                "imipd_changes_total",
                "Calendar object changes processed.",
                &self.changes,
            ),
            (
                "imipd_messages_queued_total",
                "Messages queued, one per recipient.",
                &self.queued,
            ),
            (
                "imipd_messages_sent_total",
                "Emails handed to the relay or outbox.",
                &self.sent,
            ),
            (
                "imipd_messages_delivered_locally_total",
                "Messages delivered into a local user's calendar.",
                &self.delivered_locally,
            ),
            (
                "imipd_messages_failed_total",
                "Messages that failed for good.",
                &self.failed,
            ),
            (
                "imipd_messages_retried_total",
                "Delivery attempts that will be retried.",
                &self.retried,
            ),
        ];
        for (name, help, value) in counters {
            counter(&mut out, name, help, get(value));
        }
        if let Some(Ok(superseded)) = state.map(|s| s.superseded_total()) {
            counter(
                &mut out,
                "imipd_messages_superseded_total",
                "Undelivered messages dropped because a newer one for the same UID, recipient and instances was queued.",
                superseded,
            );
        }
        let _ = writeln!(
            out,
            "# HELP imipd_lmtp_messages_total Incoming messages per recipient, by outcome and reason.\n# TYPE imipd_lmtp_messages_total counter"
        );
        if let Ok(map) = self.lmtp.lock() {
            for ((outcome, reason), n) in map.iter() {
                let _ = writeln!(
                    out,
                    "imipd_lmtp_messages_total{{outcome=\"{outcome}\",reason=\"{}\"}} {n}",
                    escape(reason)
                );
            }
        }
        if let Some(Ok(queue)) = state.map(|s| s.queue()) {
            let oldest = queue
                .iter()
                .map(|i| i.created)
                .min()
                .map(|t| (now - t).max(0))
                .unwrap_or(0);
            let _ = writeln!(
                out,
                "# HELP imipd_queue_depth Messages waiting for delivery.\n# TYPE imipd_queue_depth gauge\nimipd_queue_depth {}",
                queue.len()
            );
            let _ = writeln!(
                out,
                "# HELP imipd_queue_oldest_seconds Age of the oldest waiting message.\n# TYPE imipd_queue_oldest_seconds gauge\nimipd_queue_oldest_seconds {oldest}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP imipd_change_to_handoff_seconds From a user's save to the message's handoff.\n# TYPE imipd_change_to_handoff_seconds histogram"
        );
        let mut cumulative = 0;
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            cumulative += get(&self.latency_buckets[i]);
            let _ = writeln!(
                out,
                "imipd_change_to_handoff_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += get(&self.latency_buckets[LATENCY_BUCKETS.len()]);
        let _ = writeln!(
            out,
            "imipd_change_to_handoff_seconds_bucket{{le=\"+Inf\"}} {cumulative}"
        );
        let _ = writeln!(
            out,
            "imipd_change_to_handoff_seconds_sum {}\nimipd_change_to_handoff_seconds_count {}",
            get(&self.latency_sum_ms) as f64 / 1000.0,
            get(&self.latency_count)
        );
        out
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', " ")
}

/// Serves the metrics over HTTP until `stop` resolves.
pub async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        let (mut socket, _) = tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(_) => continue,
            },
        };
        let state = state.clone();
        tokio::spawn(async move {
            let mut request = [0u8; 1024];
            let read =
                tokio::time::timeout(std::time::Duration::from_secs(5), socket.read(&mut request))
                    .await;
            if !matches!(read, Ok(Ok(n)) if n > 0) {
                return;
            }
            let state_ref = state.clone();
            let body = tokio::task::spawn_blocking(move || {
                metrics().render(Some(&state_ref), chrono::Utc::now().timestamp())
            })
            .await
            .unwrap_or_default();
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
        });
    }
}

/// Binds the metrics listener; errors say which address.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot serve metrics on {addr}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_has_counters_labels_and_a_cumulative_histogram() {
        let m = Metrics::default();
        Metrics::inc(&m.changes);
        m.lmtp("accepted", "applied");
        m.lmtp("rejected", "not \"allowed\"");
        m.latency(40);
        m.latency(700);
        m.latency(999_999);
        let text = m.render(None, 0);
        assert!(text.contains("imipd_changes_total 1"));
        assert!(
            text.contains("imipd_lmtp_messages_total{outcome=\"accepted\",reason=\"applied\"} 1")
        );
        assert!(text.contains("reason=\"not \\\"allowed\\\"\""));
        assert!(text.contains("imipd_change_to_handoff_seconds_bucket{le=\"0.05\"} 1"));
        assert!(text.contains("imipd_change_to_handoff_seconds_bucket{le=\"1\"} 2"));
        assert!(text.contains("imipd_change_to_handoff_seconds_bucket{le=\"+Inf\"} 3"));
        assert!(text.contains("imipd_change_to_handoff_seconds_count 3"));
    }
}
