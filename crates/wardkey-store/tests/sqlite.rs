//! Store conformance suite, run against SQLite (a file in a temp dir and an
//! in-memory database), plus SQLite-specific checks.
//!
//! The suite functions take `&dyn Store` and assume an empty store, so
//! another backend can run them unchanged.

use std::path::Path;

use sqlx::Connection;
use wardkey_core::audit::AuditEvent;
use wardkey_core::client::{Client, ClientAuth, GrantType};
use wardkey_core::keys::{SigningAlg, SigningKey};
use wardkey_core::user::NewUser;
use wardkey_store::{CredentialKind, SqliteStore, Store, StoreError};

// ---------------------------------------------------------------------------
// Fixtures

fn new_user(username: &str) -> NewUser {
    NewUser {
        username: username.to_string(),
        name: Some(format!("{username} name")),
        email: Some(format!("{username}@trust.nhs.uk")),
        roles: vec!["R8000".to_string(), "R8003".to_string()],
    }
}

fn client(client_id: &str, auth: ClientAuth) -> Client {
    Client {
        client_id: client_id.to_string(),
        auth,
        redirect_uris: vec![
            format!("https://{client_id}.example/cb"),
            "http://127.0.0.1:9000/cb".to_string(),
        ],
        post_logout_redirect_uris: vec![format!("https://{client_id}.example/bye")],
        backchannel_logout_uri: Some(format!("https://{client_id}.example/bcl")),
        grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
        start_url: None,
        id_token_alg: SigningAlg::RS256,
        created_at: 1_700_000_000,
    }
}

fn key(kid: &str, alg: SigningAlg, created_at: i64) -> SigningKey {
    SigningKey {
        kid: kid.to_string(),
        alg,
        pkcs8: format!("der-of-{kid}").into_bytes(),
        created_at,
        retired_at: None,
    }
}

fn audit(at: i64, event: &str, subject: &str) -> AuditEvent {
    AuditEvent {
        at,
        event: event.to_string(),
        actor: "admin-cli".to_string(),
        subject: subject.to_string(),
        detail: serde_json::json!({ "n": at, "tags": ["a", "b"] }),
    }
}

fn kids(keys: &[SigningKey]) -> Vec<&str> {
    keys.iter().map(|k| k.kid.as_str()).collect()
}

// ---------------------------------------------------------------------------
// Backend-neutral suite

async fn ping(store: &dyn Store) {
    store.ping().await.unwrap();
}

async fn users_round_trip(store: &dyn Store) {
    let zed = store
        .create_user(&new_user("zed"), None, 100)
        .await
        .unwrap();
    let alice = store
        .create_user(
            &NewUser {
                username: "alice".to_string(),
                ..NewUser::default()
            },
            None,
            200,
        )
        .await
        .unwrap();

    assert_eq!(zed.username, "zed");
    assert_eq!(zed.name.as_deref(), Some("zed name"));
    assert_eq!(zed.email.as_deref(), Some("zed@trust.nhs.uk"));
    assert_eq!(zed.roles, ["R8000", "R8003"]);
    assert!(!zed.disabled);
    assert_eq!(zed.failed_logins, 0);
    assert_eq!(zed.last_failed_at, None);
    assert_eq!(zed.created_at, 100);
    assert!(!zed.id.is_empty());
    assert_ne!(zed.id, alice.id);
    assert_ne!(zed.id, zed.username, "ids are opaque, not usernames");
    assert!(alice.name.is_none() && alice.email.is_none() && alice.roles.is_empty());

    assert_eq!(
        store.user_by_username("zed").await.unwrap(),
        Some(zed.clone())
    );
    assert_eq!(store.user_by_id(&zed.id).await.unwrap(), Some(zed.clone()));
    assert_eq!(
        store.user_by_id(&alice.id).await.unwrap(),
        Some(alice.clone())
    );
    assert_eq!(store.user_by_username("nobody").await.unwrap(), None);
    assert_eq!(store.user_by_id("nobody").await.unwrap(), None);

    let all = store.list_users().await.unwrap();
    assert_eq!(all, [alice, zed.clone()], "ordered by username");

    store.set_user_disabled("zed", true).await.unwrap();
    assert!(store.user_by_id(&zed.id).await.unwrap().unwrap().disabled);
    store.set_user_disabled("zed", true).await.unwrap();
    store.set_user_disabled("zed", false).await.unwrap();
    assert!(!store.user_by_id(&zed.id).await.unwrap().unwrap().disabled);
}

