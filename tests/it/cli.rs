//! The `wardkey` binary's admin commands, run as a real process against a
//! SQLite store in a temporary directory: exit status, stdout and stderr as an
//! operator sees them, and the effect on a running server sharing the store.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use wardkey_core::clock::{Clock, SystemClock};
use wardkey_core::secret::digest;
use wardkey_core::session::{ACR_LEVELS, ACR_PASSKEY};
use wardkey_store::{AuthenticatorKind, Store, WebauthnCredential};

use crate::helpers::*;
use crate::tap::TestWorkstation;

/// What one run of the binary produced.
#[derive(Debug)]
pub(crate) struct Run {
    code: Option<i32>,
    pub(crate) stdout: String,
    stderr: String,
}

impl Run {
    /// Assert exit status 0 with nothing on stderr.
    pub(crate) fn ok(self) -> Self {
        assert_eq!(self.code, Some(0), "expected success: {self:#?}");
        assert_eq!(self.stderr, "", "a successful command writes nothing to stderr: {self:#?}");
        self
    }

    /// Assert a runtime failure (exit 1, `error: …` on stderr, nothing on
    /// stdout) whose message contains every one of `needles`.
    pub(crate) fn fails_with(self, needles: &[&str]) -> Self {
        assert_eq!(self.code, Some(1), "expected exit status 1: {self:#?}");
        assert!(self.stderr.starts_with("error: "), "{self:#?}");
        assert_eq!(self.stdout, "", "a failed command prints no result: {self:#?}");
        for needle in needles {
            assert!(self.stderr.contains(needle), "stderr should mention {needle:?}: {self:#?}");
        }
        self
    }

    /// Assert a command-line usage error from clap (exit 2) mentioning `needle`.
    fn usage_error(self, needle: &str) -> Self {
        assert_eq!(self.code, Some(2), "expected a usage error: {self:#?}");
        assert!(self.stderr.contains(needle), "stderr should mention {needle:?}: {self:#?}");
        assert_eq!(self.stdout, "", "{self:#?}");
        self
    }

    /// stdout parsed as JSON.
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:#?}"))
    }
}

/// Run `wardkey ARGS` in `dir` against the store `dir/wardkey.db` with cheap
/// argon2, extra environment `env`, and `stdin` piped in (or no stdin at all).
/// Inherited `WARDKEY_*` variables are removed so only the test's settings apply.
fn wardkey_env(dir: &Path, env: &[(&str, &str)], args: &[&str], stdin: Option<&str>) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wardkey"));
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("WARDKEY_")) {
        cmd.env_remove(key);
    }
    cmd.current_dir(dir)
        .args(args)
        .env(
            "WARDKEY_STORE__URL",
            // A test server's own store when `dir` is its directory.
            std::fs::read_to_string(dir.join(STORE_URL_FILE))
                .unwrap_or_else(|_| format!("sqlite://{}", dir.join("wardkey.db").display())),
        )
        .env("WARDKEY_PASSWORD__M_COST", "1024")
        .env("WARDKEY_PASSWORD__T_COST", "1")
        // The operator the audit log names.
        .env("USER", "sam.ops")
        .env_remove("SUDO_USER")
        .envs(env.iter().copied())
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn wardkey");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin pipe");
        // The command may exit before reading (a bad argument): ignore EPIPE.
        let _ = pipe.write_all(input.as_bytes());
    }
    let out = child.wait_with_output().expect("wait for wardkey");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
    }
}

/// A scratch directory holding a new, empty store, as `wardkey store init`
/// leaves it: admin commands never create one themselves.
pub(crate) fn store_dir() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    wardkey(tmp.path(), &["store", "init"], None).ok();
    tmp
}

/// Who runs the test's commands, as the audit log names them: the
/// operating system user, not a shared "admin" account.
const OPERATOR: &str = "cli:sam.ops";

/// [`wardkey_env`] with no extra environment.
pub(crate) fn wardkey(dir: &Path, args: &[&str], stdin: Option<&str>) -> Run {
    wardkey_env(dir, &[], args, stdin)
}

/// `user list --json` as an array.
fn users(dir: &Path) -> Vec<Value> {
    wardkey(dir, &["user", "list", "--json"], None).ok().json().as_array().expect("an array").clone()
}

/// The store the CLI uses in `dir` (see [`wardkey_env`]), opened by the
/// test to set up what only a server writes and to look behind the CLI's back.
async fn cli_store(dir: &Path) -> Arc<dyn Store> {
    wardkey_store::open(&format!("sqlite://{}", dir.join("wardkey.db").display())).await.expect("open the CLI's store")
}

/// The audit records of `event`, oldest first.
async fn audited(store: &dyn Store, event: &str) -> Vec<wardkey_core::audit::AuditEvent> {
    let mut all = store.recent_audit(u32::MAX).await.unwrap();
    all.reverse();
    all.into_iter().filter(|e| e.event == event).collect()
}

/// `client list --json` as an array.
fn clients(dir: &Path) -> Vec<Value> {
    wardkey(dir, &["client", "list", "--json"], None).ok().json().as_array().expect("an array").clone()
}

const ADD_ALICE: &[&str] =
    &["user", "add", "alice", "--name", "Alice", "--email", "a@trust.nhs.uk", "--role", "R8000", "--password-stdin"];

#[test]
fn user_add_then_list() {
    let tmp = store_dir();
    let dir = tmp.path();

    let added = wardkey(dir, ADD_ALICE, Some("correct horse battery\n")).ok();
    assert!(added.stdout.starts_with("added user alice (sub "), "{added:#?}");
    assert!(!added.stdout.contains("correct horse"), "the password is never echoed");

    let list = users(dir);
    assert_eq!(list.len(), 1, "{list:?}");
    let alice = &list[0];
    assert_eq!(alice["username"], "alice");
    assert_eq!(alice["name"], "Alice");
    assert_eq!(alice["email"], "a@trust.nhs.uk");
    assert_eq!(alice["roles"], serde_json::json!(["R8000"]));
    assert_eq!(alice["disabled"], false);
    assert_eq!(alice["failed_logins"], 0);
    let sub = alice["sub"].as_str().expect("sub");
    assert!(!sub.is_empty() && added.stdout.contains(sub), "add prints the same sub that list shows");

    let human = wardkey(dir, &["user", "list"], None).ok();
    assert_eq!(human.stdout, format!("alice\tAlice\t{sub}\tactive\tlocal\n"), "the source comes last");
}

#[test]
fn user_add_json_output() {
    let tmp = store_dir();
    // --json is global: it may come before the subcommand.
    let out = wardkey(tmp.path(), &["--json", "user", "add", "bob"], None).ok().json();
    assert_eq!(out["username"], "bob");
    assert!(out["sub"].as_str().is_some_and(|s| !s.is_empty()), "{out}");
    let list = users(tmp.path());
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["sub"], out["sub"]);
    assert_eq!(list[0]["name"], Value::Null);
    assert_eq!(list[0]["roles"], serde_json::json!([]));
}

/// CLI → store → server: a user added by the CLI signs in at a running
/// server with the password piped to the CLI.
#[tokio::test]
async fn user_added_by_the_cli_can_sign_in() {
    let app = spawn_app().await;
    wardkey(app.dir.path(), &["user", "add", "carol", "--password-stdin"], Some(&format!("{PASSWORD}\r\n"))).ok();
    let secret = app.add_epr("epr").await;
    let tokens = login_and_redeem(&app, "epr", &secret, "carol").await;
    assert!(tokens["id_token"].as_str().is_some(), "{tokens}");
}

#[test]
fn duplicate_user_is_refused_and_changes_nothing() {
    let tmp = store_dir();
    let dir = tmp.path();
    wardkey(dir, ADD_ALICE, Some("correct horse battery\n")).ok();

    wardkey(dir, &["user", "add", "alice", "--name", "Impostor", "--email", "x@evil.example"], None)
        .fails_with(&["already exists", "\"alice\""]);

    let list = users(dir);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["name"], "Alice");
    assert_eq!(list[0]["email"], "a@trust.nhs.uk");
}

#[test]
fn bad_user_input_is_refused_with_a_reason() {
    let tmp = store_dir();
    let dir = tmp.path();

    wardkey(dir, &["user", "add", "a b"], None).fails_with(&["username", "\"a b\"", "not a valid username"]);
    wardkey(dir, &["user", "add", "bob", "--email", "nope"], None).fails_with(&["email", "\"nope\""]);
    wardkey(dir, &["user", "add", "bob", "--password-stdin"], Some("short\n"))
        .fails_with(&["password", "shorter than 8 characters"]);
    wardkey(dir, &["user", "add", "bob", "--password-stdin"], Some("")).fails_with(&["no password on stdin"]);
    wardkey(dir, &["user", "add", "bob", "--password-stdin"], Some("\n")).fails_with(&["no password on stdin"]);
    wardkey(dir, &["user", "add", "bob", "--colour", "red"], None).usage_error("--colour");
    wardkey(dir, &["user", "add"], None).usage_error("<USERNAME>");

    assert_eq!(users(dir), Vec::<Value>::new(), "no bad attempt created a user");
}

#[test]
fn secrets_are_never_taken_from_arguments() {
    let tmp = store_dir();
    let dir = tmp.path();
    wardkey(dir, &["user", "add", "alice", "--password", "hunter2hunter2"], None).usage_error("--password");
    wardkey(dir, &["user", "set-password", "alice", "--password", "hunter2hunter2"], None).usage_error("--password");
    wardkey(dir, &["user", "set-pin", "alice", "--pin", "123456"], None).usage_error("--pin");
    // The stdin flags are required: there is no other way to give the secret.
    wardkey(dir, &["user", "set-password", "alice"], None).usage_error("--password-stdin");
    wardkey(dir, &["user", "set-pin", "alice"], None).usage_error("--pin-stdin");
    assert_eq!(users(dir), Vec::<Value>::new());
}

