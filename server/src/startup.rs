//! Build the HTTP server from [`Settings`], bind, run until stopped.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::{Server, ServerHandle, Service};
use actix_web::http::header;
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::DefaultHeaders;
use actix_web::{web, HttpServer};
use bytes::Bytes;

use crate::app::App;
use crate::clock::SharedClock;
use crate::config::Settings;
use crate::endpoints::discovery::Discovery;
use crate::endpoints::json_error;
use crate::redis_link::RedisLink;
use crate::{endpoints, oauth, routes};

/// Largest request body accepted (token requests are small); more is 413.
const MAX_BODY_BYTES: usize = 64 * 1024;

pub struct Running {
    pub app: App,
    pub port: u16,
    pub server: Server,
    handle: ServerHandle,
}

/// How the process was asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// SIGTERM, from an orchestrator: keep serving for `shutdown_delay` first.
    Terminate,
    /// SIGINT (Ctrl-C), from a person: no delay.
    Interrupt,
}

async fn stop_signal() -> Stop {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => return Stop::Terminate,
                _ = tokio::signal::ctrl_c() => return Stop::Interrupt,
            }
        }
    }
    let _ = tokio::signal::ctrl_c().await;
    Stop::Interrupt
}

impl Running {
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    /// Serves until SIGTERM or SIGINT, then shuts down without losing work:
    /// 1. `/readyz` answers 503 at once, so load balancers take this instance out;
    /// 2. on SIGTERM, it keeps serving for `shutdown_delay` while they notice;
    /// 3. the listener closes and requests in flight finish, within `shutdown_grace`;
    /// 4. queued audit events are written, within what is left of `shutdown_grace`.
    pub async fn run_until_stopped(self) -> Result<(), String> {
        let Running {
            app,
            server,
            handle,
            ..
        } = self;
        let mut server = tokio::spawn(server);
        let stop = tokio::select! {
            ended = &mut server => {
                // The server ended by itself (it failed): still write what is queued.
                app.audit().flush(Duration::from_secs(5)).await;
                return ended.map_err(|e| e.to_string())?.map_err(|e| e.to_string());
            }
            stop = stop_signal() => stop,
        };
        let settings = app.settings();
        app.begin_shutdown();
        tracing::info!(signal = ?stop, "shutting down: readiness now fails");
        if stop == Stop::Terminate && settings.shutdown_delay > 0 {
            tokio::time::sleep(Duration::from_secs(settings.shutdown_delay)).await;
        }
        let deadline = Instant::now() + Duration::from_secs(settings.shutdown_grace);
        handle.stop(true).await;
        let served = server.await;
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(1));
        if app.audit().flush(left).await {
            tracing::info!("audit events written; stopped");
        } else {
            tracing::error!("shutdown: queued audit events could not be written in time");
        }
        served
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }
}

/// Builds the application and binds its listener; the returned server still has to be awaited.
pub async fn build(settings: Settings, clock: SharedClock) -> Result<Running, String> {
    let listener = TcpListener::bind(&settings.bind)
        .map_err(|e| format!("setting `bind`: cannot listen on {}: {e}", settings.bind))?;
    build_on(listener, settings, clock).await
}

