//! One Wardkey server per fuzzing process, driven in process through its
//! real axum router with `tower::ServiceExt::oneshot` on a current-thread
//! tokio runtime. Built like `tests/it/helpers.rs` builds its servers
//! (`Application::build_on`), on `sqlite::memory:` and `memory://`, with:
//!
//! - a clock fixed at [`NOW`], so that signed seeds (`iat`, `exp`) stay
//!   valid for ever;
//! - one enrolled workstation with a fixed Ed25519 key (and a disabled one
//!   with the same key), a user with a password and a badge, and clients
//!   for every way of authenticating;
//! - a WebAuthn credential registered through the real ceremony, and
//!   ceremonies (sign-in, passkey and security-key registration) whose
//!   challenge is fixed at [`CHALLENGE`], restored before every input, so
//!   that committed seeds answer them.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tower::ServiceExt;
use wardkey_core::client::{Client, ClientAuth, GrantType};
use wardkey_core::clock::Clock;
use wardkey_core::keys::SigningAlg;
use wardkey_core::secret::{digest, digest_b64};
use wardkey_core::user::User;
use wardkey_core::workstation::Workstation;
use wardkey_idp::Settings;
use wardkey_idp::kv::keys;
use wardkey_idp::state::AppState;
use wardkey_store::CredentialKind;

/// The fixed time of the fuzzing server (2026-01-01T00:00:00Z).
pub const NOW: i64 = 1_767_225_600;
/// `server.public_url`: a host name, so that WebAuthn is on.
pub const ISSUER: &str = "https://wardkey.fuzz.example";
/// The WebAuthn relying party id.
pub const RP_ID: &str = "wardkey.fuzz.example";
/// The enrolled workstation.
pub const WORKSTATION_ID: &str = "wsfuzz000001";
/// A disabled workstation with the same key.
pub const DISABLED_WORKSTATION_ID: &str = "wsfuzz000002";
/// The user.
pub const USER_ID: &str = "ufuzz00000000001";
/// The user's username.
pub const USERNAME: &str = "nurse.fuzz";
/// The user's password.
pub const PASSWORD: &str = "correct horse battery";
/// The user's badge UID.
pub const BADGE: &str = "04A23B1C";
/// A confidential client (`client_secret_basic` / `_post`).
pub const SECRET_CLIENT: &str = "epr";
/// Its secret.
pub const CLIENT_SECRET: &str = "epr-fuzz-client-secret-0001";
/// A `private_key_jwt` client with a registered JWKS ([`crate::jose`]).
pub const JWT_CLIENT: &str = "epr-jwt";
/// A public client.
pub const PUBLIC_CLIENT: &str = "spa";
/// A token-exchange audience.
pub const EXCHANGE_CLIENT: &str = "epr-desktop";
/// Every client's redirect URI.
pub const REDIRECT: &str = "https://epr.fuzz.example/cb";
/// An authorization code present before every input (for `epr`).
pub const CODE: &str = "fuzz-code-0001";
/// Its PKCE verifier.
pub const CODE_VERIFIER: &str = "fuzz-code-verifier-0123456789-0123456789-0123456789";
/// A pending authorization (the login page's `request`), present before
/// every input.
pub const REQUEST: &str = "fuzz-request-0001";
/// The CSRF cookie and form value the forms target sends.
pub const CSRF: &str = "fuzz-csrf-0001";
/// A redeemed service-desk invite's cookie (may add keys for the user).
pub const ENROL_COOKIE: &str = "fuzz-enrolment-cookie-0001";
/// The sign-in ceremony with a fixed challenge.
pub const LOGIN_CEREMONY: &str = "fuzz-login-ceremony";
/// A passkey registration ceremony with a fixed challenge.
pub const PASSKEY_CEREMONY: &str = "fuzz-passkey-ceremony";
/// A security-key registration ceremony with a fixed challenge.
pub const SECURITY_KEY_CEREMONY: &str = "fuzz-security-key-ceremony";
/// The challenge of every fixed ceremony.
pub const CHALLENGE: [u8; 32] = *b"wardkey-fuzz-fixed-challenge-001";
/// The registered WebAuthn credential.
pub const CREDENTIAL_ID: &[u8] = b"wardkey-fuzz-credential-0001";
/// A credential id the registration seeds add.
pub const NEW_CREDENTIAL_ID: &[u8] = b"wardkey-fuzz-credential-0002";

/// [`CHALLENGE`] as WebAuthn client data carries it.
pub fn challenge_b64() -> String {
    URL_SAFE_NO_PAD.encode(CHALLENGE)
}

/// The PKCE S256 challenge of [`CODE_VERIFIER`].
pub fn code_challenge() -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(CODE_VERIFIER.as_bytes()))
}

