//! What the backends share: the column lists their statements select, one
//! conversion function per table from a returned row to a domain value, and
//! the error mapping that does not depend on the engine.
//!
//! Everything here is generic over [`sqlx::Row`], so that SQLite and
//! PostgreSQL decode a row the same way and report a corrupt one in the same
//! words. Both schemas give each column the same name and a type that decodes
//! to the same Rust type (a SQLite INTEGER flag and a PostgreSQL BOOLEAN both
//! decode as `bool`; BLOB and BYTEA both as `Vec<u8>`), so no reader needs to
//! know which engine it reads. What does differ (SQL, placeholders,
//! transactions, constraint names, PostgreSQL's U+0000) stays in the
//! backends.

use sqlx::{ColumnIndex, Decode, Row, Type};
use wardkey_core::audit::AuditEvent;
use wardkey_core::badge::Badge;
use wardkey_core::client::{Client, validate_min_acr};
use wardkey_core::keys::{SigningAlg, SigningKey};
use wardkey_core::user::User;
use wardkey_core::workstation::Workstation;

use crate::{AuthenticatorKind, LogoutNotice, StoreError, StoreResult, WebauthnCredential};

/// The `users` columns [`user_from_row`] reads, in the order inserts bind them.
pub(crate) const USER_COLUMNS: &str =
    "id, username, name, email, roles, disabled, failed_logins, last_failed_at, created_at";
/// The `clients` columns [`client_from_row`] reads, in the order inserts bind them.
pub(crate) const CLIENT_COLUMNS: &str = "client_id, auth, redirect_uris, post_logout_redirect_uris, \
     backchannel_logout_uri, grant_types, start_url, id_token_alg, created_at, min_acr";
/// The `signing_keys` columns [`signing_key_from_row`] reads, in the order inserts bind them.
pub(crate) const KEY_COLUMNS: &str = "kid, alg, private_der, created_at, retired_at";
/// The `workstations` columns [`workstation_from_row`] reads, in the order inserts bind them.
pub(crate) const WORKSTATION_COLUMNS: &str = "id, name, ward, public_key, enabled, created_at, enrolled_at";
/// The `badges` columns [`badge_from_row`] reads, in the order inserts bind them.
pub(crate) const BADGE_COLUMNS: &str = "digest, user_id, failed_pins, created_at";
/// The `webauthn_credentials` columns [`webauthn_credential_from_row`] reads, in the order inserts bind them.
pub(crate) const WEBAUTHN_COLUMNS: &str = "id, user_id, kind, name, data, created_at, last_used_at, suspended_at";
/// The `logout_outbox` columns [`logout_notice_from_row`] reads.
pub(crate) const LOGOUT_COLUMNS: &str = "id, client_id, sub, sid, attempts, created_at";
/// The `audit_log` columns [`audit_from_row`] reads, in the order inserts bind them.
pub(crate) const AUDIT_COLUMNS: &str = "at, event, actor, subject, detail";

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

/// A foreign-key violation becomes `NotFound(what)`.
pub(crate) fn not_found_on_foreign_key(err: sqlx::Error, what: String) -> StoreError {
    match err {
        sqlx::Error::Database(ref e) if e.is_foreign_key_violation() => StoreError::NotFound(what),
        other => StoreError::Backend(other),
    }
}

/// Encoding plain data as JSON cannot really fail, but say so if it does.
pub(crate) fn encode_error(what: &'static str) -> impl FnOnce(serde_json::Error) -> StoreError {
    move |e| StoreError::Corrupt(format!("cannot encode {what} as JSON: {e}"))
}

/// At most the first `max` characters of `text`.
pub(crate) fn truncate_chars(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// Read one column, reporting a NULL or mistyped value as `Corrupt`.
pub(crate) fn column<'r, R, T>(row: &'r R, table: &str, name: &str) -> StoreResult<T>
where
    R: Row,
    for<'n> &'n str: ColumnIndex<R>,
    T: Decode<'r, R::Database> + Type<R::Database>,
{
    row.try_get(name).map_err(|e| StoreError::Corrupt(format!("{table}.{name}: {e}")))
}

/// A count read back from `table.name`, which must fit a `u32`.
pub(crate) fn checked_count(table: &str, name: &str, value: i64) -> StoreResult<u32> {
    u32::try_from(value).map_err(|_| StoreError::Corrupt(format!("{table}.{name} out of range: {value}")))
}

/// Read a non-negative count column.
fn count_column<R>(row: &R, table: &str, name: &str) -> StoreResult<u32>
where
    R: Row,
    for<'n> &'n str: ColumnIndex<R>,
    i64: for<'r> Decode<'r, R::Database> + Type<R::Database>,
{
    checked_count(table, name, column(row, table, name)?)
}

