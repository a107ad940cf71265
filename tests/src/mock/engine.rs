//! What the mock answers, whatever the wire format: a wire module reads its request into a [`Chat`], the
//! engine turns it into an [`Answer`], and the wire module writes the answer in its own shape.
//!
//! The rules, in order:
//! 1. A forced reply (the `x-mock-reply` header, or a fault's `reply`) is the text answer (no tool call,
//!    no structured output).
//! 2. Tool calls: `tool_choice` none → never; a named tool → that one; required / any → the tools the
//!    prompt asks for, else the first tool; auto → the tools the prompt asks for, unless the conversation
//!    ends with tool results. A tool is asked for when its name, or a word of its name (split on `_`,
//!    `-` and camelCase), occurs as a word in the last user text (case-insensitively). Without parallel
//!    calls only the first is made. Arguments: [`schema::arguments`]; a forced tool that is the only tool
//!    is structured output and gets [`schema::structured`].
//! 3. Structured output (`json_schema` → [`schema::structured`] of the last user text; `json_object` →
//!    the same for the schema a message carries after the words `JSON Schema:` (how a gateway asks a
//!    server that takes no schema), else `{"answer": <the text reply>}`).
//! 4. Text: [`reply_to`] the last user text, or [`reply_to_tool`] the tool results that end the
//!    conversation; with images, " I see N image(s)." is appended.

use serde_json::{json, Value};

use shared::crypto::sha256;

use super::schema;
use super::{ApiError, Request};

/// Prefix of every reply text.
pub const REPLY_PREFIX: &str = "mock reply to: ";

/// Prefix of the reply to tool results.
pub const TOOL_REPLY_PREFIX: &str = "mock reply to tool result: ";

/// Bytes of one streamed fragment of structured output or tool arguments.
const FRAGMENT_BYTES: usize = 8;

/// Number of whitespace-separated words in `s`: the mock's token count.
pub fn words(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

/// The reply text the mock gives to a last user message with text `user_text`.
pub fn reply_to(user_text: &str) -> String {
    format!("{REPLY_PREFIX}{user_text}")
}

/// The reply text the mock gives when the conversation ends with tool results: each result quoted,
/// joined with ", ".
pub fn reply_to_tool(results: &[&str]) -> String {
    let quoted: Vec<String> = results.iter().map(|r| format!("\"{r}\"")).collect();
    format!("{TOOL_REPLY_PREFIX}{}", quoted.join(", "))
}

/// A tool the request offers: its name and the JSON Schema of its arguments.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Tool {
    pub name: String,
    pub schema: Value,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) enum ToolChoice {
    /// The model decides (the default when tools are offered).
    #[default]
    Auto,
    /// Never call a tool.
    None,
    /// Call at least one tool (OpenAI `required`, Anthropic `any`).
    Required,
    /// Call this tool.
    Named(String),
}

/// The answer format a request asks for.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) enum Format {
    #[default]
    Text,
    /// JSON, no schema.
    JsonObject,
    /// JSON conforming to this schema.
    JsonSchema(Value),
}

/// A chat request, read by a wire module: everything the engine decides on.
#[derive(Debug, Clone, Default)]
pub(crate) struct Chat {
    /// The model the answer names (Azure: the deployment).
    pub model: String,
    pub stream: bool,
    /// OpenAI `stream_options.include_usage`.
    pub include_usage: bool,
    /// The text of the last user message.
    pub last_user_text: String,
    /// Words of every message (and system prompt) the model reads.
    pub prompt_tokens: u64,
    /// Images in the request that the mock could read (data: and http(s) URLs, base64 and url sources).
    pub images: usize,
    pub tools: Vec<Tool>,
    pub tool_choice: ToolChoice,
    /// Several tool calls allowed in one answer.
    pub parallel: bool,
    /// The texts of the tool results that end the conversation (empty when it does not end with them).
    pub tool_results: Vec<String>,
    pub format: Format,
    /// What tool call ids are derived from (the conversation, not the stream flags).
    pub id_seed: Vec<u8>,
    /// Anthropic `thinking` is on (`enabled` or `adaptive`): the answer opens with a thinking block.
    pub thinking: bool,
}

