//! The autoscaler's memory on disk, so that `warren autoscale` resumes after a restart as the
//! controller does from the HPA's status.
//!
//! After each decision the engine's [`AutoscalerState`] (recommendations, scale events,
//! conditions, last scale time, desired count) is written to a small JSON file, atomically:
//! to `<file>.tmp` beside it, then renamed over it, so a process killed mid-write leaves the
//! previous file whole.
//!
//! The engine's clock is the autoscaler's own (elapsed time × speed since it started), and
//! every time in the state is on that clock. So the file also holds the engine time of the
//! save and the wall-clock time of the save; a resumed process starts its engine clock at the
//! saved engine time plus the wall time since the save, times the speed
//! ([`SavedState::engine_time_at`]): the stabilization windows and policy periods go on
//! where they were.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use warren_hpa::AutoscalerState;

/// The file format's version; a file of another version is not read.
pub const VERSION: u32 = 1;

/// What the state file holds.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SavedState {
    /// [`VERSION`].
    pub version: u32,
    /// The HPA it belongs to, `namespace/name`.
    pub hpa: String,
    /// The engine's time at the save, in ms on the autoscaler's clock.
    pub engine_ms: u64,
    /// The wall-clock time of the save, in ms since the Unix epoch.
    pub saved_at_unix_ms: u64,
    /// The engine's state after the decision.
    pub state: AutoscalerState,
}

impl SavedState {
    /// The engine time to resume at, `now_unix_ms` on the wall clock: the saved engine time
    /// plus the wall time since the save, times `speed` (the clock runs as if the process had
    /// never stopped). A wall clock that went back counts as no time passed.
    pub fn engine_time_at(&self, now_unix_ms: u64, speed: f64) -> Duration {
        let gap = Duration::from_millis(now_unix_ms.saturating_sub(self.saved_at_unix_ms));
        Duration::from_millis(self.engine_ms) + gap.mul_f64(speed)
    }
}

/// Why a state file could not be resumed from.
#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    /// It could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It is not a state file of this version.
    #[error("{path} is not a warren autoscale state file: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// It is another HPA's.
    #[error("{path} holds the state of HPA {found}, not {expected}")]
    OtherHpa {
        /// The file.
        path: PathBuf,
        /// The HPA it belongs to.
        found: String,
        /// The HPA being run.
        expected: String,
    },
}

/// The state file of one autoscaler.
#[derive(Debug)]
pub struct StateFile {
    path: PathBuf,
    /// Whether the last save failed, so that a failing disk warns once, not every sync.
    failing: bool,
}

impl StateFile {
    /// The state file at `path` (nothing is read or written yet).
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            failing: false,
        }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved state of HPA `hpa` (`namespace/name`); `Ok(None)` when there is no file yet.
    pub fn load(&self, hpa: &str) -> Result<Option<SavedState>, StateFileError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StateFileError::Read {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        let corrupt = |message: String| StateFileError::Corrupt {
            path: self.path.clone(),
            message,
        };
        let saved: SavedState = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
        if saved.version != VERSION {
            return Err(corrupt(format!(
                "version {}, expected {VERSION}",
                saved.version
            )));
        }
        if saved.hpa != hpa {
            return Err(StateFileError::OtherHpa {
                path: self.path.clone(),
                found: saved.hpa,
                expected: hpa.to_owned(),
            });
        }
        Ok(Some(saved))
    }

    /// Writes `saved` atomically (temp file, then rename). A failure is logged as a warning
    /// the first time, and again only after a save succeeded in between; autoscaling goes on.
    pub fn save(&mut self, saved: &SavedState) {
        match self.write(saved) {
            Ok(()) => {
                if self.failing {
                    tracing::info!(state_file = %self.path.display(), "state file written again");
                }
                self.failing = false;
            }
            Err(e) => {
                if !self.failing {
                    tracing::warn!(state_file = %self.path.display(),
                        "cannot write the state file ({e}); a restart will start afresh");
                }
                self.failing = true;
            }
        }
    }

    fn write(&self, saved: &SavedState) -> std::io::Result<()> {
        use std::io::Write;
        let json = serde_json::to_vec_pretty(saved).map_err(std::io::Error::other)?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut temp_name = self.path.file_name().unwrap_or_default().to_owned();
        temp_name.push(".tmp");
        let temp = self.path.with_file_name(temp_name);
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(&json)?;
        file.sync_all()?;
        std::fs::rename(&temp, &self.path)
    }
}

