//! The authorization endpoint, RFC 6749 §4.1.1–4.1.2 with OpenID Connect Core §3.1.2.
//!
//! Checks run in order. Until the client and the redirect URI are verified, failures are shown
//! to the person (never redirected: that would make us an open redirector); after that they go
//! back to the client with `error`, `state` and `iss` (RFC 9207).

use serde::{Deserialize, Serialize};
use url::Url;

use super::params::Params;
use super::pkce;
use super::scope::Scope;
use crate::app::App;
use crate::clients::{Client, GrantType};
use crate::error::{ErrorCode, OAuthError};
use crate::store::grants::CodeRecord;
use crate::store::StoreError;
use crate::tokens::refresh_token;

/// The longest `state` and `nonce` kept (RFC 6749 and OpenID Connect set no limit; the
/// request waits in the browser session, whose size is bounded).
pub const MAX_STATE_BYTES: usize = 2048;
pub const MAX_LOGIN_HINT_BYTES: usize = 256;

/// A validated authorization request, kept in the session while the person signs in.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuthorizationRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: Vec<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub prompt: Vec<String>,
    pub max_age: Option<i64>,
    pub login_hint: Option<String>,
    pub audience: String,
    /// Set once the person signed in for this request (so `prompt=login` does not loop).
    #[serde(default)]
    pub fresh_login: bool,
    /// The request named `redirect_uri` (RFC 6749 §4.1.3: the token request must then too).
    #[serde(default = "named")]
    pub redirect_uri_given: bool,
    /// RFC 9449 §10: the DPoP key the code is bound to (`dpop_jkt`, or a proof at `/par`).
    #[serde(default)]
    pub dpop_jkt: Option<String>,
}

fn named() -> bool {
    true
}

impl AuthorizationRequest {
    pub fn prompts(&self, value: &str) -> bool {
        self.prompt.iter().any(|p| p == value)
    }
}

