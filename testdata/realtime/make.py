#!/usr/bin/env python3
"""Writes the realtime fixtures: WebSocket sessions as a proxy sees them after the
`101 Switching Protocols` head, client frames (masked, RFC 6455 section 5.3) in client.bin
and server frames in server.bin, with and without permessage-deflate (RFC 7692).

The events follow OpenAI's Realtime API reference (session.created / session.updated,
response.created, response.output_text.delta, response.output_audio.delta, response.done
with `response.usage`) and Gemini Live's BidiGenerateContent messages (setup,
serverContent, usageMetadata with turnComplete). The expected records are the figures
written into those events, stated here by hand.

Run from this directory: python3 make.py
"""
import base64, json, os, random, struct, zlib

rng = random.Random(16)


def frame(opcode, payload, fin=True, rsv1=False, mask=None):
    head = bytes([(0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode])
    m = 0x80 if mask else 0
    n = len(payload)
    if n < 126:
        head += bytes([m | n])
    elif n < 65536:
        head += bytes([m | 126]) + struct.pack(">H", n)
    else:
        head += bytes([m | 127]) + struct.pack(">Q", n)
    if mask:
        head += mask
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + payload


class Side:
    """One direction: masks (client) or not, compresses as negotiated."""

    def __init__(self, masked, deflate, takeover):
        self.masked, self.deflate, self.takeover = masked, deflate, takeover
        self.z = None
        self.out = b""

    def key(self):
        return bytes(rng.randrange(256) for _ in range(4)) if self.masked else None

    def compress(self, data):
        if self.z is None or not self.takeover:
            self.z = zlib.compressobj(6, zlib.DEFLATED, -15)
        c = self.z.compress(data) + self.z.flush(zlib.Z_SYNC_FLUSH)
        assert c.endswith(b"\x00\x00\xff\xff")
        return c[:-4]

    def message(self, obj, opcode=1, fragments=1, between=b""):
        data = json.dumps(obj, separators=(",", ":")).encode()
        rsv1 = self.deflate
        if self.deflate:
            data = self.compress(data)
        cuts = sorted(rng.sample(range(1, len(data)), fragments - 1)) if fragments > 1 else []
        parts = [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])]
        for i, part in enumerate(parts):
            self.out += frame(
                opcode if i == 0 else 0,
                part,
                fin=i == len(parts) - 1,
                rsv1=rsv1 and i == 0,
                mask=self.key(),
            )
            if i == 0 and between:
                self.out += between

    def control(self, opcode, payload=b""):
        self.out += frame(opcode, payload, mask=self.key())


def audio(n):
    return base64.b64encode(bytes(rng.randrange(256) for _ in range(n))).decode()


