//! XXH64, streamed: the checksum of a zstd frame is the low 32 bits of the XXH64 (seed 0)
//! of its decoded content (RFC 8878, section 3.1.1). Written from the algorithm's
//! description; tested against the checksums real zstd encoders write (`zstd` tests).

const P1: u64 = 0x9E37_79B1_85EB_CA87;
const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const P3: u64 = 0x1656_67B1_9E37_79F9;
const P4: u64 = 0x85EB_CA77_C2B2_AE63;
const P5: u64 = 0x27D4_EB2F_1656_67C5;

fn round(acc: u64, lane: u64) -> u64 {
    acc.wrapping_add(lane.wrapping_mul(P2))
        .rotate_left(31)
        .wrapping_mul(P1)
}

fn merge(acc: u64, lane: u64) -> u64 {
    (acc ^ round(0, lane)).wrapping_mul(P1).wrapping_add(P4)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        w.copy_from_slice(s);
    }
    u64::from_le_bytes(w)
}

/// A running XXH64 with seed 0.
#[derive(Debug, Clone)]
pub(crate) struct Xxh64 {
    acc: [u64; 4],
    /// The bytes of an unfinished 32-byte stripe.
    stripe: [u8; 32],
    held: usize,
    len: u64,
}

impl Xxh64 {
    pub(crate) fn new() -> Self {
        Xxh64 {
            acc: [P1.wrapping_add(P2), P2, 0, 0u64.wrapping_sub(P1)],
            stripe: [0; 32],
            held: 0,
            len: 0,
        }
    }

    fn stripe(acc: &mut [u64; 4], s: &[u8]) {
        for (i, a) in acc.iter_mut().enumerate() {
            *a = round(*a, u64_at(s, i * 8));
        }
    }

    pub(crate) fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if self.held > 0 {
            let take = (32 - self.held).min(data.len());
            self.stripe[self.held..self.held + take].copy_from_slice(&data[..take]);
            self.held += take;
            data = &data[take..];
            if self.held < 32 {
                return;
            }
            let stripe = self.stripe;
            Self::stripe(&mut self.acc, &stripe);
            self.held = 0;
        }
        let mut stripes = data.chunks_exact(32);
        for s in &mut stripes {
            Self::stripe(&mut self.acc, s);
        }
        let rest = stripes.remainder();
        self.stripe[..rest.len()].copy_from_slice(rest);
        self.held = rest.len();
    }

    pub(crate) fn digest(&self) -> u64 {
        let [a1, a2, a3, a4] = self.acc;
        let mut h = if self.len >= 32 {
            let h = a1
                .rotate_left(1)
                .wrapping_add(a2.rotate_left(7))
                .wrapping_add(a3.rotate_left(12))
                .wrapping_add(a4.rotate_left(18));
            merge(merge(merge(merge(h, a1), a2), a3), a4)
        } else {
            P5
        };
        h = h.wrapping_add(self.len);
        let mut rest = &self.stripe[..self.held];
        while rest.len() >= 8 {
            h ^= round(0, u64_at(rest, 0));
            h = h.rotate_left(27).wrapping_mul(P1).wrapping_add(P4);
            rest = &rest[8..];
        }
        if rest.len() >= 4 {
            let w = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
            h ^= u64::from(w).wrapping_mul(P1);
            h = h.rotate_left(23).wrapping_mul(P2).wrapping_add(P3);
            rest = &rest[4..];
        }
        for &b in rest {
            h ^= u64::from(b).wrapping_mul(P5);
            h = h.rotate_left(11).wrapping_mul(P1);
        }
        h ^= h >> 33;
        h = h.wrapping_mul(P2);
        h ^= h >> 29;
        h = h.wrapping_mul(P3);
        h ^ (h >> 32)
    }
}

#[cfg(test)]
mod tests {
    use super::Xxh64;

    fn hash(data: &[u8]) -> u64 {
        let mut h = Xxh64::new();
        h.update(data);
        h.digest()
    }

    #[test]
    fn known_values_and_any_chunking() {
        // The empty input's XXH64 (seed 0), as published with the algorithm.
        assert_eq!(hash(b""), 0xEF46_DB37_51D8_E999);
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 31 % 251) as u8).collect();
        for len in [1, 3, 4, 7, 8, 31, 32, 33, 64, 100, 1000] {
            let whole = hash(&data[..len]);
            for step in [1, 5, 13, 32] {
                let mut h = Xxh64::new();
                data[..len].chunks(step).for_each(|c| h.update(c));
                assert_eq!(h.digest(), whole, "len {len} step {step}");
            }
        }
    }
}
