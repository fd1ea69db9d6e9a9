//! `GET|POST /authorize`, the sign-in continuation, and `POST /consent`.

use std::net::IpAddr;

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::pages::{error_page, html, scope_views, see_other, session_expired, unavailable_page};
use crate::app::App;
use crate::clients::Client;
use crate::error::OAuthError;
use crate::oauth::authorize::{self, AuthorizationRequest, AuthorizeError, Next, SignedIn};
use crate::oauth::par;
use crate::oauth::params::Params;
use crate::session::{csrf_matches, csrf_token};
use crate::users::User;
use crate::views::ConsentPage;

use crate::session::SIGNED_IN;
const PENDING_PREFIX: &str = "authz:";

pub async fn authorize_get(
    request: HttpRequest,
    session: Session,
    app: web::Data<App>,
) -> HttpResponse {
    let address = super::client_address(&request, &app);
    match Params::parse(request.query_string().as_bytes()) {
        Ok(params) => start(&app, &session, &params, address).await,
        Err(_) => bad_link("The sign-in link is malformed."),
    }
}

pub async fn authorize_post(
    request: HttpRequest,
    body: web::Bytes,
    session: Session,
    app: web::Data<App>,
) -> HttpResponse {
    let address = super::client_address(&request, &app);
    match Params::parse(&body) {
        Ok(params) => start(&app, &session, &params, address).await,
        Err(_) => bad_link("The sign-in request is malformed."),
    }
}

fn bad_link(message: &str) -> HttpResponse {
    error_page(
        StatusCode::BAD_REQUEST,
        "This sign-in link is not valid",
        message,
    )
}

async fn start(app: &App, session: &Session, params: &Params, address: IpAddr) -> HttpResponse {
    if let Ok(Some(request_uri)) = params.single("request_uri") {
        return start_pushed(app, session, params, request_uri, address).await;
    }
    match authorize::validate(app, params).await {
        Ok((request, client)) => {
            // RFC 9126 §5–6: a client (or the server) may insist on pushed requests only.
            if app.settings().require_pushed_authorization_requests
                || client.require_pushed_authorization_requests
            {
                return redirect_error(
                    app,
                    &request.redirect_uri,
                    &OAuthError::invalid_request(
                        "this client must push its authorization requests (RFC 9126)",
                    ),
                    request.state.as_deref(),
                );
            }
            proceed(app, session, request, &client, Some(address)).await
        }
        Err(AuthorizeError::Page(title, message)) => {
            error_page(StatusCode::BAD_REQUEST, title, &message)
        }
        Err(AuthorizeError::Unavailable(e)) => {
            tracing::warn!(error = %e, "authorization request: database unavailable");
            unavailable_page(1)
        }
        Err(AuthorizeError::Redirect {
            redirect_uri,
            state,
            error,
        }) => redirect_error(app, &redirect_uri, &error, state.as_deref()),
    }
}

/// RFC 9126 §4: `/authorize?client_id=…&request_uri=…` uses the pushed request only, once,
/// for the client that pushed it.
async fn start_pushed(
    app: &App,
    session: &Session,
    params: &Params,
    request_uri: &str,
    address: IpAddr,
) -> HttpResponse {
    let Ok(Some(client_id)) = params.single("client_id") else {
        return bad_link("The application did not say who it is (client_id is missing).");
    };
    let request = match par::take(app, client_id, request_uri).await {
        Ok(Some(request)) => request,
        Ok(None) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "This sign-in link has expired",
                "The application's sign-in request expired or was used already. Go back to the application and start again.",
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "pushed request lookup failed");
            return unavailable_page(1);
        }
    };
    let client = match app.clients().find(client_id).await {
        // Checked when pushed; the registration may have changed since.
        Ok(Some(client))
            if client
                .redirect_uris
                .iter()
                .any(|r| crate::oauth::uri::redirect_uri_matches(r, &request.redirect_uri)) =>
        {
            client
        }
        Ok(_) => return bad_link("The application is no longer registered for this request."),
        Err(_) => return unavailable_page(1),
    };
    proceed(app, session, request, &client, Some(address)).await
}

fn redirect_error(
    app: &App,
    redirect_uri: &str,
    error: &OAuthError,
    state: Option<&str>,
) -> HttpResponse {
    see_other(&authorize::error_redirect(
        redirect_uri,
        error,
        state,
        &app.settings().issuer,
    ))
}

