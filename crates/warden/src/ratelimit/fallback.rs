//! `on_store_error: local`: when the shared store cannot decide, decide in this process.
//!
//! Each instance then enforces the quota on its own, so a fleet of N admits up to N times the
//! quota until the shared store is back — the trade an operator makes for availability without
//! failing open. Fallback decisions are counted (`warden_ratelimit_local_fallback_total`); the
//! outage itself is logged by the primary store's circuit breaker.

use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::algorithm::{Quota, Verdict};
use super::memory::MemoryStore;
use super::store::{RateLimitStore, StoreError};

/// A shared store backed by an in-process one.
#[derive(Debug)]
pub struct LocalFallback {
    primary: Arc<dyn RateLimitStore>,
    local: Arc<MemoryStore>,
}

impl LocalFallback {
    /// Asks `primary`, and `local` when `primary` fails.
    pub fn new(primary: Arc<dyn RateLimitStore>, local: Arc<MemoryStore>) -> Self {
        LocalFallback { primary, local }
    }
}

impl RateLimitStore for LocalFallback {
    fn hit<'a>(
        &'a self,
        key: &'a str,
        quota: &'a Quota,
        cost: u64,
    ) -> BoxFuture<'a, Result<Verdict, StoreError>> {
        Box::pin(async move {
            match self.primary.hit(key, quota, cost).await {
                Ok(verdict) => Ok(verdict),
                Err(error) => {
                    tracing::debug!(target: "warden::ratelimit", %error, "deciding locally");
                    metrics::counter!("warden_ratelimit_local_fallback_total").increment(1);
                    Ok(self.local.decide(key, quota, cost))
                }
            }
        })
    }
}