/// The user's WebAuthn user handle.
pub fn user_handle() -> Vec<u8> {
    wardkey_idp::passkeys::user_handle(USER_ID).as_bytes().to_vec()
}

#[derive(Debug)]
struct FixedClock;

impl Clock for FixedClock {
    fn now(&self) -> i64 {
        NOW
    }
}

/// The server and the runtime it runs on.
pub struct Server {
    /// Current-thread runtime, created once per process.
    pub rt: tokio::runtime::Runtime,
    /// The server's state, for calling verification functions directly.
    pub state: AppState,
    /// The real router.
    pub router: axum::Router,
    /// Fixed ceremonies: cache key and record, restored before each input.
    ceremonies: Vec<(String, Vec<u8>)>,
    /// The registered credential as stored (a sign-in updates its counter).
    credential: String,
}

static SERVER: OnceLock<Server> = OnceLock::new();

/// The process's server, built on first use.
pub fn server() -> &'static Server {
    SERVER.get_or_init(build)
}

const LONG: Duration = Duration::from_secs(7 * 24 * 3600);

fn build() -> Server {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let (state, router, ceremonies, credential) = rt.block_on(async {
        let mut s = Settings::default();
        s.server.public_url = ISSUER.into();
        s.server.listen = "127.0.0.1:0".into();
        s.store.url = "sqlite::memory:".into();
        s.cache.url = "memory://".into();
        s.password.m_cost = 1024;
        s.password.t_cost = 1;
        // Never served: build_on only needs it to learn the address.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let app =
            wardkey_idp::Application::build_on(s, Arc::new(FixedClock), listener).await.expect("build the server");
        let state = app.state().clone();
        drop(app);
        let router = wardkey_idp::router(state.clone());
        fixtures(&state).await;
        let ceremonies = webauthn_fixtures(&state, &router).await;
        let credential = state.store.webauthn_credential(CREDENTIAL_ID).await.expect("store").expect("credential").data;
        (state, router, ceremonies, credential)
    });
    Server { rt, state, router, ceremonies, credential }
}

async fn fixtures(state: &AppState) {
    let store = state.store.as_ref();
    let hash = wardkey_core::password::hash(&state.settings.password.argon2(), PASSWORD).expect("hash");
    let user = User {
        id: USER_ID.into(),
        username: USERNAME.into(),
        name: Some("Nurse Fuzz".into()),
        email: Some("nurse.fuzz@trust.example".into()),
        roles: vec!["R8000".into()],
        disabled: false,
        failed_logins: 0,
        last_failed_at: None,
        created_at: NOW,
        source: wardkey_core::user::LOCAL.into(),
        external_id: None,
        employee_number: None,
        held: false,
    };
    store.import_user(&user, &[(CredentialKind::Password, hash)]).await.expect("user");
    let public = crate::jose::workstation_key();
    let public = aws_lc_rs::signature::KeyPair::public_key(&public).as_ref().to_vec();
    for (id, enabled) in [(WORKSTATION_ID, true), (DISABLED_WORKSTATION_ID, false)] {
        let ws = Workstation {
            id: id.into(),
            name: format!("pc-{id}"),
            ward: "W1".into(),
            public_key: Some(public.clone()),
            enabled,
            created_at: NOW,
            enrolled_at: Some(NOW),
        };
        store.import_workstation(&ws).await.expect("workstation");
    }
    let badge = wardkey_core::badge::Badge {
        digest: wardkey_core::badge::digest(&state.badge_key, BADGE).expect("badge"),
        user_id: USER_ID.into(),
        failed_pins: 0,
        created_at: NOW,
    };
    store.add_badge(&badge).await.expect("badge");
    let client = |id: &str, auth: ClientAuth, grants: &[GrantType]| Client {
        client_id: id.into(),
        auth,
        redirect_uris: vec![REDIRECT.into()],
        post_logout_redirect_uris: vec![format!("{REDIRECT}/signed-out")],
        backchannel_logout_uri: None,
        grant_types: grants.to_vec(),
        start_url: None,
        id_token_alg: SigningAlg::ES256,
        min_acr: None,
        created_at: NOW,
    };
    use GrantType::*;
    let secret = ClientAuth::Secret { digest: digest(CLIENT_SECRET).to_vec() };
    for c in [
        client(SECRET_CLIENT, secret.clone(), &[AuthorizationCode, RefreshToken, ClientCredentials]),
        client(
            JWT_CLIENT,
            ClientAuth::Jwks { jwks: crate::jose::client_jwks() },
            &[AuthorizationCode, ClientCredentials],
        ),
        client(PUBLIC_CLIENT, ClientAuth::None, &[AuthorizationCode]),
        client(EXCHANGE_CLIENT, secret, &[TokenExchange]),
    ] {
        store.create_client(&c).await.expect("client");
    }
    state.directory.refresh().await.expect("directory");
    reset_enrolment(state).await;
}

