//! Request-body rules through real sockets: JSON safety, schema, LLM formats, input length,
//! model allow/deny, HTML sanitizing, and routes without rules that keep streaming.

use crate::common::*;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use warden_gateway::token::{SigningKey, now_unix};

const SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["task", "priority"],
  "additionalProperties": false,
  "properties": {
    "task": { "type": "string", "minLength": 3 },
    "priority": { "type": "integer", "minimum": 1, "maximum": 5 },
    "tags": { "type": "array", "items": { "type": "string" }, "maxItems": 3 }
  }
}"#;

fn yaml(schema: &std::path::Path) -> String {
    format!(
        r#"
guards:
  models: {{ allow: ['openai:gpt-4o*', 'anthropic:claude-3-5-*'], deny: ['*:*-preview'] }}
routes:
  - {{ path: /agents/run, methods: [POST], auth: none, body: {{ max_bytes: 1MiB, schema: "{}", format: json, text_fields: [/task] }} }}
  - {{ path: /v1/chat/completions, methods: [POST], auth: none, body: {{ format: openai_chat }} }}
  - {{ path: /v1/responses, methods: [POST], auth: none, body: {{ format: openai_responses }} }}
  - {{ path: /v1/messages, methods: [POST], auth: none, body: {{ format: anthropic_messages, provider: anthropic }} }}
  - {{ path: /clean, methods: [POST], auth: none, body: {{ format: json, text_fields: ["/notes/*/html"], sanitize_html: true }} }}
  - {{ path: /limited, methods: [POST], auth: none, body: {{ format: openai_chat, max_input_chars: 20 }}, guards: {{ models: {{ deny: ['openai:gpt-3*'] }} }} }}
  - {{ path: /big, methods: [POST], auth: none, body: {{ max_bytes: 20MiB, format: json }} }}
  - {{ path: /stream, methods: [POST, GET], auth: none }}
  - {{ path: /read, methods: [GET, POST], auth: none, body: {{ format: json }} }}
"#,
        schema.display()
    )
}

async fn gateway() -> TestGateway {
    let dir = temp_dir("bodies");
    let schema = dir.join("agent_run.json");
    std::fs::write(&schema, SCHEMA).expect("schema");
    spawn(&yaml(&schema)).await
}

async fn post(gw: &TestGateway, path: &str, content_type: Option<&str>, body: Vec<u8>) -> Reply {
    let mut req = request("POST", &gw.url(path));
    if let Some(content_type) = content_type {
        req = req.header("content-type", content_type);
    }
    send(
        &client(),
        req.body(warden::body::full(body)).expect("request"),
    )
    .await
}

async fn post_json(gw: &TestGateway, path: &str, body: &str) -> Reply {
    post(gw, path, Some("application/json"), body.as_bytes().to_vec()).await
}

/// Asserts a problem of `status` and `kind`, and that nothing reached the upstream.
fn refused(gw: &TestGateway, reply: &Reply, status: u16, kind: &str, case: &str) {
    assert_eq!(reply.status, status, "{case}: {}", reply.text());
    reply.assert_problem(status);
    assert_eq!(
        reply.json()["type"],
        format!("urn:warden:problem:{kind}"),
        "{case}"
    );
    assert!(
        gw.upstream.requests().is_empty(),
        "{case}: reached the upstream"
    );
}

