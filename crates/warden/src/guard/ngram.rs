//! A linear model over word n-grams: the part of the prompt-injection guard that was learned
//! from public attack collections rather than written as rules.
//!
//! Runs inside `guard::injection` on the same folded text the rules read (DESIGN.md §2 step
//! 14), so disguises fold away before it too. The text is cut into words (runs of letters and
//! digits, lowercased, at most 32 bytes); every word and every pair of adjacent words is a
//! feature with a weight. The text is read in windows of 256 words, each overlapping the next by
//! half: a window scores `bias + Σ weights / √(features in it)`, and the text scores its best
//! window, so a jailbreak buried in a long benign document is read at its own density.
//!
//! The weights are compiled in (`injection_model.txt`, written by
//! `scripts/train-injection-model.py` from pinned public collections; the script, the sources and
//! the held-out measurements are in `docs/configuration.md`). No model is downloaded and no
//! network call is made. A feature is looked up by a 64-bit FNV-1a hash of its bytes; the pair
//! `a b` is hashed as `a`, a space, `b`, so the hash of a pair continues the hash of its first
//! word and no string is built.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::OnceLock;

/// Words per window, and the step between windows.
const WINDOW: usize = 256;
const STEP: usize = WINDOW / 2;
/// A word is cut after this many bytes (at a character boundary).
const MAX_WORD: usize = 32;

/// The compiled model.
#[derive(Debug)]
pub struct NgramModel {
    weights: HashMap<u64, f32, BuildHasherDefault<Premixed>>,
    bias: f32,
    threshold: f32,
    version: String,
}

/// Why the model text does not load.
#[derive(Clone, Debug, thiserror::Error)]
#[error("injection model, line {line}: {message}")]
pub struct ModelError {
    line: usize,
    message: &'static str,
}

impl NgramModel {
    /// The compiled-in model (parsed once per process).
    pub fn builtin() -> &'static NgramModel {
        static MODEL: OnceLock<NgramModel> = OnceLock::new();
        MODEL.get_or_init(|| {
            // A unit test loads this text; it cannot fail at run time.
            NgramModel::parse(include_str!("injection_model.txt")).unwrap_or_else(|e| {
                unreachable!("the built-in model is checked by a unit test: {e}")
            })
        })
    }

    /// Reads a model: `# comment` lines, `version <v>`, `bias <f>`, `threshold <f>`, then one
    /// `<weight>\t<feature>` line per feature (a word, or two words and a space).
    pub fn parse(text: &str) -> Result<NgramModel, ModelError> {
        let mut model = NgramModel {
            weights: HashMap::default(),
            bias: 0.0,
            threshold: f32::INFINITY,
            version: String::new(),
        };
        for (i, line) in text.lines().enumerate() {
            let error = |message| ModelError {
                line: i + 1,
                message,
            };
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some((weight, feature)) = line.split_once('\t') {
                let weight: f32 = weight.parse().map_err(|_| error("bad weight"))?;
                model.weights.insert(hash(feature.as_bytes()), weight);
                continue;
            }
            let (key, value) = line.split_once(' ').ok_or(error("bad line"))?;
            match key {
                "version" => model.version = value.to_owned(),
                "bias" => model.bias = value.parse().map_err(|_| error("bad bias"))?,
                "threshold" => {
                    model.threshold = value.parse().map_err(|_| error("bad threshold"))?
                }
                _ => return Err(error("unknown key")),
            }
        }
        if model.weights.is_empty() || !model.threshold.is_finite() {
            return Err(ModelError {
                line: 0,
                message: "no weights or no threshold",
            });
        }
        Ok(model)
    }

    /// The version of the model (training data and date).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The score at which a text reads as an attack.
    pub fn threshold(&self) -> f32 {
        self.threshold
    }

    /// The number of weighted features.
    pub fn features(&self) -> usize {
        self.weights.len()
    }

    /// The best window's score of `text` (folded; ASCII letters may be in either case), and the
    /// byte range of that window; `None` for a text without words.
    pub fn score(&self, text: &str) -> Option<(f32, std::ops::Range<usize>)> {
        // Per half window: the sum of the weights of its features, how many it has, its range.
        let mut halves: Vec<(f32, u32, usize, usize)> = Vec::new();
        let (mut sum, mut count, mut words) = (0.0f32, 0u32, 0usize);
        let mut start = 0;
        let mut previous: Option<u64> = None;
        for range in words_of(text) {
            if words == 0 {
                start = range.start;
            }
            let word = lowered(FNV_OFFSET, &text.as_bytes()[range.clone()]);
            sum += self.weight(word);
            count += 1;
            if let Some(first) = previous {
                // The pair continues the first word's hash with a space and the second word.
                let pair = lowered(step(first, b' '), &text.as_bytes()[range.clone()]);
                sum += self.weight(pair);
                count += 1;
            }
            previous = Some(word);
            words += 1;
            if words == STEP {
                halves.push((sum, count, start, range.end));
                (sum, count, words) = (0.0, 0, 0);
            }
        }
        if words > 0 {
            halves.push((sum, count, start, text.len()));
        }
        let window = |i: usize| {
            let (s, n, from, mut to) = halves[i];
            let (mut s, mut n) = (s, n);
            if let Some(&(s2, n2, _, to2)) = halves.get(i + 1) {
                (s, n, to) = (s + s2, n + n2, to2);
            }
            (self.bias + s / (n as f32).sqrt(), from..to)
        };
        // A text of one half window is one window; otherwise each window is two halves.
        let windows = halves.len().saturating_sub(1).max(1).min(halves.len());
        (0..windows).map(window).max_by(|a, b| a.0.total_cmp(&b.0))
    }

    fn weight(&self, hash: u64) -> f32 {
        self.weights.get(&hash).copied().unwrap_or(0.0)
    }
}

