//! Checks that turn a pattern's candidate into a detection: checksums (Luhn, IBAN mod-97), issuer
//! ranges, SSN invalid ranges, address parsing. A regex finds shapes; these decide what is real, which
//! is what keeps false positives on order numbers, dates and look-alike numbers low.

/// Digits of `s`, ignoring separators; `None` if any other character is present.
fn digits(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'0'..=b'9' => out.push(b - b'0'),
            b' ' | b'-' | b'.' => {}
            _ => return None,
        }
    }
    Some(out)
}

/// The Luhn (mod 10) check used by payment cards.
pub fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(*d);
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    !digits.is_empty() && sum.is_multiple_of(10)
}

/// Leading digits as a number (for issuer ranges).
fn prefix(d: &[u8], n: usize) -> u32 {
    d.iter().take(n).fold(0, |acc, x| acc * 10 + u32::from(*x))
}

/// A payment card number: known issuer range and length, consistent grouping, Luhn-valid.
pub fn card(candidate: &str) -> bool {
    // Groups must use one separator kind (or none): "4111 1111-1111 1111" is not how cards are written.
    let seps: Vec<u8> = candidate.bytes().filter(|b| !b.is_ascii_digit()).collect();
    if seps.windows(2).any(|w| w.first() != w.get(1)) {
        return false;
    }
    let Some(d) = digits(candidate) else { return false };
    let len = d.len();
    let p1 = prefix(&d, 1);
    let p2 = prefix(&d, 2);
    let p3 = prefix(&d, 3);
    let p4 = prefix(&d, 4);
    let p6 = prefix(&d, 6);
    let brand_ok = match p1 {
        // Visa
        4 => matches!(len, 13 | 16 | 19),
        // Mastercard 51-55 and 2221-2720
        5 if (51..=55).contains(&p2) => len == 16,
        2 if (2221..=2720).contains(&p4) => len == 16,
        // Amex
        3 if p2 == 34 || p2 == 37 => len == 15,
        // JCB
        3 if (3528..=3589).contains(&p4) => (16..=19).contains(&len),
        // Diners Club
        3 if (300..=305).contains(&p3) || p2 == 36 || p2 == 38 || p2 == 39 => (14..=19).contains(&len),
        // Discover, UnionPay, RuPay
        6 if p4 == 6011 || p2 == 65 || (644..=649).contains(&p3) || (622_126..=622_925).contains(&p6) => {
            (16..=19).contains(&len)
        }
        6 if p2 == 62 || p2 == 60 || p2 == 81 => (16..=19).contains(&len),
        // Maestro
        5 if p2 == 50 || (56..=58).contains(&p2) => (12..=19).contains(&len),
        6 if p2 == 63 || p2 == 67 => (12..=19).contains(&len),
        _ => false,
    };
    brand_ok && luhn(&d)
}

/// A US Social Security Number outside the ranges the SSA never issues (area 000, 666, 900-999;
/// group 00; serial 0000) and not a well-known advertising number.
pub fn ssn(candidate: &str) -> bool {
    let Some(d) = digits(candidate) else { return false };
    if d.len() != 9 {
        return false;
    }
    let area = prefix(&d, 3);
    let group = prefix(d.get(3..).unwrap_or_default(), 2);
    let serial = prefix(d.get(5..).unwrap_or_default(), 4);
    let seps: Vec<u8> = candidate.bytes().filter(|b| !b.is_ascii_digit()).collect();
    let grouping_ok = seps.is_empty() || (seps.len() == 2 && seps.first() == seps.get(1));
    grouping_ok
        && area != 0
        && area != 666
        && area < 900
        && group != 0
        && serial != 0
        && !(area == 78 && group == 5 && serial == 1120)
        && !(area == 219 && group == 9 && serial == 9999)
}

/// Expected IBAN length per country (ISO 13616 registry).
fn iban_length(country: &str) -> Option<usize> {
    Some(match country {
        "NO" => 15,
        "BE" => 16,
        "DK" | "FI" | "FO" | "GL" | "NL" => 18,
        "MK" | "SI" => 19,
        "AT" | "BA" | "EE" | "KZ" | "LT" | "LU" | "XK" => 20,
        "CH" | "HR" | "LI" | "LV" => 21,
        "CR" => 22,
        "BG" | "BH" | "DE" | "GB" | "GE" | "IE" | "ME" | "RS" | "VA" => 22,
        "AE" | "IL" | "TL" => 23,
        "AD" | "CZ" | "ES" | "MD" | "PK" | "RO" | "SA" | "SE" | "SK" | "TN" | "VG" => 24,
        "PT" | "ST" => 25,
        "IS" | "TR" => 26,
        "FR" | "GR" | "IT" | "MC" | "MR" | "SM" => 27,
        "AL" | "AZ" | "BY" | "CY" | "DO" | "GT" | "HU" | "LB" | "PL" | "SV" => 28,
        "BR" | "EG" | "PS" | "QA" | "UA" => 29,
        "JO" | "KW" | "MU" => 30,
        "MT" | "SC" => 31,
        "LC" => 32,
        "RU" => 33,
        _ => return None,
    })
}

