//! The embedded SQLite backend: one file in WAL mode, a small connection
//! pool, and the migrations under `migrations/sqlite`.
//!
//! Timestamps are INTEGER Unix seconds; lists and tagged enums are JSON
//! text. The methods themselves are written once for both engines (in
//! `crate::shared`); what is SQLite's own stays here: opening the file,
//! reading before taking the single write lock, and the wording of its
//! constraint errors.

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use crate::shared::prelude::*;

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// Connections in a file-backed pool. SQLite has one writer at a time; a few
/// connections let reads proceed alongside it under WAL.
const MAX_CONNECTIONS: u32 = 4;

/// How long a connection waits on another's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// [`Store`] on an embedded SQLite database.
///
/// Cloning is cheap and shares the connection pool.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Open (creating if missing) the database named by `url` and bring its
    /// schema up to date.
    ///
    /// `url` is `sqlite://relative/path.db`, `sqlite:///absolute/path.db` or
    /// `sqlite::memory:` (a private in-memory database, for tests). A missing
    /// parent directory is created.
    pub async fn open(url: &str) -> StoreResult<Self> {
        Self::open_with(url, true).await
    }

    /// [`SqliteStore::open`], or with `create` false, refuse a missing
    /// file or one without Wardkey's tables ([`StoreError::NoStore`]).
    pub async fn open_with(url: &str, create: bool) -> StoreResult<Self> {
        // A private in-memory database is new by nature: nothing is lost.
        let create = create || is_in_memory(url);
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);

        let pool_options = if is_in_memory(url) {
            // The database lives as long as its last connection, and
            // shared-cache connections fail with SQLITE_LOCKED rather than
            // waiting, so keep exactly one connection open for good.
            SqlitePoolOptions::new().max_connections(1).min_connections(1).idle_timeout(None).max_lifetime(None)
        } else {
            let path = options.get_filename();
            if !create && !path.exists() {
                return Err(StoreError::NoStore(path.display().to_string()));
            }
            create_private_file(path)?;
            SqlitePoolOptions::new().max_connections(MAX_CONNECTIONS)
        };

        let shown = options.get_filename().display().to_string();
        let pool = pool_options.connect_with(options).await?;
        if !create {
            let tables: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
            )
            .fetch_one(&pool)
            .await?;
            if tables == 0 {
                pool.close().await;
                return Err(StoreError::NoStore(format!("{shown} (the file has no Wardkey tables)")));
            }
        }
        check_username_case!(&pool, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'users'");
        MIGRATOR.run(&pool).await?;
        seal_legacy_audit!(&pool, "BEGIN IMMEDIATE");
        tracing::debug!(url, "sqlite store open");
        Ok(Self { pool })
    }

    /// Close every connection, waiting for those in use to be returned.
    /// Later calls on this store (or its clones) fail.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Whether `url` names an in-memory database (`sqlite::memory:`,
/// `sqlite://:memory:` or `mode=memory`), which has no file or directory.
fn is_in_memory(url: &str) -> bool {
    let rest = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    let (database, params) = rest.split_once('?').unwrap_or((rest, ""));
    database == ":memory:" || params.split('&').any(|param| param == "mode=memory")
}

/// Create the database file's directory (0700) and the file itself (0600)
/// before SQLite opens it, and tighten an existing file to 0600: it holds
/// the signing keys, the badge key and every credential hash, and SQLite
/// gives its `-wal` and `-shm` files the database file's mode. A directory
/// that already exists is left as the operator made it.
fn create_private_file(path: &std::path::Path) -> StoreResult<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    let failed = |what: &str, e: std::io::Error| {
        StoreError::Backend(sqlx::Error::Configuration(format!("cannot {what} {}: {e}", path.display()).into()))
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| {
            StoreError::Backend(sqlx::Error::Configuration(
                format!("cannot create directory {}: {e}", dir.display()).into(),
            ))
        })?;
    }
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            for suffix in ["", "-wal", "-shm"] {
                let file = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
                if file.exists() {
                    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
                        .map_err(|e| failed("restrict the permissions of", e))?;
                }
            }
            Ok(())
        }
        Err(e) => Err(failed("create", e)),
    }
}

/// What SQLite does its own way; `crate::shared` calls these.
impl SqliteStore {
    /// SQLite stores any text, so every key may name a row.
    fn names_nothing(_key: &str) -> bool {
        false
    }

    /// SQLite stores any text as given.
    fn storable_text(text: &str) -> &str {
        text
    }

    /// SQLite stores any text unchanged, so every import is storable.
    fn storable_import(_what: &str, _field: &str, _text: &str) -> StoreResult<()> {
        Ok(())
    }

    /// `create_workstation`'s and `import_workstation`'s unique violations say
    /// which value is taken: the name (the admin's business), or the id or
    /// enrolment code (a random value that collided).
    fn workstation_conflict(err: sqlx::Error, ws: &Workstation) -> StoreError {
        match err {
            sqlx::Error::Database(ref e) if e.is_unique_violation() => {
                let message = e.message();
                StoreError::Conflict(if message.contains("enrol_code_digest") {
                    "workstation enrolment code".to_string()
                } else if message.contains("workstations.id") {
                    format!("workstation id {:?}", ws.id)
                } else {
                    format!("workstation {:?}", ws.name)
                })
            }
            other => StoreError::Backend(other),
        }
    }

    /// `import_user`'s unique violations say which value is taken: the id or
    /// the username.
    fn user_conflict(err: sqlx::Error, user: &User) -> StoreError {
        match err {
            sqlx::Error::Database(ref e) if e.is_unique_violation() => {
                StoreError::Conflict(if e.message().contains("users.id") {
                    format!("user id {:?}", user.id)
                } else if e.message().contains("external_id") {
                    format!("{} entry {:?}", user.source, user.external_id.as_deref().unwrap_or_default())
                } else {
                    format!("user {:?}", user.username)
                })
            }
            other => StoreError::Backend(other),
        }
    }

    /// Whether a logout notice is due at `now`. Servers ask every second; a
    /// read first means an idle server never takes SQLite's single write
    /// lock for nothing.
    async fn anything_due(&self, now: i64) -> StoreResult<bool> {
        let due: Vec<i64> = sqlx::query_scalar("SELECT 1 FROM logout_outbox WHERE next_attempt_at <= $1 LIMIT 1")
            .bind(now)
            .fetch_all(&self.pool)
            .await?;
        Ok(!due.is_empty())
    }

    /// Whether a session revocation is pending: a read first, as in
    /// [`Self::anything_due`].
    async fn any_revocation_pending(&self) -> StoreResult<bool> {
        let pending: Vec<i64> =
            sqlx::query_scalar("SELECT 1 FROM session_revocations LIMIT 1").fetch_all(&self.pool).await?;
        Ok(!pending.is_empty())
    }
}

crate::shared::impl_store!(SqliteStore, sqlite);
