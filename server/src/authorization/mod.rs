//! Role-based access control: roles grant permissions, which are scopes of API resources.
//!
//! A token's scope is the intersection of what was requested, what the client may ask for, and
//! — for scopes that belong to an API resource — what the subject's roles permit, restricted
//! to the resource the token is for. Scopes that belong to no resource (OpenID Connect's
//! `openid`, `profile`, …) are limited by the client's registration only.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::Serialize;

use crate::clock::SharedClock;
use crate::jose::Algorithm;
use crate::oauth::scope::is_scope_token;
use crate::store::{Store, StoreError};

/// The scope that authorizes the admin API.
pub const ADMIN_SCOPE: &str = "portcullis:admin";
pub const SEEDED_ROLES: [&str; 3] = ["admin", "user", "guest"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Role {
    pub name: String,
    pub description: String,
    pub scopes: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ApiResource {
    pub audience: String,
    pub name: String,
    pub scopes: Vec<String>,
    /// Overrides the default access-token lifetime for this audience.
    pub access_token_ttl: Option<i64>,
    /// Overrides the default access-token signing algorithm for this audience.
    pub signing_alg: Option<Algorithm>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One immutable snapshot of roles and resources.
#[derive(Debug, Default)]
pub struct Model {
    roles: HashMap<String, Role>,
    resources: HashMap<String, ApiResource>,
    /// scope → the audience of the resource it belongs to.
    owner: HashMap<String, String>,
}

impl Model {
    fn build(roles: Vec<Role>, mut resources: Vec<ApiResource>, admin_audience: &str) -> Model {
        // The admin API is a built-in resource.
        resources.push(ApiResource {
            audience: admin_audience.to_string(),
            name: "Portcullis admin API".into(),
            scopes: vec![ADMIN_SCOPE.into()],
            access_token_ttl: None,
            signing_alg: None,
            created_at: 0,
            updated_at: 0,
        });
        let mut owner = HashMap::new();
        for r in &resources {
            for s in &r.scopes {
                owner.entry(s.clone()).or_insert_with(|| r.audience.clone());
            }
        }
        Model {
            roles: roles.into_iter().map(|r| (r.name.clone(), r)).collect(),
            resources: resources
                .into_iter()
                .map(|r| (r.audience.clone(), r))
                .collect(),
            owner,
        }
    }

    pub fn resource(&self, audience: &str) -> Option<&ApiResource> {
        self.resources.get(audience)
    }

    pub fn role_exists(&self, name: &str) -> bool {
        self.roles.contains_key(name)
    }

    /// Every scope the given roles permit.
    pub fn permitted_by<'a>(&'a self, roles: &[String]) -> HashSet<&'a str> {
        roles
            .iter()
            .filter_map(|r| self.roles.get(r))
            .flat_map(|r| r.scopes.iter().map(String::as_str))
            .collect()
    }

    /// What a person may consent to: `candidates` that are resource-less or that `roles`
    /// permit, for whichever resource. Tokens are narrowed to their audience when issued
    /// (`effective_scope`); another resource's scopes in a grant serve token exchange.
    pub fn consentable_scope(&self, candidates: &[String], roles: &[String]) -> Vec<String> {
        let permitted = self.permitted_by(roles);
        candidates
            .iter()
            .filter(|s| !self.owner.contains_key(s.as_str()) || permitted.contains(s.as_str()))
            .cloned()
            .collect()
    }

    /// The RBAC filter: keeps `candidates` that are either resource-less, or belong to the
    /// token's `audience` and are permitted by `roles`.
    pub fn effective_scope(
        &self,
        candidates: &[String],
        roles: &[String],
        audience: &str,
    ) -> Vec<String> {
        let permitted = self.permitted_by(roles);
        candidates
            .iter()
            .filter(|s| match self.owner.get(s.as_str()) {
                None => true,
                Some(owner) => owner == audience && permitted.contains(s.as_str()),
            })
            .cloned()
            .collect()
    }
}

#[derive(Debug)]
pub enum AuthorizationError {
    Invalid(&'static str, String),
    Conflict(String),
    NotFound(String),
    Store(StoreError),
}

impl fmt::Display for AuthorizationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthorizationError::Invalid(field, message) => write!(f, "{field}: {message}"),
            AuthorizationError::Conflict(what) => write!(f, "{what} already exists"),
            AuthorizationError::NotFound(what) => write!(f, "no {what}"),
            AuthorizationError::Store(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for AuthorizationError {}

impl From<StoreError> for AuthorizationError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => AuthorizationError::Conflict(what),
            other => AuthorizationError::Store(other),
        }
    }
}

fn invalid(field: &'static str, message: impl Into<String>) -> AuthorizationError {
    AuthorizationError::Invalid(field, message.into())
}