/// The IBAN at the start of `candidate` (letters and digits, single spaces allowed between them):
/// returns how many bytes of `candidate` it spans, if its country length and mod-97 check hold.
pub fn iban_prefix(candidate: &str) -> Option<usize> {
    let upper: String = candidate.get(..2)?.to_ascii_uppercase();
    let want = iban_length(&upper)?;
    let mut compact = Vec::with_capacity(want);
    let mut end = 0;
    for (i, b) in candidate.bytes().enumerate() {
        if compact.len() == want {
            break;
        }
        match b {
            b' ' => continue,
            b if b.is_ascii_alphanumeric() => {
                compact.push(b.to_ascii_uppercase());
                end = i + 1;
            }
            _ => break,
        }
    }
    if compact.len() != want {
        return None;
    }
    // The value must end here: a longer run of letters/digits is something else.
    if candidate
        .as_bytes()
        .get(end)
        .is_some_and(u8::is_ascii_alphanumeric)
    {
        return None;
    }
    if !compact.get(2..4)?.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // Move the first four characters to the end, letters to 10..35, then mod 97 must be 1.
    let (head, tail) = compact.split_at(4);
    let mut rem: u32 = 0;
    for b in tail.iter().chain(head) {
        let v = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            _ => return None,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    (rem == 1).then_some(end)
}

/// An IPv4 address not followed by more dotted numbers (an OID or a version string).
pub fn ipv4(text: &str, end: usize) -> bool {
    let rest = text.get(end..).unwrap_or_default().as_bytes();
    !(rest.first() == Some(&b'.') && rest.get(1).is_some_and(u8::is_ascii_digit))
}

/// An IPv6 address: parses, and is more than a couple of hex digits around `::` (`a::b` in prose or
/// `std::` in code are not addresses).
pub fn ipv6(candidate: &str) -> bool {
    let hex_digits = candidate.bytes().filter(u8::is_ascii_hexdigit).count();
    hex_digits >= 4 && candidate.parse::<std::net::Ipv6Addr>().is_ok()
}

/// A phone number's digit count: NANP numbers have 10 (11 with the leading 1), E.164 at most 15.
pub fn phone_digits(candidate: &str) -> usize {
    candidate.bytes().filter(u8::is_ascii_digit).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn cards() {
        let cases = [
            ("4111 1111 1111 1111", true),
            ("4111-1111-1111-1111", true),
            ("4111111111111111", true),
            ("4111 1111 1111 1112", false), // Luhn
            ("4111 1111-1111 1111", false), // mixed separators
            ("5555 5555 5555 4444", true),
            ("2223 0031 2200 3222", true),
            ("3782 822463 10005", true), // Amex 4-6-5
            ("6011 1111 1111 1117", true),
            ("3530 1113 3330 0000", true),
            ("3056 9309 0259 04", true),
            ("6200 0000 0000 0005", true),
            ("1234 5678 9012 3452", false), // no issuer starts with 1
            ("4111 1111 1111 11", false),   // Visa length
        ];
        for (c, want) in cases {
            assert_eq!(card(c), want, "{c}");
        }
        assert!(luhn(&[7, 9, 9, 2, 7, 3, 9, 8, 7, 1, 3]));
        assert!(!luhn(&[]));
    }

    #[test]
    fn ssns() {
        let cases = [
            ("123-45-6789", true),
            ("123 45 6789", true),
            ("123456789", true),
            ("000-12-3456", false),
            ("666-12-3456", false),
            ("912-12-3456", false),
            ("123-00-3456", false),
            ("123-45-0000", false),
            ("078-05-1120", false),
            ("123-45 6789", false),
        ];
        for (c, want) in cases {
            assert_eq!(ssn(c), want, "{c}");
        }
    }

    #[test]
    fn ibans() {
        let cases = [
            ("DE89 3704 0044 0532 0130 00", Some(27)),
            ("DE89370400440532013000", Some(22)),
            ("GB82 WEST 1234 5698 7654 32", Some(27)),
            ("gb82west12345698765432", Some(22)),
            ("FR14 2004 1010 0505 0001 3M02 606 and more", Some(33)),
            ("NL91ABNA0417164300", Some(18)),
            ("DE89 3704 0044 0532 0130 01", None), // checksum
            ("DE89370400440532013000123", None),   // too long
            ("XX89370400440532013000", None),      // unknown country
        ];
        for (c, want) in cases {
            assert_eq!(iban_prefix(c), want, "{c}");
        }
    }

    #[test]
    fn addresses() {
        assert!(ipv6("2001:db8::8a2e:370:7334"));
        assert!(ipv6("fe80::1ff:fe23:4567:890a"));
        assert!(!ipv6("a::b"));
        assert!(!ipv6("10:30:00"));
        assert!(!ipv6("00:1A:2B:3C:4D:5E"));
        assert!(ipv4("at 10.0.0.1.", 11));
        assert!(!ipv4("oid 1.3.6.1.4", 11));
    }
}
