//! The audit sinks: a bounded queue in front of one writer thread, which seals each event into
//! the hash chain and writes it as a JSON line to a file or to standard output.
//!
//! [`FileSink::record`] never waits on I/O: it queues. When the queue is full, `Overflow::Block`
//! (the default) makes the caller wait for room — no event is ever lost — and `Overflow::Drop`
//! drops the event, counts it, and the writer records how many it lost in the trail itself.
//! The writer flushes after every batch it drains, syncs to disk per [`Fsync`], writes a signed
//! checkpoint every N records or T seconds when it has a key, and on [`FileSink::close`]
//! writes everything queued, a final checkpoint, and syncs before it returns. A file is appended
//! to: the chain resumes from its last record, and [`FileSink::reopen`] (SIGUSR1, after an
//! external rotation) starts the new file with a record linking to the old one's last; the
//! writer also notices by itself, once per batch, that the path names another file or none.
//!
//! A failing target (disk full) never gets half a record: lines are handed over whole and a
//! write the disk took only part of is cut back. The writer retries every 250 ms; with
//! `Overflow::Block` it takes nothing more from the queue meanwhile (requests wait once it is
//! full, [`FileSink::writable`] turns readiness off before that), with `Overflow::Drop` it drops
//! and counts what arrives. Closing waits 5 s at most for a target that keeps failing.
//!
//! Written events go back, emptied, to a short spare list that [`AuditSink::event_at`] takes
//! from: the request threads refill the writer's spent storage instead of allocating what the
//! writer thread would free.
//!
//! Operator commands (`warden keys …`) append to the same file with [`append`]. Both writers take
//! an exclusive advisory lock on the file around each batch, and the writer thread re-reads the
//! chain's head from the file when its length is not what it left: the trail stays one chain.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use super::chain::{Chain, Signer};
use super::redact::Redactor;
use super::{Action, AuditEvent, AuditSink, Outcome};

/// Metric names.
pub mod names {
    /// Counter: events written.
    pub const WRITTEN: &str = "warden_audit_events_written_total";
    /// Counter: events dropped because the queue was full (`on_overflow: drop`).
    pub const DROPPED: &str = "warden_audit_events_dropped_total";
    /// Gauge: events queued and not yet written.
    pub const QUEUE_DEPTH: &str = "warden_audit_queue_depth";
    /// Counter: write or sync errors.
    pub const ERRORS: &str = "warden_audit_write_errors_total";
    /// Gauge: 1 while the target takes what is written, 0 while writes fail (disk full).
    pub const WRITABLE: &str = "warden_audit_sink_writable";
}

/// Where the lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// Standard output (a platform's log pipeline).
    Stdout,
    /// A JSON Lines file, appended to.
    File(PathBuf),
}

/// What a full queue does to the caller.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Overflow {
    /// Wait for room: no event is lost.
    #[default]
    Block,
    /// Drop the event and count it.
    Drop,
}

/// When written lines are synced to disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fsync {
    /// After every batch the writer drains (a crash loses nothing that was written).
    Every,
    /// At most this long after a write (a crash loses at most this much).
    Interval(Duration),
    /// Left to the operating system.
    Never,
}

/// How a sink writes (the compiled `audit:` section).
#[derive(Clone, Debug)]
pub struct SinkConfig {
    /// Where.
    pub target: Target,
    /// With a file target: the same lines to standard output too.
    pub also_stdout: bool,
    /// Whether each record is sealed into the hash chain.
    pub hash_chain: bool,
    /// Signs checkpoints (with `hash_chain`).
    pub signer: Option<Arc<Signer>>,
    /// Events the queue holds.
    pub queue: usize,
    /// What a full queue does.
    pub overflow: Overflow,
    /// When lines are synced.
    pub fsync: Fsync,
    /// A checkpoint after this many records (with a signer).
    pub checkpoint_every: u64,
    /// And at least this often while records are written.
    pub checkpoint_interval: Duration,
    /// Masks what must not be written (applied before sealing: by the writer, unless the
    /// event was redacted where it was made).
    pub redactor: Option<Arc<Redactor>>,
}

impl SinkConfig {
    /// The defaults for `target`: hash chain on, 65,536 queued events, block, sync every
    /// second, a checkpoint every 10,000 records or minute, no redaction (the gateway's
    /// configuration turns it on by default).
    pub fn new(target: Target) -> SinkConfig {
        SinkConfig {
            target,
            also_stdout: false,
            hash_chain: true,
            signer: None,
            queue: 65_536,
            overflow: Overflow::Block,
            fsync: Fsync::Interval(Duration::from_secs(1)),
            checkpoint_every: 10_000,
            checkpoint_interval: Duration::from_secs(60),
            redactor: None,
        }
    }
}

/// How long a busy writer lets events gather between batches.
const BATCH_PAUSE: Duration = Duration::from_millis(10);

enum Message {
    Event(AuditEvent),
    Reopen,
    Flush(mpsc::Sender<()>),
    Close,
}

/// The sink: a queue and its writer thread.
#[derive(Debug)]
pub struct FileSink {
    tx: SyncSender<Message>,
    overflow: Overflow,
    shared: Arc<Shared>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Debug, Default)]
struct Shared {
    queued: AtomicUsize,
    dropped: AtomicU64,
    written: AtomicU64,
    errors: AtomicU64,
    /// Writes to the target fail (the writer retries).
    failing: AtomicBool,
    /// `close` was called.
    closing: AtomicBool,
    /// Written events, emptied, for request threads to fill again: memory allocated by one
    /// thread and freed by another makes both wait on the allocator's locks.
    spare: Mutex<Vec<AuditEvent>>,
}

/// How many spent events the sink keeps for reuse (a burst beyond is freed).
const SPARE_EVENTS: usize = 256;

