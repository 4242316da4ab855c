//! Real backing services for tests. Each test starts its own `redis-server`
//! or PostgreSQL cluster (`initdb` + `pg_ctl`) in a temporary directory on a
//! free port and stops it when the handle drops, so tests never depend on a
//! service someone left running and pass on a fresh machine. Browser tests
//! get a headless Chromium the same way ([`chromium`]), and the lock screen
//! an X server ([`xvfb`]). Directory sync tests get an OpenLDAP `slapd`
//! laid out like Active Directory ([`slapd`]), with LDAPS and StartTLS under
//! a test CA.
//!
//! [`fixtures`] holds the directory records (users, badges, workstations)
//! the integration tests and the benches both set up.
//!
//! Under `CI=true` a missing binary is a failure, never a skip: the README's
//! test command installs the packages.

#![warn(missing_docs)]

pub mod chromium;
pub mod fixtures;
pub mod postgres;
pub mod redis;
pub mod slapd;
pub mod xvfb;

/// Install aws-lc-rs as rustls's process-wide provider, once: rustls
/// cannot choose by itself when both ring (reqwest) and aws-lc-rs are
/// built, and every test server and bench needs it before the first TLS
/// handshake.
pub fn install_crypto() {
    static CRYPTO: std::sync::Once = std::sync::Once::new();
    CRYPTO.call_once(|| {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    });
}

/// A free TCP port on 127.0.0.1 (bound, then released for the server).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on 127.0.0.1")
}

/// Panic with instructions when `program` (Debian package `package`) cannot
/// be run: a test that needs it must fail, never pass by skipping.
fn missing_program(program: &str, package: &str, error: std::io::Error) -> ! {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    panic!(
        "cannot run {program}{}: {error}. Run the README's test command, `./scripts/test`, \
         which installs it (Debian package `{package}`), or install it yourself.",
        if ci { " on this CI runner" } else { "" }
    );
}
