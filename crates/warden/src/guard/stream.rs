//! Output redaction of text that arrives in pieces (DESIGN.md §2 step 16): the deltas of a
//! streamed answer, the chunks of a plain-text body, or a whole JSON string at once.
//!
//! The guarantee: whatever the pieces, the concatenation of what [`TextRedactor`] releases
//! equals [`Scanner::redact`] of the whole text, and it holds back no more than the longest
//! detector window (a few hundred bytes for most detectors, 8 KiB for a private-key block),
//! never the whole stream.
//!
//! How: a byte of text is released once no detector match that could include it is still in
//! progress. The detectors' patterns are compiled once more into one lazy DFA (the engine
//! behind `regex`) that runs anchored at each held position in "all matches" mode: a position
//! whose run dies before the end of the text received so far cannot start a match that later
//! bytes would change; the first position whose run is still alive is where the hold begins.
//! Values found wholly before the hold are redacted exactly as in the whole text (their bytes,
//! their validation and their overlaps are all decided); a value that crosses the hold moves it
//! back to its start. Every detector pattern has a bounded length, so a run dies at most one
//! window after it starts, and ordinary prose is held back by about a word.

use std::sync::Arc;

use regex_automata::hybrid::dfa::{Cache, DFA};
use regex_automata::util::pool::Pool;
use regex_automata::{Anchored, Input, MatchKind};

use super::detect::{self, Detected, Detectors, Family, Kind};

/// What an output guard does with a finding in an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputAction {
    /// Replace the value with its typed placeholder.
    Redact,
    /// Stop the answer (502 for a JSON answer, a terminal error event for a stream).
    Block,
}

/// An answer stopped by a `block` action: the family and kind found (never the value).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{} ({}) in the answer", .family.as_str(), .kind.as_str())]
pub struct Blocked {
    /// The guard.
    pub family: Family,
    /// What was found.
    pub kind: Kind,
}

/// Bytes kept before the release point as look-behind for the next scan: detectors look one
/// byte behind (ASCII word boundaries), the national phone check two (a number it would
/// continue), so four bytes, widened to a character boundary, cover both.
const LOOK_BEHIND: usize = 4;

type NewCache =
    Box<dyn Fn() -> Cache + Send + Sync + std::panic::UnwindSafe + std::panic::RefUnwindSafe>;

/// The detectors an output guard runs, with its actions and the DFA that finds where a match
/// may still be in progress.
pub struct Scanner {
    detectors: Arc<Detectors>,
    secrets: Option<OutputAction>,
    pii: Option<OutputAction>,
    live: DFA,
    caches: Pool<Cache, NewCache>,
    window: usize,
}

impl std::fmt::Debug for Scanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scanner")
            .field("secrets", &self.secrets)
            .field("pii", &self.pii)
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

/// Why a scanner cannot be built (a defect of the built-in table, caught by its tests).
#[derive(Debug, thiserror::Error)]
pub enum ScannerError {
    /// A pattern did not compile for the stream DFA.
    #[error("stream DFA: {0}")]
    Build(String),
    /// A pattern can match text of any length, so a stream could be held back without bound.
    #[error("detector pattern {0} has no maximum length")]
    Unbounded(usize),
}

impl Scanner {
    /// A scanner for the families that have an action.
    pub fn new(
        detectors: Arc<Detectors>,
        secrets: Option<OutputAction>,
        pii: Option<OutputAction>,
    ) -> Result<Scanner, ScannerError> {
        let keep = |kind: Kind| Self::action_of(secrets, pii, kind).is_some();
        let patterns = detectors.patterns(&keep);
        let mut window = 0;
        for (index, pattern) in &patterns {
            let hir = regex_automata::util::syntax::parse(pattern)
                .map_err(|e| ScannerError::Build(e.to_string()))?;
            let max = hir
                .properties()
                .maximum_len()
                .ok_or(ScannerError::Unbounded(*index))?;
            window = window.max(max);
        }
        let sources: Vec<&str> = patterns.iter().map(|(_, p)| *p).collect();
        let live = DFA::builder()
            .configure(
                DFA::config()
                    // Every thread runs on, not only the preferred one: a position is
                    // released only when no pattern at all could still match from it.
                    .match_kind(MatchKind::All)
                    .cache_capacity(8 << 20),
            )
            .build_many(&sources)
            .map_err(|e| ScannerError::Build(e.to_string()))?;
        let for_caches = live.clone();
        let caches: Pool<Cache, NewCache> = Pool::new(Box::new(move || for_caches.create_cache()));
        Ok(Scanner {
            detectors,
            secrets,
            pii,
            live,
            caches,
            window,
        })
    }

