//! JSON values derived deterministically from a JSON Schema and a prompt: the arguments of the mock's tool
//! calls and its structured output.
//!
//! Two modes share one walk over the schema:
//! - [`arguments`] (a tool call): only `required` properties; a string is the words of the prompt after
//!   the word that matched the tool, up to the next small word (else the property name), a number the first number in the prompt
//!   (else 1), a boolean `true`.
//! - [`structured`] (`response_format: json_schema`, a forced tool): every property; a string is the
//!   first words of the prompt (or a sample for its `format`, or a match of its `pattern`), a number the
//!   prompt's word count, a boolean whether the property name occurs in the prompt, an array of strings
//!   the capitalised words of the prompt (a crude entity extractor).
//!
//! In both, an `enum` takes its first value that occurs in the prompt (else its first value), `const` its
//! value, numbers are clamped to `minimum`/`maximum`, strings to `minLength`/`maxLength`, arrays to
//! `minItems`/`maxItems`; `$ref` (local), `anyOf`/`oneOf` (first non-null branch), `allOf` (first) and
//! type lists (first non-null type) are followed. The schema is not validated: what it does not say is
//! left out.

use regex_syntax::hir::{Class, Hir, HirKind};
use serde_json::{json, Map, Number, Value};

use shared::crypto::{hex, sha256};

/// Words of a string excerpt in structured output.
const EXCERPT_WORDS: usize = 5;
/// Items of a generated array when the schema does not ask for more.
const MAX_ITEMS: usize = 3;
/// Nesting beyond which the walk stops (recursive `$ref`s).
const MAX_DEPTH: usize = 12;
/// Words dropped from the front of a tool argument taken from the prompt ("weather *in* Paris").
const FILLER: [&str; 22] = [
    "in", "for", "of", "at", "to", "on", "the", "a", "an", "about", "with", "from", "is", "me", "my", "and",
    "or", "but", "then", "please", "by", "as",
];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Arguments,
    Structured,
}

struct Walk<'a> {
    root: &'a Value,
    mode: Mode,
    text: &'a str,
    /// Lower-cased `text`.
    lower: String,
    /// Arguments mode: the string value taken from the prompt, if any.
    after: Option<String>,
}

/// A tool call's arguments for a tool with `schema` (its `parameters` / `input_schema`), asked for by
/// `text`; `after` is the byte offset in `text` just past the word that matched the tool.
pub(crate) fn arguments(schema: &Value, text: &str, after: Option<usize>) -> Value {
    let after = after
        .and_then(|at| text.get(at..))
        .map(phrase)
        .filter(|s| !s.is_empty());
    let walk = Walk::new(schema, Mode::Arguments, text, after);
    walk.value(schema, "", 0)
}

/// A structured answer to `text` that conforms to `schema`.
pub(crate) fn structured(schema: &Value, text: &str) -> Value {
    let walk = Walk::new(schema, Mode::Structured, text, None);
    walk.value(schema, "", 0)
}

/// The words of `rest` after any leading small words ("in", "for", ...) up to the next small word or the
/// end of the sentence, without edge punctuation: "weather *in Paris for* 3 days" gives "Paris".
fn phrase(rest: &str) -> String {
    let sentence = rest.split(['.', '?', '!', '\n', ';']).next().unwrap_or_default();
    let words: Vec<&str> = sentence
        .split_whitespace()
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()))
        .filter(|w| !w.is_empty())
        .collect();
    let filler = |w: &str| FILLER.contains(&w.to_lowercase().as_str());
    let content: Vec<&str> = words
        .into_iter()
        .skip_while(|w| filler(w))
        .take_while(|w| !filler(w))
        .collect();
    content.join(" ")
}

/// Whether `needle` occurs in `haystack` (both lower-cased) between word boundaries.
pub(crate) fn occurs(haystack: &str, needle: &str) -> bool {
    last_occurrence(haystack, needle).is_some()
}

/// The byte offset just past the last occurrence of `needle` in `haystack` between word boundaries.
pub(crate) fn last_occurrence(haystack: &str, needle: &str) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    let is_word = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
    haystack
        .match_indices(needle)
        .filter(|(at, _)| {
            let before = haystack.get(..*at).and_then(|s| s.chars().next_back());
            let after = haystack.get(at + needle.len()..).and_then(|s| s.chars().next());
            !is_word(before) && !is_word(after)
        })
        .map(|(at, _)| at + needle.len())
        .last()
}

