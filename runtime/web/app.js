/*
 * app.js: the dashboard's client. One WebSocket to the server that served the page
 * (ws://HOST/ws), protocol v1 as in docs/protocol.md: one JSON request per message, one
 * reply per request (in request order, matched here by "id"), plus subscription messages
 * {"sub":N,"t":T,"time":[...],"diff":[[row,diff],...]} ("snapshot":true on the first,
 * "end" on the last).
 *
 * Each view subscribes to a query and keeps its result as a multiset (row -> count): a
 * diff adds its count, rows whose count reaches zero are dropped. A view is "final at
 * t=N" once the message of system time N has been applied.
 *
 * Fallback (said on the page): when the server answers subscribe with code
 * "unsupported", the view polls the `query` op once a second and turns each answer into
 * diffs against the previous one, so the same multiset code shows it.
 *
 * Does not: compute any view itself (the top ten is the ten largest rows of a subscribed
 * set; everything else is the server's), or use any library.
 */
'use strict';

const VIEWS = {
  regions: {
    q: '[:find ?region (sum ?amount) (count ?o)\n' +
       ' :with ?o\n' +
       ' :where [?o :order/status "open"] [?o :order/customer ?c]\n' +
       '        [?c :customer/region ?region] [?o :order/amount ?amount]]',
    render: renderRegions,
  },
  top: {
    q: '[:find ?id ?amount ?region\n' +
       ' :where [?o :order/status "open"] [?o :order/id ?id] [?o :order/amount ?amount]\n' +
       '        [?o :order/customer ?c] [?c :customer/region ?region]]',
    render: renderTop,
  },
  status: {
    q: '[:find ?status (count ?o)\n :where [?o :order/status ?status]]',
    render: renderStatus,
  },
};

/* ---- the protocol client ------------------------------------------------------------------ */

const client = {
  ws: null,
  nextId: 1,
  waiting: new Map(),   // id -> {resolve}
  subs: new Map(),      // sub id -> view
  early: new Map(),     // sub id -> messages that came before the subscribe reply
  dropped: new Set(),   // sub ids this page unsubscribed: their last messages are ignored
  onOpen: [],
  backoff: 500,

  connect() {
    const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws';
    setConn('connecting', 'connecting…');
    const ws = new WebSocket(url);
    this.ws = ws;
    ws.onopen = () => {
      this.backoff = 500;
      setConn('open', 'live · ' + location.host);
      this.onOpen.forEach((f) => f());
    };
    ws.onmessage = (ev) => this.receive(ev.data);
    ws.onclose = () => {
      setConn('closed', 'disconnected · retrying');
      for (const w of this.waiting.values())
        w.resolve({ok: false, error: {code: 'closed', message: 'the connection closed'}});
      this.waiting.clear();
      for (const v of this.subs.values()) v.sub = null; // those subscriptions died with it
      this.subs.clear();
      this.early.clear();
      this.dropped.clear();
      setTimeout(() => this.connect(), this.backoff);
      this.backoff = Math.min(this.backoff * 2, 8000);
    };
  },

  request(msg) {
    return new Promise((resolve) => {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
        resolve({ok: false, error: {code: 'closed', message: 'not connected'}});
        return;
      }
      const id = this.nextId++;
      this.waiting.set(id, {resolve});
      this.ws.send(JSON.stringify(Object.assign({id}, msg)));
    });
  },

  receive(text) {
    let m;
    try { m = JSON.parse(text); } catch (e) { console.warn('bad message', text); return; }
    if ('ok' in m) {                       // a reply
      const w = this.waiting.get(m.id);
      if (w) { this.waiting.delete(m.id); w.resolve(m); }
      return;
    }
    if ('sub' in m) {                      // a subscription message
      const v = this.subs.get(m.sub);
      if (v) v.onMessage(m);
      else if (this.dropped.has(m.sub)) {
        if (m.end) this.dropped.delete(m.sub);
      } else {
        if (!this.early.has(m.sub)) this.early.set(m.sub, []);
        this.early.get(m.sub).push(m);
      }
    }
  },

  bindSub(sub, view) {
    this.subs.set(sub, view);
    const early = this.early.get(sub) || [];
    this.early.delete(sub);
    early.forEach((m) => view.onMessage(m));
  },
};

