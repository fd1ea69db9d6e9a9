//! Client authentication at the token endpoint (RFC 6749 §2.3.1).

use std::net::IpAddr;
use std::sync::Arc;

use base64::Engine;
use percent_encoding::percent_decode_str;

use super::params::Params;
use crate::app::App;
use crate::clients::{AuthMethod, Client, Lookup};
use crate::error::{Challenge, OAuthError};
use crate::jose::keys::Verifier;

/// The credentials a request presented.
#[derive(Debug, PartialEq, Eq)]
pub enum Presented {
    Basic {
        client_id: String,
        secret: String,
    },
    Post {
        client_id: String,
        secret: String,
    },
    /// A public client identifying itself (RFC 6749 §3.2.1).
    IdOnly {
        client_id: String,
    },
    /// RFC 7523 §2.2: a JWT the client signed (`private_key_jwt`).
    Assertion {
        client_id: String,
        assertion: String,
    },
}

impl Presented {
    pub fn client_id(&self) -> &str {
        match self {
            Presented::Basic { client_id, .. }
            | Presented::Post { client_id, .. }
            | Presented::IdOnly { client_id }
            | Presented::Assertion { client_id, .. } => client_id,
        }
    }

    fn challenge(&self) -> Challenge {
        match self {
            Presented::Basic { .. } => Challenge::Basic,
            _ => Challenge::None,
        }
    }
}

pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// How far ahead an assertion's `exp` may be: assertions are meant to be short-lived.
const MAX_ASSERTION_LIFETIME: i64 = 300;
const CLOCK_SKEW: i64 = 60;

/// A claim read before the signature is checked (only to find the client's keys).
fn unverified_claim(jwt: &str, name: &str) -> Option<String> {
    let payload = jwt.split('.').nth(1)?;
    let claims: serde_json::Value =
        serde_json::from_slice(&crate::jose::b64_decode(payload)?).ok()?;
    claims.get(name)?.as_str().map(str::to_string)
}

/// RFC 7523 §3: signature by a registered key; `iss` = `sub` = client id; `aud` names the
/// token endpoint or the issuer; `exp` present and near; `jti` used once.
async fn verify_assertion(app: &App, client: &Client, assertion: &str) -> Result<bool, OAuthError> {
    let Some(jwks) = client
        .jwks
        .as_deref()
        .and_then(|j| serde_json::from_str::<serde_json::Value>(j).ok())
    else {
        return Ok(false);
    };
    let keys: Vec<(String, Verifier)> = jwks
        .get("keys")
        .and_then(|k| k.as_array())
        .map(|keys| {
            keys.iter()
                .filter_map(|k| {
                    let map = k.as_object()?;
                    let kid = map
                        .get("kid")
                        .and_then(|v| v.as_str())
                        .unwrap_or_default()
                        .to_string();
                    Some((kid, Verifier::from_jwk(map).ok()?))
                })
                .collect()
        })
        .unwrap_or_default();
    let sole = keys.len() == 1;
    let Some(verified) = crate::jose::jwt::verify(assertion, |kid| {
        keys.iter()
            .find(|(k, _)| k == kid || (sole && kid.is_empty()))
            .map(|(_, v)| v)
    }) else {
        return Ok(false);
    };
    let claims = verified.claims;
    let text = |name: &str| claims.get(name).and_then(|v| v.as_str());
    if text("iss") != Some(client.id.as_str()) || text("sub") != Some(client.id.as_str()) {
        return Ok(false);
    }
    let issuer = &app.settings().issuer;
    let token_endpoint = format!("{issuer}{}", crate::oauth::discovery::TOKEN_PATH);
    let audience_ok = |a: &serde_json::Value| {
        a.as_str()
            .is_some_and(|a| a == issuer || a == token_endpoint)
    };
    // Exactly one audience, this server (RFC 7523bis, draft-ietf-oauth-rfc7523bis §4): an
    // assertion that also names another server could be replayed against us by it.
    let aud_ok = match claims.get("aud") {
        Some(serde_json::Value::Array(items)) => {
            matches!(items.as_slice(), [one] if audience_ok(one))
        }
        Some(one) => audience_ok(one),
        None => false,
    };
    let now = app.now();
    let exp = claims.get("exp").and_then(|v| v.as_i64());
    let Some(exp) = exp else { return Ok(false) };
    if !aud_ok || exp <= now || exp > now + MAX_ASSERTION_LIFETIME + CLOCK_SKEW {
        return Ok(false);
    }
    if claims
        .get("nbf")
        .and_then(|v| v.as_i64())
        .is_some_and(|nbf| nbf > now + CLOCK_SKEW)
    {
        return Ok(false);
    }
    let Some(jti) = text("jti").map(str::to_string) else {
        return Ok(false);
    };
    let client_id = client.id.clone();
    let fresh = app
        .store()
        .run(move |s| s.record_assertion_jti(&client_id, &jti, exp))
        .await
        .map_err(|e| OAuthError::temporarily_unavailable(&e))?;
    if !fresh {
        tracing::warn!(client_id = %client.id, "client assertion replayed");
    }
    Ok(fresh)
}

