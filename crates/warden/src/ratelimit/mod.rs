//! Rate limiting (DESIGN.md §2 steps 9 and 13): the algorithms as pure functions, the store
//! interface every backend implements, and the in-process store. The Redis store and the layer
//! that builds keys and sets `RateLimit` headers build on these.

pub mod algorithm;
pub mod layer;
pub mod memory;
pub mod store;