/// One tool call of an answer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ToolCall {
    /// 24 letters and digits derived from the conversation and the call's index; wire formats prefix it.
    pub id: String,
    pub name: String,
    pub arguments: Value,
}

impl ToolCall {
    /// The arguments as JSON text (OpenAI's `arguments` string, Anthropic's streamed `partial_json`).
    pub fn arguments_json(&self) -> String {
        self.arguments.to_string()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Content {
    /// Text, and the pieces a stream sends it in.
    Text { text: String, pieces: Vec<String> },
    /// Tool calls; `forced` when the request named the tool (OpenAI then finishes with `stop`).
    Tools { calls: Vec<ToolCall>, forced: bool },
}

/// A thinking block: its text and the signature that lets it be sent back.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Thought {
    pub text: String,
    pub signature: String,
}

/// Prefix of the mock's thinking text.
pub const THINKING_PREFIX: &str = "mock thinking about: ";

/// The signature the mock gives a thinking block with `text` (and checks when one is sent back).
pub fn thinking_signature(text: &str) -> String {
    format!("sig_{}", call_id(text.as_bytes(), 0))
}

/// Token counts; `details` is set by `x-mock-cached` / `x-mock-reasoning`.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Usage {
    /// Every prompt token, cached or not.
    pub prompt: u64,
    /// Every completion token, reasoning included.
    pub completion: u64,
    pub details: Option<Details>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Details {
    /// Prompt tokens read from the cache.
    pub cache_read: u64,
    /// Prompt tokens written to the cache (Anthropic's `cache_creation_input_tokens`).
    pub cache_write: u64,
    /// Completion tokens spent on reasoning (OpenAI's `reasoning_tokens`).
    pub reasoning: u64,
}

impl Usage {
    /// Prompt tokens neither read from nor written to the cache (Anthropic's `input_tokens`).
    pub fn uncached_prompt(&self) -> u64 {
        let d = self.details.clone().unwrap_or_default();
        self.prompt.saturating_sub(d.cache_read + d.cache_write)
    }
}

/// The deterministic answer to one request.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub model: String,
    /// The reasoning shown before the answer (Anthropic `thinking` blocks), with its signature.
    pub thinking: Option<Thought>,
    pub content: Content,
    pub usage: Usage,
    pub stream: bool,
    pub include_usage: bool,
}

/// The text of a message `content`: a string, or the `text` of its text parts joined with " ".
pub(crate) fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| match p {
                Value::String(s) => Some(s.as_str()),
                Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("text") => {
                    o.get("text").and_then(Value::as_str)
                }
                _ => None,
            })
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// The answer to `chat`, with the `x-mock-usage`, `x-mock-cached` and `x-mock-reasoning` headers
/// applied; `forced` is the reply text a fault or `x-mock-reply` forces.
pub(crate) fn answer(chat: &Chat, req: &Request, forced: Option<&str>) -> Result<Answer, ApiError> {
    let content = match forced {
        Some(given) => match serde_json::from_str::<Vec<String>>(given) {
            Ok(list) => Content::Text {
                text: list.concat(),
                pieces: list,
            },
            Err(_) => Content::Text {
                text: given.to_string(),
                pieces: pieces(given),
            },
        },
        None => match tool_calls(chat) {
            Some((calls, forced)) => Content::Tools { calls, forced },
            None => text_content(chat),
        },
    };
    let thinking = chat.thinking.then(|| {
        let text = format!("{THINKING_PREFIX}{}", chat.last_user_text);
        Thought {
            signature: thinking_signature(&text),
            text,
        }
    });
    let completion = match &content {
        Content::Text { text, .. } => words(text),
        Content::Tools { calls, .. } => calls.iter().map(|c| 1 + words(&c.arguments_json())).sum(),
    } + thinking.as_ref().map_or(0, |t| words(&t.text));
    let usage = usage(req, chat.prompt_tokens, completion)?;
    Ok(Answer {
        model: chat.model.clone(),
        thinking,
        content,
        usage,
        stream: chat.stream,
        include_usage: chat.include_usage,
    })
}

