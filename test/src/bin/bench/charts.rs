//! PNG charts of the report's figures, drawn with `plotters`: start latency per case and
//! memory per pod at each pod count. The README shows them.
//!
//! Text is drawn with DejaVu Sans from Debian's `fonts-dejavu-core` (`make deps` installs
//! it), registered with plotters' `ab_glyph` backend: no fontconfig, no system font lookup.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{Context, Result, anyhow, bail};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::report::{Outcome, Table};

const FONT_PATH: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf";
const FONT: &str = "sans-serif";
const BASELINE_COLOR: RGBColor = RGBColor(140, 140, 140);
const WARDEN_COLOR: RGBColor = RGBColor(52, 101, 164);
const TARGET_COLOR: RGBColor = RGBColor(204, 0, 0);

/// Registers the font once per process.
fn font() -> Result<()> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            let bytes = std::fs::read(FONT_PATH).map_err(|e| {
                format!("charts need {FONT_PATH} (apt-get install fonts-dejavu-core): {e}")
            })?;
            plotters::style::register_font(FONT, FontStyle::Normal, Box::leak(bytes.into()))
                .map_err(|_| format!("{FONT_PATH} is not a font plotters can read"))
        })
        .clone()
        .map_err(|e| anyhow!(e))
}

/// Errors of plotters' drawing backends, which are not `Send + Sync`.
fn drawing<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing the chart: {e:?}")
}

/// Horizontal bars: each case's median with its min-max range and its ratio to the
/// baseline; `target` draws a line at that fraction of the baseline's median.
pub fn cases(table: &Table, title: &str, target: Option<(f64, &str)>, path: &Path) -> Result<()> {
    font()?;
    let rows = &table.rows;
    if rows.is_empty() {
        bail!("no cases to chart for {title}");
    }
    let height = 130 + 44 * rows.len() as u32;
    let root = BitMapBackend::new(path, (1400, height)).into_drawing_area();
    root.fill(&WHITE).map_err(drawing)?;
    let x_max = rows
        .iter()
        .filter_map(|r| match &r.outcome {
            Outcome::Measured(f) => Some(f.max),
            Outcome::NotRun { .. } => None,
        })
        .fold(1.0_f64, f64::max)
        * 1.18;
    let n = rows.len() as u32;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 22))
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(520)
        // An integer range holds both its ends: `0..n - 1` is n segments.
        .build_cartesian_2d(0.0..x_max, (0..n - 1).into_segmented())
        .map_err(drawing)?;
    let names: Vec<String> = rows.iter().map(|r| r.case.clone()).collect();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(rows.len())
        // The first case at the top.
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => names
                .get((n - 1 - *i) as usize)
                .cloned()
                .unwrap_or_default(),
            _ => String::new(),
        })
        .x_labels(10)
        .light_line_style(WHITE)
        .x_desc(format!("{} (bar: median; whisker: min to max)", table.unit))
        .label_style((FONT, 15))
        .draw()
        .map_err(drawing)?;
    for (i, row) in rows.iter().enumerate() {
        let i = n - 1 - i as u32;
        let y = SegmentValue::CenterOf(i);
        match &row.outcome {
            Outcome::Measured(f) => {
                let color = if row.case == table.baseline {
                    BASELINE_COLOR
                } else {
                    WARDEN_COLOR
                };
                let mut bar = Rectangle::new(
                    [
                        (0.0, SegmentValue::Exact(i)),
                        (f.median, SegmentValue::Exact(i + 1)),
                    ],
                    color.filled(),
                );
                bar.set_margin(8, 8, 0, 0);
                let label = match f.ratio {
                    Some(r) => format!("{:.1} {}  {r:.2}x", f.median, table.unit),
                    None => format!("{:.1} {}  baseline", f.median, table.unit),
                };
                chart
                    .draw_series([
                        bar.into_dyn(),
                        ErrorBar::new_horizontal(
                            y.clone(),
                            f.min,
                            f.median,
                            f.max,
                            BLACK.stroke_width(2),
                            10,
                        )
                        .into_dyn(),
                        Text::new(label, (f.max + x_max * 0.01, y), (FONT, 14).into_font())
                            .into_dyn(),
                    ])
                    .map_err(drawing)?;
            }
            Outcome::NotRun { reason } => {
                chart
                    .draw_series([Text::new(
                        reason.clone(),
                        (x_max * 0.01, y),
                        (FONT, 14).into_font().color(&BASELINE_COLOR),
                    )])
                    .map_err(drawing)?;
            }
        }
    }
    if let Some((fraction, label)) = target
        && let Some(base) = table.figure(&table.baseline)
    {
        let x = base.median * fraction;
        chart
            .draw_series(LineSeries::new(
                [(x, SegmentValue::Exact(0)), (x, SegmentValue::Last)],
                TARGET_COLOR.stroke_width(2),
            ))
            .map_err(drawing)?
            .label(label)
            .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], TARGET_COLOR.stroke_width(2)));
        chart
            .configure_series_labels()
            .label_font((FONT, 14))
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(drawing)?;
    }
    root.present()
        .with_context(|| format!("cannot write {}", path.display()))
}