#[test]
fn client_add_prints_its_secret_once() {
    let tmp = store_dir();
    let dir = tmp.path();

    let out = wardkey(
        dir,
        &[
            "client",
            "add",
            "epr",
            "--redirect-uri",
            "https://epr.example/cb",
            "--redirect-uri",
            "http://127.0.0.1:9000/cb",
            "--json",
        ],
        None,
    )
    .ok()
    .json();
    let obj = out.as_object().expect("an object");
    assert_eq!(obj.len(), 2, "only client_id and client_secret: {out}");
    assert_eq!(out["client_id"], "epr");
    let secret = out["client_secret"].as_str().expect("a secret");
    assert_eq!(secret.len(), 43, "256 bits, base64url without padding: {secret}");
    assert!(secret.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'), "{secret}");

    let list = clients(dir);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["client_id"], "epr");
    assert_eq!(list[0]["auth"], "client_secret");
    assert_eq!(list[0]["redirect_uris"], serde_json::json!(["https://epr.example/cb", "http://127.0.0.1:9000/cb"]));
    assert_eq!(list[0]["grant_types"], serde_json::json!(["authorization_code", "refresh_token"]));
    assert_eq!(list[0]["id_token_alg"], "ES256");
    assert_eq!(list[0]["min_acr"], Value::Null, "any session will do unless --min-acr says otherwise");
    let human = wardkey(dir, &["client", "list"], None).ok();
    assert_eq!(human.stdout, "epr\tclient_secret\t-\thttps://epr.example/cb http://127.0.0.1:9000/cb\n");
    for listing in [&human.stdout, &list[0].to_string()] {
        assert!(!listing.contains(secret), "the secret is shown only once");
    }

    // Human output: the secret, and a warning that it is not kept.
    let human = wardkey(dir, &["client", "add", "pacs", "--redirect-uri", "https://pacs.example/cb"], None).ok();
    assert!(human.stdout.starts_with("client_id: pacs\nclient_secret: "), "{human:#?}");
    assert!(human.stdout.contains("cannot be shown again"), "{human:#?}");
    let pacs_secret = human.stdout.lines().nth(1).unwrap().trim_start_matches("client_secret: ");
    assert_eq!(pacs_secret.len(), 43);
    assert_ne!(pacs_secret, secret, "every client gets its own secret");

    // A public client has no secret.
    let spa =
        wardkey(dir, &["client", "add", "spa", "--public", "--redirect-uri", "https://spa.example/cb", "--json"], None)
            .ok()
            .json();
    assert_eq!(spa, serde_json::json!({"client_id": "spa", "client_secret": null}));

    wardkey(dir, &["client", "add", "epr", "--redirect-uri", "https://epr.example/cb"], None)
        .fails_with(&["already exists", "\"epr\""]);
    assert_eq!(clients(dir).len(), 3);
}

/// CLI → store → server: the secret the CLI prints works at the token
/// endpoint of a server already running on the same store.
#[tokio::test]
async fn client_secret_from_the_cli_works_at_a_running_server() {
    let app = spawn_app().await;
    let out =
        wardkey(app.dir.path(), &["client", "add", "backend", "--grant-type", "client_credentials", "--json"], None)
            .ok()
            .json();
    let secret = out["client_secret"].as_str().expect("a secret");

    let r = app.post_form("/token", &[("grant_type", "client_credentials")], Some(("backend", secret))).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert!(body["access_token"].as_str().is_some_and(|t| !t.is_empty()), "{body}");
    assert_eq!(body["token_type"], "Bearer", "{body}");

    let r = app.post_form("/token", &[("grant_type", "client_credentials")], Some(("backend", "wrong"))).await;
    assert_oauth_error(r, 401, "invalid_client").await;
}

