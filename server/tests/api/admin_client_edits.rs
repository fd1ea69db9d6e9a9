//! Editing a client in place and rotating its secret, through the admin API and the console:
//! the same rules as creation, audited with the administrator's name; a new redirect URI or
//! scope works at once and a removed one is refused; a rotated secret works and the old one
//! gets `invalid_client`.

use portcullis::clients::{NewClient, SecretChoice};
use serde_json::{json, Value};

use crate::account::spawn;
use crate::helpers::{
    admin_token, authorize_url, error_of, hidden_field, pkce, spawn_app, Browser, Db, TestApp, API,
    PASSWORD, WEB_CALLBACK,
};
use crate::on_both_backends;

on_both_backends!(
    the_admin_api_edits_a_client_and_the_rules_follow,
    the_admin_api_rotates_a_secret_and_the_old_one_stops_working,
    the_console_edits_a_client_and_rotates_its_secret,
);

const OTHER_CALLBACK: &str = "http://127.0.0.1:9/other-callback";

fn notebook() -> NewClient {
    NewClient {
        id: "notebook".into(),
        name: "Notebook".into(),
        secret: SecretChoice::Generate,
        auth_method: None,
        grant_types: vec!["authorization_code refresh_token".into()],
        scopes: vec!["openid profile offline_access".into()],
        audiences: vec![API.into()],
        redirect_uris: vec![WEB_CALLBACK.into()],
        post_logout_redirect_uris: vec![],
        roles: vec![],
        jwks: None,
        id_token_signed_response_alg: None,
        introspection_audiences: vec![],
        require_pushed_authorization_requests: false,
        dpop_bound_access_tokens: false,
    }
}

/// Signs `browser` in as `username` through `/authorize` for `notebook`; the callback URL
/// (a code, or an error sent back to the client).
async fn authorize(
    app: &TestApp,
    browser: &Browser,
    scope: &str,
    redirect_uri: &str,
) -> (url::Url, String) {
    let pkce = pkce();
    let url = authorize_url(
        &app.address,
        "notebook",
        scope,
        &pkce.challenge,
        Some(redirect_uri),
        Some("s"),
    );
    (
        browser.authorize(&url, "ada", PASSWORD).await,
        pkce.verifier,
    )
}

