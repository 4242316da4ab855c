//! The load engine: open loop (fixed arrival rate on a timetable) and
//! closed loop (N workers back to back).
//!
//! A worker ([`Actor`]) is stateful and sequential, as a workstation agent
//! or an OAuth client with one refresh token is: it sends one request at a
//! time. In the open loop, due requests go into a queue per lane and the
//! first free worker of that lane takes the next one; the request's latency
//! runs from when it was due, so a server that falls behind shows its
//! backlog in the latency instead of quietly slowing the tool down. How
//! long requests waited for a free worker is recorded too, to tell a
//! saturated tool from a slow server.
//!
//! Every run ends by itself: nothing new starts after the timetable (or
//! the duration) plus `drain`, and each request is bounded by the HTTP
//! client's timeout. Requests still queued then are counted as unsent.
//!
//! Due requests are released by a [`Pacer`]. Tokio's timer works in whole
//! milliseconds and fires up to a millisecond and a half late, which an
//! open loop would add to every latency (on a sub-millisecond hot path,
//! that doubles it). So real runs release requests from a thread of their
//! own that sleeps with the operating system's timer (tens of
//! microseconds); tests use Tokio's timer, which they can pause.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::progress::Progress;
use crate::schedule::Timetable;
use crate::stats::{ErrorKind, Op, Stats, timeline_step};

/// What one request came to.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// What it was, as the answer showed.
    pub op: Op,
    /// Success, or why not.
    pub result: Result<(), ErrorKind>,
    /// When the answer had fully arrived.
    pub done: Instant,
}

/// A sequential worker that sends one request per step.
pub trait Actor: Send + 'static {
    /// Send the next request, due at `due`, for `lane` (which kind of work
    /// the slot is for, when a run has several). Must send at once.
    fn step(&mut self, due: Instant, lane: usize) -> impl Future<Output = Outcome> + Send;
}

/// What releases due requests on time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pacer {
    /// A dedicated thread sleeping with the OS timer: accurate to tens of
    /// microseconds, for real runs.
    Thread,
    /// Tokio's timer: millisecond steps, but it follows a paused test clock.
    Tokio,
}

/// Release each `(offset, item)` of `items` (offsets from `start`, rising)
/// to `sink` at its due time, on the calling thread, until the items end,
/// `cancel` fires, or `sink` returns false. Blocks: run it on a thread of
/// its own.
pub fn pace_blocking<T>(
    start: std::time::Instant,
    items: impl IntoIterator<Item = (Duration, T)>,
    cancel: &CancellationToken,
    mut sink: impl FnMut(T, std::time::Instant) -> bool,
) {
    for (offset, item) in items {
        let due = start + offset;
        loop {
            if cancel.is_cancelled() {
                return;
            }
            let now = std::time::Instant::now();
            if now >= due {
                break;
            }
            // Wake at least every 50 ms to notice a cancellation.
            std::thread::sleep((due - now).min(Duration::from_millis(50)));
        }
        if !sink(item, due) {
            return;
        }
    }
}

/// How a run is bounded and shown.
#[derive(Clone)]
pub struct RunOptions {
    /// Not measured, at the start.
    pub warmup: Duration,
    /// Measured.
    pub duration: Duration,
    /// After the last due request, how long queued ones may still be sent.
    pub drain: Duration,
    /// The progress bar.
    pub progress: Progress,
    /// Ctrl-C: stop early and report what was measured.
    pub cancel: CancellationToken,
    /// What releases due requests.
    pub pacer: Pacer,
}

/// The workers back, with what each measured, merged.
pub struct Finished<A> {
    /// Every worker, as it ended (for example with its latest refresh
    /// token).
    pub actors: Vec<A>,
    /// Merged measurements.
    pub stats: Stats,
    /// Wall time from the first due request to the last answer.
    pub elapsed: Duration,
}

/// One due request.
#[derive(Debug, Clone, Copy)]
struct Slot {
    due: Instant,
    lane: usize,
    measured: bool,
}

fn note(stats: &mut Stats, progress: &Progress, measured: bool, due: Instant, outcome: Outcome) {
    progress.count(outcome.result.is_ok());
    if !measured {
        return;
    }
    match outcome.result {
        Ok(()) => stats.record_at(outcome.op, outcome.done.saturating_duration_since(due), due),
        Err(kind) => stats.record_error(outcome.op, &kind),
    }
}

