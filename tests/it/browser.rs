//! Passkeys and security keys in a real headless Chromium with the DevTools
//! virtual authenticator: add a passkey after a password sign-in, sign out,
//! sign in with the passkey alone and finish an EPR's code flow; add a
//! security key and step up to it when an application asks for the highest
//! acr; refuse a replayed and a wrong-origin assertion. The sign-in page's
//! screenshot lands in `target/screenshots/` for a person to look at.

use serde_json::Value;
use url::Url;
use wardkey_core::client::{Client, ClientAuth, GrantType};
use wardkey_core::clock::Clock;
use wardkey_core::keys::SigningAlg;
use wardkey_core::secret::{digest, new_secret};
use wardkey_testsupport::chromium::{Chromium, Page};

use crate::helpers::*;

/// A server whose issuer is `http://localhost:PORT`: browsers accept
/// `localhost` as a WebAuthn relying party id, never an IP address.
async fn spawn_on_localhost() -> TestApp {
    spawn_on_localhost_with(|_| {}).await
}

/// [`spawn_on_localhost`] after `tweak` adjusts its settings.
pub(crate) async fn spawn_on_localhost_with(tweak: impl FnOnce(&mut wardkey_idp::Settings)) -> TestApp {
    let port = wardkey_testsupport::free_port();
    let mut app = TestApp::builder()
        .settings(|s| {
            on_localhost(s, port);
            tweak(s);
        })
        .spawn()
        .await;
    app.base = app.issuer.clone();
    app
}

/// Listen on `port` with the issuer `http://localhost:PORT`.
pub(crate) fn on_localhost(s: &mut wardkey_idp::Settings, port: u16) {
    s.server.listen = format!("127.0.0.1:{port}");
    s.server.public_url = format!("http://localhost:{port}");
}

/// Type `username` and the test password into the sign-in form and send it.
async fn submit_password(page: &Page, username: &str) {
    page.eval(&format!(
        "document.getElementById('username').value = {username:?}; \
         document.getElementById('password').value = {PASSWORD:?}; \
         document.querySelector('form[action=\"/login\"]').submit(); true"
    ))
    .await
    .unwrap();
}

/// Open a service-desk invite for `username` in the page, as a clinician
/// would: the link, then its Continue button, landing on the keys page.
pub(crate) async fn open_invite(app: &TestApp, page: &Page, username: &str) {
    let token = app.invite(username).await;
    page.navigate(&app.url(&format!("/account/invite/{token}"))).await;
    page.screenshot(&screenshot_path("invite.png")).await;
    page.eval("document.querySelector('form[method=\"post\"] button').click(); true").await.unwrap();
    page.wait_for("location.pathname === '/account/keys' && document.getElementById('add-key') !== null").await;
}

/// A relying party's redirect target that just says "ok", so the browser
/// lands somewhere real with the code in its address bar.
async fn spawn_callback() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://localhost:{}", listener.local_addr().unwrap().port());
    let app = axum::Router::new().fallback(|| async { "ok" });
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

/// Register the EPR `epr` with `callback` as its redirect URI; its secret.
async fn add_epr_at(app: &TestApp, callback: &str) -> String {
    let secret = new_secret();
    let client = Client {
        client_id: "epr".into(),
        auth: ClientAuth::Secret { digest: digest(&secret).to_vec() },
        redirect_uris: vec![callback.into()],
        post_logout_redirect_uris: vec![],
        backchannel_logout_uri: None,
        grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
        id_token_alg: SigningAlg::ES256,
        start_url: None,
        min_acr: None,
        created_at: app.clock.now(),
    };
    app.state.store.create_client(&client).await.unwrap();
    secret
}

fn authorize(app: &TestApp, callback: &str, acr_values: Option<&str>) -> (String, String) {
    let (verifier, challenge) = pkce_pair();
    let mut url = Url::parse(&app.url("/authorize")).unwrap();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", "epr")
        .append_pair("redirect_uri", callback)
        .append_pair("scope", "openid profile")
        .append_pair("state", "s")
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    if let Some(acr) = acr_values {
        url.query_pairs_mut().append_pair("acr_values", acr);
    }
    (url.to_string(), verifier)
}

/// Wait for the browser to land on `callback` and redeem the code there;
/// the ID token's claims.
async fn redeem(app: &TestApp, page: &Page, callback: &str, verifier: &str, secret: &str) -> Value {
    page.wait_for(&format!("location.href.startsWith({:?})", format!("{callback}?"))).await;
    let landed = Url::parse(&page.url().await).unwrap();
    let code = query_param(&landed, "code").expect("a code at the callback");
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", callback),
        ("code_verifier", verifier),
    ];
    let r = app.post_form("/token", &form, Some(("epr", secret))).await;
    assert_eq!(r.status(), 200);
    let tokens: Value = r.json().await.unwrap();
    let id_token = tokens["id_token"].as_str().unwrap();
    let payload = id_token.split('.').nth(1).unwrap();
    use base64::Engine;
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// Add a key named `name` of `kind` on the account page, as a person would.
pub(crate) async fn add_key(app: &TestApp, page: &Page, name: &str, kind: &str) {
    page.navigate(&app.url("/account/keys")).await;
    page.eval(&format!(
        "document.getElementById('key-name').value = {name:?}; document.getElementById('key-kind').value = {kind:?}; \
         document.querySelector('#add-key button').click(); true"
    ))
    .await
    .unwrap();
    page.wait_for(&format!("[...document.querySelectorAll('td')].some(td => td.innerText === {name:?})")).await;
}

