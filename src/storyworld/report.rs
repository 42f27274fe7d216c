//! The simulation's table and plot as files: CSV, a two-panel SVG of the preferred attribute's
//! rate and the KL against picks, and the sweep's rate-against-KL figure.

use std::fmt::Write;

use crate::storyworld::simulate::{Baselines, SimulationPoint, SweepRun};

const POINT_COLUMNS: &str = "picks,rate,rate_low,rate_high,well_formed,kl,kl_stderr,loss,margin";

fn point_row(p: &SimulationPoint) -> String {
    format!(
        "{},{},{},{},{},{},{},{},{}",
        p.picks,
        p.rate,
        p.rate_low,
        p.rate_high,
        p.well_formed,
        p.kl,
        p.kl_stderr,
        p.loss,
        p.margin
    )
}

/// One row per measurement, headed by the attribute's name.
pub fn csv(points: &[SimulationPoint], name: &str) -> String {
    let mut csv = format!("attribute,{POINT_COLUMNS}\n");
    for p in points {
        writeln!(csv, "{name},{}", point_row(p)).expect("writing to a String");
    }
    csv
}

/// The sweep as one table: a row per measurement of each run, then the two baselines (the
/// reference, at picks 0, and best-of-2 sampling from it, without picks).
pub fn sweep_csv(runs: &[SweepRun], name: &str) -> String {
    let mut csv = format!("attribute,objective,beta,{POINT_COLUMNS}\n");
    for run in runs {
        for p in &run.points {
            let row = point_row(p);
            writeln!(csv, "{name},{},{},{row}", run.loss, run.beta).expect("writing to a String");
        }
    }
    if let Some(b) = Baselines::of(runs) {
        let (p0, q, kl) = (b.reference_rate, b.best_of_2_rate, b.best_of_2_kl);
        writeln!(csv, "{name},reference,,0,{p0},,,,0,,,").expect("writing to a String");
        writeln!(csv, "{name},best_of_2,,,{q},,,,{kl},,,").expect("writing to a String");
    }
    csv
}

/// Colours for the sweep's β values, in order.
const PALETTE: [&str; 6] = [
    "#1d4ed8", "#059669", "#d97706", "#b91c1c", "#7c3aed", "#0891b2",
];
/// Dash patterns for its losses, in order.
const DASHES: [&str; 4] = ["", "6 3", "2 3", "8 3 2 3"];

