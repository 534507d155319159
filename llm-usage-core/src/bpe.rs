//! [`Bpe`]: OpenAI's byte-pair encodings (`o200k_base`, `cl100k_base`) as a
//! [`TokenCounter`], counting text as it passes with a bounded buffer.
//!
//! Why a tokenizer and not the heuristic: an estimate from character classes is off by a
//! quarter on a typical answer (the README has the figures); the model's own encoding is
//! exact for the text itself, so what remains is how the provider frames it (chat
//! template tokens, tool schemas), not how it splits words.
//!
//! The encodings come from `bpe-openai` (GitHub's `rust-gems`): the same tokens as
//! `tiktoken` (its tests compare them), counted without building a token vector, in time
//! linear in the text; its tables are built into the binary, which is why this is a
//! feature for native builds and not in the `.wasm`.
//!
//! # Counting in pieces
//!
//! A byte-pair encoding first splits text into pre-tokens with a regular expression, then
//! encodes each pre-token alone. So text can be counted in parts, and the sum equals the
//! count of the whole, if it is cut only where a pre-token ends whatever follows. Both
//! encodings' expressions end a pre-token at an ASCII letter followed by a space and
//! another letter (`"word word"`: a run of letters never takes a space, and the space
//! starts the next pre-token, `" word"`), and nothing in them looks behind. The counter
//! holds only the text after the last such cut, at most [`PENDING_CAP`] bytes: past that
//! (a long run of CJK, digits or symbols without a cut) it cuts at a character boundary,
//! which may move a token or two across the cut; tests bound that error.
//!
//! # Which encoding
//!
//! A model's encoding is known only once the body names the model: first in every
//! response event, but after the messages in a request as OpenAI's SDKs write it. Until
//! then the text counts in `o200k_base`, the encoding of every current OpenAI model
//! (GPT-4o, 4.1, 4.5, 5, the o-series, gpt-oss); a model of `cl100k_base` (GPT-4,
//! GPT-3.5, the `text-embedding-3` / `ada-002` embeddings) named before any text switches
//! to it, named after text leaves no whole count (the character-count estimate then).
//! Counting both until the model is known would be exact for those legacy models too, at
//! twice the work on every request and 30 MB more memory for the second table. Other providers' models have other tokenizers, mostly not public; counting
//! their text in `o200k_base` underestimates Claude's output by a third where the
//! character-count estimate is within a quarter (README, "Estimates"), so for them the
//! counter stops counting and says nothing, and the estimate is the character count's.

use alloc::boxed::Box;
use alloc::vec::Vec;

use bpe_openai::Tokenizer;

use crate::tokens::TokenCounter;

/// Most bytes of unfinished text held by a counter (see the module docs).
pub const PENDING_CAP: usize = 4096;

/// Count the held text once this many bytes are held (and a cut is found): fewer calls
/// into the encoder than one per piece.
const FLUSH_AT: usize = 512;

/// The encodings: indexes into the counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Enc {
    O200k = 0,
    Cl100k = 1,
}

impl Enc {
    fn bit(self) -> u8 {
        1 << self as u8
    }

    fn tokenizer(self) -> &'static Tokenizer {
        match self {
            Enc::O200k => bpe_openai::o200k_base(),
            Enc::Cl100k => bpe_openai::cl100k_base(),
        }
    }

    /// The encoding of an OpenAI model, by name (a provider prefix such as `openai/`
    /// ignored); `None` for other models.
    fn of(model: &str) -> Option<Enc> {
        let name = model.rsplit('/').next().unwrap_or(model);
        let starts = |p: &str| {
            name.len() >= p.len() && name.as_bytes()[..p.len()].eq_ignore_ascii_case(p.as_bytes())
        };
        const O200K: [&str; 10] = [
            "gpt-4o",
            "gpt-4.",
            "gpt-5",
            "o1",
            "o3",
            "o4",
            "chatgpt-",
            "gpt-oss",
            "codex-",
            "computer-use",
        ];
        const CL100K: [&str; 7] = [
            "gpt-4",
            "gpt-3.5",
            "gpt-35",
            "text-embedding-3",
            "text-embedding-ada",
            "davinci-002",
            "babbage-002",
        ];
        if O200K.iter().any(|p| starts(p)) {
            Some(Enc::O200k)
        } else if CL100K.iter().any(|p| starts(p)) {
            Some(Enc::Cl100k)
        } else {
            None
        }
    }
}

