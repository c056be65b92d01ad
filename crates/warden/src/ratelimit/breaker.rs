//! A circuit breaker for the shared rate-limit store.
//!
//! When Redis is down every decision would otherwise wait for a connect or response timeout and
//! add load to a server that is trying to come back. After `failures` consecutive errors the
//! breaker opens: calls fail at once (and `on_store_error` decides) for `open_for`. Then one call
//! is let through as a probe; success closes the breaker, failure opens it again for twice as
//! long (up to `max_open_for`). A probe whose caller went away does not wedge it: a probe older
//! than `open_for` is replaced by the next caller. Every transition is logged and counted; the
//! audit trail records when the circuit opens after working and when it closes again.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::audit::{Action, AuditEvent, AuditSink, Outcome};

/// Breaker thresholds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Consecutive failures that open the breaker.
    pub failures: u32,
    /// How long it stays open before the first probe.
    pub open_for: Duration,
    /// Ceiling for the doubling open time.
    pub max_open_for: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            failures: 5,
            open_for: Duration::from_secs(1),
            max_open_for: Duration::from_secs(30),
        }
    }
}

/// The breaker's position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Position {
    /// Calls go through.
    Closed,
    /// Calls fail at once.
    Open,
    /// One probe is in flight.
    HalfOpen,
}

impl Position {
    fn label(self) -> &'static str {
        match self {
            Position::Closed => "closed",
            Position::Open => "open",
            Position::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant, open_for: Duration },
    HalfOpen { since: Instant, open_for: Duration },
}

/// A circuit breaker (see the module docs). The lock is held only to read or flip the state.
#[derive(Debug)]
pub struct Breaker {
    settings: BreakerSettings,
    state: Mutex<State>,
    name: &'static str,
    audit: OnceLock<Arc<dyn AuditSink>>,
}

impl Breaker {
    /// A closed breaker; `name` labels its logs and metrics.
    pub fn new(name: &'static str, settings: BreakerSettings) -> Self {
        metrics::gauge!("warden_ratelimit_breaker_open", "store" => name).set(0.0);
        Breaker {
            settings: BreakerSettings {
                failures: settings.failures.max(1),
                ..settings
            },
            state: Mutex::new(State::Closed { failures: 0 }),
            name,
            audit: OnceLock::new(),
        }
    }

    /// Records `store-circuit-opened` (from closed) and `store-circuit-closed` in `sink`. Set
    /// once; later calls are ignored.
    pub fn audit_to(&self, sink: Arc<dyn AuditSink>) {
        let _ = self.audit.set(sink);
    }

    /// The current position.
    pub fn position(&self) -> Position {
        match *self.lock() {
            State::Closed { .. } => Position::Closed,
            State::Open { .. } => Position::Open,
            State::HalfOpen { .. } => Position::HalfOpen,
        }
    }

    /// Whether a call may go to the backend now.
    pub fn admit(&self) -> bool {
        self.admit_at(Instant::now())
    }

    fn admit_at(&self, now: Instant) -> bool {
        let mut state = self.lock();
        match *state {
            State::Closed { .. } => true,
            State::Open { until, open_for } if now >= until => {
                *state = State::HalfOpen {
                    since: now,
                    open_for,
                };
                drop(state);
                self.transition(Position::HalfOpen, None);
                true
            }
            State::Open { .. } => false,
            // The probe's caller may have gone away without reporting; let another probe in.
            State::HalfOpen { since, open_for } if now.duration_since(since) >= open_for => {
                *state = State::HalfOpen {
                    since: now,
                    open_for,
                };
                true
            }
            State::HalfOpen { .. } => false,
        }
    }

    /// Reports a successful call.
    pub fn success(&self) {
        let mut state = self.lock();
        let was_half_open = matches!(*state, State::HalfOpen { .. });
        *state = State::Closed { failures: 0 };
        drop(state);
        if was_half_open {
            self.transition(Position::Closed, None);
            self.record(Action::StoreCircuitClosed, None, Duration::ZERO);
        }
    }

    /// Reports a failed call.
    pub fn failure(&self) {
        self.failure_at(Instant::now());
    }

