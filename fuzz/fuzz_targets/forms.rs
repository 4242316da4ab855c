//! Form and query parsing: `params::Params::parse` and `Params::from_form`
//! directly, and the OAuth/OIDC endpoints that parse forms and query
//! strings, driven through the server's real router.
//!
//! Input: a route digit, then the payload:
//! `0` POST /token (client credentials in the form), `1` POST /token with
//! HTTP Basic, `2` GET /authorize?payload, `3` POST /authorize,
//! `4` POST /introspect (Basic), `5` POST /revoke (Basic), `6` POST /login
//! (with the CSRF cookie), `7` GET /logout?payload, `8` POST /userinfo,
//! `9` only `Params::from_form` with the payload's first line as the
//! content type. A pending authorization (`request`) and an authorization
//! code exist before every input (see `server::Server::reset_forms`).
//!
//! Whatever the route, `Params::parse` is also checked against
//! `url::form_urlencoded`: a name given twice (with values) is refused, and
//! otherwise every non-empty value is found under its name.
#![no_main]

use std::collections::HashMap;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Request, header};
use libfuzzer_sys::fuzz_target;
use wardkey_fuzz::server::{CSRF, basic, check_no_internal_error, server};
use wardkey_idp::params::Params;

const FORM: &str = "application/x-www-form-urlencoded";

fn check_params(payload: &[u8]) {
    let parsed = Params::parse(payload);
    let mut seen: HashMap<String, String> = HashMap::new();
    let mut repeated = false;
    for (k, v) in url::form_urlencoded::parse(payload) {
        if v.is_empty() {
            continue;
        }
        if seen.insert(k.into_owned(), v.into_owned()).is_some() {
            repeated = true;
        }
    }
    match parsed {
        Ok(p) => {
            assert!(!repeated, "a repeated parameter was accepted");
            for (k, v) in &seen {
                assert_eq!(p.get(k), Some(v.as_str()), "parameter {k:?}");
            }
        }
        Err(e) => assert!(repeated, "refused without a repetition: {e}"),
    }
}

fuzz_target!(init: wardkey_fuzz::seeds::maybe_write("forms"), |data: &[u8]| {
    let Some((&route, payload)) = data.split_first() else { return };
    check_params(payload);
    let route = route.wrapping_sub(b'0') % 10;
    if route == 9 {
        let (ct, body) = match payload.iter().position(|b| *b == b'\n') {
            Some(i) => (&payload[..i], &payload[i + 1..]),
            None => (payload, &[][..]),
        };
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_bytes(ct) {
            headers.insert(header::CONTENT_TYPE, v);
        }
        if let Ok(p) = Params::from_form(&headers, body) {
            let essence = ct.split(|b| *b == b';').next().unwrap_or_default();
            assert!(essence.trim_ascii().eq_ignore_ascii_case(FORM.as_bytes()), "accepted content type {ct:?}");
            let _ = p.merge(Params::parse(body).unwrap_or_default());
        }
        return;
    }
    let (method, path, basic_auth) = match route {
        0 => (Method::POST, "/token", false),
        1 => (Method::POST, "/token", true),
        2 => (Method::GET, "/authorize", false),
        3 => (Method::POST, "/authorize", false),
        4 => (Method::POST, "/introspect", true),
        5 => (Method::POST, "/revoke", true),
        6 => (Method::POST, "/login", false),
        7 => (Method::GET, "/logout", false),
        _ => (Method::POST, "/userinfo", false),
    };
    let mut req = Request::builder().method(method.clone());
    let body = if method == Method::GET {
        let Ok(query) = std::str::from_utf8(payload) else { return };
        req = req.uri(format!("{path}?{query}"));
        Vec::new()
    } else {
        req = req.uri(path).header(header::CONTENT_TYPE, FORM);
        payload.to_vec()
    };
    if basic_auth {
        req = req.header(header::AUTHORIZATION, basic());
    }
    if route == 6 {
        req = req.header(header::COOKIE, format!("__Host-wardkey_csrf={CSRF}"));
    }
    // A query that is no URI is refused before any handler runs.
    let Ok(req) = req.body(Body::from(body)) else { return };
    let server = server();
    server.rt.block_on(async {
        server.reset_forms().await;
        if route == 6 {
            server.reset_login_failures().await;
        }
        let r = server.call(req).await;
        check_no_internal_error(path, r).await;
    });
});
