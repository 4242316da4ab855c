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

mod groups;
mod users;

use groups::*;
use users::*;

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

/// A PATCH body's operations (RFC 7644 §3.5.2).
fn operations(body: &Bytes) -> Result<Vec<Value>, ScimError> {
    let mut patch = parse_body(body)?;
    let list = patch.get_mut("Operations").map(Value::take).or_else(|| patch.get_mut("operations").map(Value::take));
    match list {
        Some(Value::Array(operations)) => Ok(operations),
        _ => Err(ScimError::InvalidSyntax(format!("a PATCH body is a {PATCH_OP} with an \"Operations\" list"))),
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

/// `POST /scim/v2/.search`: users, then groups.
async fn search_all(State(state): State<AppState>, _who: Provisioner, body: Bytes) -> Result<Response, ScimError> {
    let query = search_query(&body)?;
    let filter = query.get("filter").map(|f| parse_filter(f)).transpose()?;
    let mut items = matching_users(&state, filter.as_ref()).await?;
    items.extend(matching_groups(&state, filter.as_ref()).await?);
    list_response(&query, items)
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

/// The canonical spelling of `name` among `known`, compared without case
/// (RFC 7643 §2.1: attribute names are case-insensitive).
fn canonical<'a>(known: &[&'a str], name: &str) -> Option<&'a str> {
    known.iter().copied().find(|k| k.eq_ignore_ascii_case(name))
}
