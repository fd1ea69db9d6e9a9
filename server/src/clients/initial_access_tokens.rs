//! Initial access tokens (RFC 7591 §3): what a registration at `POST /register` presents
//! under the `token` policy. Made by an administrator (`portcullis registration token create`
//! or the admin API), shown once, stored as SHA-256 only; each may expire and may be limited
//! to a number of registrations.

use serde::Serialize;

use super::{ClientRegistry, RegistryError};
use crate::store::registration::InitialAccessToken;
use crate::tokens::refresh_token;

/// The longest description kept.
const MAX_DESCRIPTION: usize = 200;

/// A created initial access token: the token itself (shown once) and its record.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedInitialToken {
    #[serde(flatten)]
    pub record: InitialAccessToken,
    /// The token to give the developer who registers; it cannot be shown again.
    pub initial_access_token: String,
}

/// What an administrator asks for.
#[derive(Debug, Clone, Default)]
pub struct NewInitialToken {
    pub description: String,
    /// Seconds from now; `None`: it does not expire.
    pub expires_in: Option<u64>,
    /// `None`: any number of registrations.
    pub max_uses: Option<u64>,
}

impl ClientRegistry {
    /// Creates an initial access token.
    pub fn create_initial_token(
        &self,
        new: &NewInitialToken,
    ) -> Result<CreatedInitialToken, RegistryError> {
        let description = new.description.trim();
        if description.chars().count() > MAX_DESCRIPTION {
            return Err(RegistryError::Invalid(
                "description",
                format!("at most {MAX_DESCRIPTION} characters"),
            ));
        }
        if new.expires_in == Some(0) {
            return Err(RegistryError::Invalid(
                "expires_in",
                "at least 1 second".into(),
            ));
        }
        if new.max_uses == Some(0) {
            return Err(RegistryError::Invalid("max_uses", "at least 1".into()));
        }
        let now = self.clock.now();
        let expires_at = match new.expires_in {
            None => None,
            Some(seconds) => Some(
                i64::try_from(seconds)
                    .ok()
                    .and_then(|s| now.checked_add(s))
                    .ok_or_else(|| {
                        RegistryError::Invalid("expires_in", "too far in the future".into())
                    })?,
            ),
        };
        let max_uses = match new.max_uses {
            None => None,
            Some(n) => Some(
                i64::try_from(n)
                    .map_err(|_| RegistryError::Invalid("max_uses", "too large".into()))?,
            ),
        };
        let token = crate::secrets::generate_token().map_err(internal)?;
        let id = format!(
            "iat-{}",
            crate::secrets::generate_token()
                .map_err(internal)?
                .get(..12)
                .unwrap_or_default()
        );
        let record = InitialAccessToken {
            id,
            token_hash: refresh_token::hash(&token),
            description: description.to_string(),
            created_at: now,
            expires_at,
            max_uses,
            uses: 0,
        };
        self.store.insert_initial_token(&record)?;
        Ok(CreatedInitialToken {
            record,
            initial_access_token: token,
        })
    }

    /// Every initial access token, oldest first (never the tokens themselves).
    pub fn list_initial_tokens(&self) -> Result<Vec<InitialAccessToken>, RegistryError> {
        Ok(self.store.list_initial_tokens()?)
    }

    /// Revokes an initial access token: no registration can use it any more (the clients it
    /// registered stay).
    pub fn delete_initial_token(&self, id: &str) -> Result<(), RegistryError> {
        if self.store.delete_initial_token(id)? {
            Ok(())
        } else {
            Err(RegistryError::NoInitialToken(id.to_string()))
        }
    }
}

fn internal(e: String) -> RegistryError {
    RegistryError::Store(crate::store::StoreError::Unavailable(e))
}
