// The HTTP API (publishing and channel info) through the official `pusher`
// server SDK, observed from pusher-js clients.

import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';

import {
  startServer,
  connected,
  subscribe,
  nextEvent,
  within,
  uid,
  Recorder,
  httpRequest,
  signedPath,
} from '../harness.js';

const T = { timeout: 10000 };
let srv;

before(async () => {
  srv = await startServer();
});
afterEach(() => srv?.disconnectAll());
after(async () => {
  if (srv) await srv.stop();
});

/** Rejects unless `promise` rejects with a pusher RequestError carrying `status`. */
async function expectStatus(promise, status, what) {
  let res;
  try {
    res = await promise;
  } catch (err) {
    assert.equal(err.status, status, `${what}: expected HTTP ${status}, got ${err.status} (${err.message}; body ${err.body})`);
    return err;
  }
  assert.fail(`${what}: expected HTTP ${status}, got ${res.status}`);
}

test('trigger with socket_id excludes that connection and still reaches the others', T, async () => {
  const channelName = `pub-${uid()}`;
  const a = srv.client();
  const b = srv.client();
  const [aSocket] = await Promise.all([connected(a), connected(b)]);
  await subscribe(a, channelName);
  await subscribe(b, channelName);
  const aRec = new Recorder(a.channel(channelName), 'excluded');

  const bGot = nextEvent(b.channel(channelName), 'news');
  await srv.sdk.trigger(channelName, 'news', { n: 1 }, { socket_id: aSocket });
  assert.deepEqual((await bGot).data, { n: 1 });

  await srv.sdk.trigger(channelName, 'marker', {});
  await aRec.waitFor('marker');
  assert.deepEqual(aRec.named('news'), [], 'the excluded connection must not receive the event');
});

test('trigger to several channels reaches each channel once', T, async () => {
  const ch1 = `pub-${uid()}`;
  const ch2 = `pub-${uid()}`;
  const c = srv.client();
  await connected(c);
  await subscribe(c, ch1);
  await subscribe(c, ch2);
  const r1 = new Recorder(c.channel(ch1), ch1);
  const r2 = new Recorder(c.channel(ch2), ch2);
  await srv.sdk.trigger([ch1, ch2], 'multi', { both: true });
  await r1.waitFor('multi');
  await r2.waitFor('multi');
  await srv.sdk.trigger([ch1, ch2], 'marker', {});
  await r1.waitFor('marker');
  await r2.waitFor('marker');
  assert.deepEqual(r1.named('multi').map((e) => e.data), [{ both: true }]);
  assert.deepEqual(r2.named('multi').map((e) => e.data), [{ both: true }]);
});

test('triggerBatch delivers every event of the batch with its data', T, async () => {
  const ch1 = `pub-${uid()}`;
  const ch2 = `private-${uid()}`;
  const c = srv.client();
  const other = srv.client();
  const [, otherSocket] = await Promise.all([connected(c), connected(other)]);
  await subscribe(c, ch1);
  await subscribe(c, ch2);
  await subscribe(other, ch1);
  const r1 = new Recorder(c.channel(ch1), ch1);
  const r2 = new Recorder(c.channel(ch2), ch2);
  const otherRec = new Recorder(other.channel(ch1), 'other');

  await srv.sdk.triggerBatch([
    { channel: ch1, name: 'first', data: { i: 1 } },
    { channel: ch2, name: 'second', data: { i: 2, s: 'ü' } },
    { channel: ch1, name: 'third', data: 'plain string' },
    { channel: ch1, name: 'not-for-other', data: { i: 4 }, socket_id: otherSocket },
  ]);
  assert.deepEqual((await r1.waitFor('first')).data, { i: 1 });
  assert.deepEqual((await r2.waitFor('second')).data, { i: 2, s: 'ü' });
  assert.equal((await r1.waitFor('third')).data, 'plain string');
  assert.deepEqual((await r1.waitFor('not-for-other')).data, { i: 4 });
  // Events of one channel arrive in batch order.
  assert.deepEqual(
    r1.events.filter((e) => !e.event.startsWith('pusher:')).map((e) => e.event),
    ['first', 'third', 'not-for-other'],
  );

  await srv.sdk.trigger(ch1, 'marker', {});
  await otherRec.waitFor('marker');
  assert.deepEqual(
    otherRec.events.filter((e) => !e.event.startsWith('pusher:')).map((e) => e.event),
    ['first', 'third', 'marker'],
    'socket_id in a batch entry excludes that connection',
  );
});

