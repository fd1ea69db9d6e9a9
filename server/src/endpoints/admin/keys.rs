//! `/admin/v1/keys`.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use super::{blocking, caller_of, AdminError};
use crate::administration;
use crate::app::App;

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    pub kid: String,
    pub alg: String,
    /// next, active or retired.
    pub state: String,
    pub created_at: i64,
    pub activated_at: Option<i64>,
    pub retired_at: Option<i64>,
    pub remove_after: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RotationOutcome {
    pub rotated: Vec<String>,
    pub waiting: Vec<String>,
}

#[utoipa::path(operation_id = "list_keys", tag = "keys", get, path = "/admin/v1/keys", security(("bearer" = [])), responses((status = 200, body = Vec<KeyView>)))]
pub async fn list(request: HttpRequest, app: web::Data<App>) -> Result<HttpResponse, AdminError> {
    caller_of(&request)?;
    let keys: Vec<KeyView> = app
        .keyring()
        .current()
        .records
        .iter()
        .map(|k| KeyView {
            kid: k.kid.clone(),
            alg: k.alg.clone(),
            state: k.state.clone(),
            created_at: k.created_at,
            activated_at: k.activated_at,
            retired_at: k.retired_at,
            remove_after: k.remove_after,
        })
        .collect();
    Ok(HttpResponse::Ok().json(keys))
}

/// Rotates now if the next keys have been published long enough; 409 with the reason if not.
#[utoipa::path(operation_id = "rotate_keys", tag = "keys", post, path = "/admin/v1/keys/rotate", security(("bearer" = [])),
    responses((status = 200, body = RotationOutcome), (status = 409, description = "the next key is too new")))]
pub async fn rotate(request: HttpRequest, app: web::Data<App>) -> Result<HttpResponse, AdminError> {
    let caller = caller_of(&request)?;
    let outcome = blocking(&app, move |app| administration::rotate_keys(app, &caller)).await?;
    Ok(HttpResponse::Ok().json(RotationOutcome {
        rotated: outcome.rotated,
        waiting: outcome.waiting,
    }))
}
