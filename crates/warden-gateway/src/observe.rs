//! Access log, metrics and the audit trail's request events: one record per request, written as
//! a structured log line, a few counters and (when an audit sink is configured) an ECS-shaped
//! `request` event.
//!
//! Sits just under the request-id layer, so it sees the final status of every request,
//! rejections included, and learns *why* from the [`Outcome`] the rejection put in the response
//! extensions. It never logs headers, query strings or bodies: those are where credentials live.
//! Content-guard findings are logged as guard, rule and JSON pointer, never the text.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use http::{Method, Request, Response};
use tower::{Layer, Service};
use warden::audit::redact::Redactor;
use warden::audit::{Action, AuditEvent, AuditSink, Outcome as AuditOutcome};
use warden::authn::AuthnFailure;
use warden::authz::Denied;
use warden::body::Body;
use warden::client_ip::ClientIp;
use warden::guard::GuardFindings;
use warden::identity::Identity;
use warden::ratelimit::layer::RateLimited;
use warden::rejection::Outcome;
use warden::request_id::RequestId;
use warden::trace_context::TraceContext;

use warden::metric_handles::Handles;
use warden::routing::RouteName;

use crate::proxy::UpstreamFailure;
use warden::budget::BudgetSpent;

/// Metric names.
pub mod names {
    /// Counter: requests by route, status and outcome.
    pub const REQUESTS: &str = "warden_requests_total";
    /// Histogram: time to response head, by route.
    pub const DURATION: &str = "warden_request_duration_seconds";
    /// Gauge: open client connections.
    pub const OPEN_CONNECTIONS: &str = "warden_open_connections";
    /// Gauge: seconds until a served certificate expires (negative once it has), by file.
    pub const CERTIFICATE_EXPIRY: &str = "warden_tls_certificate_expiry_seconds";
    /// Counter: TLS handshakes that did not complete, by `reason`.
    pub const HANDSHAKE_FAILURES: &str = "warden_tls_handshake_failures_total";
    /// Counter: certificate reloads, by `result` (`success`, `failure`).
    pub const TLS_RELOADS: &str = "warden_tls_reloads_total";
    /// Counter: configuration reloads, by `result` (`success`, `unchanged`, `failure`).
    pub const CONFIG_RELOADS: &str = "warden_config_reloads_total";
    /// Gauge: 1 when the last reload succeeded (or none was tried), 0 when it was refused.
    pub const CONFIG_LAST_RELOAD_OK: &str = "warden_config_last_reload_successful";
    /// Gauge: when the configuration in service was put in service (Unix seconds).
    pub const CONFIG_LOADED_AT: &str = "warden_config_last_reload_success_timestamp_seconds";
    /// Gauge: tasks alive on the gateway's runtime (connections, streams, background work),
    /// read when `/metrics` is scraped: flat under steady load, growing only with a leak.
    pub const ALIVE_TASKS: &str = "warden_runtime_alive_tasks";
}

/// The three digits of every status code a response can carry (100–999), written once: the
/// request counter's `status` label is then a static string, not one formatted per request.
static STATUS_DIGITS: [[u8; 3]; 900] = {
    let mut digits = [[0u8; 3]; 900];
    let mut i = 0;
    while i < 900 {
        let code = i + 100;
        digits[i] = [
            b'0' + (code / 100) as u8,
            b'0' + (code / 10 % 10) as u8,
            b'0' + (code % 10) as u8,
        ];
        i += 1;
    }
    digits
};

fn status_label(status: u16) -> metrics::SharedString {
    match STATUS_DIGITS
        .get(usize::from(status).wrapping_sub(100))
        .and_then(|digits| std::str::from_utf8(digits).ok())
    {
        Some(text) => metrics::SharedString::const_str(text),
        // `http::StatusCode` holds 100–999 only.
        None => status.to_string().into(),
    }
}

/// Layer producing [`Observe`].
#[derive(Clone, Debug, Default)]
pub struct ObserveLayer {
    audit: Option<Arc<dyn AuditSink>>,
    redactor: Option<Arc<Redactor>>,
    metrics: Arc<RequestMetrics>,
}

