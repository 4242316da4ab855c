//! Durations on the command line: `500ms`, `20s`, `2m`, `1h30m`, or a bare
//! number of seconds. Written here (a dozen lines) rather than pulling in a
//! crate, and shown back the same way in reports.

use std::time::Duration;

/// Parse `500ms`, `20s`, `1.5s`, `2m`, `1h30m` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration: write it like 20s, 500ms, 2m or 1h".into());
    }
    if let Ok(seconds) = text.parse::<f64>() {
        return seconds_to_duration(seconds, text);
    }
    let mut total = 0.0;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let unit_len =
            rest[number_len..].find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len() - number_len);
        let (number, unit) = (&rest[..number_len], rest[number_len..number_len + unit_len].trim());
        let value: f64 = number.parse().map_err(|_| format!("{text:?} is not a duration like 20s, 500ms or 1h30m"))?;
        let scale = match unit {
            "ms" => 0.001,
            "s" | "sec" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            _ => return Err(format!("{text:?}: unknown unit {unit:?} (use ms, s, m or h)")),
        };
        total += value * scale;
        rest = rest[number_len + unit_len..].trim_start();
    }
    seconds_to_duration(total, text)
}

fn seconds_to_duration(seconds: f64, text: &str) -> Result<Duration, String> {
    if !seconds.is_finite() || !(0.0..=7.0 * 86_400.0).contains(&seconds) {
        return Err(format!("{text:?} is out of range (0 to 7 days)"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// A duration as a person reads it: `850ms`, `20s`, `1m30s`.
pub fn show(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = d.as_secs_f64();
    if s < 60.0 {
        return if (s - s.round()).abs() < 0.001 { format!("{}s", s.round()) } else { format!("{s:.1}s") };
    }
    let whole = d.as_secs();
    let (h, m, s) = (whole / 3600, (whole % 3600) / 60, whole % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_bare_seconds() {
        assert_eq!(parse_duration("20s").unwrap(), Duration::from_secs(20));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("1h 30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("-3").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn shown_as_written() {
        assert_eq!(show(Duration::from_millis(850)), "850ms");
        assert_eq!(show(Duration::from_secs(20)), "20s");
        assert_eq!(show(Duration::from_secs(90)), "1m30s");
        assert_eq!(show(Duration::from_secs(12 * 3600)), "12h");
    }
}
