//! The desks service: a clinician's session arriving at a workstation.
//! Attaching it there (replacing whoever was there, and on a switch ending
//! the last clinician's session where the trust asks for that), counting
//! the outcome, and noticing a badge that turns up on two wards at once.
//! The tap, PIN, key-tap and self-enrolment calls all end here, so a
//! workstation is unlocked by one rule whichever way the clinician got in.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::json;
use wardkey_cache::Op;
use wardkey_core::session::{Assurance, Session};
use wardkey_core::user::User;
use wardkey_core::workstation::Workstation;
use wardkey_proto::tap::TapResponse;

use crate::attachments::{Attachment, Attachments, summary};
use crate::backchannel::Logouts;
use crate::config::Settings;
use crate::error::TapApiError;
use crate::metrics::Metrics;

/// Where a badge was last tapped.
#[derive(Debug, Serialize, Deserialize)]
pub struct Seen {
    /// Its ward.
    pub ward: String,
    /// The workstation.
    pub workstation_id: String,
}

/// Unlocks workstations. Cheap to clone.
#[derive(Clone)]
pub struct Desks {
    pub(crate) attachments: Attachments,
    /// Ends the last clinician's session on a switch (`tap.logout_on_switch`).
    pub(crate) logouts: Logouts,
    pub(crate) metrics: Arc<Metrics>,
    /// The audit log.
    pub(crate) audit: crate::audit::AuditLog,
    pub(crate) settings: Arc<Settings>,
}

impl Desks {
    /// Attach session `sid` to `ws` (where `current` is attached now) at
    /// `here`, with the caller's `extra` writes, and answer `active` or
    /// `switched`; `None` if the session has ended.
    pub async fn activate(
        &self,
        ws: &Workstation,
        sid: &str,
        user: &User,
        current: Option<&Attachment>,
        here: &Assurance,
        extra: &[Op],
    ) -> Result<Option<TapResponse>, TapApiError> {
        let Some(session_ticket) = self.attachments.attach(ws, sid, user, current, here, extra).await? else {
            return Ok(None);
        };
        let expires_in = self.attachments.attachment_ttl(ws).as_secs();
        match current {
            Some(prev) if prev.user_id != user.id => {
                if self.settings.tap.logout_on_switch {
                    self.logouts.logout_session(&prev.sid, "switch").await?;
                }
                Metrics::count(&self.metrics.taps, "switched");
                let previous = prev.user.clone();
                Ok(Some(TapResponse::Switched { user: summary(user), previous, session_ticket, expires_in }))
            }
            _ => {
                Metrics::count(&self.metrics.taps, "active");
                Ok(Some(TapResponse::Active { user: summary(user), session_ticket, expires_in }))
            }
        }
    }

    /// [`Desks::activate`] with a session the caller has just checked
    /// the clinician for (PIN entry, self-enrolment, key tap) at `here`.
    pub async fn activate_fresh(
        &self,
        ws: &Workstation,
        session: &Session,
        user: &User,
        here: &Assurance,
    ) -> Result<TapResponse, TapApiError> {
        let current = self.attachments.attachment(&ws.id).await?;
        self.activate(ws, &session.sid, user, current.as_ref(), here, &[])
            .await?
            .ok_or_else(|| TapApiError::Expired("the session ended while signing in; tap your badge again".into()))
    }

    /// Raise an alert when one badge is tapped on two wards within
    /// `tap.cloned_badge_window`: a prox card copied in a corridor shows up
    /// exactly like this. `seen` is where the badge was last tapped; the
    /// caller records this tap.
    pub async fn check_cloned_badge(&self, seen: Option<Seen>, digest: &[u8], ws: &Workstation) {
        let Some(seen) = seen.filter(|s| s.ward != ws.ward) else {
            return;
        };
        self.metrics.cloned_badge.inc();
        tracing::warn!(ward = %ws.ward, previous_ward = %seen.ward, "badge tapped on two wards: possible clone");
        let subject = URL_SAFE_NO_PAD.encode(&digest[..8]);
        self.audit
            .record(
                "badge.cloned_suspected",
                "tap",
                &subject,
                json!({
                    "ward": ws.ward, "workstation_id": ws.id,
                    "previous_ward": seen.ward, "previous_workstation_id": seen.workstation_id,
                }),
            )
            .await;
    }
}

