//! What a request's body says, without a model: its readable text ([`body_text`]: a JSON body's
//! strings, a form's values, an XML or HTML document's text) and its language ([`language`]: script and
//! stop words). Used by ai-enrich's local enrichers and ai-router's `language` condition and local
//! intent classifier.

use crate::llm::inputs::{form_pairs, is_form};
use serde_json::Value;

/// Most characters of text read (the body text kept, the characters a language is told from).
pub const MAX_TEXT_CHARS: usize = 64 * 1024;

/// The readable text of a body: a JSON body's string values (keys left out, objects read in key order), a form's values, an XML or
/// HTML document's text between tags, anything else as it is; at most [`MAX_TEXT_CHARS`] characters.
pub fn body_text(body: &[u8], content_type: Option<&str>) -> String {
    let raw = String::from_utf8_lossy(body);
    let ct = content_type.unwrap_or_default().to_ascii_lowercase();
    let trimmed = raw.trim_start();
    let text = if is_form(content_type) {
        form_pairs(&raw)
            .into_iter()
            .map(|(_, v)| v)
            .collect::<Vec<_>>()
            .join("\n")
    } else if ct.contains("json") || trimmed.starts_with('{') || trimmed.starts_with('[') {
        match serde_json::from_str::<Value>(&raw) {
            Ok(v) => {
                let mut out = String::new();
                strings(&v, &mut out, 0);
                out
            }
            Err(_) => raw.into_owned(),
        }
    } else if ct.contains("xml") || ct.contains("html") || trimmed.starts_with('<') {
        strip_tags(&raw)
    } else {
        raw.into_owned()
    };
    crate::text::truncate_chars(&text, MAX_TEXT_CHARS).to_string()
}

/// Nesting read for string values.
const MAX_DEPTH: usize = 32;

fn strings(v: &Value, out: &mut String, depth: usize) {
    if depth > MAX_DEPTH || out.len() > MAX_TEXT_CHARS * 4 {
        return;
    }
    match v {
        Value::String(s) => {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(s);
        }
        Value::Array(a) => a.iter().for_each(|x| strings(x, out, depth + 1)),
        Value::Object(o) => o.values().for_each(|x| strings(x, out, depth + 1)),
        _ => {}
    }
}