    fn action_of(
        secrets: Option<OutputAction>,
        pii: Option<OutputAction>,
        kind: Kind,
    ) -> Option<OutputAction> {
        match kind.family() {
            Family::Secrets => secrets,
            _ => pii,
        }
    }

    fn action(&self, kind: Kind) -> Option<OutputAction> {
        Self::action_of(self.secrets, self.pii, kind)
    }

    /// The longest text, in bytes, any detector can match: the most a stream holds back.
    pub fn window(&self) -> usize {
        self.window
    }

    /// A redactor for one streamed text.
    pub fn redactor(self: &Arc<Self>) -> TextRedactor {
        TextRedactor {
            scanner: self.clone(),
            buf: String::new(),
            from: 0,
        }
    }

    /// `text` redacted as a whole; `None` when nothing was found.
    pub fn redact(&self, text: &str) -> Result<Option<String>, Blocked> {
        let found = detect::resolve(self.candidates(text, 0, None));
        if found.is_empty() {
            return Ok(None);
        }
        self.account(&found)?;
        Ok(Some(redact_from(text, 0, &found)))
    }

    fn candidates(
        &self,
        text: &str,
        from: usize,
        spans: Option<&mut Vec<std::ops::Range<usize>>>,
    ) -> Vec<Detected> {
        self.detectors
            .candidates(text, from, &|kind| self.action(kind).is_some(), spans)
    }

    /// Counts findings; the first one whose family blocks stops the answer.
    fn account(&self, found: &[Detected]) -> Result<(), Blocked> {
        for d in found {
            let family = d.kind.family();
            metrics::counter!(
                "warden_guard_findings_total",
                "guard" => family.as_str(),
                "rule" => d.rule,
                "direction" => "output",
            )
            .increment(1);
            if self.action(d.kind) == Some(OutputAction::Block) {
                return Err(Blocked {
                    family,
                    kind: d.kind,
                });
            }
        }
        Ok(())
    }

    /// The first position at or after `from` where a match may still be in progress at the end
    /// of `text`; the end when there is none.
    fn hold_point(&self, text: &str, from: usize) -> usize {
        let bytes = text.as_bytes();
        // A run lasts at most one window (plus the byte that ends it): older starts are dead.
        let first = from.max(bytes.len().saturating_sub(self.window + 1));
        let mut cache = self.caches.get();
        (first..bytes.len())
            .find(|&p| text.is_char_boundary(p) && self.alive(&mut cache, bytes, p))
            .unwrap_or(bytes.len())
    }

    /// Whether an anchored run from `p` is still alive at the end of `bytes`. A DFA that gives
    /// up (cache exhausted) counts as alive: holding is the safe answer.
    fn alive(&self, cache: &mut Cache, bytes: &[u8], p: usize) -> bool {
        let input = Input::new(bytes).range(p..).anchored(Anchored::Yes);
        let Ok(mut state) = self.live.start_state_forward(cache, &input) else {
            return true;
        };
        for &byte in &bytes[p..] {
            if state.is_dead() {
                return false;
            }
            match self.live.next_state(cache, state, byte) {
                Ok(next) if next.is_quit() => return true,
                Ok(next) => state = next,
                Err(_) => return true,
            }
        }
        !state.is_dead()
    }
}

/// `text[from..]` with the values (offsets into `text`) replaced by their placeholders.
fn redact_from(text: &str, from: usize, found: &[Detected]) -> String {
    detect::redact_ranges(
        &text[from..],
        found
            .iter()
            .map(|d| {
                (
                    d.range.start - from..d.range.end - from,
                    d.kind.placeholder(),
                )
            })
            .collect(),
    )
}

/// Redacts one text that arrives in pieces (one streamed content block, one plain body).
#[derive(Debug)]
pub struct TextRedactor {
    scanner: Arc<Scanner>,
    /// Look-behind, then the text received and not yet released.
    buf: String,
    /// Where the held text starts in `buf`.
    from: usize,
}

