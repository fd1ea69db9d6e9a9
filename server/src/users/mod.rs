//! People who sign in: accounts, Argon2id password hashes, roles.

use std::fmt;

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use serde::Serialize;

use crate::clock::SharedClock;
use crate::store::{Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct User {
    /// The OpenID Connect subject: opaque, stable, never reassigned.
    #[serde(rename = "sub")]
    pub id: String,
    pub username: String,
    pub email: String,
    pub email_verified: bool,
    pub name: String,
    #[serde(skip)]
    pub password_hash: String,
    pub roles: Vec<String>,
    pub disabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
    /// Keys the user's sign-in failure counters; bumped to clear them.
    #[serde(skip)]
    pub sign_in_generation: i64,
}

#[derive(Debug)]
pub enum UserError {
    Invalid(&'static str, String),
    Conflict(String),
    NotFound(String),
    Store(StoreError),
}

impl fmt::Display for UserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserError::Invalid(field, message) => write!(f, "{field}: {message}"),
            UserError::Conflict(what) => write!(f, "{what} already exists"),
            UserError::NotFound(name) => write!(f, "no user {name}"),
            UserError::Store(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for UserError {}

impl From<StoreError> for UserError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => UserError::Conflict(what),
            other => UserError::Store(other),
        }
    }
}

pub struct NewUser {
    pub username: String,
    pub email: String,
    pub name: String,
    pub roles: Vec<String>,
    pub password: String,
}

pub const MIN_PASSWORD_LEN: usize = 8;

/// Argon2id hashing with configurable cost (RFC 9106; OWASP: m ≥ 19 MiB, t ≥ 2, p = 1).
#[derive(Clone)]
pub struct PasswordPolicy {
    params: Params,
    /// Verified against when the username is unknown, so both cases cost the same time.
    /// Made on first use: hashing costs ~19 MiB and tens of milliseconds.
    dummy_hash: std::sync::Arc<std::sync::OnceLock<String>>,
}

impl PasswordPolicy {
    pub fn new(
        memory_kib: u32,
        iterations: u32,
        parallelism: u32,
    ) -> Result<PasswordPolicy, String> {
        let params = Params::new(memory_kib, iterations, parallelism, None)
            .map_err(|e| format!("settings `password_hash_*`: {e}"))?;
        Ok(PasswordPolicy {
            params,
            dummy_hash: std::sync::Arc::default(),
        })
    }

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    pub fn hash(&self, password: &str) -> Result<String, String> {
        self.argon2()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| format!("password hashing failed: {e}"))
    }

    /// Parameters come from the stored hash, so old hashes still verify after a cost change.
    pub fn verify(&self, password: &str, hash: &str) -> bool {
        self.argon2()
            .verify_password(password.as_bytes(), hash)
            .is_ok()
    }
}

fn check_password(password: &str) -> Result<(), UserError> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(UserError::Invalid(
            "password",
            format!("must be at least {MIN_PASSWORD_LEN} characters"),
        ));
    }
    if password.len() > 1024 {
        return Err(UserError::Invalid(
            "password",
            "must be at most 1024 bytes".into(),
        ));
    }
    Ok(())
}

pub struct UserService {
    store: Store,
    clock: SharedClock,
    passwords: PasswordPolicy,
}

impl UserService {
    pub fn new(store: Store, clock: SharedClock, passwords: PasswordPolicy) -> UserService {
        UserService {
            store,
            clock,
            passwords,
        }
    }

