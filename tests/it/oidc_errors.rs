//! The negative matrix: every way a request can be wrong, and the answer the
//! specs require for it — the right error code and status, and never a
//! redirect to an address that has not been verified (OIDC Core §3.1.2.6,
//! RFC 6749 §4.1.2.1 and §5.2, RFC 6750 §3, RFC 7009, RFC 7523, RFC 7662,
//! RFC 9700, RP-Initiated Logout 1.0, NIST SP 800-63B §5.2.2).

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, LOCATION, RETRY_AFTER, WWW_AUTHENTICATE};
use serde_json::{Value, json};
use url::Url;
use wardkey_core::client::GrantType;
use wardkey_core::clock::Clock;
use wardkey_core::keys::SigningAlg;

use crate::helpers::*;

// ---------------------------------------------------------------------------
// Local helpers
// ---------------------------------------------------------------------------

/// Assert an HTML error page for a person: `status`, `text/html`, and no
/// `Location` (nothing is redirected). Returns the page.
async fn assert_error_page(r: reqwest::Response, status: u16) -> String {
    assert_eq!(r.status(), status, "status of the error page");
    assert!(r.headers().get(LOCATION).is_none(), "must not redirect, but Location is {:?}", r.headers().get(LOCATION));
    let content_type = r.headers().get(CONTENT_TYPE).expect("content-type").to_str().unwrap();
    assert!(content_type.starts_with("text/html"), "content-type {content_type}");
    r.text().await.unwrap()
}

/// Assert an authorization error sent back to the registered [`REDIRECT`]
/// with the client's `state` and the issuer (RFC 6749 §4.1.2.1, RFC 9207).
fn assert_error_redirect(app: &TestApp, r: &reqwest::Response, error: &str) {
    assert_eq!(r.status(), 303, "authorization errors are redirected with 303");
    let url = Url::parse(&location(r)).unwrap();
    let mut bare = url.clone();
    bare.set_query(None);
    assert_eq!(bare.as_str(), REDIRECT, "only to the registered redirect URI");
    assert_eq!(query_param(&url, "error").as_deref(), Some(error), "{url}");
    assert!(query_param(&url, "error_description").is_some(), "{url}");
    assert_eq!(query_param(&url, "state").as_deref(), Some("xyz"), "{url}");
    assert_eq!(query_param(&url, "iss").as_deref(), Some(app.base.as_str()), "{url}");
    assert!(query_param(&url, "code").is_none(), "{url}");
}

/// An authorization URL for client `epr` with the usual parameters (PKCE
/// S256, state `xyz`); each override replaces the parameter of that name, or
/// removes it when its value is empty.
fn authorize_with(app: &TestApp, overrides: &[(&str, &str)]) -> String {
    let (_, challenge) = pkce_pair();
    let mut params: Vec<(&str, &str)> = vec![
        ("response_type", "code"),
        ("client_id", "epr"),
        ("redirect_uri", REDIRECT),
        ("scope", "openid profile"),
        ("state", "xyz"),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ];
    for &(name, value) in overrides {
        params.retain(|(n, _)| *n != name);
        if !value.is_empty() {
            params.push((name, value));
        }
    }
    let mut url = Url::parse(&app.url("/authorize")).unwrap();
    url.query_pairs_mut().extend_pairs(params);
    url.to_string()
}

/// GET a full URL with the app's non-redirecting client.
async fn get_url(app: &TestApp, url: &str) -> reqwest::Response {
    app.http.get(url).send().await.unwrap()
}

/// Sign `username` in through a fresh browser; returns a code issued to
/// `client_id` and its PKCE verifier.
async fn code_for(app: &TestApp, client_id: &str, username: &str) -> (String, String) {
    let browser = no_redirects(true);
    let (url, verifier) = authorize_url(app, client_id, &[]);
    let back = app.browser_authorize(&browser, &url, username).await;
    (query_param(&back, "code").expect("code"), verifier)
}

/// Redeem a code at `/token` with HTTP Basic client credentials.
async fn redeem(
    app: &TestApp,
    client: (&str, &str),
    code: &str,
    redirect_uri: &str,
    verifier: &str,
) -> reqwest::Response {
    app.post_form(
        "/token",
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
        ],
        Some(client),
    )
    .await
}

/// Use a refresh token with HTTP Basic client credentials.
async fn refresh(app: &TestApp, client: (&str, &str), refresh_token: &str) -> reqwest::Response {
    app.post_form("/token", &[("grant_type", "refresh_token"), ("refresh_token", refresh_token)], Some(client)).await
}

/// Call `/userinfo` with a bearer token.
async fn userinfo(app: &TestApp, access_token: &str) -> reqwest::Response {
    app.http.get(app.url("/userinfo")).bearer_auth(access_token).send().await.unwrap()
}

/// A string member of a token response.
fn field(tokens: &Value, name: &str) -> String {
    tokens[name].as_str().unwrap_or_else(|| panic!("no {name} in {tokens}")).to_string()
}

/// The server's clock, in seconds since the epoch.
fn now(app: &TestApp) -> i64 {
    app.clock.now()
}

/// A compact JWT with no signature (`header.payload.`), as an attacker would
/// hand-build one with `alg: none`.
fn unsigned_jwt(header: &Value, claims: &Value) -> String {
    format!("{}.{}.", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()))
}

/// An EC P-256 key held by a client (or an attacker), published as a JWKS
/// and used to sign JWTs.
struct EcKey {
    kid: String,
    pkcs8: Vec<u8>,
    x: String,
    y: String,
}

