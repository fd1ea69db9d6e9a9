//! The `portcullis` command: the server and its administration.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};

/// mimalloc: fewer cycles and less lock contention than glibc malloc on the token path
/// (measured in docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use portcullis::app::Foundation;
use portcullis::clients::initial_access_tokens::NewInitialToken;
use portcullis::clients::{ClientKind, NewClient, SecretChoice};
use portcullis::clock::{Clock, SharedClock, SystemClock};
use portcullis::config::Settings;
use portcullis::jose::keyring::format_time;
use portcullis::users::NewUser;
use portcullis::{startup, telemetry};

#[derive(Parser)]
#[command(
    name = "portcullis",
    version,
    about = "OAuth 2.0 / OpenID Connect authorization server"
)]
struct Cli {
    /// TOML settings file; `PORTCULLIS_*` environment variables override it.
    #[arg(long, global = true, env = "PORTCULLIS_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage clients.
    #[command(subcommand)]
    Client(ClientCommand),
    /// Dynamic client registration (RFC 7591): initial access tokens.
    #[command(subcommand)]
    Registration(RegistrationCommand),
    /// Manage user accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage roles and who holds them.
    #[command(subcommand)]
    Role(RoleCommand),
    /// Manage API resources (token audiences) and their scopes.
    #[command(subcommand)]
    Resource(ResourceCommand),
    /// Manage signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Exit 0 when the server on the configured address answers /healthz (container probes).
    Healthcheck,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Delete events older than `audit_retention` now (servers also do it hourly).
    Purge,
}

#[derive(Subcommand)]
enum ClientCommand {
    /// Register a client; prints JSON with its id and, when generated, its secret (shown once).
    Create(Box<CreateClient>),
    /// List clients as JSON (each with its `kind`: `static` or `dynamic`).
    List {
        /// Only clients of this kind: `static` (an administrator's) or `dynamic` (RFC 7591).
        #[arg(long, value_parser = ["static", "dynamic"])]
        kind: Option<String>,
    },
    /// Replace an administrator-registered client's metadata (all of it: what is not given
    /// takes its default, as at creation; the authentication method, when not given, stays).
    /// Prints the client as JSON, with a generated secret when it moved to a secret method.
    Update(Box<UpdateClient>),
    /// Give a client that authenticates with a secret a new generated one (printed once); the
    /// old one stops working at once (running servers: at their next poll).
    RotateSecret {
        #[arg(long)]
        id: String,
    },
    /// Delete a client (a dynamic one too).
    Delete {
        #[arg(long)]
        id: String,
    },
}

#[derive(Subcommand)]
enum RegistrationCommand {
    /// Initial access tokens, which registrations present under `registration = "token"`.
    #[command(subcommand)]
    Token(RegistrationTokenCommand),
}

#[derive(Subcommand)]
enum RegistrationTokenCommand {
    /// Create an initial access token; prints JSON with the token (shown once).
    Create {
        /// Who it is for, to recognise it in `list`.
        #[arg(long, default_value = "")]
        description: String,
        /// How long it can be used: seconds, or with a unit (`30m`, `12h`, `7d`); default: no
        /// expiry.
        #[arg(long, value_parser = duration)]
        expires_in: Option<u64>,
        /// How many registrations it allows; default: no limit.
        #[arg(long)]
        max_uses: Option<u64>,
    },
    /// List initial access tokens as JSON (never the tokens themselves).
    List,
    /// Revoke an initial access token (the clients it registered stay).
    Delete {
        #[arg(long)]
        id: String,
    },
}

fn duration(text: &str) -> Result<u64, String> {
    portcullis::config::parse_duration(text)
        .ok_or_else(|| format!("`{text}` is not a duration (90, 15m, 12h, 7d)"))
}

