//! Verifying requests signed by a workstation's Ed25519 key: tap requests
//! (`typ: wardkey-tap+jwt`) and token-exchange client assertions.

use aws_lc_rs::signature::{ED25519, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use wardkey_core::workstation::Workstation;
use wardkey_proto::tap::Envelope;

use crate::error::TapApiError;
use crate::sessions::keys;
use crate::state::AppState;

/// JWS `typ` of tap requests.
pub const TAP_TYP: &str = "wardkey-tap+jwt";

#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
    typ: Option<String>,
}

/// The workstation named by `kid`, with the JWS checked against its key.
/// Returns the workstation and the decoded claims.
pub async fn verify_workstation_jws(
    state: &AppState,
    jws: &str,
) -> Result<(Workstation, Value, Option<String>), TapApiError> {
    let malformed = || TapApiError::InvalidRequest("the request is not a compact JWS".into());
    let mut parts = jws.trim().split('.');
    let (Some(h), Some(c), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(malformed());
    };
    let decode = |p: &str| URL_SAFE_NO_PAD.decode(p).map_err(|_| malformed());
    let header: Header = serde_json::from_slice(&decode(h)?).map_err(|_| malformed())?;
    // Only EdDSA: `none` or anything else never reaches a key (RFC 8725 §3.1).
    if header.alg != "EdDSA" {
        return Err(TapApiError::InvalidSignature);
    }
    let kid = header.kid.ok_or(TapApiError::InvalidSignature)?;
    let ws = state.directory.workstation(&kid).await?.ok_or(TapApiError::InvalidSignature)?;
    let public = ws.public_key.as_deref().ok_or(TapApiError::InvalidSignature)?;
    let signed = &jws.trim()[..h.len() + 1 + c.len()];
    UnparsedPublicKey::new(&ED25519, public)
        .verify(signed.as_bytes(), &decode(s)?)
        .map_err(|_| TapApiError::InvalidSignature)?;
    // Checked only after the signature, so an unknown caller learns nothing.
    if !ws.enabled {
        return Err(TapApiError::WorkstationDisabled);
    }
    let claims: Value = serde_json::from_slice(&decode(c)?).map_err(|_| malformed())?;
    Ok((ws, claims, header.typ))
}

/// Verify a signed tap request and decode its action: signature, `iss`,
/// `aud`, `iat` within the clock skew, and `jti` seen only once.
pub async fn verify_tap<A: DeserializeOwned>(state: &AppState, body: &[u8]) -> Result<(Workstation, A), TapApiError> {
    let jws = std::str::from_utf8(body).map_err(|_| TapApiError::InvalidRequest("the body is not text".into()))?;
    let (ws, claims, typ) = verify_workstation_jws(state, jws).await?;
    if typ.as_deref() != Some(TAP_TYP) {
        return Err(TapApiError::InvalidRequest(format!("the JWS typ must be {TAP_TYP}")));
    }
    let envelope: Envelope<A> = serde_json::from_value(claims)
        .map_err(|e| TapApiError::InvalidRequest(format!("the request's claims are not valid: {e}")))?;
    if envelope.iss != ws.id {
        return Err(TapApiError::InvalidSignature);
    }
    if envelope.aud != *state.issuer {
        return Err(TapApiError::InvalidRequest("the request is addressed to another server".into()));
    }
    let skew = state.settings.oidc.clock_skew.as_secs() as i64;
    if (state.now() - envelope.iat).abs() > skew {
        return Err(TapApiError::Stale);
    }
    if envelope.jti.len() < 16 || envelope.jti.len() > 128 {
        return Err(TapApiError::InvalidRequest("jti must be 16 to 128 characters".into()));
    }
    // Remembered for twice the skew: an older `iat` is refused as stale.
    let ttl = std::time::Duration::from_secs(2 * skew as u64 + 1);
    if !state.cache.put_if_absent(&keys::tap_jti(&ws.id, &envelope.jti), b"1", ttl).await? {
        return Err(TapApiError::Replayed);
    }
    Ok((ws, envelope.action))
}