#[test]
fn bad_client_input_is_refused_with_a_reason() {
    let tmp = store_dir();
    let dir = tmp.path();
    let add = |extra: &[&str]| {
        let mut args = vec!["client", "add", "epr"];
        args.extend_from_slice(extra);
        wardkey(dir, &args, None)
    };

    add(&["--redirect-uri", "not a uri"]).fails_with(&["redirect-uri", "\"not a uri\"", "not an absolute URI"]);
    add(&["--redirect-uri", "http://epr.example/cb"]).fails_with(&["redirect-uri", "non-loopback"]);
    add(&["--redirect-uri", "https://epr.example/cb#frag"]).fails_with(&["redirect-uri", "fragment"]);
    add(&["--redirect-uri", "javascript:alert(1)"]).fails_with(&["redirect-uri", "javascript:alert(1)"]);
    add(&["--redirect-uri", "https://*.trust.nhs.uk/cb"]).fails_with(&["redirect-uri", "wildcard", "in full"]);
    add(&["--redirect-uri", "https://epr.example/cb", "--grant-type", "password"])
        .fails_with(&["grant-type", "\"password\" is not a grant type"]);
    add(&["--public", "--grant-type", "client_credentials"]).fails_with(&["--public", "client_credentials"]);
    add(&["--redirect-uri", "https://epr.example/cb", "--id-token-alg", "none"])
        .fails_with(&["id-token-alg", "\"none\""]);
    add(&[]).fails_with(&["redirect-uri", "authorization_code"]);
    add(&["--grant-type", "authorization_code"]).fails_with(&["redirect-uri", "authorization_code"]);

    wardkey(dir, &["client", "add", "a b", "--redirect-uri", "https://epr.example/cb"], None)
        .fails_with(&["client_id", "\"a b\""]);

    let not_jwks = dir.join("key.json");
    std::fs::write(&not_jwks, r#"{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}"#).unwrap();
    let not_jwks = not_jwks.to_str().unwrap();
    add(&["--redirect-uri", "https://epr.example/cb", "--jwks-file", not_jwks]).fails_with(&["jwks-file", "JWK Set"]);
    let not_json = dir.join("key.pem");
    std::fs::write(&not_json, "-----BEGIN PUBLIC KEY-----\n").unwrap();
    add(&["--redirect-uri", "https://epr.example/cb", "--jwks-file", not_json.to_str().unwrap()])
        .fails_with(&["key.pem", "not JSON"]);
    add(&["--redirect-uri", "https://epr.example/cb", "--jwks-file", "missing.json"]).fails_with(&["missing.json"]);

    assert_eq!(clients(dir), Vec::<Value>::new(), "no bad attempt registered a client");
}

/// `--min-acr` takes exactly the acr values Wardkey issues; `client list`
/// shows it; the store keeps it; `store migrate` moves it.
#[tokio::test]
async fn client_min_acr() {
    let tmp = store_dir();
    let dir = tmp.path();
    let add = |id: &str, extra: &[&str]| {
        let mut args = vec!["client", "add", id, "--redirect-uri", "https://epr.example/cb"];
        args.extend_from_slice(extra);
        wardkey(dir, &args, None)
    };

    add("epr", &["--min-acr", ACR_PASSKEY]).ok();
    add("pacs", &[]).ok();
    for (i, acr) in ACR_LEVELS.iter().enumerate() {
        add(&format!("app-{i}"), &["--min-acr", acr]).ok();
    }
    let list = clients(dir);
    let by_id = |id: &str| list.iter().find(|c| c["client_id"] == id).unwrap_or_else(|| panic!("{id}: {list:?}"));
    assert_eq!(by_id("epr")["min_acr"], ACR_PASSKEY);
    assert_eq!(by_id("pacs")["min_acr"], Value::Null);
    for (i, acr) in ACR_LEVELS.iter().enumerate() {
        assert_eq!(by_id(&format!("app-{i}"))["min_acr"], *acr);
    }
    let human = wardkey(dir, &["client", "list"], None).ok();
    let line = |id: &str| human.stdout.lines().find(|l| l.starts_with(&format!("{id}\t"))).unwrap().to_string();
    assert_eq!(line("epr"), format!("epr\tclient_secret\t{ACR_PASSKEY}\thttps://epr.example/cb"));
    assert_eq!(line("pacs"), "pacs\tclient_secret\t-\thttps://epr.example/cb");

    // What the server reads is what the CLI was given; the audit says so.
    let store = cli_store(dir).await;
    assert_eq!(store.client("epr").await.unwrap().unwrap().min_acr.as_deref(), Some(ACR_PASSKEY));
    assert_eq!(store.client("pacs").await.unwrap().unwrap().min_acr, None);
    let added = audited(store.as_ref(), "client.add").await;
    assert_eq!(added[0].detail["min_acr"], ACR_PASSKEY, "{added:?}");

    // `store migrate` moves it (SQLite to SQLite here; cluster.rs moves a
    // whole install to PostgreSQL).
    let to = format!("sqlite://{}", dir.join("moved.db").display());
    let from = format!("sqlite://{}", dir.join("wardkey.db").display());
    wardkey(dir, &["store", "migrate", "--from", &from, "--to", &to], None).ok();
    let moved = wardkey_store::open(&to).await.unwrap();
    assert_eq!(moved.list_clients().await.unwrap(), store.list_clients().await.unwrap());
    assert_eq!(moved.client("epr").await.unwrap().unwrap().min_acr.as_deref(), Some(ACR_PASSKEY));
}

#[test]
fn bad_min_acr_is_refused_with_the_values_that_work() {
    let tmp = store_dir();
    let dir = tmp.path();
    let add = |acr: &str| {
        wardkey(dir, &["client", "add", "epr", "--redirect-uri", "https://epr.example/cb", "--min-acr", acr], None)
    };

    let upper = ACR_PASSKEY.to_uppercase();
    let padded = format!(" {ACR_PASSKEY}");
    let forged = format!("{ACR_PASSKEY}\nerror: forged");
    let long = format!("urn:wardkey:acr:{}", "x".repeat(10_000));
    for bad in ["passkey", "", "urn:wardkey:acr:otp", "aal3", "\u{1b}[31m", &upper, &padded, &forged, &long] {
        let run = add(bad).fails_with(&[
            "min-acr",
            "is not an acr Wardkey issues",
            "urn:wardkey:acr:pwd, urn:wardkey:acr:badge-pin, urn:wardkey:acr:passkey, urn:wardkey:acr:security-key",
        ]);
        assert_eq!(run.stderr.lines().count(), 1, "a newline in the input cannot forge a second line: {run:#?}");
        assert!(!run.stderr.contains('\u{1b}'), "no terminal escape is echoed: {run:#?}");
    }
    wardkey(dir, &["client", "add", "epr", "--redirect-uri", "https://epr.example/cb", "--min-acr"], None)
        .usage_error("--min-acr");
    // Checked before anything is written, whatever else is wrong.
    wardkey(
        dir,
        &["client", "add", "spa", "--public", "--min-acr", "passkey", "--redirect-uri", "https://spa/cb"],
        None,
    )
    .fails_with(&["min-acr"]);
    assert_eq!(clients(dir), Vec::<Value>::new(), "no bad attempt registered a client");
}

#[test]
fn client_remove() {
    let tmp = store_dir();
    let dir = tmp.path();

    wardkey(dir, &["client", "remove", "nosuch"], None).fails_with(&["client \"nosuch\" does not exist"]);

    wardkey(dir, &["client", "add", "epr", "--redirect-uri", "https://epr.example/cb"], None).ok();
    let removed = wardkey(dir, &["client", "remove", "epr"], None).ok();
    assert_eq!(removed.stdout, "removed client epr\n");
    assert_eq!(clients(dir), Vec::<Value>::new());
    assert_eq!(wardkey(dir, &["client", "list"], None).ok().stdout, "\n");

    wardkey(dir, &["client", "remove", "epr"], None).fails_with(&["does not exist"]);
}

#[test]
fn disabling_an_unknown_user_is_refused() {
    let tmp = store_dir();
    let dir = tmp.path();
    wardkey(dir, &["user", "add", "alice"], None).ok();
    wardkey(dir, &["user", "disable", "bob"], None).fails_with(&["user \"bob\" does not exist"]);
    wardkey(dir, &["user", "enable", "bob"], None).fails_with(&["user \"bob\" does not exist"]);
    assert_eq!(users(dir)[0]["disabled"], false, "alice untouched");
}

#[test]
fn user_disable_and_enable() {
    let tmp = store_dir();
    let dir = tmp.path();
    wardkey(dir, &["user", "add", "alice"], None).ok();

    let disabled = wardkey(dir, &["user", "disable", "alice"], None).ok();
    assert_eq!(disabled.stdout, "disabled alice\n");
    assert_eq!(users(dir)[0]["disabled"], true);
    let human = wardkey(dir, &["user", "list"], None).ok();
    assert!(human.stdout.ends_with("\tdisabled\tlocal\n"), "{human:#?}");

    let enabled = wardkey(dir, &["user", "enable", "alice", "--json"], None).ok().json();
    assert_eq!(enabled, serde_json::json!({"username": "alice", "disabled": false}));
    assert_eq!(users(dir)[0]["disabled"], false);
    let human = wardkey(dir, &["user", "list"], None).ok();
    assert!(human.stdout.ends_with("\tactive\tlocal\n"), "{human:#?}");
}

/// The `kid`s a server publishes at /jwks.
async fn published_kids(app: &TestApp) -> Vec<String> {
    let r = app.get("/jwks").await;
    assert_eq!(r.status(), 200);
    let jwks: Value = r.json().await.unwrap();
    jwks["keys"].as_array().expect("keys").iter().map(|k| k["kid"].as_str().expect("kid").to_string()).collect()
}

/// CLI → store → server: keys rotated by the CLI reach a running server's
/// /jwks and sign its tokens, while the old keys stay published.
#[tokio::test]
async fn keys_rotate_reaches_a_running_server() {
    let app = TestApp::builder().settings(|s| s.oidc.key_reload_interval = Duration::from_secs(1)).spawn().await;
    let dir = app.dir.path();
    let old = published_kids(&app).await;
    assert_eq!(old.len(), 3, "one key per algorithm at first start: {old:?}");

    let out = wardkey(dir, &["keys", "rotate", "--json"], None).ok().json();
    assert_eq!(out["purged"], 0, "{out}");
    let new_keys = out["new_keys"].as_array().expect("new_keys");
    let mut algs: Vec<&str> = new_keys.iter().map(|k| k["alg"].as_str().expect("alg")).collect();
    algs.sort_unstable();
    assert_eq!(algs, ["ES256", "EdDSA", "RS256"], "{out}");
    let new: Vec<String> = new_keys.iter().map(|k| k["kid"].as_str().expect("kid").to_string()).collect();
    assert!(new.iter().all(|kid| !old.contains(kid)), "fresh kids: {out}");

    // Right after rotation the old keys are still there.
    let now = published_kids(&app).await;
    assert!(old.iter().all(|kid| now.contains(kid)), "old keys still published: {now:?}");

    // Within a few reload intervals the new keys are published too.
    let mut published = Vec::new();
    for _ in 0..100 {
        published = published_kids(&app).await;
        if new.iter().all(|kid| published.contains(kid)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(new.iter().all(|kid| published.contains(kid)), "new keys {new:?} never published: {published:?}");
    assert!(old.iter().all(|kid| published.contains(kid)), "old keys dropped too soon: {published:?}");

    // …and the new ES256 key signs tokens issued from now on.
    let secret = wardkey(dir, &["client", "add", "backend", "--grant-type", "client_credentials", "--json"], None)
        .ok()
        .json()["client_secret"]
        .as_str()
        .expect("a secret")
        .to_string();
    let r = app.post_form("/token", &[("grant_type", "client_credentials")], Some(("backend", &secret))).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let token = body["access_token"].as_str().expect("access_token");
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token.split('.').next().unwrap()).unwrap();
    let header: Value = serde_json::from_slice(&header).unwrap();
    let es256 = new_keys.iter().find(|k| k["alg"] == "ES256").unwrap();
    assert_eq!(header["kid"], es256["kid"], "{header}");
}

#[test]
fn keys_rotate_human_output() {
    let tmp = store_dir();
    let out = wardkey(tmp.path(), &["keys", "rotate"], None).ok();
    assert!(out.stdout.starts_with("new signing keys: "), "{out:#?}");
    for alg in ["ES256", "RS256", "EdDSA"] {
        assert!(out.stdout.contains(alg), "{out:#?}");
    }
    assert!(out.stdout.contains("oidc.key_reload_interval (30s)"), "{out:#?}");
}

#[test]
fn config_errors_name_the_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();

    wardkey(dir, &["--config", "missing.toml", "user", "list"], None).fails_with(&["missing.toml", "does not exist"]);
    wardkey_env(dir, &[("WARDKEY_SESSION__PIN_GRACE", "soon")], &["user", "list"], None)
        .fails_with(&["pin_grace", "the environment variable WARDKEY_SESSION__PIN_GRACE"]);
    wardkey_env(dir, &[("WARDKEY_SESION__PIN_GRACE", "2h")], &["user", "list"], None).fails_with(&["sesion"]);

    std::fs::write(dir.join("wardkey.toml"), "[server]\nlisen = \"x\"\n").unwrap();
    wardkey(dir, &["user", "list"], None).fails_with(&["lisen", "wardkey.toml"]);
    assert!(!dir.join("wardkey.db").exists(), "a bad configuration stops before the store is touched");

    // An explicit --config is used instead of ./wardkey.toml.
    std::fs::write(dir.join("good.toml"), "[session]\npin_grace = \"2h\"\n").unwrap();
    wardkey(dir, &["--config", "good.toml", "store", "init"], None).ok();
    assert_eq!(wardkey(dir, &["--config", "good.toml", "user", "list"], None).ok().stdout, "\n");
}

/// The characters of enrolment codes: no 0/O, 1/I/L to misread.
const CODE_CHARS: &str = "ABCDEFGHJKMNPQRSTUVWXYZ23456789";

/// Assert `code` is an enrolment code shaped `XXXX-XXXX-XXXX`.
fn assert_code_shape(code: &str) {
    let groups: Vec<&str> = code.split('-').collect();
    assert!(
        groups.len() == 3 && groups.iter().all(|g| g.len() == 4 && g.chars().all(|c| CODE_CHARS.contains(c))),
        "not an XXXX-XXXX-XXXX enrolment code: {code:?}"
    );
}

/// `workstation list --json` as an array.
fn workstations(dir: &Path) -> Vec<Value> {
    wardkey(dir, &["workstation", "list", "--json"], None).ok().json().as_array().expect("an array").clone()
}

#[test]
fn workstation_enrol_prints_a_one_time_code() {
    let tmp = store_dir();
    let dir = tmp.path();

    let before = SystemClock.now();
    let out = wardkey(dir, &["workstation", "enrol", "w4-pc1", "--ward", "Ward 4", "--json"], None).ok().json();
    let after = SystemClock.now();
    let mut fields: Vec<&str> = out.as_object().expect("an object").keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["code", "expires_at", "name", "ward", "workstation_id"], "{out}");
    assert_eq!(out["name"], "w4-pc1");
    assert_eq!(out["ward"], "Ward 4");
    let id = out["workstation_id"].as_str().expect("workstation_id");
    assert!(!id.is_empty(), "{out}");
    let code = out["code"].as_str().expect("code");
    assert_code_shape(code);
    let expires_at = out["expires_at"].as_i64().expect("expires_at");
    assert!(
        (before + 24 * 3600..=after + 24 * 3600).contains(&expires_at),
        "valid for tap.enrolment_code_ttl (24 h by default): {out}"
    );

    let list = workstations(dir);
    assert_eq!(
        list,
        vec![json!({"name": "w4-pc1", "ward": "Ward 4", "workstation_id": id, "enabled": true, "enrolled": false})]
    );
    let human = wardkey(dir, &["workstation", "list"], None).ok();
    assert_eq!(human.stdout, format!("w4-pc1\tWard 4\t{id}\tawaiting enrolment\n"));
    for listing in [&human.stdout, &list[0].to_string()] {
        assert!(!listing.contains(code), "the code is shown only once");
    }

    // Human output: the code, and the command to run on the workstation
    // naming this server.
    let human = wardkey_env(
        dir,
        &[("WARDKEY_SERVER__PUBLIC_URL", "https://sso.trust.example")],
        &["workstation", "enrol", "St Mary's pc.2", "--ward", "Ward 4"],
        None,
    )
    .ok();
    let command = human
        .stdout
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("wardkey-agent enrol"))
        .unwrap_or_else(|| panic!("no wardkey-agent command: {human:#?}"));
    let human_code = command
        .strip_prefix("wardkey-agent enrol --server https://sso.trust.example --code ")
        .unwrap_or_else(|| panic!("{human:#?}"));
    assert_code_shape(human_code);
    assert!(
        human.stdout.starts_with(&format!("enrolment code for St Mary's pc.2 (Ward 4): {human_code}\n")),
        "{human:#?}"
    );
    assert_ne!(human_code, code, "every workstation gets its own code");

    let list = workstations(dir);
    assert_eq!(list.len(), 2, "{list:?}");
    assert!(list.iter().all(|w| w["enrolled"] == false && w["enabled"] == true), "{list:?}");
    assert_ne!(list[0]["workstation_id"], list[1]["workstation_id"]);
}

