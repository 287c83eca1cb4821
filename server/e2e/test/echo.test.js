// laravel-echo (broadcaster "pusher", over pusher-js) against realtime-server:
// what a Laravel front end does.

import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';

import { startServer, connected, within, deferred, uid } from '../harness.js';

const T = { timeout: 10000 };
let srv;

before(async () => {
  srv = await startServer();
});
afterEach(() => srv?.disconnectAll());
after(async () => {
  if (srv) await srv.stop();
});

/** Resolves once an Echo channel's subscription succeeded; rejects on its error. */
function echoSubscribed(channel, what) {
  // Already acknowledged before we got here (pusher-js keeps the flag).
  if (channel.subscription?.subscribed) return Promise.resolve();
  const d = deferred();
  channel.subscribed(() => d.resolve());
  channel.error((err) => d.reject(new Error(`${what}: subscription error ${JSON.stringify(err)}`)));
  return within(d.promise, `${what} subscribed`);
}

test('Echo.channel().listen(".OrderShipped") and namespaced listen("OrderShipped") receive HTTP-triggered events', T, async () => {
  const name = `orders-${uid()}`;
  const echo = srv.echo();
  await connected(echo.connector.pusher, 'echo');

  const dotted = deferred();
  const namespaced = deferred();
  const channel = echo
    .channel(name)
    .listen('.OrderShipped', (e) => dotted.resolve(e))
    .listen('OrderShipped', (e) => namespaced.resolve(e));
  await echoSubscribed(channel, name);

  await srv.sdk.trigger(name, 'OrderShipped', { order: { id: 17 } });
  assert.deepEqual(await within(dotted.promise, '.OrderShipped'), { order: { id: 17 } });

  // Echo's default namespace App.Events maps "OrderShipped" to "App\Events\OrderShipped".
  await srv.sdk.trigger(name, 'App\\Events\\OrderShipped', { order: { id: 18 } });
  assert.deepEqual(await within(namespaced.promise, 'App\\Events\\OrderShipped'), { order: { id: 18 } });
});

test('Echo.private() subscribes through the authorizer and receives events', T, async () => {
  const name = `orders.${uid()}`;
  const echo = srv.echo({ user: { id: 1, info: { name: 'Taylor' } } });
  await connected(echo.connector.pusher, 'echo');

  const got = deferred();
  const channel = echo.private(name).listen('.StatusUpdated', (e) => got.resolve(e));
  await echoSubscribed(channel, `private-${name}`);
  assert.equal(echo.connector.pusher.channel(`private-${name}`).subscribed, true);

  await srv.sdk.trigger(`private-${name}`, 'StatusUpdated', { status: 'shipped' });
  assert.deepEqual(await within(got.promise, 'StatusUpdated on the private channel'), { status: 'shipped' });
});

test('Echo.join(): here / joining / leaving with two users', T, async () => {
  const room = `room.${uid()}`;
  const one = srv.echo({ user: { id: 1, info: { id: 1, name: 'One' } } });
  const two = srv.echo({ user: { id: 2, info: { id: 2, name: 'Two' } } });
  await Promise.all([connected(one.connector.pusher, 'echo one'), connected(two.connector.pusher, 'echo two')]);

  const oneHere = deferred();
  const oneJoining = deferred();
  const oneLeaving = deferred();
  one
    .join(room)
    .here((users) => oneHere.resolve(users))
    .joining((user) => oneJoining.resolve(user))
    .leaving((user) => oneLeaving.resolve(user));
  assert.deepEqual(await within(oneHere.promise, 'here() for user one'), [{ id: 1, name: 'One' }]);

  const twoHere = deferred();
  two.join(room).here((users) => twoHere.resolve(users));
  const twoUsers = await within(twoHere.promise, 'here() for user two');
  assert.deepEqual(
    [...twoUsers].sort((a, b) => a.id - b.id),
    [
      { id: 1, name: 'One' },
      { id: 2, name: 'Two' },
    ],
  );
  assert.deepEqual(await within(oneJoining.promise, 'joining() on user one'), { id: 2, name: 'Two' });

  two.leave(room);
  assert.deepEqual(await within(oneLeaving.promise, 'leaving() on user one'), { id: 2, name: 'Two' });
});

test('Echo whisper() on a private channel reaches listenForWhisper() of the other client only', T, async () => {
  const name = `chat.${uid()}`;
  const sender = srv.echo({ user: { id: 10, info: {} } });
  const receiver = srv.echo({ user: { id: 11, info: {} } });
  await Promise.all([connected(sender.connector.pusher, 'sender'), connected(receiver.connector.pusher, 'receiver')]);

  const heard = deferred();
  const echoedToSender = [];
  const rch = receiver.private(name).listenForWhisper('typing', (e) => heard.resolve(e));
  const sch = sender.private(name).listenForWhisper('typing', (e) => echoedToSender.push(e));
  await echoSubscribed(rch, `receiver private-${name}`);
  await echoSubscribed(sch, `sender private-${name}`);

  sch.whisper('typing', { name: 'Sender', typing: true });
  assert.deepEqual(await within(heard.promise, 'whisper on the receiver'), { name: 'Sender', typing: true });

  const marker = deferred();
  sch.listen('.marker', () => marker.resolve());
  await srv.sdk.trigger(`private-${name}`, 'marker', {});
  await within(marker.promise, 'marker on the sender');
  assert.deepEqual(echoedToSender, [], 'a whisper must not be echoed to its sender');
});

test('Echo whisper() on a presence channel reaches the other member', T, async () => {
  const room = `chat.${uid()}`;
  const a = srv.echo({ user: { id: 21, info: { name: 'A' } } });
  const b = srv.echo({ user: { id: 22, info: { name: 'B' } } });
  await Promise.all([connected(a.connector.pusher, 'a'), connected(b.connector.pusher, 'b')]);

  const aHere = deferred();
  const bHere = deferred();
  const heard = deferred();
  const ach = a.join(room).here(() => aHere.resolve());
  b.join(room)
    .here(() => bHere.resolve())
    .listenForWhisper('typing', (e, meta) => heard.resolve({ e, meta }));
  await within(Promise.all([aHere.promise, bHere.promise]), 'both members here()');

  ach.whisper('typing', { typing: true });
  const { e, meta } = await within(heard.promise, 'presence whisper');
  assert.deepEqual(e, { typing: true });
  assert.equal(meta?.user_id, '21');
});
