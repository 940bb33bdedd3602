//! The records warren writes for programs to read back, and their one parser.
//!
//! Four records: one of each HPA sync ([`DecisionRecord`], logged by `warren autoscale`), one
//! of each job a worker acks, dead-letters, returns to the queue or abandons ([`JobRecord`],
//! logged by `warren worker`), and one of each step of a worker's life that a program times or
//! counts on ([`WorkerRecord`]: started by the pool, consuming, lost the broker, draining), and
//! `warren autoscale`'s summary as it stops ([`SummaryRecord`]). Each is one JSON object in the
//! `record` field of its log line, tagged by its kind (`{"record":"decision",...}`,
//! `{"record":"job",...}`, `{"record":"worker",...}`, `{"record":"summary",...}`); the message
//! before it stays for people. [`parse_line`] is the only reader: the ledger ([`crate::lab::ledger`]),
//! the tests' support code and `warren records` (which prints the records of log files as JSON
//! lines, for the benches' scripts) all go through it, and nothing reads a log line's text.

use std::io::BufRead;
use std::path::PathBuf;

use clap::Args;
use serde::{Deserialize, Serialize};
use warren_policy::capacity::Needed;

/// A record, tagged by its kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum Record {
    /// One HPA sync.
    Decision(DecisionRecord),
    /// One job's outcome at a worker.
    Job(JobRecord),
    /// One step of a worker's life.
    Worker(WorkerRecord),
    /// What `warren autoscale` did, logged once as it stops.
    Summary(SummaryRecord),
}

/// What `warren autoscale` did over its run, logged once as it stops.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SummaryRecord {
    /// Decisions taken.
    pub decisions: u64,
    /// Rescales applied.
    pub rescales: u64,
    /// Workers replaced after exiting unasked.
    pub restarts: u64,
    /// Sum of the workers' lifetimes, in seconds.
    pub worker_seconds: f64,
}

/// A step of a worker's life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerEvent {
    /// `warren autoscale`'s pool started the worker's process.
    Started,
    /// The worker consumes from its queue (after its start, or a reconnect).
    Consuming,
    /// The worker lost its connection to the broker; it reconnects.
    LostBroker,
    /// The worker drains: it takes no new job and finishes those in hand.
    Draining,
}

/// One step of a worker's life, with when it happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerRecord {
    /// What happened.
    pub event: WorkerEvent,
    /// The pool's number for the worker (`Started`, logged by the pool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<u64>,
    /// When, in ms since the Unix epoch.
    pub at_ms: u64,
}

impl WorkerRecord {
    /// A record of `event` now.
    pub fn now(event: WorkerEvent) -> Self {
        WorkerRecord {
            event,
            worker: None,
            at_ms: unix_ms(),
        }
    }
}

/// Now, in ms since the Unix epoch (0 on a clock set before it).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// One HPA sync of `warren autoscale`: the step's record and what only the live loop knows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DecisionRecord {
    /// The control step's record ([`warren_policy::sync`]): the pool's counts, the values,
    /// the desired count and the reasons; its `at_secs` are wall-clock seconds since the
    /// autoscaler started.
    #[serde(flatten)]
    pub decision: warren_policy::Decision,
    /// The engine's clock (`--speed` and a resumed state file move it), in ms.
    pub engine_ms: u64,
    /// Each of the HPA's metrics, in the manifest's order.
    pub metrics: Vec<MetricRecord>,
}

/// One metric at one sync.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricRecord {
    /// The External metric's name.
    pub name: String,
    /// Its value, none when it could not be read.
    pub value: Option<f64>,
    /// The replicas it proposed, none when it proposed nothing.
    pub proposal: Option<i32>,
    /// Why it proposed nothing (the read's error, or the engine's).
    pub error: Option<String>,
    /// The capacity metric's terms, where warren computed it from the broker.
    pub terms: Option<Needed>,
}

/// What became of a job at a worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobOutcome {
    /// Worked and acked.
    Acked,
    /// Rejected without requeue: it lands in `<queue>.dead`.
    DeadLettered,
    /// Returned to the queue (a drain, or an ack or reject lost with its channel).
    Requeued,
    /// Its channel was lost during the work: the broker redelivers it.
    Abandoned,
}

