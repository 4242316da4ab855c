//! The sessions service: SSO sessions and the browsers holding them,
//! pending authorization requests, authorization codes and grant
//! revocations, all in the session cache (layout in [`crate::kv`]).
//!
//! A session is shared by every place the clinician uses it (browsers,
//! workstations), but how they authenticated is kept per place
//! ([`Assurance`]): a step-up in one browser raises that browser alone.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use wardkey_cache::{Cache, CacheResult, Op};
use wardkey_core::client::Client;
use wardkey_core::clock::SharedClock;
use wardkey_core::secret::{digest, digest_b64, matches_digest, new_secret, random_token};
use wardkey_core::session::{Amr, Assurance, Session};
use wardkey_store::{NewLogoutNotice, Store};

use crate::attachments::Attachment;
use crate::config::Settings;
use crate::kv::{get_json, keys, list_item, parse_list, put_json};

fn secs(d: i64) -> Duration {
    Duration::from_secs(d.max(1) as u64)
}

/// What an authorization is based on: who, how they authenticated, which
/// session and scope. A code, a refresh token and the tokens they yield all
/// carry one, and `gid` ties them together so that reuse revokes them all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// Grant id: the refresh-token family and the revocation handle.
    pub gid: String,
    /// The user's `sub`, or `None` for client credentials.
    pub user_id: Option<String>,
    /// The SSO session the grant belongs to.
    pub sid: Option<String>,
    /// Granted scope, space separated.
    pub scope: String,
    /// `auth_time` of the authentication behind the grant.
    pub auth_time: Option<i64>,
    /// `acr` reached.
    pub acr: Option<String>,
    /// Methods used.
    pub amr: Vec<Amr>,
}

impl Grant {
    /// Whether `scope` includes `name`.
    pub fn has_scope(&self, name: &str) -> bool {
        self.scope.split(' ').any(|s| s == name)
    }
}

/// A validated authorization request waiting for the person to sign in.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingAuthorization {
    /// Requesting client.
    pub client_id: String,
    /// Validated, registered redirect URI.
    pub redirect_uri: String,
    /// Requested scope.
    pub scope: String,
    /// Client's `state`, echoed back.
    pub state: Option<String>,
    /// Client's `nonce`, put in the ID token.
    pub nonce: Option<String>,
    /// PKCE S256 challenge.
    pub code_challenge: String,
    /// `login_hint`, to prefill the username.
    pub login_hint: Option<String>,
    /// The weakest `acr` the application accepts (from `acr_values`): a
    /// session below it must step up first.
    #[serde(default)]
    pub min_acr: Option<String>,
    /// When the sign-in page was first shown (Unix ms), for the login time.
    #[serde(default)]
    pub shown_ms: i64,
}

/// An issued authorization code, keyed by its digest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CodeRecord {
    /// Client the code was issued to.
    pub client_id: String,
    /// Redirect URI of the request (must match at redemption, RFC 6749 §4.1.3).
    pub redirect_uri: String,
    /// PKCE challenge.
    pub code_challenge: String,
    /// Nonce for the ID token.
    pub nonce: Option<String>,
    /// Expiry by the injected clock (the cache TTL also bounds it).
    pub expires_at: i64,
    /// The grant.
    pub grant: Grant,
}

/// A live refresh token, keyed by its digest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefreshRecord {
    /// Client the token was issued to; no other client may use it.
    pub client_id: String,
    /// The grant (family).
    pub grant: Grant,
}

/// A refresh token that has been rotated, remembered so that a retry within
/// the grace period gets the same answer and a later reuse revokes the family
/// (RFC 9700 §4.14.2).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RotatedRecord {
    /// Client the token belonged to.
    pub client_id: String,
    /// The family.
    pub gid: String,
    /// When it was rotated.
    pub rotated_at: i64,
    /// The response given then, replayed within the grace period, sealed
    /// with a key only the rotated token itself yields
    /// ([`crate::grants::refresh_token`]): the cache never holds a usable
    /// token in clear. `None` when there is no grace (`"0s"`), or once the
    /// grace has passed.
    pub sealed: Option<String>,
}

/// A session as kept in the cache: the session plus the browsers that hold
/// it (the login browser, and any browser a workstation handed the session
/// to), each with its own cookie secret and assurance.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredSession {
    browsers: Vec<Browser>,
    session: Session,
}

