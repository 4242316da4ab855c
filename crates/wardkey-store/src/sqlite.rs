//! The embedded SQLite backend: one file in WAL mode, a small connection
//! pool, and the migrations under `migrations/sqlite`.
//!
//! Timestamps are INTEGER Unix seconds. Lists and tagged enums (roles,
//! redirect URIs, grant types, client authentication, audit detail) are JSON
//! text, decoded by one conversion function per table (shared with
//! PostgreSQL, in [`crate::rows`]); a row that does not decode is reported as
//! [`StoreError::Corrupt`], never a panic.
//!
//! Statements that change rows and return them (`… RETURNING`) run inside a
//! transaction that commits only once every returned row has decoded, so a
//! corrupt row never leaves a half-applied change behind.

use std::collections::HashSet;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use wardkey_core::audit::AuditEvent;
use wardkey_core::badge::Badge;
use wardkey_core::client::Client;
use wardkey_core::keys::{SigningAlg, SigningKey};
use wardkey_core::secret::random_token;
use wardkey_core::user::{NewUser, User};
use wardkey_core::workstation::Workstation;

use crate::rows::{
    AUDIT_COLUMNS, BADGE_COLUMNS, CLIENT_COLUMNS, KEY_COLUMNS, LOGOUT_COLUMNS, MAX_LOGOUT_ERROR_CHARS, USER_COLUMNS,
    WEBAUTHN_COLUMNS, WORKSTATION_COLUMNS, audit_from_row, badge_from_row, checked_count, client_from_row, column,
    conflict_on_unique, encode_error, logout_notice_from_row, not_found_on_foreign_key, signing_key_from_row,
    storable_client, truncate_chars, user_from_row, webauthn_credential_from_row, workstation_from_row,
};
use crate::{CredentialKind, LogoutNotice, NewLogoutNotice, Store, StoreError, StoreResult, WebauthnCredential};

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
            create_private_file(options.get_filename())?;
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
            } else {
                format!("user {:?}", user.username)
            })
        }
        other => StoreError::Backend(other),
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn directory_generation(&self) -> StoreResult<i64> {
        // fetch_all, not fetch_one: the statement runs to completion, so no
        // read transaction is left open on the pooled connection.
        let values: Vec<i64> =
            sqlx::query_scalar("SELECT value FROM directory_generation WHERE id = 1").fetch_all(&self.pool).await?;
        values.first().copied().ok_or_else(|| StoreError::Corrupt("directory_generation: no row".into()))
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn create_user(&self, user: &NewUser, password_hash: Option<&str>, now: i64) -> StoreResult<User> {
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
            sqlx::query("INSERT INTO credentials (user_id, kind, secret, created_at) VALUES (?, ?, ?, ?)")
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
        sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE username = ?"))
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
        sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY username"))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(user_from_row)
            .collect()
    }

    async fn set_user_disabled(&self, username: &str, disabled: bool, now: i64) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("UPDATE users SET disabled = ? WHERE username = ?")
            .bind(disabled)
            .bind(username)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("user {username:?}")));
        }
        if disabled {
            sqlx::query(
                "INSERT INTO session_revocations (user_id, requested_at) SELECT id, ? FROM users WHERE username = ?",
            )
            .bind(now)
            .bind(username)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn begin_login_attempt(&self, user_id: &str, now: i64, limit: u32, stale_before: i64) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE users SET attempt_at = ? WHERE id = ? AND failed_logins < ? \
             AND (attempt_at IS NULL OR attempt_at < ?)",
        )
        .bind(now)
        .bind(user_id)
        .bind(i64::from(limit))
        .bind(stale_before)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn end_login_attempt(&self, user_id: &str) -> StoreResult<()> {
        sqlx::query("UPDATE users SET attempt_at = NULL WHERE id = ?").bind(user_id).execute(&self.pool).await?;
        Ok(())
    }

    /// `NotFound` if no user has this id.
    async fn record_login_failure(&self, user_id: &str, now: i64) -> StoreResult<u32> {
        let count: Option<i64> = sqlx::query_scalar(
            "UPDATE users SET failed_logins = failed_logins + 1, last_failed_at = ?, attempt_at = NULL \
             WHERE id = ? RETURNING failed_logins",
        )
        .bind(now)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        let count = count.ok_or_else(|| StoreError::NotFound(format!("user id {user_id:?}")))?;
        checked_count("users", "failed_logins", count)
    }

    /// Also clears `last_failed_at`. `NotFound` if no user has this id.
    async fn reset_login_failures(&self, user_id: &str) -> StoreResult<()> {
        let done =
            sqlx::query("UPDATE users SET failed_logins = 0, last_failed_at = NULL, attempt_at = NULL WHERE id = ?")
                .bind(user_id)
                .execute(&self.pool)
                .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("user id {user_id:?}")));
        }
        Ok(())
    }

    async fn set_credential(&self, user_id: &str, kind: CredentialKind, hash: &str, now: i64) -> StoreResult<()> {
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
        row.as_ref().map(|row| column(row, "credentials", "secret")).transpose()
    }

    /// A `min_acr` that is not an acr Wardkey issues is refused as `Corrupt`
    /// (it could never be met, and would read back as a corrupt row).
    async fn create_client(&self, client: &Client) -> StoreResult<()> {
        storable_client(client)?;
        let auth = serde_json::to_string(&client.auth).map_err(encode_error("auth"))?;
        let redirect_uris = serde_json::to_string(&client.redirect_uris).map_err(encode_error("redirect_uris"))?;
        let post_logout_redirect_uris = serde_json::to_string(&client.post_logout_redirect_uris)
            .map_err(encode_error("post_logout_redirect_uris"))?;
        let grant_types = serde_json::to_string(&client.grant_types).map_err(encode_error("grant_types"))?;
        sqlx::query(&format!("INSERT INTO clients ({CLIENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"))
            .bind(&client.client_id)
            .bind(auth)
            .bind(redirect_uris)
            .bind(post_logout_redirect_uris)
            .bind(&client.backchannel_logout_uri)
            .bind(grant_types)
            .bind(&client.start_url)
            .bind(client.id_token_alg.as_str())
            .bind(client.created_at)
            .bind(&client.min_acr)
            .execute(&self.pool)
            .await
            .map_err(|e| conflict_on_unique(e, format!("client {:?}", client.client_id)))?;
        Ok(())
    }

    async fn client(&self, client_id: &str) -> StoreResult<Option<Client>> {
        sqlx::query(&format!("SELECT {CLIENT_COLUMNS} FROM clients WHERE client_id = ?"))
            .bind(client_id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(client_from_row)
            .transpose()
    }

    async fn list_clients(&self) -> StoreResult<Vec<Client>> {
        sqlx::query(&format!("SELECT {CLIENT_COLUMNS} FROM clients ORDER BY client_id"))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(client_from_row)
            .collect()
    }

    async fn remove_client(&self, client_id: &str) -> StoreResult<()> {
        let done = sqlx::query("DELETE FROM clients WHERE client_id = ?").bind(client_id).execute(&self.pool).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("client {client_id:?}")));
        }
        Ok(())
    }

    async fn signing_keys(&self) -> StoreResult<Vec<SigningKey>> {
        sqlx::query(&format!("SELECT {KEY_COLUMNS} FROM signing_keys ORDER BY created_at DESC, rowid DESC"))
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
            sqlx::query("UPDATE signing_keys SET retired_at = ? WHERE retired_at IS NULL AND alg = ?")
                .bind(now)
                .bind(alg.as_str())
                .execute(&mut *tx)
                .await?;
        }
        for key in new_keys {
            sqlx::query(&format!("INSERT INTO signing_keys ({KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?)"))
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
        let done = sqlx::query("DELETE FROM signing_keys WHERE retired_at IS NOT NULL AND retired_at < ?")
            .bind(retired_before)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// The workstation's `public_key`, `enabled` and `enrolled_at` are stored
    /// as given. `Conflict` also if its id or the code digest is taken.
    async fn create_workstation(&self, ws: &Workstation, code_digest: &[u8], code_expires_at: i64) -> StoreResult<()> {
        sqlx::query(&format!(
            "INSERT INTO workstations ({WORKSTATION_COLUMNS}, enrol_code_digest, enrol_code_expires_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(&ws.id)
        .bind(&ws.name)
        .bind(&ws.ward)
        .bind(&ws.public_key)
        .bind(ws.enabled)
        .bind(ws.created_at)
        .bind(ws.enrolled_at)
        .bind(code_digest)
        .bind(code_expires_at)
        .execute(&self.pool)
        .await
        .map_err(|e| workstation_conflict(e, ws))?;
        Ok(())
    }

    /// The code must expire strictly after `now`, and the workstation must
    /// not hold a key yet. A disabled workstation can enrol (it stays
    /// disabled). Returns the enrolled workstation.
    async fn enrol_workstation(&self, code_digest: &[u8], public_key: &[u8], now: i64) -> StoreResult<Workstation> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(&format!(
            "UPDATE workstations \
             SET public_key = ?, enrolled_at = ?, enrol_code_digest = NULL, enrol_code_expires_at = NULL \
             WHERE enrol_code_digest = ? AND enrol_code_expires_at > ? AND public_key IS NULL \
             RETURNING {WORKSTATION_COLUMNS}"
        ))
        .bind(public_key)
        .bind(now)
        .bind(code_digest)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let ws = row
            .as_ref()
            .map(workstation_from_row)
            .transpose()?
            .ok_or_else(|| StoreError::NotFound("unexpired enrolment code".to_string()))?;
        tx.commit().await?;
        Ok(ws)
    }

    async fn workstation(&self, id: &str) -> StoreResult<Option<Workstation>> {
        sqlx::query(&format!("SELECT {WORKSTATION_COLUMNS} FROM workstations WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(workstation_from_row)
            .transpose()
    }

    async fn list_workstations(&self) -> StoreResult<Vec<Workstation>> {
        sqlx::query(&format!("SELECT {WORKSTATION_COLUMNS} FROM workstations ORDER BY name"))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(workstation_from_row)
            .collect()
    }

    async fn set_workstation_enabled(&self, name: &str, enabled: bool) -> StoreResult<()> {
        let done = sqlx::query("UPDATE workstations SET enabled = ? WHERE name = ?")
            .bind(enabled)
            .bind(name)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("workstation {name:?}")));
        }
        Ok(())
    }

    /// `failed_pins` is stored as given. `NotFound` if the owner does not
    /// exist.
    async fn add_badge(&self, badge: &Badge) -> StoreResult<()> {
        sqlx::query(&format!("INSERT INTO badges ({BADGE_COLUMNS}) VALUES (?, ?, ?, ?)"))
            .bind(&badge.digest)
            .bind(&badge.user_id)
            .bind(i64::from(badge.failed_pins))
            .bind(badge.created_at)
            .execute(&self.pool)
            .await
            .map_err(|e| match e {
                sqlx::Error::Database(ref db) if db.is_foreign_key_violation() => {
                    StoreError::NotFound(format!("user id {:?}", badge.user_id))
                }
                other => conflict_on_unique(other, "badge".to_string()),
            })?;
        Ok(())
    }

    async fn badge(&self, digest: &[u8]) -> StoreResult<Option<Badge>> {
        sqlx::query(&format!("SELECT {BADGE_COLUMNS} FROM badges WHERE digest = ?"))
            .bind(digest)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(badge_from_row)
            .transpose()
    }

    async fn revoke_badge(&self, digest: &[u8]) -> StoreResult<()> {
        let done = sqlx::query("DELETE FROM badges WHERE digest = ?").bind(digest).execute(&self.pool).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("badge".to_string()));
        }
        Ok(())
    }

    /// An unknown user has none: 0.
    async fn revoke_user_badges(&self, user_id: &str) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM badges WHERE user_id = ?").bind(user_id).execute(&self.pool).await?;
        Ok(done.rows_affected())
    }

    async fn begin_pin_attempt(&self, digest: &[u8], limit: u32) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE badges SET pin_attempts = pin_attempts + 1 WHERE digest = ? AND failed_pins + pin_attempts < ?",
        )
        .bind(digest)
        .bind(i64::from(limit))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn end_pin_attempt(&self, digest: &[u8]) -> StoreResult<()> {
        sqlx::query("UPDATE badges SET pin_attempts = MAX(pin_attempts - 1, 0) WHERE digest = ?")
            .bind(digest)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// `NotFound` if the badge is not enrolled.
    async fn record_pin_failure(&self, digest: &[u8]) -> StoreResult<u32> {
        let count: Option<i64> = sqlx::query_scalar(
            "UPDATE badges SET failed_pins = failed_pins + 1, pin_attempts = MAX(pin_attempts - 1, 0) \
             WHERE digest = ? RETURNING failed_pins",
        )
        .bind(digest)
        .fetch_optional(&self.pool)
        .await?;
        let count = count.ok_or_else(|| StoreError::NotFound("badge".to_string()))?;
        checked_count("badges", "failed_pins", count)
    }

    /// A user with no badges (or no such user) is not an error: a password
    /// login resets whether or not the user holds a badge.
    async fn reset_pin_failures(&self, user_id: &str) -> StoreResult<()> {
        sqlx::query(
            "UPDATE badges SET failed_pins = 0, pin_attempts = 0 WHERE user_id = ? \
             AND (failed_pins <> 0 OR pin_attempts <> 0)",
        )
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Insert-if-absent then read, in one (write) transaction, so racing
    /// callers all get whichever candidate was stored first.
    async fn server_secret(&self, name: &str, candidate: &[u8]) -> StoreResult<Vec<u8>> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT OR IGNORE INTO server_secrets (name, value) VALUES (?, ?)")
            .bind(name)
            .bind(candidate)
            .execute(&mut *tx)
            .await?;
        let row = sqlx::query("SELECT value FROM server_secrets WHERE name = ?").bind(name).fetch_one(&mut *tx).await?;
        let value = column(&row, "server_secrets", "value")?;
        tx.commit().await?;
        Ok(value)
    }

    /// Each notice is due at once (`next_attempt_at = now`).
    async fn enqueue_logouts(&self, notices: &[NewLogoutNotice], due_at: i64, now: i64) -> StoreResult<()> {
        if notices.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for notice in notices {
            sqlx::query(
                "INSERT INTO logout_outbox (client_id, sub, sid, attempts, next_attempt_at, created_at) \
                 VALUES (?, ?, ?, 0, ?, ?) \
                 ON CONFLICT (client_id, sid) DO UPDATE \
                 SET next_attempt_at = MIN(next_attempt_at, excluded.next_attempt_at)",
            )
            .bind(&notice.client_id)
            .bind(&notice.sub)
            .bind(&notice.sid)
            .bind(due_at)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The oldest due first (by `next_attempt_at`, then id), returned in id
    /// order. One statement picks and leases them, so concurrent claims
    /// never share a notice.
    async fn claim_due_logouts(&self, now: i64, lease: i64, limit: u32) -> StoreResult<Vec<LogoutNotice>> {
        // As above: no write transaction when nothing is due.
        let due: Vec<i64> = sqlx::query_scalar("SELECT 1 FROM logout_outbox WHERE next_attempt_at <= ? LIMIT 1")
            .bind(now)
            .fetch_all(&self.pool)
            .await?;
        if due.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(&format!(
            "UPDATE logout_outbox SET next_attempt_at = ? \
             WHERE id IN (SELECT id FROM logout_outbox WHERE next_attempt_at <= ? \
                          ORDER BY next_attempt_at, id LIMIT ?) \
             RETURNING {LOGOUT_COLUMNS}"
        ))
        .bind(now.saturating_add(lease))
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let mut notices = rows.iter().map(logout_notice_from_row).collect::<StoreResult<Vec<_>>>()?;
        tx.commit().await?;
        // RETURNING yields rows in no particular order.
        notices.sort_by_key(|n| n.id);
        Ok(notices)
    }

    /// A notice already gone (abandoned, or delivered by another node after
    /// its lease ran out) is not an error.
    async fn logout_delivered(&self, id: i64) -> StoreResult<()> {
        sqlx::query("DELETE FROM logout_outbox WHERE id = ?").bind(id).execute(&self.pool).await?;
        Ok(())
    }

    /// A notice already gone is not an error.
    async fn postpone_logout(&self, id: i64, next_attempt_at: i64) -> StoreResult<()> {
        sqlx::query("UPDATE logout_outbox SET next_attempt_at = ? WHERE id = ?")
            .bind(next_attempt_at)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Keeps the first 500 characters of `error`. A notice already gone is
    /// not an error.
    async fn logout_failed(&self, id: i64, next_attempt_at: i64, error: &str) -> StoreResult<()> {
        sqlx::query(
            "UPDATE logout_outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ? WHERE id = ?",
        )
        .bind(next_attempt_at)
        .bind(truncate_chars(error, MAX_LOGOUT_ERROR_CHARS))
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The user need not exist (any more): their sessions still end.
    async fn request_session_revocation(&self, user_id: &str, now: i64) -> StoreResult<()> {
        sqlx::query("INSERT INTO session_revocations (user_id, requested_at) VALUES (?, ?)")
            .bind(user_id)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Each user once, in the order of their first pending request.
    async fn take_session_revocations(&self) -> StoreResult<Vec<String>> {
        const T: &str = "session_revocations";
        // Servers ask every second; a read first means an idle server never
        // takes SQLite's single write lock for nothing.
        let pending: Vec<i64> =
            sqlx::query_scalar("SELECT 1 FROM session_revocations LIMIT 1").fetch_all(&self.pool).await?;
        if pending.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query("DELETE FROM session_revocations RETURNING id, user_id").fetch_all(&mut *tx).await?;
        let mut requests = rows
            .iter()
            .map(|row| Ok((column(row, T, "id")?, column(row, T, "user_id")?)))
            .collect::<StoreResult<Vec<(i64, String)>>>()?;
        tx.commit().await?;
        // RETURNING yields rows in no particular order.
        requests.sort_by_key(|(id, _)| *id);
        let mut seen = HashSet::new();
        Ok(requests.into_iter().filter_map(|(_, user_id)| seen.insert(user_id.clone()).then_some(user_id)).collect())
    }

    async fn add_webauthn_credential(&self, credential: &WebauthnCredential) -> StoreResult<()> {
        sqlx::query(&format!("INSERT INTO webauthn_credentials ({WEBAUTHN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"))
            .bind(&credential.id)
            .bind(&credential.user_id)
            .bind(credential.kind.as_str())
            .bind(&credential.name)
            .bind(&credential.data)
            .bind(credential.created_at)
            .bind(credential.last_used_at)
            .bind(credential.suspended_at)
            .execute(&self.pool)
            .await
            .map_err(|e| match e {
                sqlx::Error::Database(ref db) if db.is_foreign_key_violation() => {
                    StoreError::NotFound(format!("user id {:?}", credential.user_id))
                }
                other => conflict_on_unique(other, "webauthn credential".to_string()),
            })?;
        Ok(())
    }

    async fn webauthn_credentials(&self, user_id: &str) -> StoreResult<Vec<WebauthnCredential>> {
        sqlx::query(&format!(
            "SELECT {WEBAUTHN_COLUMNS} FROM webauthn_credentials WHERE user_id = ? ORDER BY created_at, id"
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(webauthn_credential_from_row)
        .collect()
    }

    async fn webauthn_credential(&self, id: &[u8]) -> StoreResult<Option<WebauthnCredential>> {
        sqlx::query(&format!("SELECT {WEBAUTHN_COLUMNS} FROM webauthn_credentials WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(webauthn_credential_from_row)
            .transpose()
    }

    async fn update_webauthn_credential(&self, id: &[u8], data: &str, used_at: i64) -> StoreResult<()> {
        let done = sqlx::query("UPDATE webauthn_credentials SET data = ?, last_used_at = ? WHERE id = ?")
            .bind(data)
            .bind(used_at)
            .bind(id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("webauthn credential".to_string()));
        }
        Ok(())
    }

    async fn set_webauthn_suspended(&self, user_id: &str, id: &[u8], at: Option<i64>) -> StoreResult<()> {
        let done = sqlx::query("UPDATE webauthn_credentials SET suspended_at = ? WHERE user_id = ? AND id = ?")
            .bind(at)
            .bind(user_id)
            .bind(id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("webauthn credential".to_string()));
        }
        Ok(())
    }

    async fn remove_webauthn_credential(&self, user_id: &str, id: &[u8]) -> StoreResult<()> {
        let done = sqlx::query("DELETE FROM webauthn_credentials WHERE id = ? AND user_id = ?")
            .bind(id)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("webauthn credential of user id {user_id:?}")));
        }
        Ok(())
    }

    async fn create_invite(&self, digest: &[u8], user_id: &str, now: i64, expires_at: i64) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM invites WHERE expires_at <= ?").bind(now).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO invites (digest, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)")
            .bind(digest)
            .bind(user_id)
            .bind(now)
            .bind(expires_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| match e {
                sqlx::Error::Database(ref db) if db.is_foreign_key_violation() => {
                    StoreError::NotFound(format!("user id {user_id:?}"))
                }
                other => conflict_on_unique(other, "invite".to_string()),
            })?;
        tx.commit().await?;
        Ok(())
    }

    /// One `DELETE … RETURNING`: SQLite has one writer at a time, so of two
    /// callers taking the same invite the second finds it gone.
    async fn take_invite(&self, digest: &[u8], now: i64) -> StoreResult<Option<String>> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query("DELETE FROM invites WHERE digest = ? AND expires_at > ? RETURNING user_id")
            .bind(digest)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
        let user_id = row.as_ref().map(|row| column(row, "invites", "user_id")).transpose()?;
        tx.commit().await?;
        Ok(user_id)
    }

    async fn list_badges(&self) -> StoreResult<Vec<Badge>> {
        sqlx::query(&format!("SELECT {BADGE_COLUMNS} FROM badges ORDER BY user_id, created_at, digest"))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(badge_from_row)
            .collect()
    }

    /// Each credential is stored with the user's `created_at` (the source
    /// does not say when it was set). `Conflict` (and nothing written) also
    /// if `credentials` names one kind twice.
    async fn import_user(&self, user: &User, credentials: &[(CredentialKind, String)]) -> StoreResult<()> {
        let roles = serde_json::to_string(&user.roles).map_err(encode_error("roles"))?;

        let mut tx = self.pool.begin().await?;
        sqlx::query(&format!("INSERT INTO users ({USER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"))
            .bind(&user.id)
            .bind(&user.username)
            .bind(&user.name)
            .bind(&user.email)
            .bind(&roles)
            .bind(user.disabled)
            .bind(i64::from(user.failed_logins))
            .bind(user.last_failed_at)
            .bind(user.created_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| user_conflict(e, user))?;
        for (kind, hash) in credentials {
            sqlx::query("INSERT INTO credentials (user_id, kind, secret, created_at) VALUES (?, ?, ?, ?)")
                .bind(&user.id)
                .bind(kind.as_str())
                .bind(hash)
                .bind(user.created_at)
                .execute(&mut *tx)
                .await
                .map_err(|e| {
                    conflict_on_unique(e, format!("{} credential of user {:?}", kind.as_str(), user.username))
                })?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn import_signing_key(&self, key: &SigningKey) -> StoreResult<()> {
        sqlx::query(&format!("INSERT INTO signing_keys ({KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?)"))
            .bind(&key.kid)
            .bind(key.alg.as_str())
            .bind(&key.pkcs8)
            .bind(key.created_at)
            .bind(key.retired_at)
            .execute(&self.pool)
            .await
            .map_err(|e| conflict_on_unique(e, format!("signing key {:?}", key.kid)))?;
        Ok(())
    }

    async fn import_workstation(&self, ws: &Workstation) -> StoreResult<()> {
        sqlx::query(&format!("INSERT INTO workstations ({WORKSTATION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"))
            .bind(&ws.id)
            .bind(&ws.name)
            .bind(&ws.ward)
            .bind(&ws.public_key)
            .bind(ws.enabled)
            .bind(ws.created_at)
            .bind(ws.enrolled_at)
            .execute(&self.pool)
            .await
            .map_err(|e| workstation_conflict(e, ws))?;
        Ok(())
    }

    async fn append_audit(&self, event: &AuditEvent) -> StoreResult<()> {
        let detail = serde_json::to_string(&event.detail).map_err(encode_error("audit detail"))?;
        sqlx::query(&format!("INSERT INTO audit_log ({AUDIT_COLUMNS}) VALUES (?, ?, ?, ?, ?)"))
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
        sqlx::query(&format!("SELECT {AUDIT_COLUMNS} FROM audit_log ORDER BY at DESC, id DESC LIMIT ?"))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(audit_from_row)
            .collect()
    }
}
