//! Token exchange with delegation (RFC 8693): a person's token traded for another audience by
//! its own client, or by an agent the person delegated to (`may_act` → `act`, nested for a
//! chain); every refusal; revocation reaching exchanged tokens; the audit trail.

use serde_json::Value;

use crate::helpers::{
    claims_of, hidden_field, spawn_app, spawn_app_with, Browser, Db, TestApp, PASSWORD,
    WEB_CALLBACK,
};
use crate::on_both_backends;

on_both_backends!(
    a_person_delegates_to_an_agent_that_exchanges_their_token,
    every_exchange_refusal_follows_rfc8693,
    delegation_chains_nest_and_are_bounded,
);

const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
const CHAT: &str = "https://chat.example.test";
pub const REPORTS: &str = "https://reports.example.test";

/// The person's chat app (which may exchange its own tokens), an agent the person may
/// delegate to, a helper the agent may pass on to, and a rogue agent nobody delegated to.
pub struct Clients {
    pub chat: String,
    pub agent: String,
    pub helper: String,
    pub rogue: String,
}

pub fn provision(app: &TestApp) -> Clients {
    app.cli(&[
        "resource",
        "create",
        "--audience",
        CHAT,
        "--scope",
        "chat:use",
    ]);
    app.cli(&[
        "resource",
        "create",
        "--audience",
        REPORTS,
        "--scope",
        "reports:read reports:write",
    ]);
    app.cli(&[
        "role",
        "create",
        "member",
        "--scope",
        "chat:use reports:read reports:write",
    ]);
    app.cli(&[
        "role",
        "create",
        "reporting-agent",
        "--scope",
        "reports:read",
    ]);
    app.sync();
    // Through the registry (not the CLI), so that the clients are older than the tokens on
    // the test's clock.
    let create = |id: &str, grants: &[&str], scope: &str, audiences: &[&str], extra: &[&str]| {
        let (role, redirect) = match extra {
            ["--role", role] => (Some(*role), None),
            ["--redirect-uri", uri] => (None, Some(*uri)),
            _ => (None, None),
        };
        app.create_client(portcullis::clients::NewClient {
            id: id.into(),
            name: id.into(),
            grant_types: grants.iter().map(|g| g.to_string()).collect(),
            scopes: vec![scope.into()],
            audiences: audiences.iter().map(|a| a.to_string()).collect(),
            roles: role.map(str::to_string).into_iter().collect(),
            redirect_uris: redirect.map(str::to_string).into_iter().collect(),
            ..crate::helpers::machine_client_registration(id, scope)
        })
    };
    let agent = create(
        "agent",
        &["client_credentials", EXCHANGE],
        "reports:read reports:write chat:use delegate:helper",
        &[REPORTS],
        &["--role", "reporting-agent"],
    );
    let helper = create(
        "helper",
        &["client_credentials", EXCHANGE],
        "reports:read",
        &[REPORTS],
        &["--role", "reporting-agent"],
    );
    let rogue = create(
        "rogue",
        &["client_credentials", EXCHANGE],
        "reports:read",
        &[REPORTS],
        &["--role", "reporting-agent"],
    );
    let chat = create(
        "chat",
        &["authorization_code", "refresh_token", EXCHANGE],
        "openid offline_access chat:use reports:read delegate:agent delegate:helper",
        &[CHAT, REPORTS],
        &["--redirect-uri", WEB_CALLBACK],
    );
    app.sync();
    app.user("ada", &["member"]);
    Clients {
        chat,
        agent,
        helper,
        rogue,
    }
}

/// Ada signs in to the chat app, consenting to `scope`; its tokens.
pub async fn person_tokens(app: &TestApp, secret: &str, scope: &str) -> Value {
    let (code, verifier) = Browser::new(app).code("chat", scope, "ada").await;
    let response = app
        .post_token(
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", WEB_CALLBACK),
                ("code_verifier", &verifier),
            ],
            Some(("chat", secret)),
        )
        .await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

