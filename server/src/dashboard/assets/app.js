// The realtime dashboard: polls the dashboard API once a second and draws
// what it gets. No library: DOM built with textContent only (nothing from
// the server is parsed as HTML), charts as SVG polylines.
'use strict';

(() => {
  const POLL_MS = 1000;
  const WINDOW_MS = 5 * 60 * 1000;
  const MAX_LOG = 500;
  const $ = (id) => document.getElementById(id);
  const state = { app: null, cursor: null, paused: false, held: [], members: null };

  async function api(path, options) {
    const res = await fetch(`/dashboard/api/${path}`, { credentials: 'same-origin', ...options });
    if (res.status === 401) {
      window.location.reload(); // the session ended: back to the login form
      throw new Error('logged out');
    }
    const body = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error(body.error || `HTTP ${res.status}`);
    return body;
  }

  function el(tag, attrs = {}, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === 'class') e.className = v;
      else if (k === 'dataset') Object.assign(e.dataset, v);
      else e.setAttribute(k, v);
    }
    for (const c of children) e.append(c);
    return e;
  }

  const fmt = (n) => (Number.isInteger(n) ? String(n) : n < 10 ? n.toFixed(1) : String(Math.round(n)));

  function fillTable(tbody, rows, empty = 'none yet') {
    tbody.replaceChildren(
      ...(rows.length ? rows : [[empty, '']]).map(([k, v]) =>
        el('tr', {}, el('td', {}, k), el('td', { class: 'num' }, v === '' ? '' : fmt(Number(v)))),
      ),
    );
  }

  const SVGNS = 'http://www.w3.org/2000/svg';
  function drawChart(fig, rates, col, now) {
    const svg = fig.querySelector('svg');
    const pts = rates.filter((r) => now - r[0] <= WINDOW_MS);
    const max = Math.max(1, ...pts.map((r) => r[col]));
    const x = (t) => 300 - ((now - t) / WINDOW_MS) * 300;
    const y = (v) => 68 - (v / max) * 62;
    const line = pts.map((r) => `${x(r[0]).toFixed(1)},${y(r[col]).toFixed(1)}`).join(' ');
    const base = document.createElementNS(SVGNS, 'line');
    Object.entries({ x1: 0, x2: 300, y1: 68, y2: 68 }).forEach(([k, v]) => base.setAttribute(k, v));
    const children = [base];
    if (pts.length > 1) {
      const area = document.createElementNS(SVGNS, 'polygon');
      area.setAttribute('points', `${x(pts[0][0]).toFixed(1)},68 ${line} ${x(pts[pts.length - 1][0]).toFixed(1)},68`);
      const poly = document.createElementNS(SVGNS, 'polyline');
      poly.setAttribute('points', line);
      children.push(area, poly);
    }
    svg.replaceChildren(...children);
    const last = pts.length ? pts[pts.length - 1][col] : 0;
    fig.querySelector('.now').textContent = `${fmt(last)} (max ${fmt(max === 1 && !pts.some((r) => r[col]) ? 0 : max)})`;
  }

  function renderOverview(o) {
    $('node').textContent = o.node;
    const select = $('app');
    if (!select.options.length) {
      for (const a of o.apps) select.append(el('option', { value: a.id }, `app ${a.id}`));
      state.app = state.app ?? o.apps[0]?.id;
      select.value = state.app;
    }
    const a = o.apps.find((x) => x.id === state.app) ?? o.apps[0];
    if (!a) return;
    $('v-connections').textContent = String(a.connections);
    $('v-channels').textContent = String(a.channels);
    $('v-presence').textContent = String(a.presence_users);
    $('v-drops').textContent = String(a.drops);
    const now = Date.now();
    // The selected app's own rates (the node's when an app has none yet).
    const rates = a.rates && a.rates.length ? a.rates : o.rates;
    document.querySelectorAll('.chart').forEach((fig) => drawChart(fig, rates, Number(fig.dataset.series), now));
    fillTable($('t-disconnects'), Object.entries(o.disconnects));
    fillTable($('t-http'), Object.entries(o.http));
    const hooks = Object.entries(o.webhooks);
    $('webhooks-box').hidden = hooks.length === 0;
    fillTable($('t-webhooks'), hooks);
    const cluster = a.cluster ? Object.entries(a.cluster.presence_members_by_node).map(([n, c]) => [`node ${n}${n === a.cluster.node ? ' (this)' : ''} presence members`, c]) : [];
    const redis = Object.entries(o.redis);
    $('cluster-box').hidden = !a.cluster && redis.length === 0;
    fillTable($('t-cluster'), [...cluster, ...redis]);
  }

  function renderChannels(c) {
    $('channels-total').textContent = `${c.total} occupied`;
    const rows = c.channels.map((ch) => {
      const tr = el('tr', { dataset: { channel: ch.name } },
        el('td', { class: 'name' }, ch.name),
        el('td', {}, ch.occupied ? 'yes' : 'no'),
        el('td', { class: 'num subs', 'data-testid': 'subscription-count' }, String(ch.subscription_count)),
        el('td', { class: 'num users' }, ch.user_count == null ? '–' : String(ch.user_count)),
        el('td', {}));
      if (ch.name.startsWith('presence-')) {
        const b = el('button', { type: 'button', class: 'secondary' }, 'Members');
        b.addEventListener('click', () => { state.members = ch.name; pollMembers(); });
        tr.lastChild.append(b);
      }
      return tr;
    });
    if (!rows.length) rows.push(el('tr', {}, el('td', { colspan: '5', class: 'muted' }, 'no occupied channel')));
    $('t-channels').replaceChildren(...rows);
  }

  async function pollMembers() {
    if (!state.members) return;
    const m = await api(`members?app=${encodeURIComponent(state.app)}&channel=${encodeURIComponent(state.members)}`);
    $('members-box').hidden = false;
    $('members-channel').textContent = m.channel;
    $('members-list').replaceChildren(...m.members.map((u) =>
      el('li', {}, el('b', {}, u.id), ' ', el('span', { class: 'muted' }, u.info == null ? '' : JSON.stringify(u.info)))));
  }

  function describe(e) {
    switch (e.kind) {
      case 'connection_opened': return `${e.socket_id}`;
      case 'connection_closed': return `${e.socket_id}${e.code ? ` code ${e.code}` : ''}${e.detail ? ` ${e.detail}` : ''}`;
      case 'subscribed': case 'unsubscribed': return `${e.socket_id} → ${e.channel}`;
      case 'api_event': return `${e.channel} ${e.event} ${e.data ?? ''}${e.socket_id ? ` (except ${e.socket_id})` : ''}`;
      case 'client_event': return `${e.channel} ${e.event} ${e.data ?? ''} (from ${e.socket_id})`;
      case 'webhook': return `${e.event}${e.channel ? ` ${e.channel}` : ''} ${e.detail ?? ''}`;
      default: return JSON.stringify(e);
    }
  }

  function matches(e) {
    const ch = $('f-channel').value.trim();
    const ev = $('f-event').value.trim();
    if (ch && !(e.channel ?? '').includes(ch)) return false;
    if (ev && !(e.event ?? '').includes(ev)) return false;
    return true;
  }

  function appendLog(events) {
    const log = $('log');
    const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    for (const e of events) {
      if (e.kind !== 'missed' && !matches(e)) continue;
      const t = new Date(e.time).toLocaleTimeString();
      log.append(el('li', { dataset: { kind: e.kind, channel: e.channel ?? '', event: e.event ?? '' } },
        el('span', { class: 't' }, t), el('span', { class: `k ${e.kind}` }, e.kind.replace('_', ' ')),
        el('span', { class: 'd' }, e.kind === 'missed' ? `${e.count} entries missed (the server's ring overwrote them)` : describe(e))));
    }
    while (log.children.length > MAX_LOG) log.firstChild.remove();
    if (atBottom) log.scrollTop = log.scrollHeight;
  }

  let missedTotal = 0;
  async function pollFeed() {
    const q = state.cursor == null ? '' : `&cursor=${state.cursor}`;
    const f = await api(`feed?app=${encodeURIComponent(state.app)}${q}`);
    state.cursor = f.next;
    const batch = [...f.events];
    if (f.missed > 0) {
      missedTotal += f.missed;
      $('missed').textContent = String(missedTotal);
      batch.unshift({ kind: 'missed', count: f.missed, time: Date.now() });
    }
    $('feed-status').textContent = state.paused ? `paused (${state.held.length} held)` : 'live';
    if (state.paused) {
      state.held.push(...batch);
      if (state.held.length > MAX_LOG) state.held.splice(0, state.held.length - MAX_LOG);
      $('feed-status').textContent = `paused (${state.held.length} held)`;
    } else {
      appendLog(batch);
    }
  }

  async function tick() {
    const started = Date.now();
    try {
      const o = await api('overview');
      renderOverview(o);
      const prefix = $('prefix').value.trim();
      const [c] = await Promise.all([
        api(`channels?app=${encodeURIComponent(state.app)}&prefix=${encodeURIComponent(prefix)}`),
        pollFeed(),
        pollMembers(),
      ]);
      renderChannels(c);
      $('status').textContent = 'live';
      $('status').className = 'status live';
    } catch (err) {
      $('status').textContent = `error: ${err.message}`;
      $('status').className = 'status down';
    }
    setTimeout(tick, Math.max(0, POLL_MS - (Date.now() - started)));
  }

  function setup() {
    $('app').addEventListener('change', (ev) => {
      state.app = ev.target.value;
      state.cursor = null;
      state.members = null;
      $('members-box').hidden = true;
      $('log').replaceChildren();
    });
    $('pause').addEventListener('click', () => {
      state.paused = !state.paused;
      $('pause').setAttribute('aria-pressed', String(state.paused));
      $('pause').textContent = state.paused ? 'Resume' : 'Pause';
      if (!state.paused) {
        appendLog(state.held);
        state.held = [];
        $('feed-status').textContent = 'live';
      }
    });
    $('clear').addEventListener('click', () => $('log').replaceChildren());
    $('send').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const form = ev.target;
      const out = $('send-result');
      const data = form.elements.data.value;
      try {
        JSON.parse(data);
      } catch (err) {
        out.textContent = `Data is not JSON: ${err.message}`;
        out.className = 'bad';
        return;
      }
      try {
        await api('events', {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ app: state.app, channel: form.elements.channel.value, event: form.elements.event.value, data }),
        });
        out.textContent = `Sent ${form.elements.event.value} to ${form.elements.channel.value}`;
        out.className = 'ok';
      } catch (err) {
        out.textContent = `Refused: ${err.message}`;
        out.className = 'bad';
      }
    });
    tick();
  }

  document.addEventListener('DOMContentLoaded', setup);
})();
