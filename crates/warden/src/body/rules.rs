//! The per-route body rules layer (DESIGN.md §2 step 14), on routes that declare a body.
//!
//! It buffers the body — only here, and only up to the route's limit, which the request-limits
//! layer enforces on the streamed bytes — then, in one pass over the bytes: media type (415),
//! JSON safety (400), schema (422 with field errors), format extraction (400), input length
//! (413), model allow/deny (403), optional HTML sanitizing of the declared text fields. The
//! extracted [`ExtractedBody`] goes into the request extensions (`Arc<ExtractedBody>`) for the
//! policy, the guards and the budgets; the upstream gets exactly the bytes that were checked, or,
//! when sanitizing changed a text, the re-serialized document with its new `Content-Length`.
//!
//! It runs after authentication and before authorization, so a policy can read
//! `input.request.body` (as Envoy's ext_authz does with `with_request_body`); an unauthenticated
//! caller never makes the gateway read a body. Requests without a body on methods that carry
//! none (`GET`, `HEAD`, `DELETE`, `OPTIONS`) pass untouched; every other request must bring JSON.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, header};
use http_body::Body as _;
use http_body_util::BodyExt;
use tower::{Layer, Service};

use super::format::{ExtractedBody, Format, Role};
use super::json::{self, JsonLimits};
use super::schema::Schema;
use crate::body::{self, Body};
use crate::future::ResponseFuture;
use crate::guard::detect::{DataGuard, Family};
use crate::guard::external::{Classify, Judgement, judge_all};
use crate::guard::injection::{GuardAction, PromptGuard};
use crate::guard::models::{ModelRules, ModelVerdict};
use crate::guard::output::{FilteredBody, OutputError, OutputGuard};
use crate::guard::{GuardFinding, GuardFindings};
use crate::limit::client_body_failure;
use crate::rejection::{Rejection, RejectionKind};
use crate::request_id::RequestId;

/// The header a flagging guard adds to the forwarded request.
pub const GUARD_HEADER: http::HeaderName = http::HeaderName::from_static("x-warden-guard");

/// The most field errors a 422 lists.
const MAX_SCHEMA_ERRORS: usize = 20;

/// A route's compiled body rules.
#[derive(Clone, Debug)]
pub struct BodyRules {
    /// JSON safety limits.
    pub limits: JsonLimits,
    /// JSON Schema, if any.
    pub schema: Option<Arc<Schema>>,
    /// The declared format.
    pub format: Format,
    /// `provider` of `provider:model` (explicit, or the format's).
    pub provider: Option<String>,
    /// Most Unicode scalar values over all extracted texts.
    pub max_input_chars: Option<usize>,
    /// Most Unicode scalar values in any one extracted text.
    pub max_text_chars: Option<usize>,
    /// Model allow/deny, if any.
    pub models: Option<Arc<ModelRules>>,
    /// Clean the extracted texts as HTML.
    pub sanitize_html: bool,
    /// Prompt-injection inspection of the extracted texts, if any.
    pub prompt_guard: Option<Arc<PromptGuard>>,
    /// Secret and PII inspection of the extracted texts, if any.
    pub data_guard: Option<Arc<DataGuard>>,
    /// Inspection of the upstream's answers, if any.
    pub output_guard: Option<Arc<OutputGuard>>,
    /// External classifiers of the extracted texts, run after every local rule passed.
    pub classifiers: Vec<Arc<dyn Classify>>,
}

/// A body that passed its rules.
#[derive(Debug)]
pub struct Checked {
    /// What the body means.
    pub extracted: ExtractedBody,
    /// The bytes to forward when sanitizing or redaction rewrote the body.
    pub rewritten: Option<Bytes>,
    /// What guards in `flag` mode found, as `X-Warden-Guard` entries (the request goes on,
    /// marked; rule ids and types only).
    pub flags: Vec<String>,
    /// Every finding, for the request's record.
    pub findings: Vec<GuardFinding>,
}

impl BodyRules {
    /// Rules for `format` with secure defaults and nothing else.
    pub fn new(format: Format) -> Self {
        BodyRules {
            limits: JsonLimits::default(),
            schema: None,
            provider: format.provider().map(str::to_owned),
            format,
            max_input_chars: None,
            max_text_chars: None,
            models: None,
            sanitize_html: false,
            prompt_guard: None,
            data_guard: None,
            output_guard: None,
            classifiers: Vec::new(),
        }
    }

