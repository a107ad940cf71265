//! Prompt templates and the one syntax that names a value: `{{ source }}` in a template, the bare
//! source in a filter's mappings (`"x-ai-intent": "task.intent/label"`).
//!
//! | source | value |
//! |---|---|
//! | `body` | the whole request body as text |
//! | `body/<json pointer>` | the value at that pointer of a JSON body (`body/customer/email`); on a form body (`application/x-www-form-urlencoded`) the field named by the first segment |
//! | `header.<name>` | a request header |
//! | `query.<name>` | a query parameter, decoded |
//! | `method`, `path` | the request's method and path (without the query) |
//! | `client_address` | the client's IP address |
//! | `consumer`, `tier` | the consumer identity and its tier, from the configured identity sources |
//! | `claim.<name>` | a claim of the caller's verified JWT (a dotted name walks nested objects) |
//! | `task.<name>`, `task.<name>/<json pointer>` | another task's output, whole or a part of it: the task then runs after that one |
//! | a declared variable | a value the embedding filter supplies (ai-enrich: `local.language`, ...) |
//!
//! Strings are inserted as they are, other JSON values as compact JSON; a value that is missing is
//! empty. A template has no escape: `{{` always opens a reference, and an unknown one refuses the config.

use std::fmt;

/// Where a value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// The request body: whole, or the value at a JSON pointer (form bodies: a field).
    Body(Option<String>),
    /// A request header (lower-case name).
    Header(String),
    Query(String),
    Method,
    Path,
    ClientAddress,
    Consumer,
    Tier,
    /// A claim of the caller's verified token (dotted path).
    Claim(String),
    /// Another task's output: its name, and a JSON pointer into it.
    Task(String, Option<String>),
    /// A variable the embedding filter declares and supplies.
    Var(String),
}

/// What a source may name: the request's parts, the tasks of the same set, the declared variables.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub tasks: &'a [&'a str],
    pub vars: &'a [&'a str],
}

const SOURCES: &str = "body, body/<json pointer>, header.<name>, query.<name>, method, path, \
client_address, consumer, tier, claim.<name>, task.<name>, task.<name>/<json pointer>";

fn non_empty<'a>(s: &'a str, what: &str) -> Result<&'a str, String> {
    if s.is_empty() {
        Err(format!("`{what}` needs a name"))
    } else {
        Ok(s)
    }
}

impl Source {
    /// Parses a source as written in a template or a mapping.
    pub fn parse(text: &str, scope: Scope<'_>) -> Result<Source, String> {
        let text = text.trim();
        if scope.vars.contains(&text) {
            return Ok(Source::Var(text.to_string()));
        }
        if let Some(rest) = text.strip_prefix("task.") {
            let (name, pointer) = match rest.find('/') {
                Some(at) => (rest.get(..at).unwrap_or(rest), rest.get(at..)),
                None => (rest, None),
            };
            if !scope.tasks.contains(&name) {
                return Err(format!("`{text}`: there is no task named `{name}`"));
            }
            return Ok(Source::Task(name.to_string(), pointer.map(str::to_string)));
        }
        if let Some(pointer) = text.strip_prefix("body") {
            if pointer.is_empty() {
                return Ok(Source::Body(None));
            }
            if pointer.starts_with('/') {
                return Ok(Source::Body(Some(pointer.to_string())));
            }
        }
        if let Some(name) = text.strip_prefix("header.") {
            let name = non_empty(name, "header.")?;
            return Ok(Source::Header(name.to_ascii_lowercase()));
        }
        if let Some(name) = text.strip_prefix("query.") {
            return Ok(Source::Query(non_empty(name, "query.")?.to_string()));
        }
        if let Some(name) = text.strip_prefix("claim.") {
            return Ok(Source::Claim(non_empty(name, "claim.")?.to_string()));
        }
        Ok(match text {
            "method" => Source::Method,
            "path" => Source::Path,
            "client_address" => Source::ClientAddress,
            "consumer" => Source::Consumer,
            "tier" => Source::Tier,
            _ => {
                let vars = if scope.vars.is_empty() {
                    String::new()
                } else {
                    format!(", {}", scope.vars.join(", "))
                };
                return Err(format!("unknown source `{text}` (one of {SOURCES}{vars})"));
            }
        })
    }

    /// The task this source reads, if it reads one.
    pub fn task(&self) -> Option<&str> {
        match self {
            Source::Task(name, _) => Some(name),
            _ => None,
        }
    }

