//! Logging. Tokens, secrets and request bodies are never logged; the access log records
//! method, path (without query), status and duration.
//!
//! Lines go to stderr through [`batched_writer`]: request workers never wait on a write system
//! call or wake another thread per line, and under load many lines leave in one write.

mod batched_writer;

use std::cell::RefCell;
use std::fmt;
use std::io::IsTerminal;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::EnvFilter;

pub use batched_writer::FlushGuard;
use batched_writer::{BatchedWriter, FLUSH_INTERVAL};

use crate::config::LogFormat;

/// Installs the global subscriber once; keep the guard alive until exit (it flushes).
pub fn init(format: LogFormat) -> Option<FlushGuard> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::stderr().is_terminal();
    let (writer, guard) = BatchedWriter::start(std::io::stderr(), FLUSH_INTERVAL).ok()?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_timer(UtcMicros)
        .with_writer(writer);
    let installed = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
    installed.ok().map(|_| guard)
}

/// RFC 3339 UTC time with microseconds, as `tracing_subscriber`'s default prints it, but the
/// calendar part is formatted once per second and thread instead of for every line.
struct UtcMicros;

thread_local! {
    /// The last second formatted on this thread: (seconds since the epoch, "YYYY-MM-DDTHH:MM:SS").
    static CURRENT_SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

impl FormatTime for UtcMicros {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        CURRENT_SECOND.with_borrow_mut(|(second, text)| {
            if *second != now.as_secs() {
                *second = now.as_secs();
                text.clear();
                let time = i64::try_from(now.as_secs())
                    .ok()
                    .and_then(|secs| chrono::DateTime::from_timestamp(secs, 0))
                    .unwrap_or_default();
                fmt::Write::write_fmt(text, format_args!("{}", time.format("%Y-%m-%dT%H:%M:%S")))?;
            }
            write!(w, "{text}.{:06}Z", now.subsec_micros())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn formatted() -> String {
        let mut out = String::new();
        UtcMicros.format_time(&mut Writer::new(&mut out)).unwrap();
        out
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_microseconds_and_follow_the_clock() {
        let before = chrono::Utc::now();
        let first = formatted();
        std::thread::sleep(std::time::Duration::from_millis(1_100));
        let second = formatted();
        let after = chrono::Utc::now();
        for text in [&first, &second] {
            assert_eq!(text.len(), "2026-11-26T02:56:27.119176Z".len(), "{text}");
            let parsed = chrono::DateTime::parse_from_rfc3339(text).unwrap();
            assert!(parsed >= before - chrono::Duration::microseconds(1) && parsed <= after);
        }
        // The cached calendar part moved on with the clock.
        assert!(second > first, "{first} then {second}");
    }
}
