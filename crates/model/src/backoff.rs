//! The one retry backoff: exponential with "equal jitter" (half the delay fixed, half
//! random), capped. The pipeline spaces a run's attempts with it (minutes to an hour); the
//! vendor clients space their retries of one request with it (milliseconds to seconds).
//! The caller draws the jitter, so this stays pure and testable.

use std::time::Duration;

/// How retries are spaced: `base` before the first retry, doubling each time, at most `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The wait after failed attempt `attempt` (1-based), given a uniform `jitter` in [0, 1]:
    /// between half and all of `base * 2^(attempt - 1)`, capped at `max`.
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(31))
            .min(self.max);
        let half = exp / 2;
        half + half.mul_f64(jitter.clamp(0.0, 1.0))
    }

    /// [`Self::delay`], never sooner than what the other side asked for (`Retry-After`).
    pub fn delay_honouring(&self, attempt: u32, jitter: f64, asked: Option<Duration>) -> Duration {
        self.delay(attempt, jitter).max(asked.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_with_equal_jitter_up_to_the_cap() {
        let b = Backoff {
            base: Duration::from_secs(60),
            max: Duration::from_secs(3600),
        };
        assert_eq!(b.delay(1, 0.0), Duration::from_secs(30));
        assert_eq!(b.delay(1, 1.0), Duration::from_secs(60));
        assert_eq!(b.delay(3, 1.0), Duration::from_secs(240));
        assert_eq!(b.delay(30, 1.0), Duration::from_secs(3600));
        assert_eq!(b.delay(u32::MAX, 0.0), Duration::from_secs(1800));
        assert_eq!(
            b.delay_honouring(1, 0.0, Some(Duration::from_secs(90))),
            Duration::from_secs(90)
        );
        assert_eq!(b.delay_honouring(1, 1.0, None), Duration::from_secs(60));
    }
}
