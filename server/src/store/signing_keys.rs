//! The `signing_keys` table. The lifecycle policy lives in `jose::keyring`; this file only
//! reads the rows and applies a planned change atomically.

use diesel::prelude::*;

use super::cluster_state::{self, KEYRING};
use super::schema::signing_keys;
use super::{Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Insertable, Selectable)]
#[diesel(table_name = signing_keys)]
pub struct StoredKey {
    pub kid: String,
    pub alg: String,
    pub state: String,
    pub public_jwk: String,
    pub private_key_encrypted: String,
    pub created_at: i64,
    pub activated_at: Option<i64>,
    pub retired_at: Option<i64>,
    pub remove_after: Option<i64>,
}

/// A new state for an existing key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTransition {
    pub kid: String,
    pub state: String,
    pub activated_at: Option<i64>,
    pub retired_at: Option<i64>,
    pub remove_after: Option<i64>,
}

/// Everything one rotation does, applied in one transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyringChange {
    pub insert: Vec<StoredKey>,
    pub transition: Vec<KeyTransition>,
    pub delete: Vec<String>,
}

impl KeyringChange {
    pub fn is_empty(&self) -> bool {
        self.insert.is_empty() && self.transition.is_empty() && self.delete.is_empty()
    }
}

impl Store {
    /// The keyring generation and its keys, read together.
    pub fn load_keyring(&self) -> Result<(i64, Vec<StoredKey>), StoreError> {
        let mut conn = self.conn()?;
        conn.transaction(|conn| {
            let generation = crate::store::schema::cluster_state::table
                .filter(crate::store::schema::cluster_state::name.eq(KEYRING))
                .select(crate::store::schema::cluster_state::generation)
                .first(conn)?;
            let keys = signing_keys::table
                .order((signing_keys::alg, signing_keys::created_at))
                .select(StoredKey::as_select())
                .load(conn)?;
            Ok((generation, keys))
        })
    }

    /// Applies `change` only if the keyring is still at generation `seen`; false when another
    /// process changed it first (then nothing is written).
    pub fn apply_keyring_change(
        &self,
        seen: i64,
        change: &KeyringChange,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn()?;
        conn.transaction(|conn| {
            if !cluster_state::advance_from(conn, KEYRING, seen)? {
                return Ok(false);
            }
            for key in &change.insert {
                diesel::insert_into(signing_keys::table)
                    .values(key)
                    .execute(conn)?;
            }
            for t in &change.transition {
                diesel::update(signing_keys::table.filter(signing_keys::kid.eq(&t.kid)))
                    .set((
                        signing_keys::state.eq(&t.state),
                        signing_keys::activated_at.eq(t.activated_at),
                        signing_keys::retired_at.eq(t.retired_at),
                        signing_keys::remove_after.eq(t.remove_after),
                    ))
                    .execute(conn)?;
            }
            if !change.delete.is_empty() {
                diesel::delete(
                    signing_keys::table.filter(signing_keys::kid.eq_any(&change.delete)),
                )
                .execute(conn)?;
            }
            Ok(true)
        })
    }
}