/// RFC 6749 §2.3.1: Basic credentials are form-urlencoded before base64.
fn form_decode(part: &str) -> Option<String> {
    let spaced = part.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

fn parse_basic(header: &str) -> Result<(String, String), OAuthError> {
    let malformed = || {
        let mut e = OAuthError::invalid_client(Challenge::Basic);
        e.description = "malformed Basic credentials".into();
        e
    };
    let encoded = header
        .get(..6)
        .filter(|scheme| scheme.eq_ignore_ascii_case("basic "))
        .and_then(|_| header.get(6..))
        .ok_or_else(malformed)?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| malformed())?;
    let text = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (id, secret) = text.split_once(':').ok_or_else(malformed)?;
    let id = form_decode(id).ok_or_else(malformed)?;
    let secret = form_decode(secret).ok_or_else(malformed)?;
    if id.is_empty() {
        return Err(malformed());
    }
    Ok((id, secret))
}

/// Reads the credentials from the `Authorization` header and the body. Using two methods at
/// once is `invalid_request` (RFC 6749 §2.3).
pub fn presented(authorization: Option<&str>, params: &Params) -> Result<Presented, OAuthError> {
    let body_id = params.single("client_id")?;
    let body_secret = params.single("client_secret")?;
    let assertion_type = params.single("client_assertion_type")?;
    let assertion = params.single("client_assertion")?;
    if assertion_type.is_some() || assertion.is_some() {
        if authorization.is_some() || body_secret.is_some() {
            return Err(OAuthError::invalid_request(
                "more than one client authentication method was used",
            ));
        }
        if assertion_type != Some(JWT_BEARER) {
            return Err(OAuthError::invalid_request(format!(
                "client_assertion_type must be {JWT_BEARER}"
            )));
        }
        let assertion = assertion.ok_or_else(|| {
            OAuthError::invalid_request("parameter `client_assertion` is missing")
        })?;
        // The client is named by the assertion's `sub` (RFC 7523 §3); client_id must agree.
        let sub = unverified_claim(assertion, "sub")
            .ok_or_else(|| OAuthError::invalid_client(Challenge::None))?;
        if body_id.is_some_and(|id| id != sub) {
            return Err(OAuthError::invalid_request(
                "client_id differs from the assertion's subject",
            ));
        }
        return Ok(Presented::Assertion {
            client_id: sub,
            assertion: assertion.to_string(),
        });
    }
    if let Some(header) = authorization {
        if !header
            .get(..6)
            .is_some_and(|s| s.eq_ignore_ascii_case("basic "))
        {
            return Err(OAuthError::invalid_request(
                "unsupported Authorization scheme at the token endpoint; use Basic",
            ));
        }
        let (client_id, secret) = parse_basic(header)?;
        if body_secret.is_some() {
            return Err(OAuthError::invalid_request(
                "more than one client authentication method was used",
            ));
        }
        if body_id.is_some_and(|id| id != client_id) {
            return Err(OAuthError::invalid_request(
                "client_id in the body differs from the authenticated client",
            ));
        }
        return Ok(Presented::Basic { client_id, secret });
    }
    match (body_id, body_secret) {
        (Some(id), Some(secret)) => Ok(Presented::Post {
            client_id: id.to_string(),
            secret: secret.to_string(),
        }),
        (Some(id), None) => Ok(Presented::IdOnly {
            client_id: id.to_string(),
        }),
        (None, Some(_)) => Err(OAuthError::invalid_request(
            "parameter `client_id` is missing",
        )),
        (None, None) => Err(OAuthError::invalid_client(Challenge::None)),
    }
}

