//! Delegation (RFC 8693 §1.1): a person lets an agent act for them by consenting to the scope
//! `delegate:<the agent's client_id>`. An access token whose scope holds exactly one such scope
//! carries `may_act` naming that agent (§4.4; the claim names one party), and the agent may
//! exchange it for a token that names it in `act` (§4.1). A person may consent to several
//! agents: a token then names one of them when its scope is narrowed to that delegation.

use serde_json::{json, Value};

use crate::app::App;
use crate::clients::GrantType;
use crate::error::OAuthError;

/// The prefix of a delegation scope: `delegate:<client_id>`.
pub const SCOPE_PREFIX: &str = "delegate:";

/// The agent a delegation scope names, if `scope` is one.
pub fn delegate_of(scope: &str) -> Option<&str> {
    scope
        .strip_prefix(SCOPE_PREFIX)
        .filter(|agent| !agent.is_empty())
}

/// The agents that `scopes` delegate to.
pub fn delegates<'a>(scopes: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    scopes.into_iter().filter_map(delegate_of).collect()
}

/// Checks the delegation scopes of a request before the person is asked: each names a
/// registered client that may exchange tokens.
pub async fn check_requested<'a>(
    app: &App,
    scopes: impl IntoIterator<Item = &'a str>,
) -> Result<(), OAuthError> {
    for agent in delegates(scopes) {
        let found = app
            .clients()
            .find(agent)
            .await
            .map_err(|e| OAuthError::temporarily_unavailable(&e))?;
        if !found.is_some_and(|c| c.allows_grant(GrantType::TokenExchange)) {
            return Err(OAuthError::invalid_scope(format!(
                "`{SCOPE_PREFIX}{agent}` names no client that may act for people"
            )));
        }
    }
    Ok(())
}

/// RFC 8693 §4.4: `may_act` for a token of `scope` (space-separated), when it delegates to
/// exactly one agent.
pub fn may_act(scope: &str) -> Option<Value> {
    match delegates(scope.split(' ')).as_slice() {
        [agent] => Some(json!({ "sub": agent })),
        _ => None,
    }
}

/// Whether `may_act` (a token's claim) names `actor`.
pub fn allows(may_act: Option<&Value>, actor: &str) -> bool {
    may_act
        .and_then(|m| m.get("sub"))
        .and_then(Value::as_str)
        .is_some_and(|sub| sub == actor)
}

/// RFC 8693 §4.1: the `act` claim when `actor` acts on a token that already had `prior` (the
/// earlier actors, nested).
pub fn act_for(actor: &str, prior: Option<&Value>) -> Value {
    match prior {
        Some(prior) => json!({ "sub": actor, "act": prior }),
        None => json!({ "sub": actor }),
    }
}

/// The actors of an `act` claim, the current one first.
pub fn chain(act: Option<&Value>) -> Vec<String> {
    let mut actors = Vec::new();
    let mut next = act;
    while let Some(level) = next {
        actors.push(
            level
                .get("sub")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        );
        next = level.get("act");
    }
    actors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delegation_scopes_name_one_agent() {
        assert_eq!(delegate_of("delegate:agent"), Some("agent"));
        assert_eq!(delegate_of("delegate:"), None);
        assert_eq!(delegate_of("models:read"), None);
        assert_eq!(
            may_act("openid delegate:https://agent.example/id models:read"),
            Some(json!({ "sub": "https://agent.example/id" }))
        );
        assert_eq!(may_act("openid models:read"), None);
        assert_eq!(may_act("delegate:a delegate:b"), None, "one party only");
        assert!(allows(Some(&json!({ "sub": "a" })), "a"));
        assert!(!allows(Some(&json!({ "sub": "a" })), "b"));
        assert!(!allows(None, "a"));
    }

    #[test]
    fn acts_nest_with_the_current_actor_outermost() {
        let first = act_for("b", None);
        let second = act_for("c", Some(&first));
        assert_eq!(second, json!({ "sub": "c", "act": { "sub": "b" } }));
        assert_eq!(chain(Some(&second)), ["c", "b"]);
        assert!(chain(None).is_empty());
    }
}
