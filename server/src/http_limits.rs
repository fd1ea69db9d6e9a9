//! Limits on what one client can hold of the HTTP server: time to send a request body, and
//! connections open at once per client address. Slow or many connections otherwise pin file
//! descriptors and workers' attention for as long as the client likes.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::dev::Payload;
use actix_web::error::PayloadError;
use actix_web::web::Bytes;
use futures_core::Stream;

use crate::client_address::TrustedProxies;

/// A request body that must arrive within a deadline; past it, the body ends in an error and
/// `expired` is set (the request is then answered 408).
pub struct DeadlinePayload {
    inner: Payload,
    deadline: Duration,
    /// Started at the first wait: a body that arrived with the headers costs no timer.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    expired: Arc<AtomicBool>,
}

impl DeadlinePayload {
    pub fn wrap(inner: Payload, deadline: Duration, expired: Arc<AtomicBool>) -> Payload {
        Payload::Stream {
            payload: Box::pin(DeadlinePayload {
                inner,
                deadline,
                timer: None,
                expired,
            }),
        }
    }
}

impl Stream for DeadlinePayload {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(item) => Poll::Ready(item),
            Poll::Pending => {
                let deadline = this.deadline;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(deadline)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.expired.store(true, Ordering::Relaxed);
                        Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "the request body did not arrive in time",
                        )))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

/// Connections open at once per client address; over the cap, a new connection is closed as
/// soon as it is accepted. Trusted proxies carry many clients' connections and are exempt.
#[derive(Clone)]
pub struct ConnectionsPerAddress {
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
    cap: usize,
    trusted: TrustedProxies,
}

/// Held by a connection (in its extensions) until it closes.
struct Held {
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
    address: IpAddr,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.address) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.address);
            }
        }
    }
}

impl ConnectionsPerAddress {
    /// `cap` 0: no limit.
    pub fn new(cap: usize, trusted: TrustedProxies) -> ConnectionsPerAddress {
        ConnectionsPerAddress {
            open: Arc::default(),
            cap,
            trusted,
        }
    }

    /// For `HttpServer::on_connect`: counts the connection, and shuts it down when its address
    /// already holds `cap` of them.
    pub fn on_connect(&self, connection: &dyn Any, extensions: &mut actix_web::dev::Extensions) {
        if self.cap == 0 {
            return;
        }
        let stream = match connection.downcast_ref::<actix_web::rt::net::TcpStream>() {
            Some(plain) => plain,
            None => match connection.downcast_ref::<actix_tls::accept::rustls_0_23::TlsStream<
                actix_web::rt::net::TcpStream,
            >>() {
                Some(tls) => tls.get_ref().0,
                None => return,
            },
        };
        let Ok(peer) = stream.peer_addr() else {
            return;
        };
        let address = peer.ip();
        if self.trusted.trusts(address) {
            return;
        }
        let over = {
            let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
            let count = open.entry(address).or_insert(0);
            *count += 1;
            *count > self.cap
        };
        extensions.insert(Arc::new(Held {
            open: self.open.clone(),
            address,
        }));
        if over {
            metrics::counter!("portcullis_connections_refused_total").increment(1);
            let _ = socket2::SockRef::from(stream).shutdown(std::net::Shutdown::Both);
        }
    }
}
