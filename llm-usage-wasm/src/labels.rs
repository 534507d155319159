//! Label values in stat names: encoding the dimensions into the name.
//!
//! A metric's dimensions travel inside its Envoy stat name (Envoy has no labels at
//! definition time); bootstrap `stats_tags` regexes cut them out again. Values come partly
//! from clients (model names, headers, the authority): they are sanitised before they go
//! into a name and their number is capped, by the shared `llm_usage_report::labels`
//! ([`sanitize_tag`](llm_usage_report::labels::sanitize_tag),
//! [`Limiter`](llm_usage_report::labels::Limiter)).

use crate::config::TagFormat;

pub use llm_usage_report::labels::UNKNOWN;

/// Builds the stat name for `name` with `tags` (already sanitised) in `format`.
///
/// - with [`TagFormat::Pipe`], `name|tag1=v1|tag2=v2`;
/// - with [`TagFormat::Istio`], `tag1=.=v1;.;tag2=.=v2;.;name`.
pub fn stat_name(format: TagFormat, name: &str, tags: &[(&str, &str)]) -> String {
    let len = name.len()
        + tags
            .iter()
            .map(|(t, v)| t.len() + v.len() + 6)
            .sum::<usize>();
    let mut s = String::with_capacity(len);
    match format {
        TagFormat::Pipe => {
            s.push_str(name);
            for (t, v) in tags {
                s.push('|');
                s.push_str(t);
                s.push('=');
                s.push_str(v);
            }
        }
        TagFormat::Istio => {
            for (t, v) in tags {
                s.push_str(t);
                s.push_str("=.=");
                s.push_str(v);
                s.push_str(";.;");
            }
            s.push_str(name);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_names() {
        let tags = [
            ("llmproxy_source_workload", "sleep"),
            ("llmproxy_model", "qwen-turbo"),
        ];
        assert_eq!(
            stat_name(TagFormat::Pipe, "asm_llm_proxy_prompt_tokens", &tags),
            "asm_llm_proxy_prompt_tokens|llmproxy_source_workload=sleep|llmproxy_model=qwen-turbo"
        );
        assert_eq!(
            stat_name(TagFormat::Istio, "llm_tokens", &tags),
            "llmproxy_source_workload=.=sleep;.;llmproxy_model=.=qwen-turbo;.;llm_tokens"
        );
        assert_eq!(stat_name(TagFormat::Pipe, "n", &[]), "n");
    }
}