/// The request metrics' handles, by route (`None`: unmatched), status and outcome.
#[derive(Debug, Default)]
struct RequestMetrics {
    requests: Handles<(Option<Arc<str>>, u16, &'static str), metrics::Counter>,
    durations: Handles<Option<Arc<str>>, metrics::Histogram>,
}

impl ObserveLayer {
    /// Logs and counts every request, and records it in `audit` if given; the access log's path
    /// is masked by `redactor` as the trail's is.
    pub fn new(audit: Option<Arc<dyn AuditSink>>, redactor: Option<Arc<Redactor>>) -> ObserveLayer {
        ObserveLayer {
            audit,
            redactor,
            metrics: Arc::default(),
        }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Observe {
            inner,
            audit: self.audit.clone(),
            redactor: self.redactor.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

/// Records each request's outcome.
#[derive(Clone, Debug)]
pub struct Observe<S> {
    inner: S,
    audit: Option<Arc<dyn AuditSink>>,
    redactor: Option<Arc<Redactor>>,
    metrics: Arc<RequestMetrics>,
}

impl<S> Service<Request<Body>> for Observe<S>
where
    S: Service<Request<Body>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let preflight = req.method() == Method::OPTIONS
            && req.headers().contains_key("access-control-request-method");
        let record = Record {
            start: Instant::now(),
            started_at: SystemTime::now(),
            audit: self.audit.clone(),
            redactor: self.redactor.clone(),
            metrics: self.metrics.clone(),
            method: req.method().clone(),
            // A `Uri` clone shares its bytes: no allocation on the hot path.
            uri: req.uri().clone(),
            request_id: req.extensions().get::<RequestId>().cloned(),
            trace: req.extensions().get::<TraceContext>().cloned(),
            client: req.extensions().get::<ClientIp>().map(|c| c.ip),
            preflight,
        };
        ResponseFuture {
            inner: self.inner.call(req),
            record: Some(record),
        }
    }
}

struct Record {
    start: Instant,
    started_at: SystemTime,
    audit: Option<Arc<dyn AuditSink>>,
    redactor: Option<Arc<Redactor>>,
    metrics: Arc<RequestMetrics>,
    method: Method,
    uri: http::Uri,
    request_id: Option<RequestId>,
    trace: Option<TraceContext>,
    client: Option<std::net::IpAddr>,
    preflight: bool,
}

pin_project_lite::pin_project! {
    /// Response future of [`Observe`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        record: Option<Record>,
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        if let (Ok(response), Some(record)) = (&result, this.record.take()) {
            record.finish(response);
        }
        Poll::Ready(result)
    }
}

/// Findings written into one audit record; `warden.guard.findings_total` counts them all.
const MAX_FINDINGS_RECORDED: usize = 64;

/// An event about the same request as `request`: its time, and what says which request and
/// whose (`source`, `url`, `trace`, `user`, `organization`, `warden`).
fn beside(
    request: &AuditEvent,
    action: Action,
    outcome: AuditOutcome,
    reason: Option<&'static str>,
) -> AuditEvent {
    let mut event = AuditEvent::new(action, outcome, reason);
    event.copy_from(
        request,
        &[
            "@timestamp",
            "source",
            "url",
            "trace",
            "user",
            "organization",
            "warden",
        ],
    );
    event
}

impl Record {
    /// The audit trail's `request` event: what was asked, by whom (as far as the gateway knows
    /// at this layer), what was decided and why — never headers, query strings or bodies.
    fn event(
        &self,
        audit: &dyn AuditSink,
        response: &Response<Body>,
        outcome: &'static str,
        route: &str,
        elapsed: std::time::Duration,
        findings: Option<&GuardFindings>,
    ) -> AuditEvent {
        let status = response.status();
        let (result, reason) = if status.is_client_error() || status.is_server_error() {
            (AuditOutcome::Failure, Some(outcome))
        } else {
            (AuditOutcome::Success, None)
        };
        let mut event = audit.event_at(self.started_at, Action::Request, result, reason);
        // In canonical order, so that each field is appended rather than inserted.
        let who = response.extensions().get::<Arc<Identity>>();
        event
            .set(
                "event.duration",
                u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX),
            )
            .set_text("http.request.method", self.method.as_str())
            .set("http.response.status_code", status.as_u16());
        if let Some(tenant) = who.and_then(|w| w.tenant.as_deref()) {
            event.set_text("organization.id", tenant);
        }
        if let Some(ip) = self.client {
            event.set_display("source.ip", ip);
        }
        if let Some(trace) = &self.trace {
            event.set_text("trace.id", trace.trace_id());
        }
        event.set_text("url.path", self.uri.path());
        if let Some(who) = who {
            event.set_text("user.id", who.subject.as_str());
            if let Some(key) = &who.key_id {
                event.set_text("warden.auth.key_id", key.as_str());
            }
            event.set_static("warden.auth.method", who.method.as_str());
        }
        event.set_static("warden.outcome", outcome);
        if let Some(id) = &self.request_id {
            event.set_text("warden.request_id", id.as_str());
        }
        event.set_text("warden.route", route);
        let extensions = response.extensions();
        if let Some(denied) = extensions.get::<Denied>() {
            event
                .set_static("warden.authz.rule", denied.rule)
                .set_text("warden.authz.reason", denied.reason.as_str());
        }
        if let Some(limited) = extensions.get::<RateLimited>() {
            event
                .set_text("warden.rate_limit.limit", &limited.limit)
                .set("warden.rate_limit.shadow", limited.shadow);
        }
        if let Some(failure) = extensions.get::<UpstreamFailure>() {
            event.set_static("warden.upstream.failure", failure.as_str());
        }
        if let Some(spent) = extensions.get::<BudgetSpent>() {
            spent.record_into(&mut event);
        }
        if let Some(findings) = findings.filter(|f| !f.0.is_empty()) {
            // A record stays small whatever the body held (a restart finds the last record in
            // the file's tail): the first findings, and how many there were.
            event.set("warden.guard.findings_total", findings.0.len());
            let list: Vec<serde_json::Value> = findings
                .0
                .iter()
                .take(MAX_FINDINGS_RECORDED)
                .map(|f| {
                    serde_json::json!({ "guard": f.guard, "rule": f.rule, "location": f.location })
                })
                .collect();
            event.set("warden.guard.findings", list);
        }
        event
    }

