//! The admin console at `/admin`: server-rendered pages for operators, signed in through
//! Portcullis itself — the first-party public client `portcullis-console` (created at start),
//! the code flow with PKCE — and only for people whose roles grant `portcullis:admin`.
//! Every change calls the same application functions as the admin API (`administration`),
//! which write the audit event naming the administrator. Forms carry the session's CSRF token.

mod pages;

use actix_session::{Session, SessionMiddleware};
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::{Deserialize, Serialize};

use super::authorize::signed_in;
use super::pages::{error_page, see_other, unavailable_page};
use crate::app::App;
use crate::authorization::ADMIN_SCOPE;
use crate::clients::{NewClient, SecretChoice};
use crate::endpoints::admin::{AdminError, Caller};
use crate::session::{csrf_matches, csrf_token, SessionBackend};
use crate::users::User;
use crate::views::console::Shell;

/// The console's own client: public, code flow with PKCE, redirect `<issuer>/admin/callback`.
pub const CLIENT_ID: &str = "portcullis-console";
const CALLBACK: &str = "/admin/callback";
const LOGIN_KEY: &str = "console_login";
const ADMIN_KEY: &str = "console_admin";

/// Creates (or re-creates, when the issuer changed) the console's client. Blocking.
pub fn ensure_client(app: &App) -> Result<(), String> {
    let redirect = format!("{}{CALLBACK}", app.settings().issuer);
    match app
        .store()
        .find_client(CLIENT_ID)
        .map_err(|e| e.to_string())?
    {
        Some(client) if client.redirect_uris == [redirect.clone()] => return Ok(()),
        Some(_) => app.clients().delete(CLIENT_ID).map_err(|e| e.to_string())?,
        None => {}
    }
    let created = app.clients().create(&NewClient {
        id: CLIENT_ID.into(),
        name: "Portcullis admin console".into(),
        secret: SecretChoice::Public,
        auth_method: None,
        grant_types: vec!["authorization_code".into()],
        scopes: vec!["openid".into()],
        audiences: vec![],
        redirect_uris: vec![redirect],
        post_logout_redirect_uris: vec![],
        roles: vec![],
        jwks: None,
        id_token_signed_response_alg: None,
        introspection_audiences: vec![],
        require_pushed_authorization_requests: false,
        dpop_bound_access_tokens: false,
    });
    match created {
        // Another instance created it at the same moment.
        Ok(_) | Err(crate::clients::RegistryError::Conflict(_)) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

#[derive(Serialize, Deserialize)]
struct ConsoleLogin {
    state: String,
    verifier: String,
    return_to: String,
}

#[derive(Serialize, Deserialize)]
struct ConsoleAdmin {
    user_id: String,
}

/// The signed-in administrator of a console request.
pub struct Admin {
    pub user: User,
    pub caller: Caller,
    pub csrf: String,
}

impl Admin {
    pub fn shell(&self, active: &'static str, notice: Option<String>) -> Shell {
        Shell {
            admin: self.user.username.clone(),
            active,
            csrf_token: self.csrf.clone(),
            notice,
        }
    }
}

fn is_admin(app: &App, user: &User) -> bool {
    !user.disabled
        && app
            .authorization()
            .model()
            .permitted_by(&user.roles)
            .contains(ADMIN_SCOPE)
}

fn forbidden(user: &User) -> HttpResponse {
    error_page(
        StatusCode::FORBIDDEN,
        "You are not an administrator",
        &format!(
            "You are signed in as {}. The admin console is only for people who hold the admin role; ask an administrator if you need it.",
            user.username
        ),
    )
}

/// The administrator of this session, or the response instead: Portcullis's sign-in (then
/// back to `return_to`) when nobody is, 403 for someone who is not an administrator. The
/// console follows the browser's Portcullis session: signed out there, out here too.
pub async fn admin(app: &App, session: &Session, return_to: &str) -> Result<Admin, HttpResponse> {
    let console = session.get::<ConsoleAdmin>(ADMIN_KEY).ok().flatten();
    let who = match signed_in(app, session).await {
        Ok(who) => who,
        Err(e) => {
            tracing::error!(error = %e, "console: the session could not be read");
            return Err(unavailable_page(1));
        }
    };
    match (console, who) {
        (Some(console), Some((_, user))) if console.user_id == user.id => {
            if !is_admin(app, &user) {
                session.remove(ADMIN_KEY);
                return Err(forbidden(&user));
            }
            let Ok(csrf) = csrf_token(session) else {
                return Err(super::pages::session_expired());
            };
            Ok(Admin {
                caller: Caller {
                    subject: user.id.clone(),
                    client_id: CLIENT_ID.into(),
                },
                user,
                csrf,
            })
        }
        _ => {
            session.remove(ADMIN_KEY);
            Err(start_sign_in(app, session, return_to))
        }
    }
}

/// Sends the browser through `/authorize` as the console's client (PKCE S256, `state`).
fn start_sign_in(app: &App, session: &Session, return_to: &str) -> HttpResponse {
    let (Ok(state), Ok(a), Ok(b)) = (
        crate::secrets::generate_token(),
        crate::secrets::generate_token(),
        crate::secrets::generate_token(),
    ) else {
        return unavailable_page(1);
    };
    let verifier = format!("{a}{b}");
    let challenge =
        crate::jose::b64(ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes()).as_ref());
    let return_to = if return_to.starts_with("/admin") && !return_to.starts_with("/admin/v1") {
        return_to.to_string()
    } else {
        "/admin".to_string()
    };
    let login = ConsoleLogin {
        state: state.clone(),
        verifier,
        return_to,
    };
    if session.insert(LOGIN_KEY, &login).is_err() {
        return super::pages::session_expired();
    }
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", CLIENT_ID)
        .append_pair(
            "redirect_uri",
            &format!("{}{CALLBACK}", app.settings().issuer),
        )
        .append_pair("scope", "openid")
        .append_pair("state", &state)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .finish();
    see_other(&format!("/authorize?{query}"))
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// `GET /admin/callback`: redeems the code in process, through the same token-request code
/// as `/token`, and admits an administrator.
pub async fn callback(
    request: HttpRequest,
    query: web::Query<CallbackQuery>,
    session: Session,
    app: web::Data<App>,
) -> HttpResponse {
    let expired = || {
        error_page(
            StatusCode::BAD_REQUEST,
            "This sign-in has expired",
            "Open the admin console again to sign in.",
        )
    };
    let Some(Ok(login)) = session.remove_as::<ConsoleLogin>(LOGIN_KEY) else {
        return expired();
    };
    if query.state.as_deref() != Some(login.state.as_str()) {
        return expired();
    }
    if let Some(error) = &query.error {
        return error_page(
            StatusCode::FORBIDDEN,
            "Sign-in to the admin console did not complete",
            &format!(
                "Portcullis answered `{}`.",
                error.chars().take(60).collect::<String>()
            ),
        );
    }
    let Some(code) = &query.code else {
        return expired();
    };
    let redirect = format!("{}{CALLBACK}", app.settings().issuer);
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "authorization_code")
        .append_pair("client_id", CLIENT_ID)
        .append_pair("code", code)
        .append_pair("redirect_uri", &redirect)
        .append_pair("code_verifier", &login.verifier)
        .finish();
    let Ok(params) = crate::oauth::params::Params::parse(body.as_bytes()) else {
        return expired();
    };
    let address = super::client_address(&request, &app);
    let issued = crate::oauth::grants::token_request(
        &app,
        None,
        &params,
        address,
        crate::oauth::dpop::Presented::Absent,
    )
    .await;
    let response = match issued {
        Ok((_, _, response)) => response,
        Err(e) => {
            tracing::warn!(error = %e.description, "console: the code was refused");
            return expired();
        }
    };
    let subject = {
        let keyring = app.keyring().current();
        crate::jose::jwt::verify(&response.access_token, |kid| keyring.verifier(kid)).and_then(
            |v| {
                v.claims
                    .get("sub")
                    .and_then(|s| s.as_str())
                    .map(str::to_string)
            },
        )
    };
    let Some(subject) = subject else {
        return expired();
    };
    let user = match app.store().run(move |s| s.find_user(&subject)).await {
        Ok(Some(user)) => user,
        Ok(None) => return expired(),
        Err(e) => {
            tracing::error!(error = %e, "console: the account could not be read");
            return unavailable_page(1);
        }
    };
    if !is_admin(&app, &user) {
        app.audit().record(
            "console_refused",
            Some(CLIENT_ID),
            Some(&user.id),
            serde_json::json!({ "username": user.username }),
        );
        return forbidden(&user);
    }
    if session
        .insert(
            ADMIN_KEY,
            ConsoleAdmin {
                user_id: user.id.clone(),
            },
        )
        .is_err()
    {
        return super::pages::session_expired();
    }
    app.audit().record(
        "console_signed_in",
        Some(CLIENT_ID),
        Some(&user.id),
        serde_json::json!({ "username": user.username }),
    );
    see_other(&login.return_to)
}

/// A console form's CSRF check: the readable 400 page when it fails.
pub fn check_csrf(session: &Session, submitted: Option<&str>) -> Option<HttpResponse> {
    if submitted.is_some_and(|token| csrf_matches(session, token)) {
        None
    } else {
        Some(error_page(
            StatusCode::BAD_REQUEST,
            "This form has expired",
            "The form was sent without its security token, or from an older page. Go back, reload the page and try again.",
        ))
    }
}

/// The hash of the layout's one inline script (the copy buttons), for `script-src`.
fn script_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        let layout = include_str!("../../../../templates/console/layout.html");
        let script = layout
            .split("<script>")
            .nth(1)
            .and_then(|rest| rest.split("</script>").next())
            .unwrap_or_default();
        let digest = ring::digest::digest(&ring::digest::SHA256, script.as_bytes());
        format!(
            "'sha256-{}'",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, digest.as_ref())
        )
    })
}

