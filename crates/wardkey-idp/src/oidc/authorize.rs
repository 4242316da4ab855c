//! The authorization endpoint (OIDC Core §3.1.2, RFC 6749 §4.1, RFC 7636,
//! RFC 9700).
//!
//! Order matters: until the client and its exact redirect URI are known good,
//! every error is an HTML page and nothing is redirected (OIDC Core
//! §3.1.2.6, RFC 9700 §4.11: no open redirector). After that, errors go back
//! to the client with `state` and `iss` (RFC 9207).

use std::net::IpAddr;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use url::Url;
use wardkey_core::client::GrantType;
use wardkey_core::pkce::{self, ChallengeError};
use wardkey_core::secret::random_token;
use wardkey_core::session::{ACR_PASSWORD, ACR_SECURITY_KEY, Session, acr_meets, acr_rank, weakest_acr};

use crate::admission::{ClientAddress, Kept};
use crate::cookies::CookieName;
use crate::error::PageError;
use crate::pages::see_other;
use crate::params::Params;
use crate::sessions::{CodeRecord, Grant, PendingAuthorization};
use crate::state::AppState;
use crate::tokens::filter_scope;

/// The request parameters kept with a pending sign-in, and the most bytes
/// each may have (`state` first: an over-long one is not echoed back).
/// Generous for real clients (a signed `state` of a few hundred bytes is
/// common), small enough that thousands of pending requests stay a few MB.
const KEPT_PARAMETER_LIMITS: [(&str, usize); 6] =
    [("state", 2048), ("nonce", 512), ("login_hint", 256), ("scope", 1024), ("acr_values", 512), ("prompt", 64)];

/// What the sign-in page tells a person whose application needs more than a
/// password (`None` when a password will do).
pub fn needs_words(min: Option<&str>) -> Option<&'static str> {
    if acr_meets(ACR_PASSWORD, min) {
        None
    } else if min == Some(ACR_SECURITY_KEY) {
        Some(
            "This application needs you to sign in with a hardware security key or FIDO2 badge that checks your PIN or fingerprint.",
        )
    } else {
        Some("This application needs you to sign in with a passkey or a security key.")
    }
}

/// An authorization response or error, sent to a validated redirect URI.
fn redirect_with(redirect_uri: &str, params: &[(&str, &str)]) -> Response {
    match Url::parse(redirect_uri) {
        Ok(mut url) => {
            {
                let mut q = url.query_pairs_mut();
                for (k, v) in params {
                    q.append_pair(k, v);
                }
            }
            see_other(url.as_str())
        }
        Err(_) => PageError::BadRequest("The application's redirect address is not valid.".into()).into_response(),
    }
}

/// Redirect an OAuth error to the client.
fn redirect_error(
    state: &AppState,
    redirect_uri: &str,
    client_state: Option<&str>,
    error: &str,
    description: &str,
) -> Response {
    let mut params = vec![("error", error), ("error_description", description), ("iss", state.issuer.as_ref())];
    if let Some(s) = client_state {
        params.push(("state", s));
    }
    redirect_with(redirect_uri, &params)
}

/// `GET /authorize`.
pub async fn get(
    State(state): State<AppState>,
    ClientAddress(from): ClientAddress,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let params = Params::parse(query.unwrap_or_default().as_bytes());
    authorize(state, from, headers, params).await
}

/// `POST /authorize` (OIDC Core §3.1.2.1 allows form-encoded POST).
pub async fn post(
    State(state): State<AppState>,
    ClientAddress(from): ClientAddress,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = Params::from_form(&headers, &body);
    authorize(state, from, headers, params).await
}

async fn authorize(
    state: AppState,
    from: Option<IpAddr>,
    headers: HeaderMap,
    params: Result<Params, crate::params::ParamsError>,
) -> Response {
    match validate_and_decide(&state, from, &headers, params).await {
        Ok(r) | Err(r) => r,
    }
}

