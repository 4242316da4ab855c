//! SCIM 2.0 provisioning (RFC 7643, RFC 7644) at `/scim/v2`, for Microsoft
//! Entra ID and other provisioners: Users (create, read, list with `eq`
//! filters and pagination, replace, PATCH, delete) and the discovery
//! resources; Groups (create, read, list, replace, PATCH of members and
//! name, delete), whose display names map to role codes (`[scim] roles`).
//!
//! A SCIM user is a Wardkey user with source `scim`; the provisioner owns
//! its username, name, email, employee number and enabled state, while
//! badges, PINs and keys stay Wardkey's. Writes go through the store's
//! `apply_user_changes`, the directory sync's one-transaction write, so a
//! user disabled here has their sessions ended (ward PCs lock, back-channel
//! logout) as when IT disables them in Active Directory. DELETE disables,
//! never deletes (source `scim:deleted`: gone for SCIM, kept for audit).
//!
//! PATCH is applied to the user's SCIM representation and the result read
//! back like a PUT, so every operation form (with a path, with a filter in
//! the path, with no path and an object) follows one set of rules.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use wardkey_core::secret::constant_time_eq;
use wardkey_core::user::{DirectoryRecord, SCIM, User, validate_email, validate_username};
use wardkey_store::{ScimGroup, UserChange};

use crate::error::ScimError;
use crate::state::AppState;

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const LIST: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// Where a user deleted over SCIM goes: disabled, out of SCIM's sight.
const DELETED: &str = "scim:deleted";
/// Most resources one page returns.
const MAX_COUNT: usize = 200;

/// The core User schema's attributes (RFC 7643 §4.1), canonical case.
/// Those Wardkey does not keep (title, phone numbers, …) are accepted and
/// not stored, as provisioners send them by default.
const USER_ATTRIBUTES: &[&str] = &[
    "userName",
    "name",
    "displayName",
    "nickName",
    "profileUrl",
    "title",
    "userType",
    "preferredLanguage",
    "locale",
    "timezone",
    "active",
    "password",
    "emails",
    "phoneNumbers",
    "ims",
    "photos",
    "addresses",
    "entitlements",
    "roles",
    "x509Certificates",
    "externalId",
];
/// The enterprise extension's attributes (RFC 7643 §4.3).
const ENTERPRISE_ATTRIBUTES: &[&str] =
    &["employeeNumber", "costCenter", "organization", "division", "department", "manager"];

/// `/scim/v2/…`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/scim/v2/Users", get(list_users).post(create_user))
        .route("/scim/v2/Users/{id}", get(get_user).put(replace_user).patch(patch_user).delete(delete_user))
        .route("/scim/v2/Groups", get(list_groups).post(create_group))
        .route("/scim/v2/Groups/{id}", get(get_group).put(replace_group).patch(patch_group).delete(delete_group))
        .route("/scim/v2/Users/.search", axum::routing::post(search_users))
        .route("/scim/v2/Groups/.search", axum::routing::post(search_groups))
        // Searching from the root covers every resource type.
        .route("/scim/v2/.search", axum::routing::post(search_all))
        .route("/scim/v2/ServiceProviderConfig", get(service_provider_config))
        .route("/scim/v2/ResourceTypes", get(resource_types))
        .route("/scim/v2/ResourceTypes/{id}", get(resource_type))
        .route("/scim/v2/Schemas", get(schemas))
        .route("/scim/v2/Schemas/{id}", get(schema))
        .route("/scim/v2/{*rest}", axum::routing::any(no_such_endpoint))
}

/// Anything else under `/scim/v2`: a SCIM 404, not a bare one.
async fn no_such_endpoint(Path(rest): Path<String>) -> ScimError {
    ScimError::NotFound(format!("/scim/v2/{rest} is not a SCIM endpoint of Wardkey: it serves Users and Groups"))
}

/// `attributes` / `excludedAttributes` (RFC 7644 §3.9): which top-level
/// attributes a response carries; `id`, `schemas` and `meta` always.
#[derive(Default)]
struct Projection {
    only: Option<Vec<String>>,
    except: Vec<String>,
}

impl Projection {
    fn from_query(query: &std::collections::HashMap<String, String>) -> Self {
        let list = |key: &str| {
            query
                .get(key)
                .map(|v| v.split(',').map(|a| a.trim().to_ascii_lowercase()).filter(|a| !a.is_empty()).collect())
        };
        Projection { only: list("attributes"), except: list("excludedAttributes").unwrap_or_default() }
    }

    fn apply(&self, mut v: Value) -> Value {
        if let Some(object) = v.as_object_mut() {
            object.retain(|key, _| {
                let key_lower = key.to_ascii_lowercase();
                let named =
                    |list: &[String]| list.iter().any(|a| a == &key_lower || a.starts_with(&format!("{key_lower}.")));
                matches!(key.as_str(), "id" | "schemas" | "meta")
                    || (self.only.as_ref().is_none_or(|only| named(only)) && !named(&self.except))
            });
        }
        v
    }
}

/// The provisioning client a request's bearer token names (`[scim] tokens`).
pub struct Provisioner(String);

impl FromRequestParts<AppState> for Provisioner {
    type Rejection = ScimError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ScimError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .ok_or(ScimError::Unauthorized)?;
        let digest: String = Sha256::digest(token.trim().as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
        // Every entry is compared, in constant time, so timing tells nothing.
        let mut found = None;
        for entry in &state.settings.scim.tokens {
            if constant_time_eq(&entry.sha256.to_ascii_lowercase(), &digest) {
                found = Some(entry.name.clone());
            }
        }
        found.map(Provisioner).ok_or(ScimError::Unauthorized)
    }
}

fn scim_json(status: StatusCode, body: &Value, version: Option<&str>) -> Response {
    let mut response = (status, [(header::CONTENT_TYPE, "application/scim+json")], body.to_string()).into_response();
    if let Some(v) = version.and_then(|v| HeaderValue::from_str(v).ok()) {
        response.headers_mut().insert(header::ETAG, v);
    }
    response
}

