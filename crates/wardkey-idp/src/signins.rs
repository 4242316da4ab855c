//! The login-time ledger: every completed sign-in, at a ward PC or in a
//! browser, is measured, counted by method and ward, credited with the time
//! it saved, and recorded in the audit log (`signin`), from which the
//! console's per-day and per-month figures are summed. Ops ask "how long
//! does a login take on Ward 7, and how much time did we save this month?";
//! Prometheus answers from the metrics, the console from the audit log, and
//! both come from this one call.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;

use crate::audit::AuditLog;
use crate::config::MetricsSettings;
use crate::metrics::{LockoutLabels, MethodLabels, Metrics, StepLabels, WardLabel};
use crate::sessions::PendingAuthorization;

/// The ward label of a sign-in made at no workstation.
pub const NO_WARD: &str = "none";

/// How someone signed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// A badge tap resuming a session checked within the PIN grace.
    Badge,
    /// A badge tap and the PIN.
    BadgePin,
    /// A username and password.
    Password,
    /// A passkey or security key.
    Passkey,
}

impl Method {
    /// The `method` label and the audit detail's word.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Badge => "badge",
            Method::BadgePin => "badge_pin",
            Method::Password => "password",
            Method::Passkey => "passkey",
        }
    }

    /// The step of `wardkey_login_step_seconds` the sign-in's time is.
    fn step(self) -> &'static str {
        match self {
            Method::Badge => "tap",
            Method::BadgePin => "pin",
            Method::Password => "password",
            Method::Passkey => "passkey",
        }
    }
}

/// One completed sign-in.
#[derive(Debug)]
pub struct SignIn<'a> {
    /// How.
    pub method: Method,
    /// Who.
    pub username: &'a str,
    /// Where: the workstation's name and ward, if at one.
    pub workstation: Option<(&'a str, &'a str)>,
    /// How long it took, as the server saw it: a tap's handling; the PIN
    /// prompt to the PIN's answer (typing included); the sign-in page
    /// shown to signed in.
    pub took: Duration,
    /// The application it was for, if any.
    pub client_id: Option<&'a str>,
    /// The client's address, if known.
    pub address: Option<IpAddr>,
}

/// Records sign-ins. Cheap to clone.
#[derive(Clone)]
pub struct SignIns {
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) audit: AuditLog,
    pub(crate) baselines: MetricsSettings,
}

impl SignIns {
    /// Measure, count, credit and record `signin` (queued: no store write
    /// on the tap hot path).
    pub fn record(&self, signin: SignIn<'_>) {
        let ward = signin.workstation.map_or(NO_WARD, |(_, ward)| ward);
        let seconds = signin.took.as_secs_f64();
        let baseline = match signin.method {
            Method::Badge | Method::BadgePin => self.baselines.badge_baseline,
            Method::Password => self.baselines.password_baseline,
            Method::Passkey => self.baselines.passkey_baseline,
        };
        let saved = (baseline.as_secs_f64() - seconds).max(0.0);
        self.step(signin.method.step(), ward, signin.took);
        let method = signin.method.as_str();
        self.metrics.signins.get_or_create(&MethodLabels { method, ward: ward.to_string() }).inc();
        self.metrics.time_saved.get_or_create(&WardLabel { ward: ward.to_string() }).inc_by(saved);
        let detail = json!({
            "method": method,
            "ward": ward,
            "workstation": signin.workstation.map(|(name, _)| name),
            "seconds": round_ms(seconds),
            "saved_seconds": round_ms(saved),
            "client_id": signin.client_id,
            "address": signin.address.map(|a| a.to_string()),
        });
        tracing::info!(
            user = signin.username,
            method,
            ward,
            workstation = signin.workstation.map(|(name, _)| name),
            seconds = round_ms(seconds),
            client_id = signin.client_id,
            "signed in"
        );
        self.audit.queue("signin", signin.username, signin.username, detail);
    }

    /// A sign-in in a browser (no ward) by `method`: timed from the sign-in
    /// page first shown for `pending`, else from `started` (a direct visit).
    pub fn record_browser(
        &self,
        method: Method,
        username: &str,
        pending: Option<&PendingAuthorization>,
        started: Instant,
        address: Option<IpAddr>,
    ) {
        let took = pending.filter(|p| p.shown_ms > 0).map_or(started.elapsed(), |p| since_ms(p.shown_ms));
        let client_id = pending.map(|p| p.client_id.as_str());
        self.record(SignIn { method, username, workstation: None, took, client_id, address });
    }

    /// Observe one step of a login on `ward` (`none` for no workstation).
    pub fn step(&self, step: &'static str, ward: &str, took: Duration) {
        self.metrics.login_step.get_or_create(&StepLabels { step, ward: ward.to_string() }).observe(took.as_secs_f64());
    }

    /// A wrong PIN on `ward`.
    pub fn wrong_pin(&self, ward: &str) {
        tracing::info!(ward, "wrong PIN");
        self.metrics.wrong_pins.get_or_create(&WardLabel { ward: ward.to_string() }).inc();
    }

    /// A badge (`badge`) or account (`password`) locked on `ward`.
    pub fn lockout(&self, kind: &'static str, ward: &str) {
        tracing::warn!(kind, ward, "locked after too many failures");
        self.metrics.lockouts.get_or_create(&LockoutLabels { kind, ward: ward.to_string() }).inc();
    }
}

/// Milliseconds since the Unix epoch, for timing steps that span requests
/// (kept in the cache between them).
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// The time since `then_ms` (from [`now_ms`]); zero if the clock went back
/// or `then_ms` is unknown (0).
pub fn since_ms(then_ms: i64) -> Duration {
    if then_ms <= 0 {
        return Duration::ZERO;
    }
    Duration::from_millis(u64::try_from(now_ms() - then_ms).unwrap_or(0))
}

fn round_ms(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}
