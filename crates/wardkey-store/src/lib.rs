//! Wardkey's durable directory: users, credentials (secrets and WebAuthn
//! authenticators), enrolment invites, clients, signing keys and the audit
//! log.
//!
//! Callers hold an `Arc<dyn Store>` and never know which engine is behind it.
//! [`open`] picks the backend from the configured URL: SQLite (the embedded
//! default, one file, WAL mode) today; PostgreSQL implements the same trait
//! for several server nodes. Each backend keeps its own embedded migrations.
//!
//! Nothing on the tap hot path needs the store; it is read on logins, client
//! authentication and admin commands.
//!
//! Layout: [`Store`] gathers one small trait per aggregate ([`UserStore`],
//! [`CredentialStore`], [`ClientStore`], [`WorkstationStore`], [`KeyStore`],
//! [`AuditStore`], [`LogoutStore`]; all in [`prelude`]). Both engines
//! implement them from one body per method: `shared` holds a macro in the
//! style of vaultwarden's `db_run!` that expands each body once per engine
//! against that engine's pool, with SQL written once in `$N` placeholders
//! (SQLite binds `$N` by index too) and an `engine!` switch where the
//! dialects really differ. `sqlite` and `postgres` keep only opening the
//! pool, their error wording and those differences; `rows` decodes rows
//! (`sqlx::FromRow`) into domain values. We chose a macro over sea-query or
//! generic functions because the SQL stays readable and checked in one place,
//! no dependency is added, and generic executors need the `where` bounds this
//! replaces. [`migrate::copy`] is `wardkey store migrate`.

#![warn(missing_docs)]

pub mod audit_chain;
pub mod migrate;
mod postgres;
mod rows;
mod shared;
mod sqlite;

/// Every store trait, for `use wardkey_store::prelude::*;`: calling a method
/// of an aggregate trait on an `Arc<dyn Store>` needs that trait in scope.
pub mod prelude {
    pub use crate::{
        AuditStore, ClientStore, CredentialStore, GroupStore, KeyStore, LogoutStore, Store, UserStore, WorkstationStore,
    };
}

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use wardkey_core::audit::AuditEvent;
use wardkey_core::badge::Badge;
use wardkey_core::client::Client;
use wardkey_core::keys::SigningKey;
use wardkey_core::user::{DirectoryRecord, NewUser, User};
use wardkey_core::workstation::Workstation;

pub use postgres::PostgresStore;
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
    /// Two existing usernames differ only in case, so the store cannot be
    /// upgraded to case-insensitive usernames until one is renamed.
    #[error(
        "users {0:?} and {1:?} differ only in case, and Wardkey now treats usernames as one whatever their case; \
         rename one before upgrading (with the previous Wardkey version, or in the database: \
         UPDATE users SET username = 'NEW-NAME' WHERE username = '{0}'), then start again"
    )]
    UsernameCaseClash(String, String),
    /// Opening an existing store found none: a missing file, or a database
    /// with no Wardkey tables. Nothing was created.
    #[error(
        "there is no Wardkey store at {0}; check store.url (or run this where the server keeps its data), \
         or create a new, empty one with `wardkey store init` or `wardkey serve --init`"
    )]
    NoStore(String),
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

/// Which kind of WebAuthn authenticator a credential lives on; decides the
/// acr a sign-in with it reaches (a synced passkey is a software key, a FIDO2
/// security key a hardware one), so it is stored with the credential rather
/// than guessed from the opaque credential data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthenticatorKind {
    /// A passkey (platform or synced; webauthn-rs `Passkey`).
    Passkey,
    /// A FIDO2 security key (webauthn-rs `SecurityKey`).
    SecurityKey,
}

impl AuthenticatorKind {
    /// Column value; the same words as the serde names.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Passkey => "passkey",
            Self::SecurityKey => "security_key",
        }
    }

    /// The kind a column value names, if any.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "passkey" => Some(Self::Passkey),
            "security_key" => Some(Self::SecurityKey),
            _ => None,
        }
    }
}

