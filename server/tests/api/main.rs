//! One integration-test binary: every module below shares `helpers::spawn_app`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod hardening;
mod helpers;

mod account;
mod admin_api;
mod admin_client_edits;
mod admin_console;
mod admin_resource_edits;
mod agents;
mod authorization;
mod browser;
mod cli;
mod client_credentials;
mod client_metadata_documents;
mod device;
mod discovery;
mod dpop;
mod fault_proxy;
mod faults;
mod instances;
mod jwks;
mod limits;
mod par;
mod people;
mod people_errors;
mod process_lifecycle;
mod processes;
mod races;
mod registration;
mod rotation;
mod sign_in_protection;
mod storage;
mod tls;
mod token_exchange;
mod token_lifecycle;
