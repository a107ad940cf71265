//! A canonical Huffman code for the learned model's bytes, so the `.wasm` carries them in about a third
//! of the space (the weights are 8-bit, mostly zero and concentrated on a few values: 2.6 bits each).
//!
//! `shared/build.rs` encodes `model.bin` with [`encode`] into the build's output folder (this file is
//! included there with `#[path]`: one implementation for both sides), and [`super::model`] decodes it
//! once per VM. `model.bin` itself, as `guard-train` writes it, stays the source of truth.
//!
//! Format: `b"HUF1"`, the number of bytes (u32, little endian), 256 code lengths (one byte per byte
//! value, 0 for a value that never occurs), then the codes, most significant bit first. Codes are
//! canonical (DEFLATE's rule: shorter codes first, equal lengths in byte order), so the lengths are the
//! whole dictionary.

const MAGIC: &[u8; 4] = b"HUF1";
const HEADER: usize = 4 + 4 + 256;
/// Longest code the decoder accepts (a code over a u32 of counts cannot be longer than 32).
const MAX_LEN: usize = 32;

/// Code lengths of an optimal prefix code for `counts` (Huffman's construction; ties broken by node
/// number, so the output is deterministic).
// The encoder runs in build.rs (and the tests); the library only decodes.
#[cfg_attr(not(test), allow(dead_code))]
fn code_lengths(counts: &[u64; 256]) -> [u8; 256] {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let mut lengths = [0u8; 256];
    // Nodes: leaves 0..256, then inner nodes; `parent` links each node to the one that merged it.
    let mut parent: Vec<usize> = vec![usize::MAX; 256];
    let mut heap: BinaryHeap<Reverse<(u64, usize)>> = counts
        .iter()
        .enumerate()
        .filter(|(_, c)| **c > 0)
        .map(|(s, c)| Reverse((*c, s)))
        .collect();
    if heap.len() == 1 {
        // One distinct byte still needs a one-bit code.
        if let Some(Reverse((_, s))) = heap.peek() {
            if let Some(l) = lengths.get_mut(*s) {
                *l = 1;
            }
        }
        return lengths;
    }
    while heap.len() > 1 {
        let (Some(Reverse((ca, a))), Some(Reverse((cb, b)))) = (heap.pop(), heap.pop()) else {
            break;
        };
        let node = parent.len();
        parent.push(usize::MAX);
        if let Some(p) = parent.get_mut(a) {
            *p = node;
        }
        if let Some(p) = parent.get_mut(b) {
            *p = node;
        }
        heap.push(Reverse((ca + cb, node)));
    }
    for (s, l) in lengths.iter_mut().enumerate() {
        if counts.get(s).copied().unwrap_or(0) == 0 {
            continue;
        }
        let (mut depth, mut n) = (0u8, s);
        while let Some(&p) = parent.get(n).filter(|p| **p != usize::MAX) {
            depth = depth.saturating_add(1);
            n = p;
        }
        *l = depth;
    }
    lengths
}

/// The canonical code of each byte value: `(code, length)`.
// The encoder runs in build.rs (and the tests); the library only decodes.
#[cfg_attr(not(test), allow(dead_code))]
fn canonical(lengths: &[u8; 256]) -> [(u32, u8); 256] {
    let mut count = [0u32; MAX_LEN + 1];
    for &l in lengths {
        if let Some(c) = count.get_mut(usize::from(l)) {
            *c += 1;
        }
    }
    if let Some(c) = count.get_mut(0) {
        *c = 0;
    }
    let mut next = [0u32; MAX_LEN + 1];
    let mut code = 0u32;
    for len in 1..=MAX_LEN {
        code = (code + count.get(len - 1).copied().unwrap_or(0)) << 1;
        if let Some(n) = next.get_mut(len) {
            *n = code;
        }
    }
    let mut codes = [(0u32, 0u8); 256];
    for (s, &l) in lengths.iter().enumerate() {
        if l == 0 {
            continue;
        }
        if let (Some(n), Some(c)) = (next.get_mut(usize::from(l)), codes.get_mut(s)) {
            *c = (*n, l);
            *n += 1;
        }
    }
    codes
}

