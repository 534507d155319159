//! The SSE filter against an independent whole-buffer oracle, split at every byte.

use super::*;

/// The reference: the events of a whole stream, found line by line without any streaming
/// state, and the stream with the usage-only ones removed.
fn oracle(stream: &[u8]) -> (Vec<u8>, usize) {
    // Lines as (start, content end, end after the terminator).
    let mut lines = Vec::new();
    let mut i = 0;
    while i < stream.len() {
        let mut j = i;
        while j < stream.len() && stream[j] != b'\n' && stream[j] != b'\r' {
            j += 1;
        }
        if j == stream.len() {
            lines.push((i, j, j, false));
            break;
        }
        let end = if stream[j] == b'\r' && stream.get(j + 1) == Some(&b'\n') {
            j + 2
        } else {
            j + 1
        };
        lines.push((i, j, end, true));
        i = end;
    }
    let mut out = Vec::new();
    let mut removed = 0;
    let mut event: Option<(usize, Vec<&[u8]>, bool)> = None; // start, data values, only data
    let mut copied = 0;
    for &(s, e, end, terminated) in &lines {
        let line = &stream[s..e];
        if line.is_empty() && terminated {
            if let Some((start, data, only_data)) = event.take() {
                // Bytes before the blank line.
                let len = s - start;
                let joined = data.join(&b'\n');
                if only_data
                    && !data.is_empty()
                    && len <= MAX_HELD_EVENT
                    && is_usage_only_chunk(&joined)
                {
                    out.extend_from_slice(&stream[copied..start]);
                    copied = end;
                    removed += 1;
                }
            }
            continue;
        }
        if line.first() == Some(&b':') {
            continue;
        }
        let ev = event.get_or_insert((s, Vec::new(), true));
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(c) => (&line[..c], &line[c + 1..]),
            None => (line, &[][..]),
        };
        if name == b"data" {
            ev.1.push(value.strip_prefix(b" ").unwrap_or(value));
        } else {
            ev.2 = false;
        }
    }
    out.extend_from_slice(&stream[copied..]);
    (out, removed)
}

/// Runs the filter over `chunks` and returns what the client receives.
fn run(chunks: &[&[u8]]) -> (Vec<u8>, UsageChunkFilter) {
    let mut f = UsageChunkFilter::new();
    let mut client = Vec::new();
    for c in chunks {
        let mut out = Vec::new();
        match f.push(c, &mut out) {
            Filtered::Unchanged => {
                assert!(out.is_empty());
                client.extend_from_slice(c);
            }
            Filtered::Changed => client.extend_from_slice(&out),
        }
        assert!(f.held_bytes() <= MAX_HELD_EVENT, "held {}", f.held_bytes());
    }
    f.finish(&mut client);
    (client, f)
}

/// The filter's output against the oracle: whole, one byte at a time, and split in two at
/// every byte (and in three around every pair of bytes for short streams).
fn check_every_split(stream: &[u8]) -> (Vec<u8>, usize) {
    let (want, removed) = oracle(stream);
    let (whole, f) = run(&[stream]);
    assert!(
        whole == want,
        "whole: {:?} gave {:?}",
        String::from_utf8_lossy(stream),
        String::from_utf8_lossy(&whole)
    );
    assert_eq!(f.removed_events() as usize, removed);
    assert_eq!(
        f.removed_bytes() as usize,
        stream.len() - want.len(),
        "removed bytes"
    );
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    assert!(
        run(&bytes).0 == want,
        "one byte at a time: {:?}",
        String::from_utf8_lossy(stream)
    );
    for k in 0..=stream.len() {
        let (a, b) = stream.split_at(k);
        let (got, f) = run(&[a, &[], b]);
        assert!(
            got == want,
            "split at {k}: {:?}",
            String::from_utf8_lossy(stream)
        );
        assert_eq!(f.removed_events() as usize, removed, "split at {k}");
    }
    if stream.len() <= 200 {
        for k in 0..=stream.len() {
            for l in k..=stream.len() {
                let got = run(&[&stream[..k], &stream[k..l], &stream[l..]]).0;
                assert!(
                    got == want,
                    "split at {k} and {l}: {:?}",
                    String::from_utf8_lossy(stream)
                );
            }
        }
    }
    (want, removed)
}

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../testdata/fixtures/{name}/response.bin",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

const USAGE: &str = r#"{"id":"c","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":16,"completion_tokens":6,"total_tokens":22}}"#;

