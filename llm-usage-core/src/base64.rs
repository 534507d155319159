//! A streaming base64 decoder (standard alphabet, padding optional).
//!
//! Bedrock's InvokeModelWithResponseStream wraps each model event in
//! `{"bytes":"<base64>"}`; the decoded bytes are the provider's own JSON event and go
//! straight into a second scanner, four characters at a time, so nothing is buffered.

/// Decoder state: up to three pending sextets.
#[derive(Debug, Clone, Default)]
pub(crate) struct Base64 {
    acc: u32,
    n: u8,
    padded: bool,
    invalid: bool,
}

fn sextet(b: u8) -> Option<u8> {
    match b {
        b'A'..=b'Z' => Some(b - b'A'),
        b'a'..=b'z' => Some(b - b'a' + 26),
        b'0'..=b'9' => Some(b - b'0' + 52),
        b'+' | b'-' => Some(62),
        b'/' | b'_' => Some(63),
        _ => None,
    }
}

impl Base64 {
    pub(crate) fn reset(&mut self) {
        *self = Base64::default();
    }

    /// True once a character outside the alphabet was seen.
    #[cfg(test)]
    pub(crate) fn invalid(&self) -> bool {
        self.invalid
    }

    /// Decodes `input`, handing decoded bytes to `out` in small batches.
    pub(crate) fn feed(&mut self, input: &[u8], mut out: impl FnMut(&[u8])) {
        let mut batch = [0u8; 192];
        let mut len = 0;
        for &b in input {
            if self.invalid {
                return;
            }
            if b == b'=' {
                self.padded = true;
                continue;
            }
            if matches!(b, b'\r' | b'\n' | b' ' | b'\t') {
                continue;
            }
            let Some(v) = sextet(b) else {
                self.invalid = true;
                break;
            };
            if self.padded {
                // Data after padding: not base64.
                self.invalid = true;
                break;
            }
            self.acc = (self.acc << 6) | u32::from(v);
            self.n += 1;
            if self.n == 4 {
                batch[len] = (self.acc >> 16) as u8;
                batch[len + 1] = (self.acc >> 8) as u8;
                batch[len + 2] = self.acc as u8;
                len += 3;
                self.acc = 0;
                self.n = 0;
                if len + 3 > batch.len() {
                    out(&batch[..len]);
                    len = 0;
                }
            }
        }
        if len > 0 {
            out(&batch[..len]);
        }
    }

    /// Flushes a final partial group (unpadded input or input ending in `=`).
    pub(crate) fn finish(&mut self, mut out: impl FnMut(&[u8])) {
        if self.invalid {
            return;
        }
        match self.n {
            2 => out(&[(self.acc >> 4) as u8]),
            3 => out(&[(self.acc >> 10) as u8, (self.acc >> 2) as u8]),
            _ => {}
        }
        self.acc = 0;
        self.n = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_split(s: &str, at: usize) -> Vec<u8> {
        let mut d = Base64::default();
        let mut out = Vec::new();
        d.feed(&s.as_bytes()[..at], |b| out.extend_from_slice(b));
        d.feed(&s.as_bytes()[at..], |b| out.extend_from_slice(b));
        d.finish(|b| out.extend_from_slice(b));
        out
    }

    #[test]
    fn decodes_at_every_split() {
        for (enc, dec) in [
            ("eyJhIjoxfQ==", &b"{\"a\":1}"[..]),
            ("eyJhIjoxfQ", b"{\"a\":1}"),
            ("aGVsbG8gd29ybGQ=", b"hello world"),
            ("", b""),
        ] {
            for at in 0..=enc.len() {
                assert_eq!(decode_split(enc, at), dec, "{enc} split at {at}");
            }
        }
    }

    #[test]
    fn rejects_garbage() {
        let mut d = Base64::default();
        d.feed(b"ab$d", |_| {});
        assert!(d.invalid());
    }
}
