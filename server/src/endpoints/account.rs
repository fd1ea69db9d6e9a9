//! `/account`: every signed-in person's own page — profile, password, the apps they allowed
//! (and taking that back), and their signed-in devices (and signing them out).
//!
//! Signed in with the same browser session as `/authorize`; not signed in, the page sends the
//! person to `/login` and back. Every form carries the session's CSRF token.

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::authorize::signed_in;
use super::pages::{error_page, html, scope_views, see_other, session_expired, unavailable_page};
use crate::app::App;
use crate::oauth::authorize::SignedIn;
use crate::session::index::describe_user_agent;
use crate::session::{csrf_matches, csrf_token, RETURN_TO};
use crate::users::{User, UserError, MIN_PASSWORD_LEN};
use crate::views::{format_time, AccountPage, ConnectedApp, SessionView};

pub const PATH: &str = "/account";

/// Password changes a person may try per window (a stolen session must not become an
/// unlimited oracle for the current password).
const PASSWORD_ATTEMPTS: crate::limits::Limit = crate::limits::Limit {
    max: 5,
    window: 300,
};

/// How long a password change waits for its turn to hash before giving up with 503.
const HASH_QUEUE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The signed-in person, or the response to give instead: the sign-in page (then back here)
/// when nobody is signed in, 503 when the account cannot be read.
pub async fn person(app: &App, session: &Session) -> Result<(SignedIn, User), HttpResponse> {
    match signed_in(app, session).await {
        Ok(Some(found)) => Ok(found),
        Ok(None) => {
            if session.insert(RETURN_TO, PATH).is_err() {
                return Err(session_expired());
            }
            Err(see_other("/login"))
        }
        Err(e) => {
            tracing::error!(error = %e, "account: the session or account could not be read");
            Err(unavailable_page(1))
        }
    }
}

#[derive(Deserialize)]
pub struct AccountQuery {
    done: Option<String>,
}

fn notice_for(done: Option<&str>) -> Option<String> {
    let text = match done? {
        "password" => "Your password was changed. Your other devices were signed out.",
        "app" => "The app's access was removed. It will ask you again the next time you use it.",
        "session" => "That device was signed out.",
        "others" => "Your other devices were signed out.",
        _ => return None,
    };
    Some(text.to_string())
}

/// `GET /account`.
pub async fn account_page(
    query: web::Query<AccountQuery>,
    session: Session,
    app: web::Data<App>,
) -> HttpResponse {
    let (who, user) = match person(&app, &session).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    render(
        &app,
        &session,
        &who,
        &user,
        notice_for(query.done.as_deref()),
        None,
    )
    .await
}

async fn render(
    app: &App,
    session: &Session,
    who: &SignedIn,
    user: &User,
    notice: Option<String>,
    password_error: Option<String>,
) -> HttpResponse {
    let Ok(csrf) = csrf_token(session) else {
        return session_expired();
    };
    let user_id = user.id.clone();
    let consents = match app.store().run(move |s| s.list_consents(&user_id)).await {
        Ok(consents) => consents,
        Err(e) => {
            tracing::error!(error = %e, "account: consents could not be read");
            return unavailable_page(1);
        }
    };
    let mut apps = Vec::with_capacity(consents.len());
    for consent in consents {
        let name = match app.clients().find(&consent.client_id).await {
            Ok(Some(client)) => client.name.clone(),
            Ok(None) => consent.client_id.clone(),
            Err(e) => {
                tracing::error!(error = %e, "account: a client could not be read");
                return unavailable_page(1);
            }
        };
        let mut delegations = Vec::new();
        for agent in crate::oauth::delegation::delegates(consent.scopes.iter().map(String::as_str))
        {
            delegations.push(match app.clients().find(agent).await {
                Ok(Some(client)) => client.name.clone(),
                _ => agent.to_string(),
            });
        }
        apps.push(ConnectedApp {
            scopes: scope_views(app, &consent.scopes).await,
            client_id: consent.client_id,
            name,
            granted_at: format_time(consent.granted_at),
            delegations,
        });
    }
    let records = match app.session_index().list(&user.id, app.now()).await {
        Ok(records) => records,
        Err(e) => {
            tracing::error!(error = %e, "account: the session index could not be read");
            return unavailable_page(1);
        }
    };
    let sessions: Vec<SessionView> = records
        .into_iter()
        .map(|r| SessionView {
            current: who.sid.as_deref() == Some(r.sid.as_str()),
            device: describe_user_agent(&r.user_agent),
            user_agent: r.user_agent,
            address: r.address,
            signed_in_at: format_time(r.signed_in_at),
            sid: r.sid,
        })
        .collect();
    let page = AccountPage {
        csrf_token: csrf,
        name: user.name.clone(),
        email: user.email.clone(),
        username: user.username.clone(),
        notice,
        password_error,
        min_password: MIN_PASSWORD_LEN,
        others: sessions.iter().any(|s| !s.current),
        apps,
        sessions,
    };
    let status = if page.password_error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    html(status, page.render(), &[])
}

