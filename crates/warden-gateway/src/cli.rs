//! Command-line interface (clap derive). `main.rs` runs the commands.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Warden: a security gateway for AI-agent and other HTTP APIs.
#[derive(Debug, Parser)]
#[command(name = "warden", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway with a configuration file.
    Serve {
        /// YAML or TOML configuration file.
        #[arg(short, long, env = "WARDEN_CONFIG")]
        config: PathBuf,
    },
    /// Validate a configuration file exactly as `serve` would load it; exits non-zero on error.
    Check {
        /// YAML or TOML configuration file.
        config: PathBuf,
    },
    /// Start a demo upstream and the gateway in front of it, and print commands to try.
    Demo,
}
