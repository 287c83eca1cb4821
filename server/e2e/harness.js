// Test harness for the realtime-server end-to-end suite.
//
// startServer() launches the real `realtime-server` binary on a free loopback
// port, waits for `GET /up` to answer 200 and returns a handle with the port,
// the app credentials, a configured `pusher` server SDK and factories for
// pusher-js / laravel-echo clients whose auth callbacks sign with that SDK.
// Everything waits on events or promises; every wait has a deadline and fails
// with a message saying what it was waiting for.

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes, createHash, createHmac } from 'node:crypto';

import Pusher from 'pusher-js';
import PusherServer from 'pusher';
import Echo from 'laravel-echo';
import WebSocket from 'ws';

export { Pusher, PusherServer, Echo, WebSocket };

// pusher-js's Node build uses faye-websocket. When the server closes a socket
// with a 4000-4099 code, pusher-js handles the close event by calling close()
// on the already-closed socket, and faye then arms a 30 s close timer that is
// never cleared, which keeps the test process alive for 30 s. Make close() on
// a CLOSED socket a no-op; nothing on the wire changes.
{
  const FayeClient = Pusher.Runtime.getWebSocketAPI();
  const CLOSED = 3;
  class CloseOnceClient extends FayeClient {
    close(...args) {
      if (this.readyState === CLOSED) return undefined;
      return super.close(...args);
    }
  }
  Pusher.Runtime.getWebSocketAPI = () => CloseOnceClient;
}

const HERE = path.dirname(fileURLToPath(import.meta.url));

/** Default wait for one expected thing (an event, a state, a response). */
export const WAIT_MS = 5000;

// ---------------------------------------------------------------------------
// Small promise utilities
// ---------------------------------------------------------------------------

