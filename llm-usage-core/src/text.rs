//! Generated text, counted as it passes: what an estimate of tokens is made from.
//!
//! The dialect tables mark the strings that hold generated text (content, reasoning and
//! tool-argument deltas). An event that carries some is a *content* event: the first one
//! is when a client sees its first token (time to first token), which Anthropic's
//! `message_start` or a role-only OpenAI chunk are not. And when a stream carries no usage
//! (an OpenAI-compatible stream without `stream_options.include_usage`, a stream cut
//! before its final usage event), the amount of text is what an estimate of the tokens
//! can be made from.
//!
//! The text itself is never kept: the scanner hands its decoded bytes over in pieces, and
//! [`TextStats`] counts a few classes of characters, in fixed memory whatever the length.
//! With AVX2, and on wasm32 eight bytes at a time, the exchange's sink takes the strings'
//! raw JSON instead and counts them without decoding (`TextStats::add_json`): the same
//! counts, in one pass.
//!
//! Classes, by UTF-8 lead byte (a piece may end inside a character: continuation bytes
//! are never counted, so the split does not matter):
//! * ASCII letters and digits, and the words they form (runs of them; any other byte
//!   ends a word; a word may span pieces, so whether the last byte was one is kept);
//! * ASCII punctuation and symbols, and ASCII whitespace;
//! * 2-byte characters (Latin with diacritics, Greek, Cyrillic, Arabic, Hebrew ...);
//! * 3-byte characters (CJK, kana, Hangul, Devanagari, Thai ...);
//! * 4-byte characters (emoji, rare CJK).

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
use crate::index::Avx2;
use crate::swar;

/// How [`TextStats::add`] counts on this CPU: asked once, when a body's sink is made
/// (`index::Avx2`, the CPU's answer, is the only way to the AVX2 path).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counting {
    /// Set only by [`Counting::detect`], and only where the CPU also has `popcnt` (every
    /// CPU with AVX2 has; the AVX2 paths count word starts with it).
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    avx2: Option<Avx2>,
}

impl Counting {
    /// Whether a sink should offer [`TextStats::add_json`] raw strings on this CPU: with
    /// AVX2, and where there is no SIMD counting to fall back on (wasm32: eight bytes at a
    /// time; for the default wasm filter that took a third off a megabyte request). Not on
    /// x86-64 without AVX2: there `memchr2` and the SSE2 count of the decoded runs take
    /// fewer instructions than reading the raw JSON a word at a time (benches/README.md,
    /// issue 20 step 15), and a sink offered raw strings it does not take would only cut
    /// the scanner's gathered pieces short.
    pub(crate) fn counts_raw(self) -> bool {
        #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
        return self.avx2.is_some();
        #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
        true
    }

    /// The widest way this CPU has.
    pub(crate) fn detect() -> Counting {
        Counting {
            #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
            avx2: Avx2::detect().filter(|_| std::is_x86_feature_detected!("popcnt")),
        }
    }
}

/// Counts of the characters of some text; see the module docs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TextStats {
    /// Bytes of text (decoded UTF-8).
    pub bytes: u64,
    /// ASCII letters and digits.
    pub alnum: u64,
    /// Runs of ASCII letters and digits.
    pub words: u64,
    /// ASCII punctuation and symbols.
    pub punct: u64,
    /// ASCII whitespace and control characters.
    pub space: u64,
    /// Characters of two UTF-8 bytes.
    pub two_byte: u64,
    /// Characters of three UTF-8 bytes.
    pub three_byte: u64,
    /// Characters of four UTF-8 bytes.
    pub four_byte: u64,
    /// Strings (pieces of generated text: one per delta).
    pub strings: u64,
    /// Whether the last byte counted was an ASCII letter or digit (a word may go on).
    in_word: bool,
}

/// Byte classes.
const ALNUM: u8 = 0;
const PUNCT: u8 = 1;
const SPACE: u8 = 2;
const CONT: u8 = 3;
const LEAD2: u8 = 4;
const LEAD3: u8 = 5;
const LEAD4: u8 = 6;

const fn class_of(b: u8) -> u8 {
    match b {
        b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z' => ALNUM,
        0..=b' ' | 0x7f => SPACE,
        0x21..=0x7e => PUNCT,
        0x80..=0xbf => CONT,
        0xc0..=0xdf => LEAD2,
        0xe0..=0xef => LEAD3,
        _ => LEAD4,
    }
}

static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = class_of(i as u8);
        i += 1;
    }
    t
};

/// The classes of a 32-byte AVX2 vector `x`, as byte masks: letters and digits, ASCII,
/// ASCII whitespace and controls, and bytes from 0xc0, 0xe0 and 0xf0 (UTF-8 leads of two
/// bytes or more, three or more, four). Counted per lane, [`avx2_flush`] turns them into
/// the counts: punctuation is the ASCII that is neither of the others, a 2-byte lead one
/// from 0xc0 that is not from 0xe0, and so on. Each range is one comparison: digits and
/// letters (case folded by `| 0x20`) are shifted to the bottom of the signed range, the
/// others compared unsigned with `min`/`max`. For functions with AVX2 enabled (a macro,
/// not a function: a call would not be inlined into them, nor a closure inherit their
/// AVX2).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
macro_rules! avx2_classes {
    ($x:expr) => {{
        use core::arch::x86_64::*;
        let x = $x;
        // `x + (0x80 - lo)` puts `lo..lo + n` at -128..-128 + n (signed).
        let digit = _mm256_cmpgt_epi8(
            _mm256_set1_epi8(-128 + 10),
            _mm256_add_epi8(x, _mm256_set1_epi8(0x80u8.wrapping_sub(0x30) as i8)),
        );
        let letter = _mm256_cmpgt_epi8(
            _mm256_set1_epi8(-128 + 26),
            _mm256_add_epi8(
                _mm256_or_si256(x, _mm256_set1_epi8(0x20)),
                _mm256_set1_epi8(0x80u8.wrapping_sub(0x61) as i8),
            ),
        );
        let ascii = _mm256_cmpgt_epi8(x, _mm256_set1_epi8(-1));
        let space = _mm256_or_si256(
            _mm256_cmpeq_epi8(_mm256_min_epu8(x, _mm256_set1_epi8(0x20)), x),
            _mm256_cmpeq_epi8(x, _mm256_set1_epi8(0x7f)),
        );
        // From 0xc0, 0xe0, 0xf0: `max(x, lo) == x`.
        let lead = _mm256_cmpeq_epi8(_mm256_max_epu8(x, _mm256_set1_epi8(-64)), x);
        let lead3 = _mm256_cmpeq_epi8(_mm256_max_epu8(x, _mm256_set1_epi8(-32)), x);
        let lead4 = _mm256_cmpeq_epi8(_mm256_max_epu8(x, _mm256_set1_epi8(-16)), x);
        [
            _mm256_or_si256(digit, letter),
            ascii,
            space,
            lead,
            lead3,
            lead4,
        ]
    }};
}

