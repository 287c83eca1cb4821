// Webhooks (issue 13): a receiver that validates every request with the
// official `pusher` SDK (`pusher.webhook(request).isValid()`), as an
// application would, against a server started with --webhook-url.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';

import {
  startServer,
  connected,
  subscribe,
  httpGet,
  freePort,
  within,
  uid,
  deferred,
} from '../harness.js';

const T = { timeout: 20000 };
const servers = [];
const receivers = [];

after(async () => {
  for (const s of servers) await s.stop();
  for (const r of receivers) r.close();
});

/**
 * A webhook receiver on loopback. It answers `script` statuses in order,
 * then 200; every request must be valid for `receiver.sdk` (set once the
 * server, hence its secret, exists). `next()` resolves the next request.
 */
async function startReceiver(script = []) {
  const hits = [];
  const waiters = [];
  const problems = [];
  const rec = { sdk: null, problems };
  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      const webhook = rec.sdk.webhook({ headers: req.headers, rawBody: body });
      const status = script.length ? script.shift() : 200;
      if (!webhook.isValid()) problems.push(`invalid webhook: ${JSON.stringify(req.headers)} ${body}`);
      res.writeHead(status, { 'content-length': 0 });
      res.end();
      const hit = {
        status,
        valid: webhook.isValid(),
        id: req.headers['x-pusher-webhook-id'],
        events: webhook.isValid() ? webhook.getEvents() : [],
        time: webhook.isValid() ? webhook.getTime() : null,
      };
      const w = waiters.shift();
      if (w) w(hit);
      else hits.push(hit);
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  rec.url = `http://127.0.0.1:${server.address().port}/hooks`;
  rec.next = (what = 'a webhook request') => {
    if (hits.length) return Promise.resolve(hits.shift());
    const d = deferred();
    waiters.push(d.resolve);
    return within(d.promise, what, 10000);
  };
  /** The next `n` acknowledged events. */
  rec.events = async (n) => {
    const out = [];
    while (out.length < n) {
      const hit = await rec.next(`${n - out.length} more webhook events (have ${JSON.stringify(out)})`);
      assert.ok(hit.valid, 'the SDK validates the request');
      if (hit.status === 200) out.push(...hit.events);
    }
    assert.equal(out.length, n, `exactly ${n} events: ${JSON.stringify(out)}`);
    return out;
  };
  rec.close = () => server.close();
  receivers.push(rec);
  return rec;
}

async function serverFor(rec, extraArgs = []) {
  const srv = await startServer({ extraArgs: ['--webhook-url', rec.url, ...extraArgs] });
  if (rec) rec.sdk = srv.sdk;
  servers.push(srv);
  return srv;
}

function unsubscribed(pusher, channelName) {
  pusher.unsubscribe(channelName);
}

test('a public channel: channel_occupied, then channel_vacated', T, async () => {
  const rec = await startReceiver();
  const srv = await serverFor(rec);
  const name = `pub-${uid()}`;
  const c = srv.client();
  await connected(c);
  await subscribe(c, name);
  unsubscribed(c, name);
  assert.deepEqual(await rec.events(2), [
    { name: 'channel_occupied', channel: name },
    { name: 'channel_vacated', channel: name },
  ]);
  assert.deepEqual(rec.problems, []);
});

test('two connections of one user: one member_added, one member_removed', T, async () => {
  const rec = await startReceiver();
  const srv = await serverFor(rec);
  const name = `presence-${uid()}`;
  const user = { id: uid('u-'), info: { name: 'Ada' } };
  const a = srv.client({ user });
  const b = srv.client({ user });
  await connected(a);
  await connected(b);
  await subscribe(a, name);
  await subscribe(b, name);
  unsubscribed(a, name);
  b.disconnect();
  assert.deepEqual(await rec.events(4), [
    { name: 'channel_occupied', channel: name },
    { name: 'member_added', channel: name, user_id: user.id },
    { name: 'member_removed', channel: name, user_id: user.id },
    { name: 'channel_vacated', channel: name },
  ]);
  assert.deepEqual(rec.problems, []);
});

test('client events reach the webhook with the sender socket id', T, async () => {
  const rec = await startReceiver();
  const srv = await serverFor(rec);
  const name = `private-${uid()}`;
  const a = srv.client();
  const b = srv.client();
  const aId = await connected(a);
  await connected(b);
  await subscribe(a, name);
  await subscribe(b, name);
  const got = deferred();
  b.channel(name).bind('client-typing', (d) => got.resolve(d));
  a.channel(name).trigger('client-typing', { on: true });
  assert.deepEqual(await within(got.promise, 'the client event at b'), { on: true });
  const events = await rec.events(2); // occupied, then the client event
  assert.deepEqual(events, [
    { name: 'channel_occupied', channel: name },
    { name: 'client_event', channel: name, event: 'client-typing', data: '{"on":true}', socket_id: aId },
  ]);
});

test('a receiver answering 500 twice then 200 gets the batch once, after retries', T, async () => {
  const rec = await startReceiver([500, 500]);
  const srv = await serverFor(rec);
  const name = `retry-${uid()}`;
  const c = srv.client();
  await connected(c);
  await subscribe(c, name);
  const hits = [await rec.next(), await rec.next(), await rec.next()];
  assert.deepEqual(hits.map((h) => h.status), [500, 500, 200]);
  for (const h of hits) {
    assert.ok(h.valid);
    assert.equal(h.id, hits[0].id, 'one idempotency id for the retries of one batch');
    assert.deepEqual(h.events, [{ name: 'channel_occupied', channel: name }]);
  }
  // Once: the next request is the next event, not the same batch again.
  unsubscribed(c, name);
  const next = await rec.next();
  assert.equal(next.status, 200);
  assert.deepEqual(next.events, [{ name: 'channel_vacated', channel: name }]);
  assert.notEqual(next.id, hits[0].id);
});

test('a receiver that is down: events dropped after the retry budget, counted, the gateway keeps serving', T, async () => {
  const port = await freePort();
  const srv = await startServer({
    extraArgs: ['--webhook-url', `http://127.0.0.1:${port}/hooks`, '--webhook-retry-ms', '300'],
  });
  servers.push(srv);
  const name = `lost-${uid()}`;
  const c = srv.client();
  await connected(c);
  await subscribe(c, name);
  const dropped = /^realtime_webhooks_dropped_total\{reason="retry_budget"\} (\d+)$/m;
  let text = '';
  const deadline = Date.now() + 10000;
  while (!(dropped.exec(text) && Number(dropped.exec(text)[1]) >= 1)) {
    assert.ok(Date.now() < deadline, `no dropped webhook in /metrics:\n${text}`);
    text = (await httpGet(srv.port, '/metrics')).body;
  }
  // Meanwhile and after, the gateway serves: an event reaches the subscriber.
  const got = deferred();
  c.channel(name).bind('still', (d) => got.resolve(d));
  await srv.sdk.trigger(name, 'still', { here: true });
  assert.deepEqual(await within(got.promise, 'an event after the drops'), { here: true });
});
