//! The three modes wired together: options in, load out, report printed.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;

use crate::cli::{LoadArgs, Model, OidcArgs, SetupArgs, ShiftChangeArgs};
use crate::duration::show;
use crate::engine::{Finished, Pacer, RunOptions, run_closed, run_open};
use crate::fixture::{Fixture, write_private};
use crate::jws::{self, unix_now};
use crate::mix::{Mix, pick};
use crate::oidc::{self, ClientAuth, Provider, Worker};
use crate::progress::Progress;
use crate::report::{self, LoadReport, Outputs, RunInfo};
use crate::schedule::Timetable;
use crate::setup::{self, SetupOptions};
use crate::shift::{self, ShiftPlan, Ward};
use crate::shift_change::{Agent, DEFAULT_MIX, EPISODES, Pool, Shared, choose_agents};
use crate::wire::{Wardkey, base_url, discover, http_client};

/// Ctrl-C cancels the run; the report still covers what was measured.
fn cancel_on_ctrl_c() -> CancellationToken {
    let cancel = CancellationToken::new();
    let token = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\nstopping: Ctrl-C");
            token.cancel();
        }
    });
    cancel
}

/// Print and write the report; a run in which every request failed exits
/// non-zero, so a script notices a wrong URL or secret.
fn finish(report: &report::Report, load: &LoadArgs) -> anyhow::Result<()> {
    report::emit(report, &outputs(load))?;
    if report.total.count == 0 && report.errors.total > 0 {
        bail!("every request failed ({} errors): see the errors above", report.errors.total);
    }
    Ok(())
}

fn seed(load: &LoadArgs) -> u64 {
    load.seed.unwrap_or_else(|| rand::rng().random())
}

fn outputs(load: &LoadArgs) -> Outputs {
    Outputs { json: load.json.clone(), plot: load.plot.clone() }
}

fn load_report(load: &LoadArgs, model: Model, workers: usize, elapsed: Duration) -> LoadReport {
    let (name, rate, from) = match model {
        Model::Open { rate, .. } => ("open", Some(rate), "scheduled send time"),
        Model::Closed { .. } => ("closed", None, "actual send time"),
    };
    LoadReport {
        model: name.into(),
        rate_per_second: rate,
        concurrency: workers,
        warmup_seconds: load.warmup.as_secs_f64(),
        duration_seconds: load.duration().as_secs_f64(),
        elapsed_seconds: elapsed.as_secs_f64(),
        timeout_seconds: load.timeout.as_secs_f64(),
        latency_from: from.into(),
    }
}

/// Run the actors under `model`: open loop routes each due request to a
/// lane by `weights`; closed loop runs each actor on its own lane.
async fn drive<A: crate::engine::Actor>(
    model: Model,
    lanes: Vec<Vec<A>>,
    weights: Vec<f64>,
    load: &LoadArgs,
    seed: u64,
    progress: &Progress,
    cancel: &CancellationToken,
) -> anyhow::Result<Finished<A>> {
    let options = RunOptions {
        warmup: load.warmup,
        duration: load.duration(),
        drain: load.drain,
        progress: progress.clone(),
        cancel: cancel.clone(),
        pacer: Pacer::Thread,
    };
    Ok(match model {
        Model::Open { rate, .. } => {
            let timetable = Timetable::new(rate, load.warmup, load.duration()).map_err(anyhow::Error::msg)?;
            // Only lanes that have workers get work.
            let weights: Vec<f64> =
                weights.iter().zip(&lanes).map(|(w, lane)| if lane.is_empty() { 0.0 } else { *w }).collect();
            if weights.iter().all(|w| *w == 0.0) {
                bail!("no workers for any kind of request in the mix");
            }
            let mut rng = StdRng::seed_from_u64(seed);
            run_open(lanes, timetable, move |_| pick(&weights, &mut rng), &options).await
        }
        Model::Closed { .. } => {
            let actors =
                lanes.into_iter().enumerate().flat_map(|(lane, list)| list.into_iter().map(move |a| (a, lane)));
            run_closed(actors.collect(), &options).await
        }
    })
}

/// `setup`.
pub async fn setup(args: SetupArgs) -> anyhow::Result<()> {
    let fixture_path = args.fixture.clone();
    let options = SetupOptions {
        server: args.server,
        fixture: args.fixture,
        wardkey: args.wardkey,
        config: args.config,
        env: args.env,
        workstations: args.workstations,
        clinicians: args.clinicians,
        clients: args.clients,
        wards: args.wards,
        prefix: args.prefix,
        jobs: args.jobs,
        quiet: args.quiet,
    };
    let fixture = setup::run(options).await?;
    println!(
        "enrolled {} workstations, {} clinicians with badges and PINs, {} EPR clients on {}",
        fixture.workstations.len(),
        fixture.clinicians.len(),
        fixture.clients.len(),
        fixture.issuer
    );
    println!("fixture: {} (test credentials: keep it private)", fixture_path.display());
    println!("next: wardkey-bench shift-change --fixture {} --rate 200 --duration 20s", fixture_path.display());
    Ok(())
}

