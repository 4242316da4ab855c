//! OpenLDAP test servers shaped like Active Directory: a private `slapd` per
//! test, so Wardkey's LDAP directory sync and LDAP password check are tested
//! against a real server (paging, size limits, ACLs, TLS, `memberOf`) rather
//! than a mock that agrees with whatever the client does.
//!
//! [`Slapd::start`] creates a temporary directory holding a fresh test CA, a
//! server certificate for `localhost` and `127.0.0.1` signed by it, a
//! generated `slapd.conf` and an `mdb` database, and runs `slapd` on two free
//! ports of 127.0.0.1: plain LDAP (StartTLS offered, not required, as AD
//! does by default) and LDAPS. Dropping the handle kills the server and
//! removes the directory.
//!
//! The directory under [`Slapd::BASE`] is what a trust's AD looks like to a
//! sync:
//!
//! - `ou=Staff` (people), `ou=Groups`, `ou=Service` (the sync's own account,
//!   [`Slapd::SERVICE_DN`]);
//! - people are `inetOrgPerson` plus the auxiliary class `adUser`, which adds
//!   AD's `sAMAccountName` and `userPrincipalName` (case-insensitive
//!   strings) and `userAccountControl` (an integer: [`Slapd::ENABLED`] 512,
//!   [`Slapd::DISABLED`] 514), with private OIDs under 1.3.6.1.4.1.99999;
//! - groups are `groupOfNames`; the `memberof` overlay keeps `memberOf` on
//!   the members, as AD does. In OpenLDAP `memberOf` is an *operational*
//!   attribute: a search returns it only when asked for by name (or `+`),
//!   never for `*`. Each entry's stable id is `entryUUID` (AD's
//!   `objectGUID`), also operational;
//! - a search that does not page stops at [`Slapd::SIZE_LIMIT`] entries with
//!   "size limit exceeded"; with the paged results control (RFC 2696) the
//!   service account gets everything, up to [`Slapd::PAGE_SIZE_LIMIT`] a
//!   page. So a sync that forgets to page fails here as it would on AD
//!   (whose default `MaxPageSize` is 1000);
//! - people bind with their own `userPassword`; the service account reads
//!   everything but passwords; anonymous clients may only bind. As in AD,
//!   nobody reads a password. Unlike AD, a disabled `userAccountControl`
//!   does not stop a bind: the client must look at it.
//!
//! Entries go in as LDIF, through `ldapmodify` as the admin
//! ([`Slapd::add_ldif`], [`Slapd::modify_ldif`]); [`Slapd::user_ldif`] and
//! [`Slapd::group_ldif`] write the usual ones:
//!
//! ```no_run
//! use wardkey_testsupport::slapd::Slapd;
//!
//! let ldap = Slapd::start();
//! ldap.add_ldif(&[
//!     Slapd::user_ldif("alice", "Alice Smith", "E000001", "alice-pw", true),
//!     Slapd::user_ldif("bob", "Bob Jones", "E000002", "bob-pw", false),
//!     Slapd::group_ldif("Clinicians", &["alice", "bob"]),
//! ].concat());
//! // Alice's entry now has memberOf: cn=Clinicians,ou=Groups,dc=trust,dc=nhs,dc=uk
//! ldap.modify_ldif(&format!(
//!     "dn: {}\nchangetype: modify\nreplace: userAccountControl\nuserAccountControl: {}\n",
//!     Slapd::user_dn("alice"),
//!     Slapd::DISABLED,
//! ));
//! ```
//!
//! A large directory is loaded before the server starts, with `slapadd`
//! ([`Slapd::start_with_population`]): 15,000 people in 200 groups take
//! under a second that way, against about a minute through `ldapadd` (each
//! group write makes the overlay rewrite every member).
//!
//! The configuration is a generated `slapd.conf` (`slapd -f`), not
//! `cn=config`: one file written before start, nothing to bootstrap over
//! `ldapi://`. The binaries come from `PATH`, else `/usr/sbin` (Debian puts
//! `slapd` and `slapadd` there, outside a normal user's `PATH`); the clients
//! are `ldap-utils`'. The server runs as whoever runs the tests, root
//! included (no `-u`): the directory is theirs.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use tempfile::TempDir;

/// How long a starting server may take to answer a bind. Generous: the
/// machines that run the tests are shared and often busy.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// How many pairs of fresh ports a start tries: another process can take a
/// port between [`crate::free_port`] releasing it and `slapd` binding it.
const PORT_ATTEMPTS: usize = 5;

/// Where Debian installs the server's loadable modules (`back_mdb`,
/// `memberof`).
const MODULE_PATH: &str = "/usr/lib/ldap";

/// The OpenLDAP schema files the directory needs, in dependency order.
const SCHEMA_DIR: &str = "/etc/ldap/schema";
const SCHEMAS: [&str; 3] = ["core.schema", "cosine.schema", "inetorgperson.schema"];

/// A `slapd` owned by a test; see the [module docs](self). Dropping it kills
/// the server and removes its directory (database, certificates, log).
pub struct Slapd {
    dir: TempDir,
    child: Option<Child>,
    ldap_port: u16,
    ldaps_port: u16,
    ca_pem: String,
    ca_path: PathBuf,
}

