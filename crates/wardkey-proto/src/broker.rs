//! The agent's local token broker: HTTP over a Unix socket (mode 0600) that
//! desktop EPR apps ask instead of showing their own login.

use serde::{Deserialize, Serialize};

use crate::tap::UserSummary;

/// What the workstation is doing now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkstationState {
    /// Nobody is signed in at this workstation.
    #[default]
    Locked,
    /// A badge was tapped and the agent is waiting for its PIN.
    PinRequired,
    /// A clinician is at the keyboard.
    Active,
}

/// `GET /v1/session`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// State.
    pub state: WorkstationState,
    /// The clinician, when `pin_required` or `active`.
    pub user: Option<UserSummary>,
    /// This workstation's name.
    pub workstation: String,
}

/// `POST /v1/token`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerTokenRequest {
    /// The EPR app's client id (registered with the token_exchange grant).
    pub client_id: String,
}

/// One event of `GET /v1/events` (server-sent events, `data:` = this JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum BrokerEvent {
    /// The workstation locked; drop any cached tokens and hide patient data.
    Lock,
    /// A clinician unlocked it.
    Unlock {
        /// Who.
        user: UserSummary,
    },
    /// Another clinician took over.
    Switch {
        /// The new clinician.
        user: UserSummary,
        /// The previous one.
        previous: UserSummary,
    },
}

/// `GET /v1/desk` (and each event of `GET /v1/desk/events`): what the lock
/// screen shows. The agent is the one source of truth; the screen only
/// draws this and sends PINs back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeskScreen {
    /// Changes with every new screen, so a desk's "shown" report names the
    /// screen it drew.
    pub seq: u64,
    /// Locked, waiting for a PIN, or active.
    pub state: WorkstationState,
    /// The clinician, when `pin_required` or `active`.
    pub user: Option<UserSummary>,
    /// The workstation's name.
    pub workstation: String,
    /// A sentence for the person at the screen (wrong PIN, locked badge,
    /// server unreachable), if there is one.
    pub message: Option<String>,
    /// Whether `message` reports a problem rather than progress.
    pub alert: bool,
    /// Waiting for a security key's own PIN (not the badge PIN).
    pub key_pin: bool,
    /// The Wardkey server cannot be reached.
    pub server_unreachable: bool,
    /// The desktop part reported that the desktop is showing for this
    /// `seq` (tap to desktop is measured up to here).
    pub desktop_shown: bool,
}

/// `POST /v1/pin`: a PIN typed on the lock screen's pad.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeskPin {
    /// The PIN (the badge's, or the security key's own when
    /// [`DeskScreen::key_pin`]).
    pub pin: String,
}

/// A PIN never prints.
impl std::fmt::Debug for DeskPin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeskPin { pin: <redacted> }")
    }
}

/// `POST /v1/desk/shown`: the desktop part shows the desktop for screen
/// `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeskShown {
    /// The [`DeskScreen::seq`] it acted on.
    pub seq: u64,
}
