//! The console at `/console`, for ops (`ops`: look only), the service desk
//! (`service-desk`: users and workstations) and IT (`admin`: also
//! applications). It needs a passkey or security key sign-in; a change also
//! needs that sign-in to be recent (`console.fresh_sign_in`), comes with a
//! token bound to the session (CSRF) from a page of this origin, and goes
//! through the same [`Admin`] service as the CLI, audited as
//! `console:USERNAME`.
//!
//! Pages are server-rendered and work without JavaScript; only the passkey
//! sign-in button needs the browser's WebAuthn, as everywhere.

pub mod figures;
pub mod view;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use wardkey_core::client::{Client, ClientAuth, GrantType};
use wardkey_core::keys::SigningAlg;
use wardkey_core::secret::{constant_time_eq, digest, digest_b64, new_secret};
use wardkey_core::session::{ACR_PASSKEY, Session, acr_meets};
use wardkey_core::user::User;
use wardkey_store::AuditFilter;

use self::figures::{Dashboard, day_and_month_start, hours, saved_by_day_chart, secs, ward_time_chart};
use self::view::{Section, Viewer, button_form, notice, page, table, tag, when};
use crate::admin::{Admin, AdminError};
use crate::cookies::CookieName;
use crate::oidc::authorize::current_session;
use crate::pages::{escape, see_other};
use crate::params::Params;
use crate::state::AppState;

/// How long an invite made in the console works.
const INVITE_VALID_FOR: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Audit records per page of the audit view.
const AUDIT_PAGE: u32 = 100;

/// The console's routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/console", get(dashboard))
        .route("/console/sign-in", get(sign_in))
        .route("/console/users", get(users))
        .route("/console/users/{username}", get(user_page))
        .route("/console/users/{username}/{action}", post(user_action))
        .route("/console/workstations", get(workstations).post(enrol_workstation))
        .route("/console/workstations/{name}/{action}", post(workstation_action))
        .route("/console/clients", get(clients).post(add_client))
        .route("/console/audit", get(audit))
}

/// A console role, from the user's role codes; the strongest wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Look only.
    Ops,
    /// Users and workstations.
    ServiceDesk,
    /// Everything, applications too.
    Admin,
}

impl Role {
    /// The strongest console role among `roles`.
    pub fn of(roles: &[String]) -> Option<Role> {
        roles
            .iter()
            .filter_map(|r| match r.as_str() {
                "ops" => Some(Role::Ops),
                "service-desk" => Some(Role::ServiceDesk),
                "admin" => Some(Role::Admin),
                _ => None,
            })
            .max()
    }

    fn word(self) -> &'static str {
        match self {
            Role::Ops => "ops, view only",
            Role::ServiceDesk => "service desk",
            Role::Admin => "admin",
        }
    }
}

/// The signed-in operator of a request.
struct Operator {
    user: User,
    role: Role,
    /// The session's sign-in is recent enough for changes.
    fresh: bool,
    /// The anti-forgery token of this session's forms.
    csrf: String,
}

impl Operator {
    fn actor(&self) -> String {
        format!("console:{}", self.user.username)
    }

    fn viewer(&self) -> Viewer<'_> {
        Viewer { username: &self.user.username, role: self.role.word() }
    }

    fn may(&self, need: Role) -> bool {
        self.role >= need
    }
}

/// What stands in a request's way, as the response to give instead
/// (boxed: a response is large, and the way through is the common case).
type Stop = Box<Response>;

/// A refusal as a console page with a way on.
fn refusal(status: StatusCode, title: &str, text: &str, link: (&str, &str)) -> Response {
    let body = format!("{}<p><a href=\"{}\">{}</a></p>", notice("error", text), escape(link.0), escape(link.1));
    (status, page(title, Section::None, None, &body)).into_response()
}

/// The operator of this request, or the page that stands in the way: the
/// sign-in page, or a refusal for a signed-in person with no console role.
impl FromRequestParts<AppState> for Operator {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        operator(state, &parts.headers).await.map_err(|stop| *stop)
    }
}

