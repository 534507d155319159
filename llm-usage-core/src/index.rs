//! A structural index of one whole event: where its strings end and where its brackets
//! are, as bitmaps, computed 64 bytes at a time; and the same classification for the
//! blocks of a skipped subtree in a stream ([`skip_block`]).
//!
//! # Why
//!
//! The streaming scanner ([`crate::scan`]) decides what each byte means as it reaches it,
//! one state step at a time, because a chunk may end anywhere. An SSE event, though, is
//! held whole (up to 2 KiB), and then its bytes can be classified all at once, the way
//! simdjson's first stage does: 16 or 32 bytes at a time are compared with `"`, `\`, the
//! opening brackets and the closing brackets, each comparison packed into a bitmask (SSE2,
//! or AVX2 when the CPU has it; `simd128` in wasm builds that enable it; eight bytes per
//! 64-bit word in builds without vector instructions, [`classify_swar`]), then a few word
//! operations find which quotes are escaped and which bytes lie inside strings. What is
//! left for the walk (`Scanner::scan_whole`) are jumps: the end of a string is the next
//! quote bit, the end of a skipped object is where the bracket bits balance. Model text
//! with braces or quotes in it costs nothing extra.
//!
//! The same pass copies each SSE `data:` line into the held event, finds its end and
//! compares it with the previous event ([`copy_line`]), so that the walk can resume after
//! the envelope the two share.
//!
//! This is the crate's one module with `unsafe` code: the intrinsics. Written as plain
//! loops, the classification is not vectorised by the compiler (it builds the masks two
//! bytes at a time) and ran OpenAI streams at 0.3 GB/s, a quarter of the scalar scanner;
//! stable Rust has no safe way to call the intrinsics outside a `#[target_feature]`
//! function. Each `unsafe` block says why it is sound.
//!
//! # Soundness
//!
//! A quote is escaped when an odd run of backslashes precedes it; that is the scanner's
//! rule *inside* strings. Outside strings a backslash is not JSON at all and the scanner
//! would treat it differently (ignore it in a skipped subtree, fail on a watched path), so
//! an event with a backslash outside its strings is not indexed ([`Index::build_from`]
//! says no) and a block with one is read byte by byte ([`Step::Bytewise`]). With every
//! backslash inside a string, the quote bits here are exactly the quotes the scanner would
//! see open and close strings, and the bracket bits exactly the brackets it would count.
//! (One more case is the walk's to check: a quote inside a scalar, `9"`, which the scanner
//! reads as part of the scalar; the walk gives up there.)

use crate::swar::string_end;

/// Largest event indexed, and so the largest SSE event the body holds whole (its
/// held-event buffer, `body::held::EVENT_BUF`, is this size).
pub(crate) const MAX_BYTES: usize = 2048;

const WORDS: usize = MAX_BYTES / 64;

/// Bitmaps over one event from byte `base` on, bit `i % 64` of word `i / 64` standing for
/// byte `base + i`.
#[derive(Debug, Clone)]
pub(crate) struct Index {
    /// Whether the CPU has AVX2 (detected once, when the index is made).
    #[cfg_attr(
        not(all(target_arch = "x86_64", target_feature = "sse2")),
        allow(dead_code)
    )]
    avx2: Option<Avx2>,
    /// Tests: classify as builds without vector instructions do (see [`SWAR_INDEX`]).
    #[cfg(any(test, fuzzing))]
    swar: bool,
    /// The byte that bit 0 of word 0 stands for: where the index was built from.
    base: usize,
    /// Words in use.
    words: usize,
    /// Quotes that open or close a string (escaped quotes excluded).
    quotes: [u64; WORDS],
    /// `{` and `[` outside strings.
    opens: [u64; WORDS],
    /// `}` and `]` outside strings.
    closes: [u64; WORDS],
    /// Backslashes (all inside strings, or the event is not indexed).
    backslashes: [u64; WORDS],
}

/// The masks of one 64-byte block: `"`, `\\`, `{` or `[`, `}` or `]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Masks {
    quotes: u64,
    backslashes: u64,
    opens: u64,
    closes: u64,
}

/// Whether this build classifies with vector instructions. Without them (wasm without
/// `simd128`, other architectures) held events are still indexed, with
/// [`classify_swar`], but the streaming scanner reads skipped subtrees byte by byte
/// rather than in blocks ([`skip_blocks`]), which only pays with vector instructions.
pub(crate) const VECTOR: bool = cfg!(any(
    all(target_arch = "x86_64", target_feature = "sse2"),
    all(target_arch = "wasm32", target_feature = "simd128")
));

/// Byte-at-a-time classification: the reference the others are tested against.
#[cfg(test)]
fn classify_portable(block: &[u8; 64]) -> Masks {
    let mut m = Masks {
        quotes: 0,
        backslashes: 0,
        opens: 0,
        closes: 0,
    };
    for (i, &b) in block.iter().enumerate() {
        m.quotes |= u64::from(b == b'"') << i;
        m.backslashes |= u64::from(b == b'\\') << i;
        m.opens |= u64::from(b | 0x20 == b'{') << i;
        m.closes |= u64::from(b | 0x20 == b'}') << i;
    }
    m
}

#[cfg(any(test, fuzzing))]
thread_local! {
    /// Tests make new indexes classify with [`classify_swar`], as builds without vector
    /// instructions do, to run the whole pipeline that way on any machine.
    pub(crate) static SWAR_INDEX: core::cell::Cell<bool> = const { core::cell::Cell::new(false) };
}

#[cfg(any(test, fuzzing))]
fn swar_index() -> bool {
    SWAR_INDEX.with(core::cell::Cell::get)
}

#[cfg(not(any(test, fuzzing)))]
fn swar_index() -> bool {
    false
}

