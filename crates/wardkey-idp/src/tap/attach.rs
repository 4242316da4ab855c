//! Which clinician is at which workstation: attaching a session to a
//! workstation (unlock, switch), detaching it (lock), and the session ticket
//! the agent uses for token exchange.
//!
//! `ws:{id}` names the session attached to a workstation; `ticket:{digest}`
//! is that attachment's bearer credential, bound to the workstation. Both die
//! on lock, switch and logout.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use wardkey_core::secret::{digest_b64, new_secret};
use wardkey_core::session::Session;
use wardkey_core::user::User;
use wardkey_core::workstation::Workstation;
use wardkey_proto::tap::UserSummary;

use crate::error::BackendError;
use crate::sessions::{get_json, keys, put_json};
use crate::state::AppState;

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
}

/// The summary a workstation shows for `user`.
pub fn summary(user: &User) -> UserSummary {
    UserSummary { username: user.username.clone(), name: user.name.clone() }
}

impl AppState {
    /// Who is at workstation `ws_id`, if anyone.
    pub async fn attachment(&self, ws_id: &str) -> Result<Option<Attachment>, BackendError> {
        Ok(get_json(self.cache.as_ref(), &keys::attachment(ws_id)).await?)
    }

    /// Attach `session` to `ws` for `user`, replacing `previous` (whoever the
    /// caller just found there, so the hot path reads it once); returns the
    /// new ticket and the attachment it replaced.
    pub async fn attach(
        &self,
        ws: &Workstation,
        session: &Session,
        user: &User,
        previous: Option<Attachment>,
    ) -> Result<(String, Option<Attachment>), BackendError> {
        if let Some(prev) = &previous {
            self.cache.delete(&keys::ticket(&prev.ticket_digest)).await?;
            if prev.sid != session.sid {
                self.update_session(&prev.sid, |s| s.workstations.retain(|w| *w != ws.id)).await?;
            }
        }
        let ticket = new_secret();
        let ticket_digest = digest_b64(&ticket);
        let ttl = self.attachment_ttl(ws);
        let record = Ticket { sid: session.sid.clone(), user_id: user.id.clone(), workstation_id: ws.id.clone() };
        put_json(self.cache.as_ref(), &keys::ticket(&ticket_digest), &record, ttl).await?;
        let attachment =
            Attachment { sid: session.sid.clone(), user_id: user.id.clone(), user: summary(user), ticket_digest };
        put_json(self.cache.as_ref(), &keys::attachment(&ws.id), &attachment, ttl).await?;
        if !session.workstations.contains(&ws.id) {
            self.update_session(&session.sid, |s| {
                if !s.workstations.contains(&ws.id) {
                    s.workstations.push(ws.id.clone());
                }
            })
            .await?;
        }
        Ok((ticket, previous))
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
        self.detach_known(ws_id, &attachment).await?;
        Ok(Some(attachment))
    }

    /// Detach `attachment`, which the caller just read from `ws_id` (the tap
    /// hot path reads it once).
    pub async fn detach_known(&self, ws_id: &str, attachment: &Attachment) -> Result<(), BackendError> {
        self.remove_attachment(ws_id, attachment).await?;
        self.update_session(&attachment.sid, |s| s.workstations.retain(|w| w != ws_id)).await?;
        Ok(())
    }

    /// Delete an attachment record and the ticket it carries.
    async fn remove_attachment(&self, ws_id: &str, attachment: &Attachment) -> Result<(), BackendError> {
        self.cache.delete(&keys::attachment(ws_id)).await?;
        self.cache.delete(&keys::ticket(&attachment.ticket_digest)).await?;
        Ok(())
    }

    /// Detach session `sid` from `ws_id` if it is the one attached there.
    pub async fn detach_if(&self, ws_id: &str, sid: &str) -> Result<(), BackendError> {
        if let Some(attachment) = self.attachment(ws_id).await?
            && attachment.sid == sid
        {
            self.remove_attachment(ws_id, &attachment).await?;
        }
        Ok(())
    }

    /// The ticket `ticket` presented by workstation `ws_id`, if it is live
    /// and bound to that workstation.
    pub async fn ticket(&self, ticket: &str, ws_id: &str) -> Result<Option<Ticket>, BackendError> {
        let record: Option<Ticket> = get_json(self.cache.as_ref(), &keys::ticket(&digest_b64(ticket))).await?;
        Ok(record.filter(|t| t.workstation_id == ws_id))
    }
}
