//! End-to-end tests: the real server on a free port, driven over HTTP by a
//! real OIDC relying-party library, a cookie-keeping "browser" client, and
//! the `wardkey` binary itself. One test binary, one module per area.

mod agent;
mod attestation;
mod browser;
mod cli;
mod cluster;
mod console;
mod desk;
mod directory;
mod faults;
mod grafana;
mod helpers;
mod oidc_errors;
mod oidc_flow;
mod package;
mod round_trips;
mod scim;
mod serve;
mod tap;
mod tls;