    /// Whether a request holds it (every source but tasks' outputs and declared variables).
    pub fn from_request(&self) -> bool {
        !matches!(self, Source::Task(..) | Source::Var(_))
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Body(None) => f.write_str("body"),
            Source::Body(Some(p)) => write!(f, "body{p}"),
            Source::Header(n) => write!(f, "header.{n}"),
            Source::Query(n) => write!(f, "query.{n}"),
            Source::Method => f.write_str("method"),
            Source::Path => f.write_str("path"),
            Source::ClientAddress => f.write_str("client_address"),
            Source::Consumer => f.write_str("consumer"),
            Source::Tier => f.write_str("tier"),
            Source::Claim(n) => write!(f, "claim.{n}"),
            Source::Task(n, None) => write!(f, "task.{n}"),
            Source::Task(n, Some(p)) => write!(f, "task.{n}{p}"),
            Source::Var(n) => f.write_str(n),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Value(Source),
}

/// A compiled template: text with `{{ source }}` references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Compiles `text`; the error says what is wrong (the caller names the field).
    pub fn compile(text: &str, scope: Scope<'_>) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if let Some(before) = rest.get(..open).filter(|b| !b.is_empty()) {
                parts.push(Part::Text(before.to_string()));
            }
            let after = rest.get(open + 2..).unwrap_or_default();
            let Some(close) = after.find("}}") else {
                return Err("`{{` without a closing `}}`".into());
            };
            let inner = after.get(..close).unwrap_or_default();
            if inner.contains("{{") {
                return Err(format!("`{{{{{inner}}}}}`: references do not nest"));
            }
            parts.push(Part::Value(Source::parse(inner, scope)?));
            rest = after.get(close + 2..).unwrap_or_default();
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template { parts })
    }

    /// The sources it reads, in order (repeats included).
    pub fn sources(&self) -> impl Iterator<Item = &Source> {
        self.parts.iter().filter_map(|p| match p {
            Part::Value(s) => Some(s),
            Part::Text(_) => None,
        })
    }

    /// The text with each reference replaced by `value(source)`.
    pub fn render(&self, value: &mut dyn FnMut(&Source) -> String) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Value(s) => out.push_str(&value(s)),
            }
        }
        out
    }

    /// Characters of literal text (an estimate of the prompt's own size).
    pub fn literal_chars(&self) -> usize {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.chars().count(),
                Part::Value(_) => 0,
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const SCOPE: Scope<'static> = Scope {
        tasks: &["intent", "risk"],
        vars: &["local.language"],
    };

    #[test]
    fn parses_every_source_and_prints_it_back() {
        let cases = [
            ("body", Source::Body(None)),
            ("body/ticket/text", Source::Body(Some("/ticket/text".into()))),
            ("header.User-Agent", Source::Header("user-agent".into())),
            ("query.q", Source::Query("q".into())),
            ("method", Source::Method),
            ("path", Source::Path),
            (" client_address ", Source::ClientAddress),
            ("consumer", Source::Consumer),
            ("tier", Source::Tier),
            ("claim.org.tier", Source::Claim("org.tier".into())),
            ("task.intent", Source::Task("intent".into(), None)),
            (
                "task.risk/score",
                Source::Task("risk".into(), Some("/score".into())),
            ),
            ("local.language", Source::Var("local.language".into())),
        ];
        for (text, want) in cases {
            let got = Source::parse(text, SCOPE).unwrap();
            assert_eq!(got, want, "{text}");
            let printed = got.to_string();
            assert_eq!(Source::parse(&printed, SCOPE).unwrap(), want, "{printed}");
        }
        let bad = [
            ("bodyx", "unknown source `bodyx`"),
            ("header.", "`header.` needs a name"),
            ("task.nope", "no task named `nope`"),
            ("task.nope/x", "no task named `nope`"),
            ("local.other", "unknown source `local.other`"),
            ("", "unknown source ``"),
        ];
        for (text, want) in bad {
            let err = Source::parse(text, SCOPE).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
        assert!(Source::parse("x", SCOPE).unwrap_err().contains("local.language"));
    }

    #[test]
    fn compiles_and_renders() {
        let t = Template::compile(
            "Ticket {{ body/subject }} from {{consumer}} ({{local.language}}): {{task.intent/label}}.",
            SCOPE,
        )
        .unwrap();
        let sources: Vec<String> = t.sources().map(ToString::to_string).collect();
        assert_eq!(
            sources,
            ["body/subject", "consumer", "local.language", "task.intent/label"]
        );
        let out = t.render(&mut |s| format!("<{s}>"));
        assert_eq!(
            out,
            "Ticket <body/subject> from <consumer> (<local.language>): <task.intent/label>."
        );
        assert_eq!(t.literal_chars(), "Ticket  from  (): .".len());
        assert_eq!(
            Template::compile("no refs } {", SCOPE)
                .unwrap()
                .render(&mut |_| unreachable!()),
            "no refs } {"
        );
        let cases = [
            ("a {{body", "without a closing"),
            ("{{ {{body}} }}", "do not nest"),
            ("{{nope}}", "unknown source `nope`"),
        ];
        for (text, want) in cases {
            let err = Template::compile(text, SCOPE).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
