//! A [`neutral::Request`] written as an OpenAI Chat Completions body, for an OpenAI-dialect target
//! behind Anthropic's door.
//!
//! Tool results become `tool` messages, each placed before the rest of its user turn; images become
//! `image_url` parts with a `data:` URL or the image's URL; tool definitions become `function` tools;
//! the answer is asked for with its usage chunk when streamed (Anthropic streams always report usage).
//! Not sent, by design and as documented: `cache_control` markers (OpenAI caches prompt prefixes by
//! itself) and the reasoning of earlier answers (OpenAI models take none back). What OpenAI has no
//! field for goes through [`Unsupported`].

use serde_json::{json, Map, Value};

use super::Flavor;
use crate::error::ApiError;
use crate::provider::neutral::{
    self, budget_effort, invalid_messages, unsupported_content, Arguments, Format, Image, Part, Reasoning,
    Role, ToolChoice, Unsupported,
};

fn image_url(image: &Image<'_>) -> String {
    match image {
        Image::Base64 { media_type, data } => format!("data:{media_type};base64,{data}"),
        Image::Url(url) => (*url).to_string(),
    }
}

/// A user turn's content: a string for one text, else content parts.
fn user_content(parts: &[&Part<'_>]) -> Value {
    if let [Part::Text { text, .. }] = parts {
        return Value::from(*text);
    }
    Value::Array(
        parts
            .iter()
            .filter_map(|p| match p {
                Part::Text { text, .. } => Some(json!({"type": "text", "text": text})),
                Part::Image { image, .. } => {
                    Some(json!({"type": "image_url", "image_url": {"url": image_url(image)}}))
                }
                _ => None,
            })
            .collect(),
    )
}

fn arguments(a: &Arguments<'_>) -> String {
    match a {
        Arguments::Text(t) => (*t).to_string(),
        Arguments::Json(v) => v.to_string(),
    }
}

fn messages(
    req: &neutral::Request<'_>,
    label: &str,
    unsupported: &mut Unsupported,
) -> Result<Vec<Value>, ApiError> {
    let mut out: Vec<Value> = req
        .system
        .iter()
        .map(|s| json!({"role": "system", "content": s.text}))
        .collect();
    for m in &req.messages {
        let at = format!("messages[{}]", m.index);
        match m.role {
            Role::User => {
                let mut rest: Vec<&Part<'_>> = Vec::new();
                for (j, p) in m.parts.iter().enumerate() {
                    match p {
                        Part::ToolResult {
                            id,
                            content,
                            is_error,
                            ..
                        } => {
                            if *is_error {
                                unsupported.parameter(&format!("{at}.content[{j}].is_error"), label)?;
                            }
                            let mut text = String::new();
                            for part in content {
                                match part {
                                    Part::Text { text: t, .. } => text.push_str(t),
                                    _ => {
                                        return Err(unsupported_content(
                                            &format!("{at}.content[{j}]: an image in a tool result"),
                                            label,
                                        ))
                                    }
                                }
                            }
                            out.push(json!({"role": "tool", "tool_call_id": id, "content": text}));
                        }
                        Part::Text { .. } | Part::Image { .. } => rest.push(p),
                        Part::ToolCall { .. } | Part::Thinking { .. } | Part::RedactedThinking { .. } => {
                            return Err(invalid_messages(format!(
                                "{at}.content[{j}]: this block belongs in an assistant turn"
                            )))
                        }
                    }
                }
                if !rest.is_empty() {
                    out.push(json!({"role": "user", "content": user_content(&rest)}));
                }
            }
            Role::Assistant => {
                let mut text = String::new();
                let mut calls = Vec::new();
                for (j, p) in m.parts.iter().enumerate() {
                    match p {
                        Part::Text { text: t, .. } => text.push_str(t),
                        Part::ToolCall {
                            id,
                            name,
                            arguments: args,
                            ..
                        } => calls.push(json!({"id": id, "type": "function",
                                               "function": {"name": name, "arguments": arguments(args)}})),
                        // Earlier reasoning is not sent: OpenAI models take none back.
                        Part::Thinking { .. } | Part::RedactedThinking { .. } => {}
                        Part::Image { .. } | Part::ToolResult { .. } => {
                            return Err(unsupported_content(
                                &format!("{at}.content[{j}]: an image or tool result in an assistant turn"),
                                label,
                            ))
                        }
                    }
                }
                let mut msg = Map::new();
                msg.insert("role".into(), "assistant".into());
                let content = if text.is_empty() && !calls.is_empty() {
                    Value::Null
                } else {
                    Value::from(text)
                };
                msg.insert("content".into(), content);
                if !calls.is_empty() {
                    msg.insert("tool_calls".into(), Value::Array(calls));
                }
                out.push(Value::Object(msg));
            }
        }
    }
    Ok(out)
}

/// The OpenAI body for `req`, with the target's `model`.
pub fn render(
    req: &neutral::Request<'_>,
    model: &str,
    flavor: Flavor,
    label: &str,
    unsupported: &mut Unsupported,
) -> Result<Vec<u8>, ApiError> {
    for (name, _) in &req.extra {
        unsupported.parameter(name, label)?;
    }
    let mut out = Map::new();
    out.insert("model".into(), Value::from(model));
    out.insert(
        "messages".into(),
        Value::Array(messages(req, label, unsupported)?),
    );
    if let Some(n) = req.max_tokens {
        let key = match flavor {
            Flavor::Compatible => "max_tokens",
            Flavor::OpenAi | Flavor::Azure => "max_completion_tokens",
        };
        out.insert(key.into(), Value::from(n));
    }
    for (name, v) in [("temperature", req.temperature), ("top_p", req.top_p)] {
        if let Some(n) = v {
            out.insert(name.into(), Value::Number(n.clone()));
        }
    }
    if let Some(k) = req.top_k {
        // vLLM and its kin take `top_k`; OpenAI and Azure do not.
        if flavor == Flavor::Compatible {
            out.insert("top_k".into(), Value::Number(k.clone()));
        } else {
            unsupported.parameter("top_k", label)?;
        }
    }
    if !req.stop.is_empty() {
        out.insert("stop".into(), Value::from(req.stop.clone()));
    }
    if req.stream {
        out.insert("stream".into(), Value::Bool(true));
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    if let Some(user) = req.user {
        out.insert("user".into(), Value::from(user));
    }
    if !req.tools.is_empty() {
        let tools: Vec<Value> = req
            .tools
            .iter()
            .map(|t| {
                let mut f = Map::new();
                f.insert("name".into(), Value::from(t.name));
                if let Some(d) = t.description {
                    f.insert("description".into(), Value::from(d));
                }
                let schema = t
                    .schema
                    .cloned()
                    .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
                f.insert("parameters".into(), schema);
                if let Some(s) = t.strict {
                    f.insert("strict".into(), Value::Bool(s));
                }
                json!({"type": "function", "function": f})
            })
            .collect();
        out.insert("tools".into(), Value::Array(tools));
        if req.parallel_tool_calls == Some(false) {
            out.insert("parallel_tool_calls".into(), Value::Bool(false));
        }
    }
    if let Some(choice) = req.tool_choice {
        let v = match choice {
            ToolChoice::Auto => json!("auto"),
            ToolChoice::None => json!("none"),
            ToolChoice::Required => json!("required"),
            ToolChoice::Named(name) => json!({"type": "function", "function": {"name": name}}),
        };
        out.insert("tool_choice".into(), v);
    }
    match &req.format {
        None => {}
        Some(Format::JsonObject) => {
            out.insert("response_format".into(), json!({"type": "json_object"}));
        }
        Some(Format::JsonSchema {
            name,
            description,
            schema,
            strict,
        }) => {
            let mut s = Map::new();
            s.insert("name".into(), Value::from(name.unwrap_or("response")));
            if let Some(d) = description {
                s.insert("description".into(), Value::from(*d));
            }
            s.insert("schema".into(), (*schema).clone());
            if let Some(strict) = strict {
                s.insert("strict".into(), Value::Bool(*strict));
            }
            out.insert(
                "response_format".into(),
                json!({"type": "json_schema", "json_schema": s}),
            );
        }
    }
    match req.reasoning {
        Some(Reasoning::Effort(e)) => {
            out.insert("reasoning_effort".into(), Value::from(e));
        }
        Some(Reasoning::Budget(b)) => {
            out.insert("reasoning_effort".into(), Value::from(budget_effort(b)));
        }
        // The model's own default effort; OpenAI has no switch that turns reasoning off everywhere.
        Some(Reasoning::Adaptive | Reasoning::Off) | None => {}
    }
    if let Some(priority) = req.priority_tier {
        let tier = if priority { "auto" } else { "default" };
        out.insert("service_tier".into(), Value::from(tier));
    }
    Ok(Value::Object(out).to_string().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::neutral::{Message, OnUnsupported, System, Tool};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn text(t: &str) -> Part<'_> {
        Part::Text { text: t, cache: None }
    }

    fn render_json(req: &neutral::Request<'_>, flavor: Flavor) -> Result<Value, ApiError> {
        let mut u = Unsupported::default();
        render(req, "gpt-up", flavor, "OpenAI", &mut u).map(|b| serde_json::from_slice(&b).unwrap())
    }

    #[test]
    fn a_tool_conversation() {
        let input = json!({"city": "Paris"});
        let schema = json!({"type": "object", "properties": {"city": {"type": "string"}}});
        let cache = json!({"type": "ephemeral"});
        let req = neutral::Request {
            system: vec![System {
                text: "Be brief.",
                cache: Some(&cache),
            }],
            messages: vec![
                Message {
                    index: 0,
                    role: Role::User,
                    parts: vec![text("weather?")],
                },
                Message {
                    index: 1,
                    role: Role::Assistant,
                    parts: vec![
                        Part::Thinking {
                            text: "hmm",
                            signature: "s",
                        },
                        text("Let me look."),
                        Part::ToolCall {
                            id: "toolu_1",
                            name: "get_weather",
                            arguments: Arguments::Json(&input),
                            cache: None,
                        },
                    ],
                },
                Message {
                    index: 2,
                    role: Role::User,
                    parts: vec![
                        Part::ToolResult {
                            id: "toolu_1",
                            content: vec![text("sunny")],
                            is_error: false,
                            cache: Some(&cache),
                        },
                        text("and tomorrow?"),
                        Part::Image {
                            image: Image::Base64 {
                                media_type: "image/png",
                                data: "AAAA",
                            },
                            cache: None,
                        },
                    ],
                },
            ],
            max_tokens: Some(100),
            stream: true,
            tools: vec![Tool {
                name: "get_weather",
                description: Some("Weather of a city"),
                schema: Some(&schema),
                strict: None,
                cache: Some(&cache),
            }],
            tool_choice: Some(ToolChoice::Named("get_weather")),
            parallel_tool_calls: Some(false),
            reasoning: Some(Reasoning::Budget(5000)),
            user: Some("u-1"),
            ..neutral::Request::default()
        };
        let v = render_json(&req, Flavor::OpenAi).unwrap();
        assert_eq!(
            v,
            json!({
                "model": "gpt-up",
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "weather?"},
                    {"role": "assistant", "content": "Let me look.", "tool_calls": [
                        {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                    {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
                    {"role": "user", "content": [{"type": "text", "text": "and tomorrow?"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}
                ],
                "max_completion_tokens": 100,
                "stream": true,
                "stream_options": {"include_usage": true},
                "user": "u-1",
                "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
                "parallel_tool_calls": false,
                "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
                "reasoning_effort": "high"
            })
        );
        let compatible = render_json(&req, Flavor::Compatible).unwrap();
        assert_eq!(compatible["max_tokens"], 100);
        assert!(compatible.get("max_completion_tokens").is_none());
    }

    #[test]
    fn formats_and_what_openai_lacks() {
        let schema = json!({"type": "object"});
        let k = serde_json::Number::from(5);
        let seven = json!(7);
        let base = neutral::Request {
            messages: vec![Message {
                index: 0,
                role: Role::User,
                parts: vec![text("x")],
            }],
            ..neutral::Request::default()
        };
        let with_format = neutral::Request {
            format: Some(Format::JsonSchema {
                name: None,
                description: Some("d"),
                schema: &schema,
                strict: Some(true),
            }),
            priority_tier: Some(true),
            ..base.clone()
        };
        let v = render_json(&with_format, Flavor::OpenAi).unwrap();
        assert_eq!(
            v["response_format"],
            json!({"type": "json_schema", "json_schema": {"name": "response", "description": "d",
                   "schema": {"type": "object"}, "strict": true}})
        );
        assert_eq!(v["service_tier"], "auto");

        let lacking = neutral::Request {
            top_k: Some(&k),
            extra: vec![("container".into(), &seven)],
            ..base.clone()
        };
        let e = render_json(&lacking, Flavor::OpenAi).unwrap_err();
        assert_eq!(e.code, "unsupported_parameter");
        assert!(e
            .message
            .starts_with("`container` is not supported for OpenAI targets"));
        let mut drop = Unsupported::new(OnUnsupported::Drop);
        let body = render(&lacking, "m", Flavor::OpenAi, "OpenAI", &mut drop).unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert!(v.get("top_k").is_none() && v.get("container").is_none());
        assert_eq!(drop.dropped, vec!["container", "top_k"]);
        let v = render_json(
            &neutral::Request {
                top_k: Some(&k),
                ..base.clone()
            },
            Flavor::Compatible,
        )
        .unwrap();
        assert_eq!(v["top_k"], 5, "compatible servers take top_k");

        let error_result = neutral::Request {
            messages: vec![Message {
                index: 3,
                role: Role::User,
                parts: vec![Part::ToolResult {
                    id: "t",
                    content: vec![text("boom")],
                    is_error: true,
                    cache: None,
                }],
            }],
            ..neutral::Request::default()
        };
        let e = render_json(&error_result, Flavor::OpenAi).unwrap_err();
        assert!(
            e.message
                .starts_with("`messages[3].content[0].is_error` is not supported"),
            "{}",
            e.message
        );
        let image_result = neutral::Request {
            messages: vec![Message {
                index: 0,
                role: Role::User,
                parts: vec![Part::ToolResult {
                    id: "t",
                    content: vec![Part::Image {
                        image: Image::Url("https://x"),
                        cache: None,
                    }],
                    is_error: false,
                    cache: None,
                }],
            }],
            ..neutral::Request::default()
        };
        let e = render_json(&image_result, Flavor::OpenAi).unwrap_err();
        assert_eq!(e.code, "unsupported_content");
    }
}