async fn operator(state: &AppState, headers: &HeaderMap) -> Result<Operator, Stop> {
    let to_sign_in = || Box::new(see_other("/console/sign-in"));
    let session: Session = match current_session(state, headers).await {
        Ok(Some(s)) => s,
        Ok(None) => return Err(to_sign_in()),
        Err(e) => return Err(Box::new(e.into_response())),
    };
    if !acr_meets(&session.acr, Some(ACR_PASSKEY)) {
        return Err(Box::new(see_other("/console/sign-in?level=1")));
    }
    let user = match state.store.user_by_id(&session.user_id).await {
        Ok(Some(u)) if !u.disabled => u,
        Ok(_) => return Err(to_sign_in()),
        Err(e) => return Err(Box::new(crate::error::PageError::from(e).into_response())),
    };
    let Some(role) = Role::of(&user.roles) else {
        tracing::info!(user = %user.username, "console refused: no console role");
        return Err(Box::new(refusal(
            StatusCode::FORBIDDEN,
            "No access to the console",
            &format!(
                "You are signed in as {}, but your account has no console role. The console is for IT operations \
                 (role ops), the service desk (service-desk) and administrators (admin). If you need it, ask an \
                 administrator to give you a role.",
                user.username
            ),
            ("/logout", "Sign out"),
        )));
    };
    let cookie = state.cookies.read(headers, CookieName::Session).unwrap_or_default();
    let csrf = digest_b64(&format!("wardkey-console-form:{cookie}"));
    let fresh = state.now() - session.auth_time <= state.settings.console.fresh_sign_in.as_secs() as i64;
    Ok(Operator { user, role, fresh, csrf })
}

/// The operator of a change: signed in as for any page, with `need` or a
/// stronger role, a recent sign-in, this session's form token, and no
/// other site's `Origin`.
async fn changer(state: &AppState, headers: &HeaderMap, params: &Params, need: Role) -> Result<Operator, Stop> {
    let op = operator(state, headers).await?;
    // Browsers say where a form came from: `Sec-Fetch-Site`, and `Origin`
    // (which is "null" under this server's `Referrer-Policy: no-referrer`).
    // Either one naming another site is enough to refuse; the token is what
    // a request with neither must carry.
    let text = |name| headers.get(name).and_then(|v: &axum::http::HeaderValue| v.to_str().ok());
    let origin_ok = text(header::ORIGIN).is_none_or(|o| o == "null" || *o == *state.issuer)
        && text(axum::http::HeaderName::from_static("sec-fetch-site"))
            .is_none_or(|s| matches!(s, "same-origin" | "none"));
    let token_ok = params.get("csrf").is_some_and(|t| constant_time_eq(t, &op.csrf));
    if !origin_ok || !token_ok {
        return Err(Box::new(refusal(
            StatusCode::FORBIDDEN,
            "This form has expired",
            "This form had expired or did not come from the console, so nothing was changed. Open the page again and \
             repeat what you were doing.",
            ("/console", "Back to the console"),
        )));
    }
    if !op.may(need) {
        return Err(Box::new(refusal(
            StatusCode::FORBIDDEN,
            "You cannot change this",
            &format!(
                "Your console role ({}) can look but not make this change, so nothing was changed. Ask the service \
                 desk or an administrator.",
                op.role.word()
            ),
            ("/console", "Back to the console"),
        )));
    }
    if !op.fresh {
        return Err(Box::new(refusal(
            StatusCode::FORBIDDEN,
            "Sign in again to make changes",
            &format!(
                "Changes need a sign-in within the last {}, so nothing was changed. Sign in again with your passkey \
                 or security key, then repeat the change.",
                humantime::format_duration(state.settings.console.fresh_sign_in)
            ),
            ("/console/sign-in?again=1", "Sign in again"),
        )));
    }
    Ok(op)
}

/// The operator and form of a change: [`form`], then [`changer`].
async fn change(state: &AppState, headers: &HeaderMap, body: &[u8], need: Role) -> Result<(Operator, Params), Stop> {
    let params = form(headers, body)?;
    let op = changer(state, headers, &params, need).await?;
    Ok((op, params))
}

fn form(headers: &HeaderMap, body: &[u8]) -> Result<Params, Stop> {
    Params::from_form(headers, body).map_err(|e| {
        Box::new(refusal(
            StatusCode::BAD_REQUEST,
            "The form was not sent correctly",
            &format!("The form was not sent correctly ({}), so nothing was changed.", e.0),
            ("/console", "Back to the console"),
        ))
    })
}

/// An admin error as the notice above the page it came from.
fn failed(e: &AdminError) -> String {
    match e {
        AdminError::Store(inner) => {
            tracing::error!(error = %inner, "console change failed");
            notice("error", "The change could not be saved because the store did not answer. Try again in a minute.")
        }
        other => notice("error", &format!("Nothing was changed: {other}.")),
    }
}

fn render(op: &Operator, title: &str, section: Section, body: &str) -> Response {
    page(title, section, Some(&op.viewer()), body).into_response()
}

// ---------------------------------------------------------------------------
// Sign-in

#[derive(Deserialize)]
struct SignInQuery {
    level: Option<String>,
    again: Option<String>,
}

