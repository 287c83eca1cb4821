// permessage-deflate (RFC 7692, issue 14): pusher-js over Node's `ws`,
// which offers permessage-deflate by default (browsers do too), against
// realtime-server with compression on (its default) and off.
//
// The harness runs pusher-js over faye-websocket (its Node default, which
// offers no extension); this file swaps in `ws`, whose browser-style API
// pusher-js drives unchanged, and records each socket to read what was
// negotiated and how many bytes came in (`bytesRead` of the TCP socket).

import { test, after } from 'node:test';
import assert from 'node:assert/strict';

import {
  Pusher,
  WebSocket,
  startServer,
  connected,
  subscribed,
  nextEvent,
  rawSocket,
  uid,
} from '../harness.js';

const T = { timeout: 15000 };

const sockets = [];
class RecordingWs extends WebSocket {
  constructor(...args) {
    super(...args);
    sockets.push(this);
  }
}
Pusher.Runtime.getWebSocketAPI = () => RecordingWs;

/** A 2 KB JSON event payload (order lines), as an application triggers. */
function orderLines() {
  const lines = [];
  for (let i = 0; JSON.stringify(lines).length < 2000; i++) {
    lines.push({ sku: `SKU-${1000 + i * 37}`, name: `Widget model ${i}`, qty: 1 + (i % 7), warehouse: `eu-west-${i % 3}` });
  }
  return { order_id: 48213, status: 'shipped', lines };
}

const servers = [];
after(async () => {
  for (const s of servers) await s.stop();
});

/** Connects pusher-js over ws, subscribes, receives a 2 KB event; what the socket saw. */
async function receiveLargeEvent(srv) {
  const pusher = srv.client();
  await connected(pusher, 'pusher-js over ws');
  const socket = sockets.at(-1);
  const name = `orders-${uid()}`;
  const channel = pusher.subscribe(name);
  await subscribed(channel);
  const data = orderLines();
  const before = socket._socket.bytesRead;
  const got = nextEvent(channel, 'shipped');
  await srv.sdk.trigger(name, 'shipped', data);
  assert.deepEqual((await got).data, data);
  const bytes = socket._socket.bytesRead - before;
  return { extensions: socket.extensions, bytes, size: JSON.stringify(data).length };
}

test('with compression on, pusher-js over ws negotiates permessage-deflate and a 2 KB event arrives compressed', T, async () => {
  const srv = await startServer();
  servers.push(srv);
  const { extensions, bytes, size } = await receiveLargeEvent(srv);
  assert.equal(extensions, 'permessage-deflate');
  // The event's JSON (escaped into the Pusher envelope) is over 2 KB; what
  // came over the wire is a fraction of it.
  assert.ok(size >= 2000, `payload ${size} B`);
  assert.ok(bytes < size / 2, `${bytes} B on the wire for a ${size} B payload`);
});

test('a compressed message from the client is inflated: a 3 KB pusher:ping sent by ws compressed is answered', T, async () => {
  const srv = servers[0];
  const s = rawSocket(srv.port, srv.app.key);
  await s.opened;
  assert.equal(s.ws.extensions, 'permessage-deflate');
  await s.waitFor('pusher:connection_established');
  // ws compresses messages of 1 KiB and more.
  s.send({ event: 'pusher:ping', data: { pad: 'x'.repeat(3000) } });
  await s.waitFor('pusher:pong');
  s.close();
});

test('with --compression off the offer is declined and the same event arrives uncompressed', T, async () => {
  const srv = await startServer({ extraArgs: ['--compression', 'off'] });
  servers.push(srv);
  const { extensions, bytes, size } = await receiveLargeEvent(srv);
  assert.equal(extensions, '');
  assert.ok(bytes > size, `${bytes} B on the wire for a ${size} B payload`);
});
