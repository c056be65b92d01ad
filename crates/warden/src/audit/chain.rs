//! Tamper evidence for the audit trail: a hash chain over a canonical encoding of each record,
//! and checkpoints signed with Ed25519.
//!
//! Used by the sinks (`audit::sink`) as the last step before a record is written, in the one
//! writer thread, so records are sealed in the order they are written. Each record carries
//! `warden.chain = { seq, prev, hash }`: its number, the hash of the record before it, and
//! SHA-256 over the canonical encoding of the record itself without `hash` (keys sorted, no
//! whitespace, `serde_json`'s escaping and numbers). Editing, inserting, deleting or reordering
//! a record breaks the links from there on.
//!
//! A plain chain can be recomputed by whoever rewrites the file. With a signing key, a
//! checkpoint record every N records, every T seconds and at shutdown carries a signature over
//! the chain's head (`seq` and `prev`); without the key nobody can forge one, so a rewrite shows at
//! the first checkpoint. [`verify`] reads a file back and names the first line that does not
//! hold.
//!
//! What no chain shows by itself: a file cut right after a valid checkpoint (or, unsigned, after a
//! shutdown record). `verify` reports the head it ended at; comparing it with a copy kept
//! elsewhere (the logs, another machine) closes that gap.

use aws_lc_rs::digest;
use aws_lc_rs::signature::{self, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use std::io::{self, BufRead, Read as _};

use base64::Engine as _;
use serde_json::{Map, Value};

use super::AuditEvent;

/// The hash linking the first record of a trail.
pub const GENESIS: [u8; 32] = [0; 32];

/// What a checkpoint signature covers: this prefix, the head's `seq`, a newline and the hex of
/// its `prev`.
const CHECKPOINT_CONTEXT: &str = "warden audit checkpoint v1\n";

/// The running state of a trail: the next record's number and the hash it links to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    next_seq: u64,
    prev: [u8; 32],
}

impl Default for Chain {
    fn default() -> Chain {
        Chain::new()
    }
}

impl Chain {
    /// A new trail.
    pub fn new() -> Chain {
        Chain {
            next_seq: 1,
            prev: GENESIS,
        }
    }

    /// The trail continued after `last_line`, the last record written (a restart, or a file
    /// opened after rotation).
    pub fn resume(last_line: &str) -> Result<Chain, ChainError> {
        let record: Map<String, Value> =
            serde_json::from_str(last_line).map_err(|_| ChainError::NotARecord)?;
        let link = Link::of(&record).ok_or(ChainError::NoLink)?;
        Ok(Chain {
            next_seq: link.seq + 1,
            prev: link.hash.ok_or(ChainError::NoLink)?,
        })
    }

    /// The number the next record gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The hash of the last record sealed (the genesis hash before any).
    pub fn head(&self) -> [u8; 32] {
        self.prev
    }

    /// Links `event` into the chain and returns its line (without the newline).
    pub fn seal(&mut self, mut event: AuditEvent) -> String {
        let mut line = Vec::with_capacity(768);
        self.seal_into(&mut event, &mut line);
        // The encoder writes UTF-8, and the insertion is ASCII between two fields.
        String::from_utf8(line).unwrap_or_default()
    }