impl EcKey {
    fn generate(kid: &str) -> Self {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let pkcs8 = pair.to_pkcs8v1().unwrap().as_ref().to_vec();
        // Uncompressed SEC1 point: 0x04 || x || y.
        let point = pair.public_key().as_ref();
        assert_eq!(point.len(), 65);
        Self {
            kid: kid.into(),
            pkcs8,
            x: URL_SAFE_NO_PAD.encode(&point[1..33]),
            y: URL_SAFE_NO_PAD.encode(&point[33..65]),
        }
    }

    /// The public key as a JWKS document.
    fn jwks(&self) -> String {
        json!({"keys": [{
            "kty": "EC", "crv": "P-256", "x": self.x, "y": self.y,
            "kid": self.kid, "use": "sig", "alg": "ES256",
        }]})
        .to_string()
    }

    /// Sign `claims` with ES256 under this key's own `kid`.
    fn sign(&self, claims: &Value) -> String {
        self.sign_as(&self.kid, claims)
    }

    /// Sign `claims` with ES256 but claim the key is `kid`.
    fn sign_as(&self, kid: &str, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.into());
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_ec_der(&self.pkcs8)).unwrap()
    }
}

/// RFC 7523 §3 client assertion claims for `client_id`.
fn assertion_claims(client_id: &str, aud: &str, jti: &str, exp: i64) -> Value {
    json!({"iss": client_id, "sub": client_id, "aud": aud, "jti": jti, "exp": exp})
}

/// `client_credentials` at `/token`, authenticated by a client assertion.
async fn client_credentials_with(app: &TestApp, client_id: &str, assertion: &str) -> reqwest::Response {
    app.post_form(
        "/token",
        &[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ("client_assertion", assertion),
        ],
        None,
    )
    .await
}

/// The `kid` of the server's active ES256 signing key, from `/jwks`.
async fn server_es256_kid(app: &TestApp) -> String {
    let jwks: Value = app.get("/jwks").await.json().await.unwrap();
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["alg"] == "ES256")
        .and_then(|k| k["kid"].as_str())
        .expect("an ES256 key in /jwks")
        .to_string()
}

/// A browser on the sign-in page that keeps its CSRF cookie and the form's
/// CSRF field in step, as a real one does.
struct LoginPage<'a> {
    app: &'a TestApp,
    browser: reqwest::Client,
    csrf: String,
}

/// The answer to one sign-in attempt.
struct Attempt {
    status: u16,
    retry_after: Option<i64>,
    html: String,
}

impl<'a> LoginPage<'a> {
    async fn open(app: &'a TestApp) -> Self {
        let browser = no_redirects(true);
        let page = browser.get(app.url("/login")).send().await.unwrap();
        assert_eq!(page.status(), 200);
        let csrf = hidden_input(&page.text().await.unwrap(), "csrf");
        Self { app, browser, csrf }
    }

    /// POST the sign-in form as given.
    async fn post(&mut self, form: &[(&str, &str)]) -> Attempt {
        let r = self.browser.post(self.app.url("/login")).form(form).send().await.unwrap();
        let status = r.status().as_u16();
        let retry_after =
            r.headers().get(RETRY_AFTER).map(|v| v.to_str().unwrap().parse().expect("Retry-After in seconds"));
        let html = r.text().await.unwrap();
        if html.contains("name=\"csrf\"") {
            self.csrf = hidden_input(&html, "csrf");
        }
        Attempt { status, retry_after, html }
    }

    /// Submit the form with a username and password, as a person would.
    async fn sign_in(&mut self, username: &str, password: &str) -> Attempt {
        let csrf = self.csrf.clone();
        self.post(&[("csrf", &csrf), ("username", username), ("password", password)]).await
    }
}

/// The error message shown on a re-rendered sign-in form.
fn login_error(html: &str) -> &str {
    let marker = "id=\"login-error\"><p>";
    let start = html.find(marker).unwrap_or_else(|| panic!("no error message in {html}")) + marker.len();
    let end = html[start..].find("</p>").unwrap() + start;
    &html[start..end]
}

// ---------------------------------------------------------------------------
// 1–3. The authorization endpoint
// ---------------------------------------------------------------------------

#[tokio::test]
async fn authorize_never_redirects_until_client_and_redirect_uri_are_verified() {
    let app = spawn_app().await;
    app.add_epr("epr").await;

    let cases: [(&str, &[(&str, &str)]); 6] = [
        ("unregistered redirect_uri", &[("redirect_uri", "https://evil.example/callback")]),
        ("redirect_uri extending a registered one", &[("redirect_uri", "http://127.0.0.1:1/callback/evil")]),
        ("redirect_uri with an extra query", &[("redirect_uri", "http://127.0.0.1:1/callback?next=evil")]),
        ("missing redirect_uri", &[("redirect_uri", "")]),
        ("unknown client_id", &[("client_id", "nobody")]),
        ("missing client_id", &[("client_id", "")]),
    ];
    for (what, overrides) in cases {
        // Alone, and with an error that would otherwise be redirected.
        for extra in [None, Some(("response_type", "token"))] {
            let mut overrides = overrides.to_vec();
            overrides.extend(extra);
            let r = get_url(&app, &authorize_with(&app, &overrides)).await;
            let page = assert_error_page(r, 400).await;
            assert!(page.contains("Cannot continue"), "{what}: {page}");
        }
    }
}

