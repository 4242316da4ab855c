//! Criterion benchmarks of Wardkey's hot path, in process: token signing and
//! verification, workstation JWS verification, the tap round, token
//! exchange, code redemption, refresh rotation and the session cache, on the
//! embedded defaults (SQLite + in-process cache) and on a real Redis.
//!
//! Requests go through `router.oneshot(..)`: no socket, so the numbers are
//! the server's own work. Everything a measured request needs (signed JWS
//! with fresh `jti`s, codes, refresh tokens) is made before the clock starts
//! (`iter_custom`), and argon2 runs only in set-up, with cheap parameters.
//!
//!   cargo bench --bench hot_path                 # measure (a few minutes)
//!   cargo bench --bench hot_path -- --test       # run each once (CI smoke)
//!   cargo bench --bench hot_path -- tap_round    # one group
//!
//! Groups: token_sign, token_verify, workstation_jws, store_read, tap_round,
//! token_exchange, code_redeem, refresh_rotate, cache_memory, cache_redis.
//! The "time" criterion prints is its mean estimate; the medians are in
//! `target/criterion/<group>/<bench>/new/estimates.json`.
//!
//! Needs `redis-server` on the PATH (as the test suite does).

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::signature::{ED25519, UnparsedPublicKey};
use axum::Router;
use axum::body::Body;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{Request, Response, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::runtime::Runtime;
use tower::ServiceExt;
use wardkey_cache::{Cache, MemoryCache, RedisCache};
use wardkey_core::client::{Client, ClientAuth, GrantType};
use wardkey_core::clock::SystemClock;
use wardkey_core::keys::SigningAlg;
use wardkey_core::secret::{digest, new_secret, random_token};
use wardkey_core::session::{ACR_PASSWORD, Amr};
use wardkey_core::user::User;
use wardkey_idp::Settings;
use wardkey_idp::sessions::{CodeRecord, Grant};
use wardkey_idp::state::AppState;
use wardkey_idp::tokens::AccessClaims;
use wardkey_proto::signer::{Signer, WorkstationKey};
use wardkey_proto::tap::{JOSE_CONTENT_TYPE, SESSION_TICKET_TOKEN_TYPE, TOKEN_EXCHANGE_GRANT, Tap};
use wardkey_store::CredentialKind;
use wardkey_testsupport::install_crypto;
use wardkey_testsupport::redis::TestRedis;

use wardkey_testsupport::fixtures::{self, PIN};
const REDIRECT: &str = "http://127.0.0.1:1/callback";
const TAP_BADGE: &str = "04A23B1C";
const EXCHANGE_BADGE: &str = "04B0B0B0";
const FORM: &str = "application/x-www-form-urlencoded";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------

/// A workstation as the agent is one: an id and the agent's signer.
struct Ws {
    id: String,
    signer: Signer,
}

impl Ws {
    /// A compact EdDSA JWS over `claims`, as the agent signs.
    fn sign(&self, typ: &str, claims: &Value) -> String {
        self.signer.sign(typ, claims).expect("signing")
    }

    /// A signed `POST /tap` body for `badge`, with a fresh `jti`.
    fn tap(&self, issuer: &str, now: i64, badge: &str) -> String {
        let claims = json!({"iss": self.id, "aud": issuer, "jti": random_token(16), "iat": now, "badge": badge});
        self.sign("wardkey-tap+jwt", &claims)
    }

    /// A `private_key_jwt` client assertion for the token endpoint.
    fn assertion(&self, issuer: &str, now: i64) -> String {
        let claims = json!({
            "iss": self.id, "sub": self.id, "aud": format!("{issuer}/token"),
            "jti": random_token(16), "iat": now, "exp": now + 60,
        });
        self.sign("JWT", &claims)
    }
}

/// One server, built in process, with everything the benchmarks use.
struct Fixture {
    state: AppState,
    router: Router,
    issuer: String,
    /// Alice and her workstation, attached to her session (tap round).
    alice: User,
    tap_ws: Ws,
    /// Bob's workstation and session ticket (token exchange).
    exchange_ws: Ws,
    ticket: String,
    /// The confidential EPR client (code + refresh) and its secret.
    epr: Client,
    epr_secret: String,
    /// Carol, signed in by password, for codes and refresh tokens.
    carol: User,
    carol_grant: Grant,
    _dir: TempDir,
    /// The `redis-server` behind the cache, if any; killed on drop.
    redis_server: Option<TestRedis>,
}

async fn body_bytes(response: Response<Body>) -> axum::body::Bytes {
    axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("response body")
}

/// Send one request through the router and return status and body.
async fn send(router: &Router, request: Request<Body>) -> (StatusCode, axum::body::Bytes) {
    let response = router.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    (status, body_bytes(response).await)
}

fn jose(path: &str, jws: String) -> Request<Body> {
    Request::post(path).header(CONTENT_TYPE, JOSE_CONTENT_TYPE).body(Body::from(jws)).expect("request")
}

fn form(pairs: &[(&str, &str)], basic: Option<(&str, &str)>) -> Request<Body> {
    let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
    let mut request = Request::post("/token").header(CONTENT_TYPE, FORM);
    if let Some((id, secret)) = basic {
        request = request.header(AUTHORIZATION, format!("Basic {}", STANDARD.encode(format!("{id}:{secret}"))));
    }
    request.body(Body::from(body)).expect("request")
}

fn state_of(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).expect("JSON answer");
    v["state"].as_str().unwrap_or_default().to_string()
}

