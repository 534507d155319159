//! The JSON scanner alone: any bytes, fed in any chunks, in every mode.
//!
//! Oracles: no panic; the same events whatever the chunking; and for input that
//! `serde_json` accepts as one document, every scalar serde finds at a watched path
//! (within the scanner's caps) is reported by the scanner.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llm_usage_core::limits::{KEY_CAP, VALUE_CAP};
use llm_usage_core::scan::{Scalar, Scanner, Sink};
use llm_usage_fuzz::{feed_chunked, Rng, WATCHES as W};

#[derive(Debug, Clone, PartialEq)]
enum Ev {
    Value(u8, Vec<u8>, u8),
    DocEnd,
    Start(u8),
    Chunk(u8, Vec<u8>),
    End(u8),
}

#[derive(Default)]
struct Rec {
    ev: Vec<Ev>,
}

impl Sink<u8> for Rec {
    fn value(&mut self, t: &u8, v: Scalar<'_>) {
        let (bytes, kind) = match v {
            Scalar::Number(n) => {
                assert!(n.len() <= VALUE_CAP);
                (n.to_vec(), 0)
            }
            Scalar::String(s) => {
                assert!(s.len() <= VALUE_CAP);
                (s.to_vec(), 1)
            }
            Scalar::Bool(b) => (vec![b as u8], 2),
            Scalar::Null => (vec![], 3),
        };
        self.ev.push(Ev::Value(*t, bytes, kind));
    }
    fn document_end(&mut self) {
        self.ev.push(Ev::DocEnd);
    }
    fn streams(&self, t: &u8) -> bool {
        *t == 7
    }
    fn string_start(&mut self, t: &u8) {
        self.ev.push(Ev::Start(*t));
    }
    fn string_chunk(&mut self, t: &u8, b: &[u8]) {
        // Coalesce, since chunk boundaries legitimately differ.
        if let Some(Ev::Chunk(tt, v)) = self.ev.last_mut() {
            if tt == t {
                v.extend_from_slice(b);
                return;
            }
        }
        if !b.is_empty() {
            self.ev.push(Ev::Chunk(*t, b.to_vec()));
        }
    }
    fn string_end(&mut self, t: &u8) {
        self.ev.push(Ev::End(*t));
    }
}

fn scan(
    data: &[u8],
    array_roots: bool,
    multi: bool,
    rng: &mut Rng,
    max: u64,
) -> (Vec<Ev>, bool, bool, u64) {
    let mut s = Scanner::new(W, array_roots, multi);
    let mut rec = Rec::default();
    feed_chunked(data, rng, max, |c| s.feed(c, &mut rec));
    (rec.ev, s.at_boundary(), s.failed(), s.documents())
}

fn lookup<'v>(v: &'v serde_json::Value, path: &[&str]) -> Option<&'v serde_json::Value> {
    let mut cur = v;
    for k in path {
        cur = cur.as_object()?.get(*k)?;
    }
    Some(cur)
}

fuzz_target!(|data: &[u8]| {
    let mut rng = Rng::from_data(data, 0);
    for (array_roots, multi) in [(false, false), (true, true), (true, false), (false, true)] {
        let whole = scan(data, array_roots, multi, &mut rng, 0);
        for max in [1, 5, 64] {
            let split = scan(data, array_roots, multi, &mut rng, max);
            assert_eq!(
                split, whole,
                "split differs (max {max}, roots {array_roots}, multi {multi})"
            );
        }
    }

    // Differential check against serde_json for one valid document.
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    // Longest run of number characters: a longer number is beyond the value cap.
    let mut run = 0usize;
    let mut longest_number = 0usize;
    for &b in data {
        run = if b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E') {
            run + 1
        } else {
            0
        };
        longest_number = longest_number.max(run);
    }
    let mut padded = data.to_vec();
    padded.push(b' ');
    let (ev, boundary, failed, docs) = scan(&padded, false, false, &mut rng, 0);
    assert!(!failed, "valid JSON failed the scan");
    assert!(boundary, "valid JSON did not end on a boundary");
    assert_eq!(docs, 1);
    for w in W {
        if w.target == 7 {
            continue;
        }
        let Some(v) = lookup(&doc, w.path) else {
            continue;
        };
        if w.path.iter().any(|k| k.len() > KEY_CAP) {
            continue;
        }
        let found = |kind: u8, bytes: &[u8]| {
            ev.iter().any(
                |e| matches!(e, Ev::Value(t, b, k) if *t == w.target && *k == kind && b == bytes),
            )
        };
        let ok = match v {
            serde_json::Value::String(s) => s.len() > VALUE_CAP || found(1, s.as_bytes()),
            serde_json::Value::Bool(b) => found(2, &[*b as u8]),
            serde_json::Value::Null => found(3, &[]),
            serde_json::Value::Number(_) => {
                ev.iter().any(|e| match e {
                    Ev::Value(t, b, 0) if *t == w.target => {
                        serde_json::from_slice::<serde_json::Value>(b).ok().as_ref() == Some(v)
                    }
                    _ => false,
                }) || longest_number > VALUE_CAP
            }
            _ => true,
        };
        assert!(ok, "scanner missed {:?} = {v:?}; events {ev:?}", w.path);
    }
});
