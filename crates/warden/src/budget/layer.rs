//! The token-budget layer (DESIGN.md §2 step 15): after the body rules (which extract the
//! model, output limit and stream flag once), before the proxy.
//!
//! Per request: count the prompt's upper bound ([`Counter`]), reserve it plus the output limit
//! in the store, and — when the request names no output limit or one larger than what the
//! budget holds — write the granted limit into the forwarded body (`max_completion_tokens` or
//! the `max_tokens` the client used for Chat Completions, `max_output_tokens` for Responses,
//! `max_tokens` for Anthropic), so the upstream cannot produce more than was reserved. A prompt
//! that does not fit is refused with 429 and `Retry-After` (when the window ends). After the
//! answer, the reservation is settled to the usage the upstream reports, or — when it reports
//! none or fails after receiving the request — kept at the prompt bound plus what was counted.
//!
//! Whole JSON answers are read (up to [`MAX_ANSWER`]) and settled before the response goes on,
//! so the settled usage is in the request's audit record; streamed answers are settled when
//! the stream ends ([`super::stream`]).

use std::future::Future as _;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body_util::BodyExt as _;
use tower::{Layer, Service};

use super::algorithm::{Ask, Budget, Grant, Reservation};
use super::count::Counter;
use super::store::BudgetStore;
use super::stream::{self, Meter};
use super::usage::{self, Usage};
use crate::audit::{Action, AuditEvent, AuditSink, Outcome as AuditOutcome};
use crate::body::format::{ExtractedBody, Format};
use crate::body::{self as wbody, Body};
use crate::future::ResponseFuture;
use crate::identity::Identity;
use crate::ratelimit::StoreError;
use crate::ratelimit::layer::{KeyPart, OnStoreError, append_item, build_key, choose_tier};
use crate::rejection::{Outcome, Rejection, RejectionKind};
use crate::request_id::RequestId;
use crate::routing::MatchedRoute;

/// Largest whole JSON answer read for its usage; a larger one is settled at its reservation.
pub const MAX_ANSWER: usize = 8 * 1024 * 1024;

/// The most answers (`n`) one Chat Completions request is reserved for (OpenAI's own cap).
const MAX_CHOICES: u64 = 128;

/// Bodies above this many bytes are counted on a blocking thread (≈0.5 ms of tokenizing).
const COUNT_INLINE: usize = super::count::CACHED_TEXT;

/// The prompt bound of a forwarded body (JSON text; bytes if it were not UTF-8).
fn prompt_bound(counter: Counter, body: &[u8]) -> u64 {
    match std::str::from_utf8(body) {
        Ok(text) => counter.prompt_bound(text),
        Err(_) => bytes_bound(body),
    }
}

fn bytes_bound(body: &[u8]) -> u64 {
    body.len() as u64 + super::count::PRIMING
}

/// A named budget: what it holds, how it is keyed, whether it reports itself.
#[derive(Clone, Debug)]
pub struct BudgetLimit {
    /// The `RateLimit-Policy` item name (`tokens-default`, a route's or a tier's).
    pub name: String,
    /// Limit, period and weights.
    pub budget: Budget,
    /// Key parts, as for rate limits.
    pub key: Vec<KeyPart>,
    /// Send the `RateLimit` / `RateLimit-Policy` items.
    pub headers: bool,
}

/// What a request's budget did (response extension, for the audit record and metrics).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BudgetSpent {
    /// The budget's name.
    pub budget: String,
    /// Weighted tokens reserved before forwarding.
    pub reserved: u64,
    /// Weighted tokens settled (`None` while a stream is still running).
    pub settled: Option<u64>,
    /// The usage the upstream reported, if it did.
    pub usage: Option<Usage>,
}

impl BudgetSpent {
    /// Writes itself into an audit event (`warden.budget.*`).
    pub fn record_into(&self, event: &mut AuditEvent) {
        event
            .set_text("warden.budget.name", &self.budget)
            .set("warden.budget.reserved", self.reserved);
        if let Some(settled) = self.settled {
            event.set("warden.budget.settled", settled);
        }
        if let Some(usage) = self.usage {
            event
                .set("warden.budget.prompt_tokens", usage.prompt)
                .set("warden.budget.output_tokens", usage.output);
        }
    }
}