/// A registered WebAuthn credential (a passkey or a FIDO2 security key). The
/// store keeps what webauthn-rs needs to verify the next sign-in (`data`) as
/// opaque JSON, and alongside it only what the store itself must look up or
/// show: the credential id an assertion names, the owner, the kind and the
/// user's label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebauthnCredential {
    /// The WebAuthn credential id, unique across all users: an assertion
    /// names only this, so it must lead to exactly one owner.
    pub id: Vec<u8>,
    /// The owner's `sub`.
    pub user_id: String,
    /// Passkey or security key.
    pub kind: AuthenticatorKind,
    /// The label the user gave it ("Blue YubiKey"), to tell their
    /// authenticators apart.
    pub name: String,
    /// The webauthn-rs credential (`Passkey` or `SecurityKey`) as JSON,
    /// signature counter included; opaque to the store.
    pub data: String,
    /// When it was registered (Unix seconds).
    pub created_at: i64,
    /// When it last signed someone in (Unix seconds), if ever.
    pub last_used_at: Option<i64>,
    /// Since when it signs nobody in, if suspended (a signature counter
    /// that went backwards: possibly copied).
    pub suspended_at: Option<i64>,
}

/// One change a directory sync (LDAP, SCIM) makes to a user, for
/// [`UserStore::apply_user_changes`]. A directory owns the fields of a
/// [`DirectoryRecord`]; counters, credentials, badges and keys are never
/// touched, so a person moved between sources keeps them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserChange {
    /// A new user from `source` (see [`User::source`]).
    Create {
        /// Where the user comes from.
        source: String,
        /// What the directory says.
        record: DirectoryRecord,
    },
    /// Overwrite user `id`'s directory fields and set its source: an update
    /// from the same source, or linking a user first made elsewhere. A user
    /// an admin holds disabled ([`User::held`]) stays disabled, whoever
    /// writes.
    Update {
        /// The user's `sub`.
        id: String,
        /// Where the user comes from from now on.
        source: String,
        /// What the directory says.
        record: DirectoryRecord,
    },
    /// Disable user `id`: gone from its directory. Users are never deleted
    /// by a sync: their audit trail, badges and keys stay.
    Disable {
        /// The user's `sub`.
        id: String,
    },
}

/// A back-channel logout to deliver (OIDC Back-Channel Logout 1.0). Kept in
/// the store so that a restart or a dead RP never loses one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutNotice {
    /// Row id.
    pub id: i64,
    /// The RP to notify.
    pub client_id: String,
    /// The user's `sub`.
    pub sub: String,
    /// The ended session's `sid`.
    pub sid: String,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// When it was enqueued (Unix seconds).
    pub created_at: i64,
}

/// A back-channel logout to queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLogoutNotice {
    /// The RP to notify.
    pub client_id: String,
    /// The user's `sub`.
    pub sub: String,
    /// The ended session's `sid`.
    pub sid: String,
}

/// The durable directory, as callers hold it: `Arc<dyn Store>`. Object
/// safe; every method (here and on the aggregate traits it gathers) is one
/// short transaction, so a failure never leaves a partial write. Split by
/// aggregate so a reader finds a method next to its kin; the aggregates are
/// supertraits, so import them (`use wardkey_store::prelude::*;`) to call
/// their methods.
#[async_trait]
pub trait Store:
    UserStore
    + CredentialStore
    + ClientStore
    + WorkstationStore
    + KeyStore
    + AuditStore
    + LogoutStore
    + GroupStore
    + Send
    + Sync
    + 'static
{
    /// Cheap round trip for `/readyz`.
    async fn ping(&self) -> StoreResult<()>;
    /// A number that changes whenever a user, badge, workstation or client
    /// changes (a trigger bumps it in the same transaction). Nodes cache
    /// those rows for the hot path and drop the cache when it moves.
    /// WebAuthn credentials do not move it: no node caches them, a WebAuthn
    /// sign-in reads the store.
    async fn directory_generation(&self) -> StoreResult<i64>;
}

