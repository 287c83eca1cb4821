// Burst-proof delivery (issue #11, R34): bursts that real apps produce must
// neither drop frames nor disconnect anyone. One client subscribing to 1,000
// channels at start-up, 400 clients joining one presence channel at once, and
// 1,000 presence clients reconnecting together after a server restart.
//
// Each test starts its own server (the flags differ) and counts, per client,
// the transitions to "connected", the transitions out of it and the close
// codes pusher-js reports; a marker published after the burst shows that
// nothing happened after the last awaited event.

import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';

import { startServer, within, deferred, uid } from '../harness.js';

const PRESENCE_FLAGS = ['--max-presence-members', '1000'];

// Servers started by the running test; afterEach disconnects their clients
// and stops the ones the test has not stopped itself.
const started = [];
const stopped = new Set();

async function server(opts) {
  const srv = await startServer(opts);
  started.push(srv);
  return srv;
}

async function stopServer(srv, opts) {
  stopped.add(srv);
  await srv.stop(opts);
}

afterEach(async () => {
  const servers = started.splice(0);
  for (const srv of servers) srv.disconnectAll();
  const problems = [];
  for (const srv of servers) {
    if (stopped.has(srv)) continue;
    try {
      await srv.stop();
    } catch (err) {
      problems.push(err);
    }
  }
  stopped.clear();
  if (problems.length > 0) throw problems[0];
});

/**
 * What happened to one pusher-js connection: transitions to "connected" (with
 * the socket id each time), transitions out of "connected", every state, and
 * the codes of the errors pusher-js reports (socket close codes such as 1008
 * or 4200, and pusher:error codes). `onChange` runs after each of them.
 */
function watch(pusher, onChange = () => {}) {
  const w = { connected: 0, leftConnected: 0, states: [], codes: [], socketIds: [] };
  pusher.connection.bind('state_change', ({ previous, current }) => {
    w.states.push(current);
    if (current === 'connected') {
      w.connected += 1;
      w.socketIds.push(pusher.connection.socket_id);
    }
    if (previous === 'connected') w.leftConnected += 1;
    onChange();
  });
  // pusher-js reports one close up to twice (as the close and as the reason
  // for its retry): count a code once per socket.
  const seen = new Set();
  pusher.connection.bind('error', (err) => {
    const code = err?.error?.data?.code ?? err?.data?.code;
    const key = `${pusher.connection.socket_id}/${code}`;
    if (code === undefined || seen.has(key)) return;
    seen.add(key);
    w.codes.push(code);
    onChange();
  });
  return w;
}

/**
 * Tracks which of `total` keys are currently done; wait() resolves once all
 * of them are at the same time, or fails (at its deadline, or at once when
 * fail() is called) with how many were done and the test's details.
 */
function tracker(total, what) {
  const done = new Set();
  const all = deferred();
  all.promise.catch(() => {}); // fail() before wait() is not an unhandled rejection
  return {
    mark(key, ok) {
      if (ok) done.add(key);
      else done.delete(key);
      if (done.size === total) all.resolve();
    },
    fail(reason) {
      all.reject(new Error(`${what}: ${reason}`));
    },
    async wait(ms, details = () => ({})) {
      try {
        await within(all.promise, what, ms);
      } catch (err) {
        err.message += ` (${done.size}/${total} done; ${JSON.stringify(details())})`;
        throw err;
      }
    },
  };
}

/** Members of a pusher-js presence channel, sorted. */
function memberIds(channel) {
  return Object.keys(channel.members.members).sort();
}

/** Up to `n` entries of `list` failing `check`, each described by `describe`. */
function offenders(list, check, describe, n = 5) {
  const bad = list.filter((x) => !check(x));
  return { count: bad.length, examples: bad.slice(0, n).map(describe) };
}

