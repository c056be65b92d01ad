//! Rate-limit algorithms as pure functions of (state, now, quota, cost).
//!
//! The in-process store keeps a [`State`] per key and calls [`decide`]; the Redis store runs the
//! same arithmetic, transcribed into one Lua script per algorithm, and the conformance tests
//! replay random request sequences through both and require identical verdicts. Time is integer
//! microseconds since the Unix epoch (the store's clock): no floating-point drift, and every
//! value stays below 2^53, so Redis's Lua (whose numbers are doubles) computes exactly the same
//! integers.
//!
//! | algorithm | promise (property-tested) | memory per key |
//! |---|---|---|
//! | fixed window | at most `limit` per aligned window of `per` | one counter |
//! | sliding window log | at most `limit` in *any* window of `per` | up to `limit` timestamps (bounded) |
//! | sliding window counter | at most `limit` per aligned window; smooths the boundary by weighting the previous window | two counters |
//! | token bucket (GCRA) | at most `burst + t / (per / limit)` in any interval `t` | one timestamp |
//! | leaky bucket | the same bound as GCRA; as a shaper it delays instead of refusing, up to `max_delay` | one timestamp |

use std::collections::VecDeque;
use std::time::Duration;

/// Which algorithm a quota uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// Counter per aligned window.
    FixedWindow,
    /// Timestamps of admitted requests within the last window.
    SlidingWindowLog,
    /// Current and previous window counters, the previous weighted by its overlap.
    SlidingWindowCounter,
    /// Generic cell rate algorithm: a token bucket with `burst` capacity.
    TokenBucket,
    /// A leaky bucket; with `max_delay` it shapes (delays) rather than refuses.
    LeakyBucket,
}

/// Largest `limit` a sliding-window log may use (it stores one timestamp per admitted request).
pub const MAX_LOG_ENTRIES: u64 = 10_000;

/// A limit: `limit` units per `per`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quota {
    /// Units allowed per period.
    pub limit: u64,
    /// The period.
    pub per: Duration,
    /// The algorithm.
    pub algorithm: Algorithm,
    /// Bucket capacity for token and leaky buckets (default: `limit`).
    pub burst: Option<u64>,
    /// Leaky bucket as a shaper: the longest a request may be delayed instead of refused.
    pub max_delay: Option<Duration>,
}

/// Why a quota is unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum QuotaError {
    /// `limit` is zero.
    #[error("limit must be at least 1")]
    ZeroLimit,
    /// `per` is zero.
    #[error("the period must be positive")]
    ZeroPeriod,
    /// A sliding log would need too many entries per key.
    #[error(
        "a sliding_window_log limit of {0} needs too much memory per key (at most {MAX_LOG_ENTRIES}); use sliding_window_counter"
    )]
    LogTooLarge(u64),
    /// `burst` is zero.
    #[error("burst must be at least 1")]
    ZeroBurst,
    /// The period is longer than [`MAX_PERIOD`].
    #[error("the period must be at most 366 days")]
    PeriodTooLong,
    /// The state would need integers beyond 2^53 microseconds (not exact in the Redis store).
    #[error(
        "limit × period (or burst × interval) is too large to count exactly; use a shorter period or a smaller limit"
    )]
    TooLarge,
}

/// Longest period a quota may use.
pub const MAX_PERIOD: Duration = Duration::from_secs(366 * 24 * 3600);

/// Integers the algorithms produce stay below this (exact in a double, as Redis's Lua uses).
const EXACT: u128 = 1 << 53;

impl Quota {
    /// A quota with the defaults for `algorithm`.
    pub fn new(limit: u64, per: Duration, algorithm: Algorithm) -> Self {
        Quota {
            limit,
            per,
            algorithm,
            burst: None,
            max_delay: None,
        }
    }

