//! `/admin/v1/clients`.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::{blocking, caller_of, AdminError, Page};
use crate::administration;
use crate::app::App;
use crate::clients::{Client, ClientKind, CreatedClient, NewClient};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateClient {
    pub client_id: String,
    pub client_name: String,
    /// A public client (no secret).
    #[serde(default)]
    pub public: bool,
    /// At least 32 characters; omitted: one is generated and returned once.
    pub client_secret: Option<String>,
    pub token_endpoint_auth_method: Option<String>,
    pub grant_types: Vec<String>,
    #[serde(default)]
    pub scope: Vec<String>,
    #[serde(default)]
    pub audiences: Vec<String>,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    /// Public keys for private_key_jwt.
    #[schema(value_type = Option<Object>)]
    pub jwks: Option<serde_json::Value>,
    /// ES256 or RS256 for this client's ID tokens.
    pub id_token_signed_response_alg: Option<String>,
    /// Audiences whose tokens this client, their resource server, may introspect.
    #[serde(default)]
    pub introspection_audiences: Vec<String>,
    /// Authorization requests only as pushed requests (RFC 9126).
    #[serde(default)]
    pub require_pushed_authorization_requests: bool,
    /// A DPoP proof with every token request (RFC 9449).
    #[serde(default)]
    pub dpop_bound_access_tokens: bool,
}

/// The full replacement of a client's editable metadata (`PUT`): a field left out takes its
/// default, as at creation, except `token_endpoint_auth_method` (left out: unchanged).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateClient {
    pub client_name: String,
    /// `none` makes the client public (its secret is removed); moving to `client_secret_*`
    /// from `none` or `private_key_jwt` generates a secret, returned once.
    pub token_endpoint_auth_method: Option<String>,
    pub grant_types: Vec<String>,
    #[serde(default)]
    pub scope: Vec<String>,
    #[serde(default)]
    pub audiences: Vec<String>,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    #[schema(value_type = Option<Object>)]
    pub jwks: Option<serde_json::Value>,
    pub id_token_signed_response_alg: Option<String>,
    #[serde(default)]
    pub introspection_audiences: Vec<String>,
    #[serde(default)]
    pub require_pushed_authorization_requests: bool,
    #[serde(default)]
    pub dpop_bound_access_tokens: bool,
}

/// A client's new secret, shown once.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct NewSecret {
    pub client_id: String,
    pub client_secret: String,
}

/// `?kind=` on the client list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KindFilter {
    /// `static` (an administrator's) or `dynamic` (registered at `POST /register`).
    pub kind: Option<ClientKind>,
}

#[utoipa::path(operation_id = "list_clients", tag = "clients", get, path = "/admin/v1/clients", params(Page, KindFilter), security(("bearer" = [])),
    responses((status = 200, body = inline(super::Paged<Client>))))]
pub async fn list(
    request: HttpRequest,
    page: web::Query<Page>,
    filter: web::Query<KindFilter>,
    app: web::Data<App>,
) -> Result<HttpResponse, AdminError> {
    caller_of(&request)?;
    let kind = filter.kind;
    let all = blocking(&app, move |app| {
        let mut clients = app.clients().list()?;
        if let Some(kind) = kind {
            clients.retain(|c| c.kind == kind);
        }
        Ok(clients)
    })
    .await?;
    Ok(HttpResponse::Ok().json(page.apply(all)))
}

#[utoipa::path(operation_id = "create_clients", tag = "clients", post, path = "/admin/v1/clients", request_body = CreateClient, security(("bearer" = [])),
    responses((status = 201, body = CreatedClient), (status = 400, description = "validation errors by field"), (status = 409)))]
