//! The tap protocol end to end at the HTTP level, with a test workstation
//! that signs requests exactly as the agent does: first tap and PIN, lock,
//! resume within the PIN grace, switch, PIN lockout, refusals, token
//! exchange, handoff, cloned-badge alerts and back-channel logout.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use wardkey_core::client::GrantType;
use wardkey_core::clock::Clock;
use wardkey_core::keys::SigningAlg;
use wardkey_core::secret::{digest, random_token};
use wardkey_proto::signer::{Signer, WorkstationKey};
use wardkey_proto::tap::{
    EnrolRequest, EnrolResponse, JOSE_CONTENT_TYPE, SESSION_TICKET_TOKEN_TYPE, TOKEN_EXCHANGE_GRANT,
};
use wardkey_store::CredentialKind;

use crate::helpers::*;

use wardkey_testsupport::fixtures::{self, PIN};

/// A workstation as the agent is one: the agent's own signer and an id.
pub struct TestWorkstation {
    pub id: String,
    signer: Signer,
}

impl TestWorkstation {
    /// Create a workstation on `ward` and enrol it through `POST /tap/enrol`.
    pub async fn enrol(app: &TestApp, name: &str, ward: &str) -> Self {
        let code = wardkey_core::workstation::enrolment_code();
        let ws = fixtures::workstation(name, ward, app.clock.now());
        let code_digest = digest(&wardkey_core::workstation::normalise_code(&code));
        app.state.store.create_workstation(&ws, &code_digest, app.clock.now() + 3600).await.unwrap();
        let (key, _) = WorkstationKey::generate().unwrap();
        let request = EnrolRequest { code: code.to_lowercase(), public_key: key.public_key_b64() };
        let r = app.http.post(app.url("/tap/enrol")).json(&request).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let enrolled: EnrolResponse = r.json().await.unwrap();
        assert_eq!(enrolled.workstation_id, ws.id);
        // The code worked once.
        let again = app.http.post(app.url("/tap/enrol")).json(&request).send().await.unwrap();
        assert_eq!(again.status(), 410);
        Self::with_key(ws.id, key)
    }

    /// Workstation `id` signing with `key` (enrolled or not).
    pub fn with_key(id: String, key: WorkstationKey) -> Self {
        // The issuer goes into no request signed through `sign`.
        Self { signer: Signer::new(key, id.clone(), ""), id }
    }

    /// A compact EdDSA JWS over `claims` with header `typ`.
    pub fn sign(&self, typ: &str, claims: &Value) -> String {
        self.signer.sign(typ, claims).unwrap()
    }

    /// The envelope claims for `action` at the app's current time.
    pub fn envelope(&self, app: &TestApp, action: Value) -> Value {
        let mut claims = json!({"iss": self.id, "aud": app.issuer, "jti": random_token(16), "iat": app.clock.now()});
        claims.as_object_mut().unwrap().extend(action.as_object().unwrap().clone());
        claims
    }

    /// POST a signed tap request.
    pub async fn send(&self, app: &TestApp, path: &str, action: Value) -> reqwest::Response {
        let jws = self.sign("wardkey-tap+jwt", &self.envelope(app, action));
        post_jws(app, path, jws).await
    }

    /// POST a signed request and decode a 200 answer.
    pub async fn call(&self, app: &TestApp, path: &str, action: Value) -> Value {
        let r = self.send(app, path, action).await;
        assert_eq!(r.status(), 200, "{path}");
        r.json().await.unwrap()
    }

    /// Token exchange for `audience` with `ticket`.
    pub async fn exchange(&self, app: &TestApp, ticket: &str, audience: &str) -> reqwest::Response {
        self.exchange_at(app, &app.base, ticket, audience).await
    }

    /// [`TestWorkstation::exchange`] sent to the server at `base`, which
    /// serves `app`'s issuer.
    pub async fn exchange_at(&self, app: &TestApp, base: &str, ticket: &str, audience: &str) -> reqwest::Response {
        let now = app.clock.now();
        let assertion = self.sign(
            "JWT",
            &json!({"iss": self.id, "sub": self.id, "aud": format!("{}/token", app.issuer), "jti": random_token(16), "iat": now, "exp": now + 60}),
        );
        let form = [
            ("grant_type", TOKEN_EXCHANGE_GRANT),
            ("client_id", &self.id),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ("client_assertion", &assertion),
            ("subject_token", ticket),
            ("subject_token_type", SESSION_TICKET_TOKEN_TYPE),
            ("audience", audience),
        ];
        app.http.post(format!("{base}/token")).form(&form).send().await.unwrap()
    }
}

pub async fn post_jws(app: &TestApp, path: &str, jws: String) -> reqwest::Response {
    app.http.post(app.url(path)).header("content-type", JOSE_CONTENT_TYPE).body(jws).send().await.unwrap()
}

