//! The budget store interface: reserve before forwarding, settle after. Implemented by the
//! rate-limit stores themselves ([`crate::ratelimit::MemoryStore`], and the Redis store with
//! one Lua script for each operation), so a budget lives where the rate limits do.

use futures_util::future::BoxFuture;

use super::algorithm::{Ask, Budget, Grant, Reservation};
use crate::ratelimit::StoreError;

/// Keeps per-key budget state; both operations are atomic per key.
pub trait BudgetStore: std::fmt::Debug + Send + Sync + 'static {
    /// Reserves for `ask` under `budget` in `key`'s current window.
    fn reserve<'a>(
        &'a self,
        key: &'a str,
        budget: &'a Budget,
        ask: Ask,
    ) -> BoxFuture<'a, Result<Reservation, StoreError>>;

    /// Replaces `grant`'s hold by `actual` weighted tokens.
    fn settle<'a>(
        &'a self,
        key: &'a str,
        budget: &'a Budget,
        grant: Grant,
        actual: u64,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
}
