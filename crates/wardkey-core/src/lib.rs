//! Wardkey's domain: the users, clients, sessions and keys the identity
//! server reasons about, and the rules that need no I/O (PKCE, redirect URI
//! matching, password hashing parameters, token digests).
//!
//! Everything here is plain data plus pure functions so that the store, the
//! cache and the HTTP layer agree on one vocabulary, and so that the rules can
//! be tested without a server. Time comes in through [`clock::Clock`].

#![warn(missing_docs)]

pub mod audit;
pub mod badge;
pub mod client;
pub mod clock;
pub mod error;
pub mod keys;
pub mod password;
pub mod pkce;
pub mod secret;
pub mod session;
pub mod user;
pub mod workstation;

pub use error::ValidationError;
