//! Idle workers go first: keeps this pod's `controller.kubernetes.io/pod-deletion-cost`
//! annotation low while the worker is idle and high while it is busy, so that when the HPA
//! scales the Deployment down the ReplicaSet removes idle pods and leaves busy ones working
//! (a busy victim would otherwise hold its job for a whole work time while it drains).
//!
//! Opt-in (`--pod-deletion-cost`, `POD_DELETION_COST=true`). The worker's in-flight count is
//! sampled a few times a second; only a change of state (idle <-> busy) that has lasted the
//! debounce time is written, with one merge patch, so a steadily busy or steadily idle worker
//! makes no API calls at all. The pod's name and namespace come from the Downward API
//! (`POD_NAME`, `POD_NAMESPACE`); the client comes from the usual places
//! ([`kube::Config::infer`]: `KUBECONFIG`, else the pod's service account token). With the flag
//! off nothing here runs and no client is built.
//!
//! A failed patch (403 from missing RBAC, an unreachable or slow API server) never touches
//! the work: it is logged once as a warning (repeats go to debug until a patch succeeds again)
//! and retried later with a growing delay.

use std::time::{Duration, Instant};

use clap::Args;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use prometheus_client::metrics::gauge::Gauge;
use tokio_util::sync::CancellationToken;

use crate::config::ConfigError;

/// The annotation the ReplicaSet controller ranks victims by (lower goes first).
pub const ANNOTATION: &str = "controller.kubernetes.io/pod-deletion-cost";
/// The cost an idle worker's pod carries: the same as a pod without the annotation, so a
/// fresh pod and an idle one rank alike and the ReplicaSet's other rules decide between them.
pub const IDLE_COST: i32 = 0;
/// The cost a busy worker's pod carries: above every idle pod.
pub const BUSY_COST: i32 = 100;
const _: () = assert!(
    IDLE_COST < BUSY_COST,
    "idle pods must rank before busy ones"
);

/// How long one patch may take before it counts as failed.
const PATCH_TIMEOUT: Duration = Duration::from_secs(5);
/// After a failed patch, the first retry waits this long (or the debounce, if longer)...
const RETRY_FIRST: Duration = Duration::from_secs(1);
/// ...and each further one twice as long, up to this.
const RETRY_MAX: Duration = Duration::from_secs(300);
/// Who the API server records as the writer of the annotation.
const FIELD_MANAGER: &str = "warren-worker";

/// Options of the pod-deletion-cost feature (part of `warren worker`).
#[derive(Debug, Args)]
pub struct DeletionCostArgs {
    /// Keep this pod's controller.kubernetes.io/pod-deletion-cost low while idle and high while
    /// busy, so a scale-down removes idle workers first. Needs POD_NAME and POD_NAMESPACE (the
    /// Downward API) and RBAC to patch the pod.
    #[arg(long, env = "POD_DELETION_COST")]
    pub pod_deletion_cost: bool,
    /// This pod's name (from the Downward API: metadata.name).
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,
    /// This pod's namespace (from the Downward API: metadata.namespace).
    #[arg(long, env = "POD_NAMESPACE")]
    pub pod_namespace: Option<String>,
    /// How long idle or busy must last before the annotation is changed, in ms.
    #[arg(long, env = "POD_DELETION_COST_DEBOUNCE_MS", default_value_t = 2000,
          value_parser = clap::value_parser!(u64).range(0..=600_000))]
    pub pod_deletion_cost_debounce_ms: u64,
}

impl DeletionCostArgs {
    /// The validated config; `None` when the feature is off.
    pub fn to_config(&self) -> Result<Option<DeletionCostConfig>, ConfigError> {
        if !self.pod_deletion_cost {
            return Ok(None);
        }
        let name = required_dns_name(self.pod_name.as_deref(), "POD_NAME", 253)?;
        let namespace = required_dns_name(self.pod_namespace.as_deref(), "POD_NAMESPACE", 63)?;
        Ok(Some(DeletionCostConfig {
            pod_name: name,
            namespace,
            debounce: Duration::from_millis(self.pod_deletion_cost_debounce_ms),
        }))
    }
}