/// Open loop: requests due on `timetable`, each sent to the lane `route`
/// picks for its index, taken by the first free worker of that lane.
/// A lane with no workers gets nothing: `route` must only pick lanes that
/// have some.
pub async fn run_open<A: Actor>(
    lanes: Vec<Vec<A>>,
    timetable: Timetable,
    mut route: impl FnMut(u64) -> usize + Send + 'static,
    options: &RunOptions,
) -> Finished<A> {
    // A short lead so that every worker is waiting when the first request
    // is due.
    let start = Instant::now() + Duration::from_millis(20);
    let stop_sending = start + timetable.total() + options.drain;
    // The latency-over-time view starts with the measured window.
    let measure_from = start + options.warmup;
    let step = timeline_step(options.duration);
    let mut senders = Vec::new();
    let mut workers = Vec::new();
    for lane in lanes {
        let (tx, rx) = mpsc::unbounded_channel::<Slot>();
        let rx = Arc::new(Mutex::new(rx));
        senders.push(tx);
        for mut actor in lane {
            let rx = rx.clone();
            let progress = options.progress.clone();
            let cancel = options.cancel.clone();
            workers.push(tokio::spawn(async move {
                let mut stats = Stats::timed(measure_from, step);
                loop {
                    let slot = rx.lock().await.recv().await;
                    let Some(slot) = slot else { break };
                    let picked = Instant::now();
                    if picked >= stop_sending || cancel.is_cancelled() {
                        if slot.measured {
                            stats.unsent += 1;
                        }
                        continue;
                    }
                    if slot.measured {
                        stats.record_queue_delay(picked.saturating_duration_since(slot.due));
                    }
                    let outcome = actor.step(slot.due, slot.lane).await;
                    note(&mut stats, &progress, slot.measured, slot.due, outcome);
                }
                (actor, stats)
            }));
        }
    }
    let ticker = options.progress.spawn_ticker(start);
    options.progress.phase(if options.warmup.is_zero() { "measuring" } else { "warmup" });
    let progress = options.progress.clone();
    // Hand one due request to its lane; false once no lane can take work.
    let mut release = move |i: u64, due: Instant| -> (bool, u64) {
        let measured = timetable.is_measured(i);
        if i > 0 && measured && !timetable.is_measured(i - 1) {
            progress.phase("measuring");
        }
        let lane = route(i);
        let sent = senders.get(lane).map(|tx| tx.send(Slot { due, lane, measured }).is_ok()).unwrap_or(false);
        (true, u64::from(!sent && measured))
    };
    let slots = (0..timetable.len()).map(move |i| (timetable.offset(i), i));
    let unroutable = match options.pacer {
        Pacer::Tokio => {
            let mut unroutable = 0;
            for (offset, i) in slots {
                tokio::select! {
                    _ = tokio::time::sleep_until(start + offset) => {}
                    _ = options.cancel.cancelled() => break,
                }
                unroutable += release(i, start + offset).1;
            }
            // Closes the lanes' queues, so workers finish once drained.
            drop(release);
            unroutable
        }
        Pacer::Thread => {
            let cancel = options.cancel.clone();
            let std_start = start.into_std();
            tokio::task::spawn_blocking(move || {
                let mut unroutable = 0;
                pace_blocking(std_start, slots, &cancel, |i, due| {
                    let (go_on, lost) = release(i, Instant::from_std(due));
                    unroutable += lost;
                    go_on
                });
                unroutable
            })
            .await
            .unwrap_or(0)
        }
    };
    options.progress.phase("draining");
    let mut finished = gather(workers, start).await;
    finished.stats.unsent += unroutable;
    ticker.abort();
    finished
}

/// Closed loop: each worker sends its next request as soon as the last is
/// answered, on its own lane, until the duration is over. Latency is each
/// request's own time: what a saturated server's throughput costs.
pub async fn run_closed<A: Actor>(actors: Vec<(A, usize)>, options: &RunOptions) -> Finished<A> {
    let start = Instant::now();
    let measure_from = start + options.warmup;
    let end = measure_from + options.duration;
    let step = timeline_step(options.duration);
    let mut workers = Vec::new();
    for (mut actor, lane) in actors {
        let progress = options.progress.clone();
        let cancel = options.cancel.clone();
        workers.push(tokio::spawn(async move {
            let mut stats = Stats::timed(measure_from, step);
            loop {
                let due = Instant::now();
                if due >= end || cancel.is_cancelled() {
                    break;
                }
                let outcome = actor.step(due, lane).await;
                note(&mut stats, &progress, due >= measure_from, due, outcome);
            }
            (actor, stats)
        }));
    }
    let ticker = options.progress.spawn_ticker(start);
    let phases = {
        let progress = options.progress.clone();
        let warmup = options.warmup;
        tokio::spawn(async move {
            progress.phase(if warmup.is_zero() { "measuring" } else { "warmup" });
            tokio::time::sleep_until(measure_from).await;
            progress.phase("measuring");
            tokio::time::sleep_until(end).await;
            progress.phase("draining");
        })
    };
    let finished = gather(workers, start).await;
    ticker.abort();
    phases.abort();
    finished
}

