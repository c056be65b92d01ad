//! W3C Trace Context: the `traceparent` a request carries, kept when well formed and generated
//! otherwise, so the upstream, the access log and the audit trail name the same trace.
//!
//! Runs in the request-id layer (DESIGN.md §2 step 2), before anything logs. A well-formed
//! incoming `traceparent` (Trace Context level 1: version, 32-hex trace id, 16-hex parent id,
//! flags; lowercase; ids not all zero; version `ff` refused) is forwarded unchanged with its
//! `tracestate`. A missing or malformed one is replaced by a new one (random ids, sampled) and
//! its `tracestate` dropped, as the specification requires.

use http::{HeaderMap, HeaderName, HeaderValue};

/// The header carrying the trace context.
pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// Vendor-specific trace state, valid only with its `traceparent`.
pub static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// A request's trace context, in its request extensions: its trace id, kept inline (the
/// header itself stays in the request's headers; copying the id costs no allocation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceContext {
    trace: [u8; 32],
}

impl TraceContext {
    /// Reads a well-formed `traceparent`.
    pub fn parse(value: &HeaderValue) -> Option<TraceContext> {
        let text = value.to_str().ok()?;
        let bytes = text.as_bytes();
        // version "-" trace-id "-" parent-id "-" flags: 2 + 1 + 32 + 1 + 16 + 1 + 2.
        if bytes.len() < 55 {
            return None;
        }
        let hex = |part: &[u8]| {
            part.iter()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
        };
        let nonzero = |part: &[u8]| part.iter().any(|&b| b != b'0');
        let (version, trace, parent, flags) =
            (&bytes[..2], &bytes[3..35], &bytes[36..52], &bytes[53..55]);
        let well_formed = hex(version)
            && version != b"ff"
            && bytes[2] == b'-'
            && bytes[35] == b'-'
            && bytes[52] == b'-'
            && hex(trace)
            && nonzero(trace)
            && hex(parent)
            && nonzero(parent)
            && hex(flags)
            // Version 00 is exactly this long; later versions may add fields after a dash.
            && (bytes.len() == 55 || (version != b"00" && bytes[55] == b'-'));
        well_formed.then(|| TraceContext::of_id(trace))
    }

    fn of_id(id: &[u8]) -> TraceContext {
        let mut trace = [0u8; 32];
        trace.copy_from_slice(id);
        TraceContext { trace }
    }

    /// A new context (random trace and parent ids, sampled) and its `traceparent` value.
    pub fn generate() -> (TraceContext, HeaderValue) {
        // Written in place: the header's bytes are the only allocation.
        let mut text = *b"00-00000000000000000000000000000000-0000000000000000-01";
        uuid::Uuid::new_v4().simple().encode_lower(&mut text[3..35]);
        let mut parent = [0u8; 32];
        uuid::Uuid::new_v4().simple().encode_lower(&mut parent);
        text[36..52].copy_from_slice(&parent[..16]);
        let header = HeaderValue::from_bytes(&text).unwrap_or_else(|_| {
            HeaderValue::from_static("00-00000000000000000000000000000001-0000000000000001-01")
        });
        (TraceContext::of_id(&text[3..35]), header)
    }

    /// Keeps the request's context if it is well formed, else replaces it (and drops its
    /// `tracestate`); the headers then carry exactly the context returned.
    pub fn of_request(headers: &mut HeaderMap) -> TraceContext {
        let incoming = headers.get(&TRACEPARENT).and_then(TraceContext::parse);
        // More than one traceparent is malformed too.
        let single = headers.get_all(&TRACEPARENT).iter().count() == 1;
        match incoming.filter(|_| single) {
            Some(context) => context,
            None => {
                let (context, header) = TraceContext::generate();
                headers.remove(&TRACESTATE);
                headers.insert(TRACEPARENT.clone(), header);
                context
            }
        }
    }

    /// The trace id (32 lowercase hex digits).
    pub fn trace_id(&self) -> &str {
        // Validated or generated as lowercase hex.
        std::str::from_utf8(&self.trace).unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Option<TraceContext> {
        TraceContext::parse(&HeaderValue::from_str(text).expect("header"))
    }

    #[test]
    fn well_formed_contexts_are_kept_and_malformed_ones_refused() {
        let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            parse(valid).map(|c| c.trace_id().to_owned()).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert!(parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra").is_some());
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", // 00 is exact
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", // uppercase
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01", // zero trace id
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", // zero parent id
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01", // misplaced dash
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_request_leaves_with_exactly_one_valid_context() {
        let mut headers = HeaderMap::new();
        headers.insert(&TRACEPARENT, HeaderValue::from_static("garbage"));
        headers.insert(&TRACESTATE, HeaderValue::from_static("vendor=1"));
        let context = TraceContext::of_request(&mut headers);
        assert_eq!(context.trace_id().len(), 32);
        assert!(
            headers.get(&TRACESTATE).is_none(),
            "tracestate goes with a replaced parent"
        );
        assert_eq!(
            headers.get(&TRACEPARENT).and_then(TraceContext::parse),
            Some(context)
        );
        let valid =
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let mut headers = HeaderMap::new();
        headers.insert(&TRACEPARENT, valid.clone());
        headers.insert(&TRACESTATE, HeaderValue::from_static("vendor=1"));
        let kept = TraceContext::of_request(&mut headers);
        assert_eq!(kept.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(headers.get(&TRACEPARENT), Some(&valid));
        assert!(headers.get(&TRACESTATE).is_some());
        let mut twice = HeaderMap::new();
        twice.append(&TRACEPARENT, valid.clone());
        twice.append(&TRACEPARENT, valid);
        assert_ne!(
            TraceContext::of_request(&mut twice).trace_id(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(twice.get_all(&TRACEPARENT).iter().count(), 1);
    }
}
