//! Password checks off the async runtime, with NIST SP 800-63B §5.2.2
//! throttling.
//!
//! argon2id at OWASP parameters costs ~15 ms of one core. Checks run on the
//! blocking pool behind a semaphore sized by `password.max_concurrent`, so a
//! burst of logins at shift change queues instead of starving the tap hot
//! path of CPU.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Semaphore;
use wardkey_core::password::{self, Argon2Params};

/// Runs argon2 verifications and hashes with bounded concurrency.
#[derive(Debug)]
pub struct PasswordChecker {
    params: Argon2Params,
    permits: Arc<Semaphore>,
}

impl PasswordChecker {
    /// A checker hashing with `params`, at most `max_concurrent` at once.
    pub fn new(params: Argon2Params, max_concurrent: usize) -> Self {
        Self { params, permits: Arc::new(Semaphore::new(max_concurrent)) }
    }

    /// Verify `secret` against `stored`, or against a dummy hash when the
    /// user or credential does not exist, so both take the same time.
    /// Returns the verdict and the seconds spent (queue + hash).
    pub async fn verify(&self, stored: Option<String>, secret: String) -> (bool, f64) {
        let started = Instant::now();
        let Ok(_permit) = self.permits.clone().acquire_owned().await else {
            return (false, 0.0);
        };
        let params = self.params;
        let ok = tokio::task::spawn_blocking(move || match stored {
            Some(stored) => password::verify(&stored, &secret),
            None => password::verify_dummy(&params, &secret),
        })
        .await
        .unwrap_or(false);
        (ok, started.elapsed().as_secs_f64())
    }
}

/// How long a user must wait before the next attempt after `failures`
/// consecutive failures: nothing before `backoff_after`, then doubling from
/// one second, capped at 15 minutes.
pub fn backoff_seconds(failures: u32, backoff_after: u32) -> i64 {
    if failures < backoff_after {
        return 0;
    }
    let step = (failures - backoff_after).min(10);
    (1i64 << step).min(900)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff_seconds(4, 5), 0);
        assert_eq!(backoff_seconds(5, 5), 1);
        assert_eq!(backoff_seconds(6, 5), 2);
        assert_eq!(backoff_seconds(50, 5), 900);
    }
}
