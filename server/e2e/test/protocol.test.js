// Protocol-level checks with a raw WebSocket (the `ws` package): the exact
// frames and close codes that pusher-js relies on.

import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';

import { startServer, rawSocket, within, uid } from '../harness.js';

const T = { timeout: 10000 };
let srv;
const sockets = [];

before(async () => {
  srv = await startServer();
});
afterEach(() => {
  while (sockets.length) sockets.pop().terminate();
});
after(async () => {
  if (srv) await srv.stop();
});

function open(key = srv.app.key, query) {
  const s = rawSocket(srv.port, key, query);
  sockets.push(s);
  return s;
}

/** Opens a socket and resolves { s, socketId } after connection_established. */
async function established() {
  const s = open();
  const f = await s.waitFor('pusher:connection_established', 'connection_established');
  return { s, socketId: JSON.parse(f.data).socket_id };
}

/** `data` of a pusher:error may be an object or a JSON string; normalise. */
function errorData(frame) {
  return typeof frame.data === 'string' ? JSON.parse(frame.data) : frame.data;
}

test('connection_established is the first frame, with double-encoded data, a dotted socket_id and activity_timeout', T, async () => {
  const a = open();
  const b = open();
  await a.waitFor('pusher:connection_established');
  await b.waitFor('pusher:connection_established');
  const first = a.frames[0];
  assert.equal(first.event, 'pusher:connection_established');
  assert.equal(typeof first.data, 'string', 'server→client data is a JSON-encoded string');
  const data = JSON.parse(first.data);
  assert.match(data.socket_id, /^\d+\.\d+$/);
  assert.equal(typeof data.activity_timeout, 'number');
  assert.ok(data.activity_timeout > 0);
  const other = JSON.parse(b.frames[0].data).socket_id;
  assert.notEqual(data.socket_id, other, 'socket ids are unique per connection');
});

test('pusher:ping is answered with pusher:pong', T, async () => {
  const { s } = await established();
  s.send({ event: 'pusher:ping', data: {} });
  await s.waitFor('pusher:pong');
});

test('public subscribe is acknowledged and triggered events carry the data string unchanged', T, async () => {
  const { s } = await established();
  const channel = `pub-${uid()}`;
  s.send({ event: 'pusher:subscribe', data: { channel } });
  const ok = await s.waitFor('pusher_internal:subscription_succeeded');
  assert.equal(ok.channel, channel);

  const payload = { a: 1, text: 'ünïcödé ✓', list: [1, 'two', null] };
  await srv.sdk.trigger(channel, 'evt', payload);
  const frame = await s.waitFor('evt');
  assert.equal(frame.channel, channel);
  assert.equal(typeof frame.data, 'string');
  assert.deepEqual(JSON.parse(frame.data), payload);

  // After unsubscribe nothing more arrives (marker on another channel).
  const markerChannel = `pub-${uid()}`;
  s.send({ event: 'pusher:unsubscribe', data: { channel } });
  s.send({ event: 'pusher:subscribe', data: { channel: markerChannel } });
  await s.waitFor((f) => f.event === 'pusher_internal:subscription_succeeded' && f.channel === markerChannel);
  await srv.sdk.trigger(channel, 'after-unsubscribe', {});
  await srv.sdk.trigger(markerChannel, 'marker', {});
  await s.waitFor('marker');
  assert.equal(s.frames.filter((f) => f.event === 'after-unsubscribe').length, 0);
});

test('private subscribe with a bad signature gets subscription_error {type AuthError, status 401}', T, async () => {
  const { s, socketId } = await established();
  const channel = `private-${uid()}`;
  s.send({ event: 'pusher:subscribe', data: { channel, auth: `${srv.app.key}:${'ab'.repeat(32)}` } });
  const err = await s.waitFor('pusher:subscription_error');
  assert.equal(err.channel, channel);
  const data = typeof err.data === 'string' ? JSON.parse(err.data) : err.data;
  assert.equal(data.type, 'AuthError', JSON.stringify(data));
  assert.equal(data.status, 401, JSON.stringify(data));

  // A signature for another socket id is refused as well.
  const stolen = srv.sdk.authorizeChannel('1234.5678', channel);
  s.send({ event: 'pusher:subscribe', data: { channel, auth: stolen.auth } });
  await s.waitFor((f) => f.event === 'pusher:subscription_error' && f !== err, 'second subscription_error');

  // The right one succeeds on the same connection.
  s.send({ event: 'pusher:subscribe', data: { channel, ...srv.sdk.authorizeChannel(socketId, channel) } });
  const ok = await s.waitFor('pusher_internal:subscription_succeeded');
  assert.equal(ok.channel, channel);
});

