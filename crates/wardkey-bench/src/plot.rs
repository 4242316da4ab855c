//! The latency-by-percentile plot as a self-contained SVG, drawn by hand
//! (a few lines of text, no plotting library): one line per operation,
//! latency up the side, percentile along a log axis where 90 %, 99 %,
//! 99.9 %… are equally spaced, as HdrHistogram's plotter draws it. That
//! axis is what makes the tail visible: on a linear axis p99.9 would be a
//! pixel from the edge.

use std::fmt::Write;

use crate::stats::CurvePoint;

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 540.0;
const LEFT: f64 = 80.0;
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

/// The SVG document.
pub fn render(title: &str, subtitle: &str, series: &[Series<'_>]) -> String {
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    // The axis runs to the deepest percentile any series reached short of
    // 100 %, at least 99.9 %, at most 99.9999 %.
    let deepest = series
        .iter()
        .flat_map(|s| s.points.iter())
        .filter(|p| p.percentile < 100.0)
        .map(|p| nines(p.percentile))
        .fold(0.0f64, f64::max);
    let x_max = deepest.ceil().clamp(3.0, 6.0);
    let y_top = series.iter().flat_map(|s| s.points.iter()).map(|p| p.latency_ms).fold(0.0f64, f64::max);
    let y_step = nice_step(if y_top > 0.0 { y_top } else { 1.0 }, 6.0);
    let y_max = ((y_top / y_step).ceil().max(1.0)) * y_step;
    let x = |percentile: f64| {
        let n = if percentile >= 100.0 { x_max } else { nines(percentile).min(x_max) };
        LEFT + n / x_max * plot_w
    };
    let y = |ms: f64| TOP + plot_h - (ms / y_max).clamp(0.0, 1.0) * plot_h;

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<title>{}</title>"#, escape(title));
    let _ = writeln!(svg, r##"<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>"##);
    let _ = writeln!(svg, r#"<text x="{LEFT}" y="26" font-size="16" font-weight="bold">{}</text>"#, escape(title));
    let _ = writeln!(svg, r##"<text x="{LEFT}" y="46" fill="#555555">{}</text>"##, escape(subtitle));

    // Grid and axes.
    let _ = writeln!(svg, r##"<g stroke="#dddddd" stroke-width="1">"##);
    let mut tick = 0.0;
    while tick <= y_max + y_step * 0.01 {
        let ty = y(tick);
        let _ = writeln!(svg, r#"<line x1="{LEFT}" y1="{ty:.1}" x2="{:.1}" y2="{ty:.1}"/>"#, LEFT + plot_w);
        tick += y_step;
    }
    for k in 0..=(x_max as usize) {
        let tx = LEFT + k as f64 / x_max * plot_w;
        let _ = writeln!(svg, r#"<line x1="{tx:.1}" y1="{TOP}" x2="{tx:.1}" y2="{:.1}"/>"#, TOP + plot_h);
    }
    let _ = writeln!(svg, "</g>");
    let _ = writeln!(
        svg,
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#333333"/>"##
    );
    let mut tick = 0.0;
    while tick <= y_max + y_step * 0.01 {
        let label = if y_step < 1.0 { format!("{tick:.2}") } else { format!("{tick:.0}") };
        let _ =
            writeln!(svg, r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{label}</text>"#, LEFT - 6.0, y(tick) + 4.0);
        tick += y_step;
    }
    for k in 0..=(x_max as usize) {
        let tx = LEFT + k as f64 / x_max * plot_w;
        let _ = writeln!(
            svg,
            r#"<text x="{tx:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            TOP + plot_h + 18.0,
            percent_label(k)
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile (log scale: each step is one more nine)</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 18.0
    );
    let _ = writeln!(
        svg,
        r#"<text transform="translate(20 {:.1}) rotate(-90)" text-anchor="middle">latency (ms)</text>"#,
        TOP + plot_h / 2.0
    );

    // Curves and legend.
    let drawn: Vec<&Series<'_>> = series.iter().filter(|s| !s.points.is_empty()).collect();
    if drawn.is_empty() {
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#aa0000">no successful requests to plot</text>"##,
            LEFT + plot_w / 2.0,
            TOP + plot_h / 2.0
        );
    }
    for (i, s) in drawn.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        let mut d = String::new();
        for (j, p) in s.points.iter().enumerate() {
            let _ = write!(d, "{}{:.1},{:.1}", if j == 0 { "M" } else { " L" }, x(p.percentile), y(p.latency_ms));
        }
        let _ = writeln!(
            svg,
            r#"<path d="{d}" fill="none" stroke="{colour}" stroke-width="2" stroke-linejoin="round"><title>{}</title></path>"#,
            escape(s.name)
        );
        let ly = TOP + 10.0 + i as f64 * 20.0;
        let lx = LEFT + plot_w + 16.0;
        let _ = writeln!(
            svg,
            r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{colour}" stroke-width="3"/>"#,
            lx + 22.0
        );
        let _ = writeln!(svg, r#"<text x="{:.1}" y="{:.1}">{}</text>"#, lx + 28.0, ly + 4.0, escape(s.name));
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{curve, new_histogram, record};
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