impl Slapd {
    /// The directory's suffix, a trust's domain.
    pub const BASE: &'static str = "dc=trust,dc=nhs,dc=uk";
    /// Where people live.
    pub const STAFF: &'static str = "ou=Staff,dc=trust,dc=nhs,dc=uk";
    /// Where groups live.
    pub const GROUPS: &'static str = "ou=Groups,dc=trust,dc=nhs,dc=uk";
    /// Where service accounts live.
    pub const SERVICE: &'static str = "ou=Service,dc=trust,dc=nhs,dc=uk";
    /// The `rootdn`: no ACL and no limit applies to it. Only for setting up
    /// the directory ([`Slapd::add_ldif`] binds as it); Wardkey itself should
    /// bind as [`Slapd::SERVICE_DN`], as it would on AD.
    pub const ADMIN_DN: &'static str = "cn=admin,dc=trust,dc=nhs,dc=uk";
    /// [`Slapd::ADMIN_DN`]'s password.
    pub const ADMIN_PASSWORD: &'static str = "admin-secret";
    /// The sync's bind account: an ordinary entry with a `userPassword`,
    /// allowed to read every entry (no passwords) and to page past the size
    /// limit.
    pub const SERVICE_DN: &'static str = "cn=wardkey-svc,ou=Service,dc=trust,dc=nhs,dc=uk";
    /// [`Slapd::SERVICE_DN`]'s password.
    pub const SERVICE_PASSWORD: &'static str = "wardkey-svc-secret";
    /// Most entries a search without the paged results control returns;
    /// past it the search ends with result 4, size limit exceeded.
    pub const SIZE_LIMIT: usize = 500;
    /// Largest page the service account may ask for.
    pub const PAGE_SIZE_LIMIT: usize = 1000;
    /// `userAccountControl` of an enabled account (`NORMAL_ACCOUNT`).
    pub const ENABLED: u32 = 512;
    /// `userAccountControl` of a disabled one (`NORMAL_ACCOUNT | ACCOUNTDISABLE`).
    pub const DISABLED: u32 = 514;

    /// Start a server with an empty directory: the base entry, the three
    /// OUs and the service account. Waits until it answers a bind.
    ///
    /// # Panics
    ///
    /// If `slapd`/`slapadd` are not installed (run the README's test
    /// command, `./scripts/test`, which installs the `slapd` package), or the
    /// server does not come up (the panic shows its log).
    pub fn start() -> Slapd {
        Self::start_with_population(0, 0)
    }

    /// Start a server whose directory already holds `users` people in
    /// `groups` groups, loaded with `slapadd` before `slapd` starts: 15,000
    /// people load in under a second where `ldapadd` takes a minute.
    ///
    /// Person `i` (from 0) is `uid=user{i:05},ou=Staff,…`: `sAMAccountName`
    /// the same, `cn`/`displayName` "Staff Member {i}", mail and
    /// `userPrincipalName` `user{i:05}@trust.nhs.uk`, `employeeNumber`
    /// `E{i:06}`, password `pw-user{i:05}`, enabled (512). Group `j` is
    /// `cn=group{j:03},ou=Groups,…`. Person `i` belongs to the groups
    /// [`Slapd::population_groups`] gives: `i % groups` and
    /// `(7 i + 3) % groups`, two distinct groups when `groups` is 200. The
    /// same functions name them: [`Slapd::population_uid`],
    /// [`Slapd::population_group`].
    ///
    /// `slapadd` runs no overlay, so the people's `memberOf` values are
    /// written into the LDIF rather than computed; they are what the overlay
    /// would have made, and changes made later through [`Slapd::add_ldif`]
    /// and [`Slapd::modify_ldif`] are tracked by the overlay as usual. A
    /// group no one falls into (fewer people than groups) has the empty DN
    /// as its one member, since `groupOfNames` needs one.
    ///
    /// # Panics
    ///
    /// As [`Slapd::start`], or if `slapadd` rejects the data.
    pub fn start_with_population(users: usize, groups: usize) -> Slapd {
        let dir = tempfile::Builder::new()
            .prefix("wardkey-slapd-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory for slapd: {e}"));
        let tls = TestTls::generate();
        let ca_path = dir.path().join("ca.pem");
        write_file(&ca_path, &tls.ca_pem);
        write_file(&dir.path().join("server.pem"), &tls.server_pem);
        write_file(&dir.path().join("server.key"), &tls.server_key_pem);
        std::fs::create_dir(dir.path().join("db"))
            .unwrap_or_else(|e| panic!("creating slapd's database directory: {e}"));
        write_file(&dir.path().join("slapd.conf"), &slapd_conf(dir.path()));

