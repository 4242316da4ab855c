//! PostgreSQL test servers.
//!
//! [`TestPostgres::start`] gives each test its own empty database:
//!
//! - with `WARDKEY_TEST_PG_URL` set (a server URL whose user may
//!   `CREATE DATABASE`), a freshly named database on that server, dropped
//!   again when the handle drops;
//! - otherwise a private cluster: `initdb` into a temporary directory, then
//!   `pg_ctl start` on a free port on 127.0.0.1 (socket in the same
//!   directory, `fsync` off), stopped and removed when the handle drops. A
//!   cluster costs about a second, so every test can have its own.
//!
//! The binaries come from `PATH`, else the newest `/usr/lib/postgresql/*/bin`
//! (Debian's layout). PostgreSQL refuses to run as root, so under root the
//! cluster belongs to the `postgres` system user and every server command
//! runs as that user (`runuser`, else `su`).
//!
//! A missing binary panics, with or without `CI=true`: a PostgreSQL test is
//! never skipped in silence.

use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tempfile::TempDir;

/// Environment variable naming an existing server to create test databases on.
pub const PG_URL_ENV: &str = "WARDKEY_TEST_PG_URL";

/// The owner of a cluster started as root.
const SYSTEM_USER: &str = "postgres";

/// The superuser `initdb` creates; trust authentication, so no password.
const SUPERUSER: &str = "postgres";

/// Times a cluster start is tried on a new free port before giving up (the
/// port picked can be taken by someone else before the server binds it).
const START_ATTEMPTS: u32 = 3;

/// Seconds `pg_ctl` waits for the server to start or stop.
const PG_CTL_WAIT_SECS: &str = "30";

/// Seconds `psql` waits for a connection to the external server.
const PSQL_CONNECT_TIMEOUT_SECS: &str = "10";

/// A PostgreSQL database for one test; see the [module docs](self).
#[derive(Debug)]
pub struct TestPostgres {
    url: String,
    server: Server,
}

#[derive(Debug)]
enum Server {
    /// A cluster this handle started and owns.
    Local(Cluster),
    /// A database this handle created on the server at `WARDKEY_TEST_PG_URL`.
    External { admin_url: String, database: String, psql: PathBuf },
}

impl TestPostgres {
    /// A fresh, empty database: on the server at `WARDKEY_TEST_PG_URL` if
    /// set, else on a private cluster ([`TestPostgres::start_local`]).
    ///
    /// Panics if that cannot be done, saying why.
    pub fn start() -> TestPostgres {
        match std::env::var(PG_URL_ENV) {
            Ok(admin_url) if !admin_url.trim().is_empty() => Self::create_external(admin_url.trim()),
            _ => Self::start_local(),
        }
    }

    /// A private cluster whatever `WARDKEY_TEST_PG_URL` says, for tests that
    /// stop and restart the server ([`TestPostgres::stop`]).
    ///
    /// Panics if the binaries are missing or the cluster does not start.
    pub fn start_local() -> TestPostgres {
        let cluster = Cluster::start();
        TestPostgres {
            url: format!("postgres://{SUPERUSER}@127.0.0.1:{}/postgres", cluster.port),
            server: Server::Local(cluster),
        }
    }

    /// The database's URL, e.g. `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Stop the server (`pg_ctl stop -m fast`: clients are disconnected), as
    /// when the database host goes away. The data stays; see
    /// [`TestPostgres::start_again`].
    ///
    /// Panics on a database from `WARDKEY_TEST_PG_URL`: that server is not
    /// ours to stop (use [`TestPostgres::start_local`]).
    pub fn stop(&self) {
        self.cluster("stop").stop("fast");
    }

    /// Start the server stopped by [`TestPostgres::stop`] again, on the same
    /// data directory and port, so the URL is unchanged.
    ///
    /// Panics on a database from `WARDKEY_TEST_PG_URL`, or if the server
    /// does not start.
    pub fn start_again(&self) {
        let cluster = self.cluster("start_again");
        if let Err(failure) = cluster.pg_ctl_start() {
            panic!("PostgreSQL did not start again on port {}: {failure}", cluster.port);
        }
    }

    fn cluster(&self, what: &str) -> &Cluster {
        match &self.server {
            Server::Local(cluster) => cluster,
            Server::External { .. } => panic!(
                "TestPostgres::{what} needs a private cluster, not the server at {PG_URL_ENV}: \
                 start it with TestPostgres::start_local()"
            ),
        }
    }