/// Users and their login attempts.
#[async_trait]
pub trait UserStore: Send + Sync {
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
    /// Enable or disable a user, as an admin: the user is held so, whatever
    /// their directory says (see [`User::held`]). Disabling also asks the
    /// servers to end the user's sessions (as [`LogoutStore::request_session_revocation`]), in the
    /// same transaction. `NotFound` if no such user.
    async fn set_user_disabled(&self, username: &str, disabled: bool, now: i64) -> StoreResult<()>;
    /// Claim the one password check a user may have under way, before the
    /// slow verification: `false` if the account is locked (`limit`
    /// failures) or another check began after `stale_before`. Concurrent
    /// guesses are then judged one at a time, each against the count the
    /// previous one left (NIST SP 800-63B §5.2.2); `false` too for no such
    /// user.
    async fn begin_login_attempt(&self, user_id: &str, now: i64, limit: u32, stale_before: i64) -> StoreResult<bool>;
    /// Release a claim of [`UserStore::begin_login_attempt`] after a right
    /// password ([`UserStore::record_login_failure`] releases it after a wrong one).
    async fn end_login_attempt(&self, user_id: &str) -> StoreResult<()>;
    /// Record a failed password check (releasing the attempt's claim);
    /// returns the new consecutive count.
    async fn record_login_failure(&self, user_id: &str, now: i64) -> StoreResult<u32>;
    /// Reset the failure count after a successful check or an admin unlock.
    async fn reset_login_failures(&self, user_id: &str) -> StoreResult<()>;
    /// Delete a user with their credentials, keys, badges and invites, and
    /// ask the servers to end their sessions, in one transaction; the audit
    /// log keeps their history. Returns the removed user. `NotFound` if no
    /// such user.
    async fn remove_user(&self, username: &str, now: i64) -> StoreResult<User>;
    /// Apply a directory sync's changes all at once, in one transaction:
    /// a sync is never half-written. A user disabled by a change has their
    /// sessions ended (as [`UserStore::set_user_disabled`]). `Conflict` if a
    /// username or a source's external id is taken, `NotFound` if a change
    /// names a user id that does not exist; nothing is written then.
    async fn apply_user_changes(&self, changes: &[UserChange], now: i64) -> StoreResult<()>;
    /// Insert a user exactly as given (id, counters, timestamps) with its
    /// credentials `(kind, hash)`, in one transaction; for `wardkey store
    /// migrate`. `Conflict` if the id or username exists.
    async fn import_user(&self, user: &User, credentials: &[(CredentialKind, String)]) -> StoreResult<()>;
}

/// What a user signs in with: secret hashes (password, PIN), WebAuthn
/// credentials, and the enrolment invites that lead to them.
#[async_trait]
pub trait CredentialStore: Send + Sync {
    /// Set (replace) a user's credential of `kind`. `NotFound` if no user.
    async fn set_credential(&self, user_id: &str, kind: CredentialKind, hash: &str, now: i64) -> StoreResult<()>;
    /// A user's credential hash of `kind`, if set.
    async fn credential(&self, user_id: &str, kind: CredentialKind) -> StoreResult<Option<String>>;
    /// Register a WebAuthn credential, every field stored as given (so
    /// `wardkey store migrate` copies one with it too). `Conflict` if a
    /// credential with this id exists (for any user); `NotFound` if the
    /// owner does not exist.
    async fn add_webauthn_credential(&self, credential: &WebauthnCredential) -> StoreResult<()>;
    /// A user's WebAuthn credentials, oldest first (ties by id); none for an
    /// unknown user.
    async fn webauthn_credentials(&self, user_id: &str) -> StoreResult<Vec<WebauthnCredential>>;
    /// Look a WebAuthn credential up by its id (what a sign-in assertion
    /// names).
    async fn webauthn_credential(&self, id: &[u8]) -> StoreResult<Option<WebauthnCredential>>;
    /// After a sign-in: replace the credential's `data` (webauthn-rs updates
    /// the signature counter, so a cloned authenticator shows) and set
    /// `last_used_at`. `NotFound` if the credential is gone.
    async fn update_webauthn_credential(&self, id: &[u8], data: &str, used_at: i64) -> StoreResult<()>;
    /// Remove one of a user's WebAuthn credentials. `NotFound` unless that
    /// user holds a credential with this id, so nobody removes another
    /// user's.
    async fn remove_webauthn_credential(&self, user_id: &str, id: &[u8]) -> StoreResult<()>;
    /// Suspend a user's credential since `at`, or lift its suspension
    /// (`None`). `NotFound` if the user has no such credential.
    async fn set_webauthn_suspended(&self, user_id: &str, id: &[u8], at: Option<i64>) -> StoreResult<()>;
    /// Record an invite whose token has SHA-256 `digest`, for `user_id`,
    /// valid until `expires_at`. Invites that expired before `now` are
    /// deleted in the same transaction, so unused ones do not pile up.
    /// `NotFound` if the user does not exist; `Conflict` if the digest is
    /// taken (a random token that collided).
    async fn create_invite(&self, digest: &[u8], user_id: &str, now: i64, expires_at: i64) -> StoreResult<()>;
    /// Use an invite once: the user id if it exists and has not expired at
    /// `now` (it is valid while `now < expires_at`), deleting it in the same
    /// statement/transaction (so two concurrent uses cannot both succeed);
    /// None otherwise.
    async fn take_invite(&self, digest: &[u8], now: i64) -> StoreResult<Option<String>>;
}

