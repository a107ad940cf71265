//! The shapes every translation goes through: a chat request, a completion, stream events and an
//! error, in no provider's dialect.
//!
//! A client's request is decoded into these once by its door's dialect (OpenAI Chat Completions,
//! [`super::openai::decode`]; Anthropic Messages, [`super::anthropic::decode`]) and rendered by the
//! target's ([`super::Translator::request`]); the answer is decoded by the target's dialect and written
//! by the door's. So a new provider writes one decoder and one renderer, not one translator per pair,
//! and both doors share every translation. A request whose door and target speak the same dialect never
//! comes here: it passes as it is.
//!
//! What a dialect has and these shapes do not model is carried by name ([`Request::extra`]), so the
//! renderer refuses it or, when the model allows, drops it and says so ([`Unsupported`]): nothing is
//! dropped silently. Requests and stream events borrow their text from the JSON they were decoded from,
//! so a translation copies each text once, into the output.

use crate::error::ApiError;
use crate::usage::Usage;
use serde_json::{Number, Value};
use std::borrow::Cow;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// Where an image comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Image<'a> {
    /// Inline: `media_type` (`image/png`, …) and the base64 data.
    Base64 { media_type: &'a str, data: &'a str },
    /// An `http(s)` URL the provider fetches.
    Url(&'a str),
}

/// A tool call's arguments as the client sent them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Arguments<'a> {
    /// OpenAI: a JSON text.
    Text(&'a str),
    /// Anthropic: a JSON object.
    Json(&'a Value),
}

impl Arguments<'_> {
    /// The arguments as the JSON object every provider but OpenAI wants (empty text is `{}`);
    /// anything else is a 400 naming where the call is (`at`) and its `id`.
    pub fn object(&self, at: &str, id: &str) -> Result<Value, ApiError> {
        let bad = || {
            invalid_messages(format!(
                "{at}: the arguments of tool call `{id}` are not a JSON object"
            ))
        };
        match self {
            Arguments::Json(v) if v.is_object() => Ok((*v).clone()),
            Arguments::Json(_) => Err(bad()),
            Arguments::Text(t) if t.trim().is_empty() => Ok(Value::Object(Default::default())),
            Arguments::Text(t) => match serde_json::from_str::<Value>(t) {
                Ok(v @ Value::Object(_)) => Ok(v),
                _ => Err(bad()),
            },
        }
    }
}

/// One piece of a message.
#[derive(Debug, Clone, PartialEq)]
pub enum Part<'a> {
    Text {
        text: &'a str,
        /// Anthropic's `cache_control` marker on this block, as sent.
        cache: Option<&'a Value>,
    },
    Image {
        image: Image<'a>,
        cache: Option<&'a Value>,
    },
    /// An assistant's call of a tool.
    ToolCall {
        id: &'a str,
        name: &'a str,
        arguments: Arguments<'a>,
        cache: Option<&'a Value>,
    },
    /// The result of a tool call, returned by the user side: text and images.
    ToolResult {
        id: &'a str,
        content: Vec<Part<'a>>,
        /// The tool failed (Anthropic's `is_error`).
        is_error: bool,
        cache: Option<&'a Value>,
    },
    /// Reasoning shown with an earlier answer, signed by the provider that wrote it.
    Thinking { text: &'a str, signature: &'a str },
    /// Reasoning the provider redacted: opaque data to pass back.
    RedactedThinking { data: &'a str },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message<'a> {
    /// Position of the message in the client's list, for errors that point at it.
    pub index: usize,
    pub role: Role,
    /// Its parts, as sent (empty texts included: a renderer decides what its provider accepts).
    pub parts: Vec<Part<'a>>,
}

/// A system text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct System<'a> {
    pub text: &'a str,
    pub cache: Option<&'a Value>,
}

/// A function the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct Tool<'a> {
    pub name: &'a str,
    pub description: Option<&'a str>,
    /// The JSON Schema of its arguments, if given.
    pub schema: Option<&'a Value>,
    /// Arguments must follow the schema exactly.
    pub strict: Option<bool>,
    pub cache: Option<&'a Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolChoice<'a> {
    Auto,
    /// Call no tool.
    None,
    /// Call at least one tool.
    Required,
    /// Call this one.
    Named(&'a str),
}

/// The shape the answer must take.
#[derive(Debug, Clone, PartialEq)]
pub enum Format<'a> {
    /// Any JSON object.
    JsonObject,
    /// JSON following `schema`.
    JsonSchema {
        name: Option<&'a str>,
        description: Option<&'a str>,
        schema: &'a Value,
        strict: Option<bool>,
    },
}