#[tokio::test]
async fn authorize_errors_after_validation_go_back_to_the_client() {
    let app = spawn_app().await;
    app.add_epr("epr").await;

    let cases: [(&[(&str, &str)], &str); 12] = [
        (&[("code_challenge", "")], "invalid_request"),
        (&[("code_challenge_method", "plain")], "invalid_request"),
        (&[("code_challenge_method", "")], "invalid_request"),
        (&[("code_challenge", "too-short")], "invalid_request"),
        (&[("response_type", "token")], "unsupported_response_type"),
        (&[("response_type", "")], "invalid_request"),
        (&[("response_mode", "fragment")], "invalid_request"),
        (&[("prompt", "sometimes")], "invalid_request"),
        (&[("prompt", "none login")], "invalid_request"),
        (&[("max_age", "-1")], "invalid_request"),
        (&[("request", "eyJhbGciOiJub25lIn0.e30.")], "request_not_supported"),
        (&[("request_uri", "https://evil.example/r")], "request_uri_not_supported"),
    ];
    for (overrides, error) in cases {
        let r = get_url(&app, &authorize_with(&app, overrides)).await;
        assert_error_redirect(&app, &r, error);
    }

    // A client that may not use the code flow at all.
    app.add_client("backend", Auth::Secret, &[GrantType::ClientCredentials], SigningAlg::ES256).await;
    let r = get_url(&app, &authorize_with(&app, &[("client_id", "backend")])).await;
    assert_error_redirect(&app, &r, "unauthorized_client");
}

#[tokio::test]
async fn authorize_with_a_repeated_parameter_is_a_page_not_a_redirect() {
    let app = spawn_app().await;
    app.add_epr("epr").await;

    // RFC 6749 §3.1: parameters must not repeat. The request cannot be
    // parsed, so its redirect_uri cannot be trusted either.
    let (url, _) = authorize_url(&app, "epr", &[("scope", "openid")]);
    assert_eq!(Url::parse(&url).unwrap().query_pairs().filter(|(k, _)| k == "scope").count(), 2);
    let page = assert_error_page(get_url(&app, &url).await, 400).await;
    assert!(page.contains("repeated"), "{page}");

    let (url, _) = authorize_url(&app, "epr", &[("redirect_uri", "https://evil.example/")]);
    assert_error_page(get_url(&app, &url).await, 400).await;
}

#[tokio::test]
async fn prompt_none_without_a_session_is_login_required() {
    let app = spawn_app().await;
    app.add_epr("epr").await;

    let (url, _) = authorize_url(&app, "epr", &[("prompt", "none")]);
    let r = get_url(&app, &url).await;
    assert_error_redirect(&app, &r, "login_required");
}

// ---------------------------------------------------------------------------
// 4. Authorization codes at the token endpoint
// ---------------------------------------------------------------------------

#[tokio::test]
async fn code_with_the_wrong_verifier_is_invalid_grant() {
    let app = spawn_app().await;
    app.add_user("alice").await;
    let secret = app.add_epr("epr").await;

    let (code, _) = code_for(&app, "epr", "alice").await;
    let (other_verifier, _) = pkce_pair();
    let r = redeem(&app, ("epr", &secret), &code, REDIRECT, &other_verifier).await;
    assert_oauth_error(r, 400, "invalid_grant").await;
}

#[tokio::test]
async fn code_reuse_is_refused_and_revokes_what_the_first_redemption_issued() {
    let app = spawn_app().await;
    app.add_user("alice").await;
    let secret = app.add_epr("epr").await;

    let (code, verifier) = code_for(&app, "epr", "alice").await;
    let first = redeem(&app, ("epr", &secret), &code, REDIRECT, &verifier).await;
    assert_eq!(first.status(), 200);
    let tokens: Value = first.json().await.unwrap();
    let access = field(&tokens, "access_token");
    let refresh_token = field(&tokens, "refresh_token");
    assert_eq!(userinfo(&app, &access).await.status(), 200, "valid before the reuse");

    let second = redeem(&app, ("epr", &secret), &code, REDIRECT, &verifier).await;
    assert_oauth_error(second, 400, "invalid_grant").await;

    // RFC 6749 §4.1.2 / RFC 9700 §4.5: the tokens already issued are revoked.
    let r = userinfo(&app, &access).await;
    assert_eq!(r.status(), 401);
    let challenge = r.headers().get(WWW_AUTHENTICATE).unwrap().to_str().unwrap();
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    let r = refresh(&app, ("epr", &secret), &refresh_token).await;
    assert_oauth_error(r, 400, "invalid_grant").await;
}

#[tokio::test]
async fn expired_code_is_invalid_grant() {
    let app = spawn_app().await;
    app.add_user("alice").await;
    let secret = app.add_epr("epr").await;

    let (code, verifier) = code_for(&app, "epr", "alice").await;
    let code_ttl = app.state.settings.oidc.code_ttl.as_secs() as i64;
    app.clock.advance(code_ttl + 1);
    let r = redeem(&app, ("epr", &secret), &code, REDIRECT, &verifier).await;
    assert_oauth_error(r, 400, "invalid_grant").await;
}

#[tokio::test]
async fn code_redeemed_by_another_client_is_invalid_grant() {
    let app = spawn_app().await;
    app.add_user("alice").await;
    app.add_epr("epr").await;
    let other_secret = app.add_epr("other-epr").await;

    let (code, verifier) = code_for(&app, "epr", "alice").await;
    let r = redeem(&app, ("other-epr", &other_secret), &code, REDIRECT, &verifier).await;
    assert_oauth_error(r, 400, "invalid_grant").await;
}

#[tokio::test]
async fn code_with_a_different_redirect_uri_is_invalid_grant() {
    let app = spawn_app().await;
    app.add_user("alice").await;
    let secret = app.add_epr("epr").await;

    let (code, verifier) = code_for(&app, "epr", "alice").await;
    let r = redeem(&app, ("epr", &secret), &code, "http://127.0.0.1:1/other", &verifier).await;
    assert_oauth_error(r, 400, "invalid_grant").await;
}