    /// Links `event` into the chain and appends its line (without the newline) to `out`, so a
    /// writer reuses one buffer. The line is the canonical encoding itself, so it is encoded
    /// once: the hash of the encoding without `hash`, then `hash` put in its sorted place
    /// (first key of `warden.chain`).
    pub fn seal_into(&mut self, event: &mut AuditEvent, out: &mut Vec<u8>) {
        event.clear_inside("warden.chain");
        let prev = self.prev;
        event.set_with("warden.chain.prev", |text| push_hex(text, &prev));
        event.set("warden.chain.seq", self.next_seq);
        let start = out.len();
        let at = event
            .write_canonical(out, "warden.chain.prev")
            .unwrap_or(out.len());
        let hash = sha256(&out[start..]);
        // `"hash":"<64 hex>",` goes in before `prev`: the tail moves up in place.
        const INSERTED: usize = 8 + 64 + 2;
        let end = out.len();
        out.resize(end + INSERTED, 0);
        out.copy_within(at..end, at + INSERTED);
        let slot = &mut out[at..at + INSERTED];
        slot[..8].copy_from_slice(b"\"hash\":\"");
        for (pair, byte) in slot[8..72].chunks_exact_mut(2).zip(hash) {
            pair[0] = HEX_DIGITS[usize::from(byte >> 4)];
            pair[1] = HEX_DIGITS[usize::from(byte & 15)];
        }
        slot[72..].copy_from_slice(b"\",");
        self.next_seq += 1;
        self.prev = hash;
    }

    /// The signature a checkpoint sealed next carries over the chain's head.
    fn checkpoint_message(&self) -> String {
        format!("{CHECKPOINT_CONTEXT}{}\n{}", self.next_seq, hex(&self.prev))
    }
}

/// Signs checkpoints.
pub struct Signer {
    key: Ed25519KeyPair,
    id: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key itself is never printed.
        f.debug_struct("Signer").field("key_id", &self.id).finish()
    }
}

impl Signer {
    /// A signer from an Ed25519 private key in PKCS#8 (DER).
    pub fn from_pkcs8(der: &[u8]) -> Result<Signer, ChainError> {
        let key = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map_err(|_| ChainError::BadSigningKey)?;
        let id = key_id(key.public_key().as_ref());
        Ok(Signer { key, id })
    }

    /// The public key, base64 (what `warden audit verify --public-key` takes).
    pub fn public_key(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.key.public_key().as_ref())
    }

    /// A short id of the public key: the first 8 bytes of its SHA-256, hex.
    pub fn key_id(&self) -> &str {
        &self.id
    }

    /// The `warden.checkpoint` object for a checkpoint sealed next in `chain`.
    pub fn checkpoint(&self, chain: &Chain) -> Value {
        let signature = self.key.sign(chain.checkpoint_message().as_bytes());
        serde_json::json!({
            "key_id": self.id,
            "signature": base64::engine::general_purpose::STANDARD.encode(signature.as_ref()),
        })
    }
}

fn key_id(public_key: &[u8]) -> String {
    hex(&digest::digest(&digest::SHA256, public_key).as_ref()[..8])
}

/// Why a chain cannot resume or a key cannot sign.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// The line is not a JSON object.
    #[error("the last line is not a JSON record")]
    NotARecord,
    /// The record has no `warden.chain` with a `seq` and a `hash`.
    #[error("the last record carries no chain link (warden.chain)")]
    NoLink,
    /// The signing key is not an Ed25519 PKCS#8 key.
    #[error("the signing key is not an Ed25519 private key in PKCS#8")]
    BadSigningKey,
}

/// A record's `warden.chain`, read back.
struct Link {
    seq: u64,
    prev: [u8; 32],
    hash: Option<[u8; 32]>,
}

impl Link {
    fn of(record: &Map<String, Value>) -> Option<Link> {
        let chain = record.get("warden")?.get("chain")?;
        Some(Link {
            seq: chain.get("seq")?.as_u64()?,
            prev: unhex(chain.get("prev")?.as_str()?)?,
            hash: chain.get("hash").and_then(Value::as_str).and_then(unhex),
        })
    }
}

/// SHA-256 of the canonical encoding of `record` without `warden.chain.hash`.
fn record_hash(record: &Map<String, Value>) -> [u8; 32] {
    let mut text = Vec::with_capacity(768);
    canonical_object(record, &mut text, Level::Record);
    sha256(&text)
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut hash = [0; 32];
    hash.copy_from_slice(digest::digest(&digest::SHA256, bytes).as_ref());
    hash
}

