//! The device pages (RFC 8628 §3.3): a person types the code their device shows, signs in,
//! and approves or denies the device's request.

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::authorize::signed_in;
use super::pages::{error_page, html, see_other, session_expired, unavailable_page};
use crate::app::App;
use crate::limits::Limit;
use crate::oauth::device_authorization::{display_user_code, normalize_user_code};
use crate::session::{csrf_matches, csrf_token, RETURN_TO};
use crate::store::device::{Decision, DeviceRecord, PENDING};
use crate::views::{ConsentPage, DevicePage};

/// The code this session is deciding on.
const DEVICE_CODE: &str = "device_user_code";
/// Wrong codes typed in this session.
const FAILURES: &str = "device_failures";
/// Wrong codes one session may type before it must start over (the code space is small).
const MAX_SESSION_FAILURES: u64 = 5;

fn page(session: &Session, user_code: String, error: Option<String>) -> HttpResponse {
    let Ok(csrf) = csrf_token(session) else {
        return session_expired();
    };
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let page = DevicePage {
        csrf_token: csrf,
        user_code,
        error,
    };
    html(status, page.render(), &[])
}

#[derive(Deserialize)]
pub struct DeviceQuery {
    #[serde(default)]
    user_code: String,
}

/// `GET /device`: the code form, filled from `verification_uri_complete` — the person still
/// confirms the code is theirs (RFC 8628 §5.4).
pub async fn device_page(query: web::Query<DeviceQuery>, session: Session) -> HttpResponse {
    let shown = normalize_user_code(&query.user_code)
        .map(|c| display_user_code(&c))
        .unwrap_or_default();
    page(&session, shown, None)
}

#[derive(Deserialize)]
pub struct CodeForm {
    csrf_token: String,
    user_code: String,
}

/// `POST /device`: checks the code; wrong codes are limited per session and per address.
pub async fn enter_code(
    request: HttpRequest,
    form: web::Form<CodeForm>,
    session: Session,
    app: web::Data<App>,
) -> HttpResponse {
    if !csrf_matches(&session, &form.csrf_token) {
        return session_expired();
    }
    let address = super::client_address(&request, &app);
    // 0 turns the per-address limit off, as for the other limits.
    let address_limit = app.settings().device_code_failures_per_ip_per_minute;
    let per_address = Limit {
        max: address_limit.saturating_sub(1),
        window: 60,
    };
    // An IPv6 /64 counts as one address, as at sign-in.
    let address_key = format!(
        "device:failures:{}",
        crate::credential_limits::counted_network(address)
    );
    let failures: u64 = session.get(FAILURES).ok().flatten().unwrap_or(0);
    let over_address = address_limit > 0
        && app
            .limiter()
            .add(&address_key, 0, per_address, app.now())
            .await
            .is_err();
    if failures >= MAX_SESSION_FAILURES || over_address {
        metrics::counter!("portcullis_rate_limited_total", "endpoint" => "device").increment(1);
        let mut refused = error_page(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many wrong codes",
            "Start again from your device: it will show a new code.",
        );
        super::pages::with_retry_after(&mut refused, 60);
        return refused;
    }
    let typed = form.user_code.trim().to_string();
    let found = match normalize_user_code(&typed) {
        Some(code) => {
            let lookup = code.clone();
            match app
                .store()
                .run(move |s| s.find_device_by_user_code(&lookup))
                .await
            {
                Ok(found) => found.map(|r| (code, r)),
                Err(e) => {
                    tracing::error!(error = %e, "device code lookup failed");
                    return unavailable_page(1);
                }
            }
        }
        None => None,
    };
    let problem = match &found {
        None => Some("No device is waiting for this code. Check the code on your device."),
        Some((_, r)) if app.now() >= r.expires_at => {
            Some("This code has expired. Start again from your device to get a new one.")
        }
        Some((_, r)) if r.status != PENDING => {
            Some("This code was already used. Start again from your device to get a new one.")
        }
        Some(_) => None,
    };
    if let Some(message) = problem {
        let _ = session.insert(FAILURES, failures + 1);
        if address_limit > 0 {
            let _ = app
                .limiter()
                .add(&address_key, 1, per_address, app.now())
                .await;
        }
        app.audit().record(
            "device_code_refused",
            None,
            None,
            serde_json::json!({ "ip": address.to_string() }),
        );
        return page(&session, typed, Some(message.into()));
    }
    let Some((code, _)) = found else {
        return session_expired();
    };
    if session.insert(DEVICE_CODE, &code).is_err() {
        return session_expired();
    }
    see_other("/device/consent")
}

