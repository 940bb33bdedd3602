//! The ledger of job outcomes, read from the workers' logs.
//!
//! Every worker logs one [`JobRecord`] per job outcome (`crate::records`, read back by its one
//! parser). The demo and the chaos tests tail those log files into a [`Ledger`] and
//! compare it with the ids `/generate` answered 200: an accepted id never acked is lost, an id
//! acked more than once is a duplicate.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::records::{parse_line, JobOutcome, JobRecord, Record};

/// Job outcomes seen so far.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Acks per job id.
    acked: HashMap<String, u32>,
    /// Ids dead-lettered.
    dead_lettered: HashSet<String>,
    /// Queue waits (ms) of acks not yet taken by [`Ledger::take_recent_waits`].
    recent_waits: Vec<u64>,
    /// Read position per log file, and the unfinished last line.
    files: HashMap<PathBuf, (u64, String)>,
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one log line.
    pub fn record_line(&mut self, line: &str) {
        if let Some(Record::Job(job)) = parse_line(line) {
            self.record(job);
        }
    }

    /// Records one job outcome.
    pub fn record(&mut self, job: JobRecord) {
        match job.outcome {
            JobOutcome::Acked => {
                *self.acked.entry(job.job_id).or_default() += 1;
                if let Some(wait) = job.queue_wait_ms {
                    self.recent_waits.push(wait);
                }
            }
            JobOutcome::DeadLettered => {
                self.dead_lettered.insert(job.job_id);
            }
            JobOutcome::Requeued | JobOutcome::Abandoned => {}
        }
    }

    /// Reads what was appended to every `*.log` file in `dir` since the last call.
    pub fn read_dir(&mut self, dir: &Path) -> std::io::Result<()> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Ok(());
        };
        for entry in entries {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "log") {
                self.read_file(&path)?;
            }
        }
        Ok(())
    }

    /// Reads what was appended to `path` since the last call.
    pub fn read_file(&mut self, path: &Path) -> std::io::Result<()> {
        let (offset, mut partial) = self.files.remove(path).unwrap_or_default();
        let mut file = std::fs::File::open(path)?;
        file.seek(SeekFrom::Start(offset))?;
        let mut bytes = Vec::new();
        let read = file.read_to_end(&mut bytes)?;
        partial.push_str(&String::from_utf8_lossy(&bytes));
        // Keep an unfinished last line for the next read.
        let rest = match partial.rfind('\n') {
            Some(end) => {
                let (complete, rest) = partial.split_at(end + 1);
                for line in complete.lines() {
                    self.record_line(line);
                }
                rest.to_owned()
            }
            None => partial,
        };
        self.files
            .insert(path.to_owned(), (offset + read as u64, rest));
        Ok(())
    }

    /// Distinct ids acked at least once.
    pub fn acked_ids(&self) -> usize {
        self.acked.len()
    }

    /// Acks in all, duplicates included.
    pub fn acks(&self) -> u64 {
        self.acked.values().map(|&n| u64::from(n)).sum()
    }

    /// Acks beyond the first for the same id.
    pub fn duplicates(&self) -> u64 {
        self.acked
            .values()
            .map(|&n| u64::from(n.saturating_sub(1)))
            .sum()
    }

    /// Whether `id` was acked.
    pub fn was_acked(&self, id: &str) -> bool {
        self.acked.contains_key(id)
    }

    /// Ids dead-lettered.
    pub fn dead_lettered(&self) -> usize {
        self.dead_lettered.len()
    }

    /// Of `accepted`, the ids never acked.
    pub fn lost<'a>(&self, accepted: impl IntoIterator<Item = &'a String>) -> Vec<String> {
        accepted
            .into_iter()
            .filter(|id| !self.acked.contains_key(id.as_str()))
            .cloned()
            .collect()
    }

    /// The queue waits recorded since the last call, in ms.
    pub fn take_recent_waits(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.recent_waits)
    }
}

/// The `q`-quantile (0..=1) of `values` (nearest rank); `None` when empty.
pub fn quantile(values: &mut [u64], q: f64) -> Option<u64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    Some(values[rank - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A worker's log line holding `id`'s `outcome`, as the worker writes it.
    fn line(id: &str, outcome: JobOutcome) -> String {
        let mut job = JobRecord::new(id, outcome);
        job.queue_wait_ms = (outcome == JobOutcome::Acked).then_some(5);
        format!(
            "2026-12-08T00:00:00Z  INFO warren::pipeline::worker: job done record={}",
            Record::from(job).to_json()
        )
    }

    #[test]
    fn duplicates_and_lost_ids_are_counted() {
        let mut ledger = Ledger::new();
        for id in ["a", "b", "b", "c"] {
            ledger.record_line(&line(id, JobOutcome::Acked));
        }
        ledger.record_line(&line("d", JobOutcome::DeadLettered));
        ledger.record_line(&line("e", JobOutcome::Requeued));
        ledger.record_line("INFO warren::pipeline::worker: consuming queue=Orders");
        assert_eq!(ledger.acked_ids(), 3);
        assert_eq!(ledger.acks(), 4);
        assert_eq!(ledger.duplicates(), 1);
        assert_eq!(ledger.dead_lettered(), 1);
        let accepted: Vec<String> = ["a", "b", "e"].iter().map(|s| s.to_string()).collect();
        assert_eq!(ledger.lost(&accepted), vec!["e".to_owned()]);
        assert_eq!(ledger.take_recent_waits().len(), 4);
        assert!(ledger.take_recent_waits().is_empty());
    }

    #[test]
    fn files_are_tailed_across_partial_lines() {
        let dir = std::env::temp_dir().join(format!("warren-ledger-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("worker-0.log");
        let (first, second) = (line("1", JobOutcome::Acked), line("2", JobOutcome::Acked));
        let (head, tail) = second.split_at(second.len() / 2);
        std::fs::write(&path, format!("{first}\n{head}")).unwrap();
        let mut ledger = Ledger::new();
        ledger.read_dir(&dir).unwrap();
        assert_eq!(ledger.acked_ids(), 1);
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut file, format!("{tail}\n").as_bytes()).unwrap();
        ledger.read_dir(&dir).unwrap();
        assert_eq!(ledger.acked_ids(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let mut values: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&mut values, 0.95), Some(95));
        assert_eq!(quantile(&mut [], 0.95), None);
        assert_eq!(quantile(&mut [7], 0.5), Some(7));
    }
}