def openai_session(deflate, takeover_server, takeover_client):
    c = Side(True, deflate, takeover_client)
    s = Side(False, deflate, takeover_server)
    session = {
        "type": "realtime",
        "object": "realtime.session",
        "id": "sess_C9G8s3vVRqPz1ZfTq2xWb",
        "model": "gpt-realtime-2025-08-28",
        "output_modalities": ["audio"],
        "instructions": "You are a helpful assistant.",
        "audio": {
            "input": {"format": {"type": "audio/pcm", "rate": 24000}, "turn_detection": None},
            "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin"},
        },
    }
    s.message({"type": "session.created", "event_id": "event_C9G8s1", "session": session})
    c.message({"type": "session.update", "session": {"type": "realtime", "model": "gpt-realtime",
                                                     "output_modalities": ["text"]}})
    session = dict(session, output_modalities=["text"])
    s.message({"type": "session.updated", "event_id": "event_C9G8s2", "session": session})
    # Response 1: text.
    c.message({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
               "content": [{"type": "input_text", "text": "Say hello in one short sentence."}]}})
    c.message({"type": "response.create"})
    s.message({"type": "response.created", "event_id": "event_C9G8s3", "response": {
        "object": "realtime.response", "id": "resp_C9G8t1", "status": "in_progress",
        "output": [], "usage": None}})
    for d in ["Hello", "! How", " can I", " help", " today?"]:
        s.message({"type": "response.output_text.delta", "event_id": "event_x",
                   "response_id": "resp_C9G8t1", "item_id": "item_1", "output_index": 0,
                   "content_index": 0, "delta": d})
    s.message({"type": "response.done", "event_id": "event_C9G8s9", "response": {
        "object": "realtime.response", "id": "resp_C9G8t1", "status": "completed",
        "output": [{"type": "message", "role": "assistant", "content": [
            {"type": "output_text", "text": "Hello! How can I help today?"}]}],
        "usage": {"total_tokens": 253, "input_tokens": 132, "output_tokens": 121,
                  "input_token_details": {"text_tokens": 119, "audio_tokens": 13,
                                          "image_tokens": 0, "cached_tokens": 64,
                                          "cached_tokens_details": {"text_tokens": 64,
                                                                    "audio_tokens": 0,
                                                                    "image_tokens": 0}},
                  "output_token_details": {"text_tokens": 121, "audio_tokens": 0}}}})
    # Response 2: audio, the client's audio in a fragmented message; a server ping.
    c.message({"type": "input_audio_buffer.append", "audio": audio(600)}, fragments=3)
    c.message({"type": "input_audio_buffer.commit"})
    c.message({"type": "response.create", "response": {"output_modalities": ["audio"]}})
    s.control(9, b"keepalive")
    c.control(10, b"keepalive")
    s.message({"type": "response.created", "event_id": "event_C9G8u1", "response": {
        "object": "realtime.response", "id": "resp_C9G8u2", "status": "in_progress",
        "output": [], "usage": None}})
    for _ in range(3):
        s.message({"type": "response.output_audio.delta", "event_id": "event_y",
                   "response_id": "resp_C9G8u2", "item_id": "item_2", "output_index": 0,
                   "content_index": 0, "delta": audio(300)})
    # The second response.done fragmented, a ping between its fragments.
    s.message({"type": "response.done", "event_id": "event_C9G8u9", "response": {
        "object": "realtime.response", "id": "resp_C9G8u2", "status": "completed",
        "output": [{"type": "message", "role": "assistant", "content": [
            {"type": "output_audio", "transcript": "Sure, here it is."}]}],
        "usage": {"total_tokens": 1387, "input_tokens": 297, "output_tokens": 1090,
                  "input_token_details": {"text_tokens": 181, "audio_tokens": 116,
                                          "image_tokens": 0, "cached_tokens": 192,
                                          "cached_tokens_details": {"text_tokens": 128,
                                                                    "audio_tokens": 64,
                                                                    "image_tokens": 0}},
                  "output_token_details": {"text_tokens": 241, "audio_tokens": 849}}}},
              fragments=3, between=frame(9, b"p"))
    s.control(8, struct.pack(">H", 1000))
    return c.out, s.out


RECORDS = [
    {"model": "gpt-realtime-2025-08-28", "input_tokens": 132, "output_tokens": 121,
     "total_tokens": 253, "cached_input_tokens": 64, "input_audio_tokens": 13,
     "input_image_tokens": 0, "output_audio_tokens": 0, "reasoning_tokens": None,
     "stream": True, "complete": True},
    {"model": "gpt-realtime-2025-08-28", "input_tokens": 297, "output_tokens": 1090,
     "total_tokens": 1387, "cached_input_tokens": 192, "input_audio_tokens": 116,
     "input_image_tokens": 0, "output_audio_tokens": 849, "reasoning_tokens": None,
     "stream": True, "complete": True},
]
# What no response.done covered: no figure left (every one is unknown: null), and no
# response of its own finished. Fields not stated in an expectation are null.
REST = {"model": "gpt-realtime-2025-08-28", "stream": True, "complete": False}

HEAD = {"upgrade": "websocket", "connection": "Upgrade"}


def write(name, path, req_headers, resp_headers, client, server, records, rest, note,
          provider="openai"):
    os.makedirs(name, exist_ok=True)
    case = {
        "method": "GET", "path": path,
        "request_headers": {**HEAD, "host": "api.openai.com", "sec-websocket-version": "13",
                            "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==", **req_headers},
        "response_status": 101,
        "response_headers": dict(HEAD, **{"sec-websocket-accept": "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="},
                                 **resp_headers),
        "note": note,
        "provider": provider,
        "expect_records": records,
        "expect_rest": rest,
    }
    with open(os.path.join(name, "case.json"), "w") as f:
        json.dump(case, f, indent=2)
        f.write("\n")
    open(os.path.join(name, "client.bin"), "wb").write(client)
    open(os.path.join(name, "server.bin"), "wb").write(server)


OFFER = {"sec-websocket-extensions": "permessage-deflate; client_max_window_bits"}

