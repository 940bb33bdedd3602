//! Times one scenario under one HPA manifest: `cargo run --release -p warren-sim --example speed
//! -- SCENARIO HPA`. `bench/sim-speed` times the `warren simulate` binary instead.

use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(scenario), Some(hpa)) = (args.next(), args.next()) else {
        return Err("usage: speed SCENARIO HPA".into());
    };
    let scenario = warren_sim::Scenario::from_yaml(&std::fs::read_to_string(scenario)?)?;
    let policy = warren_sim::PolicySpec::from_hpa_yaml("hpa", &std::fs::read_to_string(hpa)?)?;
    let started = Instant::now();
    let outcome = warren_sim::run(&scenario, &policy)?;
    let t = &outcome.totals;
    println!(
        "{} jobs in {:.3} s: p95 wait {:.2} s, {:.0} worker-seconds, {} decisions",
        t.jobs_arrived,
        started.elapsed().as_secs_f64(),
        t.wait_p95_secs,
        t.worker_seconds,
        t.decisions
    );
    Ok(())
}
