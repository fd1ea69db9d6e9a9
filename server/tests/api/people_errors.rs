//! Every authorization-endpoint and UserInfo error, and the pages' security properties.

use openidconnect::PkceCodeChallenge;
use serde_json::Value;

use crate::helpers::{
    error_of, spawn_app, spawn_app_with, Browser, Db, TestApp, PASSWORD, WEB_CALLBACK,
};
use crate::on_both_backends;
use crate::people::urlencode;

on_both_backends!(
    authorization_errors_follow_rfc6749_and_oidc,
    userinfo_errors_follow_rfc6750
);

fn authorize_url(client_id: &str, extra: &str) -> String {
    let (challenge, _) = PkceCodeChallenge::new_random_sha256();
    format!(
        "/authorize?client_id={client_id}&redirect_uri={}&response_type=code&scope=openid&state=xyz&code_challenge={}&code_challenge_method=S256{extra}",
        urlencode(WEB_CALLBACK),
        challenge.as_str()
    )
}

/// The error a redirect carries, after checking it goes to the client with state and iss.
fn redirect_error(app: &TestApp, response: &reqwest::Response) -> String {
    assert_eq!(response.status(), 303, "expected a redirect to the client");
    let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    assert!(location.as_str().starts_with(WEB_CALLBACK), "{location}");
    let query: std::collections::HashMap<String, String> =
        location.query_pairs().into_owned().collect();
    assert_eq!(query.get("iss"), Some(&app.address));
    assert!(query.contains_key("error_description"));
    assert!(!query.contains_key("code"));
    if let Some(state) = query.get("state") {
        assert_eq!(state, "xyz");
    }
    query["error"].clone()
}

