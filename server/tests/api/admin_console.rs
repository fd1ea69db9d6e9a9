//! The admin console (`/admin`): sign-in through Portcullis's own client (code flow + PKCE),
//! admins only; CSRF on every form; changes through the admin API's functions, audited with the
//! admin's name. Over HTTP on both backends, and in a real Chromium (with screenshots).

use fantoccini::Locator;

use crate::account::spawn;
use crate::browser::{save_screenshot, sign_in, start_chromium, wait_for_heading, wait_for_url};
use crate::helpers::{hidden_field, Browser, Db, TestApp, PASSWORD};
use crate::on_both_backends;

on_both_backends!(
    only_administrators_get_the_console,
    console_forms_need_their_csrf_token_and_errors_are_pages,
    the_roles_list_searches_and_pages,
);

/// Follows `/admin` through sign-in as `username`; the last answer (not a redirect).
async fn console_sign_in(browser: &Browser, username: &str) -> reqwest::Response {
    let mut response = browser.get("/admin").await;
    for _ in 0..10 {
        let status = response.status().as_u16();
        if status == 303 || status == 302 {
            let location = response.headers()["location"].to_str().unwrap().to_string();
            response = browser.get(&location).await;
            continue;
        }
        let url = response.url().to_string();
        if !url.contains("/login") {
            return response;
        }
        let html = response.text().await.unwrap();
        let csrf = hidden_field(&html, "csrf_token");
        let request = hidden_field(&html, "request");
        response = browser
            .post_form(
                "/login",
                &[
                    ("csrf_token", &csrf),
                    ("request", &request),
                    ("username", username),
                    ("password", PASSWORD),
                ],
            )
            .await;
    }
    response
}

async fn only_administrators_get_the_console(db: Db) {
    let Some(app) = spawn(db).await else {
        return;
    };
    app.user("ada", &["user"]);
    app.user("root", &["admin"]);
    let first = Browser::new(&app).get("/admin").await;
    assert_eq!(first.status(), 303);
    let location = first.headers()["location"].to_str().unwrap();
    assert!(
        location.starts_with("/authorize?") && location.contains("code_challenge_method=S256"),
        "{location}"
    );
    let ada = Browser::new(&app);
    let refused = console_sign_in(&ada, "ada").await;
    assert_eq!(refused.status(), 403);
    let page = refused.text().await.unwrap();
    assert!(page.contains("You are not an administrator"), "{page}");
    assert_eq!(ada.get("/admin/users").await.status(), 303, "still not in");
    let root = Browser::new(&app);
    let overview = console_sign_in(&root, "root").await;
    assert_eq!(overview.status(), 200);
    assert_eq!(overview.headers()["x-frame-options"], "DENY");
    let csp = overview.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'sha256-"));
    let page = overview.text().await.unwrap();
    assert!(page.contains("Overview") && page.contains("<svg"), "{page}");
    for path in [
        "/admin/clients",
        "/admin/clients/new",
        "/admin/users",
        "/admin/users/new",
        "/admin/users/ada",
        "/admin/roles",
        "/admin/keys",
        "/admin/audit",
        "/admin/audit?kind=login_failed&since=2020-01-01T00:00",
        "/admin/clients?q=nothing&page=7",
    ] {
        let response = root.get(path).await;
        assert_eq!(response.status(), 200, "{path}");
        every_field_is_labelled(path, &response.text().await.unwrap());
    }
    for (path, status) in [
        ("/admin/users/nobody", 404),
        ("/admin/clients/nobody", 404),
        ("/admin/audit?since=yesterday", 400),
        ("/admin/clients?page=x", 400),
    ] {
        let response = root.get(path).await;
        assert_eq!(response.status(), status, "{path}");
        assert!(response.text().await.unwrap().contains("<h1>"), "a page");
    }
    // Losing the role ends console access at the next request.
    app.app
        .authorization()
        .set_holder(
            "admin",
            &portcullis::authorization::Holder::User("root".into()),
            false,
            app.app.clients(),
        )
        .unwrap();
    assert_eq!(root.get("/admin/users").await.status(), 403);
    assert_eq!(app.audit_events("console_refused").await.len(), 1);
}

async fn signed_in_admin(app: &TestApp) -> (Browser, String) {
    app.user("root", &["admin"]);
    let root = Browser::new(app);
    let overview = console_sign_in(&root, "root").await;
    assert_eq!(overview.status(), 200);
    let page = root.get("/admin/keys").await.text().await.unwrap();
    (root, hidden_field(&page, "csrf_token"))
}

