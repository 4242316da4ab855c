//! Figures for BENCHMARKS.md: a directory sync of a trust-sized directory
//! (15,000 users in 200 groups, in a real OpenLDAP `slapd` laid out like
//! Active Directory, over LDAPS) into SQLite or PostgreSQL, and a password
//! check through the directory next to a local argon2id check.
//!
//! ```text
//! directory_bench sync sqlite|postgres [USERS] [GROUPS]
//! directory_bench signin [ROUNDS]
//! ```
//!
//! `scripts/bench-directory` runs all three from a release build. slapd and
//! PostgreSQL run as child processes, so the memory figures read from
//! `/proc/self/status` are the syncing client's own.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use wardkey_core::password::{self, Argon2Params};
use wardkey_directory::{DirectorySettings, LdapDirectory, LdapSource, PasswordCheck, Secret, SyncReport, sync};
use wardkey_testsupport::postgres::TestPostgres;
use wardkey_testsupport::slapd::Slapd;

const USAGE: &str = "usage: directory_bench sync sqlite|postgres [USERS=15000] [GROUPS=200]\n       \
                     directory_bench signin [ROUNDS=300]";

/// Users changed in the directory between the second and third sync.
const RENAMED: usize = 40;
const DISABLED: usize = 10;

/// The source as an operator would write it for this directory. Every
/// attribute is spelled out, though most are the defaults, so the figures
/// say exactly what was read: seven attributes per entry, 500 a page.
fn source(slapd: &Slapd, groups: usize) -> LdapSource {
    LdapSource {
        name: "ad".into(),
        url: slapd.ldaps_url(),
        ca_file: Some(slapd.ca_path().to_path_buf()),
        bind_dn: Slapd::SERVICE_DN.into(),
        bind_password: Some(Secret(Slapd::SERVICE_PASSWORD.into())),
        base_dn: Slapd::STAFF.into(),
        user_filter: "(objectClass=inetOrgPerson)".into(),
        username_attribute: "sAMAccountName".into(),
        id_attribute: "entryUUID".into(),
        name_attribute: "displayName".into(),
        email_attribute: "mail".into(),
        employee_number_attribute: "employeeNumber".into(),
        disabled_attribute: "userAccountControl".into(),
        group_attribute: "memberOf".into(),
        roles: (0..groups).map(|j| (Slapd::group_dn(&Slapd::population_group(j)), role(j))).collect(),
        page_size: 500,
        ..LdapSource::default()
    }
}

/// The role code group `j` maps to.
fn role(j: usize) -> String {
    format!("R{}", 8000 + j)
}

/// `VmHWM` (peak) and `VmRSS` (now) of this process, in MiB: the client
/// only, as slapd and PostgreSQL are separate processes.
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
    format!("client peak RSS {} MiB, RSS now {} MiB", field("VmHWM:"), field("VmRSS:"))
}

