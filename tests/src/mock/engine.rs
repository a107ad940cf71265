//! What the mock answers, whatever the wire format: a wire module reads its request into a [`Chat`], the
//! engine turns it into an [`Answer`], and the wire module writes the answer in its own shape.

use serde_json::Value;

use super::{ApiError, Request};

/// Prefix of every reply text.
pub const REPLY_PREFIX: &str = "mock reply to: ";

/// Number of whitespace-separated words in `s`: the mock's token count.
pub fn words(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

/// The reply text the mock gives to a last user message with text `user_text`.
pub fn reply_to(user_text: &str) -> String {
    format!("{REPLY_PREFIX}{user_text}")
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
}

/// The deterministic answer to one request.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub model: String,
    pub reply: String,
    /// Stream pieces given by `x-mock-reply` as a JSON array; otherwise the reply's words.
    pub pieces: Option<Vec<String>>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub stream: bool,
    pub include_usage: bool,
}

impl Answer {
    /// The pieces a stream sends, in order.
    pub fn stream_pieces(&self) -> Vec<String> {
        self.pieces.clone().unwrap_or_else(|| pieces(&self.reply))
    }
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

/// The answer to `chat`, with the `x-mock-reply` and `x-mock-usage` headers applied.
pub(crate) fn answer(chat: &Chat, req: &Request) -> Result<Answer, ApiError> {
    let mut reply = reply_to(&chat.last_user_text);
    let mut given_pieces = None;
    if let Some(given) = req.header("x-mock-reply") {
        match serde_json::from_str::<Vec<String>>(given) {
            Ok(list) => {
                reply = list.concat();
                given_pieces = Some(list);
            }
            Err(_) => reply = given.to_string(),
        }
    }
    let mut prompt_tokens = chat.prompt_tokens;
    let mut completion_tokens = words(&reply);
    if let Some(usage) = req.header("x-mock-usage") {
        let parsed = usage
            .split_once(',')
            .and_then(|(p, c)| Some((p.trim().parse::<u64>().ok()?, c.trim().parse::<u64>().ok()?)));
        let Some((p, c)) = parsed else {
            return Err(ApiError::bad_request(format!(
                "mock: x-mock-usage must be \"<prompt>,<completion>\", got {usage:?}"
            )));
        };
        prompt_tokens = p;
        completion_tokens = c;
    }
    Ok(Answer {
        model: chat.model.clone(),
        reply,
        pieces: given_pieces,
        prompt_tokens,
        completion_tokens,
        stream: chat.stream,
        include_usage: chat.include_usage,
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn words_and_pieces() {
        assert_eq!(words("  a b\tc\n"), 3);
        assert_eq!(words(""), 0);
        assert_eq!(
            pieces("mock reply to: hi  there"),
            vec!["mock ", "reply ", "to: ", "hi ", "there"]
        );
    }

    #[test]
    fn content_text_joins_parts() {
        let c =
            json!([{"type": "text", "text": "a b"}, {"type": "image_url"}, {"type": "text", "text": "c"}]);
        assert_eq!(content_text(Some(&c)), "a b c");
        assert_eq!(content_text(Some(&json!("x"))), "x");
        assert_eq!(content_text(None), "");
    }
}
