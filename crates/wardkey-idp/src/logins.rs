//! The password sign-in service: NIST SP 800-63B §5.2.2 throttling and
//! lockout, argon2id verification off the runtime, and the record of the
//! outcome. The login page and badge self-enrolment both ask it, so a
//! password is judged by one rule wherever it is typed.
//!
//! Concurrent guesses are judged one at a time per username: a marker in
//! the cache first, then a claim in the store taken atomically with the
//! lock check, so thirty guesses at once cannot all pass the count before
//! any failure is recorded.

use std::sync::Arc;

use serde_json::json;
use wardkey_cache::Cache;
use wardkey_core::badge::MAX_PIN_FAILURES;
use wardkey_core::clock::SharedClock;
use wardkey_core::secret::digest_b64;
use wardkey_core::user::User;
use wardkey_store::{CredentialKind, Store};

use crate::admission::Admission;
use crate::config::Settings;
use crate::directory::Directory;
use crate::error::BackendError;
use crate::kv::{get_json, keys, put_json};
use crate::metrics::Metrics;
use crate::password::{PasswordChecker, backoff_seconds};

/// Bounds the per-username "check in progress" marker if a node dies
/// mid-check.
const LOGIN_IN_FLIGHT_TTL: std::time::Duration = std::time::Duration::from_secs(10);
/// How long a password check claimed in the store
/// ([`wardkey_store::Store::begin_login_attempt`]) holds if its node dies
/// before recording the outcome.
const LOGIN_ATTEMPT_STALE: std::time::Duration = std::time::Duration::from_secs(60);
/// How long failures of an unknown username are remembered.
const UNKNOWN_USER_WINDOW: std::time::Duration = std::time::Duration::from_secs(3600);

/// What a password check concluded.
#[derive(Debug)]
#[expect(clippy::large_enum_variant, reason = "made once per sign-in and moved straight to its caller, never stored")]
pub enum Verdict {
    /// The right password, for an enabled account.
    Success(User),
    /// A wrong password (or an unknown username: the same answer).
    Wrong,
    /// Too soon after the last failures: try again in this many seconds.
    Throttled(i64),
    /// Locked after too many failures, until the service desk unlocks it.
    Locked,
    /// The right password, for a disabled account.
    Disabled,
    /// The user's directory cannot check a password now (down, or
    /// misconfigured): not counted as a failure, and logged for IT.
    DirectoryUnavailable,
}

/// Failed sign-ins for a username that does not exist, kept like a real
/// account's counter.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct UnknownFailures {
    count: u32,
    last: i64,
}

/// What a PIN check at a workstation concluded.
#[derive(Debug, PartialEq, Eq)]
pub enum PinVerdict {
    /// The right PIN.
    Right,
    /// A wrong PIN; this many tries are left.
    Wrong {
        /// Tries left before the badge locks.
        remaining: u32,
    },
    /// The badge is locked: by this very guess (`just_now`), or already.
    Locked {
        /// Whether this guess was the one that locked it.
        just_now: bool,
    },
    /// Other checks of this badge are under way and use up its remaining
    /// tries: try again in a moment.
    Busy,
}

/// Judges password sign-ins and badge PINs. Cheap to clone.
#[derive(Clone)]
pub struct PasswordLogins {
    /// Where directory users' passwords are checked.
    pub(crate) directories: wardkey_directory::Directories,
    pub(crate) store: Arc<dyn Store>,
    /// Lockouts and directory disables are recorded here.
    pub(crate) audit: crate::audit::AuditLog,
    /// In-flight markers and unknown usernames' failures.
    pub(crate) cache: Arc<dyn Cache>,
    /// This node's directory cache, dropped when a sign-in clears counters.
    pub(crate) directory: Arc<Directory>,
    pub(crate) passwords: Arc<PasswordChecker>,
    /// Bounds the unknown usernames' records anyone can create.
    pub(crate) admission: Arc<Admission>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) clock: SharedClock,
    pub(crate) settings: Arc<Settings>,
}

