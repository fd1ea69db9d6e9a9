//! People sign in: the `openidconnect` crate as the relying party against the real server,
//! with the pages driven over HTTP with a cookie jar.

use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreProviderMetadata, CoreUserInfoClaims,
};
use openidconnect::{
    AccessTokenHash, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken, Scope,
    TokenResponse,
};
use serde_json::Value;

use crate::helpers::{
    error_of, spawn_app, spawn_app_with, verify_with_jwks, Browser, Db, TestApp, API, PASSWORD,
    WEB_CALLBACK,
};
use crate::on_both_backends;

on_both_backends!(
    openid_connect_code_flow_with_pkce_end_to_end,
    refresh_tokens_rotate_and_reuse_revokes_the_family,
    a_reused_code_revokes_everything_issued_from_it,
    logout_ends_the_session_and_returns_to_the_client,
);

pub async fn discover(app: &TestApp) -> CoreProviderMetadata {
    CoreProviderMetadata::discover_async(IssuerUrl::new(app.address.clone()).unwrap(), &app.http)
        .await
        .expect("discovery")
}

struct Flow {
    code: String,
    state: String,
    verifier: PkceCodeVerifier,
    nonce: Nonce,
    callback: url::Url,
}

/// Builds the authorization URL with the RP library, then signs in and consents.
async fn authorize(
    app: &TestApp,
    browser: &Browser,
    client_id: &str,
    scopes: &[&str],
    username: &str,
) -> Flow {
    let metadata = discover(app).await;
    let client =
        CoreClient::from_provider_metadata(metadata, ClientId::new(client_id.into()), None)
            .set_redirect_uri(RedirectUrl::new(WEB_CALLBACK.into()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut request = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .set_pkce_challenge(challenge);
    for s in scopes {
        request = request.add_scope(Scope::new(s.to_string()));
    }
    let (url, state, nonce) = request.url();
    let callback = browser.authorize(url.as_str(), username, PASSWORD).await;
    let query: std::collections::HashMap<String, String> =
        callback.query_pairs().into_owned().collect();
    assert_eq!(query.get("state"), Some(state.secret()), "state returned");
    assert_eq!(
        query.get("iss"),
        Some(&app.address),
        "RFC 9207 iss returned"
    );
    let code = query
        .get("code")
        .unwrap_or_else(|| panic!("no code in {callback}"))
        .clone();
    Flow {
        code,
        state: state.secret().clone(),
        verifier,
        nonce,
        callback,
    }
}

/// Redeems the flow's code through the relying-party library (asserting success).
async fn redeem(
    app: &TestApp,
    client: &WebClient,
    flow: Flow,
) -> openidconnect::core::CoreTokenResponse {
    client
        .exchange_code(AuthorizationCode::new(flow.code))
        .unwrap()
        .set_pkce_verifier(flow.verifier)
        .request_async(&app.http)
        .await
        .unwrap()
}

/// Redeems the flow's code with a confidential client's secret (the response, unchecked).
async fn exchange(app: &TestApp, flow: &Flow, client_id: &str, secret: &str) -> reqwest::Response {
    app.post_token(
        &[
            ("grant_type", "authorization_code"),
            ("code", &flow.code),
            ("redirect_uri", WEB_CALLBACK),
            ("code_verifier", flow.verifier.secret()),
        ],
        Some((client_id, secret)),
    )
    .await
}

/// The relying party as built from discovery (auth and redirect URIs set, the rest maybe).
type WebClient = openidconnect::core::CoreClient<
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

fn rp(app: &TestApp, metadata: CoreProviderMetadata, client_id: &str, secret: &str) -> WebClient {
    let _ = app;
    CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(client_id.into()),
        Some(ClientSecret::new(secret.into())),
    )
    .set_redirect_uri(RedirectUrl::new(WEB_CALLBACK.into()).unwrap())
}

async fn openid_connect_code_flow_with_pkce_end_to_end(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let secret = app.web_client("notebook");
    let sub = app.user("ada", &["user"]);
    let browser = Browser::new(&app);
    let flow = authorize(
        &app,
        &browser,
        "notebook",
        &["openid", "profile", "email", "offline_access"],
        "ada",
    )
    .await;
    assert!(!flow.state.is_empty() && flow.callback.as_str().starts_with(WEB_CALLBACK));

    let metadata = discover(&app).await;
    let client = rp(&app, metadata, "notebook", &secret);
    let tokens = client
        .exchange_code(AuthorizationCode::new(flow.code.clone()))
        .unwrap()
        .set_pkce_verifier(flow.verifier)
        .request_async(&app.http)
        .await
        .expect("code exchange");
    // ID token: signature (RS256 by default), iss, aud, exp, nonce — checked by the library.
    let id_token = tokens.id_token().expect("an ID token");
    let verifier = client.id_token_verifier();
    let claims = id_token
        .claims(&verifier, &flow.nonce)
        .expect("ID token verifies");
    assert_eq!(claims.subject().as_str(), sub);
    assert!(claims.auth_time().is_some());
    let at_hash = claims.access_token_hash().expect("at_hash");
    let expected = AccessTokenHash::from_token(
        tokens.access_token(),
        id_token.signing_alg().unwrap(),
        id_token.signing_key(&verifier).unwrap(),
    )
    .unwrap();
    assert_eq!(at_hash, &expected);
    let (id_header, _) = verify_with_jwks(&id_token.to_string(), &app.jwks().await).unwrap();
    assert_eq!(id_header["alg"], "RS256");

    // The access token: RFC 9068 for the user, with roles and auth_time.
    let (header, at) = verify_with_jwks(tokens.access_token().secret(), &app.jwks().await).unwrap();
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(at["sub"], sub.as_str());
    assert_eq!(at["client_id"], "notebook");
    assert_eq!(at["aud"], API);
    assert_eq!(at["roles"], serde_json::json!(["user"]));
    assert!(at["auth_time"].is_i64());
    assert_eq!(at["scope"], "openid profile email offline_access");
    assert!(
        tokens.refresh_token().is_some(),
        "offline_access + refresh_token grant → refresh token"
    );

    // UserInfo through the library.
    let info: CoreUserInfoClaims = client
        .user_info(tokens.access_token().to_owned(), None)
        .unwrap()
        .request_async(&app.http)
        .await
        .expect("userinfo");
    assert_eq!(info.subject().as_str(), sub);
    assert_eq!(info.preferred_username().map(|u| u.as_str()), Some("ada"));
    assert_eq!(info.email().map(|e| e.as_str()), Some("ada@example.test"));
    assert_eq!(info.email_verified(), Some(false));

    // Consent is remembered: the next authorization goes straight back with a code.
    let again = authorize(&app, &browser, "notebook", &["openid", "profile"], "ada").await;
    assert_ne!(again.code, flow.code);
}

async fn refresh_tokens_rotate_and_reuse_revokes_the_family(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let secret = app.web_client("notebook");
    app.user("ada", &[]);
    let browser = Browser::new(&app);
    let flow = authorize(
        &app,
        &browser,
        "notebook",
        &["openid", "offline_access", "models:read"],
        "ada",
    )
    .await;
    let client = rp(&app, discover(&app).await, "notebook", &secret);
    let first = redeem(&app, &client, flow).await;
    let r1 = first.refresh_token().unwrap().clone();

    // Narrowing is allowed; the new token replaces the old one.
    let second = client
        .exchange_refresh_token(&r1)
        .unwrap()
        .add_scope(Scope::new("openid".into()))
        .add_scope(Scope::new("offline_access".into()))
        .request_async(&app.http)
        .await
        .expect("refresh");
    let r2 = second.refresh_token().expect("rotated").clone();
    assert_ne!(r2.secret(), r1.secret());
    let (_, claims) = verify_with_jwks(second.access_token().secret(), &app.jwks().await).unwrap();
    assert_eq!(claims["scope"], "openid offline_access");

    // Widening is not.
    let basic = Some(("notebook", secret.as_str()));
    let wide = app
        .post_token(
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", r2.secret()),
                ("scope", "openid email"),
            ],
            basic,
        )
        .await;
    assert_eq!(error_of(wide).await, (400, "invalid_scope".into()));

    // The narrowing applied to that access token only: the grant keeps its scope.
    let third = client
        .exchange_refresh_token(&r2)
        .unwrap()
        .request_async(&app.http)
        .await
        .expect("refresh with the rotated token");
    let (_, claims) = verify_with_jwks(third.access_token().secret(), &app.jwks().await).unwrap();
    assert_eq!(claims["scope"], "openid offline_access models:read");
    let r2 = third.refresh_token().expect("rotated again").clone();

    // Reusing r1 (already rotated) is theft: invalid_grant, and the family dies with it.
    let reuse = app
        .post_token(
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", r1.secret()),
            ],
            basic,
        )
        .await;
    assert_eq!(error_of(reuse).await, (400, "invalid_grant".into()));
    // The live token of the family is revoked too.
    let dead = app
        .post_token(
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", r2.secret()),
            ],
            basic,
        )
        .await;
    assert_eq!(error_of(dead).await, (400, "invalid_grant".into()));

    // Bound to the client: another client cannot use it.
    let other_secret = app.web_client("other-app");
    let flow = authorize(
        &app,
        &browser,
        "notebook",
        &["openid", "offline_access"],
        "ada",
    )
    .await;
    let fresh = redeem(&app, &client, flow).await;
    let live: RefreshToken = fresh.refresh_token().unwrap().clone();
    let stolen = app
        .post_token(
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", live.secret()),
            ],
            Some(("other-app", &other_secret)),
        )
        .await;
    assert_eq!(error_of(stolen).await, (400, "invalid_grant".into()));

    // A disabled user stops refreshing.
    let flow = authorize(
        &app,
        &browser,
        "notebook",
        &["openid", "offline_access"],
        "ada",
    )
    .await;
    let fresh = redeem(&app, &client, flow).await;
    app.app.users().set_disabled("ada", true).unwrap();
    let disabled = app
        .post_token(
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", fresh.refresh_token().unwrap().secret()),
            ],
            basic,
        )
        .await;
    assert_eq!(error_of(disabled).await, (400, "invalid_grant".into()));
}