#[cfg(test)]
mod tests {
    use wardkey_core::session::{ACR_BADGE_PIN, Amr};

    use super::*;
    use crate::keys::Keyring;
    use crate::sessions::Sessions;
    use crate::testkit::Kit;

    async fn desks(kit: &Kit, logout_on_switch: bool) -> (Desks, Sessions) {
        let mut settings = Settings::clone(&kit.settings);
        settings.tap.logout_on_switch = logout_on_switch;
        let settings = Arc::new(settings);
        let sessions = Sessions::new(kit.cache.clone(), kit.store.clone(), kit.shared_clock(), settings.clone());
        let attachments = Attachments::new(kit.cache.clone(), settings.clone());
        let metrics = Arc::new(Metrics::default());
        let logouts = Logouts {
            sessions: sessions.clone(),
            attachments: attachments.clone(),
            cache: kit.cache.clone(),
            store: kit.store.clone(),
            keys: Arc::new(Keyring::load(kit.store.as_ref(), kit.now()).await.unwrap()),
            issuer: "https://sso.example".into(),
            http: reqwest::Client::new(),
            metrics: metrics.clone(),
            clock: kit.shared_clock(),
            settings: settings.clone(),
            wake: Arc::default(),
        };
        let desks = Desks { attachments, logouts, audit: kit.audit(), metrics, settings };
        (desks, sessions)
    }

    #[tokio::test]
    async fn a_switch_greets_the_next_clinician_and_ends_the_last_one_where_the_trust_asks() {
        for logout_on_switch in [false, true] {
            let kit = Kit::new().await;
            let (desks, sessions) = desks(&kit, logout_on_switch).await;
            let ws = Kit::workstation("ws1");
            let (alice, bob) = (kit.user("alice", None).await, kit.user("bob", None).await);
            let here = Assurance::new(ACR_BADGE_PIN, vec![Amr::Badge, Amr::Pin], kit.now());
            let (_, a) = sessions.create_session(&alice.id, here.amr.clone(), ACR_BADGE_PIN).await.unwrap();
            let (_, b) = sessions.create_session(&bob.id, here.amr.clone(), ACR_BADGE_PIN).await.unwrap();
            let first = desks.activate_fresh(&ws, &a, &alice, &here).await.unwrap();
            assert!(matches!(first, TapResponse::Active { .. }), "{first:?}");
            let second = desks.activate_fresh(&ws, &b, &bob, &here).await.unwrap();
            let TapResponse::Switched { previous, .. } = second else { panic!("{second:?}") };
            assert_eq!(previous.username, "alice");
            assert_eq!(sessions.session_alive(&a.sid).await.unwrap(), !logout_on_switch);
        }
    }

    #[tokio::test]
    async fn an_ended_session_unlocks_nothing() {
        let kit = Kit::new().await;
        let (desks, sessions) = desks(&kit, false).await;
        let alice = kit.user("alice", None).await;
        let here = Assurance::new(ACR_BADGE_PIN, vec![Amr::Badge, Amr::Pin], kit.now());
        let (_, a) = sessions.create_session(&alice.id, here.amr.clone(), ACR_BADGE_PIN).await.unwrap();
        kit.cache.delete(&crate::kv::keys::session(&a.sid)).await.unwrap();
        let refused = desks.activate_fresh(&Kit::workstation("ws1"), &a, &alice, &here).await.unwrap_err();
        assert!(matches!(refused, TapApiError::Expired(_)), "{refused:?}");
    }

    #[tokio::test]
    async fn one_badge_on_two_wards_raises_the_alarm_and_on_one_ward_does_not() {
        let kit = Kit::new().await;
        let (desks, _) = desks(&kit, false).await;
        let ws = Kit::workstation("ws1");
        let same = Seen { ward: ws.ward.clone(), workstation_id: "ws2".into() };
        desks.check_cloned_badge(Some(same), &[1; 32], &ws).await;
        assert_eq!(desks.metrics.cloned_badge.get(), 0);
        let elsewhere = Seen { ward: "Ward 9".into(), workstation_id: "ws9".into() };
        desks.check_cloned_badge(Some(elsewhere), &[1; 32], &ws).await;
        assert_eq!(desks.metrics.cloned_badge.get(), 1);
        assert_eq!(kit.store.recent_audit(1).await.unwrap()[0].event, "badge.cloned_suspected");
    }
}