async fn validate_and_decide(
    state: &AppState,
    from: Option<IpAddr>,
    headers: &HeaderMap,
    params: Result<Params, crate::params::ParamsError>,
) -> Result<Response, Response> {
    let page = |m: &str| PageError::BadRequest(m.to_string()).into_response();
    let params = params.map_err(|e| page(&format!("The sign-in request from the application is not valid: {e}.")))?;
    let client_id = params
        .get("client_id")
        .ok_or_else(|| page("The sign-in request does not say which application it is for (client_id is missing)."))?;
    let client = state
        .store
        .client(client_id)
        .await
        .map_err(|e| PageError::from(e).into_response())?
        .ok_or_else(|| page("The application asking you to sign in is not registered with Wardkey. Please contact the IT service desk."))?;
    let redirect_uri = params
        .get("redirect_uri")
        .ok_or_else(|| page("The sign-in request does not say where to return to (redirect_uri is missing)."))?;
    if !client.has_redirect_uri(redirect_uri) {
        return Err(page(
            "The application asked to return to an address that is not registered for it, so Wardkey will not send you there. Please contact the IT service desk.",
        ));
    }

    // The redirect URI is now trusted: errors go back to the client.
    // Whatever is kept while the person signs in is bounded first: anyone
    // can send this request, and a 30 kB `state` kept for 15 minutes per
    // request is a way to fill the server's memory (or the shared Redis).
    if let Some((name, max)) =
        KEPT_PARAMETER_LIMITS.iter().find(|(n, max)| params.get(n).is_some_and(|v| v.len() > *max))
    {
        let client_state = params.get("state").filter(|s| s.len() <= KEPT_PARAMETER_LIMITS[0].1);
        let description = format!("{name} is longer than the {max} characters Wardkey accepts");
        return Err(redirect_error(state, redirect_uri, client_state, "invalid_request", &description));
    }
    let client_state = params.get("state");
    let fail = |error: &str, description: &str| redirect_error(state, redirect_uri, client_state, error, description);

    if params.get("request").is_some() {
        return Err(fail("request_not_supported", "request objects are not supported"));
    }
    if params.get("request_uri").is_some() {
        return Err(fail("request_uri_not_supported", "request_uri is not supported"));
    }
    match params.get("response_type") {
        Some("code") => {}
        None => return Err(fail("invalid_request", "response_type is missing")),
        Some(_) => {
            return Err(fail("unsupported_response_type", "only response_type=code is supported"));
        }
    }
    if params.get("response_mode").is_some_and(|m| m != "query") {
        return Err(fail("invalid_request", "only response_mode=query is supported"));
    }
    if !client.allows(GrantType::AuthorizationCode) {
        return Err(fail("unauthorized_client", "this client is not registered for the authorization code grant"));
    }
    let challenge = params.get("code_challenge");
    match pkce::check_challenge(challenge, params.get("code_challenge_method")) {
        Ok(()) => {}
        Err(ChallengeError::Missing) => {
            return Err(fail(
                "invalid_request",
                "PKCE is required: send code_challenge with code_challenge_method=S256",
            ));
        }
        Err(ChallengeError::UnsupportedMethod) => {
            return Err(fail("invalid_request", "code_challenge_method must be S256"));
        }
        Err(ChallengeError::Malformed) => {
            return Err(fail("invalid_request", "code_challenge must be a base64url SHA-256 digest (43 characters)"));
        }
    }
    let prompts: Vec<&str> = params.get("prompt").map(|p| p.split(' ').collect()).unwrap_or_default();
    if prompts.iter().any(|p| !matches!(*p, "none" | "login" | "consent" | "select_account")) {
        return Err(fail("invalid_request", "prompt must be none, login, consent or select_account"));
    }
    let prompt_none = prompts.contains(&"none");
    if prompt_none && prompts.len() > 1 {
        return Err(fail("invalid_request", "prompt=none cannot be combined with other values"));
    }
    let max_age = match params.get("max_age") {
        Some(v) => {
            Some(v.parse::<u32>().map_err(|_| fail("invalid_request", "max_age must be a non-negative integer"))?)
        }
        None => None,
    };
    let scope = filter_scope(params.get("scope").unwrap_or(""));
    // The application's own minimum and what this request asks for: the
    // stronger applies.
    let min_acr = [weakest_acr(params.get("acr_values")), client.min_acr.clone()]
        .into_iter()
        .flatten()
        .max_by_key(|a| acr_rank(a));

    let session = current_session(state, headers).await.map_err(|e| e.into_response())?;
    let now = state.now();
    let fresh_enough = |s: &Session| max_age.is_none_or(|m| now - s.auth_time <= i64::from(m));
    let force_login = prompts.contains(&"login") || prompts.contains(&"select_account");
    // A session below the requested acr steps up rather than being used.
    let usable = session.filter(|s| !force_login && fresh_enough(s) && acr_meets(&s.acr, min_acr.as_deref()));

    let pending = PendingAuthorization {
        client_id: client.client_id.clone(),
        redirect_uri: redirect_uri.to_string(),
        scope,
        state: client_state.map(str::to_string),
        nonce: params.get("nonce").map(str::to_string),
        code_challenge: challenge.unwrap_or_default().to_string(),
        login_hint: params.get("login_hint").map(str::to_string),
        min_acr,
        shown_ms: crate::signins::now_ms(),
    };
    match usable {
        Some(session) => Ok(complete(state, &pending, &session).await),
        None if prompt_none => Err(fail("login_required", "the user is not signed in")),
        None => {
            // Kept 15 minutes for someone nobody has authenticated: counted.
            state.admission.admit(Kept::SignIn, from).await.map_err(IntoResponse::into_response)?;
            let id = state.sessions.put_pending(&pending).await.map_err(|e| PageError::from(e).into_response())?;
            Ok(see_other(&format!("/login?request={id}")))
        }
    }
}

