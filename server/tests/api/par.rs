//! Pushed authorization requests (RFC 9126): pushing, following the reference once, for its
//! client, before it expires; every `/authorize` check already at the push; requiring PAR.

use serde_json::Value;

use crate::helpers::{
    pkce, spawn_app, spawn_app_with, Browser, Db, TestApp, PASSWORD, WEB_CALLBACK,
};
use crate::on_both_backends;

on_both_backends!(
    a_pushed_request_is_followed_once_by_its_client,
    every_authorize_check_runs_at_the_push,
    a_client_may_be_required_to_push,
);

async fn push(app: &TestApp, form: &[(&str, &str)], basic: Option<(&str, &str)>) -> (u16, Value) {
    let mut request = app.http.post(app.url("/par")).form(form);
    if let Some((id, secret)) = basic {
        request = request.basic_auth(id, Some(secret));
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn authorize_link(app: &TestApp, client_id: &str, request_uri: &str) -> String {
    url::Url::parse_with_params(
        &app.url("/authorize"),
        &[("client_id", client_id), ("request_uri", request_uri)],
    )
    .unwrap()
    .to_string()
}

async fn a_pushed_request_is_followed_once_by_its_client(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let secret = app.web_client("web");
    app.web_client("other");
    app.user("ada", &["user"]);
    let pkce = pkce();
    let form = [
        ("response_type", "code"),
        ("redirect_uri", WEB_CALLBACK),
        ("scope", "openid"),
        ("state", "st"),
        ("code_challenge", pkce.challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    // A confidential client authenticates (Basic; no client_id needed in the body).
    let (status, pushed) = push(&app, &form, Some(("web", &secret))).await;
    assert_eq!(status, 201, "{pushed}");
    let request_uri = pushed["request_uri"].as_str().unwrap().to_string();
    assert!(request_uri.starts_with("urn:ietf:params:oauth:request_uri:"));
    assert_eq!(pushed["expires_in"], 60);
    // Another client cannot use the reference.
    let browser = Browser::new(&app);
    let foreign = browser
        .get(&authorize_link(&app, "other", &request_uri))
        .await;
    assert_eq!(foreign.status(), 400);
    // Its client can, once: sign in, consent, back with a code and the pushed state.
    let callback = browser
        .authorize(&authorize_link(&app, "web", &request_uri), "ada", PASSWORD)
        .await;
    let query: std::collections::HashMap<String, String> =
        callback.query_pairs().into_owned().collect();
    assert_eq!(query.get("state").map(String::as_str), Some("st"));
    let tokens = app
        .post_token(
            &[
                ("grant_type", "authorization_code"),
                ("code", &query["code"]),
                ("redirect_uri", WEB_CALLBACK),
                ("code_verifier", &pkce.verifier),
            ],
            Some(("web", &secret)),
        )
        .await;
    assert_eq!(tokens.status(), 200);
    let again = browser
        .get(&authorize_link(&app, "web", &request_uri))
        .await;
    assert_eq!(again.status(), 400, "single use");
    assert!(again.text().await.unwrap().contains("expired or was used"));
    // Parameters beside the reference are ignored: the pushed ones count.
    let (_, pushed) = push(&app, &form, Some(("web", &secret))).await;
    let with_extra = format!(
        "{}&scope=openid%20email&state=injected",
        authorize_link(&app, "web", pushed["request_uri"].as_str().unwrap())
    );
    let callback = browser.authorize(&with_extra, "ada", PASSWORD).await;
    assert!(callback.query().unwrap().contains("state=st"), "{callback}");
    // It expires.
    let (_, pushed) = push(&app, &form, Some(("web", &secret))).await;
    app.clock.advance(61);
    let late = browser
        .get(&authorize_link(
            &app,
            "web",
            pushed["request_uri"].as_str().unwrap(),
        ))
        .await;
    assert_eq!(late.status(), 400);
    // Deleting the client ends its pending references: a client re-created under the same id
    // does not inherit them.
    let (_, pushed) = push(&app, &form, Some(("web", &secret))).await;
    app.app.clients().delete("web").unwrap();
    app.web_client("web");
    let inherited = browser
        .get(&authorize_link(
            &app,
            "web",
            pushed["request_uri"].as_str().unwrap(),
        ))
        .await;
    assert_eq!(inherited.status(), 400);
    // An unknown reference, or one not in the urn form.
    for reference in [
        "urn:ietf:params:oauth:request_uri:nope",
        "https://elsewhere/request",
    ] {
        let response = browser.get(&authorize_link(&app, "web", reference)).await;
        assert_eq!(response.status(), 400, "{reference}");
    }
}

async fn every_authorize_check_runs_at_the_push(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let secret = app.web_client("web");
    let pkce = pkce();
    let good = [
        ("response_type", "code".to_string()),
        ("redirect_uri", WEB_CALLBACK.to_string()),
        ("scope", "openid".to_string()),
        ("code_challenge", pkce.challenge.clone()),
        ("code_challenge_method", "S256".to_string()),
    ];
    let with = |name: &'static str, value: Option<&str>| {
        let mut form: Vec<(&str, String)> =
            good.iter().filter(|(k, _)| *k != name).cloned().collect();
        if let Some(value) = value {
            form.push((name, value.to_string()));
        }
        form
    };
    /// What is wrong, the form, the status and error expected.
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "an unregistered redirect_uri",
            with("redirect_uri", Some("https://evil.example/cb")),
            400,
            "invalid_request",
        ),
        (
            "no PKCE",
            with("code_challenge", None),
            400,
            "invalid_request",
        ),
        (
            "plain PKCE",
            with("code_challenge_method", Some("plain")),
            400,
            "invalid_request",
        ),
        (
            "an unknown scope",
            with("scope", Some("openid admin:everything")),
            400,
            "invalid_scope",
        ),
        (
            "another response_type",
            with("response_type", Some("token")),
            400,
            "unsupported_response_type",
        ),
        (
            "a resource it may not have",
            with("resource", Some("https://elsewhere.example")),
            400,
            "invalid_target",
        ),
        (
            "a request_uri inside",
            with("request_uri", Some("urn:ietf:params:oauth:request_uri:x")),
            400,
            "invalid_request",
        ),
        (
            "another client_id",
            with("client_id", Some("other")),
            400,
            "invalid_request",
        ),
    ];
    for (what, form, status, error) in cases {
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (got, body) = push(&app, &form, Some(("web", &secret))).await;
        assert_eq!(
            (got, body["error"].as_str()),
            (status, Some(error)),
            "{what}: {body}"
        );
    }
    let form: Vec<(&str, &str)> = good.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, body) = push(
        &app,
        &form,
        Some(("web", "a-wrong-secret-of-enough-length-1234")),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let (status, body) = push(&app, &form, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "unauthenticated"
    );
}

async fn a_client_may_be_required_to_push(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    app.create_client(portcullis::clients::NewClient {
        require_pushed_authorization_requests: true,
        ..crate::helpers::public_web_registration("spa")
    });
    app.user("ada", &["user"]);
    let pkce = pkce();
    let direct = crate::helpers::authorize_url(
        &app.address,
        "spa",
        "openid",
        &pkce.challenge,
        Some(WEB_CALLBACK),
        Some("st"),
    );
    let refused = app.http.get(&direct).send().await.unwrap();
    let location = refused.headers()["location"].to_str().unwrap();
    assert!(
        location.starts_with(WEB_CALLBACK) && location.contains("error=invalid_request"),
        "{location}"
    );
    // Pushed, the same request works (a public client names itself).
    let (status, pushed) = push(
        &app,
        &[
            ("client_id", "spa"),
            ("response_type", "code"),
            ("redirect_uri", WEB_CALLBACK),
            ("scope", "openid"),
            ("code_challenge", pkce.challenge.as_str()),
            ("code_challenge_method", "S256"),
        ],
        None,
    )
    .await;
    assert_eq!(status, 201, "{pushed}");
    let callback = Browser::new(&app)
        .authorize(
            &authorize_link(&app, "spa", pushed["request_uri"].as_str().unwrap()),
            "ada",
            PASSWORD,
        )
        .await;
    assert!(callback.query().unwrap().contains("code="));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_may_require_every_client_to_push() {
    let app = spawn_app_with(Db::Sqlite, |s| {
        s.require_pushed_authorization_requests = true
    })
    .await
    .unwrap();
    app.web_client("web");
    let metadata: Value = app
        .http
        .get(app.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(metadata["require_pushed_authorization_requests"], true);
    assert_eq!(
        metadata["pushed_authorization_request_endpoint"],
        app.url("/par").as_str()
    );
    let pkce = pkce();
    let direct = crate::helpers::authorize_url(
        &app.address,
        "web",
        "openid",
        &pkce.challenge,
        Some(WEB_CALLBACK),
        None,
    );
    let refused = app.http.get(&direct).send().await.unwrap();
    assert!(refused.headers()["location"]
        .to_str()
        .unwrap()
        .contains("error=invalid_request"));
}
