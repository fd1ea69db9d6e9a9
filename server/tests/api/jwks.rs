//! The published JWKS (RFC 7517 §5) and health endpoints.

use serde_json::Value;

use crate::helpers::{spawn_app, Db};
use crate::on_both_backends;

on_both_backends!(
    jwks_is_public_cacheable_and_conditional,
    health_and_readiness,
    read_only_resources_answer_head_like_get_without_a_body
);

async fn jwks_is_public_cacheable_and_conditional(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let response = app
        .http
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(
        headers["cache-control"],
        format!("public, max-age={}", app.settings.jwks_max_age).as_str()
    );
    let etag = headers["etag"].to_str().unwrap().to_string();
    assert!(etag.starts_with('"') && etag.ends_with('"'));
    let jwks: Value = response.json().await.unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    // An active and a next key for each of ES256 and RS256.
    assert_eq!(keys.len(), 4);
    for key in keys {
        for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
            assert!(key.get(private).is_none(), "JWKS leaks `{private}`");
        }
        assert_eq!(key["use"], "sig");
        assert!(
            key["kid"].as_str().is_some_and(|k| k.len() == 43),
            "kid is a SHA-256 thumbprint"
        );
        match key["kty"].as_str().unwrap() {
            "EC" => assert_eq!(
                (key["crv"].as_str(), key["alg"].as_str()),
                (Some("P-256"), Some("ES256"))
            ),
            "RSA" => {
                assert_eq!(key["alg"], "RS256");
                let n = key["n"].as_str().unwrap();
                assert!(n.len() >= 342, "RSA modulus of at least 2048 bits");
            }
            other => panic!("unexpected kty {other}"),
        }
    }
    // If-None-Match → 304 with no body; a stale tag → 200.
    let response = app
        .http
        .get(app.url("/.well-known/jwks.json"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 304);
    assert_eq!(response.headers()["etag"], etag.as_str());
    assert!(response.bytes().await.unwrap().is_empty());
    let response = app
        .http
        .get(app.url("/.well-known/jwks.json"))
        .header("if-none-match", "\"stale\"")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

async fn health_and_readiness(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    for path in ["/healthz", "/readyz"] {
        let response = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    let metrics = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("portcullis_http_request_duration_seconds"),
        "{metrics}"
    );
}

/// RFC 9110 §9.3.2: HEAD is GET without the content, for probes and caches.
async fn read_only_resources_answer_head_like_get_without_a_body(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    for path in [
        "/.well-known/jwks.json",
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
        "/healthz",
        "/readyz",
    ] {
        let get = app.http.get(app.url(path)).send().await.unwrap();
        let head = app.http.head(app.url(path)).send().await.unwrap();
        assert_eq!(head.status(), 200, "HEAD {path}");
        for name in ["content-type", "content-length", "cache-control", "etag"] {
            assert_eq!(
                head.headers().get(name),
                get.headers().get(name),
                "HEAD {path}: {name}"
            );
        }
        assert!(
            head.bytes().await.unwrap().is_empty(),
            "HEAD {path} sent a body"
        );
        assert!(!get.bytes().await.unwrap().is_empty());
    }
    // Not for endpoints with effects: HEAD /token is still refused.
    let head = app.http.head(app.url("/token")).send().await.unwrap();
    assert_eq!(head.status(), 405);
}