test('one client subscribing to 1,000 public channels at start-up gets all 1,000 subscription_succeeded on one connection', { timeout: 30000 }, async () => {
  const srv = await server();
  const N = 1000;
  const tag = uid();
  const names = Array.from({ length: N }, (_, i) => `burst-${tag}-${i}`);

  // Like an app: subscribe to everything right after creating the client,
  // while it is still connecting; pusher-js sends all 1,000 subscribe frames
  // as soon as the connection is established.
  const all = tracker(N, `pusher:subscription_succeeded on all ${N} channels`);
  const c = srv.client();
  const w = watch(c, () => {
    if (w.leftConnected > 0 || w.codes.length > 0) all.fail('the connection was closed');
  });
  // new Pusher() has already started connecting.
  assert.equal(c.connection.state, 'connecting');
  const acks = new Map();
  for (const name of names) {
    c.subscribe(name).bind('pusher:subscription_succeeded', () => {
      acks.set(name, (acks.get(name) ?? 0) + 1);
      all.mark(name, true);
    });
  }
  await all.wait(20000, () => ({ notAcknowledged: names.filter((n) => !acks.has(n)).slice(0, 3), connection: w }));

  // A marker published afterwards arrives on the same connection.
  const last = c.channel(names[N - 1]);
  const marker = deferred();
  last.bind('marker', () => marker.resolve());
  await srv.sdk.trigger(last.name, 'marker', {});
  await within(marker.promise, `marker on ${last.name}`);

  const state = JSON.stringify(w);
  assert.equal(w.connected, 1, `exactly one transition to "connected": ${state}`);
  assert.equal(w.leftConnected, 0, `the connection never left "connected": ${state}`);
  assert.deepEqual(w.states, ['connected'], `no other state (disconnected, unavailable, connecting again): ${state}`);
  assert.deepEqual(w.codes, [], `no close or error codes: ${state}`);
  const twice = [...acks].filter(([, n]) => n !== 1);
  assert.deepEqual(twice, [], 'each channel acknowledged exactly once (no resubscription after a reconnect)');
  assert.equal(c.connection.state, 'connected');
});

test('400 clients joining one presence channel at the same moment all end with the roster of 400, with no reconnect', { timeout: 60000 }, async () => {
  const srv = await server({ extraArgs: PRESENCE_FLAGS });
  const N = 400;
  const channelName = `presence-crowd-${uid()}`;
  const expected = Array.from({ length: N }, (_, i) => `member-${i}`).sort();

  const up = tracker(N, `${N} clients to reach state "connected"`);
  let current = up;
  const clients = Array.from({ length: N }, (_, i) => {
    const id = `member-${i}`;
    const c = srv.client({ user: { id, info: { n: i } } });
    const x = { i, id, c, ch: null };
    x.w = watch(c, () => {
      up.mark(i, c.connection.state === 'connected');
      if (x.w.leftConnected > 0 || x.w.codes.length > 0) current.fail(`${id} was closed: ${JSON.stringify(x.w)}`);
    });
    return x;
  });
  await up.wait(20000, () => ({
    notConnected: clients.filter((x) => x.c.connection.state !== 'connected').slice(0, 5).map((x) => ({ id: x.id, ...x.w })),
  }));

  // Everyone subscribes in the same tick.
  const full = tracker(N, `every client's members.count to reach ${N}`);
  current = full;
  const check = (x) => full.mark(x.i, x.ch.subscribed && x.ch.members.count === N);
  for (const x of clients) {
    x.ch = x.c.subscribe(channelName);
    for (const ev of ['pusher:subscription_succeeded', 'pusher:member_added', 'pusher:member_removed']) {
      x.ch.bind(ev, () => check(x));
    }
  }
  await full.wait(45000, () => ({
    notFull: clients
      .filter((x) => !(x.ch.subscribed && x.ch.members.count === N))
      .slice(0, 5)
      .map((x) => ({ id: x.id, count: x.ch.members.count, ...x.w })),
    reconnected: clients.filter((x) => x.w.connected > 1).length,
    with1008: clients.filter((x) => x.w.codes.includes(1008)).length,
  }));

  // A marker published afterwards reaches everyone: nothing was pending.
  const marked = tracker(N, `marker on ${channelName} at every client`);
  current = marked;
  for (const x of clients) x.ch.bind('marker', () => marked.mark(x.i, true));
  await srv.sdk.trigger(channelName, 'marker', {});
  await marked.wait(10000);

  const oneConnection = offenders(
    clients,
    (x) => x.w.connected === 1 && x.w.leftConnected === 0 && x.w.codes.length === 0,
    (x) => ({ id: x.id, ...x.w }),
  );
  assert.equal(oneConnection.count, 0, `clients that reconnected, left "connected" or saw a close/error code: ${JSON.stringify(oneConnection)}`);
  const exact = offenders(
    clients,
    (x) => x.ch.members.count === N && JSON.stringify(memberIds(x.ch)) === JSON.stringify(expected) && x.ch.members.me?.id === x.id,
    (x) => ({ id: x.id, count: x.ch.members.count, me: x.ch.members.me?.id }),
  );
  assert.equal(exact.count, 0, `clients whose roster is not the ${N} members: ${JSON.stringify(exact)}`);
});

