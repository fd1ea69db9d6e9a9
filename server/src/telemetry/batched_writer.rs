//! A log sink that costs a request thread one short mutex hold and a copy per line.
//!
//! Every thread appends whole lines to one shared buffer; a background thread writes the buffer
//! out after [`FLUSH_INTERVAL`], or sooner once it holds [`FLUSH_BYTES`]. Under load that is one
//! wake-up and one `write` per interval, where `tracing_appender::non_blocking` (used before)
//! allocates a message per line and keeps its worker thread spinning on the channel.
//! No line is dropped: past [`MAX_PENDING_BYTES`] writers wait for the flusher.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How long a line may wait in the buffer before it is written.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(50);
/// A buffer this full is written at once.
const FLUSH_BYTES: usize = 256 * 1024;
/// Writers wait (rather than lose lines) while the flusher is this far behind.
const MAX_PENDING_BYTES: usize = 16 * 1024 * 1024;

#[derive(Default)]
struct Pending {
    lines: Vec<u8>,
    /// The flusher waits for a first line (writers must wake it).
    flusher_idle: bool,
    /// A writer asked for an early flush (the buffer passed `FLUSH_BYTES`).
    flush_requested: bool,
    /// Writers waiting for room.
    writers_waiting: usize,
    closing: bool,
}

struct Shared {
    pending: Mutex<Pending>,
    /// Wakes the flusher.
    flusher: Condvar,
    /// Wakes writers waiting for room.
    room: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // A panic while holding the lock leaves only bytes behind: keep logging.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The `MakeWriter` handed to `tracing_subscriber`; cheap to clone.
#[derive(Clone)]
pub struct BatchedWriter {
    shared: Arc<Shared>,
}

/// Writes what is left and stops the flusher when dropped: keep it alive until exit.
pub struct FlushGuard {
    shared: Arc<Shared>,
    flusher: Option<JoinHandle<()>>,
}

impl BatchedWriter {
    /// Starts the flusher thread writing to `sink`.
    pub fn start<W: Write + Send + 'static>(
        sink: W,
        interval: Duration,
    ) -> io::Result<(BatchedWriter, FlushGuard)> {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            flusher: Condvar::new(),
            room: Condvar::new(),
        });
        let flusher = std::thread::Builder::new()
            .name("log-flusher".into())
            .spawn({
                let shared = shared.clone();
                move || run_flusher(&shared, sink, interval)
            })?;
        Ok((
            BatchedWriter {
                shared: shared.clone(),
            },
            FlushGuard {
                shared,
                flusher: Some(flusher),
            },
        ))
    }
}

impl Write for BatchedWriter {
    /// Takes the whole line: `tracing_subscriber` writes each event with one `write_all`, so
    /// lines from different threads never interleave.
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        let mut pending = self.shared.lock();
        while pending.lines.len() >= MAX_PENDING_BYTES && !pending.closing {
            pending.writers_waiting += 1;
            pending = self
                .shared
                .room
                .wait(pending)
                .unwrap_or_else(PoisonError::into_inner);
            pending.writers_waiting -= 1;
        }
        pending.lines.extend_from_slice(line);
        if pending.flusher_idle {
            pending.flusher_idle = false;
            self.shared.flusher.notify_one();
        } else if pending.lines.len() >= FLUSH_BYTES && !pending.flush_requested {
            pending.flush_requested = true;
            self.shared.flusher.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchedWriter {
    type Writer = BatchedWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

fn run_flusher<W: Write>(shared: &Shared, mut sink: W, interval: Duration) {
    let mut out = Vec::new();
    loop {
        let mut pending = shared.lock();
        // Idle: sleep until a first line arrives (no periodic wake-ups on a quiet server).
        while pending.lines.is_empty() && !pending.closing {
            pending.flusher_idle = true;
            pending = shared
                .flusher
                .wait(pending)
                .unwrap_or_else(PoisonError::into_inner);
        }
        pending.flusher_idle = false;
        // Let lines gather for one interval, unless the buffer fills or we are closing.
        if !pending.closing {
            pending = shared
                .flusher
                .wait_timeout_while(pending, interval, |p| !p.flush_requested && !p.closing)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        std::mem::swap(&mut pending.lines, &mut out);
        pending.flush_requested = false;
        let closing = pending.closing;
        if pending.writers_waiting > 0 {
            shared.room.notify_all();
        }
        drop(pending);
        // Nowhere to report a failed log write; the next batch tries again.
        let _ = sink.write_all(&out).and_then(|()| sink.flush());
        out.clear();
        if closing && shared.lock().lines.is_empty() {
            return;
        }
    }
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        self.shared.lock().closing = true;
        self.shared.flusher.notify_one();
        self.shared.room.notify_all();
        if let Some(flusher) = self.flusher.take() {
            let _ = flusher.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink the test can read while the writer owns a handle to it.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    #[test]
    fn every_line_from_every_thread_arrives_whole_once_the_guard_drops() {
        let sink = Captured::default();
        let (writer, guard) = BatchedWriter::start(sink.clone(), Duration::from_secs(60)).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let writer = writer.clone();
                std::thread::spawn(move || {
                    for i in 0..2_000 {
                        let line = format!("thread {t} line {i} {}\n", "x".repeat(i % 300));
                        writer.make_writer().write_all(line.as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        drop(guard);
        let text = sink.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 8_000);
        for t in 0..4 {
            let mine: Vec<usize> = lines
                .iter()
                .filter_map(|l| l.strip_prefix(&format!("thread {t} line ")))
                .map(|rest| rest.split(' ').next().unwrap().parse().unwrap())
                .collect();
            // Each thread's lines are all there, in order, and none was torn.
            assert_eq!(mine, (0..2_000).collect::<Vec<_>>());
        }
        assert!(lines.iter().all(|l| {
            let n: usize = l.split(' ').nth(3).unwrap().parse().unwrap();
            l.ends_with(&"x".repeat(n % 300)) && l.split(' ').count() == 5
        }));
    }

    #[test]
    fn a_quiet_buffer_is_written_after_the_interval_without_a_flush_from_the_caller() {
        let sink = Captured::default();
        let (mut writer, _guard) =
            BatchedWriter::start(sink.clone(), Duration::from_millis(20)).unwrap();
        writer.write_all(b"first\n").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while sink.text().is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(sink.text(), "first\n");
        // And again after the flusher went back to sleep waiting for a line.
        writer.write_all(b"second\n").unwrap();
        while sink.text().len() < 13 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(sink.text(), "first\nsecond\n");
    }

    #[test]
    fn a_full_buffer_is_written_before_the_interval_ends() {
        let sink = Captured::default();
        let (mut writer, _guard) =
            BatchedWriter::start(sink.clone(), Duration::from_secs(3600)).unwrap();
        let line = vec![b'y'; 1024];
        for _ in 0..(FLUSH_BYTES / 1024 + 1) {
            writer.write_all(&line).unwrap();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while sink.text().is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(sink.text().len() >= FLUSH_BYTES);
    }
}
