//! Which requests are chat requests: one normalisation of the request path and one table of APIs, for
//! every filter.
//!
//! Filters that disagree about what a chat request is are a security hole: a request the guard skips
//! and the proxy forwards reaches the model unchecked. So no filter compares paths itself; each asks
//! [`Routes::classify`], which reads the path the way the most lenient server behind the gateway
//! might, and answers [`Class::Ambiguous`] when two plausible readings disagree.
//!
//! **The normal form** ([`normalize`]), applied to the request path and to every configured path:
//! 1. a `scheme://authority` prefix (an absolute-form request target) is dropped; the query (`?…`) and a
//!    fragment (`#…`) are cut off;
//! 2. percent-escapes of unreserved characters (`A-Z a-z 0-9 - . _ ~`, RFC 3986 §2.3) are decoded
//!    (`%63ompletions` is `completions`); every other escape is kept, so `%2F` stays inside its segment;
//! 3. ASCII letters are lower-cased: paths are case-sensitive by the RFC, but some upstreams route
//!    without regard to case (ASP.NET, for one), so `/V1/Chat/Completions` is a chat request;
//! 4. empty segments are dropped (`//` collapses, a trailing `/` goes), `.` segments are removed and `..`
//!    removes the segment before it (never above the root), as RFC 3986 §5.2.4 resolves them.
//!
//! **The lenient reading** is the normal form of the path after what some servers also do: decode every
//! escape (up to three times, for double encoding), read `\` as `/`, cut `;parameters` off each segment
//! (servlet containers), and trim trailing dots and spaces from a segment (Windows servers). A path whose
//! two readings classify differently (`/v1/chat%2Fcompletions`, `/v1/chat/completions;x`,
//! `/v1/chat/completions%2F..%2Fx`) is [`Class::Ambiguous`]: a filter refuses it (in shadow mode, treats
//! it as the API of the reading that is one), and never skips it. A decoded `/` therefore never lets a
//! path out of classification: if it changes the answer, the request is refused.
//!
//! **The APIs** ([`Api`]) are matched by their last segments, wherever the API is mounted: `…/chat/
//! completions` (OpenAI, Azure's `/openai/deployments/{d}/chat/completions`, compatible servers under
//! any prefix), `…/v1/messages` (Anthropic), `…/embeddings`, `…/completions`. A filter acts on a
//! configurable set ([`Routes`], from its `paths` option); a configured path that names an API stands
//! for that API's rule, any other is matched as a suffix the same way. Methods compare without regard
//! to case; only `POST` is a chat request.

use crate::config::ConfigError;
use crate::error::ApiError;

/// An LLM API a request can speak. Its request body shape is read by [`super::walk`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Api {
    /// OpenAI Chat Completions (also Azure OpenAI and OpenAI-compatible servers).
    ChatCompletions,
    /// Anthropic Messages.
    Messages,
    /// OpenAI Embeddings (`input`).
    Embeddings,
    /// OpenAI legacy Completions (`prompt`).
    Completions,
}

impl Api {
    pub const ALL: [Api; 4] = [
        Api::ChatCompletions,
        Api::Messages,
        Api::Embeddings,
        Api::Completions,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Api::ChatCompletions => "chat_completions",
            Api::Messages => "messages",
            Api::Embeddings => "embeddings",
            Api::Completions => "completions",
        }
    }

    /// The path clients usually send.
    pub fn path(self) -> &'static str {
        match self {
            Api::ChatCompletions => "/v1/chat/completions",
            Api::Messages => "/v1/messages",
            Api::Embeddings => "/v1/embeddings",
            Api::Completions => "/v1/completions",
        }
    }

    /// The last segments that identify the API wherever it is mounted (normal form).
    fn suffix(self) -> &'static [&'static str] {
        match self {
            Api::ChatCompletions => &["chat", "completions"],
            Api::Messages => &["v1", "messages"],
            Api::Embeddings => &["embeddings"],
            Api::Completions => &["completions"],
        }
    }

    /// The API a path (in any form) names, by the built-in table.
    pub fn of_path(path: &str) -> Option<Api> {
        let n = normalize(path);
        BUILTIN.iter().find(|r| r.matches(&n)).and_then(|r| r.api)
    }
}

