//! What a chat request asks for beyond its text: images, tools, structured output. The walker
//! ([`super::walk`]) reads the texts; this reads the parts a model sees that are not text, and the
//! request-level features, for policies that decide by them (ai-router's conditions).
//!
//! | feature | OpenAI Chat Completions | Anthropic Messages |
//! |---|---|---|
//! | `images` | a content part of type `image_url` or `input_image` | an `image` block, also inside a `tool_result` |
//! | `tools` | a non-empty `tools` or `functions` | a non-empty `tools` |
//! | `response_format` | `response_format` of a type other than `text` | `output_config.format` (or the older top-level `output_format`) |
//!
//! A request of no known API (`None`) is read as either shape.

use super::path::Api;
use serde_json::Value;

/// The non-text features of one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Features {
    pub images: bool,
    pub tools: bool,
    pub response_format: bool,
}

fn non_empty_array(v: Option<&Value>) -> bool {
    v.and_then(Value::as_array).is_some_and(|a| !a.is_empty())
}

fn part_type(part: &Value) -> Option<&str> {
    part.get("type").and_then(Value::as_str)
}

/// Whether a content value (a string or parts/blocks) holds an image, looking one level into
/// Anthropic's `tool_result` blocks.
fn content_has_image(content: Option<&Value>) -> bool {
    let Some(Value::Array(parts)) = content else {
        return false;
    };
    parts.iter().any(|p| match part_type(p) {
        Some("image_url" | "input_image" | "image") => true,
        Some("tool_result") => content_has_image(p.get("content")),
        _ => false,
    })
}

/// The features of `body` (a chat request of `api`).
pub fn features(api: Option<Api>, body: &Value) -> Features {
    let openai = matches!(api, None | Some(Api::ChatCompletions));
    let anthropic = matches!(api, None | Some(Api::Messages));
    let images = body
        .get("messages")
        .and_then(Value::as_array)
        .is_some_and(|ms| ms.iter().any(|m| content_has_image(m.get("content"))));
    let tools = non_empty_array(body.get("tools")) || (openai && non_empty_array(body.get("functions")));
    let openai_format = openai
        && body
            .get("response_format")
            .is_some_and(|f| !f.is_null() && part_type(f) != Some("text"));
    let anthropic_format = anthropic
        && (body
            .get("output_config")
            .and_then(|c| c.get("format"))
            .is_some_and(|f| !f.is_null())
            || body.get("output_format").is_some_and(|f| !f.is_null()));
    Features {
        images: images && (openai || anthropic),
        tools,
        response_format: openai_format || anthropic_format,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn each_feature_in_each_shape() {
        let f = |images, tools, response_format| Features {
            images,
            tools,
            response_format,
        };
        let chat = Some(Api::ChatCompletions);
        let messages = Some(Api::Messages);
        let cases = [
            (
                chat,
                json!({"messages": [{"role": "user", "content": "hi"}]}),
                f(false, false, false),
            ),
            (
                chat,
                json!({"messages": [{"role": "user", "content": [{"type": "text", "text": "what is this"},
                       {"type": "image_url", "image_url": {"url": "https://x/cat.png"}}]}]}),
                f(true, false, false),
            ),
            (
                chat,
                json!({"messages": [], "tools": [{"type": "function", "function": {"name": "f"}}]}),
                f(false, true, false),
            ),
            (chat, json!({"messages": [], "tools": []}), f(false, false, false)),
            (
                chat,
                json!({"messages": [], "functions": [{"name": "f"}]}),
                f(false, true, false),
            ),
            (
                chat,
                json!({"messages": [], "response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}),
                f(false, false, true),
            ),
            (
                chat,
                json!({"messages": [], "response_format": {"type": "text"}}),
                f(false, false, false),
            ),
            (
                chat,
                json!({"messages": [], "response_format": null}),
                f(false, false, false),
            ),
            (
                messages,
                json!({"messages": [{"role": "user", "content": [{"type": "image", "source":
                       {"type": "base64", "media_type": "image/png", "data": "AAAA"}}]}]}),
                f(true, false, false),
            ),
            (
                messages,
                json!({"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t",
                       "content": [{"type": "image", "source": {"type": "url", "url": "https://x"}}]}]}]}),
                f(true, false, false),
            ),
            (
                messages,
                json!({"messages": [], "tools": [{"name": "t", "input_schema": {"type": "object"}}]}),
                f(false, true, false),
            ),
            (
                messages,
                json!({"messages": [], "output_config": {"format": {"type": "json_schema", "schema": {}}}}),
                f(false, false, true),
            ),
            // Another API's fields mean nothing to a request of this one.
            (
                messages,
                json!({"messages": [], "functions": [{"name": "f"}]}),
                f(false, false, false),
            ),
            (
                messages,
                json!({"messages": [], "response_format": {"type": "json_object"}}),
                f(false, false, false),
            ),
            (
                chat,
                json!({"messages": [], "output_config": {"format": {}}}),
                f(false, false, false),
            ),
            (
                None,
                json!({"messages": [], "output_config": {"format": {}}}),
                f(false, false, true),
            ),
            (
                chat,
                json!({"messages": "not a list", "tools": {"a": 1}}),
                f(false, false, false),
            ),
        ];
        for (api, body, want) in cases {
            assert_eq!(features(api, &body), want, "{api:?} {body}");
        }
    }
}
