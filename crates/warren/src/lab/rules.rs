//! The recording and alerting rules the demo's Prometheus loads: the repository's
//! `deploy/kubernetes/base/prometheus/rules.yml`, compiled in, and rendered for the demo's speed.
//!
//! The rules count in real seconds: rate windows (`[1m]`, `[5m]`), the backlog's look-back
//! (`[2m]`), alerts' `for:` and the capacity metric's drain time and default work time. At
//! `--speed K` the demo runs every time K times faster (5 s jobs take 5/K s), so rules left as
//! written would see K times shorter work times against the same drain time: a backlog term K
//! times weaker, and windows holding K times more of the run. [`render`] divides each of those
//! times by K, so the rules see the run as they would see it at 1x; the target utilisation and
//! beta, ratios, stay (busy workers, rate x work time, are the same at any speed).

/// The rules as shipped.
pub const RULES: &str = include_str!("../../../../deploy/kubernetes/base/prometheus/rules.yml");

/// Recording rules whose constant is a time in seconds, scaled with the speed.
const TIME_CONSTANTS: [&str; 2] = [
    "warren_capacity_drain_seconds",
    "warren_capacity_default_work_seconds",
];

/// One time the rendering changed, for the report: as written, and on the wall clock.
#[derive(Clone, Debug, PartialEq)]
pub struct Scaled {
    /// Where: a range window `[1m]`, `for: 5m` or a constant's record name.
    pub what: String,
    /// As written, in seconds.
    pub written_secs: f64,
    /// As rendered, in seconds of the wall clock.
    pub rendered_secs: f64,
}

/// The rules with every time divided by `speed`, and what was changed (each distinct time
/// once). At speed 1 the text is the shipped one.
pub fn render(rules: &str, speed: f64) -> (String, Vec<Scaled>) {
    if speed == 1.0 {
        return (rules.to_owned(), Vec::new());
    }
    let mut changed: Vec<Scaled> = Vec::new();
    let mut note = |what: String, written_secs: f64, rendered_secs: f64| {
        if !changed.iter().any(|c| c.what == what) {
            changed.push(Scaled {
                what,
                written_secs,
                rendered_secs,
            });
        }
    };
    let mut out = String::with_capacity(rules.len() + 256);
    let mut constant_next: Option<&str> = None;
    for line in rules.split_inclusive('\n') {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        if trimmed.starts_with('#') {
            out.push_str(line);
            continue;
        }
        if let Some(record) = trimmed
            .strip_prefix("- record: ")
            .map(str::trim)
            .and_then(|r| TIME_CONSTANTS.iter().find(|c| **c == r))
        {
            constant_next = Some(record);
            out.push_str(line);
            continue;
        }
        if let Some(record) = constant_next.take() {
            let value = trimmed
                .strip_prefix("expr: vector(")
                .and_then(|v| v.trim_end().strip_suffix(')'))
                .and_then(|v| v.parse::<f64>().ok());
            if let Some(secs) = value {
                let rendered = secs / speed;
                note(record.to_owned(), secs, rendered);
                out.push_str(&format!("{indent}expr: vector({rendered})\n"));
                continue;
            }
        }
        if let Some(duration) = trimmed.strip_prefix("for: ") {
            if let Some(secs) = parse_duration(duration.trim()) {
                let rendered = scaled_ms(secs, speed);
                note(
                    format!("for: {}", duration.trim()),
                    secs,
                    rendered as f64 / 1000.0,
                );
                out.push_str(&format!("{indent}for: {rendered}ms\n"));
                continue;
            }
        }
        out.push_str(&scale_windows(line, speed, &mut note));
    }
    (out, changed)
}

