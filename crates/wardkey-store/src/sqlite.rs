//! The embedded SQLite backend: one file in WAL mode, a small connection
//! pool, and the migrations under `migrations/sqlite`.
//!
//! Timestamps are INTEGER Unix seconds. Lists and tagged enums (roles,
//! redirect URIs, grant types, client authentication, audit detail) are JSON
//! text, decoded by one conversion function per table; a row that does not
//! decode is reported as [`StoreError::Corrupt`], never a panic.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Decode, Row, Sqlite, Type};
use wardkey_core::audit::AuditEvent;
use wardkey_core::client::Client;
use wardkey_core::keys::{SigningAlg, SigningKey};
use wardkey_core::secret::random_token;
use wardkey_core::user::{NewUser, User};

use crate::{CredentialKind, Store, StoreError, StoreResult};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// Connections in a file-backed pool. SQLite has one writer at a time; a few
/// connections let reads proceed alongside it under WAL.
const MAX_CONNECTIONS: u32 = 4;

/// How long a connection waits on another's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const USER_COLUMNS: &str =
    "id, username, name, email, roles, disabled, failed_logins, last_failed_at, created_at";
const CLIENT_COLUMNS: &str = "client_id, auth, redirect_uris, post_logout_redirect_uris, \
     backchannel_logout_uri, grant_types, start_url, id_token_alg, created_at";
const KEY_COLUMNS: &str = "kid, alg, private_der, created_at, retired_at";

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
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            create_parent_dir(options.get_filename())?;
            SqlitePoolOptions::new().max_connections(MAX_CONNECTIONS)
        };

        let pool = pool_options.connect_with(options).await?;
        MIGRATOR.run(&pool).await?;
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
    let rest = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let (database, params) = rest.split_once('?').unwrap_or((rest, ""));
    database == ":memory:" || params.split('&').any(|param| param == "mode=memory")
}

fn create_parent_dir(path: &std::path::Path) -> StoreResult<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Backend(sqlx::Error::Configuration(
                format!("cannot create directory {}: {e}", dir.display()).into(),
            ))
        }),
        _ => Ok(()),
    }
}

/// A unique-constraint violation becomes `Conflict(what)`; anything else is a
/// backend failure.
fn conflict_on_unique(err: sqlx::Error, what: String) -> StoreError {
    match err {
        sqlx::Error::Database(ref e) if e.is_unique_violation() => StoreError::Conflict(what),
        other => StoreError::Backend(other),
    }
}

/// A foreign-key violation becomes `NotFound(what)`.
fn not_found_on_foreign_key(err: sqlx::Error, what: String) -> StoreError {
    match err {
        sqlx::Error::Database(ref e) if e.is_foreign_key_violation() => StoreError::NotFound(what),
        other => StoreError::Backend(other),
    }
}

/// Encoding plain data as JSON cannot really fail, but say so if it does.
fn encode_error(what: &'static str) -> impl FnOnce(serde_json::Error) -> StoreError {
    move |e| StoreError::Corrupt(format!("cannot encode {what} as JSON: {e}"))
}

/// Read one column, reporting a NULL or mistyped value as `Corrupt`.
fn column<'r, T>(row: &'r SqliteRow, table: &str, name: &str) -> StoreResult<T>
where
    T: Decode<'r, Sqlite> + Type<Sqlite>,
{
    row.try_get(name)
        .map_err(|e| StoreError::Corrupt(format!("{table}.{name}: {e}")))
}

/// Read a JSON text column; `parse` is `serde_json::from_str` at the type
/// wanted (passed in so this crate needs no direct `serde` dependency).
fn json_column<T>(
    row: &SqliteRow,
    table: &str,
    name: &str,
    parse: impl FnOnce(&str) -> serde_json::Result<T>,
) -> StoreResult<T> {
    let text: &str = column(row, table, name)?;
    parse(text).map_err(|e| StoreError::Corrupt(format!("{table}.{name}: bad JSON: {e}")))
}

/// Read a JOSE algorithm name column.
fn alg_column(row: &SqliteRow, table: &str, name: &str) -> StoreResult<SigningAlg> {
    let text: &str = column(row, table, name)?;
    SigningAlg::parse(text).map_err(|e| StoreError::Corrupt(format!("{table}.{name}: {e}")))
}

fn user_from_row(row: &SqliteRow) -> StoreResult<User> {
    const T: &str = "users";
    let failed_logins: i64 = column(row, T, "failed_logins")?;
    Ok(User {
        id: column(row, T, "id")?,
        username: column(row, T, "username")?,
        name: column(row, T, "name")?,
        email: column(row, T, "email")?,
        roles: json_column(row, T, "roles", |s| serde_json::from_str(s))?,
        disabled: column(row, T, "disabled")?,
        failed_logins: u32::try_from(failed_logins).map_err(|_| {
            StoreError::Corrupt(format!("{T}.failed_logins out of range: {failed_logins}"))
        })?,
        last_failed_at: column(row, T, "last_failed_at")?,
        created_at: column(row, T, "created_at")?,
    })
}