/// `shift-change`.
pub async fn shift_change(args: ShiftChangeArgs) -> anyhow::Result<()> {
    let fixture = Fixture::load(&args.fixture)?;
    let server_url = args.server.clone().unwrap_or_else(|| fixture.server.clone());
    let mut notes = Vec::new();
    let http = http_client(args.load.timeout, fixture.workstations.len().max(args.shift_clinicians))?;
    let server = Wardkey::connect(http, &server_url).await?;
    if server.issuer != fixture.issuer {
        bail!(
            "{server_url} is issuer {:?} but the fixture was made for {:?}: its workstation keys are not enrolled there",
            server.issuer,
            fixture.issuer
        );
    }
    let exchanges = args.exchanges.unwrap_or(fixture.clients.len());
    if exchanges > 0 && fixture.clients.is_empty() {
        bail!("--exchanges {exchanges}: the fixture has no EPR clients (run setup with --clients K)");
    }
    let seed = seed(&args.load);
    let cancel = cancel_on_ctrl_c();
    let started_at = unix_now();
    if args.shift {
        return shift_mode(args, fixture, server, exchanges, seed, cancel).await;
    }

    let mix = match (&args.mix, &args.only) {
        (Some(mix), _) => mix.clone(),
        (None, Some(only)) => Mix::parse(&format!("{only}=1")).map_err(anyhow::Error::msg)?,
        (None, None) => Mix::parse(DEFAULT_MIX).map_err(anyhow::Error::msg)?,
    };
    let weights = mix.weights(&EPISODES).map_err(anyhow::Error::msg)?;
    let model = args.load.model()?;
    let limit = match model {
        Model::Open { max_in_flight, .. } => max_in_flight.unwrap_or(usize::MAX),
        Model::Closed { workers } => workers,
    };
    let shared = Arc::new(Shared {
        server: server.clone(),
        clients: fixture.clients.clone(),
        exchanges,
        pool: Pool::new(fixture.clinicians.clone()),
    });
    let wards_of: Vec<String> = fixture.workstations.iter().map(|w| w.ward.clone()).collect();
    let mut rng = StdRng::seed_from_u64(seed);
    let (chosen, sizing) = choose_agents(&wards_of, &shared.pool, limit, &mut rng);
    notes.extend(sizing);
    if chosen.is_empty() {
        bail!("no workstation can be driven: each ward needs at least two clinicians (run setup with more)");
    }
    if let Model::Closed { workers } = model
        && chosen.len() < workers
    {
        notes.push(format!(
            "--concurrency {workers}: only {} workstations can be driven, so {} workers",
            chosen.len(),
            chosen.len()
        ));
    }
    let mut agents = Vec::new();
    for (n, &i) in chosen.iter().enumerate() {
        let w = &fixture.workstations[i];
        let key = jws::from_base64(&w.id, &fixture.issuer, &w.pkcs8)?;
        agents.push(Agent::new(shared.clone(), key, w.ward.clone(), weights.clone(), seed.wrapping_add(n as u64 + 1)));
    }
    let workers = agents.len();
    notes.push(format!(
        "mix hot={},pin={},switch={}; {exchanges} token exchanges per login; {workers} workstations; seed {seed}",
        weights[0], weights[1], weights[2]
    ));
    let progress = Progress::new(args.load.warmup + args.load.duration(), args.load.quiet);
    let finished = drive(model, vec![agents], vec![1.0], &args.load, seed, &progress, &cancel).await?;
    progress.finish();
    let info = RunInfo {
        mode: "shift-change".into(),
        target: server.base().to_string(),
        started_at,
        load: load_report(&args.load, model, workers, finished.elapsed),
        interrupted: cancel.is_cancelled(),
        notes,
    };
    let report = report::build(info, &finished.stats, args.load.duration(), None);
    finish(&report, &args.load)
}

