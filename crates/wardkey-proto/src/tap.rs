//! The tap protocol between a workstation agent and the server.
//!
//! Every request after enrolment is a compact JWS (`Content-Type:
//! application/jose`) signed with the workstation's Ed25519 key (`alg:
//! EdDSA`, `kid` = workstation id). The claims name the workstation (`iss`),
//! the server (`aud` = issuer), carry a fresh `jti` (each accepted once) and
//! `iat` (within the server's clock skew), plus the action's own fields.
//! Answers are JSON.

use serde::{Deserialize, Serialize};

use crate::Redacted;

/// `Content-Type` of signed tap requests.
pub const JOSE_CONTENT_TYPE: &str = "application/jose";

/// RFC 8693 `subject_token_type` of a session ticket in token exchange.
pub const SESSION_TICKET_TOKEN_TYPE: &str = "urn:wardkey:params:oauth:token-type:session-ticket";

/// RFC 8693 grant type.
pub const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// `POST /tap/enrol`: the agent registers its public key with a one-time
/// code an admin got from `wardkey workstation enrol`. `Debug` hides the
/// code.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrolRequest {
    /// The one-time enrolment code.
    pub code: String,
    /// The Ed25519 public key, 32 bytes base64url.
    pub public_key: String,
}

impl std::fmt::Debug for EnrolRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrolRequest").field("code", &Redacted).field("public_key", &self.public_key).finish()
    }
}

/// Answer to a successful enrolment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrolResponse {
    /// The workstation id: `iss` and `kid` of every signed request, and the
    /// `client_id` for token exchange.
    pub workstation_id: String,
    /// The name the admin gave it.
    pub name: String,
    /// Its ward.
    pub ward: String,
}

/// Claims common to every signed tap request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope<A> {
    /// The workstation id.
    pub iss: String,
    /// The server's issuer URL.
    pub aud: String,
    /// Unique per request; replays are refused.
    pub jti: String,
    /// Seconds since the Unix epoch.
    pub iat: i64,
    /// The action.
    #[serde(flatten)]
    pub action: A,
}

/// `POST /tap`: a badge was read. `Debug` hides the UID (a badge is
/// copied from it).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tap {
    /// The badge UID as the reader gave it (hex for PC/SC readers).
    pub badge: String,
}

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tap").field("badge", &Redacted).finish()
    }
}

/// `POST /tap/pin`: the PIN for a `pin_required` answer. `Debug` hides the
/// PIN.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinEntry {
    /// The `tap_id` of the `pin_required` answer.
    pub tap_id: String,
    /// The PIN as typed.
    pub pin: String,
}

impl std::fmt::Debug for PinEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PinEntry").field("tap_id", &self.tap_id).field("pin", &Redacted).finish()
    }
}

/// `POST /tap/self-enrol`: a clinician whose badge is not yet enrolled
/// enrols it at an enrolled workstation with their username and password
/// (only when the server allows self-enrolment). Success signs them in.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelfEnrol {
    /// The badge UID as read.
    pub badge: String,
    /// The clinician's username.
    pub username: String,
    /// Their password.
    pub password: String,
}

impl std::fmt::Debug for SelfEnrol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SelfEnrol").field("username", &self.username).finish_non_exhaustive()
    }
}

/// `POST /tap/key/start`: a FIDO2 security key or FIDO2 badge is about to
/// be read; the answer is a WebAuthn challenge ([`KeyChallenge`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyTapStart {}

/// The answer to [`KeyTapStart`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyChallenge {
    /// Names the challenge in [`KeyTap`]; valid once, for 5 minutes.
    pub ceremony: String,
    /// WebAuthn `PublicKeyCredentialRequestOptionsJSON` under `publicKey`:
    /// the challenge, the relying party id and `userVerification`.
    pub options: serde_json::Value,
}

/// `POST /tap/key`: the key's answer, a WebAuthn assertion made with the
/// server's issuer as its origin (`PublicKeyCredential.toJSON()` form). A
/// phishing-resistant tap: no badge UID, no PIN grace needed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyTap {
    /// From the [`KeyChallenge`].
    pub ceremony: String,
    /// The assertion.
    pub credential: serde_json::Value,
}

/// `POST /tap/out`: lock the workstation, or sign the clinician out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TapOut {
    /// End the SSO session everywhere (and notify every app), not just this
    /// workstation's use of it.
    #[serde(default)]
    pub logout: bool,
}

/// `POST /tap/handoff`: a one-time URL that opens a browser EPR signed in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoffRequest {
    /// The EPR client whose registered start URL the browser lands on.
    pub client_id: String,
}

