//! The OpenID Connect provider, one module per endpoint, named after the
//! specs they implement.

pub mod authorize;
pub mod discovery;
pub mod introspect;
pub mod login;
pub mod logout;
pub mod revoke;
pub mod token;
pub mod userinfo;

use axum::Router;
use axum::routing::{get, post};

use crate::state::AppState;

/// Browser-facing routes. No CORS here: RFC 9700 §4.16 (clickjacking) and
/// §2.1 keep `/authorize` and `/login` same-origin and unframable.
pub fn browser_router() -> Router<AppState> {
    Router::new()
        .route("/authorize", get(authorize::get).post(authorize::post))
        .route("/login", get(login::form).post(login::submit))
        .route("/logout", get(logout::get).post(logout::post))
}

/// Machine-facing routes that SPAs may call cross-origin.
pub fn api_router() -> Router<AppState> {
    Router::new()
        .route("/.well-known/openid-configuration", get(discovery::configuration))
        .route("/jwks", get(discovery::jwks))
        .route("/token", post(token::token))
        .route("/userinfo", get(userinfo::get).post(userinfo::post))
        .route("/introspect", post(introspect::introspect))
        .route("/revoke", post(revoke::revoke))
}
