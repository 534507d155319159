//! The held SSE event: what framers push into. An SSE event of up to [`EVENT_BUF`] bytes is
//! copied whole (and compared with the previous one as it is copied), then indexed and walked
//! (`scan::whole`); a larger one, or any other framing's payload, streams into the scanner.

use super::collect::Collect;
use crate::dialect::Target;
use crate::framing::{deliver_line, EventSink};
use crate::index::{common_prefix, copy_line, Copied, Index};
use crate::scan::{Replay, Scanner};

/// Largest SSE event (its data, lines joined) held whole and walked; a larger one is
/// streamed into the scanner.
pub(crate) const EVENT_BUF: usize = crate::index::MAX_BYTES;

#[cfg(test)]
thread_local! {
    /// Tests turn the whole-event walk off to compare with the scanner alone.
    pub(crate) static WALK_OFF: core::cell::Cell<bool> = const { core::cell::Cell::new(false) };
}

#[cfg(test)]
pub(super) fn walk_off() -> bool {
    WALK_OFF.with(core::cell::Cell::get)
}

#[cfg(not(test))]
pub(super) fn walk_off() -> bool {
    false
}

/// A held SSE event: [`EVENT_BUF`] bytes, allocated once per SSE body and zeroed (so that
/// `index::copy_line` can store whole vectors into it), `len` of them in use.
#[derive(Debug, Default)]
pub(super) struct EventBuf {
    pub(super) bytes: Box<[u8]>,
    pub(super) len: usize,
}

impl EventBuf {
    pub(super) fn allocate(&mut self) {
        if self.bytes.len() < EVENT_BUF {
            self.bytes = vec![0; EVENT_BUF].into_boxed_slice();
        }
        self.len = 0;
    }

    pub(super) fn get(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Scanner plus sink: what framers push into.
#[derive(Debug)]
pub(super) struct Core {
    pub(super) scanner: Scanner<Target>,
    pub(super) collect: Collect,
    pub(super) docs_at_event_start: u64,
    /// SSE: the current event's data while it fits in [`EVENT_BUF`] bytes (allocated once
    /// per SSE body, reused), so that it is walked whole (`scan::whole`).
    pub(super) held: EventBuf,
    /// Whether the current event's data goes to `held` (false once it outgrew it).
    pub(super) holding: bool,
    /// Whether events are held at all (SSE framing).
    pub(super) hold_events: bool,
    /// SSE: the structural index of the held event, for [`Scanner::scan_whole`], with what
    /// the walk of the previous event left for the next (see `scan::whole`, "Replay"):
    /// boxed together, allocated with `held` (so that bodies that never hold events stay
    /// small), reused. `None`: events are not held.
    pub(super) index: Option<Box<(Index, Replay)>>,
    /// The previous walked event (swapped with `held`, never copied).
    pub(super) prev: EventBuf,
    /// The length of the common prefix of `held` with `prev`, measured as the event is
    /// copied in (the replay's resume point, `scan::whole`).
    pub(super) same: usize,
    /// How much of [`DONE`] the data of an event that is not held has matched so far
    /// ([`NOT_DONE`]: it is not `[DONE]`). A held event is compared whole at its end.
    pub(super) done: u8,
    /// Whether a complete SSE event's data was exactly `[DONE]`.
    pub(super) done_seen: bool,
}

/// The data of the OpenAI family's last SSE event.
const DONE: &[u8] = b"[DONE]";
const NOT_DONE: u8 = u8::MAX;

impl Core {
    /// After an event was scanned: the scanner starts the next event afresh.
    pub(super) fn restart_event(&mut self) {
        self.scanner.reset();
        self.docs_at_event_start = self.scanner.documents();
        self.next_event();
    }

    /// Starts the next event: held again if events are held.
    pub(super) fn next_event(&mut self) {
        self.held.len = 0;
        self.same = 0;
        self.done = 0;
        self.holding = self.hold_events;
    }

    /// Follows data that is not held against [`DONE`].
    pub(super) fn match_done(&mut self, bytes: &[u8]) {
        if self.done != NOT_DONE {
            let at = usize::from(self.done);
            self.done = match DONE.get(at..at + bytes.len()) {
                Some(want) if want == bytes => (at + bytes.len()) as u8,
                _ => NOT_DONE,
            };
        }
    }
}

impl EventSink for Core {
    fn data(&mut self, bytes: &[u8]) {
        if self.holding {
            // The same copy-and-compare as `index::copy_rest`, kept apart: one helper for
            // both made the default wasm filter 70% slower on streams (it changed how
            // `copy_line`'s portable path compiles), and natively no faster.
            let at = self.held.len;
            if let Some(out) = self.held.bytes.get_mut(at..at + bytes.len()) {
                out.copy_from_slice(bytes);
                if self.same == at {
                    let prev = self.prev.get().get(at..).unwrap_or_default();
                    self.same = at + common_prefix(bytes, prev, bytes.len());
                }
                self.held.len += bytes.len();
                return;
            }
            // Too large to hold: streamed into the scanner from here on, as before.
            self.holding = false;
            self.done = NOT_DONE;
            self.scanner.feed(self.held.get(), &mut self.collect);
            self.held.len = 0;
        }
        self.match_done(bytes);
        self.scanner.feed(bytes, &mut self.collect);
    }

    fn data_line(&mut self, bytes: &[u8]) -> Option<usize> {
        if self.holding {
            let avx2 = self.index.as_deref().and_then(|(index, _)| index.avx2());
            let held = &mut self.held;
            match copy_line(
                bytes,
                &mut held.bytes,
                held.len,
                self.prev.get(),
                &mut self.same,
                avx2,
            ) {
                Copied::Line(k) => {
                    held.len += k;
                    return Some(k);
                }
                Copied::All => {
                    held.len += bytes.len();
                    return None;
                }
                // Too large to hold: `data` streams it into the scanner.
                Copied::NoRoom => {}
            }
        }
        deliver_line(self, bytes)
    }

    fn end_event(&mut self) {
        let done = if self.holding {
            self.held.get() == DONE
        } else {
            usize::from(self.done) == DONE.len()
        };
        self.done_seen |= done;
        if self.holding {
            // The whole event is here: index it and walk it (see `scan::whole`); what the
            // walk gives up on, the scanner reads as it would have read it streamed.
            if let Some((index, replay)) = self.index.as_deref_mut() {
                // What the copies measured is what a comparison of the whole event finds.
                debug_assert_eq!(
                    self.same,
                    common_prefix(self.held.get(), self.prev.get(), usize::MAX)
                );
                if self.scanner.scan_whole(
                    self.held.get(),
                    self.prev.get(),
                    self.same,
                    index,
                    replay,
                    &mut self.collect,
                ) {
                    self.collect.commit();
                    self.collect.events += 1;
                    core::mem::swap(&mut self.held, &mut self.prev);
                    self.restart_event();
                    return;
                }
                self.collect.discard();
            }
            self.scanner.feed(self.held.get(), &mut self.collect);
        }
        let complete =
            self.scanner.at_boundary() && self.scanner.documents() > self.docs_at_event_start;
        if complete {
            self.collect.commit();
            self.collect.events += 1;
        } else {
            self.collect.discard();
        }
        self.restart_event();
    }

    fn discard_event(&mut self) {
        self.collect.discard();
        self.restart_event();
    }
}
