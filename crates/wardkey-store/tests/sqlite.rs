//! The store conformance suite (`suite/mod.rs`), run against SQLite (a file
//! in a temp dir and an in-memory database), plus SQLite-specific checks.

mod suite;

use std::path::Path;
use std::str::FromStr;

use sqlx::Connection;
use suite::{audit, badge, client, key, new_user, notice, notice_ids, webauthn, workstation};
use wardkey_core::client::{Client, ClientAuth};
use wardkey_core::keys::SigningAlg;
use wardkey_core::session::ACR_BADGE_PIN;
use wardkey_store::prelude::*;
use wardkey_store::{AuthenticatorKind, CredentialKind, LogoutNotice, NewLogoutNotice, SqliteStore, Store, StoreError};

// ---------------------------------------------------------------------------
// SQLite

fn file_url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

/// A store in a fresh file; the guard keeps the temp dir alive.
async fn temp_file_store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&file_url(&dir.path().join("wardkey.db"))).await.unwrap();
    (dir, store)
}

async fn memory_store() -> ((), SqliteStore) {
    ((), SqliteStore::open("sqlite::memory:").await.unwrap())
}

mod sqlite_file {
    use super::temp_file_store;
    crate::suite::all_cases!(temp_file_store);
}

mod sqlite_memory {
    use super::memory_store;
    crate::suite::all_cases!(memory_store);
}

#[tokio::test]
async fn open_creates_parent_directories_and_uses_wal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/deeper/wardkey.db");
    let url = file_url(&path);
    let store = SqliteStore::open(&url).await.unwrap();
    store.ping().await.unwrap();
    assert!(path.is_file());

    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&mut conn).await.unwrap();
    assert_eq!(mode, "wal");
}

/// A store from before case-insensitive usernames with "Alice" and "alice"
/// refuses to open, naming both, and is left as it was.
#[tokio::test]
async fn usernames_that_differ_only_in_case_stop_the_upgrade_with_words() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let url = file_url(&path);
    {
        let store = SqliteStore::open(&url).await.unwrap();
        store.close().await;
    }
    // Roll the file back to before migration 0010, then give it a clash.
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url).await.unwrap();
    for sql in [
        "DROP INDEX users_username_lower",
        "DROP INDEX users_source_external_id",
        "ALTER TABLE users DROP COLUMN source",
        "ALTER TABLE users DROP COLUMN external_id",
        "ALTER TABLE users DROP COLUMN employee_number",
        "ALTER TABLE users DROP COLUMN held",
        "DELETE FROM _sqlx_migrations WHERE version = 10",
        "INSERT INTO users (id, username, created_at) VALUES ('u1', 'Alice', 1), ('u2', 'alice', 2)",
    ] {
        sqlx::query(sql).execute(&mut conn).await.unwrap();
    }
    let err = SqliteStore::open(&url).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("\"Alice\" and \"alice\" differ only in case"), "{text}");
    assert!(text.contains("rename one"), "{text}");
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(&mut conn).await.unwrap();
    assert_eq!(count, 2, "nothing changed");
    // Renamed: it opens and migrates.
    sqlx::query("UPDATE users SET username = 'alice2' WHERE id = 'u1'").execute(&mut conn).await.unwrap();
    let store = SqliteStore::open(&url).await.unwrap();
    assert_eq!(store.user_by_username("ALICE2").await.unwrap().unwrap().id, "u1");
}

/// The database holds the signing keys, the badge key and every
/// credential hash: its directory is 0700 when Wardkey creates it, and the
/// database with its WAL files 0600 whatever the umask, also when an older
/// install left them readable.
#[tokio::test]
async fn the_database_is_private_to_its_owner() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data/wardkey.db");
    let store = SqliteStore::open(&file_url(&path)).await.unwrap();
    store.create_user(&suite::new_user("ivy"), None, 1).await.unwrap();
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    assert_eq!(mode(&path), 0o600);
    let wal = dir.path().join("data/wardkey.db-wal");
    assert_eq!(mode(&wal), 0o600);
    store.close().await;
    // An install from before: world-readable files are tightened on open.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let store = SqliteStore::open(&file_url(&path)).await.unwrap();
    store.ping().await.unwrap();
    assert_eq!(mode(&path), 0o600);
}

