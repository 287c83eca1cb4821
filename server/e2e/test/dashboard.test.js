// The dashboard (issue 17) in a real browser: Debian's chromium driven by
// puppeteer-core, against the release server with --dashboard-token, with
// live pusher-js clients and the pusher server SDK making the traffic.
//
// Every wait is on a selector or a condition in the page (waitForSelector,
// waitForFunction) or on a client event; none is a fixed sleep. The
// overview's screenshot is written to target/e2e-artifacts/dashboard.png
// (a CI artifact, not committed).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import puppeteer from 'puppeteer-core';

import { startServer, connected, subscribe, nextEvent, within, uid, httpRequest, WAIT_MS } from '../harness.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ARTIFACTS = path.resolve(HERE, '../../../target/e2e-artifacts');
const CHROMIUM = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';
const TOKEN = `dash-${uid()}${uid()}`;
const T = { timeout: 30000 };
const UI_WAIT = { timeout: 10000 };

let srv;
let browser;
let base;

before(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `chromium not found at ${CHROMIUM}: install Debian's chromium package (scripts/test does) or set CHROMIUM_BIN`,
    );
  }
  srv = await startServer({ extraArgs: ['--dashboard-token', TOKEN] });
  base = `http://127.0.0.1:${srv.port}`;
  browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    // Root in CI: chromium's sandbox needs user namespaces it may not have.
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run'],
  });
});

after(async () => {
  await browser?.close();
  if (srv) await srv.stop();
});

/** A fresh page (own cookie jar) on the login form, with the token typed and sent from the keyboard. */
async function logIn(token) {
  const context = await browser.createBrowserContext();
  const page = await context.newPage();
  await page.setViewport({ width: 1440, height: 1100 });
  const failures = [];
  page.on('pageerror', (err) => failures.push(err.message));
  page.on('requestfailed', (req) => failures.push(`${req.url()} ${req.failure()?.errorText}`));
  await page.goto(`${base}/dashboard`);
  await page.waitForSelector('input[name="token"]', UI_WAIT);
  // The field has autofocus: type and press Enter, as a keyboard user would.
  await page.focus('input[name="token"]');
  await page.keyboard.type(token);
  const [response] = await Promise.all([page.waitForNavigation(UI_WAIT), page.keyboard.press('Enter')]);
  return { page, context, response, failures };
}

const text = (page, testid) => page.$eval(`[data-testid="${testid}"]`, (e) => e.textContent);

test('a wrong token is refused and no dashboard API answers without the session cookie', T, async () => {
  const { page, context, response } = await logIn('not-the-token-at-all');
  try {
    assert.equal(response.status(), 401);
    await page.waitForSelector('[data-testid="login-error"]', UI_WAIT);
    assert.equal(await page.$('[data-testid="connections"]'), null, 'no dashboard behind a wrong token');
    const cookies = await page.cookies();
    assert.deepEqual(cookies.filter((c) => c.name === 'realtime_dashboard'), []);
  } finally {
    await context.close();
  }
  for (const p of ['overview', 'channels', 'members?channel=presence-x', 'feed']) {
    const res = await httpRequest(srv.port, 'GET', `/dashboard/api/${p}`);
    assert.equal(res.status, 401, `GET /dashboard/api/${p} without the cookie: ${res.body}`);
    const forged = await httpRequest(srv.port, 'GET', `/dashboard/api/${p}`, undefined, { cookie: 'realtime_dashboard=0123abcd' });
    assert.equal(forged.status, 401, `GET /dashboard/api/${p} with a forged cookie`);
  }
  const body = JSON.stringify({ app: srv.app.appId, channel: 'x', event: 'e', data: '{}' });
  const post = await httpRequest(srv.port, 'POST', '/dashboard/api/events', body);
  assert.equal(post.status, 401);
});

test('the dashboard shows live clients, channels and events, and sends an event a client receives', T, async () => {
  const { page, context, response, failures } = await logIn(TOKEN);
  try {
    assert.equal(response.status(), 200);
    await page.waitForSelector('[data-testid="connections"]', UI_WAIT);
    // The first polls answered: counts shown and the feed recording.
    await page.waitForFunction(
      () => document.querySelector('[data-testid="connections"]').textContent === '0' &&
        document.querySelector('[data-testid="feed-status"]').textContent === 'live',
      UI_WAIT,
    );

    const channel = `dash-${uid()}`;
    const a = srv.client();
    const b = srv.client();
    await Promise.all([connected(a), connected(b)]);
    await page.waitForFunction(() => document.querySelector('[data-testid="connections"]').textContent === '2', UI_WAIT);

    await Promise.all([subscribe(a, channel), subscribe(b, channel)]);
    await page.waitForFunction(
      (name) => document.querySelector(`[data-testid="channels"] tr[data-channel="${name}"] [data-testid="subscription-count"]`)?.textContent === '2',
      UI_WAIT,
      channel,
    );

    // An HTTP API publish shows in the debug console.
    await srv.sdk.trigger(channel, 'api-news', { n: 1 });
    await page.waitForFunction(
      (name) => [...document.querySelectorAll('[data-testid="event-log"] li')]
        .some((li) => li.dataset.kind === 'api_event' && li.dataset.channel === name && li.dataset.event === 'api-news'),
      UI_WAIT,
      channel,
    );

    // The event creator, from the keyboard: a pusher-js client receives it.
    const got = nextEvent(a.channel(channel), 'from-dashboard');
    await page.focus('[data-testid="send-event"] [name="channel"]');
    await page.keyboard.type(channel);
    await page.keyboard.press('Tab');
    await page.keyboard.type('from-dashboard');
    await page.keyboard.press('Tab');
    await page.keyboard.down('Control');
    await page.keyboard.press('KeyA');
    await page.keyboard.up('Control');
    await page.keyboard.type('{"sent":"from the page"}');
    await page.keyboard.press('Tab');
    await page.keyboard.press('Enter');
    const ev = await within(got, 'the event sent from the dashboard', WAIT_MS);
    assert.deepEqual(ev.data, { sent: 'from the page' });
    await page.waitForFunction(
      () => document.querySelector('[data-testid="send-result"]').textContent.startsWith('Sent'),
      UI_WAIT,
    );

    // The overview's charts have points; keep a screenshot as an artifact.
    await page.waitForFunction(() => document.querySelectorAll('.chart polyline').length === 4, UI_WAIT);
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard.png'), fullPage: true });
    assert.equal(await text(page, 'connections'), '2');
    assert.deepEqual(failures, [], 'no script error and no failed request in the page');
  } finally {
    await context.close();
  }
});