/// Adds six per-byte-lane AVX2 counters (each lane at most 255, in the order of
/// [`avx2_classes`]) to the totals of `$stats`.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
macro_rules! avx2_flush {
    ($stats:expr, $acc:expr, $zero:expr) => {{
        use core::arch::x86_64::*;
        let mut c = [0u64; 6];
        for (c, v) in c.iter_mut().zip($acc) {
            let s = _mm256_sad_epu8(v, $zero);
            let s = _mm_add_epi64(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s));
            *c = (_mm_cvtsi128_si64(s) + _mm_cvtsi128_si64(_mm_unpackhi_epi64(s, s))) as u64;
        }
        let [alnum, ascii, space, lead, lead3, lead4] = c;
        $stats.add_counts([
            alnum,
            0,
            ascii - alnum - space,
            space,
            lead - lead3,
            lead3 - lead4,
            lead4,
        ]);
    }};
}

/// Per-byte-lane counts of the word-at-a-time readings, by class, and the words they
/// hold (at most 255: a lane counts to 255).
#[derive(Default)]
struct Lanes {
    counts: [u64; 7],
    words: u32,
}
impl TextStats {
    /// A new string of generated text starts (a word does not run across strings).
    pub fn start_string(&mut self) {
        self.strings += 1;
        self.in_word = false;
    }

    /// Counts a piece of decoded text: eight bytes at a time (each class a mask of the
    /// bytes' high bits, summed per byte lane and added up every 255 words: no
    /// `count_ones`, which the baseline x86-64 and wasm32 targets lack as an
    /// instruction), the tail byte by byte.
    pub fn add(&mut self, text: &[u8]) {
        self.add_with(text, Counting::detect());
    }

    /// [`add`](Self::add), the CPU asked once (by the body's sink) rather than per piece.
    pub(crate) fn add_with(&mut self, text: &[u8], how: Counting) {
        let _ = how;
        self.bytes += text.len() as u64;
        // A stream's deltas are a token or two: below one vector block, setting up the
        // counters costs more than the bytes.
        if text.len() < 16 {
            for &b in text {
                self.add_byte(b);
            }
            return;
        }
        self.add_blocks(text, how);
    }

    /// [`add_with`](Self::add_with) of sixteen bytes or more. Out of line: the counters
    /// of the long path take registers that every call would otherwise save and restore,
    /// short pieces (most of a stream's deltas) included.
    #[inline(never)]
    fn add_blocks(&mut self, text: &[u8], how: Counting) {
        let _ = how;
        // x86-64: thirty-two bytes at a time with AVX2 where the CPU has it, sixteen with
        // SSE2 (part of the baseline, so no CPU check), then the eight-byte words, then
        // the tail.
        #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
        let text = {
            let mut text = text;
            if text.len() >= 32 {
                if let Some(avx2) = how.avx2 {
                    let blocks = text.len() / 32 * 32;
                    self.add_avx2(&text[..blocks], avx2);
                    text = &text[blocks..];
                }
            }
            let blocks = text.len() / 16 * 16;
            self.add_sse2(&text[..blocks]);
            &text[blocks..]
        };
        let mut words = text.chunks_exact(8);
        let mut lanes = Lanes::default();
        for w in &mut words {
            let mut b = [0u8; 8];
            b.copy_from_slice(w);
            let masks = self.classify(u64::from_le_bytes(b));
            self.add_word_masks(&mut lanes, masks, u64::MAX);
        }
        self.add_lanes_left(&lanes);
        for &b in words.remainder() {
            self.add_byte(b);
        }
    }

    /// Counts whole 16-byte blocks (`text.len()` a multiple of 16) with SSE2: each class a
    /// byte mask from signed comparisons (bytes from 0x80 are negative), subtracted into
    /// per-lane counters (a mask byte is -1), summed with `psadbw` every 255 blocks. About
    /// two instructions a byte against seven for the eight-byte words: a megabyte prompt's
    /// text is counted for its input estimate (benches/README.md, issue 20).
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    #[allow(unsafe_code)]
    fn add_sse2(&mut self, text: &[u8]) {
        use core::arch::x86_64::*;
        debug_assert!(text.len() % 16 == 0);
        // SAFETY: SSE2 is part of the x86-64 baseline (every x86-64 CPU has it, and
        // `target_feature = "sse2"` is always on for this architecture), so these
        // intrinsics run on any CPU this code can run on. The only memory access is
        // `_mm_loadu_si128` of a 16-byte chunk from `chunks_exact(16)`: in bounds, and an
        // unaligned load. Nothing is written through a pointer.
        unsafe {
            let set = |b: u8| _mm_set1_epi8(b as i8);
            let zero = _mm_setzero_si128();
            let mut acc = [zero; 7];
            let mut n = 0;
            let mut carry = if self.in_word { 0xffu8 } else { 0 };
            let sum = |v: __m128i| -> u64 {
                let s = _mm_sad_epu8(v, zero);
                (_mm_cvtsi128_si64(s) + _mm_cvtsi128_si64(_mm_unpackhi_epi64(s, s))) as u64
            };
            for block in text.chunks_exact(16) {
                let x = _mm_loadu_si128(block.as_ptr().cast());
                let ascii = _mm_cmpgt_epi8(x, set(0xff)); // x > -1
                let digit =
                    _mm_and_si128(_mm_cmpgt_epi8(x, set(0x2f)), _mm_cmplt_epi8(x, set(0x3a)));
                let folded = _mm_or_si128(x, set(0x20));
                let letter = _mm_and_si128(
                    _mm_cmpgt_epi8(folded, set(0x60)),
                    _mm_cmplt_epi8(folded, set(0x7b)),
                );
                let alnum = _mm_or_si128(digit, letter);
                let space = _mm_or_si128(
                    _mm_and_si128(ascii, _mm_cmplt_epi8(x, set(0x21))),
                    _mm_cmpeq_epi8(x, set(0x7f)),
                );
                let punct = _mm_andnot_si128(_mm_or_si128(alnum, space), ascii);
                // Lead bytes: 0xc0.. (-64..), 0xe0.. (-32..), 0xf0.. (-16..), all negative.
                let neg = _mm_cmplt_epi8(x, zero);
                let lead = _mm_and_si128(neg, _mm_cmpgt_epi8(x, set(0xbf)));
                let lead3 = _mm_and_si128(neg, _mm_cmpgt_epi8(x, set(0xdf)));
                let lead4 = _mm_and_si128(neg, _mm_cmpgt_epi8(x, set(0xef)));
                // A word starts at a letter or digit whose previous byte is not one.
                let prev = _mm_or_si128(
                    _mm_slli_si128(alnum, 1),
                    _mm_cvtsi32_si128(i32::from(carry)),
                );
                carry = (_mm_movemask_epi8(alnum) >> 15) as u8 * 0xff;
                let masks = [
                    alnum,
                    _mm_andnot_si128(prev, alnum),
                    punct,
                    space,
                    _mm_andnot_si128(lead3, lead),
                    _mm_andnot_si128(lead4, lead3),
                    lead4,
                ];
                for (a, m) in acc.iter_mut().zip(masks) {
                    *a = _mm_sub_epi8(*a, m);
                }
                n += 1;
                if n == 255 {
                    self.add_counts(acc.map(sum));
                    acc = [zero; 7];
                    n = 0;
                }
            }
            if n > 0 {
                self.add_counts(acc.map(sum));
            }
            self.in_word = carry != 0;
        }
    }

