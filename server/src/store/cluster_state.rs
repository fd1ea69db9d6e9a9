//! Change counters: each process polls them and reloads what moved.

use diesel::prelude::*;

use super::db::AnyConnection;
use super::schema::cluster_state::dsl;
use super::{Store, StoreError};

pub const KEYRING: &str = "keyring";
pub const CLIENTS: &str = "clients";
pub const AUTHORIZATION: &str = "authorization";

impl Store {
    pub fn generations(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let mut conn = self.conn()?;
        Ok(dsl::cluster_state
            .select((dsl::name, dsl::generation))
            .load(&mut conn)?)
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
