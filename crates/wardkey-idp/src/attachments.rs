//! The attachments service: which clinician is at which workstation.
//! Attaching a session to a workstation (unlock, switch), detaching it
//! (lock), and the session ticket the agent uses for token exchange.
//!
//! `ws:{id}` names the session attached to a workstation; `ticket:{digest}`
//! is that attachment's bearer credential, bound to the workstation. Both die
//! on lock, switch and logout.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use wardkey_cache::{Cache, Op};
use wardkey_core::secret::{digest_b64, new_secret};
use wardkey_core::session::Assurance;
use wardkey_core::user::User;
use wardkey_core::workstation::Workstation;
use wardkey_proto::tap::UserSummary;

use crate::config::Settings;
use crate::error::BackendError;
use crate::kv::{get_json, keys, list_item, to_json};

/// A session attached to a workstation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attachment {
    /// The SSO session.
    pub sid: String,
    /// Its user.
    pub user_id: String,
    /// Shown to the next clinician on a switch.
    pub user: UserSummary,
    /// Digest of the current session ticket.
    pub ticket_digest: String,
    /// How the clinician authenticated for this attachment: what tokens
    /// got through it say, whatever the session reached elsewhere.
    pub assurance: Assurance,
}

/// What a session ticket opens.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ticket {
    /// The SSO session.
    pub sid: String,
    /// Its user.
    pub user_id: String,
    /// The only workstation that may use it.
    pub workstation_id: String,
    /// The attachment's assurance (see [`Attachment::assurance`]), read
    /// with the ticket by token exchange.
    pub assurance: Assurance,
}

/// The summary a workstation shows for `user`.
pub fn summary(user: &User) -> UserSummary {
    UserSummary { username: user.username.clone(), name: user.name.clone() }
}

/// Workstation attachments and their tickets. Cheap to clone.
#[derive(Clone)]
pub struct Attachments {
    cache: Arc<dyn Cache>,
    settings: Arc<Settings>,
}

impl Attachments {
    /// Attachments kept in `cache`, for as long as `settings` say.
    pub fn new(cache: Arc<dyn Cache>, settings: Arc<Settings>) -> Self {
        Self { cache, settings }
    }

    /// Who is at workstation `ws_id`, if anyone.
    pub async fn attachment(&self, ws_id: &str) -> Result<Option<Attachment>, BackendError> {
        Ok(get_json(self.cache.as_ref(), &keys::attachment(ws_id)).await?)
    }

    /// Attach session `sid` to `ws` for `user` at `assurance` (the check
    /// made for this attachment), replacing `previous` (whoever the caller
    /// found there, so the hot path reads it once), together with
    /// the caller's `extra` writes: one atomic round trip, run only if the
    /// session still exists. Returns the new ticket, or `None` when the
    /// session has ended (and nothing was written).
    pub async fn attach(
        &self,
        ws: &Workstation,
        sid: &str,
        user: &User,
        previous: Option<&Attachment>,
        assurance: &Assurance,
        extra: &[Op],
    ) -> Result<Option<String>, BackendError> {
        let ticket = new_ticket(sid);
        let ticket_digest = digest_b64(&ticket);
        let ttl = self.attachment_ttl(ws);
        let record = Ticket {
            sid: sid.to_owned(),
            user_id: user.id.clone(),
            workstation_id: ws.id.clone(),
            assurance: assurance.clone(),
        };
        let attachment = Attachment {
            sid: sid.to_owned(),
            user_id: user.id.clone(),
            user: summary(user),
            ticket_digest,
            assurance: assurance.clone(),
        };
        let mut ops = Vec::with_capacity(5 + extra.len());
        if let Some(prev) = previous {
            ops.push(Op::Delete(keys::ticket(&prev.ticket_digest)));
        }
        ops.push(Op::Put(keys::ticket(&attachment.ticket_digest), to_json(&record), ttl));
        ops.push(Op::Put(keys::attachment(&ws.id), to_json(&attachment), ttl));
        // For logout to find; a list the session may repeat ids in.
        let lifetime = self.settings.session.max_lifetime;
        ops.push(Op::Append(keys::session_workstations(sid), list_item(&ws.id), lifetime));
        // Work at a workstation keeps the session from idling out (its
        // maximum lifetime is checked on every read).
        ops.push(Op::Touch(keys::session(sid), self.settings.session.idle_timeout));
        ops.extend_from_slice(extra);
        Ok(self.cache.batch_if(Some(&keys::session(sid)), &ops).await?.map(|_| ticket))
    }

    /// How long an attachment lives without a tap: the ward's idle timeout.
    pub fn attachment_ttl(&self, ws: &Workstation) -> Duration {
        self.settings.ward_idle_timeout(&ws.ward)
    }

