//! The rate-limit store interface: one method, the algorithm is data (DESIGN.md §3).

use futures_util::future::BoxFuture;

use super::algorithm::{Quota, Verdict};

/// Why a store could not decide.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend (Redis) failed or timed out.
    #[error("rate-limit store: {0}")]
    Backend(String),
    /// The circuit breaker is open: the backend was failing, so it was not asked.
    #[error("rate-limit store: circuit open (the store was failing)")]
    CircuitOpen,
}

/// Keeps per-key state and decides.
pub trait RateLimitStore: std::fmt::Debug + Send + Sync + 'static {
    /// Records `cost` units against `key` under `quota` and returns the decision.
    fn hit<'a>(
        &'a self,
        key: &'a str,
        quota: &'a Quota,
        cost: u64,
    ) -> BoxFuture<'a, Result<Verdict, StoreError>>;
}
