//! `setup`: prepare a running server for `shift-change` through the admin
//! CLI, the way IT would, and write the fixture.
//!
//! It runs `wardkey` (the admin commands work on the server's store, so run
//! setup where the server's configuration applies, or pass `--config` and
//! `--env`): W workstations (each gets an enrolment code, then this tool
//! makes its Ed25519 key and enrols it at `POST /tap/enrol` as the agent
//! would), C clinicians with a badge and a PIN, and K EPR clients allowed
//! token exchange. Secrets go to the CLI on stdin, never in arguments.
//! Every name starts with one prefix (random unless given) so a second
//! setup never collides with the first and a test directory can be told
//! apart from real staff.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::Rng;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::fixture::{Fixture, FixtureClinician, FixtureWorkstation, SCHEMA};
use crate::jws::{generate_key, unix_now};
use crate::progress::Progress;
use crate::wire::{Wardkey, http_client};

/// What to create, and how to reach the admin CLI.
#[derive(Debug, Clone)]
pub struct SetupOptions {
    /// The running server (for enrolment and discovery).
    pub server: String,
    /// Where to write the fixture.
    pub fixture: PathBuf,
    /// The `wardkey` binary.
    pub wardkey: PathBuf,
    /// `--config` for every admin command.
    pub config: Option<PathBuf>,
    /// Extra environment for every admin command.
    pub env: Vec<(String, String)>,
    /// Workstations to create.
    pub workstations: usize,
    /// Clinicians to create.
    pub clinicians: usize,
    /// EPR clients to create.
    pub clients: usize,
    /// Wards to spread them over.
    pub wards: usize,
    /// Name prefix.
    pub prefix: Option<String>,
    /// Admin commands run at once.
    pub jobs: usize,
    /// No progress bar.
    pub quiet: bool,
}

/// Split `KEY=VALUE`.
pub fn parse_env(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{text:?}: write it as KEY=VALUE")),
    }
}

/// A random badge UID as an NFC reader gives it: 7 bytes, hex.
pub fn random_badge(rng: &mut impl Rng) -> String {
    (0..7).map(|_| format!("{:02X}", rng.random::<u8>())).collect()
}

/// A random 6-digit PIN.
/// Never one the server refuses as guessable (one digit repeated, a run up
/// or down): 30 in a million draws, enough to break a big setup now and then.
pub fn random_pin(rng: &mut impl Rng) -> String {
    loop {
        let pin: Vec<u8> = (0..6).map(|_| rng.random_range(0..10u8)).collect();
        let steps: Vec<u8> = pin.windows(2).map(|w| (w[1] + 10 - w[0]) % 10).collect();
        if !(steps.iter().all(|&s| s == steps[0]) && matches!(steps[0], 0 | 1 | 9)) {
            return pin.iter().map(|d| char::from(b'0' + d)).collect();
        }
    }
}

struct Admin {
    options: SetupOptions,
}

