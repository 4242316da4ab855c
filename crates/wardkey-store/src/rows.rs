//! What the engines share when reading: the column lists their statements
//! select, one `sqlx::FromRow` row struct per table with one conversion into
//! its domain value, and the error mapping that does not depend on the
//! engine.
//!
//! Both schemas give each column the same name and a type that decodes to the
//! same Rust type (a SQLite INTEGER flag and a PostgreSQL BOOLEAN both decode
//! as `bool`; BLOB and BYTEA both as `Vec<u8>`), so one row struct reads
//! either engine. A value that does not decode (NULL where none belongs, bad
//! JSON, an unknown algorithm) is [`StoreError::Corrupt`], naming the table
//! and column, never a panic.

use wardkey_core::audit::AuditEvent;
use wardkey_core::badge::Badge;
use wardkey_core::client::{Client, validate_min_acr};
use wardkey_core::keys::{SigningAlg, SigningKey};
use wardkey_core::user::User;
use wardkey_core::workstation::Workstation;

use crate::audit_chain::{ChainHead, ChainedRecord};
use crate::{AuditRecord, AuthenticatorKind, LogoutNotice, StoreError, StoreResult, WebauthnCredential};

/// The `users` columns [`UserRow`] reads, in the order inserts bind them.
macro_rules! user_columns {
    () => {
        "id, username, name, email, roles, disabled, failed_logins, last_failed_at, created_at, source, external_id, \
         employee_number, held"
    };
}
/// The `clients` columns [`ClientRow`] reads, in the order inserts bind them.
macro_rules! client_columns {
    () => {
        "client_id, auth, redirect_uris, post_logout_redirect_uris, \
         backchannel_logout_uri, grant_types, start_url, id_token_alg, created_at, min_acr"
    };
}
/// The `signing_keys` columns [`KeyRow`] reads, in the order inserts bind them.
macro_rules! key_columns {
    () => {
        "kid, alg, private_der, created_at, retired_at"
    };
}
/// The `workstations` columns [`WorkstationRow`] reads, in the order inserts bind them.
macro_rules! workstation_columns {
    () => {
        "id, name, ward, public_key, enabled, created_at, enrolled_at"
    };
}
/// The `badges` columns [`BadgeRow`] reads, in the order inserts bind them.
macro_rules! badge_columns {
    () => {
        "digest, user_id, failed_pins, created_at"
    };
}
/// The `webauthn_credentials` columns [`WebauthnRow`] reads, in the order inserts bind them.
macro_rules! webauthn_columns {
    () => {
        "id, user_id, kind, name, data, created_at, last_used_at, suspended_at"
    };
}
/// The `logout_outbox` columns [`LogoutRow`] reads.
macro_rules! logout_columns {
    () => {
        "id, client_id, sub, sid, attempts, created_at"
    };
}
/// The `audit_log` columns [`AuditRow`] reads, in the order inserts bind them.
macro_rules! audit_columns {
    () => {
        "at, event, actor, subject, detail"
    };
}
// Macros, not consts, so that `concat!` builds each statement at compile
// time: no SQL string is formatted per call.
pub(crate) use {
    audit_columns, badge_columns, client_columns, key_columns, logout_columns, user_columns, webauthn_columns,
    workstation_columns,
};

/// Longest delivery error kept on an outbox row, in characters: enough to
/// diagnose, bounded whatever an RP sends back.
pub(crate) const MAX_LOGOUT_ERROR_CHARS: usize = 500;

/// A unique-constraint violation becomes `Conflict(what)`; anything else is a
/// backend failure.
pub(crate) fn conflict_on_unique(err: sqlx::Error, what: String) -> StoreError {
    match err {
        sqlx::Error::Database(ref e) if e.is_unique_violation() => StoreError::Conflict(what),
        other => StoreError::Backend(other),
    }
}

