//! The store conformance suite: backend-neutral cases taking `&dyn Store`,
//! each assuming an empty store, and the fixtures they share with the
//! backend-specific tests. `tests/sqlite.rs` and `tests/postgres.rs` include
//! it (`mod suite;`) and run every case with `suite::all_cases!(open_fn)`;
//! a few cases (a migration) take two stores, each fresh from `open_fn`.

// Each test binary uses its own subset of the fixtures.
#![allow(dead_code)]

use wardkey_core::audit::AuditEvent;
use wardkey_core::badge::{Badge, MAX_PIN_FAILURES};
use wardkey_core::client::{Client, ClientAuth, GrantType};
use wardkey_core::keys::{SigningAlg, SigningKey};
use wardkey_core::session::{ACR_PASSKEY, ACR_SECURITY_KEY};
use wardkey_core::user::{DirectoryRecord, NewUser, User};
use wardkey_core::workstation::Workstation;
use wardkey_store::audit_chain::ChainProblem;
use wardkey_store::migrate::CopyReport;
use wardkey_store::{
    AuthenticatorKind, CredentialKind, LogoutNotice, NewLogoutNotice, ScimGroup, Store, StoreError, UserChange,
    WebauthnCredential,
};

// ---------------------------------------------------------------------------
// Fixtures

pub fn new_user(username: &str) -> NewUser {
    NewUser {
        username: username.to_string(),
        name: Some(format!("{username} name")),
        email: Some(format!("{username}@trust.nhs.uk")),
        roles: vec!["R8000".to_string(), "R8003".to_string()],
    }
}

pub fn client(client_id: &str, auth: ClientAuth) -> Client {
    Client {
        client_id: client_id.to_string(),
        auth,
        redirect_uris: vec![format!("https://{client_id}.example/cb"), "http://127.0.0.1:9000/cb".to_string()],
        post_logout_redirect_uris: vec![format!("https://{client_id}.example/bye")],
        backchannel_logout_uri: Some(format!("https://{client_id}.example/bcl")),
        grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
        start_url: None,
        id_token_alg: SigningAlg::RS256,
        created_at: 1_700_000_000,
        min_acr: None,
    }
}

pub fn key(kid: &str, alg: SigningAlg, created_at: i64) -> SigningKey {
    SigningKey { kid: kid.to_string(), alg, pkcs8: format!("der-of-{kid}").into_bytes(), created_at, retired_at: None }
}

pub fn audit(at: i64, event: &str, subject: &str) -> AuditEvent {
    AuditEvent {
        at,
        event: event.to_string(),
        actor: "admin-cli".to_string(),
        subject: subject.to_string(),
        detail: serde_json::json!({ "n": at, "tags": ["a", "b"] }),
    }
}

pub fn workstation(id: &str, name: &str, ward: &str, created_at: i64) -> Workstation {
    Workstation {
        id: id.to_string(),
        name: name.to_string(),
        ward: ward.to_string(),
        public_key: None,
        enabled: true,
        created_at,
        enrolled_at: None,
    }
}

pub fn badge(digest: &[u8], user_id: &str, created_at: i64) -> Badge {
    Badge { digest: digest.to_vec(), user_id: user_id.to_string(), failed_pins: 0, created_at }
}

pub fn webauthn(id: &[u8], user_id: &str, kind: AuthenticatorKind, created_at: i64) -> WebauthnCredential {
    WebauthnCredential {
        id: id.to_vec(),
        user_id: user_id.to_string(),
        kind,
        name: format!("key {created_at}"),
        data: format!(r#"{{"cred":{{"counter":0,"made":{created_at}}}}}"#),
        created_at,
        last_used_at: None,
        suspended_at: None,
    }
}

pub fn notice(client_id: &str, sub: &str, sid: &str) -> NewLogoutNotice {
    NewLogoutNotice { client_id: client_id.to_string(), sub: sub.to_string(), sid: sid.to_string() }
}

pub fn notice_ids(notices: &[LogoutNotice]) -> Vec<i64> {
    notices.iter().map(|n| n.id).collect()
}

pub fn kids(keys: &[SigningKey]) -> Vec<&str> {
    keys.iter().map(|k| k.kid.as_str()).collect()
}

// ---------------------------------------------------------------------------
// Backend-neutral suite

pub async fn ping(store: &dyn Store) {
    store.ping().await.unwrap();
}

pub async fn users_round_trip(store: &dyn Store) {
    let zed = store.create_user(&new_user("zed"), None, 100).await.unwrap();
    let alice =
        store.create_user(&NewUser { username: "alice".to_string(), ..NewUser::default() }, None, 200).await.unwrap();

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

    assert_eq!(store.user_by_username("zed").await.unwrap(), Some(zed.clone()));
    assert_eq!(store.user_by_id(&zed.id).await.unwrap(), Some(zed.clone()));
    assert_eq!(store.user_by_id(&alice.id).await.unwrap(), Some(alice.clone()));
    assert_eq!(store.user_by_username("nobody").await.unwrap(), None);
    assert_eq!(store.user_by_id("nobody").await.unwrap(), None);

    let all = store.list_users().await.unwrap();
    assert_eq!(all, [alice, zed.clone()], "ordered by username");

    store.set_user_disabled("zed", true, 1).await.unwrap();
    assert!(store.user_by_id(&zed.id).await.unwrap().unwrap().disabled);
    store.set_user_disabled("zed", true, 1).await.unwrap();
    store.set_user_disabled("zed", false, 1).await.unwrap();
    assert!(!store.user_by_id(&zed.id).await.unwrap().unwrap().disabled);
    // Disabling asked (once per disable) for the user's sessions to end;
    // enabling asked nothing.
    assert_eq!(store.take_session_revocations().await.unwrap(), vec![zed.id]);
}

pub async fn duplicate_username_conflicts(store: &dyn Store) {
    let first = store.create_user(&new_user("bob"), None, 1).await.unwrap();
    let err = store.create_user(&new_user("bob"), None, 2).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");

    // With a password hash the whole creation fails: the existing user does
    // not pick up the credential, and no second user appears.
    let err = store.create_user(&new_user("bob"), Some("$argon2id$dup"), 3).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(store.credential(&first.id, CredentialKind::Password).await.unwrap(), None);
    assert_eq!(store.list_users().await.unwrap(), [first]);
}

/// "Alice" and "alice" are one person: found either way, and a second
/// one is a conflict.
pub async fn usernames_are_case_insensitive(store: &dyn Store) {
    let alice = store.create_user(&new_user("Alice"), None, 1).await.unwrap();
    assert_eq!(store.user_by_username("alice").await.unwrap().as_ref(), Some(&alice));
    assert_eq!(store.user_by_username("ALICE").await.unwrap().as_ref(), Some(&alice));
    assert_eq!(alice.username, "Alice", "kept as typed");
    assert_eq!(alice.source, "local");
    let err = store.create_user(&new_user("alice"), None, 2).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    store.set_user_disabled("aLiCe", true, 3).await.unwrap();
    assert!(store.user_by_id(&alice.id).await.unwrap().unwrap().disabled);
}

/// Removing a user takes everything of theirs with it in one go, ends
/// their sessions, and leaves the audit log alone.
pub async fn remove_user_and_workstation(store: &dyn Store) {
    let gus = store.create_user(&new_user("Gus"), Some("$argon2id$gus"), 1).await.unwrap();
    store.add_badge(&badge(&[9; 32], &gus.id, 1)).await.unwrap();
    store.append_audit(&audit(2, "user.add", "Gus")).await.unwrap();
    let removed = store.remove_user("gus", 3).await.unwrap();
    assert_eq!(removed.id, gus.id);
    assert_eq!(store.user_by_username("Gus").await.unwrap(), None);
    assert_eq!(store.credential(&gus.id, CredentialKind::Password).await.unwrap(), None);
    assert_eq!(store.badge(&[9; 32]).await.unwrap(), None);
    assert_eq!(store.take_session_revocations().await.unwrap(), vec![gus.id.clone()]);
    assert_eq!(store.recent_audit(10).await.unwrap().len(), 1, "the audit log keeps their history");
    assert!(matches!(store.remove_user("gus", 4).await.unwrap_err(), StoreError::NotFound(_)));

    let ws = workstation("ws-1", "PC 1", "Ward 1", 1);
    store.create_workstation(&ws, &[1; 32], 100).await.unwrap();
    store.remove_workstation("PC 1").await.unwrap();
    assert_eq!(store.workstation("ws-1").await.unwrap(), None);
    assert!(matches!(store.remove_workstation("PC 1").await.unwrap_err(), StoreError::NotFound(_)));
}

/// SCIM groups: members and the roles they give change together; a
/// missing member or a taken name writes nothing.
pub async fn scim_groups_and_roles(store: &dyn Store) {
    let ann = store.create_user(&new_user("ann"), None, 1).await.unwrap();
    let ben = store.create_user(&new_user("ben"), None, 1).await.unwrap();
    let mut nurses = ScimGroup {
        id: "g1".into(),
        display_name: "Ward 7 Nurses".into(),
        external_id: Some("ext-g1".into()),
        members: vec![ann.id.clone()],
        created_at: 5,
        updated_at: 5,
    };
    store.save_group(&nurses, &[(ann.id.clone(), vec!["R8001".into()])]).await.unwrap();
    assert_eq!(store.list_groups().await.unwrap(), [nurses.clone()]);
    assert_eq!(store.user_by_id(&ann.id).await.unwrap().unwrap().roles, ["R8001"]);

    // A member who does not exist, a taken name: nothing written.
    let ghost = ScimGroup { members: vec![ann.id.clone(), "ghost".into()], ..nurses.clone() };
    assert!(matches!(store.save_group(&ghost, &[]).await.unwrap_err(), StoreError::NotFound(_)));
    let twin = ScimGroup { id: "g2".into(), display_name: "WARD 7 NURSES".into(), ..nurses.clone() };
    assert!(matches!(store.save_group(&twin, &[]).await.unwrap_err(), StoreError::Conflict(_)));
    assert_eq!(store.list_groups().await.unwrap(), [nurses.clone()]);

    nurses.members = vec![ben.id.clone()];
    nurses.updated_at = 6;
    let roles = [(ann.id.clone(), vec![]), (ben.id.clone(), vec!["R8001".to_string()])];
    store.save_group(&nurses, &roles).await.unwrap();
    assert_eq!(store.list_groups().await.unwrap()[0].members, std::slice::from_ref(&ben.id));
    assert!(store.user_by_id(&ann.id).await.unwrap().unwrap().roles.is_empty());
    store.delete_group("g1", &[(ben.id.clone(), vec![])]).await.unwrap();
    assert!(store.list_groups().await.unwrap().is_empty());
    assert!(store.user_by_id(&ben.id).await.unwrap().unwrap().roles.is_empty());
    assert!(matches!(store.delete_group("g1", &[]).await.unwrap_err(), StoreError::NotFound(_)));
}

pub fn record(username: &str) -> DirectoryRecord {
    DirectoryRecord {
        external_id: format!("guid-{username}"),
        username: username.to_string(),
        name: Some(format!("{username} name")),
        email: Some(format!("{username}@trust.nhs.uk")),
        employee_number: Some(format!("E-{username}")),
        roles: vec!["R8000".to_string()],
        disabled: false,
    }
}

/// A directory sync's changes land all together or not at all, and a user
/// it disables has their sessions ended.
pub async fn directory_changes_are_all_or_nothing(store: &dyn Store) {
    let local = store.create_user(&new_user("carol"), Some("$argon2id$carol"), 1).await.unwrap();
    let changes = vec![
        UserChange::Create { source: "ldap:ad".into(), record: record("dan") },
        UserChange::Create { source: "ldap:ad".into(), record: record("eve") },
        // Linking: the local user is taken over by the directory, keeping
        // its id and password hash.
        UserChange::Update { id: local.id.clone(), source: "ldap:ad".into(), record: record("carol") },
    ];
    store.apply_user_changes(&changes, 10).await.unwrap();
    let dan = store.user_by_username("dan").await.unwrap().unwrap();
    assert_eq!((dan.source.as_str(), dan.external_id.as_deref()), ("ldap:ad", Some("guid-dan")));
    assert_eq!(dan.employee_number.as_deref(), Some("E-dan"));
    assert_eq!(dan.created_at, 10);
    let carol = store.user_by_id(&local.id).await.unwrap().unwrap();
    assert_eq!((carol.source.as_str(), carol.username.as_str()), ("ldap:ad", "carol"));
    assert_eq!(
        store.credential(&local.id, CredentialKind::Password).await.unwrap().as_deref(),
        Some("$argon2id$carol")
    );
    assert_eq!(store.take_session_revocations().await.unwrap(), Vec::<String>::new());

    // A batch with one bad change writes nothing: a duplicate username, a
    // duplicate external id, a user id that does not exist.
    let before = store.list_users().await.unwrap();
    let bad_batches = [
        UserChange::Create {
            source: "ldap:ad".into(),
            record: DirectoryRecord { external_id: "x".into(), ..record("DAN") },
        },
        UserChange::Create {
            source: "ldap:ad".into(),
            record: DirectoryRecord { username: "zoe".into(), ..record("dan") },
        },
        UserChange::Disable { id: "no-such-id".into() },
    ];
    for bad in bad_batches {
        let batch = vec![
            UserChange::Disable { id: dan.id.clone() },
            UserChange::Create { source: "ldap:ad".into(), record: record("fred") },
            bad.clone(),
        ];
        let err = store.apply_user_changes(&batch, 11).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_) | StoreError::NotFound(_)), "{bad:?}: {err:?}");
        assert_eq!(store.list_users().await.unwrap(), before, "{bad:?}: nothing written");
        assert_eq!(store.take_session_revocations().await.unwrap(), Vec::<String>::new(), "{bad:?}");
    }

    // Disabling, by removal or by the directory's flag, ends sessions once.
    let eve = store.user_by_username("eve").await.unwrap().unwrap();
    let flagged = DirectoryRecord { disabled: true, ..record("eve") };
    store
        .apply_user_changes(
            &[
                UserChange::Disable { id: dan.id.clone() },
                UserChange::Update { id: eve.id.clone(), source: "ldap:ad".into(), record: flagged.clone() },
            ],
            12,
        )
        .await
        .unwrap();
    assert!(store.user_by_id(&dan.id).await.unwrap().unwrap().disabled);
    assert!(store.user_by_id(&eve.id).await.unwrap().unwrap().disabled);
    let mut revoked = store.take_session_revocations().await.unwrap();
    revoked.sort();
    let mut expected = vec![dan.id.clone(), eve.id.clone()];
    expected.sort();
    assert_eq!(revoked, expected);
    // Already disabled: no new request.
    store
        .apply_user_changes(&[UserChange::Update { id: eve.id.clone(), source: "ldap:ad".into(), record: flagged }], 13)
        .await
        .unwrap();
    assert_eq!(store.take_session_revocations().await.unwrap(), Vec::<String>::new());
}

