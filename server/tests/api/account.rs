//! The account page (`/account`): connected apps and taking access back, signed-in devices
//! and signing them out, changing the password. Over HTTP with a cookie jar on both backends
//! (Postgres with Redis sessions when Redis is configured), and in a real Chromium.

use fantoccini::Locator;
use serde_json::Value;

use crate::browser::{callback_server, save_screenshot, sign_in, start_chromium, wait_for_url};
use crate::helpers::{
    error_of, hidden_field, pkce, spawn_app_with, Browser, Db, TestApp, PASSWORD, WEB_CALLBACK,
};
use crate::on_both_backends;

on_both_backends!(
    removing_an_app_revokes_its_tokens_and_asks_again,
    changing_the_password_checks_it_and_signs_out_other_devices,
    a_device_is_signed_out_from_another,
    account_forms_need_the_csrf_token_and_a_sign_in,
    a_delegation_is_shown_and_removing_the_app_ends_the_agents_tokens,
);

/// SQLite with in-process sessions; Postgres with Redis sessions (when Redis is configured).
pub async fn spawn(db: Db) -> Option<TestApp> {
    let redis = match db {
        Db::Postgres => std::env::var("PORTCULLIS_TEST_REDIS_URL")
            .ok()
            .filter(|u| !u.is_empty()),
        Db::Sqlite => None,
    };
    spawn_app_with(db, |s| s.redis_url = redis).await
}

/// Signs `browser` in through `/account` (which sends it to `/login` and back).
pub async fn sign_in_to_account(browser: &Browser, username: &str, password: &str) -> String {
    let first = browser.get("/account").await;
    assert_eq!(first.status(), 303);
    assert_eq!(first.headers()["location"], "/login");
    let login = browser.get("/login").await.text().await.unwrap();
    let csrf = hidden_field(&login, "csrf_token");
    let response = browser
        .post_form(
            "/login",
            &[
                ("csrf_token", &csrf),
                ("request", ""),
                ("username", username),
                ("password", password),
            ],
        )
        .await;
    assert_eq!(response.status(), 303, "{}", response.text().await.unwrap());
    assert_eq!(response.headers()["location"], "/account");
    let page = browser.get("/account").await;
    assert_eq!(page.status(), 200);
    page.text().await.unwrap()
}

/// A code for the web client `notes`, its tokens, as the signed-in `browser`.
async fn tokens(app: &TestApp, browser: &Browser, secret: &str, scope: &str) -> Value {
    let (code, verifier) = browser.code("notes", scope, "ada").await;
    let response = app
        .post_token(
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", WEB_CALLBACK),
                ("code_verifier", &verifier),
            ],
            Some(("notes", secret)),
        )
        .await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn userinfo_status(app: &TestApp, access_token: &str) -> u16 {
    app.http
        .get(app.url("/userinfo"))
        .bearer_auth(access_token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn removing_an_app_revokes_its_tokens_and_asks_again(db: Db) {
    let Some(app) = spawn(db).await else {
        return;
    };
    let secret = app.web_client("notes");
    app.user("ada", &["user"]);
    let browser = Browser::new(&app);
    let issued = tokens(&app, &browser, &secret, "openid profile offline_access").await;
    let access = issued["access_token"].as_str().unwrap();
    let refresh = issued["refresh_token"].as_str().unwrap();
    assert_eq!(userinfo_status(&app, access).await, 200);

    let page = browser.get("/account").await.text().await.unwrap();
    assert!(page.contains("Notebook Web App"), "{page}");
    assert!(page.contains("See your name and username"), "scopes listed");
    let csrf = hidden_field(&page, "csrf_token");
    let removed = browser
        .post_form(
            "/account/apps/remove",
            &[("csrf_token", &csrf), ("client_id", "notes")],
        )
        .await;
    assert_eq!(removed.status(), 303);
    assert_eq!(removed.headers()["location"], "/account?done=app#apps");
    let page = browser.get("/account?done=app").await.text().await.unwrap();
    assert!(page.contains("access was removed") && page.contains("id=\"no-apps\""));

    // The refresh token is refused, the access token denied (the deny list).
    let refreshed = app
        .post_token(
            &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
            Some(("notes", &secret)),
        )
        .await;
    assert_eq!(error_of(refreshed).await, (400, "invalid_grant".into()));
    assert_eq!(userinfo_status(&app, access).await, 401);

    // The consent is forgotten: the next authorization asks again.
    let pkce = pkce();
    let url = crate::helpers::authorize_url(
        &app.address,
        "notes",
        "openid profile",
        &pkce.challenge,
        Some(WEB_CALLBACK),
        None,
    );
    let asked = browser.get(&url).await;
    assert_eq!(asked.status(), 200, "the consent page, not a code");
    assert!(asked.text().await.unwrap().contains("id=\"allow\""));
    let events = app.audit_events("consent_revoked").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].client_id.as_deref(), Some("notes"));

    // Removing again (a second click) is harmless; an unknown app is no error either.
    for client in ["notes", "never-connected"] {
        let again = browser
            .post_form(
                "/account/apps/remove",
                &[("csrf_token", &csrf), ("client_id", client)],
            )
            .await;
        assert_eq!(again.status(), 303);
    }
}

