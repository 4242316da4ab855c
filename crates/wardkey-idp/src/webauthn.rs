//! The WebAuthn pages and calls (ceremonies in [`crate::passkeys`]): passkeys and FIDO2 security keys,
//! added on the account page (`/account/keys`) and used on the sign-in page
//! ("Sign in with a passkey or security key"), including as a step-up when an
//! application asks for a stronger `acr`.
//!
//! Ceremonies are two JSON calls each (start, finish). The state between them
//! (the challenge) lives in the session cache under a random id for
//! [`crate::passkeys::CEREMONY_TTL`] and is taken atomically at finish, so a challenge can be
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

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use wardkey_core::secret::{constant_time_eq, digest, digest_b64, new_secret, random_token};
use wardkey_core::session::{ACR_PASSKEY, Amr, Session};
use wardkey_core::user::User;
use wardkey_store::{AuthenticatorKind, StoreError};
use webauthn_rs::prelude::{PublicKeyCredential, RegisterPublicKeyCredential};

use crate::admission::{ClientAddress, Kept};
use crate::cookies::CookieName;
use crate::error::{PageError, WebauthnApiError};
use crate::kv::{get_json, keys, put_json, take_json};
use crate::metrics::Metrics;
use crate::oidc::authorize::{complete, current_session};
use crate::pages;
use crate::passkeys::assurance;
use crate::sessions::PendingAuthorization;
use crate::signins::Method;
use crate::state::AppState;

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
    state.audit.record(event, &user.username, &user.username, detail).await;
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
    state.passkeys.available()?;
    let holder = account_holder(&state, &headers).await?;
    let name = request.name.trim().to_string();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(WebauthnApiError::InvalidRequest("give the key a name of 1 to 64 ordinary characters".into()));
    }
    // Every key signs in at the passkey level at least.
    holder.may_add(&state, ACR_PASSKEY)?;
    Ok(Json(state.passkeys.start_registration(&holder.user, request.kind, name).await?))
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
    state.passkeys.available()?;
    let holder = account_holder(&state, &headers).await?;
    let key = state.passkeys.finish_registration(&holder.user, &request.ceremony, &request.credential).await?;
    // Now that the key's level is known: the sign-in must match it.
    holder.may_add(&state, assurance(key.kind).0)?;
    Ok(Json(state.passkeys.save(&holder.user, key).await?))
}

#[derive(Deserialize)]
struct LoginStart {
    #[serde(default)]
    request: String,
    /// Where a direct sign-in (no `request`) goes next: one of
    /// [`crate::passkeys::RETURN_PAGES`].
    #[serde(default)]
    next: Option<String>,
}

/// `POST /webauthn/login/start`: `{request}` → `{ceremony, options}`.
async fn login_start(
    State(state): State<AppState>,
    ClientAddress(from): ClientAddress,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, WebauthnApiError> {
    let request: LoginStart = json_body(&headers, &body)?;
    state.passkeys.available()?;
    if let Some(next) = request.next.as_deref().filter(|n| !crate::passkeys::RETURN_PAGES.contains(n)) {
        return Err(WebauthnApiError::InvalidRequest(format!(
            "next {next:?} is not a page a sign-in returns to: use one of {:?}",
            crate::passkeys::RETURN_PAGES
        )));
    }
    if !request.request.is_empty()
        && get_json::<PendingAuthorization>(state.cache.as_ref(), &keys::pending(&request.request)).await?.is_none()
    {
        return Err(WebauthnApiError::Expired);
    }
    // Anyone may start one, and it is kept for minutes: counted.
    state.admission.admit(Kept::KeyCeremony, from).await?;
    Ok(Json(state.passkeys.start_sign_in(request.request, request.next).await?))
}

#[derive(Deserialize)]
struct LoginFinish {
    ceremony: String,
    credential: PublicKeyCredential,
}

/// `POST /webauthn/login/finish`: signs in (or steps up the session this
/// browser has) and answers `{redirect}`: where the page goes next.
async fn login_finish(
    State(state): State<AppState>,
    ClientAddress(from): ClientAddress,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match finish_login(&state, from, &headers, &body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn finish_login(
    state: &AppState,
    from: Option<std::net::IpAddr>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, WebauthnApiError> {
    let started = std::time::Instant::now();
    let request: LoginFinish = json_body(headers, body)?;
    let (login, user, stored) = state.passkeys.verify_assertion(&request.ceremony, &request.credential).await?;
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
    state.signins.record_browser(Method::Passkey, &user.username, pending.as_ref(), started, from);
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
        None => login.next.clone().unwrap_or_else(|| "/account/keys".to_string()),
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
            kind: state.passkeys.level_of(c),
            created_at: c.created_at,
            last_used_at: c.last_used_at,
        })
        .collect();
    let offer = pages::KeysOffer {
        enabled: state.passkeys.enabled(),
        passkeys: state.settings.webauthn.passkeys,
        approved_only: state.passkeys.approved_only(),
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
    if !state.passkeys.enabled() {
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
    if !state.passkeys.enabled() {
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