impl Admin {
    /// Run `wardkey ARGS --json`, with `secret` as the first line of stdin.
    async fn run(&self, args: &[&str], secret: Option<&str>) -> anyhow::Result<serde_json::Value> {
        let shown = format!("wardkey {}", args.join(" "));
        let mut command = tokio::process::Command::new(&self.options.wardkey);
        if let Some(config) = &self.options.config {
            command.arg("--config").arg(config);
        }
        command
            .args(args)
            .arg("--json")
            .envs(self.options.env.iter().map(|(k, v)| (k, v)))
            .stdin(if secret.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {} (set --wardkey to the admin CLI)", self.options.wardkey.display()))?;
        if let (Some(secret), Some(mut stdin)) = (secret, child.stdin.take()) {
            stdin.write_all(format!("{secret}\n").as_bytes()).await.with_context(|| format!("{shown}: stdin"))?;
        }
        let output = child.wait_with_output().await.with_context(|| format!("running {shown}"))?;
        if !output.status.success() {
            bail!("{shown} failed: {}", String::from_utf8_lossy(&output.stderr).trim());
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        let last = stdout.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
        serde_json::from_str(last).with_context(|| format!("{shown} printed no JSON: {stdout:?}"))
    }
}

#[derive(Deserialize)]
struct Enrolment {
    code: String,
    workstation_id: String,
}

/// Create everything and write the fixture.
pub async fn run(options: SetupOptions) -> anyhow::Result<Fixture> {
    if options.workstations == 0 || options.clinicians == 0 || options.wards == 0 {
        bail!("--workstations, --clinicians and --wards must be at least 1");
    }
    let http = http_client(std::time::Duration::from_secs(30), options.jobs)?;
    let server = Arc::new(Wardkey::connect(http, &options.server).await?);
    let prefix =
        options.prefix.clone().unwrap_or_else(|| format!("bench-{:06x}", rand::rng().random::<u32>() & 0xFF_FFFF));
    let wards: Vec<String> = (1..=options.wards).map(|n| format!("{prefix} ward {n}")).collect();
    let steps = (options.workstations + 3 * options.clinicians + options.clients) as u64;
    let progress = Progress::steps(steps, options.quiet);
    progress.phase("setup");
    progress.println(&format!(
        "creating {prefix}-*: {} workstations, {} clinicians, {} EPR clients",
        options.workstations, options.clinicians, options.clients
    ));
    let admin = Arc::new(Admin { options: options.clone() });
    let limit = Arc::new(Semaphore::new(options.jobs.max(1)));

    // EPR clients first: quick, and a wrong --wardkey or --config shows at
    // once.
    let mut clients = Vec::new();
    for k in 1..=options.clients {
        let id = format!("{prefix}-epr{k}");
        admin.run(&["client", "add", &id, "--grant-type", "token_exchange"], None).await?;
        progress.step(&id);
        clients.push(id);
    }

    let mut tasks = JoinSet::new();
    for i in 0..options.workstations {
        let (admin, server, limit, progress) = (admin.clone(), server.clone(), limit.clone(), progress.clone());
        let name = format!("{prefix}-pc{:03}", i + 1);
        let ward = wards[i % wards.len()].clone();
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await?;
            let created = admin.run(&["workstation", "enrol", &name, "--ward", &ward], None).await?;
            let enrolment: Enrolment = serde_json::from_value(created)
                .with_context(|| format!("workstation enrol {name}: unexpected JSON"))?;
            let (pkcs8, public_key) = generate_key()?;
            let enrolled = server
                .enrol(&enrolment.code, &public_key)
                .await
                .map_err(|e| anyhow::anyhow!("POST /tap/enrol for {name}: {e}"))?;
            if enrolled.workstation_id != enrolment.workstation_id {
                bail!("POST /tap/enrol for {name} enrolled {} instead", enrolled.workstation_id);
            }
            progress.step(&name);
            Ok::<_, anyhow::Error>((
                i,
                FixtureWorkstation { name, ward, id: enrolled.workstation_id, pkcs8: STANDARD.encode(pkcs8) },
            ))
        });
    }
    let mut workstations = collect(&mut tasks).await?;
    workstations.sort_by_key(|(i, _)| *i);

    let mut tasks = JoinSet::new();
    for i in 0..options.clinicians {
        let (admin, limit, progress) = (admin.clone(), limit.clone(), progress.clone());
        let username = format!("{prefix}-n{:04}", i + 1);
        let ward = wards[i % wards.len()].clone();
        let (badge, pin) = {
            let mut rng = rand::rng();
            (random_badge(&mut rng), random_pin(&mut rng))
        };
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await?;
            let display = format!("Bench clinician {}", i + 1);
            admin.run(&["user", "add", &username, "--name", &display], None).await?;
            progress.step(&username);
            admin.run(&["badge", "enrol", &username, "--uid-stdin"], Some(&badge)).await?;
            progress.step(&username);
            admin.run(&["user", "set-pin", &username, "--pin-stdin"], Some(&pin)).await?;
            progress.step(&username);
            Ok::<_, anyhow::Error>((i, FixtureClinician { username, ward, badge, pin }))
        });
    }
    let mut clinicians = collect(&mut tasks).await?;
    clinicians.sort_by_key(|(i, _)| *i);
    progress.finish();

    let fixture = Fixture {
        schema: SCHEMA.into(),
        server: server.base().to_string(),
        issuer: server.issuer.clone(),
        created_at: unix_now(),
        workstations: workstations.into_iter().map(|(_, w)| w).collect(),
        clinicians: clinicians.into_iter().map(|(_, c)| c).collect(),
        clients,
    };
    fixture.save(&options.fixture)?;
    Ok(fixture)
}

async fn collect<T: 'static>(tasks: &mut JoinSet<anyhow::Result<T>>) -> anyhow::Result<Vec<T>> {
    let mut out = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined.context("a setup task failed")? {
            Ok(item) => out.push(item),
            Err(e) => {
                // Stop the rest: one failure usually means all would fail.
                tasks.abort_all();
                return Err(e);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_badges_pins_and_env() {
        let mut rng = rand::rng();
        let badge = random_badge(&mut rng);
        assert_eq!(badge.len(), 14);
        assert!(badge.chars().all(|c| c.is_ascii_hexdigit()));
        let pin = random_pin(&mut rng);
        assert_eq!(pin.len(), 6);
        assert!(pin.chars().all(|c| c.is_ascii_digit()));
        assert_eq!(parse_env("A=b=c").unwrap(), ("A".into(), "b=c".into()));
        assert!(parse_env("=x").is_err());
        assert!(parse_env("novalue").is_err());
    }
}
