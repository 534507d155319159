#!/usr/bin/env bash
# Short fuzz run of every target, one after the other, on one core:
#   fuzz/run-all.sh            # 60 s per target
#   fuzz/run-all.sh 600        # 10 min per target
#   fuzz/run-all.sh 60 sse gzip
# Builds the seed corpus from the fixtures first (fuzz/build-corpus.sh, needs jq).
# Needs `cargo install cargo-fuzz` and a nightly toolchain. Exits non-zero on the first
# crash, leaving the reproducer in fuzz/artifacts/<target>/.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
secs="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(scan sse ndjson json_array eventstream gzip br_zstd exchange walk inject websocket)
fi
"$here/build-corpus.sh" > /dev/null
cd "$here"
# -a: debug assertions (integer overflow checks) on. The limits mirror fuzz/README.md:
# no single allocation over 64 MiB, RSS under 1 GiB, no input slower than 10 s.
cargo +nightly fuzz build -a
for t in "${targets[@]}"; do
    echo "== $t ($secs s)"
    cargo +nightly fuzz run -a "$t" "corpus/$t" -- \
        -max_total_time="$secs" -max_len=65536 -timeout=10 \
        -rss_limit_mb=1024 -malloc_limit_mb=64 -print_final_stats=1 2>&1 \
        | grep -E "^(==|#[0-9]+ *DONE|stat::number_of_executed_units|stat::peak_rss_mb|Done|.*(panicked|ERROR|SUMMARY|Test unit written))" || true
    if ls "artifacts/$t"/crash-* "artifacts/$t"/oom-* "artifacts/$t"/timeout-* "artifacts/$t"/leak-* > /dev/null 2>&1; then
        echo "!! $t: reproducer(s) in fuzz/artifacts/$t/" >&2
        exit 1
    fi
done