    /// Checks the quota is usable.
    pub fn validate(&self) -> Result<(), QuotaError> {
        if self.limit == 0 {
            return Err(QuotaError::ZeroLimit);
        }
        if self.per.is_zero() {
            return Err(QuotaError::ZeroPeriod);
        }
        if self.algorithm == Algorithm::SlidingWindowLog && self.limit > MAX_LOG_ENTRIES {
            return Err(QuotaError::LogTooLarge(self.limit));
        }
        if self.burst == Some(0) {
            return Err(QuotaError::ZeroBurst);
        }
        if self.per > MAX_PERIOD {
            return Err(QuotaError::PeriodTooLong);
        }
        let period = u128::from(self.period_us());
        let product = match self.algorithm {
            // The previous window's count is weighted by a fraction of the period.
            Algorithm::SlidingWindowCounter => u128::from(self.limit) * period,
            Algorithm::TokenBucket | Algorithm::LeakyBucket => {
                u128::from(self.interval_us()) * u128::from(self.capacity())
            }
            Algorithm::FixedWindow | Algorithm::SlidingWindowLog => 0,
        };
        if product >= EXACT || u128::from(self.limit) >= EXACT {
            return Err(QuotaError::TooLarge);
        }
        Ok(())
    }

    /// The period in microseconds, at least 1.
    pub fn period_us(&self) -> u64 {
        u64::try_from(self.per.as_micros())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Microseconds per unit (GCRA emission interval), at least 1.
    fn interval_us(&self) -> u64 {
        (self.period_us() / self.limit.max(1)).max(1)
    }

    /// Bucket capacity of token and leaky buckets: `burst`, else `limit`.
    pub fn capacity(&self) -> u64 {
        self.burst.unwrap_or(self.limit).max(1)
    }

    /// The limit verdicts report (`RateLimit-Limit`): the capacity for buckets, else `limit`.
    pub fn reported_limit(&self) -> u64 {
        match self.algorithm {
            Algorithm::TokenBucket | Algorithm::LeakyBucket => self.capacity(),
            _ => self.limit,
        }
    }

    /// The longest shaping delay in microseconds, when this quota shapes (a leaky bucket with
    /// `max_delay`) rather than refuses.
    pub fn shaping_delay_us(&self) -> Option<u64> {
        match (self.algorithm, self.max_delay) {
            (Algorithm::LeakyBucket, Some(delay)) => {
                Some(u64::try_from(delay.as_micros()).unwrap_or(u64::MAX))
            }
            _ => None,
        }
    }
}

/// Per-key state. A new key starts from `State::default()`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum State {
    /// Nothing recorded yet.
    #[default]
    Empty,
    /// Fixed window.
    Fixed {
        /// Start of the current window.
        window: u64,
        /// Units admitted in it.
        count: u64,
    },
    /// Sliding log: times of admitted units, oldest first.
    Log(VecDeque<u64>),
    /// Sliding counter.
    Counter {
        /// Start of the current window.
        window: u64,
        /// Units admitted in it.
        current: u64,
        /// Units admitted in the previous window.
        previous: u64,
    },
    /// GCRA / leaky bucket: the theoretical arrival time of the next unit.
    Tat(u64),
}

/// The decision for one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Admitted (possibly after `delay`).
    pub allowed: bool,
    /// The quota's limit (for `RateLimit-Limit`).
    pub limit: u64,
    /// Units still available now (for `RateLimit-Remaining`).
    pub remaining: u64,
    /// Time until the quota is fully available again (for `RateLimit-Reset`).
    pub reset_after: Duration,
    /// When refused: how long to wait before this request could pass (`Retry-After`).
    pub retry_after: Option<Duration>,
    /// When shaped: how long to hold the request before forwarding it.
    pub delay: Option<Duration>,
}

/// How long a key's state still matters after a decision: stores may forget it after this (the
/// memory store's sweep, the Redis key's TTL). The sliding counter needs its window until the
/// end of the next one, where it still weighs as the previous window.
pub fn keep_for(quota: &Quota, verdict: &Verdict) -> Duration {
    match quota.algorithm {
        Algorithm::SlidingWindowCounter => quota.per.saturating_mul(2),
        _ => quota.per.max(verdict.reset_after),
    }
}

fn us(value: u64) -> Duration {
    Duration::from_micros(value)
}

