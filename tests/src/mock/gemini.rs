//! The Gemini wire format, as Google AI Studio and Vertex AI serve it.
//!
//! Paths: `/{v}/models/{model}:{method}` (AI Studio: `x-goog-api-key`, or `?key=`) and
//! `/{v}/projects/{p}/locations/{l}/publishers/google/models/{model}:{method}` (Vertex AI:
//! `authorization: Bearer <token>`); methods `generateContent`, `streamGenerateContent` (with
//! `alt=sse`: SSE, one `GenerateContentResponse` per event, no end event; without it Gemini answers a
//! JSON array, which the mock refuses), `batchEmbedContents` / `embedContent` (AI Studio) and
//! `predict` (Vertex embeddings).
//!
//! Read from a request: `contents` (roles `user` and `model`, which must alternate as Gemini
//! requires; `text`, `inlineData`, `fileData`, `functionCall`, `functionResponse` parts),
//! `systemInstruction`, `tools[].functionDeclarations` (their `parameters` checked against Gemini's
//! schema subset: an unknown keyword is refused with Gemini's 400, as the real API does),
//! `toolConfig.functionCallingConfig` (`AUTO`, `ANY` with `allowedFunctionNames`, `NONE`),
//! `generationConfig` (`responseMimeType`, `responseSchema`, `thinkingConfig.includeThoughts`; a
//! `model` field in the body is refused, as Gemini has it in the path). Tool calls carry no ids.
//! Usage is `usageMetadata` (`cachedContentTokenCount` from `x-mock-cached`, `thoughtsTokenCount`
//! for the thinking text). With `thinkingConfig.includeThoughts`, function calls carry a
//! `thoughtSignature`, and a function call sent back must carry it again, as Gemini 3 requires.

use serde_json::{json, Map, Value};

use super::engine::{
    image_kind, thinking_signature, words, Answer, Chat, Content, Format, Tool, ToolChoice, IMAGE_TYPES,
};
use super::{engine, ApiError, Endpoint, Operation, Request, Wire};

/// Gemini's `Schema` fields (the mock refuses any other, as Gemini does).
const SCHEMA_FIELDS: [&str; 22] = [
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "items",
    "minItems",
    "maxItems",
    "properties",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "minimum",
    "maximum",
    "anyOf",
    "propertyOrdering",
    "default",
    "example",
];

#[derive(Debug, Clone)]
pub(crate) struct Gemini {
    model: String,
    vertex: bool,
    method: String,
    /// `x-mock-finish: <finishReason>`: the answer ends with it (`SAFETY`: no content, a rating of
    /// `HIGH`); `x-mock-finish: PROMPT_<reason>` blocks the prompt (`promptFeedback.blockReason`).
    finish: std::cell::RefCell<Option<String>>,
}

/// The endpoint of a Gemini path, if it is one.
pub(crate) fn route(path: &str) -> Option<Endpoint> {
    let (base, method) = path.rsplit_once(':')?;
    let (prefix, model) = base.rsplit_once("/models/")?;
    if model.is_empty() || model.contains('/') {
        return None;
    }
    let segments: Vec<&str> = prefix.split('/').collect();
    let vertex = match segments.as_slice() {
        ["", _version] => false,
        ["", _version, "projects", p, "locations", l, "publishers", "google"]
            if !p.is_empty() && !l.is_empty() =>
        {
            true
        }
        _ => return None,
    };
    let operation = match method {
        "generateContent" | "streamGenerateContent" => Operation::Chat,
        "batchEmbedContents" | "embedContent" if !vertex => Operation::Embeddings,
        "predict" if vertex => Operation::Embeddings,
        _ => return None,
    };
    let wire = Gemini {
        model: model.to_string(),
        vertex,
        method: method.to_string(),
        finish: std::cell::RefCell::new(None),
    };
    Some(Endpoint::Api(Box::new(wire), operation))
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(message)
}

