//! The one build step from a compiled [`Config`] to the live objects the gateway runs on: the
//! authenticator chain (JWT providers with their key sources, API keys over SQLite), the
//! rate-limit store, the background tasks that keep them fresh, and the readiness checks they
//! add. `server.rs` only binds, serves and shuts down; the benchmarks build the same way.
//!
//! Everything fallible that spawns nothing runs first (authenticators, stores); then the tasks
//! start, and `startup: wait` providers are awaited. A failure aborts what was already spawned.
//!
//! A reload builds the new configuration on the old runtime ([`Runtime::rebuild`]): each part
//! whose definition (its configuration and the files it names, by digest) is unchanged is kept
//! with its state — the verified-token cache, remote signing keys (no new fetch), the API-key
//! cache, rate-limit and budget counters, the upstream connection pool — and every other part
//! is built afresh, so a changed or removed provider's cached tokens are never accepted again.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use warden::audit::sink::{FileSink, Overflow};
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
use crate::config::definitions::Digest;
use crate::config::rate_limits::{StoreConfig, StoreFailure};
use crate::proxy::UpstreamPool;
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

/// A background task, aborted when the last runtime that uses it is dropped (a reload that
/// keeps a part keeps its task; one that replaces it ends it).
#[derive(Debug)]
struct Task(JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The live objects built from a configuration.
pub struct Runtime {
    /// What every route stack shares: authenticators, rate-limit store, clock.
    pub shared: Shared,
    /// The upstream connection pool.
    pub pool: UpstreamPool,
    /// Readiness checks (remote signing keys loaded).
    pub ready_checks: Vec<ReadyCheck>,
    /// The parts a reload may keep, each with the digest of its definition.
    parts: Parts,
}

struct Parts {
    jwt: Option<(Digest, JwtAuthenticator)>,
    remote: Vec<RemotePart>,
    api_keys: Option<(Digest, ApiKeyAuthenticator, Arc<Task>)>,
    stores: (Digest, Arc<MemoryStore>, Arc<Task>),
    pool: Digest,
}

/// A remote key source and its refresher.
#[derive(Clone)]
struct RemotePart {
    provider: String,
    digest: Digest,
    keys: RemoteKeys,
    task: Arc<Task>,
}

/// What a runtime kept from the one before it (reported by a reload).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Kept {
    /// The JWT authenticator with its verified-token cache.
    pub token_cache: bool,
    /// Remote signing-key sources kept (no new fetch), by provider.
    pub key_sources: Vec<String>,
    /// The API-key authenticator with its cache.
    pub api_keys: bool,
    /// The rate-limit and budget store with its counters.
    pub counters: bool,
    /// The upstream connection pool.
    pub upstream_pool: bool,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("shared", &self.shared)
            .field("ready_checks", &self.ready_checks.len())
            .finish_non_exhaustive()
    }
}

/// A remote key source with its startup policy.
struct Remote {
    provider: String,
    keys: RemoteKeys,
    startup: Startup,
    timeout: Duration,
    /// Kept from the previous runtime (already fetched, already refreshed).
    kept: Option<Arc<Task>>,
    digest: Digest,
}

