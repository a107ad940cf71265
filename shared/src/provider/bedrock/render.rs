//! A [`neutral::Request`] written as a Bedrock Converse body, and an embeddings request as an
//! `InvokeModel` body for Titan or Cohere embedding models.
//!
//! System texts are `system` blocks; turns of one role are merged, tool results (`toolResult`, text or
//! a JSON object, `status: error` for a failed tool) open the user turn that answers the calls
//! (`toolUse`). Images must be inline (`image.source.bytes`, format from the media type): Bedrock
//! fetches no URLs. `cache_control` markers become `cachePoint` blocks after the block they mark.
//! Tools are `toolConfig.tools[].toolSpec`; `response_format` is a forced tool whose input is the answer
//! ([`Expect::format_tool`]), as for Anthropic. `top_k` goes in `additionalModelRequestFields` (the
//! model's own field: Anthropic and Mistral models take it).

use serde_json::{json, Map, Value};

use super::LABEL;
use crate::error::ApiError;
use crate::provider::neutral::{
    self, invalid_messages, invalid_parameter, unsupported_content, Format, Image, Part, Role, ToolChoice,
    Unsupported,
};
use crate::provider::{Expect, Rendered};

/// The forced tool of structured output when the schema has no usable name.
pub const FORMAT_TOOL: &str = "json_output";

fn cache_point(cache: Option<&Value>, out: &mut Vec<Value>) {
    if cache.is_some() {
        out.push(json!({"cachePoint": {"type": "default"}}));
    }
}

fn image(image: &Image<'_>, at: &str) -> Result<Value, ApiError> {
    match image {
        Image::Base64 { media_type, data } => {
            let format = match *media_type {
                "image/png" => "png",
                "image/jpeg" | "image/jpg" => "jpeg",
                "image/gif" => "gif",
                "image/webp" => "webp",
                other => {
                    return Err(unsupported_content(
                        &format!("{at}: an image of type `{other}`"),
                        LABEL,
                    ))
                }
            };
            Ok(json!({"image": {"format": format, "source": {"bytes": data}}}))
        }
        Image::Url(_) => Err(unsupported_content(
            &format!("{at}: an image by URL (send it as a data: URL)"),
            LABEL,
        )),
    }
}

fn blocks(m: &neutral::Message<'_>) -> Result<Vec<Value>, ApiError> {
    let at = format!("messages[{}]", m.index);
    let mut out = Vec::with_capacity(m.parts.len());
    for p in &m.parts {
        match (p, m.role) {
            (Part::Text { text: "", .. }, _) => {}
            (Part::Text { text, cache }, _) => {
                out.push(json!({ "text": text }));
                cache_point(*cache, &mut out);
            }
            (Part::Image { image: i, cache }, Role::User) => {
                out.push(image(i, &at)?);
                cache_point(*cache, &mut out);
            }
            (
                Part::ToolCall {
                    id,
                    name,
                    arguments,
                    cache,
                },
                Role::Assistant,
            ) => {
                out.push(
                    json!({"toolUse": {"toolUseId": id, "name": name, "input": arguments.object(&at, id)?}}),
                );
                cache_point(*cache, &mut out);
            }
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
                for c in content {
                    match c {
                        Part::Text { text, .. } => match serde_json::from_str::<Value>(text) {
                            Ok(v @ Value::Object(_)) => inner.push(json!({ "json": v })),
                            _ => inner.push(json!({ "text": text })),
                        },
                        Part::Image { image: i, .. } => inner.push(image(i, &at)?),
                        _ => {
                            return Err(invalid_messages(format!(
                                "{at}: a tool result holds text and images only"
                            )))
                        }
                    }
                }
                let mut r = Map::new();
                r.insert("toolUseId".into(), Value::from(*id));
                r.insert("content".into(), Value::Array(inner));
                if *is_error {
                    r.insert("status".into(), "error".into());
                }
                out.push(json!({ "toolResult": r }));
                cache_point(*cache, &mut out);
            }
            // Signed reasoning from another provider: Bedrock models cannot take it back.
            (Part::Thinking { .. } | Part::RedactedThinking { .. }, Role::Assistant) => {}
            (_, role) => {
                return Err(invalid_messages(format!(
                    "{at}: this content does not belong in a {} turn",
                    role.as_str()
                )))
            }
        }
    }
    Ok(out)
}