/// Decides whether `cost` units may pass at `now` (microseconds), updating `state`.
pub fn decide(state: &mut State, now: u64, quota: &Quota, cost: u64) -> Verdict {
    match quota.algorithm {
        Algorithm::FixedWindow => fixed(state, now, quota, cost),
        Algorithm::SlidingWindowLog => log(state, now, quota, cost),
        Algorithm::SlidingWindowCounter => counter(state, now, quota, cost),
        Algorithm::TokenBucket | Algorithm::LeakyBucket => gcra(state, now, quota, cost),
    }
}

fn fixed(state: &mut State, now: u64, quota: &Quota, cost: u64) -> Verdict {
    let period = quota.period_us();
    let window = now - now % period;
    let count = match state {
        State::Fixed { window: w, count } if *w == window => *count,
        _ => 0,
    };
    let reset_after = us(window + period - now);
    let allowed = count.saturating_add(cost) <= quota.limit;
    let count = if allowed { count + cost } else { count };
    *state = State::Fixed { window, count };
    Verdict {
        allowed,
        limit: quota.limit,
        remaining: quota.limit.saturating_sub(count),
        reset_after,
        retry_after: (!allowed).then_some(reset_after),
        delay: None,
    }
}

fn log(state: &mut State, now: u64, quota: &Quota, cost: u64) -> Verdict {
    let period = quota.period_us();
    let mut entries = match std::mem::take(state) {
        State::Log(entries) => entries,
        _ => VecDeque::new(),
    };
    while entries.front().is_some_and(|&t| t + period <= now) {
        entries.pop_front();
    }
    let used = entries.len() as u64;
    let allowed = used.saturating_add(cost) <= quota.limit;
    if allowed {
        for _ in 0..cost {
            entries.push_back(now);
        }
    }
    let used = entries.len() as u64;
    // The request could pass once enough of the oldest entries age out.
    let needed = (used + cost).saturating_sub(quota.limit);
    let retry_after = (!allowed).then(|| {
        let index = usize::try_from(needed.saturating_sub(1)).unwrap_or(usize::MAX);
        entries
            .get(index)
            .map_or(us(period), |&t| us(t + period - now))
    });
    let reset_after = entries
        .back()
        .map_or(Duration::ZERO, |&t| us(t + period - now));
    *state = State::Log(entries);
    Verdict {
        allowed,
        limit: quota.limit,
        remaining: quota.limit.saturating_sub(used),
        reset_after,
        retry_after,
        delay: None,
    }
}

fn counter(state: &mut State, now: u64, quota: &Quota, cost: u64) -> Verdict {
    let period = quota.period_us();
    let window = now - now % period;
    let (current, previous) = match *state {
        State::Counter {
            window: w,
            current,
            previous,
        } if w == window => (current, previous),
        State::Counter {
            window: w, current, ..
        } if w + period == window => (0, current),
        _ => (0, 0),
    };
    // Weight the previous window by how much of it the sliding window still covers.
    let elapsed = now - window;
    let weighted = u128::from(previous) * u128::from(period - elapsed) / u128::from(period);
    let estimate = u64::try_from(weighted)
        .unwrap_or(u64::MAX)
        .saturating_add(current);
    let allowed =
        estimate.saturating_add(cost) <= quota.limit && current.saturating_add(cost) <= quota.limit;
    let current = if allowed { current + cost } else { current };
    *state = State::Counter {
        window,
        current,
        previous,
    };
    let reset_after = us(window + period - now);
    Verdict {
        allowed,
        limit: quota.limit,
        remaining: quota
            .limit
            .saturating_sub(estimate + if allowed { cost } else { 0 }),
        reset_after,
        retry_after: (!allowed).then_some(reset_after),
        delay: None,
    }
}

