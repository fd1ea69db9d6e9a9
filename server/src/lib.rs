//! Portcullis: an OAuth 2.0 / OpenID Connect authorization server.

pub mod app;
pub mod audit;
pub mod authorization;
pub mod client_address;
pub mod clients;
pub mod clock;
pub mod config;
pub mod credential_limits;
pub mod endpoints;
pub mod error;
pub mod healthcheck;
pub mod http_limits;
pub mod jose;
pub mod limits;
pub mod memory;
pub mod oauth;
pub mod redis_link;
pub mod routes;
pub mod secrets;
pub mod session;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod tokens;
pub mod users;
pub mod views;
