//! Token counts that never fall short: what a budget reserves for a prompt, and what it settles
//! to when the upstream reports no usage.
//!
//! For OpenAI models the count is the model's own tokenizer (`o200k_base` for the GPT-4o, 4.1,
//! 5 and o-series families, `cl100k_base` for GPT-4 and 3.5; exact tiktoken-compatible BPE with
//! the tables compiled in) run over the **whole request body**: the JSON around each message
//! costs more tokens than the chat template's per-message overhead it stands for, and tool
//! definitions, names and everything else the model reads are counted too. [`PRIMING`] tokens
//! are added for the reply's priming.
//!
//! For other models (Anthropic's tokenizer is not public) the bound is the body's length in
//! bytes: every byte-level BPE token covers at least one byte, so no tokenizer of that family
//! can produce more tokens than that. It over-reserves about fourfold for English text; the
//! settlement gives the difference back as soon as the response reports its usage.
//!
//! The tokenizer splits a text into pieces (words with their leading space, numbers,
//! punctuation runs) and encodes each piece on its own; setting up that encoder is most of the
//! cost of a short piece. Each thread remembers the count of short pieces it has seen in texts
//! of at most [`CACHED_TEXT`] bytes (at most [`CACHED_PIECES`] per tokenizer, then it starts
//! afresh), so the words a request shares with earlier ones are not encoded again. Larger texts
//! are counted on the blocking pool, whose many threads would each grow a cache; they are
//! counted without one. The count is the same either way.

use std::cell::RefCell;

use bpe_openai::Tokenizer;

/// Tokens added to every prompt bound for the reply's priming (`<|start|>assistant<|message|>`).
pub const PRIMING: u64 = 8;

/// How a model's text is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// `o200k_base`.
    O200k,
    /// `cl100k_base`.
    Cl100k,
    /// One token per byte: an upper bound for any byte-level BPE.
    Bytes,
}

impl Counter {
    /// The counter for `model` of `provider` (`openai`, `anthropic`, or unknown).
    pub fn for_model(provider: Option<&str>, model: Option<&str>) -> Counter {
        let model = model.unwrap_or("").to_ascii_lowercase();
        let openai_name = ["gpt-", "o1", "o3", "o4", "chatgpt-"]
            .iter()
            .any(|p| model.starts_with(p));
        let openai = match provider {
            Some(provider) => provider == "openai",
            None => openai_name,
        };
        if !openai {
            return Counter::Bytes;
        }
        // GPT-4 (Turbo) and 3.5 use cl100k_base; 4o, 4.1, 4.5, 5, the o-series and later
        // models o200k_base.
        let legacy = model == "gpt-4"
            || ["gpt-4-", "gpt-3.5", "gpt-35"]
                .iter()
                .any(|p| model.starts_with(p));
        if legacy {
            Counter::Cl100k
        } else {
            Counter::O200k
        }
    }

    fn tokenizer(self) -> Option<(&'static Tokenizer, usize)> {
        match self {
            Counter::O200k => Some((bpe_openai::o200k_base(), 0)),
            Counter::Cl100k => Some((bpe_openai::cl100k_base(), 1)),
            Counter::Bytes => None,
        }
    }

    /// Tokens of `text` (an upper bound for [`Counter::Bytes`]).
    pub fn count(self, text: &str) -> u64 {
        match self.tokenizer() {
            Some((tokenizer, slot)) => count_pieces(tokenizer, slot, text),
            None => text.len() as u64,
        }
    }

    /// The upper bound of a prompt whose whole request body is `body`.
    pub fn prompt_bound(self, body: &str) -> u64 {
        self.count(body).saturating_add(PRIMING)
    }

    /// Loads the tokenizer's tables now (tens of milliseconds), so the first request does not
    /// pay for it.
    pub fn preload(self) {
        if let Some((tokenizer, _)) = self.tokenizer() {
            tokenizer.count("warm");
        }
    }
}

/// Pieces at most this many bytes long are remembered with their count.
const CACHED_PIECE: usize = 24;
/// Pieces remembered per tokenizer and thread (about half a megabyte at most); a full cache
/// starts afresh.
pub const CACHED_PIECES: usize = 8_192;
/// Texts up to this size use the cache (larger ones are counted on the blocking pool).
pub const CACHED_TEXT: usize = 32 * 1024;

thread_local! {
    /// Per tokenizer (`o200k_base`, `cl100k_base`): short piece -> its token count.
    static PIECES: RefCell<[foldhash::HashMap<Box<str>, u32>; 2]> = RefCell::default();
}

