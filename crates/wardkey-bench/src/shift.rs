//! `shift-change --shift`: one ward's 12-hour shift, compressed in time.
//!
//! 30 clinicians (by default) each tap their badge 60 times over the shift
//! at random points of 60 equal stretches (seeded), and each first tap
//! needs their PIN. A tap by a clinician who is at a workstation locks it;
//! otherwise they walk up to a free workstation, or tap over someone when
//! none is free. Every login brings K token exchanges for their apps. Each
//! clinician's machine-side wait is the sum of the latencies of all their
//! requests (taps from when they were due, so a busy server or a busy PC
//! counts), which is the figure to set against the 10 to 105 s per login
//! that trusts report for passwords.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use wardkey_proto::tap::{PinEntry, Tap, TapOut, TapResponse};

use crate::engine::pace_blocking;
use crate::fixture::FixtureClinician;
use crate::jws::{SignNow, Signer};
use crate::progress::Progress;
use crate::report::{ClinicianShift, Reference, ShiftReport, Spread};
use crate::schedule::shift_taps;
use crate::shift_change::state_name;
use crate::stats::{ErrorKind, Op, Stats, timeline_step};
use crate::wire::Wardkey;

/// The shift to play.
#[derive(Debug, Clone)]
pub struct ShiftPlan {
    /// Clinicians on the shift.
    pub clinicians: usize,
    /// Taps each.
    pub taps: usize,
    /// Real length of the shift.
    pub shift: Duration,
    /// Time compression.
    pub compress: f64,
    /// Token exchanges after each login.
    pub exchanges: usize,
    /// Seeds the timetable and the choice of workstations.
    pub seed: u64,
    /// After the last due tap, how long late ones may still be made.
    pub drain: Duration,
}

impl ShiftPlan {
    /// How long the compressed shift runs.
    pub fn compressed(&self) -> Duration {
        Duration::from_secs_f64(self.shift.as_secs_f64() / self.compress)
    }
}

/// One ward's workstations and clinicians, shared by the clinicians' tasks.
pub struct Ward {
    server: Wardkey,
    workstations: Vec<Signer>,
    /// One request at a time per workstation, as its agent sends them.
    in_use: Vec<tokio::sync::Mutex<()>>,
    /// Who is signed in at each workstation, as the answers showed.
    occupant: Mutex<Vec<Option<usize>>>,
    clinicians: Vec<FixtureClinician>,
    clients: Vec<String>,
}

impl Ward {
    /// The ward's workstations and clinicians.
    pub fn new(
        server: Wardkey,
        workstations: Vec<Signer>,
        clinicians: Vec<FixtureClinician>,
        clients: Vec<String>,
    ) -> Self {
        let n = workstations.len();
        Self {
            server,
            workstations,
            in_use: (0..n).map(|_| tokio::sync::Mutex::new(())).collect(),
            occupant: Mutex::new(vec![None; n]),
            clinicians,
            clients,
        }
    }

    fn occupants(&self) -> std::sync::MutexGuard<'_, Vec<Option<usize>>> {
        self.occupant.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sign everyone out and lock every workstation, so that each
    /// clinician's first tap of the shift needs a PIN, as at the start of a
    /// real one. Not measured. Returns how many sessions were ended.
    pub async fn reset(&self) -> anyhow::Result<usize> {
        for ws in &self.workstations {
            let (answer, _) = self.server.tap("/tap/out", ws.tap_now(TapOut { logout: false })).await;
            answer.map_err(|e| anyhow::anyhow!("locking workstation {}: {e}", ws.workstation_id()))?;
        }
        let ws = &self.workstations[0];
        let mut ended = 0;
        for c in &self.clinicians {
            let (answer, _) = self.server.tap("/tap", ws.tap_now(Tap { badge: c.badge.clone() })).await;
            match answer.map_err(|e| anyhow::anyhow!("tapping {}'s badge: {e}", c.username))? {
                TapResponse::Active { .. } | TapResponse::Switched { .. } => {
                    let (out, _) = self.server.tap("/tap/out", ws.tap_now(TapOut { logout: true })).await;
                    out.map_err(|e| anyhow::anyhow!("signing {} out: {e}", c.username))?;
                    ended += 1;
                }
                TapResponse::PinRequired { .. } | TapResponse::Locked | TapResponse::LoggedOut => {}
            }
        }
        Ok(ended)
    }

    /// The workstation clinician `c` taps next, held for the length of the
    /// tap: theirs if they are signed in somewhere, else a free one, else
    /// one to tap over.
    async fn walk_up(&self, c: usize, rng: &mut StdRng) -> (usize, tokio::sync::MutexGuard<'_, ()>) {
        let occupants = self.occupants().clone();
        if let Some(k) = occupants.iter().position(|o| *o == Some(c)) {
            return (k, self.in_use[k].lock().await);
        }
        let mut order: Vec<usize> = (0..self.workstations.len()).collect();
        order.shuffle(rng);
        for only_free in [true, false] {
            for &k in &order {
                if (!only_free || occupants[k].is_none())
                    && let Ok(guard) = self.in_use[k].try_lock()
                {
                    return (k, guard);
                }
            }
        }
        (order[0], self.in_use[order[0]].lock().await)
    }
}

