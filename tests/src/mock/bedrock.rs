//! The AWS Bedrock wire format: Converse (`POST /model/{id}/converse`), ConverseStream
//! (`/model/{id}/converse-stream`, binary `application/vnd.amazon.eventstream` messages with real
//! prelude and message CRCs) and InvokeModel embeddings (`/model/{id}/invoke`: Titan
//! `amazon.titan-embed-*` takes one `inputText`, Cohere `cohere.embed-*` `texts` and a required
//! `input_type`). The model id is percent-decoded from the path (`…-v1%3A0`).
//!
//! Auth: `authorization: Bearer <key>` (a Bedrock API key), or SigV4: an `authorization` of the shape
//! `AWS4-HMAC-SHA256 Credential=<key id>/<yyyymmdd>/<region>/bedrock/aws4_request,
//! SignedHeaders=…host…x-amz-content-sha256…x-amz-date…, Signature=<64 hex>`, an `x-amz-date` of the
//! credential's day, and an `x-amz-content-sha256` equal to the SHA-256 of the body received. For the key
//! id [`MOCK_ACCESS_KEY_ID`] the signature itself is recomputed with [`MOCK_SECRET`] over what was
//! received (host, path, body, date), so a test proves the gateway signed the call Bedrock gets.
//!
//! Read from a Converse request: `messages` (roles alternating, `text`, `image` with `bytes`,
//! `toolUse`, `toolResult` blocks, `cachePoint` markers), `system`, `toolConfig` (`tools[].toolSpec`,
//! `toolChoice` `auto` / `any` / `tool`), `inferenceConfig`; a `model` field in the body is refused (the
//! model is in the path). Errors are `{"message"}` with the AWS error name in `x-amzn-errortype`.

use serde_json::{json, Map, Value};
use shared::crypto::sigv4::{Credentials, Payload, Request as SigRequest, Signer};
use shared::crypto::{hex, sha256};
use shared::framing::eventstream::{encode, Header};
use shared::time::DateTime;

use super::engine::{fragments, image_kind, words, Answer, Chat, Content, Tool, ToolChoice, IMAGE_TYPES};
use super::{engine, ApiError, Endpoint, Operation, Request, Wire};

/// The access key id whose signatures the mock verifies in full, with [`MOCK_SECRET`].
pub const MOCK_ACCESS_KEY_ID: &str = "AKIDMOCKBEDROCK";
/// The secret of [`MOCK_ACCESS_KEY_ID`].
pub const MOCK_SECRET: &str = "mock-bedrock-secret";

