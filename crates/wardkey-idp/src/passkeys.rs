//! The passkeys service: WebAuthn Level 2 ceremonies with webauthn-rs,
//! for passkeys and FIDO2 security keys, and the rule that decides the
//! level a key signs in at. The account and sign-in pages
//! ([`crate::webauthn`]) and the workstation's FIDO2 tap ([`crate::tap`])
//! both use it, so a key is judged the same wherever it is used.
//!
//! A ceremony's state lives in the session cache between its two calls
//! and is taken at finish, so a challenge can be answered once (WebAuthn L2
//! §13.4.3). Signature-counter regressions suspend the key and are audited
//! as a possibly cloned authenticator (§6.1.1, §7.2 step 21).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use url::Url;
use wardkey_cache::Cache;
use wardkey_core::clock::SharedClock;
use wardkey_core::secret::{digest, random_token};
use wardkey_core::session::{ACR_PASSKEY, ACR_SECURITY_KEY, Amr};
use wardkey_core::user::User;
use wardkey_store::{AuthenticatorKind, Store, StoreError, WebauthnCredential};
use webauthn_rs::prelude::{
    AttestationCaList, AttestationMetadata, AuthenticatorAttachment, DiscoverableAuthentication, ParsedAttestation,
    Passkey, PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential, SecurityKey,
    SecurityKeyRegistration, Uuid, Webauthn, WebauthnBuilder, WebauthnError,
};

use crate::config::Settings;
use crate::error::WebauthnApiError;
use crate::kv::{keys, put_json, take_json};

/// How long a started ceremony can be finished: time to find the key and
/// touch it, not more.
pub const CEREMONY_TTL: Duration = Duration::from_secs(300);

/// The relying party for `public_url`, or `None` (with a warning) when its
/// host is not a domain name.
pub fn relying_party(public_url: &str) -> Option<Arc<Webauthn>> {
    let url = Url::parse(public_url).ok()?;
    let Some(host) = url.domain() else {
        tracing::warn!(public_url, "passkeys are off: the issuer's host is an IP address, which WebAuthn refuses");
        return None;
    };
    match WebauthnBuilder::new(host, &url).and_then(|b| b.rp_name("Wardkey").build()) {
        Ok(w) => Some(Arc::new(w)),
        Err(e) => {
            tracing::warn!(public_url, error = %e, "passkeys are off");
            None
        }
    }
}

/// A user's WebAuthn user handle: derived from the user id, so nothing else
/// is stored and no personal data reaches the authenticator.
pub fn user_handle(user_id: &str) -> Uuid {
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest(user_id)[..16]);
    Uuid::from_bytes(bytes)
}

/// The `acr` and `amr` a sign-in with a key of `kind` reaches.
pub fn assurance(kind: AuthenticatorKind) -> (&'static str, Vec<Amr>) {
    match kind {
        AuthenticatorKind::Passkey => (ACR_PASSKEY, vec![Amr::Swk, Amr::Mfa]),
        AuthenticatorKind::SecurityKey => (ACR_SECURITY_KEY, vec![Amr::Hwk, Amr::Mfa]),
    }
}

/// What a suspended key's holder is told.
const SUSPENDED: &str = "this key is suspended because it may have been copied; the IT service desk can check it and \
                         turn it back on";

/// A verified key: the ceremony it answered, its owner and its record.
pub type Verified = (Login, User, WebauthnCredential);

/// A registration between start and finish.
#[derive(Serialize, Deserialize)]
struct Registration {
    user_id: String,
    name: String,
    pending: PendingKey,
}

#[derive(Serialize, Deserialize)]
enum PendingKey {
    Passkey(PasskeyRegistration),
    SecurityKey(SecurityKeyRegistration),
}

/// The server's own pages a direct passkey sign-in may return to: a fixed
/// list, so the parameter can never send a browser elsewhere.
pub const RETURN_PAGES: [&str; 2] = ["/account/keys", "/console"];

/// A sign-in between start and finish.
#[derive(Serialize, Deserialize)]
pub struct Login {
    /// The pending authorization it completes ("" for a direct sign-in).
    pub request: String,
    /// Where a direct sign-in goes next (one of [`RETURN_PAGES`]); none:
    /// the keys page.
    #[serde(default)]
    pub next: Option<String>,
    state: DiscoverableAuthentication,
}