/// `GET /console/sign-in`: the passkey button, and why it is needed.
async fn sign_in(State(state): State<AppState>, Query(q): Query<SignInQuery>) -> Response {
    let why = if q.level.is_some() {
        notice(
            "once",
            "You are signed in with a password or badge. The console needs a passkey or security key: sign in with one below.",
        )
    } else if q.again.is_some() {
        notice("once", "Sign in again with your passkey or security key to make changes.")
    } else {
        String::new()
    };
    let unavailable = if state.passkeys.enabled() {
        ""
    } else {
        "<p>Passkeys are not available on this server's address, so the console cannot be used here. Call IT.</p>"
    };
    let body = format!(
        "{why}<p>The console is for IT operations, the service desk and administrators. Sign in with your passkey \
         or security key.</p>{unavailable}\
         <section id=\"passkey-sign-in\" data-request=\"\" data-next=\"/console\" hidden>\
         <button type=\"button\">Sign in with a passkey or security key</button>\
         <div class=\"notice error\" role=\"alert\" id=\"passkey-error\" tabindex=\"-1\" hidden><p></p></div></section>\
         <noscript><p>Signing in with a passkey needs JavaScript in this browser.</p></noscript>\
         <p>No passkey yet? Ask the service desk for an invite link.</p>\
         <script src=\"/static/webauthn.js\" defer></script>"
    );
    page("Sign in to the console", Section::None, None, &body).into_response()
}

// ---------------------------------------------------------------------------
// Dashboard

/// `GET /console`: login time per ward today and time saved today and this
/// month, from the audit log's `signin` records.
async fn dashboard(State(state): State<AppState>, op: Operator) -> Response {
    let (today, month, days) = day_and_month_start(state.now());
    let filter =
        AuditFilter { event: Some("signin".into()), since: Some(month), limit: 2_000_000, ..AuditFilter::default() };
    let records = match state.store.search_audit(&filter).await {
        Ok(r) => r,
        Err(e) => return crate::error::PageError::from(e).into_response(),
    };
    let d = Dashboard::from_records(&records, today, month);
    let (saved_today, saved_month) = d.total_saved();
    let signins_today: u64 = d.today.values().map(|w| w.count()).sum();
    let mut body = format!(
        "<div class=\"stats\">\
         <div class=\"card stat\" id=\"signins-today\"><span>Sign-ins today</span><strong>{signins_today}</strong></div>\
         <div class=\"card stat\" id=\"saved-today\"><span>Time saved today</span><strong>{}</strong></div>\
         <div class=\"card stat\" id=\"saved-month\"><span>Time saved this month</span><strong>{}</strong></div></div>",
        hours(saved_today),
        hours(saved_month)
    );
    body.push_str("<h2>Login time by ward, today</h2><div class=\"card\">");
    body.push_str(&ward_time_chart(&d.today, "Login time by ward today: median (p50) and 95th percentile (p95)"));
    body.push_str("</div>");
    let rows: Vec<Vec<String>> = d
        .month
        .iter()
        .map(|(ward, m)| {
            let t = d.today.get(ward);
            let methods =
                m.by_method.iter().map(|(k, v)| format!("{} {v}", method_word(k))).collect::<Vec<_>>().join(", ");
            vec![
                escape(ward),
                t.map_or(0, |t| t.count()).to_string(),
                t.and_then(|t| t.quantile(0.5)).map_or("–".into(), secs),
                t.and_then(|t| t.quantile(0.95)).map_or("–".into(), secs),
                hours(t.map_or(0.0, |t| t.saved)),
                m.count().to_string(),
                hours(m.saved),
                methods,
            ]
        })
        .collect();
    body.push_str("<h2>By ward</h2>");
    body.push_str(&table(
        "Sign-ins and time saved by ward",
        &[
            "Ward",
            "Sign-ins today",
            "p50 today",
            "p95 today",
            "Saved today",
            "Sign-ins this month",
            "Saved this month",
            "Methods this month",
        ],
        &rows,
    ));
    body.push_str("<h2>Time saved each day this month</h2><div class=\"card\">");
    body.push_str(&saved_by_day_chart(&d.saved_by_day, days, "Hours saved on each day of this month"));
    body.push_str(&format!(
        "</div><p>Time saved is, for each sign-in, what a login took before Wardkey ({} for a badge, {} for a \
         password, {} for a passkey) minus what this one took. \"none\" is sign-ins in a browser, at no ward PC.</p>",
        humantime::format_duration(state.settings.metrics.badge_baseline),
        humantime::format_duration(state.settings.metrics.password_baseline),
        humantime::format_duration(state.settings.metrics.passkey_baseline),
    ));
    render(&op, "Dashboard", Section::Dashboard, &body)
}

// ---------------------------------------------------------------------------
// Users

