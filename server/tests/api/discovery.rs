//! Server metadata: RFC 8414 and OpenID Connect Discovery 1.0.

use serde_json::Value;

use crate::helpers::{spawn_app, Db};

#[tokio::test]
async fn both_metadata_documents_describe_this_server() {
    let app = spawn_app(Db::Sqlite).await.unwrap();
    for path in [
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
    ] {
        let response = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let doc: Value = response.json().await.unwrap();
        assert_eq!(doc["issuer"], app.address.as_str());
        assert_eq!(doc["token_endpoint"], app.url("/token").as_str());
        assert_eq!(doc["jwks_uri"], app.url("/.well-known/jwks.json").as_str());
        let grants = doc["grant_types_supported"].as_array().unwrap();
        assert!(grants.contains(&Value::from("client_credentials")));
        let methods = doc["token_endpoint_auth_methods_supported"]
            .as_array()
            .unwrap();
        assert!(methods.contains(&Value::from("client_secret_basic")));
        assert!(methods.contains(&Value::from("client_secret_post")));
        // The JWKS it names is reachable.
        let jwks = app
            .http
            .get(doc["jwks_uri"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(jwks.status(), 200);
    }
}

/// Browser apps call the token, userinfo, revocation, JWKS and discovery endpoints from their
/// own origin (CORS); the pages are not exposed that way.
#[tokio::test]
async fn browser_apps_may_call_the_token_endpoints_cross_origin() {
    let app = spawn_app(Db::Sqlite).await.unwrap();
    let preflight = app
        .http
        .request(reqwest::Method::OPTIONS, app.url("/token"))
        .header("origin", "https://spa.example.test")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    assert_eq!(preflight.headers()["access-control-allow-origin"], "*");
    assert!(preflight.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .contains("Authorization"));
    let token = app
        .http
        .post(app.url("/token"))
        .header("origin", "https://spa.example.test")
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(token.headers()["access-control-allow-origin"], "*");
    let login = app
        .http
        .get(app.url("/login"))
        .header("origin", "https://spa.example.test")
        .send()
        .await
        .unwrap();
    assert!(
        login.headers().get("access-control-allow-origin").is_none(),
        "pages are same-origin only"
    );
}