    fn create_external(admin_url: &str) -> TestPostgres {
        let psql = find_psql()
            .unwrap_or_else(|| missing_binaries(&format!("psql (needed to create test databases on {PG_URL_ENV})")));
        let database = unique_database_name();
        run_psql(&psql, admin_url, &format!("CREATE DATABASE {database}"))
            .unwrap_or_else(|failure| panic!("cannot create a test database on the {PG_URL_ENV} server: {failure}"));
        TestPostgres {
            url: with_database(admin_url, &database),
            server: Server::External { admin_url: admin_url.to_string(), database, psql },
        }
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        match &self.server {
            // The cluster stops itself when dropped.
            Server::Local(_) => {}
            Server::External { admin_url, database, psql } => {
                // FORCE (PostgreSQL 13+) ends connections a pool left open.
                let sql = format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)");
                if let Err(failure) = run_psql(psql, admin_url, &sql) {
                    eprintln!("warning: could not drop test database {database}: {failure}");
                }
            }
        }
    }
}

/// A cluster in a temporary directory: `data/` is the data directory, the
/// directory itself holds the Unix socket and `server.log`.
#[derive(Debug)]
struct Cluster {
    dir: TempDir,
    bin: PathBuf,
    port: u16,
    run_as: RunAs,
}

impl Cluster {
    fn start() -> Cluster {
        let bin = find_bin_dir().unwrap_or_else(|| missing_binaries("initdb and pg_ctl"));
        let dir = tempfile::Builder::new()
            .prefix("wardkey-pg-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory for PostgreSQL: {e}"));
        let run_as = RunAs::detect(dir.path());
        run_as.give_dir(dir.path());

        let mut cluster = Cluster { dir, bin, port: 0, run_as };
        cluster.initdb();
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            cluster.port = crate::free_port();
            match cluster.pg_ctl_start() {
                Ok(()) => return cluster,
                Err(failure) => failures.push(format!("port {}: {failure}", cluster.port)),
            }
        }
        panic!("PostgreSQL did not start ({START_ATTEMPTS} attempts):\n{}", failures.join("\n"));
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_file(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    fn initdb(&self) {
        let output = self
            .run_as
            .command(&self.bin.join("initdb"))
            .arg("-D")
            .arg(self.data_dir())
            .args(["-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--locale=C"])
            // No fsync of the new files: a test cluster does not outlive a crash.
            .arg("-N")
            .output();
        if let Err(failure) = check(output, "initdb") {
            panic!("initdb failed ({}): {failure}", self.run_as.describe());
        }
    }

    /// `pg_ctl start`, waiting until the server accepts connections.
    fn pg_ctl_start(&self) -> Result<(), String> {
        let server_options = format!(
            "-p {port} -k '{socket_dir}' -c listen_addresses=127.0.0.1 \
             -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            port = self.port,
            socket_dir = self.dir.path().display(),
        );
        let output = self
            .run_as
            .command(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.log_file())
            .args(["-o", &server_options, "-w", "-t", PG_CTL_WAIT_SECS, "start"])
            .output();
        check(output, "pg_ctl start").map_err(|failure| {
            let log = std::fs::read_to_string(self.log_file()).unwrap_or_default();
            format!("{failure}\nserver.log:\n{log}")
        })
    }

    /// `pg_ctl stop` with shutdown `mode`; panics if it fails.
    fn stop(&self, mode: &str) {
        if let Err(failure) = self.pg_ctl_stop(mode) {
            panic!("PostgreSQL on port {} did not stop: {failure}", self.port);
        }
    }

    fn pg_ctl_stop(&self, mode: &str) -> Result<(), String> {
        let output = self
            .run_as
            .command(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", mode, "-w", "-t", PG_CTL_WAIT_SECS, "stop"])
            .output();
        check(output, "pg_ctl stop")
    }

    fn is_running(&self) -> bool {
        self.run_as
            .command(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.data_dir())
            .arg("status")
            .output()
            .is_ok_and(|out| out.status.success())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // `immediate`: no checkpoint, the data is about to go. The temporary
        // directory is removed after this, when `dir` drops.
        if !self.is_running() {
            return;
        }
        if let Err(failure) = self.pg_ctl_stop("immediate") {
            eprintln!("warning: test PostgreSQL on port {} did not stop: {failure}", self.port);
        }
    }
}

/// Who runs the server commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunAs {
    /// This process's user (not root).
    Me,
    /// Root: `runuser -u postgres -- …`.
    Runuser,
    /// Root without `runuser`: `su -s /bin/sh -c 'exec "$0" "$@"' -- postgres …`.
    Su,
}

