//! Clients named by the URL of their metadata document (draft-ietf-oauth-client-id-metadata-
//! document): the document is fetched through [`Fetcher`] (no private addresses, no
//! redirects, a deadline, a size limit), checked by `oauth::client_metadata_document` and then
//! like any registration, and kept in memory for as long as its caching headers say, within
//! `client_metadata_cache_min_ttl` and `client_metadata_cache_max_ttl` (§5.2). Failures are
//! not cached (§5.2); concurrent requests for one URL share one fetch.

use std::sync::Arc;

use dashmap::DashMap;
use serde_json::Value;
use url::Url;

use super::{Client, Lookup};
use crate::clock::SharedClock;
use crate::config::Settings;
use crate::oauth::client_metadata_document::{check_document, host_allowed, parse_client_id};
use crate::oauth::registration::Rules;
use crate::outbound::Fetcher;

/// Documents kept at most; past it, expired ones go, then all.
const MAX_CACHED: usize = 10_000;
/// The lifetime of a document whose headers say nothing (within the bounds).
const DEFAULT_TTL: u64 = 300;

pub struct MetadataDocuments {
    fetcher: Fetcher,
    settings: Settings,
    clock: SharedClock,
    cache: DashMap<String, Cached>,
    /// One lock per URL being fetched, so a burst of requests makes one fetch.
    inflight: DashMap<String, Arc<tokio::sync::Mutex<()>>>,
}

struct Cached {
    client: Arc<Client>,
    until: i64,
}

impl MetadataDocuments {
    pub fn new(settings: &Settings, clock: SharedClock) -> Result<MetadataDocuments, String> {
        Ok(MetadataDocuments {
            fetcher: Fetcher::new(settings)?,
            settings: settings.clone(),
            clock,
            cache: DashMap::new(),
            inflight: DashMap::new(),
        })
    }

    fn cached(&self, id: &str) -> Option<Arc<Client>> {
        let now = self.clock.now();
        self.cache
            .get(id)
            .filter(|hit| hit.until > now)
            .map(|hit| hit.client.clone())
    }

    /// The client whose metadata document `id` names.
    pub async fn resolve(&self, id: &str) -> Lookup {
        if let Some(client) = self.cached(id) {
            return Lookup::Found(client);
        }
        let url = match parse_client_id(id) {
            Ok(url) => url,
            Err(why) => return Lookup::Refused(why),
        };
        if !host_allowed(&url, &self.settings.client_id_metadata_document_hosts) {
            return Lookup::Refused(
                "this server does not accept client metadata documents from that host".into(),
            );
        }
        let gate = self.inflight.entry(id.to_string()).or_default().clone();
        // A request waits for at most one other fetch of the same URL (failures are not
        // cached, so a queue behind a slow server would otherwise wait for each in turn).
        let outcome = match tokio::time::timeout(self.fetcher.timeout(), gate.lock()).await {
            Ok(_turn) => match self.cached(id) {
                // Fetched by the request this one waited for.
                Some(client) => Ok(client),
                None => self.fetch(id, &url).await,
            },
            Err(_) => Err(format!(
                "the document at {} could not be fetched: {}",
                url.host_str().unwrap_or_default(),
                crate::outbound::FetchError::Busy
            )),
        };
        self.inflight
            .remove_if(id, |_, g| Arc::strong_count(g) <= 2);
        drop(gate);
        match outcome {
            Ok(client) => Lookup::Found(client),
            Err(why) => {
                tracing::info!(client_id = %id, reason = %why, "client metadata document refused");
                Lookup::Refused(why)
            }
        }
    }

    async fn fetch(&self, id: &str, url: &Url) -> Result<Arc<Client>, String> {
        let host = url.host_str().unwrap_or_default().to_string();
        let fetched = self
            .fetcher
            .get(url)
            .await
            .map_err(|e| format!("the document at {host} could not be fetched: {e}"))?;
        let document: Value = serde_json::from_slice(&fetched.body)
            .map_err(|_| "the document is not JSON".to_string())?;
        let mut metadata = check_document(id, &document)?;
        let mut max_age = fetched.max_age;
        if let Some(uri) = metadata.jwks_uri.take() {
            let keys_url = Url::parse(&uri)
                .ok()
                .filter(|u| u.scheme() == "https")
                .ok_or("its jwks_uri is not an https URL")?;
            if !host_allowed(&keys_url, &self.settings.client_id_metadata_document_hosts) {
                return Err("this server does not fetch keys from the host of its jwks_uri".into());
            }
            let keys = self
                .fetcher
                .get(&keys_url)
                .await
                .map_err(|e| format!("its jwks_uri could not be fetched: {e}"))?;
            let jwks: Value = serde_json::from_slice(&keys.body)
                .ok()
                .filter(Value::is_object)
                .ok_or("its jwks_uri did not give a JWKS")?;
            metadata.jwks = Some(jwks.to_string());
            max_age = match (max_age, keys.max_age) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        // A software statement would need a trusted issuer to mean anything: not used.
        metadata.software_statement = false;
        let rules = Rules::for_metadata_document(&self.settings, &host);
        let new = metadata
            .to_new_client(id, &rules)
            .map_err(|e| e.description.into_owned())?;
        let now = self.clock.now();
        let client =
            Arc::new(super::metadata_document_client(&new, now).map_err(|e| e.to_string())?);
        let ttl = max_age.unwrap_or(DEFAULT_TTL).clamp(
            self.settings.client_metadata_cache_min_ttl,
            self.settings.client_metadata_cache_max_ttl,
        );
        if self.cache.len() >= MAX_CACHED {
            self.cache.retain(|_, c| c.until > now);
            if self.cache.len() >= MAX_CACHED {
                self.cache.clear();
            }
        }
        self.cache.insert(
            id.to_string(),
            Cached {
                client: client.clone(),
                until: now.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX)),
            },
        );
        Ok(client)
    }
}
