//! The agent against a stand-in server on 127.0.0.1:0 that verifies every
//! signed request as the contract says (header, signature, `iss`, `aud`,
//! fresh `jti`, `iat`, content type) and answers from a small script of
//! badges. The real server's end-to-end tests live in the workspace's
//! `tests/`; these pin down the agent's side of the contract and its
//! behaviour when the server misbehaves.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::signature::{ED25519, UnparsedPublicKey};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use wardkey_agent::agent::{Agent, AgentError, TokenError};
use wardkey_agent::broker;
use wardkey_agent::client::{ServerClient, ServerError};
use wardkey_agent::config::{AgentConfig, HooksConfig};
use wardkey_agent::enrol::{EnrolError, EnrolOptions, enrol};
use wardkey_agent::keys::{self, KeyError, Signer};
use wardkey_agent::prompt::PinSource;
use wardkey_agent::reader::Lines;
use wardkey_proto::broker::{BrokerEvent, WorkstationState};
use wardkey_proto::tap::{SESSION_TICKET_TOKEN_TYPE, TOKEN_EXCHANGE_GRANT, TapResponse, UserSummary};

const CODE: &str = "GOOD-CODE";
const PIN: &str = "1234";
const WS: &str = "ws_1";

// --- the stand-in server ----------------------------------------------------

#[derive(Default)]
struct Mock {
    issuer: String,
    public_key: Option<Vec<u8>>,
    jtis: HashSet<String>,
    /// Who is attached to the workstation, and with which ticket.
    attached: Option<(String, String)>,
    pending_pin: Option<(String, String)>,
    tickets: u32,
    reports: Vec<f64>,
    tap_outs: u32,
    exchanges: u32,
    down: bool,
    reports_down: bool,
    paths: Vec<String>,
}

type Shared = Arc<Mutex<Mock>>;

fn user(name: &str) -> UserSummary {
    UserSummary { username: name.into(), name: Some(format!("Dr {name}")) }
}

fn refuse(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"error": code, "message": message}))).into_response()
}

fn down() -> Response {
    refuse(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "sign-in is temporarily unavailable")
}

fn b64json(part: &str) -> Option<Value> {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?).ok()
}

/// Verify a compact JWS with the enrolled key; returns (header, claims).
fn verify_jws(mock: &Mock, jws: &str) -> Result<(Value, Value), &'static str> {
    let parts: Vec<&str> = jws.split('.').collect();
    let [h, c, s] = parts[..] else {
        return Err("not a compact JWS");
    };
    let key = mock.public_key.as_ref().ok_or("not enrolled")?;
    let signature = URL_SAFE_NO_PAD.decode(s).map_err(|_| "bad signature encoding")?;
    UnparsedPublicKey::new(&ED25519, key)
        .verify(format!("{h}.{c}").as_bytes(), &signature)
        .map_err(|_| "bad signature")?;
    let header = b64json(h).ok_or("bad header")?;
    let claims = b64json(c).ok_or("bad claims")?;
    if header["alg"] != "EdDSA" || header["kid"] != WS {
        return Err("bad header");
    }
    let now = wardkey_agent::client::unix_now();
    if (claims["iat"].as_i64().ok_or("no iat")? - now).abs() > 60 {
        return Err("stale");
    }
    Ok((header, claims))
}

/// A refusal: status, code, message.
type Refusal = (StatusCode, &'static str, &'static str);

/// Check a signed tap request; returns its claims or a refusal.
fn tap_claims(mock: &mut Mock, headers: &HeaderMap, body: &str) -> Result<Value, Refusal> {
    let bad = |why| (StatusCode::UNAUTHORIZED, "invalid_signature", why);
    if headers.get("content-type").and_then(|v| v.to_str().ok()) != Some("application/jose") {
        return Err((StatusCode::BAD_REQUEST, "invalid_request", "content type"));
    }
    let (header, claims) = verify_jws(mock, body).map_err(bad)?;
    if header != json!({"alg": "EdDSA", "kid": WS, "typ": "wardkey-tap+jwt"}) {
        return Err(bad("header"));
    }
    if claims["iss"] != WS || claims["aud"] != mock.issuer.as_str() {
        return Err(bad("iss/aud"));
    }
    let jti = claims["jti"].as_str().unwrap_or_default().to_string();
    if URL_SAFE_NO_PAD.decode(&jti).map(|b| b.len()).unwrap_or(0) < 16 || !mock.jtis.insert(jti) {
        return Err((StatusCode::CONFLICT, "replayed", "replayed"));
    }
    Ok(claims)
}