impl PasswordLogins {
    /// Throttle, verify and record the outcome. Unknown usernames are verified
    /// against a dummy hash and counted in the cache, so they look like known
    /// ones in time and message.
    pub async fn check(&self, username: &str, password: &str) -> Result<Verdict, BackendError> {
        let unknown_key = keys::unknown_user_failures(&digest_b64(&username.to_lowercase()));
        // One check per username at a time, taken before the counters are read:
        // concurrent guesses would otherwise all read the same counters and all
        // pass the backoff test before any failure is recorded.
        let inflight = keys::login_in_flight(&unknown_key);
        if !self.cache.put_if_absent(&inflight, b"1", LOGIN_IN_FLIGHT_TTL).await? {
            return Ok(Verdict::Throttled(1));
        }
        let verdict = self.throttle_and_verify(username, password, &unknown_key).await;
        self.cache.delete(&inflight).await?;
        verdict
    }

    async fn throttle_and_verify(
        &self,
        username: &str,
        password: &str,
        unknown_key: &str,
    ) -> Result<Verdict, BackendError> {
        let cfg = &self.settings.password;
        let now = self.clock.now();
        let user = self.store.user_by_username(username).await?;
        let (failures, last_failed) = match &user {
            Some(u) => (u.failed_logins, u.last_failed_at),
            None => get_json::<UnknownFailures>(self.cache.as_ref(), unknown_key)
                .await?
                .map_or((0, None), |f| (f.count, Some(f.last))),
        };
        if failures >= cfg.lock_after {
            return Ok(Verdict::Locked);
        }
        if let Some(last) = last_failed {
            let wait = last + backoff_seconds(failures, cfg.backoff_after) - now;
            if wait > 0 {
                return Ok(Verdict::Throttled(wait));
            }
        }
        self.verify_and_record(user, username, password, failures, now, unknown_key).await
    }

    async fn verify_and_record(
        &self,
        user: Option<wardkey_core::user::User>,
        username: &str,
        password: &str,
        failures: u32,
        now: i64,
        unknown_key: &str,
    ) -> Result<Verdict, BackendError> {
        let cfg = &self.settings.password;
        if let Some(u) = &user {
            // Claimed in the store before the slow verification, atomically
            // with the lock check: the in-flight marker above is only a cache
            // entry, and a guess must never be judged against a count that a
            // guess still under way will change.
            let stale_before = now - LOGIN_ATTEMPT_STALE.as_secs() as i64;
            if !self.store.begin_login_attempt(&u.id, now, cfg.lock_after, stale_before).await? {
                return Ok(Verdict::Throttled(1));
            }
        }
        let ok = match user.as_ref().and_then(User::ldap_source) {
            // A directory user's password is the directory's to judge.
            Some(source) => match self.check_in_directory(source, user.as_ref(), username, password).await {
                Some(wardkey_directory::PasswordCheck::Right) => true,
                Some(wardkey_directory::PasswordCheck::Wrong) => false,
                Some(wardkey_directory::PasswordCheck::Disabled) => {
                    if let Some(u) = &user {
                        self.store.end_login_attempt(&u.id).await?;
                        // The directory disabled them since the last sync:
                        // disable them now, which ends their sessions (their
                        // badge opens nothing more), rather than at the sync.
                        if !u.disabled {
                            let change = wardkey_store::UserChange::Disable { id: u.id.clone() };
                            self.store.apply_user_changes(&[change], now).await?;
                            self.directory.changed().await;
                            self.audit(
                                "directory",
                                "user.disabled",
                                &u.username,
                                json!({"by": "directory at sign-in"}),
                            )
                            .await;
                        }
                    }
                    return Ok(Verdict::Disabled);
                }
                None => {
                    if let Some(u) = &user {
                        self.store.end_login_attempt(&u.id).await?;
                    }
                    return Ok(Verdict::DirectoryUnavailable);
                }
            },
            None => {
                let stored = match &user {
                    Some(u) => self.store.credential(&u.id, CredentialKind::Password).await?,
                    None => None,
                };
                let (ok, seconds) = self.passwords.verify(stored, password.to_string()).await;
                self.metrics.password_verify.observe(seconds);
                ok
            }
        };
        match user {
            Some(user) if ok => {
                self.store.end_login_attempt(&user.id).await?;
                if user.disabled {
                    return Ok(Verdict::Disabled);
                }
                if user.failed_logins > 0 {
                    self.store.reset_login_failures(&user.id).await?;
                }
                // A password sign-in also unlocks badges locked by wrong PINs;
                // failing to do so must not fail the sign-in itself.
                if let Err(e) = self.store.reset_pin_failures(&user.id).await {
                    tracing::warn!(error = %e, "could not reset badge PIN failures");
                }
                self.directory.changed().await;
                Ok(Verdict::Success(user))
            }
            Some(user) => {
                let n = self.store.record_login_failure(&user.id, now).await?;
                self.audit(username, "login.failure", username, json!({"consecutive_failures": n})).await;
                if n == cfg.lock_after {
                    self.metrics
                        .lockouts
                        .get_or_create(&crate::metrics::LockoutLabels {
                            kind: "password",
                            ward: crate::signins::NO_WARD.into(),
                        })
                        .inc();
                    self.audit(username, "login.locked", username, json!({"consecutive_failures": n})).await;
                }
                Ok(if n >= cfg.lock_after { Verdict::Locked } else { Verdict::Wrong })
            }
            None => {
                // The same counting and backoff as for a real account, so the
                // answers never tell which usernames exist. A new record for a
                // username nobody has is anyone's to create: counted in total
                // (the form carries no address, and a real account's failures
                // live in the store).
                if failures == 0
                    && let Err(refusal) = self.admission.admit(crate::admission::Kept::UnknownUser, None).await
                {
                    // The answer a real account's first failure gets: a full
                    // quota must not tell which usernames exist.
                    tracing::warn!(error = %refusal, "not recording a failure of an unknown username");
                    return Ok(Verdict::Wrong);
                }
                let record = UnknownFailures { count: failures + 1, last: now };
                put_json(self.cache.as_ref(), unknown_key, &record, UNKNOWN_USER_WINDOW).await?;
                Ok(if record.count >= cfg.lock_after { Verdict::Locked } else { Verdict::Wrong })
            }
        }
    }

