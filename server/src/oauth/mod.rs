//! OAuth 2.0 protocol rules, independent of any HTTP framework.

pub mod authorize;
pub mod client_auth;
pub mod client_metadata_document;
pub mod delegation;
pub mod device_authorization;
pub mod discovery;
pub mod dpop;
pub mod grants;
pub mod introspection;
pub mod par;
pub mod params;
pub mod pkce;
pub mod registration;
pub mod revocation;
pub mod scope;
pub mod uri;
pub mod userinfo;
