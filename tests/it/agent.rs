//! The workstation agent (the `wardkey-agent` library, fed by its line
//! reader exactly as the stdin reader feeds it) against a real server:
//! enrolment with a code from the `wardkey` CLI, first tap and PIN, the
//! broker's tokens, a switch, lock, tap-to-active reports, and failing
//! closed while the server is down.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;
use wardkey_agent::enrol::{EnrolOptions, enrol};
use wardkey_agent::{Agent, AgentConfig, Lines, PinSource};
use wardkey_core::client::GrantType;
use wardkey_core::keys::SigningAlg;
use wardkey_proto::broker::{BrokerEvent, WorkstationState};

use crate::helpers::*;
use crate::tap::enrol_badge;

use wardkey_testsupport::fixtures::PIN;

/// A one-time enrolment code from the `wardkey` CLI, against `app`'s store.
fn enrolment_code(app: &TestApp, name: &str) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wardkey"))
        .args(["--json", "workstation", "enrol", name, "--ward", "Ward 10"])
        .env("WARDKEY_STORE__URL", &app.state.settings.store.url)
        .output()
        .expect("run wardkey");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["code"].as_str().unwrap().to_string()
}

/// Enrol an agent in `dir` (agent.toml, key) and load it.
pub async fn enrolled_agent(app: &TestApp, dir: &Path) -> (Agent, PathBuf) {
    let config_path = dir.join("agent.toml");
    let socket = dir.join("broker.sock");
    std::fs::write(&config_path, format!("broker = \"unix:{}\"\ndebounce = \"100ms\"\n", socket.display())).unwrap();
    let code = enrolment_code(app, "pc-agent");
    let options = EnrolOptions { config_path: config_path.clone(), server: app.base.clone(), code, force: false };
    enrol(&options).await.expect("enrol");
    let mode = std::fs::metadata(dir.join("agent.key")).unwrap().permissions();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600, "the key file is private");
    let agent = Agent::new(AgentConfig::load(&config_path).unwrap()).unwrap();
    (agent, socket)
}