fn messages(req: &neutral::Request<'_>) -> Result<Vec<Value>, ApiError> {
    let mut turns: Vec<(Role, Vec<Value>)> = Vec::with_capacity(req.messages.len());
    for m in &req.messages {
        let b = blocks(m)?;
        if b.is_empty() {
            if !m.parts.is_empty()
                && m.parts
                    .iter()
                    .all(|p| matches!(p, Part::Thinking { .. } | Part::RedactedThinking { .. }))
            {
                continue;
            }
            return Err(invalid_messages(format!("messages[{}] has no content", m.index)));
        }
        match turns.last_mut() {
            Some((role, into)) if *role == m.role => into.extend(b),
            _ => turns.push((m.role, b)),
        }
    }
    if turns.is_empty() {
        return Err(invalid_messages(
            "at least one user or assistant message is required".into(),
        ));
    }
    Ok(turns
        .into_iter()
        .map(|(role, mut b)| {
            if role == Role::User {
                let (mut results, rest): (Vec<Value>, Vec<Value>) =
                    b.drain(..).partition(|x| x.get("toolResult").is_some());
                results.extend(rest);
                b = results;
            }
            json!({"role": role.as_str(), "content": b})
        })
        .collect())
}

fn tool_spec(name: &str, description: Option<&str>, schema: Value) -> Value {
    let mut s = Map::new();
    s.insert("name".into(), Value::from(name));
    if let Some(d) = description {
        s.insert("description".into(), Value::from(d));
    }
    s.insert("inputSchema".into(), json!({ "json": schema }));
    json!({ "toolSpec": s })
}

/// The Converse body for `req` (the model is in the path).
pub fn render(req: &neutral::Request<'_>, unsupported: &mut Unsupported) -> Result<Rendered, ApiError> {
    for (name, _) in &req.extra {
        unsupported.parameter(name, LABEL)?;
    }
    let mut out = Map::new();
    out.insert("messages".into(), Value::Array(messages(req)?));
    let mut system = Vec::new();
    for s in req.system.iter().filter(|s| !s.text.is_empty()) {
        system.push(json!({"text": s.text}));
        cache_point(s.cache, &mut system);
    }
    if !system.is_empty() {
        out.insert("system".into(), Value::Array(system));
    }
    let mut config = Map::new();
    if let Some(n) = req.max_tokens {
        config.insert("maxTokens".into(), Value::from(n));
    }
    for (name, v) in [("temperature", req.temperature), ("topP", req.top_p)] {
        if let Some(n) = v {
            config.insert(name.into(), Value::Number(n.clone()));
        }
    }
    if !req.stop.is_empty() {
        config.insert("stopSequences".into(), Value::from(req.stop.clone()));
    }
    if !config.is_empty() {
        out.insert("inferenceConfig".into(), Value::Object(config));
    }
    if let Some(k) = req.top_k {
        out.insert("additionalModelRequestFields".into(), json!({ "top_k": k }));
    }
    if req.user.is_some() {
        unsupported.parameter("user", LABEL)?;
    }
    if req.priority_tier.is_some() {
        unsupported.parameter("service_tier", LABEL)?;
    }
    if req.reasoning.is_some() {
        unsupported.parameter("reasoning_effort", LABEL)?;
    }
    if req.cache.is_some() {
        unsupported.parameter("cache_control", LABEL)?;
    }
    let mut expect = Expect::default();
    let mut tools: Vec<Value> = req
        .tools
        .iter()
        .map(|t| {
            let schema = t
                .schema
                .cloned()
                .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
            tool_spec(t.name, t.description, schema)
        })
        .collect();
    let mut choice = match (req.tool_choice, tools.is_empty()) {
        (None | Some(ToolChoice::Auto), _) | (Some(ToolChoice::None), true) => None,
        (Some(ToolChoice::None), false) => {
            unsupported.parameter("tool_choice", LABEL)?;
            None
        }
        (Some(ToolChoice::Required), false) => Some(json!({"any": {}})),
        (Some(ToolChoice::Named(name)), false) => Some(json!({"tool": {"name": name}})),
        (Some(_), true) => return Err(invalid_parameter("tool_choice", "used together with `tools`")),
    };
    if let Some(format) = &req.format {
        if !tools.is_empty() {
            return Err(ApiError::invalid_request(
                "unsupported_feature",
                "`response_format` together with `tools` is not supported for Bedrock targets (structured output is a forced tool there)",
            ));
        }
        let (name, description, schema) = match format {
            Format::JsonObject => (
                FORMAT_TOOL.to_string(),
                Some("Answer with a JSON object."),
                json!({"type": "object"}),
            ),
            Format::JsonSchema {
                name,
                description,
                schema,
                ..
            } => {
                if schema.get("type").and_then(Value::as_str) != Some("object") {
                    return Err(invalid_parameter(
                        "response_format.json_schema.schema",
                        "a schema of `\"type\": \"object\"` for Bedrock targets (its answer is a tool's input)",
                    ));
                }
                let valid = |n: &&str| {
                    (1..=64).contains(&n.len())
                        && n.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                };
                (
                    name.filter(valid).unwrap_or(FORMAT_TOOL).to_string(),
                    Some(description.unwrap_or("Answer with JSON that follows this schema.")),
                    (*schema).clone(),
                )
            }
        };
        tools.push(tool_spec(&name, description, schema));
        choice = Some(json!({"tool": {"name": name}}));
        expect.format_tool = true;
    }
    if req.parallel_tool_calls == Some(false) && !tools.is_empty() && !expect.format_tool {
        unsupported.parameter("parallel_tool_calls", LABEL)?;
    }
    if !tools.is_empty() {
        let mut tc = Map::new();
        tc.insert("tools".into(), Value::Array(tools));
        if let Some(c) = choice {
            tc.insert("toolChoice".into(), c);
        }
        out.insert("toolConfig".into(), Value::Object(tc));
    } else if req
        .messages
        .iter()
        .flat_map(|m| &m.parts)
        .any(|p| matches!(p, Part::ToolCall { .. }))
    {
        return Err(invalid_parameter(
            "tools",
            "sent again with a conversation that holds tool calls (Bedrock requires `toolConfig` then)",
        ));
    }
    Ok(Rendered {
        body: Value::Object(out).to_string().into_bytes(),
        expect,
    })
}