test('channel info: /channels, /channels/{name} and /channels/{name}/users match the connected clients', T, async () => {
  const prefix = `presence-${uid()}-`;
  const roomA = `${prefix}a`;
  const roomB = `${prefix}b`;
  const pub = `pub-${uid()}`;

  const u1a = srv.client({ user: { id: 'u1', info: { name: 'One' } } });
  const u1b = srv.client({ user: { id: 'u1', info: { name: 'One' } } });
  const u2 = srv.client({ user: { id: 'u2', info: { name: 'Two' } } });
  const p1 = srv.client();
  await Promise.all([connected(u1a), connected(u1b), connected(u2), connected(p1)]);
  await subscribe(u1a, roomA);
  await subscribe(u1b, roomA);
  await subscribe(u2, roomA);
  await subscribe(u2, roomB);
  await subscribe(u2, pub);
  await subscribe(p1, pub);

  // GET /channels filtered by prefix with user_count.
  const list = await (
    await srv.sdk.get({ path: '/channels', params: { filter_by_prefix: prefix, info: 'user_count' } })
  ).json();
  assert.deepEqual(list, { channels: { [roomA]: { user_count: 2 }, [roomB]: { user_count: 1 } } });

  // Plain listing by another prefix contains the public channel and nothing of the presence ones.
  const pubList = await (await srv.sdk.get({ path: '/channels', params: { filter_by_prefix: pub } })).json();
  assert.deepEqual(Object.keys(pubList.channels), [pub]);

  // GET /channels/{name}
  const infoA = await (
    await srv.sdk.get({ path: `/channels/${roomA}`, params: { info: 'subscription_count,user_count' } })
  ).json();
  assert.deepEqual(infoA, { occupied: true, subscription_count: 3, user_count: 2 });

  const infoPub = await (
    await srv.sdk.get({ path: `/channels/${pub}`, params: { info: 'subscription_count' } })
  ).json();
  assert.deepEqual(infoPub, { occupied: true, subscription_count: 2 });

  const empty = await (await srv.sdk.get({ path: `/channels/pub-nobody-${uid()}` })).json();
  assert.equal(empty.occupied, false, `unoccupied channel: ${JSON.stringify(empty)}`);

  // GET /channels/{name}/users
  const users = await (await srv.sdk.get({ path: `/channels/${roomA}/users` })).json();
  assert.deepEqual(
    users.users.map((u) => u.id).sort(),
    ['u1', 'u2'],
    `users: ${JSON.stringify(users)}`,
  );

  // After u2 leaves, the counts follow.
  const u1aRec = new Recorder(u1a.channel(roomA), 'u1a');
  u2.disconnect();
  await u1aRec.waitFor((e) => e.event === 'pusher:member_removed' && e.data.id === 'u2', 'member_removed u2');
  const after = await (
    await srv.sdk.get({ path: `/channels/${roomA}`, params: { info: 'subscription_count,user_count' } })
  ).json();
  assert.deepEqual(after, { occupied: true, subscription_count: 2, user_count: 1 });
  const usersAfter = await (await srv.sdk.get({ path: `/channels/${roomA}/users` })).json();
  assert.deepEqual(usersAfter.users.map((u) => u.id), ['u1']);
});

test('a request signed with a wrong secret is refused with 401 and publishes nothing', T, async () => {
  const channelName = `pub-${uid()}`;
  const c = srv.client();
  await connected(c);
  await subscribe(c, channelName);
  const rec = new Recorder(c.channel(channelName), 'subscriber');

  const forger = srv.sdkWith({ secret: `wrong-${uid()}` });
  const err = await expectStatus(forger.trigger(channelName, 'forged', { evil: true }), 401, 'trigger with a wrong secret');
  assert.ok(err.body && err.body.length > 0, '401 carries a message');
  await expectStatus(forger.get({ path: '/channels' }), 401, 'GET /channels with a wrong secret');
  await expectStatus(
    forger.triggerBatch([{ channel: channelName, name: 'forged', data: {} }]),
    401,
    'batch with a wrong secret',
  );

  await srv.sdk.trigger(channelName, 'marker', {});
  await rec.waitFor('marker');
  assert.deepEqual(rec.named('forged'), [], 'a refused request must not publish');
});