        let mut slapd = Slapd { dir, child: None, ldap_port: 0, ldaps_port: 0, ca_pem: tls.ca_pem, ca_path };
        slapd.slapadd(&directory_ldif(users, groups));
        let mut log = String::new();
        for _ in 0..PORT_ATTEMPTS {
            slapd.ldap_port = crate::free_port();
            slapd.ldaps_port = crate::free_port();
            if slapd.ldaps_port == slapd.ldap_port {
                continue;
            }
            match slapd.spawn_and_wait() {
                Ok(()) => return slapd,
                // Most likely someone took a port meanwhile: try others.
                Err(e) => log = e,
            }
        }
        panic!("slapd did not start ({PORT_ATTEMPTS} pairs of ports tried); its last log:\n{log}");
    }

    /// `ldap://127.0.0.1:PORT`: plain LDAP, StartTLS available.
    pub fn ldap_url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.ldap_port)
    }

    /// `ldaps://localhost:PORT`: the name the certificate is for, which is
    /// what a client verifying the hostname (rustls) needs.
    ///
    /// Not for `ldap-utils`: libldap swaps the name `localhost` for the
    /// reverse lookup of the address it connected to (often the machine's
    /// own name, not in the certificate) before checking it. Give those
    /// tools `ldaps://127.0.0.1:PORT` ([`Slapd::ldaps_port`]); the
    /// certificate names that address too.
    pub fn ldaps_url(&self) -> String {
        format!("ldaps://localhost:{}", self.ldaps_port)
    }

    /// The plain LDAP port on 127.0.0.1.
    pub fn ldap_port(&self) -> u16 {
        self.ldap_port
    }

    /// The LDAPS port on 127.0.0.1.
    pub fn ldaps_port(&self) -> u16 {
        self.ldaps_port
    }

    /// The test CA's certificate (PEM), the one trust anchor of both ports.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The file holding [`Slapd::ca_pem`], for clients configured with a path.
    pub fn ca_path(&self) -> &Path {
        &self.ca_path
    }

    /// `uid=UID,ou=Staff,dc=trust,dc=nhs,dc=uk` (`uid` is not escaped).
    pub fn user_dn(uid: &str) -> String {
        format!("uid={uid},{}", Self::STAFF)
    }

    /// `cn=CN,ou=Groups,dc=trust,dc=nhs,dc=uk` (`cn` is not escaped).
    pub fn group_dn(cn: &str) -> String {
        format!("cn={cn},{}", Self::GROUPS)
    }

    /// LDIF adding person `uid` ([`Slapd::user_dn`]) as AD would hold them:
    /// `cn`/`displayName` `name` (`givenName` its first word, `sn` its last),
    /// `sAMAccountName` `uid`, mail and `userPrincipalName`
    /// `uid@trust.nhs.uk`, `employeeNumber`, password `password` (clear
    /// text, which slapd compares as is), `userAccountControl` 512 or 514.
    /// Ends with a blank line, so entries can be concatenated.
    pub fn user_ldif(uid: &str, name: &str, employee_number: &str, password: &str, enabled: bool) -> String {
        let mut ldif = String::new();
        let control = if enabled { Self::ENABLED } else { Self::DISABLED };
        write_user(&mut ldif, uid, name, employee_number, password, control, &[]);
        ldif
    }

    /// LDIF adding group `cn` ([`Slapd::group_dn`]) with the people
    /// `member_uids` as members; none gives the empty DN as the one member
    /// `groupOfNames` needs. Ends with a blank line.
    pub fn group_ldif(cn: &str, member_uids: &[&str]) -> String {
        let members: Vec<String> = member_uids.iter().map(|uid| Self::user_dn(uid)).collect();
        let mut ldif = String::new();
        write_group(&mut ldif, cn, &members);
        ldif
    }

    /// `uid` (and `sAMAccountName`) of person `i` of a population.
    pub fn population_uid(i: usize) -> String {
        format!("user{i:05}")
    }

    /// `cn` of group `j` of a population.
    pub fn population_group(j: usize) -> String {
        format!("group{j:03}")
    }

    /// The groups person `i` of a population with `groups` groups is in,
    /// ascending: `i % groups` and `(7 i + 3) % groups` (one group when they
    /// coincide; none when there are no groups).
    pub fn population_groups(i: usize, groups: usize) -> Vec<usize> {
        if groups == 0 {
            return Vec::new();
        }
        let mut of = vec![i % groups, (i * 7 + 3) % groups];
        of.sort_unstable();
        of.dedup();
        of
    }

    /// Add the entries in `ldif` (records without `changetype`, or with
    /// `changetype: add`) as the admin, over plain LDAP, with `ldapmodify
    /// -a`. The overlay keeps `memberOf`: do not write it.
    ///
    /// # Panics
    ///
    /// If an entry is refused (the panic shows `ldapmodify`'s output;
    /// earlier entries stay added), or `ldap-utils` is not installed.
    pub fn add_ldif(&self, ldif: &str) {
        self.ldapmodify(&["-a"], ldif);
    }

    /// Apply `ldif`'s change records (`changetype: modify`, `add`, `delete`,
    /// `modrdn`) as the admin with `ldapmodify`.
    ///
    /// # Panics
    ///
    /// As [`Slapd::add_ldif`].
    pub fn modify_ldif(&self, ldif: &str) {
        self.ldapmodify(&[], ldif);
    }

    /// An `ldap-utils` command (`ldapsearch`, `ldapwhoami`, …) that trusts
    /// the test CA and only it (`LDAPTLS_CACERT`, overriding the system's
    /// `ldap.conf`), run in the server's directory so no stray `ldaprc`
    /// applies. Add `-H`, bind and search arguments yourself.
    pub fn ldap_command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new(program);
        command
            .env("LDAPTLS_CACERT", &self.ca_path)
            .env("LDAPTLS_REQCERT", "demand")
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        command
    }

    /// Kill the server (SIGKILL) and reap it: both ports then refuse
    /// connections, as when the domain controller goes away. The database
    /// stays (LMDB survives a kill); see [`Slapd::start_again`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start a stopped server again on the same ports and data, and wait
    /// until it answers a bind.
    ///
    /// # Panics
    ///
    /// If the server is running, or does not come back.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "start_again() on a running slapd: stop() it first");
        if let Err(log) = self.spawn_and_wait() {
            panic!("slapd did not start again on ports {}/{}; its log:\n{log}", self.ldap_port, self.ldaps_port);
        }
    }

    fn conf_path(&self) -> PathBuf {
        self.dir.path().join("slapd.conf")
    }

    /// Load `ldif` into the (stopped) server's database. `-q`: no
    /// consistency checks, the entries are ours and in order.
    fn slapadd(&self, ldif: &str) {
        let path = self.dir.path().join("directory.ldif");
        write_file(&path, ldif);
        let output = Command::new(sbin("slapadd"))
            .arg("-f")
            .arg(self.conf_path())
            .arg("-q")
            .arg("-l")
            .arg(&path)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| missing_slapd("slapadd", e));
        if let Err(failure) = check(&output, "slapadd") {
            panic!("slapadd did not load the test directory: {failure}");
        }
    }

    fn ldapmodify(&self, flags: &[&str], ldif: &str) {
        let mut child = self
            .ldap_command("ldapmodify")
            .args(flags)
            .args(["-x", "-H", &self.ldap_url(), "-D", Self::ADMIN_DN, "-w", Self::ADMIN_PASSWORD])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| crate::missing_program("ldapmodify", "ldap-utils", e));
        let mut stdin = child.stdin.take().expect("ldapmodify's stdin is piped");
        // Feed stdin from another thread while this one drains stdout, which
        // ldapmodify writes a line to per entry: a big LDIF would otherwise
        // fill both pipes and block both processes.
        let output = thread::scope(|scope| {
            scope.spawn(move || {
                // An early exit (a refused entry) closes the pipe: the error
                // is in the output below.
                let _ = stdin.write_all(ldif.as_bytes());
            });
            child.wait_with_output()
        });
        let output = output.unwrap_or_else(|e| panic!("waiting for ldapmodify: {e}"));
        if let Err(failure) = check(&output, "ldapmodify") {
            panic!("ldapmodify {} on {} failed: {failure}", flags.join(" "), self.ldap_url());
        }
    }

    /// Spawn `slapd` on the current ports and wait until it answers a bind.
    /// On failure the process is gone and the error is its log.
    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let log_path = self.dir.path().join("slapd.log");
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap_or_else(|e| panic!("creating slapd.log: {e}"));
        let urls = format!("ldap://127.0.0.1:{}/ ldaps://127.0.0.1:{}/", self.ldap_port, self.ldaps_port);
        let child = Command::new(sbin("slapd"))
            .arg("-f")
            .arg(self.conf_path())
            .args(["-h", &urls])
            // Any -d keeps slapd in the foreground, so it stays our child
            // and dies with kill(); "none" still logs errors (and "slapd
            // starting"), where -d 0 would log nothing at all.
            .args(["-d", "none"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap_or_else(|e| panic!("cloning the log file handle: {e}")))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| missing_slapd("slapd", e));
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if answers_bind(self.ldap_port) && accepts(self.ldaps_port) {
                return Ok(());
            }
            let exited = self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
            if exited || Instant::now() > deadline {
                self.stop();
                return Err(read_log(&log_path));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        // The process first, then `dir` is removed by its own Drop.
        self.stop();
    }
}