/// As [`build`], on a listener the caller bound (tests bind port 0 to learn the issuer).
pub async fn build_on(
    listener: TcpListener,
    settings: Settings,
    clock: SharedClock,
) -> Result<Running, String> {
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let tls = match (&settings.tls_cert, &settings.tls_key) {
        (Some(cert), Some(key)) => Some(tls_config(cert, key)?),
        _ => None,
    };
    let app = {
        let settings = settings.clone();
        tokio::task::spawn_blocking(move || App::build(settings, clock))
            .await
            .map_err(|e| e.to_string())??
    };
    {
        // The admin console's own client (first party, public, PKCE).
        let app = app.clone();
        let ensured = tokio::task::spawn_blocking(move || endpoints::console::ensure_client(&app))
            .await
            .map_err(|e| e.to_string())?;
        if let Err(e) = ensured {
            tracing::warn!(error = %e, "the admin console's client could not be registered; /admin will not sign in");
        }
    }
    endpoints::metrics::install();
    let discovery = web::Data::new(Discovery(Bytes::from(
        oauth::discovery::metadata(&settings).to_string(),
    )));
    let data = web::Data::new(app.clone());
    let redis = match settings.redis_url.as_deref() {
        Some(url) => Some(RedisLink::connect(url, settings.redis_timeout()).await?),
        None => None,
    };
    if let Some(link) = &redis {
        app.use_redis(link.clone());
    }
    let sessions = crate::session::SessionBackend::new(
        redis,
        Duration::from_secs(settings.anonymous_session_ttl),
        settings.memory_sessions_max,
    );
    let cookie_key = actix_web::cookie::Key::from(&app.cookie_key());
    let cookie_secure = settings.issuer_is_https();
    let session_ttl = actix_web::cookie::time::Duration::seconds(
        i64::try_from(settings.session_ttl).unwrap_or(3600),
    );
    let hsts = settings.issuer_is_https();
    let body_deadline = Duration::from_secs(settings.request_body_timeout);
    let connections = crate::http_limits::ConnectionsPerAddress::new(
        settings.max_connections_per_ip,
        app.trusted_proxies().clone(),
    );
    let factory = move || {
        let mut security_headers = DefaultHeaders::new()
            .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .add((header::X_FRAME_OPTIONS, "DENY"))
            .add((header::REFERRER_POLICY, "no-referrer"));
        if hsts {
            security_headers =
                security_headers.add((header::STRICT_TRANSPORT_SECURITY, "max-age=31536000"));
        }
        let sessions =
            actix_session::SessionMiddleware::builder(sessions.clone(), cookie_key.clone())
                .cookie_name(session_cookie_name(cookie_secure).into())
                .cookie_secure(cookie_secure)
                .cookie_http_only(true)
                .cookie_same_site(actix_web::cookie::SameSite::Lax)
                .session_lifecycle(
                    actix_session::config::PersistentSession::default().session_ttl(session_ttl),
                )
                .build();
        actix_web::App::new()
            .app_data(data.clone())
            .app_data(discovery.clone())
            .app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
            .app_data(
                web::FormConfig::default()
                    .limit(MAX_BODY_BYTES)
                    .error_handler(|e, _| {
                        let page = crate::endpoints::pages::error_page(
                            StatusCode::BAD_REQUEST,
                            "This form could not be read",
                            "Go back to the application and try again.",
                        );
                        actix_web::error::InternalError::from_response(e, page).into()
                    }),
            )
            .app_data(web::QueryConfig::default().error_handler(|e, _| {
                let page = crate::endpoints::pages::error_page(
                    StatusCode::BAD_REQUEST,
                    "This link is not valid",
                    "Go back to the application and try again.",
                );
                actix_web::error::InternalError::from_response(e, page).into()
            }))
            .configure(|cfg| routes::configure(cfg, &sessions))
            .wrap(security_headers)
            .wrap_fn(move |mut request, service| {
                let started = Instant::now();
                let method = request.method().clone();
                let path = request.path().to_owned();
                // HEAD is GET without the body (RFC 9110 §9.3.2): routed as GET here, and the
                // HTTP layer, which saw HEAD, leaves the body out.
                if method == Method::HEAD && routes::HEAD_PATHS.contains(&path.as_str()) {
                    request.head_mut().method = Method::GET;
                }
                let session_page = routes::is_session_path(&path);
                // A body must arrive within `request_body_timeout` (slow POSTs hold sockets).
                let body_expired = (method != Method::GET && method != Method::HEAD).then(|| {
                    let expired = Arc::new(std::sync::atomic::AtomicBool::new(false));
                    let payload = actix_web::HttpMessage::take_payload(&mut request);
                    request.set_payload(crate::http_limits::DeadlinePayload::wrap(
                        payload,
                        body_deadline,
                        expired.clone(),
                    ));
                    expired
                });
                let call = service.call(request);
                async move {
                    let mut response = match call.await {
                        Ok(response) => response,
                        // The session store (Redis) did not answer: the session middleware
                        // fails the request; the person gets a page saying to retry.
                        Err(error) if session_page => {
                            tracing::warn!(error = %error, "browser session unavailable");
                            return Err(actix_web::error::InternalError::from_response(
                                "browser session unavailable",
                                crate::endpoints::pages::unavailable_page(1),
                            )
                            .into());
                        }
                        Err(error) => return Err(error),
                    };
                    if body_expired.is_some_and(|e| e.load(std::sync::atomic::Ordering::Relaxed)) {
                        let mut timeout = if session_page {
                            crate::endpoints::pages::error_page(
                                StatusCode::REQUEST_TIMEOUT,
                                "The form took too long to arrive",
                                "Go back and try again.",
                            )
                        } else {
                            json_error(
                                StatusCode::REQUEST_TIMEOUT,
                                "invalid_request",
                                "the request body did not arrive in time",
                            )
                        };
                        timeout
                            .head_mut()
                            .set_connection_type(actix_web::http::ConnectionType::Close);
                        response = response.into_response(timeout);
                    }
                    if let Some(error) = response.response().error() {
                        // Payload overflow and similar framework errors become JSON.
                        let status = response.status();
                        if status == StatusCode::PAYLOAD_TOO_LARGE {
                            let message = error.to_string();
                            response = response.into_response(json_error(
                                status,
                                "invalid_request",
                                &message,
                            ));
                        }
                    }
                    if routes::CORS_PATHS.contains(&path.as_str()) {
                        response.headers_mut().insert(
                            header::ACCESS_CONTROL_ALLOW_ORIGIN,
                            header::HeaderValue::from_static("*"),
                        );
                        // A browser app reads the DPoP nonce (RFC 9449 §8) and the challenge.
                        response.headers_mut().insert(
                            header::ACCESS_CONTROL_EXPOSE_HEADERS,
                            header::HeaderValue::from_static("DPoP-Nonce, WWW-Authenticate"),
                        );
                    }
                    let elapsed = started.elapsed();
                    let pattern = response
                        .request()
                        .match_pattern()
                        .unwrap_or_else(|| "unmatched".to_string());
                    metrics::histogram!(
                        "portcullis_http_request_duration_seconds",
                        "endpoint" => pattern
                    )
                    .record(elapsed.as_secs_f64());
                    tracing::info!(
                        target: "portcullis::access",
                        %method,
                        path = %path,
                        status = response.status().as_u16(),
                        micros = elapsed.as_micros() as u64,
                    );
                    Ok(response)
                }
            })
    };
    // Signals are ours (`run_until_stopped`): readiness must fail before the listener closes.
    let mut server = HttpServer::new(factory)
        .on_connect(move |connection, extensions| connections.on_connect(connection, extensions))
        .disable_signals()
        .shutdown_timeout(settings.shutdown_grace)
        .client_request_timeout(Duration::from_secs(10));
    if settings.workers > 0 {
        server = server.workers(settings.workers);
    }
    let server = match tls {
        Some(config) => server.listen_rustls_0_23(listener, config),
        None => server.listen(listener),
    }
    .map_err(|e| format!("cannot start server: {e}"))?
    .run();
    let handle = server.handle();
    spawn_cluster_watch(app.clone(), settings.keyring_poll_interval);
    Ok(Running {
        app,
        port,
        server,
        handle,
    })
}

/// `__Host-` (RFC 6265bis §4.1.3.2) with an https issuer: the cookie is then Secure, for
/// this host only (no Domain) and for every path, and no sibling host can plant one.
pub fn session_cookie_name(secure: bool) -> &'static str {
    if secure {
        "__Host-portcullis_session"
    } else {
        "portcullis_session"
    }
}

/// Polls the shared database: keyring and client changes from other processes, and rotation.
fn spawn_cluster_watch(app: App, interval_secs: u64) {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_secs(interval_secs.max(1)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            let app = app.clone();
            match tokio::task::spawn_blocking(move || app.sync_with_cluster()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "cluster sync failed"),
                Err(e) => tracing::warn!(error = %e, "cluster sync task failed"),
            }
        }
    });
}

fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<rustls::ServerConfig, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("setting `tls_cert`: {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "setting `tls_cert`: no certificate in {}",
            cert.display()
        ));
    }
    let private_key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("setting `tls_key`: {}: {e}", key.display()))?;
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, private_key)
        .map(|mut config| {
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            config
        })
        .map_err(|e| format!("settings `tls_cert`/`tls_key`: {e}"))
}
