//! The report's HTML page: one self-contained file with the settings in force, the totals (or a
//! comparison table), the charts, links to the run's logs and the autoscaler's decisions. The
//! pieces are shared by a run's page ([`index_html`]) and a comparison's (`write_comparison`).

use std::fmt::Write as _;

use super::charts::{Chart, CHART_SIZE};
use super::{
    DecisionEntry, RunInfo, Sample, Table, Totals, CHART_FILES, INDEX_FILE, TIMESERIES_FILE,
    TOTALS_FILE,
};

const STYLE: &str = r#"
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1000px; padding: 0 1rem; color: #1d2127; background: #fafbfc; }
h1 { margin-bottom: 0.2rem; }
.sub { color: #5a6270; margin-top: 0; }
.verdict { padding: 0.8rem 1rem; border-radius: 6px; font-weight: 600; margin: 1rem 0; }
.verdict.ok { background: #e6f4ea; color: #1e6b34; border: 1px solid #a8d5b5; }
.verdict.bad { background: #fdecea; color: #a11a12; border: 1px solid #f0a8a1; }
.verdict.stopped { background: #eef3fb; color: #1f4f8a; border: 1px solid #a9c2e6; }
.totals { display: grid; grid-template-columns: repeat(auto-fill, minmax(170px, 1fr)); gap: 0.8rem; margin: 1rem 0 2rem; }
.total { background: #fff; border: 1px solid #dde1e6; border-radius: 6px; padding: 0.7rem 0.9rem; }
.total .value { font-size: 1.8rem; font-weight: 700; font-variant-numeric: tabular-nums; }
.total .label { color: #5a6270; font-size: 0.9rem; }
.total.bad { border-color: #d93025; background: #fdecea; }
.total.bad .value { color: #a11a12; }
figure { margin: 0 0 1.5rem; background: #fff; border: 1px solid #dde1e6; border-radius: 6px; padding: 0.5rem; }
figure img { width: 100%; height: auto; display: block; }
figcaption { color: #5a6270; font-size: 0.9rem; padding: 0.3rem 0.5rem 0; }
ol.decisions { background: #fff; border: 1px solid #dde1e6; border-radius: 6px; padding: 0.8rem 0.8rem 0.8rem 3rem; }
ol.decisions li { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: 0.85rem; margin: 0.2rem 0; white-space: pre-wrap; word-break: break-word; }
.empty { color: #5a6270; font-style: italic; }
table.settings { border-collapse: collapse; background: #fff; border: 1px solid #dde1e6; margin: 0.5rem 0 1rem; }
table.settings th, table.settings td { text-align: left; padding: 0.25rem 0.8rem; border-bottom: 1px solid #eef0f3; font-size: 0.92rem; vertical-align: top; }
table.settings th { color: #5a6270; font-weight: 600; white-space: nowrap; }
.note { background: #fff8e1; border: 1px solid #f3d27a; border-radius: 6px; padding: 0.5rem 0.8rem; }
table.comparison { border-collapse: collapse; background: #fff; margin: 1rem 0 2rem; font-size: 0.9rem; }
table.comparison th, table.comparison td { border: 1px solid #dde1e6; padding: 0.3rem 0.6rem; text-align: right; font-variant-numeric: tabular-nums; }
table.comparison th:first-child, table.comparison td:first-child { text-align: left; }
"#;

pub(super) fn index_html(
    info: &RunInfo,
    samples: &[Sample],
    totals: &Totals,
    decisions: &[DecisionEntry],
    charts: &[Chart],
) -> String {
    let mut html = page_head(&info.title, &run_summary(samples, totals));
    html.push_str(&settings_html(info));

    if totals.lost > 0 || totals.duplicates > 0 {
        let _ = writeln!(
            html,
            "<p class=\"verdict bad\" id=\"verdict\">&#9888; {} lost, {} duplicate{}: \
             every accepted job should be processed exactly once.</p>",
            totals.lost,
            totals.duplicates,
            if totals.duplicates == 1 { "" } else { "s" }
        );
    } else if totals.still_queued > 0 {
        let _ = writeln!(
            html,
            "<p class=\"verdict stopped\" id=\"verdict\">&#9208; Stopped with {} accepted job{} \
             still queued ({}): none lost, no duplicate; every job that ran was processed once.</p>",
            totals.still_queued,
            if totals.still_queued == 1 { "" } else { "s" },
            escape(&totals.still_queued_where)
        );
    } else {
        html.push_str(
            "<p class=\"verdict ok\" id=\"verdict\">&#10003; No job lost, no duplicate: \
             every accepted job was processed exactly once.</p>\n",
        );
    }

    html.push_str("<section class=\"totals\">\n");
    let cards: [(&str, String, bool); 9] = [
        ("accepted", totals.accepted.to_string(), false),
        ("processed", totals.processed.to_string(), false),
        ("still queued", totals.still_queued.to_string(), false),
        ("lost", totals.lost.to_string(), totals.lost > 0),
        (
            "duplicates",
            totals.duplicates.to_string(),
            totals.duplicates > 0,
        ),
        ("dead-lettered", totals.dead_lettered.to_string(), false),
        (
            "worker-seconds",
            format!("{:.0}", totals.worker_seconds),
            false,
        ),
        ("duration", format_duration(totals.duration_secs), false),
        (
            "queue wait p50 / p95 / max",
            totals.queue_wait_secs.map_or_else(
                || "no job".to_owned(),
                |w| format!("{:.1} / {:.1} / {:.1} s", w.p50, w.p95, w.max),
            ),
            false,
        ),
    ];
    for (label, value, bad) in cards {
        let _ = writeln!(
            html,
            "<div class=\"total{}\" id=\"total-{}\"><div class=\"value\">{}</div>\
             <div class=\"label\">{label}</div></div>",
            if bad { " bad" } else { "" },
            label
                .split(|c: char| !c.is_ascii_alphanumeric())
                .filter(|word| !word.is_empty())
                .collect::<Vec<_>>()
                .join("-"),
            escape(&value)
        );
    }
    html.push_str("</section>\n");

    html.push_str(&charts_html(charts));
    html.push_str(&links_html(info));
    let lines: Vec<String> = decisions
        .iter()
        .map(|d| format!("t={:.1}s {}", d.t_secs, d.line))
        .collect();
    html.push_str(&decisions_html(&lines));
    html.push_str("</body>\n</html>\n");
    html
}

/// The page's head, its title (a default when empty) and the sentence under it.
pub(super) fn page_head(title: &str, summary: &str) -> String {
    let title = if title.is_empty() {
        "warren report"
    } else {
        title
    };
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <h1>{title}</h1>\n<p class=\"sub\">{summary}</p>\n",
        title = escape(title),
        summary = escape(summary)
    )
}

/// The settings in force as a table, then the notes.
pub(super) fn settings_html(info: &RunInfo) -> String {
    let mut html = String::new();
    if !info.settings.is_empty() {
        html.push_str("<h2>Settings</h2>\n<table class=\"settings\" id=\"settings\">\n");
        for (name, value) in &info.settings {
            let _ = writeln!(
                html,
                "<tr><th>{}</th><td>{}</td></tr>",
                escape(name),
                escape(value)
            );
        }
        html.push_str("</table>\n");
    }
    for note in &info.notes {
        let _ = writeln!(html, "<p class=\"note\">{}</p>", escape(note));
    }
    html
}

/// The charts as figures, then the links to the data files.
pub(super) fn charts_html(charts: &[Chart]) -> String {
    let mut html = String::from("<h2>Charts</h2>\n");
    for (chart, file) in charts.iter().zip(CHART_FILES) {
        let _ = writeln!(
            html,
            "<figure><img src=\"{file}\" alt=\"{title}\" width=\"{w}\" height=\"{h}\">\
             <figcaption>{caption}</figcaption></figure>",
            title = escape(chart.title),
            caption = escape(chart.caption),
            w = CHART_SIZE.0,
            h = CHART_SIZE.1,
        );
    }
    let _ = writeln!(
        html,
        "<p>Every sample: <a href=\"{TIMESERIES_FILE}\">{TIMESERIES_FILE}</a>; \
         the totals: <a href=\"{TOTALS_FILE}\">{TOTALS_FILE}</a>.</p>"
    );
    html
}

/// The files the run left beside the report.
pub(super) fn links_html(info: &RunInfo) -> String {
    let mut html = String::new();
    if !info.links.is_empty() {
        html.push_str("<h2>Logs</h2>\n<ul class=\"links\" id=\"logs\">\n");
        for (label, href) in &info.links {
            let _ = writeln!(
                html,
                "<li><a href=\"{}\">{}</a></li>",
                escape(href),
                escape(label)
            );
        }
        html.push_str("</ul>\n");
    }
    html
}

/// The autoscaler's decisions, as text.
pub(super) fn decisions_html(decisions: &[String]) -> String {
    let mut html = format!("<h2>Autoscaler decisions ({})</h2>\n", decisions.len());
    if decisions.is_empty() {
        html.push_str("<p class=\"empty\">No decision was recorded.</p>\n");
    } else {
        html.push_str("<ol class=\"decisions\">\n");
        for line in decisions {
            let _ = writeln!(html, "<li>{}</li>", escape(line));
        }
        html.push_str("</ol>\n");
    }
    html
}

/// A list of links to comparison pages, `<name>/index.html`, each with its description.
pub(super) fn comparison_links_html(comparisons: &[(String, String)]) -> String {
    let mut html = String::from("<ul class=\"links\" id=\"comparisons\">\n");
    for (name, description) in comparisons {
        let _ = writeln!(
            html,
            "<li><a href=\"{}/{INDEX_FILE}\">{}</a>: {}</li>",
            escape(name),
            escape(name),
            escape(description)
        );
    }
    html.push_str("</ul>\n");
    html
}

/// A table of text cells.
pub(super) fn table_html(table: &Table) -> String {
    let mut html = String::from("<table class=\"comparison\" id=\"comparison\">\n<tr>");
    for column in &table.columns {
        let _ = write!(html, "<th>{}</th>", escape(column));
    }
    html.push_str("</tr>\n");
    for row in &table.rows {
        html.push_str("<tr>");
        for cell in row {
            let _ = write!(html, "<td>{}</td>", escape(cell));
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</table>\n");
    html
}

/// One sentence on what the run did: its length and the pool's and queue's peaks.
fn run_summary(samples: &[Sample], totals: &Totals) -> String {
    if samples.is_empty() {
        return format!(
            "{} run; no sample was taken.",
            format_duration(totals.duration_secs)
        );
    }
    let peak_workers = samples.iter().map(|s| s.workers_current).max().unwrap_or(0);
    let min_workers = samples.iter().map(|s| s.workers_current).min().unwrap_or(0);
    let last_workers = samples.last().map_or(0, |s| s.workers_current);
    let peak_queue = samples
        .iter()
        .map(|s| s.queue_ready + s.queue_unacked)
        .filter(|v| v.is_finite())
        .fold(0.0_f64, f64::max);
    format!(
        "{} run, {} samples. Workers: {min_workers} to {peak_workers}, {last_workers} at the end. \
         Deepest queue: {peak_queue:.0} messages (ready and in work, unacked, together).",
        format_duration(totals.duration_secs),
        samples.len()
    )
}

/// `252.4` -> `4m 12s`.
pub(super) fn format_duration(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "unknown".to_string();
    }
    let whole = secs.round() as u64;
    match (whole / 3600, whole % 3600 / 60, whole % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m {s:02}s"),
        (h, m, s) => format!("{h}h {m:02}m {s:02}s"),
    }
}

/// Escapes text for HTML element content and quoted attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
