//! Envoy's side of the custom metrics: the store, `stats_tags` extraction, Prometheus text.
//!
//! Envoy creates a Wasm metric named `n` as the stat `wasmcustom.n`. When stats are
//! rendered, each `stats_config.stats_tags` specifier is applied to the full stat name: the
//! regex's first capture group is cut out of the name and its second group (or the first,
//! when there is only one) becomes the tag value; a `fixed_value` specifier adds its tag to
//! every stat. The Prometheus handler then strips the registered custom namespace
//! `wasmcustom.` (and does not add the `envoy_` prefix it puts on native stats), turns every
//! character outside `[a-zA-Z0-9_]` into `_`, and prints the tags as labels in the order the
//! specifiers are configured.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use regex::Regex;
use serde_json::Value;

/// The namespace Envoy puts in front of every metric a Wasm module defines.
pub const CUSTOM_NAMESPACE: &str = "wasmcustom.";

/// Envoy's default histogram bucket boundaries.
pub const DEFAULT_BUCKETS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// The bootstrap fragment from Alibaba Cloud Service Mesh's LLM observability guide
/// (the `custom_bootstrap.json` of the `asm-llm-proxy-bootstrap-config` ConfigMap), verbatim.
pub const ASM_BOOTSTRAP_FRAGMENT: &str = r#""stats_config": {
  "stats_tags":[
    {"tag_name":"llmproxy_source_workload","regex":"(\\|llmproxy_source_workload=([^|]*))"},
    {"tag_name":"llmproxy_source_workload_namespace","regex":"(\\|llmproxy_source_workload_namespace=([^|]*))"},
    {"tag_name":"llmproxy_destination_service","regex":"(\\|llmproxy_destination_service=([^|]*))"},
    {"tag_name":"llmproxy_model","regex":"(\\|llmproxy_model=([^|]*))"}
  ]
}"#;

/// Stats of one Prometheus name: its type and (labels, full stat name, value) entries.
type Group<'a> = (&'static str, Vec<(String, &'a str, &'a MetricValue)>);

/// A metric's kind and value.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricValue {
    /// A counter.
    Counter(u64),
    /// A gauge.
    Gauge(u64),
    /// A histogram: every recorded value.
    Histogram(Vec<u64>),
}

/// The stats store: metrics by full Envoy stat name (`wasmcustom.<name>`).
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Metrics by full stat name.
    pub metrics: BTreeMap<String, MetricValue>,
}

impl Stats {
    /// Adds another VM's metrics into these, as Envoy's one process-wide stats store holds
    /// every worker's: counters add, histograms keep every value, a gauge takes the
    /// other's value when it has one (the last writer, as with a shared gauge).
    pub fn merge(&mut self, other: &Stats) {
        for (name, v) in &other.metrics {
            match (self.metrics.get_mut(name), v) {
                (Some(MetricValue::Counter(a)), MetricValue::Counter(b)) => *a += b,
                (Some(MetricValue::Histogram(a)), MetricValue::Histogram(b)) => {
                    a.extend_from_slice(b)
                }
                (Some(slot), v) => *slot = v.clone(),
                (None, v) => {
                    self.metrics.insert(name.clone(), v.clone());
                }
            }
        }
    }

    /// The value of the counter defined as `name` (without the namespace).
    pub fn counter(&self, name: &str) -> Option<u64> {
        match self.metrics.get(&format!("{CUSTOM_NAMESPACE}{name}"))? {
            MetricValue::Counter(v) => Some(*v),
            _ => None,
        }
    }

    /// The values recorded into the histogram defined as `name`.
    pub fn histogram(&self, name: &str) -> Option<&[u64]> {
        match self.metrics.get(&format!("{CUSTOM_NAMESPACE}{name}"))? {
            MetricValue::Histogram(v) => Some(v),
            _ => None,
        }
    }