impl RunAs {
    /// Root or not, judged by the owner of `own_dir`, a directory this
    /// process just created.
    fn detect(own_dir: &Path) -> RunAs {
        let is_root = std::fs::metadata(own_dir).is_ok_and(|meta| meta.uid() == 0);
        if !is_root {
            return RunAs::Me;
        }
        let user_exists = Command::new("id").arg("-u").arg(SYSTEM_USER).output().is_ok_and(|out| out.status.success());
        if !user_exists {
            panic!(
                "tests run as root, which PostgreSQL refuses, and there is no `{SYSTEM_USER}` user to run it as: \
                 install the postgresql package (./scripts/test does) or run the tests as another user"
            );
        }
        if which("runuser").is_some()
            || Path::new("/usr/sbin/runuser").is_file()
            || Path::new("/sbin/runuser").is_file()
        {
            RunAs::Runuser
        } else {
            RunAs::Su
        }
    }

    /// A command running `program` as the cluster's owner; add its
    /// arguments with `arg`/`args`.
    fn command(self, program: &Path) -> Command {
        let mut command = match self {
            RunAs::Me => return Command::new(program),
            RunAs::Runuser => {
                let runuser = which("runuser")
                    .or_else(|| Some(PathBuf::from("/usr/sbin/runuser")).filter(|p| p.is_file()))
                    .unwrap_or_else(|| PathBuf::from("/sbin/runuser"));
                let mut command = Command::new(runuser);
                command.args(["-u", SYSTEM_USER, "--"]);
                command
            }
            RunAs::Su => {
                let mut command = Command::new("su");
                // The shell gets `program` as $0 and the arguments as $@;
                // `--` keeps su from parsing them as its own options.
                command.args(["-s", "/bin/sh", "-c", "exec \"$0\" \"$@\"", "--", SYSTEM_USER]);
                command
            }
        };
        command.arg(program);
        command
    }

    /// Hand the cluster directory to its owner.
    fn give_dir(self, dir: &Path) {
        if self == RunAs::Me {
            return;
        }
        let output = Command::new("chown").arg(SYSTEM_USER).arg(dir).output();
        if let Err(failure) = check(output, "chown") {
            panic!("cannot hand {} to the {SYSTEM_USER} user: {failure}", dir.display());
        }
    }

    fn describe(self) -> &'static str {
        match self {
            RunAs::Me => "as the current user",
            RunAs::Runuser => "as root, via runuser -u postgres",
            RunAs::Su => "as root, via su postgres",
        }
    }
}

/// `Ok` if the command ran and succeeded, else what it said.
fn check(output: std::io::Result<Output>, what: &str) -> Result<(), String> {
    match output {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "{what} exited with {}:\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )),
        Err(e) => Err(format!("cannot run {what}: {e}")),
    }
}

fn run_psql(psql: &Path, url: &str, sql: &str) -> Result<(), String> {
    let output = Command::new(psql)
        .env("PGCONNECT_TIMEOUT", PSQL_CONNECT_TIMEOUT_SECS)
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1"])
        .arg(format!("--dbname={url}"))
        .arg("-c")
        .arg(sql)
        .output();
    check(output, "psql")
}

/// Panic because PostgreSQL's binaries are missing.
fn missing_binaries(what: &str) -> ! {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    panic!(
        "{}PostgreSQL {what} not found on PATH or in /usr/lib/postgresql/*/bin. \
         Run the README's test command, ./scripts/test, which installs the postgresql package \
         (or `apt-get install postgresql`), or set {PG_URL_ENV} to a server where this user may CREATE DATABASE.",
        if ci { "CI=true and " } else { "" }
    );
}

/// `name` in a directory on `PATH`.
fn which(name: impl AsRef<OsStr>) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name.as_ref())).find(|candidate| candidate.is_file())
}