#[test]
fn bad_workstation_input_is_refused_with_a_reason() {
    let tmp = store_dir();
    let dir = tmp.path();
    let enrol = |name: &str, ward: &str| wardkey(dir, &["workstation", "enrol", name, "--ward", ward], None);

    enrol("w4-pc1", "Ward 4").ok();
    enrol("w4-pc1", "Ward 5").fails_with(&["workstation \"w4-pc1\" already exists"]);

    let long = "a".repeat(100);
    for (name, ward, field) in [
        ("", "Ward 4", "name"),
        ("w4\npc9", "Ward 4", "name"),
        (long.as_str(), "Ward 4", "name"),
        (" w4-pc9", "Ward 4", "name"),
        ("w4/pc9", "Ward 4", "name"),
        ("w4-pc9", "", "ward"),
        ("w4-pc9", "Ward\n4", "ward"),
        ("w4-pc9", long.as_str(), "ward"),
    ] {
        let run = enrol(name, ward).fails_with(&[field, "is not valid", "1 to 64"]);
        assert_eq!(run.stderr.lines().count(), 1, "a newline in the input cannot forge a second line: {run:#?}");
    }
    enrol(&"b".repeat(64), "Ward 4").ok();
    enrol("w4-pc1", "Ward 4").fails_with(&["already exists"]);
    wardkey(dir, &["workstation", "enrol", "w4-pc9"], None).usage_error("--ward");

    wardkey(dir, &["workstation", "disable", "nosuch"], None).fails_with(&["workstation \"nosuch\" does not exist"]);
    wardkey(dir, &["workstation", "enable", "nosuch"], None).fails_with(&["workstation \"nosuch\" does not exist"]);

    let list = workstations(dir);
    assert_eq!(list.len(), 2, "no bad attempt created a workstation: {list:?}");
    assert_eq!(list[1]["name"], "w4-pc1");
    assert_eq!(list[1]["ward"], "Ward 4", "the duplicate changed nothing");
    assert!(list.iter().all(|w| w["enabled"] == true), "{list:?}");
}

#[test]
fn workstation_disable_and_enable() {
    let tmp = store_dir();
    let dir = tmp.path();
    wardkey(dir, &["workstation", "enrol", "w4-pc1", "--ward", "Ward 4"], None).ok();
    wardkey(dir, &["workstation", "enrol", "w4-pc2", "--ward", "Ward 4"], None).ok();

    let disabled = wardkey(dir, &["workstation", "disable", "w4-pc1"], None).ok();
    assert_eq!(disabled.stdout, "disabled w4-pc1\n");
    let list = workstations(dir);
    assert_eq!(list[0]["name"], "w4-pc1");
    assert_eq!(list[0]["enabled"], false, "{list:?}");
    assert_eq!(list[1]["enabled"], true, "w4-pc2 untouched: {list:?}");
    let human = wardkey(dir, &["workstation", "list"], None).ok();
    let first = human.stdout.lines().next().unwrap();
    assert!(first.starts_with("w4-pc1\t") && first.ends_with("\tdisabled"), "{human:#?}");

    let enabled = wardkey(dir, &["workstation", "enable", "w4-pc1", "--json"], None).ok().json();
    assert_eq!(enabled, json!({"name": "w4-pc1", "enabled": true}));
    assert!(workstations(dir).iter().all(|w| w["enabled"] == true));
}

/// CLI → store → server: the code `workstation enrol` prints enrols an agent
/// at a running server, once, however it is typed.
#[tokio::test]
async fn workstation_code_from_the_cli_enrols_at_a_running_server() {
    let app = spawn_app().await;
    let dir = app.dir.path();
    let out = wardkey(dir, &["workstation", "enrol", "icu-pc3", "--ward", "ICU", "--json"], None).ok().json();
    let code = out["code"].as_str().expect("code");

    let key = Ed25519KeyPair::generate().unwrap();
    let request = json!({
        "code": code.replace('-', "").to_lowercase(),
        "public_key": URL_SAFE_NO_PAD.encode(key.public_key().as_ref()),
    });
    let r = app.http.post(app.url("/tap/enrol")).json(&request).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["workstation_id"], out["workstation_id"], "{body}");
    assert_eq!(body["name"], "icu-pc3", "{body}");
    assert_eq!(body["ward"], "ICU", "{body}");

    let again = app.http.post(app.url("/tap/enrol")).json(&request).send().await.unwrap();
    assert_eq!(again.status(), 410, "a code works once");

    let list = workstations(dir);
    assert_eq!(list[0]["enrolled"], true, "{list:?}");
    let human = wardkey(dir, &["workstation", "list"], None).ok();
    assert!(human.stdout.ends_with("\tenrolled\n"), "{human:#?}");
}

#[test]
fn badge_enrol_and_revoke() {
    let tmp = store_dir();
    let dir = tmp.path();
    wardkey(dir, &["user", "add", "alice"], None).ok();
    wardkey(dir, &["user", "add", "bob"], None).ok();
    let enrol = |username: &str, uid: &str| wardkey(dir, &["badge", "enrol", username, "--uid-stdin"], Some(uid));
    let revoke_one = |username: &str, uid: &str| wardkey(dir, &["badge", "revoke", username, "--uid-stdin"], Some(uid));
    // No spelling of the UID is ever echoed.
    let assert_no_uid = |run: &Run| {
        let all = format!("{}{}", run.stdout, run.stderr).to_ascii_uppercase().replace([':', ' '], "");
        assert!(!all.contains("A23B1C"), "the badge UID is never shown: {run:#?}");
    };

    let added = enrol("alice", "04:a2:3b:1c\n").ok();
    assert_eq!(added.stdout, "badge enrolled for alice\n");
    assert_no_uid(&added);

    // The same badge again, however spelt, for her or anyone else.
    for (username, uid) in [("alice", "04:a2:3b:1c\n"), ("alice", "04A23B1C\n"), ("bob", "04 a2 3b 1c\r\n")] {
        let run = enrol(username, uid).fails_with(&["already enrolled"]);
        assert_no_uid(&run);
    }

    enrol("nosuch", "04B0B0B0\n").fails_with(&["user \"nosuch\" does not exist"]);
    enrol("alice", "").fails_with(&["no badge UID on stdin"]);
    enrol("alice", "\n").fails_with(&["no badge UID on stdin"]);
    enrol("alice", "   \n").fails_with(&["uid", "1 to 128 hex digits"]);
    wardkey(dir, &["badge", "enrol", "alice"], None).usage_error("--uid-stdin");

    let second = wardkey(dir, &["badge", "enrol", "alice", "--uid-stdin", "--json"], Some("04B0B0B0\n")).ok().json();
    assert_eq!(second, json!({"username": "alice", "enrolled": true}));
    enrol("bob", "0B0B\n").ok();

    // Revoking one badge: only one the user holds.
    revoke_one("alice", "FFFF\n").fails_with(&["\"alice\" has no badge with that UID"]);
    revoke_one("alice", "0B0B\n").fails_with(&["\"alice\" has no badge with that UID"]);
    enrol("bob", "0b0b\n").fails_with(&["already enrolled"]); // bob's badge is still there
    revoke_one("alice", "").fails_with(&["no badge UID on stdin"]);
    // A UID is hex, whatever the separators; text is refused with words.
    for text in ["alice\n", "04:A2:ZZ\n", "Dr Smith's badge\n"] {
        enrol("alice", text).fails_with(&["a badge UID is 1 to 128 hex digits"]);
    }
    revoke_one("nosuch", "04A23B1C\n").fails_with(&["user \"nosuch\" does not exist"]);

    let revoked = revoke_one("alice", "04-A2-3B-1C\n").ok();
    assert_eq!(revoked.stdout, "revoked 1 badge(s) of alice\n");
    assert_no_uid(&revoked);
    enrol("alice", "04A23B1C\n").ok(); // free to enrol again

    // Revoking all of them.
    let revoked = wardkey(dir, &["badge", "revoke", "alice"], None).ok();
    assert_eq!(revoked.stdout, "revoked 2 badge(s) of alice\n");
    let revoked = wardkey(dir, &["badge", "revoke", "alice", "--json"], None).ok().json();
    assert_eq!(revoked, json!({"username": "alice", "revoked": 0}));
    wardkey(dir, &["badge", "revoke", "nosuch"], None).fails_with(&["user \"nosuch\" does not exist"]);
    enrol("alice", "04B0B0B0\n").ok();
    enrol("bob", "0B0B\n").fails_with(&["already enrolled"]); // bob's badge untouched
}