    /// Detach whoever is at `ws_id` (lock); returns who it was.
    pub async fn detach(&self, ws_id: &str) -> Result<Option<Attachment>, BackendError> {
        let Some(attachment) = self.attachment(ws_id).await? else {
            return Ok(None);
        };
        self.detach_known(ws_id, &attachment, &[]).await?;
        Ok(Some(attachment))
    }

    /// Detach `attachment`, which the caller just read from `ws_id` (the tap
    /// hot path reads it once): delete it and the ticket it carries, with
    /// the caller's `extra` writes, in one round trip.
    pub async fn detach_known(&self, ws_id: &str, attachment: &Attachment, extra: &[Op]) -> Result<(), BackendError> {
        let mut ops = vec![Op::Delete(keys::attachment(ws_id)), Op::Delete(keys::ticket(&attachment.ticket_digest))];
        ops.extend_from_slice(extra);
        self.cache.batch(&ops).await?;
        Ok(())
    }

    /// Detach session `sid` from `ws_id` if it is the one attached there.
    pub async fn detach_if(&self, ws_id: &str, sid: &str) -> Result<(), BackendError> {
        if let Some(attachment) = self.attachment(ws_id).await?
            && attachment.sid == sid
        {
            self.detach_known(ws_id, &attachment, &[]).await?;
        }
        Ok(())
    }
}

/// A session ticket: `{sid}.{secret}`. The sid lets token exchange fetch the
/// session in the same round trip as the ticket; the secret is what opens
/// it (only its digest is stored), so the sid, which ID tokens carry
/// anyway, gives nothing away.
fn new_ticket(sid: &str) -> String {
    format!("{sid}.{}", new_secret())
}

/// The sid a ticket names, to prefetch its session; whether the ticket is
/// good is decided by its stored record alone.
pub fn ticket_sid(ticket: &str) -> Option<&str> {
    ticket.split_once('.').map(|(sid, _)| sid).filter(|sid| !sid.is_empty())
}

#[cfg(test)]
mod tests {
    use wardkey_core::session::{ACR_BADGE_PIN, Amr};

    use super::*;
    use crate::sessions::Sessions;
    use crate::testkit::Kit;

    #[tokio::test]
    async fn attaching_replaces_the_last_clinician_and_detaching_only_ends_its_own() {
        let kit = Kit::new().await;
        let sessions = Sessions::new(kit.cache.clone(), kit.store.clone(), kit.shared_clock(), kit.settings.clone());
        let attachments = Attachments::new(kit.cache.clone(), kit.settings.clone());
        let ws = Kit::workstation("ws1");
        let (alice, bob) = (kit.user("alice", None).await, kit.user("bob", None).await);
        let here = Assurance::new(ACR_BADGE_PIN, vec![Amr::Badge, Amr::Pin], kit.now());
        let (_, a) = sessions.create_session(&alice.id, here.amr.clone(), ACR_BADGE_PIN).await.unwrap();
        let (_, b) = sessions.create_session(&bob.id, here.amr.clone(), ACR_BADGE_PIN).await.unwrap();

        let first = attachments.attach(&ws, &a.sid, &alice, None, &here, &[]).await.unwrap().expect("attached");
        assert_eq!(ticket_sid(&first), Some(a.sid.as_str()));
        let current = attachments.attachment("ws1").await.unwrap();
        attachments.attach(&ws, &b.sid, &bob, current.as_ref(), &here, &[]).await.unwrap().expect("switched");
        let first_ticket = keys::ticket(&digest_b64(&first));
        assert!(kit.cache.get(&first_ticket).await.unwrap().is_none(), "a switch ends the last clinician's ticket");

        attachments.detach_if("ws1", &a.sid).await.unwrap();
        assert_eq!(attachments.attachment("ws1").await.unwrap().unwrap().user_id, bob.id, "not alice's to end");
        attachments.detach_if("ws1", &b.sid).await.unwrap();
        assert!(attachments.attachment("ws1").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn an_ended_session_attaches_nowhere() {
        let kit = Kit::new().await;
        let attachments = Attachments::new(kit.cache.clone(), kit.settings.clone());
        let alice = kit.user("alice", None).await;
        let here = Assurance::new(ACR_BADGE_PIN, vec![Amr::Badge, Amr::Pin], kit.now());
        let ticket = attachments.attach(&Kit::workstation("ws1"), "gone", &alice, None, &here, &[]).await.unwrap();
        assert!(ticket.is_none());
        assert!(attachments.attachment("ws1").await.unwrap().is_none(), "nothing written");
    }
}