pub(crate) fn screenshot_path(name: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passkeys_and_security_keys_in_a_real_browser() {
    let app = spawn_on_localhost().await;
    let callback = format!("{}/cb", spawn_callback().await);
    app.add_user("nia").await;
    let secret = add_epr_at(&app, &callback).await;
    let chromium = Chromium::start().await;
    let page = chromium.new_page().await;
    let laptop = page.add_virtual_authenticator("internal", true).await;

    // Password first: the sign-in page offers the passkey, then the form.
    let (url, verifier) = authorize(&app, &callback, None);
    page.navigate(&url).await;
    page.wait_for("!document.getElementById('passkey-sign-in').hidden").await;
    page.screenshot(&screenshot_path("sign-in.png")).await;
    submit_password(&page, "nia").await;
    let claims = redeem(&app, &page, &callback, &verifier, &secret).await;
    assert_eq!(claims["acr"], "urn:wardkey:acr:pwd");

    // A password alone adds no key: the page says how to get there.
    page.navigate(&app.url("/account/keys")).await;
    page.wait_for("document.getElementById('sign-in-again') !== null").await;
    assert_eq!(page.eval("document.getElementById('add-key') === null").await.unwrap(), true);
    page.screenshot(&screenshot_path("keys-sign-in-again.png")).await;

    // With the service desk's invite: add a passkey, then sign out.
    open_invite(&app, &page, "nia").await;
    add_key(&app, &page, "Ward laptop", "passkey").await;
    assert_eq!(page.credentials(&laptop).await.len(), 1);
    page.screenshot(&screenshot_path("keys.png")).await;
    page.navigate(&app.url("/logout")).await;
    page.eval("document.querySelector('form').submit(); true").await.unwrap();
    page.wait_for("document.body.innerText.includes('You have signed out')").await;

    // The passkey alone signs in and completes the EPR's code flow.
    let (url, verifier) = authorize(&app, &callback, None);
    page.navigate(&url).await;
    page.wait_for("!document.getElementById('passkey-sign-in').hidden").await;
    page.eval("document.querySelector('#passkey-sign-in button').click(); true").await.unwrap();
    let claims = redeem(&app, &page, &callback, &verifier, &secret).await;
    assert_eq!(claims["acr"], "urn:wardkey:acr:passkey");
    assert_eq!(claims["amr"], serde_json::json!(["swk", "mfa"]));
    let passkey_time = claims["auth_time"].as_i64().unwrap();

    // A copy of the passkey elsewhere shows as a signature counter that goes
    // backwards (WebAuthn L2 §6.1.1): refused, audited, and the page says why.
    let nia = app.state.store.user_by_username("nia").await.unwrap().unwrap();
    let stored = app.state.store.webauthn_credentials(&nia.id).await.unwrap().remove(0);
    let mut data: Value = serde_json::from_str(&stored.data).unwrap();
    data["cred"]["counter"] = 1000.into();
    app.state.store.update_webauthn_credential(&stored.id, &data.to_string(), 0).await.unwrap();
    // (Asking for the security-key level sends the passkey session back to
    // the sign-in page.)
    let (url, _) = authorize(&app, &callback, Some("urn:wardkey:acr:security-key"));
    page.navigate(&url).await;
    page.wait_for("!document.getElementById('passkey-sign-in').hidden").await;
    page.eval("document.querySelector('#passkey-sign-in button').click(); true").await.unwrap();
    page.wait_for("!document.getElementById('passkey-error').hidden").await;
    let said = page.eval("document.getElementById('passkey-error').innerText").await.unwrap();
    assert!(said.as_str().unwrap().contains("may have been copied"), "{said}");
    let audit = app.state.store.recent_audit(100).await.unwrap();
    assert!(audit.iter().any(|e| e.event == "webauthn.cloned_suspected"));
    // The key is suspended, not just refused once: even with its counter
    // mended it signs nobody in until the service desk turns it back on.
    let suspended = app.state.store.webauthn_credential(&stored.id).await.unwrap().unwrap();
    assert!(suspended.suspended_at.is_some(), "suspended");
    data["cred"]["counter"] = 0.into();
    app.state.store.update_webauthn_credential(&stored.id, &data.to_string(), 0).await.unwrap();
    page.eval(
        "document.getElementById('passkey-error').hidden = true; \
               document.querySelector('#passkey-sign-in button').click(); true",
    )
    .await
    .unwrap();
    page.wait_for("document.getElementById('passkey-error').innerText.includes('suspended')").await;
    app.state.store.set_webauthn_suspended(&nia.id, &stored.id, None).await.unwrap();
    // With the counter mended, the passkey verifies but is below what the
    // application asked for: refused, in words.
    page.eval(
        "document.getElementById('passkey-error').hidden = true; \
               document.querySelector('#passkey-sign-in button').click(); true",
    )
    .await
    .unwrap();
    page.wait_for("document.getElementById('passkey-error').innerText.includes('passkey is not enough')").await;

    // A roaming key, chosen as a security key. No approved models are
    // listed, so nothing vouches that it is hardware-bound: it is listed
    // and signs in as a passkey (AAL2).
    page.remove_virtual_authenticator(&laptop).await;
    let _usb = page.add_virtual_authenticator("usb", true).await;
    add_key(&app, &page, "Blue key", "security_key").await;
    let row = page
        .eval("[...document.querySelectorAll('tr')].find(tr => tr.innerText.includes('Blue key')).innerText")
        .await
        .unwrap();
    assert!(row.as_str().unwrap().contains("Passkey"), "{row}");
    // Signed in again with the password, an application that needs a
    // passkey makes the session step up to the key, without a password form.
    page.navigate(&app.url("/logout")).await;
    page.eval("document.querySelector('form').submit(); true").await.unwrap();
    page.wait_for("document.body.innerText.includes('You have signed out')").await;
    let (url, verifier) = authorize(&app, &callback, None);
    page.navigate(&url).await;
    page.wait_for("document.getElementById('password') !== null").await;
    submit_password(&page, "nia").await;
    let claims = redeem(&app, &page, &callback, &verifier, &secret).await;
    assert_eq!(claims["acr"], "urn:wardkey:acr:pwd");
    let password_time = claims["auth_time"].as_i64().unwrap();
    assert!(password_time >= passkey_time);
    app.clock.advance(5);
    let (url, verifier) = authorize(&app, &callback, Some("urn:wardkey:acr:passkey"));
    page.navigate(&url).await;
    page.wait_for("!document.getElementById('passkey-sign-in').hidden").await;
    let text = page.eval("document.body.innerText").await.unwrap();
    assert!(text.as_str().unwrap().contains("passkey or a security key"), "{text}");
    assert_eq!(page.eval("document.getElementById('password') === null").await.unwrap(), true);
    page.eval("document.querySelector('#passkey-sign-in button').click(); true").await.unwrap();
    let claims = redeem(&app, &page, &callback, &verifier, &secret).await;
    assert_eq!(claims["acr"], "urn:wardkey:acr:passkey");
    assert_eq!(claims["amr"], serde_json::json!(["swk", "mfa"]));
    assert!(claims["auth_time"].as_i64().unwrap() > password_time, "auth_time moves with the step-up");
    assert!(claims["sid"].is_string());
    // An application that needs a hardware key is told this one will not do.
    let (url, _) = authorize(&app, &callback, Some("urn:wardkey:acr:security-key"));
    page.navigate(&url).await;
    page.wait_for("!document.getElementById('passkey-sign-in').hidden").await;
    page.eval("document.querySelector('#passkey-sign-in button').click(); true").await.unwrap();
    page.wait_for("document.getElementById('passkey-error').innerText.includes('passkey is not enough')").await;

    // A replayed assertion: the ceremony is single use, and a fresh
    // ceremony's challenge does not match the old answer.
    page.navigate(&app.url("/account/keys")).await;
    let replay = page
        .eval(
            "(async () => {
               const post = (u, b) => fetch(u, {method: 'POST', headers: {'content-type': 'application/json'},
                                                 body: JSON.stringify(b)});
               const s = await (await post('/webauthn/login/start', {request: ''})).json();
               const c = await navigator.credentials.get({publicKey:
                 PublicKeyCredential.parseRequestOptionsFromJSON(s.options.publicKey)});
               const body = {ceremony: s.ceremony, credential: c.toJSON()};
               const first = (await post('/webauthn/login/finish', body)).status;
               const again = (await post('/webauthn/login/finish', body)).status;
               const s2 = await (await post('/webauthn/login/start', {request: ''})).json();
               const other = (await post('/webauthn/login/finish', {...body, ceremony: s2.ceremony})).status;
               return [first, again, other];
             })()",
        )
        .await
        .unwrap();
    assert_eq!(replay, serde_json::json!([200, 410, 401]), "first use, same ceremony again, old answer to a new one");

    // An assertion made on another origin (same rp id, another port) for
    // a challenge of ours is refused.
    let start: Value = app
        .http
        .post(app.url("/webauthn/login/start"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    page.navigate(&callback).await;
    let foreign = page
        .eval(&format!(
            "(async () => {{
               const c = await navigator.credentials.get({{publicKey:
                 PublicKeyCredential.parseRequestOptionsFromJSON({options})}});
               return c.toJSON();
             }})()",
            options = start["options"]["publicKey"]
        ))
        .await
        .unwrap();
    let r = app
        .http
        .post(app.url("/webauthn/login/finish"))
        .json(&serde_json::json!({"ceremony": start["ceremony"], "credential": foreign}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "a wrong-origin assertion");
    let audit = app.state.store.recent_audit(100).await.unwrap();
    assert!(audit.iter().any(|e| e.event == "webauthn.register"));
}

