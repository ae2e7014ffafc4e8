//! Where the webhook's audit lines go: stdout, batched by one writer thread.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use vault_injector_core::audit::{self, AdmissionAudit};

/// Audit lines are appended to a shared buffer that one writer thread
/// flushes to stdout in a single write every [`AUDIT_FLUSH_EVERY`] while
/// lines arrive. Writing and flushing stdout per request from the async
/// workers would block them on a pipe and cost a syscall (and, with a
/// channel, a thread wake-up) per admission; under load this batches
/// hundreds of lines per write. The buffer is bounded: past
/// [`AUDIT_BUFFER_MAX`] the request that fills it writes the batch itself,
/// so a stalled stdout slows admissions down rather than growing memory or
/// dropping lines.
#[derive(Clone)]
pub struct AuditSink(Arc<AuditShared>);

struct AuditShared {
    buf: std::sync::Mutex<Vec<u8>>,
    stopped: std::sync::atomic::AtomicBool,
    writer: std::sync::OnceLock<std::thread::Thread>,
}

/// Stops the writer thread after writing out everything buffered.
pub struct AuditWriter {
    shared: Arc<AuditShared>,
    thread: std::thread::JoinHandle<()>,
}

/// Longest time an audit line waits in memory before reaching stdout.
pub const AUDIT_FLUSH_EVERY: Duration = Duration::from_millis(5);
const AUDIT_BUFFER_MAX: usize = 1024 * 1024;

impl AuditShared {
    /// Takes the buffered lines and writes them. The stdout lock is taken
    /// before the buffer lock is released, so batches reach stdout in the
    /// order they were buffered.
    fn flush(&self, mut buf: std::sync::MutexGuard<'_, Vec<u8>>) {
        if buf.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut *buf);
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        drop(buf);
        if let Err(e) = out.write_all(&batch).and_then(|_| out.flush()) {
            tracing::error!(error = %e, "cannot write audit lines to stdout");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.buf.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl AuditSink {
    pub fn stdout() -> std::io::Result<(Self, AuditWriter)> {
        let shared = Arc::new(AuditShared {
            buf: std::sync::Mutex::new(Vec::with_capacity(64 * 1024)),
            stopped: std::sync::atomic::AtomicBool::new(false),
            writer: std::sync::OnceLock::new(),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || loop {
                // Parked while idle; the first line after idleness wakes us,
                // then we wait a moment so the batch fills.
                std::thread::park();
                let stopping = s.stopped.load(std::sync::atomic::Ordering::SeqCst);
                if !stopping {
                    std::thread::sleep(AUDIT_FLUSH_EVERY);
                }
                s.flush(s.lock());
                if stopping {
                    return;
                }
            })?;
        let _ = shared.writer.set(thread.thread().clone());
        Ok((Self(shared.clone()), AuditWriter { shared, thread }))
    }

    pub fn emit(&self, record: &AdmissionAudit) {
        let line = audit::admission_line(record);
        let shared = &*self.0;
        let mut buf = shared.lock();
        let was_empty = buf.is_empty();
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
        if buf.len() >= AUDIT_BUFFER_MAX || shared.stopped.load(std::sync::atomic::Ordering::SeqCst)
        {
            shared.flush(buf);
        } else if was_empty {
            drop(buf);
            if let Some(t) = shared.writer.get() {
                t.unpark();
            }
        }
    }
}

impl AuditWriter {
    /// Writes out everything buffered so far and stops the thread.
    pub async fn finish(self) {
        let Self { shared, thread } = self;
        shared
            .stopped
            .store(true, std::sync::atomic::Ordering::SeqCst);
        thread.thread().unpark();
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        // Lines emitted between the flag and the thread's last flush.
        shared.flush(shared.lock());
    }
}