/** Rejects with `Timed out after Nms waiting for <what>` unless `promise` settles first. */
export function within(promise, what, ms = WAIT_MS) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)),
      ms,
    );
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** A promise with its resolve/reject exposed. */
export function deferred() {
  let resolve;
  let reject;
  const promise = new Promise((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** A short unique suffix for channel names and user ids, so tests never share state. */
export function uid(prefix = '') {
  return `${prefix}${randomBytes(4).toString('hex')}`;
}

// ---------------------------------------------------------------------------
// Server process
// ---------------------------------------------------------------------------

/** The server binary: $REALTIME_SERVER_BIN, else target/release, else target/debug. */
export function serverBinary() {
  const fromEnv = process.env.REALTIME_SERVER_BIN;
  if (fromEnv) {
    const resolved = path.resolve(fromEnv);
    if (!existsSync(resolved)) {
      throw new Error(
        `REALTIME_SERVER_BIN=${fromEnv} does not exist (resolved to ${resolved}); ` +
          'build it with `cargo build --release -p realtime-server`',
      );
    }
    return resolved;
  }
  const candidates = [
    path.resolve(HERE, '../../target/release/realtime-server'),
    path.resolve(HERE, '../../target/debug/realtime-server'),
  ];
  const found = candidates.find((p) => existsSync(p));
  if (!found) {
    throw new Error(
      `realtime-server binary not found (looked at ${candidates.join(', ')}); ` +
        'build it with `cargo build --release -p realtime-server` from the workspace root ' +
        'or point REALTIME_SERVER_BIN at it',
    );
  }
  return found;
}

/** A port that was free a moment ago (bind port 0, read it, release it). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Plain HTTP GET on the server; resolves { status, body } (never rejects on HTTP status). */
export function httpGet(port, urlPath, { timeoutMs = 1000, tls = false } = {}) {
  return new Promise((resolve, reject) => {
    const req = (tls ? https : http).get(
      { host: '127.0.0.1', port, path: urlPath, agent: false, timeout: timeoutMs },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`GET ${urlPath} timed out`)));
    req.on('error', reject);
  });
}

/** Raw HTTP request (any method, exact path+query, optional body). */
export function httpRequest(port, method, urlPath, body, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method,
        path: urlPath,
        agent: false,
        headers:
          body === undefined
            ? headers
            : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...headers },
        timeout: WAIT_MS,
      },
      (res) => {
        let data = '';
        res.setEncoding('utf8');
        res.on('data', (c) => (data += c));
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: data }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${urlPath} timed out`)));
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

/**
 * Path + query of an HTTP API request signed like the Pusher SDKs do
 * (auth_key, auth_timestamp, auth_version, body_md5, auth_signature).
 * `params` may override any of the auth parameters to forge a bad request.
 */
export function signedPath({ key, secret }, method, urlPath, params = {}, body = undefined) {
  const all = { auth_key: key, auth_timestamp: Math.floor(Date.now() / 1000), auth_version: '1.0', ...params };
  if (body !== undefined && all.body_md5 === undefined) {
    all.body_md5 = createHash('md5').update(body).digest('hex');
  }
  const query = Object.keys(all)
    .map((k) => [k.toLowerCase(), all[k]])
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join('&');
  const sig = createHmac('sha256', secret).update(`${method}\n${urlPath}\n${query}`).digest('hex');
  return `${urlPath}?${query}&auth_signature=${sig}`;
}

const READY_DEADLINE_MS = 15000;
const STOP_DEADLINE_MS = 5000;

/**
 * Starts the server binary with fresh app credentials on a free port and waits
 * until `GET /up` answers 200. Rejects loudly (with the server's output) if the
 * binary is missing, exits early, or is not up within 15 s.
 *
 * Options: `port` (listen there instead of a free port, e.g. to restart a
 * server in place), `appId` / `key` / `secret` (instead of fresh ones),
 * `extraArgs` (more command-line flags), `tls: { cert, key }` (PEM files:
 * the server speaks TLS, /up is polled over https, the SDK uses https and
 * pusher-js wss; the CA must be in NODE_EXTRA_CA_CERTS).
 */
export async function startServer(opts = {}) {
  const bin = serverBinary();
  const app = {
    appId: opts.appId ?? String(100000 + Math.floor(Math.random() * 800000)),
    key: opts.key ?? `key-${uid()}`,
    secret: opts.secret ?? `secret-${uid()}${uid()}`,
  };
  const port = opts.port ?? (await freePort());
  const args = [
    '--bind', `127.0.0.1:${port}`,
    '--app-id', app.appId,
    '--app-key', app.key,
    '--app-secret', app.secret,
    ...(opts.tls ? ['--tls-cert', opts.tls.cert, '--tls-key', opts.tls.key] : []),
    ...(opts.extraArgs ?? []),
  ];
  const tls = Boolean(opts.tls);
  const child = spawn(bin, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { RUST_LOG: 'info', ...process.env },
  });

  // Keep the tail of the server's output to explain failures.
  let output = '';
  const keep = (chunk) => {
    output += chunk.toString();
    if (output.length > 20000) output = output.slice(-20000);
    if (process.env.E2E_SERVER_LOG) process.stderr.write(`[server:${port}] ${chunk}`);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);

  const exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => resolve({ code, signal }));
  });
  const spawnError = new Promise((_, reject) => {
    child.on('error', (err) => reject(new Error(`cannot spawn ${bin}: ${err.message}`)));
  });
  let hasExited = false;
  let exitInfo = null;
  exited.then((info) => {
    hasExited = true;
    exitInfo = info;
  });

  const describe = () =>
    `${bin} ${args.join(' ')}\n--- server output (tail) ---\n${output || '(none)'}\n---`;

  // Poll /up with a bounded deadline.
  const deadline = Date.now() + READY_DEADLINE_MS;
  let lastProblem = 'no answer yet';
  const ready = (async () => {
    for (;;) {
      if (hasExited) {
        throw new Error(
          `realtime-server exited before it was up (code ${exitInfo.code}, signal ${exitInfo.signal})\n${describe()}`,
        );
      }
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(
          `realtime-server did not answer 200 on GET /up within ${READY_DEADLINE_MS} ms (last: ${lastProblem})\n${describe()}`,
        );
      }
      try {
        const res = await httpGet(port, '/up', { timeoutMs: 500, tls });
        if (res.status === 200) return;
        lastProblem = `status ${res.status}`;
      } catch (err) {
        lastProblem = err.message;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  await Promise.race([ready, spawnError]);

  const sdk = (overrides = {}) =>
    new PusherServer({
      appId: app.appId,
      key: app.key,
      secret: app.secret,
      host: '127.0.0.1',
      port: String(port),
      useTLS: tls,
      timeout: WAIT_MS,
      ...overrides,
    });
  const server = sdk();

  const clients = new Set();

  const handle = {
    port,
    app,
    bin,
    /** Official server SDK bound to this server. */
    sdk: server,
    /** Another SDK instance with some options overridden (e.g. a wrong secret). */
    sdkWith: sdk,
    /** Tail of the server's stdout+stderr. */
    output: () => output,
    /** Whether the process is still running. */
    running: () => !hasExited,
    /** Sends a signal to the server process (e.g. SIGHUP: TLS reload). */
    signal: (sig) => child.kill(sig),

    /**
     * A pusher-js client. Options:
     *   user: { id, info } used for presence channel_data and for sign-in;
     *   presenceUser(channelName) => { user_id, user_info } (overrides `user` per channel);
     *   badAuth: true → channel auth callback returns a wrongly signed token;
     *   key: app key to use (default: the server's);
     *   extra: more pusher-js options.
     */
    client(copts = {}) {
      const pusher = new Pusher(copts.key ?? app.key, {
        ...clientOptions(port, server, copts, tls),
        ...(copts.extra ?? {}),
      });
      clients.add(pusher);
      return pusher;
    },

    /** A laravel-echo instance over pusher-js, with the same auth options as client(). */
    echo(copts = {}) {
      const opts = clientOptions(port, server, copts, tls);
      // Echo (v2) passes its options to `new Pusher(key, options)`; the
      // deprecated `authorizer` option is what Laravel apps use with Echo.
      delete opts.channelAuthorization;
      const echo = new Echo({
        broadcaster: 'pusher',
        key: copts.key ?? app.key,
        Pusher,
        ...opts,
        authorizer: (channel) => ({
          authorize: (socketId, callback) =>
            channelAuthHandler(server, copts)({ socketId, channelName: channel.name }, callback),
        }),
        ...(copts.extra ?? {}),
      });
      clients.add(echo.connector.pusher);
      return echo;
    },

    /** Disconnects every client created through this handle. */
    disconnectAll() {
      for (const p of clients) {
        try {
          p.disconnect();
        } catch {
          /* already gone */
        }
      }
      clients.clear();
    },

    /**
     * SIGTERM, then expect exit code 0 within 5 s. If it does not exit,
     * SIGKILL it and reject (a server that ignores SIGTERM is a failure).
     * The clients made through this handle are disconnected first, unless
     * `keepClients` is true (a restart: they are left to reconnect, and the
     * caller disconnects them later with disconnectAll()).
     */
    async stop({ keepClients = false } = {}) {
      if (!keepClients) handle.disconnectAll();
      if (hasExited) {
        throw new Error(
          `realtime-server had already exited (code ${exitInfo.code}, signal ${exitInfo.signal}) before the end of the test file\n${describe()}`,
        );
      }
      child.kill('SIGTERM');
      let timer;
      const result = await Promise.race([
        exited,
        new Promise((resolve) => {
          timer = setTimeout(() => resolve(null), STOP_DEADLINE_MS);
        }),
      ]);
      clearTimeout(timer);
      if (result === null) {
        child.kill('SIGKILL');
        await exited;
        throw new Error(
          `realtime-server did not exit within ${STOP_DEADLINE_MS} ms of SIGTERM (killed with SIGKILL)\n${describe()}`,
        );
      }
      if (result.code !== 0) {
        throw new Error(
          `realtime-server exited with code ${result.code}, signal ${result.signal} after SIGTERM (expected 0)\n${describe()}`,
        );
      }
    },
  };
  return handle;
}

// ---------------------------------------------------------------------------
// Client construction and auth
// ---------------------------------------------------------------------------

function presenceDataFor(copts, channelName) {
  if (copts.presenceUser) return copts.presenceUser(channelName);
  if (copts.user) return { user_id: String(copts.user.id), user_info: copts.user.info ?? {} };
  return { user_id: uid('anon-'), user_info: {} };
}

/** The pusher-js channelAuthorization.customHandler signing with the server SDK. */
function channelAuthHandler(server, copts) {
  return ({ socketId, channelName }, callback) => {
    try {
      if (copts.badAuth) {
        // Right format, wrong signature.
        const good = server.authorizeChannel(
          socketId,
          channelName,
          channelName.startsWith('presence-') ? presenceDataFor(copts, channelName) : undefined,
        );
        const [key] = good.auth.split(':');
        callback(null, { ...good, auth: `${key}:${'0'.repeat(64)}` });
        return;
      }
      if (channelName.startsWith('presence-')) {
        callback(null, server.authorizeChannel(socketId, channelName, presenceDataFor(copts, channelName)));
      } else {
        callback(null, server.authorizeChannel(socketId, channelName));
      }
    } catch (err) {
      callback(err, null);
    }
  };
}

function clientOptions(port, server, copts, tls = false) {
  return {
    wsHost: '127.0.0.1',
    wsPort: port,
    wssPort: port,
    forceTLS: tls,
    enabledTransports: ['ws'],
    disableStats: true,
    cluster: 'mt1',
    channelAuthorization: { customHandler: channelAuthHandler(server, copts) },
    userAuthentication: {
      customHandler: ({ socketId }, callback) => {
        try {
          if (!copts.user) throw new Error('client has no `user` to sign in as');
          callback(
            null,
            server.authenticateUser(socketId, { id: String(copts.user.id), ...(copts.user.info ?? {}) }),
          );
        } catch (err) {
          callback(err, null);
        }
      },
    },
  };
}

// ---------------------------------------------------------------------------
// Waiting on pusher-js
// ---------------------------------------------------------------------------

/** Resolves with the socket id once the client is connected; rejects on failed/unavailable or an error. */
export function connected(pusher, what = 'connection') {
  if (pusher.connection.state === 'connected') return Promise.resolve(pusher.connection.socket_id);
  const d = deferred();
  const onState = ({ current }) => {
    if (current === 'connected') d.resolve(pusher.connection.socket_id);
    else if (current === 'failed' || current === 'unavailable') {
      d.reject(new Error(`${what}: connection went to state ${current}`));
    }
  };
  const onError = (err) => {
    const code = err?.error?.data?.code ?? err?.data?.code;
    if (code) d.reject(new Error(`${what}: connection error ${JSON.stringify(err)}`));
  };
  pusher.connection.bind('state_change', onState);
  pusher.connection.bind('error', onError);
  return within(d.promise, `${what} to reach state "connected"`).finally(() => {
    pusher.connection.unbind('state_change', onState);
    pusher.connection.unbind('error', onError);
  });
}

/** Resolves when the connection leaves "connected" (state_change previous=connected). */
export function leftConnected(pusher) {
  const d = deferred();
  const onState = ({ previous, current }) => {
    if (previous === 'connected' && current !== 'connected') d.resolve(current);
  };
  pusher.connection.bind('state_change', onState);
  d.promise.finally(() => pusher.connection.unbind('state_change', onState));
  return d.promise;
}

/**
 * Subscribes and resolves with the subscription_succeeded payload (for
 * presence: pusher-js's Members); rejects with the subscription_error payload.
 */
export function subscribe(pusher, channelName) {
  const channel = pusher.subscribe(channelName);
  return subscribed(channel);
}

/** Waits on an already-subscribing pusher-js channel. */
export function subscribed(channel) {
  if (channel.subscribed) return Promise.resolve(channel.members ?? {});
  const d = deferred();
  const ok = (data) => d.resolve(data);
  const bad = (err) =>
    d.reject(Object.assign(new Error(`subscription to ${channel.name} failed: ${JSON.stringify(err)}`), { payload: err }));
  channel.bind('pusher:subscription_succeeded', ok);
  channel.bind('pusher:subscription_error', bad);
  return within(d.promise, `pusher:subscription_succeeded on ${channel.name}`).finally(() => {
    channel.unbind('pusher:subscription_succeeded', ok);
    channel.unbind('pusher:subscription_error', bad);
  });
}

/** Resolves with the subscription_error payload; rejects if the subscription succeeds instead. */
export function subscriptionError(pusher, channelName) {
  const channel = pusher.subscribe(channelName);
  const d = deferred();
  const ok = () => d.reject(new Error(`subscription to ${channelName} unexpectedly succeeded`));
  const bad = (err) => d.resolve(err);
  channel.bind('pusher:subscription_succeeded', ok);
  channel.bind('pusher:subscription_error', bad);
  return within(d.promise, `pusher:subscription_error on ${channelName}`).finally(() => {
    channel.unbind('pusher:subscription_succeeded', ok);
    channel.unbind('pusher:subscription_error', bad);
  });
}

/**
 * Records every event a pusher-js channel (or user facade) emits, in order, as
 * { event, data, meta }, and lets a test wait for one that matches.
 */
export class Recorder {
  constructor(emitter, label = 'recorder') {
    this.label = label;
    this.events = [];
    this.waiters = [];
    emitter.bind_global((event, data, meta) => {
      const rec = { event, data, meta };
      this.events.push(rec);
      for (const w of [...this.waiters]) {
        if (w.match(rec)) {
          this.waiters.splice(this.waiters.indexOf(w), 1);
          w.resolve(rec);
        }
      }
    });
  }

  /** Resolves with the first recorded event (past or future) matching `match`. */
  waitFor(match, what) {
    const pred = typeof match === 'string' ? (r) => r.event === match : match;
    const seen = this.events.find(pred);
    if (seen) return Promise.resolve(seen);
    const d = deferred();
    this.waiters.push({ match: pred, resolve: d.resolve });
    return within(
      d.promise,
      `${this.label}: ${what ?? match}; got so far: ${JSON.stringify(this.events.map((e) => e.event))}`,
    );
  }

  /** Events recorded before the first one matching `match`. */
  before(match) {
    const pred = typeof match === 'string' ? (r) => r.event === match : match;
    const idx = this.events.findIndex(pred);
    return idx < 0 ? [...this.events] : this.events.slice(0, idx);
  }

  /** All recorded events whose name is `name`. */
  named(name) {
    return this.events.filter((e) => e.event === name);
  }
}

/** Resolves with the data of the next `event` on a pusher-js channel. */
export function nextEvent(channel, event) {
  const d = deferred();
  const cb = (data, meta) => d.resolve({ data, meta });
  channel.bind(event, cb);
  return within(d.promise, `event ${event} on ${channel.name}`).finally(() => channel.unbind(event, cb));
}

/**
 * Signs the client in (pusher.signin()) and resolves once the server has
 * answered `pusher:signin_success` and acknowledged the client's automatic
 * subscription to `#server-to-user-<id>`. Rejects on a signin error or a
 * subscription_error for that channel.
 */
