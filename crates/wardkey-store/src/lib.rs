//! Wardkey's durable directory: users, credentials, clients, signing keys and
//! the audit log.
//!
//! Callers hold an `Arc<dyn Store>` and never know which engine is behind it.
//! [`open`] picks the backend from the configured URL: SQLite (the embedded
//! default, one file, WAL mode) today; PostgreSQL implements the same trait
//! for several server nodes. Each backend keeps its own embedded migrations.
//!
//! Nothing on the tap hot path needs the store; it is read on logins, client
//! authentication and admin commands.

#![warn(missing_docs)]

mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use wardkey_core::audit::AuditEvent;
use wardkey_core::client::Client;
use wardkey_core::keys::SigningKey;
use wardkey_core::user::{NewUser, User};

pub use sqlite::SqliteStore;

/// Store errors. `NotFound` and `Conflict` are the caller's business (an
/// admin typo, a duplicate); `Backend` is ours and is logged, not shown.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The named thing does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A unique name is taken.
    #[error("{0} already exists")]
    Conflict(String),
    /// The store URL is not one we can open.
    #[error("unsupported store url {0:?}: use sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
    /// The database failed.
    #[error("store backend error: {0}")]
    Backend(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("store migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A row did not decode into a domain value (a corrupt or foreign row).
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

/// Result alias for store calls.
pub type StoreResult<T> = Result<T, StoreError>;

/// Kinds of secret credential a user can hold, one of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    /// argon2id hash of the password.
    Password,
    /// argon2id hash of the tap PIN.
    Pin,
}

impl CredentialKind {
    /// Column value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Password => "password",
            Self::Pin => "pin",
        }
    }
}

/// The durable directory. Object safe so the server can hold
/// `Arc<dyn Store>`; every method is one short transaction, so a failure
/// never leaves a partial write.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Cheap round trip for `/readyz`.
    async fn ping(&self) -> StoreResult<()>;

    /// Create a user with a fresh opaque id. `Conflict` if the username is
    /// taken. If `password_hash` is given it is stored in the same
    /// transaction, so a user never exists half-made.
    async fn create_user(&self, user: &NewUser, password_hash: Option<&str>, now: i64) -> StoreResult<User>;
    /// Look a user up by login name.
    async fn user_by_username(&self, username: &str) -> StoreResult<Option<User>>;
    /// Look a user up by `sub`.
    async fn user_by_id(&self, id: &str) -> StoreResult<Option<User>>;
    /// Every user, ordered by username.
    async fn list_users(&self) -> StoreResult<Vec<User>>;
    /// Enable or disable a user. `NotFound` if no such user.
    async fn set_user_disabled(&self, username: &str, disabled: bool) -> StoreResult<()>;
    /// Record a failed password check; returns the new consecutive count.
    async fn record_login_failure(&self, user_id: &str, now: i64) -> StoreResult<u32>;
    /// Reset the failure count after a successful check or an admin unlock.
    async fn reset_login_failures(&self, user_id: &str) -> StoreResult<()>;

    /// Set (replace) a user's credential of `kind`. `NotFound` if no user.
    async fn set_credential(&self, user_id: &str, kind: CredentialKind, hash: &str, now: i64) -> StoreResult<()>;
    /// A user's credential hash of `kind`, if set.
    async fn credential(&self, user_id: &str, kind: CredentialKind) -> StoreResult<Option<String>>;

    /// Register a client. `Conflict` if the id is taken.
    async fn create_client(&self, client: &Client) -> StoreResult<()>;
    /// Look a client up.
    async fn client(&self, client_id: &str) -> StoreResult<Option<Client>>;
    /// Every client, ordered by id.
    async fn list_clients(&self) -> StoreResult<Vec<Client>>;
    /// Remove a client. `NotFound` if no such client.
    async fn remove_client(&self, client_id: &str) -> StoreResult<()>;

    /// Every signing key, newest first, retired ones included.
    async fn signing_keys(&self) -> StoreResult<Vec<SigningKey>>;
    /// Add new keys and retire every other unretired key with the same
    /// algorithms at `now`, in one transaction.
    async fn rotate_signing_keys(&self, new_keys: &[SigningKey], now: i64) -> StoreResult<()>;
    /// Delete keys retired before `before`.
    async fn purge_signing_keys(&self, retired_before: i64) -> StoreResult<u64>;

    /// Append an audit record.
    async fn append_audit(&self, event: &AuditEvent) -> StoreResult<()>;
    /// The newest `limit` audit records, newest first.
    async fn recent_audit(&self, limit: u32) -> StoreResult<Vec<AuditEvent>>;
}

/// Open the store named by `url` and bring its schema up to date.
pub async fn open(url: &str) -> StoreResult<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open(url).await?))
    } else {
        Err(StoreError::UnsupportedUrl(url.to_string()))
    }
}
