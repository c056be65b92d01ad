//! Remote keys: a JWKS (directly, or through OIDC discovery) kept fresh in the background.
//!
//! Behaviour, all together:
//! - background refresh honouring the response's `Cache-Control: max-age`, clamped between
//!   `min_ttl` and `max_ttl` (`default_ttl` when absent);
//! - on a token with an unknown `kid`, at most one refetch per `min_refresh_interval`, single
//!   flight: concurrent callers wait for the fetch in progress instead of starting their own,
//!   so a flood of random kids causes no fetch storm;
//! - when the key server is down, the last good keys keep serving until they are older than
//!   their TTL plus `stale_if_error`; after that tokens cannot be verified and the gateway
//!   answers 503 (never 401: the client did nothing wrong);
//! - failed fetches retry with exponential backoff (1 s doubling to `max_backoff`);
//! - HTTPS only (plain HTTP only to loopback when allowed, for development), a timeout, a
//!   response-size cap, and no redirects to another host or scheme;
//! - discovery checks that the document's `issuer` is exactly the configured issuer.

use crate::audit::{Action, AuditEvent, AuditSink, Outcome};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use futures_util::future::BoxFuture;
use reqwest::Url;
use tokio::task::JoinHandle;

use super::keys::{KeySet, KeySource, KeysState};
use crate::clock::Clock;

/// Tuning of a remote key source.
#[derive(Clone, Debug)]
pub struct RemoteSettings {
    /// Least time between two unknown-kid refetches.
    pub min_refresh_interval: Duration,
    /// TTL when the server sends no `max-age`.
    pub default_ttl: Duration,
    /// Lower clamp of `max-age`.
    pub min_ttl: Duration,
    /// Upper clamp of `max-age`.
    pub max_ttl: Duration,
    /// How long past their TTL the last good keys serve while the server is down.
    pub stale_if_error: Duration,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Largest JWKS or discovery document accepted.
    pub max_bytes: usize,
    /// Longest pause between retries after failures.
    pub max_backoff: Duration,
    /// Allow `http://` to loopback addresses (development only).
    pub allow_http_loopback: bool,
    /// Extra trusted root certificate (PEM), for private PKI.
    pub ca_pem: Option<Vec<u8>>,
}

impl Default for RemoteSettings {
    fn default() -> Self {
        RemoteSettings {
            min_refresh_interval: Duration::from_secs(30),
            default_ttl: Duration::from_secs(600),
            min_ttl: Duration::from_secs(60),
            max_ttl: Duration::from_secs(86_400),
            stale_if_error: Duration::from_secs(3600),
            timeout: Duration::from_secs(5),
            max_bytes: 256 * 1024,
            max_backoff: Duration::from_secs(60),
            allow_http_loopback: false,
            ca_pem: None,
        }
    }
}

/// Where the keys are published.
#[derive(Clone, Debug)]
pub enum RemoteLocation {
    /// A JWKS URL.
    JwksUri(String),
    /// OIDC discovery from this issuer (`{issuer}/.well-known/openid-configuration`).
    Discovery {
        /// The configured issuer; the document's `issuer` must equal it.
        issuer: String,
    },
}

/// Why fetching keys failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The URL breaks the transport policy.
    #[error("refused URL {0}: {1}")]
    Url(String, &'static str),
    /// Transport failure or timeout.
    #[error("request to {0} failed: {1}")]
    Http(String, String),
    /// Not 200.
    #[error("{0} answered {1}")]
    Status(String, u16),
    /// Larger than `max_bytes`.
    #[error("{0} sent more than {1} bytes")]
    TooLarge(String, usize),
    /// Discovery document problems.
    #[error("discovery document: {0}")]
    Discovery(String),
    /// JWKS problems.
    #[error("JWKS: {0}")]
    Keys(#[from] super::keys::KeyError),
}

impl FetchError {
    /// A code for the audit trail's `event.reason` (closed vocabulary).
    pub fn code(&self) -> &'static str {
        match self {
            FetchError::Url(..) => "jwks_url_refused",
            FetchError::Http(..) => "jwks_unreachable",
            FetchError::Status(..) => "jwks_bad_status",
            FetchError::TooLarge(..) => "jwks_too_large",
            FetchError::Discovery(..) => "jwks_bad_discovery",
            FetchError::Keys(..) => "jwks_bad_keys",
        }
    }
}

