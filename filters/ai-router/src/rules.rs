//! The rules and what they read: a request's [`Facts`], gathered once, and each rule's conditions
//! ([`When`]) over them. Pure: no host, tested natively.
//!
//! Rules are tried in order and the first whose conditions all hold wins; when none does, the
//! default action applies. A rule that reads the intent makes the evaluation stop and ask for it
//! ([`Eval::NeedIntent`]) — only when the rule's other conditions already hold, so the classifier is
//! asked only when its answer can change the decision.

use serde_json::Value;
use shared::chat::{Api, Features, Kind};
use shared::pattern::Pattern;

/// A request as the rules see it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    /// The texts the model reads, with the role of their message (request-level texts have none).
    /// A body that is not a chat request is one text of role `user`: its readable text.
    pub texts: Vec<Said>,
    /// Detected language of the user texts (`und` when unsure); empty when no rule reads it.
    pub language: String,
    pub tokens: u64,
    pub messages: u64,
    pub code: bool,
    pub features: Features,
    /// The requested `model`.
    pub model: Option<String>,
    pub consumer: Option<String>,
    pub tier: Option<String>,
    pub group: Option<String>,
    /// The caller's verified claims.
    pub claims: serde_json::Map<String, Value>,
    /// The request headers some rule reads, by lower-case name.
    pub headers: Vec<(String, String)>,
}

impl Facts {
    /// The texts of the last user message (the whole text of a non-chat body), joined by newlines.
    pub fn last_user_text(&self) -> String {
        let user = |t: &&Said| t.role.as_deref() == Some("user");
        let Some(last) = self.texts.iter().rev().find(user) else {
            return String::new();
        };
        let texts: Vec<&str> = self
            .texts
            .iter()
            .filter(user)
            .filter(|t| t.message == last.message)
            .map(|t| t.text.as_str())
            .collect();
        texts.join("\n")
    }