/// Registered OIDC clients (relying parties).
#[async_trait]
pub trait ClientStore: Send + Sync {
    /// Register a client. `Conflict` if the id is taken.
    async fn create_client(&self, client: &Client) -> StoreResult<()>;
    /// Look a client up.
    async fn client(&self, client_id: &str) -> StoreResult<Option<Client>>;
    /// Every client, ordered by id.
    async fn list_clients(&self) -> StoreResult<Vec<Client>>;
    /// Remove a client. `NotFound` if no such client.
    async fn remove_client(&self, client_id: &str) -> StoreResult<()>;
}

/// Tap workstations and the badges tapped on them, with the badges'
/// wrong-PIN counts.
#[async_trait]
pub trait WorkstationStore: Send + Sync {
    /// Create a workstation awaiting enrolment with a one-time code (its
    /// digest) valid until `code_expires_at`. `Conflict` if the name is taken.
    async fn create_workstation(&self, ws: &Workstation, code_digest: &[u8], code_expires_at: i64) -> StoreResult<()>;
    /// Redeem an enrolment code: set the public key and clear the code, in
    /// one statement so a code works once. `NotFound` if no workstation has
    /// this code unexpired at `now`.
    async fn enrol_workstation(&self, code_digest: &[u8], public_key: &[u8], now: i64) -> StoreResult<Workstation>;
    /// Look a workstation up by id.
    async fn workstation(&self, id: &str) -> StoreResult<Option<Workstation>>;
    /// Every workstation, ordered by name.
    async fn list_workstations(&self) -> StoreResult<Vec<Workstation>>;
    /// Delete a workstation by name (a PC scrapped or rebuilt): its key
    /// signs nothing any more. `NotFound` if none.
    async fn remove_workstation(&self, name: &str) -> StoreResult<()>;
    /// Enable or disable a workstation by name. `NotFound` if none.
    async fn set_workstation_enabled(&self, name: &str, enabled: bool) -> StoreResult<()>;
    /// Insert a workstation exactly as given, public key included, with no
    /// pending enrolment code; for `wardkey store migrate`. `Conflict` if the
    /// id or name exists.
    async fn import_workstation(&self, ws: &Workstation) -> StoreResult<()>;
    /// Enrol a badge. `Conflict` if the digest is already enrolled (to anyone).
    async fn add_badge(&self, badge: &Badge) -> StoreResult<()>;
    /// Look a badge up by digest.
    async fn badge(&self, digest: &[u8]) -> StoreResult<Option<Badge>>;
    /// Revoke one badge. `NotFound` if not enrolled.
    async fn revoke_badge(&self, digest: &[u8]) -> StoreResult<()>;
    /// Revoke every badge of a user; returns how many.
    async fn revoke_user_badges(&self, user_id: &str) -> StoreResult<u64>;
    /// Count a PIN check of a badge as under way, before the slow
    /// verification: `false` if its wrong PINs plus the checks already
    /// under way reach `limit`, so that however many guesses arrive at once,
    /// at most `limit` are ever judged; `false` too for a badge not enrolled.
    async fn begin_pin_attempt(&self, digest: &[u8], limit: u32) -> StoreResult<bool>;
    /// Release a check of [`WorkstationStore::begin_pin_attempt`] after a right PIN
    /// ([`WorkstationStore::record_pin_failure`] releases it after a wrong one).
    async fn end_pin_attempt(&self, digest: &[u8]) -> StoreResult<()>;
    /// Count a wrong PIN against a badge (releasing one check under way, if
    /// any); returns the new consecutive count.
    async fn record_pin_failure(&self, digest: &[u8]) -> StoreResult<u32>;
    /// Clear wrong-PIN counts on every badge of a user (a correct PIN, a
    /// password login, or an admin reset), and any PIN check left counted
    /// by a request that never finished.
    async fn reset_pin_failures(&self, user_id: &str) -> StoreResult<()>;
    /// Every enrolled badge, for `wardkey store migrate`.
    async fn list_badges(&self) -> StoreResult<Vec<Badge>>;
}

