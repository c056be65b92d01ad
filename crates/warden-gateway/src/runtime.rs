//! The one build step from a compiled [`Config`] to the live objects the gateway runs on: the
//! authenticator chain (JWT providers with their key sources, API keys over SQLite), the
//! rate-limit store, the background tasks that keep them fresh, and the readiness checks they
//! add. `server.rs` only binds, serves and shuts down; the benchmarks build the same way.
//!
//! Everything fallible that spawns nothing runs first (authenticators, stores); then the tasks
//! start, and `startup: wait` providers are awaited. A failure aborts what was already spawned.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use warden::audit::sink::FileSink;
use warden::audit::{Action, AuditEvent, AuditSink, Outcome as AuditOutcome};
use warden::authn::Authenticator;
use warden::authn::api_key::ApiKeyAuthenticator;
use warden::authn::api_key_sqlite::SqliteKeyStore;
use warden::authn::jwks::RemoteKeys;
use warden::authn::jwt::{JwtAuthenticator, JwtConfigError, JwtProvider};
use warden::authn::keys::{KeySource, StaticKeys};
use warden::budget::BudgetStore;
use warden::clock::Clock;
use warden::ratelimit::fallback::LocalFallback;
use warden::ratelimit::memory::MemoryStore;
use warden::ratelimit::redis::RedisStore;
use warden::ratelimit::store::RateLimitStore;

use crate::config::Config;
use crate::config::auth::{AuthConfig, KeySpec, Startup};
use crate::config::rate_limits::{StoreConfig, StoreFailure};
use crate::stack::Shared;

/// Why the configuration could not be brought to life.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// Provider set inconsistency.
    #[error(transparent)]
    Jwt(#[from] JwtConfigError),
    /// A remote key source could not be created.
    #[error("provider {0}: {1}")]
    Remote(String, warden::authn::jwks::FetchError),
    /// The API-key store could not be opened or migrated.
    #[error("API key store: {0}")]
    KeyStore(#[from] warden::authn::api_key::StoreError),
    /// A provider configured `startup: wait` got no keys in time.
    #[error("provider {0}: no signing keys after {1:?} (key server unreachable?)")]
    KeysUnavailable(String, Duration),
    /// The rate-limit store could not be set up.
    #[error("{0}")]
    RateLimitStore(String),
    /// The audit file could not be opened.
    #[error("audit sink: {0}")]
    Audit(std::io::Error),
}

impl BuildError {
    /// The `event.reason` of the `config-rejected` event (closed vocabulary).
    pub fn code(&self) -> &'static str {
        match self {
            BuildError::Jwt(_) => "jwt_providers",
            BuildError::Remote(..) => "jwks_source",
            BuildError::KeyStore(_) => "api_key_store",
            BuildError::KeysUnavailable(..) => "keys_unavailable",
            BuildError::RateLimitStore(_) => "rate_limit_store",
            BuildError::Audit(_) => "audit_sink",
        }
    }
}

/// A readiness check `/readyz` runs besides the gateway's own.
pub type ReadyCheck = Box<dyn Fn() -> bool + Send + Sync>;

/// The live objects built from a configuration.
pub struct Runtime {
    /// What every route stack shares: authenticators, rate-limit store, clock.
    pub shared: Shared,
    /// Background tasks (key refreshers, the API-key usage flusher, the memory-store sweeper),
    /// to abort at shutdown.
    pub tasks: Vec<JoinHandle<()>>,
    /// Readiness checks (remote signing keys loaded).
    pub ready_checks: Vec<ReadyCheck>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("shared", &self.shared)
            .field("tasks", &self.tasks.len())
            .field("ready_checks", &self.ready_checks.len())
            .finish()
    }
}

/// A remote key source with its startup policy.
struct Remote {
    provider: String,
    keys: RemoteKeys,
    startup: Startup,
    timeout: Duration,
}

impl Runtime {
    /// Builds everything `config` needs at run time, on `clock`.
    pub async fn build(config: &Config, clock: Arc<dyn Clock>) -> Result<Runtime, BuildError> {
        // The trail first: the key sources and the store record their failures in it.
        let audit = match &config.audit {
            Some(audit) => Some(Arc::new(
                FileSink::start(audit.clone()).map_err(BuildError::Audit)?,
            )),
            None => None,
        };
        let built = Self::build_on(config, clock, audit.clone()).await;
        if let (Err(error), Some(sink)) = (&built, &audit) {
            // The configuration compiled but cannot run: the trail says so, and why.
            let mut event = AuditEvent::new(
                Action::ConfigRejected,
                AuditOutcome::Failure,
                Some(error.code()),
            );
            event
                .set("warden.config.sha256", config.fingerprint.as_str())
                .set("error.message", error.to_string());
            sink.record(event);
            sink.close();
        }
        built
    }

