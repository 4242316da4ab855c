//! The trust's directory: a real OpenLDAP `slapd` laid out like Active
//! Directory (`sAMAccountName`, `userAccountControl`, `memberOf`), over
//! LDAPS and StartTLS, synced by the server and by `wardkey directory
//! sync`, and checking directory users' passwords.

use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;
use wardkey_agent::{Lines, PinSource};
use wardkey_core::clock::Clock;
use wardkey_core::user::User;
use wardkey_directory::{LdapDirectory, LdapSource, PasswordCheck, Secret};
use wardkey_idp::logins::Verdict;
use wardkey_proto::broker::WorkstationState;
use wardkey_store::CredentialKind;
use wardkey_testsupport::fixtures::{self, PIN};
use wardkey_testsupport::free_port;
use wardkey_testsupport::slapd::Slapd;

use crate::agent::{broker_token, enrolled_agent, wait_for};
use crate::cli::wardkey;
use crate::helpers::*;
use crate::tap::{add_bcl_client, spawn_rp, wait_for_tokens};

/// The source as a trust would configure it against `slapd` (LDAPS, the
/// test CA, the read-only service account), Ward 7's nurses mapped to a
/// role.
fn source(slapd: &Slapd) -> LdapSource {
    LdapSource {
        name: "ad".into(),
        url: slapd.ldaps_url(),
        ca_file: Some(slapd.ca_path().to_path_buf()),
        bind_dn: Slapd::SERVICE_DN.into(),
        bind_password: Some(Secret(Slapd::SERVICE_PASSWORD.into())),
        base_dn: Slapd::STAFF.into(),
        user_filter: "(objectClass=inetOrgPerson)".into(),
        id_attribute: "entryUUID".into(),
        roles: [(Slapd::group_dn("ward7-nurses").to_uppercase(), "R8001".to_string())].into(),
        ..LdapSource::default()
    }
}

/// The same source as `wardkey.toml` spells it.
fn toml(slapd: &Slapd, extra: &str) -> String {
    format!(
        "[directory]\nsync_interval = \"1h\"\n\n[[directory.ldap]]\nname = \"ad\"\nurl = \"{}\"\nca_file = \"{}\"\n\
         bind_dn = \"{}\"\nbind_password = \"{}\"\nbase_dn = \"{}\"\nuser_filter = \"(objectClass=inetOrgPerson)\"\n\
         id_attribute = \"entryUUID\"\n{extra}\n",
        slapd.ldaps_url(),
        slapd.ca_path().display(),
        Slapd::SERVICE_DN,
        Slapd::SERVICE_PASSWORD,
        Slapd::STAFF,
    )
}

fn disable_ldif(uid: &str, control: u32) -> String {
    format!(
        "dn: {}\nchangetype: modify\nreplace: userAccountControl\nuserAccountControl: {control}\n",
        Slapd::user_dn(uid)
    )
}