async fn console_forms_need_their_csrf_token_and_errors_are_pages(db: Db) {
    let Some(app) = spawn(db).await else {
        return;
    };
    app.user("ada", &["user"]);
    let (root, csrf) = signed_in_admin(&app).await;
    // Without the token, or with another, nothing changes.
    for token in [None, Some("forged")] {
        let mut form = vec![("username", "ada")];
        form.extend(token.map(|t| ("csrf_token", t)));
        let refused = root.post_form("/admin/users/ada/disable", &form).await;
        assert_eq!(refused.status(), 400);
        assert!(refused
            .text()
            .await
            .unwrap()
            .contains("This form has expired"));
    }
    let ada = app.app.users().find_by_username("ada").unwrap().unwrap();
    assert!(!ada.disabled);
    // The rules are the admin API's: an unknown role, a bad client id, a duplicate.
    let bad = root
        .post_form(
            "/admin/clients",
            &[
                ("csrf_token", csrf.as_str()),
                ("client_id", "svc"),
                ("client_name", "Service"),
                ("kind", "confidential"),
                ("grant_types", "client_credentials"),
                ("roles", "no-such-role"),
            ],
        )
        .await;
    assert_eq!(bad.status(), 400);
    let body = bad.text().await.unwrap();
    assert!(body.contains("no role no-such-role"), "{body}");
    assert!(
        body.contains("value=\"svc\""),
        "the form keeps what was typed"
    );
    let created = root
        .post_form(
            "/admin/clients",
            &[
                ("csrf_token", csrf.as_str()),
                ("client_id", "svc"),
                ("client_name", "Service"),
                ("kind", "confidential"),
                ("grant_types", "client_credentials"),
                ("scope", ""),
            ],
        )
        .await;
    assert_eq!(created.status(), 200);
    let again = root
        .post_form(
            "/admin/clients",
            &[
                ("csrf_token", csrf.as_str()),
                ("client_id", "svc"),
                ("client_name", "Service"),
                ("kind", "confidential"),
                ("grant_types", "client_credentials"),
            ],
        )
        .await;
    assert_eq!(again.status(), 400, "a duplicate is shown on the form");
    // An admin cannot disable themselves here; disabling another is audited with their name.
    let own = root
        .post_form(
            "/admin/users/root/disable",
            &[("csrf_token", csrf.as_str())],
        )
        .await;
    assert_eq!(own.status(), 400);
    let disabled = root
        .post_form("/admin/users/ada/disable", &[("csrf_token", csrf.as_str())])
        .await;
    assert_eq!(disabled.status(), 303);
    let root_id = app
        .app
        .users()
        .find_by_username("root")
        .unwrap()
        .unwrap()
        .id;
    let events = app.audit_events_at_least("admin_change", 2).await;
    let disabling = events
        .iter()
        .find(|e| e.details["action"] == "user_disabled")
        .expect("the change is audited");
    assert_eq!(disabling.subject.as_deref(), Some(root_id.as_str()));
    assert_eq!(disabling.client_id.as_deref(), Some("portcullis-console"));
    // Key rotation follows the CLI's rule: the next keys are too new, so it must wait.
    let rotated = root
        .post_form("/admin/keys/rotate", &[("csrf_token", csrf.as_str())])
        .await;
    assert_eq!(rotated.status(), 409);
    assert!(rotated.text().await.unwrap().contains("rotation must wait"));
}

async fn the_roles_list_searches_and_pages(db: Db) {
    let Some(app) = spawn(db).await else {
        return;
    };
    for n in 0..25 {
        app.app
            .authorization()
            .create_role(
                &format!("team-{n:02}"),
                "A team",
                &[format!("team{n:02}:read")],
            )
            .unwrap();
    }
    app.app
        .authorization()
        .create_resource(
            crate::helpers::API,
            Some("Inference API"),
            &["models:read".into()],
            None,
            None,
            3600,
        )
        .unwrap();
    let (root, _) = signed_in_admin(&app).await;
    // 25 roles and the 3 built in, by name: two pages of 20 (admin, guest, team-00 … team-17
    // first), the search box kept.
    let first = root.get("/admin/roles").await.text().await.unwrap();
    assert!(first.contains("Page 1 of 2 (28 roles)"), "{first}");
    assert!(first.contains("Role team-17") && !first.contains("Role team-18"));
    assert!(first.contains("rel=\"next\"") && !first.contains("rel=\"prev\""));
    let second = root.get("/admin/roles?page=2").await.text().await.unwrap();
    assert!(second.contains("Role team-24") && !second.contains("Role team-00"));
    assert!(second.contains("rel=\"prev\"") && !second.contains("rel=\"next\""));
    // By name or scope; resources are searched too.
    let found = root
        .get("/admin/roles?q=team-07")
        .await
        .text()
        .await
        .unwrap();
    assert!(found.contains("Role team-07") && !found.contains("Role team-08"));
    assert!(found.contains("Page 1 of 1 (1 roles)") && found.contains("value=\"team-07\""));
    let by_scope = root
        .get("/admin/roles?q=team12:read")
        .await
        .text()
        .await
        .unwrap();
    assert!(by_scope.contains("Role team-12") && !by_scope.contains("API https://"));
    let resource = root
        .get("/admin/roles?q=models")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        resource.contains("API https://inference.example.test") && !resource.contains("Role team-")
    );
    assert_eq!(root.get("/admin/roles?page=x").await.status(), 400);
}

