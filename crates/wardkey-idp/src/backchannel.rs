//! The logouts service: ending sessions, and OIDC Back-Channel Logout 1.0.
//!
//! Ending a session removes it from the cache, detaches it from every
//! workstation, and queues a logout notice for every RP that received tokens
//! in it and registered a back-channel URI. Notices sit in the store (the
//! outbox) and a background task delivers them with retries and backoff, a
//! fresh logout token (and `jti`) per attempt, never inside the request that
//! ended the session: a slow or dead RP delays nobody.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use wardkey_cache::{Cache, Op};
use wardkey_core::audit::AuditEvent;
use wardkey_core::clock::SharedClock;
use wardkey_core::secret::random_token;
use wardkey_store::{LogoutNotice, NewLogoutNotice, Store};

use crate::attachments::Attachments;
use crate::config::Settings;
use crate::error::BackendError;
use crate::keys::Keyring;
use crate::kv::{keys, parse_list};
use crate::metrics::Metrics;
use crate::sessions::Sessions;

/// OIDC Back-Channel Logout 1.0 §2.4: the `events` member.
const LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// Notices taken per round.
const BATCH: u32 = 32;
/// How long a claimed notice is ours before another node may retry it.
const LEASE_SECS: i64 = 30;
/// After this many attempts (about a day with the backoff below) a notice is
/// dropped and audited.
const MAX_ATTEMPTS: u32 = 300;
/// Per-request timeout, so a dead RP costs one timeout, not a hang.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);

/// Ends sessions and delivers the logout notices that follow.
/// Cheap to clone.
#[derive(Clone)]
pub struct Logouts {
    pub(crate) sessions: Sessions,
    /// Workstations a session ends at are locked.
    pub(crate) attachments: Attachments,
    pub(crate) cache: Arc<dyn Cache>,
    /// The outbox, and the audit log.
    pub(crate) store: Arc<dyn Store>,
    /// Signs logout tokens.
    pub(crate) keys: Arc<Keyring>,
    pub(crate) issuer: Arc<str>,
    pub(crate) http: reqwest::Client,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) clock: SharedClock,
    pub(crate) settings: Arc<Settings>,
    /// Wakes the delivery task when notices are queued.
    pub(crate) wake: Arc<Notify>,
}

/// What became of one notice.
enum Delivery {
    /// The RP has it (or no longer needs it).
    Done,
    /// The session is still live: look again at this time.
    Postponed(i64),
    /// Try again later.
    Failed(String),
}

/// Seconds to wait before attempt `attempts + 1`: 1, 2, 4 … capped at 5 min.
pub fn retry_delay(attempts: u32) -> i64 {
    (1i64 << attempts.min(9)).min(300)
}

impl Logouts {
    fn now(&self) -> i64 {
        self.clock.now()
    }

    /// End session `sid` everywhere and queue back-channel logouts; `why`
    /// goes to the audit log. Ending an already-ended session is a no-op.
    pub async fn logout_session(&self, sid: &str, why: &str) -> Result<(), BackendError> {
        let Some(session) = self.sessions.session_by_sid(sid).await? else {
            return Ok(());
        };
        // One atomic step ends the session and collects what it touched.
        let replies = self
            .cache
            .batch(&[
                Op::Delete(keys::session(sid)),
                Op::Get(keys::session_workstations(sid)),
                Op::Get(keys::session_clients(sid)),
                Op::Delete(keys::session_workstations(sid)),
                Op::Delete(keys::session_clients(sid)),
            ])
            .await?;
        let mut lists = replies.into_iter().skip(1).map(|r| parse_list(r.into_value()));
        let (workstations, clients) = (lists.next().unwrap_or_default(), lists.next().unwrap_or_default());
        for ws in &workstations {
            self.attachments.detach_if(ws, sid).await?;
        }
        let mut notices = Vec::new();
        for client_id in &clients {
            if let Some(client) = self.store.client(client_id).await?
                && client.backchannel_logout_uri.is_some()
            {
                notices.push(NewLogoutNotice {
                    client_id: client_id.clone(),
                    sub: session.user_id.clone(),
                    sid: sid.to_string(),
                });
            }
        }
        if !notices.is_empty() {
            self.store.enqueue_logouts(&notices, self.now(), self.now()).await?;
            self.wake.notify_one();
        }
        let record = AuditEvent {
            at: self.now(),
            event: "session.end".into(),
            actor: why.into(),
            subject: session.user_id.clone(),
            detail: json!({"sid": sid, "notified": notices.len()}),
        };
        self.store.append_audit(&record).await?;
        Ok(())
    }

