//! PII detection quality report: a labelled corpus generator and the figures the issue sets targets for.
//!
//! `cargo run -q -p e2e --bin pii-quality [-- --seed N --per-type N]` generates, from a fixed seed (no
//! network, same corpus every run), labelled samples for every built-in entity type in varied formats
//! and locales (templates in several languages and scripts, separators, grouping, some with evasion:
//! full-width digits, zero-width characters), plus hard negatives (order numbers, dates, times, UUIDs,
//! amounts, card-length numbers failing Luhn, hashes, MAC addresses, ISBNs, version strings, ...).
//! It prints recall per entity type (a value counts as found when a detection of its type covers
//! exactly its span), the false-positive rate on the negatives, and scanning speed in MB/s for typical
//! chat text (build with `--release` for meaningful speed). With `--envoy` it also measures the filter in
//! a real Envoy (needs the release .wasm of ai-pii-redact and ai-proxy): the same large chat requests
//! with and without the filter, the extra time per byte scanned (request redaction plus restoring the
//! echoed answer) giving MB/s. Exits 1 when a target is missed:
//! recall >= 0.99 for email, card, ssn, iban, ip, secret; >= 0.95 for phone; false positives <= 1%.

use shared::pii::stream::{Scrub, StreamScrubber};
use shared::pii::{Engine, EngineSpec, Rules, Session};
use shared::rand::Rng;
use std::collections::BTreeMap;
use std::time::Instant;

struct Gen(Rng);

