//! DPoP (RFC 9449) end to end: proofs at the token endpoint for every grant, bound tokens,
//! bound refresh tokens of public clients, `/userinfo` with the DPoP scheme, introspection,
//! nonces, and every proof check refusing what it should.

use serde_json::{json, Value};

use crate::helpers::{
    claims_of, pkce, spawn_app, spawn_app_with, Browser, Db, DpopKey, TestApp, PASSWORD,
    WEB_CALLBACK,
};
use crate::on_both_backends;

on_both_backends!(
    client_credentials_tokens_are_bound_to_the_proof_key,
    every_proof_check_refuses_what_it_should,
    a_public_clients_refresh_tokens_are_bound_to_its_key,
    userinfo_takes_a_bound_token_only_with_its_proof,
    codes_are_bound_by_dpop_jkt_or_a_proof_at_par,
);

/// POST /token with an optional DPoP header (or several).
async fn token_with_proofs(
    app: &TestApp,
    form: &[(&str, &str)],
    client: Option<(&str, &str)>,
    proofs: &[String],
) -> reqwest::Response {
    let mut request = app.http.post(app.url("/token")).form(form);
    if let Some((id, secret)) = client {
        request = request.basic_auth(id, Some(secret));
    }
    for proof in proofs {
        request = request.header("DPoP", proof);
    }
    request.send().await.unwrap()
}

