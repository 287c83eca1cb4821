// Takes the README's dashboard screenshot (docs/dashboard.png): starts the
// server with --dashboard-token, makes a minute of mixed traffic with
// pusher-js clients and the server SDK (public and presence channels, API
// publishes at a varying rate, client events, a disconnect), then saves the
// page as Debian's chromium shows it.
//
// Usage (in server/e2e, after npm ci): node tools/dashboard_screenshot.mjs [OUT] [SECONDS]
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import puppeteer from 'puppeteer-core';

import { startServer, connected, subscribe, uid } from '../harness.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const [out = path.resolve(HERE, '../../../docs/dashboard.png'), seconds = '60'] = process.argv.slice(2);
const TOKEN = `docs-${uid()}${uid()}`;
const pause = (ms) => new Promise((r) => setTimeout(r, ms));

const srv = await startServer({ extraArgs: ['--dashboard-token', TOKEN] });
const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM_BIN ?? '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
});
try {
  const page = await browser.newPage();
  await page.setViewport({ width: 1440, height: 1000 });
  await page.goto(`http://127.0.0.1:${srv.port}/dashboard`);
  await page.type('input[name="token"]', TOKEN);
  await Promise.all([page.waitForNavigation(), page.keyboard.press('Enter')]);
  await page.waitForSelector('[data-testid="connections"]');

  const names = ['ada', 'grace', 'linus', 'margaret', 'ken', 'barbara'];
  const clients = names.map((id) => srv.client({ user: { id, info: { name: id } } }));
  await Promise.all(clients.map((c) => connected(c)));
  for (const [i, c] of clients.entries()) {
    await subscribe(c, 'orders');
    await subscribe(c, i % 2 ? 'prices-eur' : 'prices-usd');
    await subscribe(c, 'presence-support');
    if (i < 2) await subscribe(c, 'private-chat-42');
  }
  const end = Date.now() + Number(seconds) * 1000;
  let n = 0;
  while (Date.now() < end) {
    const phase = Math.sin((Date.now() / 1000 / Number(seconds)) * Math.PI * 2);
    const burst = 2 + Math.round(4 * (1 + phase));
    for (let k = 0; k < burst; k++) {
      n += 1;
      await srv.sdk.trigger(n % 3 ? 'orders' : 'prices-usd', n % 3 ? 'order-placed' : 'tick', { id: n, total: (n * 7.3).toFixed(2) });
    }
    if (n % 5 === 0) clients[0].channel('private-chat-42').trigger('client-typing', { user: 'ada' });
    if (n > 60 && clients.length === names.length) clients.pop().disconnect();
    await pause(500);
  }
  await page.click('[data-testid="channels"] tr[data-channel="presence-support"] button');
  await page.waitForSelector('#members-list li');
  await page.screenshot({ path: out, fullPage: true });
  console.log(`saved ${out}`);
} finally {
  await browser.close();
  await srv.stop();
}
