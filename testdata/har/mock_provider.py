"""A tiny mock LLM provider on loopback, for recording a HAR with a real client and proxy.

Serves an OpenAI chat completion (JSON, gzip-encoded on the wire), an OpenAI stream with
usage, an Anthropic Messages stream (SSE) and an OpenAI embeddings response. The bodies
are written for this capture (not copied from any recording). Usage: mock_provider.py PORT
"""
import gzip
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CHAT = {
    "id": "chatcmpl-har1", "object": "chat.completion", "created": 1765090000,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris."},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 21, "completion_tokens": 3, "total_tokens": 24,
              "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
              "completion_tokens_details": {"reasoning_tokens": 0}},
}

OPENAI_STREAM = [
    {"id": "chatcmpl-har2", "object": "chat.completion.chunk", "model": "gpt-4.1-2025-04-14",
     "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}, "finish_reason": None}]},
    {"id": "chatcmpl-har2", "object": "chat.completion.chunk", "model": "gpt-4.1-2025-04-14",
     "choices": [{"index": 0, "delta": {"content": "lo!"}, "finish_reason": "stop"}]},
    {"id": "chatcmpl-har2", "object": "chat.completion.chunk", "model": "gpt-4.1-2025-04-14",
     "choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14}},
]

ANTHROPIC_STREAM = [
    ("message_start", {"type": "message_start", "message": {
        "id": "msg_har3", "type": "message", "role": "assistant", "content": [],
        "model": "claude-sonnet-4-5-20250929", "stop_reason": None,
        "usage": {"input_tokens": 40, "cache_read_input_tokens": 1000,
                  "cache_creation_input_tokens": 200, "output_tokens": 1}}}),
    ("content_block_start", {"type": "content_block_start", "index": 0,
                             "content_block": {"type": "text", "text": ""}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0,
                             "delta": {"type": "text_delta", "text": "Amber means updating."}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                       "usage": {"output_tokens": 9}}),
    ("message_stop", {"type": "message_stop"}),
]

EMBEDDINGS = {
    "object": "list", "model": "text-embedding-3-small",
    "data": [{"object": "embedding", "index": 0, "embedding": [0.01, -0.02, 0.03]}],
    "usage": {"prompt_tokens": 6, "total_tokens": 6},
}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _send(self, status, ctype, body, extra=()):
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        req = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))) or b"{}")
        if self.path == "/v1/chat/completions" and req.get("stream"):
            body = "".join(f"data: {json.dumps(c)}\n\n" for c in OPENAI_STREAM) + "data: [DONE]\n\n"
            self._send(200, "text/event-stream", body.encode())
        elif self.path == "/v1/chat/completions":
            self._send(200, "application/json", gzip.compress(json.dumps(CHAT).encode()),
                       [("content-encoding", "gzip")])
        elif self.path == "/v1/messages":
            body = "".join(f"event: {e}\ndata: {json.dumps(d)}\n\n" for e, d in ANTHROPIC_STREAM)
            self._send(200, "text/event-stream", body.encode())
        elif self.path == "/v1/embeddings":
            self._send(200, "application/json", json.dumps(EMBEDDINGS).encode())
        else:
            self._send(404, "application/json", b'{"error":{"message":"no such route"}}')

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
