//! The Wardkey identity server: an OpenID Connect provider for clinical
//! workstations.
//!
//! Where a request goes: [`app::router`] → a handler in an endpoint module
//! ([`oidc`], [`grants`], [`tap`], [`webauthn`], [`health`]) → a service on
//! [`state::AppState`] → the store and cache traits. The README's layout
//! section follows `POST /token` through these layers.
//!
//! - Services, each owning what it uses and tested without HTTP:
//!   [`sessions`], [`attachments`], [`desks`] (unlocking a workstation),
//!   [`client_auth`], [`workstation_auth`],
//!   [`tokens`], [`backchannel`] (logouts), [`logins`] (password and PIN
//!   verdicts), [`passkeys`] (WebAuthn ceremonies and key levels),
//!   [`directory`], [`admission`], [`cookies`], [`metrics`], [`keys`].
//! - [`kv`] is the session cache's key layout; [`config`] loads and
//!   validates settings; [`error`] maps every error to a response in one
//!   place; [`pages`] and [`params`] are small HTTP helpers; [`password`]
//!   runs argon2 off the runtime.
//!
//! Modules never import each other in a circle (`scripts/module-cycles`
//! checks it in CI): endpoints depend on services, services on each other
//! downward and on the store and cache traits, never on `state` or an
//! endpoint. Nothing here knows which store or cache backend is configured.

#![warn(missing_docs)]

pub mod admin;
pub mod admission;
pub mod app;
pub mod attachments;
pub mod audit;
pub mod audit_sink;
pub mod backchannel;
pub mod client_auth;
pub mod config;
pub mod console;
pub mod cookies;
pub mod desks;
pub mod directory;
pub mod directory_sync;
pub mod error;
pub mod grants;
pub mod health;
pub mod keys;
pub mod kv;
pub mod logins;
pub mod metrics;
pub mod oidc;
pub mod pages;
pub mod params;
pub mod passkeys;
pub mod password;
pub mod scim;
pub mod sessions;
pub mod signins;
pub mod state;
pub mod tap;
#[cfg(test)]
mod testkit;
pub mod tokens;
pub mod webauthn;
pub mod workstation_auth;

pub use app::{Application, router, shutdown_signal};
pub use config::Settings;