#[derive(Deserialize)]
struct UserQuery {
    #[serde(default)]
    q: String,
}

fn admin(state: &AppState) -> Admin {
    Admin::new(state.store.clone(), state.clock.clone(), state.settings.clone())
}

/// `GET /console/users?q=`: find a person by username, name or email.
async fn users(State(state): State<AppState>, op: Operator, Query(q): Query<UserQuery>) -> Response {
    let mut body = format!(
        "<form method=\"get\" action=\"/console/users\" role=\"search\"><label for=\"q\">Find a user by username, \
         name or email</label><input type=\"search\" id=\"q\" name=\"q\" value=\"{}\" autofocus>\
         <button type=\"submit\">Search</button></form>",
        escape(&q.q)
    );
    match admin(&state).search_users(&q.q, 100).await {
        Ok(found) if found.is_empty() => body.push_str("<p>No user matches.</p>"),
        Ok(found) => {
            let rows: Vec<Vec<String>> = found
                .iter()
                .map(|(u, locked)| {
                    let status = if u.disabled {
                        tag("grey", "disabled")
                    } else if *locked {
                        tag("red", "locked")
                    } else {
                        tag("green", "active")
                    };
                    vec![
                        format!(
                            "<a href=\"/console/users/{}\">{}</a>",
                            escape(&url_segment(&u.username)),
                            escape(&u.username)
                        ),
                        escape(u.name.as_deref().unwrap_or("")),
                        escape(u.email.as_deref().unwrap_or("")),
                        status,
                        escape(&u.source),
                    ]
                })
                .collect();
            body.push_str(&table("Users found", &["Username", "Name", "Email", "Status", "Source"], &rows));
        }
        Err(e) => body.push_str(&failed(&e)),
    }
    render(&op, "Users", Section::Users, &body)
}

/// `GET /console/users/{username}`.
async fn user_page(State(state): State<AppState>, op: Operator, Path(username): Path<String>) -> Response {
    user_view(&state, &op, &username, "").await
}

async fn user_view(state: &AppState, op: &Operator, username: &str, message: &str) -> Response {
    let detail = match admin(state).user_detail(username).await {
        Ok(d) => d,
        Err(e) => {
            let body = format!("{}<p><a href=\"/console/users\">Find another user</a></p>", failed(&e));
            return (StatusCode::NOT_FOUND, render(op, "User not found", Section::Users, &body)).into_response();
        }
    };
    let u = &detail.user;
    let base = format!("/console/users/{}", url_segment(&u.username));
    let mut status = vec![if u.disabled { tag("grey", "disabled") } else { tag("green", "enabled") }];
    if detail.password_locked {
        status.push(tag("red", "locked: too many wrong passwords"));
    }
    if detail.badge_locked {
        status.push(tag("red", "badge locked: too many wrong PINs"));
    }
    let mut body = String::from(message);
    body.push_str(&format!(
        "<div class=\"card\"><p id=\"status\">{}</p><dl><dt>Name</dt><dd>{}</dd><dt>Email</dt><dd>{}</dd>\
         <dt>Source</dt><dd>{}</dd><dt>Roles</dt><dd>{}</dd></dl></div>",
        status.join(" "),
        escape(u.name.as_deref().unwrap_or("–")),
        escape(u.email.as_deref().unwrap_or("–")),
        escape(&u.source),
        escape(&if u.roles.is_empty() { "–".to_string() } else { u.roles.join(", ") }),
    ));
    if op.may(Role::ServiceDesk) {
        let csrf = &op.csrf;
        let mut actions = String::new();
        if detail.locked() {
            actions.push_str(&button_form(&format!("{base}/unlock"), csrf, "Unlock", "", &[]));
        }
        if u.disabled {
            actions.push_str(&button_form(&format!("{base}/enable"), csrf, "Enable", "", &[]));
        } else {
            actions.push_str(&button_form(&format!("{base}/disable"), csrf, "Disable", "warning", &[]));
            actions.push_str(&button_form(&format!("{base}/invite"), csrf, "Issue an invite link", "secondary", &[]));
        }
        actions.push_str(&button_form(&format!("{base}/sessions"), csrf, "End all sessions", "secondary", &[]));
        if !detail.badges.is_empty() {
            actions.push_str(&button_form(&format!("{base}/badges"), csrf, "Revoke badges", "warning", &[]));
        }
        body.push_str(&format!("<h2>Actions</h2><div class=\"card\">{actions}</div>"));
        body.push_str(&format!(
            "<h2>Reset PIN</h2><div class=\"card\"><form method=\"post\" action=\"{base}/pin\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <label for=\"pin\">New PIN ({min} to 32 digits; the person should choose it)</label>\
             <input type=\"password\" id=\"pin\" name=\"pin\" inputmode=\"numeric\" autocomplete=\"new-password\" required>\
             <button type=\"submit\">Set PIN</button></form></div>",
            base = escape(&base),
            csrf = escape(csrf),
            min = state.settings.tap.pin_min_length,
        ));
    } else {
        body.push_str("<p>Your role can look but not change users.</p>");
    }
    let key_rows: Vec<Vec<String>> = detail
        .keys
        .iter()
        .map(|k| {
            let id = URL_SAFE_NO_PAD.encode(&k.id);
            let remove = if op.may(Role::ServiceDesk) {
                button_form(&format!("{base}/remove-key"), &op.csrf, "Remove", "secondary", &[("id", &id)])
            } else {
                String::new()
            };
            vec![
                escape(&k.name),
                escape(k.kind.as_str()),
                when(k.created_at),
                k.last_used_at.map_or("never".into(), when),
                remove,
            ]
        })
        .collect();
    body.push_str("<h2>Passkeys and security keys</h2>");
    body.push_str(&if key_rows.is_empty() {
        "<p>None.</p>".to_string()
    } else {
        table("Keys", &["Name", "Kind", "Added", "Last used", "Action"], &key_rows)
    });
    let badge_rows: Vec<Vec<String>> = detail
        .badges
        .iter()
        .map(|b| vec![when(b.created_at), b.failed_pins.to_string(), URL_SAFE_NO_PAD.encode(&b.digest[..6])])
        .collect();
    body.push_str("<h2>Badges</h2>");
    body.push_str(&if badge_rows.is_empty() {
        "<p>None.</p>".to_string()
    } else {
        table("Badges", &["Enrolled", "Wrong PINs", "Reference"], &badge_rows)
    });
    body.push_str(&format!(
        "<p><a href=\"/console/audit?subject={}\">This user's audit records</a></p>",
        escape(&url_segment(&u.username))
    ));
    render(op, &u.username, Section::Users, &body)
}