impl FileSink {
    /// Opens the target (a file is created if missing and appended to, its chain resumed) and
    /// starts the writer.
    pub fn start(config: SinkConfig) -> io::Result<FileSink> {
        let (out, chain) = open(&config.target, config.hash_chain)?;
        let overflow = config.overflow;
        let (tx, rx) = mpsc::sync_channel(config.queue.max(1));
        let shared = Arc::new(Shared::default());
        let also_stdout = config.also_stdout && matches!(config.target, Target::File(_));
        let committed = out.len().unwrap_or(0);
        metrics::gauge!(names::WRITABLE).set(1.0);
        let mut writer = Writer {
            out,
            pending: Vec::with_capacity(WRITE_AT),
            pending_events: 0,
            committed,
            failing: None,
            closing_since: None,
            lost: 0,
            stdout: also_stdout.then(io::stdout),
            chain,
            since_checkpoint: 0,
            last_checkpoint: Instant::now(),
            dirty_since: None,
            reported_drops: 0,
            batch_written: 0,
            line: Vec::with_capacity(1024),
            spent: Vec::with_capacity(SPARE_EVENTS),
            shared: shared.clone(),
            config,
        };
        let worker = std::thread::Builder::new()
            .name("warden-audit".into())
            .spawn(move || writer.run(rx))?;
        Ok(FileSink {
            tx,
            overflow,
            shared,
            worker: Mutex::new(Some(worker)),
        })
    }

    /// Reopens the file (after an external rotation moved it away).
    pub fn reopen(&self) {
        let _ = self.tx.send(Message::Reopen);
    }

    /// Waits until every event queued before the call is written and flushed.
    pub fn flush(&self) {
        let (ack, done) = mpsc::channel();
        if self.tx.send(Message::Flush(ack)).is_ok() {
            let _ = done.recv();
        }
    }

    /// Writes everything queued, a final checkpoint, syncs, and stops the writer. Events
    /// recorded afterwards are dropped and counted.
    pub fn close(&self) {
        // Seen by a writer that holds the queue while its target fails: it waits a bounded
        // time, then gives up what it could not write.
        self.shared.closing.store(true, Ordering::Relaxed);
        let _ = self.tx.send(Message::Close);
        let worker = self.worker.lock().ok().and_then(|mut w| w.take());
        if let Some(worker) = worker {
            let _ = worker.join();
        }
    }

    /// Events dropped so far (`Overflow::Drop`, or after `close`).
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Events written so far.
    pub fn written(&self) -> u64 {
        self.shared.written.load(Ordering::Relaxed)
    }

    /// Write and sync errors so far.
    pub fn errors(&self) -> u64 {
        self.shared.errors.load(Ordering::Relaxed)
    }

    /// Whether the target takes what is written (false while writes fail and are retried).
    pub fn writable(&self) -> bool {
        !self.shared.failing.load(Ordering::Relaxed)
    }

    /// What a full queue does.
    pub fn overflow(&self) -> Overflow {
        self.overflow
    }

    fn count_drop(&self) {
        self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(names::DROPPED).increment(1);
    }
}

impl AuditSink for FileSink {
    fn event_at(
        &self,
        time: SystemTime,
        action: Action,
        outcome: Outcome,
        reason: Option<&'static str>,
    ) -> AuditEvent {
        let spare = self
            .shared
            .spare
            .lock()
            .ok()
            .and_then(|mut spare| spare.pop());
        match spare {
            Some(mut event) => {
                event.begin(time, action, outcome, reason);
                event
            }
            None => AuditEvent::at(time, action, outcome, reason),
        }
    }

    fn record(&self, event: AuditEvent) {
        let message = Message::Event(event);
        self.shared.queued.fetch_add(1, Ordering::Relaxed);
        let sent = match self.overflow {
            Overflow::Block => self.tx.send(message).is_ok(),
            Overflow::Drop => self.tx.try_send(message).is_ok(),
        };
        if !sent {
            self.shared.queued.fetch_sub(1, Ordering::Relaxed);
            self.count_drop();
        }
    }
}

impl Drop for FileSink {
    fn drop(&mut self) {
        self.close();
    }
}

/// An open target.
enum Output {
    Stdout(io::Stdout),
    /// A file and the identity (device, inode) it had when opened: a path that names another
    /// file, or none, means it was rotated or removed.
    File {
        file: File,
        id: (u64, u64),
    },
}

impl Output {
    /// The file's length (0 for standard output).
    fn len(&self) -> io::Result<u64> {
        match self {
            Output::Stdout(_) => Ok(0),
            Output::File { file, .. } => file.metadata().map(|m| m.len()),
        }
    }

    /// Takes the file's exclusive advisory lock (shared with [`append`]); waits for it.
    fn lock(&self) -> io::Result<()> {
        match self {
            Output::Stdout(_) => Ok(()),
            Output::File { file, .. } => file.lock(),
        }
    }

    fn unlock(&self) -> io::Result<()> {
        match self {
            Output::Stdout(_) => Ok(()),
            Output::File { file, .. } => file.unlock(),
        }
    }

    /// Writes as much of `buf` as the target takes: how much, and the error that stopped it.
    fn write_prefix(&mut self, buf: &[u8]) -> (usize, io::Result<()>) {
        match self {
            Output::Stdout(out) => write_prefix(&mut out.lock(), buf),
            Output::File { file, .. } => write_prefix(file, buf),
        }
    }

    /// Cuts the file back to `len` (what a failed write left of a record); standard output
    /// cannot be.
    fn truncate(&self, len: u64) -> io::Result<()> {
        match self {
            Output::Stdout(_) => Err(io::ErrorKind::Unsupported.into()),
            Output::File { file, .. } => file.set_len(len),
        }
    }

    /// Syncs a file to disk (standard output is flushed).
    fn sync(&mut self) -> io::Result<()> {
        match self {
            Output::Stdout(out) => out.flush(),
            Output::File { file, .. } => file.sync_data(),
        }
    }
}

/// Writes `buf` until done or an error: how much was written, and the error.
fn write_prefix(out: &mut impl Write, buf: &[u8]) -> (usize, io::Result<()>) {
    let mut done = 0;
    while done < buf.len() {
        match out.write(&buf[done..]) {
            Ok(0) => return (done, Err(io::ErrorKind::WriteZero.into())),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (done, Err(e)),
        }
    }
    (done, Ok(()))
}

