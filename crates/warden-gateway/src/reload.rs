//! Hot reload of the whole configuration, outside the request path (DESIGN.md §4).
//!
//! A [`Generation`] is one configuration in service: the compiled [`Config`], the live objects
//! built from it ([`Runtime`]) and the service stack over them. The gateway holds the current
//! one in an `ArcSwap`; every request takes the generation current when it arrives, so a swap
//! is atomic for new requests while in-flight ones finish on the stack they started on, and the
//! listeners are never rebound. Connection settings (limits, timeouts) apply to connections
//! accepted after the swap.
//!
//! A reload — SIGHUP, a change of the configuration file or of a file it names (checked every
//! `server.watch_interval`), `warden reload` or `POST /reload` on the admin listener — reads the
//! file again and compiles it exactly as `warden check` does. It is refused, with every problem
//! logged at its path, a `config-rejected` audit event and a metric, when the file does not
//! compile, when it changes what only a restart can change (listener addresses, TLS on or off,
//! the connection caps, the audit trail), or when its runtime cannot be built; the running
//! configuration then stays. Otherwise the new runtime keeps every part of the old one whose
//! definition is unchanged (see [`Runtime::rebuild`]), `server.tls` is put in service if it
//! changed, and a `config-reloaded` event names the sections that changed. A file saved with
//! the same content is no change: nothing is swapped. One reload runs at a time.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use tokio::sync::{Mutex, watch};
use warden::audit::{Action, AuditEvent, AuditSink as _, Outcome};

use crate::admin::Readiness;
use crate::certificates::{Certificates, Trigger};
use crate::config::{self, Config, ConfigError, ConfigErrors};
use crate::observe::names;
use crate::proxy::Proxy;
use crate::runtime::{BuildError, Kept, Runtime};
use crate::stack::{self, GatewayService, StackError};
use crate::stamps::{Stamp, stamps};

/// One configuration in service.
#[derive(Debug)]
pub struct Generation {
    /// The compiled configuration.
    pub config: Arc<Config>,
    /// The live objects built from it.
    pub runtime: Runtime,
    /// The service stack every request of this generation runs through.
    pub service: GatewayService,
    /// How connections accepted under it are served (limits, timeouts).
    pub builder: Arc<auto::Builder<TokioExecutor>>,
}

impl Generation {
    /// Assembles the stack for `config` over `runtime` (its upstream pool included); `scheme`
    /// is the listener's.
    pub fn new(
        config: Config,
        runtime: Runtime,
        scheme: &'static str,
    ) -> Result<Generation, StackError> {
        let proxy = Proxy::with_pool(&config, scheme, runtime.pool.clone());
        let service = stack::build(&config, &runtime.shared, proxy)?;
        let builder = Arc::new(crate::server::connection_builder(&config));
        Ok(Generation {
            config: Arc::new(config),
            runtime,
            service,
            builder,
        })
    }
}

/// The generation in service, swapped whole by a reload.
pub type Live = Arc<ArcSwap<Generation>>;

/// Why a reload was refused (the running configuration stays).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// The gateway was started from a compiled configuration, not a file.
    #[error("the gateway was started without a configuration file: there is nothing to read again")]
    NoSource,
    /// The file does not compile, or changes what only a restart can.
    #[error("{0}")]
    Invalid(ConfigErrors),
    /// The new configuration compiled but its runtime could not be built.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The route table could not be assembled.
    #[error(transparent)]
    Stack(#[from] StackError),
}

impl ReloadError {
    /// The `event.reason` of the `config-rejected` event (closed vocabulary).
    pub fn code(&self) -> &'static str {
        match self {
            ReloadError::NoSource => "no_config_file",
            ReloadError::Invalid(_) => "invalid_config",
            ReloadError::Build(error) => error.code(),
            ReloadError::Stack(_) => "route_table",
        }
    }

    /// Each problem with its configuration path (`runtime` for a build failure).
    pub fn problems(&self) -> Vec<ConfigError> {
        match self {
            ReloadError::Invalid(errors) => errors.0.clone(),
            other => vec![ConfigError::new("runtime", other.to_string())],
        }
    }
}

