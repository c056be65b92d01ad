//! The admin listener: liveness, readiness that tracks the upstream, Prometheus metrics.

use std::time::Duration;

use crate::common::*;

async fn wait_for_status(url: &str, status: u16) -> Reply {
    for _ in 0..100 {
        let reply = get(url).await;
        if reply.status.as_u16() == status {
            return reply;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} never answered {status}");
}

#[tokio::test]
async fn healthz_and_readyz_follow_the_upstream() {
    let gw = spawn(BASIC).await;
    assert_eq!(get(&gw.admin_url("/healthz")).await.status, 200);
    let ready = wait_for_status(&gw.admin_url("/readyz"), 200).await;
    assert_eq!(ready.json()["status"], "ready");
    assert_eq!(get(&gw.admin_url("/nope")).await.status, 404);
}

#[tokio::test]
async fn readyz_is_false_while_the_upstream_is_unreachable() {
    let dead_addr = dead_addr();
    let upstream = upstream().await;
    let config = config_for(BASIC, &format!("http://{dead_addr}")).expect("config");
    let gw = spawn_config(config, upstream).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(get(&gw.admin_url("/readyz")).await.status, 503);
    assert_eq!(
        get(&gw.admin_url("/healthz")).await.status,
        200,
        "alive even when not ready"
    );
    // The upstream comes up on that address: the gateway becomes ready by itself.
    let _listener = tokio::net::TcpListener::bind(dead_addr)
        .await
        .expect("rebind");
    wait_for_status(&gw.admin_url("/readyz"), 200).await;
}

#[tokio::test]
async fn metrics_count_requests_by_route_status_and_outcome() {
    let gw = spawn(BASIC).await;
    get(&gw.url("/items/1")).await;
    get(&gw.url("/definitely-unknown")).await;
    let metrics = get(&gw.admin_url("/metrics")).await;
    assert_eq!(metrics.status, 200);
    let text = metrics.text();
    let has = |needles: &[&str]| {
        text.lines().any(|line| {
            line.starts_with("warden_requests_total") && needles.iter().all(|n| line.contains(n))
        })
    };
    assert!(
        has(&[
            "route=\"/items/{id}\"",
            "status=\"200\"",
            "outcome=\"forwarded\""
        ]),
        "{text}"
    );
    assert!(
        has(&[
            "route=\"unmatched\"",
            "status=\"404\"",
            "outcome=\"not_found\""
        ]),
        "{text}"
    );
    assert!(
        text.contains("warden_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(text.contains("warden_open_connections"), "{text}");
}

#[tokio::test]
async fn the_admin_listener_is_not_reachable_through_the_public_one() {
    let gw = spawn(BASIC).await;
    get(&gw.url("/metrics")).await.assert_problem(404);
    get(&gw.url("/readyz")).await.assert_problem(404);
}

/// The `warden_…` names in `text`.
fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("warden_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit())
            .collect();
        rest = &rest[at + name.len()..];
        // Histograms are queried by their series.
        let name = name
            .strip_suffix("_bucket")
            .map(str::to_owned)
            .unwrap_or(name);
        names.insert(name);
    }
    names
}

#[test]
fn the_dashboard_shows_documented_metrics_that_the_code_exports() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let read = |path: &str| std::fs::read_to_string(root.join(path)).expect(path);
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/warden-dashboard.json")).expect("JSON");
    let queried = metric_names(&dashboard.to_string());
    assert!(queried.len() >= 15, "{queried:?}");
    let docs = read("docs/operations.md");
    let documented: std::collections::BTreeSet<String> = docs
        .lines()
        .filter(|l| l.starts_with("| `warden_"))
        .flat_map(metric_names)
        .collect();
    let mut source = String::new();
    for dir in ["crates/warden/src", "crates/warden-gateway/src"] {
        let mut stack = vec![root.join(dir)];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).expect("dir").flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    source.push_str(&std::fs::read_to_string(&path).expect("source"));
                }
            }
        }
    }
    for name in &queried {
        assert!(
            documented.contains(name),
            "{name} is not in docs/operations.md"
        );
    }
    for name in &documented {
        assert!(
            source.contains(&format!("\"{name}\"")),
            "{name} is documented but no code exports it"
        );
    }
}

/// `warden_runtime_alive_tasks` counts what the runtime holds: 20 idle connections are 20 more
/// tasks, and closing them gives them back (how a soak tells a leak).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alive_tasks_gauge_follows_open_connections() {
    let gw = spawn(BASIC).await;
    // One keep-alive client for every scrape: its connection's tasks (client and server side)
    // are counted in each reading alike, where a client per scrape left the last one's tasks
    // ending at any moment.
    let scraper = client();
    let tasks = || async {
        let url = gw.admin_url("/metrics");
        let request = request("GET", &url)
            .body(warden::body::empty())
            .expect("request");
        let text = send(&scraper, request).await.text();
        text.lines()
            .find_map(|l| l.strip_prefix("warden_runtime_alive_tasks "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .expect("the gauge")
    };
    let before = tasks().await;
    let mut open = Vec::new();
    for _ in 0..20 {
        open.push(
            tokio::net::TcpStream::connect(gw.addr())
                .await
                .expect("connect"),
        );
    }
    let mut during = 0.0;
    for _ in 0..100 {
        during = tasks().await;
        if during >= before + 20.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(during >= before + 20.0, "{before} then {during}");
    drop(open);
    let mut after = during;
    for _ in 0..100 {
        after = tasks().await;
        if after < before + 20.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(after < before + 20.0, "{before}, {during}, then {after}");
}