/// Authenticates the presented credentials against the registered client, within the limits
/// on guessing (`credential_limits`, settled per client and per `address`). Every failure is
/// the same `invalid_client`, whatever the cause (unknown client, wrong secret, wrong method);
/// past the limits, `429` with `Retry-After`, whether the secret was right or not.
pub async fn authenticate(
    app: &App,
    presented: &Presented,
    address: IpAddr,
) -> Result<Arc<Client>, OAuthError> {
    let registry = app.clients();
    let fail = || OAuthError::invalid_client(presented.challenge());
    let client = match registry
        .lookup(presented.client_id())
        .await
        .map_err(|e| OAuthError::temporarily_unavailable(&e))?
    {
        Lookup::Found(client) => Some(client),
        Lookup::Unknown => None,
        // draft-ietf-oauth-client-id-metadata-document §4.1.1: the request fails, and says
        // why (nothing secret was checked: nothing to count).
        Lookup::Refused(why) => {
            let mut error = fail();
            error.description =
                format!("the client's metadata document was not accepted: {why}").into();
            return Err(error);
        }
    };
    let secret_ok = |client: &Client, secret: &str| {
        client
            .secret_hash
            .as_deref()
            .is_some_and(|hash| registry.hasher().verify(secret, hash))
    };
    // A secret is accepted by Basic or in the body, whichever the client's library sends
    // (RFC 6749 §2.3.1 allows both); the registered method stays the advertised one.
    let ok = match (&client, presented) {
        (Some(client), Presented::Basic { secret, .. } | Presented::Post { secret, .. })
            if matches!(
                client.auth_method,
                AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretPost
            ) =>
        {
            secret_ok(client, secret)
        }
        (Some(client), Presented::IdOnly { .. }) if client.auth_method == AuthMethod::None => {
            // Nothing secret was checked: nothing to count.
            return Ok(client.clone());
        }
        (Some(client), Presented::Assertion { assertion, .. })
            if client.auth_method == AuthMethod::PrivateKeyJwt =>
        {
            verify_assertion(app, client, assertion).await?
        }
        _ => false,
    };
    let settled = app
        .credential_limits()
        .settle_client(
            app.client_authentication_policy(),
            presented.client_id(),
            address,
            ok,
            app.now(),
        )
        .await;
    match settled {
        Ok(None) => {}
        Ok(Some(refusal)) => {
            metrics::counter!("portcullis_rate_limited_total", "endpoint" => "client_authentication")
                .increment(1);
            return Err(OAuthError::too_many_requests(refusal.retry_after()));
        }
        // Client secrets are 256-bit (or at least 32 characters): without the counters a
        // service keeps working rather than every client being refused.
        Err(e) => tracing::warn!(error = %e, "client authentication counters unavailable"),
    }
    match client {
        Some(client) if ok => Ok(client),
        _ => {
            tracing::info!(client_id = %presented.client_id(), "client authentication failed");
            Err(fail())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(id: &str, secret: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
        )
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let header = basic("my%3Aclient", "p%2Bw+d");
        let got = presented(Some(&header), &Params::default()).unwrap();
        assert_eq!(
            got,
            Presented::Basic {
                client_id: "my:client".into(),
                secret: "p+w d".into()
            }
        );
    }

    #[test]
    fn two_methods_at_once_is_invalid_request() {
        let header = basic("c", "s");
        let params = Params::parse(b"client_id=c&client_secret=s").unwrap();
        let err = presented(Some(&header), &params).unwrap_err();
        assert_eq!(err.code, crate::error::ErrorCode::InvalidRequest);
    }

    #[test]
    fn malformed_basic_is_invalid_client_with_challenge() {
        let err = presented(Some("Basic !!!"), &Params::default()).unwrap_err();
        assert_eq!(err.code, crate::error::ErrorCode::InvalidClient);
        assert_eq!(err.challenge, Challenge::Basic);
    }
}