/// Give `username` a badge with `uid` and the PIN [`PIN`].
pub async fn enrol_badge(app: &TestApp, username: &str, uid: &str) {
    let user = app.add_user(username).await;
    let badge = fixtures::badge(&app.state.badge_key, uid, &user.id, app.clock.now());
    app.state.store.add_badge(&badge).await.unwrap();
    let hash = wardkey_core::password::hash(&app.state.settings.password.argon2(), PIN).unwrap();
    app.state.store.set_credential(&user.id, CredentialKind::Pin, &hash, app.clock.now()).await.unwrap();
}

/// First tap and PIN: returns the session ticket.
pub async fn tap_in(app: &TestApp, ws: &TestWorkstation, uid: &str) -> String {
    let answer = ws.call(app, "/tap", json!({"badge": uid})).await;
    assert_eq!(answer["state"], "pin_required", "{answer}");
    let answer = ws.call(app, "/tap/pin", json!({"tap_id": answer["tap_id"], "pin": PIN})).await;
    assert!(matches!(answer["state"].as_str(), Some("active" | "switched")), "{answer}");
    answer["session_ticket"].as_str().unwrap().to_string()
}

async fn error_code(r: reqwest::Response, status: u16) -> String {
    assert_eq!(r.status(), status);
    let body: Value = r.json().await.unwrap();
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    body["error"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn pin_once_then_lock_resume_switch_and_grace() {
    let app = spawn_app().await;
    enrol_badge(&app, "alice", "04:A2:3B:1C").await;
    enrol_badge(&app, "bob", "04B0B0B0").await;
    let ws = TestWorkstation::enrol(&app, "w4-pc1", "Ward 4").await;

    // First tap of the shift: PIN, then active.
    tap_in(&app, &ws, "04a23b1c").await;
    // The same clinician taps again: lock.
    assert_eq!(ws.call(&app, "/tap", json!({"badge": "04A23B1C"})).await["state"], "locked");
    // And again, within the PIN grace: straight in, no PIN.
    let answer = ws.call(&app, "/tap", json!({"badge": "04 A2 3B 1C"})).await;
    assert_eq!(answer["state"], "active", "{answer}");
    assert_eq!(answer["user"]["username"], "alice");
    // Another clinician: PIN (first tap of their shift), then switched.
    let answer = ws.call(&app, "/tap", json!({"badge": "04B0B0B0"})).await;
    assert_eq!(answer["state"], "pin_required");
    let answer = ws.call(&app, "/tap/pin", json!({"tap_id": answer["tap_id"], "pin": PIN})).await;
    assert_eq!(answer["state"], "switched", "{answer}");
    assert_eq!(answer["previous"]["username"], "alice");
    // Alice's session lives on: at another PC she is in without a PIN.
    let ws2 = TestWorkstation::enrol(&app, "w4-pc2", "Ward 4").await;
    assert_eq!(ws2.call(&app, "/tap", json!({"badge": "04A23B1C"})).await["state"], "active");
    // After the PIN grace (4 h by default) a PIN is needed again.
    app.clock.advance(4 * 3600 + 60);
    assert_eq!(ws.call(&app, "/tap", json!({"badge": "04A23B1C"})).await["state"], "pin_required");
    // Tap-out locks without ending the session.
    assert_eq!(ws2.call(&app, "/tap/out", json!({"logout": false})).await["state"], "locked");
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("wardkey_taps_total{kind=\"switched\"} 1"), "{metrics}");
}

#[tokio::test]
async fn five_wrong_pins_lock_the_badge_until_a_password_login() {
    let app = spawn_app().await;
    enrol_badge(&app, "carol", "C0C0").await;
    let ws = TestWorkstation::enrol(&app, "pc", "ICU").await;
    let answer = ws.call(&app, "/tap", json!({"badge": "C0C0"})).await;
    let tap_id = answer["tap_id"].clone();
    for remaining in (1..5).rev() {
        let r = ws.send(&app, "/tap/pin", json!({"tap_id": tap_id, "pin": "000000"})).await;
        assert_eq!(r.status(), 401);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "wrong_pin");
        assert!(body["message"].as_str().unwrap().contains(&format!("{remaining} attempts")), "{body}");
    }
    let r = ws.send(&app, "/tap/pin", json!({"tap_id": tap_id, "pin": "000000"})).await;
    assert_eq!(error_code(r, 403).await, "badge_locked");
    // Even the right PIN and a fresh tap are refused now.
    let r = ws.send(&app, "/tap", json!({"badge": "C0C0"})).await;
    assert_eq!(error_code(r, 403).await, "badge_locked");
    // A password sign-in unlocks the badge; it is no PIN check, so the next
    // tap asks for the PIN, and the right one now works.
    let secret = app.add_epr("epr").await;
    login_and_redeem(&app, "epr", &secret, "carol").await;
    tap_in(&app, &ws, "C0C0").await;
}