/// Proof that the CPU has AVX2 and carry-less multiplication (every AVX2 CPU has both; the
/// AVX2 paths below use `pclmulqdq` for [`prefix_xor`]).
///
/// The functions with an AVX2 path ([`copy_line`], [`skip_blocks`], [`Index`]) are safe,
/// and take an `Option<Avx2>` rather than a `bool`: the field is private and
/// [`Avx2::detect`], which asks the CPU, is the only constructor, so safe code cannot send
/// them down the AVX2 path on a CPU without it (memchr hands out its ISA-specific searchers
/// the same way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Avx2 {
    _checked: (),
}

impl Avx2 {
    /// `Some` when the CPU has AVX2 and `pclmulqdq`.
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    pub(crate) fn detect() -> Option<Avx2> {
        (std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("pclmulqdq"))
            .then_some(Avx2 { _checked: () })
    }

    /// `None`: AVX2 is an x86_64 extension.
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    pub(crate) fn detect() -> Option<Avx2> {
        None
    }
}

#[cfg(not(any(
    all(target_arch = "x86_64", target_feature = "sse2"),
    all(target_arch = "wasm32", target_feature = "simd128")
)))]
fn classify(block: &[u8; 64], _avx2: Option<Avx2>) -> Masks {
    classify_swar(block)
}

/// Classification eight bytes at a time in 64-bit words, for builds without vector
/// instructions (the default wasm module): each byte class is an exact per-byte zero
/// test, and a multiplication gathers the eight flag bits of a word into one byte.
/// (Plain per-byte loops, which compilers do not turn into mask moves, ran OpenAI
/// streams at 0.3 GB/s; this runs them at ~1.9 GB/s natively, AVX2 at ~3.7.)
#[cfg_attr(
    all(
        not(any(test, fuzzing)),
        any(
            all(target_arch = "x86_64", target_feature = "sse2"),
            all(target_arch = "wasm32", target_feature = "simd128")
        )
    ),
    allow(dead_code)
)]
fn classify_swar(block: &[u8; 64]) -> Masks {
    const LO7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
    const ONES: u64 = 0x0101_0101_0101_0101;
    // 0x80 in each byte of `v` that is zero, and nowhere else (no borrow across bytes).
    let zeros = |v: u64| !(((v & LO7).wrapping_add(LO7)) | v | LO7);
    // Byte `k`'s 0x80 flag to bit `k`: the multiplier puts each flag at bit 56 + k with
    // no two products on one bit, so no carries.
    let gather = |flags: u64| (flags >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56;
    let mut m = Masks {
        quotes: 0,
        backslashes: 0,
        opens: 0,
        closes: 0,
    };
    let splat = |b: u8| ONES * u64::from(b);
    for (k, chunk) in block.chunks_exact(8).enumerate() {
        let w = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
        let folded = w | splat(0x20);
        let shift = 8 * k;
        m.quotes |= gather(zeros(w ^ splat(b'"'))) << shift;
        m.backslashes |= gather(zeros(w ^ splat(b'\\'))) << shift;
        m.opens |= gather(zeros(folded ^ splat(b'{'))) << shift;
        m.closes |= gather(zeros(folded ^ splat(b'}'))) << shift;
    }
    m
}

/// wasm `simd128` classification (builds with `-C target-feature=+simd128`; the module
/// then needs a runtime with the SIMD proposal: V8, wasmtime, WAMR and wasmi with its
/// `simd` feature have it). Safe: wasm has no undefined behaviour for an unsupported
/// instruction, the module fails to load instead.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn classify(block: &[u8; 64], _avx2: Option<Avx2>) -> Masks {
    use core::arch::wasm32::{u8x16, u8x16_bitmask, u8x16_eq, u8x16_splat, v128, v128_or};
    let lane = |k: usize| -> v128 {
        let b = &block[16 * k..16 * k + 16];
        u8x16(
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
            b[14], b[15],
        )
    };
    let (quote, backslash) = (u8x16_splat(b'"'), u8x16_splat(b'\\'));
    let (open, close, bit5) = (u8x16_splat(b'{'), u8x16_splat(b'}'), u8x16_splat(0x20));
    let mut m = Masks {
        quotes: 0,
        backslashes: 0,
        opens: 0,
        closes: 0,
    };
    for k in 0..4 {
        let v = lane(k);
        let folded = v128_or(v, bit5);
        let shift = 16 * k;
        m.quotes |= u64::from(u8x16_bitmask(u8x16_eq(v, quote))) << shift;
        m.backslashes |= u64::from(u8x16_bitmask(u8x16_eq(v, backslash))) << shift;
        m.opens |= u64::from(u8x16_bitmask(u8x16_eq(folded, open))) << shift;
        m.closes |= u64::from(u8x16_bitmask(u8x16_eq(folded, close))) << shift;
    }
    m
}