/// One browser holding a session.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Browser {
    /// Digest of the cookie secret that opens it.
    digest: Vec<u8>,
    /// How this browser's holder authenticated (a step-up in this browser
    /// raises this browser alone).
    assurance: Assurance,
    /// For a browser opened by a workstation's handoff: that workstation's
    /// attachment, with which the browser's sign-in ends (a lock or a
    /// switch at the PC must not leave the next clinician's web EPR signed
    /// in as the last one).
    desk: Option<Desk>,
}

/// The workstation attachment a handed-off browser belongs to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Desk {
    /// The workstation.
    pub workstation_id: String,
    /// Its attachment's ticket digest: a new tap at the PC makes a new one.
    pub ticket_digest: String,
}

/// One session in a user's index (`user-sessions:{user_id}`), with its
/// `auth_time` so that a tap can pick the session to resume without reading
/// each session first (a Redis round trip apiece).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// The session.
    pub sid: String,
    /// When it was created or last signed in to.
    pub auth_time: i64,
    /// The last check made with the badge at a workstation (PIN, or
    /// password at self-enrolment): what a later badge tap within the PIN
    /// grace resumes the session on, and with what assurance.
    #[serde(default)]
    pub desk: Option<Assurance>,
}

/// The cookie value `sid.secret`: `sid` finds the session, `secret` proves
/// the browser holds it.
fn split_cookie(value: &str) -> Option<(&str, &str)> {
    value.split_once('.')
}

/// SSO sessions and the short-lived records of an authorization (pending
/// requests, codes, revocations). Cheap to clone.
#[derive(Clone)]
pub struct Sessions {
    cache: Arc<dyn Cache>,
    /// For the logout watch a client's first tokens queue (best effort).
    store: Arc<dyn Store>,
    clock: SharedClock,
    settings: Arc<Settings>,
}

impl Sessions {
    /// Sessions kept in `cache`; `store` receives the logout watches.
    pub fn new(cache: Arc<dyn Cache>, store: Arc<dyn Store>, clock: SharedClock, settings: Arc<Settings>) -> Self {
        Self { cache, store, clock, settings }
    }

    fn now(&self) -> i64 {
        self.clock.now()
    }

    /// Start an SSO session after a successful authentication; returns the
    /// cookie value and the session.
    pub async fn create_session(&self, user_id: &str, amr: Vec<Amr>, acr: &str) -> CacheResult<(String, Session)> {
        let now = self.now();
        let sid = random_token(16);
        let secret = new_secret();
        let session = Session {
            sid: sid.clone(),
            user_id: user_id.to_string(),
            auth_time: now,
            amr,
            acr: acr.to_string(),
            created_at: now,
        };
        let browser = Browser { digest: digest(&secret).to_vec(), assurance: session.assurance(), desk: None };
        let stored = StoredSession { browsers: vec![browser], session: session.clone() };
        let ttl = self.session_ttl(&session);
        put_json(self.cache.as_ref(), &keys::session(&sid), &stored, ttl).await?;
        self.index_user_session(user_id, &sid, now, None).await?;
        Ok((format!("{sid}.{secret}"), session))
    }

    /// A fresh authentication in the browser holding `cookie` (a step-up):
    /// new `auth_time`, `amr` and `acr` for that browser alone. `None` if
    /// the cookie no longer opens a live session.
    pub async fn step_up(&self, cookie: &str, amr: Vec<Amr>, acr: &str) -> CacheResult<Option<Session>> {
        let Some((sid, secret)) = split_cookie(cookie) else {
            return Ok(None);
        };
        let assurance = Assurance::new(acr, amr, self.now());
        let mut found = false;
        let session = self
            .update_stored(sid, |stored| {
                if let Some(browser) = stored.browsers.iter_mut().find(|b| matches_digest(secret, &b.digest)) {
                    browser.assurance = assurance.clone();
                    found = true;
                }
            })
            .await?;
        Ok(session.filter(|_| found).map(|s| s.seen_with(&assurance)))
    }

    /// Record a check made with the badge at a workstation in session
    /// `sid` (see [`IndexEntry::desk`]).
    pub async fn record_desk_check(&self, user_id: &str, sid: &str, check: &Assurance) -> CacheResult<()> {
        self.index_user_session(user_id, sid, check.auth_time, Some(check.clone())).await
    }