#[tokio::test]
async fn store_trait_object_via_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = wardkey_store::open(&file_url(&dir.path().join("w.db"))).await.unwrap();
    store.ping().await.unwrap();
    let err = wardkey_store::open("mysql://nope").await.err().unwrap();
    assert!(matches!(err, StoreError::UnsupportedUrl(_)), "{err:?}");
}

#[tokio::test]
async fn create_user_with_password_is_one_transaction() {
    let (dir, store) = temp_file_store().await;
    let url = file_url(&dir.path().join("wardkey.db"));

    store.create_user(&new_user("bob"), Some("$argon2id$a"), 1).await.unwrap();
    let _ = store.create_user(&new_user("bob"), Some("$argon2id$b"), 2).await;

    // Make the credential insert fail after the user row is written: the
    // user row must roll back with it.
    let mut side = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let count = |table: &'static str| format!("SELECT COUNT(*) FROM {table}");
    let credentials: i64 = sqlx::query_scalar(&count("credentials")).fetch_one(&mut side).await.unwrap();
    assert_eq!(credentials, 1, "the failed duplicate left no credential behind");
    sqlx::query(
        "CREATE TRIGGER fail_credentials BEFORE INSERT ON credentials \
         BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
    )
    .execute(&mut side)
    .await
    .unwrap();

    let err = store.create_user(&new_user("carol"), Some("$argon2id$c"), 3).await.unwrap_err();
    assert!(matches!(err, StoreError::Backend(_)), "{err:?}");
    assert_eq!(store.user_by_username("carol").await.unwrap(), None);
    let users: i64 = sqlx::query_scalar(&count("users")).fetch_one(&mut side).await.unwrap();
    assert_eq!(users, 1);

    // Without a hash no credential row is written, so the trigger is moot.
    store.create_user(&new_user("carol"), None, 4).await.unwrap();
}

#[tokio::test]
async fn corrupt_rows_are_errors_not_panics() {
    let (dir, store) = temp_file_store().await;
    let url = file_url(&dir.path().join("wardkey.db"));
    let dave = store.create_user(&new_user("dave"), None, 1).await.unwrap();
    store.create_client(&client("epr", ClientAuth::None)).await.unwrap();
    store.create_client(&client("pacs", ClientAuth::None)).await.unwrap();
    store.rotate_signing_keys(&[key("k1", SigningAlg::ES256, 1)], 1).await.unwrap();

    let mut side = sqlx::SqliteConnection::connect(&url).await.unwrap();
    for sql in [
        "UPDATE users SET roles = 'not json'",
        "UPDATE clients SET grant_types = '[\"implicit\"]' WHERE client_id = 'epr'",
        "UPDATE clients SET min_acr = 'urn:wardkey:acr:otp' WHERE client_id = 'pacs'",
        "UPDATE signing_keys SET alg = 'HS256'",
        "INSERT INTO audit_log (at, event, actor, subject, detail) VALUES (1, 'x', 'y', 'z', '{')",
    ] {
        sqlx::query(sql).execute(&mut side).await.unwrap();
    }

    let err = store.user_by_id(&dave.id).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    let err = store.list_users().await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    let err = store.client("epr").await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    let err = store.client("pacs").await.unwrap_err();
    assert!(matches!(&err, StoreError::Corrupt(m) if m.contains("clients.min_acr")), "{err:?}");
    let err = store.signing_keys().await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    let err = store.recent_audit(5).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
}

