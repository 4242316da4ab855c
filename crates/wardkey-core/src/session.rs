//! SSO sessions and what they record about how the person authenticated.

use serde::{Deserialize, Serialize};

/// Authentication methods (RFC 8176 `amr` values) a session has seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Amr {
    /// Password.
    Pwd,
    /// PIN.
    Pin,
    /// Proof of possession of a hardware token (the badge, a security key).
    Hwk,
    /// User presence test.
    User,
    /// Proof of possession of a software-secured key (a passkey: its
    /// private key may be synced between a person's devices).
    Swk,
    /// More than one factor: a WebAuthn authenticator that verified the
    /// user (its PIN or a fingerprint) on top of proving possession.
    Mfa,
    /// A badge was tapped (a prox card UID: possession, but not proof of
    /// possession, so never `hwk`).
    Badge,
}

impl Amr {
    /// The RFC 8176 value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pwd => "pwd",
            Self::Pin => "pin",
            Self::Hwk => "hwk",
            Self::User => "user",
            Self::Swk => "swk",
            Self::Mfa => "mfa",
            Self::Badge => "badge",
        }
    }
}

/// `acr` for a password sign-in: one memorised secret, NIST SP 800-63B AAL1.
pub const ACR_PASSWORD: &str = "urn:wardkey:acr:pwd";
/// `acr` for badge + PIN at an enrolled workstation. The badge UID is not an
/// authenticator, so this is still AAL1 (the PIN is the memorised secret);
/// the enrolled workstation key adds device binding.
pub const ACR_BADGE_PIN: &str = "urn:wardkey:acr:badge-pin";

/// `acr` for a passkey with user verification (WebAuthn): a multi-factor
/// cryptographic authenticator that resists phishing, NIST SP 800-63B AAL2
/// (a synced key is not AAL3's hardware-bound key, §4.3.2).
pub const ACR_PASSKEY: &str = "urn:wardkey:acr:passkey";
/// `acr` for a FIDO2 hardware security key with user verification: a
/// multi-factor cryptographic device whose key never leaves the hardware,
/// NIST SP 800-63B AAL3 (§4.3).
pub const ACR_SECURITY_KEY: &str = "urn:wardkey:acr:security-key";

/// Every `acr` Wardkey issues, weakest first: a request for one is met by
/// it or anything after it.
pub const ACR_LEVELS: [&str; 4] = [ACR_PASSWORD, ACR_BADGE_PIN, ACR_PASSKEY, ACR_SECURITY_KEY];

/// The strength of `acr` in [`ACR_LEVELS`], or `None` for a value Wardkey
/// does not issue.
pub fn acr_rank(acr: &str) -> Option<usize> {
    ACR_LEVELS.iter().position(|a| *a == acr)
}

/// Whether an authentication at `acr` satisfies a party that asked for at
/// least `min` (`None`, or a value Wardkey does not issue: anything does).
/// The one ordering every check uses: the authorization endpoint, token
/// exchange, and adding a key.
pub fn acr_meets(acr: &str, min: Option<&str>) -> bool {
    match min.and_then(acr_rank) {
        None => true,
        Some(min) => acr_rank(acr).is_some_and(|a| a >= min),
    }
}

/// The weakest of the `acr_values` Wardkey knows (OIDC Core §3.1.2.1: any
/// one of them will do); unknown values are ignored.
pub fn weakest_acr(acr_values: Option<&str>) -> Option<String> {
    acr_values?.split(' ').filter_map(|a| acr_rank(a).map(|r| (r, a))).min_by_key(|(r, _)| *r).map(|(_, a)| a.into())
}

/// An SSO session, kept in the session cache under a digest of its cookie.
/// Losing the cache logs people out and nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The public session id (`sid` claim), distinct from the cookie secret so
    /// that an ID token never carries anything that opens the session.
    pub sid: String,
    /// The user's `sub`.
    pub user_id: String,
    /// The last real authentication (Unix seconds), the `auth_time` claim.
    pub auth_time: i64,
    /// Methods checked at `auth_time`.
    pub amr: Vec<Amr>,
    /// Assurance level reached.
    pub acr: String,
    /// When the session began; bounds its life (`session.max_lifetime`).
    pub created_at: i64,
    // The clients that got tokens in the session and the workstations it was
    // attached to are kept beside it in the cache as append-only lists, so
    // that the tap hot path records them without rewriting the session.
}