/// Read a JSON text column; `parse` is `serde_json::from_str` at the type
/// wanted.
fn json_column<R, T>(
    row: &R,
    table: &str,
    name: &str,
    parse: impl FnOnce(&str) -> serde_json::Result<T>,
) -> StoreResult<T>
where
    R: Row,
    for<'n> &'n str: ColumnIndex<R>,
    for<'r> &'r str: Decode<'r, R::Database> + Type<R::Database>,
{
    let text: &str = column(row, table, name)?;
    parse(text).map_err(|e| StoreError::Corrupt(format!("{table}.{name}: bad JSON: {e}")))
}

/// Read a JOSE algorithm name column.
fn alg_column<R>(row: &R, table: &str, name: &str) -> StoreResult<SigningAlg>
where
    R: Row,
    for<'n> &'n str: ColumnIndex<R>,
    for<'r> &'r str: Decode<'r, R::Database> + Type<R::Database>,
{
    let text: &str = column(row, table, name)?;
    SigningAlg::parse(text).map_err(|e| StoreError::Corrupt(format!("{table}.{name}: {e}")))
}

/// Read a WebAuthn authenticator kind column.
fn authenticator_kind_column<R>(row: &R, table: &str, name: &str) -> StoreResult<AuthenticatorKind>
where
    R: Row,
    for<'n> &'n str: ColumnIndex<R>,
    for<'r> &'r str: Decode<'r, R::Database> + Type<R::Database>,
{
    let text: &str = column(row, table, name)?;
    AuthenticatorKind::parse(text)
        .ok_or_else(|| StoreError::Corrupt(format!("{table}.{name}: unknown authenticator kind {text:?}")))
}

/// Read a client's `min_acr` column: NULL, or an acr Wardkey issues. Any
/// other value could never be met, so it is a corrupt row, not a client
/// nobody can sign in to.
fn min_acr_column<R>(row: &R, table: &str, name: &str) -> StoreResult<Option<String>>
where
    R: Row,
    for<'n> &'n str: ColumnIndex<R>,
    String: for<'r> Decode<'r, R::Database> + Type<R::Database>,
{
    let acr: Option<String> = column(row, table, name)?;
    if let Some(acr) = &acr {
        validate_min_acr(acr).map_err(|e| StoreError::Corrupt(format!("{table}.{name}: {}", e.message)))?;
    }
    Ok(acr)
}

/// Refuse to store a client that [`client_from_row`] would read back as
/// corrupt (a `min_acr` Wardkey does not issue): `Corrupt`, before anything
/// is written, so one bad registration cannot break `list_clients`.
pub(crate) fn storable_client(client: &Client) -> StoreResult<()> {
    match &client.min_acr {
        Some(acr) => validate_min_acr(acr)
            .map_err(|e| StoreError::Corrupt(format!("client {:?}: {}", client.client_id, e.message))),
        None => Ok(()),
    }
}

/// A [`User`] from a row of [`USER_COLUMNS`].
pub(crate) fn user_from_row<R>(row: &R) -> StoreResult<User>
where
    R: Row,
    for<'n> &'n str: ColumnIndex<R>,
    for<'r> &'r str: Decode<'r, R::Database> + Type<R::Database>,
    String: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    bool: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    i64: for<'r> Decode<'r, R::Database> + Type<R::Database>,
{
    const T: &str = "users";
    Ok(User {
        id: column(row, T, "id")?,
        username: column(row, T, "username")?,
        name: column(row, T, "name")?,
        email: column(row, T, "email")?,
        roles: json_column(row, T, "roles", |s| serde_json::from_str(s))?,
        disabled: column(row, T, "disabled")?,
        failed_logins: count_column(row, T, "failed_logins")?,
        last_failed_at: column(row, T, "last_failed_at")?,
        created_at: column(row, T, "created_at")?,
    })
}

/// A [`Client`] from a row of [`CLIENT_COLUMNS`].
pub(crate) fn client_from_row<R>(row: &R) -> StoreResult<Client>
where
    R: Row,
    for<'n> &'n str: ColumnIndex<R>,
    for<'r> &'r str: Decode<'r, R::Database> + Type<R::Database>,
    String: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    i64: for<'r> Decode<'r, R::Database> + Type<R::Database>,
{
    const T: &str = "clients";
    Ok(Client {
        client_id: column(row, T, "client_id")?,
        auth: json_column(row, T, "auth", |s| serde_json::from_str(s))?,
        redirect_uris: json_column(row, T, "redirect_uris", |s| serde_json::from_str(s))?,
        post_logout_redirect_uris: json_column(row, T, "post_logout_redirect_uris", |s| serde_json::from_str(s))?,
        backchannel_logout_uri: column(row, T, "backchannel_logout_uri")?,
        grant_types: json_column(row, T, "grant_types", |s| serde_json::from_str(s))?,
        start_url: column(row, T, "start_url")?,
        id_token_alg: alg_column(row, T, "id_token_alg")?,
        created_at: column(row, T, "created_at")?,
        min_acr: min_acr_column(row, T, "min_acr")?,
    })
}

