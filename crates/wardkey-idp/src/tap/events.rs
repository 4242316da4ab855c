//! The desk channel (`POST /tap/events`): revocation reaches the ward PC.
//!
//! A session can end away from the PC it is attached to: `wardkey session
//! revoke`, a disabled user, badge or workstation, a logout in a browser.
//! Each of those removes the workstation's attachment (or, for a disabled
//! workstation, makes it unusable), but the agent would learn only at its
//! next request or its idle lock, leaving the PC open as the clinician.
//! This stream tells it at once: it watches the workstation's attachment
//! and sends a [`DeskLock`] naming the ticket whose attachment went away.
//!
//! Watching is a poll of one cache key per connected workstation every
//! [`DESK_POLL`] (with Redis, one `GET` each; a thousand PCs cost a
//! thousand `GET`s a second), so it needs no hook in every path that can end
//! a session, on any node: whatever removed the attachment, the next poll
//! sees it. The request is signed by the workstation key like every tap
//! request, so only an enrolled, enabled workstation listens, and only to
//! its own desk; an event can only lock.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use wardkey_proto::tap::{DESK_LOCK_EVENT, DeskLock, DeskSubscribe};

use crate::error::TapApiError;
use crate::state::AppState;

/// How often a connected workstation's attachment is looked at: with the
/// servers' one-second poll of admin revocations, a revoked session locks
/// its PCs within about two seconds.
pub const DESK_POLL: Duration = Duration::from_millis(500);

/// What one open desk channel watches.
struct Watch {
    state: AppState,
    workstation_id: String,
    /// The ticket digest of the attachment seen last (`None`: nobody).
    attached: Option<String>,
    /// The workstation has been disabled: one last lock, then the end.
    closed: bool,
}

/// `POST /tap/events`.
pub async fn events(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, TapApiError> {
    let (ws, subscribe): (_, DeskSubscribe) = state.workstations.verify_tap(&body).await?;
    // What the agent holds is what it must hear about; with nothing held,
    // whatever is attached now.
    let attached = match subscribe.held {
        Some(held) if held.len() <= 64 => Some(held),
        Some(_) => return Err(TapApiError::InvalidRequest("held must be a ticket digest".into())),
        None => state.attachments.attachment(&ws.id).await?.map(|a| a.ticket_digest),
    };
    let watch = Watch { state, workstation_id: ws.id, attached, closed: false };
    let stream = futures_util::stream::unfold(watch, |mut watch| async move {
        loop {
            if watch.closed {
                return None;
            }
            tokio::time::sleep(DESK_POLL).await;
            if let Some(gone) = watch.next_lock().await {
                let event = Event::default()
                    .event(DESK_LOCK_EVENT)
                    .json_data(DeskLock { ticket_digest: gone })
                    .unwrap_or_else(|_| Event::default());
                return Some((Ok(event), watch));
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

impl Watch {
    /// Look once: the digest of an attachment that has gone away since the
    /// last look, if any. A cache or store that does not answer changes
    /// nothing (the next look tries again).
    async fn next_lock(&mut self) -> Option<String> {
        let enabled = match self.state.directory.workstation(&self.workstation_id).await {
            Ok(ws) => ws.is_some_and(|w| w.enabled),
            Err(_) => true,
        };
        if !enabled {
            // Disabled: end its attachment too, so that nothing it holds
            // still opens the session, and close the channel.
            self.closed = true;
            if let Err(e) = self.state.attachments.detach(&self.workstation_id).await {
                tracing::warn!(error = %e, "could not detach a disabled workstation");
            }
            return self.attached.take();
        }
        let now = match self.state.attachments.attachment(&self.workstation_id).await {
            Ok(a) => a.map(|a| a.ticket_digest),
            Err(_) => return None,
        };
        let previous = std::mem::replace(&mut self.attached, now);
        previous.filter(|p| self.attached.as_ref() != Some(p))
    }
}