async fn duplicate_username_conflicts(store: &dyn Store) {
    let first = store.create_user(&new_user("bob"), None, 1).await.unwrap();
    let err = store
        .create_user(&new_user("bob"), None, 2)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");

    // With a password hash the whole creation fails: the existing user does
    // not pick up the credential, and no second user appears.
    let err = store
        .create_user(&new_user("bob"), Some("$argon2id$dup"), 3)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(
        store
            .credential(&first.id, CredentialKind::Password)
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.list_users().await.unwrap(), [first]);
}

async fn disable_unknown_user_is_not_found(store: &dyn Store) {
    let err = store.set_user_disabled("ghost", true).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
}

async fn credentials(store: &dyn Store) {
    let carol = store
        .create_user(&new_user("carol"), Some("$argon2id$first"), 10)
        .await
        .unwrap();
    assert_eq!(
        store
            .credential(&carol.id, CredentialKind::Password)
            .await
            .unwrap()
            .as_deref(),
        Some("$argon2id$first")
    );
    assert_eq!(
        store
            .credential(&carol.id, CredentialKind::Pin)
            .await
            .unwrap(),
        None
    );

    store
        .set_credential(&carol.id, CredentialKind::Password, "$argon2id$second", 20)
        .await
        .unwrap();
    store
        .set_credential(&carol.id, CredentialKind::Pin, "$argon2id$pin", 20)
        .await
        .unwrap();
    assert_eq!(
        store
            .credential(&carol.id, CredentialKind::Password)
            .await
            .unwrap()
            .as_deref(),
        Some("$argon2id$second")
    );
    assert_eq!(
        store
            .credential(&carol.id, CredentialKind::Pin)
            .await
            .unwrap()
            .as_deref(),
        Some("$argon2id$pin")
    );

    // Credentials belong to their user only.
    let dave = store
        .create_user(&new_user("dave"), None, 30)
        .await
        .unwrap();
    assert_eq!(
        store
            .credential(&dave.id, CredentialKind::Password)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .credential("ghost", CredentialKind::Password)
            .await
            .unwrap(),
        None
    );

    let err = store
        .set_credential("ghost", CredentialKind::Password, "$argon2id$x", 40)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
}

async fn login_failures(store: &dyn Store) {
    let erin = store.create_user(&new_user("erin"), None, 1).await.unwrap();
    let frank = store
        .create_user(&new_user("frank"), None, 1)
        .await
        .unwrap();

    assert_eq!(store.record_login_failure(&erin.id, 100).await.unwrap(), 1);
    assert_eq!(store.record_login_failure(&erin.id, 110).await.unwrap(), 2);
    assert_eq!(store.record_login_failure(&erin.id, 120).await.unwrap(), 3);
    let now = store.user_by_id(&erin.id).await.unwrap().unwrap();
    assert_eq!((now.failed_logins, now.last_failed_at), (3, Some(120)));
    let other = store.user_by_id(&frank.id).await.unwrap().unwrap();
    assert_eq!((other.failed_logins, other.last_failed_at), (0, None));

    store.reset_login_failures(&erin.id).await.unwrap();
    let now = store.user_by_id(&erin.id).await.unwrap().unwrap();
    assert_eq!(now.failed_logins, 0);
    assert_eq!(store.record_login_failure(&erin.id, 130).await.unwrap(), 1);

    let err = store.record_login_failure("ghost", 1).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
}

