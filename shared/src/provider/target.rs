//! A model target as configs write it: which provider and model, where it is reached, with which key.
//!
//! One shape for every filter that calls a model: ai-proxy's `targets[]` and the targets of
//! [`crate::llm`] tasks (ai-enrich, and later the router and the guard's judge) wrap the same
//! [`RawTarget`] with fields of their own (`name`, and ai-proxy's `resilience` or a task target's
//! `breaker`), so a target can be copied from one config to the other:
//!
//! ```json
//! { "name": "openai-mini", "provider": "openai", "model": "gpt-4o-mini",
//!   "endpoint": { "cluster": "openai", "host": "api.openai.com:443" },
//!   "auth": { "env": "OPENAI_API_KEY" } }
//! ```
//!
//! The `provider` tag picks the provider's own fields ([`ProviderConfig`]); a field of another provider
//! is refused with its name.

use super::{Api, Provider, ProviderConfig};
use crate::callout::valid_host;
use crate::config::{check_header_value, ConfigError, SecretSource};
use crate::host::{HttpCall, Upstream};
use serde::Deserialize;
use std::borrow::Cow;

/// The fields every target has, and its provider's own (tagged by `provider`). Embed it with
/// `#[serde(flatten)]` beside the embedding config's own fields: fields neither knows go to the
/// provider's variant, which refuses any that are not its own.
#[derive(Debug, Deserialize)]
pub struct RawTarget {
    #[serde(default)]
    model: Option<String>,
    endpoint: RawEndpoint,
    #[serde(default)]
    auth: Option<SecretSource>,
    #[serde(flatten)]
    provider: ProviderConfig,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEndpoint {
    cluster: String,
    host: String,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    embeddings_path: Option<String>,
}

/// A checked target: its provider, where it is reached, and its key.
#[derive(Debug)]
pub struct Target {
    /// Its provider: model, paths, credential headers, translation.
    pub provider: Box<dyn Provider>,
    /// Envoy cluster that reaches the provider.
    pub cluster: String,
    /// `host:port` of the provider: the `:authority` sent (`:443` dropped) and Kong's dispatch target.
    pub host: String,
    /// `endpoint.path`: replaces the provider's path of chat calls (both doors).
    pub path_override: Option<String>,
    /// `endpoint.embeddings_path`: replaces the provider's path of embeddings calls.
    pub embeddings_path: Option<String>,
    pub api_key: Option<String>,
}

/// Target names: 1 to 64 of `A-Z a-z 0-9 . -` (they appear in metric labels and shared-data keys).
pub fn valid_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
}

/// The error for a name [`valid_name`] refuses.
pub const NAME_RULE: &str = "must be 1 to 64 characters of A-Z a-z 0-9 . -";

impl RawTarget {
    /// Checks the target; `at` names one of its fields in errors (`targets[1].endpoint.host`), `env`
    /// reads the VM environment for `auth.env`.
    pub fn compile(
        self,
        at: &dyn Fn(&str) -> String,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Target, ConfigError> {
        if let Some(m) = &self.model {
            check_header_value(at("model"), m)?;
        }
        let provider = self.provider.compile(self.model, at)?;
        if self.endpoint.cluster.trim().is_empty() {
            return Err(ConfigError::new(
                at("endpoint.cluster"),
                "cluster must not be empty",
            ));
        }
        if !valid_host(&self.endpoint.host) {
            return Err(ConfigError::new(
                at("endpoint.host"),
                "must be host:port, e.g. api.openai.com:443",
            ));
        }
        for (field, path) in [
            ("endpoint.path", &self.endpoint.path),
            ("endpoint.embeddings_path", &self.endpoint.embeddings_path),
        ] {
            if path
                .as_ref()
                .is_some_and(|p| !p.bytes().all(|b| b.is_ascii_graphic()))
            {
                return Err(ConfigError::new(
                    at(field),
                    "must be a path of visible ASCII characters (percent-encode the rest)",
                ));
            }
        }
        let path_override = match self.endpoint.path {
            Some(p) if p.starts_with('/') => Some(p),
            Some(_) => return Err(ConfigError::new(at("endpoint.path"), "must start with /")),
            None => None,
        };
        let embeddings_path = match self.endpoint.embeddings_path {
            Some(_) if provider.path(Api::Embeddings, false).is_none() => {
                return Err(ConfigError::new(
                    at("endpoint.embeddings_path"),
                    format!("the `{}` provider serves no embeddings", provider.name()),
                ))
            }
            Some(p) if p.starts_with('/') => Some(p),
            Some(_) => {
                return Err(ConfigError::new(
                    at("endpoint.embeddings_path"),
                    "must start with /",
                ))
            }
            None => None,
        };
        let api_key = match &self.auth {
            Some(s) => Some(s.resolve(&at("auth"), env)?),
            None => None,
        };
        if let Some(key) = &api_key {
            check_header_value(at("auth"), key)?;
        }
        Ok(Target {
            provider,
            cluster: self.endpoint.cluster,
            host: self.endpoint.host,
            path_override,
            embeddings_path,
            api_key,
        })
    }
}

impl Target {
    /// Path (and query) of the upstream request of `api`; `None` when the provider does not serve it
    /// (the request is refused before it gets here).
    pub fn path(&self, api: Api, stream: bool) -> Option<Cow<'_, str>> {
        let own = match api {
            Api::ChatCompletions | Api::Messages => &self.path_override,
            Api::Embeddings => &self.embeddings_path,
            Api::Completions => return None,
        };
        match own {
            Some(p) => self.provider.path(api, stream).map(|_| Cow::Borrowed(p.as_str())),
            None => self.provider.path(api, stream),
        }
    }

