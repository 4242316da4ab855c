//! `spawn_app()` and generic helpers shared by every test module.

use std::sync::Arc;

use reqwest::header::{CONTENT_TYPE, LOCATION};
use tempfile::TempDir;
use tokio::sync::oneshot;
use url::Url;
use wardkey_core::client::{Client, ClientAuth, GrantType};
use wardkey_core::clock::ManualClock;
use wardkey_core::keys::SigningAlg;
use wardkey_core::secret::{digest, new_secret};
use wardkey_core::user::User;
use wardkey_idp::Settings;
use wardkey_idp::state::AppState;
use wardkey_testsupport::postgres::TestPostgres;
use wardkey_testsupport::redis::TestRedis;

/// A redirect URI on loopback that nothing listens on: tests read the
/// `Location` header instead of following it.
pub const REDIRECT: &str = "http://127.0.0.1:1/callback";
/// A registered post-logout redirect URI.
pub const POST_LOGOUT: &str = "http://127.0.0.1:1/signed-out";
/// The password every test user gets.
pub const PASSWORD: &str = "correct horse battery";

pub use wardkey_testsupport::install_crypto;

/// Environment variable that runs every test server on real engines:
/// `redis`, `postgres` or `redis,postgres` (the README's test command runs
/// the suite once more that way).
pub const BACKENDS_ENV: &str = "WARDKEY_TEST_BACKENDS";

/// A running server with its own store directory, stopped on drop.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`: where this node listens.
    pub base: String,
    /// The issuer (`server.public_url`): `base`, unless several nodes share
    /// one issuer.
    pub issuer: String,
    /// The server's state, for fixtures.
    pub state: AppState,
    /// The server's clock; `advance` it to expire things.
    pub clock: Arc<ManualClock>,
    /// The store directory.
    pub dir: TempDir,
    /// A plain HTTP client that does not follow redirects.
    pub http: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    /// Engines started for this server (see [`BACKENDS_ENV`]).
    engines: Engines,
}

/// Redis and PostgreSQL started for one test server, kept across a restart.
#[derive(Default)]
pub struct Engines {
    redis: Option<TestRedis>,
    postgres: Option<TestPostgres>,
}

/// A stopped server's durable parts: [`Stopped::restart`] starts a server
/// on them again.
pub struct Stopped {
    dir: TempDir,
    engines: Engines,
}

impl Stopped {
    /// A server on this one's store and engines (a restart); adjust it like
    /// any [`TestAppBuilder`] (a new policy, the same address).
    pub fn restart<'a>(self) -> TestAppBuilder<'a> {
        TestAppBuilder { dir: Some(self.dir), engines: self.engines, tweaks: Vec::new() }
    }
}

/// One settings adjustment of a [`TestAppBuilder`].
type Tweak<'a> = Box<dyn FnOnce(&mut Settings) + 'a>;

/// How to start a test server: `TestApp::builder().settings(|s| ..).spawn()`,
/// or `stopped.restart().spawn()`. Defaults: a fresh store directory,
/// [`test_settings`], any free port, the engines [`BACKENDS_ENV`] asks for.
#[must_use = "a builder starts nothing until `spawn`"]
pub struct TestAppBuilder<'a> {
    dir: Option<TempDir>,
    engines: Engines,
    tweaks: Vec<Tweak<'a>>,
}

impl<'a> TestAppBuilder<'a> {
    /// Adjust the settings (after [`test_settings`] and any earlier tweak).
    pub fn settings(mut self, tweak: impl FnOnce(&mut Settings) + 'a) -> Self {
        self.tweaks.push(Box::new(tweak));
        self
    }

    /// Listen on `address` (to restart a server where an agent expects it).
    pub fn listen(self, address: &str) -> Self {
        let address = address.to_string();
        self.settings(move |s| s.server.listen = address)
    }

    /// Start the server.
    pub async fn spawn(self) -> TestApp {
        let dir = self.dir.unwrap_or_else(|| tempfile::tempdir().expect("temp dir"));
        let tweaks = self.tweaks;
        spawn_app_on(dir, self.engines, move |s| tweaks.into_iter().for_each(|tweak| tweak(s))).await
    }
}

/// The file in a test server's directory naming its store URL, so the CLI
/// tests can point the `wardkey` binary at the same store.
pub const STORE_URL_FILE: &str = "store.url";

impl TestApp {
    /// A server to start: see [`TestAppBuilder`].
    pub fn builder<'a>() -> TestAppBuilder<'a> {
        TestAppBuilder { dir: None, engines: Engines::default(), tweaks: Vec::new() }
    }

