//! `warren_sim::promql` evaluates as Prometheus does, to the bit: random counters (uneven
//! increments, resets, missed scrapes, stale markers, three scrape intervals) go to
//! `promtool test rules` as input series, and every expression the module answers (`rate`,
//! `increase`, `irate` and `last_over_time` over two windows, the plain selector with its 5 m
//! lookback) is checked at random evaluation times against the module's answer, no answer
//! included. promtool runs Prometheus' own engine (2.x on this machine, so the module's
//! [`Engine::V2`]).
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use std::fmt::Write as _;
use std::process::Command;

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;
use warren_sim::promql::{Engine, Series, DEFAULT_LOOKBACK_MS};

/// One input series: the promtool notation of its values, and the module's copy of it.
struct Case {
    interval_ms: i64,
    values: Vec<String>,
    series: Series,
}

fn random_counter(rng: &mut Pcg64, interval_ms: i64, samples: usize) -> Case {
    let mut values = Vec::with_capacity(samples);
    let mut series = Series::new();
    let mut counter: f64 = f64::from(rng.random_range(0..50u32));
    for i in 0..samples {
        let at = i as i64 * interval_ms;
        let roll: f64 = rng.random();
        if roll < 0.12 {
            values.push("_".to_owned()); // a missed scrape
            continue;
        }
        if roll < 0.15 {
            values.push("stale".to_owned());
            series.mark_stale(at).unwrap();
            continue;
        }
        if roll < 0.18 {
            counter = f64::from(rng.random_range(0..5u32)); // a restart
        } else {
            // Fractional increments too, as a duration sum counts them.
            counter += f64::from(rng.random_range(0..40u32)) * 0.25;
        }
        values.push(format!("{counter}"));
        series.push(at, counter).unwrap();
    }
    Case {
        interval_ms,
        values,
        series,
    }
}

fn expect(out: &mut String, expr: &str, labels: &str, eval_ms: i64, value: Option<f64>) {
    writeln!(
        out,
        "      - expr: '{expr}'\n        eval_time: {eval_ms}ms"
    )
    .unwrap();
    match value {
        Some(v) => writeln!(
            out,
            "        exp_samples:\n          - labels: '{labels}'\n            value: {v:?}"
        )
        .unwrap(),
        None => writeln!(out, "        exp_samples: []").unwrap(),
    }
}

#[test]
fn the_range_functions_agree_with_prometheus_to_the_bit() {
    let mut rng = Pcg64::seed_from_u64(20261208);
    let mut file = String::from("rule_files: []\ntests:\n");
    let mut checks = 0;
    for interval_ms in [7_000, 15_000, 30_000] {
        for _ in 0..4 {
            let case = random_counter(&mut rng, interval_ms, 60);
            let span_ms = case.interval_ms * case.values.len() as i64;
            writeln!(
                file,
                "  - interval: {}ms\n    input_series:\n      - series: 'c'\n        values: '{}'\n    promql_expr_test:",
                case.interval_ms,
                case.values.join(" ")
            )
            .unwrap();
            for _ in 0..25 {
                // On a scrape now and then (a window's edge on a sample), else anywhere.
                let eval_ms = if rng.random::<f64>() < 0.3 {
                    rng.random_range(0..case.values.len() as i64) * case.interval_ms
                } else {
                    rng.random_range(0..span_ms + 120_000) // to 2 m past the last scrape
                };
                let s = &case.series;
                for range_ms in [60_000, 120_000] {
                    let w = format!("{}s", range_ms / 1000);
                    let e = Engine::V2;
                    expect(
                        &mut file,
                        &format!("rate(c[{w}])"),
                        "{}",
                        eval_ms,
                        s.rate(e, eval_ms, range_ms),
                    );
                    expect(
                        &mut file,
                        &format!("increase(c[{w}])"),
                        "{}",
                        eval_ms,
                        s.increase(e, eval_ms, range_ms),
                    );
                    expect(
                        &mut file,
                        &format!("irate(c[{w}])"),
                        "{}",
                        eval_ms,
                        s.irate(e, eval_ms, range_ms),
                    );
                    expect(
                        &mut file,
                        &format!("last_over_time(c[{w}])"),
                        "c",
                        eval_ms,
                        s.last_over_time(e, eval_ms, range_ms),
                    );
                    checks += 4;
                }
                expect(
                    &mut file,
                    "c",
                    "c",
                    eval_ms,
                    s.instant(Engine::V2, eval_ms, DEFAULT_LOOKBACK_MS),
                );
                checks += 1;
            }
            // promtool loads the input series only up to the last multiple of the evaluation
            // interval (1 m) at or before the latest eval_time; one more check on a whole
            // minute past everything makes it load every sample.
            let past_ms = (span_ms + 180_000) / 60_000 * 60_000;
            expect(&mut file, "vector(1)", "{}", past_ms, Some(1.0));
        }
    }
    let dir = std::env::temp_dir().join(format!("warren-promql-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("promql.test.yml");
    std::fs::write(&path, &file).unwrap();
    let out = Command::new("promtool")
        .args(["test", "rules"])
        .arg(&path)
        .output()
        .expect("promtool is missing: scripts/setup installs Debian's prometheus package");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "warren_sim::promql and Prometheus disagree ({checks} checks, file {}):\n{report}",
        path.display()
    );
    assert!(report.contains("SUCCESS"), "{report}");
    let _ = std::fs::remove_dir_all(&dir);
}
