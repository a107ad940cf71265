//! Config helpers shared by every filter: an error that names the field, and the two-stage pattern.
//!
//! Each filter deserialises plain serde types (`deny_unknown_fields`), then compiles them into checked
//! types; every failure becomes a [`ConfigError`] whose `field` is a JSON path such as
//! `targets[1].endpoint.host`, so `on_configure` can refuse to load with a line that says what to fix.

use std::fmt;

pub mod read;
pub mod tagged;

/// Whether `s` can be sent as a header value: no control characters (CR and LF would end the header
/// and start another), DEL included; tabs and non-ASCII text are fine.
pub fn header_safe(s: &str) -> bool {
    !s.chars().any(|c| (c.is_control() && c != '\t') || c == '\u{7f}')
}

/// Refuses a config value that goes into a header (or the request line) but could split it; the
/// message never repeats the value (it may be a key).
pub fn check_header_value(field: impl Into<String>, s: &str) -> Result<(), ConfigError> {
    if header_safe(s) {
        Ok(())
    } else {
        Err(ConfigError::new(
            field,
            "must not contain control characters (CR, LF, …): it is sent in a header",
        ))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// JSON path of the offending field; empty for the document as a whole.
    pub field: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// Parses the raw JSON config into `T`, turning serde's error into a [`ConfigError`]: a syntax error
/// says its line and column, a key given twice in one object its name, and a field serde refuses is
/// named by its path (`targets[1].endpoint.host`, [`read`]).
pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ConfigError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ConfigError::new(
            "",
            "configuration is empty; expected a JSON object",
        ));
    }
    let invalid = |e: &dyn fmt::Display| format!("invalid configuration: {e}");
    let tree = read::tree(bytes).map_err(|e| ConfigError::new("", invalid(&e)))?;
    read::from_value(&tree, "").map_err(|e| match e.field.is_empty() {
        true => ConfigError::new("", invalid(&e.message)),
        false => e,
    })
}

/// `mode` of a policy or check: enforce it, or only detect, log and count (shadow) without changing
/// traffic. One type for every filter, so configs and metric labels read the same everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Enforce,
    Shadow,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Shadow => "shadow",
        }
    }
}

/// `failure_mode` of anything a policy depends on (an external service, the shared store): refuse the
/// request (`deny`, the default: fail closed) or let it through without that check (`allow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    #[default]
    Deny,
    Allow,
}

impl FailureMode {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureMode::Deny => "deny",
            FailureMode::Allow => "allow",
        }
    }
}

/// A length of time in config, kept in milliseconds. Reads a plain integer of milliseconds (what the
/// `*_ms` fields have always taken) or a string with a unit: `"250ms"`, `"5s"`. Whole numbers only;
/// the field that holds it checks its own range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Duration(u64);

impl Duration {
    pub const fn from_ms(ms: u64) -> Duration {
        Duration(ms)
    }

    pub const fn as_ms(self) -> u64 {
        self.0
    }

