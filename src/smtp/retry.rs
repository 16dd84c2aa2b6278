//! When to try a failed delivery again, and when to give up.
//!
//! The schedule is exponential: about a minute after the first failure, doubling each
//! time, never more than [`RetryPolicy::max_delay`] apart, and with random jitter so
//! messages that failed together (a relay outage) do not all come back at the same
//! second. A message older than [`RetryPolicy::max_age`] (five days, as MTAs do) fails
//! for good; the last attempt is placed at that age rather than skipped. Permanent
//! errors (5xx) are never retried. The randomness comes from a [`RandomSource`] the
//! caller passes in, so tests pin the schedule; the module reads no clock either (the
//! caller says how old the message is).

use super::transport::SendError;
use std::time::Duration;

/// A source of random numbers for jitter; tests use a fixed sequence.
pub trait RandomSource {
    /// A uniformly distributed 64-bit value.
    fn next_u64(&mut self) -> u64;
}

/// A small, fast, non-cryptographic generator (SplitMix64) for jitter, so the crate
/// needs no `rand` dependency for this.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// A generator seeded from the clock and the process id (for the daemon).
    pub fn from_entropy() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        SplitMix64::new(nanos ^ (u64::from(std::process::id()) << 32))
    }
}

impl RandomSource for SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// The retry schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Delay after the first failure.
    pub first_delay: Duration,
    /// Longest delay between two attempts.
    pub max_delay: Duration,
    /// Age after which a message that still fails temporarily fails for good.
    pub max_age: Duration,
    /// Fraction of each delay that is random: a delay `d` becomes a value in
    /// `(d × (1 − jitter), d]`. Between 0 and 1.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            first_delay: Duration::from_secs(60),
            max_delay: Duration::from_secs(3600),
            max_age: Duration::from_secs(5 * 24 * 3600),
            jitter: 0.2,
        }
    }
}

/// What to do with a message after a failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Try again after this long.
    RetryAfter(Duration),
    /// Stop: the failure is permanent, or the message is too old.
    GiveUp(GiveUpReason),
}

/// Why a message will not be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUpReason {
    /// The server refused it for good (5xx).
    Permanent,
    /// It kept failing temporarily for longer than [`RetryPolicy::max_age`].
    TooOld,
}

/// How a failure should be treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Try again later.
    Retry,
    /// Never try again.
    Permanent,
}

/// Classifies a send failure: 5xx → permanent; 4xx, timeouts, network → retry.
pub fn classify(error: &SendError) -> Class {
    match error {
        SendError::Temporary(_) => Class::Retry,
        SendError::Permanent(_) => Class::Permanent,
    }
}

/// Classifies a bare SMTP reply code: 2xx/3xx never reach here, 4xx (and anything
/// unexpected) retry, 5xx are permanent.
pub fn classify_code(code: u16) -> Class {
    if (500..600).contains(&code) {
        Class::Permanent
    } else {
        Class::Retry
    }
}

impl RetryPolicy {
    /// The delay before attempt `failures + 1`, after `failures` failed attempts
    /// (1 for the first failure), before jitter and the age limit.
    pub fn base_delay(&self, failures: u32) -> Duration {
        let exponent = failures.saturating_sub(1).min(32);
        let factor = 1u64 << exponent;
        let secs = self.first_delay.as_secs_f64() * factor as f64;
        Duration::try_from_secs_f64(secs.min(self.max_delay.as_secs_f64()))
            .unwrap_or(self.max_delay)
    }

    /// What to do after a failure, given how many attempts failed so far (this one
    /// included) and the message's age now.
    pub fn decide(
        &self,
        error: &SendError,
        failures: u32,
        age: Duration,
        random: &mut impl RandomSource,
    ) -> Decision {
        if classify(error) == Class::Permanent {
            return Decision::GiveUp(GiveUpReason::Permanent);
        }
        self.after_temporary_failure(failures, age, random)
    }