impl TextRedactor {
    /// Adds a piece; returns the text that can be released now (possibly empty).
    pub fn push(&mut self, piece: &str) -> Result<String, Blocked> {
        self.buf.push_str(piece);
        self.release(false)
    }

    /// The text is complete: releases everything still held.
    pub fn finish(&mut self) -> Result<String, Blocked> {
        self.release(true)
    }

    /// Bytes received and not yet released.
    pub fn held(&self) -> usize {
        self.buf.len() - self.from
    }

    fn release(&mut self, end: bool) -> Result<String, Blocked> {
        let text = self.buf.as_str();
        let from = self.from;
        let mut cut = if end {
            text.len()
        } else {
            self.scanner.hold_point(text, from)
        };
        let mut spans = Vec::new();
        let candidates = self.scanner.candidates(text, from, Some(&mut spans));
        // A match crossing the release point is not decided (nor is where the search resumes
        // after it, valid or not): hold it whole. Moving back can make an earlier overlapping
        // match cross, so repeat until none does.
        loop {
            let crossing = spans
                .iter()
                .filter(|span| span.start < cut && span.end > cut)
                .map(|span| span.start)
                .min();
            match crossing {
                Some(start) => cut = start,
                None => break,
            }
        }
        let decided = detect::resolve(
            candidates
                .into_iter()
                .filter(|c| c.range.end <= cut)
                .collect(),
        );
        self.scanner.account(&decided)?;
        let out = redact_from(&text[..cut], from, &decided);
        let mut keep = cut.saturating_sub(LOOK_BEHIND);
        while !text.is_char_boundary(keep) {
            keep -= 1;
        }
        self.buf.drain(..keep);
        self.from = cut - keep;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn scanner(secrets: Option<OutputAction>, pii: Option<OutputAction>) -> Arc<Scanner> {
        let detectors = Arc::new(Detectors::new(false).expect("detectors"));
        Arc::new(Scanner::new(detectors, secrets, pii).expect("scanner"))
    }

    fn redacting() -> &'static Arc<Scanner> {
        static SCANNER: std::sync::OnceLock<Arc<Scanner>> = std::sync::OnceLock::new();
        SCANNER.get_or_init(|| scanner(Some(OutputAction::Redact), Some(OutputAction::Redact)))
    }

    /// Streams `pieces` through a redactor: the released text and the most it held at once.
    fn stream(scanner: &Arc<Scanner>, pieces: &[&str]) -> (String, usize) {
        let mut redactor = scanner.redactor();
        let mut out = String::new();
        let mut held = 0;
        for piece in pieces {
            out.push_str(&redactor.push(piece).expect("not blocked"));
            held = held.max(redactor.held());
        }
        out.push_str(&redactor.finish().expect("not blocked"));
        (out, held)
    }

    fn chars(text: &str) -> Vec<String> {
        text.chars().map(String::from).collect()
    }

    #[test]
    fn every_detector_has_a_bounded_window() {
        // Scanner::new refuses unbounded patterns; the longest is the private-key block.
        let window = redacting().window();
        assert!((8192..20_000).contains(&window), "{window}");
    }

    #[test]
    fn a_value_split_one_character_per_piece_is_redacted() {
        let text = "Write to jane.doe@example.com or call +44 20 7946 0958 today.";
        let pieces = chars(text);
        let pieces: Vec<&str> = pieces.iter().map(String::as_str).collect();
        let (out, _) = stream(redacting(), &pieces);
        assert_eq!(out, "Write to [EMAIL] or call [PHONE] today.");
    }

    #[test]
    fn prose_is_held_back_by_about_a_word() {
        let mut redactor = redacting().redactor();
        let released = redactor
            .push("The weather is fine and the sea is calm. ")
            .expect("not blocked");
        assert_eq!(released, "The weather is fine and the sea is calm. ");
        let released = redactor.push("Tomorrow").expect("not blocked");
        assert_eq!(
            released, "",
            "a word could be the start of an e-mail address"
        );
        let released = redactor.push(" it rains").expect("not blocked");
        assert_eq!(released, "Tomorrow it ");
        assert_eq!(redactor.finish().expect("not blocked"), "rains");
    }