async fn shift_mode(
    args: ShiftChangeArgs,
    fixture: Fixture,
    server: Wardkey,
    exchanges: usize,
    seed: u64,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    if !(args.compress.is_finite() && args.compress >= 1.0) {
        bail!("--compress must be at least 1 (1 plays the shift in real time)");
    }
    if args.taps == 0 || args.shift_clinicians == 0 {
        bail!("--taps and --shift-clinicians must be at least 1");
    }
    let ward_name = match &args.ward {
        Some(w) => w.clone(),
        None => fixture.wards().into_iter().next().context("the fixture has no workstations")?,
    };
    let mut workstations = Vec::new();
    for w in fixture.workstations.iter().filter(|w| w.ward == ward_name) {
        workstations.push(jws::from_base64(&w.id, &fixture.issuer, &w.pkcs8)?);
    }
    if workstations.is_empty() {
        bail!("no workstation of the fixture is on ward {ward_name:?}");
    }
    let clinicians: Vec<_> =
        fixture.clinicians.iter().filter(|c| c.ward == ward_name).take(args.shift_clinicians).cloned().collect();
    let plan = ShiftPlan {
        clinicians: args.shift_clinicians,
        taps: args.taps,
        shift: args.shift_length,
        compress: args.compress,
        exchanges,
        seed,
        drain: args.load.drain,
    };
    let limit = args.load.duration.unwrap_or(plan.compressed());
    let mut notes = vec![
        format!("ward {ward_name:?}; seed {seed}"),
        format!(
            "compressing {}× also makes requests {}× as frequent: first taps of the shift that would be minutes apart \
             arrive together, so PIN entries (argon2, a bounded number at once) queue far more than on a real ward; \
             read pin_entry here as an upper bound",
            args.compress, args.compress
        ),
    ];
    if limit < plan.compressed() {
        notes.push(format!(
            "--duration {} cuts the compressed shift ({}): taps due later were not made",
            show(limit),
            show(plan.compressed())
        ));
    }
    if clinicians.len() < args.shift_clinicians {
        bail!(
            "ward {ward_name:?} has {} clinicians in the fixture, the shift needs {}: run setup with more --clinicians",
            clinicians.len(),
            args.shift_clinicians
        );
    }
    let started_at = unix_now();
    let ward = Arc::new(Ward::new(server.clone(), workstations, clinicians, fixture.clients.clone()));
    let ended = ward.reset().await.context("signing the ward's clinicians out before the shift")?;
    notes.push(format!(
        "before the shift: every workstation locked, {ended} live sessions ended so each first tap needs a PIN"
    ));
    let window = limit.min(plan.compressed());
    let progress = Progress::new(window, args.load.quiet);
    let (stats, shift_report, elapsed) = shift::run(ward, &plan, limit, &progress, &cancel).await?;
    progress.finish();
    let info = RunInfo {
        mode: "shift".into(),
        target: server.base().to_string(),
        started_at,
        load: LoadReport {
            model: "shift".into(),
            rate_per_second: None,
            concurrency: plan.clinicians,
            warmup_seconds: 0.0,
            duration_seconds: window.as_secs_f64(),
            elapsed_seconds: elapsed.as_secs_f64(),
            timeout_seconds: args.load.timeout.as_secs_f64(),
            latency_from: "scheduled tap time (PIN entries and token exchanges: their own send time)".into(),
        },
        interrupted: cancel.is_cancelled(),
        notes,
    };
    let report = report::build(info, &stats, window, Some(shift_report));
    finish(&report, &args.load)
}