/// `POST /console/users/{username}/{action}`.
async fn user_action(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((username, action)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let (op, params) = match change(&state, &headers, &body, Role::ServiceDesk).await {
        Ok(ready) => ready,
        Err(r) => return *r,
    };
    let admin = admin(&state);
    let actor = op.actor();
    // Whoever may change an account could take it over (an invite adds
    // their own passkey to it), so only an administrator changes an
    // account that itself has a console role.
    if op.role < Role::Admin
        && let Ok(target) = admin.user(&username).await
        && Role::of(&target.roles).is_some()
    {
        return refusal(
            StatusCode::FORBIDDEN,
            "Only an administrator can change this account",
            &format!(
                "{username} has a console role, so only an administrator can change their account: nothing was \
                 changed. Ask an administrator."
            ),
            ("/console/users", "Back to users"),
        );
    }
    let outcome: Result<String, AdminError> = match action.as_str() {
        "unlock" => admin
            .unlock(&actor, &username)
            .await
            .map(|()| format!("{username} is unlocked: their password and badge work again.")),
        "disable" => admin
            .set_disabled(&actor, &username, true)
            .await
            .map(|()| format!("{username} is disabled and every session of theirs has ended.")),
        "enable" => admin.set_disabled(&actor, &username, false).await.map(|()| format!("{username} is enabled.")),
        "sessions" => admin
            .end_sessions(&actor, &username)
            .await
            .map(|()| format!("Every session of {username} ends within a second; their applications are told.")),
        "badges" => {
            admin.revoke_badges(&actor, &username).await.map(|n| format!("{n} badge(s) of {username} revoked."))
        }
        "pin" => {
            let pin = params.get("pin").unwrap_or("");
            admin
                .set_pin(&actor, &username, pin)
                .await
                .map(|()| format!("A new PIN is set for {username}, and their badge works again."))
        }
        "invite" => match admin.invite(&actor, &username, INVITE_VALID_FOR).await {
            Ok(invite) => {
                let text = format!(
                    "Invite link for {username}, valid once until {}. Give it to them in person or over a channel you \
                     trust; it is not shown again:",
                    when(invite.expires_at)
                );
                let message = format!(
                    "<div class=\"notice once\" role=\"status\"><p>{}</p><p><code id=\"invite-link\">{}</code></p></div>",
                    escape(&text),
                    escape(&invite.url)
                );
                state.directory.changed().await;
                return user_view(&state, &op, &username, &message).await;
            }
            Err(e) => Err(e),
        },
        "remove-key" => {
            let shown = params.get("id").unwrap_or("");
            match URL_SAFE_NO_PAD.decode(shown) {
                Ok(id) => {
                    admin.remove_key(&actor, &username, &id, shown).await.map(|()| "The key is removed.".to_string())
                }
                Err(_) => Err(AdminError::NotFound { kind: "key", name: shown.to_string() }),
            }
        }
        other => Err(AdminError::Refused(format!("the console has no action {other:?}"))),
    };
    state.directory.changed().await;
    let message = match &outcome {
        Ok(text) => notice("done", text),
        Err(e) => failed(e),
    };
    let response = user_view(&state, &op, &username, &message).await;
    match outcome {
        Ok(_) => response,
        Err(AdminError::NotFound { .. }) => (StatusCode::NOT_FOUND, response).into_response(),
        Err(AdminError::Store(_)) => (StatusCode::SERVICE_UNAVAILABLE, response).into_response(),
        Err(_) => (StatusCode::UNPROCESSABLE_ENTITY, response).into_response(),
    }
}

// ---------------------------------------------------------------------------
// Workstations

/// `GET /console/workstations`.
async fn workstations(State(state): State<AppState>, op: Operator) -> Response {
    workstations_view(&state, &op, "").await
}

async fn workstations_view(state: &AppState, op: &Operator, message: &str) -> Response {
    let mut body = String::from(message);
    if op.may(Role::ServiceDesk) {
        body.push_str(&format!(
            "<h2>Enrol a workstation</h2><div class=\"card\"><form method=\"post\" action=\"/console/workstations\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <label for=\"ws-name\">Name (its hostname or place)</label><input type=\"text\" id=\"ws-name\" name=\"name\" required>\
             <label for=\"ws-ward\">Ward</label><input type=\"text\" id=\"ws-ward\" name=\"ward\" required>\
             <button type=\"submit\">Enrol</button></form></div>",
            escape(&op.csrf)
        ));
    }
    match state.store.list_workstations().await {
        Ok(list) => {
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|w| {
                    let action = match (op.may(Role::ServiceDesk), w.enabled) {
                        (false, _) => String::new(),
                        (true, true) => button_form(
                            &format!("/console/workstations/{}/disable", url_segment(&w.name)),
                            &op.csrf,
                            "Disable",
                            "warning",
                            &[],
                        ),
                        (true, false) => button_form(
                            &format!("/console/workstations/{}/enable", url_segment(&w.name)),
                            &op.csrf,
                            "Enable",
                            "",
                            &[],
                        ),
                    };
                    vec![
                        escape(&w.name),
                        escape(&w.ward),
                        w.enrolled_at.map_or_else(|| tag("grey", "waiting for its code"), when),
                        if w.enabled { tag("green", "enabled") } else { tag("red", "disabled") },
                        action,
                    ]
                })
                .collect();
            body.push_str("<h2>Workstations</h2>");
            body.push_str(&table("Workstations", &["Name", "Ward", "Enrolled", "Status", "Action"], &rows));
        }
        Err(e) => body.push_str(&failed(&AdminError::Store(e))),
    }
    render(op, "Workstations", Section::Workstations, &body)
}

