//! The arithmetic of a token budget, as pure functions over one key's state (the stores hold
//! the state; the Redis store runs a transcription of these functions in Lua).
//!
//! A budget is `limit` tokens per fixed window of `period`, aligned to the Unix epoch (a budget
//! "per hour" starts afresh on the hour, as provider quotas do). Within a window, what is
//! *held* — settled usage plus open reservations — never exceeds the limit:
//! - [`reserve`] admits a request only if its prompt's upper bound and at least one output
//!   token fit in what is left, and grants as many output tokens as asked, or as fit: that
//!   grant is what the gateway writes into the forwarded body as the output limit;
//! - [`settle`] replaces a reservation by what the request really cost, once known. A
//!   reservation of a window that has ended is dropped: the new window starts empty, so a
//!   reservation lost with a crashed gateway is held until the window's end at most.
//!
//! Costs are weighted: `prompt_weight × prompt + output_weight × output` (1 and 1 by default).

use std::time::Duration;

/// One budget: `limit` weighted tokens per `period`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Weighted tokens per window.
    pub limit: u64,
    /// The window length.
    pub period: Duration,
    /// Weight of a prompt token.
    pub prompt_weight: u64,
    /// Weight of an output token (0: output is not counted).
    pub output_weight: u64,
}

impl Budget {
    /// `limit` tokens per `period`, prompt and output counted alike.
    pub fn new(limit: u64, period: Duration) -> Budget {
        Budget {
            limit,
            period,
            prompt_weight: 1,
            output_weight: 1,
        }
    }

    /// The window length in microseconds (at least 1).
    pub fn period_us(&self) -> u64 {
        u64::try_from(self.period.as_micros())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// The weighted cost of `prompt` and `output` tokens.
    pub fn cost(&self, prompt: u64, output: u64) -> u64 {
        prompt
            .saturating_mul(self.prompt_weight)
            .saturating_add(output.saturating_mul(self.output_weight))
    }
}

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ask {
    /// An upper bound of its prompt's tokens.
    pub prompt: u64,
    /// The output limit it names (`None`: as many as fit).
    pub max_output: Option<u64>,
}

/// One key's state: the window it belongs to and what is held in it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct State {
    /// Start of the window (microseconds since the epoch).
    pub window: u64,
    /// Weighted tokens held: settled usage plus open reservations.
    pub held: u64,
}

/// A granted reservation: what to settle later.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The window it was taken from.
    pub window: u64,
    /// The weighted tokens held for it.
    pub held: u64,
    /// Output tokens granted: the output limit to forward.
    pub output: u64,
    /// What is left in the window after it.
    pub remaining: u64,
    /// Until the window ends.
    pub reset_after: Duration,
}

/// The answer to a reservation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reservation {
    /// Admitted.
    Granted(Grant),
    /// Refused: the prompt and one output token do not fit before the window ends.
    Refused {
        /// What is left in the window.
        remaining: u64,
        /// Until the window ends (when it has room again, unless the prompt alone exceeds
        /// the limit: then never, and `fits_ever` is false).
        retry_after: Duration,
        /// Whether the request could fit in an empty window.
        fits_ever: bool,
    },
}

fn window_of(now_us: u64, period_us: u64) -> u64 {
    now_us - now_us % period_us
}

fn until_end(now_us: u64, window: u64, period_us: u64) -> Duration {
    Duration::from_micros((window + period_us).saturating_sub(now_us))
}

/// Reserves for `ask` at `now_us`.
pub fn reserve(state: &mut State, now_us: u64, budget: &Budget, ask: Ask) -> Reservation {
    let period = budget.period_us();
    let window = window_of(now_us, period);
    if state.window != window {
        *state = State { window, held: 0 };
    }
    let remaining = budget.limit.saturating_sub(state.held);
    let reset_after = until_end(now_us, window, period);
    let prompt_cost = ask.prompt.saturating_mul(budget.prompt_weight);
    // One output token at least: a request that may not answer at all is no use.
    let wanted_first = ask.max_output.unwrap_or(u64::MAX).min(1);
    let least = budget.cost(ask.prompt, wanted_first);
    if least > remaining {
        return Reservation::Refused {
            remaining,
            retry_after: reset_after,
            fits_ever: least <= budget.limit,
        };
    }
    let room = remaining - prompt_cost;
    let output = match budget.output_weight {
        0 => ask.max_output.unwrap_or(u64::MAX),
        weight => ask.max_output.unwrap_or(u64::MAX).min(room / weight),
    };
    let held = budget.cost(ask.prompt, output).min(remaining);
    state.held += held;
    Reservation::Granted(Grant {
        window,
        held,
        output,
        remaining: remaining - held,
        reset_after,
    })
}