async fn authorization_errors_follow_rfc6749_and_oidc(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    app.web_client("notebook");
    app.machine_client("machine", "models:read");
    app.user("ada", &[]);
    let browser = Browser::new(&app);

    // Before the client and redirect URI are verified: an HTML page, never a redirect.
    for url in [
        authorize_url("unknown-client", ""),
        "/authorize?client_id=notebook&redirect_uri=https%3A%2F%2Fevil.example%2Fcb&response_type=code".to_string(),
        "/authorize?response_type=code".to_string(),
        format!("{}&client_id=notebook", authorize_url("notebook", "")),
        "/authorize?client_id=%ff%fe".to_string(),
    ] {
        let response = browser.get(&url).await;
        assert_eq!(response.status(), 400, "{url}");
        assert!(response.headers().get("location").is_none());
        assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
        let html = response.text().await.unwrap();
        assert!(html.contains("not valid"), "{html}");
    }

    // After: redirects with error, state and iss.
    let cases = [
        ("&response_type=token", "invalid_request"), // repeated parameter
        ("&prompt=bogus", "invalid_request"),
        ("&max_age=-1", "invalid_request"),
        ("&prompt=none%20login", "invalid_request"),
        ("&resource=https%3A%2F%2Fevil.example", "invalid_target"),
        ("&request=eyJhbGciOiJub25lIn0", "invalid_request"),
        ("&response_mode=fragment", "invalid_request"),
    ];
    for (extra, expected) in cases {
        let response = browser.get(&authorize_url("notebook", extra)).await;
        assert_eq!(redirect_error(&app, &response), expected, "{extra}");
    }
    let swap = |from: &str, to: &str| authorize_url("notebook", "").replace(from, to);
    let response = browser
        .get(&swap("response_type=code", "response_type=token"))
        .await;
    assert_eq!(redirect_error(&app, &response), "unsupported_response_type");
    let response = browser.get(&swap("&response_type=code", "")).await;
    assert_eq!(redirect_error(&app, &response), "invalid_request");
    let response = browser
        .get(&swap("scope=openid", "scope=openid%20admin"))
        .await;
    assert_eq!(redirect_error(&app, &response), "invalid_scope");
    let response = browser
        .get(&swap(
            "code_challenge_method=S256",
            "code_challenge_method=plain",
        ))
        .await;
    assert_eq!(redirect_error(&app, &response), "invalid_request");
    let no_pkce = format!(
        "/authorize?client_id=notebook&redirect_uri={}&response_type=code&scope=openid&state=xyz",
        urlencode(WEB_CALLBACK)
    );
    let response = browser.get(&no_pkce).await;
    assert_eq!(
        redirect_error(&app, &response),
        "invalid_request",
        "PKCE required by default"
    );
    let response = browser
        .get(&swap("code_challenge=", "code_challenge=short&x="))
        .await;
    assert_eq!(redirect_error(&app, &response), "invalid_request");

    // prompt=none: without a session → login_required.
    let response = browser
        .get(&authorize_url("notebook", "&prompt=none"))
        .await;
    assert_eq!(redirect_error(&app, &response), "login_required");

    // Sign in, then prompt=none without consent → consent_required.
    let login = browser.get(&authorize_url("notebook", "")).await;
    let login_page = browser
        .get(login.headers()["location"].to_str().unwrap())
        .await;
    let cookie_before = session_cookie(&login_page);
    let html = login_page.text().await.unwrap();
    let csrf = crate::helpers::hidden_field(&html, "csrf_token");
    let request = crate::helpers::hidden_field(&html, "request");

    // One generic message for wrong passwords and unknown users; no CSRF token → refused.
    for (user, password) in [("ada", "wrong password"), ("nobody", PASSWORD)] {
        let failed = browser
            .post_form(
                "/login",
                &[
                    ("csrf_token", &csrf),
                    ("request", &request),
                    ("username", user),
                    ("password", password),
                ],
            )
            .await;
        assert_eq!(failed.status(), 401);
        let page = failed.text().await.unwrap();
        assert!(
            page.contains("The username or password is incorrect."),
            "{page}"
        );
    }
    let no_csrf = browser
        .post_form(
            "/login",
            &[
                ("csrf_token", "forged"),
                ("request", &request),
                ("username", "ada"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(no_csrf.status(), 400);
    let ok = browser
        .post_form(
            "/login",
            &[
                ("csrf_token", &csrf),
                ("request", &request),
                ("username", "ada"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(ok.status(), 303);
    let cookie_after = session_cookie(&ok);
    assert!(
        cookie_after.is_some() && cookie_after != cookie_before,
        "session id renewed at login"
    );

    let response = browser
        .get(&authorize_url("notebook", "&prompt=none"))
        .await;
    assert_eq!(redirect_error(&app, &response), "consent_required");

    // Deny → access_denied.
    let consent_page = browser.get(&authorize_url("notebook", "")).await;
    assert_eq!(consent_page.status(), 200);
    let html = consent_page.text().await.unwrap();
    assert!(html.contains("Notebook Web App"));
    let csrf = crate::helpers::hidden_field(&html, "csrf_token");
    let request = crate::helpers::hidden_field(&html, "request");
    let denied = browser
        .post_form(
            "/consent",
            &[
                ("csrf_token", &csrf),
                ("request", &request),
                ("decision", "deny"),
            ],
        )
        .await;
    assert_eq!(redirect_error(&app, &denied), "access_denied");

    // A client not registered for the code grant → unauthorized_client (its redirect URI is
    // verified only if it has one; a machine client has none → page).
    let response = browser.get(&authorize_url("machine", "")).await;
    assert_eq!(response.status(), 400);
}

fn session_cookie(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("portcullis_session="))
        .map(|c| c.split(';').next().unwrap().to_string())
}

async fn userinfo_errors_follow_rfc6750(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let secret = app.machine_client("svc", "models:read");
    let url = app.url("/userinfo");
    // No token: 401 with a bare Bearer challenge, and a DPoP one with its algorithms (RFC
    // 9449 §7.1): either kind of token is taken here.
    let response = app.http.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let challenges: Vec<&str> = response
        .headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(
        challenges,
        [
            "Bearer realm=\"portcullis\"",
            "DPoP realm=\"portcullis\", algs=\"ES256 RS256 PS256 EdDSA\""
        ]
    );
    // A malformed token.
    let response = app
        .http
        .get(&url)
        .bearer_auth("not.a.jwt")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert!(response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("error=\"invalid_token\""));
    // A valid access token without `openid` → 403 insufficient_scope.
    let token: Value = app
        .post_token(
            &[("grant_type", "client_credentials")],
            Some(("svc", &secret)),
        )
        .await
        .json()
        .await
        .unwrap();
    let access = token["access_token"].as_str().unwrap();
    let response = app.http.get(&url).bearer_auth(access).send().await.unwrap();
    assert_eq!(response.status(), 403);
    assert!(response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("insufficient_scope"));
    // Expired (injected clock).
    app.clock.advance(app.settings.access_token_ttl as i64 + 1);
    let response = app
        .http
        .post(&url)
        .form(&[("access_token", access)])
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(response).await, (401, "invalid_token".into()));
    // Two ways at once.
    let response = app
        .http
        .post(&url)
        .bearer_auth(access)
        .form(&[("access_token", access)])
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(response).await, (400, "invalid_request".into()));
    let response = app
        .http
        .get(&url)
        .header("authorization", "Basic abc")
        .send()
        .await
        .unwrap();
    // Another scheme is no authentication at all (RFC 6750 §3.1): the bare challenges.
    assert_eq!(response.status(), 401);
    let challenges: Vec<&str> = response
        .headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(challenges.len(), 2, "{challenges:?}");
    assert!(
        challenges.iter().all(|c| !c.contains("error=")),
        "{challenges:?}"
    );
    // A Bearer header without its token is malformed.
    let response = app
        .http
        .get(&url)
        .header("authorization", "Bearer ")
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(response).await, (400, "invalid_request".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_cannot_be_framed_and_cookies_are_locked_down() {
    // An https issuer makes the session cookie Secure (served over http here only for the test).
    let app = spawn_app_with(Db::Sqlite, |s| {
        s.allow_insecure_http_issuer = true;
    })
    .await
    .unwrap();
    app.web_client("notebook");
    let browser = Browser::new(&app);
    let login = browser.get("/login").await;
    assert_eq!(login.status(), 200);
    let headers = login.headers().clone();
    assert_eq!(headers["x-frame-options"], "DENY");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    assert_eq!(headers["cache-control"], "no-store");
    let cookie = headers["set-cookie"].to_str().unwrap().to_lowercase();
    assert!(
        cookie.contains("httponly") && cookie.contains("samesite=lax"),
        "{cookie}"
    );
    assert!(
        !cookie.contains("secure"),
        "no Secure flag for an http issuer"
    );
    let html = login.text().await.unwrap();
    assert!(html.contains("<label for=\"username\"") && html.contains("<label for=\"password\""));

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut settings = app.settings.clone();
    settings.issuer = format!("https://127.0.0.1:{port}");
    let running = portcullis::startup::build_on(listener, settings, app.clock.clone())
        .await
        .unwrap();
    tokio::spawn(running.server);
    let response = reqwest::get(format!("http://127.0.0.1:{port}/login"))
        .await
        .unwrap();
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(
        cookie.contains("secure"),
        "Secure cookie for an https issuer: {cookie}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_users_cannot_sign_in() {
    let app = spawn_app_with(Db::Sqlite, |_| {}).await.unwrap();
    app.user("ada", &[]);
    app.app.users().set_disabled("ada", true).unwrap();
    let browser = Browser::new(&app);
    let page = browser.get("/login").await.text().await.unwrap();
    let csrf = crate::helpers::hidden_field(&page, "csrf_token");
    let refused = browser
        .post_form(
            "/login",
            &[
                ("csrf_token", &csrf),
                ("username", "ada"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(refused.status(), 401);
    assert!(refused
        .text()
        .await
        .unwrap()
        .contains("The username or password is incorrect."));
    app.app.users().set_disabled("ada", false).unwrap();
    let page = browser.get("/login").await.text().await.unwrap();
    let csrf = crate::helpers::hidden_field(&page, "csrf_token");
    let accepted = browser
        .post_form(
            "/login",
            &[
                ("csrf_token", &csrf),
                ("username", "ada"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(
        accepted.status(),
        200,
        "signed in (no pending request: a confirmation page)"
    );
}