    #[test]
    fn a_private_key_is_held_until_it_ends_and_then_released_at_once() {
        let key = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----";
        let text = format!("Here it is: {key} done");
        let pieces = chars(&text);
        let mut redactor = redacting().redactor();
        let mut out = String::new();
        for piece in &pieces {
            out.push_str(&redactor.push(piece).expect("not blocked"));
            assert!(!out.contains("MIIE"), "{out:?}");
        }
        out.push_str(&redactor.finish().expect("not blocked"));
        assert_eq!(out, "Here it is: [SECRET] done");
    }

    #[test]
    fn a_blocking_family_stops_the_stream_before_the_value_is_released() {
        let scanner = scanner(Some(OutputAction::Block), None);
        let mut redactor = scanner.redactor();
        let mut out = String::new();
        let mut blocked = None;
        for piece in ["my key is AKIA", "IOSFODNN7EX", "AMPLE and more"] {
            match redactor.push(piece) {
                Ok(text) => out.push_str(&text),
                Err(b) => {
                    blocked = Some(b);
                    break;
                }
            }
        }
        assert_eq!(
            blocked,
            Some(Blocked {
                family: Family::Secrets,
                kind: Kind::ApiToken
            })
        );
        assert!(!out.contains("AKIA"), "{out:?}");
        // PII is off for this scanner: an address passes.
        let mut redactor = scanner.redactor();
        assert_eq!(
            redactor
                .push("mail jane@example.com ")
                .expect("not blocked")
                + &redactor.finish().expect("not blocked"),
            "mail jane@example.com "
        );
    }

    const VALUES: &[&str] = &[
        "jane.doe@example.com",
        "4111 1111 1111 1111",
        "4111 1111 1111 1112",
        "123-45-6789",
        "DE89 3704 0044 0532 0130 00",
        "DE89 3704 0044 0532 0130 01",
        "+44 20 7946 0958",
        "(555) 123-4567",
        "AKIAIOSFODNN7EXAMPLE",
        "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
        "password=hunter2hunter2",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n-----END RSA PRIVATE KEY-----",
        "a@b",
        "sk-",
    ];

    /// Cuts `text` at the given fractions (deduplicated, on character boundaries).
    fn chunk(text: &str, cuts: &[usize]) -> Vec<String> {
        let mut points: Vec<usize> = cuts
            .iter()
            .map(|c| {
                let mut p = c % (text.len() + 1);
                while !text.is_char_boundary(p) {
                    p -= 1;
                }
                p
            })
            .collect();
        points.push(0);
        points.push(text.len());
        points.sort_unstable();
        points.dedup();
        points
            .windows(2)
            .map(|w| text[w[0]..w[1]].to_owned())
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// The streamed output equals the whole-text redaction for every chunking, it is valid
        /// UTF-8 with nothing detectable left, and the hold never passes the window.
        #[test]
        fn streamed_redaction_equals_whole_text_redaction(
            pieces in proptest::collection::vec(("[a-zA-Zé日 .,;:@+()\\-0-9\n]{0,10}", 0..VALUES.len()), 1..6),
            cuts in proptest::collection::vec(any::<usize>(), 0..40),
            per_char in any::<bool>(),
        ) {
            let mut text = String::new();
            for (filler, value) in &pieces {
                text.push_str(filler);
                text.push_str(VALUES[*value]);
            }
            let scanner = redacting();
            let whole = scanner.redact(&text).expect("not blocked").unwrap_or_else(|| text.clone());
            let chunks = if per_char { chars(&text) } else { chunk(&text, &cuts) };
            let chunks: Vec<&str> = chunks.iter().map(String::as_str).collect();
            let (streamed, held) = stream(scanner, &chunks);
            prop_assert_eq!(&streamed, &whole, "chunks {:?}", chunks);
            prop_assert!(held <= scanner.window() + LOOK_BEHIND + 8, "held {held}");
            // (That nothing detectable is left is the detectors' own property test.)
            // Input semantics agree: the same values as the request-side scan.
            let detectors = &scanner.detectors;
            prop_assert_eq!(&whole, &detect::redact(&text, &detectors.scan(&text)));
        }
    }
}