/// The first number written in `text` (`-3`, `42`, `2.5`), as JSON.
fn first_number(text: &str) -> Option<Number> {
    let bytes = text.as_bytes();
    let start = bytes.iter().position(u8::is_ascii_digit)?;
    let mut end = start;
    while bytes.get(end).is_some_and(u8::is_ascii_digit) {
        end += 1;
    }
    if bytes.get(end) == Some(&b'.') && bytes.get(end + 1).is_some_and(u8::is_ascii_digit) {
        end += 1;
        while bytes.get(end).is_some_and(u8::is_ascii_digit) {
            end += 1;
        }
    }
    let negative = start > 0
        && bytes.get(start - 1) == Some(&b'-')
        && (start == 1 || bytes.get(start - 2).is_some_and(u8::is_ascii_whitespace));
    let from = if negative { start - 1 } else { start };
    let literal = text.get(from..end)?;
    match literal.parse::<i64>() {
        Ok(i) => Some(Number::from(i)),
        Err(_) => literal.parse::<f64>().ok().and_then(Number::from_f64),
    }
}

/// Capitalised words of `text` that do not start a sentence, deduplicated: "entities".
fn capitalised(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut sentence_start = true;
    for raw in text.split_whitespace() {
        let word = raw.trim_matches(|c: char| !c.is_alphanumeric());
        let starts_upper = word.chars().next().is_some_and(char::is_uppercase);
        if starts_upper && !sentence_start && !out.iter().any(|w| w == word) {
            out.push(word.to_string());
        }
        sentence_start = raw.ends_with(['.', '?', '!']);
    }
    out
}

/// A string matching `pattern` (a regular expression), if it parses.
pub(crate) fn pattern_sample(pattern: &str) -> Option<String> {
    let hir = regex_syntax::Parser::new().parse(pattern).ok()?;
    let mut out = String::new();
    sample_hir(&hir, &mut out).then_some(out)
}

fn sample_hir(hir: &Hir, out: &mut String) -> bool {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => true,
        HirKind::Literal(lit) => match std::str::from_utf8(&lit.0) {
            Ok(s) => {
                out.push_str(s);
                true
            }
            Err(_) => false,
        },
        HirKind::Class(Class::Unicode(class)) => {
            let contains = |c: char| class.ranges().iter().any(|r| r.start() <= c && c <= r.end());
            let pick = ['a', 'A', '0', 'x', ' ', '-', '_', '.']
                .into_iter()
                .find(|&c| contains(c))
                .or_else(|| (b'!'..=b'~').map(char::from).find(|&c| contains(c)))
                .or_else(|| class.ranges().first().map(|r| r.start()));
            pick.map(|c| out.push(c)).is_some()
        }
        HirKind::Class(Class::Bytes(class)) => {
            let pick = class
                .ranges()
                .iter()
                .flat_map(|r| r.start()..=r.end())
                .find(u8::is_ascii_graphic);
            pick.map(|b| out.push(char::from(b))).is_some()
        }
        HirKind::Repetition(rep) => {
            let times = rep.min.max(1).min(rep.max.unwrap_or(u32::MAX));
            (0..times).all(|_| sample_hir(&rep.sub, out))
        }
        HirKind::Capture(cap) => sample_hir(&cap.sub, out),
        HirKind::Concat(parts) => parts.iter().all(|p| sample_hir(p, out)),
        HirKind::Alternation(alts) => alts.first().is_some_and(|a| sample_hir(a, out)),
    }
}

/// A plausible value for a string `format`.
fn format_sample(format: &str, text: &str) -> Option<String> {
    Some(match format {
        "date" => "2024-01-15".to_string(),
        "date-time" => "2024-01-15T12:00:00Z".to_string(),
        "time" => "12:00:00".to_string(),
        "duration" => "P1D".to_string(),
        "email" | "idn-email" => "user@example.com".to_string(),
        "uri" | "url" | "iri" | "uri-reference" | "iri-reference" => "https://example.com/".to_string(),
        "hostname" | "idn-hostname" => "example.com".to_string(),
        "ipv4" => "192.0.2.1".to_string(),
        "ipv6" => "2001:db8::1".to_string(),
        "uuid" => {
            let h = hex(&sha256(text.as_bytes()));
            let part = |a: usize, b: usize| h.get(a..b).unwrap_or("0");
            format!(
                "{}-{}-4{}-8{}-{}",
                part(0, 8),
                part(8, 12),
                part(13, 16),
                part(17, 20),
                part(20, 32)
            )
        }
        _ => return None,
    })
}