fn attach(mock: &mut Mock, name: &str) -> TapResponse {
    mock.tickets += 1;
    let ticket = format!("ticket-{}", mock.tickets);
    let previous = mock.attached.replace((name.to_string(), ticket.clone())).map(|(p, _)| p);
    match previous {
        Some(p) if p != name => {
            TapResponse::Switched { user: user(name), previous: user(&p), session_ticket: ticket, expires_in: 600 }
        }
        _ => TapResponse::Active { user: user(name), session_ticket: ticket, expires_in: 600 },
    }
}

async fn enrol_handler(State(s): State<Shared>, Json(body): Json<Value>) -> Response {
    let mut mock = s.lock().unwrap();
    if body["code"] != CODE {
        return refuse(StatusCode::GONE, "expired", "this enrolment code is not valid");
    }
    let key = URL_SAFE_NO_PAD.decode(body["public_key"].as_str().unwrap_or_default()).unwrap_or_default();
    assert_eq!(key.len(), 32, "raw 32-byte Ed25519 key");
    mock.public_key = Some(key);
    Json(json!({"workstation_id": WS, "name": "Bay 3", "ward": "ward-7"})).into_response()
}

async fn tap_handler(State(s): State<Shared>, headers: HeaderMap, body: String) -> Response {
    let mut mock = s.lock().unwrap();
    mock.paths.push("/tap".into());
    if mock.down {
        return down();
    }
    let claims = match tap_claims(&mut mock, &headers, &body) {
        Ok(c) => c,
        Err((status, code, message)) => return refuse(status, code, message),
    };
    let badge = claims["badge"].as_str().unwrap_or_default();
    let answer = match badge {
        // In PIN grace: tap in, tap again to lock.
        "ALICE" | "CAROL" => {
            let name = badge.to_lowercase();
            if mock.attached.as_ref().is_some_and(|(u, _)| *u == name) {
                mock.attached = None;
                TapResponse::Locked
            } else {
                attach(&mut mock, &name)
            }
        }
        // Needs a PIN.
        "BOB" => {
            mock.pending_pin = Some(("tap-bob".into(), "bob".into()));
            TapResponse::PinRequired { tap_id: "tap-bob".into(), user: user("bob"), expires_in: 60 }
        }
        "GARBAGE" => return (StatusCode::OK, "{not json").into_response(),
        "WEIRD" => return Json(json!({"state": "teleported"})).into_response(),
        "BOOM" => return (StatusCode::INTERNAL_SERVER_ERROR, "<html>oops</html>").into_response(),
        _ => return refuse(StatusCode::NOT_FOUND, "unknown_badge", "this badge is not registered"),
    };
    Json(answer).into_response()
}

async fn pin_handler(State(s): State<Shared>, headers: HeaderMap, body: String) -> Response {
    let mut mock = s.lock().unwrap();
    if mock.down {
        return down();
    }
    let claims = match tap_claims(&mut mock, &headers, &body) {
        Ok(c) => c,
        Err((status, code, message)) => return refuse(status, code, message),
    };
    let Some((tap_id, name)) = mock.pending_pin.clone() else {
        return refuse(StatusCode::GONE, "expired", "tap again");
    };
    if claims["tap_id"] != tap_id.as_str() {
        return refuse(StatusCode::GONE, "expired", "tap again");
    }
    if claims["pin"] != PIN {
        return refuse(StatusCode::UNAUTHORIZED, "wrong_pin", "wrong PIN: 4 attempts left before the badge locks");
    }
    mock.pending_pin = None;
    Json(attach(&mut mock, &name)).into_response()
}

async fn out_handler(State(s): State<Shared>, headers: HeaderMap, body: String) -> Response {
    let mut mock = s.lock().unwrap();
    if mock.down {
        return down();
    }
    let claims = match tap_claims(&mut mock, &headers, &body) {
        Ok(c) => c,
        Err((status, code, message)) => return refuse(status, code, message),
    };
    mock.tap_outs += 1;
    mock.attached = None;
    if claims["logout"] == true { Json(TapResponse::LoggedOut) } else { Json(TapResponse::Locked) }.into_response()
}