c, s = openai_session(False, True, True)
write("01-openai-realtime-text-audio", "/v1/realtime?model=gpt-realtime", {}, {}, c, s,
      RECORDS, REST,
      "No extension negotiated. Two responses (text, then audio); client frames masked; the "
      "client's audio append and the second response.done fragmented; pings between.")

c, s = openai_session(True, True, True)
write("02-openai-realtime-permessage-deflate", "/v1/realtime?model=gpt-realtime", OFFER,
      {"sec-websocket-extensions": "permessage-deflate"}, c, s, RECORDS, REST,
      "permessage-deflate with context takeover both ways: every message compressed with "
      "the window of the ones before it.")

c, s = openai_session(True, False, False)
write("03-openai-realtime-deflate-no-context-takeover",
      "/openai/realtime?api-version=2025-04-01-preview&deployment=gpt-realtime",
      {**OFFER, "host": "my-resource.openai.azure.com"},
      {"sec-websocket-extensions":
       "permessage-deflate; server_no_context_takeover; client_no_context_takeover"},
      c, s, RECORDS, REST,
      "Azure OpenAI's realtime path; permessage-deflate without context takeover: each "
      "message compressed on its own.", provider="azure.ai.openai")

c, s = openai_session(True, True, True)
write("04-openai-realtime-deflate-not-seen", "/v1/realtime?model=gpt-realtime", OFFER, {},
      c, s, [],
      {"model": None, "stream": True, "complete": False},
      "Compressed messages but no sec-websocket-extensions in the 101 the observer saw: "
      "nothing compressed can be read (an honest unknown), so no record closes, and the "
      "rest is incomplete with every figure and the model unknown.")


def gemini_session():
    c = Side(True, False, True)
    s = Side(False, False, True)
    c.message({"setup": {"model": "models/gemini-2.0-flash-live-001",
                         "generationConfig": {"responseModalities": ["AUDIO"]}}})
    s.message({"setupComplete": {}}, opcode=2)
    c.message({"clientContent": {"turns": [{"role": "user", "parts": [{"text": "Hello?"}]}],
                                 "turnComplete": True}})
    for _ in range(2):
        s.message({"serverContent": {"modelTurn": {"parts": [{"inlineData": {
            "mimeType": "audio/pcm;rate=24000", "data": audio(240)}}]}}}, opcode=2)
    s.message({"serverContent": {"generationComplete": True}}, opcode=2)
    s.message({"serverContent": {"turnComplete": True}, "usageMetadata": {
        "promptTokenCount": 18, "responseTokenCount": 301, "totalTokenCount": 319,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 18}],
        "responseTokensDetails": [{"modality": "AUDIO", "tokenCount": 301}]}},
        opcode=2, fragments=2, between=frame(9, b""))
    c.message({"realtimeInput": {"audio": {"data": audio(400), "mimeType": "audio/pcm;rate=16000"}}},
              fragments=2)
    s.message({"serverContent": {"modelTurn": {"parts": [{"inlineData": {
        "mimeType": "audio/pcm;rate=24000", "data": audio(240)}}]}}}, opcode=2)
    s.message({"serverContent": {"turnComplete": True}, "usageMetadata": {
        "promptTokenCount": 452, "responseTokenCount": 120, "totalTokenCount": 572,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 337},
                                {"modality": "AUDIO", "tokenCount": 115}],
        "responseTokensDetails": [{"modality": "AUDIO", "tokenCount": 120}]}}, opcode=2)
    return c.out, s.out


c, s = gemini_session()
write("05-gemini-live-audio", "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent?key=k",
      {"host": "generativelanguage.googleapis.com"}, {}, c, s,
      [{"model": "models/gemini-2.0-flash-live-001", "input_tokens": 18, "output_tokens": 301,
        "total_tokens": 319, "input_audio_tokens": None, "output_audio_tokens": 301,
        "stream": True, "complete": True},
       {"model": "models/gemini-2.0-flash-live-001", "input_tokens": 452, "output_tokens": 120,
        "total_tokens": 572, "input_audio_tokens": 115, "output_audio_tokens": 120,
        "stream": True, "complete": True}],
      {"model": "models/gemini-2.0-flash-live-001", "stream": True, "complete": False},
      "Gemini Live: JSON server messages in binary frames; usageMetadata with turnComplete; "
      "proto3 JSON (a modality absent from a list is unknown).", provider="gcp.gemini")