/// AVX2 classification: 32 bytes per compare, else as [`classify_sse2`].
///
/// # Safety
///
/// The CPU must have AVX2.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[allow(unsafe_code)]
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn classify_avx2(block: &[u8; 64]) -> Masks {
    use core::arch::x86_64::{
        __m256i, _mm256_cmpeq_epi8, _mm256_loadu_si256, _mm256_movemask_epi8, _mm256_or_si256,
        _mm256_set1_epi8,
    };
    let quote = _mm256_set1_epi8(b'"' as i8);
    let backslash = _mm256_set1_epi8(b'\\' as i8);
    let open = _mm256_set1_epi8(b'{' as i8);
    let close = _mm256_set1_epi8(b'}' as i8);
    let bit5 = _mm256_set1_epi8(0x20);
    // SAFETY: each load reads 32 bytes at offset 0 or 32 of a 64-byte array, in bounds;
    // `loadu` has no alignment requirement.
    let (lo, hi) = unsafe {
        (
            _mm256_loadu_si256(block.as_ptr().cast::<__m256i>()),
            _mm256_loadu_si256(block.as_ptr().add(32).cast::<__m256i>()),
        )
    };
    let mask = |l, h| {
        u64::from(_mm256_movemask_epi8(l) as u32) | u64::from(_mm256_movemask_epi8(h) as u32) << 32
    };
    let (flo, fhi) = (_mm256_or_si256(lo, bit5), _mm256_or_si256(hi, bit5));
    Masks {
        quotes: mask(_mm256_cmpeq_epi8(lo, quote), _mm256_cmpeq_epi8(hi, quote)),
        backslashes: mask(
            _mm256_cmpeq_epi8(lo, backslash),
            _mm256_cmpeq_epi8(hi, backslash),
        ),
        opens: mask(_mm256_cmpeq_epi8(flo, open), _mm256_cmpeq_epi8(fhi, open)),
        closes: mask(_mm256_cmpeq_epi8(flo, close), _mm256_cmpeq_epi8(fhi, close)),
    }
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[allow(unsafe_code)]
fn classify(block: &[u8; 64], avx2: Option<Avx2>) -> Masks {
    if avx2.is_some() {
        // SAFETY: an `Avx2` exists only where the CPU has AVX2 (`Avx2::detect`).
        unsafe { classify_avx2(block) }
    } else {
        classify_sse2(block)
    }
}

/// SSE2 classification, 16 bytes per compare (`{` and `[` differ only in bit 5, as do `}`
/// and `]`, so one compare of the byte with bit 5 set finds both).
///
/// The one `unsafe` of the crate: compilers do not turn the portable loops into
/// `pcmpeqb`/`pmovmskb` (they build the masks two bytes at a time), and stable Rust has
/// no safe way to call the intrinsics outside a `#[target_feature]` function. Measured on
/// the OpenAI stream of `benches/`: 0.3 GB/s portable, see `benches/README.md` for SSE2.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[allow(unsafe_code)]
fn classify_sse2(block: &[u8; 64]) -> Masks {
    use core::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    let mut m = Masks {
        quotes: 0,
        backslashes: 0,
        opens: 0,
        closes: 0,
    };
    // SAFETY: SSE2 is enabled at compile time (the `cfg` above; it is part of the x86_64
    // baseline), so the intrinsics are supported; each load reads 16 bytes at offset
    // `16 * k` for `k < 4` of a 64-byte array, in bounds, and `loadu` has no alignment
    // requirement.
    unsafe {
        let quote = _mm_set1_epi8(b'"' as i8);
        let backslash = _mm_set1_epi8(b'\\' as i8);
        let open = _mm_set1_epi8(b'{' as i8);
        let close = _mm_set1_epi8(b'}' as i8);
        let bit5 = _mm_set1_epi8(0x20);
        for k in 0..4 {
            let v = _mm_loadu_si128(block.as_ptr().add(16 * k).cast::<__m128i>());
            let folded = _mm_or_si128(v, bit5);
            let shift = 16 * k;
            let mask = |x| u64::from(_mm_movemask_epi8(x) as u16) << shift;
            m.quotes |= mask(_mm_cmpeq_epi8(v, quote));
            m.backslashes |= mask(_mm_cmpeq_epi8(v, backslash));
            m.opens |= mask(_mm_cmpeq_epi8(folded, open));
            m.closes |= mask(_mm_cmpeq_epi8(folded, close));
        }
    }
    m
}

/// Bit `i` of the result is the parity of bits `0..=i` of `x`: 1 from an opening quote
/// up to (not including) its closing quote.
#[inline(always)]
fn prefix_xor(mut x: u64) -> u64 {
    x ^= x << 1;
    x ^= x << 2;
    x ^= x << 4;
    x ^= x << 8;
    x ^= x << 16;
    x ^= x << 32;
    x
}

/// [`prefix_xor`] in one instruction: carry-less multiplication by all ones (the simdjson
/// trick), where the shifts above are a chain of twelve dependent operations per block.
///
/// # Safety
///
/// The CPU must have `pclmulqdq`.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[allow(unsafe_code)]
#[inline]
#[target_feature(enable = "pclmulqdq")]
unsafe fn prefix_xor_clmul(x: u64) -> u64 {
    use core::arch::x86_64::{_mm_clmulepi64_si128, _mm_cvtsi128_si64, _mm_set_epi64x};
    let product = _mm_clmulepi64_si128(_mm_set_epi64x(0, x as i64), _mm_set_epi64x(0, -1), 0);
    _mm_cvtsi128_si64(product) as u64
}

/// The length of the longest common prefix of `a` and `b`, compared up to `limit` bytes,
/// 32 at a time (fixed-size slice comparisons compile to vector compares), then eight.
pub(crate) fn common_prefix(a: &[u8], b: &[u8], limit: usize) -> usize {
    let n = limit.min(a.len()).min(b.len());
    let mut i = 0;
    while i + 32 <= n && a[i..i + 32] == b[i..i + 32] {
        i += 32;
    }
    while i + 8 <= n {
        let x = u64::from_le_bytes(a[i..i + 8].try_into().unwrap_or_default());
        let y = u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or_default());
        if x != y {
            return i + ((x ^ y).trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

/// What [`copy_line`] did with the start of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Copied {
    /// `src[..k]` was copied, and `src[k]` ends the line (`\n` or `\r`).
    Line(usize),
    /// All of `src` was copied: the line goes on in the next chunk.
    All,
    /// `dst` has no room for it: nothing counts as copied.
    NoRoom,
}

/// Copies the line at the start of `src` (up to its first `\n` or `\r`) to `dst[at..]`,
/// and extends `*same`, the length of the common prefix of `dst` with `prev`, when it
/// covered all of `dst[..at]`.
///
/// This is the SSE body's one pass over a `data:` line: finding the line's end, copying
/// it into the held event and comparing it with the previous event (for the replay,
/// `scan::whole`) were three passes over the same bytes (measured at a quarter of an
/// OpenAI chunk's time); with AVX2 they share each 32-byte load.
pub(crate) fn copy_line(
    src: &[u8],
    dst: &mut [u8],
    at: usize,
    prev: &[u8],
    same: &mut usize,
    avx2: Option<Avx2>,
) -> Copied {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    if avx2.is_some() {
        // SAFETY: an `Avx2` exists only where the CPU has AVX2 (`Avx2::detect`).
        #[allow(unsafe_code)]
        return unsafe { copy_line_avx2(src, dst, at, prev, same) };
    }
    let _ = avx2;
    copy_rest(src, 0, dst, at, prev, same, *same == at)
}

/// [`copy_line`] from `src[i..]` (to `dst[at + i..]`), the portable way; `open`: whether
/// `dst[..at + i]` all equals `prev`.
fn copy_rest(
    src: &[u8],
    i: usize,
    dst: &mut [u8],
    at: usize,
    prev: &[u8],
    same: &mut usize,
    open: bool,
) -> Copied {
    let rest = &src[i..];
    let end = crate::swar::find_line_end(rest);
    let k = end.unwrap_or(rest.len());
    let to = at + i;
    let Some(out) = dst.get_mut(to..to + k) else {
        return Copied::NoRoom;
    };
    out.copy_from_slice(&rest[..k]);
    if open {
        *same = to + common_prefix(&rest[..k], prev.get(to..).unwrap_or_default(), k);
    }
    end.map_or(Copied::All, |e| Copied::Line(i + e))
}

/// [`copy_line`] 32 bytes per load: each is stored, searched for line ends and, while
/// the prefix holds, compared with `prev`.
///
/// # Safety
///
/// The CPU must have AVX2.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[allow(unsafe_code)]
#[target_feature(enable = "avx2")]
unsafe fn copy_line_avx2(
    src: &[u8],
    dst: &mut [u8],
    at: usize,
    prev: &[u8],
    same: &mut usize,
) -> Copied {
    use core::arch::x86_64::{
        __m256i, _mm256_cmpeq_epi8, _mm256_loadu_si256, _mm256_movemask_epi8, _mm256_or_si256,
        _mm256_set1_epi8, _mm256_storeu_si256,
    };
    let lf = _mm256_set1_epi8(b'\n' as i8);
    let cr = _mm256_set1_epi8(b'\r' as i8);
    let room = dst.len().saturating_sub(at);
    // While `open`, `dst[..at + i]` all equals `prev` (and `*same` is stale); the compare
    // below then only decides whether it stays open, so that no load waits on the last.
    let mut open = *same == at;
    let mut s = *same;
    let mut i = 0;
    while i + 32 <= src.len() && i + 32 <= room {
        let to = at + i;
        // SAFETY: `i + 32 <= src.len()`: the load is in bounds; `loadu` has no alignment
        // requirement.
        let v = unsafe { _mm256_loadu_si256(src.as_ptr().add(i).cast::<__m256i>()) };
        // SAFETY: `to + 32 = at + i + 32 <= at + room = dst.len()` (`room` is
        // `dst.len() - at`, and positive here): the store is in bounds; `storeu` has no
        // alignment requirement. Bytes past the line's end are written too: they lie
        // beyond what the caller counts as copied.
        unsafe { _mm256_storeu_si256(dst.as_mut_ptr().add(to).cast::<__m256i>(), v) };
        let ends = _mm256_movemask_epi8(_mm256_or_si256(
            _mm256_cmpeq_epi8(v, lf),
            _mm256_cmpeq_epi8(v, cr),
        )) as u32;
        // Bytes of the line in this load.
        let line = ends.trailing_zeros() as usize;
        if open {
            let equal = if to + 32 <= prev.len() {
                // SAFETY: `to + 32 <= prev.len()`: in bounds.
                let p = unsafe { _mm256_loadu_si256(prev.as_ptr().add(to).cast::<__m256i>()) };
                (!(_mm256_movemask_epi8(_mm256_cmpeq_epi8(v, p)) as u32)).trailing_zeros() as usize
            } else {
                let n = line.min(32);
                common_prefix(&src[i..i + n], prev.get(to..).unwrap_or_default(), n)
            };
            if equal < line.min(32) {
                open = false;
                s = to + equal;
            }
        }
        if ends != 0 {
            *same = if open { to + line } else { s };
            return Copied::Line(i + line);
        }
        i += 32;
    }
    if open {
        s = at + i;
    }
    let copied = copy_rest(src, i, dst, at, prev, &mut s, open);
    if copied != Copied::NoRoom {
        *same = s;
    }
    copied
}

/// Where a skipped subtree stands between two bytes of a stream: the state of the
/// scanner's `skip_nest`, carried from one block to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Nest {
    /// Open brackets (of either kind) not yet closed.
    pub(crate) depth: u32,
    /// Inside a string.
    pub(crate) in_str: bool,
    /// Inside a string, and the next byte is escaped.
    pub(crate) esc: bool,
}

/// What one block did to a skipped subtree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// The subtree closed at this byte of the block.
    Closed(usize),
    /// The subtree goes on past the block; the state is updated. `quoteless_string`: the
    /// whole block was string contents (a long string: searching for its end with
    /// `memchr` is faster than classifying it).
    Open { quoteless_string: bool },
    /// The block has a backslash outside strings (not JSON; the scanner ignores it there
    /// while the classification would take it for an escape): it is to be read byte by
    /// byte. The state is unchanged.
    Bytewise,
}

/// Where [`skip_blocks`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Blocks {
    /// The subtree closed; the position after its closing bracket.
    Closed(usize),
    /// The block at this position is to be read byte by byte ([`Step::Bytewise`]).
    Bytewise(usize),
    /// Fewer than 64 bytes remain from this position (possibly none).
    Short(usize),
}

