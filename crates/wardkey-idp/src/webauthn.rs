//! WebAuthn Level 2 with webauthn-rs: passkeys and FIDO2 security keys,
//! added on the account page (`/account/keys`) and used on the sign-in page
//! ("Sign in with a passkey or security key"), including as a step-up when an
//! application asks for a stronger `acr`.
//!
//! Ceremonies are two JSON calls each (start, finish). The state between them
//! (the challenge) lives in the session cache under a random id for
//! [`CEREMONY_TTL`] and is taken atomically at finish, so a challenge can be
//! answered once (WebAuthn L2 §13.4.3). Credentials are registered as
//! discoverable (resident) so that sign-in needs no username; user
//! verification (the authenticator's PIN or fingerprint) is required for the
//! multi-factor `acr` values. Signature-counter regressions are refused and
//! audited as a possibly cloned authenticator (§6.1.1, §7.2 step 21).
//!
//! The relying party id is the issuer's host name: WebAuthn is unavailable
//! when the issuer is an IP address (browsers refuse IP rp ids).
//!
//! A trust that issues its own keys can list the models it approves
//! (`webauthn.approved_models`): security-key registration then asks for
//! direct attestation, and a key whose attestation does not chain to a
//! listed CA with a listed AAGUID is refused and audited
//! (`webauthn.key_not_approved`). It can also turn self-service passkeys off
//! (`webauthn.passkeys = false`), since a synced passkey carries no
//! attestation to check. Both apply when a key is added; keys already
//! registered keep working.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use url::Url;
use wardkey_core::audit::AuditEvent;
use wardkey_core::secret::{constant_time_eq, digest, digest_b64, new_secret, random_token};
use wardkey_core::session::{ACR_PASSKEY, ACR_SECURITY_KEY, Amr, Session};
use wardkey_core::user::User;
use wardkey_store::{AuthenticatorKind, StoreError, WebauthnCredential};
use webauthn_rs::prelude::{
    AttestationCaList, AttestationMetadata, AuthenticatorAttachment, DiscoverableAuthentication, ParsedAttestation,
    Passkey, PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential, SecurityKey,
    SecurityKeyRegistration, Uuid, Webauthn, WebauthnBuilder, WebauthnError,
};

use crate::admission::{ClientAddress, Kept};
use crate::cookies::CookieName;
use crate::error::{PageError, WebauthnApiError};
use crate::kv::{get_json, keys, put_json, take_json};
use crate::metrics::Metrics;
use crate::oidc::authorize::{complete, current_session};
use crate::pages;
use crate::sessions::PendingAuthorization;
use crate::state::AppState;

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

/// The routes: the account page and the two ceremonies.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/account/keys", get(keys_page))
        .route("/account/invite/{token}", get(invite_page).post(redeem_invite))
        .route("/account/keys/revoke", post(revoke))
        .route("/account/keys/register/start", post(register_start))
        .route("/account/keys/register/finish", post(register_finish))
        .route("/webauthn/login/start", post(login_start))
        .route("/webauthn/login/finish", post(login_finish))
}

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

/// A sign-in between start and finish.
#[derive(Serialize, Deserialize)]
pub(crate) struct Login {
    /// The pending authorization it completes ("" for a direct sign-in).
    request: String,
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

fn relying(state: &AppState) -> Result<&Webauthn, WebauthnApiError> {
    state.webauthn.as_deref().ok_or(WebauthnApiError::NotConfigured)
}

/// Decode a JSON body. Only `application/json` is accepted: a cross-site
/// page cannot send that without a CORS preflight, which these routes never
/// grant, so the content type doubles as the CSRF defence (with the
/// `SameSite` session cookie).
fn json_body<T: DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, WebauthnApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json")));
    if !is_json {
        return Err(WebauthnApiError::InvalidRequest("send the request as application/json".into()));
    }
    serde_json::from_slice(body).map_err(|e| WebauthnApiError::InvalidRequest(format!("the request is not valid: {e}")))
}

/// Whose keys this browser may manage, and on what authority.
struct Holder {
    user: User,
    /// The browser's sign-in (as this browser made it), or `None` for a
    /// redeemed service-desk invite.
    session: Option<Session>,
}