fn rfc3339(secs: i64) -> String {
    let secs = u64::try_from(secs).unwrap_or_default();
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs)).to_string()
}

/// The user as SCIM shows them, with `meta.version` (a weak ETag over the
/// content).
fn resource(state: &AppState, user: &User) -> (Value, String) {
    let mut v = json!({
        "schemas": [USER, ENTERPRISE],
        "id": user.id,
        "userName": user.username,
        "active": !user.disabled,
    });
    if let Some(id) = &user.external_id {
        v["externalId"] = id.clone().into();
    }
    if let Some(name) = &user.name {
        v["displayName"] = name.clone().into();
        v["name"] = json!({ "formatted": name });
    }
    if let Some(email) = &user.email {
        v["emails"] = json!([{ "value": email, "type": "work", "primary": true }]);
    }
    if !user.roles.is_empty() {
        v["roles"] = user.roles.iter().map(|r| json!({ "value": r })).collect();
    }
    if let Some(number) = &user.employee_number {
        v[ENTERPRISE] = json!({ "employeeNumber": number });
    }
    let hash = Sha256::digest(v.to_string().as_bytes());
    let version = format!("W/\"{}\"", hash.iter().take(8).map(|b| format!("{b:02x}")).collect::<String>());
    v["meta"] = json!({
        "resourceType": "User",
        "created": rfc3339(user.created_at),
        "lastModified": rfc3339(user.created_at),
        "location": state.url(&format!("/scim/v2/Users/{}", user.id)),
        "version": version,
    });
    (v, version)
}

fn parse_body(body: &Bytes) -> Result<Value, ScimError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ScimError::InvalidSyntax(format!("the request body is not JSON: {e}")))?;
    if !v.is_object() {
        return Err(ScimError::InvalidSyntax("the request body must be a JSON object".into()));
    }
    Ok(v)
}

/// A boolean, also as Entra ID has sent it: the strings "True" / "False".
fn boolean(v: &Value, what: &str) -> Result<bool, ScimError> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        other => Err(ScimError::InvalidValue(format!("{what} must be true or false, not {other}"))),
    }
}

fn text(v: &Value, what: &str) -> Result<Option<String>, ScimError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if s.trim().is_empty() => Ok(None),
        Value::String(s) => Ok(Some(s.trim().to_string())),
        other => Err(ScimError::InvalidValue(format!("{what} must be a string, not {other}"))),
    }
}

/// Read a User resource (a POST or PUT body, or a patched representation)
/// into what Wardkey keeps; `roles` are kept as they are.
fn record(v: &Value, roles: Vec<String>) -> Result<DirectoryRecord, ScimError> {
    let username = text(&v["userName"], "userName")?
        .ok_or_else(|| ScimError::InvalidValue("userName is required (RFC 7643 §4.1.1)".into()))?;
    validate_username(&username).map_err(|e| ScimError::InvalidValue(e.to_string()))?;
    let name = match (text(&v["displayName"], "displayName")?, &v["name"]) {
        (Some(display), _) => Some(display),
        (None, Value::Object(n)) => match text(n.get("formatted").unwrap_or(&Value::Null), "name.formatted")? {
            Some(f) => Some(f),
            None => {
                let given = text(n.get("givenName").unwrap_or(&Value::Null), "name.givenName")?;
                let family = text(n.get("familyName").unwrap_or(&Value::Null), "name.familyName")?;
                match (given, family) {
                    (Some(g), Some(f)) => Some(format!("{g} {f}")),
                    (g, f) => g.or(f),
                }
            }
        },
        _ => None,
    };
    let email = match &v["emails"] {
        Value::Null => None,
        Value::Array(emails) => {
            let pick = emails
                .iter()
                .find(|e| e["primary"] == true)
                .or_else(|| emails.iter().find(|e| e["type"].as_str().is_some_and(|t| t.eq_ignore_ascii_case("work"))))
                .or_else(|| emails.first());
            match pick {
                Some(e) => text(&e["value"], "emails.value")?,
                None => None,
            }
        }
        other => return Err(ScimError::InvalidValue(format!("emails must be a list, not {other}"))),
    };
    if let Some(address) = &email {
        validate_email(address).map_err(|e| ScimError::InvalidValue(e.to_string()))?;
    }
    let active = match &v["active"] {
        Value::Null => true,
        other => boolean(other, "active")?,
    };
    let employee_number = text(&v[ENTERPRISE]["employeeNumber"], "employeeNumber")?;
    let external_id = text(&v["externalId"], "externalId")?.unwrap_or_else(|| username.to_ascii_lowercase());
    Ok(DirectoryRecord { external_id, username, name, email, employee_number, roles, disabled: !active })
}

/// A SCIM user by id: 404 for anyone not provisioned over SCIM.
async fn scim_user(state: &AppState, id: &str) -> Result<User, ScimError> {
    match state.store.user_by_id(id).await? {
        Some(user) if user.source == SCIM => Ok(user),
        _ => Err(ScimError::NotFound(format!("no SCIM user has id {id:?}"))),
    }
}

/// `If-Match` (RFC 7644 §3.14): a version other than the current one is
/// refused, so two provisioners never overwrite each other unseen.
fn check_version(headers: &HeaderMap, current: &str) -> Result<(), ScimError> {
    match headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()) {
        Some(wanted) if wanted.trim() != "*" && !wanted.split(',').any(|w| w.trim() == current) => {
            Err(ScimError::PreconditionFailed(wanted.trim().to_string()))
        }
        _ => Ok(()),
    }
}

/// Write `change`; a taken username or external id is SCIM's
/// `uniqueness`.
async fn write(
    state: &AppState,
    change: UserChange,
    who: &Provisioner,
    event: &str,
    subject: &str,
) -> Result<(), ScimError> {
    match state.store.apply_user_changes(std::slice::from_ref(&change), state.now()).await {
        Ok(()) => {}
        Err(wardkey_store::StoreError::Conflict(what)) => {
            return Err(ScimError::Uniqueness(format!("{what} is already taken by another user")));
        }
        Err(e) => return Err(e.into()),
    }
    state.directory.changed().await;
    crate::audit::record(state.store.as_ref(), state.now(), event, &format!("scim:{}", who.0), subject, json!({}))
        .await;
    Ok(())
}

