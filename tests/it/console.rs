//! The console and the login-time figures behind it.
//!
//! A simulated morning on two wards (badge taps, PINs, a resume on the hot
//! path, a lock, a password sign-in, a badge locked by wrong PINs) is
//! checked three ways that must agree: the per-ward Prometheus metrics,
//! the audit log, and the console's dashboard. The service desk's morning
//! runs in headless Chromium: a passkey sign-in, a locked clinician found,
//! unlocked and given a new PIN, a workstation enrolled with the code the
//! page shows, each action in the audit view; pages are checked with
//! axe-core at desktop and tablet sizes and screenshotted. Who may not
//! change things is attacked over plain HTTP: ops, a person with no console
//! role, a password-level session, a forged or foreign form token, another
//! site's origin, a stale sign-in.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use wardkey_core::badge::MAX_PIN_FAILURES;
use wardkey_core::clock::Clock;
use wardkey_core::session::{ACR_PASSKEY, ACR_PASSWORD, Amr};
use wardkey_core::user::{NewUser, User};
use wardkey_store::AuditFilter;
use wardkey_testsupport::chromium::Chromium;

use crate::browser::{add_key, open_invite, screenshot_path, spawn_on_localhost_with};
use crate::helpers::*;
use crate::tap::{TestWorkstation, enrol_badge, tap_in};

/// A user with console `roles` (and the test password).
async fn staff(app: &TestApp, username: &str, roles: &[&str]) -> User {
    let hash = wardkey_core::password::hash(&app.state.settings.password.argon2(), PASSWORD).unwrap();
    let new = NewUser {
        username: username.into(),
        name: Some(format!("{username} name")),
        email: None,
        roles: roles.iter().map(|r| r.to_string()).collect(),
    };
    app.state.store.create_user(&new, Some(&hash), app.clock.now()).await.unwrap()
}

/// The `Cookie` header of a new session for `user` at `acr`, as a passkey
/// sign-in (or a password one) leaves in a browser.
async fn session_cookie(app: &TestApp, user: &User, acr: &str) -> String {
    let amr = if acr == ACR_PASSWORD { vec![Amr::Pwd] } else { vec![Amr::Swk, Amr::Mfa] };
    let (cookie, _) = app.state.sessions.create_session(&user.id, amr, acr).await.unwrap();
    format!("wardkey_session={cookie}")
}

/// The audit records of events starting with `event`, newest first.
async fn audited(app: &TestApp, event: &str) -> Vec<wardkey_store::AuditRecord> {
    let filter = AuditFilter { event: Some(event.into()), limit: 100, ..AuditFilter::default() };
    app.state.store.search_audit(&filter).await.unwrap()
}

/// GET `path` with `cookie`: status and body.
async fn get_with(app: &TestApp, cookie: &str, path: &str) -> (u16, String) {
    let r = no_redirects(false).get(app.url(path)).header("cookie", cookie).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// POST `form` to `path` with `cookie` (and `origin`, if any).
async fn post_with(
    app: &TestApp,
    cookie: &str,
    path: &str,
    form: &[(&str, &str)],
    origin: Option<&str>,
) -> (u16, String) {
    let mut request = no_redirects(false).post(app.url(path)).header("cookie", cookie).form(form);
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    let r = request.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The value of the first `name="csrf"` hidden input of a page.
fn csrf_of(html: &str) -> String {
    hidden_input(html, "csrf")
}

/// Every sample of `metric` in the Prometheus text, by its label set.
fn samples(text: &str, metric: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(metric)?;
            let (labels, value) = if let Some(inner) = rest.strip_prefix('{') {
                let (labels, value) = inner.split_once("} ")?;
                (labels.to_string(), value)
            } else {
                (String::new(), rest.strip_prefix(' ')?)
            };
            Some((labels, value.split_whitespace().next()?.parse().ok()?))
        })
        .collect()
}