/// Writes `value` canonically: object keys sorted by their bytes, no whitespace, strings and
/// numbers as `serde_json` writes them. The writer and the verifier share it, so the encoding
/// does not depend on how a map keeps its keys.
pub fn canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => canonical_object(map, out, Level::Plain),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical(item, out);
            }
            out.push(b']');
        }
        // Scalars: serde_json's own encoding (writing to a Vec cannot fail).
        scalar => {
            let _ = serde_json::to_writer(&mut *out, scalar);
        }
    }
}

/// The hex SHA-256 of `value`'s canonical encoding: a fingerprint that does not depend on key
/// order or layout (the audit trail's `warden.config.sha256`).
pub fn fingerprint(value: &Value) -> String {
    let mut text = Vec::new();
    canonical(value, &mut text);
    hex(&sha256(&text))
}

/// Where an object is, for leaving out `warden.chain.hash`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    /// Anywhere: everything is encoded.
    Plain,
    /// A record whose `warden.chain.hash` is left out.
    Record,
    /// The `warden.chain` object of such a record: `hash` is left out.
    Chain,
}

fn canonical_object(map: &Map<String, Value>, out: &mut Vec<u8>, level: Level) {
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    out.push(b'{');
    let mut first = true;
    for (key, value) in entries {
        if level == Level::Chain && key == "hash" {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        let _ = serde_json::to_writer(&mut *out, key);
        out.push(b':');
        match (level, key.as_str(), value) {
            // Inside `warden`, only `chain` loses its `hash`.
            (Level::Record, "warden", Value::Object(warden)) => canonical_warden(warden, out),
            _ => canonical(value, out),
        }
    }
    out.push(b'}');
}

fn canonical_warden(warden: &Map<String, Value>, out: &mut Vec<u8>) {
    let mut entries: Vec<(&String, &Value)> = warden.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    out.push(b'{');
    for (i, (key, value)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let _ = serde_json::to_writer(&mut *out, key);
        out.push(b':');
        match (key.as_str(), value) {
            ("chain", Value::Object(chain)) => canonical_object(chain, out, Level::Chain),
            _ => canonical(value, out),
        }
    }
    out.push(b'}');
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    push_hex(&mut out, bytes);
    out
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    for &b in bytes {
        out.push(char::from(HEX_DIGITS[usize::from(b >> 4)]));
        out.push(char::from(HEX_DIGITS[usize::from(b & 15)]));
    }
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// What [`verify`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// Records that verified, in order.
    pub records: u64,
    /// Signed checkpoints that verified.
    pub checkpoints: u64,
    /// The `seq` and hash of the last record that verified: the head to compare with a copy kept
    /// elsewhere.
    pub head: Option<(u64, String)>,
    /// The first problem, if any.
    pub problem: Option<Problem>,
    /// Where the problem is: the file (its index in the order given) and the line in it.
    pub location: Option<(usize, u64)>,
}

/// The first thing in a trail that does not hold, with the line it is on (1-based, counted
/// across the files in the order given).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    /// The line is not a JSON record with a chain link.
    #[error("line {line}: not an audit record with a chain link")]
    Unreadable {
        /// Where.
        line: u64,
    },
    /// The last line is cut (no newline, or not JSON): the file was truncated mid-write.
    #[error("line {line}: the file ends inside a record (truncated)")]
    TruncatedLine {
        /// Where.
        line: u64,
    },
    /// The record's hash does not match its content.
    #[error("line {line}: the record was modified (its hash does not match its content)")]
    Modified {
        /// Where.
        line: u64,
    },
    /// Records are missing before this one.
    #[error(
        "line {line}: {missing} record(s) before it were deleted (seq {expected} expected, {found} found)"
    )]
    Deleted {
        /// Where.
        line: u64,
        /// How many.
        missing: u64,
        /// The seq that should be here.
        expected: u64,
        /// The seq that is.
        found: u64,
    },
    /// The record is out of order or repeated.
    #[error(
        "line {line}: record out of order or repeated (seq {expected} expected, {found} found)"
    )]
    Reordered {
        /// Where.
        line: u64,
        /// The seq that should be here.
        expected: u64,
        /// The seq that is.
        found: u64,
    },
    /// The record has the right number but does not link to the one before: inserted or
    /// replaced.
    #[error("line {line}: the record does not link to the one before it (inserted or replaced)")]
    Inserted {
        /// Where.
        line: u64,
    },
    /// A checkpoint's signature does not verify with the key given.
    #[error("line {line}: forged checkpoint (the signature does not verify with the public key)")]
    ForgedCheckpoint {
        /// Where.
        line: u64,
    },
    /// Records after the last signed checkpoint (or, without a key, no closing record at the
    /// end): the file was cut or rewritten, or the gateway is still writing it.
    #[error(
        "line {line}: {records} record(s) from here on are covered by no {what}: the file was cut or rewritten, or is still being written"
    )]
    Unsealed {
        /// The first uncovered line.
        line: u64,
        /// How many records are uncovered.
        records: u64,
        /// `signed checkpoint` or `closing record`.
        what: &'static str,
    },
}