async fn a_reused_code_revokes_everything_issued_from_it(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let secret = app.web_client("notebook");
    app.user("ada", &[]);
    let browser = Browser::new(&app);
    let flow = authorize(
        &app,
        &browser,
        "notebook",
        &["openid", "profile", "offline_access"],
        "ada",
    )
    .await;
    let verifier = flow.verifier.secret().clone();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", flow.code.as_str()),
        ("redirect_uri", WEB_CALLBACK),
        ("code_verifier", verifier.as_str()),
    ];
    let basic = Some(("notebook", secret.as_str()));
    let first = app.post_token(&form, basic).await;
    assert_eq!(first.status(), 200);
    let body: Value = first.json().await.unwrap();
    let access = body["access_token"].as_str().unwrap().to_string();
    let refresh = body["refresh_token"].as_str().unwrap().to_string();
    let userinfo = |token: String| {
        let http = app.http.clone();
        let url = app.url("/userinfo");
        async move { http.get(url).bearer_auth(token).send().await.unwrap() }
    };
    assert_eq!(userinfo(access.clone()).await.status(), 200);

    // Second use: invalid_grant, and the access and refresh tokens from the first are dead.
    let second = app.post_token(&form, basic).await;
    assert_eq!(error_of(second).await, (400, "invalid_grant".into()));
    let denied = userinfo(access).await;
    assert_eq!(denied.status(), 401);
    assert!(denied.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("invalid_token"));
    let refreshed = app
        .post_token(
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh.as_str()),
            ],
            basic,
        )
        .await;
    assert_eq!(error_of(refreshed).await, (400, "invalid_grant".into()));

    // Codes are bound to the client, the redirect URI and the PKCE verifier, and expire.
    let other_secret = app.web_client("other-app");
    for (form, who) in [
        (
            vec![
                ("redirect_uri", "http://127.0.0.1:9/elsewhere"),
                ("code_verifier", verifier.as_str()),
            ],
            basic,
        ),
        (
            vec![
                ("redirect_uri", WEB_CALLBACK),
                ("code_verifier", "A".repeat(43).as_str()),
            ],
            basic,
        ),
        (vec![("redirect_uri", WEB_CALLBACK)], basic),
        (
            vec![
                ("redirect_uri", WEB_CALLBACK),
                ("code_verifier", verifier.as_str()),
            ],
            Some(("other-app", other_secret.as_str())),
        ),
    ] {
        let flow = authorize(&app, &browser, "notebook", &["openid"], "ada").await;
        let verifier_owned = if form
            .iter()
            .any(|(k, v)| *k == "code_verifier" && *v == verifier)
        {
            Some(flow.verifier.secret().clone())
        } else {
            None
        };
        let mut fields: Vec<(&str, String)> = vec![
            ("grant_type", "authorization_code".into()),
            ("code", flow.code.clone()),
        ];
        for (k, v) in &form {
            let value = if *k == "code_verifier" {
                verifier_owned.clone().unwrap_or(v.to_string())
            } else {
                v.to_string()
            };
            fields.push((k, value));
        }
        let refs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(
            error_of(app.post_token(&refs, who).await).await,
            (400, "invalid_grant".into()),
            "{form:?}"
        );
    }
    let flow = authorize(&app, &browser, "notebook", &["openid"], "ada").await;
    app.clock
        .advance(app.settings.authorization_code_ttl as i64);
    let late = app
        .post_token(
            &[
                ("grant_type", "authorization_code"),
                ("code", &flow.code),
                ("redirect_uri", WEB_CALLBACK),
                ("code_verifier", flow.verifier.secret()),
            ],
            basic,
        )
        .await;
    assert_eq!(error_of(late).await, (400, "invalid_grant".into()));
}

