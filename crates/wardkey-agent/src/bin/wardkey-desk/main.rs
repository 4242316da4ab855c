//! `wardkey-desk`: the desktop part of the Wardkey agent, run in the
//! clinician's (or the kiosk user's) graphical session.
//!
//! - the lock screen ([`screen`]): full screen while locked, a PIN pad when
//!   a PIN is asked for, gone while someone is signed in;
//! - the per-user broker ([`proxy`]): `$XDG_RUNTIME_DIR/wardkey/broker.sock`,
//!   where desktop EPR apps ask for tokens, checked by peer credentials
//!   against `desk_allow` and forwarded to the agent's own socket.
//!
//! The privileged part (reader, workstation key, server link) is the
//! `wardkey-agent run` system service; this process holds no secret but the
//! PIN being typed. GTK runs on the main thread, Tokio on one worker
//! thread; they talk over two channels ([`link`]).

mod link;
mod proxy;
mod screen;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use link::ToScreen;
use tokio_util::sync::CancellationToken;
use wardkey_agent::AgentConfig;
use wardkey_agent::broker::ServeError;
use wardkey_agent::config::{BrokerAddress, DEFAULT_CONFIG_FILE};

/// The Wardkey lock screen and per-user token broker.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// The agent's config file (read for `broker` and `desk_allow`).
    #[arg(long, default_value = DEFAULT_CONFIG_FILE)]
    config: PathBuf,
    /// The agent's socket: unix:PATH (default: `broker` in agent.toml).
    #[arg(long)]
    agent: Option<BrokerAddress>,
    /// Serve the per-user broker here: unix:PATH (default:
    /// $XDG_RUNTIME_DIR/wardkey/broker.sock).
    #[arg(long)]
    broker: Option<BrokerAddress>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("wardkey-desk-io")
        .enable_all()
        .build()
        .context("cannot start")?;
    let shutdown = CancellationToken::new();
    let (to_screen, screens) = tokio::sync::mpsc::unbounded_channel();
    let (to_agent, from_screen) = tokio::sync::mpsc::unbounded_channel();
    let mut session_lock = false;
    let mut served = None;
    match setup(&cli, &runtime) {
        Ok(Setup { config, agent, broker, listener, policy }) => {
            tracing::info!(broker = %broker.display(), agent = %agent.display(), "wardkey-desk running");
            session_lock = config.desk_session_lock;
            let app = proxy::router(link::client(&agent), policy);
            runtime.spawn(wardkey_agent::broker::serve_app(listener, app, shutdown.clone()));
            runtime.spawn(link::run(agent, to_screen, from_screen, shutdown.clone()));
            served = Some(broker);
        }
        // Another lock screen already serves this session: it covers the
        // screen, and a second one would never go away.
        Err(SetupError::AlreadyRunning(e)) => return Err(e),
        // Anything else still covers the screen, saying why: a lock screen
        // that cannot start must not leave the desktop open.
        Err(SetupError::Broken(e)) => {
            wardkey_agent::init_tracing("info");
            tracing::error!("{e:#}");
            let _ = to_screen
                .send(ToScreen::Lost(format!("This PC's lock screen cannot start ({e:#}). Call the IT service desk.")));
        }
    }

    let code = screen::run(screens, to_agent, session_lock);

    shutdown.cancel();
    if let Some(broker) = served {
        let _ = std::fs::remove_file(&broker);
    }
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    Ok(if code == gtk4::glib::ExitCode::SUCCESS { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// What a working desk runs with.
struct Setup {
    config: AgentConfig,
    agent: PathBuf,
    broker: PathBuf,
    listener: tokio::net::UnixListener,
    policy: wardkey_agent::peer::PeerPolicy,
}

/// Why the desk cannot serve.
enum SetupError {
    /// Another desk serves this session's broker.
    AlreadyRunning(anyhow::Error),
    /// Config, environment or socket trouble.
    Broken(anyhow::Error),
}

fn setup(cli: &Cli, runtime: &tokio::runtime::Runtime) -> Result<Setup, SetupError> {
    let broken = SetupError::Broken;
    let config = AgentConfig::load(&cli.config).map_err(|e| broken(e.into()))?;
    wardkey_agent::init_tracing(&config.log_level);
    let policy = config.desk_policy().map_err(|e| broken(e.into()))?;
    let agent = match &cli.agent {
        Some(BrokerAddress::Unix(path)) => std::path::absolute(path).map_err(|e| broken(e.into()))?,
        None => config.broker_path(),
    };
    let broker = match &cli.broker {
        Some(BrokerAddress::Unix(path)) => std::path::absolute(path).map_err(|e| broken(e.into()))?,
        None => {
            let runtime_dir = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()).ok_or_else(|| {
                broken(anyhow::anyhow!(
                    "XDG_RUNTIME_DIR is not set: start wardkey-desk inside the desktop session \
                     (or name the broker socket with --broker unix:PATH)"
                ))
            })?;
            PathBuf::from(runtime_dir).join("wardkey/broker.sock")
        }
    };
    let listener = match runtime.block_on(wardkey_agent::broker::bind_with_mode(&broker, 0o600)) {
        Ok(listener) => listener,
        Err(e @ ServeError::InUse(_)) => return Err(SetupError::AlreadyRunning(e.into())),
        Err(e) => return Err(broken(anyhow::Error::new(e).context("cannot serve the per-user broker"))),
    };
    Ok(Setup { config, agent, broker, listener, policy })
}
