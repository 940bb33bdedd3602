//! One sync of the HPA, the step `warren autoscale` and the simulator both take: the metric
//! values read (or why one could not be read) and the pool's counts in; the engine's
//! [`ScaleDecision`] and its [`Decision`] record out. The callers only read and act: the
//! simulator from its model and on its clock, `warren autoscale` from the broker or Prometheus
//! and on the engine clock it keeps (`--speed`, a resumed state file).

use warren_hpa::{Autoscaler, MetricObservation, ScaleDecision, ScaleTarget, Timestamp};

use crate::record::Decision;

/// The scale target's counts at a sync.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolCounts {
    /// Workers asked for and not stopping (the Deployment's replicas).
    pub current: u32,
    /// Of those, the ready ones.
    pub ready: u32,
}

/// What one sync decided.
#[derive(Clone, Debug, PartialEq)]
pub struct Synced {
    /// The engine's decision, with each metric's proposal and the conditions.
    pub decision: ScaleDecision,
    /// Its record, as the simulator keeps it and `warren autoscale` logs it.
    pub record: Decision,
}

/// One sync: `readings` holds each of the HPA's metrics in the manifest's order, its value or
/// why it could not be read (then the metric is invalid for this sync, as when the controller's
/// metrics client fails); `now` is the engine's clock, `at_secs` the record's (the run's
/// seconds, which a resumed engine clock is not).
pub fn sync(
    engine: &mut Autoscaler,
    now: Timestamp,
    at_secs: f64,
    pool: PoolCounts,
    readings: &[Result<f64, String>],
) -> Synced {
    let observations: Vec<MetricObservation> = readings
        .iter()
        .map(|reading| match reading {
            Ok(value) => MetricObservation::External(vec![to_milli(*value)]),
            Err(why) => MetricObservation::Unavailable(why.clone()),
        })
        .collect();
    let target = ScaleTarget::workers(
        i32::try_from(pool.current).unwrap_or(i32::MAX),
        i32::try_from(pool.ready).unwrap_or(i32::MAX),
    );
    let decision = engine.evaluate(now, &target, &observations);
    let values = readings.iter().map(|r| r.as_ref().ok().copied()).collect();
    let record = Decision::new(at_secs, pool.current, pool.ready, values, &decision);
    Synced { decision, record }
}

/// A value in the engine's unit, thousandths (the HPA's quantities are whole milli-units).
pub fn to_milli(value: f64) -> i64 {
    (value * 1000.0)
        .round()
        .clamp(i64::MIN as f64, i64::MAX as f64) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    const HPA: &str = "apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: w}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: w}
  minReplicas: 1
  maxReplicas: 10
  metrics:
  - type: External
    external:
      metric: {name: rabbitmq_queue_messages_ready}
      target: {type: AverageValue, averageValue: \"20\"}
";

    fn engine() -> Autoscaler {
        Autoscaler::from_yaml(HPA).expect("the manifest is valid")
    }

    #[test]
    fn a_value_above_target_scales_up_and_the_record_says_so() {
        let mut engine = engine();
        let pool = PoolCounts {
            current: 2,
            ready: 2,
        };
        let synced = sync(
            &mut engine,
            Timestamp::from_secs(15),
            15.0,
            pool,
            &[Ok(60.0)],
        );
        assert!(synced.decision.rescale);
        assert_eq!(synced.decision.desired_replicas, 3);
        let r = &synced.record;
        assert_eq!((r.at_secs, r.current, r.ready, r.desired), (15.0, 2, 2, 3));
        assert!(r.rescale);
        assert_eq!(r.metric_values, vec![Some(60.0)]);
        assert_eq!(r.reasons, synced.decision.reasons());
    }

    #[test]
    fn an_unavailable_metric_keeps_the_count_and_is_recorded_as_none() {
        let mut engine = engine();
        let pool = PoolCounts {
            current: 3,
            ready: 3,
        };
        let synced = sync(
            &mut engine,
            Timestamp::from_secs(15),
            15.0,
            pool,
            &[Err("connection refused".into())],
        );
        assert!(!synced.decision.rescale);
        assert_eq!(synced.record.desired, 3);
        assert_eq!(synced.record.metric_values, vec![None]);
        assert!(
            synced.record.reasons.contains("FailedGetExternalMetric"),
            "{}",
            synced.record.reasons
        );
    }

    #[test]
    fn values_reach_the_engine_to_the_milli_unit() {
        assert_eq!(to_milli(3.428_571_4), 3429);
        assert_eq!(to_milli(-0.0001), 0);
        assert_eq!(to_milli(f64::INFINITY), i64::MAX);
    }
}