pub async fn disable_unknown_user_is_not_found(store: &dyn Store) {
    let err = store.set_user_disabled("ghost", true, 1).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
}

pub async fn credentials(store: &dyn Store) {
    let carol = store.create_user(&new_user("carol"), Some("$argon2id$first"), 10).await.unwrap();
    assert_eq!(
        store.credential(&carol.id, CredentialKind::Password).await.unwrap().as_deref(),
        Some("$argon2id$first")
    );
    assert_eq!(store.credential(&carol.id, CredentialKind::Pin).await.unwrap(), None);

    store.set_credential(&carol.id, CredentialKind::Password, "$argon2id$second", 20).await.unwrap();
    store.set_credential(&carol.id, CredentialKind::Pin, "$argon2id$pin", 20).await.unwrap();
    assert_eq!(
        store.credential(&carol.id, CredentialKind::Password).await.unwrap().as_deref(),
        Some("$argon2id$second")
    );
    assert_eq!(store.credential(&carol.id, CredentialKind::Pin).await.unwrap().as_deref(), Some("$argon2id$pin"));

    // Credentials belong to their user only.
    let dave = store.create_user(&new_user("dave"), None, 30).await.unwrap();
    assert_eq!(store.credential(&dave.id, CredentialKind::Password).await.unwrap(), None);
    assert_eq!(store.credential("ghost", CredentialKind::Password).await.unwrap(), None);

    let err = store.set_credential("ghost", CredentialKind::Password, "$argon2id$x", 40).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
}