/// `POST /tap/report`: how long the clinician waited, for ops' dashboards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TapReport {
    /// From badge read to unlocked desktop, in seconds.
    pub tap_to_active_seconds: f64,
}

/// Who is at the keyboard, as the agent shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSummary {
    /// Login name.
    pub username: String,
    /// Display name, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// The server's answer to a tap or a PIN. `Debug` hides the session
/// ticket.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum TapResponse {
    /// The clinician is in: the session is attached to this workstation.
    Active {
        /// Who.
        user: UserSummary,
        /// Bearer of this workstation's use of the session, for token
        /// exchange and handoff. Dies on lock, switch and logout.
        session_ticket: String,
        /// Seconds until the ticket expires unless the session is used.
        expires_in: u64,
    },
    /// Another clinician took over the workstation from `previous`.
    Switched {
        /// The new clinician.
        user: UserSummary,
        /// The clinician who was at the workstation.
        previous: UserSummary,
        /// As for `Active`.
        session_ticket: String,
        /// As for `Active`.
        expires_in: u64,
    },
    /// The badge is known but a PIN is needed (first tap of a shift, or the
    /// PIN grace period has passed).
    PinRequired {
        /// Echo this in `POST /tap/pin`.
        tap_id: String,
        /// Who the badge belongs to, so the prompt can greet them.
        user: UserSummary,
        /// Seconds the agent has to send the PIN.
        expires_in: u64,
    },
    /// The workstation is locked (the same clinician tapped again, or tapped
    /// out).
    Locked,
    /// The clinician was signed out everywhere.
    LoggedOut,
}

impl std::fmt::Debug for TapResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Active { user, session_ticket: _, expires_in } => f
                .debug_struct("Active")
                .field("user", user)
                .field("session_ticket", &Redacted)
                .field("expires_in", expires_in)
                .finish(),
            Self::Switched { user, previous, session_ticket: _, expires_in } => f
                .debug_struct("Switched")
                .field("user", user)
                .field("previous", previous)
                .field("session_ticket", &Redacted)
                .field("expires_in", expires_in)
                .finish(),
            Self::PinRequired { tap_id, user, expires_in } => f
                .debug_struct("PinRequired")
                .field("tap_id", tap_id)
                .field("user", user)
                .field("expires_in", expires_in)
                .finish(),
            Self::Locked => f.write_str("Locked"),
            Self::LoggedOut => f.write_str("LoggedOut"),
        }
    }
}

/// Answer to `POST /tap/handoff`. `Debug` hides the URL (it carries a
/// one-time code that signs a browser in).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoffResponse {
    /// Open this once, within `expires_in` seconds, in the browser.
    pub url: String,
    /// Seconds.
    pub expires_in: u64,
}

impl std::fmt::Debug for HandoffResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandoffResponse").field("url", &Redacted).field("expires_in", &self.expires_in).finish()
    }
}

/// A refused tap request: `error` is a stable code, `message` a sentence a
/// clinician or the service desk can act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TapError {
    /// Stable code: `invalid_request`, `invalid_signature`, `replayed`,
    /// `stale`, `workstation_disabled`, `unknown_badge`, `badge_locked`,
    /// `user_disabled`, `wrong_pin`, `pin_too_short`, `expired`, `unavailable`.
    pub error: String,
    /// Plain words.
    pub message: String,
}

/// `POST /tap/events`: a workstation opens its desk channel, a stream of
/// server-sent events (`text/event-stream`) that tells it when the session
/// attached to it has been ended elsewhere (revoked, the user or the
/// workstation disabled, a badge revoked, a logout in another place), so
/// that the PC locks within seconds instead of at its next request. Signed
/// like every tap request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeskSubscribe {
    /// The digest of the session ticket the agent holds (see [`DeskLock`]),
    /// if any: an attachment that went away while the agent was not
    /// listening (a reconnect) is reported at once.
    #[serde(default)]
    pub held: Option<String>,
}

/// The SSE event name of a [`DeskLock`].
pub const DESK_LOCK_EVENT: &str = "lock";

/// An event of the desk channel (its `data`): the attachment whose session
/// ticket has this digest (SHA-256, base64url, of the ticket) is gone. An
/// agent locks only if that is the ticket it holds now: an event can end a
/// sign-in, never start one, and a lock or switch made at the PC itself
/// meanwhile is not undone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeskLock {
    /// Digest of the session ticket that no longer opens anything.
    pub ticket_digest: String,
}