/// A stored credential, decoded.
enum StoredKey {
    Passkey(Passkey),
    SecurityKey(SecurityKey),
}

impl StoredKey {
    fn decode(credential: &WebauthnCredential) -> Option<Self> {
        match credential.kind {
            AuthenticatorKind::Passkey => serde_json::from_str(&credential.data).ok().map(Self::Passkey),
            AuthenticatorKind::SecurityKey => serde_json::from_str(&credential.data).ok().map(Self::SecurityKey),
        }
    }

    fn encode(&self) -> String {
        match self {
            Self::Passkey(k) => serde_json::to_string(k),
            Self::SecurityKey(k) => serde_json::to_string(k),
        }
        .unwrap_or_default()
    }
}

/// WebAuthn ceremonies and key levels. Cheap to clone.
#[derive(Clone)]
pub struct Passkeys {
    /// The relying party; `None` when the issuer has no host name.
    pub(crate) webauthn: Option<Arc<Webauthn>>,
    /// The security-key models the trust approves (`webauthn.approved_models`);
    /// `None` accepts any security key, as a passkey.
    pub(crate) attestation: Option<Arc<AttestationCaList>>,
    /// Ceremonies between start and finish.
    pub(crate) cache: Arc<dyn Cache>,
    /// Credentials and the audit log.
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: SharedClock,
    pub(crate) settings: Arc<Settings>,
    /// Key changes are recorded here.
    pub(crate) audit: crate::audit::AuditLog,
}

impl Passkeys {
    /// The relying party and approved models it was built with, to build
    /// the same service again ([`crate::state::AppState::with_cache`]).
    pub(crate) fn foundations(&self) -> (Option<Arc<Webauthn>>, Option<Arc<AttestationCaList>>) {
        (self.webauthn.clone(), self.attestation.clone())
    }

    /// Whether WebAuthn works here at all (the issuer has a host name).
    pub fn enabled(&self) -> bool {
        self.webauthn.is_some()
    }

    /// Whether only approved security-key models reach the security-key level.
    pub fn approved_only(&self) -> bool {
        self.attestation.is_some()
    }

    /// The level a stored key signs in at now, by the rule applied at each
    /// use; an undecodable record is a passkey.
    pub fn level_of(&self, stored: &WebauthnCredential) -> AuthenticatorKind {
        StoredKey::decode(stored).map_or(AuthenticatorKind::Passkey, |k| self.effective_kind(stored, &k))
    }

    /// `NotConfigured` when WebAuthn is off.
    pub fn available(&self) -> Result<(), WebauthnApiError> {
        self.relying().map(|_| ())
    }

    fn relying(&self) -> Result<&Webauthn, WebauthnApiError> {
        self.webauthn.as_deref().ok_or(WebauthnApiError::NotConfigured)
    }

    /// Start adding a key of `kind` called `name` for `user` (whom the
    /// caller has checked may add one): `{ceremony, options}`.
    pub async fn start_registration(
        &self,
        user: &User,
        kind: AuthenticatorKind,
        name: String,
    ) -> Result<Value, WebauthnApiError> {
        let webauthn = self.relying()?;
        let existing = self.store.webauthn_credentials(&user.id).await?;
        let exclude = Some(existing.iter().map(|c| c.id.clone()).collect());
        let display = user.name.clone().unwrap_or_else(|| user.username.clone());
        let handle = user_handle(&user.id);
        let refused = |e: WebauthnError| WebauthnApiError::InvalidRequest(format!("cannot start: {e}"));
        let (options, pending) = match kind {
            AuthenticatorKind::Passkey if !self.settings.webauthn.passkeys => {
                return Err(WebauthnApiError::PasskeysOff);
            }
            AuthenticatorKind::Passkey => {
                let (options, s) =
                    webauthn.start_passkey_registration(handle, &user.username, &display, exclude).map_err(refused)?;
                (options, PendingKey::Passkey(s))
            }
            AuthenticatorKind::SecurityKey => {
                let attachment = Some(AuthenticatorAttachment::CrossPlatform);
                // With approved models, webauthn-rs asks for direct attestation
                // and checks it against them at finish.
                let approved = self.attestation.as_deref().cloned();
                let (options, s) = webauthn
                    .start_securitykey_registration(handle, &user.username, &display, exclude, approved, attachment)
                    .map_err(refused)?;
                (options, PendingKey::SecurityKey(s))
            }
        };
        let ceremony = random_token(24);
        let record = Registration { user_id: user.id.clone(), name, pending };
        put_json(self.cache.as_ref(), &keys::webauthn_ceremony(&ceremony), &record, CEREMONY_TTL).await?;
        let options = require_discoverable(serde_json::to_value(options).unwrap_or_default());
        Ok(json!({"ceremony": ceremony, "options": options}))
    }

