//! Path canonicalization: one canonical path for routing, policy, rate-limit keys and the upstream.
//!
//! Runs in the global stack before routing. Path-confusion attacks work when two components read
//! one path differently (the gateway routes `/public/..%2fadmin` as public, the upstream serves
//! `/admin`). Warden removes the ambiguity instead of guessing: it decodes percent-encoded
//! *unreserved* characters (RFC 3986 §2.3), keeps every other escape in upper-case hex, resolves
//! dot-segments (§5.2.4), merges repeated slashes, percent-encodes every byte RFC 3986 does not
//! allow raw in a path segment (space, `"`, `<`, `>`, `[`, `]`, `^`, `` ` ``, `{`, `|`, `}` and
//! non-ASCII; the same on the fast and the slow path), and **rejects** what has no single safe
//! reading: encoded `/` or `\`, raw `\`, double encoding (a `%` and two hex digits anywhere in the
//! *decoded* path, however the digits themselves were written: `%25%32%66` is refused like
//! `%252f`), control bytes and NUL, invalid or overlong UTF-8, `;` path parameters (raw or
//! encoded), fragments, and dot-segments that would climb above the root. Letter case is
//! preserved (`/ADMIN` is not `/admin`). The function is idempotent: the canonical form of a
//! canonical path is itself. The result is what every later layer and the upstream see.

use std::borrow::Cow;

/// Longest request path accepted, in bytes.
pub const MAX_PATH_LEN: usize = 8 * 1024;

/// Why a path was refused. The client only learns "invalid path"; this detail is for logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// The path does not start with `/` (asterisk- or authority-form, or empty).
    #[error("path is not absolute")]
    NotAbsolute,
    /// The path is longer than [`MAX_PATH_LEN`].
    #[error("path is longer than {MAX_PATH_LEN} bytes")]
    TooLong,
    /// A `%` not followed by two hex digits.
    #[error("malformed percent-encoding")]
    BadPercentEncoding,
    /// `%2F` or `%5C`: a separator hidden from the router.
    #[error("encoded path separator")]
    EncodedSeparator,
    /// A raw backslash, which some servers treat as a separator.
    #[error("backslash in path")]
    Backslash,
    /// The decoded path holds `%` and two hex digits: a second decoding pass would change it.
    #[error("double percent-encoding")]
    DoubleEncoding,
    /// NUL, C0 control bytes or DEL, raw or encoded.
    #[error("control character in path")]
    ControlCharacter,
    /// Decoded bytes are not valid UTF-8 (including overlong forms).
    #[error("path is not valid UTF-8")]
    InvalidUtf8,
    /// A `;` path parameter (`/a;jsessionid=1`), raw or encoded.
    #[error("path parameter (;) in path")]
    PathParameter,
    /// A `#` fragment in the request target.
    #[error("fragment in request target")]
    Fragment,
    /// Dot-segments that climb above the root.
    #[error("dot-segments escape the root")]
    EscapesRoot,
}

/// Canonicalizes a request path (without query). Borrows when the path is already canonical.
pub fn canonicalize(path: &str) -> Result<Cow<'_, str>, PathError> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    if bytes.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong);
    }
    if is_canonical(bytes) {
        return Ok(Cow::Borrowed(path));
    }
    // Escaping can make the canonical form longer than the path as sent (`>` becomes `%3E`):
    // the limit holds for what the upstream receives, so a canonical path is always accepted
    // again (found by fuzzing).
    match canonicalize_slow(bytes)? {
        canonical if canonical.len() > MAX_PATH_LEN => Err(PathError::TooLong),
        canonical => Ok(Cow::Owned(canonical)),
    }
}

/// Fast check for the common case: plain ASCII, no escapes, no `//`, no dot-segments.
fn is_canonical(bytes: &[u8]) -> bool {
    let mut segment_start = 1;
    for (i, &b) in bytes.iter().enumerate().skip(1) {
        match b {
            b'/' => {
                if !is_plain_segment(&bytes[segment_start..i]) {
                    return false;
                }
                segment_start = i + 1;
            }
            b if !is_plain_byte(b) => return false,
            _ => {}
        }
    }
    let last = &bytes[segment_start..];
    // A trailing empty segment ("/a/") is canonical; "/" alone too.
    last.is_empty() && bytes.len() == segment_start || is_plain_segment(last)
}