/// A pod or namespace name as Kubernetes accepts it (lower-case RFC 1123), or an error naming
/// the variable.
fn required_dns_name(value: Option<&str>, var: &str, max: usize) -> Result<String, ConfigError> {
    let value = value.unwrap_or_default();
    if value.is_empty() {
        return Err(ConfigError::new(format!(
            "POD_DELETION_COST is on but {var} is not set (give it from the Downward API)"
        )));
    }
    let valid = value.len() <= max
        && value.split('.').all(|part| {
            !part.is_empty()
                && part.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && part.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
        && (max > 63 || !value.contains('.'));
    if !valid {
        return Err(ConfigError::new(format!(
            "{var} {value:?} is not a Kubernetes name (lower-case letters, digits, '-', at most {max})"
        )));
    }
    Ok(value.to_owned())
}

/// Settings of the pod-deletion-cost feature, validated.
#[derive(Clone, Debug)]
pub struct DeletionCostConfig {
    /// This pod's name.
    pub pod_name: String,
    /// This pod's namespace.
    pub namespace: String,
    /// How long a state must last before it is written.
    pub debounce: Duration,
}

/// What the worker is doing, as far as the annotation cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activity {
    /// No job in flight.
    Idle,
    /// At least one job in flight.
    Busy,
}

impl Activity {
    /// The state of a worker with `in_flight` jobs.
    pub fn of(in_flight: i64) -> Self {
        if in_flight > 0 {
            Self::Busy
        } else {
            Self::Idle
        }
    }

    /// The deletion cost this state is written as.
    pub fn cost(self) -> i32 {
        match self {
            Self::Idle => IDLE_COST,
            Self::Busy => BUSY_COST,
        }
    }
}

/// Decides when to write the annotation; no I/O and no clock (time is a parameter).
///
/// A state is written once it has been observed without a break for the debounce time and is
/// not what was last written. After a failed write the same state is tried again only once
/// the retry delay has passed.
#[derive(Debug)]
pub struct Debounce {
    debounce: Duration,
    /// What the pod's annotation says, as far as we know (`None` until our first write, since a
    /// restarted container may find its pod still marked busy).
    written: Option<Activity>,
    /// The state seen now and since when, unless it is the written one.
    pending: Option<(Activity, Instant)>,
    /// No attempt before this instant (after a failure).
    not_before: Option<Instant>,
    /// The delay after the next failure.
    retry_delay: Duration,
}

impl Debounce {
    /// A debouncer that writes a state once it has lasted `debounce`.
    pub fn new(debounce: Duration) -> Self {
        Self {
            debounce,
            written: None,
            pending: None,
            not_before: None,
            retry_delay: RETRY_FIRST.max(debounce),
        }
    }

    /// Records the state seen at `now`; returns the state to write now, if any.
    pub fn observe(&mut self, now: Instant, activity: Activity) -> Option<Activity> {
        if self.written == Some(activity) {
            self.pending = None;
            return None;
        }
        let since = match self.pending {
            Some((pending, since)) if pending == activity => since,
            _ => {
                self.pending = Some((activity, now));
                now
            }
        };
        let lasted = now.saturating_duration_since(since) >= self.debounce;
        let allowed = self.not_before.is_none_or(|t| now >= t);
        (lasted && allowed).then_some(activity)
    }

    /// The write of `activity` succeeded.
    pub fn written(&mut self, activity: Activity) {
        self.written = Some(activity);
        self.pending = None;
        self.not_before = None;
        self.retry_delay = RETRY_FIRST.max(self.debounce);
    }

    /// The write failed at `now`: the annotation is unknown, and the next try waits.
    pub fn failed(&mut self, now: Instant) {
        self.written = None;
        self.not_before = Some(now + self.retry_delay);
        self.retry_delay = (self.retry_delay * 2).min(RETRY_MAX);
    }
}

/// How often the in-flight count is looked at: often enough that the debounce is kept to
/// within a quarter of itself, never more than four times a second.
fn sample_period(debounce: Duration) -> Duration {
    (debounce / 4).clamp(Duration::from_millis(10), Duration::from_millis(250))
}

/// Keeps the annotation in step with `in_flight` until `shutdown`. Never fails: a missing
/// client config or a refused patch is logged and the work goes on.
pub async fn run(config: DeletionCostConfig, in_flight: Gauge, shutdown: CancellationToken) {
    let client = match client().await {
        Ok(client) => client,
        Err(e) => {
            tracing::warn!(error = %e, "pod-deletion-cost is on, but there is no Kubernetes API to talk to; the annotation stays as it is");
            return;
        }
    };
    let pods: Api<Pod> = Api::namespaced(client, &config.namespace);
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    tracing::info!(pod = %config.pod_name, namespace = %config.namespace,
        debounce_ms = config.debounce.as_millis() as u64, "pod-deletion-cost on");
    let mut debounce = Debounce::new(config.debounce);
    let mut failing = false;
    let mut ticks = tokio::time::interval(sample_period(config.debounce));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let Some(activity) = debounce.observe(Instant::now(), Activity::of(in_flight.get())) else {
            continue;
        };
        let cost = activity.cost();
        let patch = Patch::Merge(serde_json::json!({
            "metadata": { "annotations": { ANNOTATION: cost.to_string() } }
        }));
        let result = tokio::select! {
            () = shutdown.cancelled() => return,
            r = tokio::time::timeout(PATCH_TIMEOUT, pods.patch(&config.pod_name, &params, &patch)) => r,
        };
        match result {
            Ok(Ok(_)) => {
                debounce.written(activity);
                if failing {
                    tracing::info!(cost, state = ?activity, "pod-deletion-cost patched again after failures");
                } else {
                    tracing::info!(cost, state = ?activity, "pod-deletion-cost patched");
                }
                failing = false;
            }
            Ok(Err(e)) => {
                debounce.failed(Instant::now());
                report_failure(&mut failing, &e.to_string());
            }
            Err(_) => {
                debounce.failed(Instant::now());
                report_failure(&mut failing, &format!("no answer within {PATCH_TIMEOUT:?}"));
            }
        }
    }
}

