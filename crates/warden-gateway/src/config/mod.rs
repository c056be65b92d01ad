//! Configuration: the user's contract (DESIGN.md §4).
//!
//! `load` reads the file with environment overrides and secret references into each section's
//! raw types; `compile` runs each section's compile function into the typed [`Config`] the
//! gateway runs on, reporting every error at once with its path. One module per section owns its
//! raw serde types, its compiled types and its compile function, on the shared `toolkit`.
//! Dependencies point one way: sections use the toolkit (and `routes` the sections it refers
//! to), `load` and `compile` use the sections. `warden check` runs exactly this code.

pub mod audit;
pub mod auth;
pub mod authz;
pub mod body;
pub mod compile;
pub mod cors;
pub mod definitions;
pub mod guards;
pub mod headers;
pub mod load;
pub mod rate_limits;
pub mod routes;
pub mod server;
pub mod tls;
pub mod token_budgets;
pub mod toolkit;
pub mod upstream;
pub mod upstream_tls;

use std::path::Path;

pub use compile::{Config, compile_parsed};
pub use cors::CorsConfig;
pub use routes::RouteConfig;
pub use server::{Environment, Limits, Server, Timeouts};
pub use toolkit::{ConfigError, ConfigErrors};
pub use upstream::Upstream;

/// Loads and compiles the configuration file at `path` with the process environment; a
/// reload reads the same file again the same way.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let mut config = load_with(path, &load::ProcessEnv, &[])?;
    config.source = Some(path.to_path_buf());
    Ok(config)
}

/// Loads and compiles with an explicit environment and dotted-key overrides.
pub fn load_with(
    path: &Path,
    env: &dyn load::EnvVars,
    overrides: &[(&str, serde_json::Value)],
) -> Result<Config, ConfigErrors> {
    compile_parsed(load::load_raw(path, env, overrides)?)
}
