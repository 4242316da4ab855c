//! A ward PC as it runs: the `wardkey-agent run` binary reading badges
//! from a FIFO (as a reader daemon writes them), and the `wardkey-desk`
//! lock screen in a real X server (Xvfb), pressed with synthetic mouse and
//! keyboard input and photographed at every step into
//! `target/screenshots/lock-*.png`. Also the brokers' peer-credential
//! checks, with processes of other users.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use wardkey_core::client::GrantType;
use wardkey_core::clock::Clock;
use wardkey_core::keys::SigningAlg;
use wardkey_proto::broker::{DeskScreen, WorkstationState};
use wardkey_store::CredentialKind;
use wardkey_testsupport::fixtures::PIN;
use wardkey_testsupport::xvfb::Xvfb;

use crate::agent::enrolled_agent;
use crate::helpers::*;

/// The lock screen's background, NHS dark blue.
const LOCK_BLUE: [u8; 3] = [0x00, 0x30, 0x87];

/// `username` with display name `name`, a badge `uid` and the test PIN.
async fn clinician(app: &TestApp, username: &str, name: &str, uid: &str) {
    let hash = wardkey_core::password::hash(&app.state.settings.password.argon2(), PASSWORD).unwrap();
    let mut new = wardkey_testsupport::fixtures::new_user(username);
    new.name = Some(name.into());
    let user = app.state.store.create_user(&new, Some(&hash), app.clock.now()).await.unwrap();
    let badge = wardkey_testsupport::fixtures::badge(&app.state.badge_key, uid, &user.id, app.clock.now());
    app.state.store.add_badge(&badge).await.unwrap();
    let pin = wardkey_core::password::hash(&app.state.settings.password.argon2(), PIN).unwrap();
    app.state.store.set_credential(&user.id, CredentialKind::Pin, &pin, app.clock.now()).await.unwrap();
}

fn binary(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_wardkey")).with_file_name(name);
    assert!(path.exists(), "build the workspace (cargo build --workspace) for {}", path.display());
    path
}

/// The agent binary and the lock screen on one X server, killed on drop.
struct WardPc {
    dir: PathBuf,
    agent: Child,
    desk: Child,
    badges: std::fs::File,
}

