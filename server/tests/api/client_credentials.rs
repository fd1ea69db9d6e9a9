//! RFC 6749 §4.4 client credentials, with the `oauth2` crate as the machine client.

use oauth2::basic::BasicClient;
use oauth2::{AuthType, ClientId, ClientSecret, Scope, TokenResponse, TokenUrl};
use serde_json::Value;

use crate::helpers::{error_of, spawn_app, verify_with_jwks, Db, API};
use crate::on_both_backends;

on_both_backends!(
    oauth2_client_gets_a_token_that_verifies_against_the_jwks,
    client_secret_post_works_and_defaults_apply,
    every_token_endpoint_error_is_an_rfc6749_json_error,
    malformed_input_never_causes_a_server_error,
);

async fn oauth2_client_gets_a_token_that_verifies_against_the_jwks(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let secret = app.machine_client("svc", "models:read models:invoke");
    let client = BasicClient::new(ClientId::new("svc".into()))
        .set_client_secret(ClientSecret::new(secret))
        .set_token_uri(TokenUrl::new(app.url("/token")).unwrap());
    let token = client
        .exchange_client_credentials()
        .add_scope(Scope::new("models:read".into()))
        .add_extra_param("resource", API)
        .request_async(&app.http)
        .await
        .expect("token issued");
    assert_eq!(token.token_type().as_ref(), "bearer");
    assert_eq!(
        token
            .scopes()
            .map(|s| s.iter().map(|s| s.to_string()).collect::<Vec<_>>()),
        Some(vec!["models:read".to_string()])
    );
    let ttl = app.settings.access_token_ttl;
    assert_eq!(token.expires_in().map(|d| d.as_secs()), Some(ttl));

    let jwks = app.jwks().await;
    let (header, claims) = verify_with_jwks(token.access_token().secret(), &jwks).unwrap();
    // RFC 9068 §2.1 header, §2.2 claims.
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["alg"], "ES256");
    assert_eq!(claims["iss"], app.address.as_str());
    assert_eq!(claims["sub"], "svc");
    assert_eq!(claims["client_id"], "svc");
    assert_eq!(claims["aud"], API);
    assert_eq!(claims["scope"], "models:read");
    let iat = claims["iat"].as_i64().expect("iat is an integer");
    let exp = claims["exp"].as_i64().expect("exp is an integer");
    assert!(claims["iat"].is_i64() && claims["exp"].is_i64());
    assert_eq!(exp - iat, ttl as i64);
    assert!((iat - chrono::Utc::now().timestamp()).abs() < 60);
    assert!(claims["jti"].as_str().is_some_and(|j| j.len() >= 16));

    // A second token has its own jti.
    let again = client
        .exchange_client_credentials()
        .request_async(&app.http)
        .await
        .unwrap();
    let (_, claims2) = verify_with_jwks(again.access_token().secret(), &jwks).unwrap();
    assert_ne!(claims2["jti"], claims["jti"]);
    // No scope requested: the client's registered scopes; no resource: its first audience.
    assert_eq!(claims2["scope"], "models:read models:invoke");
    assert_eq!(claims2["aud"], API);

    // A forged signature does not verify.
    let original = token.access_token().secret().clone();
    let middle = original.rfind('.').unwrap() + 20;
    let flipped = if &original[middle..=middle] == "A" {
        "B"
    } else {
        "A"
    };
    let forged = format!(
        "{}{flipped}{}",
        &original[..middle],
        &original[middle + 1..]
    );
    assert!(verify_with_jwks(&forged, &jwks).is_err());
}