    /// `"250ms"`, `"5s"` or plain digits (milliseconds); `None` for anything else or an overflow.
    pub fn parse(s: &str) -> Option<Duration> {
        let s = s.trim();
        let (digits, scale) = match s.strip_suffix("ms") {
            Some(d) => (d, 1),
            None => match s.strip_suffix('s') {
                Some(d) => (d, 1000),
                None => (s, 1),
            },
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse::<u64>().ok()?.checked_mul(scale).map(Duration)
    }
}

impl<'de> serde::Deserialize<'de> for Duration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("milliseconds as an integer, or a string such as \"250ms\" or \"5s\"")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Duration, E> {
                Ok(Duration(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Duration, E> {
                u64::try_from(v)
                    .map(Duration)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Duration, E> {
                Duration::parse(v).ok_or_else(|| E::invalid_value(serde::de::Unexpected::Str(v), &self))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// USD per million tokens: one entry of a `prices` table (ai-proxy's cost metric, the rate limit's cost
/// limits), keyed by the upstream model. Cached prompt tokens cost `cache_read_per_million` and tokens
/// written to the cache `cache_write_per_million`, each the prompt price when unset (no discount is
/// assumed, so a budget is never undercounted).
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub prompt_per_million: f64,
    pub completion_per_million: f64,
    #[serde(default)]
    pub cache_read_per_million: Option<f64>,
    #[serde(default)]
    pub cache_write_per_million: Option<f64>,
}

impl Price {
    /// One price for all prompt tokens.
    pub const fn flat(prompt_per_million: f64, completion_per_million: f64) -> Price {
        Price {
            prompt_per_million,
            completion_per_million,
            cache_read_per_million: None,
            cache_write_per_million: None,
        }
    }

    pub fn rates(&self) -> crate::usage::Rates {
        crate::usage::Rates {
            prompt: self.prompt_per_million,
            completion: self.completion_per_million,
            cache_read: self.cache_read_per_million.unwrap_or(self.prompt_per_million),
            cache_write: self.cache_write_per_million.unwrap_or(self.prompt_per_million),
        }
    }

    /// What `u` costs, in micro-dollars.
    pub fn cost_micro_usd(&self, u: crate::usage::Usage) -> u64 {
        crate::usage::cost(u, self.rates())
    }
}

/// Checks a `prices` table: every price a finite number >= 0, else an error naming
/// `prices.<model>.<field>`.
pub fn check_prices<'a>(
    prices: impl IntoIterator<Item = (&'a String, &'a Price)>,
) -> Result<(), ConfigError> {
    for (model, p) in prices {
        for (v, f) in [
            (Some(p.prompt_per_million), "prompt_per_million"),
            (Some(p.completion_per_million), "completion_per_million"),
            (p.cache_read_per_million, "cache_read_per_million"),
            (p.cache_write_per_million, "cache_write_per_million"),
        ] {
            if v.is_some_and(|v| !(v.is_finite() && v >= 0.0)) {
                return Err(ConfigError::new(
                    format!("prices.{model}.{f}"),
                    "must be a number >= 0",
                ));
            }
        }
    }
    Ok(())
}

/// Where a secret comes from: the VM environment (Envoy `vm_config.environment_variables`) or the
/// config itself (Kong, where a vault reference may fill it).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum SecretSource {
    Env(String),
    Value(String),
}

impl SecretSource {
    /// Resolves the secret; `field` names the config field for the error.
    pub fn resolve(&self, field: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, ConfigError> {
        match self {
            SecretSource::Value(v) if v.is_empty() => Err(ConfigError::new(field, "value is empty")),
            SecretSource::Value(v) => Ok(v.clone()),
            SecretSource::Env(name) => match env(name) {
                Some(v) if !v.is_empty() => Ok(v),
                _ => Err(ConfigError::new(
                    field,
                    format!("environment variable {name} is not set in the VM environment"),
                )),
            },
        }
    }
}

/// Checks a filter's config fixtures against its parser: every file in `<dir>/valid` must parse and every
/// file in `<dir>/invalid` must be refused. The same files are checked against the filter's Kong schema
/// (`<name>.meta.json`) by `tests/check_meta.py`, so the two stay in step. Returns how many were checked,
/// or the first disagreement. For native tests (it reads files).
pub fn check_fixtures(
    dir: &std::path::Path,
    parse: impl Fn(&[u8]) -> Result<(), ConfigError>,
) -> Result<usize, String> {
    let mut seen = 0;
    for (sub, want_ok) in [("valid", true), ("invalid", false)] {
        let entries =
            std::fs::read_dir(dir.join(sub)).map_err(|e| format!("{}/{sub}: {e}", dir.display()))?;
        for entry in entries {
            let path = entry.map_err(|e| e.to_string())?.path();
            let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let result = parse(&bytes);
            if result.is_ok() != want_ok {
                return Err(format!(
                    "{}: expected {}, got {result:?}",
                    path.display(),
                    if want_ok { "ok" } else { "an error" }
                ));
            }
            seen += 1;
        }
    }
    Ok(seen)
}

#[cfg(test)]
mod tests {
    use super::*;
    // On wasm32 every unit test runs under wasm-bindgen-test (Node) too: `make wasm-test`.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn secret_sources() {
        let env = |k: &str| (k == "K").then(|| "v".to_string());
        let s: SecretSource = serde_json::from_str(r#"{"env":"K"}"#).unwrap();
        assert_eq!(s.resolve("a", &env).unwrap(), "v");
        let s: SecretSource = serde_json::from_str(r#"{"env":"MISSING"}"#).unwrap();
        assert_eq!(s.resolve("auth", &env).unwrap_err().field, "auth");
        assert!(serde_json::from_str::<SecretSource>(r#"{"env":"K","value":"x"}"#).is_err());
        assert!(serde_json::from_str::<SecretSource>(r#"{"other":"x"}"#).is_err());
    }

    #[test]
    fn prices() {
        let table: std::collections::BTreeMap<String, Price> =
            serde_json::from_str(r#"{"a": {"prompt_per_million": 1, "completion_per_million": 0}}"#).unwrap();
        assert!(check_prices(&table).is_ok());
        let u = crate::usage::Usage {
            cached_tokens: 2,
            ..crate::usage::Usage::new(3, 9)
        };
        assert_eq!(
            table["a"].cost_micro_usd(u),
            3,
            "cached tokens at the prompt price"
        );
        let cached: Price = serde_json::from_str(
            r#"{"prompt_per_million": 1, "completion_per_million": 0, "cache_read_per_million": 0.5,
                "cache_write_per_million": 2}"#,
        )
        .unwrap();
        let u = crate::usage::Usage {
            cached_tokens: 4,
            cache_write_tokens: 2,
            ..crate::usage::Usage::new(10, 0)
        };
        assert_eq!(cached.cost_micro_usd(u), 4 + 2 + 4);
        for (field, bad) in [
            ("completion_per_million", -1.0),
            ("completion_per_million", f64::NAN),
            ("cache_read_per_million", f64::INFINITY),
            ("cache_write_per_million", -0.5),
        ] {
            let mut t = table.clone();
            let mut p = Price::flat(0.0, 0.0);
            match field {
                "completion_per_million" => p.completion_per_million = bad,
                "cache_read_per_million" => p.cache_read_per_million = Some(bad),
                _ => p.cache_write_per_million = Some(bad),
            }
            t.insert("b".into(), p);
            assert_eq!(check_prices(&t).unwrap_err().field, format!("prices.b.{field}"));
        }
        assert!(serde_json::from_str::<Price>(r#"{"prompt_per_million": 1}"#).is_err());
        assert!(serde_json::from_str::<Price>(
            r#"{"prompt_per_million": 1, "completion_per_million": 1, "x": 1}"#
        )
        .is_err());
    }

    #[test]
    fn durations() {
        let cases: &[(&str, Option<u64>)] = &[
            ("250", Some(250)),
            ("0", Some(0)),
            ("\"250ms\"", Some(250)),
            ("\"5s\"", Some(5000)),
            ("\" 7s \"", Some(7000)),
            ("\"0s\"", Some(0)),
            ("\"1500\"", Some(1500)),
            ("\"1.5s\"", None),
            ("\"5m\"", None),
            ("\"s\"", None),
            ("\"-5s\"", None),
            ("\"\"", None),
            ("\"99999999999999999999s\"", None),
            ("-1", None),
            ("1.5", None),
            ("true", None),
        ];
        for (json, want) in cases {
            let got = serde_json::from_str::<Duration>(json).ok().map(Duration::as_ms);
            assert_eq!(got, *want, "{json}");
        }
    }
}
