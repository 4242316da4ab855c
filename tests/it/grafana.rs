//! The Grafana dashboard (`deploy/grafana/wardkey.json`) and the Prometheus
//! alert rules (`deploy/grafana/alerts.yml`) ask only for metrics the server
//! exports. Every PromQL expression in them (the dashboard's queries, nested
//! rows included, its `label_values(metric, label)` template variables, and
//! each rule's `expr`) is parsed with a real PromQL parser, and the metric
//! name of every selector is checked against `wardkey_proto::metrics::ALL`:
//! a counter by its `_total` name, a histogram only by its `_bucket`,
//! `_sum` or `_count` series, a gauge by its own name, plus Prometheus' own
//! `up`. A renamed metric or a typo in a query fails here, not on a ward's
//! empty graph.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use promql_parser::label::{MatchOp, Matchers};
use promql_parser::parser::{self, Expr, VectorSelector};
use serde_json::Value;
use wardkey_proto::metrics;

/// What kind of series a metric is exported as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

fn read(relative: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Each exported metric's kind, from the doc comment `wardkey_proto`
/// gives each name ("Histogram: …", "Counter: …", "Gauge: …"), so a
/// metric added there is known here without a second list.
fn exported() -> BTreeMap<&'static str, Kind> {
    let source = read("crates/wardkey-proto/src/metrics.rs");
    let mut kinds_by_value = BTreeMap::new();
    let mut doc: Vec<&str> = Vec::new();
    for line in source.lines().map(str::trim) {
        if let Some(text) = line.strip_prefix("///") {
            doc.push(text.trim());
            continue;
        }
        if let Some(rest) = line.strip_prefix("pub const ")
            && let Some((_, value)) = rest.split_once(": &str = \"")
        {
            let value = value.trim_end_matches("\";").to_string();
            let kind = match doc.first().and_then(|d| d.split(':').next()) {
                Some("Histogram") => Kind::Histogram,
                Some("Counter") => Kind::Counter,
                Some("Gauge") => Kind::Gauge,
                other => panic!("metric {value}: its doc comment does not start with its kind ({other:?})"),
            };
            kinds_by_value.insert(value, kind);
        }
        doc.clear();
    }
    let mut out = BTreeMap::new();
    for name in metrics::ALL {
        let kind = *kinds_by_value.get(*name).unwrap_or_else(|| panic!("{name} is in ALL but not declared"));
        if kind == Kind::Counter {
            assert!(name.ends_with("_total"), "counter {name} must be named with _total as exported");
        }
        out.insert(*name, kind);
    }
    out
}

/// Whether a query may select series named `name`.
fn allowed(known: &BTreeMap<&'static str, Kind>, name: &str) -> bool {
    if name == "up" {
        return true;
    }
    if let Some(Kind::Counter | Kind::Gauge) = known.get(name) {
        return true;
    }
    ["_bucket", "_sum", "_count"].iter().any(|suffix| {
        name.strip_suffix(suffix).and_then(|base| known.get(base)).is_some_and(|kind| *kind == Kind::Histogram)
    })
}

/// The metric a selector names: `name{…}` or `{__name__="name", …}`.
fn selector_name(vs: &VectorSelector) -> Result<String, String> {
    if let Some(name) = &vs.name {
        return Ok(name.clone());
    }
    let Matchers { matchers, or_matchers } = &vs.matchers;
    matchers
        .iter()
        .chain(or_matchers.iter().flatten())
        .find(|m| m.name == "__name__" && matches!(m.op, MatchOp::Equal))
        .map(|m| m.value.clone())
        .ok_or_else(|| format!("selector {vs} names no single metric"))
}

/// Every metric name selected anywhere in `expr`.
fn collect(expr: &Expr, names: &mut Vec<String>) -> Result<(), String> {
    match expr {
        Expr::VectorSelector(vs) => names.push(selector_name(vs)?),
        Expr::MatrixSelector(ms) => names.push(selector_name(&ms.vs)?),
        Expr::Aggregate(a) => {
            collect(&a.expr, names)?;
            if let Some(param) = &a.param {
                collect(param, names)?;
            }
        }
        Expr::Unary(u) => collect(&u.expr, names)?,
        Expr::Binary(b) => {
            collect(&b.lhs, names)?;
            collect(&b.rhs, names)?;
        }
        Expr::Paren(p) => collect(&p.expr, names)?,
        Expr::Subquery(s) => collect(&s.expr, names)?,
        Expr::Call(call) => {
            for arg in &call.args.args {
                collect(arg, names)?;
            }
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => {}
        Expr::Extension(_) => return Err("unexpected extension node".into()),
    }
    Ok(())
}

/// `query` with Grafana's variables replaced by what PromQL can parse:
/// intervals by `5m`, the dashboard's own variables (`$ward`, `${ward}`,
/// `${ward:regex}`) by `.*` (they are only used in `=~` matchers).
fn substitute(query: &str, variables: &BTreeSet<String>) -> Result<String, String> {
    let mut out = query.to_string();
    for builtin in ["$__rate_interval", "${__rate_interval}", "$__interval", "${__interval}", "$__range", "${__range}"]
    {
        out = out.replace(builtin, "5m");
    }
    for name in variables {
        out = out.replace(&format!("${{{name}}}"), ".*").replace(&format!("${{{name}:regex}}"), ".*");
        // `$ward` but not `$wardx`: only where the name ends.
        let bare = format!("${name}");
        let mut rest = out.as_str();
        let mut replaced = String::new();
        while let Some(at) = rest.find(&bare) {
            let after = &rest[at + bare.len()..];
            replaced.push_str(&rest[..at]);
            if after.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
                replaced.push_str(&bare);
            } else {
                replaced.push_str(".*");
            }
            rest = after;
        }
        replaced.push_str(rest);
        out = replaced;
    }
    if out.contains('$') {
        return Err(format!("{query:?} uses a variable the dashboard does not define"));
    }
    Ok(out)
}

