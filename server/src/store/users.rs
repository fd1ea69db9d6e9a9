//! The `users` and `consents` tables.

use diesel::prelude::*;

use super::schema::{consents, users};
use super::{conflict_or_query, decode_list, encode_list, Store, StoreError};
use crate::users::User;

#[derive(Queryable, Insertable, Selectable, AsChangeset)]
#[diesel(table_name = users)]
struct UserRow {
    id: String,
    username: String,
    email: String,
    email_verified: bool,
    name: String,
    password_hash: String,
    roles: String,
    disabled: bool,
    created_at: i64,
    updated_at: i64,
    sign_in_generation: i64,
}

impl UserRow {
    fn into_user(self) -> Result<User, StoreError> {
        Ok(User {
            roles: decode_list("roles", &self.roles)?,
            id: self.id,
            username: self.username,
            email: self.email,
            email_verified: self.email_verified,
            name: self.name,
            password_hash: self.password_hash,
            disabled: self.disabled,
            created_at: self.created_at,
            updated_at: self.updated_at,
            sign_in_generation: self.sign_in_generation,
        })
    }
}

impl Store {
    pub fn insert_user(&self, user: &User) -> Result<(), StoreError> {
        let row = UserRow {
            id: user.id.clone(),
            username: user.username.clone(),
            email: user.email.clone(),
            email_verified: user.email_verified,
            name: user.name.clone(),
            password_hash: user.password_hash.clone(),
            roles: encode_list(&user.roles),
            disabled: user.disabled,
            created_at: user.created_at,
            updated_at: user.updated_at,
            sign_in_generation: user.sign_in_generation,
        };
        diesel::insert_into(users::table)
            .values(&row)
            .execute(&mut self.conn()?)
            .map_err(|e| conflict_or_query(e, format!("user {}", user.username)))?;
        Ok(())
    }

    pub fn find_user(&self, id: &str) -> Result<Option<User>, StoreError> {
        users::table
            .filter(users::id.eq(id))
            .select(UserRow::as_select())
            .first(&mut self.conn()?)
            .optional()?
            .map(UserRow::into_user)
            .transpose()
    }

    pub fn find_user_by_username(&self, username: &str) -> Result<Option<User>, StoreError> {
        users::table
            .filter(users::username.eq(username))
            .select(UserRow::as_select())
            .first(&mut self.conn()?)
            .optional()?
            .map(UserRow::into_user)
            .transpose()
    }

    pub fn list_users(&self) -> Result<Vec<User>, StoreError> {
        users::table
            .order(users::username)
            .select(UserRow::as_select())
            .load(&mut self.conn()?)?
            .into_iter()
            .map(UserRow::into_user)
            .collect()
    }

    /// Deletes a user with their consents and refresh tokens; true when one existed.
    pub fn delete_user(&self, username: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn()?;
        conn.transaction(|conn| {
            let id: Option<String> = users::table
                .filter(users::username.eq(username))
                .select(users::id)
                .first(conn)
                .optional()?;
            let Some(id) = id else { return Ok(false) };
            diesel::delete(consents::table.filter(consents::user_id.eq(&id))).execute(conn)?;
            diesel::delete(
                super::schema::refresh_tokens::table
                    .filter(super::schema::refresh_tokens::user_id.eq(&id)),
            )
            .execute(conn)?;
            diesel::delete(users::table.filter(users::id.eq(&id))).execute(conn)?;
            Ok(true)
        })
    }

    pub fn set_user_password(
        &self,
        username: &str,
        hash: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let updated = diesel::update(users::table.filter(users::username.eq(username)))
            .set((
                users::password_hash.eq(hash),
                users::updated_at.eq(now),
                users::sign_in_generation.eq(users::sign_in_generation + 1),
            ))
            .execute(&mut self.conn()?)?;
        Ok(updated > 0)
    }

    /// Forgets the user's sign-in failures (their counters are keyed by this generation).
    pub fn reset_sign_in_failures(&self, username: &str, now: i64) -> Result<bool, StoreError> {
        let updated = diesel::update(users::table.filter(users::username.eq(username)))
            .set((
                users::updated_at.eq(now),
                users::sign_in_generation.eq(users::sign_in_generation + 1),
            ))
            .execute(&mut self.conn()?)?;
        Ok(updated > 0)
    }

    pub fn set_user_disabled(
        &self,
        username: &str,
        disabled: bool,
        now: i64,
    ) -> Result<bool, StoreError> {
        let updated = diesel::update(users::table.filter(users::username.eq(username)))
            .set((users::disabled.eq(disabled), users::updated_at.eq(now)))
            .execute(&mut self.conn()?)?;
        Ok(updated > 0)
    }

    /// The scopes this user has consented to for this client.
    pub fn consented_scopes(
        &self,
        user_id: &str,
        client_id: &str,
    ) -> Result<Vec<String>, StoreError> {
        let stored: Option<String> = consents::table
            .filter(consents::user_id.eq(user_id))
            .filter(consents::client_id.eq(client_id))
            .select(consents::scopes)
            .first(&mut self.conn()?)
            .optional()?;
        stored.map_or(Ok(Vec::new()), |s| decode_list("consents.scopes", &s))
    }

    /// Remembers consent to `scopes` (added to what was granted before).
    pub fn save_consent(
        &self,
        user_id: &str,
        client_id: &str,
        scopes: &[String],
        now: i64,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        conn.transaction(|conn| {
            let previous: Option<String> = consents::table
                .filter(consents::user_id.eq(user_id))
                .filter(consents::client_id.eq(client_id))
                .select(consents::scopes)
                .first(conn)
                .optional()?;
            let mut all = previous
                .map(|s| decode_list("consents.scopes", &s))
                .transpose()?
                .unwrap_or_default();
            for s in scopes {
                if !all.contains(s) {
                    all.push(s.clone());
                }
            }
            diesel::delete(
                consents::table
                    .filter(consents::user_id.eq(user_id))
                    .filter(consents::client_id.eq(client_id)),
            )
            .execute(conn)?;
            diesel::insert_into(consents::table)
                .values((
                    consents::user_id.eq(user_id),
                    consents::client_id.eq(client_id),
                    consents::scopes.eq(encode_list(&all)),
                    consents::granted_at.eq(now),
                ))
                .execute(conn)?;
            Ok(())
        })
    }

    /// Every client the user consented to, with the scopes and when (newest first).
    pub fn list_consents(&self, user_id: &str) -> Result<Vec<Consent>, StoreError> {
        let rows: Vec<(String, String, i64)> = consents::table
            .filter(consents::user_id.eq(user_id))
            .order((consents::granted_at.desc(), consents::client_id))
            .select((consents::client_id, consents::scopes, consents::granted_at))
            .load(&mut self.conn()?)?;
        rows.into_iter()
            .map(|(client_id, scopes, granted_at)| {
                Ok(Consent {
                    scopes: decode_list("consents.scopes", &scopes)?,
                    client_id,
                    granted_at,
                })
            })
            .collect()
    }

    /// Forgets the user's consent for the client: the next authorization asks again. True
    /// when there was one.
    pub fn delete_consent(&self, user_id: &str, client_id: &str) -> Result<bool, StoreError> {
        let deleted = diesel::delete(
            consents::table
                .filter(consents::user_id.eq(user_id))
                .filter(consents::client_id.eq(client_id)),
        )
        .execute(&mut self.conn()?)?;
        Ok(deleted > 0)
    }
}

/// A person's remembered consent for one client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consent {
    pub client_id: String,
    pub scopes: Vec<String>,
    pub granted_at: i64,
}
