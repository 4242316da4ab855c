//! Several stateless nodes on one PostgreSQL and one Redis, and the faults a
//! trust's IT team plans for: Redis stopped or paused, PostgreSQL stopped, a
//! node killed, clocks a few seconds apart. Every engine is real and started
//! by the test on free ports.

use std::time::Duration;

use serde_json::{Value, json};
use wardkey_core::client::GrantType;
use wardkey_core::clock::Clock;
use wardkey_core::keys::SigningAlg;
use wardkey_idp::Settings;
use wardkey_testsupport::postgres::TestPostgres;
use wardkey_testsupport::redis::TestRedis;

use crate::helpers::*;
use crate::tap::{TestWorkstation, enrol_badge, post_jws, tap_in};

/// A bound on every request in a fault test: a hang fails the test instead
/// of stalling the run. (Speed itself is measured in BENCHMARKS.md.)
const HANG_GUARD: Duration = Duration::from_secs(15);

/// The node settings of `deploy/wardkey-node.toml`, pointed at the test's
/// engines.
fn node_settings(s: &mut Settings, store: &str, cache: &str) {
    let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/wardkey-node.toml");
    let example = Settings::load_from(Some(&deploy), true, Vec::new()).expect("deploy/wardkey-node.toml is valid");
    s.oidc = example.oidc;
    s.store.url = store.to_string();
    s.cache.url = cache.to_string();
    s.oidc.key_reload_interval = Duration::from_secs(1);
}

/// Two nodes behind one issuer (node A's address).
async fn two_nodes(store: &str, cache: &str) -> (TestApp, TestApp) {
    two_nodes_with(store, cache, |_| {}).await
}

/// [`two_nodes`] with `tweak` applied to both nodes' settings.
pub async fn two_nodes_with(store: &str, cache: &str, tweak: impl Fn(&mut Settings)) -> (TestApp, TestApp) {
    let a = TestApp::builder()
        .settings(|s| {
            node_settings(s, store, cache);
            tweak(s);
        })
        .spawn()
        .await;
    let issuer = a.issuer.clone();
    let b = TestApp::builder()
        .settings(|s| {
            node_settings(s, store, cache);
            tweak(s);
            s.server.public_url = issuer;
        })
        .spawn()
        .await;
    (a, b)
}

async fn guarded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(HANG_GUARD, f).await.unwrap_or_else(|_| panic!("{what} hung"))
}

async fn redeem_at(node: &TestApp, client: (&str, &str), code: &str, verifier: &str) -> reqwest::Response {
    node.post_form(
        "/token",
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier),
        ],
        Some(client),
    )
    .await
}

async fn code_at(node: &TestApp, browser: &reqwest::Client, client_id: &str, user: &str) -> (String, String) {
    let (url, verifier) = authorize_url(node, client_id, &[]);
    let back = node.browser_authorize(browser, &url, user).await;
    (query_param(&back, "code").expect("code"), verifier)
}

fn bearer(node: &TestApp, token: &str) -> reqwest::RequestBuilder {
    node.http.get(node.url("/userinfo")).bearer_auth(token)
}

