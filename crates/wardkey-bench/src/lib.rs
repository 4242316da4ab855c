//! `wardkey-bench`: the load tool for Wardkey, and for any OpenID provider.
//!
//! Three modes (see [`cli`]):
//!
//! - `setup` creates workstations, clinicians with badges and PINs, and EPR
//!   clients on a running server through its admin CLI, enrols each
//!   workstation's key as the agent would, and writes a fixture.
//! - `shift-change` drives those workstations as real agents: first taps
//!   with a PIN, re-taps that resume or lock, tap-overs between clinicians,
//!   and token exchanges after each login ([`shift_change`]); with `--shift`
//!   it plays a ward's 12-hour shift compressed in time and reports each
//!   clinician's total wait ([`shift`]).
//! - `oidc` loads the token endpoint of any provider found by discovery
//!   ([`oidc`]).
//!
//! Load is open loop (a fixed arrival rate on a timetable, latency counted
//! from when each request was due, so a stalling server cannot hide its
//! queue: no coordinated omission) or closed loop (N workers back to back),
//! see [`engine`] and [`schedule`]. Latencies go into HDR histograms per
//! operation ([`stats`]) and come out as a table, a JSON report and an SVG
//! plot by percentile and over the run ([`report`], [`plot`]).
//!
//! Only `wardkey-proto` is shared with the server: the tool speaks HTTP as
//! agents and apps do, and never links server code, so what it measures is
//! what a ward PC gets. Every run ends by itself after its duration and
//! sends requests only to the URL it was given.

#![warn(missing_docs)]

pub mod cli;
pub mod commands;
pub mod duration;
pub mod engine;
pub mod fixture;
pub mod jws;
pub mod mix;
pub mod oidc;
pub mod plot;
pub mod progress;
pub mod report;
pub mod schedule;
pub mod setup;
pub mod shift;
pub mod shift_change;
pub mod stats;
pub mod wire;

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::fixture::{FixtureClinician, FixtureWorkstation};

    /// The fixture and the `oidc` options hold test credentials: none of
    /// them prints through `Debug`.
    #[test]
    fn debug_redacts_every_secret() {
        let ws =
            FixtureWorkstation { name: "pc".into(), ward: "A".into(), id: "ws_1".into(), pkcs8: "SECRET-key".into() };
        let clinician = FixtureClinician {
            username: "alice".into(),
            ward: "A".into(),
            badge: "SECRET-badge".into(),
            pin: "SECRET-pin".into(),
        };
        let cli = crate::cli::Cli::try_parse_from([
            "wardkey-bench",
            "oidc",
            "--issuer",
            "http://127.0.0.1:9",
            "--client-id",
            "c",
            "--client-secret",
            "SECRET-client",
            "--refresh-token",
            "SECRET-refresh",
        ])
        .unwrap();
        for shown in [format!("{ws:?}"), format!("{clinician:?}"), format!("{cli:?}")] {
            assert!(!shown.contains("SECRET"), "{shown}");
            assert!(shown.contains("<redacted>"), "{shown}");
        }
    }
}