/// What one clinician's task gives back.
struct Shift {
    stats: Stats,
    figures: ClinicianShift,
}

/// Where one request's figures go: the run's histograms, the clinician's
/// own sums, and the progress bar.
struct Tally<'a> {
    stats: &'a mut Stats,
    figures: &'a mut ClinicianShift,
    progress: &'a Progress,
}

fn count(t: &mut Tally<'_>, op: Op, result: &Result<(), ErrorKind>, took: Duration) {
    let (stats, figures) = (&mut *t.stats, &mut *t.figures);
    t.progress.count(result.is_ok());
    figures.requests += 1;
    figures.wait_seconds += took.as_secs_f64();
    figures.slowest_request_ms = figures.slowest_request_ms.max(took.as_secs_f64() * 1000.0);
    match result {
        Ok(()) => stats.record(op, took),
        Err(kind) => {
            figures.errors += 1;
            stats.record_error(op, kind);
        }
    }
}

/// What every clinician's task shares.
#[derive(Clone)]
struct Player {
    ward: Arc<Ward>,
    /// Taps not started by then are counted as unsent.
    stop: Instant,
    /// When the shift's first tap was due: the start of its timeline.
    start: Instant,
    /// The timeline's step.
    step: Duration,
    exchanges: usize,
    seed: u64,
    progress: Progress,
}

