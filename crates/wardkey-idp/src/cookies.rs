//! The cookies Wardkey sets: the SSO session, the forms' anti-forgery token
//! and an invite's key enrolment. All are HttpOnly and SameSite=Lax; over https they
//! are Secure with the `__Host-` prefix, which pins them to this host and
//! path `/` so a sibling subdomain cannot plant one (RFC 6265bis §4.1.3.2).

use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue};

use crate::state::AppState;

/// Which cookie.
#[derive(Debug, Clone, Copy)]
pub enum CookieName {
    /// The SSO session.
    Session,
    /// The login form's CSRF token.
    Csrf,
    /// A redeemed invite: lets its holder add a key, and nothing else.
    Enrolment,
}

impl AppState {
    fn cookie_name(&self, which: CookieName) -> &'static str {
        match (which, self.settings.is_https()) {
            (CookieName::Session, true) => "__Host-wardkey_session",
            (CookieName::Session, false) => "wardkey_session",
            (CookieName::Csrf, true) => "__Host-wardkey_csrf",
            (CookieName::Csrf, false) => "wardkey_csrf",
            (CookieName::Enrolment, true) => "__Host-wardkey_enrol",
            (CookieName::Enrolment, false) => "wardkey_enrol",
        }
    }

    /// The value of cookie `which` in the request, if any.
    pub fn read_cookie<'a>(&self, headers: &'a HeaderMap, which: CookieName) -> Option<&'a str> {
        let name = self.cookie_name(which);
        headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }

    /// A `Set-Cookie` header setting `which` to `value` for the browser
    /// session (no Max-Age: closing the browser on a shared PC ends it).
    pub fn set_cookie(&self, headers: &mut HeaderMap, which: CookieName, value: &str) {
        let secure = if self.settings.is_https() { "; Secure" } else { "" };
        let cookie = format!("{}={value}; Path=/; HttpOnly; SameSite=Lax{secure}", self.cookie_name(which));
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            headers.append(SET_COOKIE, v);
        }
    }

    /// A `Set-Cookie` header deleting `which`.
    pub fn clear_cookie(&self, headers: &mut HeaderMap, which: CookieName) {
        let secure = if self.settings.is_https() { "; Secure" } else { "" };
        let cookie = format!("{}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}", self.cookie_name(which));
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            headers.append(SET_COOKIE, v);
        }
    }
}
