//! The report's time series: one CSV row per [`Sample`], every field, and the reader that
//! takes it back.

use std::fmt::Write as _;

use super::Sample;

/// The CSV header: the [`Sample`] field names, in order.
pub(super) const CSV_HEADER: [&str; 10] = [
    "t_secs",
    "queue_ready",
    "queue_unacked",
    "arrival_rate",
    "target_rate",
    "workers_current",
    "workers_ready",
    "workers_desired",
    "processed_total",
    "queue_wait_p95_secs",
];

pub(super) fn timeseries_csv(samples: &[Sample]) -> String {
    let mut csv = CSV_HEADER.join(",");
    csv.push('\n');
    for s in samples {
        // `{}` on f64 prints the shortest text that parses back to the same value, so the CSV
        // round-trips exactly. A missing p95 is an empty field.
        let p95 = s
            .queue_wait_p95_secs
            .map(|v| v.to_string())
            .unwrap_or_default();
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{},{},{}",
            s.t_secs,
            s.queue_ready,
            s.queue_unacked,
            s.arrival_rate,
            s.target_rate,
            s.workers_current,
            s.workers_ready,
            s.workers_desired,
            s.processed_total,
            p95
        );
    }
    csv
}

pub(super) fn parse_timeseries(text: &str) -> anyhow::Result<Vec<Sample>> {
    let mut lines = text.lines().enumerate();
    let header = lines.next().map(|(_, l)| l.trim()).unwrap_or_default();
    anyhow::ensure!(
        header == CSV_HEADER.join(","),
        "unexpected header {header:?}"
    );
    let mut samples = Vec::new();
    for (index, line) in lines {
        let line_no = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        anyhow::ensure!(
            fields.len() == CSV_HEADER.len(),
            "line {line_no}: {} fields, expected {}",
            fields.len(),
            CSV_HEADER.len()
        );
        let field = |i: usize| (fields[i], CSV_HEADER[i], line_no);
        samples.push(Sample {
            t_secs: parse_field(field(0))?,
            queue_ready: parse_field(field(1))?,
            queue_unacked: parse_field(field(2))?,
            arrival_rate: parse_field(field(3))?,
            target_rate: parse_field(field(4))?,
            workers_current: parse_field(field(5))?,
            workers_ready: parse_field(field(6))?,
            workers_desired: parse_field(field(7))?,
            processed_total: parse_field(field(8))?,
            queue_wait_p95_secs: match fields[9] {
                "" => None,
                _ => Some(parse_field(field(9))?),
            },
        });
    }
    Ok(samples)
}

fn parse_field<T>((text, name, line_no): (&str, &str, usize)) -> anyhow::Result<T>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    text.parse()
        .map_err(|e| anyhow::anyhow!("line {line_no}, column {name}: {text:?}: {e}"))
}
