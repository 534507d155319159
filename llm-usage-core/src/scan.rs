//! A resumable, zero-copy JSON scanner that reports only the values at watched paths.
//!
//! # Why not a JSON parser?
//!
//! An LLM response is mostly text the model wrote: content strings, tool-call arguments,
//! embeddings. The handful of values we need (`model`, `usage.prompt_tokens`, ...) sit at
//! known paths near the top of each document. A general parser would build a tree or at
//! least validate and decode every string; this scanner instead walks the document
//! structure and spends almost no time on anything outside a watched path:
//!
//! * the contents of a skipped string are searched for quotes only (`memchr`, or a
//!   word-at-a-time search for short strings, in the private `swar` module): a quote
//!   after an odd run of backslashes is escaped, so the `\n`s of long text cost nothing.
//!   Only keys and watched strings stop at backslashes, to decode them;
//! * a value whose key matches no watched path is skipped as a *dead* subtree, where only
//!   brackets and string boundaries are tracked (a nesting counter, not a stack), 64
//!   bytes at a time where the build has vector instructions (the private `index` module);
//! * keys on a live path are compared against the watch table, and only leaf values of
//!   watched paths are copied, into a fixed buffer.
//!
//! # Resumable
//!
//! Input arrives in chunks split at arbitrary bytes (inside a key, an escape, a number).
//! All state lives in [`Scanner`], a fixed-size struct: feeding `ab` then `c` is the
//! same as feeding `abc`. Nothing grows with the input.
//!
//! # Limits
//!
//! * Live nesting (objects on a watched path) is at most [`MAX_LIVE_DEPTH`]; dead nesting
//!   is a `u32` counter, so 100,000 levels cost nothing.
//! * Keys longer than [`KEY_CAP`] bytes never match a watched key.
//! * Captured values longer than [`VALUE_CAP`] bytes are dropped (reported nowhere),
//!   which leaves the record field unknown rather than truncated.
//!
//! # Whole events
//!
//! An SSE event held whole is not fed byte by byte: `Scanner::scan_whole` (in the
//! private `whole` module) walks it over its structural index and reports the same values,
//! or gives up and lets [`Scanner::feed`] read it.
//!
//! # Leniency
//!
//! Dead subtrees are not validated (a `]` may close a `{` there): that keeps skipping
//! fast, and nothing inside a dead subtree can affect the record. Structure on a live
//! path *is* checked; a syntax error there fails the document, and the framing above
//! decides what a failed document means (usually: ignore that event).

use crate::index::{skip_blocks, Avx2, Blocks, Nest, VECTOR};
use crate::swar::{find_quote_or_backslash, find_structural, string_end};

mod whole;

#[cfg(fuzzing)]
pub(crate) use whole::resume_point;
pub(crate) use whole::Replay;

/// Longest key that can match a watched path segment.
pub const KEY_CAP: usize = 64;
/// Longest captured scalar (model names, numbers).
pub const VALUE_CAP: usize = 256;
/// Deepest object nesting along a watched path.
pub const MAX_LIVE_DEPTH: usize = 8;

/// One watched path and what it feeds. `T` is the consumer's target type.
#[derive(Debug, Clone, Copy)]
pub struct Watch<T: 'static> {
    /// Object keys from the document root to the value.
    pub path: &'static [&'static str],
    /// What the value feeds.
    pub target: T,
}

/// A scalar value found at a watched path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scalar<'a> {
    /// A JSON number, as its source text.
    Number(&'a [u8]),
    /// A JSON string, escapes decoded (bytes; valid UTF-8 unless the input was not).
    String(&'a [u8]),
    /// `true` or `false`.
    Bool(bool),
    /// `null`.
    Null,
}

/// Receives what the scanner finds.
pub trait Sink<T: 'static> {
    /// A complete scalar at a watched leaf.
    fn value(&mut self, target: &T, value: Scalar<'_>);
    /// A root value (document) ended; in array-roots mode, one element of the root array.
    fn document_end(&mut self) {}
    /// Whether string values for this target are streamed through [`Sink::string_chunk`]
    /// instead of being captured (for values larger than [`VALUE_CAP`], e.g. base64).
    fn streams(&self, _target: &T) -> bool {
        false
    }
    /// A streamed string starts.
    fn string_start(&mut self, _target: &T) {}
    /// Decoded bytes of a streamed string.
    fn string_chunk(&mut self, _target: &T, _bytes: &[u8]) {}
    /// A streamed string ended.
    fn string_end(&mut self, _target: &T) {}
    /// Whether this sink takes a streamed string of this target as raw JSON contents,
    /// through [`Sink::string_raw`], wherever it can. The default: no.
    fn counts_raw(&self, _target: &T) -> bool {
        false
    }
    /// Raw contents of a streamed string (a sink whose [`Sink::counts_raw`] says so): from
    /// where the scanner stands inside the string, not inside an escape, to the end of the
    /// input it holds. The sink takes what it can of them and returns how many bytes it
    /// took: a prefix that holds no unescaped quote and ends neither inside an escape nor
    /// after a high-surrogate escape (`\ud83d` without its pair). What it took stands for
    /// that prefix decoded, as if handed over through [`Sink::string_chunk`]; the scanner
    /// decodes and hands over the rest as usual, asking again after each escape. The
    /// default takes nothing.
    fn string_raw(&mut self, _target: &T, _raw: &[u8]) -> usize {
        0
    }
    /// Whether reporting `value` for `target` now would change nothing: the sink already
    /// holds it as if it had been reported. When a whole event repeats the previous one's
    /// envelope, the scanner reports the values it read there again; those this says are
    /// settled it leaves out (see [`Sink::epoch`]). The default: never settled.
    fn settled(&self, _target: &T, _value: Scalar<'_>) -> bool {
        false
    }
    /// A number that moves whenever an answer of [`Sink::settled`] may change (a value
    /// reported or committed, a record closed). While it stays, values found settled stay
    /// settled, and the scanner does not ask again about values whose bytes are the same.
    /// `None` (the default): answers are not kept.
    fn epoch(&self) -> Option<u64> {
        None
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between documents (also the initial state).
    Between,
    /// Expecting a value.
    Value,
    /// After `{`: a key or `}`.
    ObjFirst,
    /// After `,` in an object: a key.
    ObjKey,
    /// Inside a key string.
    Key,
    /// After a key: `:`.
    Colon,
    /// After a value inside an object: `,` or `}`.
    After,
    /// After `[` of a root array: an element or `]`.
    RootArrFirst,
    /// After an element of a root array: `,` or `]`.
    RootArrAfter,
    /// After `[` of an array on a watched path: an element or `]`.
    ArrFirst,
    /// After an element of an array on a watched path: `,` or `]`.
    ArrAfter,
    /// Inside a watched string value.
    Str,
    /// Inside a watched number or literal.
    Scalar,
    /// Inside an unwatched string value.
    SkipStr,
    /// Inside an unwatched number or literal.
    SkipScalar,
    /// Inside an unwatched object or array.
    SkipNest,
    /// A syntax error on a live path: everything is ignored until [`Scanner::reset`].
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Esc {
    None,
    Backslash,
    /// Inside `\uXXXX`: digits read so far and the value accumulated.
    Hex(u8, u16),
}

/// Where decoded string bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dest {
    Key,
    Value,
    Stream,
}

/// The scanner. See the module docs.
#[derive(Clone)]
pub struct Scanner<T: 'static> {
    watches: &'static [Watch<T>],
    /// What the scanner derives from its table, computed once per table (see
    /// [`Derived::of`]).
    derived: &'static Derived,
    state: State,
    /// Candidate masks of the open live objects.
    stack: [u64; MAX_LIVE_DEPTH],
    depth: usize,
    /// Arrays on a watched path are transparent: each element stands where the array
    /// stands (`choices[].delta.content` is watched as `choices.delta.content`). The
    /// candidates each element starts from, per open live array.
    arr_mask: [u64; MAX_LIVE_DEPTH],
    arr_depth: usize,
    /// The open live containers (`depth + arr_depth` of them), innermost last: bit `i`
    /// set when container `i` is an array (objects and arrays interleave:
    /// `candidates[].content.parts[].text`).
    kinds: u16,
    /// Candidates for the value about to start and the watches ending exactly there.
    cur_mask: u64,
    cur_leaf: u64,
    in_root_array: bool,
    array_roots: bool,
    multi_document: bool,
    documents: u64,
    esc: Esc,
    high_surrogate: u16,
    skip_depth: u32,
    skip_in_str: bool,
    skip_esc: bool,
    key: [u8; KEY_CAP],
    key_len: usize,
    key_overflow: bool,
    buf: [u8; VALUE_CAP],
    buf_len: usize,
    buf_overflow: bool,
    streaming: bool,
    started: bool,
    /// Whether a root array (a sequence of documents, `array_roots`) was opened.
    root_array: bool,
    work: ScanWork,
}

/// Work a [`Scanner`] did since it was created: deterministic counts (no clock) that tests
/// use to show time is linear in the input, whatever the machine is doing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanWork {
    /// Bytes handed to [`Scanner::feed`] (a byte fed twice counts twice).
    pub fed_bytes: u64,
    /// Iterations of the streaming scanner's state loop (each reads at least one token, or
    /// a run of skipped bytes).
    pub steps: u64,
    /// Bytes of whole events walked from their structural index (`scan_whole`).
    pub walked_bytes: u64,
}