#[test]
fn openai_include_usage_stream_loses_exactly_its_usage_chunk() {
    let stream = fixture("02-openai-chat-stream-usage");
    let (out, removed) = check_every_split(&stream);
    assert_eq!(removed, 1);
    // What is left is every event but the usage one, byte for byte.
    let events: Vec<&[u8]> = stream
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let kept: Vec<&[u8]> = out
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(kept.len(), events.len() - 1);
    assert!(events[events.len() - 2].starts_with(b"data: {\"id\":\"chatcmpl-BxQ9Lm3QpT6yRw2ZaE8uNc5VhK1Jd\",\"object\":\"chat.completion.chunk\",\"created\":1753862531,\"model\":\"gpt-4o-2024-08-06\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_07871e2ad8\",\"choices\":[],"));
    assert!(out.ends_with(
        b"\"finish_reason\":\"stop\"}],\"usage\":null,\"obfuscation\":\"a1\"}\n\ndata: [DONE]\n\n"
    ));
}

#[test]
fn streams_without_a_usage_only_chunk_pass_unchanged() {
    for name in [
        "03-openai-chat-stream-no-usage",
        "35-mistral-chat-stream",
        "39-openai-compat-data-no-space",
        "40-deepseek-keepalive-comments",
        "12-anthropic-messages-stream",
        "17-gemini-stream-sse-thinking",
        "28-dashscope-generation-sse",
    ] {
        let stream = fixture(name);
        let (out, removed) = check_every_split(&stream);
        assert_eq!(removed, 0, "{name}");
        assert_eq!(out, stream, "{name}");
    }
}