/// A foreign-key violation becomes `NotFound(not_found())`, a unique one
/// `Conflict(conflict)`; anything else is a backend failure.
pub(crate) fn owner_or_conflict(
    err: sqlx::Error,
    not_found: impl FnOnce() -> StoreError,
    conflict: &str,
) -> StoreError {
    match err {
        sqlx::Error::Database(ref e) if e.is_foreign_key_violation() => not_found(),
        other => conflict_on_unique(other, conflict.to_string()),
    }
}

/// A column that did not decode becomes `Corrupt`, naming `table` and the
/// column; anything else is a backend failure.
pub(crate) fn decode_error(table: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |err| match err {
        sqlx::Error::ColumnDecode { index, source } => StoreError::Corrupt(format!("{table}.{index}: {source}")),
        other => StoreError::Backend(other),
    }
}

/// Encoding plain data as JSON cannot really fail, but say so if it does.
pub(crate) fn to_json(what: &'static str, value: &impl serde::Serialize) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(format!("cannot encode {what} as JSON: {e}")))
}

/// At most the first `max` characters of `text`.
pub(crate) fn truncate_chars(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// A count read back from `table.name`, which must fit a `u32`.
pub(crate) fn checked_count(table: &str, name: &str, value: i64) -> StoreResult<u32> {
    u32::try_from(value).map_err(|_| StoreError::Corrupt(format!("{table}.{name} out of range: {value}")))
}

/// Parse a JSON text column.
fn from_json<T: serde::de::DeserializeOwned>(table: &str, name: &str, text: &str) -> StoreResult<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{table}.{name}: bad JSON: {e}")))
}

/// Parse a JOSE algorithm name column.
fn alg(table: &str, name: &str, text: &str) -> StoreResult<SigningAlg> {
    SigningAlg::parse(text).map_err(|e| StoreError::Corrupt(format!("{table}.{name}: {e}")))
}

/// Refuse to store a client that [`ClientRow`] would read back as corrupt (a
/// `min_acr` Wardkey does not issue): `Corrupt`, before anything is written,
/// so one bad registration cannot break `list_clients`.
pub(crate) fn storable_client(client: &Client) -> StoreResult<()> {
    match &client.min_acr {
        Some(acr) => validate_min_acr(acr)
            .map_err(|e| StoreError::Corrupt(format!("client {:?}: {}", client.client_id, e.message))),
        None => Ok(()),
    }
}

/// A `users` row.
#[derive(sqlx::FromRow)]
pub(crate) struct UserRow {
    id: String,
    username: String,
    name: Option<String>,
    email: Option<String>,
    roles: String,
    disabled: bool,
    failed_logins: i64,
    last_failed_at: Option<i64>,
    created_at: i64,
    source: String,
    external_id: Option<String>,
    employee_number: Option<String>,
    held: bool,
}

impl TryFrom<UserRow> for User {
    type Error = StoreError;
    fn try_from(row: UserRow) -> StoreResult<Self> {
        const T: &str = "users";
        Ok(User {
            roles: from_json(T, "roles", &row.roles)?,
            failed_logins: checked_count(T, "failed_logins", row.failed_logins)?,
            id: row.id,
            username: row.username,
            name: row.name,
            email: row.email,
            disabled: row.disabled,
            last_failed_at: row.last_failed_at,
            created_at: row.created_at,
            source: row.source,
            external_id: row.external_id,
            employee_number: row.employee_number,
            held: row.held,
        })
    }
}

/// A `clients` row.
#[derive(sqlx::FromRow)]
pub(crate) struct ClientRow {
    client_id: String,
    auth: String,
    redirect_uris: String,
    post_logout_redirect_uris: String,
    backchannel_logout_uri: Option<String>,
    grant_types: String,
    start_url: Option<String>,
    id_token_alg: String,
    created_at: i64,
    min_acr: Option<String>,
}

