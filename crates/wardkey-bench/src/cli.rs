//! Command-line arguments.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use wardkey_proto::Redacted;

use crate::duration::parse_duration;
use crate::mix::Mix;
use crate::oidc::ClientAuth;
use crate::setup::parse_env;

/// Load generator for Wardkey: shift-change tap-and-go simulation, and
/// token-endpoint load on any OpenID provider.
///
/// Every run stops by itself after --duration and sends requests only to
/// the server it was given. Point it at test servers, never at production.
#[derive(Debug, Parser)]
#[command(name = "wardkey-bench", version, about, long_about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The modes.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Prepare a running server for shift-change: workstations, clinicians
    /// with badges and PINs, EPR clients, through the admin CLI.
    Setup(SetupArgs),
    /// Drive taps, PINs, tap-overs and token exchanges as workstation
    /// agents do; --shift plays a compressed 12-hour ward shift.
    ShiftChange(ShiftChangeArgs),
    /// Load the token endpoint of any OpenID provider: client_credentials
    /// and refresh-token rotation.
    Oidc(OidcArgs),
}

/// `setup`.
#[derive(Debug, Args)]
pub struct SetupArgs {
    /// The running Wardkey server (its /tap/enrol is called).
    #[arg(long, value_name = "URL")]
    pub server: String,
    /// Where to write the fixture (test credentials in clear; mode 0600).
    #[arg(long, value_name = "FILE")]
    pub fixture: PathBuf,
    /// The admin CLI. It works on the server's store: run setup where the
    /// server's configuration applies, or pass --config / --env.
    #[arg(long, value_name = "PATH", default_value = "wardkey")]
    pub wardkey: PathBuf,
    /// Passed to every admin command as --config.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Extra environment for the admin commands (repeatable), e.g.
    /// WARDKEY_STORE__URL=sqlite://./data/wardkey.db
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
    /// Workstations to create and enrol.
    #[arg(long, default_value_t = 20)]
    pub workstations: usize,
    /// Clinicians (users with a badge and a PIN).
    #[arg(long, default_value_t = 60)]
    pub clinicians: usize,
    /// EPR clients allowed token exchange (K exchanges per login).
    #[arg(long, default_value_t = 3)]
    pub clients: usize,
    /// Wards to spread workstations and clinicians over.
    #[arg(long, default_value_t = 1)]
    pub wards: usize,
    /// Prefix of every name created [default: bench-RANDOM]
    #[arg(long)]
    pub prefix: Option<String>,
    /// Admin commands run at once (each opens the store).
    #[arg(long, default_value_t = 2)]
    pub jobs: usize,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

/// How much load, for how long, and where the results go.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Open loop: requests due each second on a fixed timetable. Latency
    /// counts from when each request was due, so queueing shows.
    #[arg(long, value_name = "PER_SECOND", conflicts_with = "saturate")]
    pub rate: Option<f64>,
    /// With --saturate: workers sending back to back. With --rate: the most
    /// requests in flight [default: every workstation, or 64 for oidc].
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,
    /// Closed loop: --concurrency workers, each sending its next request as
    /// soon as the last is answered. Finds the maximum throughput.
    #[arg(long, requires = "concurrency")]
    pub saturate: bool,
    /// Measured time, after the warmup [default: 30s; --shift: the
    /// compressed shift]
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Load before measuring starts (connections, caches, sessions).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Give up on one request after this long.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// After the last due request, how long queued ones may still go out.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub drain: Duration,
    /// Seed for every random choice, to repeat a run [default: random,
    /// shown in the report]
    #[arg(long)]
    pub seed: Option<u64>,
    /// Write the full report as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write latency plots (SVG): by percentile, and over the run.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// No progress bar (it is also hidden when stderr is not a terminal).
    #[arg(long, short)]
    pub quiet: bool,
}

/// `shift-change`.
#[derive(Debug, Args)]
pub struct ShiftChangeArgs {
    /// The fixture from setup.
    #[arg(long, value_name = "FILE")]
    pub fixture: PathBuf,
    /// The server [default: the one in the fixture]
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// Episode weights: hot (resume a live session, then lock), pin (first
    /// tap of a shift), switch (tap-over) [default: hot=88,switch=10,pin=2]
    #[arg(long, value_parser = Mix::parse, conflicts_with = "only")]
    pub mix: Option<Mix>,
    /// Only one kind of episode: hot, pin or switch.
    #[arg(long, value_parser = ["hot", "pin", "switch"])]
    pub only: Option<String>,
    /// Token exchanges after each login [default: one per EPR client in the
    /// fixture]
    #[arg(long, value_name = "K")]
    pub exchanges: Option<usize>,
    /// Play a ward's shift instead: each clinician taps on their own
    /// timetable and the report gives each one's total wait.
    #[arg(long, conflicts_with_all = ["rate", "saturate", "mix", "only"])]
    pub shift: bool,
    /// --shift: how many times faster than real time (720: 12 h in 1 min).
    #[arg(long, default_value_t = 720.0, requires = "shift")]
    pub compress: f64,
    /// --shift: length of the real shift.
    #[arg(long, default_value = "12h", value_parser = parse_duration, requires = "shift")]
    pub shift_length: Duration,
    /// --shift: clinicians on the shift.
    #[arg(long, default_value_t = 30, requires = "shift")]
    pub shift_clinicians: usize,
    /// --shift: badge taps per clinician per shift.
    #[arg(long, default_value_t = 60, requires = "shift")]
    pub taps: usize,
    /// --shift: the ward [default: the fixture's first]
    #[arg(long, requires = "shift")]
    pub ward: Option<String>,
    /// Load options.
    #[command(flatten)]
    pub load: LoadArgs,
}

