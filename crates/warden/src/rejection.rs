//! Every error response Warden sends is built here, and only here.
//!
//! A [`Rejection`] names the class of failure; [`Rejection::into_response`] turns it into an
//! RFC 9457 `application/problem+json` response with `type`, `title`, `status` and the
//! `request_id`, and nothing more: no upstream detail, no internal error text, no paths. The
//! precise reason belongs to logs and the audit trail, never to the client.
//!
//! The response also carries an [`Outcome`] in its extensions so that the metrics and audit
//! layers above learn what happened without parsing bodies.

use std::time::Duration;

use http::{HeaderName, HeaderValue, Response, StatusCode, header};

use crate::body::{self, Body};
use crate::request_id::RequestId;

/// What happened to a request, recorded in response extensions for metrics and audit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// The request reached the upstream and its response was relayed.
    Forwarded,
    /// A CORS preflight answered by the gateway itself.
    Preflight,
    /// The gateway refused or failed the request; the kind says why.
    Rejected(RejectionKind),
}

impl Outcome {
    /// A short, stable label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Forwarded => "forwarded",
            Outcome::Preflight => "preflight",
            Outcome::Rejected(kind) => kind.as_str(),
        }
    }
}

/// The class of a rejection. Stable labels, one per problem type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectionKind {
    /// The request path failed canonicalization (encoded separators, traversal, control bytes...).
    InvalidPath,
    /// The request is malformed in some other way (bad header value, bad request target).
    BadRequest,
    /// No credentials were presented on a route that needs them (401).
    Unauthenticated,
    /// Credentials were presented but are not valid (401 `invalid_token`).
    InvalidCredentials,
    /// The credentials were ambiguous, e.g. two different tokens (400 `invalid_request`).
    InvalidAuthRequest,
    /// Valid credentials, but the route needs a stronger or fresher authentication (401,
    /// RFC 9470 `insufficient_user_authentication`).
    StepUpRequired,
    /// Credentials could not be checked because a key server is unavailable (503).
    AuthUnavailable,
    /// Authenticated, but not allowed to do this (403).
    Forbidden,
    /// A rate limit is exhausted (429).
    TooManyRequests,
    /// A token budget cannot hold the request's prompt and one output token (429).
    BudgetExhausted,
    /// No route matches the canonical path.
    NotFound,
    /// A route matches the path but not the method.
    MethodNotAllowed,
    /// The body exceeded the configured limit (declared or streamed).
    PayloadTooLarge,
    /// A body rule route got a `Content-Type` other than JSON (415).
    UnsupportedMediaType,
    /// The body is not acceptable JSON: syntax, duplicate keys, nesting or size limits (400).
    InvalidJson,
    /// The body fails its route's JSON Schema (422, with an `errors` list).
    SchemaViolation,
    /// The body does not match its route's declared format (400).
    InvalidBodyFormat,
    /// The extracted input texts exceed `max_input_chars` (413).
    InputTooLong,
    /// The requested model is denied or not allowed (403).
    ModelDenied,
    /// Content inspection found a prompt injection (403).
    PromptInjection,
    /// Content inspection found a credential in the request (403).
    SecretDetected,
    /// Content inspection found personal data in the request (403).
    PiiDetected,
    /// A `guards.blocked_patterns` entry with `action: block` matched (403).
    BlockedContent,
    /// The upstream's answer was stopped by an output guard, or could not be inspected (502).
    OutputBlocked,
    /// An external classifier flagged the request (403).
    ContentFlagged,
    /// An external classifier gave no verdict and fails closed (503).
    GuardUnavailable,
    /// Too many or too large request headers.
    HeadersTooLarge,
    /// The gateway did not produce a response within the overall request timeout.
    RequestTimeout,
    /// The client paused longer than `body_read` between two pieces of its body (408).
    BodyTimeout,
    /// A transfer coding the gateway does not implement (501).
    NotImplemented,
    /// Too many requests in flight, at the gateway or toward the upstream (503).
    Overloaded,
    /// The upstream could not be reached or returned an invalid response.
    BadGateway,
    /// The upstream did not answer in time.
    GatewayTimeout,
    /// The gateway is not able to serve (shutting down, dependency down).
    Unavailable,
    /// A bug: a layer panicked or failed unexpectedly.
    Internal,
}