#[cfg(unix)]
fn identity(meta: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

#[cfg(not(unix))]
fn identity(_: &std::fs::Metadata) -> (u64, u64) {
    (0, 0)
}

/// Whether the open file was deleted (no name left: what is written to it is lost).
#[cfg(unix)]
fn unlinked(file: &File) -> bool {
    use std::os::unix::fs::MetadataExt;
    file.metadata().is_ok_and(|m| m.nlink() == 0)
}

#[cfg(not(unix))]
fn unlinked(_: &File) -> bool {
    false
}

/// The open target and the chain to continue.
fn open(target: &Target, hash_chain: bool) -> io::Result<(Output, Chain)> {
    match target {
        Target::Stdout => Ok((Output::Stdout(io::stdout()), Chain::new())),
        Target::File(path) => {
            let mut file = OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                .open(path)?;
            let chain = if hash_chain {
                resume(&mut file)?
            } else {
                Chain::new()
            };
            let id = identity(&file.metadata()?);
            Ok((Output::File { file, id }, chain))
        }
    }
}

/// The chain after the file's last complete record. A last line cut by a crash is closed with a
/// newline and left as it is: `verify` shows it.
fn resume(file: &mut File) -> io::Result<Chain> {
    let len = file.seek(SeekFrom::End(0))?;
    if len == 0 {
        return Ok(Chain::new());
    }
    // Records are far below 64 KiB; reading the tail finds the last one.
    let start = len.saturating_sub(64 * 1024);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::with_capacity((len - start) as usize);
    file.read_to_end(&mut tail)?;
    if tail.last() != Some(&b'\n') {
        file.write_all(b"\n")?;
    }
    let text = String::from_utf8_lossy(&tail);
    let chain = text
        .lines()
        .rev()
        .find_map(|line| Chain::resume(line).ok())
        .unwrap_or_default();
    Ok(chain)
}

/// Appends `events` to the trail at `config`'s target from a process other than the gateway's
/// (an operator command), synchronously: under the file's lock, continuing its chain, with a
/// signed checkpoint after them when a key is configured, synced before it returns. With a
/// standard-output target the lines go to standard error (a command's standard output is its
/// answer, such as a new key).
pub fn append(config: &SinkConfig, events: Vec<AuditEvent>) -> io::Result<()> {
    let path = match &config.target {
        Target::File(path) => path,
        Target::Stdout => {
            let mut chain = Chain::new();
            let mut err = io::stderr().lock();
            for mut event in events {
                if let Some(redactor) = &config.redactor {
                    redactor.apply(&mut event);
                }
                let line = if config.hash_chain {
                    chain.seal(event)
                } else {
                    event.to_line()
                };
                writeln!(err, "{line}")?;
            }
            return Ok(());
        }
    };
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)?;
    lock_within(&file, APPEND_LOCK_WAIT)?;
    let mut chain = if config.hash_chain {
        resume(&mut file)?
    } else {
        Chain::new()
    };
    let mut text = String::new();
    for mut event in events {
        if let Some(redactor) = &config.redactor {
            redactor.apply(&mut event);
        }
        if config.hash_chain {
            text.push_str(&chain.seal(event));
        } else {
            text.push_str(&event.to_line());
        }
        text.push('\n');
    }
    if let (Some(signer), true) = (&config.signer, config.hash_chain) {
        let mut event = AuditEvent::new(Action::Checkpoint, Outcome::Success, None);
        event.set("warden.checkpoint", signer.checkpoint(&chain));
        text.push_str(&chain.seal(event));
        text.push('\n');
    }
    file.write_all(text.as_bytes())?;
    file.sync_data()?;
    file.unlock()
}

/// How often a failed write is tried again.
const RETRY: Duration = Duration::from_millis(250);

/// How long closing waits for a failing target before it gives up what it could not write.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Sealed lines are handed to the target once this many bytes wait (and after every batch).
const WRITE_AT: usize = 64 * 1024;

/// How long a command waits for the gateway's writer to release the file.
const APPEND_LOCK_WAIT: Duration = Duration::from_secs(10);

/// Takes `file`'s exclusive lock, waiting `wait` at most: the gateway's writer keeps it while
/// its writes fail (a full disk), and a command must not hang on that.
fn lock_within(file: &File, wait: Duration) -> io::Result<()> {
    let deadline = Instant::now() + wait;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(()),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "the audit file stayed locked for {} s (can the gateway write it? a full \
                         disk makes it hold the lock until its records are written)",
                        wait.as_secs()
                    ),
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
    }
}

struct Writer {
    out: Output,
    /// Sealed lines not yet written. Only whole lines are added, and a failed write is cut back
    /// to the last whole one, so the target never holds half a record that more is written
    /// after.
    pending: Vec<u8>,
    /// Events (not checkpoints) in `pending`, for the written count.
    pending_events: u64,
    /// The file's length after this writer's last write (another writer appended when it
    /// differs).
    committed: u64,
    /// Since when writing has failed (disk full, file system gone): `pending` is tried again
    /// every `RETRY`; with `Overflow::Block` nothing more is taken from the queue meanwhile.
    failing: Option<Instant>,
    /// Since when closing has waited for a failing target.
    closing_since: Option<Instant>,
    /// Events dropped because the target failed (`Overflow::Drop`), not yet in the trail.
    lost: u64,
    /// Standard output besides a file target (`SinkConfig::also_stdout`).
    stdout: Option<io::Stdout>,
    chain: Chain,
    since_checkpoint: u64,
    last_checkpoint: Instant,
    /// When the first write not yet synced happened.
    dirty_since: Option<Instant>,
    /// Drops already recorded in the trail.
    reported_drops: u64,
    /// Events written in this batch, for the metric.
    batch_written: u64,
    /// The line being written, kept for the next (one buffer for the writer's life).
    line: Vec<u8>,
    /// Events written in this batch, handed back to `Shared::spare` after it.
    spent: Vec<AuditEvent>,
    shared: Arc<Shared>,
    config: SinkConfig,
}

