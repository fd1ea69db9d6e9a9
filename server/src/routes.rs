//! Every path and the endpoint that serves it, in one table.

use actix_session::SessionMiddleware;
use actix_web::http::{header, Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};

use crate::endpoints::{
    self, authorize, device, device_authorization, discovery, health, introspect, json_error, jwks,
    login, logout, metrics, par, register, revoke, token, userinfo,
};
use crate::oauth::discovery::{
    AUTHORIZE_PATH, DEVICE_AUTHORIZATION_PATH, DEVICE_PATH, END_SESSION_PATH, JWKS_PATH, PAR_PATH,
    TOKEN_PATH, USERINFO_PATH,
};
use crate::oauth::registration::REGISTRATION_PATH;
use crate::session::SessionBackend;

/// `sessions` wraps only the browser pages: protocol endpoints authenticate each request by
/// itself and never read or set the session cookie.
pub fn configure(cfg: &mut web::ServiceConfig, sessions: &SessionMiddleware<SessionBackend>) {
    cfg.service(
        web::resource(TOKEN_PATH)
            .route(web::post().to(token::token))
            .route(web::method(Method::OPTIONS).to(cors_preflight))
            .default_service(web::to(method_not_allowed("POST"))),
    )
    .service(
        web::resource(JWKS_PATH)
            .route(web::get().to(jwks::jwks))
            .route(web::method(Method::OPTIONS).to(cors_preflight))
            .default_service(web::to(method_not_allowed("GET"))),
    )
    .service(
        web::resource([
            "/.well-known/openid-configuration",
            "/.well-known/oauth-authorization-server",
        ])
        .route(web::get().to(discovery::discovery))
        .route(web::method(Method::OPTIONS).to(cors_preflight))
        .default_service(web::to(method_not_allowed("GET"))),
    )
    .service(
        web::resource(AUTHORIZE_PATH)
            .route(web::get().to(authorize::authorize_get))
            .route(web::post().to(authorize::authorize_post))
            .wrap(sessions.clone()),
    )
    .service(
        web::resource("/authorize/resume")
            .route(web::get().to(authorize::resume))
            .wrap(sessions.clone()),
    )
    .service(
        web::resource("/login")
            .route(web::get().to(login::login_page))
            .route(web::post().to(login::login))
            .wrap(sessions.clone()),
    )
    .service(
        web::resource("/consent")
            .route(web::post().to(authorize::consent))
            .wrap(sessions.clone()),
    )
    .service(
        web::resource(END_SESSION_PATH)
            .route(web::get().to(logout::logout_get))
            .route(web::post().to(logout::logout_post))
            .wrap(sessions.clone()),
    )
    .service(
        web::resource(USERINFO_PATH)
            .route(web::get().to(userinfo::userinfo_get))
            .route(web::post().to(userinfo::userinfo_post))
            .route(web::method(Method::OPTIONS).to(cors_preflight))
            .default_service(web::to(method_not_allowed("GET, POST"))),
    )
    .service(
        web::resource(DEVICE_AUTHORIZATION_PATH)
            .route(web::post().to(device_authorization::device_authorization))
            .default_service(web::to(method_not_allowed("POST"))),
    )
    .service(
        web::resource(PAR_PATH)
            .route(web::post().to(par::par))
            .route(web::method(Method::OPTIONS).to(cors_preflight))
            .default_service(web::to(method_not_allowed("POST"))),
    )
    .service(
        web::resource(DEVICE_PATH)
            .route(web::get().to(device::device_page))
            .route(web::post().to(device::enter_code))
            .wrap(sessions.clone()),
    )
    .service(
        web::resource("/device/consent")
            .route(web::get().to(device::consent_page))
            .wrap(sessions.clone()),
    )
    .service(
        web::resource("/device/decision")
            .route(web::post().to(device::decide))
            .wrap(sessions.clone()),
    )
    .service(
        web::resource(REGISTRATION_PATH)
            .route(web::post().to(register::register))
            .route(web::method(Method::OPTIONS).to(cors_preflight))
            .default_service(web::to(method_not_allowed("POST"))),
    )
    .service(
        web::resource(format!("{REGISTRATION_PATH}/{{client_id}}"))
            .route(web::get().to(register::read))
            .route(web::put().to(register::update))
            .route(web::delete().to(register::delete))
            .default_service(web::to(method_not_allowed("GET, PUT, DELETE"))),
    )
    .service(
        web::resource("/introspect")
            .route(web::post().to(introspect::introspect))
            .default_service(web::to(method_not_allowed("POST"))),
    )
    .service(
        web::resource("/revoke")
            .route(web::post().to(revoke::revoke))
            .route(web::method(Method::OPTIONS).to(cors_preflight))
            .default_service(web::to(method_not_allowed("POST"))),
    )
    .configure(|cfg| endpoints::account::configure(cfg, sessions))
    .configure(endpoints::admin::configure)
    .configure(|cfg| endpoints::console::configure(cfg, sessions))
    .route("/healthz", web::get().to(health::healthz))
    .route("/readyz", web::get().to(health::readyz))
    .route("/metrics", web::get().to(metrics::metrics))
    .default_service(web::to(not_found));
}

/// The browser pages that use the session (and so Redis, when configured).
pub const SESSION_PATHS: [&str; 8] = [
    AUTHORIZE_PATH,
    "/authorize/resume",
    "/login",
    "/consent",
    END_SESSION_PATH,
    DEVICE_PATH,
    "/device/consent",
    "/device/decision",
];

/// Whether `path` is a browser page that uses the session: those above, the account page and
/// the admin console (not the admin API).
pub fn is_session_path(path: &str) -> bool {
    SESSION_PATHS.contains(&path)
        || path == "/account"
        || path.starts_with("/account/")
        || ((path == "/admin" || path.starts_with("/admin/")) && !path.starts_with("/admin/v1"))
}

/// Read-only resources that answer `HEAD` as `GET` without the body (RFC 9110 §9.3.2), for
/// probes and caches. Pages and protocol endpoints with side effects are left out.
pub const HEAD_PATHS: [&str; 6] = [
    JWKS_PATH,
    "/.well-known/openid-configuration",
    "/.well-known/oauth-authorization-server",
    "/healthz",
    "/readyz",
    "/metrics",
];

/// Endpoints a browser app (a public client) calls from its own origin: CORS with `*`, safe
/// because they use no cookies — credentials travel in the request itself.
pub const CORS_PATHS: [&str; 8] = [
    TOKEN_PATH,
    REGISTRATION_PATH,
    PAR_PATH,
    JWKS_PATH,
    USERINFO_PATH,
    "/revoke",
    "/.well-known/openid-configuration",
    "/.well-known/oauth-authorization-server",
];

/// The CORS preflight answer (Fetch standard, CORS protocol).
async fn cors_preflight() -> HttpResponse {
    HttpResponse::NoContent()
        .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST"))
        .insert_header((
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            "Authorization, Content-Type, DPoP",
        ))
        .insert_header((header::ACCESS_CONTROL_MAX_AGE, "600"))
        .finish()
}

fn method_not_allowed(
    allow: &'static str,
) -> impl Fn() -> std::future::Ready<HttpResponse> + Clone + 'static {
    move || {
        let mut response = json_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request",
            &format!("this endpoint accepts {allow} only"),
        );
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static(allow));
        std::future::ready(response)
    }
}

async fn not_found(_request: HttpRequest) -> HttpResponse {
    endpoints::json_error(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}
