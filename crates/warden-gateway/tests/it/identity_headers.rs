//! Client-sent identity headers (the gateway's `X-Warden-` namespace) never reach the upstream.

use crate::common::*;

#[tokio::test]
async fn forged_identity_headers_in_every_spelling_are_stripped() {
    let gw = spawn(BASIC).await;
    let reply = raw(
        gw.addr(),
        b"GET /echo HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\
          X-Warden-Subject: admin\r\nx-warden-tenant: other\r\nX_WARDEN_ROLES: root\r\n\
          x_Warden-Scopes: *\r\nX-WARDEN-AUTH-METHOD: jwt\r\nX-Warden-Subject: second-copy\r\n\
          X-Wardenish: kept\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&reply), 200, "{reply}");
    let seen = gw.upstream.last();
    for (name, _) in seen.headers.iter() {
        let folded = name.as_str().replace('_', "-");
        assert!(
            !folded.starts_with("x-warden-"),
            "{name} reached the upstream"
        );
    }
    assert_eq!(seen.headers["x-wardenish"], "kept");
}

#[tokio::test]
async fn a_custom_prefix_is_honoured_over_http2_too() {
    let yaml = format!("upstream: {{ url: http://placeholder, identity_headers: X-Gw- }}\n{BASIC}");
    let gw = spawn(&yaml).await;
    send(
        &h2_client(),
        request("GET", &gw.url("/echo"))
            .header("x-gw-subject", "admin")
            .header("x_gw_roles", "root")
            .header("x-warden-subject", "not-our-prefix")
            .body(warden::body::empty())
            .expect("request"),
    )
    .await;
    let seen = gw.upstream.last();
    assert!(seen.headers.get("x-gw-subject").is_none());
    assert!(seen.headers.get("x_gw_roles").is_none());
    assert_eq!(seen.headers["x-warden-subject"], "not-our-prefix");
}
