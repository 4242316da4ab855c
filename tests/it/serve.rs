//! The `wardkey serve` binary as an operator runs it: JSON logs that never
//! carry a secret, graceful shutdown on SIGTERM, and data that survives a
//! restart.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::helpers::*;

struct Server {
    child: Child,
    base: String,
}

fn start_server(dir: &std::path::Path, port: u16) -> Server {
    let base = format!("http://127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_wardkey"))
        .arg("serve")
        .current_dir(dir)
        .env("WARDKEY_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("WARDKEY_SERVER__PUBLIC_URL", &base)
        .env("WARDKEY_PASSWORD__M_COST", "1024")
        .env("WARDKEY_PASSWORD__T_COST", "1")
        .env("WARDKEY_LOG__FORMAT", "json")
        .env("WARDKEY_LOG__LEVEL", "debug")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start wardkey serve");
    Server { child, base }
}

async fn wait_healthy(http: &reqwest::Client, base: &str) {
    for _ in 0..100 {
        if http.get(format!("{base}/healthz")).send().await.is_ok_and(|r| r.status() == 200) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("wardkey serve did not come up at {base}");
}

fn cli(dir: &std::path::Path, args: &[&str], stdin: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_wardkey"))
        .args(args)
        .current_dir(dir)
        .env("WARDKEY_PASSWORD__M_COST", "1024")
        .env("WARDKEY_PASSWORD__T_COST", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// SIGTERM, then the exit status and everything the server logged.
fn terminate(mut server: Server) -> (std::process::ExitStatus, Vec<String>) {
    let pid = server.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let stderr = server.child.stderr.take().unwrap();
    let lines: Vec<String> = BufReader::new(stderr).lines().map_while(Result::ok).collect();
    let status = server.child.wait().unwrap();
    (status, lines)
}

#[tokio::test]
async fn json_logs_without_secrets_sigterm_and_a_restart() {
    install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let port = wardkey_testsupport::free_port();
    let server = start_server(dir.path(), port);
    let http = no_redirects(false);
    wait_healthy(&http, &server.base).await;

    // The admin CLI on the same default store (./data/wardkey.db).
    cli(dir.path(), &["user", "add", "nurse", "--password-stdin"], &format!("{PASSWORD}\n"));
    let client: Value =
        serde_json::from_str(&cli(dir.path(), &["--json", "client", "add", "epr", "--redirect-uri", REDIRECT], ""))
            .unwrap();
    let secret = client["client_secret"].as_str().unwrap().to_string();

    // A login and a code redemption through the running binary.
    let browser = no_redirects(true);
    let (verifier, challenge) = pkce_pair();
    let authorize = format!(
        "{}/authorize?response_type=code&client_id=epr&redirect_uri={REDIRECT}&scope=openid&code_challenge={challenge}&code_challenge_method=S256&state=s",
        server.base
    );
    let r = browser.get(&authorize).send().await.unwrap();
    let login = browser.get(format!("{}{}", server.base, location(&r))).send().await.unwrap().text().await.unwrap();
    let r = browser
        .post(format!("{}/login", server.base))
        .form(&[
            ("csrf", hidden_input(&login, "csrf").as_str()),
            ("request", hidden_input(&login, "request").as_str()),
            ("username", "nurse"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    let back = url::Url::parse(&location(&r)).unwrap();
    let code = query_param(&back, "code").unwrap();
    let tokens: Value = http
        .post(format!("{}/token", server.base))
        .basic_auth("epr", Some(&secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = tokens["access_token"].as_str().unwrap().to_string();
    let jwks_before: Value = http.get(format!("{}/jwks", server.base)).send().await.unwrap().json().await.unwrap();

    let (status, lines) = terminate(server);
    assert!(status.success(), "graceful exit on SIGTERM: {status:?}");
    assert!(lines.iter().any(|l| l.contains("shutting down")), "{lines:?}");
    assert!(lines.len() > 3, "debug logs were written: {lines:?}");
    for line in &lines {
        let _: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        for secret in [PASSWORD, secret.as_str(), code.as_str(), access.as_str(), verifier.as_str()] {
            assert!(!line.contains(secret), "a secret reached the logs: {line}");
        }
    }

    // Data survives a restart: the same keys, user and client.
    let server = start_server(dir.path(), port);
    wait_healthy(&http, &server.base).await;
    let jwks_after: Value = http.get(format!("{}/jwks", server.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(jwks_before, jwks_after);
    let users: Value = serde_json::from_str(&cli(dir.path(), &["--json", "user", "list"], "")).unwrap();
    assert_eq!(users[0]["username"], "nurse");
    let r = http
        .post(format!("{}/token", server.base))
        .basic_auth("epr", Some(&secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", "stale"),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
        ])
        .send()
        .await
        .unwrap();
    assert_oauth_error(r, 400, "invalid_grant").await; // the client secret still authenticates
    let (status, _) = terminate(server);
    assert!(status.success());
}

/// The server's resident memory in bytes (Linux `/proc`).
fn resident_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// Issue 12's anonymous memory growth, against the real binary: 3,000
/// unauthenticated `/authorize` requests with a 30 kB `state` used to keep
/// 61 MB for 15 minutes. Over-long parameters are now refused (back to the
/// application, without echoing the `state`), and the server grows by at
/// most 16 MB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_authorize_requests_cannot_fill_the_memory() {
    install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let port = wardkey_testsupport::free_port();
    let base = format!("http://127.0.0.1:{port}");
    cli(dir.path(), &["store", "init"], "");
    cli(dir.path(), &["client", "add", "web", "--redirect-uri", "http://127.0.0.1:9/cb"], "");
    let mut child = Command::new(env!("CARGO_BIN_EXE_wardkey"))
        .arg("serve")
        .current_dir(dir.path())
        .env("WARDKEY_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("WARDKEY_SERVER__PUBLIC_URL", &base)
        .env("WARDKEY_LOG__LEVEL", "warn")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start wardkey serve");
    let http = no_redirects(false);
    wait_healthy(&http, &base).await;
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    let url = |state: &str| {
        format!(
            "{base}/authorize?response_type=code&client_id=web&redirect_uri=http://127.0.0.1:9/cb&scope=openid\
             &code_challenge={challenge}&code_challenge_method=S256&state={state}"
        )
    };
    // An ordinary request is kept for the sign-in page.
    let r = http.get(url("s1")).send().await.unwrap();
    assert!(location(&r).starts_with("/login?request="), "{}", location(&r));
    let before = resident_bytes(child.id());
    let state = "x".repeat(30_000);
    let long = url(&state);
    let mut sent = 0;
    while sent < 3000 {
        let batch = (0..50).map(|_| http.get(&long).send());
        for r in futures_util::future::join_all(batch).await {
            let r = r.unwrap();
            assert_eq!(r.status(), 303);
            let back = location(&r);
            assert!(back.starts_with("http://127.0.0.1:9/cb?error=invalid_request"), "{back}");
            assert!(back.contains("state+is+longer") && !back.contains("xxxx"), "{back}");
        }
        sent += 50;
    }
    let grown = resident_bytes(child.id()).saturating_sub(before);
    let _ = child.kill();
    let _ = child.wait();
    assert!(grown <= 16 << 20, "grew by {} MB", grown >> 20);
}

/// A client that trickles its headers (slowloris) or its body is cut off:
/// the connection is closed after `server.header_read_timeout`, and a body
/// that never arrives is answered 408 after `server.request_timeout`.
#[tokio::test]
async fn slow_clients_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::builder()
        .settings(|s| {
            s.server.header_read_timeout = Duration::from_secs(1);
            s.server.request_timeout = Duration::from_secs(1);
        })
        .spawn()
        .await;
    let address = app.base.trim_start_matches("http://").to_string();
    // Headers begun and never finished.
    let mut slow = tokio::net::TcpStream::connect(&address).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: wardkey\r\nX-Slow: ").await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), slow.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the server closed the connection");
    assert!(!String::from_utf8_lossy(&answer).contains("200 OK"), "{}", String::from_utf8_lossy(&answer));
    // A body promised and never sent.
    let mut slow = tokio::net::TcpStream::connect(&address).await.unwrap();
    slow.write_all(
        b"POST /token HTTP/1.1\r\nHost: wardkey\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ngrant",
    )
    .await
    .unwrap();
    let mut answer = vec![0; 1024];
    let n = tokio::time::timeout(Duration::from_secs(20), slow.read(&mut answer)).await.unwrap().unwrap();
    let head = String::from_utf8_lossy(&answer[..n]);
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
}

/// What an operator must see at start-up is said: the store it created on
/// the first run, a `listen` port that `public_url` does not name, and a
/// cache that does not answer (the server still starts, and /readyz says
/// 503 until the cache answers); no colour codes reach a log file.
#[tokio::test]
async fn start_up_says_what_an_operator_must_fix() {
    let dir = tempfile::tempdir().unwrap();
    let port = wardkey_testsupport::free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_wardkey"))
        .args(["serve", "--init"])
        .current_dir(dir.path())
        .env("WARDKEY_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("WARDKEY_SERVER__PUBLIC_URL", "http://127.0.0.1:8443")
        .env("WARDKEY_CACHE__URL", "redis://127.0.0.1:1")
        .env("WARDKEY_LOG__LEVEL", "info")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start wardkey serve");
    let server = Server { child, base: format!("http://127.0.0.1:{port}") };
    let http = no_redirects(false);
    wait_healthy(&http, &server.base).await;
    assert_eq!(http.get(format!("{}/readyz", server.base)).send().await.unwrap().status(), 503);
    let (_, lines) = terminate(server);
    let log = lines.join("\n");
    assert!(log.contains("created a new, empty store"), "{log}");
    assert!(log.contains(&format!("server.listen is port {port} but server.public_url")), "{log}");
    assert!(log.contains("the session cache is not answering") || log.contains("did not answer within 2 s"), "{log}");
    assert!(!log.contains('\u{1b}'), "no colour codes in a log that is not a terminal: {log}");
}
