//! The report of a run: a time-series CSV, charts and an HTML page; the same charts and page
//! for several simulated runs overlaid ([`write_comparison`], used by `warren simulate`).
//!
//! A layer of its own below the live lab ([`crate::lab`], the demo's report) and the what-if
//! tools ([`crate::whatif`], `warren simulate`'s), which both use it; it uses only the shared
//! leaf modules.
//!
//! [`write_report`] writes, into one directory:
//!
//! - `timeseries.csv`: one row per [`Sample`], every field (read back with [`read_timeseries`]);
//! - `totals.json`: the [`Totals`], for scripts and tests;
//! - five SVG charts on one time axis: queue depth, workers (current, ready, desired, a mark at
//!   each rescale), arrival rate, processed per second, queue wait p95;
//! - `index.html`: one self-contained page that opens with the settings in force, then the
//!   totals, the charts, links to the run's logs and the autoscaler's decisions.
//!
//! The report is drawn from samples and a [`RunInfo`] alone, whatever produced them (the demo
//! live, a simulator): the caller states the settings and links as plain rows. One concern a
//! file:
//! - `timeseries`: the samples as CSV, written and read back;
//! - `charts`: the SVG charts drawn from the samples;
//! - `page`: the HTML page: the totals, the charts, the decisions.
//!
//! The charts are SVG so that nothing here needs a font: the SVG carries its text as `<text>`
//! elements and the browser (or any SVG viewer) lays it out with its own fonts.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

mod charts;
mod page;
mod timeseries;

use charts::charts;
pub use charts::Series;
use page::{
    charts_html, comparison_links_html, decisions_html, index_html, links_html, page_head,
    settings_html, table_html,
};
use timeseries::{parse_timeseries, timeseries_csv, CSV_HEADER};

/// What the report says about a run besides its samples, as the caller words it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunInfo {
    /// The page's title, e.g. `warren demo report`.
    pub title: String,
    /// The settings in force, shown first: (name, value) rows, e.g. ("speed", "x10").
    pub settings: Vec<(String, String)>,
    /// Files the run left beside the report: (label, path relative to the report).
    pub links: Vec<(String, String)>,
    /// Things a reader must know, e.g. why a metric could not be read; shown under the settings.
    pub notes: Vec<String>,
}

/// One autoscaler decision as the report shows it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DecisionEntry {
    /// When, in the run's own time (seconds since it started).
    pub t_secs: f64,
    /// Whether it changed the worker count (marked on the workers chart).
    pub rescale: bool,
    /// Its condition reasons, as the engine gave them (`ScaleUpStabilized`,
    /// `FailedGetExternalMetric`, ...).
    pub reasons: Vec<String>,
    /// The decision's log line, shown as text.
    pub line: String,
}

/// One sample of a run's state, taken about once a second.
///
/// Times and rates are in the run's own time: a demo run at speed K reports them as the same
/// run at 1x would (the caller converts), so runs at different speeds compare.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    /// Seconds since the run started.
    pub t_secs: f64,
    /// Messages ready in the work queue.
    pub queue_ready: f64,
    /// Messages delivered and not yet acked.
    pub queue_unacked: f64,
    /// Jobs accepted (answered 200) per second by `/generate`, over the last interval.
    pub arrival_rate: f64,
    /// The load's target rate at this time (requests per second).
    pub target_rate: f64,
    /// Live worker processes.
    pub workers_current: u32,
    /// Workers whose `/readyz` answers 200.
    pub workers_ready: u32,
    /// The autoscaler's desired replica count.
    pub workers_desired: u32,
    /// Jobs acked so far, all workers together.
    pub processed_total: u64,
    /// 95th percentile of queue wait over the last interval, if any job finished in it.
    pub queue_wait_p95_secs: Option<f64>,
}