/// Checks a key-server URL against the transport policy.
pub fn check_url(url: &str, allow_http_loopback: bool) -> Result<Url, FetchError> {
    let parsed = Url::parse(url).map_err(|_| FetchError::Url(url.into(), "not a URL"))?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(FetchError::Url(url.into(), "credentials in the URL"));
    }
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" if allow_http_loopback && is_loopback(&parsed) => Ok(parsed),
        "http" => Err(FetchError::Url(
            url.into(),
            "plain http is only allowed to loopback in development",
        )),
        _ => Err(FetchError::Url(url.into(), "scheme must be https")),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(host)) => host == "localhost",
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

#[derive(Debug)]
struct State {
    keys: Option<Arc<KeySet>>,
    fetched_at: SystemTime,
    ttl: Duration,
    generation: u64,
    digest: [u8; 32],
}

/// A remote key source. Cheap to clone (shared state).
#[derive(Clone, Debug)]
pub struct RemoteKeys {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    name: String,
    location: RemoteLocation,
    settings: RemoteSettings,
    client: reqwest::Client,
    clock: Arc<dyn Clock>,
    state: ArcSwap<State>,
    unknown_kid_gate: tokio::sync::Mutex<Option<SystemTime>>,
    fetches: AtomicU64,
    /// Where failures and recoveries of the refresher are recorded.
    audit: std::sync::OnceLock<Arc<dyn AuditSink>>,
}

impl RemoteKeys {
    /// A source for provider `name`. Nothing is fetched until [`RemoteKeys::spawn_refresh`] or
    /// the first unknown kid.
    pub fn new(
        name: impl Into<String>,
        location: RemoteLocation,
        settings: RemoteSettings,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, FetchError> {
        if let RemoteLocation::JwksUri(url) = &location {
            check_url(url, settings.allow_http_loopback)?;
        }
        if let RemoteLocation::Discovery { issuer } = &location {
            check_url(&discovery_url(issuer), settings.allow_http_loopback)?;
        }
        let allow_http = settings.allow_http_loopback;
        let redirect = reqwest::redirect::Policy::custom(move |attempt| {
            let same_origin = attempt.previous().first().is_some_and(|first| {
                first.host_str() == attempt.url().host_str()
                    && first.port_or_known_default() == attempt.url().port_or_known_default()
            });
            if attempt.previous().len() > 3 {
                attempt.error("too many redirects")
            } else if !same_origin || check_url(attempt.url().as_str(), allow_http).is_err() {
                attempt.error("redirect to another origin refused")
            } else {
                attempt.follow()
            }
        });
        let mut builder = reqwest::Client::builder()
            .redirect(redirect)
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .no_proxy()
            .user_agent(concat!("warden/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &settings.ca_pem {
            let certificate = reqwest::Certificate::from_pem(pem)
                .map_err(|e| FetchError::Http("ca".into(), e.to_string()))?;
            builder = builder.add_root_certificate(certificate);
        }
        let client = builder
            .build()
            .map_err(|e| FetchError::Http("client".into(), e.to_string()))?;
        Ok(RemoteKeys {
            inner: Arc::new(Inner {
                name: name.into(),
                location,
                settings,
                client,
                clock,
                state: ArcSwap::from_pointee(State {
                    keys: None,
                    fetched_at: SystemTime::UNIX_EPOCH,
                    ttl: Duration::ZERO,
                    generation: 0,
                    digest: [0; 32],
                }),
                unknown_kid_gate: tokio::sync::Mutex::new(None),
                fetches: AtomicU64::new(0),
                audit: std::sync::OnceLock::new(),
            }),
        })
    }

    /// How many fetches have been attempted (JWKS requests, not counting discovery).
    pub fn fetch_count(&self) -> u64 {
        self.inner.fetches.load(Ordering::Relaxed)
    }

    /// Fetches once now and stores the result.
    pub async fn refresh(&self) -> Result<Duration, FetchError> {
        self.inner.refresh().await
    }

    /// Waits until keys are loaded, up to `timeout`. `false` if they are not.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if self.is_ready() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.is_ready()
    }

    /// Records the refresher's first failure after a success (`jwks-fetch-failure`) and its
    /// recovery (`jwks-fetch-recovered`) in `sink`. Set once; later calls are ignored.
    pub fn audit_to(&self, sink: Arc<dyn AuditSink>) {
        let _ = self.inner.audit.set(sink);
    }

    /// Starts the background refresher; abort the handle to stop it.
    pub fn spawn_refresh(&self) -> JoinHandle<()> {
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let mut failures: u32 = 0;
            loop {
                let pause = match inner.refresh().await {
                    Ok(ttl) => {
                        if failures > 0 {
                            inner.record(Action::JwksFetchRecovered, None, failures);
                        }
                        failures = 0;
                        ttl
                    }
                    Err(error) => {
                        failures = failures.saturating_add(1);
                        if failures == 1 {
                            inner.record(Action::JwksFetchFailure, Some(error.code()), failures);
                        }
                        tracing::warn!(
                            target: "warden::jwks",
                            provider = %inner.name,
                            failures,
                            error = %error,
                            "JWKS refresh failed; serving the last good keys while they last"
                        );
                        backoff(failures, inner.settings.max_backoff)
                    }
                };
                tokio::time::sleep(pause).await;
            }
        })
    }
}