    /// Counts whole 32-byte blocks (`text.len()` a multiple of 32) with AVX2: the classes
    /// of [`add_sse2`](Self::add_sse2) on twice the bytes per instruction. A third of a
    /// megabyte prompt's reading was its counting with SSE2 (benches/README.md, issue 20).
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    #[allow(unsafe_code)]
    fn add_avx2(&mut self, text: &[u8], avx2: Avx2) {
        let _ = avx2;
        debug_assert!(text.len() % 32 == 0);
        // SAFETY: `avx2` comes from a `Counting`, which holds one only where the CPU has
        // AVX2 (`Avx2::detect`) and `popcnt` (`Counting::detect`): all `add_avx2_blocks`
        // requires.
        unsafe { self.add_avx2_blocks(text) }
    }

    /// [`add_avx2`](Self::add_avx2)'s loop. Word starts are counted from the letter and
    /// digit masks' bits (a start: a set bit whose previous bit, across blocks too, is
    /// clear), the classes per byte lane as in [`add_sse2`](Self::add_sse2).
    ///
    /// The CPU must have AVX2 and `popcnt`.
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    #[allow(unsafe_code)]
    #[target_feature(enable = "avx2,popcnt")]
    unsafe fn add_avx2_blocks(&mut self, text: &[u8]) {
        use core::arch::x86_64::*;
        let zero = _mm256_setzero_si256();
        let mut acc = [zero; 6];
        let mut n = 0;
        let mut carry = u32::from(self.in_word);
        let mut words = 0u64;
        macro_rules! flush {
            () => {
                avx2_flush!(self, acc, zero)
            };
        }
        for block in text.chunks_exact(32) {
            // SAFETY: an unaligned load of a 32-byte chunk from `chunks_exact(32)`.
            let x = unsafe { _mm256_loadu_si256(block.as_ptr().cast()) };
            let masks = avx2_classes!(x);
            let bits = _mm256_movemask_epi8(masks[0]) as u32;
            words += u64::from((bits & !((bits << 1) | carry)).count_ones());
            carry = bits >> 31;
            for (a, m) in acc.iter_mut().zip(masks) {
                *a = _mm256_sub_epi8(*a, m);
            }
            n += 1;
            if n == 255 {
                flush!();
                acc = [zero; 6];
                n = 0;
            }
        }
        if n > 0 {
            flush!();
        }
        self.words += words;
        self.in_word = carry != 0;
    }

    /// Counts the text of a JSON string's raw contents as [`add`](Self::add) counts it
    /// decoded, without decoding it first, and returns how many bytes of `raw` it read.
    ///
    /// `raw` starts inside a string, not inside an escape. The reading stops at the
    /// string's closing quote (not read), at the end of `raw`, or before an escape it
    /// leaves to the scanner's decoder: one cut off by the end of `raw`, an invalid one, a
    /// surrogate that is not the first half of a complete pair. Plain bytes are counted
    /// where they lie; each escape it reads counts as the character it stands for. So
    /// the scanner hands a streamed string's text over in one pass, with no copy, and the
    /// counts are those of the decoded text whatever it stopped at (`tests` compare both
    /// at every split).
    ///
    /// Thirty-two bytes at a time with AVX2 (`how`), eight elsewhere
    /// ([`add_json_words`](Self::add_json_words): wasm32; on x86-64 without AVX2 only the
    /// tests read this way, the sinks not being offered raw strings there, see
    /// [`Counting::counts_raw`]).
    #[allow(unsafe_code)]
    pub(crate) fn add_json(&mut self, raw: &[u8], how: Counting) -> usize {
        #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
        if let Some(avx2) = how.avx2 {
            let _ = avx2;
            // SAFETY: a `Counting` holds an `Avx2` only where the CPU has AVX2
            // (`Avx2::detect`) and `popcnt` (`Counting::detect`): all `add_json_avx2`
            // requires.
            return unsafe { self.add_json_avx2(raw) };
        }
        let _ = how;
        self.add_json_words(raw)
    }

