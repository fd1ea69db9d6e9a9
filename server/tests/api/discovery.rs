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
