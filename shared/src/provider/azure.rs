//! Azure OpenAI: OpenAI's dialect, addressed by deployment, with the key in `api-key`.

use super::neutral::{self, Unsupported};
use super::openai::{self, Flavor};
use super::{Api, Dialect, Expect, Provider, Rendered, StreamDecoder, Translator};
use crate::config::ConfigError;
use crate::error::ApiError;
use std::borrow::Cow;

/// `api-version` sent when the target sets none.
pub const DEFAULT_API_VERSION: &str = "2024-10-21";

/// The provider's own fields. `deployment` is required; it is optional here so that its absence is
/// reported with the target's field path.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    deployment: Option<String>,
    #[serde(default)]
    api_version: Option<String>,
}

impl Config {
    /// `model` is optional for Azure (the deployment names the model) and ignored when set.
    pub fn compile(self, model: Option<String>, at: &dyn Fn(&str) -> String) -> Result<Azure, ConfigError> {
        let deployment = match self.deployment {
            Some(d) if !d.trim().is_empty() => d,
            Some(_) => return Err(ConfigError::new(at("deployment"), "deployment must not be empty")),
            None => return Err(ConfigError::new(at("deployment"), "deployment is required")),
        };
        // Both go into the path: one segment and one query value, nothing that could end or split it.
        let plain = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        };
        if !plain(&deployment) {
            return Err(ConfigError::new(
                at("deployment"),
                "must be a deployment name (A-Z a-z 0-9 - _ .)",
            ));
        }
        let version = self.api_version.unwrap_or_else(|| DEFAULT_API_VERSION.into());
        if version.trim().is_empty() {
            return Err(ConfigError::new(at("api_version"), "must not be empty"));
        }
        if !plain(&version) {
            return Err(ConfigError::new(
                at("api_version"),
                "must be a version such as 2024-10-21 (A-Z a-z 0-9 - _ .)",
            ));
        }
        if model.is_some_and(|m| m.trim().is_empty()) {
            return Err(ConfigError::new(at("model"), "model must not be empty"));
        }
        Ok(Azure {
            path: format!("/openai/deployments/{deployment}/chat/completions?api-version={version}"),
            embeddings_path: format!("/openai/deployments/{deployment}/embeddings?api-version={version}"),
            deployment,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Azure {
    deployment: String,
    path: String,
    embeddings_path: String,
}

impl Provider for Azure {
    fn name(&self) -> &'static str {
        "azure"
    }
    /// The deployment: what Azure bills, and the key of `prices`.
    fn model(&self) -> &str {
        &self.deployment
    }
    fn path(&self, api: Api, _stream: bool) -> Option<Cow<'_, str>> {
        Some(Cow::Borrowed(match api {
            Api::ChatCompletions | Api::Messages => &self.path,
            Api::Embeddings => &self.embeddings_path,
            Api::Completions => return None,
        }))
    }
    fn headers(&self, key: Option<&str>) -> Vec<(&'static str, String)> {
        key.map(|k| ("api-key", k.to_string())).into_iter().collect()
    }
    fn speaks(&self) -> Option<Dialect> {
        Some(Dialect::OpenAi)
    }
    fn translator(&self) -> &dyn Translator {
        self
    }
}

impl Translator for Azure {
    fn label(&self) -> &'static str {
        "Azure OpenAI"
    }
    fn request(
        &self,
        req: &neutral::Request<'_>,
        unsupported: &mut Unsupported,
    ) -> Result<Rendered, ApiError> {
        Ok(Rendered {
            body: openai::render(req, &self.deployment, Flavor::Azure, self.label(), unsupported)?,
            expect: Expect::default(),
        })
    }
    fn response(&self, body: &[u8], _expect: Expect) -> Result<neutral::Completion, ApiError> {
        openai::response(body)
    }
    fn error(&self, status: u16, body: &[u8]) -> neutral::Error {
        openai::error(status, body)
    }
    fn stream(&self, _expect: Expect) -> Box<dyn StreamDecoder> {
        Box::new(openai::Decoder::default())
    }
}
