//! Small, dependency-free randomness and hashing for routing decisions.
//!
//! Weighted splits need a fast uniform draw and sticky routing needs a stable hash; neither needs
//! cryptographic strength, and proxy-wasm offers no random source, so the driver seeds [`Rng`] from time.

/// xorshift64*: fast, good enough for traffic splits.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        // Mix the seed so close seeds (consecutive timestamps) diverge at once; never zero.
        Rng(splitmix(seed) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A uniform draw in `0..bound` (`bound` > 0; 0 gives 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 {
            return 0;
        }
        // Multiply-shift keeps the draw unbiased enough for weights up to 2^32.
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// 64-bit FNV-1a: the one FNV in the codebase. As a [`std::hash::Hasher`] it serves maps keyed by
/// short words (the injection dictionary), where SipHash's setup dominates; [`stable_hash`] mixes its
/// result for routing and cache keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for Fnv1a {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = self.0;
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01B3);
        }
        self.0 = h;
    }
}

/// A stable 64-bit hash (FNV-1a, then mixed) for sticky routing and cache keys: same input, same
/// value, on every worker and every host.
pub fn stable_hash(data: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = Fnv1a::default();
    h.write(data);
    splitmix(h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    // On wasm32 every unit test runs under wasm-bindgen-test (Node) too: `make wasm-test`.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn below_is_roughly_uniform() {
        let mut rng = Rng::new(42);
        let mut counts = [0u32; 10];
        for _ in 0..100_000 {
            let i = rng.below(10) as usize;
            if let Some(c) = counts.get_mut(i) {
                *c += 1;
            }
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{c}");
        }
    }

    #[test]
    fn fnv1a_known_values() {
        use std::hash::Hasher;
        // Reference values of 64-bit FNV-1a.
        for (input, want) in [
            (&b""[..], 0xcbf2_9ce4_8422_2325u64),
            (b"a", 0xaf63_dc4c_8601_ec8c),
            (b"foobar", 0x8594_4171_f739_67e8),
        ] {
            let mut h = Fnv1a::default();
            h.write(input);
            assert_eq!(h.finish(), want, "{input:?}");
        }
        // Writes in pieces hash like one write.
        let mut h = Fnv1a::default();
        h.write(b"foo");
        h.write(b"bar");
        assert_eq!(h.finish(), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn hash_is_stable_and_spreads() {
        assert_eq!(stable_hash(b"alice"), stable_hash(b"alice"));
        assert_ne!(stable_hash(b"alice"), stable_hash(b"bob"));
        let buckets: std::collections::HashSet<u64> = (0..100)
            .map(|i| stable_hash(format!("user-{i}").as_bytes()) % 4)
            .collect();
        assert_eq!(buckets.len(), 4);
    }
}