/// A console page: the page headers of the sign-in pages, plus the copy script by hash.
pub fn page(status: StatusCode, body: Result<String, askama::Error>) -> HttpResponse {
    let mut response = super::pages::html(status, body, &[]);
    let csp = format!(
        "default-src 'none'; style-src 'unsafe-inline'; script-src {}; img-src data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        script_hash()
    );
    if let Ok(value) = header::HeaderValue::from_str(&csp) {
        response
            .headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, value);
    }
    response
}

/// An application error as a console page: what was wrong, in words, never a 500.
pub fn failure(admin: &Admin, error: AdminError, back: &str) -> HttpResponse {
    let (status, title, message) = match &error {
        AdminError::Invalid { message, .. } => {
            (StatusCode::BAD_REQUEST, "Not saved", message.clone())
        }
        AdminError::NotFound(m) => (StatusCode::NOT_FOUND, "Not found", m.clone()),
        AdminError::Conflict(m) => (StatusCode::CONFLICT, "Not saved", m.clone()),
        AdminError::Auth(_) => (StatusCode::FORBIDDEN, "Not allowed", error.to_string()),
        AdminError::Unavailable(m) => {
            tracing::error!(error = %m, "console: a change failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "Temporarily unavailable",
                "The database did not answer in time. Please try again.".to_string(),
            )
        }
    };
    let page_body = crate::views::console::MessagePage {
        shell: admin.shell("", None),
        title: title.into(),
        message,
        secret: None,
        back: back.into(),
        error: true,
    };
    page(status, page_body.render())
}