async fn report_handler(State(s): State<Shared>, headers: HeaderMap, body: String) -> Response {
    let mut mock = s.lock().unwrap();
    if mock.down || mock.reports_down {
        return down();
    }
    let claims = match tap_claims(&mut mock, &headers, &body) {
        Ok(c) => c,
        Err((status, code, message)) => return refuse(status, code, message),
    };
    mock.reports.push(claims["tap_to_active_seconds"].as_f64().unwrap());
    StatusCode::NO_CONTENT.into_response()
}

async fn token_handler(State(s): State<Shared>, Form(form): Form<HashMap<String, String>>) -> Response {
    let mut mock = s.lock().unwrap();
    let oauth = |status: StatusCode, error: &str| (status, Json(json!({"error": error}))).into_response();
    if mock.down {
        return oauth(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable");
    }
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    assert_eq!(field("grant_type"), TOKEN_EXCHANGE_GRANT);
    assert_eq!(field("subject_token_type"), SESSION_TICKET_TOKEN_TYPE);
    assert_eq!(field("client_id"), WS);
    assert_eq!(field("client_assertion_type"), "urn:ietf:params:oauth:client-assertion-type:jwt-bearer");
    let (header, claims) = verify_jws(&mock, field("client_assertion")).expect("assertion verifies");
    assert_eq!(header, json!({"alg": "EdDSA", "kid": WS, "typ": "JWT"}));
    assert_eq!(claims["iss"], WS);
    assert_eq!(claims["sub"], WS);
    assert_eq!(claims["aud"], format!("{}/token", mock.issuer));
    assert_eq!(claims["exp"].as_i64().unwrap(), claims["iat"].as_i64().unwrap() + 60);
    let jti = claims["jti"].as_str().unwrap().to_string();
    assert!(mock.jtis.insert(jti), "assertion jti reused");
    if field("audience") != "epr" {
        return oauth(StatusCode::BAD_REQUEST, "invalid_target");
    }
    let Some((name, ticket)) = mock.attached.clone() else {
        return oauth(StatusCode::BAD_REQUEST, "invalid_grant");
    };
    if field("subject_token") != ticket {
        return oauth(StatusCode::BAD_REQUEST, "invalid_grant");
    }
    mock.exchanges += 1;
    Json(json!({
        "access_token": format!("at-{name}-{}", mock.exchanges),
        "token_type": "Bearer",
        "expires_in": 300,
        "id_token": format!("id-{name}"),
    }))
    .into_response()
}

async fn healthz(State(s): State<Shared>) -> StatusCode {
    if s.lock().unwrap().down { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK }
}

struct Server {
    url: String,
    state: Shared,
}

impl Server {
    fn with<T>(&self, f: impl FnOnce(&mut Mock) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }
}

async fn spawn_server() -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let state: Shared = Arc::new(Mutex::new(Mock { issuer: url.clone(), ..Mock::default() }));
    let app = Router::new()
        .route("/tap/enrol", post(enrol_handler))
        .route("/tap", post(tap_handler))
        .route("/tap/pin", post(pin_handler))
        .route("/tap/out", post(out_handler))
        .route("/tap/report", post(report_handler))
        .route("/token", post(token_handler))
        .route("/healthz", get(healthz))
        .with_state(state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server { url, state }
}

// --- helpers ------------------------------------------------------------------

struct Setup {
    server: Server,
    dir: tempfile::TempDir,
    config_path: PathBuf,
}

/// A server and a workstation enrolled with it through `enrol`.
async fn enrolled() -> Setup {
    let server = spawn_server().await;
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("agent.toml");
    let options = EnrolOptions {
        config_path: config_path.clone(),
        server: format!("{}/", server.url),
        code: CODE.into(),
        force: false,
    };
    let answer = enrol(&options).await.unwrap();
    assert_eq!(answer.workstation_id, WS);
    Setup { server, dir, config_path }
}

fn config(setup: &Setup) -> AgentConfig {
    AgentConfig::load(&setup.config_path).unwrap()
}

/// An agent with settings tests need (short idle time, hooks), built
/// around its own client as a test with a manual clock would.
fn agent_with(setup: &Setup, tweak: impl FnOnce(&mut AgentConfig)) -> Agent {
    let mut config = config(setup);
    tweak(&mut config);
    let key = keys::load_key(&config.key_path()).unwrap();
    let enrolment = config.enrolment().unwrap();
    let signer = Signer::new(key, enrolment.workstation_id, enrolment.server);
    let client = ServerClient::new(signer, Duration::from_secs(2)).unwrap();
    Agent::with_client(client, enrolment.name, &config)
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..100 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn next_event(rx: &mut tokio::sync::broadcast::Receiver<BrokerEvent>) -> BrokerEvent {
    tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.expect("an event").expect("open channel")
}

fn server_code(e: &AgentError) -> Option<&str> {
    match e {
        AgentError::Server(s) => s.code(),
        _ => None,
    }
}

// --- enrolment ----------------------------------------------------------------

#[tokio::test]
async fn enrolment_writes_a_private_key_and_the_config() {
    let setup = enrolled().await;
    let config = config(&setup);
    let enrolment = config.enrolment().unwrap();
    assert_eq!(enrolment.server, setup.server.url, "no trailing slash");
    assert_eq!(
        (enrolment.workstation_id.as_str(), enrolment.name.as_str(), enrolment.ward.as_str()),
        (WS, "Bay 3", "ward-7")
    );
    let key_path = config.key_path();
    assert_eq!(key_path, setup.dir.path().join("agent.key"));
    assert_eq!(std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777, 0o600);
    let key = keys::load_key(&key_path).unwrap();
    assert_eq!(setup.server.with(|m| m.public_key.clone()).unwrap(), key.public_key());
    // Agent::new takes it from there.
    let agent = Agent::new(config).unwrap();
    assert_eq!(agent.state().workstation, "Bay 3");
    assert_eq!(agent.state().state, WorkstationState::Locked);
}

#[tokio::test]
async fn enrolment_never_loses_a_working_key() {
    let setup = enrolled().await;
    let key_path = config(&setup).key_path();
    let before = std::fs::read(&key_path).unwrap();
    let options = |code: &str, force| EnrolOptions {
        config_path: setup.config_path.clone(),
        server: setup.server.url.clone(),
        code: code.into(),
        force,
    };
    // Without --force: refused before the server is asked.
    let err = enrol(&options(CODE, false)).await.unwrap_err();
    assert!(matches!(err, EnrolError::Key(KeyError::Exists(_))), "{err}");
    assert!(err.to_string().contains("--force"));
    // A bad code with --force: the server refuses, the old key stays.
    let err = enrol(&options("WRONG", true)).await.unwrap_err();
    assert!(matches!(&err, EnrolError::Server(ServerError::Refused { code, .. }) if code == "expired"), "{err}");
    assert_eq!(std::fs::read(&key_path).unwrap(), before);
    assert!(!setup.dir.path().join("agent.key.new").exists());
    // A good code with --force: a new key.
    enrol(&options(CODE, true)).await.unwrap();
    assert_ne!(std::fs::read(&key_path).unwrap(), before);
    assert_eq!(std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777, 0o600);
}

#[tokio::test]
async fn enrolment_against_no_server_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let options = EnrolOptions {
        config_path: dir.path().join("agent.toml"),
        server: "http://127.0.0.1:9".into(),
        code: CODE.into(),
        force: false,
    };
    let err = enrol(&options).await.unwrap_err();
    assert!(err.to_string().starts_with("cannot reach the Wardkey server at http://127.0.0.1:9"), "{err}");
    assert!(!dir.path().join("agent.key").exists());
}

#[tokio::test]
async fn run_refuses_an_unenrolled_config() {
    let dir = tempfile::tempdir().unwrap();
    let err = Agent::new(AgentConfig::load(&dir.path().join("agent.toml")).unwrap()).unwrap_err();
    assert!(err.to_string().contains("wardkey-agent enrol"), "{err}");
}

// --- taps, PINs, switches ---------------------------------------------------------

#[tokio::test]
async fn tap_unlocks_tap_again_locks_and_reports_are_sent() {
    let setup = enrolled().await;
    let agent = Agent::new(config(&setup)).unwrap();
    let mut events = agent.subscribe();
    let info = agent.handle_tap("ALICE").await.unwrap();
    assert_eq!(info.state, WorkstationState::Active);
    assert_eq!(info.user, Some(user("alice")));
    assert_eq!(next_event(&mut events).await, BrokerEvent::Unlock { user: user("alice") });
    eventually("the tap-to-active report", || setup.server.with(|m| m.reports.len() == 1)).await;
    let seconds = setup.server.with(|m| m.reports[0]);
    assert!((0.0..5.0).contains(&seconds), "{seconds}");

    let info = agent.handle_tap("ALICE").await.unwrap();
    assert_eq!(info.state, WorkstationState::Locked);
    assert_eq!(next_event(&mut events).await, BrokerEvent::Lock);
    assert_eq!(agent.pending_reports(), 0);
}

#[tokio::test]
async fn pin_flow_wrong_pin_then_right_pin() {
    let setup = enrolled().await;
    let agent = Agent::new(config(&setup)).unwrap();
    let info = agent.handle_tap("BOB").await.unwrap();
    assert_eq!(info.state, WorkstationState::PinRequired);
    assert_eq!(info.user, Some(user("bob")));
    assert!(agent.pin_deadline().is_some());

    let err = agent.submit_pin(SecretString::from("0000")).await.unwrap_err();
    assert_eq!(server_code(&err), Some("wrong_pin"));
    assert!(err.to_string().contains("attempts left"), "{err}");
    assert_eq!(agent.state().state, WorkstationState::PinRequired, "a wrong PIN keeps the prompt");

    tokio::time::sleep(Duration::from_millis(100)).await;
    let info = agent.submit_pin(SecretString::from(PIN)).await.unwrap();
    assert_eq!(info.state, WorkstationState::Active);
    eventually("the report", || setup.server.with(|m| m.reports.len() == 1)).await;
    assert!(setup.server.with(|m| m.reports[0]) >= 0.1, "tap-to-active includes typing the PIN");

    let err = agent.submit_pin(SecretString::from(PIN)).await.unwrap_err();
    assert!(matches!(err, AgentError::NoPinPending));
}

#[tokio::test]
async fn another_clinician_switches_and_a_pin_tap_hides_the_first_at_once() {
    let setup = enrolled().await;
    let agent = Agent::new(config(&setup)).unwrap();
    let mut events = agent.subscribe();
    agent.handle_tap("ALICE").await.unwrap();
    assert_eq!(next_event(&mut events).await, BrokerEvent::Unlock { user: user("alice") });

    // Carol is in PIN grace: a fast user switch.
    let info = agent.handle_tap("CAROL").await.unwrap();
    assert_eq!(info.user, Some(user("carol")));
    assert_eq!(next_event(&mut events).await, BrokerEvent::Switch { user: user("carol"), previous: user("alice") });

    // Bob needs a PIN: carol's work is hidden before he types it.
    let info = agent.handle_tap("BOB").await.unwrap();
    assert_eq!(info.state, WorkstationState::PinRequired);
    assert_eq!(next_event(&mut events).await, BrokerEvent::Lock);
    agent.submit_pin(SecretString::from(PIN)).await.unwrap();
    assert_eq!(next_event(&mut events).await, BrokerEvent::Switch { user: user("bob"), previous: user("carol") });
}

#[tokio::test]
async fn refusals_change_nothing_and_bad_answers_fail_closed() {
    let setup = enrolled().await;
    let agent = Agent::new(config(&setup)).unwrap();
    let err = agent.handle_tap("NOBODY").await.unwrap_err();
    assert_eq!(server_code(&err), Some("unknown_badge"));
    assert_eq!(err.to_string(), "this badge is not registered");
    assert_eq!(agent.state().state, WorkstationState::Locked);

    agent.handle_tap("ALICE").await.unwrap();
    let err = agent.handle_tap("NOBODY").await.unwrap_err();
    assert_eq!(server_code(&err), Some("unknown_badge"));
    assert_eq!(agent.state().state, WorkstationState::Active, "a refused tap leaves alice alone");

    // An answer the agent cannot read: it cannot know what the server did.
    for badge in ["GARBAGE", "WEIRD", "BOOM"] {
        setup.server.with(|m| m.attached = Some(("alice".into(), "x".into())));
        let before = setup.server.with(|m| m.tap_outs);
        let err = agent.handle_tap(badge).await.unwrap_err();
        match badge {
            "BOOM" => assert!(matches!(err, AgentError::Server(ServerError::Unavailable { .. })), "{err}"),
            _ => assert!(matches!(err, AgentError::Server(ServerError::Malformed { status: 200, .. })), "{err}"),
        }
        assert_eq!(agent.state().state, WorkstationState::Locked, "{badge}");
        assert_eq!(setup.server.with(|m| m.tap_outs), before + 1, "the server is told to detach alice");
        agent.handle_tap("ALICE").await.unwrap();
    }
}

#[tokio::test]
async fn an_unreachable_server_keeps_the_workstation_locked_and_recovery_is_automatic() {
    let setup = enrolled().await;
    let agent = Agent::new(config(&setup)).unwrap();
    agent.handle_tap("ALICE").await.unwrap();
    eventually("the first report", || setup.server.with(|m| m.reports.len() == 1)).await;

    setup.server.with(|m| m.down = true);
    let err = agent.handle_tap("CAROL").await.unwrap_err();
    assert!(matches!(err, AgentError::Server(ServerError::Unavailable { .. })), "{err}");
    assert_eq!(agent.state().state, WorkstationState::Locked, "fails closed");
    assert!(agent.server_unreachable());
    let err = agent.handle_tap("ALICE").await.unwrap_err();
    assert!(matches!(err, AgentError::Server(_)));
    assert_eq!(agent.state().state, WorkstationState::Locked);

    setup.server.with(|m| m.down = false);
    eventually("the agent noticing the server is back", || !agent.server_unreachable()).await;
    let info = agent.handle_tap("ALICE").await.unwrap();
    assert_eq!(info.state, WorkstationState::Active);
}

#[tokio::test]
async fn reports_wait_for_the_server_and_are_delivered_later() {
    let setup = enrolled().await;
    let agent = Agent::new(config(&setup)).unwrap();
    agent.handle_tap("ALICE").await.unwrap();
    eventually("the first report", || setup.server.with(|m| m.reports.len() == 1)).await;
    agent.handle_tap("ALICE").await.unwrap();
    // The server stops taking reports: carol is let in at once all the same.
    setup.server.with(|m| m.reports_down = true);
    let info = agent.handle_tap("CAROL").await.unwrap();
    assert_eq!(info.state, WorkstationState::Active);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(agent.pending_reports(), 1);
    assert_eq!(setup.server.with(|m| m.reports.len()), 1);
    setup.server.with(|m| m.reports_down = false);
    eventually("the delayed report", || setup.server.with(|m| m.reports.len() == 2)).await;
    assert_eq!(agent.pending_reports(), 0);
}

#[tokio::test]
async fn no_server_at_all_is_an_unreachable_error() {
    let setup = enrolled().await;
    let mut config = config(&setup);
    config.server = Some("http://127.0.0.1:9".into());
    let agent = Agent::new(config).unwrap();
    let err = agent.handle_tap("ALICE").await.unwrap_err();
    assert!(err.to_string().starts_with("cannot reach the Wardkey server at http://127.0.0.1:9: "), "{err}");
    assert_eq!(agent.state().state, WorkstationState::Locked);
    assert!(agent.server_unreachable());
}

// --- tokens and the broker --------------------------------------------------------

#[tokio::test]
async fn tokens_are_exchanged_cached_and_purged_on_lock() {
    let setup = enrolled().await;
    let agent = Agent::new(config(&setup)).unwrap();
    assert!(matches!(agent.token("epr").await, Err(TokenError::Locked)));
    agent.handle_tap("BOB").await.unwrap();
    assert!(matches!(agent.token("epr").await, Err(TokenError::PinRequired)));
    agent.submit_pin(SecretString::from(PIN)).await.unwrap();

    let first = agent.token("epr").await.unwrap();
    assert_eq!(first.access_token, "at-bob-1");
    let again = agent.token("epr").await.unwrap();
    assert_eq!(again.access_token, "at-bob-1", "served from the cache");
    assert_eq!(setup.server.with(|m| m.exchanges), 1);

    let err = agent.token("unknown-app").await.unwrap_err();
    assert!(matches!(&err, TokenError::Refused(e) if e.code() == Some("invalid_target")), "{err}");

    // A switch purges the cache: carol gets her own token.
    agent.handle_tap("CAROL").await.unwrap();
    assert_eq!(agent.token("epr").await.unwrap().access_token, "at-carol-2");
    // A lock purges it too.
    agent.lock(false).await.unwrap();
    assert!(matches!(agent.token("epr").await, Err(TokenError::Locked)));
}

#[tokio::test]
async fn a_ticket_the_server_no_longer_honours_locks_the_workstation() {
    let setup = enrolled().await;
    let agent = Agent::new(config(&setup)).unwrap();
    let mut events = agent.subscribe();
    agent.handle_tap("ALICE").await.unwrap();
    next_event(&mut events).await;
    // Locked from elsewhere (an admin revoked the session).
    setup.server.with(|m| m.attached = None);
    assert!(matches!(agent.token("epr").await, Err(TokenError::Locked)));
    assert_eq!(agent.state().state, WorkstationState::Locked);
    assert_eq!(next_event(&mut events).await, BrokerEvent::Lock);
}

/// A raw HTTP/1.1 request over the broker socket.
async fn broker_request(path: &Path, method: &str, target: &str, body: &str) -> (u16, String) {
    let mut stream = tokio::net::UnixStream::connect(path).await.unwrap();
    let request = format!(
        "{method} {target} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    let status = raw[9..12].parse().unwrap();
    let body = raw.split_once("\r\n\r\n").unwrap().1.to_string();
    (status, body)
}

#[tokio::test]
async fn the_broker_serves_session_tokens_and_events_over_a_private_socket() {
    let setup = enrolled().await;
    let agent = Agent::new(config(&setup)).unwrap();
    let socket = setup.dir.path().join("broker.sock");
    let shutdown = CancellationToken::new();
    let server = tokio::spawn({
        let (socket, agent, shutdown) = (socket.clone(), agent.clone(), shutdown.clone());
        async move { broker::serve(&socket, agent, wardkey_agent::peer::PeerPolicy::own_user(), shutdown).await }
    });
    eventually("the socket", || socket.exists()).await;
    assert_eq!(std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777, 0o600);

    let info = broker::fetch_session(&socket).await.unwrap();
    assert_eq!(info.state, WorkstationState::Locked);
    assert_eq!(info.workstation, "Bay 3");
    let (status, body) = broker_request(&socket, "POST", "/v1/token", r#"{"client_id":"epr"}"#).await;
    assert_eq!(status, 409);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["error"], "locked");
    let (status, body) = broker_request(&socket, "POST", "/v1/token", "{nope").await;
    assert_eq!(status, 400);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["error"], "invalid_request");

    // Subscribe to events, then unlock.
    let mut sse = tokio::net::UnixStream::connect(&socket).await.unwrap();
    sse.write_all(b"GET /v1/events HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n").await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    // Read the response head before tapping, so the subscription exists.
    let n = tokio::time::timeout(Duration::from_secs(5), sse.read(&mut buf)).await.unwrap().unwrap();
    seen.extend_from_slice(&buf[..n]);
    assert!(String::from_utf8_lossy(&seen).contains("text/event-stream"));
    agent.handle_tap("ALICE").await.unwrap();
    let want = r#"data: {"event":"unlock","user":{"username":"alice","name":"Dr alice"}}"#;
    while !String::from_utf8_lossy(&seen).contains(want) {
        let n = tokio::time::timeout(Duration::from_secs(5), sse.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "stream ended");
        seen.extend_from_slice(&buf[..n]);
    }

    let info = broker::fetch_session(&socket).await.unwrap();
    assert_eq!((info.state, info.user), (WorkstationState::Active, Some(user("alice"))));
    let (status, body) = broker_request(&socket, "POST", "/v1/token", r#"{"client_id":"epr"}"#).await;
    assert_eq!(status, 200, "{body}");
    let token: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(token["access_token"], "at-alice-1");
    assert_eq!(token["id_token"], "id-alice");
    let (status, body) = broker_request(&socket, "POST", "/v1/token", r#"{"client_id":"unknown-app"}"#).await;
    assert_eq!(
        (status, serde_json::from_str::<Value>(&body).unwrap()["error"].clone()),
        (400, json!("invalid_target"))
    );

    // Shutdown ends the event stream and removes the socket.
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), server).await.unwrap().unwrap().unwrap();
    assert!(!socket.exists());
}

// --- the reader loop --------------------------------------------------------------

#[tokio::test]
async fn the_loop_debounces_reads_takes_the_next_line_as_pin_and_locks_on_shutdown() {
    let setup = enrolled().await;
    let out = setup.dir.path().join("hooks.log");
    let agent = agent_with(&setup, |c| {
        c.hooks = HooksConfig {
            on_unlock: Some(format!("echo \"$WARDKEY_EVENT $WARDKEY_USER\" >> {}", out.display())),
            on_lock: Some(format!("echo \"$WARDKEY_EVENT $WARDKEY_USER\" >> {}", out.display())),
            on_switch: Some("exit 1".into()),
        };
    });
    let (tx, badges) = Lines::channel();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn({
        let agent = agent.clone();
        let shutdown = shutdown.clone();
        async move { agent.run(badges, PinSource::reader(), shutdown).await }
    });

    // A held card repeats its UID: one tap, so alice is not locked again.
    for _ in 0..3 {
        tx.send("ALICE".into()).await.unwrap();
    }
    eventually("alice active", || agent.state().state == WorkstationState::Active).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(agent.state().state, WorkstationState::Active);
    assert_eq!(setup.server.with(|m| m.paths.len()), 1, "one tap reached the server");

    // Bob taps; the next line is his PIN (a repeat of his UID is skipped).
    tx.send("BOB".into()).await.unwrap();
    tx.send("BOB".into()).await.unwrap();
    tx.send("0000".into()).await.unwrap();
    tx.send(PIN.into()).await.unwrap();
    eventually("bob active", || agent.state().user.is_some_and(|u| u.username == "bob")).await;
    assert_eq!(agent.state().state, WorkstationState::Active);

    // A failing switch hook is only logged; stopping locks and tells the server.
    eventually("the hooks so far", || std::fs::read_to_string(&out).is_ok_and(|s| s.lines().count() == 2)).await;
    let outs = setup.server.with(|m| m.tap_outs);
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), run).await.unwrap().unwrap();
    assert_eq!(agent.state().state, WorkstationState::Locked);
    assert_eq!(setup.server.with(|m| m.tap_outs), outs + 1);
    let log = std::fs::read_to_string(&out).unwrap();
    assert!(log.starts_with("unlock alice\nlock alice\n"), "{log}");
    assert!(log.ends_with("lock bob\n"), "{log}");
}

