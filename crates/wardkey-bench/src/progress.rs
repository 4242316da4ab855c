//! The progress bar: elapsed time against the planned run, with requests,
//! errors and the current rate, so an operator sees at once when a run goes
//! wrong. Drawn on stderr only when it is a terminal and `--quiet` is not
//! given, so logs and CI output stay clean.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::time::Instant;

/// Counters every worker bumps, and the bar that shows them.
#[derive(Clone)]
pub struct Progress {
    bar: ProgressBar,
    done: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
}

impl Progress {
    /// A bar for a run of `planned`; hidden when `quiet` or stderr is not a
    /// terminal.
    pub fn new(planned: Duration, quiet: bool) -> Self {
        let bar = if quiet || !std::io::stderr().is_terminal() {
            ProgressBar::hidden()
        } else {
            let bar = ProgressBar::with_draw_target(Some(planned.as_millis() as u64), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template("{prefix:>9} [{bar:30}] {elapsed}/{duration_planned} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .with_key("duration_planned", move |_: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{}", crate::duration::show(planned));
                })
                .progress_chars("=> ");
            bar.set_style(style);
            bar
        };
        Self { bar, done: Arc::new(AtomicU64::new(0)), errors: Arc::new(AtomicU64::new(0)) }
    }

    /// A counting bar (for `setup`: one step per admin command).
    pub fn steps(len: u64, quiet: bool) -> Self {
        let bar = if quiet || !std::io::stderr().is_terminal() {
            ProgressBar::hidden()
        } else {
            let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template("{prefix:>9} [{bar:30}] {pos}/{len} {msg}") {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        };
        Self { bar, done: Arc::new(AtomicU64::new(0)), errors: Arc::new(AtomicU64::new(0)) }
    }

    /// One request answered, or failed.
    pub fn count(&self, ok: bool) {
        self.done.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Requests answered so far.
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// Failures so far.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// Advance a counting bar by one step.
    pub fn step(&self, message: &str) {
        self.bar.inc(1);
        self.bar.set_message(message.to_string());
    }

    /// Name the phase (`warmup`, `measuring`, `draining`).
    pub fn phase(&self, phase: &'static str) {
        self.bar.set_prefix(phase);
    }

    /// Redraw every 200 ms until the returned handle is aborted.
    pub fn spawn_ticker(&self, start: Instant) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut last = (Instant::now(), 0u64);
            let mut interval = tokio::time::interval(Duration::from_millis(200));
            loop {
                interval.tick().await;
                let now = Instant::now();
                let done = me.done();
                let rate = (done - last.1) as f64 / now.duration_since(last.0).as_secs_f64().max(1e-3);
                last = (now, done);
                me.bar.set_position(now.saturating_duration_since(start).as_millis() as u64);
                me.bar.set_message(format!("{done} requests, {} errors, {rate:.0}/s", me.errors()));
            }
        })
    }

    /// Print a line above the bar (or plainly when hidden).
    pub fn println(&self, line: &str) {
        if self.bar.is_hidden() {
            eprintln!("{line}");
        } else {
            self.bar.println(line);
        }
    }

    /// Remove the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