async fn logout_ends_the_session_and_returns_to_the_client(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let secret = app.web_client("notebook");
    app.user("ada", &[]);
    let browser = Browser::new(&app);
    let flow = authorize(&app, &browser, "notebook", &["openid"], "ada").await;
    let tokens: Value = exchange(&app, &flow, "notebook", &secret)
        .await
        .json()
        .await
        .unwrap();
    let id_token = tokens["id_token"].as_str().unwrap();

    // An unregistered post-logout address is refused with a page, not followed.
    let bad = browser
        .get(&format!(
            "/logout?id_token_hint={id_token}&post_logout_redirect_uri=https%3A%2F%2Fevil.example"
        ))
        .await;
    assert_eq!(bad.status(), 400);

    let page = browser
        .get(&format!(
            "/logout?id_token_hint={id_token}&post_logout_redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fsigned-out&state=bye"
        ))
        .await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    let csrf = crate::helpers::hidden_field(&html, "csrf_token");
    // Without the CSRF token nothing happens.
    let forged = browser
        .post_form(
            "/logout",
            &[
                ("decision", "logout"),
                ("post_logout_redirect_uri", "http://127.0.0.1:9/signed-out"),
                ("client_id", "notebook"),
                ("csrf_token", "forged"),
            ],
        )
        .await;
    assert_eq!(forged.status(), 400);
    let done = browser
        .post_form(
            "/logout",
            &[
                ("csrf_token", &csrf),
                ("decision", "logout"),
                ("id_token_hint", id_token),
                ("post_logout_redirect_uri", "http://127.0.0.1:9/signed-out"),
                ("state", "bye"),
                ("client_id", "notebook"),
            ],
        )
        .await;
    assert_eq!(done.status(), 303);
    assert_eq!(
        done.headers()["location"],
        "http://127.0.0.1:9/signed-out?state=bye"
    );

    // The session is gone: prompt=none now answers login_required.
    let (challenge, _) = PkceCodeChallenge::new_random_sha256();
    let silent = browser
        .get(&format!(
            "/authorize?response_type=code&client_id=notebook&redirect_uri={}&scope=openid&prompt=none&state=s&code_challenge={}&code_challenge_method=S256",
            urlencode(WEB_CALLBACK),
            challenge.as_str()
        ))
        .await;
    let location = silent.headers()["location"].to_str().unwrap().to_string();
    assert!(location.contains("error=login_required"), "{location}");
}

