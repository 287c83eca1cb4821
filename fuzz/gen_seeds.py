#!/usr/bin/env python3
"""Writes the hand-made seeds under fuzz/seeds/<target>/ (and the hub_ops
regression inputs under fuzz/regressions/hub_ops/). Re-run after changing
the input format of a hook; the fuzzers' own finds are not generated here.

The hub_ops format is documented in testkit/src/hub_ops.rs."""
import os

ROOT = os.path.dirname(os.path.abspath(__file__))
A, B, PRES, PRIV, PA, PB = range(6)  # testkit::hub_ops::CHANNELS


def cfg(per_user=False, disconnect=False, cap=4, no_auth=False):
    return bytes([per_user | disconnect << 1 | (cap - 1) << 2 | no_auth << 4])


def add(user=0, info=1, deny_private=False, deny_presence=False):
    return bytes([0, user | info << 2 | deny_private << 5 | deny_presence << 6])


def sub(c, ch): return bytes([2, c, ch])
def unsub(c, ch): return bytes([5, c, ch])
def bc(ch, kind=0, count=1, ex=0): return bytes([7, ch, kind | (count - 1) << 3, ex])
def send(number, kind=0, by_handle=False): return bytes([9, number, kind | by_handle << 2])
def close(c, with_reason=False): return bytes([10, c, int(with_reason)])
def hold(extra=0): return bytes([11, extra])
def toggle(): return bytes([12])
def hub_close(): return bytes([13])


def j(*parts): return b"".join(parts)


HUB_OPS = {
    "presence_join_leave": j(cfg(), add(0, 1), add(1, 2), sub(0, PA), sub(1, PA), bc(PA),
                             bc(PA, 4, 1, 1), unsub(0, PA), sub(0, PA), close(1), bc(PA, 1)),
    "per_user_dedupe": j(cfg(per_user=True), add(0, 1), add(0, 3), add(1, 0), add(3, 4),
                         sub(0, PA), sub(1, PA), sub(2, PA), sub(3, PA), unsub(0, PA),
                         close(1), close(2, True), bc(PA)),
    "drop_on_overflow": j(cfg(cap=1), add(), add(), sub(0, A), sub(1, A), hold(1),
                          bc(A, 0, 4), bc(A, 1, 2, 1), send(1, 0), send(2, 1, True)),
    "disconnect_cascade": j(cfg(disconnect=True, cap=2), add(0), add(1), add(2), add(3),
                            sub(0, PA), sub(1, PA), sub(2, PB), sub(1, PB), sub(3, PA),
                            sub(3, PB), hold(2), bc(A), close(0), close(2), bc(PB, 0, 2)),
    "tiny_outbox_presence": j(cfg(cap=1), add(0), add(1), sub(0, PA), sub(1, PB), sub(1, PA)),
    "authorization": j(cfg(), add(0, 1, True, False), add(1, 2, False, True), sub(0, PRIV),
                       sub(1, PRIV), sub(0, PA), sub(1, PA), toggle(), sub(1, PRIV),
                       sub(0, PB), toggle(), sub(0, PB), sub(0, PRES), sub(1, B)),
    "no_authorizer": j(cfg(no_auth=True), add(), sub(0, PRIV), sub(0, PA), sub(0, PRES),
                       bc(PRES)),
    "hub_close": j(cfg(), add(0), add(1), add(2), sub(0, PA), sub(1, PA), sub(2, PB), sub(0, A),
                   hub_close(), sub(0, A), unsub(0, PA), bc(A), bc(A, 1), send(1),
                   send(1, 0, True), add(), hub_close(), close(0)),
    "send_to": j(cfg(disconnect=True, cap=1), add(), add(), send(0), send(1), send(9, 1),
                 send(1, 2), send(2, 2, True), hold(), send(2), send(2), send(1, 1, True),
                 send(1, 1, True), close(0, True), send(1)),
    "broadcast_kinds": j(cfg(), add(), add(), sub(0, B), sub(1, B), bc(B, 0), bc(B, 1), bc(B, 2),
                         bc(B, 3), bc(B, 3, 1, 1), bc(B, 4, 1, 0), bc(B, 5, 2, 1), bc(B, 6)),
}

REGRESSIONS = {
    # A presence join whose roster did not fit left the new, empty channel in
    # the Hub's table (fixed in af6a222).
    "empty_channel_left_in_table": j(cfg(cap=1), add(0), sub(0, A), hold(), bc(A), sub(0, PA)),
}

PRESENCE_INFO = {
    "json_object": b"\x02u1" + b'{"name":"Ada"}',
    "json_spaces": b"\x00" + b'  [1, {"x" : null}]  ',
    "not_json": b"\x03u\"2" + b"not json",
    "empty": b"\x04u\\\n3",
    "control_chars": b"\x01\x01" + b"\x01\x02\"\\",
    "not_utf8": b"\x00\xff\xfe{}",
    "lone_surrogate": b"\x00" + b'"\\ud800"',
    "big_number": b"\x00" + b"1e400",
    "deep": b"\x00" + b"[" * 130 + b"]" * 130,
    "string": b"\x00" + b'"s"',
}