impl Drop for WardPc {
    fn drop(&mut self) {
        for child in [&mut self.desk, &mut self.agent] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl WardPc {
    async fn start(app: &TestApp, dir: &Path, x: &Xvfb) -> Self {
        let (agent, socket) = enrolled_agent(app, dir).await;
        drop(agent);
        let fifo = dir.join("badges");
        assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let config = dir.join("agent.toml");
        let log = |name: &str| std::fs::File::create(dir.join(name)).unwrap();
        let agent = Command::new(binary("wardkey-agent"))
            .args(["--config", config.to_str().unwrap(), "run", "--reader"])
            .arg(format!("fifo:{}", fifo.display()))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log("agent.log"))
            .spawn()
            .expect("start wardkey-agent");
        wait_until("the agent's socket", || socket.exists()).await;
        // The agent reads the FIFO by now: opening it to write returns.
        let badges = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        let desk = Command::new(binary("wardkey-desk"))
            .args(["--config", config.to_str().unwrap(), "--broker"])
            .arg(format!("unix:{}", dir.join("user/broker.sock").display()))
            .env("DISPLAY", x.display())
            .env("GDK_BACKEND", "x11")
            // Software rendering, as on a thin client without a GPU; no
            // accessibility bus in the test session.
            .env("GSK_RENDERER", "cairo")
            .env("GTK_A11Y", "none")
            .env("RUST_LOG", "info,wardkey_desk::layout=debug")
            .stdout(Stdio::null())
            .stderr(log("desk.log"))
            .spawn()
            .expect("start wardkey-desk");
        let pc = Self { dir: dir.to_path_buf(), agent, desk, badges };
        wait_until("the lock screen to cover the screen", || covered(x)).await;
        pc
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("broker.sock")
    }

    fn tap(&mut self, uid: &str) {
        writeln!(self.badges, "{uid}").unwrap();
        self.badges.flush().unwrap();
    }

    async fn screen(&self) -> DeskScreen {
        let (status, body) = wardkey_agent::broker::http_request(&self.socket(), "GET", "/v1/desk", b"").await.unwrap();
        assert_eq!(status, 200);
        serde_json::from_slice(&body).unwrap()
    }

    async fn wait_screen(&self, what: &str, check: impl Fn(&DeskScreen) -> bool) -> DeskScreen {
        for _ in 0..200 {
            let screen = self.screen().await;
            if check(&screen) {
                // Let GTK draw it.
                tokio::time::sleep(Duration::from_millis(400)).await;
                return screen;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the screen never showed {what}: {:?}\n{}", self.screen().await, self.logs());
    }

    /// Where the lock screen laid out pad key `key` (its latest layout).
    fn key_centre(&self, key: &str) -> (i16, i16) {
        let log = std::fs::read_to_string(self.dir.join("desk.log")).unwrap();
        let line = log
            .lines()
            .rev()
            .find(|l| l.contains("pad key") && l.contains(&format!("key={key} ")))
            .unwrap_or_else(|| panic!("the lock screen logged no layout for key {key}:\n{log}"));
        let field = |name: &str| -> i16 {
            let start = line.find(&format!(" {name}=")).unwrap() + name.len() + 2;
            line[start..].split_whitespace().next().unwrap().parse().unwrap()
        };
        (field("x") + field("w") / 2, field("y") + field("h") / 2)
    }

    async fn press_keys(&self, x: &Xvfb, keys: &[&str]) {
        wait_until("the pad's layout", || {
            std::fs::read_to_string(self.dir.join("desk.log")).is_ok_and(|l| l.contains("pad key"))
        })
        .await;
        for key in keys {
            let (cx, cy) = self.key_centre(key);
            x.click(cx, cy);
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
    }

    fn logs(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        format!("--- agent.log\n{}\n--- desk.log\n{}", read("agent.log"), read("desk.log"))
    }
}

/// Whether the lock screen covers the screen (its blue in the corners,
/// where no text or control is).
fn covered(x: &Xvfb) -> bool {
    [(6, 6), (1273, 793)].iter().all(|&(px, py)| x.pixel(px, py) == LOCK_BLUE)
}

async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..200 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

fn shot(x: &Xvfb, name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots").join(format!("{name}.png"));
    x.screenshot(&path);
    path
}

/// The Return key's keysym.
const RETURN: u32 = 0xff0d;

/// Type the PIN on the keyboard and press Return, after touching an empty
/// part of the screen (as a person does; with no window manager, the
/// keyboard follows the pointer).
fn type_pin(x: &Xvfb) {
    x.click(640, 30);
    for d in PIN.chars() {
        x.key(u32::from(d));
    }
    x.key(RETURN);
}

const ALICE: &str = "04A1B2C3";
const BOB: &str = "04D4E5F6";

#[tokio::test(flavor = "multi_thread")]
async fn the_lock_screen_from_tap_to_desktop_and_back() {
    let app = spawn_app().await;
    clinician(&app, "alice", "Dr Alice Okafor", ALICE).await;
    clinician(&app, "bob", "Bob Hughes", BOB).await;
    app.add_client("epr", Auth::Secret, &[GrantType::TokenExchange], SigningAlg::ES256).await;
    let x = Xvfb::start();
    let dir = tempfile::tempdir().unwrap();
    let mut pc = WardPc::start(&app, dir.path(), &x).await;

    // Locked: the lock screen covers the desktop.
    shot(&x, "lock-1-locked");
    assert_eq!(pc.screen().await.state, WorkstationState::Locked);

    // A tap: the PIN pad, greeting the clinician by name.
    pc.tap(ALICE);
    pc.wait_screen("the PIN pad", |s| s.state == WorkstationState::PinRequired).await;
    shot(&x, "lock-2-pin");

    // A wrong PIN, pressed on the pad with the mouse.
    pc.press_keys(&x, &["9", "9", "9", "9", "9", "9", "Enter"]).await;
    let wrong = pc.wait_screen("the wrong PIN", |s| s.alert).await;
    assert!(
        wrong.message.as_deref().is_some_and(|m| m.contains("wrong PIN") && m.contains("attempts left")),
        "{wrong:?}"
    );
    shot(&x, "lock-3-wrong-pin");

    // A PIN too short to be anyone's: said so, no attempt spent, the pad stays.
    pc.press_keys(&x, &["1", "3", "Enter"]).await;
    let short =
        pc.wait_screen("the short PIN", |s| s.message.as_deref().is_some_and(|m| m.contains("too short"))).await;
    assert_eq!(short.state, WorkstationState::PinRequired, "{short:?}");
    assert!(short.message.as_deref().is_some_and(|m| m.contains("did not count as a wrong PIN")), "{short:?}");
    shot(&x, "lock-3a-short-pin");

    // The right PIN, half on the pad and half on the keyboard.
    let digits: Vec<String> = PIN.chars().map(String::from).collect();
    let (pad, keyboard) = digits.split_at(3);
    pc.press_keys(&x, &pad.iter().map(String::as_str).collect::<Vec<_>>()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    shot(&x, "lock-3b-typing");
    for d in keyboard {
        x.key(u32::from(d.chars().next().unwrap()));
    }
    x.key(RETURN);
    let active = pc.wait_screen("the desktop", |s| s.state == WorkstationState::Active && s.desktop_shown).await;
    assert_eq!(active.user.unwrap().username, "alice");
    assert!(!covered(&x), "the lock screen is gone from the desktop");
    shot(&x, "lock-4-active");

    // The clinician's EPR app gets a token through the per-user broker.
    let broker = dir.path().join("user/broker.sock");
    let (status, body) =
        wardkey_agent::broker::http_request(&broker, "POST", "/v1/token", br#"{"client_id":"epr"}"#).await.unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));

    // Her badge again: locked.
    pc.tap(ALICE);
    pc.wait_screen("locked again", |s| s.state == WorkstationState::Locked).await;
    wait_until("the lock screen back", || covered(&x)).await;
    shot(&x, "lock-5-locked-again");

    // Bob signs in with his PIN, typed on the keyboard this time...
    pc.tap(BOB);
    pc.wait_screen("Bob's PIN pad", |s| s.state == WorkstationState::PinRequired).await;
    // Keyboard users see where the focus is (NHS yellow); mouse and touch
    // presses leave no trace of the digits pressed.
    x.click(640, 30);
    x.key(0xff09); // Tab
    tokio::time::sleep(Duration::from_millis(300)).await;
    shot(&x, "lock-5b-keyboard-focus");
    type_pin(&x);
    pc.wait_screen("Bob's desktop", |s| s.desktop_shown && s.user.as_ref().is_some_and(|u| u.username == "bob")).await;
    // ...and Alice, within her PIN grace, takes over with a tap.
    pc.tap(ALICE);
    pc.wait_screen("the switch", |s| s.desktop_shown && s.user.as_ref().is_some_and(|u| u.username == "alice")).await;
    assert!(!covered(&x));
    shot(&x, "lock-6-switched");

    // The server goes away: her tap locks the PC, which says why.
    let address = app.base.trim_start_matches("http://").to_string();
    let stopped = app.stop();
    pc.tap(ALICE);
    let down = pc.wait_screen("the server unreachable", |s| s.server_unreachable && s.message.is_some()).await;
    assert_eq!(down.state, WorkstationState::Locked);
    wait_until("the lock screen back", || covered(&x)).await;
    shot(&x, "lock-7-server-unreachable");

    // It comes back: the screen says so without waiting for a tap.
    let app = stopped.restart().listen(&address).spawn().await;
    let back = pc.wait_screen("the server back", |s| !s.server_unreachable).await;
    assert!(back.message.as_deref().is_some_and(|m| m.contains("reachable again")), "{back:?}");
    assert!(!back.alert);
    shot(&x, "lock-8-server-back");
    drop(app);

    // Tap to desktop went to the server's report queue with the lock
    // screen in the loop.
    let log = std::fs::read_to_string(dir.path().join("agent.log")).unwrap();
    assert!(log.contains("tap to desktop"), "{}", pc.logs());
}

/// `wardkey-agent token` run as user `uid` against `socket`.
fn token_as(uid: u32, config: &Path, socket: &Path) -> std::process::Output {
    Command::new(binary("wardkey-agent"))
        .args(["--config", config.to_str().unwrap(), "token", "epr", "--broker"])
        .arg(format!("unix:{}", socket.display()))
        .uid(uid)
        .gid(uid)
        .output()
        .expect("run wardkey-agent token")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_broker_refuses_other_users_and_serves_the_allowed_one() {
    let root = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0;
    if !root {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(!ci, "this test runs processes as other users: CI runs it as root");
        eprintln!("skipped: needs root to run processes as other users");
        return;
    }
    let app = spawn_app().await;
    clinician(&app, "alice", "Dr Alice Okafor", ALICE).await;
    app.add_client("epr", Auth::Secret, &[GrantType::TokenExchange], SigningAlg::ES256).await;
    let dir = tempfile::tempdir().unwrap();
    // Other users must be able to reach the files: only the broker decides.
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let (agent, socket) = enrolled_agent(&app, dir.path()).await;
    drop(agent);
    // daemon (uid 1) is the allowed desktop user; nobody (65534) is not.
    let config = dir.path().join("agent.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("broker_allow = [\"user:1\"]\n");
    std::fs::write(&config, text).unwrap();
    for file in ["agent.toml", "agent.key"] {
        std::fs::set_permissions(dir.path().join(file), std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    }
    let mut child = Command::new(binary("wardkey-agent"))
        .args(["--config", config.to_str().unwrap(), "run", "--reader", "stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("agent.log")).unwrap())
        .spawn()
        .unwrap();
    wait_until("the agent's socket", || socket.exists()).await;
    let mode = std::fs::metadata(&socket).unwrap().permissions();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o666, "the allow-list guards it");
    {
        let stdin = child.stdin.as_mut().unwrap();
        writeln!(stdin, "{ALICE}\n{PIN}").unwrap();
    }
    for _ in 0..100 {
        if wardkey_agent::broker::fetch_session(&socket).await.is_ok_and(|s| s.state == WorkstationState::Active) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let refused = token_as(65534, &config, &socket);
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(said.contains("uid 65534") && said.contains("not allowed") && said.contains("broker_allow"), "{said}");
    assert!(refused.stdout.is_empty(), "no token for a process of another user");

    // Allowed, but with no lock screen of its own on this PC (a background
    // login): it acts for no one.
    let elsewhere = token_as(1, &config, &socket);
    let said = String::from_utf8_lossy(&elsewhere.stderr);
    assert!(!elsewhere.status.success() && said.contains("no Wardkey lock screen open"), "{said}");

    // Its lock screen attaches (the desk's subscription, held open as user
    // daemon): now it is the user at the screen and gets the token.
    let mut desk = Command::new("curl")
        .args(["-sN", "--unix-socket"])
        .arg(&socket)
        .arg("http://agent/v1/desk/events")
        .uid(1)
        .gid(1)
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl");
    {
        use std::io::Read;
        let mut first = [0u8; 5];
        desk.stdout.as_mut().unwrap().read_exact(&mut first).unwrap();
        assert_eq!(&first, b"data:", "the desk's first screen");
    }
    let allowed = token_as(1, &config, &socket);
    let _ = desk.kill();
    let _ = desk.wait();
    assert!(allowed.status.success(), "{}", String::from_utf8_lossy(&allowed.stderr));
    let token: serde_json::Value = serde_json::from_slice(&allowed.stdout).unwrap();
    assert!(token["access_token"].as_str().is_some_and(|t| !t.is_empty()));

    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(dir.path().join("agent.log")).unwrap();
    assert!(log.contains("refused a broker caller") && log.contains("uid 65534"), "the refusal is logged:\n{log}");
}

/// The per-user broker of the desk, with `desk_allow` naming one program:
/// the desktop user's other programs are refused (the socket itself is
/// theirs), the named one gets a token.
#[tokio::test(flavor = "multi_thread")]
async fn the_per_user_broker_serves_only_the_programs_it_names() {
    let app = spawn_app().await;
    clinician(&app, "alice", "Dr Alice Okafor", ALICE).await;
    app.add_client("epr", Auth::Secret, &[GrantType::TokenExchange], SigningAlg::ES256).await;
    let x = Xvfb::start();
    let dir = tempfile::tempdir().unwrap();
    let agent_bin = binary("wardkey-agent");
    let mut pc = WardPc::start(&app, dir.path(), &x).await;
    // Restart the desk with an allow-list naming the agent binary (its
    // `token` command stands in for the EPR program).
    let _ = pc.desk.kill();
    let _ = pc.desk.wait();
    let config = dir.path().join("agent.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!("desk_allow = [\"exe:{}\"]\n", agent_bin.canonicalize().unwrap().display()));
    text.push_str("desk_session_lock = true\n");
    std::fs::write(&config, text).unwrap();
    // logind's command, recording what the lock screen asks of it.
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let calls = dir.path().join("loginctl.calls");
    std::fs::write(bin.join("loginctl"), format!("#!/bin/sh\necho \"$@\" >> {}\n", calls.display())).unwrap();
    std::fs::set_permissions(bin.join("loginctl"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let broker = dir.path().join("user/broker.sock");
    pc.desk = Command::new(binary("wardkey-desk"))
        .args(["--config", config.to_str().unwrap(), "--broker"])
        .arg(format!("unix:{}", broker.display()))
        .env("DISPLAY", x.display())
        .env("GSK_RENDERER", "cairo")
        .env("GTK_A11Y", "none")
        .env("PATH", path)
        .stderr(std::fs::File::create(dir.path().join("desk.log")).unwrap())
        .spawn()
        .unwrap();
    wait_until("the per-user broker", || broker.exists()).await;
    let mode = std::fs::metadata(&broker).unwrap().permissions();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600);
    let dir_mode = std::fs::metadata(broker.parent().unwrap()).unwrap().permissions();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&dir_mode) & 0o777, 0o700);
    pc.tap(ALICE);
    pc.wait_screen("the PIN pad", |s| s.state == WorkstationState::PinRequired).await;
    type_pin(&x);
    pc.wait_screen("the desktop", |s| s.desktop_shown).await;
    wait_until("logind told", || std::fs::read_to_string(&calls).is_ok_and(|c| c.contains("unlock-session"))).await;
    assert_eq!(std::fs::read_to_string(&calls).unwrap(), "lock-session\nunlock-session\n");

    // This test process is the desktop user, but not the named program.
    let (status, body) =
        wardkey_agent::broker::http_request(&broker, "POST", "/v1/token", br#"{"client_id":"epr"}"#).await.unwrap();
    let said = String::from_utf8_lossy(&body);
    assert_eq!(status, 403, "{said}");
    assert!(said.contains("desk_allow") && !said.contains("access_token"), "{said}");

    let out = Command::new(&agent_bin)
        .args(["--config", config.to_str().unwrap(), "token", "epr", "--access-token", "--broker"])
        .arg(format!("unix:{}", broker.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!out.stdout.is_empty());
}

/// A lock screen that cannot start (here: a config with a typo) still
/// covers the screen and says why: it never leaves the desktop open.
#[tokio::test(flavor = "multi_thread")]
async fn a_lock_screen_that_cannot_start_still_covers_the_desktop() {
    let x = Xvfb::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, "brokr = \"unix:/run/wardkey-agent/agent.sock\"\n").unwrap();
    let mut desk = Command::new(binary("wardkey-desk"))
        .args(["--config", config.to_str().unwrap(), "--broker"])
        .arg(format!("unix:{}", dir.path().join("user/broker.sock").display()))
        .env("DISPLAY", x.display())
        .env("GSK_RENDERER", "cairo")
        .env("GTK_A11Y", "none")
        .stderr(std::fs::File::create(dir.path().join("desk.log")).unwrap())
        .spawn()
        .unwrap();
    wait_until("the lock screen to cover the screen", || covered(&x)).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    shot(&x, "lock-9-cannot-start");
    let still_running = desk.try_wait().unwrap().is_none();
    let _ = desk.kill();
    let _ = desk.wait();
    assert!(still_running, "it stays up, covering the desktop");
    let log = std::fs::read_to_string(dir.path().join("desk.log")).unwrap();
    assert!(log.contains("brokr"), "the log names the bad key:\n{log}");
}
