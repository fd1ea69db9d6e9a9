//! The `roles` and `api_resources` tables (the authorization model).

use diesel::prelude::*;

use super::cluster_state::{self, AUTHORIZATION};
use super::schema::{api_resources, roles, users};
use super::{conflict_or_query, decode_list, encode_list, Store, StoreError};
use crate::authorization::{ApiResource, Role};
use crate::jose::Algorithm;

#[derive(Queryable, Insertable, Selectable)]
#[diesel(table_name = roles)]
struct RoleRow {
    name: String,
    description: String,
    scopes: String,
    created_at: i64,
    updated_at: i64,
}

#[derive(Queryable, Insertable, Selectable)]
#[diesel(table_name = api_resources)]
struct ResourceRow {
    audience: String,
    name: String,
    scopes: String,
    access_token_ttl: Option<i64>,
    signing_alg: Option<String>,
    created_at: i64,
    updated_at: i64,
}

impl Store {
    pub fn list_roles(&self) -> Result<Vec<Role>, StoreError> {
        roles::table
            .order(roles::name)
            .select(RoleRow::as_select())
            .load(&mut self.conn()?)?
            .into_iter()
            .map(|r| {
                Ok(Role {
                    scopes: decode_list("roles.scopes", &r.scopes)?,
                    name: r.name,
                    description: r.description,
                    created_at: r.created_at,
                    updated_at: r.updated_at,
                })
            })
            .collect()
    }

    pub fn insert_role(&self, role: &Role) -> Result<(), StoreError> {
        let row = RoleRow {
            name: role.name.clone(),
            description: role.description.clone(),
            scopes: encode_list(&role.scopes),
            created_at: role.created_at,
            updated_at: role.updated_at,
        };
        let mut conn = self.conn()?;
        conn.transaction(|conn| {
            diesel::insert_into(roles::table)
                .values(&row)
                .execute(conn)
                .map_err(|e| conflict_or_query(e, format!("role {}", row.name)))?;
            cluster_state::bump(conn, AUTHORIZATION)
        })
    }

    pub fn set_role_scopes(
        &self,
        name: &str,
        scopes: &[String],
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn()?;
        conn.transaction(|conn| {
            let n = diesel::update(roles::table.filter(roles::name.eq(name)))
                .set((
                    roles::scopes.eq(encode_list(scopes)),
                    roles::updated_at.eq(now),
                ))
                .execute(conn)?;
            cluster_state::bump(conn, AUTHORIZATION)?;
            Ok(n > 0)
        })
    }

    pub fn delete_role(&self, name: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn()?;
        conn.transaction(|conn| {
            let n = diesel::delete(roles::table.filter(roles::name.eq(name))).execute(conn)?;
            cluster_state::bump(conn, AUTHORIZATION)?;
            Ok(n > 0)
        })
    }

    pub fn set_user_roles(
        &self,
        username: &str,
        roles: &[String],
        now: i64,
    ) -> Result<bool, StoreError> {
        let n = diesel::update(users::table.filter(users::username.eq(username)))
            .set((
                users::roles.eq(encode_list(roles)),
                users::updated_at.eq(now),
            ))
            .execute(&mut self.conn()?)?;
        Ok(n > 0)
    }

    pub fn list_resources(&self) -> Result<Vec<ApiResource>, StoreError> {
        let mut conn = self.conn()?;
        resources_rows(&mut conn)?
            .into_iter()
            .map(|r| {
                Ok(ApiResource {
                    scopes: decode_list("api_resources.scopes", &r.scopes)?,
                    signing_alg: match r.signing_alg.as_deref() {
                        None => None,
                        Some(a) => Some(Algorithm::parse(a).ok_or_else(|| {
                            StoreError::Corrupt(format!("resource {}: alg {a}", r.audience))
                        })?),
                    },
                    audience: r.audience,
                    name: r.name,
                    access_token_ttl: r.access_token_ttl,
                    created_at: r.created_at,
                    updated_at: r.updated_at,
                })
            })
            .collect()
    }

    pub fn insert_resource(&self, resource: &ApiResource) -> Result<(), StoreError> {
        let row = ResourceRow {
            audience: resource.audience.clone(),
            name: resource.name.clone(),
            scopes: encode_list(&resource.scopes),
            access_token_ttl: resource.access_token_ttl,
            signing_alg: resource.signing_alg.map(|a| a.as_str().to_string()),
            created_at: resource.created_at,
            updated_at: resource.updated_at,
        };
        let mut conn = self.conn()?;
        conn.transaction(|conn| {
            diesel::insert_into(api_resources::table)
                .values(&row)
                .execute(conn)
                .map_err(|e| conflict_or_query(e, format!("resource {}", row.audience)))?;
            cluster_state::bump(conn, AUTHORIZATION)
        })
    }

    /// Replaces a resource's scopes; false when there is no such resource.
    pub fn set_resource_scopes(
        &self,
        audience: &str,
        scopes: &[String],
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn()?;
        conn.transaction(|conn| {
            let n =
                diesel::update(api_resources::table.filter(api_resources::audience.eq(audience)))
                    .set((
                        api_resources::scopes.eq(encode_list(scopes)),
                        api_resources::updated_at.eq(now),
                    ))
                    .execute(conn)?;
            if n > 0 {
                cluster_state::bump(conn, AUTHORIZATION)?;
            }
            Ok(n > 0)
        })
    }

    pub fn delete_resource(&self, audience: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn()?;
        conn.transaction(|conn| {
            let n =
                diesel::delete(api_resources::table.filter(api_resources::audience.eq(audience)))
                    .execute(conn)?;
            cluster_state::bump(conn, AUTHORIZATION)?;
            Ok(n > 0)
        })
    }
}

fn resources_rows(conn: &mut super::db::AnyConnection) -> Result<Vec<ResourceRow>, StoreError> {
    Ok(api_resources::table
        .order(api_resources::audience)
        .select(ResourceRow::as_select())
        .load(conn)?)
}
