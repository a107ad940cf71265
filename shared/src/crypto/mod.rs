//! Cryptographic building blocks, written in-crate to keep the .wasm small and dependency-free:
//!
//! - [`sha256`](mod@sha256): SHA-256 and HMAC-SHA256 (FIPS 180-4, RFC 2104), for PII hashing, SigV4 and JWT;
//! - [`crc32`](mod@crc32): CRC-32 (IEEE 802.3), the checksum of AWS event-stream frames;
//! - [`encoding`]: base64 (standard and URL-safe) and hex, both ways;
//! - [`sigv4`]: AWS Signature Version 4 request signing (Bedrock);
//! - [`ct_eq`]: constant-time comparison, for MACs.
//!
//! Each is checked against its published test vectors (FIPS, RFC 4231, RFC 4648, the AWS SigV4 suite).

pub mod crc32;
pub mod encoding;
pub mod sha256;
pub mod sigv4;

pub use crc32::{crc32, Crc32};
pub use encoding::{base64_decode, base64_encode, base64url_encode, hex, hex_decode};
pub use sha256::{hmac_sha256, sha256, Sha256};

/// True when `a` and `b` are equal, in time that depends on their lengths only, never on where they
/// first differ, so a MAC check leaks nothing about the expected value.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // Keep the optimiser from turning the fold into an early-exit comparison.
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn constant_time_equality() {
        assert!(ct_eq(b"", b""));
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"bbc"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(!ct_eq(b"", b"a"));
    }
}