/// The definitions each part is built from: a part whose digest is unchanged is kept.
const JWT_PARTS: &[&str] = &["auth.jwt", "auth.token_sources", "auth.token_cache"];
const API_KEY_PARTS: &[&str] = &["auth.api_keys"];
const STORE_PARTS: &[&str] = &[
    "rate_limits.store",
    "rate_limits.on_store_error",
    "rate_limits.redis",
];
const POOL_PARTS: &[&str] = &[
    "upstream.url",
    "upstream.tls",
    "upstream.max_connections",
    "server.timeouts.upstream_connect",
];

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
        let built = Self::build_on(config, clock, audit.clone(), None).await;
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
        built.map(|(runtime, _)| runtime)
    }

    /// Builds `config` for a reload: the audit sink and clock of `previous`, and each part of
    /// `previous` whose definition is unchanged (with its state: caches, counters, pool).
    pub async fn rebuild(
        config: &Config,
        previous: &Runtime,
    ) -> Result<(Runtime, Kept), BuildError> {
        let shared = &previous.shared;
        Self::build_on(
            config,
            shared.clock.clone(),
            shared.audit.clone(),
            Some(previous),
        )
        .await
    }

    async fn build_on(
        config: &Config,
        clock: Arc<dyn Clock>,
        audit: Option<Arc<FileSink>>,
        previous: Option<&Runtime>,
    ) -> Result<(Runtime, Kept), BuildError> {
        let defs = &config.definitions;
        let mut kept = Kept::default();
        let events = audit.clone().map(|sink| sink as Arc<dyn AuditSink>);
        let before = previous.map(|p| &p.parts);

        let jwt_digest = defs.digest(JWT_PARTS);
        let (jwt, remote) = match before.and_then(|p| p.jwt.as_ref()) {
            Some((digest, jwt)) if *digest == jwt_digest => {
                kept.token_cache = true;
                let remote = before.map(|p| p.remote.clone()).unwrap_or_default();
                let remote = remote
                    .into_iter()
                    .map(|part| Remote {
                        provider: part.provider,
                        keys: part.keys,
                        startup: Startup::NotReady,
                        timeout: Duration::ZERO,
                        kept: Some(part.task),
                        digest: part.digest,
                    })
                    .collect();
                (Some(jwt.clone()), remote)
            }
            _ => {
                let reusable = before.map(|p| p.remote.as_slice()).unwrap_or_default();
                jwt_authenticator(config, &clock, reusable)?
            }
        };
        if let Some(sink) = &events {
            for source in remote.iter().filter(|s| s.kept.is_none()) {
                source.keys.audit_to(sink.clone());
            }
        }
        kept.key_sources = remote
            .iter()
            .filter(|s| s.kept.is_some())
            .map(|s| s.provider.clone())
            .collect();

        let api_digest = defs.digest(API_KEY_PARTS);
        let api_keys = match before.and_then(|p| p.api_keys.as_ref()) {
            Some((digest, keys, task)) if *digest == api_digest => {
                kept.api_keys = true;
                Some((keys.clone(), task.clone()))
            }
            // A task dropped with a build that fails later is aborted by its handle.
            _ => api_key_authenticator(&config.auth, &clock)?.map(|(keys, every)| {
                let task = Arc::new(Task(spawn_usage_flusher(keys.clone(), every)));
                (keys, task)
            }),
        };

        let store_digest = defs.digest(STORE_PARTS);
        let (store, budgets, memory, sweeper) = match previous {
            Some(p) if p.parts.stores.0 == store_digest => {
                kept.counters = true;
                (
                    p.shared.store.clone(),
                    p.shared.budgets.clone(),
                    p.parts.stores.1.clone(),
                    Some(p.parts.stores.2.clone()),
                )
            }
            _ => {
                let memory = Arc::new(MemoryStore::new(clock.clone()));
                let (store, budgets) = rate_limit_store(config, memory.clone(), events).await?;
                (store, budgets, memory, None)
            }
        };
        let pool_digest = defs.digest(POOL_PARTS);
        let pool = match previous {
            Some(p) if p.parts.pool == pool_digest => {
                kept.upstream_pool = true;
                p.pool.clone()
            }
            _ => UpstreamPool::new(config),
        };
        if !config.routes.iter().all(|r| r.token_budget.is_none()) {
            // The tokenizers' tables load in tens of milliseconds: not on the first request.
            tokio::task::spawn_blocking(|| {
                warden::budget::Counter::O200k.preload();
                warden::budget::Counter::Cl100k.preload();
            });
        }

        // Tasks start only now: everything fallible that spawns nothing ran first. A task not
        // kept by the runtime being built is aborted as its handle drops.
        let mut remote_parts = Vec::new();
        for source in remote {
            let task = match source.kept {
                Some(task) => task,
                None => {
                    let task = Arc::new(Task(source.keys.spawn_refresh()));
                    if source.startup == Startup::Wait
                        && !source.keys.wait_ready(source.timeout).await
                    {
                        return Err(BuildError::KeysUnavailable(
                            source.provider.clone(),
                            source.timeout,
                        ));
                    }
                    task
                }
            };
            remote_parts.push(RemotePart {
                provider: source.provider,
                digest: source.digest,
                keys: source.keys,
                task,
            });
        }
        let mut chain: Vec<Arc<dyn Authenticator>> = Vec::new();
        let mut ready_checks: Vec<ReadyCheck> = Vec::new();
        if let Some(sink) = audit.as_ref().filter(|s| s.overflow() == Overflow::Block) {
            // A trail that cannot be written holds its queue, and requests wait once it is
            // full: not ready, so traffic moves elsewhere before that.
            let sink = sink.clone();
            ready_checks.push(Box::new(move || sink.writable()));
        }
        if let Some(certificates) = &config.auth.client_cert {
            chain.push(Arc::new(certificates.clone()));
        }
        if let Some(jwt) = &jwt {
            chain.push(Arc::new(jwt.clone()));
            let jwt = jwt.clone();
            ready_checks.push(Box::new(move || jwt.is_ready()));
        }
        let api_keys = api_keys.map(|(keys, task)| {
            chain.push(Arc::new(keys.clone()));
            (api_digest, keys, task)
        });
        let sweeper = sweeper.unwrap_or_else(|| Arc::new(Task(spawn_sweeper(memory.clone()))));
        let runtime = Runtime {
            shared: Shared {
                chain,
                store,
                budgets,
                clock,
                audit,
            },
            pool,
            ready_checks,
            parts: Parts {
                jwt: jwt.map(|jwt| (jwt_digest, jwt)),
                remote: remote_parts,
                api_keys,
                stores: (store_digest, memory, sweeper),
                pool: pool_digest,
            },
        };
        Ok((runtime, kept))
    }

    /// Ends the background tasks (at shutdown; a reload drops the ones it does not keep).
    pub fn stop_tasks(&self) {
        let parts = &self.parts;
        let tasks = parts
            .remote
            .iter()
            .map(|part| &part.task)
            .chain(parts.api_keys.iter().map(|(_, _, task)| task))
            .chain([&parts.stores.2]);
        for task in tasks {
            task.0.abort();
        }
    }

    /// Writes the API keys' pending last-use times (before a reload drops this runtime's
    /// authenticator, so no use goes unrecorded).
    pub async fn flush_usage(&self) {
        if let Some((_, keys, _)) = &self.parts.api_keys
            && let Err(error) = keys.flush_usage().await
        {
            tracing::warn!(error = %error, "could not record API key usage");
        }
    }
}

/// The JWT authenticator, if any provider is configured, and the remote key sources it reads
/// (created, not yet fetched, unless `reusable` holds the same provider with the same
/// definition: then that source, its keys and its refresher are kept).
fn jwt_authenticator(
    config: &Config,
    clock: &Arc<dyn Clock>,
    reusable: &[RemotePart],
) -> Result<(Option<JwtAuthenticator>, Vec<Remote>), BuildError> {
    let auth = &config.auth;
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
                let digest = config
                    .definitions
                    .digest_item("auth.jwt", "name", name)
                    .unwrap_or_default();
                let same = reusable
                    .iter()
                    .find(|part| &part.provider == name && part.digest == digest);
                let (source, kept) = match same {
                    Some(part) => (part.keys.clone(), Some(part.task.clone())),
                    None => (
                        RemoteKeys::new(
                            name.clone(),
                            location.clone(),
                            settings.clone(),
                            clock.clone(),
                        )
                        .map_err(|e| BuildError::Remote(name.clone(), e))?,
                        None,
                    ),
                };
                remote.push(Remote {
                    provider: name.clone(),
                    keys: source.clone(),
                    startup: *startup,
                    timeout: *startup_timeout,
                    kept,
                    digest,
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
