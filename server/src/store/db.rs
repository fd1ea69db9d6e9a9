//! The one place that knows which database is in use.
//!
//! diesel's `MultiConnection` gives one connection type over PostgreSQL and SQLite, so every
//! query in `store/` is written once. The backend is chosen from the URL scheme here, never by
//! trial (SQLite would accept any string as a file name).

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::r2d2::{self, ManageConnection};
use diesel::sqlite::SqliteConnection;
use diesel::Connection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

#[derive(diesel::MultiConnection)]
pub enum AnyConnection {
    Postgresql(PgConnection),
    Sqlite(SqliteConnection),
}

pub const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/postgres");
pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    /// The product's name, for people (the console's readiness table).
    pub fn product_name(self) -> &'static str {
        match self {
            Backend::Postgres => "PostgreSQL",
            Backend::Sqlite => "SQLite",
        }
    }
}

/// A database location parsed from the `database_url` setting.
#[derive(Debug, Clone)]
pub struct DatabaseUrl {
    pub backend: Backend,
    /// What the driver is given: the URL for Postgres, the file path for SQLite.
    pub target: String,
}

impl DatabaseUrl {
    pub fn parse(url: &str) -> Result<DatabaseUrl, String> {
        let url = url.trim();
        if url.is_empty() {
            return Err("setting `database_url`: empty".into());
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(DatabaseUrl {
                backend: Backend::Postgres,
                target: url.to_string(),
            });
        }
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url);
        if path.contains("://") {
            return Err(format!(
                "setting `database_url`: unsupported scheme in {}",
                redact(url)
            ));
        }
        if path.is_empty() || path == ":memory:" {
            return Err(
                "setting `database_url`: SQLite needs a file path (an in-memory database is one per connection)"
                    .into(),
            );
        }
        Ok(DatabaseUrl {
            backend: Backend::Sqlite,
            target: path.to_string(),
        })
    }
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

/// r2d2 manager that opens the right variant and prepares SQLite for concurrent use.
#[derive(Debug, Clone)]
pub struct Manager {
    url: DatabaseUrl,
    statement_timeout: Duration,
}

impl ManageConnection for Manager {
    type Connection = AnyConnection;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<AnyConnection, r2d2::Error> {
        match self.url.backend {
            Backend::Postgres => {
                let mut conn = PgConnection::establish(&self.url.target)
                    .map_err(r2d2::Error::ConnectionError)?;
                // A statement stuck on a lock must not outlive its request by much.
                conn.batch_execute(&format!(
                    "SET statement_timeout = {}",
                    self.statement_timeout.as_millis()
                ))
                .map_err(r2d2::Error::QueryError)?;
                Ok(AnyConnection::Postgresql(conn))
            }
            Backend::Sqlite => {
                let mut conn = SqliteConnection::establish(&self.url.target)
                    .map_err(r2d2::Error::ConnectionError)?;
                // busy_timeout makes writers queue instead of failing with "database is
                // locked"; WAL (set once in `connect`) lets readers run beside the writer.
                conn.batch_execute(&format!(
                    "PRAGMA busy_timeout = {}; PRAGMA synchronous = NORMAL; \
                     PRAGMA foreign_keys = ON;",
                    self.statement_timeout.as_millis()
                ))
                .map_err(r2d2::Error::QueryError)?;
                Ok(AnyConnection::Sqlite(conn))
            }
        }
    }

    fn is_valid(&self, conn: &mut AnyConnection) -> Result<(), r2d2::Error> {
        conn.batch_execute("SELECT 1")
            .map_err(r2d2::Error::QueryError)
    }

    /// A connection left in a broken transaction is not returned to the pool; one whose
    /// server went away is found by `is_valid` at the next checkout.
    fn has_broken(&self, conn: &mut AnyConnection) -> bool {
        std::thread::panicking() || diesel::r2d2::R2D2Connection::is_broken(conn)
    }
}

pub type Pool = r2d2::Pool<Manager>;
pub type PooledConnection = r2d2::PooledConnection<Manager>;