test('presence subscribe returns the roster (ids, hash, count) including the subscriber', T, async () => {
  const channel = `presence-${uid()}`;
  const { s: a, socketId: aId } = await established();
  a.send({
    event: 'pusher:subscribe',
    data: { channel, ...srv.sdk.authorizeChannel(aId, channel, { user_id: 'ua', user_info: { n: 'A' } }) },
  });
  await a.waitFor('pusher_internal:subscription_succeeded');

  const { s: b, socketId: bId } = await established();
  b.send({
    event: 'pusher:subscribe',
    data: { channel, ...srv.sdk.authorizeChannel(bId, channel, { user_id: 'ub', user_info: { n: 'B' } }) },
  });
  const ok = await b.waitFor('pusher_internal:subscription_succeeded');
  assert.equal(typeof ok.data, 'string');
  const { presence } = JSON.parse(ok.data);
  assert.equal(presence.count, 2);
  assert.deepEqual([...presence.ids].sort(), ['ua', 'ub']);
  assert.deepEqual(presence.hash, { ua: { n: 'A' }, ub: { n: 'B' } });

  const added = await a.waitFor('pusher_internal:member_added');
  assert.equal(added.channel, channel);
  assert.deepEqual(JSON.parse(added.data), { user_id: 'ub', user_info: { n: 'B' } });

  b.close();
  const removed = await a.waitFor('pusher_internal:member_removed');
  assert.deepEqual(JSON.parse(removed.data), { user_id: 'ub' });
});

test('client events are not delivered on public channels or from a non-subscriber', T, async () => {
  const pub = `pub-${uid()}`;
  const priv = `private-${uid()}`;
  const { s: a, socketId: aId } = await established();
  const { s: b, socketId: bId } = await established();
  a.send({ event: 'pusher:subscribe', data: { channel: pub } });
  b.send({ event: 'pusher:subscribe', data: { channel: pub } });
  b.send({ event: 'pusher:subscribe', data: { channel: priv, ...srv.sdk.authorizeChannel(bId, priv) } });
  await a.waitFor((f) => f.event === 'pusher_internal:subscription_succeeded' && f.channel === pub);
  await b.waitFor((f) => f.event === 'pusher_internal:subscription_succeeded' && f.channel === pub);
  await b.waitFor((f) => f.event === 'pusher_internal:subscription_succeeded' && f.channel === priv);
  assert.ok(aId);

  a.send({ event: 'client-on-public', channel: pub, data: { x: 1 } });
  a.send({ event: 'client-not-subscribed', channel: priv, data: { x: 2 } });
  // Then a legitimate marker from the HTTP side on both channels.
  await srv.sdk.trigger([pub, priv], 'marker', {});
  await b.waitFor((f) => f.event === 'marker' && f.channel === pub);
  await b.waitFor((f) => f.event === 'marker' && f.channel === priv);
  assert.deepEqual(
    b.frames.filter((f) => f.event.startsWith('client-')),
    [],
    'client events on a public channel or from a non-subscriber must be dropped',
  );
});

