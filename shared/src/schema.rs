//! A small JSON Schema subset, compiled at load and checked without a full JSON Schema engine in the VM.
//!
//! Two users: the guard pins a request's shape beyond what the chat APIs require (only these fields,
//! this temperature range, models matching a pattern), and [`crate::llm`] checks a model's structured
//! answer against the task's output schema (an answer that fails is a failed task). The subset: `type`, `required`, `properties`, `additionalProperties` (bool or schema), `items`, `enum`,
//! `pattern`, `minLength`/`maxLength`, `minimum`/`maximum`, `minItems`/`maxItems`. Annotations
//! (`$schema`, `title`, `description`, `$comment`, `default`, `examples`) are ignored; any other
//! keyword refuses the config, so nobody believes a rule is checked when it is not. Patterns compile
//! at load. A violation names the JSON path of the failing value (`$.messages[2].role`).

use crate::config::ConfigError;
use regex_lite::Regex;
use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Type {
    Object,
    Array,
    String,
    Number,
    Integer,
    Boolean,
    Null,
}

impl Type {
    fn parse(s: &str) -> Option<Type> {
        Some(match s {
            "object" => Type::Object,
            "array" => Type::Array,
            "string" => Type::String,
            "number" => Type::Number,
            "integer" => Type::Integer,
            "boolean" => Type::Boolean,
            "null" => Type::Null,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Type::Object => "object",
            Type::Array => "array",
            Type::String => "string",
            Type::Number => "number",
            Type::Integer => "integer",
            Type::Boolean => "boolean",
            Type::Null => "null",
        }
    }

    fn matches(self, v: &Value) -> bool {
        match self {
            Type::Object => v.is_object(),
            Type::Array => v.is_array(),
            Type::String => v.is_string(),
            Type::Number => v.is_number(),
            Type::Integer => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
            Type::Boolean => v.is_boolean(),
            Type::Null => v.is_null(),
        }
    }
}

#[derive(Debug)]
enum Additional {
    Any,
    Deny,
    Schema(Box<Schema>),
}

/// A compiled schema.
#[derive(Debug)]
pub struct Schema {
    types: Vec<Type>,
    required: Vec<String>,
    properties: Vec<(String, Schema)>,
    additional: Additional,
    items: Option<Box<Schema>>,
    enumeration: Option<Vec<Value>>,
    pattern: Option<Regex>,
    min_length: Option<u64>,
    max_length: Option<u64>,
    minimum: Option<f64>,
    maximum: Option<f64>,
    min_items: Option<u64>,
    max_items: Option<u64>,
}

/// Where and why a value failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub path: String,
    pub message: String,
}

const IGNORED: &[&str] = &[
    "$schema",
    "title",
    "description",
    "$comment",
    "default",
    "examples",
];

fn count(obj: &Map<String, Value>, key: &str, at: &str) -> Result<Option<u64>, ConfigError> {
    match obj.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| ConfigError::new(format!("{at}.{key}"), "must be an integer >= 0")),
    }
}

fn number(obj: &Map<String, Value>, key: &str, at: &str) -> Result<Option<f64>, ConfigError> {
    match obj.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| ConfigError::new(format!("{at}.{key}"), "must be a number")),
    }
}