/// Wait (15 s at most) for `username` to appear in the server's store.
async fn synced_user(app: &TestApp, username: &str) -> User {
    for _ in 0..150 {
        if let Some(user) = app.state.store.user_by_username(username).await.unwrap() {
            return user;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{username} was never synced from the directory");
}

/// The headline: a clinician from Active Directory signs in with their
/// directory password, taps in at a ward PC with a badge and PIN, and when
/// IT disables them in the directory the PC locks and the EPR is told
/// (back-channel logout) within one sync interval, with nobody touching
/// Wardkey.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_disabled_in_the_directory_is_locked_out_of_the_ward_pc_within_one_sync() {
    let slapd = Slapd::start();
    slapd.add_ldif(&format!(
        "{}{}{}",
        Slapd::user_ldif("alice", "Dr Alice Okafor", "E000001", PASSWORD, true),
        Slapd::user_ldif("bob", "Bob Hughes", "E000002", PASSWORD, true),
        Slapd::group_ldif("ward7-nurses", &["alice"]),
    ));
    let rp = spawn_rp(0).await;
    let ldap = source(&slapd);
    let app = TestApp::builder()
        .settings(move |s| {
            s.directory.sync_interval = Duration::from_secs(10);
            s.directory.ldap = vec![ldap];
        })
        .spawn()
        .await;
    // The first sync runs when the server starts.
    let alice = synced_user(&app, "alice").await;
    assert_eq!(alice.source, "ldap:ad");
    assert_eq!(alice.name.as_deref(), Some("Dr Alice Okafor"));
    assert_eq!(alice.employee_number.as_deref(), Some("E000001"));
    assert_eq!(alice.roles, ["R8001"], "the mapped group, whatever the DN's case");
    assert_eq!(app.state.store.credential(&alice.id, CredentialKind::Password).await.unwrap(), None, "never stored");

    // Password sign-in through the directory, in an EPR's code flow; the
    // username in any case.
    let secret = app.add_epr("web-epr").await;
    let tokens = login_and_redeem(&app, "web-epr", &secret, "ALICE").await;
    assert!(tokens["id_token"].is_string(), "{tokens}");

    // Badges and PINs work for directory users as for local ones.
    let badge = fixtures::badge(&app.state.badge_key, "0A0B0C01", &alice.id, app.clock.now());
    app.state.store.add_badge(&badge).await.unwrap();
    let pin = wardkey_core::password::hash(&app.state.settings.password.argon2(), PIN).unwrap();
    app.state.store.set_credential(&alice.id, CredentialKind::Pin, &pin, app.clock.now()).await.unwrap();
    add_bcl_client(&app, "epr", &rp.uri).await;
    let dir = tempfile::tempdir().unwrap();
    let (agent, socket) = enrolled_agent(&app, dir.path()).await;
    let shutdown = CancellationToken::new();
    let (taps, lines) = Lines::channel();
    let policy = wardkey_agent::peer::PeerPolicy::own_user();
    let listener = wardkey_agent::broker::bind(&socket, &policy).await.expect("bind the broker socket");
    tokio::spawn(wardkey_agent::broker::serve_listener(listener, agent.clone(), policy, shutdown.clone()));
    let (runner, stop) = (agent.clone(), shutdown.clone());
    tokio::spawn(async move { runner.run(lines, PinSource::reader(), stop).await });
    taps.send("0A0B0C01".into()).await.unwrap();
    taps.send(PIN.into()).await.unwrap();
    wait_for(&agent, WorkstationState::Active, Some("alice")).await;
    let (status, body) = broker_token(&socket, "epr").await;
    assert_eq!(status, 200, "{body}");

    // IT disables Alice in Active Directory; nobody touches Wardkey.
    slapd.modify_ldif(&disable_ldif("alice", Slapd::DISABLED));
    let mut locked = false;
    for _ in 0..150 {
        if agent.state().state == WorkstationState::Locked {
            locked = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(locked, "the ward PC locks within one sync interval: {:?}", agent.state());
    let logout = wait_for_tokens(&app, &rp, 1).await;
    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            logout[0].split('.').nth(1).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["sub"], alice.id, "the EPR is told whose session ended");
    assert!(app.state.store.user_by_id(&alice.id).await.unwrap().unwrap().disabled);
    let audit = app.state.store.recent_audit(50).await.unwrap();
    assert!(
        audit.iter().any(|e| e.event == "user.disabled" && e.actor == "directory:ad" && e.subject == "alice"),
        "{audit:?}"
    );
    // Her badge now opens nothing, and her password neither.
    taps.send("0A0B0C01".into()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(agent.state().state, WorkstationState::Locked);
    assert!(matches!(app.state.logins.check("alice", PASSWORD).await.unwrap(), Verdict::Disabled));
    // Bob was untouched.
    assert!(!app.state.store.user_by_username("bob").await.unwrap().unwrap().disabled);
    shutdown.cancel();
}

/// Directory passwords are attacked as local ones are: thirty guesses at
/// once are judged one at a time and lock the account; LDAP filter
/// metacharacters and an empty password (an anonymous bind, RFC 4513
/// §5.1.2) open nothing; a directory that is down is said in words and
/// costs the user no attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_passwords_hold_against_guessing_injection_and_outages() {
    let mut slapd = Slapd::start();
    slapd.add_ldif(&format!(
        "{}{}{}",
        Slapd::user_ldif("carol", "Carol Diaz", "E000003", PASSWORD, true),
        Slapd::user_ldif("dan", "Dan Eze", "E000004", PASSWORD, true),
        Slapd::user_ldif("erin", "Erin Fox", "E000005", PASSWORD, false),
    ));
    let directory = LdapDirectory::new(source(&slapd)).unwrap();
    assert_eq!(directory.verify_password("carol", None, PASSWORD).await.unwrap(), PasswordCheck::Right);
    for (username, password) in
        [("carol", ""), ("*", PASSWORD), ("carol)(uid=*", PASSWORD), ("*)(|(uid=*", PASSWORD), ("carol*", PASSWORD)]
    {
        let check = directory.verify_password(username, None, password).await.unwrap();
        assert_eq!(check, PasswordCheck::Wrong, "{username:?} / {password:?}");
    }
    // OpenLDAP accepts a disabled account's bind (AD does not): the flag is
    // checked too.
    assert_eq!(directory.verify_password("erin", None, PASSWORD).await.unwrap(), PasswordCheck::Disabled);
    assert_eq!(directory.verify_password("erin", None, "nope").await.unwrap(), PasswordCheck::Wrong);

    let ldap = source(&slapd);
    let app = TestApp::builder().settings(move |s| s.directory.ldap = vec![ldap]).spawn().await;
    let carol = synced_user(&app, "carol").await;
    synced_user(&app, "dan").await;
    let lock_after = app.state.settings.password.lock_after;
    let guesses = (0..30).map(|i| {
        let logins = app.state.logins.clone();
        tokio::spawn(async move { logins.check("carol", &format!("guess {i}")).await.unwrap() })
    });
    let verdicts: Vec<Verdict> =
        futures_util::future::join_all(guesses).await.into_iter().map(Result::unwrap).collect();
    let judged = verdicts.iter().filter(|v| matches!(v, Verdict::Wrong | Verdict::Locked)).count();
    assert!(verdicts.iter().all(|v| !matches!(v, Verdict::Success(_))), "{verdicts:?}");
    let failures = app.state.store.user_by_id(&carol.id).await.unwrap().unwrap().failed_logins;
    assert!(failures as usize <= judged && failures <= lock_after, "{failures} failures recorded: {verdicts:?}");
    // Guess until locked; then the right password does not open it.
    for _ in 0..lock_after {
        app.clock.advance(3600);
        if matches!(app.state.logins.check("carol", "still wrong").await.unwrap(), Verdict::Locked) {
            break;
        }
    }
    app.clock.advance(3600);
    assert!(matches!(app.state.logins.check("carol", PASSWORD).await.unwrap(), Verdict::Locked));

    // The directory goes down: words on the login page, no attempt counted.
    slapd.stop();
    assert!(matches!(app.state.logins.check("dan", PASSWORD).await.unwrap(), Verdict::DirectoryUnavailable));
    app.add_epr("web-epr").await;
    let browser = no_redirects(true);
    let (authorize, _) = authorize_url(&app, "web-epr", &[]);
    let login = location(&browser.get(&authorize).send().await.unwrap());
    let html = browser.get(app.url(&login)).send().await.unwrap().text().await.unwrap();
    let form = [
        ("csrf", hidden_input(&html, "csrf")),
        ("request", hidden_input(&html, "request")),
        ("username", "dan".to_string()),
        ("password", PASSWORD.to_string()),
    ];
    let page = browser.post(app.url("/login")).form(&form).send().await.unwrap();
    assert_eq!(page.status(), 503);
    let html = page.text().await.unwrap();
    assert!(html.contains("the trust directory is not answering"), "{html}");
    let dan = app.state.store.user_by_username("dan").await.unwrap().unwrap();
    assert_eq!(dan.failed_logins, 0, "an outage is not the user's failure");
    slapd.start_again();
    assert!(matches!(app.state.logins.check("dan", PASSWORD).await.unwrap(), Verdict::Success(_)));

    // Disabled in AD since the last sync: the right password is refused as
    // disabled, and the user is disabled at once, sessions and all.
    slapd.modify_ldif(&disable_ldif("dan", Slapd::DISABLED));
    let _ = app.state.store.take_session_revocations().await.unwrap();
    assert!(matches!(app.state.logins.check("dan", PASSWORD).await.unwrap(), Verdict::Disabled));
    assert!(app.state.store.user_by_username("dan").await.unwrap().unwrap().disabled);
    assert_eq!(app.state.store.take_session_revocations().await.unwrap(), vec![dan.id.clone()]);
    slapd.modify_ldif(&disable_ldif("dan", Slapd::ENABLED));
    app.state
        .store
        .apply_user_changes(
            &[wardkey_store::UserChange::Update {
                id: dan.id.clone(),
                source: "ldap:ad".into(),
                record: wardkey_core::user::DirectoryRecord {
                    external_id: dan.external_id.clone().unwrap(),
                    username: "dan".into(),
                    name: dan.name.clone(),
                    email: dan.email.clone(),
                    employee_number: dan.employee_number.clone(),
                    roles: vec![],
                    disabled: false,
                },
            }],
            0,
        )
        .await
        .unwrap();

    // AD renames Dan and gives his username to a new starter, between two
    // syncs: the newcomer's password does not open Dan's Wardkey user (the
    // check binds as the entry Dan's user is linked to, by its id).
    slapd.modify_ldif(&format!(
        "dn: {}\nchangetype: modify\nreplace: sAMAccountName\nsAMAccountName: dan.old\n",
        Slapd::user_dn("dan")
    ));
    slapd.add_ldif(&Slapd::user_ldif("dan-new", "Dan Newcomer", "E000099", "the newcomer's own password", true));
    slapd.modify_ldif(&format!(
        "dn: {}\nchangetype: modify\nreplace: sAMAccountName\nsAMAccountName: dan\n",
        Slapd::user_dn("dan-new")
    ));
    app.clock.advance(3600);
    let newcomer = app.state.logins.check("dan", "the newcomer's own password").await.unwrap();
    assert!(matches!(newcomer, Verdict::Wrong), "{newcomer:?}");
    app.clock.advance(3600);
    assert!(matches!(app.state.logins.check("dan", PASSWORD).await.unwrap(), Verdict::Success(_)), "Dan still is Dan");
}

/// `wardkey directory sync` against what goes wrong in real directories:
/// each gets a sentence and leaves the store exactly as it was.
#[tokio::test]
async fn directory_sync_from_the_cli_links_reports_and_never_half_writes() {
    let slapd = Slapd::start();
    let mut ldif = String::new();
    for (uid, name) in [("fay", "Fay Gill"), ("gus", "Gus Hart"), ("hal", "Hal Ives"), ("ivy", "Ivy Jones")] {
        ldif.push_str(&Slapd::user_ldif(uid, name, &format!("E-{uid}"), PASSWORD, true));
    }
    // An entry without sAMAccountName, as service or contact objects have.
    ldif.push_str(&format!(
        "dn: uid=nosam,{}\nobjectClass: inetOrgPerson\nuid: nosam\ncn: No Sam\nsn: Sam\n\n",
        Slapd::STAFF
    ));
    slapd.add_ldif(&ldif);
    let dir = crate::cli::store_dir();
    let dir = dir.path();
    // A user made by hand before the directory was connected: linked, not
    // duplicated, keeping their id.
    wardkey(dir, &["user", "add", "Fay", "--password-stdin"], Some("a local password\n")).ok();
    let fay_before = wardkey(dir, &["user", "list", "--json"], None).ok().json()[0]["sub"].clone();

    let write_config = |extra: &str| std::fs::write(dir.join("wardkey.toml"), toml(&slapd, extra)).unwrap();
    let users = || wardkey(dir, &["user", "list", "--json"], None).ok().json().as_array().unwrap().clone();

    // What goes wrong before anything is read: nothing written.
    write_config("url_override = 1");
    wardkey(dir, &["directory", "sync"], None).fails_with(&["url_override"]);
    let unreachable = toml(&slapd, "").replace(&slapd.ldaps_url(), &format!("ldaps://localhost:{}", free_port()));
    std::fs::write(dir.join("wardkey.toml"), unreachable).unwrap();
    wardkey(dir, &["directory", "sync"], None).fails_with(&["cannot reach directory \"ad\""]);
    let wrong_password = toml(&slapd, "").replace(Slapd::SERVICE_PASSWORD, "not-the-password");
    std::fs::write(dir.join("wardkey.toml"), wrong_password).unwrap();
    wardkey(dir, &["directory", "sync"], None).fails_with(&["refused the service account", "bind_password_file"]);
    let plain = toml(&slapd, "").replace(&slapd.ldaps_url(), &slapd.ldap_url());
    std::fs::write(dir.join("wardkey.toml"), &plain).unwrap();
    wardkey(dir, &["directory", "sync"], None).fails_with(&["directory.ldap[0].url", "sends passwords in clear"]);

    // StartTLS on the plain port works; a dry run writes nothing.
    std::fs::write(
        dir.join("wardkey.toml"),
        plain.replace("[[directory.ldap]]\n", "[[directory.ldap]]\nstarttls = true\n"),
    )
    .unwrap();
    assert_eq!(users().len(), 1, "nothing written");
    let dry = wardkey(dir, &["--json", "directory", "sync", "--dry-run"], None).ok().json();
    assert_eq!((dry[0]["created"].as_u64(), dry[0]["linked"].as_u64()), (Some(3), Some(1)), "{dry}");
    assert_eq!(users().len(), 1, "a dry run writes nothing");

    // The real sync over LDAPS: three created, Fay linked, the entry with
    // no username skipped and named.
    write_config("");
    let run = wardkey(dir, &["directory", "sync"], None).ok();
    assert!(run.stdout.contains("3 created") && run.stdout.contains("1 linked"), "{}", run.stdout);
    assert!(
        run.stdout.contains("1 skipped")
            && run.stdout.contains("uid=nosam")
            && run.stdout.contains("no sAMAccountName"),
        "{}",
        run.stdout
    );
    let listed = users();
    assert_eq!(listed.len(), 4, "{listed:?}");
    let fay = listed.iter().find(|u| u["username"] == "fay").expect("fay, as the directory spells her");
    assert_eq!((fay["sub"].clone(), fay["source"].as_str()), (fay_before, Some("ldap:ad")));
    let human = wardkey(dir, &["user", "list"], None).ok().stdout;
    assert!(human.lines().all(|l| l.ends_with("\tldap:ad")), "{human}");

    // A filter that matches nobody would disable everyone: refused.
    std::fs::write(
        dir.join("wardkey.toml"),
        toml(&slapd, "").replace("(objectClass=inetOrgPerson)", "(objectClass=nosuchclass)"),
    )
    .unwrap();
    wardkey(dir, &["directory", "sync"], None).fails_with(&["found no users", "changed nothing", "user_filter"]);
    // A filter that matches one of four would disable three of four:
    // more than max_disable_share, refused; with --force it applies.
    std::fs::write(
        dir.join("wardkey.toml"),
        toml(&slapd, "").replace("(objectClass=inetOrgPerson)", "(&(objectClass=inetOrgPerson)(uid=fay))"),
    )
    .unwrap();
    wardkey(dir, &["directory", "sync"], None).fails_with(&["would disable 3 of 4", "max_disable_share", "--force"]);
    assert!(users().iter().all(|u| u["disabled"] == false), "nothing written");
    wardkey(dir, &["directory", "sync", "--force"], None).ok();
    assert_eq!(users().iter().filter(|u| u["disabled"] == true).count(), 3);
    // Back to the whole directory: the three come back, never duplicated.
    write_config("");
    let run = wardkey(dir, &["--json", "directory", "sync"], None).ok().json();
    assert_eq!(run[0]["updated"].as_u64(), Some(3), "{run}");
    assert_eq!(users().len(), 4);
    assert!(users().iter().all(|u| u["disabled"] == false));
    // An admin's emergency disable of a directory user stands: the next
    // sync does not enable them again (until `user enable`).
    wardkey(dir, &["user", "disable", "gus"], None).ok();
    wardkey(dir, &["directory", "sync"], None).ok();
    assert_eq!(users().iter().find(|u| u["username"] == "gus").unwrap()["disabled"], true);
    wardkey(dir, &["user", "enable", "gus"], None).ok();
    wardkey(dir, &["directory", "sync"], None).ok();
    assert_eq!(users().iter().find(|u| u["username"] == "gus").unwrap()["disabled"], false);
    // The source renamed in wardkey.toml: its users are not taken by the new
    // name, and IT is told they are no longer synced.
    std::fs::write(dir.join("wardkey.toml"), toml(&slapd, "").replace("name = \"ad\"", "name = \"ad2\"")).unwrap();
    let renamed = wardkey(dir, &["directory", "sync", "--dry-run"], None).ok();
    assert!(renamed.stdout.contains("0 created") && renamed.stdout.contains("5 skipped"), "{}", renamed.stdout);
    assert!(
        renamed.stdout.contains("warning: 4 enabled users come from directory source \"ad\""),
        "{}",
        renamed.stdout
    );
}

/// A trust-sized directory, 15,000 users in 200 groups, syncs into the
/// test server's store (SQLite, and PostgreSQL in the suite's second pass)
/// in 31 LDAP round trips; a repeat changes nothing; 50 changes in the
/// directory are 50 changes in the store. Times are in BENCHMARKS.md
/// (`scripts/bench-directory`), not asserted here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifteen_thousand_users_in_two_hundred_groups_sync_into_the_store() {
    let slapd = Slapd::start_with_population(15_000, 200);
    let app = spawn_app().await;
    let mut ldap = source(&slapd);
    ldap.roles = (0..200).map(|j| (Slapd::group_dn(&Slapd::population_group(j)), format!("R{}", 8000 + j))).collect();
    let directory = LdapDirectory::new(ldap).unwrap();
    let settings = wardkey_directory::DirectorySettings::default();
    let store = app.state.store.as_ref();
    let full = wardkey_directory::sync::run(&directory, store, &settings, 1, false, false).await.unwrap();
    assert_eq!((full.read, full.created, full.skipped, full.round_trips), (15_000, 15_000, 0, 31), "{full:?}");
    let users = store.list_users().await.unwrap();
    assert_eq!(users.len(), 15_000);
    let u7 = users.iter().find(|u| u.username == Slapd::population_uid(7)).unwrap();
    let mut expected: Vec<String> =
        Slapd::population_groups(7, 200).into_iter().map(|j| format!("R{}", 8000 + j)).collect();
    expected.sort();
    assert_eq!(u7.roles, expected, "groups become roles");
    let again = wardkey_directory::sync::run(&directory, store, &settings, 2, false, false).await.unwrap();
    assert_eq!((again.unchanged, again.created + again.updated + again.disabled), (15_000, 0));
    let mut ldif = String::new();
    for i in 0..50 {
        let dn = Slapd::user_dn(&Slapd::population_uid(i * 97));
        let change = if i < 40 {
            format!("replace: displayName\ndisplayName: Renamed {i}")
        } else {
            format!("replace: userAccountControl\nuserAccountControl: {}", Slapd::DISABLED)
        };
        ldif.push_str(&format!("dn: {dn}\nchangetype: modify\n{change}\n\n"));
    }
    slapd.modify_ldif(&ldif);
    let changed = wardkey_directory::sync::run(&directory, store, &settings, 3, false, false).await.unwrap();
    assert_eq!((changed.updated, changed.disabled, changed.unchanged), (40, 10, 14_950), "{changed:?}");
    let revoked = store.take_session_revocations().await.unwrap();
    assert_eq!(revoked.len(), 10, "each disabled user's sessions end");
}
