//! Server-rendered HTML. Pages work without JavaScript, use real labels and
//! landmarks for screen readers, and explain failures in plain words. Every
//! interpolated value goes through [`escape`].

use axum::response::Html;

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
.error{border-left:6px solid #d5281b;padding:.5rem 1rem;background:#fde8e6}";

fn layout(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<title>{title} – Wardkey</title><style>{STYLE}</style></head>\
<body><main>{body}</main></body></html>",
        title = escape(title)
    ))
}

/// The sign-in form. `request` is the pending authorization id (empty for a
/// direct visit); `csrf` the anti-forgery token bound to the browser.
pub fn login_page(username: &str, request: &str, csrf: &str, error: Option<&str>) -> Html<String> {
    let error = error
        .map(|e| format!("<div class=\"error\" role=\"alert\" id=\"login-error\"><p>{}</p></div>", escape(e)))
        .unwrap_or_default();
    let autofocus = if username.is_empty() { ("autofocus", "") } else { ("", "autofocus") };
    layout(
        "Sign in",
        &format!(
            "<h1>Sign in</h1>{error}\
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_hostile_values() {
        let page = login_page("\"><script>alert(1)</script>", "r", "c", Some("<b>"));
        assert!(!page.0.contains("<script>alert"));
        assert!(page.0.contains("&lt;b&gt;"));
    }
}