    pub fn create(&self, new: &NewUser) -> Result<User, UserError> {
        let username = new.username.trim();
        if username.is_empty()
            || username.chars().count() > 64
            || !username
                .chars()
                .all(|c| c.is_alphanumeric() || "-._@+".contains(c))
        {
            return Err(UserError::Invalid(
                "username",
                "1 to 64 letters, digits or - . _ @ +".into(),
            ));
        }
        let email = new.email.trim();
        let at = email.find('@');
        if !at.is_some_and(|i| i > 0 && i + 1 < email.len()) || email.contains(char::is_whitespace)
        {
            return Err(UserError::Invalid(
                "email",
                format!("`{email}` is not an email address"),
            ));
        }
        let name = new.name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(UserError::Invalid(
                "name",
                "must be 1 to 200 characters".into(),
            ));
        }
        let mut roles: Vec<String> = Vec::new();
        for role in new.roles.iter().flat_map(|r| r.split_whitespace()) {
            if !crate::oauth::scope::is_scope_token(role) {
                return Err(UserError::Invalid(
                    "roles",
                    format!("`{role}` is not a valid role name"),
                ));
            }
            if !roles.iter().any(|r| r == role) {
                roles.push(role.to_string());
            }
        }
        check_password(&new.password)?;
        let now = self.clock.now();
        let user = User {
            id: crate::secrets::generate_token().map_err(|e| UserError::Invalid("id", e))?,
            username: username.to_string(),
            email: email.to_string(),
            // Addresses entered by an operator are not verified by a mail round trip.
            email_verified: false,
            name: name.to_string(),
            password_hash: self
                .passwords
                .hash(&new.password)
                .map_err(|e| UserError::Invalid("password", e))?,
            roles,
            disabled: false,
            created_at: now,
            updated_at: now,
            sign_in_generation: 0,
        };
        self.store.insert_user(&user)?;
        Ok(user)
    }

    pub fn list(&self) -> Result<Vec<User>, UserError> {
        Ok(self.store.list_users()?)
    }

    pub fn delete(&self, username: &str) -> Result<(), UserError> {
        if self.store.delete_user(username)? {
            Ok(())
        } else {
            Err(UserError::NotFound(username.into()))
        }
    }

    pub fn set_password(&self, username: &str, password: &str) -> Result<(), UserError> {
        check_password(password)?;
        let hash = self
            .passwords
            .hash(password)
            .map_err(|e| UserError::Invalid("password", e))?;
        if self
            .store
            .set_user_password(username, &hash, self.clock.now())?
        {
            Ok(())
        } else {
            Err(UserError::NotFound(username.into()))
        }
    }

    pub fn set_disabled(&self, username: &str, disabled: bool) -> Result<(), UserError> {
        if self
            .store
            .set_user_disabled(username, disabled, self.clock.now())?
        {
            Ok(())
        } else {
            Err(UserError::NotFound(username.into()))
        }
    }

    /// The account a sign-in names (by the username as typed, trimmed), if any.
    pub fn find_by_username(&self, username: &str) -> Result<Option<User>, StoreError> {
        self.store.find_user_by_username(username.trim())
    }

    /// Checks a password against the account (blocking: Argon2 costs tens of milliseconds).
    /// Unknown users, wrong passwords and disabled accounts are indistinguishable, in the
    /// answer and in the time it takes: an unknown user is checked against a dummy hash.
    pub fn verify_password(&self, user: Option<&User>, password: &str) -> bool {
        match user {
            Some(u) => self.passwords.verify(password, &u.password_hash) && !u.disabled,
            None => {
                let dummy = self.passwords.dummy_hash.get_or_init(|| {
                    self.passwords
                        .hash("portcullis-dummy-password")
                        .unwrap_or_default()
                });
                self.passwords.verify(password, dummy);
                false
            }
        }
    }

    /// Forgets every sign-in failure counted for the user, on every instance.
    pub fn unlock(&self, username: &str) -> Result<(), UserError> {
        if self
            .store
            .reset_sign_in_failures(username, self.clock.now())?
        {
            Ok(())
        } else {
            Err(UserError::NotFound(username.into()))
        }
    }

    pub fn find(&self, id: &str) -> Result<Option<User>, StoreError> {
        self.store.find_user(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2id_hashes_verify_and_carry_their_parameters() {
        let policy = PasswordPolicy::new(19456, 2, 1).unwrap();
        let hash = policy.hash("correct horse").unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(policy.verify("correct horse", &hash));
        assert!(!policy.verify("correct horsE", &hash));
        let cheaper = PasswordPolicy::new(8192, 1, 1).unwrap();
        assert!(
            cheaper.verify("correct horse", &hash),
            "old hashes keep verifying"
        );
    }
}
