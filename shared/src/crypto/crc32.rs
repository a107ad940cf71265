//! CRC-32 as IEEE 802.3, zlib and PNG compute it (reflected polynomial `0xEDB88320`, initial value and
//! final XOR `0xFFFFFFFF`): the checksum of AWS event-stream preludes and messages.
//!
//! Table-driven, one byte at a time; the table is built at compile time.

const POLY: u32 = 0xEDB8_8320;

// Evaluated at compile time: an out-of-bounds index would fail the build, not panic at run time.
#[allow(clippy::indexing_slicing)]
const TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { POLY ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// Incremental CRC-32: `update` with pieces in order, then `finish`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crc32(u32);

impl Default for Crc32 {
    fn default() -> Self {
        Self::new()
    }
}

impl Crc32 {
    /// A checksum over nothing yet.
    pub const fn new() -> Self {
        Crc32(0xFFFF_FFFF)
    }

    /// Adds `data` after everything given so far.
    pub fn update(&mut self, data: &[u8]) {
        let mut c = self.0;
        for &b in data {
            // The index is masked to 0..256, the table's length.
            #[allow(clippy::indexing_slicing)]
            let t = TABLE[((c ^ u32::from(b)) & 0xFF) as usize];
            c = t ^ (c >> 8);
        }
        self.0 = c;
    }

    /// The checksum of everything given.
    pub const fn finish(self) -> u32 {
        self.0 ^ 0xFFFF_FFFF
    }
}

/// CRC-32 of `data` in one call.
pub fn crc32(data: &[u8]) -> u32 {
    let mut c = Crc32::new();
    c.update(data);
    c.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn known_answers() {
        let cases: [(&[u8], u32); 6] = [
            (b"", 0),
            // The "check" value of the CRC-32/ISO-HDLC catalogue entry.
            (b"123456789", 0xCBF4_3926),
            (b"a", 0xE8B7_BE43),
            (b"The quick brown fox jumps over the lazy dog", 0x414F_A339),
            // aws-c-event-stream's smallest message (tests/message_deserializer_test.c): the prelude
            // of a 16-byte message with no headers, then the whole 12-byte prelude.
            (&[0, 0, 0, 0x10, 0, 0, 0, 0], 0x05C2_48EB),
            (&[0, 0, 0, 0x10, 0, 0, 0, 0, 0x05, 0xC2, 0x48, 0xEB], 0x7D98_C8FF),
        ];
        for (data, want) in cases {
            assert_eq!(crc32(data), want, "{data:?}");
        }
    }

    #[test]
    fn incremental_matches_one_shot() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
        for split in [0, 1, 3, 499, 999, 1000] {
            let (a, b) = data.split_at(split);
            let mut c = Crc32::new();
            c.update(a);
            c.update(b);
            assert_eq!(c.finish(), crc32(&data), "split at {split}");
        }
        assert_ne!(crc32(b"abc"), crc32(b"abd"));
    }
}