/// Bytes a canonical path carries raw: RFC 3986 `pchar` without `%` (escapes take the slow
/// path) and without `;` (refused): unreserved, sub-delims other than `;`, `:` and `@`.
fn is_plain_byte(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b'=' | b':' | b'@'
        )
}

fn is_plain_segment(segment: &[u8]) -> bool {
    !segment.is_empty() && segment != b"." && segment != b".."
}

fn canonicalize_slow(bytes: &[u8]) -> Result<String, PathError> {
    // Output segments as (start, end) into `out`; popping a segment truncates `out`.
    let mut out = String::with_capacity(bytes.len());
    let mut segment_starts: Vec<usize> = Vec::new();
    // All decoded bytes, to validate UTF-8 across escapes (`%C3` `%A9` form one char).
    let mut decoded: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut trailing_slash = false;

    for raw in bytes[1..].split(|&b| b == b'/') {
        let mut segment = String::with_capacity(raw.len());
        let mut i = 0;
        while i < raw.len() {
            let b = raw[i];
            match b {
                b'%' => {
                    let value = hex_pair(raw.get(i + 1..i + 3))?;
                    match value {
                        b'/' | b'\\' => return Err(PathError::EncodedSeparator),
                        b';' => return Err(PathError::PathParameter),
                        v if v < 0x20 || v == 0x7f => return Err(PathError::ControlCharacter),
                        v if is_unreserved(v) => segment.push(char::from(v)),
                        v => push_escape(&mut segment, v),
                    }
                    decoded.push(value);
                    i += 3;
                }
                b';' => return Err(PathError::PathParameter),
                b'\\' => return Err(PathError::Backslash),
                b'#' => return Err(PathError::Fragment),
                b if b < 0x20 || b == 0x7f => return Err(PathError::ControlCharacter),
                b => {
                    if is_plain_byte(b) {
                        segment.push(char::from(b));
                    } else {
                        // Not allowed raw in a URI path (space, `"`, `{`, `|`, non-ASCII...).
                        push_escape(&mut segment, b);
                    }
                    decoded.push(b);
                    i += 1;
                }
            }
        }
        decoded.push(b'/');

        match segment.as_str() {
            "" => trailing_slash = true,
            "." => trailing_slash = true,
            ".." => {
                let start = segment_starts.pop().ok_or(PathError::EscapesRoot)?;
                out.truncate(start);
                trailing_slash = true;
            }
            _ => {
                segment_starts.push(out.len());
                out.push('/');
                out.push_str(&segment);
                trailing_slash = false;
            }
        }
    }

    if std::str::from_utf8(&decoded).is_err() {
        return Err(PathError::InvalidUtf8);
    }
    // Whatever spelled them (`%25` + `2f`, `%25%32%66`, `%25%32f`), a `%` and two hex digits in
    // the decoded path are an escape that an upstream decoding once more would act on.
    if decoded
        .windows(3)
        .any(|w| w[0] == b'%' && hex_value(w[1]).is_some() && hex_value(w[2]).is_some())
    {
        return Err(PathError::DoubleEncoding);
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    Ok(out)
}

fn hex_pair(pair: Option<&[u8]>) -> Result<u8, PathError> {
    match pair {
        Some(&[hi, lo]) => match (hex_value(hi), hex_value(lo)) {
            (Some(hi), Some(lo)) => Ok(hi << 4 | lo),
            _ => Err(PathError::BadPercentEncoding),
        },
        _ => Err(PathError::BadPercentEncoding),
    }
}

fn hex_value(digit: u8) -> Option<u8> {
    char::from(digit).to_digit(16).map(|v| v as u8)
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn push_escape(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX[usize::from(b >> 4)]));
    out.push(char::from(HEX[usize::from(b & 0xf)]));
}

#[cfg(test)]
mod tests {
    use super::*;
    use PathError::*;

