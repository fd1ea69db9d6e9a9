//! Introspection (RFC 7662), revocation (RFC 7009) and private_key_jwt (RFC 7523).

use serde_json::{json, Value};

use crate::helpers::{error_of, spawn_app, spawn_app_with, Db, TestApp, API};
use crate::on_both_backends;

on_both_backends!(
    introspection_reports_only_live_tokens_to_entitled_callers,
    revocation_kills_refresh_families_and_access_tokens,
    private_key_jwt_authenticates_once_per_assertion,
);

async fn introspect(app: &TestApp, caller: (&str, &str), token: &str, hint: Option<&str>) -> Value {
    let mut form = vec![("token", token)];
    if let Some(h) = hint {
        form.push(("token_type_hint", h));
    }
    let response = app
        .http
        .post(app.url("/introspect"))
        .basic_auth(caller.0, Some(caller.1))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    response.json().await.unwrap()
}

async fn introspection_reports_only_live_tokens_to_entitled_callers(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let svc = app.machine_client("svc", "models:read");
    let other = app.machine_client("other", "models:read");
    let body = app.cc_token("svc", &svc, &[("resource", API)]).await;
    let token = body["access_token"].as_str().unwrap();

    let active = introspect(&app, ("svc", &svc), token, None).await;
    assert_eq!(active["active"], true);
    for (field, expected) in [
        ("client_id", json!("svc")),
        ("sub", json!("svc")),
        ("aud", json!(API)),
        ("scope", json!("models:read")),
        ("token_type", json!("Bearer")),
        ("iss", json!(app.address)),
    ] {
        assert_eq!(active[field], expected, "{field}");
    }
    assert!(active["exp"].is_i64() && active["iat"].is_i64());
    assert!(active["roles"].is_array());

    // Another client that may request tokens for the same audience may not introspect it
    // (RFC 7662 §4): only the audience's registered resource server may.
    assert_eq!(
        introspect(&app, ("other", &other), token, None).await,
        json!({"active": false})
    );
    let api = app.create_client(portcullis::clients::NewClient {
        id: "inference-api".into(),
        name: "Inference API".into(),
        secret: portcullis::clients::SecretChoice::Generate,
        auth_method: None,
        grant_types: vec!["client_credentials".into()],
        scopes: vec![],
        audiences: vec![],
        redirect_uris: vec![],
        post_logout_redirect_uris: vec![],
        roles: vec![],
        jwks: None,
        id_token_signed_response_alg: None,
        introspection_audiences: vec![API.into()],
        require_pushed_authorization_requests: false,
        dpop_bound_access_tokens: false,
    });
    assert_eq!(
        introspect(&app, ("inference-api", &api), token, None).await["active"],
        true
    );
    let elsewhere = app
        .cc_token("svc", &svc, &[("resource", "https://other.example.test")])
        .await;
    assert_eq!(
        introspect(
            &app,
            ("inference-api", &api),
            elsewhere["access_token"].as_str().unwrap(),
            None
        )
        .await,
        json!({"active": false}),
        "a resource server sees only its own audience's tokens"
    );
    // Garbage is inactive.
    for garbage in ["", "not-a-token", "a.b.c", &format!("{token}x")] {
        if garbage.is_empty() {
            continue;
        }
        assert_eq!(
            introspect(&app, ("svc", &svc), garbage, None).await,
            json!({"active": false})
        );
    }
    // Unauthenticated callers are refused.
    let response = app
        .http
        .post(app.url("/introspect"))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(response).await, (401, "invalid_client".into()));
    // Expired → inactive.
    app.clock.advance(app.settings.access_token_ttl as i64);
    assert_eq!(
        introspect(&app, ("svc", &svc), token, Some("access_token")).await["active"],
        false
    );
}

