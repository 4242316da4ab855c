//! The Wardkey identity server: an OpenID Connect provider for clinical
//! workstations.
//!
//! How the modules fit:
//! - [`app`] builds the router and runs the server; [`config`] loads and
//!   validates settings; [`state::AppState`] is what every handler receives.
//! - [`oidc`] holds one module per endpoint; [`grants`] the token endpoint's
//!   grants; [`tokens`] mints tokens; [`client_auth`] authenticates clients;
//!   [`keys`] signs and verifies our JWTs.
//! - [`sessions`] is typed access to the session cache; [`password`] runs
//!   argon2 off the runtime; [`cookies`], [`params`] and [`pages`] are the
//!   small HTTP helpers; [`error`] maps every error to a response.
//!
//! Handlers talk to the store and cache only through their traits; nothing
//! here knows which backend is configured.

#![warn(missing_docs)]

pub mod admission;
pub mod app;
pub mod backchannel;
pub mod client_auth;
pub mod config;
pub mod cookies;
pub mod directory;
pub mod error;
pub mod grants;
pub mod health;
pub mod keys;
pub mod metrics;
pub mod oidc;
pub mod pages;
pub mod params;
pub mod password;
pub mod sessions;
pub mod state;
pub mod tap;
pub mod tokens;
pub mod webauthn;

pub use app::{Application, router, shutdown_signal};
pub use config::Settings;