impl Gen {
    fn below(&mut self, n: usize) -> usize {
        self.0.below(n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items.get(self.below(items.len())).copied().unwrap_or_default()
    }
    fn digits(&mut self, n: usize) -> String {
        (0..n).map(|_| char::from(b'0' + self.below(10) as u8)).collect()
    }
    fn digit_from(&mut self, lo: u8, hi: u8) -> char {
        char::from(b'0' + lo + self.below(usize::from(hi - lo + 1)) as u8)
    }
    fn chars(&mut self, alphabet: &[u8], n: usize) -> String {
        (0..n)
            .map(|_| char::from(*alphabet.get(self.below(alphabet.len())).unwrap_or(&b'x')))
            .collect()
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const UPPER_DIGITS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const HEX: &[u8] = b"0123456789abcdef";

/// Sentence templates: many languages and scripts, `{}` is the value.
const TEMPLATES: &[&str] = &[
    "Please contact me at {} when you can.",
    "My details: {}",
    "{}",
    "Can you check {} for me?",
    "Meine Angabe ist {} – danke!",
    "Mon contact : {}, merci.",
    "Mi dato es {} y nada más.",
    "Il mio riferimento è {}.",
    "O meu contato é {} obrigado",
    "連絡先は{}です。",
    "我的信息是 {} 谢谢",
    "Мои данные: {}.",
    "بياناتي هي {} شكرا",
    "मेरा विवरण {} है।",
    "Ticket update (\"{}\") from the user.",
    "value={}; next",
    "<td>{}</td>",
    "- item: {}\n- other: none",
];

fn luhn_complete(partial: &str) -> String {
    // Appends the check digit that makes `partial` Luhn-valid.
    let digits: Vec<u32> = partial.chars().filter_map(|c| c.to_digit(10)).collect();
    let mut sum = 0;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = *d;
        if i % 2 == 0 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    format!("{partial}{}", (10 - sum % 10) % 10)
}

fn group(s: &str, sizes: &[usize], sep: &str) -> String {
    let mut out = Vec::new();
    let mut at = 0;
    for n in sizes {
        if at >= s.len() {
            break;
        }
        let end = (at + n).min(s.len());
        out.push(&s[at..end]);
        at = end;
    }
    if at < s.len() {
        out.push(&s[at..]);
    }
    out.join(sep)
}

fn email(g: &mut Gen) -> String {
    let first = g.pick(&[
        "jane", "john", "maria", "wei", "priya", "olga", "ahmed", "yuki", "li", "sam", "o.connor",
    ]);
    let last = g.pick(&[
        "doe", "smith", "garcia", "zhang", "patel", "ivanova", "hassan", "tanaka", "nguyen", "mueller",
    ]);
    let local = match g.below(6) {
        0 => format!("{first}.{last}"),
        1 => format!("{first}_{last}{}", g.digits(2)),
        2 => format!("{first}+{}", g.pick(&["news", "work", "spam"])),
        3 => format!("{}{last}", &first[..1]),
        4 => format!("{first}-{last}"),
        _ => first.to_uppercase(),
    };
    let domain = g.pick(&[
        "example.com",
        "mail.example.org",
        "corp.example.co.uk",
        "uni-example.de",
        "example.fr",
        "exemplo.com.br",
        "example.co.jp",
        "x.io",
        "sub.dept.example.museum",
        "EXAMPLE.NET",
        "example.technology",
    ]);
    format!("{local}@{domain}")
}

fn phone(g: &mut Gen) -> String {
    let area = format!("{}{}", g.digit_from(2, 9), g.digits(2));
    let exch = format!("{}{}", g.digit_from(2, 9), g.digits(2));
    let line = g.digits(4);
    let intl = |g: &mut Gen, cc: &str, groups: &[usize]| {
        let body: Vec<String> = groups.iter().map(|n| g.digits(*n)).collect();
        let sep = g.pick(&[" ", " ", "-", "."]);
        let mut first = body.first().cloned().unwrap_or_default();
        if let Some(c) = first.get_mut(0..1) {
            if c == "0" {
                first.replace_range(0..1, "4");
            }
        }
        let rest = body.get(1..).unwrap_or_default().join(sep);
        if g.chance(10) {
            format!("+{cc}{first}{}", rest.replace(sep, ""))
        } else {
            format!("+{cc} {first}{sep}{rest}")
        }
    };
    match g.below(25) {
        20 => format!(
            "+44 (0){}{} {} {}",
            g.digit_from(1, 9),
            g.digits(1),
            g.digits(4),
            g.digits(4)
        ),
        21 => format!("+1 {area}-{exch}-{line}"),
        22 => format!("+1.{area}.{exch}.{line}"),
        23 => format!("{area}\u{2013}{exch}\u{2013}{line}"),
        24 => format!("({area})\u{00A0}{exch}-{line}"),
        0 => format!("({area}) {exch}-{line}"),
        1 => format!("{area}-{exch}-{line}"),
        2 => format!("{area}.{exch}.{line}"),
        3 => format!("+1 {area} {exch} {line}"),
        4 => format!("1-{area}-{exch}-{line}"),
        5 => format!("+1-{area}-{exch}-{line}"),
        6 => format!("+1{area}{exch}{line}"),
        7 => format!("+1 ({area}) {exch}-{line}"),
        8 => intl(g, "44", &[2, 4, 4]),
        9 => intl(g, "49", &[2, 8]),
        10 => intl(g, "33", &[1, 2, 2, 2, 2]),
        11 => intl(g, "34", &[3, 2, 2, 2]),
        12 => intl(g, "39", &[2, 4, 4]),
        13 => intl(g, "81", &[2, 4, 4]),
        14 => intl(g, "91", &[5, 5]),
        15 => intl(g, "55", &[2, 5, 4]),
        16 => intl(g, "61", &[1, 4, 4]),
        17 => intl(g, "86", &[3, 4, 4]),
        18 => intl(g, "234", &[3, 3, 4]),
        _ => intl(g, "7", &[3, 3, 2, 2]),
    }
}

fn card(g: &mut Gen) -> String {
    let (prefix, len, groups): (String, usize, &[usize]) = match g.below(8) {
        0 => ("4".into(), 16, &[4, 4, 4, 4]),
        1 => (format!("5{}", g.digit_from(1, 5)), 16, &[4, 4, 4, 4]),
        2 => (format!("{}", 2221 + g.below(500)), 16, &[4, 4, 4, 4]),
        3 => (g.pick(&["34", "37"]).into(), 15, &[4, 6, 5]),
        4 => (g.pick(&["6011", "65", "644"]).into(), 16, &[4, 4, 4, 4]),
        5 => (format!("35{}", 28 + g.below(62)), 16, &[4, 4, 4, 4]),
        6 => ("36".into(), 14, &[4, 6, 4]),
        _ => ("62".into(), 16, &[4, 4, 4, 4]),
    };
    let body = format!("{prefix}{}", g.digits(len - 1 - prefix.len()));
    let number = luhn_complete(&body);
    match g.below(3) {
        0 => number,
        1 => group(&number, groups, " "),
        _ => group(&number, groups, "-"),
    }
}

fn ssn(g: &mut Gen) -> (String, &'static str) {
    let mut area = 1 + g.below(899);
    if area == 666 {
        area = 667;
    }
    let grp = 1 + g.below(99);
    let serial = 1 + g.below(9999);
    match g.below(5) {
        0 => (format!("{area:03}{grp:02}{serial:04}"), "SSN: {}"),
        1 => (format!("{area:03} {grp:02} {serial:04}"), ""),
        _ => (format!("{area:03}-{grp:02}-{serial:04}"), ""),
    }
}

/// `(country, BBAN shape)`: `d` digit, `a` upper letter, `c` letter or digit.
const IBAN_SHAPES: &[(&str, &str)] = &[
    ("DE", "dddddddddddddddddd"),
    ("GB", "aaaadddddddddddddd"),
    ("FR", "ddddddddddcccccccccccdd"),
    ("ES", "dddddddddddddddddddd"),
    ("IT", "addddddddddcccccccccccc"),
    ("NL", "aaaadddddddddd"),
    ("BE", "dddddddddddd"),
    ("CH", "dddddcccccccccccc"),
    ("AT", "dddddddddddddddd"),
    ("PL", "dddddddddddddddddddddddd"),
    ("SE", "dddddddddddddddddddd"),
    ("NO", "ddddddddddd"),
    ("PT", "ddddddddddddddddddddd"),
    ("IE", "aaaadddddddddddddd"),
    ("BR", "dddddddddddddddddddddddac"),
    ("SA", "ddcccccccccccccccccc"),
];

fn mod97(s: &str) -> u32 {
    s.chars().fold(0u32, |rem, c| {
        let v = c.to_digit(36).unwrap_or(0);
        if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        }
    })
}

fn iban(g: &mut Gen) -> String {
    let (cc, shape) = IBAN_SHAPES[g.below(IBAN_SHAPES.len())];
    let bban: String = shape
        .chars()
        .map(|k| match k {
            'd' => g.digits(1),
            'a' => g.chars(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", 1),
            _ => g.chars(UPPER_DIGITS, 1),
        })
        .collect();
    let check = 98 - mod97(&format!("{bban}{cc}00"));
    let compact = format!("{cc}{check:02}{bban}");
    if g.chance(50) {
        compact
    } else {
        group(&compact, &[4; 9], " ")
    }
}

fn ip(g: &mut Gen) -> String {
    let octet = |g: &mut Gen| g.below(256).to_string();
    let hextet = |g: &mut Gen| format!("{:x}", g.below(65536));
    match g.below(8) {
        6 => format!(
            "::ffff:{}.{}.{}.{}",
            1 + g.below(223),
            octet(g),
            octet(g),
            octet(g)
        ),
        7 => format!("2a00:{}:{}::{}", hextet(g), hextet(g), hextet(g)),
        0..=2 => format!("{}.{}.{}.{}", 1 + g.below(223), octet(g), octet(g), octet(g)),
        3 => (0..8).map(|_| hextet(g)).collect::<Vec<_>>().join(":"),
        4 => format!("2001:db8::{}:{}", hextet(g), hextet(g)),
        _ => format!("fe80::{}:{}:{}:{}", hextet(g), hextet(g), hextet(g), hextet(g)).to_uppercase(),
    }
}

fn secret(g: &mut Gen) -> (String, &'static str) {
    match g.below(14) {
        0 => (format!("sk-proj-{}", g.chars(B64URL, 48)), ""),
        1 => (format!("sk-{}", g.chars(ALNUM, 48)), ""),
        2 => (format!("sk-ant-api03-{}", g.chars(B64URL, 90)), ""),
        3 => (format!("AKIA{}", g.chars(UPPER_DIGITS, 16)), ""),
        4 => (g.chars(B64, 40), "aws_secret_access_key = {}"),
        5 => (format!("ghp_{}", g.chars(ALNUM, 36)), ""),
        6 => (
            format!(
                "github_pat_{}",
                g.chars(
                    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_",
                    82
                )
            ),
            "",
        ),
        7 => (
            format!("xoxb-{}-{}-{}", g.digits(12), g.digits(13), g.chars(ALNUM, 24)),
            "",
        ),
        8 => (format!("AIza{}", g.chars(B64URL, 35)), ""),
        9 => (format!("sk_live_{}", g.chars(ALNUM, 24)), ""),
        10 => (
            format!(
                "eyJ{}.eyJ{}.{}",
                g.chars(B64URL, 30),
                g.chars(B64URL, 60),
                g.chars(B64URL, 43)
            ),
            "",
        ),
        11 => {
            let kind = g.pick(&["RSA ", "EC ", "OPENSSH ", ""]);
            let lines: Vec<String> = (0..4).map(|_| g.chars(B64, 64)).collect();
            (
                format!(
                    "-----BEGIN {kind}PRIVATE KEY-----\n{}\n-----END {kind}PRIVATE KEY-----",
                    lines.join("\n")
                ),
                "",
            )
        }
        12 => (g.chars(ALNUM, 20), "password: {}"),
        _ => (format!("xoxp-{}-{}", g.digits(11), g.chars(ALNUM, 32)), ""),
    }
}

/// Full-width digits/letters, or a zero-width space inside: the tricks the engine must see through.
fn evade(g: &mut Gen, value: &str) -> String {
    if g.chance(20) {
        // Cyrillic look-alikes for Latin letters.
        return value
            .replace('a', "\u{0430}")
            .replace('o', "\u{043E}")
            .replace('e', "\u{0435}");
    }
    if g.chance(50) {
        value
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    char::from_u32(c as u32 + 0xFEE0).unwrap_or(c)
                } else {
                    c
                }
            })
            .collect()
    } else {
        let mid = value
            .char_indices()
            .nth(value.chars().count() / 2)
            .map_or(0, |(i, _)| i);
        format!("{}\u{200B}{}", &value[..mid], &value[mid..])
    }
}