    /// Ask LDAP source `source` whether `password` is `username`'s: `None`
    /// when it cannot say (unreachable, service account refused), which is
    /// logged for IT and never counted against the user.
    async fn check_in_directory(
        &self,
        source: &str,
        user: Option<&User>,
        username: &str,
        password: &str,
    ) -> Option<wardkey_directory::PasswordCheck> {
        let external_id = user.and_then(|u| u.external_id.as_deref());
        let started = std::time::Instant::now();
        let outcome = match self.directories.ldap_source(source) {
            Ok(directory) => directory.verify_password(username, external_id, password).await,
            Err(e) => Err(e),
        };
        self.metrics.password_verify.observe(started.elapsed().as_secs_f64());
        match outcome {
            Ok(check) => Some(check),
            Err(e) => {
                tracing::error!(error = %e, "a directory user's password could not be checked");
                None
            }
        }
    }

    /// Record `event` about `subject`, made by `actor` (the person signing
    /// in, or `tap` for a check at a workstation).
    async fn audit(&self, actor: &str, event: &str, subject: &str, detail: serde_json::Value) {
        self.audit.record(event, actor, subject, detail).await;
    }

    /// Judge a PIN typed at workstation `ws_name` for the badge with
    /// `digest`, owned by `user`. Counted in the store before the slow
    /// verification, so that of thirty guesses sent at once at most the
    /// badge's remaining tries are ever judged (NIST SP 800-63B §5.2.2);
    /// wrong ones are audited, and the fifth locks the badge.
    pub async fn check_pin(
        &self,
        digest: &[u8],
        user: &User,
        pin: String,
        ws_name: &str,
    ) -> Result<PinVerdict, BackendError> {
        if !self.store.begin_pin_attempt(digest, MAX_PIN_FAILURES).await? {
            return Ok(match self.store.badge(digest).await? {
                Some(b) if b.failed_pins < MAX_PIN_FAILURES => PinVerdict::Busy,
                _ => PinVerdict::Locked { just_now: false },
            });
        }
        let stored = match self.store.credential(&user.id, CredentialKind::Pin).await {
            Ok(stored) => stored,
            Err(e) => {
                // Nothing was judged: give the try back (best effort; a claim
                // left behind counts as a wrong PIN, the safe side).
                let _ = self.store.end_pin_attempt(digest).await;
                return Err(e.into());
            }
        };
        let (ok, seconds) = self.passwords.verify(stored, pin).await;
        self.metrics.password_verify.observe(seconds);
        if ok {
            self.store.end_pin_attempt(digest).await?;
            return Ok(PinVerdict::Right);
        }
        let failures = self.store.record_pin_failure(digest).await?;
        self.directory.changed().await;
        let detail = json!({"workstation": ws_name, "consecutive_failures": failures});
        self.audit("tap", "tap.pin_failure", &user.username, detail).await;
        if failures >= MAX_PIN_FAILURES {
            self.audit("tap", "badge.locked", &user.username, json!({"workstation": ws_name})).await;
            return Ok(PinVerdict::Locked { just_now: true });
        }
        Ok(PinVerdict::Wrong { remaining: MAX_PIN_FAILURES - failures })
    }
}