export function signIn(pusher, userId) {
  const d = deferred();
  const userChannel = `#server-to-user-${userId}`;
  let signedIn = false;
  let userChannelOk = false;
  const check = () => {
    if (signedIn && userChannelOk) d.resolve();
  };
  const onMessage = (msg) => {
    if (msg.event === 'pusher:signin_success') {
      signedIn = true;
      check();
    } else if (msg.event === 'pusher_internal:subscription_succeeded' && msg.channel === userChannel) {
      userChannelOk = true;
      check();
    } else if (msg.event === 'pusher:subscription_error' && msg.channel === userChannel) {
      d.reject(new Error(`subscription to ${userChannel} refused: ${JSON.stringify(msg.data)}`));
    } else if (msg.event === 'pusher:error') {
      d.reject(new Error(`pusher:error during sign-in: ${JSON.stringify(msg.data)}`));
    }
  };
  const onSigninError = (err) => d.reject(new Error(`sign-in failed: ${JSON.stringify(err)}`));
  pusher.connection.bind('message', onMessage);
  pusher.user.bind('pusher:signin_error', onSigninError);
  pusher.signin();
  return within(
    d.promise,
    `pusher:signin_success and subscription_succeeded on ${userChannel}`,
  ).finally(() => {
    pusher.connection.unbind('message', onMessage);
    pusher.user.unbind('pusher:signin_error', onSigninError);
  });
}