    async fn build_on(
        config: &Config,
        clock: Arc<dyn Clock>,
        audit: Option<Arc<FileSink>>,
    ) -> Result<Runtime, BuildError> {
        let events = audit.clone().map(|sink| sink as Arc<dyn AuditSink>);
        let (jwt, remote) = jwt_authenticator(&config.auth, &clock)?;
        if let Some(sink) = &events {
            for source in &remote {
                source.keys.audit_to(sink.clone());
            }
        }
        let api_keys = api_key_authenticator(&config.auth, &clock)?;
        let memory = Arc::new(MemoryStore::new(clock.clone()));
        let (store, budgets) = rate_limit_store(config, memory.clone(), events).await?;
        if !config.routes.iter().all(|r| r.token_budget.is_none()) {
            // The tokenizers' tables load in tens of milliseconds: not on the first request.
            tokio::task::spawn_blocking(|| {
                warden::budget::Counter::O200k.preload();
                warden::budget::Counter::Cl100k.preload();
            });
        }

        let mut tasks = Vec::new();
        for source in &remote {
            tasks.push(source.keys.spawn_refresh());
            if source.startup == Startup::Wait && !source.keys.wait_ready(source.timeout).await {
                for task in &tasks {
                    task.abort();
                }
                return Err(BuildError::KeysUnavailable(
                    source.provider.clone(),
                    source.timeout,
                ));
            }
        }
        let mut chain: Vec<Arc<dyn Authenticator>> = Vec::new();
        let mut ready_checks: Vec<ReadyCheck> = Vec::new();
        if let Some(certificates) = &config.auth.client_cert {
            chain.push(Arc::new(certificates.clone()));
        }
        if let Some(jwt) = jwt {
            chain.push(Arc::new(jwt.clone()));
            ready_checks.push(Box::new(move || jwt.is_ready()));
        }
        if let Some((keys, touch_interval)) = api_keys {
            chain.push(Arc::new(keys.clone()));
            tasks.push(spawn_usage_flusher(keys, touch_interval));
        }
        tasks.push(spawn_sweeper(memory));
        Ok(Runtime {
            shared: Shared {
                chain,
                store,
                budgets,
                clock,
                audit,
            },
            tasks,
            ready_checks,
        })
    }
}

/// The JWT authenticator, if any provider is configured, and the remote key sources it reads
/// (created, not yet fetched).
fn jwt_authenticator(
    auth: &AuthConfig,
    clock: &Arc<dyn Clock>,
) -> Result<(Option<JwtAuthenticator>, Vec<Remote>), BuildError> {
    let mut providers = Vec::new();
    let mut remote = Vec::new();
    for p in &auth.providers {
        let keys: Arc<dyn KeySource> = match &p.keys {
            KeySpec::Static(set) => Arc::new(StaticKeys::new(set.clone())),
            KeySpec::Remote {
                location,
                settings,
                startup,
                startup_timeout,
            } => {
                let name = &p.settings.name;
                let source = RemoteKeys::new(
                    name.clone(),
                    location.clone(),
                    settings.clone(),
                    clock.clone(),
                )
                .map_err(|e| BuildError::Remote(name.clone(), e))?;
                remote.push(Remote {
                    provider: name.clone(),
                    keys: source.clone(),
                    startup: *startup,
                    timeout: *startup_timeout,
                });
                Arc::new(source)
            }
        };
        providers.push(JwtProvider {
            settings: p.settings.clone(),
            keys,
        });
    }
    if providers.is_empty() {
        return Ok((None, remote));
    }
    let jwt = JwtAuthenticator::new(
        providers,
        auth.sources.clone(),
        clock.clone(),
        auth.token_cache,
    )?;
    Ok((Some(jwt), remote))
}

/// The API-key authenticator and its usage-flush interval, if configured. A store that cannot be
/// opened or migrated refuses the start.
fn api_key_authenticator(
    auth: &AuthConfig,
    clock: &Arc<dyn Clock>,
) -> Result<Option<(ApiKeyAuthenticator, Duration)>, BuildError> {
    let Some(keys) = &auth.api_keys else {
        return Ok(None);
    };
    let store = SqliteKeyStore::open_with(&keys.store_path, keys.busy_timeout)?;
    let authenticator = ApiKeyAuthenticator::new(
        keys.settings.clone(),
        keys.pepper.clone(),
        Arc::new(store),
        clock.clone(),
    );
    Ok(Some((authenticator, keys.touch_interval)))
}

/// The configured rate-limit store, and the same store for token budgets. A Redis server that
/// does not answer at start is not fatal: decisions follow `on_store_error` until it does (the
/// connection retries by itself). Budgets never fall back to the local store: a reservation
/// must be settled where it was made (`local` fails budgets closed).
async fn rate_limit_store(
    config: &Config,
    memory: Arc<MemoryStore>,
    audit: Option<Arc<dyn AuditSink>>,
) -> Result<(Arc<dyn RateLimitStore>, Arc<dyn BudgetStore>), BuildError> {
    let StoreConfig::Redis(settings) = &config.rate_limits.store else {
        return Ok((memory.clone(), memory));
    };
    if settings.is_plaintext_remote() {
        tracing::warn!(
            "rate_limits.store uses redis:// to a remote host: traffic and any password travel unencrypted; use rediss://"
        );
    }
    let redis = Arc::new(
        RedisStore::connect(settings).map_err(|e| BuildError::RateLimitStore(e.to_string()))?,
    );
    if let Some(sink) = audit {
        redis.audit_to(sink);
    }
    match redis.ping().await {
        Ok(()) => tracing::info!(endpoint = redis.endpoint(), "rate-limit store connected"),
        Err(error) => tracing::error!(
            endpoint = redis.endpoint(),
            %error,
            on_store_error = ?config.rate_limits.on_error,
            "rate-limit store unreachable at start; decisions follow on_store_error until it answers"
        ),
    }
    let limits: Arc<dyn RateLimitStore> = match config.rate_limits.on_error {
        StoreFailure::Local => Arc::new(LocalFallback::new(redis.clone(), memory)),
        StoreFailure::FailClosed | StoreFailure::FailOpen => redis.clone(),
    };
    Ok((limits, redis))
}

/// Writes API-key last-use times in batches.
fn spawn_usage_flusher(keys: ApiKeyAuthenticator, every: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            if let Err(error) = keys.flush_usage().await {
                tracing::warn!(error = %error, "could not record API key usage");
            }
        }
    })
}

/// Drops idle rate-limit keys every 10 seconds (memory stays bounded by active keys).
fn spawn_sweeper(store: Arc<MemoryStore>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(10)).await;
            let active = store.sweep();
            metrics::gauge!("warden_ratelimit_active_keys").set(active as f64);
        }
    })
}