/// What `tokenizer.count(text)` returns, with the counts of short pieces remembered.
fn count_pieces(tokenizer: &Tokenizer, slot: usize, text: &str) -> u64 {
    if text.len() > CACHED_TEXT {
        return tokenizer.count(text) as u64;
    }
    let text = tokenizer.normalize(text);
    let encode = |piece: &str| tokenizer.bpe.count(piece.as_bytes()) as u64;
    PIECES.with(|caches| {
        let mut caches = caches.borrow_mut();
        let cache = &mut caches[slot];
        tokenizer
            .split(text.as_str())
            .map(|piece| {
                if piece.len() > CACHED_PIECE {
                    return encode(piece);
                }
                if let Some(&count) = cache.get(piece) {
                    return u64::from(count);
                }
                let count = encode(piece);
                if cache.len() >= CACHED_PIECES {
                    cache.clear();
                }
                cache.insert(piece.into(), u32::try_from(count).unwrap_or(u32::MAX));
                count
            })
            .sum()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_pieces_count_exactly_what_the_tokenizer_counts() {
        let texts = [
            "Hello, world! Hello, world!",
            r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Où est la gare ? 東京駅はどこですか"}]}"#,
            "numbers 1234567890123 and     long     runs of spaces\n\n\ttabs",
            "a-very-long-identifier_without_any_spaces_at_all_which_is_one_piece",
            "emoji 👩‍👩‍👧‍👦 and combining é (e + U+0301)",
            "",
        ];
        for counter in [Counter::O200k, Counter::Cl100k] {
            let (tokenizer, _) = counter.tokenizer().expect("a tokenizer");
            for round in 0..2 {
                for text in texts {
                    assert_eq!(
                        counter.count(text),
                        tokenizer.count(text) as u64,
                        "{counter:?} round {round}: {text:?}"
                    );
                }
            }
        }
        let remembered = PIECES.with(|c| c.borrow()[0].len());
        assert!(remembered > 10, "{remembered} pieces remembered");
    }

    #[test]
    fn a_full_piece_cache_starts_afresh() {
        // More distinct pieces than the cache holds (words of letters: one piece each), in texts
        // small enough to use it. The cache fills, starts afresh, and never holds more.
        let word = |mut n: usize| {
            let mut word = String::from(" q");
            while n > 0 {
                word.push(char::from(b'a' + (n % 26) as u8));
                n /= 26;
            }
            word
        };
        let mut sizes = Vec::new();
        for chunk in 0..(CACHED_PIECES / 1000 + 2) {
            let text: String = (0..1000).map(|i| word(chunk * 1000 + i + 1)).collect();
            assert!(text.len() <= CACHED_TEXT);
            let expected = bpe_openai::o200k_base().count(text.as_str()) as u64;
            assert_eq!(Counter::O200k.count(&text), expected);
            sizes.push(PIECES.with(|c| c.borrow()[0].len()));
        }
        assert!(sizes.iter().all(|&n| n <= CACHED_PIECES), "{sizes:?}");
        assert!(
            sizes.windows(2).any(|w| w[1] < w[0]),
            "the cache never started afresh: {sizes:?}"
        );
    }

    #[test]
    fn models_get_their_tokenizer() {
        let of = |provider, model| Counter::for_model(provider, Some(model));
        assert_eq!(of(Some("openai"), "gpt-4o-mini"), Counter::O200k);
        assert_eq!(of(Some("openai"), "gpt-4.1"), Counter::O200k);
        assert_eq!(of(Some("openai"), "o3-mini"), Counter::O200k);
        assert_eq!(of(Some("openai"), "gpt-4-turbo"), Counter::Cl100k);
        assert_eq!(of(Some("openai"), "gpt-4"), Counter::Cl100k);
        assert_eq!(of(Some("openai"), "gpt-3.5-turbo"), Counter::Cl100k);
        assert_eq!(of(Some("anthropic"), "claude-sonnet-4"), Counter::Bytes);
        assert_eq!(of(None, "llama-3"), Counter::Bytes);
        assert_eq!(of(None, "gpt-4o"), Counter::O200k);
        assert_eq!(Counter::for_model(Some("openai"), None), Counter::O200k);
    }

    #[test]
    fn counts_match_the_reference_tokenizer() {
        // tiktoken: "Hello, world!" is 4 tokens in both encodings.
        assert_eq!(Counter::O200k.count("Hello, world!"), 4);
        assert_eq!(Counter::Cl100k.count("Hello, world!"), 4);
        assert_eq!(Counter::Bytes.count("héllo"), 6);
    }

    #[test]
    fn the_body_bound_is_above_the_messages_alone() {
        let body = r#"{"model":"gpt-4o","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"What is the capital of France?"}]}"#;
        // OpenAI bills this prompt at 26 tokens (3 per message, 3 for priming, the texts).
        let texts = Counter::O200k.count("Be brief.")
            + Counter::O200k.count("What is the capital of France?");
        let billed =
            texts + 2 * 3 + 3 + Counter::O200k.count("system") + Counter::O200k.count("user");
        assert!(Counter::O200k.prompt_bound(body) >= billed);
        assert!(Counter::Bytes.prompt_bound(body) >= Counter::O200k.prompt_bound(body));
    }
}