/// The demo's totals, shown at the top of the report.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    /// Jobs answered 200 by `/generate`.
    pub accepted: u64,
    /// Distinct accepted jobs acked by a worker.
    pub processed: u64,
    /// Accepted jobs never acked and no longer in the queue when the run stopped: gone.
    pub lost: u64,
    /// Accepted jobs not yet acked but still in the queue when the run was stopped (by the
    /// user, or at the cool-down limit): waiting, not lost.
    #[serde(default)]
    pub still_queued: u64,
    /// Where the still-queued jobs are, in words (the queue, and what became of it).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub still_queued_where: String,
    /// Acks beyond the first for the same job.
    pub duplicates: u64,
    /// Messages dead-lettered.
    pub dead_lettered: u64,
    /// Sum over workers of their lifetimes, in seconds of the run's own time.
    pub worker_seconds: f64,
    /// The run's duration, in seconds of its own time: from the start to the last sample
    /// (what the charts span), not counting the stop.
    pub duration_secs: f64,
    /// Queue wait (publish to delivery) over every job processed in the run, in seconds of
    /// its own time: p50, p95 and max; `None` when no job was processed.
    #[serde(default)]
    pub queue_wait_secs: Option<WaitSummary>,
}

/// The queue wait of every job of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WaitSummary {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// The longest.
    pub max: f64,
}

/// The time series' file name inside the report directory.
pub const TIMESERIES_FILE: &str = "timeseries.csv";
/// The totals' file name inside the report directory.
pub const TOTALS_FILE: &str = "totals.json";
/// The HTML page's file name inside the report directory.
pub const INDEX_FILE: &str = "index.html";
/// The charts' file names inside the report directory, in the order the page shows them.
pub const CHART_FILES: [&str; 5] = [
    "queue_depth.svg",
    "workers.svg",
    "arrival_rate.svg",
    "processed_rate.svg",
    "queue_wait_p95.svg",
];

/// Writes the report into `dir` (created if missing) and returns the HTML page's path.
///
/// `decisions` are the autoscaler's decisions; the page shows their lines as text, never as
/// markup, and the workers chart marks the rescales.
pub fn write_report(
    dir: &Path,
    info: &RunInfo,
    samples: &[Sample],
    totals: &Totals,
    decisions: &[DecisionEntry],
) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the report directory {}", dir.display()))?;

    write_file(&dir.join(TIMESERIES_FILE), &timeseries_csv(samples))?;
    let totals_json = serde_json::to_string_pretty(totals).context("cannot encode the totals")?;
    write_file(&dir.join(TOTALS_FILE), &totals_json)?;

    let rescales = decisions
        .iter()
        .filter(|d| d.rescale)
        .map(|d| d.t_secs)
        .collect();
    let charts = charts(&[Series { label: "", samples }], rescales);
    write_charts(dir, &charts)?;

    let index = dir.join(INDEX_FILE);
    write_file(
        &index,
        &index_html(info, samples, totals, decisions, &charts),
    )?;
    Ok(index)
}

fn write_charts(dir: &Path, charts: &[charts::Chart]) -> anyhow::Result<()> {
    for (chart, file) in charts.iter().zip(CHART_FILES) {
        let svg = chart
            .render()
            .with_context(|| format!("cannot draw the chart {file}"))?;
        write_file(&dir.join(file), &svg)?;
    }
    Ok(())
}

/// A table for the page: a header row and rows of cells, all text.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Table {
    /// The column names.
    pub columns: Vec<String>,
    /// The rows, one cell per column.
    pub rows: Vec<Vec<String>>,
}

/// Writes a report of several runs over one load into `dir`, with the demo's charts (every run
/// overlaid), a `timeseries.csv` whose first column names the run, `totals_json` as
/// `totals.json`, and a page with `info`'s title, settings, notes and links, `summary`, the
/// comparison `table` and the decisions (each line already names its run and time).
/// Returns the page's path.
pub fn write_comparison(
    dir: &Path,
    info: &RunInfo,
    summary: &str,
    runs: &[Series<'_>],
    totals_json: &str,
    table: &Table,
    decisions: &[String],
) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the report directory {}", dir.display()))?;
    let mut csv = format!("run,{}\n", CSV_HEADER.join(","));
    for run in runs {
        for line in timeseries_csv(run.samples).lines().skip(1) {
            let _ = writeln!(csv, "{},{line}", csv_field(run.label));
        }
    }
    write_file(&dir.join(TIMESERIES_FILE), &csv)?;
    write_file(&dir.join(TOTALS_FILE), totals_json)?;
    // No rescale marks: several runs' marks on one chart would read as one run's.
    let charts = charts(runs, Vec::new());
    write_charts(dir, &charts)?;
    let mut html = page_head(&info.title, summary);
    html.push_str(&settings_html(info));
    html.push_str(&table_html(table));
    html.push_str(&charts_html(&charts));
    html.push_str(&links_html(info));
    html.push_str(&decisions_html(decisions));
    html.push_str("</body>\n</html>\n");
    let index = dir.join(INDEX_FILE);
    write_file(&index, &html)?;
    Ok(index)
}

