//! A headless Chromium for end-to-end tests, driven over the Chrome DevTools
//! Protocol (CDP), with the DevTools WebAuthn virtual authenticator standing
//! in for a security key or a platform authenticator.
//!
//! Hand-rolled over one WebSocket (`tokio-tungstenite`) rather than a CDP
//! crate: the few commands the tests need do not justify compiling a
//! generated binding of the whole protocol. One background task owns the
//! socket, writes commands and hands each reply to its caller by `id`; events
//! are ignored. Every command is bounded by [`COMMAND_TIMEOUT`] and panics with
//! the method name, so a stuck browser fails a test instead of hanging it.
//!
//! WebAuthn needs a secure context: use `http://localhost:PORT` (rpId
//! `localhost`), not `http://127.0.0.1`, which is not a valid rpId.
//!
//! A missing `chromium` panics, with or without `CI=true`: a browser test is
//! never skipped in silence.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

/// How long a starting browser may take to write `DevToolsActivePort`.
/// Generous: the machines that run the tests are shared and often busy.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How long one CDP command may take before the test panics.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(15);

/// How long [`Page::navigate`] and [`Page::wait_for`] poll before panicking.
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(10);

const POLL: Duration = Duration::from_millis(50);

/// A headless Chromium for a test. Dropping it kills the browser's whole
/// process group (renderers and helpers too) and removes its profile.
pub struct Chromium {
    cdp: Cdp,
    child: Child,
    /// The profile and log; removed on drop, after the browser is killed.
    _dir: TempDir,
}

impl Chromium {
    /// Launch Chromium on a fresh profile, wait for its DevTools port and
    /// connect to the browser endpoint.
    ///
    /// # Panics
    ///
    /// If `chromium` is not installed (run the README's test command,
    /// `./scripts/test`, which installs it), or if it does not come up.
    pub async fn start() -> Chromium {
        let dir = tempfile::Builder::new().prefix("wardkey-chromium-").tempdir().expect("creating a Chromium temp dir");
        let (profile, log_path) = (dir.path().join("profile"), dir.path().join("chromium.log"));
        let log = File::create(&log_path).expect("creating chromium.log");
        let child = Command::new("chromium")
            // --no-sandbox: CI runs the tests as root, where Chromium's sandbox
            // refuses to start; the browser only ever loads our own pages.
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check"])
            // Containers have a small /dev/shm; tests need no phoning home.
            .args(["--disable-dev-shm-usage", "--disable-background-networking"])
            .args(["--remote-debugging-port=0", "--password-store=basic"])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cloning the log file handle"))
            .stderr(log)
            // Its own process group, so Drop can kill every helper process.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| missing_chromium(e));
        let mut chromium = Chromium { cdp: Cdp::closed(), child, _dir: dir };
        let url = chromium.devtools_url(&profile.join("DevToolsActivePort"), &log_path).await;
        let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .unwrap_or_else(|e| panic!("connecting to Chromium's DevTools at {url}: {e}"));
        chromium.cdp = Cdp::spawn(ws);
        chromium
    }