fn parse_counts(req: &Request, name: &str, min: usize, max: usize) -> Result<Option<Vec<u64>>, ApiError> {
    let Some(value) = req.header(name) else {
        return Ok(None);
    };
    let counts: Option<Vec<u64>> = value.split(',').map(|p| p.trim().parse().ok()).collect();
    match counts {
        Some(c) if (min..=max).contains(&c.len()) => Ok(Some(c)),
        _ => Err(ApiError::bad_request(format!(
            "mock: {name} must be {}, got {value:?}",
            match (name, max) {
                ("x-mock-usage", _) => "\"<prompt>,<completion>\"",
                (_, 1) => "a count",
                _ => "\"<read>\" or \"<read>,<write>\"",
            }
        ))),
    }
}

/// The usage of an answer whose own counts are `prompt` and `completion`, with the usage headers applied.
pub(crate) fn usage(req: &Request, prompt: u64, completion: u64) -> Result<Usage, ApiError> {
    let mut usage = Usage {
        prompt,
        completion,
        details: None,
    };
    if let Some(c) = parse_counts(req, "x-mock-usage", 2, 2)? {
        usage.prompt = c.first().copied().unwrap_or(prompt);
        usage.completion = c.get(1).copied().unwrap_or(completion);
    }
    let cached = parse_counts(req, "x-mock-cached", 1, 2)?;
    let reasoning = parse_counts(req, "x-mock-reasoning", 1, 1)?;
    if cached.is_none() && reasoning.is_none() {
        return Ok(usage);
    }
    let cached = cached.unwrap_or_default();
    let details = Details {
        cache_read: cached.first().copied().unwrap_or(0),
        cache_write: cached.get(1).copied().unwrap_or(0),
        reasoning: reasoning.and_then(|r| r.first().copied()).unwrap_or(0),
    };
    if details.cache_read + details.cache_write > usage.prompt {
        return Err(ApiError::bad_request(format!(
            "mock: x-mock-cached counts {} tokens, more than the {} prompt tokens",
            details.cache_read + details.cache_write,
            usage.prompt
        )));
    }
    if details.reasoning > usage.completion {
        return Err(ApiError::bad_request(format!(
            "mock: x-mock-reasoning {} is more than the {} completion tokens",
            details.reasoning, usage.completion
        )));
    }
    usage.details = Some(details);
    Ok(usage)
}

/// The words a tool name is made of: split on `_` and `-` and at camelCase humps, lower-cased.
fn name_words(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for part in name.split(['_', '-']) {
        let mut word = String::new();
        let mut prev_lower = false;
        for c in part.chars() {
            if c.is_uppercase() && prev_lower && !word.is_empty() {
                out.push(std::mem::take(&mut word));
            }
            prev_lower = c.is_lowercase() || c.is_ascii_digit();
            word.extend(c.to_lowercase());
        }
        if !word.is_empty() {
            out.push(word);
        }
    }
    out
}

/// Where `text` asks for `tool`: the byte offset just past the last occurrence of its name or of a word
/// of its name, if any.
fn asks_for(tool: &Tool, lower_text: &str) -> Option<usize> {
    let whole = schema::last_occurrence(lower_text, &tool.name.to_lowercase());
    let parts = name_words(&tool.name)
        .iter()
        .filter_map(|w| schema::last_occurrence(lower_text, w))
        .max();
    whole.max(parts)
}

/// 24 letters and digits derived from `seed` and `index`.
fn call_id(seed: &[u8], index: usize) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut data = seed.to_vec();
    data.extend_from_slice(&(index as u64).to_le_bytes());
    sha256(&data)
        .iter()
        .take(24)
        .filter_map(|b| ALPHABET.get(usize::from(*b) % ALPHABET.len()))
        .map(|b| char::from(*b))
        .collect()
}

