//! Reuse detection that cannot be raced (RFC 9700 §4.14.2, RFC 7009): two uses of one refresh
//! token at the same moment, `/revoke` racing a refresh, and two redemptions of one code. Once
//! the dust settles, nothing issued from the grant may still work — not at `/token`, not at
//! `/introspect`, not at `/userinfo` — including what the winner was issued in flight.

use serde_json::Value;

use crate::helpers::{spawn_app, Browser, Db, TestApp, WEB_CALLBACK};
use crate::on_both_backends;

on_both_backends!(
    two_refreshes_at_once_leave_no_family_alive,
    revocation_racing_a_refresh_leaves_no_family_alive,
    two_redemptions_of_a_code_at_once_leave_nothing_alive,
    deleting_a_client_racing_its_refresh_leaves_nothing_alive,
    another_clients_spent_token_revokes_nothing,
    a_redirect_uri_sent_at_authorization_is_required_at_the_token_endpoint,
);

const TRIALS: usize = 50;
const SCOPE: &str = "openid offline_access";

struct Setup {
    app: TestApp,
    browser: Browser,
    secret: String,
}

async fn setup(db: Db) -> Option<Setup> {
    let app = spawn_app(db).await?;
    let secret = app.web_client("web");
    app.user("ada", &["user"]);
    let browser = Browser::new(&app);
    Some(Setup {
        app,
        browser,
        secret,
    })
}

impl Setup {
    async fn token(&self, form: &[(&str, &str)]) -> reqwest::Response {
        self.app.post_token(form, Some(("web", &self.secret))).await
    }

    /// A new grant: a code (the browser stays signed in and consented after the first).
    async fn code(&self) -> (String, String) {
        self.browser.code("web", SCOPE, "ada").await
    }

    async fn redeem(&self, code: &str, verifier: &str) -> reqwest::Response {
        self.token(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", WEB_CALLBACK),
            ("code_verifier", verifier),
        ])
        .await
    }

    /// A new grant's tokens.
    async fn family(&self) -> Value {
        let (code, verifier) = self.code().await;
        let response = self.redeem(&code, &verifier).await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    async fn refresh(&self, token: &str) -> reqwest::Response {
        self.token(&[("grant_type", "refresh_token"), ("refresh_token", token)])
            .await
    }

    async fn revoke(&self, token: &str) -> reqwest::Response {
        self.app
            .http
            .post(self.app.url("/revoke"))
            .basic_auth("web", Some(&self.secret))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap()
    }

    /// Whether anything in a token response still works anywhere.
    async fn still_alive(&self, tokens: &Value) -> Vec<&'static str> {
        let mut alive = Vec::new();
        if let Some(refresh) = tokens["refresh_token"].as_str() {
            if self.refresh(refresh).await.status() == 200 {
                alive.push("refresh token at /token");
            }
        }
        let access = tokens["access_token"].as_str().unwrap();
        let introspected: Value = self
            .app
            .http
            .post(self.app.url("/introspect"))
            .basic_auth("web", Some(&self.secret))
            .form(&[("token", access)])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if introspected["active"] == true {
            alive.push("access token at /introspect");
        }
        let userinfo = self
            .app
            .http
            .get(self.app.url("/userinfo"))
            .bearer_auth(access)
            .send()
            .await
            .unwrap();
        if userinfo.status() == 200 {
            alive.push("access token at /userinfo");
        }
        alive
    }
}

/// The responses that issued tokens, as JSON.
async fn issued(responses: [reqwest::Response; 2]) -> Vec<Value> {
    let mut tokens = Vec::new();
    for response in responses {
        if response.status() == 200 {
            tokens.push(response.json().await.unwrap());
        } else {
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"], "invalid_grant", "the loser's answer: {body}");
        }
    }
    tokens
}

async fn two_refreshes_at_once_leave_no_family_alive(db: Db) {
    let Some(setup) = setup(db).await else {
        return;
    };
    let mut survivors = Vec::new();
    let mut winners = 0;
    for trial in 0..TRIALS {
        let family = setup.family().await;
        let first = family["refresh_token"].as_str().unwrap();
        let (a, b) = tokio::join!(setup.refresh(first), setup.refresh(first));
        let tokens = issued([a, b]).await;
        assert!(tokens.len() <= 1, "trial {trial}: both refreshes won");
        winners += tokens.len();
        for tokens in tokens.iter().chain([&family]) {
            let alive = setup.still_alive(tokens).await;
            if !alive.is_empty() {
                survivors.push((trial, alive));
            }
        }
    }
    eprintln!("{winners} of {TRIALS} races had a winner; surviving families: {survivors:?}");
    assert!(
        survivors.is_empty(),
        "{} of {TRIALS} families survived: {survivors:?}",
        survivors.len()
    );
}

async fn revocation_racing_a_refresh_leaves_no_family_alive(db: Db) {
    let Some(setup) = setup(db).await else {
        return;
    };
    let mut survivors = Vec::new();
    let mut refreshed = 0;
    for trial in 0..TRIALS {
        let family = setup.family().await;
        let first = family["refresh_token"].as_str().unwrap();
        let (revoked, refresh) = tokio::join!(setup.revoke(first), setup.refresh(first));
        assert_eq!(revoked.status(), 200);
        let tokens = if refresh.status() == 200 {
            refreshed += 1;
            vec![refresh.json::<Value>().await.unwrap()]
        } else {
            let body: Value = refresh.json().await.unwrap();
            assert_eq!(body["error"], "invalid_grant", "{body}");
            Vec::new()
        };
        for tokens in tokens.iter().chain([&family]) {
            let alive = setup.still_alive(tokens).await;
            if !alive.is_empty() {
                survivors.push((trial, alive));
            }
        }
    }
    eprintln!("the refresh won {refreshed} of {TRIALS} races; surviving families: {survivors:?}");
    assert!(
        survivors.is_empty(),
        "{} of {TRIALS} families survived: {survivors:?}",
        survivors.len()
    );
}