    /// Every text of these roles, joined by newlines.
    pub fn text_of(&self, roles: &[String]) -> String {
        let mut out = String::new();
        for t in &self.texts {
            if t.role.as_deref().is_some_and(|r| roles.iter().any(|x| x == r)) {
                if !out.is_empty() {
                    out.push('\n');
                }
                out.push_str(&t.text);
            }
        }
        out
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One text of the request and who said it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Said {
    pub role: Option<String>,
    /// Its message's index in `messages`.
    pub message: Option<usize>,
    pub text: String,
}

impl Said {
    pub fn user(text: String) -> Said {
        Said {
            role: Some("user".into()),
            message: None,
            text,
        }
    }
}

/// The texts of a chat request's body, by role (the shared walker's): message contents, system
/// prompts and tool results; tool definitions and schemas are not what a user asks.
pub fn chat_texts(api: Option<Api>, body: &Value) -> Vec<Said> {
    chat_texts_of(api, body).0
}

/// [`chat_texts`] and the prompt-token estimate every policy shares, from one walk.
pub fn chat_texts_of(api: Option<Api>, body: &Value) -> (Vec<Said>, u64) {
    let walked = shared::chat::texts(api, body);
    let tokens = shared::chat::estimate::prompt_tokens(body, &walked);
    let texts = walked
        .into_iter()
        .filter(|t| matches!(t.kind, Kind::Content | Kind::System | Kind::ToolResult))
        .map(|t| Said {
            role: t.role.map(str::to_string),
            message: t.message,
            text: t.text.into_owned(),
        })
        .collect();
    (texts, tokens)
}

/// An inclusive range of a count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub min: u64,
    pub max: u64,
}

impl Range {
    fn holds(&self, n: u64) -> bool {
        (self.min..=self.max).contains(&n)
    }
}

/// A text condition: a regex and/or keywords over the texts of some roles.
#[derive(Debug, Clone)]
pub struct TextCond {
    pub regex: Option<Pattern>,
    /// Lower-cased; any one found as whole words matches.
    pub keywords: Vec<String>,
    pub roles: Vec<String>,
}

/// Whether `keyword` (lower case) occurs in `lower` (lower-cased text) as whole words: not inside a
/// longer word.
pub fn has_word(lower: &str, keyword: &str) -> bool {
    if keyword.is_empty() {
        return false;
    }
    let boundary = |c: Option<char>| c.is_none_or(|c| !c.is_alphanumeric());
    lower.match_indices(keyword).any(|(at, m)| {
        let before = lower.get(..at).and_then(|s| s.chars().next_back());
        let after = lower.get(at + m.len()..).and_then(|s| s.chars().next());
        boundary(before) && boundary(after)
    })
}

/// How many of `keywords` occur in `lower` as whole words.
pub fn keyword_hits(lower: &str, keywords: &[String]) -> usize {
    keywords.iter().filter(|k| has_word(lower, k)).count()
}

/// One rule's conditions; every one set must hold. `None` / empty: not a condition.
#[derive(Debug, Clone, Default)]
pub struct When {
    pub text: Option<TextCond>,
    pub language: Option<Vec<String>>,
    pub tokens: Option<Range>,
    pub messages: Option<Range>,
    pub code: Option<bool>,
    pub images: Option<bool>,
    pub tools: Option<bool>,
    pub response_format: Option<bool>,
    pub model: Option<Vec<String>>,
    pub headers: Vec<(String, Pattern)>,
    pub consumer: Option<Vec<String>>,
    pub tier: Option<Vec<String>>,
    pub group: Option<Vec<String>>,
    /// Verified claim (dotted path) → accepted values.
    pub claims: Vec<(String, Vec<String>)>,
    pub intent: Option<Vec<String>>,
}

fn one_of(list: &Option<Vec<String>>, value: Option<&str>) -> bool {
    match list {
        None => true,
        Some(l) => value.is_some_and(|v| l.iter().any(|x| x == v)),
    }
}

fn flag(want: Option<bool>, have: bool) -> bool {
    want.is_none_or(|w| w == have)
}

/// A claim by dotted path, as text (strings as they are, numbers and booleans printed).
fn claim_text(claims: &serde_json::Map<String, Value>, path: &str) -> Option<String> {
    let mut parts = path.split('.');
    let mut v = claims.get(parts.next()?)?;
    for p in parts {
        v = v.get(p)?;
    }
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl When {
    /// Whether every condition but the intent holds.
    pub fn holds(&self, f: &Facts) -> bool {
        let text = self.text.as_ref().is_none_or(|t| {
            let text = f.text_of(&t.roles);
            let regex = t.regex.as_ref().is_none_or(|r| r.is_match(&text));
            let keywords = t.keywords.is_empty() || keyword_hits(&text.to_lowercase(), &t.keywords) > 0;
            regex && keywords
        });
        let claims = self
            .claims
            .iter()
            .all(|(path, values)| claim_text(&f.claims, path).is_some_and(|v| values.contains(&v)));
        let headers = self
            .headers
            .iter()
            .all(|(name, re)| f.header(name).is_some_and(|v| re.is_match(v)));
        text && claims
            && headers
            && one_of(&self.language, Some(f.language.as_str()))
            && self.tokens.is_none_or(|r| r.holds(f.tokens))
            && self.messages.is_none_or(|r| r.holds(f.messages))
            && flag(self.code, f.code)
            && flag(self.images, f.features.images)
            && flag(self.tools, f.features.tools)
            && flag(self.response_format, f.features.response_format)
            && one_of(&self.model, f.model.as_deref())
            && one_of(&self.consumer, f.consumer.as_deref())
            && one_of(&self.tier, f.tier.as_deref())
            && one_of(&self.group, f.group.as_deref())
    }
}

/// Where a request is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Set the body's `model` (ai-proxy then routes it).
    Model(String),
    /// An upstream of the config's `upstreams`, by index.
    Upstream(usize),
}

/// One branch of a split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Branch {
    pub target: Target,
    pub weight: u64,
}

/// What a rule (or the default) does: one target, or a weighted split among several.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    pub branches: Vec<Branch>,
}

impl Action {
    /// The branch for a draw in `0..total weight`.
    pub fn branch(&self, point: u64) -> Option<&Branch> {
        let mut point = point;
        for b in &self.branches {
            if point < b.weight {
                return Some(b);
            }
            point -= b.weight;
        }
        self.branches.last()
    }

    pub fn total_weight(&self) -> u64 {
        self.branches.iter().map(|b| b.weight).sum()
    }
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub when: When,
    pub action: Action,
}

/// What the intent classifier said, as the rules read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intent {
    /// Not asked yet.
    Unknown,
    Label(String),
    /// Asked; no label fits (the local classifier found nothing).
    Unlabelled,
    /// The classifier failed (timeout, error, budget, breaker): the intent's `failure_mode` applies.
    Failed,
}

