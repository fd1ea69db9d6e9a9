//! Dynamic client registration (RFC 7591) and its management (RFC 7592).
//!
//! [`ClientMetadata`] reads RFC 7591 §2 client metadata — from a registration request, or from
//! a client ID metadata document (`client_metadata_document.rs`) — and [`Rules`] turn it into a
//! registration under a policy. `register`, `read`, `update` and `delete` are the endpoints'
//! operations; the endpoints (`endpoints/register.rs`) only read the request and answer.

use std::net::IpAddr;
use std::sync::Arc;

use serde_json::{Map, Value};
use subtle::ConstantTimeEq;

use crate::app::App;
use crate::clients::{
    AuthMethod, Client, ClientKind, DynamicRegistration, GrantType, NewClient, RegistryError,
    SecretChoice,
};
use crate::config::RegistrationPolicy;
use crate::error::{Challenge, ErrorCode, OAuthError};
use crate::tokens::refresh_token;

/// Where a dynamic client manages its registration: `{issuer}/register/{client_id}`.
pub const REGISTRATION_PATH: &str = "/register";

/// The metadata kept as registered and shown back, without meaning to Portcullis: URLs the
/// client describes itself with, and who to contact.
const DESCRIPTIVE_URIS: [&str; 4] = ["client_uri", "logo_uri", "tos_uri", "policy_uri"];
const DESCRIPTIVE_TEXTS: [&str; 2] = ["software_id", "software_version"];

/// RFC 7591 §2 client metadata as sent. Fields Portcullis does not understand are ignored
/// (§2: "MUST ignore any client metadata sent by the client that it does not understand").
#[derive(Debug, Clone, Default)]
pub struct ClientMetadata {
    pub redirect_uris: Vec<String>,
    pub token_endpoint_auth_method: Option<String>,
    pub grant_types: Option<Vec<String>>,
    pub response_types: Option<Vec<String>>,
    pub client_name: Option<String>,
    pub scope: Option<String>,
    /// A JWKS document (RFC 7517 §5) as JSON text.
    pub jwks: Option<String>,
    pub jwks_uri: Option<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub id_token_signed_response_alg: Option<String>,
    /// RFC 9126 §6.
    pub require_pushed_authorization_requests: bool,
    /// RFC 9449 §5.2.
    pub dpop_bound_access_tokens: bool,
    pub software_statement: bool,
    /// `client_uri`, `logo_uri`, `tos_uri`, `policy_uri`, `contacts`, `software_id`,
    /// `software_version`: validated, kept, shown back.
    pub descriptive: Map<String, Value>,
}

fn metadata_error(code: ErrorCode, description: impl Into<String>) -> OAuthError {
    OAuthError::new(code, description.into())
}

fn invalid_metadata(description: impl Into<String>) -> OAuthError {
    metadata_error(ErrorCode::InvalidClientMetadata, description)
}

