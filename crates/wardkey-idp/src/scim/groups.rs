//! SCIM Groups: members and the roles their display names map to, saved
//! together in one transaction.

use super::*;

/// `POST /scim/v2/Groups/.search`.
pub(super) async fn search_groups(
    State(state): State<AppState>,
    who: Provisioner,
    body: Bytes,
) -> Result<Response, ScimError> {
    list_groups(State(state), who, Query(search_query(&body)?)).await
}

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
    state.audit.record(event, &format!("scim:{}", who.0), &group.id, detail).await;
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
pub(super) async fn create_group(
    State(state): State<AppState>,
    who: Provisioner,
    body: Bytes,
) -> Result<Response, ScimError> {
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
pub(super) async fn get_group(
    State(state): State<AppState>,
    _who: Provisioner,
    Path(id): Path<String>,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> Result<Response, ScimError> {
    group_response(&state, &id, StatusCode::OK, &query).await
}

/// `PUT /scim/v2/Groups/{id}`.
pub(super) async fn replace_group(
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
pub(super) async fn patch_group(
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
pub(super) async fn delete_group(
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
    state.audit.record("scim.group.delete", &format!("scim:{}", who.0), &id, detail).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /scim/v2/Groups?filter=displayName eq "…"`.
pub(super) async fn list_groups(
    State(state): State<AppState>,
    _who: Provisioner,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> Result<Response, ScimError> {
    let filter = query.get("filter").map(|f| parse_filter(f)).transpose()?;
    list_response(&query, matching_groups(&state, filter.as_ref()).await?)
}

/// The groups `filter` matches, as resources.
pub(super) async fn matching_groups(
    state: &AppState,
    filter: Option<&(String, String)>,
) -> Result<Vec<Value>, ScimError> {
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