/// The test CA and the server certificate it signed, all PEM.
struct TestTls {
    ca_pem: String,
    server_pem: String,
    server_key_pem: String,
}

impl TestTls {
    /// A CA made for this server alone, so a client that trusts it trusts
    /// nothing else, and a certificate for `localhost` and `127.0.0.1`.
    fn generate() -> TestTls {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
            KeyUsagePurpose,
        };
        let fail = |what: &str, e: rcgen::Error| -> ! { panic!("generating the test LDAP {what}: {e}") };

        let ca_key = KeyPair::generate().unwrap_or_else(|e| fail("CA key", e));
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap_or_else(|e| fail("CA", e));
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "Wardkey test LDAP CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let ca_cert = ca.self_signed(&ca_key).unwrap_or_else(|e| fail("CA certificate", e));
        let issuer = Issuer::new(ca, ca_key);

        let server_key = KeyPair::generate().unwrap_or_else(|e| fail("server key", e));
        // "127.0.0.1" becomes an IP address name, "localhost" a DNS name.
        let mut server = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap_or_else(|e| fail("server certificate", e));
        server.distinguished_name.push(DnType::CommonName, "localhost");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = server.signed_by(&server_key, &issuer).unwrap_or_else(|e| fail("server certificate", e));

        TestTls { ca_pem: ca_cert.pem(), server_pem: server_cert.pem(), server_key_pem: server_key.serialize_pem() }
    }
}