#[tokio::test]
async fn hostile_and_stale_tap_requests_are_refused() {
    let app = spawn_app().await;
    enrol_badge(&app, "dan", "D0D0").await;
    let ws = TestWorkstation::enrol(&app, "pc", "ED").await;

    // Replay: the same signed request twice.
    let jws = ws.sign("wardkey-tap+jwt", &ws.envelope(&app, json!({"badge": "D0D0"})));
    assert_eq!(post_jws(&app, "/tap", jws.clone()).await.status(), 200);
    assert_eq!(error_code(post_jws(&app, "/tap", jws).await, 409).await, "replayed");
    // Stale iat.
    let mut claims = ws.envelope(&app, json!({"badge": "D0D0"}));
    claims["iat"] = json!(app.clock.now() - 3600);
    assert_eq!(error_code(post_jws(&app, "/tap", ws.sign("wardkey-tap+jwt", &claims)).await, 400).await, "stale");
    // Forged: signed by a key the server does not know, claiming this id.
    let forger = TestWorkstation::with_key(ws.id.clone(), WorkstationKey::generate().unwrap().0);
    let r = forger.send(&app, "/tap", json!({"badge": "D0D0"})).await;
    assert_eq!(error_code(r, 401).await, "invalid_signature");
    // alg none.
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(json!({"alg": "none", "kid": ws.id, "typ": "wardkey-tap+jwt"}).to_string()),
        URL_SAFE_NO_PAD.encode(ws.envelope(&app, json!({"badge": "D0D0"})).to_string())
    );
    assert_eq!(error_code(post_jws(&app, "/tap", none).await, 401).await, "invalid_signature");
    // Garbage bodies.
    for body in ["", "not a jws", "a.b.c", "\u{0}\u{1}"] {
        assert_eq!(post_jws(&app, "/tap", body.to_string()).await.status(), 400, "{body:?}");
    }
    // Missing field in the action.
    assert_eq!(error_code(ws.send(&app, "/tap", json!({"badj": "D0D0"})).await, 400).await, "invalid_request");
    // Unknown badge.
    assert_eq!(error_code(ws.send(&app, "/tap", json!({"badge": "FFFF"})).await, 404).await, "unknown_badge");
    // Revoked badge.
    let user = app.state.store.user_by_username("dan").await.unwrap().unwrap();
    app.state.store.revoke_user_badges(&user.id).await.unwrap();
    app.sync_directory().await;
    assert_eq!(error_code(ws.send(&app, "/tap", json!({"badge": "D0D0"})).await, 404).await, "unknown_badge");
    // Disabled user.
    enrol_badge(&app, "erin", "E0E0").await;
    app.state.store.set_user_disabled("erin", true, app.clock.now()).await.unwrap();
    app.sync_directory().await;
    assert_eq!(error_code(ws.send(&app, "/tap", json!({"badge": "E0E0"})).await, 403).await, "user_disabled");
    // Disabled workstation: refused at once.
    enrol_badge(&app, "fay", "F0F0").await;
    app.state.store.set_workstation_enabled("pc", false).await.unwrap();
    app.sync_directory().await;
    let r = ws.send(&app, "/tap", json!({"badge": "F0F0"})).await;
    assert_eq!(error_code(r, 403).await, "workstation_disabled");
    // A bad enrolment code.
    let r = app
        .http
        .post(app.url("/tap/enrol"))
        .json(&json!({"code": "AAAA-BBBB-CCCC", "public_key": URL_SAFE_NO_PAD.encode([7u8; 32])}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 410).await, "expired");
    let r = app.http.post(app.url("/tap/enrol")).body("{").send().await.unwrap();
    assert_eq!(error_code(r, 400).await, "invalid_request");
}

fn jwks_key(jwks: &Value, kid: &str) -> jsonwebtoken::DecodingKey {
    let jwk = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == kid).expect("kid in /jwks");
    jsonwebtoken::DecodingKey::from_jwk(&serde_json::from_value(jwk.clone()).unwrap()).unwrap()
}