/// Checks a schema against Gemini's subset; `at` is Gemini's name for where it is.
fn check_schema(schema: &Value, at: &str) -> Result<(), ApiError> {
    let Some(o) = schema.as_object() else {
        return Err(bad(format!("Invalid value at '{at}': not an object")));
    };
    for (k, v) in o {
        if !SCHEMA_FIELDS.contains(&k.as_str()) {
            return Err(bad(format!(
                "Invalid JSON payload received. Unknown name \"{k}\" at '{at}': Cannot find field."
            )));
        }
        match k.as_str() {
            "properties" => {
                for (name, s) in v.as_object().into_iter().flatten() {
                    check_schema(s, &format!("{at}.properties[{name}].value"))?;
                }
            }
            "items" => check_schema(v, &format!("{at}.items"))?,
            "anyOf" => {
                for (i, s) in v.as_array().into_iter().flatten().enumerate() {
                    check_schema(s, &format!("{at}.any_of[{i}]"))?;
                }
            }
            "type" if !v.is_string() => {
                return Err(bad(format!("Invalid value at '{at}.type': a list is not a Type")));
            }
            _ => {}
        }
    }
    Ok(())
}

fn parts(turn: &Value) -> &[Value] {
    turn.get("parts")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn text_of(turn: &Value) -> String {
    parts(turn)
        .iter()
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A function response's text: its `content` when that is all it is, else its JSON.
fn response_text(r: &Value) -> String {
    let response = r.get("response");
    match response.and_then(Value::as_object) {
        Some(o) if o.len() == 1 && o.get("content").is_some_and(Value::is_string) => o
            .get("content")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        _ => response.map(Value::to_string).unwrap_or_default(),
    }
}

fn count_images(contents: &[Value]) -> Result<usize, ApiError> {
    let mut n = 0;
    for (i, turn) in contents.iter().enumerate() {
        for (j, p) in parts(turn).iter().enumerate() {
            if let Some(inline) = p.get("inlineData") {
                let mime = inline.get("mimeType").and_then(Value::as_str).unwrap_or_default();
                let data = inline.get("data").and_then(Value::as_str).unwrap_or_default();
                if !IMAGE_TYPES.contains(&mime) || image_kind(data) != Some(mime) {
                    return Err(bad(format!(
                        "Invalid value at 'contents[{i}].parts[{j}].inline_data': Unable to process input image."
                    )));
                }
                n += 1;
            } else if let Some(file) = p.get("fileData") {
                let uri = file.get("fileUri").and_then(Value::as_str).unwrap_or_default();
                if file
                    .get("mimeType")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                    || uri.is_empty()
                {
                    return Err(bad(format!(
                        "contents[{i}].parts[{j}].file_data: mimeType and fileUri are required"
                    )));
                }
                n += 1;
            }
        }
    }
    Ok(n)
}

fn read_tools(body: &Map<String, Value>) -> Result<Vec<Tool>, ApiError> {
    let mut out = Vec::new();
    for (i, t) in body
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        for (j, d) in t
            .get("functionDeclarations")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let name = d.get("name").and_then(Value::as_str).unwrap_or_default();
            if name.is_empty() {
                return Err(bad(format!(
                    "* GenerateContentRequest.tools[{i}].function_declarations[{j}].name: Name cannot be empty."
                )));
            }
            let schema = match d.get("parameters") {
                Some(p) => {
                    check_schema(p, &format!("tools[{i}].function_declarations[{j}].parameters"))?;
                    p.clone()
                }
                None => json!({"type": "object", "properties": {}}),
            };
            out.push(Tool {
                name: name.to_string(),
                schema,
            });
        }
    }
    Ok(out)
}

fn read_tool_choice(body: &Map<String, Value>, tools: &[Tool]) -> Result<ToolChoice, ApiError> {
    let Some(c) = body
        .get("toolConfig")
        .and_then(|t| t.get("functionCallingConfig"))
    else {
        return Ok(ToolChoice::Auto);
    };
    let allowed: Vec<&str> = c
        .get("allowedFunctionNames")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    Ok(match c.get("mode").and_then(Value::as_str) {
        None | Some("AUTO") => ToolChoice::Auto,
        Some("NONE") => ToolChoice::None,
        Some("ANY") => match allowed.as_slice() {
            [] => ToolChoice::Required,
            [one] if tools.iter().any(|t| t.name == *one) => ToolChoice::Named((*one).to_string()),
            [one] => {
                return Err(bad(format!(
                    "allowedFunctionNames: {one:?} is not a declared function"
                )))
            }
            _ => ToolChoice::Required,
        },
        Some(other) => {
            return Err(bad(format!(
                "Invalid value at 'tool_config.function_calling_config.mode' ({other})"
            )))
        }
    })
}