/// Milliseconds since the Unix epoch now (0 if the clock is before it).
pub fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_hpa::{Autoscaler, MetricObservation, ScaleTarget, Timestamp};

    fn dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("warren-state-file-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn saved(engine_ms: u64, saved_at_unix_ms: u64) -> SavedState {
        let mut engine = Autoscaler::from_yaml(
            "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: w\nspec:\n  scaleTargetRef:\n    kind: Deployment\n    name: w\n  maxReplicas: 4\n  metrics:\n  - type: External\n    external:\n      metric:\n        name: m\n      target:\n        type: AverageValue\n        averageValue: \"5\"\n",
        )
        .unwrap();
        engine.evaluate(
            Timestamp::from_millis(engine_ms),
            &ScaleTarget::workers(1, 1),
            &[MetricObservation::external_units(20)],
        );
        SavedState {
            version: VERSION,
            hpa: "default/w".into(),
            engine_ms,
            saved_at_unix_ms,
            state: engine.state().clone(),
        }
    }

    #[test]
    fn a_saved_state_reads_back_whole_and_leaves_no_temp_file() {
        let dir = dir("roundtrip");
        let mut file = StateFile::new(dir.join("sub").join("state.json"));
        assert!(file.load("default/w").unwrap().is_none());
        let state = saved(30_000, 1_000);
        file.save(&state);
        assert!(!file.failing);
        assert_eq!(file.load("default/w").unwrap(), Some(state));
        let names: Vec<_> = std::fs::read_dir(dir.join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state.json"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_corrupt_or_foreign_file_is_an_error_naming_it() {
        let dir = dir("corrupt");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.json");
        let file = StateFile::new(path.clone());
        std::fs::write(&path, "{\"version\": 1, \"hpa\": ").unwrap();
        let e = file.load("default/w").unwrap_err();
        assert!(matches!(e, StateFileError::Corrupt { .. }), "{e}");
        assert!(e.to_string().contains(&*path.to_string_lossy()), "{e}");

        let mut other = StateFile::new(path.clone());
        other.save(&saved(0, 0));
        let e = file.load("warren/warren-worker").unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{} holds the state of HPA default/w, not warren/warren-worker",
                path.display()
            )
        );

        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("\"version\": 1", "\"version\": 2");
        std::fs::write(&path, text).unwrap();
        let e = file.load("default/w").unwrap_err();
        assert!(e.to_string().ends_with("version 2, expected 1"), "{e}");

        std::fs::write(&path, "{\"version\": 1, \"extra\": true}").unwrap();
        let e = file.load("default/w").unwrap_err();
        assert!(e.to_string().contains("unknown field `extra`"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_save_that_cannot_be_written_is_remembered_and_cleared_by_the_next_good_one() {
        let dir = dir("failing");
        std::fs::create_dir_all(dir.join("state.json")).unwrap();
        let mut file = StateFile::new(dir.join("state.json"));
        file.save(&saved(0, 0));
        assert!(file.failing);
        std::fs::remove_dir_all(dir.join("state.json")).unwrap();
        file.save(&saved(0, 0));
        assert!(!file.failing);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_engine_clock_goes_on_from_the_save_at_the_given_speed() {
        let state = saved(90_000, 1_000_000);
        // 2 s of wall time at speed 10 is 20 s of engine time.
        assert_eq!(
            state.engine_time_at(1_002_000, 10.0),
            Duration::from_millis(110_000)
        );
        assert_eq!(
            state.engine_time_at(1_002_000, 1.0),
            Duration::from_millis(92_000)
        );
        // A wall clock set back does not move the engine's clock back.
        assert_eq!(
            state.engine_time_at(999_000, 10.0),
            Duration::from_millis(90_000)
        );
    }
}
