//! A [`neutral::Request`] written as an Anthropic Messages body, for Anthropic targets behind the OpenAI
//! door.
//!
//! Consecutive turns of one role are merged into one turn (Anthropic combines them anyway), so the
//! results of parallel tool calls, each an OpenAI `tool` message, arrive as one user turn of
//! `tool_result` blocks, placed first as Anthropic requires. Structured output (`response_format`)
//! becomes a forced tool whose input schema is the requested schema: the answer's tool input is
//! unwrapped back into the message's content ([`Expect::format_tool`]). A reasoning effort becomes a
//! `thinking` budget ([`effort_budget`]), kept below `max_tokens` as Anthropic requires.

use serde_json::{json, Map, Value};

use crate::error::ApiError;
use crate::provider::neutral::{
    self, effort_budget, invalid_messages, invalid_parameter, Format, Image, Part, Reasoning, Role,
    ToolChoice, Unsupported,
};
use crate::provider::{Expect, Rendered};

const LABEL: &str = "Anthropic";

/// The name of the forced tool that carries structured output when the schema has no usable name.
pub const FORMAT_TOOL: &str = "json_output";

/// Anthropic's smallest thinking budget.
const MIN_BUDGET: u64 = 1024;

fn with_cache(mut block: Value, cache: Option<&Value>) -> Value {
    if let (Some(c), Some(o)) = (cache, block.as_object_mut()) {
        o.insert("cache_control".into(), c.clone());
    }
    block
}

fn image_block(image: &Image<'_>) -> Value {
    match image {
        Image::Base64 { media_type, data } => {
            json!({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}})
        }
        Image::Url(url) => json!({"type": "image", "source": {"type": "url", "url": url}}),
    }
}

/// One neutral part as an Anthropic block; `None` for an empty text (Anthropic refuses those).
fn block(part: &Part<'_>, role: Role, at: &str) -> Result<Option<Value>, ApiError> {
    Ok(Some(match (part, role) {
        (Part::Text { text: "", .. }, _) => return Ok(None),
        (Part::Text { text, cache }, _) => with_cache(json!({"type": "text", "text": text}), *cache),
        (Part::Image { image, cache }, Role::User) => with_cache(image_block(image), *cache),
        (
            Part::ToolCall {
                id,
                name,
                arguments,
                cache,
            },
            Role::Assistant,
        ) => with_cache(
            json!({"type": "tool_use", "id": id, "name": name, "input": arguments.object(at, id)?}),
            *cache,
        ),
        (
            Part::ToolResult {
                id,
                content,
                is_error,
                cache,
            },
            Role::User,
        ) => {
            let mut inner = Vec::with_capacity(content.len());
            for p in content {
                if let Some(b) = block(p, Role::User, at)? {
                    inner.push(b);
                }
            }
            let mut b = Map::new();
            b.insert("type".into(), "tool_result".into());
            b.insert("tool_use_id".into(), Value::from(*id));
            match inner.as_slice() {
                [] => {}
                [one] if one.get("type") == Some(&json!("text")) && one.get("cache_control").is_none() => {
                    b.insert("content".into(), one.get("text").cloned().unwrap_or_default());
                }
                _ => {
                    b.insert("content".into(), Value::Array(inner));
                }
            }
            if *is_error {
                b.insert("is_error".into(), Value::Bool(true));
            }
            with_cache(Value::Object(b), *cache)
        }
        (Part::Thinking { text, signature }, Role::Assistant) => {
            json!({"type": "thinking", "thinking": text, "signature": signature})
        }
        (Part::RedactedThinking { data }, Role::Assistant) => {
            json!({"type": "redacted_thinking", "data": data})
        }
        (_, _) => {
            return Err(invalid_messages(format!(
                "{at}: this content does not belong in a {} turn",
                role.as_str()
            )))
        }
    }))
}