pub async fn login_failures(store: &dyn Store) {
    let erin = store.create_user(&new_user("erin"), None, 1).await.unwrap();
    let frank = store.create_user(&new_user("frank"), None, 1).await.unwrap();

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

pub async fn clients(store: &dyn Store) {
    let epr = client("epr", ClientAuth::Secret { digest: vec![0, 1, 2, 254, 255] });
    let spa = Client {
        start_url: Some("https://spa.example/".to_string()),
        id_token_alg: SigningAlg::ES256,
        grant_types: vec![GrantType::AuthorizationCode],
        post_logout_redirect_uris: vec![],
        backchannel_logout_uri: None,
        min_acr: Some(ACR_PASSKEY.to_string()),
        ..client("spa", ClientAuth::None)
    };
    let agent = Client {
        grant_types: vec![GrantType::TokenExchange, GrantType::ClientCredentials],
        id_token_alg: SigningAlg::EdDSA,
        ..client("agent:ward-7", ClientAuth::JwksUri { uri: "https://agent.example/jwks".to_string() })
    };
    let pacs = client("pacs", ClientAuth::Jwks { jwks: r#"{"keys":[]}"#.to_string() });
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

    let err = store.create_client(&client("epr", ClientAuth::None)).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(store.client("epr").await.unwrap(), Some(epr.clone()), "unchanged");

    // A minimum acr Wardkey does not issue could never be met: refused,
    // nothing written.
    for bad in ["urn:wardkey:acr:otp", "", "urn:wardkey:acr:PASSKEY"] {
        let odd = Client { min_acr: Some(bad.to_string()), ..client("odd", ClientAuth::None) };
        let err = store.create_client(&odd).await.unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    }
    assert_eq!(store.client("odd").await.unwrap(), None);

    store.remove_client("pacs").await.unwrap();
    assert_eq!(store.client("pacs").await.unwrap(), None);
    let err = store.remove_client("pacs").await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert_eq!(store.list_clients().await.unwrap(), [agent, epr, spa]);
}

pub async fn signing_key_rotation(store: &dyn Store) {
    assert!(store.signing_keys().await.unwrap().is_empty());
    store.rotate_signing_keys(&[], 50).await.unwrap();

    let es1 = key("es-1", SigningAlg::ES256, 100);
    let rs1 = key("rs-1", SigningAlg::RS256, 100);
    let ed1 = key("ed-1", SigningAlg::EdDSA, 100);
    store.rotate_signing_keys(&[es1.clone(), rs1.clone(), ed1.clone()], 100).await.unwrap();
    let keys = store.signing_keys().await.unwrap();
    assert_eq!(keys, [ed1.clone(), rs1.clone(), es1.clone()], "same second: last inserted first");

    // Rotating ES256 and EdDSA retires only those; RS256 stays current.
    let es2 = key("es-2", SigningAlg::ES256, 200);
    let ed2 = key("ed-2", SigningAlg::EdDSA, 200);
    store.rotate_signing_keys(&[es2.clone(), ed2.clone()], 200).await.unwrap();
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
        .rotate_signing_keys(&[key("es-3", SigningAlg::ES256, 300), key("es-2", SigningAlg::ES256, 300)], 300)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(store.signing_keys().await.unwrap(), keys);

    // A later ES256 rotation retires es-2 at its own time, not es-1 again.
    store.rotate_signing_keys(&[key("es-3", SigningAlg::ES256, 300)], 300).await.unwrap();
    let keys = store.signing_keys().await.unwrap();
    let retired = |kid: &str| keys.iter().find(|k| k.kid == kid).unwrap().retired_at;
    assert_eq!(retired("es-1"), Some(200));
    assert_eq!(retired("es-2"), Some(300));
    assert_eq!(retired("es-3"), None);

    // Purge drops keys retired strictly before the cut-off, never current ones.
    assert_eq!(store.purge_signing_keys(200).await.unwrap(), 0);
    assert_eq!(store.purge_signing_keys(201).await.unwrap(), 2);
    assert_eq!(kids(&store.signing_keys().await.unwrap()), ["es-3", "ed-2", "es-2", "rs-1"]);
    assert_eq!(store.purge_signing_keys(i64::MAX).await.unwrap(), 1);
    assert_eq!(kids(&store.signing_keys().await.unwrap()), ["es-3", "ed-2", "rs-1"]);
}

pub async fn audit_log(store: &dyn Store) {
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
    assert_eq!(all, [events[3].clone(), events[2].clone(), events[1].clone(), events[0].clone()]);
    assert!(store.recent_audit(0).await.unwrap().is_empty());
}

pub async fn workstations(store: &dyn Store) {
    assert!(store.list_workstations().await.unwrap().is_empty());
    let b7 = workstation("ws-b7", "ward7-b", "Ward 7", 10);
    let a7 = workstation("ws-a7", "ward7-a", "Ward 7", 11);
    store.create_workstation(&b7, b"code-b", 1_000).await.unwrap();
    store.create_workstation(&a7, b"code-a", 1_000).await.unwrap();

    assert_eq!(store.workstation("ws-a7").await.unwrap(), Some(a7.clone()));
    assert_eq!(store.workstation("nope").await.unwrap(), None);
    assert_eq!(store.list_workstations().await.unwrap(), [a7.clone(), b7.clone()], "ordered by name");

    let err = store
        .create_workstation(&workstation("ws-other", "ward7-a", "Ward 9", 12), b"code-x", 1_000)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(store.workstation("ws-other").await.unwrap(), None);

    // A code works once, and only for the workstation it was issued to.
    let key = [7u8; 32];
    let enrolled = store.enrol_workstation(b"code-a", &key, 500).await.unwrap();
    assert_eq!(enrolled, Workstation { public_key: Some(key.to_vec()), enrolled_at: Some(500), ..a7.clone() });
    assert_eq!(store.workstation("ws-a7").await.unwrap(), Some(enrolled.clone()));
    let err = store.enrol_workstation(b"code-a", &[8u8; 32], 501).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert_eq!(store.workstation("ws-a7").await.unwrap(), Some(enrolled.clone()), "key unchanged");
    let err = store.enrol_workstation(b"no-such-code", &key, 500).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");

    // A code is valid strictly before its expiry.
    let err = store.enrol_workstation(b"code-b", &key, 1_000).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    let err = store.enrol_workstation(b"code-b", &key, 5_000).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert_eq!(store.workstation("ws-b7").await.unwrap(), Some(b7.clone()), "still awaiting enrolment");

    // Enable and disable by name; enrolment does not depend on it.
    store.set_workstation_enabled("ward7-b", false).await.unwrap();
    assert!(!store.workstation("ws-b7").await.unwrap().unwrap().enabled);
    store.set_workstation_enabled("ward7-b", false).await.unwrap();
    assert!(store.workstation("ws-a7").await.unwrap().unwrap().enabled, "others untouched");
    let icu = Workstation { enabled: false, ..workstation("ws-icu", "icu-1", "ICU", 20) };
    store.create_workstation(&icu, b"code-icu", 1_000).await.unwrap();
    let icu = store.enrol_workstation(b"code-icu", &[9u8; 32], 999).await.unwrap();
    assert!(!icu.enabled, "a disabled workstation enrols and stays disabled");
    assert_eq!(icu.public_key.as_deref(), Some(&[9u8; 32][..]));
    store.set_workstation_enabled("ward7-b", true).await.unwrap();
    let b7_now = store.workstation("ws-b7").await.unwrap().unwrap();
    assert_eq!(b7_now, b7);

    let err = store.set_workstation_enabled("ghost", true).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert_eq!(store.list_workstations().await.unwrap(), [icu, enrolled, b7]);
}

pub async fn badges(store: &dyn Store) {
    let alice = store.create_user(&new_user("alice"), None, 1).await.unwrap();
    let bob = store.create_user(&new_user("bob"), None, 1).await.unwrap();
    let a1 = badge(&[0xa1; 32], &alice.id, 10);
    let a2 = badge(&[0xa2; 32], &alice.id, 11);
    let b1 = badge(&[0xb1; 32], &bob.id, 12);
    for b in [&a1, &a2, &b1] {
        store.add_badge(b).await.unwrap();
    }

    assert_eq!(store.badge(&a1.digest).await.unwrap(), Some(a1.clone()));
    assert_eq!(store.badge(&b1.digest).await.unwrap(), Some(b1.clone()));
    assert_eq!(store.badge(&[0; 32]).await.unwrap(), None);

    // A digest is enrolled once, to anyone.
    let err = store.add_badge(&badge(&a1.digest, &bob.id, 20)).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(store.badge(&a1.digest).await.unwrap(), Some(a1.clone()), "unchanged");

    // Wrong PINs count per badge, up to the lock threshold and beyond.
    for expected in 1..=MAX_PIN_FAILURES {
        assert_eq!(store.record_pin_failure(&a1.digest).await.unwrap(), expected);
    }
    assert_eq!(store.record_pin_failure(&a2.digest).await.unwrap(), 1);
    assert_eq!(store.record_pin_failure(&b1.digest).await.unwrap(), 1);
    assert_eq!(store.badge(&a1.digest).await.unwrap().unwrap().failed_pins, MAX_PIN_FAILURES);
    let err = store.record_pin_failure(&[0; 32]).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");

    // A reset clears every badge of that user only.
    store.reset_pin_failures(&alice.id).await.unwrap();
    assert_eq!(store.badge(&a1.digest).await.unwrap().unwrap().failed_pins, 0);
    assert_eq!(store.badge(&a2.digest).await.unwrap().unwrap().failed_pins, 0);
    assert_eq!(store.badge(&b1.digest).await.unwrap().unwrap().failed_pins, 1);
    assert_eq!(store.record_pin_failure(&a1.digest).await.unwrap(), 1);
    let carol = store.create_user(&new_user("carol"), None, 1).await.unwrap();
    store.reset_pin_failures(&carol.id).await.unwrap();

    // Revocation.
    store.revoke_badge(&a1.digest).await.unwrap();
    assert_eq!(store.badge(&a1.digest).await.unwrap(), None);
    let err = store.revoke_badge(&a1.digest).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    let err = store.record_pin_failure(&a1.digest).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");

    store.add_badge(&badge(&[0xa3; 32], &alice.id, 30)).await.unwrap();
    assert_eq!(store.revoke_user_badges(&alice.id).await.unwrap(), 2);
    assert_eq!(store.badge(&a2.digest).await.unwrap(), None);
    assert_eq!(store.badge(&[0xa3; 32]).await.unwrap(), None);
    assert_eq!(store.revoke_user_badges(&alice.id).await.unwrap(), 0);
    assert_eq!(store.revoke_user_badges(&carol.id).await.unwrap(), 0);
    assert!(store.badge(&b1.digest).await.unwrap().is_some(), "bob keeps his badge");

    // A revoked digest can be enrolled again (to someone else).
    store.add_badge(&badge(&a1.digest, &bob.id, 40)).await.unwrap();
    assert_eq!(store.badge(&a1.digest).await.unwrap().unwrap().user_id, bob.id);
}

pub async fn server_secrets(store: &dyn Store) {
    assert_eq!(store.server_secret("badge-key", b"first").await.unwrap(), b"first");
    assert_eq!(store.server_secret("badge-key", b"second").await.unwrap(), b"first");
    assert_eq!(store.server_secret("other", &[0, 255, 1]).await.unwrap(), [0, 255, 1]);
    assert_eq!(store.server_secret("badge-key", b"third").await.unwrap(), b"first");
    assert_eq!(store.server_secret("other", b"x").await.unwrap(), [0, 255, 1]);
}

pub async fn logout_notices_are_one_per_client_and_session(store: &dyn Store) {
    // A watch for the session's expiry, due far ahead…
    store.enqueue_logouts(&[notice("epr", "sub", "sid-w")], 5000, 1).await.unwrap();
    assert!(store.claim_due_logouts(100, 30, 10).await.unwrap().is_empty());
    // …is brought forward, not duplicated, by an explicit logout.
    store.enqueue_logouts(&[notice("epr", "sub", "sid-w")], 100, 100).await.unwrap();
    let due = store.claim_due_logouts(100, 30, 10).await.unwrap();
    assert_eq!(due.len(), 1, "{due:?}");
    // Queuing it later again never pushes it back.
    store.enqueue_logouts(&[notice("epr", "sub", "sid-w")], 9000, 100).await.unwrap();
    // Postponing (the session is still live) counts no attempt.
    store.postpone_logout(due[0].id, 200).await.unwrap();
    assert!(store.claim_due_logouts(199, 30, 10).await.unwrap().is_empty());
    let again = store.claim_due_logouts(200, 30, 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 0);
    store.logout_delivered(again[0].id).await.unwrap();
    store.postpone_logout(again[0].id, 300).await.unwrap();
}

pub async fn logout_outbox(store: &dyn Store) {
    assert!(store.claim_due_logouts(100, 30, 10).await.unwrap().is_empty());
    store.enqueue_logouts(&[], 100, 100).await.unwrap();
    store
        .enqueue_logouts(&[notice("epr", "sub-a", "sid-1"), notice("pacs", "sub-a", "sid-1")], 100, 100)
        .await
        .unwrap();
    store.enqueue_logouts(&[notice("epr", "sub-b", "sid-2")], 105, 105).await.unwrap();

    // Due at once; a claim leases them, so a second claim gets nothing.
    let first = store.claim_due_logouts(100, 30, 10).await.unwrap();
    assert_eq!(first.len(), 2, "{first:?}");
    let (n1, n2) = (first[0].clone(), first[1].clone());
    assert!(n1.id < n2.id, "returned in id order");
    assert_eq!(
        (n1.client_id.as_str(), n1.sub.as_str(), n1.sid.as_str(), n1.attempts, n1.created_at),
        ("epr", "sub-a", "sid-1", 0, 100)
    );
    assert_eq!((n2.client_id.as_str(), n2.sub.as_str(), n2.sid.as_str()), ("pacs", "sub-a", "sid-1"));
    assert!(store.claim_due_logouts(100, 30, 10).await.unwrap().is_empty());

    // Only the third is due before the lease ends.
    let third = store.claim_due_logouts(129, 30, 10).await.unwrap();
    assert_eq!(third.len(), 1, "{third:?}");
    let n3 = third[0].clone();
    assert_eq!((n3.sub.as_str(), n3.sid.as_str(), n3.created_at), ("sub-b", "sid-2", 105));
    assert!(n3.id > n2.id);

    // When the lease ends they are due again, oldest due first, up to limit.
    assert_eq!(store.claim_due_logouts(130, 30, 1).await.unwrap(), std::slice::from_ref(&n1));
    assert_eq!(store.claim_due_logouts(130, 30, 10).await.unwrap(), std::slice::from_ref(&n2));
    assert!(store.claim_due_logouts(130, 30, 0).await.unwrap().is_empty());

    // Failures count attempts and set the next attempt; delivery removes.
    store.logout_failed(n1.id, 300, "RP answered 500 Internal Server Error").await.unwrap();
    store.logout_failed(n2.id, 250, "request failed: connection refused").await.unwrap();
    store.logout_delivered(n3.id).await.unwrap();
    assert!(store.claim_due_logouts(249, 30, 10).await.unwrap().is_empty());
    let retry = store.claim_due_logouts(300, 30, 1).await.unwrap();
    assert_eq!(retry, [LogoutNotice { attempts: 1, ..n2.clone() }], "earliest due first, not lowest id");
    let retry = store.claim_due_logouts(300, 30, 10).await.unwrap();
    assert_eq!(retry, [LogoutNotice { attempts: 1, ..n1.clone() }]);
    store.logout_failed(n1.id, 400, "RP answered 503").await.unwrap();
    store.logout_delivered(n2.id).await.unwrap();
    let retry = store.claim_due_logouts(400, 30, 10).await.unwrap();
    assert_eq!(retry, [LogoutNotice { attempts: 2, ..n1.clone() }]);

    store.logout_delivered(n1.id).await.unwrap();
    assert!(store.claim_due_logouts(10_000, 30, 10).await.unwrap().is_empty());
}

pub async fn session_revocations(store: &dyn Store) {
    assert!(store.take_session_revocations().await.unwrap().is_empty());
    for (user, at) in [("u-1", 1), ("u-2", 2), ("u-1", 3), ("u-3", 4), ("u-2", 5)] {
        store.request_session_revocation(user, at).await.unwrap();
    }
    assert_eq!(store.take_session_revocations().await.unwrap(), ["u-1", "u-2", "u-3"]);
    assert!(store.take_session_revocations().await.unwrap().is_empty(), "taken means gone");

    store.request_session_revocation("u-3", 6).await.unwrap();
    store.request_session_revocation("u-1", 7).await.unwrap();
    assert_eq!(store.take_session_revocations().await.unwrap(), ["u-3", "u-1"]);
}

pub async fn webauthn_credentials(store: &dyn Store) {
    let alice = store.create_user(&new_user("alice"), None, 1).await.unwrap();
    let bob = store.create_user(&new_user("bob"), None, 1).await.unwrap();
    assert!(store.webauthn_credentials(&alice.id).await.unwrap().is_empty());

    // Added newest first; listed oldest first, each user's own only.
    let yubikey = WebauthnCredential {
        name: "Blue YubiKey".to_string(),
        ..webauthn(&[0x0b; 48], &alice.id, AuthenticatorKind::SecurityKey, 20)
    };
    let phone = webauthn(&[0x0a, 0, 0xff], &alice.id, AuthenticatorKind::Passkey, 10);
    let bobs = webauthn(&[0xb0; 16], &bob.id, AuthenticatorKind::Passkey, 5);
    for c in [&yubikey, &phone, &bobs] {
        store.add_webauthn_credential(c).await.unwrap();
    }
    assert_eq!(store.webauthn_credentials(&alice.id).await.unwrap(), [phone.clone(), yubikey.clone()]);
    assert_eq!(store.webauthn_credentials(&bob.id).await.unwrap(), std::slice::from_ref(&bobs));
    assert!(store.webauthn_credentials("ghost").await.unwrap().is_empty());

    assert_eq!(store.webauthn_credential(&yubikey.id).await.unwrap(), Some(yubikey.clone()));
    assert_eq!(store.webauthn_credential(&phone.id).await.unwrap(), Some(phone.clone()));
    assert_eq!(store.webauthn_credential(&[0x0a]).await.unwrap(), None, "a prefix is not the id");

    // A credential id is registered once, to anyone; nothing changes.
    for dup in [
        webauthn(&phone.id, &alice.id, AuthenticatorKind::SecurityKey, 30),
        webauthn(&phone.id, &bob.id, AuthenticatorKind::Passkey, 30),
    ] {
        let err = store.add_webauthn_credential(&dup).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    }
    assert_eq!(store.webauthn_credential(&phone.id).await.unwrap(), Some(phone.clone()), "unchanged");

    // The owner must exist.
    let err = store
        .add_webauthn_credential(&webauthn(&[0xee; 16], "ghost", AuthenticatorKind::Passkey, 30))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert_eq!(store.webauthn_credential(&[0xee; 16]).await.unwrap(), None);

    // A sign-in replaces the data (new signature counter) and the time of use.
    let counted = r#"{"cred":{"counter":7}}"#;
    store.update_webauthn_credential(&yubikey.id, counted, 100).await.unwrap();
    let used = WebauthnCredential { data: counted.to_string(), last_used_at: Some(100), ..yubikey.clone() };
    assert_eq!(store.webauthn_credential(&yubikey.id).await.unwrap(), Some(used.clone()));
    assert_eq!(store.webauthn_credential(&phone.id).await.unwrap(), Some(phone.clone()), "others untouched");
    let err = store.update_webauthn_credential(&[0xee; 16], counted, 101).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");

    // Suspension (a counter that went backwards) and its lifting, by the
    // owner's id only.
    store.set_webauthn_suspended(&alice.id, &yubikey.id, Some(150)).await.unwrap();
    let suspended = WebauthnCredential { suspended_at: Some(150), ..used.clone() };
    assert_eq!(store.webauthn_credential(&yubikey.id).await.unwrap(), Some(suspended));
    let err = store.set_webauthn_suspended(&bob.id, &yubikey.id, None).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    store.set_webauthn_suspended(&alice.id, &yubikey.id, None).await.unwrap();
    assert_eq!(store.webauthn_credential(&yubikey.id).await.unwrap(), Some(used.clone()));

    // Only the owner removes a credential, once.
    let err = store.remove_webauthn_credential(&bob.id, &phone.id).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert_eq!(store.webauthn_credential(&phone.id).await.unwrap(), Some(phone.clone()), "still alice's");
    store.remove_webauthn_credential(&alice.id, &phone.id).await.unwrap();
    assert_eq!(store.webauthn_credential(&phone.id).await.unwrap(), None);
    let err = store.remove_webauthn_credential(&alice.id, &phone.id).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    let err = store.remove_webauthn_credential("ghost", &bobs.id).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    let err = store.update_webauthn_credential(&phone.id, counted, 102).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert_eq!(store.webauthn_credentials(&alice.id).await.unwrap(), [used]);
    assert_eq!(store.webauthn_credentials(&bob.id).await.unwrap(), [bobs]);

    // A removed id can be registered again.
    store.add_webauthn_credential(&webauthn(&phone.id, &bob.id, AuthenticatorKind::Passkey, 40)).await.unwrap();
    assert_eq!(store.webauthn_credential(&phone.id).await.unwrap().unwrap().user_id, bob.id);
}

/// One-time enrolment invites: each works once, until it expires, for an
/// existing user only; of several uses at once exactly one succeeds.
pub async fn invites(store: &dyn Store) {
    let alice = store.create_user(&new_user("alice"), None, 1).await.unwrap();
    let bob = store.create_user(&new_user("bob"), None, 1).await.unwrap();
    store.create_invite(&[0xa1; 32], &alice.id, 100, 200).await.unwrap();
    store.create_invite(&[0xa2; 32], &alice.id, 100, 200).await.unwrap();
    store.create_invite(&[0xb1; 32], &bob.id, 100, 200).await.unwrap();
    assert_eq!(store.take_invite(&[0xee; 32], 150).await.unwrap(), None, "no such invite");
    assert_eq!(store.take_invite(&[0xa1; 31], 150).await.unwrap(), None, "a prefix is not the digest");

    // Single use; a user's other invites and other users' are untouched.
    assert_eq!(store.take_invite(&[0xa1; 32], 150).await.unwrap().as_deref(), Some(alice.id.as_str()));
    assert_eq!(store.take_invite(&[0xa1; 32], 150).await.unwrap(), None, "used once");
    assert_eq!(store.take_invite(&[0xb1; 32], 150).await.unwrap().as_deref(), Some(bob.id.as_str()));

    // Valid while now < expires_at; an expired invite stays unusable.
    assert_eq!(store.take_invite(&[0xa2; 32], 200).await.unwrap(), None, "expired at expires_at");
    assert_eq!(store.take_invite(&[0xa2; 32], 250).await.unwrap(), None, "and after");
    store.create_invite(&[0xa3; 32], &alice.id, 100, 200).await.unwrap();
    assert_eq!(store.take_invite(&[0xa3; 32], 300).await.unwrap(), None, "expired");
    assert_eq!(store.take_invite(&[0xa3; 32], 199).await.unwrap().as_deref(), Some(alice.id.as_str()));

    // Recording an invite purges the expired ones: even a clock that went
    // back could not use them.
    store.create_invite(&[0xa4; 32], &alice.id, 100, 150).await.unwrap();
    store.create_invite(&[0xa5; 32], &alice.id, 150, 400).await.unwrap();
    assert_eq!(store.take_invite(&[0xa4; 32], 120).await.unwrap(), None, "purged at 150");

    // Only for an existing user; a taken digest changes nothing.
    let err = store.create_invite(&[0xc1; 32], "ghost", 100, 200).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert_eq!(store.take_invite(&[0xc1; 32], 150).await.unwrap(), None);
    let err = store.create_invite(&[0xa5; 32], &bob.id, 160, 500).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(store.take_invite(&[0xa5; 32], 300).await.unwrap().as_deref(), Some(alice.id.as_str()), "unchanged");

    // Several uses at once (a double click, two nodes): exactly one wins.
    store.create_invite(&[0xd1; 32], &bob.id, 100, 1_000).await.unwrap();
    let take = || store.take_invite(&[0xd1; 32], 500);
    let outcomes = tokio::join!(take(), take(), take(), take(), take(), take());
    let outcomes = [outcomes.0, outcomes.1, outcomes.2, outcomes.3, outcomes.4, outcomes.5];
    let won: Vec<String> = outcomes.into_iter().filter_map(|o| o.unwrap()).collect();
    assert_eq!(won, [bob.id], "exactly one use succeeds");
}

/// Everything `wardkey store migrate` moves reads back from the target
/// exactly as from the source: ids, counters, timestamps, hashes, WebAuthn
/// credentials, retired keys, enrolled and disabled workstations, badges and
/// the audit log.
pub async fn migrate_round_trip(source: &dyn Store, target: &dyn Store) {
    // Users: with a password and a PIN, disabled, with failed logins, bare.
    let alice = source.create_user(&new_user("alice"), Some("$argon2id$alice-pw"), 10).await.unwrap();
    source.set_credential(&alice.id, CredentialKind::Pin, "$argon2id$alice-pin", 11).await.unwrap();
    let bob = source.create_user(&new_user("bob"), Some("$argon2id$bob-pw"), 20).await.unwrap();
    source.set_user_disabled("bob", true, 21).await.unwrap();
    let carol = source.create_user(&new_user("carol"), Some("$argon2id$carol-pw"), 30).await.unwrap();
    source.record_login_failure(&carol.id, 500).await.unwrap();
    source.record_login_failure(&carol.id, 510).await.unwrap();
    let dave =
        source.create_user(&NewUser { username: "dave".to_string(), ..NewUser::default() }, None, 40).await.unwrap();
    source.set_credential(&dave.id, CredentialKind::Pin, "$argon2id$dave-pin", 41).await.unwrap();

    // WebAuthn credentials: used (counter moved on) and never used.
    let alice_key = webauthn(&[0xa5; 64], &alice.id, AuthenticatorKind::SecurityKey, 12);
    let alice_phone = webauthn(&[0xa6; 16], &alice.id, AuthenticatorKind::Passkey, 13);
    let dave_phone = webauthn(&[0xd6; 16], &dave.id, AuthenticatorKind::Passkey, 42);
    for c in [&alice_phone, &alice_key, &dave_phone] {
        source.add_webauthn_credential(c).await.unwrap();
    }
    source.update_webauthn_credential(&alice_key.id, r#"{"cred":{"counter":3}}"#, 300).await.unwrap();

    for c in [
        client("epr", ClientAuth::Secret { digest: vec![0, 1, 2, 254, 255] }),
        Client {
            start_url: Some("https://spa.example/".to_string()),
            min_acr: Some(ACR_SECURITY_KEY.to_string()),
            ..client("spa", ClientAuth::None)
        },
        client("agent:ward-7", ClientAuth::JwksUri { uri: "https://agent.example/jwks".to_string() }),
    ] {
        source.create_client(&c).await.unwrap();
    }

    // Two keys created in the same second, then a rotation retiring one.
    source
        .rotate_signing_keys(&[key("es-1", SigningAlg::ES256, 100), key("rs-1", SigningAlg::RS256, 100)], 100)
        .await
        .unwrap();
    source.rotate_signing_keys(&[key("es-2", SigningAlg::ES256, 200)], 200).await.unwrap();

    // Workstations: enrolled with a key; disabled and still awaiting one.
    source.create_workstation(&workstation("ws-a", "ward7-a", "Ward 7", 50), b"code-a", 1_000).await.unwrap();
    source.enrol_workstation(b"code-a", &[7; 32], 60).await.unwrap();
    source.create_workstation(&workstation("ws-b", "ward7-b", "Ward 7", 51), b"code-b", 1_000).await.unwrap();
    source.set_workstation_enabled("ward7-b", false).await.unwrap();
    let enrolled_disabled = Workstation { enabled: false, ..workstation("ws-c", "icu-1", "ICU", 52) };
    source.create_workstation(&enrolled_disabled, b"code-c", 1_000).await.unwrap();
    source.enrol_workstation(b"code-c", &[9; 32], 61).await.unwrap();

    assert_eq!(source.server_secret("badge-key", &[0, 255, 1, 2]).await.unwrap(), [0, 255, 1, 2]);
    for b in [badge(&[0xc1; 32], &carol.id, 72), badge(&[0xa2; 32], &alice.id, 71), badge(&[0xa1; 32], &alice.id, 70)] {
        source.add_badge(&b).await.unwrap();
    }
    source.record_pin_failure(&[0xa2; 32]).await.unwrap();
    source.record_pin_failure(&[0xa2; 32]).await.unwrap();

    for e in [
        audit(10, "user.add", "alice"),
        audit(20, "user.add", "bob"),
        audit(20, "user.disable", "bob"),
        AuditEvent {
            detail: serde_json::json!({ "nested": { "k": [1, 2, null] } }),
            ..audit(30, "badge.add", "carol")
        },
    ] {
        source.append_audit(&e).await.unwrap();
    }

    let members: Vec<String> = source.list_users().await.unwrap().into_iter().take(2).map(|u| u.id).collect();
    let mut members = members;
    members.sort();
    let group = ScimGroup {
        id: "g-1".into(),
        display_name: "Ward 3".into(),
        external_id: None,
        members,
        created_at: 3,
        updated_at: 4,
    };
    source.save_group(&group, &[]).await.unwrap();

    let report = wardkey_store::migrate::copy(source, target, "badge-key").await.unwrap();
    assert_eq!(target.list_groups().await.unwrap(), [group]);
    let expected = CopyReport {
        users: 4,
        credentials: 5,
        webauthn_credentials: 3,
        clients: 3,
        signing_keys: 3,
        workstations: 3,
        badges: 3,
        groups: 1,
        audit_records: 4,
    };
    assert_eq!(report, expected);
    assert_eq!(target.server_secret("badge-key", b"unused").await.unwrap(), [0, 255, 1, 2]);

    // Users, by id and by list, with their counters and timestamps.
    let users = source.list_users().await.unwrap();
    assert_eq!(users.len(), 4);
    assert_eq!(target.list_users().await.unwrap(), users);
    for user in &users {
        assert_eq!(target.user_by_id(&user.id).await.unwrap().as_ref(), Some(user));
        assert_eq!(target.user_by_username(&user.username).await.unwrap().as_ref(), Some(user));
        for kind in [CredentialKind::Password, CredentialKind::Pin] {
            assert_eq!(
                target.credential(&user.id, kind).await.unwrap(),
                source.credential(&user.id, kind).await.unwrap(),
                "{} {kind:?}",
                user.username
            );
        }
    }
    let bob = target.user_by_id(&bob.id).await.unwrap().unwrap();
    assert!(bob.disabled);
    let carol = target.user_by_id(&carol.id).await.unwrap().unwrap();
    assert_eq!((carol.failed_logins, carol.last_failed_at), (2, Some(510)));
    assert_eq!(
        target.credential(&alice.id, CredentialKind::Pin).await.unwrap().as_deref(),
        Some("$argon2id$alice-pin")
    );
    assert_eq!(target.credential(&dave.id, CredentialKind::Password).await.unwrap(), None);
    // The counters carry on from where they were.
    assert_eq!(target.record_login_failure(&carol.id, 520).await.unwrap(), 3);

    // WebAuthn credentials: each user's, in order, data and last use kept.
    for user in &users {
        let credentials = source.webauthn_credentials(&user.id).await.unwrap();
        assert_eq!(target.webauthn_credentials(&user.id).await.unwrap(), credentials, "{}", user.username);
        for c in &credentials {
            assert_eq!(target.webauthn_credential(&c.id).await.unwrap().as_ref(), Some(c));
        }
    }
    let moved_key = target.webauthn_credential(&alice_key.id).await.unwrap().unwrap();
    assert_eq!(
        moved_key,
        WebauthnCredential {
            data: r#"{"cred":{"counter":3}}"#.to_string(),
            last_used_at: Some(300),
            ..alice_key.clone()
        }
    );
    assert_eq!(target.webauthn_credentials(&alice.id).await.unwrap(), [moved_key, alice_phone]);
    assert_eq!(target.webauthn_credentials(&dave.id).await.unwrap(), [dave_phone]);
    assert!(target.webauthn_credentials(&bob.id).await.unwrap().is_empty());

    let clients = source.list_clients().await.unwrap();
    assert_eq!(clients.len(), 3);
    assert_eq!(target.list_clients().await.unwrap(), clients);
    assert_eq!(target.client("spa").await.unwrap().unwrap().min_acr.as_deref(), Some(ACR_SECURITY_KEY));

    // Keys in the same order, the retired one still retired.
    let keys = source.signing_keys().await.unwrap();
    assert_eq!(kids(&keys), ["es-2", "rs-1", "es-1"]);
    assert_eq!(keys[2].retired_at, Some(200));
    assert_eq!(target.signing_keys().await.unwrap(), keys);

    let workstations = source.list_workstations().await.unwrap();
    assert_eq!(workstations.len(), 3);
    assert_eq!(target.list_workstations().await.unwrap(), workstations);
    for ws in &workstations {
        assert_eq!(target.workstation(&ws.id).await.unwrap().as_ref(), Some(ws));
    }
    let ws_a = target.workstation("ws-a").await.unwrap().unwrap();
    assert_eq!((ws_a.public_key.as_deref(), ws_a.enrolled_at), (Some(&[7; 32][..]), Some(60)));
    // Pending enrolment codes are not moved: ws-b's works only on the source.
    let err = target.enrol_workstation(b"code-b", &[8; 32], 100).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert_eq!(target.workstation("ws-b").await.unwrap().as_ref(), workstations.iter().find(|w| w.id == "ws-b"));
    source.enrol_workstation(b"code-b", &[8; 32], 100).await.unwrap();

    // Badges: every one, with its wrong-PIN count, by user then age.
    let badges = source.list_badges().await.unwrap();
    assert_eq!(badges.len(), 3);
    let owners: Vec<&str> = badges.iter().map(|b| b.user_id.as_str()).collect();
    let alice_badges: Vec<i64> = badges.iter().filter(|b| b.user_id == alice.id).map(|b| b.created_at).collect();
    assert_eq!(alice_badges, [70, 71], "a user's badges oldest first");
    assert!(owners == [&alice.id, &alice.id, &carol.id] || owners == [&carol.id, &alice.id, &alice.id], "{owners:?}");
    assert_eq!(badges.iter().find(|b| b.digest == [0xa2; 32]).unwrap().failed_pins, 2);
    assert_eq!(target.list_badges().await.unwrap(), badges);
    for b in &badges {
        assert_eq!(target.badge(&b.digest).await.unwrap().as_ref(), Some(b));
    }
    assert_eq!(target.server_secret("badge-key", b"other").await.unwrap(), [0, 255, 1, 2]);

    let events = source.recent_audit(u32::MAX).await.unwrap();
    assert_eq!(events.len(), 4);
    assert_eq!(target.recent_audit(u32::MAX).await.unwrap(), events);
}

/// Imports store exactly what they are given, refuse duplicates with
/// `Conflict`, and never leave part of a failed import behind.
pub async fn imports_conflict_and_write_nothing(store: &dyn Store) {
    let erin = User {
        id: "u-erin".to_string(),
        username: "erin".to_string(),
        name: Some("Erin".to_string()),
        email: None,
        roles: vec!["R8000".to_string()],
        disabled: true,
        failed_logins: 4,
        last_failed_at: Some(90),
        created_at: 80,
        source: "ldap:ad".to_string(),
        external_id: Some("guid-erin".to_string()),
        employee_number: Some("E000123".to_string()),
        held: true,
    };
    store.import_user(&erin, &[(CredentialKind::Pin, "$argon2id$pin".to_string())]).await.unwrap();
    assert_eq!(store.user_by_id("u-erin").await.unwrap(), Some(erin.clone()));
    assert_eq!(store.credential("u-erin", CredentialKind::Pin).await.unwrap().as_deref(), Some("$argon2id$pin"));
    assert_eq!(store.credential("u-erin", CredentialKind::Password).await.unwrap(), None);

    // A taken id or username; the credentials do not land on the existing user.
    for (clash, names) in [
        (User { username: "erin2".to_string(), external_id: None, ..erin.clone() }, "user id"),
        (User { id: "u-erin2".to_string(), external_id: None, ..erin.clone() }, "\"erin\""),
        (User { id: "u-erin3".to_string(), username: "erin3".to_string(), ..erin.clone() }, "ldap:ad entry"),
    ] {
        let err =
            store.import_user(&clash, &[(CredentialKind::Password, "$argon2id$pw".to_string())]).await.unwrap_err();
        let StoreError::Conflict(what) = &err else { panic!("{err:?}") };
        assert!(what.contains(names), "{what:?} should name {names}");
    }
    assert_eq!(store.list_users().await.unwrap(), std::slice::from_ref(&erin));
    assert_eq!(store.credential("u-erin", CredentialKind::Password).await.unwrap(), None);
    assert_eq!(store.user_by_username("erin2").await.unwrap(), None);

    // A credential insert that fails takes the user row with it.
    let fay = User { id: "u-fay".to_string(), username: "fay".to_string(), external_id: None, ..erin.clone() };
    let twice = [
        (CredentialKind::Password, "$argon2id$one".to_string()),
        (CredentialKind::Password, "$argon2id$two".to_string()),
    ];
    let err = store.import_user(&fay, &twice).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(store.user_by_id("u-fay").await.unwrap(), None);
    assert_eq!(store.user_by_username("fay").await.unwrap(), None);
    assert_eq!(store.credential("u-fay", CredentialKind::Password).await.unwrap(), None);
    assert_eq!(store.list_users().await.unwrap(), std::slice::from_ref(&erin));
    store.import_user(&fay, &twice[..1]).await.unwrap();
    assert_eq!(store.user_by_id("u-fay").await.unwrap(), Some(fay.clone()));
    assert_eq!(store.credential("u-fay", CredentialKind::Password).await.unwrap().as_deref(), Some("$argon2id$one"));

    // Signing keys keep their times; a taken kid changes nothing.
    let old = SigningKey { retired_at: Some(150), ..key("k-old", SigningAlg::ES256, 100) };
    let new = key("k-new", SigningAlg::ES256, 150);
    store.import_signing_key(&old).await.unwrap();
    store.import_signing_key(&new).await.unwrap();
    let err = store.import_signing_key(&key("k-old", SigningAlg::RS256, 300)).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(store.signing_keys().await.unwrap(), [new.clone(), old.clone()]);

    // Workstations: enrolled or not, with no enrolment code.
    let enrolled = Workstation {
        public_key: Some(vec![5; 32]),
        enabled: false,
        enrolled_at: Some(70),
        ..workstation("ws-1", "ward7-a", "Ward 7", 60)
    };
    let waiting = workstation("ws-2", "ward7-b", "Ward 7", 61);
    store.import_workstation(&enrolled).await.unwrap();
    store.import_workstation(&waiting).await.unwrap();
    assert_eq!(store.workstation("ws-1").await.unwrap(), Some(enrolled.clone()));
    for (clash, names) in [
        (workstation("ws-1", "ward7-c", "Ward 7", 62), "workstation id"),
        (workstation("ws-3", "ward7-b", "Ward 7", 62), "\"ward7-b\""),
    ] {
        let err = store.import_workstation(&clash).await.unwrap_err();
        let StoreError::Conflict(what) = &err else { panic!("{err:?}") };
        assert!(what.contains(names), "{what:?} should name {names}");
    }
    assert_eq!(store.list_workstations().await.unwrap(), [enrolled.clone(), waiting.clone()]);
    // Codes issued afterwards work as usual alongside the imported ones.
    store.create_workstation(&workstation("ws-3", "ward7-c", "Ward 7", 63), b"code", 1_000).await.unwrap();
    let err =
        store.create_workstation(&workstation("ws-2", "ward7-d", "Ward 7", 63), b"other", 1_000).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let ws3 = store.enrol_workstation(b"code", &[6; 32], 500).await.unwrap();
    assert_eq!(ws3.id, "ws-3");

    // Every badge, by owner then age, whatever order they were added in.
    assert!(store.list_badges().await.unwrap().is_empty());
    let added = [
        badge(&[4; 32], "u-fay", 5),
        badge(&[3; 32], "u-erin", 30),
        Badge { failed_pins: 2, ..badge(&[2; 32], "u-erin", 10) },
        badge(&[1; 32], "u-fay", 1),
    ];
    for b in &added {
        store.add_badge(b).await.unwrap();
    }
    assert_eq!(
        store.list_badges().await.unwrap(),
        [added[2].clone(), added[1].clone(), added[3].clone(), added[0].clone()]
    );
}

/// Runs each named suite function against a fresh store from `$open`, one
/// `#[tokio::test]` per function.
macro_rules! store_suite {
    ($open:path; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let (_guard, store) = $open().await;
                $crate::suite::$case(&store).await;
            }
        )+
    };
}

/// Runs each named two-store suite function (`source`, `target`) against
/// two fresh, separate stores from `$open`, one `#[tokio::test]` per function.
macro_rules! store_pair_suite {
    ($open:path; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let (_source_guard, source) = $open().await;
                let (_target_guard, target) = $open().await;
                $crate::suite::$case(&source, &target).await;
            }
        )+
    };
}