async fn reset_enrolment(state: &AppState) {
    let value = serde_json::to_vec(USER_ID).expect("json");
    state.cache.put(&keys::enrolment(&digest_b64(ENROL_COOKIE)), &value, LONG).await.expect("cache");
}

/// Register the credential through the real ceremony, then make the fixed
/// ceremonies: the server starts each; its record's challenge is replaced
/// with [`CHALLENGE`] and it is kept under a fixed id.
async fn webauthn_fixtures(state: &AppState, router: &axum::Router) -> Vec<(String, Vec<u8>)> {
    let (ceremony, _) =
        start(state, router, "/account/keys/register/start", json!({"kind": "security_key", "name": "fuzz badge"}))
            .await;
    let fixed = fix_challenge(state, &ceremony, "fuzz-setup").await;
    state.cache.put(&fixed.0, &fixed.1, LONG).await.expect("cache");
    let key = crate::webauthn::key(crate::webauthn::CREDENTIAL_PKCS8);
    let credential = crate::webauthn::registration(
        &challenge_b64(),
        ISSUER,
        RP_ID,
        CREDENTIAL_ID,
        &key,
        crate::webauthn::UP | crate::webauthn::UV,
    );
    let body = json!({"ceremony": "fuzz-setup", "credential": credential});
    let r =
        router.clone().oneshot(json_request("/account/keys/register/finish", &body, true)).await.expect("infallible");
    let status = r.status();
    let text = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap_or_default();
    assert_eq!(status, StatusCode::OK, "registering the fixture credential: {}", String::from_utf8_lossy(&text));

    let mut out = Vec::new();
    for (path, body, id) in [
        ("/account/keys/register/start", json!({"kind": "passkey", "name": "fuzz passkey"}), PASSKEY_CEREMONY),
        ("/account/keys/register/start", json!({"kind": "security_key", "name": "fuzz key"}), SECURITY_KEY_CEREMONY),
        ("/webauthn/login/start", json!({}), LOGIN_CEREMONY),
    ] {
        let (ceremony, _) = start(state, router, path, body).await;
        out.push(fix_challenge(state, &ceremony, id).await);
    }
    out
}

async fn start(_state: &AppState, router: &axum::Router, path: &str, body: Value) -> (String, Value) {
    let r = router.clone().oneshot(json_request(path, &body, true)).await.expect("infallible");
    let status = r.status();
    let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.expect("body");
    assert_eq!(status, StatusCode::OK, "{path}: {}", String::from_utf8_lossy(&bytes));
    let v: Value = serde_json::from_slice(&bytes).expect("json");
    (v["ceremony"].as_str().expect("ceremony").to_string(), v["options"].clone())
}

/// Take ceremony `from`'s record out of the cache, with its challenge
/// replaced by [`CHALLENGE`]; the key and record for ceremony `to`.
async fn fix_challenge(state: &AppState, from: &str, to: &str) -> (String, Vec<u8>) {
    let bytes = state.cache.take(&keys::webauthn_ceremony(from)).await.expect("cache").expect("the ceremony");
    let mut record: Value = serde_json::from_slice(&bytes).expect("ceremony json");
    let replaced = replace_challenge(&mut record);
    assert!(replaced > 0, "no challenge in the ceremony record: {record}");
    (keys::webauthn_ceremony(to), serde_json::to_vec(&record).expect("json"))
}

fn replace_challenge(v: &mut Value) -> usize {
    match v {
        Value::Object(map) => {
            let mut n = 0;
            for (k, child) in map.iter_mut() {
                if k == "challenge" {
                    *child = match child {
                        Value::Array(_) => Value::Array(CHALLENGE.iter().map(|b| (*b).into()).collect()),
                        Value::String(s) if s.contains(['+', '/', '=']) => STANDARD.encode(CHALLENGE).into(),
                        _ => challenge_b64().into(),
                    };
                    n += 1;
                } else {
                    n += replace_challenge(child);
                }
            }
            n
        }
        Value::Array(items) => items.iter_mut().map(replace_challenge).sum(),
        _ => 0,
    }
}

/// A JSON POST, with the invite cookie when `enrolled`.
pub fn json_request(path: &str, body: &Value, enrolled: bool) -> Request<Body> {
    raw_json_request(path, body.to_string().into_bytes(), enrolled)
}

