//! Registered clients (RFC 6749 §2): the model, its validation, and the in-memory registry
//! that keeps the token endpoint off the database. Clients come from an administrator, from
//! dynamic registration (RFC 7591), or from their metadata document (`metadata_document`).

pub mod initial_access_tokens;
pub mod metadata_document;

use std::fmt;
use std::sync::Arc;

use dashmap::DashMap;
use serde::{Deserialize, Serialize};

use crate::clock::SharedClock;
use crate::config::RegistrationPolicy;
use crate::oauth::scope::is_scope_token;
use crate::oauth::uri;
use crate::secrets::{self, SecretHasher, MIN_SUPPLIED_SECRET_LEN};
use crate::store::{Store, StoreError};

/// Token endpoint authentication methods (RFC 7591 §2, OpenID Connect Core §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
    /// RFC 7523 §2.2: a JWT signed with one of the client's registered keys.
    PrivateKeyJwt,
    None,
}

impl AuthMethod {
    /// `client_secret_basic` or `client_secret_post`: a shared secret.
    pub fn is_secret_based(self) -> bool {
        matches!(
            self,
            AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretPost
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
            AuthMethod::PrivateKeyJwt => "private_key_jwt",
            AuthMethod::None => "none",
        }
    }

    pub fn parse(text: &str) -> Option<AuthMethod> {
        match text {
            "client_secret_basic" => Some(AuthMethod::ClientSecretBasic),
            "client_secret_post" => Some(AuthMethod::ClientSecretPost),
            "private_key_jwt" => Some(AuthMethod::PrivateKeyJwt),
            "none" => Some(AuthMethod::None),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    AuthorizationCode,
    ClientCredentials,
    RefreshToken,
    /// RFC 8628 §3.4: shown, like it is registered, by its URN.
    #[serde(rename = "urn:ietf:params:oauth:grant-type:device_code")]
    DeviceCode,
    /// RFC 8693 §2.1, by its URN too.
    #[serde(rename = "urn:ietf:params:oauth:grant-type:token-exchange")]
    TokenExchange,
}

/// The device authorization grant's type (RFC 8628 §3.4).
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// The token exchange grant's type (RFC 8693 §2.1).
pub const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

impl GrantType {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::ClientCredentials => "client_credentials",
            GrantType::RefreshToken => "refresh_token",
            GrantType::DeviceCode => DEVICE_CODE_GRANT,
            GrantType::TokenExchange => TOKEN_EXCHANGE_GRANT,
        }
    }

    pub fn parse(text: &str) -> Option<GrantType> {
        match text {
            "authorization_code" => Some(GrantType::AuthorizationCode),
            "client_credentials" => Some(GrantType::ClientCredentials),
            "refresh_token" => Some(GrantType::RefreshToken),
            DEVICE_CODE_GRANT => Some(GrantType::DeviceCode),
            TOKEN_EXCHANGE_GRANT => Some(GrantType::TokenExchange),
            _ => None,
        }
    }
}