/// Parse `query` (after substitution) and check every metric it selects;
/// the names on success.
fn check(
    known: &BTreeMap<&'static str, Kind>,
    variables: &BTreeSet<String>,
    query: &str,
) -> Result<Vec<String>, String> {
    let promql = substitute(query, variables)?;
    let expr = parser::parse(&promql).map_err(|e| format!("{query:?} does not parse: {e}"))?;
    let mut names = Vec::new();
    collect(&expr, &mut names).map_err(|e| format!("{query:?}: {e}"))?;
    if names.is_empty() {
        return Err(format!("{query:?} selects no metric"));
    }
    for name in &names {
        if !allowed(known, name) {
            return Err(format!("{query:?} uses {name}, which the server does not export"));
        }
    }
    Ok(names)
}

/// Every `expr` in the dashboard, wherever it sits (panels, rows' nested
/// panels, annotations), with where it was found.
fn dashboard_exprs(value: &Value, at: &str, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            if let Some(targets) = map.get("targets").and_then(Value::as_array) {
                for (i, target) in targets.iter().enumerate() {
                    let expr = target.get("expr").and_then(Value::as_str).unwrap_or_default();
                    assert!(!expr.trim().is_empty(), "{at}: target {i} has no expr");
                }
            }
            for (key, child) in map {
                let title = map.get("title").and_then(Value::as_str).unwrap_or("");
                let here = if title.is_empty() { at.to_string() } else { format!("{at} / {title}") };
                match (key.as_str(), child) {
                    ("expr", Value::String(expr)) => out.push((here, expr.clone())),
                    _ => dashboard_exprs(child, &here, out),
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                dashboard_exprs(item, at, out);
            }
        }
        _ => {}
    }
}

/// The metric selector of a `label_values(selector, label)` variable query.
fn label_values_selector(query: &str) -> Result<(String, String), String> {
    let inner = query
        .trim()
        .strip_prefix("label_values(")
        .and_then(|q| q.strip_suffix(')'))
        .ok_or_else(|| format!("variable query {query:?} is not label_values(metric, label)"))?;
    let (selector, label) =
        inner.rsplit_once(',').ok_or_else(|| format!("variable query {query:?} has no metric, only a label"))?;
    Ok((selector.trim().to_string(), label.trim().to_string()))
}