impl Holder {
    /// Whether this holder may add a key that signs in at `acr`: with an
    /// invite (the service desk checked who they are), or with a sign-in in
    /// this browser at least as strong as the key, made within
    /// `webauthn.add_key_within` (NIST SP 800-63B §6.1.2.1). Otherwise a
    /// phished password would become a permanent key.
    fn may_add(&self, state: &AppState, acr: &str) -> Result<(), WebauthnApiError> {
        let Some(session) = &self.session else {
            return Ok(());
        };
        let window = state.settings.webauthn.add_key_within.as_secs() as i64;
        let recent = state.now() - session.auth_time <= window;
        if recent && wardkey_core::session::acr_meets(&session.acr, Some(acr)) {
            Ok(())
        } else {
            Err(WebauthnApiError::SignInAgain)
        }
    }
}

/// Whose keys this browser may manage: the one a redeemed invite is for
/// (an invite lets its holder add a key and nothing else: it is no sign-in,
/// so no application accepts it), else the signed-in person's. The invite
/// comes first: opening one is the explicit act, and a browser signed in
/// with a password could add no key otherwise.
async fn account_holder(state: &AppState, headers: &HeaderMap) -> Result<Holder, WebauthnApiError> {
    let invited = match state.cookies.read(headers, CookieName::Enrolment) {
        Some(cookie) => get_json::<String>(state.cache.as_ref(), &keys::enrolment(&digest_b64(cookie))).await?,
        None => None,
    };
    let session = match invited {
        Some(_) => None,
        None => current_session(state, headers).await?,
    };
    let user_id = match (invited, &session) {
        (Some(user_id), _) => user_id,
        (None, Some(session)) => session.user_id.clone(),
        (None, None) => return Err(WebauthnApiError::NotSignedIn),
    };
    let user = state.store.user_by_id(&user_id).await?.ok_or(WebauthnApiError::NotSignedIn)?;
    if user.disabled {
        return Err(WebauthnApiError::NotSignedIn);
    }
    Ok(Holder { user, session })
}