/// OpenAI's byte-pair encodings as a [`TokenCounter`]; see the module docs.
///
/// ```
/// use llm_usage_core::{Bpe, Exchange, Options};
///
/// let mut ex = Exchange::with_options(Options::new().token_counter(Bpe::boxed));
/// ex.on_request_head("POST", "/v1/chat/completions", [("content-type", "application/json")]);
/// ex.on_request_body(br#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"Hi"}]}"#);
/// ex.on_response_head(200, [("content-type", "text/event-stream")]);
/// ex.on_response_body(b"data: {\"model\":\"gpt-4o\",\"choices\":[{\"delta\":{\"content\":\"Hello there\"}}]}\n\n");
/// ex.on_response_body(b"data: [DONE]\n\n");
/// ex.on_response_end();
/// let r = ex.finish();
/// assert_eq!(r.output_tokens, Some(2)); // "Hello", " there"
/// assert!(r.estimated);
/// ```
#[derive(Debug, Default)]
pub struct Bpe {
    /// Text of the current string after the last cut.
    pending: Vec<u8>,
    /// Positions of `pending` below this were searched for a cut and had none (so that
    /// text fed a byte at a time is searched once, not once per byte).
    searched: usize,
    /// Encodings counting now (bits of [`Enc`]).
    active: u8,
    /// Encodings that have counted since the body started.
    whole: u8,
    /// Tokens of the current event's text, per encoding.
    staged: [u64; 2],
    /// Tokens of complete events' text, per encoding.
    committed: [u64; 2],
    /// Whether any text was committed.
    text: bool,
    /// Whether any text was counted (staged or committed): until then the encoding can
    /// change at no loss.
    counted: bool,
    /// Whether the current event carried text.
    staged_text: bool,
    /// Bytes of text cut where no pre-token was known to end (for tests).
    forced_cuts: u64,
}

impl Bpe {
    /// A new counter, counting in `o200k_base` until a model is named.
    pub fn new() -> Bpe {
        Bpe {
            active: Enc::O200k.bit(),
            whole: Enc::O200k.bit(),
            ..Bpe::default()
        }
    }

    /// A new counter, boxed: the [`NewTokenCounter`](crate::NewTokenCounter) to give to
    /// [`Options::token_counter`](crate::Options::token_counter).
    pub fn boxed() -> Box<dyn TokenCounter> {
        Box::new(Bpe::new())
    }

    /// How many times text was cut where a pre-token may go on (see the module docs).
    pub fn forced_cuts(&self) -> u64 {
        self.forced_cuts
    }

    /// Counts `text` in every active encoding into the staged counts.
    fn count(&mut self, text: &[u8]) {
        if text.is_empty() {
            return;
        }
        // Decoded JSON strings are UTF-8 unless the body lied (a lone surrogate escape);
        // then count the lossy text rather than nothing.
        let lossy;
        let s = match core::str::from_utf8(text) {
            Ok(s) => s,
            Err(_) => {
                lossy = alloc::string::String::from_utf8_lossy(text).into_owned();
                lossy.as_str()
            }
        };
        self.counted = true;
        for enc in [Enc::O200k, Enc::Cl100k] {
            if self.active & enc.bit() != 0 {
                self.staged[enc as usize] += enc.tokenizer().count(s) as u64;
            }
        }
    }

    /// Counts the held text up to its last safe cut, or all of it at the end of a
    /// string.
    fn flush(&mut self, end_of_string: bool) {
        let cut = if end_of_string {
            self.pending.len()
        } else {
            match self.find_cut() {
                Some(i) => i,
                None => return,
            }
        };
        self.count_prefix(cut);
    }

    /// The last safe cut in the held text, searching only where no search looked before.
    fn find_cut(&mut self) -> Option<usize> {
        let found = last_cut(&self.pending, self.searched);
        self.searched = self.pending.len().saturating_sub(1);
        found
    }