#[derive(Debug, Clone)]
pub(crate) struct Bedrock {
    model: String,
    method: String,
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hexpair = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hexpair.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn route(path: &str) -> Option<Endpoint> {
    let rest = path.strip_prefix("/model/")?;
    let (id, method) = rest.rsplit_once('/')?;
    if id.is_empty() || id.contains('/') {
        return None;
    }
    let operation = match method {
        "converse" | "converse-stream" => Operation::Chat,
        "invoke" => Operation::Embeddings,
        _ => return None,
    };
    Some(Endpoint::Api(
        Box::new(Bedrock {
            model: percent_decode(id),
            method: method.to_string(),
        }),
        operation,
    ))
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(message)
}

fn denied(message: impl Into<String>) -> ApiError {
    ApiError::new(403, message)
}

/// Checks the SigV4 `authorization` header's shape, the date and the body hash (and, for the mock's
/// own key id, the signature).
fn check_sigv4(req: &Request, auth: &str) -> Result<(), ApiError> {
    let rest = auth
        .strip_prefix("AWS4-HMAC-SHA256 Credential=")
        .ok_or_else(|| denied("mock: authorization is neither Bearer nor AWS4-HMAC-SHA256"))?;
    let mut fields = rest.split(", ");
    let credential = fields.next().unwrap_or_default();
    let signed = fields
        .next()
        .and_then(|f| f.strip_prefix("SignedHeaders="))
        .unwrap_or_default();
    let signature = fields
        .next()
        .and_then(|f| f.strip_prefix("Signature="))
        .unwrap_or_default();
    let scope: Vec<&str> = credential.split('/').collect();
    let [key_id, day, region, "bedrock", "aws4_request"] = scope.as_slice() else {
        return Err(denied(format!(
            "mock: credential scope {credential:?} is not <key>/<date>/<region>/bedrock/aws4_request"
        )));
    };
    let names: Vec<&str> = signed.split(';').collect();
    for needed in ["host", "x-amz-content-sha256", "x-amz-date"] {
        if !names.contains(&needed) {
            return Err(denied(format!("mock: SignedHeaders {signed:?} lacks {needed}")));
        }
    }
    if signature.len() != 64
        || !signature
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return Err(denied("mock: Signature must be 64 lowercase hex digits"));
    }
    let date = req.header("x-amz-date").unwrap_or_default();
    let time = DateTime::parse_basic(date)
        .ok_or_else(|| denied("mock: x-amz-date missing or not YYYYMMDDTHHMMSSZ"))?;
    if !date.starts_with(day) {
        return Err(denied("mock: x-amz-date is not the credential's day"));
    }
    let hash = hex(&sha256(&req.body));
    if req.header("x-amz-content-sha256") != Some(hash.as_str()) {
        return Err(bad("mock: x-amz-content-sha256 does not match the body received"));
    }
    if *key_id == MOCK_ACCESS_KEY_ID {
        let token = req.header("x-amz-security-token");
        let signer = Signer::new(
            Credentials {
                access_key_id: key_id,
                secret_access_key: MOCK_SECRET,
                session_token: token,
            },
            region,
            "bedrock",
        );
        let host = req.header("host").unwrap_or_default();
        let (path, query) = req.target.split_once('?').unwrap_or((req.target.as_str(), ""));
        let want = signer
            .sign(
                &SigRequest {
                    method: "POST",
                    host,
                    path,
                    query,
                    headers: &[],
                    payload: Payload::Bytes(&req.body),
                },
                time,
            )
            .map_err(|e| denied(format!("mock: cannot sign: {e:?}")))?;
        if want.signature != signature {
            return Err(denied(
                "The request signature we calculated does not match the signature you provided.",
            ));
        }
    }
    Ok(())
}

fn check_auth(req: &Request) -> Result<(), ApiError> {
    let auth = req
        .header("authorization")
        .ok_or_else(|| denied("Missing Authentication Token"))?;
    if let Some(key) = auth.strip_prefix("Bearer ") {
        if key.trim().is_empty() {
            return Err(denied("mock: empty Bedrock API key"));
        }
        return Ok(());
    }
    check_sigv4(req, auth)
}

