//! The PostgreSQL backend, for several server nodes sharing one directory: a
//! small connection pool and the migrations under `migrations/postgres`.
//!
//! The schema mirrors SQLite's: timestamps are BIGINT Unix seconds, blobs are
//! BYTEA, flags BOOLEAN, and lists and tagged enums are JSON kept as TEXT,
//! decoded by one conversion function per table (shared with SQLite, in
//! [`crate::rows`]); a row that does not decode is reported as
//! [`StoreError::Corrupt`], never a panic.
//!
//! Statements that change rows and return them (`… RETURNING`) run inside a
//! transaction that commits only once every returned row has decoded, so a
//! corrupt row never leaves a half-applied change behind. Claims on the
//! logout outbox lock the rows they take (`FOR UPDATE SKIP LOCKED`), so nodes
//! claiming at once never take the same notice and never wait on each other.
//!
//! PostgreSQL text cannot hold U+0000, which SQLite's can. No stored name or
//! id contains one, so a lookup by such a key answers "no such row" without
//! asking the database (as SQLite would) instead of failing; free text that
//! is only recorded (audit fields, delivery errors) is stored with U+FFFD in
//! its place. Imports (`wardkey store migrate`), which must copy every value
//! unchanged, refuse text holding one as [`StoreError::Corrupt`]; so do
//! WebAuthn credential writes, since the same call registers and imports one.

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use wardkey_core::audit::AuditEvent;
use wardkey_core::badge::Badge;
use wardkey_core::client::Client;
use wardkey_core::keys::SigningKey;
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

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// Connections per node. Every call is one short statement or transaction,
/// and a database serves many nodes, so a handful is plenty.
const MAX_CONNECTIONS: u32 = 5;

/// How long a call waits for a connection, including connecting afresh,
/// before failing: a dead database fails requests fast instead of hanging
/// them.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// `application_name` shown in `pg_stat_activity` unless the URL sets one.
const APPLICATION_NAME: &str = "wardkey";

/// [`Store`] on a PostgreSQL database, shared by every server node.
///
/// Cloning is cheap and shares the connection pool.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connect to the database named by `url` and bring its schema up to
    /// date. Nodes starting at once are safe: the migrations run under a
    /// database lock, one node at a time.
    ///
    /// `url` is `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?PARAMS]`
    /// (or `postgresql://…`); the database must exist. Fails within a few
    /// seconds if the server cannot be reached.
    pub async fn open(url: &str) -> StoreResult<Self> {
        let mut options = PgConnectOptions::from_str(url)?;
        if options.get_application_name().is_none() {
            options = options.application_name(APPLICATION_NAME);
        }
        // The URL may hold a password: log where, not how.
        let (host, port) = (options.get_host().to_string(), options.get_port());
        let database = options.get_database().unwrap_or_default().to_string();

        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        tracing::debug!(host, port, database, "postgres store open");
        Ok(Self { pool })
    }

    /// Close every connection, waiting for those in use to be returned.
    /// Later calls on this store (or its clones) fail.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Whether `key` can name no stored row: PostgreSQL text cannot hold U+0000.
fn names_nothing(key: &str) -> bool {
    key.contains('\0')
}

/// Free text as PostgreSQL text can hold it: each U+0000 becomes U+FFFD.
fn storable_text(text: &str) -> Cow<'_, str> {
    if text.contains('\0') { Cow::Owned(text.replace('\0', "\u{fffd}")) } else { Cow::Borrowed(text) }
}

/// An imported value must arrive unchanged, so text PostgreSQL cannot hold
/// (holding U+0000) is refused, not altered: `Corrupt`, naming the field of
/// `what` but not the value (it may be a credential hash).
fn storable_import(what: &str, field: &str, text: &str) -> StoreResult<()> {
    if text.contains('\0') {
        return Err(StoreError::Corrupt(format!("{what}: {field} holds U+0000, which PostgreSQL text cannot hold")));
    }
    Ok(())
}

/// `create_workstation`'s and `import_workstation`'s unique violations say
/// which value is taken: the name (the admin's business), or the id or
/// enrolment code (a random value that collided). The migrations name
/// the constraints.
fn workstation_conflict(err: sqlx::Error, ws: &Workstation) -> StoreError {
    match err {
        sqlx::Error::Database(ref e) if e.is_unique_violation() => StoreError::Conflict(match e.constraint() {
            Some("workstations_enrol_code_digest_key") => "workstation enrolment code".to_string(),
            Some("workstations_pkey") => format!("workstation id {:?}", ws.id),
            _ => format!("workstation {:?}", ws.name),
        }),
        other => StoreError::Backend(other),
    }
}