#[derive(Args)]
struct CreateClient {
    #[arg(long)]
    id: String,
    #[arg(long)]
    name: String,
    /// A secret of at least 32 characters (default: a generated one).
    #[arg(long, conflicts_with_all = ["public", "secret_stdin"])]
    secret: Option<String>,
    /// Read the secret from standard input (keeps it out of shell history).
    #[arg(long, conflicts_with = "public")]
    secret_stdin: bool,
    /// A public client: no secret (browser and native apps).
    #[arg(long)]
    public: bool,
    #[arg(long = "grant-type", required = true)]
    grant_types: Vec<String>,
    #[arg(long = "scope")]
    scopes: Vec<String>,
    #[arg(long = "audience")]
    audiences: Vec<String>,
    #[arg(long = "redirect-uri")]
    redirect_uris: Vec<String>,
    #[arg(long = "post-logout-redirect-uri")]
    post_logout_redirect_uris: Vec<String>,
    #[arg(long)]
    token_endpoint_auth_method: Option<String>,
    /// Roles the client itself holds (permissions for client credentials).
    #[arg(long = "role")]
    roles: Vec<String>,
    /// A JWKS file with the client's public keys (selects private_key_jwt).
    #[arg(long)]
    jwks_file: Option<PathBuf>,
    /// ES256 or RS256 for this client's ID tokens (default: the server setting).
    #[arg(long)]
    id_token_signed_response_alg: Option<String>,
    /// An audience whose tokens this client, its resource server, may introspect
    /// (repeatable). Any client may introspect the tokens issued to itself.
    #[arg(long = "introspect-audience")]
    introspection_audiences: Vec<String>,
    /// Accept this client's authorization requests only as pushed requests (RFC 9126).
    #[arg(long)]
    require_pushed_authorization_requests: bool,
    /// Require a DPoP proof with every token request of this client (RFC 9449).
    #[arg(long)]
    dpop_bound_access_tokens: bool,
}

#[derive(Args)]
struct UpdateClient {
    #[arg(long)]
    id: String,
    #[arg(long)]
    name: String,
    /// `none` makes the client public (its secret is removed); a move to `client_secret_*`
    /// from `none` or `private_key_jwt` generates a secret (printed once). Default: unchanged.
    #[arg(long)]
    token_endpoint_auth_method: Option<String>,
    #[arg(long = "grant-type", required = true)]
    grant_types: Vec<String>,
    #[arg(long = "scope")]
    scopes: Vec<String>,
    #[arg(long = "audience")]
    audiences: Vec<String>,
    #[arg(long = "redirect-uri")]
    redirect_uris: Vec<String>,
    #[arg(long = "post-logout-redirect-uri")]
    post_logout_redirect_uris: Vec<String>,
    #[arg(long = "role")]
    roles: Vec<String>,
    /// A JWKS file with the client's public keys (for private_key_jwt).
    #[arg(long)]
    jwks_file: Option<PathBuf>,
    #[arg(long)]
    id_token_signed_response_alg: Option<String>,
    #[arg(long = "introspect-audience")]
    introspection_audiences: Vec<String>,
    #[arg(long)]
    require_pushed_authorization_requests: bool,
    #[arg(long)]
    dpop_bound_access_tokens: bool,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user; the password is read from standard input.
    Create {
        #[arg(long)]
        username: String,
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        #[arg(long = "role")]
        roles: Vec<String>,
        /// Read the password from standard input (required: never on the command line).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// List users as JSON.
    List,
    /// Delete a user, their consents and refresh tokens.
    Delete {
        #[arg(long)]
        username: String,
    },
    /// Set a new password, read from standard input.
    SetPassword {
        #[arg(long)]
        username: String,
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Disable a user: no more sign-ins or refreshes.
    Disable {
        #[arg(long)]
        username: String,
    },
    /// Enable a disabled user.
    Enable {
        #[arg(long)]
        username: String,
    },
    /// Forget the user's failed sign-ins (every waiting period ends), on every instance.
    Unlock {
        #[arg(long)]
        username: String,
    },
}

#[derive(Subcommand)]
enum RoleCommand {
    /// Create a role granting scopes (permissions).
    Create {
        name: String,
        #[arg(long = "scope")]
        scopes: Vec<String>,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Replace the scopes a role grants.
    Update {
        name: String,
        #[arg(long = "scope")]
        scopes: Vec<String>,
    },
    /// List roles as JSON.
    List,
    /// Delete a custom role.
    Delete { name: String },
    /// Grant a role to a user or a client.
    Grant {
        name: String,
        #[command(flatten)]
        holder: HolderArgs,
    },
    /// Revoke a role from a user or a client.
    Revoke {
        name: String,
        #[command(flatten)]
        holder: HolderArgs,
    },
}

#[derive(Args)]
#[group(required = true, multiple = false)]
struct HolderArgs {
    /// A username.
    #[arg(long)]
    user: Option<String>,
    /// A client id.
    #[arg(long)]
    client: Option<String>,
}

#[derive(Subcommand)]
enum ResourceCommand {
    /// Register an API resource: the audience tokens are issued for, and its scopes.
    Create {
        #[arg(long)]
        audience: String,
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        #[arg(long)]
        name: Option<String>,
        /// Access-token lifetime for this audience, in seconds.
        #[arg(long)]
        access_token_ttl: Option<i64>,
        #[arg(long)]
        signing_alg: Option<String>,
    },
    /// List resources as JSON.
    List,
    /// Delete a resource.
    Delete {
        #[arg(long)]
        audience: String,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Show each signing key's state and dates.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Rotate now: the next key (published long enough) starts signing, the active one retires.
    Rotate,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(settings) => settings,
        Err(e) => return fail(&e.to_string()),
    };
    let _log_flush = telemetry::init(settings.log_format);
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(settings),
        Command::Migrate => Foundation::open(&settings).map(|_| println!("migrations applied")),
        Command::Client(command) => client(settings, command),
        Command::Registration(RegistrationCommand::Token(command)) => {
            registration_token(settings, command)
        }
        Command::User(command) => user(settings, command),
        Command::Role(command) => role(settings, command),
        Command::Resource(command) => resource(settings, command),
        Command::Keys(command) => keys(settings, command),
        Command::Audit(AuditCommand::Purge) => Foundation::open(&settings).and_then(|f| {
            let deleted = portcullis::app::purge_audit(&f.store, &settings, SystemClock.now())?;
            print_json(&serde_json::json!({ "deleted": deleted }))
        }),
        Command::Healthcheck => portcullis::healthcheck::run(&settings),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}

fn clock() -> SharedClock {
    Arc::new(SystemClock)
}

fn serve(settings: Settings) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let running = startup::build(settings.clone(), clock()).await?;
        tracing::info!(
            issuer = %settings.issuer,
            port = running.port,
            database = ?running.app.store().backend(),
            "portcullis listening"
        );
        running.run_until_stopped().await
    })
}