#[tokio::test]
async fn token_exchange_serves_the_clinician_at_the_keyboard() {
    let app = spawn_app().await;
    enrol_badge(&app, "gail", "6A11").await;
    enrol_badge(&app, "hal", "4A11").await;
    app.add_client("epr", Auth::Secret, &[GrantType::TokenExchange], SigningAlg::ES256).await;
    app.add_epr("not-for-exchange").await;
    let ws = TestWorkstation::enrol(&app, "pc", "Ward 9").await;
    let ticket = tap_in(&app, &ws, "6A11").await;

    let r = ws.exchange(&app, &ticket, "epr").await;
    assert_eq!(r.status(), 200);
    let tokens: Value = r.json().await.unwrap();
    assert_eq!(tokens["issued_token_type"], "urn:ietf:params:oauth:token-type:access_token");
    let jwks: Value = app.get("/jwks").await.json().await.unwrap();
    let access = tokens["access_token"].as_str().unwrap();
    let header = jsonwebtoken::decode_header(access).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&["epr"]);
    validation.set_issuer(&[&app.base]);
    let claims = jsonwebtoken::decode::<Value>(access, &jwks_key(&jwks, header.kid.as_deref().unwrap()), &validation)
        .unwrap()
        .claims;
    let gail = app.state.store.user_by_username("gail").await.unwrap().unwrap();
    assert_eq!(claims["sub"], gail.id);
    assert_eq!(claims["acr"], "urn:wardkey:acr:badge-pin");
    assert_eq!(claims["amr"], json!(["badge", "pin"]));
    let id_token = tokens["id_token"].as_str().unwrap();
    let id_claims = jsonwebtoken::decode::<Value>(
        id_token,
        &jwks_key(&jwks, jsonwebtoken::decode_header(id_token).unwrap().kid.as_deref().unwrap()),
        &validation,
    )
    .unwrap()
    .claims;
    assert_eq!(id_claims["sub"], gail.id);

    // Refusals: a client not registered for exchange, another workstation's
    // use of the ticket, a garbage ticket.
    let r = ws.exchange(&app, &ticket, "not-for-exchange").await;
    assert_oauth_error(r, 400, "invalid_target").await;
    let other = TestWorkstation::enrol(&app, "pc2", "Ward 9").await;
    assert_oauth_error(other.exchange(&app, &ticket, "epr").await, 400, "invalid_grant").await;
    assert_oauth_error(ws.exchange(&app, "garbage", "epr").await, 400, "invalid_grant").await;

    // After a switch the old ticket is dead and the new one is Hal's.
    let hal_ticket = tap_in(&app, &ws, "4A11").await;
    assert_oauth_error(ws.exchange(&app, &ticket, "epr").await, 400, "invalid_grant").await;
    let tokens: Value = ws.exchange(&app, &hal_ticket, "epr").await.json().await.unwrap();
    let hal = app.state.store.user_by_username("hal").await.unwrap().unwrap();
    let claims = jsonwebtoken::decode::<Value>(
        tokens["access_token"].as_str().unwrap(),
        &jwks_key(
            &jwks,
            jsonwebtoken::decode_header(tokens["access_token"].as_str().unwrap()).unwrap().kid.as_deref().unwrap(),
        ),
        &validation,
    )
    .unwrap()
    .claims;
    assert_eq!(claims["sub"], hal.id);
}

#[tokio::test]
async fn handoff_link_opens_the_browser_once() {
    let app = spawn_app().await;
    enrol_badge(&app, "ivy", "1717").await;
    app.add_client("webepr", Auth::Secret, &[GrantType::AuthorizationCode], SigningAlg::ES256).await;
    let client = app.state.store.client("webepr").await.unwrap().unwrap();
    app.state.store.remove_client("webepr").await.unwrap();
    app.state
        .store
        .create_client(&wardkey_core::client::Client { start_url: Some("https://epr.example/start".into()), ..client })
        .await
        .unwrap();
    let ws = TestWorkstation::enrol(&app, "pc", "Ward 2").await;
    tap_in(&app, &ws, "1717").await;
    let handoff = ws.call(&app, "/tap/handoff", json!({"client_id": "webepr"})).await;
    let url = handoff["url"].as_str().unwrap();

    let browser = no_redirects(true);
    let r = browser.get(url).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "https://epr.example/start");
    // The EPR's own OIDC flow now completes silently in that browser.
    let (authorize, _) = authorize_url(&app, "webepr", &[("prompt", "none")]);
    let back = url::Url::parse(&location(&browser.get(authorize).send().await.unwrap())).unwrap();
    assert!(query_param(&back, "code").is_some(), "{back}");
    // Once only.
    assert_eq!(no_redirects(true).get(url).send().await.unwrap().status(), 400);
    // No start URL registered: a clear refusal.
    let r = ws.send(&app, "/tap/handoff", json!({"client_id": "nosuch"})).await;
    assert_eq!(error_code(r, 400).await, "invalid_request");

    // The clinician taps out (lock): the browser's sign-in ends with the
    // attachment, so the next clinician's web EPR does not open as Ivy.
    assert_eq!(ws.call(&app, "/tap", json!({"badge": "1717"})).await["state"], "locked");
    let (authorize, _) = authorize_url(&app, "webepr", &[("prompt", "none")]);
    let back = url::Url::parse(&location(&browser.get(&authorize).send().await.unwrap())).unwrap();
    assert_eq!(query_param(&back, "error").as_deref(), Some("login_required"), "{back}");
    // Tapping back in makes a new attachment: the old browser stays out.
    assert_eq!(ws.call(&app, "/tap", json!({"badge": "1717"})).await["state"], "active");
    let back = url::Url::parse(&location(&browser.get(&authorize).send().await.unwrap())).unwrap();
    assert_eq!(query_param(&back, "error").as_deref(), Some("login_required"), "{back}");
    // A switch to another clinician ends a new handoff's browser too.
    let handoff = ws.call(&app, "/tap/handoff", json!({"client_id": "webepr"})).await;
    let second = no_redirects(true);
    assert_eq!(second.get(handoff["url"].as_str().unwrap()).send().await.unwrap().status(), 303);
    let back = url::Url::parse(&location(&second.get(&authorize).send().await.unwrap())).unwrap();
    assert!(query_param(&back, "code").is_some(), "{back}");
    enrol_badge(&app, "jay", "1818").await;
    tap_in(&app, &ws, "1818").await;
    let back = url::Url::parse(&location(&second.get(&authorize).send().await.unwrap())).unwrap();
    assert_eq!(query_param(&back, "error").as_deref(), Some("login_required"), "{back}");
}