/// Runs every suite case against a fresh store from `$open` (an async fn
/// returning `(guard, store)`), one `#[tokio::test]` per case.
pub async fn directory_generation_moves_with_every_directory_change(store: &dyn Store) {
    let mut last = store.directory_generation().await.unwrap();
    let mut moved = |now: i64, what: &str| {
        assert!(now > last, "{what} must move the directory generation ({last} -> {now})");
        last = now;
    };
    let user = store.create_user(&new_user("gen"), None, 1).await.unwrap();
    moved(store.directory_generation().await.unwrap(), "a new user");
    store.set_user_disabled("gen", true, 2).await.unwrap();
    moved(store.directory_generation().await.unwrap(), "disabling a user");
    store.add_badge(&badge(b"gen-badge", &user.id, 3)).await.unwrap();
    moved(store.directory_generation().await.unwrap(), "a new badge");
    store.record_pin_failure(b"gen-badge").await.unwrap();
    moved(store.directory_generation().await.unwrap(), "a wrong PIN");
    store.revoke_badge(b"gen-badge").await.unwrap();
    moved(store.directory_generation().await.unwrap(), "a revoked badge");
    store.create_workstation(&workstation("ws-gen", "gen-pc", "W", 4), b"gen-code", 100).await.unwrap();
    moved(store.directory_generation().await.unwrap(), "a new workstation");
    store.set_workstation_enabled("gen-pc", false).await.unwrap();
    moved(store.directory_generation().await.unwrap(), "disabling a workstation");
    store.create_client(&client("gen-client", ClientAuth::None)).await.unwrap();
    moved(store.directory_generation().await.unwrap(), "a new client");
    store.remove_client("gen-client").await.unwrap();
    moved(store.directory_generation().await.unwrap(), "a removed client");
    // Unrelated writes leave it alone; WebAuthn credentials are read from
    // the store, never cached, so they are unrelated too.
    store.append_audit(&audit(5, "x", "y")).await.unwrap();
    let passkey = webauthn(b"gen-passkey", &user.id, AuthenticatorKind::Passkey, 6);
    store.add_webauthn_credential(&passkey).await.unwrap();
    store.update_webauthn_credential(&passkey.id, "{}", 7).await.unwrap();
    store.remove_webauthn_credential(&user.id, &passkey.id).await.unwrap();
    assert_eq!(store.directory_generation().await.unwrap(), last);
}