async fn two_redemptions_of_a_code_at_once_leave_nothing_alive(db: Db) {
    let Some(setup) = setup(db).await else {
        return;
    };
    let mut survivors = Vec::new();
    for trial in 0..TRIALS {
        let (code, verifier) = setup.code().await;
        let (a, b) = tokio::join!(
            setup.redeem(&code, &verifier),
            setup.redeem(&code, &verifier)
        );
        let tokens = issued([a, b]).await;
        assert!(
            tokens.len() <= 1,
            "trial {trial}: the code was redeemed twice"
        );
        for tokens in &tokens {
            let alive = setup.still_alive(tokens).await;
            if !alive.is_empty() {
                survivors.push((trial, alive));
            }
        }
    }
    assert!(
        survivors.is_empty(),
        "{} of {TRIALS} grants survived: {survivors:?}",
        survivors.len()
    );
}

async fn deleting_a_client_racing_its_refresh_leaves_nothing_alive(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    app.user("ada", &["user"]);
    let browser = Browser::new(&app);
    let mut survivors = Vec::new();
    for trial in 0..20 {
        let id = crate::helpers::unique("web");
        let secret = app.web_client(&id);
        let (code, verifier) = browser.code(&id, SCOPE, "ada").await;
        let client = (id.as_str(), secret.as_str());
        let family: Value = crate::helpers::token_at(
            &app.http,
            &app.address,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", WEB_CALLBACK),
                ("code_verifier", &verifier),
            ],
            client,
        )
        .await
        .json()
        .await
        .unwrap();
        let first = family["refresh_token"].as_str().unwrap();
        let registry = app.app.clone();
        let doomed = id.clone();
        let form = [("grant_type", "refresh_token"), ("refresh_token", first)];
        let (refreshed, deleted) = tokio::join!(
            crate::helpers::token_at(&app.http, &app.address, &form, client),
            tokio::task::spawn_blocking(move || registry.clients().delete(&doomed))
        );
        deleted.unwrap().unwrap();
        // Re-created under the same id: nothing of its predecessor may work for it.
        app.clock.advance(1);
        let secret = app.web_client(&id);
        if refreshed.status() == 200 {
            let tokens: Value = refreshed.json().await.unwrap();
            let again = crate::helpers::token_at(
                &app.http,
                &app.address,
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
                ],
                (&id, &secret),
            )
            .await;
            if again.status() == 200 {
                survivors.push(trial);
            }
        }
    }
    assert!(survivors.is_empty(), "surviving families: {survivors:?}");
}

async fn another_clients_spent_token_revokes_nothing(db: Db) {
    let Some(setup) = setup(db).await else {
        return;
    };
    let intruder = setup.app.web_client("intruder");
    let as_intruder = |form: Vec<(&'static str, String)>| {
        let setup = &setup;
        let intruder = intruder.clone();
        async move {
            let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let response = setup
                .app
                .post_token(&form, Some(("intruder", &intruder)))
                .await;
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap();
            (
                status,
                body["error"].as_str().unwrap_or_default().to_string(),
            )
        }
    };
    // A spent refresh token, presented by another client: invalid_grant, and the owner's
    // family lives on.
    let family = setup.family().await;
    let first = family["refresh_token"].as_str().unwrap().to_string();
    let rotated: Value = setup.refresh(&first).await.json().await.unwrap();
    let answer = as_intruder(vec![
        ("grant_type", "refresh_token".into()),
        ("refresh_token", first.clone()),
    ])
    .await;
    assert_eq!(answer, (400, "invalid_grant".into()));
    assert_eq!(
        setup.still_alive(&rotated).await,
        vec![
            "refresh token at /token",
            "access token at /introspect",
            "access token at /userinfo"
        ],
        "the owner's grant is intact"
    );
    // A spent code, the same.
    let (code, verifier) = setup.code().await;
    let owner: Value = setup.redeem(&code, &verifier).await.json().await.unwrap();
    let answer = as_intruder(vec![
        ("grant_type", "authorization_code".into()),
        ("code", code),
        ("redirect_uri", WEB_CALLBACK.into()),
        ("code_verifier", verifier),
    ])
    .await;
    assert_eq!(answer, (400, "invalid_grant".into()));
    assert_eq!(setup.still_alive(&owner).await.len(), 3);
}

async fn a_redirect_uri_sent_at_authorization_is_required_at_the_token_endpoint(db: Db) {
    let Some(setup) = setup(db).await else {
        return;
    };
    // The browser's code flow names redirect_uri: the token request must repeat it.
    let (code, verifier) = setup.code().await;
    let response = setup
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", &verifier),
        ])
        .await;
    assert_eq!(
        crate::helpers::error_of(response).await,
        (400, "invalid_request".into())
    );
    // The code was not spent by the failed request: the corrected one succeeds.
    assert_eq!(setup.redeem(&code, &verifier).await.status(), 200);
    // Left out of the authorization request (the client has one URI), it may be left out here.
    let pkce = crate::helpers::pkce();
    let url = crate::helpers::authorize_url(
        &setup.app.address,
        "web",
        SCOPE,
        &pkce.challenge,
        None,
        None,
    );
    let callback = setup
        .browser
        .authorize(&url, "ada", crate::helpers::PASSWORD)
        .await;
    let code = callback
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let response = setup
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", &pkce.verifier),
        ])
        .await;
    assert_eq!(response.status(), 200);
}