/// How a client came to exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClientKind {
    /// Registered by an administrator (the CLI or the admin API).
    Static,
    /// Registered itself at `POST /register` (RFC 7591); expires when unused.
    Dynamic,
    /// Named by the `https` URL of its metadata document, fetched when needed; never stored.
    MetadataDocument,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Client {
    #[serde(rename = "client_id")]
    pub id: String,
    #[serde(rename = "client_name")]
    pub name: String,
    #[serde(skip)]
    pub secret_hash: Option<String>,
    #[serde(rename = "token_endpoint_auth_method")]
    pub auth_method: AuthMethod,
    pub grant_types: Vec<GrantType>,
    /// Scopes the client may request; also its default when it requests none.
    #[serde(rename = "scope")]
    pub scopes: Vec<String>,
    /// Resource indicators (RFC 8707) it may obtain tokens for; the first is the default.
    pub audiences: Vec<String>,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    /// Roles held by the client itself (its permissions for client credentials).
    pub roles: Vec<String>,
    /// Public keys for `private_key_jwt` (a JWKS document, shown as JSON).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "jwks_as_json"
    )]
    #[schema(value_type = Option<Object>)]
    pub jwks: Option<String>,
    /// The algorithm of this client's ID tokens (default: the `id_token_signing_alg` setting).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token_signed_response_alg: Option<crate::jose::Algorithm>,
    /// Audiences whose tokens this client — their resource server — may introspect (RFC 7662
    /// §2.1, §4). Any client may introspect the tokens issued to itself.
    pub introspection_audiences: Vec<String>,
    /// RFC 9126 §6: authorization requests only by pushed request.
    pub require_pushed_authorization_requests: bool,
    /// RFC 9449 §5.2: every token request must carry a DPoP proof.
    pub dpop_bound_access_tokens: bool,
    pub created_at: i64,
    pub updated_at: i64,
    /// `static`, `dynamic` (RFC 7591) or `metadata_document`.
    pub kind: ClientKind,
    /// A dynamic client's registration policy: `token` or `open`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registered_with: Option<RegistrationPolicy>,
    /// A dynamic client's last token issuance (recorded at most daily).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<i64>,
    /// SHA-256 of a dynamic client's registration access token (RFC 7592 §3).
    #[serde(skip)]
    pub registration_token_hash: Option<String>,
    /// The other metadata a dynamic client registered (`client_uri`, `contacts`, …), shown as
    /// JSON.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "jwks_as_json"
    )]
    #[schema(value_type = Option<Object>)]
    pub registration_metadata: Option<String>,
}

fn jwks_as_json<S: serde::Serializer>(
    jwks: &Option<String>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let parsed = jwks
        .as_deref()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok());
    serde::Serialize::serialize(&parsed, serializer)
}

impl Client {
    pub fn is_public(&self) -> bool {
        self.auth_method == AuthMethod::None
    }

    pub fn allows_grant(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }

    /// Nobody vetted it: it registered itself, or its metadata document describes it.
    pub fn is_self_described(&self) -> bool {
        self.kind != ClientKind::Static
    }
}

/// How a new client gets its secret.
#[derive(Debug, Clone)]
pub enum SecretChoice {
    Generate,
    Supplied(String),
    Public,
}

/// A client registration as given by the CLI or the admin API.
#[derive(Debug, Clone)]
pub struct NewClient {
    pub id: String,
    pub name: String,
    pub secret: SecretChoice,
    pub auth_method: Option<String>,
    pub grant_types: Vec<String>,
    pub scopes: Vec<String>,
    pub audiences: Vec<String>,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub roles: Vec<String>,
    /// A JWKS document with the client's public keys (`private_key_jwt`).
    pub jwks: Option<String>,
    /// `ES256` or `RS256`; none: the server default.
    pub id_token_signed_response_alg: Option<String>,
    /// Audiences whose tokens this client (a resource server) may introspect.
    pub introspection_audiences: Vec<String>,
    pub require_pushed_authorization_requests: bool,
    pub dpop_bound_access_tokens: bool,
}

#[derive(Debug)]
pub enum RegistryError {
    /// A field failed validation: (field, message).
    Invalid(&'static str, String),
    Conflict(String),
    NotFound(String),
    /// The initial access token was spent or expired while the registration was checked.
    InitialTokenUnusable,
    /// No initial access token with this id.
    NoInitialToken(String),
    Store(StoreError),
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryError::Invalid(field, message) => write!(f, "{field}: {message}"),
            RegistryError::Conflict(what) => write!(f, "{what} already exists"),
            RegistryError::NotFound(id) => write!(f, "no client {id}"),
            RegistryError::InitialTokenUnusable => {
                f.write_str("the initial access token is no longer usable")
            }
            RegistryError::NoInitialToken(id) => write!(f, "no initial access token {id}"),
            RegistryError::Store(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for RegistryError {}

impl From<StoreError> for RegistryError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => RegistryError::Conflict(what),
            other => RegistryError::Store(other),
        }
    }
}