/// libpq parameters (GSS encryption off, see below) that bound how long a dead or unreachable
/// server can hold a connection:
/// connecting (`connect_timeout`, in whole seconds, at least 2), and a connection whose peer
/// went silent (keepalives, and `tcp_user_timeout` for unacknowledged writes). Parameters the
/// operator put in the URL win.
fn with_network_deadlines(url: &str, deadline: Duration) -> String {
    let connect = deadline.as_secs().max(2);
    let silent_ms = (deadline.as_millis() * 4).max(5000);
    let defaults = [
        ("connect_timeout", connect.to_string()),
        // GSSAPI encryption is tried first by default when libpq has Kerberos: a round trip
        // per connection, and a crash of the Kerberos library's threads at process exit.
        ("gssencmode", "disable".to_string()),
        ("keepalives", "1".to_string()),
        ("keepalives_idle", "10".to_string()),
        ("keepalives_interval", "3".to_string()),
        ("keepalives_count", "3".to_string()),
        ("tcp_user_timeout", silent_ms.to_string()),
    ];
    let Ok(mut parsed) = url::Url::parse(url) else {
        return url.to_string();
    };
    let present: Vec<String> = parsed.query_pairs().map(|(k, _)| k.into_owned()).collect();
    {
        let mut query = parsed.query_pairs_mut();
        for (name, value) in &defaults {
            if !present.iter().any(|p| p == name) {
                query.append_pair(name, value);
            }
        }
    }
    parsed.to_string()
}

/// Opens the pool (creating the SQLite file's folder). `deadline` bounds each wait for a pooled
/// connection; statements get a few times that (a statement that outlives its request holds
/// locks for no one).
pub fn connect(url: &DatabaseUrl, pool_size: u32, deadline: Duration) -> Result<Pool, String> {
    if url.backend == Backend::Sqlite {
        if let Some(parent) = std::path::Path::new(&url.target).parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent).map_err(|e| {
                    format!(
                        "setting `database_url`: cannot create {}: {e}",
                        parent.display()
                    )
                })?;
            }
        }
    }
    if url.backend == Backend::Sqlite {
        owner_only(&url.target)?;
        // WAL is a property of the file: switch once, before the pool opens its connections
        // (switching from several at once makes some of them fail with "locked").
        let mut first = SqliteConnection::establish(&url.target)
            .map_err(|e| format!("setting `database_url`: cannot open {}: {e}", url.target))?;
        first
            .batch_execute("PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL;")
            .map_err(|e| format!("setting `database_url`: {e}"))?;
    }
    let mut target = url.clone();
    if url.backend == Backend::Postgres {
        target.target = with_network_deadlines(&url.target, deadline);
    }
    // Not `build`, which waits for a full pool: the first checkout (migrations) reports a
    // database that cannot be reached, with its cause.
    let pool = r2d2::Pool::builder()
        .max_size(pool_size)
        .connection_timeout(deadline)
        .build_unchecked(Manager {
            url: target,
            statement_timeout: (deadline * 4).max(Duration::from_secs(5)),
        });
    Ok(pool)
}

/// The database holds password hashes: the file, and the `-wal` and `-shm` files SQLite makes
/// beside it (with the database file's permissions), are readable by their owner only.
#[cfg(unix)]
fn owner_only(path: &str) -> Result<(), String> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path);
    if let Err(e) = created {
        return Err(format!("setting `database_url`: cannot open {path}: {e}"));
    }
    for file in [
        path.to_string(),
        format!("{path}-wal"),
        format!("{path}-shm"),
    ] {
        let Ok(metadata) = std::fs::metadata(&file) else {
            continue;
        };
        if metadata.permissions().mode() & 0o077 != 0 {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| format!("setting `database_url`: cannot restrict {file}: {e}"))?;
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn owner_only(_path: &str) -> Result<(), String> {
    Ok(())
}

pub fn run_migrations(conn: &mut AnyConnection) -> Result<usize, String> {
    let applied = match conn {
        AnyConnection::Postgresql(pg) => pg.run_pending_migrations(POSTGRES_MIGRATIONS),
        AnyConnection::Sqlite(lite) => lite.run_pending_migrations(SQLITE_MIGRATIONS),
    }
    .map_err(|e| format!("database migration failed: {e}"))?;
    Ok(applied.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_is_chosen_by_scheme() {
        assert_eq!(
            DatabaseUrl::parse("postgres://u:p@h/db").map(|u| u.backend),
            Ok(Backend::Postgres)
        );
        let lite = DatabaseUrl::parse("sqlite://data/x.db").map(|u| (u.backend, u.target));
        assert_eq!(lite, Ok((Backend::Sqlite, "data/x.db".to_string())));
        assert!(DatabaseUrl::parse("mysql://h/db").is_err());
        assert!(DatabaseUrl::parse(":memory:").is_err());
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
    }
}
