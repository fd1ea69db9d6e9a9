//! The device authorization grant (RFC 8628): the Rust `oauth2` crate as the device, against a
//! real server process (SQLite; Postgres + Redis), the person's steps over HTTP; then every
//! poll answer and every page error.

use std::time::Duration;

use oauth2::basic::BasicClient;
use oauth2::{
    AuthUrl, ClientId, DeviceAuthorizationUrl, Scope, StandardDeviceAuthorizationResponse,
    TokenResponse, TokenUrl,
};
use serde_json::Value;

use crate::helpers::{
    claims_of, hidden_field, spawn_app, test_kek_base64, Browser, Db, TestApp, PASSWORD,
};
use crate::on_both_backends;
use crate::processes::{cli, Instance};

const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// The person's side: open the link, confirm the code, sign in, decide.
async fn person_decides(
    base: &str,
    verification_uri_complete: &str,
    username: &str,
    decision: &str,
) -> String {
    let browser = Browser {
        http: reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        base: base.to_string(),
    };
    let page = browser
        .get(verification_uri_complete)
        .await
        .text()
        .await
        .unwrap();
    let code = hidden_field_value(&page, "user_code");
    let csrf = hidden_field(&page, "csrf_token");
    let entered = browser
        .post_form("/device", &[("csrf_token", &csrf), ("user_code", &code)])
        .await;
    assert_eq!(entered.status(), 303, "{}", entered.text().await.unwrap());
    let consent = browser.get("/device/consent").await;
    assert_eq!(consent.headers()["location"], "/login", "sign in first");
    let login = browser.get("/login").await.text().await.unwrap();
    let csrf = hidden_field(&login, "csrf_token");
    let signed_in = browser
        .post_form(
            "/login",
            &[
                ("csrf_token", &csrf),
                ("username", username),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(
        signed_in.headers()["location"],
        "/device/consent",
        "back to the device"
    );
    let consent = browser.get("/device/consent").await.text().await.unwrap();
    let csrf = hidden_field(&consent, "csrf_token");
    assert!(consent.contains("action=\"/device/decision\""));
    browser
        .post_form(
            "/device/decision",
            &[("csrf_token", &csrf), ("decision", decision)],
        )
        .await
        .text()
        .await
        .unwrap()
}

/// The `value` of the input named `name`.
fn hidden_field_value(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).unwrap() + marker.len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end].to_string()
}