/// The tool calls the answer makes, and whether the tool was forced by name.
fn tool_calls(chat: &Chat) -> Option<(Vec<ToolCall>, bool)> {
    if chat.tools.is_empty() {
        return None;
    }
    let lower = chat.last_user_text.to_lowercase();
    let matched = || -> Vec<(&Tool, Option<usize>)> {
        chat.tools
            .iter()
            .filter_map(|t| asks_for(t, &lower).map(|at| (t, Some(at))))
            .collect()
    };
    let (mut chosen, forced) = match &chat.tool_choice {
        ToolChoice::None => return None,
        ToolChoice::Named(name) => {
            let tool = chat.tools.iter().find(|t| &t.name == name)?;
            (vec![(tool, asks_for(tool, &lower))], true)
        }
        ToolChoice::Required => {
            let m = matched();
            match (m.is_empty(), chat.tools.first()) {
                (true, Some(first)) => (vec![(first, None)], false),
                _ => (m, false),
            }
        }
        ToolChoice::Auto => {
            if !chat.tool_results.is_empty() {
                return None;
            }
            (matched(), false)
        }
    };
    if chosen.is_empty() {
        return None;
    }
    if !chat.parallel {
        chosen.truncate(1);
    }
    let structured = forced && chat.tools.len() == 1;
    let calls = chosen
        .into_iter()
        .enumerate()
        .map(|(i, (tool, at))| ToolCall {
            id: call_id(&chat.id_seed, i),
            name: tool.name.clone(),
            arguments: if structured {
                schema::structured(&tool.schema, &chat.last_user_text)
            } else {
                schema::arguments(&tool.schema, &chat.last_user_text, at)
            },
        })
        .collect();
    Some((calls, forced))
}

/// The text answer: a reply, or structured output.
fn text_content(chat: &Chat) -> Content {
    let mut reply = if chat.tool_results.is_empty() {
        reply_to(&chat.last_user_text)
    } else {
        let results: Vec<&str> = chat.tool_results.iter().map(String::as_str).collect();
        reply_to_tool(&results)
    };
    if chat.images > 0 {
        let s = if chat.images == 1 { "" } else { "s" };
        reply.push_str(&format!(" I see {} image{s}.", chat.images));
    }
    let json = match &chat.format {
        Format::Text => {
            return Content::Text {
                pieces: pieces(&reply),
                text: reply,
            }
        }
        Format::JsonObject => json!({ "answer": reply }),
        Format::JsonSchema(schema) => schema::structured(schema, &chat.last_user_text),
    };
    let text = json.to_string();
    Content::Text {
        pieces: fragments(&text),
        text,
    }
}

/// The reply split into stream pieces: each word followed by a space, the last without.
pub(crate) fn pieces(reply: &str) -> Vec<String> {
    let ws: Vec<&str> = reply.split_whitespace().collect();
    let last = ws.len().saturating_sub(1);
    ws.iter()
        .enumerate()
        .map(|(i, w)| if i < last { format!("{w} ") } else { w.to_string() })
        .collect()
}