async fn clients(store: &dyn Store) {
    let epr = client(
        "epr",
        ClientAuth::Secret {
            digest: vec![0, 1, 2, 254, 255],
        },
    );
    let spa = Client {
        start_url: Some("https://spa.example/".to_string()),
        id_token_alg: SigningAlg::ES256,
        grant_types: vec![GrantType::AuthorizationCode],
        post_logout_redirect_uris: vec![],
        backchannel_logout_uri: None,
        ..client("spa", ClientAuth::None)
    };
    let agent = Client {
        grant_types: vec![GrantType::TokenExchange, GrantType::ClientCredentials],
        id_token_alg: SigningAlg::EdDSA,
        ..client(
            "agent:ward-7",
            ClientAuth::JwksUri {
                uri: "https://agent.example/jwks".to_string(),
            },
        )
    };
    let pacs = client(
        "pacs",
        ClientAuth::Jwks {
            jwks: r#"{"keys":[]}"#.to_string(),
        },
    );
    for c in [&spa, &epr, &pacs, &agent] {
        store.create_client(c).await.unwrap();
    }

    assert_eq!(store.client("epr").await.unwrap(), Some(epr.clone()));
    assert_eq!(store.client("spa").await.unwrap(), Some(spa.clone()));
    assert_eq!(store.client("nope").await.unwrap(), None);
    assert_eq!(
        store.list_clients().await.unwrap(),
        [agent.clone(), epr.clone(), pacs.clone(), spa.clone()],
        "ordered by client id"
    );

    let err = store
        .create_client(&client("epr", ClientAuth::None))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(
        store.client("epr").await.unwrap(),
        Some(epr.clone()),
        "unchanged"
    );

    store.remove_client("pacs").await.unwrap();
    assert_eq!(store.client("pacs").await.unwrap(), None);
    let err = store.remove_client("pacs").await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert_eq!(store.list_clients().await.unwrap(), [agent, epr, spa]);
}

