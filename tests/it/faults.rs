//! Faults under traffic: Redis paused, Redis stopped and PostgreSQL stopped
//! while two nodes serve a steady mix of requests, with a tally of what must
//! never happen whatever fails when. The engines are real processes, really
//! paused or stopped; every counter must end at zero.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use wardkey_core::client::GrantType;
use wardkey_core::clock::Clock;
use wardkey_core::keys::SigningAlg;
use wardkey_testsupport::postgres::TestPostgres;
use wardkey_testsupport::redis::TestRedis;

use crate::cluster::two_nodes_with;
use crate::helpers::*;
use crate::tap::{TestWorkstation, enrol_badge, post_jws};

/// What must never happen. Each field counts occurrences.
#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    /// A code that two redemptions both got tokens for.
    codes_redeemed_twice: usize,
    /// A rotated refresh token that yielded new tokens (not the grace
    /// period's replay of the answer already given).
    rotated_refresh_tokens_accepted: usize,
    /// A wrong PIN whose answer showed more attempts left than before.
    failure_counters_reset: usize,
    /// Tokens for a user after their logout or disable was acknowledged.
    tokens_after_logout_or_disable: usize,
    /// A 5xx answer to a request that is malformed on its face.
    server_errors_to_bad_input: usize,
}

/// Set by the fault script, read by the traffic.
#[derive(Default)]
struct Acknowledged {
    logout: AtomicBool,
    disable: AtomicBool,
    done: AtomicBool,
}

/// The traffic's own state: codes not yet tried, refresh chains, the PIN
/// entry being failed.
struct Traffic {
    secret: String,
    codes: Vec<(String, String)>,
    chain: Option<String>,
    /// Refresh chains of the user who is logged out and the one who is
    /// disabled during the run.
    ended: [String; 2],
    ws: TestWorkstation,
    tap_id: Value,
    remaining: u32,
    requests: usize,
}

impl Traffic {
    async fn refresh(&self, node: &TestApp, token: &str) -> reqwest::Response {
        let form = [("grant_type", "refresh_token"), ("refresh_token", token)];
        node.post_form("/token", &form, Some(("web", &self.secret))).await
    }

