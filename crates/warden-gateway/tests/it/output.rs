//! Output guards and external classifiers through real sockets: personal data and credentials
//! in JSON answers and in streamed answers of each format (split one character per event),
//! redacted or ending the stream with a terminal event; answers that cannot be inspected
//! refused; streams still flow event by event; a moderation endpoint judging requests and
//! answers, with its flagged, timeout and error paths.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use warden::body::{self, Body};

use crate::common::*;

/// The model's answer in every format: an e-mail address, a card number and, on `/leak`, an
/// AWS access key.
const ANSWER: &str = "Sure: write to jane.doe@example.com, card 4111 1111 1111 1111. Bye.";
const REDACTED: &str = "Sure: write to [EMAIL], card [CARD]. Bye.";
const LEAK: &str = "The key is AKIAIOSFODNN7EXAMPLE and that is all.";
/// An answer the mock classifier flags in its second half.
const FORBIDDEN: &str =
    "Here is a perfectly fine opening. Later the forbidden topic comes up, and more follows.";

const YAML: &str = r#"
guards:
  prompt_injection: { action: block }
  secrets: { action: block }
  pii: { input: redact, output: redact }
routes:
  - { path: /v1/chat/completions, methods: [POST], auth: none, body: { max_bytes: 1MiB, format: openai_chat } }
  - { path: /v1/messages, methods: [POST], auth: none, body: { format: anthropic_messages } }
  - { path: /v1/responses, methods: [POST, GET], auth: none, body: { format: openai_responses } }
  - { path: /text, methods: [POST], auth: none, body: { format: openai_chat } }
  - { path: /binary, methods: [POST], auth: none, body: { format: openai_chat } }
  - { path: /gzip, methods: [POST], auth: none, body: { format: openai_chat } }
  - { path: /gated, methods: [POST], auth: none, body: { format: openai_chat } }
  - { path: /broken, methods: [POST], auth: none, body: { format: openai_chat } }
  - { path: /text-blocked, methods: [POST], auth: none, body: { format: openai_chat }, guards: { pii: { output: block } } }
  - { path: /leak, methods: [POST], auth: none, body: { format: openai_chat } }
  - { path: /leak-blocked, methods: [POST], auth: none, body: { format: openai_chat }, guards: { secrets: { output: block } } }
  - { path: /plain, methods: [POST], auth: none }
"#;

/// A response streaming `frames` with `content_type`.
fn streamed<S, E>(content_type: &'static str, frames: S) -> Response<Body>
where
    S: futures_util::Stream<Item = Result<Frame<Bytes>, E>> + Send + 'static,
    E: Into<warden::body::BoxError>,
{
    let mut response = Response::new(body::boxed(StreamBody::new(frames)));
    response
        .headers_mut()
        .insert("content-type", http::HeaderValue::from_static(content_type));
    response
}

/// Server-sent `events`, one frame each.
fn sse(events: Vec<String>) -> Response<Body> {
    streamed(
        "text/event-stream",
        futures_util::stream::iter(
            events
                .into_iter()
                .map(|e| Ok::<_, Infallible>(Frame::data(Bytes::from(e)))),
        ),
    )
}

fn chat_chunk(delta: Value, finish: Value) -> String {
    let chunk = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
    format!("data: {chunk}\n\n")
}

/// An OpenAI chat stream of `text`, one character per event.
fn chat_stream(text: &str) -> Vec<String> {
    let mut events = vec![chat_chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    events.extend(
        text.chars()
            .map(|c| chat_chunk(json!({"content": c.to_string()}), Value::Null)),
    );
    events.push(chat_chunk(json!({}), json!("stop")));
    events.push("data: [DONE]\n\n".to_owned());
    events
}

fn anthropic_stream(text: &str) -> Vec<String> {
    let event = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
    let mut events = vec![
        event(
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "content": [], "model": "claude-3-5-haiku"}}),
        ),
        event(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
    ];
    events.extend(text.chars().map(|c| {
        event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": c.to_string()}}),
        )
    }));
    events.push(event(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    events.push(event(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 20}}),
    ));
    events.push(event("message_stop", json!({"type": "message_stop"})));
    events
}