struct Sample {
    text: String,
    kind: &'static str,
    start: usize,
    end: usize,
}

fn sample(g: &mut Gen, kind: &'static str) -> Sample {
    let (mut value, own_template) = match kind {
        "email" => (email(g), ""),
        "phone" => (phone(g), ""),
        "card" => (card(g), ""),
        "ssn" => ssn(g),
        "iban" => (iban(g), ""),
        "ip" => (ip(g), ""),
        _ => secret(g),
    };
    // Secrets are copied, not typed: no evasion there. Others: 10% evasive.
    if kind != "secret" && g.chance(10) {
        value = evade(g, &value);
    }
    // Some values sit in markup, URLs or config syntax rather than prose.
    let wrapped: &[&'static str] = match kind {
        "email" => &["mailto:{}", "<{}>", "Jane Doe <{}>", "\"{}\""],
        // An IPv6 address with a port must be bracketed, or it reads as a longer address.
        "ip" if value.contains(':') => &["[{}]:8443", "{}/64", "http://[{}]/admin", "host={}"],
        "ip" => &["{}:8443", "{}/24", "http://{}/admin", "host={}"],
        "secret" => &["OPENAI_API_KEY={}", "{\"api_key\": \"{}\"}", "`{}`"],
        "iban" => &["IBAN:{}", "IBAN {}"],
        "ssn" => &["SSN#{}", "ssn={}"],
        "phone" => &["tel:{}", "({})", "\"{}\"", "Tel.: {}"],
        _ => &["({})", "\"{}\""],
    };
    let own_template = if own_template.is_empty() && g.chance(15) {
        g.pick(wrapped)
    } else {
        own_template
    };
    let template = if own_template.is_empty() {
        g.pick(TEMPLATES)
    } else {
        own_template
    };
    let (before, after) = template.split_once("{}").unwrap_or((template, ""));
    let text = format!("{before}{value}{after}");
    Sample {
        start: before.len(),
        end: before.len() + value.len(),
        text,
        kind,
    }
}