/// Records a change made from the command line in the audit log.
fn cli_audit(foundation: &Foundation, action: &str, details: serde_json::Value) {
    let mut details = details;
    if let Some(map) = details.as_object_mut() {
        map.insert(
            "action".into(),
            serde_json::Value::String(action.to_string()),
        );
    }
    portcullis::audit::Audit::start(foundation.store.clone(), clock()).record(
        "admin_change",
        None,
        Some("cli"),
        details,
    );
}

fn print_json(value: &impl serde::Serialize) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    println!("{text}");
    Ok(())
}

/// Roles must exist before a client holds them.
fn check_roles(
    foundation: &Foundation,
    settings: &Settings,
    roles: &[String],
) -> Result<(), String> {
    let model = foundation.authorization(settings, clock())?.model();
    for role in roles.iter().flat_map(|r| r.split_whitespace()) {
        if !model.role_exists(role) {
            return Err(format!(
                "roles: no role {role} (create it with `portcullis role create`)"
            ));
        }
    }
    Ok(())
}

fn client(settings: Settings, command: ClientCommand) -> Result<(), String> {
    let foundation = Foundation::open(&settings)?;
    let registry = foundation.client_registry(clock());
    match command {
        ClientCommand::Create(args) => {
            let secret = if args.public {
                SecretChoice::Public
            } else if args.secret_stdin {
                let mut text = String::new();
                std::io::stdin()
                    .read_to_string(&mut text)
                    .map_err(|e| format!("reading the secret from stdin: {e}"))?;
                SecretChoice::Supplied(text.trim_end_matches(['\r', '\n']).to_string())
            } else {
                args.secret
                    .map_or(SecretChoice::Generate, SecretChoice::Supplied)
            };
            let jwks = match &args.jwks_file {
                Some(path) => Some(
                    std::fs::read_to_string(path)
                        .map_err(|e| format!("--jwks-file {}: {e}", path.display()))?,
                ),
                None => None,
            };
            check_roles(&foundation, &settings, &args.roles)?;
            let created = registry
                .create(&NewClient {
                    id: args.id,
                    name: args.name,
                    secret,
                    auth_method: args.token_endpoint_auth_method,
                    grant_types: args.grant_types,
                    scopes: args.scopes,
                    audiences: args.audiences,
                    redirect_uris: args.redirect_uris,
                    post_logout_redirect_uris: args.post_logout_redirect_uris,
                    roles: args.roles,
                    jwks,
                    id_token_signed_response_alg: args.id_token_signed_response_alg,
                    introspection_audiences: args.introspection_audiences,
                    require_pushed_authorization_requests: args
                        .require_pushed_authorization_requests,
                    dpop_bound_access_tokens: args.dpop_bound_access_tokens,
                })
                .map_err(|e| e.to_string())?;
            cli_audit(
                &foundation,
                "client_created",
                serde_json::json!({ "client_id": created.client.id }),
            );
            print_json(&created)
        }
        ClientCommand::List { kind } => {
            let mut clients = registry.list().map_err(|e| e.to_string())?;
            if let Some(kind) = kind {
                clients.retain(|c| match c.kind {
                    ClientKind::Dynamic => kind == "dynamic",
                    _ => kind == "static",
                });
            }
            print_json(&clients)
        }
        ClientCommand::Update(args) => {
            let jwks = match &args.jwks_file {
                Some(path) => Some(
                    std::fs::read_to_string(path)
                        .map_err(|e| format!("--jwks-file {}: {e}", path.display()))?,
                ),
                None => None,
            };
            check_roles(&foundation, &settings, &args.roles)?;
            let updated = registry
                .update(
                    &args.id,
                    &NewClient {
                        id: args.id.clone(),
                        name: args.name,
                        secret: SecretChoice::Generate,
                        auth_method: args.token_endpoint_auth_method,
                        grant_types: args.grant_types,
                        scopes: args.scopes,
                        audiences: args.audiences,
                        redirect_uris: args.redirect_uris,
                        post_logout_redirect_uris: args.post_logout_redirect_uris,
                        roles: args.roles,
                        jwks,
                        id_token_signed_response_alg: args.id_token_signed_response_alg,
                        introspection_audiences: args.introspection_audiences,
                        require_pushed_authorization_requests: args
                            .require_pushed_authorization_requests,
                        dpop_bound_access_tokens: args.dpop_bound_access_tokens,
                    },
                )
                .map_err(|e| e.to_string())?;
            cli_audit(
                &foundation,
                "client_updated",
                serde_json::json!({
                    "client_id": updated.client.id,
                    "new_secret": updated.client_secret.is_some(),
                }),
            );
            print_json(&updated)
        }
        ClientCommand::RotateSecret { id } => {
            let secret = registry.rotate_secret(&id).map_err(|e| e.to_string())?;
            cli_audit(
                &foundation,
                "client_secret_rotated",
                serde_json::json!({ "client_id": id }),
            );
            print_json(&serde_json::json!({ "client_id": id, "client_secret": secret }))
        }
        ClientCommand::Delete { id } => {
            registry.delete(&id).map_err(|e| e.to_string())?;
            cli_audit(
                &foundation,
                "client_deleted",
                serde_json::json!({ "client_id": id }),
            );
            print_json(&serde_json::json!({ "deleted": id }))
        }
    }
}

