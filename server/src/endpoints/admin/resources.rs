//! `/admin/v1/resources`.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::{blocking, caller_of, AdminError, Page};
use crate::administration;
use crate::app::App;
use crate::authorization::ApiResource;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateResource {
    pub audience: String,
    pub name: Option<String>,
    pub scopes: Vec<String>,
    pub access_token_ttl: Option<i64>,
    /// ES256 or RS256.
    pub signing_alg: Option<String>,
}

/// A resource's new scopes (a full replacement).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceScopes {
    pub scopes: Vec<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AudienceQuery {
    pub audience: String,
}

#[utoipa::path(operation_id = "list_resources", tag = "resources", get, path = "/admin/v1/resources", params(Page), security(("bearer" = [])),
    responses((status = 200, body = inline(super::Paged<ApiResource>))))]
pub async fn list(
    request: HttpRequest,
    page: web::Query<Page>,
    app: web::Data<App>,
) -> Result<HttpResponse, AdminError> {
    caller_of(&request)?;
    let all = blocking(&app, move |app| Ok(app.authorization().list_resources()?)).await?;
    Ok(HttpResponse::Ok().json(page.apply(all)))
}

#[utoipa::path(operation_id = "create_resources", tag = "resources", post, path = "/admin/v1/resources", request_body = CreateResource, security(("bearer" = [])),
    responses((status = 201, body = ApiResource), (status = 400), (status = 409)))]
pub async fn create(
    request: HttpRequest,
    body: web::Json<CreateResource>,
    app: web::Data<App>,
) -> Result<HttpResponse, AdminError> {
    let caller = caller_of(&request)?;
    let body = body.into_inner();
    let resource = blocking(&app, move |app| {
        administration::create_resource(
            app,
            &caller,
            &body.audience,
            body.name.as_deref(),
            &body.scopes,
            body.access_token_ttl,
            body.signing_alg.as_deref(),
        )
    })
    .await?;
    Ok(HttpResponse::Created().json(resource))
}

#[utoipa::path(operation_id = "delete_resources", tag = "resources", delete, path = "/admin/v1/resources", params(AudienceQuery), security(("bearer" = [])),
    responses((status = 204), (status = 404)))]
pub async fn delete(
    request: HttpRequest,
    query: web::Query<AudienceQuery>,
    app: web::Data<App>,
) -> Result<HttpResponse, AdminError> {
    let caller = caller_of(&request)?;
    let audience = query.into_inner().audience;
    blocking(&app, move |app| {
        administration::delete_resource(app, &caller, &audience)
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(operation_id = "update_resources", tag = "resources", put, path = "/admin/v1/resources", params(AudienceQuery), request_body = ResourceScopes, security(("bearer" = [])),
    responses((status = 204), (status = 400, description = "a scope invalid, or belonging to another resource"), (status = 404)))]
pub async fn update(
    request: HttpRequest,
    query: web::Query<AudienceQuery>,
    body: web::Json<ResourceScopes>,
    app: web::Data<App>,
) -> Result<HttpResponse, AdminError> {
    let caller = caller_of(&request)?;
    let audience = query.into_inner().audience;
    let scopes = body.into_inner().scopes;
    blocking(&app, move |app| {
        administration::set_resource_scopes(app, &caller, &audience, &scopes)
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}
