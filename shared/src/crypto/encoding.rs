//! Base64 (RFC 4648 §4 standard and §5 URL-safe) and hex, encoding and decoding.
//!
//! One decoder for the whole crate: [`base64_decode`] takes either alphabet, padded or not, because
//! the values it reads (JWT segments, forwarded auth payloads, blobs hidden in prompts) come in both.

const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Standard base64 with `=` padding (RFC 4648 §4), as in `Authorization: Basic` or JSON byte fields.
pub fn base64_encode(bytes: &[u8]) -> String {
    encode(bytes, STANDARD, true)
}

/// URL-safe base64 without padding (RFC 4648 §5; RFC 7515's `base64url`), as in JWTs.
pub fn base64url_encode(bytes: &[u8]) -> String {
    encode(bytes, URL_SAFE, false)
}

// The index is masked to 0..64, the table's length.
#[allow(clippy::indexing_slicing)]
fn symbol(table: &[u8; 64], v: u32) -> char {
    char::from(table[(v & 63) as usize])
}

fn encode(bytes: &[u8], table: &[u8; 64], pad: bool) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    let mut chunks = bytes.chunks_exact(3);
    for c in &mut chunks {
        if let [a, b, d] = *c {
            let n = u32::from(a) << 16 | u32::from(b) << 8 | u32::from(d);
            for shift in [18, 12, 6, 0] {
                out.push(symbol(table, n >> shift));
            }
        }
    }
    let (n, symbols) = match *chunks.remainder() {
        [a] => (u32::from(a) << 16, 2),
        [a, b] => (u32::from(a) << 16 | u32::from(b) << 8, 3),
        _ => return out,
    };
    for shift in [18, 12, 6].iter().take(symbols) {
        out.push(symbol(table, n >> shift));
    }
    if pad {
        out.push_str(if symbols == 2 { "==" } else { "=" });
    }
    out
}

fn base64_value(c: u8) -> Option<u32> {
    Some(u32::from(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' | b'-' => 62,
        b'/' | b'_' => 63,
        _ => return None,
    }))
}

/// Decodes standard or URL-safe base64, padding optional. Lenient on purpose: trailing bits that make
/// no whole byte are dropped, so a blob cut at any length still decodes (what the injection scanner
/// needs). Anything outside both alphabets, whitespace included, is refused.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0u32;
    for &c in s.trim_end_matches('=').as_bytes() {
        acc = (acc << 6) | base64_value(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(nibble(b >> 4));
        s.push(nibble(b & 15));
    }
    s
}

fn nibble(n: u8) -> char {
    char::from_digit(u32::from(n), 16).unwrap_or('0')
}

/// Decodes hex digits (either case), nothing else: an odd length or any other character is `None`.
pub fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.as_bytes()
        .chunks_exact(2)
        .map(|pair| match *pair {
            [hi, lo] => {
                let hi = char::from(hi).to_digit(16)?;
                let lo = char::from(lo).to_digit(16)?;
                u8::try_from(hi << 4 | lo).ok()
            }
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// RFC 4648 §10 test vectors, and the same through the URL-safe alphabet without padding.
    #[test]
    fn rfc4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in cases {
            assert_eq!(base64_encode(plain.as_bytes()), encoded);
            assert_eq!(base64url_encode(plain.as_bytes()), encoded.trim_end_matches('='));
            assert_eq!(base64_decode(encoded).unwrap(), plain.as_bytes());
            assert_eq!(
                base64_decode(encoded.trim_end_matches('=')).unwrap(),
                plain.as_bytes()
            );
        }
        // RFC 4648 §10 base16 vector.
        assert_eq!(hex(b"foobar"), "666f6f626172");
    }

    #[test]
    fn alphabets_differ_only_in_62_and_63() {
        let bytes = [0xfb, 0xff, 0xbf];
        assert_eq!(base64_encode(&bytes), "+/+/");
        assert_eq!(base64url_encode(&bytes), "-_-_");
        assert_eq!(base64_decode("+/+/").unwrap(), bytes);
        assert_eq!(base64_decode("-_-_").unwrap(), bytes);
        assert_eq!(base64_decode("-_8").unwrap(), vec![0xfb, 0xff]);
        assert_eq!(base64_decode("a b"), None);
        assert_eq!(base64_decode("aGVsbG8\n"), None);
    }

    #[test]
    fn every_byte_value_round_trips() {
        let all: Vec<u8> = (0..=255).collect();
        for len in 0..all.len() {
            let bytes = &all[..len];
            assert_eq!(base64_decode(&base64_encode(bytes)).unwrap(), bytes);
            assert_eq!(base64_decode(&base64url_encode(bytes)).unwrap(), bytes);
            assert_eq!(hex_decode(&hex(bytes)).unwrap(), bytes);
        }
        let h = hex(&all);
        assert!(h.starts_with("000102") && h.ends_with("fdfeff"), "{h}");
        assert_eq!(hex_decode("DEADbeef").unwrap(), [0xde, 0xad, 0xbe, 0xef]);
        for bad in ["0", "abc", "zz", "0x00", " 00", "é"] {
            assert_eq!(hex_decode(bad), None, "{bad:?}");
        }
    }
}
