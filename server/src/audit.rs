//! The audit log: who got access to what and who changed what. Each event is a JSON log line
//! (target `portcullis::audit`) at once, and a database row written in batches off the
//! request path. Tokens and secrets never appear: tokens are named by `jti`.

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
}

#[derive(Clone)]
enum Sink {
    /// The server: a channel to the batching writer task.
    Queue(mpsc::Sender<NewAuditEvent>),
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
                }
            }
            Err(_) => Audit {
                sink: Sink::Direct(store),
                clock,
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
        };
        match &self.sink {
            Sink::Queue(sender) => {
                if sender.try_send(event).is_err() {
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

async fn write_batches(store: Store, mut receiver: mpsc::Receiver<NewAuditEvent>) {
    let mut batch = Vec::with_capacity(BATCH);
    while receiver.recv_many(&mut batch, BATCH).await > 0 {
        // Let a burst accumulate: fewer, larger transactions.
        if batch.len() < BATCH {
            tokio::time::sleep(Duration::from_millis(100)).await;
            while batch.len() < BATCH {
                match receiver.try_recv() {
                    Ok(event) => batch.push(event),
                    Err(_) => break,
                }
            }
        }
        let chunk = std::mem::take(&mut batch);
        let count = chunk.len();
        let store = store.clone();
        match tokio::task::spawn_blocking(move || store.insert_audit_events(&chunk)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, count, "audit events not stored"),
            Err(e) => tracing::error!(error = %e, count, "audit writer failed"),
        }
    }
}