/// `oidc`. `Debug` hides the client secret and the refresh tokens.
#[derive(Args)]
pub struct OidcArgs {
    /// The provider's issuer URL (discovery is fetched from it).
    #[arg(long, value_name = "URL")]
    pub issuer: String,
    /// The client id.
    #[arg(long)]
    pub client_id: String,
    /// The client secret (better from the environment than the command
    /// line, which other users can see).
    #[arg(long, env = "WARDKEY_BENCH_CLIENT_SECRET", hide_env_values = true)]
    pub client_secret: String,
    /// A refresh token to rotate (repeatable: one worker per token).
    #[arg(long = "refresh-token", value_name = "TOKEN")]
    pub refresh_tokens: Vec<String>,
    /// Refresh tokens, one a line. Rewritten at the end with the latest
    /// token of each chain (the ones read are spent by rotation).
    #[arg(long, value_name = "FILE")]
    pub refresh_token_file: Option<PathBuf>,
    /// Weights of client_credentials and refresh [default: each that is
    /// possible, equally]
    #[arg(long, value_parser = Mix::parse)]
    pub mix: Option<Mix>,
    /// `scope` for client_credentials.
    #[arg(long)]
    pub scope: Option<String>,
    /// Client authentication [default: from discovery, basic first]
    #[arg(long, value_enum)]
    pub auth: Option<ClientAuth>,
    /// Load options.
    #[command(flatten)]
    pub load: LoadArgs,
}

impl std::fmt::Debug for OidcArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcArgs")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &Redacted)
            .field("refresh_tokens", &vec![Redacted; self.refresh_tokens.len()])
            .field("refresh_token_file", &self.refresh_token_file)
            .field("mix", &self.mix)
            .field("scope", &self.scope)
            .field("auth", &self.auth)
            .field("load", &self.load)
            .finish()
    }
}

/// How the load is made, resolved from the options.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Model {
    /// Fixed arrival rate, at most `max_in_flight` at once.
    Open {
        /// Per second.
        rate: f64,
        /// Cap on workers, if given.
        max_in_flight: Option<usize>,
    },
    /// N workers back to back.
    Closed {
        /// Workers.
        workers: usize,
    },
}

impl LoadArgs {
    /// The load model, or a message saying which options to give.
    pub fn model(&self) -> anyhow::Result<Model> {
        match (self.rate, self.saturate, self.concurrency) {
            (Some(rate), false, n) => {
                if n == Some(0) {
                    anyhow::bail!("--concurrency must be at least 1");
                }
                Ok(Model::Open { rate, max_in_flight: n })
            }
            (None, true, Some(n)) if n > 0 => Ok(Model::Closed { workers: n }),
            (None, true, _) => anyhow::bail!("--saturate needs --concurrency N (at least 1)"),
            _ => anyhow::bail!(
                "choose the load: --rate R (open loop, fixed arrival rate) or --concurrency N --saturate (closed loop)"
            ),
        }
    }

    /// The measured duration, 30 s unless given.
    pub fn duration(&self) -> Duration {
        self.duration.unwrap_or(Duration::from_secs(30))
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn load_models() {
        let cli = Cli::parse_from([
            "wardkey-bench",
            "shift-change",
            "--fixture",
            "f.json",
            "--rate",
            "200",
            "--duration",
            "20s",
        ]);
        let Command::ShiftChange(args) = cli.command else { panic!() };
        assert_eq!(args.load.model().unwrap(), Model::Open { rate: 200.0, max_in_flight: None });
        assert_eq!(args.load.duration(), Duration::from_secs(20));
        let cli =
            Cli::parse_from(["wardkey-bench", "shift-change", "--fixture", "f", "--concurrency", "8", "--saturate"]);
        let Command::ShiftChange(args) = cli.command else { panic!() };
        assert_eq!(args.load.model().unwrap(), Model::Closed { workers: 8 });
        assert_eq!(args.load.duration(), Duration::from_secs(30), "bounded by default");
        let cli = Cli::parse_from(["wardkey-bench", "shift-change", "--fixture", "f"]);
        let Command::ShiftChange(args) = cli.command else { panic!() };
        assert!(args.load.model().is_err());
        assert!(
            Cli::try_parse_from(["wardkey-bench", "shift-change", "--fixture", "f", "--rate", "1", "--saturate"])
                .is_err()
        );
        assert!(Cli::try_parse_from(["wardkey-bench", "shift-change", "--fixture", "f", "--saturate"]).is_err());
        assert!(
            Cli::try_parse_from(["wardkey-bench", "shift-change", "--fixture", "f", "--shift", "--rate", "5"]).is_err()
        );
        assert!(Cli::try_parse_from(["wardkey-bench", "shift-change", "--fixture", "f", "--compress", "5"]).is_err());
    }
}