pub async fn exchange(app: &TestApp, client: (&str, &str), form: &[(&str, &str)]) -> (u16, Value) {
    let mut full = vec![
        ("grant_type", EXCHANGE),
        ("subject_token_type", ACCESS_TOKEN),
    ];
    full.extend_from_slice(form);
    let response = app.post_token(&full, Some(client)).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

fn error(answer: &(u16, Value)) -> (u16, &str) {
    (answer.0, answer.1["error"].as_str().unwrap_or(""))
}

pub async fn introspect(app: &TestApp, client: (&str, &str), token: &str) -> Value {
    app.http
        .post(app.url("/introspect"))
        .basic_auth(client.0, Some(client.1))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn a_person_delegates_to_an_agent_that_exchanges_their_token(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let secrets = provision(&app);
    // The consent page names the agent by its registered name.
    let consent = consent_page(&app, "openid chat:use delegate:agent").await;
    assert!(
        consent.contains("Let “agent” act for you"),
        "the consent page shows the delegation: {consent}"
    );
    let tokens = person_tokens(
        &app,
        &secrets.chat,
        "openid offline_access chat:use reports:read delegate:agent",
    )
    .await;
    let person = tokens["access_token"].as_str().unwrap();
    let claims = claims_of(person);
    let ada = claims["sub"].as_str().unwrap().to_string();
    assert_eq!(claims["aud"], CHAT);
    assert_eq!(claims["may_act"], serde_json::json!({ "sub": "agent" }));

    // Without an actor: the chat app trades its own token for the reports audience.
    let own = exchange(
        &app,
        ("chat", &secrets.chat),
        &[("subject_token", person), ("audience", REPORTS)],
    )
    .await;
    assert_eq!(own.0, 200, "{}", own.1);
    assert_eq!(own.1["issued_token_type"], ACCESS_TOKEN);
    assert_eq!(own.1["token_type"], "Bearer");
    assert!(own.1.get("refresh_token").is_none(), "no refresh token");
    let expires_in = own.1["expires_in"].as_i64().unwrap();
    assert!(expires_in > 0 && expires_in <= 300, "{expires_in}");
    let own_claims = claims_of(own.1["access_token"].as_str().unwrap());
    assert_eq!(own_claims["sub"], ada.as_str());
    assert_eq!(own_claims["aud"], REPORTS);
    assert_eq!(own_claims["client_id"], "chat");
    assert!(own_claims.get("act").is_none(), "no actor: {own_claims}");
    let own_scope = own_claims["scope"].as_str().unwrap();
    assert!(
        own_scope.contains("reports:read") && !own_scope.contains("chat:use"),
        "the target's scopes only: {own_scope}"
    );

    // With an actor: the agent, delegated to, acts for Ada.
    let acted = exchange(
        &app,
        ("agent", &secrets.agent),
        &[("subject_token", person), ("resource", REPORTS)],
    )
    .await;
    assert_eq!(acted.0, 200, "{}", acted.1);
    let acted_token = acted.1["access_token"].as_str().unwrap().to_string();
    let acted_claims = claims_of(&acted_token);
    assert_eq!(
        acted_claims["sub"],
        ada.as_str(),
        "the person stays the subject"
    );
    assert_eq!(acted_claims["client_id"], "agent");
    assert_eq!(acted_claims["act"], serde_json::json!({ "sub": "agent" }));
    // Ada granted reports:read (not reports:write); the agent's role allows reports:read.
    assert_eq!(acted.1["scope"], "reports:read");
    assert_eq!(acted_claims["scope"], "reports:read");

    // With the agent's own token as actor_token: once.
    let actor_token = app.cc_token("agent", &secrets.agent, &[]).await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let with_actor = [
        ("subject_token", person),
        ("actor_token", actor_token.as_str()),
        ("actor_token_type", ACCESS_TOKEN),
    ];
    let first = exchange(&app, ("agent", &secrets.agent), &with_actor).await;
    assert_eq!(first.0, 200, "{}", first.1);
    assert_eq!(
        claims_of(first.1["access_token"].as_str().unwrap())["act"]["sub"],
        "agent"
    );
    let replayed = exchange(&app, ("agent", &secrets.agent), &with_actor).await;
    assert_eq!(
        error(&replayed),
        (400, "invalid_request"),
        "replayed actor_token"
    );

    // The resource server (the agent, its client) sees the actor at introspection.
    let seen = introspect(&app, ("agent", &secrets.agent), &acted_token).await;
    assert_eq!(seen["active"], true);
    assert_eq!(seen["sub"], ada.as_str());
    assert_eq!(seen["act"]["sub"], "agent");

    // The audit log names the person, the agent and the chain.
    let event = app
        .audit_event("token_exchanged", |e| {
            e.client_id.as_deref() == Some("agent")
        })
        .await;
    assert_eq!(event.subject.as_deref(), Some(ada.as_str()));
    let details = &event.details;
    assert_eq!(details["actor"], "agent");
    assert_eq!(details["chain"], serde_json::json!(["agent"]));
    assert_eq!(details["subject_client_id"], "chat");

    // Revoking Ada's grant (her refresh token, at /revoke) ends the exchanged tokens too, and
    // her token can no longer be exchanged.
    let revoked = app
        .http
        .post(app.url("/revoke"))
        .basic_auth("chat", Some(&secrets.chat))
        .form(&[("token", tokens["refresh_token"].as_str().unwrap())])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    let seen = introspect(&app, ("agent", &secrets.agent), &acted_token).await;
    assert_eq!(seen["active"], false, "exchanged token after revocation");
    let after = exchange(
        &app,
        ("agent", &secrets.agent),
        &[("subject_token", person)],
    )
    .await;
    assert_eq!(error(&after), (400, "invalid_request"));
}

/// Follows an authorization request for `scope` through sign-in; the consent page's HTML.
async fn consent_page(app: &TestApp, scope: &str) -> String {
    let browser = Browser::new(app);
    let pkce = crate::helpers::pkce();
    let url = crate::helpers::authorize_url(
        &app.address,
        "chat",
        scope,
        &pkce.challenge,
        Some(WEB_CALLBACK),
        None,
    );
    let login = browser.get(&url).await;
    let login = if login.status() == 303 {
        let location = login.headers()["location"].to_str().unwrap().to_string();
        browser.get(&location).await
    } else {
        login
    };
    let html = login.text().await.unwrap();
    let signed_in = browser
        .post_form(
            "/login",
            &[
                ("csrf_token", &hidden_field(&html, "csrf_token")),
                ("request", &hidden_field(&html, "request")),
                ("username", "ada"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(signed_in.status(), 303);
    let location = signed_in.headers()["location"]
        .to_str()
        .unwrap()
        .to_string();
    browser.get(&location).await.text().await.unwrap()
}

async fn every_exchange_refusal_follows_rfc8693(db: Db) {
    let Some(app) = spawn_app(db).await else {
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
    let agent = ("agent", secrets.agent.as_str());
    let raw = |form: Vec<(&'static str, String)>| {
        let app = &app;
        async move {
            let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let response = app.post_token(&form, Some(agent)).await;
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    // §2.1: the parameters.
    let base = |extra: &[(&'static str, &str)]| {
        let mut form = vec![
            ("grant_type", EXCHANGE.to_string()),
            ("subject_token", person.to_string()),
        ];
        form.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        form
    };
    for (what, form) in [
        ("no subject_token_type", base(&[])),
        (
            "a refresh token type",
            base(&[(
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:refresh_token",
            )]),
        ),
        (
            "actor_token without its type",
            base(&[("subject_token_type", ACCESS_TOKEN), ("actor_token", "x")]),
        ),
        (
            "a requested refresh token",
            base(&[
                ("subject_token_type", ACCESS_TOKEN),
                (
                    "requested_token_type",
                    "urn:ietf:params:oauth:token-type:refresh_token",
                ),
            ]),
        ),
    ] {
        let answer = raw(form).await;
        assert_eq!(
            error(&answer),
            (400, "invalid_request"),
            "{what}: {}",
            answer.1
        );
    }
    // §2.2.2: an invalid subject token, a client-credentials token as subject, a foreign
    // actor_token, no delegation to the requesting client: invalid_request.
    let garbage = exchange(&app, agent, &[("subject_token", "not.a.token")]).await;
    assert_eq!(error(&garbage), (400, "invalid_request"));
    let machine = app.cc_token("agent", &secrets.agent, &[]).await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let no_person = exchange(&app, agent, &[("subject_token", &machine)]).await;
    assert_eq!(
        error(&no_person),
        (400, "invalid_request"),
        "{}",
        no_person.1
    );
    let rogue_token = app.cc_token("rogue", &secrets.rogue, &[]).await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let foreign = exchange(
        &app,
        agent,
        &[
            ("subject_token", person),
            ("actor_token", &rogue_token),
            ("actor_token_type", ACCESS_TOKEN),
        ],
    )
    .await;
    assert_eq!(
        error(&foreign),
        (400, "invalid_request"),
        "foreign actor_token"
    );
    let undelegated = exchange(
        &app,
        ("rogue", &secrets.rogue),
        &[("subject_token", person)],
    )
    .await;
    assert_eq!(
        error(&undelegated),
        (400, "invalid_request"),
        "no impersonation: {}",
        undelegated.1
    );
    // Scope: never more than the person granted, the client may have, RBAC allows.
    let not_granted = exchange(
        &app,
        agent,
        &[("subject_token", person), ("scope", "reports:write")],
    )
    .await;
    assert_eq!(error(&not_granted), (400, "invalid_scope"), "not granted");
    let other_resource = exchange(
        &app,
        agent,
        &[("subject_token", person), ("scope", "chat:use")],
    )
    .await;
    assert_eq!(
        error(&other_resource),
        (400, "invalid_scope"),
        "chat:use is not the reports audience's"
    );
    // The target: one, among the requesting client's audiences.
    let elsewhere = exchange(
        &app,
        agent,
        &[("subject_token", person), ("audience", CHAT)],
    )
    .await;
    assert_eq!(error(&elsewhere), (400, "invalid_target"));
    let two = exchange(
        &app,
        ("chat", &secrets.chat),
        &[
            ("subject_token", person),
            ("audience", CHAT),
            ("resource", REPORTS),
        ],
    )
    .await;
    assert_eq!(error(&two), (400, "invalid_target"));
    // A client without the grant.
    let plain_secret = app.machine_client("plain", "reports:read");
    let plain = exchange(&app, ("plain", &plain_secret), &[("subject_token", person)]).await;
    assert_eq!(error(&plain), (400, "unauthorized_client"), "{}", plain.1);
    // Expired: the subject token's lifetime bounds the exchange.
    app.clock.advance(app.settings.access_token_ttl as i64 + 1);
    let late = exchange(&app, agent, &[("subject_token", person)]).await;
    assert_eq!(error(&late), (400, "invalid_request"));
}

async fn delegation_chains_nest_and_are_bounded(db: Db) {
    for max_chain in [3usize, 1] {
        let Some(app) = spawn_app_with(db, |s| s.token_exchange_max_chain = max_chain).await else {
            return;
        };
        let secrets = provision(&app);
        // Ada delegates to the agent and, further, to its helper.
        let tokens = person_tokens(
            &app,
            &secrets.chat,
            "openid reports:read delegate:agent delegate:helper",
        )
        .await;
        let person = tokens["access_token"].as_str().unwrap();
        // Two delegations: the token names neither in may_act (one party per claim); the chat
        // app narrows it to the agent's by exchanging it for itself.
        assert!(claims_of(person).get("may_act").is_none());
        let narrowed = exchange(
            &app,
            ("chat", &secrets.chat),
            &[
                ("subject_token", person),
                ("audience", REPORTS),
                ("scope", "reports:read delegate:agent"),
            ],
        )
        .await;
        assert_eq!(narrowed.0, 200, "{}", narrowed.1);
        let for_agent = narrowed.1["access_token"].as_str().unwrap().to_string();
        assert_eq!(claims_of(&for_agent)["may_act"]["sub"], "agent");
        // The agent acts, naming the helper next (Ada granted delegate:helper).
        let by_agent = exchange(
            &app,
            ("agent", &secrets.agent),
            &[
                ("subject_token", &for_agent),
                ("scope", "reports:read delegate:helper"),
            ],
        )
        .await;
        assert_eq!(by_agent.0, 200, "{}", by_agent.1);
        let agent_token = by_agent.1["access_token"].as_str().unwrap().to_string();
        let agent_claims = claims_of(&agent_token);
        assert_eq!(agent_claims["act"], serde_json::json!({ "sub": "agent" }));
        assert_eq!(agent_claims["may_act"]["sub"], "helper");
        // The helper acts on the agent's token: the chain nests, newest actor outermost.
        let by_helper = exchange(
            &app,
            ("helper", &secrets.helper),
            &[("subject_token", &agent_token)],
        )
        .await;
        if max_chain == 1 {
            assert_eq!(error(&by_helper), (400, "invalid_request"), "chain bound");
            continue;
        }
        assert_eq!(by_helper.0, 200, "{}", by_helper.1);
        let helper_claims = claims_of(by_helper.1["access_token"].as_str().unwrap());
        assert_eq!(
            helper_claims["act"],
            serde_json::json!({ "sub": "helper", "act": { "sub": "agent" } })
        );
        assert_eq!(helper_claims["sub"], claims_of(person)["sub"]);
        assert_eq!(helper_claims["scope"], "reports:read");
        // The rogue cannot join the chain.
        let rogue = exchange(
            &app,
            ("rogue", &secrets.rogue),
            &[("subject_token", &agent_token)],
        )
        .await;
        assert_eq!(error(&rogue), (400, "invalid_request"));
    }
}
