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
    Demo {
        /// Serve HTTPS with a self-signed certificate generated for the run (the commands
        /// pass it to curl with --cacert).
        #[arg(long)]
        tls: bool,
    },
    /// Manage API keys in the configured store (keys are shown once, at creation).
    Keys {
        /// The configuration naming the store and pepper (before or after the subcommand:
        /// `warden keys --config F list` and `warden keys list --config F` both work).
        #[arg(short, long, env = "WARDEN_CONFIG", global = true)]
        config: Option<PathBuf>,
        /// What to do.
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Audit trail tools.
    Audit {
        /// What to do.
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Probe a running gateway's admin listener: exit 0 when `GET URL` answers 200 within two
    /// seconds, 1 otherwise (a container health check that needs no shell or curl).
    Health {
        /// What to ask (`/healthz` for liveness, `/readyz` for readiness).
        #[arg(long, default_value = "http://127.0.0.1:9901/healthz")]
        url: String,
    },
    /// Ask a running gateway to read its configuration file again (`POST /reload` on its admin
    /// listener, from this host): prints the result, exits 0 when the configuration in service
    /// is the file's (reloaded or unchanged), 1 when the reload was refused.
    Reload {
        /// The admin listener's reload endpoint.
        #[arg(long, default_value = "http://127.0.0.1:9901/reload")]
        url: String,
    },
    /// Development tokens and keys (refuses production configurations).
    Token {
        /// What to do.
        #[command(subcommand)]
        command: Box<TokenCommand>,
    },
}

/// `warden keys …`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key and print it (once).
    Create {
        /// Human name.
        #[arg(long)]
        name: String,
        /// Tenant the key acts for.
        #[arg(long)]
        tenant: Option<String>,
        /// Roles, comma-separated.
        #[arg(long, value_delimiter = ',')]
        roles: Vec<String>,
        /// Scopes, comma-separated.
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
        /// Lifetime, e.g. 90d (default: no expiry).
        #[arg(long)]
        expires: Option<String>,
    },
    /// List keys (never their secrets).
    List {
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key now.
    Revoke {
        /// Key id (`key_…`).
        id: String,
    },
    /// Replace a key; the old one keeps working for the grace period.
    Rotate {
        /// Key id (`key_…`).
        id: String,
        /// How long the old key stays valid (default 24h).
        #[arg(long, default_value = "24h")]
        grace: String,
    },
}

/// `warden audit …`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check audit files (in order: a rotated file before the one that continues it); exits 1
    /// at the first modified, deleted, reordered, inserted or cut record or forged checkpoint.
    Verify {
        /// The files, oldest first.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The checkpoint key's public half (base64, as `warden audit keygen` prints it):
        /// every checkpoint must verify and the trail must end with one.
        #[arg(long)]
        public_key: Option<String>,
    },
    /// Show the last events of an audit file, one line each, filtered.
    Tail {
        /// The audit file.
        file: PathBuf,
        /// How many events.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: usize,
        /// Only this `event.outcome` (success, failure, unknown).
        #[arg(long)]
        outcome: Option<String>,
        /// Only this `event.action` (request, authentication-failure, authorization-denial, …).
        #[arg(long)]
        action: Option<String>,
        /// Only this subject (`user.id`).
        #[arg(long)]
        subject: Option<String>,
        /// Only this tenant (`organization.id`).
        #[arg(long)]
        tenant: Option<String>,
        /// Only this route (`warden.route`).
        #[arg(long)]
        route: Option<String>,
        /// Only events since a time: a duration back from now (15m, 2h) or an RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Print the JSON records instead of readable lines.
        #[arg(long)]
        json: bool,
        /// Keep printing events as they are appended.
        #[arg(short, long)]
        follow: bool,
    },
    /// Generate an Ed25519 key for signed checkpoints (PKCS#8 PEM, mode 0600) and print its
    /// public half.
    Keygen {
        /// Where to write the private key.
        #[arg(long)]
        out: PathBuf,
    },
}

/// `warden token …`
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Sign a token for a provider of a development configuration.
    Mint(Box<MintArgs>),
    /// Generate a signing key (PKCS#8 PEM) and its public JWKS.
    Keygen {
        /// ES256 (default), ES384, RS256, PS256 or EdDSA.
        #[arg(long, default_value = "ES256")]
        alg: String,
        /// Key id.
        #[arg(long, default_value = "dev-1")]
        kid: String,
        /// Directory for `<kid>.pem` (mode 0600) and `jwks.json`.
        #[arg(long)]
        out: PathBuf,
    },
}

/// Arguments of `warden token mint`.
#[derive(Debug, clap::Args)]
pub struct MintArgs {
    /// The configuration whose provider the token is for (must not be production).
    #[arg(short, long)]
    pub config: PathBuf,
    /// Provider name (default: the only one).
    #[arg(long)]
    pub provider: Option<String>,
    /// PKCS#8 PEM private key (not needed for providers with an HMAC secret).
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Key id to put in the header.
    #[arg(long)]
    pub kid: Option<String>,
    /// Algorithm (default: the provider's first).
    #[arg(long)]
    pub alg: Option<String>,
    /// Subject.
    #[arg(long, default_value = "dev-user")]
    pub sub: String,
    /// Roles, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub roles: Vec<String>,
    /// Scopes, space-separated.
    #[arg(long)]
    pub scopes: Option<String>,
    /// Tenant (written to the provider's tenant claim).
    #[arg(long)]
    pub tenant: Option<String>,
    /// Authentication context class (`acr`), e.g. mfa.
    #[arg(long)]
    pub acr: Option<String>,
    /// Extra claims as NAME=JSON (repeatable), e.g. --claim 'groups=["a"]'.
    #[arg(long = "claim")]
    pub claims: Vec<String>,
    /// Lifetime (default 1h).
    #[arg(long, default_value = "1h")]
    pub ttl: String,
    /// Mint a token that expired one lifetime ago (for testing rejections).
    #[arg(long)]
    pub expired: bool,
}