#[test]
fn user_set_pin() {
    let tmp = store_dir();
    let dir = tmp.path();
    wardkey(dir, &["user", "add", "alice"], None).ok();
    let set_pin = |username: &str, pin: &str| wardkey(dir, &["user", "set-pin", username, "--pin-stdin"], Some(pin));

    let done = set_pin("alice", "135790\n").ok();
    assert_eq!(done.stdout, "PIN set for alice\n");
    assert!(!done.stdout.contains("135790"), "the PIN is never echoed");
    let done = wardkey(dir, &["user", "set-pin", "alice", "--pin-stdin", "--json"], Some("24681012\r\n")).ok().json();
    assert_eq!(done, json!({"username": "alice", "pin_set": true}));

    for bad in ["12345\n", "abcdef\n", "12 345\n", "12345a\n", "١٢٣٤٥٦\n", &format!("{}\n", "1".repeat(33))] {
        let run = set_pin("alice", bad).fails_with(&["pin", "a PIN must be 6 to 32 digits"]);
        assert!(!run.stderr.contains(bad.trim_end()), "the PIN is never echoed: {run:#?}");
    }
    // The PINs anyone tries first are refused (NIST SP 800-63B §5.1.1.2).
    for weak in ["111111\n", "123456\n", "654321\n", "890123\n", "00000000\n"] {
        set_pin("alice", weak).fails_with(&["one of the first anyone would try"]);
    }
    set_pin("alice", "").fails_with(&["no PIN on stdin"]);
    set_pin("alice", "\n").fails_with(&["no PIN on stdin"]);
    set_pin("nosuch", "135790\n").fails_with(&["user \"nosuch\" does not exist"]);
    wardkey(dir, &["user", "set-pin", "alice", "--pin", "123456"], None).usage_error("--pin");
    wardkey(dir, &["user", "set-pin", "alice", "--pin-stdin", "123456"], None).usage_error("123456");

    // The minimum length follows tap.pin_min_length.
    wardkey_env(
        dir,
        &[("WARDKEY_TAP__PIN_MIN_LENGTH", "8")],
        &["user", "set-pin", "alice", "--pin-stdin"],
        Some("135790\n"),
    )
    .fails_with(&["a PIN must be 8 to 32 digits"]);
}

/// The error code of a refused tap request.
async fn tap_error(r: reqwest::Response) -> (u16, String) {
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    (status, body["error"].as_str().unwrap_or_default().to_string())
}

/// Through the CLI only: add `username` with [`PASSWORD`], enrol the badge
/// `uid` and set `pin`.
fn cli_clinician(dir: &Path, username: &str, uid: &str, pin: &str) {
    wardkey(dir, &["user", "add", username, "--password-stdin"], Some(&format!("{PASSWORD}\n"))).ok();
    wardkey(dir, &["badge", "enrol", username, "--uid-stdin"], Some(&format!("{uid}\n"))).ok();
    wardkey(dir, &["user", "set-pin", username, "--pin-stdin"], Some(&format!("{pin}\n"))).ok();
}

/// First tap and PIN at `ws`: `pin_required`, then `active`.
async fn tap_in(app: &TestApp, ws: &TestWorkstation, uid: &str, pin: &str) {
    let answer = ws.call(app, "/tap", json!({"badge": uid})).await;
    assert_eq!(answer["state"], "pin_required", "{answer}");
    let answer = ws.call(app, "/tap/pin", json!({"tap_id": answer["tap_id"], "pin": pin})).await;
    assert_eq!(answer["state"], "active", "{answer}");
}

/// Tap `uid` at `ws` until the answer is `pin_required` (its session has
/// ended), for at most 5 s; until then only `locked`/`active` are expected.
async fn tap_until_pin_required(app: &TestApp, ws: &TestWorkstation, uid: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let answer = ws.call(app, "/tap", json!({"badge": uid})).await;
        match answer["state"].as_str() {
            Some("pin_required") => return answer,
            Some("locked" | "active") if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            _ => panic!("the session did not end within 5 s: {answer}"),
        }
    }
}

/// CLI → store → server: a user, badge and PIN set up with the CLI alone
/// sign in by tap at a running server; a workstation disabled with the CLI
/// is refused at once.
// Two threads: the in-process server (its audit writer among others) keeps
// running while this thread waits for a `wardkey` process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn badge_and_pin_from_the_cli_work_at_a_running_server() {
    let app = spawn_app().await;
    let dir = app.dir.path();
    cli_clinician(dir, "dana", "04:D4:7A:01", "135790");
    let ws = TestWorkstation::enrol(&app, "w5-pc1", "Ward 5").await;

    let answer = ws.call(&app, "/tap", json!({"badge": "04d47a01"})).await;
    assert_eq!(answer["state"], "pin_required", "{answer}");
    assert_eq!(answer["user"]["username"], "dana", "{answer}");
    let wrong = ws.send(&app, "/tap/pin", json!({"tap_id": answer["tap_id"], "pin": "000000"})).await;
    assert_eq!(tap_error(wrong).await, (401, "wrong_pin".into()));
    // A PIN shorter than any PIN is a slip: it costs no attempt and the
    // prompt stays open, however many times (thirty at once here).
    let slips = (0..30).map(|_| ws.send(&app, "/tap/pin", json!({"tap_id": answer["tap_id"], "pin": "1357"})));
    for slip in futures_util::future::join_all(slips).await {
        let status = slip.status().as_u16();
        let body: Value = slip.json().await.unwrap();
        assert_eq!((status, body["error"].as_str()), (400, Some("pin_too_short")), "{body}");
        assert!(body["message"].as_str().unwrap().contains("did not count as a wrong PIN"), "{body}");
    }
    let dana = app.state.store.user_by_username("dana").await.unwrap().unwrap();
    let badges = app.state.store.list_badges().await.unwrap();
    let fails = badges.iter().find(|b| b.user_id == dana.id).unwrap().failed_pins;
    assert_eq!(fails, 1, "only the one real wrong PIN counted");
    let answer = ws.call(&app, "/tap/pin", json!({"tap_id": answer["tap_id"], "pin": "135790"})).await;
    assert_eq!(answer["state"], "active", "{answer}");
    assert_eq!(answer["user"]["username"], "dana", "{answer}");

    let list = workstations(dir);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["workstation_id"], ws.id.as_str());
    assert_eq!(list[0]["enrolled"], true);

    wardkey(dir, &["workstation", "disable", "w5-pc1"], None).ok();
    app.sync_directory().await; // what the server's 250 ms poll does
    let r = ws.send(&app, "/tap", json!({"badge": "04D47A01"})).await;
    assert_eq!(tap_error(r).await, (403, "workstation_disabled".into()));
    wardkey(dir, &["workstation", "enable", "w5-pc1"], None).ok();
    app.sync_directory().await;
    let r = ws.send(&app, "/tap", json!({"badge": "04D47A01"})).await;
    assert_eq!(r.status(), 200);
}

#[test]
fn revoking_sessions_of_an_unknown_user_is_refused() {
    let tmp = store_dir();
    let dir = tmp.path();
    wardkey(dir, &["user", "add", "alice"], None).ok();
    wardkey(dir, &["session", "revoke", "bob"], None).fails_with(&["user \"bob\" does not exist"]);
    wardkey(dir, &["session", "revoke"], None).usage_error("<USERNAME>");
}

/// CLI → store → server: `session revoke` ends a live tap session within
/// about a second; the next tap needs the PIN again.
// Two threads: the in-process server (its audit writer among others) keeps
// running while this thread waits for a `wardkey` process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_revoke_ends_a_live_tap_session() {
    let app = spawn_app().await;
    let dir = app.dir.path();
    cli_clinician(dir, "erin", "E0E0", "135790");
    let ws = TestWorkstation::enrol(&app, "w6-pc1", "Ward 6").await;
    tap_in(&app, &ws, "E0E0", "135790").await;
    // The session lives: tapping locks, tapping again resumes without a PIN.
    assert_eq!(ws.call(&app, "/tap", json!({"badge": "E0E0"})).await["state"], "locked");
    assert_eq!(ws.call(&app, "/tap", json!({"badge": "E0E0"})).await["state"], "active");

    let out = wardkey(dir, &["session", "revoke", "erin"], None).ok();
    assert!(out.stdout.starts_with("sessions of erin end"), "{out:#?}");
    let answer = tap_until_pin_required(&app, &ws, "E0E0").await;
    assert_eq!(answer["user"]["username"], "erin", "{answer}");
    // She can start a new session with her PIN.
    let answer = ws.call(&app, "/tap/pin", json!({"tap_id": answer["tap_id"], "pin": "135790"})).await;
    assert_eq!(answer["state"], "active", "{answer}");

    let json_out = wardkey(dir, &["session", "revoke", "erin", "--json"], None).ok().json();
    assert_eq!(json_out, json!({"username": "erin", "revocation_requested": true}));
    tap_until_pin_required(&app, &ws, "E0E0").await;

    let audit = app.state.store.recent_audit(50).await.unwrap();
    assert!(
        audit.iter().any(|e| e.event == "session.revoke" && e.actor == OPERATOR && e.subject == "erin"),
        "{audit:?}"
    );
}