/// `import_user`'s unique violations say which value is taken: the id or
/// the username. The migrations name the constraints.
fn user_conflict(err: sqlx::Error, user: &User) -> StoreError {
    match err {
        sqlx::Error::Database(ref e) if e.is_unique_violation() => StoreError::Conflict(match e.constraint() {
            Some("users_pkey") => format!("user id {:?}", user.id),
            _ => format!("user {:?}", user.username),
        }),
        other => StoreError::Backend(other),
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn directory_generation(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar("SELECT value FROM directory_generation WHERE id = 1").fetch_one(&self.pool).await?)
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
             VALUES ($1, $2, $3, $4, $5, FALSE, 0, $6)",
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
            sqlx::query("INSERT INTO credentials (user_id, kind, secret, created_at) VALUES ($1, $2, $3, $4)")
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
        if names_nothing(username) {
            return Ok(None);
        }
        sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE username = $1"))
            .bind(username)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(user_from_row)
            .transpose()
    }

    async fn user_by_id(&self, id: &str) -> StoreResult<Option<User>> {
        if names_nothing(id) {
            return Ok(None);
        }
        sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
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
        let not_found = || StoreError::NotFound(format!("user {username:?}"));
        if names_nothing(username) {
            return Err(not_found());
        }
        let mut tx = self.pool.begin().await?;
        let user_id: Option<String> =
            sqlx::query_scalar("UPDATE users SET disabled = $1 WHERE username = $2 RETURNING id")
                .bind(disabled)
                .bind(username)
                .fetch_optional(&mut *tx)
                .await?;
        let user_id = user_id.ok_or_else(not_found)?;
        if disabled {
            sqlx::query("INSERT INTO session_revocations (user_id, requested_at) VALUES ($1, $2)")
                .bind(&user_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn begin_login_attempt(&self, user_id: &str, now: i64, limit: u32, stale_before: i64) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE users SET attempt_at = $1 WHERE id = $2 AND failed_logins < $3 \
             AND (attempt_at IS NULL OR attempt_at < $4)",
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
        sqlx::query("UPDATE users SET attempt_at = NULL WHERE id = $1").bind(user_id).execute(&self.pool).await?;
        Ok(())
    }

    /// `NotFound` if no user has this id.
    async fn record_login_failure(&self, user_id: &str, now: i64) -> StoreResult<u32> {
        let not_found = || StoreError::NotFound(format!("user id {user_id:?}"));
        if names_nothing(user_id) {
            return Err(not_found());
        }
        let count: Option<i64> = sqlx::query_scalar(
            "UPDATE users SET failed_logins = failed_logins + 1, last_failed_at = $1, attempt_at = NULL \
             WHERE id = $2 RETURNING failed_logins",
        )
        .bind(now)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        checked_count("users", "failed_logins", count.ok_or_else(not_found)?)
    }

    /// Also clears `last_failed_at`. `NotFound` if no user has this id.
    async fn reset_login_failures(&self, user_id: &str) -> StoreResult<()> {
        let not_found = || StoreError::NotFound(format!("user id {user_id:?}"));
        if names_nothing(user_id) {
            return Err(not_found());
        }
        let done =
            sqlx::query("UPDATE users SET failed_logins = 0, last_failed_at = NULL, attempt_at = NULL WHERE id = $1")
                .bind(user_id)
                .execute(&self.pool)
                .await?;
        if done.rows_affected() == 0 {
            return Err(not_found());
        }
        Ok(())
    }

    async fn set_credential(&self, user_id: &str, kind: CredentialKind, hash: &str, now: i64) -> StoreResult<()> {
        let what = || format!("user id {user_id:?}");
        if names_nothing(user_id) {
            return Err(StoreError::NotFound(what()));
        }
        sqlx::query(
            "INSERT INTO credentials (user_id, kind, secret, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (user_id, kind) DO UPDATE SET secret = EXCLUDED.secret, created_at = EXCLUDED.created_at",
        )
        .bind(user_id)
        .bind(kind.as_str())
        .bind(hash)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(|e| not_found_on_foreign_key(e, what()))?;
        Ok(())
    }

    async fn credential(&self, user_id: &str, kind: CredentialKind) -> StoreResult<Option<String>> {
        if names_nothing(user_id) {
            return Ok(None);
        }
        let row = sqlx::query("SELECT secret FROM credentials WHERE user_id = $1 AND kind = $2")
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
        sqlx::query(&format!(
            "INSERT INTO clients ({CLIENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
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
        .bind(&client.min_acr)
        .execute(&self.pool)
        .await
        .map_err(|e| conflict_on_unique(e, format!("client {:?}", client.client_id)))?;
        Ok(())
    }

    async fn client(&self, client_id: &str) -> StoreResult<Option<Client>> {
        if names_nothing(client_id) {
            return Ok(None);
        }
        sqlx::query(&format!("SELECT {CLIENT_COLUMNS} FROM clients WHERE client_id = $1"))
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
        let not_found = || StoreError::NotFound(format!("client {client_id:?}"));
        if names_nothing(client_id) {
            return Err(not_found());
        }
        let done = sqlx::query("DELETE FROM clients WHERE client_id = $1").bind(client_id).execute(&self.pool).await?;
        if done.rows_affected() == 0 {
            return Err(not_found());
        }
        Ok(())
    }

    async fn signing_keys(&self) -> StoreResult<Vec<SigningKey>> {
        sqlx::query(&format!("SELECT {KEY_COLUMNS} FROM signing_keys ORDER BY created_at DESC, seq DESC"))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(signing_key_from_row)
            .collect()
    }

    /// `Conflict` (and nothing changed) if a new key's `kid` is taken.
    async fn rotate_signing_keys(&self, new_keys: &[SigningKey], now: i64) -> StoreResult<()> {
        let mut algs: Vec<&str> = new_keys.iter().map(|k| k.alg.as_str()).collect();
        algs.sort_unstable();
        algs.dedup();

        let mut tx = self.pool.begin().await?;
        if !algs.is_empty() {
            sqlx::query("UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL AND alg = ANY($2)")
                .bind(now)
                .bind(&algs)
                .execute(&mut *tx)
                .await?;
        }
        for key in new_keys {
            sqlx::query(&format!("INSERT INTO signing_keys ({KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5)"))
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
        let done = sqlx::query("DELETE FROM signing_keys WHERE retired_at IS NOT NULL AND retired_at < $1")
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
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
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
    /// disabled). Returns the enrolled workstation. Of two nodes redeeming
    /// one code at once, the second finds it gone: `NotFound`.
    async fn enrol_workstation(&self, code_digest: &[u8], public_key: &[u8], now: i64) -> StoreResult<Workstation> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(&format!(
            "UPDATE workstations \
             SET public_key = $1, enrolled_at = $2, enrol_code_digest = NULL, enrol_code_expires_at = NULL \
             WHERE enrol_code_digest = $3 AND enrol_code_expires_at > $2 AND public_key IS NULL \
             RETURNING {WORKSTATION_COLUMNS}"
        ))
        .bind(public_key)
        .bind(now)
        .bind(code_digest)
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
        if names_nothing(id) {
            return Ok(None);
        }
        sqlx::query(&format!("SELECT {WORKSTATION_COLUMNS} FROM workstations WHERE id = $1"))
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
        let not_found = || StoreError::NotFound(format!("workstation {name:?}"));
        if names_nothing(name) {
            return Err(not_found());
        }
        let done = sqlx::query("UPDATE workstations SET enabled = $1 WHERE name = $2")
            .bind(enabled)
            .bind(name)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(not_found());
        }
        Ok(())
    }

    /// `failed_pins` is stored as given. `NotFound` if the owner does not
    /// exist.
    async fn add_badge(&self, badge: &Badge) -> StoreResult<()> {
        let owner_not_found = || StoreError::NotFound(format!("user id {:?}", badge.user_id));
        if names_nothing(&badge.user_id) {
            return Err(owner_not_found());
        }
        sqlx::query(&format!("INSERT INTO badges ({BADGE_COLUMNS}) VALUES ($1, $2, $3, $4)"))
            .bind(&badge.digest)
            .bind(&badge.user_id)
            .bind(i64::from(badge.failed_pins))
            .bind(badge.created_at)
            .execute(&self.pool)
            .await
            .map_err(|e| match e {
                sqlx::Error::Database(ref db) if db.is_foreign_key_violation() => owner_not_found(),
                other => conflict_on_unique(other, "badge".to_string()),
            })?;
        Ok(())
    }

    async fn badge(&self, digest: &[u8]) -> StoreResult<Option<Badge>> {
        sqlx::query(&format!("SELECT {BADGE_COLUMNS} FROM badges WHERE digest = $1"))
            .bind(digest)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(badge_from_row)
            .transpose()
    }

    async fn revoke_badge(&self, digest: &[u8]) -> StoreResult<()> {
        let done = sqlx::query("DELETE FROM badges WHERE digest = $1").bind(digest).execute(&self.pool).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("badge".to_string()));
        }
        Ok(())
    }

    /// An unknown user has none: 0.
    async fn revoke_user_badges(&self, user_id: &str) -> StoreResult<u64> {
        if names_nothing(user_id) {
            return Ok(0);
        }
        let done = sqlx::query("DELETE FROM badges WHERE user_id = $1").bind(user_id).execute(&self.pool).await?;
        Ok(done.rows_affected())
    }

    async fn begin_pin_attempt(&self, digest: &[u8], limit: u32) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE badges SET pin_attempts = pin_attempts + 1 WHERE digest = $1 AND failed_pins + pin_attempts < $2",
        )
        .bind(digest)
        .bind(i64::from(limit))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn end_pin_attempt(&self, digest: &[u8]) -> StoreResult<()> {
        sqlx::query("UPDATE badges SET pin_attempts = GREATEST(pin_attempts - 1, 0) WHERE digest = $1")
            .bind(digest)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// `NotFound` if the badge is not enrolled.
    async fn record_pin_failure(&self, digest: &[u8]) -> StoreResult<u32> {
        let count: Option<i64> = sqlx::query_scalar(
            "UPDATE badges SET failed_pins = failed_pins + 1, pin_attempts = GREATEST(pin_attempts - 1, 0) \
             WHERE digest = $1 RETURNING failed_pins",
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
        if names_nothing(user_id) {
            return Ok(());
        }
        sqlx::query(
            "UPDATE badges SET failed_pins = 0, pin_attempts = 0 WHERE user_id = $1 \
             AND (failed_pins <> 0 OR pin_attempts <> 0)",
        )
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Insert-if-absent, then read in a second statement, which sees
    /// whichever candidate was committed first: an insert racing ours waits
    /// for the other to commit, then does nothing.
    async fn server_secret(&self, name: &str, candidate: &[u8]) -> StoreResult<Vec<u8>> {
        sqlx::query("INSERT INTO server_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(candidate)
            .execute(&self.pool)
            .await?;
        let row =
            sqlx::query("SELECT value FROM server_secrets WHERE name = $1").bind(name).fetch_one(&self.pool).await?;
        column(&row, "server_secrets", "value")
    }

    /// Rows are written in (client, sid) order, so two batches touching
    /// the same notices cannot deadlock.
    async fn enqueue_logouts(&self, notices: &[NewLogoutNotice], due_at: i64, now: i64) -> StoreResult<()> {
        if notices.is_empty() {
            return Ok(());
        }
        let mut ordered: Vec<&NewLogoutNotice> = notices.iter().collect();
        ordered.sort_by(|a, b| (&a.client_id, &a.sid).cmp(&(&b.client_id, &b.sid)));

        let mut tx = self.pool.begin().await?;
        for notice in ordered {
            sqlx::query(
                "INSERT INTO logout_outbox (client_id, sub, sid, attempts, next_attempt_at, created_at) \
                 VALUES ($1, $2, $3, 0, $4, $5) \
                 ON CONFLICT (client_id, sid) DO UPDATE \
                 SET next_attempt_at = LEAST(logout_outbox.next_attempt_at, EXCLUDED.next_attempt_at)",
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
    /// order. The rows picked are locked and leased in one statement; rows
    /// another node is claiming are skipped, not waited for, so concurrent
    /// claims never share a notice.
    async fn claim_due_logouts(&self, now: i64, lease: i64, limit: u32) -> StoreResult<Vec<LogoutNotice>> {
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(&format!(
            "UPDATE logout_outbox SET next_attempt_at = $1 \
             WHERE id IN (SELECT id FROM logout_outbox WHERE next_attempt_at <= $2 \
                          ORDER BY next_attempt_at, id LIMIT $3 FOR UPDATE SKIP LOCKED) \
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
        sqlx::query("DELETE FROM logout_outbox WHERE id = $1").bind(id).execute(&self.pool).await?;
        Ok(())
    }

    /// A notice already gone is not an error.
    async fn postpone_logout(&self, id: i64, next_attempt_at: i64) -> StoreResult<()> {
        sqlx::query("UPDATE logout_outbox SET next_attempt_at = $1 WHERE id = $2")
            .bind(next_attempt_at)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Keeps the first 500 characters of `error` (U+0000 stored as U+FFFD).
    /// A notice already gone is not an error.
    async fn logout_failed(&self, id: i64, next_attempt_at: i64, error: &str) -> StoreResult<()> {
        sqlx::query(
            "UPDATE logout_outbox SET attempts = attempts + 1, next_attempt_at = $1, last_error = $2 WHERE id = $3",
        )
        .bind(next_attempt_at)
        .bind(storable_text(truncate_chars(error, MAX_LOGOUT_ERROR_CHARS)))
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The user need not exist (any more): their sessions still end. An id
    /// no user can have (holding U+0000) has no sessions: nothing is queued.
    async fn request_session_revocation(&self, user_id: &str, now: i64) -> StoreResult<()> {
        if names_nothing(user_id) {
            return Ok(());
        }
        sqlx::query("INSERT INTO session_revocations (user_id, requested_at) VALUES ($1, $2)")
            .bind(user_id)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Each user once, in the order of their first pending request. Of two
    /// nodes taking at once, each request goes to one of them.
    async fn take_session_revocations(&self) -> StoreResult<Vec<String>> {
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(
            "WITH taken AS (DELETE FROM session_revocations RETURNING id, user_id) \
             SELECT user_id FROM taken GROUP BY user_id ORDER BY MIN(id)",
        )
        .fetch_all(&mut *tx)
        .await?;
        let user_ids = rows
            .iter()
            .map(|row| column(row, "session_revocations", "user_id"))
            .collect::<StoreResult<Vec<String>>>()?;
        tx.commit().await?;
        Ok(user_ids)
    }

    /// An owner id holding U+0000 names no user: `NotFound`. A `name` or
    /// `data` holding U+0000, which PostgreSQL text cannot store, is refused
    /// as `Corrupt` before anything is written, rather than altered (this
    /// also imports credentials, which must arrive unchanged).
    async fn add_webauthn_credential(&self, credential: &WebauthnCredential) -> StoreResult<()> {
        let owner_not_found = || StoreError::NotFound(format!("user id {:?}", credential.user_id));
        if names_nothing(&credential.user_id) {
            return Err(owner_not_found());
        }
        storable_import("webauthn credential", "name", &credential.name)?;
        storable_import("webauthn credential", "data", &credential.data)?;
        sqlx::query(&format!(
            "INSERT INTO webauthn_credentials ({WEBAUTHN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
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
            sqlx::Error::Database(ref db) if db.is_foreign_key_violation() => owner_not_found(),
            other => conflict_on_unique(other, "webauthn credential".to_string()),
        })?;
        Ok(())
    }

    async fn webauthn_credentials(&self, user_id: &str) -> StoreResult<Vec<WebauthnCredential>> {
        if names_nothing(user_id) {
            return Ok(Vec::new());
        }
        sqlx::query(&format!(
            "SELECT {WEBAUTHN_COLUMNS} FROM webauthn_credentials WHERE user_id = $1 ORDER BY created_at, id"
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(webauthn_credential_from_row)
        .collect()
    }

    async fn webauthn_credential(&self, id: &[u8]) -> StoreResult<Option<WebauthnCredential>> {
        sqlx::query(&format!("SELECT {WEBAUTHN_COLUMNS} FROM webauthn_credentials WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(webauthn_credential_from_row)
            .transpose()
    }

    /// `data` holding U+0000 is refused as `Corrupt`, as in
    /// `add_webauthn_credential`.
    async fn update_webauthn_credential(&self, id: &[u8], data: &str, used_at: i64) -> StoreResult<()> {
        storable_import("webauthn credential", "data", data)?;
        let done = sqlx::query("UPDATE webauthn_credentials SET data = $1, last_used_at = $2 WHERE id = $3")
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
        if names_nothing(user_id) {
            return Err(StoreError::NotFound("webauthn credential".to_string()));
        }
        let done = sqlx::query("UPDATE webauthn_credentials SET suspended_at = $1 WHERE user_id = $2 AND id = $3")
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
        let not_found = || StoreError::NotFound(format!("webauthn credential of user id {user_id:?}"));
        if names_nothing(user_id) {
            return Err(not_found());
        }
        let done = sqlx::query("DELETE FROM webauthn_credentials WHERE id = $1 AND user_id = $2")
            .bind(id)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(not_found());
        }
        Ok(())
    }

    /// A user id holding U+0000 names no user: `NotFound`.
    async fn create_invite(&self, digest: &[u8], user_id: &str, now: i64, expires_at: i64) -> StoreResult<()> {
        let not_found = || StoreError::NotFound(format!("user id {user_id:?}"));
        if names_nothing(user_id) {
            return Err(not_found());
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM invites WHERE expires_at <= $1").bind(now).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO invites (digest, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(digest)
            .bind(user_id)
            .bind(now)
            .bind(expires_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| match e {
                sqlx::Error::Database(ref db) if db.is_foreign_key_violation() => not_found(),
                other => conflict_on_unique(other, "invite".to_string()),
            })?;
        tx.commit().await?;
        Ok(())
    }

    /// One `DELETE … RETURNING`: of two nodes taking the same invite at
    /// once, the second waits for the first's row lock, then finds the row
    /// gone.
    async fn take_invite(&self, digest: &[u8], now: i64) -> StoreResult<Option<String>> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query("DELETE FROM invites WHERE digest = $1 AND expires_at > $2 RETURNING user_id")
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
    /// if `credentials` names one kind twice. Text holding U+0000, which
    /// PostgreSQL cannot store, is refused as `Corrupt` before anything is
    /// written, rather than altered.
    async fn import_user(&self, user: &User, credentials: &[(CredentialKind, String)]) -> StoreResult<()> {
        let what = format!("user {:?}", user.username);
        storable_import(&what, "id", &user.id)?;
        storable_import(&what, "username", &user.username)?;
        storable_import(&what, "name", user.name.as_deref().unwrap_or_default())?;
        storable_import(&what, "email", user.email.as_deref().unwrap_or_default())?;
        for (kind, hash) in credentials {
            storable_import(&what, &format!("{} hash", kind.as_str()), hash)?;
        }
        let roles = serde_json::to_string(&user.roles).map_err(encode_error("roles"))?;

        let mut tx = self.pool.begin().await?;
        sqlx::query(&format!("INSERT INTO users ({USER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"))
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
            sqlx::query("INSERT INTO credentials (user_id, kind, secret, created_at) VALUES ($1, $2, $3, $4)")
                .bind(&user.id)
                .bind(kind.as_str())
                .bind(hash)
                .bind(user.created_at)
                .execute(&mut *tx)
                .await
                .map_err(|e| conflict_on_unique(e, format!("{} credential of {what}", kind.as_str())))?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A `kid` holding U+0000 is refused as `Corrupt`, as in `import_user`.
    async fn import_signing_key(&self, key: &SigningKey) -> StoreResult<()> {
        storable_import(&format!("signing key {:?}", key.kid), "kid", &key.kid)?;
        sqlx::query(&format!("INSERT INTO signing_keys ({KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5)"))
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

    /// Text holding U+0000 is refused as `Corrupt`, as in `import_user`.
    async fn import_workstation(&self, ws: &Workstation) -> StoreResult<()> {
        let what = format!("workstation {:?}", ws.name);
        storable_import(&what, "id", &ws.id)?;
        storable_import(&what, "name", &ws.name)?;
        storable_import(&what, "ward", &ws.ward)?;
        sqlx::query(&format!("INSERT INTO workstations ({WORKSTATION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"))
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

    /// `event`, `actor` and `subject` are stored with U+0000 as U+FFFD, so
    /// a record of a strange request is kept, not lost.
    async fn append_audit(&self, event: &AuditEvent) -> StoreResult<()> {
        let detail = serde_json::to_string(&event.detail).map_err(encode_error("audit detail"))?;
        sqlx::query(&format!("INSERT INTO audit_log ({AUDIT_COLUMNS}) VALUES ($1, $2, $3, $4, $5)"))
            .bind(event.at)
            .bind(storable_text(&event.event))
            .bind(storable_text(&event.actor))
            .bind(storable_text(&event.subject))
            .bind(detail)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn recent_audit(&self, limit: u32) -> StoreResult<Vec<AuditEvent>> {
        sqlx::query(&format!("SELECT {AUDIT_COLUMNS} FROM audit_log ORDER BY at DESC, id DESC LIMIT $1"))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(audit_from_row)
            .collect()
    }
}