/// What a filter should do with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// A request of one of the filter's routes: inspect it. `None` for a configured path that names
    /// no known API (its body shape is read by content).
    Chat(Option<Api>),
    /// Not a request the filter acts on.
    Other,
    /// Two plausible readings of the path disagree (one is a chat request): refuse it, or in shadow
    /// mode inspect it as `Chat(api)`. Never skip it.
    Ambiguous(Option<Api>),
}

/// One route a filter acts on: the last segments of a normalised path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    segments: Vec<String>,
    /// The API, for a built-in route or a configured path that names one.
    api: Option<Api>,
}

impl Route {
    fn builtin(api: Api) -> Route {
        Route {
            segments: api.suffix().iter().map(|s| s.to_string()).collect(),
            api: Some(api),
        }
    }

    fn matches(&self, normal: &str) -> bool {
        let segs: Vec<&str> = segments(normal).collect();
        self.matches_segments(&segs)
    }

    /// [`Route::matches`] on the segments of a normal-form path.
    fn matches_segments(&self, segs: &[&str]) -> bool {
        let want = self.segments.len();
        want > 0
            && segs.len() >= want
            && segs
                .iter()
                .skip(segs.len() - want)
                .zip(&self.segments)
                .all(|(a, b)| a == b)
    }
}

/// Built-in routes, most specific first (`…/chat/completions` before `…/completions`).
static BUILTIN: std::sync::LazyLock<Vec<Route>> = std::sync::LazyLock::new(|| {
    [
        Api::ChatCompletions,
        Api::Messages,
        Api::Embeddings,
        Api::Completions,
    ]
    .into_iter()
    .map(Route::builtin)
    .collect()
});

/// The set of requests one filter acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routes {
    /// Longest suffix first, so the most specific route wins.
    routes: Vec<Route>,
}

/// Why a configured path is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// Does not start with `/`.
    Relative,
    /// Nothing left after normalisation (`/`, `/./`).
    Root,
}

impl std::fmt::Display for RouteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RouteError::Relative => "must start with `/`",
            RouteError::Root => "must name a path below the root",
        })
    }
}

impl Default for Routes {
    /// Chat Completions and Messages: what every filter acts on unless configured otherwise.
    fn default() -> Routes {
        Routes::apis(&[Api::ChatCompletions, Api::Messages])
    }
}

impl Routes {
    /// The built-in routes of these APIs.
    pub fn apis(apis: &[Api]) -> Routes {
        Routes::sorted(apis.iter().map(|a| Route::builtin(*a)).collect())
    }

    /// A filter's `paths` option: each path naming a known API (in any form: `/v1/chat/completions`,
    /// `/openai/deployments/x/chat/completions`) stands for that API wherever it is mounted; any other
    /// path is matched as the last segments of the request's normal form. Errors carry the index.
    pub fn from_paths(paths: &[String]) -> Result<Routes, (usize, RouteError)> {
        let mut routes = Vec::new();
        for (i, p) in paths.iter().enumerate() {
            if !p.starts_with('/') {
                return Err((i, RouteError::Relative));
            }
            let route = match Api::of_path(p) {
                Some(api) => Route::builtin(api),
                None => {
                    let n = normalize(p);
                    let segments: Vec<String> = segments(&n).map(str::to_string).collect();
                    if segments.is_empty() {
                        return Err((i, RouteError::Root));
                    }
                    Route { segments, api: None }
                }
            };
            if !routes.contains(&route) {
                routes.push(route);
            }
        }
        Ok(Routes::sorted(routes))
    }