    /// The schedule after a temporary failure.
    pub fn after_temporary_failure(
        &self,
        failures: u32,
        age: Duration,
        random: &mut impl RandomSource,
    ) -> Decision {
        if age >= self.max_age {
            return Decision::GiveUp(GiveUpReason::TooOld);
        }
        let base = self.base_delay(failures);
        let jitter = self.jitter.clamp(0.0, 1.0);
        // 53 random bits make a uniform fraction in [0, 1).
        let unit = (random.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let delay =
            Duration::try_from_secs_f64(base.as_secs_f64() * (1.0 - jitter * unit)).unwrap_or(base);
        let delay = delay.max(Duration::from_secs(1));
        Decision::RetryAfter(delay.min(self.max_age - age))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Always the same value: 0 (no jitter) or u64::MAX (full jitter).
    struct Fixed(u64);
    impl RandomSource for Fixed {
        fn next_u64(&mut self) -> u64 {
            self.0
        }
    }

    fn temp() -> SendError {
        SendError::temporary("relay down")
    }

    fn delay(d: Decision) -> Duration {
        match d {
            Decision::RetryAfter(d) => d,
            other => panic!("expected a retry, got {other:?}"),
        }
    }

    #[test]
    fn schedule_doubles_up_to_the_cap() {
        let p = RetryPolicy::default();
        let secs: Vec<u64> = (1..=9).map(|n| p.base_delay(n).as_secs()).collect();
        assert_eq!(secs, [60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]);
        assert_eq!(p.base_delay(1000).as_secs(), 3600);
        assert_eq!(p.base_delay(0).as_secs(), 60);
        let huge = RetryPolicy {
            first_delay: Duration::from_secs(u64::MAX / 2),
            max_delay: Duration::MAX,
            ..RetryPolicy::default()
        };
        assert_eq!(huge.base_delay(40), Duration::MAX, "no overflow panic");
        let d = delay(huge.decide(&temp(), 40, Duration::ZERO, &mut Fixed(0)));
        assert!(d <= huge.max_age);
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let p = RetryPolicy::default();
        let young = Duration::from_secs(10);
        assert_eq!(
            delay(p.decide(&temp(), 1, young, &mut Fixed(0))).as_secs(),
            60
        );
        let low = delay(p.decide(&temp(), 1, young, &mut Fixed(u64::MAX)));
        assert!(
            low > Duration::from_secs(47) && low <= Duration::from_secs(48),
            "{low:?}"
        );
        let mut rng = SplitMix64::new(7);
        let mut seen = std::collections::BTreeSet::new();
        for failures in 1..20 {
            for _ in 0..50 {
                let d = delay(p.decide(&temp(), failures, young, &mut rng));
                let base = p.base_delay(failures);
                assert!(d <= base && d >= base.mul_f64(0.8), "{d:?} vs {base:?}");
                assert!(d <= p.max_delay);
                seen.insert(d.as_millis());
            }
        }
        assert!(seen.len() > 100, "jitter should spread attempts");
    }

    #[test]
    fn same_seed_same_schedule() {
        let p = RetryPolicy::default();
        let run = |seed| {
            let mut rng = SplitMix64::new(seed);
            (1..6)
                .map(|n| delay(p.decide(&temp(), n, Duration::ZERO, &mut rng)))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }

    #[test]
    fn gives_up_at_max_age_with_a_last_attempt_there() {
        let p = RetryPolicy::default();
        let almost = p.max_age - Duration::from_secs(90);
        // Ten failures would mean an hour's wait; the last attempt comes at max age.
        assert_eq!(
            delay(p.decide(&temp(), 10, almost, &mut Fixed(0))),
            Duration::from_secs(90)
        );
        assert_eq!(
            p.decide(&temp(), 11, p.max_age, &mut Fixed(0)),
            Decision::GiveUp(GiveUpReason::TooOld)
        );
    }

    #[test]
    fn permanent_errors_are_not_retried() {
        let p = RetryPolicy::default();
        let err = SendError::Permanent(super::super::transport::Failure {
            message: "550".into(),
            reply: None,
        });
        assert_eq!(
            p.decide(&err, 1, Duration::ZERO, &mut Fixed(0)),
            Decision::GiveUp(GiveUpReason::Permanent)
        );
        assert_eq!(classify_code(550), Class::Permanent);
        assert_eq!(classify_code(451), Class::Retry);
        assert_eq!(classify_code(421), Class::Retry);
    }
}
