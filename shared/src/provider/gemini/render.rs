//! A [`neutral::Request`] written as a Gemini `generateContent` body, and an embeddings request as a
//! `batchEmbedContents` (AI Studio) or `predict` (Vertex AI) body.
//!
//! System texts become `systemInstruction`; `assistant` turns are `model` turns, and consecutive turns
//! of one role are merged (Gemini wants them to alternate). Images are `inlineData` (base64) or
//! `fileData` (a URL, its MIME type from its extension). Tool calls are `functionCall` parts and tool
//! results `functionResponse` parts of a `user` turn, named after the call they answer (found by the
//! id the client sends back, since Gemini has none); a result that is a JSON object is sent as the
//! response, any other text as `{"content": text}`. Tools become one `functionDeclarations` list with
//! their schemas rewritten into Gemini's subset ([`super::sanitize`]), `tool_choice` the
//! `functionCallingConfig` mode; `response_format` is `responseMimeType` (and `responseSchema`); a
//! reasoning effort or budget is `thinkingConfig`. Reasoning signed by another provider is left out
//! (Gemini cannot verify it), as are cache markers (Gemini caches by itself).

use serde_json::{json, Map, Value};

use super::{sanitize, split_call_id, LABEL};
use crate::error::ApiError;
use crate::provider::neutral::{
    self, effort_budget, invalid_messages, invalid_parameter, unsupported_content, Format, Image, Part,
    Reasoning, Role, ToolChoice, Unsupported,
};
use crate::provider::{Expect, Rendered};

/// The MIME type of an image URL, from its extension.
fn url_mime(url: &str) -> Option<&'static str> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let ext = path.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase())?;
    Some(match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "heic" => "image/heic",
        "heif" => "image/heif",
        _ => return None,
    })
}

fn image_part(image: &Image<'_>, at: &str) -> Result<Value, ApiError> {
    Ok(match image {
        Image::Base64 { media_type, data } => json!({"inlineData": {"mimeType": media_type, "data": data}}),
        Image::Url(url) => {
            let mime = url_mime(url).ok_or_else(|| {
                unsupported_content(
                    &format!("{at}: an image URL whose type its extension does not tell (.png, .jpg, .jpeg, .webp, .gif, .heic, .heif)"),
                    LABEL,
                )
            })?;
            json!({"fileData": {"mimeType": mime, "fileUri": url}})
        }
    })
}

/// The name of the function an earlier assistant turn called with `id`.
fn called<'a>(req: &'a neutral::Request<'_>, id: &str) -> Option<&'a str> {
    req.messages.iter().flat_map(|m| &m.parts).find_map(|p| match p {
        Part::ToolCall { id: i, name, .. } if *i == id => Some(*name),
        _ => None,
    })
}