// ---------------------------------------------------------------------------
// 5. Client authentication
// ---------------------------------------------------------------------------

#[tokio::test]
async fn client_authentication_failures() {
    let app = spawn_app().await;
    let secret = app.add_epr("epr").await;
    let form = [("grant_type", "refresh_token"), ("refresh_token", "whatever")];

    // RFC 6749 §5.2: a failed Authorization header is 401 with a challenge.
    for (id, secret) in [("epr", "wrong-secret"), ("nobody", "any-secret")] {
        let r = app.post_form("/token", &form, Some((id, secret))).await;
        let challenge = r
            .headers()
            .get(WWW_AUTHENTICATE)
            .unwrap_or_else(|| panic!("WWW-Authenticate for {id}"))
            .to_str()
            .unwrap()
            .to_string();
        assert!(challenge.starts_with("Basic"), "{challenge}");
        assert_oauth_error(r, 401, "invalid_client").await;
    }

    // Not Basic at all, and Basic that is not base64 of UTF-8.
    for header in ["Bearer abc", "Basic %%%", "Basic /w=="] {
        let r = app.http.post(app.url("/token")).header(AUTHORIZATION, header).form(&form).send().await.unwrap();
        assert_oauth_error(r, 401, "invalid_client").await;
    }

    // RFC 6749 §2.3: exactly one method.
    let both = [
        ("grant_type", "refresh_token"),
        ("refresh_token", "whatever"),
        ("client_id", "epr"),
        ("client_secret", secret.as_str()),
    ];
    let r = app.post_form("/token", &both, Some(("epr", &secret))).await;
    assert_oauth_error(r, 400, "invalid_request").await;

    // client_secret_post with the wrong secret, and a confidential client
    // presenting no secret at all.
    let wrong_post = [
        ("grant_type", "refresh_token"),
        ("refresh_token", "whatever"),
        ("client_id", "epr"),
        ("client_secret", "wrong-secret"),
    ];
    let r = app.post_form("/token", &wrong_post, None).await;
    assert_oauth_error(r, 401, "invalid_client").await;
    let id_only = [("grant_type", "refresh_token"), ("refresh_token", "whatever"), ("client_id", "epr")];
    let r = app.post_form("/token", &id_only, None).await;
    assert_oauth_error(r, 401, "invalid_client").await;

    // No client at all.
    let r = app.post_form("/token", &form, None).await;
    assert_oauth_error(r, 401, "invalid_client").await;
}

// ---------------------------------------------------------------------------
// 6. Refresh tokens
// ---------------------------------------------------------------------------

/// Alice signs in to `epr` and refreshes once: the client secret, the
/// refresh token used, and the rotation's answer.
async fn signed_in_and_rotated(app: &TestApp) -> (String, String, Value) {
    app.add_user("alice").await;
    let secret = app.add_epr("epr").await;
    let first = login_and_redeem(app, "epr", &secret, "alice").await;
    let old = field(&first, "refresh_token");
    let r = refresh(app, ("epr", &secret), &old).await;
    assert_eq!(r.status(), 200);
    let rotated: Value = r.json().await.unwrap();
    (secret, old, rotated)
}

#[tokio::test]
async fn refresh_reuse_after_the_grace_revokes_the_whole_family() {
    let app = spawn_app().await;
    let (secret, old, rotated) = signed_in_and_rotated(&app).await;
    let client = ("epr", secret.as_str());
    let newest = field(&rotated, "refresh_token");
    assert_ne!(newest, old, "refresh tokens rotate");

    let grace = app.state.settings.oidc.refresh_reuse_grace.as_secs() as i64;
    app.clock.advance(grace + 1);
    let r = refresh(&app, client, &old).await;
    assert_oauth_error(r, 400, "invalid_grant").await;

    // RFC 9700 §4.14.2: the legitimate holder's newest token dies too, and so
    // do the access tokens of the family.
    let r = refresh(&app, client, &newest).await;
    assert_oauth_error(r, 400, "invalid_grant").await;
    assert_eq!(userinfo(&app, &field(&rotated, "access_token")).await.status(), 401);
    // Replaying the old one again changes nothing.
    let r = refresh(&app, client, &old).await;
    assert_oauth_error(r, 400, "invalid_grant").await;
}

#[tokio::test]
async fn refresh_reuse_within_the_grace_gets_the_same_answer() {
    let app = spawn_app().await;
    let (secret, old, rotated) = signed_in_and_rotated(&app).await;
    let client = ("epr", secret.as_str());

    let grace = app.state.settings.oidc.refresh_reuse_grace.as_secs() as i64;
    app.clock.advance(grace / 2);
    let r = refresh(&app, client, &old).await;
    assert_eq!(r.status(), 200, "a retry within the grace is not reuse");
    let replayed: Value = r.json().await.unwrap();
    for name in ["access_token", "refresh_token", "id_token"] {
        assert_eq!(replayed[name], rotated[name], "{name} of the replay");
    }

    // Nothing was revoked: the newest token still works.
    let r = refresh(&app, client, &field(&rotated, "refresh_token")).await;
    assert_eq!(r.status(), 200);

    // What the cache keeps for the retry holds no token in clear.
    let digest = wardkey_core::secret::digest_b64(&old);
    let kept = app.state.cache.get(&wardkey_idp::kv::keys::rotated(&digest)).await.unwrap().unwrap();
    let kept = String::from_utf8_lossy(&kept);
    for name in ["access_token", "refresh_token", "id_token"] {
        assert!(!kept.contains(field(&rotated, name).as_str()), "{name} in clear in the cache: {kept}");
    }
}