/// Reads the whole 64-byte blocks of a skipped subtree in `input` from `i`, as the
/// scanner's `skip_nest` reads them byte by byte ([`skip_block`]); a long string's end is
/// searched with `memchr` ([`string_end`]) once a block was all string contents.
pub(crate) fn skip_blocks(input: &[u8], i: usize, avx2: Option<Avx2>, nest: &mut Nest) -> Blocks {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    if avx2.is_some() {
        // SAFETY: an `Avx2` exists only where the CPU has AVX2 (`Avx2::detect`).
        #[allow(unsafe_code)]
        return unsafe { skip_blocks_avx2(input, i, nest) };
    }
    let _ = avx2;
    skip_blocks_with(input, i, nest, |block| classify(block, None), prefix_xor)
}

/// [`skip_blocks`] compiled for AVX2 as a whole (see [`Index::build_from_avx2`]).
///
/// # Safety
///
/// The CPU must have AVX2 and `pclmulqdq`.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[allow(unsafe_code)]
#[target_feature(enable = "avx2,pclmulqdq")]
unsafe fn skip_blocks_avx2(input: &[u8], i: usize, nest: &mut Nest) -> Blocks {
    // SAFETY: this function runs with AVX2 and pclmulqdq (its caller's contract).
    skip_blocks_with(
        input,
        i,
        nest,
        |block| unsafe { classify_avx2(block) },
        |x| unsafe { prefix_xor_clmul(x) },
    )
}