/// The directory holding `initdb` and `pg_ctl`: `initdb`'s on `PATH`, else
/// the newest `/usr/lib/postgresql/VERSION/bin`.
fn find_bin_dir() -> Option<PathBuf> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    which("initdb")
        .and_then(|initdb| initdb.parent().map(Path::to_path_buf))
        .filter(|dir| has_both(dir))
        .or_else(|| newest_versioned_bin(Path::new("/usr/lib/postgresql"), has_both))
}

/// The `ROOT/VERSION/bin` with the highest version for which `usable` holds.
fn newest_versioned_bin(root: &Path, usable: impl Fn(&Path) -> bool) -> Option<PathBuf> {
    std::fs::read_dir(root)
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = parse_version(entry.file_name().to_str()?)?;
            let bin = entry.path().join("bin");
            usable(&bin).then_some((version, bin))
        })
        .max_by(|(a, _), (b, _)| a.cmp(b))
        .map(|(_, bin)| bin)
}

/// `"15"` → `[15]`, `"9.6"` → `[9, 6]`; anything else is not a version.
fn parse_version(name: &str) -> Option<Vec<u32>> {
    name.split('.').map(|part| part.parse().ok()).collect()
}

fn find_psql() -> Option<PathBuf> {
    which("psql").or_else(|| find_bin_dir().map(|dir| dir.join("psql")).filter(|psql| psql.is_file()))
}

/// A database name no other test (on this or another machine) picks.
fn unique_database_name() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("wardkey_test_{}_{}_{nanos}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// `url` with its database (path) replaced by `database`, query kept.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..].find('/').map_or(base.len(), |i| authority_start + i);
    format!("{}/{database}{query}", &base[..path_start])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_is_replaced_in_urls() {
        assert_eq!(with_database("postgres://u:p@db:5432/admin", "t1"), "postgres://u:p@db:5432/t1");
        assert_eq!(with_database("postgres://db", "t1"), "postgres://db/t1");
        assert_eq!(with_database("postgresql://db/", "t1"), "postgresql://db/t1");
        assert_eq!(
            with_database("postgres://u@db/admin?sslmode=require&x=/y", "t1"),
            "postgres://u@db/t1?sslmode=require&x=/y"
        );
    }

    #[test]
    fn versions_order_numerically() {
        assert!(parse_version("15") > parse_version("9.6"));
        assert!(parse_version("16") > parse_version("15"));
        assert_eq!(parse_version("main"), None);
    }

    #[test]
    fn newest_usable_version_is_picked() {
        let root = tempfile::tempdir().unwrap();
        for (version, files) in [
            ("9.6", &["initdb", "pg_ctl"][..]),
            ("15", &["initdb", "pg_ctl"]),
            ("16", &["initdb"]),
            ("main", &["initdb", "pg_ctl"]),
        ] {
            let bin = root.path().join(version).join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            for file in files {
                std::fs::write(bin.join(file), "").unwrap();
            }
        }
        let usable = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
        assert_eq!(newest_versioned_bin(root.path(), usable), Some(root.path().join("15/bin")));
        assert_eq!(newest_versioned_bin(&root.path().join("none"), usable), None);
    }

    #[test]
    fn database_names_are_unique() {
        assert_ne!(unique_database_name(), unique_database_name());
    }

    /// Under root, both ways of running a command as `postgres` work, with
    /// arguments that look like options passed through untouched. (Not
    /// root: they are never used.)
    #[test]
    fn root_runs_server_commands_as_postgres() {
        let dir = tempfile::tempdir().unwrap();
        if RunAs::detect(dir.path()) == RunAs::Me {
            return;
        }
        let id = which("id").expect("id on PATH");
        for run_as in [RunAs::Runuser, RunAs::Su] {
            let out = run_as.command(&id).args(["-u", "-n"]).output().unwrap();
            assert!(out.status.success(), "{run_as:?}: {out:?}");
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), SYSTEM_USER, "{run_as:?}");
        }
    }

    #[test]
    fn cluster_starts_stops_and_starts_again() {
        let pg = TestPostgres::start_local();
        let Server::Local(cluster) = &pg.server else { unreachable!() };
        let port = cluster.port;
        let data_dir = cluster.dir.path().to_path_buf();
        assert!(pg.url().ends_with(&format!(":{port}/postgres")), "{}", pg.url());
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
        pg.stop();
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
        pg.start_again();
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
        drop(pg);
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
        assert!(!data_dir.exists(), "temporary directory removed");
    }
}
