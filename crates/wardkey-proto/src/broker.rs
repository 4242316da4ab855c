//! The agent's local token broker: HTTP over a Unix socket (mode 0600) that
//! desktop EPR apps ask instead of showing their own login.

use serde::{Deserialize, Serialize};

use crate::tap::UserSummary;

/// What the workstation is doing now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkstationState {
    /// Nobody is signed in at this workstation.
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