async fn signing_key_rotation(store: &dyn Store) {
    assert!(store.signing_keys().await.unwrap().is_empty());
    store.rotate_signing_keys(&[], 50).await.unwrap();

    let es1 = key("es-1", SigningAlg::ES256, 100);
    let rs1 = key("rs-1", SigningAlg::RS256, 100);
    let ed1 = key("ed-1", SigningAlg::EdDSA, 100);
    store
        .rotate_signing_keys(&[es1.clone(), rs1.clone(), ed1.clone()], 100)
        .await
        .unwrap();
    let keys = store.signing_keys().await.unwrap();
    assert_eq!(
        keys,
        [ed1.clone(), rs1.clone(), es1.clone()],
        "same second: last inserted first"
    );

    // Rotating ES256 and EdDSA retires only those; RS256 stays current.
    let es2 = key("es-2", SigningAlg::ES256, 200);
    let ed2 = key("ed-2", SigningAlg::EdDSA, 200);
    store
        .rotate_signing_keys(&[es2.clone(), ed2.clone()], 200)
        .await
        .unwrap();
    let keys = store.signing_keys().await.unwrap();
    assert_eq!(kids(&keys), ["ed-2", "es-2", "ed-1", "rs-1", "es-1"]);
    let retired = |kid: &str| keys.iter().find(|k| k.kid == kid).unwrap().retired_at;
    assert_eq!(retired("es-1"), Some(200));
    assert_eq!(retired("ed-1"), Some(200));
    assert_eq!(retired("rs-1"), None);
    assert_eq!(retired("es-2"), None);
    assert_eq!(retired("ed-2"), None);
    assert_eq!(keys[1].pkcs8, b"der-of-es-2");

    // A rotation whose kid is taken changes nothing.
    let err = store
        .rotate_signing_keys(
            &[
                key("es-3", SigningAlg::ES256, 300),
                key("es-2", SigningAlg::ES256, 300),
            ],
            300,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(store.signing_keys().await.unwrap(), keys);

    // A later ES256 rotation retires es-2 at its own time, not es-1 again.
    store
        .rotate_signing_keys(&[key("es-3", SigningAlg::ES256, 300)], 300)
        .await
        .unwrap();
    let keys = store.signing_keys().await.unwrap();
    let retired = |kid: &str| keys.iter().find(|k| k.kid == kid).unwrap().retired_at;
    assert_eq!(retired("es-1"), Some(200));
    assert_eq!(retired("es-2"), Some(300));
    assert_eq!(retired("es-3"), None);

    // Purge drops keys retired strictly before the cut-off, never current ones.
    assert_eq!(store.purge_signing_keys(200).await.unwrap(), 0);
    assert_eq!(store.purge_signing_keys(201).await.unwrap(), 2);
    assert_eq!(
        kids(&store.signing_keys().await.unwrap()),
        ["es-3", "ed-2", "es-2", "rs-1"]
    );
    assert_eq!(store.purge_signing_keys(i64::MAX).await.unwrap(), 1);
    assert_eq!(
        kids(&store.signing_keys().await.unwrap()),
        ["es-3", "ed-2", "rs-1"]
    );
}

async fn audit_log(store: &dyn Store) {
    assert!(store.recent_audit(10).await.unwrap().is_empty());
    let events = [
        audit(10, "user.add", "alice"),
        audit(20, "client.add", "epr"),
        audit(20, "login.failure", "alice"),
        audit(30, "login.success", "alice"),
    ];
    for e in &events {
        store.append_audit(e).await.unwrap();
    }

    let recent = store.recent_audit(2).await.unwrap();
    assert_eq!(recent, [events[3].clone(), events[2].clone()]);
    let all = store.recent_audit(100).await.unwrap();
    assert_eq!(
        all,
        [
            events[3].clone(),
            events[2].clone(),
            events[1].clone(),
            events[0].clone()
        ]
    );
    assert!(store.recent_audit(0).await.unwrap().is_empty());
}

/// Runs each named suite function against a fresh store from `$open`, one
/// `#[tokio::test]` per function.
macro_rules! store_suite {
    ($open:path; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let (_guard, store) = $open().await;
                super::$case(&store).await;
            }
        )+
    };
}

macro_rules! all_cases {
    ($open:path) => {
        store_suite!(
            $open;
            ping,
            users_round_trip,
            duplicate_username_conflicts,
            disable_unknown_user_is_not_found,
            credentials,
            login_failures,
            clients,
            signing_key_rotation,
            audit_log,
        );
    };
}

// ---------------------------------------------------------------------------
// SQLite

fn file_url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

/// A store in a fresh file; the guard keeps the temp dir alive.
async fn temp_file_store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&file_url(&dir.path().join("wardkey.db")))
        .await
        .unwrap();
    (dir, store)
}

async fn memory_store() -> ((), SqliteStore) {
    ((), SqliteStore::open("sqlite::memory:").await.unwrap())
}

mod sqlite_file {
    use super::temp_file_store;
    all_cases!(temp_file_store);
}

mod sqlite_memory {
    use super::memory_store;
    all_cases!(memory_store);
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
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn store_trait_object_via_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = wardkey_store::open(&file_url(&dir.path().join("w.db")))
        .await
        .unwrap();
    store.ping().await.unwrap();
    let err = wardkey_store::open("mysql://nope").await.err().unwrap();
    assert!(matches!(err, StoreError::UnsupportedUrl(_)), "{err:?}");
}

