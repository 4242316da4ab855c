//! Directory records the integration tests and the criterion benches both
//! set up: a user, a badge, a workstation waiting for its agent. Plain
//! `wardkey-core` values, stored by the caller through whatever it holds
//! (the server's state, a bare store), so this crate depends on the domain
//! only and never on the server or the store (both use it for their own
//! tests).

use wardkey_core::badge::Badge;
use wardkey_core::secret::random_token;
use wardkey_core::user::NewUser;
use wardkey_core::workstation::Workstation;

/// The tap PIN every fixture badge gets.
pub const PIN: &str = "246810";

/// A clinician named `username`: display name, NHS mail address and a
/// clinical role, as a directory sync would bring them.
pub fn new_user(username: &str) -> NewUser {
    NewUser {
        username: username.into(),
        name: Some(format!("{username} name")),
        email: Some(format!("{username}@trust.nhs.uk")),
        roles: vec!["R8000".into()],
    }
}

/// `user_id`'s badge with UID `uid`, keyed with the server's `badge_key`.
pub fn badge(badge_key: &[u8], uid: &str, user_id: &str, now: i64) -> Badge {
    let digest = wardkey_core::badge::digest(badge_key, uid).expect("a valid badge UID");
    Badge { digest, user_id: user_id.into(), failed_pins: 0, created_at: now }
}

/// A workstation `name` on `ward` as `wardkey workstation enrol` creates
/// it: enabled, no key until its agent enrols.
pub fn workstation(name: &str, ward: &str, now: i64) -> Workstation {
    Workstation {
        id: random_token(12),
        name: name.into(),
        ward: ward.into(),
        public_key: None,
        enabled: true,
        created_at: now,
        enrolled_at: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_what_the_server_stores() {
        let user = new_user("alice");
        assert_eq!(user.email.as_deref(), Some("alice@trust.nhs.uk"));
        let badge = badge(b"key", "04A23B1C", "u1", 7);
        assert_eq!(badge.digest, wardkey_core::badge::digest(b"key", "04A23B1C").unwrap());
        let ws = workstation("pc", "Ward 4", 7);
        assert!(ws.enabled && ws.public_key.is_none());
        assert_ne!(ws.id, workstation("pc", "Ward 4", 7).id);
    }
}