/// The server's configuration: schema (OpenLDAP's plus the AD attributes),
/// modules, TLS, limits, ACLs and the `mdb` database with the `memberof`
/// overlay. See the [module docs](self) for why each is there.
fn slapd_conf(dir: &Path) -> String {
    let dir = dir.display();
    let includes: String = SCHEMAS.iter().map(|schema| format!("include {SCHEMA_DIR}/{schema}\n")).collect();
    format!(
        r#"# Generated by wardkey-testsupport for one test; removed with it.
{includes}
# Active Directory's account attributes, under a private arc.
attributetype ( 1.3.6.1.4.1.99999.1.1.1 NAME 'sAMAccountName'
    EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.99999.1.1.2 NAME 'userAccountControl'
    EQUALITY integerMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.99999.1.1.3 NAME 'userPrincipalName'
    EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
objectclass ( 1.3.6.1.4.1.99999.1.2.1 NAME 'adUser' AUXILIARY
    MAY ( sAMAccountName $ userAccountControl $ userPrincipalName ) )

modulepath {MODULE_PATH}
moduleload back_mdb
moduleload memberof

pidfile "{dir}/slapd.pid"
argsfile "{dir}/slapd.args"

TLSCACertificateFile "{dir}/ca.pem"
TLSCertificateFile "{dir}/server.pem"
TLSCertificateKeyFile "{dir}/server.key"

# Searches that do not page stop here.
sizelimit {size_limit}

database mdb
suffix "{base}"
rootdn "{admin}"
rootpw {admin_password}
directory "{dir}/db"
maxsize 1073741824
# A test database does not outlive a crash of the machine.
dbnosync
index objectClass eq
index uid,sAMAccountName,userPrincipalName,mail,employeeNumber eq
index member,memberOf,entryUUID eq

limits dn.exact="{service}" size.soft={size_limit} size.hard=unlimited size.pr={page_size_limit} size.prtotal=unlimited

access to attrs=userPassword
    by anonymous auth
    by * none
access to *
    by dn.exact="{service}" read
    by self read
    by * none

overlay memberof
memberof-refint TRUE
"#,
        size_limit = Slapd::SIZE_LIMIT,
        page_size_limit = Slapd::PAGE_SIZE_LIMIT,
        base = Slapd::BASE,
        admin = Slapd::ADMIN_DN,
        admin_password = Slapd::ADMIN_PASSWORD,
        service = Slapd::SERVICE_DN,
    )
}

/// The whole initial directory for `slapadd`: base, OUs, service account,
/// then the population (see [`Slapd::start_with_population`]), parents
/// before children.
fn directory_ldif(users: usize, groups: usize) -> String {
    let mut ldif = String::with_capacity(1024 + users * 560 + groups * 64);
    let _ = write!(
        ldif,
        "dn: {}\nobjectClass: dcObject\nobjectClass: organization\ndc: trust\no: NHS Trust\n\n",
        Slapd::BASE
    );
    for (dn, ou) in [(Slapd::STAFF, "Staff"), (Slapd::GROUPS, "Groups"), (Slapd::SERVICE, "Service")] {
        let _ = write!(ldif, "dn: {dn}\nobjectClass: organizationalUnit\nou: {ou}\n\n");
    }
    let _ = write!(
        ldif,
        "dn: {}\nobjectClass: person\ncn: wardkey-svc\nsn: wardkey-svc\ndescription: Wardkey directory sync\n{}\n",
        Slapd::SERVICE_DN,
        ldif_line("userPassword", Slapd::SERVICE_PASSWORD),
    );

    let mut members: Vec<Vec<String>> = vec![Vec::new(); groups];
    for i in 0..users {
        let uid = Slapd::population_uid(i);
        let of = Slapd::population_groups(i, groups);
        let member_of: Vec<String> = of.iter().map(|&j| Slapd::group_dn(&Slapd::population_group(j))).collect();
        for &j in &of {
            members[j].push(Slapd::user_dn(&uid));
        }
        let password = format!("pw-{uid}");
        write_user(
            &mut ldif,
            &uid,
            &format!("Staff Member {i}"),
            &format!("E{i:06}"),
            &password,
            Slapd::ENABLED,
            &member_of,
        );
    }
    for (j, members) in members.iter().enumerate() {
        write_group(&mut ldif, &Slapd::population_group(j), members);
    }
    ldif
}

/// One person's entry, with `memberOf` values only when the overlay will
/// not make them (`slapadd`).
fn write_user(
    ldif: &mut String,
    uid: &str,
    name: &str,
    employee_number: &str,
    password: &str,
    account_control: u32,
    member_of: &[String],
) {
    let given_name = name.split_whitespace().next().unwrap_or(name);
    let surname = name.split_whitespace().last().unwrap_or(name);
    let mail = format!("{uid}@trust.nhs.uk");
    let _ = writeln!(ldif, "dn: {}", Slapd::user_dn(uid));
    ldif.push_str("objectClass: inetOrgPerson\nobjectClass: adUser\n");
    for (attribute, value) in [
        ("uid", uid),
        ("sAMAccountName", uid),
        ("cn", name),
        ("displayName", name),
        ("givenName", given_name),
        ("sn", surname),
        ("mail", &mail),
        ("userPrincipalName", &mail),
        ("employeeNumber", employee_number),
        ("userPassword", password),
    ] {
        ldif.push_str(&ldif_line(attribute, value));
    }
    let _ = writeln!(ldif, "userAccountControl: {account_control}");
    for group in member_of {
        ldif.push_str(&ldif_line("memberOf", group));
    }
    ldif.push('\n');
}

/// One group's entry; the empty DN stands in for no members.
fn write_group(ldif: &mut String, cn: &str, members: &[String]) {
    let _ = write!(ldif, "dn: {}\nobjectClass: groupOfNames\n{}", Slapd::group_dn(cn), ldif_line("cn", cn));
    if members.is_empty() {
        ldif.push_str("member:\n");
    }
    for member in members {
        ldif.push_str(&ldif_line("member", member));
    }
    ldif.push('\n');
}

/// `attribute: value\n`, or `attribute:: BASE64\n` when LDIF cannot carry
/// the value as is (non-ASCII names, leading space, colon or `<`, trailing
/// space; RFC 2849's SAFE-STRING).
fn ldif_line(attribute: &str, value: &str) -> String {
    let safe = value.bytes().all(|b| b.is_ascii() && b != b'\0' && b != b'\n' && b != b'\r')
        && !value.starts_with([' ', ':', '<'])
        && !value.ends_with(' ');
    if safe {
        format!("{attribute}: {value}\n")
    } else {
        format!("{attribute}:: {}\n", base64::engine::general_purpose::STANDARD.encode(value))
    }
}

/// Whether the server on `port` answers an anonymous LDAPv3 simple bind
/// with success: the server is up and its database open, which a bare TCP
/// connect would not prove.
fn answers_bind(port: u16) -> bool {
    // LDAPMessage { messageID 1, BindRequest { version 3, name "", simple "" } }
    const ANONYMOUS_BIND: [u8; 14] =
        [0x30, 0x0c, 0x02, 0x01, 0x01, 0x60, 0x07, 0x02, 0x01, 0x03, 0x04, 0x00, 0x80, 0x00];
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let _ = stream.set_write_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(&ANONYMOUS_BIND).is_err() {
        return false;
    }
    let mut reply = [0u8; 64];
    let mut got = 0;
    // A BindResponse (tag 0x61) whose resultCode is ENUMERATED 0.
    let success = |reply: &[u8]| reply.contains(&0x61) && reply.windows(3).any(|w| w == [0x0a, 0x01, 0x00]);
    while got < reply.len() && !success(&reply[..got]) {
        match stream.read(&mut reply[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    reply[0] == 0x30 && success(&reply[..got])
}

/// Whether something listens on `port` of 127.0.0.1.
fn accepts(port: u16) -> bool {
    TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_millis(200)).is_ok()
}

/// `name` on `PATH`, else in `/usr/sbin` (where Debian puts `slapd` and
/// `slapadd`, outside a normal user's `PATH`); else `name` itself, whose
/// spawn then fails with "not found".
fn sbin(name: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| candidate.is_file()));
    on_path.or_else(|| Some(Path::new("/usr/sbin").join(name)).filter(|p| p.is_file())).unwrap_or_else(|| name.into())
}

/// Panic with instructions when a server binary cannot be run: a test that
/// needs LDAP must fail, never pass by skipping.
fn missing_slapd(program: &str, error: std::io::Error) -> ! {
    crate::missing_program(program, "slapd", error)
}

fn write_file(path: &Path, contents: &str) {
    std::fs::write(path, contents).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// `Ok` if the command succeeded, else what it said.
fn check(output: &Output, what: &str) -> Result<(), String> {
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{what} exited with {}:\n{}{}",
        output.status,
        tail(&String::from_utf8_lossy(&output.stdout)),
        String::from_utf8_lossy(&output.stderr)
    ))
}

