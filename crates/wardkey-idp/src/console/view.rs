//! The console's HTML: one layout with a skip link, a navigation bar and
//! NHS-style focus (a yellow box with a dark underline), tables that scroll
//! sideways on a tablet rather than squash, and forms that work without
//! JavaScript. Every interpolated value goes through [`escape`].

use std::fmt::Write;

use axum::response::Html;

use crate::pages::escape;

const STYLE: &str = "*{box-sizing:border-box}\
body{font-family:system-ui,Arial,sans-serif;margin:0;color:#212b32;background:#f0f4f5;line-height:1.5;font-size:1rem}\
.skip{position:absolute;left:-999px}.skip:focus{left:1rem;top:1rem;background:#ffeb3b;padding:.5rem;z-index:9}\
header{background:#005eb8;color:#fff;padding:.75rem 1.5rem;display:flex;flex-wrap:wrap;gap:.5rem 2rem;align-items:center}\
header .brand{font-weight:700;font-size:1.25rem}header .who{margin-left:auto;font-size:.95rem}\
nav ul{list-style:none;margin:0;padding:0;display:flex;flex-wrap:wrap;gap:.25rem 1.25rem}\
nav a,header a,nav a:visited,header a:visited{color:#fff;font-weight:600;text-decoration:underline;text-underline-offset:3px}\
nav a[aria-current=page]{text-decoration-thickness:4px}\
main{max-width:72rem;margin:0 auto;padding:1.5rem}\
h1{font-size:2rem;margin:.5rem 0 1rem}h2{font-size:1.35rem;margin:1.5rem 0 .5rem}\
.card{background:#fff;padding:1rem 1.25rem;margin:0 0 1rem;border-bottom:4px solid #d8dde0}\
.stats{display:grid;grid-template-columns:repeat(auto-fit,minmax(13rem,1fr));gap:1rem}\
.stat strong{display:block;font-size:1.9rem}\
.scroll{overflow-x:auto}table{width:100%;border-collapse:collapse;background:#fff}\
th,td{text-align:left;padding:.5rem .6rem;border-bottom:1px solid #d8dde0;vertical-align:top}th{background:#e8edee}\
label{display:block;font-weight:600;margin:.75rem 0 .25rem}\
input[type=text],input[type=search],input[type=password],input[type=date],select{font-size:1rem;padding:.45rem;border:2px solid #4c6272;width:100%;max-width:24rem;background:#fff}\
button,.button{display:inline-block;font-size:1rem;font-weight:600;padding:.5rem 1rem;margin:.5rem .5rem 0 0;border:0;border-radius:4px;\
background:#007f3b;color:#fff;box-shadow:0 4px 0 #00401e;cursor:pointer;text-decoration:none}\
button.secondary{background:#fff;color:#005eb8;box-shadow:0 4px 0 #005eb8;border:2px solid #005eb8}\
button.warning{background:#d5281b;box-shadow:0 4px 0 #6b140e}\
a{color:#005eb8}a:visited{color:#330072}\
a:focus,button:focus,input:focus,select:focus,.button:focus{outline:4px solid transparent;background:#ffeb3b;color:#212b32;\
box-shadow:0 -2px #ffeb3b,0 4px #212b32;text-decoration:none}\
input:focus,select:focus{box-shadow:0 0 0 4px #ffeb3b;outline:4px solid transparent;border-color:#212b32}\
.inline{display:inline}form:not(.inline) button{display:block}\
.notice{border-left:8px solid #005eb8;background:#fff;padding:.75rem 1rem;margin:0 0 1rem}\
.done{border-left-color:#007f3b}.error{border-left-color:#d5281b}.once{border-left-color:#ffb81c}\
.tag{display:inline-block;padding:0 .4rem;border:1px solid currentColor;font-size:.875rem;font-weight:600}\
.tag.red{color:#8a1538;background:#f6d7d2}.tag.green{color:#005a28;background:#cce5d8}.tag.grey{color:#212b32;background:#dbe0e3}\
code{font-size:1.05rem;background:#fff;border:1px solid #aeb7bd;padding:.1rem .3rem}\
@media (max-width:40rem){main{padding:1rem}h1{font-size:1.6rem}}";