/// CLI → store → server: `user disable` refuses the user's taps at once and
/// ends their live sessions, so after `user enable` a PIN is needed again.
// Two threads: the in-process server (its audit writer among others) keeps
// running while this thread waits for a `wardkey` process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_disable_ends_live_tap_sessions() {
    let app = spawn_app().await;
    let dir = app.dir.path();
    cli_clinician(dir, "fay", "F0F0", "135790");
    let ws = TestWorkstation::enrol(&app, "w7-pc1", "Ward 7").await;
    tap_in(&app, &ws, "F0F0", "135790").await;
    let fay = app.state.store.user_by_username("fay").await.unwrap().unwrap();

    wardkey(dir, &["user", "disable", "fay"], None).ok();
    app.sync_directory().await; // what the server's 250 ms poll does
    let r = ws.send(&app, "/tap", json!({"badge": "F0F0"})).await;
    assert_eq!(tap_error(r).await, (403, "user_disabled".into()));

    // The server ends her session within about a second.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let audit = app.state.store.recent_audit(50).await.unwrap();
        // The server ends it on the CLI's request (the request's own record,
        // `user.disable`, names the operator).
        if audit.iter().any(|e| e.event == "session.end" && e.actor == "admin-cli" && e.subject == fay.id) {
            break;
        }
        assert!(Instant::now() < deadline, "her session did not end within 5 s: {audit:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    wardkey(dir, &["user", "enable", "fay"], None).ok();
    app.sync_directory().await;
    let answer = ws.call(&app, "/tap", json!({"badge": "F0F0"})).await;
    assert_eq!(answer["state"], "pin_required", "a disabled user's session does not survive re-enabling: {answer}");
}

/// A WebAuthn credential as the server registers one, labelled `name`.
fn webauthn_key(id: &[u8], user_id: &str, kind: AuthenticatorKind, name: &str, created_at: i64) -> WebauthnCredential {
    WebauthnCredential {
        id: id.to_vec(),
        user_id: user_id.to_string(),
        kind,
        name: name.to_string(),
        data: r#"{"cred":{"counter":0,"public_key":"SECRET-LOOKING-KEY-DATA"}}"#.to_string(),
        created_at,
        last_used_at: None,
        suspended_at: None,
    }
}

/// A key suspended for a signature counter that went backwards shows as
/// such, and `user keys USER --enable ID` turns it back on, once, audited.
#[tokio::test]
async fn user_keys_enable_turns_a_suspended_key_back_on() {
    let tmp = store_dir();
    let dir = tmp.path();
    wardkey(dir, &["user", "add", "alice"], None).ok();
    let store = cli_store(dir).await;
    let alice = store.user_by_username("alice").await.unwrap().unwrap();
    let key = webauthn_key(&[0x0c; 20], &alice.id, AuthenticatorKind::Passkey, "Phone", 1_700_000_000);
    store.add_webauthn_credential(&key).await.unwrap();
    let id = URL_SAFE_NO_PAD.encode(&key.id);
    wardkey(dir, &["user", "keys", "alice", "--enable", &id], None).fails_with(&["not suspended"]);
    store.set_webauthn_suspended(&alice.id, &key.id, Some(1_700_000_500)).await.unwrap();
    let listed = wardkey(dir, &["user", "keys", "alice"], None).ok().stdout;
    assert!(listed.contains("SUSPENDED since 2023-11-14"), "{listed}");
    assert_eq!(wardkey(dir, &["user", "keys", "alice", "--json"], None).ok().json()[0]["suspended_at"], 1_700_000_500);
    wardkey(dir, &["user", "keys", "alice", "--enable", "AAAA"], None).fails_with(&["no passkey or security key"]);
    let out = wardkey(dir, &["user", "keys", "alice", "--enable", &id], None).ok().stdout;
    assert!(out.contains("turned back on"), "{out}");
    assert_eq!(store.webauthn_credential(&key.id).await.unwrap().unwrap().suspended_at, None);
    let audit = store.recent_audit(10).await.unwrap();
    assert!(audit.iter().any(|e| e.event == "webauthn.reenabled" && e.detail["credential"] == id.as_str()));
}

/// `user keys` lists a user's own passkeys and security keys, oldest
/// first; `user remove-key` removes one of theirs, once, and audits it.
#[tokio::test]
async fn user_keys_and_remove_key() {
    let tmp = store_dir();
    let dir = tmp.path();
    wardkey(dir, &["user", "add", "alice"], None).ok();
    wardkey(dir, &["user", "add", "bob"], None).ok();
    let store = cli_store(dir).await;
    let alice = store.user_by_username("alice").await.unwrap().unwrap();
    let bob = store.user_by_username("bob").await.unwrap().unwrap();

    assert_eq!(wardkey(dir, &["user", "keys", "alice"], None).ok().stdout, "alice has no passkeys or security keys\n");
    assert_eq!(wardkey(dir, &["user", "keys", "alice", "--json"], None).ok().json(), json!([]));

    // 1_700_000_000 is 2023-11-14T22:13:20Z.
    let yubikey = WebauthnCredential {
        last_used_at: Some(1_700_003_600),
        ..webauthn_key(&[0xfb; 20], &alice.id, AuthenticatorKind::SecurityKey, "Blue YubiKey", 1_700_000_000)
    };
    let phone = webauthn_key(&[0x0a, 0, 0xff], &alice.id, AuthenticatorKind::Passkey, "Phone", 1_700_000_100);
    let bobs = webauthn_key(&[0xb0; 16], &bob.id, AuthenticatorKind::Passkey, "Bob's phone", 1_700_000_200);
    for k in [&phone, &yubikey, &bobs] {
        store.add_webauthn_credential(k).await.unwrap();
    }
    let (yubikey_id, phone_id, bobs_id) =
        (URL_SAFE_NO_PAD.encode(&yubikey.id), URL_SAFE_NO_PAD.encode(&phone.id), URL_SAFE_NO_PAD.encode(&bobs.id));
    assert_eq!(phone_id, "CgD_", "base64url, so ids paste into a shell as they are");
    assert!(yubikey_id.starts_with('-'), "an id may begin with '-': {yubikey_id}");

    let listed = wardkey(dir, &["user", "keys", "alice", "--json"], None).ok().json();
    assert_eq!(
        listed,
        json!([
            {"id": yubikey_id, "kind": "security_key", "name": "Blue YubiKey", "created_at": 1_700_000_000,
                "last_used_at": 1_700_003_600, "suspended_at": null},
            {"id": phone_id, "kind": "passkey", "name": "Phone", "created_at": 1_700_000_100, "last_used_at": null,
                "suspended_at": null},
        ])
    );
    let human = wardkey(dir, &["user", "keys", "alice"], None).ok();
    assert_eq!(
        human.stdout,
        format!(
            "{yubikey_id}\tsecurity_key\tBlue YubiKey\t2023-11-14T22:13:20Z\t2023-11-14T23:13:20Z\n\
             {phone_id}\tpasskey\tPhone\t2023-11-14T22:15:00Z\tnever used\n"
        )
    );
    for listing in [&human.stdout, &listed.to_string()] {
        assert!(!listing.contains("SECRET-LOOKING"), "the credential data is never shown: {listing}");
    }

    // Only a key the user holds: bob's id named with alice changes nothing.
    wardkey(dir, &["user", "remove-key", "alice", &bobs_id], None).fails_with(&[
        "user \"alice\" has no passkey or security key with id",
        &bobs_id,
        "`wardkey user keys alice`",
    ]);
    assert_eq!(store.webauthn_credential(&bobs.id).await.unwrap(), Some(bobs.clone()));

    let removed = wardkey(dir, &["user", "remove-key", "alice", &phone_id], None).ok();
    assert!(removed.stdout.starts_with("removed passkey \"Phone\" of alice\n"), "{removed:#?}");
    assert!(removed.stdout.contains("wardkey session revoke alice"), "says how to end its sessions: {removed:#?}");
    wardkey(dir, &["user", "remove-key", "alice", &phone_id], None).fails_with(&["has no passkey or security key"]);
    // Padding is tolerated.
    let removed = wardkey(dir, &["user", "remove-key", "alice", &format!("{yubikey_id}="), "--json"], None).ok().json();
    assert_eq!(removed, json!({"username": "alice", "id": yubikey_id, "removed": true}));
    assert_eq!(wardkey(dir, &["user", "keys", "alice", "--json"], None).ok().json(), json!([]));
    assert_eq!(store.webauthn_credentials(&bob.id).await.unwrap(), [bobs], "bob's untouched");

    let revoked = audited(store.as_ref(), "webauthn.revoke").await;
    assert_eq!(revoked.len(), 2, "{revoked:?}");
    for (record, (id, kind, name)) in
        revoked.iter().zip([(&phone_id, "passkey", "Phone"), (&yubikey_id, "security_key", "Blue YubiKey")])
    {
        assert_eq!((record.actor.as_str(), record.subject.as_str()), (OPERATOR, "alice"), "{record:?}");
        assert_eq!(record.detail, json!({"credential": id, "kind": kind, "name": name}), "{record:?}");
    }
}

