//! The admin API: authorization, CRUD with field-level validation, pagination, keys, audit
//! events, OpenAPI.

use serde_json::{json, Value};

use crate::helpers::{admin_token, spawn_app, Db};
use crate::on_both_backends;

on_both_backends!(admin_api_manages_everything_with_an_admin_token);

async fn admin_api_manages_everything_with_an_admin_token(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let url = |path: &str| app.url(&format!("/admin/v1{path}"));
    // No token, a token for another audience, a token without the admin scope.
    let response = app.http.get(url("/clients")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer realm=\"portcullis\""
    );
    let svc = app.machine_client("svc", "models:read");
    let other: Value = app.cc_token("svc", &svc, &[]).await;
    let response = app
        .http
        .get(url("/clients"))
        .bearer_auth(other["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let (token, admin_secret) = admin_token(&app).await;
    let get = |path: &str| app.http.get(url(path)).bearer_auth(&token).send();
    let delete = |path: &str| app.http.delete(url(path)).bearer_auth(&token).send();

    // Clients: list with pagination, create (validation by field, conflict), get, delete.
    let page: Value = get("/clients?limit=1&offset=1")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            page["total"].as_u64(),
            page["limit"].as_u64(),
            page["offset"].as_u64()
        ),
        (Some(3), Some(1), Some(1)),
        "two clients, and the admin console's own"
    );
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    let invalid = app
        .http
        .post(url("/clients"))
        .bearer_auth(&token)
        .json(&json!({"client_id": "web", "client_name": "Web", "grant_types": ["authorization_code"], "redirect_uris": ["http://evil.example/cb"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(invalid.status(), 400);
    let body: Value = invalid.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");
    assert!(
        body["fields"]["redirect_uris"]
            .as_str()
            .unwrap()
            .contains("loopback"),
        "{body}"
    );
    let malformed = app
        .http
        .post(url("/clients"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    let unknown_field = app.http.post(url("/clients")).bearer_auth(&token).json(&json!({"client_id": "a", "client_name": "A", "grant_types": ["client_credentials"], "colour": "blue"})).send().await.unwrap();
    assert_eq!(unknown_field.status(), 400);
    let created = app
        .http
        .post(url("/clients"))
        .bearer_auth(&token)
        .json(&json!({"client_id": "api-made", "client_name": "Made by API", "grant_types": ["client_credentials"], "scope": ["models:read"], "audiences": [crate::helpers::API]}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    let secret = created["client_secret"].as_str().unwrap().to_string();
    assert!(
        app.cc_token("api-made", &secret, &[]).await["access_token"].is_string(),
        "a client made by the API works at once"
    );
    let conflict = app.http.post(url("/clients")).bearer_auth(&token).json(&json!({"client_id": "api-made", "client_name": "Again", "grant_types": ["client_credentials"]})).send().await.unwrap();
    assert_eq!(conflict.status(), 409);
    assert_eq!(get("/clients/api-made").await.unwrap().status(), 200);
    assert_eq!(delete("/clients/api-made").await.unwrap().status(), 204);
    assert_eq!(get("/clients/api-made").await.unwrap().status(), 404);
    assert_eq!(delete("/clients/api-made").await.unwrap().status(), 404);

    // Users, roles, resources.
    let user = app.http.post(url("/users")).bearer_auth(&token).json(&json!({"username": "grace", "email": "grace@example.test", "name": "Grace", "password": "long enough password"})).send().await.unwrap();
    assert_eq!(user.status(), 201);
    let weak = app.http.post(url("/users")).bearer_auth(&token).json(&json!({"username": "weak", "email": "weak@example.test", "name": "Weak", "password": "short"})).send().await.unwrap();
    let weak: Value = weak.json().await.unwrap();
    assert!(weak["fields"]["password"].is_string(), "{weak}");
    let resource = app
        .http
        .post(url("/resources"))
        .bearer_auth(&token)
        .json(&json!({"audience": "https://inference.example.test", "scopes": ["models:read"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resource.status(), 201);
    let role = app
        .http
        .post(url("/roles"))
        .bearer_auth(&token)
        .json(&json!({"name": "ml", "scopes": ["models:read"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(role.status(), 201);
    let granted: Value = app
        .http
        .post(url("/roles/ml/holders"))
        .bearer_auth(&token)
        .json(&json!({"user": "grace"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(granted["roles"], json!(["ml"]));
    let user: Value = get("/users/grace").await.unwrap().json().await.unwrap();
    assert_eq!(user["roles"], json!(["ml"]));
    assert!(
        user.get("password_hash").is_none(),
        "hashes never leave the server"
    );
    assert_eq!(
        app.http
            .post(url("/users/grace/disable"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        get("/users/grace")
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()["disabled"],
        true
    );
    assert_eq!(delete("/roles/admin").await.unwrap().status(), 400);
    let roles: Value = get("/roles").await.unwrap().json().await.unwrap();
    assert_eq!(roles["total"], 4);

    // Keys: list; rotate now is refused while the next keys are new (409).
    let keys: Value = get("/keys").await.unwrap().json().await.unwrap();
    assert_eq!(keys.as_array().unwrap().len(), 4);
    let rotate = app
        .http
        .post(url("/keys/rotate"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(rotate.status(), 409);
    app.clock
        .advance(app.app.keyring().policy().publish_before_use);
    // The old admin token has expired meanwhile: get another.
    let audience = format!("{}/admin/v1", app.address);
    let body = app
        .cc_token("admin-bot", &admin_secret, &[("resource", &audience)])
        .await;
    let token = body["access_token"].as_str().unwrap().to_string();
    let rotated: Value = app
        .http
        .post(url("/keys/rotate"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rotated["rotated"], json!(["ES256", "RS256"]));
    let get = |path: &str| app.http.get(url(path)).bearer_auth(&token).send();

    // Audit events, filtered and paged.
    let mut changes = Value::Null;
    for _ in 0..50 {
        changes = get("/audit-events?kind=admin_change&limit=2")
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if changes["items"].as_array().is_some_and(|i| i.len() == 2) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let items = changes["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert!(
        items[0]["id"].as_i64() > items[1]["id"].as_i64(),
        "newest first"
    );
    assert_eq!(items[0]["client_id"], "admin-bot");
    let before = changes["next_before"].as_i64().unwrap();
    let older: Value = get(&format!("/audit-events?kind=admin_change&before={before}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(older["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["id"].as_i64().unwrap() < before));
    let bad = get("/audit-events?since=yesterday").await.unwrap();
    assert_eq!(bad.status(), 400);

    // Authentication comes before validation; responses are not cacheable; keys come back as JSON.
    let anonymous = app
        .http
        .post(url("/clients"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let listed = get("/clients").await.unwrap();
    assert_eq!(listed.headers()["cache-control"], "no-store");
    // A token stops working when its subject loses the admin role.
    app.cli(&["role", "revoke", "admin", "--client", "admin-bot"]);
    app.sync();
    let revoked = get("/clients").await.unwrap();
    assert_eq!(revoked.status(), 401, "the admin role was revoked");

    // The OpenAPI document describes these paths.
    let spec: Value = app
        .http
        .get(url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/admin/v1/clients",
        "/admin/v1/users/{username}",
        "/admin/v1/roles/{name}/holders",
        "/admin/v1/keys/rotate",
        "/admin/v1/audit-events",
    ] {
        assert!(
            spec["paths"].get(path).is_some(),
            "{path} missing from OpenAPI"
        );
    }
    let ids: Vec<&str> = spec["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|p| p.as_object().unwrap().values())
        .filter_map(|op| op["operationId"].as_str())
        .collect();
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "operationIds are unique");
}
