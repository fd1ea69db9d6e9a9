//! `GET|POST /login`: username and password, one generic message on failure.

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::authorize::{pending, save_pending, set_signed_in};
use super::pages::{error_page, html, see_other, session_expired};
use crate::app::App;
use crate::limits::Limit;
use crate::oauth::authorize::SignedIn;
use crate::session::{csrf_matches, csrf_token};
use crate::views::LoginPage;

#[derive(Deserialize)]
pub struct LoginQuery {
    #[serde(default)]
    request: String,
}

async fn client_name(app: &App, client_id: &str) -> Option<String> {
    app.clients()
        .find(client_id)
        .await
        .ok()
        .flatten()
        .map(|c| c.name.clone())
}

async fn render(
    app: &App,
    session: &Session,
    request_id: &str,
    username: String,
    error: Option<String>,
) -> HttpResponse {
    let pending = pending(session, request_id);
    let client_name = match &pending {
        Some(p) => client_name(app, &p.client_id).await,
        None => None,
    };
    let Ok(csrf) = csrf_token(session) else {
        return session_expired();
    };
    let username = if username.is_empty() {
        pending
            .as_ref()
            .and_then(|p| p.login_hint.clone())
            .unwrap_or_default()
    } else {
        username
    };
    let status = if error.is_some() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    let targets: Vec<&str> = pending.iter().map(|p| p.redirect_uri.as_str()).collect();
    let page = LoginPage {
        csrf_token: csrf,
        request_id: if pending.is_some() {
            request_id.to_string()
        } else {
            String::new()
        },
        username,
        error,
        client_name,
    };
    html(status, page.render(), &targets)
}

pub async fn login_page(
    query: web::Query<LoginQuery>,
    session: Session,
    app: web::Data<App>,
) -> HttpResponse {
    render(&app, &session, &query.request, String::new(), None).await
}

#[derive(Deserialize)]
pub struct LoginForm {
    csrf_token: String,
    #[serde(default)]
    request: String,
    username: String,
    password: String,
}

/// The counters a failed sign-in adds to: per username (whether or not it exists, so the
/// answer reveals nothing) and per client address.
fn throttle_keys(app: &App, username: &str, request: &HttpRequest) -> Vec<(String, Limit)> {
    let settings = app.settings();
    let window = settings.login_failure_window;
    let ip = request
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    vec![
        (
            format!("login:user:{}", username.trim().to_lowercase()),
            Limit {
                max: settings.login_max_failures_per_username.saturating_sub(1),
                window,
            },
        ),
        (
            format!("login:ip:{ip}"),
            Limit {
                max: settings.login_max_failures_per_ip.saturating_sub(1),
                window,
            },
        ),
    ]
}

pub async fn login(
    request: HttpRequest,
    form: web::Form<LoginForm>,
    session: Session,
    app: web::Data<App>,
) -> HttpResponse {
    if !csrf_matches(&session, &form.csrf_token) {
        return session_expired();
    }
    let form = form.into_inner();
    let keys = throttle_keys(&app, &form.username, &request);
    for (key, limit) in &keys {
        if let Err(retry_after) = app.limiter().add(key, 0, *limit, app.now()).await {
            metrics::counter!("portcullis_rate_limited_total", "endpoint" => "login").increment(1);
            let mut page = error_page(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many sign-in attempts",
                "For your security, sign-in is paused for a while. Please try again later.",
            );
            if let Ok(value) =
                actix_web::http::header::HeaderValue::from_str(&retry_after.to_string())
            {
                page.headers_mut()
                    .insert(actix_web::http::header::RETRY_AFTER, value);
            }
            return page;
        }
    }
    let (username, password) = (form.username.clone(), form.password);
    let users_app = app.clone();
    let outcome =
        tokio::task::spawn_blocking(move || users_app.users().authenticate(&username, &password))
            .await;
    let user = match outcome {
        Ok(Ok(user)) => user,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "login lookup failed");
            return error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Sign-in is unavailable",
                "Please try again in a moment.",
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "login task failed");
            return error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Sign-in is unavailable",
                "Please try again in a moment.",
            );
        }
    };
    let Some(user) = user else {
        metrics::counter!("portcullis_login_failures_total").increment(1);
        for (key, limit) in &keys {
            let _ = app.limiter().add(key, 1, *limit, app.now()).await;
        }
        app.audit().record(
            "login_failed",
            None,
            None,
            serde_json::json!({ "username": form.username }),
        );
        return render(
            &app,
            &session,
            &form.request,
            form.username,
            Some("The username or password is incorrect.".into()),
        )
        .await;
    };
    app.audit().record(
        "login_succeeded",
        None,
        Some(&user.id),
        serde_json::json!({ "username": user.username }),
    );
    // A new session id at sign-in (session fixation), and a new CSRF token with it.
    session.renew();
    session.remove("csrf");
    let signed_in = SignedIn {
        user_id: user.id.clone(),
        auth_time: app.now(),
    };
    if set_signed_in(&session, &signed_in).is_err() {
        return session_expired();
    }
    match pending(&session, &form.request) {
        Some(mut request) => {
            request.fresh_login = true;
            if save_pending(&session, &form.request, &request).is_err() {
                return session_expired();
            }
            see_other(&format!("/authorize/resume?request={}", form.request))
        }
        None => error_page(
            StatusCode::OK,
            "You are signed in",
            "Return to the application you were using to continue.",
        ),
    }
}
