//! Recent activity for `imipd status`: what happened in the last hour, and the last few
//! refusals with their reasons.
//!
//! Prometheus counters ([`super::metrics`]) only grow; an admin asking "is it healthy
//! now?" needs a window. Deliveries are counted in sixty one-minute buckets (constant
//! memory whatever the volume), refusals kept in a small ring. Process-wide, like the
//! metrics, so every loop records without passing handles around.

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

/// How many refusals `imipd status` shows.
pub const RECENT_REFUSALS: usize = 5;

/// One refused or ignored change or message, as `imipd status` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// When (UTC timestamp).
    pub at: i64,
    /// Where it came from: `lmtp <rcpt>` or the object key of a store change.
    pub what: String,
    /// Why it was refused, as logged.
    pub reason: String,
}

/// Deliveries of one minute.
#[derive(Debug, Clone, Copy, Default)]
struct Minute {
    /// Minutes since the epoch this bucket holds; stale buckets are reused.
    minute: i64,
    sent: u64,
    failed: u64,
}

/// The process-wide recent activity.
pub struct Activity {
    /// When the daemon started (UTC timestamp), for the uptime.
    started: Mutex<Option<i64>>,
    /// Sixty buckets, indexed by minute modulo 60.
    minutes: Mutex<[Minute; 60]>,
    /// The newest refusals, newest last, at most [`RECENT_REFUSALS`].
    refusals: Mutex<VecDeque<Refusal>>,
    /// LMTP sessions open right now.
    pub lmtp_connections: AtomicUsize,
    /// LMTP sessions accepted since start.
    pub lmtp_connections_total: AtomicUsize,
}

/// The process-wide activity record.
pub fn activity() -> &'static Activity {
    static ACTIVITY: OnceLock<Activity> = OnceLock::new();
    ACTIVITY.get_or_init(Activity::new)
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

impl Activity {
    /// An empty record.
    pub fn new() -> Self {
        Activity {
            started: Mutex::new(None),
            minutes: Mutex::new([Minute::default(); 60]),
            refusals: Mutex::new(VecDeque::new()),
            lmtp_connections: AtomicUsize::new(0),
            lmtp_connections_total: AtomicUsize::new(0),
        }
    }

    /// Marks the start of the daemon.
    pub fn started(&self, now: i64) {
        if let Ok(mut started) = self.started.lock() {
            *started = Some(now);
        }
    }

    /// Seconds since [`Self::started`], if it was called.
    pub fn uptime(&self, now: i64) -> Option<i64> {
        self.started
            .lock()
            .ok()
            .and_then(|s| *s)
            .map(|s| (now - s).max(0))
    }

    /// Records one message handed off (`ok`) or failed for good.
    pub fn delivery(&self, now: i64, ok: bool) {
        let minute = now.div_euclid(60);
        if let Ok(mut minutes) = self.minutes.lock() {
            let slot = &mut minutes[minute.rem_euclid(60) as usize];
            if slot.minute != minute {
                *slot = Minute {
                    minute,
                    ..Minute::default()
                };
            }
            if ok {
                slot.sent += 1;
            } else {
                slot.failed += 1;
            }
        }
    }

    /// Messages (sent, failed) in the hour before `now`.
    pub fn last_hour(&self, now: i64) -> (u64, u64) {
        let minute = now.div_euclid(60);
        self.minutes
            .lock()
            .map(|minutes| {
                minutes
                    .iter()
                    .filter(|m| m.minute > minute - 60 && m.minute <= minute)
                    .fold((0, 0), |(s, f), m| (s + m.sent, f + m.failed))
            })
            .unwrap_or((0, 0))
    }

    /// Records a refusal; only the newest [`RECENT_REFUSALS`] are kept.
    pub fn refused(&self, now: i64, what: impl Into<String>, reason: impl Into<String>) {
        if let Ok(mut refusals) = self.refusals.lock() {
            if refusals.len() == RECENT_REFUSALS {
                refusals.pop_front();
            }
            refusals.push_back(Refusal {
                at: now,
                what: what.into(),
                reason: reason.into(),
            });
        }
    }

    /// The newest refusals, newest first.
    pub fn recent_refusals(&self) -> Vec<Refusal> {
        self.refusals
            .lock()
            .map(|r| r.iter().rev().cloned().collect())
            .unwrap_or_default()
    }

    /// Counts an LMTP session in.
    pub fn lmtp_opened(&self) {
        self.lmtp_connections.fetch_add(1, Ordering::Relaxed);
        self.lmtp_connections_total.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an LMTP session out.
    pub fn lmtp_closed(&self) {
        self.lmtp_connections.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hour_window_forgets_older_deliveries() {
        let a = Activity::new();
        let t0 = 1_800_000_000;
        a.delivery(t0, true);
        a.delivery(t0 + 30, false);
        a.delivery(t0 + 1800, true);
        assert_eq!(a.last_hour(t0 + 1800), (2, 1));
        // 61 minutes later the first minute is out of the window.
        assert_eq!(a.last_hour(t0 + 61 * 60), (1, 0));
        // A bucket reused 60 minutes later starts from zero.
        a.delivery(t0 + 3600, true);
        assert_eq!(a.last_hour(t0 + 3600), (2, 0));
    }

    #[test]
    fn only_the_newest_refusals_are_kept_newest_first() {
        let a = Activity::new();
        for i in 0..7 {
            a.refused(i, format!("lmtp r{i}@x"), format!("reason {i}"));
        }
        let recent = a.recent_refusals();
        assert_eq!(recent.len(), RECENT_REFUSALS);
        assert_eq!(recent[0].reason, "reason 6");
        assert_eq!(recent[4].reason, "reason 2");
    }

    #[test]
    fn sessions_are_counted_in_and_out() {
        let a = Activity::new();
        a.lmtp_opened();
        a.lmtp_opened();
        assert_eq!(a.lmtp_connections.load(Ordering::Relaxed), 2);
        a.lmtp_closed();
        a.lmtp_closed();
        assert_eq!(a.lmtp_connections.load(Ordering::Relaxed), 0);
        assert_eq!(a.lmtp_connections_total.load(Ordering::Relaxed), 2);
    }
}
