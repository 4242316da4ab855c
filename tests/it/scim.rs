//! SCIM 2.0 provisioning over real HTTP, in the request shapes Microsoft
//! documents for the Entra ID provisioning service ("Tutorial: Develop and
//! plan provisioning for a SCIM endpoint", its request/response examples),
//! plus what goes wrong: no token, not JSON, a schema violation, a path
//! that does not exist, a stale ETag, a taken userName.

use serde_json::{Value, json};
use sha2::Digest;
use wardkey_idp::config::ScimToken;
use wardkey_store::CredentialKind;

use crate::helpers::*;

const TOKEN: &str = "scim-test-token-0123456789abcdef";

async fn scim_app() -> TestApp {
    let sha256: String = sha2::Sha256::digest(TOKEN.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    TestApp::builder()
        .settings(move |s| {
            s.scim.tokens = vec![ScimToken { name: "entra-id".into(), sha256 }];
            s.scim.roles =
                [("Ward 7 Nurses".to_string(), "R8001".to_string()), ("Consultants".into(), "R8000".into())].into();
        })
        .spawn()
        .await
}

/// A SCIM request as Entra ID sends it: bearer token, `application/scim+json`.
async fn scim(app: &TestApp, method: &str, path: &str, body: Option<Value>) -> (u16, Value, Option<String>) {
    let mut request = app
        .http
        .request(method.parse().unwrap(), app.url(path))
        .bearer_auth(TOKEN)
        .header("content-type", "application/scim+json");
    if let Some(body) = body {
        request = request.body(body.to_string());
    }
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    let etag = r.headers().get("etag").map(|v| v.to_str().unwrap().to_string());
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null), etag)
}

fn entra_user(user_name: &str, external_id: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
        "externalId": external_id,
        "userName": user_name,
        "active": true,
        "emails": [{"primary": true, "type": "work", "value": format!("{user_name}@testuser.com")}],
        "meta": {"resourceType": "User"},
        "name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"},
        "roles": [],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "E0042", "department": "Ward 7"}
    })
}

fn patch(operations: Value) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": operations})
}

fn assert_scim_error(body: &Value, status: u16, scim_type: Option<&str>, words: &str) {
    assert_eq!(body["schemas"], json!(["urn:ietf:params:scim:api:messages:2.0:Error"]), "{body}");
    assert_eq!(body["status"], status.to_string(), "{body}");
    assert_eq!(body["scimType"].as_str(), scim_type, "{body}");
    assert!(body["detail"].as_str().unwrap().contains(words), "{words:?} in {body}");
}

