//! A hook for a real tokenizer: the text an estimate is made from, handed over as it
//! passes.
//!
//! Without one, an estimate comes from [`TextStats`](crate::TextStats): character-class
//! counts and fitted coefficients, fixed memory, no tables, what the `.wasm` filter uses.
//! A native frontend (the CLI, the tower layer) can do better with the model's own
//! byte-pair encoding, whose tables are megabytes: it plugs a [`TokenCounter`] into
//! [`Options::token_counter`](crate::Options::token_counter), and the core gives each body
//! its own counter. (With the `bpe` feature the core has one for OpenAI's encodings:
//! [`Bpe`](crate::Bpe).)
//!
//! The counter sees exactly the text [`TextStats`](crate::TextStats) sees: the strings the
//! dialect tables mark as text (prompt text of a request; content, reasoning and
//! tool-argument deltas of a response), JSON-unescaped, in pieces that may end inside a
//! UTF-8 character. And it follows the same rule: text counts only once the event that
//! carried it is complete ([`commit`](TokenCounter::commit)); an event cut off or thrown
//! away takes its text with it ([`discard`](TokenCounter::discard)).

use core::fmt::Debug;

/// Counts the tokens of the text of one body, as it passes.
///
/// The core calls, for each body: [`string_start`](Self::string_start) when a string of
/// text starts, [`chunk`](Self::chunk) with its decoded bytes (any number of pieces, split
/// at any byte), [`commit`](Self::commit) or [`discard`](Self::discard) when the event
/// that carried the strings ends, [`model`](Self::model) whenever the body names a model,
/// and [`tokens`](Self::tokens) when the record is made. A counter must hold bounded
/// memory whatever the length of the text.
pub trait TokenCounter: Debug + Send {
    /// A new string starts: the previous one (if any) ended.
    fn string_start(&mut self);

    /// Decoded bytes of the current string.
    fn chunk(&mut self, bytes: &[u8]);

    /// The event that carried the strings since the last commit or discard is complete:
    /// their tokens count.
    fn commit(&mut self);

    /// The event that carried the strings since the last commit or discard was cut off:
    /// their tokens do not count.
    fn discard(&mut self);

    /// The body named a model (request `model`, or the model a response reports): a hint
    /// for the encoding. The default ignores it.
    fn model(&mut self, name: &str) {
        let _ = name;
    }

    /// Forgets everything: the body starts over.
    fn reset(&mut self);

    /// Tokens of the committed text as `model` counts them, or `None` when this counter
    /// cannot say (no text, or not counted in that model's encoding from the start).
    fn tokens(&self, model: Option<&str>) -> Option<u64>;
}

/// Makes the token counter of one body (see [`Options::token_counter`](crate::Options::token_counter)).
pub type NewTokenCounter = fn() -> Box<dyn TokenCounter>;
