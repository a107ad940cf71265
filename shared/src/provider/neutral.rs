//! The shapes every translation goes through: a chat request, a completion, stream events and an
//! error, in no provider's dialect.
//!
//! A client's request is decoded into these once (today from OpenAI Chat Completions, see
//! [`super::openai::to_neutral`]) and a provider that speaks another dialect renders them
//! ([`super::Translator`]); its answers are decoded into them and rendered in the client's dialect
//! ([`super::openai`]'s writers). So a new provider writes one decoder and one renderer, and a new
//! client dialect (an Anthropic front door) would write the other two, instead of one translator per
//! pair. Only text chat is carried: what these shapes cannot hold (tools, images, `n > 1`) is refused
//! while decoding the request, naming the feature. Requests and stream events borrow their text from
//! the JSON they were decoded from, so a translation copies each text once, into the output.

use crate::usage::Usage;
use serde_json::Number;

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

#[derive(Debug, Clone, PartialEq)]
pub struct Message<'a> {
    /// Position of the message in the client's list, for errors that point at it.
    pub index: usize,
    pub role: Role,
    /// Its text parts, as sent (empty ones included: a renderer decides what its provider accepts).
    pub text: Vec<&'a str>,
}

/// A chat request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request<'a> {
    /// System (and developer) text, in order.
    pub system: Vec<&'a str>,
    pub messages: Vec<Message<'a>>,
    /// The client's limit on generated tokens, if it set one.
    pub max_tokens: Option<u64>,
    pub temperature: Option<&'a Number>,
    pub top_p: Option<&'a Number>,
    pub stop: Vec<&'a str>,
    pub stream: bool,
    /// An end-user id for the provider's abuse tracking.
    pub user: Option<&'a str>,
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// A natural end or a stop sequence.
    Stop,
    /// The token limit.
    Length,
    ToolCalls,
    ContentFilter,
}

/// A whole (non-streamed) answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub id: String,
    pub model: String,
    pub text: String,
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
    /// Generation ended, for this reason when the provider gave one.
    Finish(Option<Finish>),
    /// The provider's own end of the stream, with the usage it reported.
    End(Option<Usage>),
    /// The provider reported an error (or sent an event that cannot be read); the stream ends.
    Error(Error),
}