impl Inner {
    fn record(&self, action: Action, reason: Option<&'static str>, failures: u32) {
        let Some(sink) = self.audit.get() else {
            return;
        };
        let mut event = AuditEvent::new(action, Outcome::of(reason), reason);
        event
            .set("warden.jwks.provider", self.name.as_str())
            .set("warden.jwks.failures", failures);
        sink.record(event);
    }
}

fn backoff(failures: u32, max: Duration) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    Duration::from_secs(1u64 << exponent).min(max)
}

fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

impl Inner {
    async fn refresh(&self) -> Result<Duration, FetchError> {
        let jwks_uri = match &self.location {
            RemoteLocation::JwksUri(url) => url.clone(),
            RemoteLocation::Discovery { issuer } => self.discover(issuer).await?,
        };
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let result = self.get(&jwks_uri).await;
        metrics::counter!(
            "warden_jwks_fetches_total",
            "provider" => self.name.clone(),
            "result" => if result.is_ok() { "ok" } else { "error" }
        )
        .increment(1);
        let (bytes, max_age) = result?;
        let (keys, skipped) = KeySet::from_jwks(&bytes, false)?;
        for reason in skipped {
            tracing::warn!(target: "warden::jwks", provider = %self.name, %reason, "skipped a JWKS key");
        }
        let s = &self.settings;
        let ttl = max_age
            .unwrap_or(s.default_ttl)
            .clamp(s.min_ttl, s.max_ttl.max(s.min_ttl));
        let digest = sha256(&bytes);
        let previous = self.state.load();
        let generation = if previous.keys.is_some() && previous.digest == digest {
            previous.generation
        } else {
            previous.generation + 1
        };
        if generation != previous.generation {
            tracing::info!(target: "warden::jwks", provider = %self.name, keys = keys.len(), "loaded signing keys");
        }
        self.state.store(Arc::new(State {
            keys: Some(Arc::new(keys)),
            fetched_at: self.clock.now(),
            ttl,
            generation,
            digest,
        }));
        Ok(ttl)
    }