    /// Verify `credential`, `user`'s answer to registration `ceremony`
    /// (taken: it can be answered once), and decide the level it signs in
    /// at. Not yet stored: the caller checks the level against the sign-in
    /// first ([`Passkeys::save`]). A security key that is not an approved
    /// model is refused and audited.
    pub async fn finish_registration(
        &self,
        user: &User,
        ceremony: &str,
        credential: &RegisterPublicKeyCredential,
    ) -> Result<WebauthnCredential, WebauthnApiError> {
        let webauthn = self.relying()?;
        let record: Registration = take_json(self.cache.as_ref(), &keys::webauthn_ceremony(ceremony))
            .await?
            .ok_or(WebauthnApiError::Expired)?;
        if record.user_id != user.id {
            return Err(WebauthnApiError::Expired);
        }
        let refused = |e: WebauthnError| {
            tracing::info!(error = %e, "key registration refused");
            match e {
                // webauthn-rs 0.6 answers a key on the exclude list (one this
                // person has registered already) with this error.
                WebauthnError::CredentialAlteredAlgFromRequest => WebauthnApiError::Refused(
                    "this key is already registered to you (it is in the list above); use another key".into(),
                ),
                e => WebauthnApiError::Refused(format!("the key's answer could not be verified ({e}); try again")),
            }
        };
        let (kind, key) = match &record.pending {
            PendingKey::Passkey(s) => (
                AuthenticatorKind::Passkey,
                StoredKey::Passkey(webauthn.finish_passkey_registration(credential, s).map_err(refused)?),
            ),
            PendingKey::SecurityKey(s) => match webauthn.finish_securitykey_registration(credential, s) {
                Ok(key) => (self.security_key_kind(&key), StoredKey::SecurityKey(key)),
                Err(e) if self.attestation.is_some() && untrustworthy(&e) => {
                    let (format, aaguid) = attested_model(credential);
                    tracing::info!(error = ?e, ?format, ?aaguid, "security key refused: not an approved model");
                    let detail = json!({
                        "kind": AuthenticatorKind::SecurityKey,
                        "name": record.name,
                        "format": format,
                        "aaguid": aaguid,
                        "reason": e.to_string(),
                    });
                    self.audit("webauthn.key_not_approved", user, detail).await;
                    return Err(match format.as_deref() {
                        Some("none") => WebauthnApiError::KeyModelHidden,
                        _ => WebauthnApiError::KeyNotApproved,
                    });
                }
                Err(e) => return Err(refused(e)),
            },
        };
        let id = match &key {
            StoredKey::Passkey(k) => k.cred_id().to_vec(),
            StoredKey::SecurityKey(k) => k.cred_id().to_vec(),
        };
        Ok(WebauthnCredential {
            id,
            user_id: user.id.clone(),
            kind,
            name: record.name,
            data: key.encode(),
            created_at: self.clock.now(),
            last_used_at: None,
            suspended_at: None,
        })
    }

    /// Store a key [`Passkeys::finish_registration`] verified, and audit it:
    /// `{id, kind, name}`.
    pub async fn save(&self, user: &User, credential: WebauthnCredential) -> Result<Value, WebauthnApiError> {
        match self.store.add_webauthn_credential(&credential).await {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => {
                return Err(WebauthnApiError::Refused("this key is already registered".into()));
            }
            Err(e) => return Err(e.into()),
        }
        let (id, kind, name) = (URL_SAFE_NO_PAD.encode(&credential.id), credential.kind, credential.name);
        self.audit("webauthn.register", user, json!({"credential": id, "kind": kind, "name": name})).await;
        Ok(json!({"id": id, "kind": kind, "name": name}))
    }