/// `oidc`.
pub async fn oidc(args: OidcArgs) -> anyhow::Result<()> {
    let model = args.load.model()?;
    let issuer = base_url(&args.issuer)?;
    let mut tokens = args.refresh_tokens.clone();
    if let Some(path) = &args.refresh_token_file {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        tokens.extend(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from));
    }
    let pool_size = match model {
        Model::Open { max_in_flight, .. } => max_in_flight.unwrap_or(64) + tokens.len(),
        Model::Closed { workers } => workers,
    };
    let http = http_client(args.load.timeout, pool_size)?;
    let doc = discover(&http, &issuer).await?;
    let mut notes = Vec::new();
    if doc.issuer.trim_end_matches('/') != args.issuer.trim_end_matches('/') {
        notes.push(format!("discovery names the issuer {:?}, not {:?}", doc.issuer, args.issuer));
    }
    let offers_cc = doc.grant_types_supported.as_ref().is_some_and(|g| g.iter().any(|g| g == "client_credentials"));
    let weights = match &args.mix {
        Some(mix) => {
            let w = mix.weights(&oidc::KINDS).map_err(anyhow::Error::msg)?;
            if w[oidc::CLIENT_CREDENTIALS] > 0.0 && !offers_cc {
                notes.push("the provider does not list client_credentials in discovery; tried anyway".into());
            }
            w
        }
        None => vec![if offers_cc { 1.0 } else { 0.0 }, if tokens.is_empty() { 0.0 } else { 1.0 }],
    };
    if weights[oidc::REFRESH] > 0.0 && tokens.is_empty() {
        bail!("refresh is in the mix but no --refresh-token or --refresh-token-file was given");
    }
    if weights.iter().all(|w| *w == 0.0) {
        bail!("nothing to load: the provider does not offer client_credentials and no --refresh-token was given");
    }
    let auth = ClientAuth::choose(args.auth, doc.token_endpoint_auth_methods_supported.as_deref());
    let provider = Arc::new(Provider {
        http,
        token_endpoint: doc.token_endpoint.clone(),
        auth,
        client_id: args.client_id.clone(),
        client_secret: args.client_secret.clone(),
        scope: args.scope.clone(),
    });
    let refresh_lane: Vec<Worker> = if weights[oidc::REFRESH] > 0.0 {
        tokens.iter().map(|t| Worker::new(provider.clone(), Some(t.clone()))).collect()
    } else {
        Vec::new()
    };
    let mut spare: Vec<String> = Vec::new();
    let (cc_workers, refresh_lane) = match model {
        Model::Open { max_in_flight, .. } => {
            (if weights[oidc::CLIENT_CREDENTIALS] > 0.0 { max_in_flight.unwrap_or(64) } else { 0 }, refresh_lane)
        }
        Model::Closed { workers } => {
            // Refresh chains take their share of the workers by weight (one
            // worker per chain, at most one chain per token); the rest do
            // client_credentials.
            let total: f64 = weights.iter().sum();
            let chains = if weights[oidc::REFRESH] == 0.0 {
                0
            } else if weights[oidc::CLIENT_CREDENTIALS] == 0.0 {
                workers
            } else {
                ((workers as f64 * weights[oidc::REFRESH] / total).round() as usize).max(1).min(workers - 1)
            };
            let mut refresh_lane = refresh_lane;
            // Tokens without a worker stay as they are, to be written back.
            spare = refresh_lane
                .split_off(chains.min(refresh_lane.len()))
                .iter()
                .filter_map(|w| w.latest_refresh_token().map(String::from))
                .collect();
            let cc = if weights[oidc::CLIENT_CREDENTIALS] > 0.0 { workers - refresh_lane.len() } else { 0 };
            if cc + refresh_lane.len() < workers {
                notes.push(format!(
                    "--concurrency {workers}: only {} refresh tokens, so {} workers",
                    refresh_lane.len(),
                    refresh_lane.len()
                ));
            }
            (cc, refresh_lane)
        }
    };
    if weights[oidc::REFRESH] > 0.0 {
        notes.push(format!(
            "{} refresh chains (rotation: one request in flight per chain, the latest token kept)",
            refresh_lane.len()
        ));
    }
    notes.push(format!("client authentication: {auth:?}; token endpoint {}", doc.token_endpoint));
    let cc_lane: Vec<Worker> = (0..cc_workers).map(|_| Worker::new(provider.clone(), None)).collect();
    let workers = cc_lane.len() + refresh_lane.len();
    let seed = seed(&args.load);
    let cancel = cancel_on_ctrl_c();
    let started_at = unix_now();
    let progress = Progress::new(args.load.warmup + args.load.duration(), args.load.quiet);
    let finished =
        drive(model, vec![cc_lane, refresh_lane], weights.clone(), &args.load, seed, &progress, &cancel).await?;
    progress.finish();

    let chains = finished.actors.iter().filter(|w| w.has_chain()).count();
    let mut latest: Vec<&str> = finished.actors.iter().filter_map(Worker::latest_refresh_token).collect();
    if chains > 0 {
        if latest.len() < chains {
            notes.push(format!("{} of {chains} refresh chains were lost (invalid_grant)", chains - latest.len()));
        }
        latest.extend(spare.iter().map(String::as_str));
        match &args.refresh_token_file {
            Some(path) => {
                let text: String = latest.iter().map(|t| format!("{t}\n")).collect();
                write_private(path, text.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
                notes.push(format!("the latest refresh tokens are in {}", path.display()));
            }
            None => notes.push(
                "the refresh tokens given are spent by rotation; use --refresh-token-file to keep the latest".into(),
            ),
        }
    }
    let info = RunInfo {
        mode: "oidc".into(),
        target: issuer.as_str().trim_end_matches('/').to_string(),
        started_at,
        load: load_report(&args.load, model, workers, finished.elapsed),
        interrupted: cancel.is_cancelled(),
        notes,
    };
    let report = report::build(info, &finished.stats, args.load.duration(), None);
    finish(&report, &args.load)
}