impl Problem {
    /// The line it is on, counted across the files in the order given.
    pub fn line(&self) -> u64 {
        match self {
            Problem::Unreadable { line }
            | Problem::TruncatedLine { line }
            | Problem::Modified { line }
            | Problem::Deleted { line, .. }
            | Problem::Reordered { line, .. }
            | Problem::Inserted { line }
            | Problem::ForgedCheckpoint { line }
            | Problem::Unsealed { line, .. } => *line,
        }
    }
}

/// The longest line [`verify_readers`] reads. A record is far smaller (guard findings are
/// capped), so a longer line is unreadable rather than a reason to hold a file in memory.
pub const MAX_LINE: usize = 1 << 20;

/// Verifies a trail held in memory: the text of each file, in order. See [`verify_readers`].
pub fn verify<'a>(files: impl IntoIterator<Item = &'a str>, public_key: Option<&[u8]>) -> Report {
    let report = verify_readers(files.into_iter().map(str::as_bytes), public_key);
    // Reading from memory cannot fail; were it to, the trail would not verify.
    report.unwrap_or(Report {
        records: 0,
        checkpoints: 0,
        head: None,
        problem: Some(Problem::Unreadable { line: 1 }),
        location: Some((0, 1)),
    })
}

/// One line of a file as [`verify_readers`] reads it.
enum Line {
    /// Ended by a newline (the newline and a `\r` before it removed).
    Whole,
    /// The file ends without a newline.
    Cut,
    /// Longer than [`MAX_LINE`].
    TooLong,
    /// No more lines.
    End,
}

fn read_line(reader: &mut impl BufRead, buf: &mut Vec<u8>) -> io::Result<Line> {
    buf.clear();
    let n = reader
        .by_ref()
        .take(MAX_LINE as u64 + 1)
        .read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(Line::End);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        return Ok(Line::Whole);
    }
    Ok(if buf.len() > MAX_LINE {
        Line::TooLong
    } else {
        Line::Cut
    })
}

