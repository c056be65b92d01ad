//! Buffered log output for `warden serve`, in the manner of nginx's `access_log … buffer=`.
//!
//! Every request produces an access-log line. Written one `write` system call per line, that was
//! ~7% of the gateway's CPU under load. Lines are instead appended to one shared buffer (a mutex
//! held only for the copy) and written in one call when the buffer passes [`FLUSH_BYTES`], at
//! least every [`FLUSH_INTERVAL`] by a background thread, and at shutdown. The trade, as with
//! nginx: a crash (not a clean shutdown) can lose the lines of the last interval.
//!
//! Ordering holds: whoever writes a batch takes the output lock before taking the batch, so
//! batches reach stdout in the order they were cut.

use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// A batch is written once it holds this many bytes.
pub const FLUSH_BYTES: usize = 64 * 1024;
/// The longest a line waits in the buffer.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(250);

type Sink = dyn Fn(&[u8]) + Send + Sync;

struct Shared {
    pending: Mutex<Vec<u8>>,
    /// Serializes batches on their way out (and owns the destination).
    output: Mutex<Box<Sink>>,
}

/// A `MakeWriter` for tracing that batches lines to standard output (see the module docs).
#[derive(Clone)]
pub struct BufferedStdout {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for BufferedStdout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufferedStdout").finish_non_exhaustive()
    }
}

impl BufferedStdout {
    fn with_sink(sink: Box<Sink>) -> Self {
        BufferedStdout {
            shared: Arc::new(Shared {
                pending: Mutex::new(Vec::with_capacity(FLUSH_BYTES)),
                output: Mutex::new(sink),
            }),
        }
    }

    /// A buffer with a background thread that flushes it every [`FLUSH_INTERVAL`].
    pub fn start() -> Self {
        let writer = BufferedStdout::with_sink(Box::new(write_out));
        let flusher = writer.clone();
        // A plain thread: it must keep flushing whatever the async runtime is doing.
        let spawned = std::thread::Builder::new()
            .name("warden-log-flush".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(FLUSH_INTERVAL);
                    flusher.flush();
                }
            });
        if spawned.is_err() {
            eprintln!("cannot start the log flusher; log lines are written at 64 KiB and at exit");
        }
        writer
    }

    /// Writes whatever is buffered.
    pub fn flush(&self) {
        let output = lock(&self.shared.output);
        let batch = {
            let mut pending = lock(&self.shared.pending);
            // An idle tick costs nothing: no swap, no fresh buffer.
            if pending.is_empty() {
                return;
            }
            std::mem::replace(&mut *pending, Vec::with_capacity(FLUSH_BYTES))
        };
        output(&batch);
    }

    fn append(&self, line: &[u8]) {
        let mut pending = lock(&self.shared.pending);
        pending.extend_from_slice(line);
        if pending.len() < FLUSH_BYTES {
            return;
        }
        drop(pending);
        self.flush();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn write_out(batch: &[u8]) {
    let mut stdout = std::io::stdout().lock();
    // Nowhere to report a failed log write but stderr; the request path never sees it.
    if stdout
        .write_all(batch)
        .and_then(|()| stdout.flush())
        .is_err()
    {
        eprintln!(
            "warden: could not write {} bytes of log output",
            batch.len()
        );
    }
}

/// One event's writer: tracing writes a formatted event through it, then drops it.
#[derive(Debug)]
pub struct LineWriter<'a> {
    buffer: &'a BufferedStdout,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.append(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BufferedStdout {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter { buffer: self }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_wait_for_a_full_batch_and_keep_their_order() {
        let written = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = written.clone();
        let buffer = BufferedStdout::with_sink(Box::new(move |batch: &[u8]| {
            lock(&sink).extend_from_slice(batch)
        }));
        for i in 0..10 {
            buffer
                .make_writer()
                .write_all(format!("line {i}\n").as_bytes())
                .expect("write");
        }
        assert!(
            lock(&written).is_empty(),
            "nothing written before a batch is full"
        );
        let big = vec![b'x'; FLUSH_BYTES];
        buffer.make_writer().write_all(&big).expect("write");
        assert!(lock(&buffer.shared.pending).is_empty());
        let out = lock(&written).clone();
        assert_eq!(
            out.len(),
            70 + FLUSH_BYTES,
            "a full batch is written at once"
        );
        assert!(out.starts_with(b"line 0\nline 1\n"), "in order");
        buffer.make_writer().write_all(b"tail\n").expect("write");
        buffer.flush();
        assert!(
            lock(&written).ends_with(b"xxtail\n"),
            "flush writes the rest"
        );
    }
}