#[tokio::test]
async fn the_loop_locks_after_the_idle_timeout_and_lapses_pin_prompts() {
    let setup = enrolled().await;
    let agent = agent_with(&setup, |c| c.idle_timeout = Duration::from_millis(400));
    let (tx, badges) = Lines::channel();
    let shutdown = CancellationToken::new();
    tokio::spawn({
        let agent = agent.clone();
        let shutdown = shutdown.clone();
        async move { agent.run(badges, PinSource::reader(), shutdown).await }
    });
    tx.send("ALICE".into()).await.unwrap();
    eventually("alice active", || agent.state().state == WorkstationState::Active).await;
    let outs = setup.server.with(|m| m.tap_outs);
    eventually("the idle lock", || agent.state().state == WorkstationState::Locked).await;
    eventually("the tap-out", || setup.server.with(|m| m.tap_outs) == outs + 1).await;
    shutdown.cancel();
}

#[tokio::test]
async fn garbage_from_the_reader_never_stops_the_loop() {
    let setup = enrolled().await;
    let agent = agent_with(&setup, |_| {});
    let input = b"\xff\xfe\n\x1b[A\n\n   \nNOBODY\nGARBAGE\nALICE\n".to_vec();
    let badges = Lines::from_reader("test", std::io::Cursor::new(input)).unwrap();
    let shutdown = CancellationToken::new();
    tokio::spawn({
        let agent = agent.clone();
        let shutdown = shutdown.clone();
        async move { agent.run(badges, PinSource::reader(), shutdown).await }
    });
    eventually("alice active after the garbage", || agent.state().state == WorkstationState::Active).await;
    shutdown.cancel();
}

#[tokio::test]
async fn tapping_the_same_badge_at_a_pin_prompt_is_a_new_tap_not_a_wrong_pin() {
    let setup = enrolled().await;
    let agent = agent_with(&setup, |c| c.debounce = Duration::from_millis(50));
    let (tx, badges) = Lines::channel();
    let shutdown = CancellationToken::new();
    tokio::spawn({
        let agent = agent.clone();
        let shutdown = shutdown.clone();
        async move { agent.run(badges, PinSource::reader(), shutdown).await }
    });
    tx.send("BOB".into()).await.unwrap();
    eventually("the PIN prompt", || agent.state().state == WorkstationState::PinRequired).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    tx.send("BOB".into()).await.unwrap();
    eventually("the second tap", || setup.server.with(|m| m.paths.len()) == 2).await;
    tx.send(PIN.into()).await.unwrap();
    eventually("bob active", || agent.state().state == WorkstationState::Active).await;
    shutdown.cancel();
}
