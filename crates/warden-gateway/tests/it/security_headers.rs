//! Security response headers on forwarded and rejected responses.

use crate::common::*;

#[tokio::test]
async fn api_profile_is_the_default_and_fingerprints_are_removed() {
    let gw = spawn(BASIC).await;
    let reply = get(&gw.url("/fingerprint")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(
        reply.header("content-security-policy"),
        Some("default-src 'none'; frame-ancestors 'none'")
    );
    assert_eq!(reply.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    assert_eq!(
        reply.header("cross-origin-opener-policy"),
        Some("same-origin")
    );
    assert_eq!(
        reply.header("cross-origin-resource-policy"),
        Some("same-origin")
    );
    // The upstream's own choice is kept where it set one.
    assert_eq!(reply.header("x-frame-options"), Some("SAMEORIGIN"));
    assert!(reply.header("server").is_none());
    assert!(reply.header("x-powered-by").is_none());
    // Plain HTTP: never HSTS.
    assert!(reply.header("strict-transport-security").is_none());

    let reply = get(&gw.url("/nope")).await;
    assert_eq!(reply.header("x-frame-options"), Some("DENY"));
    assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
}

#[tokio::test]
async fn browser_profile_and_overrides() {
    let yaml = format!(
        "headers:\n  profile: browser\n  set: {{ x-frame-options: DENY, permissions-policy: 'camera=()' }}\n  remove: [x-dns-prefetch-control]\n{BASIC}"
    );
    let gw = spawn(&yaml).await;
    let reply = get(&gw.url("/fingerprint")).await;
    assert!(
        reply
            .header("content-security-policy")
            .is_some_and(|csp| csp.contains("default-src 'self'"))
    );
    assert_eq!(
        reply.header("x-frame-options"),
        Some("DENY"),
        "set overrides the upstream"
    );
    assert_eq!(reply.header("permissions-policy"), Some("camera=()"));
    assert!(reply.header("x-dns-prefetch-control").is_none());
    assert_eq!(reply.header("origin-agent-cluster"), Some("?1"));
}
