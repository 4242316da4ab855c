//! `wardkey user import`: a CSV staff extract (the shape of an NHS ESR
//! export) into local users, through the same plan and one-transaction
//! write as a directory sync.
//!
//! Columns are found by their headers, whatever their case, spacing or
//! order; ESR's many other columns are ignored. Each person is keyed by
//! employee number (their external id), so a second import updates rather
//! than duplicates, and links a user first made by hand by username. An
//! extract may leave people out: nobody is disabled for being missing, only
//! for an assignment status that says terminated or suspended.

use serde_json::json;
use wardkey_core::user::{DirectoryRecord, LOCAL, validate_email, validate_username};
use wardkey_store::Store;

use crate::config::LinkBy;
use crate::error::DirectoryError;
use crate::sync::{SyncReport, plan};

/// Most row errors listed.
const ERRORS_SHOWN: usize = 20;

/// Header spellings of each column we use (compared lower case, without
/// spaces, `_` or `-`).
const USERNAME: &[&str] = &["username", "login", "loginname", "samaccountname", "networkusername"];
const EMPLOYEE_NUMBER: &[&str] = &["employeenumber", "employeeno", "staffnumber", "esrnumber"];
const FIRST: &[&str] = &["firstname", "forename", "forenames", "givenname"];
const LAST: &[&str] = &["lastname", "surname", "familyname"];
const FULL: &[&str] = &["fullname", "displayname", "name"];
const EMAIL: &[&str] = &["email", "emailaddress", "workemail", "workemailaddress", "nhsmail"];
const ROLES: &[&str] = &["role", "roles", "rolecode", "rolecodes", "rbacroles"];
const STATUS: &[&str] = &["assignmentstatus", "status", "employmentstatus"];

fn column(headers: &[String], names: &[&str]) -> Option<usize> {
    headers.iter().position(|h| names.contains(&h.as_str()))
}

/// A bad extract: every problem found, with row numbers as a spreadsheet
/// shows them (the header is row 1).
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct ExtractError(pub Vec<String>);

/// Read an extract into records, or every reason it cannot be imported.
pub fn parse(csv_text: &str) -> Result<Vec<DirectoryRecord>, ExtractError> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::All).from_reader(csv_text.as_bytes());
    let raw_headers = reader.headers().map_err(|e| ExtractError(vec![format!("row 1: not CSV: {e}")]))?.clone();
    let headers: Vec<String> = raw_headers
        .iter()
        .map(|h| {
            h.trim_start_matches('\u{feff}')
                .chars()
                .filter(|c| !matches!(c, ' ' | '_' | '-'))
                .collect::<String>()
                .to_lowercase()
        })
        .collect();
    let (Some(username), Some(employee)) = (column(&headers, USERNAME), column(&headers, EMPLOYEE_NUMBER)) else {
        return Err(ExtractError(vec![format!(
            "row 1: the extract needs a \"Username\" and an \"Employee Number\" column; its columns are: {}",
            raw_headers.iter().collect::<Vec<_>>().join(", ")
        )]));
    };
    let (first, last, full) = (column(&headers, FIRST), column(&headers, LAST), column(&headers, FULL));
    let (email, roles, status) = (column(&headers, EMAIL), column(&headers, ROLES), column(&headers, STATUS));
    let mut records = Vec::new();
    let mut errors = Vec::new();
    let mut seen_usernames = std::collections::HashMap::new();
    let mut seen_numbers = std::collections::HashMap::new();
    for (i, row) in reader.records().enumerate() {
        let line = i + 2;
        let row = match row {
            Ok(row) => row,
            Err(e) => {
                errors.push(format!("row {line}: not CSV: {e}"));
                continue;
            }
        };
        let get = |c: Option<usize>| c.and_then(|c| row.get(c)).map(str::trim).filter(|v| !v.is_empty());
        let Some(name) = get(Some(username)) else {
            errors.push(format!("row {line}: no username"));
            continue;
        };
        if let Err(e) = validate_username(name) {
            errors.push(format!("row {line}: {e}"));
            continue;
        }
        let Some(number) = get(Some(employee)) else {
            errors.push(format!("row {line}: {name} has no employee number"));
            continue;
        };
        if let Some(earlier) = seen_usernames.insert(name.to_ascii_lowercase(), line) {
            errors.push(format!("row {line}: username {name} is also on row {earlier}"));
            continue;
        }
        if let Some(earlier) = seen_numbers.insert(number.to_string(), line) {
            errors.push(format!("row {line}: employee number {number} is also on row {earlier}"));
            continue;
        }
        let email = get(email).map(str::to_string);
        if let Some(address) = &email
            && let Err(e) = validate_email(address)
        {
            errors.push(format!("row {line}: {e}"));
            continue;
        }
        let display = match (get(full), get(first), get(last)) {
            (Some(full), _, _) => Some(full.to_string()),
            (None, Some(f), Some(l)) => Some(format!("{f} {l}")),
            (None, f, l) => f.or(l).map(str::to_string),
        };
        let mut role_codes: Vec<String> = get(roles)
            .map(|r| r.split([';', '|', ',']).map(str::trim).filter(|r| !r.is_empty()).map(str::to_string).collect())
            .unwrap_or_default();
        role_codes.sort();
        role_codes.dedup();
        let disabled = get(status).is_some_and(|s| {
            let s = s.to_ascii_lowercase();
            s.contains("terminat") || s.contains("suspend") || s.contains("inactive")
        });
        records.push(DirectoryRecord {
            external_id: number.to_string(),
            username: name.to_string(),
            name: display,
            email,
            employee_number: Some(number.to_string()),
            roles: role_codes,
            disabled,
        });
    }
    if errors.is_empty() {
        Ok(records)
    } else {
        let total = errors.len();
        errors.truncate(ERRORS_SHOWN);
        if total > ERRORS_SHOWN {
            errors.push(format!("… and {} more", total - ERRORS_SHOWN));
        }
        errors.push(format!("nothing was imported: fix the {total} row(s) above and run the import again"));
        Err(ExtractError(errors))
    }
}