async fn client_secret_post_works_and_defaults_apply(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let secret = app.create_client(portcullis::clients::NewClient {
        id: "poster".into(),
        name: "Poster".into(),
        secret: portcullis::clients::SecretChoice::Supplied(
            "a-supplied-secret-of-at-least-32-chars".into(),
        ),
        auth_method: Some("client_secret_post".into()),
        grant_types: vec!["client_credentials".into()],
        scopes: vec!["a b".into()],
        audiences: vec![API.into()],
        redirect_uris: vec![],
        post_logout_redirect_uris: vec![],
        roles: vec![],
        jwks: None,
        id_token_signed_response_alg: None,
        introspection_audiences: vec![],
        require_pushed_authorization_requests: false,
        dpop_bound_access_tokens: false,
    });
    assert!(secret.is_empty(), "a supplied secret is not echoed");
    let client = BasicClient::new(ClientId::new("poster".into()))
        .set_client_secret(ClientSecret::new(
            "a-supplied-secret-of-at-least-32-chars".into(),
        ))
        .set_auth_type(AuthType::RequestBody)
        .set_token_uri(TokenUrl::new(app.url("/token")).unwrap());
    let token = client
        .exchange_client_credentials()
        .add_scope(Scope::new("b".into()))
        .request_async(&app.http)
        .await
        .expect("token issued with client_secret_post");
    let (_, claims) = verify_with_jwks(token.access_token().secret(), &app.jwks().await).unwrap();
    assert_eq!(claims["scope"], "b");

    // A secret is accepted by either method, whichever the client's library sends: Basic for
    // a client registered with client_secret_post works too.
    let response = app
        .post_token(
            &[("grant_type", "client_credentials")],
            Some(("poster", "a-supplied-secret-of-at-least-32-chars")),
        )
        .await;
    assert_eq!(response.status(), 200);
    // A wrong secret over Basic is still 401 with a Basic challenge.
    let response = app
        .post_token(
            &[("grant_type", "client_credentials")],
            Some(("poster", "not-the-secret-of-this-client-at-all")),
        )
        .await;
    assert_eq!(
        response.headers()["www-authenticate"],
        "Basic realm=\"portcullis\""
    );
    assert_eq!(error_of(response).await, (401, "invalid_client".into()));
    // Public clients stay strict: a secret is no way in for a client that has none.
    app.create_client(portcullis::clients::NewClient {
        id: "spa".into(),
        name: "Single-page app".into(),
        secret: portcullis::clients::SecretChoice::Public,
        auth_method: None,
        grant_types: vec!["authorization_code".into()],
        scopes: vec!["openid".into()],
        audiences: vec![],
        redirect_uris: vec!["http://127.0.0.1:9/cb".into()],
        post_logout_redirect_uris: vec![],
        roles: vec![],
        jwks: None,
        id_token_signed_response_alg: None,
        introspection_audiences: vec![],
        require_pushed_authorization_requests: false,
        dpop_bound_access_tokens: false,
    });
    for basic in [true, false] {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", "x"),
            ("client_id", "spa"),
            ("client_secret", "a-supplied-secret-of-at-least-32-chars"),
        ];
        let response = if basic {
            app.post_token(
                &form[..2],
                Some(("spa", "a-supplied-secret-of-at-least-32-chars")),
            )
            .await
        } else {
            app.post_token(&form, None).await
        };
        assert_eq!(error_of(response).await, (401, "invalid_client".into()));
    }
    // The registered method is still the one shown.
    assert_eq!(
        app.app
            .clients()
            .find("poster")
            .await
            .unwrap()
            .unwrap()
            .auth_method,
        portcullis::clients::AuthMethod::ClientSecretPost
    );

    // The response forbids caching (RFC 6749 §5.1).
    let response = app
        .http
        .post(app.url("/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "poster"),
            ("client_secret", "a-supplied-secret-of-at-least-32-chars"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    // A protocol endpoint: no browser session is read or started.
    assert!(response.headers().get("set-cookie").is_none());
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
}

async fn every_token_endpoint_error_is_an_rfc6749_json_error(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let secret = app.machine_client("svc", "models:read");
    let code_only_secret = app.create_client(portcullis::clients::NewClient {
        id: "webapp".into(),
        name: "Web app".into(),
        secret: portcullis::clients::SecretChoice::Generate,
        auth_method: None,
        grant_types: vec!["authorization_code".into()],
        scopes: vec!["openid".into()],
        audiences: vec![],
        redirect_uris: vec!["https://app.example.test/cb".into()],
        post_logout_redirect_uris: vec![],
        roles: vec![],
        jwks: None,
        id_token_signed_response_alg: None,
        introspection_audiences: vec![],
        require_pushed_authorization_requests: false,
        dpop_bound_access_tokens: false,
    });
    let basic = Some(("svc", secret.as_str()));
    let cc = ("grant_type", "client_credentials");

    // invalid_client: wrong secret over Basic → 401 with a Basic challenge.
    let response = app.post_token(&[cc], Some(("svc", "wrong-secret"))).await;
    assert_eq!(
        response.headers()["www-authenticate"],
        "Basic realm=\"portcullis\""
    );
    assert_eq!(error_of(response).await, (401, "invalid_client".into()));
    // Unknown client, in the body.
    let response = app
        .post_token(
            &[
                cc,
                ("client_id", "nobody"),
                ("client_secret", "x".repeat(40).as_str()),
            ],
            None,
        )
        .await;
    assert_eq!(error_of(response).await, (401, "invalid_client".into()));
    // No credentials at all.
    assert_eq!(
        error_of(app.post_token(&[cc], None).await).await,
        (401, "invalid_client".into())
    );
    // Malformed Basic header.
    let response = app
        .http
        .post(app.url("/token"))
        .header("authorization", "Basic %%%not-base64")
        .form(&[cc])
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(response).await, (401, "invalid_client".into()));

    // invalid_request: two authentication methods at once.
    let response = app
        .post_token(
            &[cc, ("client_id", "svc"), ("client_secret", &secret)],
            basic,
        )
        .await;
    assert_eq!(error_of(response).await, (400, "invalid_request".into()));
    // Missing grant_type, repeated parameter, wrong content type.
    assert_eq!(
        error_of(app.post_token(&[("scope", "models:read")], basic).await).await,
        (400, "invalid_request".into())
    );
    assert_eq!(
        error_of(
            app.post_token(&[cc, ("scope", "a"), ("scope", "b")], basic)
                .await
        )
        .await,
        (400, "invalid_request".into())
    );
    let response = app
        .http
        .post(app.url("/token"))
        .basic_auth("svc", Some(&secret))
        .json(&serde_json::json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(response).await, (400, "invalid_request".into()));

    // unsupported_grant_type.
    assert_eq!(
        error_of(app.post_token(&[("grant_type", "password")], basic).await).await,
        (400, "unsupported_grant_type".into())
    );
    // unauthorized_client: authenticated, but not registered for client_credentials.
    assert_eq!(
        error_of(
            app.post_token(&[cc], Some(("webapp", code_only_secret.as_str())))
                .await
        )
        .await,
        (400, "unauthorized_client".into())
    );
    // invalid_scope: not allowed, and malformed.
    assert_eq!(
        error_of(
            app.post_token(&[cc, ("scope", "models:read admin")], basic)
                .await
        )
        .await,
        (400, "invalid_scope".into())
    );
    assert_eq!(
        error_of(app.post_token(&[cc, ("scope", "bad\"scope")], basic).await).await,
        (400, "invalid_scope".into())
    );
    // invalid_target (RFC 8707): unregistered, not absolute, fragment, two at once.
    for resource in [
        "https://evil.example.test",
        "relative/path",
        "https://inference.example.test#x",
    ] {
        assert_eq!(
            error_of(app.post_token(&[cc, ("resource", resource)], basic).await).await,
            (400, "invalid_target".into()),
            "{resource}"
        );
    }
    assert_eq!(
        error_of(
            app.post_token(
                &[
                    cc,
                    ("resource", API),
                    ("resource", "https://other.example.test")
                ],
                basic
            )
            .await
        )
        .await,
        (400, "invalid_target".into())
    );

    // Every error response is JSON and not cacheable.
    let response = app.post_token(&[("grant_type", "nope")], basic).await;
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    assert!(body["error_description"]
        .as_str()
        .is_some_and(|d| !d.is_empty()));

    // Wrong method: 405 with Allow, JSON.
    let response = app.http.get(app.url("/token")).send().await.unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "POST");
    // Body over the limit: 413.
    let huge = "a".repeat(200 * 1024);
    let response = app.post_token(&[cc, ("scope", huge.as_str())], basic).await;
    assert_eq!(response.status(), 413);
}

