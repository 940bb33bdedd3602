//! The simulator's errors that more than one module returns.

/// A policy that cannot be used; the message is one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(pub(crate) String);