impl<T: 'static> core::fmt::Debug for Scanner<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Scanner")
            .field("state", &self.state)
            .field("depth", &self.depth)
            .field("documents", &self.documents)
            .finish_non_exhaustive()
    }
}

/// Whether two path segments are equal (identical literals are usually one allocation,
/// so the address is compared first).
fn same(a: &str, b: &str) -> bool {
    core::ptr::eq(a, b) || eq_bytes(a.as_bytes(), b.as_bytes())
}

/// Byte equality for short keys: length and first byte settle almost every comparison
/// without the call a slice comparison makes.
#[inline]
fn eq_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.first() == b.first() && a == b
}

/// What a scanner derives from its watch table: the same for every scanner of the table.
///
/// Deriving it costs O(watches² × depth) segment comparisons, about 17,000 instructions
/// for the OpenAI response table, and a small exchange built it once per body: a third of
/// what reading a 700-byte reply cost (`benches`, callgrind). The tables are `'static`,
/// so it is computed once per table, kept for the life of the program (one 4.4 KB
/// allocation per table: the tables are a fixed set), and found again by the table's
/// address.
struct Derived {
    all: u64,
    /// Per depth, a 64-bit Bloom filter of the watched segments' [`signature`]s.
    bloom: [u64; MAX_LIVE_DEPTH],
    /// Per depth, the watches that go deeper ([`longer_masks`]).
    longer: [u64; MAX_LIVE_DEPTH + 1],
    /// Watches grouped by shared path prefix, for key matching.
    classes: Classes,
}

impl Derived {
    fn new<T>(watches: &[Watch<T>]) -> Derived {
        Derived {
            all: all_mask(watches),
            bloom: blooms(watches),
            longer: longer_masks(watches),
            classes: Classes::new(watches),
        }
    }

    /// The derived data of a table: from the cache, or computed and cached.
    fn of<T: 'static>(watches: &'static [Watch<T>]) -> &'static Derived {
        type Cache = Vec<(usize, usize, &'static Derived)>;
        // A process-wide cache held by a static: what it holds stays reachable (leak
        // checkers agree), and every thread shares one copy per table. Reads take a read
        // lock; a table is computed once, under the write lock. A poisoned lock (a panic
        // elsewhere while it was held) still holds a consistent list: push is the only
        // write.
        static CACHE: std::sync::RwLock<Cache> = std::sync::RwLock::new(Vec::new());
        // Distinct static tables have distinct addresses; empty tables derive the same.
        let key = (watches.as_ptr() as usize, watches.len());
        let find = |c: &Cache| c.iter().find(|e| (e.0, e.1) == key).map(|e| e.2);
        if let Some(d) = find(&CACHE.read().unwrap_or_else(|e| e.into_inner())) {
            return d;
        }
        let mut c = CACHE.write().unwrap_or_else(|e| e.into_inner());
        if let Some(d) = find(&c) {
            return d;
        }
        let d: &'static Derived = Box::leak(Box::new(Derived::new(watches)));
        c.push((key.0, key.1, d));
        d
    }
}

/// Watches grouped by shared path prefix, per depth (see [`Classes::new`]).
#[derive(Clone)]
struct Classes {
    /// Per depth `d`: the watches that are the first (lowest index) of their class.
    reps: [u64; MAX_LIVE_DEPTH],
    /// Per depth `d` and representative: the watches of its class (those that share its
    /// `path[..=d]`); zero for a watch that represents no class there.
    members: [[u64; 64]; MAX_LIVE_DEPTH],
    /// Per depth `d`: the watches whose path ends there (leaves).
    leaves: [u64; MAX_LIVE_DEPTH],
    /// Per depth `d` and representative: its segment `path[d]`'s length ([`NO_KEY`]
    /// when no key can match it) and first eight bytes ([`head`]), kept here so that a
    /// key is compared with a representative without reading the watch table.
    lens: [[u8; 64]; MAX_LIVE_DEPTH],
    heads: [[u64; 64]; MAX_LIVE_DEPTH],
}

/// A segment length no key that is compared has ([`KEY_CAP`] at most).
const NO_KEY: u8 = u8::MAX;
const _: () = assert!(KEY_CAP < NO_KEY as usize);

/// The first eight bytes of `key` as a little-endian word, zero-padded.
fn head(key: &[u8]) -> u64 {
    match key.first_chunk::<8>() {
        Some(w) => u64::from_le_bytes(*w),
        None => {
            let mut w = 0u64;
            for (k, &c) in key.iter().enumerate() {
                w |= u64::from(c) << (8 * k);
            }
            w
        }
    }
}

impl Classes {
    /// Groups watches: at depth `d`, two watches are in one class when they share
    /// `path[..=d]`.
    ///
    /// Watches still candidates at depth `d` share `path[..d]` (they matched the same
    /// keys above), so comparing a key with one representative per class decides the
    /// whole class: OpenAI's eight `usage.*` paths cost one comparison, not eight, and a
    /// hit expands to its class with one mask (its members among the candidates), no
    /// string compared.
    /// Built once per table (see [`Derived`]), in O(watches² × depth) segment comparisons.
    fn new<T>(watches: &[Watch<T>]) -> Classes {
        let mut c = Classes::EMPTY;
        for (i, w) in watches.iter().enumerate() {
            // first[d]: the lowest index sharing `path[..=d]` with this watch.
            let mut first = [i; MAX_LIVE_DEPTH];
            for (j, v) in watches[..i].iter().enumerate().rev() {
                let shared = v
                    .path
                    .iter()
                    .zip(w.path)
                    .take_while(|(a, b)| same(a, b))
                    .count()
                    .min(MAX_LIVE_DEPTH);
                for f in &mut first[..shared] {
                    *f = j;
                }
            }
            for (d, &f) in first.iter().enumerate().take(w.path.len()) {
                c.members[d][f] |= 1 << i;
                if f == i {
                    c.represent(d, i, w.path[d]);
                }
            }
            if let Some(l) = c.leaves.get_mut(w.path.len().wrapping_sub(1)) {
                *l |= 1 << i;
            }
        }
        c
    }

    /// Makes watch `i` its class's representative at depth `d`, whose segment is `seg`.
    /// Not generic, and never inlined: the `.wasm` holds it once.
    #[inline(never)]
    fn represent(&mut self, d: usize, i: usize, seg: &str) {
        let seg = seg.as_bytes();
        self.reps[d] |= 1 << i;
        self.lens[d][i] = if seg.len() <= KEY_CAP {
            seg.len() as u8
        } else {
            NO_KEY
        };
        self.heads[d][i] = head(seg);
    }

    const EMPTY: Classes = Classes {
        reps: [0; MAX_LIVE_DEPTH],
        members: [[0; 64]; MAX_LIVE_DEPTH],
        leaves: [0; MAX_LIVE_DEPTH],
        // Read for representatives only, which `new` sets: all zeros, so that the
        // constant needs no data in the binary (0xFF filler made the `.wasm` 20 KB larger).
        lens: [[0; 64]; MAX_LIVE_DEPTH],
        heads: [[0; 64]; MAX_LIVE_DEPTH],
    };
}

/// A 6-bit signature of a key from its length and end bytes, for the per-depth Bloom
/// filters: two keys with different signatures differ.
#[inline]
fn signature(key: &[u8]) -> u32 {
    let first = u32::from(key.first().copied().unwrap_or(0));
    let last = u32::from(key.last().copied().unwrap_or(0));
    (key.len() as u32)
        .wrapping_mul(37)
        .wrapping_add(first.wrapping_mul(11))
        .wrapping_add(last)
        & 63
}

fn blooms<T>(watches: &[Watch<T>]) -> [u64; MAX_LIVE_DEPTH] {
    let mut bloom = [0u64; MAX_LIVE_DEPTH];
    for w in watches {
        for (b, seg) in bloom.iter_mut().zip(w.path) {
            *b |= 1 << signature(seg.as_bytes());
        }
    }
    bloom
}

/// JSON whitespace.
pub(crate) fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// The first position at or after `i` that is not JSON whitespace (or `b.len()`).
pub(crate) fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && is_ws(b[i]) {
        i += 1;
    }
    i
}

/// The mask with one bit per watch; checks the table's shape (at most 64 watches, paths
/// of 1 to `MAX_LIVE_DEPTH - 1` keys).
/// Per depth `d`, the watches whose path is longer than `d` keys (they continue below an
/// object opened at depth `d`).
fn longer_masks<T>(watches: &[Watch<T>]) -> [u64; MAX_LIVE_DEPTH + 1] {
    let mut m = [0u64; MAX_LIVE_DEPTH + 1];
    for (d, slot) in m.iter_mut().enumerate() {
        for (i, w) in watches.iter().enumerate() {
            if w.path.len() > d {
                *slot |= 1 << i;
            }
        }
    }
    m
}

fn all_mask<T>(watches: &[Watch<T>]) -> u64 {
    assert!(watches.len() <= 64, "at most 64 watched paths");
    debug_assert!(watches
        .iter()
        .all(|w| !w.path.is_empty() && w.path.len() < MAX_LIVE_DEPTH));
    if watches.len() == 64 {
        u64::MAX
    } else {
        (1u64 << watches.len()) - 1
    }
}