/// One pod count of the memory chart: PSS per pod (MB) under runc and warden.
pub struct PodCount {
    pub pods: usize,
    pub runc: Option<f64>,
    pub warden: Option<f64>,
}

/// Grouped bars: PSS per pod, runc beside warden, at each pod count; a line at `target` MB.
pub fn memory_per_pod(groups: &[PodCount], target: f64, path: &Path) -> Result<()> {
    font()?;
    if groups.is_empty() {
        bail!("no pod counts to chart");
    }
    let root = BitMapBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(drawing)?;
    let y_max = groups
        .iter()
        .flat_map(|g| [g.runc, g.warden])
        .flatten()
        .fold(target, f64::max)
        * 1.2;
    let n = groups.len() as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Memory per pod: PSS summed over each pod's shim tree",
            (FONT, 22),
        )
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.5..n - 0.5, 0.0..y_max)
        .map_err(drawing)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .light_line_style(WHITE)
        .y_desc("MB PSS per pod")
        .label_style((FONT, 15))
        .draw()
        .map_err(drawing)?;
    for (i, g) in groups.iter().enumerate() {
        let x = i as f64;
        for (value, left, color, name) in [
            (g.runc, x - 0.36, BASELINE_COLOR, "runc"),
            (g.warden, x + 0.02, WARDEN_COLOR, "warden"),
        ] {
            let Some(v) = value else { continue };
            chart
                .draw_series([
                    Rectangle::new([(left, 0.0), (left + 0.34, v)], color.filled()).into_dyn(),
                    Text::new(
                        format!("{name} {v:.1}"),
                        (left + 0.02, v + y_max * 0.045),
                        (FONT, 14).into_font(),
                    )
                    .into_dyn(),
                ])
                .map_err(drawing)?;
        }
        label_below(&root, chart.backend_coord(&(x, 0.0)), &pods_label(g.pods))?;
    }
    chart
        .draw_series(LineSeries::new(
            [(-0.5, target), (n - 0.5, target)],
            TARGET_COLOR.stroke_width(2),
        ))
        .map_err(drawing)?
        .label(format!("target: {target} MB per pod at 50 pods"))
        .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], TARGET_COLOR.stroke_width(2)));
    chart
        .configure_series_labels()
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(drawing)?;
    root.present()
        .with_context(|| format!("cannot write {}", path.display()))
}

fn pods_label(pods: usize) -> String {
    if pods == 1 {
        "1 pod".into()
    } else {
        format!("{pods} pods")
    }
}

/// Text centred under the x axis at pixel `at`.
fn label_below(
    root: &DrawingArea<BitMapBackend<'_>, Shift>,
    at: (i32, i32),
    text: &str,
) -> Result<()> {
    let style = TextStyle::from((FONT, 16).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
    root.draw(&Text::new(text.to_string(), (at.0, at.1 + 8), style))
        .map_err(drawing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Samples;

    /// Both charts are drawn as PNG files (set `WARDEN_BENCH_CHART_DIR` to keep them and look).
    #[test]
    fn charts_are_png_files() {
        let temp = tempfile::tempdir().expect("temp dir");
        let dir = std::env::var_os("WARDEN_BENCH_CHART_DIR")
            .map_or_else(|| temp.path().to_path_buf(), std::path::PathBuf::from);
        let mut t = Table::new("start", "ms", "runc + static native hello");
        t.measured(
            "runc + static native hello",
            &Samples(vec![70.0, 79.0, 89.0]),
        );
        t.measured(
            "warden Rust p1 hello, cold compile cache",
            &Samples(vec![96.0, 108.0, 137.0]),
        );
        t.measured(
            "warden Rust p1 hello, warm cache",
            &Samples(vec![57.0, 68.0, 88.0]),
        );
        t.not_run(
            "warden Go CLI example (GOOS=wasip1)",
            "not built (make examples)",
        );
        t.compare();
        let start = dir.join("start.png");
        cases(
            &t,
            "Start latency",
            Some((0.75, "target: 0.75x runc")),
            &start,
        )
        .expect("drawn");
        let memory = dir.join("memory.png");
        let groups = [
            PodCount {
                pods: 1,
                runc: Some(12.5),
                warden: Some(19.2),
            },
            PodCount {
                pods: 10,
                runc: Some(4.1),
                warden: Some(7.9),
            },
            PodCount {
                pods: 50,
                runc: None,
                warden: Some(6.1),
            },
        ];
        memory_per_pod(&groups, 8.0, &memory).expect("drawn");
        for file in [start, memory] {
            let bytes = std::fs::read(&file).expect("written");
            assert!(
                bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
                "{}",
                file.display()
            );
        }
    }
}
