//! Metric names, shared so dashboards, the load tool and the server agree.
//! Latencies are histograms in seconds.

/// Histogram: time to handle an HTTP request, by `route` and `status`.
pub const HTTP_REQUEST_DURATION: &str = "wardkey_http_request_duration_seconds";
/// Counter: password logins by `outcome` (`success`, `failure`, `throttled`).
pub const LOGINS_TOTAL: &str = "wardkey_logins_total";
/// Histogram: time spent verifying a password (argon2 plus queueing).
pub const PASSWORD_VERIFY_DURATION: &str = "wardkey_password_verify_duration_seconds";
/// Counter: tokens issued by `grant`.
pub const TOKENS_ISSUED_TOTAL: &str = "wardkey_tokens_issued_total";
/// Counter: token endpoint errors by `error`.
pub const TOKEN_ERRORS_TOTAL: &str = "wardkey_token_errors_total";
/// Counter: badge taps and PIN entries by `kind` (`active`, `switched`,
/// `locked`, `pin_required`, `wrong_pin`, `logged_out`).
pub const TAPS_TOTAL: &str = "wardkey_taps_total";
/// Histogram: badge read to unlocked desktop, as agents measure it.
pub const TAP_TO_ACTIVE: &str = "wardkey_tap_to_active_seconds";
/// Histogram: back-channel logout delivery time per attempt.
pub const BACKCHANNEL_DELIVERY: &str = "wardkey_backchannel_logout_delivery_seconds";
/// Counter: back-channel logout attempts that failed (each is retried).
pub const BACKCHANNEL_FAILURES_TOTAL: &str = "wardkey_backchannel_logout_failures_total";
/// Counter: badges tapped on two wards within the cloned-badge window.
pub const CLONED_BADGE_TOTAL: &str = "wardkey_cloned_badge_suspected_total";
/// Counter: refresh-token or code reuse detected (a family revoked).
pub const TOKEN_REUSE_DETECTED_TOTAL: &str = "wardkey_token_reuse_detected_total";

/// Histogram: one step of a login, by `step` and `ward` (wards come from
/// enrolled workstations; `none` for a sign-in at no workstation):
/// `tap` (badge read to the server's answer), `pin` (PIN prompt to the
/// PIN's answer, typing included), `desktop` (badge read to unlocked
/// desktop, agent-reported), `token_exchange`, `password`, `passkey`
/// (the sign-in page shown to signed in).
pub const LOGIN_STEP_SECONDS: &str = "wardkey_login_step_seconds";
/// Counter: completed sign-ins by `method` (`badge`, `badge_pin`,
/// `password`, `passkey`) and `ward`.
pub const SIGNINS_TOTAL: &str = "wardkey_signins_total";
/// Counter: wrong PINs by `ward`.
pub const WRONG_PINS_TOTAL: &str = "wardkey_wrong_pins_total";
/// Counter: badges and accounts locked by too many failures, by `kind`
/// (`badge`, `password`) and `ward`.
pub const LOCKOUTS_TOTAL: &str = "wardkey_lockouts_total";
/// Counter: seconds saved by `ward`: for each sign-in, the configured
/// baseline for its method (`[metrics]`, default the published 105 s)
/// minus the time it took.
pub const TIME_SAVED_SECONDS_TOTAL: &str = "wardkey_time_saved_seconds_total";
/// Gauge: 1 if the `backend` (`store`, `cache`) answered its last check
/// (made at each scrape), else 0.
pub const BACKEND_UP: &str = "wardkey_backend_up";
/// Gauge: how long the `backend`'s last check took, in seconds.
pub const BACKEND_PING_SECONDS: &str = "wardkey_backend_ping_seconds";
/// Counter: audit records that could not be written (each is logged).
pub const AUDIT_WRITE_FAILURES_TOTAL: &str = "wardkey_audit_write_failures_total";

/// Every metric name the server exports, for dashboards' tests.
pub const ALL: &[&str] = &[
    HTTP_REQUEST_DURATION,
    LOGINS_TOTAL,
    PASSWORD_VERIFY_DURATION,
    TOKENS_ISSUED_TOTAL,
    TOKEN_ERRORS_TOTAL,
    TAPS_TOTAL,
    TAP_TO_ACTIVE,
    BACKCHANNEL_DELIVERY,
    BACKCHANNEL_FAILURES_TOTAL,
    CLONED_BADGE_TOTAL,
    TOKEN_REUSE_DETECTED_TOTAL,
    LOGIN_STEP_SECONDS,
    SIGNINS_TOTAL,
    WRONG_PINS_TOTAL,
    LOCKOUTS_TOTAL,
    TIME_SAVED_SECONDS_TOTAL,
    BACKEND_UP,
    BACKEND_PING_SECONDS,
    AUDIT_WRITE_FAILURES_TOTAL,
];