    /// Runs every rule on a buffered body: the extracted body, the bytes to forward when
    /// sanitizing or redaction rewrote them, and what flagging guards found.
    pub fn check(&self, bytes: &[u8]) -> Result<Checked, Refusal> {
        let document = self.parse(bytes)?;
        if let Some(schema) = &self.schema {
            let errors = schema.violations(&document, MAX_SCHEMA_ERRORS);
            if !errors.is_empty() {
                let reason = format!(
                    "{} schema violation(s), first at {:?}",
                    errors.len(),
                    errors[0].pointer
                );
                return Err(Refusal {
                    rejection: Rejection::schema_violation(errors),
                    reason: reason.into_boxed_str(),
                    findings: None,
                });
            }
        }
        let mut extracted = self.extract(document)?;
        self.check_lengths(&extracted)?;
        if let Some(models) = &self.models {
            let verdict = models.check(self.provider.as_deref(), extracted.model.as_deref());
            if verdict != ModelVerdict::Allowed {
                return Err(Refusal::new(
                    RejectionKind::ModelDenied,
                    format!(
                        "model {:?} of provider {:?} is {}",
                        extracted.model.as_deref().unwrap_or("(none)"),
                        self.provider.as_deref().unwrap_or("*"),
                        if verdict == ModelVerdict::Denied {
                            "denied"
                        } else {
                            "not allowed"
                        }
                    ),
                ));
            }
        }
        let mut rewritten = None;
        if self.sanitize_html
            && let Some(bytes) = sanitize(&extracted)
        {
            // Later layers read the texts the upstream will get: extract the rewrite again.
            extracted = self.extract(self.parse(&bytes)?)?;
            rewritten = Some(bytes);
        }
        let mut flags = Vec::new();
        let mut findings = Vec::new();
        if let Some(guard) = &self.prompt_guard
            && let Some(report) = guard.inspect(&extracted)
        {
            for rule in &report.rules {
                metrics::counter!(
                    "warden_guard_findings_total",
                    "guard" => "prompt_injection",
                    "rule" => rule.to_string(),
                    "direction" => "input",
                )
                .increment(1);
                findings.push(GuardFinding {
                    guard: "prompt_injection".into(),
                    rule: rule.to_string(),
                    location: report.pointer.clone(),
                });
            }
            match guard.action {
                GuardAction::Block => {
                    return Err(Refusal::new(
                        RejectionKind::PromptInjection,
                        format!(
                            "prompt injection at {} (score {:.2}: {})",
                            report.pointer,
                            report.score,
                            report.rules.join(", ")
                        ),
                    )
                    .with_findings(findings));
                }
                GuardAction::Flag => flags.push(report.header_value()),
            }
        }
        if let Some(guard) = &self.data_guard {
            let report = guard.inspect(&extracted);
            for (family, rule, pointer) in &report.rules {
                metrics::counter!(
                    "warden_guard_findings_total",
                    "guard" => family.as_str(),
                    "rule" => rule.clone(),
                    "direction" => "input",
                )
                .increment(1);
                findings.push(GuardFinding {
                    guard: family.as_str().into(),
                    rule: rule.clone(),
                    location: pointer.clone(),
                });
            }
            if let Some((family, found)) = &report.blocked {
                let kind = match family {
                    Family::Secrets => RejectionKind::SecretDetected,
                    Family::Pii => RejectionKind::PiiDetected,
                    Family::BlockedPatterns => RejectionKind::BlockedContent,
                };
                return Err(Refusal::new(
                    kind,
                    format!("{} in the body: {}", family.as_str(), found.join(",")),
                )
                .with_findings(findings));
            }
            for (family, found) in &report.flagged {
                flags.push(format!(
                    "{}; {}={}",
                    family.as_str(),
                    family.labels(),
                    found.join(",")
                ));
            }
            if let Some(bytes) = rewrite(&extracted, report.redactions) {
                extracted = self.extract(self.parse(&bytes)?)?;
                rewritten = Some(bytes);
            }
        }
        Ok(Checked {
            extracted,
            rewritten,
            flags,
            findings,
        })
    }

    fn parse(&self, bytes: &[u8]) -> Result<json::Document, Refusal> {
        json::parse(bytes, &self.limits)
            .map_err(|e| Refusal::new(RejectionKind::InvalidJson, e.to_string()))
    }