    /// [`add_json`](Self::add_json) eight bytes at a time, safe and portable: the default
    /// wasm filter's way (it has no SIMD), where decoding the prompt text and counting the
    /// decoded runs was two thirds of a megabyte request's time (benches/README.md, issue
    /// 20 step 15).
    ///
    /// Each word (eight bytes, little-endian) is searched for quotes and backslashes with
    /// [`swar::quote_or_backslash`]; a word with neither is classified and counted whole,
    /// as [`add`](Self::add) counts decoded words (per byte lane, added up every 255
    /// words). A word with either is classified too and counted up to the first of them
    /// (the lanes past it masked off, the word state taken from the last lane counted);
    /// then an escape is counted as its character ([`json_escape`], as the AVX2 reading
    /// does) and the next word loaded right after it. The last bytes (fewer than eight)
    /// are the last word of `raw` shifted down, quotes put in the lanes past the end, so
    /// that the end stops the reading as a quote does.
    ///
    /// Out of line on x86-64, where only the tests reach it: inlined into the scanner's
    /// string reader it cost every offer of raw contents (to `add_json_avx2`) a few
    /// instructions. Inlined on wasm32, where out of line measured slower.
    #[cfg_attr(all(target_arch = "x86_64", target_feature = "sse2"), inline(never))]
    fn add_json_words(&mut self, raw: &[u8]) -> usize {
        const QUOTES: u64 = swar::rep(b'"');
        let n = raw.len();
        let mut i = 0;
        // Bytes counted where they lie, and decoded from escapes.
        let mut bytes = 0usize;
        let mut lanes = Lanes::default();
        loop {
            // Whole words of plain text; then the word where the text stops, from `i`.
            let (x, stop) = loop {
                let x = if i + 8 <= n {
                    swar::word(raw, i)
                } else if i == n {
                    break (0, 0);
                } else {
                    // `left` in 1..=7: the shifts are in 8..=56.
                    let left = n - i;
                    let x = if n >= 8 {
                        swar::word(raw, n - 8) >> (8 * (8 - left))
                    } else {
                        let mut b = [0u8; 8];
                        b[..left].copy_from_slice(&raw[i..]);
                        u64::from_le_bytes(b)
                    };
                    x | (QUOTES << (8 * left))
                };
                let stop = swar::quote_or_backslash(x);
                if stop != 0 {
                    break (x, stop);
                }
                let masks = self.classify(x);
                self.add_word_masks(&mut lanes, masks, u64::MAX);
                i += 8;
                bytes += 8;
            };
            if stop == 0 {
                break;
            }
            // The first flagged lane is a quote or a backslash (`swar::zeros` may flag a
            // lane after a match, never one before it).
            let at = swar::first(stop);
            if at > 0 {
                // `at` in 1..=7: the lanes before the stop.
                let keep = !(u64::MAX << (8 * at));
                let masks = self.classify(x);
                self.add_word_masks(&mut lanes, masks, keep);
                self.in_word = (masks[0] >> (8 * at - 1)) & 1 != 0;
                i += at;
                bytes += at;
            }
            // The end of `raw`, the closing quote, or an escape.
            if i == n || raw[i] == b'"' {
                break;
            }
            let Some(e) = json_escape(&raw[i..]) else {
                break;
            };
            let mut carry = u32::from(self.in_word);
            bytes += self.add_escaped(e, &mut carry);
            self.in_word = carry != 0;
            i += usize::from(e.len);
        }
        self.add_lanes_left(&lanes);
        self.bytes += bytes as u64;
        i
    }

