//! The audit log: who got access to what and who changed what. Each event is a JSON log line
//! (target `portcullis::audit`) at once, and a database row written in batches off the
//! request path. Tokens and secrets never appear: tokens are named by `jti`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;

use crate::clock::SharedClock;
use crate::store::audit::NewAuditEvent;
use crate::store::Store;

/// Events waiting for the writer; beyond this, new ones are counted as dropped rather than
/// slowing requests.
const QUEUE: usize = 100_000;
const BATCH: usize = 1_000;

#[derive(Clone)]
pub struct Audit {
    sink: Sink,
    clock: SharedClock,
    ids: Arc<EventIds>,
}

/// Event ids unique across processes: a random prefix per process and a counter.
struct EventIds {
    prefix: String,
    next: AtomicU64,
}

impl EventIds {
    fn new() -> EventIds {
        let prefix = crate::tokens::new_jti().unwrap_or_else(|_| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            format!("{}-{nanos}", std::process::id())
        });
        EventIds {
            prefix,
            next: AtomicU64::new(0),
        }
    }

    fn next(&self) -> String {
        format!(
            "{}.{}",
            self.prefix,
            self.next.fetch_add(1, Ordering::Relaxed)
        )
    }
}

/// What the writer task receives.
enum Message {
    Event(NewAuditEvent),
    /// Write everything received so far, then answer.
    Flush(tokio::sync::oneshot::Sender<()>),
}

#[derive(Clone)]
enum Sink {
    /// The server: a channel to the batching writer task.
    Queue(mpsc::Sender<Message>),
    /// The CLI: written at once.
    Direct(Store),
}

impl Audit {
    /// Starts the batching writer on the current tokio runtime, or writes directly without one.
    pub fn start(store: Store, clock: SharedClock) -> Audit {
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                let (sender, receiver) = mpsc::channel(QUEUE);
                handle.spawn(write_batches(store, receiver));
                Audit {
                    sink: Sink::Queue(sender),
                    clock,
                    ids: Arc::new(EventIds::new()),
                }
            }
            Err(_) => Audit {
                sink: Sink::Direct(store),
                clock,
                ids: Arc::new(EventIds::new()),
            },
        }
    }

    /// `details` is any serialisable value: a `json!` object, or on hot paths a borrowed
    /// struct, which serialises without building a `Value` first (several times cheaper).
    pub fn record(
        &self,
        kind: &str,
        client_id: Option<&str>,
        subject: Option<&str>,
        details: impl Serialize,
    ) {
        // Serialising plain data to a string cannot fail; should it ever, keep the event.
        let details = serde_json::to_string(&details).unwrap_or_else(|_| "{}".to_string());
        tracing::info!(
            target: "portcullis::audit",
            kind,
            client_id = client_id.unwrap_or_default(),
            subject = subject.unwrap_or_default(),
            details = %details,
        );
        let event = NewAuditEvent {
            at: self.clock.now(),
            kind: kind.to_string(),
            client_id: client_id.map(str::to_string),
            subject: subject.map(str::to_string),
            details,
            event_id: Some(self.ids.next()),
        };
        match &self.sink {
            Sink::Queue(sender) => {
                if sender.try_send(Message::Event(event)).is_err() {
                    metrics::counter!("portcullis_audit_events_dropped_total").increment(1);
                }
            }
            Sink::Direct(store) => {
                if let Err(e) = store.insert_audit_events(&[event]) {
                    tracing::error!(error = %e, "audit event not stored");
                }
            }
        }
    }
}

impl Audit {
    /// Waits until every event recorded so far is in the database (shutdown: queued rows must
    /// not be lost). False when `deadline` passed first, say because the database is down.
    pub async fn flush(&self, deadline: Duration) -> bool {
        let Sink::Queue(sender) = &self.sink else {
            return true;
        };
        let (done, written) = tokio::sync::oneshot::channel();
        let flushed =
            async { sender.send(Message::Flush(done)).await.is_ok() && written.await.is_ok() };
        tokio::time::timeout(deadline, flushed)
            .await
            .unwrap_or(false)
    }
}

fn sort(
    messages: &mut Vec<Message>,
    batch: &mut Vec<NewAuditEvent>,
    waiting: &mut Vec<tokio::sync::oneshot::Sender<()>>,
) {
    for message in messages.drain(..) {
        match message {
            Message::Event(event) => batch.push(event),
            Message::Flush(done) => waiting.push(done),
        }
    }
}

/// Writes events in batches. A batch the database refuses is kept and retried with a growing
/// pause (new events wait in the channel meanwhile), so a database blip loses nothing.
async fn write_batches(store: Store, mut receiver: mpsc::Receiver<Message>) {
    let mut messages = Vec::with_capacity(BATCH);
    let mut batch: Vec<NewAuditEvent> = Vec::with_capacity(BATCH);
    let mut waiting: Vec<tokio::sync::oneshot::Sender<()>> = Vec::new();
    while receiver.recv_many(&mut messages, BATCH).await > 0 {
        sort(&mut messages, &mut batch, &mut waiting);
        // Let a burst accumulate: fewer, larger transactions (not when asked to flush).
        if batch.len() < BATCH && waiting.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            while batch.len() < BATCH {
                match receiver.try_recv() {
                    Ok(message) => messages.push(message),
                    Err(_) => break,
                }
            }
            sort(&mut messages, &mut batch, &mut waiting);
        }
        let mut pause = Duration::from_millis(100);
        while !batch.is_empty() {
            let chunk = batch.clone();
            let count = chunk.len();
            let writer = store.clone();
            match tokio::task::spawn_blocking(move || writer.insert_audit_events(&chunk)).await {
                Ok(Ok(())) => batch.clear(),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, count, "audit events not stored yet; retrying");
                    metrics::counter!("portcullis_audit_write_retries_total").increment(1);
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    tracing::error!(error = %e, count, "audit writer failed");
                    batch.clear();
                }
            }
        }
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
}
