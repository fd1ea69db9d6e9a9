//! The `clients` table.

use diesel::prelude::*;

use super::cluster_state::{self, CLIENTS};
use super::schema::clients;
use super::{decode_list, encode_list, Store, StoreError};
use crate::clients::{AuthMethod, Client, ClientKind, GrantType};
use crate::config::RegistrationPolicy;

#[derive(Queryable, Insertable, Selectable)]
#[diesel(table_name = clients)]
struct ClientRow {
    id: String,
    name: String,
    secret_hash: Option<String>,
    token_endpoint_auth_method: String,
    grant_types: String,
    scopes: String,
    audiences: String,
    redirect_uris: String,
    post_logout_redirect_uris: String,
    created_at: i64,
    updated_at: i64,
    roles: String,
    jwks: Option<String>,
    id_token_signed_response_alg: Option<String>,
    introspection_audiences: String,
    require_pushed_authorization_requests: bool,
    dpop_bound_access_tokens: bool,
    registered_with: Option<String>,
    registration_token_hash: Option<String>,
    registration_metadata: Option<String>,
    last_used_at: Option<i64>,
}

impl ClientRow {
    fn from_client(client: &Client) -> ClientRow {
        let grant_types: Vec<String> = client
            .grant_types
            .iter()
            .map(|g| g.as_str().to_string())
            .collect();
        ClientRow {
            id: client.id.clone(),
            name: client.name.clone(),
            secret_hash: client.secret_hash.clone(),
            token_endpoint_auth_method: client.auth_method.as_str().to_string(),
            grant_types: encode_list(&grant_types),
            scopes: encode_list(&client.scopes),
            audiences: encode_list(&client.audiences),
            redirect_uris: encode_list(&client.redirect_uris),
            post_logout_redirect_uris: encode_list(&client.post_logout_redirect_uris),
            created_at: client.created_at,
            updated_at: client.updated_at,
            roles: encode_list(&client.roles),
            jwks: client.jwks.clone(),
            id_token_signed_response_alg: client
                .id_token_signed_response_alg
                .map(|a| a.as_str().to_string()),
            introspection_audiences: encode_list(&client.introspection_audiences),
            require_pushed_authorization_requests: client.require_pushed_authorization_requests,
            dpop_bound_access_tokens: client.dpop_bound_access_tokens,
            registered_with: client.registered_with.map(|p| p.as_str().to_string()),
            registration_token_hash: client.registration_token_hash.clone(),
            registration_metadata: client.registration_metadata.clone(),
            last_used_at: client.last_used_at,
        }
    }