    /// Start a discoverable sign-in ceremony that completes pending
    /// authorization `request` ("" for none): `{ceremony, options}`.
    pub async fn start_sign_in(&self, request: String, next: Option<String>) -> Result<Value, WebauthnApiError> {
        let webauthn = self.relying()?;
        let (mut options, login) = webauthn
            .start_discoverable_authentication()
            .map_err(|e| WebauthnApiError::InvalidRequest(format!("cannot start: {e}")))?;
        // A button press or a tap, not autofill: the key is asked at once.
        options.mediation = None;
        let ceremony = random_token(24);
        let record = Login { request, next, state: login };
        put_json(self.cache.as_ref(), &keys::webauthn_ceremony(&ceremony), &record, CEREMONY_TTL).await?;
        let mut options = serde_json::to_value(options).unwrap_or_default();
        if let Some(public_key) = options.get_mut("publicKey").and_then(Value::as_object_mut) {
            public_key.insert("userVerification".into(), "required".into());
        }
        Ok(json!({"ceremony": ceremony, "options": options}))
    }

    /// Verify `credential`, the answer to sign-in ceremony `ceremony` (taken
    /// from the cache: it can be answered once), and record the key's new
    /// signature counter. Shared by the sign-in page and the workstation's
    /// FIDO2 tap.
    pub async fn verify_assertion(
        &self,
        ceremony: &str,
        credential: &PublicKeyCredential,
    ) -> Result<Verified, WebauthnApiError> {
        let webauthn = self.relying()?;
        let login: Login = take_json(self.cache.as_ref(), &keys::webauthn_ceremony(ceremony))
            .await?
            .ok_or(WebauthnApiError::Expired)?;
        let unknown = || WebauthnApiError::Refused("this key is not registered with Wardkey".into());
        let (handle, credential_id) =
            webauthn.identify_discoverable_authentication(credential).map_err(|_| unknown())?;
        let mut stored = self.store.webauthn_credential(credential_id).await?.ok_or_else(unknown)?;
        if user_handle(&stored.user_id) != handle {
            return Err(unknown());
        }
        let user = self.store.user_by_id(&stored.user_id).await?.ok_or_else(unknown)?;
        if user.disabled {
            return Err(WebauthnApiError::Refused("this account is disabled; call the IT service desk".into()));
        }
        if stored.suspended_at.is_some() {
            return Err(WebauthnApiError::Refused(SUSPENDED.into()));
        }
        let mut key = StoredKey::decode(&stored).ok_or_else(unknown)?;
        stored.kind = self.effective_kind(&stored, &key);
        let answered = login.state.clone();
        let verified = match &key {
            StoredKey::Passkey(k) => webauthn.finish_discoverable_authentication_v2(credential, answered, k),
            StoredKey::SecurityKey(k) => webauthn.finish_discoverable_authentication_v2(credential, answered, k),
        };
        let result = match verified {
            Ok(r) => r,
            Err(WebauthnError::CredentialPossibleCompromise) => {
                // Suspended, not just refused: the copy and the original must
                // both stop working until someone has looked (WebAuthn L2
                // §6.1.1 leaves the response to the relying party's policy).
                let id = URL_SAFE_NO_PAD.encode(&stored.id);
                self.store.set_webauthn_suspended(&user.id, &stored.id, Some(self.clock.now())).await?;
                self.audit("webauthn.cloned_suspected", &user, json!({"credential": id, "suspended": true})).await;
                return Err(WebauthnApiError::Refused(
                    "this key's signature counter went backwards, so it may have been copied; it cannot be used \
                     until the IT service desk has checked it"
                        .into(),
                ));
            }
            Err(e) => {
                tracing::info!(error = %e, "key sign-in refused");
                return Err(WebauthnApiError::Refused(format!("the key's answer could not be verified ({e})")));
            }
        };
        if result.backup_eligible() {
            // The key now says its private key can be synced: not hardware-bound.
            stored.kind = AuthenticatorKind::Passkey;
        }
        if !result.user_verified() {
            return Err(WebauthnApiError::Refused(
                "the key did not check your PIN or fingerprint; set one up on the key and try again".into(),
            ));
        }
        match &mut key {
            StoredKey::Passkey(k) => k.update_credential(&result),
            StoredKey::SecurityKey(k) => k.update_credential(&result),
        };
        stored.data = key.encode();
        self.store.update_webauthn_credential(&stored.id, &stored.data, self.clock.now()).await?;
        Ok((login, user, stored))
    }

