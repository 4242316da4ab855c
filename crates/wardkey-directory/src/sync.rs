//! A sync: read the whole source, work out what changes, check the
//! change is believable, write it in one transaction.
//!
//! [`plan`] is the rule (no I/O): match each entry to the user it is by
//! the source's id, else link it to a user Wardkey has from elsewhere by
//! the configured attribute, else create one; disable, never delete, the
//! source's users no longer found. [`run`] does the I/O around it.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use serde::Serialize;
use serde_json::json;
use wardkey_core::audit::AuditEvent;
use wardkey_core::user::{DirectoryRecord, LOCAL, User, ldap_source};
use wardkey_store::{Store, UserChange};

use crate::config::{DirectorySettings, LinkBy};
use crate::error::DirectoryError;
use crate::ldap::LdapDirectory;

/// Most entries listed in a report's `skipped` (the count is exact).
const SKIPPED_SHOWN: usize = 20;

/// What a sync did (or, in a dry run, would do).
#[derive(Debug, Default, Serialize)]
pub struct SyncReport {
    /// The source's name.
    pub source: String,
    /// Whether nothing was written.
    pub dry_run: bool,
    /// User entries read.
    pub read: usize,
    /// Users created.
    pub created: usize,
    /// Users whose details changed.
    pub updated: usize,
    /// Users made elsewhere, now linked to their directory entry.
    pub linked: usize,
    /// Users disabled (disabled in the directory, or gone from it).
    pub disabled: usize,
    /// Users already as the directory says.
    pub unchanged: usize,
    /// Entries left out.
    pub skipped: usize,
    /// Why, for the first few.
    pub skipped_entries: Vec<String>,
    /// Usernames disabled by this sync.
    pub disabled_users: Vec<String>,
    /// LDAP requests that waited for an answer.
    pub round_trips: u32,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// The changes one sync makes, with its report.
#[derive(Debug, Default)]
pub struct Plan {
    /// What to write.
    pub changes: Vec<UserChange>,
    /// The counts.
    pub report: SyncReport,
    /// Users of this source enabled before the sync.
    pub enabled_before: usize,
}

fn key(text: &str) -> String {
    text.to_ascii_lowercase()
}

/// Work out what the records of `source` (a [`User::source`] value, e.g.
/// `ldap:ad`, shown in the report as `name`) change among `existing` users.
/// With `disable_missing`, the source's users not among `records` are
/// disabled (a directory lists everyone; an extract may not).
pub fn plan(
    name: &str,
    source: &str,
    records: Vec<DirectoryRecord>,
    existing: &[User],
    link_by: LinkBy,
    disable_missing: bool,
) -> Plan {
    let source = source.to_string();
    let mut plan = Plan {
        report: SyncReport { source: name.to_string(), read: records.len(), ..Default::default() },
        ..Default::default()
    };
    let by_external: HashMap<&str, &User> = existing
        .iter()
        .filter(|u| u.source == source)
        .filter_map(|u| u.external_id.as_deref().map(|id| (id, u)))
        .collect();
    let by_username: HashMap<String, &User> = existing.iter().map(|u| (key(&u.username), u)).collect();
    let link_key = |u: &User| -> Option<String> {
        match link_by {
            LinkBy::Username => Some(key(&u.username)),
            LinkBy::Email => u.email.as_deref().map(key),
            LinkBy::EmployeeNumber => u.employee_number.clone(),
            LinkBy::None => None,
        }
    };
    // Only a user made by hand, tied to no entry yet and enabled, may be
    // linked: never another source's user (two sources would fight over
    // them), never one already tied to an entry (a username reused for a
    // new starter would inherit a leaver's sub, badges and keys), never a
    // disabled one (linking would enable them again).
    let mut by_link: HashMap<String, Vec<&User>> = HashMap::new();
    for u in existing.iter().filter(|u| u.source == LOCAL && u.external_id.is_none() && !u.disabled) {
        if let Some(k) = link_key(u) {
            by_link.entry(k).or_default().push(u);
        }
    }
    plan.enabled_before = existing.iter().filter(|u| u.source == source && !u.disabled).count();

    let mut seen_ids = HashSet::new();
    let mut seen_usernames = HashSet::new();
    // Each user takes one record: those matched by their entry's id first,
    // so a link can never take a user whose own entry is still there.
    let mut claimed: HashSet<&str> =
        records.iter().filter_map(|r| by_external.get(r.external_id.as_str()).map(|u| u.id.as_str())).collect();
    let skip = |report: &mut SyncReport, why: String| {
        report.skipped += 1;
        if report.skipped_entries.len() < SKIPPED_SHOWN {
            report.skipped_entries.push(why);
        }
    };
    for record in records {
        if seen_ids.contains(&record.external_id) || !seen_usernames.insert(key(&record.username)) {
            skip(&mut plan.report, format!("{}: a second entry with this id or username", record.username));
            continue;
        }
        let record_link = match link_by {
            LinkBy::Username => Some(key(&record.username)),
            LinkBy::Email => record.email.as_deref().map(key),
            LinkBy::EmployeeNumber => record.employee_number.clone(),
            LinkBy::None => None,
        };
        let current = match by_external.get(record.external_id.as_str()) {
            Some(user) => Some(*user),
            None => match record_link.as_ref().and_then(|k| by_link.get(k)).map(Vec::as_slice) {
                Some([user]) if claimed.insert(user.id.as_str()) => Some(*user),
                Some([_]) => {
                    skip(&mut plan.report, format!("{}: its link matches a user another entry has", record.username));
                    continue;
                }
                Some(several) if several.len() > 1 => {
                    skip(
                        &mut plan.report,
                        format!(
                            "{}: {} users share its {link_by:?} value, so none is linked",
                            record.username,
                            several.len()
                        ),
                    );
                    continue;
                }
                _ => None,
            },
        };
        seen_ids.insert(record.external_id.clone());
        match current {
            Some(user) => {
                // An admin's disable stands whatever the directory says (the
                // store keeps a held user disabled; here so that the report
                // does not count it as a change every sync).
                let record = DirectoryRecord { disabled: record.disabled || user.held, ..record };
                // The username may not move onto someone else's.
                if let Some(other) = by_username.get(&key(&record.username))
                    && other.id != user.id
                {
                    if record.disabled && !user.disabled {
                        // Still disabled, though its new name is taken.
                        plan.report.disabled += 1;
                        plan.report.disabled_users.push(user.username.clone());
                        plan.changes.push(UserChange::Disable { id: user.id.clone() });
                    }
                    skip(&mut plan.report, format!("{}: the username belongs to another user", record.username));
                    continue;
                }
                let linked = user.source != source || user.external_id.as_deref() != Some(&record.external_id);
                let same = !linked
                    && user.username == record.username
                    && user.name == record.name
                    && user.email == record.email
                    && user.employee_number == record.employee_number
                    && user.roles == record.roles
                    && user.disabled == record.disabled;
                if same {
                    plan.report.unchanged += 1;
                    continue;
                }
                if record.disabled && !user.disabled {
                    plan.report.disabled += 1;
                    plan.report.disabled_users.push(user.username.clone());
                } else if linked {
                    plan.report.linked += 1;
                } else {
                    plan.report.updated += 1;
                }
                plan.changes.push(UserChange::Update { id: user.id.clone(), source: source.clone(), record });
            }
            None => {
                if by_username.contains_key(&key(&record.username)) {
                    skip(
                        &mut plan.report,
                        format!(
                            "{}: the username belongs to a user this entry is not linked to (link_by is none, or the \
                             user is another source's, tied to another entry, or disabled): if it is the same \
                             person, remove or rename the old user first",
                            record.username
                        ),
                    );
                    continue;
                }
                plan.report.created += 1;
                plan.changes.push(UserChange::Create { source: source.clone(), record });
            }
        }
    }
    // Gone from the directory: disabled, never deleted.
    for user in existing.iter().filter(|u| disable_missing && u.source == source && !u.disabled) {
        if user.external_id.as_deref().is_some_and(|id| !seen_ids.contains(id)) {
            plan.report.disabled += 1;
            plan.report.disabled_users.push(user.username.clone());
            plan.changes.push(UserChange::Disable { id: user.id.clone() });
        }
    }
    plan
}

/// Sources that enabled users still name but the configuration no longer
/// has (renamed or removed), with how many: nobody syncs or disables those
/// users any more, and their badges keep working, so IT must hear of it.
pub fn orphaned_sources(users: &[User], settings: &DirectorySettings) -> Vec<(String, usize)> {
    let mut orphans: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for user in users.iter().filter(|u| !u.disabled) {
        if let Some(name) = user.ldap_source()
            && !settings.ldap.iter().any(|s| s.name == name)
        {
            *orphans.entry(name.to_string()).or_default() += 1;
        }
    }
    orphans.into_iter().collect()
}

/// Sync source `directory` into `store`: read, plan, check, write (unless
/// `dry_run`), audit. `force` lets through a sync that disables more than
/// `max_disable_share`.
pub async fn run(
    directory: &LdapDirectory,
    store: &dyn Store,
    settings: &DirectorySettings,
    now: i64,
    dry_run: bool,
    force: bool,
) -> Result<SyncReport, DirectoryError> {
    let started = Instant::now();
    let name = directory.name();
    let read = directory.read_all().await?;
    let existing = store.list_users().await?;
    let source = ldap_source(name);
    if read.records.is_empty() && existing.iter().any(|u| u.source == source && !u.disabled) {
        return Err(DirectoryError::NothingFound { name: name.to_string() });
    }
    let mut plan = plan(name, &source, read.records, &existing, directory.source().link_by, true);
    plan.report.round_trips = read.round_trips;
    plan.report.skipped += read.skipped.len();
    for why in read.skipped {
        if plan.report.skipped_entries.len() < SKIPPED_SHOWN {
            plan.report.skipped_entries.push(why);
        }
    }
    let allowed = ((settings.max_disable_share * plan.enabled_before as f64).ceil() as usize).max(1);
    if plan.report.disabled > allowed && !force {
        return Err(DirectoryError::TooManyDisabled {
            name: name.to_string(),
            would: plan.report.disabled,
            enabled: plan.enabled_before,
            allowed,
        });
    }
    plan.report.dry_run = dry_run;
    if !dry_run && !plan.changes.is_empty() {
        store.apply_user_changes(&plan.changes, now).await?;
        let actor = format!("directory:{name}");
        for username in &plan.report.disabled_users {
            audit(store, now, "user.disabled", &actor, username, json!({"by": "directory sync"})).await;
        }
        let detail = json!({
            "created": plan.report.created, "updated": plan.report.updated, "linked": plan.report.linked,
            "disabled": plan.report.disabled, "skipped": plan.report.skipped, "forced": force,
        });
        audit(store, now, "directory.sync", &actor, name, detail).await;
    }
    plan.report.seconds = started.elapsed().as_secs_f64();
    Ok(plan.report)
}

/// Audit records are best effort after the change committed: the change
/// stands, and a failure is logged.
async fn audit(store: &dyn Store, at: i64, event: &str, actor: &str, subject: &str, detail: serde_json::Value) {
    let record = AuditEvent { at, event: event.into(), actor: actor.into(), subject: subject.into(), detail };
    if let Err(e) = store.append_audit(&record).await {
        tracing::error!(error = %e, event, "could not write an audit record");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(username: &str) -> DirectoryRecord {
        DirectoryRecord {
            external_id: format!("id-{username}"),
            username: username.into(),
            name: None,
            email: Some(format!("{username}@trust.nhs.uk")),
            employee_number: None,
            roles: vec![],
            disabled: false,
        }
    }

    fn user(username: &str, source: &str, external_id: Option<&str>) -> User {
        User {
            id: format!("sub-{username}"),
            username: username.into(),
            name: None,
            email: Some(format!("{username}@trust.nhs.uk")),
            roles: vec![],
            disabled: false,
            failed_logins: 0,
            last_failed_at: None,
            created_at: 0,
            source: source.into(),
            external_id: external_id.map(Into::into),
            employee_number: None,
            held: false,
        }
    }

    #[test]
    fn links_by_the_configured_attribute_and_never_duplicates() {
        let existing = [user("Alice", "local", None), user("bob", "ldap:other", Some("x"))];
        let p = plan(
            "ad",
            "ldap:ad",
            vec![record("alice"), record("bob"), record("carol")],
            &existing,
            LinkBy::Username,
            true,
        );
        assert_eq!((p.report.linked, p.report.created, p.report.skipped), (1, 1, 1), "{:?}", p.report);
        assert!(matches!(&p.changes[0], UserChange::Update { id, .. } if id == "sub-Alice"));
        // Without linking, a taken username is skipped with a reason.
        let p = plan("ad", "ldap:ad", vec![record("alice")], &existing, LinkBy::None, true);
        assert_eq!((p.report.skipped, p.changes.len()), (1, 0));
        assert!(p.report.skipped_entries[0].contains("link_by"), "{:?}", p.report.skipped_entries);
    }

    #[test]
    fn gone_or_flagged_users_are_disabled_and_the_rest_unchanged() {
        let existing = [
            user("a", "ldap:ad", Some("id-a")),
            user("b", "ldap:ad", Some("id-b")),
            user("c", "ldap:ad", Some("id-c")),
        ];
        let flagged = DirectoryRecord { disabled: true, ..record("b") };
        let p = plan("ad", "ldap:ad", vec![record("a"), flagged], &existing, LinkBy::Username, true);
        assert_eq!((p.report.unchanged, p.report.disabled, p.enabled_before), (1, 2, 3));
        assert_eq!(p.report.disabled_users, ["b", "c"]);
        // The same directory again: nothing to write.
        let same =
            plan("ad", "ldap:ad", vec![record("a")], &[user("a", "ldap:ad", Some("id-a"))], LinkBy::Username, true);
        // An extract that leaves people out disables nobody.
        let partial = plan("esr", "local", vec![], &[user("a", "local", Some("id-a"))], LinkBy::Username, false);
        assert!(partial.changes.is_empty());
        assert!(same.changes.is_empty());
    }

    #[test]
    fn reused_usernames_and_other_sources_users_are_never_taken_over() {
        // A leaver's user (tied to their old entry), a SCIM user, a disabled
        // hand-made user: a new entry with their username links none of them.
        let mut gone = user("jsmith", "ldap:ad", Some("id-old"));
        gone.disabled = true;
        let mut held = user("admin", "local", None);
        held.disabled = true;
        let existing = [gone, user("sam", "scim", Some("x")), held];
        let p = plan(
            "ad",
            "ldap:ad",
            vec![record("jsmith"), record("sam"), record("admin")],
            &existing,
            LinkBy::Username,
            true,
        );
        assert!(p.changes.is_empty(), "{:?}", p.changes);
        assert_eq!(p.report.skipped, 3, "{:?}", p.report);
    }

    #[test]
    fn two_entries_never_land_on_one_user() {
        // jsmith renamed to jsmith.old (same id), and a new jsmith: the
        // new entry may not link to the renamed user by the old name.
        let existing = [user("jsmith", "local", None)];
        let renamed = DirectoryRecord { username: "jsmith.old".into(), ..record("jsmith") };
        let existing =
            [User { external_id: Some("id-jsmith".into()), source: "ldap:ad".into(), ..existing[0].clone() }];
        let newcomer = DirectoryRecord { external_id: "id-new".into(), ..record("jsmith") };
        let p = plan("ad", "ldap:ad", vec![newcomer, renamed], &existing, LinkBy::Username, true);
        let targets: Vec<&str> = p
            .changes
            .iter()
            .filter_map(|c| match c {
                UserChange::Update { id, .. } => Some(id.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(targets.len(), 1, "{:?}", p.changes);
        // Two hand-made users with one email: neither is linked by email.
        let a = User { email: Some("x@nhs.net".into()), ..user("a", "local", None) };
        let b = User { email: Some("x@nhs.net".into()), ..user("b", "local", None) };
        let c = DirectoryRecord { email: Some("X@nhs.net".into()), ..record("c") };
        let p = plan("ad", "ldap:ad", vec![c], &[a, b], LinkBy::Email, true);
        assert!(p.changes.is_empty() && p.report.skipped_entries[0].contains("2 users share"), "{:?}", p.report);
    }

    #[test]
    fn users_of_a_source_no_longer_configured_are_reported() {
        let users =
            [user("a", "ldap:old", Some("1")), user("b", "ldap:old", Some("2")), user("c", "ldap:ad", Some("3"))];
        let settings = DirectorySettings {
            ldap: vec![crate::LdapSource { name: "ad".into(), ..Default::default() }],
            ..Default::default()
        };
        assert_eq!(orphaned_sources(&users, &settings), [("old".to_string(), 2)]);
    }

    #[test]
    fn an_admins_disable_stands_whatever_the_directory_says() {
        let held = User { disabled: true, held: true, ..user("a", "ldap:ad", Some("id-a")) };
        let p = plan("ad", "ldap:ad", vec![record("a")], &[held], LinkBy::Username, true);
        assert!(p.changes.is_empty(), "not enabled again: {:?}", p.changes);
    }

    #[test]
    fn a_username_cannot_move_onto_another_user() {
        let existing = [user("a", "ldap:ad", Some("id-a")), user("b", "local", None)];
        let renamed = DirectoryRecord { username: "B".into(), ..record("a") };
        let p = plan("ad", "ldap:ad", vec![renamed], &existing, LinkBy::Username, true);
        assert_eq!((p.report.skipped, p.changes.len()), (1, 0), "{:?}", p.report);
    }
}