fn scope_list(values: &[String]) -> Result<Vec<String>, AuthorizationError> {
    let mut out: Vec<String> = Vec::new();
    for s in values.iter().flat_map(|v| v.split_whitespace()) {
        if !is_scope_token(s) {
            return Err(invalid("scopes", format!("`{s}` is not a valid scope")));
        }
        if !out.iter().any(|o| o == s) {
            out.push(s.to_string());
        }
    }
    Ok(out)
}

/// Whom a role is granted to.
#[derive(Debug, Clone)]
pub enum Holder {
    User(String),
    Client(String),
}

/// Roles and resources, cached as a [`Model`] that is swapped whole on change.
pub struct AuthorizationService {
    store: Store,
    clock: SharedClock,
    admin_audience: String,
    current: ArcSwap<Model>,
}

impl AuthorizationService {
    pub fn open(
        store: Store,
        clock: SharedClock,
        admin_audience: String,
    ) -> Result<Self, StoreError> {
        let model = Model::build(
            store.list_roles()?,
            store.list_resources()?,
            &admin_audience,
        );
        Ok(AuthorizationService {
            store,
            clock,
            admin_audience,
            current: ArcSwap::from_pointee(model),
        })
    }

    pub fn model(&self) -> Arc<Model> {
        self.current.load_full()
    }

    pub fn admin_audience(&self) -> &str {
        &self.admin_audience
    }

    /// Reloads from the database (after a change here or in another process).
    pub fn reload(&self) -> Result<(), StoreError> {
        let model = Model::build(
            self.store.list_roles()?,
            self.store.list_resources()?,
            &self.admin_audience,
        );
        self.current.store(Arc::new(model));
        Ok(())
    }

    pub fn list_roles(&self) -> Result<Vec<Role>, AuthorizationError> {
        Ok(self.store.list_roles()?)
    }

    pub fn create_role(
        &self,
        name: &str,
        description: &str,
        scopes: &[String],
    ) -> Result<Role, AuthorizationError> {
        if !is_scope_token(name) || name.len() > 64 {
            return Err(invalid(
                "name",
                "1 to 64 characters without spaces or quotes",
            ));
        }
        let now = self.clock.now();
        let role = Role {
            name: name.to_string(),
            description: description.trim().to_string(),
            scopes: scope_list(scopes)?,
            created_at: now,
            updated_at: now,
        };
        self.store.insert_role(&role)?;
        self.reload()?;
        Ok(role)
    }

    pub fn set_role_scopes(&self, name: &str, scopes: &[String]) -> Result<(), AuthorizationError> {
        let scopes = scope_list(scopes)?;
        if !self
            .store
            .set_role_scopes(name, &scopes, self.clock.now())?
        {
            return Err(AuthorizationError::NotFound(format!("role {name}")));
        }
        Ok(self.reload()?)
    }

    pub fn delete_role(&self, name: &str) -> Result<(), AuthorizationError> {
        if SEEDED_ROLES.contains(&name) {
            return Err(invalid(
                "name",
                format!("the built-in role {name} cannot be deleted"),
            ));
        }
        if !self.store.delete_role(name)? {
            return Err(AuthorizationError::NotFound(format!("role {name}")));
        }
        Ok(self.reload()?)
    }

    /// Grants (or with `grant = false`, revokes) a role.
    pub fn set_holder(
        &self,
        role: &str,
        holder: &Holder,
        grant: bool,
        clients: &crate::clients::ClientRegistry,
    ) -> Result<Vec<String>, AuthorizationError> {
        let exists = self.model().role_exists(role);
        if grant && !exists {
            return Err(AuthorizationError::NotFound(format!("role {role}")));
        }
        // Revoking a role that neither exists nor is held is an error too.
        let check_held = |roles: &[String]| {
            if !grant && !exists && !roles.iter().any(|r| r == role) {
                Err(AuthorizationError::NotFound(format!("role {role}")))
            } else {
                Ok(())
            }
        };
        let change = |mut roles: Vec<String>| {
            roles.retain(|r| r != role);
            if grant {
                roles.push(role.to_string());
            }
            roles
        };
        match holder {
            Holder::User(username) => {
                let user = self
                    .store
                    .find_user_by_username(username)?
                    .ok_or_else(|| AuthorizationError::NotFound(format!("user {username}")))?;
                let roles = change(user.roles);
                self.store
                    .set_user_roles(username, &roles, self.clock.now())?;
                Ok(roles)
            }
            Holder::Client(id) => {
                let client = self
                    .store
                    .find_client(id)?
                    .ok_or_else(|| AuthorizationError::NotFound(format!("client {id}")))?;
                check_held(&client.roles)?;
                let roles = change(client.roles);
                clients.set_roles(id, &roles).map_err(|e| match e {
                    crate::clients::RegistryError::Store(s) => AuthorizationError::Store(s),
                    other => AuthorizationError::Invalid("client", other.to_string()),
                })?;
                Ok(roles)
            }
        }
    }