impl RejectionKind {
    /// Every fact about a kind, in one row: stable label, status, title, problem `type` URI
    /// (a stable URN per kind; RFC 9457 §3.1.1 allows any URI).
    fn facts(self) -> (&'static str, StatusCode, &'static str, &'static str) {
        match self {
            RejectionKind::InvalidPath => (
                "invalid_path",
                StatusCode::BAD_REQUEST,
                "Invalid request path",
                "urn:warden:problem:invalid-path",
            ),
            RejectionKind::BadRequest => (
                "bad_request",
                StatusCode::BAD_REQUEST,
                "Bad request",
                "urn:warden:problem:bad-request",
            ),
            RejectionKind::Unauthenticated => (
                "unauthenticated",
                StatusCode::UNAUTHORIZED,
                "Authentication required",
                "urn:warden:problem:unauthenticated",
            ),
            RejectionKind::InvalidCredentials => (
                "invalid_credentials",
                StatusCode::UNAUTHORIZED,
                "Invalid credentials",
                "urn:warden:problem:invalid-credentials",
            ),
            RejectionKind::InvalidAuthRequest => (
                "invalid_auth_request",
                StatusCode::BAD_REQUEST,
                "Ambiguous credentials",
                "urn:warden:problem:invalid-auth-request",
            ),
            RejectionKind::StepUpRequired => (
                "step_up_required",
                StatusCode::UNAUTHORIZED,
                "Stronger authentication required",
                "urn:warden:problem:step-up-required",
            ),
            RejectionKind::AuthUnavailable => (
                "auth_unavailable",
                StatusCode::SERVICE_UNAVAILABLE,
                "Authentication temporarily unavailable",
                "urn:warden:problem:auth-unavailable",
            ),
            RejectionKind::Forbidden => (
                "forbidden",
                StatusCode::FORBIDDEN,
                "Forbidden",
                "urn:warden:problem:forbidden",
            ),
            RejectionKind::TooManyRequests => (
                "rate_limited",
                StatusCode::TOO_MANY_REQUESTS,
                "Too many requests",
                "urn:warden:problem:rate-limited",
            ),
            RejectionKind::BudgetExhausted => (
                "budget_exhausted",
                StatusCode::TOO_MANY_REQUESTS,
                "Token budget exhausted",
                "urn:warden:problem:token-budget-exhausted",
            ),
            RejectionKind::NotFound => (
                "not_found",
                StatusCode::NOT_FOUND,
                "Not found",
                "urn:warden:problem:not-found",
            ),
            RejectionKind::MethodNotAllowed => (
                "method_not_allowed",
                StatusCode::METHOD_NOT_ALLOWED,
                "Method not allowed",
                "urn:warden:problem:method-not-allowed",
            ),
            RejectionKind::PayloadTooLarge => (
                "payload_too_large",
                StatusCode::PAYLOAD_TOO_LARGE,
                "Request body too large",
                "urn:warden:problem:payload-too-large",
            ),
            RejectionKind::UnsupportedMediaType => (
                "unsupported_media_type",
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Unsupported media type",
                "urn:warden:problem:unsupported-media-type",
            ),
            RejectionKind::InvalidJson => (
                "invalid_json",
                StatusCode::BAD_REQUEST,
                "Invalid JSON body",
                "urn:warden:problem:invalid-json",
            ),
            RejectionKind::SchemaViolation => (
                "schema_violation",
                StatusCode::UNPROCESSABLE_ENTITY,
                "Body does not match its schema",
                "urn:warden:problem:schema-violation",
            ),
            RejectionKind::InvalidBodyFormat => (
                "invalid_body_format",
                StatusCode::BAD_REQUEST,
                "Body does not match its format",
                "urn:warden:problem:invalid-body-format",
            ),
            RejectionKind::InputTooLong => (
                "input_too_long",
                StatusCode::PAYLOAD_TOO_LARGE,
                "Input text too long",
                "urn:warden:problem:input-too-long",
            ),
            RejectionKind::ModelDenied => (
                "model_denied",
                StatusCode::FORBIDDEN,
                "Model not allowed",
                "urn:warden:problem:model-denied",
            ),
            RejectionKind::PromptInjection => (
                "prompt_injection",
                StatusCode::FORBIDDEN,
                "Request refused by content inspection",
                "urn:warden:problem:prompt-injection",
            ),
            RejectionKind::SecretDetected => (
                "secret_detected",
                StatusCode::FORBIDDEN,
                "Request refused by content inspection",
                "urn:warden:problem:secret-detected",
            ),
            RejectionKind::PiiDetected => (
                "pii_detected",
                StatusCode::FORBIDDEN,
                "Request refused by content inspection",
                "urn:warden:problem:pii-detected",
            ),
            RejectionKind::BlockedContent => (
                "blocked_content",
                StatusCode::FORBIDDEN,
                "Request refused by content inspection",
                "urn:warden:problem:blocked-content",
            ),
            RejectionKind::ContentFlagged => (
                "content_flagged",
                StatusCode::FORBIDDEN,
                "Request refused by content inspection",
                "urn:warden:problem:content-flagged",
            ),
            RejectionKind::GuardUnavailable => (
                "guard_unavailable",
                StatusCode::SERVICE_UNAVAILABLE,
                "Content inspection unavailable",
                "urn:warden:problem:guard-unavailable",
            ),
            RejectionKind::OutputBlocked => (
                "output_blocked",
                StatusCode::BAD_GATEWAY,
                "Answer withheld by content inspection",
                "urn:warden:problem:output-blocked",
            ),
            RejectionKind::HeadersTooLarge => (
                "headers_too_large",
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "Request headers too large",
                "urn:warden:problem:headers-too-large",
            ),
            RejectionKind::RequestTimeout => (
                "request_timeout",
                StatusCode::GATEWAY_TIMEOUT,
                "Request timed out",
                "urn:warden:problem:request-timeout",
            ),
            RejectionKind::BodyTimeout => (
                "body_timeout",
                StatusCode::REQUEST_TIMEOUT,
                "Request body timed out",
                "urn:warden:problem:body-timeout",
            ),
            RejectionKind::NotImplemented => (
                "not_implemented",
                StatusCode::NOT_IMPLEMENTED,
                "Not implemented",
                "urn:warden:problem:not-implemented",
            ),
            RejectionKind::Overloaded => (
                "overloaded",
                StatusCode::SERVICE_UNAVAILABLE,
                "Overloaded",
                "urn:warden:problem:overloaded",
            ),
            RejectionKind::BadGateway => (
                "bad_gateway",
                StatusCode::BAD_GATEWAY,
                "Bad gateway",
                "urn:warden:problem:bad-gateway",
            ),
            RejectionKind::GatewayTimeout => (
                "gateway_timeout",
                StatusCode::GATEWAY_TIMEOUT,
                "Upstream timed out",
                "urn:warden:problem:gateway-timeout",
            ),
            RejectionKind::Unavailable => (
                "unavailable",
                StatusCode::SERVICE_UNAVAILABLE,
                "Service unavailable",
                "urn:warden:problem:unavailable",
            ),
            RejectionKind::Internal => (
                "internal",
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal error",
                "urn:warden:problem:internal",
            ),
        }
    }

