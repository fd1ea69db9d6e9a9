//! Change counters: each process polls them and reloads what moved.

use diesel::prelude::*;

use super::db::AnyConnection;
use super::schema::cluster_state::dsl;
use super::{Store, StoreError};

pub const KEYRING: &str = "keyring";
pub const CLIENTS: &str = "clients";
pub const AUTHORIZATION: &str = "authorization";
/// A lease, not a counter: the time the audit purge last ran.
pub const AUDIT_PURGE: &str = "audit_purge";

impl Store {
    pub fn generations(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let mut conn = self.conn()?;
        Ok(dsl::cluster_state
            .select((dsl::name, dsl::generation))
            .load(&mut conn)?)
    }

    /// Takes the lease `name` (a time in its generation column) when it was last taken at least
    /// `every` seconds before `now`; true for the one process that took it. How periodic work
    /// runs on one instance at a time without a coordinator.
    pub fn take_lease(&self, name: &str, now: i64, every: i64) -> Result<bool, StoreError> {
        let taken = diesel::update(
            dsl::cluster_state
                .filter(dsl::name.eq(name))
                .filter(dsl::generation.le(now - every)),
        )
        .set(dsl::generation.eq(now))
        .execute(&mut self.conn()?)?;
        Ok(taken == 1)
    }

    pub fn generation(&self, name: &str) -> Result<i64, StoreError> {
        let mut conn = self.conn()?;
        Ok(dsl::cluster_state
            .filter(dsl::name.eq(name))
            .select(dsl::generation)
            .first(&mut conn)?)
    }
}

/// Bumps a counter inside the caller's transaction.
pub(crate) fn bump(conn: &mut AnyConnection, name: &str) -> Result<(), StoreError> {
    diesel::update(dsl::cluster_state.filter(dsl::name.eq(name)))
        .set(dsl::generation.eq(dsl::generation + 1))
        .execute(conn)?;
    Ok(())
}

/// Moves a counter from `seen` to `seen + 1`; false when another process moved it first.
/// This compare-and-set is how exactly one process wins a rotation.
pub(crate) fn advance_from(
    conn: &mut AnyConnection,
    name: &str,
    seen: i64,
) -> Result<bool, StoreError> {
    let updated = diesel::update(
        dsl::cluster_state
            .filter(dsl::name.eq(name))
            .filter(dsl::generation.eq(seen)),
    )
    .set(dsl::generation.eq(seen + 1))
    .execute(conn)?;
    Ok(updated == 1)
}