fn query(url: &url::Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// `/authorize` for `notebook` with a redirect URI it has not registered: the error page.
async fn unregistered_redirect_is_refused(app: &TestApp, redirect_uri: &str) {
    let pkce = pkce();
    let url = authorize_url(
        &app.address,
        "notebook",
        "openid",
        &pkce.challenge,
        Some(redirect_uri),
        None,
    );
    let page = Browser::new(app).get(&url).await;
    assert_eq!(page.status(), 400);
    let body = page.text().await.unwrap();
    assert!(body.contains("has not registered"), "{body}");
}

async fn the_admin_api_edits_a_client_and_the_rules_follow(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    app.user("ada", &["user"]);
    let secret = app.create_client(notebook());
    let (token, _) = admin_token(&app).await;
    let url = |path: &str| app.url(&format!("/admin/v1{path}"));
    let put = |path: &str, body: Value| {
        app.http
            .put(url(path))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };

    // A refresh token from before the edit.
    let ada = Browser::new(&app);
    let (callback, verifier) = authorize(&app, &ada, "openid offline_access", WEB_CALLBACK).await;
    let code = query(&callback, "code").expect("a code");
    let tokens: Value = app
        .post_token(
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", WEB_CALLBACK),
                ("code_verifier", &verifier),
            ],
            Some(("notebook", &secret)),
        )
        .await
        .json()
        .await
        .unwrap();
    let refresh_token = tokens["refresh_token"].as_str().unwrap().to_string();

    // The rules are creation's: by field, nothing changed.
    let invalid = put(
        "/clients/notebook",
        json!({"client_name": "Notebook", "grant_types": ["authorization_code"], "redirect_uris": ["http://evil.example/cb"]}),
    )
    .await
    .unwrap();
    assert_eq!(invalid.status(), 400);
    let body: Value = invalid.json().await.unwrap();
    assert!(
        body["fields"]["redirect_uris"]
            .as_str()
            .unwrap()
            .contains("loopback"),
        "{body}"
    );
    let unknown_role = put(
        "/clients/notebook",
        json!({"client_name": "Notebook", "grant_types": ["authorization_code"], "redirect_uris": [WEB_CALLBACK], "roles": ["no-such-role"]}),
    )
    .await
    .unwrap();
    assert_eq!(unknown_role.status(), 400);
    let missing = put(
        "/clients/nobody",
        json!({"client_name": "Nobody", "grant_types": ["client_credentials"]}),
    )
    .await
    .unwrap();
    assert_eq!(missing.status(), 404);
    let unknown_field = put(
        "/clients/notebook",
        json!({"client_name": "N", "grant_types": ["client_credentials"], "client_id": "other"}),
    )
    .await
    .unwrap();
    assert_eq!(unknown_field.status(), 400, "the id is not editable");

    // The edit: another redirect URI, `email` instead of `profile`, a new name.
    let edited = put(
        "/clients/notebook",
        json!({
            "client_name": "Notebook 2",
            "grant_types": ["authorization_code", "refresh_token"],
            "scope": ["openid email offline_access"],
            "audiences": [API],
            "redirect_uris": [OTHER_CALLBACK],
        }),
    )
    .await
    .unwrap();
    assert_eq!(edited.status(), 200);
    let body: Value = edited.json().await.unwrap();
    assert_eq!(body["client_name"], "Notebook 2");
    assert_eq!(body["redirect_uris"], json!([OTHER_CALLBACK]));
    assert!(
        body.get("client_secret").is_none(),
        "the secret stays: {body}"
    );
    let stored: Value = app
        .http
        .get(url("/clients/notebook"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        stored["scope"],
        json!(["openid", "email", "offline_access"])
    );
    assert_eq!(stored["token_endpoint_auth_method"], "client_secret_basic");

    // The removed redirect URI is refused; the new one and the new scope work; the removed
    // scope is refused; the old secret still authenticates; the old refresh token refreshes.
    unregistered_redirect_is_refused(&app, WEB_CALLBACK).await;
    let (callback, verifier) = authorize(&app, &ada, "openid email", OTHER_CALLBACK).await;
    assert!(callback.as_str().starts_with(OTHER_CALLBACK), "{callback}");
    let code = query(&callback, "code").expect("a code at the new redirect URI");
    let exchanged = app
        .post_token(
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", OTHER_CALLBACK),
                ("code_verifier", &verifier),
            ],
            Some(("notebook", &secret)),
        )
        .await;
    assert_eq!(exchanged.status(), 200);
    let exchanged: Value = exchanged.json().await.unwrap();
    assert_eq!(exchanged["scope"], "openid email");
    let (callback, _) = authorize(&app, &ada, "openid profile", OTHER_CALLBACK).await;
    assert_eq!(
        query(&callback, "error").as_deref(),
        Some("invalid_scope"),
        "{callback}"
    );
    let refreshed = app
        .post_token(
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh_token),
            ],
            Some(("notebook", &secret)),
        )
        .await;
    assert_eq!(refreshed.status(), 200, "the grant from before still works");

    // Made public: its secret goes; made confidential again: a new secret, shown once.
    let public = put(
        "/clients/notebook",
        json!({"client_name": "Notebook", "token_endpoint_auth_method": "none", "grant_types": ["authorization_code"], "redirect_uris": [OTHER_CALLBACK]}),
    )
    .await
    .unwrap();
    assert_eq!(public.status(), 200);
    let refused = app
        .post_token(
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", "whatever"),
            ],
            Some(("notebook", &secret)),
        )
        .await;
    assert_eq!(error_of(refused).await, (401, "invalid_client".into()));
    let confidential = put(
        "/clients/notebook",
        json!({"client_name": "Notebook", "token_endpoint_auth_method": "client_secret_post", "grant_types": ["client_credentials"]}),
    )
    .await
    .unwrap();
    assert_eq!(confidential.status(), 200);
    let body: Value = confidential.json().await.unwrap();
    let new_secret = body["client_secret"].as_str().expect("a generated secret");
    let token = app
        .post_token(
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "notebook"),
                ("client_secret", new_secret),
            ],
            None,
        )
        .await;
    assert_eq!(
        token.status(),
        200,
        "client_secret_post with the new secret"
    );

    // Audited, naming the admin client.
    let last = app
        .audit_event("admin_change", |e| {
            e.details["action"] == "client_updated"
                && e.details["token_endpoint_auth_method"] == "client_secret_post"
        })
        .await;
    assert_eq!(last.client_id.as_deref(), Some("admin-bot"));
    assert_eq!(last.details["client_id"], "notebook");
    assert_eq!(last.details["new_secret"], true);

    // The OpenAPI document lists the new operations.
    let openapi: Value = app
        .http
        .get(url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(openapi["paths"]["/admin/v1/clients/{id}"]["put"].is_object());
    assert!(openapi["paths"]["/admin/v1/clients/{id}/secret"]["post"].is_object());
}

