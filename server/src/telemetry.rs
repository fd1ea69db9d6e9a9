//! Logging. Tokens, secrets and request bodies are never logged; the access log records
//! method, path (without query), status and duration.
//!
//! Lines go through a non-blocking, buffered writer: request workers never wait on a write
//! system call, and under load many lines leave in one write.

use std::io::IsTerminal;

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber once; keep the guard alive until exit (it flushes).
pub fn init(format: LogFormat) -> Option<WorkerGuard> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::stderr().is_terminal();
    let buffered = std::io::BufWriter::with_capacity(64 * 1024, std::io::stderr());
    // Not lossy: audit lines must not be dropped; a full queue slows requests instead.
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(64 * 1024)
        .finish(buffered);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    let installed = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
    installed.ok().map(|_| guard)
}