/// The DPO paper's picture in miniature: the preferred attribute's rate against KL(π ‖ π_ref)
/// along each run (a line per run, a dot per measurement, the last one labelled with its picks),
/// with the reference, best-of-2 sampling and the bound no policy can pass.
pub fn sweep_svg(runs: &[SweepRun], name: &str) -> String {
    let (w, h, pad, legend) = (720.0, 440.0, 56.0, 180.0);
    let plot_right = w - legend;
    let max_kl = runs
        .iter()
        .flat_map(|r| &r.points)
        .map(|p| p.kl)
        .filter(|k| k.is_finite())
        .fold(0.5f64, f64::max)
        * 1.05;
    let x = |kl: f64| pad + kl / max_kl * (plot_right - pad);
    let y = |rate: f64| h - pad - rate * (h - 2.0 * pad);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" \
         font-family=\"sans-serif\" font-size=\"12\">\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\
         <text x=\"{pad}\" y=\"24\" font-size=\"15\">rate of {name} stories against \
         KL(policy ‖ reference)</text>"
    );
    // Axes, with ticks at every 0.25 of the rate and at round KL values.
    let (bottom, top) = (y(0.0), y(1.0));
    write!(
        svg,
        "<line x1=\"{pad}\" y1=\"{bottom}\" x2=\"{plot_right}\" y2=\"{bottom}\" stroke=\"#888\"/>\
         <line x1=\"{pad}\" y1=\"{top}\" x2=\"{pad}\" y2=\"{bottom}\" stroke=\"#888\"/>"
    )
    .expect("writing to a String");
    for i in 0..=4 {
        let r = i as f64 / 4.0;
        let ty = y(r);
        write!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{r:.2}</text>\
             <line x1=\"{pad}\" y1=\"{ty}\" x2=\"{plot_right}\" y2=\"{ty}\" stroke=\"#eee\"/>",
            pad - 6.0,
            ty + 4.0
        )
        .expect("writing to a String");
    }
    let step = [0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0]
        .into_iter()
        .find(|s| max_kl / s <= 8.0)
        .unwrap_or(100.0);
    for i in 0..=(max_kl / step) as usize {
        let tick = i as f64 * step;
        // Rounded so that 3 × 0.1 reads 0.3.
        let label = (tick * 100.0).round() / 100.0;
        write!(
            svg,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{label}</text>",
            x(tick),
            bottom + 16.0
        )
        .expect("writing to a String");
    }
    write!(
        svg,
        "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">KL, nats</text>",
        (pad + plot_right) / 2.0,
        h - 12.0
    )
    .expect("writing to a String");
    let mut legend_y = pad;
    let mut legend_entry = |svg: &mut String, mark: String, label: &str| {
        let lx = plot_right + 16.0;
        write!(
            svg,
            "<g transform=\"translate({lx},{legend_y})\">{mark}\
             <text x=\"30\" y=\"4\">{label}</text></g>"
        )
        .expect("writing to a String");
        legend_y += 18.0;
    };
    if let Some(b) = Baselines::of(runs) {
        // The bound, from the reference's rate to where it leaves the plot.
        let bound: Vec<String> = (0..=200)
            .map(|i| b.reference_rate + (1.0 - b.reference_rate) * i as f64 / 200.0)
            .map(|q| (q, b.bound(q)))
            .take_while(|&(_, kl)| kl <= max_kl)
            .map(|(q, kl)| format!("{:.1},{:.1}", x(kl), y(q)))
            .collect();
        write!(
            svg,
            "<polyline fill=\"none\" stroke=\"#999\" stroke-dasharray=\"4 4\" points=\"{}\"/>",
            bound.join(" ")
        )
        .expect("writing to a String");
        legend_entry(
            &mut svg,
            "<line x1=\"0\" y1=\"0\" x2=\"24\" y2=\"0\" stroke=\"#999\" stroke-dasharray=\"4 4\"/>"
                .into(),
            "bound (best-of-n)",
        );
        let square = |kl: f64, rate: f64, fill: &str| {
            format!(
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"9\" height=\"9\" fill=\"{fill}\"/>",
                x(kl) - 4.5,
                y(rate) - 4.5
            )
        };
        svg += &square(0.0, b.reference_rate, "#000");
        svg += &square(b.best_of_2_kl, b.best_of_2_rate, "#e11d48");
        let mark = |fill: &str| {
            format!("<rect x=\"8\" y=\"-4.5\" width=\"9\" height=\"9\" fill=\"{fill}\"/>")
        };
        legend_entry(&mut svg, mark("#000"), "reference");
        legend_entry(&mut svg, mark("#e11d48"), "best-of-2");
    }
    let mut betas: Vec<f64> = Vec::new();
    let mut losses = Vec::new();
    for run in runs {
        if !betas.contains(&run.beta) {
            betas.push(run.beta);
        }
        if !losses.contains(&run.loss) {
            losses.push(run.loss);
        }
    }
    for run in runs {
        let colour =
            PALETTE[betas.iter().position(|&b| b == run.beta).unwrap_or(0) % PALETTE.len()];
        let dash = DASHES[losses.iter().position(|&l| l == run.loss).unwrap_or(0) % DASHES.len()];
        let line: Vec<String> = run
            .points
            .iter()
            .map(|p| format!("{:.1},{:.1}", x(p.kl), y(p.rate)))
            .collect();
        write!(
            svg,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" \
             stroke-dasharray=\"{dash}\" points=\"{}\"/>",
            line.join(" ")
        )
        .expect("writing to a String");
        for p in &run.points {
            write!(
                svg,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{colour}\"/>",
                x(p.kl),
                y(p.rate)
            )
            .expect("writing to a String");
        }
        if let Some(p) = run.points.last() {
            write!(
                svg,
                "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" fill=\"{colour}\">{}</text>",
                x(p.kl) + 5.0,
                y(p.rate) - 5.0,
                p.picks
            )
            .expect("writing to a String");
        }
        let mark = format!(
            "<line x1=\"0\" y1=\"0\" x2=\"24\" y2=\"0\" stroke=\"{colour}\" \
             stroke-width=\"2\" stroke-dasharray=\"{dash}\"/>"
        );
        let label = if losses.len() > 1 {
            format!("{} β = {}", run.loss, run.beta)
        } else {
            format!("β = {}", run.beta)
        };
        legend_entry(&mut svg, mark, &label);
    }
    svg + "</svg>\n"
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
