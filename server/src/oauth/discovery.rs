//! Server metadata: RFC 8414 §2 and OpenID Connect Discovery 1.0 §3. Lists exactly what is
//! implemented.

use serde_json::{json, Value};

use crate::config::Settings;

pub const JWKS_PATH: &str = "/.well-known/jwks.json";
pub const TOKEN_PATH: &str = "/token";
pub const AUTHORIZE_PATH: &str = "/authorize";
pub const USERINFO_PATH: &str = "/userinfo";
pub const END_SESSION_PATH: &str = "/logout";
pub const DEVICE_AUTHORIZATION_PATH: &str = "/device_authorization";
/// Where a person types a device's user code (RFC 8628 §3.3).
pub const DEVICE_PATH: &str = "/device";
pub const PAR_PATH: &str = "/par";

pub fn metadata(settings: &Settings) -> Value {
    let issuer = &settings.issuer;
    let mut document = json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}{AUTHORIZE_PATH}"),
        "token_endpoint": format!("{issuer}{TOKEN_PATH}"),
        "userinfo_endpoint": format!("{issuer}{USERINFO_PATH}"),
        "end_session_endpoint": format!("{issuer}{END_SESSION_PATH}"),
        "jwks_uri": format!("{issuer}{JWKS_PATH}"),
        "introspection_endpoint": format!("{issuer}/introspect"),
        "revocation_endpoint": format!("{issuer}/revoke"),
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
        "token_endpoint_auth_signing_alg_values_supported": ["ES256", "RS256"],
        "grant_types_supported": [
            "authorization_code", "client_credentials", "refresh_token",
            crate::clients::DEVICE_CODE_GRANT, crate::clients::TOKEN_EXCHANGE_GRANT
        ],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "subject_types_supported": ["public"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "claims_supported": [
            "sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "at_hash",
            "name", "preferred_username", "updated_at", "email", "email_verified"
        ],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
        "code_challenge_methods_supported": ["S256"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        // Resources may choose either algorithm for their tokens.
        "access_token_signing_alg_values_supported": ["ES256", "RS256"],
        "prompt_values_supported": ["none", "login", "consent"],
        "claims_parameter_supported": false,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "authorization_response_iss_parameter_supported": true,
        "resource_indicators_supported": true,
        "dpop_signing_alg_values_supported": super::dpop::ALGORITHMS,
        "device_authorization_endpoint": format!("{issuer}{DEVICE_AUTHORIZATION_PATH}"),
        "pushed_authorization_request_endpoint": format!("{issuer}{PAR_PATH}"),
        "require_pushed_authorization_requests": settings.require_pushed_authorization_requests,
        // draft-ietf-oauth-client-id-metadata-document §5.
        "client_id_metadata_document_supported": settings.client_id_metadata_documents,
    });
    // RFC 8414 §2: advertised only when someone may register.
    if settings.registration != crate::config::RegistrationPolicy::Closed {
        if let Some(map) = document.as_object_mut() {
            map.insert(
                "registration_endpoint".into(),
                json!(format!(
                    "{issuer}{}",
                    super::registration::REGISTRATION_PATH
                )),
            );
        }
    }
    document
}