impl Fixture {
    /// Build the app on SQLite in a temp dir and the in-process cache, or on
    /// a fresh `redis-server` when `redis` is set.
    async fn build(redis: bool) -> Fixture {
        install_crypto();
        let dir = tempfile::tempdir().expect("temp dir");
        let redis = redis.then(TestRedis::start);
        let mut settings = Settings::default();
        settings.store.url = format!("sqlite://{}", dir.path().join("wardkey.db").display());
        settings.store.create_if_missing = true;
        settings.password.m_cost = 1024;
        settings.password.t_cost = 1;
        if let Some(r) = &redis {
            settings.cache.url = r.url();
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        settings.server.listen = addr.to_string();
        settings.server.public_url = format!("http://{addr}");
        let issuer = settings.server.public_url.clone();
        let app =
            wardkey_idp::Application::build_on(settings, Arc::new(SystemClock), listener).await.expect("build app");
        let state = app.state().clone();
        let router = wardkey_idp::router(state.clone());
        drop(app);

        // Alice: badge + PIN, first tap of the shift and PIN, so her session
        // is within the PIN grace and her workstation is attached.
        let alice = add_user(&state, "alice", Some(TAP_BADGE)).await;
        let tap_ws = add_workstation(&state, "w4-pc1", "Ward 4").await;
        tap_in(&state, &router, &issuer, &tap_ws, TAP_BADGE).await;
        // Bob at another PC: the ticket token exchange presents.
        add_user(&state, "bob", Some(EXCHANGE_BADGE)).await;
        let exchange_ws = add_workstation(&state, "w4-pc2", "Ward 4").await;
        let ticket = tap_in(&state, &router, &issuer, &exchange_ws, EXCHANGE_BADGE).await;
        add_client(&state, "bedside", &[GrantType::TokenExchange]).await;
        // Carol signed in with a password: codes and refresh tokens for her.
        let carol = add_user(&state, "carol", None).await;
        let (_, session) =
            state.sessions.create_session(&carol.id, vec![Amr::Pwd], ACR_PASSWORD).await.expect("session");
        let carol_grant = Grant {
            gid: random_token(16),
            user_id: Some(carol.id.clone()),
            sid: Some(session.sid.clone()),
            scope: "openid profile email".into(),
            auth_time: Some(session.auth_time),
            acr: Some(session.acr.clone()),
            amr: session.amr.clone(),
        };
        let epr_secret = add_client(&state, "epr", &[GrantType::AuthorizationCode, GrantType::RefreshToken]).await;
        let epr = state.store.client("epr").await.expect("store").expect("epr client");
        // What the server's directory poll does every 250 ms: from here the
        // hot path reads workstations, badges, users and clients from the
        // node-local cache, as in production.
        state.directory.refresh().await.expect("directory generation");
        Fixture {
            state,
            router,
            issuer,
            alice,
            tap_ws,
            exchange_ws,
            ticket,
            epr,
            epr_secret,
            carol,
            carol_grant,
            _dir: dir,
            redis_server: redis,
        }
    }

    /// A pair of signed taps of Alice's badge on her workstation.
    fn tap_pair(&self) -> (Request<Body>, Request<Body>) {
        let now = self.state.now();
        (
            jose("/tap", self.tap_ws.tap(&self.issuer, now, TAP_BADGE)),
            jose("/tap", self.tap_ws.tap(&self.issuer, now, TAP_BADGE)),
        )
    }

    fn exchange_request(&self) -> Request<Body> {
        let assertion = self.exchange_ws.assertion(&self.issuer, self.state.now());
        form(
            &[
                ("grant_type", TOKEN_EXCHANGE_GRANT),
                ("client_id", &self.exchange_ws.id),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", &assertion),
                ("subject_token", &self.ticket),
                ("subject_token_type", SESSION_TICKET_TOKEN_TYPE),
                ("audience", "bedside"),
            ],
            None,
        )
    }

    /// Issue a code for Carol (as `/login` does) and the request redeeming it.
    async fn code_request(&self, verifier: &str, challenge: &str) -> Request<Body> {
        let record = CodeRecord {
            client_id: "epr".into(),
            redirect_uri: REDIRECT.into(),
            code_challenge: challenge.into(),
            nonce: Some("n-0S6_WzA2Mj".into()),
            expires_at: self.state.now() + 60,
            grant: Grant { gid: random_token(16), ..self.carol_grant.clone() },
        };
        let code = self.state.sessions.issue_code(&record).await.expect("issue code");
        form(
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", verifier),
            ],
            Some(("epr", &self.epr_secret)),
        )
    }