/// The live session of this browser whose user is still enabled.
pub async fn current_session(state: &AppState, headers: &HeaderMap) -> Result<Option<Session>, PageError> {
    let Some(cookie) = state.cookies.read(headers, CookieName::Session) else {
        return Ok(None);
    };
    let Some(session) = state.sessions.session_from_cookie(cookie).await? else {
        return Ok(None);
    };
    match state.store.user_by_id(&session.user_id).await? {
        Some(user) if !user.disabled => Ok(Some(session)),
        _ => Ok(None),
    }
}

/// Finish an authorization for a signed-in session: issue the code and send
/// the browser back to the client.
pub async fn complete(state: &AppState, pending: &PendingAuthorization, session: &Session) -> Response {
    let record = CodeRecord {
        client_id: pending.client_id.clone(),
        redirect_uri: pending.redirect_uri.clone(),
        code_challenge: pending.code_challenge.clone(),
        nonce: pending.nonce.clone(),
        expires_at: state.now() + state.settings.oidc.code_ttl.as_secs() as i64,
        grant: Grant {
            gid: random_token(16),
            user_id: Some(session.user_id.clone()),
            sid: Some(session.sid.clone()),
            scope: pending.scope.clone(),
            auth_time: Some(session.auth_time),
            acr: Some(session.acr.clone()),
            amr: session.amr.clone(),
        },
    };
    let code = match state.sessions.issue_code(&record).await {
        Ok(code) => code,
        Err(e) => return PageError::from(e).into_response(),
    };
    let noted = match state.store.client(&pending.client_id).await {
        Ok(Some(client)) => async {
            let listed = state.sessions.session_clients(&session.sid).await?;
            state.sessions.note_session_client(session, &client, &listed).await
        }
        .await
        .map_err(PageError::from),
        Ok(None) => Err(PageError::BadRequest("The application was removed while you were signing in.".into())),
        Err(e) => Err(e.into()),
    };
    if let Err(e) = noted {
        return e.into_response();
    }
    let mut params = vec![("code", code.as_str()), ("iss", state.issuer.as_ref())];
    if let Some(s) = &pending.state {
        params.push(("state", s));
    }
    redirect_with(&pending.redirect_uri, &params)
}
