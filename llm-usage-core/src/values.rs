//! The values one body yields: token slots, models and the stream flag.
//!
//! Values are *staged* while a document (an event) is being scanned and *committed*
//! when the framing says the event is complete, so a cut or corrupt event never leaks a
//! half-read figure into the record. Everything here is fixed-size: no allocation on
//! the hot path.

use crate::dialect::{EndIf, Field, Target, FIELDS, SLOTS};
use crate::scan::{Scalar, VALUE_CAP};
use crate::text::TextStats;

/// A model name (or another short string value) held inline, up to `N` bytes; a longer
/// value is not kept.
#[derive(Clone, Copy)]
pub(crate) struct Name<const N: usize = VALUE_CAP> {
    bytes: [u8; N],
    len: u16,
    set: bool,
}

/// A service tier name: `default`, `priority`, `PROVISIONED_THROUGHPUT` ...
pub(crate) type Tier = Name<32>;

impl<const N: usize> Name<N> {
    /// No name.
    const EMPTY: Self = Name {
        bytes: [0; N],
        len: 0,
        set: false,
    };
}

impl<const N: usize> Default for Name<N> {
    #[inline(always)]
    fn default() -> Self {
        Self::EMPTY
    }
}

impl<const N: usize> core::fmt::Debug for Name<N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.get().fmt(f)
    }
}

impl<const N: usize> Name<N> {
    /// The name, if one was set.
    pub(crate) fn get(&self) -> Option<&str> {
        if self.set {
            core::str::from_utf8(&self.bytes[..usize::from(self.len)]).ok()
        } else {
            None
        }
    }

    /// Whether a name was set.
    #[inline]
    pub(crate) fn is_set(&self) -> bool {
        self.set
    }

    /// Whether this name is set to exactly `s` (bytes compared, no UTF-8 check).
    ///
    /// Compared eight bytes at a time, inline: a model name is a few words long, and
    /// `memcmp` through the C library was a third of a repeated model's cost per chunk.
    #[inline]
    pub(crate) fn is(&self, s: &[u8]) -> bool {
        let n = usize::from(self.len);
        if !self.set || n != s.len() {
            return false;
        }
        let (a, b) = (&self.bytes[..n], s);
        if n < 8 {
            return a.iter().zip(b).all(|(x, y)| x == y);
        }
        let mut i = 0;
        while i + 8 < n {
            if crate::swar::word(a, i) != crate::swar::word(b, i) {
                return false;
            }
            i += 8;
        }
        // The last eight bytes, overlapping the words already compared.
        crate::swar::word(a, n - 8) == crate::swar::word(b, n - 8)
    }

    /// Copies a name (only its bytes in use).
    fn copy_from(&mut self, other: &Name<N>) {
        let n = usize::from(other.len);
        self.bytes[..n].copy_from_slice(&other.bytes[..n]);
        self.len = other.len;
        self.set = other.set;
    }

    /// Sets a non-empty, valid UTF-8 name; anything else is ignored.
    fn set_from(&mut self, s: &[u8]) {
        if s.is_empty() || s.len() > N || core::str::from_utf8(s).is_err() {
            return;
        }
        self.bytes[..s.len()].copy_from_slice(s);
        self.len = s.len() as u16;
        self.set = true;
    }
}

/// Values found in one body (or one event of it).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Values {
    /// The token slots' values, read only where their bit in `set` is on (a cleared slot
    /// keeps a stale value, unread): half the size of `Option<u64>`s, and clearing is one
    /// store.
    counts: [[u64; SLOTS]; FIELDS],
    /// Bit `field * SLOTS + slot`: that slot is known.
    set: u64,
    pub response_model: Name,
    pub request_model: Name,
    pub service_tier: Tier,
    pub stream: Option<bool>,
    /// The end marks seen (bits of the dialect's [`Ends`](crate::dialect::Ends)).
    pub end: u8,
    /// Generated text (response) or prompt text (request) seen: counts added across
    /// events, not last-wins.
    pub text: TextStats,
    /// Chat messages of a request (added, not last-wins).
    pub messages: u32,
    /// The entry being read of each modality list (see [`Pairing`]).
    lists: [Pairing; 2],
}

// Every slot has its bit in `Values::set`.
const _: () = assert!(FIELDS * SLOTS <= 64);

impl Default for Values {
    /// Nothing known. Written out and always inlined so that a body's values are built
    /// where they live (the derived version built each name on the stack and copied it,
    /// twice per body: a tenth of a small exchange's instructions, callgrind).
    #[inline(always)]
    fn default() -> Self {
        Values {
            counts: [[0; SLOTS]; FIELDS],
            set: 0,
            response_model: Name::EMPTY,
            request_model: Name::EMPTY,
            service_tier: Name::EMPTY,
            stream: None,
            end: 0,
            text: TextStats::default(),
            messages: 0,
            lists: [Pairing::default(); 2],
        }
    }
}