    /// Issue tokens with a refresh token for Carol and the request rotating it.
    async fn refresh_request(&self) -> Request<Body> {
        let grant = Grant { gid: random_token(16), ..self.carol_grant.clone() };
        let issued = self
            .state
            .tokens
            .issue_tokens(&self.epr, &grant, Some(&self.carol), None, true)
            .await
            .expect("issue tokens");
        let refresh = issued.refresh_token.expect("a refresh token");
        form(&[("grant_type", "refresh_token"), ("refresh_token", &refresh)], Some(("epr", &self.epr_secret)))
    }
}

async fn add_user(state: &AppState, username: &str, badge: Option<&str>) -> User {
    let now = state.now();
    let user = state.store.create_user(&fixtures::new_user(username), None, now).await.expect("create user");
    if let Some(uid) = badge {
        let badge = fixtures::badge(&state.badge_key, uid, &user.id, now);
        state.store.add_badge(&badge).await.expect("add badge");
        let hash = wardkey_core::password::hash(&state.settings.password.argon2(), PIN).expect("hash PIN");
        state.store.set_credential(&user.id, CredentialKind::Pin, &hash, now).await.expect("set PIN");
    }
    user
}

async fn add_workstation(state: &AppState, name: &str, ward: &str) -> Ws {
    let now = state.now();
    let ws = fixtures::workstation(name, ward, now);
    let code = wardkey_core::workstation::enrolment_code();
    let code_digest = digest(&wardkey_core::workstation::normalise_code(&code));
    state.store.create_workstation(&ws, &code_digest, now + 3600).await.expect("create workstation");
    let (key, _) = WorkstationKey::generate().expect("Ed25519 key");
    let enrolled = state.store.enrol_workstation(&code_digest, key.public_key(), now).await.expect("enrol workstation");
    // The issuer goes into no request signed through `Ws::sign`.
    Ws { signer: Signer::new(key, enrolled.id.clone(), ""), id: enrolled.id }
}

/// Register a confidential ES256 client; returns its secret.
async fn add_client(state: &AppState, id: &str, grants: &[GrantType]) -> String {
    let secret = new_secret();
    let client = Client {
        client_id: id.into(),
        auth: ClientAuth::Secret { digest: digest(&secret).to_vec() },
        redirect_uris: vec![REDIRECT.into()],
        post_logout_redirect_uris: Vec::new(),
        backchannel_logout_uri: None,
        grant_types: grants.to_vec(),
        start_url: None,
        id_token_alg: SigningAlg::ES256,
        created_at: state.now(),
        min_acr: None,
    };
    state.store.create_client(&client).await.expect("create client");
    secret
}