impl TryFrom<ClientRow> for Client {
    type Error = StoreError;
    /// A `min_acr` that is not an acr Wardkey issues could never be met, so
    /// it is a corrupt row, not a client nobody can sign in to.
    fn try_from(row: ClientRow) -> StoreResult<Self> {
        const T: &str = "clients";
        if let Some(acr) = &row.min_acr {
            validate_min_acr(acr).map_err(|e| StoreError::Corrupt(format!("{T}.min_acr: {}", e.message)))?;
        }
        Ok(Client {
            auth: from_json(T, "auth", &row.auth)?,
            redirect_uris: from_json(T, "redirect_uris", &row.redirect_uris)?,
            post_logout_redirect_uris: from_json(T, "post_logout_redirect_uris", &row.post_logout_redirect_uris)?,
            grant_types: from_json(T, "grant_types", &row.grant_types)?,
            id_token_alg: alg(T, "id_token_alg", &row.id_token_alg)?,
            client_id: row.client_id,
            backchannel_logout_uri: row.backchannel_logout_uri,
            start_url: row.start_url,
            created_at: row.created_at,
            min_acr: row.min_acr,
        })
    }
}

/// A `signing_keys` row.
#[derive(sqlx::FromRow)]
pub(crate) struct KeyRow {
    kid: String,
    alg: String,
    private_der: Vec<u8>,
    created_at: i64,
    retired_at: Option<i64>,
}

impl TryFrom<KeyRow> for SigningKey {
    type Error = StoreError;
    fn try_from(row: KeyRow) -> StoreResult<Self> {
        Ok(SigningKey {
            alg: alg("signing_keys", "alg", &row.alg)?,
            kid: row.kid,
            pkcs8: row.private_der,
            created_at: row.created_at,
            retired_at: row.retired_at,
        })
    }
}

/// A `workstations` row.
#[derive(sqlx::FromRow)]
pub(crate) struct WorkstationRow {
    id: String,
    name: String,
    ward: String,
    public_key: Option<Vec<u8>>,
    enabled: bool,
    created_at: i64,
    enrolled_at: Option<i64>,
}

impl TryFrom<WorkstationRow> for Workstation {
    type Error = StoreError;
    fn try_from(row: WorkstationRow) -> StoreResult<Self> {
        Ok(Workstation {
            id: row.id,
            name: row.name,
            ward: row.ward,
            public_key: row.public_key,
            enabled: row.enabled,
            created_at: row.created_at,
            enrolled_at: row.enrolled_at,
        })
    }
}

/// A `badges` row.
#[derive(sqlx::FromRow)]
pub(crate) struct BadgeRow {
    digest: Vec<u8>,
    user_id: String,
    failed_pins: i64,
    created_at: i64,
}

impl TryFrom<BadgeRow> for Badge {
    type Error = StoreError;
    fn try_from(row: BadgeRow) -> StoreResult<Self> {
        Ok(Badge {
            failed_pins: checked_count("badges", "failed_pins", row.failed_pins)?,
            digest: row.digest,
            user_id: row.user_id,
            created_at: row.created_at,
        })
    }
}

/// A `webauthn_credentials` row.
#[derive(sqlx::FromRow)]
pub(crate) struct WebauthnRow {
    id: Vec<u8>,
    user_id: String,
    kind: String,
    name: String,
    data: String,
    created_at: i64,
    last_used_at: Option<i64>,
    suspended_at: Option<i64>,
}

impl TryFrom<WebauthnRow> for WebauthnCredential {
    type Error = StoreError;
    fn try_from(row: WebauthnRow) -> StoreResult<Self> {
        let kind = AuthenticatorKind::parse(&row.kind).ok_or_else(|| {
            StoreError::Corrupt(format!("webauthn_credentials.kind: unknown authenticator kind {:?}", row.kind))
        })?;
        Ok(WebauthnCredential {
            id: row.id,
            user_id: row.user_id,
            kind,
            name: row.name,
            data: row.data,
            created_at: row.created_at,
            last_used_at: row.last_used_at,
            suspended_at: row.suspended_at,
        })
    }
}