async fn malformed_input_never_causes_a_server_error(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let secret = app.machine_client("svc", "models:read");
    let bodies: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"=".to_vec(),
        b"&&&&".to_vec(),
        b"grant_type".to_vec(),
        b"grant_type=client_credentials&%zz=1".to_vec(),
        b"grant_type=client_credentials&scope=%ff%fe".to_vec(),
        vec![0xff, 0xfe, 0x00, 0x80],
        b"grant_type=client_credentials&resource=http://[::1".to_vec(),
        b"grant_type=client_credentials&resource=".to_vec(),
        format!("grant_type=client_credentials&scope={}", "x ".repeat(5000)).into_bytes(),
        b"grant_type=client_credentials&client_id=%00&client_secret=%00".to_vec(),
    ];
    let headers = [
        None,
        Some(format!("Basic {}", base64_of(&format!("svc:{secret}")))),
        Some("Basic".to_string()),
        Some("Basic ".to_string()),
        Some(format!("Basic {}", base64_of("no-colon"))),
        Some(format!("Basic {}", base64_of(":"))),
        Some("Bearer abc".to_string()),
    ];
    for body in &bodies {
        for header in &headers {
            let mut request = app
                .http
                .post(app.url("/token"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body.clone());
            if let Some(h) = header {
                request = request.header("authorization", h.as_str());
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            assert!(
                status < 500,
                "{status} for body {:?} header {header:?}",
                String::from_utf8_lossy(body)
            );
            if status != 200 {
                let (_, error) = error_of(response).await;
                assert!(!error.starts_with('<'), "JSON error expected, got {error}");
            }
        }
    }
    for path in ["/nope", "/token/", "/.well-known/", "/%ff"] {
        let response = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
    }
}

fn base64_of(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}