impl Writer {
    fn run(&mut self, rx: Receiver<Message>) {
        let tick = match self.config.fsync {
            Fsync::Interval(every) => every.min(self.config.checkpoint_interval),
            _ => self.config.checkpoint_interval,
        }
        .max(Duration::from_millis(10));
        loop {
            if self.failing.is_some() && self.config.overflow == Overflow::Block {
                // Nothing more is taken from the queue until what was sealed is written: when
                // it is full, requests wait, and no event is lost.
                if self.hold(&rx) {
                    return;
                }
                continue;
            }
            let first = match rx.recv_timeout(tick) {
                Ok(message) => Some(message),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => Some(Message::Close),
            };
            // Another writer (an operator command) may have appended since this one's last
            // batch: lock the file, and continue the chain from its real head.
            if let Err(e) = self.out.lock() {
                self.error("lock", &e);
            }
            self.check_path();
            self.catch_up();
            // Drops since the last batch (or a recovery just now) go before this batch's
            // events, so the trail still ends with its closing record.
            self.report_drops();
            let mut acks = Vec::new();
            let mut closing = false;
            let mut events = 0usize;
            // Drain what is queued: one write for the whole batch.
            for message in first
                .into_iter()
                .chain(std::iter::from_fn(|| rx.try_recv().ok()))
            {
                match message {
                    Message::Event(event) => {
                        self.shared.queued.fetch_sub(1, Ordering::Relaxed);
                        self.write(event);
                        events += 1;
                    }
                    Message::Reopen => self.reopen("signal"),
                    Message::Flush(ack) => acks.push(ack),
                    Message::Close => {
                        closing = true;
                        break;
                    }
                }
                if self.failing.is_some() && self.config.overflow == Overflow::Block {
                    break;
                }
            }
            if !closing {
                self.report_drops();
            }
            if self.config.signer.is_some()
                && self.since_checkpoint > 0
                && self.failing.is_none()
                && (closing || self.last_checkpoint.elapsed() >= self.config.checkpoint_interval)
            {
                self.checkpoint();
            }
            self.flush(closing);
            if closing {
                self.finish();
            }
            self.release();
            metrics::gauge!(names::QUEUE_DEPTH)
                .set(self.shared.queued.load(Ordering::Relaxed) as f64);
            self.recycle();
            // Once per batch: a metric update is a map lookup.
            metrics::counter!(names::WRITTEN).increment(std::mem::take(&mut self.batch_written));
            for ack in acks {
                let _ = ack.send(());
            }
            if closing {
                return;
            }
            if events > 0 {
                // Busy: let events gather instead of being woken for each one. While the writer
                // sleeps, a sender only queues (no wake-up, no context switch); the next batch
                // is one write.
                std::thread::sleep(BATCH_PAUSE);
            }
        }
    }

    fn write(&mut self, event: AuditEvent) {
        if self.failing.is_some() {
            // `Overflow::Drop` with a failing target: dropped and counted like a full queue's
            // (never sealed, so the chain holds only what is written).
            self.lost += 1;
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(names::DROPPED).increment(1);
            self.keep(event);
            return;
        }
        self.seal(event);
    }

    /// Redacts, seals and queues `event` for the target.
    fn seal(&mut self, mut event: AuditEvent) {
        if let Some(redactor) = &self.config.redactor {
            redactor.apply(&mut event);
        }
        let mut line = std::mem::take(&mut self.line);
        line.clear();
        if self.config.hash_chain {
            self.chain.seal_into(&mut event, &mut line);
        } else {
            event.write_canonical(&mut line, "");
        }
        self.pending_events += 1;
        self.emit(&line);
        self.line = line;
        self.keep(event);
        self.dirty_since.get_or_insert_with(Instant::now);
        self.since_checkpoint += 1;
        if self.config.signer.is_some() && self.since_checkpoint >= self.config.checkpoint_every {
            self.checkpoint();
        }
    }

    /// Keeps a written event's storage for reuse.
    fn keep(&mut self, event: AuditEvent) {
        if event.reusable() && self.spent.len() < SPARE_EVENTS {
            self.spent.push(event);
        }
    }

    /// Hands the batch's spent events back for reuse, as many as the spare list holds.
    fn recycle(&mut self) {
        if self.spent.is_empty() {
            return;
        }
        if let Ok(mut spare) = self.shared.spare.lock() {
            let room = SPARE_EVENTS.saturating_sub(spare.len());
            let keep = self.spent.len().min(room);
            spare.extend(self.spent.drain(..keep));
        }
        // The rest is freed here, outside the lock.
        self.spent.clear();
    }

    fn checkpoint(&mut self) {
        let Some(signature) = self
            .config
            .signer
            .as_ref()
            .map(|s| s.checkpoint(&self.chain))
        else {
            return;
        };
        let mut event = AuditEvent::new(Action::Checkpoint, Outcome::Success, None);
        event.set("warden.checkpoint", signature);
        // A checkpoint is a record like any other (its own write does not count toward the next).
        self.since_checkpoint = 0;
        self.last_checkpoint = Instant::now();
        let line = self.chain.seal(event);
        self.emit(line.as_bytes());
    }

    /// Adds one sealed line for the target and, with `also_stdout`, writes it to standard
    /// output too (the same line: one chain, read by the platform's log pipeline and kept in
    /// the file).
    fn emit(&mut self, line: &[u8]) {
        if let Some(stdout) = &mut self.stdout {
            let mut lock = stdout.lock();
            if let Err(e) = lock.write_all(line).and_then(|()| lock.write_all(b"\n")) {
                drop(lock);
                self.error("write", &e);
            }
        }
        self.pending.extend_from_slice(line);
        self.pending.push(b'\n');
        if self.pending.len() >= WRITE_AT {
            self.write_pending();
        }
    }

