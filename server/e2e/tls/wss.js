// Runs from ../test/tls.test.js with NODE_EXTRA_CA_CERTS set to a test CA and
// E2E_TLS_DIR holding ca.pem, leaf1.{pem,key}, leaf2.{pem,key}.

import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync } from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';

import { startServer, connected, subscribe, nextEvent, httpGet, uid, within, WebSocket } from '../harness.js';

const T = { timeout: 10000 };
const dir = process.env.E2E_TLS_DIR;
const cert = path.join(dir, 'cert.pem');
const key = path.join(dir, 'key.pem');
let srv;

/** The serial number of the certificate the server presents now. */
function servedSerial(port) {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername: 'localhost' }, () => {
      const serial = s.getPeerCertificate().serialNumber;
      s.end();
      resolve(serial);
    });
    s.on('error', reject);
  });
}

before(async () => {
  copyFileSync(path.join(dir, 'leaf1.pem'), cert);
  copyFileSync(path.join(dir, 'leaf1.key'), key);
  srv = await startServer({ tls: { cert, key } });
});
afterEach(() => srv?.disconnectAll());
after(async () => {
  if (srv) await srv.stop();
});

test('pusher-js over wss:// gets an event the SDK triggers over https://', T, async () => {
  const channelName = `private-${uid()}`;
  const c = srv.client();
  await connected(c);
  await subscribe(c, channelName);
  const got = nextEvent(c.channel(channelName), 'secure');
  await srv.sdk.trigger(channelName, 'secure', { over: 'tls' });
  assert.deepEqual((await got).data, { over: 'tls' });
});

test('laravel-echo over wss:// receives a broadcast', T, async () => {
  const echo = srv.echo();
  const channelName = `orders-${uid()}`;
  await connected(echo.connector.pusher);
  const channel = echo.channel(channelName);
  const got = new Promise((resolve) => channel.listen('.shipped', resolve));
  await within(new Promise((resolve) => channel.subscribed(resolve)), 'echo subscribed');
  await srv.sdk.trigger(channelName, 'shipped', { id: 7 });
  assert.deepEqual(await within(got, 'echo event'), { id: 7 });
});

test('a plaintext ws:// client on the TLS port is refused and counted on /metrics', T, async () => {
  const ws = new WebSocket(`ws://127.0.0.1:${srv.port}/app/${srv.app.key}?protocol=7`);
  const outcome = await within(
    new Promise((resolve) => {
      ws.on('open', () => resolve('open'));
      ws.on('error', () => resolve('refused'));
    }),
    'plaintext client outcome',
  );
  assert.equal(outcome, 'refused');
  const metrics = await httpGet(srv.port, '/metrics', { tls: true });
  assert.equal(metrics.status, 200);
  const line = metrics.body.split('\n').find((l) => l.startsWith('realtime_transport_tls_handshake_failures_total'));
  assert.ok(line, 'no tls_handshake_failures counter on /metrics');
  assert.ok(Number(line.split(' ')[1]) >= 1, line);
});

test('SIGHUP reloads the certificate and keeps open connections', T, async () => {
  const channelName = `reload-${uid()}`;
  const c = srv.client();
  await connected(c);
  await subscribe(c, channelName);
  const before = await servedSerial(srv.port);
  copyFileSync(path.join(dir, 'leaf2.pem'), cert);
  copyFileSync(path.join(dir, 'leaf2.key'), key);
  srv.signal('SIGHUP');
  await within(
    (async () => {
      while (!srv.output().includes('TLS certificate reloaded')) await new Promise((r) => setTimeout(r, 20));
    })(),
    'reload log line',
  );
  assert.notEqual(await servedSerial(srv.port), before);
  const got = nextEvent(c.channel(channelName), 'after-reload');
  await srv.sdk.trigger(channelName, 'after-reload', { same: 'connection' });
  assert.deepEqual((await got).data, { same: 'connection' });
});