/// `POST /scim/v2/Users`. A person Wardkey already has by this username —
/// made by hand, or deleted over SCIM before — is linked, keeping their
/// `sub`, badges and keys; one owned by a directory is a conflict.
async fn create_user(State(state): State<AppState>, who: Provisioner, body: Bytes) -> Result<Response, ScimError> {
    let v = parse_body(&body)?;
    let record = record(&v, Vec::new())?;
    let username = record.username.clone();
    let change = match state.store.user_by_username(&username).await? {
        None => UserChange::Create { source: SCIM.into(), record },
        // Linked: a user made by hand and tied to nothing yet, or the same
        // person deleted over SCIM before (the same externalId). Never a
        // disabled hand-made user (this would enable them) nor anyone
        // another source owns.
        Some(u)
            if (u.source == wardkey_core::user::LOCAL && u.external_id.is_none() && !u.disabled)
                || (u.source == DELETED && u.external_id.as_deref() == Some(record.external_id.as_str())) =>
        {
            let record = DirectoryRecord { roles: u.roles.clone(), disabled: record.disabled || u.held, ..record };
            UserChange::Update { id: u.id, source: SCIM.into(), record }
        }
        Some(u) => {
            return Err(ScimError::Uniqueness(format!(
                "userName {username:?} is taken by a user from {}",
                if u.source == SCIM { "this provisioner" } else { u.source.as_str() }
            )));
        }
    };
    write(&state, change, &who, "scim.user.create", &username).await?;
    let user = state.store.user_by_username(&username).await?.ok_or(ScimError::Unavailable)?;
    let (body, version) = resource(&state, &user);
    Ok(scim_json(StatusCode::CREATED, &body, Some(&version)))
}

