//! The times of one exchange, as numbers.
//!
//! The crate reads no clock: a proxy-wasm filter asks its host, a tower service or a
//! reqwest client asks `Instant`. Frontends pass nanoseconds of whatever clock they have
//! (only differences are used), and the derived durations are computed here, once, so
//! that every frontend means the same by "time per output token".

use llm_usage_core::UsageRecord;

/// When an exchange started, saw its first response byte and its first generated token,
/// and ended, in nanoseconds of the frontend's clock (`None`: not seen, or the clock
/// failed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timings {
    /// The request arrived (or was sent).
    pub start: Option<u64>,
    /// The first byte of the response (headers or body, as the frontend defines it).
    pub first_byte: Option<u64>,
    /// The first complete response event carrying generated text
    /// (`Exchange::first_token_seen`).
    pub first_token: Option<u64>,
    /// The exchange ended (response end, drop, or log).
    pub end: Option<u64>,
}

impl Timings {
    fn since_start(&self, t: Option<u64>) -> Option<u64> {
        Some(t?.saturating_sub(self.start?))
    }

    /// Nanoseconds from the start to the first response byte.
    pub fn time_to_first_byte(&self) -> Option<u64> {
        self.since_start(self.first_byte)
    }

    /// Nanoseconds from the start to the first generated token.
    pub fn time_to_first_token(&self) -> Option<u64> {
        self.since_start(self.first_token)
    }

    /// Nanoseconds from the start to the end.
    pub fn duration(&self) -> Option<u64> {
        self.since_start(self.end)
    }

    /// Nanoseconds per output token after the first, in the sense of OpenTelemetry's
    /// `gen_ai.server.time_per_output_token`: `(end − first token) / (output tokens − 1)`.
    /// `None` unless the request was streamed (only then do tokens arrive as they are
    /// generated), both times are known and the record reports at least two output tokens.
    ///
    /// ```
    /// use llm_usage_report::{Timings, UsageRecord};
    ///
    /// let t = Timings { start: Some(0), first_byte: None, first_token: Some(250), end: Some(1_250) };
    /// let mut r = UsageRecord::default();
    /// r.stream = Some(true);
    /// r.output_tokens = Some(101);
    /// assert_eq!(t.time_per_output_token(&r), Some(10));
    /// r.stream = Some(false);
    /// assert_eq!(t.time_per_output_token(&r), None);
    /// ```
    pub fn time_per_output_token(&self, record: &UsageRecord) -> Option<u64> {
        if record.stream != Some(true) {
            return None;
        }
        let n = record.output_tokens?;
        if n < 2 {
            return None;
        }
        let after_first = self.end?.checked_sub(self.first_token?)?;
        Some(after_first / (n - 1))
    }
}

// Field by field: `UsageRecord` may become `#[non_exhaustive]` (issue 18, part 4).
#[cfg(test)]
#[allow(clippy::field_reassign_with_default)]
mod tests {
    use super::*;

    #[test]
    fn durations_from_the_start() {
        let t = Timings {
            start: Some(1_000_000_000),
            first_byte: Some(1_100_000_000),
            first_token: Some(1_250_000_000),
            end: Some(2_250_000_000),
        };
        assert_eq!(t.time_to_first_byte(), Some(100_000_000));
        assert_eq!(t.time_to_first_token(), Some(250_000_000));
        assert_eq!(t.duration(), Some(1_250_000_000));
        let mut r = UsageRecord::default();
        r.stream = Some(true);
        r.output_tokens = Some(101);
        assert_eq!(t.time_per_output_token(&r), Some(10_000_000));
        r.output_tokens = Some(1);
        assert_eq!(t.time_per_output_token(&r), None);
        r.output_tokens = None;
        assert_eq!(t.time_per_output_token(&r), None);
        let unknown = Timings { start: None, ..t };
        assert_eq!(unknown.duration(), None);
        assert_eq!(unknown.time_to_first_token(), None);
    }
}