/// Each value may itself be a space-separated list (`--scope "a b" --scope c`).
fn split_values(values: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for v in values.iter().flat_map(|v| v.split_whitespace()) {
        if !out.iter().any(|o| o == v) {
            out.push(v.to_string());
        }
    }
    out
}

/// Client ids are 1–128 characters of `A-Z a-z 0-9 - . _ ~ : @`.
pub fn is_valid_client_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._~:@".contains(c))
}

fn invalid(field: &'static str, message: impl Into<String>) -> RegistryError {
    RegistryError::Invalid(field, message.into())
}

/// Validates a registration into a client (without its secret hash).
fn validate(new: &NewClient, now: i64) -> Result<Client, RegistryError> {
    let id = new.id.trim();
    if !is_valid_client_id(id) {
        return Err(invalid(
            "client_id",
            "must be 1 to 128 characters: letters, digits and - . _ ~ : @",
        ));
    }
    validate_metadata(new, id, now)
}

/// A client described by its metadata document, whose id is the document's URL (checked by
/// `oauth::client_metadata_document`): the same rules as every other registration.
pub(crate) fn metadata_document_client(new: &NewClient, now: i64) -> Result<Client, RegistryError> {
    let mut client = validate_metadata(new, &new.id, now)?;
    client.kind = ClientKind::MetadataDocument;
    // It was not created here: tokens issued to it stay valid across fetches.
    client.created_at = 0;
    Ok(client)
}