fn negative(g: &mut Gen) -> String {
    let d = |g: &mut Gen, n| g.digits(n);
    let order_len = 8 + g.below(3);
    let body = match g.below(22) {
        0 => format!("Order #{} shipped", d(g, order_len)),
        1 => format!("Invoice INV-{}-{}", 2020 + g.below(6), d(g, 5)),
        2 => format!("ref ORD{}", d(g, 10)),
        3 => format!(
            "on {}-{:02}-{:02}",
            1990 + g.below(40),
            1 + g.below(12),
            1 + g.below(28)
        ),
        4 => format!(
            "due {:02}/{:02}/{}",
            1 + g.below(28),
            1 + g.below(12),
            1990 + g.below(40)
        ),
        5 => format!("at {:02}:{:02}:{:02} UTC", g.below(24), g.below(60), g.below(60)),
        6 => format!(
            "id {}-{}-4{}-a{}-{}",
            g.chars(HEX, 8),
            g.chars(HEX, 4),
            g.chars(HEX, 3),
            g.chars(HEX, 3),
            g.chars(HEX, 12)
        ),
        7 => format!(
            "total ${},{:03}.{:02}",
            1 + g.below(999),
            g.below(1000),
            g.below(100)
        ),
        8 => format!(
            "Betrag: {}.{:03},{:02} €",
            1 + g.below(999),
            g.below(1000),
            g.below(100)
        ),
        9 => {
            // A card-shaped number with a brand prefix that fails Luhn.
            let body = format!("4{}", d(g, 14));
            let good = luhn_complete(&body);
            let last = good.chars().last().and_then(|c| c.to_digit(10)).unwrap_or(0);
            let bad = format!("{body}{}", (last + 1 + g.below(9) as u32) % 10);
            if g.chance(50) {
                group(&bad, &[4, 4, 4, 4], " ")
            } else {
                bad
            }
        }
        10 => format!("commit {}", g.chars(HEX, 40)),
        11 => format!("sha256:{}", g.chars(HEX, 64)),
        12 => format!(
            "mac {}",
            (0..6)
                .map(|_| g.chars(b"0123456789ABCDEF", 2))
                .collect::<Vec<_>>()
                .join(":")
        ),
        13 => format!(
            "ISBN 978-{}-{}-{}-{}",
            g.digit_from(0, 9),
            d(g, 2),
            d(g, 6),
            g.digit_from(0, 9)
        ),
        14 => format!("version v{}.{}.{}", g.below(20), g.below(50), g.below(100)),
        15 => format!("build 10.0.{}.{}", 19000 + g.below(5000), 1000 + g.below(9000)),
        16 => format!("tracking 1Z{}{}", g.chars(UPPER_DIGITS, 6), d(g, 10)),
        17 => format!("Ticket {} is closed", d(g, 9)),
        18 => format!("account id {}", d(g, 10)),
        19 => format!("listening on localhost:{}", 1024 + g.below(60000)),
        20 => format!(
            "{}T{:02}:{:02}:00Z",
            format_args!("2024-0{}-1{}", 1 + g.below(9), g.below(10)),
            g.below(24),
            g.below(60)
        ),
        _ => format!(
            "coords {}.{:04}, {}.{:04}",
            g.below(90),
            g.below(10000),
            g.below(180),
            g.below(10000)
        ),
    };
    let template = g.pick(TEMPLATES);
    template.replacen("{}", &body, 1)
}