/// Writes `index.html` in `dir`, the page over several comparisons: a link to each one's page
/// (`<name>/index.html`) with its description, then the `table` of every run. Returns its path.
pub fn write_comparison_index(
    dir: &Path,
    title: &str,
    summary: &str,
    comparisons: &[(String, String)],
    table: &Table,
) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the report directory {}", dir.display()))?;
    let mut html = page_head(title, summary);
    html.push_str(&comparison_links_html(comparisons));
    html.push_str(&table_html(table));
    html.push_str(
        "</body>
</html>
",
    );
    let index = dir.join(INDEX_FILE);
    write_file(&index, &html)?;
    Ok(index)
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// Reads a `timeseries.csv` written by [`write_report`] back into samples.
pub fn read_timeseries(path: &Path) -> anyhow::Result<Vec<Sample>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse_timeseries(&text)
        .with_context(|| format!("{} is not a warren time series", path.display()))
}

fn write_file(path: &Path, contents: &str) -> anyhow::Result<()> {
    std::fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))
}

/// `reports/<kind>-<UTC date>-<UTC time>`.
pub(crate) fn default_dir(kind: &str) -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(i64::try_from(days).unwrap_or(0));
    PathBuf::from(format!(
        "reports/{kind}-{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    ))
}

/// Year, month, day of a day count since 1970-01-01 (the proleptic Gregorian calendar).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::page::format_duration;
    use super::*;

    /// A run that scales from one worker up to four and back, with a gap in the queue wait.
    fn synthetic_series() -> Vec<Sample> {
        (0..120u32)
            .map(|i| {
                let t = f64::from(i);
                let up = i > 20 && i < 80;
                let workers = if up { 1 + (i - 20).min(30) / 10 } else { 1 };
                Sample {
                    t_secs: t + 0.25,
                    queue_ready: if up { f64::from(i % 17) * 1.5 } else { 0.0 },
                    queue_unacked: f64::from(workers),
                    arrival_rate: if up {
                        2.0 + f64::from(i % 3) / 3.0
                    } else {
                        0.2
                    },
                    target_rate: if up { 2.0 } else { 0.2 },
                    workers_current: workers,
                    workers_ready: workers.saturating_sub(u32::from(i % 10 == 0)),
                    workers_desired: if up { 4 } else { 1 },
                    processed_total: u64::from(i) * 3,
                    queue_wait_p95_secs: (i % 25 != 0).then(|| 0.1 + f64::from(i) / 7.0),
                }
            })
            .collect()
    }

    fn info() -> RunInfo {
        RunInfo {
            title: "warren demo report".into(),
            settings: vec![
                ("speed".into(), "x10".into()),
                ("target".into(), "AverageValue <5>".into()),
            ],
            links: vec![("worker-0.log".into(), "workers/worker-0.log".into())],
            notes: vec!["the first metric read failed".into()],
        }
    }

    fn decision(t_secs: f64, rescale: bool, line: &str) -> DecisionEntry {
        DecisionEntry {
            t_secs,
            rescale,
            reasons: Vec::new(),
            line: line.into(),
        }
    }

    fn totals() -> Totals {
        Totals {
            accepted: 361,
            processed: 358,
            lost: 0,
            still_queued: 0,
            still_queued_where: String::new(),
            duplicates: 0,
            dead_lettered: 3,
            worker_seconds: 812.4,
            duration_secs: 252.4,
            queue_wait_secs: Some(WaitSummary {
                p50: 4.2,
                p95: 11.3,
                max: 19.8,
            }),
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("warren-report-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    /// Checks that `text` is well-formed XML as far as tags go: every element that opens closes,
    /// in order, and attribute values are quoted. Enough to catch a broken writer without an XML
    /// parser in the dependencies.
    fn assert_well_formed_xml(text: &str) {
        let mut stack: Vec<String> = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find('<') {
            let after = &rest[start + 1..];
            let end = after.find('>').expect("a tag that never closes");
            let tag = &after[..end];
            rest = &after[end + 1..];
            if tag.starts_with('?') || tag.starts_with('!') {
                continue;
            }
            if let Some(name) = tag.strip_prefix('/') {
                let open = stack.pop().expect("a closing tag with no opening one");
                assert_eq!(open, name.trim(), "tags closed out of order");
                continue;
            }
            let name = tag
                .split(|c: char| c.is_whitespace() || c == '/')
                .next()
                .unwrap_or_default();
            assert!(!name.is_empty(), "a tag without a name: <{tag}>");
            assert_eq!(
                tag.matches('"').count() % 2,
                0,
                "an unbalanced quote in <{tag}>"
            );
            if !tag.ends_with('/') {
                stack.push(name.to_string());
            }
        }
        assert!(stack.is_empty(), "tags left open: {stack:?}");
        assert!(text.trim_start().starts_with("<svg") || text.trim_start().starts_with("<?xml"));
    }

    #[test]
    fn civil_dates_are_right() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_785), (2026, 11, 28));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn report_writes_every_file_and_returns_the_page() {
        let dir = temp_dir("files");
        let index = write_report(
            &dir,
            &info(),
            &synthetic_series(),
            &totals(),
            &[decision(30.0, true, "one")],
        )
        .expect("report");
        assert_eq!(index, dir.join(INDEX_FILE));
        for file in [INDEX_FILE, TIMESERIES_FILE, TOTALS_FILE]
            .into_iter()
            .chain(CHART_FILES)
        {
            let meta = std::fs::metadata(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert!(meta.len() > 0, "{file} is empty");
        }
        let totals_back: Totals =
            serde_json::from_str(&std::fs::read_to_string(dir.join(TOTALS_FILE)).expect("totals"))
                .expect("totals json");
        assert_eq!(totals_back, totals());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn report_csv_round_trips_every_sample() {
        let dir = temp_dir("csv");
        let mut samples = synthetic_series();
        samples[3].arrival_rate = 1.0 / 3.0;
        samples[4].queue_wait_p95_secs = Some(0.123_456_789_012_345_6);
        write_report(&dir, &info(), &samples, &totals(), &[]).expect("report");
        let back = read_timeseries(&dir.join(TIMESERIES_FILE)).expect("read back");
        assert_eq!(back, samples);
        let text = std::fs::read_to_string(dir.join(TIMESERIES_FILE)).expect("csv");
        assert_eq!(text.lines().next(), Some(CSV_HEADER.join(",").as_str()));
        assert_eq!(text.lines().count(), samples.len() + 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn report_timeseries_reader_names_the_bad_field() {
        let text = format!("{}\n1,2,3,4,5,6,7,eight,9,\n", CSV_HEADER.join(","));
        let err = parse_timeseries(&text)
            .expect_err("not a number")
            .to_string();
        assert!(
            err.contains("line 2") && err.contains("workers_desired"),
            "{err}"
        );
        assert!(parse_timeseries("a,b\n").is_err());
    }

    #[test]
    fn report_page_shows_totals_and_escapes_decisions() {
        let dir = temp_dir("html");
        let decisions = vec![
            decision(
                30.0,
                true,
                "1 -> 4 ScaleUpStabilized queue_messages_ready=12 target 2",
            ),
            decision(45.0, false, "<script>alert('x')</script> & more"),
        ];
        let index = write_report(&dir, &info(), &synthetic_series(), &totals(), &decisions)
            .expect("report");
        let html = std::fs::read_to_string(&index).expect("page");
        for needle in [
            ">361<",
            ">358<",
            ">3<",
            ">812<",
            "4m 12s",
            "accepted",
            "processed",
            "lost",
            "duplicates",
            "dead-lettered",
            "worker-seconds",
            "duration",
            "No job lost",
            "ScaleUpStabilized",
        ] {
            assert!(html.contains(needle), "the page lacks {needle:?}");
        }
        assert!(
            !html.contains("<script>"),
            "a decision line was not escaped"
        );
        assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; more"));
        assert!(html.contains("t=30.0s 1 -&gt; 4 ScaleUpStabilized"));
        // The settings open the page, before the totals; values are text, not markup.
        let settings = html.find("id=\"settings\"").expect("a settings table");
        assert!(settings < html.find("id=\"total-accepted\"").expect("totals"));
        assert!(html.contains("<tr><th>speed</th><td>x10</td></tr>"));
        assert!(html.contains("AverageValue &lt;5&gt;"));
        assert!(html.contains("<p class=\"note\">the first metric read failed</p>"));
        assert!(html.contains("<a href=\"workers/worker-0.log\">worker-0.log</a>"));
        for file in CHART_FILES {
            assert!(
                html.contains(&format!("src=\"{file}\"")),
                "the page does not show {file}"
            );
        }
        assert!(
            !html.contains("src=\"/"),
            "images must be referenced relatively"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn report_page_flags_lost_and_duplicate_jobs() {
        let dir = temp_dir("flags");
        let bad = Totals {
            lost: 2,
            duplicates: 1,
            ..totals()
        };
        let index = write_report(&dir, &info(), &synthetic_series(), &bad, &[]).expect("report");
        let html = std::fs::read_to_string(&index).expect("page");
        assert!(html.contains("verdict bad"));
        assert!(html.contains("class=\"total bad\" id=\"total-lost\""));
        assert!(html.contains("class=\"total bad\" id=\"total-duplicates\""));
        assert!(!html.contains("No job lost"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Sparse p95 values are one line across short stretches without a finished job (not
    /// dashes), and break across long ones.
    #[test]
    fn p95_points_are_joined_across_short_gaps_only() {
        let points = [
            (1.0, 2.0),
            (4.0, 3.0),
            (12.0, 5.0),
            (30.0, 1.0),
            (31.0, 1.5),
        ];
        assert_eq!(
            charts::joined_within(points.into_iter(), 10.0),
            vec![
                Some((1.0, 2.0)),
                Some((4.0, 3.0)),
                Some((12.0, 5.0)),
                None,
                Some((30.0, 1.0)),
                Some((31.0, 1.5)),
            ]
        );
    }

    #[test]
    fn report_page_gives_the_run_s_queue_wait_and_says_what_the_deepest_queue_counts() {
        let dir = temp_dir("waits");
        let index =
            write_report(&dir, &info(), &synthetic_series(), &totals(), &[]).expect("report");
        let html = std::fs::read_to_string(&index).expect("page");
        assert!(
            html.contains("<div class=\"value\">4.2 / 11.3 / 19.8 s</div><div class=\"label\">queue wait p50 / p95 / max</div>"),
            "{html}"
        );
        assert!(html.contains("messages (ready and in work, unacked, together)"));
        assert!(html.contains("id=\"total-queue-wait-p50-p95-max\""));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn report_page_tells_jobs_still_queued_at_a_stop_from_lost_ones() {
        let dir = temp_dir("stopped");
        let stopped = Totals {
            processed: 341,
            still_queued: 17,
            still_queued_where: "in queue Orders".into(),
            ..totals()
        };
        let index =
            write_report(&dir, &info(), &synthetic_series(), &stopped, &[]).expect("report");
        let html = std::fs::read_to_string(&index).expect("page");
        assert!(html.contains("verdict stopped"), "{html}");
        assert!(html.contains("Stopped with 17 accepted jobs still queued (in queue Orders)"));
        assert!(html.contains("class=\"total\" id=\"total-still-queued\"><div class=\"value\">17<"));
        assert!(html.contains("class=\"total\" id=\"total-lost\"><div class=\"value\">0<"));
        assert!(!html.contains("verdict bad"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn report_charts_are_well_formed_svg_with_titles_and_legends() {
        let dir = temp_dir("svg");
        write_report(&dir, &info(), &synthetic_series(), &totals(), &[]).expect("report");
        let expected = [
            ("queue_depth.svg", ["Queue depth", "messages", "unacked"]),
            (
                "workers.svg",
                [
                    "Workers: current vs desired",
                    "workers",
                    "desired (autoscaler)",
                ],
            ),
            (
                "arrival_rate.svg",
                ["Arrival rate", "jobs per second", "target rate"],
            ),
            (
                "processed_rate.svg",
                [
                    "Processed per second",
                    "jobs per second",
                    "acked per second",
                ],
            ),
            (
                "queue_wait_p95.svg",
                ["Queue wait p95", "seconds", "p95 of time in queue"],
            ),
        ];
        for (file, texts) in expected {
            let svg = std::fs::read_to_string(dir.join(file)).expect("svg");
            assert_well_formed_xml(&svg);
            assert!(
                svg.contains("time since start (s)"),
                "{file} lacks its x axis label"
            );
            for text in texts {
                assert!(svg.contains(text), "{file} lacks {text:?}");
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Every chart spans the same time, whatever its own points cover: the queue wait has no
    /// value before t=1 and processed-per-second none at t=0.25, yet their axes match.
    #[test]
    fn report_charts_share_one_time_axis_and_mark_rescales() {
        let dir = temp_dir("axis");
        let decisions = [decision(30.0, true, "up"), decision(45.0, false, "hold")];
        write_report(&dir, &info(), &synthetic_series(), &totals(), &decisions).expect("report");
        let axis_labels = |file: &str| -> Vec<String> {
            let svg = std::fs::read_to_string(dir.join(file)).expect("svg");
            // The x axis' tick labels: the texts on its baseline, the last row of labels.
            let texts: Vec<(String, String)> = svg
                .split("<text")
                .skip(1)
                .filter_map(|t| {
                    let y = t.split("y=\"").nth(1)?.split('"').next()?.to_owned();
                    let body = t.split('>').nth(1)?.split('<').next()?.trim().to_owned();
                    Some((y, body))
                })
                .collect();
            let bottom = texts
                .iter()
                .filter(|(_, b)| b.parse::<f64>().is_ok())
                .map(|(y, _)| y.parse::<f64>().unwrap_or(0.0))
                .fold(0.0_f64, f64::max);
            texts
                .into_iter()
                .filter(|(y, b)| y.parse::<f64>().ok() == Some(bottom) && b.parse::<f64>().is_ok())
                .map(|(_, b)| b)
                .collect()
        };
        let reference = axis_labels(CHART_FILES[0]);
        assert!(reference.len() >= 3, "{reference:?}");
        for file in CHART_FILES {
            assert_eq!(axis_labels(file), reference, "{file} has its own time axis");
        }
        let workers = std::fs::read_to_string(dir.join("workers.svg")).expect("svg");
        assert!(workers.contains("rescale decision"));
        let queue = std::fs::read_to_string(dir.join("queue_depth.svg")).expect("svg");
        assert!(!queue.contains("rescale decision"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// 3 jobs a second, finishing in bursts of 6 every 2 s: the chart says 3/s, not 0 and 6.
    #[test]
    fn report_processed_rate_is_a_windowed_rate() {
        let samples: Vec<Sample> = (0..40u32)
            .map(|i| Sample {
                t_secs: f64::from(i),
                processed_total: u64::from(i / 2) * 6,
                ..Sample::default()
            })
            .collect();
        let chart = charts::processed_rate_chart(&[Series {
            label: "",
            samples: &samples,
        }])
        .over((0.0, 39.0));
        let svg = chart.render().expect("svg");
        assert_well_formed_xml(&svg);
        let rates = charts::processed_rates(&samples);
        let settled: Vec<f64> = rates.iter().flatten().skip(12).map(|p| p.1).collect();
        assert!(!settled.is_empty());
        for rate in settled {
            assert!((rate - 3.0).abs() <= 0.31, "{rate}");
        }
    }

    #[test]
    fn report_without_samples_still_writes_a_page() {
        let dir = temp_dir("empty");
        let index = write_report(
            &dir.join("nested"),
            &RunInfo::default(),
            &[],
            &Totals::default(),
            &[],
        )
        .expect("report");
        let html = std::fs::read_to_string(&index).expect("page");
        assert!(html.contains("No decision was recorded"));
        for file in CHART_FILES {
            let svg = std::fs::read_to_string(dir.join("nested").join(file)).expect("svg");
            assert_well_formed_xml(&svg);
        }
        assert_eq!(
            read_timeseries(&dir.join("nested").join(TIMESERIES_FILE)).expect("csv"),
            vec![]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn report_survives_values_that_are_not_numbers() {
        let dir = temp_dir("nan");
        let mut samples = synthetic_series();
        samples[5].queue_ready = f64::NAN;
        samples[6].arrival_rate = f64::INFINITY;
        samples[7].queue_wait_p95_secs = Some(f64::NAN);
        write_report(&dir, &info(), &samples, &totals(), &[]).expect("report");
        for file in CHART_FILES {
            let svg = std::fs::read_to_string(dir.join(file)).expect("svg");
            assert_well_formed_xml(&svg);
            assert!(
                !svg.contains("NaN") && !svg.contains("inf"),
                "{file} has a non-number"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn report_comparison_overlays_every_run_with_one_table() {
        let dir = temp_dir("comparison");
        let a = synthetic_series();
        let b: Vec<Sample> = a
            .iter()
            .map(|s| Sample {
                workers_desired: s.workers_desired + 1,
                ..s.clone()
            })
            .collect();
        let runs = [
            Series {
                label: "shipped",
                samples: &a,
            },
            Series {
                label: "seed, v2",
                samples: &b,
            },
        ];
        let table = Table {
            columns: vec!["policy".into(), "wait p95 s".into()],
            rows: vec![
                vec!["shipped".into(), "24.5".into()],
                vec!["seed, v2".into(), "<40>".into()],
            ],
        };
        let info = RunInfo {
            title: "warren simulate: demo".into(),
            settings: vec![("scenario".into(), "demo <1>".into())],
            ..RunInfo::default()
        };
        let index = write_comparison(
            &dir,
            &info,
            "two policies",
            &runs,
            "{\"runs\": []}",
            &table,
            &["shipped: t=0.0s decision".into()],
        )
        .expect("report");
        let html = std::fs::read_to_string(&index).expect("page");
        assert!(html.contains("<h1>warren simulate: demo</h1>"));
        assert!(html.contains("<td>&lt;40&gt;</td>"), "cells are escaped");
        assert!(html.contains("<tr><th>scenario</th><td>demo &lt;1&gt;</td></tr>"));
        assert!(html.contains("shipped: t=0.0s decision"));
        let csv = std::fs::read_to_string(dir.join(TIMESERIES_FILE)).expect("csv");
        assert_eq!(csv.lines().count(), 1 + a.len() + b.len());
        assert!(csv.starts_with("run,t_secs,"));
        assert!(
            csv.contains("\n\"seed, v2\",0.25,"),
            "a label with a comma is quoted"
        );
        let workers = std::fs::read_to_string(dir.join("workers.svg")).expect("svg");
        assert_well_formed_xml(&workers);
        for legend in ["shipped: desired", "seed, v2: current"] {
            assert!(workers.contains(legend), "workers.svg lacks {legend:?}");
        }
        let rates = std::fs::read_to_string(dir.join("processed_rate.svg")).expect("svg");
        assert!(rates.contains("seed, v2: acked per second"));
        assert!(!workers.contains("rescale decision"));
        assert_eq!(
            std::fs::read_to_string(dir.join(TOTALS_FILE)).expect("totals"),
            "{\"runs\": []}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn report_durations_read_as_minutes_and_seconds() {
        assert_eq!(format_duration(7.4), "7s");
        assert_eq!(format_duration(252.4), "4m 12s");
        assert_eq!(format_duration(3725.0), "1h 02m 05s");
        assert_eq!(format_duration(f64::NAN), "unknown");
    }
}