    /// [`add_json`](Self::add_json) with AVX2: each 32-byte block is searched for quotes
    /// and backslashes and classified as [`add_avx2_blocks`](Self::add_avx2_blocks) does;
    /// a block with neither is counted whole, one with either up to the first of them
    /// (the lanes past it masked off), then an escape is counted as its character and
    /// the next block loaded right after it. The last block is the last 32 bytes of `raw`,
    /// the lanes already counted masked off too. Nothing in the loop is a call, so the
    /// counters stay in registers. Inputs shorter than a block are read byte by byte.
    ///
    /// The CPU must have AVX2 and `popcnt`.
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    #[allow(unsafe_code)]
    #[target_feature(enable = "avx2,popcnt")]
    unsafe fn add_json_avx2(&mut self, raw: &[u8]) -> usize {
        use core::arch::x86_64::*;
        let n = raw.len();
        if n < 32 {
            return self.add_json_bytewise(raw);
        }
        let zero = _mm256_setzero_si256();
        let (mut c0, mut c1, mut c2, mut c3, mut c4, mut c5) = (zero, zero, zero, zero, zero, zero);
        let mut blocks = 0;
        let mut carry = u32::from(self.in_word);
        let mut words = 0u64;
        // Bytes counted where they lie, and decoded from escapes.
        let mut bytes = 0usize;
        // Escapes counted inside blocks, by class (never a letter or digit).
        let mut escaped = [0u64; 8];
        let mut i = 0;
        // Adds one block's masks (lanes outside the text cleared) to the counters; `$bits`
        // are the letters and digits, `$from` the first lane of the text, `$last` its last.
        macro_rules! count {
            ($m:expr, $bits:expr, $from:expr, $last:expr) => {{
                let m = $m;
                let bits: u32 = $bits;
                words += u64::from((bits & !((bits << 1) | (carry << $from))).count_ones());
                carry = (bits >> $last) & 1;
                c0 = _mm256_sub_epi8(c0, m[0]);
                c1 = _mm256_sub_epi8(c1, m[1]);
                c2 = _mm256_sub_epi8(c2, m[2]);
                c3 = _mm256_sub_epi8(c3, m[3]);
                c4 = _mm256_sub_epi8(c4, m[4]);
                c5 = _mm256_sub_epi8(c5, m[5]);
                blocks += 1;
                if blocks == 255 {
                    avx2_flush!(self, [c0, c1, c2, c3, c4, c5], zero);
                    (c0, c1, c2, c3, c4, c5) = (zero, zero, zero, zero, zero, zero);
                    blocks = 0;
                }
            }};
        }
        // Quotes and backslashes (macros, not closures: see `avx2_classes`).
        macro_rules! stops {
            ($x:expr) => {
                _mm256_movemask_epi8(_mm256_or_si256(
                    _mm256_cmpeq_epi8($x, _mm256_set1_epi8(b'"' as i8)),
                    _mm256_cmpeq_epi8($x, _mm256_set1_epi8(b'\\' as i8)),
                )) as u32
            };
        }
        'text: while i < n {
            // Whole blocks of plain text; then the block where the text stops (a quote or
            // a backslash in it), or the last 32 bytes, from lane `from` (the bytes before
            // it counted already).
            let (x, stop, from) = loop {
                if i + 32 <= n {
                    // SAFETY: `raw[i..i + 32]` is in bounds; an unaligned load.
                    let x = unsafe { _mm256_loadu_si256(raw.as_ptr().add(i).cast()) };
                    let stop = stops!(x);
                    if stop != 0 {
                        break (x, stop, 0);
                    }
                    let m = avx2_classes!(x);
                    count!(m, _mm256_movemask_epi8(m[0]) as u32, 0, 31);
                    i += 32;
                    bytes += 32;
                } else {
                    if i == n {
                        break 'text;
                    }
                    // SAFETY: `n >= 32`, so `raw[n - 32..n]` is in bounds; an unaligned load.
                    let x = unsafe { _mm256_loadu_si256(raw.as_ptr().add(n - 32).cast()) };
                    let from = (i + 32 - n) as u32;
                    break (x, stops!(x) >> from << from, from);
                }
            };
            // The block is classified once whatever it holds. Its text runs from lane
            // `from` to the first quote; an escape on the way is counted as its character
            // and its lanes masked off (it ends a word, as the character does), unless it
            // stands for a letter or digit (which would join a word) or is one left to the
            // scanner: the reading stops there. An escape running past the block moves
            // the next block's start past it.
            let base = i - from as usize;
            let mut quotes =
                _mm256_movemask_epi8(_mm256_cmpeq_epi8(x, _mm256_set1_epi8(b'"' as i8))) as u32
                    & stop;
            let mut slashes = stop & !quotes;
            let mut plain = u32::MAX << from;
            let mut end = 32;
            let mut next = base + 32;
            let mut stopped = false;
            loop {
                let at = slashes.trailing_zeros();
                let quote = quotes.trailing_zeros();
                if quote < at {
                    end = quote;
                    stopped = true;
                    break;
                }
                if at == 32 {
                    break;
                }
                match json_escape(&raw[base + at as usize..]) {
                    Some(e) if e.class != ALNUM => {
                        // By class, in a table: which class comes next is not
                        // predictable, and a jump per escape cost more than the bytes.
                        escaped[usize::from(e.class & 7)] += 1;
                        bytes += usize::from(e.utf8);
                        let len = u32::from(e.len);
                        let after = at + len;
                        if after >= 32 {
                            plain &= !(u32::MAX << at);
                            next = base + after as usize;
                            break;
                        }
                        let lanes = !(u32::MAX << len) << at;
                        plain &= !lanes;
                        slashes &= !lanes;
                        quotes &= !lanes;
                    }
                    _ => {
                        end = at;
                        stopped = true;
                        break;
                    }
                }
            }
            if end < 32 {
                plain &= !(u32::MAX << end);
            }
            if end > from {
                // The lanes of `plain` as a byte mask: each byte of the block picks the byte
                // of `plain` that holds its bit, then tests that bit.
                let keep = _mm256_shuffle_epi8(
                    _mm256_set1_epi32(plain as i32),
                    _mm256_setr_epi8(
                        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3,
                        3, 3, 3, 3, 3, 3, 3,
                    ),
                );
                let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201_u64 as i64);
                let keep = _mm256_cmpeq_epi8(_mm256_and_si256(keep, bit), bit);
                let m = avx2_classes!(x);
                let m = [
                    _mm256_and_si256(m[0], keep),
                    _mm256_and_si256(m[1], keep),
                    _mm256_and_si256(m[2], keep),
                    _mm256_and_si256(m[3], keep),
                    _mm256_and_si256(m[4], keep),
                    _mm256_and_si256(m[5], keep),
                ];
                count!(m, _mm256_movemask_epi8(m[0]) as u32, from, end - 1);
                bytes += plain.count_ones() as usize;
            }
            if !stopped {
                i = next;
                continue;
            }
            i = base + end as usize;
            if raw[i] == b'"' {
                break;
            }
            // An escape standing for a letter or digit, or one left to the scanner.
            let Some(e) = json_escape(&raw[i..]) else {
                break;
            };
            bytes += self.add_escaped(e, &mut carry);
            i += usize::from(e.len);
        }
        if blocks > 0 {
            avx2_flush!(self, [c0, c1, c2, c3, c4, c5], zero);
        }
        self.punct += escaped[usize::from(PUNCT)];
        self.space += escaped[usize::from(SPACE)];
        self.two_byte += escaped[usize::from(LEAD2)];
        self.three_byte += escaped[usize::from(LEAD3)];
        self.four_byte += escaped[usize::from(LEAD4)];
        self.words += words;
        self.in_word = carry != 0;
        self.bytes += bytes as u64;
        i
    }

    /// [`add_json`](Self::add_json) byte by byte, for inputs shorter than a vector block.
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    fn add_json_bytewise(&mut self, raw: &[u8]) -> usize {
        let mut i = 0;
        let mut carry = u32::from(self.in_word);
        while let Some(&b) = raw.get(i) {
            match b {
                b'"' => break,
                b'\\' => {
                    let Some(e) = json_escape(&raw[i..]) else {
                        break;
                    };
                    self.bytes += self.add_escaped(e, &mut carry) as u64;
                    i += usize::from(e.len);
                }
                _ => {
                    self.in_word = carry != 0;
                    self.add_byte(b);
                    carry = u32::from(self.in_word);
                    self.bytes += 1;
                    i += 1;
                }
            }
        }
        self.in_word = carry != 0;
        i
    }

    /// Counts the character an escape stands for, one that is not a letter or digit (so
    /// it ends a word, which the caller settles); returns its length in UTF-8.
    #[inline(always)]
    fn add_escaped_apart(&mut self, e: Escaped) -> usize {
        match e.class {
            PUNCT => self.punct += 1,
            SPACE => self.space += 1,
            LEAD2 => self.two_byte += 1,
            LEAD3 => self.three_byte += 1,
            LEAD4 => self.four_byte += 1,
            _ => {}
        }
        usize::from(e.utf8)
    }

    /// Counts the character an escape stands for (`carry`: whether a word goes on, as
    /// `in_word`); returns its length in UTF-8.
    #[inline(always)]
    fn add_escaped(&mut self, e: Escaped, carry: &mut u32) -> usize {
        if e.class == ALNUM {
            self.alnum += 1;
            self.words += u64::from(*carry == 0);
            *carry = 1;
        } else {
            *carry = 0;
        }
        self.add_escaped_apart(e)
    }

    /// Adds counts: letters and digits, word starts, punctuation, whitespace, 2-, 3- and
    /// 4-byte characters.
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    fn add_counts(&mut self, c: [u64; 7]) {
        self.alnum += c[0];
        self.words += c[1];
        self.punct += c[2];
        self.space += c[3];
        self.two_byte += c[4];
        self.three_byte += c[5];
        self.four_byte += c[6];
    }

    /// Adds one word's class masks ([`classify`](Self::classify)), the byte lanes in
    /// `keep` only, to the per-lane counts, which go to the totals every 255 words (a
    /// byte lane holds at most 255).
    #[inline(always)]
    fn add_word_masks(&mut self, lanes: &mut Lanes, masks: [u64; 7], keep: u64) {
        for (lane, m) in lanes.counts.iter_mut().zip(masks) {
            *lane += (m & keep) >> 7;
        }
        lanes.words += 1;
        if lanes.words == 255 {
            self.add_lanes(&lanes.counts);
            *lanes = Lanes::default();
        }
    }

    /// Adds the per-lane counts not yet added (see [`add_word_masks`](Self::add_word_masks)).
    #[inline(always)]
    fn add_lanes_left(&mut self, lanes: &Lanes) {
        if lanes.words > 0 {
            self.add_lanes(&lanes.counts);
        }
    }

    /// Adds per-byte-lane counts (each lane at most 255), in the order of
    /// [`classify`](Self::classify)'s masks, to the totals.
    fn add_lanes(&mut self, lanes: &[u64; 7]) {
        const PAIRS: u64 = 0x00ff_00ff_00ff_00ff;
        let sum = |a: u64| {
            let pairs = (a & PAIRS) + ((a >> 8) & PAIRS);
            pairs.wrapping_mul(0x0001_0001_0001_0001) >> 48
        };
        let [alnum, starts, ascii, space, lead, lead3, lead4] = lanes.map(sum);
        self.alnum += alnum;
        self.words += starts;
        self.punct += ascii - alnum - space;
        self.space += space;
        self.two_byte += lead - lead3;
        self.three_byte += lead3 - lead4;
        self.four_byte += lead4;
    }

    /// One byte, by the class table: the oracle of [`add_word`](Self::add_word).
    fn add_byte(&mut self, b: u8) {
        let c = CLASS[usize::from(b)];
        let alnum = c == ALNUM;
        self.words += u64::from(alnum && !self.in_word);
        self.in_word = alnum;
        match c {
            ALNUM => self.alnum += 1,
            PUNCT => self.punct += 1,
            SPACE => self.space += 1,
            LEAD2 => self.two_byte += 1,
            LEAD3 => self.three_byte += 1,
            LEAD4 => self.four_byte += 1,
            _ => {}
        }
    }

    /// Eight bytes (little-endian: byte 0 first): the masks (high bit of each byte lane)
    /// of letters and digits, word starts, ASCII, ASCII whitespace and controls, and bytes
    /// from 0xc0, 0xe0 and 0xf0 (UTF-8 leads of two bytes or more, three or more, four).
    /// Punctuation and the leads' widths are differences of these, taken once per 255
    /// words by [`add_lanes`](Self::add_lanes) rather than per word (as the AVX2 paths
    /// take them at their flush): fewer operations a word for the wasm filter, which
    /// counts this way.
    fn classify(&mut self, x: u64) -> [u64; 7] {
        const L: u64 = 0x0101_0101_0101_0101;
        const H: u64 = 0x8080_8080_8080_8080;
        let ascii = !x & H;
        let t = x & !H;
        // High bit set where the (ASCII) byte `v` is at least `lo`: no carry leaves a
        // byte, since v <= 0x7f and the addend <= 0x80.
        let ge = |v: u64, lo: u64| (v + (0x80 - lo) * L) & H;
        let digit = ge(t, 0x30) & !ge(t, 0x3a);
        // Letters with the case folded: `| 0x20` puts `A..=Z` on `a..=z`, and no other
        // byte there.
        let folded = t | (0x20 * L);
        let letter = ge(folded, 0x61) & !ge(folded, 0x7b);
        let alnum = (digit | letter) & ascii;
        let space = (!ge(t, 0x21) | ge(t, 0x7f)) & ascii;
        let lead = x & (x << 1) & H;
        let lead3 = lead & (x << 2);
        let lead4 = lead3 & (x << 3);
        // A word starts at a letter or digit whose previous byte is not one.
        let prev = (alnum << 8) | if self.in_word { 0x80 } else { 0 };
        self.in_word = alnum >> 63 != 0;
        [alnum, alnum & !prev, ascii, space, lead, lead3, lead4]
    }

    /// Adds the counts of `other` (texts of later events).
    pub fn merge(&mut self, other: &TextStats) {
        self.bytes += other.bytes;
        self.alnum += other.alnum;
        self.words += other.words;
        self.punct += other.punct;
        self.space += other.space;
        self.two_byte += other.two_byte;
        self.three_byte += other.three_byte;
        self.four_byte += other.four_byte;
        self.strings += other.strings;
    }

    /// Whether any text was counted.
    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    /// An estimate of the tokens this text is, for the BPE tokenizers of current models:
    /// `None` when there was no text. The coefficients (tokens per word, letter,
    /// punctuation mark and character of each UTF-8 width) were fitted by least squares of
    /// the relative error against `o200k_base` counts of 34 texts: prose in English,
    /// German, French, Spanish, Russian, Arabic, Hindi, Chinese, Japanese and Korean,
    /// markdown, code in three languages, tool-call JSON, logs and emoji (median error 21%,
    /// worst 55%). The README gives the error against the provider figures of the fixture
    /// corpus.
    pub fn estimate_tokens(&self) -> Option<u64> {
        if self.is_empty() {
            return None;
        }
        let milli = EST_WORD * self.words
            + EST_ALNUM * self.alnum
            + EST_PUNCT * self.punct
            + EST_SPACE * self.space
            + EST_TWO * self.two_byte
            + EST_THREE * self.three_byte
            + EST_FOUR * self.four_byte;
        Some(milli.div_ceil(1000).max(1))
    }
}

