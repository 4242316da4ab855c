//! OpenID Connect Discovery 1.0 §3 and the JWKS (RFC 7517).

use axum::Json;
use axum::extract::State;
use axum::http::header::CACHE_CONTROL;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use crate::state::AppState;
use crate::tokens::SUPPORTED_SCOPES;
use wardkey_core::session::ACR_LEVELS;

/// `GET /.well-known/openid-configuration`: only what the server really does.
pub async fn configuration(State(state): State<AppState>) -> Json<Value> {
    let u = |p: &str| state.url(p);
    Json(json!({
        "issuer": state.issuer.as_ref(),
        "authorization_endpoint": u("/authorize"),
        "token_endpoint": u("/token"),
        "userinfo_endpoint": u("/userinfo"),
        "jwks_uri": u("/jwks"),
        "end_session_endpoint": u("/logout"),
        "revocation_endpoint": u("/revoke"),
        "introspection_endpoint": u("/introspect"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials",
            "urn:ietf:params:oauth:grant-type:token-exchange"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256", "RS256", "EdDSA"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
        "scopes_supported": SUPPORTED_SCOPES,
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "sid", "acr", "amr", "at_hash",
            "name", "preferred_username", "email", "email_verified", "roles"],
        "acr_values_supported": ACR_LEVELS,
        "code_challenge_methods_supported": ["S256"],
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "claims_parameter_supported": false,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "require_request_uri_registration": false,
        "authorization_response_iss_parameter_supported": true,
        "frontchannel_logout_supported": false,
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
    }))
}

/// `GET /jwks`: every published key, including retired ones still valid.
pub async fn jwks(State(state): State<AppState>) -> impl IntoResponse {
    // Short caching: RPs refetch on an unknown kid anyway, and rotation must
    // reach them within the key reload interval.
    ([(CACHE_CONTROL, "public, max-age=60")], Json(state.keys.jwks()))
}
