//! Token budgets through real sockets against a mock provider with deterministic usage: never
//! more than the budget (sequential and concurrent), the output limit written into the body,
//! streams counted from their usage and cut at the reservation, 429 with `Retry-After`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use warden::body::{self, Body};

use crate::common::{self, Reply};

/// Every prompt costs this many tokens, as the mock reports it.
const PROMPT: u64 = 20;

/// A mock provider. `/v1/chat/completions` and `/v1/messages` answer with as many output tokens
/// as the request allows (`max_completion_tokens`, `max_tokens`; 60 without), each token the
/// text `"a"`; under `/ignore/…` they produce 2000 whatever the limit. Streams when asked to,
/// with OpenAI's usage chunk only when `stream_options.include_usage` is set. Records the
/// bodies it was sent.
#[derive(Clone, Default)]
struct Provider {
    bodies: Arc<Mutex<Vec<Value>>>,
}

impl Provider {
    async fn start(&self) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let this = self.clone();
        common::serve(listener, move |req| {
            let this = this.clone();
            async move { Ok::<_, Infallible>(this.answer(req).await) }
        });
        addr
    }

    fn last(&self) -> Value {
        self.bodies
            .lock()
            .expect("lock")
            .last()
            .cloned()
            .expect("a request")
    }

    async fn answer(&self, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().to_owned();
        let bytes = req.into_body().collect().await.expect("body").to_bytes();
        let request: Value = serde_json::from_slice(&bytes).expect("json");
        self.bodies.lock().expect("lock").push(request.clone());
        let limit = ["max_completion_tokens", "max_tokens", "max_output_tokens"]
            .iter()
            .find_map(|f| request.get(*f).and_then(Value::as_u64));
        let output = if path.starts_with("/ignore") {
            2000
        } else {
            limit.unwrap_or(60)
        };
        let stream = request.get("stream").and_then(Value::as_bool) == Some(true);
        if path.starts_with("/slow") && !stream {
            // A long answer: the client may give up first.
            tokio::time::sleep(std::time::Duration::from_millis(800)).await;
        }
        let anthropic = path.ends_with("/v1/messages");
        if path.ends_with("/v1/responses") && stream {
            let mut events = vec![format!(
                "event: response.created\ndata: {}\n\n",
                json!({"type": "response.created", "response": {"id": "resp_1", "status": "in_progress"}})
            )];
            for _ in 0..output {
                events.push(format!("event: response.output_text.delta\ndata: {}\n\n", json!({"type": "response.output_text.delta", "output_index": 0, "content_index": 0, "delta": "a"})));
            }
            events.push(format!("event: response.completed\ndata: {}\n\n", json!({"type": "response.completed", "response": {"id": "resp_1", "status": "completed", "usage": {"input_tokens": PROMPT, "output_tokens": output, "total_tokens": PROMPT + output}}})));
            return sse(events);
        }
        let mut response = match (anthropic, stream) {
            (false, false) => Response::new(body::full(
                json!({
                    "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-mini",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "a".repeat(output as usize)}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": PROMPT, "completion_tokens": output, "total_tokens": PROMPT + output},
                })
                .to_string(),
            )),
            (false, true) => {
                let include = request.pointer("/stream_options/include_usage") == Some(&json!(true));
                let mut events = Vec::new();
                for _ in 0..output {
                    events.push(format!(
                        "data: {}\n\n",
                        json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "gpt-4o-mini", "choices": [{"index": 0, "delta": {"content": "a"}, "finish_reason": null}]})
                    ));
                }
                events.push(format!(
                    "data: {}\n\n",
                    json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                ));
                if include {
                    events.push(format!(
                        "data: {}\n\n",
                        json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [], "usage": {"prompt_tokens": PROMPT, "completion_tokens": output, "total_tokens": PROMPT + output}})
                    ));
                }
                events.push("data: [DONE]\n\n".to_owned());
                if path.starts_with("/slow") {
                    slow_sse(events)
                } else {
                    sse(events)
                }
            }
            (true, _) => {
                let mut events = vec![
                    format!("event: message_start\ndata: {}\n\n", json!({"type": "message_start", "message": {"id": "msg_1", "role": "assistant", "usage": {"input_tokens": PROMPT, "output_tokens": 1}}})),
                    format!("event: content_block_start\ndata: {}\n\n", json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})),
                ];
                for _ in 0..output {
                    events.push(format!("event: content_block_delta\ndata: {}\n\n", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "a"}})));
                }
                events.push(format!("event: content_block_stop\ndata: {}\n\n", json!({"type": "content_block_stop", "index": 0})));
                events.push(format!("event: message_delta\ndata: {}\n\n", json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": output}})));
                events.push(format!("event: message_stop\ndata: {}\n\n", json!({"type": "message_stop"})));
                sse(events)
            }
        };
        response
            .headers_mut()
            .entry("content-type")
            .or_insert("application/json".parse().expect("value"));
        response
    }
}