/// A `logout_outbox` row.
#[derive(sqlx::FromRow)]
pub(crate) struct LogoutRow {
    id: i64,
    client_id: String,
    sub: String,
    sid: String,
    attempts: i64,
    created_at: i64,
}

impl TryFrom<LogoutRow> for LogoutNotice {
    type Error = StoreError;
    fn try_from(row: LogoutRow) -> StoreResult<Self> {
        Ok(LogoutNotice {
            attempts: checked_count("logout_outbox", "attempts", row.attempts)?,
            id: row.id,
            client_id: row.client_id,
            sub: row.sub,
            sid: row.sid,
            created_at: row.created_at,
        })
    }
}

/// An `audit_log` row.
#[derive(sqlx::FromRow)]
pub(crate) struct AuditRow {
    at: i64,
    event: String,
    actor: String,
    subject: String,
    detail: String,
}

impl TryFrom<AuditRow> for AuditEvent {
    type Error = StoreError;
    fn try_from(row: AuditRow) -> StoreResult<Self> {
        Ok(AuditEvent {
            detail: from_json("audit_log", "detail", &row.detail)?,
            at: row.at,
            event: row.event,
            actor: row.actor,
            subject: row.subject,
        })
    }
}

/// An `audit_log` row with its place in the chain, as stored.
#[derive(sqlx::FromRow)]
pub(crate) struct ChainedRow {
    id: i64,
    seq: Option<i64>,
    at: i64,
    event: String,
    actor: String,
    subject: String,
    detail: String,
    prev_hash: Option<String>,
    hash: Option<String>,
}

/// The `audit_log` columns [`ChainedRow`] reads.
macro_rules! chained_columns {
    () => {
        "id, seq, at, event, actor, subject, detail, prev_hash, hash"
    };
}
pub(crate) use chained_columns;

impl TryFrom<ChainedRow> for ChainedRecord {
    type Error = StoreError;
    /// A detail that is not JSON is kept as a JSON string: the hash is over
    /// the text, so a corrupt row still shows as altered, not as an error.
    fn try_from(row: ChainedRow) -> StoreResult<Self> {
        let detail =
            serde_json::from_str(&row.detail).unwrap_or_else(|_| serde_json::Value::String(row.detail.clone()));
        Ok(ChainedRecord {
            seq: row.seq,
            row_id: row.id,
            event: AuditEvent { at: row.at, event: row.event, actor: row.actor, subject: row.subject, detail },
            detail_text: row.detail,
            prev_hash: row.prev_hash,
            hash: row.hash,
        })
    }
}

impl TryFrom<ChainedRow> for AuditRecord {
    type Error = StoreError;
    fn try_from(row: ChainedRow) -> StoreResult<Self> {
        Ok(AuditRecord {
            seq: row.seq.unwrap_or_default(),
            event: AuditEvent {
                detail: from_json("audit_log", "detail", &row.detail)?,
                at: row.at,
                event: row.event,
                actor: row.actor,
                subject: row.subject,
            },
        })
    }
}

/// The `audit_chain` row.
#[derive(sqlx::FromRow)]
pub(crate) struct ChainHeadRow {
    seq: i64,
    hash: String,
    anchor_seq: i64,
    anchor_hash: String,
}

impl From<ChainHeadRow> for ChainHead {
    fn from(row: ChainHeadRow) -> Self {
        ChainHead {
            seq: row.seq,
            hash: row.hash,
            anchor_seq: row.anchor_seq,
            anchor_hash: row.anchor_hash,
            unchained: None,
        }
    }
}

/// Convert every row, failing on the first corrupt one.
pub(crate) fn convert_all<R, T: TryFrom<R, Error = StoreError>>(rows: Vec<R>) -> StoreResult<Vec<T>> {
    rows.into_iter().map(T::try_from).collect()
}