    /// A short, stable label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        self.facts().0
    }

    fn status(self) -> StatusCode {
        self.facts().1
    }

    fn title(self) -> &'static str {
        self.facts().2
    }

    fn type_uri(self) -> &'static str {
        self.facts().3
    }
}

/// A refusal or failure, ready to become a problem+json response.
#[derive(Clone, Debug)]
pub struct Rejection {
    kind: RejectionKind,
    /// The one header some kinds carry (`Allow`, `WWW-Authenticate`, `Retry-After`), set only by
    /// the named constructors below.
    header: Option<(HeaderName, HeaderValue)>,
    /// Field errors of a schema violation, as the problem's `errors` member.
    errors: Option<Box<[FieldError]>>,
}

/// One field of a request that fails a rule: where, and what the rule requires there. Never the
/// submitted value.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    /// RFC 6901 pointer into the body (`""` for the whole body).
    pub pointer: String,
    /// What is required there, in a few words.
    pub message: String,
}

/// RFC 6750 challenges: constant, so never formatted per request.
const CHALLENGE: HeaderValue = HeaderValue::from_static("Bearer realm=\"warden\"");
const CHALLENGE_INVALID_TOKEN: HeaderValue =
    HeaderValue::from_static("Bearer realm=\"warden\", error=\"invalid_token\"");
const CHALLENGE_INVALID_REQUEST: HeaderValue =
    HeaderValue::from_static("Bearer realm=\"warden\", error=\"invalid_request\"");

