// Cache channels (issue 13) with pusher-js: a new subscriber of a `cache-`
// channel gets the last event at once, right after subscribing; an empty
// cache gives `pusher:cache_miss`, which pusher-js emits as an event on the
// channel. Also across two nodes sharing a real redis-server.

import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';

import {
  startServer,
  connected,
  subscribe,
  subscribed,
  nextEvent,
  within,
  uid,
  freePort,
} from '../harness.js';

const T = { timeout: 20000 };
let srv;

before(async () => {
  srv = await startServer();
});
afterEach(() => srv?.disconnectAll());
after(async () => {
  if (srv) await srv.stop();
});

/** Subscribes and waits for `event` on the channel, bound before the subscribe. */
async function subscribeAndAwait(client, channelName, event) {
  const channel = client.subscribe(channelName);
  const got = nextEvent(channel, event);
  await subscribed(channel);
  return got;
}

test('a subscriber to a cache channel gets the last event at once', T, async () => {
  const name = `cache-${uid()}`;
  const watcher = srv.client();
  await connected(watcher);
  await subscribeAndAwait(watcher, name, 'pusher:cache_miss');
  const wch = watcher.channel(name);

  // Two events; the watcher seeing the second means the server cached it.
  let seen = nextEvent(wch, 'price');
  await srv.sdk.trigger(name, 'price', { eur: 1 });
  await seen;
  seen = nextEvent(wch, 'price');
  await srv.sdk.trigger(name, 'price', { eur: 2 });
  assert.deepEqual((await seen).data, { eur: 2 });

  const late = srv.client();
  await connected(late);
  const got = await subscribeAndAwait(late, name, 'price');
  assert.deepEqual(got.data, { eur: 2 });
});

test('an empty cache gives pusher:cache_miss on the channel', T, async () => {
  const name = `cache-${uid()}`;
  const c = srv.client();
  await connected(c);
  const miss = await subscribeAndAwait(c, name, 'pusher:cache_miss');
  assert.deepEqual(miss.data, {});
});

test('a private-cache channel caches client events for signed subscribers', T, async () => {
  const name = `private-cache-${uid()}`;
  const a = srv.client();
  const b = srv.client();
  await Promise.all([connected(a), connected(b)]);
  await subscribeAndAwait(a, name, 'pusher:cache_miss');
  await subscribeAndAwait(b, name, 'pusher:cache_miss');
  const seen = nextEvent(b.channel(name), 'client-state');
  a.channel(name).trigger('client-state', { step: 3 });
  await seen;

  const late = srv.client();
  await connected(late);
  const got = await subscribeAndAwait(late, name, 'client-state');
  assert.deepEqual(got.data, { step: 3 });
});

// ---------------------------------------------------------------------------
// Two nodes, one redis-server
// ---------------------------------------------------------------------------

/** Starts redis-server on a free port; resolves { port, stop } once it answers PING. */
async function startRedis() {
  const port = await freePort();
  const child = spawn(
    process.env.REDIS_SERVER ?? 'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    { stdio: 'ignore' },
  );
  const exited = new Promise((_, reject) =>
    child.on('exit', (code) => reject(new Error(`redis-server exited (${code}); is it installed?`))),
  );
  const ping = () =>
    new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.on('error', () => resolve(false));
      s.on('connect', () => s.write('PING\r\n'));
      s.on('data', (d) => {
        s.destroy();
        resolve(d.toString().startsWith('+PONG'));
      });
    });
  const up = (async () => {
    while (!(await ping())) await new Promise((r) => setImmediate(r));
  })();
  await within(Promise.race([up, exited]), 'redis-server to answer PING');
  /** Resolves once `key` exists (inline EXISTS, polled). */
  const exists = (key) =>
    new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.on('error', () => resolve(false));
      s.on('connect', () => s.write(`EXISTS ${key}\r\n`));
      s.on('data', (d) => {
        s.destroy();
        resolve(d.toString().startsWith(':1'));
      });
    });
  const waitForKey = async (key) => {
    const found = (async () => {
      while (!(await exists(key))) await new Promise((r) => setImmediate(r));
    })();
    await within(found, `redis key ${key}`);
  };
  return {
    url: `redis://127.0.0.1:${port}/`,
    waitForKey,
    stop: () => {
      child.kill('SIGKILL');
    },
  };
}

test('across two nodes with redis: published through A, a subscriber on B (also one started later) gets it', T, async () => {
  const redis = await startRedis();
  const ns = `e2e${uid()}`;
  const cluster = ['--redis', redis.url, '--redis-namespace', ns];
  const app = { appId: '4242', key: `key-${uid()}`, secret: `secret-${uid()}` };
  const a = await startServer({ ...app, extraArgs: cluster });
  const b = await startServer({ ...app, extraArgs: cluster });
  let c;
  try {
    const name = `cache-${uid()}`;
    const watcher = b.client();
    await connected(watcher);
    await subscribeAndAwait(watcher, name, 'pusher:cache_miss');
    const seen = nextEvent(watcher.channel(name), 'state');
    await a.sdk.trigger(name, 'state', { v: 'from-a' });
    await seen;

    const late = b.client();
    await connected(late);
    assert.deepEqual((await subscribeAndAwait(late, name, 'state')).data, { v: 'from-a' });

    // A node started after the publish (and after A's write reached
    // redis) loads it from redis before it listens.
    await redis.waitForKey(`${ns}:cache:${app.appId}:${name}`);
    c = await startServer({ ...app, extraArgs: cluster });
    const later = c.client();
    await connected(later);
    assert.deepEqual((await subscribeAndAwait(later, name, 'state')).data, { v: 'from-a' });
  } finally {
    for (const s of [a, b, c]) if (s) await s.stop();
    redis.stop();
  }
});