/// Who is signed in, for the header.
pub struct Viewer<'a> {
    /// Their username.
    pub username: &'a str,
    /// Their console role, in words.
    pub role: &'a str,
}

/// The console's pages, for the navigation's current marker.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// The dashboard.
    Dashboard,
    /// Users.
    Users,
    /// Workstations.
    Workstations,
    /// Applications (OIDC clients).
    Clients,
    /// The audit log.
    Audit,
    /// None (sign-in, refusals).
    None,
}

/// A console page: `title`, the signed-in `viewer` (none on the sign-in
/// page), and `body`.
pub fn page(title: &str, section: Section, viewer: Option<&Viewer>, body: &str) -> Html<String> {
    let nav = match viewer {
        Some(v) => {
            let link = |s: Section, href: &str, text: &str| {
                let current = if s == section { " aria-current=\"page\"" } else { "" };
                format!("<li><a href=\"{href}\"{current}>{text}</a></li>")
            };
            format!(
                "<nav aria-label=\"Console\"><ul>{}{}{}{}{}</ul></nav>\
                 <p class=\"who\">Signed in as <strong>{}</strong> ({})</p>",
                link(Section::Dashboard, "/console", "Dashboard"),
                link(Section::Users, "/console/users", "Users"),
                link(Section::Workstations, "/console/workstations", "Workstations"),
                link(Section::Clients, "/console/clients", "Applications"),
                link(Section::Audit, "/console/audit", "Audit log"),
                escape(v.username),
                escape(v.role),
            )
        }
        None => String::new(),
    };
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<title>{t} – Wardkey console</title><style>{STYLE}</style></head>\
<body><a class=\"skip\" href=\"#main\">Skip to main content</a>\
<header><span class=\"brand\">Wardkey console</span>{nav}</header>\
<main id=\"main\" tabindex=\"-1\"><h1>{t}</h1>{body}</main></body></html>",
        t = escape(title),
    ))
}

/// A notice above a page's content: `kind` is `done`, `error` or `once`.
pub fn notice(kind: &str, text: &str) -> String {
    let role = if kind == "error" { "alert" } else { "status" };
    format!("<div class=\"notice {kind}\" role=\"{role}\"><p>{}</p></div>", escape(text))
}

/// A table with a caption for screen readers, scrolling sideways when
/// narrow. Cells are HTML the caller escaped.
pub fn table(caption: &str, headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!(
        "<div class=\"scroll\" tabindex=\"0\" role=\"region\" aria-label=\"{c}\"><table><caption class=\"skip\">{c}</caption><thead><tr>",
        c = escape(caption)
    );
    for h in headers {
        let _ = write!(out, "<th scope=\"col\">{}</th>", escape(h));
    }
    out.push_str("</tr></thead><tbody>");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{cell}</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div>");
    out
}

/// A one-button form posting to `action` with the CSRF token.
pub fn button_form(action: &str, csrf: &str, label: &str, class: &str, hidden: &[(&str, &str)]) -> String {
    let mut fields = String::new();
    for (name, value) in hidden {
        let _ = write!(fields, "<input type=\"hidden\" name=\"{}\" value=\"{}\">", escape(name), escape(value));
    }
    format!(
        "<form class=\"inline\" method=\"post\" action=\"{}\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">{fields}\
         <button type=\"submit\" class=\"{class}\">{}</button></form>",
        escape(action),
        escape(csrf),
        escape(label)
    )
}

/// Unix seconds as a time for people: `2026-12-04 08:15 UTC`.
pub fn when(at: i64) -> String {
    let text = crate::audit_sink::rfc3339(at);
    format!("{} {} UTC", &text[..10], &text[11..16])
}

/// A coloured tag.
pub fn tag(colour: &str, text: &str) -> String {
    format!("<span class=\"tag {colour}\">{}</span>", escape(text))
}
