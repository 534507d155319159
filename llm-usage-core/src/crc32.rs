//! CRC-32 (IEEE 802.3: reflected, polynomial `0xEDB88320`) of gzip members
//! (`inflate.rs`) and AWS event-stream messages (`framing/eventstream.rs`).
//!
//! Natively this is `crc32fast` (SIMD or slicing-by-16). In wasm32 `crc32fast` has no SIMD
//! path and falls back to slicing-by-16, whose 16 KB table is 5% of the proxy-wasm filter
//! against its 300 KiB budget (issue 6); there [`Hasher`] is [`Small`], slicing-by-4 through
//! a 4 KB table built at compile time: in an interpreter (wasmi) about as fast.

#[cfg(not(target_arch = "wasm32"))]
pub(crate) use crc32fast::{hash, Hasher};

#[cfg(target_arch = "wasm32")]
pub(crate) use Small as Hasher;

/// The CRC of `bytes`.
#[cfg(target_arch = "wasm32")]
pub(crate) fn hash(bytes: &[u8]) -> u32 {
    let mut h = Small::new();
    h.update(bytes);
    h.finalize()
}

/// The reflected CRC-32 polynomial.
const POLY: u32 = 0xEDB8_8320;

/// `TABLE[0][b]`: the CRC of byte value `b`; `TABLE[k][b]`: of `b` followed by `k` zero
/// bytes (slicing-by-4), built at compile time.
static TABLE: [[u32; 256]; 4] = table();

const fn table() -> [[u32; 256]; 4] {
    let mut table = [[0u32; 256]; 4];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ POLY
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[0][i] = crc;
        i += 1;
    }
    let mut k = 1;
    while k < 4 {
        let mut i = 0;
        while i < 256 {
            let prev = table[k - 1][i];
            table[k][i] = (prev >> 8) ^ table[0][(prev & 0xFF) as usize];
            i += 1;
        }
        k += 1;
    }
    table
}

/// A running CRC-32 with the same interface as `crc32fast::Hasher` (the part used here).
#[derive(Debug, Clone)]
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))] // only tested natively
pub(crate) struct Small {
    /// The CRC register, pre-inverted.
    state: u32,
}

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
impl Small {
    /// The CRC of no bytes.
    pub(crate) fn new() -> Small {
        Small { state: !0 }
    }

    /// Adds `bytes`, four at a time.
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        let mut crc = self.state;
        let mut words = bytes.chunks_exact(4);
        for w in &mut words {
            let x = crc ^ u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
            crc = TABLE[3][(x & 0xFF) as usize]
                ^ TABLE[2][((x >> 8) & 0xFF) as usize]
                ^ TABLE[1][((x >> 16) & 0xFF) as usize]
                ^ TABLE[0][(x >> 24) as usize];
        }
        for &b in words.remainder() {
            crc = TABLE[0][usize::from((crc as u8) ^ b)] ^ (crc >> 8);
        }
        self.state = crc;
    }

    /// The CRC of the bytes added.
    pub(crate) fn finalize(self) -> u32 {
        !self.state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(bytes: &[u8]) -> u32 {
        let mut h = Small::new();
        h.update(bytes);
        h.finalize()
    }

    #[test]
    fn known_vectors() {
        assert_eq!(small(b""), 0);
        assert_eq!(small(b"123456789"), 0xCBF4_3926);
        assert_eq!(small(b"a"), 0xE8B7_BE43);
        assert_eq!(
            small(b"The quick brown fox jumps over the lazy dog"),
            0x414F_A339
        );
        assert_eq!(TABLE[0][1], 0x7707_3096);
        assert_eq!(TABLE[0][255], 0x2D02_EF8D);
    }

    #[test]
    fn matches_crc32fast_on_random_input_in_random_pieces() {
        let mut state = 0x2545_F491_4F6C_DD1D_u64;
        let mut rand = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..300 {
            let len = (rand() % if round % 10 == 0 { 70_000 } else { 300 }) as usize;
            let data: Vec<u8> = (0..len).map(|_| rand() as u8).collect();
            assert_eq!(small(&data), crc32fast::hash(&data), "len {len}");
            // Fed in pieces, as inflate hands over its output.
            let mut ours = Small::new();
            let mut theirs = crc32fast::Hasher::new();
            let mut rest = &data[..];
            while !rest.is_empty() {
                let n = (rand() as usize % 40).min(rest.len());
                ours.update(&rest[..n]);
                theirs.update(&rest[..n]);
                rest = &rest[n..];
            }
            assert_eq!(ours.finalize(), theirs.finalize());
        }
    }
}