/// `text` cut into pieces of about [`FRAGMENT_BYTES`] (at char boundaries) that concatenate back to it
/// exactly: how JSON is streamed.
pub(crate) fn fragments(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for c in text.chars() {
        current.push(c);
        if current.len() >= FRAGMENT_BYTES {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// The media types both providers accept for images.
pub(crate) const IMAGE_TYPES: [&str; 4] = ["image/jpeg", "image/png", "image/gif", "image/webp"];

/// The media type of base64 image `data`, told from its first bytes; `None` when it is not base64 or
/// not a JPEG, PNG, GIF or WebP image.
pub(crate) fn image_kind(data: &str) -> Option<&'static str> {
    let bytes = shared::crypto::base64_decode(data.trim())?;
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if bytes.starts_with(b"RIFF") && bytes.get(8..12) == Some(b"WEBP") {
        Some("image/webp")
    } else {
        None
    }
}

/// A deterministic unit-length embedding of `input` with `dimensions` components.
pub(crate) fn embedding(input: &[u8], dimensions: usize) -> Vec<f32> {
    let mut raw = Vec::with_capacity(dimensions);
    let mut block = 0u64;
    while raw.len() < dimensions {
        let mut data = input.to_vec();
        data.extend_from_slice(&block.to_le_bytes());
        for chunk in sha256(&data).chunks_exact(4) {
            let mut word = [0u8; 4];
            word.copy_from_slice(chunk);
            raw.push(f64::from(u32::from_le_bytes(word)) / f64::from(u32::MAX) * 2.0 - 1.0);
        }
        block += 1;
    }
    raw.truncate(dimensions);
    let norm = raw.iter().map(|x| x * x).sum::<f64>().sqrt();
    raw.iter()
        .map(|x| if norm > 0.0 { (x / norm) as f32 } else { 0.0 })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> Request {
        Request {
            method: "POST".into(),
            target: "/".into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: Vec::new(),
        }
    }

    fn tool(name: &str) -> Tool {
        Tool {
            name: name.into(),
            schema: json!({"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}),
        }
    }

    fn chat(text: &str, tools: &[&str], choice: ToolChoice) -> Chat {
        Chat {
            last_user_text: text.into(),
            tools: tools.iter().map(|t| tool(t)).collect(),
            tool_choice: choice,
            parallel: true,
            ..Chat::default()
        }
    }

    fn called(c: &Chat) -> Vec<String> {
        tool_calls(c)
            .map(|(calls, _)| calls.into_iter().map(|c| c.name).collect())
            .unwrap_or_default()
    }

    #[test]
    fn words_and_pieces() {
        assert_eq!(words("  a b\tc\n"), 3);
        assert_eq!(words(""), 0);
        assert_eq!(
            pieces("mock reply to: hi  there"),
            vec!["mock ", "reply ", "to: ", "hi ", "there"]
        );
        assert_eq!(fragments("{\"a\":\"ééé\"}"), vec!["{\"a\":\"é", "éé\"}"]);
        assert!(fragments("").is_empty());
    }

    #[test]
    fn content_text_joins_parts() {
        let c =
            json!([{"type": "text", "text": "a b"}, {"type": "image_url"}, {"type": "text", "text": "c"}]);
        assert_eq!(content_text(Some(&c)), "a b c");
        assert_eq!(content_text(Some(&json!("x"))), "x");
        assert_eq!(content_text(None), "");
    }

    #[test]
    fn tool_names_split_into_words() {
        assert_eq!(
            name_words("get_current-weather"),
            vec!["get", "current", "weather"]
        );
        assert_eq!(name_words("searchWebPages2"), vec!["search", "web", "pages2"]);
        assert_eq!(name_words("HTTPGet"), vec!["httpget"]);
    }

    #[test]
    fn which_tools_are_called() {
        let tools = ["get_weather", "search_docs", "send_email"];
        let cases: [(&str, ToolChoice, bool, &[&str]); 9] = [
            (
                "What's the WEATHER like?",
                ToolChoice::Auto,
                true,
                &["get_weather"],
            ),
            ("call get_weather", ToolChoice::Auto, true, &["get_weather"]),
            (
                "weather, then email it",
                ToolChoice::Auto,
                true,
                &["get_weather", "send_email"],
            ),
            (
                "weather, then email it",
                ToolChoice::Auto,
                false,
                &["get_weather"],
            ),
            ("weathering the storm", ToolChoice::Auto, true, &[]),
            ("weather please", ToolChoice::None, true, &[]),
            ("hello", ToolChoice::Required, true, &["get_weather"]),
            ("docs please", ToolChoice::Required, true, &["search_docs"]),
            (
                "weather please",
                ToolChoice::Named("send_email".into()),
                true,
                &["send_email"],
            ),
        ];
        for (text, choice, parallel, want) in cases {
            let mut c = chat(text, &tools, choice.clone());
            c.parallel = parallel;
            assert_eq!(called(&c), want, "{text} {choice:?}");
        }
        // After a tool result, auto answers in text; required still calls.
        let mut c = chat("weather?", &tools, ToolChoice::Auto);
        c.tool_results = vec!["sunny".into()];
        assert!(called(&c).is_empty());
        c.tool_choice = ToolChoice::Required;
        assert_eq!(called(&c), ["get_weather"]);
    }

    #[test]
    fn call_ids_are_stable_and_distinct() {
        let a = call_id(b"conversation", 0);
        assert_eq!(a.len(), 24);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(a, call_id(b"conversation", 0));
        assert_ne!(a, call_id(b"conversation", 1));
        assert_ne!(a, call_id(b"other", 0));
    }

    #[test]
    fn text_replies() {
        let mut c = chat("look", &[], ToolChoice::Auto);
        c.images = 2;
        let Content::Text { text, .. } = text_content(&c) else {
            unreachable!()
        };
        assert_eq!(text, "mock reply to: look I see 2 images.");
        c.images = 0;
        c.tool_results = vec!["22C".into(), "rain".into()];
        let Content::Text { text, .. } = text_content(&c) else {
            unreachable!()
        };
        assert_eq!(text, "mock reply to tool result: \"22C\", \"rain\"");
        c.format = Format::JsonObject;
        let Content::Text { text, pieces } = text_content(&c) else {
            unreachable!()
        };
        assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap(),
            json!({"answer": "mock reply to tool result: \"22C\", \"rain\""})
        );
        assert_eq!(pieces.concat(), text);
    }

    #[test]
    fn usage_headers() {
        let ok = |h: &[(&str, &str)]| usage(&request(h), 10, 6).unwrap();
        assert_eq!(ok(&[]).details, None);
        let u = ok(&[("x-mock-cached", "4")]);
        assert_eq!(
            u.details,
            Some(Details {
                cache_read: 4,
                cache_write: 0,
                reasoning: 0
            })
        );
        assert_eq!(u.uncached_prompt(), 6);
        let u = ok(&[
            ("x-mock-usage", "100,50"),
            ("x-mock-cached", "60,30"),
            ("x-mock-reasoning", "20"),
        ]);
        assert_eq!((u.prompt, u.completion, u.uncached_prompt()), (100, 50, 10));
        assert_eq!(
            u.details,
            Some(Details {
                cache_read: 60,
                cache_write: 30,
                reasoning: 20
            })
        );
        let bad = |h: &[(&str, &str)]| usage(&request(h), 10, 6).unwrap_err().status;
        assert_eq!(bad(&[("x-mock-cached", "11")]), 400);
        assert_eq!(bad(&[("x-mock-cached", "5,6")]), 400);
        assert_eq!(bad(&[("x-mock-cached", "x")]), 400);
        assert_eq!(bad(&[("x-mock-cached", "1,2,3")]), 400);
        assert_eq!(bad(&[("x-mock-reasoning", "7")]), 400);
        assert_eq!(bad(&[("x-mock-usage", "1")]), 400);
    }

    #[test]
    fn images_are_told_by_their_bytes() {
        let cases = [
            ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==", Some("image/png")),
            ("/9j/4AAQSkZJRgABAQ==", Some("image/jpeg")),
            ("R0lGODlhAQABAAAAACw=", Some("image/gif")),
            ("UklGRiQAAABXRUJQVlA4IBgAAAAwAQCdASoBAAEAAQAcJaQAA3AA/v3AgAA=", Some("image/webp")),
            ("aGVsbG8gd29ybGQ=", None),
            ("not base64!", None),
            ("", None),
        ];
        for (data, want) in cases {
            assert_eq!(image_kind(data), want, "{data}");
        }
    }

    #[test]
    fn embeddings_are_unit_length_and_stable() {
        for dims in [1, 3, 8, 9, 1536] {
            let v = embedding(b"hello", dims);
            assert_eq!(v.len(), dims);
            let norm: f64 = v.iter().map(|x| f64::from(*x) * f64::from(*x)).sum();
            assert!((norm - 1.0).abs() < 1e-5, "{dims}: {norm}");
        }
        assert_eq!(embedding(b"hello", 8), embedding(b"hello", 8));
        assert_ne!(embedding(b"hello", 8), embedding(b"hellp", 8));
    }
}
