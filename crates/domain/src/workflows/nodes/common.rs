//! Parameters every kind of node accepts: what to do when the node fails.
//!
//! ```json
//! {"on_error": "route", "retry": {"max_attempts": 3, "backoff_ms": 500}}
//! ```
//! - `on_error`: `fail` (the default: the run fails), `continue` (go on with
//!   `default_output`), or `route` (follow the edge labelled `error`, with
//!   `{"error": {code, message}}` as the output).
//! - `retry`: run the node again, up to `max_attempts` in all, waiting `backoff_ms` and then
//!   twice as long each time. Meant for model calls; deterministic nodes fail the same way again.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::Problems;

/// The keys of [`ErrorHandling`], known to every kind.
pub const KEYS: &[&str] = &["on_error", "default_output", "retry"];

/// The label of the edge a failed node routes to.
pub const ERROR_LABEL: &str = "error";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    #[default]
    Fail,
    Continue,
    Route,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    #[serde(default)]
    pub backoff_ms: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ErrorHandling {
    pub on_error: OnError,
    pub default_output: Option<Value>,
    pub retry: Option<Retry>,
}

#[derive(Deserialize)]
struct Raw {
    #[serde(default)]
    on_error: OnError,
    #[serde(default)]
    default_output: Option<Value>,
    #[serde(default)]
    retry: Option<Retry>,
}

impl ErrorHandling {
    /// Reads the error-handling parameters, ignoring every other key.
    pub fn of(params: &Map<String, Value>) -> Result<ErrorHandling, String> {
        let subset: Map<String, Value> = params
            .iter()
            .filter(|(k, _)| KEYS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let raw: Raw = serde_path_to_error::deserialize(Value::Object(subset))
            .map_err(|err| format!("{}: {}", err.path(), err.inner()))?;
        if let Some(retry) = raw.retry
            && (retry.max_attempts == 0 || retry.max_attempts > 10 || retry.backoff_ms > 60_000)
        {
            return Err("retry: max_attempts must be 1 to 10 and backoff_ms at most 60000".into());
        }
        Ok(ErrorHandling {
            on_error: raw.on_error,
            default_output: raw.default_output,
            retry: raw.retry,
        })
    }

    pub(crate) fn check(
        params: &Map<String, Value>,
        problems: &mut Problems,
    ) -> Option<ErrorHandling> {
        match ErrorHandling::of(params) {
            Ok(handling) => Some(handling),
            Err(message) => {
                problems.error("invalid_parameter", Some("parameters.on_error"), message);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn parses_and_checks() {
        let params: Map<String, Value> = serde_json::from_value(json!({"on_error": "route", "retry": {"max_attempts": 3, "backoff_ms": 10}, "model": "x"})).unwrap();
        let handling = ErrorHandling::of(&params).unwrap();
        assert_eq!(handling.on_error, OnError::Route);
        assert_eq!(
            handling.retry,
            Some(Retry {
                max_attempts: 3,
                backoff_ms: 10
            })
        );
        assert_eq!(
            ErrorHandling::of(&Map::new()).unwrap(),
            ErrorHandling::default()
        );
        for bad in [
            json!({"on_error": "explode"}),
            json!({"retry": {"max_attempts": 0}}),
            json!({"retry": {"max_attempts": 2, "sleep": 1}}),
        ] {
            assert!(
                ErrorHandling::of(&serde_json::from_value(bad.clone()).unwrap()).is_err(),
                "{bad}"
            );
        }
    }
}