/// Import `records` as local users (creating, updating, linking by
/// username; a terminated or suspended assignment disables) in one
/// transaction, unless `dry_run`; audited as `user.import` by `actor`.
pub async fn import(
    store: &dyn Store,
    records: Vec<DirectoryRecord>,
    now: i64,
    dry_run: bool,
    actor: &str,
) -> Result<SyncReport, DirectoryError> {
    let started = std::time::Instant::now();
    let existing = store.list_users().await?;
    let mut plan = plan("import", LOCAL, records, &existing, LinkBy::Username, false);
    plan.report.dry_run = dry_run;
    if !dry_run && !plan.changes.is_empty() {
        store.apply_user_changes(&plan.changes, now).await?;
        let r = &plan.report;
        let detail = json!({"created": r.created, "updated": r.updated, "linked": r.linked, "disabled": r.disabled,
            "skipped": r.skipped, "disabled_users": r.disabled_users});
        let event = wardkey_core::audit::AuditEvent {
            at: now,
            event: "user.import".into(),
            actor: actor.into(),
            subject: "staff extract".into(),
            detail,
        };
        if let Err(e) = store.append_audit(&event).await {
            tracing::error!(error = %e, "could not write an audit record");
        }
    }
    plan.report.seconds = started.elapsed().as_secs_f64();
    Ok(plan.report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_found_by_header_whatever_the_order_and_spelling() {
        let csv = "\u{feff}Assignment Number,Surname,First Name,Employee Number,Work Email,User Name,Assignment Status,Role\n\
                   1-A,Okafor,Alice,E001,alice.okafor@nhs.net,aokafor,Active Assignment,R8000;R8001\n\
                   2-B,Hughes,Bob,E002,,bhughes,Terminate Assignment,\n";
        let records = parse(csv).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].username, "aokafor");
        assert_eq!(records[0].name.as_deref(), Some("Alice Okafor"));
        assert_eq!(records[0].external_id, "E001");
        assert_eq!(records[0].roles, ["R8000", "R8001"]);
        assert!(!records[0].disabled);
        assert!(records[1].disabled, "a terminated assignment disables");
        assert_eq!(records[1].email, None);
    }

    #[test]
    fn every_bad_row_is_named_and_nothing_is_taken() {
        let csv = "Username,Employee Number,Email\n\
                   good,E1,good@nhs.net\n\
                   ,E2,\n\
                   bad name,E3,\n\
                   nonumber,,\n\
                   GOOD,E4,\n\
                   other,E1,\n\
                   mail,E5,not-an-address\n";
        let e = parse(csv).unwrap_err().to_string();
        for needle in [
            "row 3: no username",
            "row 4: username: \"bad name\" is not a valid username",
            "row 5: nonumber has no employee number",
            "row 6: username GOOD is also on row 2",
            "row 7: employee number E1 is also on row 2",
            "row 8: email: \"not-an-address\" is not an email address",
            "nothing was imported: fix the 6 row(s)",
        ] {
            assert!(e.contains(needle), "{needle:?} in {e}");
        }
        let e = parse("Name,Email\nAlice,a@nhs.net\n").unwrap_err().to_string();
        assert!(
            e.contains("needs a \"Username\" and an \"Employee Number\" column; its columns are: Name, Email"),
            "{e}"
        );
    }
}
