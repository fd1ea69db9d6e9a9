//! RBAC and API resources: scope = requested ∩ client ∩ role permissions for the audience.

use crate::helpers::{claims_of, error_of, spawn_app, verify_with_jwks, Db, TestApp};
use crate::on_both_backends;

on_both_backends!(roles_and_resources_decide_the_token_scope);

const INFERENCE: &str = "https://inference.example.test";
const BILLING: &str = "https://billing.example.test";

fn provision(app: &TestApp) -> (String, String) {
    app.cli(&[
        "resource",
        "create",
        "--audience",
        INFERENCE,
        "--scope",
        "models:read models:invoke",
        "--access-token-ttl",
        "120",
    ]);
    app.cli(&[
        "resource",
        "create",
        "--audience",
        BILLING,
        "--scope",
        "invoices:read",
        "--signing-alg",
        "RS256",
    ]);
    app.cli(&["role", "create", "ml-reader", "--scope", "models:read"]);
    app.cli(&["role", "create", "accountant", "--scope", "invoices:read"]);
    let reader = app.cli(&[
        "client",
        "create",
        "--id",
        "reader",
        "--name",
        "Reader",
        "--grant-type",
        "client_credentials",
        "--scope",
        "models:read models:invoke invoices:read free:scope",
        "--audience",
        INFERENCE,
        "--audience",
        BILLING,
        "--role",
        "ml-reader",
    ]);
    let nobody = app.cli(&[
        "client",
        "create",
        "--id",
        "norole",
        "--name",
        "No role",
        "--grant-type",
        "client_credentials",
        "--scope",
        "models:read",
        "--audience",
        INFERENCE,
    ]);
    app.sync();
    (
        reader["client_secret"].as_str().unwrap().to_string(),
        nobody["client_secret"].as_str().unwrap().to_string(),
    )
}

async fn roles_and_resources_decide_the_token_scope(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let (reader, nobody) = provision(&app);

    // The role permits models:read only; models:invoke (same resource) is dropped; scopes of
    // another resource never enter a token for this audience; resource-less scopes pass.
    let body = app
        .cc_token(
            "reader",
            &reader,
            &[
                ("resource", INFERENCE),
                (
                    "scope",
                    "models:read models:invoke invoices:read free:scope",
                ),
            ],
        )
        .await;
    assert_eq!(body["scope"], "models:read free:scope");
    let claims = claims_of(body["access_token"].as_str().unwrap());
    assert_eq!(claims["scope"], "models:read free:scope");
    assert_eq!(claims["roles"], serde_json::json!(["ml-reader"]));
    assert_eq!(claims["aud"], INFERENCE);
    // Per-resource lifetime.
    assert_eq!(body["expires_in"], 120);
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        120
    );

    // Nothing requested is permitted → invalid_scope.
    let refused = app
        .post_token(
            &[
                ("grant_type", "client_credentials"),
                ("resource", BILLING),
                ("scope", "invoices:read"),
            ],
            Some(("reader", &reader)),
        )
        .await;
    assert_eq!(error_of(refused).await, (400, "invalid_scope".into()));
    let none = app
        .post_token(
            &[
                ("grant_type", "client_credentials"),
                ("scope", "models:read"),
            ],
            Some(("norole", &nobody)),
        )
        .await;
    assert_eq!(error_of(none).await, (400, "invalid_scope".into()));

    // Granting the role (CLI, another process) takes effect after the next sync.
    app.cli(&["role", "grant", "accountant", "--client", "reader"]);
    app.sync();
    let body = app
        .cc_token(
            "reader",
            &reader,
            &[("resource", BILLING), ("scope", "invoices:read")],
        )
        .await;
    let token = body["access_token"].as_str().unwrap();
    let (header, claims) = verify_with_jwks(token, &app.jwks().await).unwrap();
    assert_eq!(header["alg"], "RS256", "the resource's signing algorithm");
    assert_eq!(claims["scope"], "invoices:read");
    assert_eq!(
        claims["roles"],
        serde_json::json!(["ml-reader", "accountant"])
    );

    // Revoking narrows again; deleting a custom role works, a built-in one is refused.
    app.cli(&["role", "revoke", "accountant", "--client", "reader"]);
    app.cli(&[
        "role",
        "update",
        "ml-reader",
        "--scope",
        "models:read models:invoke",
    ]);
    app.sync();
    let body = app
        .cc_token("reader", &reader, &[("resource", INFERENCE)])
        .await;
    assert_eq!(body["scope"], "models:read models:invoke free:scope");
    let roles = app.cli(&["role", "list"]);
    let names: Vec<&str> = roles
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    for seeded in ["admin", "user", "guest", "ml-reader", "accountant"] {
        assert!(names.contains(&seeded), "{names:?}");
    }
    let denied = app.cli_output(&["role", "delete", "admin"]);
    assert!(!denied.status.success());
    // A scope belongs to one resource only; an unknown role cannot be assigned.
    let clash = app.cli_output(&[
        "resource",
        "create",
        "--audience",
        "https://x.example.test",
        "--scope",
        "models:read",
    ]);
    assert!(String::from_utf8_lossy(&clash.stderr).contains("already belongs"));
    let unknown_role = app.cli_output(&[
        "client",
        "create",
        "--id",
        "z",
        "--name",
        "Z",
        "--grant-type",
        "client_credentials",
        "--role",
        "nope",
    ]);
    assert!(!unknown_role.status.success());
    assert!(String::from_utf8_lossy(&unknown_role.stderr).contains("no role nope"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_get_what_their_roles_permit() {
    let app = spawn_app(Db::Sqlite).await.unwrap();
    app.cli(&[
        "resource",
        "create",
        "--audience",
        INFERENCE,
        "--scope",
        "models:read models:invoke",
    ]);
    app.cli(&["role", "create", "ml-user", "--scope", "models:read"]);
    app.sync();
    let secret = app.create_client(portcullis::clients::NewClient {
        id: "notebook".into(),
        name: "Notebook".into(),
        secret: portcullis::clients::SecretChoice::Generate,
        auth_method: None,
        grant_types: vec!["authorization_code".into()],
        scopes: vec!["openid models:read models:invoke".into()],
        audiences: vec![INFERENCE.into()],
        redirect_uris: vec![crate::helpers::WEB_CALLBACK.into()],
        post_logout_redirect_uris: vec![],
        roles: vec![],
        jwks: None,
        id_token_signed_response_alg: None,
        introspection_audiences: vec![],
        require_pushed_authorization_requests: false,
        dpop_bound_access_tokens: false,
    });
    app.user("ada", &["ml-user"]);
    let browser = crate::helpers::Browser::new(&app);
    let (challenge, verifier) = openidconnect::PkceCodeChallenge::new_random_sha256();
    let url = format!(
        "/authorize?client_id=notebook&response_type=code&scope=openid%20models:read%20models:invoke&resource={}&code_challenge={}&code_challenge_method=S256",
        crate::people::urlencode(INFERENCE),
        challenge.as_str()
    );
    let callback = browser
        .authorize(&url, "ada", crate::helpers::PASSWORD)
        .await;
    let code = callback
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .to_string();
    let body = app
        .post_token(
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("code_verifier", verifier.secret()),
            ],
            Some(("notebook", &secret)),
        )
        .await;
    let body: serde_json::Value = body.json().await.unwrap();
    let claims = claims_of(body["access_token"].as_str().unwrap());
    assert_eq!(
        claims["scope"], "openid models:read",
        "models:invoke is not permitted by ml-user"
    );
    assert_eq!(claims["aud"], INFERENCE);
    assert_eq!(claims["roles"], serde_json::json!(["ml-user"]));
}
