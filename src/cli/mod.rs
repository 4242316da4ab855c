//! The `wardkey` command line, as DESIGN.md lists it: one module per
//! command group, each owning its clap types and its `run`; [`shared`] has
//! what they have in common. Nothing here reaches into the server's
//! internals: groups use the store and the domain crates, and `serve`
//! starts the server through its public `Application`.

mod audit;
mod badge;
mod client;
mod directory;
mod keys;
mod scim;
mod session;
mod shared;
mod store;
mod user;
mod workstation;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use wardkey_idp::Settings;
use wardkey_idp::config::LogFormat;

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
    Serve {
        /// Create a new, empty store if there is none at `store.url`
        /// (without it, a missing store is an error, so a wrong path or
        /// database never starts a server that knows nobody).
        #[arg(long)]
        init: bool,
    },
    /// Manage users.
    #[command(subcommand)]
    User(user::UserCommand),
    /// Manage relying parties (EPR apps).
    #[command(subcommand)]
    Client(client::ClientCommand),
    /// Manage signing keys.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Manage ward workstations running the tap-and-go agent.
    #[command(subcommand)]
    Workstation(workstation::WorkstationCommand),
    /// Manage badges.
    #[command(subcommand)]
    Badge(badge::BadgeCommand),
    /// Manage SSO sessions.
    #[command(subcommand)]
    Session(session::SessionCommand),
    /// Manage the durable store.
    #[command(subcommand)]
    Store(store::StoreCommand),
    /// Sync users from the trust's directories (LDAP / Active Directory).
    #[command(subcommand)]
    Directory(directory::DirectoryCommand),
    /// Provisioning over SCIM 2.0 (Entra ID and other provisioners).
    #[command(subcommand)]
    Scim(scim::ScimCommand),
    /// Read, verify and export the tamper-evident audit log.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
}

/// Load settings: `--config FILE` must exist; otherwise `./wardkey.toml` if
/// present; then the environment.
/// `/etc/wardkey/wardkey.toml` is read when there is no `./wardkey.toml`,
/// so an admin on a packaged server need not pass `--config`. Says which
/// file was read, if any.
fn load_settings(config: Option<PathBuf>) -> anyhow::Result<(Settings, Option<PathBuf>)> {
    let (path, explicit) = match config {
        Some(p) => (p, true),
        None => {
            let local = PathBuf::from("wardkey.toml");
            let system = PathBuf::from(SYSTEM_CONFIG);
            (if !local.exists() && system.exists() { system } else { local }, false)
        }
    };
    let settings = Settings::load(Some(&path), explicit)?;
    Ok((settings, path.exists().then_some(path)))
}

/// Where a packaged server keeps its configuration.
const SYSTEM_CONFIG: &str = "/etc/wardkey/wardkey.toml";

fn init_tracing(settings: &Settings) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&settings.log.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour codes only for a person at a terminal, never into journald or
    // a log file.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match settings.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// Run the parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let (mut settings, file) = load_settings(cli.config)?;
    match cli.command {
        Command::Serve { init } => {
            init_tracing(&settings);
            match &file {
                Some(path) => tracing::info!(config = %path.display(), "configuration read"),
                None => tracing::info!("no configuration file: running on the built-in defaults"),
            }
            // The README's first command, on a fresh machine with no
            // configuration at all, makes the embedded store (and says so).
            let built_in = file.is_none() && settings.store.url == wardkey_idp::config::StoreSettings::default().url;
            settings.store.create_if_missing = init || built_in;
            let app = wardkey_idp::Application::build(settings).await.context("starting the server")?;
            app.run_until(wardkey_idp::shutdown_signal()).await
        }
        Command::User(cmd) => user::run(&settings, cmd, cli.json).await,
        Command::Client(cmd) => client::run(&settings, cmd, cli.json).await,
        Command::Keys(cmd) => keys::run(&settings, cmd, cli.json).await,
        Command::Workstation(cmd) => workstation::run(&settings, cmd, cli.json).await,
        Command::Badge(cmd) => badge::run(&settings, cmd, cli.json).await,
        Command::Session(cmd) => session::run(&settings, cmd, cli.json).await,
        Command::Store(cmd) => store::run(&settings, cmd, cli.json).await,
        Command::Directory(cmd) => directory::run(&settings, cmd, cli.json).await,
        Command::Scim(cmd) => scim::run(&settings, cmd, cli.json).await,
        Command::Audit(cmd) => audit::run(&settings, cmd, cli.json).await,
    }
}