/// Layer applying a [`BudgetLimit`] (or a tier's) to one route of `format`.
#[derive(Clone, Debug)]
pub struct TokenBudgetLayer {
    store: Arc<dyn BudgetStore>,
    limit: Arc<BudgetLimit>,
    tiers: Arc<Vec<(String, Vec<String>, BudgetLimit)>>,
    format: Format,
    on_error: OnStoreError,
    audit: Option<Arc<dyn AuditSink>>,
}

impl TokenBudgetLayer {
    /// `limit` in `store` for a route whose bodies are `format`.
    pub fn new(
        store: Arc<dyn BudgetStore>,
        limit: BudgetLimit,
        format: Format,
        on_error: OnStoreError,
    ) -> Self {
        TokenBudgetLayer {
            store,
            limit: Arc::new(limit),
            tiers: Arc::new(Vec::new()),
            format,
            on_error,
            audit: None,
        }
    }

    /// Records each streamed answer's settlement in `sink` (`token-usage`).
    pub fn with_audit(mut self, sink: Option<Arc<dyn AuditSink>>) -> Self {
        self.audit = sink;
        self
    }

    /// Tiers `(name, roles, limit)`, chosen as for rate limits.
    pub fn with_tiers(mut self, tiers: Vec<(String, Vec<String>, BudgetLimit)>) -> Self {
        self.tiers = Arc::new(tiers);
        self
    }
}

impl<S> Layer<S> for TokenBudgetLayer {
    type Service = TokenBudget<S>;
    fn layer(&self, inner: S) -> Self::Service {
        TokenBudget {
            inner,
            layer: self.clone(),
        }
    }
}

/// Service produced by [`TokenBudgetLayer`].
#[derive(Clone, Debug)]
pub struct TokenBudget<S> {
    inner: S,
    layer: TokenBudgetLayer,
}

/// Metric names.
pub mod names {
    /// Counter: weighted tokens, by `route`, `model` and `kind` (`reserved`, `settled`,
    /// `refused`).
    pub const TOKENS: &str = "warden_token_budget_tokens_total";
    /// Counter: requests refused by a budget, by `route`.
    pub const REFUSED: &str = "warden_token_budget_refused_total";
}

/// Settles a grant once, whatever ends the request: an answer, an error, a dropped stream, or
/// a client that left while the upstream was still working (the future is dropped then, and
/// the drop settles to the prompt: the upstream had it).
pub(crate) struct Settlement {
    pending: Option<Pending>,
    /// What a request abandoned before its answer is settled to.
    abandoned: u64,
    /// The budget and the grant, readable after the settlement is done.
    pub budget: Budget,
    pub grant: Grant,
}

struct Pending {
    store: Arc<dyn BudgetStore>,
    key: String,
    labels: (String, String),
    /// For a stream: the `token-usage` event to complete and record at its end.
    audit: Option<(Arc<dyn AuditSink>, AuditEvent, String)>,
}

impl Settlement {
    /// Settles a stream to `actual` weighted tokens, recording its `token-usage` event.
    pub fn settle_stream(mut self, actual: u64, usage: Option<Usage>) {
        if let Some(pending) = &mut self.pending
            && let Some((sink, mut event, name)) = pending.audit.take()
        {
            BudgetSpent {
                budget: name,
                reserved: self.grant.held,
                settled: Some(actual),
                usage,
            }
            .record_into(&mut event);
            sink.record(event);
        }
        self.settle(actual);
    }

    /// Settles to `actual` weighted tokens (at once in memory; on its own task for Redis).
    pub fn settle(mut self, actual: u64) {
        self.settle_now(actual);
    }

    fn settle_now(&mut self, actual: u64) {
        let Some(Pending {
            store, key, labels, ..
        }) = self.pending.take()
        else {
            return;
        };
        metrics::counter!(names::TOKENS, "route" => labels.0, "model" => labels.1, "kind" => "settled")
            .increment(actual);
        let (budget, grant) = (self.budget, self.grant);
        let mut settling = Box::pin(async move {
            if let Err(error) = store.settle(&key, &budget, grant, actual).await {
                tracing::warn!(target: "warden::budget", %error, "token budget settlement failed; the reservation stays held until its window ends");
            }
        });
        // The in-process store settles at once, so the next request of the same client already
        // sees it; one that needs a round trip (Redis) finishes on a task of its own, which a
        // client that went away cannot cancel. No runtime (the process is ending): the
        // reservation ends with its window.
        let mut cx = std::task::Context::from_waker(futures_util::task::noop_waker_ref());
        if settling.as_mut().poll(&mut cx).is_pending()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(settling);
        }
    }
}