    /// Stop the server and hand back its store directory and engines.
    pub fn stop(mut self) -> Stopped {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"));
        Stopped { dir, engines: std::mem::take(&mut self.engines) }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Settings for a test server: its own SQLite file, cheap argon2 (the
/// parameters are not what is under test here), port 0.
pub fn test_settings(dir: &TempDir) -> Settings {
    let mut s = Settings::default();
    s.store.create_if_missing = true;
    s.store.url = format!("sqlite://{}", dir.path().join("wardkey.db").display());
    s.password.m_cost = 1024;
    s.password.t_cost = 1;
    s
}

/// Start a server with default test settings: the common case of
/// [`TestApp::builder`].
pub async fn spawn_app() -> TestApp {
    TestApp::builder().spawn().await
}

async fn spawn_app_on(dir: TempDir, mut engines: Engines, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    install_crypto();
    let mut settings = test_settings(&dir);
    tweak(&mut settings);
    // A test may ask for a fixed address (to restart a server where an agent
    // expects it); otherwise any free port.
    let listen = if settings.server.listen == Settings::default().server.listen {
        "127.0.0.1:0".into()
    } else {
        settings.server.listen.clone()
    };
    let listener = std::net::TcpListener::bind(&listen).expect("bind");
    let addr = listener.local_addr().expect("addr");
    settings.server.listen = addr.to_string();
    let scheme = if settings.server.tls_cert.is_some() { "https" } else { "http" };
    if settings.server.public_url == Settings::default().server.public_url {
        settings.server.public_url = format!("{scheme}://{addr}");
    }
    let wanted = std::env::var(BACKENDS_ENV).unwrap_or_default();
    if wanted.contains("redis") && settings.cache.url == "memory://" {
        settings.cache.url = engines.redis.get_or_insert_with(TestRedis::start).url();
    }
    if wanted.contains("postgres") && settings.store.url.starts_with("sqlite:") {
        settings.store.url = engines.postgres.get_or_insert_with(TestPostgres::start).url().to_string();
    }
    std::fs::write(dir.path().join(STORE_URL_FILE), &settings.store.url).expect("write store.url");
    let issuer = settings.server.public_url.clone();
    let clock = Arc::new(ManualClock::new());
    let app = wardkey_idp::Application::build_on(settings, clock.clone(), listener).await.expect("build app");
    let state = app.state().clone();
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(app.run_until(async move {
        let _ = rx.await;
    }));
    TestApp {
        base: format!("{scheme}://{addr}"),
        issuer,
        state,
        clock,
        dir,
        http: no_redirects(false),
        shutdown: Some(tx),
        engines,
    }
}

/// An HTTP client that never follows redirects, optionally keeping cookies
/// like a browser.
pub fn no_redirects(cookies: bool) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(cookies)
        .build()
        .expect("client")
}

/// How a test client authenticates.
pub enum Auth {
    /// A generated secret (returned by `add_client`).
    Secret,
    /// No credentials.
    Public,
    /// `private_key_jwt` with this JWKS document.
    Jwks(String),
}

impl TestApp {
    /// `self.base + path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// What the server's directory poll does every 250 ms, now: pick up
    /// changes made to the store behind its back (by the CLI, another node
    /// or a test fixture).
    pub async fn sync_directory(&self) {
        self.state.directory.refresh().await.expect("directory generation");
    }

    /// Create a user with [`PASSWORD`].
    pub async fn add_user(&self, username: &str) -> User {
        let hash = wardkey_core::password::hash(&self.state.settings.password.argon2(), PASSWORD).unwrap();
        let user = wardkey_testsupport::fixtures::new_user(username);
        self.state.store.create_user(&user, Some(&hash), self.clock_now()).await.unwrap()
    }

    /// A one-time invite link's token for `username`, as `wardkey user
    /// invite` makes it (valid an hour).
    pub async fn invite(&self, username: &str) -> String {
        let user = self.state.store.user_by_username(username).await.unwrap().expect("the user exists");
        let token = wardkey_core::secret::new_secret();
        let now = self.clock_now();
        let digest = wardkey_core::secret::digest(&token);
        self.state.store.create_invite(&digest, &user.id, now, now + 3600).await.unwrap();
        token
    }

    /// A browser (cookie jar, no redirects followed) that has redeemed a
    /// service-desk invite for `username`: it may add keys for them, and
    /// is signed in nowhere.
    pub async fn invited(&self, username: &str) -> reqwest::Client {
        let browser = no_redirects(true);
        let token = self.invite(username).await;
        let r = browser.post(self.url(&format!("/account/invite/{token}"))).send().await.unwrap();
        assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
        browser
    }

    /// Register a client with [`REDIRECT`] and [`POST_LOGOUT`]; returns its
    /// secret when it has one.
    pub async fn add_client(&self, id: &str, auth: Auth, grants: &[GrantType], alg: SigningAlg) -> Option<String> {
        let (auth, secret) = match auth {
            Auth::Secret => {
                let s = new_secret();
                (ClientAuth::Secret { digest: digest(&s).to_vec() }, Some(s))
            }
            Auth::Public => (ClientAuth::None, None),
            Auth::Jwks(jwks) => (ClientAuth::Jwks { jwks }, None),
        };
        let client = Client {
            client_id: id.into(),
            auth,
            redirect_uris: vec![REDIRECT.into()],
            post_logout_redirect_uris: vec![POST_LOGOUT.into()],
            backchannel_logout_uri: None,
            grant_types: grants.to_vec(),
            start_url: None,
            id_token_alg: alg,
            created_at: self.clock_now(),
            min_acr: None,
        };
        self.state.store.create_client(&client).await.unwrap();
        secret
    }

    /// A confidential client with code + refresh, ES256; returns the secret.
    pub async fn add_epr(&self, id: &str) -> String {
        self.add_client(id, Auth::Secret, &[GrantType::AuthorizationCode, GrantType::RefreshToken], SigningAlg::ES256)
            .await
            .unwrap()
    }

    fn clock_now(&self) -> i64 {
        use wardkey_core::clock::Clock;
        self.clock.now()
    }

    /// POST a form, optionally with HTTP Basic client credentials.
    pub async fn post_form(&self, path: &str, form: &[(&str, &str)], basic: Option<(&str, &str)>) -> reqwest::Response {
        let mut req = self.http.post(self.url(path)).form(form);
        if let Some((id, secret)) = basic {
            req = req.basic_auth(id, Some(secret));
        }
        req.send().await.unwrap()
    }

    /// GET a path.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.unwrap()
    }

    /// Drive a browser through `/authorize` → `/login` → back to the client,
    /// signing in as `username` if asked to. Returns the final redirect to
    /// the client (with `code` or `error`).
    pub async fn browser_authorize(&self, browser: &reqwest::Client, authorize_url: &str, username: &str) -> Url {
        let r = browser.get(authorize_url).send().await.unwrap();
        let location = location(&r);
        if !location.starts_with("/login") {
            return Url::parse(&location).unwrap();
        }
        let page = browser.get(self.url(&location)).send().await.unwrap();
        assert_eq!(page.status(), 200);
        let html = page.text().await.unwrap();
        let csrf = hidden_input(&html, "csrf");
        let request = hidden_input(&html, "request");
        let r = browser
            .post(self.url("/login"))
            .form(&[
                ("csrf", csrf.as_str()),
                ("request", request.as_str()),
                ("username", username),
                ("password", PASSWORD),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303, "login should redirect back to the client");
        Url::parse(&location_of(&r)).unwrap()
    }
}

/// The `Location` header of a redirect.
pub fn location(r: &reqwest::Response) -> String {
    location_of(r)
}

fn location_of(r: &reqwest::Response) -> String {
    r.headers()
        .get(LOCATION)
        .unwrap_or_else(|| panic!("expected a redirect, got {}", r.status()))
        .to_str()
        .unwrap()
        .to_string()
}

/// A query parameter of a URL.
pub fn query_param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// The value of `<input type="hidden" name=NAME value=…>` in a page.
pub fn hidden_input(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).unwrap_or_else(|| panic!("no hidden input {name} in {html}")) + marker.len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end].to_string()
}

