//! `/admin/v1/roles`.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::{blocking, caller_of, invalid_field, AdminError, Page};
use crate::administration;
use crate::app::App;
use crate::authorization::{Holder, Role};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRole {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub scopes: Vec<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleScopes {
    pub scopes: Vec<String>,
}

/// Exactly one of `user` (a username) or `client` (a client id).
#[derive(Debug, Deserialize, ToSchema, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HolderRef {
    pub user: Option<String>,
    pub client: Option<String>,
}

impl HolderRef {
    fn holder(self) -> Result<Holder, AdminError> {
        match (self.user, self.client) {
            (Some(user), None) => Ok(Holder::User(user)),
            (None, Some(client)) => Ok(Holder::Client(client)),
            _ => Err(invalid_field(
                "holder",
                "give exactly one of `user` or `client`",
            )),
        }
    }
}

#[utoipa::path(operation_id = "list_roles", tag = "roles", get, path = "/admin/v1/roles", params(Page), security(("bearer" = [])),
    responses((status = 200, body = inline(super::Paged<Role>))))]
pub async fn list(
    request: HttpRequest,
    page: web::Query<Page>,
    app: web::Data<App>,
) -> Result<HttpResponse, AdminError> {
    caller_of(&request)?;
    let all = blocking(&app, move |app| Ok(app.authorization().list_roles()?)).await?;
    Ok(HttpResponse::Ok().json(page.apply(all)))
}

#[utoipa::path(operation_id = "create_roles", tag = "roles", post, path = "/admin/v1/roles", request_body = CreateRole, security(("bearer" = [])),
    responses((status = 201, body = Role), (status = 400), (status = 409)))]
pub async fn create(
    request: HttpRequest,
    body: web::Json<CreateRole>,
    app: web::Data<App>,
) -> Result<HttpResponse, AdminError> {
    let caller = caller_of(&request)?;
    let body = body.into_inner();
    let role = blocking(&app, move |app| {
        administration::create_role(app, &caller, &body.name, &body.description, &body.scopes)
    })
    .await?;
    Ok(HttpResponse::Created().json(role))
}

#[utoipa::path(operation_id = "update_roles", tag = "roles", put, path = "/admin/v1/roles/{name}", request_body = RoleScopes, params(("name" = String, Path)), security(("bearer" = [])),
    responses((status = 204), (status = 404)))]
pub async fn update(
    request: HttpRequest,
    name: web::Path<String>,
    body: web::Json<RoleScopes>,
    app: web::Data<App>,
) -> Result<HttpResponse, AdminError> {
    let caller = caller_of(&request)?;
    let (name, scopes) = (name.into_inner(), body.into_inner().scopes);
    blocking(&app, move |app| {
        administration::set_role_scopes(app, &caller, &name, &scopes)
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(operation_id = "delete_roles", tag = "roles", delete, path = "/admin/v1/roles/{name}", params(("name" = String, Path)), security(("bearer" = [])),
    responses((status = 204), (status = 400, description = "built-in role"), (status = 404)))]
pub async fn delete(
    request: HttpRequest,
    name: web::Path<String>,
    app: web::Data<App>,
) -> Result<HttpResponse, AdminError> {
    let caller = caller_of(&request)?;
    let name = name.into_inner();
    blocking(&app, move |app| {
        administration::delete_role(app, &caller, &name)
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn change_holder(
    request: HttpRequest,
    name: String,
    holder: HolderRef,
    app: web::Data<App>,
    grant: bool,
) -> Result<HttpResponse, AdminError> {
    let caller = caller_of(&request)?;
    let holder = holder.holder()?;
    let roles = blocking(&app, move |app| {
        administration::change_role_holder(app, &caller, &name, &holder, grant)
    })
    .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "roles": roles })))
}

#[utoipa::path(operation_id = "grant_roles", tag = "roles", post, path = "/admin/v1/roles/{name}/holders", request_body = HolderRef, params(("name" = String, Path)), security(("bearer" = [])),
    responses((status = 200, description = "the holder's roles now"), (status = 404)))]
pub async fn grant(
    request: HttpRequest,
    name: web::Path<String>,
    body: web::Json<HolderRef>,
    app: web::Data<App>,
) -> Result<HttpResponse, AdminError> {
    change_holder(request, name.into_inner(), body.into_inner(), app, true).await
}

#[utoipa::path(operation_id = "revoke_roles", tag = "roles", delete, path = "/admin/v1/roles/{name}/holders", params(("name" = String, Path), HolderRef), security(("bearer" = [])),
    responses((status = 200, description = "the holder's roles now"), (status = 404)))]
pub async fn revoke(
    request: HttpRequest,
    name: web::Path<String>,
    query: web::Query<HolderRef>,
    app: web::Data<App>,
) -> Result<HttpResponse, AdminError> {
    change_holder(request, name.into_inner(), query.into_inner(), app, false).await
}