    /// Writes the pending lines; whether all were written. The first failure is logged and
    /// turns `failing` on, the first success after it off again.
    fn write_pending(&mut self) -> bool {
        if self.pending.is_empty() {
            return self.failing.is_none();
        }
        let (written, result) = self.out.write_prefix(&self.pending);
        match result {
            Ok(()) => {
                self.committed += written as u64;
                self.pending.clear();
                let events = std::mem::take(&mut self.pending_events);
                self.count_written(events);
                if let Some(since) = self.failing.take() {
                    self.shared.failing.store(false, Ordering::Relaxed);
                    metrics::gauge!(names::WRITABLE).set(1.0);
                    tracing::warn!(
                        target: "warden::audit",
                        failed_for_ms = u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX),
                        "audit writes work again"
                    );
                }
                true
            }
            Err(error) => {
                if written > 0 && self.out.truncate(self.committed).is_err() {
                    // What the target took stays; the rest is written after it next time, so
                    // the record it cut is completed, not left half.
                    let lines = self.pending[..written]
                        .iter()
                        .filter(|&&b| b == b'\n')
                        .count() as u64;
                    self.pending.drain(..written);
                    self.committed += written as u64;
                    let lines = lines.min(self.pending_events);
                    self.pending_events -= lines;
                    self.count_written(lines);
                }
                self.shared.errors.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(names::ERRORS).increment(1);
                if self.failing.is_none() {
                    self.failing = Some(Instant::now());
                    self.shared.failing.store(true, Ordering::Relaxed);
                    metrics::gauge!(names::WRITABLE).set(0.0);
                    let effect = match self.config.overflow {
                        Overflow::Block => "requests wait once the queue is full",
                        Overflow::Drop => "events are dropped and counted",
                    };
                    tracing::error!(
                        target: "warden::audit",
                        %error,
                        effect,
                        "audit write failed; retrying every 250 ms"
                    );
                }
                false
            }
        }
    }

    fn count_written(&mut self, events: u64) {
        self.shared.written.fetch_add(events, Ordering::Relaxed);
        self.batch_written += events;
    }

    /// `Overflow::Block` with a failing target: tries again after `RETRY`, taking nothing from
    /// the queue. At close it waits `CLOSE_GRACE` at most, then gives up what is left (counted
    /// and logged): a limit on every wait. Whether the writer is done.
    fn hold(&mut self, rx: &Receiver<Message>) -> bool {
        // The queue filling up is what operators watch meanwhile.
        metrics::gauge!(names::QUEUE_DEPTH).set(self.shared.queued.load(Ordering::Relaxed) as f64);
        std::thread::sleep(RETRY);
        self.check_path();
        if self.write_pending() {
            return false;
        }
        if !self.shared.closing.load(Ordering::Relaxed) {
            return false;
        }
        let since = *self.closing_since.get_or_insert_with(Instant::now);
        if since.elapsed() < CLOSE_GRACE {
            return false;
        }
        let mut lost = 0;
        loop {
            match rx.recv() {
                Ok(Message::Event(_)) => {
                    self.shared.queued.fetch_sub(1, Ordering::Relaxed);
                    lost += 1;
                }
                Ok(Message::Flush(ack)) => {
                    let _ = ack.send(());
                }
                Ok(Message::Reopen) => {}
                Ok(Message::Close) | Err(_) => break,
            }
        }
        self.abandon(lost);
        true
    }

    /// Closing: while the target fails, tries again for `CLOSE_GRACE`, then gives up.
    fn finish(&mut self) {
        let since = Instant::now();
        while self.failing.is_some() {
            if since.elapsed() >= CLOSE_GRACE {
                return self.abandon(0);
            }
            std::thread::sleep(RETRY);
            self.check_path();
            if self.write_pending() {
                self.flush(true);
            }
        }
    }

    /// Gives up the pending lines and `queued` more events at close, loudly.
    fn abandon(&mut self, queued: u64) {
        let lost = std::mem::take(&mut self.pending_events) + queued;
        self.pending.clear();
        self.shared.dropped.fetch_add(lost, Ordering::Relaxed);
        metrics::counter!(names::DROPPED).increment(lost);
        tracing::error!(
            target: "warden::audit",
            lost,
            "the audit target still failed at shutdown: events were not written"
        );
    }

    /// Releases the file's lock after a batch, unless sealed lines still wait for it: another
    /// writer appending then would fork the chain.
    fn release(&mut self) {
        if self.pending.is_empty()
            && let Err(e) = self.out.unlock()
        {
            self.error("unlock", &e);
        }
    }

    /// After another writer appended: the chain from the file's last record.
    fn catch_up(&mut self) {
        if !self.pending.is_empty() {
            // The lock was kept since those lines were sealed: nobody else appended.
            return;
        }
        let Output::File { file, .. } = &mut self.out else {
            return;
        };
        let len = match file.metadata() {
            Ok(meta) => meta.len(),
            Err(e) => return self.error("stat", &e),
        };
        if len == self.committed {
            return;
        }
        if self.config.hash_chain {
            match resume(file) {
                Ok(chain) => self.chain = chain,
                Err(e) => return self.error("read", &e),
            }
        }
        self.committed = file.metadata().map_or(len, |m| m.len());
    }

    /// Notices a file moved away or deleted under the writer (a rotation without the signal,
    /// an operator freeing space) and opens a new one at the path: records are never written
    /// on into a file nobody can find.
    fn check_path(&mut self) {
        let (Target::File(path), Output::File { file, id }) = (&self.config.target, &self.out)
        else {
            return;
        };
        match std::fs::metadata(path) {
            Ok(meta) if identity(&meta) == *id => return,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            // Unreadable for another reason: the next write says what.
            Err(_) => return,
        }
        let reason = if unlinked(file) {
            tracing::error!(
                target: "warden::audit",
                path = %path.display(),
                "the audit file was deleted while open; what was written to it since the last \
                 check is gone, and a new file starts at its path"
            );
            "file_deleted"
        } else {
            tracing::warn!(
                target: "warden::audit",
                path = %path.display(),
                "the audit file was moved away; a new file starts at its path"
            );
            "file_moved"
        };
        self.reopen(reason);
    }

    /// Starts a new file at the path (after an external rotation moved the old one away, or
    /// it was deleted); `reason` goes into the new file's first record.
    fn reopen(&mut self, reason: &'static str) {
        let Target::File(path) = &self.config.target else {
            return;
        };
        let deleted = match &self.out {
            Output::File { file, id } => {
                let same = std::fs::metadata(path).is_ok_and(|m| identity(&m) == *id);
                if same {
                    // Nothing moved (a signal after the writer noticed the rotation itself).
                    return;
                }
                unlinked(file)
            }
            Output::Stdout(_) => return,
        };
        if !deleted {
            // The old file, wherever it was moved, gets everything before the new one starts,
            // and ends with a signed checkpoint: an archived file verifies on its own. What it
            // does not take goes to the new file.
            if self.config.signer.is_some() && self.since_checkpoint > 0 && self.failing.is_none() {
                self.checkpoint();
            }
            if self.write_pending()
                && let Err(e) = self.out.sync()
            {
                self.error("sync", &e);
            }
        }
        match open(&self.config.target, false) {
            Ok((out, _)) => {
                // The batch in progress holds the old file's lock; the new file is locked for
                // the rest of it.
                if let Err(e) = out.lock() {
                    self.error("lock", &e);
                }
                self.committed = out.len().unwrap_or(0);
                self.out = out;
                // The new file starts by linking to the old one's last record (after what the
                // old one did not take).
                // Never dropped, even while failing: it is the new file's link to the old.
                self.seal(AuditEvent::new(
                    Action::Reopened,
                    Outcome::Success,
                    Some(reason),
                ));
            }
            Err(e) => self.error("reopen", &e),
        }
    }

    /// Records in the trail how many events were dropped since the last such record: by a
    /// full queue, and by a failing target.
    fn report_drops(&mut self) {
        if self.failing.is_some() {
            return;
        }
        let dropped = self.shared.dropped.load(Ordering::Relaxed);
        if dropped <= self.reported_drops {
            return;
        }
        let lost = std::mem::take(&mut self.lost);
        let full = (dropped - self.reported_drops).saturating_sub(lost);
        self.reported_drops = dropped;
        for (count, reason) in [(full, "queue_full"), (lost, "write_failed")] {
            if count > 0 {
                let mut event = AuditEvent::new(Action::Dropped, Outcome::Failure, Some(reason));
                event.set("warden.audit.dropped", count);
                self.write(event);
            }
        }
    }

    fn flush(&mut self, closing: bool) {
        if let Some(Err(e)) = self.stdout.as_mut().map(|s| s.flush()) {
            self.error("flush", &e);
        }
        if !self.write_pending() {
            return;
        }
        let due = match (self.config.fsync, self.dirty_since) {
            (_, None) => false,
            (Fsync::Every, Some(_)) => true,
            (Fsync::Interval(every), Some(since)) => closing || since.elapsed() >= every,
            (Fsync::Never, Some(_)) => false,
        };
        if due {
            if let Err(e) = self.out.sync() {
                self.error("sync", &e);
            }
            self.dirty_since = None;
        }
    }

    fn error(&self, what: &'static str, error: &io::Error) {
        self.shared.errors.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(names::ERRORS).increment(1);
        tracing::error!(target: "warden::audit", %error, operation = what, "audit write failed");
    }
}

