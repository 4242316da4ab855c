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
//! - [`broker`]: the local HTTP broker for desktop apps and the lock
//!   screen, and the client `wardkey-agent status` uses.
//! - [`peer`]: who is asking on a broker socket (peer credentials), and
//!   the allow-list that decides whether they may.
//! - [`desk`]: the lock screen's view of the agent: its screen, its PIN
//!   pad, and the tap-to-desktop clock.
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
pub mod desk;
pub mod enrol;
pub mod fido2;
pub mod hooks;
pub mod keys;
pub mod peer;
pub mod prompt;
pub mod reader;
pub mod state;

pub use agent::{Agent, AgentError, TokenError};
pub use client::ServerError;
pub use config::AgentConfig;
pub use prompt::PinSource;
pub use reader::{Lines, ReaderSpec};

/// Log to standard error (the journal, under systemd) with `default` as the
/// filter unless `RUST_LOG` says otherwise; colours only on a terminal.
/// Both programs, `wardkey-agent` and `wardkey-desk`, log this way. Only
/// the first call takes effect.
pub fn init_tracing(default: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(default))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init()
        .ok();
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use secrecy::SecretString;
    use wardkey_proto::oauth::TokenResponse;
    use wardkey_proto::tap::UserSummary;

    use crate::enrol::EnrolOptions;
    use crate::fido2::KeyFile;
    use crate::keys::{Signer, WorkstationKey};
    use crate::state::ActiveSession;

    /// Nothing the agent holds prints a secret through `Debug`.
    #[test]
    fn debug_redacts_every_secret() {
        let (key, der) = WorkstationKey::generate().unwrap();
        let signer = Signer::new(key, "ws_1", "https://idp.example");
        let client = crate::client::ServerClient::new(signer, Duration::from_secs(1)).unwrap();
        let shown = [
            format!(
                "{:?}",
                EnrolOptions {
                    config_path: "agent.toml".into(),
                    server: "https://idp.example".into(),
                    code: "SECRET-code".into(),
                    force: false,
                }
            ),
            format!(
                "{:?}",
                KeyFile {
                    credential_id: "cred".into(),
                    user_handle: "user".into(),
                    private_key: "SECRET-key".into(),
                    counter: 1,
                }
            ),
            format!(
                "{:?}",
                ActiveSession {
                    user: UserSummary { username: "alice".into(), name: None },
                    ticket: SecretString::from("SECRET-ticket"),
                    generation: 1,
                }
            ),
            format!(
                "{:?}",
                TokenResponse {
                    access_token: "SECRET-access".into(),
                    token_type: "Bearer".into(),
                    expires_in: 60,
                    refresh_token: None,
                    id_token: Some("SECRET-id".into()),
                    scope: None,
                    issued_token_type: None,
                }
            ),
            format!("{client:?}"),
        ];
        let der_b64 = {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&der)
        };
        for shown in shown {
            assert!(!shown.contains("SECRET"), "{shown}");
            assert!(!shown.contains(&der_b64), "{shown}");
        }
    }
}
