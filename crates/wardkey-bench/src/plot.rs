//! The latency plots as self-contained SVG, drawn by hand (a few lines of
//! text, no plotting library).
//!
//! By percentile ([`render`]): one line per operation, percentile along a
//! log axis where 90 %, 99 %, 99.9 %… are equally spaced, as HdrHistogram's
//! plotter draws it. That axis is what makes the tail visible: on a linear
//! axis p99.9 would be a pixel from the edge.
//!
//! Over the run ([`render_over_time`]): per operation, the median (solid)
//! and p99 (dashed) of the requests that started in each step of the run,
//! so a stall, a warm-up or a slow leak shows where it happened.
//!
//! Latency runs up a log axis in both, labelled by decades (0.1 ms, 1 ms,
//! 10 ms, 100 ms, 1 s): the sub-millisecond hot path and the argon2 tail
//! near 100 ms are both readable on one chart. [`render_report`] stacks
//! the two in one picture.

use std::fmt::Write;

use crate::stats::{CurvePoint, TimeBucket};

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 540.0;
const LEFT: f64 = 92.0;
const RIGHT: f64 = 210.0;
const TOP: f64 = 64.0;
const BOTTOM: f64 = 64.0;
/// Distinguishable colours (Okabe–Ito, then two more).
const PALETTE: [&str; 9] =
    ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#999933", "#882255"];

/// One line of the plot.
#[derive(Debug, Clone, Copy)]
pub struct Series<'a> {
    /// Legend text.
    pub name: &'a str,
    /// The curve, percentile rising.
    pub points: &'a [CurvePoint],
}

/// One operation's latency over the run.
#[derive(Debug, Clone, Copy)]
pub struct TimeSeries<'a> {
    /// Legend text.
    pub name: &'a str,
    /// Its steps with requests, in time order.
    pub buckets: &'a [TimeBucket],
}

/// `&`, `<`, `>` and quotes made safe for SVG text and attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Position on the percentile axis: the number of nines, so 90 % is 1,
/// 99 % is 2 and so on. 100 % has no finite position; callers clamp.
fn nines(percentile: f64) -> f64 {
    (100.0 / (100.0 - percentile)).log10()
}

/// A round step for about `target` ticks up to `max`.
fn nice_step(max: f64, target: f64) -> f64 {
    let raw = (max / target).max(f64::MIN_POSITIVE);
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * magnitude).find(|s| *s >= raw).unwrap_or(10.0 * magnitude)
}

fn percent_label(k: usize) -> String {
    match k {
        0 => "0%".into(),
        1 => "90%".into(),
        k => format!("99.{}%", "9".repeat(k - 2)).replace("99.%", "99%"),
    }
}

/// The label of the decade 10^`exp` milliseconds: `1 µs`, `0.01 ms`,
/// `0.1 ms`, `1 ms`, `10 ms`, `100 ms`, `1 s`, `10 s`…
fn decade_label(exp: i32) -> String {
    match exp {
        ..=-3 => format!("{} µs", 10f64.powi(exp + 3)),
        -2..=-1 => format!("{:.*} ms", exp.unsigned_abs() as usize, 10f64.powi(exp)),
        0..=2 => format!("{} ms", 10i64.pow(exp as u32)),
        _ => format!("{} s", 10f64.powi(exp - 3)),
    }
}

/// A logarithmic latency axis over whole decades of milliseconds, from
/// 10^`lo` to 10^`hi`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LogAxis {
    lo: i32,
    hi: i32,
}