async fn json_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn client_credentials_tokens_are_bound_to_the_proof_key(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let secret = app.machine_client("svc", "models:read");
    let key = DpopKey::new();
    let token_url = app.url("/token");
    let cc = [("grant_type", "client_credentials")];
    let proof = key.proof("POST", &token_url, app.app.now(), None, None);
    let (status, body) =
        json_of(token_with_proofs(&app, &cc, Some(("svc", &secret)), &[proof]).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "DPoP");
    let access = body["access_token"].as_str().unwrap();
    assert_eq!(claims_of(access)["cnf"]["jkt"], key.thumbprint().as_str());
    // Introspection tells a resource server the key (RFC 9449 §6.2).
    let introspected: Value = app
        .http
        .post(app.url("/introspect"))
        .basic_auth("svc", Some(&secret))
        .form(&[("token", access)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(introspected["active"], true);
    assert_eq!(introspected["token_type"], "DPoP");
    assert_eq!(introspected["cnf"]["jkt"], key.thumbprint().as_str());
    // At /userinfo with its proof but without `openid`: 403 insufficient_scope, challenged
    // with the scheme it came in (RFC 9449 §7.1).
    let userinfo_url = app.url("/userinfo");
    let response = app
        .http
        .get(&userinfo_url)
        .header("authorization", format!("DPoP {access}"))
        .header(
            "DPoP",
            key.proof("GET", &userinfo_url, app.app.now(), Some(access), None),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let challenge = response.headers()["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.starts_with("DPoP ") && challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    // Without a proof: a bearer token, as before.
    let (status, body) =
        json_of(token_with_proofs(&app, &cc, Some(("svc", &secret)), &[]).await).await;
    assert_eq!((status, body["token_type"].as_str()), (200, Some("Bearer")));
    assert!(claims_of(body["access_token"].as_str().unwrap())
        .get("cnf")
        .is_none());
}

async fn every_proof_check_refuses_what_it_should(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let secret = app.machine_client("svc", "models:read");
    let key = DpopKey::new();
    let other = DpopKey::new();
    let token_url = app.url("/token");
    let now = app.app.now();
    let cc = [("grant_type", "client_credentials")];
    let claims = |name: &str, value: Value| {
        let mut c = json!({"jti": crate::helpers::unique("j"), "htm": "POST", "htu": token_url, "iat": now});
        c[name] = value;
        c
    };
    let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": key.jwk});
    let with_header = |name: &str, value: Value| {
        let mut h = header.clone();
        h[name] = value;
        h
    };
    let mut private = key.jwk.clone();
    private["d"] = "c2VjcmV0".into();
    let replayed = key.proof("POST", &token_url, now, None, None);
    let cases: Vec<(&str, Vec<String>)> = vec![
        (
            "wrong htm",
            vec![key.sign(&header, &claims("htm", "GET".into()))],
        ),
        (
            "wrong htu",
            vec![key.sign(&header, &claims("htu", app.url("/userinfo").into()))],
        ),
        (
            "stale iat",
            vec![key.sign(&header, &claims("iat", (now - 3600).into()))],
        ),
        (
            "future iat",
            vec![key.sign(&header, &claims("iat", (now + 600).into()))],
        ),
        (
            "no jti",
            vec![key.sign(&header, &claims("jti", Value::Null))],
        ),
        (
            "typ JWT",
            vec![key.sign(&with_header("typ", "JWT".into()), &claims("x", 1.into()))],
        ),
        (
            "alg HS256",
            vec![key.sign(&with_header("alg", "HS256".into()), &claims("x", 1.into()))],
        ),
        (
            "alg none",
            vec![key.sign(&with_header("alg", "none".into()), &claims("x", 1.into()))],
        ),
        (
            "a private key",
            vec![key.sign(&with_header("jwk", private), &claims("x", 1.into()))],
        ),
        (
            "another key's jwk",
            vec![key.sign(
                &with_header("jwk", other.jwk.clone()),
                &claims("x", 1.into()),
            )],
        ),
        (
            "two proofs",
            vec![
                replayed.clone(),
                key.proof("POST", &token_url, now, None, None),
            ],
        ),
        ("not a JWT", vec!["not.a.jwt".into()]),
    ];
    for (what, proofs) in cases {
        let (status, body) =
            json_of(token_with_proofs(&app, &cc, Some(("svc", &secret)), &proofs).await).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_dpop_proof")),
            "{what}: {body}"
        );
    }
    // A proof is good once (§11.1): the same one again is a replay.
    let (status, _) = json_of(
        token_with_proofs(
            &app,
            &cc,
            Some(("svc", &secret)),
            std::slice::from_ref(&replayed),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) =
        json_of(token_with_proofs(&app, &cc, Some(("svc", &secret)), &[replayed]).await).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_dpop_proof")),
        "{body}"
    );
}

/// A public single-page app using the code flow and refresh tokens.
fn spa(app: &TestApp, id: &str) {
    app.create_client(crate::helpers::public_web_registration(id));
}

/// The code flow of a public client, the code redeemed with a proof of `key`.
async fn bound_tokens(app: &TestApp, key: &DpopKey) -> Value {
    let (code, verifier) = Browser::new(app)
        .code("spa", "openid offline_access", "ada")
        .await;
    let proof = key.proof("POST", &app.url("/token"), app.app.now(), None, None);
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", WEB_CALLBACK),
        ("code_verifier", verifier.as_str()),
        ("client_id", "spa"),
    ];
    let (status, body) = json_of(token_with_proofs(app, &form, None, &[proof]).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "DPoP");
    body
}

async fn a_public_clients_refresh_tokens_are_bound_to_its_key(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    spa(&app, "spa");
    app.user("ada", &["user"]);
    let key = DpopKey::new();
    let tokens = bound_tokens(&app, &key).await;
    let token_url = app.url("/token");
    let refresh = |token: String, proof: Option<String>| {
        let app = &app;
        async move {
            let form = [
                ("grant_type", "refresh_token"),
                ("refresh_token", token.as_str()),
                ("client_id", "spa"),
            ];
            let proofs: Vec<String> = proof.into_iter().collect();
            json_of(token_with_proofs(app, &form, None, &proofs).await).await
        }
    };
    let first = tokens["refresh_token"].as_str().unwrap().to_string();
    // Without a proof, or with another key's: refused, and the token is not spent.
    let (status, body) = refresh(first.clone(), None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_dpop_proof"))
    );
    let thief = DpopKey::new();
    let stolen = thief.proof("POST", &token_url, app.app.now(), None, None);
    let (status, body) = refresh(first.clone(), Some(stolen)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_dpop_proof"))
    );
    // With the key: rotated, the new access token bound to the same key.
    let proof = key.proof("POST", &token_url, app.app.now(), None, None);
    let (status, body) = refresh(first, Some(proof)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "DPoP");
    assert_eq!(
        claims_of(body["access_token"].as_str().unwrap())["cnf"]["jkt"],
        key.thumbprint().as_str()
    );
    let second = body["refresh_token"].as_str().unwrap().to_string();
    let (status, _) = refresh(
        second,
        Some(thief.proof("POST", &token_url, app.app.now(), None, None)),
    )
    .await;
    assert_eq!(status, 400, "the successor is bound too");
}

async fn userinfo_takes_a_bound_token_only_with_its_proof(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    spa(&app, "spa");
    app.user("ada", &["user"]);
    let key = DpopKey::new();
    let tokens = bound_tokens(&app, &key).await;
    let access = tokens["access_token"].as_str().unwrap();
    let url = app.url("/userinfo");
    let call = |scheme: &str, proofs: Vec<String>| {
        let mut request = app
            .http
            .get(&url)
            .header("authorization", format!("{scheme} {access}"));
        for proof in proofs {
            request = request.header("DPoP", proof);
        }
        request.send()
    };
    let challenge = |response: &reqwest::Response| {
        response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_string()
    };
    let now = app.app.now();
    // The bound token as a bearer token: refused, with a DPoP challenge.
    let response = call("Bearer", vec![]).await.unwrap();
    assert_eq!(response.status(), 401);
    assert!(
        challenge(&response).starts_with("DPoP "),
        "{}",
        challenge(&response)
    );
    assert!(challenge(&response).contains("invalid_token"));
    // The DPoP scheme without a proof, without ath, with another token's ath, for another
    // method: an invalid proof; with another key: an invalid binding (RFC 9449 §7.1).
    let other = DpopKey::new();
    for (what, proofs, error) in [
        ("no proof", vec![], "invalid_dpop_proof"),
        (
            "no ath",
            vec![key.proof("GET", &url, now, None, None)],
            "invalid_dpop_proof",
        ),
        (
            "another token",
            vec![key.proof("GET", &url, now, Some("something else"), None)],
            "invalid_dpop_proof",
        ),
        (
            "for POST",
            vec![key.proof("POST", &url, now, Some(access), None)],
            "invalid_dpop_proof",
        ),
        (
            "another key",
            vec![other.proof("GET", &url, now, Some(access), None)],
            "invalid_token",
        ),
    ] {
        let response = call("DPoP", proofs).await.unwrap();
        assert_eq!(response.status(), 401, "{what}");
        let challenge = challenge(&response);
        assert!(
            challenge.contains(&format!("error=\"{error}\"")),
            "{what}: {challenge}"
        );
        assert!(challenge.contains("algs=\"ES256"), "{what}");
    }
    // With its proof: the claims.
    let response = call(
        "DPoP",
        vec![key.proof("GET", &url, now, Some(access), None)],
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    let claims: Value = response.json().await.unwrap();
    assert!(claims["sub"].is_string());
    // An unbound token presented with the DPoP scheme is refused.
    let secret = app.web_client("web");
    let plain = Browser::new(&app).code("web", "openid", "ada").await;
    let plain: Value = crate::helpers::token_at(
        &app.http,
        &app.address,
        &[
            ("grant_type", "authorization_code"),
            ("code", &plain.0),
            ("redirect_uri", WEB_CALLBACK),
            ("code_verifier", &plain.1),
        ],
        ("web", &secret),
    )
    .await
    .json()
    .await
    .unwrap();
    let bearer = plain["access_token"].as_str().unwrap();
    let response = app
        .http
        .get(&url)
        .header("authorization", format!("DPoP {bearer}"))
        .header("DPoP", key.proof("GET", &url, now, Some(bearer), None))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert!(challenge(&response).contains("invalid_token"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_must_use_dpop_is_refused_without_a_proof() {
    let app = spawn_app(Db::Sqlite).await.unwrap();
    let secret = app.create_client(portcullis::clients::NewClient {
        dpop_bound_access_tokens: true,
        ..crate::helpers::machine_client_registration("bound", "models:read")
    });
    let cc = [("grant_type", "client_credentials")];
    let (status, body) =
        json_of(token_with_proofs(&app, &cc, Some(("bound", &secret)), &[]).await).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_dpop_proof"))
    );
    let proof = DpopKey::new().proof("POST", &app.url("/token"), app.app.now(), None, None);
    let (status, body) =
        json_of(token_with_proofs(&app, &cc, Some(("bound", &secret)), &[proof]).await).await;
    assert_eq!((status, body["token_type"].as_str()), (200, Some("DPoP")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_nonces_a_proof_must_carry_the_servers() {
    let app = spawn_app_with(Db::Sqlite, |s| s.use_dpop_nonce = true)
        .await
        .unwrap();
    let secret = app.machine_client("svc", "models:read");
    let key = DpopKey::new();
    let token_url = app.url("/token");
    let cc = [("grant_type", "client_credentials")];
    let first = token_with_proofs(
        &app,
        &cc,
        Some(("svc", &secret)),
        &[key.proof("POST", &token_url, app.app.now(), None, None)],
    )
    .await;
    let nonce = first.headers()["dpop-nonce"].to_str().unwrap().to_string();
    let (status, body) = json_of(first).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("use_dpop_nonce"))
    );
    let retry = key.proof("POST", &token_url, app.app.now(), None, Some(&nonce));
    let (status, body) =
        json_of(token_with_proofs(&app, &cc, Some(("svc", &secret)), &[retry]).await).await;
    assert_eq!(
        (status, body["token_type"].as_str()),
        (200, Some("DPoP")),
        "{body}"
    );
    // A nonce of long ago is refused again, with a fresh one offered.
    app.clock.advance(600);
    let stale = key.proof("POST", &token_url, app.app.now(), None, Some(&nonce));
    let response = token_with_proofs(&app, &cc, Some(("svc", &secret)), &[stale]).await;
    assert_ne!(response.headers()["dpop-nonce"].to_str().unwrap(), nonce);
    assert_eq!(json_of(response).await.1["error"], "use_dpop_nonce");
}

/// The replay cache is shared by every instance: in Redis when configured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proof_replayed_at_another_instance_is_refused() {
    let Some(redis_url) = crate::helpers::redis_url_or_skip("the DPoP replay test") else {
        return;
    };
    let app = spawn_app_with(Db::Sqlite, |s| s.redis_url = Some(redis_url))
        .await
        .unwrap();
    let secret = app.machine_client("svc", "models:read");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let running = portcullis::startup::build_on(listener, app.settings.clone(), app.clock.clone())
        .await
        .unwrap();
    tokio::spawn(running.server);
    let key = DpopKey::new();
    // Both instances serve one issuer: the proof names the issuer's token endpoint.
    let proof = key.proof("POST", &app.url("/token"), app.app.now(), None, None);
    let cc = [("grant_type", "client_credentials")];
    let (status, _) = json_of(
        token_with_proofs(
            &app,
            &cc,
            Some(("svc", &secret)),
            std::slice::from_ref(&proof),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200);
    let at_second = app
        .http
        .post(format!("http://127.0.0.1:{port}/token"))
        .basic_auth("svc", Some(&secret))
        .header("DPoP", proof)
        .form(&cc)
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(at_second).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_dpop_proof")),
        "{body}"
    );
}

/// RFC 9449 §10–10.1: `dpop_jkt` at `/authorize`, or a proof (or `dpop_jkt`) at `/par`, binds
/// the code: only a proof of that key redeems it.
async fn codes_are_bound_by_dpop_jkt_or_a_proof_at_par(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    spa(&app, "spa");
    app.user("ada", &["user"]);
    let (key, other) = (DpopKey::new(), DpopKey::new());
    let browser = Browser::new(&app);
    let redeem = |code: String, verifier: String, proof: Option<&DpopKey>| {
        let app = &app;
        let proofs: Vec<String> = proof
            .map(|k| k.proof("POST", &app.url("/token"), app.app.now(), None, None))
            .into_iter()
            .collect();
        async move {
            let form = [
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", WEB_CALLBACK),
                ("code_verifier", verifier.as_str()),
                ("client_id", "spa"),
            ];
            json_of(token_with_proofs(app, &form, None, &proofs).await).await
        }
    };
    let code_of = |callback: url::Url| {
        callback
            .query_pairs()
            .find(|(k, _)| k == "code")
            .unwrap_or_else(|| panic!("no code in {callback}"))
            .1
            .into_owned()
    };
    // On the front channel: another key, or none, is refused and leaves the code unspent;
    // the bound key redeems it.
    let front = |jkt: String| {
        let pkce = pkce();
        let url = url::Url::parse_with_params(
            &app.url("/authorize"),
            &[
                ("response_type", "code"),
                ("client_id", "spa"),
                ("scope", "openid"),
                ("redirect_uri", WEB_CALLBACK),
                ("code_challenge", pkce.challenge.as_str()),
                ("code_challenge_method", "S256"),
                ("dpop_jkt", jkt.as_str()),
            ],
        )
        .unwrap();
        (url.to_string(), pkce.verifier)
    };
    let (url, verifier) = front(key.thumbprint());
    let code = code_of(browser.authorize(&url, "ada", PASSWORD).await);
    for (what, proof) in [("another key", Some(&other)), ("no proof", None)] {
        let (status, body) = redeem(code.clone(), verifier.clone(), proof).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_dpop_proof")),
            "{what}: {body}"
        );
    }
    let (status, body) = redeem(code, verifier, Some(&key)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        claims_of(body["access_token"].as_str().unwrap())["cnf"]["jkt"],
        key.thumbprint().as_str()
    );
    // A malformed dpop_jkt goes back to the client as invalid_request.
    let (url, _) = front("not-a-thumbprint".into());
    let response = browser.get(&url).await;
    let location = response.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location.starts_with(WEB_CALLBACK) && location.contains("error=invalid_request"),
        "{location}"
    );
    // At /par: a proof binds the code as dpop_jkt would.
    let par_url = app.url("/par");
    let push = |proof: Option<String>, jkt: Option<String>| {
        let app = &app;
        let pkce = pkce();
        async move {
            let mut form = vec![
                ("client_id", "spa".to_string()),
                ("response_type", "code".into()),
                ("redirect_uri", WEB_CALLBACK.into()),
                ("scope", "openid".into()),
                ("code_challenge", pkce.challenge.clone()),
                ("code_challenge_method", "S256".into()),
            ];
            form.extend(jkt.map(|j| ("dpop_jkt", j)));
            let mut request = app.http.post(app.url("/par")).form(&form);
            if let Some(proof) = proof {
                request = request.header("DPoP", proof);
            }
            let (status, body) = json_of(request.send().await.unwrap()).await;
            (status, body, pkce.verifier)
        }
    };
    let (status, pushed, verifier) = push(
        Some(key.proof("POST", &par_url, app.app.now(), None, None)),
        None,
    )
    .await;
    assert_eq!(status, 201, "{pushed}");
    let link = url::Url::parse_with_params(
        &app.url("/authorize"),
        &[
            ("client_id", "spa"),
            ("request_uri", pushed["request_uri"].as_str().unwrap()),
        ],
    )
    .unwrap();
    let code = code_of(browser.authorize(link.as_str(), "ada", PASSWORD).await);
    let (status, _) = redeem(code.clone(), verifier.clone(), Some(&other)).await;
    assert_eq!(status, 400, "another key");
    let (status, body) = redeem(code, verifier, Some(&key)).await;
    assert_eq!(status, 200, "{body}");
    // At /par: a malformed proof, a proof for another URL, or dpop_jkt naming another key than
    // the proof's: invalid_dpop_proof.
    for (what, proof, jkt) in [
        ("malformed", "not.a.jwt".to_string(), None),
        (
            "for /token",
            key.proof("POST", &app.url("/token"), app.app.now(), None, None),
            None,
        ),
        (
            "dpop_jkt of another key",
            key.proof("POST", &par_url, app.app.now(), None, None),
            Some(other.thumbprint()),
        ),
    ] {
        let (status, body, _) = push(Some(proof), jkt).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_dpop_proof")),
            "{what}: {body}"
        );
    }
}
