//! The cookies Wardkey sets: the SSO session, the forms' anti-forgery token
//! and an invite's key enrolment. All are HttpOnly and SameSite=Lax; over https they
//! are Secure with the `__Host-` prefix, which pins them to this host and
//! path `/` so a sibling subdomain cannot plant one (RFC 6265bis §4.1.3.2).

use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue};

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

/// Reads and writes Wardkey's cookies, named and flagged for the scheme
/// the server is reached by.
#[derive(Debug, Clone, Copy)]
pub struct Cookies {
    /// Whether the issuer is `https`: `Secure` and `__Host-` names.
    https: bool,
}

impl Cookies {
    /// Cookies for a server reached over `https` or not.
    pub fn new(https: bool) -> Self {
        Self { https }
    }

    fn cookie_name(&self, which: CookieName) -> &'static str {
        match (which, self.https) {
            (CookieName::Session, true) => "__Host-wardkey_session",
            (CookieName::Session, false) => "wardkey_session",
            (CookieName::Csrf, true) => "__Host-wardkey_csrf",
            (CookieName::Csrf, false) => "wardkey_csrf",
            (CookieName::Enrolment, true) => "__Host-wardkey_enrol",
            (CookieName::Enrolment, false) => "wardkey_enrol",
        }
    }

    /// The value of cookie `which` in the request, if any.
    pub fn read<'a>(&self, headers: &'a HeaderMap, which: CookieName) -> Option<&'a str> {
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
    pub fn set(&self, headers: &mut HeaderMap, which: CookieName, value: &str) {
        let secure = if self.https { "; Secure" } else { "" };
        let cookie = format!("{}={value}; Path=/; HttpOnly; SameSite=Lax{secure}", self.cookie_name(which));
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            headers.append(SET_COOKIE, v);
        }
    }

    /// A `Set-Cookie` header deleting `which`.
    pub fn clear(&self, headers: &mut HeaderMap, which: CookieName) {
        let secure = if self.https { "; Secure" } else { "" };
        let cookie = format!("{}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}", self.cookie_name(which));
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            headers.append(SET_COOKIE, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_https_cookies_are_host_bound_and_secure() {
        let mut headers = HeaderMap::new();
        Cookies::new(true).set(&mut headers, CookieName::Session, "abc");
        let set = headers.get(SET_COOKIE).unwrap().to_str().unwrap();
        assert_eq!(set, "__Host-wardkey_session=abc; Path=/; HttpOnly; SameSite=Lax; Secure");
        let mut plain = HeaderMap::new();
        Cookies::new(false).clear(&mut plain, CookieName::Csrf);
        assert_eq!(plain.get(SET_COOKIE).unwrap(), "wardkey_csrf=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0");
    }

    #[test]
    fn reading_finds_our_cookie_among_others_and_ignores_the_other_scheme() {
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_static("a=1; wardkey_session=s.x; __Host-wardkey_csrf=c"));
        assert_eq!(Cookies::new(false).read(&headers, CookieName::Session), Some("s.x"));
        assert_eq!(Cookies::new(false).read(&headers, CookieName::Csrf), None, "an https cookie over http");
        assert_eq!(Cookies::new(true).read(&headers, CookieName::Csrf), Some("c"));
    }
}