/// Encodes `data` (at most 4 GiB).
// The encoder runs in build.rs (and the tests); the library only decodes.
#[cfg_attr(not(test), allow(dead_code))]
pub fn encode(data: &[u8]) -> Vec<u8> {
    let mut counts = [0u64; 256];
    for &b in data {
        if let Some(c) = counts.get_mut(usize::from(b)) {
            *c += 1;
        }
    }
    let lengths = code_lengths(&counts);
    let codes = canonical(&lengths);
    let mut out = Vec::with_capacity(HEADER + data.len() / 2);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&u32::try_from(data.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(&lengths);
    let (mut acc, mut bits) = (0u64, 0u32);
    for &b in data {
        let (code, len) = codes.get(usize::from(b)).copied().unwrap_or((0, 0));
        acc = (acc << len) | u64::from(code);
        bits += u32::from(len);
        while bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
        acc &= (1u64 << bits) - 1;
    }
    if bits > 0 {
        out.push((acc << (8 - bits)) as u8);
    }
    out
}

/// Decodes what [`encode`] wrote; `None` for anything else (a wrong magic, lengths that are not a
/// prefix code, a stream that ends early).
pub fn decode(packed: &[u8]) -> Option<Vec<u8>> {
    if packed.get(..4)? != MAGIC {
        return None;
    }
    let n = u32::from_le_bytes(packed.get(4..8)?.try_into().ok()?) as usize;
    let lengths = packed.get(8..HEADER)?;
    // Symbols by (length, value), and how many codes of each length: a canonical decoding table.
    let mut count = [0u32; MAX_LEN + 1];
    let mut symbols: Vec<(u8, u8)> = Vec::with_capacity(256);
    for (s, &l) in lengths.iter().enumerate() {
        if l == 0 {
            continue;
        }
        if usize::from(l) > MAX_LEN {
            return None;
        }
        *count.get_mut(usize::from(l))? += 1;
        symbols.push((l, u8::try_from(s).ok()?));
    }
    symbols.sort_unstable();
    let symbols: Vec<u8> = symbols.into_iter().map(|(_, s)| s).collect();
    let bits = packed.get(HEADER..)?;
    let mut out = Vec::with_capacity(n);
    let mut pos = 0usize;
    for _ in 0..n {
        // DEFLATE's canonical decode, one bit at a time: `first` is the first code of this length.
        let (mut code, mut first, mut index) = (0u64, 0u64, 0u64);
        let mut found = None;
        for len in 1..=MAX_LEN {
            let byte = *bits.get(pos / 8)?;
            code |= u64::from((byte >> (7 - pos % 8)) & 1);
            pos += 1;
            let c = u64::from(*count.get(len)?);
            if code.wrapping_sub(first) < c {
                found = symbols.get(usize::try_from(index + code - first).ok()?).copied();
                break;
            }
            index += c;
            first = (first + c) << 1;
            code <<= 1;
        }
        out.push(found?);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn round_trips() {
        let skewed: Vec<u8> = (0..5000u32)
            .map(|i| match i % 17 {
                0..=9 => 0,
                10..=13 => 3,
                14 => 250,
                15 => (i % 251) as u8,
                _ => 128,
            })
            .collect();
        let cases: [&[u8]; 5] = [b"", b"a", b"aaaaaaa", b"abracadabra", &skewed];
        for data in cases {
            let packed = encode(data);
            assert_eq!(decode(&packed).as_deref(), Some(data), "{}", data.len());
        }
        assert!(encode(&skewed).len() < HEADER + skewed.len() / 2);
        // Every byte value once: an 8-bit code for each.
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(decode(&encode(&all)), Some(all));
    }

    #[test]
    fn refuses_what_it_did_not_write() {
        assert_eq!(decode(b"nope"), None);
        let mut packed = encode(b"abracadabra");
        packed.truncate(packed.len() - 1);
        assert_eq!(decode(&packed), None, "ends early");
        let mut bad = encode(b"ab");
        bad[8 + usize::from(b'a')] = 40;
        assert_eq!(decode(&bad), None, "a length past the limit");
    }
}