    /// Renders the store as Envoy's `/stats/prometheus` would with `config`.
    pub fn prometheus(&self, config: &StatsConfig) -> String {
        // prometheus name -> (type, [(labels, full name, value)])
        let mut groups: BTreeMap<String, Group<'_>> = BTreeMap::new();
        for (full, value) in &self.metrics {
            let (extracted, tags) = config.extract(full);
            let name = match extracted.strip_prefix(CUSTOM_NAMESPACE) {
                Some(rest) => sanitize_name(rest),
                None => format!("envoy_{}", sanitize_name(&extracted)),
            };
            let labels = tags
                .iter()
                .map(|(k, v)| format!("{}=\"{}\"", sanitize_name(k), escape_value(v)))
                .collect::<Vec<_>>()
                .join(",");
            let kind = match value {
                MetricValue::Counter(_) => "counter",
                MetricValue::Gauge(_) => "gauge",
                MetricValue::Histogram(_) => "histogram",
            };
            groups
                .entry(name)
                .or_insert((kind, Vec::new()))
                .1
                .push((labels, full.as_str(), value));
        }
        let mut out = String::new();
        for (name, (kind, entries)) in groups {
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, full, value) in entries {
                let braces = |extra: &str| -> String {
                    match (labels.is_empty(), extra.is_empty()) {
                        (true, true) => String::new(),
                        (true, false) => format!("{{{extra}}}"),
                        (false, true) => format!("{{{labels}}}"),
                        (false, false) => format!("{{{labels},{extra}}}"),
                    }
                };
                match value {
                    MetricValue::Counter(v) | MetricValue::Gauge(v) => {
                        let _ = writeln!(out, "{name}{} {v}", braces(""));
                    }
                    MetricValue::Histogram(values) => {
                        let buckets = config.buckets_for(full);
                        for b in buckets {
                            let n = values.iter().filter(|&&v| (v as f64) <= b).count();
                            let _ = writeln!(
                                out,
                                "{name}_bucket{} {n}",
                                braces(&format!("le=\"{b}\""))
                            );
                        }
                        let _ = writeln!(
                            out,
                            "{name}_bucket{} {}",
                            braces("le=\"+Inf\""),
                            values.len()
                        );
                        let sum: u64 = values.iter().sum();
                        let _ = writeln!(out, "{name}_sum{} {sum}", braces(""));
                        let _ = writeln!(out, "{name}_count{} {}", braces(""), values.len());
                    }
                }
            }
        }
        out
    }
}