impl Drop for Settlement {
    fn drop(&mut self) {
        let abandoned = self.abandoned;
        self.settle_now(abandoned);
    }
}

impl<S> Service<Request<Body>> for TokenBudget<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        ResponseFuture::new(async move {
            let (mut parts, body) = req.into_parts();
            let Some(extracted) = parts.extensions.get::<Arc<ExtractedBody>>().cloned() else {
                // Only routes with an LLM body format get this layer; without the extraction
                // there is nothing to count.
                return inner.call(Request::from_parts(parts, body)).await;
            };
            let request_id = parts.extensions.get::<RequestId>().cloned();
            let limit = choose_tier(&parts, &*layer.limit, &layer.tiers);
            // The body rules layer forwards a whole, validated body.
            let forwarded = match body.collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(_) => {
                    return Ok(Rejection::new(RejectionKind::BadRequest)
                        .into_response(request_id.as_ref()));
                }
            };
            let counter =
                Counter::for_model(extracted.provider.as_deref(), extracted.model.as_deref());
            let prompt = if forwarded.len() > COUNT_INLINE {
                // About 1.5 ms per 100 KB: off the async workers.
                let bytes = forwarded.clone();
                tokio::task::spawn_blocking(move || prompt_bound(counter, &bytes))
                    .await
                    .unwrap_or(bytes_bound(&forwarded))
            } else {
                prompt_bound(counter, &forwarded)
            };
            let route = parts
                .extensions
                .get::<MatchedRoute>()
                .map_or_else(String::new, |r| r.name.to_string());
            let model = extracted.model.clone().unwrap_or_default();
            let key = build_key("tb:", &limit.name, &limit.key, &parts);
            // Chat Completions' `n` answers the prompt n times, each up to the output limit.
            let choices = match layer.format {
                Format::OpenAiChat => extracted
                    .document()
                    .lookup("/n")
                    .and_then(|n| n.as_u64())
                    .unwrap_or(1)
                    .clamp(1, MAX_CHOICES),
                _ => 1,
            };
            let ask = Ask {
                prompt,
                max_output: extracted
                    .max_output_tokens
                    .map(|m| m.saturating_mul(choices)),
            };
            let reservation = match layer.store.reserve(&key, &limit.budget, ask).await {
                Ok(reservation) => reservation,
                Err(error) => {
                    log_store_error(&error);
                    if layer.on_error == OnStoreError::FailOpen {
                        return inner
                            .call(Request::from_parts(parts, wbody::full(forwarded)))
                            .await;
                    }
                    return Ok(Rejection::new(RejectionKind::Unavailable)
                        .into_response(request_id.as_ref()));
                }
            };
            let grant = match reservation {
                Reservation::Granted(grant) => grant,
                Reservation::Refused {
                    remaining,
                    retry_after,
                    fits_ever,
                } => {
                    metrics::counter!(names::REFUSED, "route" => route.clone()).increment(1);
                    metrics::counter!(names::TOKENS, "route" => route, "model" => model, "kind" => "refused")
                        .increment(limit.budget.cost(prompt, 0));
                    tracing::info!(target: "warden::budget", budget = %limit.name, prompt, remaining, fits_ever, "token budget refused the request");
                    // A prompt larger than the whole budget never fits: no Retry-After to wait for.
                    let mut response =
                        Rejection::budget_exhausted(fits_ever.then_some(retry_after))
                            .into_response(request_id.as_ref());
                    report(response.headers_mut(), limit, remaining, retry_after);
                    response.extensions_mut().insert(BudgetSpent {
                        budget: limit.name.clone(),
                        reserved: 0,
                        settled: Some(0),
                        usage: None,
                    });
                    return Ok(response);
                }
            };
            let per_choice = match grant.output {
                u64::MAX => u64::MAX,
                total => total / choices,
            };
            if per_choice == 0 {
                // Not one token for each of the n answers: give the hold back and refuse.
                if let Err(error) = layer.store.settle(&key, &limit.budget, grant, 0).await {
                    log_store_error(&error);
                }
                metrics::counter!(names::REFUSED, "route" => route).increment(1);
                let mut response = Rejection::budget_exhausted(Some(grant.reset_after))
                    .into_response(request_id.as_ref());
                report(
                    response.headers_mut(),
                    limit,
                    grant.remaining + grant.held,
                    grant.reset_after,
                );
                return Ok(response);
            }
            metrics::counter!(names::TOKENS, "route" => route.clone(), "model" => model.clone(), "kind" => "reserved")
                .increment(grant.held);
            let (rewritten, hide_usage_chunk) = rewrite(
                &layer.format,
                &forwarded,
                &extracted,
                &limit.budget,
                per_choice,
            );
            let body = match rewritten {
                Some(rewritten) => {
                    parts.headers.insert(
                        http::header::CONTENT_LENGTH,
                        HeaderValue::from(rewritten.len()),
                    );
                    wbody::full(rewritten)
                }
                None => wbody::full(forwarded),
            };
            let audit = layer
                .audit
                .as_ref()
                .filter(|_| extracted.stream)
                .map(|sink| {
                    (
                        sink.clone(),
                        usage_event(&parts, &route),
                        limit.name.clone(),
                    )
                });
            let settlement = Settlement {
                pending: Some(Pending {
                    store: layer.store.clone(),
                    key,
                    labels: (route, model),
                    audit,
                }),
                abandoned: limit.budget.cost(prompt, 0),
                budget: limit.budget,
                grant,
            };
            let response = inner.call(Request::from_parts(parts, body)).await?;
            let answer = Answer {
                name: &limit.name,
                format: &layer.format,
                counter,
                prompt,
                hide_usage_chunk,
            };
            let mut response = answer.finish(response, settlement).await;
            report(
                response.headers_mut(),
                limit,
                grant.remaining,
                grant.reset_after,
            );
            Ok(response)
        })
    }
}

