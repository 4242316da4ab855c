//! The dashboard's figures, summed from the audit log's `signin` records
//! (which every node writes, and which survive restarts, unlike a node's
//! counters), and its charts, drawn here as SVG so they read without
//! JavaScript.

use std::collections::BTreeMap;
use std::fmt::Write;

use wardkey_store::AuditRecord;

use crate::pages::{civil, escape};

/// One ward's sign-ins in a period.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WardFigures {
    /// Sign-ins by method.
    pub by_method: BTreeMap<String, u64>,
    /// Each sign-in's time, seconds.
    pub seconds: Vec<f64>,
    /// Seconds saved.
    pub saved: f64,
}

impl WardFigures {
    /// How many sign-ins.
    pub fn count(&self) -> u64 {
        self.by_method.values().sum()
    }

    /// The `q` quantile (0..=1) of sign-in time, nearest rank.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let mut sorted = self.seconds.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        (n > 0).then(|| sorted[((q * n as f64).ceil() as usize).clamp(1, n) - 1])
    }
}

/// The dashboard: today by ward, this month by ward, and each day's saving.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dashboard {
    /// Today (UTC) by ward.
    pub today: BTreeMap<String, WardFigures>,
    /// This month (UTC) by ward.
    pub month: BTreeMap<String, WardFigures>,
    /// Seconds saved on each day of this month (1-based day → seconds).
    pub saved_by_day: BTreeMap<u32, f64>,
}

impl Dashboard {
    /// Sum `records` (`signin`, any order) into today (from `today_start`)
    /// and the month (from `month_start`), both Unix seconds at UTC midnight.
    pub fn from_records(records: &[AuditRecord], today_start: i64, month_start: i64) -> Self {
        let mut out = Dashboard::default();
        for r in records.iter().filter(|r| r.event.event == "signin" && r.event.at >= month_start) {
            let detail = &r.event.detail;
            let ward = detail["ward"].as_str().unwrap_or("none").to_string();
            let method = detail["method"].as_str().unwrap_or("unknown").to_string();
            let seconds = detail["seconds"].as_f64().unwrap_or(0.0);
            let saved = detail["saved_seconds"].as_f64().unwrap_or(0.0);
            let add = |figures: &mut WardFigures| {
                *figures.by_method.entry(method.clone()).or_default() += 1;
                figures.seconds.push(seconds);
                figures.saved += saved;
            };
            add(out.month.entry(ward.clone()).or_default());
            if r.event.at >= today_start {
                add(out.today.entry(ward).or_default());
            }
            let day = u32::try_from((r.event.at - month_start) / 86_400 + 1).unwrap_or(1);
            *out.saved_by_day.entry(day).or_default() += saved;
        }
        out
    }

    /// Seconds saved over all wards, today and this month.
    pub fn total_saved(&self) -> (f64, f64) {
        (self.today.values().map(|w| w.saved).sum(), self.month.values().map(|w| w.saved).sum())
    }
}

