//! The tap API: workstation enrolment, badge taps, PIN entry, tap-out,
//! browser handoff and tap-to-active reports.
//!
//! The hot path is `POST /tap` for a clinician whose session had a real
//! check (PIN or password) within the PIN grace: it verifies one Ed25519
//! signature, reads the badge, user and workstation from the node's
//! directory cache, and attaches the session in two session-cache round
//! trips (see [`tap`]). No argon2 and no store write happen on it.

pub mod events;
pub mod key;

use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::json;
use wardkey_cache::Op;
use wardkey_core::badge::{self, MAX_PIN_FAILURES};
use wardkey_core::secret::{digest, digest_b64, random_token};
use wardkey_core::session::{ACR_BADGE_PIN, ACR_PASSWORD, Amr, Assurance};
use wardkey_core::user::User;
use wardkey_core::workstation::Workstation;
use wardkey_proto::tap::{
    EnrolRequest, EnrolResponse, HandoffRequest, HandoffResponse, PinEntry, SelfEnrol, Tap, TapOut, TapReport,
    TapResponse,
};

use crate::cookies::CookieName;
use crate::error::{PageError, TapApiError};
use crate::kv::{from_reply, get_json, keys, put_json, take_json, to_json};
use crate::logins::{PinVerdict, Verdict};
use crate::metrics::Metrics;
use crate::pages::see_other;
use crate::sessions::{Desk, IndexEntry};
use crate::signins::{Method, SignIn, now_ms, since_ms};
use crate::state::AppState;

use crate::attachments::summary;
use crate::desks::Seen;
use crate::workstation_auth::{SignedTap, check_fresh};

/// How long a browser handoff link works.
const HANDOFF_TTL: Duration = Duration::from_secs(30);

/// The tap routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/tap/enrol", post(enrol))
        .route("/tap", post(tap))
        .route("/tap/pin", post(pin))
        .route("/tap/out", post(out))
        .route("/tap/handoff", post(handoff))
        .route("/tap/handoff/{token}", get(open_handoff))
        .route("/tap/report", post(report))
        .route("/tap/self-enrol", post(self_enrol))
        .route("/tap/key/start", post(key::start))
        .route("/tap/key", post(key::tap))
        .route("/tap/events", post(events::events))
}

/// A tap waiting for its PIN.
#[derive(Debug, Serialize, Deserialize)]
struct PendingTap {
    workstation_id: String,
    user_id: String,
    badge_digest: String,
    /// When the PIN was asked for (Unix ms): the PIN step's start.
    #[serde(default)]
    asked_ms: i64,
}

/// A handoff link's target: the attachment it was made for, whose
/// assurance the browser gets and with which its sign-in ends.
#[derive(Debug, Serialize, Deserialize)]
struct Handoff {
    sid: String,
    workstation_id: String,
    ticket_digest: String,
    client_id: String,
}

