//! `/admin/v1/audit-events`: the audit log, newest first, with filters.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{blocking, caller_of, AdminError};
use crate::app::App;
use crate::store::audit::{AuditEvent, AuditQuery};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditFilter {
    /// e.g. token_issued, login_failed, admin_change, key_rotated.
    pub kind: Option<String>,
    pub client_id: Option<String>,
    pub subject: Option<String>,
    /// Unix seconds, inclusive.
    pub since: Option<i64>,
    /// Unix seconds, exclusive.
    pub until: Option<i64>,
    /// The `next_before` of the previous page.
    pub before: Option<i64>,
    /// At most 1000; default 100.
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditEvent>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    pub next_before: Option<i64>,
}

#[utoipa::path(operation_id = "list_audit", tag = "audit", get, path = "/admin/v1/audit-events", params(AuditFilter), security(("bearer" = [])),
    responses((status = 200, body = AuditPage)))]
pub async fn list(
    request: HttpRequest,
    filter: web::Query<AuditFilter>,
    app: web::Data<App>,
) -> Result<HttpResponse, AdminError> {
    caller_of(&request)?;
    let filter = filter.into_inner();
    let limit = filter.limit.unwrap_or(100).clamp(1, 1000);
    let query = AuditQuery {
        kind: filter.kind,
        client_id: filter.client_id,
        subject: filter.subject,
        since: filter.since,
        until: filter.until,
        before_id: filter.before,
        limit,
    };
    let items = blocking(&app, move |app| {
        Ok(app.store().query_audit_events(&query)?)
    })
    .await?;
    let next_before = if items.len() as i64 == limit {
        items.last().map(|e| e.id)
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(AuditPage { items, next_before }))
}