#[tokio::test]
async fn two_nodes_serve_each_others_sessions_codes_and_keys() {
    let pg = TestPostgres::start();
    let redis = TestRedis::start();
    let (a, b) = two_nodes(pg.url(), &redis.url()).await;
    a.add_user("alice").await;
    let secret = a.add_epr("epr").await;
    a.add_client("epr-x", Auth::Secret, &[GrantType::TokenExchange], SigningAlg::ES256).await;

    // Login on A; code, refresh and userinfo on B.
    let browser = no_redirects(true);
    let (code, verifier) = code_at(&a, &browser, "epr", "alice").await;
    let r = redeem_at(&b, ("epr", &secret), &code, &verifier).await;
    assert_eq!(r.status(), 200);
    let tokens: Value = r.json().await.unwrap();
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let r = b
        .post_form("/token", &[("grant_type", "refresh_token"), ("refresh_token", refresh)], Some(("epr", &secret)))
        .await;
    assert_eq!(r.status(), 200);
    let rotated: Value = r.json().await.unwrap();
    assert_eq!(bearer(&b, rotated["access_token"].as_str().unwrap()).send().await.unwrap().status(), 200);
    // The code cannot be redeemed again on A either.
    assert_oauth_error(redeem_at(&a, ("epr", &secret), &code, &verifier).await, 400, "invalid_grant").await;

    // Tap on A, token exchange on B.
    enrol_badge(&a, "bob", "B0B0").await;
    let ws = TestWorkstation::enrol(&a, "pc", "Ward 1").await;
    let ticket = tap_in(&a, &ws, "B0B0").await;
    assert_eq!(ws.exchange(&b, &ticket, "epr-x").await.status(), 200);
    assert_eq!(ws.call(&b, "/tap", json!({"badge": "B0B0"})).await["state"], "locked", "B sees A's attachment");

    // Logout on B ends the session for A.
    let id_token = rotated["id_token"].as_str().unwrap();
    let r = browser.get(format!("{}?id_token_hint={id_token}", b.url("/logout"))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let (silent, _) = authorize_url(&a, "epr", &[("prompt", "none")]);
    let back = url::Url::parse(&location(&browser.get(silent).send().await.unwrap())).unwrap();
    assert_eq!(query_param(&back, "error").as_deref(), Some("login_required"));

    // Rotate keys on A; within the reload interval B publishes and accepts
    // tokens signed with the new key.
    let fresh = wardkey_idp::keys::generate_keys(a.clock.now()).unwrap();
    a.state.store.rotate_signing_keys(&fresh, a.clock.now()).await.unwrap();
    a.state.keys.reload(a.state.store.as_ref(), a.clock.now()).await.unwrap();
    let (code, verifier) = code_at(&a, &no_redirects(true), "epr", "alice").await;
    let tokens: Value = redeem_at(&a, ("epr", &secret), &code, &verifier).await.json().await.unwrap();
    let access = tokens["access_token"].as_str().unwrap();
    let new_kid = jsonwebtoken::decode_header(access).unwrap().kid.unwrap();
    assert!(fresh.iter().any(|k| k.kid == new_kid), "A signs with the new key");
    let mut accepted = false;
    for _ in 0..50 {
        let jwks: Value = b.get("/jwks").await.json().await.unwrap();
        let published = jwks["keys"].as_array().unwrap().iter().any(|k| k["kid"] == new_kid);
        if published && bearer(&b, access).send().await.unwrap().status() == 200 {
            accepted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(accepted, "B verifies tokens signed with A's new key within the reload interval");
}

#[tokio::test]
async fn a_killed_node_loses_nothing_the_other_cannot_serve() {
    let pg = TestPostgres::start();
    let redis = TestRedis::start();
    let (a, b) = two_nodes(pg.url(), &redis.url()).await;
    a.add_user("carol").await;
    let secret = a.add_epr("epr").await;
    let (code, verifier) = code_at(&a, &no_redirects(true), "epr", "carol").await;
    let (code2, verifier2) = code_at(&a, &no_redirects(true), "epr", "carol").await;
    let tokens: Value = redeem_at(&a, ("epr", &secret), &code2, &verifier2).await.json().await.unwrap();
    drop(a);

    // B redeems the code A issued, and refreshes the token A issued.
    assert_eq!(redeem_at(&b, ("epr", &secret), &code, &verifier).await.status(), 200);
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let r = b
        .post_form("/token", &[("grant_type", "refresh_token"), ("refresh_token", refresh)], Some(("epr", &secret)))
        .await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn redis_outages_fail_fast_and_heal_without_a_restart() {
    let mut redis = TestRedis::start();
    let app = TestApp::builder().settings(|s| s.cache.url = redis.url()).spawn().await;
    app.add_user("dana").await;
    let secret = app.add_epr("epr").await;
    let tokens = login_and_redeem(&app, "epr", &secret, "dana").await;
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();
    let (pending_code, pending_verifier) = code_at(&app, &no_redirects(true), "epr", "dana").await;

    for fault in ["pause", "stop"] {
        match fault {
            "pause" => redis.pause(),
            _ => redis.stop(),
        }
        // The token endpoint answers temporarily_unavailable, it does not hang.
        let r = guarded(
            "refresh during outage",
            app.post_form(
                "/token",
                &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
                Some(("epr", &secret)),
            ),
        )
        .await;
        assert_eq!(r.status(), 503, "{fault}");
        assert!(r.headers().get("retry-after").is_some());
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "temporarily_unavailable");
        // Redeeming the pending code fails too, without consuming it.
        let r =
            guarded("code during outage", redeem_at(&app, ("epr", &secret), &pending_code, &pending_verifier)).await;
        assert_eq!(r.status(), 503);
        // Browsers get a page, ops get a 503 from /readyz.
        let (url, _) = authorize_url(&app, "epr", &[]);
        assert_eq!(guarded("authorize during outage", app.http.get(url).send()).await.unwrap().status(), 503);
        let ready = guarded("readyz during outage", app.get("/readyz")).await;
        assert_eq!(ready.status(), 503);
        assert_eq!(ready.json::<Value>().await.unwrap()["cache"], "unavailable");

        match fault {
            "pause" => redis.resume(),
            _ => redis.start_again(),
        }
        let mut healed = false;
        for _ in 0..50 {
            if app.get("/readyz").await.status() == 200 {
                healed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(healed, "service resumes after {fault} without a restart");
        // Whatever the outage did to it (a take that timed out may still
        // have been applied), the code is never redeemed twice.
        let mut redeemed = 0;
        for _ in 0..2 {
            let r = redeem_at(&app, ("epr", &secret), &pending_code, &pending_verifier).await;
            match r.status().as_u16() {
                200 => redeemed += 1,
                400 => assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant"),
                other => panic!("unexpected {other} after {fault}"),
            }
        }
        assert!(redeemed <= 1, "a code was redeemed twice after {fault}");
    }
    // A restarted Redis lost the sessions (people sign in again), never a
    // user or client: a fresh login works at once.
    login_and_redeem(&app, "epr", &secret, "dana").await;
}

#[tokio::test]
async fn postgres_down_taps_and_tokens_keep_working_logins_fail_clearly() {
    let pg = TestPostgres::start_local();
    let app = TestApp::builder().settings(|s| s.store.url = pg.url().to_string()).spawn().await;
    enrol_badge(&app, "erin", "E1E1").await;
    app.add_client("epr", Auth::Secret, &[GrantType::TokenExchange], SigningAlg::ES256).await;
    let secret = app.add_epr("web").await;
    let ws = TestWorkstation::enrol(&app, "pc", "Ward 3").await;
    let ticket = tap_in(&app, &ws, "E1E1").await;
    assert_eq!(ws.exchange(&app, &ticket, "epr").await.status(), 200);

    pg.stop();
    // The hot path: lock, tap back in without a PIN, and tokens for the EPR.
    let locked = guarded("tap", ws.call(&app, "/tap", json!({"badge": "E1E1"}))).await;
    assert_eq!(locked["state"], "locked");
    let active = guarded("tap", ws.call(&app, "/tap", json!({"badge": "E1E1"}))).await;
    assert_eq!(active["state"], "active");
    let ticket = active["session_ticket"].as_str().unwrap();
    assert_eq!(guarded("exchange", ws.exchange(&app, ticket, "epr")).await.status(), 200);
    // A password login needs the store: a clear page, not a hang or a 500.
    let r = guarded("login page", app.http.get(authorize_url(&app, "web", &[]).0).send()).await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.text().await.unwrap().contains("temporarily unavailable"));
    assert_eq!(app.get("/readyz").await.json::<Value>().await.unwrap()["store"], "unavailable");

    pg.start_again();
    let mut back = false;
    for _ in 0..50 {
        if app.get("/readyz").await.status() == 200 {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(back, "the store is used again without a restart");
    enrol_badge(&app, "fred", "F1F1").await;
    login_and_redeem(&app, "web", &secret, "fred").await;
}

#[tokio::test]
async fn clocks_a_few_seconds_apart_do_not_break_anything() {
    let pg = TestPostgres::start();
    let redis = TestRedis::start();
    let (a, b) = two_nodes(pg.url(), &redis.url()).await;
    b.clock.advance(7);
    enrol_badge(&a, "gus", "6060").await;
    a.add_client("epr", Auth::Secret, &[GrantType::TokenExchange], SigningAlg::ES256).await;
    let secret = a.add_epr("web").await;

    // Signed by a workstation whose clock matches A, verified on B.
    let ws = TestWorkstation::enrol(&a, "pc", "Ward 5").await;
    let ticket = tap_in(&a, &ws, "6060").await;
    assert_eq!(ws.exchange(&b, &ticket, "epr").await.status(), 200);
    let jws = ws.sign("wardkey-tap+jwt", &ws.envelope(&a, json!({"badge": "6060"})));
    let r = post_jws(&b, "/tap", jws).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["state"], "locked");
    // A token minted on A, used on B; a code from B redeemed on A.
    let tokens = login_and_redeem(&a, "web", &secret, "gus").await;
    assert_eq!(bearer(&b, tokens["access_token"].as_str().unwrap()).send().await.unwrap().status(), 200);
    let (code, verifier) = code_at(&b, &no_redirects(true), "web", "gus").await;
    assert_eq!(redeem_at(&a, ("web", &secret), &code, &verifier).await.status(), 200);
}

#[tokio::test]
async fn store_migrate_moves_a_one_machine_install_to_postgres() {
    // A one-machine install with a bit of everything.
    let app = spawn_app().await;
    let sqlite_url = app.state.settings.store.url.clone();
    if !sqlite_url.starts_with("sqlite:") {
        return; // the WARDKEY_TEST_BACKENDS pass: the source is not SQLite
    }
    enrol_badge(&app, "hana", "4A4A").await;
    let secret = app.add_epr("epr").await;
    let ws = TestWorkstation::enrol(&app, "pc", "Ward 6").await;
    tap_in(&app, &ws, "4A4A").await;
    let jwks_before: Value = app.get("/jwks").await.json().await.unwrap();
    let audit_before = app.state.store.recent_audit(u32::MAX).await.unwrap().len();
    let _stopped = app.stop(); // keeps the SQLite file

    let pg = TestPostgres::start();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_wardkey"))
            .args(args)
            .env_remove("WARDKEY_STORE__URL")
            .output()
            .expect("run wardkey")
    };
    let out = run(&["store", "migrate", "--from", &sqlite_url, "--to", pg.url(), "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["moved"]["users"], 1);
    assert_eq!(report["moved"]["credentials"], 2, "password and PIN");
    assert_eq!(report["moved"]["clients"], 1);
    assert_eq!(report["moved"]["workstations"], 1);
    assert_eq!(report["moved"]["badges"], 1);
    assert_eq!(report["moved"]["audit_records"], audit_before);
    // Once only: the target is no longer empty.
    let again = run(&["store", "migrate", "--from", &sqlite_url, "--to", pg.url()]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));

    // A server on PostgreSQL: same keys, same password, same badge and PIN,
    // same workstation key.
    let app = TestApp::builder().settings(|s| s.store.url = pg.url().to_string()).spawn().await;
    let jwks_after: Value = app.get("/jwks").await.json().await.unwrap();
    assert_eq!(jwks_before, jwks_after);
    login_and_redeem(&app, "epr", &secret, "hana").await;
    // The badge digest key and the PIN moved too (a password sign-in is no
    // PIN check, so the badge asks for the PIN).
    tap_in(&app, &ws, "4A4A").await;
    assert!(app.state.store.recent_audit(u32::MAX).await.unwrap().len() > audit_before);
}

#[tokio::test]
async fn a_badge_locked_on_one_node_is_refused_by_the_other_through_pub_sub_alone() {
    let pg = TestPostgres::start();
    let redis = TestRedis::start();
    // Store polls an hour apart: only the Redis channel can carry the news.
    let hourly = |s: &mut Settings| s.store.directory_poll = Duration::from_secs(3600);
    let (a, b) = two_nodes_with(pg.url(), &redis.url(), hourly).await;
    enrol_badge(&a, "dan", "DA11").await;
    let ws = TestWorkstation::enrol(&a, "pc", "Ward 3").await;
    // B reads Dan's badge into its directory cache: unlocked.
    assert_eq!(ws.call(&b, "/tap", json!({"badge": "DA11"})).await["state"], "pin_required");
    // Five wrong PINs on A lock the badge.
    let tap_id = ws.call(&a, "/tap", json!({"badge": "DA11"})).await["tap_id"].clone();
    for _ in 0..5 {
        ws.send(&a, "/tap/pin", json!({"tap_id": tap_id, "pin": "000000"})).await;
    }
    // B refuses the badge (pub/sub is asynchronous: allow it a moment).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = ws.send(&b, "/tap", json!({"badge": "DA11"})).await;
        let body: Value = r.json().await.unwrap();
        if body["error"] == "badge_locked" {
            break;
        }
        assert_eq!(body["state"], "pin_required", "{body}");
        assert!(std::time::Instant::now() < deadline, "node B never heard that the badge was locked");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