/// How much the model should reason before answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reasoning<'a> {
    /// An effort level (OpenAI `reasoning_effort`, Anthropic `output_config.effort`): `low`,
    /// `medium`, `high`, … as sent.
    Effort(&'a str),
    /// A token budget (Anthropic `thinking` of type `enabled`).
    Budget(u64),
    /// The model decides (Anthropic `thinking` of type `adaptive`).
    Adaptive,
    /// No reasoning (Anthropic `thinking` disabled, OpenAI effort `none`).
    Off,
}

/// A chat request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Request<'a> {
    /// System (and developer) texts, in order.
    pub system: Vec<System<'a>>,
    pub messages: Vec<Message<'a>>,
    /// The client's limit on generated tokens, if it set one.
    pub max_tokens: Option<u64>,
    pub temperature: Option<&'a Number>,
    pub top_p: Option<&'a Number>,
    /// Sample from the k most likely tokens (Anthropic).
    pub top_k: Option<&'a Number>,
    pub stop: Vec<&'a str>,
    pub stream: bool,
    /// An end-user id for the provider's abuse tracking.
    pub user: Option<&'a str>,
    pub tools: Vec<Tool<'a>>,
    pub tool_choice: Option<ToolChoice<'a>>,
    /// Several tool calls in one answer allowed (`None`: the provider's default, which allows them).
    pub parallel_tool_calls: Option<bool>,
    pub format: Option<Format<'a>>,
    pub reasoning: Option<Reasoning<'a>>,
    /// Priority or standard capacity: `true` for the provider's automatic choice, `false` for standard
    /// only (OpenAI `service_tier` `auto` / `default`, Anthropic `auto` / `standard_only`).
    pub priority_tier: Option<bool>,
    /// A `cache_control` marker for the whole request (Anthropic's top-level one).
    pub cache: Option<&'a Value>,
    /// Parameters of the client's dialect these shapes do not model, by name, with their values:
    /// a renderer that knows one translates it, every other refuses or drops it.
    pub extra: Vec<(Cow<'a, str>, &'a Value)>,
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// A natural end.
    Stop,
    /// One of the request's stop sequences.
    StopSequence,
    /// The token limit (or the context window).
    Length,
    ToolCalls,
    /// The provider refused or filtered the answer.
    ContentFilter,
}

/// Reasoning in an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Thought {
    /// Readable reasoning and the provider's signature over it (empty when it gives none).
    Thinking {
        text: String,
        signature: String,
    },
    Redacted {
        data: String,
    },
}

/// A tool call in an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The arguments as JSON text.
    pub arguments: String,
}

/// A whole (non-streamed) answer.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Completion {
    pub id: String,
    pub model: String,
    pub text: String,
    pub thoughts: Vec<Thought>,
    pub tool_calls: Vec<ToolCall>,
    pub finish: Option<Finish>,
    pub usage: Usage,
}

/// An error as the client will see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub message: String,
    pub kind: String,
    pub code: String,
}

impl Error {
    pub fn new(message: impl Into<String>, kind: impl Into<String>, code: impl Into<String>) -> Error {
        Error {
            message: message.into(),
            kind: kind.into(),
            code: code.into(),
        }
    }
}

/// One step of a streamed answer, borrowing from the provider's event.
#[derive(Debug, Clone, PartialEq)]
pub enum Event<'a> {
    /// The answer begins.
    Start {
        id: &'a str,
        model: &'a str,
    },
    Text(&'a str),
    /// A piece of reasoning text.
    Thinking(&'a str),
    /// The signature of the reasoning streamed so far.
    Signature(&'a str),
    /// A redacted reasoning block.
    RedactedThinking(&'a str),
    /// A tool call begins: `index` counts the answer's tool calls from 0.
    ToolStart {
        index: usize,
        id: &'a str,
        name: &'a str,
    },
    /// A fragment of a tool call's arguments (JSON text; fragments concatenate).
    ToolArguments {
        index: usize,
        json: &'a str,
    },
    /// Generation ended, for this reason when the provider gave one.
    Finish(Option<Finish>),
    /// The provider's own end of the stream, with the usage it reported.
    End(Option<Usage>),
    /// The provider reported an error (or sent an event that cannot be read); the stream ends.
    Error(Error),
}

/// An embeddings request (the OpenAI door's `/v1/embeddings`), for targets of another dialect.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EmbeddingsRequest<'a> {
    /// The texts to embed, in order (one or more).
    pub inputs: Vec<&'a str>,
    /// The size of the vectors asked for (`dimensions`).
    pub dimensions: Option<u64>,
    pub user: Option<&'a str>,
    /// Parameters these shapes do not model, by name (as [`Request::extra`]).
    pub extra: Vec<(Cow<'a, str>, &'a Value)>,
}

/// The vectors of an embeddings answer, one per input, in order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Embeddings {
    pub vectors: Vec<Vec<f64>>,
    /// The tokens read, when the provider reports them.
    pub usage: Option<Usage>,
}

/// The message of the error that ends a stream the provider left unfinished (code `stream_incomplete`).
pub const INCOMPLETE_MESSAGE: &str = "upstream stream ended before completion";

/// What to do with a parameter the target cannot take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnUnsupported {
    /// 400 `unsupported_parameter`, naming it.
    #[default]
    Refuse,
    /// Leave it out and name it in the answer's `x-ai-dropped-params` (the model's
    /// `drop_unsupported_params`).
    Drop,
}

