//! Command-line arguments, as listed in DESIGN.md, and dispatch.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use wardkey_idp::Settings;
use wardkey_idp::config::LogFormat;

use crate::admin;

/// Wardkey: single sign-on for clinical workstations.
#[derive(Debug, Parser)]
#[command(name = "wardkey", version, about)]
pub struct Cli {
    /// Configuration file [default: ./wardkey.toml if present, else built-in defaults]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Machine-readable JSON output for admin commands.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the identity server.
    Serve,
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage relying parties (EPR apps).
    #[command(subcommand)]
    Client(ClientCommand),
    /// Manage signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage ward workstations running the tap-and-go agent.
    #[command(subcommand)]
    Workstation(WorkstationCommand),
    /// Manage badges.
    #[command(subcommand)]
    Badge(BadgeCommand),
    /// Manage SSO sessions.
    #[command(subcommand)]
    Session(SessionCommand),
    /// Manage the durable store.
    #[command(subcommand)]
    Store(StoreCommand),
}

/// `wardkey store …`.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy everything durable from one store into a new, empty one (for
    /// example SQLite to PostgreSQL when moving to several nodes).
    Migrate {
        /// The store to copy from, e.g. sqlite://./data/wardkey.db
        #[arg(long, value_name = "URL")]
        from: String,
        /// The empty store to copy into, e.g. postgres://wardkey@db/wardkey
        #[arg(long, value_name = "URL")]
        to: String,
    },
}

/// `wardkey workstation …`.
#[derive(Debug, Subcommand)]
pub enum WorkstationCommand {
    /// Create a workstation and print its one-time enrolment code.
    Enrol {
        /// A name for it (hostname or location).
        name: String,
        /// Its ward (selects ward policy).
        #[arg(long)]
        ward: String,
    },
    /// List workstations.
    List,
    /// Disable a workstation: its taps are refused at once.
    Disable {
        /// Its name.
        name: String,
    },
    /// Re-enable a workstation.
    Enable {
        /// Its name.
        name: String,
    },
}

/// `wardkey badge …`.
#[derive(Debug, Subcommand)]
pub enum BadgeCommand {
    /// Enrol a badge for a user; the UID is read from stdin (a reader types it).
    Enrol {
        /// Login name of the badge's owner.
        username: String,
        /// Read the badge UID from the first line of stdin (required).
        #[arg(long, required = true)]
        uid_stdin: bool,
    },
    /// Revoke a user's badges: one (UID on stdin) or all.
    Revoke {
        /// Login name of the badge's owner.
        username: String,
        /// Revoke only the badge whose UID is on stdin.
        #[arg(long)]
        uid_stdin: bool,
    },
}

/// `wardkey session …`.
#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// End every session of a user and notify every app (back-channel logout).
    Revoke {
        /// Login name.
        username: String,
    },
}

/// `wardkey user …`.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user.
    Add {
        /// Login name.
        username: String,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
        /// Email address.
        #[arg(long)]
        email: Option<String>,
        /// Role code (repeatable).
        #[arg(long = "role", value_name = "CODE")]
        roles: Vec<String>,
        /// Read the initial password from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users.
    List,
    /// Disable a user: no new sign-ins, refreshes or userinfo.
    Disable {
        /// Login name.
        username: String,
    },
    /// Re-enable a disabled user.
    Enable {
        /// Login name.
        username: String,
    },
    /// Clear the failed sign-in counter of a locked-out user.
    Unlock {
        /// Login name.
        username: String,
    },
    /// Set or replace a user's tap PIN from the first line of stdin.
    SetPin {
        /// Login name.
        username: String,
        /// Read the PIN from stdin (required: secrets never go in arguments).
        #[arg(long, required = true)]
        pin_stdin: bool,
    },
    /// Set or replace a user's password from the first line of stdin.
    SetPassword {
        /// Login name.
        username: String,
        /// Read the password from stdin (required: secrets never go in arguments).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Print a one-time link with which a user who has no password yet sets
    /// up their account.
    Invite {
        /// Login name.
        username: String,
        /// How long the link works: 5m to 7d, e.g. 30m, 24h, 3d.
        #[arg(long, default_value = "24h", value_name = "DURATION")]
        valid_for: String,
    },
    /// List a user's passkeys and security keys, or turn a suspended one
    /// back on.
    Keys {
        /// Login name.
        username: String,
        /// Turn this suspended key back on (a key is suspended when its
        /// signature counter goes backwards: check that it is the person's
        /// own and not a copy first). The id as the list shows it.
        #[arg(long, value_name = "ID", allow_hyphen_values = true)]
        enable: Option<String>,
    },
    /// Remove one of a user's passkeys or security keys (a lost or stolen one).
    RemoveKey {
        /// Login name.
        username: String,
        /// The key's id, as `wardkey user keys` shows it (base64url).
        // A base64url id may begin with '-': it is still the id, not an option.
        #[arg(allow_hyphen_values = true)]
        id: String,
    },
}

/// `wardkey client …`.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Register a client; prints its generated secret once.
    // Boxed: the arguments dwarf the other variants (clippy::large_enum_variant).
    Add(Box<ClientAddArgs>),
    /// List clients.
    List,
    /// Remove a client.
    Remove {
        /// The client id.
        client_id: String,
    },
}