fn registration_token(settings: Settings, command: RegistrationTokenCommand) -> Result<(), String> {
    let foundation = Foundation::open(&settings)?;
    let registry = foundation.client_registry(clock());
    match command {
        RegistrationTokenCommand::Create {
            description,
            expires_in,
            max_uses,
        } => {
            let created = registry
                .create_initial_token(&NewInitialToken {
                    description,
                    expires_in,
                    max_uses,
                })
                .map_err(|e| e.to_string())?;
            cli_audit(
                &foundation,
                "initial_access_token_created",
                serde_json::json!({
                    "id": created.record.id,
                    "expires_at": created.record.expires_at,
                    "max_uses": created.record.max_uses,
                }),
            );
            print_json(&created)
        }
        RegistrationTokenCommand::List => {
            print_json(&registry.list_initial_tokens().map_err(|e| e.to_string())?)
        }
        RegistrationTokenCommand::Delete { id } => {
            registry
                .delete_initial_token(&id)
                .map_err(|e| e.to_string())?;
            cli_audit(
                &foundation,
                "initial_access_token_deleted",
                serde_json::json!({ "id": id }),
            );
            print_json(&serde_json::json!({ "deleted": id }))
        }
    }
}

fn read_password() -> Result<String, String> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|e| format!("reading the password from stdin: {e}"))?;
    Ok(text.trim_end_matches(['\r', '\n']).to_string())
}