/// Verifies a trail read file by file, a line at a time (memory stays bounded whatever the
/// files' size): a rotated file's first record links to the last of the one before. With
/// `public_key` (base64 of the raw Ed25519 key), every checkpoint must verify and the trail must
/// end with one; without, it must end with a closing record (`event.action` of
/// `audit-checkpoint` or `shutdown`). An error is a file that could not be read.
pub fn verify_readers<R: BufRead>(
    files: impl IntoIterator<Item = R>,
    public_key: Option<&[u8]>,
) -> io::Result<Report> {
    let key = public_key.map(|k| UnparsedPublicKey::new(&signature::ED25519, k.to_vec()));
    let mut report = Report {
        records: 0,
        checkpoints: 0,
        head: None,
        problem: None,
        location: None,
    };
    let mut line_no = 0u64;
    let mut expected: Option<Chain> = None;
    // The first line after the last closing record (signed checkpoint with a key), and how many
    // records follow it.
    let mut uncovered: Option<(u64, u64)> = None;
    let mut buf = Vec::with_capacity(1024);
    // The trail-wide number of each file's first line.
    let mut starts: Vec<u64> = Vec::new();
    for mut reader in files {
        starts.push(line_no + 1);
        loop {
            let kind = read_line(&mut reader, &mut buf)?;
            if matches!(kind, Line::End) {
                break;
            }
            line_no += 1;
            let problem = match (&kind, std::str::from_utf8(&buf)) {
                (Line::TooLong, _) | (_, Err(_)) => Some(Problem::Unreadable { line: line_no }),
                (_, Ok(line)) => check_line(
                    line,
                    line_no,
                    &mut expected,
                    key.as_ref(),
                    &mut report,
                    &mut uncovered,
                ),
            };
            let problem = match (problem, &kind) {
                (Some(Problem::Unreadable { line }), Line::Cut) => {
                    Some(Problem::TruncatedLine { line })
                }
                // A record that should be here but comes later in the file was moved, not
                // deleted.
                (
                    Some(Problem::Deleted {
                        line,
                        expected,
                        found,
                        ..
                    }),
                    _,
                ) if comes_later(&mut reader, &mut buf, expected)? => Some(Problem::Reordered {
                    line,
                    expected,
                    found,
                }),
                (None, Line::Cut) => Some(Problem::TruncatedLine { line: line_no }),
                (problem, _) => problem,
            };
            if let Some(problem) = problem {
                report.location = Some(locate(&starts, problem.line()));
                report.problem = Some(problem);
                return Ok(report);
            }
        }
    }
    if let Some((line, records)) = uncovered {
        report.problem = Some(Problem::Unsealed {
            line,
            records,
            what: if key.is_some() {
                "signed checkpoint"
            } else {
                "closing record"
            },
        });
        report.location = Some(locate(&starts, line));
    }
    Ok(report)
}

/// The file a trail-wide line is in, and its line there.
fn locate(starts: &[u64], line: u64) -> (usize, u64) {
    let file = starts.iter().rposition(|&start| start <= line).unwrap_or(0);
    (
        file,
        (line + 1).saturating_sub(starts.get(file).copied().unwrap_or(1)),
    )
}

/// Whether a record numbered `seq` follows in the rest of `reader`.
fn comes_later(reader: &mut impl BufRead, buf: &mut Vec<u8>, seq: u64) -> io::Result<bool> {
    loop {
        match read_line(reader, buf)? {
            Line::End => return Ok(false),
            Line::TooLong => continue,
            Line::Whole | Line::Cut => {
                if std::str::from_utf8(buf).ok().and_then(seq_of) == Some(seq) {
                    return Ok(true);
                }
            }
        }
    }
}

fn seq_of(line: &str) -> Option<u64> {
    let record: Map<String, Value> = serde_json::from_str(line).ok()?;
    Link::of(&record).map(|link| link.seq)
}

