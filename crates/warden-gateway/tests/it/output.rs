//! Output guards through real sockets: personal data and credentials in JSON answers and in
//! streamed answers of each format (split one character per event), redacted or ending the
//! stream with a terminal event; answers that cannot be inspected refused; streams still flow
//! event by event.

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
  - { path: /leak, methods: [POST], auth: none, body: { format: openai_chat } }
  - { path: /leak-blocked, methods: [POST], auth: none, body: { format: openai_chat }, guards: { secrets: { output: block } } }
  - { path: /plain, methods: [POST], auth: none }
"#;

fn sse(events: Vec<String>) -> Response<Body> {
    let stream = futures_util::stream::iter(
        events
            .into_iter()
            .map(|e| Ok::<_, Infallible>(Frame::data(Bytes::from(e)))),
    );
    let mut response = Response::new(body::boxed(StreamBody::new(stream)));
    response
        .headers_mut()
        .insert("content-type", "text/event-stream".parse().expect("value"));
    response
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

/// The scripted model: answers by path, streamed when the request asks for it.
async fn model(gate: Arc<Notify>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
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
        "/text" => {
            let stream = futures_util::stream::iter(
                ANSWER
                    .chars()
                    .map(|c| Ok::<_, Infallible>(Frame::data(Bytes::from(c.to_string())))),
            );
            let mut response = Response::new(body::boxed(StreamBody::new(stream)));
            response.headers_mut().insert(
                "content-type",
                "text/plain; charset=utf-8".parse().expect("value"),
            );
            response
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
            let mut response = Response::new(body::boxed(StreamBody::new(stream)));
            response
                .headers_mut()
                .insert("content-type", "text/event-stream".parse().expect("value"));
            response
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
        let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("an event before the answer ended")
            .expect("a frame")
            .expect("data");
        if let Ok(data) = frame.into_data() {
            seen.push_str(&String::from_utf8_lossy(&data));
        }
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
}