async fn the_oauth2_crate_signs_a_device_in(settings: Vec<(&'static str, String)>) {
    let mut settings = settings;
    settings.push(("PORTCULLIS_KEY_ENCRYPTION_KEY", test_kek_base64()));
    settings.push(("PORTCULLIS_DEVICE_POLL_INTERVAL", "1".into()));
    let created = cli(
        &settings,
        &[
            "client",
            "create",
            "--id",
            "cli",
            "--name",
            "Model CLI",
            "--public",
            "--grant-type",
            DEVICE_GRANT,
            "--grant-type",
            "refresh_token",
            "--scope",
            "openid offline_access",
        ],
        None,
    );
    assert!(
        created["grant_types"]
            .as_array()
            .unwrap()
            .contains(&Value::from(DEVICE_GRANT)),
        "shown by its URN, as registered: {created}"
    );
    let user = crate::helpers::unique("ada");
    cli(
        &settings,
        &[
            "user",
            "create",
            "--username",
            &user,
            "--email",
            "ada@example.test",
            "--name",
            "Ada",
            "--role",
            "user",
            "--password-stdin",
        ],
        Some(PASSWORD),
    );
    let server = Instance::start(&settings).await;
    let client = BasicClient::new(ClientId::new("cli".into()))
        .set_auth_uri(AuthUrl::new(server.url("/authorize")).unwrap())
        .set_token_uri(TokenUrl::new(server.url("/token")).unwrap())
        .set_device_authorization_url(
            DeviceAuthorizationUrl::new(server.url("/device_authorization")).unwrap(),
        );
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let details: StandardDeviceAuthorizationResponse = client
        .exchange_device_code()
        .add_scope(Scope::new("openid".into()))
        .add_scope(Scope::new("offline_access".into()))
        .request_async(&http)
        .await
        .expect("device authorization");
    let complete = details
        .verification_uri_complete()
        .unwrap()
        .secret()
        .clone();
    // The device polls (with the crate's own waits) while its person decides.
    let person = {
        let base = server.base.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            person_decides(&base, &complete, &user, "allow").await
        })
    };
    let tokens = client
        .exchange_device_access_token(&details)
        .request_async(&http, tokio::time::sleep, Some(Duration::from_secs(30)))
        .await
        .expect("tokens after approval");
    assert!(person.await.unwrap().contains("Your device is connected"));
    let claims = claims_of(tokens.access_token().secret());
    assert_eq!(claims["client_id"], "cli");
    assert!(
        tokens.refresh_token().is_some(),
        "offline_access: a refresh token"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oauth2_crate_signs_a_device_in_on_sqlite() {
    let database = crate::helpers::fresh_database(Db::Sqlite).unwrap();
    the_oauth2_crate_signs_a_device_in(vec![("PORTCULLIS_DATABASE_URL", database.url.clone())])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oauth2_crate_signs_a_device_in_on_postgres_and_redis() {
    let Some(redis) = crate::helpers::redis_url_or_skip("the device flow on Redis") else {
        return;
    };
    let Some(database) = crate::helpers::fresh_database(Db::Postgres) else {
        return;
    };
    the_oauth2_crate_signs_a_device_in(vec![
        ("PORTCULLIS_DATABASE_URL", database.url.clone()),
        ("PORTCULLIS_REDIS_URL", redis),
    ])
    .await;
}

on_both_backends!(
    every_poll_answer_follows_rfc8628,
    the_device_pages_refuse_what_they_should,
);

fn device_client(app: &TestApp, id: &str, grant_types: &str) {
    app.create_client(portcullis::clients::NewClient {
        id: id.into(),
        name: "Model CLI".into(),
        secret: portcullis::clients::SecretChoice::Public,
        auth_method: None,
        grant_types: vec![grant_types.into()],
        scopes: vec!["openid offline_access".into()],
        audiences: vec![],
        redirect_uris: vec![],
        post_logout_redirect_uris: vec![],
        roles: vec![],
        jwks: None,
        id_token_signed_response_alg: None,
        introspection_audiences: vec![],
        require_pushed_authorization_requests: false,
        dpop_bound_access_tokens: false,
    });
}

async fn start(app: &TestApp, form: &[(&str, &str)]) -> (u16, Value) {
    let response = app
        .http
        .post(app.url("/device_authorization"))
        .form(form)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn poll(app: &TestApp, client_id: &str, device_code: &str) -> (u16, Value) {
    let response = app
        .http
        .post(app.url("/token"))
        .form(&[
            ("grant_type", DEVICE_GRANT),
            ("device_code", device_code),
            ("client_id", client_id),
        ])
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn every_poll_answer_follows_rfc8628(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    device_client(&app, "cli", &format!("{DEVICE_GRANT} refresh_token"));
    device_client(&app, "other", DEVICE_GRANT);
    app.user("ada", &["user"]);
    let (status, started) = start(
        &app,
        &[("client_id", "cli"), ("scope", "openid offline_access")],
    )
    .await;
    assert_eq!(status, 200, "{started}");
    let user_code = started["user_code"].as_str().unwrap();
    assert!(
        user_code.len() == 9 && user_code.as_bytes()[4] == b'-',
        "BCDF-GHJK form: {user_code}"
    );
    assert_eq!(started["verification_uri"], app.url("/device").as_str());
    assert_eq!(
        started["verification_uri_complete"],
        app.url(&format!("/device?user_code={user_code}")).as_str()
    );
    assert_eq!(
        (started["expires_in"].as_i64(), started["interval"].as_i64()),
        (Some(600), Some(5))
    );
    let device_code = started["device_code"].as_str().unwrap();
    let error = |answer: (u16, Value)| {
        (
            answer.0,
            answer.1["error"].as_str().unwrap_or("").to_string(),
        )
    };
    assert_eq!(
        error(poll(&app, "cli", device_code).await),
        (400, "authorization_pending".into())
    );
    // Too fast: slow_down, and the interval grows by 5 s (to 10 s).
    assert_eq!(
        error(poll(&app, "cli", device_code).await),
        (400, "slow_down".into())
    );
    app.clock.advance(6);
    assert_eq!(
        error(poll(&app, "cli", device_code).await),
        (400, "slow_down".into()),
        "now 15 s"
    );
    app.clock.advance(15);
    assert_eq!(
        error(poll(&app, "cli", device_code).await),
        (400, "authorization_pending".into())
    );
    // Another client cannot poll it (nor spend it).
    app.clock.advance(20);
    assert_eq!(
        error(poll(&app, "other", device_code).await),
        (400, "invalid_grant".into())
    );
    // Approved: tokens, exactly once.
    let browser = Browser::new(&app);
    let page = browser
        .get(&format!("/device?user_code={user_code}"))
        .await
        .text()
        .await
        .unwrap();
    let csrf = hidden_field(&page, "csrf_token");
    browser
        .post_form(
            "/device",
            &[
                ("csrf_token", &csrf),
                ("user_code", &user_code.to_lowercase()),
            ],
        )
        .await;
    let login = browser.get("/login").await.text().await.unwrap();
    let csrf = hidden_field(&login, "csrf_token");
    browser
        .post_form(
            "/login",
            &[
                ("csrf_token", &csrf),
                ("username", "ada"),
                ("password", PASSWORD),
            ],
        )
        .await;
    let consent = browser.get("/device/consent").await.text().await.unwrap();
    let csrf = hidden_field(&consent, "csrf_token");
    browser
        .post_form(
            "/device/decision",
            &[("csrf_token", &csrf), ("decision", "allow")],
        )
        .await;
    // A cluster poll (which purges spent grants) between the approval and the device's next
    // poll must not take the approved grant away.
    app.sync();
    app.clock.advance(20);
    let (status, tokens) = poll(&app, "cli", device_code).await;
    assert_eq!(status, 200, "{tokens}");
    assert!(tokens["id_token"].is_string() && tokens["refresh_token"].is_string());
    app.clock.advance(20);
    assert_eq!(
        error(poll(&app, "cli", device_code).await),
        (400, "invalid_grant".into()),
        "once"
    );
    // Denied.
    let (_, denied) = start(&app, &[("client_id", "cli")]).await;
    let code = denied["user_code"].as_str().unwrap();
    let page = browser.get("/device").await.text().await.unwrap();
    let csrf = hidden_field(&page, "csrf_token");
    browser
        .post_form("/device", &[("csrf_token", &csrf), ("user_code", code)])
        .await;
    let consent = browser.get("/device/consent").await.text().await.unwrap();
    let csrf = hidden_field(&consent, "csrf_token");
    let answer = browser
        .post_form(
            "/device/decision",
            &[("csrf_token", &csrf), ("decision", "deny")],
        )
        .await
        .text()
        .await
        .unwrap();
    assert!(answer.contains("not connected"));
    assert_eq!(
        error(poll(&app, "cli", denied["device_code"].as_str().unwrap()).await),
        (400, "access_denied".into())
    );
    // Expired.
    let (_, late) = start(&app, &[("client_id", "cli")]).await;
    app.clock.advance(601);
    assert_eq!(
        error(poll(&app, "cli", late["device_code"].as_str().unwrap()).await),
        (400, "expired_token".into())
    );
    // A client deleted and re-created under its id does not inherit its pending codes.
    let (_, orphan) = start(&app, &[("client_id", "cli")]).await;
    app.app.clients().delete("cli").unwrap();
    device_client(&app, "cli", DEVICE_GRANT);
    assert_eq!(
        error(poll(&app, "cli", orphan["device_code"].as_str().unwrap()).await),
        (400, "invalid_grant".into())
    );
    // At the device authorization endpoint: a client without the grant, a scope it lacks.
    app.machine_client("svc", "models:read");
    device_client(&app, "webby", "refresh_token");
    assert_eq!(
        error(start(&app, &[("client_id", "webby")]).await),
        (400, "unauthorized_client".into())
    );
    assert_eq!(
        error(start(&app, &[("client_id", "cli"), ("scope", "admin")]).await),
        (400, "invalid_scope".into())
    );
    assert_eq!(
        error(start(&app, &[("client_id", "nobody")]).await),
        (401, "invalid_client".into())
    );
}

async fn the_device_pages_refuse_what_they_should(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    device_client(&app, "cli", DEVICE_GRANT);
    let browser = Browser::new(&app);
    let page = browser.get("/device").await.text().await.unwrap();
    let csrf = hidden_field(&page, "csrf_token");
    let enter = |code: String| {
        let (browser, csrf) = (&browser, csrf.clone());
        async move {
            let response = browser
                .post_form("/device", &[("csrf_token", &csrf), ("user_code", &code)])
                .await;
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    // Without the CSRF token: refused.
    let forged = browser
        .post_form(
            "/device",
            &[("csrf_token", "forged"), ("user_code", "BCDF-GHJK")],
        )
        .await;
    assert_eq!(forged.status(), 400);
    // Unknown, used and expired codes each say so.
    let (status, body) = enter("BCDF-GHJK".into()).await;
    assert_eq!(status, 400);
    assert!(
        body.contains("No device is waiting for this code"),
        "{body}"
    );
    let (_, expiring) = start(&app, &[("client_id", "cli")]).await;
    app.clock.advance(601);
    let (_, body) = enter(expiring["user_code"].as_str().unwrap().into()).await;
    assert!(body.contains("This code has expired"), "{body}");
    // Five wrong codes in a session: this session must start over.
    for _ in 0..3 {
        enter("zzzz-zzzz".into()).await;
    }
    let (status, body) = enter("BCDF-GHJK".into()).await;
    assert_eq!(status, 429, "{body}");
    // Ten wrong codes per minute from an address, across sessions.
    let fresh_session = || async {
        let other = Browser::new(&app);
        let page = other.get("/device").await.text().await.unwrap();
        (other, hidden_field(&page, "csrf_token"))
    };
    app.clock.advance(60); // a fresh minute for the address
    for _ in 0..5 {
        let (other, csrf) = fresh_session().await;
        for _ in 0..2 {
            let status = other
                .post_form(
                    "/device",
                    &[("csrf_token", &csrf), ("user_code", "BCDF-GHJK")],
                )
                .await
                .status();
            assert_eq!(status, 400, "within the address's ten");
        }
    }
    let (other, csrf) = fresh_session().await;
    let over = other
        .post_form(
            "/device",
            &[("csrf_token", &csrf), ("user_code", "BCDF-GHJK")],
        )
        .await;
    assert_eq!(over.status(), 429, "the address's limit");
    app.clock.advance(60);
    let (other, csrf) = fresh_session().await;
    let after = other
        .post_form(
            "/device",
            &[("csrf_token", &csrf), ("user_code", "BCDF-GHJK")],
        )
        .await;
    assert_eq!(after.status(), 400, "a new minute");
    // A decision without a pending code is refused.
    let (other, csrf) = fresh_session().await;
    let decided = other
        .post_form(
            "/device/decision",
            &[("csrf_token", &csrf), ("decision", "allow")],
        )
        .await;
    assert_eq!(decided.status(), 400);
}