/// The Entra ID user lifecycle: filter before create, create, get, the PATCH
/// forms, replace, deactivate (ending the user's sessions), delete; and
/// the user signs in with a badge in between like anyone else.
#[tokio::test]
async fn entra_id_provisions_a_user_through_its_whole_life() {
    let app = scim_app().await;
    let user_name = "Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1";
    // Entra asks first whether the user exists.
    let (status, list, _) =
        scim(&app, "GET", &format!("/scim/v2/Users?filter=userName%20eq%20%22{user_name}%22"), None).await;
    assert_eq!((status, list["totalResults"].as_u64()), (200, Some(0)), "{list}");
    assert_eq!(list["schemas"], json!(["urn:ietf:params:scim:api:messages:2.0:ListResponse"]));

    let (status, created, etag) =
        scim(&app, "POST", "/scim/v2/Users", Some(entra_user(user_name, "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef"))).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["userName"], user_name);
    assert_eq!(created["active"], true);
    assert_eq!(created["displayName"], "givenName familyName");
    assert_eq!(created["emails"][0]["value"], format!("{user_name}@testuser.com"));
    assert_eq!(created["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["employeeNumber"], "E0042");
    assert_eq!(created["meta"]["location"], app.url(&format!("/scim/v2/Users/{id}")));
    assert_eq!(etag.as_deref(), created["meta"]["version"].as_str());
    let stored = app.state.store.user_by_id(&id).await.unwrap().unwrap();
    assert_eq!(
        (stored.source.as_str(), stored.external_id.as_deref()),
        ("scim", Some("0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef"))
    );

    // Found by userName in any case, and by externalId.
    for filter in [
        format!("userName eq \"{}\"", user_name.to_lowercase()),
        "externalId eq \"0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef\"".to_string(),
    ] {
        let (_, list, _) = scim(
            &app,
            "GET",
            &format!(
                "/scim/v2/Users?filter={}",
                url::form_urlencoded::byte_serialize(filter.as_bytes()).collect::<String>()
            ),
            None,
        )
        .await;
        assert_eq!(list["totalResults"], 1, "{filter}: {list}");
        assert_eq!(list["Resources"][0]["id"], id.as_str());
    }
    let (status, fetched, _) = scim(&app, "GET", &format!("/scim/v2/Users/{id}"), None).await;
    assert_eq!((status, &fetched), (200, &created));

    // The PATCH forms Entra sends.
    let (status, patched, _) = scim(&app, "PATCH", &format!("/scim/v2/Users/{id}"), Some(patch(json!([
        {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "updatedEmail@microsoft.com"},
        {"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"},
        {"op": "Replace", "path": "displayName", "value": "Dr Updated Name"},
        {"op": "Add", "path": "title", "value": "Staff Nurse"},
        {"op": "Replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber", "value": "E0043"}
    ])))).await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["emails"][0]["value"], "updatedEmail@microsoft.com");
    assert_eq!(patched["displayName"], "Dr Updated Name");
    assert_eq!(patched["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["employeeNumber"], "E0043");
    // No path, an object value.
    let (status, patched, _) = scim(
        &app,
        "PATCH",
        &format!("/scim/v2/Users/{id}"),
        Some(patch(json!([{"op": "replace", "value": {"displayName": "Dr Again", "externalId": "ext-2"}}]))),
    )
    .await;
    assert_eq!(
        (status, patched["displayName"].as_str(), patched["externalId"].as_str()),
        (200, Some("Dr Again"), Some("ext-2"))
    );

    // Entra deactivates them: their sessions end (ward PCs lock, RPs get
    // back-channel logout).
    let _ = app.state.store.take_session_revocations().await.unwrap();
    let (status, off, _) = scim(
        &app,
        "PATCH",
        &format!("/scim/v2/Users/{id}"),
        Some(patch(json!([{"op": "Replace", "path": "active", "value": "False"}]))),
    )
    .await;
    assert_eq!((status, off["active"].as_bool()), (200, Some(false)), "Entra's string \"False\" is false: {off}");
    assert!(app.state.store.user_by_id(&id).await.unwrap().unwrap().disabled);
    assert_eq!(app.state.store.take_session_revocations().await.unwrap(), vec![id.clone()], "their sessions end");
    // An admin's emergency disable stands against the provisioner.
    let name = app.state.store.user_by_id(&id).await.unwrap().unwrap().username;
    app.state.store.set_user_disabled(&name, true, 0).await.unwrap();
    let (status, held, _) = scim(
        &app,
        "PATCH",
        &format!("/scim/v2/Users/{id}"),
        Some(patch(json!([{"op": "Replace", "path": "active", "value": true}]))),
    )
    .await;
    assert_eq!((status, held["active"].as_bool()), (200, Some(false)), "held by the admin: {held}");
    app.state.store.set_user_disabled(&name, false, 0).await.unwrap();
    let (status, on, _) = scim(
        &app,
        "PATCH",
        &format!("/scim/v2/Users/{id}"),
        Some(patch(json!([{"op": "Replace", "path": "active", "value": true}]))),
    )
    .await;
    assert_eq!((status, on["active"].as_bool()), (200, Some(true)));

    // Replace (PUT) with If-Match: the current version passes, a stale one
    // is refused and changes nothing.
    let (_, current, etag) = scim(&app, "GET", &format!("/scim/v2/Users/{id}"), None).await;
    let mut replacement = entra_user(user_name, "ext-2");
    replacement["displayName"] = "Replaced".into();
    let stale = app
        .http
        .put(app.url(&format!("/scim/v2/Users/{id}")))
        .bearer_auth(TOKEN)
        .header("if-match", "W/\"0000000000000000\"")
        .body(replacement.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 412);
    let (_, unchanged, _) = scim(&app, "GET", &format!("/scim/v2/Users/{id}"), None).await;
    assert_eq!(unchanged, current);
    let fresh = app
        .http
        .put(app.url(&format!("/scim/v2/Users/{id}")))
        .bearer_auth(TOKEN)
        .header("if-match", etag.unwrap())
        .body(replacement.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status(), 200);
    assert_eq!(fresh.json::<Value>().await.unwrap()["displayName"], "Replaced");

    // Delete: gone for SCIM (404), disabled and kept in Wardkey.
    let (status, _, _) = scim(&app, "DELETE", &format!("/scim/v2/Users/{id}"), None).await;
    assert_eq!(status, 204);
    let (status, gone, _) = scim(&app, "GET", &format!("/scim/v2/Users/{id}"), None).await;
    assert_eq!(status, 404, "{gone}");
    let kept = app.state.store.user_by_id(&id).await.unwrap().unwrap();
    assert!(kept.disabled);
    assert_eq!(kept.source, "scim:deleted");
    let audit = app.state.store.recent_audit(20).await.unwrap();
    assert!(audit.iter().any(|e| e.event == "scim.user.delete" && e.actor == "scim:entra-id"), "{audit:?}");
    // Provisioned again later: the same person, the same sub.
    let (status, again, _) = scim(&app, "POST", "/scim/v2/Users", Some(entra_user(user_name, "ext-2"))).await;
    assert_eq!((status, again["id"].as_str()), (201, Some(id.as_str())));
    // Someone else with that userName later (another externalId) does not
    // inherit the person's sub, badges or keys.
    scim(&app, "DELETE", &format!("/scim/v2/Users/{id}"), None).await;
    let (status, error, _) = scim(&app, "POST", "/scim/v2/Users", Some(entra_user(user_name, "someone-else"))).await;
    assert_eq!(status, 409, "{error}");
}

/// Everything a provisioner can get wrong is refused in SCIM's error format,
/// and nothing is half-written.
#[tokio::test]
async fn bad_scim_requests_get_scim_errors_and_change_nothing() {
    let app = scim_app().await;
    // No token, a wrong token.
    let r = app.http.get(app.url("/scim/v2/Users")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("www-authenticate").unwrap().to_str().unwrap().starts_with("Bearer"));
    let r = app.http.get(app.url("/scim/v2/Users")).bearer_auth("not-the-token").send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_scim_error(&r.json().await.unwrap(), 401, None, "bearer token");

    let (status, created, _) = scim(&app, "POST", "/scim/v2/Users", Some(entra_user("jo.bloggs", "x-1"))).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap();
    let users_before = app.state.store.list_users().await.unwrap();

    let not_json =
        app.http.post(app.url("/scim/v2/Users")).bearer_auth(TOKEN).body("{userName: jo").send().await.unwrap();
    assert_eq!(not_json.status(), 400);
    assert_scim_error(&not_json.json().await.unwrap(), 400, Some("invalidSyntax"), "not JSON");
    for (body, scim_type, words) in [
        (json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"]}), "invalidValue", "userName is required"),
        (json!({"userName": "has space"}), "invalidValue", "not a valid username"),
        (json!({"userName": "ok.name", "active": "maybe"}), "invalidValue", "active must be true or false"),
        (json!({"userName": "ok.name", "emails": "x@y.uk"}), "invalidValue", "emails must be a list"),
    ] {
        let (status, error, _) = scim(&app, "POST", "/scim/v2/Users", Some(body.clone())).await;
        assert_eq!(status, 400, "{body}");
        assert_scim_error(&error, 400, Some(scim_type), words);
    }
    // A taken userName (in another case).
    let (status, error, _) = scim(&app, "POST", "/scim/v2/Users", Some(entra_user("JO.BLOGGS", "x-2"))).await;
    assert_eq!(status, 409);
    assert_scim_error(&error, 409, Some("uniqueness"), "taken");
    // PATCH: a path that does not exist, a read-only one, a bad op, no
    // Operations; one bad operation among good ones writes nothing.
    for (operations, scim_type, words) in [
        (
            json!([{"op": "replace", "path": "displayName", "value": "Changed"}, {"op": "replace", "path": "shoeSize", "value": 9}]),
            "invalidPath",
            "\"shoeSize\" names no attribute",
        ),
        (json!([{"op": "replace", "path": "id", "value": "mine"}]), "mutability", "read-only"),
        (json!([{"op": "frobnicate", "path": "displayName", "value": "x"}]), "invalidSyntax", "not a PATCH op"),
        (
            json!([{"op": "replace", "path": "emails[type co \"work\"].value", "value": "a@b.uk"}]),
            "invalidFilter",
            "only `attribute eq value`",
        ),
    ] {
        let (status, error, _) =
            scim(&app, "PATCH", &format!("/scim/v2/Users/{id}"), Some(patch(operations.clone()))).await;
        assert_eq!(status, 400, "{operations}");
        assert_scim_error(&error, 400, Some(scim_type), words);
    }
    let (status, error, _) = scim(&app, "PATCH", &format!("/scim/v2/Users/{id}"), Some(json!({"schemas": []}))).await;
    assert_eq!(status, 400);
    assert_scim_error(&error, 400, Some("invalidSyntax"), "Operations");
    // Unsupported filters, bad paging, unknown ids.
    let (status, error, _) = scim(&app, "GET", "/scim/v2/Users?filter=title%20sw%20%22Dr%22", None).await;
    assert_eq!(status, 400);
    assert_scim_error(&error, 400, Some("invalidFilter"), "supports");
    let (status, _, _) = scim(&app, "GET", "/scim/v2/Users?startIndex=abc", None).await;
    assert_eq!(status, 400);
    let (status, error, _) = scim(&app, "GET", "/scim/v2/Users/no-such-id", None).await;
    assert_eq!(status, 404);
    assert_scim_error(&error, 404, None, "no SCIM user");
    assert_eq!(app.state.store.list_users().await.unwrap(), users_before, "nothing was written");

    // Thirty creates of one userName at once (a provisioner retrying):
    // exactly one user, the rest told it is taken.
    let creates =
        (0..30).map(|i| scim(&app, "POST", "/scim/v2/Users", Some(entra_user("race.user", &format!("r-{i}")))));
    let statuses: Vec<u16> = futures_util::future::join_all(creates).await.into_iter().map(|(s, _, _)| s).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| matches!(s, 201 | 409)), "{statuses:?}");
    let race: Vec<_> =
        app.state.store.list_users().await.unwrap().into_iter().filter(|u| u.username == "race.user").collect();
    assert_eq!(race.len(), 1);
    // Another party's token, and a body far past the limit.
    let other = app.http.get(app.url("/scim/v2/Users")).bearer_auth(format!("{TOKEN}x")).send().await.unwrap();
    assert_eq!(other.status(), 401);
    let huge = json!({"userName": "big", "displayName": "x".repeat(4 * 1024 * 1024)});
    let r = app.http.post(app.url("/scim/v2/Users")).bearer_auth(TOKEN).body(huge.to_string()).send().await.unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(app.state.store.user_by_username("big").await.unwrap(), None);

    // A user made by hand is linked, keeping their sub and password; one
    // that another directory owns cannot be taken over.
    let local = app.add_user("sam.local").await;
    let (status, linked, _) = scim(&app, "POST", "/scim/v2/Users", Some(entra_user("sam.local", "x-3"))).await;
    assert_eq!((status, linked["id"].as_str()), (201, Some(local.id.as_str())));
    assert!(app.state.store.credential(&local.id, CredentialKind::Password).await.unwrap().is_some());
    // A hand-made user an admin disabled is not enabled by linking.
    app.add_user("held.local").await;
    app.state.store.set_user_disabled("held.local", true, 0).await.unwrap();
    let (status, _, _) = scim(&app, "POST", "/scim/v2/Users", Some(entra_user("held.local", "x-4"))).await;
    assert_eq!(status, 409);
    assert!(app.state.store.user_by_username("held.local").await.unwrap().unwrap().disabled);
    // Users SCIM did not make are not SCIM's to read.
    let other = app.add_user("not.scim").await;
    let (status, _, _) = scim(&app, "GET", &format!("/scim/v2/Users/{}", other.id), None).await;
    assert_eq!(status, 404);
}

/// Paging (RFC 7644 §3.4.2.4) and the discovery resources.
#[tokio::test]
async fn scim_lists_page_and_describe_themselves() {
    let app = scim_app().await;
    for i in 0..5 {
        let (status, _, _) =
            scim(&app, "POST", "/scim/v2/Users", Some(entra_user(&format!("user{i}"), &format!("e{i}")))).await;
        assert_eq!(status, 201);
    }
    let (_, page, _) = scim(&app, "GET", "/scim/v2/Users?startIndex=2&count=2", None).await;
    assert_eq!(
        (page["totalResults"].as_u64(), page["startIndex"].as_u64(), page["itemsPerPage"].as_u64()),
        (Some(5), Some(2), Some(2))
    );
    assert_eq!(page["Resources"][0]["userName"], "user1");
    let (_, none, _) = scim(&app, "GET", "/scim/v2/Users?count=0", None).await;
    assert_eq!((none["totalResults"].as_u64(), none["Resources"].as_array().map(Vec::len)), (Some(5), Some(0)));

    let (status, config, _) = scim(&app, "GET", "/scim/v2/ServiceProviderConfig", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        (config["patch"]["supported"].as_bool(), config["etag"]["supported"].as_bool()),
        (Some(true), Some(true))
    );
    assert_eq!(config["authenticationSchemes"][0]["type"], "oauthbearertoken");
    let (_, types, _) = scim(&app, "GET", "/scim/v2/ResourceTypes", None).await;
    assert_eq!(types["Resources"][0]["endpoint"], "/Users");
    assert_eq!(types["Resources"][1]["endpoint"], "/Groups");
    let (_, schemas, _) = scim(&app, "GET", "/scim/v2/Schemas", None).await;
    assert_eq!(schemas["totalResults"], 3);
}

/// A SCIM client nobody here wrote: scim2-tester (PyPI, on the scim2-client
/// library) creates, reads, queries, replaces, patches and deletes users
/// and groups, and reads the discovery resources. What it still flags is Wardkey's
/// model, listed here so that anything else failing, or any of these
/// passing, shows: one display name (no given/family names kept), one work
/// email (its type and primary flag are not kept), and an externalId and
/// active that always have a value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_party_scim_checker_passes_all_but_the_known_model_limits() {
    let app = scim_app().await;
    let venv = std::env::var("WARDKEY_SCIM_VENV")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/target/scim-venv").to_string());
    let python = format!("{venv}/bin/python");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/scim_conformance.py");
    let (base, python_for_run) = (app.base.clone(), python.clone());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(&python_for_run).args([script, &base, TOKEN]).output()
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| {
        panic!(
            "cannot run {python} ({e}): run the README's test command, ./scripts/test, which makes that virtualenv \
             with scim2-tester from PyPI"
        )
    });
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let results: Vec<Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let known = [
        ("check_add_attribute", "for 'name'"),
        ("check_add_attribute", "for 'emails'"),
        ("check_replace_attribute", "for 'name'"),
        ("check_replace_attribute", "for 'emails'"),
        ("check_remove_attribute", "attribute 'externalId'"),
        ("check_remove_attribute", "attribute 'displayName'"),
        ("check_remove_attribute", "attribute 'name'"),
        ("check_remove_attribute", "attribute 'active'"),
    ];
    let mut unexpected = Vec::new();
    let mut known_seen = 0;
    for r in &results {
        let (status, title, reason) =
            (r["status"].as_str().unwrap(), r["title"].as_str().unwrap(), r["reason"].as_str().unwrap());
        if matches!(status, "SUCCESS" | "SKIPPED") {
            continue;
        }
        if known.iter().any(|(t, words)| *t == title && reason.contains(words)) {
            known_seen += 1;
        } else {
            unexpected.push(r.clone());
        }
    }
    assert!(unexpected.is_empty(), "scim2-tester found: {unexpected:#?}");
    assert_eq!(known_seen, known.len(), "a known limit now passes or is reported differently: {results:#?}");
    let passed = results.iter().filter(|r| r["status"] == "SUCCESS").count();
    assert!(passed >= 60, "{passed} checks passed: {results:#?}");
}