    fn failure_at(&self, now: Instant) {
        let mut state = self.lock();
        let was_closed = matches!(*state, State::Closed { .. });
        let open_for = match *state {
            State::Closed { failures } if failures + 1 >= self.settings.failures => {
                self.settings.open_for
            }
            State::Closed { failures } => {
                *state = State::Closed {
                    failures: failures + 1,
                };
                return;
            }
            State::HalfOpen { open_for, .. } => open_for
                .saturating_mul(2)
                .min(self.settings.max_open_for.max(self.settings.open_for)),
            // Calls admitted before it opened are still reporting.
            State::Open { .. } => return,
        };
        *state = State::Open {
            until: now + open_for,
            open_for,
        };
        drop(state);
        self.transition(Position::Open, Some(open_for));
        if was_closed {
            self.record(
                Action::StoreCircuitOpened,
                Some("store_unavailable"),
                open_for,
            );
        }
    }

    fn record(&self, action: Action, reason: Option<&'static str>, open_for: Duration) {
        let Some(sink) = self.audit.get() else {
            return;
        };
        let mut event = AuditEvent::new(action, Outcome::of(reason), reason);
        event.set("warden.store.name", self.name);
        if reason.is_some() {
            event.set(
                "warden.store.open_for_ms",
                u64::try_from(open_for.as_millis()).unwrap_or(u64::MAX),
            );
        }
        sink.record(event);
    }

    fn transition(&self, to: Position, open_for: Option<Duration>) {
        let store = self.name;
        match to {
            Position::Open => tracing::error!(
                target: "warden::ratelimit",
                store,
                open_for_ms = open_for.map_or(0, |d| d.as_millis() as u64),
                "rate-limit store circuit opened: failing fast"
            ),
            Position::HalfOpen => tracing::warn!(
                target: "warden::ratelimit",
                store,
                "rate-limit store circuit half-open: probing"
            ),
            Position::Closed => tracing::warn!(
                target: "warden::ratelimit",
                store,
                "rate-limit store circuit closed: store recovered"
            ),
        }
        metrics::counter!("warden_ratelimit_breaker_transitions_total", "store" => store, "to" => to.label())
            .increment(1);
        metrics::gauge!("warden_ratelimit_breaker_open", "store" => store)
            .set(if to == Position::Closed { 0.0 } else { 1.0 });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(
            "test",
            BreakerSettings {
                failures: 3,
                open_for: Duration::from_secs(1),
                max_open_for: Duration::from_secs(4),
            },
        )
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let b = breaker();
        let t = Instant::now();
        b.failure_at(t);
        b.failure_at(t);
        b.success();
        b.failure_at(t);
        b.failure_at(t);
        assert_eq!(b.position(), Position::Closed);
        assert!(b.admit_at(t));
        b.failure_at(t);
        assert_eq!(b.position(), Position::Open);
        assert!(!b.admit_at(t + secs(0.9)), "open: fail fast");
    }

    #[test]
    fn probes_after_the_open_time_and_closes_on_success() {
        let b = breaker();
        let t = Instant::now();
        for _ in 0..3 {
            b.failure_at(t);
        }
        assert!(!b.admit_at(t + secs(0.5)));
        assert!(
            b.admit_at(t + secs(1.0)),
            "the first caller after the open time probes"
        );
        assert_eq!(b.position(), Position::HalfOpen);
        assert!(!b.admit_at(t + secs(1.1)), "one probe at a time");
        b.success();
        assert_eq!(b.position(), Position::Closed);
        assert!(b.admit_at(t + secs(1.2)));
    }

    #[test]
    fn a_failed_probe_reopens_for_longer_and_a_lost_probe_is_replaced() {
        let b = breaker();
        let t = Instant::now();
        for _ in 0..3 {
            b.failure_at(t);
        }
        assert!(b.admit_at(t + secs(1.0)));
        b.failure_at(t + secs(1.0));
        assert_eq!(b.position(), Position::Open);
        assert!(
            !b.admit_at(t + secs(2.5)),
            "open twice as long after a failed probe"
        );
        assert!(b.admit_at(t + secs(3.0)), "probe");
        assert!(!b.admit_at(t + secs(4.0)));
        // The probe's caller never reported; after the open time another caller may probe.
        assert!(b.admit_at(t + secs(5.0)));
        // Doubling stops at the ceiling.
        for k in 0..5 {
            b.failure_at(t + secs(5.0 + f64::from(k) * 10.0));
            assert!(b.admit_at(t + secs(5.0 + f64::from(k) * 10.0 + 4.0)));
        }
    }
}
