//! The PostgreSQL backend, for several server nodes sharing one directory: a
//! small connection pool and the migrations under `migrations/postgres`.
//!
//! The schema mirrors SQLite's: timestamps are BIGINT Unix seconds, blobs are
//! BYTEA, flags BOOLEAN, and lists and tagged enums are JSON kept as TEXT.
//! The methods themselves are written once for both engines (in
//! `crate::shared`); what is PostgreSQL's own stays here: connecting, U+0000
//! (below) and the names of its constraints.
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

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::shared::prelude::*;

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
        Self::open_with(url, true).await
    }

    /// [`PostgresStore::open`], or with `create` false, refuse a database
    /// without Wardkey's tables ([`StoreError::NoStore`]).
    pub async fn open_with(url: &str, create: bool) -> StoreResult<Self> {
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
        if !create {
            let tables: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename = '_sqlx_migrations'",
            )
            .fetch_one(&pool)
            .await?;
            if tables == 0 {
                pool.close().await;
                return Err(StoreError::NoStore(format!(
                    "{} (database {database:?} on {host}:{port} has no Wardkey tables)",
                    wardkey_core::secret::redact_url(url)
                )));
            }
        }
        check_username_case!(
            &pool,
            "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename = 'users'"
        );
        MIGRATOR.run(&pool).await?;
        seal_legacy_audit!(&pool, "BEGIN");
        tracing::debug!(host, port, database, "postgres store open");
        Ok(Self { pool })
    }

    /// Close every connection, waiting for those in use to be returned.
    /// Later calls on this store (or its clones) fail.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// What PostgreSQL does its own way; `crate::shared` calls these.
impl PostgresStore {
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
            return Err(StoreError::Corrupt(format!(
                "{what}: {field} holds U+0000, which PostgreSQL text cannot hold"
            )));
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
                Some("users_source_external_id") => {
                    format!("{} entry {:?}", user.source, user.external_id.as_deref().unwrap_or_default())
                }
                _ => format!("user {:?}", user.username),
            }),
            other => StoreError::Backend(other),
        }
    }

    /// Whether a logout notice is due: claiming finds out in the same
    /// statement, since PostgreSQL has no single write lock to spare.
    async fn anything_due(&self, _now: i64) -> StoreResult<bool> {
        Ok(true)
    }

    /// Whether a revocation is pending: taking finds out in the same
    /// statement, as in [`Self::anything_due`].
    async fn any_revocation_pending(&self) -> StoreResult<bool> {
        Ok(true)
    }
}

crate::shared::impl_store!(PostgresStore, postgres);