/// Replaces each `[<n><unit>]` range of a PromQL line by the same range divided by `speed`.
fn scale_windows(line: &str, speed: f64, note: &mut impl FnMut(String, f64, f64)) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after
            .find(']')
            .and_then(|close| Some((close, parse_duration(&after[..close])?)))
        {
            Some((close, secs)) => {
                let rendered = scaled_ms(secs, speed);
                note(
                    format!("[{}]", &after[..close]),
                    secs,
                    rendered as f64 / 1000.0,
                );
                out.push_str(&format!("[{rendered}ms]"));
                rest = &after[close + 1..];
            }
            None => {
                out.push('[');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn scaled_ms(secs: f64, speed: f64) -> u64 {
    ((secs * 1000.0 / speed).round() as u64).max(1)
}

/// A Prometheus duration of one unit (`90s`, `1m`, `5m`, `1h`, `500ms`), in seconds.
fn parse_duration(text: &str) -> Option<f64> {
    let digits = text.find(|c: char| !c.is_ascii_digit())?;
    let value: f64 = text[..digits].parse().ok()?;
    let unit = match &text[digits..] {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return None,
    };
    Some(value * unit)
}

/// One line for the report's settings: what the rules' times became on the wall clock.
pub fn describe(speed: f64, changed: &[Scaled]) -> String {
    if changed.is_empty() {
        return "rules.yml as shipped".to_owned();
    }
    let times = changed
        .iter()
        .map(|c| format!("{} {} s -> {} s", c.what, c.written_secs, c.rendered_secs))
        .collect::<Vec<_>>()
        .join(", ");
    format!("rules.yml with every time divided by the speed {speed} (on the wall clock: {times}), so in the demo's time they are as shipped")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_speed_1_the_rules_are_the_shipped_ones() {
        assert_eq!(render(RULES, 1.0), (RULES.to_owned(), Vec::new()));
    }

    #[test]
    fn at_speed_10_every_window_for_and_time_constant_is_a_tenth() {
        let (text, changed) = render(RULES, 10.0);
        for gone in ["[1m]", "[5m]", "[2m]", "for: 5m", "vector(30)", "vector(5)"] {
            let uncommented: Vec<&str> = text
                .lines()
                .filter(|l| !l.trim_start().starts_with('#'))
                .filter(|l| l.contains(gone))
                .collect();
            assert!(uncommented.is_empty(), "{gone} left: {uncommented:?}");
        }
        for wanted in [
            "[6000ms]",
            "[30000ms]",
            "[12000ms]",
            "for: 30000ms",
            "expr: vector(3)",
            "expr: vector(0.5)",
            "expr: vector(1)",
            "expr: vector(0.58)",
        ] {
            assert!(text.contains(wanted), "{wanted} missing:\n{text}");
        }
        let drain = changed
            .iter()
            .find(|c| c.what == "warren_capacity_drain_seconds")
            .unwrap();
        assert_eq!((drain.written_secs, drain.rendered_secs), (30.0, 3.0));
        // The comments, the names and the layout are kept.
        assert_eq!(text.lines().count(), RULES.lines().count());
        assert!(describe(10.0, &changed).contains("[1m] 60 s -> 6 s"));
    }

    fn promtool(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
        std::process::Command::new("promtool")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("promtool is missing: scripts/setup installs Debian's prometheus package")
    }

    #[test]
    fn the_rendered_rules_pass_promtool_and_give_the_1x_metric_on_a_10x_run() {
        let dir = std::env::temp_dir().join(format!("warren-rules-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for speed in [3.0, 10.0, 100.0] {
            std::fs::write(dir.join("rules.yml"), render(RULES, speed).0).unwrap();
            let out = promtool(&dir, &["check", "rules", "rules.yml"]);
            assert!(
                out.status.success(),
                "speed {speed}: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        // Queue Orders steady (2 jobs/s of 4 s jobs, 12 ready: 8 + 0.58 x sqrt(8) + 1.6 =
        // 11.2405 workers, as capacity.test.yml)
        // run 10 times faster: 20 jobs/s of 0.4 s jobs on the wall clock, scraped every 1.5 s.
        std::fs::write(dir.join("rules.yml"), render(RULES, 10.0).0).unwrap();
        let test = r#"rule_files: [rules.yml]
evaluation_interval: 1500ms
tests:
  - interval: 1500ms
    input_series:
      - series: 'rabbitmq_detailed_channel_messages_acked_total{channel="<0.9.0>",vhost="/",queue="Orders"}'
        values: '0+30x100'
      - series: 'rabbitmq_detailed_channel_messages_delivered_total{channel="<0.9.0>",vhost="/",queue="Orders"}'
        values: '0x100'
      - series: 'rabbitmq_detailed_channel_get_total{channel="<0.9.0>",vhost="/",queue="Orders"}'
        values: '0x100'
      - series: 'job_duration_seconds_sum{instance="worker-0"}'
        values: '0+12x100'
      - series: 'job_duration_seconds_count{instance="worker-0"}'
        values: '0+30x100'
      - series: 'rabbitmq_detailed_queue_messages_ready{vhost="/",queue="Orders"}'
        values: '12x100'
      - series: 'rabbitmq_detailed_queue_messages_unacked{vhost="/",queue="Orders"}'
        values: '8x100'
      - series: 'rabbitmq_detailed_queue_messages{vhost="/",queue="Orders"}'
        values: '20x100'
      - series: 'rabbitmq_detailed_queue_consumers{vhost="/",queue="Orders"}'
        values: '8x100'
    promql_expr_test:
      - expr: 'abs(warren_workers_needed - 11.24048773235279) < bool 1e-6'
        eval_time: 60s
        exp_samples: [{labels: '{vhost="/",queue="Orders"}', value: 1}]
"#;
        std::fs::write(dir.join("speed.test.yml"), test).unwrap();
        let out = promtool(&dir, &["test", "rules", "speed.test.yml"]);
        let report = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(out.status.success(), "{report}");
    }
}