function setConn(state, text) {
  const el = document.getElementById('conn');
  el.dataset.state = state;
  el.textContent = text;
}

/* ---- a live view: a multiset fed by diffs ---------------------------------------------------- */

class LiveView {
  constructor(name, el, render) {
    this.name = name;
    this.el = el;
    this.render = render;
    this.rows = new Map();  // key -> {row, n}
    this.t = null;          // the last system time whose diff was applied
    this.final = false;
    this.mode = '';
    this.sub = null;
    this.poll = null;
    this.ended = null;
    this.updates = 0;
    this.dirty = false;
  }

  reset() {
    this.rows.clear();
    this.t = null;
    this.final = false;
    this.ended = null;
    this.updates = 0;
  }

  applyDiff(diff) {
    for (const [row, d] of diff) {
      const key = JSON.stringify(row);
      const e = this.rows.get(key);
      const n = (e ? e.n : 0) + d;
      if (n === 0) this.rows.delete(key);
      else if (e) e.n = n;
      else this.rows.set(key, {row, n});
    }
  }

  onMessage(m) {
    if (m.snapshot) this.rows.clear();
    if (Array.isArray(m.diff)) this.applyDiff(m.diff);
    if (typeof m.t === 'number') { this.t = m.t; this.final = true; }
    if (m.end || m.error) {
      this.ended = m.error ? (m.error.code + ': ' + m.error.message) : 'ended by the server';
      this.final = false;
    }
    this.updates++;
    this.schedule();
  }

  /* The current result: every row, repeated by its count (counts are 1 for sets). */
  list() {
    const out = [];
    for (const {row, n} of this.rows.values()) for (let i = 0; i < n; i++) out.push(row);
    return out;
  }

  schedule() {
    if (this.dirty) return;
    this.dirty = true;
    requestAnimationFrame(() => { this.dirty = false; this.paint(); });
  }

  paint() {
    const clock = this.el.querySelector('.clock');
    this.el.dataset.t = this.t === null ? '' : String(this.t);
    this.el.dataset.final = this.final ? 'true' : 'false';
    this.el.dataset.rows = String(this.rows.size);
    this.el.dataset.mode = this.mode;
    this.el.dataset.updates = String(this.updates);
    if (clock) {
      if (this.ended) clock.textContent = this.ended;
      else if (this.t === null) clock.textContent = 'waiting for the first result…';
      else clock.textContent = (this.final ? 'final at t=' : 'updating, t=') + this.t +
                               (this.mode ? ' · ' + this.mode : '');
      clock.className = 'clock' + (this.final ? ' final' : '') + (this.ended ? ' ended' : '');
    }
    try { this.render(this, this.el); } catch (e) { console.error(e); }
  }

  async start(q) {
    this.stop();
    this.reset();
    this.q = q;
    const r = await client.request({op: 'subscribe', q});
    if (r.ok) {
      this.sub = r.sub;
      this.columns = Array.isArray(r.columns) ? r.columns : null;
      this.mode = 'subscription #' + r.sub;
      client.bindSub(r.sub, this);
      this.schedule();
      return r;
    }
    if (r.error && r.error.code === 'unsupported' && /not available yet/.test(r.error.message)) {
      return this.startPolling(q);   // this server has no subscriptions over the wire
    }
    return r;
  }

