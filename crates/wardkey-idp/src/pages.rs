//! Server-rendered HTML. Pages work without JavaScript, use real labels and
//! landmarks for screen readers, and explain failures in plain words. Every
//! interpolated value goes through [`escape`].

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

/// Escape text for HTML element content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem;color:#212b32}\
h1{font-size:1.5rem}label{display:block;margin-top:1rem;font-weight:600}\
input[type=text],input[type=password]{width:100%;padding:.5rem;font-size:1.1rem;box-sizing:border-box}\
button{margin-top:1.5rem;padding:.6rem 1.2rem;font-size:1.1rem;background:#005eb8;color:#fff;border:0;border-radius:4px}\
.error{border-left:6px solid #d5281b;padding:.5rem 1rem;background:#fde8e6}.secondary{background:#fff;color:#005eb8;border:2px solid #005eb8}table{width:100%;border-collapse:collapse}td,th{text-align:left;padding:.4rem .2rem;border-bottom:1px solid #d8dde0}select{font-size:1.1rem;padding:.4rem}";

/// The script behind the passkey buttons, served as `/static/webauthn.js`
/// (the content security policy allows same-origin scripts only).
pub const WEBAUTHN_JS: &str = include_str!("../static/webauthn.js");

fn layout(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<title>{title} – Wardkey</title><style>{STYLE}</style></head>\
<body><main>{body}</main></body></html>",
        title = escape(title)
    ))
}

/// How the sign-in page is offered: which ways in it shows.
pub struct LoginOptions<'a> {
    /// Passkeys are set up on this server (its issuer is a host name).
    pub passkeys: bool,
    /// The application needs more than a password; the page says so in
    /// these words and shows no password form.
    pub needs: Option<&'a str>,
}

/// The sign-in form. `request` is the pending authorization id (empty for a
/// direct visit); `csrf` the anti-forgery token bound to the browser. The
/// passkey button comes first, shown by its script where the browser can
/// use it; the password form works without JavaScript.
pub fn login_page(username: &str, request: &str, csrf: &str, error: Option<&str>, with: &LoginOptions) -> Html<String> {
    let error = error
        .map(|e| format!("<div class=\"error\" role=\"alert\" id=\"login-error\"><p>{}</p></div>", escape(e)))
        .unwrap_or_default();
    let autofocus = if username.is_empty() { ("autofocus", "") } else { ("", "autofocus") };
    let or = if with.needs.is_none() { "<p>Or sign in with your username and password:</p>" } else { "" };
    let passkey = if with.passkeys {
        format!(
            "<section id=\"passkey-sign-in\" data-request=\"{request}\" hidden>\
<button type=\"button\">Sign in with a passkey or security key</button>\
<div class=\"error\" role=\"alert\" id=\"passkey-error\" tabindex=\"-1\" hidden><p></p></div>\
{or}</section><script src=\"/static/webauthn.js\" defer></script>",
            request = escape(request)
        )
    } else {
        String::new()
    };
    if let Some(needs) = with.needs {
        let unavailable = if with.passkeys {
            ""
        } else {
            "<p>Passkeys and security keys are not available on this server's address: call the IT service desk.</p>"
        };
        let body = format!("<h1>Sign in</h1><p id=\"needs\">{}</p>{error}{passkey}{unavailable}", escape(needs));
        return layout("Sign in", &body);
    }
    layout(
        "Sign in",
        &format!(
            "<h1>Sign in</h1>{error}{passkey}\
<form method=\"post\" action=\"/login\">\
<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<input type=\"hidden\" name=\"request\" value=\"{request}\">\
<label for=\"username\">Username</label>\
<input type=\"text\" id=\"username\" name=\"username\" value=\"{username}\" autocomplete=\"username\" autocapitalize=\"none\" spellcheck=\"false\" required {a1}>\
<label for=\"password\">Password</label>\
<input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" required {a2}>\
<button type=\"submit\">Sign in</button></form>",
            csrf = escape(csrf),
            request = escape(request),
            username = escape(username),
            a1 = autofocus.0,
            a2 = autofocus.1,
        ),
    )
}

/// One row of the keys page.
pub struct KeyRow {
    /// Credential id, base64url.
    pub id: String,
    /// The name its owner gave it.
    pub name: String,
    /// Passkey or security key.
    pub kind: wardkey_store::AuthenticatorKind,
    /// When it was added (Unix seconds).
    pub created_at: i64,
    /// When it last signed in.
    pub last_used_at: Option<i64>,
}