impl Rejection {
    /// A rejection of the given kind.
    pub fn new(kind: RejectionKind) -> Self {
        Rejection {
            kind,
            header: None,
            errors: None,
        }
    }

    fn with(kind: RejectionKind, name: HeaderName, value: HeaderValue) -> Self {
        Rejection {
            kind,
            header: Some((name, value)),
            errors: None,
        }
    }

    /// 405 with the `Allow` header listing the methods the route accepts.
    pub fn method_not_allowed(allow: HeaderValue) -> Self {
        Rejection::with(RejectionKind::MethodNotAllowed, header::ALLOW, allow)
    }

    /// 401 for a request without credentials, with the bare RFC 6750 challenge.
    pub fn unauthenticated() -> Self {
        Rejection::with(
            RejectionKind::Unauthenticated,
            header::WWW_AUTHENTICATE,
            CHALLENGE,
        )
    }

    /// 401 for credentials that failed verification (`error="invalid_token"`).
    pub fn invalid_credentials() -> Self {
        Rejection::with(
            RejectionKind::InvalidCredentials,
            header::WWW_AUTHENTICATE,
            CHALLENGE_INVALID_TOKEN,
        )
    }

    /// 400 for an ambiguous authentication request (`error="invalid_request"`).
    pub fn invalid_auth_request() -> Self {
        Rejection::with(
            RejectionKind::InvalidAuthRequest,
            header::WWW_AUTHENTICATE,
            CHALLENGE_INVALID_REQUEST,
        )
    }

    /// The RFC 9470 challenge for a step-up requirement. It depends only on the requirement, so
    /// a layer builds it once and passes it to [`Rejection::step_up_required`].
    pub fn step_up_challenge(acr_values: &[String], max_age: Option<Duration>) -> HeaderValue {
        let mut text = String::from(
            "Bearer realm=\"warden\", error=\"insufficient_user_authentication\", \
             error_description=\"A different authentication level is required\"",
        );
        if !acr_values.is_empty() {
            text.push_str(&format!(", acr_values=\"{}\"", acr_values.join(" ")));
        }
        if let Some(max_age) = max_age {
            text.push_str(&format!(", max_age={}", max_age.as_secs()));
        }
        // acr values are configuration; one unfit for a header falls back to the bare challenge.
        HeaderValue::from_str(&text).unwrap_or(CHALLENGE)
    }

    /// 401 asking for a stronger or fresher authentication (RFC 9470), with `challenge` from
    /// [`Rejection::step_up_challenge`].
    pub fn step_up_required(challenge: HeaderValue) -> Self {
        Rejection::with(
            RejectionKind::StepUpRequired,
            header::WWW_AUTHENTICATE,
            challenge,
        )
    }

    /// 429, with `Retry-After` in whole seconds (rounded up) when the limiter knows when.
    pub fn too_many_requests(retry_after: Option<Duration>) -> Self {
        Rejection::retry_later(RejectionKind::TooManyRequests, retry_after)
    }

    /// 429 from a token budget, with `Retry-After` when the budget next has room.
    pub fn budget_exhausted(retry_after: Option<Duration>) -> Self {
        Rejection::retry_later(RejectionKind::BudgetExhausted, retry_after)
    }

    fn retry_later(kind: RejectionKind, retry_after: Option<Duration>) -> Self {
        match retry_after {
            Some(wait) => {
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                Rejection::with(kind, header::RETRY_AFTER, HeaderValue::from(secs))
            }
            None => Rejection::new(kind),
        }
    }

    /// 422 for a body that fails its schema, listing where.
    pub fn schema_violation(errors: Vec<FieldError>) -> Self {
        Rejection {
            errors: Some(errors.into_boxed_slice()),
            ..Rejection::new(RejectionKind::SchemaViolation)
        }
    }

    /// The class of this rejection.
    pub fn kind(&self) -> RejectionKind {
        self.kind
    }