/// The `InvokeModel` body of an embeddings request: Titan (`titan`: one text, `inputText`,
/// `dimensions`) or Cohere (`texts`, `input_type`, default `search_document`).
pub fn embeddings(
    req: &neutral::EmbeddingsRequest<'_>,
    titan: bool,
    unsupported: &mut Unsupported,
) -> Result<Vec<u8>, ApiError> {
    if req.user.is_some() {
        unsupported.parameter("user", LABEL)?;
    }
    let body = if titan {
        for (name, _) in &req.extra {
            unsupported.parameter(name, LABEL)?;
        }
        let [text] = req.inputs.as_slice() else {
            return Err(unsupported_content(
                "several `input` texts in one call to a Titan embeddings model",
                LABEL,
            ));
        };
        let mut b = Map::new();
        b.insert("inputText".into(), Value::from(*text));
        if let Some(d) = req.dimensions {
            b.insert("dimensions".into(), Value::from(d));
        }
        Value::Object(b)
    } else {
        let mut input_type = Value::from("search_document");
        for (name, v) in &req.extra {
            if name == "input_type" {
                input_type = (*v).clone();
            } else {
                unsupported.parameter(name, LABEL)?;
            }
        }
        if req.dimensions.is_some() {
            unsupported.parameter("dimensions", LABEL)?;
        }
        json!({"texts": req.inputs, "input_type": input_type})
    };
    Ok(body.to_string().into_bytes())
}

#[cfg(test)]
mod tests {
    use crate::error::ApiError;
    use crate::provider::bedrock::Bedrock;
    use crate::provider::openai::parse_chat_request;
    use crate::provider::{Exchange, OnUnsupported};
    use serde_json::{json, Value};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn target() -> Bedrock {
        Bedrock::new(
            "anthropic.claude-3-5-haiku-20241022-v1:0",
            "us-east-1",
            "AKID",
            "secret",
        )
    }

    fn translate_with(req: Value, on: OnUnsupported) -> Result<(Value, bool), ApiError> {
        let req = parse_chat_request(req.to_string().as_bytes()).unwrap();
        Exchange::prepare_with(&req, &target(), on)
            .map(|(b, ex)| (serde_json::from_slice(&b).unwrap(), ex.dropped.is_empty()))
    }