// ---------------------------------------------------------------------------
// Raw WebSocket (protocol-level checks)
// ---------------------------------------------------------------------------

/**
 * A raw WebSocket to /app/{key}. Collects parsed frames; waitFor(pred) resolves
 * with the first matching frame; `closed` resolves with { code, reason }.
 */
export function rawSocket(port, key, query = 'protocol=7&client=js&version=8.6.0') {
  const url = `ws://127.0.0.1:${port}/app/${key}${query === null ? '' : `?${query}`}`;
  const ws = new WebSocket(url);
  const frames = [];
  const waiters = [];
  const closed = deferred();
  const opened = deferred();
  ws.on('open', () => opened.resolve());
  ws.on('message', (buf, isBinary) => {
    const text = buf.toString('utf8');
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      frame = { unparsable: text, isBinary };
    }
    frames.push(frame);
    for (const w of [...waiters]) {
      if (w.pred(frame)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(frame);
      }
    }
  });
  ws.on('close', (code, reason) => {
    closed.resolve({ code, reason: reason.toString() });
    opened.reject(new Error(`socket closed before open (code ${code})`));
  });
  ws.on('error', (err) => {
    opened.reject(err);
    closed.resolve({ code: null, reason: '', error: err });
  });
  opened.promise.catch(() => {});
  return {
    ws,
    frames,
    opened: opened.promise,
    closed: closed.promise,
    send(obj) {
      ws.send(typeof obj === 'string' ? obj : JSON.stringify(obj));
    },
    waitFor(pred, what) {
      const p = typeof pred === 'string' ? (f) => f.event === pred : pred;
      const seen = frames.find(p);
      if (seen) return Promise.resolve(seen);
      const d = deferred();
      waiters.push({ pred: p, resolve: d.resolve });
      return within(d.promise, `raw socket: ${what ?? pred}; frames so far: ${JSON.stringify(frames)}`);
    },
    close() {
      try {
        ws.close();
      } catch {
        /* ignore */
      }
    },
    terminate() {
      ws.terminate();
    },
  };
}
