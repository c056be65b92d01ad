//! Routing and path canonicalization through real sockets (raw requests, so no client
//! normalizes the path first).

use crate::common::*;

async fn raw_get(gw: &TestGateway, target: &str) -> String {
    raw(
        gw.addr(),
        format!("GET {target} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
}

#[tokio::test]
async fn unknown_paths_are_404_and_wrong_methods_405_with_allow() {
    let gw = spawn(BASIC).await;
    get(&gw.url("/nope")).await.assert_problem(404);
    let reply = send(
        &client(),
        request("PATCH", &gw.url("/items/1"))
            .body(warden::body::empty())
            .expect("request"),
    )
    .await;
    reply.assert_problem(405);
    assert_eq!(reply.header("allow"), Some("GET, DELETE, HEAD"));
    assert!(
        gw.upstream.requests().is_empty(),
        "nothing reached the upstream"
    );
}

#[tokio::test]
async fn head_is_served_by_get_routes() {
    let gw = spawn(BASIC).await;
    let reply = send(
        &client(),
        request("HEAD", &gw.url("/items/1"))
            .body(warden::body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(gw.upstream.last().method, "HEAD");
}

#[tokio::test]
async fn templates_bind_parameters_and_catch_all() {
    let gw = spawn(BASIC).await;
    assert_eq!(get(&gw.url("/items/42")).await.status, 200);
    assert_eq!(get(&gw.url("/files/a/b/c.txt")).await.status, 200);
    assert_eq!(gw.upstream.last().uri, "/files/a/b/c.txt");
    assert_eq!(get(&gw.url("/items/42/extra")).await.status, 404);
}

/// (request target, expected status, path the upstream must see when forwarded)
const ATTACKS: &[(&str, u16, Option<&str>)] = &[
    ("/admin/../echo", 200, Some("/echo")),
    ("//admin", 200, Some("/admin")),
    ("/%2e%2e/admin", 400, None),
    ("/echo/%2e%2e/admin", 200, Some("/admin")),
    ("/ADMIN", 404, None),
    ("/files/a%2fb", 400, None),
    ("/files/a%2F..%2F..%2Fetc", 400, None),
    ("/admin;jsessionid=1", 400, None),
    ("/admin/.;/echo", 400, None),
    ("/%252e%252e/admin", 400, None),
    ("/files/%c0%ae%c0%ae/admin", 400, None),
    ("/files/a%5cb", 400, None),
    ("/files/a%00b", 400, None),
    ("/files/a%0d%0aX-Injected:%201", 400, None),
    ("/%61dmin", 200, Some("/admin")),
    ("/echo/..", 404, None),
    ("/echo/./", 404, None),
    ("/files/x/../../admin", 200, Some("/admin")),
    ("/../admin", 400, None),
    ("/files/caf%c3%a9", 200, Some("/files/caf%C3%A9")),
    ("/files/%7euser", 200, Some("/files/~user")),
    ("*", 400, None),
];

#[tokio::test]
async fn path_confusion_attacks_have_one_canonical_outcome() {
    let gw = spawn(BASIC).await;
    for (target, status, forwarded) in ATTACKS {
        let before = gw.upstream.requests().len();
        let reply = raw_get(&gw, target).await;
        assert_eq!(raw_status(&reply), *status, "target {target}: {reply}");
        let after = gw.upstream.requests();
        match forwarded {
            Some(path) => {
                assert_eq!(after.len(), before + 1, "target {target} was not forwarded");
                assert_eq!(after[before].uri, *path, "target {target}");
            }
            None => assert_eq!(after.len(), before, "target {target} reached the upstream"),
        }
        if *status == 400 {
            assert!(
                reply.contains("application/problem+json"),
                "{target}: {reply}"
            );
            assert!(
                reply.contains("urn:warden:problem:invalid-path") || reply.contains("bad-request"),
                "{target}: {reply}"
            );
        }
    }
}

#[tokio::test]
async fn backslashes_and_fragments_never_reach_the_upstream() {
    let gw = spawn(BASIC).await;
    // A raw backslash is not a valid request-target character: the HTTP parser refuses it.
    let reply = raw_get(&gw, "/files/..\\admin").await;
    assert_eq!(raw_status(&reply), 400, "{reply}");
    // The HTTP parser drops a fragment before Warden sees the target; it is never forwarded.
    let reply = raw_get(&gw, "/echo#frag").await;
    assert_eq!(raw_status(&reply), 200, "{reply}");
    assert_eq!(gw.upstream.last().uri, "/echo");
    assert!(
        gw.upstream
            .requests()
            .iter()
            .all(|s| !s.uri.contains('\\') && !s.uri.contains('#'))
    );
}

#[tokio::test]
async fn malformed_request_lines_get_400_and_the_server_keeps_serving() {
    let gw = spawn(BASIC).await;
    for junk in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET /echo HTTP/9.9\r\n\r\n",
        b"GET /echo HTTP/1.1\r\nHost: gw\r\nBad Header\r\n\r\n",
        b"GET /echo HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    ] {
        // Every case gets an answer (an empty reply would be a dropped connection).
        let reply = raw(gw.addr(), junk).await;
        assert_eq!(raw_status(&reply), 400, "{junk:?} -> {reply}");
    }
    assert_eq!(get(&gw.url("/echo")).await.status, 200);
    assert!(gw.upstream.requests().len() == 1);
}