async fn changing_the_password_checks_it_and_signs_out_other_devices(db: Db) {
    let Some(app) = spawn(db).await else {
        return;
    };
    app.user("ada", &["user"]);
    let laptop = Browser::new(&app);
    let phone = Browser::new(&app);
    sign_in_to_account(&phone, "ada", PASSWORD).await;
    let page = sign_in_to_account(&laptop, "ada", PASSWORD).await;
    assert!(page.contains("this device"), "{page}");
    assert_eq!(
        page.matches("action=\"/account/sessions/end\"").count(),
        1,
        "the other device can be signed out"
    );
    let csrf = hidden_field(&page, "csrf_token");
    let change = |current: &'static str, new: &'static str, confirm: &'static str| {
        let (laptop, csrf) = (&laptop, csrf.clone());
        async move {
            let response = laptop
                .post_form(
                    "/account/password",
                    &[
                        ("csrf_token", csrf.as_str()),
                        ("current_password", current),
                        ("new_password", new),
                        ("confirm_password", confirm),
                    ],
                )
                .await;
            let status = response.status().as_u16();
            (status, response.text().await.unwrap())
        }
    };
    let (status, body) = change("wrong password", "a new long secret", "a new long secret").await;
    assert_eq!(status, 400);
    assert!(body.contains("current password is not correct"), "{body}");
    let (status, body) = change(PASSWORD, "a new long secret", "another one").await;
    assert_eq!(status, 400);
    assert!(body.contains("do not match"), "{body}");
    let (status, body) = change(PASSWORD, "short", "short").await;
    assert_eq!(status, 400);
    assert!(body.contains("at least 8 characters"), "{body}");
    let (status, _) = change(PASSWORD, "a new long secret", "a new long secret").await;
    assert_eq!(status, 303);

    // The phone is signed out; the laptop stays.
    let phone_again = phone.get("/account").await;
    assert_eq!(phone_again.status(), 303);
    assert_eq!(phone_again.headers()["location"], "/login");
    let page = laptop
        .get("/account?done=password")
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("Your password was changed"));
    assert_eq!(page.matches("action=\"/account/sessions/end\"").count(), 0);
    let user = app.app.users().find_by_username("ada").unwrap();
    assert!(app
        .app
        .users()
        .verify_password(user.as_ref(), "a new long secret"));
    assert!(!app.app.users().verify_password(user.as_ref(), PASSWORD));
    assert_eq!(app.audit_events("password_changed").await.len(), 1);
    assert_eq!(app.audit_events("password_change_failed").await.len(), 1);

    // Past five attempts in five minutes, the form pauses.
    for _ in 0..3 {
        change("wrong password", "x", "x").await;
    }
    let (status, body) = change("wrong password", "x", "x").await;
    assert_eq!(status, 429, "{body}");
}