/// A [`SigningKey`] from a row of [`KEY_COLUMNS`].
pub(crate) fn signing_key_from_row<R>(row: &R) -> StoreResult<SigningKey>
where
    R: Row,
    for<'n> &'n str: ColumnIndex<R>,
    for<'r> &'r str: Decode<'r, R::Database> + Type<R::Database>,
    String: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    Vec<u8>: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    i64: for<'r> Decode<'r, R::Database> + Type<R::Database>,
{
    const T: &str = "signing_keys";
    Ok(SigningKey {
        kid: column(row, T, "kid")?,
        alg: alg_column(row, T, "alg")?,
        pkcs8: column(row, T, "private_der")?,
        created_at: column(row, T, "created_at")?,
        retired_at: column(row, T, "retired_at")?,
    })
}

/// A [`Workstation`] from a row of [`WORKSTATION_COLUMNS`].
pub(crate) fn workstation_from_row<R>(row: &R) -> StoreResult<Workstation>
where
    R: Row,
    for<'n> &'n str: ColumnIndex<R>,
    String: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    Vec<u8>: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    bool: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    i64: for<'r> Decode<'r, R::Database> + Type<R::Database>,
{
    const T: &str = "workstations";
    Ok(Workstation {
        id: column(row, T, "id")?,
        name: column(row, T, "name")?,
        ward: column(row, T, "ward")?,
        public_key: column(row, T, "public_key")?,
        enabled: column(row, T, "enabled")?,
        created_at: column(row, T, "created_at")?,
        enrolled_at: column(row, T, "enrolled_at")?,
    })
}

/// A [`Badge`] from a row of [`BADGE_COLUMNS`].
pub(crate) fn badge_from_row<R>(row: &R) -> StoreResult<Badge>
where
    R: Row,
    for<'n> &'n str: ColumnIndex<R>,
    String: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    Vec<u8>: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    i64: for<'r> Decode<'r, R::Database> + Type<R::Database>,
{
    const T: &str = "badges";
    Ok(Badge {
        digest: column(row, T, "digest")?,
        user_id: column(row, T, "user_id")?,
        failed_pins: count_column(row, T, "failed_pins")?,
        created_at: column(row, T, "created_at")?,
    })
}

/// A [`WebauthnCredential`] from a row of [`WEBAUTHN_COLUMNS`].
pub(crate) fn webauthn_credential_from_row<R>(row: &R) -> StoreResult<WebauthnCredential>
where
    R: Row,
    for<'n> &'n str: ColumnIndex<R>,
    for<'r> &'r str: Decode<'r, R::Database> + Type<R::Database>,
    String: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    Vec<u8>: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    i64: for<'r> Decode<'r, R::Database> + Type<R::Database>,
{
    const T: &str = "webauthn_credentials";
    Ok(WebauthnCredential {
        id: column(row, T, "id")?,
        user_id: column(row, T, "user_id")?,
        kind: authenticator_kind_column(row, T, "kind")?,
        name: column(row, T, "name")?,
        data: column(row, T, "data")?,
        created_at: column(row, T, "created_at")?,
        last_used_at: column(row, T, "last_used_at")?,
        suspended_at: column(row, T, "suspended_at")?,
    })
}

/// A [`LogoutNotice`] from a row of [`LOGOUT_COLUMNS`].
pub(crate) fn logout_notice_from_row<R>(row: &R) -> StoreResult<LogoutNotice>
where
    R: Row,
    for<'n> &'n str: ColumnIndex<R>,
    String: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    i64: for<'r> Decode<'r, R::Database> + Type<R::Database>,
{
    const T: &str = "logout_outbox";
    Ok(LogoutNotice {
        id: column(row, T, "id")?,
        client_id: column(row, T, "client_id")?,
        sub: column(row, T, "sub")?,
        sid: column(row, T, "sid")?,
        attempts: count_column(row, T, "attempts")?,
        created_at: column(row, T, "created_at")?,
    })
}

/// An [`AuditEvent`] from a row of [`AUDIT_COLUMNS`].
pub(crate) fn audit_from_row<R>(row: &R) -> StoreResult<AuditEvent>
where
    R: Row,
    for<'n> &'n str: ColumnIndex<R>,
    for<'r> &'r str: Decode<'r, R::Database> + Type<R::Database>,
    String: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    i64: for<'r> Decode<'r, R::Database> + Type<R::Database>,
{
    const T: &str = "audit_log";
    Ok(AuditEvent {
        at: column(row, T, "at")?,
        event: column(row, T, "event")?,
        actor: column(row, T, "actor")?,
        subject: column(row, T, "subject")?,
        detail: json_column(row, T, "detail", |s| serde_json::from_str(s))?,
    })
}