impl ClientMetadata {
    /// Reads the fields Portcullis understands, checking their JSON types.
    pub fn parse(document: &Map<String, Value>) -> Result<ClientMetadata, OAuthError> {
        let text = |name: &str| -> Result<Option<String>, OAuthError> {
            match document.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(invalid_metadata(format!("{name}: must be a string"))),
            }
        };
        let list = |name: &str, code: ErrorCode| -> Result<Option<Vec<String>>, OAuthError> {
            match document.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|item| {
                        item.as_str().map(str::to_string).ok_or_else(|| {
                            metadata_error(code, format!("{name}: must be an array of strings"))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(Some),
                Some(_) => Err(metadata_error(
                    code,
                    format!("{name}: must be an array of strings"),
                )),
            }
        };
        let flag = |name: &str| -> Result<bool, OAuthError> {
            match document.get(name) {
                None | Some(Value::Null) => Ok(false),
                Some(Value::Bool(b)) => Ok(*b),
                Some(_) => Err(invalid_metadata(format!("{name}: must be true or false"))),
            }
        };
        let jwks = match document.get("jwks") {
            None | Some(Value::Null) => None,
            Some(value @ Value::Object(_)) => Some(value.to_string()),
            Some(_) => return Err(invalid_metadata("jwks: must be a JWKS object")),
        };
        let mut descriptive = Map::new();
        for name in DESCRIPTIVE_URIS {
            if let Some(uri) = text(name)? {
                let parsed = url::Url::parse(&uri)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "https" | "http") && uri.len() <= 2000);
                if parsed.is_none() {
                    return Err(invalid_metadata(format!(
                        "{name}: must be an http or https URL"
                    )));
                }
                descriptive.insert(name.into(), Value::String(uri));
            }
        }
        for name in DESCRIPTIVE_TEXTS {
            if let Some(value) = text(name)? {
                if value.chars().count() > 255 {
                    return Err(invalid_metadata(format!("{name}: at most 255 characters")));
                }
                descriptive.insert(name.into(), Value::String(value));
            }
        }
        if let Some(contacts) = list("contacts", ErrorCode::InvalidClientMetadata)? {
            if contacts.len() > 20 || contacts.iter().any(|c| c.chars().count() > 254) {
                return Err(invalid_metadata(
                    "contacts: at most 20, of at most 254 characters each",
                ));
            }
            descriptive.insert("contacts".into(), Value::from(contacts));
        }
        Ok(ClientMetadata {
            redirect_uris: list("redirect_uris", ErrorCode::InvalidRedirectUri)?
                .unwrap_or_default(),
            token_endpoint_auth_method: text("token_endpoint_auth_method")?,
            grant_types: list("grant_types", ErrorCode::InvalidClientMetadata)?,
            response_types: list("response_types", ErrorCode::InvalidClientMetadata)?,
            client_name: text("client_name")?,
            scope: text("scope")?,
            jwks,
            jwks_uri: text("jwks_uri")?,
            post_logout_redirect_uris: list(
                "post_logout_redirect_uris",
                ErrorCode::InvalidRedirectUri,
            )?
            .unwrap_or_default(),
            id_token_signed_response_alg: text("id_token_signed_response_alg")?,
            require_pushed_authorization_requests: flag("require_pushed_authorization_requests")?,
            dpop_bound_access_tokens: flag("dpop_bound_access_tokens")?,
            software_statement: document
                .get("software_statement")
                .is_some_and(|v| !v.is_null()),
            descriptive,
        })
    }
}

/// What a policy lets self-registered clients be.
#[derive(Debug, Clone)]
pub struct Rules<'a> {
    /// The scopes they may hold: what they ask beyond these is dropped (RFC 7591 §2 lets the
    /// server replace requested values). `None`: any scope.
    pub scope_ceiling: Option<&'a [String]>,
    /// Their scope when they ask none.
    pub default_scopes: &'a [String],
    /// The grant types they may use.
    pub grant_types: &'a [GrantType],
    /// The token endpoint authentication methods they may use.
    pub auth_methods: &'a [AuthMethod],
    /// The method when they name none.
    pub default_auth_method: AuthMethod,
    /// Their resource indicators (RFC 8707).
    pub audiences: &'a [String],
    /// Their name when they give none.
    pub default_name: &'a str,
}

const PUBLIC_CODE_FLOW: [GrantType; 2] = [GrantType::AuthorizationCode, GrantType::RefreshToken];
const ANY_GRANT: [GrantType; 4] = [
    GrantType::AuthorizationCode,
    GrantType::RefreshToken,
    GrantType::ClientCredentials,
    GrantType::DeviceCode,
];
const ANY_METHOD: [AuthMethod; 4] = [
    AuthMethod::None,
    AuthMethod::ClientSecretBasic,
    AuthMethod::ClientSecretPost,
    AuthMethod::PrivateKeyJwt,
];

