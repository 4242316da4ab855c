//! The Debian packages, the agent's (`cargo deb -p wardkey-agent`) and the
//! server's (`cargo deb -p wardkey`), built from the binaries this test run
//! compiled, installed into a scratch root, and their units checked as a
//! trust's tooling would: `systemd-analyze verify` and `systemd-analyze
//! security` (offline), which must stay at or under 3.0 ("OK"). The server's
//! package is also checked by lintian and its binary run on its packaged
//! configuration.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The exposure `systemd-analyze security` may report, in tenths.
const MAX_EXPOSURE_TENTHS: u32 = 30;

/// Base units every Debian system has, which the unit's dependencies name;
/// copied from this machine into the scratch root so that `verify` can
/// resolve them.
const BASE_UNITS: &[&str] = &[
    "sysinit.target",
    "basic.target",
    "multi-user.target",
    "network-online.target",
    "shutdown.target",
    "sockets.target",
    "local-fs.target",
    "paths.target",
    "timers.target",
    "slices.target",
    "swap.target",
];

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

/// Whether `program args…` runs. Missing outside CI, the test is skipped
/// (false); on a CI runner (CI=true) a missing tool fails it.
fn have_tool(program: &str, args: &[&str], name: &str) -> bool {
    if Command::new(program).args(args).output().is_ok_and(|o| o.status.success()) {
        return true;
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    assert!(!ci, "{name} is missing on this CI runner: ./scripts/test installs it");
    eprintln!("skipped: {name} is not installed (./scripts/test installs it)");
    false
}

/// `cargo deb -p PACKAGE` on the debug binaries this run built, into `dir`.
/// The package's layout, scripts and unit are what is tested here;
/// `./scripts/package` builds the release packages.
fn build_deb(workspace: &Path, package: &str, dir: &Path) -> std::path::PathBuf {
    let deb = dir.join(format!("{package}.deb"));
    run(Command::new("cargo")
        .current_dir(workspace)
        .args(["deb", "-p", package, "--no-build", "--profile", "dev", "--fast", "-o"])
        .arg(&deb));
    deb
}

/// `systemd-analyze verify` (no remarks) and offline `security` on `unit`
/// installed under `root`: its overall exposure, at most
/// [`MAX_EXPOSURE_TENTHS`].
fn unit_exposure(root: &Path, unit: &str) -> f32 {
    let units = root.join("usr/lib/systemd/system");
    for base in BASE_UNITS {
        let host = Path::new("/usr/lib/systemd/system").join(base);
        if host.exists() {
            std::fs::copy(&host, units.join(base)).unwrap();
        }
    }
    let verify = run(Command::new("systemd-analyze").arg("verify").arg(format!("--root={}", root.display())).arg(unit));
    assert!(verify.trim().is_empty(), "systemd-analyze verify has remarks:\n{verify}");
    let security = run(Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(format!("--root={}", root.display()))
        .arg(format!("--threshold={MAX_EXPOSURE_TENTHS}"))
        .arg(unit));
    let score = security
        .lines()
        .find_map(|l| l.split(&format!("{unit}: ")).nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<f32>().ok())
        .unwrap_or_else(|| panic!("no overall exposure in:\n{security}"));
    assert!(score <= MAX_EXPOSURE_TENTHS as f32 / 10.0, "exposure {score} of {unit} > 3.0:\n{security}");
    score
}

#[test]
fn the_agent_package_installs_and_its_unit_is_hardened() {
    if !have_tool("cargo", &["deb", "--version"], "cargo-deb") {
        return;
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"));
    let work = tempfile::tempdir().unwrap();
    let deb = build_deb(workspace, "wardkey-agent", work.path());

    let control = run(Command::new("dpkg-deb").arg("--info").arg(&deb));
    for want in ["Package: wardkey-agent", "pcscd", "libgtk-4-1", "adduser", "postinst"] {
        assert!(control.contains(want), "control lacks {want}:\n{control}");
    }
    let root = work.path().join("root");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    for file in [
        "usr/bin/wardkey-agent",
        "usr/bin/wardkey-desk",
        "etc/wardkey/agent.toml",
        "etc/xdg/autostart/wardkey-desk.desktop",
        "usr/lib/systemd/system/wardkey-agent.service",
        "usr/share/polkit-1/rules.d/60-wardkey-agent-pcscd.rules",
    ] {
        assert!(root.join(file).exists(), "the package installs {file}");
    }
    // The packaged agent.toml is valid: the agent reads it (the group it
    // allows exists only once postinst ran, so check its shape alone).
    let packaged = std::fs::read_to_string(root.join("etc/wardkey/agent.toml")).unwrap();
    let config = wardkey_agent::AgentConfig::parse(&packaged).expect("the packaged agent.toml parses");
    assert_eq!(config.reader, wardkey_agent::ReaderSpec::Pcsc, "PC/SC by default in the package");
    assert_eq!(config.broker_allow, ["group:wardkey-desk"]);
    // The maintainer script is valid shell.
    let scripts = work.path().join("control");
    run(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&scripts));
    run(Command::new("sh").arg("-n").arg(scripts.join("postinst")));

    let score = unit_exposure(&root, "wardkey-agent.service");
    // The README records the figure.
    let readme = std::fs::read_to_string(workspace.join("README.md")).unwrap();
    assert!(
        readme.contains(&format!("systemd-analyze security` rates it **{score:.1}")),
        "README.md must record the unit's exposure, {score:.1}"
    );
}

/// A `wardkey serve` started from the package's binary: SIGTERM, then
/// SIGKILL if it lingers, when dropped (a failed assertion included).
struct Serving(Child);

impl Serving {
    /// SIGTERM and the exit status, within the unit's TimeoutStopSec (20 s).
    fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        for _ in 0..200 {
            if let Ok(Some(status)) = self.0.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        if self.0.try_wait().is_ok_and(|s| s.is_none()) && self.terminate().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn the_server_package_installs_runs_and_its_unit_is_hardened() {
    if !have_tool("cargo", &["deb", "--version"], "cargo-deb") || !have_tool("lintian", &["--version"], "lintian") {
        return;
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"));
    let work = tempfile::tempdir().unwrap();
    let deb = build_deb(workspace, "wardkey", work.path());

    let info = run(Command::new("dpkg-deb").arg("--info").arg(&deb));
    assert!(info.lines().any(|l| l.trim() == "Package: wardkey"), "not the server's package:\n{info}");
    assert!(
        info.lines().any(|l| l.trim().starts_with("Depends:") && l.contains("adduser")),
        "postinst needs adduser:\n{info}"
    );
    for member in ["postinst", "conffiles"] {
        assert!(info.contains(member), "control lacks {member}:\n{info}");
    }

    // What is installed where, owned by root, with which mode.
    let listing = run(Command::new("dpkg-deb").arg("-c").arg(&deb));
    let root = work.path().join("root");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    for (file, mode) in [
        ("usr/bin/wardkey", "-rwxr-xr-x"),
        ("etc/wardkey/wardkey.toml", "-rw-r--r--"),
        ("usr/lib/systemd/system/wardkey.service", "-rw-r--r--"),
        ("usr/share/doc/wardkey/wardkey.toml.example", "-rw-r--r--"),
        ("usr/share/doc/wardkey/copyright", "-rw-r--r--"),
        ("usr/share/doc/wardkey/changelog.Debian.gz", "-rw-r--r--"),
    ] {
        let line = listing
            .lines()
            .find(|l| l.ends_with(&format!(" ./{file}")))
            .unwrap_or_else(|| panic!("the package lacks {file}:\n{listing}"));
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields[0], mode, "{file}: {line}");
        assert!(fields[1] == "0/0" || fields[1] == "root/root", "{file} is root's: {line}");
        assert!(root.join(file).is_file(), "{file} extracts");
    }
    // The agent's unit sits in the same source directory: not this package's.
    assert!(!root.join("usr/lib/systemd/system/wardkey-agent.service").exists());
    // The store directory is postinst's to make, for a user dpkg cannot name.
    assert!(!root.join("var").exists(), "the package ships nothing under /var:\n{listing}");

    // The packaged configuration is valid and names the store postinst
    // creates; the documented example is the full config/wardkey.toml.
    let config_file = root.join("etc/wardkey/wardkey.toml");
    let packaged = std::fs::read_to_string(&config_file).unwrap();
    let settings = wardkey_idp::Settings::load_from(Some(&config_file), true, std::iter::empty())
        .unwrap_or_else(|e| panic!("the packaged wardkey.toml is refused: {e}"));
    assert_eq!(settings.server.listen, "127.0.0.1:8080");
    assert_eq!(settings.store.url, "sqlite:///var/lib/wardkey/wardkey.db");
    assert!(packaged.contains("CHANGE THIS"), "public_url must say to change it");
    assert!(packaged.contains("\nurl = \"sqlite:///var/lib/wardkey/wardkey.db\"\n"), "postinst looks for this line");
    assert_eq!(
        std::fs::read(root.join("usr/share/doc/wardkey/wardkey.toml.example")).unwrap(),
        std::fs::read(workspace.join("config/wardkey.toml")).unwrap()
    );

    // Maintainer scripts: valid shell; postinst makes the user, the store
    // directory and the store, enables the unit and starts nothing (an
    // upgrade restarts a server already running).
    let control = work.path().join("control");
    run(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control));
    for script in ["postinst", "prerm", "postrm"] {
        if control.join(script).exists() {
            run(Command::new("sh").arg("-n").arg(control.join(script)));
        }
    }
    let conffiles = std::fs::read_to_string(control.join("conffiles")).unwrap();
    assert!(conffiles.lines().any(|l| l == "/etc/wardkey/wardkey.toml"), "conffiles:\n{conffiles}");
    let postinst = std::fs::read_to_string(control.join("postinst")).unwrap();
    for want in [
        "adduser --system --group",
        "install -d -m 0700 -o wardkey -g wardkey /var/lib/wardkey",
        "runuser -u wardkey -- /usr/bin/wardkey --config \"$config\" store init",
        "deb-systemd-helper enable wardkey.service",
    ] {
        assert!(postinst.contains(want), "postinst lacks {want}:\n{postinst}");
    }
    assert!(
        postinst.lines().filter(|l| l.contains("deb-systemd-invoke")).all(|l| l.contains("try-restart")),
        "postinst must not start the unit:\n{postinst}"
    );

    // The unit: no remarks, exposure at most 3.0, and the README's figure.
    let score = unit_exposure(&root, "wardkey.service");
    let readme = std::fs::read_to_string(workspace.join("README.md")).unwrap();
    assert!(
        readme.contains(&format!("systemd-analyze security wardkey.service` rates it **{score:.1}")),
        "README.md must record the server unit's exposure, {score:.1}"
    );

    // lintian, as a Debian archive would check the package: no errors.
    // (Its warnings are printed: the changelog closes no Debian bug and
    // there is no man page.)
    let out = Command::new("lintian").args(["--tag-display-limit", "0"]).arg(&deb).output().unwrap();
    let lintian = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    for line in lintian.lines().filter(|l| !l.starts_with("E: ")) {
        eprintln!("lintian: {line}");
    }
    assert!(!lintian.lines().any(|l| l.starts_with("E: ")), "lintian errors:\n{lintian}");
    assert!(out.status.success(), "lintian failed:\n{lintian}");

    // The packaged binary on the packaged configuration, with only the store
    // and the address moved into a scratch directory: `store init` as
    // postinst runs it, then `serve` as the unit does, answering discovery.
    wardkey_testsupport::install_crypto();
    let data = tempfile::tempdir().unwrap();
    let store = data.path().join("wardkey.db");
    let port = wardkey_testsupport::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let wardkey = |args: &[&str]| {
        let mut cmd = Command::new(root.join("usr/bin/wardkey"));
        cmd.arg("--config")
            .arg(&config_file)
            .args(args)
            .current_dir(data.path())
            .env("WARDKEY_STORE__URL", format!("sqlite://{}", store.display()))
            .env("WARDKEY_SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .env("WARDKEY_SERVER__PUBLIC_URL", &base)
            .env_remove("RUST_LOG");
        cmd
    };
    run(&mut wardkey(&["store", "init"]));
    assert!(store.exists(), "store init creates {}", store.display());
    let log_path = data.path().join("serve.log");
    let mut server = Serving(
        wardkey(&["serve"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .expect("start the packaged wardkey"),
    );
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let discovery: serde_json::Value = runtime.block_on(async {
        let http = reqwest::Client::new();
        let mut up = false;
        for _ in 0..100 {
            if let Ok(Some(status)) = server.0.try_wait() {
                panic!("the packaged wardkey serve exited ({status}):\n{}", log());
            }
            if http.get(format!("{base}/healthz")).send().await.is_ok_and(|r| r.status() == 200) {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(up, "the packaged wardkey serve did not come up at {base}:\n{}", log());
        let r = http.get(format!("{base}/.well-known/openid-configuration")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    });
    assert_eq!(discovery["issuer"], base.as_str(), "{discovery}");
    let status = server.terminate().expect("the packaged wardkey serve stops on SIGTERM");
    assert!(status.success(), "wardkey serve exited {status}:\n{}", log());
}