    /// The level a verified security-key registration is recorded at. Only a
    /// key whose attestation verified against the trust's approved models
    /// (webauthn-rs checked it, since a list is configured) and whose flags say
    /// its private key cannot be backed up or synced (backup eligibility,
    /// WebAuthn L2 §6.1.3) is a hardware-bound AAL3 security key (NIST SP
    /// 800-63B §4.3). Every other key is a passkey (AAL2), whatever the person
    /// chose on the page.
    fn security_key_kind(&self, key: &SecurityKey) -> AuthenticatorKind {
        if self.attestation.is_some() && !backup_eligible(key) {
            AuthenticatorKind::SecurityKey
        } else {
            AuthenticatorKind::Passkey
        }
    }

    /// The level a stored key signs in at: the rule of [`Passkeys::security_key_kind`],
    /// applied again at each use, so that keys added before the rule, or under
    /// a model since taken off the list, sign in as passkeys.
    fn effective_kind(&self, stored: &WebauthnCredential, key: &StoredKey) -> AuthenticatorKind {
        match (stored.kind, key, self.attestation.as_deref()) {
            (AuthenticatorKind::SecurityKey, StoredKey::SecurityKey(k), Some(list))
                if !backup_eligible(k) && attested_by(list, k.attestation(), stored.created_at) =>
            {
                AuthenticatorKind::SecurityKey
            }
            _ => AuthenticatorKind::Passkey,
        }
    }

    async fn audit(&self, event: &str, user: &User, detail: Value) {
        let name = &user.username;
        self.audit.record(event, name, name, detail).await;
    }
}

/// Ask for a discoverable credential with user verification: passkeys
/// then sign in without a username, and the key checks its PIN or
/// fingerprint (webauthn-rs asks for "discouraged" resident keys).
fn require_discoverable(mut options: Value) -> Value {
    if let Some(selection) = options.pointer_mut("/publicKey/authenticatorSelection").and_then(Value::as_object_mut) {
        selection.insert("residentKey".into(), "required".into());
        selection.insert("requireResidentKey".into(), true.into());
        selection.insert("userVerification".into(), "required".into());
    }
    options
}

/// Whether a stored attestation chains to a CA of `list` that lists the
/// key's AAGUID, as of when the key was added.
fn attested_by(list: &AttestationCaList, attestation: &ParsedAttestation, added_at: i64) -> bool {
    let aaguid = match &attestation.metadata {
        AttestationMetadata::Packed { aaguid } | AttestationMetadata::Tpm { aaguid, .. } => *aaguid,
        _ => return false,
    };
    let when = std::time::UNIX_EPOCH + Duration::from_secs(added_at.max(0) as u64);
    matches!(
        webauthn_rs_core::attestation::verify_attestation_ca_chain(&attestation.data, list, when),
        Ok(Some(ca)) if ca.aaguids().contains_key(&aaguid)
    )
}

/// The credential's backup-eligible flag, as webauthn-rs recorded it from
/// the authenticator data (it does not expose it on `SecurityKey`); an
/// unreadable record counts as eligible, the weaker reading.
fn backup_eligible(key: &SecurityKey) -> bool {
    serde_json::to_value(key)
        .ok()
        .and_then(|v| v.pointer("/cred/backup_eligible").and_then(Value::as_bool))
        .unwrap_or(true)
}

/// Whether webauthn-rs refused a security key because its attestation is
/// not trustworthy under the approved models, as opposed to an answer that
/// does not verify at all. WebAuthn L2 §7.1 step 21 (assess the attestation
/// trustworthiness): no attestation or self attestation is not acceptable
/// to an allow-list, and the attestation certificate must chain to an
/// acceptable trust anchor (step 20: the CAs of `webauthn.approved_models`),
/// here also listed for the key's AAGUID. A registration whose attestation
/// verified but is not trustworthy per step 21 SHOULD fail (§7.1's last
/// step), and here it does.
fn untrustworthy(e: &WebauthnError) -> bool {
    matches!(
        e,
        WebauthnError::AttestationNotVerifiable
            | WebauthnError::AttestationChainNotTrusted(_)
            | WebauthnError::AttestationUntrustedAaguid
            | WebauthnError::AttestationFormatMissingAaguid
            | WebauthnError::AttestationNotSupported
    )
}