    pub fn list_resources(&self) -> Result<Vec<ApiResource>, AuthorizationError> {
        Ok(self.store.list_resources()?)
    }

    pub fn create_resource(
        &self,
        audience: &str,
        name: Option<&str>,
        scopes: &[String],
        access_token_ttl: Option<i64>,
        signing_alg: Option<&str>,
        max_ttl: i64,
    ) -> Result<ApiResource, AuthorizationError> {
        crate::oauth::uri::validate_resource(audience).map_err(|e| invalid("audience", e))?;
        if audience == self.admin_audience {
            return Err(invalid("audience", "reserved for the admin API"));
        }
        let scopes = self.resource_scopes(audience, scopes)?;
        if let Some(ttl) = access_token_ttl {
            if ttl < 1 || ttl > max_ttl {
                return Err(invalid(
                    "access_token_ttl",
                    format!(
                        "must be between 1 and {max_ttl} seconds (setting max_access_token_ttl)"
                    ),
                ));
            }
        }
        let signing_alg = match signing_alg {
            None => None,
            Some(a) => {
                Some(Algorithm::parse(a).ok_or_else(|| invalid("signing_alg", "ES256 or RS256"))?)
            }
        };
        let now = self.clock.now();
        let resource = ApiResource {
            audience: audience.to_string(),
            name: name.map_or_else(|| audience.to_string(), str::to_string),
            scopes,
            access_token_ttl,
            signing_alg,
            created_at: now,
            updated_at: now,
        };
        self.store.insert_resource(&resource)?;
        self.reload()?;
        Ok(resource)
    }

    /// A resource's scopes checked: valid, at least one, and none belonging to another
    /// resource (a scope names one audience, so a token's audience follows from its scopes).
    fn resource_scopes(
        &self,
        audience: &str,
        scopes: &[String],
    ) -> Result<Vec<String>, AuthorizationError> {
        let scopes = scope_list(scopes)?;
        if scopes.is_empty() {
            return Err(invalid("scopes", "a resource needs at least one scope"));
        }
        let model = self.model();
        for s in &scopes {
            if let Some(owner) = model.owner.get(s).filter(|owner| *owner != audience) {
                return Err(invalid(
                    "scopes",
                    format!("`{s}` already belongs to {owner}"),
                ));
            }
        }
        Ok(scopes)
    }

    /// Replaces a resource's scopes, under creation's rules. Tokens already issued keep the
    /// scopes they carry; from now on a removed scope no longer names this audience, and an
    /// added one does.
    pub fn set_resource_scopes(
        &self,
        audience: &str,
        scopes: &[String],
    ) -> Result<Vec<String>, AuthorizationError> {
        let scopes = self.resource_scopes(audience, scopes)?;
        if !self
            .store
            .set_resource_scopes(audience, &scopes, self.clock.now())?
        {
            return Err(AuthorizationError::NotFound(format!("resource {audience}")));
        }
        self.reload()?;
        Ok(scopes)
    }

    pub fn delete_resource(&self, audience: &str) -> Result<(), AuthorizationError> {
        if !self.store.delete_resource(audience)? {
            return Err(AuthorizationError::NotFound(format!("resource {audience}")));
        }
        Ok(self.reload()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> Model {
        let role = |name: &str, scopes: &[&str]| Role {
            name: name.into(),
            description: String::new(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            created_at: 0,
            updated_at: 0,
        };
        let resource = |aud: &str, scopes: &[&str]| ApiResource {
            audience: aud.into(),
            name: aud.into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            access_token_ttl: None,
            signing_alg: None,
            created_at: 0,
            updated_at: 0,
        };
        Model::build(
            vec![
                role("reader", &["models:read"]),
                role("admin", &[ADMIN_SCOPE]),
            ],
            vec![
                resource("https://inference", &["models:read", "models:invoke"]),
                resource("https://billing", &["invoices:read"]),
            ],
            "https://issuer/admin/v1",
        )
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn scope_is_the_intersection_with_role_permissions_for_the_audience() {
        let m = model();
        let candidates = strings(&["openid", "models:read", "models:invoke", "invoices:read"]);
        assert_eq!(
            m.effective_scope(&candidates, &strings(&["reader"]), "https://inference"),
            strings(&["openid", "models:read"])
        );
        assert_eq!(
            m.effective_scope(&candidates, &[], "https://inference"),
            strings(&["openid"])
        );
        assert_eq!(
            m.effective_scope(
                &strings(&[ADMIN_SCOPE]),
                &strings(&["admin"]),
                "https://inference"
            ),
            Vec::<String>::new(),
            "a scope of another audience never leaks into a token"
        );
        assert_eq!(
            m.effective_scope(
                &strings(&[ADMIN_SCOPE]),
                &strings(&["admin"]),
                "https://issuer/admin/v1"
            ),
            strings(&[ADMIN_SCOPE])
        );
    }
}