/// `POST /console/workstations`: enrol, showing the one-time code.
async fn enrol_workstation(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let (op, params) = match change(&state, &headers, &body, Role::ServiceDesk).await {
        Ok(ready) => ready,
        Err(r) => return *r,
    };
    let (name, ward) = (params.get("name").unwrap_or("").trim(), params.get("ward").unwrap_or("").trim());
    match admin(&state).enrol_workstation(&op.actor(), name, ward).await {
        Ok(e) => {
            state.directory.changed().await;
            let message = format!(
                "<div class=\"notice once\" role=\"status\"><p>{} on {} is ready to enrol. Its one-time code, valid \
                 until {} and not shown again:</p><p><code id=\"enrolment-code\">{}</code></p><p>On the workstation \
                 run <code>wardkey-agent enrol --server {} --code {}</code></p></div>",
                escape(&e.workstation.name),
                escape(&e.workstation.ward),
                when(e.expires_at),
                escape(&e.code),
                escape(&state.issuer),
                escape(&e.code),
            );
            workstations_view(&state, &op, &message).await
        }
        Err(e) => {
            let response = workstations_view(&state, &op, &failed(&e)).await;
            (StatusCode::UNPROCESSABLE_ENTITY, response).into_response()
        }
    }
}

/// `POST /console/workstations/{name}/{enable|disable}`.
async fn workstation_action(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((name, action)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let (op, _) = match change(&state, &headers, &body, Role::ServiceDesk).await {
        Ok(ready) => ready,
        Err(r) => return *r,
    };
    let enabled = match action.as_str() {
        "enable" => true,
        "disable" => false,
        other => {
            let message = failed(&AdminError::Refused(format!("the console has no action {other:?}")));
            return (StatusCode::NOT_FOUND, workstations_view(&state, &op, &message).await).into_response();
        }
    };
    let message = match admin(&state).set_workstation_enabled(&op.actor(), &name, enabled).await {
        Ok(()) => {
            state.directory.changed().await;
            notice(
                "done",
                &format!("{name} is {}.", if enabled { "enabled" } else { "disabled: its taps are refused" }),
            )
        }
        Err(e) => failed(&e),
    };
    workstations_view(&state, &op, &message).await
}

// ---------------------------------------------------------------------------
// Applications

/// `GET /console/clients`.
async fn clients(State(state): State<AppState>, op: Operator) -> Response {
    clients_view(&state, &op, "").await
}

async fn clients_view(state: &AppState, op: &Operator, message: &str) -> Response {
    let mut body = String::from(message);
    if op.may(Role::Admin) {
        body.push_str(&format!(
            "<h2>Add an application</h2><div class=\"card\"><form method=\"post\" action=\"/console/clients\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <label for=\"client-id\">Client ID</label><input type=\"text\" id=\"client-id\" name=\"client_id\" required>\
             <label for=\"redirect-uri\">Redirect URI</label><input type=\"text\" id=\"redirect-uri\" name=\"redirect_uri\" required>\
             <label for=\"client-type\">Type</label><select id=\"client-type\" name=\"type\">\
             <option value=\"confidential\">Confidential: a server, with a secret</option>\
             <option value=\"public\">Public: a desktop or single-page app, with PKCE</option></select>\
             <button type=\"submit\">Add</button></form>\
             <p>For private_key_jwt, back-channel logout or token exchange, use <code>wardkey client add</code>.</p></div>",
            escape(&op.csrf)
        ));
    }
    match state.store.list_clients().await {
        Ok(list) => {
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|c| {
                    let auth = match c.auth {
                        ClientAuth::None => "public",
                        ClientAuth::Secret { .. } => "secret",
                        ClientAuth::Jwks { .. } | ClientAuth::JwksUri { .. } => "private_key_jwt",
                    };
                    vec![
                        escape(&c.client_id),
                        auth.into(),
                        escape(&c.redirect_uris.join(" ")),
                        escape(&c.grant_types.iter().map(|g| g.as_str()).collect::<Vec<_>>().join(", ")),
                        escape(c.min_acr.as_deref().unwrap_or("–")),
                    ]
                })
                .collect();
            body.push_str("<h2>Registered applications</h2>");
            if rows.is_empty() {
                body.push_str(
                    "<p>No applications yet. An administrator adds them here or with <code>wardkey client add</code>.</p>",
                );
            } else {
                body.push_str(&table(
                    "Applications",
                    &["Client ID", "Authentication", "Redirect URIs", "Grants", "Minimum acr"],
                    &rows,
                ));
            }
        }
        Err(e) => body.push_str(&failed(&AdminError::Store(e))),
    }
    render(op, "Applications", Section::Clients, &body)
}

