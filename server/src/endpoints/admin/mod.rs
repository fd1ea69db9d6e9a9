//! The admin API under `/admin/v1`: JSON, field-level validation errors, pagination,
//! authorized by an access token for the admin audience holding `portcullis:admin`.
//! The CLI and this API call the same services.

mod audit;
mod clients;
mod keys;
mod registration_tokens;
mod resources;
mod roles;
mod users;

use std::collections::BTreeMap;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::app::{admin_audience, App};
use crate::authorization::{AuthorizationError, ADMIN_SCOPE};
use crate::clients::RegistryError;
use crate::error::{Challenge, ErrorCode, OAuthError};
use crate::users::UserError;

pub const PREFIX: &str = "/admin/v1";

/// Who is calling: the token's subject and client.
#[derive(Clone)]
pub struct Caller {
    pub subject: String,
    pub client_id: String,
}

#[derive(Debug)]
pub enum AdminError {
    Auth(OAuthError),
    Invalid {
        message: String,
        fields: BTreeMap<String, String>,
    },
    NotFound(String),
    Conflict(String),
    Unavailable(String),
}

impl std::fmt::Display for AdminError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdminError::Auth(e) => e.fmt(f),
            AdminError::Invalid { message, .. } => f.write_str(message),
            AdminError::NotFound(m) | AdminError::Conflict(m) | AdminError::Unavailable(m) => {
                f.write_str(m)
            }
        }
    }
}

pub fn invalid_field(field: &str, message: impl Into<String>) -> AdminError {
    let message = message.into();
    AdminError::Invalid {
        message: format!("{field}: {message}"),
        fields: BTreeMap::from([(field.to_string(), message)]),
    }
}

impl ResponseError for AdminError {
    fn status_code(&self) -> StatusCode {
        match self {
            AdminError::Auth(e) => e.status_code(),
            AdminError::Invalid { .. } => StatusCode::BAD_REQUEST,
            AdminError::NotFound(_) => StatusCode::NOT_FOUND,
            AdminError::Conflict(_) => StatusCode::CONFLICT,
            AdminError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let body = match self {
            AdminError::Auth(e) => return e.error_response(),
            AdminError::Invalid { message, fields } => {
                json!({"error": "invalid_request", "error_description": message, "fields": fields})
            }
            AdminError::NotFound(m) => json!({"error": "not_found", "error_description": m}),
            AdminError::Conflict(m) => json!({"error": "conflict", "error_description": m}),
            AdminError::Unavailable(m) => {
                tracing::error!(error = %m, "admin API failure");
                json!({"error": "temporarily_unavailable", "error_description": "try again later"})
            }
        };
        HttpResponse::build(self.status_code())
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(body)
    }
}

impl From<RegistryError> for AdminError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::Invalid(field, message) => invalid_field(field, message),
            RegistryError::Conflict(what) => AdminError::Conflict(format!("{what} already exists")),
            RegistryError::NotFound(id) => AdminError::NotFound(format!("no client {id}")),
            RegistryError::InitialTokenUnusable => {
                invalid_field("initial_access_token", "no longer usable")
            }
            RegistryError::NoInitialToken(id) => {
                AdminError::NotFound(format!("no initial access token {id}"))
            }
            RegistryError::Store(e) => AdminError::Unavailable(e.to_string()),
        }
    }
}

impl From<UserError> for AdminError {
    fn from(e: UserError) -> Self {
        match e {
            UserError::Invalid(field, message) => invalid_field(field, message),
            UserError::Conflict(what) => AdminError::Conflict(format!("{what} already exists")),
            UserError::NotFound(name) => AdminError::NotFound(format!("no user {name}")),
            UserError::Store(e) => AdminError::Unavailable(e.to_string()),
        }
    }
}

impl From<AuthorizationError> for AdminError {
    fn from(e: AuthorizationError) -> Self {
        match e {
            AuthorizationError::Invalid(field, message) => invalid_field(field, message),
            AuthorizationError::Conflict(what) => {
                AdminError::Conflict(format!("{what} already exists"))
            }
            AuthorizationError::NotFound(what) => AdminError::NotFound(format!("no {what}")),
            AuthorizationError::Store(e) => AdminError::Unavailable(e.to_string()),
        }
    }
}

impl From<crate::store::StoreError> for AdminError {
    fn from(e: crate::store::StoreError) -> Self {
        AdminError::Unavailable(e.to_string())
    }
}