test('invalid channel names get subscription_error and no subscription', T, async () => {
  const { s } = await established();
  const tooLong = `pub-${'a'.repeat(161)}`; // 165 characters
  const okLong = `pub-${'b'.repeat(160)}`; // 164 characters
  s.send({ event: 'pusher:subscribe', data: { channel: tooLong } });
  s.send({ event: 'pusher:subscribe', data: { channel: 'bad name!' } });
  s.send({ event: 'pusher:subscribe', data: { channel: okLong } });
  const ok = await s.waitFor('pusher_internal:subscription_succeeded');
  assert.equal(ok.channel, okLong, 'a 164-character name is valid');
  await s.waitFor((f) => f.event === 'pusher:subscription_error' && f.channel === tooLong, 'error for 165 characters');
  await s.waitFor((f) => f.event === 'pusher:subscription_error' && f.channel === 'bad name!', 'error for bad characters');
  assert.equal(s.frames.filter((f) => f.event === 'pusher_internal:subscription_succeeded').length, 1);
});

test('clients may not send pusher_internal events to others', T, async () => {
  const channel = `presence-${uid()}`;
  const { s: a, socketId: aId } = await established();
  const { s: b, socketId: bId } = await established();
  for (const [s, id, user] of [[a, aId, 'ia'], [b, bId, 'ib']]) {
    s.send({ event: 'pusher:subscribe', data: { channel, ...srv.sdk.authorizeChannel(id, channel, { user_id: user }) } });
    await s.waitFor('pusher_internal:subscription_succeeded');
  }
  await a.waitFor('pusher_internal:member_added');
  b.send({ event: 'pusher_internal:member_added', channel, data: JSON.stringify({ user_id: 'forged', user_info: {} }) });
  b.send({ event: 'pusher_internal:member_removed', channel, data: JSON.stringify({ user_id: 'ib' }) });
  await srv.sdk.trigger(channel, 'marker', {});
  await a.waitFor('marker');
  const internal = a.frames.filter((f) => f.event.startsWith('pusher_internal:member'));
  assert.equal(internal.length, 1, `only the real member_added may reach a: ${JSON.stringify(internal)}`);
  assert.deepEqual(JSON.parse(internal[0].data).user_id, 'ib');
});

test('client events over the rate limit are dropped with pusher:error 4301', T, async () => {
  const channel = `private-${uid()}`;
  const { s: a, socketId: aId } = await established();
  const { s: b, socketId: bId } = await established();
  a.send({ event: 'pusher:subscribe', data: { channel, ...srv.sdk.authorizeChannel(aId, channel) } });
  b.send({ event: 'pusher:subscribe', data: { channel, ...srv.sdk.authorizeChannel(bId, channel) } });
  await a.waitFor('pusher_internal:subscription_succeeded');
  await b.waitFor('pusher_internal:subscription_succeeded');

  for (let i = 0; i < 30; i += 1) a.send({ event: 'client-burst', channel, data: { i } });
  const err = await a.waitFor('pusher:error', 'a 4301 error for the sender');
  assert.equal(errorData(err).code, 4301, JSON.stringify(err));

  await srv.sdk.trigger(channel, 'marker', {});
  await b.waitFor('marker');
  const got = b.frames
    .filter((f) => f.event === 'client-burst')
    .map((f) => (typeof f.data === 'string' ? JSON.parse(f.data) : f.data).i);
  assert.ok(got.length >= 1 && got.length <= 20, `receiver got ${got.length} of 30 burst events: ${JSON.stringify(got)}`);
  assert.deepEqual(got, [...got].sort((x, y) => x - y), 'client events keep their order');
});

test('an unknown app key gets pusher:error 4001 and the socket is closed with 4001', T, async () => {
  const s = open(`unknown-${uid()}`);
  const err = await s.waitFor('pusher:error');
  assert.equal(errorData(err).code, 4001, JSON.stringify(err));
  const { code } = await within(s.closed, 'close after 4001');
  assert.equal(code, 4001);
  assert.equal(s.frames.filter((f) => f.event === 'pusher:connection_established').length, 0);
});

test('an unsupported protocol version gets pusher:error 4007 and close 4007', T, async () => {
  const s = open(srv.app.key, 'protocol=99&client=js&version=8.6.0');
  const err = await s.waitFor('pusher:error');
  assert.equal(errorData(err).code, 4007, JSON.stringify(err));
  const { code } = await within(s.closed, 'close after 4007');
  assert.equal(code, 4007);
});
