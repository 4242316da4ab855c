//! The store conformance suite (`suite/mod.rs`), run against PostgreSQL,
//! plus PostgreSQL-specific checks: several nodes claiming at once, a
//! database that goes away, reopening, and text PostgreSQL cannot hold.
//!
//! Every test has its own server from `wardkey_testsupport` (a private
//! cluster, about a second to start, stopped when the test ends; or a fresh
//! database on the server at `WARDKEY_TEST_PG_URL`).

mod suite;

use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};
use suite::{audit, badge, client, key, new_user, notice, notice_ids, webauthn, workstation};
use wardkey_core::audit::AuditEvent;
use wardkey_core::client::{Client, ClientAuth};
use wardkey_core::keys::SigningAlg;
use wardkey_core::session::ACR_BADGE_PIN;
use wardkey_store::prelude::*;
use wardkey_store::{
    AuthenticatorKind, CredentialKind, LogoutNotice, NewLogoutNotice, PostgresStore, Store, StoreError,
    WebauthnCredential,
};
use wardkey_testsupport::postgres::TestPostgres;

/// A store on a fresh database; the guard keeps the server alive.
async fn pg_store() -> (TestPostgres, PostgresStore) {
    let pg = TestPostgres::start();
    let store = PostgresStore::open(pg.url()).await.unwrap();
    (pg, store)
}

/// A plain connection to the store's database, to look behind its back.
async fn side_connection(pg: &TestPostgres) -> PgConnection {
    PgConnection::connect(pg.url()).await.unwrap()
}

