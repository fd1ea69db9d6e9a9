//! `/admin/v1/registration-tokens`: initial access tokens for dynamic client registration
//! (RFC 7591 §3), the same service as `portcullis registration token`.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use utoipa::ToSchema;

use super::{blocking, caller_of, AdminError, Page};
use crate::app::App;
use crate::clients::initial_access_tokens::{CreatedInitialToken, NewInitialToken};
use crate::store::registration::InitialAccessToken;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRegistrationToken {
    /// Who it is for, to recognise it later.
    #[serde(default)]
    pub description: String,
    /// Seconds it can be used for; omitted: no expiry.
    pub expires_in: Option<u64>,
    /// Registrations it allows; omitted: no limit.
    pub max_uses: Option<u64>,
}

#[utoipa::path(operation_id = "list_registration_tokens", tag = "registration", get, path = "/admin/v1/registration-tokens", params(Page), security(("bearer" = [])),
    responses((status = 200, body = inline(super::Paged<InitialAccessToken>))))]
pub async fn list(
    request: HttpRequest,
    page: web::Query<Page>,
    app: web::Data<App>,
) -> Result<HttpResponse, AdminError> {
    caller_of(&request)?;
    let all = blocking(&app, move |app| Ok(app.clients().list_initial_tokens()?)).await?;
    Ok(HttpResponse::Ok().json(page.apply(all)))
}

/// The token is in the answer once; only its hash is kept.
#[utoipa::path(operation_id = "create_registration_tokens", tag = "registration", post, path = "/admin/v1/registration-tokens", request_body = CreateRegistrationToken, security(("bearer" = [])),
    responses((status = 201, body = CreatedInitialToken), (status = 400, description = "validation errors by field")))]
pub async fn create(
    request: HttpRequest,
    body: web::Json<CreateRegistrationToken>,
    app: web::Data<App>,
) -> Result<HttpResponse, AdminError> {
    let caller = caller_of(&request)?;
    let body = body.into_inner();
    let new = NewInitialToken {
        description: body.description,
        expires_in: body.expires_in,
        max_uses: body.max_uses,
    };
    let created = blocking(&app, move |app| {
        Ok(app.clients().create_initial_token(&new)?)
    })
    .await?;
    caller.audit(
        &app,
        "initial_access_token_created",
        serde_json::json!({
            "id": created.record.id,
            "expires_at": created.record.expires_at,
            "max_uses": created.record.max_uses,
        }),
    );
    Ok(HttpResponse::Created().json(created))
}

#[utoipa::path(operation_id = "delete_registration_tokens", tag = "registration", delete, path = "/admin/v1/registration-tokens/{id}", params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 204), (status = 404)))]
pub async fn delete(
    request: HttpRequest,
    id: web::Path<String>,
    app: web::Data<App>,
) -> Result<HttpResponse, AdminError> {
    let caller = caller_of(&request)?;
    let id = id.into_inner();
    let target = id.clone();
    blocking(&app, move |app| {
        Ok(app.clients().delete_initial_token(&target)?)
    })
    .await?;
    caller.audit(
        &app,
        "initial_access_token_deleted",
        serde_json::json!({ "id": id }),
    );
    Ok(HttpResponse::NoContent().finish())
}