test('signed requests with a tampered body, a stale timestamp or an unknown key are refused', T, async () => {
  const { appId, key, secret } = srv.app;
  const sign = (method, urlPath, params, body) => signedPath({ key, secret }, method, urlPath, params, body);
  const path = `/apps/${appId}/events`;
  const body = JSON.stringify({ name: 'e', channels: [`pub-${uid()}`], data: '{}' });

  // Control: our own signing is accepted, so the refusals below are about what they change.
  const okRes = await httpRequest(srv.port, 'POST', sign('POST', path, {}, body), body);
  assert.equal(okRes.status, 200, `correctly signed request: ${okRes.status} ${okRes.body}`);

  // Body changed after signing (body_md5 no longer matches).
  const tampered = body.replace('"e"', '"x"');
  const r1 = await httpRequest(srv.port, 'POST', sign('POST', path, {}, body), tampered);
  assert.equal(r1.status, 401, `tampered body: ${r1.status} ${r1.body}`);

  // Timestamp outside ±600 s.
  const r2 = await httpRequest(
    srv.port,
    'POST',
    sign('POST', path, { auth_timestamp: Math.floor(Date.now() / 1000) - 3600 }, body),
    body,
  );
  assert.equal(r2.status, 401, `stale timestamp: ${r2.status} ${r2.body}`);

  // Unknown key.
  const r3 = await httpRequest(srv.port, 'POST', sign('POST', path, { auth_key: `nope-${uid()}` }, body), body);
  assert.ok(r3.status === 401 || r3.status === 403 || r3.status === 404, `unknown auth_key must be refused: ${r3.status} ${r3.body}`);

  // No signature at all.
  const r4 = await httpRequest(srv.port, 'POST', path, body);
  assert.ok(r4.status === 400 || r4.status === 401, `unsigned request must be refused: ${r4.status} ${r4.body}`);
});

test('publishing limits: data over 10 KB, over 100 channels, over 10 batch events and bad channel names are refused and deliver nothing', T, async () => {
  const channelName = `pub-${uid()}`;
  const c = srv.client();
  await connected(c);
  await subscribe(c, channelName);
  const rec = new Recorder(c.channel(channelName), 'subscriber');
  const base = `/apps/${srv.app.appId}`;
  const post = async (urlPath, obj) => {
    const body = JSON.stringify(obj);
    return httpRequest(srv.port, 'POST', signedPath(srv.app, 'POST', `${base}${urlPath}`, {}, body), body);
  };

  const big = await post('/events', { name: 'too-big', channel: channelName, data: 'x'.repeat(10 * 1024 + 1) });
  assert.equal(big.status, 413, `data over 10 KB: ${big.status} ${big.body}`);

  const atLimit = await post('/events', { name: 'at-limit', channel: channelName, data: 'y'.repeat(10 * 1024) });
  assert.equal(atLimit.status, 200, `data of exactly 10 KB: ${atLimit.status} ${atLimit.body}`);
  assert.equal((await rec.waitFor('at-limit')).data, 'y'.repeat(10 * 1024));

  const channels = [channelName, ...Array.from({ length: 100 }, (_, i) => `pub-many-${i}`)];
  const many = await post('/events', { name: 'too-many', channels, data: '{}' });
  assert.ok(many.status >= 400 && many.status < 500, `101 channels: ${many.status} ${many.body}`);

  const batch = await post('/batch_events', {
    batch: Array.from({ length: 11 }, (_, i) => ({ channel: channelName, name: 'big-batch', data: String(i) })),
  });
  assert.ok(batch.status >= 400 && batch.status < 500, `batch of 11: ${batch.status} ${batch.body}`);

  const badName = await post('/events', { name: 'bad-name', channels: [channelName, 'bad name!'], data: '{}' });
  assert.ok(badName.status >= 400 && badName.status < 500, `invalid channel name: ${badName.status} ${badName.body}`);

  const usersOfPublic = await httpRequest(
    srv.port,
    'GET',
    signedPath(srv.app, 'GET', `${base}/channels/${channelName}/users`),
  );
  assert.ok(usersOfPublic.status >= 400 && usersOfPublic.status < 500, `users of a public channel: ${usersOfPublic.status}`);

  await srv.sdk.trigger(channelName, 'marker', {});
  await rec.waitFor('marker');
  assert.deepEqual(
    rec.events.filter((e) => !e.event.startsWith('pusher:')).map((e) => e.event),
    ['at-limit', 'marker'],
    'refused requests must deliver nothing, not even partially',
  );
});