impl<'a> Rules<'a> {
    /// For a registration under `policy` (`open`: public clients of the code flow with PKCE,
    /// within `dynamic_client_scopes`; `token`: any client).
    pub fn for_policy(app: &'a App, policy: RegistrationPolicy) -> Rules<'a> {
        let settings = app.settings();
        let open = policy != RegistrationPolicy::Token;
        Rules {
            scope_ceiling: open.then_some(settings.dynamic_client_scopes.as_slice()),
            default_scopes: &settings.dynamic_client_scopes,
            grant_types: if open { &PUBLIC_CODE_FLOW } else { &ANY_GRANT },
            auth_methods: if open {
                &[AuthMethod::None]
            } else {
                &ANY_METHOD
            },
            default_auth_method: if open {
                AuthMethod::None
            } else {
                // RFC 7591 §2: "If unspecified or omitted, the default is client_secret_basic".
                AuthMethod::ClientSecretBasic
            },
            audiences: &settings.dynamic_client_audiences,
            default_name: "Unnamed application",
        }
    }

    /// For a client named by its metadata document: no shared secret can exist (draft-ietf-
    /// oauth-client-id-metadata-document §4.1), so `none` or `private_key_jwt`, and the code
    /// flow only.
    pub fn for_metadata_document(
        settings: &'a crate::config::Settings,
        default_name: &'a str,
    ) -> Rules<'a> {
        Rules {
            scope_ceiling: Some(&settings.dynamic_client_scopes),
            default_scopes: &settings.dynamic_client_scopes,
            grant_types: &PUBLIC_CODE_FLOW,
            auth_methods: &[AuthMethod::None, AuthMethod::PrivateKeyJwt],
            default_auth_method: AuthMethod::None,
            audiences: &settings.dynamic_client_audiences,
            default_name,
        }
    }
}