/// One job's outcome at a worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    /// The job's id.
    pub job_id: String,
    /// What became of it.
    pub outcome: JobOutcome,
    /// Publish to delivery, in ms, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_wait_ms: Option<u64>,
    /// Work time, in ms, when it was worked on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_ms: Option<u64>,
    /// Whether the broker had delivered it before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redelivered: Option<bool>,
    /// Why, for an outcome other than acked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When the outcome happened, in ms since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_ms: Option<u64>,
}

impl JobOutcome {
    /// Its name in the record: `acked`, `dead_lettered`, `requeued`, `abandoned`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobOutcome::Acked => "acked",
            JobOutcome::DeadLettered => "dead_lettered",
            JobOutcome::Requeued => "requeued",
            JobOutcome::Abandoned => "abandoned",
        }
    }
}

impl JobRecord {
    /// A record of `outcome` for `job_id` with no other field.
    pub fn new(job_id: impl Into<String>, outcome: JobOutcome) -> Self {
        JobRecord {
            job_id: job_id.into(),
            outcome,
            queue_wait_ms: None,
            work_ms: None,
            redelivered: None,
            reason: None,
            at_ms: None,
        }
    }
}

impl Record {
    /// The record as the JSON object its log line's `record` field holds.
    pub fn to_json(&self) -> String {
        // Only strings, numbers and options: serialising cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl From<JobRecord> for Record {
    fn from(job: JobRecord) -> Self {
        Record::Job(job)
    }
}

impl From<WorkerRecord> for Record {
    fn from(worker: WorkerRecord) -> Self {
        Record::Worker(worker)
    }
}

impl From<DecisionRecord> for Record {
    fn from(decision: DecisionRecord) -> Self {
        Record::Decision(decision)
    }
}

/// Where a record starts in a log line: its JSON object opens with its tag.
const RECORD_START: &str = "{\"record\":\"";

/// The record a log line holds, if any: the JSON object that starts at its tag, up to its
/// end (what follows it is ignored). `None` for a line without one, or with one cut short.
pub fn parse_line(line: &str) -> Option<Record> {
    let start = line.find(RECORD_START)?;
    let mut values = serde_json::Deserializer::from_str(&line[start..]).into_iter::<Record>();
    values.next()?.ok()
}

/// Every record in a log's text, in order.
pub fn parse_log(text: &str) -> Vec<Record> {
    text.lines().filter_map(parse_line).collect()
}

/// Options of `warren records`.
#[derive(Debug, Args)]
pub struct RecordsArgs {
    /// Log files to read (a worker's, the autoscaler's, the demo's); none reads stdin.
    pub logs: Vec<PathBuf>,
    /// Print only the records of this kind.
    #[arg(long, value_parser = ["decision", "job", "worker", "summary"])]
    pub kind: Option<String>,
}

impl RecordsArgs {
    /// Checks that every log can be read, before anything is printed: a missing or unreadable
    /// file is bad input (one line, exit 2), not a half-printed answer.
    pub fn check(&self) -> Result<(), crate::config::ConfigError> {
        for path in &self.logs {
            std::fs::File::open(path).map_err(|e| {
                crate::config::ConfigError::new(format!("cannot read {}: {e}", path.display()))
            })?;
        }
        Ok(())
    }
}

/// `warren records`: prints the records of the logs as JSON lines on stdout, in order (file by
/// file), for scripts: each line one record as [`parse_line`] reads it.
pub fn print(args: &RecordsArgs) -> anyhow::Result<()> {
    let wanted = |record: &Record| {
        matches!(
            (args.kind.as_deref(), record),
            (None, _)
                | (Some("decision"), Record::Decision(_))
                | (Some("job"), Record::Job(_))
                | (Some("worker"), Record::Worker(_))
                | (Some("summary"), Record::Summary(_))
        )
    };
    let mut out = std::io::stdout().lock();
    let mut emit = |line: &str| -> anyhow::Result<()> {
        if let Some(record) = parse_line(line).filter(wanted) {
            use std::io::Write as _;
            writeln!(out, "{}", record.to_json())?;
        }
        Ok(())
    };
    if args.logs.is_empty() {
        for line in std::io::stdin().lock().lines() {
            emit(&line?)?;
        }
    }
    for path in &args.logs {
        let file = std::fs::File::open(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        // A log may hold bytes that are not UTF-8 (a program's own output): skip those lines.
        for line in std::io::BufReader::new(file).split(b'\n') {
            emit(&String::from_utf8_lossy(&line?))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_record_reads_back_from_its_log_line_whatever_surrounds_it() {
        let mut job = JobRecord::new("01ABC", JobOutcome::Acked);
        job.queue_wait_ms = Some(12);
        job.work_ms = Some(50);
        let record = Record::from(job);
        let line = format!(
            "2026-12-08T00:00:00.000Z  INFO warren::pipeline::worker: job done record={}",
            record.to_json()
        );
        assert_eq!(parse_line(&line), Some(record.clone()));
        // With a terminal's colours around the field name, and text after the object.
        let coloured = format!(
            "\x1b[3mrecord\x1b[0m\x1b[2m=\x1b[0m{} trailing",
            record.to_json()
        );
        assert_eq!(parse_line(&coloured), Some(record));
    }

    #[test]
    fn lines_without_a_whole_record_are_none() {
        assert_eq!(parse_line("job done job_id=1 outcome=acked"), None);
        assert_eq!(
            parse_line(r#"x record={"record":"job","job_id":"1","outc"#),
            None
        );
        assert_eq!(
            parse_line(r#"x record={"record":"job","job_id":"1","outcome":"eaten"}"#),
            None
        );
        let log = format!(
            "a\n{}\nb\n",
            Record::from(JobRecord::new("2", JobOutcome::DeadLettered)).to_json()
        );
        assert_eq!(parse_log(&log).len(), 1);
    }

    #[test]
    fn a_worker_record_reads_back_with_its_event_and_time() {
        let mut started = WorkerRecord::now(WorkerEvent::Started);
        started.worker = Some(3);
        let record = Record::from(started);
        assert!(record
            .to_json()
            .starts_with(r#"{"record":"worker","event":"started","worker":3,"at_ms":"#));
        let line = format!(
            "2026-12-08T00:00:00Z  INFO worker started record={}",
            record.to_json()
        );
        assert_eq!(parse_line(&line), Some(record));
        let lost = parse_line(r#"x record={"record":"worker","event":"lost_broker","at_ms":5}"#);
        assert_eq!(
            lost,
            Some(Record::Worker(WorkerRecord {
                event: WorkerEvent::LostBroker,
                worker: None,
                at_ms: 5
            }))
        );
    }

    #[test]
    fn an_outcome_s_name_is_its_json_name() {
        for outcome in [
            JobOutcome::Acked,
            JobOutcome::DeadLettered,
            JobOutcome::Requeued,
            JobOutcome::Abandoned,
        ] {
            let json = serde_json::to_string(&outcome).unwrap();
            assert_eq!(json, format!("\"{}\"", outcome.as_str()));
        }
    }

    #[test]
    fn a_decision_record_keeps_every_field_through_json() {
        let record = Record::Decision(DecisionRecord {
            decision: warren_policy::Decision {
                at_secs: 15.0,
                current: 2,
                ready: 1,
                desired: 3,
                rescale: true,
                metric_values: vec![Some(2.5), None],
                summary: Some("external metric above target".into()),
                reasons: "AbleToScale=SucceededRescale".into(),
            },
            engine_ms: 15_000,
            metrics: vec![MetricRecord {
                name: "warren_workers_needed".into(),
                value: Some(2.5),
                proposal: Some(3),
                error: None,
                terms: Some(warren_policy::capacity::workers_needed(
                    &Default::default(),
                    &Default::default(),
                )),
            }],
        });
        assert_eq!(parse_line(&record.to_json()), Some(record));
    }
}