  /* Fallback: query once a second; each answer becomes diffs against the previous one. */
  async startPolling(q) {
    this.mode = 'polling (this server has no subscribe yet)';
    document.getElementById('mode').textContent = 'fallback: polling the query op';
    let prev = new Map();
    const tick = async () => {
      const r = await client.request({op: 'query', q});
      if (this.q !== q) return;
      if (!r.ok) { this.ended = r.error.code + ': ' + r.error.message; this.schedule(); return r; }
      const next = new Map();
      for (const row of r.rows) {
        const k = JSON.stringify(row);
        next.set(k, {row, n: (next.has(k) ? next.get(k).n : 0) + 1});
      }
      const diff = [];
      for (const [k, e] of prev) if (!next.has(k)) diff.push([e.row, -e.n]);
      for (const [k, e] of next) {
        const old = prev.get(k);
        const d = e.n - (old ? old.n : 0);
        if (d) diff.push([e.row, d]);
      }
      prev = next;
      this.onMessage({t: r.t, diff});
      return r;
    };
    const first = await tick();
    if (first && first.ok) this.poll = setInterval(tick, 1000);
    return first;
  }

  stop() {
    if (this.sub !== null) {
      client.subs.delete(this.sub);
      client.dropped.add(this.sub);
      client.request({op: 'unsubscribe', sub: this.sub});
      this.sub = null;
    }
    if (this.poll) { clearInterval(this.poll); this.poll = null; }
    this.q = null;
    this.columns = null;
  }
}

/* ---- rendering -------------------------------------------------------------------------------- */

function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({'&': '&amp;', '<': '&lt;', '>': '&gt;',
                                                  '"': '&quot;', "'": '&#39;'}[c]));
}

/* A value in the values.md encoding, as EDN-ish text for people. */
function show(v) {
  if (v === null) return 'nil';
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (Array.isArray(v)) return '[' + v.map(show).join(' ') + ']';
  if (typeof v === 'object') {
    if ('kw' in v) return ':' + v.kw;
    if ('ref' in v) return '#ref ' + v.ref;
    if ('inst' in v) return '#inst "' + v.inst + '"';
    if ('uuid' in v) return '#uuid "' + v.uuid + '"';
    if ('double' in v) return String(v.double);
    return JSON.stringify(v);
  }
  return String(v);
}

const fmt = new Intl.NumberFormat('en-US');

/* Horizontal bars: items [{label, value, note}], scaled to the largest value. */
function bars(items, cls, width) {
  const max = Math.max(1, ...items.map((i) => i.value));
  const rowH = 26, labelW = 96, noteW = 170, w = Math.max(320, width || 640);
  const barW = w - labelW - noteW;
  const h = Math.max(1, items.length) * rowH;
  let svg = `<svg class="${cls}" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" role="img">`;
  items.forEach((it, i) => {
    const y = i * rowH;
    const bw = Math.max(1, Math.round(barW * it.value / max));
    svg += `<text x="0" y="${y + 17}" class="lbl">${esc(it.label)}</text>` +
           `<rect x="${labelW}" y="${y + 4}" width="${bw}" height="${rowH - 8}" rx="3"></rect>` +
           `<text x="${labelW + bw + 8}" y="${y + 17}" class="val" data-label="${esc(it.label)}">` +
           `${esc(it.note)}</text>`;
  });
  return svg + '</svg>';
}

function renderRegions(view, el) {
  const rows = view.list().slice().sort((a, b) => String(a[0]).localeCompare(String(b[0])));
  const items = rows.map(([region, sum, count]) => ({
    label: show(region), value: Number(sum) || 0,
    note: fmt.format(sum) + ' · ' + fmt.format(count) + ' open',
  }));
  const chart = el.querySelector('.chart');
  chart.innerHTML = items.length ? bars(items, 'bars', chart.clientWidth) :
    '<p class="empty">no open orders</p>';
}

function renderTop(view, el) {
  const rows = view.list().slice().sort((a, b) => (b[1] - a[1]) || (a[0] - b[0])).slice(0, 10);
  el.querySelector('tbody').innerHTML = rows.map(([id, amount, region]) =>
    `<tr><td>#${esc(show(id))}</td><td class="num">${esc(fmt.format(amount))}</td>` +
    `<td>${esc(show(region))}</td></tr>`).join('');
}

