//! Histogram buckets on a Prometheus exporter of the `metrics` facade
//! (`metrics-exporter-prometheus`; the `prometheus` feature).
//!
//! Without buckets of its own, that exporter renders a histogram as a summary; with the
//! OpenTelemetry boundaries ([`crate::names::Metric::buckets_in`]) it renders `_bucket`
//! series that can be aggregated across replicas. The tower layer and the reqwest adapter
//! call [`install_buckets`] with the histograms their configuration emits.

use metrics_exporter_prometheus::Matcher;
pub use metrics_exporter_prometheus::{BuildError, PrometheusBuilder};

/// Sets each histogram's buckets on `builder`, by full name.
///
/// ```
/// use llm_usage_report::names::{histogram_buckets, Profile, TimeUnit};
/// use llm_usage_report::prometheus::{install_buckets, PrometheusBuilder};
///
/// let builder = install_buckets(
///     PrometheusBuilder::new(),
///     histogram_buckets(Profile::Otel, TimeUnit::Seconds),
/// )?;
/// # let _ = builder;
/// # Ok::<(), llm_usage_report::prometheus::BuildError>(())
/// ```
///
/// # Errors
///
/// [`BuildError::EmptyBucketsOrQuantiles`] when a histogram has no boundary.
pub fn install_buckets<N, B>(
    builder: PrometheusBuilder,
    buckets: impl IntoIterator<Item = (N, B)>,
) -> Result<PrometheusBuilder, BuildError>
where
    N: AsRef<str>,
    B: AsRef<[f64]>,
{
    buckets.into_iter().try_fold(builder, |b, (name, values)| {
        b.set_buckets_for_metric(Matcher::Full(name.as_ref().to_owned()), values.as_ref())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::{histogram_buckets, Profile, TimeUnit};

    #[test]
    fn installed_buckets_render_as_histogram_buckets() {
        let recorder = install_buckets(
            PrometheusBuilder::new(),
            histogram_buckets(Profile::Otel, TimeUnit::Milliseconds),
        )
        .unwrap()
        .build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            metrics::histogram!("gen_ai_server_request_duration_milliseconds").record(15.0);
            metrics::histogram!("not_configured").record(15.0);
        });
        let text = handle.render();
        // 15 ms lands above the 10 ms bound and under the 20 ms one.
        assert!(text.contains("gen_ai_server_request_duration_milliseconds_bucket{le=\"10\"} 0"));
        assert!(text.contains("gen_ai_server_request_duration_milliseconds_bucket{le=\"20\"} 1"));
        // A histogram without buckets stays a summary.
        assert!(text.contains("not_configured{quantile="));
        assert!(install_buckets(PrometheusBuilder::new(), [("x", Vec::new())]).is_err());
    }
}