async fn exec(conn: &mut PgConnection, sql: &str) {
    sqlx::query(sql).execute(&mut *conn).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// The outbox's one row's `last_error`.
async fn last_error(conn: &mut PgConnection) -> String {
    sqlx::query_scalar("SELECT last_error FROM logout_outbox").fetch_one(conn).await.unwrap()
}

mod postgres {
    use super::pg_store;
    crate::suite::all_cases!(pg_store);
}

#[tokio::test]
async fn store_trait_object_via_open() {
    let pg = TestPostgres::start();
    let store = wardkey_store::open(pg.url()).await.unwrap();
    store.create_user(&new_user("alice"), None, 1).await.unwrap();

    // Both URL schemes; opening again finds the schema in place.
    let url = pg.url().replacen("postgres://", "postgresql://", 1);
    assert!(url.starts_with("postgresql://"), "{url}");
    let again = wardkey_store::open(&url).await.unwrap();
    assert!(again.user_by_username("alice").await.unwrap().is_some());
}

#[tokio::test]
async fn create_user_with_password_is_one_transaction() {
    let (pg, store) = pg_store().await;
    store.create_user(&new_user("bob"), Some("$argon2id$a"), 1).await.unwrap();
    let _ = store.create_user(&new_user("bob"), Some("$argon2id$b"), 2).await;

    // Make the credential insert fail after the user row is written: the
    // user row must roll back with it.
    let mut side = side_connection(&pg).await;
    let count = |table: &'static str| format!("SELECT COUNT(*) FROM {table}");
    let credentials: i64 = sqlx::query_scalar(&count("credentials")).fetch_one(&mut side).await.unwrap();
    assert_eq!(credentials, 1, "the failed duplicate left no credential behind");
    exec(
        &mut side,
        "CREATE FUNCTION fail_insert() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$",
    )
    .await;
    exec(
        &mut side,
        "CREATE TRIGGER fail_credentials BEFORE INSERT ON credentials \
         FOR EACH ROW EXECUTE FUNCTION fail_insert()",
    )
    .await;

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
    let (pg, store) = pg_store().await;
    let dave = store.create_user(&new_user("dave"), None, 1).await.unwrap();
    store.create_client(&client("epr", ClientAuth::None)).await.unwrap();
    store.create_client(&client("pacs", ClientAuth::None)).await.unwrap();
    store.rotate_signing_keys(&[key("k1", SigningAlg::ES256, 1)], 1).await.unwrap();

    let mut side = side_connection(&pg).await;
    for sql in [
        "UPDATE users SET roles = 'not json'",
        "UPDATE clients SET grant_types = '[\"implicit\"]' WHERE client_id = 'epr'",
        "UPDATE clients SET min_acr = 'urn:wardkey:acr:otp' WHERE client_id = 'pacs'",
        "UPDATE signing_keys SET alg = 'HS256'",
        "INSERT INTO audit_log (at, event, actor, subject, detail) VALUES (1, 'x', 'y', 'z', '{')",
    ] {
        exec(&mut side, sql).await;
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
async fn corrupt_tap_rows_are_errors_and_change_nothing() {
    let (pg, store) = pg_store().await;
    let alice = store.create_user(&new_user("alice"), None, 1).await.unwrap();
    store.add_badge(&badge(&[1; 32], &alice.id, 1)).await.unwrap();
    store.enqueue_logouts(&[notice("epr", "s", "sid")], 1, 1).await.unwrap();

    let mut side = side_connection(&pg).await;
    for sql in [
        "ALTER TABLE badges DROP CONSTRAINT badges_failed_pins_check",
        "ALTER TABLE logout_outbox DROP CONSTRAINT logout_outbox_attempts_check",
        "UPDATE badges SET failed_pins = -1",
        "UPDATE logout_outbox SET attempts = -1",
    ] {
        exec(&mut side, sql).await;
    }

    let err = store.badge(&[1; 32]).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    let err = store.claim_due_logouts(1, 30, 10).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");

    // The failed claim leased nothing: once repaired, the notice is due.
    exec(&mut side, "UPDATE logout_outbox SET attempts = 0").await;
    assert_eq!(store.claim_due_logouts(1, 30, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn tap_conflicts_say_what_is_taken_and_missing_owners() {
    let (_pg, store) = pg_store().await;
    store.create_workstation(&workstation("ws-1", "ward7-a", "Ward 7", 1), b"code", 100).await.unwrap();
    for (ws, code, expected) in [
        (workstation("ws-2", "ward7-a", "Ward 7", 1), &b"other"[..], "\"ward7-a\""),
        (workstation("ws-1", "ward7-b", "Ward 7", 1), &b"other"[..], "workstation id"),
        (workstation("ws-2", "ward7-c", "Ward 7", 1), &b"code"[..], "enrolment code"),
    ] {
        let err = store.create_workstation(&ws, code, 100).await.unwrap_err();
        let StoreError::Conflict(what) = &err else { panic!("{err:?}") };
        assert!(what.contains(expected), "{what:?} should name {expected}");
    }
    assert_eq!(store.list_workstations().await.unwrap().len(), 1);

    // A badge needs an existing owner.
    let err = store.add_badge(&badge(&[1; 32], "ghost", 1)).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
}

#[tokio::test]
async fn logout_errors_are_truncated_and_outcomes_idempotent() {
    let (pg, store) = pg_store().await;
    store.enqueue_logouts(&[notice("epr", "s", "sid")], 1, 1).await.unwrap();
    let [claimed] = <[LogoutNotice; 1]>::try_from(store.claim_due_logouts(1, 30, 10).await.unwrap()).unwrap();

    let mut side = side_connection(&pg).await;
    let long = "é".repeat(600);
    store.logout_failed(claimed.id, 2, &long).await.unwrap();
    assert_eq!(last_error(&mut side).await, "é".repeat(500));
    // Whatever an RP answers is kept, even a NUL PostgreSQL text cannot hold.
    store.logout_failed(claimed.id, 3, "bad\0body").await.unwrap();
    assert_eq!(last_error(&mut side).await, "bad\u{fffd}body");

    // Another node may already have finished with it.
    store.logout_delivered(claimed.id).await.unwrap();
    store.logout_delivered(claimed.id).await.unwrap();
    store.logout_failed(claimed.id, 4, "late").await.unwrap();
    store.postpone_logout(claimed.id, 5).await.unwrap();
    assert!(store.claim_due_logouts(100, 30, 10).await.unwrap().is_empty());
}

/// PostgreSQL text cannot hold U+0000 (SQLite's can). A key holding one
/// names nothing, as on SQLite, rather than failing; recorded text keeps a
/// U+FFFD in its place.
#[tokio::test]
async fn keys_holding_nul_name_nothing() {
    let (_pg, store) = pg_store().await;
    let alice = store.create_user(&new_user("alice"), None, 1).await.unwrap();
    let odd = "alice\0";

    assert_eq!(store.user_by_username(odd).await.unwrap(), None);
    assert_eq!(store.user_by_id(odd).await.unwrap(), None);
    assert_eq!(store.client(odd).await.unwrap(), None);
    assert_eq!(store.workstation(odd).await.unwrap(), None);
    assert_eq!(store.credential(odd, CredentialKind::Password).await.unwrap(), None);
    assert_eq!(store.revoke_user_badges(odd).await.unwrap(), 0);
    store.reset_pin_failures(odd).await.unwrap();
    store.request_session_revocation(odd, 1).await.unwrap();
    assert!(store.take_session_revocations().await.unwrap().is_empty());
    for err in [
        store.set_user_disabled(odd, true, 1).await.unwrap_err(),
        store.record_login_failure(odd, 1).await.unwrap_err(),
        store.reset_login_failures(odd).await.unwrap_err(),
        store.set_credential(odd, CredentialKind::Pin, "$argon2id$x", 1).await.unwrap_err(),
        store.remove_client(odd).await.unwrap_err(),
        store.set_workstation_enabled(odd, false).await.unwrap_err(),
        store.add_badge(&badge(&[2; 32], odd, 1)).await.unwrap_err(),
        store.create_invite(&[2; 32], odd, 1, 10).await.unwrap_err(),
    ] {
        assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    }
    assert_eq!(store.user_by_id(&alice.id).await.unwrap(), Some(alice.clone()));

    // WebAuthn: an owner id holding one names nobody; a label or data
    // holding one cannot be stored unchanged, so it is refused.
    assert!(store.webauthn_credentials(odd).await.unwrap().is_empty());
    for err in [
        store.add_webauthn_credential(&webauthn(&[3; 16], odd, AuthenticatorKind::Passkey, 1)).await.unwrap_err(),
        store.remove_webauthn_credential(odd, &[3; 16]).await.unwrap_err(),
    ] {
        assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    }
    let passkey = webauthn(&[4; 16], &alice.id, AuthenticatorKind::Passkey, 1);
    for bad in [
        WebauthnCredential { name: "Blue\0YubiKey".to_string(), ..passkey.clone() },
        WebauthnCredential { data: "{\0}".to_string(), ..passkey.clone() },
    ] {
        let err = store.add_webauthn_credential(&bad).await.unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    }
    assert_eq!(store.webauthn_credential(&passkey.id).await.unwrap(), None);
    store.add_webauthn_credential(&passkey).await.unwrap();
    let err = store.update_webauthn_credential(&passkey.id, "{\0}", 2).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    assert_eq!(store.webauthn_credential(&passkey.id).await.unwrap(), Some(passkey));

    // A failed login with a strange name is still audited.
    let event = AuditEvent { detail: serde_json::json!({ "tried": "a\0b" }), ..audit(5, "login.failure\0", odd) };
    store.append_audit(&event).await.unwrap();
    let [kept] = <[AuditEvent; 1]>::try_from(store.recent_audit(10).await.unwrap()).unwrap();
    assert_eq!(kept.event, "login.failure\u{fffd}");
    assert_eq!(kept.subject, "alice\u{fffd}");
    assert_eq!(kept.detail, event.detail, "JSON escapes NUL itself");
}

/// Deleting a user deletes their WebAuthn credentials (no store call
/// deletes users yet; the schema must already); an unknown kind is `Corrupt`.
#[tokio::test]
async fn webauthn_credentials_go_with_their_user_and_bad_kinds_are_corrupt() {
    let (pg, store) = pg_store().await;
    let alice = store.create_user(&new_user("alice"), None, 1).await.unwrap();
    let bob = store.create_user(&new_user("bob"), None, 1).await.unwrap();
    let alices = webauthn(&[0xa1; 16], &alice.id, AuthenticatorKind::SecurityKey, 2);
    let bobs = webauthn(&[0xb1; 16], &bob.id, AuthenticatorKind::Passkey, 2);
    store.add_webauthn_credential(&alices).await.unwrap();
    store.add_webauthn_credential(&bobs).await.unwrap();

    let mut side = side_connection(&pg).await;
    sqlx::query("DELETE FROM users WHERE id = $1").bind(&alice.id).execute(&mut side).await.unwrap();
    assert_eq!(store.webauthn_credential(&alices.id).await.unwrap(), None);
    assert_eq!(store.webauthn_credential(&bobs.id).await.unwrap(), Some(bobs.clone()));

    exec(&mut side, "ALTER TABLE webauthn_credentials DROP CONSTRAINT webauthn_credentials_kind_check").await;
    exec(&mut side, "UPDATE webauthn_credentials SET kind = 'platform'").await;
    let err = store.webauthn_credential(&bobs.id).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    let err = store.webauthn_credentials(&bob.id).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
}

#[tokio::test]
async fn data_survives_reopening() {
    let pg = TestPostgres::start();

    let store = PostgresStore::open(pg.url()).await.unwrap();
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
    store.create_workstation(&workstation("ws-1", "ward7-a", "Ward 7", 1), b"code", 100).await.unwrap();
    let b = badge(&[1; 32], &erin.id, 2);
    store.add_badge(&b).await.unwrap();
    store.server_secret("badge-key", b"first").await.unwrap();
    store.enqueue_logouts(&[notice("epr", "s", "sid")], 3, 3).await.unwrap();
    store.request_session_revocation(&erin.id, 4).await.unwrap();
    let passkey = webauthn(&[5; 16], &erin.id, AuthenticatorKind::Passkey, 4);
    store.add_webauthn_credential(&passkey).await.unwrap();
    let erin = store.user_by_id(&erin.id).await.unwrap().unwrap();
    store.close().await;
    assert!(store.ping().await.is_err(), "closed");

    // Reopening runs the (already applied) migrations again.
    let store = PostgresStore::open(pg.url()).await.unwrap();
    assert_eq!(store.user_by_username("erin").await.unwrap(), Some(erin.clone()));
    assert_eq!(erin.failed_logins, 1);
    assert_eq!(store.credential(&erin.id, CredentialKind::Password).await.unwrap().as_deref(), Some("$argon2id$e"));
    assert_eq!(store.credential(&erin.id, CredentialKind::Pin).await.unwrap().as_deref(), Some("$argon2id$pin"));
    assert_eq!(store.list_clients().await.unwrap(), [epr]);
    assert_eq!(store.signing_keys().await.unwrap(), [k1]);
    assert_eq!(store.recent_audit(10).await.unwrap(), [event]);
    let ws = store.enrol_workstation(b"code", &[7; 32], 50).await.unwrap();
    assert_eq!(ws.id, "ws-1");
    assert_eq!(store.badge(&b.digest).await.unwrap(), Some(b));
    assert_eq!(store.server_secret("badge-key", b"second").await.unwrap(), b"first");
    assert_eq!(store.claim_due_logouts(3, 30, 10).await.unwrap().len(), 1);
    assert_eq!(store.webauthn_credentials(&erin.id).await.unwrap(), [passkey]);
    assert_eq!(store.take_invite(&[0xe1; 32], 50).await.unwrap().as_ref(), Some(&erin.id));
    assert_eq!(store.take_session_revocations().await.unwrap(), [erin.id]);
}

/// Deleting a user deletes their invites (no store call deletes users yet;
/// the schema must already).
#[tokio::test]
async fn invites_go_with_their_user() {
    let (pg, store) = pg_store().await;
    let alice = store.create_user(&new_user("alice"), None, 1).await.unwrap();
    let bob = store.create_user(&new_user("bob"), None, 1).await.unwrap();
    store.create_invite(&[0xa1; 32], &alice.id, 1, 100).await.unwrap();
    store.create_invite(&[0xb1; 32], &bob.id, 1, 100).await.unwrap();

    let mut side = side_connection(&pg).await;
    sqlx::query("DELETE FROM users WHERE id = $1").bind(&alice.id).execute(&mut side).await.unwrap();
    assert_eq!(store.take_invite(&[0xa1; 32], 2).await.unwrap(), None);
    assert_eq!(store.take_invite(&[0xb1; 32], 2).await.unwrap(), Some(bob.id));
}

/// Three nodes (separate pools), each with several tasks, draining one
/// outbox in small claims: every notice is claimed exactly once. The nodes
/// also agree on a server secret, and an enrolment code works once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_nodes_agree_on_secrets_and_never_share_claims() {
    let pg = TestPostgres::start();
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(PostgresStore::open(pg.url()).await.unwrap());
    }

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..12u8 {
        let node = nodes[usize::from(i) % nodes.len()].clone();
        tasks.spawn(async move { node.server_secret("badge-key", &[i; 32]).await.unwrap() });
    }
    let values: Vec<Vec<u8>> = tasks.join_all().await;
    assert!(values.iter().all(|v| *v == values[0]), "{values:?}");
    assert_eq!(nodes[0].server_secret("badge-key", b"later").await.unwrap(), values[0]);

    const NOTICES: usize = 200;
    let notices: Vec<NewLogoutNotice> =
        (0..NOTICES).map(|i| notice(&format!("rp-{}", i % 7), "s", &format!("sid-{i}"))).collect();
    nodes[0].enqueue_logouts(&notices, 10, 10).await.unwrap();

    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..9 {
        let node = nodes[t % nodes.len()].clone();
        tasks.spawn(async move {
            let mut mine = Vec::new();
            loop {
                let claim = node.claim_due_logouts(10, 60, 3).await.unwrap();
                assert!(claim.len() <= 3, "{claim:?}");
                if claim.is_empty() {
                    return mine;
                }
                mine.extend(notice_ids(&claim));
            }
        });
    }
    let claims: Vec<Vec<i64>> = tasks.join_all().await;
    let mut ids: Vec<i64> = claims.concat();
    assert_eq!(ids.len(), NOTICES, "every notice claimed: {claims:?}");
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), NOTICES, "no notice claimed twice");

    nodes[0].create_workstation(&workstation("ws-1", "ward7-a", "Ward 7", 1), b"code", 100).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..6u8 {
        let node = nodes[usize::from(i) % nodes.len()].clone();
        tasks.spawn(async move { node.enrol_workstation(b"code", &[i; 32], 50).await });
    }
    let outcomes = tasks.join_all().await;
    assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 1, "{outcomes:?}");
    assert!(
        outcomes.iter().filter_map(|o| o.as_ref().err()).all(|e| matches!(e, StoreError::NotFound(_))),
        "{outcomes:?}"
    );

    // So does an invite, used from every node at once.
    let alice = nodes[0].create_user(&new_user("alice"), None, 1).await.unwrap();
    nodes[0].create_invite(&[0xa1; 32], &alice.id, 10, 100).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..9 {
        let node = nodes[i % nodes.len()].clone();
        tasks.spawn(async move { node.take_invite(&[0xa1; 32], 20).await.unwrap() });
    }
    let won: Vec<String> = tasks.join_all().await.into_iter().flatten().collect();
    assert_eq!(won, [alice.id], "exactly one use succeeds");
}

/// A claim does not wait for notices another node holds locked: it takes
/// the others, and the locked ones once released.
#[tokio::test]
async fn claims_skip_notices_locked_by_another_node() {
    let (pg, store) = pg_store().await;
    let notices: Vec<NewLogoutNotice> = (0..5).map(|i| notice("epr", "s", &format!("sid-{i}"))).collect();
    store.enqueue_logouts(&notices, 10, 10).await.unwrap();

    let mut other = side_connection(&pg).await;
    exec(&mut other, "BEGIN").await;
    let locked: Vec<i64> = sqlx::query_scalar("SELECT id FROM logout_outbox ORDER BY id LIMIT 2 FOR UPDATE")
        .fetch_all(&mut other)
        .await
        .unwrap();

    let claim = tokio::time::timeout(Duration::from_secs(10), store.claim_due_logouts(10, 60, 10))
        .await
        .expect("a claim must not wait on locked rows")
        .unwrap();
    assert_eq!(claim.len(), 3, "{claim:?}");
    assert!(notice_ids(&claim).iter().all(|id| !locked.contains(id)), "{claim:?}");

    exec(&mut other, "ROLLBACK").await;
    assert_eq!(notice_ids(&store.claim_due_logouts(10, 60, 10).await.unwrap()), locked);
}

/// A database that goes away fails calls within the pool's acquire timeout
/// (5 s), never hangs them; the store recovers when it comes back.
#[tokio::test]
async fn stopped_server_fails_fast_and_store_recovers() {
    // The acquire timeout, with room for a loaded machine.
    const FAST: Duration = Duration::from_secs(10);
    // Past this the call is hanging.
    const BOUND: Duration = Duration::from_secs(30);
    let pg = TestPostgres::start_local();
    let store = PostgresStore::open(pg.url()).await.unwrap();
    let alice = store.create_user(&new_user("alice"), None, 1).await.unwrap();

    pg.stop();
    let started = Instant::now();
    let err = tokio::time::timeout(BOUND, store.user_by_id(&alice.id))
        .await
        .expect("a call on a dead database must fail, not hang")
        .unwrap_err();
    assert!(matches!(err, StoreError::Backend(_)), "{err:?}");
    let call_failed_after = started.elapsed();

    let started = Instant::now();
    let err = tokio::time::timeout(BOUND, PostgresStore::open(pg.url()))
        .await
        .expect("opening a dead database must fail, not hang")
        .unwrap_err();
    assert!(matches!(err, StoreError::Backend(_)), "{err:?}");
    let open_failed_after = started.elapsed();
    for elapsed in [call_failed_after, open_failed_after] {
        assert!(elapsed < FAST, "failing took {elapsed:?}");
    }

    pg.start_again();
    let back = tokio::time::timeout(BOUND, store.user_by_id(&alice.id)).await.expect("the pool reconnects").unwrap();
    assert_eq!(back, Some(alice));
}

/// `wardkey audit verify` finds every kind of tampering made with SQL
/// behind Wardkey's back, each on a fresh database.
#[tokio::test]
async fn audit_tampering_is_found() {
    for (what, statements, expected) in suite::audit_tampering() {
        let (pg, store) = pg_store().await;
        suite::seed_audit_chain(&store).await;
        assert_eq!(suite::tampered_verdict(&store).await, Ok(6));
        let mut side = side_connection(&pg).await;
        for sql in statements {
            exec(&mut side, sql).await;
        }
        let verdict = suite::tampered_verdict(&store).await;
        assert!(verdict.as_ref().is_err_and(expected), "{what}: verify said {verdict:?}");
    }
}

/// Two nodes (two pools on one database) appending at once make one
/// unbroken chain: the head row's lock orders them.
#[tokio::test]
async fn two_nodes_appending_at_once_make_one_chain() {
    let (pg, a) = pg_store().await;
    let b = PostgresStore::open(pg.url()).await.unwrap();
    let writes = (0..60).map(|i| {
        let node: &dyn Store = if i % 2 == 0 { &a } else { &b };
        async move {
            let batch = [audit(i, "tap.signin", "a"), audit(i, "tap.lock", "a")];
            node.append_audit_batch(&batch).await
        }
    });
    for result in futures_util::future::join_all(writes).await {
        result.unwrap();
    }
    assert_eq!(suite::tampered_verdict(&a).await, Ok(120));
}