#[tokio::test]
async fn one_badge_on_two_wards_raises_a_cloned_badge_alert() {
    let app = spawn_app().await;
    enrol_badge(&app, "jo", "ABCD").await;
    let a = TestWorkstation::enrol(&app, "a", "Ward A").await;
    let b = TestWorkstation::enrol(&app, "b", "Ward B").await;
    a.call(&app, "/tap", json!({"badge": "ABCD"})).await;
    b.call(&app, "/tap", json!({"badge": "ABCD"})).await;
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("wardkey_cloned_badge_suspected_total 1"), "{metrics}");
    let audit = app.state.store.recent_audit(10).await.unwrap();
    assert!(audit.iter().any(|e| e.event == "badge.cloned_suspected"));
}

/// A relying party's back-channel logout endpoint: records logout tokens,
/// answering 503 to the first `fail_first` deliveries.
pub(crate) struct TestRp {
    pub(crate) uri: String,
    received: Arc<Mutex<Vec<String>>>,
}

/// What the test RP shares between requests.
#[derive(Clone, Default)]
struct RpState {
    received: Arc<Mutex<Vec<String>>>,
    attempts: Arc<Mutex<usize>>,
}

pub(crate) async fn spawn_rp(fail_first: usize) -> TestRp {
    use axum::extract::State;
    let state = RpState::default();
    let received = state.received.clone();
    let handler = move |State(rp): State<RpState>,
                        axum::Form(form): axum::Form<std::collections::HashMap<String, String>>| async move {
        let mut n = rp.attempts.lock().unwrap();
        *n += 1;
        if *n <= fail_first {
            return axum::http::StatusCode::SERVICE_UNAVAILABLE;
        }
        rp.received.lock().unwrap().push(form.get("logout_token").cloned().unwrap_or_default());
        axum::http::StatusCode::OK
    };
    let app = axum::Router::new().route("/bcl", axum::routing::post(handler)).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let uri = format!("http://{}/bcl", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    TestRp { uri, received }
}

pub(crate) async fn add_bcl_client(app: &TestApp, id: &str, uri: &str) {
    app.add_client(id, Auth::Secret, &[GrantType::TokenExchange], SigningAlg::ES256).await;
    let client = app.state.store.client(id).await.unwrap().unwrap();
    app.state.store.remove_client(id).await.unwrap();
    let client = wardkey_core::client::Client { backchannel_logout_uri: Some(uri.into()), ..client };
    app.state.store.create_client(&client).await.unwrap();
}

/// Wait (bounded) for the RP to hold `n` tokens, moving the server clock so
/// retries come due.
pub(crate) async fn wait_for_tokens(app: &TestApp, rp: &TestRp, n: usize) -> Vec<String> {
    for _ in 0..100 {
        let got = rp.received.lock().unwrap().clone();
        if got.len() >= n {
            return got;
        }
        app.clock.advance(1);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the RP did not receive {n} logout tokens");
}

#[tokio::test]
async fn back_channel_logout_on_tap_out_and_admin_revoke_with_retries() {
    let app = spawn_app().await;
    let rp = spawn_rp(2).await;
    add_bcl_client(&app, "epr", &rp.uri).await;
    enrol_badge(&app, "kim", "4B1D").await;
    let ws = TestWorkstation::enrol(&app, "pc", "Ward 7").await;
    let kim = app.state.store.user_by_username("kim").await.unwrap().unwrap();

    // Tap-out with logout: the RP is down for two attempts, then gets it.
    let ticket = tap_in(&app, &ws, "4B1D").await;
    assert_eq!(ws.exchange(&app, &ticket, "epr").await.status(), 200);
    assert_eq!(ws.call(&app, "/tap/out", json!({"logout": true})).await["state"], "logged_out");
    let tokens = wait_for_tokens(&app, &rp, 1).await;
    let jwks: Value = app.get("/jwks").await.json().await.unwrap();
    let header = jsonwebtoken::decode_header(&tokens[0]).unwrap();
    assert_eq!(header.typ.as_deref(), Some("logout+jwt"));
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&["epr"]);
    validation.set_issuer(&[&app.base]);
    validation.validate_exp = false; // the test moved the server clock
    let claims =
        jsonwebtoken::decode::<Value>(&tokens[0], &jwks_key(&jwks, header.kid.as_deref().unwrap()), &validation)
            .unwrap()
            .claims;
    assert_eq!(claims["sub"], kim.id);
    assert!(claims["sid"].is_string());
    assert!(claims.get("nonce").is_none());
    assert_eq!(claims["events"], json!({"http://schemas.openid.net/event/backchannel-logout": {}}));
    assert!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap() <= 120);
    // The session is gone: the next tap needs a PIN.
    assert_eq!(ws.call(&app, "/tap", json!({"badge": "4B1D"})).await["state"], "pin_required");

    // Admin revoke (what `wardkey session revoke` asks for through the store).
    let ticket = tap_in(&app, &ws, "4B1D").await;
    assert_eq!(ws.exchange(&app, &ticket, "epr").await.status(), 200);
    app.state.store.request_session_revocation(&kim.id, app.clock.now()).await.unwrap();
    let tokens = wait_for_tokens(&app, &rp, 2).await;
    assert_ne!(tokens[0], tokens[1]);
    assert_oauth_error(ws.exchange(&app, &ticket, "epr").await, 400, "invalid_grant").await;
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("wardkey_backchannel_logout_failures_total 2"), "{metrics}");
}