/// Writes that change no directory row leave the generation alone, so nodes
/// keep their caches. (PostgreSQL's statement triggers moved it for every
/// statement: each password login's `reset_pin_failures` emptied every
/// node's cache.)
pub async fn directory_generation_stays_when_nothing_changes(store: &dyn Store) {
    let user = store.create_user(&new_user("still"), None, 1).await.unwrap();
    store.add_badge(&badge(b"still-badge", &user.id, 2)).await.unwrap();
    store.create_workstation(&workstation("ws-still", "still-pc", "W", 3), b"still-code", 100).await.unwrap();
    let before = store.directory_generation().await.unwrap();

    store.reset_pin_failures(&user.id).await.unwrap(); // nothing to reset
    store.reset_pin_failures("nobody").await.unwrap();
    assert_eq!(store.revoke_user_badges("nobody").await.unwrap(), 0);
    assert!(matches!(store.reset_login_failures("nobody").await, Err(StoreError::NotFound(_))));
    assert!(matches!(store.set_workstation_enabled("no-pc", false).await, Err(StoreError::NotFound(_))));
    assert!(matches!(store.set_user_disabled("nobody", true, 4).await, Err(StoreError::NotFound(_))));
    assert!(matches!(store.remove_client("no-client").await, Err(StoreError::NotFound(_))));
    assert!(!store.begin_pin_attempt(b"no-badge", 5).await.unwrap());
    assert!(matches!(store.enrol_workstation(b"wrong-code", &[1; 32], 5).await, Err(StoreError::NotFound(_))));
    assert_eq!(store.directory_generation().await.unwrap(), before);

    // A change to several rows still moves it.
    store.add_badge(&badge(b"still-badge-2", &user.id, 6)).await.unwrap();
    let before = store.directory_generation().await.unwrap();
    assert_eq!(store.revoke_user_badges(&user.id).await.unwrap(), 2);
    assert!(store.directory_generation().await.unwrap() > before);
}