/// First tap and PIN at `ws`: returns the session ticket.
async fn tap_in(state: &AppState, router: &Router, issuer: &str, ws: &Ws, badge: &str) -> String {
    let (status, body) = send(router, jose("/tap", ws.tap(issuer, state.now(), badge))).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let answer: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(answer["state"], "pin_required", "{answer}");
    let claims = json!({
        "iss": ws.id, "aud": issuer, "jti": random_token(16), "iat": state.now(),
        "tap_id": answer["tap_id"], "pin": PIN,
    });
    let (status, body) = send(router, jose("/tap/pin", ws.sign("wardkey-tap+jwt", &claims))).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let answer: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(answer["state"], "active", "{answer}");
    answer["session_ticket"].as_str().expect("ticket").to_string()
}

fn pkce_pair() -> (String, String) {
    use sha2::Digest;
    let verifier = new_secret();
    let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

// ---------------------------------------------------------------------------
// 1. Token signing and verification (Keyring, parsed keys)
// ---------------------------------------------------------------------------

fn access_claims(state: &AppState) -> AccessClaims {
    let now = state.now();
    AccessClaims {
        iss: state.issuer.to_string(),
        sub: random_token(16),
        aud: "epr".into(),
        client_id: "epr".into(),
        exp: now + 600,
        iat: now,
        jti: random_token(16),
        scope: "openid profile email".into(),
        gid: random_token(16),
        sid: Some(random_token(16)),
        auth_time: Some(now - 120),
        acr: Some("urn:wardkey:acr:badge-pin".into()),
        amr: vec![Amr::Badge, Amr::Pin],
    }
}

fn bench_tokens(c: &mut Criterion, fx: &Fixture) {
    let keys = &fx.state.keys;
    let claims = access_claims(&fx.state);
    let algs = [("ES256", SigningAlg::ES256), ("EdDSA", SigningAlg::EdDSA), ("RS256", SigningAlg::RS256)];

    let mut group = c.benchmark_group("token_sign");
    for (name, alg) in algs {
        group.bench_function(name, |b| b.iter(|| keys.sign(alg, "at+jwt", std::hint::black_box(&claims)).unwrap()));
    }
    group.finish();

    let mut group = c.benchmark_group("token_verify");
    for (name, alg) in algs {
        let jws = keys.sign(alg, "at+jwt", &claims).unwrap();
        let back: AccessClaims = keys.verify(&jws, Some("at+jwt")).unwrap();
        assert_eq!(back.jti, claims.jti);
        group.bench_function(name, |b| {
            b.iter(|| keys.verify::<AccessClaims>(std::hint::black_box(&jws), Some("at+jwt")).unwrap())
        });
    }
    group.finish();
}

// ---------------------------------------------------------------------------
// 2. Workstation JWS verification (Ed25519)
// ---------------------------------------------------------------------------

/// What `WorkstationAuthenticator::verify_jws` does once it has the key: split, decode the
/// header, verify the signature over the signing input, decode the claims.
fn parse_and_verify(jws: &str, public: &[u8]) -> Value {
    let mut parts = jws.split('.');
    let (Some(h), Some(c), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        panic!("not a compact JWS");
    };
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap();
    assert_eq!(header["alg"], "EdDSA");
    let signed = &jws[..h.len() + 1 + c.len()];
    UnparsedPublicKey::new(&ED25519, public).verify(signed.as_bytes(), &URL_SAFE_NO_PAD.decode(s).unwrap()).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(c).unwrap()).unwrap()
}