/// Replaces a grant's hold (`held`, taken from `grant_window`) by `actual` weighted tokens. A
/// grant from an ended window changes nothing.
pub fn settle(state: &mut State, grant_window: u64, held: u64, actual: u64) {
    if state.window == grant_window {
        state.held = state.held.saturating_sub(held).saturating_add(actual);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);
    /// An hour boundary (the epoch is one, and so is every multiple of 3.6e9 µs).
    const T0: u64 = 500_000 * 3_600_000_000;

    fn ask(prompt: u64, max_output: Option<u64>) -> Ask {
        Ask { prompt, max_output }
    }

    fn granted(r: Reservation) -> Grant {
        match r {
            Reservation::Granted(g) => g,
            other => panic!("refused: {other:?}"),
        }
    }

    #[test]
    fn output_is_clamped_to_what_is_left_and_the_prompt_must_fit() {
        let budget = Budget::new(1000, HOUR);
        let mut state = State::default();
        let g = granted(reserve(&mut state, T0, &budget, ask(100, Some(300))));
        assert_eq!((g.output, g.held, g.remaining), (300, 400, 600));
        // No output limit named: everything that is left.
        let g2 = granted(reserve(&mut state, T0 + 1, &budget, ask(100, None)));
        assert_eq!((g2.output, g2.held, g2.remaining), (500, 600, 0));
        // Nothing left for one output token: refused until the window ends.
        let refused = reserve(&mut state, T0 + 2, &budget, ask(1, None));
        assert_eq!(
            refused,
            Reservation::Refused {
                remaining: 0,
                retry_after: HOUR - Duration::from_micros(2),
                fits_ever: true
            }
        );
        // Settling gives back what was not used.
        settle(&mut state, g2.window, g2.held, 150);
        assert_eq!(state.held, 550);
        let g3 = granted(reserve(&mut state, T0 + 3, &budget, ask(50, Some(1000))));
        assert_eq!(g3.output, 400);
    }

    #[test]
    fn a_prompt_larger_than_the_limit_never_fits() {
        let budget = Budget::new(100, HOUR);
        let mut state = State::default();
        match reserve(&mut state, T0, &budget, ask(100, None)) {
            Reservation::Refused { fits_ever, .. } => assert!(!fits_ever),
            other => panic!("{other:?}"),
        }
        assert_eq!(state.held, 0);
    }

    #[test]
    fn a_new_window_starts_empty_and_late_settlements_change_nothing() {
        let budget = Budget::new(100, HOUR);
        let mut state = State::default();
        let g = granted(reserve(&mut state, T0, &budget, ask(10, None)));
        assert_eq!(g.held, 100);
        let next = T0 + 3_600_000_000;
        let g2 = granted(reserve(&mut state, next, &budget, ask(10, Some(5))));
        assert_eq!(g2.remaining, 85);
        // The crashed or slow request of the last window settles into nothing.
        settle(&mut state, g.window, g.held, 0);
        assert_eq!(state.held, 15);
    }

    #[test]
    fn weights_scale_costs_and_an_unweighted_output_is_not_clamped() {
        let budget = Budget {
            limit: 1000,
            period: HOUR,
            prompt_weight: 1,
            output_weight: 4,
        };
        let mut state = State::default();
        let g = granted(reserve(&mut state, T0, &budget, ask(200, None)));
        assert_eq!((g.output, g.held), (200, 1000));
        let prompt_only = Budget {
            output_weight: 0,
            ..Budget::new(1000, HOUR)
        };
        let mut state = State::default();
        let g = granted(reserve(&mut state, T0, &prompt_only, ask(200, Some(7))));
        assert_eq!((g.output, g.held), (7, 200));
    }
}