    /// The path as the access log shows it: the audit event's (already masked) when there is
    /// one, else masked here.
    fn logged_path<'a>(&'a self, event: Option<&'a AuditEvent>) -> Cow<'a, str> {
        if let Some(text) = event.and_then(|e| e.get("url.path").and_then(|f| e.text(f))) {
            return Cow::Borrowed(text);
        }
        match &self.redactor {
            Some(redactor) => redactor.mask(self.uri.path()),
            None => Cow::Borrowed(self.uri.path()),
        }
    }

    fn finish(self, response: &Response<Body>) {
        let elapsed = self.start.elapsed();
        let outcome = match response.extensions().get::<Outcome>() {
            Some(outcome) => outcome.as_str(),
            None if self.preflight => Outcome::Preflight.as_str(),
            None => Outcome::Forwarded.as_str(),
        };
        let name = response
            .extensions()
            .get::<RouteName>()
            .map(|r| r.0.clone());
        let route: metrics::SharedString = match &name {
            Some(name) => name.clone().into(),
            None => "unmatched".into(),
        };
        let status = response.status().as_u16();
        self.metrics
            .requests
            .get((name.clone(), status, outcome), || {
                metrics::counter!(
                    names::REQUESTS,
                    "route" => route.clone(),
                    "status" => status_label(status),
                    "outcome" => outcome
                )
            })
            .increment(1);
        self.metrics
            .durations
            .get(
                name,
                || metrics::histogram!(names::DURATION, "route" => route.clone()),
            )
            .record(elapsed.as_secs_f64());
        // What the content guards found (guard, rule, JSON pointer; never the text).
        let findings = response.extensions().get::<GuardFindings>();
        let guard_findings = findings.map(GuardFindings::summary);
        // Redacted here rather than on the writer thread: the access line shows the same masked
        // path, so the path is scanned once.
        let event = self.audit.as_ref().map(|audit| {
            let mut event = self.event(&**audit, response, outcome, &route, elapsed, findings);
            if let Some(redactor) = &self.redactor {
                redactor.apply(&mut event);
            }
            event
        });
        tracing::info!(
            target: "warden::access",
            request_id = self.request_id.as_ref().map(RequestId::as_str),
            trace_id = self.trace.as_ref().map(TraceContext::trace_id),
            method = %self.method,
            path = %self.logged_path(event.as_ref()),
            route = %route,
            status,
            outcome,
            client = self.client.map(tracing::field::display),
            duration_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            guard_findings,
            "request"
        );
        if let (Some(audit), Some(event)) = (&self.audit, event) {
            if let Some(AuthnFailure(reason)) = response.extensions().get::<AuthnFailure>() {
                // The failure on its own, as SIEM rules on authentication expect it, with the
                // precise reason the client's 401 does not tell.
                audit.record(beside(
                    &event,
                    Action::AuthenticationFailure,
                    AuditOutcome::Failure,
                    Some(reason),
                ));
            }
            let extensions = response.extensions();
            if let Some(denied) = extensions.get::<Denied>() {
                audit.record(beside(
                    &event,
                    Action::AuthorizationDenial,
                    AuditOutcome::Failure,
                    Some(denied.rule),
                ));
            }
            if let Some(limited) = extensions.get::<RateLimited>() {
                audit.record(if limited.shadow {
                    beside(&event, Action::RateLimitShadow, AuditOutcome::Success, None)
                } else {
                    beside(
                        &event,
                        Action::RateLimitDenial,
                        AuditOutcome::Failure,
                        Some("limit_exceeded"),
                    )
                });
            }
            if let Some(failure) = extensions.get::<UpstreamFailure>() {
                audit.record(beside(
                    &event,
                    Action::UpstreamFailure,
                    AuditOutcome::Failure,
                    Some(failure.as_str()),
                ));
            }
            if event.get("warden.guard.findings").is_some() {
                // What the guards found, as an alert of its own: refused requests fail, flagged
                // or redacted ones went through.
                let (result, reason) = if response.status().is_client_error() {
                    (AuditOutcome::Failure, Some(outcome))
                } else {
                    (AuditOutcome::Success, None)
                };
                audit.record(beside(&event, Action::GuardFinding, result, reason));
            }
            audit.record(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::status_label;

    #[test]
    fn status_labels_are_the_codes_digits() {
        for code in [100u16, 200, 404, 429, 502, 599, 999] {
            assert_eq!(status_label(code).as_ref(), code.to_string());
        }
    }
}
