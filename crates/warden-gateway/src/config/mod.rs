//! Configuration: the user's contract (DESIGN.md §4).
//!
//! `raw` is the file as written, `load` reads it with environment overrides and secret
//! references, `compile` turns it into the typed [`Config`] the gateway runs on, reporting every
//! error at once with its path. `warden check` runs exactly this code.

pub mod auth;
pub mod compile;
pub mod load;
pub mod ratelimit;
pub mod raw;

use std::fmt;
use std::path::Path;

pub use compile::{
    Config, CorsConfig, Environment, Limits, RouteConfig, Server, Timeouts, Upstream,
};

/// One configuration problem, with the path of the field it concerns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path (`routes[2].body.max_bytes`), or a file name for whole-file problems.
    pub path: String,
    /// What is wrong and, where it helps, what is expected.
    pub message: String,
}

impl ConfigError {
    /// A problem at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem found in a configuration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// A single problem.
    pub fn one(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigErrors(vec![ConfigError::new(path, message)])
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

/// Loads and compiles the configuration file at `path` with the process environment.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    load_with(path, &load::ProcessEnv, &[])
}

/// Loads and compiles with an explicit environment and dotted-key overrides.
pub fn load_with(
    path: &Path,
    env: &dyn load::Environment,
    overrides: &[(&str, serde_json::Value)],
) -> Result<Config, ConfigErrors> {
    compile::compile_parsed(load::load_raw(path, env, overrides)?)
}