impl<T: 'static> Scanner<T> {
    /// A scanner for `watches` (at most 64; paths at most [`MAX_LIVE_DEPTH`] keys deep).
    ///
    /// `array_roots`: a top-level array is treated as a sequence of documents (its
    /// elements), as in Gemini's streamed JSON array. `multi_document`: several top-level
    /// values may follow one another (NDJSON, concatenated JSON); otherwise anything after
    /// the first document fails the scan.
    pub fn new(watches: &'static [Watch<T>], array_roots: bool, multi_document: bool) -> Self {
        let derived = Derived::of(watches);
        let all = derived.all;
        Scanner {
            watches,
            derived,
            state: State::Between,
            stack: [0; MAX_LIVE_DEPTH],
            depth: 0,
            arr_mask: [0; MAX_LIVE_DEPTH],
            arr_depth: 0,
            kinds: 0,
            cur_mask: all,
            cur_leaf: 0,
            in_root_array: false,
            array_roots,
            multi_document,
            documents: 0,
            esc: Esc::None,
            high_surrogate: 0,
            skip_depth: 0,
            skip_in_str: false,
            skip_esc: false,
            key: [0; KEY_CAP],
            key_len: 0,
            key_overflow: false,
            buf: [0; VALUE_CAP],
            buf_len: 0,
            buf_overflow: false,
            streaming: false,
            started: false,
            root_array: false,
            work: ScanWork::default(),
        }
    }

    /// The same as `Scanner::new(watches, array_roots, multi_document)`, in place.
    pub(crate) fn retarget(
        &mut self,
        watches: &'static [Watch<T>],
        array_roots: bool,
        multi_document: bool,
    ) {
        // The same table (an exchange's bodies start on the fallback dialect's, which is
        // often the detected one): what was derived from it stands.
        if !core::ptr::eq(self.watches, watches) {
            self.watches = watches;
            self.derived = Derived::of(watches);
        }
        self.work = ScanWork::default();
        self.restart(array_roots, multi_document);
    }

    /// The same as `Scanner::new(self.watches(), array_roots, multi_document)`, in place,
    /// keeping what was derived from the watch table: cheaper than building a new scanner
    /// and moving it (an exchange re-frames its bodies once the headers are known).
    pub fn restart(&mut self, array_roots: bool, multi_document: bool) {
        self.root_array = false;
        self.state = State::Between;
        self.depth = 0;
        self.arr_depth = 0;
        self.cur_mask = self.derived.all;
        self.cur_leaf = 0;
        self.in_root_array = false;
        self.array_roots = array_roots;
        self.multi_document = multi_document;
        self.documents = 0;
        self.esc = Esc::None;
        self.high_surrogate = 0;
        self.skip_depth = 0;
        self.skip_in_str = false;
        self.skip_esc = false;
        self.key_len = 0;
        self.key_overflow = false;
        self.buf_len = 0;
        self.buf_overflow = false;
        self.streaming = false;
        self.started = false;
    }

    /// Forgets the current document and starts afresh (the document count is kept).
    pub fn reset(&mut self) {
        self.state = State::Between;
        self.depth = 0;
        self.arr_depth = 0;
        self.in_root_array = false;
        self.esc = Esc::None;
        self.streaming = false;
        self.started = false;
    }

    /// The watch table.
    #[cfg_attr(not(feature = "__test-internals"), allow(dead_code))]
    pub fn watches(&self) -> &'static [Watch<T>] {
        self.watches
    }

    /// Documents completed since creation.
    pub fn documents(&self) -> u64 {
        self.documents
    }

    /// The work done since creation (or retargeting): kept across
    /// [`restart`](Self::restart) and [`reset`](Self::reset).
    pub fn work(&self) -> ScanWork {
        self.work
    }

    /// Whether a root array of documents was opened since [`restart`](Self::restart).
    pub fn saw_root_array(&self) -> bool {
        self.root_array
    }

    /// True between documents: nothing partial is pending.
    pub fn at_boundary(&self) -> bool {
        self.state == State::Between
    }

    /// True after a syntax error on a live path.
    pub fn failed(&self) -> bool {
        self.state == State::Failed
    }

    fn fail(&mut self) {
        self.state = State::Failed;
    }

    fn begin_root(&mut self) {
        self.cur_mask = self.derived.all;
        self.cur_leaf = 0;
        self.depth = 0;
        self.arr_depth = 0;
    }

    /// Open live containers, objects and arrays.
    #[inline]
    fn nest(&self) -> usize {
        self.depth + self.arr_depth
    }

    /// Opens a live object whose members are matched against `mask`.
    #[inline]
    fn open_object(&mut self, mask: u64) {
        self.kinds &= !(1 << self.nest());
        self.stack[self.depth] = mask;
        self.depth += 1;
    }

    /// Opens a live array whose elements start from `mask`.
    #[inline]
    fn open_array(&mut self, mask: u64) {
        self.kinds |= 1 << self.nest();
        self.arr_mask[self.arr_depth] = mask;
        self.arr_depth += 1;
    }

    /// Closes the innermost live container (an array when `array`).
    #[inline]
    fn close_container(&mut self, array: bool) {
        if array {
            self.arr_depth -= 1;
        } else {
            self.depth -= 1;
        }
    }

    /// Whether the innermost open live container is an array.
    #[inline]
    fn in_array(&self) -> bool {
        let nest = self.nest();
        nest > 0 && self.kinds & (1 << (nest - 1)) != 0
    }

    /// An element of the innermost live array starts: it stands where the array stands.
    #[inline]
    fn start_element(&mut self) {
        self.cur_mask = self.arr_mask[self.arr_depth - 1];
        self.cur_leaf = 0;
        self.state = State::Value;
    }

    /// The innermost live array closed.
    fn close_array<S: Sink<T>>(&mut self, sink: &mut S) {
        self.close_container(true);
        self.value_done(sink);
    }

    /// Feeds the next chunk of the document stream.
    pub fn feed<S: Sink<T>>(&mut self, input: &[u8], sink: &mut S) {
        // Counted in a local, added once: the loop's only cost is a register increment.
        let mut steps = 0u64;
        self.run(input, sink, &mut steps);
        self.work.fed_bytes += input.len() as u64;
        self.work.steps += steps;
    }

    #[inline]
    fn run<S: Sink<T>>(&mut self, input: &[u8], sink: &mut S, steps: &mut u64) {
        let mut i = 0;
        let n = input.len();
        while i < n {
            *steps += 1;
            match self.state {
                State::Failed => return,
                State::Between => {
                    let b = input[i];
                    if is_ws(b) {
                        i += 1;
                        continue;
                    }
                    if self.started && !self.multi_document {
                        self.fail();
                        return;
                    }
                    self.begin_root();
                    self.state = State::Value;
                    self.started = true;
                }
                State::Value => {
                    let b = input[i];
                    if is_ws(b) {
                        i += 1;
                        continue;
                    }
                    i += 1;
                    self.start_value(b, sink);
                }
                State::ObjFirst | State::ObjKey => {
                    let b = input[i];
                    i += 1;
                    match b {
                        b' ' | b'\t' | b'\n' | b'\r' => {}
                        b'"' => i = self.key_start(input, i, sink),
                        b'}' if self.state == State::ObjFirst => self.close_object(sink),
                        _ => self.fail(),
                    }
                }
                State::Key => {
                    i += self.string_bytes(&input[i..], Dest::Key, sink);
                }
                State::Colon => {
                    let b = input[i];
                    i += 1;
                    match b {
                        b':' => self.state = State::Value,
                        b' ' | b'\t' | b'\n' | b'\r' => {}
                        _ => self.fail(),
                    }
                }
                State::After => {
                    let b = input[i];
                    i += 1;
                    match b {
                        // The usual `,"key"`: straight into the key, without a dispatch.
                        b',' if input.get(i) == Some(&b'"') => {
                            i = self.key_start(input, i + 1, sink);
                        }
                        b',' => self.state = State::ObjKey,
                        b'}' => self.close_object(sink),
                        b' ' | b'\t' | b'\n' | b'\r' => {}
                        _ => self.fail(),
                    }
                }
                State::RootArrFirst => {
                    let b = input[i];
                    if is_ws(b) {
                        i += 1;
                    } else if b == b']' {
                        i += 1;
                        self.in_root_array = false;
                        self.state = State::Between;
                    } else {
                        self.begin_root();
                        self.state = State::Value;
                    }
                }
                State::ArrFirst => {
                    let b = input[i];
                    if is_ws(b) {
                        i += 1;
                    } else if b == b']' {
                        i += 1;
                        self.close_array(sink);
                    } else {
                        self.start_element();
                    }
                }
                State::ArrAfter => {
                    let b = input[i];
                    i += 1;
                    match b {
                        b',' => self.start_element(),
                        b']' => self.close_array(sink),
                        b' ' | b'\t' | b'\n' | b'\r' => {}
                        _ => self.fail(),
                    }
                }
                State::RootArrAfter => {
                    let b = input[i];
                    i += 1;
                    match b {
                        b',' => {
                            self.begin_root();
                            self.state = State::Value;
                        }
                        b']' => {
                            self.in_root_array = false;
                            self.state = State::Between;
                        }
                        b' ' | b'\t' | b'\n' | b'\r' => {}
                        _ => self.fail(),
                    }
                }
                State::Str => {
                    let dest = if self.streaming {
                        Dest::Stream
                    } else {
                        Dest::Value
                    };
                    i += self.string_bytes(&input[i..], dest, sink);
                }
                State::Scalar => {
                    let b = input[i];
                    if matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                        self.end_scalar(sink);
                    } else {
                        i += 1;
                        self.push_value_byte(b);
                    }
                }
                State::SkipScalar => {
                    match input[i..].iter().position(|&b| {
                        matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
                    }) {
                        Some(p) => {
                            i += p;
                            self.value_done(sink);
                        }
                        None => i = n,
                    }
                }
                State::SkipStr => {
                    i += self.skip_string(&input[i..], sink);
                }
                State::SkipNest => {
                    i += self.skip_nest(&input[i..], sink);
                }
            }
        }
    }

    fn start_value<S: Sink<T>>(&mut self, b: u8, sink: &mut S) {
        match b {
            b'{' => {
                if self.has_deeper(self.cur_mask) && self.depth < MAX_LIVE_DEPTH {
                    self.open_object(self.cur_mask);
                    self.state = State::ObjFirst;
                } else {
                    self.enter_skip_nest();
                }
            }
            b'[' => {
                if self.depth == 0 && self.array_roots && !self.in_root_array {
                    self.in_root_array = true;
                    self.root_array = true;
                    self.state = State::RootArrFirst;
                } else if self.depth > 0
                    && self.arr_depth < MAX_LIVE_DEPTH
                    && self.has_deeper(self.cur_mask)
                {
                    // An array inside a live object, on the way to a watched path.
                    self.open_array(self.cur_mask);
                    self.state = State::ArrFirst;
                } else {
                    self.enter_skip_nest();
                }
            }
            b'"' => {
                self.esc = Esc::None;
                self.high_surrogate = 0;
                if self.cur_leaf != 0 {
                    self.buf_len = 0;
                    self.buf_overflow = false;
                    self.streaming = self.leaf_streams(sink);
                    if self.streaming {
                        self.for_each_leaf(|t| sink.string_start(t));
                    }
                    self.state = State::Str;
                } else {
                    self.state = State::SkipStr;
                    self.skip_esc = false;
                }
            }
            b'-' | b'0'..=b'9' | b't' | b'f' | b'n' => {
                if self.cur_leaf != 0 {
                    self.buf_len = 0;
                    self.buf_overflow = false;
                    self.push_value_byte(b);
                    self.state = State::Scalar;
                } else {
                    self.state = State::SkipScalar;
                }
            }
            _ => self.fail(),
        }
    }

    fn enter_skip_nest(&mut self) {
        self.skip_depth = 1;
        self.skip_in_str = false;
        self.skip_esc = false;
        self.state = State::SkipNest;
    }

    fn leaf_streams<S: Sink<T>>(&self, sink: &S) -> bool {
        let mut m = self.cur_leaf;
        while m != 0 {
            let idx = m.trailing_zeros() as usize;
            m &= m - 1;
            if sink.streams(&self.watches[idx].target) {
                return true;
            }
        }
        false
    }

    fn for_each_leaf(&self, f: impl FnMut(&T)) {
        self.for_each_target(self.cur_leaf, f);
    }

    /// Calls `f` with the target of each watch in `leaf` (a set of watch indices, as
    /// `cur_leaf` is), lowest index first.
    #[inline(always)]
    fn for_each_target(&self, leaf: u64, mut f: impl FnMut(&T)) {
        let mut m = leaf;
        while m != 0 {
            let idx = m.trailing_zeros() as usize;
            m &= m - 1;
            f(&self.watches[idx].target);
        }
    }

    /// Whether any candidate watch continues below the current depth.
    #[inline]
    fn has_deeper(&self, mask: u64) -> bool {
        mask & self.derived.longer[self.depth] != 0
    }

    fn close_object<S: Sink<T>>(&mut self, sink: &mut S) {
        self.close_container(false);
        self.value_done(sink);
    }

    /// A value just ended: go back to its container (or end the document).
    fn value_done<S: Sink<T>>(&mut self, sink: &mut S) {
        if self.nest() > 0 {
            self.state = if self.in_array() {
                State::ArrAfter
            } else {
                State::After
            };
        } else if self.in_root_array {
            self.documents += 1;
            sink.document_end();
            self.state = State::RootArrAfter;
        } else {
            self.documents += 1;
            sink.document_end();
            self.state = State::Between;
        }
    }

    /// A key's opening quote was just consumed (`i` is past it). The usual key lies
    /// whole in this chunk without escapes: it is matched in place, and the `:` and the
    /// value's first byte are consumed here too, saving a copy and three state dispatches
    /// per member. When the value is skipped (no watch continues through the key) and ends
    /// in the chunk, the loop goes straight on to the next `,"key"`: the members of an
    /// event's top-level object are walked here without returning to [`Scanner::feed`].
    /// Anything else takes the general, resumable path through [`State::Key`].
    fn key_start<S: Sink<T>>(&mut self, input: &[u8], mut i: usize, sink: &mut S) -> usize {
        loop {
            let rest = &input[i..];
            let p = match find_quote_or_backslash(rest) {
                Some(p) if rest[p] == b'"' => p,
                _ => {
                    self.key_len = 0;
                    self.key_overflow = false;
                    self.esc = Esc::None;
                    self.high_surrogate = 0;
                    self.state = State::Key;
                    return i;
                }
            };
            let (mask, leaf) = if p <= KEY_CAP {
                self.candidates(&rest[..p])
            } else {
                (0, 0)
            };
            self.cur_mask = mask;
            self.cur_leaf = leaf;
            let mut j = i + p + 1;
            if input.get(j) != Some(&b':') {
                self.state = State::Colon;
                return j;
            }
            j += 1;
            match input.get(j) {
                Some(&b) if !is_ws(b) => {
                    self.start_value(b, sink);
                    j += 1;
                }
                _ => {
                    self.state = State::Value;
                    return j;
                }
            }
            match self.state {
                State::SkipStr => j += self.skip_string(&input[j..], sink),
                State::SkipNest => j += self.skip_nest(&input[j..], sink),
                State::SkipScalar => {
                    match input[j..].iter().position(|&b| {
                        matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
                    }) {
                        Some(q) => {
                            j += q;
                            self.value_done(sink);
                        }
                        None => return input.len(),
                    }
                }
                _ => return j,
            }
            if self.state == State::After
                && input.get(j) == Some(&b',')
                && input.get(j + 1) == Some(&b'"')
            {
                i = j + 2;
                continue;
            }
            return j;
        }
    }

    /// A key ended (general path): compute the candidates for its value.
    fn key_done(&mut self) {
        let (mask, leaf) = if self.key_overflow {
            (0, 0)
        } else {
            let key = self.key;
            self.candidates(&key[..self.key_len])
        };
        self.cur_mask = mask;
        self.cur_leaf = leaf;
        self.state = State::Colon;
    }

    /// The watches (and the leaves among them) that continue through `key` here.
    #[inline(always)]
    fn candidates(&mut self, key: &[u8]) -> (u64, u64) {
        let d = self.depth - 1;
        let parent = self.stack[d];
        let mut mask = 0u64;
        // Most keys of an event are watched nowhere (`id`, `object`, `created`, `choices`):
        // one bit test turns them away before any comparison.
        if self.derived.bloom[d] & (1 << signature(key)) == 0 {
            return (0, 0);
        }
        // Compare the key with one representative per class (see `Classes::new`): two
        // or three comparisons per key instead of one per watch. Length and first eight
        // bytes are the class's own (no pointer chased into the watch table); only a
        // longer key that agrees on them is compared further.
        let classes = &self.derived.classes;
        let (len, first) = (key.len(), head(key));
        let mut m = parent & classes.reps[d];
        while m != 0 {
            let idx = m.trailing_zeros() as usize;
            m &= m - 1;
            if usize::from(classes.lens[d][idx]) != len
                || classes.heads[d][idx] != first
                || (len > 8 && self.watches[idx].path[d].as_bytes()[8..] != key[8..])
            {
                continue;
            }
            // A hit: the candidates of its class match too. The candidates here share
            // `path[..d]` (they matched the keys above), so representatives of distinct
            // classes differ at `d`: no other can match.
            mask |= parent & classes.members[d][idx];
            break;
        }
        let leaf = mask & classes.leaves[d];
        (mask, leaf)
    }

    fn push_value_byte(&mut self, b: u8) {
        if self.buf_len < VALUE_CAP {
            self.buf[self.buf_len] = b;
            self.buf_len += 1;
        } else {
            self.buf_overflow = true;
        }
    }

    fn end_scalar<S: Sink<T>>(&mut self, sink: &mut S) {
        if !self.buf_overflow {
            let text = &self.buf[..self.buf_len];
            let value = match text {
                b"true" => Some(Scalar::Bool(true)),
                b"false" => Some(Scalar::Bool(false)),
                b"null" => Some(Scalar::Null),
                [b'-' | b'0'..=b'9', ..] => Some(Scalar::Number(text)),
                _ => None,
            };
            match value {
                Some(v) => {
                    let mut m = self.cur_leaf;
                    while m != 0 {
                        let idx = m.trailing_zeros() as usize;
                        m &= m - 1;
                        sink.value(&self.watches[idx].target, v);
                    }
                }
                None => {
                    self.fail();
                    return;
                }
            }
        }
        self.value_done(sink);
    }

    fn end_string<S: Sink<T>>(&mut self, sink: &mut S) {
        if self.high_surrogate != 0 {
            self.high_surrogate = 0;
            let dest = if self.streaming {
                Dest::Stream
            } else {
                Dest::Value
            };
            self.emit_char(0xFFFD, dest, sink);
        }
        if self.streaming {
            self.flush_stream(sink);
            self.streaming = false;
            self.for_each_leaf(|t| sink.string_end(t));
        } else if !self.buf_overflow {
            let v = Scalar::String(&self.buf[..self.buf_len]);
            let mut m = self.cur_leaf;
            while m != 0 {
                let idx = m.trailing_zeros() as usize;
                m &= m - 1;
                sink.value(&self.watches[idx].target, v);
            }
        }
        self.value_done(sink);
    }

    fn emit<S: Sink<T>>(&mut self, bytes: &[u8], dest: Dest, sink: &mut S) {
        match dest {
            Dest::Key => {
                let end = self.key_len + bytes.len();
                if end <= KEY_CAP {
                    self.key[self.key_len..end].copy_from_slice(bytes);
                    self.key_len = end;
                } else {
                    self.key_overflow = true;
                }
            }
            Dest::Value => {
                let end = self.buf_len + bytes.len();
                if end <= VALUE_CAP {
                    self.buf[self.buf_len..end].copy_from_slice(bytes);
                    self.buf_len = end;
                } else {
                    self.buf_overflow = true;
                }
            }
            Dest::Stream => {
                // The runs between escapes are short (~30 bytes in model text): they are
                // gathered in `buf`, which a streamed string does not otherwise use, and
                // handed over a few hundred bytes at a time, not one call per escape.
                let end = self.buf_len + bytes.len();
                if end <= VALUE_CAP {
                    self.buf[self.buf_len..end].copy_from_slice(bytes);
                    self.buf_len = end;
                    return;
                }
                self.flush_stream(sink);
                if bytes.len() > VALUE_CAP / 2 {
                    self.stream_chunk(bytes, sink);
                } else {
                    self.buf[..bytes.len()].copy_from_slice(bytes);
                    self.buf_len = bytes.len();
                }
            }
        }
    }

    /// Hands the gathered bytes of a streamed string to the sink.
    fn flush_stream<S: Sink<T>>(&mut self, sink: &mut S) {
        if self.buf_len > 0 {
            let n = core::mem::take(&mut self.buf_len);
            let mut m = self.cur_leaf;
            while m != 0 {
                let idx = m.trailing_zeros() as usize;
                m &= m - 1;
                sink.string_chunk(&self.watches[idx].target, &self.buf[..n]);
            }
        }
    }

    /// Hands bytes of a streamed string straight to the sink.
    fn stream_chunk<S: Sink<T>>(&self, bytes: &[u8], sink: &mut S) {
        let mut m = self.cur_leaf;
        while m != 0 {
            let idx = m.trailing_zeros() as usize;
            m &= m - 1;
            sink.string_chunk(&self.watches[idx].target, bytes);
        }
    }

    /// Offers the raw contents of a streamed string to a sink that takes them (see
    /// [`Sink::string_raw`]), after the bytes gathered before them; returns how many it
    /// took. Only a string with a single leaf: each leaf would take its own length.
    #[inline]
    fn stream_raw<S: Sink<T>>(&mut self, raw: &[u8], sink: &mut S) -> usize {
        if !self.cur_leaf.is_power_of_two() {
            return 0;
        }
        let watches = self.watches;
        let target = &watches[self.cur_leaf.trailing_zeros() as usize].target;
        if !sink.counts_raw(target) {
            return 0;
        }
        if self.high_surrogate != 0 {
            // A high surrogate followed by text: U+FFFD (as `string_bytes` emits it)
            // before the text is offered. Followed by an escape or the end, the decoder
            // goes on.
            if raw.is_empty() || matches!(raw[0], b'\\' | b'"') {
                return 0;
            }
            self.flush_surrogate(raw, Dest::Stream, sink);
        }
        self.flush_stream(sink);
        // A sink that claims more than it was given would only make the scanner panic.
        sink.string_raw(target, raw).min(raw.len())
    }

    fn emit_char<S: Sink<T>>(&mut self, c: u32, dest: Dest, sink: &mut S) {
        let ch = char::from_u32(c).unwrap_or('\u{FFFD}');
        let mut tmp = [0u8; 4];
        let s = ch.encode_utf8(&mut tmp);
        let len = s.len();
        self.emit(&tmp[..len], dest, sink);
    }

    /// Consumes string bytes (after the opening quote) into `dest`; returns bytes used.
    fn string_bytes<S: Sink<T>>(&mut self, input: &[u8], dest: Dest, sink: &mut S) -> usize {
        let mut i = 0;
        while i < input.len() {
            match self.esc {
                Esc::None => {
                    if dest == Dest::Stream {
                        i += self.stream_raw(&input[i..], sink);
                    }
                    let rest = &input[i..];
                    match find_quote_or_backslash(rest) {
                        None => {
                            self.flush_surrogate(rest, dest, sink);
                            self.emit(rest, dest, sink);
                            return input.len();
                        }
                        Some(p) => {
                            if p > 0 {
                                self.flush_surrogate(&rest[..p], dest, sink);
                                self.emit(&rest[..p], dest, sink);
                            }
                            i += p + 1;
                            if rest[p] == b'"' {
                                match dest {
                                    Dest::Key => {
                                        if self.high_surrogate != 0 {
                                            self.high_surrogate = 0;
                                            self.emit_char(0xFFFD, dest, sink);
                                        }
                                        self.key_done();
                                    }
                                    Dest::Value | Dest::Stream => self.end_string(sink),
                                }
                                return i;
                            }
                            self.esc = Esc::Backslash;
                        }
                    }
                }
                Esc::Backslash => {
                    let b = input[i];
                    i += 1;
                    self.esc = Esc::None;
                    let decoded = match b {
                        b'"' => b'"',
                        b'\\' => b'\\',
                        b'/' => b'/',
                        b'b' => 0x08,
                        b'f' => 0x0C,
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'u' => {
                            self.esc = Esc::Hex(0, 0);
                            continue;
                        }
                        _ => {
                            self.fail();
                            return input.len();
                        }
                    };
                    if self.high_surrogate != 0 {
                        self.high_surrogate = 0;
                        self.emit_char(0xFFFD, dest, sink);
                    }
                    self.emit(&[decoded], dest, sink);
                }
                Esc::Hex(count, acc) => {
                    let b = input[i];
                    i += 1;
                    let digit = match b {
                        b'0'..=b'9' => b - b'0',
                        b'a'..=b'f' => b - b'a' + 10,
                        b'A'..=b'F' => b - b'A' + 10,
                        _ => {
                            self.fail();
                            return input.len();
                        }
                    };
                    let acc = (acc << 4) | u16::from(digit);
                    if count < 3 {
                        self.esc = Esc::Hex(count + 1, acc);
                        continue;
                    }
                    self.esc = Esc::None;
                    self.unicode_escape(acc, dest, sink);
                }
            }
        }
        i
    }

    fn flush_surrogate<S: Sink<T>>(&mut self, next: &[u8], dest: Dest, sink: &mut S) {
        if self.high_surrogate != 0 && !next.is_empty() {
            self.high_surrogate = 0;
            self.emit_char(0xFFFD, dest, sink);
        }
    }

    fn unicode_escape<S: Sink<T>>(&mut self, unit: u16, dest: Dest, sink: &mut S) {
        match unit {
            0xD800..=0xDBFF => {
                if self.high_surrogate != 0 {
                    self.emit_char(0xFFFD, dest, sink);
                }
                self.high_surrogate = unit;
            }
            0xDC00..=0xDFFF => {
                if self.high_surrogate != 0 {
                    let hi = u32::from(self.high_surrogate - 0xD800);
                    let lo = u32::from(unit - 0xDC00);
                    self.high_surrogate = 0;
                    self.emit_char(0x10000 + (hi << 10) + lo, dest, sink);
                } else {
                    self.emit_char(0xFFFD, dest, sink);
                }
            }
            _ => {
                if self.high_surrogate != 0 {
                    self.high_surrogate = 0;
                    self.emit_char(0xFFFD, dest, sink);
                }
                self.emit_char(u32::from(unit), dest, sink);
            }
        }
    }

    /// Skips an unwatched string (after its opening quote); returns bytes used.
    fn skip_string<S: Sink<T>>(&mut self, input: &[u8], sink: &mut S) -> usize {
        let mut from = 0;
        if self.skip_esc {
            self.skip_esc = false;
            from = 1;
        }
        // Skipped contents need no decoding: only the closing quote matters.
        match string_end(input, from.min(input.len())) {
            Ok(q) => {
                self.value_done(sink);
                q + 1
            }
            Err(escaped) => {
                self.skip_esc = escaped;
                input.len()
            }
        }
    }

    /// Skips an unwatched object or array (after its opening bracket); returns bytes used.
    ///
    /// Only brackets and string boundaries matter here. Where the build has vector
    /// instructions, whole 64-byte blocks are classified at once ([`skip_block`]: quotes,
    /// backslashes and brackets as bitmaps) and a long string's end is searched with
    /// `memchr`; the rest goes byte-wise, jumping from one structural byte to the next
    /// with word-at-a-time search ([`find_structural`] outside strings, [`string_end`]
    /// inside, which looks for quotes only). The state is kept in locals and written
    /// back once, when the chunk or the subtree ends.
    fn skip_nest<S: Sink<T>>(&mut self, input: &[u8], sink: &mut S) -> usize {
        let n = input.len();
        let mut nest = Nest {
            depth: self.skip_depth,
            in_str: self.skip_in_str,
            esc: self.skip_esc,
        };
        let avx2 = Avx2::detect().filter(|_| VECTOR);
        let mut i = 0;
        let closed = loop {
            let mut end = n;
            if VECTOR {
                match skip_blocks(input, i, avx2, &mut nest) {
                    Blocks::Closed(p) => break Some(p),
                    Blocks::Bytewise(at) => {
                        i = at;
                        end = at + 64;
                    }
                    Blocks::Short(at) if at >= n => break None,
                    Blocks::Short(at) => i = at,
                }
            }
            match skip_bytes(&input[..end], i, &mut nest) {
                Some(p) => break Some(p),
                None if end == n => break None,
                None => i = end,
            }
        };
        match closed {
            Some(p) => {
                self.skip_depth = 0;
                self.skip_in_str = false;
                self.skip_esc = false;
                self.value_done(sink);
                p
            }
            None => {
                self.skip_depth = nest.depth;
                self.skip_in_str = nest.in_str;
                self.skip_esc = nest.esc;
                n
            }
        }
    }
}