    fn translate(req: Value) -> Result<Value, ApiError> {
        translate_with(req, OnUnsupported::Refuse).map(|(v, _)| v)
    }

    #[test]
    fn text_chat() {
        let got = translate(json!({"model": "m", "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"}, {"role": "user", "content": "there"},
            {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Bye"}],
            "max_tokens": 50, "temperature": 0.2, "top_p": 0.9, "stop": ["X"], "top_k": 5}))
        .unwrap();
        assert_eq!(
            got,
            json!({"messages": [
                    {"role": "user", "content": [{"text": "Hi"}, {"text": "there"}]},
                    {"role": "assistant", "content": [{"text": "Hello"}]},
                    {"role": "user", "content": [{"text": "Bye"}]}],
                   "system": [{"text": "Be brief."}],
                   "inferenceConfig": {"maxTokens": 50, "temperature": 0.2, "topP": 0.9, "stopSequences": ["X"]},
                   "additionalModelRequestFields": {"top_k": 5}})
        );
    }

    #[test]
    fn tools_images_and_results() {
        let got = translate(json!({"model": "m",
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "look"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "tooluse_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]},
                {"role": "tool", "tool_call_id": "tooluse_1", "content": "{\"ok\":true}"},
                {"role": "user", "content": "and?"}],
            "tools": [{"type": "function", "function": {"name": "f", "description": "F", "parameters": {"type": "object"}}}],
            "tool_choice": "required"}))
        .unwrap();
        assert_eq!(
            got["messages"],
            json!([
                {"role": "user", "content": [{"text": "look"}, {"image": {"format": "png", "source": {"bytes": "iVBORw0KGgo="}}}]},
                {"role": "assistant", "content": [{"toolUse": {"toolUseId": "tooluse_1", "name": "f", "input": {"a": 1}}}]},
                {"role": "user", "content": [{"toolResult": {"toolUseId": "tooluse_1", "content": [{"json": {"ok": true}}]}}, {"text": "and?"}]}])
        );
        assert_eq!(
            got["toolConfig"],
            json!({"tools": [{"toolSpec": {"name": "f", "description": "F", "inputSchema": {"json": {"type": "object"}}}}],
                   "toolChoice": {"any": {}}})
        );
        let url = translate(json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://x/cat.png"}}]}]}));
        assert_eq!(url.unwrap_err().code, "unsupported_content");
    }

    #[test]
    fn structured_output_is_a_forced_tool() {
        let got = translate(json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "city", "schema": {"type": "object"}}}}))
        .unwrap();
        assert_eq!(got["toolConfig"]["toolChoice"], json!({"tool": {"name": "city"}}));
        assert_eq!(
            got["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"],
            json!({"type": "object"})
        );
        let e = translate(json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "seed": 1}))
            .unwrap_err();
        assert_eq!(e.code, "unsupported_parameter");
        let (_, none_dropped) = translate_with(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "seed": 1, "user": "u"}),
            OnUnsupported::Drop,
        )
        .unwrap();
        assert!(!none_dropped);
    }

    #[test]
    fn embeddings_bodies() {
        use crate::provider::neutral::{EmbeddingsRequest, Unsupported};
        let req = EmbeddingsRequest {
            inputs: vec!["a"],
            dimensions: Some(256),
            ..EmbeddingsRequest::default()
        };
        let mut u = Unsupported::default();
        let titan: Value = serde_json::from_slice(&super::embeddings(&req, true, &mut u).unwrap()).unwrap();
        assert_eq!(titan, json!({"inputText": "a", "dimensions": 256}));
        let two = EmbeddingsRequest {
            inputs: vec!["a", "b"],
            ..EmbeddingsRequest::default()
        };
        assert_eq!(
            super::embeddings(&two, true, &mut u).unwrap_err().code,
            "unsupported_content"
        );
        let cohere: Value = serde_json::from_slice(&super::embeddings(&two, false, &mut u).unwrap()).unwrap();
        assert_eq!(
            cohere,
            json!({"texts": ["a", "b"], "input_type": "search_document"})
        );
        assert_eq!(
            super::embeddings(&req, false, &mut u).unwrap_err().code,
            "unsupported_parameter"
        );
    }
}