    /// The format's extraction, with the route's provider.
    fn extract(&self, document: json::Document) -> Result<ExtractedBody, Refusal> {
        let mut extracted = self
            .format
            .extract(document)
            .map_err(|e| Refusal::new(RejectionKind::InvalidBodyFormat, e.to_string()))?;
        extracted.provider.clone_from(&self.provider);
        Ok(extracted)
    }

    /// Input length in characters. A character takes at least one byte, so a text within a limit
    /// in bytes is within it in characters: characters are counted only past that.
    fn check_lengths(&self, extracted: &ExtractedBody) -> Result<(), Refusal> {
        if let Some(max) = self.max_text_chars {
            for text in extracted.texts() {
                if text.content.len() > max {
                    let chars = text.content.chars().count();
                    if chars > max {
                        return Err(Refusal::new(
                            RejectionKind::InputTooLong,
                            format!("text at {} has {chars} characters", text.pointer()),
                        ));
                    }
                }
            }
        }
        if let Some(max) = self.max_input_chars {
            let bytes: usize = extracted.texts().map(|t| t.content.len()).sum();
            if bytes > max {
                let chars: usize = extracted.texts().map(|t| t.content.chars().count()).sum();
                if chars > max {
                    return Err(Refusal::new(
                        RejectionKind::InputTooLong,
                        format!("input texts have {chars} characters, more than {max}"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Cleans every extracted text as HTML; the re-serialized document when any changed.
fn sanitize(extracted: &ExtractedBody) -> Option<Bytes> {
    let changed = extracted
        .texts()
        .filter_map(|text| {
            let clean = ammonia::clean(text.content);
            (clean != text.content).then_some((text.pointer(), clean))
        })
        .collect();
    rewrite(extracted, changed)
}

/// The document with the strings at these pointers replaced, re-serialized; `None` when there
/// is nothing to replace.
fn rewrite(extracted: &ExtractedBody, changed: Vec<(String, String)>) -> Option<Bytes> {
    if changed.is_empty() {
        return None;
    }
    let mut value = extracted.document().to_value();
    for (pointer, text) in changed {
        if let Some(slot) = value.pointer_mut(&pointer) {
            *slot = serde_json::Value::String(text);
        }
    }
    // Serializing a Value cannot fail (string keys, finite numbers).
    serde_json::to_vec(&value).ok().map(Bytes::from)
}

/// Why the body's media type cannot be inspected, if it cannot. Exactly one JSON `Content-Type`
/// (an upstream that reads the last of two would parse what Warden did not), and no content
/// coding (the upstream would decode bytes Warden read as JSON into something else; RFC 7694
/// answers an unsupported coding with 415).
fn media_problem(headers: &http::HeaderMap) -> Option<&'static str> {
    let mut types = headers.get_all(header::CONTENT_TYPE).iter();
    match (types.next(), types.next()) {
        (Some(value), None) if json::is_json_media_type(value) => {}
        (Some(_), Some(_)) => return Some("more than one Content-Type"),
        _ => return Some("Content-Type is not application/json or +json (UTF-8)"),
    }
    let encoded = headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .any(|coding| !coding.as_bytes().eq_ignore_ascii_case(b"identity"));
    encoded.then_some("a Content-Encoding other than identity cannot be inspected")
}

/// The upstream's answer through the output guard: a JSON answer buffered and redacted, a
/// stream filtered as it flows, anything else refused (it cannot be inspected).
async fn guard_answer(
    response: Response<Body>,
    guard: Arc<OutputGuard>,
    format: &Format,
    request_id: Option<RequestId>,
) -> Response<Body> {
    let status = response.status();
    if status == http::StatusCode::NO_CONTENT
        || status == http::StatusCode::NOT_MODIFIED
        || response.body().is_end_stream()
    {
        return response;
    }
    let refuse = |error: OutputError, detail: &str| {
        tracing::info!(
            target: "warden::guard",
            request_id = request_id.as_ref().map(RequestId::as_str),
            code = error.code(),
            reason = %error,
            detail,
            "answer refused"
        );
        metrics::counter!("warden_output_stopped_total", "code" => error.code()).increment(1);
        Rejection::new(RejectionKind::OutputBlocked).into_response(request_id.as_ref())
    };
    let (mut parts, body) = response.into_parts();
    let encoded = parts
        .headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .any(|coding| !coding.as_bytes().eq_ignore_ascii_case(b"identity"));
    if encoded {
        return refuse(OutputError::Invalid("a compressed answer"), "");
    }
    let Some(media) = parts.headers.get(header::CONTENT_TYPE).cloned() else {
        return refuse(OutputError::Invalid("an answer without Content-Type"), "");
    };
    let essence = media
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let id = request_id.as_ref().map(|id| id.as_str().to_owned());
    if json::is_json_media_type(&media) {
        let bytes = match http_body_util::Limited::new(body, guard.max_bytes)
            .collect()
            .await
        {
            Ok(collected) => collected.to_bytes(),
            Err(error) if error.is::<http_body_util::LengthLimitError>() => {
                return refuse(OutputError::TooLarge(guard.max_bytes), "");
            }
            Err(error) => {
                tracing::warn!(
                    target: "warden::guard",
                    request_id = request_id.as_ref().map(RequestId::as_str),
                    error = %error,
                    "the upstream's answer failed while it was read"
                );
                return Rejection::new(RejectionKind::BadGateway)
                    .into_response(request_id.as_ref());
            }
        };
        let inspected = match guard.filter_json(&bytes) {
            Ok(inspected) => inspected,
            Err(error) => return refuse(error, ""),
        };
        if !guard.classifiers.is_empty() {
            let texts = OutputGuard::texts_of(&inspected);
            let judged: Result<(), OutputError> =
                judge_all(&guard.classifiers, &texts).await.into();
            if let Err(error) = judged {
                return refuse(error, "");
            }
        }
        let rewritten = match serde_json::to_vec(&inspected) {
            Ok(rewritten) => rewritten,
            Err(_) => return refuse(OutputError::Invalid("the JSON answer"), ""),
        };
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(rewritten.len()));
        return Response::from_parts(parts, body::full(rewritten));
    }
    let filtered = if essence == "text/event-stream" {
        FilteredBody::sse(body, guard, format, id)
    } else if essence.starts_with("text/") {
        FilteredBody::text(body, guard, id)
    } else {
        return refuse(
            OutputError::Invalid("an answer of this media type"),
            &essence,
        );
    };
    // The length changes with redaction; the body is sent chunked.
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, body::boxed(filtered))
}

/// Body text shared between the extracted document and the forwarded body.
struct SharedText(Arc<str>);

impl AsRef<[u8]> for SharedText {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// A refused body: the client's answer and the operator's reason (never the content).
#[derive(Debug)]
pub struct Refusal {
    /// What the client gets.
    pub rejection: Rejection,
    /// What the log says.
    pub reason: Box<str>,
    /// What the guards found before refusing, for the request's record (boxed: refusals
    /// travel in `Result`s and most carry none).
    pub findings: Option<Box<Vec<GuardFinding>>>,
}

impl Refusal {
    fn new(kind: RejectionKind, reason: String) -> Self {
        Refusal {
            rejection: Rejection::new(kind),
            reason: reason.into_boxed_str(),
            findings: None,
        }
    }

    fn with_findings(mut self, findings: Vec<GuardFinding>) -> Self {
        self.findings = (!findings.is_empty()).then(|| Box::new(findings));
        self
    }
}

/// Layer applying [`BodyRules`].
#[derive(Clone, Debug)]
pub struct BodyRulesLayer {
    rules: Arc<BodyRules>,
}

impl BodyRulesLayer {
    /// Applies `rules`.
    pub fn new(rules: BodyRules) -> Self {
        BodyRulesLayer {
            rules: Arc::new(rules),
        }
    }
}

impl<S> Layer<S> for BodyRulesLayer {
    type Service = BodyRulesService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        BodyRulesService {
            inner,
            rules: self.rules.clone(),
        }
    }
}

/// Service produced by [`BodyRulesLayer`].
#[derive(Clone, Debug)]
pub struct BodyRulesService<S> {
    inner: S,
    rules: Arc<BodyRules>,
}

impl<S> Service<Request<Body>> for BodyRulesService<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let bodiless = matches!(
            *req.method(),
            Method::GET | Method::HEAD | Method::DELETE | Method::OPTIONS
        ) && req.body().is_end_stream()
            && !req.headers().contains_key(header::CONTENT_TYPE);
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let output = self
            .rules
            .output_guard
            .clone()
            .filter(|guard| guard.is_active());
        if let Some(guard) = output {
            // Answers are read as text: the upstream must not compress them.
            req.headers_mut().remove(header::ACCEPT_ENCODING);
            let head = req.method() == Method::HEAD;
            let request_id = req.extensions().get::<RequestId>().cloned();
            let format = self.rules.format.clone();
            let call = if bodiless {
                ResponseFuture::new(inner.call(req))
            } else {
                self.check_then_call(inner, req)
            };
            return ResponseFuture::new(async move {
                let response = call.await?;
                if head {
                    return Ok(response);
                }
                Ok(guard_answer(response, guard, &format, request_id).await)
            });
        }
        if bodiless {
            return ResponseFuture::new(inner.call(req));
        }
        self.check_then_call(inner, req)
    }
}

impl<S> BodyRulesService<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Send + 'static,
    S::Future: Send,
{
    /// Reads and checks the body, then forwards the request.
    fn check_then_call(&self, mut inner: S, req: Request<Body>) -> ResponseFuture<S::Error> {
        let rules = self.rules.clone();
        ResponseFuture::new(async move {
            let (mut parts, body) = req.into_parts();
            let refuse = |parts: &http::request::Parts, refusal: Refusal| {
                let request_id = parts.extensions.get::<RequestId>();
                tracing::info!(
                    target: "warden::body",
                    request_id = request_id.map(RequestId::as_str),
                    kind = refusal.rejection.kind().as_str(),
                    reason = %refusal.reason,
                    "request body refused"
                );
                let mut response = refusal.rejection.into_response(request_id);
                if let Some(findings) = refusal.findings {
                    response.extensions_mut().insert(GuardFindings(*findings));
                }
                Ok(response)
            };
            if let Some(problem) = media_problem(&parts.headers) {
                let refusal = Refusal::new(RejectionKind::UnsupportedMediaType, problem.into());
                return refuse(&parts, refusal);
            }
            let bytes = match body.collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(error) => {
                    let kind = client_body_failure(&*error).unwrap_or(RejectionKind::BadRequest);
                    return refuse(
                        &parts,
                        Refusal::new(kind, format!("reading the body: {error}")),
                    );
                }
            };
            let Checked {
                extracted,
                rewritten,
                flags,
                mut findings,
            } = match rules.check(&bytes) {
                Ok(checked) => checked,
                Err(refusal) => return refuse(&parts, refusal),
            };
            if !rules.classifiers.is_empty() {
                let texts: Vec<&str> = extracted
                    .texts()
                    .filter(|text| text.role != Role::System)
                    .map(|text| text.content)
                    .collect();
                let refusal = match judge_all(&rules.classifiers, &texts).await {
                    Judgement::Pass => None,
                    Judgement::Flagged { name, categories } => {
                        let reason = format!(
                            "classifier {name} flagged the request ({})",
                            categories.join(",")
                        );
                        findings.extend(categories.into_iter().map(|category| GuardFinding {
                            guard: name.clone(),
                            rule: category,
                            location: String::new(),
                        }));
                        let findings = std::mem::take(&mut findings);
                        Some(
                            Refusal::new(RejectionKind::ContentFlagged, reason)
                                .with_findings(findings),
                        )
                    }
                    Judgement::Failed { name, reason } => Some(
                        Refusal::new(
                            RejectionKind::GuardUnavailable,
                            format!("classifier {name} gave no verdict: {reason}"),
                        )
                        .with_findings(std::mem::take(&mut findings)),
                    ),
                };
                if let Some(refusal) = refusal {
                    return refuse(&parts, refusal);
                }
            }
            if !flags.is_empty() {
                let value = flags.join(", ");
                tracing::info!(
                    target: "warden::guard",
                    request_id = parts.extensions.get::<RequestId>().map(RequestId::as_str),
                    findings = %value,
                    "request flagged"
                );
                // Rule ids, types and numbers only: the value is built from no client text.
                // Clients cannot send this header: the identity strip removes every X-Warden-.
                if let Ok(value) = HeaderValue::from_str(&value) {
                    parts.headers.insert(GUARD_HEADER, value);
                }
            }
            // The document holds the body as validated text: forward that, and let the buffer
            // read from the client go, so a body is held once while the request lives.
            drop(bytes);
            let forwarded = rewritten.unwrap_or_else(|| {
                Bytes::from_owner(SharedText(extracted.document().shared_text()))
            });
            parts.headers.remove(header::TRANSFER_ENCODING);
            parts
                .headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from(forwarded.len()));
            parts.extensions.insert(Arc::new(extracted));
            inner
                .call(Request::from_parts(parts, body::full(forwarded)))
                .await
                .map(|mut response| {
                    if !findings.is_empty() {
                        response.extensions_mut().insert(GuardFindings(findings));
                    }
                    response
                })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::convert::Infallible;
    use tower::ServiceExt;

    fn echo() -> impl Service<
        Request<Body>,
        Response = Response<Body>,
        Error = Infallible,
        Future = impl Future<Output = Result<Response<Body>, Infallible>> + Send,
    > + Clone
    + Send
    + 'static {
        tower::service_fn(|req: Request<Body>| async move {
            let model = req
                .extensions()
                .get::<Arc<ExtractedBody>>()
                .and_then(|b| b.model.clone())
                .unwrap_or_default();
            let length = req.headers().get(header::CONTENT_LENGTH).cloned();
            let bytes = req.into_body().collect().await.expect("body").to_bytes();
            let mut response = Response::new(body::full(bytes));
            response
                .headers_mut()
                .insert("x-model", HeaderValue::from_str(&model).expect("model"));
            if let Some(length) = length {
                response.headers_mut().insert("x-length", length);
            }
            Ok(response)
        })
    }

    async fn send(rules: BodyRules, content_type: &str, body: &str) -> (u16, Response<Body>) {
        let service = BodyRulesLayer::new(rules).layer(echo());
        let req = Request::post("/x")
            .header(header::CONTENT_TYPE, content_type)
            .body(body::full(body.to_owned()))
            .expect("request");
        let response = service.oneshot(req).await.expect("infallible");
        (response.status().as_u16(), response)
    }

    async fn text(response: Response<Body>) -> String {
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        String::from_utf8(bytes.to_vec()).expect("utf-8")
    }

    #[tokio::test]
    async fn the_checked_bytes_are_forwarded_unchanged() {
        let body = "{\"model\":\"gpt-4o\",  \"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
        let (status, response) =
            send(BodyRules::new(Format::OpenAiChat), "application/json", body).await;
        assert_eq!(status, 200);
        assert_eq!(response.headers()["x-model"], "gpt-4o");
        assert_eq!(
            response.headers()["x-length"],
            body.len().to_string().as_str()
        );
        assert_eq!(
            text(response).await,
            body,
            "byte for byte, whitespace included"
        );
    }

    #[tokio::test]
    async fn the_forwarded_body_is_the_documents_text_not_a_copy() {
        let service = BodyRulesLayer::new(BodyRules::new(Format::OpenAiChat)).layer(
            tower::service_fn(|req: Request<Body>| async move {
                let extracted = req
                    .extensions()
                    .get::<Arc<ExtractedBody>>()
                    .cloned()
                    .expect("body");
                let bytes = req.into_body().collect().await.expect("body").to_bytes();
                let shared = bytes.as_ptr() == extracted.document().text().as_ptr();
                Ok::<_, Infallible>(Response::new(body::full(if shared {
                    "shared"
                } else {
                    "copied"
                })))
            }),
        );
        let req = Request::post("/x")
            .header(header::CONTENT_TYPE, "application/json")
            .body(body::full(r#"{"model":"m","messages":[]}"#))
            .expect("request");
        let response = service.oneshot(req).await.expect("infallible");
        assert_eq!(text(response).await, "shared");
    }

    #[tokio::test]
    async fn each_rule_answers_with_its_own_status() {
        let chat = || BodyRules::new(Format::OpenAiChat);
        let ok = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hello there"}]}"#;
        assert_eq!(send(chat(), "text/plain", ok).await.0, 415);
        for (name, value) in [("content-type", "text/plain"), ("content-encoding", "gzip")] {
            let service = BodyRulesLayer::new(chat()).layer(echo());
            let req = Request::post("/x")
                .header(header::CONTENT_TYPE, "application/json")
                .header(name, value)
                .body(body::full(ok))
                .expect("request");
            let status = service.oneshot(req).await.expect("infallible").status();
            assert_eq!(status, 415, "{name}: {value}");
        }
        assert_eq!(
            send(chat(), "application/json", r#"{"a":1,"a":2}"#).await.0,
            400
        );
        assert_eq!(
            send(chat(), "application/json", r#"{"model":"gpt-4o"}"#)
                .await
                .0,
            400
        );
        let mut schema = chat();
        schema.schema = Some(Arc::new(
            Schema::compile(&json!({"required": ["user"]})).expect("schema"),
        ));
        let (status, response) = send(schema, "application/json", ok).await;
        assert_eq!(status, 422);
        assert!(
            text(response)
                .await
                .contains("\"errors\":[{\"pointer\":\"\"")
        );
        let mut short = chat();
        short.max_input_chars = Some(5);
        assert_eq!(send(short, "application/json", ok).await.0, 413);
        let mut each = chat();
        each.max_text_chars = Some(5);
        assert_eq!(send(each, "application/json", ok).await.0, 413);
        let mut models = chat();
        models.models = Some(Arc::new(
            ModelRules::new(Some(&["openai:gpt-3*".to_owned()]), &[]).expect("rules"),
        ));
        assert_eq!(send(models, "application/json", ok).await.0, 403);
    }

    #[tokio::test]
    async fn sanitizing_rewrites_only_text_fields_and_keeps_valid_json() {
        let mut rules = BodyRules::new(Format::OpenAiChat);
        rules.sanitize_html = true;
        let body = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"<b>hi</b><script>alert(1)</script><img src=x onerror=alert(2)>"}],"meta":"<script>kept</script>"}"#;
        let (status, response) = send(rules.clone(), "application/json", body).await;
        assert_eq!(status, 200);
        let length: usize = response.headers()["x-length"]
            .to_str()
            .expect("len")
            .parse()
            .expect("n");
        let forwarded = text(response).await;
        assert_eq!(length, forwarded.len());
        let value: serde_json::Value = serde_json::from_str(&forwarded).expect("valid JSON");
        let content = value["messages"][0]["content"].as_str().expect("text");
        assert!(
            content.contains("<b>hi</b>")
                && !content.contains("script")
                && !content.contains("onerror"),
            "{content}"
        );
        assert_eq!(
            value["meta"], "<script>kept</script>",
            "not a declared text field"
        );
        let clean = r#"{"model":"gpt-4o", "messages":[{"role":"user","content":"plain"}]}"#;
        let (_, response) = send(rules, "application/json", clean).await;
        assert_eq!(
            text(response).await,
            clean,
            "nothing to clean: the original bytes"
        );
    }

    #[tokio::test]
    async fn bodiless_reads_pass_and_empty_posts_do_not() {
        let service = BodyRulesLayer::new(BodyRules::new(Format::OpenAiChat)).layer(echo());
        let get = Request::get("/x").body(body::empty()).expect("request");
        assert_eq!(
            service.clone().oneshot(get).await.expect("ok").status(),
            200
        );
        let post = Request::post("/x")
            .header(header::CONTENT_TYPE, "application/json")
            .body(body::empty())
            .expect("request");
        assert_eq!(service.oneshot(post).await.expect("ok").status(), 400);
    }

    /// The fuzz targets' invariants on their seed corpora (`fuzz/corpus`): a smoke run of the
    /// fuzzers on stable Rust, in every test run.
    #[test]
    fn fuzz_seed_corpora_hold_the_fuzz_invariants() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
        let mut seen = 0;
        for (target, format) in [
            ("json_guard", None),
            ("openai_chat", Some(Format::OpenAiChat)),
            ("openai_responses", Some(Format::OpenAiResponses)),
            ("anthropic_messages", Some(Format::AnthropicMessages)),
        ] {
            for entry in std::fs::read_dir(root.join(target)).expect("corpus") {
                let data = std::fs::read(entry.expect("entry").path()).expect("seed");
                seen += 1;
                let limits = JsonLimits {
                    max_depth: JsonLimits::MAX_DEPTH,
                    ..JsonLimits::default()
                };
                let Ok(document) = json::parse(&data, &limits) else {
                    continue;
                };
                let reference: serde_json::Value =
                    serde_json::from_slice(&data).expect("serde_json");
                assert_eq!(document.to_value(), reference);
                if let Some(format) = &format {
                    let extracted = format.extract(document).expect("seeds match their format");
                    for text in extracted.texts() {
                        let at_pointer = extracted
                            .document()
                            .lookup(&text.pointer())
                            .and_then(|v| v.as_str());
                        assert_eq!(at_pointer, Some(text.content), "{}", text.pointer());
                    }
                }
            }
        }
        assert!(seen >= 10, "{seen} seeds");
    }
}
