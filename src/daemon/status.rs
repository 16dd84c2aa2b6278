//! `imipd status`: is the daemon running, and is it healthy?
//!
//! The report is made by the running daemon (through the control socket) from its
//! state and its [recent activity](super::activity); the command line renders it and
//! exits 0 when healthy, 1 when degraded, 3 when the daemon is not running, so a
//! monitoring check can use the exit code alone.

use super::activity::{activity, Refusal};
use crate::store::state::{State, StateError};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// A queued message older than this, that has failed at least once, makes the daemon
/// degraded: mail is not getting through.
pub const STUCK_AFTER_SECS: i64 = 15 * 60;

/// Exit code of `imipd status` when the daemon is healthy.
pub const EXIT_HEALTHY: u8 = 0;
/// Exit code when it runs but something needs attention.
pub const EXIT_DEGRADED: u8 = 1;
/// Exit code when it is not running (as systemd's `status` and LSB scripts use).
pub const EXIT_NOT_RUNNING: u8 = 3;

/// What `imipd status` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// The daemon's version.
    pub version: String,
    /// Seconds since it started.
    pub uptime_secs: i64,
    /// Users in the user map.
    pub users: usize,
    /// Calendar objects imipd keeps a record of.
    pub objects: usize,
    /// Messages waiting for delivery.
    pub queue_depth: usize,
    /// Age of the oldest waiting message (seconds).
    pub oldest_queued_secs: Option<i64>,
    /// The newest delivery error among waiting messages.
    pub last_error: Option<String>,
    /// Messages handed off in the last hour.
    pub sent_last_hour: u64,
    /// Messages that failed for good in the last hour.
    pub failed_last_hour: u64,
    /// LMTP sessions open now.
    pub lmtp_connections: usize,
    /// LMTP sessions since start.
    pub lmtp_connections_total: usize,
    /// The last refusals, newest first.
    pub refusals: Vec<Refusal>,
    /// Why the daemon is degraded; empty when healthy.
    pub problems: Vec<String>,
}

impl StatusReport {
    /// Makes the report from the state and the process's activity.
    pub fn gather(state: &State, users: usize, now: i64) -> Result<Self, StateError> {
        let queue = state.queue()?;
        let objects = state.object_keys_with_prefix("")?.len();
        let oldest = queue.iter().map(|i| i.created).min();
        let last_error = queue
            .iter()
            .filter(|i| i.last_error.is_some())
            .max_by_key(|i| i.next_attempt)
            .and_then(|i| i.last_error.clone());
        let activity = activity();
        let (sent, failed) = activity.last_hour(now);
        let mut problems = Vec::new();
        let stuck = queue
            .iter()
            .filter(|i| i.attempts > 0 && now - i.created > STUCK_AFTER_SECS)
            .count();
        if stuck > 0 {
            problems.push(format!(
                "{stuck} messages have waited more than {} minutes and failed at least once",
                STUCK_AFTER_SECS / 60
            ));
        }
        if failed > 0 {
            problems.push(format!(
                "{failed} messages failed for good in the last hour"
            ));
        }
        Ok(StatusReport {
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_secs: activity.uptime(now).unwrap_or(0),
            users,
            objects,
            queue_depth: queue.len(),
            oldest_queued_secs: oldest.map(|t| (now - t).max(0)),
            last_error,
            sent_last_hour: sent,
            failed_last_hour: failed,
            lmtp_connections: activity
                .lmtp_connections
                .load(std::sync::atomic::Ordering::Relaxed),
            lmtp_connections_total: activity
                .lmtp_connections_total
                .load(std::sync::atomic::Ordering::Relaxed),
            refusals: activity.recent_refusals(),
            problems,
        })
    }

    /// The exit code: healthy or degraded.
    pub fn exit_code(&self) -> u8 {
        if self.problems.is_empty() {
            EXIT_HEALTHY
        } else {
            EXIT_DEGRADED
        }
    }

    /// The text an admin reads.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let health = if self.problems.is_empty() {
            "healthy".to_string()
        } else {
            format!("degraded: {}", self.problems.join("; "))
        };
        let _ = writeln!(
            out,
            "imipd {} running for {}: {health}",
            self.version,
            duration(self.uptime_secs)
        );
        let _ = writeln!(
            out,
            "  watching: {} users, {} objects",
            self.users, self.objects
        );
        let _ = write!(out, "  queue: {} messages", self.queue_depth);
        if let Some(oldest) = self.oldest_queued_secs {
            let _ = write!(out, ", oldest queued {} ago", duration(oldest));
        }
        out.push('\n');
        if let Some(error) = &self.last_error {
            let _ = writeln!(out, "  last delivery error: {error}");
        }
        let _ = writeln!(
            out,
            "  last hour: {} sent, {} failed",
            self.sent_last_hour, self.failed_last_hour
        );
        let _ = writeln!(
            out,
            "  LMTP: {} connections open, {} since start",
            self.lmtp_connections, self.lmtp_connections_total
        );
        if self.refusals.is_empty() {
            let _ = writeln!(out, "  refusals: none since start");
        } else {
            let _ = writeln!(out, "  last refusals:");
            for refusal in &self.refusals {
                let when = chrono::DateTime::from_timestamp(refusal.at, 0)
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                    .unwrap_or_default();
                let _ = writeln!(out, "    {when}  {}: {}", refusal.what, refusal.reason);
            }
        }
        out
    }
}

/// `3h 05m`, `12m 30s`, `45s`.
fn duration(secs: i64) -> String {
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    if h > 0 {
        format!("{h}h {m:02}m")
    } else if m > 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_a_clock() {
        assert_eq!(duration(45), "45s");
        assert_eq!(duration(750), "12m 30s");
        assert_eq!(duration(3 * 3600 + 300), "3h 05m");
    }
}