/// What a JSON escape stands for, when it is complete and stands for one character by
/// itself: the class of the character (its UTF-8 lead byte's, as `CLASS` gives it), its
/// length in UTF-8 and the escape's length.
#[derive(Debug, Clone, Copy)]
struct Escaped {
    class: u8,
    utf8: u8,
    len: u8,
}

/// The class of the character a two-byte escape stands for, by the byte after the
/// backslash; [`UNICODE`] for `u`, [`INVALID`] for the rest.
static SIMPLE: [u8; 256] = {
    let mut t = [INVALID; 256];
    t[b'"' as usize] = PUNCT;
    t[b'\\' as usize] = PUNCT;
    t[b'/' as usize] = PUNCT;
    t[b'b' as usize] = SPACE;
    t[b'f' as usize] = SPACE;
    t[b'n' as usize] = SPACE;
    t[b'r' as usize] = SPACE;
    t[b't' as usize] = SPACE;
    t[b'u' as usize] = UNICODE;
    t
};
const UNICODE: u8 = 7;
const INVALID: u8 = 8;

/// Hex digits' values; `0x10` for any other byte.
static HEX: [u8; 256] = {
    let mut t = [0x10u8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

/// The JSON escape at the start of `raw` (a backslash), when it is complete and stands
/// for one character by itself (the scanner's decoder gives the same character). `None`
/// for what the decoder must see: an escape cut off by the end of `raw`, an invalid one,
/// and surrogates other than a complete pair (a lone one decodes to U+FFFD, and a high
/// one waits for what follows it).
#[inline(always)]
fn json_escape(raw: &[u8]) -> Option<Escaped> {
    let unit = |at: usize| -> Option<u32> {
        let h = raw.get(at..at + 4)?;
        let d = [
            HEX[usize::from(h[0])],
            HEX[usize::from(h[1])],
            HEX[usize::from(h[2])],
            HEX[usize::from(h[3])],
        ];
        if (d[0] | d[1] | d[2] | d[3]) & 0x10 != 0 {
            return None;
        }
        Some(u32::from(d[0]) << 12 | u32::from(d[1]) << 8 | u32::from(d[2]) << 4 | u32::from(d[3]))
    };
    let class = SIMPLE[usize::from(*raw.get(1)?)];
    if class != UNICODE {
        return (class != INVALID).then_some(Escaped {
            class,
            utf8: 1,
            len: 2,
        });
    }
    let u = unit(2)?;
    let (class, utf8) = match u {
        0..=0x7f => (CLASS[u as usize], 1),
        0x80..=0x7ff => (LEAD2, 2),
        0xd800..=0xdbff => {
            if raw.get(6..8)? != b"\\u" || !(0xdc00..=0xdfff).contains(&unit(8)?) {
                return None;
            }
            return Some(Escaped {
                class: LEAD4,
                utf8: 4,
                len: 12,
            });
        }
        0xdc00..=0xdfff => return None,
        _ => (LEAD3, 3),
    };
    Some(Escaped {
        class,
        utf8,
        len: 6,
    })
}

/// Estimate coefficients, thousandths of a token per unit (see [`TextStats::estimate_tokens`]).
const EST_WORD: u64 = 1313;
const EST_ALNUM: u64 = 11;
const EST_PUNCT: u64 = 678;
const EST_SPACE: u64 = 0;
const EST_TWO: u64 = 337;
const EST_THREE: u64 = 615;
const EST_FOUR: u64 = 2664;

#[cfg(test)]
mod tests {
    use super::*;

    type Add = fn(&mut TextStats, &[u8]);

    /// Empty counts (a word going on when `in_word`) with each way of adding text this CPU
    /// has: as built ([`TextStats::add`]: AVX2 where the CPU has it), and on x86-64 without
    /// AVX2 (SSE2, words, tail).
    fn every_path(in_word: bool) -> Vec<(TextStats, Add)> {
        let empty = TextStats {
            in_word,
            ..TextStats::default()
        };
        let mut paths: Vec<(TextStats, Add)> = vec![(empty, TextStats::add)];
        #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
        paths.push((empty, |s, t| s.add_with(t, Counting::default())));
        paths
    }

    /// The word-at-a-time counts equal the byte-by-byte oracle's, on random bytes (every
    /// class, every alignment, words across the 8-byte boundaries).
    #[test]
    fn eight_at_a_time_matches_byte_by_byte() {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let alphabet: &[u8] =
            b"aZ09 _-\n\t,.\x7f\x80\xbf\xc3\xa9\xe4\xbd\xa0\xf0\x9f\x98\x80zA9@[`{/:";
        for round in 0..4000 {
            // Short texts at every length around the 8- and 16-byte blocks, and some past
            // 255 sixteen-byte blocks (the vector counters' flush).
            let len = if round % 100 == 99 {
                4000 + 2 * round
            } else {
                round % 67
            };
            let text: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    if x % 5 == 0 {
                        (x >> 32) as u8
                    } else {
                        alphabet[(x >> 40) as usize % alphabet.len()]
                    }
                })
                .collect();
            let in_word = round % 2 == 0;
            let mut slow = TextStats {
                in_word,
                ..TextStats::default()
            };
            slow.bytes += text.len() as u64;
            for &b in &text {
                slow.add_byte(b);
            }
            for mut fast in every_path(in_word) {
                fast.1(&mut fast.0, &text);
                assert_eq!(fast.0, slow, "{text:?}");
            }
        }
        // Every byte value, alone after a letter and after a space, in an 8-byte word
        // and at each end of a 16-byte block.
        for b in 0..=255u8 {
            for lead in [b'a', b' '] {
                let mut texts = vec![[lead; 8].to_vec(), [lead; 16].to_vec(), [lead; 16].to_vec()];
                texts[0][7] = b;
                texts[1][15] = b;
                texts[2][0] = b;
                // Both ends of each 16-byte lane of a 32-byte block, and across two blocks.
                for at in [0, 15, 16, 31, 32, 47, 48, 63] {
                    let mut t = [lead; 64].to_vec();
                    t[at] = b;
                    texts.push(t);
                }
                for text in texts {
                    let mut slow = TextStats {
                        bytes: text.len() as u64,
                        ..TextStats::default()
                    };
                    text.iter().for_each(|&c| slow.add_byte(c));
                    for mut fast in every_path(false) {
                        fast.1(&mut fast.0, &text);
                        assert_eq!(fast.0, slow, "{b:#x} in {text:?}");
                    }
                }
            }
        }
    }

    /// The counts do not depend on where the text is split, even inside a character.
    #[test]
    fn counts_are_the_same_at_every_split() {
        let text = "Hello, world! Ça va? 你好，世界 🐱 x1 y22\n\tend".as_bytes();
        let mut whole = TextStats::default();
        whole.start_string();
        whole.add(text);
        // Hello, world, a (Ç is not an ASCII letter), va, x1, y22, end.
        assert_eq!(whole.words, 7);
        assert_eq!(whole.four_byte, 1);
        assert_eq!(whole.three_byte, 5);
        assert_eq!(whole.two_byte, 1);
        for at in 0..=text.len() {
            let mut s = TextStats::default();
            s.start_string();
            s.add(&text[..at]);
            s.add(&text[at..]);
            assert_eq!(s, whole, "split at {at}");
        }
    }

    /// The reading [`TextStats::add_json`] must equal, written as plainly as can be: byte
    /// by byte, each escape decoded by hand (a surrogate pair combined through
    /// `char::from_u32`), stopping where `add_json` is documented to stop (a quote, the end,
    /// an escape cut off or invalid, a surrogate that is not the first half of a complete
    /// pair); the decoded bytes counted by `add_byte`. The counts and how far it read.
    fn naive_json(raw: &[u8], in_word: bool) -> (TextStats, usize) {
        let hex4 = |at: usize| -> Option<u32> {
            let h = raw.get(at..at + 4)?;
            h.iter()
                .try_fold(0u32, |acc, &b| Some(acc * 16 + char::from(b).to_digit(16)?))
        };
        let mut decoded = Vec::new();
        let mut i = 0;
        while let Some(&b) = raw.get(i) {
            if b == b'"' {
                break;
            }
            if b != b'\\' {
                decoded.push(b);
                i += 1;
                continue;
            }
            let (c, len) = match raw.get(i + 1) {
                Some(b'"') => ('"', 2),
                Some(b'\\') => ('\\', 2),
                Some(b'/') => ('/', 2),
                Some(b'b') => ('\u{8}', 2),
                Some(b'f') => ('\u{c}', 2),
                Some(b'n') => ('\n', 2),
                Some(b'r') => ('\r', 2),
                Some(b't') => ('\t', 2),
                Some(b'u') => {
                    let Some(u) = hex4(i + 2) else { break };
                    if (0xd800..0xdc00).contains(&u) {
                        if raw.get(i + 6..i + 8) != Some(b"\\u") {
                            break;
                        }
                        let Some(low) = hex4(i + 8) else { break };
                        if !(0xdc00..0xe000).contains(&low) {
                            break;
                        }
                        let c = char::from_u32(0x10000 + ((u - 0xd800) << 10) + (low - 0xdc00));
                        (c.unwrap(), 12)
                    } else {
                        // A lone low surrogate is no `char`: left to the decoder.
                        let Some(c) = char::from_u32(u) else { break };
                        (c, 6)
                    }
                }
                _ => break,
            };
            decoded.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
            i += len;
        }
        let mut s = TextStats {
            in_word,
            bytes: decoded.len() as u64,
            ..TextStats::default()
        };
        decoded.iter().for_each(|&b| s.add_byte(b));
        (s, i)
    }

    /// `add_json` of `raw` with each way this CPU has (as detected: AVX2 where the CPU has
    /// it; and without AVX2, eight bytes at a time) equals [`naive_json`], after a word
    /// and not.
    fn check_json(raw: &[u8]) {
        for in_word in [false, true] {
            let want = naive_json(raw, in_word);
            for how in [Counting::detect(), Counting::default()] {
                let mut s = TextStats {
                    in_word,
                    ..TextStats::default()
                };
                let n = s.add_json(raw, how);
                assert_eq!(
                    (s, n),
                    want,
                    "{how:?} {in_word} {:?}",
                    raw.escape_ascii().to_string()
                );
            }
        }
    }

    /// The word-at-a-time search of `add_json`: a quote or an escape at every position of
    /// words and blocks, over backgrounds of every class and of the bytes that borrow in
    /// the zero-byte test (one off from `"` and `\`, 0x00, 0x01, 0x7f, 0x80, 0xff), the
    /// end of the input at every length.
    #[test]
    fn raw_json_stops_at_every_position() {
        let backgrounds: &[u8] = b"a9 ,\x00\x01!#[]\x7f\x80\xbf\xc3\xe4\xf0\xff";
        let stops: &[&[u8]] = &[
            b"\"",
            br"\n",
            br"\\",
            br#"\""#,
            br"\u0041",
            br"\u00e9",
            br"\u4F60",
            br"\ud83d\ude00",
            br"\ud83d",
            br"\ude00",
            br"\x",
            br"\u12",
            b"\\",
        ];
        for &bg in backgrounds {
            for len in (0..=17).chain([23, 24, 25, 31, 32, 33, 40]) {
                let base = vec![bg; len];
                check_json(&base);
                for at in 0..=len {
                    for stop in stops {
                        let mut raw = base[..at].to_vec();
                        raw.extend_from_slice(stop);
                        raw.extend_from_slice(&base[at..]);
                        check_json(&raw);
                        // Cut at every length through the stop (escapes cut off).
                        for cut in at..at + stop.len() {
                            check_json(&raw[..cut]);
                        }
                    }
                }
            }
        }
    }

    /// Every byte value in a word, between letters and after one: classes and the word
    /// state across a masked word and an escape; and every string of up to five bytes
    /// over quotes, backslashes and the bytes of escapes (inputs shorter than a word).
    #[test]
    fn raw_json_matches_naive_on_every_byte_and_short_input() {
        for b in 0..=255u8 {
            for at in 0..12 {
                for tail in [&b"\"x"[..], br"\u0061b", br"\tb", b"bc"] {
                    let mut raw = vec![b'a'; 12];
                    raw[at] = b;
                    raw.extend_from_slice(tail);
                    check_json(&raw);
                }
            }
        }
        let alphabet: &[u8] = b"a \"\\u0dDn\xc3";
        for len in 0..=5u32 {
            for code in 0..alphabet.len().pow(len) {
                let mut c = code;
                let raw: Vec<u8> = (0..len)
                    .map(|_| {
                        let b = alphabet[c % alphabet.len()];
                        c /= alphabet.len();
                        b
                    })
                    .collect();
                check_json(&raw);
            }
        }
    }

    /// Escapes at every offset, spanning words, and long runs past the counters' flush
    /// (255 words), in random texts.
    #[test]
    fn raw_json_matches_naive_on_random_text() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let pieces: &[&[u8]] = &[
            b"a",
            b"Z9",
            b" ",
            b",",
            b"\xc3\xa9",
            b"\xe4\xbd\xa0",
            b"\xf0\x9f\x98\x80",
            b"\x80",
            b"\x7f",
            br"\n",
            br"\u0041",
            br"\u0020",
            br"\u00e9",
            br"\u4f60",
            br"\ud83d\ude00",
            br#"\""#,
            br"\\",
            br"\/",
            b"word ",
        ];
        for round in 0..3000 {
            let len = if round % 50 == 49 { 1500 } else { round % 40 };
            let mut raw = Vec::new();
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                raw.extend_from_slice(pieces[(x >> 40) as usize % pieces.len()]);
            }
            let stop: &[u8] = match round % 4 {
                0 => b"",
                1 => b"\"rest",
                2 => br"\ud83dx",
                _ => br"\u00",
            };
            raw.extend_from_slice(stop);
            check_json(&raw);
        }
    }

    #[test]
    fn an_empty_string_is_no_text() {
        let mut s = TextStats::default();
        s.start_string();
        s.add(b"");
        assert!(s.is_empty());
        s.add(b"a");
        assert!(!s.is_empty());
        let mut t = TextStats::default();
        t.merge(&s);
        t.merge(&s);
        assert_eq!((t.bytes, t.strings, t.words), (2, 2, 2));
    }
}
