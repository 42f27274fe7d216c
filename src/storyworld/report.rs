//! The simulation's table and plot as files: CSV, and a two-panel SVG of the preferred
//! attribute's rate and the KL against picks.

use crate::storyworld::simulate::SimulationPoint;

/// One row per measurement, headed by the attribute's name.
pub fn csv(points: &[SimulationPoint], name: &str) -> String {
    let mut csv = format!("picks,{name},well_formed,kl,kl_stderr,loss,margin\n");
    for p in points {
        csv += &format!(
            "{},{},{},{},{},{},{}\n",
            p.picks, p.rate, p.well_formed, p.kl, p.kl_stderr, p.loss, p.margin
        );
    }
    csv
}

/// A two-panel line chart: attribute rate (0–1) and KL against picks.
pub fn svg(points: &[SimulationPoint], name: &str) -> String {
    let (w, h, pad) = (640.0, 240.0, 48.0);
    let max_x = points.last().map_or(1, |p| p.picks.max(1)) as f64;
    let max_kl = points.iter().map(|p| p.kl).fold(0.1f64, f64::max);
    let panel = |y0: f64, title: &str, ys: Vec<f64>, max_y: f64, color: &str| {
        let path: Vec<String> = points
            .iter()
            .zip(&ys)
            .map(|(p, y)| {
                format!(
                    "{:.1},{:.1}",
                    pad + p.picks as f64 / max_x * (w - 2.0 * pad),
                    y0 + h - pad - y / max_y * (h - 2.0 * pad)
                )
            })
            .collect();
        let line = path.join(" ");
        let (top, right, bottom, title_y) = (y0 + pad, w - pad, y0 + h - pad, y0 + 20.0);
        let (max_y_label, picks_x, picks_y) = (top + 4.0, right - 40.0, bottom + 16.0);
        format!(
            "<text x=\"{pad}\" y=\"{title_y}\" font-size=\"14\">{title}</text>\
             <line x1=\"{pad}\" y1=\"{bottom}\" x2=\"{right}\" y2=\"{bottom}\" \
             stroke=\"#888\"/>\
             <line x1=\"{pad}\" y1=\"{top}\" x2=\"{pad}\" y2=\"{bottom}\" stroke=\"#888\"/>\
             <text x=\"4\" y=\"{max_y_label}\" font-size=\"11\">{max_y:.2}</text>\
             <text x=\"4\" y=\"{bottom}\" font-size=\"11\">0</text>\
             <text x=\"{picks_x}\" y=\"{picks_y}\" font-size=\"11\">{max_x} picks</text>\
             <polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" \
             points=\"{line}\"/>"
        )
    };
    let height = 2.0 * h;
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{height}\" \
         font-family=\"sans-serif\">\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>{}{}</svg>\n",
        panel(
            0.0,
            &format!("rate of {name} stories"),
            points.iter().map(|p| p.rate).collect(),
            1.0,
            "#1d4ed8"
        ),
        panel(
            h,
            "KL(policy || reference), nats",
            points.iter().map(|p| p.kl).collect(),
            max_kl,
            "#b91c1c"
        )
    )
}
