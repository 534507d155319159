//! Helpers shared by the fuzz targets: deterministic chunking, exchange drivers and the
//! split-invariance oracle (the same bytes fed in any chunks give the same record).

use llm_usage_core::scan::Watch;
use llm_usage_core::{Exchange, Options, Provider, UsageRecord};

/// A small deterministic PRNG (xorshift64*), seeded from the input so a crash reproduces.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    pub fn from_data(data: &[u8], salt: u64) -> Rng {
        // FNV-1a over (at most) the first and last 64 bytes and the length.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ salt;
        let head = &data[..data.len().min(64)];
        let tail = &data[data.len().saturating_sub(64)..];
        for &b in head.iter().chain(tail) {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
        h ^= data.len() as u64;
        Rng::new(h)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
}

/// Feeds `data` to `f` in random chunks of 1..=max bytes (max 0: one chunk; empty chunks
/// are interleaved too, since frontends may pass them).
pub fn feed_chunked(data: &[u8], rng: &mut Rng, max: u64, mut f: impl FnMut(&[u8])) {
    if max == 0 {
        f(data);
        return;
    }
    let mut rest = data;
    while !rest.is_empty() {
        if rng.below(16) == 0 {
            f(&[]);
        }
        let n = (1 + rng.below(max) as usize).min(rest.len());
        f(&rest[..n]);
        rest = &rest[n..];
    }
}

/// One exchange to replay.
#[derive(Debug, Clone, Default)]
pub struct Scenario<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub request_headers: Vec<(&'a str, &'a str)>,
    pub status: u16,
    pub response_headers: Vec<(&'a str, &'a str)>,
    pub provider: Option<Provider>,
    pub max_body_bytes: Option<u64>,
}

impl<'a> Scenario<'a> {
    pub fn new(path: &'a str, content_type: &'a str) -> Self {
        Scenario {
            method: "POST",
            path,
            request_headers: vec![("content-type", "application/json")],
            status: 200,
            response_headers: vec![("content-type", content_type)],
            provider: None,
            max_body_bytes: None,
        }
    }

    /// Replays the exchange, bodies cut in chunks of at most `max` bytes (0: whole).
    /// Partial records are taken along the way (they must not panic either).
    pub fn run(&self, request: &[u8], response: &[u8], rng: &mut Rng, max: u64) -> UsageRecord {
        let mut opts = Options::new();
        if let Some(p) = self.provider {
            opts = opts.provider(p);
        }
        if let Some(m) = self.max_body_bytes {
            opts = opts.max_body_bytes(m);
        }
        let mut ex = Exchange::with_options(opts);
        ex.on_request_head(self.method, self.path, self.request_headers.iter().copied());
        feed_chunked(request, rng, max, |c| ex.on_request_body(c));
        ex.on_request_end();
        let _ = ex.model();
        ex.on_response_head(self.status, self.response_headers.iter().copied());
        let mut n = 0u32;
        feed_chunked(response, rng, max, |c| {
            ex.on_response_body(c);
            n += 1;
            if n.is_multiple_of(64) {
                let _ = ex.record();
            }
        });
        ex.on_response_end();
        let _ = ex.response_events();
        ex.finish()
    }

    /// Runs whole, in small random chunks and in larger random chunks; all records must
    /// be equal. Returns the record.
    pub fn check(&self, request: &[u8], response: &[u8], salt: u64) -> UsageRecord {
        let mut rng = Rng::from_data(response, salt ^ request.len() as u64);
        let whole = self.run(request, response, &mut rng, 0);
        for max in [3, 17, 700] {
            let r = self.run(request, response, &mut rng, max);
            assert_eq!(
                r, whole,
                "record differs when split (chunks <= {max}): {self:?}"
            );
        }
        sanity(&whole);
        whole
    }
}

/// Properties every record has.
pub fn sanity(r: &UsageRecord) {
    if let Some(m) = &r.model {
        assert!(!m.is_empty());
        assert!(m.len() <= 4096);
    }
    if let Some(m) = &r.response_model {
        assert!(!m.is_empty() && m.len() <= llm_usage_core::limits::VALUE_CAP);
    }
    if let Some(m) = &r.request_model {
        assert!(!m.is_empty() && m.len() <= llm_usage_core::limits::VALUE_CAP);
    }
}

/// The watch table of the scanner-level targets (`scan`, `walk`): the dialects' shapes,
/// a repeated path, a path as deep as the scanner allows, and non-ASCII keys.
pub const WATCHES: &[Watch<u8>] = &[
    Watch {
        path: &["model"],
        target: 0,
    },
    Watch {
        path: &["usage", "prompt_tokens"],
        target: 1,
    },
    Watch {
        path: &["usage", "completion_tokens"],
        target: 2,
    },
    Watch {
        path: &["usage", "details", "cached"],
        target: 3,
    },
    Watch {
        path: &["message", "usage", "input_tokens"],
        target: 4,
    },
    Watch {
        path: &["usage", "prompt_tokens"],
        target: 5,
    },
    Watch {
        path: &["a", "b", "c", "d", "e", "f", "g"],
        target: 6,
    },
    Watch {
        path: &["bytes"],
        target: 7,
    },
    Watch {
        path: &["stream"],
        target: 8,
    },
    Watch {
        path: &["\u{e9}t\u{e9}", "\u{1F600}"],
        target: 9,
    },
];

/// The walk target's table: [`WATCHES`] and paths through arrays (transparent on a watched
/// path), two of them streamed as generated text is (targets 10 and up, see
/// `llm_usage_core::fuzzing::STREAMED`).
pub const WALK_WATCHES: &[Watch<u8>] = &[
    Watch {
        path: &["model"],
        target: 0,
    },
    Watch {
        path: &["usage", "prompt_tokens"],
        target: 1,
    },
    Watch {
        path: &["usage", "details", "cached"],
        target: 3,
    },
    Watch {
        path: &["a", "b", "c", "d", "e", "f", "g"],
        target: 6,
    },
    Watch {
        path: &["choices", "finish_reason"],
        target: 4,
    },
    Watch {
        path: &["choices", "delta", "content"],
        target: 10,
    },
    Watch {
        path: &["candidates", "content", "parts", "text"],
        target: 11,
    },
    Watch {
        path: &["delta", "text"],
        target: 12,
    },
];
