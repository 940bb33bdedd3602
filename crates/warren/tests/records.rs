//! `warren records`: the records of log files as JSON lines, for scripts (`bench/fidelity`).
#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

use std::process::Command;

use warren::records::{
    parse_line, JobOutcome, JobRecord, Record, SummaryRecord, WorkerEvent, WorkerRecord,
};

#[test]
fn warren_records_prints_each_record_of_the_logs_and_nothing_else() {
    let dir = std::env::temp_dir().join(format!("warren-test-records-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut acked = JobRecord::new("01ACKED", JobOutcome::Acked);
    acked.queue_wait_ms = Some(7);
    let acked = Record::from(acked);
    let dead = Record::from(JobRecord::new("01DEAD", JobOutcome::DeadLettered));
    let consuming = Record::from(WorkerRecord::now(WorkerEvent::Consuming));
    let summary = Record::Summary(SummaryRecord {
        decisions: 12,
        rescales: 3,
        restarts: 0,
        worker_seconds: 301.5,
    });
    let log = dir.join("worker-0.log");
    std::fs::write(
        &log,
        format!(
            "2026-12-08T00:00:00Z  INFO warren::pipeline::worker: consuming queue=Orders record={}\n\
             2026-12-08T00:00:01Z  INFO warren::pipeline::worker: job done record={}\n\
             2026-12-08T00:00:02Z  WARN warren::pipeline::worker: bad message record={}\n\
             2026-12-08T00:00:03Z  INFO warren::scaling::autoscale: stopped worker_seconds=302\n\
             a line cut short record={{\"record\":\"job\",\"job_\n\
             2026-12-08T00:00:04Z  INFO warren::scaling::autoscale: warren autoscale stopped record={}",
            consuming.to_json(),
            acked.to_json(),
            dead.to_json(),
            summary.to_json()
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_warren"))
            .arg("records")
            .args(args)
            .arg(&log)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| parse_line(l).unwrap_or_else(|| panic!("not a record: {l}")))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        run(&[]),
        vec![
            consuming.clone(),
            acked.clone(),
            dead.clone(),
            summary.clone()
        ]
    );
    assert_eq!(run(&["--kind", "decision"]), vec![]);
    assert_eq!(run(&["--kind", "job"]), vec![acked, dead]);
    assert_eq!(run(&["--kind", "worker"]), vec![consuming]);
    assert_eq!(run(&["--kind", "summary"]), vec![summary]);
    let missing = Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(["records", "/nonexistent/warren.log"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert_eq!(missing.status.code(), Some(2), "a missing log is bad input");
    assert!(missing.stdout.is_empty());
    assert_eq!(String::from_utf8_lossy(&missing.stderr).lines().count(), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}
