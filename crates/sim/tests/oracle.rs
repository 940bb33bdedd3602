//! The staffing formulas against the simulator, and the oracle that staffs by them: its p95
//! under steady Poisson load, its staffing on a step, and square-root staffing's promise.

use warren_sim::oracle::{Oracle, OracleSpec};
use warren_sim::staffing::{
    beta_for_slo, fewest_servers, square_root_servers, wait_quantile, Load, SLO_QUANTILE,
};
use warren_sim::{run, PolicySpec, ScaleCause, Scenario};

const EXPONENTIAL: &str = "{ distribution: exponential, mean_secs: 5 }";
const LOGNORMAL: &str = "{ distribution: lognormal, mean_secs: 5, p95_secs: 9 }";
const FIXED: &str = "{ distribution: fixed, secs: 5 }";

/// Poisson arrivals at a steady `rate` of `work`, long enough (tens of thousands of jobs) for
/// a p95 to settle; pods start in 10 s, as in the suite.
fn steady(rate: f64, work: &str, duration_secs: f64, seed: u64) -> Scenario {
    Scenario::from_yaml(&format!(
        "description: steady\nduration_secs: {duration_secs}\nslo_secs: 10\nseed: {seed}\n\
         arrivals: {{ pattern: constant, rate: {rate}, process: poisson }}\nwork: {work}\n\
         workers: {{ startup_secs: 10 }}\n"
    ))
    .expect("valid scenario")
}

fn load(rate: f64, work: &str) -> Load {
    let scenario = steady(rate, work, 1.0, 1);
    Load::poisson(rate, scenario.work.mean(), scenario.work.scv())
}

/// The simulated p95 wait of `policy`, the mean over two seeds (a p95 of a queue near
/// saturation moves by several per cent from one seed to another).
fn simulated_p95(rate: f64, work: &str, policy: &PolicySpec) -> f64 {
    let runs: Vec<f64> = [1, 2]
        .iter()
        .map(|&seed| {
            run(&steady(rate, work, 30_000.0, seed), policy)
                .expect("runs")
                .totals
                .wait_p95_secs
        })
        .collect();
    runs.iter().sum::<f64>() / runs.len() as f64
}

#[test]
fn erlang_c_predicts_the_simulated_p95_of_a_fixed_count() {
    // Exponential work is the M/M/c queue, where Erlang C is exact; for lognormal and fixed
    // work the two-moment correction is an approximation, measured here.
    for (work, rate, workers, tolerance) in [
        (EXPONENTIAL, 1.6, 10, 0.12),
        (EXPONENTIAL, 1.6, 11, 0.12),
        (LOGNORMAL, 1.6, 9, 0.15),
        (LOGNORMAL, 0.4, 3, 0.15),
        (FIXED, 1.6, 9, 0.15),
        (FIXED, 8.0, 42, 0.15),
    ] {
        let predicted = wait_quantile(&load(rate, work), workers, SLO_QUANTILE);
        let simulated = simulated_p95(rate, work, &PolicySpec::fixed(workers));
        assert!(
            (simulated / predicted - 1.0).abs() <= tolerance,
            "{work} at {rate}/s on {workers}: simulated p95 {simulated:.2} s, predicted {predicted:.2} s"
        );
    }
}

#[test]
fn the_oracle_meets_its_slo_under_steady_poisson_load_with_the_fewest_workers() {
    for (work, rate, slo) in [
        (EXPONENTIAL, 1.6, 6.0),
        (LOGNORMAL, 1.6, 8.0),
        (FIXED, 8.0, 4.0),
    ] {
        let oracle = PolicySpec::oracle(slo, 1, None).expect("valid");
        let p95 = simulated_p95(rate, work, &oracle);
        let workers = fewest_servers(&load(rate, work), slo, SLO_QUANTILE);
        // Within the 12-15 % the formula is off by (above), of the SLO.
        assert!(
            p95 <= slo * 1.15,
            "{work} at {rate}/s: p95 {p95:.2} s over {slo} s"
        );
        // One worker fewer misses it: the oracle spends no worker it does not need.
        let fewer = simulated_p95(rate, work, &PolicySpec::fixed(workers - 1));
        assert!(
            fewer > slo,
            "{work} at {rate}/s: {} workers wait {fewer:.2} s",
            workers - 1
        );
        // It holds that count all along: no scale event after the start.
        let outcome = run(&steady(rate, work, 3_000.0, 1), &oracle).expect("runs");
        assert!(
            outcome.scale_events.is_empty(),
            "{:?}",
            outcome.scale_events
        );
        assert_eq!(outcome.samples[10].workers_current, workers);
    }
}