/// `POST /tap/enrol`: an agent registers its public key with a one-time code.
async fn enrol(State(state): State<AppState>, body: Bytes) -> Result<Json<EnrolResponse>, TapApiError> {
    let request: EnrolRequest = serde_json::from_slice(&body)
        .map_err(|e| TapApiError::InvalidRequest(format!("the enrolment request is not valid JSON: {e}")))?;
    let key = URL_SAFE_NO_PAD
        .decode(request.public_key.trim())
        .ok()
        .filter(|k| k.len() == 32)
        .ok_or_else(|| TapApiError::InvalidRequest("public_key must be a 32-byte Ed25519 key, base64url".into()))?;
    let code = wardkey_core::workstation::normalise_code(&request.code);
    let ws = match state.store.enrol_workstation(&digest(&code), &key, state.now()).await {
        Ok(ws) => ws,
        Err(wardkey_store::StoreError::NotFound(_)) => {
            return Err(TapApiError::Expired(
                "this enrolment code is not valid: it may have expired or been used already; ask IT for a new one"
                    .into(),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    audit(&state, "workstation.enrolled", &ws.name, json!({"ward": ws.ward, "workstation_id": ws.id})).await;
    Ok(Json(EnrolResponse { workstation_id: ws.id, name: ws.name, ward: ws.ward }))
}

async fn audit(state: &AppState, event: &str, subject: &str, detail: serde_json::Value) {
    state.audit.record(event, "tap", subject, detail).await;
}

/// The enabled user a badge belongs to, refusing locked badges. The tap hot
/// path reads the node's directory cache; PIN entry (`fresh`) reads the
/// badge from the store, so a lockout made on another node a moment ago
/// holds.
async fn badge_owner(state: &AppState, digest: &[u8], fresh: bool) -> Result<(badge::Badge, User), TapApiError> {
    let badge = if fresh { state.store.badge(digest).await? } else { state.directory.badge(digest).await? };
    let badge = badge.ok_or(TapApiError::UnknownBadge)?;
    let user = state.directory.user(&badge.user_id).await?.ok_or(TapApiError::UnknownBadge)?;
    if user.disabled {
        return Err(TapApiError::UserDisabled);
    }
    if badge.failed_pins >= MAX_PIN_FAILURES {
        return Err(TapApiError::BadgeLocked);
    }
    Ok((badge, user))
}

/// `POST /tap`: the hot path. With Redis each cache round trip is a network
/// hop, so it makes two: one to record the `jti` and read what the decision
/// needs (who is at the workstation, the clinician's sessions, where the
/// badge was last seen), one to write the outcome.
async fn tap(State(state): State<AppState>, body: Bytes) -> Result<Json<TapResponse>, TapApiError> {
    let started = Instant::now();
    let signed: SignedTap<Tap> = state.workstations.verify_signed_tap(&body).await?;
    let ws = &signed.ws;
    let digest =
        badge::digest(&state.badge_key, &signed.action.badge).map_err(|e| TapApiError::InvalidRequest(e.message))?;
    let (_, user) = badge_owner(&state, &digest, false).await?;
    let seen_key = keys::badge_seen(&URL_SAFE_NO_PAD.encode(&digest));
    let replies = state
        .cache
        .batch(&[
            signed.nonce.op(),
            Op::Get(keys::attachment(&ws.id)),
            Op::Get(keys::user_sessions(&user.id)),
            Op::Get(seen_key.clone()),
        ])
        .await?;
    let mut replies = replies.into_iter();
    check_fresh(replies.next().as_ref())?;
    let current: Option<crate::attachments::Attachment> = from_reply(replies.next());
    let sessions: Vec<IndexEntry> = from_reply(replies.next()).unwrap_or_default();
    state.desks.check_cloned_badge(from_reply(replies.next()), &digest, ws).await;
    let seen = Seen { ward: ws.ward.clone(), workstation_id: ws.id.clone() };
    let seen = [Op::Put(seen_key, to_json(&seen), state.settings.tap.cloned_badge_window)];

    if let Some(own) = current.as_ref().filter(|a| a.user_id == user.id) {
        // The same clinician tapping their own workstation locks it.
        state.attachments.detach_known(&ws.id, own, &seen).await?;
        Metrics::count(&state.metrics.taps, "locked");
        state.audit.queue("tap.lock", &user.username, &user.username, at_workstation(ws));
        return Ok(Json(TapResponse::Locked));
    }
    // The newest session with a real check within the PIN grace; an older
    // one only if that has ended since (a round trip per try, off the hot
    // path).
    let checked_since = state.now() - state.settings.pin_grace(&ws.ward).as_secs() as i64;
    // The grace runs from the last check made with the badge at a
    // workstation, and the tap carries that check's level, capped at
    // badge + PIN: nothing earned in a browser or by a key tap is lent to a
    // badge.
    let resumable = sessions.iter().rev().filter_map(|e| Some((e, e.desk.as_ref()?)));
    for (entry, check) in resumable.filter(|(_, check)| check.auth_time >= checked_since) {
        let here = check.resumed_by_badge();
        if let Some(response) = state.desks.activate(ws, &entry.sid, &user, current.as_ref(), &here, &seen).await? {
            signed_in(&state, ws, &user, Method::Badge, started.elapsed(), &response);
            return Ok(Json(response));
        }
    }
    let tap_id = random_token(16);
    let pending = PendingTap {
        workstation_id: ws.id.clone(),
        user_id: user.id.clone(),
        badge_digest: URL_SAFE_NO_PAD.encode(&digest),
        asked_ms: now_ms(),
    };
    let ttl = state.settings.tap.pin_entry_ttl;
    let mut ops = vec![Op::Put(keys::pending_tap(&tap_id), to_json(&pending), ttl)];
    ops.extend(seen);
    state.cache.batch(&ops).await?;
    Metrics::count(&state.metrics.taps, "pin_required");
    state.signins.step("tap", &ws.ward, started.elapsed());
    Ok(Json(TapResponse::PinRequired { tap_id, user: summary(&user), expires_in: ttl.as_secs() }))
}

/// `POST /tap/pin`.
async fn pin(State(state): State<AppState>, body: Bytes) -> Result<Json<TapResponse>, TapApiError> {
    let (ws, entry): (Workstation, PinEntry) = state.workstations.verify_tap(&body).await?;
    let expired = || TapApiError::Expired("the PIN prompt has expired; tap your badge again".into());
    let key = keys::pending_tap(&entry.tap_id);
    let pending: PendingTap = get_json(state.cache.as_ref(), &key)
        .await?
        .filter(|p: &PendingTap| p.workstation_id == ws.id)
        .ok_or_else(expired)?;
    let digest = URL_SAFE_NO_PAD.decode(&pending.badge_digest).map_err(|_| expired())?;
    let (badge, user) = match badge_owner(&state, &digest, true).await {
        Err(TapApiError::BadgeLocked) => {
            state.cache.delete(&key).await?;
            return Err(TapApiError::BadgeLocked);
        }
        other => other?,
    };
    if entry.pin.len() > 64 {
        return Err(TapApiError::InvalidRequest("the PIN is too long".into()));
    }
    // No PIN is this short, so it is a slip of the finger (NIST SP 800-63B
    // §5.2.2 limits failed guesses; this is not one), not counted.
    let min = state.settings.tap.pin_min_length;
    if entry.pin.chars().count() < min {
        return Err(TapApiError::PinTooShort { min });
    }
    match state.logins.check_pin(&digest, &user, entry.pin, &ws.name).await? {
        PinVerdict::Right => {}
        PinVerdict::Busy => return Err(TapApiError::Throttled { wait: 1 }),
        PinVerdict::Wrong { remaining } => {
            Metrics::count(&state.metrics.taps, "wrong_pin");
            state.signins.wrong_pin(&ws.ward);
            return Err(TapApiError::WrongPin { remaining });
        }
        PinVerdict::Locked { just_now } => {
            if just_now {
                Metrics::count(&state.metrics.taps, "wrong_pin");
                state.signins.wrong_pin(&ws.ward);
                state.signins.lockout("badge", &ws.ward);
            }
            state.cache.delete(&key).await?;
            return Err(TapApiError::BadgeLocked);
        }
    }
    // Single use from here: a second PIN for the same tap finds nothing.
    if take_json::<PendingTap>(state.cache.as_ref(), &key).await?.is_none() {
        return Err(expired());
    }
    if badge.failed_pins > 0 {
        state.store.reset_pin_failures(&user.id).await?;
        state.directory.changed().await;
    }
    // The PIN is this workstation's check (and what later badge taps resume
    // on); the session it joins keeps its level everywhere else.
    let here = Assurance::new(ACR_BADGE_PIN, vec![Amr::Badge, Amr::Pin], state.now());
    let session = match state.sessions.latest_session(&user.id).await? {
        Some(s) => s,
        None => state.sessions.create_session(&user.id, here.amr.clone(), ACR_BADGE_PIN).await?.1,
    };
    state.sessions.record_desk_check(&user.id, &session.sid, &here).await?;
    let response = state.desks.activate_fresh(&ws, &session, &user, &here).await?;
    signed_in(&state, &ws, &user, Method::BadgePin, since_ms(pending.asked_ms), &response);
    Ok(Json(response))
}

/// Record a sign-in that unlocked `ws` (`response` is active or switched).
pub(crate) fn signed_in(
    state: &AppState,
    ws: &Workstation,
    user: &User,
    method: Method,
    took: Duration,
    response: &TapResponse,
) {
    if let TapResponse::Switched { previous, .. } = response {
        let mut detail = at_workstation(ws);
        detail["to"] = json!(user.username);
        state.audit.queue("tap.switch", &previous.username, &previous.username, detail);
    }
    state.signins.record(SignIn {
        method,
        username: &user.username,
        workstation: Some((&ws.name, &ws.ward)),
        took,
        client_id: None,
        address: None,
    });
}

/// The audit detail naming a workstation and its ward.
fn at_workstation(ws: &Workstation) -> serde_json::Value {
    json!({"workstation": ws.name, "ward": ws.ward, "workstation_id": ws.id})
}

/// `POST /tap/out`: lock, or sign out everywhere.
async fn out(State(state): State<AppState>, body: Bytes) -> Result<Json<TapResponse>, TapApiError> {
    let (ws, out): (Workstation, TapOut) = state.workstations.verify_tap(&body).await?;
    let Some(attachment) = state.attachments.detach(&ws.id).await? else {
        return Ok(Json(TapResponse::Locked));
    };
    let who = attachment.user.username.clone();
    if out.logout {
        state.logouts.logout_session(&attachment.sid, "tap-out").await?;
        Metrics::count(&state.metrics.taps, "logged_out");
        state.audit.queue("tap.out", &who, &who, at_workstation(&ws));
        return Ok(Json(TapResponse::LoggedOut));
    }
    Metrics::count(&state.metrics.taps, "locked");
    state.audit.queue("tap.lock", &who, &who, at_workstation(&ws));
    Ok(Json(TapResponse::Locked))
}

/// `POST /tap/handoff`: a one-time link that opens a browser EPR signed in
/// as the clinician at this workstation.
async fn handoff(State(state): State<AppState>, body: Bytes) -> Result<Json<HandoffResponse>, TapApiError> {
    let (ws, request): (Workstation, HandoffRequest) = state.workstations.verify_tap(&body).await?;
    let attachment =
        state.attachments.attachment(&ws.id).await?.ok_or_else(|| {
            TapApiError::Expired("nobody is signed in at this workstation; tap your badge first".into())
        })?;
    let client = state.store.client(&request.client_id).await?;
    if client.is_none_or(|c| c.start_url.is_none()) {
        return Err(TapApiError::InvalidRequest(format!(
            "{:?} has no start URL registered; ask IT to add one with `wardkey client add … --start-url`",
            request.client_id
        )));
    }
    let token = random_token(32);
    let record = Handoff {
        sid: attachment.sid,
        workstation_id: ws.id,
        ticket_digest: attachment.ticket_digest,
        client_id: request.client_id,
    };
    put_json(state.cache.as_ref(), &keys::handoff(&digest_b64(&token)), &record, HANDOFF_TTL).await?;
    Ok(Json(HandoffResponse { url: state.url(&format!("/tap/handoff/{token}")), expires_in: HANDOFF_TTL.as_secs() }))
}

/// `GET /tap/handoff/{token}`: sets the SSO cookie once and sends the
/// browser to the EPR's start URL, whose own OIDC flow then completes
/// silently.
async fn open_handoff(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    match redeem_handoff(&state, &token).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn redeem_handoff(state: &AppState, token: &str) -> Result<Response, PageError> {
    let gone = || {
        PageError::BadRequest(
            "This sign-in link has already been used or has expired. Tap your badge and open the application again."
                .into(),
        )
    };
    let record: Handoff =
        take_json(state.cache.as_ref(), &keys::handoff(&digest_b64(token))).await?.ok_or_else(gone)?;
    // Still the same attachment at that workstation: a lock or switch kills
    // the link, and the browser's sign-in with it.
    let attachment = state
        .attachments
        .attachment(&record.workstation_id)
        .await?
        .filter(|a| a.ticket_digest == record.ticket_digest)
        .ok_or_else(gone)?;
    let start = state.store.client(&record.client_id).await?.and_then(|c| c.start_url).ok_or_else(gone)?;
    let desk = Desk { workstation_id: record.workstation_id, ticket_digest: record.ticket_digest };
    let cookie = state.sessions.add_session_cookie(&record.sid, &attachment.assurance, desk).await?.ok_or_else(gone)?;
    let mut response = see_other(&start);
    state.cookies.set(response.headers_mut(), CookieName::Session, &cookie);
    Ok(response)
}

/// `POST /tap/self-enrol`: a clinician enrols their own badge at this
/// workstation with their username and password, and is signed in. The
/// password check is the login page's, throttling included.
async fn self_enrol(State(state): State<AppState>, body: Bytes) -> Result<Json<TapResponse>, TapApiError> {
    let started = Instant::now();
    let (ws, request): (Workstation, SelfEnrol) = state.workstations.verify_tap(&body).await?;
    if !state.settings.tap.self_enrolment {
        return Err(TapApiError::NotAllowed(
            "badges are enrolled by the IT service desk here; ask them to enrol yours".into(),
        ));
    }
    let digest = badge::digest(&state.badge_key, &request.badge).map_err(|e| TapApiError::InvalidRequest(e.message))?;
    if state.store.badge(&digest).await?.is_some() {
        return Err(TapApiError::InvalidRequest("this badge is already enrolled".into()));
    }
    if request.password.len() > 1024 || request.username.len() > 64 {
        return Err(TapApiError::InvalidRequest("the username or password is too long".into()));
    }
    let user = match state.logins.check(request.username.trim(), &request.password).await {
        Ok(Verdict::Success(user)) => user,
        Ok(Verdict::Wrong) => return Err(TapApiError::WrongPassword),
        Ok(Verdict::Throttled(wait)) => return Err(TapApiError::Throttled { wait }),
        Ok(Verdict::Locked) => {
            return Err(TapApiError::NotAllowed("this account is locked; call the IT service desk".into()));
        }
        Ok(Verdict::Disabled) => return Err(TapApiError::UserDisabled),
        Ok(Verdict::DirectoryUnavailable) | Err(_) => return Err(TapApiError::Unavailable),
    };
    let record = badge::Badge { digest, user_id: user.id.clone(), failed_pins: 0, created_at: state.now() };
    match state.store.add_badge(&record).await {
        Ok(()) => state.directory.changed().await,
        Err(wardkey_store::StoreError::Conflict(_)) => {
            return Err(TapApiError::InvalidRequest("this badge is already enrolled".into()));
        }
        Err(e) => return Err(e.into()),
    }
    audit(&state, "badge.self_enrol", &user.username, json!({"workstation": ws.name, "ward": ws.ward})).await;
    // The password was a real check, made with the badge: the clinician is
    // signed in here, and later taps of the badge resume on it.
    let (_, session) = state.sessions.create_session(&user.id, vec![Amr::Pwd, Amr::Badge], ACR_PASSWORD).await?;
    let here = session.assurance();
    state.sessions.record_desk_check(&user.id, &session.sid, &here).await?;
    let response = state.desks.activate_fresh(&ws, &session, &user, &here).await?;
    signed_in(&state, &ws, &user, Method::Password, started.elapsed(), &response);
    Ok(Json(response))
}

/// `POST /tap/report`: the agent's measured tap-to-active time.
async fn report(State(state): State<AppState>, body: Bytes) -> Result<StatusCode, TapApiError> {
    let (ws, report): (Workstation, TapReport) = state.workstations.verify_tap(&body).await?;
    let seconds = report.tap_to_active_seconds;
    if !seconds.is_finite() || !(0.0..=3600.0).contains(&seconds) {
        return Err(TapApiError::InvalidRequest("tap_to_active_seconds must be between 0 and 3600".into()));
    }
    state.metrics.tap_to_active.observe(seconds);
    state.signins.step("desktop", &ws.ward, Duration::from_secs_f64(seconds));
    Ok(StatusCode::NO_CONTENT)
}