/// Hostile input: a label set on the account page cannot forge lines,
/// columns or terminal escapes in `user keys`; ids that are not base64url,
/// and unknown users, are refused with a reason and change nothing.
#[tokio::test]
async fn bad_and_hostile_key_input() {
    let tmp = store_dir();
    let dir = tmp.path();
    wardkey(dir, &["user", "add", "alice"], None).ok();
    let store = cli_store(dir).await;
    let alice = store.user_by_username("alice").await.unwrap().unwrap();
    let label = "Blue\nbob\tsecurity_key\u{1b}[2J\u{202e}yek\r";
    let key = webauthn_key(&[7; 16], &alice.id, AuthenticatorKind::SecurityKey, label, 1_700_000_000);
    store.add_webauthn_credential(&key).await.unwrap();
    let key_id = URL_SAFE_NO_PAD.encode(&key.id);

    let human = wardkey(dir, &["user", "keys", "alice"], None).ok();
    assert_eq!(human.stdout.lines().count(), 1, "{human:#?}");
    assert_eq!(human.stdout.matches('\t').count(), 4, "five columns, whatever the label: {human:#?}");
    assert!(!human.stdout.contains(['\u{1b}', '\u{202e}', '\r']), "{human:#?}");
    assert!(human.stdout.contains(r"Blue\nbob\tsecurity_key\u{1b}[2J\u{202e}yek\r"), "shown escaped: {human:#?}");
    let listed = wardkey(dir, &["user", "keys", "alice", "--json"], None).ok().json();
    assert_eq!(listed[0]["name"], label, "JSON carries the label exactly");

    let long = "A".repeat(10_000);
    for bad in ["", "!!!", "abc$", "a b", "CgD_\n", "+/+/", "A", "===="] {
        let run = wardkey(dir, &["user", "remove-key", "alice", bad], None).fails_with(&[
            "id",
            "is not a key id",
            "wardkey user keys USERNAME",
        ]);
        assert_eq!(run.stderr.lines().count(), 1, "a newline in the input cannot forge a second line: {run:#?}");
    }
    wardkey(dir, &["user", "remove-key", "alice", &long], None).fails_with(&["user \"alice\" has no passkey"]);
    wardkey(dir, &["user", "remove-key", "nosuch", &key_id], None).fails_with(&["user \"nosuch\" does not exist"]);
    wardkey(dir, &["user", "keys", "nosuch"], None).fails_with(&["user \"nosuch\" does not exist"]);
    wardkey(dir, &["user", "keys", "bob\n"], None).fails_with(&["user \"bob\\n\" does not exist"]);
    wardkey(dir, &["user", "remove-key", "alice"], None).usage_error("<ID>");
    wardkey(dir, &["user", "keys"], None).usage_error("<USERNAME>");

    let removed = wardkey(dir, &["user", "remove-key", "alice", &key_id], None).ok();
    assert_eq!(removed.stdout.lines().count(), 2, "{removed:#?}");
    assert!(!removed.stdout.contains(['\u{1b}', '\u{202e}', '\r']), "{removed:#?}");
    assert_eq!(audited(store.as_ref(), "webauthn.revoke").await.len(), 1, "only the real removal is audited");
}

/// `user invite` prints a link carrying a fresh token whose digest, and
/// only that, the store keeps; the link works once; the token is never
/// audited.
#[tokio::test]
async fn user_invite_prints_a_one_time_link() {
    let tmp = store_dir();
    let dir = tmp.path();
    wardkey(dir, &["user", "add", "alice"], None).ok();
    let public_url = [("WARDKEY_SERVER__PUBLIC_URL", "https://sso.trust.example/")];
    let invite = |extra: &[&str]| {
        let mut args = vec!["user", "invite", "alice"];
        args.extend_from_slice(extra);
        wardkey_env(dir, &public_url, &args, None)
    };

    let before = SystemClock.now();
    let out = invite(&["--json"]).ok().json();
    let after = SystemClock.now();
    let mut fields: Vec<&str> = out.as_object().expect("an object").keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["expires_at", "url", "username"], "{out}");
    assert_eq!(out["username"], "alice");
    let url = out["url"].as_str().expect("url");
    let token = url.strip_prefix("https://sso.trust.example/account/invite/").unwrap_or_else(|| panic!("{out}"));
    assert_eq!(token.len(), 43, "256 bits, base64url without padding: {token}");
    assert!(token.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'), "{token}");
    let expires_at = out["expires_at"].as_i64().expect("expires_at");
    assert!((before + 24 * 3600..=after + 24 * 3600).contains(&expires_at), "24 h by default: {out}");

    let mut tokens = vec![token.to_string()];
    for (valid_for, secs) in [("5m", 300), ("7d", 7 * 24 * 3600), ("1h 30m", 5400)] {
        let before = SystemClock.now();
        let out = invite(&["--valid-for", valid_for, "--json"]).ok().json();
        let expires_at = out["expires_at"].as_i64().unwrap();
        assert!((before + secs..=SystemClock.now() + secs).contains(&expires_at), "{valid_for}: {out}");
        tokens.push(out["url"].as_str().unwrap().rsplit('/').next().unwrap().to_string());
    }

    // Human output: the link, when it stops working, and whom to give it.
    let human = invite(&[]).ok();
    let mut lines = human.stdout.lines();
    assert!(lines.next().unwrap().starts_with("invite link for alice, valid once until 20"), "{human:#?}");
    let link = lines.next().unwrap().trim();
    assert!(link.starts_with("https://sso.trust.example/account/invite/"), "{human:#?}");
    assert!(lines.next().unwrap().contains("whoever opens it first"), "{human:#?}");
    tokens.push(link.rsplit('/').next().unwrap().to_string());
    let mut distinct = tokens.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), tokens.len(), "every invite gets its own token: {tokens:?}");

    // The store holds the digest of the printed token: the link works once.
    let store = cli_store(dir).await;
    let alice = store.user_by_username("alice").await.unwrap().unwrap();
    let now = SystemClock.now();
    assert_eq!(store.take_invite(&digest(token), now).await.unwrap().as_ref(), Some(&alice.id));
    assert_eq!(store.take_invite(&digest(token), now).await.unwrap(), None, "once");
    assert_eq!(store.take_invite(token.as_bytes(), now).await.unwrap(), None, "the token itself is not stored");

    let invited = audited(store.as_ref(), "user.invite").await;
    assert_eq!(invited.len(), tokens.len(), "{invited:?}");
    assert_eq!((invited[0].actor.as_str(), invited[0].subject.as_str()), (OPERATOR, "alice"));
    assert_eq!(invited[0].detail, json!({"sub": alice.id, "expires_at": expires_at}));
    let everything = format!("{:?}", store.recent_audit(u32::MAX).await.unwrap());
    for token in &tokens {
        assert!(!everything.contains(token.as_str()), "a token is never audited");
    }
}

#[tokio::test]
async fn bad_invite_input_is_refused_with_a_reason() {
    let tmp = store_dir();
    let dir = tmp.path();
    wardkey(dir, &["user", "add", "alice"], None).ok();
    wardkey(dir, &["user", "add", "dora"], None).ok();
    wardkey(dir, &["user", "disable", "dora"], None).ok();
    // `--valid-for=…`, so that clap passes on "-1h" too.
    let invite = |username: &str, valid_for: &str| {
        wardkey(dir, &["user", "invite", username, &format!("--valid-for={valid_for}")], None)
    };

    for short_or_long in ["4m", "4m 59s", "0s", "7d 1s", "8d", "1y", "100000000000000000000s"] {
        let needles: &[&str] = if short_or_long.starts_with("1000") {
            &["valid-for", "is not a duration"]
        } else {
            &["valid-for", "out of range", "at least 5m and at most 7d"]
        };
        invite("alice", short_or_long).fails_with(needles);
    }
    for not_a_duration in ["", "forever", "-1h", "24", "1e3h", "24h\nerror: forged", "\u{1b}[31m1h"] {
        let run = invite("alice", not_a_duration).fails_with(&["valid-for", "is not a duration", "like 30m, 24h"]);
        assert_eq!(run.stderr.lines().count(), 1, "a newline in the input cannot forge a second line: {run:#?}");
        assert!(!run.stderr.contains('\u{1b}'), "{run:#?}");
    }
    invite("nosuch", "1h").fails_with(&["user \"nosuch\" does not exist"]);
    invite("dora", "1h").fails_with(&["user \"dora\" is disabled", "wardkey user enable dora"]);
    wardkey(dir, &["user", "invite"], None).usage_error("<USERNAME>");
    wardkey(dir, &["user", "invite", "alice", "--valid-for"], None).usage_error("--valid-for");
    wardkey(dir, &["user", "invite", "alice", "--token", "chosen"], None).usage_error("--token");

    let store = cli_store(dir).await;
    assert!(audited(store.as_ref(), "user.invite").await.is_empty(), "no bad attempt made an invite");
    // Re-enabled, she can be invited.
    wardkey(dir, &["user", "enable", "dora"], None).ok();
    invite("dora", "1h").ok();
}