#[derive(Deserialize)]
pub struct PasswordForm {
    csrf_token: String,
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
    #[serde(default)]
    confirm_password: String,
}

/// `POST /account/password`: the current password, then the new one under the rules of
/// `user set-password`; every other device is signed out.
pub async fn change_password(
    request: HttpRequest,
    form: web::Form<PasswordForm>,
    session: Session,
    app: web::Data<App>,
) -> HttpResponse {
    if !csrf_matches(&session, &form.csrf_token) {
        return session_expired();
    }
    let (who, user) = match person(&app, &session).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let form = form.into_inner();
    let refuse = |message: String| {
        let (app, session, who, user) = (app.clone(), session.clone(), who.clone(), user.clone());
        async move { render(&app, &session, &who, &user, None, Some(message)).await }
    };
    if form.new_password != form.confirm_password {
        return refuse("The two new passwords do not match.".into()).await;
    }
    let key = format!("password-change:{}", user.id);
    if let Err(retry_after) = app
        .limiter()
        .add(&key, 1, PASSWORD_ATTEMPTS, app.now())
        .await
    {
        let mut page = refuse(format!(
            "Too many attempts to change the password. Please try again in {retry_after} seconds."
        ))
        .await;
        *page.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        super::pages::with_retry_after(&mut page, retry_after);
        return page;
    }
    let Ok(Ok(permit)) = tokio::time::timeout(
        HASH_QUEUE_WAIT,
        app.password_permits().clone().acquire_owned(),
    )
    .await
    else {
        return unavailable_page(1);
    };
    let outcome = {
        let (app, user) = (app.clone(), user.clone());
        tokio::task::spawn_blocking(move || {
            let outcome = if app
                .users()
                .verify_password(Some(&user), &form.current_password)
            {
                Some(app.users().set_password(&user.username, &form.new_password))
            } else {
                None
            };
            crate::memory::release_freed_memory();
            drop(permit);
            outcome
        })
        .await
    };
    match outcome {
        Ok(None) => {
            app.audit().record(
                "password_change_failed",
                None,
                Some(&user.id),
                serde_json::json!({ "ip": super::client_address(&request, &app).to_string() }),
            );
            return refuse("The current password is not correct.".into()).await;
        }
        Ok(Some(Err(UserError::Invalid(_, message)))) => {
            return refuse(format!("The new password {message}.")).await;
        }
        Ok(Some(Err(e))) => {
            tracing::error!(error = %e, "account: the password could not be changed");
            return unavailable_page(1);
        }
        Err(e) => {
            tracing::error!(error = %e, "account: password task failed");
            return unavailable_page(1);
        }
        Ok(Some(Ok(()))) => {}
    }
    let signed_out = app
        .session_index()
        .remove_all_except(&user.id, who.sid.as_deref(), app.now())
        .await;
    app.audit().record(
        "password_changed",
        None,
        Some(&user.id),
        serde_json::json!({
            "by": "account_page",
            "ip": super::client_address(&request, &app).to_string(),
            "other_sessions_signed_out": signed_out.as_ref().ok(),
        }),
    );
    if let Err(e) = signed_out {
        tracing::error!(error = %e, "account: other sessions could not be signed out");
        return error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Your password was changed",
            "Your other devices could not be signed out just now. Sign them out on your account page.",
        );
    }
    see_other("/account?done=password#password")
}

