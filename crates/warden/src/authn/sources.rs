//! Where bearer tokens are read from: `Authorization: Bearer` by default; a cookie or a query
//! parameter only when configured. Two *different* tokens in one request are refused (which one
//! would the upstream believe?). After authentication every configured source is removed from
//! the request unless credentials are to be forwarded.
//!
//! Query parameters are matched the way an upstream framework will read them: names are
//! percent-decoded (`access%5Ftoken` is `access_token`) and both `&` and `;` separate pairs
//! (older Python, Java and Perl stacks split on `;`), so no spelling of the parameter can slip
//! a second token past the count or survive the strip.

use http::header::{AUTHORIZATION, COOKIE};
use http::request::Parts;
use http::{HeaderValue, Uri};

use super::{AuthnError, InvalidReason};
use crate::identity::CredentialSource;

/// Configured token locations.
#[derive(Clone, Debug)]
pub struct TokenSources {
    /// Read `Authorization: Bearer <token>` (default true).
    pub authorization_header: bool,
    /// Read this cookie.
    pub cookie: Option<String>,
    /// Read this query parameter.
    pub query: Option<String>,
}

impl Default for TokenSources {
    fn default() -> Self {
        TokenSources {
            authorization_header: true,
            cookie: None,
            query: None,
        }
    }
}

/// A token and where it was found.
#[derive(Clone, Debug)]
pub struct Found<'a> {
    /// The token text (borrowed from the request: no copy per request).
    pub token: &'a str,
    /// Where it was found (the first source, when the same token came several ways).
    pub source: CredentialSource,
}

impl TokenSources {
    /// Finds the request's bearer token. `Ok(None)`: no token in any configured source.
    pub fn extract<'a>(&self, parts: &'a Parts) -> Result<Option<Found<'a>>, AuthnError> {
        // The first token found, in source order; any other source must carry the same one.
        let mut first: Option<Found<'a>> = None;
        if self.authorization_header {
            let mut values = parts.headers.get_all(AUTHORIZATION).iter();
            if let Some(value) = values.next() {
                if values.next().is_some() {
                    return Err(AuthnError::Ambiguous("more than one Authorization header"));
                }
                if let Some(token) = bearer(value)? {
                    offer(&mut first, token, || CredentialSource::AuthorizationHeader)?;
                }
            }
        }
        if let Some(name) = &self.cookie {
            for token in cookies(parts, name) {
                offer(&mut first, token, || CredentialSource::Cookie(name.clone()))?;
            }
        }
        if let Some(name) = &self.query {
            for token in query_values(&parts.uri, name) {
                offer(&mut first, token, || CredentialSource::Query(name.clone()))?;
            }
        }
        match first {
            Some(found) if found.token.is_empty() => {
                Err(AuthnError::Invalid(InvalidReason::Malformed("empty token")))
            }
            found => Ok(found),
        }
    }

    /// Removes every configured token source from the request.
    pub fn strip(&self, parts: &mut Parts) {
        if self.authorization_header {
            parts.headers.remove(AUTHORIZATION);
        }
        if let Some(name) = &self.cookie {
            strip_cookie(parts, name);
        }
        if let Some(name) = &self.query {
            strip_query(parts, name);
        }
    }
}

/// Keeps the first token found; any later one must be the same.
fn offer<'a>(
    first: &mut Option<Found<'a>>,
    token: &'a str,
    source: impl FnOnce() -> CredentialSource,
) -> Result<(), AuthnError> {
    match first {
        None => {
            *first = Some(Found {
                token,
                source: source(),
            });
            Ok(())
        }
        Some(found) if found.token != token => {
            Err(AuthnError::Ambiguous("two different tokens in one request"))
        }
        Some(_) => Ok(()),
    }
}