impl<'a> Walk<'a> {
    fn new(root: &'a Value, mode: Mode, text: &'a str, after: Option<String>) -> Walk<'a> {
        Walk {
            root,
            mode,
            text,
            lower: text.to_lowercase(),
            after,
        }
    }

    /// The schema a `$ref`, `anyOf`, `oneOf` or `allOf` stands for.
    fn resolve(&self, mut schema: &'a Value) -> &'a Value {
        for _ in 0..MAX_DEPTH {
            if let Some(target) = schema.get("$ref").and_then(Value::as_str) {
                match target.strip_prefix('#').and_then(|p| self.root.pointer(p)) {
                    Some(s) => {
                        schema = s;
                        continue;
                    }
                    None => return schema,
                }
            }
            let branches = ["anyOf", "oneOf", "allOf"]
                .iter()
                .find_map(|k| schema.get(*k).and_then(Value::as_array));
            let Some(branches) = branches else {
                return schema;
            };
            let pick = branches
                .iter()
                .find(|b| b.get("type").and_then(Value::as_str) != Some("null"))
                .or_else(|| branches.first());
            match pick {
                Some(b) => schema = b,
                None => return schema,
            }
        }
        schema
    }

    /// The first non-null `type` of a schema, or the one its keywords imply.
    fn kind(schema: &Value) -> &str {
        let named = match schema.get("type") {
            Some(Value::String(t)) => Some(t.as_str()),
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).find(|t| *t != "null"),
            _ => None,
        };
        named.unwrap_or(if schema.get("properties").is_some() {
            "object"
        } else if schema.get("items").is_some() {
            "array"
        } else {
            "string"
        })
    }

    fn value(&self, schema: &'a Value, name: &str, depth: usize) -> Value {
        if depth > MAX_DEPTH {
            return Value::Null;
        }
        let schema = self.resolve(schema);
        if let Some(c) = schema.get("const") {
            return c.clone();
        }
        if let Some(values) = schema.get("enum").and_then(Value::as_array) {
            return self
                .mentioned(values)
                .into_iter()
                .next()
                .cloned()
                .unwrap_or(Value::Null);
        }
        match Self::kind(schema) {
            "object" => self.object(schema, depth),
            "array" => self.array(schema, name, depth),
            "integer" | "number" => self.number(schema),
            "boolean" => Value::Bool(match self.mode {
                Mode::Arguments => true,
                Mode::Structured => occurs(&self.lower, &name.replace('_', " ").to_lowercase()),
            }),
            "null" => Value::Null,
            _ => Value::String(self.string(schema, name)),
        }
    }

    /// The enum values the prompt mentions, in enum order; the first value when it mentions none.
    fn mentioned(&self, values: &'a [Value]) -> Vec<&'a Value> {
        let hits: Vec<&Value> = values
            .iter()
            .filter(|v| {
                let s = match v {
                    Value::String(s) => s.to_lowercase(),
                    other => other.to_string(),
                };
                occurs(&self.lower, &s)
            })
            .collect();
        if hits.is_empty() {
            values.first().into_iter().collect()
        } else {
            hits
        }
    }

    fn object(&self, schema: &'a Value, depth: usize) -> Value {
        let empty = Map::new();
        let props = schema
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        // Required properties first, then (structured output only) the optional ones.
        let mut names: Vec<&str> = required.clone();
        if self.mode == Mode::Structured {
            names.extend(props.keys().map(String::as_str).filter(|k| !required.contains(k)));
        }
        let any = json!({});
        let mut out = Map::new();
        for name in names {
            let sub = props.get(name).unwrap_or(&any);
            out.insert(name.to_string(), self.value(sub, name, depth + 1));
        }
        Value::Object(out)
    }

    fn array(&self, schema: &'a Value, name: &str, depth: usize) -> Value {
        let any = json!({});
        let items = schema.get("items").unwrap_or(&any);
        let item = self.resolve(items);
        let min = schema.get("minItems").and_then(Value::as_u64).unwrap_or(0) as usize;
        let max = schema
            .get("maxItems")
            .and_then(Value::as_u64)
            .map_or(usize::MAX, |m| m as usize);
        let plain_string = Self::kind(item) == "string"
            && ["enum", "const", "format", "pattern"]
                .iter()
                .all(|k| item.get(*k).is_none());
        let mut out: Vec<Value> = match (self.mode, item.get("enum").and_then(Value::as_array)) {
            (_, Some(values)) => self
                .mentioned(values)
                .into_iter()
                .take(MAX_ITEMS)
                .cloned()
                .collect(),
            (Mode::Structured, None) if plain_string => capitalised(self.text)
                .into_iter()
                .take(MAX_ITEMS)
                .map(Value::String)
                .collect(),
            _ => vec![self.value(items, name, depth + 1)],
        };
        out.truncate(max);
        while out.len() < min {
            let mut v = self.value(items, name, depth + 1);
            if let Value::String(s) = &mut v {
                // Distinct padding, in case the schema wants uniqueItems.
                s.push_str(&format!(" {}", out.len() + 1));
            }
            out.push(v);
        }
        Value::Array(out)
    }

    fn number(&self, schema: &Value) -> Value {
        let integer = Self::kind(schema) == "integer";
        let base = match self.mode {
            Mode::Arguments => first_number(self.text).unwrap_or_else(|| Number::from(1)),
            Mode::Structured => Number::from(self.text.split_whitespace().count()),
        };
        let mut n = base.as_f64().unwrap_or(1.0);
        if integer {
            n = n.trunc();
        }
        let bound = |k: &str| schema.get(k).and_then(Value::as_f64);
        // The nudge past an exclusive bound: 1 for integers, a little for numbers.
        let step = if integer { 1.0 } else { 0.5 };
        if let Some(lo) = bound("minimum") {
            n = n.max(if integer { lo.ceil() } else { lo });
        }
        if let Some(lo) = bound("exclusiveMinimum") {
            if n <= lo {
                n = if integer { lo.floor() + 1.0 } else { lo + step };
            }
        }
        if let Some(hi) = bound("maximum") {
            n = n.min(if integer { hi.floor() } else { hi });
        }
        if let Some(hi) = bound("exclusiveMaximum") {
            if n >= hi {
                n = if integer { hi.ceil() - 1.0 } else { hi - step };
            }
        }
        if n.fract() == 0.0 && n.abs() < 9.0e15 {
            json!(n as i64)
        } else {
            Number::from_f64(n).map_or(Value::Null, Value::Number)
        }
    }

    fn string(&self, schema: &Value, name: &str) -> String {
        let sample = schema
            .get("format")
            .and_then(Value::as_str)
            .and_then(|f| format_sample(f, self.text))
            .or_else(|| {
                schema
                    .get("pattern")
                    .and_then(Value::as_str)
                    .and_then(pattern_sample)
            });
        if let Some(s) = sample {
            return s;
        }
        let fallback = if name.is_empty() { "text" } else { name };
        let mut s = match self.mode {
            Mode::Arguments => self.after.clone().unwrap_or_else(|| fallback.to_string()),
            Mode::Structured => {
                let excerpt: Vec<&str> = self.text.split_whitespace().take(EXCERPT_WORDS).collect();
                if excerpt.is_empty() {
                    fallback.to_string()
                } else {
                    excerpt.join(" ")
                }
            }
        };
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64) {
            s = s.chars().take(max as usize).collect();
        }
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64) {
            while (s.chars().count() as u64) < min {
                s.push('x');
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phrases_after_the_matched_word() {
        let text = "What's the weather in Paris, France? And tomorrow";
        let at = last_occurrence(&text.to_lowercase(), "weather");
        assert_eq!(at, Some(18));
        assert_eq!(phrase(text.get(18..).unwrap()), "Paris France");
        assert_eq!(phrase(" for me"), "");
    }

    #[test]
    fn occurrences_respect_word_boundaries() {
        assert!(occurs("get the weather", "weather"));
        assert!(!occurs("weathered", "weather"));
        assert!(occurs("call get_weather now", "get_weather"));
        assert_eq!(last_occurrence("a b a", "a"), Some(5));
        assert!(!occurs("abc", ""));
    }

    #[test]
    fn numbers_in_text() {
        let cases = [
            ("book 3 rooms", Some(json!(3))),
            ("about 2.5 km", Some(json!(2.5))),
            ("it is -4 degrees", Some(json!(-4))),
            ("room a-4", Some(json!(4))),
            ("no digits", None),
        ];
        for (text, want) in cases {
            assert_eq!(first_number(text).map(Value::Number), want, "{text}");
        }
    }

    #[test]
    fn entities_skip_sentence_starts() {
        assert_eq!(
            capitalised("When did Alice meet Bob in Paris? Alice said: Hi Bob. Then Carol"),
            vec!["Alice", "Bob", "Paris", "Hi", "Carol"]
        );
    }

    #[test]
    fn patterns_are_sampled() {
        let cases = [
            ("^[A-Z]{3}-\\d{4}$", "AAA-0000"),
            ("^(foo|bar)+[0-9]?$", "foo0"),
            ("^[^,]+$", "a"),
            ("\\w+@\\w+\\.com", "a@a.com"),
        ];
        for (pattern, want) in cases {
            assert_eq!(pattern_sample(pattern).as_deref(), Some(want), "{pattern}");
        }
        assert_eq!(pattern_sample("(unclosed"), None);
    }

    #[test]
    fn arguments_take_required_properties_from_the_prompt() {
        let schema = json!({"type": "object", "properties": {
            "location": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer", "minimum": 1, "maximum": 7},
            "detailed": {"type": "boolean"},
            "note": {"type": "string"}
        }, "required": ["location", "unit", "days", "detailed"]});
        let text = "weather in Paris for 10 days in Fahrenheit";
        let after = last_occurrence(&text.to_lowercase(), "weather");
        assert_eq!(
            arguments(&schema, text, after),
            json!({"location": "Paris", "unit": "fahrenheit", "days": 7, "detailed": true})
        );
        // Nothing after the match, no number: the property name and 1.
        assert_eq!(
            arguments(&schema, "weather", Some(7)),
            json!({"location": "location", "unit": "celsius", "days": 1, "detailed": true})
        );
        assert_eq!(arguments(&json!({"type": "object"}), "x", None), json!({}));
    }

    #[test]
    fn structured_output_covers_every_property() {
        let schema = json!({"type": "object", "properties": {
            "sentiment": {"enum": ["positive", "negative", "neutral"]},
            "score": {"type": "number", "minimum": 0, "maximum": 5},
            "words": {"type": "integer"},
            "urgent": {"type": "boolean"},
            "refund": {"type": "boolean"},
            "summary": {"type": "string", "maxLength": 12},
            "people": {"type": "array", "items": {"type": "string"}},
            "tags": {"type": "array", "items": {"enum": ["billing", "bug", "praise"]}, "minItems": 1},
            "contact": {"$ref": "#/$defs/contact"},
            "due": {"type": ["string", "null"], "format": "date"},
            "code": {"anyOf": [{"type": "null"}, {"type": "string", "pattern": "^T-[0-9]{3}$"}]}
        }, "required": ["sentiment", "score"],
        "$defs": {"contact": {"type": "object", "properties": {"email": {"type": "string", "format": "email"}}}}});
        let text = "This is urgent: a negative bug report from Carol about Dave and billing.";
        assert_eq!(
            structured(&schema, text),
            json!({
                "sentiment": "negative", "score": 5, "words": 13, "urgent": true, "refund": false,
                "summary": "This is urge", "people": ["Carol", "Dave"], "tags": ["billing", "bug"],
                "contact": {"email": "user@example.com"}, "due": "2024-01-15", "code": "T-000"
            })
        );
    }

    #[test]
    fn arrays_respect_item_counts() {
        let schema = json!({"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 2});
        assert_eq!(structured(&schema, "meet Ann"), json!(["Ann", "meet Ann 2"]));
        let nested = json!({"type": "array", "items": {"type": "object",
            "properties": {"n": {"type": "integer", "exclusiveMaximum": 2}}}});
        assert_eq!(structured(&nested, "a b c"), json!([{"n": 1}]));
        let recursive = json!({"$ref": "#"});
        assert_eq!(structured(&recursive, "x"), json!("x"));
    }
}