/// What a reload did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reloaded {
    /// The fingerprint of the configuration now in service.
    pub sha256: String,
    /// The top-level sections that changed; empty when nothing did (nothing was swapped).
    pub changed: Vec<String>,
    /// The state kept from the previous generation.
    pub kept: Kept,
}

/// Reloads a running gateway ([`crate::server::Gateway::reloader`]).
#[derive(Clone, Debug)]
pub struct Reloader {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    live: Live,
    certificates: Option<Arc<Certificates>>,
    readiness: Arc<Readiness>,
    scheme: &'static str,
    source: Option<PathBuf>,
    /// One reload at a time; holds the watched files' state when they were last read.
    seen: Mutex<Vec<Option<Stamp>>>,
}

impl Reloader {
    /// A reloader for the generation in `live`, reading `live`'s configuration file again.
    pub fn new(
        live: Live,
        certificates: Option<Arc<Certificates>>,
        readiness: Arc<Readiness>,
        scheme: &'static str,
    ) -> Reloader {
        let current = live.load_full();
        let source = current.config.source.clone();
        let seen = stamps(&watched(&current.config));
        Reloader {
            inner: Arc::new(Inner {
                live,
                certificates,
                readiness,
                scheme,
                source,
                seen: Mutex::new(seen),
            }),
        }
    }

    /// Whether there is a configuration file to read again.
    pub fn has_source(&self) -> bool {
        self.inner.source.is_some()
    }

    /// The certificates in service, when the listener terminates TLS.
    pub fn certificates(&self) -> Option<Arc<Certificates>> {
        self.inner.certificates.clone()
    }

    /// Reads `server.tls`'s files again and serves them to new handshakes if they are valid
    /// (the certificates alone, for a gateway without a configuration file); `None` without
    /// TLS.
    pub async fn reload_certificates(&self) -> Option<Result<usize, ConfigErrors>> {
        let certificates = self.inner.certificates.clone()?;
        let reloaded =
            tokio::task::spawn_blocking(move || certificates.reload(Trigger::Signal)).await;
        Some(
            reloaded
                .unwrap_or_else(|_| Err(ConfigErrors::one("server.tls", "the reload task failed"))),
        )
    }

    /// Reads the configuration file again and puts it in service if it is valid; on failure
    /// every problem is logged with its path and audited, and the running configuration stays.
    pub async fn reload(&self, trigger: Trigger) -> Result<Reloaded, ReloadError> {
        let mut seen = self.inner.seen.lock().await;
        self.reload_locked(&mut seen, trigger).await
    }

    /// Reloads if the configuration file or a file it names changed since it was last read;
    /// `None` when nothing changed.
    pub async fn reload_if_changed(&self) -> Option<Result<Reloaded, ReloadError>> {
        let mut seen = self.inner.seen.lock().await;
        let files = watched(&self.inner.live.load().config);
        // `stat` can block on a slow file system: off the async workers.
        let now = tokio::task::spawn_blocking(move || stamps(&files))
            .await
            .ok()?;
        if *seen == now {
            return None;
        }
        Some(self.reload_locked(&mut seen, Trigger::FileChange).await)
    }

