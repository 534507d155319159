//! How to inflate a streamed body: `miniz_oxide`'s ways side by side, on the benchmarks'
//! `gzip_1mib` body fed in its 1–16 KiB chunks (the raw deflate data, no gzip framing, no
//! CRC: only the inflating differs). Each way is timed in turn, 100 rounds, by this
//! thread's CPU time; the medians and their ratios to inflating into one buffer as large
//! as the body (`compare`'s ceiling) are printed.
//!
//! `cargo run --release -p llm-usage-benches --example inflate_modes`
//!
//! - `stream`: `inflate::stream`, whose state keeps the 32 KiB window as a ring, copied
//!   out into an 8 KiB buffer (the core until issue 20's step 13);
//! - `ring`: the decompressor writing into a 32 KiB ring of our own, no copy out;
//! - `linear N`: the decompressor in its non-wrapping mode writing into an `N`-byte
//!   buffer, at most 8 KiB per call, the last 32 KiB slid to the front when less than
//!   8 KiB is left (the core's way since step 13, `N` = 48 KiB);
//! - `one buffer`: non-wrapping into a buffer as large as the body.

use llm_usage_benches::clock::Tick;
use llm_usage_benches::inputs;
use miniz_oxide::inflate::core::{decompress, inflate_flags as f, DecompressorOxide};
use miniz_oxide::inflate::stream::{inflate, InflateState};
use miniz_oxide::inflate::TINFLStatus;
use miniz_oxide::{DataFormat, MZFlush};
use std::hint::black_box;

const WINDOW: usize = 32 * 1024;
const STEP: usize = 8 * 1024;

/// Decoded bytes and a byte of each output, so that nothing is optimised away.
type Out = (usize, u64);

fn stream(st: &mut InflateState, chunks: &[&[u8]]) -> Out {
    let mut out = [0u8; STEP];
    st.reset(DataFormat::Raw);
    let (mut n, mut sum) = (0, 0);
    for &c in chunks {
        let mut rest = c;
        loop {
            let r = inflate(st, rest, &mut out, MZFlush::None);
            rest = &rest[r.bytes_consumed..];
            n += r.bytes_written;
            sum += u64::from(out[r.bytes_written / 2]);
            if r.status.is_err() || (rest.is_empty() && r.bytes_written < STEP) {
                break;
            }
        }
    }
    (n, sum)
}

fn ring(dec: &mut DecompressorOxide, ring: &mut [u8], chunks: &[&[u8]]) -> Out {
    dec.init();
    let (mut n, mut sum, mut pos) = (0, 0, 0);
    for &c in chunks {
        let mut rest = c;
        loop {
            let (st, used, w) = decompress(dec, rest, ring, pos, f::TINFL_FLAG_HAS_MORE_INPUT);
            rest = &rest[used..];
            sum += u64::from(ring[pos + w / 2]);
            n += w;
            pos = (pos + w) & (ring.len() - 1);
            if st != TINFLStatus::HasMoreOutput {
                break;
            }
        }
    }
    (n, sum)
}

fn linear(dec: &mut DecompressorOxide, buf: &mut [u8], chunks: &[&[u8]]) -> Out {
    const FLAGS: u32 = f::TINFL_FLAG_HAS_MORE_INPUT | f::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF;
    dec.init();
    let (mut n, mut sum, mut pos) = (0, 0, 0);
    for &c in chunks {
        let mut rest = c;
        loop {
            if buf.len() - pos < STEP {
                buf.copy_within(pos - WINDOW..pos, 0);
                pos = WINDOW;
            }
            let end = (pos + STEP).min(buf.len());
            let (st, used, w) = decompress(dec, rest, &mut buf[..end], pos, FLAGS);
            rest = &rest[used..];
            sum += u64::from(buf[pos + w / 2]);
            n += w;
            pos += w;
            if st != TINFLStatus::HasMoreOutput {
                break;
            }
        }
    }
    (n, sum)
}

fn main() {
    let input = inputs::all()
        .into_iter()
        .find(|i| i.name == "gzip_1mib")
        .expect("gzip_1mib");
    let deflate = &input.wire[10..input.wire.len() - 8];
    let mut chunks = Vec::new();
    let mut at = 0;
    for n in inputs::chunk_sizes(deflate.len(), 7) {
        chunks.push(&deflate[at..at + n]);
        at += n;
    }
    let mut st = InflateState::new_boxed(DataFormat::Raw);
    let mut dec: Box<DecompressorOxide> = Box::default();
    let mut ring32 = vec![0u8; WINDOW];
    let mut lin48 = vec![0u8; WINDOW + 2 * STEP];
    let mut lin64 = vec![0u8; 2 * WINDOW];
    let mut whole = vec![0u8; input.decoded.len() + 64];
    let names = ["stream", "ring", "linear 48K", "linear 64K", "one buffer"];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    for round in 0..101 {
        for (way, t) in times.iter_mut().enumerate() {
            let tick = Tick::now();
            let out = match way {
                0 => stream(&mut st, &chunks),
                1 => ring(&mut dec, &mut ring32, &chunks),
                2 => linear(&mut dec, &mut lin48, &chunks),
                3 => linear(&mut dec, &mut lin64, &chunks),
                _ => linear(&mut dec, &mut whole, &chunks),
            };
            let elapsed = tick.elapsed().as_secs_f64() * 1e3;
            assert_eq!(black_box(out).0, input.decoded.len(), "{}", names[way]);
            // The first round warms up.
            if round > 0 {
                t.push(elapsed);
            }
        }
    }
    let medians: Vec<f64> = times
        .iter_mut()
        .map(|t| {
            t.sort_by(f64::total_cmp);
            t[t.len() / 2]
        })
        .collect();
    let ceiling = medians[names.len() - 1];
    for (name, m) in names.iter().zip(&medians) {
        println!("{name:<11} {m:.3} ms  {:.3} of one buffer", ceiling / m);
    }
}