    /// Record (or refresh) `sid` in the user's session index, newest last,
    /// dropping sessions that have ended; `desk` replaces the entry's last
    /// workstation check when given.
    async fn index_user_session(
        &self,
        user_id: &str,
        sid: &str,
        auth_time: i64,
        desk: Option<Assurance>,
    ) -> CacheResult<()> {
        let mut live = Vec::new();
        let mut earlier_desk = None;
        for entry in self.user_sessions(user_id).await? {
            if entry.sid == sid {
                earlier_desk = entry.desk;
            } else if self.session_alive(&entry.sid).await? {
                live.push(entry);
            }
        }
        live.push(IndexEntry { sid: sid.to_string(), auth_time, desk: desk.or(earlier_desk) });
        let ttl = self.settings.session.max_lifetime;
        put_json(self.cache.as_ref(), &keys::user_sessions(user_id), &live, ttl).await
    }

    /// The sessions recorded for a user, oldest first (some may have ended
    /// since).
    pub async fn user_sessions(&self, user_id: &str) -> CacheResult<Vec<IndexEntry>> {
        Ok(get_json(self.cache.as_ref(), &keys::user_sessions(user_id)).await?.unwrap_or_default())
    }

    /// The user's newest live session, if any.
    pub async fn latest_session(&self, user_id: &str) -> CacheResult<Option<Session>> {
        for entry in self.user_sessions(user_id).await?.iter().rev() {
            if let Some(session) = self.session_by_sid(&entry.sid).await? {
                return Ok(Some(session));
            }
        }
        Ok(None)
    }

    /// A live session by `sid`.
    pub async fn session_by_sid(&self, sid: &str) -> CacheResult<Option<Session>> {
        Ok(self.live_session(self.cache.get(&keys::session(sid)).await?))
    }

    /// The live session in a read of `sess:{sid}` (alone or in a batch).
    pub fn live_session(&self, value: Option<Vec<u8>>) -> Option<Session> {
        let stored: StoredSession = serde_json::from_slice(&value?).ok()?;
        let max = self.settings.session.max_lifetime.as_secs() as i64;
        Some(stored.session).filter(|s| !s.expired(self.now(), max))
    }

    /// Change a live session as stored with `f` and store it back,
    /// resetting its idle timer; returns the updated session, or `None` if
    /// it has ended.
    async fn update_stored(&self, sid: &str, f: impl FnOnce(&mut StoredSession)) -> CacheResult<Option<Session>> {
        let key = keys::session(sid);
        let Some(mut stored) = get_json::<StoredSession>(self.cache.as_ref(), &key).await? else {
            return Ok(None);
        };
        if stored.session.expired(self.now(), self.settings.session.max_lifetime.as_secs() as i64) {
            return Ok(None);
        }
        f(&mut stored);
        let ttl = self.session_ttl(&stored.session);
        put_json(self.cache.as_ref(), &key, &stored, ttl).await?;
        Ok(Some(stored.session))
    }

    /// A new cookie value opening session `sid` in the browser a
    /// workstation hands it to, with that workstation's assurance and for
    /// as long as its attachment `desk` lasts.
    pub async fn add_session_cookie(
        &self,
        sid: &str,
        assurance: &Assurance,
        desk: Desk,
    ) -> CacheResult<Option<String>> {
        let secret = new_secret();
        let browser = Browser { digest: digest(&secret).to_vec(), assurance: assurance.clone(), desk: Some(desk) };
        let added = self.update_stored(sid, |stored| stored.browsers.push(browser)).await?;
        Ok(added.map(|_| format!("{sid}.{secret}")))
    }

    fn session_ttl(&self, session: &Session) -> Duration {
        let s = &self.settings.session;
        let remaining = session.created_at + s.max_lifetime.as_secs() as i64 - self.now();
        secs(remaining.min(s.idle_timeout.as_secs() as i64))
    }