    async fn reload_locked(
        &self,
        seen: &mut Vec<Option<Stamp>>,
        trigger: Trigger,
    ) -> Result<Reloaded, ReloadError> {
        let current = self.inner.live.load_full();
        let result = self.try_reload(seen, &current, trigger).await;
        match &result {
            Ok(reloaded) if reloaded.changed.is_empty() => {
                tracing::info!(
                    trigger = trigger.as_str(),
                    config_sha256 = %reloaded.sha256,
                    "configuration reload: nothing changed"
                );
                metrics::counter!(names::CONFIG_RELOADS, "result" => "unchanged").increment(1);
            }
            Ok(reloaded) => {
                tracing::info!(
                    trigger = trigger.as_str(),
                    config_sha256 = %reloaded.sha256,
                    changed = %reloaded.changed.join(","),
                    kept = %kept_list(&reloaded.kept),
                    "configuration reloaded: new requests use it"
                );
                metrics::counter!(names::CONFIG_RELOADS, "result" => "success").increment(1);
                metrics::gauge!(names::CONFIG_LAST_RELOAD_OK).set(1.0);
                metrics::gauge!(names::CONFIG_LOADED_AT).set(unix_now());
                self.record(Action::ConfigReloaded, trigger, None, |event| {
                    event
                        .set("warden.config.sha256", reloaded.sha256.as_str())
                        .set(
                            "warden.config.previous_sha256",
                            current.config.fingerprint.as_str(),
                        )
                        .set("warden.config.changed", reloaded.changed.join(","))
                        .set("warden.config.kept", kept_list(&reloaded.kept));
                });
            }
            Err(error) => {
                for problem in error.problems() {
                    tracing::error!(
                        path = %problem.path,
                        "configuration reload refused: {}",
                        problem.message
                    );
                }
                tracing::warn!(
                    trigger = trigger.as_str(),
                    config_sha256 = %current.config.fingerprint,
                    "configuration not reloaded: the running configuration stays"
                );
                metrics::counter!(names::CONFIG_RELOADS, "result" => "failure").increment(1);
                metrics::gauge!(names::CONFIG_LAST_RELOAD_OK).set(0.0);
                self.record(
                    Action::ConfigRejected,
                    trigger,
                    Some(error.code()),
                    |event| {
                        event
                            .set("warden.config.sha256", current.config.fingerprint.as_str())
                            .set("error.message", error.to_string());
                    },
                );
            }
        }
        result
    }

    async fn try_reload(
        &self,
        seen: &mut Vec<Option<Stamp>>,
        current: &Arc<Generation>,
        trigger: Trigger,
    ) -> Result<Reloaded, ReloadError> {
        let path = self.inner.source.clone().ok_or(ReloadError::NoSource)?;
        let files = watched(&current.config);
        // Stamps first, then the read: a write during the reload is seen by the next check.
        let (stamped, loaded) = tokio::task::spawn_blocking(move || {
            let stamped = stamps(&files);
            (stamped, config::load(&path))
        })
        .await
        .map_err(|_| {
            ReloadError::Invalid(ConfigErrors::one("runtime", "the reload task failed"))
        })?;
        *seen = stamped;
        let config = match loaded {
            Ok(config) => config,
            Err(errors) => {
                self.tls_refused(&errors, trigger);
                return Err(ReloadError::Invalid(errors));
            }
        };
        let restart = restart_only(&current.config, &config);
        if !restart.is_empty() {
            return Err(ReloadError::Invalid(ConfigErrors(restart)));
        }
        for warning in &config.warnings {
            tracing::warn!(path = %warning.path, "{}", warning.message);
        }
        let before = &current.config.definitions;
        if before.digest_all() == config.definitions.digest_all() {
            return Ok(Reloaded {
                sha256: config.fingerprint,
                changed: Vec::new(),
                kept: Kept::default(),
            });
        }
        let changed = before.changed_sections(&config.definitions);
        let tls_changed =
            before.digest(&["server.tls"]) != config.definitions.digest(&["server.tls"]);
        // Once in service, the new configuration's files are the ones watched: a file it names
        // that the old one did not is stamped now (after this read, the best there is); the
        // others keep the stamps taken before the read. Until then the old list stays, so a
        // refused file does not trigger the same refusal again at every check.
        let old_files = watched(&current.config);
        let new_files = watched(&config);
        let stamped_before = std::mem::take(seen);
        let next_seen = if new_files == old_files {
            stamped_before.clone()
        } else {
            let fresh = {
                let files = new_files.clone();
                tokio::task::spawn_blocking(move || stamps(&files))
                    .await
                    .unwrap_or_default()
            };
            new_files
                .iter()
                .zip(fresh)
                .map(
                    |(file, now)| match old_files.iter().position(|f| f == file) {
                        Some(i) => stamped_before.get(i).cloned().flatten(),
                        None => now,
                    },
                )
                .collect()
        };
        *seen = stamped_before;
        let (mut runtime, kept) = Runtime::rebuild(&config, &current.runtime).await?;
        let checks = std::mem::take(&mut runtime.ready_checks);
        let tls = config.server.tls.clone();
        let sha256 = config.fingerprint.clone();
        let generation = Generation::new(config, runtime, self.inner.scheme)?;
        if let (true, Some(tls), Some(certificates)) = (tls_changed, tls, &self.inner.certificates)
        {
            certificates.install(tls, trigger);
        }
        let readiness = &self.inner.readiness;
        readiness.set_checks(checks);
        readiness.set_config(&sha256);
        self.inner.live.store(Arc::new(generation));
        *seen = next_seen;
        if !kept.api_keys {
            // The replaced authenticator's pending last-use times are written before it goes.
            current.runtime.flush_usage().await;
        }
        Ok(Reloaded {
            sha256,
            changed,
            kept,
        })
    }

