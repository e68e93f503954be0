//! The attack report as one self-contained HTML file (`--html`): inline SVG
//! plots drawn with plotters (timeline lanes, the target's and the
//! workload's signals over time, requested vs achieved per event, per-site
//! dwell), and tables of failures, ToC decisions and assertions. No script,
//! no external resource: it opens offline. Pure: a report in, text out.

use std::fmt::Write;

use plotters::prelude::*;

use super::report::{EventReport, Report};
use super::units;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const W: u32 = 860;

/// A named, coloured series of `(t seconds, value)` points.
type Series<'a> = (&'a str, RGBColor, Vec<(f64, f64)>);

/// One line chart of `(t seconds, value)` series, as SVG text.
fn line_chart(title: &str, y_unit: &str, series: &[Series<'_>], t_max: f64) -> String {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, 190)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let y_max = series
            .iter()
            .flat_map(|(_, _, v)| v.iter().map(|p| p.1))
            .fold(0.0f64, f64::max)
            .max(1e-9)
            * 1.1;
        let Ok(mut chart) = ChartBuilder::on(&root)
            .caption(format!("{title} ({y_unit})"), ("sans-serif", 14))
            .margin(6)
            .x_label_area_size(22)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..t_max.max(1e-9), 0f64..y_max)
        else {
            return String::new();
        };
        let _ = chart
            .configure_mesh()
            .x_desc("s")
            .y_label_formatter(&|v| units::fmt_num(*v))
            .light_line_style(WHITE.mix(0.0))
            .draw();
        for (name, color, points) in series {
            let color = *color;
            if let Ok(s) = chart.draw_series(LineSeries::new(points.iter().copied(), &color)) {
                s.label(*name)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
            }
        }
        if series.len() > 1 {
            let _ = chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK.mix(0.3))
                .draw();
        }
        let _ = root.present();
    }
    svg
}

