//! Strict YAML reading: an unknown field is an error that names its path and, when a known field
//! is close, says which one was meant.
//!
//! One function, [`from_yaml`], so that a shared strict reader can replace it in one place.

use serde::de::DeserializeOwned;

/// A document that does not match its schema; the message is one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StrictError(String);

/// Parses `text` into `T`, whose structs deny unknown fields. The error names the field's path
/// (`workers.startup_secs`), what is wrong, and a "did you mean" for a misspelt field.
pub fn from_yaml<T: DeserializeOwned>(text: &str) -> Result<T, StrictError> {
    let deserializer = serde_yaml::Deserializer::from_str(text);
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        let message = one_line(&e.into_inner().to_string());
        // The YAML parser may name the enclosing path itself; keep one, the fuller.
        let message = match message.split_once(": ") {
            Some((head, tail)) if path.starts_with(head) => tail.to_owned(),
            _ => message,
        };
        let hint = did_you_mean(&message)
            .map(|known| format!(" (did you mean `{known}`?)"))
            .unwrap_or_default();
        if path == "." || path.is_empty() {
            StrictError(format!("{message}{hint}"))
        } else {
            StrictError(format!("{path}: {message}{hint}"))
        }
    })
}

/// For serde's "unknown field `x`, expected one of `a`, `b`", the known field closest to `x`.
fn did_you_mean(message: &str) -> Option<String> {
    let rest = message
        .strip_prefix("unknown field `")
        .or_else(|| message.strip_prefix("unknown variant `"))?;
    let mut names = rest.split('`').step_by(2);
    let unknown = names.next()?;
    names
        .filter(|n| !n.is_empty() && !n.contains(' '))
        .map(|n| (strsim::jaro_winkler(unknown, n), n))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, n)| n.to_owned())
}

fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        #[allow(dead_code)]
        inner: Inner,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        #[allow(dead_code)]
        startup_secs: f64,
        #[allow(dead_code)]
        prefetch: u32,
    }

    #[test]
    fn strict_unknown_field_names_its_path_and_the_field_meant() {
        let err = from_yaml::<Outer>("inner:\n  startup_secs: 1\n  prefech: 2\n")
            .expect_err("unknown field")
            .to_string();
        assert!(
            err.starts_with("inner.prefech: unknown field `prefech`"),
            "{err}"
        );
        assert!(err.contains("did you mean `prefetch`?"), "{err}");
        assert_eq!(err.lines().count(), 1);
    }

    #[test]
    fn strict_wrong_type_names_its_path() {
        let err = from_yaml::<Outer>("inner:\n  startup_secs: soon\n  prefetch: 2\n")
            .expect_err("not a number")
            .to_string();
        assert!(err.starts_with("inner.startup_secs: "), "{err}");
        assert!(!err.contains("did you mean"), "{err}");
    }
}