/// Text between tags, with the common entities decoded; `<script>`/`<style>` content kept out.
fn strip_tags(doc: &str) -> String {
    let mut out = String::with_capacity(doc.len());
    let mut rest = doc;
    while let Some(open) = rest.find('<') {
        out.push_str(rest.get(..open).unwrap_or_default());
        let after = rest.get(open..).unwrap_or_default();
        let lower: String = after.chars().take(8).collect::<String>().to_ascii_lowercase();
        let skip_to = if lower.starts_with("<script") {
            Some("</script>")
        } else if lower.starts_with("<style") {
            Some("</style>")
        } else if after.starts_with("<!--") {
            Some("-->")
        } else {
            None
        };
        rest = match skip_to {
            Some(end) => {
                let hay = after.to_ascii_lowercase();
                match hay.find(end) {
                    Some(at) => after.get(at + end.len()..).unwrap_or_default(),
                    None => "",
                }
            }
            None => match after.find('>') {
                Some(close) => after.get(close + 1..).unwrap_or_default(),
                None => "",
            },
        };
        out.push(' ');
    }
    out.push_str(rest);
    let decoded = out
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&#39;", "'")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&");
    decoded.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The scripts told apart, in the order a tie between their counts is decided (the last wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Script {
    Latin,
    Cyrillic,
    Greek,
    Arabic,
    Hebrew,
    Devanagari,
    Thai,
    Hangul,
    Kana,
    Han,
}

const SCRIPTS: [Script; 10] = [
    Script::Latin,
    Script::Cyrillic,
    Script::Greek,
    Script::Arabic,
    Script::Hebrew,
    Script::Devanagari,
    Script::Thai,
    Script::Hangul,
    Script::Kana,
    Script::Han,
];

fn script(c: char) -> Option<Script> {
    Some(match c as u32 {
        0x41..=0x5A | 0x61..=0x7A | 0xC0..=0x24F | 0x1E00..=0x1EFF => Script::Latin,
        0x370..=0x3FF | 0x1F00..=0x1FFF => Script::Greek,
        0x400..=0x52F => Script::Cyrillic,
        0x590..=0x5FF => Script::Hebrew,
        0x600..=0x6FF | 0x750..=0x77F | 0xFB50..=0xFDFF | 0xFE70..=0xFEFF => Script::Arabic,
        0x900..=0x97F => Script::Devanagari,
        0xE00..=0xE7F => Script::Thai,
        0x1100..=0x11FF | 0x3130..=0x318F | 0xAC00..=0xD7AF => Script::Hangul,
        0x3040..=0x30FF | 0x31F0..=0x31FF => Script::Kana,
        0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF => Script::Han,
        _ => return None,
    })
}

/// The most characters of any word in [`STOP_WORDS`] ("пожалуйста").
const STOP_WORD_MAX_CHARS: usize = 10;

/// The most frequent short words of each language written in Latin script (and of Russian and
/// Ukrainian, which share Cyrillic): a text is in the language whose words it uses most. Each list
/// is sorted and lowercase.
const STOP_WORDS: [(&str, &[&str]); 11] = [
    (
        "en",
        &[
            "and", "are", "be", "for", "have", "in", "is", "it", "my", "not", "of", "on", "please", "that",
            "the", "this", "to", "was", "with", "you",
        ],
    ),
    (
        "de",
        &[
            "auf", "bitte", "das", "den", "der", "die", "ein", "eine", "es", "für", "ich", "ist", "mein",
            "meine", "mit", "nicht", "sie", "und", "wir", "zu",
        ],
    ),
    (
        "fr",
        &[
            "avec", "ce", "dans", "des", "du", "est", "et", "il", "je", "la", "le", "les", "ma", "merci",
            "mon", "pas", "pour", "que", "une", "vous",
        ],
    ),
    (
        "es",
        &[
            "con", "de", "del", "el", "en", "es", "está", "gracias", "la", "las", "los", "mi", "no", "para",
            "pero", "por", "que", "un", "una", "y",
        ],
    ),
    (
        "it",
        &[
            "che", "con", "del", "della", "di", "e", "gli", "grazie", "il", "la", "le", "lo", "mio", "non",
            "per", "questo", "sono", "un", "una", "è",
        ],
    ),
    (
        "pt",
        &[
            "as", "com", "da", "de", "do", "e", "em", "está", "meu", "minha", "não", "o", "obrigado", "os",
            "para", "por", "que", "um", "uma", "é",
        ],
    ),
    (
        "nl",
        &[
            "bedankt", "dat", "de", "een", "en", "er", "het", "ik", "is", "je", "maar", "met", "mijn",
            "niet", "ook", "op", "van", "voor", "wij", "zijn",
        ],
    ),
    (
        "sv",
        &[
            "att", "av", "den", "det", "en", "ett", "för", "har", "inte", "jag", "med", "min", "och", "om",
            "på", "som", "tack", "till", "vi", "är",
        ],
    ),
    (
        "pl",
        &[
            "ale",
            "co",
            "czy",
            "dla",
            "do",
            "dziękuję",
            "i",
            "jak",
            "jest",
            "jestem",
            "moja",
            "mój",
            "na",
            "nie",
            "proszę",
            "się",
            "to",
            "w",
            "z",
            "że",
        ],
    ),
    (
        "ru",
        &[
            "в",
            "вы",
            "для",
            "есть",
            "и",
            "как",
            "мой",
            "моя",
            "на",
            "не",
            "но",
            "он",
            "она",
            "по",
            "пожалуйста",
            "с",
            "спасибо",
            "что",
            "это",
            "я",
        ],
    ),
    (
        "uk",
        &[
            "але",
            "будь",
            "в",
            "ви",
            "вона",
            "він",
            "для",
            "дякую",
            "з",
            "моя",
            "мій",
            "на",
            "не",
            "по",
            "це",
            "що",
            "я",
            "як",
            "є",
            "і",
        ],
    ),
];

/// The language of `text` as an ISO 639-1 code, or `und` when it cannot be told (too little text, or no
/// script and stop words that decide). Non-Latin scripts mostly decide by themselves (Greek `el`,
/// Arabic `ar`, Hebrew `he`, Devanagari `hi`, Thai `th`, Hangul `ko`, kana `ja`, Han alone `zh`);
/// Latin and Cyrillic text is told by its stop words.
pub fn language(text: &str) -> &'static str {
    // Counted by the script's place in `SCRIPTS`.
    let mut counts = [0usize; SCRIPTS.len()];
    for c in text.chars().take(MAX_TEXT_CHARS) {
        if let Some(n) = script(c).and_then(|s| counts.get_mut(s as usize)) {
            *n += 1;
        }
    }
    let count = |s: Script| counts.get(s as usize).copied().unwrap_or(0);
    let total: usize = counts.iter().sum();
    if total < 3 {
        return "und";
    }
    let (kana, han) = (count(Script::Kana), count(Script::Han));
    // Japanese mixes kana with Han; Chinese is Han alone.
    if kana * 10 >= total {
        return "ja";
    }
    // The most frequent script (of equal counts the last in `SCRIPTS`; a script never seen has 0 and
    // total ≥ 3 means some script was seen).
    let Some((&top, _)) = SCRIPTS.iter().zip(counts).max_by_key(|(_, n)| *n) else {
        return "und";
    };
    if let Some(code) = script_language(top, han) {
        return code;
    }
    // The languages of the top script: Russian and Ukrainian for Cyrillic, the others for Latin.
    let cyrillic = top == Script::Cyrillic;
    let candidates = STOP_WORDS
        .iter()
        .enumerate()
        .filter(|(_, (code, _))| matches!(*code, "ru" | "uk") == cyrillic)
        .fold(0u16, |m, (i, _)| m | 1 << i);
    let mut hits = [0usize; STOP_WORDS.len()];
    let mut words = 0usize;
    let mut lower = String::new();
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(2000)
    {
        words += 1;
        // Lowercasing never makes fewer characters: a longer word is no stop word.
        if word.chars().nth(STOP_WORD_MAX_CHARS).is_some() {
            continue;
        }
        lower.clear();
        lower.extend(word.chars().flat_map(char::to_lowercase));
        let langs = stop_word_languages(&lower) & candidates;
        for (i, n) in hits.iter_mut().enumerate() {
            if langs & 1 << i != 0 {
                *n += 1;
            }
        }
    }
    let mut best: Option<(&'static str, usize)> = None;
    for ((code, _), &n) in STOP_WORDS.iter().zip(&hits) {
        if n > best.map_or(0, |(_, b)| b) {
            best = Some((code, n));
        }
    }
    match best {
        // One common word proves little in a long text; two, or a tenth of the words, decide.
        Some((code, hits)) if hits >= 2 || hits * 10 >= words => code,
        _ => "und",
    }
}

/// The language a text's most frequent script decides by itself (`han`: how many Han characters it
/// has), or `None` for Latin and Cyrillic, which its words decide.
fn script_language(top: Script, han: usize) -> Option<&'static str> {
    Some(match top {
        Script::Greek => "el",
        Script::Arabic => "ar",
        Script::Hebrew => "he",
        Script::Devanagari => "hi",
        Script::Thai => "th",
        Script::Hangul => "ko",
        Script::Han | Script::Kana => {
            if han > 0 {
                "zh"
            } else {
                "ja"
            }
        }
        Script::Latin | Script::Cyrillic => return None,
    })
}

/// A word's first 16 bytes as a number (zero-padded), so that looking a word up compares integers.
fn word_key(word: &str) -> u128 {
    let mut b = [0u8; 16];
    b.iter_mut().zip(word.as_bytes()).for_each(|(d, s)| *d = *s);
    u128::from_be_bytes(b)
}

/// The languages (bit `i` for `STOP_WORDS[i]`) whose stop words include `word` (lowercase).
fn stop_word_languages(word: &str) -> u16 {
    // Every stop word once, by key: its word and its languages.
    static INDEX: std::sync::LazyLock<Vec<(u128, &'static str, u16)>> = std::sync::LazyLock::new(|| {
        let mut index: Vec<(u128, &'static str, u16)> = Vec::new();
        for (i, (_, words)) in STOP_WORDS.iter().enumerate() {
            for &w in words.iter() {
                match index.iter_mut().find(|e| e.1 == w) {
                    Some(e) => e.2 |= 1 << i,
                    None => index.push((word_key(w), w, 1 << i)),
                }
            }
        }
        index.sort_unstable();
        index
    });
    let key = word_key(word);
    let from = INDEX.partition_point(|e| e.0 < key);
    INDEX
        .get(from..)
        .unwrap_or_default()
        .iter()
        .take_while(|e| e.0 == key)
        .filter(|e| e.1 == word)
        .fold(0, |m, e| m | e.2)
}

/// How a line of source code starts (after its indentation): a keyword of a common language.
const CODE_STARTS: [&str; 30] = [
    "def ",
    "fn ",
    "pub fn ",
    "func ",
    "function ",
    "class ",
    "import ",
    "from ",
    "#include",
    "package ",
    "public ",
    "private ",
    "static ",
    "return ",
    "const ",
    "let ",
    "var ",
    "if (",
    "for (",
    "while (",
    "} else",
    "select ",
    "insert into ",
    "create table ",
    "<?php",
    "#!/",
    "async ",
    "struct ",
    "impl ",
    "elif ",
];
/// How a line of source code ends.
const CODE_ENDS: [&str; 6] = [";", "{", "}", "):", "=>", "*/"];

/// Whether a line reads as source code: it starts with a keyword of [`CODE_STARTS`] (lower-cased),
/// ends with one of [`CODE_ENDS`], or holds an assignment or call typical of code (`x = f(`, `a->b`,
/// `a::b`).
fn code_line(line: &str) -> bool {
    let t = line.trim();
    if t.chars().count() < 3 {
        return false;
    }
    let lower = t.to_ascii_lowercase();
    CODE_STARTS.iter().any(|k| lower.starts_with(k))
        || CODE_ENDS.iter().any(|e| t.ends_with(e))
        || t.contains("->")
        || t.contains("::")
        || (t.contains(" = ") && t.contains('(') && t.ends_with(')'))
}

/// Whether `text` holds source code, by these rules (no model):
/// 1. a fenced block: a line that starts with ```` ``` ```` or `~~~`;
/// 2. else at least two lines that read as code ([`code_line`]: a keyword start such as `def `,
///    `function `, `#include`, `SELECT `; an end such as `;`, `{`, `}`; `->`, `::`, or `x = f(…)`),
///    making at least a third of the non-empty lines.
///
/// One line of code inside prose is not enough; a pasted snippet of two lines is.
pub fn looks_like_code(text: &str) -> bool {
    let text = crate::text::truncate_chars(text, MAX_TEXT_CHARS);
    let mut lines = 0usize;
    let mut code = 0usize;
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("```") || t.starts_with("~~~") {
            return true;
        }
        if t.is_empty() {
            continue;
        }
        lines += 1;
        if code_line(t) {
            code += 1;
        }
    }
    code >= 2 && code * 3 >= lines
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn languages() {
        let cases = [
            (
                "Hello, my printer is not working and I need help with the invoice.",
                "en",
            ),
            (
                "Hallo, mein Drucker funktioniert nicht und ich brauche bitte Hilfe.",
                "de",
            ),
            (
                "Bonjour, je ne peux pas me connecter à mon compte, merci pour votre aide.",
                "fr",
            ),
            (
                "Hola, no puedo entrar en mi cuenta y necesito ayuda con la factura, gracias.",
                "es",
            ),
            (
                "Ciao, non riesco ad accedere al mio account e ho bisogno di aiuto, grazie.",
                "it",
            ),
            (
                "Olá, não consigo entrar na minha conta e preciso de ajuda com a fatura.",
                "pt",
            ),
            (
                "Hallo, ik kan niet inloggen op mijn account en heb hulp nodig met de factuur.",
                "nl",
            ),
            (
                "Hej, jag kan inte logga in på mitt konto och behöver hjälp med fakturan, tack.",
                "sv",
            ),
            (
                "Dzień dobry, nie mogę się zalogować do konta i proszę o pomoc z fakturą.",
                "pl",
            ),
            (
                "Здравствуйте, я не могу войти в мой аккаунт, пожалуйста помогите.",
                "ru",
            ),
            (
                "Добрий день, я не можу увійти, будь ласка допоможіть, дякую.",
                "uk",
            ),
            ("Γεια σας, δεν μπορώ να συνδεθώ στον λογαριασμό μου.", "el"),
            ("مرحبا، لا أستطيع تسجيل الدخول إلى حسابي", "ar"),
            ("שלום, אני לא יכול להתחבר לחשבון שלי", "he"),
            ("नमस्ते, मैं अपने खाते में लॉग इन नहीं कर पा रहा हूँ", "hi"),
            ("สวัสดีครับ ผมเข้าสู่ระบบไม่ได้", "th"),
            ("안녕하세요, 계정에 로그인할 수 없습니다", "ko"),
            ("こんにちは、アカウントにログインできません", "ja"),
            ("你好，我无法登录我的账户，请帮助我", "zh"),
            ("ok", "und"),
            ("12345 67890 !!!", "und"),
            ("Xylophone quartz zebra", "und"),
        ];
        for (text, want) in cases {
            assert_eq!(language(text), want, "{text}");
        }
    }

    #[test]
    fn stop_word_lists_are_sorted_and_lowercase() {
        for (code, words) in STOP_WORDS {
            assert!(
                words.windows(2).all(|w| w[0] < w[1]),
                "{code}: sorted, no repeats"
            );
            for w in words {
                assert_eq!(w.to_lowercase(), *w, "{code}");
            }
        }
        let longest = STOP_WORDS
            .iter()
            .flat_map(|(_, w)| w.iter())
            .map(|w| w.chars().count())
            .max();
        assert_eq!(longest, Some(STOP_WORD_MAX_CHARS));
        for (i, s) in SCRIPTS.iter().enumerate() {
            assert_eq!(*s as usize, i, "{s:?}");
        }
    }

    /// `language` as it was written first (script counts in a map, every word lowercased into a
    /// vector, each list searched through), the reference for the one that allocates nothing per word.
    fn language_reference(text: &str) -> &'static str {
        use std::collections::BTreeMap;
        let mut counts: BTreeMap<Script, usize> = BTreeMap::new();
        for c in text.chars().take(MAX_TEXT_CHARS) {
            if let Some(s) = script(c) {
                *counts.entry(s).or_default() += 1;
            }
        }
        let total: usize = counts.values().sum();
        if total < 3 {
            return "und";
        }
        let kana = counts.get(&Script::Kana).copied().unwrap_or(0);
        let han = counts.get(&Script::Han).copied().unwrap_or(0);
        if kana * 10 >= total {
            return "ja";
        }
        let Some((&top, _)) = counts.iter().max_by_key(|(_, n)| **n) else {
            return "und";
        };
        // Unchanged from the first version.
        if let Some(code) = script_language(top, han) {
            return code;
        }
        let words: Vec<String> = text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .take(2000)
            .map(str::to_lowercase)
            .collect();
        let candidates = STOP_WORDS.iter().filter(|(code, _)| {
            let cyrillic = matches!(*code, "ru" | "uk");
            cyrillic == (top == Script::Cyrillic)
        });
        let mut best: Option<(&'static str, usize)> = None;
        for (code, stop) in candidates {
            let hits = words.iter().filter(|w| stop.contains(&w.as_str())).count();
            if hits > best.map_or(0, |(_, n)| n) {
                best = Some((code, hits));
            }
        }
        match best {
            Some((code, hits)) if hits >= 2 || hits * 10 >= words.len() => code,
            _ => "und",
        }
    }

    /// Texts of stop words of every list, in every case, with other words and scripts mixed in, short
    /// and past the 2,000 words read: the same language as the reference's for each.
    #[test]
    fn language_is_its_reference() {
        let mut pool: Vec<String> = STOP_WORDS
            .iter()
            .flat_map(|(_, w)| w.iter().map(|w| w.to_string()))
            .collect();
        for extra in [
            "Invoice",
            "ÉTÉ",
            "straße",
            "STRASSE",
            "İstanbul",
            "Kelvin",
            "Σίσυφος",
            "Ωμέγα",
            "привет",
            "ПОЖАЛУЙСТА",
            "Дякую",
            "東京",
            "ひらがな",
            "カタカナ",
            "한국어",
            "שלום",
            "مرحبا",
            "नमस्ते",
            "สวัสดี",
            "x1",
            "42",
            "a",
            "pożałuj",
            "überall",
            "ŁÓDŹ",
            "ﬁle",
        ] {
            pool.push(extra.to_string());
        }
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let seps = [" ", ", ", "\n", "-", "'", ". ", "  "];
        for case in 0..3000 {
            let words = match case % 10 {
                0 => 2500,
                1..=3 => next(8),
                _ => next(60),
            };
            let mut text = String::new();
            for _ in 0..words {
                let w = pool.get(next(pool.len())).cloned().unwrap_or_default();
                let w = match next(3) {
                    0 => w.to_uppercase(),
                    1 => {
                        let mut c = w.chars();
                        c.next()
                            .map(|f| f.to_uppercase().chain(c).collect())
                            .unwrap_or_default()
                    }
                    _ => w,
                };
                text.push_str(&w);
                text.push_str(seps.get(next(seps.len())).copied().unwrap_or(" "));
            }
            assert_eq!(language(&text), language_reference(&text), "{text:?}");
        }
    }

    #[test]
    fn body_text_of_each_kind() {
        let cases: [(&[u8], Option<&str>, &str); 6] = [
            (
                br#"{"subject": "Refund", "items": [{"note": "twice"}], "n": 3, "ok": true}"#,
                Some("application/json"),
                "twice\nRefund",
            ),
            (b"subject=Bonjour+%C3%A0+vous&id=7", Some("application/x-www-form-urlencoded"), "Bonjour à vous\n7"),
            (
                b"<ticket><subject>Hello &amp; welcome</subject><script>x()</script><!-- no --><body>Help</body></ticket>",
                Some("application/xml"),
                "Hello & welcome Help",
            ),
            (b"<p>Hi <b>there</b></p>", None, "Hi there"),
            (b"plain words", Some("text/plain"), "plain words"),
            (b"{not json", Some("application/json"), "{not json"),
        ];
        for (body, ct, want) in cases {
            assert_eq!(body_text(body, ct), want, "{}", String::from_utf8_lossy(body));
        }
        let long = "a".repeat(MAX_TEXT_CHARS + 10);
        assert_eq!(body_text(long.as_bytes(), None).len(), MAX_TEXT_CHARS);
    }

    #[test]
    fn code_is_told_from_prose() {
        let cases = [
            ("Here:\n```python\nprint(1)\n```", true),
            ("  ~~~\nx\n~~~", true),
            ("def add(a, b):\n    return a + b", true),
            ("Why does this fail?\nint main() {\n  printf(\"hi\");\n}", true),
            ("SELECT name FROM users\nWHERE id = 1;", true),
            ("let x = compute(y)\nconsole.log(x);", true),
            ("Hello, how are you today?", false),
            ("I want to return my order; it arrived broken.", false),
            (
                "Write me a poem about the sea.\nMake it rhyme.\nAnd short.",
                false,
            ),
            // One line of code in a long message is not enough.
            ("a\nb\nc\nd\ne\nf\nx = f(1)\ny = g(2);", false),
            ("", false),
        ];
        for (text, want) in cases {
            assert_eq!(looks_like_code(text), want, "{text}");
        }
    }
}