#[tokio::test]
async fn webauthn_endpoints_refuse_hostile_and_out_of_order_input() {
    let app = spawn_on_localhost().await;
    app.add_user("omar").await;
    let post = |path: &str, content_type: &str, body: &str| {
        app.http.post(app.url(path)).header("content-type", content_type).body(body.to_string()).send()
    };
    let error = |r: reqwest::Response, status: u16| async move {
        assert_eq!(r.status(), status);
        let body: Value = r.json().await.unwrap();
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
        body["error"].as_str().unwrap().to_string()
    };
    // A form post (what a cross-site page can send without CORS) is refused.
    let r = post("/webauthn/login/start", "application/x-www-form-urlencoded", "request=").await.unwrap();
    assert_eq!(error(r, 400).await, "invalid_request");
    let r = post("/webauthn/login/start", "application/json", "{not json").await.unwrap();
    assert_eq!(error(r, 400).await, "invalid_request");
    // A sign-in for a pending request that does not exist.
    let r = post("/webauthn/login/start", "application/json", r#"{"request":"nope"}"#).await.unwrap();
    assert_eq!(error(r, 410).await, "expired");
    // A sign-in returns only to the server's own pages, never elsewhere.
    for next in ["https://evil.example/", "//evil.example", "/console/../logout", "/account/keys?x"] {
        let body = serde_json::json!({"next": next}).to_string();
        let r = post("/webauthn/login/start", "application/json", &body).await.unwrap();
        assert_eq!(error(r, 400).await, "invalid_request", "{next}");
    }
    // Finishing a ceremony nobody started, or with a malformed credential.
    let credential = r#"{"id":"AA","rawId":"AA","type":"public-key","extensions":{},
        "response":{"authenticatorData":"AA","clientDataJSON":"AA","signature":"AA","userHandle":null}}"#;
    let body = format!(r#"{{"ceremony":"never-started","credential":{credential}}}"#);
    let r = post("/webauthn/login/finish", "application/json", &body).await.unwrap();
    assert_eq!(error(r, 410).await, "expired");
    let r = post("/webauthn/login/finish", "application/json", r#"{"ceremony":"x","credential":42}"#).await.unwrap();
    assert_eq!(error(r, 400).await, "invalid_request");
    // A started ceremony answered with garbage: refused, and used up.
    let start: Value = post("/webauthn/login/start", "application/json", "{}").await.unwrap().json().await.unwrap();
    let body = format!(r#"{{"ceremony":{},"credential":{credential}}}"#, start["ceremony"]);
    let r = post("/webauthn/login/finish", "application/json", &body).await.unwrap();
    assert_eq!(error(r, 401).await, "refused");
    let r = post("/webauthn/login/finish", "application/json", &body).await.unwrap();
    assert_eq!(error(r, 410).await, "expired");
    // Registration and the account page need a signed-in session.
    let r = post("/account/keys/register/start", "application/json", r#"{"kind":"passkey","name":"x"}"#).await.unwrap();
    assert_eq!(error(r, 401).await, "not_signed_in");
    assert_eq!(app.get("/account/keys").await.status(), 401);
    let r = app.post_form("/account/keys/revoke", &[("id", "AA")], None).await;
    assert_eq!(r.status(), 400, "no CSRF token");
    // Signed in: an unknown kind, an empty name, a registration nobody started.
    let browser = no_redirects(true);
    let (url, _) = authorize_url(&app, "web", &[]);
    app.add_epr("web").await;
    app.browser_authorize(&browser, &url, "omar").await;
    let signed_in = |path: &str, body: &str| {
        browser.post(app.url(path)).header("content-type", "application/json").body(body.to_string()).send()
    };
    let r = signed_in("/account/keys/register/start", r#"{"kind":"usb-stick","name":"x"}"#).await.unwrap();
    assert_eq!(error(r, 400).await, "invalid_request");
    let r = signed_in("/account/keys/register/start", r#"{"kind":"passkey","name":"  "}"#).await.unwrap();
    assert_eq!(error(r, 400).await, "invalid_request");
    let r = signed_in("/account/keys/register/finish", r#"{"ceremony":"x","credential":{}}"#).await.unwrap();
    assert_eq!(error(r, 400).await, "invalid_request");
    let r = browser.get(app.url("/account/keys")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("no passkeys or security keys yet"));
    // Discovery lists every acr, weakest first.
    let discovery: Value = app.get("/.well-known/openid-configuration").await.json().await.unwrap();
    assert_eq!(
        discovery["acr_values_supported"],
        serde_json::json!([
            "urn:wardkey:acr:pwd",
            "urn:wardkey:acr:badge-pin",
            "urn:wardkey:acr:passkey",
            "urn:wardkey:acr:security-key"
        ])
    );
}

#[tokio::test]
async fn an_application_that_needs_a_key_is_not_given_a_password_sign_in() {
    let app = spawn_on_localhost().await;
    app.add_user("pat").await;
    let secret = app.add_epr("web").await;
    // A password session exists…
    let browser = no_redirects(true);
    let (url, _) = authorize_url(&app, "web", &[]);
    app.browser_authorize(&browser, &url, "pat").await;
    // …but the application asks for a passkey: the browser is sent to sign
    // in again, prompt=none fails, and the password form is refused.
    let (url, _) = authorize_url(&app, "web", &[("acr_values", "urn:wardkey:acr:passkey")]);
    let r = browser.get(&url).send().await.unwrap();
    let login = location(&r);
    assert!(login.starts_with("/login?request="), "{login}");
    let page = browser.get(app.url(&login)).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("needs you to sign in with a passkey"), "{page}");
    assert!(!page.contains("name=\"password\""));
    let (url, _) = authorize_url(&app, "web", &[("acr_values", "urn:wardkey:acr:passkey"), ("prompt", "none")]);
    let back = Url::parse(&location(&browser.get(&url).send().await.unwrap())).unwrap();
    assert_eq!(query_param(&back, "error").as_deref(), Some("login_required"));
    let request = login.trim_start_matches("/login?request=");
    // A password form from elsewhere, posted for this request, is refused.
    let plain = browser.get(app.url("/login")).send().await.unwrap().text().await.unwrap();
    let csrf = hidden_input(&plain, "csrf");
    let r = browser
        .post(app.url("/login"))
        .form(&[("csrf", csrf.as_str()), ("request", request), ("username", "pat"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("needs you to sign in with a passkey"));
    // Unknown acr values are ignored: the password session serves.
    let (url, _) = authorize_url(&app, "web", &[("acr_values", "urn:example:unknown")]);
    let back = Url::parse(&location(&browser.get(&url).send().await.unwrap())).unwrap();
    assert!(query_param(&back, "code").is_some());
    let _ = secret;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invite_lets_a_clinician_without_a_password_add_a_passkey_once() {
    let app = spawn_on_localhost().await;
    let callback = format!("{}/cb", spawn_callback().await);
    let secret = add_epr_at(&app, &callback).await;
    // A clinician with no password at all.
    let user = wardkey_core::user::NewUser {
        username: "quinn".into(),
        name: Some("Quinn".into()),
        email: None,
        roles: vec![],
    };
    let quinn = app.state.store.create_user(&user, None, app.clock.now()).await.unwrap();
    let token = new_secret();
    let expires = app.clock.now() + 3600;
    app.state.store.create_invite(&digest(&token), &quinn.id, app.clock.now(), expires).await.unwrap();

    let chromium = Chromium::start().await;
    let page = chromium.new_page().await;
    page.add_virtual_authenticator("internal", true).await;
    // The invite is not a sign-in: applications still ask Quinn to sign in.
    page.navigate(&app.url(&format!("/account/invite/{token}"))).await;
    page.eval("document.querySelector('form[method=\"post\"] button').click(); true").await.unwrap();
    page.wait_for("location.pathname === '/account/keys'").await;
    add_key(&app, &page, "Phone", "passkey").await;
    let (url, verifier) = authorize(&app, &callback, None);
    page.navigate(&url).await;
    assert!(page.url().await.contains("/login?request="), "an invite is no sign-in");
    page.wait_for("!document.getElementById('passkey-sign-in').hidden").await;
    page.eval("document.querySelector('#passkey-sign-in button').click(); true").await.unwrap();
    let claims = redeem(&app, &page, &callback, &verifier, &secret).await;
    assert_eq!(claims["sub"], quinn.id.as_str());
    assert_eq!(claims["acr"], "urn:wardkey:acr:passkey");

    // The link worked once.
    let again = app.http.post(app.url(&format!("/account/invite/{token}"))).send().await.unwrap();
    assert_eq!(again.status(), 400);
    assert!(again.text().await.unwrap().contains("already been used or has expired"));
}

#[tokio::test]
async fn a_clients_minimum_acr_applies_to_every_sign_in_and_token_exchange() {
    use crate::tap::{TestWorkstation, enrol_badge, tap_in};
    let app = spawn_on_localhost().await;
    enrol_badge(&app, "rae", "5EA1").await;
    let secret = app.add_epr("web").await;
    app.add_client("prescribing", Auth::Secret, &[GrantType::TokenExchange], SigningAlg::ES256).await;
    for id in ["web", "prescribing"] {
        let client = app.state.store.client(id).await.unwrap().unwrap();
        app.state.store.remove_client(id).await.unwrap();
        let client = Client { min_acr: Some("urn:wardkey:acr:security-key".into()), ..client };
        app.state.store.create_client(&client).await.unwrap();
    }
    app.sync_directory().await;
    // A password session is not enough for "web", without acr_values.
    let browser = no_redirects(true);
    let (url, _) = authorize_url(&app, "web", &[]);
    let r = browser.get(&url).send().await.unwrap();
    let login = location(&r);
    let page = browser.get(app.url(&login)).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("needs you to sign in with a hardware security key"), "{page}");
    let _ = secret;
    // A badge + PIN session gets no token for "prescribing" at the workstation.
    let ws = TestWorkstation::enrol(&app, "pc", "Ward 11").await;
    let ticket = tap_in(&app, &ws, "5EA1").await;
    let r = ws.exchange(&app, &ticket, "prescribing").await;
    let body = assert_oauth_error(r, 400, "insufficient_user_authentication").await;
    assert!(body["error_description"].as_str().unwrap().contains("security key"), "{body}");
}

/// A FIDO2 key as the agent's reader would drive one, in software: the
/// private key of a credential the virtual authenticator made, signing
/// WebAuthn assertions (authenticator data, then the client data's hash:
/// WebAuthn L2 §6.3.3) with the issuer as origin.
pub(crate) struct SoftKey {
    pub(crate) credential_id: Vec<u8>,
    pub(crate) user_handle: Vec<u8>,
    pub(crate) key: aws_lc_rs::signature::EcdsaKeyPair,
    pub(crate) counter: u32,
}

impl SoftKey {
    /// The first credential `authenticator` holds.
    async fn export(page: &Page, authenticator: &str) -> SoftKey {
        use base64::Engine;
        let b64 = |v: &Value| base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap()).unwrap();
        let credential = page.credentials(authenticator).await.remove(0);
        let pkcs8 = b64(&credential["privateKey"]);
        let key = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &pkcs8,
        )
        .unwrap();
        SoftKey {
            credential_id: b64(&credential["credentialId"]),
            user_handle: b64(&credential["userHandle"]),
            key,
            counter: credential["signCount"].as_u64().unwrap() as u32,
        }
    }

    /// An assertion for a `KeyChallenge`'s options, made at `origin`.
    pub(crate) fn assert(&mut self, options: &Value, origin: &str) -> Value {
        use base64::Engine;
        use sha2::Digest;
        let b64url = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        self.counter += 1;
        let rp_id = options["publicKey"]["rpId"].as_str().unwrap();
        let mut auth_data = sha2::Sha256::digest(rp_id.as_bytes()).to_vec();
        auth_data.push(0x05); // user present, user verified
        auth_data.extend_from_slice(&self.counter.to_be_bytes());
        let client_data = serde_json::json!({
            "type": "webauthn.get",
            "challenge": options["publicKey"]["challenge"],
            "origin": origin,
            "crossOrigin": false,
        })
        .to_string();
        let mut signed = auth_data.clone();
        signed.extend_from_slice(&sha2::Sha256::digest(client_data.as_bytes()));
        let signature = self.key.sign(&aws_lc_rs::rand::SystemRandom::new(), &signed).unwrap();
        serde_json::json!({
            "id": b64url(&self.credential_id),
            "rawId": b64url(&self.credential_id),
            "type": "public-key",
            "extensions": {},
            "response": {
                "authenticatorData": b64url(&auth_data),
                "clientDataJSON": b64url(client_data.as_bytes()),
                "signature": b64url(signature.as_ref()),
                "userHandle": b64url(&self.user_handle),
            },
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fido2_key_tapped_at_a_workstation_signs_in_at_its_own_level() {
    use crate::tap::TestWorkstation;
    let app = spawn_on_localhost().await;
    app.add_user("sam").await;
    app.add_client("epr", Auth::Secret, &[GrantType::TokenExchange], SigningAlg::ES256).await;
    // Sam enrols a FIDO2 badge as a security key on the account page (with
    // no approved models listed, it signs in as a passkey).
    let chromium = Chromium::start().await;
    let page = chromium.new_page().await;
    let nfc = page.add_virtual_authenticator("nfc", true).await;
    open_invite(&app, &page, "sam").await;
    add_key(&app, &page, "Sam badge 7", "security_key").await;
    let mut badge = SoftKey::export(&page, &nfc).await;

    // At a ward PC: challenge, the badge's answer, and Sam is in.
    let ws = TestWorkstation::enrol(&app, "pc", "Ward 12").await;
    let challenge = ws.call(&app, "/tap/key/start", serde_json::json!({})).await;
    let credential = badge.assert(&challenge["options"], &app.issuer);
    let answer = ws
        .call(&app, "/tap/key", serde_json::json!({"ceremony": challenge["ceremony"], "credential": credential}))
        .await;
    assert_eq!(answer["state"], "active", "{answer}");
    assert_eq!(answer["user"]["username"], "sam");
    let r = ws.exchange(&app, answer["session_ticket"].as_str().unwrap(), "epr").await;
    assert_eq!(r.status(), 200);
    let tokens: Value = r.json().await.unwrap();
    let payload = tokens["access_token"].as_str().unwrap().split('.').nth(1).unwrap();
    use base64::Engine;
    let claims: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    assert_eq!(claims["acr"], "urn:wardkey:acr:passkey");
    assert_eq!(claims["amr"], serde_json::json!(["swk", "mfa"]));

    // The same answer again, an answer for another origin, and a stale
    // ceremony are all refused.
    let again = ws
        .send(&app, "/tap/key", serde_json::json!({"ceremony": challenge["ceremony"], "credential": credential}))
        .await;
    assert_eq!(again.status(), 410);
    let challenge = ws.call(&app, "/tap/key/start", serde_json::json!({})).await;
    let phished = badge.assert(&challenge["options"], "https://wardkey.example.net");
    let r =
        ws.send(&app, "/tap/key", serde_json::json!({"ceremony": challenge["ceremony"], "credential": phished})).await;
    assert_eq!(r.status(), 403, "an assertion made for another origin");
    let r = ws.send(&app, "/tap/key", serde_json::json!({"ceremony": "nope", "credential": {}})).await;
    assert_eq!(r.status(), 400, "not an assertion");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_signs_a_clinician_in_with_a_tapped_fido2_key() {
    use base64::Engine;
    use wardkey_agent::fido2::ctap2::{CardSlot, Ctap2Key};
    use wardkey_agent::fido2::soft_card::SoftCard;
    use wardkey_agent::fido2::{KeyFile, SoftwareKey};
    use wardkey_proto::broker::WorkstationState;
    let app = spawn_on_localhost().await;
    app.add_user("tia").await;
    app.add_client("epr", Auth::Secret, &[GrantType::TokenExchange], SigningAlg::ES256).await;
    // Tia's FIDO2 badge, made by the virtual authenticator on the account
    // page, then held in a software key file the agent reads.
    let chromium = Chromium::start().await;
    let page = chromium.new_page().await;
    let nfc = page.add_virtual_authenticator("nfc", true).await;
    open_invite(&app, &page, "tia").await;
    add_key(&app, &page, "Tia badge 3", "security_key").await;
    let exported = page.credentials(&nfc).await.remove(0);
    let recode = |v: &Value| {
        let bytes = base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap()).unwrap();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    };
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("fido2-key.json");
    // Written as the file's JSON, the format an operator's tooling writes
    // (fields the agent does not need are left to their defaults).
    let file: KeyFile = serde_json::from_value(serde_json::json!({
        "credential_id": recode(&exported["credentialId"]),
        "user_handle": recode(&exported["userHandle"]),
        "private_key": recode(&exported["privateKey"]),
        "counter": exported["signCount"].as_u64().unwrap(),
    }))
    .unwrap();
    std::fs::write(&key_path, serde_json::to_string(&file).unwrap()).unwrap();

    let (agent, _) = crate::agent::enrolled_agent(&app, dir.path()).await;
    // Without a key reader, a key tap is refused in words.
    let refused = agent.handle_key_tap_at(tokio::time::Instant::now()).await.unwrap_err();
    assert!(refused.to_string().contains("cannot read FIDO2 keys"), "{refused}");
    agent.set_key_reader(std::sync::Arc::new(SoftwareKey::load(&key_path).unwrap()));
    let info = agent.handle_key_tap_at(tokio::time::Instant::now()).await.unwrap();
    assert_eq!(serde_json::to_value(&info).unwrap()["state"], "active", "{info:?}");
    let token = agent.token("epr").await.unwrap();
    let payload = token.access_token.split('.').nth(1).unwrap();
    let claims: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    assert_eq!(claims["acr"], "urn:wardkey:acr:passkey", "no approved models: the key signs in as a passkey");
    assert_eq!(claims["amr"], serde_json::json!(["swk", "mfa"]));
    // The counter went up in the file, so a copy of the old file is caught.
    let saved: KeyFile = serde_json::from_str(&std::fs::read_to_string(&key_path).unwrap()).unwrap();
    assert!(saved.counter > file.counter);

    // The same credential on a FIDO2 card with its own PIN, on the PC/SC
    // reader of the (now locked) PC: the agent drives it over CTAP2.
    agent.lock_for_shutdown().await;
    let card = SoftCard::new(SoftwareKey::load(&key_path).unwrap(), Some("4821")).unwrap();
    let cards = CardSlot::default();
    cards.put(Box::new(card));
    agent.set_key_reader(std::sync::Arc::new(Ctap2Key::new(cards.clone())));
    let err = agent.submit_key_pin("4821".to_string().into()).await.unwrap_err();
    assert!(err.to_string().contains("no PIN was asked for"), "a PIN before any key tap: {err}");
    let err = agent.handle_key_tap_at(tokio::time::Instant::now()).await.unwrap_err();
    assert!(err.to_string().contains("Type your security key's PIN"), "{err}");
    let err = agent.submit_key_pin("0000".to_string().into()).await.unwrap_err();
    assert!(err.to_string().contains("7 tries left"), "{err}");
    assert!(agent.key_pin_deadline().is_some(), "asked again after a wrong PIN");
    assert!(!agent.expire_key_pin_if_due(), "the PIN wait is not over yet");
    assert_eq!(agent.state().state, WorkstationState::Locked);
    // A badge tapped instead abandons the key's PIN wait.
    let _ = agent.handle_tap("0BADBADGE").await;
    assert!(agent.key_pin_deadline().is_none(), "a badge tap ends the wait for the key's PIN");
    // At the reader: the tap, then the PIN as the next line.
    let (taps, lines) = wardkey_agent::Lines::channel();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let runner = agent.clone();
    let stop = shutdown.clone();
    let running = tokio::spawn(async move { runner.run(lines, wardkey_agent::PinSource::reader(), stop).await });
    taps.send("fido2".into()).await.unwrap();
    taps.send("4821".into()).await.unwrap();
    crate::agent::wait_for(&agent, WorkstationState::Active, Some("tia")).await;
    let token = agent.token("epr").await.unwrap();
    let payload = token.access_token.split('.').nth(1).unwrap();
    let claims: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    assert_eq!(claims["acr"], "urn:wardkey:acr:passkey");
    // Lifted off the reader, the next key tap says so and nothing changes.
    cards.clear();
    let err = agent.handle_key_tap_at(tokio::time::Instant::now()).await.unwrap_err();
    assert!(err.to_string().contains("No security key is on the reader"), "{err}");
    assert_eq!(agent.state().state, WorkstationState::Active);
    shutdown.cancel();
    running.await.unwrap();
}

/// Chromium's virtual authenticator attests as Chromium's own test model
/// (AAGUID 01020304-0506-0708-0102-030405060708, with a certificate of
/// Chromium's own): never a model a trust approved. With an
/// allow-list, the page offers security keys only, and adding this key is
/// refused in words and audited; nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_security_key_the_trust_has_not_approved_is_refused_in_a_real_browser() {
    use crate::attestation::{APPROVED, TestCa, approved_model};
    let dir = tempfile::tempdir().unwrap();
    let ca_file = TestCa::new("Test Trust key CA").write(dir.path());
    let app = spawn_on_localhost_with(|s| {
        s.webauthn.approved_models = vec![approved_model(ca_file.clone(), APPROVED)];
        s.webauthn.passkeys = false;
    })
    .await;
    let wyn = app.add_user("wyn").await;
    let chromium = Chromium::start().await;
    let page = chromium.new_page().await;
    page.add_virtual_authenticator("usb", true).await;
    open_invite(&app, &page, "wyn").await;

    page.navigate(&app.url("/account/keys")).await;
    let offered = page.eval("[...document.querySelectorAll('#key-kind option')].map(o => o.value)").await.unwrap();
    assert_eq!(offered, serde_json::json!(["security_key"]), "passkeys are off");
    let policy = page.eval("document.getElementById('key-policy').innerText").await.unwrap();
    assert!(policy.as_str().unwrap().contains("does not allow passkeys"), "{policy}");
    page.eval(
        "document.getElementById('key-name').value = 'My own key'; \
         document.querySelector('#add-key button').click(); true",
    )
    .await
    .unwrap();
    page.wait_for("!document.getElementById('key-error').hidden").await;
    let said = page.eval("document.getElementById('key-error').innerText").await.unwrap();
    assert_eq!(said, "This key is not one your trust has approved. Use a key issued by IT.");
    page.screenshot(&screenshot_path("key-not-approved.png")).await;
    assert!(app.state.store.webauthn_credentials(&wyn.id).await.unwrap().is_empty());
    let audit = app.state.store.recent_audit(100).await.unwrap();
    let refusal = audit.iter().find(|e| e.event == "webauthn.key_not_approved").expect("the refusal is audited");
    assert_eq!(refusal.detail["name"], "My own key");
    // Chromium sends its test model's packed attestation when asked for it
    // directly; its certificate chains to no approved CA.
    assert_eq!(refusal.detail["format"], "packed", "{refusal:?}");
    assert_eq!(refusal.detail["aaguid"], "01020304-0506-0708-0102-030405060708", "{refusal:?}");
    assert!(!audit.iter().any(|e| e.event == "webauthn.register"));

    // A passkey asked for without the page: refused by the server too.
    let passkey = page
        .eval(
            "(async () => {
               const r = await fetch('/account/keys/register/start', {method: 'POST',
                 headers: {'content-type': 'application/json'}, body: JSON.stringify({kind: 'passkey', name: 'x'})});
               return [r.status, (await r.json()).error];
             })()",
        )
        .await
        .unwrap();
    assert_eq!(passkey, serde_json::json!([403, "passkeys_off"]));
}