    /// The live session a cookie opens, if any, as that browser sees it
    /// (its own `acr`, `amr` and `auth_time`). A handed-off browser's
    /// cookie opens it only while its workstation attachment lasts. Using a
    /// session resets its idle timer, within its maximum lifetime.
    pub async fn session_from_cookie(&self, cookie: &str) -> CacheResult<Option<Session>> {
        let Some((sid, secret)) = split_cookie(cookie) else {
            return Ok(None);
        };
        let Some(stored) = get_json::<StoredSession>(self.cache.as_ref(), &keys::session(sid)).await? else {
            return Ok(None);
        };
        let Some(browser) = stored.browsers.iter().find(|b| matches_digest(secret, &b.digest)) else {
            return Ok(None);
        };
        let max = self.settings.session.max_lifetime.as_secs() as i64;
        if stored.session.expired(self.now(), max) {
            self.cache.delete(&keys::session(sid)).await?;
            return Ok(None);
        }
        if let Some(desk) = &browser.desk {
            let key = keys::attachment(&desk.workstation_id);
            let attached: Option<Attachment> = get_json(self.cache.as_ref(), &key).await?;
            if attached.is_none_or(|a| a.ticket_digest != desk.ticket_digest) {
                return Ok(None);
            }
        }
        self.cache.touch(&keys::session(sid), self.session_ttl(&stored.session)).await?;
        Ok(Some(stored.session.clone().seen_with(&browser.assurance)))
    }

    /// Whether the session `sid` is still live (for refresh and userinfo).
    pub async fn session_alive(&self, sid: &str) -> CacheResult<bool> {
        Ok(self.session_by_sid(sid).await?.is_some())
    }

    /// The clients that got tokens in session `sid`.
    pub async fn session_clients(&self, sid: &str) -> CacheResult<Vec<String>> {
        Ok(parse_list(self.cache.get(&keys::session_clients(sid)).await?))
    }

    /// Record that `client` received tokens in `session`, for logout;
    /// `listed` is the session's client list as the caller read it (see
    /// [`Sessions::session_clients`]), and nothing is written when it names
    /// the client already. For a client with a back-channel logout URI, a
    /// notice is also queued in the store to watch for the session's expiry
    /// (see `backchannel`); that is best effort, so a store outage never
    /// blocks a token.
    pub async fn note_session_client(&self, session: &Session, client: &Client, listed: &[String]) -> CacheResult<()> {
        let client_id = client.client_id.as_str();
        if listed.iter().any(|c| c == client_id) {
            return Ok(());
        }
        // An append, not a rewrite of the session: two apps opened at once
        // both get listed. Guarded, so an ended session's list stays gone.
        let append =
            Op::Append(keys::session_clients(&session.sid), list_item(client_id), self.settings.session.max_lifetime);
        if self.cache.batch_if(Some(&keys::session(&session.sid)), &[append]).await?.is_none() {
            return Ok(());
        }
        if client.backchannel_logout_uri.is_some() {
            let notice = NewLogoutNotice {
                client_id: client_id.to_string(),
                sub: session.user_id.clone(),
                sid: session.sid.clone(),
            };
            let due = self.now() + self.settings.session.idle_timeout.as_secs() as i64;
            if let Err(e) = self.store.enqueue_logouts(&[notice], due, self.now()).await {
                tracing::warn!(error = %e, "could not queue the session-expiry logout watch");
            }
        }
        Ok(())
    }

    /// Revoke every token of a grant (code reuse, refresh reuse, revocation).
    pub async fn revoke_grant(&self, gid: &str) -> CacheResult<()> {
        let ttl = self.settings.oidc.refresh_token_ttl.max(self.settings.oidc.access_token_ttl);
        self.cache.put(&keys::revoked(gid), b"1", ttl).await
    }

    /// Whether a grant has been revoked.
    pub async fn grant_revoked(&self, gid: &str) -> CacheResult<bool> {
        Ok(self.cache.get(&keys::revoked(gid)).await?.is_some())
    }

    /// Remember a pending authorization; returns its id.
    pub async fn put_pending(&self, pending: &PendingAuthorization) -> CacheResult<String> {
        let id = random_token(16);
        put_json(self.cache.as_ref(), &keys::pending(&id), pending, Duration::from_secs(900)).await?;
        Ok(id)
    }

    /// Issue an authorization code for `record`; returns the code.
    pub async fn issue_code(&self, record: &CodeRecord) -> CacheResult<String> {
        let code = new_secret();
        put_json(self.cache.as_ref(), &keys::code(&digest_b64(&code)), record, self.settings.oidc.code_ttl).await?;
        Ok(code)
    }
}

#[cfg(test)]
mod tests {
    use wardkey_core::session::{ACR_BADGE_PIN, ACR_PASSKEY, ACR_PASSWORD};

