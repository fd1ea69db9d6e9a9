//! Server metadata: RFC 8414 §2 and OpenID Connect Discovery 1.0 §3. Lists exactly what is
//! implemented.

use serde_json::{json, Value};

use crate::config::Settings;

pub const JWKS_PATH: &str = "/.well-known/jwks.json";
pub const TOKEN_PATH: &str = "/token";

pub fn metadata(settings: &Settings) -> Value {
    let issuer = &settings.issuer;
    json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}{JWKS_PATH}"),
        "token_endpoint": format!("{issuer}{TOKEN_PATH}"),
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "response_types_supported": [],
        "access_token_signing_alg_values_supported": [settings.access_token_signing_alg.as_str()],
        "resource_indicators_supported": true,
    })
}