pub fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// The Redis session store, for real: CI provides Redis; elsewhere it is skipped when absent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_live_in_redis_when_configured() {
    let Some(redis_url) = crate::helpers::redis_url_or_skip("the Redis session test") else {
        return;
    };
    let app = spawn_app_with(Db::Sqlite, |s| s.redis_url = Some(redis_url.clone()))
        .await
        .unwrap();
    let secret = app.web_client("notebook");
    app.user("ada", &[]);
    let browser = Browser::new(&app);
    let flow = authorize(&app, &browser, "notebook", &["openid"], "ada").await;
    let ok = exchange(&app, &flow, "notebook", &secret).await;
    assert_eq!(ok.status(), 200);
    // The session is in Redis: a second server sharing Redis and the database sees it.
    let mut settings = app.settings.clone();
    settings.bind = "127.0.0.1:0".into();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let running = portcullis::startup::build_on(listener, settings, app.clock.clone())
        .await
        .unwrap();
    tokio::spawn(running.server);
    // Cookies are not port-specific: the jar presents the same session to the second server.
    let (challenge, _) = PkceCodeChallenge::new_random_sha256();
    let silent = browser
        .http
        .get(format!(
            "http://127.0.0.1:{port}/authorize?response_type=code&client_id=notebook&redirect_uri={}&scope=openid&prompt=none&code_challenge={}&code_challenge_method=S256",
            urlencode(WEB_CALLBACK),
            challenge.as_str()
        ))
        .send()
        .await
        .unwrap();
    let location = silent.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location.contains("code="),
        "the second instance sees the session: {location}"
    );
    let mut redis = redis::Client::open(redis_url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("portcullis:session:*")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(!keys.is_empty(), "session state stored in Redis");
}

