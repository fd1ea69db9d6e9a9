//! `GET|POST /logout`: OpenID Connect RP-Initiated Logout 1.0. The person confirms (a page with
//! a CSRF token), the session ends, and the browser returns to a registered
//! `post_logout_redirect_uri` with `state`.

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde_json::Value;

use super::pages::{error_page, html, see_other, session_expired};
use crate::app::App;
use crate::jose::jwt;
use crate::oauth::authorize::SignedIn;
use crate::oauth::params::Params;
use crate::session::{csrf_matches, csrf_token, SIGNED_IN};
use crate::views::{LoggedOutPage, LogoutPage};

pub async fn logout_get(
    request: HttpRequest,
    session: Session,
    app: web::Data<App>,
) -> HttpResponse {
    match Params::parse(request.query_string().as_bytes()) {
        Ok(params) => handle(&app, &session, &params).await,
        Err(_) => bad_request("The sign-out link is malformed."),
    }
}

pub async fn logout_post(body: web::Bytes, session: Session, app: web::Data<App>) -> HttpResponse {
    match Params::parse(&body) {
        Ok(params) => handle(&app, &session, &params).await,
        Err(_) => bad_request("The sign-out request is malformed."),
    }
}

fn bad_request(message: &str) -> HttpResponse {
    error_page(
        StatusCode::BAD_REQUEST,
        "This sign-out link is not valid",
        message,
    )
}

/// The client named by `id_token_hint` (its `aud`; expiry is not required, RP-Initiated
/// Logout §2) or `client_id`; they must agree when both are given.
fn client_of(app: &App, params: &Params) -> Result<Option<String>, &'static str> {
    let from_hint = match params
        .single("id_token_hint")
        .map_err(|_| "repeated id_token_hint")?
    {
        Some(hint) => {
            let keyring = app.keyring().current();
            let verified = jwt::verify(hint, |kid| keyring.verifier(kid))
                .ok_or("The id_token_hint is not a token this server issued.")?;
            if verified.claims.get("iss").and_then(Value::as_str)
                != Some(app.settings().issuer.as_str())
            {
                return Err("The id_token_hint is not a token this server issued.");
            }
            // An ID token, not an access token (RFC 9068 §2.1 types those `at+jwt`, and they
            // carry `client_id` and `scope`, which ID tokens never do).
            let access_token = verified
                .typ
                .as_deref()
                .is_some_and(|t| t.eq_ignore_ascii_case("at+jwt"))
                || verified.claims.contains_key("client_id")
                || verified.claims.contains_key("scope");
            if access_token {
                return Err("The id_token_hint is not an ID token.");
            }
            verified
                .claims
                .get("aud")
                .and_then(Value::as_str)
                .map(str::to_string)
        }
        None => None,
    };
    let from_param = params
        .single("client_id")
        .map_err(|_| "repeated client_id")?
        .map(str::to_string);
    match (from_hint, from_param) {
        (Some(a), Some(b)) if a != b => Err("The id_token_hint and client_id do not match."),
        (a, b) => Ok(a.or(b)),
    }
}

async fn handle(app: &App, session: &Session, params: &Params) -> HttpResponse {
    let client_id = match client_of(app, params) {
        Ok(id) => id,
        Err(message) => return bad_request(message),
    };
    let client = match &client_id {
        Some(id) => match app.clients().find(id).await {
            Ok(Some(c)) => Some(c),
            _ => return bad_request("The application is not registered with Portcullis."),
        },
        None => None,
    };
    let Ok(redirect) = params.single("post_logout_redirect_uri") else {
        return bad_request("The parameter post_logout_redirect_uri appears more than once.");
    };
    // Only to a URI registered for the identified client (exact match).
    if let Some(uri) = redirect {
        let registered = client
            .as_ref()
            .is_some_and(|c| c.post_logout_redirect_uris.iter().any(|r| r == uri));
        if !registered {
            return bad_request(
                "The application asked to return to an address it has not registered for sign-out.",
            );
        }
    }
    let state = params.single("state").ok().flatten().unwrap_or_default();
    let client_name = client.as_ref().map(|c| c.name.clone());
    match params.single("decision").ok().flatten() {
        None => {
            let Ok(csrf) = csrf_token(session) else {
                return session_expired();
            };
            let page = LogoutPage {
                csrf_token: csrf,
                client_name,
                id_token_hint: params
                    .single("id_token_hint")
                    .ok()
                    .flatten()
                    .unwrap_or_default()
                    .to_string(),
                post_logout_redirect_uri: redirect.unwrap_or_default().to_string(),
                state: state.to_string(),
                client_id: client_id.unwrap_or_default(),
            };
            html(
                StatusCode::OK,
                page.render(),
                &redirect.into_iter().collect::<Vec<_>>(),
            )
        }
        Some(decision) => {
            let submitted = params
                .single("csrf_token")
                .ok()
                .flatten()
                .unwrap_or_default();
            if !csrf_matches(session, submitted) {
                return session_expired();
            }
            if decision != "logout" {
                return error_page(
                    StatusCode::OK,
                    "You are still signed in",
                    "You can close this page.",
                );
            }
            if let Ok(Some(signed_in)) = session.get::<SignedIn>(SIGNED_IN) {
                if let Some(sid) = &signed_in.sid {
                    // Best effort: the session itself ends below either way.
                    if let Err(e) = app.session_index().remove(&signed_in.user_id, sid).await {
                        tracing::warn!(error = %e, "session index not updated at sign-out");
                    }
                }
            }
            session.purge();
            tracing::info!(event = "logout", "session ended");
            match redirect {
                Some(uri) => {
                    let mut url = match url::Url::parse(uri) {
                        Ok(u) => u,
                        Err(_) => return bad_request("The return address is not valid."),
                    };
                    if !state.is_empty() {
                        url.query_pairs_mut().append_pair("state", state);
                    }
                    see_other(url.as_str())
                }
                None => html(StatusCode::OK, LoggedOutPage { client_name }.render(), &[]),
            }
        }
    }
}