    /// Builds the problem+json response. `request_id` is the id the request-id layer assigned;
    /// it is echoed so a client can quote it to operators.
    pub fn into_response(self, request_id: Option<&RequestId>) -> Response<Body> {
        let status = self.kind.status();
        // Every member is static text or a request id validated to `[A-Za-z0-9._:-]`, so the
        // body is written directly, without a JSON value tree; serde_json quotes the strings.
        let request_id = match request_id {
            Some(id) => serde_json::Value::from(id.as_str()).to_string(),
            None => "null".to_owned(),
        };
        // Field errors hold pointers and fixed messages; serde_json quotes them.
        let errors = match &self.errors {
            Some(errors) => format!(
                ",\"errors\":{}",
                serde_json::to_string(errors).unwrap_or_else(|_| "[]".into())
            ),
            None => String::new(),
        };
        let problem = format!(
            "{{\"type\":\"{}\",\"title\":\"{}\",\"status\":{},\"request_id\":{}{errors}}}",
            self.kind.type_uri(),
            self.kind.title(),
            status.as_u16(),
            request_id
        );
        let mut response = Response::new(body::full(problem));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some((name, value)) = self.header {
            headers.insert(name, value);
        }
        response
            .extensions_mut()
            .insert(Outcome::Rejected(self.kind));
        response
    }

    /// Builds the response for a request whose extensions may hold a [`RequestId`].
    pub fn into_response_for(self, extensions: &http::Extensions) -> Response<Body> {
        self.into_response(extensions.get::<RequestId>())
    }
}

impl From<RejectionKind> for Rejection {
    fn from(kind: RejectionKind) -> Self {
        Rejection::new(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn problem_json_has_the_rfc9457_members_and_nothing_else() {
        let id = RequestId::parse("abc-123").expect("valid id");
        let response = Rejection::new(RejectionKind::BadGateway).into_response(Some(&id));
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        assert_eq!(
            response.extensions().get::<Outcome>(),
            Some(&Outcome::Rejected(RejectionKind::BadGateway))
        );
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let value: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        let object = value.as_object().expect("object");
        assert_eq!(object.len(), 4);
        assert_eq!(object["status"], 502);
        assert_eq!(object["request_id"], "abc-123");
        assert_eq!(object["type"], "urn:warden:problem:bad-gateway");
    }

    #[tokio::test]
    async fn a_schema_violation_lists_its_field_errors() {
        let errors = vec![FieldError {
            pointer: "/a\"b".into(),
            message: "must be of type integer".into(),
        }];
        let response = Rejection::schema_violation(errors).into_response(None);
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let value: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(value["type"], "urn:warden:problem:schema-violation");
        assert_eq!(value["errors"][0]["pointer"], "/a\"b");
        assert_eq!(value["errors"][0]["message"], "must be of type integer");
    }

    #[test]
    fn method_not_allowed_carries_allow() {
        let response = Rejection::method_not_allowed(HeaderValue::from_static("GET, HEAD"))
            .into_response(None);
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[header::ALLOW], "GET, HEAD");
    }

    #[test]
    fn named_constructors_carry_their_one_header() {
        let cases = [
            (
                Rejection::unauthenticated(),
                401,
                "www-authenticate",
                "Bearer realm=\"warden\"",
            ),
            (
                Rejection::invalid_credentials(),
                401,
                "www-authenticate",
                "Bearer realm=\"warden\", error=\"invalid_token\"",
            ),
            (
                Rejection::invalid_auth_request(),
                400,
                "www-authenticate",
                "Bearer realm=\"warden\", error=\"invalid_request\"",
            ),
            // Retry-After rounds up: a client told "0" would retry at once and be refused again.
            (
                Rejection::too_many_requests(Some(Duration::from_millis(1200))),
                429,
                "retry-after",
                "2",
            ),
        ];
        for (rejection, status, name, value) in cases {
            let response = rejection.into_response(None);
            assert_eq!(response.status().as_u16(), status);
            assert_eq!(response.headers()[name], value);
            assert_eq!(response.headers().len(), 3, "{:?}", response.headers());
        }
        let none = Rejection::too_many_requests(None).into_response(None);
        assert!(none.headers().get(header::RETRY_AFTER).is_none());
        let challenge = Rejection::step_up_challenge(
            &["mfa".into(), "hwk".into()],
            Some(Duration::from_secs(300)),
        );
        assert_eq!(
            challenge,
            "Bearer realm=\"warden\", error=\"insufficient_user_authentication\", \
             error_description=\"A different authentication level is required\", \
             acr_values=\"mfa hwk\", max_age=300"
        );
        let response = Rejection::step_up_required(challenge.clone()).into_response(None);
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()[header::WWW_AUTHENTICATE], challenge);
    }
}