fn gcra(state: &mut State, now: u64, quota: &Quota, cost: u64) -> Verdict {
    let interval = quota.interval_us();
    let capacity = quota.capacity();
    // Tolerance: how far ahead of `now` the schedule may run (burst - 1 intervals).
    let tolerance = interval.saturating_mul(capacity - 1);
    let tat = match *state {
        State::Tat(tat) => tat.max(now),
        _ => now,
    };
    let increment = interval.saturating_mul(cost);
    let new_tat = tat.saturating_add(increment);
    // Earliest time the request conforms.
    let allow_at = new_tat.saturating_sub(interval).saturating_sub(tolerance);
    let (allowed, delay) = if allow_at <= now {
        (true, None)
    } else if quota
        .shaping_delay_us()
        .is_some_and(|max_delay| allow_at - now <= max_delay)
    {
        (true, Some(us(allow_at - now)))
    } else {
        (false, None)
    };
    let tat = if allowed { new_tat } else { tat };
    *state = State::Tat(tat);
    let backlog = tat.saturating_sub(now);
    let remaining = (tolerance + interval).saturating_sub(backlog) / interval;
    Verdict {
        allowed,
        limit: capacity,
        remaining: remaining.min(capacity),
        reset_after: us(backlog),
        retry_after: (!allowed).then(|| us(allow_at - now)),
        delay,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SEC: u64 = 1_000_000;

    fn run(quota: &Quota, times: &[u64]) -> Vec<u64> {
        let mut state = State::default();
        times
            .iter()
            .copied()
            .filter(|&t| decide(&mut state, t, quota, 1).allowed)
            .collect()
    }

    #[test]
    fn fixed_window_resets_at_the_boundary() {
        let quota = Quota::new(3, Duration::from_secs(1), Algorithm::FixedWindow);
        let admitted = run(&quota, &[0, 1, 2, 3, SEC - 1, SEC, SEC + 1]);
        assert_eq!(admitted, vec![0, 1, 2, SEC, SEC + 1]);
    }

    #[test]
    fn sliding_log_refuses_the_boundary_burst_fixed_allows() {
        let per = Duration::from_secs(1);
        let burst = [SEC - 2, SEC - 1, SEC, SEC + 1];
        assert_eq!(
            run(&Quota::new(2, per, Algorithm::FixedWindow), &burst).len(),
            4
        );
        assert_eq!(
            run(&Quota::new(2, per, Algorithm::SlidingWindowLog), &burst).len(),
            2
        );
    }

    #[test]
    fn gcra_allows_burst_then_the_rate() {
        let mut quota = Quota::new(10, Duration::from_secs(1), Algorithm::TokenBucket);
        quota.burst = Some(5);
        let mut state = State::default();
        let admitted = (0..10)
            .filter(|_| decide(&mut state, 0, &quota, 1).allowed)
            .count();
        assert_eq!(admitted, 5);
        let refused = decide(&mut state, 0, &quota, 1);
        assert_eq!(refused.retry_after, Some(Duration::from_millis(100)));
        assert!(decide(&mut state, SEC / 10, &quota, 1).allowed);
    }

    #[test]
    fn leaky_bucket_shapes_within_max_delay() {
        let mut quota = Quota::new(10, Duration::from_secs(1), Algorithm::LeakyBucket);
        quota.burst = Some(1);
        quota.max_delay = Some(Duration::from_millis(250));
        let mut state = State::default();
        let delays: Vec<Option<Duration>> = (0..5)
            .map(|_| decide(&mut state, 0, &quota, 1))
            .map(|v| {
                if v.allowed {
                    v.delay.or(Some(Duration::ZERO))
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(
            delays,
            vec![
                Some(Duration::ZERO),
                Some(Duration::from_millis(100)),
                Some(Duration::from_millis(200)),
                None,
                None
            ]
        );
    }

    #[test]
    fn quotas_are_validated() {
        assert_eq!(
            Quota::new(0, Duration::from_secs(1), Algorithm::FixedWindow).validate(),
            Err(QuotaError::ZeroLimit)
        );
        assert_eq!(
            Quota::new(1, Duration::ZERO, Algorithm::FixedWindow).validate(),
            Err(QuotaError::ZeroPeriod)
        );
        assert!(matches!(
            Quota::new(
                MAX_LOG_ENTRIES + 1,
                Duration::from_secs(1),
                Algorithm::SlidingWindowLog
            )
            .validate(),
            Err(QuotaError::LogTooLarge(_))
        ));
        let day = Duration::from_secs(24 * 3600);
        assert_eq!(
            Quota::new(1, MAX_PERIOD + day, Algorithm::FixedWindow).validate(),
            Err(QuotaError::PeriodTooLong)
        );
        assert_eq!(
            Quota::new(200_000, day, Algorithm::SlidingWindowCounter).validate(),
            Err(QuotaError::TooLarge)
        );
        assert_eq!(
            Quota::new(100_000, day, Algorithm::SlidingWindowCounter).validate(),
            Ok(())
        );
        let mut huge_burst = Quota::new(1, day, Algorithm::TokenBucket);
        huge_burst.burst = Some(1_000_000);
        assert_eq!(huge_burst.validate(), Err(QuotaError::TooLarge));
    }

    #[test]
    fn the_reported_limit_is_the_one_verdicts_carry() {
        for algorithm in [
            Algorithm::FixedWindow,
            Algorithm::SlidingWindowLog,
            Algorithm::SlidingWindowCounter,
            Algorithm::TokenBucket,
            Algorithm::LeakyBucket,
        ] {
            let mut quota = Quota::new(10, Duration::from_secs(1), algorithm);
            quota.burst = Some(4);
            let verdict = decide(&mut State::default(), SEC, &quota, 1);
            assert_eq!(quota.reported_limit(), verdict.limit, "{algorithm:?}");
        }
    }

    #[test]
    fn counter_state_is_kept_until_the_next_window_ends() {
        let quota = Quota::new(10, Duration::from_secs(1), Algorithm::SlidingWindowCounter);
        let mut state = State::default();
        let verdict = decide(&mut state, SEC / 2, &quota, 1);
        assert_eq!(keep_for(&quota, &verdict), Duration::from_secs(2));
        let fixed = Quota::new(10, Duration::from_secs(1), Algorithm::FixedWindow);
        assert_eq!(keep_for(&fixed, &verdict), Duration::from_secs(1));
    }

    /// Arrival times: sorted, within a few periods, with bursts at equal times.
    fn arrivals() -> impl Strategy<Value = Vec<u64>> {
        proptest::collection::vec(0u64..4 * SEC, 1..300).prop_map(|mut v| {
            v.sort_unstable();
            v
        })
    }

    proptest! {
        #[test]
        fn fixed_window_never_exceeds_a_window(times in arrivals(), limit in 1u64..20) {
            let quota = Quota::new(limit, Duration::from_secs(1), Algorithm::FixedWindow);
            let admitted = run(&quota, &times);
            for window in 0..4 {
                let inside = admitted.iter().filter(|&&t| t / SEC == window).count() as u64;
                prop_assert!(inside <= limit);
            }
        }

        #[test]
        fn sliding_log_never_exceeds_any_window(times in arrivals(), limit in 1u64..20) {
            let quota = Quota::new(limit, Duration::from_secs(1), Algorithm::SlidingWindowLog);
            let admitted = run(&quota, &times);
            for (i, &start) in admitted.iter().enumerate() {
                let inside = admitted[i..].iter().take_while(|&&t| t < start + SEC).count() as u64;
                prop_assert!(inside <= limit, "{inside} in the window from {start}");
            }
        }

        #[test]
        fn sliding_counter_never_exceeds_an_aligned_window(times in arrivals(), limit in 1u64..20) {
            let quota = Quota::new(limit, Duration::from_secs(1), Algorithm::SlidingWindowCounter);
            let admitted = run(&quota, &times);
            for window in 0..4 {
                let inside = admitted.iter().filter(|&&t| t / SEC == window).count() as u64;
                prop_assert!(inside <= limit);
            }
        }

        #[test]
        fn gcra_never_exceeds_burst_plus_rate(times in arrivals(), limit in 1u64..20, burst in 1u64..10) {
            for algorithm in [Algorithm::TokenBucket, Algorithm::LeakyBucket] {
                let mut quota = Quota::new(limit, Duration::from_secs(1), algorithm);
                quota.burst = Some(burst);
                let interval = SEC / limit;
                let admitted = run(&quota, &times);
                for (i, &start) in admitted.iter().enumerate() {
                    for (j, &end) in admitted.iter().enumerate().skip(i) {
                        let count = (j - i + 1) as u64;
                        prop_assert!(count <= burst + (end - start) / interval, "{count} in [{start}, {end}]");
                    }
                }
            }
        }
    }
}
