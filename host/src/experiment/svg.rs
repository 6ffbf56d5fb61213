//! Small self-contained SVG line charts for the report (no fonts or network needed: the browser
//! renders the text).
use std::fmt::Write;

/// One line of a chart.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// CSS colour.
    pub color: String,
    /// Dashed line.
    pub dashed: bool,
    /// Points in data coordinates.
    pub points: Vec<(f64, f64)>,
}

impl Series {
    /// A series.
    pub fn new(name: &str, color: &str, dashed: bool, points: Vec<(f64, f64)>) -> Self {
        Series { name: name.into(), color: color.into(), dashed, points }
    }
}

/// A chart on [0, 1] x [0, 1] (ROC, precision-recall).
pub fn line_chart(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> String {
    chart(title, x_label, y_label, (0.0, 1.0), (0.0, 1.0), series)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let span = (hi - lo).max(1e-9);
    let raw = span / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step =
        [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(raw);
    let mut t = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while t <= hi + step * 1e-6 {
        out.push(t);
        t += step;
    }
    out
}

/// A line chart with axes, ticks, a grid and a legend below the plot.
pub fn chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    (x0, x1): (f64, f64),
    (y0, y1): (f64, f64),
    series: &[Series],
) -> String {
    let (w, ph) = (520.0, 340.0);
    let (ml, mr, mt, mb) = (56.0, 16.0, 30.0, 44.0);
    let legend_h = 18.0 * series.len() as f64 + 8.0;
    let h = ph + legend_h;
    let px = |x: f64| ml + (x - x0) / (x1 - x0).max(1e-12) * (w - ml - mr);
    let py = |y: f64| mt + (1.0 - (y - y0) / (y1 - y0).max(1e-12)) * (ph - mt - mb);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = write!(
        s,
        r#"<text x="{}" y="18" text-anchor="middle" font-size="14" font-weight="bold">{}</text>"#,
        w / 2.0,
        esc(title)
    );
    for t in ticks(x0, x1) {
        let x = px(t);
        let _ = write!(
            s,
            r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#e5e5e5"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            py(y0),
            py(y1),
            py(y0) + 15.0,
            fmt_tick(t)
        );
    }
    for t in ticks(y0, y1) {
        let y = py(t);
        let _ = write!(
            s,
            r##"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e5e5e5"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            px(x0),
            px(x1),
            px(x0) - 5.0,
            y + 4.0,
            fmt_tick(t)
        );
    }
    let _ = write!(
        s,
        r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="none" stroke="#333"/>"##,
        px(x0),
        py(y1),
        px(x1) - px(x0),
        py(y0) - py(y1)
    );
    let _ = write!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        (px(x0) + px(x1)) / 2.0,
        ph - 8.0,
        esc(x_label)
    );
    let _ = write!(
        s,
        r#"<text transform="translate(14,{:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
        (py(y0) + py(y1)) / 2.0,
        esc(y_label)
    );
    for (i, se) in series.iter().enumerate() {
        let dash = if se.dashed { r#" stroke-dasharray="6,4""# } else { "" };
        if !se.points.is_empty() {
            let pts: Vec<String> = se
                .points
                .iter()
                .filter(|p| p.0.is_finite() && p.1.is_finite())
                .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
                .collect();
            let _ = write!(
                s,
                r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"{dash}/>"#,
                pts.join(" "),
                esc(&se.color)
            );
        }
        let ly = ph + 8.0 + 18.0 * i as f64;
        let _ = write!(
            s,
            r#"<line x1="{ml}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}">{}</text>"#,
            ml + 28.0,
            esc(&se.color),
            ml + 36.0,
            ly + 4.0,
            esc(&se.name)
        );
    }
    s.push_str("</svg>\n");
    s
}

fn fmt_tick(t: f64) -> String {
    if (t - t.round()).abs() < 1e-9 {
        format!("{}", t.round() as i64)
    } else {
        let s = format!("{t:.2}");
        s.trim_end_matches('0').to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_has_every_series_and_escapes_text() {
        let s = line_chart(
            "a < b",
            "x",
            "y",
            &[Series::new("one", "red", false, vec![(0.0, 0.0), (1.0, 1.0)])],
        );
        assert!(s.starts_with("<svg") && s.ends_with("</svg>\n"));
        assert!(s.contains("a &lt; b"));
        assert!(s.contains("<polyline") && s.contains(">one</text>"));
        assert_eq!(ticks(0.0, 1.0).len(), 6);
        assert_eq!(ticks(1.0, 30.0), vec![10.0, 20.0, 30.0]);
    }
}
