#!/usr/bin/env bash
# Builds the seed corpus of every fuzz target from the fixture corpus
# (testdata/fixtures), into fuzz/corpus/<target>/ (gitignored). Needs jq.
# Idempotent: seeds are named by fixture, so re-running refreshes them.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
fixtures="$here/../testdata/fixtures"
corpus="$here/corpus"
mkdir -p "$corpus"/{scan,sse,ndjson,json_array,eventstream,gzip,br_zstd,exchange,walk,inject,websocket}

# The exchange target's head: the request line and headers, `@ status`, the response
# headers and a blank line, from a case.json.
exchange_head() {
    jq -j '"\(.method) \(.path)\n",
           ((.request_headers // {}) | to_entries[] | "\(.key): \(.value)\n"),
           "@ \(.response_status)\n",
           ((.response_headers // {}) | to_entries[] | "\(.key): \(.value)\n"),
           "\n"' "$1"
}

for dir in "$fixtures"/*/; do
    name="$(basename "$dir")"
    case_json="$dir/case.json"
    [ -f "$case_json" ] || continue
    resp="$dir/response.bin"
    req="$dir/request.json"
    ct="$(jq -r '.response_headers | to_entries[] | select(.key|ascii_downcase=="content-type") | .value' "$case_json" | head -1)"
    ce="$(jq -r '.response_headers | to_entries[] | select(.key|ascii_downcase=="content-encoding") | .value' "$case_json" | head -1)"
    small() { [ "$(wc -c < "$1")" -le 65536 ]; }

    # The whole exchange: <provider 0 = detect><options 0><head>\n\n<request>\0--response--\0<response>
    {
        printf '\000\000'
        exchange_head "$case_json"
        if [ -f "$req" ] && small "$req"; then cat "$req"; fi
        printf '\000--response--\000'
        cat "$resp"
    } > "$corpus/exchange/$name"

    if [ -f "$req" ] && small "$req"; then
        cp "$req" "$corpus/scan/$name-request"
        cp "$req" "$corpus/json_array/$name-request"
    fi
    case "$ce" in
        "") ;;
        br | zstd) cp "$resp" "$corpus/br_zstd/$name"; continue ;;
        *) cp "$resp" "$corpus/gzip/$name"; continue ;;
    esac
    case "$ct" in
        text/event-stream*)
            cp "$resp" "$corpus/sse/$name"
            # The inject target: <mode 0 = raw><chunking seed><stream>.
            if small "$resp"; then { printf '\000\007'; cat "$resp"; } > "$corpus/inject/$name"; fi
            # The walk target: the events' data, one per blank-line-separated block.
            { grep -a '^data:' "$resp" | sed -e 's/^data: \{0,1\}//' -e 's/\r$//' | sed -e 'G'; } \
                > "$corpus/walk/$name" || true
            ;;
        application/x-ndjson* | application/ndjson* | application/jsonl*) cp "$resp" "$corpus/ndjson/$name" ;;
        application/vnd.amazon.eventstream*) cp "$resp" "$corpus/eventstream/$name" ;;
        *)
            cp "$resp" "$corpus/scan/$name"
            cp "$resp" "$corpus/json_array/$name"
            ;;
    esac
    # Plain bodies are also seeds for the compress-then-decode half of the gzip and br_zstd
    # targets.
    if small "$resp"; then
        cp "$resp" "$corpus/gzip/$name-plain"
        cp "$resp" "$corpus/br_zstd/$name-plain"
    fi
done

# Realtime sessions (testdata/realtime): the exchange target with a `101` head and the
# server's WebSocket frames as the response body (permessage-deflate or not), so that it
# reaches the WebSocket framer and its inflater. (The target feeds its request body before
# the response head, as an HTTP body: the client's frames are left out.)
for dir in "$here/../testdata/realtime"/*/; do
    case_json="$dir/case.json"
    [ -f "$case_json" ] || continue
    {
        printf '\000\000'
        exchange_head "$case_json"
        printf '\000--response--\000'
        cat "$dir/server.bin"
    } > "$corpus/exchange/realtime-$(basename "$dir")"
done

# WebSocket sessions for the websocket target: a flags byte (bit 0 Gemini Live, bit 1 no
# context takeover, bit 2 a compressed byte flipped), then messages separated by `\n`.
openai_session='{"type":"session.created","event_id":"e1","session":{"id":"sess_1","model":"gpt-realtime-2025-08-28","output_modalities":["text"]}}
{"type":"response.created","event_id":"e2","response":{"object":"realtime.response","id":"resp_1","status":"in_progress","output":[],"usage":null}}
{"type":"response.output_text.delta","event_id":"e3","response_id":"resp_1","item_id":"item_1","output_index":0,"content_index":0,"delta":"Hello"}
{"type":"response.output_text.delta","event_id":"e4","response_id":"resp_1","item_id":"item_1","output_index":0,"content_index":0,"delta":"! How can I help?"}
{"type":"response.done","event_id":"e5","response":{"object":"realtime.response","id":"resp_1","status":"completed","usage":{"total_tokens":253,"input_tokens":132,"output_tokens":121,"input_token_details":{"text_tokens":119,"audio_tokens":13,"image_tokens":0,"cached_tokens":64},"output_token_details":{"text_tokens":121,"audio_tokens":0}}}}
{"type":"response.done","event_id":"e6","response":{"object":"realtime.response","id":"resp_2","status":"completed","usage":{"total_tokens":20,"input_tokens":12,"output_tokens":8}}}'
gemini_session='{"setupComplete":{}}
{"serverContent":{"modelTurn":{"parts":[{"text":"Hello there"}]}}}
{"serverContent":{"generationComplete":true}}
{"serverContent":{"turnComplete":true},"usageMetadata":{"promptTokenCount":18,"responseTokenCount":301,"totalTokenCount":319,"promptTokensDetails":[{"modality":"TEXT","tokenCount":18}],"responseTokensDetails":[{"modality":"AUDIO","tokenCount":301}]}}'
{ printf '\000'; printf '%s' "$openai_session"; } > "$corpus/websocket/openai-takeover"
{ printf '\002'; printf '%s' "$openai_session"; } > "$corpus/websocket/openai-no-takeover"
{ printf '\004'; printf '%s' "$openai_session"; } > "$corpus/websocket/openai-damaged"
{ printf '\001'; printf '%s' "$gemini_session"; } > "$corpus/websocket/gemini-takeover"
{ printf '\003'; printf '%s' "$gemini_session"; } > "$corpus/websocket/gemini-no-takeover"

# Event-stream recipes: payloads separated by 0xFE, each led by an op byte
# (0 intact, 1 bad message CRC, 2 bad prelude, 3 cut, 4 wrong length, +0x10 base64-wrapped).
printf '\000{"usage":{"inputTokens":12,"outputTokens":34,"totalTokens":46}}\376\001{"usage":{"inputTokens":99}}' \
    > "$corpus/eventstream/recipe-converse"
printf '\020{"type":"message_start","message":{"model":"claude","usage":{"input_tokens":3}}}\376\020{"amazon-bedrock-invocationMetrics":{"inputTokenCount":3,"outputTokenCount":9}}\376\002{}' \
    > "$corpus/eventstream/recipe-invoke"

# Inject recipes: <mode 1><seed> then pieces separated by 0xFE, each led by an op byte
# (low 3 bits: 0 usage chunk, 1 content chunk, 2 raw data line, 3 comment, 4 usage chunk over
# several data lines, 5 usage chunk after an event: line, 6 usage chunk around the 4 KiB cap,
# 7 raw bytes; bits 3-4 the line end, bit 5 `data:` without a space, bit 6 no blank line).
printf '\001\003\001hello\376\003 ping\376\000x\376\011abc\376\014\005\021\041\376\050crlf\376\002[DONE]' \
    > "$corpus/inject/recipe-mixed"
printf '\001\011\006\200\376\025z\376\100\376\060\376\007\r\n\n' > "$corpus/inject/recipe-edges"
# Request bodies for the rewrite half (the same input is also read as a stream).
for req in "$fixtures"/*/request.json; do
    if [ "$(wc -c < "$req")" -le 4096 ]; then
        { printf '\000\000'; cat "$req"; } > "$corpus/inject/$(basename "$(dirname "$req")")-request"
    fi
done

for t in "$corpus"/*/; do
    printf '%-12s %4d seeds\n' "$(basename "$t")" "$(ls "$t" | wc -l)"
done