/// `GET /scim/v2/Users/{id}`.
async fn get_user(
    State(state): State<AppState>,
    _who: Provisioner,
    Path(id): Path<String>,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> Result<Response, ScimError> {
    let user = scim_user(&state, &id).await?;
    let (body, version) = resource(&state, &user);
    Ok(scim_json(StatusCode::OK, &Projection::from_query(&query).apply(body), Some(&version)))
}

/// The user as a write leaves them.
async fn written(state: &AppState, id: &str) -> Result<Response, ScimError> {
    let user = scim_user(state, id).await?;
    let (body, version) = resource(state, &user);
    Ok(scim_json(StatusCode::OK, &body, Some(&version)))
}

/// `PUT /scim/v2/Users/{id}`: the whole resource.
async fn replace_user(
    State(state): State<AppState>,
    who: Provisioner,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ScimError> {
    let user = scim_user(&state, &id).await?;
    check_version(&headers, &resource(&state, &user).1)?;
    let mut record = record(&parse_body(&body)?, user.roles.clone())?;
    record.disabled |= user.held;
    let change = UserChange::Update { id: user.id.clone(), source: SCIM.into(), record };
    write(&state, change, &who, "scim.user.replace", &user.username).await?;
    written(&state, &id).await
}

/// `PATCH /scim/v2/Users/{id}` (RFC 7644 §3.5.2), in every form Entra ID
/// sends: `replace` of `active` (also as the string "False"), of a
/// sub-attribute (`name.familyName`), of a filtered one
/// (`emails[type eq "work"].value`), and with no path and an object.
async fn patch_user(
    State(state): State<AppState>,
    who: Provisioner,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ScimError> {
    let user = scim_user(&state, &id).await?;
    let (mut doc, version) = resource(&state, &user);
    check_version(&headers, &version)?;
    for operation in &operations(&body)? {
        apply(&mut doc, operation)?;
    }
    let mut record = record(&doc, user.roles.clone())?;
    // An admin's disable stands whatever the provisioner says.
    record.disabled |= user.held;
    let change = UserChange::Update { id: user.id.clone(), source: SCIM.into(), record };
    write(&state, change, &who, "scim.user.patch", &user.username).await?;
    written(&state, &id).await
}

/// `DELETE /scim/v2/Users/{id}`: disabled, never deleted; their sessions
/// end. SCIM sees them no more (404).
async fn delete_user(
    State(state): State<AppState>,
    who: Provisioner,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ScimError> {
    let user = scim_user(&state, &id).await?;
    check_version(&headers, &resource(&state, &user).1)?;
    let record = DirectoryRecord {
        external_id: user.external_id.clone().unwrap_or_else(|| user.username.to_ascii_lowercase()),
        username: user.username.clone(),
        name: user.name.clone(),
        email: user.email.clone(),
        employee_number: user.employee_number.clone(),
        roles: user.roles.clone(),
        disabled: true,
    };
    let change = UserChange::Update { id: user.id.clone(), source: DELETED.into(), record };
    write(&state, change, &who, "scim.user.delete", &user.username).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A PATCH body's operations (RFC 7644 §3.5.2).
fn operations(body: &Bytes) -> Result<Vec<Value>, ScimError> {
    let mut patch = parse_body(body)?;
    let list = patch.get_mut("Operations").map(Value::take).or_else(|| patch.get_mut("operations").map(Value::take));
    match list {
        Some(Value::Array(operations)) => Ok(operations),
        _ => Err(ScimError::InvalidSyntax(format!("a PATCH body is a {PATCH_OP} with an \"Operations\" list"))),
    }
}

/// One PATCH operation on the representation `doc`.
fn apply(doc: &mut Value, operation: &Value) -> Result<(), ScimError> {
    let op = operation["op"].as_str().unwrap_or_default().to_ascii_lowercase();
    let value = operation.get("value").cloned().unwrap_or(Value::Null);
    match (op.as_str(), operation["path"].as_str()) {
        ("add" | "replace", None) => {
            let Value::Object(fields) = value else {
                return Err(ScimError::InvalidSyntax("an operation with no path needs an object value".into()));
            };
            for (path, value) in fields {
                set(doc, &path, value)?;
            }
            Ok(())
        }
        ("add" | "replace", Some(path)) => set(doc, path, value),
        ("remove", Some(path)) => set(doc, path, Value::Null),
        ("remove", None) => Err(ScimError::InvalidSyntax("a remove operation needs a path (RFC 7644 §3.5.2.2)".into())),
        (other, _) => Err(ScimError::InvalidSyntax(format!("{other:?} is not a PATCH op: use add, replace or remove"))),
    }
}

/// The canonical spelling of `name` among `known`, compared without case
/// (RFC 7643 §2.1: attribute names are case-insensitive).
fn canonical<'a>(known: &[&'a str], name: &str) -> Option<&'a str> {
    known.iter().copied().find(|k| k.eq_ignore_ascii_case(name))
}

/// Set `path` in `doc` (null removes): `attr`, `attr.sub`,
/// `attr[filter].sub`, or the enterprise extension's `urn:…:User:attr`.
fn set(doc: &mut Value, path: &str, value: Value) -> Result<(), ScimError> {
    let unknown =
        || ScimError::InvalidPath(format!("the PATCH path {path:?} names no attribute of the SCIM User schema"));
    if path.len() > ENTERPRISE.len() && path[..ENTERPRISE.len()].eq_ignore_ascii_case(ENTERPRISE) {
        let attr = path[ENTERPRISE.len()..].trim_start_matches(':');
        let attr = canonical(ENTERPRISE_ATTRIBUTES, attr).ok_or_else(unknown)?;
        let ext = doc.as_object_mut().ok_or_else(unknown)?.entry(ENTERPRISE).or_insert_with(|| json!({}));
        put(ext, attr, value);
        return Ok(());
    }
    if path.eq_ignore_ascii_case(ENTERPRISE) {
        // A whole-extension value: its attributes one by one.
        match value {
            Value::Object(fields) => {
                for (attr, v) in fields.into_iter().filter(|(attr, _)| attr != "schemas") {
                    set(doc, &format!("{ENTERPRISE}:{attr}"), v)?;
                }
            }
            Value::Null => {
                if let Some(root) = doc.as_object_mut() {
                    root.remove(ENTERPRISE);
                }
            }
            _ => return Err(unknown()),
        }
        return Ok(());
    }
    let (head, sub) = match path.split_once('.') {
        Some((h, s)) if !h.contains('[') => (h, Some(s)),
        _ => (path, None),
    };
    let (attr, filter, sub) = match head.split_once('[') {
        Some((attr, rest)) => {
            let (filter, after) = rest.split_once(']').ok_or_else(unknown)?;
            (attr, Some(filter), after.strip_prefix('.').or(sub))
        }
        None => (head, None, sub),
    };
    if ["id", "meta", "schemas", "groups"].iter().any(|ro| ro.eq_ignore_ascii_case(attr)) {
        return Err(ScimError::Mutability(format!("{attr} is read-only")));
    }
    let attr = canonical(USER_ATTRIBUTES, attr).ok_or_else(unknown)?;
    let root = doc.as_object_mut().ok_or_else(unknown)?;
    match (filter, sub) {
        (None, None) => {
            if value.is_null() {
                root.remove(attr);
            } else {
                root.insert(attr.to_string(), value);
            }
        }
        (None, Some(sub)) => {
            let parent = root.entry(attr).or_insert_with(|| json!({}));
            put(parent, sub, value);
        }
        (Some(filter), sub) => {
            // `type eq "work"`, `primary eq true`: the element it matches,
            // made if there is none.
            let (key, wanted) = filter.split_once(" eq ").or_else(|| filter.split_once(" EQ ")).ok_or_else(|| {
                ScimError::InvalidFilter(format!("{filter:?}: only `attribute eq value` is supported"))
            })?;
            let wanted: Value = serde_json::from_str(wanted.trim()).unwrap_or(Value::String(wanted.trim().into()));
            let key = key.trim().to_string();
            let list = root.entry(attr).or_insert_with(|| json!([]));
            if !list.is_array() {
                *list = json!([]);
            }
            let items = list.as_array_mut().ok_or_else(unknown)?;
            let pos = items.iter().position(|item| match (&item[&key], &wanted) {
                (Value::String(a), Value::String(b)) => a.eq_ignore_ascii_case(b),
                (a, b) => a == b,
            });
            match (pos, sub) {
                (Some(i), None) if value.is_null() => {
                    items.remove(i);
                }
                (Some(i), Some(sub)) => put(&mut items[i], sub, value),
                (Some(i), None) => items[i] = value,
                (None, _) if value.is_null() => {}
                (None, Some(sub)) => {
                    let mut item = json!({});
                    item[&key] = wanted;
                    put(&mut item, sub, value);
                    items.push(item);
                }
                (None, None) => items.push(value),
            }
        }
    }
    Ok(())
}

/// Set (null: remove) `key` of the object `target`.
fn put(target: &mut Value, key: &str, value: Value) {
    if !target.is_object() {
        *target = json!({});
    }
    if let Some(object) = target.as_object_mut() {
        let existing = object.keys().find(|k| k.eq_ignore_ascii_case(key)).cloned();
        let key = existing.unwrap_or_else(|| key.to_string());
        if value.is_null() {
            object.remove(&key);
        } else {
            object.insert(key, value);
        }
    }
}

/// A `.search` body (RFC 7644 §3.4.3) as the query parameters it stands for.
fn search_query(body: &Bytes) -> Result<std::collections::HashMap<String, String>, ScimError> {
    let v = parse_body(body)?;
    let mut query = std::collections::HashMap::new();
    for key in ["filter", "startIndex", "count", "attributes", "excludedAttributes"] {
        let value = match &v[key] {
            Value::Null => continue,
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Array(items) => items.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(","),
            other => return Err(ScimError::InvalidValue(format!("{key} cannot be {other}"))),
        };
        query.insert(key.to_string(), value);
    }
    Ok(query)
}

/// `POST /scim/v2/Users/.search`.
async fn search_users(State(state): State<AppState>, who: Provisioner, body: Bytes) -> Result<Response, ScimError> {
    list_users(State(state), who, Query(search_query(&body)?)).await
}

/// `POST /scim/v2/Groups/.search`.
async fn search_groups(State(state): State<AppState>, who: Provisioner, body: Bytes) -> Result<Response, ScimError> {
    list_groups(State(state), who, Query(search_query(&body)?)).await
}

/// `POST /scim/v2/.search`: users, then groups.
async fn search_all(State(state): State<AppState>, _who: Provisioner, body: Bytes) -> Result<Response, ScimError> {
    let query = search_query(&body)?;
    let filter = query.get("filter").map(|f| parse_filter(f)).transpose()?;
    let mut items = matching_users(&state, filter.as_ref()).await?;
    items.extend(matching_groups(&state, filter.as_ref()).await?);
    list_response(&query, items)
}

/// `GET /scim/v2/Users?filter=…&startIndex=…&count=…`.
async fn list_users(
    State(state): State<AppState>,
    _who: Provisioner,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> Result<Response, ScimError> {
    let filter = query.get("filter").map(|f| parse_filter(f)).transpose()?;
    list_response(&query, matching_users(&state, filter.as_ref()).await?)
}

/// The SCIM users `filter` matches, as resources.
async fn matching_users(state: &AppState, filter: Option<&(String, String)>) -> Result<Vec<Value>, ScimError> {
    // What a provisioner asks before every create is one indexed look-up,
    // not a read of every user (an initial Entra cycle asks 15,000 times).
    let found = match filter.map(|(attr, value)| (attr.as_str(), value.as_str())) {
        Some(("userName", name)) => Some(state.store.user_by_username(name).await?),
        Some(("id", id)) => Some(state.store.user_by_id(id).await?),
        _ => None,
    };
    let users = match found {
        Some(user) => user.into_iter().collect(),
        None => state.store.list_users().await?,
    };
    Ok(users
        .into_iter()
        .filter(|u| u.source == SCIM)
        .filter(|u| filter.is_none_or(|(attr, value)| matches(u, attr, value)))
        .map(|u| resource(state, &u).0)
        .collect())
}

/// One page of `items` (RFC 7644 §3.4.2.4: `startIndex` from 1, `count`
/// at most [`MAX_COUNT`]), with `attributes` / `excludedAttributes`.
fn list_response(query: &std::collections::HashMap<String, String>, items: Vec<Value>) -> Result<Response, ScimError> {
    let number = |key: &str, default: usize| -> Result<usize, ScimError> {
        match query.get(key) {
            None => Ok(default),
            Some(v) => {
                v.parse().map_err(|_| ScimError::InvalidValue(format!("{key} must be a whole number, not {v:?}")))
            }
        }
    };
    let start = number("startIndex", 1)?.max(1);
    let count = number("count", 100)?.min(MAX_COUNT);
    let projection = Projection::from_query(query);
    let total = items.len();
    let page: Vec<Value> = items.into_iter().skip(start - 1).take(count).map(|v| projection.apply(v)).collect();
    let body = json!({
        "schemas": [LIST],
        "totalResults": total,
        "startIndex": start,
        "itemsPerPage": page.len(),
        "Resources": page,
    });
    Ok(scim_json(StatusCode::OK, &body, None))
}

/// `attr eq "value"` on userName, externalId, displayName or id: what
/// provisioners ask before they create (RFC 7644 §3.4.2.2).
fn parse_filter(filter: &str) -> Result<(String, String), ScimError> {
    let refused = || {
        ScimError::InvalidFilter(format!(
            "{filter:?}: Wardkey supports `ATTRIBUTE eq \"VALUE\"` on userName, externalId, displayName, id and emails.value"
        ))
    };
    let lower = filter.to_ascii_lowercase();
    let at = lower.find(" eq ").ok_or_else(refused)?;
    let attr = filter[..at].trim();
    let value: Value = serde_json::from_str(filter[at + 4..].trim()).map_err(|_| refused())?;
    let value = value.as_str().ok_or_else(refused)?.to_string();
    let attr = canonical(&["userName", "externalId", "displayName", "id", "emails.value", "emails"], attr)
        .ok_or_else(refused)?;
    Ok((attr.to_string(), value))
}

fn matches(user: &User, attr: &str, value: &str) -> bool {
    match attr {
        // userName is caseExact false (RFC 7643 §4.1.1).
        "userName" => user.username.eq_ignore_ascii_case(value),
        "externalId" => user.external_id.as_deref() == Some(value),
        "displayName" => user.name.as_deref() == Some(value),
        "id" => user.id == value,
        _ => user.email.as_deref().is_some_and(|e| e.eq_ignore_ascii_case(value)),
    }
}

/// `GET /scim/v2/ServiceProviderConfig` (RFC 7643 §5).
async fn service_provider_config(State(state): State<AppState>) -> Response {
    let body = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "documentationUri": state.url("/scim/v2/Schemas"),
        "patch": { "supported": true },
        "bulk": { "supported": false, "maxOperations": 0, "maxPayloadSize": 0 },
        "filter": { "supported": true, "maxResults": MAX_COUNT },
        "changePassword": { "supported": false },
        "sort": { "supported": false },
        "etag": { "supported": true },
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "Bearer token",
            "description": "The provisioning client's token from `wardkey scim token NAME`",
            "primary": true
        }],
        "meta": { "resourceType": "ServiceProviderConfig", "location": state.url("/scim/v2/ServiceProviderConfig") }
    });
    scim_json(StatusCode::OK, &body, None)
}