fn tool_response(
    req: &neutral::Request<'_>,
    id: &str,
    content: &[Part<'_>],
    is_error: bool,
    at: &str,
) -> Result<Value, ApiError> {
    let name = called(req, id).ok_or_else(|| {
        invalid_messages(format!(
            "{at}: the tool result `{id}` answers no tool call of an earlier assistant message (Gemini names a result by its function)"
        ))
    })?;
    let mut text = String::new();
    for p in content {
        match p {
            Part::Text { text: t, .. } => text.push_str(t),
            _ => {
                return Err(unsupported_content(
                    &format!("{at}: content other than text in a tool result"),
                    LABEL,
                ))
            }
        }
    }
    let response = match serde_json::from_str::<Value>(&text) {
        Ok(v @ Value::Object(_)) if !is_error => v,
        _ if is_error => json!({"error": text}),
        _ => json!({"content": text}),
    };
    Ok(json!({"functionResponse": {"name": name, "response": response}}))
}

fn parts(req: &neutral::Request<'_>, m: &neutral::Message<'_>) -> Result<Vec<Value>, ApiError> {
    let at = format!("messages[{}]", m.index);
    let mut out = Vec::with_capacity(m.parts.len());
    for p in &m.parts {
        match (p, m.role) {
            (Part::Text { text: "", .. }, _) => {}
            (Part::Text { text, .. }, _) => out.push(json!({ "text": text })),
            (Part::Image { image, .. }, Role::User) => out.push(image_part(image, &at)?),
            (
                Part::ToolCall {
                    id, name, arguments, ..
                },
                Role::Assistant,
            ) => {
                let mut part = json!({"functionCall": {"name": name, "args": arguments.object(&at, id)?}});
                if let (Some(sig), Some(o)) = (split_call_id(id).1, part.as_object_mut()) {
                    o.insert("thoughtSignature".into(), Value::from(sig));
                }
                out.push(part);
            }
            (
                Part::ToolResult {
                    id,
                    content,
                    is_error,
                    ..
                },
                Role::User,
            ) => {
                out.push(tool_response(req, id, content, *is_error, &at)?);
            }
            // Another provider's signed reasoning: Gemini cannot take it back.
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

fn contents(req: &neutral::Request<'_>) -> Result<Vec<Value>, ApiError> {
    let mut turns: Vec<(Role, Vec<Value>)> = Vec::with_capacity(req.messages.len());
    for m in &req.messages {
        let p = parts(req, m)?;
        if p.is_empty() {
            if m.parts
                .iter()
                .all(|p| matches!(p, Part::Thinking { .. } | Part::RedactedThinking { .. }))
                && !m.parts.is_empty()
            {
                continue;
            }
            return Err(invalid_messages(format!("messages[{}] has no content", m.index)));
        }
        match turns.last_mut() {
            Some((role, into)) if *role == m.role => into.extend(p),
            _ => turns.push((m.role, p)),
        }
    }
    if turns.is_empty() {
        return Err(invalid_messages(
            "at least one user or assistant message is required".into(),
        ));
    }
    Ok(turns
        .into_iter()
        .map(|(role, parts)| {
            let role = match role {
                Role::User => "user",
                Role::Assistant => "model",
            };
            json!({"role": role, "parts": parts})
        })
        .collect())
}

fn thinking(reasoning: Reasoning<'_>) -> Result<Value, ApiError> {
    Ok(match reasoning {
        Reasoning::Effort(effort) => {
            let budget = effort_budget(effort).ok_or_else(|| {
                invalid_parameter(
                    "reasoning_effort",
                    "one of `none`, `minimal`, `low`, `medium`, `high`, `xhigh`, `max`",
                )
            })?;
            json!({"thinkingBudget": budget, "includeThoughts": true})
        }
        Reasoning::Budget(budget) => json!({"thinkingBudget": budget, "includeThoughts": true}),
        Reasoning::Adaptive => json!({"thinkingBudget": -1, "includeThoughts": true}),
        Reasoning::Off => json!({"thinkingBudget": 0}),
    })
}

/// The `generateContent` body for `req` (the model is in the path).
pub fn render(req: &neutral::Request<'_>, unsupported: &mut Unsupported) -> Result<Rendered, ApiError> {
    let mut out = Map::new();
    let mut config = Map::new();
    for (name, value) in &req.extra {
        let key = match name.as_ref() {
            "seed" => "seed",
            "presence_penalty" => "presencePenalty",
            "frequency_penalty" => "frequencyPenalty",
            "n" => "candidateCount",
            other => {
                unsupported.parameter(other, LABEL)?;
                continue;
            }
        };
        if key == "candidateCount" {
            // One answer is read back: several candidates cannot be returned.
            unsupported.parameter("n", LABEL)?;
            continue;
        }
        config.insert(key.into(), (*value).clone());
    }
    out.insert("contents".into(), Value::Array(contents(req)?));
    let system: Vec<Value> = req
        .system
        .iter()
        .filter(|s| !s.text.is_empty())
        .map(|s| json!({"text": s.text}))
        .collect();
    if !system.is_empty() {
        out.insert("systemInstruction".into(), json!({ "parts": system }));
    }
    if let Some(n) = req.max_tokens {
        config.insert("maxOutputTokens".into(), Value::from(n));
    }
    for (name, v) in [
        ("temperature", req.temperature),
        ("topP", req.top_p),
        ("topK", req.top_k),
    ] {
        if let Some(n) = v {
            config.insert(name.into(), Value::Number(n.clone()));
        }
    }
    if !req.stop.is_empty() {
        config.insert("stopSequences".into(), Value::from(req.stop.clone()));
    }
    if req.user.is_some() {
        unsupported.parameter("user", LABEL)?;
    }
    if req.priority_tier.is_some() {
        unsupported.parameter("service_tier", LABEL)?;
    }
    match &req.format {
        None => {}
        Some(Format::JsonObject) => {
            config.insert("responseMimeType".into(), "application/json".into());
        }
        Some(Format::JsonSchema { schema, .. }) => {
            config.insert("responseMimeType".into(), "application/json".into());
            config.insert(
                "responseSchema".into(),
                sanitize(schema, "response_format.json_schema.schema")?,
            );
        }
    }
    if let Some(r) = req.reasoning {
        config.insert("thinkingConfig".into(), thinking(r)?);
    }
    if !req.tools.is_empty() {
        let mut declarations = Vec::with_capacity(req.tools.len());
        for (i, t) in req.tools.iter().enumerate() {
            let mut d = Map::new();
            d.insert("name".into(), Value::from(t.name));
            if let Some(desc) = t.description {
                d.insert("description".into(), Value::from(desc));
            }
            if let Some(s) = t.schema {
                // A function without parameters sends none (Gemini refuses an empty object schema).
                let empty = s
                    .get("properties")
                    .and_then(Value::as_object)
                    .is_none_or(Map::is_empty)
                    && s.get("type").and_then(Value::as_str) == Some("object");
                if !empty {
                    d.insert(
                        "parameters".into(),
                        sanitize(s, &format!("tools[{i}].function.parameters"))?,
                    );
                }
            }
            declarations.push(Value::Object(d));
        }
        out.insert("tools".into(), json!([{ "functionDeclarations": declarations }]));
        if req.parallel_tool_calls == Some(false) {
            unsupported.parameter("parallel_tool_calls", LABEL)?;
        }
    }
    let mode = match (req.tool_choice, req.tools.is_empty()) {
        (None, _) | (Some(ToolChoice::Auto | ToolChoice::None), true) => None,
        (Some(ToolChoice::Auto), false) => Some(json!({"mode": "AUTO"})),
        (Some(ToolChoice::None), false) => Some(json!({"mode": "NONE"})),
        (Some(ToolChoice::Required), false) => Some(json!({"mode": "ANY"})),
        (Some(ToolChoice::Named(name)), false) => {
            Some(json!({"mode": "ANY", "allowedFunctionNames": [name]}))
        }
        (Some(_), true) => return Err(invalid_parameter("tool_choice", "used together with `tools`")),
    };
    if let Some(m) = mode {
        out.insert("toolConfig".into(), json!({ "functionCallingConfig": m }));
    }
    if !config.is_empty() {
        out.insert("generationConfig".into(), Value::Object(config));
    }
    Ok(Rendered {
        body: Value::Object(out).to_string().into_bytes(),
        expect: Expect::default(),
    })
}

/// The embeddings body: AI Studio's `batchEmbedContents` when `model` (`models/{m}`) is given, Vertex
/// AI's `predict` otherwise.
pub fn embeddings(
    req: &neutral::EmbeddingsRequest<'_>,
    model: Option<&str>,
    unsupported: &mut Unsupported,
) -> Result<Vec<u8>, ApiError> {
    for (name, _) in &req.extra {
        unsupported.parameter(name, LABEL)?;
    }
    if req.user.is_some() {
        unsupported.parameter("user", LABEL)?;
    }
    let body = match model {
        Some(model) => {
            let requests: Vec<Value> = req
                .inputs
                .iter()
                .map(|text| {
                    let mut r = Map::new();
                    r.insert("model".into(), Value::from(model));
                    r.insert("content".into(), json!({"parts": [{"text": text}]}));
                    if let Some(d) = req.dimensions {
                        r.insert("outputDimensionality".into(), Value::from(d));
                    }
                    Value::Object(r)
                })
                .collect();
            json!({ "requests": requests })
        }
        None => {
            let instances: Vec<Value> = req.inputs.iter().map(|text| json!({ "content": text })).collect();
            let mut body = Map::new();
            body.insert("instances".into(), Value::Array(instances));
            if let Some(d) = req.dimensions {
                body.insert("parameters".into(), json!({ "outputDimensionality": d }));
            }
            Value::Object(body)
        }
    };
    Ok(body.to_string().into_bytes())
}

#[cfg(test)]
mod tests {
    use crate::error::ApiError;
    use crate::provider::gemini::Gemini;
    use crate::provider::openai::parse_chat_request;
    use crate::provider::{ChatRequest, Exchange, OnUnsupported};
    use serde_json::{json, Value};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn translate_with(req: Value, on: OnUnsupported) -> Result<(Value, Vec<String>), ApiError> {
        let req = parse_chat_request(req.to_string().as_bytes()).unwrap();
        Exchange::prepare_with(&req, &Gemini::new("gemini-2.0-flash"), on)
            .map(|(bytes, ex)| (serde_json::from_slice(&bytes).unwrap(), ex.dropped))
    }

    fn translate(req: Value) -> Result<Value, ApiError> {
        translate_with(req, OnUnsupported::Refuse).map(|(v, _)| v)
    }

    #[test]
    fn text_chat() {
        let cases = [
            (
                json!({"model": "g", "messages": [{"role": "user", "content": "Hello"}]}),
                json!({"contents": [{"role": "user", "parts": [{"text": "Hello"}]}]}),
            ),
            (
                json!({"model": "g", "messages": [
                        {"role": "system", "content": "Be brief."},
                        {"role": "developer", "content": "In French."},
                        {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "there"}]},
                        {"role": "assistant", "content": "Bonjour"},
                        {"role": "user", "content": "Again"},
                        {"role": "user", "content": "Please"}],
                       "max_tokens": 100, "temperature": 0.5, "top_p": 0.9, "stop": ["END"], "seed": 7,
                       "presence_penalty": 0.5, "n": 1, "stream": true}),
                json!({"systemInstruction": {"parts": [{"text": "Be brief."}, {"text": "In French."}]},
                       "contents": [
                        {"role": "user", "parts": [{"text": "Hi"}, {"text": "there"}]},
                        {"role": "model", "parts": [{"text": "Bonjour"}]},
                        {"role": "user", "parts": [{"text": "Again"}, {"text": "Please"}]}],
                       "generationConfig": {"maxOutputTokens": 100, "temperature": 0.5, "topP": 0.9,
                                            "stopSequences": ["END"], "seed": 7, "presencePenalty": 0.5}}),
            ),
        ];
        for (req, want) in cases {
            assert_eq!(translate(req.clone()).unwrap(), want, "{req}");
        }
    }

    #[test]
    fn images() {
        let req = json!({"model": "g", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.JPG?x=1"}}]}]});
        assert_eq!(
            translate(req).unwrap()["contents"][0]["parts"],
            json!([{"text": "What is this?"},
                   {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
                   {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/cat.JPG?x=1"}}])
        );
        let req = json!({"model": "g", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/image"}}]}]});
        let e = translate(req).unwrap_err();
        assert_eq!(e.code, "unsupported_content");
        assert!(
            e.message.starts_with("messages[0]: an image URL"),
            "{}",
            e.message
        );
    }

    #[test]
    fn tools_and_the_result_round_trip() {
        let req = json!({"model": "g",
            "messages": [
                {"role": "user", "content": "Weather in Paris and Rome?"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": ""}}]},
                {"role": "tool", "tool_call_id": "call_a", "content": "{\"temp\":21}"},
                {"role": "tool", "tool_call_id": "call_b", "content": "noon"}],
            "tools": [
                {"type": "function", "function": {"name": "get_weather", "description": "Weather",
                  "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                 "required": ["city"], "additionalProperties": false}, "strict": true}},
                {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}}});
        assert_eq!(
            translate(req).unwrap(),
            json!({"contents": [
                    {"role": "user", "parts": [{"text": "Weather in Paris and Rome?"}]},
                    {"role": "model", "parts": [
                        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                        {"functionCall": {"name": "get_time", "args": {}}}]},
                    {"role": "user", "parts": [
                        {"functionResponse": {"name": "get_weather", "response": {"temp": 21}}},
                        {"functionResponse": {"name": "get_time", "response": {"content": "noon"}}}]}],
                   "tools": [{"functionDeclarations": [
                       {"name": "get_weather", "description": "Weather",
                        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
                       {"name": "get_time"}]}],
                   "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}}})
        );
        let orphan = json!({"model": "g", "messages": [
            {"role": "user", "content": "x"},
            {"role": "tool", "tool_call_id": "call_zz", "content": "r"}]});
        let e = translate(orphan).unwrap_err();
        assert!(
            e.message.contains("`call_zz` answers no tool call"),
            "{}",
            e.message
        );
        let refused = json!({"model": "g", "messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "function", "function": {"name": "f",
                "parameters": {"type": "object", "properties": {"a": {"$ref": "#/$defs/a"}}}}}]});
        let e = translate(refused).unwrap_err();
        assert_eq!(e.code, "unsupported_schema");
        assert!(
            e.message
                .starts_with("`tools[0].function.parameters.properties.a`: the JSON Schema keyword `$ref`"),
            "{}",
            e.message
        );
    }

    #[test]
    fn thought_signatures_go_back_with_their_calls() {
        let req = json!({"model": "g", "messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1__thought__c2ln", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_1__thought__c2ln", "content": "ok"}],
            "tools": [{"type": "function", "function": {"name": "f"}}]});
        let v = translate(req).unwrap();
        assert_eq!(
            v["contents"][1]["parts"][0],
            json!({"functionCall": {"name": "f", "args": {}}, "thoughtSignature": "c2ln"})
        );
        assert_eq!(v["contents"][2]["parts"][0]["functionResponse"]["name"], "f");
    }

    #[test]
    fn anthropic_door_tool_results() {
        let body = json!({"model": "g", "max_tokens": 64, "system": "S", "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm", "signature": "sig"},
                                              {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"x": 1}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "boom", "is_error": true}]}]});
        let req = ChatRequest::parse(crate::provider::Api::Messages, body).unwrap();
        let (bytes, _) = Exchange::prepare(&req, &Gemini::new("g")).unwrap();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            v,
            json!({"systemInstruction": {"parts": [{"text": "S"}]},
                   "contents": [
                    {"role": "user", "parts": [{"text": "q"}]},
                    {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {"x": 1}}}]},
                    {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {"error": "boom"}}}]}],
                   "generationConfig": {"maxOutputTokens": 64}})
        );
    }

    #[test]
    fn structured_output_and_reasoning() {
        let req = json!({"model": "g", "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "r", "strict": true,
                "schema": {"type": "object", "properties": {"n": {"type": "integer"}}, "additionalProperties": false}}},
            "reasoning_effort": "low"});
        assert_eq!(
            translate(req).unwrap()["generationConfig"],
            json!({"responseMimeType": "application/json",
                   "responseSchema": {"type": "object", "properties": {"n": {"type": "integer"}}},
                   "thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": true}})
        );
        let req = json!({"model": "g", "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_object"}});
        assert_eq!(
            translate(req).unwrap()["generationConfig"],
            json!({"responseMimeType": "application/json"})
        );
        let req = json!({"model": "g", "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "r",
                "schema": {"type": "object", "properties": {"n": {"type": "integer", "exclusiveMinimum": 0}}}}}});
        let e = translate(req).unwrap_err();
        assert!(
            e.message.starts_with("`response_format.json_schema.schema.properties.n`: the JSON Schema keyword `exclusiveMinimum`"),
            "{}",
            e.message
        );
    }

    #[test]
    fn unsupported_parameters() {
        let req = json!({"model": "g", "messages": [{"role": "user", "content": "x"}], "n": 2, "user": "u",
                         "logit_bias": {"1": 2}});
        let e = translate(req.clone()).unwrap_err();
        assert_eq!(e.code, "unsupported_parameter");
        let (v, dropped) = translate_with(req, OnUnsupported::Drop).unwrap();
        assert_eq!(dropped, vec!["logit_bias", "n", "user"]);
        assert!(v.get("generationConfig").is_none(), "{v}");
    }
}