CHANNEL_NAME = {
    "public": b"orders", "private": b"private-billing", "presence": b"presence-room.7",
    "bare_presence": b"presence", "bare_private": b"private", "empty": b"",
    "prefix_only": b"presence-", "case": b"Presence-x", "encrypted": b"private-encrypted-x",
    "not_utf8": b"private-\xff\xfe",
}

# Messages of one input are separated by NUL bytes (at most 16).
PUSHER_MESSAGE = {
    "ping": b'{"event":"pusher:ping","data":{}}',
    "subscribe": b'{"event":"pusher:subscribe","data":{"channel":"orders"}}',
    "subscribe_private": b'{"event":"pusher:subscribe","data":{"channel":"private-a","auth":"key:sig"}}',
    "subscribe_presence": b'{"event":"pusher:subscribe","data":{"channel":"presence-a","auth":"key:sig","channel_data":"{\\"user_id\\":\\"1\\"}"}}',
    "unsubscribe": b'{"event":"pusher:unsubscribe","data":{"channel":"orders"}}',
    "client_event": b'{"event":"client-typing","channel":"private-a","data":{"x":1}}',
    "signin": b'{"event":"pusher:signin","data":{"auth":"key:sig","user_data":"{\\"id\\":\\"1\\"}"}}',
    "data_as_string": b'{"event":"pusher:subscribe","data":"{\\"channel\\":\\"orders\\"}"}',
    "garbage": b"\xff{\"event\":",
    "subscribe_twice_then_leave": b'{"event":"pusher:subscribe","data":{"channel":"orders"}}\0'
    b'{"event":"pusher:subscribe","data":{"channel":"orders"}}\0'
    b'{"event":"pusher:unsubscribe","data":{"channel":"orders"}}\0{"event":"pusher:ping","data":{}}',
}

# Byte 0: flags (bit 0: the hook signs the request with the development
# app's key and secret); then METHOD PATH?QUERY, a newline, the body.
SIGNED, UNSIGNED = b"\x01", b"\x00"
HTTP_API = {
    "events": SIGNED + b'POST /apps/1/events\n{"name":"e","channel":"orders","data":"{}"}',
    "events_unsigned": UNSIGNED + b'POST /apps/1/events?auth_key=app-key&auth_timestamp=1&auth_version=1.0&body_md5=x&auth_signature=y\n{"name":"e","channel":"orders","data":"{}"}',
    "batch": SIGNED + b'POST /apps/1/batch_events\n{"batch":[{"name":"e","channel":"a","data":"1"},{"name":"f","channel":"presence-a","data":"2","socket_id":"1.1"}]}',
    "channels": SIGNED + b"GET /apps/1/channels?filter_by_prefix=presence-&info=user_count",
    "channel": SIGNED + b"GET /apps/1/channels/presence-a?info=user_count,subscription_count",
    "users": SIGNED + b"GET /apps/1/channels/presence-a/users",
    "terminate": SIGNED + b"POST /apps/1/users/1/terminate_connections\n",
    "wrong_method": SIGNED + b"DELETE /apps/1/events",
    "unknown_app": SIGNED + b"GET /apps/2/channels",
    "up": UNSIGNED + b"GET /up",
    "metrics": UNSIGNED + b"GET /metrics",
    "garbage": UNSIGNED + b"\xff\xfe / ?%zz\n{",
}


def ws_client_frame(fin, opcode, payload, mask=b"\x37\xfa\x21\x3d"):
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n <= 0xFFFF:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


HANDSHAKE = (b"GET /app/app-key?protocol=7 HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
             b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
             b"Sec-WebSocket-Version: 13\r\n\r\n")
# Byte 0 of a ws_stream input: bits 0-4 chunk size - 1, bits 5-7 max message size class.
WS_STREAM = {
    "handshake_then_frames": b"\x03" + HANDSHAKE + ws_client_frame(True, 1, b'{"event":"pusher:ping"}')
    + ws_client_frame(True, 9, b"p") + ws_client_frame(True, 8, b"\x03\xe8bye"),
    "fragmented": b"\x20" + ws_client_frame(False, 2, b"ab" * 100) + ws_client_frame(True, 9, b"")
    + ws_client_frame(True, 0, b"cd" * 40000),
    "too_big": b"\x41" + bytes([0x82, 0xFF]) + (1 << 40).to_bytes(8, "big") + b"\0\0\0\0",
    "unmasked": b"\x00" + b"\x81\x05hello",
    "bad_utf8": b"\x1f" + ws_client_frame(True, 1, b"\xff\xfe"),
    "handshake_only": b"\x00" + HANDSHAKE,
    "bad_handshake": b"\x00GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
    "post": b"\x00POST /apps/1/events HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
    "chunked": b"\x00POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
}


def write(kind, target, files):
    d = os.path.join(ROOT, kind, target)
    os.makedirs(d, exist_ok=True)
    for name, data in files.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


write("seeds", "hub_ops", HUB_OPS)
write("regressions", "hub_ops", REGRESSIONS)
write("seeds", "presence_info", PRESENCE_INFO)
write("seeds", "channel_name", CHANNEL_NAME)
write("seeds", "pusher_message", PUSHER_MESSAGE)
write("seeds", "http_api", HTTP_API)
write("seeds", "ws_stream", WS_STREAM)