/// Token signing keys and the named server secrets every node shares.
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Every signing key, newest first, retired ones included.
    async fn signing_keys(&self) -> StoreResult<Vec<SigningKey>>;
    /// Add new keys and retire every other unretired key with the same
    /// algorithms at `now`, in one transaction.
    async fn rotate_signing_keys(&self, new_keys: &[SigningKey], now: i64) -> StoreResult<()>;
    /// Delete keys retired before `before`.
    async fn purge_signing_keys(&self, retired_before: i64) -> StoreResult<u64>;
    /// Insert a signing key exactly as given (retired or not); for `wardkey
    /// store migrate`. `Conflict` if the kid exists.
    async fn import_signing_key(&self, key: &SigningKey) -> StoreResult<()>;
    /// The server secret called `name`, storing `candidate` if there is none
    /// yet; every node and the CLI then agree on one value.
    async fn server_secret(&self, name: &str, candidate: &[u8]) -> StoreResult<Vec<u8>>;
}

/// Which audit records to read, newest first (the console's and `wardkey
/// audit`'s filters). Unset fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// At or after (Unix seconds).
    pub since: Option<i64>,
    /// Before (Unix seconds).
    pub until: Option<i64>,
    /// Event names starting with this (`tap.`, `user.disabled`).
    pub event: Option<String>,
    /// This actor exactly.
    pub actor: Option<String>,
    /// This subject exactly (a username, a workstation name).
    pub subject: Option<String>,
    /// Only records older than this `seq` (the next page).
    pub before_seq: Option<i64>,
    /// At most this many.
    pub limit: u32,
}

/// An audit record and its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Its place in the chain.
    pub seq: i64,
    /// The record.
    #[serde(flatten)]
    pub event: AuditEvent,
}

/// The append-only, hash-chained audit log ([`audit_chain`]).
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Append an audit record.
    async fn append_audit(&self, event: &AuditEvent) -> StoreResult<()> {
        self.append_audit_batch(std::slice::from_ref(event)).await
    }
    /// Append records in order, in one transaction: they join the chain
    /// together, after whatever another node appended first.
    async fn append_audit_batch(&self, events: &[AuditEvent]) -> StoreResult<()>;
    /// The newest `limit` audit records, newest first.
    async fn recent_audit(&self, limit: u32) -> StoreResult<Vec<AuditEvent>>;
    /// The records `filter` matches, newest first.
    async fn search_audit(&self, filter: &AuditFilter) -> StoreResult<Vec<AuditRecord>>;
    /// Up to `limit` rows as stored, in chain order after `after_seq`, with
    /// every row that never joined the chain first (for verify and export).
    async fn audit_chain_page(&self, after_seq: i64, limit: u32) -> StoreResult<Vec<audit_chain::ChainedRecord>>;
    /// The chain's head and anchor.
    async fn audit_chain_head(&self) -> StoreResult<audit_chain::ChainHead>;
    /// Delete the records before `before` (Unix seconds), oldest first and
    /// without gaps, moving the anchor so the rest still verifies; how many
    /// went.
    async fn prune_audit(&self, before: i64) -> StoreResult<u64>;
}

