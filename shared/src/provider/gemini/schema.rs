//! JSON Schema for Gemini's `Schema` (an OpenAPI 3.0 subset): function `parameters` and
//! `responseSchema`.
//!
//! Gemini refuses keywords outside its subset, so each schema is rewritten before it is sent:
//! - kept: `type`, `format` (`enum`, `date-time`, `int32`, `int64`, `float`, `double`), `title`,
//!   `description`, `nullable`, `enum`, `items`, `minItems`, `maxItems`, `properties`, `required`,
//!   `minProperties`, `maxProperties`, `minLength`, `maxLength`, `pattern`, `minimum`, `maximum`,
//!   `anyOf`, `propertyOrdering`, `default`, `example`;
//! - translated: `"type": ["string", "null"]` → `"type": "string", "nullable": true`; `const: v` →
//!   `enum: [v]` (strings only);
//! - stripped (annotations, or constraints Gemini does not check, which leave every valid value
//!   valid): `$schema`, `$id`, `$comment`, `additionalProperties`, `unevaluatedProperties`,
//!   `examples`, `readOnly`, `writeOnly`, `deprecated`, `contentEncoding`, `contentMediaType`, and a
//!   `format` Gemini does not know (`email`, `uri`, …);
//! - refused, by name and place: everything else (`$ref`, `$defs`, `oneOf`, `allOf`, `not`, `const`
//!   of a non-string, `if`, `patternProperties`, `exclusiveMinimum`, `multipleOf`, `uniqueItems`, …),
//!   since leaving them out would let the model answer what the client's schema forbids.

use serde_json::{Map, Value};

use crate::error::ApiError;

const KEEP: [&str; 22] = [
    "type",
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
    "format",
];

const STRIP: [&str; 11] = [
    "$schema",
    "$id",
    "$comment",
    "additionalProperties",
    "unevaluatedProperties",
    "examples",
    "readOnly",
    "writeOnly",
    "deprecated",
    "contentEncoding",
    "contentMediaType",
];

const FORMATS: [&str; 6] = ["enum", "date-time", "int32", "int64", "float", "double"];

fn refuse(at: &str, keyword: &str, why: &str) -> ApiError {
    ApiError::invalid_request(
        "unsupported_schema",
        format!("`{at}`: the JSON Schema keyword `{keyword}` is not supported for Gemini targets{why}"),
    )
}

/// `schema` in Gemini's subset; `at` names it in errors (`tools[0].function.parameters`).
pub fn sanitize(schema: &Value, at: &str) -> Result<Value, ApiError> {
    let Value::Object(o) = schema else {
        return Err(ApiError::invalid_request(
            "unsupported_schema",
            format!("`{at}` must be a JSON Schema object"),
        ));
    };
    let mut out = Map::new();
    for (k, v) in o {
        let here = format!("{at}.{k}");
        match k.as_str() {
            "type" => match v {
                Value::Array(types) => {
                    let named: Vec<&Value> = types.iter().filter(|t| t.as_str() != Some("null")).collect();
                    match named.as_slice() {
                        [one] => {
                            out.insert("type".into(), (*one).clone());
                            if named.len() < types.len() {
                                out.insert("nullable".into(), Value::Bool(true));
                            }
                        }
                        _ => return Err(refuse(at, "type", " as a list of several types (use `anyOf`)")),
                    }
                }
                _ => {
                    out.insert(k.clone(), v.clone());
                }
            },
            "const" => match v {
                Value::String(_) => {
                    out.insert("enum".into(), Value::Array(vec![v.clone()]));
                }
                _ => return Err(refuse(at, "const", " for a value other than a string")),
            },
            "properties" => {
                let Value::Object(props) = v else {
                    return Err(refuse(at, "properties", " unless it is an object"));
                };
                let mut p = Map::new();
                for (name, s) in props {
                    p.insert(name.clone(), sanitize(s, &format!("{here}.{name}"))?);
                }
                out.insert(k.clone(), Value::Object(p));
            }
            "items" => {
                out.insert(k.clone(), sanitize(v, &here)?);
            }
            "anyOf" => {
                let Value::Array(list) = v else {
                    return Err(refuse(at, "anyOf", " unless it is an array"));
                };
                let list = list
                    .iter()
                    .enumerate()
                    .map(|(i, s)| sanitize(s, &format!("{here}[{i}]")))
                    .collect::<Result<Vec<_>, _>>()?;
                out.insert(k.clone(), Value::Array(list));
            }
            "format" => {
                if v.as_str().is_some_and(|f| FORMATS.contains(&f)) {
                    out.insert(k.clone(), v.clone());
                }
            }
            k if KEEP.contains(&k) => {
                out.insert(k.to_string(), v.clone());
            }
            k if STRIP.contains(&k) => {}
            other => return Err(refuse(at, other, "")),
        }
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn rewrites_into_the_subset() {
        let cases = [
            (
                json!({"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
                       "properties": {"city": {"type": "string", "format": "email", "description": "d"},
                                      "unit": {"type": ["string", "null"], "enum": ["c", "f"]},
                                      "kind": {"const": "x"},
                                      "when": {"type": "string", "format": "date-time"},
                                      "tags": {"type": "array", "items": {"type": "string", "examples": ["a"]}},
                                      "additionalProperties": {"type": "integer"}},
                       "required": ["city"], "additionalProperties": false}),
                json!({"type": "object",
                       "properties": {"city": {"type": "string", "description": "d"},
                                      "unit": {"type": "string", "nullable": true, "enum": ["c", "f"]},
                                      "kind": {"enum": ["x"]},
                                      "when": {"type": "string", "format": "date-time"},
                                      "tags": {"type": "array", "items": {"type": "string"}},
                                      "additionalProperties": {"type": "integer"}},
                       "required": ["city"]}),
            ),
            (
                json!({"anyOf": [{"type": "string"}, {"type": "integer", "minimum": 1}]}),
                json!({"anyOf": [{"type": "string"}, {"type": "integer", "minimum": 1}]}),
            ),
        ];
        for (schema, want) in cases {
            assert_eq!(sanitize(&schema, "s").unwrap(), want, "{schema}");
        }
    }

    #[test]
    fn refuses_by_name_and_place() {
        let cases = [
            (
                json!({"$ref": "#/$defs/a"}),
                "`p`: the JSON Schema keyword `$ref`",
            ),
            (
                json!({"type": "object", "properties": {"a": {"oneOf": [{"type": "string"}]}}}),
                "`p.properties.a`: the JSON Schema keyword `oneOf`",
            ),
            (
                json!({"type": "array", "items": {"type": "integer", "multipleOf": 2}}),
                "`p.items`: the JSON Schema keyword `multipleOf`",
            ),
            (
                json!({"anyOf": [{"type": "string"}, {"not": {}}]}),
                "`p.anyOf[1]`: the JSON Schema keyword `not`",
            ),
            (json!({"const": 3}), "`p`: the JSON Schema keyword `const`"),
            (
                json!({"type": ["string", "integer"]}),
                "`p`: the JSON Schema keyword `type`",
            ),
            (json!(true), "`p` must be a JSON Schema object"),
        ];
        for (schema, want) in cases {
            let e = sanitize(&schema, "p").unwrap_err();
            assert_eq!((e.status, e.code), (400, "unsupported_schema"));
            assert!(e.message.starts_with(want), "{schema}: {}", e.message);
        }
    }
}
