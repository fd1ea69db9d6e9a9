//! Storage: the only place that knows SQL. One file per table; `db.rs` picks the backend.
//!
//! Methods are synchronous (diesel); async callers go through [`Store::run`], which moves the
//! work to tokio's blocking pool so database work never stalls the request workers.

pub mod audit;
pub mod authorization;
pub mod clients;
pub mod cluster_state;
pub mod db;
pub mod device;
pub mod grants;
pub mod pushed_requests;
pub mod registration;
pub mod schema;
pub mod signing_keys;
pub mod token_exchanges;
pub mod users;

use std::fmt;
use std::time::Duration;

use diesel::connection::SimpleConnection;

pub use db::{Backend, DatabaseUrl};

#[derive(Debug)]
pub enum StoreError {
    /// No connection could be had (database down or pool exhausted).
    Unavailable(String),
    Query(diesel::result::Error),
    /// A row with this key already exists.
    Conflict(String),
    /// A stored value could not be decoded.
    Corrupt(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Unavailable(e) => write!(f, "database unavailable: {e}"),
            StoreError::Query(e) => write!(f, "database query failed: {e}"),
            StoreError::Conflict(what) => write!(f, "{what} already exists"),
            StoreError::Corrupt(what) => write!(f, "stored data is corrupt: {what}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<diesel::result::Error> for StoreError {
    fn from(e: diesel::result::Error) -> Self {
        StoreError::Query(e)
    }
}

#[derive(Clone)]
pub struct Store {
    pool: db::Pool,
    backend: Backend,
    /// The most one call through [`Store::run`] may take, waiting for a connection included.
    deadline: Duration,
}

/// The deadline when none is given (the CLI, tests of the store itself).
pub const DEFAULT_DEADLINE: Duration = Duration::from_millis(1500);

impl Store {
    /// Connects and applies pending migrations, with the default deadline.
    pub fn open(url: &str, pool_size: u32) -> Result<Store, String> {
        Store::open_with_deadline(url, pool_size, DEFAULT_DEADLINE)
    }

    /// Connects and applies pending migrations. `deadline` bounds every request-path call
    /// ([`Store::run`]), and each wait for a pooled connection.
    pub fn open_with_deadline(
        url: &str,
        pool_size: u32,
        deadline: Duration,
    ) -> Result<Store, String> {
        let url = DatabaseUrl::parse(url)?;
        let pool = db::connect(&url, pool_size, deadline)?;
        let store = Store {
            pool,
            backend: url.backend,
            deadline,
        };
        let mut conn = store.conn().map_err(|e| {
            format!(
                "setting `database_url`: cannot connect to {}: {e}",
                db::redact(&url.target)
            )
        })?;
        db::run_migrations(&mut conn)?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub(crate) fn conn(&self) -> Result<db::PooledConnection, StoreError> {
        self.pool
            .get()
            .map_err(|e| StoreError::Unavailable(e.to_string()))
    }

    /// Runs blocking store work off the async workers, within the deadline: past it the caller
    /// gets `Unavailable` at once. The work itself, stuck on a dead connection, ends when the
    /// connection's own timeouts fire (see `db::Manager`), on a blocking thread, not a worker.
    pub async fn run<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.clone();
        let task = tokio::task::spawn_blocking(move || work(&store));
        match tokio::time::timeout(self.deadline, task).await {
            Ok(joined) => {
                joined.map_err(|e| StoreError::Unavailable(format!("store task failed: {e}")))?
            }
            Err(_) => Err(StoreError::Unavailable(format!(
                "no answer within {} ms",
                self.deadline.as_millis()
            ))),
        }
    }

    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// Readiness: a round trip to the database.
    pub fn ping(&self) -> Result<(), StoreError> {
        self.conn()?
            .batch_execute("SELECT 1")
            .map_err(StoreError::Query)
    }
}

/// A unique-key violation is a `Conflict` naming `what`; anything else a query error.
pub(crate) fn conflict_or_query(e: diesel::result::Error, what: String) -> StoreError {
    match e {
        diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        ) => StoreError::Conflict(what),
        other => StoreError::Query(other),
    }
}

/// Lists are stored as JSON arrays of strings in TEXT columns (portable across backends).
pub(crate) fn encode_list(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}

pub(crate) fn decode_list(column: &str, text: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}
