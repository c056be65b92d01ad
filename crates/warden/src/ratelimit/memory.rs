//! The in-process store: sharded maps of per-key state (rate limits and token budgets), idle
//! keys swept.
//!
//! Keys are hashed to 64 bits with a per-store random SipHash key (so clients cannot aim
//! collisions at someone else's counter) and spread over shards, each behind its own mutex held
//! only for the arithmetic of one decision (never across an await). Idle keys — those whose
//! state no longer constrains anything — are removed by [`MemoryStore::sweep`], which the gateway
//! runs periodically; memory is therefore bounded by the keys active within a period.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};
use std::time::UNIX_EPOCH;

use futures_util::future::BoxFuture;

use super::algorithm::{Quota, State, Verdict, decide, keep_for};
use super::store::{RateLimitStore, StoreError};
use crate::budget::{self, Ask, Budget, BudgetStore, Grant, Reservation};
use crate::clock::Clock;

const SHARDS: usize = 64;

#[derive(Debug)]
struct Entry {
    state: State,
    /// When the state stops mattering (microseconds): after this the key may be dropped.
    idle_at: u64,
}

/// Rate-limit and budget state in this process.
#[derive(Debug)]
pub struct MemoryStore {
    shards: Vec<Mutex<HashMap<u64, Entry>>>,
    /// Budget windows, by key hash (a key's entry is dropped once its window has ended).
    budgets: Vec<Mutex<HashMap<u64, (budget::algorithm::State, u64)>>>,
    hasher: RandomState,
    clock: Arc<dyn Clock>,
}

impl MemoryStore {
    /// An empty store reading time from `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        MemoryStore {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            budgets: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            clock,
        }
    }

    fn now(&self) -> u64 {
        self.clock
            .now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }

    /// Decides synchronously (the lock is held only for the arithmetic).
    pub fn decide(&self, key: &str, quota: &Quota, cost: u64) -> Verdict {
        let hash = self.hasher.hash_one(key);
        let now = self.now();
        let shard = &self.shards[(hash as usize) % SHARDS];
        let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
        let entry = map.entry(hash).or_insert_with(|| Entry {
            state: State::default(),
            idle_at: now,
        });
        let verdict = decide(&mut entry.state, now, quota, cost);
        let keep = u64::try_from(keep_for(quota, &verdict).as_micros()).unwrap_or(u64::MAX);
        entry.idle_at = now.saturating_add(keep);
        verdict
    }

    fn budget_shard(
        &self,
        hash: u64,
    ) -> std::sync::MutexGuard<'_, HashMap<u64, (budget::algorithm::State, u64)>> {
        self.budgets[(hash as usize) % SHARDS]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves synchronously (the lock is held only for the arithmetic).
    pub fn reserve_now(&self, key: &str, budget: &Budget, ask: Ask) -> Reservation {
        let (hash, now) = (self.hasher.hash_one(key), self.now());
        let mut map = self.budget_shard(hash);
        let (state, ends) = map.entry(hash).or_default();
        let reservation = budget::algorithm::reserve(state, now, budget, ask);
        *ends = state.window.saturating_add(budget.period_us());
        reservation
    }

    /// Settles synchronously.
    pub fn settle_now(&self, key: &str, grant: Grant, actual: u64) {
        let hash = self.hasher.hash_one(key);
        let mut map = self.budget_shard(hash);
        // A swept key's window has ended: nothing to give back.
        if let Some((state, _)) = map.get_mut(&hash) {
            budget::algorithm::settle(state, grant.window, grant.held, actual);
        }
    }

    /// Drops keys whose state no longer matters; returns how many remain.
    pub fn sweep(&self) -> usize {
        let now = self.now();
        let limits: usize = self
            .shards
            .iter()
            .map(|shard| {
                let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
                map.retain(|_, entry| entry.idle_at > now);
                map.len()
            })
            .sum();
        let budgets: usize = self
            .budgets
            .iter()
            .map(|shard| {
                let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
                map.retain(|_, (_, ends)| *ends > now);
                map.len()
            })
            .sum();
        limits + budgets
    }

    /// Keys currently held.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl RateLimitStore for MemoryStore {
    fn hit<'a>(
        &'a self,
        key: &'a str,
        quota: &'a Quota,
        cost: u64,
    ) -> BoxFuture<'a, Result<Verdict, StoreError>> {
        Box::pin(std::future::ready(Ok(self.decide(key, quota, cost))))
    }
}

impl BudgetStore for MemoryStore {
    fn reserve<'a>(
        &'a self,
        key: &'a str,
        budget: &'a Budget,
        ask: Ask,
    ) -> BoxFuture<'a, Result<Reservation, StoreError>> {
        Box::pin(std::future::ready(Ok(self.reserve_now(key, budget, ask))))
    }

    fn settle<'a>(
        &'a self,
        key: &'a str,
        _budget: &'a Budget,
        grant: Grant,
        actual: u64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.settle_now(key, grant, actual);
        Box::pin(std::future::ready(Ok(())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::ratelimit::algorithm::Algorithm;
    use std::time::Duration;

    #[tokio::test]
    async fn keys_are_independent_and_idle_keys_are_swept() {
        let clock = Arc::new(ManualClock::starting_now());
        let store = MemoryStore::new(clock.clone());
        let quota = Quota::new(2, Duration::from_secs(1), Algorithm::SlidingWindowLog);
        for key in ["alice", "bob"] {
            assert!(store.hit(key, &quota, 1).await.expect("hit").allowed);
            assert!(store.hit(key, &quota, 1).await.expect("hit").allowed);
            let third = store.hit(key, &quota, 1).await.expect("hit");
            assert!(!third.allowed);
            assert!(third.retry_after.is_some());
        }
        assert_eq!(store.len(), 2);
        assert_eq!(store.sweep(), 2, "active keys stay");
        clock.advance(Duration::from_secs(2));
        assert_eq!(store.sweep(), 0, "idle keys go");
        assert!(store.hit("alice", &quota, 1).await.expect("hit").allowed);
    }

    #[test]
    fn concurrent_hits_never_over_admit() {
        let store = Arc::new(MemoryStore::new(Arc::new(ManualClock::starting_now())));
        let quota = Quota::new(100, Duration::from_secs(60), Algorithm::FixedWindow);
        let admitted: usize = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let store = store.clone();
                    let quota = quota.clone();
                    scope.spawn(move || {
                        (0..100)
                            .filter(|_| store.decide("shared", &quota, 1).allowed)
                            .count()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("thread")).sum()
        });
        assert_eq!(admitted, 100);
    }
}