/// Wait (a few seconds at most) until `agent` shows `state` for `user`.
pub async fn wait_for(agent: &Agent, state: WorkstationState, user: Option<&str>) {
    for _ in 0..100 {
        let info = agent.state();
        if info.state == state && info.user.as_ref().map(|u| u.username.as_str()) == user {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("agent never reached {state:?} for {user:?}: {:?}", agent.state());
}

/// `POST /v1/token` over the broker's Unix socket: (status, body).
pub(crate) async fn broker_token(socket: &Path, client_id: &str) -> (u16, Value) {
    let body = serde_json::json!({ "client_id": client_id }).to_string();
    let (status, body) =
        wardkey_agent::broker::http_request(socket, "POST", "/v1/token", body.as_bytes()).await.expect("broker socket");
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// The verified claims of an access token, checked against `/jwks`.
async fn verified_claims(app: &TestApp, token: &str, audience: &str) -> Value {
    let jwks: Value = app.get("/jwks").await.json().await.unwrap();
    let kid = jsonwebtoken::decode_header(token).unwrap().kid.unwrap();
    let jwk = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == kid).unwrap().clone();
    let key = jsonwebtoken::DecodingKey::from_jwk(&serde_json::from_value(jwk).unwrap()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&[audience]);
    validation.set_issuer(&[&app.issuer]);
    jsonwebtoken::decode::<Value>(token, &key, &validation).expect("token verifies against /jwks").claims
}

#[tokio::test]
async fn tap_pin_broker_tokens_switch_and_lock() {
    let app = spawn_app().await;
    enrol_badge(&app, "alice", "04A1A1A1").await;
    enrol_badge(&app, "bob", "04B2B2B2").await;
    app.add_client("epr", Auth::Secret, &[GrantType::TokenExchange], SigningAlg::ES256).await;
    let dir = tempfile::tempdir().unwrap();
    let (agent, socket) = enrolled_agent(&app, dir.path()).await;
    let mut events = agent.subscribe();

    let shutdown = CancellationToken::new();
    let (taps, lines) = Lines::channel();
    let policy = wardkey_agent::peer::PeerPolicy::own_user();
    let listener = wardkey_agent::broker::bind(&socket, &policy).await.expect("bind the broker socket");
    tokio::spawn(wardkey_agent::broker::serve_listener(listener, agent.clone(), policy, shutdown.clone()));
    let runner = agent.clone();
    let run_shutdown = shutdown.clone();
    tokio::spawn(async move { runner.run(lines, PinSource::reader(), run_shutdown).await });
    assert_eq!(broker_token(&socket, "epr").await.0, 409, "no token while locked");

    // First tap of the shift: the next line is the PIN (no terminal).
    taps.send("04:a1:a1:a1".into()).await.unwrap();
    taps.send(PIN.into()).await.unwrap();
    wait_for(&agent, WorkstationState::Active, Some("alice")).await;
    let session = wardkey_agent::broker::fetch_session(&socket).await.unwrap();
    assert_eq!(session.state, WorkstationState::Active);
    let (status, tokens) = broker_token(&socket, "epr").await;
    assert_eq!(status, 200, "{tokens}");
    let alice = app.state.store.user_by_username("alice").await.unwrap().unwrap();
    let claims = verified_claims(&app, tokens["access_token"].as_str().unwrap(), "epr").await;
    assert_eq!(claims["sub"], alice.id);

    // Another clinician taps over: switched, and the broker serves only them.
    taps.send("04B2B2B2".into()).await.unwrap();
    taps.send(PIN.into()).await.unwrap();
    wait_for(&agent, WorkstationState::Active, Some("bob")).await;
    let (status, tokens) = broker_token(&socket, "epr").await;
    assert_eq!(status, 200);
    let bob = app.state.store.user_by_username("bob").await.unwrap().unwrap();
    assert_eq!(verified_claims(&app, tokens["access_token"].as_str().unwrap(), "epr").await["sub"], bob.id);

    // The same clinician again: locked, and no tokens.
    tokio::time::sleep(Duration::from_millis(200)).await;
    taps.send("04B2B2B2".into()).await.unwrap();
    wait_for(&agent, WorkstationState::Locked, None).await;
    assert_eq!(broker_token(&socket, "epr").await.0, 409);

    // Events for desktop apps, in order.
    let mut seen = Vec::new();
    while let Ok(event) = events.try_recv() {
        seen.push(event);
    }
    assert!(matches!(seen.first(), Some(BrokerEvent::Unlock { user }) if user.username == "alice"), "{seen:?}");
    assert!(seen.iter().any(|e| matches!(e, BrokerEvent::Switch { user, previous } if user.username == "bob" && previous.username == "alice")), "{seen:?}");
    assert!(matches!(seen.last(), Some(BrokerEvent::Lock)), "{seen:?}");

    // Tap-to-active times reached the server's histogram.
    let mut reported = false;
    for _ in 0..50 {
        let metrics = app.get("/metrics").await.text().await.unwrap();
        if metrics.lines().any(|l| l.starts_with("wardkey_tap_to_active_seconds_count") && !l.ends_with(" 0")) {
            reported = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reported, "tap-to-active reported to the server");
    shutdown.cancel();
}

#[tokio::test]
async fn the_agent_fails_closed_while_the_server_is_down_and_recovers() {
    let port = wardkey_testsupport::free_port();
    let address = format!("127.0.0.1:{port}");
    let app = TestApp::builder().settings(|s| s.server.listen = address.clone()).spawn().await;
    enrol_badge(&app, "carl", "0C0C0C0C").await;
    let dir = tempfile::tempdir().unwrap();
    let (agent, _) = enrolled_agent(&app, dir.path()).await;
    let stopped = app.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Server gone: a plain error, still locked, never a crash.
    let refused = agent.handle_tap("0C0C0C0C").await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(agent.state().state, WorkstationState::Locked);
    assert!(agent.server_unreachable());

    // The server comes back where the agent expects it: the next tap works.
    let app = stopped.restart().listen(&address).spawn().await;
    let mut answer = agent.handle_tap("0C0C0C0C").await;
    for _ in 0..20 {
        if answer.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        answer = agent.handle_tap("0C0C0C0C").await;
    }
    assert_eq!(answer.expect("recovered").state, WorkstationState::PinRequired);
    let active = agent.submit_pin(secrecy::SecretString::from(PIN.to_string())).await.unwrap();
    assert_eq!(active.state, WorkstationState::Active);
    assert!(!agent.server_unreachable());
    drop(app);
}

#[tokio::test]
async fn an_unknown_badge_can_be_self_enrolled_from_the_agent() {
    let app = TestApp::builder().settings(|s| s.tap.self_enrolment = true).spawn().await;
    app.add_user("nia").await;
    let dir = tempfile::tempdir().unwrap();
    let (agent, _) = enrolled_agent(&app, dir.path()).await;
    assert!(agent.handle_tap("0A1B2C3D").await.is_err(), "unknown badge");
    assert_eq!(agent.state().state, WorkstationState::Locked);
    let info = agent
        .self_enrol("0A1B2C3D", "nia", secrecy::SecretString::from(PASSWORD.to_string()))
        .await
        .expect("self-enrol");
    assert_eq!(info.state, WorkstationState::Active);
    assert_eq!(info.user.unwrap().username, "nia");
}

/// Any program on the PC can ask the broker for a token. Asking for an
/// application that needs a stronger sign-in than the clinician made here
/// is refused in words and leaves the PC unlocked: only a refusal of the
/// session itself locks it.
#[tokio::test]
async fn a_token_refused_for_a_strict_application_does_not_lock_the_pc() {
    let app = spawn_app().await;
    enrol_badge(&app, "abe", "0A0B0A0B").await;
    app.add_client("epr", Auth::Secret, &[GrantType::TokenExchange], SigningAlg::ES256).await;
    crate::attestation::add_exchange_client(&app, "prescribing", Some("urn:wardkey:acr:security-key")).await;
    let dir = tempfile::tempdir().unwrap();
    let (agent, _) = enrolled_agent(&app, dir.path()).await;
    assert_eq!(agent.handle_tap("0A0B0A0B").await.unwrap().state, WorkstationState::PinRequired);
    agent.submit_pin(secrecy::SecretString::from(PIN.to_string())).await.unwrap();
    for _ in 0..3 {
        let refused = agent.token("prescribing").await.unwrap_err();
        assert!(refused.to_string().contains("stronger sign-in"), "{refused}");
    }
    assert_eq!(agent.state().state, WorkstationState::Active, "still unlocked");
    assert!(agent.token("epr").await.is_ok(), "other applications still get tokens");
}

/// Issue 12's "revocation never reaches the desk": the agent's run loop
/// holds the desk channel open, and whatever ends the session elsewhere
/// locks the ward PC within seconds, with no tap and no token request:
/// `wardkey session revoke`, `user disable`, `badge revoke` and
/// `workstation disable`, each run as the real CLI against the server's
/// store, and a sign-out in the browser the PC handed the session to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_elsewhere_locks_the_ward_pc() {
    use crate::cli::wardkey;
    let app = spawn_app().await;
    for (name, uid) in [("ann", "0A0A0001"), ("ben", "0A0A0002"), ("cat", "0A0A0003"), ("dot", "0A0A0004")] {
        enrol_badge(&app, name, uid).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let (agent, _) = enrolled_agent(&app, dir.path()).await;
    let shutdown = CancellationToken::new();
    let (taps, lines) = Lines::channel();
    let runner = agent.clone();
    let stop = shutdown.clone();
    tokio::spawn(async move { runner.run(lines, PinSource::reader(), stop).await });
    let sign_in = |uid: &'static str, name: &'static str| {
        let taps = taps.clone();
        let agent = agent.clone();
        async move {
            taps.send(uid.into()).await.unwrap();
            taps.send(PIN.into()).await.unwrap();
            wait_for(&agent, WorkstationState::Active, Some(name)).await;
        }
    };
    let server_dir = app.dir.path();

    sign_in("0A0A0001", "ann").await;
    wardkey(server_dir, &["session", "revoke", "ann"], None).ok();
    wait_for(&agent, WorkstationState::Locked, None).await;

    sign_in("0A0A0002", "ben").await;
    wardkey(server_dir, &["user", "disable", "ben"], None).ok();
    wait_for(&agent, WorkstationState::Locked, None).await;

    sign_in("0A0A0003", "cat").await;
    wardkey(server_dir, &["badge", "revoke", "cat"], None).ok();
    wait_for(&agent, WorkstationState::Locked, None).await;

    // A sign-out in the browser the PC handed the session to.
    sign_in("0A0A0004", "dot").await;
    let user = app.state.store.user_by_username("dot").await.unwrap().unwrap();
    let sid = app.state.sessions.user_sessions(&user.id).await.unwrap().last().unwrap().sid.clone();
    app.state.logouts.logout_session(&sid, "rp-logout").await.unwrap();
    wait_for(&agent, WorkstationState::Locked, None).await;

    // The workstation itself disabled: locked, and its channel closed.
    let secret = app.add_epr("epr").await;
    let _ = secret;
    enrol_badge(&app, "eve", "0A0A0005").await;
    sign_in("0A0A0005", "eve").await;
    let ws_name = app.state.store.list_workstations().await.unwrap().remove(0).name;
    wardkey(server_dir, &["workstation", "disable", &ws_name], None).ok();
    wait_for(&agent, WorkstationState::Locked, None).await;
    shutdown.cancel();
}

/// The same as a ward PC runs it: the `wardkey-agent run` binary (badge and
/// PIN on its stdin), its desk channel, and `wardkey session revoke` from
/// the CLI; the PC locks with no tap and no token request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_binary_locks_when_the_session_is_revoked_elsewhere() {
    use std::process::{Command, Stdio};
    let app = spawn_app().await;
    enrol_badge(&app, "fay", "0F0F0F0F").await;
    let dir = tempfile::tempdir().unwrap();
    let (agent, socket) = enrolled_agent(&app, dir.path()).await;
    drop(agent);
    let binary = Path::new(env!("CARGO_BIN_EXE_wardkey")).with_file_name("wardkey-agent");
    assert!(binary.exists(), "build the workspace (cargo build --workspace) for {}", binary.display());
    let mut child = Command::new(&binary)
        .args(["--config", dir.path().join("agent.toml").to_str().unwrap(), "run", "--reader", "stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start wardkey-agent");
    let state =
        |socket: PathBuf| async move { wardkey_agent::broker::fetch_session(&socket).await.map(|s| s.state).ok() };
    for _ in 0..100 {
        if state(socket.clone()).await.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    {
        use std::io::Write;
        let stdin = child.stdin.as_mut().unwrap();
        writeln!(stdin, "0F0F0F0F").unwrap();
        writeln!(stdin, "{PIN}").unwrap();
        stdin.flush().unwrap();
    }
    let until = |want: WorkstationState| {
        let socket = socket.clone();
        async move {
            for _ in 0..100 {
                if state(socket.clone()).await == Some(want) {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            false
        }
    };
    assert!(until(WorkstationState::Active).await, "the badge and PIN unlocked the PC");
    crate::cli::wardkey(app.dir.path(), &["session", "revoke", "fay"], None).ok();
    let locked = until(WorkstationState::Locked).await;
    let _ = child.kill();
    let _ = child.wait();
    assert!(locked, "the revocation reached the PC");
}

/// The packaged agent reads badges through pcscd: when pcscd is missing it
/// stops at start-up saying how to install and start it (a unit would
/// otherwise restart it in a loop with nothing to read).
#[tokio::test]
async fn a_missing_pcscd_stops_the_agent_with_how_to_fix_it() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let (agent, _) = enrolled_agent(&app, dir.path()).await;
    drop(agent);
    let binary = Path::new(env!("CARGO_BIN_EXE_wardkey")).with_file_name("wardkey-agent");
    let out = std::process::Command::new(&binary)
        .args(["--config", dir.path().join("agent.toml").to_str().unwrap(), "run", "--reader", "pcsc"])
        // pcsc-lite looks for pcscd's socket here: nothing listens.
        .env("PCSCLITE_CSOCK_NAME", dir.path().join("no-pcscd.comm"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run wardkey-agent");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        said.contains("pcscd") && said.contains("apt install pcscd") && said.contains("reader = \"stdin\""),
        "{said}"
    );
}

/// A program at the desk posts thirty PINs to the lock screen's pad at
/// once: each gets an answer (queued, busy, or no PIN asked), the agent
/// keeps serving, and the badge's wrong-PIN count never passes the five
/// the lockout allows.
#[tokio::test(flavor = "multi_thread")]
async fn thirty_pad_pins_at_once_never_pass_the_lockout() {
    let app = spawn_app().await;
    enrol_badge(&app, "gwen", "0A0A0A0A").await;
    let dir = tempfile::tempdir().unwrap();
    let (agent, socket) = enrolled_agent(&app, dir.path()).await;
    let shutdown = CancellationToken::new();
    let (taps, lines) = Lines::channel();
    let policy = wardkey_agent::peer::PeerPolicy::own_user();
    let listener = wardkey_agent::broker::bind(&socket, &policy).await.unwrap();
    tokio::spawn(wardkey_agent::broker::serve_listener(listener, agent.clone(), policy, shutdown.clone()));
    let runner = agent.clone();
    let run_shutdown = shutdown.clone();
    tokio::spawn(async move { runner.run(lines, PinSource::reader(), run_shutdown).await });
    taps.send("0A0A0A0A".into()).await.unwrap();
    wait_for(&agent, WorkstationState::PinRequired, Some("gwen")).await;

    let posts = (0..30).map(|i| {
        let socket = socket.clone();
        tokio::spawn(async move {
            let body = format!("{{\"pin\":\"{:06}\"}}", 900000 + i);
            wardkey_agent::broker::http_request(&socket, "POST", "/v1/pin", body.as_bytes()).await.unwrap().0
        })
    });
    let statuses: Vec<u16> = futures_util::future::join_all(posts).await.into_iter().map(Result::unwrap).collect();
    assert!(statuses.iter().all(|s| [202, 409, 429].contains(s)), "{statuses:?}");
    assert!(statuses.contains(&202), "the pad takes a PIN: {statuses:?}");
    // Let the queued PINs be judged.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let digest = wardkey_core::badge::digest(&app.state.badge_key, "0A0A0A0A").unwrap();
    let badge = app.state.store.badge(&digest).await.unwrap().unwrap();
    let accepted = statuses.iter().filter(|s| **s == 202).count() as i64;
    assert!(
        i64::from(badge.failed_pins) <= accepted.min(5),
        "{} wrong PINs counted for {accepted} taken",
        badge.failed_pins
    );
    let (status, _) = wardkey_agent::broker::http_request(&socket, "GET", "/v1/desk", b"").await.unwrap();
    assert_eq!(status, 200, "the agent still serves");
    shutdown.cancel();
}