impl Session {
    /// Whether the session has outlived `max_lifetime` seconds.
    pub fn expired(&self, now: i64, max_lifetime: i64) -> bool {
        now >= self.created_at + max_lifetime
    }
}

/// How and when someone authenticated for one place a session is used in:
/// one browser, or one workstation's attachment. A session is shared by
/// every place its holder works (one sign-on), but its assurance is not:
/// a security-key tap at one PC or a step-up in one browser raises that
/// place alone, so that `acr`, `amr` and `auth_time` always describe the
/// authentication actually made for the use at hand (OIDC Core §2, NIST SP
/// 800-63B §4.3: an authenticator's strength cannot be lent elsewhere).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assurance {
    /// Level reached.
    pub acr: String,
    /// Methods used.
    pub amr: Vec<Amr>,
    /// When (Unix seconds).
    pub auth_time: i64,
}

impl Assurance {
    /// Assurance `acr` through `amr` at `auth_time`.
    pub fn new(acr: &str, amr: Vec<Amr>, auth_time: i64) -> Self {
        Self { acr: acr.to_owned(), amr, auth_time }
    }

    /// What a badge tap within the PIN grace carries when it resumes a
    /// session on the strength of this earlier check at a workstation: the
    /// check itself, but never more than badge + PIN, since the tap proves
    /// nothing beyond possession of a UID.
    pub fn resumed_by_badge(&self) -> Self {
        // Values Wardkey does not issue rank nowhere and are kept as they are.
        if acr_rank(&self.acr).is_none_or(|r| acr_rank(ACR_BADGE_PIN).is_some_and(|cap| r <= cap)) {
            self.clone()
        } else {
            Self::new(ACR_BADGE_PIN, vec![Amr::Badge, Amr::Pin], self.auth_time)
        }
    }
}

impl Session {
    /// The session as seen from one place: its `acr`, `amr` and
    /// `auth_time` replaced by that place's.
    pub fn seen_with(mut self, assurance: &Assurance) -> Self {
        self.acr.clone_from(&assurance.acr);
        self.amr.clone_from(&assurance.amr);
        self.auth_time = assurance.auth_time;
        self
    }

    /// The assurance the session was created with.
    pub fn assurance(&self) -> Assurance {
        Assurance::new(&self.acr, self.amr.clone(), self.auth_time)
    }
}

#[cfg(test)]
mod assurance_tests {
    use super::*;

    #[test]
    fn a_badge_resume_never_carries_more_than_badge_and_pin() {
        let key = Assurance::new(ACR_SECURITY_KEY, vec![Amr::Hwk, Amr::Mfa], 100);
        let resumed = key.resumed_by_badge();
        assert_eq!(resumed, Assurance::new(ACR_BADGE_PIN, vec![Amr::Badge, Amr::Pin], 100));
        let pin = Assurance::new(ACR_BADGE_PIN, vec![Amr::Badge, Amr::Pin], 7);
        assert_eq!(pin.resumed_by_badge(), pin);
        let pwd = Assurance::new(ACR_PASSWORD, vec![Amr::Pwd, Amr::Badge], 9);
        assert_eq!(pwd.resumed_by_badge(), pwd);
        let unknown = Assurance::new("urn:other", vec![Amr::Pwd], 9);
        assert_eq!(unknown.resumed_by_badge(), unknown);
    }

    #[test]
    fn acr_ordering_meets_the_weakest_requested_level() {
        assert!(acr_meets(ACR_SECURITY_KEY, Some(ACR_PASSKEY)));
        assert!(acr_meets(ACR_PASSKEY, Some(ACR_PASSKEY)));
        assert!(!acr_meets(ACR_BADGE_PIN, Some(ACR_PASSKEY)));
        assert!(!acr_meets("urn:other", Some(ACR_PASSWORD)), "an unknown level meets nothing");
        assert!(acr_meets(ACR_PASSWORD, None));
        assert!(acr_meets(ACR_PASSWORD, Some("urn:unknown")), "an unknown request asks for nothing");
        let both = format!("urn:x {ACR_SECURITY_KEY} {ACR_BADGE_PIN}");
        assert_eq!(weakest_acr(Some(&both)).as_deref(), Some(ACR_BADGE_PIN));
        assert_eq!(weakest_acr(Some("urn:x")), None);
    }
}