/// The byte-wise reading of a skipped subtree from `i` to the end of `input`: the
/// position after its closing bracket, or `None` with `nest` updated when `input` ends
/// first.
fn skip_bytes(input: &[u8], mut i: usize, nest: &mut Nest) -> Option<usize> {
    let n = input.len();
    loop {
        if nest.in_str {
            if nest.esc {
                if i >= n {
                    return None;
                }
                nest.esc = false;
                i += 1;
            }
            match string_end(input, i) {
                Ok(q) => {
                    i = q + 1;
                    nest.in_str = false;
                }
                Err(escaped) => {
                    nest.esc = escaped;
                    return None;
                }
            }
        } else {
            let p = find_structural(&input[i..])?;
            let at = i + p;
            i = at + 1;
            match input[at] {
                b'"' => nest.in_str = true,
                b'{' | b'[' => nest.depth = nest.depth.saturating_add(1),
                _ => {
                    nest.depth -= 1;
                    if nest.depth == 0 {
                        return Some(i);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum T {
        Model,
        Prompt,
        Cached,
        Stream,
        Blob,
    }

    static WATCHES: &[Watch<T>] = &[
        Watch {
            path: &["model"],
            target: T::Model,
        },
        Watch {
            path: &["usage", "prompt_tokens"],
            target: T::Prompt,
        },
        Watch {
            path: &["usage", "details", "cached"],
            target: T::Cached,
        },
        Watch {
            path: &["stream"],
            target: T::Stream,
        },
        Watch {
            path: &["blob"],
            target: T::Blob,
        },
    ];

    #[derive(Default, Debug, PartialEq, Eq, Clone)]
    struct Found {
        values: Vec<(T, String)>,
        docs: usize,
        streamed: Vec<u8>,
    }

    impl Sink<T> for Found {
        fn value(&mut self, t: &T, v: Scalar<'_>) {
            let s = match v {
                Scalar::Number(n) => format!("n:{}", String::from_utf8_lossy(n)),
                Scalar::String(s) => format!("s:{}", String::from_utf8_lossy(s)),
                Scalar::Bool(b) => format!("b:{b}"),
                Scalar::Null => "null".into(),
            };
            self.values.push((*t, s));
        }
        fn document_end(&mut self) {
            self.docs += 1;
        }
        fn streams(&self, t: &T) -> bool {
            *t == T::Blob
        }
        fn string_chunk(&mut self, _t: &T, bytes: &[u8]) {
            self.streamed.extend_from_slice(bytes);
        }
    }

    /// Scans `input` whole, split at every byte, and byte by byte; all must agree.
    fn scan(input: &[u8]) -> (Found, bool, bool) {
        let run = |cuts: &[usize]| {
            let mut s = Scanner::new(WATCHES, true, true);
            let mut f = Found::default();
            let mut last = 0;
            for &c in cuts {
                s.feed(&input[last..c], &mut f);
                last = c;
            }
            s.feed(&input[last..], &mut f);
            (f, s.at_boundary(), s.failed())
        };
        let whole = run(&[]);
        for at in 0..=input.len() {
            assert_eq!(
                run(&[at]),
                whole,
                "split at {at} of {:?}",
                String::from_utf8_lossy(input)
            );
        }
        let bytes: Vec<usize> = (1..input.len()).collect();
        assert_eq!(run(&bytes), whole, "byte at a time");
        whole
    }

    fn values(input: &str) -> Vec<(T, String)> {
        scan(input.as_bytes()).0.values
    }

    /// Keys are matched on the length and first eight bytes kept in the key classes, and
    /// past eight bytes on the rest: keys that agree with a watched segment on all but one
    /// byte (the first, the eighth, the ninth, the last), or are a prefix of one, or one a
    /// prefix of them, match nothing; exact ones match, whatever their length.
    #[test]
    fn keys_match_on_every_byte() {
        static NEAR: &[Watch<T>] = &[
            Watch {
                path: &["prompt_tokens_details", "cached_tokens"],
                target: T::Cached,
            },
            Watch {
                path: &["prompt_tokens"],
                target: T::Prompt,
            },
            Watch {
                path: &["prompt_t"],
                target: T::Model,
            },
            Watch {
                path: &["p"],
                target: T::Stream,
            },
            Watch {
                path: &[""],
                target: T::Blob,
            },
        ];
        let doc = |key: &str| format!(r#"{{"{key}":1,"prompt_tokens_details":{{"{key}":2}}}}"#);
        let found = |key: &str| {
            let mut s = Scanner::new(NEAR, true, true);
            let mut f = Found::default();
            s.feed(doc(key).as_bytes(), &mut f);
            f.values
        };
        // The oracle: the segments compared whole.
        let expect = |key: &str| {
            let mut v = Vec::new();
            for (want, t) in [
                ("prompt_tokens", T::Prompt),
                ("prompt_t", T::Model),
                ("p", T::Stream),
                ("", T::Blob),
            ] {
                if key == want {
                    v.push((t, "n:1".to_owned()));
                }
            }
            if key == "cached_tokens" {
                v.push((T::Cached, "n:2".to_owned()));
            }
            v
        };
        let mut keys: Vec<String> = Vec::new();
        for seg in ["prompt_tokens", "prompt_t", "p", "", "cached_tokens"] {
            keys.push(seg.to_owned());
            for at in 0..seg.len() {
                let mut k = seg.as_bytes().to_vec();
                k[at] ^= 1;
                keys.push(String::from_utf8(k).unwrap());
                keys.push(seg[..at].to_owned());
            }
            keys.push(format!("{seg}s"));
        }
        for key in &keys {
            assert_eq!(found(key), expect(key), "key {key:?}");
        }
    }

    /// Skipped subtrees long enough to be read 64 bytes at a time: strings with escaped
    /// quotes and runs of backslashes crossing block edges, brackets inside strings, long
    /// quoteless text, and (in some) backslashes outside strings, which the block reading
    /// must hand to the byte-wise one. Read whole (in blocks) they give what they give
    /// split at every byte and byte by byte (`scan` checks that).
    #[test]
    fn skipped_subtrees_read_in_blocks_as_byte_by_byte() {
        let parts: &[&str] = &[
            r#""a\"b""#,
            r#""\\\\""#,
            r#""]}[{""#,
            r#"{"k":[1,2,{"x":"}"}]}"#,
            r#""text text text text text text text text text text text text text text""#,
            r#""\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\""#,
            "[[[[]]]]",
            "12",
            r#""\u00e9\n""#,
            "\\",
            r#"\""#,
        ];
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for round in 0..300 {
            let mut doc = String::from(r#"{"id":"#);
            let mut body = String::from("[");
            for k in 0..(4 + round % 9) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Backslashes outside strings only in every third document.
                let pick = (x % parts.len() as u64) as usize;
                let pick = if round % 3 != 0 && pick >= parts.len() - 2 {
                    0
                } else {
                    pick
                };
                if k > 0 {
                    body.push(',');
                }
                body.push_str(parts[pick]);
            }
            body.push(']');
            doc.push_str(&body);
            doc.push_str(r#","model":"m","usage":{"prompt_tokens":7}}"#);
            let (found, boundary, _) = scan(doc.as_bytes());
            if round % 3 != 0 {
                // Valid JSON: read through to its values.
                assert!(boundary, "{doc}");
                assert_eq!(
                    found.values,
                    [(T::Model, "s:m".to_owned()), (T::Prompt, "n:7".to_owned())],
                    "{doc}"
                );
            }
        }
    }

    /// Arrays on a watched path are transparent: each element stands where the array
    /// stands, in order, at any nesting of arrays and objects; arrays elsewhere, arrays
    /// of scalars and arrays at a leaf are skipped; structure inside a live array is
    /// checked like a live object's.
    #[test]
    fn arrays_on_a_watched_path_are_read_through() {
        let p = |v: &str| (T::Prompt, format!("n:{v}"));
        let c = |v: &str| (T::Cached, format!("n:{v}"));
        assert_eq!(
            values(r#"{"usage":[{"prompt_tokens":1},{"x":[1,2]},{"prompt_tokens":2}]}"#),
            [p("1"), p("2")]
        );
        assert_eq!(
            values(
                r#"{"usage":[[{"prompt_tokens":3}], [] ,"s",7,null,{"details":[{"cached":4}]}]}"#
            ),
            [p("3"), c("4")]
        );
        // Not on a watched path, or at a leaf: skipped.
        assert_eq!(
            values(r#"{"other":[{"prompt_tokens":1}],"model":["m"]}"#),
            []
        );
        assert_eq!(
            values(r#"{"usage":{"prompt_tokens":[5]},"model":"m"}"#),
            [(T::Model, "s:m".to_owned())]
        );
        // An empty live array, whitespace everywhere.
        assert_eq!(
            values("{\"usage\" : [ ] , \"model\" : \"m\" }"),
            [(T::Model, "s:m".to_owned())]
        );
        // Syntax errors inside a live array fail the document; a dead one is not checked.
        for bad in [
            r#"{"usage":[{"prompt_tokens":1} {}]}"#,
            r#"{"usage":[1 2]}"#,
            r#"{"usage":[,]}"#,
        ] {
            let (_, _, failed) = scan(bad.as_bytes());
            assert!(failed, "{bad}");
        }
        let (f, boundary, failed) = scan(br#"{"other":[1 2],"usage":{"prompt_tokens":9}}"#);
        assert!(!failed && boundary);
        assert_eq!(f.values, [p("9")]);
        // Documents still end where they end.
        let (f, boundary, _) =
            scan(br#"{"usage":[{"prompt_tokens":1}]} {"usage":[{"prompt_tokens":2}]}"#);
        assert!(boundary);
        assert_eq!((f.values, f.docs), (vec![p("1"), p("2")], 2));
    }

    #[test]
    fn finds_watched_paths_only() {
        let v = values(
            r#"{"id":"x","model":"gpt-4o","choices":[{"model":"nested"}],"usage":{"prompt_tokens":12,"completion_tokens":3,"details":{"cached":4}},"stream":true}"#,
        );
        assert_eq!(
            v,
            [
                (T::Model, "s:gpt-4o".into()),
                (T::Prompt, "n:12".into()),
                (T::Cached, "n:4".into()),
                (T::Stream, "b:true".into())
            ]
        );
    }

    #[test]
    fn lookalike_text_inside_strings_is_not_a_member() {
        let v = values(
            r#"{"content":"{\"usage\":{\"prompt_tokens\":999}}, \u0022model\u0022: \u0022fake\u0022","usage":{"prompt_tokens":7},"x":"\\\"model\\\":1"}"#,
        );
        assert_eq!(v, [(T::Prompt, "n:7".into())]);
    }

    #[test]
    fn escapes_and_unicode_in_values_and_keys() {
        // `\u006dodel` is the key "model"; surrogate pairs decode; lone surrogates become U+FFFD.
        let v = values(r#"{"\u006dodel":"a\"b\\c\/d\n\u00e9\ud83d\ude00\ud800x\udc00"}"#);
        assert_eq!(v, [(T::Model, "s:a\"b\\c/d\né😀\u{FFFD}x\u{FFFD}".into())]);
        let v = values("{\"model\":\"caf\u{e9} \u{1F600}\"}");
        assert_eq!(v, [(T::Model, "s:caf\u{e9} \u{1F600}".into())]);
    }

    #[test]
    fn whitespace_everywhere() {
        let v = values(" \r\n{ \"usage\" :\t{ \"prompt_tokens\" : 5 , \"details\" : { \"cached\" : 0 } } , \"model\" : \"m\" }\n");
        assert_eq!(
            v,
            [
                (T::Prompt, "n:5".into()),
                (T::Cached, "n:0".into()),
                (T::Model, "s:m".into())
            ]
        );
    }

    #[test]
    fn documents_arrays_and_sequences() {
        let (f, boundary, failed) = scan(b"[{\"model\":\"a\"},\r\n{\"model\":\"b\"}\n,{}]");
        assert_eq!(
            f.values,
            [(T::Model, "s:a".into()), (T::Model, "s:b".into())]
        );
        assert_eq!(f.docs, 3);
        assert!(boundary && !failed);
        let (f, _, _) = scan(b"{\"model\":\"a\"}\n{\"model\":\"b\"}\n[]");
        assert_eq!(f.docs, 2, "an empty root array holds no documents");
        let (f, boundary, _) = scan(b"{\"model\":\"a\"");
        assert_eq!(f.docs, 0);
        assert!(!boundary);
    }

    #[test]
    fn single_document_mode_fails_on_trailing_data() {
        let mut s = Scanner::new(WATCHES, false, false);
        let mut f = Found::default();
        s.feed(b"{\"model\":\"a\"} {\"model\":\"b\"}", &mut f);
        assert!(s.failed());
        assert_eq!(f.values, [(T::Model, "s:a".into())]);
        s.reset();
        s.feed(b"[DONE]", &mut f);
        assert!(
            s.at_boundary(),
            "[DONE] is skipped as a value, not an error"
        );
    }

    #[test]
    fn non_scalar_and_odd_values_at_watched_leaves() {
        let v = values(
            r#"{"model":{"name":"x"},"stream":null,"usage":{"prompt_tokens":[1],"details":"no"}}"#,
        );
        assert_eq!(v, [(T::Stream, "null".into())]);
        let v = values(r#"{"usage":{"prompt_tokens":-1.5e3}}"#);
        assert_eq!(v, [(T::Prompt, "n:-1.5e3".into())]);
    }

    #[test]
    fn syntax_errors_on_live_paths_fail() {
        for bad in [
            &b"{\"model\" \"x\"}"[..],
            b"{\"model\":}",
            b"{,}",
            b"{\"usage\":{\"prompt_tokens\":1,,}}",
            b"}",
            b"{\"model\":\"\\x\"}",
        ] {
            let (_, _, failed) = scan(bad);
            assert!(failed, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn deep_nesting_is_skipped_with_a_counter() {
        let mut doc = b"{\"x\":".to_vec();
        doc.extend(std::iter::repeat_n(b'[', 100_000));
        doc.extend(std::iter::repeat_n(b']', 100_000));
        doc.extend_from_slice(b",\"model\":\"deep\"}");
        let mut s = Scanner::new(WATCHES, false, false);
        let mut f = Found::default();
        s.feed(&doc, &mut f);
        assert_eq!(f.values, [(T::Model, "s:deep".into())]);
        assert!(s.at_boundary());
    }

    #[test]
    fn long_keys_and_values_are_dropped_not_truncated() {
        let long_key = "k".repeat(KEY_CAP + 1);
        let long_val = "v".repeat(VALUE_CAP + 1);
        let doc = format!(
            "{{\"{long_key}\":1,\"model\":\"{long_val}\",\"usage\":{{\"prompt_tokens\":3}}}}"
        );
        let mut s = Scanner::new(WATCHES, false, false);
        let mut f = Found::default();
        s.feed(doc.as_bytes(), &mut f);
        assert_eq!(f.values, [(T::Prompt, "n:3".into())]);
        let fits = "m".repeat(VALUE_CAP);
        let v = values(&format!("{{\"model\":\"{fits}\"}}"));
        assert_eq!(v, [(T::Model, format!("s:{fits}"))]);
    }

    #[test]
    fn streamed_strings_are_passed_through_decoded() {
        let (f, _, _) = scan(br#"{"blob":"ab\/c\u0041","model":"m"}"#);
        assert_eq!(f.streamed, b"ab/cA");
        assert_eq!(f.values, [(T::Model, "s:m".into())]);
    }

    #[test]
    fn escaped_quote_at_chunk_end_in_skipped_strings() {
        // Every split is checked by `scan`; this shape puts `\` and `"` at the edges.
        let v = values(r#"{"a":"x\\","b":"\"","c":["\\\"",{"d":"\\"}],"model":"ok"}"#);
        assert_eq!(v, [(T::Model, "s:ok".into())]);
    }
}

/// Streamed text counted from its raw JSON contents (`Sink::string_raw`, which the
/// exchange's sink does with `TextStats::add_json`) gives the counts of the decoded text
/// that `Sink::string_chunk` hands over, at every split of the input.
#[cfg(test)]
mod raw_text {
    use super::*;
    use crate::text::{Counting, TextStats};
    use proptest::prelude::*;

    static TEXT: &[Watch<u8>] = &[
        Watch {
            path: &["t"],
            target: 0,
        },
        Watch {
            path: &["m"],
            target: 1,
        },
    ];

    /// What a sink was told: the text's counts, the values, the documents.
    #[derive(Debug, Default, Clone, PartialEq, Eq)]
    struct Counted {
        text: TextStats,
        values: Vec<Vec<u8>>,
        docs: usize,
    }

    /// Counts streamed strings (target 0), from raw contents when `raw`.
    struct CountSink {
        raw: bool,
        how: Counting,
        counted: Counted,
        /// Bytes taken raw.
        took: usize,
    }

    impl Sink<u8> for CountSink {
        fn value(&mut self, _t: &u8, v: Scalar<'_>) {
            self.counted.values.push(format!("{v:?}").into_bytes());
        }
        fn document_end(&mut self) {
            self.counted.docs += 1;
        }
        fn streams(&self, t: &u8) -> bool {
            *t == 0
        }
        fn string_start(&mut self, _t: &u8) {
            self.counted.text.start_string();
        }
        fn string_chunk(&mut self, _t: &u8, bytes: &[u8]) {
            self.counted.text.add_with(bytes, self.how);
        }
        fn counts_raw(&self, _t: &u8) -> bool {
            self.raw
        }
        fn string_raw(&mut self, _t: &u8, raw: &[u8]) -> usize {
            let n = self.counted.text.add_json(raw, self.how);
            self.took += n;
            n
        }
    }

    /// Feeds `input` in pieces ending at `cuts`, counting as `how` says; what was counted,
    /// whether the scanner failed, and the bytes taken raw.
    fn run(input: &[u8], cuts: &[usize], raw: bool, how: Counting) -> ((Counted, bool), usize) {
        let mut s = Scanner::new(TEXT, false, true);
        let mut sink = CountSink {
            raw,
            how,
            counted: Counted::default(),
            took: 0,
        };
        let mut last = 0;
        for &c in cuts {
            s.feed(&input[last..c], &mut sink);
            last = c;
        }
        s.feed(&input[last..], &mut sink);
        ((sink.counted, s.failed()), sink.took)
    }

    /// Pieces of string contents: plain text of each class, every escape, surrogate
    /// pairs and lone or mismatched surrogates, escapes standing for letters (which join
    /// words).
    const PIECES: &[&str] = &[
        "a",
        "Z",
        "9",
        "word",
        " ",
        "  ",
        ",",
        ".",
        "-",
        "\t",
        "é",
        "你",
        "🐱",
        "\u{7f}",
        r#"\""#,
        r"\\",
        r"\/",
        r"\b",
        r"\f",
        r"\n",
        r"\r",
        r"\t",
        r"\u0041",
        r"\u0061",
        r"\u0039",
        r"\u00e9",
        r"\u00E9",
        r"\u4f60",
        r"\uffff",
        r"\u0000",
        r"\u007f",
        r"\u0020",
        r"\ud83d\ude00",
        r"\uD83D\uDE00",
        r"\ud83d",
        r"\ude00",
        r"\ud83d\u0041",
        r"\ud83d\ud83d\ude00",
        r"\ud83dx",
        "lorem ipsum dolor sit amet, consectetur ",
    ];
    /// The bytes of `raw_counts_equal_decoded_counts_on_byte_soup`.
    const SOUP: &[u8] =
        b"\\\\\\\"uuu0d8DCe9aAfFbnrt/ zx\xc3\xa9\xe4\xbd\xa0\xf0\x9f\x98\x80\x7f\x01\n";
    /// Invalid escapes: the document fails.
    const INVALID: &[&str] = &[r"\x", r"\u00g0", r"\u12", r"\ud83d\u12"];

    /// A document with streamed strings built from `strings` (indices into `PIECES`; an
    /// invalid escape after piece `bad`), a watched value after each, `long` repeats of
    /// plain text after the fourth piece.
    fn document(strings: &[Vec<usize>], bad: Option<usize>, long: usize) -> Vec<u8> {
        let mut doc = String::from("{");
        for (k, parts) in strings.iter().enumerate() {
            doc.push_str(r#""t":""#);
            for (j, &p) in parts.iter().enumerate() {
                doc.push_str(PIECES[p % PIECES.len()]);
                if j == 3 {
                    // Past whole blocks and, when long, past 255 of them (the counters'
                    // flush).
                    doc.push_str(&"abc de, ".repeat(long));
                }
                if bad == Some(j) {
                    doc.push_str(INVALID[p % INVALID.len()]);
                }
            }
            doc.push_str(&format!(r#"","m":"{k}","#));
        }
        doc.push_str(r#""end":1}"#);
        doc.into_bytes()
    }

    /// What the raw and the decoded counts of one reading share: everything, unless the
    /// document failed (an invalid escape), whose staged text is never committed, and
    /// which the two count up to different points (the raw count up to the escape).
    fn same(
        raw: (Counted, bool),
        decoded: (Counted, bool),
    ) -> Result<(Counted, bool), TestCaseError> {
        prop_assert_eq!(raw.1, decoded.1);
        prop_assert_eq!(&raw.0.values, &decoded.0.values);
        let mut decoded = decoded;
        if decoded.1 {
            // Decoded text is counted up to where the last piece was handed over, which
            // depends on the chunking too.
            decoded.0.text = TextStats::default();
        } else {
            prop_assert_eq!(&raw.0, &decoded.0);
        }
        Ok(decoded)
    }

    /// `doc` read raw and decoded, cut at `cuts`: what the two share (see [`same`]). Raw
    /// both ways this CPU has: as detected (AVX2 where the CPU has it) and without AVX2
    /// (eight bytes at a time, the wasm filter's way).
    fn both(doc: &[u8], cuts: &[usize]) -> Result<(Counted, bool), TestCaseError> {
        let decoded = run(doc, cuts, false, Counting::detect()).0;
        let portable = same(run(doc, cuts, true, Counting::default()).0, decoded.clone())?;
        let detected = same(run(doc, cuts, true, Counting::detect()).0, decoded)?;
        prop_assert_eq!(&portable, &detected);
        Ok(detected)
    }

    /// `doc` read raw and decoded agree whole and split at every byte, and every split
    /// reads as the whole.
    fn agree_at_every_split(doc: &[u8]) -> Result<(), TestCaseError> {
        let whole = both(doc, &[])?;
        for at in 0..=doc.len() {
            let split = both(doc, &[at])?;
            prop_assert_eq!(&split, &whole, "split at {}", at);
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Split at every byte (short documents).
        #[test]
        fn raw_counts_equal_decoded_counts_at_every_split(
            strings in prop::collection::vec(prop::collection::vec(0..1000usize, 0..24), 1..4),
            bad in prop::option::weighted(0.1, 0..24usize),
            long in prop::sample::select(vec![0usize, 1, 5]),
        ) {
            agree_at_every_split(&document(&strings, bad, long))?;
        }

        /// Byte soup inside a streamed string: backslashes, quotes, `u`, hex digits of both
        /// cases, the letters of the other escapes, UTF-8 bytes (also cut apart), controls;
        /// with a run of plain text before it or not. Split at every byte.
        #[test]
        fn raw_counts_equal_decoded_counts_on_byte_soup(
            soup in prop::collection::vec(prop::sample::select(SOUP.to_vec()), 0..90),
            lead in prop::sample::select(vec![0usize, 3, 9]),
        ) {
            let mut doc = br#"{"t":""#.to_vec();
            doc.extend_from_slice("ab, c ".repeat(lead).as_bytes());
            doc.extend_from_slice(&soup);
            doc.extend_from_slice(br#"","m":"x"}"#);
            agree_at_every_split(&doc)?;
        }

        /// Random chunkings of long documents (past the counters' 255-block flush).
        #[test]
        fn raw_counts_equal_decoded_counts_in_random_chunks(
            strings in prop::collection::vec(prop::collection::vec(0..1000usize, 0..60), 1..4),
            bad in prop::option::weighted(0.05, 0..60usize),
            long in prop::sample::select(vec![0usize, 40, 1100]),
            cuts in prop::collection::vec(0..30_000usize, 0..40),
        ) {
            let doc = document(&strings, bad, long);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (doc.len() + 1)).collect();
            cuts.sort_unstable();
            prop_assert_eq!(both(&doc, &cuts)?, both(&doc, &[])?);
        }
    }

    /// A streamed string's text is taken raw, escapes and all (with AVX2 and without);
    /// an escape cut off by the end of a piece, and a lone surrogate, are left to the
    /// decoder.
    #[test]
    fn the_raw_path_takes_whole_strings() {
        for how in [Counting::detect(), Counting::default()] {
            let contents =
                r#"Hello, world \\n\"q\" \u00e9\ud83d\ude00 and some more text past one block"#;
            let doc = format!(r#"{{"t":"{contents}","m":"x"}}"#);
            let (_, took) = run(doc.as_bytes(), &[], true, how);
            assert_eq!(took, contents.len());
            // Cut inside the pair: the raw reading stops before it, the decoder reads the
            // pair, and the raw reading takes the rest.
            let at = doc.find(r"\ude00").unwrap();
            let (_, took) = run(doc.as_bytes(), &[at], true, how);
            assert_eq!(took, contents.len() - r"\ud83d\ude00".len());
            // A lone high surrogate: the decoder reads it (U+FFFD), the raw reading the
            // rest.
            let doc = format!(r#"{{"t":"a\ud83d b{contents}"}}"#);
            let (_, took) = run(doc.as_bytes(), &[], true, how);
            assert_eq!(took, contents.len() + 3);
        }
    }
}