    /// The model sent upstream (Azure: the deployment); the key of a `prices` table and a label.
    pub fn model(&self) -> &str {
        self.provider.model()
    }

    /// The headers that carry the target's key and its provider's version.
    pub fn credentials(&self) -> Vec<(&'static str, String)> {
        self.provider.headers(self.api_key.as_deref())
    }

    /// Where a callout to it goes.
    pub fn upstream(&self) -> Upstream {
        Upstream {
            cluster: self.cluster.clone(),
            host: self.host.clone(),
        }
    }

    /// A `POST` of `body` (already in the provider's dialect, for `api`) to it. Without a key of its own
    /// the client's credentials go along; `extra` are headers of the client's request the target takes
    /// too (Anthropic's `anthropic-beta`).
    pub fn call(
        &self,
        body: Vec<u8>,
        api: Api,
        stream: bool,
        client_credentials: &[(String, String)],
        extra: &[(String, String)],
        timeout_ms: u64,
    ) -> HttpCall {
        let mut headers: Vec<(String, String)> = vec![("content-type".into(), "application/json".into())];
        headers.extend(self.credentials().into_iter().map(|(k, v)| (k.to_string(), v)));
        if self.api_key.is_none() {
            headers.extend(client_credentials.iter().cloned());
        }
        headers.extend(extra.iter().cloned());
        HttpCall {
            upstream: self.upstream(),
            method: "POST".into(),
            path: self.path(api, stream).map(Cow::into_owned).unwrap_or_default(),
            headers,
            body,
            timeout_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// A config's own fields beside the shared ones, as ai-proxy and the task targets embed it.
    #[derive(Debug, Deserialize)]
    struct Embedding {
        name: String,
        #[serde(flatten)]
        target: RawTarget,
    }

    fn compile(v: serde_json::Value) -> Result<(String, Target), String> {
        let e: Embedding = serde_json::from_value(v).map_err(|e| e.to_string())?;
        let env = |k: &str| (k == "KEY").then(|| "sk-env".to_string());
        let t = e
            .target
            .compile(&|f| format!("t.{f}"), &env)
            .map_err(|e| e.to_string())?;
        Ok((e.name, t))
    }

    /// A value with CR/LF (or another control character) that would reach a header or the request
    /// line is refused, naming the field and never repeating the value.
    #[test]
    fn values_that_could_split_a_header_are_refused() {
        let base = || {
            json!({"name": "a", "provider": "openai", "model": "m",
                   "endpoint": {"cluster": "c", "host": "h:443", "path": "/v1/chat"}, "auth": {"value": "sk-ok"}})
        };
        let cases: [(&str, serde_json::Value, &str); 9] = [
            ("/model", json!("gpt\r\nx-evil: 1"), "t.model"),
            ("/auth/value", json!("sk-secret\r\nx-evil: 1"), "t.auth"),
            ("/endpoint/host", json!("h\r\nx: y:443"), "t.endpoint.host"),
            ("/endpoint/host", json!("h/x:443"), "t.endpoint.host"),
            ("/endpoint/path", json!("/v1 x"), "t.endpoint.path"),
            ("/endpoint/path", json!("/v1\n"), "t.endpoint.path"),
            ("/model", json!("m\u{7f}"), "t.model"),
            ("/auth/value", json!("k\u{0}"), "t.auth"),
            ("/model", json!("m\u{85}"), "t.model"),
        ];
        for (pointer, value, field) in cases {
            let mut v = base();
            *v.pointer_mut(pointer).unwrap() = value.clone();
            let err = compile(v).unwrap_err();
            assert!(err.starts_with(field), "{pointer}={value}: {err}");
            assert!(!err.contains("secret"), "the value is not repeated: {err}");
        }
        let azure = |d: &str, v: &str| {
            json!({"name": "a", "provider": "azure", "deployment": d, "api_version": v,
                   "endpoint": {"cluster": "c", "host": "h:443"}})
        };
        for (d, v, field) in [
            ("gpt-4o/../x", "2024-10-21", "t.deployment"),
            ("gpt\r\n", "2024-10-21", "t.deployment"),
            ("gpt-4o", "2024&x=1", "t.api_version"),
        ] {
            let err = compile(azure(d, v)).unwrap_err();
            assert!(err.starts_with(field), "{d} {v}: {err}");
        }
        assert!(compile(azure("gpt-4o_mini.2", "2024-05-01-preview")).is_ok());
        let mut v = base();
        v["provider"] = json!("anthropic");
        v["anthropic_version"] = json!("2023-06-01\r\nx: y");
        assert!(compile(v).unwrap_err().starts_with("t.anthropic_version"));
        let mut tab = base();
        tab["model"] = json!("a\tb ünïcode");
        assert!(compile(tab).is_ok(), "tabs and text are fine");
    }

    #[test]
    fn embeds_beside_the_config_own_fields() {
        let (name, t) = compile(json!({"name": "a", "provider": "anthropic", "model": "claude",
            "endpoint": {"cluster": "c", "host": "h:443", "path": "/x"}, "auth": {"env": "KEY"},
            "anthropic_version": "2024-01-01"}))
        .unwrap();
        assert_eq!(name, "a");
        assert_eq!(
            (t.model(), t.path(Api::ChatCompletions, false).as_deref()),
            ("claude", Some("/x"))
        );
        let client = [("authorization".to_string(), "Bearer client".to_string())];
        let call = t.call(b"{}".to_vec(), Api::ChatCompletions, false, &client, &[], 7);
        assert_eq!(call.upstream.cluster, "c");
        assert_eq!(call.timeout_ms, 7);
        assert_eq!(
            call.headers,
            vec![
                ("content-type".to_string(), "application/json".to_string()),
                ("x-api-key".to_string(), "sk-env".to_string()),
                ("anthropic-version".to_string(), "2024-01-01".to_string()),
            ],
            "a target with a key never sends the client's"
        );
        let (_, t) = compile(json!({"name": "b", "provider": "openai_compatible", "model": "m",
            "endpoint": {"cluster": "c", "host": "h:80"}}))
        .unwrap();
        let client = [("authorization".to_string(), "Bearer client".to_string())];
        let call = t.call(Vec::new(), Api::ChatCompletions, false, &client, &[], 1);
        assert!(call
            .headers
            .contains(&("authorization".into(), "Bearer client".into())));
        assert_eq!(call.path, "/v1/chat/completions");
    }

    #[test]
    fn errors_name_the_field() {
        let base = json!({"name": "a", "provider": "openai", "model": "m",
            "endpoint": {"cluster": "c", "host": "h:443"}});
        let cases = [
            ("/endpoint/host", json!("h"), "t.endpoint.host: must be host:port"),
            (
                "/endpoint/cluster",
                json!(" "),
                "t.endpoint.cluster: cluster must not be empty",
            ),
            ("/endpoint/path", json!("x"), "t.endpoint.path: must start with /"),
            (
                "/auth",
                json!({"env": "MISSING"}),
                "t.auth: environment variable MISSING",
            ),
            ("/model", json!(""), "t.model: model must not be empty"),
            ("/deployment", json!("d"), "unknown field `deployment`"),
            ("/bogus", json!(1), "unknown field `bogus`"),
        ];
        for (pointer, value, want) in cases {
            let mut v = base.clone();
            let (parent, key) = pointer.rsplit_once('/').unwrap();
            v.pointer_mut(if parent.is_empty() { "" } else { parent })
                .unwrap()
                .as_object_mut()
                .unwrap()
                .insert(key.to_string(), value);
            let err = compile(v).unwrap_err();
            assert!(err.contains(want), "{pointer}: {err}");
        }
        assert!(valid_name("openai-mini.2") && !valid_name("a b") && !valid_name(""));
        assert!(!valid_name(&"x".repeat(65)));
    }
}