/// The pending authorization this session is deciding on, if it still waits.
async fn pending_device(
    app: &App,
    session: &Session,
) -> Result<Option<DeviceRecord>, HttpResponse> {
    let Some(code) = session.get::<String>(DEVICE_CODE).ok().flatten() else {
        return Ok(None);
    };
    match app
        .store()
        .run(move |s| s.find_device_by_user_code(&code))
        .await
    {
        Ok(found) => Ok(found.filter(|r| r.status == PENDING && app.now() < r.expires_at)),
        Err(e) => {
            tracing::error!(error = %e, "device code lookup failed");
            Err(unavailable_page(1))
        }
    }
}

fn gone() -> HttpResponse {
    error_page(
        StatusCode::BAD_REQUEST,
        "This code is no longer waiting",
        "It expired or was decided already. Start again from your device.",
    )
}

/// `GET /device/consent`: after sign-in, what the device asks for, to approve or deny.
pub async fn consent_page(session: Session, app: web::Data<App>) -> HttpResponse {
    let record = match pending_device(&app, &session).await {
        Ok(Some(record)) => record,
        Ok(None) => return gone(),
        Err(page) => return page,
    };
    let user = match signed_in(&app, &session).await {
        Ok(Some((_, user))) => user,
        Ok(None) => {
            // Sign in first, then come back here.
            if session.insert(RETURN_TO, "/device/consent").is_err() {
                return session_expired();
            }
            return see_other("/login");
        }
        Err(e) => {
            tracing::error!(error = %e, "device: the account could not be read");
            return unavailable_page(1);
        }
    };
    let client = match app.clients().find(&record.client_id).await {
        Ok(Some(client)) => client,
        Ok(None) => return gone(),
        Err(_) => return unavailable_page(1),
    };
    let requested: Vec<String> = record
        .scope
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    // RBAC: ask only for what the person's roles permit (the token gets no more).
    let scopes = app
        .authorization()
        .model()
        .consentable_scope(&requested, &user.roles);
    let Ok(csrf) = csrf_token(&session) else {
        return session_expired();
    };
    let audience = (record.audience != app.settings().issuer).then(|| record.audience.clone());
    let page = ConsentPage {
        action: "/device/decision",
        csrf_token: csrf,
        request_id: String::new(),
        client_name: client.name.clone(),
        username: user.username.clone(),
        scopes: super::pages::scope_views(&app, &scopes).await,
        audience,
        provenance: crate::views::Provenance::of(&client, None),
    };
    html(StatusCode::OK, page.render(), &[])
}

#[derive(Deserialize)]
pub struct DecisionForm {
    csrf_token: String,
    decision: String,
}

/// `POST /device/decision`: approve (the device's next poll gets tokens) or deny.
pub async fn decide(
    form: web::Form<DecisionForm>,
    session: Session,
    app: web::Data<App>,
) -> HttpResponse {
    if !csrf_matches(&session, &form.csrf_token) {
        return session_expired();
    }
    let record = match pending_device(&app, &session).await {
        Ok(Some(record)) => record,
        Ok(None) => return gone(),
        Err(page) => return page,
    };
    let (who, user) = match signed_in(&app, &session).await {
        Ok(Some(signed)) => signed,
        Ok(None) => return session_expired(),
        Err(_) => return unavailable_page(1),
    };
    session.remove(DEVICE_CODE);
    let approve = form.decision == "allow";
    let Ok(grant_id) = crate::secrets::generate_token() else {
        return unavailable_page(1);
    };
    let (code, client_id, now) = (
        record.user_code.clone(),
        record.client_id.clone(),
        app.now(),
    );
    let decided = {
        let user_id = user.id.clone();
        let grant = grant_id.clone();
        let auth_time = who.auth_time;
        app.store()
            .run(move |s| {
                let decision = if approve {
                    Decision::Approve {
                        user_id: &user_id,
                        auth_time,
                        grant_id: &grant,
                    }
                } else {
                    Decision::Deny
                };
                s.decide_device(&code, &client_id, decision, now)
            })
            .await
    };
    match decided {
        Ok(true) => {}
        Ok(false) => return gone(),
        Err(e) => {
            tracing::error!(error = %e, "device decision not stored");
            return unavailable_page(1);
        }
    }
    app.audit().record(
        if approve {
            "device_approved"
        } else {
            "device_denied"
        },
        Some(&record.client_id),
        Some(&user.id),
        serde_json::json!({ "scope": record.scope }),
    );
    if approve {
        error_page(
            StatusCode::OK,
            "Your device is connected",
            "You can close this page and return to your device.",
        )
    } else {
        error_page(
            StatusCode::OK,
            "The device was not connected",
            "You denied its request. You can close this page.",
        )
    }
}