#[tokio::test]
async fn data_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let url = file_url(&dir.path().join("wardkey.db"));

    let store = SqliteStore::open(&url).await.unwrap();
    let erin = store.create_user(&new_user("erin"), Some("$argon2id$e"), 5).await.unwrap();
    store.record_login_failure(&erin.id, 6).await.unwrap();
    store.set_credential(&erin.id, CredentialKind::Pin, "$argon2id$pin", 7).await.unwrap();
    let epr = Client {
        min_acr: Some(ACR_BADGE_PIN.to_string()),
        ..client("epr", ClientAuth::Secret { digest: vec![9; 32] })
    };
    store.create_client(&epr).await.unwrap();
    let k1 = key("k1", SigningAlg::RS256, 8);
    store.rotate_signing_keys(std::slice::from_ref(&k1), 8).await.unwrap();
    let event = audit(9, "user.add", "erin");
    store.append_audit(&event).await.unwrap();
    store.create_invite(&[0xe1; 32], &erin.id, 9, 100).await.unwrap();
    let erin = store.user_by_id(&erin.id).await.unwrap().unwrap();
    store.close().await;

    // Reopening runs the (already applied) migrations again.
    let store = SqliteStore::open(&url).await.unwrap();
    assert_eq!(store.user_by_username("erin").await.unwrap(), Some(erin.clone()));
    assert_eq!(erin.failed_logins, 1);
    assert_eq!(store.credential(&erin.id, CredentialKind::Password).await.unwrap().as_deref(), Some("$argon2id$e"));
    assert_eq!(store.credential(&erin.id, CredentialKind::Pin).await.unwrap().as_deref(), Some("$argon2id$pin"));
    assert_eq!(store.list_clients().await.unwrap(), [epr]);
    assert_eq!(store.signing_keys().await.unwrap(), [k1]);
    assert_eq!(store.recent_audit(10).await.unwrap(), [event]);
    assert_eq!(store.take_invite(&[0xe1; 32], 50).await.unwrap(), Some(erin.id));
}

/// A database made before migration 0006 upgrades in place: its clients
/// read back with no minimum acr (any session will do, as before), and
/// invites work.
#[tokio::test]
async fn clients_from_before_min_acr_upgrade_to_none() {
    let dir = tempfile::tempdir().unwrap();
    let url = file_url(&dir.path().join("wardkey.db"));
    let mut migrator = sqlx::migrate!("./migrations/sqlite");
    let before_0006: Vec<_> = migrator.migrations.iter().filter(|m| m.version < 6).cloned().collect();
    assert_eq!(before_0006.len(), 5);
    migrator.migrations = before_0006.into();
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(&url).unwrap().create_if_missing(true);
    let mut side = sqlx::SqliteConnection::connect_with(&options).await.unwrap();
    migrator.run(&mut side).await.unwrap();
    sqlx::query(
        "INSERT INTO clients (client_id, auth, redirect_uris, post_logout_redirect_uris, grant_types, \
         id_token_alg, created_at) VALUES ('epr', '{\"method\":\"none\"}', '[]', '[]', '[]', 'ES256', 1)",
    )
    .execute(&mut side)
    .await
    .unwrap();
    side.close().await.unwrap();

    let store = SqliteStore::open(&url).await.unwrap();
    let epr = store.client("epr").await.unwrap().unwrap();
    assert_eq!(epr.min_acr, None);
    let alice = store.create_user(&new_user("alice"), None, 1).await.unwrap();
    store.create_invite(&[1; 32], &alice.id, 1, 10).await.unwrap();
    assert_eq!(store.take_invite(&[1; 32], 2).await.unwrap(), Some(alice.id));
}

/// Deleting a user deletes their invites (no store call deletes users yet;
/// the schema must already).
#[tokio::test]
async fn invites_go_with_their_user() {
    let (dir, store) = temp_file_store().await;
    let url = file_url(&dir.path().join("wardkey.db"));
    let alice = store.create_user(&new_user("alice"), None, 1).await.unwrap();
    let bob = store.create_user(&new_user("bob"), None, 1).await.unwrap();
    store.create_invite(&[0xa1; 32], &alice.id, 1, 100).await.unwrap();
    store.create_invite(&[0xb1; 32], &bob.id, 1, 100).await.unwrap();

    let mut side = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("PRAGMA foreign_keys = ON").execute(&mut side).await.unwrap();
    sqlx::query("DELETE FROM users WHERE id = ?").bind(&alice.id).execute(&mut side).await.unwrap();
    assert_eq!(store.take_invite(&[0xa1; 32], 2).await.unwrap(), None);
    assert_eq!(store.take_invite(&[0xb1; 32], 2).await.unwrap(), Some(bob.id));
}