fn responses_stream(text: &str) -> Vec<String> {
    let event = |data: Value| {
        let name = data["type"].as_str().expect("type").to_owned();
        format!("event: {name}\r\ndata: {data}\r\n\r\n")
    };
    let mut events = vec![event(
        json!({"type": "response.created", "response": {"id": "resp_1", "status": "in_progress"}}),
    )];
    events.extend(text.chars().map(|c| {
        event(json!({"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": c.to_string()}))
    }));
    events.push(event(
        json!({"type": "response.output_text.done", "item_id": "msg_1", "output_index": 0, "content_index": 0, "text": text}),
    ));
    events.push(event(json!({"type": "response.completed", "response": {"id": "resp_1", "status": "completed",
        "output": [{"type": "message", "id": "msg_1", "content": [{"type": "output_text", "text": text}]}]}})));
    events
}

/// A request's path and JSON body (`null` when it has none).
async fn read(req: Request<Incoming>) -> (String, Value) {
    let path = req.uri().path().to_owned();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    (path, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// The scripted model: answers by path, streamed when the request asks for it.
async fn model(gate: Arc<Notify>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let (path, request) = read(req).await;
    let stream = request["stream"] == json!(true);
    let json_answer = |value: Value| {
        let mut response = Response::new(body::full(value.to_string()));
        response
            .headers_mut()
            .insert("content-type", "application/json".parse().expect("value"));
        response
    };
    let response = match path.as_str() {
        "/v1/chat/completions" | "/plain" if stream => sse(chat_stream(ANSWER)),
        "/v1/chat/completions" | "/plain" => json_answer(json!({
            "id": "chatcmpl-1", "object": "chat.completion",
            "choices": [{"index": 0, "finish_reason": "stop",
                "message": {"role": "assistant", "content": ANSWER},
                "logprobs": {"content": [{"token": "jane", "logprob": -0.1}]}}],
        })),
        "/v1/messages" => sse(anthropic_stream(ANSWER)),
        "/v1/responses" => sse(responses_stream(ANSWER)),
        "/leak" | "/leak-blocked" => sse(chat_stream(LEAK)),
        "/forbidden" if stream => sse(chat_stream(FORBIDDEN)),
        "/forbidden" => {
            json_answer(json!({"choices": [{"index": 0, "message": {"content": FORBIDDEN}}]}))
        }
        "/text" | "/text-blocked" => {
            let stream = futures_util::stream::iter(
                ANSWER
                    .chars()
                    .map(|c| Ok::<_, Infallible>(Frame::data(Bytes::from(c.to_string())))),
            );
            streamed("text/plain; charset=utf-8", stream)
        }
        "/binary" => {
            let mut response = Response::new(body::full(ANSWER));
            response.headers_mut().insert(
                "content-type",
                "application/octet-stream".parse().expect("value"),
            );
            response
        }
        "/gzip" => {
            let mut response = json_answer(json!({"content": ANSWER}));
            response
                .headers_mut()
                .insert("content-encoding", "gzip".parse().expect("value"));
            response
        }
        "/broken" => {
            // Part of an address, then the upstream fails.
            let first = chat_chunk(json!({"content": "Mail jane.doe@exam"}), Value::Null);
            let stream = futures_util::stream::unfold(0u8, move |step| {
                let first = first.clone();
                async move {
                    match step {
                        0 => Some((Ok(Frame::data(Bytes::from(first))), 1)),
                        1 => {
                            // After the headers have gone out.
                            tokio::time::sleep(Duration::from_millis(300)).await;
                            Some((Err(std::io::Error::other("upstream reset")), 2))
                        }
                        _ => None,
                    }
                }
            });
            streamed("text/event-stream", stream)
        }
        "/gated" => {
            let first = chat_chunk(json!({"content": "Hello there, "}), Value::Null);
            let stream = futures_util::stream::unfold(0u8, move |step| {
                let gate = gate.clone();
                let first = first.clone();
                async move {
                    match step {
                        0 => Some((Ok::<_, Infallible>(Frame::data(Bytes::from(first))), 1)),
                        1 => {
                            gate.notified().await;
                            let last = chat_chunk(json!({"content": "bye."}), json!("stop"));
                            Some((Ok(Frame::data(Bytes::from(last))), 2))
                        }
                        _ => None,
                    }
                }
            });
            streamed("text/event-stream", stream)
        }
        _ => json_answer(json!({"path": path})),
    };
    Ok(response)
}

/// A gateway configured by `yaml` in front of the scripted model.
async fn gateway(yaml: &str) -> (TestGateway, Arc<Notify>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let gate = Arc::new(Notify::new());
    let addr = listener.local_addr().expect("addr");
    let for_model = gate.clone();
    serve(listener, move |req| model(for_model.clone(), req));
    let upstream = Upstream {
        addr,
        seen: Arc::default(),
        sse_gate: Arc::new(Notify::new()),
    };
    (spawn_with(yaml, upstream).await, gate)
}

fn ask(gw: &TestGateway, path: &str, body: &Value) -> Request<Body> {
    request("POST", &gw.url(path))
        .header("content-type", "application/json")
        .header("accept-encoding", "gzip")
        .body(body::full(serde_json::to_vec(body).expect("json")))
        .expect("request")
}

fn chat(stream: bool) -> Value {
    json!({"model": "gpt-4o-mini", "stream": stream, "messages": [{"role": "user", "content": "Who do I write to?"}]})
}

/// The events of an SSE body: (event name, data as JSON, or as a string when it is not JSON).
fn events(text: &str) -> Vec<(Option<String>, Value)> {
    text.replace("\r\n", "\n")
        .split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let mut name = None;
            let mut data = Vec::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    name = Some(v.to_owned());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data.push(v);
                } else {
                    panic!("unexpected line {line:?} in {text}");
                }
            }
            let data = data.join("\n");
            let value = serde_json::from_str(&data).unwrap_or(Value::String(data));
            (name, value)
        })
        .collect()
}