impl Schema {
    /// Compiles `v`; `at` is the config path of `v`, used in errors.
    pub fn compile(v: &Value, at: &str) -> Result<Schema, ConfigError> {
        let Value::Object(obj) = v else {
            return Err(ConfigError::new(at, "a schema must be an object"));
        };
        for key in obj.keys() {
            let known = matches!(
                key.as_str(),
                "type"
                    | "required"
                    | "properties"
                    | "additionalProperties"
                    | "items"
                    | "enum"
                    | "pattern"
                    | "minLength"
                    | "maxLength"
                    | "minimum"
                    | "maximum"
                    | "minItems"
                    | "maxItems"
            );
            if !known && !IGNORED.contains(&key.as_str()) {
                return Err(ConfigError::new(
                    format!("{at}.{key}"),
                    "unsupported schema keyword (supported: type, required, properties, additionalProperties, items, enum, pattern, minLength, maxLength, minimum, maximum, minItems, maxItems)",
                ));
            }
        }
        let bad_type = || ConfigError::new(format!("{at}.type"), "must be a type name or a list of them");
        let types = match obj.get("type") {
            None => Vec::new(),
            Some(Value::String(s)) => vec![Type::parse(s).ok_or_else(bad_type)?],
            Some(Value::Array(a)) => a
                .iter()
                .map(|t| t.as_str().and_then(Type::parse).ok_or_else(bad_type))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(bad_type()),
        };
        let required = match obj.get("required") {
            None => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|s| {
                    s.as_str().map(str::to_string).ok_or_else(|| {
                        ConfigError::new(format!("{at}.required"), "must be a list of strings")
                    })
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(ConfigError::new(
                    format!("{at}.required"),
                    "must be a list of strings",
                ))
            }
        };
        let properties = match obj.get("properties") {
            None => Vec::new(),
            Some(Value::Object(p)) => p
                .iter()
                .map(|(k, s)| Ok((k.clone(), Schema::compile(s, &format!("{at}.properties.{k}"))?)))
                .collect::<Result<_, ConfigError>>()?,
            Some(_) => return Err(ConfigError::new(format!("{at}.properties"), "must be an object")),
        };
        let additional = match obj.get("additionalProperties") {
            None | Some(Value::Bool(true)) => Additional::Any,
            Some(Value::Bool(false)) => Additional::Deny,
            Some(s) => Additional::Schema(Box::new(Schema::compile(
                s,
                &format!("{at}.additionalProperties"),
            )?)),
        };
        let items = match obj.get("items") {
            None => None,
            Some(s) => Some(Box::new(Schema::compile(s, &format!("{at}.items"))?)),
        };
        let enumeration = match obj.get("enum") {
            None => None,
            Some(Value::Array(a)) if !a.is_empty() => Some(a.clone()),
            Some(_) => return Err(ConfigError::new(format!("{at}.enum"), "must be a non-empty list")),
        };
        let pattern = match obj.get("pattern") {
            None => None,
            Some(Value::String(p)) => Some(
                Regex::new(p)
                    .map_err(|e| ConfigError::new(format!("{at}.pattern"), format!("invalid regex: {e}")))?,
            ),
            Some(_) => return Err(ConfigError::new(format!("{at}.pattern"), "must be a string")),
        };
        Ok(Schema {
            types,
            required,
            properties,
            additional,
            items,
            enumeration,
            pattern,
            min_length: count(obj, "minLength", at)?,
            max_length: count(obj, "maxLength", at)?,
            minimum: number(obj, "minimum", at)?,
            maximum: number(obj, "maximum", at)?,
            min_items: count(obj, "minItems", at)?,
            max_items: count(obj, "maxItems", at)?,
        })
    }