/// Typical chat text: prose, some code and numbers, a value now and then.
fn chat_text(g: &mut Gen, bytes: usize, with_pii: bool) -> String {
    let prose = [
        "Could you summarise the attached meeting notes and list the action items for each team? ",
        "The deployment failed at 10:42 because the config map was missing two keys; retry after the fix. ",
        "In 2023 revenue grew 12.5% to $4.2M, while costs rose by 3% year over year. ",
        "Write a Python function that parses ISO dates like 2024-01-15 and returns the weekday. ",
        "Bitte übersetze den folgenden Absatz ins Englische und behalte die Formatierung bei. ",
        "The quick brown fox jumps over the lazy dog, again and again, until the test passes. ",
        "fn main() { let v: Vec<u32> = (1..=10).collect(); println!(\"{:?}\", v); } ",
    ];
    let mut out = String::with_capacity(bytes + 256);
    while out.len() < bytes {
        out.push_str(prose[g.below(prose.len())]);
        if with_pii && g.chance(8) {
            let kinds = ["email", "phone", "card", "ip"];
            let kind = kinds[g.below(kinds.len())];
            let s = sample(g, kind);
            out.push_str(&s.text);
            out.push(' ');
        }
    }
    out
}

/// Filter throughput in Envoy: large requests through [ai-proxy] and [ai-pii-redact, ai-proxy]; the
/// mock echoes the prompt, so the filter scans it on the way in and restores it on the way out.
fn envoy_speed(g: &mut Gen) {
    use e2e::envoy::{Envoy, EnvoyOptions, Filter};
    use e2e::mock::MockServer;
    use serde_json::json;
    let Ok(mock) = MockServer::start(0) else {
        println!("  envoy: cannot start the mock provider");
        return;
    };
    let proxy = json!({
        "targets": [{"name": "openai", "provider": "openai", "model": "gpt-4o-mini",
            "endpoint": {"cluster": "mock_openai", "host": format!("127.0.0.1:{}", mock.port())},
            "auth": {"value": "k"}}],
        "models": {"gpt-4o-mini": {"targets": [{"target": "openai"}]}},
        "max_body_bytes": 4194304
    });
    let text = chat_text(g, 256 * 1024, true);
    let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}).to_string();
    let rounds = 20;
    let mut timings = Vec::new();
    for with_filter in [false, true] {
        let mut filters = Vec::new();
        if with_filter {
            filters.push(Filter::new(
                "ai-pii-redact",
                e2e::wasm_path("ai_pii_redact"),
                json!({"max_body_bytes": 4194304}),
            ));
        }
        filters.push(Filter::ai_proxy(proxy.clone()));
        let envoy = match Envoy::start(EnvoyOptions {
            filters,
            mock_port: mock.port(),
            ..EnvoyOptions::default()
        }) {
            Ok(e) => e,
            Err(e) => {
                println!("  envoy: cannot start: {e}");
                return;
            }
        };
        let send = || {
            envoy.request(
                "POST",
                "/v1/chat/completions",
                &[("content-type", "application/json")],
                body.as_bytes(),
            )
        };
        let warm = send();
        if warm.status != 200 {
            println!("  envoy: status {}: {}", warm.status, warm.text());
            return;
        }
        let start = Instant::now();
        for _ in 0..rounds {
            send();
        }
        timings.push(start.elapsed().as_secs_f64() / f64::from(rounds));
        mock.clear();
    }
    let (base, with) = (
        timings.first().copied().unwrap_or(0.0),
        timings.get(1).copied().unwrap_or(0.0),
    );
    // The filter reads the prompt and the echoed answer (about as long).
    let scanned = 2.0 * text.len() as f64;
    println!(
        "  {:<30} {:>8.1} MB/s  ({} KB prompt: {:.1} ms per request without the filter, {:.1} ms with)",
        "in Envoy (V8), request+answer",
        scanned / (with - base).max(1e-9) / 1e6,
        text.len() / 1024,
        base * 1e3,
        with * 1e3
    );
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The context cases of `tests/corpus/pii/context.tsv` (written before reading the detectors'
/// patterns, by someone other than their author): recall and precision per type, on the cases with a
/// cue word near the value ("phone: ...") and on bare ones. Reported, not gated.
fn context_report(engine: &Engine) {
    let path = e2e::repo_root().join("tests/corpus/pii/context.tsv");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    // (type, context|bare) -> (true positives, false negatives, false positives)
    let mut rows: BTreeMap<(String, String), (usize, usize, usize, usize)> = BTreeMap::new();
    let mut wrong = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let mut f = line.splitn(4, '\t');
        let (Some(kind), Some(ctx), Some(want), Some(sample)) = (f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        let got: Vec<&str> = engine
            .detect(sample)
            .iter()
            .filter(|d| d.kind == kind)
            .filter_map(|d| sample.get(d.start..d.end))
            .collect();
        let row = rows.entry((kind.to_string(), ctx.to_string())).or_default();
        row.3 += 1;
        let hit = want != "-" && got.contains(&want);
        if hit {
            row.0 += 1;
        } else if want != "-" {
            row.1 += 1;
        }
        let extra = got.iter().filter(|g| **g != want).count();
        row.2 += extra;
        if !hit && want != "-" || extra > 0 {
            wrong.push(format!("{kind}/{ctx}: {sample:?} found {got:?}"));
        }
    }
    println!(
        "context cases ({}): recall and precision per type, with a cue word near the value and bare",
        path.display()
    );
    println!(
        "{:<8} {:<8} {:>4} {:>4} {:>4} {:>4} {:>8} {:>10}",
        "type", "cases", "n", "tp", "fn", "fp", "recall", "precision"
    );
    for ((kind, ctx), (tp, fneg, fp, n)) in &rows {
        let recall = if tp + fneg == 0 {
            "-".to_string()
        } else {
            format!("{:.3}", *tp as f64 / (tp + fneg) as f64)
        };
        let precision = if tp + fp == 0 {
            "-".to_string()
        } else {
            format!("{:.3}", *tp as f64 / (tp + fp) as f64)
        };
        println!("{kind:<8} {ctx:<8} {n:>4} {tp:>4} {fneg:>4} {fp:>4} {recall:>8} {precision:>10}");
    }
    for w in wrong {
        println!("  {w}");
    }
}

fn main() {
    let seed = arg("--seed", 4);
    let per_type = arg("--per-type", 2000) as usize;
    let negatives = arg("--negatives", 10_000) as usize;
    let engine = match Engine::new(&EngineSpec::builtins()) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("engine: {e:?}");
            std::process::exit(2);
        }
    };
    let mut g = Gen(Rng::new(seed));
    let targets: [(&str, f64); 7] = [
        ("email", 0.99),
        ("phone", 0.95),
        ("card", 0.99),
        ("ssn", 0.99),
        ("iban", 0.99),
        ("ip", 0.99),
        ("secret", 0.99),
    ];
    println!("PII detection quality (seed {seed}, {per_type} samples per type, {negatives} hard negatives)");
    println!(
        "{:<8} {:>7} {:>7} {:>8} {:>7}  misses (first 3)",
        "type", "found", "total", "recall", "target"
    );
    let mut ok = true;
    for (kind, target) in targets {
        let mut found = 0;
        let mut misses = Vec::new();
        for _ in 0..per_type {
            let s = sample(&mut g, kind);
            let hit = engine
                .detect(&s.text)
                .iter()
                .any(|d| d.kind == s.kind && d.start == s.start && d.end == s.end);
            if hit {
                found += 1;
            } else if misses.len() < 3 {
                let got: Vec<String> = engine
                    .detect(&s.text)
                    .iter()
                    .map(|d| format!("{}:{:?}", d.kind, &s.text[d.start..d.end]))
                    .collect();
                misses.push(format!("{:?} (found {})", &s.text[s.start..s.end], got.join(",")));
            }
        }
        let recall = found as f64 / per_type as f64;
        let pass = recall >= target;
        ok &= pass;
        println!(
            "{kind:<8} {found:>7} {per_type:>7} {recall:>8.4} {:>6}{}  {}",
            format!(">={target}"),
            if pass { " " } else { "!" },
            misses.join(" ")
        );
    }
    context_report(&engine);
    // Outside the issue's scope, reported so the limit is visible: national phone formats without a
    // country code (only NANP is recognised without "+").
    let mut national_found = 0;
    for _ in 0..per_type {
        let value = match g.below(4) {
            0 => format!("020 {} {}", g.digits(4), g.digits(4)),
            1 => format!(
                "0{} {} {} {} {}",
                g.digit_from(1, 7),
                g.digits(2),
                g.digits(2),
                g.digits(2),
                g.digits(2)
            ),
            2 => format!("030 {}", g.digits(8)),
            _ => format!("0{}-{}-{}", g.digit_from(3, 9), g.digits(4), g.digits(4)),
        };
        let text = format!("Ruf mich an: {value} bitte");
        let start = "Ruf mich an: ".len();
        if engine
            .detect(&text)
            .iter()
            .any(|d| d.kind == "phone" && d.start == start && d.end == start + value.len())
        {
            national_found += 1;
        }
    }
    println!(
        "(not targeted) national phone formats without country code: recall {:.4}",
        national_found as f64 / per_type as f64
    );
    let mut fp = 0;
    let mut fp_kinds: BTreeMap<String, usize> = BTreeMap::new();
    let mut fp_examples = Vec::new();
    for _ in 0..negatives {
        let text = negative(&mut g);
        let dets = engine.detect(&text);
        if !dets.is_empty() {
            fp += 1;
            for d in &dets {
                *fp_kinds.entry(d.kind.clone()).or_default() += 1;
            }
            if fp_examples.len() < 5 {
                fp_examples.push(text.clone());
            }
        }
    }
    let fp_rate = fp as f64 / negatives as f64;
    let pass = fp_rate <= 0.01;
    ok &= pass;
    println!(
        "false positives on hard negatives: {fp}/{negatives} = {:.4} (target <= 0.01){} by type: {fp_kinds:?}",
        fp_rate,
        if pass { "" } else { " !" }
    );
    for e in fp_examples {
        println!("  e.g. {e:?}");
    }

    // Speed: typical chat messages (4 KiB) scanned one by one, clean and with some PII.
    let mut g = Gen(Rng::new(seed ^ 0xBEEF));
    let build = if cfg!(debug_assertions) {
        "debug build: use --release for real figures"
    } else {
        "release build"
    };
    println!("scan speed ({build}):");
    for (label, with_pii) in [
        ("chat text, no PII", false),
        ("chat text, ~1 value per 1 KB", true),
    ] {
        let messages: Vec<String> = (0..256).map(|_| chat_text(&mut g, 4096, with_pii)).collect();
        let total: usize = messages.iter().map(String::len).sum();
        let rounds = if cfg!(debug_assertions) { 1 } else { 8 };
        let start = Instant::now();
        let mut found = 0;
        for _ in 0..rounds {
            for m in &messages {
                found += engine.detect(m).len();
            }
        }
        let secs = start.elapsed().as_secs_f64();
        let mbps = (total * rounds) as f64 / secs / 1e6;
        println!(
            "  {label:<30} {mbps:>8.1} MB/s  ({} values found per pass)",
            found / rounds
        );
    }
    // Streaming: the same text as 6-byte SSE deltas through the hold-back scrubber.
    let text = chat_text(&mut g, 256 * 1024, true);
    let pieces: Vec<&str> = {
        let mut v = Vec::new();
        let mut at = 0;
        while at < text.len() {
            let mut end = (at + 6).min(text.len());
            while !text.is_char_boundary(end) {
                end += 1;
            }
            v.push(&text[at..end]);
            at = end;
        }
        v
    };
    let rules = Rules::default();
    let mut session = Session::new();
    let mut scrub = Scrub {
        engine: &engine,
        rules: &rules,
        session: &mut session,
        redact: true,
        restore: true,
    };
    let mut s = StreamScrubber::default();
    let start = Instant::now();
    let mut out = 0;
    for p in &pieces {
        out += s.push(&mut scrub, p).len();
    }
    out += s.finish(&mut scrub).len();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "  {:<30} {:>8.1} MB/s  ({} pieces, {out} bytes out)",
        "stream, 6-byte deltas",
        text.len() as f64 / secs / 1e6,
        pieces.len()
    );
    if std::env::args().any(|a| a == "--envoy") {
        envoy_speed(&mut g);
    }
    if !ok {
        println!("TARGETS MISSED");
        std::process::exit(1);
    }
    println!("all targets met");
}