fn chat_text(events: &[(Option<String>, Value)]) -> String {
    events
        .iter()
        .filter_map(|(_, v)| v["choices"][0]["delta"]["content"].as_str())
        .collect()
}

/// The next frame's data as text (empty for trailers), an error when the body failed, `None` at
/// its end; within five seconds.
async fn next_text(body: &mut Incoming) -> Option<Result<String, hyper::Error>> {
    let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("no hang")?;
    Some(frame.map(|frame| {
        frame
            .into_data()
            .map(|data| String::from_utf8_lossy(&data).into_owned())
            .unwrap_or_default()
    }))
}

/// Reads a body to its end: the text received, and whether it ended with an error rather than
/// cleanly.
async fn read_to_end(body: &mut Incoming) -> (String, bool) {
    let mut seen = String::new();
    while let Some(text) = next_text(body).await {
        match text {
            Ok(text) => seen.push_str(&text),
            Err(_) => return (seen, true),
        }
    }
    (seen, false)
}

#[tokio::test]
async fn a_json_answer_is_redacted_with_a_new_length_and_no_logprobs() {
    let (gw, _) = gateway(YAML).await;
    let reply = send(&client(), ask(&gw, "/v1/chat/completions", &chat(false))).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let answer = reply.json();
    assert_eq!(answer["choices"][0]["message"]["content"], REDACTED);
    assert_eq!(answer["choices"][0]["logprobs"], Value::Null);
    assert_eq!(
        reply.header("content-length"),
        Some(reply.body.len().to_string().as_str())
    );
    assert!(!reply.text().contains("jane"), "{}", reply.text());
}

