//! The FIDO2 tap: a security key or FIDO2 badge tapped on the workstation's
//! reader answers a WebAuthn challenge instead of giving a badge UID. The
//! agent asks for the challenge (`POST /tap/key/start`), has the key sign it
//! with the issuer as origin, and sends the assertion (`POST /tap/key`); both
//! are signed by the workstation like every tap request.
//!
//! The key proves possession and verifies the user itself, so no PIN and
//! no PIN grace are involved: a security key reaches the security-key
//! `acr`, a passkey (a phone held to the reader) the passkey `acr`. Where
//! the trust approves only certain key models, only security keys (whose
//! model was checked when they were added) may unlock a workstation.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use wardkey_core::session::Assurance;
use wardkey_proto::tap::{KeyChallenge, KeyTap, KeyTapStart, TapResponse};
use wardkey_store::AuthenticatorKind;
use webauthn_rs::prelude::PublicKeyCredential;

use crate::error::{TapApiError, WebauthnApiError};
use crate::passkeys::assurance;
use crate::state::AppState;

impl From<WebauthnApiError> for TapApiError {
    fn from(e: WebauthnApiError) -> Self {
        match e {
            WebauthnApiError::InvalidRequest(m) => Self::InvalidRequest(m),
            WebauthnApiError::Expired => Self::Expired("the key took too long to answer; tap it again".into()),
            WebauthnApiError::Refused(m) => Self::NotAllowed(m),
            WebauthnApiError::NotConfigured
            | WebauthnApiError::NotSignedIn
            | WebauthnApiError::KeyNotApproved
            | WebauthnApiError::KeyModelHidden
            | WebauthnApiError::PasskeysOff
            | WebauthnApiError::SignInAgain => Self::NotAllowed(e.to_string()),
            WebauthnApiError::Busy(_) => Self::Unavailable,
            WebauthnApiError::Unavailable => Self::Unavailable,
        }
    }
}

/// `POST /tap/key/start`.
pub async fn start(State(state): State<AppState>, body: Bytes) -> Result<Json<KeyChallenge>, TapApiError> {
    let _: (_, KeyTapStart) = state.workstations.verify_tap(&body).await?;
    let started = state.passkeys.start_sign_in(String::new(), None).await?;
    serde_json::from_value(started)
        .map(Json)
        .map_err(|e| TapApiError::InvalidRequest(format!("cannot start the key's challenge: {e}")))
}

/// `POST /tap/key`: sign in (or re-check the clinician's newest session) at
/// the security-key level and attach the session to this workstation.
pub async fn tap(State(state): State<AppState>, body: Bytes) -> Result<Json<TapResponse>, TapApiError> {
    let started = std::time::Instant::now();
    let (ws, request): (_, KeyTap) = state.workstations.verify_tap(&body).await?;
    let credential: PublicKeyCredential = serde_json::from_value(request.credential)
        .map_err(|e| TapApiError::InvalidRequest(format!("the key's answer is not a WebAuthn assertion: {e}")))?;
    let (_, user, stored) = state.passkeys.verify_assertion(&request.ceremony, &credential).await?;
    if state.passkeys.approved_only() && stored.kind == AuthenticatorKind::Passkey {
        tracing::info!(user = %user.username, "a passkey tapped where only approved key models may unlock");
        return Err(WebauthnApiError::KeyNotApproved.into());
    }
    let (acr, amr) = assurance(stored.kind);
    // The key's level holds at this workstation alone: the session it
    // joins keeps its own elsewhere, and a later badge tap here or at
    // another PC resumes at badge + PIN at most.
    let session = match state.sessions.latest_session(&user.id).await? {
        Some(s) => s,
        None => state.sessions.create_session(&user.id, amr.clone(), acr).await?.1,
    };
    let here = Assurance::new(acr, amr, state.now());
    let response = state.desks.activate_fresh(&ws, &session, &user, &here).await?;
    super::signed_in(&state, &ws, &user, crate::signins::Method::Passkey, started.elapsed(), &response);
    Ok(Json(response))
}
