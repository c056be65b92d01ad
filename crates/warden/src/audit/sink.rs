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
//! external rotation) starts the new file with a record linking to the old one's last.
//!
//! Written events go back, emptied, to a short spare list that [`AuditSink::event_at`] takes
//! from: the request threads refill the writer's spent storage instead of allocating what the
//! writer thread would free.
//!
//! Operator commands (`warden keys …`) append to the same file with [`append`]. Both writers take
//! an exclusive advisory lock on the file around each batch, and the writer thread re-reads the
//! chain's head from the file when its length is not what it left: the trail stays one chain.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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
        let expected_len = out.len().unwrap_or(0);
        let mut writer = Writer {
            out,
            expected_len,
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
    File(BufWriter<File>),
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Output::Stdout(out) => out.write(buf),
            Output::File(out) => out.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::Stdout(out) => out.flush(),
            Output::File(out) => out.flush(),
        }
    }
}

impl Output {
    /// The file's length (0 for standard output).
    fn len(&self) -> io::Result<u64> {
        match self {
            Output::Stdout(_) => Ok(0),
            Output::File(out) => out.get_ref().metadata().map(|m| m.len()),
        }
    }

    /// Takes the file's exclusive advisory lock (shared with [`append`]); waits for it.
    fn lock(&self) -> io::Result<()> {
        match self {
            Output::Stdout(_) => Ok(()),
            Output::File(out) => out.get_ref().lock(),
        }
    }

    fn unlock(&self) -> io::Result<()> {
        match self {
            Output::Stdout(_) => Ok(()),
            Output::File(out) => out.get_ref().unlock(),
        }
    }

    /// Flushes and syncs a file to disk (standard output is only flushed).
    fn sync(&mut self) -> io::Result<()> {
        self.flush()?;
        match self {
            Output::Stdout(_) => Ok(()),
            Output::File(out) => out.get_ref().sync_data(),
        }
    }
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
            Ok((
                Output::File(BufWriter::with_capacity(64 * 1024, file)),
                chain,
            ))
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
    file.lock()?;
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

struct Writer {
    out: Output,
    /// The file's length after this writer's last batch (another writer appended when it
    /// differs).
    expected_len: u64,
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
            self.catch_up();
            let mut acks = Vec::new();
            let mut closing = false;
            let mut events = 0usize;
            // Drain what is queued: one flush for the whole batch.
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
                    Message::Reopen => self.reopen(),
                    Message::Flush(ack) => acks.push(ack),
                    Message::Close => {
                        closing = true;
                        break;
                    }
                }
            }
            self.report_drops();
            if self.config.signer.is_some()
                && self.since_checkpoint > 0
                && (closing || self.last_checkpoint.elapsed() >= self.config.checkpoint_interval)
            {
                self.checkpoint();
            }
            self.flush(closing);
            if let Err(e) = self.out.unlock() {
                self.error("unlock", &e);
            }
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
                // is one flush.
                std::thread::sleep(BATCH_PAUSE);
            }
        }
    }

    fn write(&mut self, mut event: AuditEvent) {
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
        let written = self.emit(&line);
        self.line = line;
        if event.reusable() && self.spent.len() < SPARE_EVENTS {
            self.spent.push(event);
        }
        match written {
            Ok(()) => {
                self.shared.written.fetch_add(1, Ordering::Relaxed);
                self.batch_written += 1;
            }
            Err(e) => self.error("write", &e),
        }
        self.dirty_since.get_or_insert_with(Instant::now);
        self.since_checkpoint += 1;
        if self.config.signer.is_some() && self.since_checkpoint >= self.config.checkpoint_every {
            self.checkpoint();
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
        if let Err(e) = self.emit(line.as_bytes()) {
            self.error("write", &e);
        }
    }

    /// Writes one line to the target and, with `also_stdout`, to standard output too (the same
    /// sealed line: one chain, read by the platform's log pipeline and kept in the file).
    fn emit(&mut self, line: &[u8]) -> io::Result<()> {
        if let Some(stdout) = &mut self.stdout {
            let mut lock = stdout.lock();
            lock.write_all(line)?;
            lock.write_all(b"\n")?;
        }
        self.out.write_all(line)?;
        self.out.write_all(b"\n")?;
        self.expected_len += line.len() as u64 + 1;
        Ok(())
    }

    /// After another writer appended: the chain from the file's last record.
    fn catch_up(&mut self) {
        let Output::File(out) = &mut self.out else {
            return;
        };
        let len = match out.get_ref().metadata() {
            Ok(meta) => meta.len(),
            Err(e) => return self.error("stat", &e),
        };
        if len == self.expected_len {
            return;
        }
        if self.config.hash_chain {
            match resume(out.get_mut()) {
                Ok(chain) => self.chain = chain,
                Err(e) => return self.error("read", &e),
            }
        }
        self.expected_len = out.get_ref().metadata().map_or(len, |m| m.len());
    }

    /// Records in the trail how many events the queue dropped since the last such record.
    fn report_drops(&mut self) {
        let dropped = self.shared.dropped.load(Ordering::Relaxed);
        if dropped > self.reported_drops {
            let mut event = AuditEvent::new(Action::Dropped, Outcome::Failure, Some("queue_full"));
            event.set("warden.audit.dropped", dropped - self.reported_drops);
            self.reported_drops = dropped;
            self.write(event);
        }
    }

    fn flush(&mut self, closing: bool) {
        let stdout = self.stdout.as_mut().map_or(Ok(()), |s| s.flush());
        if let Err(e) = self.out.flush().and(stdout) {
            self.error("flush", &e);
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

    fn reopen(&mut self) {
        // The old file, wherever it was moved, gets everything before the new one starts, and
        // ends with a signed checkpoint: an archived file verifies on its own.
        if self.config.signer.is_some() && self.since_checkpoint > 0 {
            self.checkpoint();
        }
        if let Err(e) = self.out.sync() {
            self.error("sync", &e);
        }
        match open(&self.config.target, false) {
            Ok((out, _)) => {
                // The batch in progress holds the old file's lock; the new file is locked for
                // the rest of it.
                if let Err(e) = out.lock() {
                    self.error("lock", &e);
                }
                self.expected_len = out.len().unwrap_or(0);
                self.out = out;
                // The new file starts by linking to the old one's last record.
                let event = AuditEvent::new(Action::Reopened, Outcome::Success, None);
                self.write(event);
            }
            Err(e) => self.error("reopen", &e),
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
}