    /// Counts and drops the first `cut` bytes of the held text.
    fn count_prefix(&mut self, cut: usize) {
        let pending = core::mem::take(&mut self.pending);
        self.count(&pending[..cut]);
        self.pending = pending;
        self.pending.drain(..cut);
        self.searched = self.searched.saturating_sub(cut);
    }

    /// Makes room when the held text reached the cap: counts up to the last safe cut, or
    /// else up to the last character boundary.
    fn force_cut(&mut self) {
        if let Some(i) = self.find_cut() {
            self.count_prefix(i);
            return;
        }
        let mut cut = self.pending.len();
        // Back off over continuation bytes to the start of the last character (at most
        // three), so that the held part starts a character.
        let mut back = 0;
        while cut > 0 && back < 3 && self.pending[cut - 1] & 0xc0 == 0x80 {
            cut -= 1;
            back += 1;
        }
        if cut > 0 && self.pending[cut - 1] >= 0xc0 {
            cut -= 1;
        }
        if cut == 0 {
            cut = self.pending.len();
        }
        self.forced_cuts += 1;
        self.count_prefix(cut);
    }
}

/// The last index `i` where text can be cut with every pre-token ending before `i`: an
/// ASCII letter, a space at `i`, an ASCII letter after it; only `i >= from` is looked at.
fn last_cut(text: &[u8], from: usize) -> Option<usize> {
    let n = text.len();
    if n < 3 {
        return None;
    }
    (from.max(1)..n - 1).rev().find(|&i| {
        text[i] == b' ' && text[i - 1].is_ascii_alphabetic() && text[i + 1].is_ascii_alphabetic()
    })
}

impl TokenCounter for Bpe {
    fn string_start(&mut self) {
        self.flush(true);
    }

    fn chunk(&mut self, mut bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.staged_text = true;
        while !bytes.is_empty() {
            let room = PENDING_CAP - self.pending.len();
            let take = room.min(bytes.len());
            self.pending.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.pending.len() == PENDING_CAP {
                self.force_cut();
            }
        }
        if self.pending.len() >= FLUSH_AT {
            self.flush(false);
        }
    }

    fn commit(&mut self) {
        self.flush(true);
        for (c, s) in self.committed.iter_mut().zip(self.staged.iter_mut()) {
            *c += core::mem::take(s);
        }
        self.text |= core::mem::take(&mut self.staged_text);
    }

    fn discard(&mut self) {
        self.pending.clear();
        self.searched = 0;
        self.staged = [0; 2];
        self.staged_text = false;
    }

    fn model(&mut self, name: &str) {
        if name.is_empty() {
            return;
        }
        // Text held but not counted yet is counted in the model's encoding only (none
        // for a model of another provider: its estimate is the character count's); the
        // other encoding stops counting, so its total is no longer whole.
        let bit = Enc::of(name).map_or(0, Enc::bit);
        if self.counted {
            self.active &= bit;
            self.whole &= bit;
        } else {
            self.active = bit;
            self.whole = bit;
        }
    }

    fn reset(&mut self) {
        *self = Bpe {
            pending: core::mem::take(&mut self.pending),
            ..Bpe::new()
        };
        self.pending.clear();
    }