fn user(settings: Settings, command: UserCommand) -> Result<(), String> {
    let foundation = Foundation::open(&settings)?;
    let users = foundation.users(&settings, clock())?;
    match command {
        UserCommand::Create {
            username,
            email,
            name,
            roles,
            password_stdin: _,
        } => {
            let model = foundation.authorization(&settings, clock())?.model();
            for role in roles.iter().flat_map(|r| r.split_whitespace()) {
                if !model.role_exists(role) {
                    return Err(format!(
                        "roles: no role {role} (create it with `portcullis role create`)"
                    ));
                }
            }
            let password = read_password()?;
            let user = users
                .create(&NewUser {
                    username,
                    email,
                    name,
                    roles,
                    password,
                })
                .map_err(|e| e.to_string())?;
            cli_audit(
                &foundation,
                "user_created",
                serde_json::json!({ "username": user.username }),
            );
            print_json(&user)
        }
        UserCommand::List => print_json(&users.list().map_err(|e| e.to_string())?),
        UserCommand::Delete { username } => {
            users.delete(&username).map_err(|e| e.to_string())?;
            cli_audit(
                &foundation,
                "user_deleted",
                serde_json::json!({ "username": username }),
            );
            print_json(&serde_json::json!({ "deleted": username }))
        }
        UserCommand::SetPassword { username, .. } => {
            let password = read_password()?;
            users
                .set_password(&username, &password)
                .map_err(|e| e.to_string())?;
            cli_audit(
                &foundation,
                "user_password_set",
                serde_json::json!({ "username": username }),
            );
            print_json(&serde_json::json!({ "password_set": username }))
        }
        UserCommand::Disable { username } => {
            users
                .set_disabled(&username, true)
                .map_err(|e| e.to_string())?;
            cli_audit(
                &foundation,
                "user_disabled",
                serde_json::json!({ "username": username }),
            );
            print_json(&serde_json::json!({ "disabled": username }))
        }
        UserCommand::Unlock { username } => {
            users.unlock(&username).map_err(|e| e.to_string())?;
            cli_audit(
                &foundation,
                "user_unlocked",
                serde_json::json!({ "username": username }),
            );
            print_json(&serde_json::json!({ "unlocked": username }))
        }
        UserCommand::Enable { username } => {
            users
                .set_disabled(&username, false)
                .map_err(|e| e.to_string())?;
            cli_audit(
                &foundation,
                "user_enabled",
                serde_json::json!({ "username": username }),
            );
            print_json(&serde_json::json!({ "enabled": username }))
        }
    }
}

fn role(settings: Settings, command: RoleCommand) -> Result<(), String> {
    use portcullis::authorization::Holder;
    let foundation = Foundation::open(&settings)?;
    let authorization = foundation.authorization(&settings, clock())?;
    let holder = |h: HolderArgs| match (h.user, h.client) {
        (Some(user), _) => Holder::User(user),
        (None, Some(client)) => Holder::Client(client),
        (None, None) => Holder::User(String::new()),
    };
    let text = |e: portcullis::authorization::AuthorizationError| e.to_string();
    match command {
        RoleCommand::Create {
            name,
            scopes,
            description,
        } => {
            let role = authorization
                .create_role(&name, &description, &scopes)
                .map_err(text)?;
            cli_audit(
                &foundation,
                "role_created",
                serde_json::json!({ "role": role.name, "scopes": role.scopes }),
            );
            print_json(&role)
        }
        RoleCommand::Update { name, scopes } => {
            authorization
                .set_role_scopes(&name, &scopes)
                .map_err(text)?;
            cli_audit(
                &foundation,
                "role_updated",
                serde_json::json!({ "role": name, "scopes": scopes }),
            );
            print_json(&serde_json::json!({ "updated": name }))
        }
        RoleCommand::List => print_json(&authorization.list_roles().map_err(text)?),
        RoleCommand::Delete { name } => {
            authorization.delete_role(&name).map_err(text)?;
            cli_audit(
                &foundation,
                "role_deleted",
                serde_json::json!({ "role": name }),
            );
            print_json(&serde_json::json!({ "deleted": name }))
        }
        RoleCommand::Grant { name, holder: h } => {
            let registry = foundation.client_registry(clock());
            let roles = authorization
                .set_holder(&name, &holder(h), true, &registry)
                .map_err(text)?;
            cli_audit(
                &foundation,
                "role_granted",
                serde_json::json!({ "role": name, "roles": roles }),
            );
            print_json(&serde_json::json!({ "roles": roles }))
        }
        RoleCommand::Revoke { name, holder: h } => {
            let registry = foundation.client_registry(clock());
            let roles = authorization
                .set_holder(&name, &holder(h), false, &registry)
                .map_err(text)?;
            cli_audit(
                &foundation,
                "role_revoked",
                serde_json::json!({ "role": name, "roles": roles }),
            );
            print_json(&serde_json::json!({ "roles": roles }))
        }
    }
}