async fn gather<A: Actor>(workers: Vec<tokio::task::JoinHandle<(A, Stats)>>, start: Instant) -> Finished<A> {
    let mut actors = Vec::with_capacity(workers.len());
    let mut stats = Stats::new();
    for worker in workers {
        // A worker that panicked is a bug in this tool; say so loudly.
        match worker.await {
            Ok((actor, s)) => {
                stats.merge(&s);
                actors.push(actor);
            }
            Err(e) => eprintln!("warning: a load worker failed: {e}"),
        }
    }
    Finished { actors, stats, elapsed: Instant::now().saturating_duration_since(start) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A worker whose every request takes `service` time.
    struct Fixed {
        service: Duration,
        steps: usize,
    }

    impl Actor for Fixed {
        fn step(&mut self, _due: Instant, lane: usize) -> impl Future<Output = Outcome> + Send {
            let service = self.service;
            self.steps += 1;
            async move {
                tokio::time::sleep(service).await;
                let op = if lane == 0 { Op::TapHot } else { Op::Refresh };
                Outcome { op, result: Ok(()), done: Instant::now() }
            }
        }
    }

    fn options(warmup: u64, duration: u64, drain: u64) -> RunOptions {
        RunOptions {
            warmup: Duration::from_secs(warmup),
            duration: Duration::from_secs(duration),
            drain: Duration::from_secs(drain),
            progress: Progress::new(Duration::from_secs(1), true),
            cancel: CancellationToken::new(),
            pacer: Pacer::Tokio,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_fast_server_shows_its_service_time() {
        let opts = options(1, 4, 1);
        let timetable = Timetable::new(10.0, opts.warmup, opts.duration).unwrap();
        let actors = (0..4).map(|_| Fixed { service: Duration::from_millis(20), steps: 0 }).collect();
        let done = run_open(vec![actors], timetable, |_| 0, &opts).await;
        assert_eq!(done.stats.count(Op::TapHot), 40, "every measured request, warmup excluded");
        assert_eq!(done.actors.iter().map(|a| a.steps).sum::<usize>(), 50, "warmup requests are still sent");
        let h = &done.stats.latency[&Op::TapHot];
        assert!(h.max() < 25_000, "no queueing: {} us", h.max());
        assert_eq!(done.stats.unsent, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_server_shows_the_backlog_not_just_the_service_time() {
        // One worker, 10 requests a second, 200 ms each: the server can do
        // 5 a second, so each request waits longer than the one before.
        let opts = options(0, 2, 10);
        let timetable = Timetable::new(10.0, opts.warmup, opts.duration).unwrap();
        let actors = vec![Fixed { service: Duration::from_millis(200), steps: 0 }];
        let done = run_open(vec![actors], timetable, |_| 0, &opts).await;
        let h = &done.stats.latency[&Op::TapHot];
        assert_eq!(h.len(), 20);
        // The last request was due at 1.9 s and answered at 20 × 0.2 = 4 s.
        let max_ms = h.max() as f64 / 1000.0;
        assert!((2050.0..2150.0).contains(&max_ms), "coordinated omission would show 200 ms, got {max_ms}");
        assert!(h.min() >= 199_000 && h.min() <= 201_000);
        assert!(done.stats.queue_delay.max() > 1_800_000, "the wait for a worker is shown too");
    }

    #[tokio::test(start_paused = true)]
    async fn the_timeline_shows_the_backlog_growing_over_the_measured_window() {
        // As above, after a second of warmup: 20 measured requests, one in
        // each 100 ms step, each waiting longer than the one before.
        let opts = options(1, 2, 10);
        let timetable = Timetable::new(10.0, opts.warmup, opts.duration).unwrap();
        let actors = vec![Fixed { service: Duration::from_millis(200), steps: 0 }];
        let done = run_open(vec![actors], timetable, |_| 0, &opts).await;
        let steps = done.stats.timeline.buckets(Some(Op::TapHot));
        assert_eq!(steps.len(), 20, "warmup left out: {steps:?}");
        assert!(steps.iter().all(|b| b.count == 1 && (b.seconds - 0.1).abs() < 1e-9));
        assert_eq!(steps[0].from_seconds, 0.0);
        assert_eq!(steps[19].from_seconds, 1.9);
        assert!(steps.windows(2).all(|w| w[0].p50_ms <= w[1].p50_ms), "{steps:?}");
        assert!(steps[19].p50_ms > steps[0].p50_ms + 1500.0, "{steps:?}");
        // Closed loop: from the end of warmup too.
        let opts = options(1, 2, 0);
        let done = run_closed(vec![(Fixed { service: Duration::from_millis(100), steps: 0 }, 0)], &opts).await;
        let steps = done.stats.timeline.buckets(None);
        assert_eq!(steps.iter().map(|b| b.count).sum::<u64>(), 20);
        assert_eq!(steps[0].from_seconds, 0.0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_run_stops_by_itself_and_counts_what_it_could_not_send() {
        // 1 s of service for 10 requests a second over 2 s with 1 s drain:
        // the worker gets through about 3, the rest are unsent.
        let opts = options(0, 2, 1);
        let timetable = Timetable::new(10.0, opts.warmup, opts.duration).unwrap();
        let start = Instant::now();
        let done =
            run_open(vec![vec![Fixed { service: Duration::from_secs(1), steps: 0 }]], timetable, |_| 0, &opts).await;
        assert!(Instant::now() - start <= Duration::from_secs(5));
        assert_eq!(done.stats.count(Op::TapHot) + done.stats.unsent, 20);
        assert!(done.stats.unsent >= 15, "{}", done.stats.unsent);
    }

    #[tokio::test(start_paused = true)]
    async fn lanes_route_work_to_their_own_workers() {
        let opts = options(0, 1, 1);
        let timetable = Timetable::new(20.0, opts.warmup, opts.duration).unwrap();
        let lane = |n| (0..n).map(|_| Fixed { service: Duration::from_millis(5), steps: 0 }).collect::<Vec<_>>();
        let done = run_open(vec![lane(2), lane(1)], timetable, |i| (i % 4 == 0) as usize, &opts).await;
        assert_eq!(done.stats.count(Op::Refresh), 5);
        assert_eq!(done.stats.count(Op::TapHot), 15);
        // A lane that does not exist is counted, not lost.
        let done = run_open(vec![lane(1)], timetable, |_| 7, &opts).await;
        assert_eq!(done.stats.unsent, 20);
    }

    #[tokio::test(start_paused = true)]
    async fn closed_loop_keeps_every_worker_busy_for_the_duration() {
        let opts = options(1, 2, 0);
        let actors = (0..3).map(|_| (Fixed { service: Duration::from_millis(100), steps: 0 }, 0)).collect();
        let done = run_closed(actors, &opts).await;
        // 3 workers × 10 requests a second × 2 measured seconds.
        assert_eq!(done.stats.count(Op::TapHot), 60);
        assert_eq!(done.actors.len(), 3);
        let h = &done.stats.latency[&Op::TapHot];
        assert!(h.max() <= 101_000);
    }

    #[tokio::test(start_paused = true)]
    async fn cancelling_stops_early() {
        let opts = options(0, 100, 1);
        let timetable = Timetable::new(10.0, opts.warmup, opts.duration).unwrap();
        let cancel = opts.cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            cancel.cancel();
        });
        let done =
            run_open(vec![vec![Fixed { service: Duration::from_millis(1), steps: 0 }]], timetable, |_| 0, &opts).await;
        let n = done.stats.count(Op::TapHot);
        assert!((18..=22).contains(&n), "{n}");
    }

    #[test]
    fn the_thread_pacer_releases_in_order_and_on_time() {
        let start = std::time::Instant::now() + Duration::from_millis(5);
        let items: Vec<(Duration, usize)> = (0..50).map(|i| (Duration::from_micros(2000 * i as u64), i)).collect();
        let mut seen = Vec::new();
        let mut late = Duration::ZERO;
        pace_blocking(start, items, &CancellationToken::new(), |i, due| {
            let now = std::time::Instant::now();
            assert!(now >= due, "never early");
            late += now - due;
            seen.push(i);
            true
        });
        assert_eq!(seen, (0..50).collect::<Vec<_>>());
        // Loose, for a busy machine: Tokio's timer alone is ~1 ms late.
        assert!(late / 50 < Duration::from_millis(5), "mean lateness {:?}", late / 50);
        // A sink that says stop, stops.
        let mut n = 0;
        pace_blocking(
            std::time::Instant::now(),
            (0..10).map(|i| (Duration::ZERO, i)),
            &CancellationToken::new(),
            |_, _| {
                n += 1;
                n < 3
            },
        );
        assert_eq!(n, 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_thread_pacer_drives_a_real_time_run() {
        let mut opts = options(0, 1, 1);
        opts.pacer = Pacer::Thread;
        let timetable = Timetable::new(100.0, opts.warmup, opts.duration).unwrap();
        let actors = (0..2).map(|_| Fixed { service: Duration::from_millis(1), steps: 0 }).collect();
        let done = run_open(vec![actors], timetable, |_| 0, &opts).await;
        assert_eq!(done.stats.count(Op::TapHot), 100);
        assert_eq!(done.stats.unsent, 0);
    }
}