#[tokio::test]
async fn create_user_with_password_is_one_transaction() {
    let (dir, store) = temp_file_store().await;
    let url = file_url(&dir.path().join("wardkey.db"));

    store
        .create_user(&new_user("bob"), Some("$argon2id$a"), 1)
        .await
        .unwrap();
    let _ = store
        .create_user(&new_user("bob"), Some("$argon2id$b"), 2)
        .await;

    // Make the credential insert fail after the user row is written: the
    // user row must roll back with it.
    let mut side = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let count = |table: &'static str| format!("SELECT COUNT(*) FROM {table}");
    let credentials: i64 = sqlx::query_scalar(&count("credentials"))
        .fetch_one(&mut side)
        .await
        .unwrap();
    assert_eq!(
        credentials, 1,
        "the failed duplicate left no credential behind"
    );
    sqlx::query(
        "CREATE TRIGGER fail_credentials BEFORE INSERT ON credentials \
         BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
    )
    .execute(&mut side)
    .await
    .unwrap();

    let err = store
        .create_user(&new_user("carol"), Some("$argon2id$c"), 3)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Backend(_)), "{err:?}");
    assert_eq!(store.user_by_username("carol").await.unwrap(), None);
    let users: i64 = sqlx::query_scalar(&count("users"))
        .fetch_one(&mut side)
        .await
        .unwrap();
    assert_eq!(users, 1);

    // Without a hash no credential row is written, so the trigger is moot.
    store
        .create_user(&new_user("carol"), None, 4)
        .await
        .unwrap();
}

#[tokio::test]
async fn corrupt_rows_are_errors_not_panics() {
    let (dir, store) = temp_file_store().await;
    let url = file_url(&dir.path().join("wardkey.db"));
    let dave = store.create_user(&new_user("dave"), None, 1).await.unwrap();
    store
        .create_client(&client("epr", ClientAuth::None))
        .await
        .unwrap();
    store
        .rotate_signing_keys(&[key("k1", SigningAlg::ES256, 1)], 1)
        .await
        .unwrap();

    let mut side = sqlx::SqliteConnection::connect(&url).await.unwrap();
    for sql in [
        "UPDATE users SET roles = 'not json'",
        "UPDATE clients SET grant_types = '[\"implicit\"]'",
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
    let erin = store
        .create_user(&new_user("erin"), Some("$argon2id$e"), 5)
        .await
        .unwrap();
    store.record_login_failure(&erin.id, 6).await.unwrap();
    store
        .set_credential(&erin.id, CredentialKind::Pin, "$argon2id$pin", 7)
        .await
        .unwrap();
    let epr = client(
        "epr",
        ClientAuth::Secret {
            digest: vec![9; 32],
        },
    );
    store.create_client(&epr).await.unwrap();
    let k1 = key("k1", SigningAlg::RS256, 8);
    store
        .rotate_signing_keys(std::slice::from_ref(&k1), 8)
        .await
        .unwrap();
    let event = audit(9, "user.add", "erin");
    store.append_audit(&event).await.unwrap();
    let erin = store.user_by_id(&erin.id).await.unwrap().unwrap();
    store.close().await;

    // Reopening runs the (already applied) migrations again.
    let store = SqliteStore::open(&url).await.unwrap();
    assert_eq!(
        store.user_by_username("erin").await.unwrap(),
        Some(erin.clone())
    );
    assert_eq!(erin.failed_logins, 1);
    assert_eq!(
        store
            .credential(&erin.id, CredentialKind::Password)
            .await
            .unwrap()
            .as_deref(),
        Some("$argon2id$e")
    );
    assert_eq!(
        store
            .credential(&erin.id, CredentialKind::Pin)
            .await
            .unwrap()
            .as_deref(),
        Some("$argon2id$pin")
    );
    assert_eq!(store.list_clients().await.unwrap(), [epr]);
    assert_eq!(store.signing_keys().await.unwrap(), [k1]);
    assert_eq!(store.recent_audit(10).await.unwrap(), [event]);
}

#[tokio::test]
async fn in_memory_stores_are_separate() {
    let (_, a) = memory_store().await;
    let (_, b) = memory_store().await;
    a.create_user(&new_user("alice"), None, 1).await.unwrap();
    assert!(b.user_by_username("alice").await.unwrap().is_none());
    b.create_user(&new_user("alice"), None, 1).await.unwrap();
}