/// The attestation format and the AAGUID a registration claims, read from
/// its attestation object for the audit log (unverified: it says what the
/// key claimed to be, so IT can tell a wrong model from a stripped
/// attestation). Either is `None` when absent or unreadable.
fn attested_model(credential: &RegisterPublicKeyCredential) -> (Option<String>, Option<String>) {
    let Ok(ciborium::Value::Map(object)) =
        ciborium::from_reader::<ciborium::Value, _>(credential.response.attestation_object.as_slice())
    else {
        return (None, None);
    };
    let field = |name: &str| object.iter().find(|(k, _)| k.as_text() == Some(name)).map(|(_, v)| v);
    let format = field("fmt").and_then(|v| v.as_text()).map(str::to_string);
    // authenticatorData: rpIdHash (32), flags (1), signCount (4), then with
    // the AT flag the attested credential data, which opens with the AAGUID
    // (WebAuthn L2 §6.1, §6.5.1).
    let aaguid = field("authData")
        .and_then(|v| v.as_bytes())
        .filter(|data| data.len() >= 53 && data[32] & 0x40 != 0)
        .and_then(|data| Uuid::from_slice(&data[37..53]).ok())
        .map(|u| u.hyphenated().to_string());
    (format, aaguid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::Kit;

    fn passkeys(kit: &Kit, issuer: &str) -> Passkeys {
        Passkeys {
            webauthn: relying_party(issuer),
            attestation: None,
            audit: kit.audit(),
            cache: kit.cache.clone(),
            store: kit.store.clone(),
            clock: kit.shared_clock(),
            settings: kit.settings.clone(),
        }
    }

    #[tokio::test]
    async fn an_issuer_without_a_host_name_has_no_passkeys() {
        let kit = Kit::new().await;
        let off = passkeys(&kit, "http://127.0.0.1:8080");
        assert!(!off.enabled());
        assert!(matches!(off.start_sign_in(String::new(), None).await, Err(WebauthnApiError::NotConfigured)));
    }

    #[tokio::test]
    async fn a_sign_in_ceremony_asks_for_user_verification_and_can_be_answered_once() {
        let kit = Kit::new().await;
        let on = passkeys(&kit, "https://sso.example");
        let started = on.start_sign_in("req".into(), None).await.unwrap();
        assert_eq!(started.pointer("/options/publicKey/userVerification"), Some(&json!("required")));
        assert_eq!(started.pointer("/options/publicKey/rpId"), Some(&json!("sso.example")));
        let ceremony = started["ceremony"].as_str().unwrap();
        let taken: Option<Login> = take_json(kit.cache.as_ref(), &keys::webauthn_ceremony(ceremony)).await.unwrap();
        assert_eq!(taken.map(|l| l.request).as_deref(), Some("req"));
        let again: Option<Login> = take_json(kit.cache.as_ref(), &keys::webauthn_ceremony(ceremony)).await.unwrap();
        assert!(again.is_none());
    }

    #[tokio::test]
    async fn without_approved_models_every_key_signs_in_as_a_passkey() {
        let kit = Kit::new().await;
        let on = passkeys(&kit, "https://sso.example");
        let stored = WebauthnCredential {
            id: vec![1],
            user_id: "u".into(),
            kind: AuthenticatorKind::SecurityKey,
            name: "Blue key".into(),
            data: "not a key".into(),
            created_at: 0,
            last_used_at: None,
            suspended_at: None,
        };
        assert_eq!(on.level_of(&stored), AuthenticatorKind::Passkey);
        assert_eq!(assurance(AuthenticatorKind::SecurityKey).0, ACR_SECURITY_KEY);
        assert_eq!(assurance(AuthenticatorKind::Passkey).0, ACR_PASSKEY);
    }
}