#[tokio::test]
async fn in_memory_stores_are_separate() {
    let (_, a) = memory_store().await;
    let (_, b) = memory_store().await;
    a.create_user(&new_user("alice"), None, 1).await.unwrap();
    assert!(b.user_by_username("alice").await.unwrap().is_none());
    b.create_user(&new_user("alice"), None, 1).await.unwrap();
}

#[tokio::test]
async fn tap_conflicts_and_missing_owners() {
    let (_, store) = memory_store().await;
    store.create_workstation(&workstation("ws-1", "ward7-a", "Ward 7", 1), b"code", 100).await.unwrap();
    // The id and the code digest are unique too (random values that collided).
    for (ws, code) in [
        (workstation("ws-1", "ward7-b", "Ward 7", 1), &b"other"[..]),
        (workstation("ws-2", "ward7-c", "Ward 7", 1), &b"code"[..]),
    ] {
        let err = store.create_workstation(&ws, code, 100).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    }
    assert_eq!(store.list_workstations().await.unwrap().len(), 1);

    // A badge needs an existing owner.
    let err = store.add_badge(&badge(&[1; 32], "ghost", 1)).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
}

#[tokio::test]
async fn logout_errors_are_truncated_and_outcomes_idempotent() {
    let (dir, store) = temp_file_store().await;
    let url = file_url(&dir.path().join("wardkey.db"));
    store.enqueue_logouts(&[notice("epr", "s", "sid")], 1, 1).await.unwrap();
    let [claimed] = <[LogoutNotice; 1]>::try_from(store.claim_due_logouts(1, 30, 10).await.unwrap()).unwrap();

    let long = "é".repeat(600);
    store.logout_failed(claimed.id, 2, &long).await.unwrap();
    let mut side = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let kept: String = sqlx::query_scalar("SELECT last_error FROM logout_outbox").fetch_one(&mut side).await.unwrap();
    assert_eq!(kept, "é".repeat(500));
    store.logout_failed(claimed.id, 3, "short").await.unwrap();
    let kept: String = sqlx::query_scalar("SELECT last_error FROM logout_outbox").fetch_one(&mut side).await.unwrap();
    assert_eq!(kept, "short");

    // Another node may already have finished with it.
    store.logout_delivered(claimed.id).await.unwrap();
    store.logout_delivered(claimed.id).await.unwrap();
    store.logout_failed(claimed.id, 4, "late").await.unwrap();
    assert!(store.claim_due_logouts(100, 30, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn concurrent_callers_agree_on_secrets_and_never_share_claims() {
    let (_dir, store) = temp_file_store().await;

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..8u8 {
        let store = store.clone();
        tasks.spawn(async move { store.server_secret("badge-key", &[i; 32]).await.unwrap() });
    }
    let values: Vec<Vec<u8>> = tasks.join_all().await;
    assert!(values.iter().all(|v| *v == values[0]), "{values:?}");
    assert_eq!(store.server_secret("badge-key", b"later").await.unwrap(), values[0]);

    let notices: Vec<NewLogoutNotice> = (0..40).map(|i| notice("epr", "s", &format!("sid-{i}"))).collect();
    store.enqueue_logouts(&notices, 10, 10).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let store = store.clone();
        tasks.spawn(async move { store.claim_due_logouts(10, 60, 8).await.unwrap() });
    }
    let claims: Vec<Vec<LogoutNotice>> = tasks.join_all().await;
    let mut ids: Vec<i64> = claims.iter().flat_map(|c| notice_ids(c)).collect();
    assert!(claims.iter().all(|c| c.len() <= 8));
    assert_eq!(ids.len(), 40, "6 claims of up to 8 take all 40: {claims:?}");
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 40, "no notice claimed twice");

    // Several connections using one invite at once: exactly one succeeds.
    let alice = store.create_user(&new_user("alice"), None, 1).await.unwrap();
    store.create_invite(&[0xa1; 32], &alice.id, 10, 100).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let store = store.clone();
        tasks.spawn(async move { store.take_invite(&[0xa1; 32], 20).await.unwrap() });
    }
    let won: Vec<String> = tasks.join_all().await.into_iter().flatten().collect();
    assert_eq!(won, [alice.id], "exactly one use succeeds");
}