/// `POST /console/clients`: add, showing the secret once.
async fn add_client(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let (op, params) = match change(&state, &headers, &body, Role::Admin).await {
        Ok(ready) => ready,
        Err(r) => return *r,
    };
    let client_id = params.get("client_id").unwrap_or("").trim().to_string();
    let redirect = params.get("redirect_uri").unwrap_or("").trim().to_string();
    let public = params.get("type") == Some("public");
    // The CLI's rules (`wardkey client add`): a client id of safe
    // characters; an https redirect URI, or http on loopback, with no
    // fragment or wildcard.
    let invalid = wardkey_core::client::validate_client_id(&client_id)
        .and_then(|()| wardkey_core::client::validate_redirect_uri("redirect URI", &redirect));
    if let Err(why) = invalid {
        let response = clients_view(&state, &op, &failed(&AdminError::Refused(why.to_string()))).await;
        return (StatusCode::UNPROCESSABLE_ENTITY, response).into_response();
    }
    let (auth, secret) = if public {
        (ClientAuth::None, None)
    } else {
        let secret = new_secret();
        (ClientAuth::Secret { digest: digest(&secret).to_vec() }, Some(secret))
    };
    let client = Client {
        client_id: client_id.clone(),
        auth,
        redirect_uris: vec![redirect],
        post_logout_redirect_uris: Vec::new(),
        backchannel_logout_uri: None,
        grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
        start_url: None,
        id_token_alg: SigningAlg::RS256,
        created_at: state.now(),
        min_acr: None,
    };
    let kind = if public { "none" } else { "client_secret" };
    match admin(&state).add_client(&op.actor(), &client, kind).await {
        Ok(()) => {
            state.directory.changed().await;
            let message = match secret {
                Some(s) => format!(
                    "<div class=\"notice once\" role=\"status\"><p>{} is added. Its client secret, shown only now: \
                     store it in the application's configuration.</p><p><code id=\"client-secret\">{}</code></p></div>",
                    escape(&client_id),
                    escape(&s)
                ),
                None => notice("done", &format!("{client_id} is added as a public client (PKCE, no secret).")),
            };
            clients_view(&state, &op, &message).await
        }
        Err(e) => (StatusCode::UNPROCESSABLE_ENTITY, clients_view(&state, &op, &failed(&e)).await).into_response(),
    }
}

