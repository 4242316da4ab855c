//! Figures for BENCHMARKS.md: a directory sync of a trust-sized directory
//! (15,000 users in 200 groups, in a real OpenLDAP `slapd` laid out like
//! Active Directory) into SQLite or PostgreSQL, and a password check
//! through the directory next to a local argon2id check.
//!
//! `directory_bench sync sqlite|postgres [USERS] [GROUPS]` and
//! `directory_bench signin [ROUNDS]`; `scripts/bench-directory` runs all
//! three from a release build. slapd and PostgreSQL run as child
//! processes, so the memory figures are the sync's own.

use std::time::{Duration, Instant};

use wardkey_directory::{LdapDirectory, LdapSource, Secret, sync};
use wardkey_testsupport::postgres::TestPostgres;
use wardkey_testsupport::slapd::Slapd;

fn source(slapd: &Slapd, groups: usize) -> LdapSource {
    LdapSource {
        name: "ad".into(),
        url: slapd.ldaps_url(),
        ca_file: Some(slapd.ca_path().to_path_buf()),
        bind_dn: Slapd::SERVICE_DN.into(),
        bind_password: Some(Secret(Slapd::SERVICE_PASSWORD.into())),
        base_dn: Slapd::STAFF.into(),
        user_filter: "(objectClass=inetOrgPerson)".into(),
        id_attribute: "entryUUID".into(),
        roles: (0..groups).map(|j| (Slapd::group_dn(&Slapd::population_group(j)), format!("R{}", 8000 + j))).collect(),
        ..LdapSource::default()
    }
}

/// `VmHWM` (peak) and `VmRSS` of this process, in MiB.
fn memory() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kib| kib.parse::<f64>().ok())
            .map_or("?".to_string(), |kib| format!("{:.1}", kib / 1024.0))
    };
    format!("peak {} MiB, now {} MiB", field("VmHWM:"), field("VmRSS:"))
}

fn percentiles(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |p: f64| samples[((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name}: n={} p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        samples.len(),
        ms(at(0.50)),
        ms(at(0.90)),
        ms(at(0.99)),
        ms(at(1.0))
    );
}

async fn run_sync(engine: &str, users: usize, groups: usize) {
    let started = Instant::now();
    let slapd = Slapd::start_with_population(users, groups);
    println!("directory: {users} users in {groups} groups loaded in {:.1} s", started.elapsed().as_secs_f64());
    let dir = tempfile::tempdir().expect("temp dir");
    let postgres;
    let url = match engine {
        "sqlite" => format!("sqlite://{}", dir.path().join("wardkey.db").display()),
        "postgres" => {
            postgres = TestPostgres::start();
            postgres.url().to_string()
        }
        other => panic!("unknown engine {other:?}: sqlite or postgres"),
    };
    let store = wardkey_store::open(&url).await.expect("open the store");
    let directory = LdapDirectory::new(source(&slapd, groups)).expect("source");
    let settings = wardkey_directory::DirectorySettings::default();
    println!("before: {}", memory());
    let report = |step: &str, r: &wardkey_directory::SyncReport| {
        println!(
            "{engine} {step}: {:.2} s, {} LDAP round trips, read {}, created {}, updated {}, disabled {}, unchanged {}; {}",
            r.seconds,
            r.round_trips,
            r.read,
            r.created,
            r.updated,
            r.disabled,
            r.unchanged,
            memory()
        );
    };
    let full = sync::run(&directory, store.as_ref(), &settings, 1, false, false).await.expect("full sync");
    report("full sync (first import)", &full);
    let again = sync::run(&directory, store.as_ref(), &settings, 2, false, false).await.expect("repeat sync");
    report("repeat sync, nothing changed", &again);
    let mut ldif = String::new();
    for i in 0..50 {
        let dn = Slapd::user_dn(&Slapd::population_uid(i * 97));
        if i < 40 {
            ldif.push_str(&format!("dn: {dn}\nchangetype: modify\nreplace: displayName\ndisplayName: Renamed {i}\n\n"));
        } else {
            ldif.push_str(&format!(
                "dn: {dn}\nchangetype: modify\nreplace: userAccountControl\nuserAccountControl: 514\n\n"
            ));
        }
    }
    slapd.modify_ldif(&ldif);
    let changed = sync::run(&directory, store.as_ref(), &settings, 3, false, false).await.expect("incremental sync");
    report("sync after 50 changes (40 renamed, 10 disabled)", &changed);
}

async fn run_signin(rounds: usize) {
    let users = 15_000;
    let slapd = Slapd::start_with_population(users, 200);
    let directory = LdapDirectory::new(source(&slapd, 200)).expect("source");
    let mut right = Vec::with_capacity(rounds);
    for n in 0..rounds {
        let i = (n * 7919) % users;
        let uid = Slapd::population_uid(i);
        let started = Instant::now();
        let check = directory.verify_password(&uid, &format!("pw-{uid}")).await.expect("directory answers");
        right.push(started.elapsed());
        assert_eq!(check, wardkey_directory::PasswordCheck::Right, "{uid}");
    }
    percentiles("LDAPS password check, right password (search + bind, new TLS connection)", right);
    let mut wrong = Vec::new();
    for n in 0..rounds / 3 {
        let uid = Slapd::population_uid(n);
        let started = Instant::now();
        directory.verify_password(&uid, "not the password").await.expect("directory answers");
        wrong.push(started.elapsed());
    }
    percentiles("LDAPS password check, wrong password", wrong);
    let params = wardkey_core::password::Argon2Params::default();
    let hash = wardkey_core::password::hash(&params, "correct horse battery").expect("hash");
    let mut local = Vec::new();
    for _ in 0..rounds / 3 {
        let started = Instant::now();
        assert!(wardkey_core::password::verify(&hash, "correct horse battery"));
        local.push(started.elapsed());
    }
    percentiles("local argon2id check (m=19 MiB, t=2, p=1)", local);
}

#[tokio::main]
async fn main() {
    wardkey_testsupport::install_crypto();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| c.lines().find(|l| l.starts_with("model name")).map(|l| l.to_string()))
        .unwrap_or_default();
    println!("{cpu}");
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize, default: usize| args.get(i).map_or(default, |a| a.parse().expect("a number"));
    match args.first().map(String::as_str) {
        Some("sync") => run_sync(args.get(1).map_or("sqlite", String::as_str), number(2, 15_000), number(3, 200)).await,
        Some("signin") => run_signin(number(1, 300)).await,
        _ => eprintln!("usage: directory_bench sync sqlite|postgres [USERS] [GROUPS] | signin [ROUNDS]"),
    }
}
