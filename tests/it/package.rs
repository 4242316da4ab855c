//! The agent's Debian package (`cargo deb -p wardkey-agent`), built from the
//! binaries this test run compiled, installed into a scratch root, and its
//! unit checked as a desktop team's tooling would: `systemd-analyze verify`
//! and `systemd-analyze security` (offline), which must stay at or under
//! 3.0 ("OK").

use std::path::Path;
use std::process::Command;

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

#[test]
fn the_agent_package_installs_and_its_unit_is_hardened() {
    let has_cargo_deb = Command::new("cargo").args(["deb", "--version"]).output().is_ok_and(|o| o.status.success());
    if !has_cargo_deb {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(!ci, "cargo-deb is missing on this CI runner: ./scripts/test installs it");
        eprintln!("skipped: cargo-deb is not installed (./scripts/test installs it)");
        return;
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"));
    let work = tempfile::tempdir().unwrap();
    let deb = work.path().join("wardkey-agent.deb");
    // The debug binaries this run built: the package's layout, scripts and
    // unit are what is tested here; `cargo deb -p wardkey-agent` builds the
    // release package.
    run(Command::new("cargo")
        .current_dir(workspace)
        .args(["deb", "-p", "wardkey-agent", "--no-build", "--profile", "dev", "--fast", "-o"])
        .arg(&deb));

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

    let units = root.join("usr/lib/systemd/system");
    for unit in BASE_UNITS {
        let host = Path::new("/usr/lib/systemd/system").join(unit);
        if host.exists() {
            std::fs::copy(&host, units.join(unit)).unwrap();
        }
    }
    let verify = run(Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .arg("wardkey-agent.service"));
    assert!(verify.trim().is_empty(), "systemd-analyze verify has remarks:\n{verify}");
    let security = run(Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(format!("--root={}", root.display()))
        .arg(format!("--threshold={MAX_EXPOSURE_TENTHS}"))
        .arg("wardkey-agent.service"));
    let score = security
        .lines()
        .find_map(|l| l.split("wardkey-agent.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<f32>().ok())
        .unwrap_or_else(|| panic!("no overall exposure in:\n{security}"));
    assert!(score <= 3.0, "exposure {score} > 3.0:\n{security}");
    // The README records the figure.
    let readme = std::fs::read_to_string(workspace.join("README.md")).unwrap();
    assert!(
        readme.contains(&format!("systemd-analyze security` rates it **{score:.1}")),
        "README.md must record the unit's exposure, {score:.1}"
    );
}