/// The words the model reads, as the training read them: lowercased (ASCII; a folded text's
/// other letters are lowercase already), at most 32 bytes each.
pub fn words(text: &str) -> Vec<String> {
    words_of(text)
        .map(|r| text[r].to_ascii_lowercase())
        .collect()
}

/// Byte ranges of the words of `text`: maximal runs of letters and digits, cut at 32 bytes.
fn words_of(text: &str) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
    let mut chars = text.char_indices().peekable();
    std::iter::from_fn(move || {
        let (start, _) = chars.by_ref().find(|(_, c)| c.is_alphanumeric())?;
        let mut end = text.len();
        let mut cut = None;
        while let Some(&(i, c)) = chars.peek() {
            if !c.is_alphanumeric() {
                end = i;
                break;
            }
            if cut.is_none() && i + c.len_utf8() - start > MAX_WORD {
                cut = Some(i);
            }
            chars.next();
        }
        Some(start..cut.unwrap_or(end).min(end))
    })
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn step(hash: u64, byte: u8) -> u64 {
    (hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME)
}

/// Continues `hash` with `bytes`, ASCII-lowercased.
fn lowered(hash: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(hash, |h, &b| step(h, b.to_ascii_lowercase()))
}

fn hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET, |h, &b| step(h, b))
}

/// The map's hasher: the keys are FNV hashes already; one multiply spreads them over the table.
#[derive(Default)]
struct Premixed(u64);

impl Hasher for Premixed {
    fn finish(&self) -> u64 {
        self.0.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29)
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0 = hash(bytes);
    }
    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_model_loads() {
        let model = NgramModel::parse(include_str!("injection_model.txt")).expect("model");
        assert!(model.features() > 1000, "{}", model.features());
        assert!(!model.version().is_empty());
    }

    #[test]
    fn words_are_lowercased_runs_of_letters_and_digits_cut_at_32_bytes() {
        assert_eq!(
            words("Ignore ALL prev-10us, ünïcode 日本語!"),
            ["ignore", "all", "prev", "10us", "ünïcode", "日本語"]
        );
        let long = "a".repeat(40);
        assert_eq!(words(&long), ["a".repeat(32)]);
        let wide = "é".repeat(20);
        assert_eq!(words(&wide), ["é".repeat(16)]);
        assert!(words(" ,. ").is_empty());
    }

    #[test]
    fn a_pair_hash_continues_its_first_word() {
        assert_eq!(
            lowered(step(lowered(FNV_OFFSET, b"Ignore"), b' '), b"ALL"),
            hash(b"ignore all")
        );
    }

    #[test]
    fn windows_score_at_their_own_density() {
        let model = NgramModel::parse("bias -1\nthreshold 0\n2\tjailbreak\n").expect("model");
        let (alone, _) = model.score("jailbreak now").expect("words");
        // bias + 2 / √3 (two words and one pair).
        assert!((alone - (-1.0 + 2.0 / 3f32.sqrt())).abs() < 1e-6, "{alone}");
        let filler = "the weather is fine today ".repeat(400);
        let buried = format!("{filler}jailbreak now {filler}");
        let (score, range) = model.score(&buried).expect("words");
        assert!(buried[range].contains("jailbreak"));
        assert!(score > -1.0 && score < alone);
        assert!(model.score("").is_none());
    }
}