/// Print the nearest-rank p50/p90/p99/max of `samples`.
fn percentiles(name: &str, mut samples: Vec<Duration>) {
    if samples.is_empty() {
        println!("{name}: no samples");
        return;
    }
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

fn print_report(engine: &str, step: &str, r: &SyncReport) {
    println!(
        "{engine} | {step} | {:.2} s | {} LDAP round trips | read {} | created {} | updated {} | disabled {} | \
         unchanged {} | skipped {} | {}",
        r.seconds,
        r.round_trips,
        r.read,
        r.created,
        r.updated,
        r.disabled,
        r.unchanged,
        r.skipped,
        memory()
    );
}

/// Full import, a repeat with nothing changed, then a sync after
/// `RENAMED + DISABLED` people changed (one of the renamed also leaves a
/// group, so `memberOf` maintained by slapd's overlay is in the loop).
async fn run_sync(engine: &str, users: usize, groups: usize) {
    let started = Instant::now();
    let slapd = Slapd::start_with_population(users, groups);
    println!("directory: {users} users in {groups} groups, slapadd + slapd start {:.1} s", secs(started));
    let dir = tempfile::tempdir().expect("cannot create a temporary directory for the SQLite file");
    let mut postgres = None;
    let url = match engine {
        "sqlite" => format!("sqlite://{}", dir.path().join("wardkey.db").display()),
        _ => {
            let started = Instant::now();
            let server = postgres.insert(TestPostgres::start());
            println!("postgres: private cluster started in {:.1} s", secs(started));
            server.url().to_string()
        }
    };
    let store = wardkey_store::open(&url).await.expect("cannot open the store");
    let directory = LdapDirectory::new(source(&slapd, groups)).expect("the LDAP source is refused");
    let settings = DirectorySettings::default();
    println!(
        "store {engine}; LDAPS, page size 500; max_disable_share {} lets one sync disable up to {} of {users} \
         (the third sync disables {DISABLED})",
        settings.max_disable_share,
        ((settings.max_disable_share * users as f64).ceil() as usize).max(1)
    );
    println!("memory: slapd and PostgreSQL are child processes, not counted below; the client holds the sync");
    println!("{engine} | before the first sync | {}", memory());

    let full = sync::run(&directory, store.as_ref(), &settings, 1, false, false).await.expect("full sync failed");
    print_report(engine, "full sync (first import)", &full);
    assert_eq!((full.created, full.skipped), (users, 0), "the first sync should create every user");

    let again = sync::run(&directory, store.as_ref(), &settings, 2, false, false).await.expect("repeat sync failed");
    print_report(engine, "repeat sync, nothing changed", &again);
    assert_eq!(again.unchanged, users, "a repeat sync should change nothing");

    // Spread the changed people over the directory, not one page.
    let step = users / (RENAMED + DISABLED);
    let changed: Vec<usize> = (0..RENAMED + DISABLED).map(|k| k * step).collect();
    let mut ldif = String::new();
    for (k, &i) in changed.iter().enumerate() {
        let dn = Slapd::user_dn(&Slapd::population_uid(i));
        if k < RENAMED {
            ldif.push_str(&format!("dn: {dn}\nchangetype: modify\nreplace: displayName\ndisplayName: Renamed {i}\n\n"));
        } else {
            ldif.push_str(&format!(
                "dn: {dn}\nchangetype: modify\nreplace: userAccountControl\nuserAccountControl: {}\n\n",
                Slapd::DISABLED
            ));
        }
    }
    // The first renamed person also leaves their first group, unless they
    // are its only member (groupOfNames needs one).
    let leaver = changed[0];
    let left_group = Slapd::population_groups(leaver, groups)[0];
    let members = (0..users).filter(|&i| Slapd::population_groups(i, groups).contains(&left_group)).count();
    if members > 1 {
        ldif.push_str(&format!(
            "dn: {}\nchangetype: modify\ndelete: member\nmember: {}\n\n",
            Slapd::group_dn(&Slapd::population_group(left_group)),
            Slapd::user_dn(&Slapd::population_uid(leaver))
        ));
    }
    slapd.modify_ldif(&ldif);
    let after = sync::run(&directory, store.as_ref(), &settings, 3, false, false).await.expect("third sync failed");
    let step = if members > 1 {
        format!("sync after {} changes ({RENAMED} renamed, one also left a group; {DISABLED} disabled)", changed.len())
    } else {
        format!("sync after {} changes ({RENAMED} renamed, {DISABLED} disabled)", changed.len())
    };
    print_report(engine, &step, &after);
    assert_eq!((after.updated, after.disabled), (RENAMED, DISABLED), "the third sync should see every change");
    if members > 1 {
        let uid = Slapd::population_uid(leaver);
        let user = store.user_by_username(&uid).await.expect("store read").expect("the leaver is in the store");
        assert!(
            !user.roles.contains(&role(left_group)),
            "{uid} should have lost {}: {:?}",
            role(left_group),
            user.roles
        );
    }

    // Where the time goes: the LDAP read alone (bind, pages, mapping).
    let started = Instant::now();
    let read = directory.read_all().await.expect("directory read failed");
    println!(
        "{engine} | LDAP read alone (no store) | {:.2} s | {} LDAP round trips | read {} | {}",
        secs(started),
        read.round_trips,
        read.records.len(),
        memory()
    );
    drop(postgres);
}

/// Password checks through the directory (a new LDAPS connection, a
/// service bind, a search and a bind as the user, as every sign-in does),
/// then a local argon2id check at the server's default cost.
async fn run_signin(rounds: usize) {
    let (users, groups) = (15_000, 200);
    let started = Instant::now();
    let slapd = Slapd::start_with_population(users, groups);
    println!("directory: {users} users in {groups} groups, slapadd + slapd start {:.1} s", secs(started));
    let directory = LdapDirectory::new(source(&slapd, groups)).expect("the LDAP source is refused");

    let mut right = Vec::with_capacity(rounds);
    for n in 0..rounds {
        // A different user each time, across the whole directory.
        let uid = Slapd::population_uid((n * 7919) % users);
        let started = Instant::now();
        let check =
            directory.verify_password(&uid, None, &format!("pw-{uid}")).await.expect("the directory did not answer");
        right.push(started.elapsed());
        assert_eq!(check, PasswordCheck::Right, "{uid}'s own password");
    }
    percentiles("LDAPS sign-in, right password (connect + TLS, service bind, search, user bind)", right);

    let mut wrong = Vec::with_capacity(rounds / 3);
    for n in 0..rounds / 3 {
        let uid = Slapd::population_uid((n * 7919 + 1) % users);
        let started = Instant::now();
        let check =
            directory.verify_password(&uid, None, "not the password").await.expect("the directory did not answer");
        wrong.push(started.elapsed());
        assert_eq!(check, PasswordCheck::Wrong, "{uid} with a wrong password");
    }
    percentiles("LDAPS sign-in, wrong password", wrong);

    let params = Argon2Params::default();
    let secret = "correct horse battery staple";
    let hash = password::hash(&params, secret).expect("argon2 hash");
    let mut local = Vec::with_capacity(rounds / 3);
    for _ in 0..rounds / 3 {
        let started = Instant::now();
        let ok = password::verify(&hash, secret);
        local.push(started.elapsed());
        assert!(ok, "argon2 verify of the right password");
    }
    percentiles(
        &format!(
            "local argon2id verify, server default (m={} KiB, t={}, p={}), one thread",
            params.m_cost, params.t_cost, params.p_cost
        ),
        local,
    );
    println!("signin | after all checks | {}", memory());
}

fn secs(since: Instant) -> f64 {
    since.elapsed().as_secs_f64()
}

/// The optional number at `args[i]`, or `default`.
fn number(args: &[String], i: usize, default: usize) -> Result<usize, String> {
    match args.get(i) {
        None => Ok(default),
        Some(a) => a.parse().map_err(|_| format!("{a:?} is not a number")),
    }
}

enum Command {
    Sync { engine: String, users: usize, groups: usize },
    Signin { rounds: usize },
}

fn parse(args: &[String]) -> Result<Command, String> {
    match args.first().map(String::as_str) {
        Some("sync") => {
            let engine = args.get(1).map_or("sqlite", String::as_str).to_string();
            if !matches!(engine.as_str(), "sqlite" | "postgres") {
                return Err(format!("unknown store {engine:?}: sqlite or postgres"));
            }
            let (users, groups) = (number(args, 2, 15_000)?, number(args, 3, 200)?);
            // Fewer users and the ten disables exceed max_disable_share.
            if users < 100 || groups == 0 {
                return Err("USERS must be at least 100 and GROUPS at least 1".into());
            }
            Ok(Command::Sync { engine, users, groups })
        }
        Some("signin") => match number(args, 1, 300)? {
            rounds if rounds >= 3 => Ok(Command::Signin { rounds }),
            _ => Err("ROUNDS must be at least 3".into()),
        },
        Some(other) => Err(format!("unknown command {other:?}")),
        None => Err("no command".into()),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    wardkey_testsupport::install_crypto();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match parse(&args) {
        Ok(command) => command,
        Err(why) => {
            eprintln!("directory_bench: {why}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            let line = c.lines().find(|l| l.starts_with("model name"))?;
            line.split_once(':').map(|(_, model)| model.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("cpu: {cpu}; {cores} cores available");
    match command {
        Command::Sync { engine, users, groups } => run_sync(&engine, users, groups).await,
        Command::Signin { rounds } => run_signin(rounds).await,
    }
    ExitCode::SUCCESS
}