/// RFC 6750: a valid access token for the admin audience with the admin scope.
pub async fn authorize(request: &HttpRequest, app: &App) -> Result<Caller, AdminError> {
    let bearer = |code, description: &'static str, challenge| {
        AdminError::Auth(OAuthError {
            code,
            description: description.into(),
            challenge,
            retry_after: None,
        })
    };
    // A missing token and one under another scheme are both "no access token" here.
    let Some(token) = crate::endpoints::userinfo::bearer(request).ok().flatten() else {
        return Err(bearer(
            ErrorCode::InvalidToken,
            "an access token is required",
            Challenge::BearerRealmOnly,
        ));
    };
    let claims = crate::oauth::userinfo::verify_access_token(app, &token)
        .await
        .map_err(AdminError::Auth)?;
    // The admin API takes bearer tokens only: a DPoP-bound one would be usable without its key.
    if crate::oauth::userinfo::bound_key(&claims).is_some() {
        return Err(bearer(
            ErrorCode::InvalidToken,
            "a DPoP-bound access token is not accepted by the admin API",
            Challenge::Bearer,
        ));
    }
    let text = |name: &str| {
        claims
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    if text("aud") != admin_audience(app.settings()) {
        return Err(bearer(
            ErrorCode::InvalidToken,
            "the access token is not for the admin API",
            Challenge::Bearer,
        ));
    }
    if !text("scope").split(' ').any(|s| s == ADMIN_SCOPE) {
        return Err(bearer(
            ErrorCode::InsufficientScope,
            "the portcullis:admin scope is required",
            Challenge::Bearer,
        ));
    }
    let (subject, client_id) = (text("sub"), text("client_id"));
    // The token outlives nothing: the subject must still exist, be enabled, and hold a role
    // that grants the admin scope.
    let roles = if subject == client_id {
        let client = app
            .clients()
            .find(&client_id)
            .await
            .map_err(|e| AdminError::Unavailable(e.to_string()))?;
        client.map(|c| c.roles.clone())
    } else {
        let sub = subject.clone();
        app.store()
            .run(move |s| s.find_user(&sub))
            .await?
            .filter(|u| !u.disabled)
            .map(|u| u.roles)
    };
    let still_admin = roles.is_some_and(|roles| {
        app.authorization()
            .model()
            .permitted_by(&roles)
            .contains(ADMIN_SCOPE)
    });
    if !still_admin {
        return Err(bearer(
            ErrorCode::InvalidToken,
            "the token's subject is no longer an administrator",
            Challenge::Bearer,
        ));
    }
    Ok(Caller { subject, client_id })
}

/// The caller the admin middleware authenticated.
pub fn caller_of(request: &HttpRequest) -> Result<Caller, AdminError> {
    use actix_web::HttpMessage;
    request
        .extensions()
        .get::<Caller>()
        .map(|c| Caller {
            subject: c.subject.clone(),
            client_id: c.client_id.clone(),
        })
        .ok_or_else(|| AdminError::Unavailable("admin request without a caller".into()))
}

/// Authenticates every admin request before its body or query is read, so unauthenticated
/// callers learn nothing from validation errors.
async fn require_admin(
    request: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<actix_web::body::BoxBody>,
) -> Result<actix_web::dev::ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    use actix_web::HttpMessage;
    if request.path() == "/admin/v1/openapi.json" {
        return next.call(request).await;
    }
    let Some(app) = request.app_data::<web::Data<App>>().cloned() else {
        return Ok(request.into_response(
            AdminError::Unavailable("no application state".into()).error_response(),
        ));
    };
    match authorize(request.request(), &app).await {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            let mut response = next.call(request).await?;
            response.headers_mut().insert(
                header::CACHE_CONTROL,
                header::HeaderValue::from_static("no-store"),
            );
            Ok(response)
        }
        Err(e) => Ok(request.into_response(e.error_response())),
    }
}

impl Caller {
    /// Records an admin change in the audit log.
    pub fn audit(&self, app: &App, action: &str, details: Value) {
        let mut details = details;
        if let Some(map) = details.as_object_mut() {
            map.insert("action".into(), Value::String(action.to_string()));
        }
        app.audit().record(
            "admin_change",
            Some(&self.client_id),
            Some(&self.subject),
            details,
        );
    }
}

/// `?limit=&offset=` on list endpoints.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// At most 500; default 50.
    pub limit: Option<usize>,
    pub offset: Option<usize>,
}

/// One page of a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct Paged<T: ToSchema> {
    pub items: Vec<T>,
    pub total: usize,
    pub limit: usize,
    pub offset: usize,
}