    /// `ws://127.0.0.1:PORT/devtools/browser/UUID`, from `DevToolsActivePort`
    /// (line 1 the port, line 2 the path), which Chromium writes once it listens.
    async fn devtools_url(&mut self, port_file: &Path, log: &Path) -> String {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let text = std::fs::read_to_string(port_file).unwrap_or_default();
            if let [port, path, ..] = text.lines().collect::<Vec<_>>()[..] {
                return format!("ws://127.0.0.1:{port}{path}");
            }
            let exited = self.child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() > deadline {
                let log = std::fs::read_to_string(log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                panic!("Chromium did not start (exit: {exited:?}); its log:\n{}", tail.join("\n"));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// A new tab on `about:blank` (`Target.createTarget`), attached with
    /// `flatten: true` so its commands go over the browser socket with a
    /// `sessionId`. Dropping the [`Page`] closes the tab.
    pub async fn new_page(&self) -> Page {
        let target = self.cdp.send(None, "Target.createTarget", json!({ "url": "about:blank" })).await;
        let target_id = target["targetId"].as_str().expect("Target.createTarget: no targetId").to_owned();
        let attached =
            self.cdp.send(None, "Target.attachToTarget", json!({ "targetId": target_id, "flatten": true })).await;
        let session = attached["sessionId"].as_str().expect("Target.attachToTarget: no sessionId").to_owned();
        Page { cdp: self.cdp.clone(), session, target_id }
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        // SIGKILL to the whole group (`kill -KILL -- -PGID`), then reap the
        // browser; `_dir` is removed afterwards by its own Drop. (Helpers that
        // Chromium double-forked are reaped by init, as on a graceful exit.)
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).stderr(Stdio::null()).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One tab of a [`Chromium`].
pub struct Page {
    cdp: Cdp,
    session: String,
    target_id: String,
}

impl Page {
    /// `Page.navigate`, then wait (up to [`WAIT_TIMEOUT`]) until the new
    /// document, wherever redirects led, has `readyState == "complete"`.
    pub async fn navigate(&self, url: &str) {
        // A mark on the old document tells it apart from the new one.
        let _ = self.eval("window.__wardkeyOldDocument = true").await;
        let nav = self.send("Page.navigate", json!({ "url": url })).await;
        if let Some(error) = nav["errorText"].as_str() {
            panic!("Page.navigate to {url} failed: {error}");
        }
        // No loaderId: a same-document navigation (fragment), the mark stays.
        let cond = match nav.get("loaderId") {
            Some(_) => "!window.__wardkeyOldDocument && document.readyState === 'complete'",
            None => "document.readyState === 'complete'",
        };
        self.wait_for(cond).await;
    }

    /// `Runtime.evaluate` with `awaitPromise` and `returnByValue`: the value
    /// as JSON (`undefined` is `null`), or `Err` with the exception's
    /// description (or the protocol error, e.g. mid-navigation).
    pub async fn eval(&self, js: &str) -> Result<Value, String> {
        let params = json!({ "expression": js, "awaitPromise": true, "returnByValue": true });
        let reply = self.cdp.call(Some(&self.session), "Runtime.evaluate", params).await?;
        if let Some(details) = reply.get("exceptionDetails") {
            let description = details["exception"]["description"].as_str();
            return Err(description.or(details["text"].as_str()).unwrap_or("exception").to_owned());
        }
        Ok(reply["result"].get("value").cloned().unwrap_or(Value::Null))
    }

    /// `location.href`.
    pub async fn url(&self) -> String {
        match self.eval("location.href").await {
            Ok(Value::String(href)) => href,
            other => panic!("reading location.href: {other:?}"),
        }
    }

    /// Poll `js_condition` until it is truthy, up to [`WAIT_TIMEOUT`];
    /// exceptions count as false (the page may be navigating).
    ///
    /// # Panics
    ///
    /// On timeout, with the condition and the current URL.
    pub async fn wait_for(&self, js_condition: &str) {
        let deadline = Instant::now() + WAIT_TIMEOUT;
        let js = format!("!!({js_condition})");
        loop {
            if let Ok(Value::Bool(true)) = self.eval(&js).await {
                return;
            }
            if Instant::now() > deadline {
                let url = self.eval("location.href").await;
                panic!("timed out after {WAIT_TIMEOUT:?} waiting for `{js_condition}` (page at {url:?})");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Save a PNG of the viewport (`Page.captureScreenshot`) to `path`.
    pub async fn screenshot(&self, path: &Path) {
        let shot = self.send("Page.captureScreenshot", json!({ "format": "png" })).await;
        let data = shot["data"].as_str().expect("Page.captureScreenshot: no data");
        let png = base64::engine::general_purpose::STANDARD.decode(data).expect("screenshot is not base64");
        std::fs::write(path, png).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }

    /// `WebAuthn.enable` and a CTAP 2.1 virtual authenticator on `transport`
    /// (`"usb"`, `"nfc"`, `"ble"`, `"internal"`…) that verifies the user and
    /// simulates presence, so no gesture is needed. Returns its id.
    pub async fn add_virtual_authenticator(&self, transport: &str, resident_key: bool) -> String {
        self.send("WebAuthn.enable", json!({})).await;
        let options = json!({
            "protocol": "ctap2",
            "ctap2Version": "ctap2_1",
            "transport": transport,
            "hasResidentKey": resident_key,
            "hasUserVerification": true,
            "isUserVerified": true,
            "automaticPresenceSimulation": true,
        });
        let reply = self.send("WebAuthn.addVirtualAuthenticator", json!({ "options": options })).await;
        reply["authenticatorId"].as_str().expect("WebAuthn.addVirtualAuthenticator: no authenticatorId").to_owned()
    }

    /// `WebAuthn.removeVirtualAuthenticator`.
    pub async fn remove_virtual_authenticator(&self, id: &str) {
        self.send("WebAuthn.removeVirtualAuthenticator", json!({ "authenticatorId": id })).await;
    }

    /// The credentials an authenticator holds (`WebAuthn.getCredentials`).
    pub async fn credentials(&self, authenticator_id: &str) -> Vec<Value> {
        let reply = self.send("WebAuthn.getCredentials", json!({ "authenticatorId": authenticator_id })).await;
        reply["credentials"].as_array().cloned().unwrap_or_default()
    }

    async fn send(&self, method: &str, params: Value) -> Value {
        self.cdp.send(Some(&self.session), method, params).await
    }

    /// Show the page at `width` × `height` CSS pixels (a desktop at
    /// 1280 × 800, a tablet at 768 × 1024), for layout and screenshots.
    pub async fn set_viewport(&self, width: u32, height: u32) {
        let metrics = json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 800 });
        self.send("Emulation.setDeviceMetricsOverride", metrics).await;
    }

    /// Run axe-core (`axe_source`, the text of `axe.min.js`) on the page
    /// and return its violations: `[{id, impact, help, nodes: [...]}]`.
    pub async fn axe(&self, axe_source: &str) -> Vec<Value> {
        self.eval(axe_source).await.expect("axe-core loads");
        let result = self
            .eval("axe.run(document, {resultTypes: ['violations']}).then(r => r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.target.join(' '))})))")
            .await
            .expect("axe-core runs");
        result.as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        // Fire and forget: Drop cannot await the reply.
        self.cdp.post(None, "Target.closeTarget", json!({ "targetId": self.target_id }));
    }
}

/// A command for the socket task: its id, its JSON text, where the reply goes.
type Request = (u64, String, oneshot::Sender<Value>);

/// A handle on the CDP connection, shared by the browser and its pages.
#[derive(Clone)]
struct Cdp {
    tx: mpsc::UnboundedSender<Request>,
    next_id: Arc<AtomicU64>,
}

impl Cdp {
    /// A handle whose every command fails, until the socket is connected.
    fn closed() -> Cdp {
        Cdp { tx: mpsc::unbounded_channel().0, next_id: Arc::default() }
    }

    /// Start the task that owns the socket: it writes requests and routes
    /// replies by `id`. It ends when the socket closes or every handle drops;
    /// the replies still awaited then fail as "connection closed".
    fn spawn<S>(mut ws: tokio_tungstenite::WebSocketStream<S>) -> Cdp
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (tx, mut rx) = mpsc::unbounded_channel::<Request>();
        tokio::spawn(async move {
            let mut pending = HashMap::new();
            loop {
                tokio::select! {
                    request = rx.recv() => {
                        let Some((id, text, reply)) = request else { break };
                        pending.insert(id, reply);
                        if ws.send(Message::text(text)).await.is_err() {
                            break;
                        }
                    }
                    message = ws.next() => match message {
                        Some(Ok(Message::Text(text))) => {
                            let Ok(message) = serde_json::from_str::<Value>(text.as_str()) else { continue };
                            if let Some(reply) = message["id"].as_u64().and_then(|id| pending.remove(&id)) {
                                let _ = reply.send(message);
                            }
                        }
                        Some(Ok(_)) => {}
                        Some(Err(_)) | None => break,
                    },
                }
            }
        });
        Cdp { tx, next_id: Arc::new(AtomicU64::new(1)) }
    }

    /// Queue a command; the receiver gets the whole reply message.
    fn post(&self, session: Option<&str>, method: &str, params: Value) -> oneshot::Receiver<Value> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let (reply, rx) = oneshot::channel();
        let _ = self.tx.send((id, message.to_string(), reply));
        rx
    }

    /// A command's `result`, or `Err` with the protocol error's message.
    ///
    /// # Panics
    ///
    /// After [`COMMAND_TIMEOUT`], or if the connection is closed.
    async fn call(&self, session: Option<&str>, method: &str, params: Value) -> Result<Value, String> {
        let reply = match tokio::time::timeout(COMMAND_TIMEOUT, self.post(session, method, params)).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => panic!("CDP {method}: connection to Chromium closed"),
            Err(_) => panic!("CDP {method}: no reply within {COMMAND_TIMEOUT:?}"),
        };
        match reply.get("error") {
            Some(error) => Err(error["message"].as_str().unwrap_or("unknown error").to_owned()),
            None => Ok(reply.get("result").cloned().unwrap_or(Value::Null)),
        }
    }

    /// A command's `result`; panics on a protocol error too.
    async fn send(&self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.call(session, method, params).await.unwrap_or_else(|e| panic!("CDP {method} failed: {e}"))
    }
}

/// Panic with instructions when `chromium` cannot be spawned: a test that
/// needs a browser must fail, never pass by skipping.
fn missing_chromium(error: std::io::Error) -> ! {
    crate::missing_program("chromium", "chromium", error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const PAGE: &str = "<!doctype html><title>t</title><h1>wardkey</h1>";

    /// A server answering every request with [`PAGE`]; returns its port.
    async fn serve_page() -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\n\
                         connection: close\r\n\r\n{PAGE}",
                        PAGE.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                });
            }
        });
        port
    }

    #[tokio::test]
    async fn passkey_on_a_virtual_authenticator() {
        let port = serve_page().await;
        let chromium = Chromium::start().await;
        let page = chromium.new_page().await;
        page.navigate(&format!("http://localhost:{port}/")).await;
        assert_eq!(page.url().await, format!("http://localhost:{port}/"));
        assert_eq!(page.eval("document.querySelector('h1').textContent").await, Ok(json!("wardkey")));
        let error = page.eval("Promise.reject(new TypeError('boom'))").await.unwrap_err();
        assert!(error.contains("boom"), "{error}");

        let authenticator = page.add_virtual_authenticator("internal", true).await;
        let id = page
            .eval(
                "navigator.credentials.create({publicKey:{rp:{id:'localhost',name:'t'},\
                 user:{id:new Uint8Array([1,2,3]),name:'u',displayName:'u'},challenge:new Uint8Array(32),\
                 pubKeyCredParams:[{type:'public-key',alg:-7}],\
                 authenticatorSelection:{residentKey:'required',userVerification:'required'}}}).then(c => c.id)",
            )
            .await
            .expect("navigator.credentials.create");
        assert!(id.as_str().is_some_and(|id| !id.is_empty()), "{id}");
        let credentials = page.credentials(&authenticator).await;
        assert_eq!(credentials.len(), 1, "{credentials:?}");
        assert_eq!(credentials[0]["isResidentCredential"], json!(true));
        assert_eq!(credentials[0]["rpId"], json!("localhost"));
        page.remove_virtual_authenticator(&authenticator).await;

        page.wait_for("document.title === 't'").await;
        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("shot.png");
        page.screenshot(&png).await;
        assert!(std::fs::read(&png).unwrap().starts_with(b"\x89PNG\r\n\x1a\n"));
    }

    #[tokio::test]
    #[should_panic(expected = "waiting for `false`")]
    async fn wait_for_panics_with_the_condition() {
        let chromium = Chromium::start().await;
        let page = chromium.new_page().await;
        page.wait_for("false").await;
    }
}