/// The start of a stream's `token-usage` event: which request, whose.
fn usage_event(parts: &http::request::Parts, route: &str) -> AuditEvent {
    let mut event = AuditEvent::new(Action::TokenUsage, AuditOutcome::Success, None);
    if let Some(who) = parts.extensions.get::<Arc<Identity>>() {
        if let Some(tenant) = who.tenant.as_deref() {
            event.set_text("organization.id", tenant);
        }
        event.set_text("user.id", &who.subject);
    }
    if let Some(id) = parts.extensions.get::<RequestId>() {
        event.set_text("warden.request_id", id.as_str());
    }
    event.set_text("warden.route", route);
    event
}

fn log_store_error(error: &StoreError) {
    if matches!(error, StoreError::CircuitOpen) {
        tracing::debug!(target: "warden::budget", %error, "budget store unavailable");
    } else {
        tracing::error!(target: "warden::budget", %error, "budget store failed");
    }
}

/// The forwarded body with the granted output limit written in, when the request named none or
/// a larger one, and, for a Chat Completions stream that does not ask for its usage, with
/// `stream_options.include_usage` (`None`: forward as is); and whether the usage chunk the
/// gateway asked for must be hidden from the client.
fn rewrite(
    format: &Format,
    forwarded: &[u8],
    extracted: &ExtractedBody,
    budget: &Budget,
    granted: u64,
) -> (Option<Bytes>, bool) {
    let clamp = budget.output_weight > 0 && extracted.max_output_tokens.is_none_or(|n| n > granted);
    let (canonical, others): (&str, &[&str]) = match format {
        Format::OpenAiChat => ("max_completion_tokens", &["max_tokens"]),
        Format::OpenAiResponses => ("max_output_tokens", &[]),
        Format::AnthropicMessages => ("max_tokens", &[]),
        _ => return (None, false),
    };
    // Read from the document the body rules parsed; the body is parsed again only to rewrite.
    let asks_usage = extracted
        .document()
        .lookup("/stream_options/include_usage")
        .is_some_and(|flag| flag.to_value() == serde_json::Value::Bool(true));
    let add_usage = *format == Format::OpenAiChat && extracted.stream && !asks_usage;
    if !clamp && !add_usage {
        return (None, false);
    }
    let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(forwarded) else {
        return (None, false);
    };
    let Some(object) = value.as_object_mut() else {
        return (None, false);
    };
    if clamp {
        let mut written = false;
        for field in std::iter::once(canonical).chain(others.iter().copied()) {
            if let Some(slot) = object.get_mut(field) {
                *slot = granted.into();
                written = true;
            }
        }
        if !written {
            object.insert(canonical.to_owned(), granted.into());
        }
    }
    if add_usage {
        match object
            .get_mut("stream_options")
            .and_then(|o| o.as_object_mut())
        {
            Some(options) => {
                options.insert("include_usage".to_owned(), true.into());
            }
            None => {
                object.insert(
                    "stream_options".to_owned(),
                    serde_json::json!({"include_usage": true}),
                );
            }
        }
    }
    (serde_json::to_vec(&value).ok().map(Bytes::from), add_usage)
}