#[tokio::test]
async fn json_that_parsers_could_read_differently_is_refused() {
    let gw = gateway().await;
    let deep = "[".repeat(100_000) + &"]".repeat(100_000);
    let deep_objects = r#"{"a":"#.repeat(100_000) + "1" + &"}".repeat(100_000);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "duplicate top-level key",
            br#"{"task":"run it","priority":1,"task":"rm -rf"}"#.to_vec(),
        ),
        (
            "duplicate key by escape",
            br#"{"task":"run it","priority":1,"\u0074ask":"x"}"#.to_vec(),
        ),
        (
            "duplicate nested key",
            br#"{"task":"run it","priority":1,"tags":[],"meta":{"a":{"b":1,"b":2}}}"#.to_vec(),
        ),
        ("100,000 levels of arrays", deep.into_bytes()),
        ("100,000 levels of objects", deep_objects.into_bytes()),
        (
            "NUL in a string",
            br#"{"task":"a\u0000b","priority":1}"#.to_vec(),
        ),
        (
            "lone surrogate",
            br#"{"task":"\ud800","priority":1}"#.to_vec(),
        ),
        (
            "invalid UTF-8",
            b"{\"task\":\"\xc3\x28\",\"priority\":1}".to_vec(),
        ),
        (
            "trailing garbage",
            br#"{"task":"run it","priority":1} trailing"#.to_vec(),
        ),
        (
            "two documents",
            br#"{"task":"run it","priority":1}{"task":"x","priority":2}"#.to_vec(),
        ),
        ("not JSON", b"task=run&priority=1".to_vec()),
        ("empty", Vec::new()),
    ];
    for (case, body) in cases {
        let reply = post(&gw, "/agents/run", Some("application/json"), body).await;
        refused(&gw, &reply, 400, "invalid-json", case);
    }
    // Bodies the schema would reject are refused as JSON first (duplicates never reach it).
    let reply = post_json(&gw, "/agents/run", r#"{"task":"ok","task":"ok"}"#).await;
    assert_eq!(reply.status, 400);
}

#[tokio::test]
async fn sizes_are_bounded_by_bytes_and_by_string_length() {
    let gw = gateway().await;
    let ten_mb = format!(r#"{{"task":"{}","priority":1}}"#, "a".repeat(10_000_000));
    // Over the route's 1 MiB: refused as it streams.
    let reply = post_json(&gw, "/agents/run", &ten_mb).await;
    refused(
        &gw,
        &reply,
        413,
        "payload-too-large",
        "10 MB on a 1 MiB route",
    );
    // Within a 20 MiB route, the one 10 MB string is over the 1 MiB string limit.
    let reply = post_json(&gw, "/big", &ten_mb).await;
    refused(&gw, &reply, 400, "invalid-json", "10 MB string");
}

#[tokio::test]
async fn only_json_media_types_are_accepted() {
    let gw = gateway().await;
    let body = br#"{"task":"run it","priority":1}"#.to_vec();
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/json; charset=utf-16"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let reply = post(&gw, "/agents/run", content_type, body.clone()).await;
        refused(
            &gw,
            &reply,
            415,
            "unsupported-media-type",
            &format!("{content_type:?}"),
        );
    }
    let reply = post(
        &gw,
        "/agents/run",
        Some("application/vnd.task+json; charset=UTF-8"),
        body,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

#[tokio::test]
async fn schema_failures_list_pointers_and_never_echo_values() {
    let gw = gateway().await;
    let reply = post_json(
        &gw,
        "/agents/run",
        r#"{"task":"S3CRET-VALUE","priority":"urgent-S3CRET","tags":["a",7,"b","c"],"S3CRET-extra":true}"#,
    )
    .await;
    refused(&gw, &reply, 422, "schema-violation", "schema");
    let problem = reply.json();
    let errors = problem["errors"].as_array().expect("errors list");
    let pointers: Vec<&str> = errors
        .iter()
        .map(|e| e["pointer"].as_str().expect("pointer"))
        .collect();
    for expected in ["/priority", "/tags", "/tags/1", ""] {
        assert!(pointers.contains(&expected), "{expected} in {pointers:?}");
    }
    assert!(
        !reply.text().contains("S3CRET"),
        "a value was echoed: {}",
        reply.text()
    );
    assert!(
        errors
            .iter()
            .all(|e| e["message"].as_str().is_some_and(|m| !m.is_empty()))
    );

    let reply = post_json(&gw, "/agents/run", r#"{"priority":2}"#).await;
    assert_eq!(reply.status, 422);
    assert_eq!(
        reply.json()["errors"][0]["message"],
        "missing required property \"task\""
    );

    let ok = r#"{"task":"summarize the report","priority":2,"tags":["q3"]}"#;
    let reply = post_json(&gw, "/agents/run", ok).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = gw.upstream.last();
    assert_eq!(seen.body.as_deref().expect("body"), ok.as_bytes());
    assert_eq!(
        seen.headers["content-length"],
        ok.len().to_string().as_str()
    );
}

const CHAT: &str = r#"{
  "model": "gpt-4o-mini",
  "messages": [
    {"role": "system", "content": "You are a helpful agent."},
    {"role": "user", "content": [
      {"type": "text", "text": "What is in this picture?"},
      {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}}
    ]},
    {"role": "assistant", "content": null, "tool_calls": [
      {"id": "call_1", "type": "function", "function": {"name": "describe", "arguments": "{\"detail\":\"high\"}"}}
    ]},
    {"role": "tool", "tool_call_id": "call_1", "content": "A cat on a sofa."}
  ],
  "tools": [{"type": "function", "function": {"name": "describe", "description": "Describe an image", "parameters": {"type": "object"}}}],
  "max_completion_tokens": 300,
  "stream": true,
  "stream_options": {"include_usage": true},
  "a_field_from_next_year": [1, 2, 3]
}"#;

const RESPONSES: &str = r#"{
  "model": "gpt-4o",
  "instructions": "Answer briefly.",
  "input": [
    {"role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"}, {"type": "input_image", "image_url": "https://example.com/p.png"}]},
    {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": "{\"city\":\"Paris\"}"},
    {"type": "function_call_output", "call_id": "c1", "output": "18C, cloudy"}
  ],
  "tools": [{"type": "function", "name": "weather", "description": "Current weather", "parameters": {"type": "object"}}],
  "max_output_tokens": 200
}"#;