/// `GET /scim/v2/ResourceTypes/{id}`.
async fn resource_type(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ScimError> {
    all_resource_types(&state)
        .into_iter()
        .find(|t| t["id"] == id.as_str())
        .map(|t| scim_json(StatusCode::OK, &t, None))
        .ok_or_else(|| ScimError::NotFound(format!("no resource type {id:?}: Wardkey serves User and Group")))
}

fn all_resource_types(state: &AppState) -> Vec<Value> {
    let group = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
        "id": "Group", "name": "Group", "endpoint": "/Groups", "schema": GROUP,
        "meta": { "resourceType": "ResourceType", "location": state.url("/scim/v2/ResourceTypes/Group") }
    });
    vec![user_resource_type(state), group]
}

fn user_resource_type(state: &AppState) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
        "id": "User", "name": "User", "endpoint": "/Users", "schema": USER,
        "schemaExtensions": [{ "schema": ENTERPRISE, "required": false }],
        "meta": { "resourceType": "ResourceType", "location": state.url("/scim/v2/ResourceTypes/User") }
    })
}

/// `GET /scim/v2/ResourceTypes` (RFC 7643 §6).
async fn resource_types(State(state): State<AppState>) -> Response {
    let all = all_resource_types(&state);
    let body = json!({ "schemas": [LIST], "totalResults": all.len(), "startIndex": 1, "itemsPerPage": all.len(), "Resources": all });
    scim_json(StatusCode::OK, &body, None)
}