/// A text/event-stream answer, one event per frame.
fn sse(events: Vec<String>) -> Response<Body> {
    sse_every(events, std::time::Duration::ZERO)
}

/// [`sse`], one event every 20 ms.
fn slow_sse(events: Vec<String>) -> Response<Body> {
    sse_every(events, std::time::Duration::from_millis(20))
}

fn sse_every(events: Vec<String>, every: std::time::Duration) -> Response<Body> {
    let stream = futures_util::stream::unfold(events.into_iter(), move |mut events| async move {
        if !every.is_zero() {
            tokio::time::sleep(every).await;
        }
        let event = events.next()?;
        Some((
            Ok::<_, Infallible>(hyper::body::Frame::data(Bytes::from(event))),
            events,
        ))
    });
    let mut response = Response::new(body::boxed(http_body_util::StreamBody::new(stream)));
    response
        .headers_mut()
        .insert("content-type", "text/event-stream".parse().expect("value"));
    response
}

/// A gateway in front of `provider` with `yaml` (routes and budgets).
async fn gateway(provider: &Provider, yaml: &str) -> common::TestGateway {
    let addr = provider.start().await;
    let config =
        common::config_for(yaml, &format!("http://{addr}")).unwrap_or_else(|e| panic!("{e}"));
    common::spawn_config(config, common::upstream().await).await
}

fn chat(
    gw: &common::TestGateway,
    path: &str,
    body: Value,
) -> impl std::future::Future<Output = Reply> {
    let req = common::request("POST", &gw.url(path))
        .header("content-type", "application/json")
        .body(body::full(body.to_string()))
        .expect("request");
    async move { common::send(&common::client(), req).await }
}

/// The settled tokens of `route` for gpt-4o-mini (the metric is labelled by route, unique per
/// test).
async fn settled(gw: &common::TestGateway, route: &str) -> f64 {
    settled_for(gw, route, "gpt-4o-mini").await
}

/// The settled tokens of `route` and `model`, once settlements (spawned as answers end) have
/// landed: the first non-zero value that holds for 40 ms (0 after two seconds of nothing).
async fn settled_for(gw: &common::TestGateway, route: &str, model: &str) -> f64 {
    let series = format!(
        "warden_token_budget_tokens_total{{route=\"{route}\",model=\"{model}\",kind=\"settled\"}}"
    );
    let mut last = -1.0;
    for _ in 0..50 {
        let now = common::metric(gw, &series).await;
        if now == last && now > 0.0 {
            return now;
        }
        last = now;
        tokio::time::sleep(std::time::Duration::from_millis(40)).await;
    }
    last.max(0.0)
}