    /// A filter's `paths` option as config: absent means [`Routes::default`]; errors name
    /// `field[i]`.
    pub fn from_config(field: &str, paths: Option<&[String]>) -> Result<Routes, ConfigError> {
        match paths {
            None => Ok(Routes::default()),
            Some([]) => Err(ConfigError::new(field, "must not be empty")),
            Some(p) => Routes::from_paths(p)
                .map_err(|(i, e)| ConfigError::new(format!("{field}[{i}]"), e.to_string())),
        }
    }

    fn sorted(mut routes: Vec<Route>) -> Routes {
        routes.sort_by_key(|r| std::cmp::Reverse(r.segments.len()));
        Routes { routes }
    }

    /// The route a normal-form path takes, if any. A path matching a longer route of an API the filter
    /// does not act on (`…/chat/completions` for a filter acting on `…/completions` only) is not taken
    /// by the shorter one.
    fn route_of(&self, normal: &str) -> Option<&Route> {
        let segs: Vec<&str> = segments(normal).collect();
        self.route_of_segments(&segs)
    }

    fn route_of_segments(&self, segs: &[&str]) -> Option<&Route> {
        let builtin = BUILTIN.iter().find(|r| r.matches_segments(segs));
        let own = self.routes.iter().find(|r| r.matches_segments(segs))?;
        match builtin {
            Some(b) if b.segments.len() > own.segments.len() && b.api != own.api => None,
            _ => Some(own),
        }
    }

    /// Classifies a request by method and `:path` (see the module doc).
    pub fn classify(&self, method: &str, path: &str) -> Class {
        if !method.eq_ignore_ascii_case("POST") {
            return Class::Other;
        }
        if let Some(segs) = plain_segments(path) {
            // Both readings of a plain path are its segments: one lookup, no allocation but the list.
            return match self.route_of_segments(&segs) {
                Some(r) => Class::Chat(r.api),
                None => Class::Other,
            };
        }
        self.classify_read(path)
    }

    /// [`Routes::classify`] by the two readings, for every path (the plain-path shortcut's reference).
    fn classify_read(&self, path: &str) -> Class {
        let strict = self.route_of(&normalize(path));
        let lenient = self.route_of(&lenient(path));
        match (strict, lenient) {
            (None, None) => Class::Other,
            (Some(a), Some(b)) if a == b => Class::Chat(a.api),
            (Some(a), _) => Class::Ambiguous(a.api),
            (None, Some(b)) => Class::Ambiguous(b.api),
        }
    }

    /// Whether the filter acts on this API (some route of it).
    pub fn includes(&self, api: Api) -> bool {
        self.routes.iter().any(|r| r.api == Some(api))
    }
}

/// [`Routes::classify`] over every built-in API.
pub fn classify(method: &str, path: &str) -> Class {
    static ALL: std::sync::LazyLock<Routes> = std::sync::LazyLock::new(|| Routes::apis(&Api::ALL));
    ALL.classify(method, path)
}

/// The 400 a filter answers for a [`Class::Ambiguous`] path (the path is cut to 200 characters).
pub fn ambiguous_path(path: &str) -> ApiError {
    let shown: String = path.chars().take(200).collect();
    ApiError::invalid_request(
        "ambiguous_path",
        format!(
            "the request path `{shown}` reads as an API request to some servers and not to others \
             (an encoded `/` or `\\`, a `;` parameter or a trailing dot); send the plain path, e.g. /v1/chat/completions"
        ),
    )
}

/// The segments of a path that both readings leave as they are: it starts with `/` and, up to its
/// query or fragment, holds only lower-case letters, digits, `-`, `_`, `~` and `/` (no escape, dot,
/// backslash, `;`, colon or upper case). Its normal form and its lenient reading are both these
/// segments with the empty ones dropped. `None` for any other path.
fn plain_segments(path: &str) -> Option<Vec<&str>> {
    let end = path.find(['?', '#']).unwrap_or(path.len());
    let p = path.get(..end)?;
    let plain = p.starts_with('/')
        && p.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'~' | b'/'));
    plain.then(|| segments(p).collect())
}