/// `GET /scim/v2/Schemas/{id}`.
async fn schema(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ScimError> {
    all_schemas(&state)
        .into_iter()
        .find(|s| s["id"] == id.as_str())
        .map(|s| scim_json(StatusCode::OK, &s, None))
        .ok_or_else(|| ScimError::NotFound(format!("no schema {id:?}")))
}

/// `GET /scim/v2/Schemas` (RFC 7643 §7).
async fn schemas(State(state): State<AppState>) -> Response {
    let all = all_schemas(&state);
    let body = json!({ "schemas": [LIST], "totalResults": all.len(), "startIndex": 1, "itemsPerPage": all.len(), "Resources": all });
    scim_json(StatusCode::OK, &body, None)
}

/// The User schema and the enterprise extension, with the attributes
/// Wardkey keeps.
fn all_schemas(state: &AppState) -> Vec<Value> {
    let attribute = |name: &str, kind: &str, required: bool, unique: &str| {
        json!({ "name": name, "type": kind, "multiValued": false, "required": required, "caseExact": false,
                "mutability": "readWrite", "returned": "default", "uniqueness": unique })
    };
    let user = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": USER, "name": "User", "description": "A person who signs in with Wardkey",
        "attributes": [
            attribute("userName", "string", true, "server"),
            attribute("displayName", "string", false, "none"),
            { "name": "name", "type": "complex", "multiValued": false, "required": false, "mutability": "readWrite",
              "returned": "default", "subAttributes": [
                attribute("formatted", "string", false, "none"),
                attribute("givenName", "string", false, "none"),
                attribute("familyName", "string", false, "none")] },
            { "name": "emails", "type": "complex", "multiValued": true, "required": false, "mutability": "readWrite",
              "returned": "default", "subAttributes": [
                attribute("value", "string", false, "none"),
                attribute("type", "string", false, "none"),
                attribute("primary", "boolean", false, "none")] },
            attribute("active", "boolean", false, "none"),
            attribute("externalId", "string", false, "server"),
        ],
        "meta": { "resourceType": "Schema", "location": state.url(&format!("/scim/v2/Schemas/{USER}")) }
    });
    let enterprise = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": ENTERPRISE, "name": "EnterpriseUser", "description": "Enterprise User",
        "attributes": [attribute("employeeNumber", "string", false, "none")],
        "meta": { "resourceType": "Schema", "location": state.url(&format!("/scim/v2/Schemas/{ENTERPRISE}")) }
    });
    let group = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": GROUP, "name": "Group", "description": "A group; its display name maps to a role code ([scim] roles)",
        "attributes": [
            attribute("displayName", "string", true, "server"),
            attribute("externalId", "string", false, "none"),
            { "name": "members", "type": "complex", "multiValued": true, "required": false, "mutability": "readWrite",
              "returned": "default", "subAttributes": [
                { "name": "value", "type": "string", "multiValued": false, "required": false, "caseExact": true,
                  "mutability": "immutable", "returned": "default", "uniqueness": "none" },
                { "name": "$ref", "type": "reference", "referenceTypes": ["User"], "multiValued": false,
                  "required": false, "caseExact": true, "mutability": "immutable", "returned": "default",
                  "uniqueness": "none" },
                { "name": "display", "type": "string", "multiValued": false, "required": false, "caseExact": false,
                  "mutability": "readOnly", "returned": "default", "uniqueness": "none" }] },
        ],
        "meta": { "resourceType": "Schema", "location": state.url(&format!("/scim/v2/Schemas/{GROUP}")) }
    });
    vec![user, enterprise, group]
}

// ---------------------------------------------------------------------------
// Groups

/// The group as SCIM shows it, with its version.
fn group_resource(state: &AppState, group: &ScimGroup) -> (Value, String) {
    let members: Vec<Value> = group
        .members
        .iter()
        .map(|id| json!({ "value": id, "$ref": state.url(&format!("/scim/v2/Users/{id}")) }))
        .collect();
    let mut v = json!({ "schemas": [GROUP], "id": group.id, "displayName": group.display_name, "members": members });
    if let Some(id) = &group.external_id {
        v["externalId"] = id.clone().into();
    }
    let hash = Sha256::digest(v.to_string().as_bytes());
    let version = format!("W/\"{}\"", hash.iter().take(8).map(|b| format!("{b:02x}")).collect::<String>());
    v["meta"] = json!({
        "resourceType": "Group",
        "created": rfc3339(group.created_at),
        "lastModified": rfc3339(group.updated_at),
        "location": state.url(&format!("/scim/v2/Groups/{}", group.id)),
        "version": version,
    });
    (v, version)
}