#[tokio::test]
async fn sequential_requests_spend_at_most_the_budget_and_nearly_all_of_it() {
    let provider = Provider::default();
    let gw = gateway(
        &provider,
        "token_budgets:\n  default: { limit: 1000, per: 1h, key: ip }\nroutes:\n  - { name: seq, path: /v1/chat/completions, methods: [POST], auth: none, body: { format: openai_chat } }\n",
    )
    .await;
    let mut spent = 0;
    let mut refused = None;
    for _ in 0..30 {
        let reply = chat(
            &gw,
            "/v1/chat/completions",
            json!({"model": "gpt-4o-mini", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
        if reply.status == 429 {
            refused = Some(reply);
            break;
        }
        assert_eq!(reply.status, 200, "{}", reply.text());
        let answer = reply.json();
        spent += answer["usage"]["total_tokens"].as_u64().expect("usage");
        // The budget reports itself under its own policy name.
        assert!(
            reply
                .header("ratelimit-policy")
                .is_some_and(|p| p.contains("\"tokens-default\";q=1000;w=3600")),
            "{:?}",
            reply.header("ratelimit-policy")
        );
        // Let the settlement land before the next reservation.
        settled(&gw, "seq").await;
    }
    assert!(spent <= 1000, "spent {spent}");
    assert!(spent >= 900, "only {spent} of 1000 used");
    let refused = refused.expect("the budget ran out");
    refused.assert_problem(429);
    assert_eq!(
        refused.json()["type"],
        "urn:warden:problem:token-budget-exhausted"
    );
    let retry: u64 = refused
        .header("retry-after")
        .expect("retry-after")
        .parse()
        .expect("seconds");
    assert!((1..=3600).contains(&retry), "{retry}");
    // The last answers were clamped below the requested 100 (the mock uses what it is given).
    let last = provider.last();
    assert!(
        last["max_tokens"].as_u64().expect("clamped") < 100,
        "{last}"
    );
    assert_eq!(settled(&gw, "seq").await as u64, spent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_concurrent_requests_never_spend_more_than_the_budget() {
    let provider = Provider::default();
    let gw = gateway(
        &provider,
        "token_budgets:\n  default: { limit: 2000, per: 1h, key: ip }\nroutes:\n  - { name: conc, path: /v1/chat/completions, methods: [POST], auth: none, body: { format: openai_chat } }\n",
    )
    .await;
    let gw = Arc::new(gw);
    let mut tasks = Vec::new();
    for i in 0..40 {
        let gw = gw.clone();
        tasks.push(tokio::spawn(async move {
            // Half name no output limit: they ask for as much as the budget gives.
            let mut body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": format!("request {i}")}]});
            if i % 2 == 0 {
                body["max_tokens"] = json!(150);
            }
            chat(&gw, "/v1/chat/completions", body).await
        }));
    }
    let mut spent = 0;
    let mut statuses = std::collections::BTreeMap::new();
    for task in tasks {
        let reply = task.await.expect("task");
        *statuses.entry(reply.status.as_u16()).or_insert(0) += 1;
        if reply.status == 200 {
            spent += reply.json()["usage"]["total_tokens"]
                .as_u64()
                .expect("usage");
        }
    }
    assert!(spent <= 2000, "spent {spent}: {statuses:?}");
    assert!(statuses.contains_key(&429), "{statuses:?}");
    assert_eq!(
        statuses
            .keys()
            .copied()
            .filter(|s| *s != 200 && *s != 429)
            .count(),
        0,
        "{statuses:?}"
    );
}

#[tokio::test]
async fn an_openai_stream_is_counted_from_its_usage_which_the_client_does_not_see() {
    let provider = Provider::default();
    let gw = gateway(
        &provider,
        "token_budgets:\n  default: { limit: 5000, per: 1h, key: ip }\nroutes:\n  - { name: stream, path: /v1/chat/completions, methods: [POST], auth: none, body: { format: openai_chat } }\n",
    )
    .await;
    let reply = chat(
        &gw,
        "/v1/chat/completions",
        json!({"model": "gpt-4o-mini", "stream": true, "max_tokens": 30, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(reply.status, 200);
    let text = reply.text();
    assert_eq!(text.matches("\"content\":\"a\"").count(), 30, "{text}");
    // The gateway asked for the usage chunk; the client did not, and does not get it.
    assert_eq!(provider.last()["stream_options"]["include_usage"], true);
    assert!(!text.contains("\"usage\""), "{text}");
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    assert_eq!(settled(&gw, "stream").await as u64, PROMPT + 30);
    // A client that asks for its usage gets it, and is settled by it all the same.
    let reply = chat(
        &gw,
        "/v1/chat/completions",
        json!({"model": "gpt-4o-mini", "stream": true, "stream_options": {"include_usage": true}, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert!(
        reply.text().contains("\"completion_tokens\":5"),
        "{}",
        reply.text()
    );
    let series =
        "warden_token_budget_tokens_total{route=\"stream\",model=\"gpt-4o-mini\",kind=\"settled\"}";
    let mut total = 0.0;
    for _ in 0..100 {
        total = common::metric(&gw, series).await;
        if total as u64 == 2 * PROMPT + 35 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(total as u64, 2 * PROMPT + 35);
}

#[tokio::test]
async fn an_upstream_that_ignores_the_limit_is_cut_at_the_reservation() {
    let provider = Provider::default();
    let gw = gateway(
        &provider,
        "token_budgets:\n  default: { limit: 300, per: 1h, key: ip }\nroutes:\n  - { name: runaway, path: /ignore/v1/chat/completions, methods: [POST], auth: none, body: { format: openai_chat } }\n  - { name: runaway-anthropic, path: /ignore/v1/messages, methods: [POST], auth: none, body: { format: anthropic_messages, provider: anthropic }, token_budget: { limit: 1000, per: 1h, key: ip } }\n",
    )
    .await;
    let reply = chat(
        &gw,
        "/ignore/v1/chat/completions",
        json!({"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(reply.status, 200);
    let text = reply.text();
    let granted = provider.last()["max_completion_tokens"]
        .as_u64()
        .expect("the grant was written in");
    let received = text.matches("\"content\":\"a\"").count() as u64;
    assert!(received <= granted, "{received} > {granted}");
    assert!(
        received + 5 >= granted,
        "cut early: {received} of {granted}"
    );
    // A well-formed end: finish_reason length, then [DONE].
    assert!(text.contains("\"finish_reason\":\"length\""), "{text}");
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    let spent = settled(&gw, "runaway").await as u64;
    assert!(spent <= 300, "{spent}");

    // The same for Anthropic: message_delta with stop_reason max_tokens, then message_stop.
    let reply = chat(
        &gw,
        "/ignore/v1/messages",
        json!({"model": "claude-sonnet-4", "stream": true, "max_tokens": 1000, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(reply.status, 200);
    let text = reply.text();
    let granted = provider.last()["max_tokens"].as_u64().expect("clamped");
    assert!(granted < 1000, "{granted}");
    let received = text.matches("text_delta").count() as u64;
    assert!(
        received <= granted && received + 5 >= granted,
        "{received} of {granted}"
    );
    assert!(text.contains("\"stop_reason\":\"max_tokens\""), "{text}");
    assert!(
        text.trim_end()
            .ends_with("data: {\"type\":\"message_stop\"}"),
        "{text}"
    );
    // The client got one content_block_stop: the one the gateway wrote for the open block.
    assert_eq!(text.matches("content_block_stop").count(), 2, "{text}");
    // The input the stream reported and what was sent of the output: within the route's 1000.
    let spent = settled_for(&gw, "runaway-anthropic", "claude-sonnet-4").await;
    assert_eq!(spent as u64, PROMPT + received);
}

#[tokio::test]
async fn an_anthropic_stream_is_counted_from_message_start_and_message_delta() {
    let provider = Provider::default();
    let gw = gateway(
        &provider,
        "token_budgets:\n  default: { limit: 100000, per: 1h, key: ip }\nroutes:\n  - { name: anthropic, path: /v1/messages, methods: [POST], auth: none, body: { format: anthropic_messages, provider: anthropic } }\n",
    )
    .await;
    let reply = chat(
        &gw,
        "/v1/messages",
        json!({"model": "claude-sonnet-4", "stream": true, "max_tokens": 40, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text().matches("text_delta").count(), 40);
    assert_eq!(
        settled_for(&gw, "anthropic", "claude-sonnet-4").await as u64,
        PROMPT + 40
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_sharing_redis_hold_one_budget_under_concurrency() {
    let server = crate::common::redis_server::RedisServer::start();
    let provider = Provider::default();
    let yaml = format!(
        "rate_limits:\n  store: {}\n  redis: {{ timeout: 2s }}\ntoken_budgets:\n  default: {{ limit: 3000, per: 1h, key: ip }}\nroutes:\n  - {{ name: shared, path: /v1/chat/completions, methods: [POST], auth: none, body: {{ format: openai_chat }} }}\n",
        server.url()
    );
    let a = Arc::new(gateway(&provider, &yaml).await);
    let b = Arc::new(gateway(&provider, &yaml).await);
    let mut tasks = Vec::new();
    for i in 0..40 {
        let gw = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let body = json!({"model": "gpt-4o-mini", "max_tokens": 120, "stream": i % 4 == 1, "messages": [{"role": "user", "content": format!("request {i}")}]});
            chat(&gw, "/v1/chat/completions", body).await
        }));
    }
    let (mut spent, mut ok, mut refused) = (0u64, 0, 0);
    for task in tasks {
        let reply = task.await.expect("task");
        match reply.status.as_u16() {
            200 if reply.text().starts_with('{') => {
                ok += 1;
                spent += reply.json()["usage"]["total_tokens"]
                    .as_u64()
                    .expect("usage");
            }
            // A stream: its usage is what it streamed, plus the prompt.
            200 => {
                ok += 1;
                spent += PROMPT + reply.text().matches("\"content\":\"a\"").count() as u64;
            }
            429 => refused += 1,
            other => panic!("unexpected {other}: {}", reply.text()),
        }
    }
    assert!(
        spent <= 3000,
        "spent {spent} ({ok} answered, {refused} refused)"
    );
    assert!(refused > 0 && ok > 0, "{ok} answered, {refused} refused");
}

#[tokio::test]
async fn the_settled_usage_is_in_the_audit_trail() {
    let provider = Provider::default();
    let trail = common::temp_dir("budget-audit").join("audit.jsonl");
    let gw = gateway(
        &provider,
        &format!(
            "audit: {{ sink: \"file://{}\" }}\ntoken_budgets:\n  default: {{ limit: 5000, per: 1h, key: ip }}\nroutes:\n  - {{ name: audited, path: /v1/chat/completions, methods: [POST], auth: none, body: {{ format: openai_chat }} }}\n",
            trail.display()
        ),
    )
    .await;
    let whole = chat(&gw, "/v1/chat/completions", json!({"model": "gpt-4o-mini", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]})).await;
    assert_eq!(whole.status, 200);
    let streamed = chat(&gw, "/v1/chat/completions", json!({"model": "gpt-4o-mini", "max_tokens": 7, "stream": true, "messages": [{"role": "user", "content": "hi"}]})).await;
    assert_eq!(streamed.status, 200);
    let common::TestGateway { gateway, .. } = gw;
    gateway.shutdown().await;
    let events: Vec<Value> = std::fs::read_to_string(&trail)
        .expect("trail")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let requests: Vec<&Value> = events
        .iter()
        .filter(|e| e.pointer("/event/action") == Some(&json!("request")))
        .collect();
    let budget = requests[0]
        .pointer("/warden/budget")
        .expect("budget fields");
    assert_eq!(budget["name"], "tokens-default");
    assert_eq!(budget["settled"], PROMPT + 10);
    assert_eq!(budget["prompt_tokens"], PROMPT);
    assert_eq!(budget["output_tokens"], 10);
    assert!(budget["reserved"].as_u64().expect("reserved") >= PROMPT + 10);
    // The stream's request event has the reservation; its usage comes when it ends.
    assert!(requests[1].pointer("/warden/budget/settled").is_none());
    let usage = events
        .iter()
        .find(|e| e.pointer("/event/action") == Some(&json!("token-usage")))
        .expect("a token-usage event");
    assert_eq!(
        usage.pointer("/warden/budget/settled"),
        Some(&json!(PROMPT + 7))
    );
    assert_eq!(
        usage.pointer("/warden/budget/output_tokens"),
        Some(&json!(7))
    );
    assert_eq!(
        usage.pointer("/warden/request_id"),
        requests[1].pointer("/warden/request_id")
    );
}

#[tokio::test]
async fn a_prompt_larger_than_the_whole_budget_is_refused_without_a_retry_time() {
    let provider = Provider::default();
    let gw = gateway(
        &provider,
        "token_budgets:\n  default: { limit: 5000, per: 1h, key: ip }\nroutes:\n  - { name: big, path: /v1/chat/completions, methods: [POST], auth: none, body: { format: openai_chat, max_bytes: 1MiB } }\n",
    )
    .await;
    // About 10,000 tokens of prose (counted off the async workers: it is over 32 KiB).
    let text = "The agent reads the ticket and drafts a reply. ".repeat(1000);
    let reply = chat(
        &gw,
        "/v1/chat/completions",
        json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}),
    )
    .await;
    reply.assert_problem(429);
    assert_eq!(
        reply.json()["type"],
        "urn:warden:problem:token-budget-exhausted"
    );
    assert_eq!(reply.header("retry-after"), None, "waiting would not help");
    assert!(
        provider.bodies.lock().expect("lock").is_empty(),
        "nothing was forwarded"
    );
    // A small one still fits: the refusal held nothing.
    let reply = chat(&gw, "/v1/chat/completions", json!({"model": "gpt-4o-mini", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]})).await;
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .header("ratelimit")
            .is_some_and(|r| r.starts_with("\"tokens-default\";r=")),
        "{:?}",
        reply.header("ratelimit")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_mid_stream_settles_what_was_produced() {
    let provider = Provider::default();
    let gw = gateway(
        &provider,
        "token_budgets:\n  default: { limit: 1000, per: 1h, key: ip }\nroutes:\n  - { name: leaves, path: /slow/v1/chat/completions, methods: [POST], auth: none, body: { format: openai_chat } }\n",
    )
    .await;
    let req = common::request("POST", &gw.url("/slow/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(body::full(
            json!({"model": "gpt-4o-mini", "stream": true, "max_tokens": 500, "messages": [{"role": "user", "content": "hi"}]}).to_string(),
        ))
        .expect("request");
    let response = common::client().request(req).await.expect("response");
    assert_eq!(response.status(), 200);
    let reserved: u64 = response.headers()["ratelimit"]
        .to_str()
        .expect("text")
        .split("r=")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .and_then(|r| r.parse().ok())
        .map(|remaining: u64| 1000 - remaining)
        .expect("remaining");
    let mut body = response.into_body();
    let mut seen = 0;
    while seen < 5 {
        let frame = body.frame().await.expect("a frame").expect("data");
        if frame.data_ref().is_some_and(|d| !d.is_empty()) {
            seen += 1;
        }
    }
    drop(body);
    let spent = settled(&gw, "leaves").await as u64;
    // The prompt bound and the few deltas produced; the rest of the 500 went back.
    assert!(
        spent > 5 && spent < 100,
        "settled {spent} of {reserved} reserved"
    );
    let next = chat(&gw, "/slow/v1/chat/completions", json!({"model": "gpt-4o-mini", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]})).await;
    assert_eq!(next.status, 200);
}

#[tokio::test]
async fn a_responses_request_gets_its_output_limit_written_as_max_output_tokens() {
    let provider = Provider::default();
    let gw = gateway(
        &provider,
        "token_budgets:\n  default: { limit: 200, per: 1h, key: ip }\nroutes:\n  - { name: responses, path: /v1/responses, methods: [POST], auth: none, body: { format: openai_responses } }\n",
    )
    .await;
    let reply = chat(
        &gw,
        "/v1/responses",
        json!({"model": "gpt-4o-mini", "input": "hi", "max_output_tokens": 5000}),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let forwarded = provider.last();
    let granted = forwarded["max_output_tokens"].as_u64().expect("written");
    assert!(granted < 200, "{forwarded}");
    assert!(
        forwarded.get("max_tokens").is_none() && forwarded.get("max_completion_tokens").is_none()
    );
    assert_eq!(settled(&gw, "responses").await as u64, PROMPT + granted);
}

#[tokio::test]
async fn n_answers_are_reserved_n_times() {
    let provider = Provider::default();
    let gw = gateway(
        &provider,
        "token_budgets:\n  default: { limit: 200, per: 1h, key: ip }\nroutes:\n  - { name: choices, path: /v1/chat/completions, methods: [POST], auth: none, body: { format: openai_chat } }\n",
    )
    .await;
    let reply = chat(
        &gw,
        "/v1/chat/completions",
        json!({"model": "gpt-4o-mini", "n": 4, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let each = provider.last()["max_completion_tokens"]
        .as_u64()
        .expect("written");
    // Four answers of `each` tokens and the prompt fit in 200.
    assert!(each > 0 && 4 * each + PROMPT <= 200, "{each} per answer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgets_fail_closed_while_redis_is_down_and_recover_after_a_restart() {
    let mut server = crate::common::redis_server::RedisServer::start();
    let provider = Provider::default();
    let yaml = format!(
        "rate_limits:\n  store: {}\n  on_store_error: local\n  redis: {{ timeout: 200ms, connect_timeout: 200ms, breaker: {{ failures: 2, open_for: 100ms, max_open_for: 200ms }} }}\ntoken_budgets:\n  default: {{ limit: 1000, per: 1h, key: ip }}\nroutes:\n  - {{ name: restart, path: /v1/chat/completions, methods: [POST], auth: none, body: {{ format: openai_chat }} }}\n",
        server.url()
    );
    let gw = gateway(&provider, &yaml).await;
    let ask = || {
        chat(
            &gw,
            "/v1/chat/completions",
            json!({"model": "gpt-4o-mini", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}),
        )
    };
    assert_eq!(ask().await.status, 200);
    server.stop();
    // Even under `local`, a budget does not move to the in-process store: 503.
    ask().await.assert_problem(503);
    assert!(
        provider.bodies.lock().expect("lock").len() == 1,
        "nothing forwarded while down"
    );
    server.restart();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let reply = ask().await;
        if reply.status == 200 {
            break;
        }
        assert_eq!(reply.status, 503, "{}", reply.text());
        assert!(std::time::Instant::now() < deadline, "never recovered");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_tier_chosen_by_role_replaces_the_default_budget() {
    const SECRET: &str = "budget-tier-hmac-secret-0123456789abcdef";
    let provider = Provider::default();
    let addr = provider.start().await;
    let yaml = "auth:\n  jwt:\n    - { name: idp, issuer: 'https://idp.test', audiences: [api], secret: '${env:TIER_SECRET}', algorithms: [HS256] }\ntoken_budgets:\n  default: { limit: 100, per: 1h }\n  tiers:\n    premium: { limit: 100000, per: 1d, roles: [premium] }\nroutes:\n  - { name: tiers, path: /v1/chat/completions, methods: [POST], authorize: authenticated, body: { format: openai_chat } }\n";
    let config =
        common::config_with_env(yaml, &format!("http://{addr}"), &[("TIER_SECRET", SECRET)])
            .unwrap_or_else(|e| panic!("{e}"));
    let gw = common::spawn_config(config, common::upstream().await).await;
    let send = |roles: Vec<&str>| {
        let token = common::hs256_token(
            SECRET,
            json!({"iss": "https://idp.test", "aud": "api", "sub": "alice", "roles": roles}),
        );
        let req = common::request("POST", &gw.url("/v1/chat/completions"))
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {token}"))
            .body(body::full(json!({"model": "gpt-4o-mini", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}).to_string()))
            .expect("request");
        async move { common::send(&common::client(), req).await }
    };
    let premium = send(vec!["premium"]).await;
    assert_eq!(premium.status, 200);
    assert!(
        premium
            .header("ratelimit-policy")
            .is_some_and(|p| p.contains("\"tokens-premium\";q=100000;w=86400")),
        "{:?}",
        premium.header("ratelimit-policy")
    );
    let plain = send(vec![]).await;
    assert_eq!(plain.status, 200);
    assert!(
        plain
            .header("ratelimit-policy")
            .is_some_and(|p| p.contains("\"tokens-default\";q=100;w=3600"))
    );
    // The default's 100 are spent after one answer of 50 and a prompt; the premium tier's are not.
    send(vec![]).await.assert_problem(429);
    assert_eq!(send(vec!["premium"]).await.status, 200);
}

#[test]
fn budget_configuration_is_checked() {
    let errors = |yaml: &str| match common::config_for(yaml, "http://127.0.0.1:1") {
        Ok(_) => String::new(),
        Err(e) => e.to_string(),
    };
    let llm = "body: { format: openai_chat }";
    let cases = [
        (
            "routes:\n  - { path: /a, methods: [POST], auth: none, body: { format: json, text_fields: [/q] }, token_budget: { limit: 5 } }\n".to_owned(),
            "routes[0].token_budget: needs body.format",
        ),
        (
            "routes:\n  - { path: /a, methods: [POST], auth: none, token_budget: { limit: 5 } }\n".to_owned(),
            "routes[0].token_budget: needs body.format",
        ),
        (
            format!(
                "token_budgets:\n  default: {{ limit: 0 }}\nroutes:\n  - {{ path: /a, methods: [POST], auth: none, {llm} }}\n"
            ),
            "token_budgets.default.limit: expected 1 to",
        ),
        (
            format!(
                "token_budgets:\n  default: {{ per: 1h }}\nroutes:\n  - {{ path: /a, methods: [POST], auth: none, {llm} }}\n"
            ),
            "token_budgets.default.limit: required",
        ),
        (
            format!(
                "token_budgets:\n  default: {{ limit: 9, weights: {{ prompt: 0, completion: 0 }} }}\nroutes:\n  - {{ path: /a, methods: [POST], auth: none, {llm} }}\n"
            ),
            "token_budgets.default.weights: counts nothing",
        ),
        (
            format!(
                "token_budgets:\n  tiers:\n    gold: {{ limit: 9, key: cookie }}\nroutes:\n  - {{ path: /a, methods: [POST], auth: none, {llm} }}\n"
            ),
            "token_budgets.tiers.gold.key: unknown key part",
        ),
        (
            format!(
                "token_budgets:\n  default: {{ limit: 9, burst: 3 }}\nroutes:\n  - {{ path: /a, methods: [POST], auth: none, {llm} }}\n"
            ),
            "unknown field `burst`",
        ),
        (
            format!(
                "routes:\n  - {{ path: /a, methods: [POST], auth: none, {llm}, token_budget: sometimes }}\n"
            ),
            "routes[0].token_budget",
        ),
    ];
    for (yaml, expected) in cases {
        let found = errors(&yaml);
        assert!(
            found.contains(expected),
            "expected {expected:?} in {found}\n{yaml}"
        );
    }
    // `off` on an LLM route, and a default that skips non-LLM routes, are fine.
    assert_eq!(
        errors(&format!(
            "token_budgets:\n  default: {{ limit: 9 }}\nroutes:\n  - {{ path: /a, methods: [POST], auth: none, {llm}, token_budget: off }}\n  - {{ path: /b, auth: none }}\n"
        )),
        ""
    );
}

#[tokio::test]
async fn a_responses_stream_is_counted_from_response_completed_and_cut_at_its_reservation() {
    let provider = Provider::default();
    let gw = gateway(
        &provider,
        "token_budgets:\n  default: { limit: 100000, per: 1h, key: ip }\nroutes:\n  - { name: responses-stream, path: /v1/responses, methods: [POST], auth: none, body: { format: openai_responses } }\n  - { name: responses-runaway, path: /ignore/v1/responses, methods: [POST], auth: none, body: { format: openai_responses }, token_budget: { limit: 300, per: 1h, key: ip } }\n",
    )
    .await;
    let reply = chat(
        &gw,
        "/v1/responses",
        json!({"model": "gpt-4o-mini", "input": "hi", "stream": true, "max_output_tokens": 25}),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.text().matches("response.output_text.delta").count(),
        2 * 25
    );
    assert_eq!(settled(&gw, "responses-stream").await as u64, PROMPT + 25);
    let reply = chat(
        &gw,
        "/ignore/v1/responses",
        json!({"model": "gpt-4o-mini", "input": "hi", "stream": true}),
    )
    .await;
    let text = reply.text();
    let granted = provider.last()["max_output_tokens"]
        .as_u64()
        .expect("written");
    let received = text.matches("\"delta\":\"a\"").count() as u64;
    assert!(
        received <= granted && received + 5 >= granted,
        "{received} of {granted}"
    );
    // A well-formed end: response.incomplete for max_output_tokens, last.
    let last = text.trim_end().rsplit("\n\n").next().unwrap_or_default();
    assert!(
        last.starts_with("event: response.incomplete") && last.contains("max_output_tokens"),
        "{text}"
    );
    assert!(!text.contains("response.completed"), "{text}");
    assert!(settled(&gw, "responses-runaway").await as u64 <= 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_gives_up_before_the_answer_settles_the_prompt_only() {
    let provider = Provider::default();
    let gw = gateway(
        &provider,
        "token_budgets:\n  default: { limit: 1000, per: 1h, key: ip }\nroutes:\n  - { name: gives-up, path: /slow/v1/chat/completions, methods: [POST], auth: none, body: { format: openai_chat } }\n",
    )
    .await;
    let waiting = chat(
        &gw,
        "/slow/v1/chat/completions",
        json!({"model": "gpt-4o-mini", "max_tokens": 500, "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(200), waiting)
            .await
            .is_err()
    );
    let series = "warden_token_budget_tokens_total{route=\"gives-up\",model=\"gpt-4o-mini\",kind=\"settled\"}";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while common::metric(&gw, series).await == 0.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the abandoned request was never settled"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Past the moment the upstream would have answered: settled once, to the prompt's bound,
    // not to the 500 output tokens reserved for it.
    tokio::time::sleep(std::time::Duration::from_millis(900)).await;
    let spent = common::metric(&gw, series).await as u64;
    assert!(spent > 0 && spent < 100, "settled {spent}");
}