/// The rules every client's metadata follows, whoever registers it.
fn validate_metadata(new: &NewClient, id: &str, now: i64) -> Result<Client, RegistryError> {
    let name = new.name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(invalid("client_name", "must be 1 to 200 characters"));
    }
    let public = matches!(new.secret, SecretChoice::Public);
    if let SecretChoice::Supplied(secret) = &new.secret {
        if secret.chars().count() < MIN_SUPPLIED_SECRET_LEN {
            return Err(invalid(
                "client_secret",
                format!("must be at least {MIN_SUPPLIED_SECRET_LEN} characters"),
            ));
        }
    }
    let auth_method = match new.auth_method.as_deref() {
        None if public => AuthMethod::None,
        None if new.jwks.is_some() => AuthMethod::PrivateKeyJwt,
        None => AuthMethod::ClientSecretBasic,
        Some(text) => AuthMethod::parse(text).ok_or_else(|| {
            invalid(
                "token_endpoint_auth_method",
                format!("`{text}` is not one of client_secret_basic, client_secret_post, private_key_jwt, none"),
            )
        })?,
    };
    if public != (auth_method == AuthMethod::None) {
        return Err(invalid(
            "token_endpoint_auth_method",
            "`none` is for public clients (--public) only, and public clients must use `none`",
        ));
    }
    let jwks = match (&new.jwks, auth_method) {
        (Some(text), AuthMethod::PrivateKeyJwt) => Some(validate_jwks(text)?),
        (None, AuthMethod::PrivateKeyJwt) => {
            return Err(invalid(
                "jwks",
                "private_key_jwt needs the client's public keys (--jwks-file)",
            ))
        }
        (Some(_), _) => return Err(invalid("jwks", "keys are only used with private_key_jwt")),
        (None, _) => None,
    };
    let id_token_signed_response_alg = match new.id_token_signed_response_alg.as_deref() {
        None => None,
        Some(text) => Some(crate::jose::Algorithm::parse(text).ok_or_else(|| {
            invalid(
                "id_token_signed_response_alg",
                format!("`{text}` is not ES256 or RS256"),
            )
        })?),
    };
    let roles = split_values(&new.roles);
    if let Some(bad) = roles.iter().find(|r| !is_scope_token(r)) {
        return Err(invalid(
            "roles",
            format!("`{bad}` is not a valid role name"),
        ));
    }
    let grant_types = split_values(&new.grant_types)
        .iter()
        .map(|g| {
            GrantType::parse(g).ok_or_else(|| {
                invalid(
                    "grant_types",
                    format!(
                        "`{g}` is not one of authorization_code, client_credentials, refresh_token, {DEVICE_CODE_GRANT}, {TOKEN_EXCHANGE_GRANT}"
                    ),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if grant_types.is_empty() {
        return Err(invalid(
            "grant_types",
            "at least one grant type is required",
        ));
    }
    // RFC 6749 §4.4: the client credentials grant is for confidential clients only.
    if public && grant_types.contains(&GrantType::ClientCredentials) {
        return Err(invalid(
            "grant_types",
            "a public client cannot use client_credentials",
        ));
    }
    // An actor in a delegation must prove who it is (RFC 8693 §1.1).
    if public && grant_types.contains(&GrantType::TokenExchange) {
        return Err(invalid(
            "grant_types",
            "a public client cannot use token exchange",
        ));
    }
    let scopes = split_values(&new.scopes);
    if let Some(bad) = scopes.iter().find(|s| !is_scope_token(s)) {
        return Err(invalid(
            "scope",
            format!("`{bad}` is not a valid scope token"),
        ));
    }
    let audiences = split_values(&new.audiences);
    for a in &audiences {
        uri::validate_resource(a).map_err(|e| invalid("audiences", e))?;
    }
    let introspection_audiences = split_values(&new.introspection_audiences);
    for a in &introspection_audiences {
        uri::validate_resource(a).map_err(|e| invalid("introspection_audiences", e))?;
    }
    if !introspection_audiences.is_empty() && public {
        return Err(invalid(
            "introspection_audiences",
            "introspection needs a confidential client",
        ));
    }
    let redirect_uris = split_values(&new.redirect_uris);
    for r in &redirect_uris {
        uri::validate_redirect_uri(r).map_err(|e| invalid("redirect_uris", e))?;
    }
    if grant_types.contains(&GrantType::AuthorizationCode) && redirect_uris.is_empty() {
        return Err(invalid(
            "redirect_uris",
            "authorization_code clients need at least one redirect URI",
        ));
    }
    let post_logout_redirect_uris = split_values(&new.post_logout_redirect_uris);
    for r in &post_logout_redirect_uris {
        uri::validate_redirect_uri(r).map_err(|e| invalid("post_logout_redirect_uris", e))?;
    }
    Ok(Client {
        id: id.to_string(),
        name: name.to_string(),
        secret_hash: None,
        auth_method,
        grant_types,
        scopes,
        audiences,
        redirect_uris,
        post_logout_redirect_uris,
        roles,
        jwks,
        id_token_signed_response_alg,
        introspection_audiences,
        require_pushed_authorization_requests: new.require_pushed_authorization_requests,
        dpop_bound_access_tokens: new.dpop_bound_access_tokens,
        created_at: now,
        updated_at: now,
        kind: ClientKind::Static,
        registered_with: None,
        last_used_at: None,
        registration_token_hash: None,
        registration_metadata: None,
    })
}

/// A JWKS (RFC 7517 §5) whose every key can verify ES256 or RS256 and holds no private part.
fn validate_jwks(text: &str) -> Result<String, RegistryError> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| invalid("jwks", format!("not JSON: {e}")))?;
    let keys = value
        .get("keys")
        .and_then(|k| k.as_array())
        .filter(|k| !k.is_empty())
        .ok_or_else(|| invalid("jwks", "expected {\"keys\": [ … ]} with at least one key"))?;
    for key in keys {
        let map = key
            .as_object()
            .ok_or_else(|| invalid("jwks", "a key is not an object"))?;
        if ["d", "p", "q", "k"].iter().any(|m| map.contains_key(*m)) {
            return Err(invalid("jwks", "register public keys only"));
        }
        crate::jose::keys::Verifier::from_jwk(map)
            .map_err(|e| invalid("jwks", format!("unusable key: {e}")))?;
        // RFC 7518 §3.3: RSA keys of 2048 bits or more.
        if map.get("kty").and_then(|v| v.as_str()) == Some("RSA") {
            let bits = map
                .get("n")
                .and_then(|n| n.as_str())
                .and_then(crate::jose::b64_decode)
                .map_or(0, |n| {
                    let n: Vec<u8> = n.into_iter().skip_while(|b| *b == 0).collect();
                    n.first().map_or(0, |top| {
                        (n.len() - 1) * 8 + (8 - top.leading_zeros() as usize)
                    })
                });
            if bits < 2048 {
                return Err(invalid(
                    "jwks",
                    format!("an RSA key of {bits} bits; at least 2048 are required"),
                ));
            }
        }
    }
    Ok(value.to_string())
}

/// Client records for the request path: read through an in-memory cache that is cleared on
/// every change (here, or in another process: see `App::sync_with_cluster`).
pub struct ClientRegistry {
    store: Store,
    hasher: SecretHasher,
    clock: SharedClock,
    cache: DashMap<String, Arc<Client>>,
    /// Bumped on every invalidation: a read that started before one must not fill the cache.
    epoch: std::sync::atomic::AtomicU64,
    /// Clients named by their metadata document's URL, when that is enabled (the server).
    documents: std::sync::OnceLock<metadata_document::MetadataDocuments>,
    /// Dynamic clients whose use this process recorded, and when (`note_use`).
    touched: DashMap<String, i64>,
}

/// What a client id names.
#[derive(Debug, Clone)]
pub enum Lookup {
    Found(Arc<Client>),
    Unknown,
    /// A metadata document's URL whose document could not be used; why, for people to read.
    Refused(String),
}

/// What a client registering itself (RFC 7591) is stored with besides its metadata.
#[derive(Debug, Clone)]
pub struct DynamicRegistration {
    pub policy: RegistrationPolicy,
    /// SHA-256 of its registration access token (RFC 7592 §3).
    pub token_hash: String,
    /// The other metadata it registered (`client_uri`, `contacts`, …), a JSON object.
    pub metadata: Option<String>,
}

/// How often a dynamic client's use is written: enough to expire unused clients, few writes.
const USE_RECORDED_EVERY: i64 = 86_400;

/// A created client and, when generated, its secret (shown once).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedClient {
    #[serde(flatten)]
    pub client: Client,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
}

impl ClientRegistry {
    pub fn new(store: Store, hasher: SecretHasher, clock: SharedClock) -> ClientRegistry {
        ClientRegistry {
            store,
            hasher,
            clock,
            cache: DashMap::new(),
            epoch: std::sync::atomic::AtomicU64::new(0),
            documents: std::sync::OnceLock::new(),
            touched: DashMap::new(),
        }
    }

    /// Lets `https` client ids name their metadata documents (the server, when enabled).
    pub fn use_metadata_documents(&self, documents: metadata_document::MetadataDocuments) {
        let _ = self.documents.set(documents);
    }

    pub fn hasher(&self) -> &SecretHasher {
        &self.hasher
    }

    /// Validates and stores a new client.
    pub fn create(&self, new: &NewClient) -> Result<CreatedClient, RegistryError> {
        let mut client = validate(new, self.clock.now())?;
        let shown_secret = self.set_secret(&mut client, &new.secret)?;
        self.store.insert_client(&client)?;
        self.invalidate();
        Ok(CreatedClient {
            client,
            client_secret: shown_secret,
        })
    }

    /// Stores a client that registered itself (RFC 7591 §3.1), spending one use of the
    /// initial access token whose hash is given in the same transaction.
    pub fn register_dynamic(
        &self,
        new: &NewClient,
        registration: DynamicRegistration,
        initial_token_hash: Option<&str>,
    ) -> Result<CreatedClient, RegistryError> {
        let now = self.clock.now();
        let mut client = validate(new, now)?;
        let shown_secret = self.set_secret(&mut client, &new.secret)?;
        client.kind = ClientKind::Dynamic;
        client.registered_with = Some(registration.policy);
        client.registration_token_hash = Some(registration.token_hash);
        client.registration_metadata = registration.metadata;
        if !self
            .store
            .insert_dynamic_client(&client, initial_token_hash, now)?
        {
            return Err(RegistryError::InitialTokenUnusable);
        }
        self.invalidate();
        Ok(CreatedClient {
            client,
            client_secret: shown_secret,
        })
    }

    /// Replaces a dynamic client's metadata (RFC 7592 §2.2). Its id, secret, registration
    /// access token and policy stay.
    pub fn update_dynamic(
        &self,
        current: &Client,
        new: &NewClient,
        metadata: Option<String>,
    ) -> Result<Client, RegistryError> {
        let now = self.clock.now();
        let mut client = validate_metadata(new, &current.id, now)?;
        if client.auth_method.is_secret_based() != current.auth_method.is_secret_based()
            || (client.auth_method == AuthMethod::PrivateKeyJwt)
                != (current.auth_method == AuthMethod::PrivateKeyJwt)
        {
            return Err(invalid(
                "token_endpoint_auth_method",
                format!(
                    "cannot change from {} to {}; register a new client instead",
                    current.auth_method.as_str(),
                    client.auth_method.as_str()
                ),
            ));
        }
        client.secret_hash = current.secret_hash.clone();
        client.created_at = current.created_at;
        client.kind = ClientKind::Dynamic;
        client.registered_with = current.registered_with;
        client.registration_token_hash = current.registration_token_hash.clone();
        client.last_used_at = current.last_used_at;
        client.registration_metadata = metadata;
        if !self.store.update_dynamic_client(&client)? {
            return Err(RegistryError::NotFound(current.id.clone()));
        }
        self.invalidate();
        Ok(client)
    }

    /// Replaces the metadata of a client an administrator registered, under the same rules as
    /// `create` (`changes.id` and `changes.secret` are not used). `changes.auth_method` omitted:
    /// the current one. The secret stays while the client keeps authenticating with one; a
    /// client moving to `client_secret_*` from `none` or `private_key_jwt` gets a generated
    /// secret (returned, shown once); one moving away loses its secret. What was issued before
    /// stays valid; from now on requests are checked against the new metadata (a removed
    /// redirect URI or scope is refused at `/authorize` and `/token`).
    pub fn update(&self, id: &str, changes: &NewClient) -> Result<CreatedClient, RegistryError> {
        let current = self
            .store
            .find_client(id)?
            .ok_or_else(|| RegistryError::NotFound(id.to_string()))?;
        if current.kind != ClientKind::Static {
            return Err(invalid(
                "client_id",
                "a client that registered itself is changed at its registration endpoint (RFC 7592)",
            ));
        }
        let auth_method = changes
            .auth_method
            .clone()
            .unwrap_or_else(|| current.auth_method.as_str().to_string());
        let changes = NewClient {
            secret: if auth_method == AuthMethod::None.as_str() {
                SecretChoice::Public
            } else {
                SecretChoice::Generate
            },
            auth_method: Some(auth_method),
            ..changes.clone()
        };
        let now = self.clock.now();
        let mut client = validate_metadata(&changes, &current.id, now)?;
        client.created_at = current.created_at;
        let (secret_hash, shown_secret) = if !client.auth_method.is_secret_based() {
            client.secret_hash = None;
            (current.secret_hash.is_some().then_some(None), None)
        } else if current.auth_method.is_secret_based() {
            client.secret_hash = current.secret_hash.clone();
            (None, None)
        } else {
            let shown = self.set_secret(&mut client, &SecretChoice::Generate)?;
            (Some(client.secret_hash.as_deref()), shown)
        };
        if !self.store.update_static_client(&client, secret_hash)? {
            return Err(RegistryError::NotFound(current.id));
        }
        self.invalidate();
        Ok(CreatedClient {
            client,
            client_secret: shown_secret,
        })
    }

    /// Gives a client that authenticates with a secret a new generated one (returned, shown
    /// once). The old secret stops working at once on this process, and on the others at their
    /// next poll of the database (`keyring_poll_interval`, 10 s by default). Public and `private_key_jwt`
    /// clients have no secret to rotate.
    pub fn rotate_secret(&self, id: &str) -> Result<String, RegistryError> {
        let current = self
            .store
            .find_client(id)?
            .ok_or_else(|| RegistryError::NotFound(id.to_string()))?;
        if !current.auth_method.is_secret_based() {
            return Err(invalid(
                "token_endpoint_auth_method",
                format!(
                    "the client authenticates with {}: it has no secret to rotate",
                    current.auth_method.as_str()
                ),
            ));
        }
        let secret = secrets::generate_token().map_err(|e| invalid("client_secret", e))?;
        let hash = self.hasher.hash(&secret);
        let updated = self.store.set_client_secret(id, &hash, self.clock.now())?;
        self.invalidate();
        if !updated {
            return Err(invalid(
                "token_endpoint_auth_method",
                "the client no longer authenticates with a secret",
            ));
        }
        Ok(secret)
    }

    /// Records that a dynamic client obtained a token: at most once a day per client, off the
    /// request (unused dynamic clients expire: `purge_unused`).
    pub fn note_use(&self, client: &Client) {
        if client.kind != ClientKind::Dynamic {
            return;
        }
        let now = self.clock.now();
        let recorded = client
            .last_used_at
            .unwrap_or(client.created_at)
            .max(self.touched.get(&client.id).map_or(i64::MIN, |t| *t));
        if now - recorded < USE_RECORDED_EVERY {
            return;
        }
        if self.touched.len() > 100_000 {
            self.touched.retain(|_, at| now - *at < USE_RECORDED_EVERY);
        }
        self.touched.insert(client.id.clone(), now);
        let id = client.id.clone();
        let store = self.store.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                if let Err(e) = store.run(move |s| s.touch_client(&id, now)).await {
                    tracing::warn!(error = %e, "recording a dynamic client's use failed");
                }
            });
        }
    }

    /// Deletes the dynamic clients that obtained no token since `cutoff` (with their grants);
    /// their ids.
    pub fn purge_unused(&self, cutoff: i64) -> Result<Vec<String>, RegistryError> {
        let now = self.clock.now();
        let mut deleted = Vec::new();
        for id in self.store.unused_dynamic_clients(cutoff)? {
            if self.store.delete_client(&id, now)? {
                deleted.push(id);
            }
        }
        if !deleted.is_empty() {
            self.invalidate();
        }
        Ok(deleted)
    }

    /// Sets the client's secret hash as chosen; the secret when generated (shown once).
    fn set_secret(
        &self,
        client: &mut Client,
        secret: &SecretChoice,
    ) -> Result<Option<String>, RegistryError> {
        Ok(match secret {
            // Key-authenticated clients have no secret to show.
            SecretChoice::Public | SecretChoice::Generate
                if client.auth_method == AuthMethod::PrivateKeyJwt =>
            {
                None
            }
            SecretChoice::Public => None,
            SecretChoice::Supplied(secret) => {
                client.secret_hash = Some(self.hasher.hash(secret));
                None
            }
            SecretChoice::Generate => {
                let secret = secrets::generate_token().map_err(|e| invalid("client_secret", e))?;
                client.secret_hash = Some(self.hasher.hash(&secret));
                Some(secret)
            }
        })
    }

    pub fn list(&self) -> Result<Vec<Client>, RegistryError> {
        Ok(self.store.list_clients()?)
    }

    /// Replaces a client's roles (roles must exist: the caller checks).
    pub fn set_roles(&self, id: &str, roles: &[String]) -> Result<(), RegistryError> {
        let updated = self.store.set_client_roles(id, roles, self.clock.now())?;
        self.invalidate();
        if updated {
            Ok(())
        } else {
            Err(RegistryError::NotFound(id.to_string()))
        }
    }

    pub fn delete(&self, id: &str) -> Result<(), RegistryError> {
        let deleted = self.store.delete_client(id, self.clock.now())?;
        self.invalidate();
        if deleted {
            Ok(())
        } else {
            Err(RegistryError::NotFound(id.to_string()))
        }
    }

    /// The client with this id: from memory when cached, else from the database; for an
    /// `https` URL, from its metadata document (when enabled).
    pub async fn find(&self, id: &str) -> Result<Option<Arc<Client>>, StoreError> {
        Ok(match self.lookup(id).await? {
            Lookup::Found(client) => Some(client),
            Lookup::Unknown | Lookup::Refused(_) => None,
        })
    }

    /// As `find`, saying why a metadata document could not be used.
    pub async fn lookup(&self, id: &str) -> Result<Lookup, StoreError> {
        if crate::oauth::client_metadata_document::is_metadata_document_id(id) {
            return Ok(match self.documents.get() {
                Some(documents) => documents.resolve(id).await,
                None => Lookup::Unknown,
            });
        }
        Ok(match self.find_registered(id).await? {
            Some(client) => Lookup::Found(client),
            None => Lookup::Unknown,
        })
    }

    /// A client stored here (registered by an administrator or by itself).
    async fn find_registered(&self, id: &str) -> Result<Option<Arc<Client>>, StoreError> {
        // No registered id looks otherwise; spare the database (Postgres rejects NUL bytes).
        if !is_valid_client_id(id) {
            return Ok(None);
        }
        if let Some(hit) = self.cache.get(id) {
            return Ok(Some(hit.clone()));
        }
        use std::sync::atomic::Ordering;
        let epoch = self.epoch.load(Ordering::SeqCst);
        let owned = id.to_string();
        let found = self.store.run(move |s| s.find_client(&owned)).await?;
        Ok(found.map(|client| {
            let client = Arc::new(client);
            if self.epoch.load(Ordering::SeqCst) == epoch {
                self.cache.insert(client.id.clone(), client.clone());
            }
            client
        }))
    }

    /// Forgets every cached record (another process changed the table).
    pub fn invalidate(&self) {
        self.epoch.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.cache.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine() -> NewClient {
        NewClient {
            id: "svc".into(),
            name: "Service".into(),
            secret: SecretChoice::Generate,
            auth_method: None,
            grant_types: vec!["client_credentials".into()],
            scopes: vec!["models:read models:invoke".into()],
            audiences: vec!["https://api.example.com".into()],
            redirect_uris: vec![],
            post_logout_redirect_uris: vec![],
            roles: vec![],
            jwks: None,
            id_token_signed_response_alg: None,
            introspection_audiences: vec![],
            require_pushed_authorization_requests: false,
            dpop_bound_access_tokens: false,
        }
    }

    #[test]
    fn space_separated_values_are_split() {
        let client = validate(&machine(), 0).unwrap();
        assert_eq!(client.scopes, vec!["models:read", "models:invoke"]);
        assert_eq!(client.auth_method, AuthMethod::ClientSecretBasic);
    }

    #[test]
    fn invalid_registrations_name_the_field() {
        let short = NewClient {
            secret: SecretChoice::Supplied("too short".into()),
            ..machine()
        };
        assert!(matches!(
            validate(&short, 0),
            Err(RegistryError::Invalid("client_secret", _))
        ));
        let public_cc = NewClient {
            secret: SecretChoice::Public,
            ..machine()
        };
        assert!(matches!(
            validate(&public_cc, 0),
            Err(RegistryError::Invalid("grant_types", _))
        ));
        let code_without_redirect = NewClient {
            grant_types: vec!["authorization_code".into()],
            ..machine()
        };
        assert!(matches!(
            validate(&code_without_redirect, 0),
            Err(RegistryError::Invalid("redirect_uris", _))
        ));
        let bad_audience = NewClient {
            audiences: vec!["not a uri".into()],
            ..machine()
        };
        assert!(matches!(
            validate(&bad_audience, 0),
            Err(RegistryError::Invalid("audiences", _))
        ));
    }
}
