//! The scanner's sink: values staged while an event is read, committed when it is complete,
//! and the inner scanner of base64-wrapped events (Bedrock invoke streams).

use crate::base64::Base64;
use crate::dialect::Target;
use crate::scan::{Scalar, Scanner, Sink};
use crate::text::Counting;
use crate::tokens::TokenCounter;
use crate::values::Values;

/// A scanner for provider events wrapped in base64 (Bedrock invoke streams).
#[derive(Debug)]
pub(super) struct Inner {
    pub(super) b64: Base64,
    pub(super) scanner: Scanner<Target>,
}

/// The scanner's sink: stages values, commits complete events.
#[derive(Debug)]
pub(super) struct Collect {
    pub(super) staged: Values,
    pub(super) dirty: bool,
    pub(super) committed: Values,
    pub(super) events: u64,
    /// Complete events that carried generated text.
    pub(super) content_events: u64,
    pub(super) commit_on_document_end: bool,
    pub(super) inner: Option<Box<Inner>>,
    /// A tokenizer fed the same text as `staged.text` (see `tokens`).
    pub(super) counter: Option<Box<dyn TokenCounter>>,
    /// Several records per body (realtime sessions): the end marks that close one. An
    /// event that sets one of them closes the record (see [`Records`]).
    pub(super) split: u8,
    /// Closed records not taken yet.
    pub(super) records: Records,
    /// How text is counted on this CPU (asked once, here).
    pub(super) counting: Counting,
    /// The [`Sink::epoch`]: moved by every value staged (here or by the inner scanner),
    /// a record closed, a reset, values set from headers. A commit or a discard does not
    /// move it: a settled answer needs its field unstaged, and a commit moves into
    /// `committed` only staged fields (each of which moved the epoch when it was staged),
    /// a discard only unstages. Text is not read by [`Collect::settled`].
    pub(super) version: u64,
}

/// Most closed records a body holds until they are taken: a frontend takes them after
/// each chunk, so only a chunk holding more than this many closing events loses some
/// (counted in [`Records::dropped`]); memory stays bounded whatever the input.
pub const MAX_PENDING_RECORDS: usize = 32;

/// The records a realtime body closed (one per `response.done`), until they are taken.
#[derive(Debug, Default)]
pub(crate) struct Records {
    /// The committed values of each closed record, oldest first.
    pub(crate) pending: Vec<Values>,
    /// Closed records lost because [`MAX_PENDING_RECORDS`] were waiting.
    pub(crate) dropped: u64,
}

struct InnerSink<'a> {
    pub(super) staged: &'a mut Values,
    pub(super) dirty: &'a mut bool,
    pub(super) version: &'a mut u64,
    pub(super) counter: &'a mut Option<Box<dyn TokenCounter>>,
    pub(super) counting: Counting,
}

impl Sink<Target> for InnerSink<'_> {
    fn value(&mut self, target: &Target, value: Scalar<'_>) {
        *self.version += 1;
        *self.dirty |= self.staged.stage(*target, value);
    }

    fn streams(&self, target: &Target) -> bool {
        matches!(target, Target::Text)
    }

    fn string_start(&mut self, _target: &Target) {
        self.staged.text.start_string();
        *self.dirty = true;
        if let Some(c) = self.counter {
            c.string_start();
        }
    }

    fn string_chunk(&mut self, _target: &Target, bytes: &[u8]) {
        self.staged.text.add_with(bytes, self.counting);
        *self.dirty |= !bytes.is_empty();
        if let Some(c) = self.counter {
            c.chunk(bytes);
        }
    }

    // Not `counts_raw`: text counted from raw contents is counted up to an invalid escape,
    // decoded text only up to the last piece handed over. A failed outer document is never
    // committed, so that cannot show; the inner document of a base64 event can fail while
    // the event completes, and its text is committed with it.
}

impl Collect {
    /// Whether staging `value` for `target` now would change nothing at commit.
    ///
    /// Every OpenAI chunk repeats the model: when it is the committed one and this event
    /// has staged none, staging it would change nothing at commit (a later, different
    /// model in the same event is still staged and wins), so the copy and the UTF-8 check
    /// are skipped (the tokenizer heard of it when it was first read). OpenAI chunks
    /// repeat the service tier too, and an end mark that does not hit stages nothing.
    #[inline(always)]
    fn settled(&self, target: &Target, value: Scalar<'_>) -> bool {
        match (target, value) {
            (Target::ResponseModel, Scalar::String(s)) => {
                !self.staged.response_model.is_set() && self.committed.response_model.is(s)
            }
            (Target::ServiceTier, Scalar::String(s)) => {
                !self.staged.service_tier.is_set() && self.committed.service_tier.is(s)
            }
            (Target::End(when, _), value) => !crate::values::end_hit(*when, value),
            _ => false,
        }
    }