/// The signed-in user of this session (and the account), if it still exists and is enabled.
/// A database that does not answer is an error, not a sign-out: a blip must not end sessions.
pub async fn signed_in(
    app: &App,
    session: &Session,
) -> Result<Option<(SignedIn, User)>, crate::store::StoreError> {
    let Some(signed_in) = session.get::<SignedIn>(SIGNED_IN).ok().flatten() else {
        return Ok(None);
    };
    // An absolute lifetime: however active, a sign-in ends `session_max_lifetime` after it.
    let max = i64::try_from(app.settings().session_max_lifetime).unwrap_or(i64::MAX / 4);
    if app.now() - signed_in.auth_time >= max {
        session.remove(SIGNED_IN);
        return Ok(None);
    }
    // Signed out from another device (the account page) or by a password change.
    if let Some(sid) = &signed_in.sid {
        let live = app
            .session_index()
            .contains(&signed_in.user_id, sid, app.now())
            .await
            .map_err(|e| crate::store::StoreError::Unavailable(e.to_string()))?;
        if !live {
            session.remove(SIGNED_IN);
            return Ok(None);
        }
    }
    let user_id = signed_in.user_id.clone();
    let user = app.store().run(move |s| s.find_user(&user_id)).await?;
    match user {
        Some(u) if !u.disabled => Ok(Some((signed_in, u))),
        _ => {
            session.remove(SIGNED_IN);
            Ok(None)
        }
    }
}

pub fn set_signed_in(session: &Session, signed_in: &SignedIn) -> Result<(), String> {
    session
        .insert(SIGNED_IN, signed_in)
        .map_err(|e| e.to_string())
}

pub fn pending(session: &Session, id: &str) -> Option<AuthorizationRequest> {
    if id.is_empty() || id.len() > 64 {
        return None;
    }
    session.get(&format!("{PENDING_PREFIX}{id}")).ok().flatten()
}

/// Pending authorization requests one session keeps; starting another forgets the oldest.
const MAX_PENDING: usize = 3;
const PENDING_ORDER: &str = "authz_order";

/// Keeps a pending request in the session, at most `MAX_PENDING` of them (the newest).
pub fn save_pending(
    session: &Session,
    id: &str,
    request: &AuthorizationRequest,
) -> Result<(), String> {
    let mut order: Vec<String> = session
        .get(PENDING_ORDER)
        .ok()
        .flatten()
        .unwrap_or_default();
    if !order.iter().any(|known| known == id) {
        order.push(id.to_string());
    }
    while order.len() > MAX_PENDING {
        let oldest = order.remove(0);
        session.remove(&format!("{PENDING_PREFIX}{oldest}"));
    }
    session
        .insert(PENDING_ORDER, &order)
        .map_err(|e| e.to_string())?;
    session
        .insert(format!("{PENDING_PREFIX}{id}"), request)
        .map_err(|e| e.to_string())
}

/// Decides the next step for a validated request: sign in, consent, or issue the code.
/// `address`: where a new request comes from, for the limit on requests that wait for a
/// sign-in (`None` when one resumes after signing in).
async fn proceed(
    app: &App,
    session: &Session,
    mut request: AuthorizationRequest,
    client: &Client,
    address: Option<IpAddr>,
) -> HttpResponse {
    let signed = match signed_in(app, session).await {
        Ok(signed) => signed,
        Err(e) => {
            tracing::error!(error = %e, "authorization: the account could not be read");
            return unavailable_page(1);
        }
    };
    if let Some((_, user)) = &signed {
        // RBAC: ask consent only for what the person's roles permit (the token gets no more,
        // and only its audience's share).
        request.scope = app
            .authorization()
            .model()
            .consentable_scope(&request.scope, &user.roles);
    }
    let (who, user) = match signed {
        Some((who, user)) => (Some(who), Some(user)),
        None => (None, None),
    };
    let consented = match &who {
        // The console is Portcullis itself (first party): no consent to ask. Who may use it
        // is decided after sign-in (the admin role).
        Some(_) if client.id == super::console::CLIENT_ID => request.scope.clone(),
        Some(s) => {
            let (user, client_id) = (s.user_id.clone(), client.id.clone());
            match app
                .store()
                .run(move |st| st.consented_scopes(&user, &client_id))
                .await
            {
                Ok(scopes) => scopes,
                Err(e) => {
                    tracing::error!(error = %e, "authorization: consents could not be read");
                    return unavailable_page(1);
                }
            }
        }
        None => Vec::new(),
    };
    let next = authorize::next_step(&request, who.as_ref(), &consented, app.now());
    match (next, who) {
        (Err(error), _) => {
            redirect_error(app, &request.redirect_uri, &error, request.state.as_deref())
        }
        (Ok(Next::IssueCode), Some(who)) => issue(app, &request, &who).await,
        (Ok(Next::Consent), Some(_)) => {
            let Ok(id) = crate::secrets::generate_token() else {
                return session_expired();
            };
            if save_pending(session, &id, &request).is_err() {
                return session_expired();
            }
            let username = user
                .as_ref()
                .map(|u| u.username.as_str())
                .unwrap_or_default();
            consent_page(app, session, &request, client, username, &id).await
        }
        (Ok(_), _) => {
            // Requests that wait in a session for someone to sign in, per address: what an
            // anonymous flood can make the session store hold (docs/configuration.md).
            if let Some(address) = address {
                let limit = crate::limits::Limit {
                    max: app.settings().authorize_requests_per_ip_per_minute,
                    window: 60,
                };
                if limit.max > 0 {
                    let key = format!("authorize:{address}");
                    if let Err(retry_after) = app.limiter().add(&key, 1, limit, app.now()).await {
                        metrics::counter!("portcullis_rate_limited_total", "endpoint" => "authorize")
                            .increment(1);
                        let mut page = error_page(
                            StatusCode::TOO_MANY_REQUESTS,
                            "Too many sign-in requests",
                            "Too many sign-ins were started from your network. Please try again in a minute.",
                        );
                        super::pages::with_retry_after(&mut page, retry_after);
                        return page;
                    }
                }
            }
            let Ok(id) = crate::secrets::generate_token() else {
                return session_expired();
            };
            if save_pending(session, &id, &request).is_err() {
                return session_expired();
            }
            see_other(&format!("/login?request={id}"))
        }
    }
}