fn resource(settings: Settings, command: ResourceCommand) -> Result<(), String> {
    let foundation = Foundation::open(&settings)?;
    let authorization = foundation.authorization(&settings, clock())?;
    let text = |e: portcullis::authorization::AuthorizationError| e.to_string();
    match command {
        ResourceCommand::Create {
            audience,
            scopes,
            name,
            access_token_ttl,
            signing_alg,
        } => {
            let max = i64::try_from(settings.max_access_token_ttl).unwrap_or(i64::MAX);
            let resource = authorization
                .create_resource(
                    &audience,
                    name.as_deref(),
                    &scopes,
                    access_token_ttl,
                    signing_alg.as_deref(),
                    max,
                )
                .map_err(text)?;
            cli_audit(
                &foundation,
                "resource_created",
                serde_json::json!({ "audience": resource.audience, "scopes": resource.scopes }),
            );
            print_json(&resource)
        }
        ResourceCommand::List => print_json(&authorization.list_resources().map_err(text)?),
        ResourceCommand::Delete { audience } => {
            authorization.delete_resource(&audience).map_err(text)?;
            cli_audit(
                &foundation,
                "resource_deleted",
                serde_json::json!({ "audience": audience }),
            );
            print_json(&serde_json::json!({ "deleted": audience }))
        }
    }
}

fn keys(settings: Settings, command: KeysCommand) -> Result<(), String> {
    let foundation = Foundation::open(&settings)?;
    let keyring = foundation.keyring(&settings, clock())?;
    match command {
        KeysCommand::List { json } => {
            let current = keyring.current();
            if json {
                let rows: Vec<_> = current
                    .records
                    .iter()
                    .map(|k| {
                        serde_json::json!({
                            "kid": k.kid, "alg": k.alg, "state": k.state,
                            "created_at": k.created_at, "activated_at": k.activated_at,
                            "retired_at": k.retired_at, "remove_after": k.remove_after,
                        })
                    })
                    .collect();
                return print_json(&rows);
            }
            println!(
                "{:<44} {:<6} {:<8} {:<21} {:<21} {:<21}",
                "KID", "ALG", "STATE", "CREATED", "ACTIVATED", "REMOVED AFTER"
            );
            let when = |t: Option<i64>| t.map(format_time).unwrap_or_else(|| "-".into());
            for k in &current.records {
                println!(
                    "{:<44} {:<6} {:<8} {:<21} {:<21} {:<21}",
                    k.kid,
                    k.alg,
                    k.state,
                    format_time(k.created_at),
                    when(k.activated_at),
                    when(k.remove_after)
                );
            }
            Ok(())
        }
        KeysCommand::Rotate => {
            let outcome = keyring.maintain(true).map_err(|e| e.to_string())?;
            for alg in &outcome.rotated {
                portcullis::audit::Audit::start(foundation.store.clone(), clock()).record(
                    "key_rotated",
                    None,
                    Some("cli"),
                    serde_json::json!({ "alg": alg.as_str(), "trigger": "cli" }),
                );
                let kid = keyring
                    .current()
                    .signing_key(*alg)
                    .map(|k| k.kid.clone())
                    .unwrap_or_default();
                println!("{}: now signing with {kid}", alg.as_str());
            }
            if outcome.waiting.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "rotation must wait: {}",
                    outcome.waiting.join("; ")
                ))
            }
        }
    }
}
