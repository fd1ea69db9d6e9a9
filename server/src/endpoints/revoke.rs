//! `POST /revoke` (RFC 7009).

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use super::form;
use crate::app::App;
use crate::error::OAuthError;
use crate::oauth::revocation::{self, Revoked};

pub async fn revoke(
    request: HttpRequest,
    body: web::Bytes,
    app: web::Data<App>,
) -> Result<HttpResponse, OAuthError> {
    let (params, authorization) = form::parse(&request, &body)?;
    let (client_id, revoked) = revocation::revoke(
        &app,
        authorization,
        &params,
        super::client_address(&request, &app),
    )
    .await?;
    match &revoked {
        Revoked::RefreshFamily { grant_id } => app.audit().record(
            "token_revoked",
            Some(&client_id),
            None,
            serde_json::json!({ "token_type": "refresh_token", "grant_id": grant_id }),
        ),
        Revoked::AccessToken { jti } => app.audit().record(
            "token_revoked",
            Some(&client_id),
            None,
            serde_json::json!({ "token_type": "access_token", "jti": jti }),
        ),
        Revoked::Nothing => {}
    }
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish())
}