/// What settling an answer needs to know about its request.
struct Answer<'a> {
    name: &'a str,
    format: &'a Format,
    counter: Counter,
    prompt: u64,
    hide_usage_chunk: bool,
}

impl Answer<'_> {
    /// Settles a whole JSON answer (read for its usage) or meters a stream as it passes.
    async fn finish(&self, response: Response<Body>, settlement: Settlement) -> Response<Body> {
        let budget = settlement.budget;
        let held = settlement.grant.held;
        let spent = |settled: Option<u64>, usage: Option<Usage>| BudgetSpent {
            budget: self.name.to_owned(),
            reserved: held,
            settled,
            usage,
        };
        match response.extensions().get::<Outcome>() {
            Some(Outcome::Forwarded) => {}
            // The upstream did not answer in time: it may have worked on the prompt.
            Some(Outcome::Rejected(RejectionKind::GatewayTimeout)) => {
                let actual = budget.cost(self.prompt, 0);
                settlement.settle(actual);
                let mut response = response;
                response.extensions_mut().insert(spent(Some(actual), None));
                return response;
            }
            // No connection, or refused before the upstream: nothing was produced.
            _ => {
                settlement.settle(0);
                let mut response = response;
                response.extensions_mut().insert(spent(Some(0), None));
                return response;
            }
        }
        let (mut parts, body) = response.into_parts();
        let streamed = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
        if streamed {
            let meter = Meter::new(
                self.format,
                self.counter,
                settlement.grant.output,
                self.prompt,
                self.hide_usage_chunk,
                settlement,
            );
            parts.extensions.insert(spent(None, None));
            parts.headers.remove(http::header::CONTENT_LENGTH);
            return Response::from_parts(parts, stream::metered(body, meter));
        }
        let Ok(collected) = http_body_util::Limited::new(body, MAX_ANSWER)
            .collect()
            .await
        else {
            // Too large, or broken mid-way: the reservation is what it may have cost.
            settlement.settle(held);
            parts.extensions.insert(spent(Some(held), None));
            return Response::from_parts(parts, wbody::full(Bytes::new()));
        };
        let bytes = collected.to_bytes();
        let reported = usage::of_answer(&bytes);
        let actual = match reported {
            Some(usage) => budget.cost(usage.prompt, usage.output),
            // No usage: the prompt as bounded, and an answer's whole text as its output (an
            // error answer produced none).
            None if parts.status.is_success() => budget.cost(
                self.prompt,
                self.counter.count(&String::from_utf8_lossy(&bytes)),
            ),
            None => budget.cost(self.prompt, 0),
        };
        parts.extensions.insert(spent(Some(actual), reported));
        settlement.settle(actual);
        Response::from_parts(parts, wbody::full(bytes))
    }
}

/// Reports `limit` on a response: `RateLimit-Policy: "name";q=LIMIT;w=SECONDS` and
/// `RateLimit: "name";r=REMAINING;t=SECONDS`.
fn report(
    headers: &mut http::HeaderMap,
    limit: &BudgetLimit,
    remaining: u64,
    reset: std::time::Duration,
) {
    if !limit.headers {
        return;
    }
    let reset = reset.as_secs() + u64::from(reset.subsec_nanos() > 0);
    let policy = format!(
        "\"{}\";q={};w={}",
        limit.name,
        limit.budget.limit,
        limit.budget.period.as_secs()
    );
    let current = format!("\"{}\";r={remaining};t={reset}", limit.name);
    for (name, value) in [("ratelimit-policy", policy), ("ratelimit", current)] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            append_item(headers, &http::HeaderName::from_static(name), value);
        }
    }
}
