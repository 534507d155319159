//! Word-at-a-time byte search ("SIMD within a register"), safe and portable.
//!
//! # Why
//!
//! Profiles of the scanner on LLM streams showed the time going to two things: stepping
//! byte by byte through skipped subtrees (`"choices":[{"index":0,"delta":{...}}]`), and
//! the fixed cost of a `memchr2` call on the many *short* strings of an event (keys,
//! ids, `"default"`). Both want "where is the next interesting byte", over runs that are
//! usually shorter than 32 bytes, where a vectorised `memchr` has not yet paid for its
//! setup.
//!
//! Eight bytes are loaded as one `u64` and compared against a byte repeated eight times:
//! `x ^ rep(c)` has a zero byte exactly where `x` holds `c`, and the classic
//! `(v - 0x01…01) & !v & 0x80…80` sets the high bit of each zero byte. That formula can
//! also flag a byte *above* a true zero (the borrow propagates), never below one, so the
//! lowest flagged byte is always a true match, which is all a "find first" needs. Words are
//! read little-endian, so the lowest flagged byte is the first in memory on every host
//! (wasm32 included), and no `unsafe` is needed: the compiler turns
//! `u64::from_le_bytes(s[i..i + 8].try_into())` into one unaligned load.
//!
//! Long runs (string contents in big bodies) still go to `memchr`/`memchr2`, which use the
//! CPU's vector unit: [`find_quote`] and [`find_quote_or_backslash`] check the first
//! [`SHORT`] bytes with words, then hand over. A string that is skipped rather than decoded
//! is searched for quotes only ([`string_end`]): escapes never stop that search, and a
//! quote is told escaped by the parity of the backslash run before it.

use memchr::{memchr, memchr2};

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Bytes checked word by word before [`find_quote_or_backslash`] calls `memchr2`.
pub(crate) const SHORT: usize = 32;

#[inline(always)]
pub(crate) const fn rep(b: u8) -> u64 {
    LO * b as u64
}

/// High bit set in each byte of `v` that is zero (and possibly in bytes above one).
#[inline(always)]
pub(crate) const fn zeros(v: u64) -> u64 {
    v.wrapping_sub(LO) & !v & HI
}

#[inline(always)]
pub(crate) fn word(s: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&s[i..i + 8]);
    u64::from_le_bytes(w)
}

#[inline(always)]
pub(crate) fn first(mask: u64) -> usize {
    (mask.trailing_zeros() / 8) as usize
}

/// Flags `"` and `\` (the first flag is the first of them; see the module docs).
#[inline(always)]
pub(crate) fn quote_or_backslash(w: u64) -> u64 {
    zeros(w ^ rep(b'"')) | zeros(w ^ rep(b'\\'))
}

/// Flags `"`, `{`, `}`, `[`, `]`. Setting bit 5 maps `[` to `{` and `]` to `}` and no
/// other byte onto either.
#[inline(always)]
fn structural(w: u64) -> u64 {
    let folded = w | rep(0x20);
    zeros(w ^ rep(b'"')) | zeros(folded ^ rep(b'{')) | zeros(folded ^ rep(b'}'))
}

/// Index of the first `"` or `\` in `s`.
#[inline]
pub(crate) fn find_quote_or_backslash(s: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i + 8 <= s.len() {
        if i >= SHORT {
            return memchr2(b'"', b'\\', &s[i..]).map(|p| i + p);
        }
        let m = quote_or_backslash(word(s, i));
        if m != 0 {
            return Some(i + first(m));
        }
        i += 8;
    }
    s[i..]
        .iter()
        .position(|&b| b == b'"' || b == b'\\')
        .map(|p| i + p)
}

/// Index of the first `\n` or `\r` in `s` (word by word for [`SHORT`] bytes, then
/// `memchr2`): SSE `event:` lines and short data lines end before `memchr2`'s setup pays.
#[inline]
pub(crate) fn find_line_end(s: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i + 8 <= s.len() {
        if i >= SHORT {
            return memchr2(b'\n', b'\r', &s[i..]).map(|p| i + p);
        }
        let w = word(s, i);
        let m = zeros(w ^ rep(b'\n')) | zeros(w ^ rep(b'\r'));
        if m != 0 {
            return Some(i + first(m));
        }
        i += 8;
    }
    s[i..]
        .iter()
        .position(|&b| b == b'\n' || b == b'\r')
        .map(|p| i + p)
}

/// Index of the first `"` in `s` (word by word for [`SHORT`] bytes, then `memchr`).
#[inline]
pub(crate) fn find_quote(s: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i + 8 <= s.len() {
        if i >= SHORT {
            return memchr(b'"', &s[i..]).map(|p| i + p);
        }
        let m = zeros(word(s, i) ^ rep(b'"'));
        if m != 0 {
            return Some(i + first(m));
        }
        i += 8;
    }
    s[i..].iter().position(|&b| b == b'"').map(|p| i + p)
}