    /// Checks `v` (found at JSON path `path`); returns the first violation.
    pub fn validate(&self, v: &Value, path: &str) -> Result<(), Violation> {
        let fail = |message: String| {
            Err(Violation {
                path: path.to_string(),
                message,
            })
        };
        if !self.types.is_empty() && !self.types.iter().any(|t| t.matches(v)) {
            let names: Vec<&str> = self.types.iter().map(|t| t.name()).collect();
            return fail(format!("must be of type {}", names.join(" or ")));
        }
        if let Some(options) = &self.enumeration {
            if !options.contains(v) {
                let shown: Vec<String> = options.iter().map(Value::to_string).collect();
                return fail(format!("must be one of {}", shown.join(", ")));
            }
        }
        match v {
            Value::String(s) => {
                let len = s.chars().count() as u64;
                if self.min_length.is_some_and(|m| len < m) {
                    return fail(format!(
                        "must be at least {} characters",
                        self.min_length.unwrap_or(0)
                    ));
                }
                if self.max_length.is_some_and(|m| len > m) {
                    return fail(format!(
                        "must be at most {} characters",
                        self.max_length.unwrap_or(0)
                    ));
                }
                if let Some(re) = &self.pattern {
                    if !re.is_match(s) {
                        return fail(format!("must match the pattern `{}`", re.as_str()));
                    }
                }
            }
            Value::Number(n) => {
                let x = n.as_f64().unwrap_or(0.0);
                if let Some(min) = self.minimum.filter(|m| x < *m) {
                    return fail(format!("must be >= {min}"));
                }
                if let Some(max) = self.maximum.filter(|m| x > *m) {
                    return fail(format!("must be <= {max}"));
                }
            }
            Value::Array(a) => {
                let len = a.len() as u64;
                if let Some(min) = self.min_items.filter(|m| len < *m) {
                    return fail(format!("must have at least {min} items"));
                }
                if let Some(max) = self.max_items.filter(|m| len > *m) {
                    return fail(format!("must have at most {max} items"));
                }
                if let Some(items) = &self.items {
                    for (i, item) in a.iter().enumerate() {
                        items.validate(item, &format!("{path}[{i}]"))?;
                    }
                }
            }
            Value::Object(o) => {
                for key in &self.required {
                    if !o.contains_key(key) {
                        return Err(Violation {
                            path: format!("{path}.{key}"),
                            message: "is required".into(),
                        });
                    }
                }
                for (key, value) in o {
                    let at = format!("{path}.{key}");
                    match self.properties.iter().find(|(k, _)| k == key) {
                        Some((_, s)) => s.validate(value, &at)?,
                        None => match &self.additional {
                            Additional::Any => {}
                            Additional::Deny => {
                                return Err(Violation {
                                    path: at,
                                    message: "is not an allowed property".into(),
                                })
                            }
                            Additional::Schema(s) => s.validate(value, &at)?,
                        },
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn schema() -> Schema {
        Schema::compile(
            &json!({
                "type": "object",
                "required": ["model", "messages"],
                "additionalProperties": false,
                "properties": {
                    "model": {"type": "string", "enum": ["gpt-4o-mini", "gpt-4o"]},
                    "temperature": {"type": "number", "minimum": 0, "maximum": 1},
                    "n": {"type": "integer", "maximum": 1},
                    "user": {"type": "string", "pattern": "^[a-z0-9-]+$", "minLength": 3, "maxLength": 8},
                    "messages": {"type": "array", "minItems": 1, "maxItems": 3, "items": {
                        "type": "object", "required": ["role"],
                        "properties": {"role": {"enum": ["user", "assistant"]}, "content": {"type": ["string", "array"]}}
                    }},
                    "metadata": {"type": "object", "additionalProperties": {"type": "string"}}
                }
            }),
            "schema.document",
        )
        .unwrap()
    }

    #[test]
    fn reports_the_failing_path() {
        let s = schema();
        let ok = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "user": "abc"});
        assert_eq!(s.validate(&ok, "$"), Ok(()));
        let cases = [
            (json!([]), "$"),
            (json!({"messages": []}), "$.model"),
            (json!({"model": "x", "messages": [{"role": "user"}]}), "$.model"),
            (json!({"model": "gpt-4o", "messages": []}), "$.messages"),
            (
                json!({"model": "gpt-4o", "messages": [{"role": "system"}]}),
                "$.messages[0].role",
            ),
            (
                json!({"model": "gpt-4o", "messages": [{"role": "user", "content": 3}]}),
                "$.messages[0].content",
            ),
            (
                json!({"model": "gpt-4o", "messages": [{"role": "user"}], "temperature": 1.5}),
                "$.temperature",
            ),
            (
                json!({"model": "gpt-4o", "messages": [{"role": "user"}], "n": 1.5}),
                "$.n",
            ),
            (
                json!({"model": "gpt-4o", "messages": [{"role": "user"}], "user": "AB"}),
                "$.user",
            ),
            (
                json!({"model": "gpt-4o", "messages": [{"role": "user"}], "user": "abcdefghij"}),
                "$.user",
            ),
            (
                json!({"model": "gpt-4o", "messages": [{"role": "user"}], "user": "a_b_c"}),
                "$.user",
            ),
            (
                json!({"model": "gpt-4o", "messages": [{"role": "user"}], "extra": 1}),
                "$.extra",
            ),
            (
                json!({"model": "gpt-4o", "messages": [{"role": "user"}], "metadata": {"k": 1}}),
                "$.metadata.k",
            ),
            (
                json!({"model": "gpt-4o", "messages": [{"role": "user"}, {"role": "user"}, {"role": "user"}, {"role": "user"}]}),
                "$.messages",
            ),
        ];
        for (doc, path) in cases {
            let err = s.validate(&doc, "$").unwrap_err();
            assert_eq!(err.path, path, "{doc} {err:?}");
        }
    }

    #[test]
    fn refuses_bad_schemas_naming_the_keyword() {
        let cases = [
            (json!({"oneOf": []}), "s.oneOf"),
            (json!({"type": "str"}), "s.type"),
            (
                json!({"properties": {"a": {"pattern": "("}}}),
                "s.properties.a.pattern",
            ),
            (json!({"minLength": -1}), "s.minLength"),
            (json!({"items": 3}), "s.items"),
            (json!({"enum": []}), "s.enum"),
            (json!("x"), "s"),
        ];
        for (doc, field) in cases {
            let err = Schema::compile(&doc, "s").unwrap_err();
            assert_eq!(err.field, field, "{doc} {err}");
        }
        assert!(Schema::compile(&json!({"title": "t", "description": "d"}), "s").is_ok());
    }
}
