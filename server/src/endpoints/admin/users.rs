//! `/admin/v1/users`.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use utoipa::ToSchema;

use super::{blocking, caller_of, AdminError, Page};
use crate::administration;
use crate::app::App;
use crate::users::{NewUser, User};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    pub username: String,
    pub email: String,
    pub name: String,
    #[serde(default)]
    pub roles: Vec<String>,
    /// At least 8 characters.
    pub password: String,
}

#[utoipa::path(operation_id = "list_users", tag = "users", get, path = "/admin/v1/users", params(Page), security(("bearer" = [])),
    responses((status = 200, body = inline(super::Paged<User>))))]
pub async fn list(
    request: HttpRequest,
    page: web::Query<Page>,
    app: web::Data<App>,
) -> Result<HttpResponse, AdminError> {
    caller_of(&request)?;
    let all = blocking(&app, move |app| Ok(app.users().list()?)).await?;
    Ok(HttpResponse::Ok().json(page.apply(all)))
}

#[utoipa::path(operation_id = "create_users", tag = "users", post, path = "/admin/v1/users", request_body = CreateUser, security(("bearer" = [])),
    responses((status = 201, body = User), (status = 400), (status = 409)))]
pub async fn create(
    request: HttpRequest,
    body: web::Json<CreateUser>,
    app: web::Data<App>,
) -> Result<HttpResponse, AdminError> {
    let caller = caller_of(&request)?;
    let body = body.into_inner();
    let new = NewUser {
        username: body.username,
        email: body.email,
        name: body.name,
        roles: body.roles,
        password: body.password,
    };
    let user = blocking(&app, move |app| {
        administration::create_user(app, &caller, &new)
    })
    .await?;
    Ok(HttpResponse::Created().json(user))
}

#[utoipa::path(operation_id = "get_users", tag = "users", get, path = "/admin/v1/users/{username}", params(("username" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = User), (status = 404)))]
pub async fn get(
    request: HttpRequest,
    username: web::Path<String>,
    app: web::Data<App>,
) -> Result<HttpResponse, AdminError> {
    caller_of(&request)?;
    let username = username.into_inner();
    let user = blocking(&app, move |app| {
        app.store()
            .find_user_by_username(&username)?
            .ok_or_else(|| AdminError::NotFound(format!("no user {username}")))
    })
    .await?;
    Ok(HttpResponse::Ok().json(user))
}

#[utoipa::path(operation_id = "delete_users", tag = "users", delete, path = "/admin/v1/users/{username}", params(("username" = String, Path)), security(("bearer" = [])),
    responses((status = 204), (status = 404)))]
pub async fn delete(
    request: HttpRequest,
    username: web::Path<String>,
    app: web::Data<App>,
) -> Result<HttpResponse, AdminError> {
    let caller = caller_of(&request)?;
    let username = username.into_inner();
    blocking(&app, move |app| {
        administration::delete_user(app, &caller, &username)
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn set_disabled(
    request: HttpRequest,
    username: String,
    app: web::Data<App>,
    disabled: bool,
) -> Result<HttpResponse, AdminError> {
    let caller = caller_of(&request)?;
    blocking(&app, move |app| {
        administration::set_user_disabled(app, &caller, &username, disabled)
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(operation_id = "disable_users", tag = "users", post, path = "/admin/v1/users/{username}/disable", params(("username" = String, Path)), security(("bearer" = [])),
    responses((status = 204), (status = 404)))]
pub async fn disable(
    request: HttpRequest,
    username: web::Path<String>,
    app: web::Data<App>,
) -> Result<HttpResponse, AdminError> {
    set_disabled(request, username.into_inner(), app, true).await
}

#[utoipa::path(operation_id = "enable_users", tag = "users", post, path = "/admin/v1/users/{username}/enable", params(("username" = String, Path)), security(("bearer" = [])),
    responses((status = 204), (status = 404)))]
pub async fn enable(
    request: HttpRequest,
    username: web::Path<String>,
    app: web::Data<App>,
) -> Result<HttpResponse, AdminError> {
    set_disabled(request, username.into_inner(), app, false).await
}

#[utoipa::path(operation_id = "unlock_users", tag = "users", post, path = "/admin/v1/users/{username}/unlock", params(("username" = String, Path)), security(("bearer" = [])),
    responses((status = 204), (status = 404)))]
/// Forgets every sign-in failure counted for the user, on every instance.
pub async fn unlock(
    request: HttpRequest,
    username: web::Path<String>,
    app: web::Data<App>,
) -> Result<HttpResponse, AdminError> {
    let caller = caller_of(&request)?;
    let username = username.into_inner();
    blocking(&app, move |app| {
        administration::unlock_user(app, &caller, &username)
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}