#[inline(always)]
fn skip_blocks_with(
    input: &[u8],
    mut i: usize,
    nest: &mut Nest,
    classify: impl Fn(&[u8; 64]) -> Masks,
    prefix_xor: impl Fn(u64) -> u64,
) -> Blocks {
    let n = input.len();
    loop {
        let Some(Ok(block)) = input.get(i..i + 64).map(<&[u8; 64]>::try_from) else {
            return Blocks::Short(i);
        };
        match skip_block(block, nest, &classify, &prefix_xor) {
            Step::Closed(at) => return Blocks::Closed(i + at + 1),
            Step::Bytewise => return Blocks::Bytewise(i),
            Step::Open { quoteless_string } => {
                i += 64;
                if quoteless_string {
                    // Long text: find its end with `memchr`, then go on.
                    let from = if nest.esc { i + 1 } else { i };
                    match string_end(input, from.min(n)) {
                        Ok(q) => {
                            i = q + 1;
                            nest.in_str = false;
                            nest.esc = false;
                        }
                        Err(escaped) => {
                            nest.esc = if from > n { true } else { escaped };
                            return Blocks::Short(n);
                        }
                    }
                }
            }
        }
    }
}

/// Reads one 64-byte block of a skipped subtree, as the scanner's `skip_nest` reads it
/// byte by byte: strings skipped (a quote after an odd run of backslashes is escaped),
/// brackets of either kind counted.
#[inline(always)]
fn skip_block(
    block: &[u8; 64],
    nest: &mut Nest,
    classify: &impl Fn(&[u8; 64]) -> Masks,
    prefix_xor: &impl Fn(u64) -> u64,
) -> Step {
    let Masks {
        mut quotes,
        backslashes,
        opens,
        closes,
    } = classify(block);
    // Quotes right after a backslash, or first in the block when it starts escaped.
    let mut maybe = quotes & ((backslashes << 1) | u64::from(nest.esc));
    while maybe != 0 {
        let at = maybe.trailing_zeros() as usize;
        let run = block[..at]
            .iter()
            .rev()
            .take_while(|&&b| b == b'\\')
            .count();
        // A run from the block's start continues the escape carried in.
        let escaped = if run == at {
            (run + usize::from(nest.esc)) % 2 == 1
        } else {
            run % 2 == 1
        };
        if escaped {
            quotes &= !(1u64 << at);
        }
        maybe &= maybe - 1;
    }
    let inside = prefix_xor(quotes) ^ 0u64.wrapping_sub(u64::from(nest.in_str));
    if backslashes & !inside != 0 {
        return Step::Bytewise;
    }
    let opens = opens & !inside;
    let closes = closes & !inside;
    let mut m = opens | closes;
    let mut depth = nest.depth;
    while m != 0 {
        let bit = m & m.wrapping_neg();
        if opens & bit != 0 {
            depth = depth.saturating_add(1);
        } else {
            depth -= 1;
            if depth == 0 {
                return Step::Closed(bit.trailing_zeros() as usize);
            }
        }
        m &= m - 1;
    }
    let quoteless_string = nest.in_str && quotes == 0;
    nest.depth = depth;
    nest.in_str = inside >> 63 == 1;
    // The escape carried out: the trailing run of backslashes (inside a string, or the
    // block went bytewise above).
    let trailing = (!backslashes).leading_zeros() as usize;
    nest.esc = if trailing == 64 {
        nest.esc
    } else {
        trailing % 2 == 1
    };
    Step::Open { quoteless_string }
}

/// The masks of the last, partial block of `bytes` (from `start`): the 64 bytes that end
/// the input, classified in place and shifted down, when the input has 64 bytes; else a
/// zero-padded copy. (Copying the tail and loading it back as a vector, as the short case
/// does, stalls on store forwarding: measured, a third of a short event's indexing.)
#[inline(always)]
fn tail_masks(bytes: &[u8], start: usize, classify: &impl Fn(&[u8; 64]) -> Masks) -> Masks {
    let n = bytes.len();
    match bytes.get(n.wrapping_sub(64)..).map(<&[u8; 64]>::try_from) {
        Some(Ok(last)) => {
            let m = classify(last);
            // `last` starts `64 - (n - start)` bytes before `start`.
            let shift = 64 - (n - start);
            Masks {
                quotes: m.quotes >> shift,
                backslashes: m.backslashes >> shift,
                opens: m.opens >> shift,
                closes: m.closes >> shift,
            }
        }
        _ => {
            let mut tail = [0u8; 64];
            tail[..n - start].copy_from_slice(&bytes[start..]);
            classify(&tail)
        }
    }
}