impl Gemini {
    fn check_auth(&self, req: &Request) -> Result<(), ApiError> {
        if self.vertex {
            let bearer = req
                .header("authorization")
                .and_then(|v| v.strip_prefix("Bearer "))
                .is_some_and(|t| !t.trim().is_empty());
            if !bearer {
                return Err(ApiError::new(
                    401,
                    "Request is missing required authentication credential. Expected OAuth 2 access token.",
                ));
            }
        } else {
            let key = req
                .header("x-goog-api-key")
                .or_else(|| req.query("key"))
                .is_some_and(|k| !k.trim().is_empty());
            if !key {
                return Err(ApiError::new(
                    403,
                    "Method doesn't allow unregistered callers. Please use API Key or other form of API consumer identity to call this API.",
                ));
            }
        }
        Ok(())
    }

    /// The answer's end as `x-mock-finish` asks: `None` for a normal one, else the candidate (or
    /// prompt feedback) that replaces it.
    fn blocked(&self, n: u64, a: &Answer) -> Option<Value> {
        let finish = self.finish.borrow().clone()?;
        let rating =
            json!([{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": true}]);
        let mut v = match finish.strip_prefix("PROMPT_") {
            Some(reason) => json!({"promptFeedback": {"blockReason": reason, "safetyRatings": rating}}),
            None => json!({"candidates": [{"finishReason": finish, "index": 0, "safetyRatings": rating}]}),
        };
        v["usageMetadata"] = json!({"promptTokenCount": a.usage.prompt, "totalTokenCount": a.usage.prompt});
        v["modelVersion"] = json!(a.model);
        v["responseId"] = json!(format!("mock-gemini-{n}"));
        Some(v)
    }

    /// A function call part; with thinking on it carries a `thoughtSignature`, as Gemini's thinking
    /// models give (and require back).
    fn call_part(a: &Answer, c: &engine::ToolCall) -> Value {
        let mut part = json!({"functionCall": {"name": c.name, "args": c.arguments}});
        if a.thinking.is_some() {
            part["thoughtSignature"] = json!(thinking_signature(&c.name));
        }
        part
    }

    fn usage_json(a: &Answer) -> Value {
        let thoughts = a.thinking.as_ref().map_or(0, |t| words(&t.text));
        let d = a.usage.details.clone().unwrap_or_default();
        let thoughts = thoughts.max(d.reasoning);
        let mut u = json!({
            "promptTokenCount": a.usage.prompt,
            "candidatesTokenCount": a.usage.completion.saturating_sub(thoughts),
            "totalTokenCount": a.usage.prompt + a.usage.completion,
        });
        if d.cache_read > 0 {
            u["cachedContentTokenCount"] = json!(d.cache_read);
        }
        if thoughts > 0 {
            u["thoughtsTokenCount"] = json!(thoughts);
        }
        u
    }

    fn answer_parts(a: &Answer) -> Vec<Value> {
        let mut out = Vec::new();
        if let Some(t) = &a.thinking {
            out.push(json!({"text": t.text, "thought": true}));
        }
        match &a.content {
            Content::Text { text, .. } => out.push(json!({ "text": text })),
            Content::Tools { calls, .. } => {
                for c in calls {
                    out.push(Self::call_part(a, c));
                }
            }
        }
        out
    }
}

impl Wire for Gemini {
    fn name(&self) -> &'static str {
        if self.vertex {
            "vertex_ai"
        } else {
            "gemini"
        }
    }

    fn fault_model<'a>(&'a self, _body: Option<&'a Value>) -> Option<&'a str> {
        Some(&self.model)
    }

    fn read_chat(&self, req: &Request, body: Option<&Value>) -> Result<Chat, ApiError> {
        self.check_auth(req)?;
        let stream = self.method == "streamGenerateContent";
        if stream && req.query("alt") != Some("sse") {
            return Err(bad("mock: streamGenerateContent without alt=sse answers a JSON array, which the mock does not serve"));
        }
        let Some(body) = body.and_then(Value::as_object) else {
            return Err(bad("Invalid JSON payload received."));
        };
        for k in body.keys() {
            if ![
                "contents",
                "systemInstruction",
                "tools",
                "toolConfig",
                "generationConfig",
                "safetySettings",
                "cachedContent",
            ]
            .contains(&k.as_str())
            {
                return Err(bad(format!(
                    "Invalid JSON payload received. Unknown name \"{k}\": Cannot find field."
                )));
            }
        }
        let contents = match body.get("contents").and_then(Value::as_array) {
            Some(c) if !c.is_empty() => c,
            _ => {
                return Err(bad(
                    "* GenerateContentRequest.contents: contents is not specified",
                ))
            }
        };
        let mut previous = "";
        for (i, turn) in contents.iter().enumerate() {
            let role = turn.get("role").and_then(Value::as_str).unwrap_or("user");
            if role != "user" && role != "model" {
                return Err(bad(format!(
                    "Please use a valid role: user, model. (contents[{i}].role {role:?})"
                )));
            }
            if role == previous {
                return Err(bad(format!(
                    "mock: contents[{i}]: two {role} turns in a row (Gemini wants the roles to alternate)"
                )));
            }
            if parts(turn).is_empty() {
                return Err(bad(format!(
                    "* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty."
                )));
            }
            previous = role;
        }
        let images = count_images(contents)?;
        *self.finish.borrow_mut() = req.header("x-mock-finish").map(str::to_string);
        let tools = read_tools(body)?;
        let tool_choice = read_tool_choice(body, &tools)?;
        let config = body.get("generationConfig");
        let field = |k: &str| config.and_then(|c| c.get(k));
        let format = match field("responseMimeType").and_then(Value::as_str) {
            None | Some("text/plain") => Format::Text,
            Some("application/json") => match field("responseSchema") {
                Some(s) => {
                    check_schema(s, "generation_config.response_schema")?;
                    Format::JsonSchema(s.clone())
                }
                None => Format::JsonObject,
            },
            Some(other) => return Err(bad(format!("mock: responseMimeType {other:?} is not served"))),
        };
        let thinking = field("thinkingConfig")
            .and_then(|t| t.get("includeThoughts"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        // Thinking models refuse a function call sent back without its signature (Gemini 3 does).
        if thinking {
            for (i, turn) in contents.iter().enumerate() {
                for (j, p) in parts(turn).iter().enumerate() {
                    let Some(call) = p.get("functionCall") else {
                        continue;
                    };
                    let name = call.get("name").and_then(Value::as_str).unwrap_or_default();
                    if p.get("thoughtSignature").and_then(Value::as_str)
                        != Some(thinking_signature(name).as_str())
                    {
                        return Err(bad(format!(
                            "Function call is missing a thought_signature in functionCall parts (contents[{i}].parts[{j}])."
                        )));
                    }
                }
            }
        }
        let last = contents.last();
        let tool_results: Vec<String> = last
            .filter(|t| t.get("role").and_then(Value::as_str) != Some("model"))
            .map(|t| {
                parts(t)
                    .iter()
                    .filter_map(|p| p.get("functionResponse"))
                    .map(response_text)
                    .collect()
            })
            .unwrap_or_default();
        let last_user_text = contents
            .iter()
            .rev()
            .filter(|t| t.get("role").and_then(Value::as_str) != Some("model"))
            .map(text_of)
            .find(|t| !t.is_empty())
            .unwrap_or_default();
        let system = body.get("systemInstruction").map(text_of).unwrap_or_default();
        let prompt_tokens = contents
            .iter()
            .map(|t| {
                words(&text_of(t))
                    + parts(t)
                        .iter()
                        .filter_map(|p| p.get("functionResponse"))
                        .map(|r| words(&response_text(r)))
                        .sum::<u64>()
            })
            .sum::<u64>()
            + words(&system);
        Ok(Chat {
            model: self.model.clone(),
            stream,
            include_usage: true,
            last_user_text,
            prompt_tokens,
            images,
            tool_choice,
            parallel: true,
            tool_results,
            format,
            id_seed: json!([body.get("systemInstruction"), contents, body.get("tools")])
                .to_string()
                .into_bytes(),
            tools,
            thinking,
        })
    }

    fn error_body(&self, err: &ApiError) -> Value {
        let status = match err.status {
            400 => "INVALID_ARGUMENT",
            401 => "UNAUTHENTICATED",
            403 => "PERMISSION_DENIED",
            404 => "NOT_FOUND",
            429 => "RESOURCE_EXHAUSTED",
            503 => "UNAVAILABLE",
            504 => "DEADLINE_EXCEEDED",
            _ => "INTERNAL",
        };
        json!({"error": {"code": err.status, "message": err.message, "status": status}})
    }

    fn chat_json(&self, n: u64, a: &Answer) -> Value {
        if let Some(v) = self.blocked(n, a) {
            return v;
        }
        json!({
            "candidates": [{
                "content": {"role": "model", "parts": Self::answer_parts(a)},
                "finishReason": "STOP",
                "index": 0,
                "safetyRatings": [{"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"}]
            }],
            "usageMetadata": Self::usage_json(a),
            "modelVersion": a.model,
            "responseId": format!("mock-gemini-{n}"),
        })
    }

    fn chat_events(&self, n: u64, a: &Answer) -> Vec<String> {
        if let Some(v) = self.blocked(n, a) {
            return vec![format!("data: {v}\r\n\r\n")];
        }
        let id = format!("mock-gemini-{n}");
        let event = |parts: Vec<Value>, last: bool| {
            let mut chunk = json!({
                "candidates": [{"content": {"role": "model", "parts": parts}, "index": 0}],
                "modelVersion": a.model,
                "responseId": id,
            });
            if last {
                chunk["candidates"][0]["finishReason"] = json!("STOP");
                chunk["usageMetadata"] = Self::usage_json(a);
            } else {
                chunk["usageMetadata"] =
                    json!({"promptTokenCount": a.usage.prompt, "totalTokenCount": a.usage.prompt});
            }
            format!("data: {chunk}\r\n\r\n")
        };
        let mut events = Vec::new();
        if let Some(t) = &a.thinking {
            events.push(event(vec![json!({"text": t.text, "thought": true})], false));
        }
        match &a.content {
            Content::Text { pieces, .. } => {
                let n = pieces.len();
                for (i, p) in pieces.iter().enumerate() {
                    events.push(event(vec![json!({ "text": p })], i + 1 == n));
                }
                if n == 0 {
                    events.push(event(vec![json!({"text": ""})], true));
                }
            }
            Content::Tools { calls, .. } => {
                // Gemini sends each call whole; several calls may share a chunk.
                let n = calls.len();
                for (i, c) in calls.iter().enumerate() {
                    events.push(event(vec![Self::call_part(a, c)], i + 1 == n));
                }
            }
        }
        events
    }

    fn embeddings(&self, req: &Request, body: Option<&Value>) -> Result<Value, ApiError> {
        self.check_auth(req)?;
        let Some(body) = body.and_then(Value::as_object) else {
            return Err(bad("Invalid JSON payload received."));
        };
        let dims = |d: Option<&Value>| -> Result<usize, ApiError> {
            match d {
                None => Ok(super::EMBEDDING_DIMENSIONS),
                Some(v) => match v.as_u64() {
                    Some(n @ 1..=3072) => Ok(n as usize),
                    _ => Err(bad("outputDimensionality must be between 1 and 3072")),
                },
            }
        };
        let vector = |text: &str, d: usize| -> Value {
            json!(engine::embedding(text.as_bytes(), d)
                .iter()
                .map(|x| f64::from(*x))
                .collect::<Vec<f64>>())
        };
        let content_text = |c: Option<&Value>| -> Result<String, ApiError> {
            let text = c.map(text_of).unwrap_or_default();
            if text.is_empty() {
                return Err(bad(
                    "* BatchEmbedContentsRequest.requests[].content: content is empty",
                ));
            }
            Ok(text)
        };
        match self.method.as_str() {
            "predict" => {
                let instances = body
                    .get("instances")
                    .and_then(Value::as_array)
                    .ok_or_else(|| bad("instances: required"))?;
                let d = dims(body.get("parameters").and_then(|p| p.get("outputDimensionality")))?;
                let mut predictions = Vec::with_capacity(instances.len());
                let mut total = 0;
                for inst in instances {
                    let text = inst.get("content").and_then(Value::as_str).unwrap_or_default();
                    let tokens = words(text);
                    total += tokens;
                    predictions.push(json!({"embeddings": {"values": vector(text, d),
                        "statistics": {"token_count": tokens, "truncated": false}}}));
                }
                // x-mock-usage P: the first prediction carries what is left of P.
                let prompt = engine::usage(req, total, 0)?.prompt;
                if prompt != total {
                    if let Some(first) = predictions.first_mut() {
                        first["embeddings"]["statistics"]["token_count"] = json!(prompt);
                    }
                    for p in predictions.iter_mut().skip(1) {
                        p["embeddings"]["statistics"]["token_count"] = json!(0);
                    }
                }
                Ok(json!({ "predictions": predictions }))
            }
            "embedContent" => {
                let text = content_text(body.get("content"))?;
                let d = dims(body.get("outputDimensionality"))?;
                Ok(json!({"embedding": {"values": vector(&text, d)}}))
            }
            _ => {
                let requests = body
                    .get("requests")
                    .and_then(Value::as_array)
                    .ok_or_else(|| bad("requests: required"))?;
                let mut out = Vec::with_capacity(requests.len());
                for r in requests {
                    let want = format!("models/{}", self.model);
                    if r.get("model").and_then(Value::as_str) != Some(want.as_str()) {
                        return Err(bad(format!(
                            "Model in each request must match the model in the URL ({want})"
                        )));
                    }
                    let text = content_text(r.get("content"))?;
                    out.push(json!({"values": vector(&text, dims(r.get("outputDimensionality"))?)}));
                }
                Ok(json!({ "embeddings": out }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let cases = [
            (
                "/v1beta/models/gemini-2.0-flash:generateContent",
                Some(("gemini", "generateContent")),
            ),
            (
                "/v1beta/models/g:streamGenerateContent",
                Some(("gemini", "streamGenerateContent")),
            ),
            (
                "/v1beta/models/g:batchEmbedContents",
                Some(("gemini", "batchEmbedContents")),
            ),
            (
                "/v1/projects/p/locations/us-central1/publishers/google/models/g:generateContent",
                Some(("vertex_ai", "generateContent")),
            ),
            (
                "/v1/projects/p/locations/global/publishers/google/models/g:predict",
                Some(("vertex_ai", "predict")),
            ),
            ("/v1beta/models/g:predict", None),
            ("/v1beta/models/:generateContent", None),
            ("/v1beta/x/models/g:generateContent", None),
            ("/v1/chat/completions", None),
        ];
        for (path, want) in cases {
            let got = match route(path) {
                Some(Endpoint::Api(w, _)) => Some(w.name()),
                _ => None,
            };
            assert_eq!(got, want.map(|(n, _)| n), "{path}");
        }
    }

    #[test]
    fn refuses_keywords_outside_the_subset() {
        let ok = json!({"type": "object", "properties": {"a": {"type": "string", "enum": ["x"]}}, "required": ["a"]});
        assert!(check_schema(&ok, "p").is_ok());
        let e = check_schema(&json!({"type": "object", "additionalProperties": false}), "p").unwrap_err();
        assert!(
            e.message.contains("Unknown name \"additionalProperties\" at 'p'"),
            "{}",
            e.message
        );
        let e = check_schema(&json!({"type": ["string", "null"]}), "p").unwrap_err();
        assert_eq!(e.status, 400);
    }
}