fn check_line(
    line: &str,
    line_no: u64,
    expected: &mut Option<Chain>,
    key: Option<&UnparsedPublicKey<Vec<u8>>>,
    report: &mut Report,
    uncovered: &mut Option<(u64, u64)>,
) -> Option<Problem> {
    let unreadable = Problem::Unreadable { line: line_no };
    let Ok(record) = serde_json::from_str::<Map<String, Value>>(line) else {
        return Some(unreadable);
    };
    let Some(link) = Link::of(&record) else {
        return Some(unreadable);
    };
    let Some(hash) = link.hash else {
        return Some(unreadable);
    };
    if record_hash(&record) != hash {
        return Some(Problem::Modified { line: line_no });
    }
    // The first record read may continue an earlier file (rotation): it sets the expectation.
    let chain = expected.get_or_insert_with(|| Chain {
        next_seq: link.seq,
        prev: link.prev,
    });
    if link.seq > chain.next_seq {
        return Some(Problem::Deleted {
            line: line_no,
            missing: link.seq - chain.next_seq,
            expected: chain.next_seq,
            found: link.seq,
        });
    }
    if link.seq < chain.next_seq {
        return Some(Problem::Reordered {
            line: line_no,
            expected: chain.next_seq,
            found: link.seq,
        });
    }
    if link.prev != chain.prev {
        return Some(Problem::Inserted { line: line_no });
    }
    let checkpoint = record
        .get("warden")
        .and_then(|w| w.get("checkpoint"))
        .and_then(|c| c.get("signature"))
        .and_then(Value::as_str);
    let closing = match (key, checkpoint) {
        (Some(key), Some(signature)) => {
            let signature = base64::engine::general_purpose::STANDARD
                .decode(signature)
                .unwrap_or_default();
            if key
                .verify(chain.checkpoint_message().as_bytes(), &signature)
                .is_err()
            {
                return Some(Problem::ForgedCheckpoint { line: line_no });
            }
            report.checkpoints += 1;
            true
        }
        (Some(_), None) => false,
        (None, _) => matches!(
            record
                .get("event")
                .and_then(|e| e.get("action"))
                .and_then(Value::as_str),
            Some("audit-checkpoint" | "shutdown")
        ),
    };
    chain.next_seq += 1;
    chain.prev = hash;
    report.records += 1;
    report.head = Some((link.seq, hex(&hash)));
    *uncovered = if closing {
        None
    } else {
        Some(uncovered.map_or((line_no, 1), |(first, n)| (first, n + 1)))
    };
    None
}

