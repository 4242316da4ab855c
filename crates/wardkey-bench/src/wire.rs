//! HTTP to the server under test, and every failure sorted into an
//! [`ErrorKind`] so that reports count them by cause.
//!
//! Every request goes to the one server URL the operator named: the client
//! follows no redirects, and an endpoint that discovery places on another
//! host is refused, so a load run cannot spill onto a system nobody meant
//! to load.

use std::time::Duration;

use anyhow::{Context, bail};
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use wardkey_proto::oauth::TokenResponse;
use wardkey_proto::tap::{
    EnrolRequest, EnrolResponse, JOSE_CONTENT_TYPE, SESSION_TICKET_TOKEN_TYPE, TOKEN_EXCHANGE_GRANT, TapResponse,
};

use crate::jws::{SignNow, Signer};
use crate::stats::ErrorKind;

/// RFC 7523 client assertion type.
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// An HTTP client for load: no redirects, bounded time per request, a
/// connection pool as large as the number of workers.
pub fn http_client(timeout: Duration, workers: usize) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(workers.max(1))
        .tcp_nodelay(true)
        .user_agent(concat!("wardkey-bench/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("building the HTTP client")
}

/// `scheme://host:port` of `url`, to compare where two URLs point.
pub fn origin(url: &Url) -> String {
    format!("{}://{}:{}", url.scheme(), url.host_str().unwrap_or(""), url.port_or_known_default().unwrap_or(0))
}

/// `base` without a trailing slash, checked to be an http(s) URL.
pub fn base_url(base: &str) -> anyhow::Result<Url> {
    let trimmed = base.trim().trim_end_matches('/');
    let url = Url::parse(trimmed).with_context(|| format!("{base:?} is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        bail!("{base:?} must be an http:// or https:// URL");
    }
    Ok(url)
}

/// Sort a transport failure.
pub fn transport(e: &reqwest::Error) -> ErrorKind {
    let what = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_body() || e.is_decode() {
        "body"
    } else {
        "other"
    };
    ErrorKind::Transport(what.into())
}

/// Read a response: 2xx decodes as `T`; anything else becomes an
/// [`ErrorKind::Http`] with the body's `error` code. Returns when the whole
/// body has arrived, which is when the caller's wait ends.
pub async fn read<T: DeserializeOwned>(response: Result<reqwest::Response, reqwest::Error>) -> Result<T, ErrorKind> {
    let response = response.map_err(|e| transport(&e))?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| transport(&e))?;
    if !status.is_success() {
        #[derive(Deserialize)]
        struct ErrorBody {
            error: Option<String>,
        }
        let code = serde_json::from_slice::<ErrorBody>(&body).ok().and_then(|b| b.error);
        return Err(ErrorKind::Http { status: status.as_u16(), code });
    }
    serde_json::from_slice(&body).map_err(|_| ErrorKind::Unexpected(format!("{} body", status.as_u16())))
}

/// The parts of an OpenID provider's discovery document this tool uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Discovery {
    /// The issuer: `aud` of tap requests.
    pub issuer: String,
    /// The token endpoint: where token requests go, and `aud` of client
    /// assertions.
    pub token_endpoint: String,
    /// Grants the provider says it supports.
    #[serde(default)]
    pub grant_types_supported: Option<Vec<String>>,
    /// Client authentication methods at the token endpoint.
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
}

/// Fetch `{issuer}/.well-known/openid-configuration` and check that it
/// names that issuer and keeps its token endpoint on the same host.
pub async fn discover(http: &reqwest::Client, issuer: &Url) -> anyhow::Result<Discovery> {
    let url = format!("{}/.well-known/openid-configuration", issuer.as_str().trim_end_matches('/'));
    let response = http.get(&url).send().await.with_context(|| format!("fetching {url}"))?;
    if response.status() != StatusCode::OK {
        bail!("{url} answered {}: is this an OpenID provider?", response.status());
    }
    let doc: Discovery = response.json().await.with_context(|| format!("{url} is not a discovery document"))?;
    let token = Url::parse(&doc.token_endpoint).with_context(|| format!("token_endpoint of {url}"))?;
    if origin(&token) != origin(issuer) {
        bail!(
            "the token endpoint {} is not on {}: this tool only sends load to the server it was given",
            doc.token_endpoint,
            origin(issuer)
        );
    }
    Ok(doc)
}