    fn into_client(self) -> Result<Client, StoreError> {
        let auth_method = AuthMethod::parse(&self.token_endpoint_auth_method).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "client {}: auth method {}",
                self.id, self.token_endpoint_auth_method
            ))
        })?;
        let grant_types = decode_list("grant_types", &self.grant_types)?
            .iter()
            .map(|g| {
                GrantType::parse(g)
                    .ok_or_else(|| StoreError::Corrupt(format!("client {}: grant {g}", self.id)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let registered_with = match self.registered_with.as_deref() {
            None => None,
            Some(text) => Some(RegistrationPolicy::parse(text).ok_or_else(|| {
                StoreError::Corrupt(format!("client {}: registered with {text}", self.id))
            })?),
        };
        Ok(Client {
            kind: if registered_with.is_some() {
                ClientKind::Dynamic
            } else {
                ClientKind::Static
            },
            registered_with,
            registration_token_hash: self.registration_token_hash,
            registration_metadata: self.registration_metadata,
            last_used_at: self.last_used_at,
            scopes: decode_list("scopes", &self.scopes)?,
            audiences: decode_list("audiences", &self.audiences)?,
            redirect_uris: decode_list("redirect_uris", &self.redirect_uris)?,
            post_logout_redirect_uris: decode_list(
                "post_logout_redirect_uris",
                &self.post_logout_redirect_uris,
            )?,
            roles: decode_list("roles", &self.roles)?,
            introspection_audiences: decode_list(
                "introspection_audiences",
                &self.introspection_audiences,
            )?,
            require_pushed_authorization_requests: self.require_pushed_authorization_requests,
            dpop_bound_access_tokens: self.dpop_bound_access_tokens,
            jwks: self.jwks,
            id_token_signed_response_alg: match self.id_token_signed_response_alg.as_deref() {
                None => None,
                Some(a) => Some(crate::jose::Algorithm::parse(a).ok_or_else(|| {
                    StoreError::Corrupt(format!("client {}: id token alg {a}", self.id))
                })?),
            },
            id: self.id,
            name: self.name,
            secret_hash: self.secret_hash,
            auth_method,
            grant_types,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

impl Store {
    /// Inserts a new client; `Conflict` when the id is taken.
    pub fn insert_client(&self, client: &Client) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let row = ClientRow::from_client(client);
        conn.transaction(|conn| {
            // Write first: a SQLite transaction that reads before writing can fail to upgrade.
            diesel::insert_into(clients::table)
                .values(&row)
                .execute(conn)
                .map_err(|e| super::conflict_or_query(e, format!("client {}", row.id)))?;
            cluster_state::bump(conn, CLIENTS)
        })
    }

    pub fn find_client(&self, id: &str) -> Result<Option<Client>, StoreError> {
        let mut conn = self.conn()?;
        clients::table
            .filter(clients::id.eq(id))
            .select(ClientRow::as_select())
            .first(&mut conn)
            .optional()?
            .map(ClientRow::into_client)
            .transpose()
    }

    pub fn list_clients(&self) -> Result<Vec<Client>, StoreError> {
        let mut conn = self.conn()?;
        clients::table
            .order(clients::id)
            .select(ClientRow::as_select())
            .load(&mut conn)?
            .into_iter()
            .map(ClientRow::into_client)
            .collect()
    }

    /// True when a client was deleted.
    pub fn delete_client(&self, id: &str, now: i64) -> Result<bool, StoreError> {
        let mut conn = self.conn()?;
        conn.transaction(|conn| {
            use super::schema::{
                authorization_codes, consents, device_authorizations, grants, pushed_requests,
                refresh_tokens,
            };
            // Its grants are revoked first, taking their rows as every issuance does: a
            // refresh committing at this moment is either deleted below or refused after.
            diesel::update(
                grants::table
                    .filter(grants::client_id.eq(id))
                    .filter(grants::revoked_at.is_null()),
            )
            .set((
                grants::revoked_at.eq(now),
                grants::version.eq(grants::version + 1),
            ))
            .execute(conn)?;
            let deleted =
                diesel::delete(clients::table.filter(clients::id.eq(id))).execute(conn)?;
            // What was granted to the client goes with it (a new client with the same id
            // starts from nothing).
            diesel::delete(consents::table.filter(consents::client_id.eq(id))).execute(conn)?;
            diesel::delete(
                authorization_codes::table.filter(authorization_codes::client_id.eq(id)),
            )
            .execute(conn)?;
            diesel::delete(refresh_tokens::table.filter(refresh_tokens::client_id.eq(id)))
                .execute(conn)?;
            // Requests still waiting (a device code, a pushed request) die with it too.
            diesel::delete(
                device_authorizations::table.filter(device_authorizations::client_id.eq(id)),
            )
            .execute(conn)?;
            diesel::delete(pushed_requests::table.filter(pushed_requests::client_id.eq(id)))
                .execute(conn)?;
            if deleted > 0 {
                cluster_state::bump(conn, CLIENTS)?;
            }
            Ok(deleted > 0)
        })
    }
}

impl Store {
    /// Inserts a client that registered itself (RFC 7591). With `initial_token_hash`, one
    /// use of that initial access token is spent in the same transaction; false (nothing
    /// written) when it is no longer usable.
    pub fn insert_dynamic_client(
        &self,
        client: &Client,
        initial_token_hash: Option<&str>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn()?;
        let row = ClientRow::from_client(client);
        conn.transaction(|conn| {
            if let Some(hash) = initial_token_hash {
                if !super::registration::spend_initial_token(conn, hash, now)? {
                    return Ok(false);
                }
            }
            diesel::insert_into(clients::table)
                .values(&row)
                .execute(conn)
                .map_err(|e| super::conflict_or_query(e, format!("client {}", row.id)))?;
            cluster_state::bump(conn, CLIENTS)?;
            Ok(true)
        })
    }

    /// Replaces a dynamic client's metadata (RFC 7592 §2.2); false when there is none.
    pub fn update_dynamic_client(&self, client: &Client) -> Result<bool, StoreError> {
        let mut conn = self.conn()?;
        let row = ClientRow::from_client(client);
        conn.transaction(|conn| {
            let updated = diesel::update(
                clients::table
                    .filter(clients::id.eq(&row.id))
                    .filter(clients::registered_with.is_not_null()),
            )
            .set((
                clients::name.eq(&row.name),
                clients::token_endpoint_auth_method.eq(&row.token_endpoint_auth_method),
                clients::grant_types.eq(&row.grant_types),
                clients::scopes.eq(&row.scopes),
                clients::audiences.eq(&row.audiences),
                clients::redirect_uris.eq(&row.redirect_uris),
                clients::post_logout_redirect_uris.eq(&row.post_logout_redirect_uris),
                clients::jwks.eq(&row.jwks),
                clients::id_token_signed_response_alg.eq(&row.id_token_signed_response_alg),
                clients::require_pushed_authorization_requests
                    .eq(row.require_pushed_authorization_requests),
                clients::dpop_bound_access_tokens.eq(row.dpop_bound_access_tokens),
                clients::registration_metadata.eq(&row.registration_metadata),
                clients::updated_at.eq(row.updated_at),
            ))
            .execute(conn)?;
            if updated > 0 {
                cluster_state::bump(conn, CLIENTS)?;
            }
            Ok(updated > 0)
        })
    }

    /// Replaces an administrator-registered client's editable metadata (its id, kind and
    /// creation time stay). `secret_hash`: `Some` replaces the stored hash (`Some(None)`
    /// removes it, the client becoming public or key-authenticated); `None` leaves it, so an
    /// edit never undoes a secret rotation made meanwhile. False when there is no such client.
    pub fn update_static_client(
        &self,
        client: &Client,
        secret_hash: Option<Option<&str>>,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn()?;
        let row = ClientRow::from_client(client);
        conn.transaction(|conn| {
            let target = || {
                clients::table
                    .filter(clients::id.eq(&row.id))
                    .filter(clients::registered_with.is_null())
            };
            let updated = diesel::update(target())
                .set((
                    clients::name.eq(&row.name),
                    clients::token_endpoint_auth_method.eq(&row.token_endpoint_auth_method),
                    clients::grant_types.eq(&row.grant_types),
                    clients::scopes.eq(&row.scopes),
                    clients::audiences.eq(&row.audiences),
                    clients::redirect_uris.eq(&row.redirect_uris),
                    clients::post_logout_redirect_uris.eq(&row.post_logout_redirect_uris),
                    clients::roles.eq(&row.roles),
                    clients::jwks.eq(&row.jwks),
                    clients::id_token_signed_response_alg.eq(&row.id_token_signed_response_alg),
                    clients::introspection_audiences.eq(&row.introspection_audiences),
                    clients::require_pushed_authorization_requests
                        .eq(row.require_pushed_authorization_requests),
                    clients::dpop_bound_access_tokens.eq(row.dpop_bound_access_tokens),
                    clients::updated_at.eq(row.updated_at),
                ))
                .execute(conn)?;
            if updated == 0 {
                return Ok(false);
            }
            if let Some(hash) = secret_hash {
                diesel::update(target())
                    .set(clients::secret_hash.eq(hash))
                    .execute(conn)?;
            }
            cluster_state::bump(conn, CLIENTS)?;
            Ok(true)
        })
    }

    /// Replaces the secret hash of a client that authenticates with a secret
    /// (`client_secret_basic` or `client_secret_post`); false when there is no such client.
    /// The check and the write are one statement: an edit to another method meanwhile wins.
    pub fn set_client_secret(&self, id: &str, hash: &str, now: i64) -> Result<bool, StoreError> {
        let mut conn = self.conn()?;
        conn.transaction(|conn| {
            let updated = diesel::update(
                clients::table.filter(clients::id.eq(id)).filter(
                    clients::token_endpoint_auth_method
                        .eq_any(["client_secret_basic", "client_secret_post"]),
                ),
            )
            .set((clients::secret_hash.eq(hash), clients::updated_at.eq(now)))
            .execute(conn)?;
            if updated > 0 {
                cluster_state::bump(conn, CLIENTS)?;
            }
            Ok(updated > 0)
        })
    }

    /// Records a dynamic client's use. No cluster bump: caches may keep the older time.
    pub fn touch_client(&self, id: &str, now: i64) -> Result<(), StoreError> {
        diesel::update(clients::table.filter(clients::id.eq(id)))
            .set(clients::last_used_at.eq(now))
            .execute(&mut self.conn()?)?;
        Ok(())
    }

    /// The dynamic clients last used (or, never used, created) before `cutoff`.
    pub fn unused_dynamic_clients(&self, cutoff: i64) -> Result<Vec<String>, StoreError> {
        Ok(clients::table
            .filter(clients::registered_with.is_not_null())
            .filter(
                clients::last_used_at.lt(cutoff).or(clients::last_used_at
                    .is_null()
                    .and(clients::created_at.lt(cutoff))),
            )
            .select(clients::id)
            .order(clients::id)
            .limit(1000)
            .load(&mut self.conn()?)?)
    }

    /// Replaces a client's roles; false when there is no such client.
    pub fn set_client_roles(
        &self,
        id: &str,
        roles: &[String],
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn()?;
        conn.transaction(|conn| {
            let updated = diesel::update(clients::table.filter(clients::id.eq(id)))
                .set((
                    clients::roles.eq(encode_list(roles)),
                    clients::updated_at.eq(now),
                ))
                .execute(conn)?;
            if updated > 0 {
                cluster_state::bump(conn, CLIENTS)?;
            }
            Ok(updated > 0)
        })
    }
}
