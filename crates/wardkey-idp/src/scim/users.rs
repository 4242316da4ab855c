//! SCIM Users: the resource, PATCH on its representation, and the writes,
//! through the directory sync's one-transaction `apply_user_changes`.

use super::*;

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
    state.audit.record(event, &format!("scim:{}", who.0), subject, json!({})).await;
    Ok(())
}

/// `POST /scim/v2/Users`. A person Wardkey already has by this username —
/// made by hand, or deleted over SCIM before — is linked, keeping their
/// `sub`, badges and keys; one owned by a directory is a conflict.
pub(super) async fn create_user(
    State(state): State<AppState>,
    who: Provisioner,
    body: Bytes,
) -> Result<Response, ScimError> {
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
            let record = DirectoryRecord { roles: u.roles.clone(), ..record };
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
pub(super) async fn get_user(
    State(state): State<AppState>,
    _who: Provisioner,
    Path(id): Path<String>,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> Result<Response, ScimError> {
    let user = scim_user(&state, &id).await?;
    let (body, version) = resource(&state, &user);
    Ok(scim_json(StatusCode::OK, &Projection::from_query(&query).apply(body), Some(&version)))
}

/// Write `record` over SCIM user `user` (an admin's disable stands: the
/// store keeps a held user disabled) and answer with the result.
async fn update(
    state: &AppState,
    who: &Provisioner,
    user: &User,
    record: DirectoryRecord,
    event: &str,
) -> Result<Response, ScimError> {
    let change = UserChange::Update { id: user.id.clone(), source: SCIM.into(), record };
    write(state, change, who, event, &user.username).await?;
    let user = scim_user(state, &user.id).await?;
    let (body, version) = resource(state, &user);
    Ok(scim_json(StatusCode::OK, &body, Some(&version)))
}

/// `PUT /scim/v2/Users/{id}`: the whole resource.
pub(super) async fn replace_user(
    State(state): State<AppState>,
    who: Provisioner,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ScimError> {
    let user = scim_user(&state, &id).await?;
    check_version(&headers, &resource(&state, &user).1)?;
    let record = record(&parse_body(&body)?, user.roles.clone())?;
    update(&state, &who, &user, record, "scim.user.replace").await
}

/// `PATCH /scim/v2/Users/{id}` (RFC 7644 §3.5.2), in every form Entra ID
/// sends: `replace` of `active` (also as the string "False"), of a
/// sub-attribute (`name.familyName`), of a filtered one
/// (`emails[type eq "work"].value`), and with no path and an object.
pub(super) async fn patch_user(
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
    let record = record(&doc, user.roles.clone())?;
    update(&state, &who, &user, record, "scim.user.patch").await
}

/// `DELETE /scim/v2/Users/{id}`: disabled, never deleted; their sessions
/// end. SCIM sees them no more (404).
pub(super) async fn delete_user(
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

/// `POST /scim/v2/Users/.search`.
pub(super) async fn search_users(
    State(state): State<AppState>,
    who: Provisioner,
    body: Bytes,
) -> Result<Response, ScimError> {
    list_users(State(state), who, Query(search_query(&body)?)).await
}

/// `GET /scim/v2/Users?filter=…&startIndex=…&count=…`.
pub(super) async fn list_users(
    State(state): State<AppState>,
    _who: Provisioner,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> Result<Response, ScimError> {
    let filter = query.get("filter").map(|f| parse_filter(f)).transpose()?;
    list_response(&query, matching_users(&state, filter.as_ref()).await?)
}

/// The SCIM users `filter` matches, as resources.
pub(super) async fn matching_users(
    state: &AppState,
    filter: Option<&(String, String)>,
) -> Result<Vec<Value>, ScimError> {
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