#[derive(Deserialize)]
pub struct RemoveAppForm {
    csrf_token: String,
    client_id: String,
}

/// `POST /account/apps/remove`: revoke the app's grants (refresh and access tokens) and
/// forget the consent (`App::remove_access`).
pub async fn remove_app(
    form: web::Form<RemoveAppForm>,
    session: Session,
    app: web::Data<App>,
) -> HttpResponse {
    if !csrf_matches(&session, &form.csrf_token) {
        return session_expired();
    }
    let (_, user) = match person(&app, &session).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    if form.client_id.is_empty() || form.client_id.len() > 1024 {
        return error_page(
            StatusCode::BAD_REQUEST,
            "This app is not connected",
            "Go back to your account page and try again.",
        );
    }
    match app.remove_access(&user.id, &form.client_id).await {
        Ok(removed) => {
            if removed {
                app.audit().record(
                    "consent_revoked",
                    Some(&form.client_id),
                    Some(&user.id),
                    serde_json::json!({ "by": "account_page" }),
                );
            }
            see_other("/account?done=app#apps")
        }
        Err(e) => {
            tracing::error!(error = %e, "account: access could not be removed");
            unavailable_page(1)
        }
    }
}

#[derive(Deserialize)]
pub struct EndSessionForm {
    csrf_token: String,
    sid: String,
}

/// `POST /account/sessions/end`: signs out one of the person's devices.
pub async fn end_session(
    form: web::Form<EndSessionForm>,
    session: Session,
    app: web::Data<App>,
) -> HttpResponse {
    if !csrf_matches(&session, &form.csrf_token) {
        return session_expired();
    }
    let (who, user) = match person(&app, &session).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    match app.session_index().remove(&user.id, &form.sid).await {
        Ok(removed) => {
            if removed {
                app.audit().record(
                    "session_signed_out",
                    None,
                    Some(&user.id),
                    serde_json::json!({ "by": "account_page", "sessions": 1 }),
                );
            }
            if who.sid.as_deref() == Some(form.sid.as_str()) {
                session.purge();
                return see_other("/login");
            }
            see_other("/account?done=session#sessions")
        }
        Err(e) => {
            tracing::error!(error = %e, "account: a session could not be signed out");
            unavailable_page(1)
        }
    }
}

#[derive(Deserialize)]
pub struct CsrfForm {
    csrf_token: String,
}

/// `POST /account/sessions/end-others`: signs out every device but this one.
pub async fn end_other_sessions(
    form: web::Form<CsrfForm>,
    session: Session,
    app: web::Data<App>,
) -> HttpResponse {
    if !csrf_matches(&session, &form.csrf_token) {
        return session_expired();
    }
    let (who, user) = match person(&app, &session).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    match app
        .session_index()
        .remove_all_except(&user.id, who.sid.as_deref(), app.now())
        .await
    {
        Ok(count) => {
            app.audit().record(
                "session_signed_out",
                None,
                Some(&user.id),
                serde_json::json!({ "by": "account_page", "sessions": count }),
            );
            see_other("/account?done=others#sessions")
        }
        Err(e) => {
            tracing::error!(error = %e, "account: sessions could not be signed out");
            unavailable_page(1)
        }
    }
}

/// Only GET and POST reach these pages.
pub fn configure(
    cfg: &mut web::ServiceConfig,
    sessions: &actix_session::SessionMiddleware<crate::session::SessionBackend>,
) {
    cfg.service(
        web::resource(PATH)
            .route(web::get().to(account_page))
            .wrap(sessions.clone()),
    )
    .service(
        web::resource("/account/password")
            .route(web::post().to(change_password))
            .wrap(sessions.clone()),
    )
    .service(
        web::resource("/account/apps/remove")
            .route(web::post().to(remove_app))
            .wrap(sessions.clone()),
    )
    .service(
        web::resource("/account/sessions/end")
            .route(web::post().to(end_session))
            .wrap(sessions.clone()),
    )
    .service(
        web::resource("/account/sessions/end-others")
            .route(web::post().to(end_other_sessions))
            .wrap(sessions.clone()),
    );
}
