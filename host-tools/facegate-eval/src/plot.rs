//! PNG charts: ROC on a log-FAR axis (several models on one chart) and
//! genuine/impostor score histograms with the door threshold marked.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::prelude::*;

use crate::roc::OperatingPoint;

/// Errors drawing charts.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// No usable font: charts need one for their labels.
    #[error(
        "no font for chart labels: install fonts-dejavu-core (scripts/setup.sh does) or set FACEGATE_FONT to a .ttf file"
    )]
    NoFont,
    /// Drawing or encoding failed.
    #[error("drawing {}: {reason}", path.display())]
    Draw {
        /// Output file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

const FONT_CANDIDATES: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

/// Registers a TTF font as "sans-serif" once per process (every chart
/// needs one for its labels).
pub fn ensure_font() -> Result<(), PlotError> {
    static FONT: OnceLock<bool> = OnceLock::new();
    let ok = *FONT.get_or_init(|| {
        let path = std::env::var_os("FACEGATE_FONT")
            .map(PathBuf::from)
            .into_iter()
            .chain(FONT_CANDIDATES.iter().map(PathBuf::from))
            .find(|p| p.is_file());
        let Some(bytes) = path.and_then(|p| std::fs::read(p).ok()) else {
            return false;
        };
        // plotters keeps fonts for the process lifetime.
        plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            Box::leak(bytes.into_boxed_slice()),
        )
        .is_ok()
    });
    if ok { Ok(()) } else { Err(PlotError::NoFont) }
}

fn draw_err(path: &Path) -> impl Fn(String) -> PlotError + '_ {
    move |reason| PlotError::Draw {
        path: path.to_path_buf(),
        reason,
    }
}

/// A named ROC for [`roc_chart`].
#[derive(Debug, Clone)]
pub struct Curve<'a> {
    /// Legend label.
    pub label: String,
    /// Points (FAR, TAR).
    pub points: &'a [OperatingPoint],
}

/// ROC curves on one chart, FAR on a log axis.
pub fn roc_chart(path: &Path, title: &str, curves: &[Curve<'_>]) -> Result<(), PlotError> {
    ensure_font()?;
    let e = draw_err(path);
    let root = BitMapBackend::new(path, (900, 650)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(x.to_string()))?;
    let min_far = curves
        .iter()
        .flat_map(|c| c.points.iter().map(|p| p.far))
        .filter(|&f| f > 0.0)
        .fold(1.0f64, f64::min)
        .max(1e-7);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(60)
        .build_cartesian_2d((min_far..1.0f64).log_scale(), 0.0f64..1.0)
        .map_err(|x| e(x.to_string()))?;
    chart
        .configure_mesh()
        .x_desc("false accept rate (FAR)")
        .y_desc("true accept rate (TAR)")
        .x_label_formatter(&|v| format!("{v:.0e}"))
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(|x| e(x.to_string()))?;
    for (i, c) in curves.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let pts: Vec<(f64, f64)> = c
            .points
            .iter()
            .filter(|p| p.far > 0.0)
            .map(|p| (p.far, p.tar))
            .collect();
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(|x| e(x.to_string()))?
            .label(c.label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .draw()
        .map_err(|x| e(x.to_string()))?;
    root.present().map_err(|x| e(x.to_string()))
}

/// Genuine and impostor score densities over [-1, 1] with the threshold as a vertical line.
pub fn score_histogram_chart(
    path: &Path,
    title: &str,
    genuine: &[u64],
    impostor: &[u64],
    threshold: Option<f64>,
) -> Result<(), PlotError> {
    ensure_font()?;
    let e = draw_err(path);
    let density = |h: &[u64]| -> Vec<f64> {
        let total = h.iter().sum::<u64>().max(1) as f64;
        h.iter().map(|&c| c as f64 / total).collect()
    };
    let (g, i) = (density(genuine), density(impostor));
    let top = g.iter().chain(&i).copied().fold(0.0, f64::max) * 1.1;
    let root = BitMapBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(x.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(-1.0f64..1.0, 0.0..top.max(1e-9))
        .map_err(|x| e(x.to_string()))?;
    chart
        .configure_mesh()
        .x_desc("cosine similarity")
        .y_desc("fraction of comparisons")
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(|x| e(x.to_string()))?;
    let step = |d: &[f64]| -> Vec<(f64, f64)> {
        let w = 2.0 / d.len() as f64;
        d.iter()
            .enumerate()
            .flat_map(|(k, &v)| [(-1.0 + k as f64 * w, v), (-1.0 + (k + 1) as f64 * w, v)])
            .collect()
    };
    for (data, label, color) in [
        (&g, "genuine", GREEN.mix(0.9)),
        (&i, "impostor", RED.mix(0.9)),
    ] {
        chart
            .draw_series(LineSeries::new(step(data), color.stroke_width(2)))
            .map_err(|x| e(x.to_string()))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    if let Some(t) = threshold {
        chart
            .draw_series(LineSeries::new([(t, 0.0), (t, top)], BLUE.stroke_width(2)))
            .map_err(|x| e(x.to_string()))?
            .label(format!("threshold {t:.3}"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .draw()
        .map_err(|x| e(x.to_string()))?;
    root.present().map_err(|x| e(x.to_string()))
}

/// A named series of (x, y) points for [`line_chart`].
#[derive(Debug, Clone)]
pub struct Series<'a> {
    /// Legend label.
    pub label: &'a str,
    /// Points, in x order.
    pub points: Vec<(f64, f64)>,
}

/// Lines over a linear x axis (training curves): y from the data's range.
pub fn line_chart(
    path: &Path,
    title: &str,
    (x_desc, y_desc): (&str, &str),
    series: &[Series<'_>],
) -> Result<(), PlotError> {
    ensure_font()?;
    let e = draw_err(path);
    let root = BitMapBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(x.to_string()))?;
    let pts = || series.iter().flat_map(|s| s.points.iter().copied());
    let (x0, x1) = pts().fold((f64::MAX, f64::MIN), |(a, b), (x, _)| (a.min(x), b.max(x)));
    let (y0, y1) = pts()
        .filter(|p| p.1.is_finite())
        .fold((f64::MAX, f64::MIN), |(a, b), (_, y)| (a.min(y), b.max(y)));
    let (x0, x1) = if x0 < x1 {
        (x0, x1)
    } else {
        (x0 - 1.0, x0 + 1.0)
    };
    let pad = ((y1 - y0) * 0.05).max(1e-3);
    let (y0, y1) = if y0 <= y1 {
        (y0 - pad, y1 + pad)
    } else {
        (0.0, 1.0)
    };
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(|x| e(x.to_string()))?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(|x| e(x.to_string()))?;
    for (i, s) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(s.points.clone(), color.stroke_width(2)))
            .map_err(|x| e(x.to_string()))?
            .label(s.label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .draw()
        .map_err(|x| e(x.to_string()))?;
    root.present().map_err(|x| e(x.to_string()))
}