/// `refresh_reuse_grace = "0s"` means no repeat at all: a retry in the same
/// second is a reuse, and revokes the family.
#[tokio::test]
async fn no_grace_means_no_replay_even_within_the_second() {
    let app = TestApp::builder().settings(|s| s.oidc.refresh_reuse_grace = std::time::Duration::ZERO).spawn().await;
    let (secret, old, rotated) = signed_in_and_rotated(&app).await;
    let client = ("epr", secret.as_str());
    assert_oauth_error(refresh(&app, client, &old).await, 400, "invalid_grant").await;
    assert_oauth_error(refresh(&app, client, &field(&rotated, "refresh_token")).await, 400, "invalid_grant").await;
}

#[tokio::test]
async fn refresh_token_of_another_client_is_refused_and_not_consumed() {
    let app = spawn_app().await;
    app.add_user("alice").await;
    let secret = app.add_epr("epr").await;
    let thief_secret = app.add_epr("thief").await;

    let tokens = login_and_redeem(&app, "epr", &secret, "alice").await;
    let refresh_token = field(&tokens, "refresh_token");

    let r = refresh(&app, ("thief", &thief_secret), &refresh_token).await;
    assert_oauth_error(r, 400, "invalid_grant").await;

    let r = refresh(&app, ("epr", &secret), &refresh_token).await;
    assert_eq!(r.status(), 200, "the rightful client can still use it");
    let r = refresh(&app, ("thief", &thief_secret), &refresh_token).await;
    assert_oauth_error(r, 400, "invalid_grant").await;
}

#[tokio::test]
async fn refresh_cannot_widen_the_scope() {
    let app = spawn_app().await;
    app.add_user("alice").await;
    let secret = app.add_epr("epr").await;
    let tokens = login_and_redeem(&app, "epr", &secret, "alice").await;
    assert_eq!(tokens["scope"], "openid profile email");

    // RFC 6749 §6: narrower may be asked for, never wider.
    let r = app
        .post_form(
            "/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &field(&tokens, "refresh_token")),
                ("scope", "openid roles"),
            ],
            Some(("epr", &secret)),
        )
        .await;
    assert_oauth_error(r, 400, "invalid_scope").await;
}

// ---------------------------------------------------------------------------
// 7. private_key_jwt (RFC 7523)
// ---------------------------------------------------------------------------

#[tokio::test]
async fn private_key_jwt_is_accepted_once() {
    let app = spawn_app().await;
    let key = EcKey::generate("k1");
    app.add_client("backend", Auth::Jwks(key.jwks()), &[GrantType::ClientCredentials], SigningAlg::ES256).await;
    let exp = now(&app) + 60;

    let assertion = key.sign(&assertion_claims("backend", &app.url("/token"), "jti-1", exp));
    let r = client_credentials_with(&app, "backend", &assertion).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    // RFC 7523 §3 item 7: the same jti again is a replay.
    let r = client_credentials_with(&app, "backend", &assertion).await;
    assert_oauth_error(r, 401, "invalid_client").await;

    // The issuer is an accepted audience too (OIDC Core §9).
    let assertion = key.sign(&assertion_claims("backend", &app.base, "jti-2", exp));
    let r = client_credentials_with(&app, "backend", &assertion).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

#[tokio::test]
async fn private_key_jwt_rejects_bad_assertions() {
    let app = spawn_app().await;
    let key = EcKey::generate("k1");
    app.add_client("backend", Auth::Jwks(key.jwks()), &[GrantType::ClientCredentials], SigningAlg::ES256).await;
    let aud = app.url("/token");
    let exp = now(&app) + 60;
    // Past the 30 s clock-skew leeway.
    let expired = now(&app) - 120;
    let intruder = EcKey::generate("k1");

    let cases = [
        ("wrong aud", key.sign(&assertion_claims("backend", "https://other.example/token", "jti-aud", exp))),
        ("expired", key.sign(&assertion_claims("backend", &aud, "jti-exp", expired))),
        (
            "signed by another key with the registered kid",
            intruder.sign(&assertion_claims("backend", &aud, "jti-key", exp)),
        ),
        (
            "alg none",
            unsigned_jwt(
                &json!({"alg": "none", "typ": "JWT", "kid": "k1"}),
                &assertion_claims("backend", &aud, "jti-none", exp),
            ),
        ),
        ("no jti", key.sign(&json!({"iss": "backend", "sub": "backend", "aud": aud, "exp": exp}))),
        (
            "iss is another client",
            key.sign(&json!({"iss": "other", "sub": "backend", "aud": aud, "jti": "jti-iss", "exp": exp})),
        ),
        ("exp more than an hour ahead", key.sign(&assertion_claims("backend", &aud, "jti-long", now(&app) + 7200))),
        (
            "HS256 keyed with the public key",
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &assertion_claims("backend", &aud, "jti-hs", exp),
                &EncodingKey::from_secret(key.jwks().as_bytes()),
            )
            .unwrap(),
        ),
    ];
    for (what, assertion) in cases {
        let r = client_credentials_with(&app, "backend", &assertion).await;
        assert_eq!(r.status(), 401, "{what}");
        assert_oauth_error(r, 401, "invalid_client").await;
    }

    // An assertion for a client that does not exist.
    let ghost = key.sign(&assertion_claims("ghost", &aud, "jti-ghost", exp));
    let r = client_credentials_with(&app, "ghost", &ghost).await;
    assert_oauth_error(r, 401, "invalid_client").await;

    // None of the failures burned the key: a good assertion still works.
    let good = key.sign(&assertion_claims("backend", &aud, "jti-good", exp));
    assert_eq!(client_credentials_with(&app, "backend", &good).await.status(), 200);
}

