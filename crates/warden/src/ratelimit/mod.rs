//! Rate limiting (DESIGN.md §2 steps 9 and 13): the algorithms as pure functions, the store
//! interface every backend implements, the in-process and Redis stores (with a circuit breaker
//! and a local fallback for the latter), and the layer that builds keys and sets `RateLimit`
//! headers.

pub mod algorithm;
pub mod breaker;
pub mod fallback;
pub mod layer;
pub mod memory;
#[cfg(feature = "redis")]
pub mod redis;
pub mod store;

pub use algorithm::{Algorithm, Quota, Verdict};
pub use fallback::LocalFallback;
pub use layer::{KeyPart, Limit, OnStoreError, RateLimit, RateLimitLayer};
pub use memory::MemoryStore;
#[cfg(feature = "redis")]
pub use redis::{RedisSettings, RedisStore};
pub use store::{RateLimitStore, StoreError};