// ---------------------------------------------------------------------------
// Audit

#[derive(Deserialize)]
struct AuditQuery {
    event: Option<String>,
    actor: Option<String>,
    subject: Option<String>,
    since: Option<String>,
    before: Option<i64>,
}

/// `GET /console/audit`: newest first, filtered, 100 a page.
async fn audit(State(state): State<AppState>, op: Operator, Query(q): Query<AuditQuery>) -> Response {
    let nonempty = |v: &Option<String>| v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_string);
    let since_text = nonempty(&q.since);
    let mut message = String::new();
    let since = match since_text.as_deref() {
        None => None,
        Some(day) => match humantime::parse_rfc3339_weak(&format!("{day}T00:00:00Z")) {
            Ok(t) => Some(t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)),
            Err(_) => {
                message = notice("error", "The date was not understood: use the date picker, or YYYY-MM-DD.");
                None
            }
        },
    };
    let filter = AuditFilter {
        event: nonempty(&q.event),
        actor: nonempty(&q.actor),
        subject: nonempty(&q.subject),
        since,
        before_seq: q.before,
        limit: AUDIT_PAGE,
        ..AuditFilter::default()
    };
    let value = |v: &Option<String>| escape(v.as_deref().unwrap_or(""));
    let mut body = format!(
        "{message}<form method=\"get\" action=\"/console/audit\" class=\"card\">\
         <label for=\"f-event\">Event starts with (for example signin, tap., user.)</label><input type=\"text\" id=\"f-event\" name=\"event\" value=\"{}\">\
         <label for=\"f-actor\">Who acted</label><input type=\"text\" id=\"f-actor\" name=\"actor\" value=\"{}\">\
         <label for=\"f-subject\">About (username or workstation)</label><input type=\"text\" id=\"f-subject\" name=\"subject\" value=\"{}\">\
         <label for=\"f-since\">From date</label><input type=\"date\" id=\"f-since\" name=\"since\" value=\"{}\">\
         <button type=\"submit\">Filter</button> <a href=\"/console/audit\">Clear filters</a></form>",
        value(&filter.event),
        value(&filter.actor),
        value(&filter.subject),
        value(&since_text),
    );
    match state.store.search_audit(&filter).await {
        Ok(records) => {
            let rows: Vec<Vec<String>> = records
                .iter()
                .map(|r| {
                    vec![
                        r.seq.to_string(),
                        when(r.event.at),
                        escape(&r.event.event),
                        escape(&r.event.actor),
                        escape(&r.event.subject),
                        escape(&r.event.detail.to_string()),
                    ]
                })
                .collect();
            if rows.is_empty() {
                body.push_str("<p>No audit records match.</p>");
            } else {
                body.push_str(&table(
                    "Audit records, newest first",
                    &["#", "When", "Event", "Who", "About", "Detail"],
                    &rows,
                ));
            }
            if records.len() == AUDIT_PAGE as usize
                && let Some(last) = records.last()
            {
                let mut next = url::form_urlencoded::Serializer::new(String::new());
                for (k, v) in [
                    ("event", &filter.event),
                    ("actor", &filter.actor),
                    ("subject", &filter.subject),
                    ("since", &since_text),
                ] {
                    if let Some(v) = v {
                        next.append_pair(k, v);
                    }
                }
                next.append_pair("before", &last.seq.to_string());
                body.push_str(&format!(
                    "<p><a href=\"/console/audit?{}\">Older records</a></p>",
                    escape(&next.finish())
                ));
            }
        }
        Err(e) => body.push_str(&failed(&AdminError::Store(e))),
    }
    render(&op, "Audit log", Section::Audit, &body)
}

/// A sign-in method in words.
fn method_word(method: &str) -> String {
    match method {
        "badge" => "badge".into(),
        "badge_pin" => "badge + PIN".into(),
        "password" => "password".into(),
        "passkey" => "passkey or key".into(),
        other => escape(other),
    }
}

/// `text` as one URL path segment.
fn url_segment(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>().replace('+', "%20")
}