impl LogAxis {
    /// The smallest run of whole decades holding every positive value (at
    /// least one decade, nothing below 1 µs); 0.1 ms to 1 s when there are
    /// none.
    fn spanning(values: impl IntoIterator<Item = f64>) -> Self {
        let (min, max) = values
            .into_iter()
            .filter(|v| v.is_finite() && *v > 0.0)
            .fold((f64::INFINITY, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
        if max <= 0.0 {
            return Self { lo: -1, hi: 3 };
        }
        // A hair of slack so that exactly 1 ms or 100 ms sits on its own
        // decade line rather than opening the next one.
        let lo = ((min.log10() + 1e-9).floor() as i32).max(-3);
        let hi = ((max.log10() - 1e-9).ceil() as i32).max(lo + 1);
        Self { lo, hi }
    }

    /// Where `ms` falls, 0 at the bottom to 1 at the top (clamped).
    fn fraction(&self, ms: f64) -> f64 {
        let floor = 10f64.powi(self.lo);
        ((ms.max(floor).log10() - f64::from(self.lo)) / f64::from(self.hi - self.lo)).clamp(0.0, 1.0)
    }

    /// One labelled tick a decade, bottom up.
    fn ticks(&self) -> Vec<(f64, String)> {
        (self.lo..=self.hi).map(|e| (10f64.powi(e), decade_label(e))).collect()
    }

    /// Unlabelled lines at 2× and 5× within each decade.
    fn minor(&self) -> Vec<f64> {
        (self.lo..self.hi).flat_map(|e| [2.0, 5.0].map(|m| m * 10f64.powi(e))).collect()
    }
}

/// The plotting area of one panel.
#[derive(Debug, Clone, Copy)]
struct Frame {
    top: f64,
    width: f64,
    height: f64,
}

impl Frame {
    /// The panel whose top edge is `dy` below the top of the picture.
    fn at(dy: f64) -> Self {
        Self { top: dy + TOP, width: WIDTH - LEFT - RIGHT, height: HEIGHT - TOP - BOTTOM }
    }

    fn bottom(&self) -> f64 {
        self.top + self.height
    }
}

fn open(svg: &mut String, height: f64, title: &str, subtitle: &str) {
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<title>{}</title>"#, escape(title));
    let _ = writeln!(svg, r##"<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="#ffffff"/>"##);
    let _ = writeln!(svg, r#"<text x="{LEFT}" y="26" font-size="16" font-weight="bold">{}</text>"#, escape(title));
    let _ = writeln!(svg, r##"<text x="{LEFT}" y="46" fill="#555555">{}</text>"##, escape(subtitle));
}

fn heading(svg: &mut String, frame: Frame, text: &str) {
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="{:.1}" font-size="13" font-weight="bold">{}</text>"#,
        frame.top - 8.0,
        escape(text)
    );
}

/// The latency axis: decade lines and labels, fainter 2× and 5× lines,
/// and its title.
fn latency_axis(svg: &mut String, frame: Frame, axis: LogAxis) {
    let y = |ms: f64| frame.bottom() - axis.fraction(ms) * frame.height;
    let _ = writeln!(svg, r##"<g stroke="#eeeeee" stroke-width="1">"##);
    for ms in axis.minor() {
        let ty = y(ms);
        let _ = writeln!(svg, r#"<line x1="{LEFT}" y1="{ty:.1}" x2="{:.1}" y2="{ty:.1}"/>"#, LEFT + frame.width);
    }
    let _ = writeln!(svg, "</g>");
    let _ = writeln!(svg, r##"<g stroke="#cccccc" stroke-width="1">"##);
    for (ms, _) in axis.ticks() {
        let ty = y(ms);
        let _ = writeln!(svg, r#"<line x1="{LEFT}" y1="{ty:.1}" x2="{:.1}" y2="{ty:.1}"/>"#, LEFT + frame.width);
    }
    let _ = writeln!(svg, "</g>");
    for (ms, label) in axis.ticks() {
        let _ = writeln!(svg, r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{label}</text>"#, LEFT - 6.0, y(ms) + 4.0);
    }
    let middle = frame.top + frame.height / 2.0;
    let _ = writeln!(
        svg,
        r#"<text transform="translate(16 {middle:.1}) rotate(-90)" text-anchor="middle">latency (ms)</text>"#
    );
    let _ = writeln!(
        svg,
        r##"<text transform="translate(30 {middle:.1}) rotate(-90)" text-anchor="middle" font-size="10" fill="#777777">log scale</text>"##
    );
}

fn no_data(svg: &mut String, frame: Frame, text: &str) {
    let _ = writeln!(
        svg,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#aa0000">{text}</text>"##,
        LEFT + frame.width / 2.0,
        frame.top + frame.height / 2.0
    );
}

fn legend_entry(svg: &mut String, frame: Frame, row: usize, colour: &str, dash: Option<&str>, text: &str) {
    let ly = frame.top + 10.0 + row as f64 * 20.0;
    let lx = LEFT + frame.width + 16.0;
    let dash = dash.map(|d| format!(r#" stroke-dasharray="{d}""#)).unwrap_or_default();
    let _ = writeln!(
        svg,
        r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{colour}" stroke-width="3"{dash}/>"#,
        lx + 22.0
    );
    let _ = writeln!(svg, r#"<text x="{:.1}" y="{:.1}">{}</text>"#, lx + 28.0, ly + 4.0, escape(text));
}

/// The percentile panel; the colour each drawn series got, by name.
fn percentile_panel<'a>(svg: &mut String, frame: Frame, series: &[Series<'a>]) -> Vec<(&'a str, &'static str)> {
    let plot_w = frame.width;
    // The axis runs to the deepest percentile any series reached short of
    // 100 %, at least 99.9 %, at most 99.9999 %.
    let deepest = series
        .iter()
        .flat_map(|s| s.points.iter())
        .filter(|p| p.percentile < 100.0)
        .map(|p| nines(p.percentile))
        .fold(0.0f64, f64::max);
    let x_max = deepest.ceil().clamp(3.0, 6.0);
    let axis = LogAxis::spanning(series.iter().flat_map(|s| s.points.iter()).map(|p| p.latency_ms));
    let x = |percentile: f64| {
        let n = if percentile >= 100.0 { x_max } else { nines(percentile).min(x_max) };
        LEFT + n / x_max * plot_w
    };
    let y = |ms: f64| frame.bottom() - axis.fraction(ms) * frame.height;

    latency_axis(svg, frame, axis);
    let _ = writeln!(svg, r##"<g stroke="#dddddd" stroke-width="1">"##);
    for k in 0..=(x_max as usize) {
        let tx = LEFT + k as f64 / x_max * plot_w;
        let _ = writeln!(svg, r#"<line x1="{tx:.1}" y1="{:.1}" x2="{tx:.1}" y2="{:.1}"/>"#, frame.top, frame.bottom());
    }
    let _ = writeln!(svg, "</g>");
    let _ = writeln!(
        svg,
        r##"<rect x="{LEFT}" y="{:.1}" width="{plot_w}" height="{}" fill="none" stroke="#333333"/>"##,
        frame.top, frame.height
    );
    for k in 0..=(x_max as usize) {
        let tx = LEFT + k as f64 / x_max * plot_w;
        let _ = writeln!(
            svg,
            r#"<text x="{tx:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            frame.bottom() + 18.0,
            percent_label(k)
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile (log scale: each step is one more nine)</text>"#,
        LEFT + plot_w / 2.0,
        frame.bottom() + BOTTOM - 18.0
    );

    // Curves and legend.
    let drawn: Vec<&Series<'_>> = series.iter().filter(|s| !s.points.is_empty()).collect();
    if drawn.is_empty() {
        no_data(svg, frame, "no successful requests to plot");
    }
    let mut colours = Vec::new();
    for (i, s) in drawn.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        colours.push((s.name, colour));
        let mut d = String::new();
        for (j, p) in s.points.iter().enumerate() {
            let _ = write!(d, "{}{:.1},{:.1}", if j == 0 { "M" } else { " L" }, x(p.percentile), y(p.latency_ms));
        }
        let _ = writeln!(
            svg,
            r#"<path d="{d}" fill="none" stroke="{colour}" stroke-width="2" stroke-linejoin="round"><title>{}</title></path>"#,
            escape(s.name)
        );
        legend_entry(svg, frame, i, colour, None, s.name);
    }
    colours
}

/// Seconds on the time axis: whole when `step` (between ticks or points)
/// is, else to a tenth.
fn seconds_label(t: f64, step: f64) -> String {
    if (step - step.round()).abs() < 1e-9 { format!("{t:.0} s") } else { format!("{t:.1} s") }
}

/// How the time panel draws one percentile of each operation.
struct Stroke {
    which: &'static str,
    dash: Option<&'static str>,
    width: f64,
    value: fn(&TimeBucket) -> f64,
}

const STROKES: [Stroke; 2] = [
    Stroke { which: "p50", dash: None, width: 2.0, value: |b| b.p50_ms },
    Stroke { which: "p99", dash: Some("6 4"), width: 1.5, value: |b| b.p99_ms },
];

/// The latency-over-time panel. Series whose name is in `colours` keep
/// that colour (to match the percentile panel); others take the palette
/// in turn.
fn time_panel(svg: &mut String, frame: Frame, series: &[TimeSeries<'_>], colours: &[(&str, &str)]) {
    let plot_w = frame.width;
    let buckets = || series.iter().flat_map(|s| s.buckets.iter());
    let x_max = buckets().map(|b| b.from_seconds + b.seconds).fold(0.0f64, f64::max);
    let x_max = if x_max > 0.0 { x_max } else { 1.0 };
    let x_step = nice_step(x_max, 8.0);
    let axis = LogAxis::spanning(buckets().flat_map(|b| [b.p50_ms, b.p99_ms]));
    let x = |seconds: f64| LEFT + (seconds / x_max).clamp(0.0, 1.0) * plot_w;
    let y = |ms: f64| frame.bottom() - axis.fraction(ms) * frame.height;

    latency_axis(svg, frame, axis);
    let ticks: Vec<f64> = (0..).map(|k| f64::from(k) * x_step).take_while(|t| *t <= x_max + x_step * 1e-6).collect();
    let _ = writeln!(svg, r##"<g stroke="#dddddd" stroke-width="1">"##);
    for t in &ticks {
        let tx = x(*t);
        let _ = writeln!(svg, r#"<line x1="{tx:.1}" y1="{:.1}" x2="{tx:.1}" y2="{:.1}"/>"#, frame.top, frame.bottom());
    }
    let _ = writeln!(svg, "</g>");
    let _ = writeln!(
        svg,
        r##"<rect x="{LEFT}" y="{:.1}" width="{plot_w}" height="{}" fill="none" stroke="#333333"/>"##,
        frame.top, frame.height
    );
    for t in &ticks {
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            x(*t),
            frame.bottom() + 18.0,
            seconds_label(*t, x_step)
        );
    }
    let step = buckets().map(|b| b.seconds).next().unwrap_or(0.0);
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">time into the measured run (each point: the requests that started in one {} step)</text>"#,
        LEFT + plot_w / 2.0,
        frame.bottom() + BOTTOM - 18.0,
        seconds_label(step, step)
    );

    let drawn: Vec<&TimeSeries<'_>> = series.iter().filter(|s| !s.buckets.is_empty()).collect();
    if drawn.is_empty() {
        no_data(svg, frame, "no timed requests to plot");
    }
    let mut row = 0;
    for (i, s) in drawn.iter().enumerate() {
        let colour = colours.iter().find(|(name, _)| *name == s.name).map_or(PALETTE[i % PALETTE.len()], |c| c.1);
        for Stroke { which, dash, width, value } in STROKES {
            let points: Vec<String> = s
                .buckets
                .iter()
                .map(|b| format!("{:.1},{:.1}", x(b.from_seconds + b.seconds / 2.0), y(value(b))))
                .collect();
            let dash = dash.map(|d| format!(r#" stroke-dasharray="{d}""#)).unwrap_or_default();
            let _ = writeln!(
                svg,
                r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="{width}" stroke-linejoin="round"{dash}><title>{} {which}</title></polyline>"#,
                points.join(" "),
                escape(s.name)
            );
            if let [only] = points.as_slice() {
                let (cx, cy) = only.split_once(',').unwrap_or(("0", "0"));
                let _ = writeln!(svg, r#"<circle cx="{cx}" cy="{cy}" r="3" fill="{colour}"/>"#);
            }
        }
        legend_entry(svg, frame, row, colour, None, s.name);
        row += 1;
    }
    if !drawn.is_empty() {
        row += 1;
        legend_entry(svg, frame, row, "#555555", None, "p50 (median)");
        legend_entry(svg, frame, row + 1, "#555555", Some("6 4"), "p99");
    }
}

/// The latency-by-percentile chart.
pub fn render(title: &str, subtitle: &str, series: &[Series<'_>]) -> String {
    let mut svg = String::new();
    open(&mut svg, HEIGHT, title, subtitle);
    percentile_panel(&mut svg, Frame::at(0.0), series);
    svg.push_str("</svg>\n");
    svg
}

/// The latency-over-time chart.
pub fn render_over_time(title: &str, subtitle: &str, series: &[TimeSeries<'_>]) -> String {
    let mut svg = String::new();
    open(&mut svg, HEIGHT, title, subtitle);
    time_panel(&mut svg, Frame::at(0.0), series, &[]);
    svg.push_str("</svg>\n");
    svg
}

/// Both charts in one picture, by percentile above and over the run
/// below, each operation in the same colour in both. Without any timed
/// requests, the percentile chart alone.
pub fn render_report(title: &str, subtitle: &str, series: &[Series<'_>], over_time: &[TimeSeries<'_>]) -> String {
    if over_time.iter().all(|s| s.buckets.is_empty()) {
        return render(title, subtitle, series);
    }
    let first = Frame::at(18.0);
    let second = Frame::at(first.bottom() + BOTTOM);
    let height = second.bottom() + BOTTOM;
    let mut svg = String::new();
    open(&mut svg, height, title, subtitle);
    heading(&mut svg, first, "By percentile");
    let colours = percentile_panel(&mut svg, first, series);
    heading(&mut svg, second, "Over the run: p50 (solid) and p99 (dashed)");
    time_panel(&mut svg, second, over_time, &colours);
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{TimeBucket, curve, new_histogram, record};
    use std::time::Duration;

    fn sample_curve(scale_us: u64) -> Vec<CurvePoint> {
        let mut h = new_histogram();
        for i in 1..=5000u64 {
            record(&mut h, Duration::from_micros(scale_us + i * i / 10));
        }
        curve(&h)
    }

    #[test]
    fn the_svg_is_well_formed_with_one_path_per_operation() {
        let hot = sample_curve(800);
        let exchange = sample_curve(1500);
        let svg = render(
            "Wardkey shift-change <open loop> & friends",
            "200/s for 20s",
            &[Series { name: "tap_hot (n=5000)", points: &hot }, Series { name: "token_exchange", points: &exchange }],
        );
        let doc = roxmltree::Document::parse(&svg).expect("well-formed XML");
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "svg");
        assert_eq!(root.tag_name().namespace(), Some("http://www.w3.org/2000/svg"));
        let paths: Vec<_> = doc.descendants().filter(|n| n.has_tag_name("path")).collect();
        assert_eq!(paths.len(), 2);
        let texts: Vec<String> =
            doc.descendants().filter(|n| n.has_tag_name("text")).filter_map(|n| n.text().map(String::from)).collect();
        for label in ["0%", "90%", "99%", "99.9%", "latency (ms)", "tap_hot (n=5000)"] {
            assert!(texts.iter().any(|t| t == label), "{label} in {texts:?}");
        }
        assert!(texts.iter().any(|t| t.contains("<open loop> & friends")), "escaped and read back");
        // Every point lies inside the drawing.
        for path in paths {
            for pair in path.attribute("d").unwrap().split(['M', 'L']).map(str::trim).filter(|s| !s.is_empty()) {
                let (px, py) = pair.split_once(',').unwrap();
                let (px, py): (f64, f64) = (px.parse().unwrap(), py.parse().unwrap());
                assert!((LEFT..=WIDTH - RIGHT + 0.1).contains(&px), "{px}");
                assert!((TOP - 0.1..=HEIGHT - BOTTOM + 0.1).contains(&py), "{py}");
            }
        }
    }

    #[test]
    fn an_empty_run_still_draws_a_valid_plot() {
        let svg = render("nothing", "", &[Series { name: "tap_hot", points: &[] }]);
        let doc = roxmltree::Document::parse(&svg).unwrap();
        assert!(doc.descendants().any(|n| n.text() == Some("no successful requests to plot")));
    }

    #[test]
    fn latency_axis_is_logarithmic_with_a_label_a_decade() {
        // A 0.8 ms hot path and a 150 ms argon2 tail: 0.1 ms to 1 s.
        let axis = LogAxis::spanning([0.8, 3.0, 150.0]);
        assert_eq!(axis, LogAxis { lo: -1, hi: 3 });
        let labels: Vec<String> = axis.ticks().into_iter().map(|(_, l)| l).collect();
        assert_eq!(labels, ["0.1 ms", "1 ms", "10 ms", "100 ms", "1 s"]);
        // Each decade the same height: 1 ms to 10 ms as tall as 10 ms to 100 ms.
        let at: Vec<f64> = axis.ticks().into_iter().map(|(ms, _)| axis.fraction(ms)).collect();
        for (got, want) in at.iter().zip([0.0, 0.25, 0.5, 0.75, 1.0]) {
            assert!((got - want).abs() < 1e-9, "{at:?}");
        }
        assert!((axis.fraction(2.0) - (0.25 + 2f64.log10() / 4.0)).abs() < 1e-9);
        assert_eq!(axis.fraction(0.0), 0.0, "below the axis clamps to its floor");
        assert_eq!(axis.fraction(1e9), 1.0);
        assert_eq!(axis.minor().len(), 8, "2x and 5x in each of 4 decades");
        // Values on a decade line do not open the next decade.
        assert_eq!(LogAxis::spanning([1.0, 100.0]), LogAxis { lo: 0, hi: 2 });
        // At least one decade; nothing below 1 µs; a default when empty.
        assert_eq!(LogAxis::spanning([4.0, 4.5]), LogAxis { lo: 0, hi: 1 });
        assert_eq!(LogAxis::spanning([1e-7, 0.5]), LogAxis { lo: -3, hi: 0 });
        assert_eq!(LogAxis::spanning([0.0, f64::NAN]), LogAxis { lo: -1, hi: 3 });
        let labels: Vec<String> = (-3..=5).map(decade_label).collect();
        assert_eq!(labels, ["1 µs", "0.01 ms", "0.1 ms", "1 ms", "10 ms", "100 ms", "1 s", "10 s", "100 s"]);
    }

    #[test]
    fn the_percentile_chart_labels_decades_and_places_latency_on_them() {
        let hot = sample_curve(800);
        let svg = render("t", "", &[Series { name: "tap_hot", points: &hot }]);
        let doc = roxmltree::Document::parse(&svg).unwrap();
        let texts: Vec<&str> = doc.descendants().filter(|n| n.has_tag_name("text")).filter_map(|n| n.text()).collect();
        for label in ["0.1 ms", "1 ms", "10 ms", "log scale"] {
            assert!(texts.contains(&label), "{label} in {texts:?}");
        }
        // The decade labels sit equally spaced, 1 ms above 0.1 ms.
        let y_of = |label: &str| {
            let node = doc.descendants().find(|n| n.has_tag_name("text") && n.text() == Some(label)).unwrap();
            node.attribute("y").unwrap().parse::<f64>().unwrap()
        };
        let (a, b, c) = (y_of("0.1 ms"), y_of("1 ms"), y_of("10 ms"));
        assert!(a > b && b > c && ((a - b) - (b - c)).abs() < 0.2, "{a} {b} {c}");
    }

    fn buckets(steps: usize, p50: f64, p99: f64) -> Vec<TimeBucket> {
        (0..steps)
            .map(|i| TimeBucket {
                from_seconds: i as f64 * 0.5,
                seconds: 0.5,
                count: 100,
                p50_ms: p50 * (1.0 + i as f64 / 10.0),
                p99_ms: p99,
            })
            .collect()
    }

    #[test]
    fn latency_over_time_draws_p50_and_p99_per_operation() {
        let hot = buckets(40, 0.9, 4.0);
        let pin = buckets(3, 90.0, 180.0);
        let svg = render_over_time(
            "over time",
            "",
            &[
                TimeSeries { name: "tap_hot", buckets: &hot },
                TimeSeries { name: "pin_entry", buckets: &pin },
                TimeSeries { name: "refresh", buckets: &[] },
            ],
        );
        let doc = roxmltree::Document::parse(&svg).expect("well-formed XML");
        let lines: Vec<_> = doc.descendants().filter(|n| n.has_tag_name("polyline")).collect();
        assert_eq!(lines.len(), 4, "p50 and p99 for each operation with requests");
        let titles: Vec<&str> = lines
            .iter()
            .filter_map(|l| l.children().find(|c| c.has_tag_name("title")).and_then(|t| t.text()))
            .collect();
        assert_eq!(titles, ["tap_hot p50", "tap_hot p99", "pin_entry p50", "pin_entry p99"]);
        assert!(lines[1].attribute("stroke-dasharray").is_some() && lines[0].attribute("stroke-dasharray").is_none());
        // One point a step, at the step's middle, inside the drawing.
        let points: Vec<(f64, f64)> = lines[0]
            .attribute("points")
            .unwrap()
            .split(' ')
            .map(|p| {
                let (x, y) = p.split_once(',').unwrap();
                (x.parse().unwrap(), y.parse().unwrap())
            })
            .collect();
        assert_eq!(points.len(), 40);
        let plot_w = WIDTH - LEFT - RIGHT;
        assert!((points[0].0 - (LEFT + 0.25 / 20.0 * plot_w)).abs() < 0.1, "{:?}", points[0]);
        for (px, py) in &points {
            assert!((LEFT..=WIDTH - RIGHT).contains(px) && (TOP..=HEIGHT - BOTTOM).contains(py));
        }
        assert!(points.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 > w[1].1), "later and slower: rising");
        let texts: Vec<&str> = doc.descendants().filter(|n| n.has_tag_name("text")).filter_map(|n| n.text()).collect();
        for label in ["0 s", "10 s", "20 s", "0.1 ms", "1 s", "p50 (median)", "p99", "tap_hot", "pin_entry"] {
            assert!(texts.contains(&label), "{label} in {texts:?}");
        }
        assert!(!texts.contains(&"refresh"), "no legend for an operation without requests");
        let empty = render_over_time("nothing", "", &[]);
        let doc = roxmltree::Document::parse(&empty).unwrap();
        assert!(doc.descendants().any(|n| n.text() == Some("no timed requests to plot")));
    }

    #[test]
    fn the_report_picture_stacks_both_views_in_matching_colours() {
        let hot = sample_curve(800);
        let pin = sample_curve(90_000);
        let hot_t = buckets(10, 1.0, 3.0);
        let pin_t = buckets(10, 95.0, 150.0);
        let svg = render_report(
            "both",
            "",
            &[Series { name: "tap_hot", points: &hot }, Series { name: "pin_entry", points: &pin }],
            &[TimeSeries { name: "tap_hot", buckets: &hot_t }, TimeSeries { name: "pin_entry", buckets: &pin_t }],
        );
        let doc = roxmltree::Document::parse(&svg).unwrap();
        let root = doc.root_element();
        assert!(root.attribute("height").unwrap().parse::<f64>().unwrap() > 2.0 * (HEIGHT - TOP - BOTTOM));
        let paths: Vec<_> = doc.descendants().filter(|n| n.has_tag_name("path")).collect();
        let lines: Vec<_> = doc.descendants().filter(|n| n.has_tag_name("polyline")).collect();
        assert_eq!((paths.len(), lines.len()), (2, 4));
        assert_eq!(paths[1].attribute("stroke"), lines[2].attribute("stroke"), "pin_entry in one colour");
        assert_ne!(paths[0].attribute("stroke"), paths[1].attribute("stroke"));
        // The time view lies wholly below the percentile view.
        let lowest_path = paths
            .iter()
            .flat_map(|p| p.attribute("d").unwrap().split(['M', 'L']).filter_map(|xy| xy.trim().split_once(',')))
            .map(|(_, y)| y.parse::<f64>().unwrap())
            .fold(0.0f64, f64::max);
        let highest_line = lines
            .iter()
            .flat_map(|l| l.attribute("points").unwrap().split(' ').filter_map(|xy| xy.split_once(',')))
            .map(|(_, y)| y.parse::<f64>().unwrap())
            .fold(f64::INFINITY, f64::min);
        assert!(lowest_path < highest_line, "{lowest_path} {highest_line}");
        for heading in ["By percentile", "Over the run: p50 (solid) and p99 (dashed)"] {
            assert!(doc.descendants().any(|n| n.text() == Some(heading)), "{heading}");
        }
        // Without timelines, the percentile chart alone.
        let plain = render_report("both", "", &[Series { name: "tap_hot", points: &hot }], &[]);
        assert_eq!(plain, render("both", "", &[Series { name: "tap_hot", points: &hot }]));
    }

    #[test]
    fn axis_helpers() {
        assert!((nines(90.0) - 1.0).abs() < 1e-9);
        assert!((nines(99.9) - 3.0).abs() < 1e-9);
        assert_eq!(percent_label(2), "99%");
        assert_eq!(percent_label(4), "99.99%");
        assert_eq!(nice_step(7.3, 6.0), 2.0);
        assert_eq!(nice_step(1000.0, 6.0), 200.0);
        assert_eq!(escape("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&apos;");
    }
}
