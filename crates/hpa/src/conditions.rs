//! The HorizontalPodAutoscaler status conditions that say why a decision was reached.

use std::fmt;

use crate::time::Timestamp;

/// The kind of a condition, as in `status.conditions[].type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ConditionType {
    /// Whether the autoscaler can fetch and update the scale target (and is not held back).
    AbleToScale,
    /// Whether a replica count could be computed from the metrics.
    ScalingActive,
    /// Whether the desired count was clamped by the bounds or the scaling rate.
    ScalingLimited,
    /// Whether the controller itself took the target to zero replicas, and so may take it back
    /// up (HPAScaleToZero; absent while the gate is off).
    ScaledToZero,
}

impl ConditionType {
    /// The API spelling of the type.
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionType::AbleToScale => "AbleToScale",
            ConditionType::ScalingActive => "ScalingActive",
            ConditionType::ScalingLimited => "ScalingLimited",
            ConditionType::ScaledToZero => "ScaledToZero",
        }
    }
}

impl fmt::Display for ConditionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A condition's status, as in Kubernetes' `ConditionStatus`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// It is not known whether the condition holds.
    Unknown,
}

impl ConditionStatus {
    /// The API spelling of the status.
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        }
    }
}

/// One status condition with the controller's reason string and message.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Condition {
    /// Which condition this is.
    #[serde(rename = "type")]
    pub type_: ConditionType,
    /// Whether it holds.
    pub status: ConditionStatus,
    /// The controller's machine-readable reason, e.g. `ScaleDownStabilized`.
    pub reason: String,
    /// The controller's human-readable message.
    pub message: String,
    /// When the status last changed.
    pub last_transition_time: Timestamp,
}

impl Condition {
    /// A condition that starts at `now`.
    pub fn new(
        type_: ConditionType,
        status: ConditionStatus,
        reason: impl Into<String>,
        message: impl Into<String>,
        now: Timestamp,
    ) -> Self {
        Condition {
            type_,
            status,
            reason: reason.into(),
            message: message.into(),
            last_transition_time: now,
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {}: {}",
            self.type_,
            self.status.as_str(),
            self.reason,
            self.message
        )
    }
}

/// Sets a condition in `conditions`, adding it when absent and moving its transition time only
/// when its status changes. Mirrors `setConditionInList` in `horizontal.go`.
pub fn set_condition_in_list(
    conditions: &mut Vec<Condition>,
    type_: ConditionType,
    status: ConditionStatus,
    reason: &str,
    message: &str,
    now: Timestamp,
) {
    let index = match conditions.iter().position(|c| c.type_ == type_) {
        Some(index) => index,
        None => {
            // A fresh condition has no status yet, so it always counts as a transition.
            conditions.push(Condition::new(type_, status, reason, message, now));
            return;
        }
    };
    let existing = &mut conditions[index];
    if existing.status != status {
        existing.last_transition_time = now;
    }
    existing.status = status;
    existing.reason = reason.to_string();
    existing.message = message.to_string();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_condition_keeps_transition_time_when_status_is_unchanged() {
        let mut list = Vec::new();
        let t0 = Timestamp::from_secs(1);
        let t1 = Timestamp::from_secs(2);
        let t2 = Timestamp::from_secs(3);
        set_condition_in_list(
            &mut list,
            ConditionType::AbleToScale,
            ConditionStatus::True,
            "A",
            "a",
            t0,
        );
        set_condition_in_list(
            &mut list,
            ConditionType::AbleToScale,
            ConditionStatus::True,
            "B",
            "b",
            t1,
        );
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].reason, "B");
        assert_eq!(list[0].last_transition_time, t0);
        set_condition_in_list(
            &mut list,
            ConditionType::AbleToScale,
            ConditionStatus::False,
            "C",
            "c",
            t2,
        );
        assert_eq!(list[0].last_transition_time, t2);
    }
}

/// Removes the condition of type `type_`, if present. Mirrors the controller's removal of
/// `ScaledToZero` while HPAScaleToZero is off.
pub fn remove_condition(conditions: &mut Vec<Condition>, type_: ConditionType) {
    conditions.retain(|c| c.type_ != type_);
}

/// A condition a controller step wants set; [`set_condition_in_list`] applies it with a time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionChange {
    /// Which condition.
    pub type_: ConditionType,
    /// Its new status.
    pub status: ConditionStatus,
    /// The controller's reason string.
    pub reason: String,
    /// The controller's message.
    pub message: String,
}

impl ConditionChange {
    /// A change to `type_` with the given status, reason and message.
    pub fn new(
        type_: ConditionType,
        status: ConditionStatus,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ConditionChange {
            type_,
            status,
            reason: reason.into(),
            message: message.into(),
        }
    }

    /// Applies the change to `conditions` at `now`.
    pub fn apply(&self, conditions: &mut Vec<Condition>, now: Timestamp) {
        set_condition_in_list(
            conditions,
            self.type_,
            self.status,
            &self.reason,
            &self.message,
            now,
        );
    }
}