/// A warning for the first failure of a run of them, debug lines for the rest: a missing Role
/// must not fill the log.
fn report_failure(failing: &mut bool, error: &str) {
    if *failing {
        tracing::debug!(error, "pod-deletion-cost patch failed again");
    } else {
        tracing::warn!(error, "pod-deletion-cost patch failed; the work goes on, and the patch is retried with a growing delay (further failures are logged at debug)");
        *failing = true;
    }
}

async fn client() -> Result<kube::Client, kube::Error> {
    let mut config = kube::Config::infer()
        .await
        .map_err(kube::Error::InferConfig)?;
    config.connect_timeout = Some(PATCH_TIMEOUT);
    config.read_timeout = Some(PATCH_TIMEOUT);
    config.write_timeout = Some(PATCH_TIMEOUT);
    kube::Client::try_from(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_state_is_written_only_after_it_lasted_the_debounce() {
        let t0 = Instant::now();
        let mut d = Debounce::new(2000 * MS);
        assert_eq!(d.observe(t0, Activity::Idle), None);
        assert_eq!(d.observe(t0 + 1999 * MS, Activity::Idle), None);
        assert_eq!(
            d.observe(t0 + 2000 * MS, Activity::Idle),
            Some(Activity::Idle)
        );
        d.written(Activity::Idle);
        assert_eq!(d.observe(t0 + 9000 * MS, Activity::Idle), None);
    }

    #[test]
    fn a_break_shorter_than_the_debounce_restarts_it_and_writes_nothing() {
        let t0 = Instant::now();
        let mut d = Debounce::new(2000 * MS);
        d.written(Activity::Busy);
        // Between two jobs: idle for 1.5 s, busy again, idle again.
        assert_eq!(d.observe(t0, Activity::Idle), None);
        assert_eq!(d.observe(t0 + 1500 * MS, Activity::Busy), None);
        assert_eq!(d.observe(t0 + 1600 * MS, Activity::Idle), None);
        assert_eq!(d.observe(t0 + 3500 * MS, Activity::Idle), None);
        assert_eq!(
            d.observe(t0 + 3600 * MS, Activity::Idle),
            Some(Activity::Idle)
        );
    }

    #[test]
    fn steady_load_writes_nothing_after_the_first_write() {
        let t0 = Instant::now();
        let mut d = Debounce::new(2000 * MS);
        let mut writes = 0;
        for i in 0..10_000u32 {
            if let Some(a) = d.observe(t0 + i * 100 * MS, Activity::Busy) {
                d.written(a);
                writes += 1;
            }
        }
        assert_eq!(writes, 1);
    }

    #[test]
    fn after_a_failure_the_retry_waits_and_the_wait_grows() {
        let t0 = Instant::now();
        let mut d = Debounce::new(200 * MS);
        d.observe(t0, Activity::Idle);
        assert_eq!(
            d.observe(t0 + 200 * MS, Activity::Idle),
            Some(Activity::Idle)
        );
        d.failed(t0 + 200 * MS);
        assert_eq!(d.observe(t0 + 1199 * MS, Activity::Idle), None);
        assert_eq!(
            d.observe(t0 + 1200 * MS, Activity::Idle),
            Some(Activity::Idle)
        );
        d.failed(t0 + 1200 * MS);
        assert_eq!(d.observe(t0 + 3199 * MS, Activity::Idle), None);
        assert_eq!(
            d.observe(t0 + 3200 * MS, Activity::Idle),
            Some(Activity::Idle)
        );
        d.written(Activity::Idle);
        assert_eq!(d.observe(t0 + 9000 * MS, Activity::Idle), None);
    }

    #[test]
    fn a_zero_debounce_writes_at_once() {
        let t0 = Instant::now();
        let mut d = Debounce::new(Duration::ZERO);
        assert_eq!(d.observe(t0, Activity::Busy), Some(Activity::Busy));
    }

    #[test]
    fn idle_and_busy_have_their_costs() {
        assert_eq!(Activity::of(0).cost(), IDLE_COST);
        assert_eq!(Activity::of(3).cost(), BUSY_COST);
    }

    fn args(on: bool, name: Option<&str>, namespace: Option<&str>) -> DeletionCostArgs {
        DeletionCostArgs {
            pod_deletion_cost: on,
            pod_name: name.map(str::to_owned),
            pod_namespace: namespace.map(str::to_owned),
            pod_deletion_cost_debounce_ms: 2000,
        }
    }

    #[test]
    fn off_needs_nothing_and_on_needs_the_pod_name_and_namespace() {
        assert!(args(false, None, None).to_config().unwrap().is_none());
        let e = args(true, None, Some("warren")).to_config().unwrap_err();
        assert!(e.to_string().contains("POD_NAME"), "{e}");
        let e = args(true, Some("worker-1"), None).to_config().unwrap_err();
        assert!(e.to_string().contains("POD_NAMESPACE"), "{e}");
        let e = args(true, Some("Worker_1"), Some("warren"))
            .to_config()
            .unwrap_err();
        assert!(e.to_string().contains("not a Kubernetes name"), "{e}");
        let e = args(true, Some("w"), Some("a.b")).to_config().unwrap_err();
        assert!(e.to_string().contains("POD_NAMESPACE"), "{e}");
        let config = args(true, Some("worker-7d9f-abcde"), Some("warren"))
            .to_config()
            .unwrap()
            .unwrap();
        assert_eq!(config.pod_name, "worker-7d9f-abcde");
        assert_eq!(config.namespace, "warren");
        assert_eq!(config.debounce, Duration::from_secs(2));
    }
}