    /// A refused file whose `server.tls` is among the problems is also a refused certificate
    /// reload (the certificate alerts and metrics see it).
    fn tls_refused(&self, errors: &ConfigErrors, trigger: Trigger) {
        let Some(certificates) = &self.inner.certificates else {
            return;
        };
        let tls: Vec<ConfigError> = errors
            .0
            .iter()
            .filter(|e| e.path.starts_with("server.tls"))
            .cloned()
            .collect();
        if !tls.is_empty() {
            certificates.refuse(tls, trigger);
        }
    }

    fn record(
        &self,
        action: Action,
        trigger: Trigger,
        reason: Option<&'static str>,
        fill: impl FnOnce(&mut AuditEvent),
    ) {
        let current = self.inner.live.load();
        let Some(sink) = &current.runtime.shared.audit else {
            return;
        };
        let mut event = AuditEvent::new(action, Outcome::of(reason), reason);
        event.set("warden.config.trigger", trigger.as_str());
        fill(&mut event);
        sink.record(event);
    }
}

/// The configuration file and every file it names.
fn watched(config: &Config) -> Vec<PathBuf> {
    config
        .source
        .iter()
        .cloned()
        .chain(config.definitions.files().map(PathBuf::from))
        .collect()
}

/// What only a restart can change, each as a problem at its path.
fn restart_only(old: &Config, new: &Config) -> Vec<ConfigError> {
    let mut problems = Vec::new();
    let mut restart = |path: &str, what: String| {
        problems.push(ConfigError::new(
            path,
            format!("{what}: this takes a restart (the running value stays)"),
        ));
    };
    let (was, now) = (&old.server, &new.server);
    if was.listen != now.listen {
        restart(
            "server.listen",
            format!("changed from {} to {}", was.listen, now.listen),
        );
    }
    if was.admin_listen != now.admin_listen {
        restart(
            "server.admin_listen",
            format!("changed from {} to {}", was.admin_listen, now.admin_listen),
        );
    }
    if was.tls.is_some() != now.tls.is_some() {
        restart(
            "server.tls",
            "turning TLS on or off changes what the listener speaks".to_owned(),
        );
    }
    if was.limits.max_connections != now.limits.max_connections {
        restart(
            "server.limits.max_connections",
            format!(
                "changed from {} to {}",
                was.limits.max_connections, now.limits.max_connections
            ),
        );
    }
    if was.workers != now.workers {
        restart(
            "server.workers",
            format!("changed from {} to {}", was.workers, now.workers),
        );
    }
    if was.limits.max_connections_per_ip != now.limits.max_connections_per_ip {
        restart("server.limits.max_connections_per_ip", "changed".to_owned());
    }
    if old.definitions.digest(&["audit"]) != new.definitions.digest(&["audit"]) {
        restart(
            "audit",
            "changed (one writer seals the trail's chain from start to shutdown)".to_owned(),
        );
    }
    problems
}

fn kept_list(kept: &Kept) -> String {
    let mut parts: Vec<String> = Vec::new();
    for (on, name) in [
        (kept.counters, "counters"),
        (kept.token_cache, "token_cache"),
        (kept.api_keys, "api_keys"),
        (kept.upstream_pool, "upstream_pool"),
    ] {
        if on {
            parts.push(name.to_owned());
        }
    }
    parts.extend(kept.key_sources.iter().map(|p| format!("keys:{p}")));
    parts.join(",")
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Reloads when the configuration file or a file it names changes, checking every
/// `interval`, until shutdown.
pub async fn watch(reloader: Reloader, interval: Duration, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
        // The outcome is logged, audited and counted by the reload.
        let _ = reloader.reload_if_changed().await;
    }
}