fn messages(req: &neutral::Request<'_>) -> Result<Vec<Value>, ApiError> {
    // (role, blocks) of each turn, consecutive messages of one role merged.
    let mut turns: Vec<(Role, Vec<Value>, usize)> = Vec::with_capacity(req.messages.len());
    for m in &req.messages {
        let at = format!("messages[{}]", m.index);
        let mut blocks = Vec::with_capacity(m.parts.len());
        for p in &m.parts {
            if let Some(b) = block(p, m.role, &at)? {
                blocks.push(b);
            }
        }
        if blocks.is_empty() {
            return Err(invalid_messages(format!("{at} has no content")));
        }
        match turns.last_mut() {
            Some((role, into, _)) if *role == m.role => into.extend(blocks),
            _ => turns.push((m.role, blocks, m.index)),
        }
    }
    if turns.is_empty() {
        return Err(invalid_messages(
            "at least one user or assistant message is required".into(),
        ));
    }
    Ok(turns
        .into_iter()
        .map(|(role, mut blocks, _)| {
            if role == Role::User {
                // Tool results open the turn that answers the tool calls.
                let (mut results, rest): (Vec<Value>, Vec<Value>) = blocks
                    .drain(..)
                    .partition(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"));
                results.extend(rest);
                blocks = results;
            }
            json!({"role": role.as_str(), "content": blocks})
        })
        .collect())
}

fn system(req: &neutral::Request<'_>) -> Option<Value> {
    let texts: Vec<_> = req.system.iter().filter(|s| !s.text.is_empty()).collect();
    if texts.is_empty() {
        return None;
    }
    if texts.iter().all(|s| s.cache.is_none()) {
        let joined: Vec<&str> = texts.iter().map(|s| s.text).collect();
        return Some(Value::from(joined.join("\n\n")));
    }
    Some(Value::Array(
        texts
            .iter()
            .map(|s| with_cache(json!({"type": "text", "text": s.text}), s.cache))
            .collect(),
    ))
}

/// The forced tool for structured output, and its name.
fn format_tool(format: &Format<'_>) -> Result<(Value, String), ApiError> {
    let valid_name = |n: &&str| {
        (1..=64).contains(&n.len())
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    match format {
        Format::JsonObject => Ok((
            json!({"name": FORMAT_TOOL, "description": "Answer with a JSON object.",
                   "input_schema": {"type": "object"}}),
            FORMAT_TOOL.to_string(),
        )),
        Format::JsonSchema {
            name,
            description,
            schema,
            strict,
        } => {
            if schema.get("type").and_then(Value::as_str) != Some("object") {
                return Err(invalid_parameter(
                    "response_format.json_schema.schema",
                    "a schema of `\"type\": \"object\"` for Anthropic targets (its answer is a tool's input)",
                ));
            }
            let name = name.filter(valid_name).unwrap_or(FORMAT_TOOL).to_string();
            let mut t = Map::new();
            t.insert("name".into(), Value::from(name.as_str()));
            t.insert(
                "description".into(),
                Value::from(description.unwrap_or("Answer with JSON that follows this schema.")),
            );
            t.insert("input_schema".into(), (*schema).clone());
            if let Some(s) = strict {
                t.insert("strict".into(), Value::Bool(*s));
            }
            Ok((Value::Object(t), name))
        }
    }
}

/// The `thinking` block for a reasoning request; `max_tokens` is what the answer may spend in all.
fn thinking(reasoning: Reasoning<'_>, max_tokens: u64) -> Result<Value, ApiError> {
    Ok(match reasoning {
        Reasoning::Effort(effort) => {
            let budget = effort_budget(effort).ok_or_else(|| {
                invalid_parameter(
                    "reasoning_effort",
                    "one of `none`, `minimal`, `low`, `medium`, `high`, `xhigh`, `max`",
                )
            })?;
            // Thinking counts toward max_tokens and must stay below it.
            let budget = budget.min(max_tokens.saturating_sub(1));
            if budget < MIN_BUDGET {
                return Err(invalid_parameter(
                    "max_completion_tokens",
                    "above 1024 to reason on Anthropic targets (thinking needs a budget of at least 1024 tokens below the limit)",
                ));
            }
            json!({"type": "enabled", "budget_tokens": budget})
        }
        Reasoning::Budget(budget) => json!({"type": "enabled", "budget_tokens": budget}),
        Reasoning::Adaptive => json!({"type": "adaptive"}),
        Reasoning::Off => json!({"type": "disabled"}),
    })
}

/// The Messages body for `req`, with the target's `model` and its `default_max_tokens`.
pub fn render(
    req: &neutral::Request<'_>,
    model: &str,
    default_max_tokens: u64,
    unsupported: &mut Unsupported,
) -> Result<Rendered, ApiError> {
    for (name, _) in &req.extra {
        unsupported.parameter(name, LABEL)?;
    }
    let mut out = Map::new();
    let max_tokens = req.max_tokens.unwrap_or(default_max_tokens);
    out.insert("model".into(), Value::from(model));
    out.insert("max_tokens".into(), Value::from(max_tokens));
    out.insert("messages".into(), Value::Array(messages(req)?));
    if let Some(s) = system(req) {
        out.insert("system".into(), s);
    }
    for (name, v) in [
        ("temperature", req.temperature),
        ("top_p", req.top_p),
        ("top_k", req.top_k),
    ] {
        if let Some(n) = v {
            out.insert(name.into(), Value::Number(n.clone()));
        }
    }
    if !req.stop.is_empty() {
        out.insert("stop_sequences".into(), Value::from(req.stop.clone()));
    }
    if req.stream {
        out.insert("stream".into(), Value::Bool(true));
    }
    if let Some(user) = req.user {
        out.insert("metadata".into(), json!({ "user_id": user }));
    }
    let mut expect = Expect::default();
    let mut tools: Vec<Value> = req
        .tools
        .iter()
        .map(|t| {
            let mut o = Map::new();
            o.insert("name".into(), Value::from(t.name));
            if let Some(d) = t.description {
                o.insert("description".into(), Value::from(d));
            }
            let schema = t
                .schema
                .cloned()
                .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
            o.insert("input_schema".into(), schema);
            if let Some(s) = t.strict {
                o.insert("strict".into(), Value::Bool(s));
            }
            with_cache(Value::Object(o), t.cache)
        })
        .collect();
    let mut choice = match (req.tool_choice, tools.is_empty()) {
        (None, _) | (Some(ToolChoice::Auto | ToolChoice::None), true) => None,
        (Some(ToolChoice::Auto), false) => Some(json!({"type": "auto"})),
        (Some(ToolChoice::None), false) => Some(json!({"type": "none"})),
        (Some(ToolChoice::Required), false) => Some(json!({"type": "any"})),
        (Some(ToolChoice::Named(name)), false) => Some(json!({"type": "tool", "name": name})),
        (Some(_), true) => return Err(invalid_parameter("tool_choice", "used together with `tools`")),
    };
    if let Some(format) = &req.format {
        if !tools.is_empty() {
            return Err(ApiError::invalid_request(
                "unsupported_feature",
                "`response_format` together with `tools` is not supported for Anthropic targets (structured output is a forced tool there)",
            ));
        }
        let (tool, name) = format_tool(format)?;
        tools.push(tool);
        choice = Some(json!({"type": "tool", "name": name}));
        expect.format_tool = true;
    } else if req.parallel_tool_calls == Some(false) && !tools.is_empty() {
        let c = choice.get_or_insert_with(|| json!({"type": "auto"}));
        if c.get("type") != Some(&json!("none")) {
            if let Some(o) = c.as_object_mut() {
                o.insert("disable_parallel_tool_use".into(), Value::Bool(true));
            }
        }
    }
    if !tools.is_empty() {
        out.insert("tools".into(), Value::Array(tools));
    }
    if let Some(c) = choice {
        out.insert("tool_choice".into(), c);
    }
    if let Some(r) = req.reasoning {
        out.insert("thinking".into(), thinking(r, max_tokens)?);
    }
    if let Some(priority) = req.priority_tier {
        let tier = if priority { "auto" } else { "standard_only" };
        out.insert("service_tier".into(), Value::from(tier));
    }
    if let Some(c) = req.cache {
        out.insert("cache_control".into(), c.clone());
    }
    Ok(Rendered {
        body: Value::Object(out).to_string().into_bytes(),
        expect,
    })
}

#[cfg(test)]
mod tests {
    use crate::error::ApiError;
    use crate::provider::anthropic::Anthropic;
    use crate::provider::openai::parse_chat_request;
    use crate::provider::{Exchange, OnUnsupported};
    use serde_json::{json, Value};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn target() -> Anthropic {
        Anthropic::new("claude-3-5-haiku-20241022")
    }

    /// The OpenAI door's request as this provider gets it, through the one translation path.
    fn translate(req: Value) -> Result<Value, ApiError> {
        let req = parse_chat_request(req.to_string().as_bytes()).unwrap();
        Exchange::prepare(&req, &target()).map(|(bytes, _)| serde_json::from_slice(&bytes).unwrap())
    }

    fn user(text: &str) -> Value {
        json!({"role": "user", "content": text})
    }

    #[test]
    fn text_chat() {
        let cases = [
            (
                "minimal",
                json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]}),
                json!({"model": "claude-3-5-haiku-20241022", "max_tokens": 4096,
                       "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}]}),
            ),
            (
                "system, developer, parts, parameters, defaults that change nothing",
                json!({
                    "model": "gpt-4o-mini",
                    "messages": [
                        {"role": "system", "content": "Be brief."},
                        {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
                        {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "there"}]},
                        {"role": "assistant", "content": "Bonjour"},
                        {"role": "user", "content": "Again"}
                    ],
                    "max_tokens": 100, "temperature": 0.5, "top_p": 0.9, "stop": "END",
                    "stream": true, "stream_options": {"include_usage": true}, "user": "user-42",
                    "frequency_penalty": 0, "presence_penalty": 0, "logprobs": false,
                    "response_format": {"type": "text"}, "n": 1, "tools": [], "tool_choice": "none"
                }),
                json!({
                    "model": "claude-3-5-haiku-20241022", "max_tokens": 100,
                    "system": "Be brief.\n\nAnswer in French.",
                    "messages": [
                        {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "there"}]},
                        {"role": "assistant", "content": [{"type": "text", "text": "Bonjour"}]},
                        {"role": "user", "content": [{"type": "text", "text": "Again"}]}
                    ],
                    "temperature": 0.5, "top_p": 0.9, "stop_sequences": ["END"], "stream": true,
                    "metadata": {"user_id": "user-42"}
                }),
            ),
            (
                "max_completion_tokens wins, stop array, nulls ignored, top_k and service tier",
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
                       "max_tokens": 5, "max_completion_tokens": 7, "stop": ["a", "b"],
                       "temperature": null, "stream": false, "user": null, "top_k": 3, "service_tier": "auto"}),
                json!({"model": "claude-3-5-haiku-20241022", "max_tokens": 7, "stop_sequences": ["a", "b"],
                       "top_k": 3, "service_tier": "auto",
                       "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]}),
            ),
            (
                "empty text dropped, empty stop omitted",
                json!({"model": "m", "stop": [], "max_completion_tokens": null, "messages": [
                    {"role": "system", "content": ""},
                    {"role": "user", "content": [{"type": "text", "text": ""}, {"type": "text", "text": "y"}]}]}),
                json!({"model": "claude-3-5-haiku-20241022", "max_tokens": 4096,
                       "messages": [{"role": "user", "content": [{"type": "text", "text": "y"}]}]}),
            ),
            (
                "cache_control passes to Anthropic, system as blocks then",
                json!({"model": "m", "messages": [
                    {"role": "system", "content": [{"type": "text", "text": "long rules", "cache_control": {"type": "ephemeral"}}]},
                    {"role": "user", "content": "q", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]}),
                json!({"model": "claude-3-5-haiku-20241022", "max_tokens": 4096,
                       "system": [{"type": "text", "text": "long rules", "cache_control": {"type": "ephemeral"}}],
                       "messages": [{"role": "user", "content": [
                           {"type": "text", "text": "q", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]}]}),
            ),
        ];
        for (name, req, want) in cases {
            assert_eq!(translate(req).unwrap(), want, "{name}");
        }
    }

    #[test]
    fn tools_and_a_tool_result_round_trip() {
        let req = json!({
            "model": "m",
            "messages": [
                user("Weather in Paris and Rome?"),
                {"role": "assistant", "content": "Checking both.", "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
                {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "rain"}]},
                user("Thanks, and tomorrow?")
            ],
            "tools": [
                {"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                 "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
                {"type": "function", "function": {"name": "now"}}],
            "tool_choice": "required", "parallel_tool_calls": false
        });
        assert_eq!(
            translate(req).unwrap(),
            json!({
                "model": "claude-3-5-haiku-20241022", "max_tokens": 4096,
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": "Weather in Paris and Rome?"}]},
                    {"role": "assistant", "content": [
                        {"type": "text", "text": "Checking both."},
                        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
                        {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {}}]},
                    {"role": "user", "content": [
                        {"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"},
                        {"type": "tool_result", "tool_use_id": "call_2", "content": "rain"},
                        {"type": "text", "text": "Thanks, and tomorrow?"}]}
                ],
                "tools": [
                    {"name": "get_weather", "description": "Weather of a city",
                     "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
                    {"name": "now", "input_schema": {"type": "object", "properties": {}}}],
                "tool_choice": {"type": "any", "disable_parallel_tool_use": true}
            })
        );
        let choices = [
            (json!("auto"), Some(json!({"type": "auto"}))),
            (json!("none"), Some(json!({"type": "none"}))),
            (
                json!({"type": "function", "function": {"name": "now"}}),
                Some(json!({"type": "tool", "name": "now"})),
            ),
            (Value::Null, None),
        ];
        for (choice, want) in choices {
            let req = json!({"model": "m", "messages": [user("x")], "tool_choice": choice,
                             "tools": [{"type": "function", "function": {"name": "now"}}]});
            assert_eq!(
                translate(req).unwrap().get("tool_choice").cloned(),
                want,
                "{choice}"
            );
        }
        let only_parallel = json!({"model": "m", "messages": [user("x")], "parallel_tool_calls": false,
                                   "tools": [{"type": "function", "function": {"name": "now"}}]});
        assert_eq!(
            translate(only_parallel).unwrap()["tool_choice"],
            json!({"type": "auto", "disable_parallel_tool_use": true})
        );
    }

    #[test]
    fn images_both_sources() {
        let req = json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "Compare"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "auto"}}]}]});
        assert_eq!(
            translate(req).unwrap()["messages"][0]["content"],
            json!([
                {"type": "text", "text": "Compare"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}
            ])
        );
    }

    #[test]
    fn structured_output_is_a_forced_tool() {
        let schema =
            json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]});
        let req = json!({"model": "m", "messages": [user("Where is the Louvre?")],
            "response_format": {"type": "json_schema", "json_schema": {"name": "place", "description": "A place",
                                "schema": schema, "strict": true}}});
        let sent = translate(req).unwrap();
        assert_eq!(
            sent["tools"],
            json!([{"name": "place", "description": "A place", "input_schema": schema, "strict": true}])
        );
        assert_eq!(sent["tool_choice"], json!({"type": "tool", "name": "place"}));
        let req = json!({"model": "m", "messages": [user("x")], "response_format": {"type": "json_object"}});
        let sent = translate(req).unwrap();
        assert_eq!(
            sent["tools"],
            json!([{"name": "json_output", "description": "Answer with a JSON object.",
                    "input_schema": {"type": "object"}}])
        );
        assert_eq!(
            sent["tool_choice"],
            json!({"type": "tool", "name": "json_output"})
        );
        let bad_name = json!({"model": "m", "messages": [user("x")], "response_format": {"type": "json_schema",
            "json_schema": {"name": "a name with spaces", "schema": {"type": "object"}}}});
        assert_eq!(translate(bad_name).unwrap()["tool_choice"]["name"], "json_output");
    }

    #[test]
    fn reasoning_effort_becomes_a_thinking_budget() {
        let cases = [
            (
                json!({"reasoning_effort": "low"}),
                json!({"type": "enabled", "budget_tokens": 1024}),
            ),
            (
                json!({"reasoning_effort": "medium"}),
                json!({"type": "enabled", "budget_tokens": 2048}),
            ),
            (
                json!({"reasoning_effort": "high", "max_completion_tokens": 3000}),
                json!({"type": "enabled", "budget_tokens": 2999}),
            ),
            (json!({"reasoning_effort": "none"}), json!({"type": "disabled"})),
            (
                json!({"thinking": {"type": "enabled", "budget_tokens": 5000}, "max_tokens": 9000}),
                json!({"type": "enabled", "budget_tokens": 5000}),
            ),
        ];
        for (patch, want) in cases {
            let mut req = json!({"model": "m", "messages": [user("x")]});
            for (k, v) in patch.as_object().unwrap() {
                req[k] = v.clone();
            }
            assert_eq!(translate(req).unwrap()["thinking"], want, "{patch}");
        }
        let history = json!({"model": "m", "reasoning_effort": "low", "messages": [
            user("q"),
            {"role": "assistant", "content": "a", "reasoning_content": "hm",
             "thinking_blocks": [{"type": "thinking", "thinking": "hm", "signature": "sig"}]},
            user("again")]});
        assert_eq!(
            translate(history).unwrap()["messages"][1]["content"],
            json!([{"type": "thinking", "thinking": "hm", "signature": "sig"}, {"type": "text", "text": "a"}])
        );
    }

    #[test]
    fn refused_or_dropped_by_name() {
        let cases = [
            (
                json!({"seed": 7}),
                "unsupported_parameter",
                "`seed` is not supported for Anthropic targets",
            ),
            (json!({"n": 2}), "unsupported_parameter", "`n` is not supported"),
            (
                json!({"logprobs": true, "top_logprobs": 3}),
                "unsupported_parameter",
                "`logprobs`",
            ),
            (
                json!({"frequency_penalty": 0.5}),
                "unsupported_parameter",
                "`frequency_penalty`",
            ),
            (
                json!({"x_vendor_knob": 1}),
                "unsupported_parameter",
                "`x_vendor_knob`",
            ),
            (
                json!({"response_format": {"type": "json_object"}, "tools": [{"type": "function", "function": {"name": "f"}}]}),
                "unsupported_feature",
                "`response_format` together with `tools`",
            ),
            (
                json!({"response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "array"}}}}),
                "invalid_parameter",
                "response_format.json_schema.schema",
            ),
            (
                json!({"reasoning_effort": "extreme"}),
                "invalid_parameter",
                "`reasoning_effort`",
            ),
            (
                json!({"reasoning_effort": "low", "max_tokens": 1000}),
                "invalid_parameter",
                "`max_completion_tokens` must be above 1024",
            ),
            (
                json!({"tool_choice": "required"}),
                "invalid_parameter",
                "`tool_choice` must be used together with `tools`",
            ),
        ];
        for (patch, code, needle) in cases {
            let mut req = json!({"model": "m", "messages": [user("x")]});
            for (k, v) in patch.as_object().unwrap() {
                req[k] = v.clone();
            }
            let e = translate(req).unwrap_err();
            assert_eq!((e.status, e.code), (400, code), "{patch}: {}", e.message);
            assert!(e.message.contains(needle), "{patch}: {}", e.message);
        }
        // Dropped instead when the model allows it, and named.
        let req = json!({"model": "m", "messages": [{"role": "user", "content": "x", "name": "bob"}],
                         "seed": 7, "logprobs": true, "temperature": 0.3});
        let req = parse_chat_request(req.to_string().as_bytes()).unwrap();
        let (body, ex) = Exchange::prepare_with(&req, &target(), OnUnsupported::Drop).unwrap();
        let sent: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(sent["temperature"], 0.3);
        assert!(sent.get("seed").is_none() && sent.get("logprobs").is_none());
        let mut dropped = ex.dropped.clone();
        dropped.sort();
        assert_eq!(dropped, vec!["logprobs", "messages[0].name", "seed"]);
        assert!(ex.dropped_header().unwrap().contains("seed"));
    }

    #[test]
    fn content_errors() {
        let u = user("x");
        let cases = [
            (
                json!({"messages": [{"role": "system", "content": "s"}]}),
                "invalid_messages",
                "at least one",
            ),
            (
                json!({"messages": [{"role": "user", "content": ""}]}),
                "invalid_messages",
                "messages[0] has no content",
            ),
            (
                json!({"messages": [{"role": "user"}]}),
                "invalid_messages",
                "messages[0] has no content",
            ),
            (
                json!({"messages": [{"role": "user", "content": 5}]}),
                "invalid_messages",
                "messages[0].content",
            ),
            (
                json!({"messages": [{"content": "x"}]}),
                "invalid_messages",
                "role",
            ),
            (
                json!({"messages": [{"role": "robot", "content": "x"}]}),
                "invalid_messages",
                "robot",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"text": "x"}]}]}),
                "invalid_messages",
                "type",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "text"}]}]}),
                "invalid_messages",
                "text",
            ),
            (
                json!({"messages": [u, {"role": "assistant", "tool_calls": [{"id": "1", "type": "function",
                       "function": {"name": "f", "arguments": "[1]"}}]}]}),
                "invalid_messages",
                "the arguments of tool call `1` are not a JSON object",
            ),
            (
                json!({"messages": [u], "max_tokens": 0}),
                "invalid_parameter",
                "max_tokens",
            ),
            (
                json!({"messages": [u], "max_completion_tokens": "9"}),
                "invalid_parameter",
                "max_completion_tokens",
            ),
            (
                json!({"messages": [u], "temperature": "hot"}),
                "invalid_parameter",
                "temperature",
            ),
            (json!({"messages": [u], "stop": [1]}), "invalid_parameter", "stop"),
        ];
        for (mut req, code, needle) in cases {
            req["model"] = json!("gpt-4o-mini");
            let e = translate(req.clone()).unwrap_err();
            assert_eq!(
                (e.status, e.kind, e.code),
                (400, "invalid_request_error", code),
                "{req}"
            );
            assert!(e.message.contains(needle), "{req}: {}", e.message);
        }
    }
}