/// Guesses arriving at once (issue 12): a PIN check is counted before its
/// slow verification, so that of thirty wrong PINs sent together only the
/// badge's remaining tries are judged; password checks are claimed one at a
/// time per user. Counting an attempt is no directory change (nodes keep
/// their caches).
pub async fn attempts_are_counted_before_they_are_judged(store: &dyn Store) {
    use futures_util::future::join_all;
    let dana = store.create_user(&new_user("dana"), None, 1).await.unwrap();
    let digest = [0xd1; 32];
    store.add_badge(&badge(&digest, &dana.id, 1)).await.unwrap();
    store.record_pin_failure(&digest).await.unwrap();
    let generation = store.directory_generation().await.unwrap();
    let claims = join_all((0..30).map(|_| store.begin_pin_attempt(&digest, MAX_PIN_FAILURES))).await;
    let granted = claims.into_iter().map(Result::unwrap).filter(|c| *c).count();
    assert_eq!(granted as u32, MAX_PIN_FAILURES - 1, "one wrong PIN already: four tries left, of thirty at once");
    assert_eq!(store.directory_generation().await.unwrap(), generation, "counting is no directory change");
    // Each judged wrong becomes a failure and releases its claim.
    for _ in 1..MAX_PIN_FAILURES {
        store.record_pin_failure(&digest).await.unwrap();
    }
    assert_eq!(store.badge(&digest).await.unwrap().unwrap().failed_pins, MAX_PIN_FAILURES);
    assert!(!store.begin_pin_attempt(&digest, MAX_PIN_FAILURES).await.unwrap(), "locked");
    // After a reset, a right PIN releases its claim and changes nothing.
    store.reset_pin_failures(&dana.id).await.unwrap();
    let generation = store.directory_generation().await.unwrap();
    for _ in 0..MAX_PIN_FAILURES {
        assert!(store.begin_pin_attempt(&digest, MAX_PIN_FAILURES).await.unwrap());
    }
    assert!(!store.begin_pin_attempt(&digest, MAX_PIN_FAILURES).await.unwrap(), "five under way: no sixth");
    for _ in 0..MAX_PIN_FAILURES {
        store.end_pin_attempt(&digest).await.unwrap();
    }
    store.end_pin_attempt(&digest).await.unwrap();
    assert_eq!(store.badge(&digest).await.unwrap().unwrap().failed_pins, 0);
    assert!(store.begin_pin_attempt(&digest, MAX_PIN_FAILURES).await.unwrap(), "released, never below zero");
    store.end_pin_attempt(&digest).await.unwrap();
    assert_eq!(store.directory_generation().await.unwrap(), generation);
    assert!(!store.begin_pin_attempt(&[0; 32], MAX_PIN_FAILURES).await.unwrap(), "no such badge");
    // Checks left counted by requests that never finished are cleared by a
    // reset (a password sign-in, an admin unlock), so they cannot lock a
    // badge for good.
    for _ in 0..MAX_PIN_FAILURES {
        assert!(store.begin_pin_attempt(&digest, MAX_PIN_FAILURES).await.unwrap());
    }
    store.reset_pin_failures(&dana.id).await.unwrap();
    assert!(store.begin_pin_attempt(&digest, MAX_PIN_FAILURES).await.unwrap(), "the stuck checks are gone");
    store.end_pin_attempt(&digest).await.unwrap();

    // Passwords: one check at a time per user.
    let claims = join_all((0..30).map(|_| store.begin_login_attempt(&dana.id, 100, 10, 40))).await;
    assert_eq!(claims.into_iter().map(Result::unwrap).filter(|c| *c).count(), 1);
    assert!(!store.begin_login_attempt(&dana.id, 101, 10, 41).await.unwrap(), "still under way");
    // A claim left by a node that died mid-check lapses.
    assert!(store.begin_login_attempt(&dana.id, 200, 10, 150).await.unwrap());
    assert_eq!(store.record_login_failure(&dana.id, 201).await.unwrap(), 1, "and releases the claim");
    assert!(store.begin_login_attempt(&dana.id, 202, 10, 150).await.unwrap());
    store.end_login_attempt(&dana.id).await.unwrap();
    assert!(store.begin_login_attempt(&dana.id, 203, 10, 150).await.unwrap());
    store.end_login_attempt(&dana.id).await.unwrap();
    // A locked account: no claim.
    for _ in 1..10 {
        store.record_login_failure(&dana.id, 204).await.unwrap();
    }
    assert!(!store.begin_login_attempt(&dana.id, 205, 10, 150).await.unwrap(), "ten failures: locked");
    store.reset_login_failures(&dana.id).await.unwrap();
    assert!(store.begin_login_attempt(&dana.id, 206, 10, 150).await.unwrap());
    assert!(!store.begin_login_attempt("ghost", 206, 10, 150).await.unwrap(), "no such user");
}