/// A client may ask for ES256 ID tokens (OpenID Connect Registration §2,
/// `id_token_signed_response_alg`); others keep the RS256 default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_token_algorithm_is_chosen_per_client() {
    let app = spawn_app(Db::Sqlite).await.unwrap();
    app.user("ada", &[]);
    let secret = app.create_client(portcullis::clients::NewClient {
        id: "ec-app".into(),
        name: "EC app".into(),
        secret: portcullis::clients::SecretChoice::Generate,
        auth_method: None,
        grant_types: vec!["authorization_code".into()],
        scopes: vec!["openid".into()],
        audiences: vec![],
        redirect_uris: vec![WEB_CALLBACK.into()],
        post_logout_redirect_uris: vec![],
        roles: vec![],
        jwks: None,
        id_token_signed_response_alg: Some("ES256".into()),
        introspection_audiences: vec![],
        require_pushed_authorization_requests: false,
        dpop_bound_access_tokens: false,
    });
    let browser = Browser::new(&app);
    let flow = authorize(&app, &browser, "ec-app", &["openid"], "ada").await;
    let tokens: Value = exchange(&app, &flow, "ec-app", &secret)
        .await
        .json()
        .await
        .unwrap();
    let (header, claims) =
        verify_with_jwks(tokens["id_token"].as_str().unwrap(), &app.jwks().await).unwrap();
    assert_eq!(header["alg"], "ES256");
    assert_eq!(claims["aud"], "ec-app");
}