/// The parameters a request had to leave behind, and the policy for them. Only parameters are ever
/// dropped; content the target cannot read (a document, an image in a tool result) is refused.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Unsupported {
    pub policy: OnUnsupported,
    /// Names of the parameters dropped, in the order met, each once.
    pub dropped: Vec<String>,
}

impl Unsupported {
    pub fn new(policy: OnUnsupported) -> Unsupported {
        Unsupported {
            policy,
            dropped: Vec::new(),
        }
    }

    /// The target (named `label`) cannot take parameter `name`: an error, or it is noted as dropped.
    pub fn parameter(&mut self, name: &str, label: &str) -> Result<(), ApiError> {
        match self.policy {
            OnUnsupported::Refuse => Err(ApiError::invalid_request(
                "unsupported_parameter",
                format!(
                    "`{name}` is not supported for {label} targets (the model's `drop_unsupported_params` drops such parameters)"
                ),
            )),
            OnUnsupported::Drop => {
                if !self.dropped.iter().any(|d| d == name) {
                    self.dropped.push(name.to_string());
                }
                Ok(())
            }
        }
    }
}

/// Content the target cannot read: always refused, it would change what the model reads.
pub fn unsupported_content(what: &str, label: &str) -> ApiError {
    ApiError::invalid_request(
        "unsupported_content",
        format!("{what} is not supported for {label} targets"),
    )
}

/// A value that cannot be translated as sent.
pub fn invalid_parameter(name: &str, expected: &str) -> ApiError {
    ApiError::invalid_request("invalid_parameter", format!("`{name}` must be {expected}"))
}

pub fn invalid_messages(message: String) -> ApiError {
    ApiError::invalid_request("invalid_messages", message)
}

/// Reasoning budgets for effort levels, as LiteLLM maps them for Anthropic (`minimal` as `low`:
/// Anthropic's smallest budget is 1024).
pub fn effort_budget(effort: &str) -> Option<u64> {
    Some(match effort {
        "minimal" | "low" => 1024,
        "medium" => 2048,
        "high" => 4096,
        "xhigh" => 8192,
        "max" => 16384,
        _ => return None,
    })
}

/// The effort level for a reasoning budget: the inverse of [`effort_budget`], rounding down.
pub fn budget_effort(budget: u64) -> &'static str {
    match budget {
        0..=2047 => "low",
        2048..=4095 => "medium",
        4096..=8191 => "high",
        8192..=16383 => "xhigh",
        _ => "max",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn efforts_and_budgets_round_trip() {
        for effort in ["low", "medium", "high", "xhigh", "max"] {
            let budget = effort_budget(effort).unwrap();
            assert_eq!(budget_effort(budget), effort);
        }
        assert_eq!(effort_budget("minimal"), Some(1024));
        assert_eq!(effort_budget("none"), None);
        assert_eq!(budget_effort(1500), "low");
        assert_eq!(budget_effort(100_000), "max");
    }

    #[test]
    fn unsupported_parameters_are_refused_or_noted_once() {
        let mut strict = Unsupported::default();
        let e = strict.parameter("seed", "Anthropic").unwrap_err();
        assert_eq!((e.status, e.code), (400, "unsupported_parameter"));
        assert!(
            e.message
                .starts_with("`seed` is not supported for Anthropic targets"),
            "{}",
            e.message
        );
        let mut lax = Unsupported::new(OnUnsupported::Drop);
        for name in ["seed", "logprobs", "seed"] {
            lax.parameter(name, "Anthropic").unwrap();
        }
        assert_eq!(lax.dropped, vec!["seed", "logprobs"]);
    }
}