/// One clinician's shift: each time a tap falls due (`taps` yields its due
/// time, released by the pacer), walk up to a workstation and tap.
async fn play(ctx: Player, c: usize, mut taps: mpsc::UnboundedReceiver<Instant>) -> Shift {
    let Player { ward, stop, start, step, exchanges, seed, progress } = ctx;
    let mut rng = StdRng::seed_from_u64(seed ^ (c as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut stats = Stats::timed(start, step);
    let clinician = ward.clinicians[c].clone();
    let mut figures = ClinicianShift {
        username: clinician.username.clone(),
        taps: 0,
        pin_entries: 0,
        logins: 0,
        locks: 0,
        switches: 0,
        exchanges: 0,
        requests: 0,
        errors: 0,
        wait_seconds: 0.0,
        wait_per_login_ms: 0.0,
        slowest_request_ms: 0.0,
    };
    while let Some(due) = taps.recv().await {
        if Instant::now() >= stop {
            stats.unsent += 1;
            continue;
        }
        let (k, _held) = ward.walk_up(c, &mut rng).await;
        let ws = &ward.workstations[k];
        figures.taps += 1;
        let (answer, done) = ward.server.tap("/tap", ws.tap_now(Tap { badge: clinician.badge.clone() })).await;
        let tapped = done.saturating_duration_since(due);
        let mut ticket = None;
        match answer {
            Ok(TapResponse::Active { session_ticket, .. }) => {
                count(
                    &mut Tally { stats: &mut stats, figures: &mut figures, progress: &progress },
                    Op::TapHot,
                    &Ok(()),
                    tapped,
                );
                ticket = Some(session_ticket);
            }
            Ok(TapResponse::Switched { session_ticket, .. }) => {
                count(
                    &mut Tally { stats: &mut stats, figures: &mut figures, progress: &progress },
                    Op::Switch,
                    &Ok(()),
                    tapped,
                );
                figures.switches += 1;
                ticket = Some(session_ticket);
            }
            Ok(TapResponse::Locked) => {
                count(
                    &mut Tally { stats: &mut stats, figures: &mut figures, progress: &progress },
                    Op::TapLock,
                    &Ok(()),
                    tapped,
                );
                figures.locks += 1;
                ward.occupants()[k] = None;
            }
            Ok(TapResponse::PinRequired { tap_id, .. }) => {
                count(
                    &mut Tally { stats: &mut stats, figures: &mut figures, progress: &progress },
                    Op::TapPin,
                    &Ok(()),
                    tapped,
                );
                let sent = Instant::now();
                let jws = ws.tap_now(PinEntry { tap_id, pin: clinician.pin.clone() });
                let (answer, done) = ward.server.tap("/tap/pin", jws).await;
                figures.pin_entries += 1;
                let result = match answer {
                    Ok(TapResponse::Active { session_ticket, .. }) => {
                        ticket = Some(session_ticket);
                        Ok(())
                    }
                    Ok(TapResponse::Switched { session_ticket, .. }) => {
                        figures.switches += 1;
                        ticket = Some(session_ticket);
                        Ok(())
                    }
                    Ok(other) => Err(ErrorKind::Unexpected(format!("{} answer to a PIN", state_name(&other)))),
                    Err(kind) => Err(kind),
                };
                count(
                    &mut Tally { stats: &mut stats, figures: &mut figures, progress: &progress },
                    Op::PinEntry,
                    &result,
                    done.saturating_duration_since(sent),
                );
            }
            Ok(other @ TapResponse::LoggedOut) => {
                let kind = ErrorKind::Unexpected(format!("{} answer to a tap", state_name(&other)));
                count(
                    &mut Tally { stats: &mut stats, figures: &mut figures, progress: &progress },
                    Op::TapHot,
                    &Err(kind),
                    tapped,
                );
            }
            Err(kind) => count(
                &mut Tally { stats: &mut stats, figures: &mut figures, progress: &progress },
                Op::TapHot,
                &Err(kind),
                tapped,
            ),
        }
        let Some(ticket) = ticket else { continue };
        figures.logins += 1;
        ward.occupants()[k] = Some(c);
        for j in 0..exchanges {
            let audience = &ward.clients[j % ward.clients.len()];
            let sent = Instant::now();
            let (answer, done) = ward.server.exchange(ws, &ticket, audience).await;
            let result = answer.map(|_| ());
            figures.exchanges += 1;
            count(
                &mut Tally { stats: &mut stats, figures: &mut figures, progress: &progress },
                Op::TokenExchange,
                &result,
                done.saturating_duration_since(sent),
            );
        }
    }
    if figures.logins > 0 {
        figures.wait_per_login_ms = figures.wait_seconds * 1000.0 / figures.logins as f64;
    }
    Shift { stats, figures }
}

/// Play the shift on `ward`; returns the merged measurements, the shift
/// report and the wall time.
pub async fn run(
    ward: Arc<Ward>,
    plan: &ShiftPlan,
    limit: Duration,
    progress: &Progress,
    cancel: &CancellationToken,
) -> anyhow::Result<(Stats, ShiftReport, Duration)> {
    if ward.clinicians.len() < plan.clinicians {
        bail!(
            "the fixture has {} clinicians on this ward, the shift needs {}: run setup with --clinicians {}",
            ward.clinicians.len(),
            plan.clinicians,
            plan.clinicians
        );
    }
    if ward.clients.is_empty() && plan.exchanges > 0 {
        bail!("the fixture has no EPR clients for token exchange");
    }
    let timetable = shift_taps(plan.clinicians, plan.taps, plan.shift, plan.compress, plan.seed);
    // Every tap of every clinician in time order, up to the cut.
    let mut due: Vec<(Duration, usize)> = timetable
        .iter()
        .enumerate()
        .flat_map(|(c, taps)| taps.iter().map(move |t| (*t, c)))
        .filter(|(t, _)| *t < limit)
        .collect();
    due.sort_by_key(|(t, _)| *t);
    let start = Instant::now() + Duration::from_millis(20);
    let ticker = progress.spawn_ticker(start);
    progress.phase("shift");
    let stop = start + limit.min(plan.compressed()) + plan.drain;
    let ctx = Player {
        ward: ward.clone(),
        stop,
        start,
        step: timeline_step(limit.min(plan.compressed())),
        exchanges: plan.exchanges,
        seed: plan.seed,
        progress: progress.clone(),
    };
    let mut inboxes = Vec::new();
    let tasks: Vec<_> = (0..plan.clinicians)
        .map(|c| {
            let (tx, rx) = mpsc::unbounded_channel();
            inboxes.push(tx);
            tokio::spawn(play(ctx.clone(), c, rx))
        })
        .collect();
    let cancel = cancel.clone();
    let std_start = start.into_std();
    let pacer = tokio::task::spawn_blocking(move || {
        pace_blocking(std_start, due, &cancel, |c, at| {
            // A clinician still busy with the last tap gets this one when
            // done; its latency runs from now, when it was due.
            let _ = inboxes[c].send(Instant::from_std(at));
            true
        });
    });
    pacer.await.context("the shift's pacer failed")?;
    let mut stats = Stats::new();
    let mut per_clinician = Vec::new();
    for task in tasks {
        let shift = task.await.context("a clinician's task failed")?;
        stats.merge(&shift.stats);
        per_clinician.push(shift.figures);
    }
    ticker.abort();
    let elapsed = Instant::now().saturating_duration_since(start);
    let waits: Vec<f64> = per_clinician.iter().map(|c| c.wait_seconds).collect();
    let per_login: Vec<f64> = per_clinician.iter().filter(|c| c.logins > 0).map(|c| c.wait_per_login_ms).collect();
    let logins = per_clinician.iter().map(|c| c.logins as f64).sum::<f64>() / per_clinician.len().max(1) as f64;
    let report = ShiftReport {
        shift_hours: plan.shift.as_secs_f64() / 3600.0,
        compress: plan.compress,
        clinicians: plan.clinicians,
        taps_per_clinician: plan.taps,
        workstations: ward.workstations.len(),
        exchanges_per_login: plan.exchanges,
        per_clinician,
        wait_seconds: Spread::of(&waits),
        wait_per_login_ms: Spread::of(&per_login),
        reference: Reference::password_logins(logins),
    };
    Ok((stats, report, elapsed))
}