#[test]
fn grafana_dashboard_and_alert_rules_query_only_exported_metrics() {
    let known = exported();
    let mut problems = Vec::new();
    let mut used = BTreeSet::new();

    // The dashboard.
    let dashboard: Value = serde_json::from_str(&read("deploy/grafana/wardkey.json")).expect("dashboard is JSON");
    let variables_list = dashboard["templating"]["list"].as_array().cloned().unwrap_or_default();
    let variables: BTreeSet<String> =
        variables_list.iter().filter_map(|v| v["name"].as_str().map(String::from)).collect();
    assert!(variables.contains("ward"), "the dashboard has a ward variable");
    let mut variable_queries = 0;
    for variable in &variables_list {
        if variable["type"] != "query" {
            continue;
        }
        let query = match &variable["query"] {
            Value::String(q) => q.clone(),
            Value::Object(o) => o.get("query").and_then(Value::as_str).unwrap_or_default().to_string(),
            other => panic!("variable {}: query {other}", variable["name"]),
        };
        match label_values_selector(&query) {
            Ok((selector, label)) => {
                variable_queries += 1;
                if label.is_empty() || label.contains(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                    problems.push(format!("variable {}: {label:?} is not a label name", variable["name"]));
                }
                match check(&known, &variables, &selector) {
                    Ok(names) => used.extend(names),
                    Err(e) => problems.push(format!("variable {}: {e}", variable["name"])),
                }
            }
            Err(e) => problems.push(e),
        }
    }
    assert!(variable_queries >= 1, "the ward variable's query was checked");
    let mut exprs = Vec::new();
    dashboard_exprs(&dashboard, "dashboard", &mut exprs);
    assert!(!exprs.is_empty(), "the dashboard has no PromQL expressions");
    for (at, expr) in &exprs {
        match check(&known, &variables, expr) {
            Ok(names) => used.extend(names),
            Err(e) => problems.push(format!("{at}: {e}")),
        }
    }

    // The alert rules.
    let rules: Value = serde_norway::from_str(&read("deploy/grafana/alerts.yml")).expect("alert rules are YAML");
    let groups = rules["groups"].as_array().expect("rules have groups");
    let mut alerts = 0;
    for group in groups {
        for rule in group["rules"].as_array().expect("each group has rules") {
            let name = rule["alert"].as_str().or(rule["record"].as_str()).expect("each rule has a name").to_string();
            let Some(expr) = rule["expr"].as_str() else {
                problems.push(format!("rule {name} has no expr"));
                continue;
            };
            if rule.get("alert").is_some() {
                alerts += 1;
                let severity = rule["labels"]["severity"].as_str().unwrap_or_default();
                if !["critical", "warning", "info"].contains(&severity) {
                    problems.push(format!("alert {name}: severity {severity:?}"));
                }
                for field in ["summary", "description"] {
                    if rule["annotations"][field].as_str().unwrap_or_default().trim().is_empty() {
                        problems.push(format!("alert {name} has no {field}"));
                    }
                }
            }
            // Alert rules are not Grafana's: no variables in them.
            match check(&known, &BTreeSet::new(), expr) {
                Ok(names) => used.extend(names),
                Err(e) => problems.push(format!("rule {name}: {e}")),
            }
        }
    }
    assert!(alerts > 0, "the alert rules file has no alerting rules");

    assert!(problems.is_empty(), "{} problem(s):\n{}", problems.len(), problems.join("\n"));
    // The names the dashboards lean on most are really looked at.
    for name in ["up", "wardkey_login_step_seconds_bucket", "wardkey_signins_total", "wardkey_backend_up"] {
        assert!(used.contains(name), "{name} is not queried: {used:?}");
    }
}

#[test]
fn grafana_check_refuses_unknown_and_misused_metrics() {
    let known = exported();
    let ward: BTreeSet<String> = ["ward".to_string()].into();
    // What the dashboard does passes.
    let names = check(
        &known,
        &ward,
        r#"histogram_quantile(0.95, sum by (ward, le) (rate(wardkey_login_step_seconds_bucket{ward=~"$ward"}[$__rate_interval])))"#,
    )
    .unwrap();
    assert_eq!(names, ["wardkey_login_step_seconds_bucket"]);
    check(&known, &ward, r#"sum(up{job="wardkey"}) + on() wardkey_backend_up{backend="store"}"#).unwrap();
    check(&known, &ward, r#"{__name__="wardkey_signins_total", ward=~"${ward}"}"#).unwrap();
    // A metric the server does not export, anywhere in the expression, or
    // one used as what it is not: each refused for that reason.
    for (bad, because) in [
        ("rate(wardkey_made_up_total[5m])", "wardkey_made_up_total, which the server does not export"),
        ("sum(rate(wardkey_signins_total[5m])) / sum(rate(wardkey_sign_ins_total[5m]))", "wardkey_sign_ins_total,"),
        ("max_over_time(wardkey_typo_seconds[1h:1m])", "wardkey_typo_seconds,"),
        ("quantile(scalar(wardkey_unknown), wardkey_backend_up)", "wardkey_unknown,"),
        // Counters by their exported `_total` name only.
        ("rate(wardkey_signins[5m])", "wardkey_signins,"),
        // Histograms by their series, never the bare name; gauges have no buckets.
        ("wardkey_login_step_seconds", "wardkey_login_step_seconds,"),
        ("histogram_quantile(0.9, rate(wardkey_backend_up_bucket[5m]))", "wardkey_backend_up_bucket,"),
        (r#"{__name__=~"wardkey_.*"}"#, "names no single metric"),
        (r#"wardkey_signins_total{ward=~"$floor"}"#, "variable the dashboard does not define"),
        ("sum(rate(wardkey_signins_total[5m])", "does not parse"),
        ("1 + 1", "selects no metric"),
    ] {
        let err = check(&known, &ward, bad).expect_err(bad);
        assert!(err.contains(because), "{bad}: {err}");
    }
    assert!(substitute("x{ward=~\"$ward\", w=\"$wards\"}", &ward).is_err(), "$wards is not $ward");
    assert_eq!(substitute("x{ward=~\"$ward\"}[$__rate_interval]", &ward).unwrap(), "x{ward=~\".*\"}[5m]");
    assert_eq!(
        label_values_selector("label_values(wardkey_signins_total, ward)").unwrap(),
        ("wardkey_signins_total".to_string(), "ward".to_string())
    );
    assert!(label_values_selector("label_values(ward)").is_err());
    assert!(label_values_selector("query_result(up)").is_err());
}