fn bench_workstation_jws(c: &mut Criterion, rt: &Runtime, fixtures: &[(&str, &Fixture)]) {
    let fx = fixtures[0].1;
    let ws = &fx.tap_ws;
    let public = ws.signer.key().public_key().to_vec();
    let jws = ws.tap(&fx.issuer, fx.state.now(), TAP_BADGE);
    let (input, sig) = jws.rsplit_once('.').unwrap();
    let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();

    let mut group = c.benchmark_group("workstation_jws");
    group.bench_function("ed25519_verify", |b| {
        b.iter(|| {
            UnparsedPublicKey::new(&ED25519, &public)
                .verify(input.as_bytes(), std::hint::black_box(&sig))
                .expect("valid")
        })
    });
    group.bench_function("compact_jws_parse_verify", |b| {
        b.iter(|| parse_and_verify(std::hint::black_box(&jws), &public))
    });
    // The whole of `verify_tap`: directory read of the workstation, the
    // signature, the envelope checks and the `jti` put-if-absent.
    for &(name, fx) in fixtures {
        group.bench_function(format!("verify_tap/{name}"), |b| {
            b.to_async(rt).iter_custom(|iters| async move {
                let now = fx.state.now();
                let bodies: Vec<String> = (0..iters).map(|_| fx.tap_ws.tap(&fx.issuer, now, TAP_BADGE)).collect();
                let start = Instant::now();
                for body in bodies {
                    let (_, tap) = fx.state.workstations.verify_tap::<Tap>(body.as_bytes()).await.expect("verify_tap");
                    std::hint::black_box(tap);
                }
                start.elapsed()
            })
        });
    }
    group.finish();
}

/// The directory reads on the hot path (workstation, badge, user; three per
/// tap), answered by the node-local cache, against a read that goes to the
/// store (the client lookup of client authentication; SQLite in both
/// fixtures).
fn bench_store_reads(c: &mut Criterion, rt: &Runtime, fx: &Fixture) {
    let badge = wardkey_core::badge::digest(&fx.state.badge_key, TAP_BADGE).expect("badge digest");
    let (dir, ws_id, user_id, badge) = (&fx.state.directory, fx.tap_ws.id.as_str(), fx.alice.id.as_str(), &badge);
    let mut group = c.benchmark_group("store_read");
    group.bench_function("directory_workstation", |b| {
        b.to_async(rt).iter(|| async { dir.workstation(ws_id).await.expect("store").expect("workstation") })
    });
    group.bench_function("directory_badge", |b| {
        b.to_async(rt).iter(|| async { dir.badge(badge).await.expect("store").expect("badge") })
    });
    group.bench_function("directory_user", |b| {
        b.to_async(rt).iter(|| async { dir.user(user_id).await.expect("store").expect("user") })
    });
    group.bench_function("store_client", |b| {
        b.to_async(rt).iter(|| async { fx.state.store.client("epr").await.expect("store").expect("client") })
    });
    group.finish();
}

// ---------------------------------------------------------------------------
// 3–5. Endpoints in process
// ---------------------------------------------------------------------------

fn bench_tap_round(c: &mut Criterion, rt: &Runtime, fixtures: &[(&str, &Fixture)]) {
    let mut group = c.benchmark_group("tap_round");
    for &(name, fx) in fixtures {
        group.bench_function(name, |b| {
            b.to_async(rt).iter_custom(|iters| async move {
                let pairs: Vec<_> = (0..iters).map(|_| fx.tap_pair()).collect();
                let start = Instant::now();
                for (lock, unlock) in pairs {
                    let (status, body) = send(&fx.router, lock).await;
                    assert!(status == StatusCode::OK && state_of(&body) == "locked", "{status} {body:?}");
                    let (status, body) = send(&fx.router, unlock).await;
                    assert!(status == StatusCode::OK && state_of(&body) == "active", "{status} {body:?}");
                }
                start.elapsed()
            })
        });
    }
    group.finish();
}

fn bench_token_exchange(c: &mut Criterion, rt: &Runtime, fixtures: &[(&str, &Fixture)]) {
    let mut group = c.benchmark_group("token_exchange");
    for &(name, fx) in fixtures {
        group.bench_function(name, |b| {
            b.to_async(rt).iter_custom(|iters| async move {
                let requests: Vec<_> = (0..iters).map(|_| fx.exchange_request()).collect();
                let start = Instant::now();
                for request in requests {
                    let (status, body) = send(&fx.router, request).await;
                    assert_eq!(status, StatusCode::OK, "{body:?}");
                }
                start.elapsed()
            })
        });
    }
    group.finish();
}