/// Pairs the `modality` and `tokenCount` of the entries of a Gemini modality list, which
/// the scanner reports as two values with no entry boundary between them.
///
/// Gemini and Vertex write proto3 JSON: fields in field-number order (`modality` before
/// `tokenCount`), and a zero count left out. So a `modality` starts an entry, a
/// `tokenCount` after it is that entry's count, and an entry that ends without one
/// (the next `modality`, or the end of the event) counts 0. A `tokenCount` that comes
/// first (another writer's key order) waits for the `modality` after it. Counts of one
/// modality in a list add up; a modality absent from the list stays unknown.
#[derive(Clone, Copy, Default, Debug)]
struct Pairing {
    /// The entry's modality was read, its count not yet: the field it goes to (`None`
    /// for a modality without a field), and whether one is open at all.
    open: Option<Option<Field>>,
    /// A count read before its entry's modality.
    count: Option<u64>,
}

/// Parses a token count: a non-negative integer that fits in `u64`.
///
/// `-1`, `1.5`, `1e3` and overflowing numbers are not counts; they leave the field unknown
/// rather than guessing. An integral value written as `12.0` is accepted.
pub(crate) fn parse_count(text: &[u8]) -> Option<u64> {
    let (int, frac) = match text.iter().position(|&b| b == b'.') {
        Some(p) => (&text[..p], &text[p + 1..]),
        None => (text, &b""[..]),
    };
    // JSON number grammar: no leading zeros, and a `.` needs at least one digit after it.
    if int.is_empty()
        || (int.len() > 1 && int[0] == b'0')
        || (text.len() > int.len() && frac.is_empty())
        || !frac.iter().all(|&b| b == b'0')
    {
        return None;
    }
    let mut v: u64 = 0;
    for &b in int {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(v)
}

/// Whether `value` marks an end by `when`. A value that does not stages nothing, so a
/// sink can drop it before staging (OpenAI chunks repeat `"object":"chat.completion.chunk"`,
/// read for Perplexity's `chat.completion.done`).
#[inline]
pub(crate) fn end_hit(when: EndIf, value: Scalar<'_>) -> bool {
    match (when, value) {
        (EndIf::Is(want), Scalar::String(s)) => s == want.as_bytes(),
        (EndIf::IsNot(not), Scalar::String(s)) => !s.is_empty() && s != not.as_bytes(),
        (EndIf::True, Scalar::Bool(b)) => b,
        (EndIf::Number, Scalar::Number(_)) => true,
        _ => false,
    }
}

impl Values {
    /// Records one scalar for `target`; returns whether anything was staged.
    pub(crate) fn stage(&mut self, target: Target, value: Scalar<'_>) -> bool {
        match (target, value) {
            (Target::Slot(field, idx), Scalar::Number(text)) => match parse_count(text) {
                Some(v) => {
                    self.set_slot(field, idx, v);
                    true
                }
                None => false,
            },
            (Target::ResponseModel, Scalar::String(s)) => {
                self.response_model.set_from(s);
                !s.is_empty()
            }
            (Target::RequestModel, Scalar::String(s)) => {
                self.request_model.set_from(s);
                !s.is_empty()
            }
            (Target::Message, Scalar::String(_)) => {
                self.messages = self.messages.saturating_add(1);
                true
            }
            (Target::CountIf(field, want), Scalar::String(s)) => {
                if s != want.as_bytes() {
                    return false;
                }
                self.add_slot(field, 1);
                true
            }
            (Target::Modality(list), Scalar::String(m)) => {
                let field = list.field(m);
                let p = &mut self.lists[list as usize];
                let pending = p.count.take();
                let closed = p.open.take();
                match pending {
                    // `tokenCount` came first: this modality completes the entry.
                    Some(n) => {
                        if let Some(f) = field {
                            self.add_slot(f, n);
                        }
                    }
                    None => {
                        // The previous entry ended without a count: 0.
                        if let Some(Some(f)) = closed {
                            self.add_slot(f, 0);
                        }
                        self.lists[list as usize].open = Some(field);
                    }
                }
                true
            }
            (Target::ModalityCount(list), Scalar::Number(text)) => {
                let Some(n) = parse_count(text) else {
                    return false;
                };
                let p = &mut self.lists[list as usize];
                match p.open.take() {
                    Some(field) => {
                        if let Some(f) = field {
                            self.add_slot(f, n);
                        }
                    }
                    None => p.count = Some(n),
                }
                true
            }
            (Target::ServiceTier, Scalar::String(s)) => {
                self.service_tier.set_from(s);
                !s.is_empty()
            }
            (Target::Stream, Scalar::Bool(b)) => {
                self.stream = Some(b);
                true
            }
            (Target::End(when, bit), value) => {
                let hit = end_hit(when, value);
                if hit {
                    self.end |= 1 << bit;
                }
                hit
            }
            _ => false,
        }
    }

    /// Forgets every value. Only the flags are reset (a name's bytes stay, unread), so
    /// clearing per event costs a few stores, not a rewrite of two 256-byte buffers.
    pub(crate) fn clear(&mut self) {
        self.set = 0;
        self.response_model.set = false;
        self.request_model.set = false;
        self.service_tier.set = false;
        self.stream = None;
        self.end = 0;
        self.messages = 0;
        self.lists = [Pairing::default(); 2];
        if !self.text.is_empty() || self.text.strings != 0 {
            self.text = TextStats::default();
        }
    }

    /// Copies every value set in `other` over this one (last wins, field by field).
    pub(crate) fn merge(&mut self, other: &Values) {
        let mut bits = other.set;
        while bits != 0 {
            let i = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            self.counts[i / SLOTS][i % SLOTS] = other.counts[i / SLOTS][i % SLOTS];
        }
        self.set |= other.set;
        if other.response_model.set {
            self.response_model.copy_from(&other.response_model);
        }
        if other.request_model.set {
            self.request_model.copy_from(&other.request_model);
        }
        if other.service_tier.set {
            self.service_tier.copy_from(&other.service_tier);
        }
        if other.stream.is_some() {
            self.stream = other.stream;
        }
        self.end |= other.end;
        self.messages = self.messages.saturating_add(other.messages);
        self.text.merge(&other.text);
    }

    /// Ends the entries of the modality lists still open at the end of an event: an
    /// entry without a count counts 0 (proto3 JSON leaves zeros out).
    pub(crate) fn close_lists(&mut self) {
        for i in 0..self.lists.len() {
            let p = &mut self.lists[i];
            p.count = None;
            if let Some(Some(f)) = p.open.take() {
                self.add_slot(f, 0);
            }
        }
    }

    /// Adds to slot 0 of a field (unknown counts as 0 once something is added).
    fn add_slot(&mut self, field: Field, v: u64) {
        let bit = 1u64 << (field as usize * SLOTS);
        let slot = &mut self.counts[field as usize][0];
        *slot = if self.set & bit != 0 {
            slot.saturating_add(v)
        } else {
            v
        };
        self.set |= bit;
    }

    /// Sets one slot.
    pub(crate) fn set_slot(&mut self, field: Field, idx: u8, v: u64) {
        self.counts[field as usize][usize::from(idx)] = v;
        self.set |= 1 << (field as usize * SLOTS + usize::from(idx));
    }

    /// A field's slots.
    pub(crate) fn field(&self, f: Field) -> [Option<u64>; SLOTS] {
        let at = f as usize * SLOTS;
        core::array::from_fn(|i| {
            (self.set >> (at + i) & 1 != 0).then_some(self.counts[f as usize][i])
        })
    }

    /// Whether any token slot is known.
    pub(crate) fn any_slot(&self) -> bool {
        self.set != 0
    }

    /// Every field's slots.
    #[cfg(test)]
    fn slots(&self) -> [[Option<u64>; SLOTS]; FIELDS] {
        core::array::from_fn(|f| {
            core::array::from_fn(|i| {
                (self.set >> (f * SLOTS + i) & 1 != 0).then_some(self.counts[f][i])
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts() {
        assert_eq!(parse_count(b"0"), Some(0));
        assert_eq!(parse_count(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_count(b"18446744073709551616"), None);
        assert_eq!(parse_count(b"-1"), None);
        assert_eq!(parse_count(b"1.5"), None);
        assert_eq!(parse_count(b"12.0"), Some(12));
        assert_eq!(parse_count(b"1e3"), None);
        assert_eq!(parse_count(b".0"), None);
        assert_eq!(parse_count(b""), None);
        // Not JSON numbers: unknown rather than a guess.
        assert_eq!(parse_count(b"1."), None);
        assert_eq!(parse_count(b"01"), None);
        assert_eq!(parse_count(b"00.0"), None);
        assert_eq!(parse_count(b"0.0"), Some(0));
        assert_eq!(parse_count(b"10"), Some(10));
    }

    /// Staging, clearing and merging per event, with and without counts: what a clear
    /// skips (no slot set) is never left behind, and a merge of model-only values keeps
    /// the committed counts.
    #[test]
    fn events_stage_clear_and_merge() {
        use crate::dialect::Field;
        let (input, output) = (
            Target::Slot(Field::Input, 0),
            Target::Slot(Field::Output, 1),
        );
        let mut committed = Values::default();
        let mut staged = Values::default();
        assert!(staged.stage(input, Scalar::Number(b"12")));
        assert!(staged.stage(Target::ResponseModel, Scalar::String(b"m1")));
        committed.merge(&staged);
        staged.clear();
        assert_eq!(staged.slots(), [[None; SLOTS]; FIELDS]);
        assert!(staged.stage(Target::ResponseModel, Scalar::String(b"m2")));
        committed.merge(&staged);
        staged.clear();
        assert_eq!(committed.field(Field::Input)[0], Some(12));
        assert_eq!(committed.response_model.get(), Some("m2"));
        assert!(staged.stage(output, Scalar::Number(b"7")));
        staged.clear();
        committed.merge(&staged);
        assert_eq!(committed.field(Field::Output)[1], None);
        assert!(staged.stage(output, Scalar::Number(b"8")));
        committed.merge(&staged);
        assert_eq!(committed.field(Field::Output)[1], Some(8));
        assert_eq!(committed.field(Field::Input)[0], Some(12));
    }
}
