//! Building and running the server: bind (port 0 allowed), report the real
//! address, serve until shutdown, then drain background tasks.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::routing::get;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::cors::{Any, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use wardkey_core::clock::{SharedClock, SystemClock};
use wardkey_core::secret::redact_url;

use crate::config::Settings;
use crate::keys::Keyring;
use crate::metrics::track;
use crate::state::{AppState, Foundations};
use crate::{health, oidc};

/// Requests larger than this are refused with 413: no OAuth request comes
/// near it, and it bounds the memory a hostile client can make us hold.
const MAX_BODY: usize = 64 * 1024;
/// How long in-flight requests get to finish after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A built server, bound and ready to run.
pub struct Application {
    listener: std::net::TcpListener,
    address: SocketAddr,
    router: Router,
    state: AppState,
    tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

/// `GET /static/webauthn.js`: the passkey pages' script, cacheable for an
/// hour (it changes only with a release).
async fn webauthn_js() -> impl axum::response::IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")],
        crate::pages::WEBAUTHN_JS,
    )
}

/// Every route, with the layers that apply to all of them. Tests may call
/// this without a socket.
pub fn router(state: AppState) -> Router {
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE]);
    let api = oidc::api_router().layer(cors);
    let ops = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics));
    let static_header = |name: HeaderName, value: &'static str| {
        SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
    };
    Router::new()
        .merge(oidc::browser_router())
        .merge(crate::tap::router())
        .merge(crate::webauthn::router())
        .merge(crate::scim::router())
        .merge(crate::console::router())
        .route("/static/webauthn.js", get(webauthn_js))
        .merge(api)
        .merge(ops)
        .layer(axum::middleware::from_fn_with_state(state.metrics.clone(), track))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        // A request that takes too long (a body trickled in) is answered
        // 408 and its connection's memory freed.
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            state.settings.server.request_timeout,
        ))
        // RFC 9700 §4.16: no page of ours may be framed.
        .layer(static_header(
            header::CONTENT_SECURITY_POLICY,
            // No form-action: browsers apply it to the redirect after a form
            // post, which for /login is the application's redirect URI.
            "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; img-src 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ))
        .layer(static_header(header::X_FRAME_OPTIONS, "DENY"))
        // Pages carry CSRF tokens and token responses carry secrets; nothing
        // is cacheable unless a handler says so (as /jwks does).
        .layer(static_header(header::CACHE_CONTROL, "no-store"))
        .layer(static_header(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(static_header(header::REFERRER_POLICY, "no-referrer"))
        .with_state(state)
}

impl Application {
    /// Open the store and cache, load or create signing keys, and bind.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    /// [`Application::build`] with an injected clock (tests).
    pub async fn build_with_clock(settings: Settings, clock: SharedClock) -> anyhow::Result<Self> {
        let listener = std::net::TcpListener::bind(&settings.server.listen)
            .with_context(|| format!("binding {}", settings.server.listen))?;
        Self::build_on(settings, clock, listener).await
    }

    /// Build on a listener the caller bound, so a test can learn the port
    /// (and so the issuer URL) before the server exists.
    pub async fn build_on(
        settings: Settings,
        clock: SharedClock,
        listener: std::net::TcpListener,
    ) -> anyhow::Result<Self> {
        settings.validate()?;
        let attestation = settings.webauthn.attestation_ca_list()?.map(Arc::new);
        if attestation.is_some() && settings.webauthn.passkeys {
            tracing::warn!(
                "webauthn.approved_models is set but webauthn.passkeys is on: people can still add passkeys, \
                 which no model allow-list can vouch for"
            );
        }
        let store = open_store(&settings.store).await?;
        let cache = wardkey_cache::open(&settings.cache.url)
            .with_context(|| format!("opening the cache at {}", redact_url(&settings.cache.url)))?;
        if let Some(warning) = settings.listen_mismatch() {
            tracing::warn!("{warning}");
        }
        // The server starts anyway (the cache may come up after it), but an
        // operator must see why every sign-in fails until it does.
        match tokio::time::timeout(Duration::from_secs(2), cache.ping()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(
                cache = %redact_url(&settings.cache.url), error = %e,
                "the session cache is not answering: sign-ins fail until it does"
            ),
            Err(_) => tracing::error!(
                cache = %redact_url(&settings.cache.url),
                "the session cache did not answer within 2 s: sign-ins fail until it does"
            ),
        }
        let keys = Keyring::load(store.as_ref(), clock.now()).await.context("loading signing keys")?;
        let badge_key = store
            .server_secret(wardkey_core::badge::DIGEST_KEY_NAME, wardkey_core::secret::new_secret().as_bytes())
            .await
            .context("loading the badge digest key")?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("building the HTTP client")?;
        let directories = wardkey_directory::Directories::new(&settings.directory)?;
        let state = AppState::new(Foundations {
            directories,
            webauthn: crate::passkeys::relying_party(&settings.issuer()),
            settings: settings.clone(),
            store,
            cache,
            clock,
            keys: Arc::new(keys),
            badge_key: badge_key.into(),
            http,
            attestation,
        });
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let tls = settings.server.tls_cert.clone().zip(settings.server.tls_key.clone());
        Ok(Self { listener, address, router: router(state.clone()), state, tls })
    }

    /// The bound address (the real port when configured with port 0).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The shared state, for tests that need to reach behind the HTTP API.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serve until `shutdown` completes, then stop accepting, let in-flight
    /// requests finish (bounded), and stop background tasks.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let cancel = CancellationToken::new();
        let tasks = TaskTracker::new();
        tasks.spawn(reload_keys(self.state.clone(), cancel.clone()));
        tasks.spawn(crate::backchannel::run_outbox(self.state.logouts.clone(), cancel.clone()));
        let poll = self.state.settings.store.directory_poll;
        tasks.spawn(crate::directory::poll_generation(self.state.directory.clone(), poll, cancel.clone()));
        tasks.spawn(crate::directory::listen(self.state.directory.clone(), self.state.cache.clone(), cancel.clone()));
        tasks.spawn(crate::directory_sync::run(self.state.directory_sync(), cancel.clone()));
        let audit = &self.state.settings.audit;
        if let Some(spec) = audit.sink.as_deref().and_then(|s| crate::audit_sink::SinkSpec::parse(s).ok()) {
            tasks.spawn(crate::audit_sink::follow(self.state.store.clone(), spec, cancel.clone()));
        }
        if let Some(retention) = audit.retention {
            let (store, clock) = (self.state.store.clone(), self.state.clock.clone());
            tasks.spawn(crate::audit_sink::prune(store, clock, retention, cancel.clone()));
        }

        let handle = axum_server::Handle::new();
        let signal_handle = handle.clone();
        let signal_cancel = cancel.clone();
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutting down");
            signal_cancel.cancel();
            signal_handle.graceful_shutdown(Some(DRAIN_TIMEOUT));
        });
        tracing::info!(address = %self.address, issuer = %self.state.issuer, "wardkey listening");
        // The peer's address, for the per-address bounds of `admission`.
        let service = self.router.into_make_service_with_connect_info::<SocketAddr>();
        // Headers must arrive within the limit (hyper enforces it only with
        // a timer set), so a trickling client cannot hold a connection.
        let header_timeout = self.state.settings.server.header_read_timeout;
        let limit = |builder: &mut hyper_util::server::conn::auto::Builder<_>| {
            builder.http1().timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(header_timeout);
            builder.http2().timer(hyper_util::rt::TokioTimer::new());
        };
        match self.tls {
            Some((cert, key)) => {
                let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(&cert, &key)
                    .await
                    .with_context(|| format!("loading TLS certificate {} and key {}", cert.display(), key.display()))?;
                let mut server = axum_server::from_tcp_rustls(self.listener, config).handle(handle);
                limit(server.http_builder());
                server.serve(service).await?;
            }
            None => {
                let mut server = axum_server::from_tcp(self.listener).handle(handle);
                limit(server.http_builder());
                server.serve(service).await?;
            }
        }
        cancel.cancel();
        tasks.close();
        tasks.wait().await;
        Ok(())
    }
}

/// Reload signing keys periodically so a rotation made by the CLI (or
/// another node) is picked up within `oidc.key_reload_interval`.
async fn reload_keys(state: AppState, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(state.settings.oidc.key_reload_interval);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {
                if let Err(e) = state.keys.reload(state.store.as_ref(), state.now()).await {
                    tracing::warn!(error = %e, "reloading signing keys failed; keeping the current ones");
                }
            }
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Open the configured store, which must exist unless the settings allow
/// creating one; a created store is said in the log, never silent.
async fn open_store(settings: &crate::config::StoreSettings) -> anyhow::Result<Arc<dyn wardkey_store::Store>> {
    let shown = redact_url(&settings.url);
    match wardkey_store::open_existing(&settings.url).await {
        Err(wardkey_store::StoreError::NoStore(_)) if settings.create_if_missing => {
            let store =
                wardkey_store::open(&settings.url).await.with_context(|| format!("creating the store at {shown}"))?;
            tracing::warn!(store = %shown, "created a new, empty store");
            Ok(store)
        }
        other => other.with_context(|| format!("opening the store at {shown}")),
    }
}