#[tokio::test]
async fn private_key_jwt_expiry_follows_the_server_clock() {
    let app = spawn_app().await;
    let key = EcKey::generate("k1");
    app.add_client("backend", Auth::Jwks(key.jwks()), &[GrantType::ClientCredentials], SigningAlg::ES256).await;

    // An hour later by the server's clock, an assertion that expired two
    // minutes ago (past the 30 s leeway) is expired.
    app.clock.advance(3600);
    let expired = key.sign(&assertion_claims("backend", &app.url("/token"), "jti-1", now(&app) - 120));
    let r = client_credentials_with(&app, "backend", &expired).await;
    assert_oauth_error(r, 401, "invalid_client").await;
}

// ---------------------------------------------------------------------------
// 8. RP-initiated logout
// ---------------------------------------------------------------------------

#[tokio::test]
async fn logout_never_redirects_to_an_unverified_address() {
    let app = spawn_app().await;
    let user = app.add_user("alice").await;
    app.add_epr("epr").await;
    let kid = server_es256_kid(&app).await;

    // An unregistered post_logout_redirect_uri, with or without a client.
    for query in [
        format!("client_id=epr&post_logout_redirect_uri={}", "https%3A%2F%2Fevil.example%2F"),
        "post_logout_redirect_uri=https%3A%2F%2Fevil.example%2F".to_string(),
        // The registered one, but no client named to check it against.
        format!("post_logout_redirect_uri={}", url_encode(POST_LOGOUT)),
    ] {
        let r = app.get(&format!("/logout?{query}")).await;
        assert_error_page(r, 400).await;
    }

    // id_token_hints we did not sign, with a registered redirect that would
    // otherwise be honoured.
    let claims = json!({
        "iss": app.base, "sub": user.id, "aud": "epr", "sid": "forged",
        "iat": now(&app), "exp": now(&app) + 600,
    });
    let forged = [
        ("alg none", unsigned_jwt(&json!({"alg": "none", "typ": "JWT", "kid": kid}), &claims)),
        ("foreign key, our kid", EcKey::generate("x").sign_as(&kid, &claims)),
        ("foreign key, its own kid", EcKey::generate("x").sign(&claims)),
        ("garbage", "not-a-jwt".to_string()),
    ];
    for (what, hint) in forged {
        let r = app
            .http
            .get(app.url("/logout"))
            .query(&[("id_token_hint", hint.as_str()), ("post_logout_redirect_uri", POST_LOGOUT), ("state", "s1")])
            .send()
            .await
            .unwrap();
        let page = assert_error_page(r, 400).await;
        assert!(page.contains("id_token_hint"), "{what}: {page}");
    }
}

#[tokio::test]
async fn logout_refuses_an_access_token_as_id_token_hint() {
    let app = spawn_app().await;
    app.add_user("alice").await;
    let secret = app.add_epr("epr").await;
    let tokens = login_and_redeem(&app, "epr", &secret, "alice").await;
    let access = field(&tokens, "access_token");

    // Anyone the access token was shown to (a resource server) must not be
    // able to sign the clinician out with it: it is not an ID token
    // (RFC 9068 §2.1 typ at+jwt, RFC 8725 §3.11).
    let r = app
        .http
        .get(app.url("/logout"))
        .query(&[("id_token_hint", access.as_str()), ("post_logout_redirect_uri", POST_LOGOUT)])
        .send()
        .await
        .unwrap();
    assert_error_page(r, 400).await;
    assert_eq!(userinfo(&app, &access).await.status(), 200, "the session is still live");
}