/// Groups as Entra ID provisions them: create, read without members, find
/// by displayName, add and remove members in both forms, rename, delete;
/// each member's `roles` follows the groups they are in (`[scim] roles`).
#[tokio::test]
async fn entra_id_groups_set_their_members_roles() {
    let app = scim_app().await;
    let (_, ann, _) = scim(&app, "POST", "/scim/v2/Users", Some(entra_user("ann.nurse", "u-ann"))).await;
    let (_, bob, _) = scim(&app, "POST", "/scim/v2/Users", Some(entra_user("bob.doctor", "u-bob"))).await;
    let (ann, bob) = (ann["id"].as_str().unwrap().to_string(), bob["id"].as_str().unwrap().to_string());
    let roles = |id: String| {
        let store = app.state.store.clone();
        async move { store.user_by_id(&id).await.unwrap().unwrap().roles }
    };

    let (status, group, _) = scim(
        &app,
        "POST",
        "/scim/v2/Groups",
        Some(json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
            "displayName": "Ward 7 Nurses",
            "meta": {"resourceType": "Group"}
        })),
    )
    .await;
    assert_eq!(status, 201, "{group}");
    let gid = group["id"].as_str().unwrap().to_string();
    let (status, no_members, _) =
        scim(&app, "GET", &format!("/scim/v2/Groups/{gid}?excludedAttributes=members"), None).await;
    assert_eq!((status, no_members.get("members")), (200, None), "{no_members}");
    let (_, found, _) = scim(
        &app,
        "GET",
        "/scim/v2/Groups?excludedAttributes=members&filter=displayName%20eq%20%22ward%207%20nurses%22",
        None,
    )
    .await;
    assert_eq!((found["totalResults"].as_u64(), found["Resources"][0]["id"].as_str()), (Some(1), Some(gid.as_str())));

    // Add both, remove Bob by list, then Ann by filter.
    let (status, _, _) = scim(
        &app,
        "PATCH",
        &format!("/scim/v2/Groups/{gid}"),
        Some(patch(json!([
            {"op": "Add", "path": "members", "value": [{"$ref": null, "value": ann}, {"$ref": null, "value": bob}]}
        ]))),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        (roles(ann.clone()).await, roles(bob.clone()).await),
        (vec!["R8001".to_string()], vec!["R8001".to_string()])
    );
    let (_, after, _) = scim(
        &app,
        "PATCH",
        &format!("/scim/v2/Groups/{gid}"),
        Some(patch(json!([
            {"op": "Remove", "path": "members", "value": [{"$ref": null, "value": bob}]}
        ]))),
    )
    .await;
    assert_eq!(after["members"].as_array().unwrap().len(), 1, "{after}");
    assert!(roles(bob.clone()).await.is_empty());
    // A consultants' group for Bob; renaming the nurses' group changes Ann's role.
    let (_, consultants, _) =
        scim(&app, "POST", "/scim/v2/Groups", Some(json!({"displayName": "Consultants", "members": [{"value": bob}]})))
            .await;
    assert_eq!(roles(bob.clone()).await, ["R8000"]);
    let (status, _, _) = scim(
        &app,
        "PATCH",
        &format!("/scim/v2/Groups/{gid}"),
        Some(patch(json!([{"op": "Replace", "path": "displayName", "value": "Consultants On Call"}]))),
    )
    .await;
    assert_eq!(status, 200);
    assert!(roles(ann.clone()).await.is_empty(), "a group the map does not name gives no role");
    let (status, _, _) = scim(
        &app,
        "PATCH",
        &format!("/scim/v2/Groups/{gid}"),
        Some(patch(json!([{"op": "Remove", "path": format!("members[value eq \"{ann}\"]")}]))),
    )
    .await;
    assert_eq!(status, 200);
    let (_, emptied, _) = scim(&app, "GET", &format!("/scim/v2/Groups/{gid}"), None).await;
    assert_eq!(emptied["members"], json!([]));

    // Refused, and nothing changes: a member nobody is, a taken name, a
    // path a group does not have.
    let (status, error, _) = scim(
        &app,
        "PATCH",
        &format!("/scim/v2/Groups/{gid}"),
        Some(patch(json!([{"op": "Add", "path": "members", "value": [{"value": ann}, {"value": "no-such-user"}]}]))),
    )
    .await;
    assert_eq!(status, 400);
    assert_scim_error(&error, 400, Some("invalidValue"), "no SCIM user has id \"no-such-user\"");
    assert!(roles(ann.clone()).await.is_empty(), "nothing was written");
    let (status, error, _) = scim(&app, "POST", "/scim/v2/Groups", Some(json!({"displayName": "consultants"}))).await;
    assert_eq!(status, 409);
    assert_scim_error(&error, 409, Some("uniqueness"), "already called");
    let (status, error, _) = scim(
        &app,
        "PATCH",
        &format!("/scim/v2/Groups/{gid}"),
        Some(patch(json!([{"op": "Replace", "path": "owner", "value": "x"}]))),
    )
    .await;
    assert_eq!(status, 400);
    assert_scim_error(&error, 400, Some("invalidPath"), "\"owner\"");
    let (status, error, _) = scim(&app, "POST", "/scim/v2/Groups", Some(json!({"members": []}))).await;
    assert_eq!(status, 400);
    assert_scim_error(&error, 400, Some("invalidValue"), "displayName is required");

    // Deleting a group takes its role away.
    let cid = consultants["id"].as_str().unwrap();
    let (status, _, _) = scim(&app, "DELETE", &format!("/scim/v2/Groups/{cid}"), None).await;
    assert_eq!(status, 204);
    assert!(roles(bob.clone()).await.is_empty());
    let (status, _, _) = scim(&app, "GET", &format!("/scim/v2/Groups/{cid}"), None).await;
    assert_eq!(status, 404);
    let audit = app.state.store.recent_audit(50).await.unwrap();
    assert!(audit.iter().any(|e| e.event == "scim.group.delete" && e.actor == "scim:entra-id"), "{audit:?}");
}