/// A POST of `body` as `application/json`, with the invite cookie when
/// `enrolled`.
pub fn raw_json_request(path: &str, body: Vec<u8>, enrolled: bool) -> Request<Body> {
    let mut req = Request::post(path).header(header::CONTENT_TYPE, "application/json");
    if enrolled {
        req = req.header(header::COOKIE, format!("__Host-wardkey_enrol={ENROL_COOKIE}"));
    }
    req.body(Body::from(body)).expect("request")
}

impl Server {
    /// Run `req` through the router.
    pub async fn call(&self, req: Request<Body>) -> Response<Body> {
        match self.router.clone().oneshot(req).await {
            Ok(r) => r,
            Err(e) => match e {},
        }
    }

    /// Before a WebAuthn input: the fixed ceremonies (each can be finished
    /// once) and the invite cookie are back.
    pub async fn reset_webauthn(&self) {
        for (key, record) in &self.ceremonies {
            self.state.cache.put(key, record, LONG).await.expect("cache");
        }
        reset_enrolment(&self.state).await;
        self.forget_sessions().await;
        self.state.store.update_webauthn_credential(CREDENTIAL_ID, &self.credential, NOW).await.expect("store");
    }

    /// After a WebAuthn input: remove credentials it added, so that the
    /// store does not grow and the next input sees the same server.
    pub async fn remove_added_credentials(&self) {
        let store = self.state.store.as_ref();
        for c in store.webauthn_credentials(USER_ID).await.expect("store") {
            if c.id != CREDENTIAL_ID {
                store.remove_webauthn_credential(USER_ID, &c.id).await.expect("store");
            }
        }
    }

    /// Forget the user's session index. Every sign-in an input makes adds
    /// a session to it, and with the clock fixed none ever ends, so the
    /// list (which each new sign-in walks) would grow for the whole run.
    pub async fn forget_sessions(&self) {
        self.state.cache.delete(&keys::user_sessions(USER_ID)).await.expect("cache");
    }

    /// Before a `/login` input: no failed sign-ins counted (the clock is
    /// fixed, so a backoff would never end).
    pub async fn reset_login_failures(&self) {
        self.state.store.reset_login_failures(USER_ID).await.expect("store");
    }

    /// Before a forms input: the pending authorization [`REQUEST`] and the
    /// authorization code [`CODE`] exist (raw JSON records, as the server
    /// writes them).
    pub async fn reset_forms(&self) {
        let pending = json!({
            "client_id": SECRET_CLIENT, "redirect_uri": REDIRECT, "scope": "openid profile email",
            "state": "xyz", "nonce": "n-0S6", "code_challenge": code_challenge(), "login_hint": null,
            "min_acr": null,
        });
        let code = json!({
            "client_id": SECRET_CLIENT, "redirect_uri": REDIRECT, "code_challenge": code_challenge(),
            "nonce": "n-0S6", "expires_at": NOW + 60,
            "grant": {"gid": "fuzz-gid-0001", "user_id": USER_ID, "sid": null, "scope": "openid profile",
                      "auth_time": NOW, "acr": wardkey_core::session::ACR_PASSWORD, "amr": ["pwd"]},
        });
        self.forget_sessions().await;
        let cache = self.state.cache.as_ref();
        // The seeds' assertions may be used again.
        for issuer in [JWT_CLIENT, WORKSTATION_ID] {
            cache.delete(&keys::assertion_jti(issuer, crate::seeds::ASSERTION_JTI)).await.expect("cache");
        }
        cache.put(&keys::pending(REQUEST), pending.to_string().as_bytes(), LONG).await.expect("cache");
        cache.put(&keys::code(&digest_b64(CODE)), code.to_string().as_bytes(), LONG).await.expect("cache");
    }
}

/// Whether `WARDKEY_FUZZ_DEBUG` is set: the HTTP targets then print each
/// answer (run a target on one input file to see what the server says).
pub fn debug() -> bool {
    static DEBUG: OnceLock<bool> = OnceLock::new();
    *DEBUG.get_or_init(|| std::env::var_os("WARDKEY_FUZZ_DEBUG").is_some())
}

/// Panic (a finding) if `r` is a 500: with in-memory backends that cannot
/// fail, an internal error is a bug.
pub async fn check_no_internal_error(what: &str, r: Response<Body>) {
    if r.status() == StatusCode::INTERNAL_SERVER_ERROR || debug() {
        let status = r.status();
        let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap_or_default();
        let body = String::from_utf8_lossy(&body);
        assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "{what} answered 500: {body}");
        eprintln!("{what}: {status} {}", &body[..body.len().min(300)]);
    }
}

/// `Authorization: Basic` for the confidential client.
pub fn basic() -> HeaderValue {
    let v = format!("Basic {}", STANDARD.encode(format!("{SECRET_CLIENT}:{CLIENT_SECRET}")));
    HeaderValue::from_str(&v).expect("header")
}