macro_rules! all_cases {
    ($open:path) => {
        $crate::suite::store_suite!(
            $open;
            ping,
            users_round_trip,
            duplicate_username_conflicts,
            usernames_are_case_insensitive,
            remove_user_and_workstation,
            scim_groups_and_roles,
            directory_changes_are_all_or_nothing,
            disable_unknown_user_is_not_found,
            credentials,
            webauthn_credentials,
            invites,
            login_failures,
            clients,
            signing_key_rotation,
            audit_log,
            workstations,
            badges,
            server_secrets,
            logout_outbox,
            logout_notices_are_one_per_client_and_session,
            session_revocations,
            imports_conflict_and_write_nothing,
            directory_generation_moves_with_every_directory_change,
            directory_generation_stays_when_nothing_changes,
            attempts_are_counted_before_they_are_judged,
            audit_chain_verifies_pages_and_prunes,
        );
        $crate::suite::store_pair_suite!(
            $open;
            migrate_round_trip,
        );
    };
}

pub(crate) use all_cases;
pub(crate) use store_pair_suite;
pub(crate) use store_suite;

// ---------------------------------------------------------------------------
// The audit chain

/// Six records, appended one by one and as a batch.
pub async fn seed_audit_chain(store: &dyn Store) {
    for at in 1..=3 {
        store.append_audit(&audit(at, "tap.signin", &format!("user{at}"))).await.unwrap();
    }
    store
        .append_audit_batch(&[
            audit(4, "tap.lock", "user4"),
            audit(5, "tap.out", "user5"),
            audit(6, "user.disabled", "user6"),
        ])
        .await
        .unwrap();
}

