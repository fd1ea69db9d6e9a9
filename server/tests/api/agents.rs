//! Agents and native apps: loopback redirect URIs on any port (RFC 8252 §7.3).

use crate::helpers::{authorize_url, pkce, spawn_app, Browser, Db, PASSWORD};
use crate::on_both_backends;

on_both_backends!(a_loopback_redirect_uri_takes_any_port);

async fn a_loopback_redirect_uri_takes_any_port(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    app.create_client(portcullis::clients::NewClient {
        redirect_uris: vec![
            "http://127.0.0.1/callback".into(),
            "http://[::1]/callback".into(),
            "http://localhost/callback".into(),
        ],
        ..crate::helpers::public_web_registration("cli")
    });
    app.user("ada", &["user"]);
    let browser = Browser::new(&app);
    for redirect in [
        "http://127.0.0.1:53127/callback",
        "http://127.0.0.1/callback",
        "http://[::1]:4711/callback",
    ] {
        let pkce = pkce();
        let url = authorize_url(
            &app.address,
            "cli",
            "openid",
            &pkce.challenge,
            Some(redirect),
            None,
        );
        let callback = browser.authorize(&url, "ada", PASSWORD).await;
        assert!(callback.as_str().starts_with(redirect), "{callback}");
        let code = callback
            .query_pairs()
            .find(|(k, _)| k == "code")
            .unwrap()
            .1
            .into_owned();
        // The token request repeats the URI with its port, exactly.
        let tokens = app
            .post_token(
                &[
                    ("grant_type", "authorization_code"),
                    ("client_id", "cli"),
                    ("code", &code),
                    ("redirect_uri", redirect),
                    ("code_verifier", &pkce.verifier),
                ],
                None,
            )
            .await;
        assert_eq!(tokens.status(), 200, "{redirect}");
    }
    // Path, host and localhost stay exact: an error page, never a redirect.
    for refused in [
        "http://127.0.0.1:53127/other",
        "http://127.0.0.2:53127/callback",
        "http://localhost:53127/callback",
        "http://127.0.0.1:53127/callback?extra=1",
    ] {
        let pkce = pkce();
        let url = authorize_url(
            &app.address,
            "cli",
            "openid",
            &pkce.challenge,
            Some(refused),
            None,
        );
        let response = browser.get(&url).await;
        assert_eq!(response.status(), 400, "{refused}");
    }
}