/// The Wardkey server under test, as a workstation agent talks to it.
#[derive(Debug, Clone)]
pub struct Wardkey {
    http: reqwest::Client,
    base: String,
    /// The issuer (`aud` of every tap request).
    pub issuer: String,
    /// The token endpoint (`aud` of client assertions, and where token
    /// exchange goes).
    pub token_endpoint: String,
}

impl Wardkey {
    /// A server whose issuer and token endpoint are already known.
    pub fn new(http: reqwest::Client, base: &str, issuer: &str, token_endpoint: &str) -> Self {
        Self {
            http,
            base: base.trim_end_matches('/').to_string(),
            issuer: issuer.into(),
            token_endpoint: token_endpoint.into(),
        }
    }

    /// Find the server at `server` through discovery.
    pub async fn connect(http: reqwest::Client, server: &str) -> anyhow::Result<Self> {
        let base = base_url(server)?;
        let doc = discover(&http, &base).await.with_context(|| format!("is Wardkey running at {base}?"))?;
        Ok(Self {
            http,
            base: base.as_str().trim_end_matches('/').to_string(),
            issuer: doc.issuer,
            token_endpoint: doc.token_endpoint,
        })
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `POST /tap/enrol` with a one-time code.
    pub async fn enrol(&self, code: &str, public_key: &str) -> Result<EnrolResponse, ErrorKind> {
        let request = EnrolRequest { code: code.into(), public_key: public_key.into() };
        read(self.http.post(format!("{}/tap/enrol", self.base)).json(&request).send().await).await
    }

    /// POST a signed tap request to `path` (`/tap`, `/tap/pin`, `/tap/out`);
    /// returns the answer and when it had fully arrived.
    pub async fn tap(&self, path: &str, jws: String) -> (Result<TapResponse, ErrorKind>, Instant) {
        let sent = self
            .http
            .post(format!("{}{path}", self.base))
            .header(reqwest::header::CONTENT_TYPE, JOSE_CONTENT_TYPE)
            .body(jws)
            .send()
            .await;
        let answer = read(sent).await;
        (answer, Instant::now())
    }

    /// RFC 8693 token exchange of `ticket` for tokens addressed to
    /// `audience`, authenticated by the workstation's client assertion.
    pub async fn exchange(
        &self,
        ws: &Signer,
        ticket: &str,
        audience: &str,
    ) -> (Result<TokenResponse, ErrorKind>, Instant) {
        let assertion = ws.assertion_now(&self.token_endpoint);
        let form = [
            ("grant_type", TOKEN_EXCHANGE_GRANT),
            ("client_id", ws.workstation_id()),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", assertion.as_str()),
            ("subject_token", ticket),
            ("subject_token_type", SESSION_TICKET_TOKEN_TYPE),
            ("audience", audience),
        ];
        let sent = self.http.post(format!("{}/token", self.base)).form(&form).send().await;
        let answer = read(sent).await;
        (answer, Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_compare_scheme_host_and_port() {
        let a = Url::parse("http://127.0.0.1:8080/x").unwrap();
        let b = Url::parse("http://127.0.0.1:8080/token").unwrap();
        let c = Url::parse("http://127.0.0.1:9090/token").unwrap();
        let d = Url::parse("https://idp.example/token").unwrap();
        assert_eq!(origin(&a), origin(&b));
        assert_ne!(origin(&a), origin(&c));
        assert_eq!(origin(&d), "https://idp.example:443");
    }

    #[test]
    fn base_urls_lose_their_trailing_slash_and_need_http() {
        assert_eq!(base_url("http://127.0.0.1:8080/").unwrap().as_str(), "http://127.0.0.1:8080/");
        assert!(base_url("ftp://x").is_err());
        assert!(base_url("not a url").is_err());
    }
}
