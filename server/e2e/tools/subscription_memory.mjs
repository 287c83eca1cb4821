// Measures the server's memory per subscription (BENCHMARKS.md, issue #12):
// C raw WebSocket connections each subscribe to K distinct public channels
// (C × K channels of one member each); the server's RSS is read from /proc
// before and after, once every acknowledgement has arrived.
//
// Usage: node tools/subscription_memory.mjs PORT SERVER_PID [C] [K]
// (start the server with --max-subscriptions-per-connection >= K and
// --max-channels >= C × K).
import { readFileSync } from 'node:fs';
import WebSocket from 'ws';

const [port, pid, conns = '10', perConn = '5000'] = process.argv.slice(2);
const C = Number(conns);
const K = Number(perConn);
const rss = () => {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmRSS:'));
  return Number(line.split(/\s+/)[1]) * 1024;
};

function open(i) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/app/app-key?protocol=7`);
    ws.on('error', reject);
    ws.once('message', () => resolve(ws));
  });
}

function subscribeAll(ws, i) {
  return new Promise((resolve, reject) => {
    let acked = 0;
    ws.on('message', (m) => {
      const f = JSON.parse(m.toString());
      if (f.event === 'pusher_internal:subscription_succeeded') {
        acked += 1;
        if (acked === K) resolve();
      } else if (f.event === 'pusher:subscription_error') {
        reject(new Error(`refused: ${m}`));
      }
    });
    ws.on('close', (code) => reject(new Error(`closed ${code}`)));
    for (let k = 0; k < K; k += 1) {
      ws.send(JSON.stringify({ event: 'pusher:subscribe', data: { channel: `mem-${i}-${k}` } }));
    }
  });
}

const sockets = [];
for (let i = 0; i < C; i += 1) sockets.push(await open(i));
const before = rss();
for (let i = 0; i < C; i += 1) await subscribeAll(sockets[i], i);
const after = rss();
const n = C * K;
console.log(JSON.stringify({ connections: C, subscriptions: n, rss_before: before, rss_after: after, bytes_per_subscription: Math.round((after - before) / n) }));
for (const ws of sockets) ws.terminate();
