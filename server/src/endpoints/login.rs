//! `GET|POST /login`: username and password, one generic message on failure.

use actix_session::Session;
use actix_web::cookie::time::Duration as CookieDuration;
use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::authorize::{pending, save_pending, set_signed_in};
use super::pages::{
    error_page, html, see_other, session_expired, unavailable_page, with_retry_after,
};
use crate::app::App;
use crate::credential_limits::Refusal;
use crate::oauth::authorize::SignedIn;
use crate::session::index::SessionRecord;
use crate::session::{csrf_matches, csrf_token};
use crate::session::{known_device, RETURN_TO};
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

/// One message for a wrong password, an unknown username, a disabled account and a pair that
/// must wait (docs/errors.md): none of them tells an attacker more than the others.
const FAILED: &str = "The username or password is incorrect. After repeated failures, sign-in \
                      from this device pauses for a few minutes.";

/// How long a sign-in waits for its turn to hash a password before giving up with 503.
const HASH_QUEUE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

fn too_many(retry_after: u64, message: &str) -> HttpResponse {
    metrics::counter!("portcullis_rate_limited_total", "endpoint" => "login").increment(1);
    let mut page = error_page(
        StatusCode::TOO_MANY_REQUESTS,
        "Too many sign-in attempts",
        message,
    );
    with_retry_after(&mut page, retry_after);
    page
}

/// `POST /login`. The attempt is counted before the password is hashed (`credential_limits`),
/// and hashing waits for one of a bounded number of turns, so neither parallel guesses nor a
/// flood of sign-ins can get past the limits or exhaust memory.
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
    let address = super::client_address(&request, &app);
    let typed = form.username.trim().to_string();
    let account = {
        let typed = typed.clone();
        match app
            .store()
            .run(move |s| s.find_user_by_username(&typed))
            .await
        {
            Ok(account) => account,
            Err(e) => {
                tracing::error!(error = %e, "login lookup failed");
                return unavailable_page(1);
            }
        }
    };
    let secure = app.settings().issuer_is_https();
    let known_device = account.as_ref().is_some_and(|user| {
        request
            .cookie(known_device::cookie_name(secure))
            .is_some_and(|c| app.known_devices().is_known(c.value(), &user.id, app.now()))
    });
    // Counters are per username as typed (lower-cased), known or not, so they reveal nothing;
    // the account's generation lets `user unlock` start them over.
    let subject = format!(
        "{}#{}",
        typed.to_lowercase(),
        account.as_ref().map_or(0, |u| u.sign_in_generation)
    );
    let limits = app.credential_limits();
    let reserved = limits
        .reserve(
            app.sign_in_policy(),
            &subject,
            address,
            known_device,
            app.now(),
        )
        .await;
    let reservation = match reserved {
        Ok(Ok(reservation)) => reservation,
        Ok(Err(refusal)) => {
            app.audit().record(
                "login_throttled",
                None,
                None,
                serde_json::json!({
                    "username": typed,
                    "ip": address.to_string(),
                    "reason": match refusal {
                        Refusal::PairLocked(_) => "pair",
                        Refusal::AddressBlocked(_) => "address",
                        Refusal::SubjectSlowed(_) => "username",
                    },
                }),
            );
            return match refusal {
                Refusal::PairLocked(_) => {
                    metrics::counter!("portcullis_rate_limited_total", "endpoint" => "login")
                        .increment(1);
                    render(&app, &session, &form.request, form.username, Some(FAILED.into()))
                        .await
                }
                Refusal::AddressBlocked(seconds) => too_many(
                    seconds,
                    "Too many failed sign-ins came from your network. Please try again later.",
                ),
                Refusal::SubjectSlowed(seconds) => too_many(
                    seconds,
                    &format!(
                        "Sign-in for this account is being slowed down. Please try again in {seconds} seconds."
                    ),
                ),
            };
        }
        Err(e) => {
            // Fail closed: without the counters, guessing would be unlimited.
            tracing::error!(error = %e, "sign-in counters unavailable");
            return unavailable_page(1);
        }
    };
    let Ok(Ok(permit)) = tokio::time::timeout(
        HASH_QUEUE_WAIT,
        app.password_permits().clone().acquire_owned(),
    )
    .await
    else {
        metrics::counter!("portcullis_rate_limited_total", "endpoint" => "login_hashing")
            .increment(1);
        return unavailable_page(1);
    };
    let verified = {
        let app = app.clone();
        let password = form.password;
        let account = account.clone();
        tokio::task::spawn_blocking(move || {
            let verified = app.users().verify_password(account.as_ref(), &password);
            crate::memory::release_freed_memory();
            drop(permit);
            verified
        })
        .await
    };
    let user = match (verified, account) {
        (Ok(true), Some(user)) => user,
        (Ok(_), _) => {
            metrics::counter!("portcullis_login_failures_total").increment(1);
            app.audit().record(
                "login_failed",
                None,
                None,
                serde_json::json!({ "username": form.username, "ip": address.to_string() }),
            );
            return render(
                &app,
                &session,
                &form.request,
                form.username,
                Some(FAILED.into()),
            )
            .await;
        }
        (Err(e), _) => {
            tracing::error!(error = %e, "login task failed");
            return unavailable_page(1);
        }
    };
    if let Err(e) = limits.succeeded(&reservation).await {
        tracing::warn!(error = %e, "sign-in counters not cleared");
    }
    app.audit().record(
        "login_succeeded",
        None,
        Some(&user.id),
        serde_json::json!({ "username": user.username, "ip": address.to_string() }),
    );
    // A new session id at sign-in (session fixation), and a new CSRF token with it.
    session.renew();
    session.remove("csrf");
    let Ok(sid) = crate::secrets::generate_token() else {
        return session_expired();
    };
    let now = app.now();
    let lifetime = i64::try_from(app.settings().session_max_lifetime).unwrap_or(i64::MAX / 4);
    let user_agent = request
        .headers()
        .get(actix_web::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let record = SessionRecord::new(
        sid.clone(),
        user_agent,
        address.to_string(),
        now,
        now.saturating_add(lifetime),
    );
    if let Err(e) = app.session_index().add(&user.id, record, now).await {
        tracing::error!(error = %e, "session index unavailable");
        return unavailable_page(1);
    }
    let signed_in = SignedIn {
        user_id: user.id.clone(),
        auth_time: now,
        sid: Some(sid),
    };
    if set_signed_in(&session, &signed_in).is_err() {
        return session_expired();
    }
    let mut response = match pending(&session, &form.request) {
        Some(mut request) => {
            request.fresh_login = true;
            if save_pending(&session, &form.request, &request).is_err() {
                return session_expired();
            }
            see_other(&format!("/authorize/resume?request={}", form.request))
        }
        None => match session.remove_as::<String>(RETURN_TO) {
            // Only a path of ours: never an open redirect.
            Some(Ok(path)) if path.starts_with('/') && !path.starts_with("//") => see_other(&path),
            _ => error_page(
                StatusCode::OK,
                "You are signed in",
                "Return to the application you were using to continue.",
            ),
        },
    };
    let device = Cookie::build(
        known_device::cookie_name(secure),
        app.known_devices().issue(&user.id, app.now()),
    )
    .path("/")
    .http_only(true)
    .secure(secure)
    .same_site(SameSite::Lax)
    .max_age(CookieDuration::seconds(app.known_devices().ttl()))
    .finish();
    if let Err(e) = response.add_cookie(&device) {
        tracing::warn!(error = %e, "known-device cookie not set");
    }
    response
}