#[test]
fn compatible_servers_usage_chunks_are_removed_in_every_line_style() {
    for name in [
        "05-openai-chat-tool-calls-stream",
        "29-dashscope-compatible-stream",
        "36-vllm-chat-stream",
        "38-openai-compat-crlf-sse",
        "41-openai-compat-multiline-data",
        "42-openai-stream-usage-lookalike",
    ] {
        let stream = fixture(name);
        let (out, removed) = check_every_split(&stream);
        assert_eq!(removed, 1, "{name}");
        assert!(out.len() < stream.len(), "{name}");
        // Usage-like text inside content strings stays.
        if name.starts_with("42") {
            assert!(out
                .windows(14)
                .any(|w| w == br#"{\"usage\": {\"p"#[..14].as_ref()));
        }
    }
}

#[test]
fn line_styles_and_comments() {
    let cases: Vec<(String, usize)> = vec![
        (format!("data: {USAGE}\n\ndata: [DONE]\n\n"), 1),
        (format!("data: {USAGE}\r\n\r\ndata: [DONE]\r\n\r\n"), 1),
        (format!("data: {USAGE}\r\rdata: [DONE]\r\r"), 1),
        (format!("data:{USAGE}\n\n"), 1),
        (format!("data:  {USAGE}\n\n"), 1), // one space is taken; JSON allows the second
        (format!(": keep-alive\ndata: {USAGE}\n\n: after\n\n"), 1),
        (format!("data: {USAGE}\n: inside\n\n"), 1),
        (
            "data: {\"choices\":[],\ndata: \"usage\":{\"total_tokens\":3}}\n\n".into(),
            1,
        ),
        (
            "data: {\"choices\":[],\r\ndata:\"usage\":{}}\r\n\r\n".into(),
            1,
        ),
        // Not removed: other fields, another shape, cut or too long.
        (format!("event: usage\ndata: {USAGE}\n\n"), 0),
        (format!("id: 7\ndata: {USAGE}\n\n"), 0),
        (format!("data: {USAGE}\nretry: 10\n\n"), 0),
        (
            "data: {\"choices\":[{\"index\":0}],\"usage\":{\"total_tokens\":3}}\n\n".into(),
            0,
        ),
        ("data: {\"choices\":[],\"usage\":null}\n\n".into(), 0),
        (
            "data: {\"choices\":[],\"choices\":[],\"usage\":{}}\n\n".into(),
            0,
        ),
        (
            "data: {\"choices\":[],\"usage\":{},\"usage\":{}}\n\n".into(),
            0,
        ),
        ("data: {\"choices\":[],\"usage\":{}\n\n".into(), 0),
        ("data: {\"choices\":{},\"usage\":{}}\n\n".into(), 0),
        ("data: {\"usage\":{}}\n\n".into(), 0),
        ("data: [DONE]\n\n".into(), 0),
        (format!("data: {USAGE}\n"), 0),
        (format!("data: {USAGE}"), 0),
        (": only a comment\n\n\n\r\n".into(), 0),
        ("\n\n\r\r\n".into(), 0),
        (format!("data: {}\n\n", "x".repeat(5000)), 0),
        // Two usage chunks: both go.
        (format!("data: {USAGE}\n\ndata: {USAGE}\n\n"), 2),
        // A CR that ends a removed event, then a lone LF: one CRLF line end, removed with it.
        (format!("data: {USAGE}\r\r\n\r\ndata: [DONE]\r\n\r\n"), 1),
        (format!("data: {USAGE}\r\n\r\n\ndata: [DONE]\n\n"), 1),
    ];
    for (stream, want) in cases {
        let (_, removed) = check_every_split(stream.as_bytes());
        assert_eq!(removed, want, "{stream:?}");
    }
}

#[test]
fn the_cap_is_the_same_whatever_the_chunking() {
    // Events whose lines before the blank line are just under, at and over the cap.
    for pad in [
        MAX_HELD_EVENT - 200,
        MAX_HELD_EVENT - 1,
        MAX_HELD_EVENT,
        MAX_HELD_EVENT + 1,
    ] {
        let head = r#"data: {"choices":[],"usage":{"p":""#;
        let tail = "\"}}\n";
        let fill = pad.saturating_sub(head.len() + tail.len());
        let stream = format!("{head}{}{tail}\ndata: [DONE]\n\n", "x".repeat(fill));
        let event_len = head.len() + fill + tail.len();
        let (_, removed) = check_every_split(stream.as_bytes());
        assert_eq!(
            removed,
            usize::from(event_len <= MAX_HELD_EVENT),
            "{event_len}"
        );
    }
}

#[test]
fn pseudo_random_streams_match_the_oracle() {
    let pieces: [&[u8]; 16] = [
        b"data: ",
        b"data:",
        b"\n",
        b"\r",
        b"\r\n",
        b": c\n",
        b"event: x\n",
        b"id: 1\n",
        USAGE.as_bytes(),
        b"{\"choices\":[],",
        b"\"usage\":{}}",
        b"[DONE]",
        b"{\"choices\":[{}]}",
        b"data",
        b"x",
        b" ",
    ];
    let mut state: u64 = 0x1234_5678_9abc_def1;
    let mut next = |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    for _ in 0..3000 {
        let mut stream = Vec::new();
        for _ in 0..next(24) {
            let p = next(pieces.len() as u64 + 4) as usize;
            if p >= pieces.len() {
                stream.extend_from_slice(format!("data: {USAGE}\n\n").as_bytes());
            } else {
                stream.extend_from_slice(pieces[p]);
            }
        }
        let (want, _) = oracle(&stream);
        let mut chunks = Vec::new();
        let mut rest = &stream[..];
        while !rest.is_empty() {
            let n = (1 + next(40) as usize).min(rest.len());
            chunks.push(&rest[..n]);
            rest = &rest[n..];
        }
        assert!(
            run(&chunks).0 == want,
            "{:?}",
            String::from_utf8_lossy(&stream)
        );
    }
}

#[test]
fn unchanged_chunks_are_not_copied() {
    let mut f = UsageChunkFilter::new();
    let mut out = Vec::new();
    assert_eq!(
        f.push(b"data: {\"choices\":[{}]}\n\n", &mut out),
        Filtered::Unchanged
    );
    assert_eq!(f.push(b": ping\n\n", &mut out), Filtered::Unchanged);
    assert_eq!(f.push(b"", &mut out), Filtered::Unchanged);
    assert!(out.is_empty());
    // A chunk that ends inside an event forwards the part before it.
    assert_eq!(
        f.push(b"data: [DONE]\n\ndata: {", &mut out),
        Filtered::Changed
    );
    assert_eq!(out, b"data: [DONE]\n\n");
    assert_eq!(f.held_bytes(), 7);
}

#[test]
fn applies_and_encodings() {
    assert!(applies_to("post", "/openai/deployments/d/chat/completions"));
    assert!(applies_to("POST", "/v1/completions#x"));
    assert!(!applies_to("POST", "/v1/chat/completions/abc"));
    assert!(!applies_to("POST", "/v1/embeddings"));
    assert!(is_encoded(b"gzip"));
    assert!(is_encoded(b" br "));
    assert!(!is_encoded(b""));
    assert!(!is_encoded(b" Identity"));
    assert_eq!(Skip::ALL.len(), 9);
    for s in Skip::ALL {
        assert_eq!(s.to_string(), s.as_str());
    }
}