    use super::*;
    use crate::attachments::Attachments;
    use crate::testkit::Kit;

    fn sessions(kit: &Kit) -> Sessions {
        Sessions::new(kit.cache.clone(), kit.store.clone(), kit.shared_clock(), kit.settings.clone())
    }

    #[tokio::test]
    async fn a_cookie_opens_its_session_and_nothing_else_does() {
        let kit = Kit::new().await;
        let sessions = sessions(&kit);
        let (cookie, session) = sessions.create_session("u1", vec![Amr::Pwd], ACR_PASSWORD).await.unwrap();
        let opened = sessions.session_from_cookie(&cookie).await.unwrap().expect("its own cookie opens it");
        assert_eq!(opened.sid, session.sid);
        let forged = format!("{}.{}", session.sid, new_secret());
        assert!(sessions.session_from_cookie(&forged).await.unwrap().is_none(), "a guessed secret opens nothing");
        assert!(sessions.session_from_cookie("no-dot").await.unwrap().is_none());
        assert_eq!(sessions.user_sessions("u1").await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_step_up_raises_only_the_browser_that_made_it() {
        let kit = Kit::new().await;
        let sessions = sessions(&kit);
        let (office, session) = sessions.create_session("u1", vec![Amr::Pwd], ACR_PASSWORD).await.unwrap();
        let ws = crate::attachments::Attachment {
            sid: session.sid.clone(),
            user_id: "u1".into(),
            user: wardkey_proto::tap::UserSummary { username: "u1".into(), name: None },
            ticket_digest: "t1".into(),
            assurance: Assurance::new(ACR_BADGE_PIN, vec![Amr::Badge, Amr::Pin], kit.now()),
        };
        kit.cache.put(&keys::attachment("ws1"), &crate::kv::to_json(&ws), Duration::from_secs(60)).await.unwrap();
        let desk = Desk { workstation_id: "ws1".into(), ticket_digest: "t1".into() };
        let handed = sessions.add_session_cookie(&session.sid, &ws.assurance, desk).await.unwrap().unwrap();
        kit.clock.advance(5);
        let raised = sessions.step_up(&office, vec![Amr::Hwk], ACR_PASSKEY).await.unwrap().unwrap();
        assert_eq!(raised.acr, ACR_PASSKEY);
        let at_desk = sessions.session_from_cookie(&handed).await.unwrap().unwrap();
        assert_eq!(at_desk.acr, ACR_BADGE_PIN, "the handed-off browser keeps its own level");
        // A new tap at the PC makes a new ticket: the handed-off browser's
        // sign-in ends with the attachment it came from.
        Attachments::new(kit.cache.clone(), kit.settings.clone()).detach("ws1").await.unwrap();
        assert!(sessions.session_from_cookie(&handed).await.unwrap().is_none());
        assert!(sessions.session_from_cookie(&office).await.unwrap().is_some(), "the office browser is unaffected");
    }

    #[tokio::test]
    async fn a_session_ends_at_its_maximum_lifetime_however_busy() {
        let kit = Kit::new().await;
        let sessions = sessions(&kit);
        let (cookie, session) = sessions.create_session("u1", vec![Amr::Pwd], ACR_PASSWORD).await.unwrap();
        let max = kit.settings.session.max_lifetime.as_secs() as i64;
        let idle = kit.settings.session.idle_timeout.as_secs() as i64;
        let mut elapsed = 0;
        while elapsed + idle / 2 < max {
            kit.clock.advance(idle / 2);
            elapsed += idle / 2;
            assert!(sessions.session_from_cookie(&cookie).await.unwrap().is_some(), "use keeps it alive");
        }
        kit.clock.advance(max - elapsed + 1);
        assert!(sessions.session_from_cookie(&cookie).await.unwrap().is_none());
        assert!(!sessions.session_alive(&session.sid).await.unwrap());
    }

    #[tokio::test]
    async fn a_revoked_grant_stays_revoked() {
        let kit = Kit::new().await;
        let sessions = sessions(&kit);
        assert!(!sessions.grant_revoked("g1").await.unwrap());
        sessions.revoke_grant("g1").await.unwrap();
        assert!(sessions.grant_revoked("g1").await.unwrap());
        assert!(!sessions.grant_revoked("g2").await.unwrap());
    }
}
