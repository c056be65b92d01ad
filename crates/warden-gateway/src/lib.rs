//! # warden-gateway
//!
//! The `warden` binary's machinery: configuration loading and compilation, the route table, the
//! proxy, the listeners and the operator commands. The security layers themselves live in the
//! `warden` library crate; [`stack`] is the one place that orders them.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = warden_gateway::config::load(std::path::Path::new("warden.yaml"))?;
//! let gateway = warden_gateway::server::Gateway::start(config).await?;
//! println!("listening on {}", gateway.addr);
//! gateway.shutdown().await;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod certificates;
pub mod cli;
pub mod config;
pub mod demo;
pub mod logbuf;
pub mod observe;
pub mod proxy;
pub mod reload;
pub mod route;
pub mod runtime;
pub mod server;
pub mod stack;
pub mod stamps;
pub mod tail;
pub mod token;