#[tokio::test]
async fn back_channel_logout_when_a_session_expires_and_only_once() {
    let app = spawn_app().await;
    let rp = spawn_rp(0).await;
    add_bcl_client(&app, "epr", &rp.uri).await;
    enrol_badge(&app, "lee", "1EE1").await;
    let ws = TestWorkstation::enrol(&app, "pc", "Ward 8").await;
    let ticket = tap_in(&app, &ws, "1EE1").await;
    assert_eq!(ws.exchange(&app, &ticket, "epr").await.status(), 200);
    assert_eq!(ws.exchange(&app, &ticket, "epr").await.status(), 200);

    // While the session lives nothing is sent.
    app.clock.advance(60);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(rp.received.lock().unwrap().is_empty());

    // Past the session's maximum lifetime (13 h) the RP is told, once.
    app.clock.advance(13 * 3600);
    let tokens = wait_for_tokens(&app, &rp, 1).await;
    assert_eq!(tokens.len(), 1);
    app.clock.advance(3 * 3600);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(rp.received.lock().unwrap().len(), 1, "one logout token per session and RP");
}

#[tokio::test]
async fn self_enrolment_is_off_by_default_and_audited_when_on() {
    let app = spawn_app().await;
    app.add_user("mo").await;
    let ws = TestWorkstation::enrol(&app, "pc", "Ward 11").await;
    let r = ws.send(&app, "/tap/self-enrol", json!({"badge": "5E1F", "username": "mo", "password": PASSWORD})).await;
    assert_eq!(error_code(r, 403).await, "not_allowed");

    let app = TestApp::builder().settings(|s| s.tap.self_enrolment = true).spawn().await;
    app.add_user("mo").await;
    let ws = TestWorkstation::enrol(&app, "pc", "Ward 11").await;
    assert_eq!(error_code(ws.send(&app, "/tap", json!({"badge": "5E1F"})).await, 404).await, "unknown_badge");
    let wrong = ws.send(&app, "/tap/self-enrol", json!({"badge": "5E1F", "username": "mo", "password": "nope"})).await;
    assert_eq!(error_code(wrong, 401).await, "wrong_password");
    let unknown =
        ws.send(&app, "/tap/self-enrol", json!({"badge": "5E1F", "username": "ghost", "password": "x"})).await;
    assert_eq!(error_code(unknown, 401).await, "wrong_password", "no user enumeration");
    // The right password enrols the badge and signs the clinician in.
    let answer =
        ws.call(&app, "/tap/self-enrol", json!({"badge": "5E1F", "username": "mo", "password": PASSWORD})).await;
    assert_eq!(answer["state"], "active", "{answer}");
    assert_eq!(answer["user"]["username"], "mo");
    assert!(app.state.store.recent_audit(20).await.unwrap().iter().any(|e| e.event == "badge.self_enrol"));
    // From now on the badge works like any other; it cannot be enrolled twice.
    assert_eq!(ws.call(&app, "/tap", json!({"badge": "5E1F"})).await["state"], "locked");
    assert_eq!(ws.call(&app, "/tap", json!({"badge": "5E1F"})).await["state"], "active");
    let again =
        ws.send(&app, "/tap/self-enrol", json!({"badge": "5e1f", "username": "mo", "password": PASSWORD})).await;
    assert_eq!(error_code(again, 400).await, "invalid_request");
}

