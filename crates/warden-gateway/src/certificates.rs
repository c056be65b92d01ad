//! The TLS listener's certificates, replaced without a restart (DESIGN.md §2 "Connection").
//!
//! On SIGHUP ([`crate::server::Gateway::reload_certificates`]) and when a file of `server.tls`
//! changes (checked every `watch_interval`), the section is compiled again exactly as at
//! startup. A clean result is swapped in whole (certificates, keys, client CAs, CRLs): every
//! new handshake uses it, while open connections keep the session they negotiated and are not
//! touched. A broken or mismatched pair is refused with each problem logged at its path, a
//! `tls-certificates-rejected` audit event and a metric; what is in service stays.
//!
//! A file is seen as changed when its size, modification time or inode differs (the path is
//! followed, so a Kubernetes secret's symlink swap counts). Certificate tools write the
//! certificate and the key one after the other: a reload that reads a new certificate with
//! the old key is refused, and the key's own change a moment later triggers the reload that
//! succeeds. Each file's state is taken *before* it is read, so a write during a reload is
//! never missed.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use tokio::sync::{Notify, watch};
use warden::audit::sink::FileSink;
use warden::audit::{Action, AuditEvent, AuditSink as _, Outcome};

use crate::config::ConfigErrors;
use crate::config::tls::Tls;
use crate::observe::names;
use crate::stamps::{Stamp, stamps};

/// What asked for a reload (`warden.tls.trigger`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// SIGHUP, or a caller of the library.
    Signal,
    /// A watched file changed.
    FileChange,
    /// `warden reload` or the admin listener's `POST /reload`.
    Admin,
}

impl Trigger {
    /// The `warden.*.trigger` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Signal => "signal",
            Trigger::FileChange => "file_change",
            Trigger::Admin => "admin",
        }
    }
}

/// The certificates in service and how to replace them.
#[derive(Debug)]
pub struct Certificates {
    current: ArcSwap<Tls>,
    /// The files' state when the section was last read (whether that reload worked or not).
    seen: Mutex<Vec<Option<Stamp>>>,
    audit: Option<Arc<FileSink>>,
    /// Wakes the expiry reporter after a swap.
    swapped: Notify,
}

impl Certificates {
    /// Serves `tls`, recording reloads in `audit`.
    pub fn new(tls: Tls, audit: Option<Arc<FileSink>>) -> Arc<Certificates> {
        Arc::new(Certificates {
            seen: Mutex::new(stamps(&tls.files)),
            current: ArcSwap::from_pointee(tls),
            audit,
            swapped: Notify::new(),
        })
    }

    /// The acceptor for the next handshake.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current.load().config.clone())
    }

    /// Compiles `server.tls` again and, if it is clean, puts it in service; returns how many
    /// certificates are served. Blocking (it reads files): call it off the async workers.
    pub fn reload(&self, trigger: Trigger) -> Result<usize, ConfigErrors> {
        // One reload at a time; the lock is never held across an await.
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let current = self.current.load_full();
        *seen = stamps(&current.files);
        match current.reload() {
            Ok((tls, warnings)) => {
                for warning in &warnings {
                    tracing::warn!(path = %warning.path, "{}", warning.message);
                }
                // Files the new section added are watched from now on.
                if tls.files != current.files {
                    *seen = stamps(&tls.files);
                }
                Ok(self.install(tls, trigger))
            }
            Err(errors) => Err(self.refuse(errors, trigger)),
        }
    }

    /// Puts `tls` (compiled and checked) in service for new handshakes; returns how many
    /// certificates it serves. A whole-configuration reload that changed `server.tls` uses it.
    pub fn install(&self, tls: Tls, trigger: Trigger) -> usize {
        let served = tls.certificates.len();
        let files: Vec<String> = tls.certificates.iter().map(|c| c.file.clone()).collect();
        self.current.store(Arc::new(tls));
        self.swapped.notify_one();
        tracing::info!(
            trigger = trigger.as_str(),
            certificates = served,
            "TLS certificates reloaded: new handshakes use them"
        );
        metrics::counter!(names::TLS_RELOADS, "result" => "success").increment(1);
        self.record(Action::CertificatesReloaded, trigger, |event| {
            event.set("warden.tls.certificates", files.join(","));
        });
        served
    }

    /// Records that `errors` kept a new `server.tls` out of service (each is logged by the
    /// caller or here), and returns them.
    pub fn refuse(
        &self,
        errors: Vec<crate::config::ConfigError>,
        trigger: Trigger,
    ) -> ConfigErrors {
        for error in &errors {
            tracing::error!(path = %error.path, "TLS reload refused: {}", error.message);
        }
        tracing::warn!(
            trigger = trigger.as_str(),
            "TLS certificates not reloaded: the ones in service stay"
        );
        metrics::counter!(names::TLS_RELOADS, "result" => "failure").increment(1);
        let errors = ConfigErrors(errors);
        self.record(Action::CertificatesRejected, trigger, |event| {
            event.set("error.message", errors.to_string());
        });
        errors
    }

    fn record(&self, action: Action, trigger: Trigger, fill: impl FnOnce(&mut AuditEvent)) {
        let Some(sink) = &self.audit else {
            return;
        };
        let (outcome, reason) = match action {
            Action::CertificatesReloaded => (Outcome::Success, None),
            _ => (Outcome::Failure, Some("invalid_certificates")),
        };
        let mut event = AuditEvent::new(action, outcome, reason);
        event.set("warden.tls.trigger", trigger.as_str());
        fill(&mut event);
        sink.record(event);
    }

    /// Whether a watched file differs from when it was last read.
    fn changed(&self) -> bool {
        let files = self.current.load().files.clone();
        let now = stamps(&files);
        *self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            != now
    }
}

/// Reloads when a watched file changes, checking every `interval`, until shutdown.
pub async fn watch(
    certificates: Arc<Certificates>,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
        let certificates = certificates.clone();
        // `stat` and the reload read files: off the async workers.
        let _ = tokio::task::spawn_blocking(move || {
            if certificates.changed() {
                let _ = certificates.reload(Trigger::FileChange);
            }
        })
        .await;
    }
}

/// Sets each served certificate's seconds to expiry (negative once expired) every minute, and
/// at once after a reload.
pub async fn report_expiry(certificates: Arc<Certificates>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        for served in &certificates.current.load().certificates {
            metrics::gauge!(names::CERTIFICATE_EXPIRY, "certificate" => served.file.clone())
                .set(served.not_after.saturating_sub(now) as f64);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
            _ = certificates.swapped.notified() => {}
            _ = shutdown.changed() => return,
        }
    }
}
