//! Hooks for the fuzz targets in `fuzz/`, compiled only under `--cfg fuzzing` (which
//! cargo-fuzz sets): they reach the whole-event walk, which is not public API.

use crate::index::{common_prefix, Index};
use crate::scan::{resume_point, Replay, Scalar, Scanner, Sink, Watch};

/// What a sink was told: values, and streamed strings (targets [`STREAMED`] and up) as
/// one entry each, their pieces joined (the walk and the scanner may cut them apart
/// differently).
#[derive(Default, Debug, PartialEq)]
struct Seen(Vec<(u8, Vec<u8>)>);

/// Targets from this one up are streamed (`Sink::streams`), as generated text is.
pub const STREAMED: u8 = 10;

impl Sink<u8> for Seen {
    fn value(&mut self, target: &u8, value: Scalar<'_>) {
        let text = match value {
            Scalar::Number(n) => [b"n:".as_slice(), n].concat(),
            Scalar::String(s) => [b"s:".as_slice(), s].concat(),
            Scalar::Bool(b) => format!("b:{b}").into_bytes(),
            Scalar::Null => b"null".to_vec(),
        };
        self.0.push((*target, text));
    }
    fn streams(&self, target: &u8) -> bool {
        *target >= STREAMED
    }
    fn string_start(&mut self, target: &u8) {
        self.0.push((*target, b"t:".to_vec()));
    }
    fn string_chunk(&mut self, target: &u8, bytes: &[u8]) {
        if let Some((t, text)) = self.0.last_mut() {
            if t == target {
                text.extend_from_slice(bytes);
            }
        }
    }
    fn string_end(&mut self, target: &u8) {
        self.0.push((*target, b"end".to_vec()));
    }
}

/// Walks `events` one after the other as an SSE body does (one scanner reset between
/// events, the replay and the previous event kept), over this build's index and again
/// over the word-at-a-time index of builds without vector instructions, and panics where
/// an event a walk read through reads otherwise with a fresh streaming scanner. Returns
/// how many events the first walk read through and how many of those resumed after a
/// common prefix.
pub fn walk_agrees_with_scanner(watches: &'static [Watch<u8>], events: &[&[u8]]) -> (usize, usize) {
    let counts = walk_with(watches, events, Index::new());
    walk_with(watches, events, Index::word_at_a_time());
    counts
}

fn walk_with(watches: &'static [Watch<u8>], events: &[&[u8]], mut index: Index) -> (usize, usize) {
    let mut replay = Replay::default();
    let mut prev: Vec<u8> = Vec::new();
    let mut walker = Scanner::new(watches, false, false);
    let (mut walked, mut resumed) = (0, 0);
    for &event in events {
        let mut reference = Scanner::new(watches, false, false);
        let mut expected = Seen::default();
        reference.feed(event, &mut expected);
        let complete = reference.at_boundary() && reference.documents() == 1;
        let same_as_prev = common_prefix(event, &prev, usize::MAX);
        let would_resume = resume_point(same_as_prev, &replay).is_some();
        let mut seen = Seen::default();
        walker.reset();
        if walker.scan_whole(
            event,
            &prev,
            same_as_prev,
            &mut index,
            &mut replay,
            &mut seen,
        ) {
            assert!(
                complete,
                "walked through an event the scanner fails: {event:?}"
            );
            assert_eq!(seen, expected, "{event:?} after {prev:?}");
            walked += 1;
            resumed += usize::from(would_resume);
            prev.clear();
            prev.extend_from_slice(event);
        }
    }
    (walked, resumed)
}

/// One WebSocket frame (RFC 6455), and messages compressed as a permessage-deflate
/// sender compresses them (RFC 7692), for the `websocket` target.
pub use crate::framing::websocket::{
    deflate_messages as websocket_deflate, frame as websocket_frame,
};