    /// End every session of a user (admin revoke, disable).
    pub async fn logout_user(&self, user_id: &str, why: &str) -> Result<usize, BackendError> {
        let sessions = self.sessions.user_sessions(user_id).await?;
        for entry in &sessions {
            self.logout_session(&entry.sid, why).await?;
        }
        self.cache.delete(&keys::user_sessions(user_id)).await?;
        Ok(sessions.len())
    }

    async fn deliver(&self, notice: &LogoutNotice) -> Delivery {
        // A watch queued when the client got tokens: while the session
        // lives, look again after another idle period; once it has ended
        // (logout, idle or lifetime expiry, a lost cache), tell the RP.
        match self.sessions.session_by_sid(&notice.sid).await {
            Ok(Some(_)) => {
                return Delivery::Postponed(self.now() + self.settings.session.idle_timeout.as_secs() as i64);
            }
            Ok(None) => {}
            Err(e) => return Delivery::Failed(format!("cache: {e}")),
        }
        match self.send_logout_token(notice).await {
            Ok(()) => Delivery::Done,
            Err(e) => Delivery::Failed(e),
        }
    }

    async fn send_logout_token(&self, notice: &LogoutNotice) -> Result<(), String> {
        let client = match self.store.client(&notice.client_id).await {
            Ok(Some(c)) => c,
            // The RP was removed: nothing left to notify.
            Ok(None) => return Ok(()),
            Err(e) => return Err(format!("store: {e}")),
        };
        let Some(uri) = client.backchannel_logout_uri.as_deref() else {
            return Ok(());
        };
        let now = self.now();
        // §2.4: iss, aud, iat, exp, jti, events, sub and/or sid; never a nonce.
        let claims = json!({
            "iss": self.issuer.as_ref(),
            "aud": client.client_id,
            "iat": now,
            "exp": now + 120,
            "jti": random_token(16),
            "sub": notice.sub,
            "sid": notice.sid,
            "events": { LOGOUT_EVENT: {} },
        });
        let token = self.keys.sign(client.id_token_alg, "logout+jwt", &claims).map_err(|e| e.to_string())?;
        let response = self
            .http
            .post(uri)
            .timeout(DELIVERY_TIMEOUT)
            .form(&[("logout_token", token.as_str())])
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        // §2.8: 200 (or 204) means done; anything else is a failure to retry.
        if response.status().is_success() { Ok(()) } else { Err(format!("RP answered {}", response.status())) }
    }