    /// Stages a value [`settled`](Self::settled) did not settle.
    #[inline(never)]
    fn stage_value(&mut self, target: &Target, value: Scalar<'_>) {
        // The tokenizer hears of a model as soon as it is read: a request names it after
        // the messages, whose text is counted as it passes.
        if let (Some(c), Target::ResponseModel | Target::RequestModel, Scalar::String(s)) =
            (&mut self.counter, target, value)
        {
            if let Ok(m) = core::str::from_utf8(s) {
                c.model(m);
            }
        }
        self.version += 1;
        self.dirty |= self.staged.stage(*target, value);
    }

    pub(super) fn commit(&mut self) {
        if self.dirty {
            self.content_events += u64::from(!self.staged.text.is_empty());
            if let Some(c) = &mut self.counter {
                c.commit();
            }
            self.staged.close_lists();
            self.committed.merge(&self.staged);
            let closes = self.staged.end & self.split != 0;
            self.staged.clear();
            self.dirty = false;
            if closes {
                self.close_record();
            }
        }
    }

    /// Moves the committed figures to a closed record; what describes the session (the
    /// model, the service tier) stays for the next one.
    fn close_record(&mut self) {
        self.version += 1;
        let records = &mut self.records;
        if records.pending.len() < MAX_PENDING_RECORDS {
            records.pending.push(self.committed);
        } else {
            records.dropped += 1;
        }
        let model = self.committed.response_model;
        let tier = self.committed.service_tier;
        self.committed.clear();
        self.committed.response_model = model;
        self.committed.service_tier = tier;
    }

    pub(super) fn discard(&mut self) {
        if self.dirty {
            if let Some(c) = &mut self.counter {
                c.discard();
            }
            self.staged.clear();
            self.dirty = false;
        }
    }

    /// Runs `f` with the inner base64 decoder, its scanner and a sink staging into this
    /// body's values (a no-op for dialects without base64-wrapped events).
    fn with_inner(
        &mut self,
        f: impl FnOnce(&mut Base64, &mut Scanner<Target>, &mut InnerSink<'_>),
    ) {
        let Collect {
            staged,
            dirty,
            version,
            inner,
            counter,
            counting,
            ..
        } = self;
        if let Some(inner) = inner.as_deref_mut() {
            let Inner { b64, scanner } = inner;
            f(
                b64,
                scanner,
                &mut InnerSink {
                    staged,
                    dirty,
                    version,
                    counter,
                    counting: *counting,
                },
            );
        }
    }
}

impl Sink<Target> for Collect {
    /// Inlined into the scanner's report loop: the values every stream chunk repeats
    /// (the model, the service tier, an `object` that is no end mark) are settled here
    /// without a call (issue 20 step 16); the rest is staged out of line.
    #[inline]
    fn value(&mut self, target: &Target, value: Scalar<'_>) {
        if !Collect::settled(self, target, value) {
            self.stage_value(target, value);
        }
    }

    #[inline]
    fn settled(&self, target: &Target, value: Scalar<'_>) -> bool {
        Collect::settled(self, target, value)
    }

    fn epoch(&self) -> Option<u64> {
        Some(self.version)
    }

    fn document_end(&mut self) {
        if self.commit_on_document_end {
            self.commit();
            self.events += 1;
        }
    }

    fn streams(&self, target: &Target) -> bool {
        match target {
            Target::Text => true,
            Target::Inner => self.inner.is_some(),
            _ => false,
        }
    }

    fn string_start(&mut self, target: &Target) {
        if matches!(target, Target::Text) {
            self.staged.text.start_string();
            self.dirty = true;
            if let Some(c) = &mut self.counter {
                c.string_start();
            }
        } else if let Some(inner) = self.inner.as_deref_mut() {
            inner.b64.reset();
            inner.scanner.reset();
        }
    }

    fn string_chunk(&mut self, target: &Target, bytes: &[u8]) {
        if matches!(target, Target::Text) {
            self.staged.text.add_with(bytes, self.counting);
            self.dirty |= !bytes.is_empty();
            if let Some(c) = &mut self.counter {
                c.chunk(bytes);
            }
        } else {
            self.with_inner(|b64, scanner, sink| b64.feed(bytes, |d| scanner.feed(d, sink)));
        }
    }

    /// Text is counted from the raw JSON contents (`TextStats::add_json`) where this CPU
    /// can, unless a tokenizer needs the decoded bytes.
    fn counts_raw(&self, target: &Target) -> bool {
        matches!(target, Target::Text) && self.counter.is_none() && self.counting.counts_raw()
    }

    fn string_raw(&mut self, _target: &Target, raw: &[u8]) -> usize {
        let n = self.staged.text.add_json(raw, self.counting);
        self.dirty |= n > 0;
        n
    }

    fn string_end(&mut self, target: &Target) {
        if matches!(target, Target::Inner) {
            self.with_inner(|b64, scanner, sink| b64.finish(|d| scanner.feed(d, sink)));
        }
    }
}