impl Index {
    /// Whether this index classifies with AVX2 (detected when it was made): what the
    /// other vector paths of the event ([`copy_line`]) are told.
    pub(crate) fn avx2(&self) -> Option<Avx2> {
        self.avx2
    }

    /// An empty index (heap-allocated once per SSE body, beside the held-event buffer).
    pub(crate) fn new() -> Index {
        Index {
            avx2: Avx2::detect().filter(|_| !swar_index()),
            #[cfg(any(test, fuzzing))]
            swar: swar_index(),
            base: 0,
            words: 0,
            quotes: [0; WORDS],
            opens: [0; WORDS],
            closes: [0; WORDS],
            backslashes: [0; WORDS],
        }
    }

    /// An index that classifies as builds without vector instructions do (tests and
    /// fuzzing compare the two).
    #[cfg(any(test, fuzzing))]
    pub(crate) fn word_at_a_time() -> Index {
        SWAR_INDEX.with(|s| s.set(true));
        let index = Index::new();
        SWAR_INDEX.with(|s| s.set(false));
        index
    }

    /// Indexes `bytes` (at most [`MAX_BYTES`]). False when the event cannot be indexed
    /// (too long, or a backslash outside its strings: see the module docs); the index is
    /// then not to be used.
    #[cfg(test)]
    pub(crate) fn build(&mut self, bytes: &[u8]) -> bool {
        self.build_from(bytes, 0)
    }

    /// Indexes `bytes[from..]`, `from` being outside any string and not escaped (a
    /// member boundary of the root object): the index covers only those bytes, and the
    /// queries answer for positions below `from` as for unknown ones (no quote, no
    /// closing bracket, a backslash).
    pub(crate) fn build_from(&mut self, bytes: &[u8], from: usize) -> bool {
        #[cfg(any(test, fuzzing))]
        if self.swar {
            return self.build_from_with(bytes, from, classify_swar, prefix_xor);
        }
        #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
        if self.avx2.is_some() {
            // SAFETY: an `Avx2` exists only where the CPU has AVX2 (`Avx2::detect`).
            #[allow(unsafe_code)]
            return unsafe { self.build_from_avx2(bytes, from) };
        }
        self.build_from_with(bytes, from, |block| classify(block, None), prefix_xor)
    }

    /// [`Index::build_from`] compiled for AVX2 as a whole, so that the classification is
    /// inlined into the loop and its constants loaded once (a call per block to a
    /// `#[target_feature]` function cannot be inlined into code without the feature).
    ///
    /// # Safety
    ///
    /// The CPU must have AVX2 and `pclmulqdq`.
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    #[allow(unsafe_code)]
    #[target_feature(enable = "avx2,pclmulqdq")]
    unsafe fn build_from_avx2(&mut self, bytes: &[u8], from: usize) -> bool {
        // SAFETY: this function runs with AVX2 and pclmulqdq (its caller's contract).
        self.build_from_with(
            bytes,
            from,
            |block| unsafe { classify_avx2(block) },
            |x| unsafe { prefix_xor_clmul(x) },
        )
    }

    #[inline(always)]
    fn build_from_with(
        &mut self,
        bytes: &[u8],
        from: usize,
        classify: impl Fn(&[u8; 64]) -> Masks,
        prefix_xor: impl Fn(u64) -> u64,
    ) -> bool {
        if bytes.len() > MAX_BYTES || from > bytes.len() {
            return false;
        }
        // The blocks start at `from`, not at the event's start: a resumed event's rest
        // (an Anthropic delta's last 50 bytes) is then often one block, not two.
        self.base = from;
        self.words = (bytes.len() - from).div_ceil(64);
        // Carried from one word to the next: whether the previous byte was a backslash,
        // and whether the word ended inside a string.
        let mut prev_backslash = 0u64;
        let mut in_string = 0u64;
        for w in 0..self.words {
            let start = from + w * 64;
            let m = match bytes.get(start..start + 64).map(<&[u8; 64]>::try_from) {
                Some(Ok(block)) => classify(block),
                _ => tail_masks(bytes, start, &classify),
            };
            let Masks {
                mut quotes,
                backslashes,
                opens,
                closes,
            } = m;
            // A quote right after a backslash may be escaped: count the run (rare).
            let mut maybe = quotes & ((backslashes << 1) | prev_backslash);
            while maybe != 0 {
                let at = start + maybe.trailing_zeros() as usize;
                let run = bytes[from..at]
                    .iter()
                    .rev()
                    .take_while(|&&b| b == b'\\')
                    .count();
                if run % 2 == 1 {
                    quotes &= !(1u64 << (at - start));
                }
                maybe &= maybe - 1;
            }
            prev_backslash = backslashes >> 63;
            let inside = prefix_xor(quotes) ^ in_string;
            in_string = 0u64.wrapping_sub(inside >> 63);
            if backslashes & !inside != 0 {
                return false;
            }
            self.quotes[w] = quotes;
            self.backslashes[w] = backslashes;
            self.opens[w] = opens & !inside;
            self.closes[w] = closes & !inside;
        }
        true
    }