/// What a group request needs at hand: every group, and the users by id
/// (members must be SCIM users).
struct Groups {
    all: Vec<ScimGroup>,
    users: std::collections::HashMap<String, User>,
}

impl Groups {
    async fn load(state: &AppState) -> Result<Self, ScimError> {
        let all = state.store.list_groups().await?;
        let users = state.store.list_users().await?.into_iter().map(|u| (u.id.clone(), u)).collect();
        Ok(Groups { all, users })
    }

    fn find(&self, id: &str) -> Result<&ScimGroup, ScimError> {
        self.all.iter().find(|g| g.id == id).ok_or_else(|| ScimError::NotFound(format!("no SCIM group has id {id:?}")))
    }

    /// The roles each member of `before` or `after` gets from the groups
    /// once `after` replaces `before` (`None`: deleted).
    fn roles(&self, state: &AppState, id: &str, after: Option<&ScimGroup>) -> Vec<(String, Vec<String>)> {
        let map: std::collections::HashMap<String, &String> =
            state.settings.scim.roles.iter().map(|(name, role)| (name.to_lowercase(), role)).collect();
        let groups: Vec<&ScimGroup> = self.all.iter().filter(|g| g.id != id).chain(after).collect();
        let mut affected: Vec<&String> =
            self.all.iter().filter(|g| g.id == id).chain(after).flat_map(|g| &g.members).collect();
        affected.sort();
        affected.dedup();
        affected
            .into_iter()
            .map(|user| {
                let mut roles: Vec<String> = groups
                    .iter()
                    .filter(|g| g.members.contains(user))
                    .filter_map(|g| map.get(&g.display_name.to_lowercase()).map(|r| r.to_string()))
                    .collect();
                roles.sort();
                roles.dedup();
                (user.clone(), roles)
            })
            .collect()
    }

    /// A member list (`[{"value": id}, …]`) of SCIM users.
    fn members(&self, value: &Value) -> Result<Vec<String>, ScimError> {
        let list = match value {
            Value::Null => return Ok(Vec::new()),
            Value::Array(list) => list.clone(),
            single @ Value::Object(_) => vec![single.clone()],
            other => return Err(ScimError::InvalidValue(format!("members must be a list, not {other}"))),
        };
        let mut ids = Vec::new();
        for m in list {
            let id = m["value"]
                .as_str()
                .ok_or_else(|| ScimError::InvalidValue(format!("a member needs a \"value\" (a user id): {m}")))?;
            match self.users.get(id) {
                Some(u) if u.source == SCIM => ids.push(id.to_string()),
                _ => {
                    return Err(ScimError::InvalidValue(format!(
                        "no SCIM user has id {id:?}, so it cannot be a member"
                    )));
                }
            }
        }
        ids.sort();
        ids.dedup();
        Ok(ids)
    }
}

/// A Group resource (POST or PUT body) read into `group`.
fn read_group(v: &Value, groups: &Groups, group: &mut ScimGroup) -> Result<(), ScimError> {
    group.display_name = text(&v["displayName"], "displayName")?
        .ok_or_else(|| ScimError::InvalidValue("displayName is required (RFC 7643 §4.2)".into()))?;
    group.external_id = text(&v["externalId"], "externalId")?;
    group.members = groups.members(&v["members"])?;
    Ok(())
}

async fn save(
    state: &AppState,
    groups: &Groups,
    group: &ScimGroup,
    who: &Provisioner,
    event: &str,
) -> Result<(), ScimError> {
    let roles = groups.roles(state, &group.id, Some(group));
    match state.store.save_group(group, &roles).await {
        Ok(()) => {}
        Err(wardkey_store::StoreError::Conflict(_)) => {
            return Err(ScimError::Uniqueness(format!("a group is already called {:?}", group.display_name)));
        }
        Err(wardkey_store::StoreError::NotFound(what)) => {
            return Err(ScimError::InvalidValue(format!("{what} no longer exists, so it cannot be a member")));
        }
        Err(e) => return Err(e.into()),
    }
    state.directory.changed().await;
    let detail = json!({ "group": group.display_name, "members": group.members.len() });
    crate::audit::record(state.store.as_ref(), state.now(), event, &format!("scim:{}", who.0), &group.id, detail).await;
    Ok(())
}

async fn group_response(
    state: &AppState,
    id: &str,
    status: StatusCode,
    query: &std::collections::HashMap<String, String>,
) -> Result<Response, ScimError> {
    let groups = Groups::load(state).await?;
    let (body, version) = group_resource(state, groups.find(id)?);
    Ok(scim_json(status, &Projection::from_query(query).apply(body), Some(&version)))
}

/// `POST /scim/v2/Groups`.
async fn create_group(State(state): State<AppState>, who: Provisioner, body: Bytes) -> Result<Response, ScimError> {
    let v = parse_body(&body)?;
    let groups = Groups::load(&state).await?;
    let now = state.now();
    let mut group = ScimGroup {
        id: wardkey_core::secret::random_token(16),
        display_name: String::new(),
        external_id: None,
        members: Vec::new(),
        created_at: now,
        updated_at: now,
    };
    read_group(&v, &groups, &mut group)?;
    save(&state, &groups, &group, &who, "scim.group.create").await?;
    group_response(&state, &group.id, StatusCode::CREATED, &Default::default()).await
}