async fn revocation_kills_refresh_families_and_access_tokens(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let svc = app.machine_client("svc", "models:read");
    let body = app.cc_token("svc", &svc, &[]).await;
    let token = body["access_token"].as_str().unwrap().to_string();
    let revoke = |caller: (&'static str, String), form: Vec<(&'static str, String)>| {
        let app_http = app.http.clone();
        let url = app.url("/revoke");
        async move {
            app_http
                .post(url)
                .basic_auth(caller.0, Some(caller.1))
                .form(&form)
                .send()
                .await
                .unwrap()
        }
    };
    // Only the owner may revoke.
    let thief = app.machine_client("thief", "models:read");
    let refused = revoke(("thief", thief.clone()), vec![("token", token.clone())]).await;
    assert_eq!(error_of(refused).await, (400, "unauthorized_client".into()));
    // Unknown tokens: 200.
    assert_eq!(
        revoke(("svc", svc.clone()), vec![("token", "unknown".into())])
            .await
            .status(),
        200
    );
    // Access token revoked by jti: introspection says inactive until it would have expired.
    assert_eq!(
        revoke(
            ("svc", svc.clone()),
            vec![
                ("token", token.clone()),
                ("token_type_hint", "access_token".into())
            ]
        )
        .await
        .status(),
        200
    );
    assert_eq!(
        introspect(&app, ("svc", &svc), &token, None).await["active"],
        false
    );
    app.audit_event("token_revoked", |e| {
        e.details["token_type"] == "access_token"
    })
    .await;

    // A refresh token revokes its family.
    let web = app.web_client("notebook");
    app.user("ada", &[]);
    let browser = crate::helpers::Browser::new(&app);
    let (challenge, verifier) = openidconnect::PkceCodeChallenge::new_random_sha256();
    let url = format!(
        "/authorize?client_id=notebook&response_type=code&scope=openid%20offline_access&code_challenge={}&code_challenge_method=S256",
        challenge.as_str()
    );
    let callback = browser
        .authorize(&url, "ada", crate::helpers::PASSWORD)
        .await;
    let code = callback
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .to_string();
    let tokens: Value = app
        .post_token(
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", crate::helpers::WEB_CALLBACK),
                ("code_verifier", verifier.secret()),
            ],
            Some(("notebook", &web)),
        )
        .await
        .json()
        .await
        .unwrap();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();
    let access = tokens["access_token"].as_str().unwrap().to_string();
    let live = introspect(&app, ("notebook", &web), &refresh, Some("refresh_token")).await;
    assert_eq!(live["active"], true);
    assert_eq!(live["token_type"], "refresh_token");
    assert_eq!(live["username"], "ada");
    assert_eq!(
        revoke(("notebook", web.clone()), vec![("token", refresh.clone())])
            .await
            .status(),
        200
    );
    assert_eq!(
        introspect(&app, ("notebook", &web), &refresh, None).await["active"],
        false
    );
    let again = app
        .post_token(
            &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
            Some(("notebook", &web)),
        )
        .await;
    assert_eq!(error_of(again).await, (400, "invalid_grant".into()));
    // The family's access token is denied too.
    let userinfo = app
        .http
        .get(app.url("/userinfo"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(userinfo.status(), 401);
}

fn assertion(key: &josekit::jwk::alg::ec::EcKeyPair, kid: &str, claims: Value) -> String {
    use josekit::jwk::KeyPair;
    let mut header = josekit::jws::JwsHeader::new();
    header.set_token_type("JWT");
    header.set_key_id(kid);
    let mut payload = josekit::jwt::JwtPayload::new();
    for (k, v) in claims.as_object().unwrap() {
        payload.set_claim(k, Some(v.clone())).unwrap();
    }
    let signer = josekit::jws::ES256
        .signer_from_jwk(&key.to_jwk_private_key())
        .unwrap();
    josekit::jwt::encode_with_signer(&payload, &header, &signer).unwrap()
}

async fn private_key_jwt_authenticates_once_per_assertion(db: Db) {
    use josekit::jwk::KeyPair;
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let key =
        josekit::jwk::alg::ec::EcKeyPair::generate(josekit::jwk::alg::ec::EcCurve::P256).unwrap();
    let mut public = key.to_jwk_public_key();
    public.set_key_id("k1");
    let jwks = json!({ "keys": [serde_json::to_value(public.as_ref()).unwrap()] });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, jwks.to_string()).unwrap();
    let created = app.cli(&[
        "client",
        "create",
        "--id",
        "signer",
        "--name",
        "Signer",
        "--grant-type",
        "client_credentials",
        "--scope",
        "models:read",
        "--audience",
        API,
        "--jwks-file",
        path.to_str().unwrap(),
    ]);
    assert_eq!(created["token_endpoint_auth_method"], "private_key_jwt");
    assert!(
        created.get("client_secret").is_none(),
        "no secret for a key-authenticated client"
    );

    // The server's clock (a manual one, set when it started), not the wall clock.
    let now = app.app.now();
    let token_endpoint = app.url("/token");
    let claims = |jti: &str, aud: &str, exp: i64| json!({"iss": "signer", "sub": "signer", "aud": aud, "exp": exp, "iat": now, "jti": jti});
    let request = |jwt: String| {
        let http = app.http.clone();
        let url = app.url("/token");
        async move {
            http.post(url)
                .form(&[
                    ("grant_type", "client_credentials"),
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                    ("client_assertion", jwt.as_str()),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    let good = assertion(&key, "k1", claims("one", &token_endpoint, now + 60));
    let ok = request(good.clone()).await;
    assert_eq!(ok.status(), 200, "{}", ok.text().await.unwrap());
    // The same assertion again: replay.
    assert_eq!(
        error_of(request(good).await).await,
        (401, "invalid_client".into())
    );
    // The issuer is an accepted audience too.
    assert_eq!(
        request(assertion(&key, "k1", claims("two", &app.address, now + 60)))
            .await
            .status(),
        200
    );
    // An array naming only this server is fine; one that also names another server is not
    // (it could be replayed here by that server).
    let with_audiences = |jti: &str, aud: Value| json!({"iss": "signer", "sub": "signer", "aud": aud, "exp": now + 60, "iat": now, "jti": jti});
    assert_eq!(
        request(assertion(
            &key,
            "k1",
            with_audiences("arr-1", json!([token_endpoint]))
        ))
        .await
        .status(),
        200
    );
    let shared = with_audiences(
        "arr-2",
        json!([token_endpoint, "https://elsewhere.example"]),
    );
    assert_eq!(
        error_of(request(assertion(&key, "k1", shared)).await).await,
        (401, "invalid_client".into())
    );
    // Wrong audience, expired, too long-lived, wrong key.
    assert_eq!(
        error_of(
            request(assertion(
                &key,
                "k1",
                claims("three", "https://elsewhere", now + 60)
            ))
            .await
        )
        .await,
        (401, "invalid_client".into())
    );
    assert_eq!(
        error_of(
            request(assertion(
                &key,
                "k1",
                claims("four", &token_endpoint, now - 1)
            ))
            .await
        )
        .await,
        (401, "invalid_client".into())
    );
    assert_eq!(
        error_of(
            request(assertion(
                &key,
                "k1",
                claims("five", &token_endpoint, now + 3600)
            ))
            .await
        )
        .await,
        (401, "invalid_client".into())
    );
    let stranger =
        josekit::jwk::alg::ec::EcKeyPair::generate(josekit::jwk::alg::ec::EcCurve::P256).unwrap();
    assert_eq!(
        error_of(
            request(assertion(
                &stranger,
                "k1",
                claims("six", &token_endpoint, now + 60)
            ))
            .await
        )
        .await,
        (401, "invalid_client".into())
    );
    // Mixing methods is invalid_request.
    let mixed = app
        .http
        .post(app.url("/token"))
        .basic_auth("signer", Some("secret"))
        .form(&[
            ("grant_type", "client_credentials"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            (
                "client_assertion",
                assertion(&key, "k1", claims("seven", &token_endpoint, now + 60)).as_str(),
            ),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(mixed).await, (400, "invalid_request".into()));
}

/// The deny list in Redis, shared by two instances.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_access_tokens_are_denied_by_every_instance_through_redis() {
    let Some(redis_url) = crate::helpers::redis_url_or_skip("the Redis deny-list test") else {
        return;
    };
    let app = spawn_app_with(Db::Sqlite, |s| s.redis_url = Some(redis_url.clone()))
        .await
        .unwrap();
    let svc = app.machine_client("svc", "models:read");
    let body = app.cc_token("svc", &svc, &[]).await;
    let token = body["access_token"].as_str().unwrap();
    let revoked = app
        .http
        .post(app.url("/revoke"))
        .basic_auth("svc", Some(&svc))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    // A second instance on the same database and Redis sees the revocation.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let running = portcullis::startup::build_on(listener, app.settings.clone(), app.clock.clone())
        .await
        .unwrap();
    tokio::spawn(running.server);
    let response = app
        .http
        .post(format!("http://127.0.0.1:{port}/introspect"))
        .basic_auth("svc", Some(&svc))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["active"], false);
    let jti = crate::helpers::claims_of(token)["jti"]
        .as_str()
        .unwrap()
        .to_string();
    let mut redis = redis::Client::open(redis_url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let exists: bool = redis::cmd("EXISTS")
        .arg(format!("portcullis:denied:{jti}"))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(exists, "the deny list lives in Redis");
}