function renderStatus(view, el) {
  const order = ['open', 'paid', 'shipped', 'cancelled'];
  const rows = view.list().slice().sort((a, b) => {
    const ia = order.indexOf(a[0]), ib = order.indexOf(b[0]);
    return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib) || String(a[0]).localeCompare(String(b[0]));
  });
  const items = rows.map(([status, count]) => ({
    label: show(status), value: Number(count) || 0, note: fmt.format(count),
  }));
  const chart = el.querySelector('.chart');
  chart.innerHTML = items.length ? bars(items, 'bars status', chart.clientWidth) :
    '<p class="empty">no orders</p>';
}

/* Column names: the :find elements as written, when the query text is simple enough. */
function columns(q, n) {
  const m = /:find\s+([\s\S]*?)(?=\s:(?:with|in|where|keys|strs|syms)\b|\]\s*$)/.exec(q);
  const names = [];
  if (m) {
    let depth = 0, cur = '';
    for (const ch of m[1]) {
      if (ch === '(' || ch === '[') depth++;
      if (ch === ')' || ch === ']') depth--;
      if (/\s/.test(ch) && depth === 0) { if (cur) names.push(cur); cur = ''; } else cur += ch;
    }
    if (cur) names.push(cur);
  }
  const out = [];
  for (let i = 0; i < n; i++) out.push(names.length === n ? names[i] : '%' + (i + 1));
  return out;
}

function renderCustom(view, el) {
  const rows = view.list().slice().sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));
  const n = rows.length ? (Array.isArray(rows[0]) ? rows[0].length : 1) : 0;
  const table = el.querySelector('#qresult');
  table.querySelector('thead').innerHTML = n ?
    '<tr>' + (view.columns && view.columns.length === n ? view.columns : columns(view.q || '', n)).map((c) => `<th>${esc(c)}</th>`).join('') + '</tr>' : '';
  table.querySelector('tbody').innerHTML = rows.slice(0, 200).map((r) =>
    '<tr>' + (Array.isArray(r) ? r : [r]).map((v) => `<td>${esc(show(v))}</td>`).join('') +
    '</tr>').join('');
  document.getElementById('qmeta').textContent = view.t === null ? '' :
    `${fmt.format(rows.length)} row${rows.length === 1 ? '' : 's'}` +
    (rows.length > 200 ? ' (showing 200)' : '');
}

/* ---- wiring ------------------------------------------------------------------------------------ */

const views = {};
const custom = new LiveView('custom', document.getElementById('view-custom'), renderCustom);
window.deltalogViews = views;            // for people poking in the console, and the CI check
views.custom = custom;

for (const [name, spec] of Object.entries(VIEWS)) {
  const el = document.getElementById('view-' + name);
  el.querySelector('pre.q').textContent = spec.q;
  views[name] = new LiveView(name, el, spec.render);
}

function showError(r) {
  const box = document.getElementById('qerror');
  if (r && !r.ok) {
    box.hidden = false;
    box.innerHTML = `<b>${esc(r.error.code)}</b><pre>${esc(r.error.message)}</pre>`;
  } else {
    box.hidden = true;
    box.textContent = '';
  }
  box.dataset.code = r && !r.ok ? r.error.code : '';
}

async function runCustom() {
  const q = document.getElementById('qtext').value;
  const r = await custom.start(q);
  showError(r);
  if (!r.ok) custom.stop();
  custom.schedule();
}

document.getElementById('qform').addEventListener('submit', (ev) => {
  ev.preventDefault();
  runCustom();
});
document.getElementById('qtext').addEventListener('keydown', (ev) => {
  if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); runCustom(); }
});

client.onOpen.push(() => {
  for (const [name, spec] of Object.entries(VIEWS)) views[name].start(spec.q);
  runCustom();
});
client.connect();
