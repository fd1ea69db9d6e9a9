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