#[test]
fn the_oracle_asks_for_a_step_a_pod_start_ahead_and_lets_go_at_once() {
    let scenario = Scenario::from_yaml(&format!(
        "description: step\nduration_secs: 1800\nslo_secs: 5\nseed: 3\n\
         arrivals: {{ points: [[0, 0.4], [600, 0.4], [600, 1.6], [1200, 1.6], [1200, 0.4], [1800, 0.4]], process: poisson }}\n\
         work: {LOGNORMAL}\nworkers: {{ startup_secs: 10 }}\n"
    ))
    .expect("valid scenario");
    let spec = OracleSpec {
        slo_secs: 5.0,
        min: 1,
        max: None,
    };
    let oracle = Oracle::new(spec, &scenario).expect("an oracle");
    let (low, high) = (oracle.workers_for_rate(0.4), oracle.workers_for_rate(1.6));
    assert_eq!(
        (low, high),
        (
            fewest_servers(&load(0.4, LOGNORMAL), 5.0, SLO_QUANTILE),
            fewest_servers(&load(1.6, LOGNORMAL), 5.0, SLO_QUANTILE)
        )
    );
    let outcome = run(&scenario, &PolicySpec::oracle(5.0, 1, None).expect("valid")).expect("runs");
    let events: Vec<_> = outcome
        .scale_events
        .iter()
        .map(|e| (e.at_secs, e.from, e.to, e.cause))
        .collect();
    // Up once, 10 s (the pod start) and a step ahead of the rise, so that the workers are
    // ready when it comes; down once, as the rate falls.
    assert_eq!(events.len(), 2, "{events:?}");
    let (up_at, from, to, cause) = events[0];
    assert_eq!((from, to, cause), (low, high, ScaleCause::Oracle));
    assert!((589.0..=590.0).contains(&up_at), "up at {up_at}");
    let (down_at, from, to, _) = events[1];
    assert_eq!((from, to), (high, low));
    assert!((1200.0..=1201.0).contains(&down_at), "down at {down_at}");
    let at_600 = outcome
        .samples
        .iter()
        .find(|s| s.t_secs == 600.0)
        .expect("a sample at 600 s");
    assert_eq!(at_600.workers_ready, high);
    assert!(
        outcome.totals.wait_p95_secs <= 5.0,
        "{}",
        outcome.totals.wait_p95_secs
    );
}

#[test]
fn square_root_staffing_from_an_slo_waits_within_20_percent_of_it() {
    // The promise of `beta_for_slo`: at the load it was derived for, busy + beta x sqrt(busy)
    // workers wait within 20 % of the SLO, by Erlang C and in the simulator. An SLO is met only
    // as closely as a whole worker count comes to it; these SLOs are ones it can come within
    // 20 % of (at 8 busy workers one worker more halves the p95).
    for (work, rate, slo) in [
        (EXPONENTIAL, 1.6, 5.5),
        (EXPONENTIAL, 4.0, 4.0),
        (LOGNORMAL, 1.6, 8.0),
        (FIXED, 1.6, 7.0),
    ] {
        let load = load(rate, work);
        let beta = beta_for_slo(&load, slo, SLO_QUANTILE).expect("a beta");
        let workers = square_root_servers(load.busy(), beta);
        let predicted = wait_quantile(&load, workers, SLO_QUANTILE);
        assert!(
            (0.8 * slo..=slo).contains(&predicted),
            "{work} at {rate}/s: beta {beta:.3}, {workers} workers, Erlang C p95 {predicted:.2} s for {slo} s"
        );
        let simulated = simulated_p95(rate, work, &PolicySpec::fixed(workers));
        assert!(
            (0.8 * slo..=1.2 * slo).contains(&simulated),
            "{work} at {rate}/s: beta {beta:.3}, {workers} workers, simulated p95 {simulated:.2} s for {slo} s"
        );
    }
}

#[test]
fn the_oracle_refuses_bursts_and_a_bad_slo() {
    let burst = Scenario::from_yaml(
        "description: burst\nduration_secs: 300\nslo_secs: 10\n\
         arrivals: { pattern: constant, rate: 1, bursts: [{ at_secs: 60, jobs: 100 }] }\n\
         work: { distribution: fixed, secs: 1 }\n",
    )
    .expect("valid scenario");
    let oracle = PolicySpec::oracle(5.0, 1, Some(10)).expect("valid");
    let err = run(&burst, &oracle).expect_err("no oracle for bursts");
    assert!(err.to_string().starts_with("arrivals.bursts:"), "{err}");
    assert!(PolicySpec::oracle(-1.0, 1, None).is_err());
    assert!(PolicySpec::oracle(f64::NAN, 1, None).is_err());
    assert!(PolicySpec::oracle(5.0, 3, Some(2)).is_err());
}