fn date(unix: i64) -> String {
    let (y, m, d) = civil(unix.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

/// The civil date (year, month, day) of `days` since 1970-01-01
/// (H. Hinnant's algorithm).
pub fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// What the account page offers to add, from the server's set-up and the
/// trust's key policy (`[webauthn]`).
pub struct KeysOffer {
    /// WebAuthn works on this server (its issuer is a host name).
    pub enabled: bool,
    /// People may add passkeys themselves (`webauthn.passkeys`).
    pub passkeys: bool,
    /// Only approved security-key models can be added
    /// (`webauthn.approved_models`), so the page says so before anyone tries.
    pub approved_only: bool,
    /// This browser may add a key now (a recent, strong enough sign-in, or
    /// an invite); otherwise the page says how to get there instead of
    /// offering a form that would be refused.
    pub may_add: bool,
}

/// The account page for passkeys and security keys: what is registered,
/// a form to add one (driven by the script) and a button to remove each.
pub fn keys_page(username: &str, keys: &[KeyRow], csrf: &str, offer: &KeysOffer) -> Html<String> {
    let rows: String = keys
        .iter()
        .map(|k| {
            let kind = match k.kind {
                wardkey_store::AuthenticatorKind::Passkey => "Passkey",
                wardkey_store::AuthenticatorKind::SecurityKey => "Security key",
            };
            format!(
                "<tr><td>{name}</td><td>{kind}</td><td>{added}</td><td>{used}</td><td>\
<form method=\"post\" action=\"/account/keys/revoke\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<input type=\"hidden\" name=\"id\" value=\"{id}\"><button type=\"submit\" class=\"secondary\" \
aria-label=\"Remove {name}\">Remove</button></form></td></tr>",
                name = escape(&k.name),
                added = date(k.created_at),
                used = k.last_used_at.map(date).unwrap_or_else(|| "never".into()),
                csrf = escape(csrf),
                id = escape(&k.id),
            )
        })
        .collect();
    let table = if keys.is_empty() {
        "<p id=\"no-keys\">You have no passkeys or security keys yet.</p>".to_string()
    } else {
        format!(
            "<table><caption>Your keys</caption><thead><tr><th scope=\"col\">Name</th><th scope=\"col\">Kind</th>\
<th scope=\"col\">Added</th><th scope=\"col\">Last used</th><th scope=\"col\"><span hidden>Remove</span></th></tr></thead>\
<tbody>{rows}</tbody></table>"
        )
    };
    let add = if offer.enabled && !offer.may_add {
        "<h2>Add a key</h2><p id=\"sign-in-again\">To add a key, first sign in again with a key you already \
have: a new key needs a sign-in at least as strong as it, made in the last few minutes. If you have no key \
yet, ask the IT service desk for an invite link.</p><p><a class=\"button\" href=\"/login\">Sign in again with a key</a></p>"
            .to_string()
    } else if offer.enabled {
        let passkey =
            if offer.passkeys { "<option value=\"passkey\">Passkey (this device, or your phone)</option>" } else { "" };
        let policy = match (offer.passkeys, offer.approved_only) {
            (true, false) => {
                "<p id=\"key-policy\">Every key added here signs in as a passkey: your trust has not listed the \
security-key models it issues.</p>"
            }
            (true, true) => {
                "<p id=\"key-policy\">Security keys must be a model your trust has approved: use a key issued by \
IT.</p>"
            }
            (false, false) => {
                "<p id=\"key-policy\">Your trust does not allow passkeys to be added here: add a security key \
issued by IT.</p>"
            }
            (false, true) => {
                "<p id=\"key-policy\">Your trust does not allow passkeys to be added here, and security keys \
must be a model it has approved: use a key issued by IT.</p>"
            }
        };
        format!(
            "<h2>Add a key</h2>{policy}<form id=\"add-key\"><label for=\"key-name\">Name</label>\
<input type=\"text\" id=\"key-name\" name=\"name\" maxlength=\"64\" required placeholder=\"e.g. Blue YubiKey\">\
<label for=\"key-kind\">Kind</label><select id=\"key-kind\" name=\"kind\">{passkey}\
<option value=\"security_key\">Security key or FIDO2 badge (plugged in or tapped)</option></select>\
<button type=\"submit\">Add the key</button></form>\
<div class=\"error\" role=\"alert\" id=\"key-error\" tabindex=\"-1\" hidden><p></p></div>\
<script src=\"/static/webauthn.js\" defer></script>"
        )
    } else {
        "<p>Passkeys are not available on this server's address. Ask the IT service desk.</p>".to_string()
    };
    layout(
        "Passkeys and security keys",
        &format!(
            "<h1>Passkeys and security keys</h1><p>Signed in as {user}. A passkey or security key signs you in \
with one touch, and cannot be phished.</p>{table}{add}",
            user = escape(username)
        ),
    )
}

/// The page an invite link opens: the link is spent only by the button
/// (a POST), so a mail scanner that fetches links does not use it up.
pub fn invite_page() -> Html<String> {
    layout(
        "Set up your keys",
        "<h1>Set up your keys</h1><p>The IT service desk sent you this link so that you can add a passkey or \
security key to your Wardkey account. The link works once.</p><form method=\"post\"><button type=\"submit\">\
Continue</button></form>",
    )
}

/// A page that reports an error to a person and goes nowhere.
pub fn error_page(message: &str) -> Html<String> {
    layout(
        "Cannot continue",
        &format!("<h1>Cannot continue</h1><div class=\"error\" role=\"alert\"><p>{}</p></div>", escape(message)),
    )
}

/// A plain information page.
pub fn message_page(title: &str, message: &str) -> Html<String> {
    layout(title, &format!("<h1>{}</h1><p>{}</p>", escape(title), escape(message)))
}

/// RP-initiated logout without a valid `id_token_hint` asks the person to
/// confirm, so a third-party page cannot sign them out (OIDC RP-Initiated
/// Logout §2: the OP SHOULD ask).
pub fn logout_confirm_page(csrf: &str, hidden: &[(&str, &str)]) -> Html<String> {
    let inputs: String = hidden
        .iter()
        .map(|(k, v)| format!("<input type=\"hidden\" name=\"{}\" value=\"{}\">", escape(k), escape(v)))
        .collect();
    layout(
        "Sign out",
        &format!(
            "<h1>Sign out of Wardkey?</h1><p>This signs you out of every hospital system on this session.</p>\
<form method=\"post\" action=\"/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
<input type=\"hidden\" name=\"confirm\" value=\"yes\">{inputs}<button type=\"submit\">Sign out</button></form>",
            escape(csrf)
        ),
    )
}

/// A 303 See Other: after a POST the browser must follow with GET (RFC 9700
/// §4.12), and it is correct after a GET too.
pub fn see_other(location: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_hostile_values() {
        let with = LoginOptions { passkeys: true, needs: None };
        let page = login_page("\"><script>alert(1)</script>", "\"><x", "c", Some("<b>"), &with);
        assert!(!page.0.contains("<script>alert"));
        assert!(page.0.contains("&lt;b&gt;"));
        assert!(!page.0.contains("\"><x"));
        let row = KeyRow {
            id: "a\"b".into(),
            name: "<i>".into(),
            kind: wardkey_store::AuthenticatorKind::Passkey,
            created_at: 0,
            last_used_at: None,
        };
        let offer = KeysOffer { enabled: true, passkeys: true, approved_only: false, may_add: true };
        let page = keys_page("<u>", &[row], "c", &offer);
        assert!(!page.0.contains("<i>") && !page.0.contains("<u>") && !page.0.contains("a\"b"));
    }

    #[test]
    fn the_keys_page_offers_what_the_trust_allows() {
        let offer = |passkeys, approved_only| KeysOffer { enabled: true, passkeys, approved_only, may_add: true };
        let page = |passkeys, approved_only| keys_page("u", &[], "c", &offer(passkeys, approved_only)).0;
        let open = page(true, false);
        assert!(open.contains("value=\"passkey\"") && open.contains("signs in as a passkey"));
        let issued = page(false, true);
        assert!(!issued.contains("value=\"passkey\""), "no passkey option when passkeys are off");
        assert!(issued.contains("does not allow passkeys") && issued.contains("approved"));
        assert!(page(true, true).contains("value=\"passkey\""));
        assert!(page(false, false).contains("does not allow passkeys"));
        // Without a recent strong sign-in: no form, but the way to get one.
        let stale = keys_page("u", &[], "c", &KeysOffer { may_add: false, ..offer(true, false) }).0;
        assert!(
            !stale.contains("id=\"add-key\"") && stale.contains("sign in again") && stale.contains("href=\"/login\"")
        );
    }

    #[test]
    fn dates_are_civil() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(1_796_083_200), "2026-12-01");
        assert_eq!(date(951_782_400), "2000-02-29");
    }
}