    /// Whether bytes `from..to` hold a backslash (an escape in a string); true for a
    /// range the index does not cover.
    #[inline(always)]
    pub(crate) fn has_backslash(&self, from: usize, to: usize) -> bool {
        let Some(from) = from.checked_sub(self.base) else {
            return to > from;
        };
        let to = to.saturating_sub(self.base);
        let (first, last) = (from / 64, to.saturating_sub(1) / 64);
        if to <= from || last >= self.words {
            return to > from;
        }
        let low = u64::MAX << (from % 64);
        let high = u64::MAX >> (63 - (to - 1) % 64);
        if first == last {
            return self.backslashes[first] & low & high != 0;
        }
        self.backslashes[first] & low != 0
            || self.backslashes[first + 1..last].iter().any(|&w| w != 0)
            || self.backslashes[last] & high != 0
    }

    /// The first string-delimiting quote at or after byte `from`.
    #[inline]
    pub(crate) fn next_quote(&self, from: usize) -> Option<usize> {
        let from = from.checked_sub(self.base)?;
        let mut w = from / 64;
        if w >= self.words {
            return None;
        }
        let mut m = self.quotes[w] & (u64::MAX << (from % 64));
        loop {
            if m != 0 {
                return Some(self.base + w * 64 + m.trailing_zeros() as usize);
            }
            w += 1;
            if w >= self.words {
                return None;
            }
            m = self.quotes[w];
        }
    }