#[tokio::test]
async fn streamed_answers_are_redacted_one_character_per_event_in_every_format() {
    let (gw, _) = gateway(YAML).await;
    // OpenAI Chat Completions.
    let reply = send(&client(), ask(&gw, "/v1/chat/completions", &chat(true))).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("text/event-stream"));
    assert_eq!(reply.header("content-length"), None);
    let text = reply.text();
    assert!(!text.contains("jane") && !text.contains("4111"), "{text}");
    let chat = events(&text);
    assert_eq!(chat_text(&chat), REDACTED);
    assert_eq!(chat.last().map(|e| &e.1), Some(&json!("[DONE]")));
    let finish = &chat[chat.len() - 2].1;
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");

    // Anthropic Messages: the held text arrives before content_block_stop.
    let body = json!({"model": "claude-3-5-haiku", "max_tokens": 100, "stream": true,
        "messages": [{"role": "user", "content": "hi"}]});
    let reply = send(&client(), ask(&gw, "/v1/messages", &body)).await;
    assert_eq!(reply.status, 200);
    let text = reply.text();
    assert!(!text.contains("jane") && !text.contains("4111"), "{text}");
    let anthropic = events(&text);
    let streamed: String = anthropic
        .iter()
        .filter(|(name, _)| name.as_deref() == Some("content_block_delta"))
        .filter_map(|(_, v)| v["delta"]["text"].as_str())
        .collect();
    assert_eq!(streamed, REDACTED);
    let names: Vec<&str> = anthropic.iter().filter_map(|(n, _)| n.as_deref()).collect();
    let stop = names.iter().position(|n| *n == "content_block_stop");
    let last_delta = names.iter().rposition(|n| *n == "content_block_delta");
    assert!(last_delta < stop, "{names:?}");
    assert_eq!(names.last(), Some(&"message_stop"));

    // OpenAI Responses: deltas, the done event's full text and the completed response agree.
    let body = json!({"model": "gpt-4o-mini", "input": "hi", "stream": true});
    let reply = send(&client(), ask(&gw, "/v1/responses", &body)).await;
    assert_eq!(reply.status, 200);
    let text = reply.text();
    assert!(!text.contains("jane") && !text.contains("4111"), "{text}");
    let responses = events(&text);
    let streamed: String = responses
        .iter()
        .filter(|(_, v)| v["type"] == "response.output_text.delta")
        .filter_map(|(_, v)| v["delta"].as_str())
        .collect();
    assert_eq!(streamed, REDACTED);
    let done = responses
        .iter()
        .find(|(_, v)| v["type"] == "response.output_text.done")
        .expect("done event");
    assert_eq!(done.1["text"], REDACTED);
    let completed = responses.last().expect("completed");
    assert_eq!(completed.0.as_deref(), Some("response.completed"));
    assert_eq!(
        completed.1["response"]["output"][0]["content"][0]["text"],
        REDACTED
    );

    // Findings are counted by type and direction.
    let count = metric(
        &gw,
        r#"warden_guard_findings_total{guard="pii",rule="pii.email",direction="output"}"#,
    )
    .await;
    assert!(count >= 4.0, "{count}");
}

#[tokio::test]
async fn a_plain_text_stream_is_redacted_and_uninspectable_answers_are_refused() {
    let (gw, _) = gateway(YAML).await;
    let reply = send(&client(), ask(&gw, "/text", &chat(false))).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), REDACTED);
    // Compression was not asked of the upstream; one it sends anyway is refused, as is a type
    // that cannot be read as text.
    for path in ["/binary", "/gzip"] {
        let reply = send(&client(), ask(&gw, path, &chat(false))).await;
        reply.assert_problem(502);
        assert_eq!(reply.json()["type"], "urn:warden:problem:output-blocked");
        assert!(!reply.text().contains("jane"), "{path}");
    }
    // A route without body rules is not inspected.
    let reply = send(&client(), ask(&gw, "/plain", &chat(false))).await;
    assert_eq!(reply.status, 200);
    assert!(reply.text().contains("jane.doe@example.com"));
}

