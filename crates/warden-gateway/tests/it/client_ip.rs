//! Client IP resolution and X-Forwarded-For: forwarding headers count only from trusted proxies.

use crate::common::*;

async fn forwarded_for(gw: &TestGateway, headers: &[(&str, &str)]) -> String {
    let mut builder = request("GET", &gw.url("/echo"));
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let reply = send(
        &client(),
        builder.body(warden::body::empty()).expect("request"),
    )
    .await;
    assert_eq!(reply.status, 200);
    gw.upstream.last().headers["x-forwarded-for"]
        .to_str()
        .expect("ascii")
        .to_owned()
}

#[tokio::test]
async fn an_untrusted_peer_cannot_choose_its_address() {
    let gw = spawn(BASIC).await; // trusts nobody by default
    let got = forwarded_for(
        &gw,
        &[
            ("x-forwarded-for", "203.0.113.7"),
            ("forwarded", "for=198.51.100.1"),
        ],
    )
    .await;
    assert_eq!(got, "127.0.0.1");
}

#[tokio::test]
async fn a_trusted_proxy_vouches_for_the_client_right_to_left() {
    let yaml = format!("server: {{ trusted_proxies: [127.0.0.0/8, 10.0.0.0/8] }}\n{BASIC}");
    let gw = spawn(&yaml).await;
    // Spoofed leftmost entry, then the real client, then an internal hop.
    let got = forwarded_for(
        &gw,
        &[("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.1.2.3")],
    )
    .await;
    assert_eq!(got, "203.0.113.7, 127.0.0.1");
    // Forwarded is read only where the proxies are said to write it.
    let got = forwarded_for(
        &gw,
        &[("forwarded", "for=6.6.6.6, for=\"[2001:db8::7]:443\"")],
    )
    .await;
    assert_eq!(got, "127.0.0.1");
    let rfc7239 = spawn(&format!(
        "server: {{ trusted_proxies: [127.0.0.0/8, 10.0.0.0/8], client_ip_header: forwarded }}\n{BASIC}"
    ))
    .await;
    let got = forwarded_for(
        &rfc7239,
        &[("forwarded", "for=6.6.6.6, for=\"[2001:db8::7]:443\"")],
    )
    .await;
    assert_eq!(got, "2001:db8::7, 127.0.0.1");
    // Nothing to vouch for: the peer itself.
    let got = forwarded_for(&gw, &[]).await;
    assert_eq!(got, "127.0.0.1");
    // Garbage stops the walk at the last trusted hop.
    let got = forwarded_for(&gw, &[("x-forwarded-for", "203.0.113.7, bogus, 10.9.9.9")]).await;
    assert_eq!(got, "10.9.9.9, 127.0.0.1");
}

#[tokio::test]
async fn a_trusted_proxy_may_set_the_original_scheme() {
    let yaml =
        format!("server: {{ trusted_proxies: [127.0.0.1], trust_forwarded_proto: true }}\n{BASIC}");
    let gw = spawn(&yaml).await;
    forwarded_for(
        &gw,
        &[
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-proto", "https"),
        ],
    )
    .await;
    assert_eq!(gw.upstream.last().headers["x-forwarded-proto"], "https");
    // ...but not an arbitrary value.
    forwarded_for(
        &gw,
        &[
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-proto", "gopher"),
        ],
    )
    .await;
    assert_eq!(gw.upstream.last().headers["x-forwarded-proto"], "http");
}