/// Lanes: one row per event, a bar while it was active, coloured by outcome;
/// failures as red lines across all lanes.
fn lanes(r: &Report, t_max: f64) -> String {
    let rows = r.events.len().max(1) as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, 40 + 26 * rows)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let names: Vec<String> = r.events.iter().map(|e| e.id.clone()).collect();
        let Ok(mut chart) = ChartBuilder::on(&root)
            .caption("timeline", ("sans-serif", 14))
            .margin(6)
            .x_label_area_size(22)
            .y_label_area_size(120)
            .build_cartesian_2d(0f64..t_max.max(1e-9), 0f64..f64::from(rows))
        else {
            return String::new();
        };
        let _ = chart
            .configure_mesh()
            .x_desc("s")
            .y_labels(rows as usize)
            .y_label_formatter(&|y| {
                let i = (rows as f64 - y - 0.5).round();
                if i >= 0.0 {
                    names.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .disable_y_mesh()
            .draw();
        for (i, e) in r.events.iter().enumerate() {
            let (Some(a), b) = (e.started_ns, e.ended_ns.or(Some(r.ran_ns))) else {
                continue;
            };
            let y = f64::from(rows) - i as f64 - 1.0;
            let color = match e.outcome {
                Some(super::condition::Outcome::Crash) => RGBColor(214, 39, 40),
                Some(super::condition::Outcome::Stopped) => RGBColor(255, 127, 14),
                _ => RGBColor(31, 119, 180),
            };
            let _ = chart.draw_series(std::iter::once(Rectangle::new(
                [
                    (a as f64 / 1e9, y + 0.2),
                    (b.unwrap_or(a) as f64 / 1e9, y + 0.8),
                ],
                color.filled(),
            )));
        }
        for f in &r.failures {
            let t = f.t_ns as f64 / 1e9;
            let _ = chart.draw_series(LineSeries::new(
                [(t, 0.0), (t, f64::from(rows))],
                RED.stroke_width(2),
            ));
        }
        let _ = root.present();
    }
    svg
}

fn event_chart(e: &EventReport, t_max: f64) -> String {
    let (scale, unit) = match e.samples.iter().map(|s| s.requested).fold(0.0f64, f64::max) {
        m if e.via.dim() == Some(units::Dim::Bytes) && m >= 1048576.0 => (1048576.0, "MiB"),
        _ if e.via == super::timeline::Via::Proxy => (1e6, "ms"),
        _ => (1.0, ""),
    };
    let req: Vec<(f64, f64)> = e
        .samples
        .iter()
        .map(|s| (s.t_ns as f64 / 1e9, s.requested / scale))
        .collect();
    let ach: Vec<(f64, f64)> = e
        .samples
        .iter()
        .filter_map(|s| Some((s.t_ns as f64 / 1e9, s.achieved? / scale)))
        .collect();
    line_chart(
        &format!(
            "{} ({} via {}): requested vs achieved",
            e.id,
            e.axis.name(),
            e.via.name()
        ),
        if unit.is_empty() { "level" } else { unit },
        &[
            ("requested", RGBColor(127, 127, 127), req),
            ("achieved", RGBColor(31, 119, 180), ach),
        ],
        t_max,
    )
}

/// The report as a self-contained HTML page.
pub fn render(r: &Report) -> String {
    let t_max = r.ran_ns as f64 / 1e9;
    let secs = |t: u64| t as f64 / 1e9;
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>cargo panic attack: {prog}</title>\
         <style>body{{font-family:sans-serif;max-width:900px;margin:1em auto;color:#222}}\
         table{{border-collapse:collapse;margin:.5em 0}}td,th{{border:1px solid #ccc;padding:2px 6px;text-align:left;font-size:13px}}\
         .fail{{color:#c00;font-weight:bold}}.ok{{color:#080;font-weight:bold}}pre{{background:#f6f6f6;padding:4px;font-size:12px;overflow-x:auto}}</style>\
         </head><body><h1>{prog}</h1><p>{src}, seed {seed}, ran {ran}: <span class=\"{cls}\">{verdict}</span></p>",
        prog = esc(&format!("{} {}", r.program, r.args.join(" "))),
        src = esc(&r.source),
        seed = r.seed,
        ran = units::fmt_duration(r.ran_ns as f64),
        cls = if r.verdict.survived { "ok" } else { "fail" },
        verdict = if r.verdict.survived {
            "survived"
        } else {
            "failed"
        },
    );
    if !r.verdict.reasons.is_empty() {
        h.push_str("<ul>");
        for reason in &r.verdict.reasons {
            let _ = write!(h, "<li>{}</li>", esc(reason));
        }
        h.push_str("</ul>");
    }
    h.push_str(&lanes(r, t_max));
    let series = |f: &dyn Fn(&super::report::Tick) -> Option<f64>| -> Vec<(f64, f64)> {
        r.series
            .iter()
            .filter_map(|t| Some((secs(t.t_ns), f(t)?)))
            .collect()
    };
    h.push_str("<h2>Signals</h2>");
    h.push_str(&line_chart(
        "target memory",
        "MiB",
        &[(
            "rss",
            RGBColor(31, 119, 180),
            series(&|t| t.rss.map(|v| v / 1048576.0)),
        )],
        t_max,
    ));
    h.push_str(&line_chart(
        "CPU",
        "cores / fraction",
        &[
            (
                "target cores",
                RGBColor(31, 119, 180),
                series(&|t| t.cpu_cores),
            ),
            (
                "machine load",
                RGBColor(127, 127, 127),
                series(&|t| t.cpu_load),
            ),
            (
                "memory pressure",
                RGBColor(214, 39, 40),
                series(&|t| t.memory_pressure),
            ),
        ],
        t_max,
    ));
    if r.workload.is_some() {
        h.push_str(&line_chart(
            "workload per tick",
            "requests",
            &[
                (
                    "ok",
                    RGBColor(44, 160, 44),
                    series(&|t| t.workload_ok.map(|v| v as f64)),
                ),
                (
                    "failed",
                    RGBColor(214, 39, 40),
                    series(&|t| t.workload_failed.map(|v| v as f64)),
                ),
            ],
            t_max,
        ));
        h.push_str(&line_chart(
            "workload latency p99",
            "ms",
            &[(
                "p99",
                RGBColor(148, 103, 189),
                series(&|t| t.workload_p99_ns.map(|v| v as f64 / 1e6)),
            )],
            t_max,
        ));
    }
    h.push_str("<h2>Events: requested vs achieved</h2><table><tr><th>event</th><th>axis</th><th>via</th><th>requested</th><th>active</th><th>outcome</th><th>achieved/requested</th><th>achieved means</th></tr>");
    for e in &r.events {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&e.id),
            e.axis.name(),
            e.via.name(),
            esc(&e.requested.describe(e.via)),
            match (e.started_ns, e.ended_ns) {
                (Some(a), Some(b)) => format!("{:.2}..{:.2} s", secs(a), secs(b)),
                _ => "never".into(),
            },
            e.outcome
                .map(|o| format!("{o:?}").to_lowercase())
                .unwrap_or_default(),
            e.fidelity.map(|f| format!("{f:.2}")).unwrap_or_default(),
            esc(&e.achieved_means),
        );
    }
    h.push_str("</table>");
    for e in r.events.iter().filter(|e| !e.samples.is_empty()) {
        h.push_str(&event_chart(e, t_max));
    }
    if !r.failures.is_empty() {
        h.push_str("<h2>Failures</h2>");
        for f in &r.failures {
            let _ = write!(
                h,
                "<p class=\"fail\">{} at {:.3} s: {}</p><p>active events: {}</p><pre>{}</pre>",
                esc(&f.kind),
                secs(f.t_ns),
                esc(&f.detail),
                esc(&f.active_events.join(", ")),
                esc(&f.stderr_tail.join("\n"))
            );
            if let Some(sig) = &f.signature {
                let _ = write!(
                    h,
                    "<p><b>{}</b></p><pre>{}</pre>",
                    esc(&sig.headline()),
                    esc(&sig.render())
                );
            }
        }
    }
    if !r.toc.is_empty() {
        h.push_str("<h2>Theory-of-Constraints decisions</h2><table><tr><th>t</th><th>axis</th><th>throttled</th><th>condition</th><th>values</th></tr>");
        for d in &r.toc {
            let vals: Vec<String> = d
                .values
                .iter()
                .map(|(k, v)| format!("{k} = {}", v.map_or("none".into(), units::fmt_num)))
                .collect();
            let _ = write!(
                h,
                "<tr><td>{:.2} s</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                secs(d.t_ns),
                d.axis.name(),
                d.throttled,
                esc(&d.condition),
                esc(&vals.join(", "))
            );
        }
        h.push_str("</table>");
    }
    if !r.sites.is_empty() {
        h.push_str("<h2>Per-site dwell</h2><table><tr><th>function</th><th>file:line</th><th>count</th><th>p50</th><th>p95</th><th>p99</th><th>p99.9</th><th>max</th></tr>");
        for s in r.sites.iter().take(30) {
            let d = |ns: u64| units::fmt_duration(ns as f64);
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}:{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&s.function),
                esc(s.file.as_deref().unwrap_or("?")),
                s.line,
                s.count,
                d(s.p50_ns),
                d(s.p95_ns),
                d(s.p99_ns),
                d(s.p999_ns),
                d(s.max_ns)
            );
        }
        h.push_str("</table>");
    }
    if !r.asserts.is_empty() {
        h.push_str("<h2>Assertions</h2><table><tr><th>condition</th><th>holds</th></tr>");
        for a in &r.asserts {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td></tr>",
                esc(&a.condition),
                match a.holds {
                    Some(true) => "yes",
                    Some(false) => "<span class=\"fail\">no</span>",
                    None => "unknown",
                }
            );
        }
        h.push_str("</table>");
    }
    h.push_str("<h2>Mechanisms</h2><ul>");
    for m in &r.mechanisms {
        let _ = write!(
            h,
            "<li>{}: {} ({})</li>",
            esc(&m.name),
            if m.used { "used" } else { "not used" },
            esc(&m.detail)
        );
    }
    h.push_str("</ul></body></html>\n");
    h
}