fn sanitize_name(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

fn escape_value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One `stats_config.stats_tags[]` entry.
#[derive(Debug, Clone)]
pub struct TagSpecifier {
    /// The tag (label) name.
    pub tag_name: String,
    /// The extraction regex, or `None` for a fixed value.
    pub regex: Option<Regex>,
    /// A value given to every stat.
    pub fixed_value: Option<String>,
}

/// How a histogram's buckets are chosen: Envoy's `histogram_bucket_settings[]`.
#[derive(Debug, Clone)]
pub struct BucketSetting {
    /// Matches the stat name (`exact`, `prefix`, `suffix`, `contains` or `safe_regex`).
    pub matcher: Matcher,
    /// The bucket boundaries.
    pub buckets: Vec<f64>,
}

/// A string matcher (Envoy `StringMatcher`).
#[derive(Debug, Clone)]
pub enum Matcher {
    /// Equal.
    Exact(String),
    /// Starts with.
    Prefix(String),
    /// Ends with.
    Suffix(String),
    /// Contains.
    Contains(String),
    /// Matches the whole string.
    Regex(Regex),
}

impl Matcher {
    fn matches(&self, s: &str) -> bool {
        match self {
            Matcher::Exact(x) => s == x,
            Matcher::Prefix(x) => s.starts_with(x.as_str()),
            Matcher::Suffix(x) => s.ends_with(x.as_str()),
            Matcher::Contains(x) => s.contains(x.as_str()),
            Matcher::Regex(r) => r
                .find(s)
                .is_some_and(|m| m.start() == 0 && m.end() == s.len()),
        }
    }
}

/// The part of Envoy's bootstrap `stats_config` the host applies.
#[derive(Debug, Clone, Default)]
pub struct StatsConfig {
    /// Tag specifiers, in order.
    pub stats_tags: Vec<TagSpecifier>,
    /// Histogram bucket settings, first match wins.
    pub histogram_bucket_settings: Vec<BucketSetting>,
}

impl StatsConfig {
    /// The `stats_tags` of Alibaba Cloud Service Mesh's LLM observability ConfigMap.
    pub fn asm() -> StatsConfig {
        StatsConfig::parse(ASM_BOOTSTRAP_FRAGMENT).expect("the ASM fragment parses")
    }

    /// The tags Istio renders for ProxyConfig `extraStatTags`: `(<tag>=\.=(.*?);\.;)`.
    pub fn istio_extra_stat_tags(tags: &[&str]) -> StatsConfig {
        StatsConfig {
            stats_tags: tags
                .iter()
                .map(|t| TagSpecifier {
                    tag_name: t.to_string(),
                    regex: Some(
                        Regex::new(&format!("({}=\\.=(.*?);\\.;)", regex::escape(t)))
                            .expect("valid regex"),
                    ),
                    fixed_value: None,
                })
                .collect(),
            histogram_bucket_settings: Vec::new(),
        }
    }

    /// Parses a bootstrap (`{"stats_config": {...}}`), a bare `stats_config` object, or the
    /// `"stats_config": {...}` fragment a ConfigMap's `custom_bootstrap.json` carries.
    pub fn parse(text: &str) -> Result<StatsConfig, String> {
        let value: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(first) => serde_json::from_str(&format!("{{{text}}}"))
                .map_err(|_| format!("stats config is not JSON: {first}"))?,
        };
        let sc = value.get("stats_config").unwrap_or(&value);
        let mut out = StatsConfig::default();
        if let Some(tags) = sc.get("stats_tags") {
            let tags = tags.as_array().ok_or("stats_tags must be a list")?;
            for t in tags {
                let tag_name = t
                    .get("tag_name")
                    .and_then(Value::as_str)
                    .ok_or("stats_tags[].tag_name missing")?
                    .to_string();
                let regex = match t.get("regex").and_then(Value::as_str) {
                    Some(r) => {
                        Some(Regex::new(r).map_err(|e| format!("stats_tags {tag_name}: {e}"))?)
                    }
                    None => None,
                };
                let fixed_value = t
                    .get("fixed_value")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                if regex.is_none() && fixed_value.is_none() {
                    return Err(format!("stats_tags {tag_name}: needs regex or fixed_value"));
                }
                out.stats_tags.push(TagSpecifier {
                    tag_name,
                    regex,
                    fixed_value,
                });
            }
        }
        if let Some(settings) = sc.get("histogram_bucket_settings") {
            let settings = settings
                .as_array()
                .ok_or("histogram_bucket_settings must be a list")?;
            for s in settings {
                let m = s
                    .get("match")
                    .ok_or("histogram_bucket_settings[].match missing")?;
                let text = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_string);
                let matcher = if let Some(x) = text("exact") {
                    Matcher::Exact(x)
                } else if let Some(x) = text("prefix") {
                    Matcher::Prefix(x)
                } else if let Some(x) = text("suffix") {
                    Matcher::Suffix(x)
                } else if let Some(x) = text("contains") {
                    Matcher::Contains(x)
                } else if let Some(r) = m
                    .get("safe_regex")
                    .and_then(|r| r.get("regex"))
                    .and_then(Value::as_str)
                {
                    Matcher::Regex(Regex::new(r).map_err(|e| e.to_string())?)
                } else {
                    return Err("histogram_bucket_settings[].match: unsupported matcher".into());
                };
                let buckets = s
                    .get("buckets")
                    .and_then(Value::as_array)
                    .ok_or("histogram_bucket_settings[].buckets missing")?
                    .iter()
                    .map(|b| b.as_f64().ok_or("bucket is not a number"))
                    .collect::<Result<Vec<f64>, _>>()?;
                out.histogram_bucket_settings
                    .push(BucketSetting { matcher, buckets });
            }
        }
        Ok(out)
    }

    /// Applies the tag specifiers to a full stat name: the tag-extracted name and the tags.
    pub fn extract(&self, full: &str) -> (String, Vec<(String, String)>) {
        let mut remove: Vec<(usize, usize)> = Vec::new();
        let mut tags = Vec::new();
        for spec in &self.stats_tags {
            if let Some(v) = &spec.fixed_value {
                tags.push((spec.tag_name.clone(), v.clone()));
                continue;
            }
            let Some(re) = &spec.regex else { continue };
            let Some(caps) = re.captures(full) else {
                continue;
            };
            let Some(cut) = caps.get(1) else { continue };
            let value = caps.get(2).unwrap_or(cut);
            remove.push((cut.start(), cut.end()));
            tags.push((spec.tag_name.clone(), value.as_str().to_string()));
        }
        let mut name = String::with_capacity(full.len());
        for (i, c) in full.char_indices() {
            if !remove.iter().any(|&(s, e)| i >= s && i < e) {
                name.push(c);
            }
        }
        (name, tags)
    }

    /// The bucket boundaries for a full stat name (tags and namespace included, as Envoy
    /// matches it).
    fn buckets_for(&self, full: &str) -> Vec<f64> {
        for s in &self.histogram_bucket_settings {
            if s.matcher.matches(full) {
                return s.buckets.clone();
            }
        }
        DEFAULT_BUCKETS.to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asm_configmap_extracts_labels() {
        let cfg = StatsConfig::asm();
        let full = "wasmcustom.asm_llm_proxy_prompt_tokens|llmproxy_source_workload=sleep|llmproxy_source_workload_namespace=default|llmproxy_destination_service=dashscope.aliyuncs.com|llmproxy_model=qwen-1.8b-chat";
        let (name, tags) = cfg.extract(full);
        assert_eq!(name, "wasmcustom.asm_llm_proxy_prompt_tokens");
        assert_eq!(tags[0], ("llmproxy_source_workload".into(), "sleep".into()));
        assert_eq!(tags[3], ("llmproxy_model".into(), "qwen-1.8b-chat".into()));
        let mut stats = Stats::default();
        stats.metrics.insert(full.into(), MetricValue::Counter(3));
        let text = stats.prometheus(&cfg);
        assert!(
            text.contains("# TYPE asm_llm_proxy_prompt_tokens counter\n"),
            "{text}"
        );
        assert!(text.contains("asm_llm_proxy_prompt_tokens{llmproxy_source_workload=\"sleep\",llmproxy_source_workload_namespace=\"default\",llmproxy_destination_service=\"dashscope.aliyuncs.com\",llmproxy_model=\"qwen-1.8b-chat\"} 3\n"), "{text}");
    }

    #[test]
    fn istio_tags_and_native_names() {
        let cfg = StatsConfig::istio_extra_stat_tags(&["llm_model", "llm_kind"]);
        let (name, tags) =
            cfg.extract("wasmcustom.llm_model=.=gpt-4o;.;llm_kind=.=out;.;llm_tokens_total");
        assert_eq!(name, "wasmcustom.llm_tokens_total");
        assert_eq!(
            tags,
            vec![
                ("llm_model".into(), "gpt-4o".into()),
                ("llm_kind".into(), "out".into())
            ]
        );
        let mut stats = Stats::default();
        stats
            .metrics
            .insert("cluster.x.upstream_rq".into(), MetricValue::Counter(1));
        stats
            .metrics
            .insert("wasmcustom.a.b-c".into(), MetricValue::Gauge(2));
        let text = stats.prometheus(&StatsConfig::default());
        assert!(text.contains("envoy_cluster_x_upstream_rq 1\n"), "{text}");
        assert!(text.contains("# TYPE a_b_c gauge\na_b_c 2\n"), "{text}");
    }

    #[test]
    fn histograms_and_buckets() {
        let cfg = StatsConfig::parse(
            r#"{"stats_config":{"histogram_bucket_settings":[{"match":{"prefix":"wasmcustom.h"},"buckets":[1,10]}]}}"#,
        )
        .unwrap();
        let mut stats = Stats::default();
        stats.metrics.insert(
            "wasmcustom.h".into(),
            MetricValue::Histogram(vec![1, 5, 50]),
        );
        let text = stats.prometheus(&cfg);
        assert_eq!(
            text,
            "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"10\"} 2\nh_bucket{le=\"+Inf\"} 3\nh_sum 56\nh_count 3\n"
        );
    }

    #[test]
    fn bad_stats_configs() {
        assert!(StatsConfig::parse("nope").is_err());
        assert!(StatsConfig::parse(r#"{"stats_tags":[{"tag_name":"a","regex":"("}]}"#).is_err());
        assert!(StatsConfig::parse(r#"{"stats_tags":[{"tag_name":"a"}]}"#).is_err());
    }
}
