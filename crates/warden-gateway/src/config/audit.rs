//! `audit:` — where the audit trail goes and how it is sealed: the sink, the hash chain, the
//! checkpoint signing key, the queue's size and overflow, and when lines reach the disk.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use warden::audit::chain::Signer;
use warden::audit::redact::Redactor;
use warden::audit::sink::{Fsync, Overflow, SinkConfig, Target};

use super::toolkit::{Compiler, Scalar};

/// The largest queue: its slots are allocated when the sink starts.
const MAX_QUEUE: usize = 1 << 20;

/// `audit:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAudit {
    /// `stdout`, `file://PATH` (relative to the configuration file's directory), or both as a
    /// list.
    pub sink: Option<RawSinks>,
    /// Seal every record into the hash chain (default true).
    pub hash_chain: Option<bool>,
    /// Ed25519 private key (PKCS#8 PEM) for signed checkpoints: a secret reference.
    pub signing_key: Option<String>,
    /// `block` (default: no event is lost, requests wait) or `drop` (counted).
    pub on_overflow: Option<String>,
    /// Events the queue holds (default 65,536).
    pub queue: Option<u64>,
    /// `interval` (default), `every` or `never`.
    pub fsync: Option<String>,
    /// With `fsync: interval`: the most a crash loses (default 1s).
    pub fsync_interval: Option<Scalar>,
    /// A signed checkpoint after this many records (default 10,000).
    pub checkpoint_every: Option<u64>,
    /// And at least this often while records are written (default 1m).
    pub checkpoint_interval: Option<Scalar>,
    /// Mask personal data and credentials the content detectors find in written strings
    /// (default true).
    pub redact_pii: Option<bool>,
    /// More field names (any depth) or dotted paths whose values are always masked.
    pub redact_fields: Option<Vec<String>>,
    /// Regular expressions whose matches are masked in every written string.
    pub redact_patterns: Option<Vec<String>>,
}

/// `audit.sink`: one or a list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawSinks {
    /// One sink.
    One(String),
    /// Several (at most `stdout` and one file).
    Many(Vec<String>),
}

/// Compiles `audit:`; `None` when the section is absent.
pub fn compile(c: &mut Compiler, raw: Option<&RawAudit>) -> Option<SinkConfig> {
    let raw = raw?;
    let sinks: Vec<&str> = match &raw.sink {
        None => Vec::new(),
        Some(RawSinks::One(sink)) => vec![sink.trim()],
        Some(RawSinks::Many(sinks)) => sinks.iter().map(|s| s.trim()).collect(),
    };
    let mut target = None;
    let mut stdout = false;
    for (i, sink) in sinks.iter().enumerate() {
        let path = match &raw.sink {
            Some(RawSinks::Many(_)) => format!("audit.sink[{i}]"),
            _ => "audit.sink".to_owned(),
        };
        if *sink == "stdout" {
            stdout = true;
            continue;
        }
        match sink.strip_prefix("file://").filter(|p| !p.is_empty()) {
            Some(_) if target.is_some() => {
                c.error(path, "one file per trail (its chain is one sequence)")
            }
            Some(file) => target = Some(Target::File(c.resolve(file))),
            None => {
                let shown = c.quoted(&path, sink);
                c.error(path, format!("expected stdout or file://PATH, got {shown}"));
            }
        }
    }
    if sinks.is_empty() {
        c.error(
            "audit.sink",
            "required: stdout, file://PATH, or both as a list",
        );
    }
    let also_stdout = stdout && target.is_some();
    let target = target.unwrap_or(Target::Stdout);
    let hash_chain = raw.hash_chain.unwrap_or(true);
    let signer = raw.signing_key.as_deref().and_then(|pem| {
        if !c.is_secret("audit.signing_key") {
            c.error(
                "audit.signing_key",
                "must be a secret reference (${file:PATH} or ${env:NAME}), not a literal",
            );
            return None;
        }
        if !hash_chain {
            c.error(
                "audit.signing_key",
                "checkpoints sign the hash chain: needs hash_chain: true",
            );
            return None;
        }
        let der = crate::token::der_from_pem(pem.as_bytes()).ok();
        match der.and_then(|der| Signer::from_pkcs8(&der).ok()) {
            Some(signer) => Some(Arc::new(signer)),
            None => {
                c.error(
                    "audit.signing_key",
                    "not an Ed25519 private key in PKCS#8 PEM (warden audit keygen writes one)",
                );
                None
            }
        }
    });
    let overflow = c.choice(
        "audit.on_overflow",
        raw.on_overflow.as_deref(),
        &[("block", Overflow::Block), ("drop", Overflow::Drop)],
        Overflow::Block,
    );
    let interval = c.duration(
        "audit.fsync_interval",
        raw.fsync_interval.as_ref(),
        Duration::from_secs(1),
    );
    let fsync = c.choice(
        "audit.fsync",
        raw.fsync.as_deref(),
        &[
            ("interval", Fsync::Interval(interval)),
            ("every", Fsync::Every),
            ("never", Fsync::Never),
        ],
        Fsync::Interval(interval),
    );
    let mut queue = c.count("audit.queue", raw.queue, 65_536);
    if queue > MAX_QUEUE {
        c.error(
            "audit.queue",
            format!("at most {MAX_QUEUE} (the queue is allocated up front)"),
        );
        queue = MAX_QUEUE;
    }
    let checkpoint_every = c.count("audit.checkpoint_every", raw.checkpoint_every, 10_000) as u64;
    let checkpoint_interval = c.duration(
        "audit.checkpoint_interval",
        raw.checkpoint_interval.as_ref(),
        Duration::from_secs(60),
    );
    let redactor = match Redactor::new(
        raw.redact_pii.unwrap_or(true),
        raw.redact_fields.as_deref().unwrap_or_default(),
        raw.redact_patterns.as_deref().unwrap_or_default(),
    ) {
        Ok(redactor) => Some(Arc::new(redactor)),
        Err(error) => {
            c.error(
                format!("audit.redact_patterns[{}]", error.index),
                error.message,
            );
            None
        }
    };
    Some(SinkConfig {
        target,
        also_stdout,
        hash_chain,
        signer,
        queue,
        overflow,
        fsync,
        checkpoint_every,
        checkpoint_interval,
        redactor,
    })
}