test('restart storm: 1,000 presence clients on 100 channels reconnect after SIGTERM + restart on the same port, rosters exact, no 1008', { timeout: 90000 }, async () => {
  const CHANNELS = 100;
  const PER = 10;
  const N = CHANNELS * PER;
  const first = await server({ extraArgs: PRESENCE_FLAGS });
  const tag = uid();
  const channelNames = Array.from({ length: CHANNELS }, (_, k) => `presence-storm-${tag}-${k}`);
  const expectedOf = (k) => Array.from({ length: PER }, (_, j) => `u-${k}-${j}`).sort();

  // Phase 1: every client complete once its roster is exact; phase 2: the
  // same, on a second connection (after the restart).
  let phase = tracker(N, `every client's presence roster to be exact (${PER} members)`);
  let connectionsWanted = 1;
  const rosterExact = (x) =>
    x.ch.subscribed &&
    x.ch.members.count === PER &&
    x.ch.members.me?.id === x.id &&
    JSON.stringify(memberIds(x.ch)) === x.expected;
  const complete = (x) => x.w.connected === connectionsWanted && x.c.connection.state === 'connected' && rosterExact(x);
  const check = (x) => {
    phase.mark(x.i, complete(x));
    if (x.w.codes.includes(1008)) phase.fail(`${x.id} was closed with 1008: ${JSON.stringify(x.w)}`);
    if (x.w.connected > connectionsWanted) phase.fail(`${x.id} connected more often than ${connectionsWanted}: ${JSON.stringify(x.w)}`);
  };

  const clients = [];
  for (let k = 0; k < CHANNELS; k += 1) {
    const expected = JSON.stringify(expectedOf(k));
    for (let j = 0; j < PER; j += 1) {
      const id = `u-${k}-${j}`;
      const c = first.client({ user: { id, info: { k, j } } });
      const x = { i: clients.length, id, c, expected, channelName: channelNames[k] };
      x.w = watch(c, () => check(x));
      // Like an app: subscribe right away, while connecting.
      x.ch = c.subscribe(channelNames[k]);
      for (const ev of ['pusher:subscription_succeeded', 'pusher:member_added', 'pusher:member_removed']) {
        x.ch.bind(ev, () => check(x));
      }
      clients.push(x);
    }
  }
  const notComplete = () => ({
    notComplete: clients
      .filter((x) => !complete(x))
      .slice(0, 5)
      .map((x) => ({ id: x.id, state: x.c.connection.state, count: x.ch.members.count, ...x.w })),
    with1008: clients.filter((x) => x.w.codes.includes(1008)).length,
  });
  await phase.wait(30000, notComplete);
  const clean = offenders(clients, (x) => x.w.connected === 1 && x.w.codes.length === 0, (x) => ({ id: x.id, ...x.w }));
  assert.equal(clean.count, 0, `before the restart, clients that reconnected or saw a close/error code: ${JSON.stringify(clean)}`);

  // Restart in place: SIGTERM (every client is closed with 4200 and the
  // server exits 0), then a new process on the same port with the same app.
  phase = tracker(N, `all ${N} clients reconnected to the new server with an exact presence roster`);
  connectionsWanted = 2;
  const { port, app } = first;
  await stopServer(first, { keepClients: true });
  const second = await server({ port, appId: app.appId, key: app.key, secret: app.secret, extraArgs: PRESENCE_FLAGS });
  // pusher-js retries at once on 4200, but an attempt that finds the port
  // closed (the old process is still exiting) is only abandoned when its
  // 15 s connection timeout runs out (pusher-js's ws strategy, not settable
  // through its options): most clients come back together about 15 s later.
  await phase.wait(45000, notComplete);

  // A marker on all 100 channels reaches all 1,000 clients.
  const marked = tracker(N, 'marker on every channel at every client');
  for (const x of clients) x.ch.bind('marker', () => marked.mark(x.i, true));
  await second.sdk.trigger(channelNames, 'marker', {});
  await marked.wait(10000);

  const with1008 = clients.filter((x) => x.w.codes.includes(1008));
  assert.equal(with1008.length, 0, `clients closed with 1008: ${JSON.stringify(with1008.slice(0, 5).map((x) => ({ id: x.id, ...x.w })))}`);
  const told = offenders(clients, (x) => x.w.codes.includes(4200), (x) => ({ id: x.id, codes: x.w.codes }));
  assert.equal(told.count, 0, `clients not closed with 4200 by the restart: ${JSON.stringify(told)}`);
  const once = offenders(
    clients,
    (x) => x.w.connected === 2 && new Set(x.w.socketIds).size === 2,
    (x) => ({ id: x.id, ...x.w }),
  );
  assert.equal(once.count, 0, `clients that did not reconnect exactly once: ${JSON.stringify(once)}`);
  const exact = offenders(clients, rosterExact, (x) => ({ id: x.id, count: x.ch.members.count, ids: memberIds(x.ch) }));
  assert.equal(exact.count, 0, `clients whose roster is not exact after the restart: ${JSON.stringify(exact)}`);
});
