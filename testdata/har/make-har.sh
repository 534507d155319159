#!/usr/bin/env bash
# Re-records mitmproxy-curl.har: curl (the client) through mitmdump (mitmproxy 11.0.2 from
# PyPI, reverse-proxy mode, its built-in HAR export `hardump`) to mock_provider.py, all on
# loopback. Needs: python3, curl, and `pip install mitmproxy` (e.g. in a venv: MITMDUMP=...).
set -euo pipefail
cd "$(dirname "$0")"
MITMDUMP="${MITMDUMP:-mitmdump}"
upstream=18431 proxy=18432
python3 mock_provider.py "$upstream" & mock=$!
"$MITMDUMP" -q --mode "reverse:http://127.0.0.1:$upstream" --listen-host 127.0.0.1 \
    --listen-port "$proxy" --set hardump=./mitmproxy-curl.har & mitm=$!
trap 'kill $mock 2>/dev/null || true' EXIT
sleep 3
base="http://127.0.0.1:$proxy"
curl -sS --compressed "$base/v1/chat/completions" -H 'content-type: application/json' \
    -H 'authorization: Bearer sk-test-not-a-key' \
    -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Capital of France?"}]}' >/dev/null
curl -sSN "$base/v1/chat/completions" -H 'content-type: application/json' \
    -d '{"model":"gpt-4.1","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Say hello"}]}' >/dev/null
curl -sSN "$base/v1/messages" -H 'content-type: application/json' -H 'anthropic-version: 2023-06-01' \
    -d '{"model":"claude-sonnet-4-5","max_tokens":100,"stream":true,"messages":[{"role":"user","content":"Why is my router amber?"}]}' >/dev/null
curl -sS "$base/v1/embeddings" -H 'content-type: application/json' \
    -d '{"model":"text-embedding-3-small","input":"hello"}' >/dev/null
curl -sS "$base/v1/unknown" -H 'content-type: application/json' -d '{}' >/dev/null
# mitmdump writes the HAR when it shuts down.
kill -INT $mitm; wait $mitm || true