pub async fn audit_chain_verifies_pages_and_prunes(store: &dyn Store) {
    use wardkey_store::AuditFilter;
    use wardkey_store::audit_chain::verify;
    assert_eq!(verify(store).await.unwrap().1, Ok(0), "an empty log verifies");
    seed_audit_chain(store).await;
    let (head, verdict) = verify(store).await.unwrap();
    assert_eq!((head.seq, verdict), (6, Ok(6)));
    // Thirty writers at once still make one unbroken chain.
    let writes = (0..30).map(|i| async move { store.append_audit(&audit(100 + i, "tap.signin", "crowd")).await });
    for result in futures_util::future::join_all(writes).await {
        result.unwrap();
    }
    assert_eq!(verify(store).await.unwrap().1, Ok(36));

    // Filters, newest first, with paging by seq.
    let search = |filter: AuditFilter| async move { store.search_audit(&filter).await.unwrap() };
    let taps = search(AuditFilter { event: Some("tap.".into()), limit: 100, ..Default::default() }).await;
    assert_eq!(taps.len(), 35);
    assert!(taps.windows(2).all(|w| w[0].seq > w[1].seq), "newest first");
    let page = search(AuditFilter { before_seq: Some(3), limit: 10, ..Default::default() }).await;
    assert_eq!(page.iter().map(|r| r.seq).collect::<Vec<_>>(), [2, 1]);
    let user2 = search(AuditFilter { subject: Some("USER2".into()), limit: 10, ..Default::default() }).await;
    assert_eq!(user2.len(), 1, "subjects match whatever their case");
    let window = search(AuditFilter { since: Some(2), until: Some(4), limit: 10, ..Default::default() }).await;
    assert_eq!(window.iter().map(|r| r.event.at).collect::<Vec<_>>(), [3, 2]);
    let like = search(AuditFilter { event: Some("tap_".into()), limit: 10, ..Default::default() }).await;
    assert!(like.is_empty(), "`_` in a filter is a character, not a wildcard");

    // Retention deletes the oldest records and the rest still verifies.
    assert_eq!(store.prune_audit(4).await.unwrap(), 3);
    assert_eq!(store.prune_audit(4).await.unwrap(), 0, "pruning again deletes nothing");
    let (head, verdict) = verify(store).await.unwrap();
    assert_eq!((head.anchor_seq, verdict), (3, Ok(33)));
    store.append_audit(&audit(200, "user.enabled", "user6")).await.unwrap();
    assert_eq!(verify(store).await.unwrap().1, Ok(34));
}

/// Each way of tampering with the log behind Wardkey's back (SQL run on
/// [`seed_audit_chain`]'s six records) and the first problem `verify` must
/// report.
/// What a tampering case is: its name, its SQL, and the verdict it must get.
pub type Tampering = (&'static str, Vec<&'static str>, fn(&ChainProblem) -> bool);

pub fn audit_tampering() -> Vec<Tampering> {
    vec![
        ("an edited subject", vec!["UPDATE audit_log SET subject = 'mallory' WHERE seq = 3"], |p| {
            *p == ChainProblem::Altered { seq: 3 }
        }),
        ("an edited detail", vec![r#"UPDATE audit_log SET detail = '{"n":4}' WHERE seq = 4"#], |p| {
            *p == ChainProblem::Altered { seq: 4 }
        }),
        ("a deleted record", vec!["DELETE FROM audit_log WHERE seq = 2"], |p| {
            *p == ChainProblem::Missing { from: 2, to: 2, before: 1, seq: 3 }
        }),
        (
            "two records swapped",
            vec![
                "UPDATE audit_log SET seq = -2 WHERE seq = 2",
                "UPDATE audit_log SET seq = 2 WHERE seq = 3",
                "UPDATE audit_log SET seq = 3 WHERE seq = -2",
            ],
            |p| *p == ChainProblem::Altered { seq: 2 },
        ),
        ("a record moved to another time", vec!["UPDATE audit_log SET at = 100 WHERE seq = 1"], |p| {
            *p == ChainProblem::Altered { seq: 1 }
        }),
        (
            "an inserted record",
            vec![
                "INSERT INTO audit_log (at, event, actor, subject, detail) \
                 VALUES (7, 'user.enabled', 'admin-cli', 'mallory', '{}')",
            ],
            |p| matches!(p, ChainProblem::Inserted { event, .. } if event == "user.enabled"),
        ),
        ("the newest record deleted", vec!["DELETE FROM audit_log WHERE seq = 6"], |p| {
            *p == ChainProblem::TailMissing { head: 6, last: 5 }
        }),
        (
            "a record hidden before the chain's start",
            vec![
                "INSERT INTO audit_log (at, event, actor, subject, detail, seq, prev_hash, hash) \
                  VALUES (7, 'user.enabled', 'admin-cli', 'mallory', '{}', 0, '', 'x')",
            ],
            |p| matches!(p, ChainProblem::Inserted { event, .. } if event == "user.enabled"),
        ),
        (
            "a record past the head",
            vec![
                "INSERT INTO audit_log (at, event, actor, subject, detail, seq, prev_hash, hash) \
                  SELECT 7, 'user.enabled', 'admin-cli', 'mallory', '{}', 7, hash, 'x' FROM audit_log WHERE seq = 6",
            ],
            |p| matches!(p, ChainProblem::Altered { seq: 7 } | ChainProblem::BeyondHead { .. }),
        ),
    ]
}

/// `verify` of a store seeded and then tampered with by `case`.
pub async fn tampered_verdict(store: &dyn Store) -> Result<u64, ChainProblem> {
    wardkey_store::audit_chain::verify(store).await.unwrap().1
}