async fn a_device_is_signed_out_from_another(db: Db) {
    let Some(app) = spawn(db).await else {
        return;
    };
    app.user("ada", &["user"]);
    app.user("bob", &["user"]);
    let laptop = Browser::new(&app);
    let phone = Browser::new(&app);
    let tablet = Browser::new(&app);
    let bobs = Browser::new(&app);
    // A second apart, so the page's order (newest first) is known.
    sign_in_to_account(&phone, "ada", PASSWORD).await;
    app.clock.advance(1);
    sign_in_to_account(&tablet, "ada", PASSWORD).await;
    app.clock.advance(1);
    sign_in_to_account(&bobs, "bob", PASSWORD).await;
    app.clock.advance(1);
    let page = sign_in_to_account(&laptop, "ada", PASSWORD).await;
    let csrf = hidden_field(&page, "csrf_token");
    // The newest other session first: the tablet.
    let tablet_sid = hidden_field(&page, "sid");
    let ended = laptop
        .post_form(
            "/account/sessions/end",
            &[("csrf_token", &csrf), ("sid", &tablet_sid)],
        )
        .await;
    assert_eq!(ended.status(), 303);
    assert_eq!(
        tablet.get("/account").await.status(),
        303,
        "tablet signed out"
    );
    assert_eq!(phone.get("/account").await.status(), 200, "phone still in");
    // Someone else's session id is not theirs to end (each person's index is their own).
    let bob_page = bobs.get("/account").await.text().await.unwrap();
    let bob_csrf = hidden_field(&bob_page, "csrf_token");
    let phone_page = phone.get("/account").await.text().await.unwrap();
    let laptop_sid = hidden_field(&phone_page, "sid");
    bobs.post_form(
        "/account/sessions/end",
        &[("csrf_token", &bob_csrf), ("sid", &laptop_sid)],
    )
    .await;
    assert_eq!(laptop.get("/account").await.status(), 200);

    let others = laptop
        .post_form("/account/sessions/end-others", &[("csrf_token", &csrf)])
        .await;
    assert_eq!(others.status(), 303);
    assert_eq!(
        phone.get("/account").await.status(),
        303,
        "phone signed out"
    );
    assert_eq!(laptop.get("/account").await.status(), 200);
    assert_eq!(bobs.get("/account").await.status(), 200, "bob untouched");
    // Signed out elsewhere, a session cannot authorize either: it must sign in again.
    let pkce = pkce();
    app.web_client("notes");
    let url = crate::helpers::authorize_url(
        &app.address,
        "notes",
        "openid",
        &pkce.challenge,
        Some(WEB_CALLBACK),
        None,
    );
    let asked = phone.get(&url).await;
    assert_eq!(asked.status(), 303);
    assert!(asked.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("/login"));
}

async fn account_forms_need_the_csrf_token_and_a_sign_in(db: Db) {
    let Some(app) = spawn(db).await else {
        return;
    };
    app.user("ada", &["user"]);
    let browser = Browser::new(&app);
    // Signed out: the forms send nobody anywhere and change nothing.
    let anonymous = browser
        .post_form("/account/sessions/end-others", &[("csrf_token", "guess")])
        .await;
    assert_eq!(anonymous.status(), 400);
    let page = sign_in_to_account(&browser, "ada", PASSWORD).await;
    for path in [
        "/account/password",
        "/account/apps/remove",
        "/account/sessions/end",
        "/account/sessions/end-others",
    ] {
        let without = browser.post_form(path, &[("client_id", "notes")]).await;
        assert_eq!(without.status(), 400, "{path} without a token");
        let body = without.text().await.unwrap();
        assert!(body.contains("<h1>"), "a readable page: {body}");
        let wrong = browser
            .post_form(
                path,
                &[
                    ("csrf_token", "not-the-token"),
                    ("client_id", "notes"),
                    ("sid", "x"),
                ],
            )
            .await;
        assert_eq!(wrong.status(), 400, "{path} with a wrong token");
    }
    // The page itself escapes what it shows and keeps its headers.
    let response = browser.get("/account").await;
    assert_eq!(response.headers()["x-frame-options"], "DENY");
    assert!(response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("frame-ancestors 'none'"));
    assert!(page.contains("ada Example"));
}

async fn a_delegation_is_shown_and_removing_the_app_ends_the_agents_tokens(db: Db) {
    use crate::token_exchange::{exchange, introspect, person_tokens, provision, REPORTS};
    let Some(app) = spawn(db).await else {
        return;
    };
    let secrets = provision(&app);
    let tokens = person_tokens(
        &app,
        &secrets.chat,
        "openid offline_access chat:use reports:read delegate:agent",
    )
    .await;
    let person = tokens["access_token"].as_str().unwrap();
    let acted = exchange(
        &app,
        ("agent", &secrets.agent),
        &[("subject_token", person), ("resource", REPORTS)],
    )
    .await;
    assert_eq!(acted.0, 200, "{}", acted.1);
    let agents_token = acted.1["access_token"].as_str().unwrap().to_string();
    let chat = ("chat", secrets.chat.as_str());
    assert_eq!(introspect(&app, chat, person).await["active"], true);

    let browser = Browser::new(&app);
    let page = sign_in_to_account(&browser, "ada", PASSWORD).await;
    assert!(
        page.contains("Let “agent” act for you") && page.contains("can let agents act for you"),
        "the delegation is visible: {page}"
    );
    assert!(page.contains("delegate:agent"));
    let csrf = hidden_field(&page, "csrf_token");
    let removed = browser
        .post_form(
            "/account/apps/remove",
            &[("csrf_token", &csrf), ("client_id", "chat")],
        )
        .await;
    assert_eq!(removed.status(), 303);
    // The person's token, and the token the agent obtained for them, are both ended.
    assert_eq!(introspect(&app, chat, person).await["active"], false);
    let agent = ("agent", secrets.agent.as_str());
    let after = exchange(
        &app,
        agent,
        &[("subject_token", person), ("resource", REPORTS)],
    )
    .await;
    assert_eq!(after.0, 400, "no more exchanges: {}", after.1);
    let denied = {
        let jti = crate::helpers::claims_of(&agents_token)["jti"]
            .as_str()
            .unwrap()
            .to_string();
        app.app.deny_list().is_denied(&jti).await.unwrap()
    };
    assert!(denied, "the agent's exchanged token is on the deny list");
}

