//! Real backing services for tests. Each test starts its own `redis-server`
//! or PostgreSQL cluster (`initdb` + `pg_ctl`) in a temporary directory on a
//! free port and stops it when the handle drops, so tests never depend on a
//! service someone left running and pass on a fresh machine. Browser tests
//! get a headless Chromium the same way ([`chromium`]).
//!
//! Under `CI=true` a missing binary is a failure, never a skip: the README's
//! test command installs the packages.

#![warn(missing_docs)]

pub mod chromium;
pub mod postgres;
pub mod redis;

/// A free TCP port on 127.0.0.1 (bound, then released for the server).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on 127.0.0.1")
}
