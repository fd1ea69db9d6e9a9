//! Pushed authorization requests (RFC 9126 §2), kept until `/authorize` takes them once.

use diesel::prelude::*;

use super::schema::pushed_requests as pushed;
use super::{Store, StoreError};

impl Store {
    pub fn insert_pushed_request(
        &self,
        request_uri_hash: &str,
        client_id: &str,
        request: &str,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        diesel::insert_into(pushed::table)
            .values((
                pushed::request_uri_hash.eq(request_uri_hash),
                pushed::client_id.eq(client_id),
                pushed::request.eq(request),
                pushed::expires_at.eq(expires_at),
            ))
            .execute(&mut self.conn()?)?;
        Ok(())
    }

    /// Takes a pushed request once (RFC 9126 §4): only for the client that pushed it, and
    /// before it expires. One conditional UPDATE: of two concurrent uses, one gets it.
    pub fn take_pushed_request(
        &self,
        request_uri_hash: &str,
        client_id: &str,
        now: i64,
    ) -> Result<Option<String>, StoreError> {
        let mut conn = self.conn()?;
        let taken = diesel::update(
            pushed::table
                .filter(pushed::request_uri_hash.eq(request_uri_hash))
                .filter(pushed::client_id.eq(client_id))
                .filter(pushed::used_at.is_null())
                .filter(pushed::expires_at.gt(now)),
        )
        .set(pushed::used_at.eq(now))
        .execute(&mut conn)?;
        if taken != 1 {
            return Ok(None);
        }
        Ok(pushed::table
            .filter(pushed::request_uri_hash.eq(request_uri_hash))
            .select(pushed::request)
            .first(&mut conn)
            .optional()?)
    }
}
