//! Charts as SVG drawn here: axes with ticks and units, one line or bar per series, each
//! point titled with its value (a browser shows it on hover, a screen reader reads it). No
//! script and no inline style: colours are presentation attributes, which CSP allows.

use maud::{html, Markup};

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 240.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 36.0;
/// Colours told apart by people with the common colour blindnesses (Okabe and Ito).
const COLOURS: [&str; 5] = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00"];

pub struct Series<'a> {
    pub name: &'a str,
    pub values: Vec<f64>,
}

pub enum Kind {
    Line,
    Bars,
}

/// A chart of `series` over `labels` (one per point), the y axis in `unit`.
pub fn chart(
    title: &str,
    unit: &str,
    labels: &[String],
    series: &[Series<'_>],
    kind: Kind,
) -> Markup {
    let points = labels.len().max(1);
    let max = series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .fold(0.0_f64, f64::max);
    let top = nice_ceiling(max);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let step = plot_w / points as f64;
    let x = |i: usize| LEFT + step * (i as f64 + 0.5);
    let y = |v: f64| TOP + plot_h - (v / top) * plot_h;
    let ticks: Vec<f64> = (0..=4).map(|i| top * f64::from(i) / 4.0).collect();
    let label_every = points.div_ceil(6).max(1);
    let bar_w = (step / (series.len().max(1) as f64) * 0.8).max(1.0);
    let total: f64 = series.iter().flat_map(|s| s.values.iter()).sum();
    html! {
        figure.chart {
            figcaption { (title) }
            svg viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img" aria-label={ (title) " (" (unit) ")" } {
                // The y axis: gridlines and their values.
                @for tick in &ticks {
                    line x1=(LEFT) x2=(WIDTH - RIGHT) y1=(y(*tick)) y2=(y(*tick)) stroke="#d0d7de" stroke-width="1" {}
                    text x=(LEFT - 6.0) y=(y(*tick) + 4.0) text-anchor="end" font-size="11" fill="#57606a" { (format_value(*tick)) }
                }
                text x="12" y=(TOP + plot_h / 2.0) font-size="11" fill="#57606a" transform={ "rotate(-90 12 " (TOP + plot_h / 2.0) ")" } text-anchor="middle" { (unit) }
                // The x axis.
                line x1=(LEFT) x2=(WIDTH - RIGHT) y1=(TOP + plot_h) y2=(TOP + plot_h) stroke="#57606a" stroke-width="1" {}
                @for (i, label) in labels.iter().enumerate() {
                    @if i % label_every == 0 {
                        text x=(x(i)) y=(HEIGHT - 14.0) text-anchor="middle" font-size="11" fill="#57606a" { (label) }
                    }
                }
                @for (n, s) in series.iter().enumerate() {
                    @let colour = COLOURS[n % COLOURS.len()];
                    @match kind {
                        Kind::Line => {
                            polyline fill="none" stroke=(colour) stroke-width="2" points=(polyline(&s.values, &x, &y)) {}
                            @for (i, v) in s.values.iter().enumerate() {
                                @if *v > 0.0 {
                                    circle.point cx=(x(i)) cy=(y(*v)) r="3" fill=(colour) {
                                        title { (s.name) ", " (labels.get(i).map_or("", String::as_str)) ": " (format_value(*v)) " " (unit) }
                                    }
                                }
                            }
                        }
                        Kind::Bars => {
                            @for (i, v) in s.values.iter().enumerate() {
                                @if *v > 0.0 {
                                    rect.point x=(x(i) - step * 0.4 + bar_w * n as f64) y=(y(*v)) width=(bar_w) height=(TOP + plot_h - y(*v)) fill=(colour) {
                                        title { (s.name) ", " (labels.get(i).map_or("", String::as_str)) ": " (format_value(*v)) " " (unit) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if series.len() > 1 {
                ul.legend {
                    @for (n, s) in series.iter().enumerate() {
                        li { svg.swatch viewBox="0 0 10 10" aria-hidden="true" { rect width="10" height="10" fill=(COLOURS[n % COLOURS.len()]) {} } (s.name) }
                    }
                }
            }
            @if total == 0.0 { p.muted { "No activity in this range yet." } }
        }
    }
}

fn polyline(values: &[f64], x: &impl Fn(usize) -> f64, y: &impl Fn(f64) -> f64) -> String {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| format!("{:.1},{:.1}", x(i), y(*v)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The smallest of 1, 2 or 5 times a power of ten at or above `max` (at least 1).
pub fn nice_ceiling(max: f64) -> f64 {
    if max <= 1.0 {
        return 1.0;
    }
    let power = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|c| *c >= max)
        .unwrap_or(10.0 * power)
}

fn format_value(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        // 0.25, 0.5, 1.5: as many decimals as the value needs, at most two.
        let text = format!("{v:.2}");
        text.trim_end_matches('0').to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_are_round() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(3.0), 5.0);
        assert_eq!(nice_ceiling(7.0), 10.0);
        assert_eq!(nice_ceiling(12.0), 20.0);
        assert_eq!(nice_ceiling(200.0), 200.0);
        assert_eq!(nice_ceiling(201.0), 500.0);
        assert_eq!(format_value(0.25), "0.25");
        assert_eq!(format_value(1.5), "1.5");
        assert_eq!(format_value(2.0), "2");
    }

    #[test]
    fn charts_title_every_point_and_escape_names() {
        let labels = vec!["10:00".to_owned(), "10:01".to_owned()];
        let series = [Series {
            name: "<b>x</b>",
            values: vec![1.0, 3.0],
        }];
        let svg = chart("Users", "users", &labels, &series, Kind::Line).into_string();
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(svg.contains("&lt;b&gt;x&lt;/b&gt;, 10:01: 3 users"));
        assert!(!svg.contains("<b>x"));
    }
}