#[cfg(test)]
mod tests {
    use super::super::chain::{self, Problem};
    use super::*;
    use serde_json::Value;
    use std::path::Path;

    #[test]
    fn written_events_are_reused_emptied() {
        let path = dir("reuse").join("audit.jsonl");
        let sink = FileSink::start(SinkConfig::new(Target::File(path.clone()))).expect("sink");
        let at = std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        // All made before any is written: none can be a reused one yet.
        let events: Vec<AuditEvent> = (0..10)
            .map(|n| {
                let mut event =
                    sink.event_at(at, Action::Request, Outcome::Failure, Some("forbidden"));
                event
                    .set_text("user.id", "alice")
                    .set_display("url.path", format_args!("/items/{n}"));
                event
            })
            .collect();
        for event in events {
            sink.record(event);
        }
        sink.flush();
        let spare = || sink.shared.spare.lock().expect("lock").len();
        assert_eq!(spare(), 10);
        // A reused event holds nothing of the request it described.
        let reused = sink.event_at(at, Action::Request, Outcome::Success, None);
        assert_eq!(spare(), 9);
        assert_eq!(
            reused,
            AuditEvent::at(at, Action::Request, Outcome::Success, None)
        );
        sink.record(reused);
        sink.record(shutdown());
        sink.close();
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text.matches("alice").count(), 10);
        assert_eq!(chain::verify([text.as_str()], None).problem, None);
    }

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("warden-audit-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        dir
    }

    fn request(n: u64) -> AuditEvent {
        let mut event = AuditEvent::new(Action::Request, Outcome::Success, None);
        event.set("url.path", format!("/items/{n}"));
        event
    }

    fn shutdown() -> AuditEvent {
        AuditEvent::new(Action::Shutdown, Outcome::Success, None)
    }

    #[test]
    fn every_event_is_written_chained_and_the_chain_resumes_after_a_restart() {
        let path = dir("resume").join("audit.jsonl");
        let config = || SinkConfig::new(Target::File(path.clone()));
        let sink = FileSink::start(config()).expect("sink");
        for n in 0..100 {
            sink.record(request(n));
        }
        sink.record(shutdown());
        sink.close();
        assert_eq!((sink.written(), sink.errors()), (101, 0));
        let sink = FileSink::start(config()).expect("restarted");
        sink.record(request(100));
        sink.record(shutdown());
        sink.close();
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text.lines().count(), 103);
        let report = chain::verify([text.as_str()], None);
        assert_eq!(report.problem, None);
        assert_eq!(report.head.map(|h| h.0), Some(103));
    }

    #[test]
    fn close_writes_everything_queued_and_a_final_signed_checkpoint() {
        let path = dir("close").join("audit.jsonl");
        let key = chain::generate_signing_key().expect("key");
        let signer = Signer::from_pkcs8(&key).expect("signer");
        let public = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            signer.public_key(),
        )
        .expect("base64");
        let mut config = SinkConfig::new(Target::File(path.clone()));
        config.signer = Some(Arc::new(signer));
        config.checkpoint_every = 40;
        let sink = Arc::new(FileSink::start(config).expect("sink"));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let sink = sink.clone();
                std::thread::spawn(move || {
                    for n in 0..250 {
                        sink.record(request(t * 1000 + n));
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("thread");
        }
        sink.record(shutdown());
        sink.close();
        let text = std::fs::read_to_string(&path).expect("read");
        let report = chain::verify([text.as_str()], Some(&public));
        assert_eq!(report.problem, None);
        // 1,001 events, a checkpoint after every 40 records and one at the end.
        assert_eq!(sink.written(), 1001);
        assert_eq!(report.checkpoints, 1001 / 40 + 1);
        assert_eq!(report.records, 1001 + report.checkpoints);
        // After close, events are dropped and counted, never written.
        sink.record(request(1));
        assert_eq!(sink.dropped(), 1);
    }

    #[test]
    fn drop_mode_counts_exactly_what_it_dropped_and_says_so_in_the_trail() {
        let path = dir("drop").join("audit.jsonl");
        let mut config = SinkConfig::new(Target::File(path.clone()));
        config.queue = 4;
        config.overflow = Overflow::Drop;
        let sink = FileSink::start(config).expect("sink");
        for n in 0..5_000 {
            sink.record(request(n));
        }
        sink.flush();
        sink.record(shutdown());
        sink.close();
        let text = std::fs::read_to_string(&path).expect("read");
        let written_requests = text.matches("\"action\":\"request\"").count() as u64;
        let reported: u64 = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| v.pointer("/warden/audit/dropped").and_then(Value::as_u64))
            .sum();
        assert!(sink.dropped() > 0, "a queue of 4 cannot hold 5,000 at once");
        assert_eq!(written_requests + sink.dropped(), 5_000);
        assert_eq!(reported, sink.dropped());
        assert_eq!(chain::verify([text.as_str()], None).problem, None);
    }

    #[test]
    fn a_reopened_file_continues_the_chain_of_the_rotated_one() {
        let dir = dir("rotate");
        let path = dir.join("audit.jsonl");
        let sink = FileSink::start(SinkConfig::new(Target::File(path.clone()))).expect("sink");
        sink.record(request(1));
        sink.flush();
        std::fs::rename(&path, dir.join("audit.jsonl.1")).expect("rotate");
        sink.reopen();
        sink.record(request(2));
        sink.record(shutdown());
        sink.close();
        assert_eq!(sink.errors(), 0);
        let old = std::fs::read_to_string(dir.join("audit.jsonl.1")).expect("old");
        let new = std::fs::read_to_string(&path).expect("new");
        assert_eq!(old.lines().count(), 1);
        assert!(
            new.lines()
                .next()
                .is_some_and(|l| l.contains("audit-reopened"))
        );
        assert_eq!(
            chain::verify([old.as_str(), new.as_str()], None).problem,
            None
        );
        // The new file alone is a continuation; without its predecessor nothing is missing
        // from it, but the pair out of order shows the seam.
        assert!(matches!(
            chain::verify([new.as_str(), old.as_str()], None).problem,
            Some(Problem::Reordered { .. })
        ));
    }

    #[test]
    fn a_command_appending_beside_the_running_writer_keeps_one_chain() {
        let path = dir("append").join("audit.jsonl");
        let key = chain::generate_signing_key().expect("key");
        let signer = Arc::new(Signer::from_pkcs8(&key).expect("signer"));
        let public = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            signer.public_key(),
        )
        .expect("base64");
        let mut config = SinkConfig::new(Target::File(path.clone()));
        config.signer = Some(signer);
        let sink = Arc::new(FileSink::start(config.clone()).expect("sink"));
        let writer = {
            let sink = sink.clone();
            std::thread::spawn(move || {
                for n in 0..2_000 {
                    sink.record(request(n));
                }
            })
        };
        // Meanwhile, ten commands (each its own open file, as another process has).
        for n in 0..10 {
            let mut event = AuditEvent::new(Action::ApiKeyCreated, Outcome::Success, None);
            event.set("warden.key.id", format!("key-{n}"));
            append(&config, vec![event]).expect("append");
        }
        writer.join().expect("writer");
        sink.record(shutdown());
        sink.close();
        assert_eq!(sink.errors(), 0);
        let text = std::fs::read_to_string(&path).expect("read");
        let report = chain::verify([text.as_str()], Some(&public));
        assert_eq!(report.problem, None);
        assert_eq!(text.matches("api-key-created").count(), 10);
        assert_eq!(text.matches("\"action\":\"request\"").count(), 2_000);
        // Each command signed a checkpoint after its event, and the writer one at the end.
        assert!(report.checkpoints >= 11, "{}", report.checkpoints);
    }

    #[test]
    fn a_line_cut_by_a_crash_stays_visible_and_the_chain_goes_on() {
        let path = dir("crash").join("audit.jsonl");
        let sink = FileSink::start(SinkConfig::new(Target::File(path.clone()))).expect("sink");
        sink.record(request(1));
        sink.record(request(2));
        sink.close();
        // A crash mid-write: half of a record.
        let mut file = OpenOptions::new().append(true).open(&path).expect("open");
        file.write_all(b"{\"@timestamp\":\"2026").expect("write");
        drop(file);
        let sink = FileSink::start(SinkConfig::new(Target::File(path.clone()))).expect("sink");
        sink.record(request(3));
        sink.record(shutdown());
        sink.close();
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(
            chain::verify([text.as_str()], None).problem,
            Some(Problem::Unreadable { line: 3 })
        );
        let after: String = text.lines().skip(3).map(|l| format!("{l}\n")).collect();
        assert_eq!(chain::verify([after.as_str()], None).problem, None);
    }

    /// A path whose writes fail with ENOSPC (a link to /dev/full), then a real file there.
    /// One test at a time: every writer on /dev/full shares its one file lock, and a failing
    /// writer keeps it.
    #[cfg(target_os = "linux")]
    fn full_disk(name: &str) -> (PathBuf, impl Fn(), std::sync::MutexGuard<'static, ()>) {
        static ONE: Mutex<()> = Mutex::new(());
        let guard = ONE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let dir = dir(name);
        let path = dir.join("audit.jsonl");
        std::os::unix::fs::symlink("/dev/full", &path).expect("link");
        let freed = {
            let (dir, path) = (dir.clone(), path.clone());
            move || {
                // Space again: a real file takes the path (renamed over the link at once).
                let real = dir.join("real.jsonl");
                std::fs::write(&real, b"").expect("file");
                std::fs::rename(&real, &path).expect("rename");
            }
        };
        (path, freed, guard)
    }

    #[cfg(target_os = "linux")]
    fn records(path: &Path) -> (String, u64, u64) {
        let text = std::fs::read_to_string(path).expect("read");
        let requests = text.matches("\"action\":\"request\"").count() as u64;
        let reported = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| v.pointer("/warden/audit/dropped").and_then(Value::as_u64))
            .sum();
        (text, requests, reported)
    }

    #[cfg(target_os = "linux")]
    fn wait_for(what: &str, done: impl Fn() -> bool) {
        for _ in 0..500 {
            if done() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("never: {what}");
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_full_disk_in_block_mode_holds_the_queue_then_writes_every_event() {
        let (path, freed, _one) = full_disk("full-block");
        let mut config = SinkConfig::new(Target::File(path.clone()));
        config.queue = 8;
        let sink = Arc::new(FileSink::start(config).expect("sink"));
        let producer = {
            let sink = sink.clone();
            // More than one batch's worth (`WRITE_AT`): the writer cannot take them all before
            // its first write fails.
            std::thread::spawn(move || {
                for n in 0..1000 {
                    sink.record(request(n));
                }
            })
        };
        wait_for("the write fails", || !sink.writable());
        // The queue (8) is full and the producer waits: nothing was dropped, nothing written.
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            !producer.is_finished(),
            "a full queue makes the caller wait"
        );
        assert_eq!((sink.dropped(), sink.written()), (0, 0));
        assert!(sink.errors() >= 1);
        freed();
        producer.join().expect("producer");
        sink.record(shutdown());
        sink.close();
        assert!(sink.writable());
        assert_eq!((sink.dropped(), sink.written()), (0, 1002));
        let (text, requests, _) = records(&path);
        assert_eq!(requests, 1000);
        // The new file starts with what the full one could not take, then the link record.
        assert_eq!(text.matches("\"reason\":\"file_moved\"").count(), 1);
        assert_eq!(chain::verify([text.as_str()], None).problem, None);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_full_disk_in_drop_mode_drops_counts_and_records_the_count() {
        let (path, freed, _one) = full_disk("full-drop");
        let mut config = SinkConfig::new(Target::File(path.clone()));
        config.overflow = Overflow::Drop;
        let sink = FileSink::start(config).expect("sink");
        sink.record(request(0));
        wait_for("the write fails", || !sink.writable());
        for n in 1..200 {
            sink.record(request(n));
        }
        sink.flush();
        assert!(sink.dropped() >= 199, "{}", sink.dropped());
        freed();
        wait_for("writes work again", || sink.writable());
        for n in 200..300 {
            sink.record(request(n));
        }
        sink.record(shutdown());
        sink.close();
        let (text, requests, reported) = records(&path);
        assert_eq!(requests + sink.dropped(), 300);
        assert_eq!(reported, sink.dropped());
        assert!(text.contains("\"reason\":\"write_failed\""));
        assert_eq!(chain::verify([text.as_str()], None).problem, None);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn closing_with_a_disk_that_stays_full_gives_up_in_bounded_time_and_counts_it() {
        let (path, _, _one) = full_disk("full-close");
        let sink = FileSink::start(SinkConfig::new(Target::File(path))).expect("sink");
        for n in 0..3 {
            sink.record(request(n));
        }
        wait_for("the write fails", || !sink.writable());
        let started = Instant::now();
        sink.close();
        assert!(started.elapsed() < CLOSE_GRACE + Duration::from_secs(5));
        assert_eq!((sink.written(), sink.dropped()), (0, 3));
    }

    #[test]
    fn a_deleted_file_is_noticed_and_a_new_one_continues_the_chain() {
        let path = dir("deleted").join("audit.jsonl");
        let sink = FileSink::start(SinkConfig::new(Target::File(path.clone()))).expect("sink");
        sink.record(request(1));
        sink.flush();
        std::fs::remove_file(&path).expect("remove");
        // No signal: the next batch sees the path gone.
        sink.record(request(2));
        sink.record(shutdown());
        sink.close();
        let (text, requests, _) = records(&path);
        assert_eq!(requests, 1);
        let first: Value =
            serde_json::from_str(text.lines().next().expect("a line")).expect("json");
        assert_eq!(
            first.pointer("/event/action"),
            Some(&"audit-reopened".into())
        );
        assert_eq!(first.pointer("/event/reason"), Some(&"file_deleted".into()));
        assert_eq!(chain::verify([text.as_str()], None).problem, None);
    }

    #[test]
    fn a_command_waits_a_bounded_time_for_a_held_lock() {
        let path = dir("held").join("audit.jsonl");
        let holder = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .expect("open");
        holder.lock().expect("lock");
        let other = OpenOptions::new().append(true).open(&path).expect("open");
        let error = lock_within(&other, Duration::from_millis(100)).expect_err("held");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        holder.unlock().expect("unlock");
        lock_within(&other, Duration::from_millis(100)).expect("free");
    }
}
