//! Log lines on their way to an output, written by a thread of their own that gathers
//! them: under load one wake-up and one write per [`GATHER`] instead of one per line. The
//! gateway's log subscriber writes through it (each event as one whole line).

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Bytes of lines waiting for the writer thread; past this, request tasks wait (lines are
/// never dropped: they are the access log).
pub const LOG_BUFFER_BYTES: usize = 8 << 20;
/// How long the writer thread gathers lines after the first one of a batch arrives. Under
/// load that is one wake-up and one write per this interval instead of per request line: a
/// line per request handed to a sleeping thread cost about a fifth of a small GET's CPU.
pub const GATHER: Duration = Duration::from_millis(5);

/// Lines on their way to the output: request tasks append whole lines (the formatter
/// writes each event at once), one thread writes them in batches.
pub struct Lines {
    pending: Mutex<Pending>,
    /// The first line of a batch arrived, or the writer is asked to stop.
    arrived: Condvar,
    /// The writer took the lines: there is room again.
    room: Condvar,
}

#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    /// Asked to stop: write what is here and end.
    closing: bool,
    /// The writer thread has ended; later lines go straight to stderr (the output the
    /// gateway gives it), so a line logged during shutdown is not lost.
    ended: bool,
}

/// Ends the writer thread when dropped, after it wrote every line it was given.
pub struct LogGuard {
    lines: Arc<Lines>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Lines {
    /// A writer thread over `out`, and the handle the subscriber writes through.
    pub fn spawn<W: Write + Send + 'static>(out: W) -> Result<(Arc<Lines>, LogGuard), String> {
        let lines = Arc::new(Lines { pending: Mutex::default(), arrived: Condvar::new(), room: Condvar::new() });
        let writer = lines.clone();
        let thread = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || writer.run(out))
            .map_err(|e| format!("cannot start the log writer thread: {e}"))?;
        Ok((lines.clone(), LogGuard { lines, thread: Some(thread) }))
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends `line`, waiting while the buffer is full; wakes the writer for the first
    /// line of a batch only.
    fn append(&self, line: &[u8]) -> std::io::Result<()> {
        let mut pending = self.lock();
        while pending.bytes.len() >= LOG_BUFFER_BYTES && !pending.ended {
            pending = self.room.wait(pending).unwrap_or_else(PoisonError::into_inner);
        }
        if pending.ended {
            // After the guard: written at once, under the lock so lines keep their order.
            return std::io::stderr().write_all(line);
        }
        let first = pending.bytes.is_empty();
        pending.bytes.extend_from_slice(line);
        drop(pending);
        if first {
            self.arrived.notify_one();
        }
        Ok(())
    }

    /// The writer thread: waits for a first line, gathers for [`GATHER`], writes the batch.
    fn run(&self, mut out: impl Write) {
        let mut batch = Vec::new();
        loop {
            let mut pending = self.lock();
            while pending.bytes.is_empty() && !pending.closing {
                pending = self.arrived.wait(pending).unwrap_or_else(PoisonError::into_inner);
            }
            if pending.closing {
                // The last batch is written under the lock, so a line appended after it
                // (written directly) cannot overtake it.
                let _ = out.write_all(&pending.bytes).and_then(|()| out.flush());
                pending.bytes = Vec::new();
                pending.ended = true;
                drop(pending);
                self.room.notify_all();
                return;
            }
            drop(pending);
            std::thread::sleep(GATHER);
            std::mem::swap(&mut self.lock().bytes, &mut batch);
            self.room.notify_all();
            // A log that cannot be written (its output closed) must not stop the gateway.
            let _ = out.write_all(&batch).and_then(|()| out.flush());
            batch.clear();
            if batch.capacity() > LOG_BUFFER_BYTES {
                batch = Vec::new();
            }
        }
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.lines.lock().closing = true;
        self.lines.arrived.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Write for &Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.append(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.append(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output that records each write it is given.
    #[derive(Clone, Default)]
    struct Recorded(Arc<Mutex<Vec<Vec<u8>>>>, Duration);

    impl Write for Recorded {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            std::thread::sleep(self.1);
            self.0.lock().unwrap().push(buf.to_vec());
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Recorded {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().concat()).unwrap()
        }
    }

    #[test]
    fn lines_from_many_threads_arrive_whole_in_few_writes() {
        let out = Recorded::default();
        let (lines, guard) = Lines::spawn(out.clone()).unwrap();
        let start = std::time::Instant::now();
        std::thread::scope(|s| {
            for t in 0..4 {
                let mut lines = &*lines;
                s.spawn(move || {
                    for n in 0..500 {
                        lines.write_all(format!("thread {t} line {n}\n").as_bytes()).unwrap();
                    }
                });
            }
        });
        let elapsed = start.elapsed();
        drop(guard);
        let writes = out.0.lock().unwrap().len();
        // Each batch but the last waited GATHER first: a write per line would be 2000.
        let most = (elapsed.as_secs_f64() / GATHER.as_secs_f64()) as usize + 2;
        assert!(writes <= most, "{writes} writes in {elapsed:?}, at most {most} expected");
        let text = out.text();
        for t in 0..4 {
            let mine: Vec<&str> = text.lines().filter(|l| l.starts_with(&format!("thread {t} "))).collect();
            let expected: Vec<String> = (0..500).map(|n| format!("thread {t} line {n}")).collect();
            assert_eq!(mine, expected, "thread {t}'s lines lost, cut or out of order");
        }
        assert_eq!(text.lines().count(), 2000);
    }

    #[test]
    fn a_slow_output_holds_writers_back_and_loses_nothing() {
        let out = Recorded(Arc::default(), Duration::from_millis(20));
        let (lines, guard) = Lines::spawn(out.clone()).unwrap();
        let line = [b'x'; 1023];
        let count = 3 * LOG_BUFFER_BYTES / 1024;
        for n in 0..count {
            let mut w = &*lines;
            w.write_all(&line[..1023 - 8]).unwrap();
            w.write_all(format!("{n:07}\n").as_bytes()).unwrap();
            assert!(lines.lock().bytes.len() <= LOG_BUFFER_BYTES + 1024, "the buffer grew past its bound");
        }
        drop(guard);
        let text = out.text();
        let numbers: Vec<usize> = text.lines().map(|l| l[l.len() - 7..].parse().unwrap()).collect();
        assert_eq!(numbers, (0..count).collect::<Vec<_>>());
    }
}
