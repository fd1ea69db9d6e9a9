//! The browser pages (askama templates in `templates/`).

use askama::Template;

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    pub csrf_token: String,
    pub request_id: String,
    pub username: String,
    pub error: Option<String>,
    pub client_name: Option<String>,
}

pub struct ScopeView {
    pub name: String,
    pub description: String,
}

#[derive(Template)]
#[template(path = "consent.html")]
pub struct ConsentPage {
    /// Where the decision is posted: `/consent`, or `/device/decision` for a device.
    pub action: &'static str,
    pub csrf_token: String,
    pub request_id: String,
    pub client_name: String,
    pub username: String,
    pub scopes: Vec<ScopeView>,
    pub audience: Option<String>,
    pub provenance: Provenance,
}

/// What a person should know of where an application comes from and where it sends them
/// (draft-ietf-oauth-client-id-metadata-document §6.4; RFC 7591 §5).
#[derive(Debug, Clone, Default)]
pub struct Provenance {
    /// The host of a metadata-document client's `client_id` URL.
    pub client_host: Option<String>,
    /// Where the browser goes after the decision: the redirect URI's host (and port), or a
    /// private-use scheme.
    pub redirect_host: Option<String>,
    /// Nobody reviewed it: it registered itself or describes itself in its document.
    pub self_described: bool,
    /// A self-described application whose every redirect URI is on this device: anyone can
    /// register one, so the person should have started it themselves.
    pub loopback_only: bool,
}

impl Provenance {
    pub fn of(client: &crate::clients::Client, redirect_uri: Option<&str>) -> Provenance {
        use crate::oauth::uri::{is_loopback_redirect, redirect_target};
        let client_host = (client.kind == crate::clients::ClientKind::MetadataDocument)
            .then(|| url::Url::parse(&client.id).ok())
            .flatten()
            .and_then(|u| u.host_str().map(str::to_string));
        Provenance {
            client_host,
            redirect_host: redirect_uri.map(redirect_target),
            self_described: client.is_self_described(),
            loopback_only: client.is_self_described()
                && !client.redirect_uris.is_empty()
                && client.redirect_uris.iter().all(|r| is_loopback_redirect(r)),
        }
    }
}

#[derive(Template)]
#[template(path = "device.html")]
pub struct DevicePage {
    pub csrf_token: String,
    pub user_code: String,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub title: String,
    pub message: String,
}

#[derive(Template)]
#[template(path = "logout.html")]
pub struct LogoutPage {
    pub csrf_token: String,
    pub client_name: Option<String>,
    pub id_token_hint: String,
    pub post_logout_redirect_uri: String,
    pub state: String,
    pub client_id: String,
}

#[derive(Template)]
#[template(path = "logged_out.html")]
pub struct LoggedOutPage {
    pub client_name: Option<String>,
}

/// Plain-words descriptions of the scopes people are asked to consent to.
/// A delegation scope (`delegate:<client_id>`), naming the agent by its registered name.
pub fn describe_delegation(agent_name: &str) -> String {
    format!(
        "Let “{agent_name}” act for you: it may trade your access for its own, always shown as acting for you"
    )
}

pub fn describe_scope(scope: &str) -> String {
    match scope {
        "openid" => "Sign you in with your Portcullis account".into(),
        "profile" => "See your name and username".into(),
        "email" => "See your email address".into(),
        "offline_access" => "Stay connected when you are not using the app".into(),
        other => match other.split_once(':') {
            Some((resource, "read")) => format!("Read your {resource}"),
            Some((resource, "write")) => format!("Change your {resource}"),
            Some((resource, "invoke")) => format!("Use {resource} on your behalf"),
            _ => format!("Use the “{other}” permission"),
        },
    }
}

/// A time for people: `2026-11-30 14:05 UTC`.
pub fn format_time(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| unix.to_string())
}

/// One client the person granted, on the account page.
pub struct ConnectedApp {
    pub client_id: String,
    pub name: String,
    pub granted_at: String,
    pub scopes: Vec<ScopeView>,
    /// The names of the agents the person let act for them through this app.
    pub delegations: Vec<String>,
}

/// One signed-in browser, on the account page.
pub struct SessionView {
    pub sid: String,
    pub device: String,
    pub user_agent: String,
    pub address: String,
    pub signed_in_at: String,
    pub current: bool,
}

#[derive(Template)]
#[template(path = "account.html")]
pub struct AccountPage {
    pub csrf_token: String,
    pub name: String,
    pub email: String,
    pub username: String,
    pub notice: Option<String>,
    pub password_error: Option<String>,
    pub min_password: usize,
    pub apps: Vec<ConnectedApp>,
    pub sessions: Vec<SessionView>,
    /// Whether another device is signed in ("sign out all other devices").
    pub others: bool,
}
pub mod console;
