//! Editing an API resource's scopes through the admin API and the console: creation's rules (a
//! scope belongs to one resource at most), audited; the authorization model follows at once.

use serde_json::{json, Value};

use crate::account::spawn;
use crate::admin_client_edits::console_admin;
use crate::helpers::{admin_token, spawn_app, Db, TestApp, API};
use crate::on_both_backends;

on_both_backends!(
    the_admin_api_edits_a_resources_scopes,
    the_console_edits_a_resources_scopes,
);

const REPORTS: &str = "https://reports.example.test";

/// `svc` asks for `models:write` by client credentials; the status and body.
async fn ask_for_models_write(app: &TestApp, secret: &str) -> (u16, Value) {
    let response = app
        .post_token(
            &[
                ("grant_type", "client_credentials"),
                ("scope", "models:write"),
            ],
            Some(("svc", secret)),
        )
        .await;
    (response.status().as_u16(), response.json().await.unwrap())
}

/// Two resources; `svc` may ask for `models:write`, which no resource owns yet.
fn resources_and_client(app: &TestApp) -> String {
    let authorization = app.app.authorization();
    authorization
        .create_resource(API, None, &["models:read".into()], None, None, 3600)
        .unwrap();
    authorization
        .create_resource(REPORTS, None, &["reports:read".into()], None, None, 3600)
        .unwrap();
    authorization
        .create_role("writer", "", &["models:write".into()])
        .unwrap();
    app.machine_client("svc", "models:write")
}

async fn the_admin_api_edits_a_resources_scopes(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let secret = resources_and_client(&app);
    let (token, _) = admin_token(&app).await;
    let put = |audience: &str, body: Value| {
        app.http
            .put(app.url("/admin/v1/resources"))
            .query(&[("audience", audience)])
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    // Nobody owns `models:write` yet: granted without a role.
    assert_eq!(ask_for_models_write(&app, &secret).await.0, 200);

    // A scope of another resource, none at all, an invalid one, an unknown resource.
    let taken = put(API, json!({"scopes": ["models:read", "reports:read"]}))
        .await
        .unwrap();
    assert_eq!(taken.status(), 400);
    let body: Value = taken.json().await.unwrap();
    assert_eq!(
        body["fields"]["scopes"],
        format!("`reports:read` already belongs to {REPORTS}"),
        "{body}"
    );
    let empty = put(API, json!({"scopes": []})).await.unwrap();
    assert_eq!(empty.status(), 400);
    let invalid = put(API, json!({"scopes": ["bad\"scope"]})).await.unwrap();
    assert_eq!(invalid.status(), 400);
    let unknown = put("https://nowhere.example.test", json!({"scopes": ["x"]}))
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);

    // Its own scopes again, and one more: saved; the model follows at once.
    let saved = put(API, json!({"scopes": ["models:read", "models:write"]}))
        .await
        .unwrap();
    assert_eq!(saved.status(), 204);
    let listed: Value = app
        .http
        .get(app.url("/admin/v1/resources"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let api = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["audience"] == API)
        .unwrap()
        .clone();
    assert_eq!(api["scopes"], json!(["models:read", "models:write"]));
    // Now owned by the API: it takes a role that grants it.
    let (status, body) = ask_for_models_write(&app, &secret).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope"))
    );
    app.app
        .authorization()
        .set_holder(
            "writer",
            &portcullis::authorization::Holder::Client("svc".into()),
            true,
            app.app.clients(),
        )
        .unwrap();
    let (status, body) = ask_for_models_write(&app, &secret).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "models:write");
    // Removed again.
    assert_eq!(
        put(API, json!({"scopes": ["models:read"]}))
            .await
            .unwrap()
            .status(),
        204
    );
    let event = app
        .audit_event("admin_change", |e| {
            e.details["action"] == "resource_updated"
                && e.details["scopes"] == json!(["models:read", "models:write"])
        })
        .await;
    assert_eq!(event.details["audience"], API);
    assert_eq!(event.client_id.as_deref(), Some("admin-bot"));

    let openapi: Value = app
        .http
        .get(app.url("/admin/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(openapi["paths"]["/admin/v1/resources"]["put"].is_object());
}

async fn the_console_edits_a_resources_scopes(db: Db) {
    let Some(app) = spawn(db).await else {
        return;
    };
    resources_and_client(&app);
    let (root, csrf) = console_admin(&app).await;
    let page = root.get("/admin/roles").await.text().await.unwrap();
    assert!(
        page.contains("action=\"/admin/resources/scopes\"")
            && page.contains(&format!("name=\"audience\" value=\"{API}\"")),
        "{page}"
    );
    let scopes = |audience: &str| {
        app.app
            .authorization()
            .list_resources()
            .unwrap()
            .into_iter()
            .find(|r| r.audience == audience)
            .unwrap()
            .scopes
    };
    // Without the CSRF token, or with a forged one: refused, nothing changes.
    for token in [None, Some("forged")] {
        let mut form = vec![("audience", API), ("scopes", "models:read models:write")];
        form.extend(token.map(|t| ("csrf_token", t)));
        let refused = root.post_form("/admin/resources/scopes", &form).await;
        assert_eq!(refused.status(), 400);
        assert!(refused
            .text()
            .await
            .unwrap()
            .contains("This form has expired"));
    }
    assert_eq!(scopes(API), vec!["models:read"]);
    // Another resource's scope: the reason on a page.
    let taken = root
        .post_form(
            "/admin/resources/scopes",
            &[
                ("csrf_token", csrf.as_str()),
                ("audience", API),
                ("scopes", "models:read reports:read"),
            ],
        )
        .await;
    assert_eq!(taken.status(), 400);
    assert!(taken
        .text()
        .await
        .unwrap()
        .contains("already belongs to https://reports.example.test"));
    let saved = root
        .post_form(
            "/admin/resources/scopes",
            &[
                ("csrf_token", csrf.as_str()),
                ("audience", API),
                ("scopes", "models:read models:write"),
            ],
        )
        .await;
    assert_eq!(saved.status(), 303);
    assert_eq!(saved.headers()["location"], "/admin/roles?done=saved");
    assert_eq!(scopes(API), vec!["models:read", "models:write"]);
    let root_id = app
        .app
        .users()
        .find_by_username("root")
        .unwrap()
        .unwrap()
        .id;
    let event = app
        .audit_event("admin_change", |e| {
            e.details["action"] == "resource_updated"
        })
        .await;
    assert_eq!(event.subject.as_deref(), Some(root_id.as_str()));
    assert_eq!(event.client_id.as_deref(), Some("portcullis-console"));
}