/// The end of a string that is skipped, not decoded: `input[from..]` is string content
/// (the byte before `from` is the opening quote or an escaped byte).
///
/// Only quotes are searched for; a quote preceded by an odd run of backslashes is
/// escaped and the search goes on. Escapes are thus never stopped at (`\n` costs nothing
/// in a long text), where a `"`-or-`\` search would stop at each. Linear: a backslash
/// run is counted once, back from the quote that ends it.
///
/// `Ok(q)`: the closing quote is at `q`. `Err(escaped)`: the input ends inside the
/// string; `escaped` says whether its last byte is an unpaired backslash, so the next
/// chunk's first byte is escaped.
#[inline(always)]
pub(crate) fn string_end(input: &[u8], from: usize) -> Result<usize, bool> {
    let backslashes = |end: usize| {
        input[from..end]
            .iter()
            .rev()
            .take_while(|&&b| b == b'\\')
            .count()
    };
    let mut i = from;
    while let Some(p) = find_quote(&input[i..]) {
        let q = i + p;
        // Almost every quote follows a plain byte: settle that without counting.
        if q == from || input[q - 1] != b'\\' || backslashes(q) % 2 == 0 {
            return Ok(q);
        }
        i = q + 1;
    }
    Err(backslashes(input.len()) % 2 == 1)
}

/// Index of the first `"`, `{`, `}`, `[` or `]` in `s`: the bytes that matter in a
/// skipped subtree outside strings.
#[inline]
pub(crate) fn find_structural(s: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i + 8 <= s.len() {
        let m = structural(word(s, i));
        if m != 0 {
            return Some(i + first(m));
        }
        i += 8;
    }
    s[i..]
        .iter()
        .position(|&b| matches!(b, b'"' | b'{' | b'}' | b'[' | b']'))
        .map(|p| i + p)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference: decode escapes byte by byte.
    fn naive_end(input: &[u8], from: usize) -> Result<usize, bool> {
        let mut esc = false;
        for (i, &b) in input.iter().enumerate().skip(from) {
            if esc {
                esc = false;
            } else if b == b'\\' {
                esc = true;
            } else if b == b'"' {
                return Ok(i);
            }
        }
        Err(esc)
    }

    #[test]
    fn string_end_agrees_with_decoding() {
        // Every string over the alphabet {a, \, "} up to length 9, from every start.
        let alphabet = [b'a', b'\\', b'"'];
        for len in 0..=9u32 {
            for code in 0..3usize.pow(len) {
                let mut c = code;
                let s: Vec<u8> = (0..len)
                    .map(|_| {
                        let b = alphabet[c % 3];
                        c /= 3;
                        b
                    })
                    .collect();
                for from in 0..=s.len() {
                    assert_eq!(
                        string_end(&s, from),
                        naive_end(&s, from),
                        "{s:?} from {from}"
                    );
                }
            }
        }
        // Long runs reach the memchr path.
        let mut s = vec![b'x'; 100];
        s.extend_from_slice(b"\\\\\\\"\"x\\\"");
        assert_eq!(string_end(&s, 0), naive_end(&s, 0));
        assert_eq!(
            string_end(&s[..s.len() - 1], 3),
            naive_end(&s[..s.len() - 1], 3)
        );
    }

    fn naive(s: &[u8], set: &[u8]) -> Option<usize> {
        s.iter().position(|b| set.contains(b))
    }

    #[test]
    fn agrees_with_naive_on_every_byte_and_position() {
        // Every byte value at every position of buffers of several lengths, over a
        // background that exercises borrows (0x00, 0x01, 0x80, 0xff neighbours).
        for len in [0usize, 1, 7, 8, 9, 15, 16, 31, 32, 33, 40, 64, 100] {
            for bg in [b'a', 0x00, 0x01, 0x21, 0x5c ^ 1, 0x7f, 0x80, 0xff] {
                let base = vec![bg; len];
                let check = |s: &[u8]| {
                    assert_eq!(find_quote(s), naive(s, b"\""), "{s:?}");
                    assert_eq!(find_quote_or_backslash(s), naive(s, b"\"\\"), "{s:?}");
                    assert_eq!(find_structural(s), naive(s, b"\"{}[]"), "{s:?}");
                    assert_eq!(find_line_end(s), naive(s, b"\n\r"), "{s:?}");
                };
                check(&base);
                for at in 0..len {
                    for b in 0..=255u8 {
                        let mut s = base.clone();
                        s[at] = b;
                        check(&s);
                        if at + 1 < len {
                            s[at + 1] = b'"';
                            check(&s);
                        }
                    }
                }
            }
        }
    }
}
