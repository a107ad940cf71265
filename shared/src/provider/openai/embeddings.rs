//! OpenAI Embeddings at the door, for targets of another dialect: a request read into
//! [`neutral::EmbeddingsRequest`] ([`decode`]), an answer written from [`neutral::Embeddings`]
//! ([`embeddings_json`]).
//!
//! `input` is a string or an array of strings (token-id arrays are refused: no other provider reads
//! OpenAI's token ids); `dimensions` and `user` are read; `encoding_format` `float` (the default) or
//! `base64` is honoured by the writer (base64 of the little-endian `f32` values, as OpenAI sends them).
//! Any other field is carried by name for the target's renderer to translate, refuse or drop.

use serde_json::{Map, Value};
use std::borrow::Cow;

use super::usage_json;
use crate::crypto::base64_encode;
use crate::error::ApiError;
use crate::provider::neutral::{self, invalid_parameter, unsupported_content};
use crate::usage::Usage;

const READ: [&str; 5] = ["model", "input", "dimensions", "user", "encoding_format"];

/// The request, and whether the client asked for base64 vectors.
pub fn decode<'a>(
    body: &'a Map<String, Value>,
    label: &str,
) -> Result<(neutral::EmbeddingsRequest<'a>, bool), ApiError> {
    let inputs = match body.get("input") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(list)) if !list.is_empty() => {
            let mut texts = Vec::with_capacity(list.len());
            for (i, v) in list.iter().enumerate() {
                match v {
                    Value::String(s) => texts.push(s.as_str()),
                    Value::Number(_) | Value::Array(_) => {
                        return Err(unsupported_content("token ids as embeddings `input`", label))
                    }
                    _ => {
                        return Err(ApiError::invalid_request(
                            "invalid_input",
                            format!("`input[{i}]` must be a string"),
                        ))
                    }
                }
            }
            texts
        }
        _ => {
            return Err(ApiError::invalid_request(
                "invalid_input",
                "`input` must be a string or a non-empty array of strings",
            ))
        }
    };
    let dimensions = match body.get("dimensions") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .filter(|&n| n > 0)
                .ok_or_else(|| invalid_parameter("dimensions", "a positive integer"))?,
        ),
    };
    let user = match body.get("user") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(invalid_parameter("user", "a string")),
    };
    let base64 = match body.get("encoding_format") {
        None | Some(Value::Null) => false,
        Some(Value::String(f)) if f == "float" => false,
        Some(Value::String(f)) if f == "base64" => true,
        Some(_) => return Err(invalid_parameter("encoding_format", "`float` or `base64`")),
    };
    let extra = body
        .iter()
        .filter(|(k, v)| !READ.contains(&k.as_str()) && !v.is_null())
        .map(|(k, v)| (Cow::Borrowed(k.as_str()), v))
        .collect();
    Ok((
        neutral::EmbeddingsRequest {
            inputs,
            dimensions,
            user,
            extra,
        },
        base64,
    ))
}

/// Base64 of the vector as little-endian `f32`s (OpenAI's `encoding_format: base64`).
fn base64_vector(v: &[f64]) -> String {
    let mut bytes = Vec::with_capacity(v.len() * 4);
    for x in v {
        // The wire type is f32: narrowing is what OpenAI does too.
        #[allow(clippy::cast_possible_truncation)]
        bytes.extend_from_slice(&(*x as f32).to_le_bytes());
    }
    base64_encode(&bytes)
}

/// The OpenAI `list` of embeddings for `e`, named `model`; usage 0 when the provider reported none.
pub fn embeddings_json(e: &neutral::Embeddings, model: &str, base64: bool) -> Vec<u8> {
    let data: Vec<Value> = e
        .vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let mut o = Map::new();
            o.insert("object".into(), "embedding".into());
            o.insert("index".into(), i.into());
            let embedding = if base64 {
                Value::from(base64_vector(v))
            } else {
                Value::Array(
                    v.iter()
                        .map(|x| serde_json::Number::from_f64(*x).map_or(Value::Null, Value::Number))
                        .collect(),
                )
            };
            o.insert("embedding".into(), embedding);
            Value::Object(o)
        })
        .collect();
    let u = e.usage.unwrap_or_default();
    let mut usage = usage_json(Usage::new(u.prompt_tokens, 0));
    if let Some(o) = usage.as_object_mut() {
        // Embeddings report no completion.
        o.remove("completion_tokens");
    }
    let mut out = Map::new();
    out.insert("object".into(), "list".into());
    out.insert("data".into(), Value::Array(data));
    out.insert("model".into(), model.into());
    out.insert("usage".into(), usage);
    Value::Object(out).to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::base64_decode;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn reads_inputs_and_options() {
        let b = body(json!({"model": "m", "input": "one"}));
        let (r, base64) = decode(&b, "X").unwrap();
        assert_eq!((r.inputs, r.dimensions, base64), (vec!["one"], None, false));
        let b = body(
            json!({"model": "m", "input": ["a", "b"], "dimensions": 8, "encoding_format": "base64",
                   "user": "u", "input_type": "search_query", "extra": null}),
        );
        let (r, base64) = decode(&b, "X").unwrap();
        assert_eq!(r.inputs, vec!["a", "b"]);
        assert_eq!((r.dimensions, r.user, base64), (Some(8), Some("u"), true));
        let names: Vec<&str> = r.extra.iter().map(|(n, _)| n.as_ref()).collect();
        assert_eq!(names, vec!["input_type"]);
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        let cases = [
            (json!({"input": [1, 2]}), "unsupported_content"),
            (json!({"input": [[1, 2]]}), "unsupported_content"),
            (json!({"input": []}), "invalid_input"),
            (json!({"input": [true]}), "invalid_input"),
            (json!({"input": 5}), "invalid_input"),
            (json!({"input": "x", "dimensions": 0}), "invalid_parameter"),
            (
                json!({"input": "x", "encoding_format": "int8"}),
                "invalid_parameter",
            ),
            (json!({"input": "x", "user": 3}), "invalid_parameter"),
        ];
        for (v, code) in cases {
            let b = body(v.clone());
            assert_eq!(decode(&b, "X").unwrap_err().code, code, "{v}");
        }
    }

    #[test]
    fn writes_floats_and_base64() {
        let e = neutral::Embeddings {
            vectors: vec![vec![0.5, -1.0], vec![0.25, 2.0]],
            usage: Some(Usage::new(7, 0)),
        };
        let v: Value = serde_json::from_slice(&embeddings_json(&e, "emb", false)).unwrap();
        assert_eq!(
            v,
            json!({"object": "list", "model": "emb",
                   "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -1.0]},
                            {"object": "embedding", "index": 1, "embedding": [0.25, 2.0]}],
                   "usage": {"prompt_tokens": 7, "total_tokens": 7}})
        );
        let v: Value = serde_json::from_slice(&embeddings_json(&e, "emb", true)).unwrap();
        let bytes = base64_decode(v["data"][1]["embedding"].as_str().unwrap()).unwrap();
        let floats: Vec<f32> = bytes
            .chunks(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(floats, vec![0.25, 2.0]);
        let none = neutral::Embeddings {
            vectors: vec![vec![1.0]],
            usage: None,
        };
        let v: Value = serde_json::from_slice(&embeddings_json(&none, "emb", false)).unwrap();
        assert_eq!(v["usage"], json!({"prompt_tokens": 0, "total_tokens": 0}));
    }
}