    async fn discover(&self, issuer: &str) -> Result<String, FetchError> {
        let (bytes, _) = self.get(&discovery_url(issuer)).await?;
        let document: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| FetchError::Discovery(e.to_string()))?;
        let advertised = document.get("issuer").and_then(|v| v.as_str());
        if advertised != Some(issuer) {
            return Err(FetchError::Discovery(format!(
                "issuer {advertised:?} does not match the configured {issuer:?}"
            )));
        }
        let jwks_uri = document
            .get("jwks_uri")
            .and_then(|v| v.as_str())
            .ok_or_else(|| FetchError::Discovery("no jwks_uri".into()))?;
        check_url(jwks_uri, self.settings.allow_http_loopback)?;
        Ok(jwks_uri.to_owned())
    }

    async fn get(&self, url: &str) -> Result<(Vec<u8>, Option<Duration>), FetchError> {
        let parsed = check_url(url, self.settings.allow_http_loopback)?;
        let http = |e: reqwest::Error| FetchError::Http(url.to_owned(), e.to_string());
        let mut response = self.client.get(parsed).send().await.map_err(http)?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(FetchError::Status(
                url.to_owned(),
                response.status().as_u16(),
            ));
        }
        let max = self.settings.max_bytes;
        if response.content_length().is_some_and(|n| n > max as u64) {
            return Err(FetchError::TooLarge(url.to_owned(), max));
        }
        let max_age = response
            .headers()
            .get(http::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_max_age);
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(http)? {
            if bytes.len() + chunk.len() > max {
                return Err(FetchError::TooLarge(url.to_owned(), max));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok((bytes, max_age))
    }
}

/// `max-age=N` from a `Cache-Control` value (`no-store`/`no-cache` count as zero).
fn parse_max_age(value: &str) -> Option<Duration> {
    let mut max_age = None;
    for directive in value.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return Some(Duration::ZERO);
        }
        if let Some(seconds) = lower.strip_prefix("max-age=") {
            max_age = seconds
                .trim_matches('"')
                .parse()
                .ok()
                .map(Duration::from_secs);
        }
    }
    max_age
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

impl KeySource for RemoteKeys {
    fn current(&self, now: SystemTime) -> KeysState {
        let state = self.inner.state.load();
        match &state.keys {
            Some(keys)
                if now <= state.fetched_at + state.ttl + self.inner.settings.stale_if_error =>
            {
                KeysState::Ready(keys.clone(), state.generation)
            }
            _ => KeysState::Unavailable,
        }
    }

    fn refresh_for_unknown_kid(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            // Holding the gate across the fetch is the single flight: later callers wait here,
            // then find the interval not yet elapsed and return at once.
            let mut last = self.inner.unknown_kid_gate.lock().await;
            let now = self.inner.clock.now();
            if let Some(previous) = *last
                && now < previous + self.inner.settings.min_refresh_interval
            {
                return;
            }
            *last = Some(now);
            if let Err(error) = self.inner.refresh().await {
                tracing::warn!(target: "warden::jwks", provider = %self.inner.name, error = %error, "JWKS refetch for an unknown kid failed");
            }
        })
    }

    fn is_ready(&self) -> bool {
        matches!(self.current(self.inner.clock.now()), KeysState::Ready(..))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_policy() {
        assert!(check_url("https://idp.example.com/jwks", false).is_ok());
        assert!(check_url("http://idp.example.com/jwks", true).is_err());
        assert!(check_url("http://127.0.0.1:8080/jwks", false).is_err());
        assert!(check_url("http://127.0.0.1:8080/jwks", true).is_ok());
        assert!(check_url("http://[::1]:8080/jwks", true).is_ok());
        assert!(check_url("http://localhost/jwks", true).is_ok());
        assert!(check_url("https://user:pw@idp.example.com/jwks", false).is_err());
        assert!(check_url("file:///etc/passwd", true).is_err());
    }

    #[test]
    fn max_age_parsing_and_backoff() {
        assert_eq!(
            parse_max_age("public, max-age=300"),
            Some(Duration::from_secs(300))
        );
        assert_eq!(parse_max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(parse_max_age("public"), None);
        assert_eq!(backoff(1, Duration::from_secs(60)), Duration::from_secs(1));
        assert_eq!(backoff(3, Duration::from_secs(60)), Duration::from_secs(4));
        assert_eq!(
            backoff(30, Duration::from_secs(60)),
            Duration::from_secs(60)
        );
    }
}