/// RP-Initiated Logout §2: an ID token for a session this browser does
/// not hold (replayed by whoever kept it, or sent from another device)
/// ends nothing without asking, and confirming there ends only that
/// browser's own sign-in, never the clinician's session elsewhere.
#[tokio::test]
async fn logout_with_a_hint_for_a_session_elsewhere_asks_first() {
    let app = spawn_app().await;
    app.add_user("alice").await;
    let secret = app.add_epr("epr").await;
    let tokens = login_and_redeem(&app, "epr", &secret, "alice").await;
    let id_token = field(&tokens, "id_token");
    let access = field(&tokens, "access_token");
    let elsewhere = no_redirects(true);
    let r = elsewhere.get(app.url("/logout")).query(&[("id_token_hint", id_token.as_str())]).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(page.contains("Sign out of Wardkey?"), "{page}");
    assert_eq!(userinfo(&app, &access).await.status(), 200, "nothing ended without asking");
    let csrf = hidden_input(&page, "csrf");
    let hint = hidden_input(&page, "id_token_hint");
    let r = elsewhere
        .post(app.url("/logout"))
        .form(&[("csrf", csrf.as_str()), ("confirm", "yes"), ("id_token_hint", hint.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(userinfo(&app, &access).await.status(), 200, "a browser that does not hold it cannot end it");
}

/// Percent-encode a query value.
fn url_encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

// ---------------------------------------------------------------------------
// 9. The sign-in form's CSRF protection
// ---------------------------------------------------------------------------

#[tokio::test]
async fn login_without_a_matching_csrf_token_is_forbidden() {
    let app = spawn_app().await;
    app.add_user("alice").await;
    let mut page = LoginPage::open(&app).await;

    let cases: [(&str, &[(&str, &str)]); 2] =
        [("no csrf field", &[]), ("csrf field not matching the cookie", &[("csrf", "forged-token")])];
    for (what, csrf) in cases {
        let mut form = vec![("username", "alice"), ("password", PASSWORD)];
        form.extend_from_slice(csrf);
        let attempt = page.post(&form).await;
        assert_eq!(attempt.status, 403, "{what}");
        assert!(attempt.html.contains("<form"), "{what}: the form is shown again");
        assert!(attempt.html.contains("name=\"csrf\""), "{what}: with a fresh token");
        assert!(!attempt.html.contains("You are signed in"), "{what}");
    }

    // A matching field but no cookie (another site's form post).
    let r = no_redirects(false)
        .post(app.url("/login"))
        .form(&[("csrf", page.csrf.as_str()), ("username", "alice"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // The protection is what failed, not the credentials.
    let attempt = page.sign_in("alice", PASSWORD).await;
    assert_eq!(attempt.status, 200, "{}", attempt.html);
}

// ---------------------------------------------------------------------------
// 10. Malformed and oversized requests
// ---------------------------------------------------------------------------

#[tokio::test]
async fn token_endpoint_refuses_malformed_requests() {
    let app = spawn_app().await;
    let secret = app.add_epr("epr").await;
    let post_raw = |content_type: &'static str, body: Vec<u8>| {
        app.http
            .post(app.url("/token"))
            .header(CONTENT_TYPE, content_type)
            .basic_auth("epr", Some(&secret))
            .body(body)
            .send()
    };

    // 100 KiB: over the body limit.
    let mut big = b"grant_type=client_credentials&padding=".to_vec();
    big.resize(100 * 1024, b'a');
    let r = post_raw("application/x-www-form-urlencoded", big).await.unwrap();
    assert_eq!(r.status(), 413);

    // RFC 6749 §3.2: the body is form-encoded, not JSON.
    let json_body = br#"{"grant_type":"client_credentials"}"#.to_vec();
    let r = post_raw("application/json", json_body).await.unwrap();
    assert_oauth_error(r, 400, "invalid_request").await;

    // Bytes that are not UTF-8, raw and percent-encoded: an answer, not a 500.
    for body in [vec![0xff, 0xfe, 0x00, 0x80, b'=', 0xc3, b'&', 0xff], b"grant_type=%FF%FE&code=%C3".to_vec()] {
        let r = post_raw("application/x-www-form-urlencoded", body).await.unwrap();
        assert_eq!(r.status(), 400);
        let body: Value = r.json().await.expect("a JSON error");
        assert!(body["error"].is_string(), "{body}");
    }

    let r = app.post_form("/token", &[("client_id", "epr")], Some(("epr", &secret))).await;
    assert_oauth_error(r, 400, "invalid_request").await;

    let r = app
        .post_form(
            "/token",
            &[("grant_type", "password"), ("username", "alice"), ("password", PASSWORD)],
            Some(("epr", &secret)),
        )
        .await;
    assert_oauth_error(r, 400, "unsupported_grant_type").await;

    // Registered for code and refresh only.
    let r = app.post_form("/token", &[("grant_type", "client_credentials")], Some(("epr", &secret))).await;
    assert_oauth_error(r, 400, "unauthorized_client").await;

    // RFC 6749 §3.1: a repeated parameter.
    let r = post_raw(
        "application/x-www-form-urlencoded",
        b"grant_type=client_credentials&grant_type=refresh_token".to_vec(),
    )
    .await
    .unwrap();
    assert_oauth_error(r, 400, "invalid_request").await;
}

#[tokio::test]
async fn userinfo_refuses_bad_and_missing_tokens() {
    let app = spawn_app().await;

    let r = userinfo(&app, "garbage").await;
    assert_eq!(r.status(), 401);
    let challenge = r.headers().get(WWW_AUTHENTICATE).expect("challenge").to_str().unwrap();
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");

    // RFC 6750 §3.1: no token, no error code, but still a challenge.
    let r = app.get("/userinfo").await;
    assert_eq!(r.status(), 401);
    let challenge = r.headers().get(WWW_AUTHENTICATE).expect("challenge").to_str().unwrap();
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    assert!(!challenge.contains("error="), "{challenge}");
}

#[tokio::test]
async fn userinfo_refuses_expired_and_doubly_sent_tokens() {
    let app = spawn_app().await;
    app.add_user("alice").await;
    let secret = app.add_epr("epr").await;
    let tokens = login_and_redeem(&app, "epr", &secret, "alice").await;
    let access = field(&tokens, "access_token");

    // RFC 6750 §2: one method per request.
    let r = app
        .http
        .post(app.url("/userinfo"))
        .bearer_auth(&access)
        .form(&[("access_token", access.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let challenge = r.headers().get(WWW_AUTHENTICATE).expect("challenge").to_str().unwrap();
    assert!(challenge.contains("error=\"invalid_request\""), "{challenge}");

    let ttl = app.state.settings.oidc.access_token_ttl.as_secs() as i64;
    app.clock.advance(ttl + 1);
    let r = userinfo(&app, &access).await;
    assert_eq!(r.status(), 401);
    let challenge = r.headers().get(WWW_AUTHENTICATE).expect("challenge").to_str().unwrap();
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    let r = app.post_form("/introspect", &[("token", &access)], Some(("epr", &secret))).await;
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"active": false}));
}

#[tokio::test]
async fn introspection_and_revocation_of_unknown_tokens() {
    let app = spawn_app().await;
    let secret = app.add_epr("epr").await;

    // RFC 7662 §2.2: anything not active is just {"active": false}.
    for token in ["garbage", "not.a.jwt", "eyJhbGciOiJub25lIn0.e30."] {
        let r = app.post_form("/introspect", &[("token", token)], Some(("epr", &secret))).await;
        assert_eq!(r.status(), 200, "{token}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body, json!({"active": false}), "{token}");
    }

    // RFC 7009 §2.2: an unknown token is not an error.
    let r = app.post_form("/revoke", &[("token", "garbage")], Some(("epr", &secret))).await;
    assert_eq!(r.status(), 200);

    // Both still require client authentication.
    for path in ["/introspect", "/revoke"] {
        let r = app.post_form(path, &[("token", "garbage")], Some(("epr", "wrong"))).await;
        assert_oauth_error(r, 401, "invalid_client").await;
    }
}

// ---------------------------------------------------------------------------
// 11. Password throttling
// ---------------------------------------------------------------------------

#[tokio::test]
async fn repeated_wrong_passwords_are_throttled_until_the_wait_is_over() {
    let app = spawn_app().await;
    app.add_user("alice").await;
    let backoff_after = app.state.settings.password.backoff_after;
    let mut page = LoginPage::open(&app).await;

    for n in 1..=backoff_after {
        let attempt = page.sign_in("alice", "wrong password").await;
        assert_eq!(attempt.status, 400, "failure {n} is not yet throttled");
        assert!(attempt.retry_after.is_none());
    }

    // NIST SP 800-63B §5.2.2: from the 5th failure, even the right password
    // must wait.
    let attempt = page.sign_in("alice", PASSWORD).await;
    assert_eq!(attempt.status, 429, "{}", attempt.html);
    let wait = attempt.retry_after.expect("Retry-After");
    assert!(wait >= 1, "Retry-After {wait}");
    assert!(login_error(&attempt.html).contains("Too many"), "{}", attempt.html);

    app.clock.advance(wait);
    let attempt = page.sign_in("alice", PASSWORD).await;
    assert_eq!(attempt.status, 200, "{}", attempt.html);
    assert!(attempt.html.contains("You are signed in as alice"));
}

#[tokio::test]
async fn wrong_password_for_an_unknown_user_looks_the_same() {
    let app = spawn_app().await;
    app.add_user("alice").await;
    let mut page = LoginPage::open(&app).await;

    let known = page.sign_in("alice", "wrong password").await;
    let unknown = page.sign_in("mallory", "wrong password").await;
    assert_eq!(known.status, 400);
    assert_eq!(unknown.status, known.status);
    assert_eq!(login_error(&unknown.html), login_error(&known.html));
}

#[tokio::test]
async fn throttling_does_not_reveal_which_usernames_exist() {
    let app = spawn_app().await;
    app.add_user("alice").await;
    let backoff_after = app.state.settings.password.backoff_after;
    let mut page = LoginPage::open(&app).await;

    let mut answers = Vec::new();
    for username in ["alice", "mallory"] {
        for _ in 0..backoff_after {
            page.sign_in(username, "wrong password").await;
        }
        let next = page.sign_in(username, "wrong password").await;
        answers.push((next.status, next.retry_after.is_some(), login_error(&next.html).to_string()));
    }
    assert_eq!(answers[0].0, 429, "known user throttled");
    assert_eq!(answers[1], answers[0], "an unknown user must be answered like a known one");
}

#[tokio::test]
async fn concurrent_guesses_cannot_slip_past_the_backoff() {
    let app = spawn_app().await;
    app.add_user("alice").await;
    let backoff_after = app.state.settings.password.backoff_after;
    let mut page = LoginPage::open(&app).await;
    for _ in 0..backoff_after - 1 {
        assert_eq!(page.sign_in("alice", "wrong password").await.status, 400);
    }
    // The next failure starts the backoff: of many guesses sent at once,
    // exactly one is checked, and every other one is told to wait.
    let mut pages = Vec::new();
    for _ in 0..16 {
        pages.push(LoginPage::open(&app).await);
    }
    let answers = futures_util::future::join_all(pages.iter_mut().map(|p| p.sign_in("alice", "wrong password"))).await;
    let checked = answers.iter().filter(|a| a.status == 400).count();
    let throttled = answers.iter().filter(|a| a.status == 429).count();
    assert_eq!((checked, throttled), (1, 15));
}

/// Issue 12's bounded anonymous state: pending sign-ins and key ceremonies
/// are counted per client address and in total; past the limits the answer
/// is 429 or 503 in words, and nothing more is kept.
#[tokio::test]
async fn anonymous_sign_ins_are_bounded_per_address_and_in_total() {
    let app = crate::browser::spawn_on_localhost_with(|s| {
        s.limits.per_address = 5;
        s.limits.total = 8;
        s.server.trust_forwarded_for = true;
    })
    .await;
    app.add_epr("web").await;
    let (url, _) = authorize_url(&app, "web", &[]);
    let from = |address: &'static str| {
        let url = url.clone();
        let app = &app;
        async move { app.http.get(&url).header("x-forwarded-for", format!("10.9.9.9, {address}")).send().await.unwrap() }
    };
    for _ in 0..5 {
        assert_eq!(from("192.0.2.1").await.status(), 303);
    }
    let r = from("192.0.2.1").await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    assert!(r.text().await.unwrap().contains("Too many sign-ins have been started from this computer"));
    // Another address still gets in, until the total is reached.
    for _ in 0..3 {
        assert_eq!(from("192.0.2.2").await.status(), 303);
    }
    let r = from("192.0.2.3").await;
    assert_eq!(r.status(), 503);
    assert!(r.text().await.unwrap().contains("too busy to start another sign-in"));
    // Key ceremonies are counted the same way, answering in JSON.
    let start = |address: &'static str| {
        app.http
            .post(app.url("/webauthn/login/start"))
            .header("x-forwarded-for", address)
            .json(&serde_json::json!({}))
            .send()
    };
    for _ in 0..5 {
        assert_eq!(start("192.0.2.4").await.unwrap().status(), 200);
    }
    let r = start("192.0.2.4").await.unwrap();
    assert_eq!(r.status(), 429);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "busy", "{body}");
}