fn segments(normal: &str) -> impl Iterator<Item = &str> {
    normal.split('/').filter(|s| !s.is_empty())
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes percent-escapes: only those of unreserved characters, or all of them. Malformed escapes are
/// kept as they are.
fn percent_decode(s: &str, all: bool) -> String {
    let b = s.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            let pair = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            );
            if let (Some(h), Some(l)) = pair {
                let v = h * 16 + l;
                if all || unreserved(v) {
                    out.push(v);
                    i += 3;
                    continue;
                }
            }
        }
        out.push(c);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The path part of a `:path`: an absolute-form target's scheme and authority, the query and the
/// fragment removed.
fn path_part(raw: &str) -> &str {
    let mut p = raw;
    if let Some(colon) = p.find("://") {
        let scheme = p.get(..colon).unwrap_or_default();
        if !scheme.is_empty() && scheme.bytes().all(|c| c.is_ascii_alphabetic()) {
            let rest = p.get(colon + 3..).unwrap_or_default();
            p = rest.find('/').and_then(|i| rest.get(i..)).unwrap_or("/");
        }
    }
    let end = p.find(['?', '#']).unwrap_or(p.len());
    p.get(..end).unwrap_or(p)
}

/// Resolves `.`, `..` and empty segments; returns `/a/b` (or `/`).
fn resolve<'a>(segs: impl Iterator<Item = &'a str>) -> String {
    let mut out: Vec<&str> = Vec::new();
    for s in segs {
        match s {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

/// The normal form every filter compares (see the module doc): `/v1//Chat/./completions/?x` →
/// `/v1/chat/completions`.
pub fn normalize(path: &str) -> String {
    let decoded = percent_decode(path_part(path), false).to_ascii_lowercase();
    resolve(decoded.split('/'))
}

/// The lenient reading (see the module doc).
fn lenient(path: &str) -> String {
    let mut p = path_part(path).to_string();
    for _ in 0..3 {
        let next = percent_decode(&p, true);
        if next == p {
            break;
        }
        p = next;
    }
    let p = p.replace('\\', "/").to_ascii_lowercase();
    let segs = p.split('/').map(|s| {
        let s = s.split(';').next().unwrap_or_default();
        match s {
            "." | ".." => s,
            s => s.trim_end_matches(['.', ' ']),
        }
    });
    resolve(segs)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use Api::*;
    use Class::*;

    #[test]
    fn normal_form() {
        let cases = [
            ("/v1/chat/completions", "/v1/chat/completions"),
            ("/v1/chat/completions?stream=true&x=/y", "/v1/chat/completions"),
            ("/v1/chat/completions#frag", "/v1/chat/completions"),
            ("/v1/chat/completions/", "/v1/chat/completions"),
            ("//v1//chat///completions//", "/v1/chat/completions"),
            ("/v1/./chat/./completions", "/v1/chat/completions"),
            ("/v1/x/../chat/completions", "/v1/chat/completions"),
            ("/../../v1/chat/completions", "/v1/chat/completions"),
            ("/V1/Chat/COMPLETIONS", "/v1/chat/completions"),
            ("/v1/chat/%63ompletions", "/v1/chat/completions"),
            ("/v1/%2e%2e/v1/chat/completions", "/v1/chat/completions"),
            ("/v1/chat%2Fcompletions", "/v1/chat%2fcompletions"),
            ("/v1/chat/completions%zz", "/v1/chat/completions%zz"),
            ("/v1/chat/completions%", "/v1/chat/completions%"),
            (
                "http://gateway:8080/v1/chat/completions?x",
                "/v1/chat/completions",
            ),
            ("", "/"),
            ("/", "/"),
            ("/é/%C3%A9", "/é/%c3%a9"),
        ];
        for (raw, want) in cases {
            assert_eq!(normalize(raw), want, "{raw}");
        }
    }

    /// The table every filter shares; the e2e test `classification` plays the same rows through Envoy.
    #[test]
    fn classification_table() {
        let routes = Routes::default();
        let cases: &[(&str, &str, Class)] = &[
            ("POST", "/v1/chat/completions", Chat(Some(ChatCompletions))),
            ("post", "/v1/chat/completions", Chat(Some(ChatCompletions))),
            ("GET", "/v1/chat/completions", Other),
            ("PUT", "/v1/chat/completions", Other),
            ("POST", "/v1/messages", Chat(Some(Messages))),
            // Query strings and fragments.
            (
                "POST",
                "/v1/chat/completions?api-version=1",
                Chat(Some(ChatCompletions)),
            ),
            ("POST", "/v1/messages?beta=true", Chat(Some(Messages))),
            // Trailing and double slashes.
            ("POST", "/v1/chat/completions/", Chat(Some(ChatCompletions))),
            ("POST", "//v1//chat//completions", Chat(Some(ChatCompletions))),
            // Dot segments.
            ("POST", "/v1/./chat/completions", Chat(Some(ChatCompletions))),
            (
                "POST",
                "/v1/models/../chat/completions",
                Chat(Some(ChatCompletions)),
            ),
            ("POST", "/v1/chat/completions/..", Other),
            // Case.
            ("POST", "/V1/CHAT/COMPLETIONS", Chat(Some(ChatCompletions))),
            ("POST", "/V1/Messages", Chat(Some(Messages))),
            // Prefixes: the API wherever it is mounted.
            (
                "POST",
                "/openai/deployments/gpt4o/chat/completions",
                Chat(Some(ChatCompletions)),
            ),
            ("POST", "/api/v1/chat/completions", Chat(Some(ChatCompletions))),
            ("POST", "/anthropic/v1/messages", Chat(Some(Messages))),
            ("POST", "/v1/threads/t1/messages", Other),
            ("POST", "/v1/chat/completions/extra", Other),
            ("POST", "/v1/chat/completionsx", Other),
            ("POST", "/v1/models", Other),
            // Percent-encoding: unreserved escapes decode; an encoded slash that changes the answer
            // is ambiguous.
            ("POST", "/v1/chat/%63ompletions", Chat(Some(ChatCompletions))),
            ("POST", "/v1/%6Dessages", Chat(Some(Messages))),
            ("POST", "/v1/chat%2Fcompletions", Ambiguous(Some(ChatCompletions))),
            ("POST", "/v1/chat%2fcompletions", Ambiguous(Some(ChatCompletions))),
            (
                "POST",
                "/v1/chat/completions%2F",
                Ambiguous(Some(ChatCompletions)),
            ),
            (
                "POST",
                "/x%2F..%2F/v1/chat/completions",
                Chat(Some(ChatCompletions)),
            ),
            ("POST", "/v1/chat/completions%2F..%2Fmodels", Other),
            (
                "POST",
                "/v1/chat%252Fcompletions",
                Ambiguous(Some(ChatCompletions)),
            ),
            ("POST", "/v1/files/a%2Fb", Other),
            // Backslashes, path parameters, trailing dots.
            ("POST", "/v1/chat\\completions", Ambiguous(Some(ChatCompletions))),
            (
                "POST",
                "/v1/chat/completions;jsessionid=1",
                Ambiguous(Some(ChatCompletions)),
            ),
            ("POST", "/v1/chat/completions.", Ambiguous(Some(ChatCompletions))),
            ("POST", "/v1/messages%3Bx", Ambiguous(Some(Messages))),
            // Embeddings and legacy completions are APIs, but not in the default set.
            ("POST", "/v1/embeddings", Other),
            ("POST", "/v1/completions", Other),
        ];
        for (method, path, want) in cases {
            assert_eq!(routes.classify(method, path), *want, "{method} {path}");
        }
    }

    #[test]
    fn configured_paths() {
        let all = |p: &[&str]| Routes::from_paths(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        // A configured API path stands for the API wherever it is mounted.
        let r = all(&["/v1/chat/completions"]).unwrap();
        assert_eq!(
            r.classify("POST", "/openai/deployments/d/chat/completions/"),
            Chat(Some(ChatCompletions))
        );
        assert_eq!(r.classify("POST", "/v1/messages"), Other);
        assert!(r.includes(ChatCompletions) && !r.includes(Messages));
        // Legacy completions do not swallow chat completions.
        let r = all(&["/v1/completions", "/v1/embeddings"]).unwrap();
        assert_eq!(r.classify("POST", "/v1/completions"), Chat(Some(Completions)));
        assert_eq!(r.classify("POST", "/v1/chat/completions"), Other);
        assert_eq!(r.classify("POST", "/x/v1/EMBEDDINGS/"), Chat(Some(Embeddings)));
        // A custom path is a suffix of the normal form, with no known API.
        let r = all(&["/Custom//Chat/"]).unwrap();
        assert_eq!(r.classify("POST", "/custom/chat"), Chat(None));
        assert_eq!(r.classify("POST", "/team/custom/chat?x"), Chat(None));
        assert_eq!(r.classify("POST", "/custom%2Fchat"), Ambiguous(None));
        assert_eq!(r.classify("POST", "/v1/chat/completions"), Other);
        assert_eq!(all(&["v1/x"]), Err((0, RouteError::Relative)));
        assert_eq!(all(&["/ok", "/./"]), Err((1, RouteError::Root)));
        assert_eq!(Api::of_path("/V1/Messages/"), Some(Messages));
        assert_eq!(Routes::from_config("paths", None), Ok(Routes::default()));
        let err = Routes::from_config("paths", Some(&["/a".to_string(), "b".to_string()])).unwrap_err();
        assert_eq!(
            (err.field.as_str(), err.message.as_str()),
            ("paths[1]", "must start with `/`")
        );
        assert_eq!(
            Routes::from_config("paths", Some(&[])).unwrap_err().field,
            "paths"
        );
        assert_eq!(classify("POST", "/v1/embeddings"), Chat(Some(Embeddings)));
        assert!(ambiguous_path("/x").body().starts_with(br#"{"error""#));
    }

    /// The plain-path shortcut answers what the two readings answer, for every route set.
    #[test]
    fn plain_paths_classify_as_both_readings_do() {
        let sets = [
            Routes::default(),
            Routes::apis(&Api::ALL),
            Routes::from_paths(&["/v1/completions".into(), "/custom/chat".into()]).unwrap(),
        ];
        let segs = [
            "",
            "v1",
            "chat",
            "completions",
            "messages",
            "embeddings",
            "custom",
            "openai",
            "x-y_z~",
        ];
        let mut paths = vec!["/".to_string(), "//".to_string()];
        for a in segs {
            for b in segs {
                for c in segs {
                    for tail in ["", "/", "?stream=true", "#f", "/?a=b/../c"] {
                        paths.push(format!("/{a}/{b}/{c}{tail}"));
                        paths.push(format!("/{a}/{b}{tail}"));
                    }
                }
            }
        }
        for routes in &sets {
            for p in &paths {
                assert!(plain_segments(p).is_some(), "{p}");
                assert_eq!(routes.classify("POST", p), routes.classify_read(p), "{p}");
            }
        }
        for not_plain in [
            "/v1/chat/completions.",
            "/V1/chat/completions",
            "/v1/chat%2fcompletions",
            "v1/chat",
            "/a;b",
            "/a\\b",
            "http://h/v1/chat/completions",
        ] {
            assert!(plain_segments(not_plain).is_none(), "{not_plain}");
        }
    }
}