/// Chromium: sign in to an app, see it on the account page, remove it; its refresh token is
/// refused at `/token`. Screenshots of the page at 1280 px and at 390 px.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_removes_an_app_and_its_refresh_token_is_refused() {
    let Some(chromium) = start_chromium().await else {
        return;
    };
    let browser = &chromium.client;
    let app = spawn(Db::Sqlite).await.unwrap();
    let callback = format!("http://127.0.0.1:{}/callback", callback_server());
    let secret = app.create_client(portcullis::clients::NewClient {
        id: "notes".into(),
        name: "Notebook Web App".into(),
        secret: portcullis::clients::SecretChoice::Generate,
        auth_method: None,
        grant_types: vec!["authorization_code refresh_token".into()],
        scopes: vec!["openid profile email offline_access".into()],
        audiences: vec![],
        redirect_uris: vec![callback.clone()],
        post_logout_redirect_uris: vec![],
        roles: vec![],
        jwks: None,
        id_token_signed_response_alg: None,
        introspection_audiences: vec![],
        require_pushed_authorization_requests: false,
        dpop_bound_access_tokens: false,
    });
    app.user("ada", &["user"]);
    let pkce = pkce();
    let url = crate::helpers::authorize_url(
        &app.address,
        "notes",
        "openid profile email offline_access",
        &pkce.challenge,
        Some(&callback),
        Some("s"),
    );
    browser.set_window_size(1280, 900).await.unwrap();
    browser.goto(&url).await.unwrap();
    sign_in(browser, "ada").await;
    let allow = browser
        .wait()
        .for_element(Locator::Id("allow"))
        .await
        .unwrap();
    save_screenshot(browser, "consent").await;
    allow.click().await.unwrap();
    let landed = url::Url::parse(&wait_for_url(browser, &callback).await).unwrap();
    let code = landed
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let issued: Value = app
        .post_token(
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", &callback),
                ("code_verifier", &pkce.verifier),
            ],
            Some(("notes", &secret)),
        )
        .await
        .json()
        .await
        .unwrap();
    let refresh = issued["refresh_token"].as_str().unwrap().to_string();

    browser.goto(&app.url("/account")).await.unwrap();
    let heading = browser
        .wait()
        .for_element(Locator::Css("h1"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(heading, "Your account");
    let apps = browser
        .find(Locator::Id("apps"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(apps.contains("Notebook Web App"), "{apps}");
    // Tall windows: the whole page in one picture.
    browser.set_window_size(1280, 1900).await.unwrap();
    save_screenshot(browser, "account").await;
    browser.set_window_size(390, 2400).await.unwrap();
    save_screenshot(browser, "account-phone").await;
    browser.set_window_size(1280, 900).await.unwrap();
    browser
        .find(Locator::Css("#app-notes button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let notice = browser
        .wait()
        .for_element(Locator::Id("notice"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(notice.contains("access was removed"), "{notice}");
    save_screenshot(browser, "account-app-removed").await;
    // The signed-out page links to the account page.
    browser.goto(&app.url("/logout")).await.unwrap();
    browser
        .wait()
        .for_element(Locator::Css("button[value=logout]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait()
        .for_element(Locator::Css("a[href='/account']"))
        .await
        .unwrap();
    save_screenshot(browser, "logged-out").await;
    browser.clone().close().await.unwrap();

    let refreshed = app
        .post_token(
            &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
            Some(("notes", &secret)),
        )
        .await;
    assert_eq!(error_of(refreshed).await, (400, "invalid_grant".into()));
}
