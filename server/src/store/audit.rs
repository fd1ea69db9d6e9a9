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

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = events)]
#[diesel(treat_none_as_default_value = false)]
pub struct NewAuditEvent {
    pub at: i64,
    pub kind: String,
    pub client_id: Option<String>,
    pub subject: Option<String>,
    pub details: String,
    /// Unique per event (`Audit` makes them): a batch inserted twice adds its rows once.
    pub event_id: Option<String>,
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
        // chunks keep each under SQLite's bound-parameter limit. One transaction, so a batch
        // that is retried after a failure is never half written; and rows already there (the
        // failure came after the commit) are skipped by their event id.
        match &mut *conn {
            AnyConnection::Sqlite(lite) => lite.transaction(|lite| {
                for chunk in batch.chunks(500) {
                    diesel::insert_into(events::table)
                        .values(chunk)
                        .on_conflict_do_nothing()
                        .execute(lite)?;
                }
                Ok::<_, diesel::result::Error>(())
            })?,
            AnyConnection::Postgresql(pg) => pg.transaction(|pg| {
                for chunk in batch.chunks(500) {
                    diesel::insert_into(events::table)
                        .values(chunk)
                        .on_conflict_do_nothing()
                        .execute(pg)?;
                }
                Ok::<_, diesel::result::Error>(())
            })?,
        }
        Ok(())
    }

    /// Deletes events recorded before `before`, a bounded batch per statement so no single
    /// transaction grows with the table; returns how many were deleted.
    pub fn purge_audit_events(&self, before: i64) -> Result<usize, StoreError> {
        let mut deleted = 0;
        loop {
            let mut conn = self.conn()?;
            let ids: Vec<i64> = events::table
                .filter(events::at.lt(before))
                .order(events::id)
                .select(events::id)
                .limit(5000)
                .load(&mut conn)?;
            if ids.is_empty() {
                return Ok(deleted);
            }
            deleted +=
                diesel::delete(events::table.filter(events::id.eq_any(&ids))).execute(&mut conn)?;
        }
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