impl Page {
    pub fn apply<T: ToSchema>(&self, all: Vec<T>) -> Paged<T> {
        let limit = self.limit.unwrap_or(50).clamp(1, 500);
        let offset = self.offset.unwrap_or(0);
        let total = all.len();
        let items = all.into_iter().skip(offset).take(limit).collect();
        Paged {
            items,
            total,
            limit,
            offset,
        }
    }
}

/// Runs blocking service work with the app off the async workers.
pub async fn blocking<T, F>(app: &App, work: F) -> Result<T, AdminError>
where
    T: Send + 'static,
    F: FnOnce(&App) -> Result<T, AdminError> + Send + 'static,
{
    let app = app.clone();
    // Room for a password hash besides the database calls; past it, 503 rather than a hang.
    let deadline = app.store().deadline() * 2 + std::time::Duration::from_secs(2);
    match tokio::time::timeout(deadline, tokio::task::spawn_blocking(move || work(&app))).await {
        Ok(joined) => joined.map_err(|e| AdminError::Unavailable(e.to_string()))?,
        Err(_) => Err(AdminError::Unavailable(format!(
            "no answer within {} ms",
            deadline.as_millis()
        ))),
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Portcullis admin API", version = "1"),
    paths(
        clients::list, clients::create, clients::get, clients::update, clients::delete, clients::rotate_secret,
        users::list, users::create, users::get, users::delete, users::disable, users::enable, users::unlock,
        roles::list, roles::create, roles::update, roles::delete, roles::grant, roles::revoke,
        resources::list, resources::create, resources::update, resources::delete,
        keys::list, keys::rotate,
        registration_tokens::list, registration_tokens::create, registration_tokens::delete,
        audit::list,
    ),
    modifiers(&BearerAuth)
)]
pub struct AdminApi;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

async fn openapi() -> HttpResponse {
    match AdminApi::openapi().to_json() {
        Ok(body) => HttpResponse::Ok()
            .content_type("application/json")
            .body(body),
        Err(e) => AdminError::Unavailable(e.to_string()).error_response(),
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope(PREFIX)
            .app_data(
                web::JsonConfig::default()
                    .limit(256 * 1024)
                    .error_handler(|e, _| {
                        let message = e.to_string();
                        actix_web::error::InternalError::from_response(
                            e,
                            invalid_field("body", message).error_response(),
                        )
                        .into()
                    }),
            )
            .app_data(web::QueryConfig::default().error_handler(|e, _| {
                let message = e.to_string();
                actix_web::error::InternalError::from_response(
                    e,
                    invalid_field("query", message).error_response(),
                )
                .into()
            }))
            .wrap(actix_web::middleware::from_fn(require_admin))
            .route("/openapi.json", web::get().to(openapi))
            .route("/clients", web::get().to(clients::list))
            .route("/clients", web::post().to(clients::create))
            .route("/clients/{id}", web::get().to(clients::get))
            .route("/clients/{id}", web::put().to(clients::update))
            .route("/clients/{id}", web::delete().to(clients::delete))
            .route(
                "/clients/{id}/secret",
                web::post().to(clients::rotate_secret),
            )
            .route("/users", web::get().to(users::list))
            .route("/users", web::post().to(users::create))
            .route("/users/{username}", web::get().to(users::get))
            .route("/users/{username}", web::delete().to(users::delete))
            .route("/users/{username}/disable", web::post().to(users::disable))
            .route("/users/{username}/enable", web::post().to(users::enable))
            .route("/users/{username}/unlock", web::post().to(users::unlock))
            .route("/roles", web::get().to(roles::list))
            .route("/roles", web::post().to(roles::create))
            .route("/roles/{name}", web::put().to(roles::update))
            .route("/roles/{name}", web::delete().to(roles::delete))
            .route("/roles/{name}/holders", web::post().to(roles::grant))
            .route("/roles/{name}/holders", web::delete().to(roles::revoke))
            .route("/resources", web::get().to(resources::list))
            .route("/resources", web::post().to(resources::create))
            .route("/resources", web::put().to(resources::update))
            .route("/resources", web::delete().to(resources::delete))
            .route("/keys", web::get().to(keys::list))
            .route(
                "/registration-tokens",
                web::get().to(registration_tokens::list),
            )
            .route(
                "/registration-tokens",
                web::post().to(registration_tokens::create),
            )
            .route(
                "/registration-tokens/{id}",
                web::delete().to(registration_tokens::delete),
            )
            .route("/keys/rotate", web::post().to(keys::rotate))
            .route("/audit-events", web::get().to(audit::list))
            .default_service(web::to(|| async {
                AdminError::NotFound("no such admin endpoint".into()).error_response()
            })),
    );
}