async fn the_admin_api_rotates_a_secret_and_the_old_one_stops_working(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let old = app.machine_client("svc", "");
    app.create_client(crate::helpers::public_web_registration("spa"));
    let (token, _) = admin_token(&app).await;
    let rotate = |id: &str| {
        app.http
            .post(app.url(&format!("/admin/v1/clients/{id}/secret")))
            .bearer_auth(&token)
            .send()
    };
    app.cc_token("svc", &old, &[]).await;
    let rotated = rotate("svc").await.unwrap();
    assert_eq!(rotated.status(), 200);
    assert_eq!(rotated.headers()["cache-control"], "no-store");
    let body: Value = rotated.json().await.unwrap();
    assert_eq!(body["client_id"], "svc");
    let new = body["client_secret"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    app.cc_token("svc", &new, &[]).await;
    let refused = app
        .post_token(&[("grant_type", "client_credentials")], Some(("svc", &old)))
        .await;
    assert_eq!(error_of(refused).await, (401, "invalid_client".into()));
    // A public client has no secret; an unknown one is not found.
    let public = rotate("spa").await.unwrap();
    assert_eq!(public.status(), 400);
    let body: Value = public.json().await.unwrap();
    assert!(
        body["fields"]["token_endpoint_auth_method"]
            .as_str()
            .unwrap()
            .contains("no secret to rotate"),
        "{body}"
    );
    assert_eq!(rotate("nobody").await.unwrap().status(), 404);
    let rotation = app
        .audit_event("admin_change", |e| {
            e.details["action"] == "client_secret_rotated"
        })
        .await;
    assert_eq!(rotation.details["client_id"], "svc");
    assert_eq!(rotation.client_id.as_deref(), Some("admin-bot"));
}

/// Follows `/admin` through sign-in as `root` (an admin); the browser and a CSRF token.
pub async fn console_admin(app: &TestApp) -> (Browser, String) {
    app.user("root", &["admin"]);
    let root = Browser::new(app);
    let mut response = root.get("/admin").await;
    for _ in 0..10 {
        let status = response.status().as_u16();
        if status == 303 || status == 302 {
            let location = response.headers()["location"].to_str().unwrap().to_string();
            response = root.get(&location).await;
            continue;
        }
        if !response.url().to_string().contains("/login") {
            break;
        }
        let html = response.text().await.unwrap();
        response = root
            .post_form(
                "/login",
                &[
                    ("csrf_token", &hidden_field(&html, "csrf_token")),
                    ("request", &hidden_field(&html, "request")),
                    ("username", "root"),
                    ("password", PASSWORD),
                ],
            )
            .await;
    }
    assert_eq!(response.status(), 200);
    let page = root.get("/admin/keys").await.text().await.unwrap();
    (root, hidden_field(&page, "csrf_token"))
}

/// Posts the console's edit form for `notebook`.
async fn edit(
    root: &Browser,
    token: Option<&str>,
    redirect: &str,
    scope: &str,
) -> reqwest::Response {
    let mut fields = vec![
        ("client_name", "Notebook"),
        ("token_endpoint_auth_method", "client_secret_basic"),
        ("grant_types", "authorization_code"),
        ("grant_types", "refresh_token"),
        ("scope", scope),
        ("redirect_uris", redirect),
        ("audiences", API),
    ];
    fields.extend(token.map(|t| ("csrf_token", t)));
    root.post_form("/admin/clients/notebook/edit", &fields)
        .await
}

async fn the_console_edits_a_client_and_rotates_its_secret(db: Db) {
    let Some(app) = spawn(db).await else {
        return;
    };
    app.user("ada", &["user"]);
    let secret = app.create_client(notebook());
    let old_svc = app.machine_client("svc", "");
    let (root, csrf) = console_admin(&app).await;

    // The client page links to its edit form, which shows what is stored.
    let detail = root
        .get("/admin/clients/notebook")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        detail.contains("/admin/clients/notebook/edit")
            && detail.contains("/admin/clients/notebook/secret"),
        "{detail}"
    );
    let form = root.get("/admin/clients/notebook/edit").await;
    assert_eq!(form.status(), 200);
    let form = form.text().await.unwrap();
    assert!(
        form.contains(&format!("value=\"{WEB_CALLBACK}\"")),
        "{form}"
    );
    assert!(
        form.contains("value=\"openid profile offline_access\""),
        "{form}"
    );
    assert!(form.contains("value=\"refresh_token\" checked"), "{form}");
    // The console's own client is not edited here.
    assert_eq!(
        root.get("/admin/clients/portcullis-console/edit")
            .await
            .status(),
        400
    );

    // Without the CSRF token, or with a forged one: refused, nothing changes.
    for token in [None, Some("forged")] {
        let refused = edit(&root, token, OTHER_CALLBACK, "openid email").await;
        assert_eq!(refused.status(), 400);
        assert!(refused
            .text()
            .await
            .unwrap()
            .contains("This form has expired"));
    }
    let stored = app.app.store().find_client("notebook").unwrap().unwrap();
    assert_eq!(stored.redirect_uris, vec![WEB_CALLBACK.to_string()]);
    // An invalid edit is shown on the form, keeping what was typed.
    let csrf = csrf.as_str();
    let bad = edit(&root, Some(csrf), "http://evil.example/cb", "openid").await;
    assert_eq!(bad.status(), 400);
    let body = bad.text().await.unwrap();
    assert!(
        body.contains("loopback") && body.contains("value=\"http://evil.example/cb\""),
        "{body}"
    );
    let saved = edit(&root, Some(csrf), OTHER_CALLBACK, "openid email").await;
    assert_eq!(saved.status(), 303);
    assert_eq!(
        saved.headers()["location"],
        "/admin/clients/notebook?done=saved"
    );
    let stored = app.app.store().find_client("notebook").unwrap().unwrap();
    assert_eq!(stored.redirect_uris, vec![OTHER_CALLBACK.to_string()]);
    assert_eq!(stored.scopes, vec!["openid", "email"]);
    // The new redirect URI and scope work, the old ones are refused; the secret is unchanged.
    unregistered_redirect_is_refused(&app, WEB_CALLBACK).await;
    let ada = Browser::new(&app);
    let (callback, verifier) = authorize(&app, &ada, "openid email", OTHER_CALLBACK).await;
    let code = query(&callback, "code").expect("a code");
    let exchanged = app
        .post_token(
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", OTHER_CALLBACK),
                ("code_verifier", &verifier),
            ],
            Some(("notebook", &secret)),
        )
        .await;
    assert_eq!(exchanged.status(), 200);
    let (callback, _) = authorize(&app, &ada, "openid profile", OTHER_CALLBACK).await;
    assert_eq!(query(&callback, "error").as_deref(), Some("invalid_scope"));

    // Rotating the secret: a confirmation page, CSRF, the new secret shown once.
    let confirm = root.get("/admin/clients/svc/secret").await;
    assert_eq!(confirm.status(), 200);
    assert!(confirm
        .text()
        .await
        .unwrap()
        .contains("stops working at once"));
    for token in [None, Some("forged")] {
        let mut form = vec![];
        form.extend(token.map(|t| ("csrf_token", t)));
        let refused = root.post_form("/admin/clients/svc/secret", &form).await;
        assert_eq!(refused.status(), 400);
    }
    app.cc_token("svc", &old_svc, &[]).await;
    let rotated = root
        .post_form("/admin/clients/svc/secret", &[("csrf_token", csrf)])
        .await;
    assert_eq!(rotated.status(), 200);
    let page = rotated.text().await.unwrap();
    let new_svc = page
        .split("id=\"secret\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the secret is shown")
        .to_string();
    app.cc_token("svc", &new_svc, &[]).await;
    let refused = app
        .post_token(
            &[("grant_type", "client_credentials")],
            Some(("svc", &old_svc)),
        )
        .await;
    assert_eq!(error_of(refused).await, (401, "invalid_client".into()));
    // A public client has no secret: no link, and a post is refused with the reason.
    app.create_client(crate::helpers::public_web_registration("spa"));
    let spa = root.get("/admin/clients/spa").await.text().await.unwrap();
    assert!(!spa.contains("/admin/clients/spa/secret"));
    let refused = root
        .post_form("/admin/clients/spa/secret", &[("csrf_token", csrf)])
        .await;
    assert_eq!(refused.status(), 400);
    assert!(refused
        .text()
        .await
        .unwrap()
        .contains("no secret to rotate"));

    // Both audited with the administrator's name.
    let root_id = app
        .app
        .users()
        .find_by_username("root")
        .unwrap()
        .unwrap()
        .id;
    for action in ["client_updated", "client_secret_rotated"] {
        let event = app
            .audit_event("admin_change", |e| e.details["action"] == action)
            .await;
        assert_eq!(event.subject.as_deref(), Some(root_id.as_str()));
        assert_eq!(event.client_id.as_deref(), Some("portcullis-console"));
    }
}