    async fn deliver_due(&self) -> Result<usize, BackendError> {
        let due = self.store.claim_due_logouts(self.now(), LEASE_SECS, BATCH).await?;
        let count = due.len();
        let mut tasks = tokio::task::JoinSet::new();
        for notice in due {
            let state = self.clone();
            tasks.spawn(async move {
                let started = Instant::now();
                let outcome = state.deliver(&notice).await;
                match outcome {
                    Delivery::Postponed(at) => state.store.postpone_logout(notice.id, at).await,
                    Delivery::Done => {
                        state.metrics.backchannel_delivery.observe(started.elapsed().as_secs_f64());
                        state.store.logout_delivered(notice.id).await
                    }
                    Delivery::Failed(error) => {
                        state.metrics.backchannel_delivery.observe(started.elapsed().as_secs_f64());
                        state.metrics.backchannel_failures.inc();
                        tracing::warn!(client_id = %notice.client_id, attempt = notice.attempts + 1, %error, "back-channel logout failed; will retry");
                        if notice.attempts + 1 >= MAX_ATTEMPTS {
                            let record = AuditEvent {
                                at: state.now(),
                                event: "backchannel.abandoned".into(),
                                actor: "wardkey".into(),
                                subject: notice.client_id.clone(),
                                detail: json!({"sid": notice.sid, "error": error}),
                            };
                            let _ = state.store.append_audit(&record).await;
                            state.store.logout_delivered(notice.id).await
                        } else {
                            let next = state.now() + retry_delay(notice.attempts);
                            state.store.logout_failed(notice.id, next, &error).await
                        }
                    }
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            if let Ok(Err(e)) = done {
                tracing::error!(error = %e, "recording a back-channel delivery failed");
            }
        }
        Ok(count)
    }
}

/// The delivery task: runs until `cancel`, waking when notices are queued
/// and at least every second for retries and admin revocations.
pub async fn run_outbox(state: Logouts, cancel: CancellationToken) {
    let wake = state.wake.clone();
    loop {
        match state.store.take_session_revocations().await {
            Ok(users) => {
                for user in users {
                    if let Err(e) = state.logout_user(&user, "admin-cli").await {
                        tracing::error!(error = %e, "revoking sessions failed");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading session revocations failed"),
        }
        let busy = match state.deliver_due().await {
            Ok(n) => n as u32 == BATCH,
            Err(e) => {
                tracing::warn!(error = %e, "back-channel outbox unavailable");
                false
            }
        };
        if busy {
            continue;
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_five_minutes() {
        assert_eq!(retry_delay(0), 1);
        assert_eq!(retry_delay(3), 8);
        assert_eq!(retry_delay(50), 300);
    }
}

#[cfg(test)]
mod service_tests {
    use wardkey_core::client::{Client, ClientAuth, GrantType};
    use wardkey_core::keys::SigningAlg;
    use wardkey_core::session::{ACR_BADGE_PIN, Amr, Assurance};

    use super::*;
    use crate::testkit::Kit;

    async fn logouts(kit: &Kit) -> Logouts {
        let sessions = Sessions::new(kit.cache.clone(), kit.store.clone(), kit.shared_clock(), kit.settings.clone());
        Logouts {
            sessions,
            attachments: Attachments::new(kit.cache.clone(), kit.settings.clone()),
            cache: kit.cache.clone(),
            store: kit.store.clone(),
            keys: Arc::new(Keyring::load(kit.store.as_ref(), kit.now()).await.unwrap()),
            issuer: "https://sso.example".into(),
            http: reqwest::Client::new(),
            metrics: Arc::new(Metrics::default()),
            clock: kit.shared_clock(),
            settings: kit.settings.clone(),
            wake: Arc::default(),
        }
    }

    fn client(id: &str, backchannel: Option<&str>) -> Client {
        Client {
            client_id: id.into(),
            auth: ClientAuth::None,
            redirect_uris: vec!["https://app.example/cb".into()],
            post_logout_redirect_uris: vec![],
            backchannel_logout_uri: backchannel.map(Into::into),
            grant_types: vec![GrantType::AuthorizationCode],
            start_url: None,
            id_token_alg: SigningAlg::ES256,
            min_acr: None,
            created_at: 0,
        }
    }

    #[tokio::test]
    async fn ending_a_session_locks_its_workstations_and_tells_only_back_channel_clients() {
        let kit = Kit::new().await;
        let logouts = logouts(&kit).await;
        let alice = kit.user("alice", None).await;
        let (with, without) = (client("epr", Some("https://epr.example/logout")), client("lab", None));
        kit.store.create_client(&with).await.unwrap();
        kit.store.create_client(&without).await.unwrap();
        let (_, session) = logouts.sessions.create_session(&alice.id, vec![Amr::Pwd], "pwd").await.unwrap();
        for c in [&with, &without] {
            let listed = logouts.sessions.session_clients(&session.sid).await.unwrap();
            logouts.sessions.note_session_client(&session, c, &listed).await.unwrap();
        }
        let ws = Kit::workstation("ws1");
        let here = Assurance::new(ACR_BADGE_PIN, vec![Amr::Badge, Amr::Pin], kit.now());
        logouts.attachments.attach(&ws, &session.sid, &alice, None, &here, &[]).await.unwrap().unwrap();

        logouts.logout_session(&session.sid, "test").await.unwrap();
        assert!(!logouts.sessions.session_alive(&session.sid).await.unwrap());
        assert!(logouts.attachments.attachment("ws1").await.unwrap().is_none(), "the PC is locked");
        let due = kit.store.claim_due_logouts(kit.now(), 30, 10).await.unwrap();
        assert_eq!(due.iter().map(|n| n.client_id.as_str()).collect::<Vec<_>>(), ["epr"]);
        let audit = kit.store.recent_audit(1).await.unwrap();
        assert_eq!((audit[0].event.as_str(), audit[0].actor.as_str()), ("session.end", "test"));
        // Ending it again changes nothing and records nothing.
        logouts.logout_session(&session.sid, "test").await.unwrap();
        assert_eq!(kit.store.recent_audit(5).await.unwrap().len(), 1);
    }
}