pub async fn create(
    request: HttpRequest,
    body: web::Json<CreateClient>,
    app: web::Data<App>,
) -> Result<HttpResponse, AdminError> {
    let caller = caller_of(&request)?;
    let body = body.into_inner();
    let secret = administration::secret_choice(body.public, body.client_secret)?;
    let new = NewClient {
        id: body.client_id,
        name: body.client_name,
        secret,
        auth_method: body.token_endpoint_auth_method,
        grant_types: body.grant_types,
        scopes: body.scope,
        audiences: body.audiences,
        redirect_uris: body.redirect_uris,
        post_logout_redirect_uris: body.post_logout_redirect_uris,
        roles: body.roles,
        jwks: body.jwks.map(|j| j.to_string()),
        id_token_signed_response_alg: body.id_token_signed_response_alg,
        introspection_audiences: body.introspection_audiences,
        require_pushed_authorization_requests: body.require_pushed_authorization_requests,
        dpop_bound_access_tokens: body.dpop_bound_access_tokens,
    };
    let created = blocking(&app, move |app| {
        administration::create_client(app, &caller, &new)
    })
    .await?;
    Ok(HttpResponse::Created().json(created))
}

#[utoipa::path(operation_id = "get_clients", tag = "clients", get, path = "/admin/v1/clients/{id}", params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = Client), (status = 404)))]
pub async fn get(
    request: HttpRequest,
    id: web::Path<String>,
    app: web::Data<App>,
) -> Result<HttpResponse, AdminError> {
    caller_of(&request)?;
    let id = id.into_inner();
    let found = blocking(&app, move |app| {
        app.store()
            .find_client(&id)?
            .ok_or_else(|| AdminError::NotFound(format!("no client {id}")))
    })
    .await?;
    Ok(HttpResponse::Ok().json(found))
}

#[utoipa::path(operation_id = "delete_clients", tag = "clients", delete, path = "/admin/v1/clients/{id}", params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 204), (status = 404)))]
pub async fn delete(
    request: HttpRequest,
    id: web::Path<String>,
    app: web::Data<App>,
) -> Result<HttpResponse, AdminError> {
    let caller = caller_of(&request)?;
    let id = id.into_inner();
    blocking(&app, move |app| {
        administration::delete_client(app, &caller, &id)
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(operation_id = "update_clients", tag = "clients", put, path = "/admin/v1/clients/{id}", params(("id" = String, Path)), request_body = UpdateClient, security(("bearer" = [])),
    responses((status = 200, body = CreatedClient, description = "the client; `client_secret` only when one was generated"), (status = 400, description = "validation errors by field"), (status = 404)))]
pub async fn update(
    request: HttpRequest,
    id: web::Path<String>,
    body: web::Json<UpdateClient>,
    app: web::Data<App>,
) -> Result<HttpResponse, AdminError> {
    let caller = caller_of(&request)?;
    let id = id.into_inner();
    let body = body.into_inner();
    let changes = NewClient {
        id: id.clone(),
        name: body.client_name,
        secret: crate::clients::SecretChoice::Generate,
        auth_method: body.token_endpoint_auth_method,
        grant_types: body.grant_types,
        scopes: body.scope,
        audiences: body.audiences,
        redirect_uris: body.redirect_uris,
        post_logout_redirect_uris: body.post_logout_redirect_uris,
        roles: body.roles,
        jwks: body.jwks.map(|j| j.to_string()),
        id_token_signed_response_alg: body.id_token_signed_response_alg,
        introspection_audiences: body.introspection_audiences,
        require_pushed_authorization_requests: body.require_pushed_authorization_requests,
        dpop_bound_access_tokens: body.dpop_bound_access_tokens,
    };
    let updated = blocking(&app, move |app| {
        administration::update_client(app, &caller, &id, &changes)
    })
    .await?;
    Ok(HttpResponse::Ok().json(updated))
}

#[utoipa::path(operation_id = "rotate_client_secret", tag = "clients", post, path = "/admin/v1/clients/{id}/secret", params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = NewSecret, description = "the new secret, shown once; the old one no longer works"), (status = 400, description = "a public or private_key_jwt client has no secret"), (status = 404)))]
pub async fn rotate_secret(
    request: HttpRequest,
    id: web::Path<String>,
    app: web::Data<App>,
) -> Result<HttpResponse, AdminError> {
    let caller = caller_of(&request)?;
    let id = id.into_inner();
    let wanted = id.clone();
    let secret = blocking(&app, move |app| {
        administration::rotate_client_secret(app, &caller, &wanted)
    })
    .await?;
    Ok(HttpResponse::Ok().json(NewSecret {
        client_id: id,
        client_secret: secret,
    }))
}