pub fn configure(cfg: &mut web::ServiceConfig, sessions: &SessionMiddleware<SessionBackend>) {
    let route = |path: &str| web::resource(path.to_string()).wrap(sessions.clone());
    cfg.service(route("/admin").route(web::get().to(pages::overview)))
        .service(route(CALLBACK).route(web::get().to(callback)))
        .service(
            route("/admin/clients")
                .route(web::get().to(pages::clients))
                .route(web::post().to(pages::create_client)),
        )
        .service(route("/admin/clients/new").route(web::get().to(pages::new_client)))
        .service(route("/admin/clients/{id}").route(web::get().to(pages::client)))
        .service(
            route("/admin/clients/{id}/edit")
                .route(web::get().to(pages::edit_client))
                .route(web::post().to(pages::update_client)),
        )
        .service(
            route("/admin/clients/{id}/secret")
                .route(web::get().to(pages::confirm_rotate_secret))
                .route(web::post().to(pages::rotate_secret)),
        )
        .service(
            route("/admin/clients/{id}/delete")
                .route(web::get().to(pages::confirm_delete_client))
                .route(web::post().to(pages::delete_client)),
        )
        .service(
            route("/admin/users")
                .route(web::get().to(pages::users))
                .route(web::post().to(pages::create_user)),
        )
        .service(route("/admin/users/new").route(web::get().to(pages::new_user)))
        .service(route("/admin/users/{username}").route(web::get().to(pages::user)))
        .service(
            route("/admin/users/{username}/{action}").route(web::post().to(pages::user_action)),
        )
        .service(
            route("/admin/roles")
                .route(web::get().to(pages::roles))
                .route(web::post().to(pages::create_role)),
        )
        .service(route("/admin/roles/{name}/{action}").route(web::post().to(pages::role_action)))
        .service(route("/admin/resources").route(web::post().to(pages::create_resource)))
        .service(route("/admin/resources/scopes").route(web::post().to(pages::set_resource_scopes)))
        .service(route("/admin/resources/delete").route(web::post().to(pages::delete_resource)))
        .service(route("/admin/keys").route(web::get().to(pages::keys)))
        .service(route("/admin/keys/rotate").route(web::post().to(pages::rotate_keys)))
        .service(route("/admin/audit").route(web::get().to(pages::audit)));
}