#[tokio::test]
async fn a_leaked_credential_is_redacted_by_default_and_ends_a_blocking_stream_with_an_error_event()
{
    let (gw, _) = gateway(YAML).await;
    let reply = send(&client(), ask(&gw, "/leak", &chat(true))).await;
    assert_eq!(reply.status, 200);
    let streamed = events(&reply.text());
    assert_eq!(chat_text(&streamed), "The key is [SECRET] and that is all.");

    let reply = send(&client(), ask(&gw, "/leak-blocked", &chat(true))).await;
    assert_eq!(reply.status, 200, "the stream had started");
    let text = reply.text();
    assert!(!text.contains("AKIA"), "{text}");
    let streamed = events(&text);
    let (name, last) = streamed.last().expect("a terminal event");
    assert_eq!(name, &None);
    assert_eq!(last["error"]["code"], "output_blocked");
    assert_eq!(last["error"]["type"], "warden_output_guard");
    // What came before the key was delivered; nothing after it.
    assert_eq!(chat_text(&streamed), "The key is ");
    let stopped = metric(&gw, r#"warden_output_stopped_total{code="output_blocked"}"#).await;
    assert!(stopped >= 1.0);
}

#[tokio::test]
async fn a_stream_over_max_output_chars_ends_with_a_terminal_event_in_its_format() {
    let yaml = r#"
guards:
  max_output_chars: 20
  pii: { output: redact }
routes:
  - { path: /v1/chat/completions, methods: [POST], auth: none, body: { format: openai_chat } }
  - { path: /v1/messages, methods: [POST], auth: none, body: { format: anthropic_messages } }
  - { path: /v1/responses, methods: [POST], auth: none, body: { format: openai_responses } }
"#;
    let (gw, _) = gateway(yaml).await;
    let reply = send(&client(), ask(&gw, "/v1/chat/completions", &chat(true))).await;
    let streamed = events(&reply.text());
    assert_eq!(
        streamed.last().map(|e| e.1["error"]["code"].clone()),
        Some(json!("output_too_long"))
    );
    assert!(chat_text(&streamed).chars().count() <= 20);

    let body = json!({"model": "claude-3-5-haiku", "max_tokens": 100, "stream": true,
        "messages": [{"role": "user", "content": "hi"}]});
    let reply = send(&client(), ask(&gw, "/v1/messages", &body)).await;
    let streamed = events(&reply.text());
    let (name, last) = streamed.last().expect("terminal event");
    assert_eq!(name.as_deref(), Some("error"));
    assert_eq!(last["type"], "error");
    assert_eq!(last["error"]["type"], "api_error");

    let body = json!({"model": "gpt-4o-mini", "input": "hi", "stream": true});
    let reply = send(&client(), ask(&gw, "/v1/responses", &body)).await;
    let streamed = events(&reply.text());
    let (name, last) = streamed.last().expect("terminal event");
    assert_eq!(name.as_deref(), Some("error"));
    assert_eq!(last["code"], "output_too_long");

    // A JSON answer over the limit is refused whole.
    let reply = send(&client(), ask(&gw, "/v1/chat/completions", &chat(false))).await;
    reply.assert_problem(502);
}

#[tokio::test]
async fn an_inspected_stream_flows_event_by_event() {
    let (gw, gate) = gateway(YAML).await;
    let response = client()
        .request(ask(&gw, "/gated", &chat(true)))
        .await
        .expect("response");
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    // The first event arrives while the upstream is still waiting to send the second.
    let mut seen = String::new();
    while !seen.contains("there, ") {
        let text = next_text(&mut body)
            .await
            .expect("an event before the answer ended")
            .expect("data");
        seen.push_str(&text);
    }
    assert!(
        chat_text(&events(&seen)).starts_with("Hello there, "),
        "{seen}"
    );
    gate.notify_one();
    let rest = body.collect().await.expect("rest").to_bytes();
    let all = format!("{seen}{}", String::from_utf8_lossy(&rest));
    assert_eq!(chat_text(&events(&all)), "Hello there, bye.");
}

#[tokio::test]
async fn the_upstream_is_not_asked_to_compress_inspected_answers() {
    let gw = spawn(YAML).await;
    let reply = send(&client(), ask(&gw, "/v1/chat/completions", &chat(false))).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = gw.upstream.last();
    assert_eq!(seen.headers.get("accept-encoding"), None);
    // Only there: a route without output guards forwards it.
    let reply = send(&client(), ask(&gw, "/plain", &chat(false))).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = gw.upstream.last();
    assert_eq!(
        seen.headers.get("accept-encoding").map(|v| v.as_bytes()),
        Some(&b"gzip"[..])
    );
}

/// A moderation endpoint: flags texts that mention "forbidden topic"; `/slow` never answers in
/// time, `/broken` answers 500, `/garbage` answers something that is not a moderation result.
/// Records what it was sent.
async fn classifier() -> (String, Arc<std::sync::Mutex<Vec<Vec<String>>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen: Arc<std::sync::Mutex<Vec<Vec<String>>>> = Arc::default();
    let record = seen.clone();
    serve(listener, move |req: Request<Incoming>| {
        let record = record.clone();
        async move {
            let (path, request) = read(req).await;
            let input: Vec<String> =
                serde_json::from_value(request["input"].clone()).unwrap_or_default();
            let flagged = input
                .iter()
                .any(|t| t.to_lowercase().contains("forbidden topic"));
            record.lock().expect("lock").push(input);
            let answer = match path.as_str() {
                "/slow" => {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    json!({"results": [{"flagged": false}]}).to_string()
                }
                "/garbage" => "<html>oops</html>".to_owned(),
                _ => json!({"id": "modr-1", "results": [{"flagged": flagged,
                    "categories": {"harassment": flagged, "violence": false}}]})
                .to_string(),
            };
            let mut response = Response::new(body::full(answer));
            if path == "/broken" {
                *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
            }
            Ok::<_, Infallible>(response)
        }
    });
    (format!("http://{addr}"), seen)
}

fn classified(url: &str, direction: &str, extra: &str) -> String {
    format!(
        r#"
guards:
  external:
    - {{ name: moderation, url: "{url}", direction: {direction}, timeout: 300ms{extra} }}
routes:
  - {{ path: /v1/chat/completions, methods: [POST], auth: none, body: {{ format: openai_chat }} }}
  - {{ path: /forbidden, methods: [POST], auth: none, body: {{ format: openai_chat }} }}
"#
    )
}

fn user_says(text: &str) -> Value {
    json!({"model": "gpt-4o-mini", "messages": [
        {"role": "system", "content": "Operator instructions stay private."},
        {"role": "user", "content": text}]})
}

#[tokio::test]
async fn an_input_classifier_blocks_flagged_requests_and_fails_closed() {
    let (base, seen) = classifier().await;
    let (gw, _) = gateway(&classified(&format!("{base}/moderate"), "input", "")).await;
    let reply = send(
        &client(),
        ask(
            &gw,
            "/v1/chat/completions",
            &user_says("Tell me about the forbidden topic"),
        ),
    )
    .await;
    reply.assert_problem(403);
    assert_eq!(reply.json()["type"], "urn:warden:problem:content-flagged");
    assert!(
        !reply.text().contains("harassment"),
        "categories are logged, not sent"
    );
    let reply = send(
        &client(),
        ask(
            &gw,
            "/v1/chat/completions",
            &user_says("What is the weather?"),
        ),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    // The classifier saw the user's text, not the operator's system prompt.
    let last = seen.lock().expect("lock").last().cloned().expect("a call");
    assert_eq!(last, vec!["What is the weather?".to_owned()]);
    let flagged = metric(
        &gw,
        r#"warden_classifier_calls_total{name="moderation",outcome="flagged"}"#,
    )
    .await;
    assert!(flagged >= 1.0);

    // No verdict: a timeout, an error status and a non-moderation answer each fail closed.
    for path in ["/slow", "/broken", "/garbage"] {
        let (gw, _) = gateway(&classified(&format!("{base}{path}"), "input", "")).await;
        let reply = tokio::time::timeout(
            Duration::from_secs(10),
            send(
                &client(),
                ask(&gw, "/v1/chat/completions", &user_says("hi")),
            ),
        )
        .await
        .expect("the time budget holds");
        reply.assert_problem(503);
        assert_eq!(
            reply.json()["type"],
            "urn:warden:problem:guard-unavailable",
            "{path}"
        );
    }
    // Unless the classifier is configured to let traffic pass.
    let (gw, _) = gateway(&classified(
        &format!("{base}/slow"),
        "input",
        ", on_error: allow",
    ))
    .await;
    let reply = send(
        &client(),
        ask(&gw, "/v1/chat/completions", &user_says("hi")),
    )
    .await;
    assert_eq!(reply.status, 200);
    let timeouts = metric(
        &gw,
        r#"warden_classifier_calls_total{name="moderation",outcome="timeout"}"#,
    )
    .await;
    assert!(timeouts >= 1.0);
}

#[tokio::test]
async fn an_output_classifier_judges_answers_before_the_client_reads_them() {
    let (base, seen) = classifier().await;
    let (gw, _) = gateway(&classified(
        &format!("{base}/moderate"),
        "output",
        ", segment_chars: 30",
    ))
    .await;
    // A JSON answer is judged whole.
    let reply = send(&client(), ask(&gw, "/forbidden", &chat(false))).await;
    reply.assert_problem(502);
    assert!(!reply.text().contains("forbidden topic"));
    let reply = send(&client(), ask(&gw, "/v1/chat/completions", &chat(false))).await;
    assert_eq!(reply.status, 200);
    // A stream is judged in segments: the segments before the flagged one reach the client,
    // the flagged one never does, and the stream ends with a terminal event.
    let reply = send(&client(), ask(&gw, "/forbidden", &chat(true))).await;
    assert_eq!(reply.status, 200);
    let streamed = events(&reply.text());
    let text = chat_text(&streamed);
    assert!(!text.contains("forbidden"), "{text}");
    assert!(text.starts_with("Here is a perfectly fine"), "{text}");
    assert_eq!(
        streamed.last().map(|e| e.1["error"]["code"].clone()),
        Some(json!("output_flagged"))
    );
    // Each judged segment carried the end of the one before it as context.
    let calls = seen.lock().expect("lock").clone();
    assert!(calls.iter().any(|texts| texts.len() == 2), "{calls:?}");
}

#[test]
fn classifier_and_output_settings_are_checked() {
    let refused = |yaml: &str| {
        config_for(yaml, "http://127.0.0.1:9")
            .expect_err("refused")
            .to_string()
    };
    // Texts must not cross the network in clear, a credential must be a reference, names are
    // unique, and only output classifiers have segments.
    let errors = refused(
        r#"guards: { external: [
            { name: a, url: "http://moderation.example.com/v1", direction: input },
            { name: b, url: "https://moderation.example.com/v1", direction: input, api_key: sk-literal },
            { name: b, url: "https://moderation.example.com/v1", direction: output },
            { name: c, url: "https://moderation.example.com/v1", direction: sideways },
            { name: d, url: "https://moderation.example.com/v1", direction: input, segment_chars: 10 },
        ] }"#,
    );
    for path in [
        "guards.external[0].url",
        "guards.external[1].api_key",
        "guards.external[2].name",
        "guards.external[3].direction",
        "guards.external[4].segment_chars",
    ] {
        assert!(errors.contains(path), "{path}: {errors}");
    }
    assert!(!errors.contains("sk-literal"), "{errors}");
    let errors = refused("guards: { secrets: { output: flag }, pii: { output: maybe } }");
    assert!(errors.contains("guards.secrets.output"), "{errors}");
    assert!(errors.contains("guards.pii.output"), "{errors}");
}

#[tokio::test]
async fn an_upstream_failing_mid_stream_aborts_the_answer_without_releasing_held_text() {
    let (gw, _) = gateway(YAML).await;
    let response = client()
        .request(ask(&gw, "/broken", &chat(true)))
        .await
        .expect("response");
    assert_eq!(response.status(), 200);
    let (seen, failed) = read_to_end(&mut response.into_body()).await;
    assert!(
        failed,
        "an incomplete answer must not look complete: {seen}"
    );
    assert!(!seen.contains("jane"), "held text was released: {seen}");
}

#[tokio::test]
async fn a_blocked_plain_text_stream_ends_with_an_aborted_body() {
    let (gw, _) = gateway(YAML).await;
    let response = client()
        .request(ask(&gw, "/text-blocked", &chat(false)))
        .await
        .expect("response");
    assert_eq!(response.status(), 200, "the stream had started");
    let (seen, failed) = read_to_end(&mut response.into_body()).await;
    assert!(
        failed,
        "plain text has no terminal event: the body is cut: {seen}"
    );
    // What came before the address was delivered; the address and what follows were not.
    assert_eq!(seen, "Sure: write to ");
}