/// A PKCE pair (verifier, S256 challenge).
pub fn pkce_pair() -> (String, String) {
    use base64::Engine;
    use sha2::Digest;
    let verifier = new_secret();
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// An authorization URL for `client_id` with PKCE; returns it and the verifier.
pub fn authorize_url(app: &TestApp, client_id: &str, extra: &[(&str, &str)]) -> (String, String) {
    let (verifier, challenge) = pkce_pair();
    let mut url = Url::parse(&app.url("/authorize")).unwrap();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("scope", "openid profile email")
        .append_pair("state", "xyz")
        .append_pair("nonce", "n-0S6")
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    for (k, v) in extra {
        url.query_pairs_mut().append_pair(k, v);
    }
    (url.to_string(), verifier)
}

/// Sign in through the browser and redeem the code with a client secret;
/// returns the token response JSON.
pub async fn login_and_redeem(app: &TestApp, client_id: &str, secret: &str, username: &str) -> serde_json::Value {
    let browser = no_redirects(true);
    let (url, verifier) = authorize_url(app, client_id, &[]);
    let back = app.browser_authorize(&browser, &url, username).await;
    let code = query_param(&back, "code").expect("code");
    let r = app
        .post_form(
            "/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", &verifier),
            ],
            Some((client_id, secret)),
        )
        .await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// Assert an OAuth error response: status and `error` code.
pub async fn assert_oauth_error(r: reqwest::Response, status: u16, error: &str) -> serde_json::Value {
    assert_eq!(r.status(), status, "status for expected {error}");
    assert!(
        r.headers().get(CONTENT_TYPE).unwrap().to_str().unwrap().starts_with("application/json"),
        "OAuth errors are JSON"
    );
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], error, "{body}");
    assert!(body["error_description"].as_str().is_some_and(|d| !d.is_empty()), "{body}");
    body
}
