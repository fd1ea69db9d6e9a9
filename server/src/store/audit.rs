//! The `audit_events` table.

use diesel::prelude::*;
use serde::Serialize;

use super::db::AnyConnection;
use super::schema::audit_events as events;
use super::{Store, StoreError};

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AuditEvent {
    pub id: i64,
    pub at: i64,
    pub kind: String,
    pub client_id: Option<String>,
    pub subject: Option<String>,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

#[derive(Insertable)]
#[diesel(table_name = events)]
#[diesel(treat_none_as_default_value = false)]
pub struct NewAuditEvent {
    pub at: i64,
    pub kind: String,
    pub client_id: Option<String>,
    pub subject: Option<String>,
    pub details: String,
}

/// id, at, kind, client_id, subject, details.
type AuditRow = (i64, i64, String, Option<String>, Option<String>, String);

/// Filters for reading the log; every field narrows.
#[derive(Debug, Default, Clone)]
pub struct AuditQuery {
    pub kind: Option<String>,
    pub client_id: Option<String>,
    pub subject: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    /// Only events with an id below this (the next page when listing newest first).
    pub before_id: Option<i64>,
    pub limit: i64,
}

impl Store {
    /// Inserts a batch in one statement.
    pub fn insert_audit_events(&self, batch: &[NewAuditEvent]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn()?;
        // Multi-row INSERTs (diesel's MultiConnection has no batch insert, so per backend);
        // chunks keep each under SQLite's bound-parameter limit.
        for chunk in batch.chunks(500) {
            match &mut *conn {
                AnyConnection::Sqlite(lite) => {
                    diesel::insert_into(events::table)
                        .values(chunk)
                        .execute(lite)?;
                }
                AnyConnection::Postgresql(pg) => {
                    diesel::insert_into(events::table)
                        .values(chunk)
                        .execute(pg)?;
                }
            }
        }
        Ok(())
    }

    /// Newest first.
    pub fn query_audit_events(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>, StoreError> {
        let mut select = events::table.into_boxed();
        if let Some(kind) = &query.kind {
            select = select.filter(events::kind.eq(kind));
        }
        if let Some(client_id) = &query.client_id {
            select = select.filter(events::client_id.eq(client_id));
        }
        if let Some(subject) = &query.subject {
            select = select.filter(events::subject.eq(subject));
        }
        if let Some(since) = query.since {
            select = select.filter(events::at.ge(since));
        }
        if let Some(until) = query.until {
            select = select.filter(events::at.lt(until));
        }
        if let Some(before) = query.before_id {
            select = select.filter(events::id.lt(before));
        }
        let rows: Vec<AuditRow> = select
            .order(events::id.desc())
            .limit(query.limit.clamp(1, 1000))
            .select((
                events::id,
                events::at,
                events::kind,
                events::client_id,
                events::subject,
                events::details,
            ))
            .load(&mut self.conn()?)?;
        Ok(rows
            .into_iter()
            .map(|(id, at, kind, client_id, subject, details)| AuditEvent {
                id,
                at,
                kind,
                client_id,
                subject,
                details: serde_json::from_str(&details).unwrap_or(serde_json::Value::Null),
            })
            .collect())
    }
}