    /// Known path-confusion and bypass strings with the outcome each must have.
    const CASES: &[(&str, Result<&str, PathError>)] = &[
        ("/admin/../x", Ok("/x")),
        ("//admin", Ok("/admin")),
        ("/%2e%2e/", Err(EscapesRoot)),
        ("/%2e%2e/admin", Err(EscapesRoot)),
        ("/ADMIN", Ok("/ADMIN")),
        ("/a%2fb", Err(EncodedSeparator)),
        ("/a%2Fb", Err(EncodedSeparator)),
        ("/public/..%2fadmin", Err(EncodedSeparator)),
        ("/a;jsessionid=1", Err(PathParameter)),
        ("/admin/.;/x", Err(PathParameter)),
        ("/admin..;/x", Err(PathParameter)),
        ("/a%3bb", Err(PathParameter)),
        ("/%252e%252e/admin", Err(DoubleEncoding)),
        ("/a%252fb", Err(DoubleEncoding)),
        ("/%c0%ae%c0%ae/admin", Err(InvalidUtf8)),
        ("/%e0%80%af", Err(InvalidUtf8)),
        ("/%ff", Err(InvalidUtf8)),
        ("/a\\b", Err(Backslash)),
        ("/..\\admin", Err(Backslash)),
        ("/a%5cb", Err(EncodedSeparator)),
        ("/a%5Cb", Err(EncodedSeparator)),
        ("/a/./b", Ok("/a/b")),
        ("/a/b/..", Ok("/a/")),
        ("/a/b/.", Ok("/a/b/")),
        ("/..", Err(EscapesRoot)),
        ("/a/../../b", Err(EscapesRoot)),
        ("/%61dmin", Ok("/admin")),
        ("/admin%00", Err(ControlCharacter)),
        ("/admin%0a", Err(ControlCharacter)),
        ("/admin%0D%0Ainjected:1", Err(ControlCharacter)),
        ("/admin%09", Err(ControlCharacter)),
        ("/admin%7f", Err(ControlCharacter)),
        ("/admin#frag", Err(Fragment)),
        ("/a/%2e/b", Ok("/a/b")),
        ("/a/.%2e/b", Ok("/b")),
        ("/x/%2E%2E/admin", Ok("/admin")),
        ("/api//v1///x", Ok("/api/v1/x")),
        ("/api/v1/", Ok("/api/v1/")),
        ("/", Ok("/")),
        ("///", Ok("/")),
        ("/%zz", Err(BadPercentEncoding)),
        ("/%4", Err(BadPercentEncoding)),
        ("/%u002e%u002e/admin", Err(BadPercentEncoding)),
        ("admin", Err(NotAbsolute)),
        ("", Err(NotAbsolute)),
        ("*", Err(NotAbsolute)),
        ("/caf%C3%A9", Ok("/caf%C3%A9")),
        ("/caf%c3%a9", Ok("/caf%C3%A9")),
        ("/%7e/x", Ok("/~/x")),
        ("/admin%20", Ok("/admin%20")),
        ("/%ef%bc%8fadmin", Ok("/%EF%BC%8Fadmin")),
        ("/a%3Fb", Ok("/a%3Fb")),
        ("/a%2523", Err(DoubleEncoding)),
        ("/100%25", Ok("/100%25")),
        // Double encoding through encoded hex digits.
        ("/a%25%32%66b", Err(DoubleEncoding)),
        ("/a%25%32%46b", Err(DoubleEncoding)),
        ("/%25%32%65%25%32%65/admin", Err(DoubleEncoding)),
        ("/a%25%35%63b", Err(DoubleEncoding)),
        ("/admin%25%30%30", Err(DoubleEncoding)),
        ("/a%25%32fb", Err(DoubleEncoding)),
        ("/a%252%66b", Err(DoubleEncoding)),
        ("/a%25%3266", Err(DoubleEncoding)),
        ("/a%25/2f", Ok("/a%25/2f")),
        ("/a%25zz", Ok("/a%25zz")),
        // Bytes not allowed raw in a path are escaped, on the fast path as on the slow one.
        ("/a\"b", Ok("/a%22b")),
        ("//a\"b", Ok("/a%22b")),
        ("/{x}", Ok("/%7Bx%7D")),
        ("/a|b", Ok("/a%7Cb")),
        ("/a%7cb", Ok("/a%7Cb")),
        ("/a[0]^`<>", Ok("/a%5B0%5D%5E%60%3C%3E")),
        ("/a:b@c!$&'()*+,=", Ok("/a:b@c!$&'()*+,=")),
        ("/api/v1/agents/42", Ok("/api/v1/agents/42")),
    ];

    #[test]
    fn bypass_corpus_has_the_expected_outcomes() {
        assert!(CASES.len() >= 30);
        for (input, expected) in CASES {
            let got = canonicalize(input);
            let got = got.as_ref().map(|p| p.as_ref()).map_err(|e| *e);
            assert_eq!(got, *expected, "input {input:?}");
        }
    }