/// A group provisioned over SCIM 2.0, with its members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimGroup {
    /// Opaque id (SCIM `id`).
    pub id: String,
    /// Display name, unique whatever its case; mapped to role codes.
    pub display_name: String,
    /// The provisioner's id for it.
    pub external_id: Option<String>,
    /// Members' `sub`s, sorted.
    pub members: Vec<String>,
    /// When it was created (Unix seconds).
    pub created_at: i64,
    /// When it last changed (Unix seconds).
    pub updated_at: i64,
}

/// SCIM groups and their members.
#[async_trait]
pub trait GroupStore: Send + Sync {
    /// Every group with its members, by display name.
    async fn list_groups(&self) -> StoreResult<Vec<ScimGroup>>;
    /// Write `group` (new, or replacing its name, external id and member
    /// set) and set each `(user id, role codes)` of `roles`, in one
    /// transaction: membership and roles never disagree. `Conflict` if the
    /// display name is taken; `NotFound` if a member does not exist.
    async fn save_group(&self, group: &ScimGroup, roles: &[(String, Vec<String>)]) -> StoreResult<()>;
    /// Delete group `id` and set `roles`, in one transaction. `NotFound` if
    /// there is no such group.
    async fn delete_group(&self, id: &str, roles: &[(String, Vec<String>)]) -> StoreResult<()>;
}

/// What ends sessions elsewhere: the back-channel logout outbox and the
/// session revocation requests the admin CLI leaves for the servers.
#[async_trait]
pub trait LogoutStore: Send + Sync {
    /// Queue back-channel logouts due at `due_at`, all in one transaction.
    /// There is one notice per (client, sid): queuing one again only brings
    /// it forward, so an RP is told once per session.
    async fn enqueue_logouts(&self, notices: &[NewLogoutNotice], due_at: i64, now: i64) -> StoreResult<()>;
    /// Claim up to `limit` notices due at `now` for `lease` seconds: they are
    /// not due again until the lease ends, so two nodes never deliver the
    /// same notice at once.
    async fn claim_due_logouts(&self, now: i64, lease: i64, limit: u32) -> StoreResult<Vec<LogoutNotice>>;
    /// A notice was delivered: delete it.
    async fn logout_delivered(&self, id: i64) -> StoreResult<()>;
    /// Not yet: the notice watches a session that is still live; look again
    /// at `next_attempt_at` (no attempt is counted).
    async fn postpone_logout(&self, id: i64, next_attempt_at: i64) -> StoreResult<()>;
    /// A delivery failed: count the attempt and retry at `next_attempt_at`.
    async fn logout_failed(&self, id: i64, next_attempt_at: i64, error: &str) -> StoreResult<()>;
    /// Ask the servers to end every session of a user (from the admin CLI,
    /// which cannot reach an in-process cache).
    async fn request_session_revocation(&self, user_id: &str, now: i64) -> StoreResult<()>;
    /// Take (read and delete) the pending revocation requests: user ids.
    async fn take_session_revocations(&self) -> StoreResult<Vec<String>>;
}

/// Open the store named by `url` and bring its schema up to date, creating
/// a new, empty store if there is none (`wardkey store init`, tests).
pub async fn open(url: &str) -> StoreResult<Arc<dyn Store>> {
    open_with(url, true).await
}

/// Open the store named by `url`, which must exist, and bring its schema up
/// to date. A server or command pointed at the wrong path or database gets
/// [`StoreError::NoStore`] instead of a new, empty store that would quietly
/// know no users, keys or audit history.
pub async fn open_existing(url: &str) -> StoreResult<Arc<dyn Store>> {
    open_with(url, false).await
}

async fn open_with(url: &str, create: bool) -> StoreResult<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open_with(url, create).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresStore::open_with(url, create).await?))
    } else {
        Err(StoreError::UnsupportedUrl(url.to_string()))
    }
}