fn blocks(m: &Value) -> &[Value] {
    m.get("content")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn text_of(m: &Value) -> String {
    blocks(m)
        .iter()
        .filter_map(|b| b.get("text").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join(" ")
}

fn result_text(r: &Value) -> String {
    blocks(r)
        .iter()
        .map(|c| match (c.get("text").and_then(Value::as_str), c.get("json")) {
            (Some(t), _) => t.to_string(),
            (None, Some(j)) => j.to_string(),
            _ => String::new(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn results(m: &Value) -> Vec<String> {
    blocks(m)
        .iter()
        .filter_map(|b| b.get("toolResult"))
        .map(result_text)
        .collect()
}

impl Bedrock {
    fn usage_json(a: &Answer) -> Value {
        let d = a.usage.details.clone().unwrap_or_default();
        let mut u = json!({"inputTokens": a.usage.uncached_prompt(), "outputTokens": a.usage.completion,
                           "totalTokens": a.usage.prompt + a.usage.completion});
        if a.usage.details.is_some() {
            u["cacheReadInputTokens"] = json!(d.cache_read);
            u["cacheWriteInputTokens"] = json!(d.cache_write);
        }
        u
    }

    fn stop_reason(a: &Answer) -> &'static str {
        match a.content {
            Content::Text { .. } => "end_turn",
            Content::Tools { .. } => "tool_use",
        }
    }
}

fn frame(event: &str, payload: &Value) -> Vec<u8> {
    encode(
        &[
            Header::string(":event-type", event),
            Header::string(":content-type", "application/json"),
            Header::string(":message-type", "event"),
        ],
        payload.to_string().as_bytes(),
    )
    .unwrap_or_default()
}

impl Wire for Bedrock {
    fn name(&self) -> &'static str {
        "bedrock"
    }

    fn fault_model<'a>(&'a self, _body: Option<&'a Value>) -> Option<&'a str> {
        Some(&self.model)
    }

    fn read_chat(&self, req: &Request, body: Option<&Value>) -> Result<Chat, ApiError> {
        check_auth(req)?;
        let Some(body) = body.and_then(Value::as_object) else {
            return Err(bad("mock: body is not a JSON object"));
        };
        for k in body.keys() {
            let known = [
                "messages",
                "system",
                "inferenceConfig",
                "toolConfig",
                "additionalModelRequestFields",
                "guardrailConfig",
                "promptVariables",
                "requestMetadata",
                "performanceConfig",
            ];
            if !known.contains(&k.as_str()) {
                return Err(bad(format!(
                    "Malformed input request: extraneous key [{k}] is not permitted"
                )));
            }
        }
        let messages = match body.get("messages").and_then(Value::as_array) {
            Some(m) if !m.is_empty() => m,
            _ => return Err(bad("A conversation must start with a user message.")),
        };
        let mut previous = "";
        let mut images = 0;
        let mut has_tool_blocks = false;
        for (i, m) in messages.iter().enumerate() {
            let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
            if role != "user" && role != "assistant" {
                return Err(bad(format!("messages.{i}.role: must be user or assistant")));
            }
            if role == previous {
                return Err(bad(
                    "A conversation must alternate between user and assistant roles.",
                ));
            }
            previous = role;
            if blocks(m).is_empty() {
                return Err(bad(format!("messages.{i}.content: must not be empty")));
            }
            for b in blocks(m) {
                if let Some(img) = b.get("image") {
                    let format = img.get("format").and_then(Value::as_str).unwrap_or_default();
                    let data = img
                        .get("source")
                        .and_then(|s| s.get("bytes"))
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    let mime = format!("image/{format}");
                    if !IMAGE_TYPES.contains(&mime.as_str()) || image_kind(data) != Some(mime.as_str()) {
                        return Err(bad(format!(
                            "messages.{i}: Unable to process the image (format {format:?})"
                        )));
                    }
                    images += 1;
                }
                if b.get("toolUse").is_some() || b.get("toolResult").is_some() {
                    has_tool_blocks = true;
                }
            }
        }
        let mut tools = Vec::new();
        let tool_config = body.get("toolConfig");
        for t in tool_config
            .and_then(|c| c.get("tools"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let spec = t
                .get("toolSpec")
                .ok_or_else(|| bad("toolConfig.tools: toolSpec required"))?;
            let name = spec.get("name").and_then(Value::as_str).unwrap_or_default();
            let schema = spec
                .get("inputSchema")
                .and_then(|s| s.get("json"))
                .filter(|s| s.is_object())
                .ok_or_else(|| bad(format!("toolConfig.tools.{name}: inputSchema.json required")))?;
            tools.push(Tool {
                name: name.to_string(),
                schema: schema.clone(),
            });
        }
        if has_tool_blocks && tools.is_empty() {
            return Err(bad(
                "The toolConfig field must be defined when using toolUse and toolResult content blocks.",
            ));
        }
        let tool_choice = match tool_config.and_then(|c| c.get("toolChoice")) {
            None => ToolChoice::Auto,
            Some(c) if c.get("auto").is_some() => ToolChoice::Auto,
            Some(c) if c.get("any").is_some() => ToolChoice::Required,
            Some(c) => match c.get("tool").and_then(|t| t.get("name")).and_then(Value::as_str) {
                Some(n) if tools.iter().any(|t| t.name == n) => ToolChoice::Named(n.to_string()),
                _ => return Err(bad("toolChoice: the tool is not among the tools")),
            },
        };
        let is_user = |m: &&Value| m.get("role").and_then(Value::as_str) == Some("user");
        let tool_results = messages.last().filter(is_user).map(results).unwrap_or_default();
        let last_user_text = messages
            .iter()
            .rev()
            .filter(is_user)
            .map(|m| (text_of(m), results(m).is_empty()))
            .find(|(t, none)| !t.is_empty() || *none)
            .map(|(t, _)| t)
            .unwrap_or_default();
        let system = body
            .get("system")
            .and_then(Value::as_array)
            .map(|s| {
                s.iter()
                    .filter_map(|b| b.get("text").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        let prompt_tokens = messages
            .iter()
            .map(|m| words(&text_of(m)) + results(m).iter().map(|r| words(r)).sum::<u64>())
            .sum::<u64>()
            + words(&system);
        Ok(Chat {
            model: self.model.clone(),
            stream: self.method == "converse-stream",
            include_usage: true,
            last_user_text,
            prompt_tokens,
            images,
            tool_choice,
            parallel: true,
            tool_results,
            id_seed: json!([body.get("system"), messages, tool_config])
                .to_string()
                .into_bytes(),
            tools,
            ..Chat::default()
        })
    }

    fn error_body(&self, err: &ApiError) -> Value {
        json!({ "message": err.message })
    }

    fn chat_json(&self, _n: u64, a: &Answer) -> Value {
        let content: Vec<Value> = match &a.content {
            Content::Text { text, .. } => vec![json!({ "text": text })],
            Content::Tools { calls, .. } => calls
                .iter()
                .map(|c| json!({"toolUse": {"toolUseId": format!("tooluse_{}", c.id), "name": c.name, "input": c.arguments}}))
                .collect(),
        };
        json!({
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": Self::stop_reason(a),
            "usage": Self::usage_json(a),
            "metrics": {"latencyMs": 1},
        })
    }

    fn chat_events(&self, _n: u64, _a: &Answer) -> Vec<String> {
        // Bedrock streams are binary: see `chat_frames`.
        Vec::new()
    }

    fn stream_content_type(&self) -> &'static str {
        "application/vnd.amazon.eventstream"
    }

    fn chat_frames(&self, _n: u64, a: &Answer) -> Vec<Vec<u8>> {
        let mut out = vec![frame("messageStart", &json!({"role": "assistant"}))];
        match &a.content {
            Content::Text { pieces, .. } => {
                for p in pieces {
                    out.push(frame(
                        "contentBlockDelta",
                        &json!({"contentBlockIndex": 0, "delta": {"text": p}}),
                    ));
                }
                out.push(frame("contentBlockStop", &json!({"contentBlockIndex": 0})));
            }
            Content::Tools { calls, .. } => {
                for (i, c) in calls.iter().enumerate() {
                    out.push(frame(
                        "contentBlockStart",
                        &json!({"contentBlockIndex": i, "start": {"toolUse": {"toolUseId": format!("tooluse_{}", c.id), "name": c.name}}}),
                    ));
                    for f in fragments(&c.arguments_json()) {
                        out.push(frame(
                            "contentBlockDelta",
                            &json!({"contentBlockIndex": i, "delta": {"toolUse": {"input": f}}}),
                        ));
                    }
                    out.push(frame("contentBlockStop", &json!({"contentBlockIndex": i})));
                }
            }
        }
        out.push(frame("messageStop", &json!({"stopReason": Self::stop_reason(a)})));
        out.push(frame(
            "metadata",
            &json!({"usage": Self::usage_json(a), "metrics": {"latencyMs": 1}}),
        ));
        out
    }

    /// A flipped payload byte: the message CRC no longer matches.
    fn malformed_frame(&self, f: &[u8]) -> Vec<u8> {
        let mut f = f.to_vec();
        let at = f.len().saturating_sub(8);
        if let Some(b) = f.get_mut(at) {
            *b ^= 0x20;
        }
        f
    }

    /// The message CRC (the last 4 bytes, over all before them) recomputed; the prelude's is unchanged,
    /// as the lengths are.
    fn reseal_frame(&self, f: &mut [u8]) {
        let Some(body) = f.len().checked_sub(4) else {
            return;
        };
        let (head, tail) = f.split_at_mut(body);
        tail.copy_from_slice(&shared::crypto::crc32(head).to_be_bytes());
    }

    fn embeddings(&self, req: &Request, body: Option<&Value>) -> Result<Value, ApiError> {
        check_auth(req)?;
        let Some(body) = body.and_then(Value::as_object) else {
            return Err(bad("mock: body is not a JSON object"));
        };
        let vector = |text: &str, d: usize| -> Value {
            json!(engine::embedding(text.as_bytes(), d)
                .iter()
                .map(|x| f64::from(*x))
                .collect::<Vec<f64>>())
        };
        if self.model.starts_with("amazon.titan-embed") {
            let allowed = ["inputText", "dimensions", "normalize", "embeddingTypes"];
            if let Some(k) = body.keys().find(|k| !allowed.contains(&k.as_str())) {
                return Err(bad(format!(
                    "Malformed input request: extraneous key [{k}] is not permitted"
                )));
            }
            let text = body
                .get("inputText")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("inputText: required"))?;
            let d = match body.get("dimensions").and_then(Value::as_u64) {
                None => 1024,
                Some(n @ (256 | 512 | 1024)) => n as usize,
                Some(_) => return Err(bad("dimensions: must be 256, 512 or 1024")),
            };
            let tokens = engine::usage(req, words(text), 0)?.prompt;
            Ok(json!({"embedding": vector(text, d), "inputTextTokenCount": tokens}))
        } else if self.model.starts_with("cohere.embed") {
            let texts = body
                .get("texts")
                .and_then(Value::as_array)
                .ok_or_else(|| bad("texts: required"))?;
            if body.get("input_type").and_then(Value::as_str).is_none() {
                return Err(bad("input_type: required"));
            }
            let list: Vec<&str> = texts.iter().filter_map(Value::as_str).collect();
            let embeddings: Vec<Value> = list.iter().map(|t| vector(t, 1024)).collect();
            let mut out = Map::new();
            out.insert("id".into(), json!("mock-cohere"));
            out.insert("embeddings".into(), Value::Array(embeddings));
            out.insert("response_type".into(), json!("embeddings_floats"));
            out.insert("texts".into(), json!(list));
            Ok(Value::Object(out))
        } else {
            Err(bad(format!("mock: {} is not an embeddings model", self.model)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resealed_frame_decodes_with_its_changed_byte() {
        let mut f = frame("contentBlockDelta", &json!({"delta": {"text": "reply"}}));
        let at = f.windows(5).position(|w| w == b"reply").unwrap() + 1;
        f[at] = 0xFF;
        assert!(shared::framing::eventstream::decode_message(&f).is_err());
        let wire = Bedrock {
            model: "m".into(),
            method: "converse-stream".into(),
        };
        wire.reseal_frame(&mut f);
        let m = shared::framing::eventstream::decode_message(&f).unwrap();
        assert!(m.payload.windows(2).any(|w| w == b"r\xff"), "{:?}", m.payload);
    }

    #[test]
    fn routes_and_decodes_the_model_id() {
        match route("/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse-stream") {
            Some(Endpoint::Api(w, Operation::Chat)) => assert_eq!(
                w.fault_model(None),
                Some("anthropic.claude-3-5-haiku-20241022-v1:0")
            ),
            _ => panic!("not routed"),
        }
        assert!(matches!(
            route("/model/amazon.titan-embed-text-v2%3A0/invoke"),
            Some(Endpoint::Api(_, Operation::Embeddings))
        ));
        assert!(route("/model/x/other").is_none());
        assert!(route("/model//converse").is_none());
    }
}
