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