    /// Round `n` on `nodes` (the first is this round's main node). Codes and
    /// wrong PINs are spread over the rounds so that some meet every fault.
    async fn round(&mut self, n: usize, nodes: [&TestApp; 2], ack: &Acknowledged, tally: &mut Tally) {
        let [node, other] = nodes;
        // A code redeemed on both nodes at once.
        if n.is_multiple_of(2)
            && let Some((code, verifier)) = self.codes.pop()
        {
            let form = [
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", REDIRECT),
                ("code_verifier", verifier.as_str()),
            ];
            let basic = Some(("web", self.secret.as_str()));
            let (x, y) = tokio::join!(node.post_form("/token", &form, basic), other.post_form("/token", &form, basic));
            self.requests += 2;
            if x.status() == 200 && y.status() == 200 {
                tally.codes_redeemed_twice += 1;
            }
        }
        // Refresh rotation, then the rotated token once more.
        if let Some(current) = self.chain.clone() {
            let r = self.refresh(node, &current).await;
            self.requests += 1;
            match r.status().as_u16() {
                200 => {
                    let next: Value = r.json().await.unwrap();
                    let next = next["refresh_token"].as_str().unwrap().to_owned();
                    let again = self.refresh(other, &current).await;
                    self.requests += 1;
                    if again.status() == 200 {
                        let replay: Value = again.json().await.unwrap();
                        if replay["refresh_token"] != next.as_str() {
                            tally.rotated_refresh_tokens_accepted += 1;
                        }
                    }
                    self.chain = Some(next);
                }
                // A restarted Redis lost the chain: nothing more to rotate.
                400 => self.chain = None,
                _ => {}
            }
        }
        // The logged-out and the disabled user's refresh tokens.
        for (i, flag) in [&ack.logout, &ack.disable].into_iter().enumerate() {
            let acknowledged = flag.load(Ordering::SeqCst);
            let r = self.refresh(node, &self.ended[i]).await;
            self.requests += 1;
            if r.status() == 200 {
                if acknowledged {
                    tally.tokens_after_logout_or_disable += 1;
                }
                let next: Value = r.json().await.unwrap();
                self.ended[i] = next["refresh_token"].as_str().unwrap().to_owned();
            }
        }
        // A wrong PIN: the attempts left may only go down.
        if self.remaining > 1 && n % 15 == 7 {
            let r = self.ws.send(node, "/tap/pin", json!({"tap_id": self.tap_id, "pin": "000000"})).await;
            self.requests += 1;
            if r.status() == 401 {
                let body: Value = r.json().await.unwrap();
                let message = body["message"].as_str().unwrap_or_default();
                let left: u32 = message.split_whitespace().find_map(|w| w.parse().ok()).expect(message);
                if left >= self.remaining {
                    tally.failure_counters_reset += 1;
                }
                self.remaining = left;
            }
        }
        // Input that is wrong on its face never earns a 5xx.
        let bad = [
            node.post_form("/token", &[("code", "x")], None).await.status(),
            node.post_form("/token", &[("grant_type", "authorization_code")], None).await.status(),
            post_jws(node, "/tap", "not.a.jws".into()).await.status(),
            node.get("/authorize?response_type=code").await.status(),
            node.http.post(node.url("/introspect")).body("%%%").send().await.unwrap().status(),
        ];
        self.requests += bad.len();
        tally.server_errors_to_bad_input += bad.iter().filter(|s| s.is_server_error()).count();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_under_traffic_keep_every_counter_at_zero() {
    let pg = TestPostgres::start_local();
    let mut redis = TestRedis::start();
    let (a, b) = two_nodes_with(pg.url(), &redis.url(), |_| {}).await;
    let secret = a.add_epr("web").await;
    a.add_client("epr", Auth::Secret, &[GrantType::TokenExchange], SigningAlg::ES256).await;
    for user in ["ivy", "jay", "kay"] {
        a.add_user(user).await;
    }
    enrol_badge(&a, "lou", "10B1").await;
    let browser = no_redirects(true);
    let mut codes = Vec::new();
    for _ in 0..40 {
        let (url, verifier) = authorize_url(&a, "web", &[]);
        let back = a.browser_authorize(&browser, &url, "ivy").await;
        codes.push((query_param(&back, "code").unwrap(), verifier));
    }
    let chain = login_and_redeem(&a, "web", &secret, "ivy").await["refresh_token"].as_str().map(str::to_owned);
    let jay = login_and_redeem(&b, "web", &secret, "jay").await;
    let kay = login_and_redeem(&a, "web", &secret, "kay").await;
    let ws = TestWorkstation::enrol(&a, "pc", "Ward 6").await;
    let tap_id = ws.call(&a, "/tap", json!({"badge": "10B1"})).await["tap_id"].clone();
    let mut traffic = Traffic {
        secret: secret.clone(),
        codes,
        chain,
        ended: [jay, kay].map(|t| t["refresh_token"].as_str().unwrap().to_owned()),
        ws,
        tap_id,
        remaining: 5,
        requests: 0,
    };
    let ack = Acknowledged::default();
    let mut tally = Tally::default();

    let run_traffic = async {
        let mut round = 0usize;
        while !ack.done.load(Ordering::SeqCst) {
            let nodes = if round.is_multiple_of(2) { [&a, &b] } else { [&b, &a] };
            let guarded = tokio::time::timeout(Duration::from_secs(15), traffic.round(round, nodes, &ack, &mut tally));
            guarded.await.expect("a traffic round hung");
            round += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        round
    };
    let run_faults = async {
        let pause = |ms| tokio::time::sleep(Duration::from_millis(ms));
        pause(300).await;
        redis.pause();
        pause(1500).await;
        redis.resume();
        pause(300).await;
        // Jay signs out everywhere (an admin revoke); acknowledged once it
        // returns, retried while the engines recover.
        let jay_id = a.state.store.user_by_username("jay").await.unwrap().unwrap().id;
        while a.state.logouts.logout_user(&jay_id, "test").await.is_err() {
            pause(100).await;
        }
        ack.logout.store(true, Ordering::SeqCst);
        // Kay is disabled; every node applies it within the directory poll.
        while a.state.store.set_user_disabled("kay", true, a.clock.now()).await.is_err() {
            pause(100).await;
        }
        pause(u64::try_from(a.state.settings.store.directory_poll.as_millis()).unwrap() + 200).await;
        ack.disable.store(true, Ordering::SeqCst);
        pg.stop();
        pause(1500).await;
        pg.start_again();
        pause(300).await;
        redis.stop();
        pause(1000).await;
        redis.start_again();
        pause(500).await;
        ack.done.store(true, Ordering::SeqCst);
    };
    let (rounds, ()) = tokio::join!(run_traffic, run_faults);

    assert!(rounds >= 40, "only {rounds} rounds of traffic ran");
    assert_eq!(tally, Tally::default(), "after {rounds} rounds, {} requests", traffic.requests);
    // And the durable record kept every wrong PIN that was answered as one
    // (perhaps more: a failure stored just before its answer was lost).
    let digest = wardkey_core::badge::digest(&a.state.badge_key, "10B1").unwrap();
    let badge = a.state.store.badge(&digest).await.unwrap().unwrap();
    assert!(badge.failed_pins >= 5 - traffic.remaining, "{} failed PINs in the store", badge.failed_pins);
}
