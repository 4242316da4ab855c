//! The Wardkey tap-and-go workstation agent.
//!
//! It runs on a shared ward PC, reads badge taps, asks the Wardkey server
//! who the badge belongs to (a request signed with the workstation's own
//! Ed25519 key), prompts for a PIN when the server wants one, locks and
//! switches the desktop through hooks, and hands the clinician's tokens to
//! desktop EPR apps through a local broker on a Unix socket.
//!
//! How the modules fit:
//!
//! - [`config`]: agent.toml, every key with a default.
//! - [`keys`]: the workstation key file and the JWS it signs.
//! - [`enrol`]: one-time enrolment with an admin's code.
//! - [`client`]: HTTP to the server; every failure a typed [`ServerError`].
//! - [`reader`]: badge readers (stdin, FIFO, PC/SC) as clean lines, and the
//!   debounce of repeated reads.
//! - [`prompt`]: where PINs come from; terminal echo off.
//! - [`state`]: the session state machine, pure.
//! - [`hooks`]: commands run on unlock, lock and switch.
//! - [`agent`]: [`Agent`], which wires them together and runs the loop.
//! - [`broker`]: the local HTTP broker for desktop apps, and the client
//!   `wardkey-agent status` uses.
//!
//! The agent depends on `wardkey-proto` for every wire type and never on the
//! server's crates.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use wardkey_agent::{Agent, AgentConfig};
//! let config = AgentConfig::load("agent.toml".as_ref())?;
//! let agent = Agent::new(config)?;
//! let info = agent.handle_tap("04A1B2C3").await?;
//! println!("{:?}", info.state);
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod agent;
pub mod broker;
pub mod client;
pub mod config;
pub mod enrol;
pub mod fido2;
pub mod hooks;
pub mod keys;
pub mod prompt;
pub mod reader;
pub mod state;

pub use agent::{Agent, AgentError, TokenError};
pub use client::ServerError;
pub use config::AgentConfig;
pub use prompt::PinSource;
pub use reader::{Lines, ReaderSpec};