    fn tokens(&self, model: Option<&str>) -> Option<u64> {
        if !self.text {
            return None;
        }
        let enc = Enc::of(model?)?;
        (self.whole & enc.bit() != 0).then(|| self.committed[enc as usize].max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(enc: Enc, text: &str) -> u64 {
        enc.tokenizer().count(text) as u64
    }

    fn fed(text: &[u8], splits: &[usize], model: Option<&str>) -> Bpe {
        let mut c = Bpe::new();
        if let Some(m) = model {
            c.model(m);
        }
        c.string_start();
        let mut at = 0;
        for &s in splits {
            c.chunk(&text[at..s]);
            at = s;
        }
        c.chunk(&text[at..]);
        c.commit();
        c
    }

    const PROSE: &str = "The quick brown fox jumps over the lazy dog. It's 2026-12-07, \
        and the café's naïve résumé costs 12,345.67 €; don't   panic!\n\n    fn main() { \
        println!(\"héllo\"); }\r\n日本語のテキストも数える。 Ünïcödé wörds, emoji 🦀🦀 and \
        tabs\tand  double  spaces  ";

    #[test]
    fn pieces_count_as_the_whole_at_every_split() {
        let text = PROSE.as_bytes();
        for enc in [Enc::O200k, Enc::Cl100k] {
            let model = match enc {
                Enc::O200k => "gpt-4o-mini",
                Enc::Cl100k => "gpt-4-turbo",
            };
            let want = whole(enc, PROSE);
            for a in 0..=text.len() {
                let c = fed(text, &[a], Some(model));
                assert_eq!(c.tokens(Some(model)), Some(want), "{enc:?} split at {a}");
                assert_eq!(c.forced_cuts(), 0);
            }
        }
    }

    #[test]
    fn long_text_is_held_in_bounded_memory_and_counted_exactly() {
        let text = PROSE.repeat(200);
        let want = whole(Enc::O200k, &text);
        let bytes = text.as_bytes();
        let splits: Vec<usize> = (1..bytes.len()).step_by(7).collect();
        let mut c = Bpe::new();
        c.model("gpt-5");
        c.string_start();
        let mut at = 0;
        for &s in &splits {
            c.chunk(&bytes[at..s]);
            assert!(c.pending.len() < PENDING_CAP);
            at = s;
        }
        c.chunk(&bytes[at..]);
        c.commit();
        assert_eq!(c.tokens(Some("gpt-5")), Some(want));
        assert_eq!(c.forced_cuts(), 0);
    }

    #[test]
    fn text_without_a_cut_is_cut_at_the_cap_with_a_small_error() {
        // Japanese without spaces: no safe cut anywhere.
        let text = "日本語のテキストも数える。東京都の天気は晴れです。".repeat(400);
        let want = whole(Enc::O200k, &text);
        let c = fed(text.as_bytes(), &[5, 1000, 7001], Some("gpt-4o"));
        assert!(c.forced_cuts() > 0);
        let got = c.tokens(Some("gpt-4o")).unwrap();
        let err = got.abs_diff(want) as f64 / want as f64;
        assert!(err < 0.01, "{got} vs {want}");
    }

    proptest::proptest! {
        /// Random text of every class the pre-token expressions tell apart (letters of
        /// both cases, digits, spaces, newlines, punctuation, contractions, accented and
        /// CJK letters, emoji), cut anywhere: the pieces count as the whole text, in both
        /// encodings.
        #[test]
        fn pieces_count_as_the_whole(
            parts in proptest::collection::vec(proptest::sample::select(vec![
                "a", "Z", "word", "Word", " ", "  ", "\n", "\r\n", "\t", "1", "2024", ".", ",",
                "!?", "'s", "'LL", "é", "ß", "日本", "語", "🦀", "(", "\"", "/", "--", "_x",
            ]), 0..120),
            cuts in proptest::collection::vec(0usize..2000, 0..6),
        ) {
            let text: String = parts.concat();
            let bytes = text.as_bytes();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
            cuts.sort_unstable();
            for (enc, model) in [(Enc::O200k, "gpt-4o"), (Enc::Cl100k, "gpt-4")] {
                let c = fed(bytes, &cuts, Some(model));
                let want = if text.is_empty() { None } else { Some(whole(enc, &text).max(1)) };
                proptest::prop_assert_eq!(c.tokens(Some(model)), want);
            }
        }
    }

    /// A megabyte of letters with no cut anywhere (one pre-token for the expression):
    /// held at most [`PENDING_CAP`] bytes at a time, counted within 1% of the whole.
    #[test]
    fn a_megabyte_without_a_cut_stays_bounded() {
        let text = "abcdefghij".repeat(100_000);
        let want = whole(Enc::O200k, &text);
        let mut c = Bpe::new();
        c.model("gpt-4o");
        c.string_start();
        for piece in text.as_bytes().chunks(1000) {
            c.chunk(piece);
            assert!(c.pending.len() < PENDING_CAP);
            assert!(c.pending.capacity() <= 2 * PENDING_CAP);
        }
        c.commit();
        let got = c.tokens(Some("gpt-4o")).unwrap();
        assert!(c.forced_cuts() >= 200);
        assert!(got.abs_diff(want) * 100 <= want, "{got} vs {want}");
    }

    #[test]
    fn discarded_events_do_not_count_and_commits_add_up() {
        let mut c = Bpe::new();
        c.model("gpt-4o");
        c.string_start();
        c.chunk(b"Hello world");
        c.commit();
        c.string_start();
        c.chunk(b" and more text that never completes");
        c.discard();
        c.string_start();
        c.chunk(b" again");
        c.commit();
        let want = whole(Enc::O200k, "Hello world") + whole(Enc::O200k, " again");
        assert_eq!(c.tokens(Some("gpt-4o")), Some(want));
    }

    #[test]
    fn o200k_counts_until_the_model_is_named() {
        // A request names its model after the messages (as OpenAI's SDKs write it).
        let text = "Summarise the following report in three bullet points, please.";
        let run = |model: &str| {
            let mut c = Bpe::new();
            c.string_start();
            c.chunk(text.as_bytes());
            c.commit();
            c.model(model);
            c
        };
        let c = run("gpt-4o");
        assert_eq!(c.tokens(Some("gpt-4o")), Some(whole(Enc::O200k, text)));
        // A cl100k model named after the text: no whole count in its encoding.
        let c = run("gpt-3.5-turbo");
        assert_eq!(c.tokens(Some("gpt-3.5-turbo")), None);
        assert_eq!(c.tokens(Some("gpt-4o")), None);
        // Named before the text (as in every response event): counted in cl100k only.
        let mut c = Bpe::new();
        c.model("gpt-3.5-turbo");
        c.string_start();
        c.chunk(text.as_bytes());
        c.commit();
        assert_eq!(c.active, Enc::Cl100k.bit());
        assert_eq!(
            c.tokens(Some("gpt-3.5-turbo")),
            Some(whole(Enc::Cl100k, text))
        );
    }

    #[test]
    fn other_providers_models_stop_the_count() {
        let mut c = Bpe::new();
        c.model("claude-sonnet-4-5-20250929");
        c.string_start();
        c.chunk(b"Some text that a Claude model wrote.");
        c.commit();
        assert_eq!(c.active, 0);
        assert_eq!(c.tokens(Some("claude-sonnet-4-5-20250929")), None);
        assert_eq!(c.tokens(Some("gpt-4o")), None);
        assert_eq!(c.tokens(None), None);
    }

    #[test]
    fn no_text_is_unknown() {
        let mut c = Bpe::new();
        c.string_start();
        c.commit();
        assert_eq!(c.tokens(None), None);
    }

    #[test]
    fn invalid_utf8_is_counted_lossily_without_panic() {
        let c = fed(b"abc \xff\xfe def \xe6\x97", &[5], None);
        assert!(c.tokens(Some("gpt-4o")).unwrap() >= 3);
    }

    #[test]
    fn encodings_by_model() {
        for (m, e) in [
            ("gpt-4o-mini-2024-07-18", Some(Enc::O200k)),
            ("openai/gpt-4.1", Some(Enc::O200k)),
            ("gpt-5-nano", Some(Enc::O200k)),
            ("o3-mini", Some(Enc::O200k)),
            ("gpt-oss-120b", Some(Enc::O200k)),
            ("gpt-4-0613", Some(Enc::Cl100k)),
            ("gpt-4-turbo", Some(Enc::Cl100k)),
            ("GPT-3.5-TURBO", Some(Enc::Cl100k)),
            ("gpt-35-turbo", Some(Enc::Cl100k)),
            ("text-embedding-3-small", Some(Enc::Cl100k)),
            ("claude-sonnet-4-5", None),
            ("gemini-2.5-flash", None),
            ("llama-3.3-70b-versatile", None),
            ("", None),
        ] {
            assert_eq!(Enc::of(m), e, "{m}");
        }
    }
}