/// Chromium: an admin creates a client in the console and gets a token with it; disables a
/// user, whose sign-in is then refused; every page is photographed at 1280 px, and the
/// overview at 390 px.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_console_creates_a_client_and_disables_a_user() {
    let Some(chromium) = start_chromium().await else {
        return;
    };
    let browser = &chromium.client;
    let app = spawn(Db::Sqlite).await.unwrap();
    app.user("root", &["admin"]);
    app.user("ada", &["user"]);
    let secret = app.machine_client("reporting", "");
    // Some activity for the overview.
    app.cc_token("reporting", &secret, &[]).await;
    browser.set_window_size(1280, 1000).await.unwrap();
    browser.goto(&app.url("/admin")).await.unwrap();
    sign_in(browser, "root").await;
    wait_for_url(browser, &app.url("/admin")).await;
    let heading = browser
        .wait()
        .for_element(Locator::Css("main h1"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(heading, "Overview");
    save_screenshot(browser, "console-overview").await;
    browser.set_window_size(390, 1400).await.unwrap();
    save_screenshot(browser, "console-overview-phone").await;
    browser.set_window_size(1280, 1000).await.unwrap();

    // Clients: create one; its secret is shown once; it gets a token.
    browser.goto(&app.url("/admin/clients")).await.unwrap();
    save_screenshot(browser, "console-clients").await;
    browser
        .find(Locator::Id("create"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let id_field = browser
        .wait()
        .for_element(Locator::Id("f-client_id"))
        .await
        .unwrap();
    id_field.send_keys("nightly-export").await.unwrap();
    browser
        .find(Locator::Id("f-client_name"))
        .await
        .unwrap()
        .send_keys("Nightly export")
        .await
        .unwrap();
    browser
        .find(Locator::Css("input[value=client_credentials]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    save_screenshot(browser, "console-client-new").await;
    browser
        .find(Locator::Id("submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let secret_field = browser
        .wait()
        .for_element(Locator::Id("secret"))
        .await
        .unwrap();
    let new_secret = secret_field.prop("value").await.unwrap().unwrap();
    let copy = browser
        .find(Locator::Css("button[data-copy]"))
        .await
        .unwrap();
    assert!(
        copy.is_displayed().await.unwrap(),
        "the copy button shows with the script"
    );
    save_screenshot(browser, "console-client-created").await;
    let token = app.cc_token("nightly-export", &new_secret, &[]).await;
    assert!(token["access_token"].is_string());

    // The keyboard reaches every field and the button of a form, in order, with Tab.
    browser.goto(&app.url("/admin/clients/new")).await.unwrap();
    browser
        .wait()
        .for_element(Locator::Id("f-client_id"))
        .await
        .unwrap();
    let mut reached = Vec::new();
    for _ in 0..60 {
        browser
            .active_element()
            .await
            .unwrap()
            .send_keys("\u{e004}") // WebDriver's Tab key
            .await
            .unwrap();
        let focused = browser
            .execute("return document.activeElement.id", vec![])
            .await
            .unwrap();
        if let Some(id) = focused.as_str().filter(|id| !id.is_empty()) {
            reached.push(id.to_string());
        }
        if reached.last().is_some_and(|id| id == "submit") {
            break;
        }
    }
    let position = |id: &str| reached.iter().position(|r| r == id);
    assert!(
        matches!(
            (position("f-client_id"), position("f-client_name"), position("submit")),
            (Some(a), Some(b), Some(c)) if a < b && b < c
        ),
        "Tab order: {reached:?}"
    );
    // A form whose CSRF token was taken out (as a forged cross-site post would lack it) is
    // refused, and nothing is created.
    browser
        .find(Locator::Id("f-client_id"))
        .await
        .unwrap()
        .send_keys("forged")
        .await
        .unwrap();
    browser
        .execute(
            "document.querySelectorAll('input[name=csrf_token]').forEach(e => e.remove())",
            vec![],
        )
        .await
        .unwrap();
    browser
        .find(Locator::Id("submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let refused = wait_for_heading(browser, "This form has expired").await;
    assert_eq!(refused, "This form has expired");
    assert!(
        app.app.clients().find("forged").await.unwrap().is_none(),
        "nothing was created"
    );
    browser
        .goto(&app.url("/admin/clients/nightly-export"))
        .await
        .unwrap();
    save_screenshot(browser, "console-client").await;
    // Edit it: the form shows what is stored; a scope added here is granted.
    browser
        .find(Locator::Id("edit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let scope_field = browser
        .wait()
        .for_element(Locator::Id("f-scope"))
        .await
        .unwrap();
    scope_field.send_keys("reports:read").await.unwrap();
    save_screenshot(browser, "console-client-edit").await;
    browser
        .find(Locator::Id("submit"))
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
    assert_eq!(notice, "Saved.");
    let token = app
        .cc_token("nightly-export", &new_secret, &[("scope", "reports:read")])
        .await;
    assert_eq!(token["scope"], "reports:read");
    // Rotate its secret: confirmed, shown once; the old one is refused.
    browser
        .find(Locator::Id("rotate-secret"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait()
        .for_element(Locator::Id("confirm"))
        .await
        .unwrap();
    save_screenshot(browser, "console-client-secret").await;
    browser
        .find(Locator::Id("confirm"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let rotated = browser
        .wait()
        .for_element(Locator::Id("secret"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap()
        .unwrap();
    save_screenshot(browser, "console-client-secret-rotated").await;
    assert_ne!(rotated, new_secret);
    app.cc_token("nightly-export", &rotated, &[]).await;
    let refused = app
        .post_token(
            &[("grant_type", "client_credentials")],
            Some(("nightly-export", &new_secret)),
        )
        .await;
    assert_eq!(refused.status(), 401);
    browser
        .goto(&app.url("/admin/clients/nightly-export"))
        .await
        .unwrap();
    browser
        .find(Locator::Id("delete"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait()
        .for_element(Locator::Id("confirm"))
        .await
        .unwrap();
    save_screenshot(browser, "console-client-delete").await;

    // Users: disable Ada; her sign-in is refused.
    browser.goto(&app.url("/admin/users")).await.unwrap();
    save_screenshot(browser, "console-users").await;
    browser.goto(&app.url("/admin/users/ada")).await.unwrap();
    save_screenshot(browser, "console-user").await;
    browser
        .find(Locator::XPath("//button[text()='Disable']"))
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
    assert_eq!(notice, "Saved.");
    app.app
        .authorization()
        .create_resource(
            crate::helpers::API,
            Some("Inference API"),
            &["models:read".into(), "models:invoke".into()],
            None,
            None,
            3600,
        )
        .unwrap();
    browser.goto(&app.url("/admin/roles")).await.unwrap();
    save_screenshot(browser, "console-roles").await;
    browser.goto(&app.url("/admin/keys")).await.unwrap();
    save_screenshot(browser, "console-keys").await;
    browser.goto(&app.url("/admin/audit")).await.unwrap();
    browser
        .find(Locator::Css("details"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    save_screenshot(browser, "console-audit").await;
    browser.clone().close().await.unwrap();

    let ada = Browser::new(&app);
    let login = ada.get("/login").await.text().await.unwrap();
    let refused = ada
        .post_form(
            "/login",
            &[
                ("csrf_token", &hidden_field(&login, "csrf_token")),
                ("request", ""),
                ("username", "ada"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(refused.status(), 401, "a disabled account cannot sign in");
}

/// Chromium: a person without the admin role sees the 403 page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_shows_a_non_admin_the_403_page() {
    let Some(chromium) = start_chromium().await else {
        return;
    };
    let browser = &chromium.client;
    let app = spawn(Db::Sqlite).await.unwrap();
    app.user("ada", &["user"]);
    browser.set_window_size(1280, 900).await.unwrap();
    browser.goto(&app.url("/admin")).await.unwrap();
    sign_in(browser, "ada").await;
    wait_for_url(browser, &app.url("/admin/callback")).await;
    let heading = browser
        .wait()
        .for_element(Locator::Css("h1"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    save_screenshot(browser, "console-forbidden").await;
    browser.clone().close().await.unwrap();
    assert_eq!(heading, "You are not an administrator");
}

/// Basic accessibility of a console page: element ids are unique, and every field a person
/// fills in (not hidden, not a checkbox inside its label) has a `<label for>` naming it.
fn every_field_is_labelled(path: &str, page: &str) {
    let attribute = |tag: &str, name: &str| -> Option<String> {
        let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
        Some(tag[start..].split('"').next()?.to_string())
    };
    let mut ids = std::collections::HashSet::new();
    for (at, _) in page.match_indices(" id=\"") {
        let id = page[at + 5..].split('"').next().unwrap();
        assert!(ids.insert(id.to_string()), "{path}: id `{id}` twice");
    }
    for opening in ["<input", "<select", "<textarea"] {
        for (at, _) in page.match_indices(opening) {
            let tag = &page[at..at + page[at..].find('>').unwrap()];
            if matches!(
                attribute(tag, "type").as_deref(),
                Some("hidden" | "checkbox" | "radio" | "submit")
            ) {
                continue;
            }
            let id = attribute(tag, "id").unwrap_or_else(|| panic!("{path}: no id in {tag}"));
            assert!(
                page.contains(&format!("for=\"{id}\"")),
                "{path}: no label for `{id}`"
            );
        }
    }
}

/// WCAG 2.1 contrast (1.4.3, AA: 4.5:1 for text) of the colours the pages put text in, on the
/// backgrounds they put it on, read from the stylesheets themselves (light and dark schemes).
#[test]
fn page_colours_have_sufficient_contrast() {
    fn palette(css: &str) -> Vec<std::collections::HashMap<String, String>> {
        // One map per `:root {…}` block: the light scheme, then the dark one if any.
        css.split(":root")
            .skip(1)
            .map(|block| {
                let block = &block[..block.find('}').unwrap()];
                block
                    .split(['{', ';'])
                    .filter_map(|d| d.trim().split_once(':'))
                    .filter(|(name, value)| name.starts_with("--") && value.trim().starts_with('#'))
                    .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
                    .collect()
            })
            .collect()
    }
    fn luminance(hex: &str) -> f64 {
        // #rgb is #rrggbb.
        let hex = if hex.len() == 4 {
            hex.chars().flat_map(|c| [c, c]).skip(1).collect()
        } else {
            hex.to_string()
        };
        let channel = |i: usize| {
            let c = f64::from(u8::from_str_radix(&hex[i..i + 2], 16).unwrap()) / 255.0;
            if c <= 0.03928 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * channel(1) + 0.7152 * channel(3) + 0.0722 * channel(5)
    }
    let contrast = |a: &str, b: &str| {
        let (x, y) = (luminance(a), luminance(b));
        (x.max(y) + 0.05) / (x.min(y) + 0.05)
    };
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../templates");
    let sheets = [
        (
            "base.html",
            vec![
                ("--text", "--card"),
                ("--text", "--bg"),
                ("--muted", "--card"),
                ("--muted", "--bg"),
                ("--accent", "--card"),
                ("--on-primary", "--primary"),
                ("--success", "--success-bg"),
                ("--danger-text", "--danger-bg"),
                ("--warning", "--warning-bg"),
            ],
        ),
        (
            "console/layout.html",
            vec![
                ("--text", "--card"),
                ("--text", "--bg"),
                ("--muted", "--card"),
                ("--muted", "--subtle"),
                ("--primary", "--card"),
                ("--ok", "--ok-bg"),
                ("--warn", "--warn-bg"),
                ("--danger", "--danger-bg"),
            ],
        ),
    ];
    for (file, pairs) in sheets {
        let css = std::fs::read_to_string(root.join(file)).unwrap();
        let schemes = palette(&css);
        assert!(!schemes.is_empty(), "{file}: no :root colours");
        let light = &schemes[0];
        for (scheme_number, scheme) in schemes.iter().enumerate() {
            for (fg, bg) in &pairs {
                // The dark scheme overrides some colours; the rest come from the light one.
                let colour = |name: &str| scheme.get(name).or_else(|| light.get(name)).cloned();
                let (Some(f), Some(b)) = (colour(fg), colour(bg)) else {
                    panic!("{file}: {fg} or {bg} is not defined");
                };
                let ratio = contrast(&f, &b);
                assert!(
                    ratio >= 4.5,
                    "{file} scheme {scheme_number}: {fg} {f} on {bg} {b} is {ratio:.2}:1"
                );
            }
        }
    }
}