/// Hours and minutes, for people: `3 h 25 min`, `12 min`, `40 s`.
pub fn hours(seconds: f64) -> String {
    let s = seconds.round() as i64;
    match s {
        s if s >= 3600 => format!("{} h {} min", s / 3600, (s % 3600) / 60),
        s if s >= 60 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// A login time for people: `0.4 s`, `12 s`.
pub fn secs(seconds: f64) -> String {
    if seconds < 10.0 { format!("{seconds:.1} s") } else { format!("{seconds:.0} s") }
}

/// A horizontal bar chart of login time per ward today: p50 and p95 bars,
/// labelled with their values; `title` names it for screen readers.
pub fn ward_time_chart(today: &BTreeMap<String, WardFigures>, title: &str) -> String {
    let rows: Vec<(&String, f64, f64)> =
        today.iter().filter_map(|(w, f)| Some((w, f.quantile(0.5)?, f.quantile(0.95)?))).collect();
    if rows.is_empty() {
        return "<p>No sign-ins yet today.</p>".into();
    }
    let max = rows.iter().map(|r| r.2).fold(0.001_f64, f64::max);
    let (label_w, bar_w, row_h) = (140.0, 420.0, 44.0);
    let height = rows.len() as f64 * row_h + 30.0;
    let mut svg = format!(
        "<svg role=\"img\" aria-labelledby=\"ward-chart-title\" viewBox=\"0 0 {w} {height}\" width=\"100%\" \
         style=\"max-width:{w}px\" xmlns=\"http://www.w3.org/2000/svg\"><title id=\"ward-chart-title\">{title}</title>",
        w = label_w + bar_w + 90.0,
        title = escape(title)
    );
    for (i, (ward, p50, p95)) in rows.iter().enumerate() {
        let y = i as f64 * row_h + 8.0;
        let _ = write!(
            svg,
            "<text x=\"0\" y=\"{ty}\" font-size=\"14\" fill=\"#212b32\">{ward}</text>\
             <rect x=\"{label_w}\" y=\"{y}\" width=\"{w95:.1}\" height=\"16\" fill=\"#aeb7bd\"/>\
             <rect x=\"{label_w}\" y=\"{y2}\" width=\"{w50:.1}\" height=\"16\" fill=\"#005eb8\"/>\
             <text x=\"{tx95:.1}\" y=\"{ty95}\" font-size=\"12\" fill=\"#212b32\">p95 {p95s}</text>\
             <text x=\"{tx50:.1}\" y=\"{ty50}\" font-size=\"12\" fill=\"#212b32\">p50 {p50s}</text>",
            ty = y + 20.0,
            ward = escape(ward),
            w95 = (p95 / max * bar_w).max(2.0),
            y2 = y + 18.0,
            w50 = (p50 / max * bar_w).max(2.0),
            tx95 = label_w + (p95 / max * bar_w).max(2.0) + 6.0,
            ty95 = y + 13.0,
            tx50 = label_w + (p50 / max * bar_w).max(2.0) + 6.0,
            ty50 = y + 31.0,
            p95s = secs(*p95),
            p50s = secs(*p50),
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A column chart of hours saved on each day of the month so far.
pub fn saved_by_day_chart(saved_by_day: &BTreeMap<u32, f64>, days: u32, title: &str) -> String {
    let max = saved_by_day.values().copied().fold(1.0_f64, f64::max);
    let (col_w, chart_h) = (18.0, 160.0);
    let width = f64::from(days) * col_w + 20.0;
    let mut svg = format!(
        "<svg role=\"img\" aria-labelledby=\"saved-chart-title\" viewBox=\"0 0 {width} {h}\" width=\"100%\" \
         style=\"max-width:{width}px\" xmlns=\"http://www.w3.org/2000/svg\"><title id=\"saved-chart-title\">{title}</title>\
         <line x1=\"0\" y1=\"{chart_h}\" x2=\"{width}\" y2=\"{chart_h}\" stroke=\"#4c6272\"/>",
        h = chart_h + 24.0,
        title = escape(title)
    );
    for day in 1..=days {
        let saved = saved_by_day.get(&day).copied().unwrap_or(0.0);
        let h = saved / max * (chart_h - 10.0);
        let x = f64::from(day - 1) * col_w + 4.0;
        let _ = write!(
            svg,
            "<rect x=\"{x}\" y=\"{y:.1}\" width=\"{w}\" height=\"{h:.1}\" fill=\"#007f3b\"><title>day {day}: {label}</title></rect>",
            y = chart_h - h,
            w = col_w - 4.0,
            label = hours(saved),
        );
        if day == 1 || day % 5 == 0 {
            let _ = write!(
                svg,
                "<text x=\"{x}\" y=\"{ty}\" font-size=\"11\" fill=\"#212b32\">{day}</text>",
                ty = chart_h + 16.0
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// Unix seconds of UTC midnight today and on the 1st of this month, and
/// the days in this month.
pub fn day_and_month_start(now: i64) -> (i64, i64, u32) {
    let today = now - now.rem_euclid(86_400);
    let (year, month, day) = civil(today.div_euclid(86_400));
    let month_start = today - i64::from(day - 1) * 86_400;
    let days = match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    (today, month_start, days)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wardkey_core::audit::AuditEvent;

    fn signin(at: i64, ward: &str, method: &str, seconds: f64, saved: f64) -> AuditRecord {
        AuditRecord {
            seq: at,
            event: AuditEvent {
                at,
                event: "signin".into(),
                actor: "a".into(),
                subject: "a".into(),
                detail: serde_json::json!({"ward": ward, "method": method, "seconds": seconds, "saved_seconds": saved}),
            },
        }
    }

    #[test]
    fn figures_sum_by_ward_day_and_month() {
        // 2026-12-04 12:00 UTC.
        let now = 1_796_385_600;
        let (today, month, days) = day_and_month_start(now);
        assert_eq!((today, month, days), (1_796_342_400, 1_796_083_200, 31));
        let records = [
            signin(now, "Ward 7", "badge", 0.2, 104.8),
            signin(now, "Ward 7", "badge_pin", 4.0, 101.0),
            signin(now - 86_400, "Ward 7", "badge", 0.2, 104.8),
            signin(now, "none", "password", 20.0, 85.0),
            signin(month - 1, "Ward 7", "badge", 0.2, 104.8),
        ];
        let d = Dashboard::from_records(&records, today, month);
        assert_eq!(d.today["Ward 7"].count(), 2);
        assert_eq!(d.month["Ward 7"].count(), 3);
        assert_eq!(d.today["Ward 7"].quantile(0.5), Some(0.2));
        assert_eq!(d.today["Ward 7"].quantile(0.95), Some(4.0));
        let (saved_today, saved_month) = d.total_saved();
        assert!((saved_today - 290.8).abs() < 1e-9 && (saved_month - 395.6).abs() < 1e-9);
        assert_eq!(d.saved_by_day.keys().copied().collect::<Vec<_>>(), [3, 4]);
        assert_eq!(hours(7_500.0), "2 h 5 min");
        let chart = ward_time_chart(&d.today, "Login time");
        assert!(chart.contains("Ward 7") && chart.contains("p95 4.0 s") && chart.starts_with("<svg role=\"img\""));
    }
}