async fn audit(state: &AppState, event: &str, user: &User, detail: Value) {
    let record = AuditEvent {
        at: state.now(),
        event: event.into(),
        actor: user.username.clone(),
        subject: user.username.clone(),
        detail,
    };
    if let Err(e) = state.store.append_audit(&record).await {
        tracing::error!(error = %e, event, "audit write failed");
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

#[derive(Deserialize)]
struct RegisterStart {
    kind: AuthenticatorKind,
    name: String,
}

/// `POST /account/keys/register/start`: `{kind, name}` → `{ceremony, options}`.
async fn register_start(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, WebauthnApiError> {
    let request: RegisterStart = json_body(&headers, &body)?;
    let webauthn = relying(&state)?;
    let holder = account_holder(&state, &headers).await?;
    let name = request.name.trim().to_string();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(WebauthnApiError::InvalidRequest("give the key a name of 1 to 64 ordinary characters".into()));
    }
    // Every key signs in at the passkey level at least.
    holder.may_add(&state, ACR_PASSKEY)?;
    let user = holder.user;
    let existing = state.store.webauthn_credentials(&user.id).await?;
    let exclude = Some(existing.iter().map(|c| c.id.clone()).collect());
    let display = user.name.clone().unwrap_or_else(|| user.username.clone());
    let handle = user_handle(&user.id);
    let refused = |e: WebauthnError| WebauthnApiError::InvalidRequest(format!("cannot start: {e}"));
    let (options, pending) = match request.kind {
        AuthenticatorKind::Passkey if !state.settings.webauthn.passkeys => return Err(WebauthnApiError::PasskeysOff),
        AuthenticatorKind::Passkey => {
            let (options, s) =
                webauthn.start_passkey_registration(handle, &user.username, &display, exclude).map_err(refused)?;
            (options, PendingKey::Passkey(s))
        }
        AuthenticatorKind::SecurityKey => {
            let attachment = Some(AuthenticatorAttachment::CrossPlatform);
            // With approved models, webauthn-rs asks for direct attestation
            // and checks it against them at finish.
            let approved = state.attestation.as_deref().cloned();
            let (options, s) = webauthn
                .start_securitykey_registration(handle, &user.username, &display, exclude, approved, attachment)
                .map_err(refused)?;
            (options, PendingKey::SecurityKey(s))
        }
    };
    let ceremony = random_token(24);
    let record = Registration { user_id: user.id.clone(), name, pending };
    put_json(state.cache.as_ref(), &keys::webauthn_ceremony(&ceremony), &record, CEREMONY_TTL).await?;
    let options = require_discoverable(serde_json::to_value(options).unwrap_or_default());
    Ok(Json(json!({"ceremony": ceremony, "options": options})))
}

#[derive(Deserialize)]
struct RegisterFinish {
    ceremony: String,
    credential: RegisterPublicKeyCredential,
}

/// `POST /account/keys/register/finish`: stores the new credential.
async fn register_finish(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, WebauthnApiError> {
    let request: RegisterFinish = json_body(&headers, &body)?;
    let webauthn = relying(&state)?;
    let holder = account_holder(&state, &headers).await?;
    let user = &holder.user;
    let record: Registration = take_json(state.cache.as_ref(), &keys::webauthn_ceremony(&request.ceremony))
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
            StoredKey::Passkey(webauthn.finish_passkey_registration(&request.credential, s).map_err(refused)?),
        ),
        PendingKey::SecurityKey(s) => match webauthn.finish_securitykey_registration(&request.credential, s) {
            Ok(key) => (security_key_kind(&state, &key), StoredKey::SecurityKey(key)),
            Err(e) if state.attestation.is_some() && untrustworthy(&e) => {
                let (format, aaguid) = attested_model(&request.credential);
                tracing::info!(error = ?e, ?format, ?aaguid, "security key refused: not an approved model");
                let detail = json!({
                    "kind": AuthenticatorKind::SecurityKey,
                    "name": record.name,
                    "format": format,
                    "aaguid": aaguid,
                    "reason": e.to_string(),
                });
                audit(&state, "webauthn.key_not_approved", user, detail).await;
                return Err(match format.as_deref() {
                    Some("none") => WebauthnApiError::KeyModelHidden,
                    _ => WebauthnApiError::KeyNotApproved,
                });
            }
            Err(e) => return Err(refused(e)),
        },
    };
    // Now that the key's level is known: the sign-in must match it.
    holder.may_add(&state, assurance(kind).0)?;
    let id = match &key {
        StoredKey::Passkey(k) => k.cred_id().to_vec(),
        StoredKey::SecurityKey(k) => k.cred_id().to_vec(),
    };
    let credential = WebauthnCredential {
        id: id.clone(),
        user_id: user.id.clone(),
        kind,
        name: record.name.clone(),
        data: key.encode(),
        created_at: state.now(),
        last_used_at: None,
        suspended_at: None,
    };
    match state.store.add_webauthn_credential(&credential).await {
        Ok(()) => {}
        Err(StoreError::Conflict(_)) => {
            return Err(WebauthnApiError::Refused("this key is already registered".into()));
        }
        Err(e) => return Err(e.into()),
    }
    let id = URL_SAFE_NO_PAD.encode(&id);
    audit(&state, "webauthn.register", user, json!({"credential": id, "kind": kind, "name": record.name})).await;
    Ok(Json(json!({"id": id, "kind": kind, "name": record.name})))
}

/// The level a verified security-key registration is recorded at. Only a
/// key whose attestation verified against the trust's approved models
/// (webauthn-rs checked it, since a list is configured) and whose flags say
/// its private key cannot be backed up or synced (backup eligibility,
/// WebAuthn L2 §6.1.3) is a hardware-bound AAL3 security key (NIST SP
/// 800-63B §4.3). Every other key is a passkey (AAL2), whatever the person
/// chose on the page.
fn security_key_kind(state: &AppState, key: &SecurityKey) -> AuthenticatorKind {
    if state.attestation.is_some() && !backup_eligible(key) {
        AuthenticatorKind::SecurityKey
    } else {
        AuthenticatorKind::Passkey
    }
}

/// The level a stored key signs in at: the rule of [`security_key_kind`],
/// applied again at each use, so that keys added before the rule, or under
/// a model since taken off the list, sign in as passkeys.
fn effective_kind(state: &AppState, stored: &WebauthnCredential, key: &StoredKey) -> AuthenticatorKind {
    match (stored.kind, key, state.attestation.as_deref()) {
        (AuthenticatorKind::SecurityKey, StoredKey::SecurityKey(k), Some(list))
            if !backup_eligible(k) && attested_by(list, k.attestation(), stored.created_at) =>
        {
            AuthenticatorKind::SecurityKey
        }
        _ => AuthenticatorKind::Passkey,
    }
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

#[derive(Deserialize)]
struct LoginStart {
    #[serde(default)]
    request: String,
}

/// `POST /webauthn/login/start`: `{request}` → `{ceremony, options}`.
async fn login_start(
    State(state): State<AppState>,
    ClientAddress(from): ClientAddress,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, WebauthnApiError> {
    let request: LoginStart = json_body(&headers, &body)?;
    relying(&state)?;
    if !request.request.is_empty()
        && get_json::<PendingAuthorization>(state.cache.as_ref(), &keys::pending(&request.request)).await?.is_none()
    {
        return Err(WebauthnApiError::Expired);
    }
    // Anyone may start one, and it is kept for minutes: counted.
    state.admission.admit(Kept::KeyCeremony, from).await?;
    Ok(Json(start_ceremony(&state, request.request).await?))
}

/// Start a discoverable sign-in ceremony that completes pending
/// authorization `request` ("" for none): `{ceremony, options}`.
pub(crate) async fn start_ceremony(state: &AppState, request: String) -> Result<Value, WebauthnApiError> {
    let webauthn = relying(state)?;
    let (mut options, login) = webauthn
        .start_discoverable_authentication()
        .map_err(|e| WebauthnApiError::InvalidRequest(format!("cannot start: {e}")))?;
    // A button press or a tap, not autofill: the key is asked at once.
    options.mediation = None;
    let ceremony = random_token(24);
    let record = Login { request, state: login };
    put_json(state.cache.as_ref(), &keys::webauthn_ceremony(&ceremony), &record, CEREMONY_TTL).await?;
    let mut options = serde_json::to_value(options).unwrap_or_default();
    if let Some(public_key) = options.get_mut("publicKey").and_then(Value::as_object_mut) {
        public_key.insert("userVerification".into(), "required".into());
    }
    Ok(json!({"ceremony": ceremony, "options": options}))
}

#[derive(Deserialize)]
struct LoginFinish {
    ceremony: String,
    credential: PublicKeyCredential,
}

/// `POST /webauthn/login/finish`: signs in (or steps up the session this
/// browser has) and answers `{redirect}`: where the page goes next.
async fn login_finish(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    match finish_login(&state, &headers, &body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// What a suspended key's holder is told.
const SUSPENDED: &str = "this key is suspended because it may have been copied; the IT service desk can check it and \
                         turn it back on";

/// A verified key: the ceremony it answered, its owner and its record.
pub(crate) type Verified = (Login, User, WebauthnCredential);

/// Verify `credential`, the answer to sign-in ceremony `ceremony` (taken
/// from the cache: it can be answered once), and record the key's new
/// signature counter. Shared by the sign-in page and the workstation's
/// FIDO2 tap.
pub(crate) async fn verify_assertion(
    state: &AppState,
    ceremony: &str,
    credential: &PublicKeyCredential,
) -> Result<Verified, WebauthnApiError> {
    let webauthn = relying(state)?;
    let login: Login =
        take_json(state.cache.as_ref(), &keys::webauthn_ceremony(ceremony)).await?.ok_or(WebauthnApiError::Expired)?;
    let unknown = || WebauthnApiError::Refused("this key is not registered with Wardkey".into());
    let (handle, credential_id) = webauthn.identify_discoverable_authentication(credential).map_err(|_| unknown())?;
    let mut stored = state.store.webauthn_credential(credential_id).await?.ok_or_else(unknown)?;
    if user_handle(&stored.user_id) != handle {
        return Err(unknown());
    }
    let user = state.store.user_by_id(&stored.user_id).await?.ok_or_else(unknown)?;
    if user.disabled {
        return Err(WebauthnApiError::Refused("this account is disabled; call the IT service desk".into()));
    }
    if stored.suspended_at.is_some() {
        return Err(WebauthnApiError::Refused(SUSPENDED.into()));
    }
    let mut key = StoredKey::decode(&stored).ok_or_else(unknown)?;
    stored.kind = effective_kind(state, &stored, &key);
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
            state.store.set_webauthn_suspended(&user.id, &stored.id, Some(state.now())).await?;
            audit(state, "webauthn.cloned_suspected", &user, json!({"credential": id, "suspended": true})).await;
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
    state.store.update_webauthn_credential(&stored.id, &stored.data, state.now()).await?;
    Ok((login, user, stored))
}

async fn finish_login(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<Response, WebauthnApiError> {
    let request: LoginFinish = json_body(headers, body)?;
    let (login, user, stored) = verify_assertion(state, &request.ceremony, &request.credential).await?;
    let (acr, amr) = assurance(stored.kind);
    let pending_key = (!login.request.is_empty()).then(|| keys::pending(&login.request));
    if let Some(key) = &pending_key {
        let pending: PendingAuthorization =
            get_json(state.cache.as_ref(), key).await?.ok_or(WebauthnApiError::Expired)?;
        // Checked before the request is used up, so the person can try
        // again with the right key.
        if !wardkey_core::session::acr_meets(acr, pending.min_acr.as_deref()) {
            return Err(WebauthnApiError::Refused(
                "this application needs a hardware security key: a passkey is not enough here".into(),
            ));
        }
    }
    // Take, not get: a pending request completes once.
    let pending = match &pending_key {
        Some(key) => {
            Some(take_json::<PendingAuthorization>(state.cache.as_ref(), key).await?.ok_or(WebauthnApiError::Expired)?)
        }
        None => None,
    };
    // Step-up: the same person with a session in this browser keeps it,
    // with the new authentication recorded (OIDC Core §3.1.2.1: auth_time,
    // acr and amr describe the latest one).
    // The step-up raises this browser alone (see `Assurance`).
    let existing = current_session(state, headers).await?.filter(|s| s.user_id == user.id);
    let cookie = state.cookies.read(headers, CookieName::Session);
    let stepped = match (existing, cookie) {
        (Some(_), Some(cookie)) => state.sessions.step_up(cookie, amr.clone(), acr).await?,
        _ => None,
    };
    let (session, cookie) = match stepped {
        Some(s) => (s, None),
        None => fresh_session(state, &user, amr.clone(), acr).await?,
    };
    Metrics::count(&state.metrics.logins, "success");
    let id = URL_SAFE_NO_PAD.encode(&stored.id);
    audit(state, "login.success", &user, json!({"sid": session.sid, "amr": amr, "credential": id})).await;
    let redirect = match &pending {
        Some(p) => {
            let completed = complete(state, p, &session).await;
            match completed.headers().get(header::LOCATION).and_then(|v| v.to_str().ok()) {
                Some(location) => location.to_string(),
                None => return Ok(completed),
            }
        }
        None => "/account/keys".to_string(),
    };
    let mut response = Json(json!({"redirect": redirect})).into_response();
    if let Some(cookie) = cookie {
        state.cookies.set(response.headers_mut(), CookieName::Session, &cookie);
    }
    Ok(response)
}

async fn fresh_session(
    state: &AppState,
    user: &User,
    amr: Vec<Amr>,
    acr: &str,
) -> Result<(Session, Option<String>), WebauthnApiError> {
    let (cookie, session) = state.sessions.create_session(&user.id, amr, acr).await?;
    Ok((session, Some(cookie)))
}

/// `GET /account/keys`: the signed-in person's passkeys and security keys,
/// with a form to add one and a button to remove each.
async fn keys_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let holder = match account_holder(&state, &headers).await {
        Ok(h) => h,
        Err(WebauthnApiError::NotSignedIn) => {
            return (
                StatusCode::UNAUTHORIZED,
                pages::message_page("Sign in first", "Sign in to Wardkey, then come back to this page."),
            )
                .into_response();
        }
        Err(_) => return PageError::Unavailable.into_response(),
    };
    let user = &holder.user;
    let credentials = match state.store.webauthn_credentials(&user.id).await {
        Ok(c) => c,
        Err(e) => return PageError::from(e).into_response(),
    };
    let csrf = random_token(32);
    let listed: Vec<pages::KeyRow> = credentials
        .iter()
        .map(|c| pages::KeyRow {
            id: URL_SAFE_NO_PAD.encode(&c.id),
            name: c.name.clone(),
            kind: StoredKey::decode(c).map_or(AuthenticatorKind::Passkey, |k| effective_kind(&state, c, &k)),
            created_at: c.created_at,
            last_used_at: c.last_used_at,
        })
        .collect();
    let offer = pages::KeysOffer {
        enabled: state.webauthn.is_some(),
        passkeys: state.settings.webauthn.passkeys,
        approved_only: state.attestation.is_some(),
        may_add: holder.may_add(&state, ACR_PASSKEY).is_ok(),
    };
    let mut response = pages::keys_page(&user.username, &listed, &csrf, &offer).into_response();
    state.cookies.set(response.headers_mut(), CookieName::Csrf, &csrf);
    response
}

/// How long a redeemed invite lets its holder add keys.
const ENROLMENT_TTL: Duration = Duration::from_secs(1800);

/// `GET /account/invite/{token}`: what the link opens. It changes nothing:
/// mail scanners and link previews fetch links, and must not spend them.
async fn invite_page(State(state): State<AppState>) -> Response {
    if state.webauthn.is_none() {
        return WebauthnApiError::NotConfigured.into_response();
    }
    pages::invite_page().into_response()
}

/// `POST /account/invite/{token}`: redeem a one-time invite from the service
/// desk (`wardkey user invite`): the link works once, before it expires, and
/// leads to the keys page for that person.
async fn redeem_invite(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let gone = || {
        PageError::BadRequest(
            "This invite link has already been used or has expired. Ask the IT service desk for a new one.".into(),
        )
        .into_response()
    };
    if state.webauthn.is_none() {
        return WebauthnApiError::NotConfigured.into_response();
    }
    let user_id = match state.store.take_invite(&digest(&token), state.now()).await {
        Ok(Some(u)) => u,
        Ok(None) => return gone(),
        Err(e) => return PageError::from(e).into_response(),
    };
    match state.store.user_by_id(&user_id).await {
        Ok(Some(user)) if !user.disabled => {
            audit(&state, "user.invite_redeemed", &user, json!({})).await;
        }
        Ok(_) => return gone(),
        Err(e) => return PageError::from(e).into_response(),
    }
    let cookie = new_secret();
    let key = keys::enrolment(&digest_b64(&cookie));
    if let Err(e) = put_json(state.cache.as_ref(), &key, &user_id, ENROLMENT_TTL).await {
        return PageError::from(e).into_response();
    }
    let mut response = crate::pages::see_other("/account/keys");
    state.cookies.set(response.headers_mut(), CookieName::Enrolment, &cookie);
    response
}

/// `POST /account/keys/revoke`: a plain form (`csrf`, `id`).
async fn revoke(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let bad = |m: &str| PageError::BadRequest(m.to_string()).into_response();
    let Ok(params) = crate::params::Params::from_form(&headers, &body) else {
        return bad("The form was not sent correctly.");
    };
    let csrf_ok = match (params.get("csrf"), state.cookies.read(&headers, CookieName::Csrf)) {
        (Some(form), Some(cookie)) => constant_time_eq(form, cookie),
        _ => false,
    };
    if !csrf_ok {
        return bad("This form had expired or did not come from this page. Open the page again.");
    }
    let user = match account_holder(&state, &headers).await {
        Ok(h) => h.user,
        Err(WebauthnApiError::NotSignedIn) => return bad("You are not signed in any more. Sign in and try again."),
        Err(_) => return PageError::Unavailable.into_response(),
    };
    let Some(id) = params.get("id").and_then(|id| URL_SAFE_NO_PAD.decode(id).ok()) else {
        return bad("Which key to remove was not sent.");
    };
    match state.store.remove_webauthn_credential(&user.id, &id).await {
        Ok(()) | Err(StoreError::NotFound(_)) => {}
        Err(e) => return PageError::from(e).into_response(),
    }
    audit(&state, "webauthn.revoke", &user, json!({"credential": URL_SAFE_NO_PAD.encode(&id)})).await;
    crate::pages::see_other("/account/keys")
}
