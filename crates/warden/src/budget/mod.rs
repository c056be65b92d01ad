//! Token budgets for LLM traffic (DESIGN.md §2 step 15): a conservative count of the prompt,
//! an atomic reservation of its upper bound plus the output limit before the request is
//! forwarded, and a settlement to the upstream's reported usage afterwards, over the same
//! stores as rate limits (in-process, or Redis for a fleet).

pub mod algorithm;
pub mod count;
pub mod layer;
pub mod store;
pub mod stream;
pub mod usage;

pub use algorithm::{Ask, Budget, Grant, Reservation};
pub use count::Counter;
pub use layer::{BudgetLimit, BudgetSpent, TokenBudgetLayer};
pub use store::BudgetStore;