fn bench_code_and_refresh(c: &mut Criterion, rt: &Runtime, fixtures: &[(&str, &Fixture)]) {
    let (verifier, challenge) = pkce_pair();
    let (verifier, challenge) = (verifier.as_str(), challenge.as_str());

    let mut group = c.benchmark_group("code_redeem");
    for &(name, fx) in fixtures {
        group.bench_function(name, |b| {
            b.to_async(rt).iter_custom(|iters| async move {
                let mut requests = Vec::with_capacity(iters as usize);
                for _ in 0..iters {
                    requests.push(fx.code_request(verifier, challenge).await);
                }
                let start = Instant::now();
                for request in requests {
                    let (status, body) = send(&fx.router, request).await;
                    assert_eq!(status, StatusCode::OK, "{body:?}");
                }
                start.elapsed()
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("refresh_rotate");
    for &(name, fx) in fixtures {
        group.bench_function(name, |b| {
            b.to_async(rt).iter_custom(|iters| async move {
                let mut requests = Vec::with_capacity(iters as usize);
                for _ in 0..iters {
                    requests.push(fx.refresh_request().await);
                }
                let start = Instant::now();
                for request in requests {
                    let (status, body) = send(&fx.router, request).await;
                    assert_eq!(status, StatusCode::OK, "{body:?}");
                }
                start.elapsed()
            })
        });
    }
    group.finish();
}

// ---------------------------------------------------------------------------
// 6. The session cache, one call in flight
// ---------------------------------------------------------------------------

fn bench_cache(c: &mut Criterion, rt: &Runtime, name: &str, cache: &dyn Cache) {
    // About the size of a stored SSO session.
    let value = vec![b'x'; 320];
    let value = value.as_slice();
    let ttl = Duration::from_secs(300);
    rt.block_on(cache.put("bench:get", value, ttl)).expect("put");

    let mut group = c.benchmark_group(format!("cache_{name}"));
    group.bench_function("get", |b| {
        b.to_async(rt).iter(|| async { assert!(cache.get("bench:get").await.expect("get").is_some()) })
    });
    group.bench_function("put", |b| {
        b.to_async(rt).iter(|| async { cache.put("bench:put", value, ttl).await.expect("put") })
    });
    // Fresh keys for every call: criterion may call a routine many times.
    group.bench_function("take", |b| {
        b.to_async(rt).iter_custom(|iters| async move {
            let tag = random_token(9);
            let keys: Vec<String> = (0..iters).map(|i| format!("bench:take:{tag}:{i}")).collect();
            for key in &keys {
                cache.put(key, value, ttl).await.expect("put");
            }
            let start = Instant::now();
            for key in &keys {
                assert!(cache.take(key).await.expect("take").is_some());
            }
            start.elapsed()
        })
    });
    group.bench_function("put_if_absent", |b| {
        b.to_async(rt).iter_custom(|iters| async move {
            let tag = random_token(9);
            let keys: Vec<String> = (0..iters).map(|i| format!("bench:jti:{tag}:{i}")).collect();
            let start = Instant::now();
            for key in &keys {
                assert!(cache.put_if_absent(key, b"1", Duration::from_secs(61)).await.expect("put_if_absent"));
            }
            start.elapsed()
        })
    });
    group.finish();
}

// ---------------------------------------------------------------------------

fn hot_path(c: &mut Criterion) {
    install_crypto();
    // Like the server's `#[tokio::main]`: multi-threaded, one worker per core.
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let embedded = rt.block_on(Fixture::build(false));
    let redis = rt.block_on(Fixture::build(true));
    let fixtures = [("embedded", &embedded), ("redis", &redis)];

    bench_tokens(c, &embedded);
    bench_workstation_jws(c, &rt, &fixtures);
    bench_store_reads(c, &rt, &embedded);
    bench_tap_round(c, &rt, &fixtures);
    bench_token_exchange(c, &rt, &fixtures);
    bench_code_and_refresh(c, &rt, &fixtures);

    let memory = MemoryCache::new();
    bench_cache(c, &rt, "memory", &memory);
    // Its own client: one multiplexed connection, as the server holds.
    let redis_url = redis.redis_server.as_ref().expect("redis server").url();
    let redis_cache = rt.block_on(async { RedisCache::open(&redis_url) }).expect("open redis cache");
    bench_cache(c, &rt, "redis", &redis_cache);

    // Fixtures (and the redis-server they own) go before the runtime.
    drop(redis_cache);
    drop(redis);
    drop(embedded);
    drop(rt);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    targets = hot_path
}
criterion_main!(benches);