/// What a new admin meets: passwords anyone would try refused (and the
/// list replaceable), a user added with no password told how to get one,
/// badges listed, users and workstations removed for good, usernames one
/// whatever their case.
#[test]
fn user_lifecycle_and_password_rules() {
    let tmp = store_dir();
    let dir = tmp.path();
    let add = |name: &str, pw: &str| wardkey(dir, &["user", "add", name, "--password-stdin"], Some(pw));
    for (pw, words) in [
        ("password1\n", "commonly used or breached"),
        ("Qwertyuiop\n", "commonly used or breached"),
        ("bob-is-here-2026\n", "contains the username"),
    ] {
        add("bob", pw).fails_with(&[words]);
    }
    assert!(users(dir).is_empty(), "nothing written");
    // The trust's own list replaces the shipped one.
    std::fs::write(dir.join("blocked.txt"), "# trust list\nWard7Rules!\n").unwrap();
    let blocked = dir.join("blocked.txt");
    let with_list = [("WARDKEY_PASSWORD__BLOCKED_PASSWORDS", blocked.to_str().unwrap())];
    wardkey_env(dir, &with_list, &["user", "add", "bob", "--password-stdin"], Some("ward7rules!\n"))
        .fails_with(&["commonly used or breached"]);
    wardkey_env(
        dir,
        &[("WARDKEY_PASSWORD__BLOCKED_PASSWORDS", "/nonexistent")],
        &["user", "add", "bob", "--password-stdin"],
        Some("a fine long phrase\n"),
    )
    .fails_with(&["password.blocked_passwords", "/nonexistent"]);
    add("bob", "a fine long phrase\n").ok();
    add("BOB", "another fine phrase\n").fails_with(&["user \"BOB\" already exists"]);

    // No password: told the three ways to get one.
    let carol = wardkey(dir, &["user", "add", "carol"], None).ok();
    assert!(carol.stdout.contains("carol has no password yet"), "{carol:#?}");
    for way in
        ["wardkey user invite carol", "wardkey user set-password carol --password-stdin", "wardkey directory sync"]
    {
        assert!(carol.stdout.contains(way), "{way}: {carol:#?}");
    }
    let json = wardkey(dir, &["--json", "user", "add", "dave"], None).ok().json();
    assert_eq!(json["password_set"], false);

    // Badges listed, without UIDs.
    wardkey(dir, &["badge", "enrol", "carol", "--uid-stdin"], Some("04:C4:20:11\n")).ok();
    wardkey(dir, &["badge", "enrol", "bob", "--uid-stdin"], Some("04B0B0B1\n")).ok();
    let listed = wardkey(dir, &["badge", "list"], None).ok();
    assert_eq!(listed.stdout.lines().count(), 2, "{listed:#?}");
    assert!(listed.stdout.lines().next().unwrap().starts_with("bob\t"), "{listed:#?}");
    assert!(!listed.stdout.contains("04C42011") && !listed.stdout.contains("04:C4"), "UIDs are never shown");
    let carols = wardkey(dir, &["--json", "badge", "list", "Carol"], None).ok().json();
    assert_eq!(carols.as_array().unwrap().len(), 1, "{carols}");
    assert_eq!((carols[0]["username"].as_str(), carols[0]["wrong_pins"].as_u64()), (Some("carol"), Some(0)));

    // Removed for good, with their badges.
    let removed = wardkey(dir, &["user", "remove", "CAROL"], None).ok();
    assert!(removed.stdout.starts_with("removed user carol"), "{removed:#?}");
    assert!(users(dir).iter().all(|u| u["username"] != "carol"));
    assert_eq!(wardkey(dir, &["--json", "badge", "list"], None).ok().json().as_array().unwrap().len(), 1);
    wardkey(dir, &["user", "remove", "carol"], None).fails_with(&["user \"carol\" does not exist"]);
    // The same badge can go to someone else now.
    wardkey(dir, &["badge", "enrol", "dave", "--uid-stdin"], Some("04C42011\n")).ok();

    wardkey(dir, &["workstation", "enrol", "w9-pc1", "--ward", "Ward 9"], None).ok();
    wardkey(dir, &["workstation", "remove", "w9-pc1"], None).ok();
    assert!(workstations(dir).is_empty());
    wardkey(dir, &["workstation", "remove", "w9-pc1"], None).fails_with(&["workstation \"w9-pc1\" does not exist"]);
}

/// An ESR-shaped staff extract: a dry run writes nothing, the import
/// creates, links the hand-made user, disables a terminated assignment; a
/// second import updates instead of duplicating; a bad extract names every
/// bad row and writes nothing.
#[test]
fn user_import_from_an_esr_extract() {
    let tmp = store_dir();
    let dir = tmp.path();
    wardkey(dir, &["user", "add", "AOkafor", "--password-stdin"], Some("a fine long phrase\n")).ok();
    let sub = users(dir)[0]["sub"].clone();
    let extract = "Employee Number,Assignment Number,Surname,First Name,Work Email,Username,Assignment Status,Role\n\
                   E001,1-A,Okafor,Alice,alice.okafor@nhs.net,aokafor,Active Assignment,R8000\n\
                   E002,2-A,Hughes,Bob,bob.hughes@nhs.net,bhughes,Active Assignment,R8001;R8002\n\
                   E003,3-A,Iqbal,Cara,,ciqbal,Terminate Assignment,\n";
    std::fs::write(dir.join("esr.csv"), extract).unwrap();
    let dry = wardkey(dir, &["user", "import", "esr.csv", "--dry-run"], None).ok();
    assert!(
        dry.stdout.starts_with("dry run, nothing written: 3 users in the extract: 2 created, 0 updated, 1 linked"),
        "{dry:#?}"
    );
    assert_eq!(users(dir).len(), 1);

    let done = wardkey(dir, &["--json", "user", "import", "esr.csv"], None).ok().json();
    assert_eq!((done["created"].as_u64(), done["linked"].as_u64()), (Some(2), Some(1)), "{done}");
    let list = users(dir);
    assert_eq!(list.len(), 3, "{list:?}");
    let alice = list.iter().find(|u| u["username"] == "aokafor").unwrap();
    assert_eq!((alice["sub"].clone(), alice["employee_number"].as_str()), (sub, Some("E001")));
    assert_eq!(alice["name"], "Alice Okafor");
    let cara = list.iter().find(|u| u["username"] == "ciqbal").unwrap();
    assert_eq!(cara["disabled"], true, "a terminated assignment is disabled");
    let bob = list.iter().find(|u| u["username"] == "bhughes").unwrap();
    assert_eq!(bob["roles"], serde_json::json!(["R8001", "R8002"]));

    // Next month's extract: Bob renamed; nobody duplicated; Alice left out
    // of a partial extract is not disabled.
    std::fs::write(dir.join("esr.csv"), "Employee Number,Username,Full Name\nE002,bhughes,Robert Hughes\n").unwrap();
    let again = wardkey(dir, &["--json", "user", "import", "esr.csv"], None).ok().json();
    assert_eq!(
        (again["updated"].as_u64(), again["created"].as_u64(), again["disabled"].as_u64()),
        (Some(1), Some(0), Some(0))
    );
    assert_eq!(users(dir).len(), 3);

    // A bad extract: every bad row named, nothing written.
    std::fs::write(dir.join("bad.csv"), "Username,Employee Number\nnew1,E010\nbad name,E011\nnew2,\n").unwrap();
    wardkey(dir, &["user", "import", "bad.csv"], None).fails_with(&[
        "row 3: username: \"bad name\"",
        "row 4: new2 has no employee number",
        "nothing was imported",
    ]);
    wardkey(dir, &["user", "import", "missing.csv"], None).fails_with(&["reading missing.csv"]);
    std::fs::write(dir.join("cols.csv"), "Name,Email\nAlice,a@nhs.net\n").unwrap();
    wardkey(dir, &["user", "import", "cols.csv"], None)
        .fails_with(&["needs a \"Username\" and an \"Employee Number\" column"]);
    assert_eq!(users(dir).len(), 3, "nothing written");
}

/// An admin command never creates a store: in the wrong directory, or with
/// a mistyped path, it stops and says how to make one; `store init` makes
/// it once and is harmless after.
#[test]
fn no_command_creates_an_empty_store_by_accident() {
    let tmp = tempfile::tempdir().unwrap();
    wardkey(tmp.path(), &["user", "list"], None).fails_with(&["there is no Wardkey store", "wardkey store init"]);
    assert!(!tmp.path().join("wardkey.db").exists(), "nothing was created");
    // A file that is not a Wardkey store is refused too.
    std::fs::write(tmp.path().join("wardkey.db"), b"").unwrap();
    wardkey(tmp.path(), &["user", "list"], None).fails_with(&["has no Wardkey tables"]);
    std::fs::remove_file(tmp.path().join("wardkey.db")).unwrap();
    let made = wardkey(tmp.path(), &["--json", "store", "init"], None).ok().json();
    assert_eq!(made["created"], true);
    let again = wardkey(tmp.path(), &["--json", "store", "init"], None).ok().json();
    assert_eq!(again["created"], false, "init on an existing store changes nothing");
    wardkey(tmp.path(), &["user", "list"], None).ok();
    // A server pointed at a missing store stops unless told to create it.
    let config = tmp.path().join("wardkey.toml");
    std::fs::write(&config, "[store]\nurl = \"sqlite://./elsewhere/wardkey.db\"\n").unwrap();
    let env = [("WARDKEY_STORE__URL", "sqlite://./elsewhere/wardkey.db")];
    let serve = wardkey_env(tmp.path(), &env, &["--config", config.to_str().unwrap(), "serve"], None);
    assert_eq!(serve.code, Some(1), "{serve:#?}");
    assert!(serve.stderr.contains("there is no Wardkey store") && serve.stderr.contains("serve --init"), "{serve:#?}");
    assert!(!tmp.path().join("elsewhere").exists());
}

/// `wardkey audit verify` on the CLI's store finds an edited record and
/// exits 1; `export` writes JSON lines and RFC 5424 messages that carry
/// each record's place and hash.
#[tokio::test]
async fn audit_verify_and_export_from_the_command_line() {
    let tmp = store_dir();
    wardkey(tmp.path(), &["user", "add", "alice"], None).ok();
    wardkey(tmp.path(), &["user", "disable", "alice"], None).ok();
    let verified = wardkey(tmp.path(), &["--json", "audit", "verify"], None).ok().json();
    assert_eq!((verified["ok"].as_bool(), verified["records"].as_u64()), (Some(true), Some(2)), "{verified}");
    let listed =
        wardkey(tmp.path(), &["--json", "audit", "list", "--event", "user.", "--since", "1h"], None).ok().json();
    assert_eq!(listed[0]["event"], "user.disable");
    assert_eq!(listed[0]["actor"], OPERATOR);

    let lines = wardkey(tmp.path(), &["audit", "export", "--format", "jsonl"], None).ok().stdout;
    let records: Vec<Value> = lines.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(records.len(), 2);
    assert_eq!((records[1]["seq"].as_i64(), records[1]["prev_hash"].clone()), (Some(2), records[0]["hash"].clone()));
    let syslog = wardkey(tmp.path(), &["audit", "export", "--format", "syslog"], None).ok().stdout;
    let first = syslog.lines().next().unwrap();
    assert!(first.starts_with("<86>1 ") && first.contains(" wardkey - user.add [wardkey@32473 seq=\"1\""), "{first}");
    wardkey(tmp.path(), &["audit", "export", "--since", "yesterday-ish"], None).fails_with(&["--since"]);

    // Someone edits the log behind Wardkey's back.
    let url = format!("sqlite://{}", tmp.path().join("wardkey.db").display());
    let mut side = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url).await.unwrap();
    sqlx::query("UPDATE audit_log SET actor = 'someone-else' WHERE seq = 2").execute(&mut side).await.unwrap();
    wardkey(tmp.path(), &["audit", "verify"], None).fails_with(&["TAMPERED", "record 2 was edited"]);
}