/// `GET /scim/v2/Groups/{id}` (Entra asks with `excludedAttributes=members`).
async fn get_group(
    State(state): State<AppState>,
    _who: Provisioner,
    Path(id): Path<String>,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> Result<Response, ScimError> {
    group_response(&state, &id, StatusCode::OK, &query).await
}

/// `PUT /scim/v2/Groups/{id}`.
async fn replace_group(
    State(state): State<AppState>,
    who: Provisioner,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ScimError> {
    let groups = Groups::load(&state).await?;
    let mut group = groups.find(&id)?.clone();
    check_version(&headers, &group_resource(&state, &group).1)?;
    read_group(&parse_body(&body)?, &groups, &mut group)?;
    group.updated_at = state.now();
    save(&state, &groups, &group, &who, "scim.group.replace").await?;
    group_response(&state, &id, StatusCode::OK, &Default::default()).await
}

/// `PATCH /scim/v2/Groups/{id}`: Entra's member forms (`add` / `remove` of
/// `members` with a list, `remove` of `members[value eq "…"]`), and
/// `replace` of `displayName` / `externalId` / `members`.
async fn patch_group(
    State(state): State<AppState>,
    who: Provisioner,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ScimError> {
    let groups = Groups::load(&state).await?;
    let mut group = groups.find(&id)?.clone();
    check_version(&headers, &group_resource(&state, &group).1)?;
    for operation in &operations(&body)? {
        let op = operation["op"].as_str().unwrap_or_default().to_ascii_lowercase();
        let value = operation.get("value").cloned().unwrap_or(Value::Null);
        let path = operation["path"].as_str().map(str::trim);
        let member_filter = path.and_then(|p| {
            let lower = p.to_ascii_lowercase();
            lower.starts_with("members[").then(|| p["members[".len()..].trim_end_matches(']').to_string())
        });
        match (op.as_str(), path.map(str::to_ascii_lowercase).as_deref(), member_filter) {
            ("add", Some("members"), _) => {
                group.members.extend(groups.members(&value)?);
                group.members.sort();
                group.members.dedup();
            }
            ("replace", Some("members"), _) => group.members = groups.members(&value)?,
            ("remove", Some("members"), _) if value.is_null() => group.members.clear(),
            ("remove", Some("members"), _) => {
                let gone: Vec<String> = match &value {
                    Value::Array(list) => list.iter().filter_map(|m| m["value"].as_str().map(str::to_string)).collect(),
                    other => {
                        return Err(ScimError::InvalidValue(format!("members to remove must be a list, not {other}")));
                    }
                };
                group.members.retain(|m| !gone.contains(m));
            }
            ("remove", _, Some(filter)) => {
                let refused = || ScimError::InvalidFilter(format!("{filter:?}: use members[value eq \"USER-ID\"]"));
                let (attr, wanted) =
                    filter.split_once(" eq ").or_else(|| filter.split_once(" EQ ")).ok_or_else(refused)?;
                let wanted: String = serde_json::from_str(wanted.trim()).map_err(|_| refused())?;
                if !attr.trim().eq_ignore_ascii_case("value") {
                    return Err(refused());
                }
                group.members.retain(|m| *m != wanted);
            }
            ("add" | "replace", Some("displayname"), _) => {
                group.display_name = text(&value, "displayName")?
                    .ok_or_else(|| ScimError::InvalidValue("displayName cannot be empty".into()))?;
            }
            ("add" | "replace", Some("externalid"), _) => group.external_id = text(&value, "externalId")?,
            ("remove", Some("externalid"), _) => group.external_id = None,
            ("add" | "replace", None, _) => {
                let Value::Object(fields) = value else {
                    return Err(ScimError::InvalidSyntax("an operation with no path needs an object value".into()));
                };
                for (key, v) in fields {
                    match key.to_ascii_lowercase().as_str() {
                        "displayname" => {
                            group.display_name = text(&v, "displayName")?
                                .ok_or_else(|| ScimError::InvalidValue("displayName cannot be empty".into()))?;
                        }
                        "externalid" => group.external_id = text(&v, "externalId")?,
                        "members" => group.members = groups.members(&v)?,
                        "id" | "meta" | "schemas" => return Err(ScimError::Mutability(format!("{key} is read-only"))),
                        _ => {
                            return Err(ScimError::InvalidPath(format!("{key:?} is not an attribute of a SCIM Group")));
                        }
                    }
                }
            }
            (op @ ("add" | "replace" | "remove"), Some(other), _) => {
                return Err(ScimError::InvalidPath(format!(
                    "the PATCH path {other:?} ({op}) names no attribute of a SCIM Group: use members, displayName or externalId"
                )));
            }
            (other, _, _) => {
                return Err(ScimError::InvalidSyntax(format!(
                    "{other:?} is not a PATCH op: use add, replace or remove"
                )));
            }
        }
    }
    group.updated_at = state.now();
    save(&state, &groups, &group, &who, "scim.group.patch").await?;
    group_response(&state, &id, StatusCode::OK, &Default::default()).await
}

/// `DELETE /scim/v2/Groups/{id}`: its members lose the role it gave.
async fn delete_group(
    State(state): State<AppState>,
    who: Provisioner,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ScimError> {
    let groups = Groups::load(&state).await?;
    let group = groups.find(&id)?;
    check_version(&headers, &group_resource(&state, group).1)?;
    let roles = groups.roles(&state, &id, None);
    state.store.delete_group(&id, &roles).await?;
    state.directory.changed().await;
    let detail = json!({ "group": group.display_name });
    crate::audit::record(
        state.store.as_ref(),
        state.now(),
        "scim.group.delete",
        &format!("scim:{}", who.0),
        &id,
        detail,
    )
    .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /scim/v2/Groups?filter=displayName eq "…"`.
async fn list_groups(
    State(state): State<AppState>,
    _who: Provisioner,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> Result<Response, ScimError> {
    let filter = query.get("filter").map(|f| parse_filter(f)).transpose()?;
    list_response(&query, matching_groups(&state, filter.as_ref()).await?)
}

/// The groups `filter` matches, as resources.
async fn matching_groups(state: &AppState, filter: Option<&(String, String)>) -> Result<Vec<Value>, ScimError> {
    let groups = Groups::load(state).await?;
    Ok(groups
        .all
        .iter()
        .filter(|g| {
            filter.is_none_or(|(attr, value)| match attr.as_str() {
                "displayName" => g.display_name.eq_ignore_ascii_case(value),
                "externalId" => g.external_id.as_deref() == Some(value.as_str()),
                "id" => g.id == *value,
                _ => false,
            })
        })
        .map(|g| group_resource(state, g).0)
        .collect())
}
