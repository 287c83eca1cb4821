// pusher-js (the browser/Node client) against realtime-server, with the
// official `pusher` server SDK signing auth and publishing over HTTP.

import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';

import {
  startServer,
  connected,
  leftConnected,
  subscribe,
  subscriptionError,
  nextEvent,
  signIn,
  within,
  uid,
  deferred,
  Recorder,
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

test('public channel: an HTTP trigger through the SDK reaches the subscriber with the exact data', T, async () => {
  const channelName = `pub-${uid()}`;
  const c = srv.client();
  await connected(c);
  await subscribe(c, channelName);
  const channel = c.channel(channelName);

  const payload = { text: 'héllo wörld ✓ "quoted" \\ back', n: 42, f: 1.5, ok: true, none: null, nested: { a: [1, 2, { b: 'c' }] } };
  const got = nextEvent(channel, 'greeting');
  await srv.sdk.trigger(channelName, 'greeting', payload);
  assert.deepEqual((await got).data, payload);

  // A string payload is passed through as the string itself.
  const gotString = nextEvent(channel, 'plain');
  await srv.sdk.trigger(channelName, 'plain', 'just some text');
  assert.equal((await gotString).data, 'just some text');
});

test('private channel: a correctly signed subscription succeeds', T, async () => {
  const channelName = `private-${uid()}`;
  const c = srv.client();
  await connected(c);
  await subscribe(c, channelName);
  assert.equal(c.channel(channelName).subscribed, true);

  // And it receives events.
  const got = nextEvent(c.channel(channelName), 'secret');
  await srv.sdk.trigger(channelName, 'secret', { x: 1 });
  assert.deepEqual((await got).data, { x: 1 });
});

test('private channel: a wrongly signed subscription gets pusher:subscription_error with status 401', T, async () => {
  const channelName = `private-${uid()}`;
  const c = srv.client({ badAuth: true });
  await connected(c);
  const err = await subscriptionError(c, channelName);
  assert.equal(err.type, 'AuthError', `subscription_error payload: ${JSON.stringify(err)}`);
  assert.equal(err.status, 401, `subscription_error payload: ${JSON.stringify(err)}`);
  assert.equal(c.channel(channelName).subscribed, false);

  // The refused connection receives nothing published on that channel.
  const ok = srv.client();
  await connected(ok);
  const rec = new Recorder(c.channel(channelName), 'refused subscriber');
  await subscribe(ok, channelName);
  const okGot = nextEvent(ok.channel(channelName), 'after-refusal');
  await srv.sdk.trigger(channelName, 'after-refusal', { n: 1 });
  await okGot;
  // Marker on a public channel the refused connection does hold, sent after.
  const pub = `pub-${uid()}`;
  await subscribe(c, pub);
  const marker = nextEvent(c.channel(pub), 'marker');
  await srv.sdk.trigger(pub, 'marker', {});
  await marker;
  assert.deepEqual(rec.named('after-refusal'), []);
  assert.equal(c.connection.state, 'connected', 'a refused subscription must not close the connection');
});

test('presence: two users see each other (roster includes self, member_added, member_removed)', T, async () => {
  const channelName = `presence-${uid()}`;
  const alice = srv.client({ user: { id: 'alice', info: { name: 'Alice' } } });
  const bob = srv.client({ user: { id: 'bob', info: { name: 'Bob' } } });
  await Promise.all([connected(alice), connected(bob)]);

  const aliceMembers = await subscribe(alice, channelName);
  assert.equal(aliceMembers.count, 1);
  assert.equal(aliceMembers.me.id, 'alice');
  assert.deepEqual(aliceMembers.me.info, { name: 'Alice' });
  assert.deepEqual(aliceMembers.members, { alice: { name: 'Alice' } });

  const aliceRec = new Recorder(alice.channel(channelName), 'alice');
  const bobChannel = bob.subscribe(channelName);
  const bobRec = new Recorder(bobChannel, 'bob');

  const added = await aliceRec.waitFor('pusher:member_added', 'member_added for bob');
  assert.deepEqual(added.data, { id: 'bob', info: { name: 'Bob' } });

  const bobSucceeded = await bobRec.waitFor('pusher:subscription_succeeded', 'bob subscription_succeeded');
  const bobMembers = bobSucceeded.data;
  assert.equal(bobMembers.count, 2);
  assert.equal(bobMembers.me.id, 'bob');
  assert.deepEqual(bobMembers.members, { alice: { name: 'Alice' }, bob: { name: 'Bob' } });

  // Bob is not told about his own arrival: a later marker arrives with no member_added before it.
  await srv.sdk.trigger(channelName, 'marker', { m: 1 });
  await bobRec.waitFor('marker', 'marker on bob');
  assert.deepEqual(
    bobRec.before('marker').map((e) => e.event),
    ['pusher:subscription_succeeded'],
    'bob must get only his roster before the marker (no member_added for himself)',
  );

  bob.disconnect();
  const removed = await aliceRec.waitFor('pusher:member_removed', 'member_removed for bob');
  assert.equal(removed.data.id, 'bob');
  assert.equal(alice.channel(channelName).members.count, 1);
});

test('presence: two connections of one user are one member; member_removed only when the last leaves', T, async () => {
  const channelName = `presence-${uid()}`;
  // The probe channel tells us when the server has processed a connection's
  // departure: each connection is its own member there.
  const probeName = `presence-probe-${uid()}`;
  const user = { id: 'u-multi', info: { name: 'Multi' } };
  let n = 0;
  const conn = () => {
    const tag = `conn-${++n}`;
    return srv.client({
      presenceUser: (ch) =>
        ch === probeName ? { user_id: tag, user_info: {} } : { user_id: user.id, user_info: user.info },
    });
  };
  const observer = srv.client({ user: { id: 'observer', info: {} } });
  await connected(observer);
  await subscribe(observer, channelName);
  await subscribe(observer, probeName);
  const rec = new Recorder(observer.channel(channelName), 'observer');
  const probeRec = new Recorder(observer.channel(probeName), 'observer probe');

  const c1 = conn();
  await connected(c1);
  await subscribe(c1, channelName);
  await subscribe(c1, probeName);
  const added = await rec.waitFor('pusher:member_added', 'member_added for u-multi');
  assert.deepEqual(added.data, { id: 'u-multi', info: { name: 'Multi' } });

  const c2 = conn();
  await connected(c2);
  const c2Members = await subscribe(c2, channelName);
  assert.equal(c2Members.count, 2, `roster of the second connection: ${JSON.stringify(c2Members.members)}`);
  assert.deepEqual(Object.keys(c2Members.members).sort(), ['observer', 'u-multi']);

  // No second member_added for the same user.
  await srv.sdk.trigger(channelName, 'marker-1', {});
  await rec.waitFor('marker-1');
  assert.equal(rec.named('pusher:member_added').length, 1, 'the second connection of a user must not produce member_added');

  // HTTP view agrees: one member.
  const users = await (await srv.sdk.get({ path: `/channels/${channelName}/users` })).json();
  assert.deepEqual(users.users.map((u) => u.id).sort(), ['observer', 'u-multi']);

  // First connection leaves: wait until the server has processed it (probe member_removed).
  c1.disconnect();
  await probeRec.waitFor((e) => e.event === 'pusher:member_removed' && e.data.id === 'conn-1', 'probe member_removed for conn-1');
  await srv.sdk.trigger(channelName, 'marker-2', {});
  await rec.waitFor('marker-2');
  assert.deepEqual(
    rec.named('pusher:member_removed'),
    [],
    'member_removed must not be sent while the user still has a connection',
  );
  assert.equal(observer.channel(channelName).members.count, 2);

  // Second connection leaves: now the user is gone.
  c2.disconnect();
  const removed = await rec.waitFor('pusher:member_removed', 'member_removed for u-multi');
  assert.equal(removed.data.id, 'u-multi');
  await srv.sdk.trigger(channelName, 'marker-3', {});
  await rec.waitFor('marker-3');
  assert.equal(rec.named('pusher:member_removed').length, 1, 'exactly one member_removed for the user');
});

test('client events: client-typing on a private channel reaches the other subscriber and is not echoed', T, async () => {
  const channelName = `private-${uid()}`;
  const a = srv.client();
  const b = srv.client();
  await Promise.all([connected(a), connected(b)]);
  await subscribe(a, channelName);
  await subscribe(b, channelName);
  const aRec = new Recorder(a.channel(channelName), 'sender');

  const got = nextEvent(b.channel(channelName), 'client-typing');
  assert.equal(a.channel(channelName).trigger('client-typing', { typing: true, who: 'a' }), true);
  const { data } = await got;
  assert.deepEqual(data, { typing: true, who: 'a' });

  await srv.sdk.trigger(channelName, 'marker', {});
  await aRec.waitFor('marker');
  assert.deepEqual(aRec.named('client-typing'), [], 'a client event must not be echoed to its sender');
});

test('client events: on a presence channel the received event carries the sender user_id', T, async () => {
  const channelName = `presence-${uid()}`;
  const a = srv.client({ user: { id: 'typist', info: { name: 'T' } } });
  const b = srv.client({ user: { id: 'reader', info: { name: 'R' } } });
  await Promise.all([connected(a), connected(b)]);
  await subscribe(a, channelName);
  await subscribe(b, channelName);

  // Also look at the raw frame pusher-js received.
  const rawFrame = deferred();
  const onMessage = (msg) => {
    if (msg.event === 'client-typing') rawFrame.resolve(msg);
  };
  b.connection.bind('message', onMessage);

  const got = nextEvent(b.channel(channelName), 'client-typing');
  assert.equal(a.channel(channelName).trigger('client-typing', { typing: true }), true);
  const { data, meta } = await got;
  assert.deepEqual(data, { typing: true });
  assert.equal(meta?.user_id, 'typist', `metadata: ${JSON.stringify(meta)}`);
  const frame = await within(rawFrame.promise, 'raw client-typing frame');
  assert.equal(frame.user_id, 'typist');
  assert.equal(frame.channel, channelName);
});

test('unknown app key: pusher-js gets pusher:error 4001 and the connection closes without reconnecting', T, async () => {
  const c = srv.client({ key: `no-such-key-${uid()}` });
  const errorSeen = deferred();
  c.connection.bind('error', (err) => {
    const code = err?.error?.data?.code ?? err?.data?.code;
    if (code !== undefined) errorSeen.resolve({ code, err });
  });
  const disconnected = deferred();
  c.connection.bind('state_change', ({ current }) => {
    if (current === 'disconnected' || current === 'failed') disconnected.resolve(current);
    if (current === 'connected') disconnected.reject(new Error('connected with an unknown app key'));
  });
  const { code, err } = await within(errorSeen.promise, 'pusher:error on the connection');
  assert.equal(code, 4001, `error: ${JSON.stringify(err)}`);
  const state = await within(disconnected.promise, 'state disconnected');
  assert.equal(state, 'disconnected');
});

test('user sign-in: sendToUser reaches the signed-in user only', T, async () => {
  const userId = `user-${uid()}`;
  const otherId = `other-${uid()}`;
  const u = srv.client({ user: { id: userId, info: { name: 'Signed In' } } });
  const other = srv.client({ user: { id: otherId, info: {} } });
  await Promise.all([connected(u), connected(other)]);
  await signIn(u, userId);
  await signIn(other, otherId);
  assert.equal(u.user.user_data.id, userId);

  const got = deferred();
  u.user.bind('notify', (data) => got.resolve(data));
  const otherRec = new Recorder(other.user, 'other user');
  await srv.sdk.sendToUser(userId, 'notify', { hello: 'you', n: 7 });
  assert.deepEqual(await within(got.promise, 'notify on the signed-in user'), { hello: 'you', n: 7 });

  await srv.sdk.sendToUser(otherId, 'marker', {});
  await otherRec.waitFor('marker');
  assert.deepEqual(otherRec.named('notify'), [], 'another user must not receive it');
});

test('terminateUserConnections closes every connection of that user and no other', T, async () => {
  const userId = `doomed-${uid()}`;
  const survivorId = `survivor-${uid()}`;
  const a = srv.client({ user: { id: userId, info: {} } });
  const b = srv.client({ user: { id: userId, info: {} } });
  const s = srv.client({ user: { id: survivorId, info: {} } });
  await Promise.all([connected(a), connected(b), connected(s)]);
  await Promise.all([signIn(a, userId), signIn(b, userId), signIn(s, survivorId)]);

  const aLeft = leftConnected(a);
  const bLeft = leftConnected(b);
  const sRec = new Recorder(s.user, 'survivor');
  await srv.sdk.terminateUserConnections(userId);
  await within(Promise.all([aLeft, bLeft]), `both connections of ${userId} to be closed`);

  await srv.sdk.sendToUser(survivorId, 'still-here', {});
  await sRec.waitFor('still-here', 'the other user still connected');
  assert.equal(s.connection.state, 'connected');
});