fn client_from_row(row: &SqliteRow) -> StoreResult<Client> {
    const T: &str = "clients";
    Ok(Client {
        client_id: column(row, T, "client_id")?,
        auth: json_column(row, T, "auth", |s| serde_json::from_str(s))?,
        redirect_uris: json_column(row, T, "redirect_uris", |s| serde_json::from_str(s))?,
        post_logout_redirect_uris: json_column(row, T, "post_logout_redirect_uris", |s| {
            serde_json::from_str(s)
        })?,
        backchannel_logout_uri: column(row, T, "backchannel_logout_uri")?,
        grant_types: json_column(row, T, "grant_types", |s| serde_json::from_str(s))?,
        start_url: column(row, T, "start_url")?,
        id_token_alg: alg_column(row, T, "id_token_alg")?,
        created_at: column(row, T, "created_at")?,
    })
}

fn signing_key_from_row(row: &SqliteRow) -> StoreResult<SigningKey> {
    const T: &str = "signing_keys";
    Ok(SigningKey {
        kid: column(row, T, "kid")?,
        alg: alg_column(row, T, "alg")?,
        pkcs8: column(row, T, "private_der")?,
        created_at: column(row, T, "created_at")?,
        retired_at: column(row, T, "retired_at")?,
    })
}

fn audit_from_row(row: &SqliteRow) -> StoreResult<AuditEvent> {
    const T: &str = "audit_log";
    Ok(AuditEvent {
        at: column(row, T, "at")?,
        event: column(row, T, "event")?,
        actor: column(row, T, "actor")?,
        subject: column(row, T, "subject")?,
        detail: json_column(row, T, "detail", |s| serde_json::from_str(s))?,
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn create_user(
        &self,
        user: &NewUser,
        password_hash: Option<&str>,
        now: i64,
    ) -> StoreResult<User> {
        let id = random_token(16);
        let roles = serde_json::to_string(&user.roles).map_err(encode_error("roles"))?;

        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO users (id, username, name, email, roles, disabled, failed_logins, created_at) \
             VALUES (?, ?, ?, ?, ?, 0, 0, ?)",
        )
        .bind(&id)
        .bind(&user.username)
        .bind(&user.name)
        .bind(&user.email)
        .bind(&roles)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict_on_unique(e, format!("user {:?}", user.username)))?;
        if let Some(hash) = password_hash {
            sqlx::query(
                "INSERT INTO credentials (user_id, kind, secret, created_at) VALUES (?, ?, ?, ?)",
            )
            .bind(&id)
            .bind(CredentialKind::Password.as_str())
            .bind(hash)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;

        Ok(User {
            id,
            username: user.username.clone(),
            name: user.name.clone(),
            email: user.email.clone(),
            roles: user.roles.clone(),
            disabled: false,
            failed_logins: 0,
            last_failed_at: None,
            created_at: now,
        })
    }

    async fn user_by_username(&self, username: &str) -> StoreResult<Option<User>> {
        sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE username = ?"
        ))
        .bind(username)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(user_from_row)
        .transpose()
    }

    async fn user_by_id(&self, id: &str) -> StoreResult<Option<User>> {
        sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(user_from_row)
            .transpose()
    }

    async fn list_users(&self) -> StoreResult<Vec<User>> {
        sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users ORDER BY username"
        ))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(user_from_row)
        .collect()
    }

    async fn set_user_disabled(&self, username: &str, disabled: bool) -> StoreResult<()> {
        let done = sqlx::query("UPDATE users SET disabled = ? WHERE username = ?")
            .bind(disabled)
            .bind(username)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("user {username:?}")));
        }
        Ok(())
    }

    /// `NotFound` if no user has this id.
    async fn record_login_failure(&self, user_id: &str, now: i64) -> StoreResult<u32> {
        let count: Option<i64> = sqlx::query_scalar(
            "UPDATE users SET failed_logins = failed_logins + 1, last_failed_at = ? \
             WHERE id = ? RETURNING failed_logins",
        )
        .bind(now)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        let count = count.ok_or_else(|| StoreError::NotFound(format!("user id {user_id:?}")))?;
        u32::try_from(count)
            .map_err(|_| StoreError::Corrupt(format!("users.failed_logins out of range: {count}")))
    }

    /// Also clears `last_failed_at`. `NotFound` if no user has this id.
    async fn reset_login_failures(&self, user_id: &str) -> StoreResult<()> {
        let done =
            sqlx::query("UPDATE users SET failed_logins = 0, last_failed_at = NULL WHERE id = ?")
                .bind(user_id)
                .execute(&self.pool)
                .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("user id {user_id:?}")));
        }
        Ok(())
    }

    async fn set_credential(
        &self,
        user_id: &str,
        kind: CredentialKind,
        hash: &str,
        now: i64,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO credentials (user_id, kind, secret, created_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (user_id, kind) DO UPDATE SET secret = excluded.secret, created_at = excluded.created_at",
        )
        .bind(user_id)
        .bind(kind.as_str())
        .bind(hash)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(|e| not_found_on_foreign_key(e, format!("user id {user_id:?}")))?;
        Ok(())
    }

    async fn credential(&self, user_id: &str, kind: CredentialKind) -> StoreResult<Option<String>> {
        let row = sqlx::query("SELECT secret FROM credentials WHERE user_id = ? AND kind = ?")
            .bind(user_id)
            .bind(kind.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref()
            .map(|row| column(row, "credentials", "secret"))
            .transpose()
    }

    async fn create_client(&self, client: &Client) -> StoreResult<()> {
        let auth = serde_json::to_string(&client.auth).map_err(encode_error("auth"))?;
        let redirect_uris =
            serde_json::to_string(&client.redirect_uris).map_err(encode_error("redirect_uris"))?;
        let post_logout_redirect_uris = serde_json::to_string(&client.post_logout_redirect_uris)
            .map_err(encode_error("post_logout_redirect_uris"))?;
        let grant_types =
            serde_json::to_string(&client.grant_types).map_err(encode_error("grant_types"))?;
        sqlx::query(&format!(
            "INSERT INTO clients ({CLIENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(&client.client_id)
        .bind(auth)
        .bind(redirect_uris)
        .bind(post_logout_redirect_uris)
        .bind(&client.backchannel_logout_uri)
        .bind(grant_types)
        .bind(&client.start_url)
        .bind(client.id_token_alg.as_str())
        .bind(client.created_at)
        .execute(&self.pool)
        .await
        .map_err(|e| conflict_on_unique(e, format!("client {:?}", client.client_id)))?;
        Ok(())
    }

    async fn client(&self, client_id: &str) -> StoreResult<Option<Client>> {
        sqlx::query(&format!(
            "SELECT {CLIENT_COLUMNS} FROM clients WHERE client_id = ?"
        ))
        .bind(client_id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(client_from_row)
        .transpose()
    }

    async fn list_clients(&self) -> StoreResult<Vec<Client>> {
        sqlx::query(&format!(
            "SELECT {CLIENT_COLUMNS} FROM clients ORDER BY client_id"
        ))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(client_from_row)
        .collect()
    }

    async fn remove_client(&self, client_id: &str) -> StoreResult<()> {
        let done = sqlx::query("DELETE FROM clients WHERE client_id = ?")
            .bind(client_id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("client {client_id:?}")));
        }
        Ok(())
    }

    async fn signing_keys(&self) -> StoreResult<Vec<SigningKey>> {
        sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM signing_keys ORDER BY created_at DESC, rowid DESC"
        ))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(signing_key_from_row)
        .collect()
    }

    /// `Conflict` (and nothing changed) if a new key's `kid` is taken.
    async fn rotate_signing_keys(&self, new_keys: &[SigningKey], now: i64) -> StoreResult<()> {
        let mut algs: Vec<SigningAlg> = new_keys.iter().map(|k| k.alg).collect();
        algs.sort_by_key(|alg| alg.as_str());
        algs.dedup();

        let mut tx = self.pool.begin().await?;
        for alg in algs {
            sqlx::query(
                "UPDATE signing_keys SET retired_at = ? WHERE retired_at IS NULL AND alg = ?",
            )
            .bind(now)
            .bind(alg.as_str())
            .execute(&mut *tx)
            .await?;
        }
        for key in new_keys {
            sqlx::query(&format!(
                "INSERT INTO signing_keys ({KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?)"
            ))
            .bind(&key.kid)
            .bind(key.alg.as_str())
            .bind(&key.pkcs8)
            .bind(key.created_at)
            .bind(key.retired_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| conflict_on_unique(e, format!("signing key {:?}", key.kid)))?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn purge_signing_keys(&self, retired_before: i64) -> StoreResult<u64> {
        let done =
            sqlx::query("DELETE FROM signing_keys WHERE retired_at IS NOT NULL AND retired_at < ?")
                .bind(retired_before)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected())
    }

    async fn append_audit(&self, event: &AuditEvent) -> StoreResult<()> {
        let detail = serde_json::to_string(&event.detail).map_err(encode_error("audit detail"))?;
        sqlx::query(
            "INSERT INTO audit_log (at, event, actor, subject, detail) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(event.at)
        .bind(&event.event)
        .bind(&event.actor)
        .bind(&event.subject)
        .bind(detail)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn recent_audit(&self, limit: u32) -> StoreResult<Vec<AuditEvent>> {
        sqlx::query(
            "SELECT at, event, actor, subject, detail FROM audit_log ORDER BY at DESC, id DESC LIMIT ?",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(audit_from_row)
        .collect()
    }
}