/// Arguments of `wardkey client add`.
#[derive(Debug, Args)]
pub struct ClientAddArgs {
    /// The client id.
    pub client_id: String,
    /// Redirect URI, matched exactly (repeatable).
    #[arg(long = "redirect-uri", value_name = "URI")]
    pub redirect_uris: Vec<String>,
    /// A public client (no secret; PKCE only).
    #[arg(long, conflicts_with_all = ["jwks_uri", "jwks_file"])]
    pub public: bool,
    /// Where RP-initiated logout may return (repeatable).
    #[arg(long = "post-logout-redirect-uri", value_name = "URI")]
    pub post_logout_redirect_uris: Vec<String>,
    /// OIDC Back-Channel Logout endpoint.
    #[arg(long, value_name = "URI")]
    pub backchannel_logout_uri: Option<String>,
    /// JWKS URL for private_key_jwt.
    #[arg(long, value_name = "URI", conflicts_with = "jwks_file")]
    pub jwks_uri: Option<String>,
    /// JWKS file for private_key_jwt.
    #[arg(long, value_name = "FILE")]
    pub jwks_file: Option<PathBuf>,
    /// Grant type (repeatable) [default: authorization_code and refresh_token]
    #[arg(long = "grant-type", value_name = "GRANT")]
    pub grant_types: Vec<String>,
    /// Browser handoff target.
    #[arg(long, value_name = "URI")]
    pub start_url: Option<String>,
    /// ID token signing algorithm: ES256, RS256 or EdDSA.
    #[arg(long, default_value = "ES256", value_name = "ALG")]
    pub id_token_alg: String,
    /// The weakest acr the app accepts (e.g. urn:wardkey:acr:passkey); weaker
    /// sessions step up first [default: any]
    #[arg(long, value_name = "ACR")]
    pub min_acr: Option<String>,
}

/// `wardkey keys …`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Publish new signing keys; old ones stay in /jwks until their tokens expire.
    Rotate,
}

/// Load settings: `--config FILE` must exist; otherwise `./wardkey.toml` if
/// present; then the environment.
fn load_settings(config: Option<PathBuf>) -> anyhow::Result<Settings> {
    let (path, explicit) = match config {
        Some(p) => (p, true),
        None => (PathBuf::from("wardkey.toml"), false),
    };
    Ok(Settings::load(Some(&path), explicit)?)
}

fn init_tracing(settings: &Settings) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&settings.log.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match settings.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// Run the parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = load_settings(cli.config)?;
    match cli.command {
        Command::Serve => {
            init_tracing(&settings);
            let app = wardkey_idp::Application::build(settings).await.context("starting the server")?;
            app.run_until(wardkey_idp::shutdown_signal()).await
        }
        Command::User(cmd) => admin::user(&settings, cmd, cli.json).await,
        Command::Client(cmd) => admin::client(&settings, cmd, cli.json).await,
        Command::Keys(cmd) => admin::keys(&settings, cmd, cli.json).await,
        Command::Workstation(cmd) => admin::workstation(&settings, cmd, cli.json).await,
        Command::Badge(cmd) => admin::badge(&settings, cmd, cli.json).await,
        Command::Session(cmd) => admin::session(&settings, cmd, cli.json).await,
        Command::Store(cmd) => admin::store(cmd, cli.json).await,
    }
}