async fn issue(app: &App, request: &AuthorizationRequest, who: &SignedIn) -> HttpResponse {
    match authorize::issue_code(app, request, who).await {
        Ok(code) => {
            metrics::counter!("portcullis_authorization_codes_issued_total").increment(1);
            see_other(&authorize::redirect_with(
                &request.redirect_uri,
                &[("code", &code)],
                request.state.as_deref(),
                &app.settings().issuer,
            ))
        }
        Err(error) => redirect_error(app, &request.redirect_uri, &error, request.state.as_deref()),
    }
}

async fn consent_page(
    app: &App,
    session: &Session,
    request: &AuthorizationRequest,
    client: &Client,
    username: &str,
    id: &str,
) -> HttpResponse {
    let Ok(csrf) = csrf_token(session) else {
        return session_expired();
    };
    let audience = (request.audience != app.settings().issuer).then(|| request.audience.clone());
    let page = ConsentPage {
        action: "/consent",
        csrf_token: csrf,
        request_id: id.to_string(),
        client_name: client.name.clone(),
        username: username.to_string(),
        scopes: scope_views(app, &request.scope).await,
        audience,
        provenance: crate::views::Provenance::of(client, Some(&request.redirect_uri)),
    };
    html(StatusCode::OK, page.render(), &[&request.redirect_uri])
}

#[derive(Deserialize)]
pub struct ResumeQuery {
    request: String,
}

/// `GET /authorize/resume`: continue a pending request after sign-in.
pub async fn resume(
    query: web::Query<ResumeQuery>,
    session: Session,
    app: web::Data<App>,
) -> HttpResponse {
    let Some(request) = pending(&session, &query.request) else {
        return session_expired();
    };
    session.remove(&format!("{PENDING_PREFIX}{}", query.request));
    let client = match app.clients().find(&request.client_id).await {
        Ok(Some(client)) => client,
        Ok(None) => return bad_link("The application is no longer registered."),
        Err(e) => {
            tracing::error!(error = %e, "authorization: the client could not be read");
            return unavailable_page(1);
        }
    };
    proceed(&app, &session, request, &client, None).await
}

#[derive(Deserialize)]
pub struct ConsentForm {
    csrf_token: String,
    request: String,
    decision: String,
}

/// `POST /consent`: Allow or Deny (Deny → `access_denied`, RFC 6749 §4.1.2.1).
pub async fn consent(
    form: web::Form<ConsentForm>,
    session: Session,
    app: web::Data<App>,
) -> HttpResponse {
    if !csrf_matches(&session, &form.csrf_token) {
        return session_expired();
    }
    let Some(request) = pending(&session, &form.request) else {
        return session_expired();
    };
    let who = match signed_in(&app, &session).await {
        Ok(Some((who, _))) => who,
        Ok(None) => return session_expired(),
        Err(e) => {
            tracing::error!(error = %e, "consent: the account could not be read");
            return unavailable_page(1);
        }
    };
    session.remove(&format!("{PENDING_PREFIX}{}", form.request));
    match form.decision.as_str() {
        "allow" => {
            let (user, client, scopes, now) = (
                who.user_id.clone(),
                request.client_id.clone(),
                request.scope.clone(),
                app.now(),
            );
            if let Err(e) = app
                .store()
                .run(move |s| s.save_consent(&user, &client, &scopes, now))
                .await
            {
                tracing::error!(error = %e, "saving consent failed");
                return redirect_error(
                    &app,
                    &request.redirect_uri,
                    &OAuthError::temporarily_unavailable(&e),
                    request.state.as_deref(),
                );
            }
            app.audit().record(
                "consent_given",
                Some(&request.client_id),
                Some(&who.user_id),
                serde_json::json!({ "scope": request.scope.join(" ") }),
            );
            issue(&app, &request, &who).await
        }
        _ => {
            app.audit().record(
                "consent_denied",
                Some(&request.client_id),
                Some(&who.user_id),
                serde_json::json!({ "scope": request.scope.join(" ") }),
            );
            redirect_error(
                &app,
                &request.redirect_uri,
                &OAuthError::new(
                    crate::error::ErrorCode::AccessDenied,
                    "the user denied the request",
                ),
                request.state.as_deref(),
            )
        }
    }
}
