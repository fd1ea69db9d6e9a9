//! What an administrator can change, once: the admin JSON API (`endpoints/admin/`) and the
//! admin console (`endpoints/console/`) both call these functions, so the rules (a role must
//! exist before it is given, a public client has no secret, keys rotate only when the next
//! key has been published long enough) and the audit event naming the administrator live in
//! one place. Blocking: call them on the blocking pool (`endpoints::admin::blocking`).

use serde_json::json;

use crate::app::App;
use crate::authorization::{ApiResource, Holder, Role};
use crate::clients::{CreatedClient, NewClient, SecretChoice};
use crate::endpoints::admin::{invalid_field, AdminError, Caller};
use crate::users::{NewUser, User};

/// A public client has no secret; a confidential one gets the supplied secret or a
/// generated one (shown once).
pub fn secret_choice(public: bool, supplied: Option<String>) -> Result<SecretChoice, AdminError> {
    match (public, supplied) {
        (true, Some(_)) => Err(invalid_field(
            "client_secret",
            "a public client has no secret",
        )),
        (true, None) => Ok(SecretChoice::Public),
        (false, Some(secret)) => Ok(SecretChoice::Supplied(secret)),
        (false, None) => Ok(SecretChoice::Generate),
    }
}

fn check_roles_exist(app: &App, roles: &[String]) -> Result<(), AdminError> {
    let model = app.authorization().model();
    for role in roles.iter().flat_map(|r| r.split_whitespace()) {
        if !model.role_exists(role) {
            return Err(invalid_field("roles", format!("no role {role}")));
        }
    }
    Ok(())
}

pub fn create_client(
    app: &App,
    caller: &Caller,
    new: &NewClient,
) -> Result<CreatedClient, AdminError> {
    check_roles_exist(app, &new.roles)?;
    let created = app.clients().create(new)?;
    caller.audit(
        app,
        "client_created",
        json!({ "client_id": created.client.id }),
    );
    Ok(created)
}

/// Replaces an administrator-registered client's metadata (the rules are `create`'s; see
/// `ClientRegistry::update`). Other instances pick the change up at their next poll.
pub fn update_client(
    app: &App,
    caller: &Caller,
    id: &str,
    changes: &NewClient,
) -> Result<CreatedClient, AdminError> {
    check_roles_exist(app, &changes.roles)?;
    let updated = app.clients().update(id, changes)?;
    caller.audit(
        app,
        "client_updated",
        json!({
            "client_id": id,
            "token_endpoint_auth_method": updated.client.auth_method.as_str(),
            "grant_types": updated.client.grant_types.iter().map(|g| g.as_str()).collect::<Vec<_>>(),
            "scope": updated.client.scopes,
            "redirect_uris": updated.client.redirect_uris,
            "roles": updated.client.roles,
            "new_secret": updated.client_secret.is_some(),
        }),
    );
    Ok(updated)
}

/// A new generated secret for a client that authenticates with one (returned, shown once);
/// the old one stops working at once.
pub fn rotate_client_secret(app: &App, caller: &Caller, id: &str) -> Result<String, AdminError> {
    let secret = app.clients().rotate_secret(id)?;
    caller.audit(app, "client_secret_rotated", json!({ "client_id": id }));
    Ok(secret)
}

pub fn delete_client(app: &App, caller: &Caller, id: &str) -> Result<(), AdminError> {
    app.clients().delete(id)?;
    caller.audit(app, "client_deleted", json!({ "client_id": id }));
    Ok(())
}

pub fn create_user(app: &App, caller: &Caller, new: &NewUser) -> Result<User, AdminError> {
    check_roles_exist(app, &new.roles)?;
    let user = app.users().create(new)?;
    caller.audit(app, "user_created", json!({ "username": user.username }));
    Ok(user)
}

pub fn delete_user(app: &App, caller: &Caller, username: &str) -> Result<(), AdminError> {
    app.users().delete(username)?;
    caller.audit(app, "user_deleted", json!({ "username": username }));
    Ok(())
}

/// Disables or enables an account. A disabled account cannot sign in, and its browser
/// sessions stop counting as signed in at their next request.
pub fn set_user_disabled(
    app: &App,
    caller: &Caller,
    username: &str,
    disabled: bool,
) -> Result<(), AdminError> {
    app.users().set_disabled(username, disabled)?;
    let action = if disabled {
        "user_disabled"
    } else {
        "user_enabled"
    };
    caller.audit(app, action, json!({ "username": username }));
    Ok(())
}

/// Forgets every sign-in failure counted for the user, on every instance.
pub fn unlock_user(app: &App, caller: &Caller, username: &str) -> Result<(), AdminError> {
    app.users().unlock(username)?;
    caller.audit(app, "user_unlocked", json!({ "username": username }));
    Ok(())
}