/// `Bearer <token>`: `Ok(None)` for other schemes (another authenticator's business).
fn bearer(value: &HeaderValue) -> Result<Option<&str>, AuthnError> {
    let text = value
        .to_str()
        .map_err(|_| AuthnError::Invalid(InvalidReason::Malformed("Authorization is not ASCII")))?;
    let (scheme, rest) = text.split_once(' ').unwrap_or((text, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(None);
    }
    let token = rest.trim_start_matches(' ');
    if token.is_empty() || token.contains(' ') {
        return Err(AuthnError::Invalid(InvalidReason::Malformed(
            "malformed Bearer credentials",
        )));
    }
    Ok(Some(token))
}

fn cookie_pairs(value: &HeaderValue) -> impl Iterator<Item = (&str, &str)> {
    value
        .to_str()
        .unwrap_or("")
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
}

fn cookies<'a, 'n>(parts: &'a Parts, name: &'n str) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
    parts
        .headers
        .get_all(COOKIE)
        .iter()
        .flat_map(cookie_pairs)
        .filter(move |(n, _)| *n == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// Query pairs, split on `&` and `;`.
fn query_pairs(query: &str) -> impl Iterator<Item = &str> {
    query.split(['&', ';']).filter(|pair| !pair.is_empty())
}

/// Whether a raw `name=value` pair's name, percent-decoded, is `name`.
fn pair_named(pair: &str, name: &str) -> bool {
    let raw_name = pair.split_once('=').map_or(pair, |(n, _)| n);
    if !raw_name.contains(['%', '+']) {
        return raw_name == name;
    }
    form_urlencoded::parse(raw_name.as_bytes())
        .next()
        .is_some_and(|(decoded, _)| decoded == name)
}

fn query_values<'a, 'n>(
    uri: &'a Uri,
    name: &'n str,
) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
    query_pairs(uri.query().unwrap_or(""))
        .filter(move |pair| pair_named(pair, name))
        .map(|pair| pair.split_once('=').map_or("", |(_, v)| v))
}

fn strip_cookie(parts: &mut Parts, name: &str) {
    let kept: Vec<String> = parts
        .headers
        .get_all(COOKIE)
        .iter()
        .flat_map(cookie_pairs)
        .filter(|(n, _)| *n != name)
        .map(|(n, v)| format!("{n}={v}"))
        .collect();
    parts.headers.remove(COOKIE);
    if !kept.is_empty()
        && let Ok(value) = HeaderValue::from_str(&kept.join("; "))
    {
        parts.headers.insert(COOKIE, value);
    }
}

fn strip_query(parts: &mut Parts, name: &str) {
    let Some(query) = parts.uri.query() else {
        return;
    };
    // Drop matching pairs and keep every other byte as sent (separators included).
    let mut kept = String::with_capacity(query.len());
    for piece in query.split_inclusive(['&', ';']) {
        let pair = piece.strip_suffix(['&', ';']).unwrap_or(piece);
        if !pair_named(pair, name) {
            kept.push_str(piece);
        }
    }
    let kept = kept.trim_end_matches(['&', ';']);
    let path = parts.uri.path();
    let target = if kept.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{kept}")
    };
    let mut uri_parts = parts.uri.clone().into_parts();
    if let Ok(path_and_query) = target.parse() {
        uri_parts.path_and_query = Some(path_and_query);
        if let Ok(uri) = Uri::from_parts(uri_parts) {
            parts.uri = uri;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut builder = http::Request::builder().uri(uri);
        for (n, v) in headers {
            builder = builder.header(*n, *v);
        }
        builder.body(()).expect("request").into_parts().0
    }

    fn all_sources() -> TokenSources {
        TokenSources {
            authorization_header: true,
            cookie: Some("at".into()),
            query: Some("access_token".into()),
        }
    }

    #[test]
    fn bearer_is_read_case_insensitively_and_other_schemes_are_ignored() {
        let sources = TokenSources::default();
        let request = parts("/", &[("authorization", "bEaReR abc.def.ghi")]);
        let found = sources.extract(&request).expect("ok");
        assert_eq!(found.expect("token").token, "abc.def.ghi");
        assert!(
            sources
                .extract(&parts("/", &[("authorization", "Basic Zm9vOmJhcg==")]))
                .expect("ok")
                .is_none()
        );
        assert!(
            sources
                .extract(&parts("/", &[("authorization", "Bearer ")]))
                .is_err()
        );
        assert!(
            sources
                .extract(&parts("/?access_token=x", &[]))
                .expect("ok")
                .is_none(),
            "query off by default"
        );
    }

    #[test]
    fn two_different_tokens_are_ambiguous_but_the_same_twice_is_fine() {
        let sources = all_sources();
        let req = parts("/?access_token=t1", &[("authorization", "Bearer t2")]);
        assert!(matches!(
            sources.extract(&req),
            Err(AuthnError::Ambiguous(_))
        ));
        let req = parts("/?access_token=t1", &[("cookie", "a=1; at=t1")]);
        assert_eq!(
            sources.extract(&req).expect("ok").expect("token").token,
            "t1"
        );
        let mut req = parts("/", &[("authorization", "Bearer a")]);
        req.headers
            .append("authorization", "Bearer a".parse().expect("value"));
        assert!(matches!(
            sources.extract(&req),
            Err(AuthnError::Ambiguous(_))
        ));
    }

    #[test]
    fn strip_removes_every_configured_source_and_keeps_the_rest() {
        let sources = all_sources();
        let mut req = parts(
            "/x?a=1&access_token=t1&b=2",
            &[
                ("authorization", "Bearer t1"),
                ("cookie", "a=1; at=t1; b=2"),
            ],
        );
        sources.strip(&mut req);
        assert!(req.headers.get("authorization").is_none());
        assert_eq!(req.headers["cookie"], "a=1; b=2");
        assert_eq!(req.uri, "/x?a=1&b=2");
    }

    #[test]
    fn encoded_names_and_semicolons_count_and_are_stripped() {
        let sources = all_sources();
        for uri in [
            "/?access_token=t1&access%5Ftoken=t2",
            "/?access_token=t1;access_token=t2",
            "/?access%5ftoken=t2&access_token=t1",
            "/?%61ccess_token=t2&access_token=t1",
        ] {
            assert!(
                matches!(
                    sources.extract(&parts(uri, &[])),
                    Err(AuthnError::Ambiguous(_))
                ),
                "{uri}"
            );
        }
        let request = parts("/?a=1;access%5Ftoken=t9", &[]);
        let found = sources.extract(&request).expect("ok").expect("token");
        assert_eq!(found.token, "t9");
        let mut req = parts("/x?a=1;access%5Ftoken=t1&b=2&access_token", &[]);
        sources.strip(&mut req);
        assert_eq!(req.uri, "/x?a=1;b=2");
        let mut req = parts("/x?filter=a;b&access_token=t1", &[]);
        sources.strip(&mut req);
        assert_eq!(req.uri, "/x?filter=a;b");
    }
}