    #[test]
    fn canonical_paths_are_borrowed() {
        assert!(matches!(
            canonicalize("/api/v1/agents/42"),
            Ok(Cow::Borrowed(_))
        ));
        assert!(matches!(canonicalize("/"), Ok(Cow::Borrowed(_))));
        assert!(matches!(canonicalize("/a/"), Ok(Cow::Borrowed(_))));
        assert!(matches!(canonicalize("/a//b"), Ok(Cow::Owned(_))));
    }

    #[test]
    fn canonicalization_is_idempotent_on_the_corpus() {
        for (input, _) in CASES {
            if let Ok(once) = canonicalize(input) {
                let twice = canonicalize(&once).expect("canonical output is accepted");
                assert_eq!(once, twice, "input {input:?}");
            }
        }
    }

    #[test]
    fn overlong_paths_are_refused() {
        let long = format!("/{}", "a".repeat(MAX_PATH_LEN));
        assert_eq!(canonicalize(&long), Err(TooLong));
        // Within the limit as sent, past it once escaped: refused, not forwarded longer.
        let grows = format!("/{}", ">".repeat(MAX_PATH_LEN / 2));
        assert_eq!(canonicalize(&grows), Err(TooLong));
        let fits = format!("/{}", ">".repeat(MAX_PATH_LEN / 3 - 1));
        let canonical = canonicalize(&fits).expect("fits once escaped");
        assert!(canonical.len() <= MAX_PATH_LEN);
        assert_eq!(canonicalize(&canonical).as_deref(), Ok(&*canonical));
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        /// Paths built from the characters that matter for confusion attacks.
        fn hostile_path() -> impl Strategy<Value = String> {
            let piece = prop_oneof![
                Just("/".to_owned()),
                Just(".".to_owned()),
                Just("..".to_owned()),
                Just("%".to_owned()),
                Just(";".to_owned()),
                Just("\\".to_owned()),
                Just("%2e".to_owned()),
                Just("%2F".to_owned()),
                Just("%25".to_owned()),
                Just("%32".to_owned()),
                Just("%66".to_owned()),
                Just("%35%63".to_owned()),
                Just("%30%30".to_owned()),
                Just("2f".to_owned()),
                Just("\"".to_owned()),
                Just("{".to_owned()),
                Just("}".to_owned()),
                Just("|".to_owned()),
                Just("%c0%ae".to_owned()),
                Just("%c3%a9".to_owned()),
                "[a-zA-Z0-9_~-]{1,4}",
                "%[0-9a-fA-F]{2}",
                any::<char>().prop_map(String::from),
            ];
            proptest::collection::vec(piece, 0..24).prop_map(|parts| format!("/{}", parts.concat()))
        }

        fn percent_decode_once(text: &str) -> Vec<u8> {
            let bytes = text.as_bytes();
            let mut out = Vec::with_capacity(bytes.len());
            let mut i = 0;
            while i < bytes.len() {
                match (bytes[i], hex_pair(bytes.get(i + 1..i + 3))) {
                    (b'%', Ok(v)) => {
                        out.push(v);
                        i += 3;
                    }
                    (b, _) => {
                        out.push(b);
                        i += 1;
                    }
                }
            }
            out
        }

        fn has_escape(bytes: &[u8]) -> bool {
            bytes
                .windows(3)
                .any(|w| w[0] == b'%' && hex_value(w[1]).is_some() && hex_value(w[2]).is_some())
        }

        proptest! {
            #[test]
            fn output_is_canonical_and_stable(path in hostile_path()) {
                if let Ok(canonical) = canonicalize(&path) {
                    prop_assert!(canonical.starts_with('/'));
                    prop_assert!(!canonical.contains("//"));
                    prop_assert!(!canonical.contains(';') && !canonical.contains('\\'));
                    for segment in canonical.split('/') {
                        prop_assert!(segment != "." && segment != "..", "{canonical}");
                    }
                    let upper = canonical.to_ascii_uppercase();
                    prop_assert!(!upper.contains("%2F") && !upper.contains("%5C") && !upper.contains("%2E"));
                    let again = canonicalize(&canonical);
                    prop_assert!(matches!(again, Ok(p) if p == canonical), "{canonical}");
                    // One more decoding pass (a double-decoding upstream) yields no escape.
                    let decoded_once = percent_decode_once(&canonical);
                    prop_assert!(!has_escape(&decoded_once), "{path} -> {canonical}");
                }
            }

            #[test]
            fn arbitrary_text_never_panics(path in ".{0,64}") {
                let _ = canonicalize(&path);
            }
        }
    }
}