const MESSAGES: &str = r#"{
  "model": "claude-3-5-sonnet-20241022",
  "max_tokens": 1024,
  "system": [{"type": "text", "text": "You are careful.", "cache_control": {"type": "ephemeral"}}],
  "messages": [
    {"role": "user", "content": [
      {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
      {"type": "text", "text": "Find the invoice total."}
    ]},
    {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "ocr", "input": {"page": 1}}]},
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "Total: 42 EUR"}]}]}
  ],
  "tools": [{"name": "ocr", "description": "Reads a page", "input_schema": {"type": "object"}}],
  "stream": true
}"#;

#[tokio::test]
async fn realistic_llm_bodies_pass_byte_for_byte() {
    let gw = gateway().await;
    for (path, body) in [
        ("/v1/chat/completions", CHAT),
        ("/v1/responses", RESPONSES),
        ("/v1/messages", MESSAGES),
    ] {
        let reply = post_json(&gw, path, body).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        let seen = gw.upstream.last();
        assert_eq!(seen.uri, path);
        assert_eq!(
            seen.body.as_deref().expect("body"),
            body.as_bytes(),
            "{path}"
        );
        assert_eq!(
            seen.headers["content-length"],
            body.len().to_string().as_str()
        );
    }
    // Sent chunked, forwarded with its length.
    let chunks = futures_util::stream::iter(
        CHAT.as_bytes()
            .chunks(100)
            .map(|c| {
                Ok::<_, std::io::Error>(http_body::Frame::data(bytes::Bytes::copy_from_slice(c)))
            })
            .collect::<Vec<_>>(),
    );
    let req = request("POST", &gw.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(warden::body::boxed(http_body_util::StreamBody::new(chunks)))
        .expect("request");
    let reply = send(&client(), req).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = gw.upstream.last();
    assert_eq!(seen.body.as_deref().expect("body"), CHAT.as_bytes());
    assert_eq!(
        seen.headers["content-length"],
        CHAT.len().to_string().as_str()
    );
    assert!(seen.headers.get("transfer-encoding").is_none());
}

#[tokio::test]
async fn bodies_that_do_not_match_their_format_are_400() {
    let gw = gateway().await;
    let cases = [
        (
            "/v1/chat/completions",
            r#"{"messages":[{"role":"user","content":"hi"}]}"#,
            "no model",
        ),
        (
            "/v1/chat/completions",
            r#"{"model":"gpt-4o","messages":"hi"}"#,
            "messages not a list",
        ),
        (
            "/v1/chat/completions",
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":[{"type":"secret_channel","text":"hidden"}]}]}"#,
            "unknown part type",
        ),
        (
            "/v1/chat/completions",
            r#"{"model":"gpt-4o","messages":[{"role":"root","content":"x"}]}"#,
            "unknown role",
        ),
        (
            "/v1/chat/completions",
            r#"{"model":"gpt-4o","messages":[],"max_tokens":"lots"}"#,
            "max_tokens a string",
        ),
        (
            "/v1/responses",
            r#"{"model":"gpt-4o","input":[{"type":"mystery_item"}]}"#,
            "unknown item",
        ),
        (
            "/v1/messages",
            r#"{"model":"claude-3-5-haiku","messages":[{"role":"user","content":"hi"}]}"#,
            "no max_tokens",
        ),
        (
            "/v1/messages",
            r#"{"model":"claude-3-5-haiku","max_tokens":5,"system":7,"messages":[]}"#,
            "system a number",
        ),
        ("/v1/chat/completions", r#"[1,2]"#, "not an object"),
    ];
    for (path, body, case) in cases {
        let reply = post_json(&gw, path, body).await;
        refused(&gw, &reply, 400, "invalid-body-format", case);
    }
}

#[tokio::test]
async fn models_are_allowed_and_denied_by_glob() {
    let gw = gateway().await;
    let chat = |model: &str| {
        format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#)
    };
    let claude = |model: &str| {
        format!(
            r#"{{"model":"{model}","max_tokens":10,"messages":[{{"role":"user","content":"hi"}}]}}"#
        )
    };
    let cases = [
        ("/v1/chat/completions", chat("gpt-4o-mini"), 200),
        ("/v1/chat/completions", chat("gpt-4o-2024-08-06"), 200),
        ("/v1/chat/completions", chat("gpt-4o-realtime-preview"), 403),
        ("/v1/chat/completions", chat("GPT-4O-REALTIME-PREVIEW"), 403),
        ("/v1/chat/completions", chat("o1"), 403),
        (
            "/v1/chat/completions",
            chat("claude-3-5-sonnet-20241022"),
            403,
        ),
        ("/v1/messages", claude("claude-3-5-sonnet-20241022"), 200),
        ("/v1/messages", claude("claude-3-opus-20240229"), 403),
        ("/v1/messages", claude("claude-3-5-sonnet-preview"), 403),
        // The route's own rules replace the global ones: no allow list there.
        ("/limited", chat("o1"), 200),
        ("/limited", chat("gpt-3.5-turbo"), 403),
    ];
    for (path, body, status) in cases {
        let before = gw.upstream.requests().len();
        let reply = post_json(&gw, path, &body).await;
        assert_eq!(reply.status, status, "{path} {body}: {}", reply.text());
        if status == 403 {
            assert_eq!(reply.json()["type"], "urn:warden:problem:model-denied");
            assert_eq!(
                gw.upstream.requests().len(),
                before,
                "a denied model reached the upstream"
            );
        }
    }
}

#[tokio::test]
async fn input_length_is_counted_in_characters() {
    let gw = gateway().await;
    let body = |text: &str| {
        format!(r#"{{"model":"gpt-4o","messages":[{{"role":"user","content":"{text}"}}]}}"#)
    };
    // 20 characters of 4 bytes each: within the limit, although 80 bytes.
    let reply = post_json(&gw, "/limited", &body(&"😀".repeat(20))).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let reply = post_json(&gw, "/limited", &body(&"😀".repeat(21))).await;
    assert_eq!(reply.status, 413);
    assert_eq!(reply.json()["type"], "urn:warden:problem:input-too-long");
}

#[tokio::test]
async fn html_in_declared_fields_is_sanitized_and_the_json_stays_valid() {
    let gw = gateway().await;
    let body = r#"{"notes":[{"html":"<p onclick=\"steal()\">Hi <b>there</b></p><script>alert(1)</script>"},{"html":"plain"}],"raw":"<script>untouched</script>"}"#;
    let reply = post_json(&gw, "/clean", body).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = gw.upstream.last();
    let forwarded = seen.body.as_deref().expect("body");
    assert_eq!(
        seen.headers["content-length"],
        forwarded.len().to_string().as_str()
    );
    let value: Value = serde_json::from_slice(forwarded).expect("still JSON");
    let html = value["notes"][0]["html"].as_str().expect("text");
    assert_eq!(html, "<p>Hi <b>there</b></p>");
    assert_eq!(value["notes"][1]["html"], "plain");
    assert_eq!(
        value["raw"], "<script>untouched</script>",
        "not a declared field"
    );
    // Nothing to clean: the original bytes, untouched.
    let clean = r#"{"notes": [{"html": "<b>ok</b>"}]}"#;
    post_json(&gw, "/clean", clean).await;
    assert_eq!(
        gw.upstream.last().body.as_deref().expect("body"),
        clean.as_bytes()
    );
}

#[tokio::test]
async fn routes_without_body_rules_stream_untouched() {
    let gw = gateway().await;
    let not_json = b"\x00\x01 not json at all {\"a\":1,\"a\":2}".to_vec();
    let reply = post(
        &gw,
        "/stream",
        Some("application/octet-stream"),
        not_json.clone(),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        gw.upstream.last().body.as_deref().expect("body"),
        &not_json[..]
    );
    // A body-rules route still serves plain reads.
    let reply = get(&gw.url("/read")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

const SECRET: &str = "bodies-test-hmac-secret-of-at-least-32-bytes";

#[tokio::test]
async fn the_policy_reads_the_requested_model() {
    let dir = temp_dir("body-policy");
    let policy = dir.join("models.rego");
    std::fs::write(
        &policy,
        "package api.authz\nimport rego.v1\ndefault allow := false\n\
         allow if input.request.body.model == \"gpt-4o-mini\"\n\
         allow if { input.token.tenant_id == \"premium\"; input.request.body.provider == \"openai\" }\n",
    )
    .expect("policy");
    let yaml = format!(
        r#"
auth:
  jwt:
    - {{ name: idp, issuer: https://idp.test, audiences: [api], secret: "${{env:BODY_SECRET}}", algorithms: [HS256], claims: {{ tenant: tenant_id }} }}
authz:
  policy: {{ file: "{}", allow: data.api.authz.allow }}
routes:
  - {{ path: /v1/chat/completions, methods: [POST], body: {{ format: openai_chat }} }}
"#,
        policy.display()
    );
    let upstream = upstream().await;
    let config = config_with_env(&yaml, &upstream.url(), &[("BODY_SECRET", SECRET)])
        .unwrap_or_else(|e| panic!("{e}"));
    let gw = spawn_config(config, upstream).await;
    let key = SigningKey::from_secret(SECRET.as_bytes(), Algorithm::HS256, None).expect("key");
    let token = |tenant: &str| {
        key.mint(&json!({"iss": "https://idp.test", "aud": "api", "sub": "alice", "exp": now_unix() + 600, "tenant_id": tenant}))
            .expect("mint")
    };
    let call = |tenant: &str, model: &str| {
        let req = request("POST", &gw.url("/v1/chat/completions"))
            .header("authorization", format!("Bearer {}", token(tenant)))
            .header("content-type", "application/json")
            .body(warden::body::full(format!(
                r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#
            )))
            .expect("request");
        async move { send(&client(), req).await.status }
    };
    assert_eq!(call("basic", "gpt-4o-mini").await, 200);
    assert_eq!(call("basic", "gpt-4o").await, 403);
    assert_eq!(call("premium", "gpt-4o").await, 200);
    // Without credentials the body is never read: 401, not a body error.
    let reply = post_json(&gw, "/v1/chat/completions", "{ not json").await;
    assert_eq!(reply.status, 401);
}