    /// The byte after the bracket that closes an object or array whose contents start at
    /// `from` (just past its opening bracket): brackets of either kind are counted, as the
    /// scanner counts them in a skipped subtree.
    #[inline]
    pub(crate) fn nest_end(&self, from: usize) -> Option<usize> {
        let from = from.checked_sub(self.base)?;
        let mut w = from / 64;
        if w >= self.words {
            return None;
        }
        let keep = u64::MAX << (from % 64);
        let mut opens = self.opens[w] & keep;
        let mut closes = self.closes[w] & keep;
        let mut depth = 1u32;
        loop {
            // Events have few brackets: visit each (no `popcnt` in the x86_64 baseline to
            // take whole words at once).
            let mut m = opens | closes;
            while m != 0 {
                let bit = m & m.wrapping_neg();
                if opens & bit != 0 {
                    depth += 1;
                } else {
                    depth -= 1;
                    if depth == 0 {
                        return Some(self.base + w * 64 + bit.trailing_zeros() as usize + 1);
                    }
                }
                m &= m - 1;
            }
            w += 1;
            if w >= self.words {
                return None;
            }
            opens = self.opens[w];
            closes = self.closes[w];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference: the quotes that delimit strings and the brackets outside them, byte by
    /// byte, or `None` for a backslash outside strings.
    fn naive(b: &[u8]) -> Option<(Vec<usize>, Vec<usize>, Vec<usize>)> {
        let (mut q, mut o, mut c) = (vec![], vec![], vec![]);
        let (mut in_str, mut esc) = (false, false);
        for (i, &x) in b.iter().enumerate() {
            if in_str {
                if esc {
                    esc = false;
                } else if x == b'\\' {
                    esc = true;
                } else if x == b'"' {
                    in_str = false;
                    q.push(i);
                }
            } else {
                match x {
                    b'"' => {
                        in_str = true;
                        q.push(i);
                    }
                    b'\\' => return None,
                    b'{' | b'[' => o.push(i),
                    b'}' | b']' => c.push(i),
                    _ => {}
                }
            }
        }
        Some((q, o, c))
    }

    fn bits(words: &[u64], n: usize) -> Vec<usize> {
        (0..n)
            .filter(|&i| words[i / 64] >> (i % 64) & 1 == 1)
            .collect()
    }

    fn check(b: &[u8]) {
        let mut ix = Index::new();
        let ok = ix.build(b);
        match naive(b) {
            None => assert!(!ok, "{:?}", String::from_utf8_lossy(b)),
            Some((q, o, c)) => {
                assert!(ok, "{:?}", String::from_utf8_lossy(b));
                assert_eq!(bits(&ix.quotes, b.len()), q);
                assert_eq!(bits(&ix.opens, b.len()), o);
                assert_eq!(bits(&ix.closes, b.len()), c);
            }
        }
        // Built from after the leading blanks (outside strings, as a resume mark is):
        // the same positions, answered in the event's coordinates.
        let from = b.iter().take_while(|&&c| c == b' ').count();
        if from > 0 {
            let mut ix = Index::new();
            let ok = ix.build_from(b, from);
            match naive(b) {
                None => assert!(!ok),
                Some((q, o, _)) => {
                    assert!(ok);
                    let shift = |v: Vec<usize>| v.into_iter().map(|i| i + from).collect::<Vec<_>>();
                    assert_eq!(shift(bits(&ix.quotes, b.len() - from)), q);
                    assert_eq!(shift(bits(&ix.opens, b.len() - from)), o);
                    assert_eq!(ix.next_quote(from), q.first().copied());
                    assert_eq!(ix.next_quote(from - 1), None, "below the base");
                    assert!(ix.has_backslash(from - 1, from + 1), "below the base");
                }
            }
        }
    }

    #[test]
    fn matches_a_byte_by_byte_reading_on_every_short_string() {
        // Every string over these bytes up to length 7, at offsets that cross words.
        let alphabet = b"\"\\{]a";
        let mut s = Vec::new();
        for len in 0..=7u32 {
            for mut k in 0..alphabet.len().pow(len) {
                s.clear();
                for _ in 0..len {
                    s.push(alphabet[k % alphabet.len()]);
                    k /= alphabet.len();
                }
                for pad in [0usize, 60, 100] {
                    let mut b = vec![b' '; pad];
                    b.extend_from_slice(&s);
                    check(&b);
                }
            }
        }
    }

    #[test]
    fn vector_classification_matches_the_portable_one() {
        let mut block = [0u8; 64];
        for seed in 0..4096u64 {
            let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            for b in &mut block {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Every byte value, and the interesting ones often.
                *b = match x % 4 {
                    0 => b"\"\\{}[]{"[(x >> 8) as usize % 7],
                    _ => (x >> 16) as u8,
                };
            }
            let portable = classify_portable(&block);
            assert_eq!(classify_swar(&block), portable);
            assert_eq!(classify(&block, None), portable);
            assert_eq!(classify(&block, Avx2::detect()), portable);
        }
    }

    /// `copy_line` against the obvious reading, with AVX2 and without: lines of every
    /// length up to 100 bytes ending in `\n`, `\r` or not at all, copied to every offset
    /// of a buffer that may be too small, after a `prev` that differs at every place.
    #[test]
    fn copy_line_copies_finds_the_end_and_measures_the_prefix() {
        let avx2 = Avx2::detect();
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        for round in 0..20_000 {
            let len = next(101) as usize;
            let mut src: Vec<u8> = (0..len).map(|_| b"ab\"{"[next(4) as usize]).collect();
            match next(3) {
                0 => src.push(b'\n'),
                1 => src.push(b'\r'),
                _ => {}
            }
            src.extend_from_slice(b"data: more\n");
            let at = next(40) as usize;
            let room = at + next(140) as usize;
            // `prev` equals what `dst` will hold up to `differ` (if that is in range).
            let mut expect_dst = vec![b'x'; at];
            let line_end = src.iter().position(|&b| b == b'\n' || b == b'\r').unwrap();
            let body = &src[..line_end];
            expect_dst.extend_from_slice(body);
            let mut prev = expect_dst.clone();
            prev.extend_from_slice(b"tail");
            let differ = next(prev.len() as u64 + 1) as usize;
            if let Some(b) = prev.get_mut(differ) {
                *b ^= 0x40;
            }
            prev.truncate(next(prev.len() as u64 + 1) as usize);
            let full_prefix = common_prefix(&expect_dst, &prev, usize::MAX);
            // `same` covers all of `dst[..at]` (open) or stops before it (closed).
            let open = round % 3 != 0 || at == 0;
            let same_in = if open { at.min(full_prefix) } else { at / 2 };
            let fits = expect_dst.len() <= room;
            for vector in [None, avx2] {
                let mut dst = vec![b'x'; room];
                let mut same = same_in;
                let got = copy_line(&src, &mut dst, at, &prev, &mut same, vector);
                if !fits {
                    assert_eq!(got, Copied::NoRoom, "round {round}");
                    assert_eq!(same, same_in);
                    continue;
                }
                assert_eq!(got, Copied::Line(line_end), "round {round}");
                assert_eq!(&dst[..expect_dst.len()], &expect_dst[..], "round {round}");
                let want = if same_in == at { full_prefix } else { same_in };
                assert_eq!(same, want, "round {round} vector {vector:?}");
            }
            // Without a line end: all of it is copied.
            let mut dst = vec![0; at + body.len()];
            let mut same = 0;
            for vector in [None, avx2] {
                let got = copy_line(body, &mut dst, at, &[], &mut same, vector);
                assert_eq!(got, Copied::All);
                assert_eq!(&dst[at..], body);
            }
        }
    }

    #[test]
    fn carry_less_prefix_xor_matches_the_shifts() {
        if Avx2::detect().is_none() {
            return;
        }
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Sparse words too: quotes are a few bits per block.
            for w in [x, x & (x >> 3) & (x >> 7), 1 << (x % 64), 0, u64::MAX] {
                // SAFETY: `Avx2::detect()` checked `pclmulqdq`.
                #[allow(unsafe_code)]
                let clmul = unsafe { prefix_xor_clmul(w) };
                assert_eq!(clmul, prefix_xor(w), "{w:#x}");
            }
        }
    }

    #[test]
    fn runs_of_backslashes_across_words() {
        for run in 0..70 {
            for at in [0usize, 1, 30, 62, 63, 64, 65, 120] {
                let mut b = vec![b'x'; at];
                b.insert(0, b'"');
                b.extend(std::iter::repeat(b'\\').take(run));
                b.extend_from_slice(b"\"}\"{");
                check(&b);
            }
        }
    }

    #[test]
    fn finds_string_ends_and_nest_ends() {
        let b = br#"{"a":"x\"}","b":[{"c":"]"},[1,{}]],"d":{}}"#;
        let mut ix = Index::new();
        assert!(ix.build(b));
        assert_eq!(ix.next_quote(6), Some(10));
        let arr = b.iter().position(|&c| c == b'[').unwrap();
        let end = ix.nest_end(arr + 1).unwrap();
        assert_eq!(&b[end..end + 4], br#","d""#);
        assert_eq!(ix.nest_end(1), Some(b.len()));
        assert_eq!(ix.nest_end(b.len() - 1), Some(b.len()));
        assert_eq!(ix.next_quote(b.len()), None);
        let slash = b.iter().position(|&c| c == b'\\').unwrap();
        for from in 0..b.len() {
            for to in from..=b.len() {
                assert_eq!(ix.has_backslash(from, to), (from..to).contains(&slash));
            }
        }
        assert!(!ix.build(&[0; MAX_BYTES + 1]));
    }

    #[test]
    fn long_nests_balance_across_many_words() {
        let mut b = Vec::new();
        for _ in 0..300 {
            b.extend_from_slice(b"[\"}\"");
        }
        b.extend_from_slice(&[b'}'; 300]);
        let mut ix = Index::new();
        assert!(ix.build(&b));
        assert_eq!(ix.nest_end(1), Some(b.len()));
        assert_eq!(ix.nest_end(5), Some(b.len() - 1));
        assert_eq!(ix.nest_end(b.len() - 1), Some(b.len()));
        check(&b);
    }
}