/// A failure of the authorization request.
#[derive(Debug)]
pub enum AuthorizeError {
    /// Client or redirect URI not verified: show a page (title, message).
    Page(&'static str, String),
    /// Report to the client at its verified redirect URI.
    Redirect {
        redirect_uri: String,
        state: Option<String>,
        error: OAuthError,
    },
    /// The database did not answer: nothing is known about the request yet.
    Unavailable(StoreError),
}

fn page(message: impl Into<String>) -> AuthorizeError {
    AuthorizeError::Page("This sign-in link is not valid", message.into())
}

/// Validates an authorization request in the order the specs require.
pub async fn validate(
    app: &App,
    params: &Params,
) -> Result<(AuthorizationRequest, std::sync::Arc<Client>), AuthorizeError> {
    let single = |name: &str| {
        params
            .single(name)
            .map_err(|_| page(format!("The parameter `{name}` appears more than once.")))
    };
    // 1. The client.
    let client_id = single("client_id")?
        .ok_or_else(|| page("The application did not say who it is (client_id is missing)."))?;
    let client = match app
        .clients()
        .lookup(client_id)
        .await
        .map_err(AuthorizeError::Unavailable)?
    {
        crate::clients::Lookup::Found(client) => client,
        crate::clients::Lookup::Unknown => {
            return Err(page("The application is not registered with Portcullis."))
        }
        // draft-ietf-oauth-client-id-metadata-document §4.1.1: abort, and say why.
        crate::clients::Lookup::Refused(why) => {
            return Err(AuthorizeError::Page(
                "This application could not be verified",
                format!(
                    "The application identifies itself by the address {}, but Portcullis could not use the description published there: {why}.",
                    client_id.chars().take(200).collect::<String>()
                ),
            ))
        }
    };
    // 2. The redirect URI: exact match (RFC 9700 §4.1.3).
    let redirect_uri_given = single("redirect_uri")?.is_some();
    let redirect_uri = match single("redirect_uri")? {
        Some(uri)
            if client
                .redirect_uris
                .iter()
                .any(|r| super::uri::redirect_uri_matches(r, uri)) =>
        {
            uri.to_string()
        }
        Some(_) => {
            return Err(page(
                "The application asked to return to an address it has not registered.",
            ))
        }
        None => match client.redirect_uris.as_slice() {
            [only] => only.clone(),
            _ => {
                return Err(page(
                    "The application did not say where to return (redirect_uri is missing).",
                ))
            }
        },
    };
    // A `state` too long to keep is not echoed back (the error says so instead).
    let state = params
        .single("state")
        .ok()
        .flatten()
        .filter(|s| s.len() <= MAX_STATE_BYTES)
        .map(str::to_string);
    let fail = |error: OAuthError| AuthorizeError::Redirect {
        redirect_uri: redirect_uri.clone(),
        state: state.clone(),
        error,
    };
    // 3. From here on, errors go back to the client.
    for name in [
        "state",
        "response_type",
        "scope",
        "nonce",
        "code_challenge",
        "code_challenge_method",
        "prompt",
        "max_age",
        "login_hint",
    ] {
        params.single(name).map_err(fail)?;
    }
    // The request is kept in the browser session while the person signs in: its free-form
    // parameters are bounded, so the session is (docs/configuration.md, "Browser sessions").
    for (name, max) in [
        ("state", MAX_STATE_BYTES),
        ("nonce", MAX_STATE_BYTES),
        ("login_hint", MAX_LOGIN_HINT_BYTES),
    ] {
        if params
            .single(name)
            .ok()
            .flatten()
            .is_some_and(|v| v.len() > max)
        {
            return Err(fail(OAuthError::invalid_request(format!(
                "`{name}` is longer than {max} bytes"
            ))));
        }
    }
    if params.single("request").map_err(fail)?.is_some() {
        return Err(fail(OAuthError::new(
            ErrorCode::InvalidRequest,
            "request objects are not supported",
        )));
    }
    if params.single("request_uri").map_err(fail)?.is_some() {
        return Err(fail(OAuthError::new(
            ErrorCode::InvalidRequest,
            "request_uri is not supported",
        )));
    }
    match params.single("response_type").map_err(fail)? {
        None => {
            return Err(fail(OAuthError::invalid_request(
                "parameter `response_type` is missing",
            )))
        }
        Some("code") => {}
        Some(_) => {
            return Err(fail(OAuthError::new(
                ErrorCode::UnsupportedResponseType,
                "only response_type=code is supported",
            )))
        }
    }
    if let Some(mode) = params.single("response_mode").map_err(fail)? {
        if mode != "query" {
            return Err(fail(OAuthError::invalid_request(
                "only response_mode=query is supported",
            )));
        }
    }
    if !client.allows_grant(GrantType::AuthorizationCode) {
        return Err(fail(OAuthError::unauthorized_client(
            "this client may not use the authorization code grant",
        )));
    }
    let requested = match params.single("scope").map_err(fail)? {
        Some(text) => Scope::parse(text).map_err(|bad| {
            fail(OAuthError::invalid_scope(format!(
                "`{bad}` is not a valid scope"
            )))
        })?,
        None => Scope::default(),
    };
    let scope = if requested.is_empty() {
        Scope::from_tokens(&client.scopes)
    } else {
        if let Some(first) = requested.excess_over(&client.scopes).first() {
            return Err(fail(OAuthError::invalid_scope(format!(
                "scope `{first}` is not allowed for this client"
            ))));
        }
        requested
    };
    super::delegation::check_requested(app, scope.tokens().iter().map(String::as_str))
        .await
        .map_err(fail)?;
    // PKCE (RFC 7636 §4.3, RFC 9700 §2.1.1): S256 only; required for public clients and, by
    // default, for every client.
    let code_challenge = params.single("code_challenge").map_err(fail)?;
    match params.single("code_challenge_method").map_err(fail)? {
        None if code_challenge.is_some() => {
            return Err(fail(OAuthError::invalid_request(
                "code_challenge_method must be S256 (plain is not allowed)",
            )))
        }
        Some("S256") | None => {}
        Some(_) => {
            return Err(fail(OAuthError::invalid_request(
                "code_challenge_method must be S256",
            )))
        }
    }
    match code_challenge {
        Some(c) if !pkce::is_valid(c) => {
            return Err(fail(OAuthError::invalid_request(
                "code_challenge is malformed",
            )))
        }
        // Public clients, and clients nobody vetted (RFC 7591, metadata documents), always.
        None if client.is_public() || client.is_self_described() || app.settings().require_pkce => {
            return Err(fail(OAuthError::invalid_request(
                "code_challenge (PKCE, S256) is required",
            )))
        }
        _ => {}
    }
    let prompt: Vec<String> = params
        .single("prompt")
        .map_err(fail)?
        .map(|p| {
            p.split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    for p in &prompt {
        if !["none", "login", "consent", "select_account"].contains(&p.as_str()) {
            return Err(fail(OAuthError::invalid_request(format!(
                "prompt value `{}` is not supported",
                p.chars().take(40).collect::<String>()
            ))));
        }
    }
    if prompt.iter().any(|p| p == "none") && prompt.len() > 1 {
        return Err(fail(OAuthError::invalid_request(
            "prompt=none cannot be combined with other values",
        )));
    }
    let max_age = match params.single("max_age").map_err(fail)? {
        Some(text) => Some(
            text.parse::<i64>()
                .ok()
                .filter(|v| *v >= 0)
                .ok_or_else(|| {
                    fail(OAuthError::invalid_request(
                        "max_age must be a non-negative integer",
                    ))
                })?,
        ),
        None => None,
    };
    let audience = super::grants::resolve_audience(app, &client, params).map_err(fail)?;
    let dpop_jkt = match params.single("dpop_jkt").map_err(fail)? {
        Some(jkt) if super::dpop::is_thumbprint(jkt) => Some(jkt.to_string()),
        Some(_) => {
            return Err(fail(OAuthError::invalid_request(
                "dpop_jkt must be a base64url SHA-256 JWK thumbprint (RFC 9449 §10)",
            )))
        }
        None => None,
    };
    let request = AuthorizationRequest {
        client_id: client.id.clone(),
        redirect_uri: redirect_uri.clone(),
        scope: scope.tokens().to_vec(),
        state: state.clone(),
        nonce: params.single("nonce").map_err(fail)?.map(str::to_string),
        code_challenge: code_challenge.map(str::to_string),
        prompt,
        max_age,
        login_hint: params
            .single("login_hint")
            .map_err(fail)?
            .map(str::to_string),
        audience,
        fresh_login: false,
        redirect_uri_given,
        dpop_jkt,
    };
    Ok((request, client))
}

/// Who is signed in to the browser, as kept in the session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignedIn {
    pub user_id: String,
    pub auth_time: i64,
    /// This sign-in's id in the person's session index (`session::index`); absent in
    /// sessions signed in before the index existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

/// What to do with a validated request, given the session and remembered consent.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    Login,
    Consent,
    IssueCode,
}

/// OpenID Connect Core §3.1.2.3: sign-in is needed without a session, for `prompt=login`,
/// or when the last sign-in is older than `max_age`; consent when not given for every scope.
pub fn next_step(
    request: &AuthorizationRequest,
    signed_in: Option<&SignedIn>,
    consented: &[String],
    now: i64,
) -> Result<Next, OAuthError> {
    let needs_login = match signed_in {
        None => true,
        Some(s) => {
            (request.prompts("login") && !request.fresh_login)
                || request.max_age.is_some_and(|max| now - s.auth_time > max)
        }
    };
    if needs_login {
        if request.prompts("none") {
            return Err(OAuthError::new(
                ErrorCode::LoginRequired,
                "the user is not signed in",
            ));
        }
        return Ok(Next::Login);
    }
    let needs_consent =
        request.prompts("consent") || request.scope.iter().any(|s| !consented.contains(s));
    if needs_consent {
        if request.prompts("none") {
            return Err(OAuthError::new(
                ErrorCode::ConsentRequired,
                "the user has not consented",
            ));
        }
        return Ok(Next::Consent);
    }
    Ok(Next::IssueCode)
}

/// Stores a new authorization code and returns it (RFC 6749 §4.1.2).
pub async fn issue_code(
    app: &App,
    request: &AuthorizationRequest,
    signed_in: &SignedIn,
) -> Result<String, OAuthError> {
    let code = refresh_token::generate().map_err(|e| OAuthError::server_error(&e))?;
    let grant_id = refresh_token::generate().map_err(|e| OAuthError::server_error(&e))?;
    let now = app.now();
    let record = CodeRecord {
        code_hash: refresh_token::hash(&code),
        grant_id,
        client_id: request.client_id.clone(),
        user_id: signed_in.user_id.clone(),
        // Kept only when the request named it: then the token request must repeat it.
        redirect_uri: if request.redirect_uri_given {
            request.redirect_uri.clone()
        } else {
            String::new()
        },
        scope: request.scope.join(" "),
        audience: request.audience.clone(),
        nonce: request.nonce.clone(),
        code_challenge: request.code_challenge.clone().unwrap_or_default(),
        auth_time: signed_in.auth_time,
        expires_at: now + i64::try_from(app.settings().authorization_code_ttl).unwrap_or(60),
        used_at: None,
        access_token_jti: None,
        dpop_jkt: request.dpop_jkt.clone(),
    };
    app.store()
        .run(move |s| s.insert_code(&record, now))
        .await
        .map_err(|e| OAuthError::temporarily_unavailable(&e))?;
    Ok(code)
}

/// The redirect back to the client with `pairs` added to the query, plus `state` and `iss`.
pub fn redirect_with(
    redirect_uri: &str,
    pairs: &[(&str, &str)],
    state: Option<&str>,
    issuer: &str,
) -> String {
    let Ok(mut url) = Url::parse(redirect_uri) else {
        return redirect_uri.to_string();
    };
    {
        let mut query = url.query_pairs_mut();
        for (k, v) in pairs {
            query.append_pair(k, v);
        }
        if let Some(state) = state {
            query.append_pair("state", state);
        }
        query.append_pair("iss", issuer);
    }
    url.to_string()
}

/// An error response to the client (RFC 6749 §4.1.2.1, RFC 9207).
pub fn error_redirect(
    redirect_uri: &str,
    error: &OAuthError,
    state: Option<&str>,
    issuer: &str,
) -> String {
    redirect_with(
        redirect_uri,
        &[
            ("error", error.code.as_str()),
            ("error_description", &error.description),
        ],
        state,
        issuer,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(prompt: &[&str], max_age: Option<i64>) -> AuthorizationRequest {
        AuthorizationRequest {
            client_id: "c".into(),
            redirect_uri: "https://app/cb".into(),
            scope: vec!["openid".into(), "profile".into()],
            state: None,
            nonce: None,
            code_challenge: None,
            prompt: prompt.iter().map(|s| s.to_string()).collect(),
            max_age,
            login_hint: None,
            audience: "https://api".into(),
            fresh_login: false,
            redirect_uri_given: true,
            dpop_jkt: None,
        }
    }

    fn signed_in(auth_time: i64) -> SignedIn {
        SignedIn {
            user_id: "u".into(),
            auth_time,
            sid: None,
        }
    }

    #[test]
    fn login_then_consent_then_code() {
        let all = ["openid".to_string(), "profile".to_string()];
        assert_eq!(
            next_step(&request(&[], None), None, &[], 0).unwrap(),
            Next::Login
        );
        assert_eq!(
            next_step(&request(&[], None), Some(&signed_in(0)), &all[..1], 0).unwrap(),
            Next::Consent
        );
        assert_eq!(
            next_step(&request(&[], None), Some(&signed_in(0)), &all, 0).unwrap(),
            Next::IssueCode
        );
        assert_eq!(
            next_step(&request(&["consent"], None), Some(&signed_in(0)), &all, 0).unwrap(),
            Next::Consent
        );
        assert_eq!(
            next_step(&request(&["login"], None), Some(&signed_in(0)), &all, 0).unwrap(),
            Next::Login
        );
        assert_eq!(
            next_step(&request(&[], Some(60)), Some(&signed_in(0)), &all, 61).unwrap(),
            Next::Login
        );
    }

    #[test]
    fn prompt_none_never_interacts() {
        let err = next_step(&request(&["none"], None), None, &[], 0).unwrap_err();
        assert_eq!(err.code, ErrorCode::LoginRequired);
        let err = next_step(&request(&["none"], None), Some(&signed_in(0)), &[], 0).unwrap_err();
        assert_eq!(err.code, ErrorCode::ConsentRequired);
    }

    #[test]
    fn redirects_carry_state_and_issuer() {
        let url = redirect_with(
            "https://app/cb?x=1",
            &[("code", "abc")],
            Some("s t"),
            "https://issuer",
        );
        assert_eq!(
            url,
            "https://app/cb?x=1&code=abc&state=s+t&iss=https%3A%2F%2Fissuer"
        );
    }
}