/// The `signin` audit records, once `n` are written (they are queued off
/// the tap hot path).
async fn signins(app: &TestApp, n: usize) -> Vec<Value> {
    for _ in 0..200 {
        let filter = AuditFilter { event: Some("signin".into()), limit: 1000, ..AuditFilter::default() };
        let records = app.state.store.search_audit(&filter).await.unwrap();
        if records.len() >= n {
            assert_eq!(records.len(), n, "exactly one signin record per sign-in");
            return records.into_iter().map(|r| r.event.detail).collect();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the signin records were not written");
}

#[tokio::test]
async fn a_simulated_morning_agrees_in_metrics_audit_and_console() {
    let app = spawn_app().await;
    let epr = app.add_epr("epr").await;
    let ward7a = TestWorkstation::enrol(&app, "w7-bay-1", "Ward 7").await;
    let ward7b = TestWorkstation::enrol(&app, "w7-bay-2", "Ward 7").await;
    let ward9 = TestWorkstation::enrol(&app, "w9-station", "Ward 9").await;
    for (name, uid) in [("alice", "A11CE0"), ("bob", "B0B0"), ("cara", "CA2A"), ("erin", "E2E2")] {
        enrol_badge(&app, name, uid).await;
    }
    app.add_user("dave").await;

    // Ward 7: Alice taps in with her PIN, taps again to lock, and later
    // resumes at the next bay on the hot path; Bob taps in at bay 1.
    tap_in(&app, &ward7a, "A11CE0").await;
    assert_eq!(ward7a.call(&app, "/tap", json!({"badge": "A11CE0"})).await["state"], "locked");
    let resumed = ward7b.call(&app, "/tap", json!({"badge": "A11CE0"})).await;
    assert_eq!(resumed["state"], "active", "{resumed}");
    let ticket = resumed["session_ticket"].as_str().unwrap().to_string();
    tap_in(&app, &ward7a, "B0B0").await;
    // An EPR on Alice's PC gets its token with no prompt.
    let exchange = [wardkey_core::client::GrantType::TokenExchange];
    app.add_client("epr-desktop", Auth::Secret, &exchange, wardkey_core::keys::SigningAlg::RS256).await;
    assert_eq!(ward7b.exchange(&app, &ticket, "epr-desktop").await.status(), 200);
    // Ward 9: Cara taps in; Erin gets her PIN wrong until the badge locks.
    tap_in(&app, &ward9, "CA2A").await;
    let asked = ward9.call(&app, "/tap", json!({"badge": "E2E2"})).await;
    for _ in 0..MAX_PIN_FAILURES {
        let r = ward9.send(&app, "/tap/pin", json!({"tap_id": asked["tap_id"], "pin": "135790"})).await;
        assert!(matches!(r.status().as_u16(), 401 | 403));
    }
    // Dave signs in to the EPR in a browser with his password.
    login_and_redeem(&app, "epr", &epr, "dave").await;

    // The audit log has one signin per sign-in, with where and how.
    let records = signins(&app, 5).await;
    let count =
        |ward: &str, method: &str| records.iter().filter(|d| d["ward"] == ward && d["method"] == method).count() as f64;
    assert_eq!((count("Ward 7", "badge_pin"), count("Ward 7", "badge"), count("Ward 9", "badge_pin")), (2.0, 1.0, 1.0));
    let dave = records.iter().find(|d| d["method"] == "password").unwrap();
    assert_eq!((dave["ward"].as_str(), dave["client_id"].as_str()), (Some("none"), Some("epr")));
    assert!(dave["address"].as_str().is_some_and(|a| a.starts_with("127.")), "{dave}");
    let resume = records.iter().find(|d| d["method"] == "badge").unwrap();
    assert_eq!(resume["workstation"], "w7-bay-2");
    let lock = audited(&app, "tap.lock").await;
    assert_eq!((lock[0].event.subject.as_str(), &lock[0].event.detail["ward"]), ("alice", &json!("Ward 7")));

    // The metrics say the same, per ward.
    let metrics = app.get("/metrics").await.text().await.unwrap();
    let signins_metric = samples(&metrics, "wardkey_signins_total");
    assert_eq!(signins_metric.get(r#"method="badge_pin",ward="Ward 7""#), Some(&2.0), "{signins_metric:?}");
    assert_eq!(signins_metric.get(r#"method="badge",ward="Ward 7""#), Some(&1.0));
    assert_eq!(signins_metric.get(r#"method="badge_pin",ward="Ward 9""#), Some(&1.0));
    assert_eq!(signins_metric.get(r#"method="password",ward="none""#), Some(&1.0));
    assert_eq!(samples(&metrics, "wardkey_wrong_pins_total").get(r#"ward="Ward 9""#), Some(&5.0));
    assert_eq!(samples(&metrics, "wardkey_lockouts_total").get(r#"kind="badge",ward="Ward 9""#), Some(&1.0));
    let steps = samples(&metrics, "wardkey_login_step_seconds_count");
    // Taps answered on Ward 7: Alice's and Bob's PIN prompts and the resume.
    assert_eq!(steps.get(r#"step="tap",ward="Ward 7""#), Some(&3.0), "{steps:?}");
    assert_eq!(steps.get(r#"step="pin",ward="Ward 7""#), Some(&2.0));
    assert_eq!(steps.get(r#"step="token_exchange",ward="Ward 7""#), Some(&1.0));
    assert_eq!(steps.get(r#"step="password",ward="none""#), Some(&1.0));
    let saved = samples(&metrics, "wardkey_time_saved_seconds_total");
    for ward in ["Ward 7", "Ward 9", "none"] {
        let from_audit: f64 =
            records.iter().filter(|d| d["ward"] == ward).map(|d| d["saved_seconds"].as_f64().unwrap()).sum();
        let counter = saved[&format!("ward=\"{ward}\"")];
        assert!((counter - from_audit).abs() < 0.01, "{ward}: counter {counter}, audit {from_audit}");
        // Each login is credited the published 105 s less what it took.
        let logins = records.iter().filter(|d| d["ward"] == ward).count() as f64;
        assert!(counter > logins * 100.0 && counter <= logins * 105.0, "{ward}: {counter}");
    }

    // And the console's dashboard shows those figures.
    let ops = staff(&app, "olly", &["ops"]).await;
    let cookie = session_cookie(&app, &ops, ACR_PASSKEY).await;
    let (status, html) = get_with(&app, &cookie, "/console").await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("<strong>5</strong>"), "five sign-ins today: {html}");
    let total: f64 = saved.values().sum();
    let shown = wardkey_idp::console::figures::hours(total);
    assert!(
        html.contains(&format!("id=\"saved-today\"><span>Time saved today</span><strong>{shown}</strong>")),
        "{shown}: {html}"
    );
    for (ward, n) in [("Ward 7", 3), ("Ward 9", 1), ("none", 1)] {
        assert!(html.contains(&format!("<td>{ward}</td><td>{n}</td>")), "{ward} {n}: {html}");
    }
    assert!(html.contains("<svg role=\"img\""), "charts are drawn on the server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_desk_fixes_a_locked_badge_in_a_real_browser() {
    let axe = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/axe/node_modules/axe-core/axe.min.js"),
    );
    if axe.is_err() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "axe-core is missing: ./scripts/test installs it");
    }
    let app = spawn_on_localhost_with(|_| {}).await;
    staff(&app, "sam", &["service-desk"]).await;
    enrol_badge(&app, "drsmith", "D5D5").await;
    let ward = TestWorkstation::enrol(&app, "w7-bay-1", "Ward 7").await;
    let asked = ward.call(&app, "/tap", json!({"badge": "D5D5"})).await;
    for _ in 0..MAX_PIN_FAILURES {
        ward.send(&app, "/tap/pin", json!({"tap_id": asked["tap_id"], "pin": "135790"})).await;
    }
    assert_eq!(ward.send(&app, "/tap", json!({"badge": "D5D5"})).await.status(), 403, "Dr Smith's badge is locked");

    let chromium = Chromium::start().await;
    let page = chromium.new_page().await;
    page.set_viewport(1280, 800).await;
    page.add_virtual_authenticator("internal", true).await;
    // Sam gets a passkey through a service-desk invite, then opens the
    // console: it asks for the passkey, and the passkey lets Sam in.
    open_invite(&app, &page, "sam").await;
    add_key(&app, &page, "Desk laptop", "passkey").await;
    page.navigate(&app.url("/console")).await;
    page.wait_for("location.pathname === '/console/sign-in' && !document.getElementById('passkey-sign-in').hidden")
        .await;
    page.screenshot(&screenshot_path("console-sign-in.png")).await;
    page.eval("document.querySelector('#passkey-sign-in button').click(); true").await.unwrap();
    page.wait_for("location.pathname === '/console' && document.getElementById('saved-today') !== null").await;
    let mut checked = Vec::new();
    let mut check = async |name: &str| {
        for (width, height, size) in [(1280, 800, "desktop"), (768, 1024, "tablet")] {
            page.set_viewport(width, height).await;
            page.screenshot(&screenshot_path(&format!("console-{name}-{size}.png"))).await;
            if let Ok(axe) = &axe {
                let violations = page.axe(axe).await;
                let serious: Vec<&Value> = violations
                    .iter()
                    .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
                    .collect();
                assert!(serious.is_empty(), "axe-core on {name} ({size}): {serious:#?}");
                let minor: Vec<&str> = violations.iter().filter_map(|v| v["id"].as_str()).collect();
                checked.push(format!("{name} {size}: minor {minor:?}"));
            }
        }
        page.set_viewport(1280, 800).await;
    };
    check("dashboard").await;

    // Find Dr Smith: the list shows the account, the page shows the lock.
    page.navigate(&app.url("/console/users?q=smith")).await;
    let listed: String = page.eval("document.querySelector('table').innerText").await.unwrap().as_str().unwrap().into();
    assert!(listed.contains("locked"), "the list shows a badge locked by wrong PINs: {listed}");
    check("users").await;
    page.eval("document.querySelector('a[href=\"/console/users/drsmith\"]').click(); true").await.unwrap();
    page.wait_for("location.pathname === '/console/users/drsmith'").await;
    let status: String =
        page.eval("document.getElementById('status').innerText").await.unwrap().as_str().unwrap().into();
    assert!(status.contains("badge locked"), "{status}");
    check("user").await;
    // Unlock, then a new PIN.
    page.eval("[...document.querySelectorAll('form button')].find(b => b.innerText === 'Unlock').click(); true")
        .await
        .unwrap();
    page.wait_for("document.body.innerText.includes('drsmith is unlocked')").await;
    page.eval("document.getElementById('pin').value = '975318'; document.getElementById('pin').form.submit(); true")
        .await
        .unwrap();
    page.wait_for("document.body.innerText.includes('A new PIN is set for drsmith')").await;
    page.screenshot(&screenshot_path("console-user-done.png")).await;
    // The badge works again, with the new PIN.
    let asked = ward.call(&app, "/tap", json!({"badge": "D5D5"})).await;
    assert_eq!(asked["state"], "pin_required");
    let answer = ward.call(&app, "/tap/pin", json!({"tap_id": asked["tap_id"], "pin": "975318"})).await;
    assert_eq!(answer["state"], "active", "{answer}");

    // Enrol a workstation: the page shows a code that enrols once.
    page.navigate(&app.url("/console/workstations")).await;
    page.eval(
        "document.getElementById('ws-name').value = 'w7-bay-3'; document.getElementById('ws-ward').value = 'Ward 7'; \
         document.getElementById('ws-name').form.submit(); true",
    )
    .await
    .unwrap();
    page.wait_for("document.getElementById('enrolment-code') !== null").await;
    check("workstations").await;
    let code = page.eval("document.getElementById('enrolment-code').innerText").await.unwrap();
    let (key, _) = wardkey_proto::signer::WorkstationKey::generate().unwrap();
    let request = json!({"code": code, "public_key": key.public_key_b64()});
    let r = app.http.post(app.url("/tap/enrol")).json(&request).send().await.unwrap();
    assert_eq!(r.status(), 200, "the console's code enrols the workstation");

    // Each action is in the audit view, under Sam's name.
    page.navigate(&app.url("/console/audit?actor=console:sam")).await;
    let audit: String = page.eval("document.querySelector('table').innerText").await.unwrap().as_str().unwrap().into();
    for event in ["user.unlock", "user.set_pin", "workstation.create"] {
        assert!(audit.contains(event), "{event} missing from the audit view:\n{audit}");
    }
    check("audit").await;
    // The service desk sees applications but no form to add one.
    page.navigate(&app.url("/console/clients")).await;
    assert_eq!(page.eval("document.getElementById('client-id') === null").await.unwrap(), true);
    check("clients").await;
    // A form whose token was tampered with: the refusal page, with a way back.
    page.navigate(&app.url("/console/workstations")).await;
    page.eval(
        "const f = document.querySelector('form[action$=\"/disable\"]'); f.querySelector('[name=csrf]').value = 'forged'; \
         f.submit(); true",
    )
    .await
    .unwrap();
    page.wait_for("document.body.innerText.includes('nothing was changed')").await;
    check("refused").await;
    // A password-level session is told why it must sign in with a key.
    page.navigate(&app.url("/console/sign-in?level=1")).await;
    check("sign-in-level").await;
    // The dashboard with Dr Smith's sign-in on Ward 7 in it.
    page.navigate(&app.url("/console")).await;
    page.wait_for("document.body.innerText.includes('Ward 7')").await;
    check("dashboard-after").await;
    eprintln!("axe-core: {checked:?}");
}

#[tokio::test]
async fn only_the_right_people_change_things_in_the_console() {
    let app = spawn_app().await;
    let sam = staff(&app, "sam", &["service-desk"]).await;
    let olly = staff(&app, "olly", &["ops"]).await;
    let nora = staff(&app, "nora", &["R8000"]).await;
    app.add_user("dave").await;
    let disable = "/console/users/dave/disable";

    // Nobody signed in: the sign-in page. A password is not enough.
    let (status, _) = get_with(&app, "", "/console").await;
    assert_eq!(status, 303);
    let password = session_cookie(&app, &sam, ACR_PASSWORD).await;
    let r = no_redirects(false).get(app.url("/console")).header("cookie", &password).send().await.unwrap();
    assert_eq!(location(&r), "/console/sign-in?level=1");
    let (_, page) = get_with(&app, "", "/console/sign-in?level=1").await;
    assert!(page.contains("needs a passkey or security key"), "{page}");

    // No console role: a clear refusal, nothing shown.
    let nora_cookie = session_cookie(&app, &nora, ACR_PASSKEY).await;
    let (status, page) = get_with(&app, &nora_cookie, "/console/users").await;
    assert_eq!(status, 403);
    assert!(page.contains("your account has no console role"), "{page}");
    assert!(!page.contains("dave"), "no user data for someone without a role");

    // Ops can look, with the form token, but a change is refused.
    let olly_cookie = session_cookie(&app, &olly, ACR_PASSKEY).await;
    let (status, page) = get_with(&app, &olly_cookie, "/console/users/dave").await;
    assert_eq!(status, 200);
    assert!(page.contains("can look but not change"), "{page}");
    // Ops pages have no forms; this is the token a form of Olly's would carry.
    let olly_session = olly_cookie.trim_start_matches("wardkey_session=");
    let olly_csrf = wardkey_core::secret::digest_b64(&format!("wardkey-console-form:{olly_session}"));
    let (status, page) = post_with(&app, &olly_cookie, disable, &[("csrf", &olly_csrf)], None).await;
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("can look but not make this change"), "{page}");

    // Sam can, but not with a forged token, Olly's token, from another
    // site, or thirty times at once with stolen tokens.
    let sam_cookie = session_cookie(&app, &sam, ACR_PASSKEY).await;
    let sam_page = get_with(&app, &sam_cookie, "/console/users/dave").await.1;
    let csrf = csrf_of(&sam_page);
    for (token, origin) in
        [("forged", None), (olly_csrf.as_str(), None), ("", None), (csrf.as_str(), Some("https://evil.example"))]
    {
        let (status, page) = post_with(&app, &sam_cookie, disable, &[("csrf", token)], origin).await;
        assert_eq!(status, 403, "{token} {origin:?}: {page}");
        assert!(page.contains("nothing was changed"));
    }
    let forged = (0..30).map(|i| {
        let (app, cookie) = (&app, &sam_cookie);
        async move { post_with(app, cookie, disable, &[("csrf", &format!("guess{i}"))], None).await.0 }
    });
    assert!(futures_util::future::join_all(forged).await.iter().all(|s| *s == 403));
    let dave = app.state.store.user_by_username("dave").await.unwrap().unwrap();
    assert!(!dave.disabled, "no refused form changed anything");
    assert!(audited(&app, "user.disable").await.is_empty());

    // A stale sign-in may look but must sign in again to change.
    app.clock.advance(16 * 60);
    let (status, page) = post_with(&app, &sam_cookie, disable, &[("csrf", &csrf)], Some(&app.issuer)).await;
    assert_eq!(status, 403);
    assert!(page.contains("Sign in again"), "{page}");
    // Fresh again: the change is made and audited under Sam's name.
    let sam_cookie = session_cookie(&app, &sam, ACR_PASSKEY).await;
    let csrf = csrf_of(&get_with(&app, &sam_cookie, "/console/users/dave").await.1);
    let (status, page) = post_with(&app, &sam_cookie, disable, &[("csrf", &csrf)], Some(&app.issuer)).await;
    assert_eq!(status, 200, "{page}");
    assert!(app.state.store.user_by_username("dave").await.unwrap().unwrap().disabled);
    assert_eq!(audited(&app, "user.disable").await[0].event.actor, "console:sam");

    // The service desk cannot add applications; bad input is explained.
    let (status, page) =
        post_with(&app, &sam_cookie, "/console/clients", &[("csrf", &csrf), ("client_id", "x")], None).await;
    assert_eq!(status, 403, "{page}");
    let (status, page) =
        post_with(&app, &sam_cookie, "/console/users/dave/pin", &[("csrf", &csrf), ("pin", "111111")], None).await;
    assert_eq!(status, 422, "{page}");
    assert!(page.contains("Nothing was changed"), "{page}");
    let (status, _) = post_with(&app, &sam_cookie, "/console/users/nobody/unlock", &[("csrf", &csrf)], None).await;
    assert_eq!(status, 404);

    // The service desk cannot take over an account with a console role:
    // an invite would let them add their own passkey to it.
    let ada = staff(&app, "ada", &["admin"]).await;
    for action in ["invite", "disable", "pin"] {
        let form = [("csrf", csrf.as_str()), ("pin", "975318")];
        let (status, page) = post_with(&app, &sam_cookie, &format!("/console/users/ada/{action}"), &form, None).await;
        assert_eq!(status, 403, "{action}: {page}");
        assert!(page.contains("only an administrator can change their account"), "{page}");
    }
    // Thirty at once, with Sam's own valid token, change nothing either.
    let invites = (0..30).map(|_| {
        let (app, cookie, csrf) = (&app, &sam_cookie, &csrf);
        async move { post_with(app, cookie, "/console/users/ada/invite", &[("csrf", csrf)], None).await.0 }
    });
    assert!(futures_util::future::join_all(invites).await.iter().all(|s| *s == 403));
    assert!(audited(&app, "user.invite").await.is_empty());
    // An oversized form is refused before it is read.
    let huge = "9".repeat(4 << 20);
    let (status, _) =
        post_with(&app, &sam_cookie, "/console/users/dave/pin", &[("csrf", &csrf), ("pin", &huge)], None).await;
    assert_eq!(status, 413);
    // An administrator can, and gets the CLI's rules for applications.
    let ada_cookie = session_cookie(&app, &ada, ACR_PASSKEY).await;
    let ada_csrf = csrf_of(&get_with(&app, &ada_cookie, "/console/clients").await.1);
    for uri in ["javascript:alert(1)", "http://epr.example/cb", "https://epr.example/*"] {
        let form = [("csrf", ada_csrf.as_str()), ("client_id", "epr"), ("redirect_uri", uri), ("type", "confidential")];
        let (status, page) = post_with(&app, &ada_cookie, "/console/clients", &form, None).await;
        assert_eq!(status, 422, "{uri}: {page}");
    }
    let form = [("csrf", ada_csrf.as_str()), ("client_id", "epr"), ("redirect_uri", "https://epr.example/cb")];
    let (status, page) = post_with(&app, &ada_cookie, "/console/clients", &form, None).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("id=\"client-secret\""), "the secret is shown once: {page}");
    let (status, _) = post_with(
        &app,
        &sam_cookie,
        "/console/workstations",
        &[("csrf", &csrf), ("name", "<script>"), ("ward", "7")],
        None,
    )
    .await;
    assert_eq!(status, 422);
}

/// The live copy for a SIEM follows the chain as it is written, from every
/// writer: a file of JSON lines whose hashes link, and RFC 5424 over UDP.
// Two threads: the test waits for the datagram on a blocking socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_reaches_a_siem_as_it_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.jsonl");
    let spec = format!("file:{}", file.display());
    let app = TestApp::builder().settings(|s| s.audit.sink = Some(spec)).spawn().await;
    enrol_badge(&app, "alice", "A11CE0").await;
    let ward = TestWorkstation::enrol(&app, "w7-bay-1", "Ward 7").await;
    tap_in(&app, &ward, "A11CE0").await;
    let mut lines = Vec::new();
    for _ in 0..100 {
        lines = std::fs::read_to_string(&file).unwrap_or_default().lines().map(str::to_string).collect();
        if lines.iter().any(|l| l.contains("\"signin\"")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let records: Vec<Value> = lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(records.iter().any(|r| r["event"] == "signin" && r["detail"]["ward"] == "Ward 7"), "{lines:?}");
    for pair in records.windows(2) {
        assert_eq!(pair[1]["prev_hash"], pair[0]["hash"], "the SIEM's copy is a chain too");
    }

    let siem = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    siem.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let spec = format!("syslog:{}", siem.local_addr().unwrap());
    let app = TestApp::builder().settings(|s| s.audit.sink = Some(spec)).spawn().await;
    app.add_user("bob").await;
    let admin =
        wardkey_idp::admin::Admin::new(app.state.store.clone(), app.state.clock.clone(), app.state.settings.clone());
    admin.unlock("cli:sam", "bob").await.unwrap();
    let mut buffer = [0u8; 4096];
    let n = siem.recv(&mut buffer).expect("a syslog message arrives");
    let message = String::from_utf8_lossy(&buffer[..n]);
    assert!(
        message.starts_with("<86>1 ") && message.contains("user.unlock") && message.contains("actor=\"cli:sam\""),
        "{message}"
    );
}