#[tokio::test]
async fn corrupt_tap_rows_are_errors_and_change_nothing() {
    let (dir, store) = temp_file_store().await;
    let url = file_url(&dir.path().join("wardkey.db"));
    let alice = store.create_user(&new_user("alice"), None, 1).await.unwrap();
    store.add_badge(&badge(&[1; 32], &alice.id, 1)).await.unwrap();
    store.enqueue_logouts(&[notice("epr", "s", "sid")], 1, 1).await.unwrap();

    let mut side = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("PRAGMA ignore_check_constraints = ON").execute(&mut side).await.unwrap();
    for sql in ["UPDATE badges SET failed_pins = -1", "UPDATE logout_outbox SET attempts = -1"] {
        sqlx::query(sql).execute(&mut side).await.unwrap();
    }

    let err = store.badge(&[1; 32]).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    let err = store.claim_due_logouts(1, 30, 10).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");

    // The failed claim leased nothing: once repaired, the notice is due.
    sqlx::query("UPDATE logout_outbox SET attempts = 0").execute(&mut side).await.unwrap();
    assert_eq!(store.claim_due_logouts(1, 30, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn tap_data_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let url = file_url(&dir.path().join("wardkey.db"));

    let store = SqliteStore::open(&url).await.unwrap();
    let alice = store.create_user(&new_user("alice"), None, 1).await.unwrap();
    store.create_workstation(&workstation("ws-1", "ward7-a", "Ward 7", 1), b"code", 100).await.unwrap();
    let b = badge(&[1; 32], &alice.id, 2);
    store.add_badge(&b).await.unwrap();
    store.server_secret("badge-key", b"first").await.unwrap();
    store.enqueue_logouts(&[notice("epr", "s", "sid")], 3, 3).await.unwrap();
    store.request_session_revocation(&alice.id, 4).await.unwrap();
    let passkey = webauthn(&[5; 16], &alice.id, AuthenticatorKind::Passkey, 4);
    store.add_webauthn_credential(&passkey).await.unwrap();
    store.close().await;

    let store = SqliteStore::open(&url).await.unwrap();
    let ws = store.enrol_workstation(b"code", &[7; 32], 50).await.unwrap();
    assert_eq!(ws.id, "ws-1");
    assert_eq!(store.badge(&b.digest).await.unwrap(), Some(b));
    assert_eq!(store.server_secret("badge-key", b"second").await.unwrap(), b"first");
    assert_eq!(store.claim_due_logouts(3, 30, 10).await.unwrap().len(), 1);
    assert_eq!(store.webauthn_credentials(&alice.id).await.unwrap(), [passkey]);
    assert_eq!(store.take_session_revocations().await.unwrap(), [alice.id]);
}

/// Deleting a user deletes their WebAuthn credentials (no store call
/// deletes users yet; the schema must already); an unknown kind is `Corrupt`.
#[tokio::test]
async fn webauthn_credentials_go_with_their_user_and_bad_kinds_are_corrupt() {
    let (dir, store) = temp_file_store().await;
    let url = file_url(&dir.path().join("wardkey.db"));
    let alice = store.create_user(&new_user("alice"), None, 1).await.unwrap();
    let bob = store.create_user(&new_user("bob"), None, 1).await.unwrap();
    let alices = webauthn(&[0xa1; 16], &alice.id, AuthenticatorKind::SecurityKey, 2);
    let bobs = webauthn(&[0xb1; 16], &bob.id, AuthenticatorKind::Passkey, 2);
    store.add_webauthn_credential(&alices).await.unwrap();
    store.add_webauthn_credential(&bobs).await.unwrap();

    let mut side = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("PRAGMA foreign_keys = ON").execute(&mut side).await.unwrap();
    sqlx::query("DELETE FROM users WHERE id = ?").bind(&alice.id).execute(&mut side).await.unwrap();
    assert_eq!(store.webauthn_credential(&alices.id).await.unwrap(), None);
    assert_eq!(store.webauthn_credential(&bobs.id).await.unwrap(), Some(bobs.clone()));

    sqlx::query("PRAGMA ignore_check_constraints = ON").execute(&mut side).await.unwrap();
    sqlx::query("UPDATE webauthn_credentials SET kind = 'platform'").execute(&mut side).await.unwrap();
    let err = store.webauthn_credential(&bobs.id).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    let err = store.webauthn_credentials(&bob.id).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
}

/// The shared SQL is written with `$N` placeholders: SQLite binds them by
/// number, not by position, so a placeholder may come out of order or
/// twice.
#[tokio::test]
async fn dollar_placeholders() {
    let mut conn = sqlx::SqliteConnection::connect("sqlite::memory:").await.unwrap();
    let row: (i64, String, i64) =
        sqlx::query_as("SELECT $2, $1, $2 + 1").bind("one").bind(2_i64).fetch_one(&mut conn).await.unwrap();
    assert_eq!(row, (2, "one".to_string(), 3));
}

/// `wardkey audit verify` finds every kind of tampering made with SQL
/// behind Wardkey's back, each on a fresh store.
#[tokio::test]
async fn audit_tampering_is_found() {
    for (what, statements, expected) in suite::audit_tampering() {
        let (dir, store) = temp_file_store().await;
        suite::seed_audit_chain(&store).await;
        assert_eq!(suite::tampered_verdict(&store).await, Ok(6));
        let mut side = sqlx::SqliteConnection::connect(&file_url(&dir.path().join("wardkey.db"))).await.unwrap();
        for sql in statements {
            sqlx::query(sql).execute(&mut side).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        let verdict = suite::tampered_verdict(&store).await;
        assert!(verdict.as_ref().is_err_and(expected), "{what}: verify said {verdict:?}");
    }
}

/// Records written before the chain existed are sealed into it, in order,
/// when the store is opened; a row added without a place in it later is
/// not.
#[tokio::test]
async fn records_older_than_the_chain_are_sealed_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = file_url(&dir.path().join("wardkey.db"));
    let store = SqliteStore::open(&url).await.unwrap();
    store.append_audit(&audit(1, "tap.signin", "new")).await.unwrap();
    store.close().await;
    let mut side = sqlx::SqliteConnection::connect(&url).await.unwrap();
    for sql in [
        "UPDATE audit_log SET seq = NULL, prev_hash = NULL, hash = NULL",
        "INSERT INTO audit_log (at, event, actor, subject, detail) VALUES (2, 'user.add', 'admin-cli', 'old', '{}')",
        "UPDATE audit_chain SET seq = 0, hash = '', legacy_sealed = 0",
    ] {
        sqlx::query(sql).execute(&mut side).await.unwrap();
    }
    let store = SqliteStore::open(&url).await.unwrap();
    assert_eq!(suite::tampered_verdict(&store).await, Ok(2), "both old records sealed, in order");
    sqlx::query("INSERT INTO audit_log (at, event, actor, subject, detail) VALUES (3, 'x', 'y', 'z', '{}')")
        .execute(&mut side)
        .await
        .unwrap();
    store.close().await;
    let store = SqliteStore::open(&url).await.unwrap();
    assert!(matches!(
        suite::tampered_verdict(&store).await,
        Err(wardkey_store::audit_chain::ChainProblem::Inserted { .. })
    ));
}

/// Opening an existing store never creates one: a missing file or a file
/// without Wardkey's tables is `NoStore` and nothing is written; an
/// in-memory database is new by nature and always opens.
#[tokio::test]
async fn opening_an_existing_store_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/wardkey.db");
    let err = wardkey_store::open_existing(&file_url(&path)).await.err().expect("no store there");
    assert!(matches!(err, StoreError::NoStore(_)), "{err}");
    assert!(!dir.path().join("nested").exists(), "no directory made");
    std::fs::write(dir.path().join("empty.db"), b"").unwrap();
    let err = wardkey_store::open_existing(&file_url(&dir.path().join("empty.db"))).await.err().expect("empty");
    assert!(err.to_string().contains("has no Wardkey tables"), "{err}");
    wardkey_store::open(&file_url(&path)).await.unwrap();
    wardkey_store::open_existing(&file_url(&path)).await.unwrap();
    wardkey_store::open_existing("sqlite::memory:").await.unwrap();
}