/// Generates a new Ed25519 signing key, PKCS#8 (DER).
pub fn generate_signing_key() -> Result<Vec<u8>, ChainError> {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    Ed25519KeyPair::generate_pkcs8(&rng)
        .map(|doc| doc.as_ref().to_vec())
        .map_err(|_| ChainError::BadSigningKey)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(action: &str, n: u64) -> AuditEvent {
        AuditEvent::from_value(&serde_json::json!({
            "@timestamp": "2026-12-02T22:00:00.000Z",
            "event": { "kind": "event", "action": action, "outcome": "success" },
            "url": { "path": format!("/v1/items/{n}") },
            "warden": { "route": "items" },
        }))
    }

    /// A trail of `n` requests, then a closing record (a checkpoint when `signer` is given).
    fn trail(n: u64, signer: Option<&Signer>) -> Vec<String> {
        let mut chain = Chain::new();
        let mut lines: Vec<String> = (0..n).map(|i| chain.seal(event("request", i))).collect();
        let mut closing = event("shutdown", n);
        if let Some(signer) = signer {
            closing = event("audit-checkpoint", n);
            closing.set("warden.checkpoint", signer.checkpoint(&chain));
        }
        lines.push(chain.seal(closing));
        lines
    }

    fn text(lines: &[String]) -> String {
        lines.iter().map(|l| format!("{l}\n")).collect()
    }

    fn signer() -> Signer {
        Signer::from_pkcs8(&generate_signing_key().expect("key")).expect("signer")
    }

    fn public(signer: &Signer) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .decode(signer.public_key())
            .expect("base64")
    }

    #[test]
    fn an_intact_trail_verifies_to_its_head() {
        let lines = trail(5, None);
        let report = verify([text(&lines).as_str()], None);
        assert_eq!(report.problem, None);
        assert_eq!(report.records, 6);
        assert_eq!(report.head.as_ref().map(|h| h.0), Some(6));
        // The canonical hash does not depend on key order or whitespace.
        let record: Value = serde_json::from_str(&lines[2]).expect("json");
        let pretty = serde_json::to_string_pretty(&record).expect("json");
        let reread: Map<String, Value> = serde_json::from_str(&pretty).expect("json");
        assert_eq!(
            Some(record_hash(&reread)),
            Link::of(&reread).and_then(|l| l.hash)
        );
    }

    #[test]
    fn a_sealed_line_is_its_own_canonical_encoding_and_covers_every_field() {
        let mut chain = Chain::new();
        let mut record = event("request", 1);
        // A field named like the chain's own, elsewhere, is content like any other.
        record.set("hash", "top");
        let line = chain.seal(record);
        let parsed: Value = serde_json::from_str(&line).expect("json");
        let mut again = Vec::new();
        canonical(&parsed, &mut again);
        assert_eq!(String::from_utf8(again).expect("utf-8"), line);
        let edited = line.replace("\"hash\":\"top\"", "\"hash\":\"pot\"");
        assert_eq!(
            verify([format!("{edited}\n").as_str()], None).problem,
            Some(Problem::Modified { line: 1 })
        );
    }

    #[test]
    fn each_kind_of_tampering_is_named_with_its_line() {
        let lines = trail(5, None);
        let check = |lines: &[String]| verify([text(lines).as_str()], None).problem;
        // Modified: a value changed.
        let mut edited = lines.clone();
        edited[2] = edited[2].replace("/v1/items/2", "/v1/items/9");
        assert_eq!(check(&edited), Some(Problem::Modified { line: 3 }));
        // Deleted: a record removed.
        let mut deleted = lines.clone();
        deleted.remove(1);
        assert!(matches!(
            check(&deleted),
            Some(Problem::Deleted {
                line: 2,
                missing: 1,
                ..
            })
        ));
        // Reordered: two records swapped.
        let mut swapped = lines.clone();
        swapped.swap(1, 2);
        assert!(matches!(
            check(&swapped),
            Some(Problem::Reordered {
                line: 2,
                expected: 2,
                found: 3
            })
        ));
        let mut repeated = lines.clone();
        repeated.insert(3, lines[2].clone());
        assert!(matches!(
            check(&repeated),
            Some(Problem::Reordered { line: 4, .. })
        ));
        // Inserted: a record sealed on a chain of its own, numbered to fit.
        let mut forger = Chain {
            next_seq: 3,
            prev: GENESIS,
        };
        let mut inserted = lines.clone();
        inserted[2] = forger.seal(event("request", 2));
        assert_eq!(check(&inserted), Some(Problem::Inserted { line: 3 }));
        // Shortened: the closing record and one before it gone.
        let shortened = &lines[..lines.len() - 2];
        assert!(matches!(
            check(shortened),
            Some(Problem::Unsealed {
                line: 1,
                records: 4,
                ..
            })
        ));
        // Cut mid-line.
        let mut cut = text(&lines);
        cut.truncate(cut.len() - 10);
        assert_eq!(
            verify([cut.as_str()], None).problem,
            Some(Problem::TruncatedLine { line: 6 })
        );
        // Not a record at all.
        let mut junk = lines.clone();
        junk[0] = "hello".into();
        assert_eq!(check(&junk), Some(Problem::Unreadable { line: 1 }));
    }

    #[test]
    fn a_rewrite_with_a_recomputed_chain_fails_at_the_signed_checkpoint() {
        let signer = signer();
        let key = public(&signer);
        let lines = trail(4, Some(&signer));
        let report = verify([text(&lines).as_str()], Some(&key));
        assert_eq!(report.problem, None);
        assert_eq!(report.checkpoints, 1);
        // The attacker edits a record and recomputes every hash after it, keeping the old
        // checkpoint object (it cannot sign a new one).
        let mut chain = Chain::new();
        let rewritten: Vec<String> = lines
            .iter()
            .map(|line| {
                let mut record: Map<String, Value> = serde_json::from_str(line).expect("json");
                if let Some(path) = record.get_mut("url") {
                    *path = serde_json::json!({ "path": "/v1/items/innocent" });
                }
                chain.seal(AuditEvent::from_value(&Value::Object(record)))
            })
            .collect();
        // Without the key a recomputed chain holds: that is what a plain chain cannot show.
        assert_eq!(verify([text(&rewritten).as_str()], None).problem, None);
        assert_eq!(
            verify([text(&rewritten).as_str()], Some(&key)).problem,
            Some(Problem::ForgedCheckpoint { line: 5 })
        );
        // With the checkpoint dropped, the records are covered by none.
        assert!(matches!(
            verify([text(&rewritten[..4]).as_str()], Some(&key)).problem,
            Some(Problem::Unsealed {
                line: 1,
                records: 4,
                ..
            })
        ));
        // Another key's signature is a forgery too.
        let other = public(&self::signer());
        assert_eq!(
            verify([text(&lines).as_str()], Some(&other)).problem,
            Some(Problem::ForgedCheckpoint { line: 5 })
        );
    }

    #[test]
    fn the_chain_continues_across_files_and_restarts() {
        let mut chain = Chain::new();
        let first: Vec<String> = (0..3).map(|i| chain.seal(event("request", i))).collect();
        // Restart: the chain resumes from the last line written.
        let mut resumed = Chain::resume(first.last().expect("line")).expect("resume");
        assert_eq!(resumed, chain);
        let mut second: Vec<String> = (3..5).map(|i| resumed.seal(event("request", i))).collect();
        second.push(resumed.seal(event("shutdown", 5)));
        let (a, b) = (text(&first), text(&second));
        assert_eq!(verify([a.as_str(), b.as_str()], None).problem, None);
        // The second file alone verifies as a continuation; out of order, the seams show.
        assert_eq!(verify([b.as_str()], None).problem, None);
        assert!(matches!(
            verify([b.as_str(), a.as_str()], None).problem,
            Some(Problem::Reordered { line: 4, .. })
        ));
        assert_eq!(Chain::resume("{}"), Err(ChainError::NoLink));
        assert_eq!(Chain::resume("{"), Err(ChainError::NotARecord));
    }

    #[test]
    fn files_are_read_a_bounded_line_at_a_time_and_problems_located_in_their_file() {
        let lines = trail(6, None);
        let first = text(&lines[..3]);
        // A line that is not UTF-8, in the second file.
        let mut second = text(&lines[3..4]).into_bytes();
        second.extend_from_slice(b"\xff\xfe not text\n");
        second.extend_from_slice(text(&lines[4..]).as_bytes());
        let report =
            verify_readers([first.as_bytes(), second.as_slice()], None).expect("in memory");
        assert_eq!(report.problem, Some(Problem::Unreadable { line: 5 }));
        assert_eq!(report.location, Some((1, 2)));
        assert_eq!(report.records, 4);
        // A line longer than any record is unreadable; it is not read whole.
        let mut long = text(&lines[..1]).into_bytes();
        long.extend(std::iter::repeat_n(b'x', MAX_LINE + 10));
        long.push(b'\n');
        let report = verify_readers([long.as_slice()], None).expect("in memory");
        assert_eq!(report.problem, Some(Problem::Unreadable { line: 2 }));
        // Records no closing record covers are located where they start.
        let report = verify_readers([first.as_bytes(), text(&lines[3..5]).as_bytes()], None)
            .expect("in memory");
        assert!(matches!(
            report.problem,
            Some(Problem::Unsealed {
                line: 1,
                records: 5,
                ..
            })
        ));
        assert_eq!(report.location, Some((0, 1)));
        // Line ends written as CRLF read as the same records.
        let crlf = text(&lines).replace('\n', "\r\n");
        assert_eq!(verify([crlf.as_str()], None).problem, None);
    }

    #[test]
    fn signer_debug_never_prints_the_key() {
        let signer = signer();
        let printed = format!("{signer:?}");
        assert!(printed.contains(signer.key_id()));
        assert!(!printed.contains(&signer.public_key()));
        assert_eq!(
            Signer::from_pkcs8(b"not a key").map(|_| ()),
            Err(ChainError::BadSigningKey)
        );
    }
}
