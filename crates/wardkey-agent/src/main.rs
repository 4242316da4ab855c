//! `wardkey-agent`: enrol this workstation, run the tap-and-go agent, or
//! show its state. Thin: parse arguments, set up logging, call the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wardkey_agent::config::{BrokerAddress, DEFAULT_CONFIG_FILE};
use wardkey_agent::enrol::{EnrolOptions, enrol};
use wardkey_agent::fido2::ctap2::{CardSlot, Ctap2Key};
use wardkey_agent::{Agent, AgentConfig, Lines, PinSource, ReaderSpec, broker, init_tracing};
use wardkey_proto::broker::WorkstationState;

/// The Wardkey tap-and-go workstation agent. No `Debug` (nor on
/// [`Command`]): `enrol --code` holds the one-time enrolment code.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// The agent's config file.
    #[arg(long, global = true, default_value = DEFAULT_CONFIG_FILE)]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Enrol this workstation with a one-time code from IT (makes and keeps
    /// its key, and writes agent.toml).
    Enrol {
        /// The Wardkey server URL.
        #[arg(long)]
        server: String,
        /// The one-time enrolment code from `wardkey workstation enrol`.
        #[arg(long)]
        code: String,
        /// Replace an existing workstation key.
        #[arg(long)]
        force: bool,
    },
    /// Run the agent: read badge taps, serve the local token broker.
    Run {
        /// Badge reader: stdin, pcsc or fifo:PATH (default: from agent.toml).
        #[arg(long)]
        reader: Option<ReaderSpec>,
        /// Broker socket: unix:PATH (default: from agent.toml).
        #[arg(long)]
        broker: Option<BrokerAddress>,
        /// The workstation key (default: `key_file` from agent.toml). The
        /// packaged unit passes the copy systemd hands the service
        /// (LoadCredential), so the key on disk stays root's alone.
        #[arg(long)]
        key_file: Option<PathBuf>,
    },
    /// Print a token for an EPR app, for the clinician at the keyboard (the
    /// broker's `POST /v1/token`; for launch scripts).
    Token {
        /// The EPR app's client id (registered with the token_exchange grant).
        client_id: String,
        /// Print only the access token, not the JSON token response.
        #[arg(long)]
        access_token: bool,
        /// Broker socket: unix:PATH (default: from agent.toml).
        #[arg(long)]
        broker: Option<BrokerAddress>,
    },
    /// Show who is signed in at this workstation (asks the running agent).
    Status {
        /// Print the broker's JSON.
        #[arg(long)]
        json: bool,
        /// Broker socket: unix:PATH (default: from agent.toml).
        #[arg(long)]
        broker: Option<BrokerAddress>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Enrol { server, code, force } => {
            init_tracing("warn");
            let options = EnrolOptions { config_path: cli.config.clone(), server, code, force };
            let answer = enrol(&options).await.context("enrolment failed")?;
            println!(
                "Enrolled as {:?} on ward {:?} (workstation id {}); settings written to {}",
                answer.name,
                answer.ward,
                answer.workstation_id,
                cli.config.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { reader, broker, key_file } => {
            let mut config = AgentConfig::load(&cli.config)?;
            // Paths given on the command line are relative to the current
            // directory, those in agent.toml to the file's directory.
            if let Some(reader) = reader {
                config.reader = match reader {
                    ReaderSpec::Fifo(path) => ReaderSpec::Fifo(std::path::absolute(path)?),
                    other => other,
                };
            }
            if let Some(BrokerAddress::Unix(path)) = broker {
                config.broker = BrokerAddress::Unix(std::path::absolute(path)?);
            }
            if let Some(path) = key_file {
                config.key_file = std::path::absolute(path)?;
            }
            init_tracing(&config.log_level);
            run(config).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Token { client_id, access_token, broker } => {
            init_tracing("warn");
            let mut config = AgentConfig::load(&cli.config)?;
            if let Some(BrokerAddress::Unix(path)) = broker {
                config.broker = BrokerAddress::Unix(std::path::absolute(path)?);
            }
            let body = serde_json::to_vec(&serde_json::json!({ "client_id": client_id }))?;
            let (status, answer) = broker::http_request(&config.broker_path(), "POST", "/v1/token", &body).await?;
            if status != 200 {
                let refusal: broker::BrokerError = serde_json::from_slice(&answer)
                    .map_err(|_| anyhow::anyhow!("the broker answered HTTP {status}"))?;
                eprintln!("error: {} ({})", refusal.message, refusal.error);
                return Ok(ExitCode::FAILURE);
            }
            if access_token {
                let token: wardkey_proto::oauth::TokenResponse = serde_json::from_slice(&answer)?;
                println!("{}", token.access_token);
            } else {
                println!("{}", String::from_utf8_lossy(&answer));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { json, broker } => {
            init_tracing("warn");
            let mut config = AgentConfig::load(&cli.config)?;
            if let Some(BrokerAddress::Unix(path)) = broker {
                config.broker = BrokerAddress::Unix(std::path::absolute(path)?);
            }
            let info = broker::fetch_session(&config.broker_path()).await?;
            if json {
                println!("{}", serde_json::to_string(&info)?);
            } else {
                let who = info.user.as_ref().map(|u| match &u.name {
                    Some(name) => format!("{name} ({})", u.username),
                    None => u.username.clone(),
                });
                match (info.state, who) {
                    (WorkstationState::Active, Some(who)) => println!("{}: active, {who}", info.workstation),
                    (WorkstationState::PinRequired, Some(who)) => {
                        println!("{}: waiting for the PIN of {who}", info.workstation)
                    }
                    _ => println!("{}: locked", info.workstation),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn run(config: AgentConfig) -> anyhow::Result<()> {
    let socket = config.broker_path();
    let policy = config.broker_policy()?;
    let reader = config.reader_spec();
    let software_key = config.fido2_software_key.is_some();
    let agent = Agent::new(config).context("cannot start the agent")?;
    let cards = CardSlot::default();
    let badges = Lines::spawn(&reader, &cards)?;
    // FIDO2 keys on a PC/SC reader answer over CTAP2, unless a software
    // key was configured on purpose.
    if reader == ReaderSpec::Pcsc && !software_key {
        agent.set_key_reader(Arc::new(Ctap2Key::new(cards)));
    }
    let pins = PinSource::for_reader(&reader)?;
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone());

    let listener = broker::bind(&socket, &policy).await?;
    tracing::info!(socket = %socket.display(), reader = %reader, workstation = agent.workstation(), "wardkey-agent running");
    let tracker = TaskTracker::new();
    {
        let agent = agent.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            if let Err(e) = broker::serve_listener(listener, agent, policy, shutdown.clone()).await {
                tracing::error!(error = %e, "the token broker stopped");
                shutdown.cancel();
            }
        });
    }
    if pins.is_terminal() {
        eprintln!("wardkey-agent: tap a badge (what is typed here is not shown).");
    }
    agent.run(badges, pins, shutdown.clone()).await;

    shutdown.cancel();
    tracker.close();
    if tokio::time::timeout(Duration::from_secs(5), tracker.wait()).await.is_err() {
        tracing::warn!("the broker did not stop within 5 s");
    }
    let _ = std::fs::remove_file(&socket);
    Ok(())
}

fn spawn_signal_handler(shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                let _ = tokio::signal::ctrl_c().await;
                shutdown.cancel();
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("stopping: locking the workstation first");
        shutdown.cancel();
    });
}