/// Sets a generated password (returned, to be handed over once) under the same rules as
/// `user set-password`.
pub fn set_temporary_password(
    app: &App,
    caller: &Caller,
    username: &str,
) -> Result<String, AdminError> {
    let password = crate::secrets::generate_token()
        .map_err(AdminError::Unavailable)?
        .chars()
        .take(20)
        .collect::<String>();
    app.users().set_password(username, &password)?;
    caller.audit(
        app,
        "user_password_set",
        json!({ "username": username, "temporary": true }),
    );
    Ok(password)
}

/// Gives (`grant`) or takes a role from a user or client; the holder's roles now.
pub fn change_role_holder(
    app: &App,
    caller: &Caller,
    role: &str,
    holder: &Holder,
    grant: bool,
) -> Result<Vec<String>, AdminError> {
    let roles = app
        .authorization()
        .set_holder(role, holder, grant, app.clients())?;
    let (kind, id) = match holder {
        Holder::User(u) => ("user", u.clone()),
        Holder::Client(c) => ("client", c.clone()),
    };
    let action = if grant {
        "role_granted"
    } else {
        "role_revoked"
    };
    caller.audit(app, action, json!({ "role": role, kind: id }));
    Ok(roles)
}

pub fn create_role(
    app: &App,
    caller: &Caller,
    name: &str,
    description: &str,
    scopes: &[String],
) -> Result<Role, AdminError> {
    let role = app.authorization().create_role(name, description, scopes)?;
    caller.audit(
        app,
        "role_created",
        json!({ "role": role.name, "scopes": role.scopes }),
    );
    Ok(role)
}

pub fn set_role_scopes(
    app: &App,
    caller: &Caller,
    name: &str,
    scopes: &[String],
) -> Result<(), AdminError> {
    app.authorization().set_role_scopes(name, scopes)?;
    caller.audit(
        app,
        "role_updated",
        json!({ "role": name, "scopes": scopes }),
    );
    Ok(())
}

pub fn delete_role(app: &App, caller: &Caller, name: &str) -> Result<(), AdminError> {
    app.authorization().delete_role(name)?;
    caller.audit(app, "role_deleted", json!({ "role": name }));
    Ok(())
}

/// A new API resource; its token lifetime within `max_access_token_ttl`.
pub fn create_resource(
    app: &App,
    caller: &Caller,
    audience: &str,
    name: Option<&str>,
    scopes: &[String],
    access_token_ttl: Option<i64>,
    signing_alg: Option<&str>,
) -> Result<ApiResource, AdminError> {
    let max = i64::try_from(app.settings().max_access_token_ttl).unwrap_or(i64::MAX);
    let resource = app.authorization().create_resource(
        audience,
        name,
        scopes,
        access_token_ttl,
        signing_alg,
        max,
    )?;
    caller.audit(
        app,
        "resource_created",
        json!({ "audience": resource.audience, "scopes": resource.scopes }),
    );
    Ok(resource)
}

/// Replaces an API resource's scopes (none may belong to another resource); the new list.
pub fn set_resource_scopes(
    app: &App,
    caller: &Caller,
    audience: &str,
    scopes: &[String],
) -> Result<Vec<String>, AdminError> {
    let scopes = app.authorization().set_resource_scopes(audience, scopes)?;
    caller.audit(
        app,
        "resource_updated",
        json!({ "audience": audience, "scopes": scopes }),
    );
    Ok(scopes)
}

pub fn delete_resource(app: &App, caller: &Caller, audience: &str) -> Result<(), AdminError> {
    app.authorization().delete_resource(audience)?;
    caller.audit(app, "resource_deleted", json!({ "audience": audience }));
    Ok(())
}

/// What a forced rotation did.
pub struct Rotation {
    pub rotated: Vec<String>,
    pub waiting: Vec<String>,
}

/// Rotates now, with the CLI's safety rule: only when the next key has been published long
/// enough for verifiers to have fetched it (otherwise a conflict naming the wait).
pub fn rotate_keys(app: &App, caller: &Caller) -> Result<Rotation, AdminError> {
    let outcome = app
        .keyring()
        .maintain(true)
        .map_err(|e| AdminError::Unavailable(e.to_string()))?;
    if outcome.rotated.is_empty() && !outcome.waiting.is_empty() {
        return Err(AdminError::Conflict(format!(
            "rotation must wait: {}",
            outcome.waiting.join("; ")
        )));
    }
    for alg in &outcome.rotated {
        app.audit().record(
            "key_rotated",
            Some(&caller.client_id),
            Some(&caller.subject),
            json!({ "alg": alg.as_str(), "trigger": "admin" }),
        );
    }
    Ok(Rotation {
        rotated: outcome
            .rotated
            .iter()
            .map(|a| a.as_str().to_string())
            .collect(),
        waiting: outcome.waiting,
    })
}