/// The end of a server's log, for a failure message.
fn read_log(path: &Path) -> String {
    tail(&std::fs::read_to_string(path).unwrap_or_else(|e| format!("(no log: {e})")))
}

/// The last 30 lines of `text`.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run an `ldap-utils` command against `ldap`; its output whatever the
    /// exit status.
    fn run(ldap: &Slapd, program: &str, args: &[&str]) -> Output {
        ldap.ldap_command(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| crate::missing_program(program, "ldap-utils", e))
    }

    fn stdout(output: &Output) -> String {
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn assert_ok(output: &Output, what: &str) {
        assert!(
            output.status.success(),
            "{what} failed ({}):\n{}{}",
            output.status,
            stdout(output),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// `ldaps://127.0.0.1:PORT`, the form libldap can verify (see
    /// [`Slapd::ldaps_url`]).
    fn ldaps_ip_url(ldap: &Slapd) -> String {
        format!("ldaps://127.0.0.1:{}", ldap.ldaps_port())
    }

    /// Search `base` as the service account over `url`; `extra` goes before
    /// the filter (e.g. `-ZZ`, `-E pr=…`).
    fn search_as_service(ldap: &Slapd, url: &str, extra: &[&str], base: &str, filter: &str, attrs: &[&str]) -> Output {
        let mut args =
            vec!["-LLL", "-x", "-H", url, "-D", Slapd::SERVICE_DN, "-w", Slapd::SERVICE_PASSWORD, "-b", base];
        args.extend_from_slice(extra);
        args.push(filter);
        args.extend_from_slice(attrs);
        run(ldap, "ldapsearch", &args)
    }

    fn entries(output: &Output) -> usize {
        stdout(output).lines().filter(|line| line.starts_with("dn: ") || line.starts_with("dn:: ")).count()
    }

    fn alice_and_bob() -> String {
        [
            Slapd::user_ldif("alice", "Alice Smith", "E000001", "alice-pw", true),
            Slapd::user_ldif("bob", "Bob Jones", "E000002", "bob-pw", false),
        ]
        .concat()
    }

    #[test]
    fn slapd_constants_sit_under_the_base() {
        for dn in [Slapd::STAFF, Slapd::GROUPS, Slapd::SERVICE, Slapd::ADMIN_DN, Slapd::SERVICE_DN] {
            assert!(dn.ends_with(&format!(",{}", Slapd::BASE)), "{dn}");
        }
        assert!(Slapd::SERVICE_DN.ends_with(Slapd::SERVICE));
        const { assert!(Slapd::SIZE_LIMIT < Slapd::PAGE_SIZE_LIMIT) };
    }

    #[test]
    fn slapd_ldif_values_that_need_it_are_base64() {
        assert_eq!(ldif_line("cn", "Alice Smith"), "cn: Alice Smith\n");
        assert_eq!(ldif_line("cn", "Zoë"), "cn:: Wm/Dqw==\n");
        assert_eq!(ldif_line("cn", " lead"), "cn:: IGxlYWQ=\n");
        assert_eq!(ldif_line("cn", ":x"), "cn:: Ong=\n");
        assert_eq!(ldif_line("member", ""), "member: \n");
    }

    #[test]
    fn slapd_population_puts_each_user_in_two_groups() {
        for i in 0..15_000 {
            assert_eq!(Slapd::population_groups(i, 200).len(), 2, "user {i}");
        }
        assert_eq!(Slapd::population_groups(7, 200), vec![7, 52]);
        assert_eq!(Slapd::population_groups(5, 1), vec![0]);
        assert!(Slapd::population_groups(5, 0).is_empty());
        let ldif = directory_ldif(3, 5);
        assert_eq!(ldif.matches("objectClass: groupOfNames").count(), 5);
        // Users 0, 1, 2 are in groups {0, 3}, {0, 1}, {2}: group 4 gets
        // nobody, and still has a member line.
        for entry in ldif.split("\n\n").filter(|e| e.contains("groupOfNames")) {
            assert!(entry.contains("\nmember:"), "{entry}");
        }
        assert!(ldif.contains("memberOf: cn=group003,ou=Groups,dc=trust,dc=nhs,dc=uk"), "user 0 is in group 3");
    }

    /// Over LDAPS, trusting only the test CA, the service account finds a
    /// person added with `add_ldif`, by `sAMAccountName` in another case.
    #[test]
    fn slapd_ldaps_search_finds_an_added_user() {
        let ldap = Slapd::start();
        assert_eq!(ldap.ldaps_url(), format!("ldaps://localhost:{}", ldap.ldaps_port()));
        assert_eq!(ldap.ldap_url(), format!("ldap://127.0.0.1:{}", ldap.ldap_port()));
        assert!(ldap.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(std::fs::read_to_string(ldap.ca_path()).unwrap(), ldap.ca_pem());
        ldap.add_ldif(&alice_and_bob());

        let found = search_as_service(
            &ldap,
            &ldaps_ip_url(&ldap),
            &[],
            Slapd::STAFF,
            "(sAMAccountName=ALICE)",
            &["*", "entryUUID"],
        );
        assert_ok(&found, "ldapsearch over ldaps");
        let text = stdout(&found);
        assert!(text.contains("dn: uid=alice,ou=Staff,dc=trust,dc=nhs,dc=uk"), "{text}");
        assert!(text.contains("userPrincipalName: alice@trust.nhs.uk"), "{text}");
        assert!(text.contains("employeeNumber: E000001"), "{text}");
        assert!(text.contains("userAccountControl: 512"), "{text}");
        assert!(text.contains("entryUUID: "), "{text}");
        assert!(!text.to_lowercase().contains("userpassword"), "the service account must not read passwords:\n{text}");
        assert_eq!(entries(&found), 1);

        // Another CA's clients are refused: the system bundle does not
        // contain the test CA.
        let trusted = run(&ldap, "ldapwhoami", &["-x", "-H", &ldaps_ip_url(&ldap)]);
        assert_ok(&trusted, "anonymous ldapwhoami trusting the test CA");
        let other_ca = ldap
            .ldap_command("ldapwhoami")
            .env("LDAPTLS_CACERT", "/etc/ssl/certs/ca-certificates.crt")
            .args(["-x", "-H", &ldaps_ip_url(&ldap)])
            .output()
            .unwrap();
        assert!(!other_ca.status.success(), "ldaps must not verify without the test CA");

        // Anonymous clients see nothing.
        let anonymous =
            run(&ldap, "ldapsearch", &["-LLL", "-x", "-H", &ldap.ldap_url(), "-b", Slapd::STAFF, "(uid=alice)"]);
        assert_eq!(entries(&anonymous), 0, "{}", stdout(&anonymous));
    }

    /// What Wardkey does: rustls to `ldaps_url()`'s host name, trusting only
    /// `ca_pem()`, then an anonymous bind over the TLS stream.
    #[test]
    fn slapd_ldaps_url_verifies_with_rustls() {
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::{CertificateDer, ServerName};

        crate::install_crypto();
        let ldap = Slapd::start();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(ldap.ca_pem().as_bytes()).unwrap()).unwrap();
        let config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
        let url = ldap.ldaps_url();
        let authority = url.strip_prefix("ldaps://").unwrap();
        let host = authority.split(':').next().unwrap();
        let connection =
            rustls::ClientConnection::new(config.into(), ServerName::try_from(host.to_owned()).unwrap()).unwrap();
        let mut tls = rustls::StreamOwned::new(connection, TcpStream::connect(authority).unwrap());
        tls.sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        tls.write_all(&[0x30, 0x0c, 0x02, 0x01, 0x01, 0x60, 0x07, 0x02, 0x01, 0x03, 0x04, 0x00, 0x80, 0x00]).unwrap();
        let mut reply = [0u8; 14];
        tls.read_exact(&mut reply).unwrap();
        assert_eq!(reply, [0x30, 0x0c, 0x02, 0x01, 0x01, 0x61, 0x07, 0x0a, 0x01, 0x00, 0x04, 0x00, 0x04, 0x00]);
    }

    #[test]
    fn slapd_users_bind_with_their_own_password_only() {
        let ldap = Slapd::start();
        ldap.add_ldif(&alice_and_bob());
        let alice = Slapd::user_dn("alice");

        let ok = run(&ldap, "ldapwhoami", &["-x", "-H", &ldap.ldap_url(), "-D", &alice, "-w", "alice-pw"]);
        assert_ok(&ok, "alice's bind");
        assert!(stdout(&ok).contains(&format!("dn:{alice}")), "{}", stdout(&ok));

        let wrong = run(&ldap, "ldapwhoami", &["-x", "-H", &ldap.ldap_url(), "-D", &alice, "-w", "bob-pw"]);
        assert!(!wrong.status.success());
        assert!(String::from_utf8_lossy(&wrong.stderr).contains("Invalid credentials (49)"), "{wrong:?}");

        // Unlike AD, slapd does not read userAccountControl: a disabled
        // person still binds, so the client must check the flag itself.
        let bob =
            run(&ldap, "ldapwhoami", &["-x", "-H", &ldap.ldap_url(), "-D", &Slapd::user_dn("bob"), "-w", "bob-pw"]);
        assert_ok(&bob, "bob's bind");

        // The service account binds too, over LDAPS.
        let service = run(
            &ldap,
            "ldapwhoami",
            &["-x", "-H", &ldaps_ip_url(&ldap), "-D", Slapd::SERVICE_DN, "-w", Slapd::SERVICE_PASSWORD],
        );
        assert_ok(&service, "the service account's bind");
    }

    #[test]
    fn slapd_start_tls_works() {
        let ldap = Slapd::start();
        ldap.add_ldif(&alice_and_bob());
        // -ZZ: StartTLS must succeed (certificate verified) or the search fails.
        let found = search_as_service(&ldap, &ldap.ldap_url(), &["-ZZ"], Slapd::STAFF, "(uid=bob)", &["uid"]);
        assert_ok(&found, "ldapsearch -ZZ");
        assert_eq!(entries(&found), 1, "{}", stdout(&found));
        let whoami = run(
            &ldap,
            "ldapwhoami",
            &["-ZZ", "-x", "-H", &ldap.ldap_url(), "-D", &Slapd::user_dn("alice"), "-w", "alice-pw"],
        );
        assert_ok(&whoami, "ldapwhoami -ZZ");
    }

    #[test]
    fn slapd_member_of_follows_groups() {
        let mut ldap = Slapd::start();
        ldap.add_ldif(&alice_and_bob());
        ldap.add_ldif(&Slapd::group_ldif("Clinicians", &["alice"]));
        let member_of = |ldap: &Slapd, uid: &str| {
            let found =
                search_as_service(ldap, &ldap.ldap_url(), &[], &Slapd::user_dn(uid), "(objectClass=*)", &["memberOf"]);
            assert_ok(&found, "memberOf search");
            stdout(&found).lines().filter_map(|l| l.strip_prefix("memberOf: ").map(str::to_owned)).collect::<Vec<_>>()
        };
        let clinicians = Slapd::group_dn("Clinicians");
        assert_eq!(member_of(&ldap, "alice"), vec![clinicians.clone()]);
        assert!(member_of(&ldap, "bob").is_empty());

        ldap.modify_ldif(&format!(
            "dn: {clinicians}\nchangetype: modify\nadd: member\nmember: {}\n",
            Slapd::user_dn("bob")
        ));
        assert_eq!(member_of(&ldap, "bob"), vec![clinicians.clone()]);
        ldap.modify_ldif(&format!(
            "dn: {clinicians}\nchangetype: modify\ndelete: member\nmember: {}\n",
            Slapd::user_dn("alice")
        ));
        assert!(member_of(&ldap, "alice").is_empty());

        // The data outlives a kill and restart, on the same ports.
        let port = ldap.ldap_port();
        ldap.stop();
        assert!(!accepts(port));
        ldap.start_again();
        assert_eq!(ldap.ldap_port(), port);
        assert_eq!(member_of(&ldap, "bob"), vec![clinicians]);
    }

    /// `slapadd` writes the population's memberOf values itself; the overlay
    /// takes over for later changes.
    #[test]
    fn slapd_population_has_member_of_and_groups_for_everyone() {
        let ldap = Slapd::start_with_population(3, 5);
        let found =
            search_as_service(&ldap, &ldap.ldap_url(), &[], Slapd::GROUPS, "(objectClass=groupOfNames)", &["cn"]);
        assert_ok(&found, "group search");
        assert_eq!(entries(&found), 5);
        let user =
            search_as_service(&ldap, &ldap.ldap_url(), &[], Slapd::STAFF, "(sAMAccountName=user00001)", &["memberOf"]);
        let text = stdout(&user);
        for j in Slapd::population_groups(1, 5) {
            assert!(text.contains(&format!("memberOf: {}", Slapd::group_dn(&Slapd::population_group(j)))), "{text}");
        }
        let bind = run(
            &ldap,
            "ldapwhoami",
            &["-x", "-H", &ldap.ldap_url(), "-D", &Slapd::user_dn("user00002"), "-w", "pw-user00002"],
        );
        assert_ok(&bind, "a population user's bind");
    }

    /// A search that does not page stops at the size limit; one that pages
    /// gets every entry.
    #[test]
    fn slapd_searches_past_the_size_limit_must_page() {
        let users = Slapd::SIZE_LIMIT + 100;
        let ldap = Slapd::start_with_population(users, 10);
        let filter = "(objectClass=inetOrgPerson)";

        let unpaged = search_as_service(&ldap, &ldap.ldap_url(), &[], Slapd::STAFF, filter, &["uid"]);
        assert_eq!(unpaged.status.code(), Some(4), "size limit exceeded: {unpaged:?}");
        assert!(String::from_utf8_lossy(&unpaged.stderr).contains("Size limit exceeded"), "{unpaged:?}");
        assert_eq!(entries(&unpaged), Slapd::SIZE_LIMIT);

        let paged =
            search_as_service(&ldap, &ldap.ldap_url(), &["-E", "pr=500/noprompt"], Slapd::STAFF, filter, &["uid"]);
        assert_ok(&paged, "paged search");
        assert_eq!(entries(&paged), users);
    }

    /// The size of a large trust: 15,000 people in 200 groups, loaded and
    /// served well within a minute.
    #[test]
    fn slapd_fifteen_thousand_users_start_quickly() {
        let (users, groups) = (15_000, 200);
        let started = Instant::now();
        let ldap = Slapd::start_with_population(users, groups);
        let elapsed = started.elapsed();
        println!("slapd with {users} users in {groups} groups started in {elapsed:?}");
        assert!(elapsed < Duration::from_secs(30), "took {elapsed:?}");

        let paging = Instant::now();
        let paged = search_as_service(
            &ldap,
            &ldaps_ip_url(&ldap),
            &["-E", "pr=1000/noprompt"],
            Slapd::STAFF,
            "(&(objectClass=inetOrgPerson)(userAccountControl=512))",
            &["sAMAccountName", "memberOf"],
        );
        assert_ok(&paged, "paged search of the population");
        assert_eq!(entries(&paged), users);
        assert_eq!(stdout(&paged).matches("memberOf: ").count(), users * 2);
        println!("paged ldaps search of {users} users took {:?}", paging.elapsed());

        let last = Slapd::population_uid(users - 1);
        let bind = run(
            &ldap,
            "ldapwhoami",
            &["-x", "-H", &ldap.ldap_url(), "-D", &Slapd::user_dn(&last), "-w", &format!("pw-{last}")],
        );
        assert_ok(&bind, "the last user's bind");
    }
}