/// What evaluation found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eval {
    /// Rule `i` matched.
    Rule(usize),
    /// No rule matched.
    Default,
    /// Rule `i` holds but for its intent condition, and the intent is unknown: classify, then
    /// evaluate again from `i`.
    NeedIntent(usize),
    /// Rule `i` reads the intent and the classifier failed.
    IntentFailed(usize),
}

/// Tries the rules from `from` on, in order.
pub fn evaluate(rules: &[Rule], facts: &Facts, intent: &Intent, from: usize) -> Eval {
    for (i, rule) in rules.iter().enumerate().skip(from) {
        if !rule.when.holds(facts) {
            continue;
        }
        let Some(labels) = &rule.when.intent else {
            return Eval::Rule(i);
        };
        match intent {
            Intent::Unknown => return Eval::NeedIntent(i),
            Intent::Failed => return Eval::IntentFailed(i),
            Intent::Label(l) if labels.contains(l) => return Eval::Rule(i),
            Intent::Label(_) | Intent::Unlabelled => {}
        }
    }
    Eval::Default
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn facts() -> Facts {
        Facts {
            texts: vec![
                Said {
                    role: Some("system".into()),
                    message: Some(0),
                    text: "You are terse.".into(),
                },
                Said::user("Hola, ¿me ayudas con la factura?".into()),
            ],
            language: "es".into(),
            tokens: 40,
            messages: 2,
            model: Some("auto".into()),
            tier: Some("gold".into()),
            headers: vec![("x-team".into(), "payments".into())],
            claims: json!({"plan": "pro", "org": {"id": 7}})
                .as_object()
                .cloned()
                .unwrap(),
            ..Facts::default()
        }
    }

    fn text(regex: Option<&str>, keywords: &[&str], roles: &[&str]) -> TextCond {
        TextCond {
            regex: regex.map(|r| Pattern::new(r).unwrap()),
            keywords: keywords.iter().map(|k| k.to_string()).collect(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
        }
    }

    fn list(v: &[&str]) -> Option<Vec<String>> {
        Some(v.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn each_condition_holds_or_not() {
        let f = facts();
        let cases: Vec<(When, bool)> = vec![
            (When::default(), true),
            (
                When {
                    text: Some(text(Some("(?i)factura"), &[], &["user"])),
                    ..When::default()
                },
                true,
            ),
            (
                When {
                    text: Some(text(Some("(?i)factura"), &[], &["system"])),
                    ..When::default()
                },
                false,
            ),
            (
                When {
                    text: Some(text(None, &["terse"], &["system"])),
                    ..When::default()
                },
                true,
            ),
            // Whole words only: "factur" is inside a word.
            (
                When {
                    text: Some(text(None, &["factur"], &["user"])),
                    ..When::default()
                },
                false,
            ),
            (
                When {
                    text: Some(text(Some("hola"), &["nada"], &["user"])),
                    ..When::default()
                },
                false,
            ),
            (
                When {
                    language: list(&["es", "pt"]),
                    ..When::default()
                },
                true,
            ),
            (
                When {
                    language: list(&["en"]),
                    ..When::default()
                },
                false,
            ),
            (
                When {
                    tokens: Some(Range { min: 0, max: 40 }),
                    ..When::default()
                },
                true,
            ),
            (
                When {
                    tokens: Some(Range {
                        min: 41,
                        max: u64::MAX,
                    }),
                    ..When::default()
                },
                false,
            ),
            (
                When {
                    messages: Some(Range { min: 2, max: 2 }),
                    ..When::default()
                },
                true,
            ),
            (
                When {
                    code: Some(false),
                    images: Some(false),
                    tools: Some(false),
                    response_format: Some(false),
                    ..When::default()
                },
                true,
            ),
            (
                When {
                    code: Some(true),
                    ..When::default()
                },
                false,
            ),
            (
                When {
                    model: list(&["auto"]),
                    ..When::default()
                },
                true,
            ),
            (
                When {
                    model: list(&["gpt-4o"]),
                    ..When::default()
                },
                false,
            ),
            (
                When {
                    headers: vec![("x-team".into(), Pattern::new("^pay").unwrap())],
                    ..When::default()
                },
                true,
            ),
            (
                When {
                    headers: vec![("x-other".into(), Pattern::new("").unwrap())],
                    ..When::default()
                },
                false,
            ),
            (
                When {
                    tier: list(&["gold"]),
                    ..When::default()
                },
                true,
            ),
            (
                When {
                    consumer: list(&["alice"]),
                    ..When::default()
                },
                false,
            ),
            (
                When {
                    group: list(&["staff"]),
                    ..When::default()
                },
                false,
            ),
            (
                When {
                    claims: vec![
                        ("plan".into(), vec!["pro".into()]),
                        ("org.id".into(), vec!["7".into()]),
                    ],
                    ..When::default()
                },
                true,
            ),
            (
                When {
                    claims: vec![("plan".into(), vec!["free".into()])],
                    ..When::default()
                },
                false,
            ),
        ];
        for (i, (when, want)) in cases.iter().enumerate() {
            assert_eq!(when.holds(&f), *want, "case {i}: {when:?}");
        }
    }

    fn rule(name: &str, when: When) -> Rule {
        Rule {
            name: name.into(),
            when,
            action: Action {
                branches: vec![Branch {
                    target: Target::Model(name.into()),
                    weight: 1,
                }],
            },
        }
    }

    #[test]
    fn first_match_wins_and_intent_is_asked_only_when_it_decides() {
        let f = facts();
        let never = When {
            model: list(&["nope"]),
            ..When::default()
        };
        let wants = |labels: &[&str]| When {
            intent: list(labels),
            ..When::default()
        };
        let rules = vec![
            rule("a", never.clone()),
            rule(
                "b",
                When {
                    intent: list(&["billing"]),
                    model: list(&["nope"]),
                    ..When::default()
                },
            ),
            rule("c", wants(&["billing"])),
            rule(
                "d",
                When {
                    tier: list(&["gold"]),
                    ..When::default()
                },
            ),
        ];
        // b's other conditions fail, so the intent is first needed at c.
        assert_eq!(evaluate(&rules, &f, &Intent::Unknown, 0), Eval::NeedIntent(2));
        assert_eq!(
            evaluate(&rules, &f, &Intent::Label("billing".into()), 2),
            Eval::Rule(2)
        );
        assert_eq!(
            evaluate(&rules, &f, &Intent::Label("other".into()), 2),
            Eval::Rule(3)
        );
        assert_eq!(evaluate(&rules, &f, &Intent::Unlabelled, 2), Eval::Rule(3));
        assert_eq!(evaluate(&rules, &f, &Intent::Failed, 2), Eval::IntentFailed(2));
        assert_eq!(evaluate(&rules[..2], &f, &Intent::Unknown, 0), Eval::Default);
        assert_eq!(evaluate(&[], &f, &Intent::Unknown, 0), Eval::Default);
    }

    #[test]
    fn splits_follow_their_weights() {
        let a = Action {
            branches: vec![
                Branch {
                    target: Target::Model("x".into()),
                    weight: 90,
                },
                Branch {
                    target: Target::Upstream(0),
                    weight: 10,
                },
            ],
        };
        assert_eq!(a.total_weight(), 100);
        assert_eq!(a.branch(0).unwrap().target, Target::Model("x".into()));
        assert_eq!(a.branch(89).unwrap().target, Target::Model("x".into()));
        assert_eq!(a.branch(90).unwrap().target, Target::Upstream(0));
        assert_eq!(a.branch(500).unwrap().target, Target::Upstream(0));
    }

    #[test]
    fn words_and_texts() {
        assert!(has_word("fix my rust code", "rust"));
        assert!(has_word("rust", "rust"));
        assert!(!has_word("trusty", "rust"));
        assert!(has_word("a refund, please", "refund"));
        assert!(has_word("need a credit card now", "credit card"));
        assert!(!has_word("x", ""));
        assert_eq!(
            keyword_hits(
                "refund my invoice",
                &["refund".into(), "invoice".into(), "bill".into()]
            ),
            2
        );
        let body = json!({"messages": [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "reply"},
            {"role": "user", "content": [{"type": "text", "text": "second"}, {"type": "text", "text": "third"}]}
        ], "tools": [{"type": "function", "function": {"name": "t", "description": "tool text"}}]});
        let texts = chat_texts(Some(Api::ChatCompletions), &body);
        let roles: Vec<Option<&str>> = texts.iter().map(|t| t.role.as_deref()).collect();
        assert_eq!(
            roles,
            vec![
                Some("system"),
                Some("user"),
                Some("assistant"),
                Some("user"),
                Some("user")
            ]
        );
        let f = Facts {
            texts,
            ..Facts::default()
        };
        assert_eq!(f.last_user_text(), "second\nthird");
        assert_eq!(f.text_of(&["user".into()]), "first\nsecond\nthird");
    }
}