#[cfg(test)]
mod tests {
    use wardkey_core::badge::Badge;

    use super::*;
    use crate::testkit::Kit;

    fn logins(kit: &Kit) -> PasswordLogins {
        PasswordLogins {
            directories: wardkey_directory::Directories::default(),
            store: kit.store.clone(),
            audit: kit.audit(),
            cache: kit.cache.clone(),
            directory: Arc::new(Directory::new(kit.store.clone(), kit.cache.clone())),
            passwords: Arc::new(PasswordChecker::new(kit.settings.password.argon2(), 4)),
            admission: Arc::new(Admission::new(kit.cache.clone(), kit.settings.limits.clone())),
            metrics: Arc::new(Metrics::default()),
            clock: kit.shared_clock(),
            settings: kit.settings.clone(),
        }
    }

    #[tokio::test]
    async fn wrong_passwords_back_off_then_lock_and_a_right_one_clears_the_count() {
        let kit = Kit::new().await;
        let logins = logins(&kit);
        kit.user("alice", Some("correct horse battery")).await;
        assert!(matches!(logins.check("alice", "nope").await.unwrap(), Verdict::Wrong));
        assert!(matches!(logins.check("alice", "correct horse battery").await.unwrap(), Verdict::Success(_)));
        let user = kit.store.user_by_username("alice").await.unwrap().unwrap();
        assert_eq!(user.failed_logins, 0, "a right password clears the count");
        let cfg = &kit.settings.password;
        let mut last = None;
        for _ in 0..cfg.lock_after {
            // Wait out any backoff: the lock, not the pause, is tested here.
            kit.clock.advance(900);
            last = Some(logins.check("alice", "nope").await.unwrap());
        }
        assert!(matches!(last, Some(Verdict::Locked)), "{last:?}");
        kit.clock.advance(3600);
        let locked = logins.check("alice", "correct horse battery").await.unwrap();
        assert!(matches!(locked, Verdict::Locked), "the right password does not open a locked account: {locked:?}");
    }

    #[tokio::test]
    async fn an_unknown_username_gets_the_answers_a_real_account_gets() {
        let kit = Kit::new().await;
        let logins = logins(&kit);
        kit.user("alice", Some("correct horse battery")).await;
        for name in ["alice", "mallory"] {
            assert!(matches!(logins.check(name, "nope").await.unwrap(), Verdict::Wrong), "{name}");
        }
    }

    #[tokio::test]
    async fn thirty_pin_guesses_at_once_are_judged_at_most_five_times() {
        let kit = Kit::new().await;
        let logins = logins(&kit);
        let user = kit.user("alice", None).await;
        let pin = wardkey_core::password::hash(&kit.settings.password.argon2(), "2468").unwrap();
        kit.store.set_credential(&user.id, CredentialKind::Pin, &pin, kit.now()).await.unwrap();
        let digest = vec![7u8; 32];
        let badge = Badge { digest: digest.clone(), user_id: user.id.clone(), failed_pins: 0, created_at: 0 };
        kit.store.add_badge(&badge).await.unwrap();
        let guesses = (0..30).map(|i| {
            let (logins, digest, user) = (logins.clone(), digest.clone(), user.clone());
            tokio::spawn(async move { logins.check_pin(&digest, &user, format!("{:04}", 1000 + i), "PC 1").await })
        });
        let verdicts: Vec<PinVerdict> =
            futures_util::future::join_all(guesses).await.into_iter().map(|r| r.unwrap().unwrap()).collect();
        let judged = verdicts
            .iter()
            .filter(|v| matches!(v, PinVerdict::Wrong { .. } | PinVerdict::Locked { just_now: true }))
            .count();
        assert!(judged <= MAX_PIN_FAILURES as usize, "{judged} guesses judged: {verdicts:?}");
        let right = logins.check_pin(&digest, &user, "2468".into(), "PC 1").await.unwrap();
        assert!(matches!(right, PinVerdict::Locked { .. } | PinVerdict::Busy), "{right:?}");
        let stored = kit.store.badge(&digest).await.unwrap().unwrap();
        assert!(stored.failed_pins <= MAX_PIN_FAILURES);
    }
}