impl ClientMetadata {
    /// The registration of client `id` under `rules` (its fields are then validated like any
    /// other registration: `clients::validate`).
    pub fn to_new_client(&self, id: &str, rules: &Rules<'_>) -> Result<NewClient, OAuthError> {
        if self.software_statement {
            return Err(metadata_error(
                ErrorCode::UnapprovedSoftwareStatement,
                "software statements are not accepted by this server",
            ));
        }
        // §2: redirect URIs of a client nobody vetted are `https` or loopback `http` (a
        // private-use scheme can be claimed by any app on the device); fragments and
        // wildcards are refused by the registry's own rules, with the same error code.
        for (field, uris) in [
            ("redirect_uris", &self.redirect_uris),
            ("post_logout_redirect_uris", &self.post_logout_redirect_uris),
        ] {
            if let Some(bad) = uris
                .iter()
                .find(|u| !crate::oauth::uri::is_https_or_loopback(u))
            {
                return Err(metadata_error(
                    ErrorCode::InvalidRedirectUri,
                    format!(
                        "{field}: `{}` must use https, or http on a loopback address",
                        bad.chars().take(80).collect::<String>()
                    ),
                ));
            }
        }
        let method = match self.token_endpoint_auth_method.as_deref() {
            None => rules.default_auth_method,
            Some(text) => AuthMethod::parse(text)
                .filter(|m| rules.auth_methods.contains(m))
                .ok_or_else(|| {
                    invalid_metadata(format!(
                        "token_endpoint_auth_method: `{}` is not allowed here (allowed: {})",
                        text.chars().take(40).collect::<String>(),
                        rules
                            .auth_methods
                            .iter()
                            .map(|m| m.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?,
        };
        let grant_types = match &self.grant_types {
            None => vec![GrantType::AuthorizationCode],
            Some(names) => names
                .iter()
                .map(|name| {
                    GrantType::parse(name)
                        .filter(|g| rules.grant_types.contains(g))
                        .ok_or_else(|| {
                            invalid_metadata(format!(
                                "grant_types: `{}` is not allowed here (allowed: {})",
                                name.chars().take(60).collect::<String>(),
                                rules
                                    .grant_types
                                    .iter()
                                    .map(|g| g.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ))
                        })
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        if !rules.grant_types.contains(&GrantType::ClientCredentials)
            && !grant_types.contains(&GrantType::AuthorizationCode)
        {
            return Err(invalid_metadata(
                "grant_types: authorization_code is required here",
            ));
        }
        // RFC 7591 §2.1: response types and grant types agree.
        let code = grant_types.contains(&GrantType::AuthorizationCode);
        if let Some(types) = &self.response_types {
            if let Some(other) = types.iter().find(|t| t.as_str() != "code") {
                return Err(invalid_metadata(format!(
                    "response_types: only `code` is supported, not `{}`",
                    other.chars().take(40).collect::<String>()
                )));
            }
            if code != types.iter().any(|t| t == "code") {
                return Err(invalid_metadata(
                    "response_types: `code` goes with the authorization_code grant type, and only with it",
                ));
            }
        }
        let requested: Option<Vec<String>> = self
            .scope
            .as_deref()
            .map(|s| s.split_whitespace().map(str::to_string).collect());
        if let Some(bad) = requested
            .iter()
            .flatten()
            .find(|s| !crate::oauth::scope::is_scope_token(s))
        {
            return Err(invalid_metadata(format!(
                "scope: `{}` is not a valid scope token",
                bad.chars().take(60).collect::<String>()
            )));
        }
        let scopes: Vec<String> = match (requested, rules.scope_ceiling) {
            (None, _) => rules.default_scopes.to_vec(),
            (Some(asked), Some(ceiling)) => {
                asked.into_iter().filter(|s| ceiling.contains(s)).collect()
            }
            (Some(asked), None) => asked,
        };
        if self.jwks_uri.is_some() && method != AuthMethod::PrivateKeyJwt {
            return Err(invalid_metadata(
                "jwks_uri: keys are only used with private_key_jwt",
            ));
        }
        Ok(NewClient {
            id: id.to_string(),
            name: self
                .client_name
                .clone()
                .filter(|n| !n.trim().is_empty())
                .unwrap_or_else(|| rules.default_name.to_string()),
            secret: if method == AuthMethod::None {
                SecretChoice::Public
            } else {
                SecretChoice::Generate
            },
            auth_method: Some(method.as_str().to_string()),
            grant_types: grant_types.iter().map(|g| g.as_str().to_string()).collect(),
            scopes,
            audiences: rules.audiences.to_vec(),
            redirect_uris: self.redirect_uris.clone(),
            post_logout_redirect_uris: self.post_logout_redirect_uris.clone(),
            roles: Vec::new(),
            jwks: self.jwks.clone(),
            id_token_signed_response_alg: self.id_token_signed_response_alg.clone(),
            introspection_audiences: Vec::new(),
            require_pushed_authorization_requests: self.require_pushed_authorization_requests,
            dpop_bound_access_tokens: self.dpop_bound_access_tokens,
        })
    }

    /// The descriptive metadata as stored (a JSON object), if any.
    pub fn descriptive_json(&self) -> Option<String> {
        (!self.descriptive.is_empty()).then(|| Value::Object(self.descriptive.clone()).to_string())
    }
}

/// A registry refusal as RFC 7591 §3.2.2 words it: redirect URIs have their own code.
pub fn registry_error(error: RegistryError) -> OAuthError {
    match error {
        RegistryError::Invalid(
            field @ ("redirect_uris" | "post_logout_redirect_uris"),
            message,
        ) => metadata_error(ErrorCode::InvalidRedirectUri, format!("{field}: {message}")),
        RegistryError::Invalid(field, message) => invalid_metadata(format!("{field}: {message}")),
        RegistryError::InitialTokenUnusable => initial_token_refused(),
        RegistryError::Conflict(what) => OAuthError::server_error(&format!("{what} exists")),
        RegistryError::NotFound(_) | RegistryError::NoInitialToken(_) => {
            invalid_registration_token()
        }
        RegistryError::Store(e) => OAuthError::temporarily_unavailable(&e),
    }
}

fn initial_token_refused() -> OAuthError {
    let mut error = OAuthError::new(
        ErrorCode::InvalidToken,
        "the initial access token is not valid, expired or used up",
    );
    error.challenge = Challenge::Bearer;
    error
}

/// RFC 7592 §2: a wrong or missing registration access token, or a client that is not (or
/// no longer) there — the same answer, so the token's holder learns nothing else.
fn invalid_registration_token() -> OAuthError {
    let mut error = OAuthError::new(
        ErrorCode::InvalidToken,
        "the registration access token is not valid for this client",
    );
    error.challenge = Challenge::Bearer;
    error
}

fn token_required(what: &'static str) -> OAuthError {
    let mut error = OAuthError::new(ErrorCode::InvalidToken, what);
    error.challenge = Challenge::BearerRealmOnly;
    error
}

/// Runs blocking registry work off the request workers, within a deadline.
async fn blocking<T, F>(app: &App, work: F) -> Result<T, OAuthError>
where
    T: Send + 'static,
    F: FnOnce(&App) -> Result<T, OAuthError> + Send + 'static,
{
    let app = app.clone();
    let deadline = app.store().deadline() * 2;
    match tokio::time::timeout(deadline, tokio::task::spawn_blocking(move || work(&app))).await {
        Ok(Ok(result)) => result,
        Ok(Err(e)) => Err(OAuthError::server_error(&e)),
        Err(_) => Err(OAuthError::temporarily_unavailable(
            &"registration timed out",
        )),
    }
}

/// RFC 7591 §3.2.1 with RFC 7592 §3: the client's metadata as registered, with its
/// management credentials.
pub fn client_information(
    app: &App,
    client: &Client,
    registration_access_token: &str,
    client_secret: Option<&str>,
) -> Map<String, Value> {
    let mut info = Map::new();
    let mut put = |name: &str, value: Value| {
        info.insert(name.to_string(), value);
    };
    put("client_id", client.id.clone().into());
    put("client_id_issued_at", client.created_at.into());
    if let Some(secret) = client_secret {
        put("client_secret", secret.into());
    }
    if client.auth_method.is_secret_based() {
        // The secret does not expire by itself (the client does, when unused).
        put("client_secret_expires_at", 0.into());
    }
    put("client_name", client.name.clone().into());
    put("redirect_uris", client.redirect_uris.clone().into());
    if !client.post_logout_redirect_uris.is_empty() {
        put(
            "post_logout_redirect_uris",
            client.post_logout_redirect_uris.clone().into(),
        );
    }
    put(
        "grant_types",
        client
            .grant_types
            .iter()
            .map(|g| g.as_str())
            .collect::<Vec<_>>()
            .into(),
    );
    let response_types: Vec<&str> = if client.allows_grant(GrantType::AuthorizationCode) {
        vec!["code"]
    } else {
        vec![]
    };
    put("response_types", response_types.into());
    put(
        "token_endpoint_auth_method",
        client.auth_method.as_str().into(),
    );
    put("scope", client.scopes.join(" ").into());
    if let Some(jwks) = client
        .jwks
        .as_deref()
        .and_then(|j| serde_json::from_str::<Value>(j).ok())
    {
        put("jwks", jwks);
    }
    if let Some(alg) = client.id_token_signed_response_alg {
        put("id_token_signed_response_alg", alg.as_str().into());
    }
    put(
        "require_pushed_authorization_requests",
        client.require_pushed_authorization_requests.into(),
    );
    put(
        "dpop_bound_access_tokens",
        client.dpop_bound_access_tokens.into(),
    );
    if let Some(Value::Object(descriptive)) = client
        .registration_metadata
        .as_deref()
        .and_then(|m| serde_json::from_str::<Value>(m).ok())
    {
        for (name, value) in descriptive {
            put(&name, value);
        }
    }
    put(
        "registration_client_uri",
        format!("{}{REGISTRATION_PATH}/{}", app.settings().issuer, client.id).into(),
    );
    put(
        "registration_access_token",
        registration_access_token.into(),
    );
    info
}

fn parse_body(body: &[u8]) -> Result<Map<String, Value>, OAuthError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(invalid_metadata("the body must be a JSON object")),
        Err(e) => Err(invalid_metadata(format!("the body is not JSON: {e}"))),
    }
}

/// `POST /register` (RFC 7591 §3.1): registers a client under the configured policy. With
/// `open`, anyone may register public code-flow clients (counted per address); a valid initial
/// access token (`bearer`) registers under `token` rules whatever the policy allows besides.
/// The caller refuses everything under `closed`.
pub async fn register(
    app: &App,
    bearer: Option<&str>,
    body: &[u8],
    address: IpAddr,
) -> Result<Map<String, Value>, OAuthError> {
    let policy = app.settings().registration;
    let initial_token = match bearer {
        Some(token) => {
            let hash = refresh_token::hash(token);
            let now = app.now();
            let lookup = hash.clone();
            let found = app
                .store()
                .run(move |s| s.find_initial_token(&lookup))
                .await
                .map_err(|e| OAuthError::temporarily_unavailable(&e))?;
            match found {
                Some(token) if token.usable(now) => Some((hash, token.id)),
                _ => return Err(initial_token_refused()),
            }
        }
        None if policy == RegistrationPolicy::Token => {
            return Err(token_required(
                "an initial access token is required to register a client",
            ))
        }
        None => None,
    };
    let registered_with = if initial_token.is_some() {
        RegistrationPolicy::Token
    } else {
        RegistrationPolicy::Open
    };
    if initial_token.is_none() {
        let per_hour = app.settings().registrations_per_ip_per_hour;
        if per_hour > 0 {
            let key = format!(
                "register:{}",
                crate::credential_limits::counted_network(address)
            );
            let limit = crate::limits::Limit {
                max: per_hour,
                window: 3600,
            };
            if let Err(retry_after) = app.limiter().add(&key, 1, limit, app.now()).await {
                metrics::counter!("portcullis_rate_limited_total", "endpoint" => "register")
                    .increment(1);
                return Err(OAuthError::too_many_requests(retry_after));
            }
        }
    }
    let document = parse_body(body)?;
    let metadata = ClientMetadata::parse(&document)?;
    if metadata.jwks_uri.is_some() {
        return Err(invalid_metadata(
            "jwks_uri: not accepted at registration; send the keys as jwks",
        ));
    }
    let id = format!(
        "dyn-{}",
        crate::secrets::generate_token()
            .map_err(|e| OAuthError::server_error(&e))?
            .get(..22)
            .unwrap_or_default()
    );
    let new = metadata.to_new_client(&id, &Rules::for_policy(app, registered_with))?;
    let registration_token =
        crate::secrets::generate_token().map_err(|e| OAuthError::server_error(&e))?;
    let dynamic = DynamicRegistration {
        policy: registered_with,
        token_hash: refresh_token::hash(&registration_token),
        metadata: metadata.descriptive_json(),
    };
    let spend = initial_token.as_ref().map(|(hash, _)| hash.clone());
    let created = blocking(app, move |app| {
        app.clients()
            .register_dynamic(&new, dynamic, spend.as_deref())
            .map_err(registry_error)
    })
    .await?;
    app.audit().record(
        "client_registered",
        Some(&created.client.id),
        None,
        serde_json::json!({
            "policy": registered_with.as_str(),
            "initial_access_token": initial_token.as_ref().map(|(_, id)| id),
            "client_name": created.client.name,
            "redirect_uris": created.client.redirect_uris,
            "ip": address.to_string(),
        }),
    );
    Ok(client_information(
        app,
        &created.client,
        &registration_token,
        created.client_secret.as_deref(),
    ))
}

/// RFC 7592 §2: the dynamic client `client_id`, if `bearer` is its registration access token
/// (compared as SHA-256 digests, in constant time).
async fn authorized(
    app: &App,
    client_id: &str,
    bearer: Option<&str>,
) -> Result<Arc<Client>, OAuthError> {
    let token =
        bearer.ok_or_else(|| token_required("the registration access token is required"))?;
    if !crate::clients::is_valid_client_id(client_id) {
        return Err(invalid_registration_token());
    }
    let id = client_id.to_string();
    let client = app
        .store()
        .run(move |s| s.find_client(&id))
        .await
        .map_err(|e| OAuthError::temporarily_unavailable(&e))?
        .filter(|c| c.kind == ClientKind::Dynamic)
        .ok_or_else(invalid_registration_token)?;
    let presented = refresh_token::hash(token);
    let matches = client
        .registration_token_hash
        .as_deref()
        .is_some_and(|stored| bool::from(stored.as_bytes().ct_eq(presented.as_bytes())));
    if !matches {
        tracing::info!(client_id = %client.id, "registration access token refused");
        return Err(invalid_registration_token());
    }
    Ok(Arc::new(client))
}

/// `GET /register/{client_id}` (RFC 7592 §2.1).
pub async fn read(
    app: &App,
    client_id: &str,
    bearer: Option<&str>,
) -> Result<Map<String, Value>, OAuthError> {
    let client = authorized(app, client_id, bearer).await?;
    Ok(client_information(
        app,
        &client,
        bearer.unwrap_or_default(),
        None,
    ))
}

/// `PUT /register/{client_id}` (RFC 7592 §2.2): the whole metadata again, replacing what was
/// registered (an omitted field is cleared or takes its default), under the rules of the
/// policy the client was registered with. Its id, secret and registration access token stay.
pub async fn update(
    app: &App,
    client_id: &str,
    bearer: Option<&str>,
    body: &[u8],
) -> Result<Map<String, Value>, OAuthError> {
    let current = authorized(app, client_id, bearer).await?;
    let document = parse_body(body)?;
    // §2.2: these are the server's to give, never the client's to send.
    for name in [
        "registration_access_token",
        "registration_client_uri",
        "client_secret_expires_at",
        "client_id_issued_at",
    ] {
        if document.contains_key(name) {
            return Err(OAuthError::invalid_request(format!(
                "the request must not include {name} (RFC 7592 §2.2)"
            )));
        }
    }
    if document.get("client_id").and_then(Value::as_str) != Some(current.id.as_str()) {
        return Err(invalid_metadata(
            "client_id: the request must include the client's own client_id",
        ));
    }
    // §2.2: a client_secret, when sent, must be the current one; it cannot be chosen.
    if let Some(secret) = document.get("client_secret") {
        let ok = secret.as_str().is_some_and(|s| {
            current
                .secret_hash
                .as_deref()
                .is_some_and(|hash| app.clients().hasher().verify(s, hash))
        });
        if !ok {
            return Err(invalid_metadata(
                "client_secret: does not match the client's secret (it cannot be changed)",
            ));
        }
    }
    let metadata = ClientMetadata::parse(&document)?;
    if metadata.jwks_uri.is_some() {
        return Err(invalid_metadata(
            "jwks_uri: not accepted at registration; send the keys as jwks",
        ));
    }
    let policy = current.registered_with.unwrap_or(RegistrationPolicy::Open);
    let new = metadata.to_new_client(&current.id, &Rules::for_policy(app, policy))?;
    let descriptive = metadata.descriptive_json();
    let before = current.clone();
    let updated = blocking(app, move |app| {
        app.clients()
            .update_dynamic(&before, &new, descriptive)
            .map_err(registry_error)
    })
    .await?;
    app.audit().record(
        "client_updated",
        Some(&updated.id),
        None,
        serde_json::json!({
            "client_name": updated.name,
            "redirect_uris": updated.redirect_uris,
        }),
    );
    Ok(client_information(
        app,
        &updated,
        bearer.unwrap_or_default(),
        None,
    ))
}

/// `DELETE /register/{client_id}` (RFC 7592 §2.3): the client, its grants and its tokens go.
pub async fn delete(app: &App, client_id: &str, bearer: Option<&str>) -> Result<(), OAuthError> {
    let client = authorized(app, client_id, bearer).await?;
    let id = client.id.clone();
    blocking(app, move |app| {
        app.clients().delete(&id).map_err(registry_error)
    })
    .await?;
    app.audit().record(
        "client_deleted",
        Some(&client.id),
        None,
        serde_json::json!({ "by": "client" }),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: Value) -> Result<ClientMetadata, OAuthError> {
        ClientMetadata::parse(value.as_object().unwrap())
    }

    fn open_rules(scopes: &[String]) -> Rules<'_> {
        Rules {
            scope_ceiling: Some(scopes),
            default_scopes: scopes,
            grant_types: &PUBLIC_CODE_FLOW,
            auth_methods: &[AuthMethod::None],
            default_auth_method: AuthMethod::None,
            audiences: &[],
            default_name: "Unnamed application",
        }
    }

    #[test]
    fn an_mcp_client_registration_is_a_public_code_flow_client() {
        let scopes = vec!["openid".to_string(), "offline_access".to_string()];
        let metadata = parse(serde_json::json!({
            "client_name": "Claude Code (portcullis)",
            "redirect_uris": ["http://localhost:53682/callback"],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
            "scope": "openid offline_access mcp:tools",
            "unknown_field": {"ignored": true},
        }))
        .unwrap();
        let new = metadata
            .to_new_client("dyn-x", &open_rules(&scopes))
            .unwrap();
        assert!(matches!(new.secret, SecretChoice::Public));
        assert_eq!(new.scopes, scopes, "scopes beyond the ceiling are dropped");
        assert_eq!(new.grant_types, vec!["authorization_code", "refresh_token"]);
        assert_eq!(new.name, "Claude Code (portcullis)");
    }

    #[test]
    fn refusals_name_the_rfc_7591_error() {
        let scopes = vec!["openid".to_string()];
        let rules = open_rules(&scopes);
        let code_of = |value: Value| match parse(value) {
            Err(e) => e.code,
            Ok(m) => match m.to_new_client("dyn-x", &rules) {
                Err(e) => e.code,
                Ok(_) => panic!("accepted"),
            },
        };
        use ErrorCode::*;
        assert_eq!(
            code_of(serde_json::json!({"redirect_uris": "https://a/cb"})),
            InvalidRedirectUri
        );
        assert_eq!(
            code_of(serde_json::json!({"redirect_uris": [1]})),
            InvalidRedirectUri
        );
        assert_eq!(
            code_of(
                serde_json::json!({"redirect_uris": ["https://a/cb"], "token_endpoint_auth_method": "client_secret_basic"})
            ),
            InvalidClientMetadata
        );
        assert_eq!(
            code_of(
                serde_json::json!({"redirect_uris": ["https://a/cb"], "grant_types": ["client_credentials"]})
            ),
            InvalidClientMetadata
        );
        assert_eq!(
            code_of(
                serde_json::json!({"redirect_uris": ["https://a/cb"], "grant_types": ["implicit"]})
            ),
            InvalidClientMetadata
        );
        assert_eq!(
            code_of(
                serde_json::json!({"redirect_uris": ["https://a/cb"], "response_types": ["token"]})
            ),
            InvalidClientMetadata
        );
        assert_eq!(
            code_of(serde_json::json!({"redirect_uris": ["https://a/cb"], "scope": "bad\"scope"})),
            InvalidClientMetadata
        );
        assert_eq!(
            code_of(
                serde_json::json!({"redirect_uris": ["https://a/cb"], "logo_uri": "javascript:alert(1)"})
            ),
            InvalidClientMetadata
        );
        assert_eq!(
            code_of(
                serde_json::json!({"redirect_uris": ["https://a/cb"], "software_statement": "eyJ.x.y"})
            ),
            UnapprovedSoftwareStatement
        );
        assert_eq!(
            code_of(serde_json::json!({"redirect_uris": ["https://a/cb"], "client_name": 7})),
            InvalidClientMetadata
        );
    }
}