#[tokio::test]
async fn changes_made_behind_the_servers_back_apply_within_the_directory_poll() {
    let app = spawn_app().await;
    enrol_badge(&app, "ola", "0101").await;
    let ws = TestWorkstation::enrol(&app, "pc", "Ward 12").await;
    assert_eq!(ws.call(&app, "/tap", json!({"badge": "0101"})).await["state"], "pin_required");
    // As the CLI or another node would: straight into the store.
    app.state.store.set_workstation_enabled("pc", false).await.unwrap();
    let started = std::time::Instant::now();
    loop {
        let r = ws.send(&app, "/tap", json!({"badge": "0101"})).await;
        if r.status() == 403 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "the server never noticed the disabled workstation");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn workstation_assertions_at_the_token_endpoint_are_single_use_and_timely() {
    let app = spawn_app().await;
    enrol_badge(&app, "pat", "9A7A").await;
    app.add_client("epr", Auth::Secret, &[GrantType::TokenExchange], SigningAlg::ES256).await;
    let ws = TestWorkstation::enrol(&app, "pc", "Ward 13").await;
    let ticket = tap_in(&app, &ws, "9A7A").await;
    let exchange_with = |assertion: String| {
        let (app, ws, ticket) = (&app, &ws, ticket.clone());
        async move {
            app.post_form(
                "/token",
                &[
                    ("grant_type", TOKEN_EXCHANGE_GRANT),
                    ("client_id", &ws.id),
                    ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                    ("client_assertion", &assertion),
                    ("subject_token", &ticket),
                    ("subject_token_type", SESSION_TICKET_TOKEN_TYPE),
                    ("audience", "epr"),
                ],
                None,
            )
            .await
        }
    };
    let now = app.clock.now();
    let claims = |jti: &str, exp: i64| json!({"iss": ws.id, "sub": ws.id, "aud": format!("{}/token", app.issuer), "jti": jti, "iat": now, "exp": exp});
    let once = ws.sign("JWT", &claims("assertion-0000001", now + 60));
    assert_eq!(exchange_with(once.clone()).await.status(), 200);
    assert_oauth_error(exchange_with(once).await, 401, "invalid_client").await;
    let stale = ws.sign("JWT", &claims("assertion-0000002", now - 120));
    assert_oauth_error(exchange_with(stale).await, 401, "invalid_client").await;
    let far = ws.sign("JWT", &claims("assertion-0000003", now + 7200));
    assert_oauth_error(exchange_with(far).await, 401, "invalid_client").await;
}

#[tokio::test]
async fn a_tap_on_a_session_that_idled_out_asks_for_the_pin_and_leaves_the_workstation_alone() {
    let app = spawn_app().await;
    enrol_badge(&app, "kim", "4B11").await;
    enrol_badge(&app, "lee", "1EE1").await;
    app.add_client("epr", Auth::Secret, &[GrantType::TokenExchange], SigningAlg::ES256).await;
    let pc1 = TestWorkstation::enrol(&app, "pc1", "Ward 2").await;
    let pc2 = TestWorkstation::enrol(&app, "pc2", "Ward 2").await;
    tap_in(&app, &pc1, "4B11").await;
    let lee_ticket = tap_in(&app, &pc2, "1EE1").await;
    // Kim's session idles out in the cache while still within the PIN
    // grace by the clock: her index entry says "recent", the session is gone.
    let kim = app.state.store.user_by_username("kim").await.unwrap().unwrap();
    let session = app.state.sessions.latest_session(&kim.id).await.unwrap().unwrap();
    app.state.cache.delete(&wardkey_idp::kv::keys::session(&session.sid)).await.unwrap();

    let answer = pc2.call(&app, "/tap", json!({"badge": "4B11"})).await;
    assert_eq!(answer["state"], "pin_required", "{answer}");
    // Nothing was attached for the dead session: Lee is still at pc2.
    assert_eq!(pc2.exchange(&app, &lee_ticket, "epr").await.status(), 200);
    let answer = pc2.call(&app, "/tap/pin", json!({"tap_id": answer["tap_id"], "pin": PIN})).await;
    assert_eq!(answer["state"], "switched", "{answer}");
    assert_eq!(answer["previous"]["username"], "lee");
    assert_oauth_error(pc2.exchange(&app, &lee_ticket, "epr").await, 400, "invalid_grant").await;
}

#[tokio::test]
async fn apps_opened_at_once_are_all_told_of_the_logout() {
    // The first tokens for each app in a session list the app for logout;
    // four apps opened in the same instant must all be listed.
    let app = spawn_app().await;
    let rps = [spawn_rp(0).await, spawn_rp(0).await, spawn_rp(0).await, spawn_rp(0).await];
    let ids = ["epr-a", "epr-b", "epr-c", "epr-d"];
    for (id, rp) in ids.iter().zip(&rps) {
        add_bcl_client(&app, id, &rp.uri).await;
    }
    enrol_badge(&app, "mo", "3011").await;
    let ws = TestWorkstation::enrol(&app, "pc", "Ward 10").await;
    let ticket = tap_in(&app, &ws, "3011").await;
    let opened = futures_util::future::join_all(ids.iter().map(|id| ws.exchange(&app, &ticket, id))).await;
    assert!(opened.iter().all(|r| r.status() == 200));
    assert_eq!(ws.call(&app, "/tap/out", json!({"logout": true})).await["state"], "logged_out");
    for rp in &rps {
        wait_for_tokens(&app, rp, 1).await;
    }
}

/// Issue 12's PIN lockout attack, as it was made: a skimmed badge UID and
/// one workstation key. Thirty taps open thirty PIN prompts, 29 wrong PINs
/// are sent at once, and the right PIN 50 ms later. However many are in
/// flight, at most five guesses are ever judged; the right PIN is refused
/// and the badge is locked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_pin_guesses_at_once_are_judged_at_most_five_times() {
    let app = spawn_app().await;
    enrol_badge(&app, "flo", "F10F").await;
    let ws = TestWorkstation::enrol(&app, "pc", "Ward 9").await;
    let mut prompts = Vec::new();
    for _ in 0..30 {
        let answer = ws.call(&app, "/tap", json!({"badge": "F10F"})).await;
        assert_eq!(answer["state"], "pin_required", "{answer}");
        prompts.push(answer["tap_id"].as_str().unwrap().to_string());
    }
    let right = prompts.pop().unwrap();
    let guesses = prompts.iter().map(|tap_id| ws.send(&app, "/tap/pin", json!({"tap_id": tap_id, "pin": "000000"})));
    let answers = futures_util::future::join_all(guesses).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let last = ws.send(&app, "/tap/pin", json!({"tap_id": right, "pin": PIN})).await;
    assert_eq!(error_code(last, 403).await, "badge_locked", "the right PIN after the flood");
    let mut statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    statuses.sort();
    assert!(statuses.iter().all(|s| [401, 403, 429].contains(s)), "{statuses:?}");
    let audit = app.state.store.recent_audit(1000).await.unwrap();
    let judged = audit.iter().filter(|e| e.event == "tap.pin_failure").count();
    assert_eq!(judged, 5, "guesses judged: {statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 4, "four told a try is left: {statuses:?}");
    let digest = wardkey_core::badge::digest(&app.state.badge_key, "F10F").unwrap();
    assert_eq!(app.state.store.badge(&digest).await.unwrap().unwrap().failed_pins, 5);
    assert_eq!(error_code(ws.send(&app, "/tap", json!({"badge": "F10F"})).await, 403).await, "badge_locked");
}

/// The same attack on the password, through badge self-enrolment (a
/// signed request from any enrolled PC, no CSRF cookie to get): of thirty
/// wrong passwords at once, each one judged is counted before the next is,
/// so the backoff after five holds, and the right password straight after
/// is throttled rather than accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_password_guesses_at_once_meet_the_backoff() {
    let app = TestApp::builder().settings(|s| s.tap.self_enrolment = true).spawn().await;
    let mo = app.add_user("mo").await;
    let ws = TestWorkstation::enrol(&app, "pc", "Ward 9").await;
    let guesses = (0..30).map(|i| {
        ws.send(&app, "/tap/self-enrol", json!({"badge": format!("5E1F{i:02}"), "username": "mo", "password": "nope"}))
    });
    let answers = futures_util::future::join_all(guesses).await;
    let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    assert!(statuses.iter().all(|s| [401, 429].contains(s)), "{statuses:?}");
    let judged = statuses.iter().filter(|s| **s == 401).count();
    let user = app.state.store.user_by_id(&mo.id).await.unwrap().unwrap();
    assert_eq!(user.failed_logins as usize, judged, "every guess judged was counted: {statuses:?}");
    assert!(judged <= 5, "the backoff after five held: {statuses:?}");
    let right =
        ws.send(&app, "/tap/self-enrol", json!({"badge": "5E1F99", "username": "mo", "password": PASSWORD})).await;
    let expected = if judged == 5 { 429 } else { 200 };
    assert_eq!(right.status(), expected, "after {judged} judged guesses");
}

/// The desk channel answers only a signed, fresh request from an enrolled
/// workstation, about its own desk.
#[tokio::test]
async fn the_desk_channel_refuses_what_is_not_a_fresh_signed_request() {
    let app = spawn_app().await;
    let ws = TestWorkstation::enrol(&app, "pc", "Ward 3").await;
    let r = app.http.post(app.url("/tap/events")).body("{}").send().await.unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    let jws = ws.sign("wardkey-tap+jwt", &ws.envelope(&app, json!({"held": "x".repeat(100)})));
    assert_eq!(error_code(post_jws(&app, "/tap/events", jws).await, 400).await, "invalid_request");
    let jws = ws.sign("wardkey-tap+jwt", &ws.envelope(&app, json!({})));
    let r = post_jws(&app, "/tap/events", jws.clone()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    drop(r);
    assert_eq!(error_code(post_jws(&app, "/tap/events", jws).await, 409).await, "replayed");
}
