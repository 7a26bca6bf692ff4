// tickstream dashboard: plain JavaScript over the service's own API (no build step).
//
// Data: the watchlist and the symbol view follow `/v1/stream` (Server-Sent Events); the page
// renders at most four times a second and only the rows that changed. Candles and indicators
// come from the REST endpoints, refreshed when the symbol's stats move and when a bar closes.
// The stream reconnects by itself (the browser's EventSource, then our own backoff if it gives
// up) and resumes with the last event id, so no alert is lost across a drop or a restart.
'use strict';

(() => {
  const RENDER_EVERY_MS = 250;
  const FEEDS_EVERY_MS = 2000;
  const MAX_ALERTS_SHOWN = 200;
  const CHART_BARS = 500;

  const $ = (id) => document.getElementById(id);
  const state = {
    info: null,
    window: null,
    rows: new Map(), // symbol -> {symbol, last, windows: {label: stats}, quote, el, cells}
    dirty: new Set(),
    orderDirty: true,
    sort: { key: 'symbol', dir: 1 },
    filter: '',
    clock: null,
    lastEventId: null,
    run: null,
    source: null,
    reconnectDelay: 1000,
    alertKeys: new Set(),
    everOpened: false,
    token: null,
    route: { view: 'watchlist' },
    renderQueued: false,
    updates: 0,
  };

  // ---- formatting ---------------------------------------------------------------------------
  // Intl formatters are costly to make: one per style, made once.
  const formatters = new Map();
  function numberFormat(min, max) {
    const key = `${min}:${max}`;
    let f = formatters.get(key);
    if (!f) {
      f = new Intl.NumberFormat('en-US', { minimumFractionDigits: min, maximumFractionDigits: max });
      formatters.set(key, f);
    }
    return f;
  }
  const missing = (v) => v === null || v === undefined || !Number.isFinite(v);
  const fmt = {
    price(v) {
      if (missing(v)) return '—';
      const a = Math.abs(v);
      const digits = a >= 1000 ? 2 : a >= 1 ? 4 : 6;
      return numberFormat(2, digits).format(v);
    },
    signed(v, digits = 4) {
      if (missing(v)) return '—';
      const s = numberFormat(0, digits).format(v);
      return v > 0 ? `+${s}` : s;
    },
    pct(v) {
      if (missing(v)) return '—';
      return `${v > 0 ? '+' : ''}${v.toFixed(3)} %`;
    },
    qty(v) {
      if (missing(v)) return '—';
      return numberFormat(0, v >= 100 ? 0 : 4).format(v);
    },
    int(v) {
      return v === null || v === undefined ? '—' : numberFormat(0, 0).format(Number(v));
    },
    time(ms) {
      if (!Number.isFinite(ms)) return '—';
      return new Date(ms).toISOString().replace('T', ' ').slice(0, 19) + ' UTC';
    },
    clock(ms) {
      return Number.isFinite(ms) ? new Date(ms).toISOString().slice(11, 19) : '—';
    },
    duration(ms) {
      if (!Number.isFinite(ms)) return '—';
      const a = Math.abs(ms);
      if (a < 1000) return `${ms} ms`;
      if (a < 60_000) return `${(ms / 1000).toFixed(1)} s`;
      if (a < 3_600_000) return `${(ms / 60_000).toFixed(1)} min`;
      if (a < 86_400_000) return `${(ms / 3_600_000).toFixed(1)} h`;
      // A replayed recording's trades are as old as the recording.
      return `${Math.round(ms / 86_400_000)} d`;
    },
  };
  const sign = (v) => (v > 0 ? 'up' : v < 0 ? 'down' : '');

  // ---- the API ------------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(path, options = {}) {
    const headers = { Accept: 'application/json', ...(options.headers || {}) };
    if (state.token) headers.Authorization = `Bearer ${state.token}`;
    const response = await fetch(path, { ...options, headers });
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    if (!response.ok) {
      const error = body && body.error ? body.error : { code: 'http', message: response.statusText };
      throw new ApiError(response.status, error.code, error.message);
    }
    return body;
  }

  // ---- watchlist ------------------------------------------------------------------------------
  function rowFor(symbol) {
    let row = state.rows.get(symbol);
    if (!row) {
      row = { symbol, last: null, windows: {}, quote: null, el: null, cells: null, shown: null };
      state.rows.set(symbol, row);
      state.orderDirty = true;
    }
    return row;
  }

  function windowOf(row) {
    return row.windows[state.window] || null;
  }

  const COLUMNS = ['symbol', 'last', 'change', 'change_pct', 'volume', 'vwap', 'spread', 'count'];

  function valueOf(row, key) {
    const w = windowOf(row);
    switch (key) {
      case 'symbol': return row.symbol;
      case 'last': return row.last;
      case 'change': return w ? w.change : null;
      case 'change_pct': return w ? w.change_pct : null;
      case 'volume': return w ? w.volume : null;
      case 'vwap': return w ? w.vwap : null;
      case 'spread': return row.quote ? row.quote.spread : null;
      case 'count': return w ? w.count : null;
      default: return null;
    }
  }

  // Rows off screen are not touched while they stay off screen: they are marked stale and
  // filled when they scroll into view, so a render costs what is visible, not the whole list.
  const onScreen = new IntersectionObserver((entries) => {
    for (const entry of entries) {
      const row = state.rows.get(entry.target.dataset.symbol);
      if (!row) continue;
      row.visible = entry.isIntersecting;
      if (row.visible && row.stale) fillRow(row, false);
    }
  });

  function buildRow(row) {
    const tr = document.createElement('tr');
    tr.dataset.symbol = row.symbol;
    const cells = {};
    for (const key of COLUMNS) {
      const td = document.createElement('td');
      if (key === 'symbol') {
        const a = document.createElement('a');
        a.href = `#/symbols/${encodeURIComponent(row.symbol)}`;
        a.textContent = row.symbol;
        td.appendChild(a);
      } else {
        td.className = 'num';
      }
      tr.appendChild(td);
      cells[key] = { td, text: null, cls: null };
    }
    row.el = tr;
    row.cells = cells;
    row.visible = false;
    onScreen.observe(tr);
  }

  function setCell(cell, text, cls) {
    if (cell.text !== text) {
      cell.td.textContent = text;
      cell.text = text;
    }
    if (cls !== undefined && cell.cls !== cls) {
      cell.td.className = cls;
      cell.cls = cls;
    }
  }

  function fillRow(row, flash) {
    if (!row.el) buildRow(row);
    row.stale = false;
    const w = windowOf(row);
    const c = row.cells;
    const previous = row.shown;
    setCell(c.last, fmt.price(row.last));
    setCell(c.change, fmt.signed(w ? w.change : null), `num ${sign(w ? w.change : 0)}`);
    setCell(c.change_pct, fmt.pct(w ? w.change_pct : null), `num ${sign(w ? w.change_pct : 0)}`);
    setCell(c.volume, fmt.qty(w ? w.volume : null));
    setCell(c.vwap, fmt.price(w ? w.vwap : null));
    setCell(c.spread, row.quote ? fmt.price(row.quote.spread) : '—');
    setCell(c.count, fmt.int(w ? w.count : null));
    if (flash && previous !== null && row.last !== null && previous !== row.last) {
      const color = row.last > previous ? 'var(--flash-up)' : 'var(--flash-down)';
      row.el.animate([{ backgroundColor: color }, { backgroundColor: 'transparent' }], { duration: 700, easing: 'ease-out' });
    }
    row.shown = row.last;
  }

  function compare(a, b) {
    const { key, dir } = state.sort;
    const x = valueOf(a, key);
    const y = valueOf(b, key);
    const xNull = x === null || x === undefined || (typeof x === 'number' && !Number.isFinite(x));
    const yNull = y === null || y === undefined || (typeof y === 'number' && !Number.isFinite(y));
    if (xNull || yNull) return xNull === yNull ? a.symbol.localeCompare(b.symbol) : xNull ? 1 : -1;
    if (typeof x === 'string') return dir * x.localeCompare(y);
    return x === y ? a.symbol.localeCompare(b.symbol) : dir * (x < y ? -1 : 1);
  }

  function renderWatchlist() {
    const tbody = $('watchlist').tBodies[0];
    const sortKey = state.sort.key;
    for (const symbol of state.dirty) {
      const row = state.rows.get(symbol);
      if (!row) continue;
      if (row.visible || !row.el) fillRow(row, true);
      else row.stale = true;
      if (sortKey !== 'symbol') state.orderDirty = true;
    }
    state.dirty.clear();
    if (state.orderDirty) {
      const needle = state.filter;
      const visible = [];
      for (const row of state.rows.values()) {
        if (!needle || row.symbol.toLowerCase().includes(needle)) {
          if (!row.el) fillRow(row, false);
          visible.push(row);
        }
      }
      visible.sort(compare);
      const current = tbody.children;
      let same = current.length === visible.length;
      for (let i = 0; same && i < visible.length; i++) same = current[i] === visible[i].el;
      if (!same) tbody.replaceChildren(...visible.map((r) => r.el));
      $('count').textContent = `${visible.length} of ${state.rows.size} symbols`;
      $('watchlist-empty').hidden = state.rows.size > 0;
      state.orderDirty = false;
    }
    state.updates += 1;
    $('watchlist').dataset.updates = String(state.updates);
  }

  function setSort(key) {
    if (state.sort.key === key) state.sort.dir = -state.sort.dir;
    else state.sort = { key, dir: key === 'symbol' ? 1 : -1 };
    for (const th of $('watchlist').tHead.rows[0].cells) {
      th.setAttribute('aria-sort', th.dataset.key === key ? (state.sort.dir > 0 ? 'ascending' : 'descending') : 'none');
    }
    state.orderDirty = true;
    queueRender();
  }

  function queueRender() {
    if (state.renderQueued) return;
    state.renderQueued = true;
    setTimeout(() => {
      requestAnimationFrame(() => {
        state.renderQueued = false;
        render();
      });
    }, RENDER_EVERY_MS);
  }

  function render() {
    if (state.clock !== null) $('clock').textContent = fmt.time(state.clock);
    if (state.route.view === 'watchlist') renderWatchlist();
    else if (state.route.view === 'symbol') renderSymbolSide();
  }

  async function loadWindow() {
    const body = await api(`/v1/stats?window=${encodeURIComponent(state.window)}&limit=10000`);
    for (const ranked of body.symbols) {
      const row = rowFor(ranked.symbol);
      row.last = ranked.last_price;
      const { symbol, last_price, ...stats } = ranked;
      row.windows[state.window] = stats;
      state.dirty.add(ranked.symbol);
    }
    if (body.as_of_ms !== null && body.as_of_ms !== undefined) state.clock = Math.max(state.clock || 0, body.as_of_ms);
    state.orderDirty = true;
    queueRender();
  }

  // ---- the live stream --------------------------------------------------------------------------
  function setConnection(mode, text) {
    document.body.dataset.stream = mode;
    $('connection').textContent = text;
  }

  function onStats(event) {
    const stats = JSON.parse(event.data);
    const row = rowFor(stats.symbol);
    row.last = stats.last_price;
    row.windows = stats.windows;
    row.quote = stats.quote || row.quote;
    row.asOf = stats.as_of_ms;
    state.clock = Math.max(state.clock || 0, stats.as_of_ms);
    $('clock').dataset.ms = String(state.clock);
    state.dirty.add(stats.symbol);
    if (state.route.view === 'symbol' && state.route.symbol === stats.symbol) symbolView.onStats(row);
    queueRender();
  }

  function onAlert(event) {
    addAlert(JSON.parse(event.data), state.run, true);
  }

  function connect() {
    const query = state.lastEventId ? `?last_event_id=${encodeURIComponent(state.lastEventId)}` : '';
    const source = new EventSource(`/v1/stream${query}`);
    state.source = source;
    source.onopen = () => {
      setConnection('live', 'live');
      state.reconnectDelay = 1000;
      if (!state.everOpened) {
        // Subscribed first, read the log second: an alert fired in between comes twice
        // (and is shown once), none is missed.
        state.everOpened = true;
        loadRecentAlerts().catch(() => {});
      }
      refreshFeeds();
    };
    const remember = (event) => {
      if (event.lastEventId) {
        state.lastEventId = event.lastEventId;
        const run = event.lastEventId.split('-')[0];
        if (state.run !== null && run !== state.run) {
          state.run = run;
          onRestart();
        }
        state.run = run;
      }
    };
    source.onmessage = (event) => {
      // The opening event (retry and id only) is not dispatched; a first id arrives with data.
      remember(event);
    };
    source.addEventListener('stats', (event) => {
      remember(event);
      onStats(event);
    });
    source.addEventListener('alert', (event) => {
      remember(event);
      onAlert(event);
    });
    source.addEventListener('lagged', (event) => {
      remember(event);
      console.info(`tickstream: the stream skipped ${event.data} events; the next stats catch up`);
    });
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) {
        // The browser gave up (an error status): reconnect ourselves, resuming.
        setConnection('down', `disconnected — retrying in ${Math.round(state.reconnectDelay / 1000)} s`);
        source.close();
        const delay = state.reconnectDelay;
        state.reconnectDelay = Math.min(state.reconnectDelay * 2, 10000);
        setTimeout(connect, delay);
      } else {
        setConnection('down', 'reconnecting…');
      }
    };
  }

  function onRestart() {
    // A new run of the service: its alert ids start again, its state (and clock) is rebuilt.
    state.clock = null;
    api('/v1/info').then((info) => { state.info = info; }).catch(() => {});
    refreshRules();
    refreshFeeds();
    loadWindow().catch(() => {});
    if (state.route.view === 'symbol') symbolView.reload();
  }

  // ---- alerts -----------------------------------------------------------------------------------
  // An alert's identity: its id within the service's run (a restarted service numbers its
  // alerts from 1 again).
  function addAlert(alert, run, fresh) {
    const key = `${run}:${alert.id}`;
    if (state.alertKeys.has(key)) return;
    state.alertKeys.add(key);
    const list = $('alerts');
    const li = document.createElement('li');
    li.dataset.alertId = String(alert.id);
    li.dataset.rule = alert.rule_id;
    li.dataset.ts = String(alert.ts_ms);
    if (fresh) li.className = 'new';
    const time = document.createElement('time');
    time.dateTime = new Date(alert.ts_ms).toISOString();
    time.textContent = fmt.clock(alert.ts_ms);
    const sym = document.createElement('a');
    sym.className = 'sym';
    sym.href = `#/symbols/${encodeURIComponent(alert.symbol)}`;
    sym.textContent = alert.symbol;
    const message = document.createElement('span');
    message.textContent = alert.message;
    li.append(time, sym, message);
    // Newest (by event time) first, whichever way it arrived.
    let before = list.firstElementChild;
    while (before && Number(before.dataset.ts) > alert.ts_ms) before = before.nextElementSibling;
    list.insertBefore(li, before);
    while (list.children.length > MAX_ALERTS_SHOWN) list.lastElementChild.remove();
    list.dataset.count = String(Number(list.dataset.count) + 1);
  }

  async function loadRecentAlerts() {
    const body = await api('/v1/alerts?limit=100');
    // Oldest first, so the newest ends on top; the stream's newer ones come after.
    for (const alert of body.alerts) addAlert(alert, state.info.run, false);
  }

  async function refreshRules() {
    try {
      const body = await api('/v1/alerts/rules');
      const list = $('rules');
      list.replaceChildren();
      for (const rule of body.rules) {
        const li = document.createElement('li');
        const code = document.createElement('code');
        code.textContent = JSON.stringify(rule);
        const remove = document.createElement('button');
        remove.type = 'button';
        remove.textContent = 'Delete';
        remove.setAttribute('aria-label', `Delete rule ${rule.id}`);
        remove.addEventListener('click', () => deleteRule(rule.id));
        li.append(code, remove);
        list.appendChild(li);
      }
      if (!body.rules.length) {
        const li = document.createElement('li');
        li.className = 'muted';
        li.textContent = 'No rules.';
        list.appendChild(li);
      }
    } catch (error) {
      ruleMessage(`Cannot read the rules: ${error.message}`, true);
    }
  }

  function ruleMessage(text, isError) {
    const p = $('rule-message');
    p.textContent = text;
    p.className = `small ${isError ? 'error' : 'ok'}`;
  }

  // Whether an edit can be sent: without the token a service that needs one would only refuse.
  function canEdit() {
    if (state.info && state.info.rule_edits_need_token && !state.token) {
      ruleMessage('This service needs its API token for rule edits: enter it above.', true);
      return false;
    }
    return true;
  }

  function explain(error) {
    if (error.status === 401) return 'This service needs its API token for rule edits: enter it above.';
    return error.message;
  }

  async function addRule(event) {
    event.preventDefault();
    if (!canEdit()) return;
    let rule;
    try {
      rule = JSON.parse($('rule-json').value);
    } catch (error) {
      ruleMessage(`Not JSON: ${error.message}`, true);
      return;
    }
    try {
      const stored = await api('/v1/alerts/rules', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(rule),
      });
      ruleMessage(`Added rule ${stored.id}.`, false);
      refreshRules();
    } catch (error) {
      ruleMessage(explain(error), true);
    }
  }

  async function deleteRule(id) {
    if (!canEdit()) return;
    try {
      await api(`/v1/alerts/rules/${encodeURIComponent(id)}`, { method: 'DELETE' });
      ruleMessage(`Deleted rule ${id}.`, false);
      refreshRules();
    } catch (error) {
      ruleMessage(explain(error), true);
    }
  }

  // ---- feeds ------------------------------------------------------------------------------------
  async function refreshFeeds() {
    let body;
    try {
      body = await api('/v1/feeds');
    } catch (_) {
      return; // the stream's state says the service is away
    }
    const items = body.feeds.map((feed) => {
      const li = document.createElement('li');
      li.dataset.feed = feed.name;
      li.dataset.state = feed.state;
      const head = document.createElement('div');
      head.className = 'feed-head';
      const label = document.createElement('span');
      label.className = 'feed-name';
      label.textContent = feed.metrics_label || feed.name;
      label.title = `${feed.kind}: ${feed.source}`;
      const badge = document.createElement('span');
      badge.className = `state state-${feed.state}`;
      badge.textContent = feed.state.replace('_', ' ');
      if (feed.error) badge.title = feed.error;
      head.append(label, badge);
      const facts = [
        `${fmt.int(feed.trades)} trades`,
        `${fmt.int(feed.reconnects)} reconnects`,
        `lag ${feed.lag_ms === null || feed.lag_ms === undefined ? '—' : fmt.duration(feed.lag_ms)}`,
        `${fmt.int(feed.malformed)} parse errors`,
      ];
      if (feed.late || feed.duplicates) facts.push(`${fmt.int(feed.late)} late, ${fmt.int(feed.duplicates)} duplicates`);
      const detail = document.createElement('div');
      detail.className = 'muted small';
      detail.textContent = facts.join(' · ');
      li.append(head, detail);
      const p = feed.progress;
      if (p && Number.isFinite(p.fraction)) {
        const bar = document.createElement('progress');
        bar.max = 1;
        bar.value = p.fraction;
        bar.title = `${(p.fraction * 100).toFixed(1)} % read${p.passes ? `, pass ${p.passes + 1}` : ''}`;
        bar.setAttribute('aria-label', `${label.textContent}: ${bar.title}`);
        li.appendChild(bar);
      }
      if (feed.error) {
        const error = document.createElement('div');
        error.className = 'small down';
        error.textContent = feed.error;
        li.appendChild(error);
      }
      return li;
    });
    $('feeds').replaceChildren(...items);
  }

  // ---- the symbol view ----------------------------------------------------------------------------
  const symbolView = (() => {
    let chart = null;
    let series = null;
    let symbol = null;
    let interval = null;
    let lastBars = []; // the bars shown, oldest first
    let closedKey = null; // start of the last closed bar, and how many
    let refreshTimer = null;
    let refreshing = false;
    let generation = 0;

    const colors = { up: '#26a69a', down: '#ef5350', sma: '#f2b233', ema: '#c77dff', bb: '#4c8dff', rsi: '#f2b233', macd: '#4c8dff', signal: '#f2b233' };

    function ensureChart() {
      if (chart) return;
      const LC = window.LightweightCharts;
      chart = LC.createChart($('chart'), {
        autoSize: true,
        layout: { background: { type: 'solid', color: '#0f131a' }, textColor: '#d7dde8', panes: { separatorColor: '#273040' } },
        grid: { vertLines: { color: '#1c2330' }, horzLines: { color: '#1c2330' } },
        timeScale: { timeVisible: true, secondsVisible: true, rightOffset: 4 },
        rightPriceScale: { borderColor: '#273040' },
        crosshair: { mode: 0 },
      });
      const line = (color, width = 1, pane = 0) => chart.addSeries(LC.LineSeries, { color, lineWidth: width, priceLineVisible: false, lastValueVisible: false, crosshairMarkerVisible: false }, pane);
      series = {
        candles: chart.addSeries(LC.CandlestickSeries, { upColor: colors.up, downColor: colors.down, wickUpColor: colors.up, wickDownColor: colors.down, borderVisible: false }),
        volume: chart.addSeries(LC.HistogramSeries, { priceFormat: { type: 'volume' }, priceScaleId: 'volume', lastValueVisible: false, priceLineVisible: false }),
        sma: line(colors.sma, 2),
        ema: line(colors.ema, 2),
        bbUpper: line(colors.bb),
        bbMiddle: line(colors.bb),
        bbLower: line(colors.bb),
        rsi: line(colors.rsi, 2, 1),
        macd: line(colors.macd, 2, 1),
        signal: line(colors.signal, 1, 1),
        hist: chart.addSeries(LC.HistogramSeries, { priceLineVisible: false, lastValueVisible: false }, 1),
      };
      series.volume.priceScale().applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
      const panes = chart.panes();
      if (panes.length > 1) panes[1].setHeight(140);
    }

    const toTime = (ms) => Math.floor(ms / 1000);

    function barsToData(bars) {
      return {
        candles: bars.map((b) => ({ time: toTime(b.start_ms), open: b.open, high: b.high, low: b.low, close: b.close })),
        volume: bars.map((b) => ({ time: toTime(b.start_ms), value: b.volume, color: b.close >= b.open ? 'rgba(38,166,154,.45)' : 'rgba(239,83,80,.45)' })),
      };
    }

    function status(text) {
      $('chart-status').textContent = text;
    }

    async function loadBars() {
      const body = await api(`/v1/symbols/${encodeURIComponent(symbol)}/candles?interval=${encodeURIComponent(interval)}&limit=${CHART_BARS}`);
      return body.candles;
    }

    function closedOf(bars) {
      const closed = bars.filter((b) => b.closed);
      return { count: closed.length, last: closed.length ? closed[closed.length - 1].start_ms : null };
    }

    async function loadIndicators() {
      const base = `/v1/symbols/${encodeURIComponent(symbol)}/indicators`;
      const q = `interval=${encodeURIComponent(interval)}&series=${CHART_BARS}`;
      const wanted = [];
      const line = (points, pick) => points.filter((p) => p.value !== null && p.value !== undefined).map((p) => ({ time: toTime(p.start_ms), value: pick(p.value) }));
      const ask = async (name, params) => {
        const body = await api(`${base}/${name}?${q}${params}`);
        return body.series || [];
      };
      const show = (s, on) => s.applyOptions({ visible: on });
      const sma = $('ov-sma').checked;
      const ema = $('ov-ema').checked;
      const bb = $('ov-bb').checked;
      const pane = $('pane').value;
      if (sma) wanted.push(ask('sma', '&period=20').then((p) => series.sma.setData(line(p, (v) => v))));
      else series.sma.setData([]);
      if (ema) wanted.push(ask('ema', '&period=20').then((p) => series.ema.setData(line(p, (v) => v))));
      else series.ema.setData([]);
      if (bb) {
        wanted.push(ask('bbands', '&period=20&k=2').then((p) => {
          series.bbUpper.setData(line(p, (v) => v.upper));
          series.bbMiddle.setData(line(p, (v) => v.middle));
          series.bbLower.setData(line(p, (v) => v.lower));
        }));
      } else {
        for (const s of [series.bbUpper, series.bbMiddle, series.bbLower]) s.setData([]);
      }
      let points = 0;
      if (pane === 'rsi') {
        wanted.push(ask('rsi', '&period=14').then((p) => {
          const data = line(p, (v) => v);
          points = data.length;
          series.rsi.setData(data);
        }));
        for (const s of [series.macd, series.signal, series.hist]) s.setData([]);
      } else {
        wanted.push(ask('macd', '').then((p) => {
          const valid = p.filter((x) => x.value);
          points = valid.length;
          series.macd.setData(line(valid, (v) => v.macd));
          series.signal.setData(line(valid, (v) => v.signal));
          series.hist.setData(valid.map((x) => ({ time: toTime(x.start_ms), value: x.value.hist, color: x.value.hist >= 0 ? 'rgba(38,166,154,.6)' : 'rgba(239,83,80,.6)' })));
        }));
        series.rsi.setData([]);
      }
      show(series.rsi, pane === 'rsi');
      for (const s of [series.macd, series.signal, series.hist]) show(s, pane === 'macd');
      await Promise.all(wanted);
      $('chart').dataset.indicatorPoints = String(points);
      $('chart').dataset.pane = pane;
    }

    async function reload() {
      if (!symbol) return;
      const mine = ++generation;
      ensureChart();
      status('loading…');
      try {
        const bars = await loadBars();
        if (mine !== generation) return;
        lastBars = bars;
        const data = barsToData(bars);
        series.candles.setData(data.candles);
        series.volume.setData(data.volume);
        chart.timeScale().scrollToRealTime();
        const closed = closedOf(bars);
        closedKey = `${closed.count}:${closed.last}`;
        setBarData(bars, closed);
        await loadIndicators();
        if (mine !== generation) return;
        status(bars.length ? '' : 'no bars yet');
      } catch (error) {
        if (mine === generation) status(error.status === 404 ? `unknown symbol ${symbol}` : `cannot load: ${error.message}`);
      }
    }

    function setBarData(bars, closed) {
      const el = $('chart');
      el.dataset.bars = String(bars.length);
      el.dataset.closed = String(closed.count);
      el.dataset.lastClosed = closed.last === null ? '' : String(closed.last);
      el.dataset.interval = interval;
    }

    async function refresh() {
      if (refreshing || !symbol) return;
      refreshing = true;
      const mine = generation;
      try {
        const bars = await loadBars();
        if (mine !== generation) return;
        const lastTime = lastBars.length ? lastBars[lastBars.length - 1].start_ms : -Infinity;
        const data = barsToData(bars);
        for (let i = 0; i < bars.length; i++) {
          if (bars[i].start_ms >= lastTime) {
            series.candles.update(data.candles[i]);
            series.volume.update(data.volume[i]);
          }
        }
        lastBars = bars;
        const closed = closedOf(bars);
        setBarData(bars, closed);
        const key = `${closed.count}:${closed.last}`;
        if (key !== closedKey) {
          closedKey = key;
          await loadIndicators();
        }
      } catch (_) {
        // The stream's state shows an outage; the next stats event retries.
      } finally {
        refreshing = false;
      }
    }

    function onStats(row) {
      if (refreshTimer) return;
      refreshTimer = setTimeout(() => {
        refreshTimer = null;
        refresh();
      }, 1000);
      renderHeader(row);
    }

    function renderHeader(row) {
      $('symbol-last').textContent = fmt.price(row.last);
      const first = state.info && state.info.windows.length ? row.windows[state.info.windows[state.info.windows.length - 1]] : null;
      const change = $('symbol-change');
      if (first) {
        change.textContent = `${fmt.pct(first.change_pct)} over ${state.info.windows[state.info.windows.length - 1]}`;
        change.className = sign(first.change_pct);
      } else {
        change.textContent = '';
      }
    }

    function open(sym) {
      const changed = sym !== symbol;
      symbol = sym;
      $('symbol-title').textContent = sym;
      document.title = `${sym} · tickstream`;
      if (!interval) interval = $('interval').value;
      const row = state.rows.get(sym);
      if (row) renderHeader(row);
      renderSide();
      if (changed) {
        lastBars = [];
        reload();
      }
      fetchStats();
    }

    async function fetchStats() {
      try {
        const stats = await api(`/v1/symbols/${encodeURIComponent(symbol)}/stats`);
        const row = rowFor(stats.symbol);
        row.last = stats.last_price;
        row.windows = stats.windows;
        row.quote = stats.quote || null;
        renderHeader(row);
        renderSide();
      } catch (error) {
        if (error.status === 404) status(`unknown symbol ${symbol}`);
      }
    }

    function renderSide() {
      const row = state.rows.get(symbol);
      const tbody = $('symbol-stats').tBodies[0];
      if (!row) {
        tbody.replaceChildren();
        return;
      }
      const rows = Object.entries(row.windows).map(([label, w]) => {
        const tr = document.createElement('tr');
        const cells = [label, fmt.int(w.count), fmt.pct(w.change_pct), fmt.price(w.high), fmt.price(w.low), fmt.price(w.vwap), fmt.qty(w.volume), fmt.price(w.stddev)];
        cells.forEach((text, i) => {
          const td = document.createElement(i === 0 ? 'th' : 'td');
          if (i === 0) td.scope = 'row';
          else td.className = i === 2 ? `num ${sign(w.change_pct)}` : 'num';
          td.textContent = text;
          tr.appendChild(td);
        });
        return tr;
      });
      tbody.replaceChildren(...rows);
      const q = row.quote;
      $('symbol-quote').textContent = q
        ? `bid ${fmt.price(q.bid)} × ${fmt.qty(q.bid_size)} · ask ${fmt.price(q.ask)} × ${fmt.qty(q.ask_size)} · spread ${fmt.price(q.spread)} (${q.spread_bps.toFixed(2)} bps) · ${fmt.clock(q.ts_ms)}`
        : 'No quote for this symbol.';
    }

    return {
      open,
      reload,
      onStats,
      renderSide,
      setInterval(value) {
        interval = value;
        reload();
      },
      indicatorsChanged() {
        if (symbol && series) loadIndicators().catch((error) => status(`cannot load indicators: ${error.message}`));
      },
      close() {
        symbol = null;
        generation++;
      },
    };
  })();

  function renderSymbolSide() {
    symbolView.renderSide();
  }

  // ---- routing ----------------------------------------------------------------------------------
  function route() {
    const hash = decodeURIComponent(location.hash.replace(/^#/, ''));
    const match = hash.match(/^\/symbols\/(.+)$/);
    if (match) {
      state.route = { view: 'symbol', symbol: match[1] };
      $('watchlist-view').hidden = true;
      $('symbol-view').hidden = false;
      symbolView.open(match[1]);
    } else {
      state.route = { view: 'watchlist' };
      symbolView.close();
      document.title = 'tickstream';
      $('symbol-view').hidden = true;
      $('watchlist-view').hidden = false;
      state.orderDirty = true;
      for (const row of state.rows.values()) state.dirty.add(row.symbol);
      queueRender();
    }
  }

  // ---- start ------------------------------------------------------------------------------------
  function fillSelect(select, values, chosen) {
    select.replaceChildren(...values.map((v) => {
      const option = document.createElement('option');
      option.value = v;
      option.textContent = v;
      option.selected = v === chosen;
      return option;
    }));
  }

  async function start() {
    $('token').addEventListener('input', (e) => {
      state.token = e.target.value.trim() || null;
    });
    $('rule-form').addEventListener('submit', addRule);
    $('token-form').addEventListener('submit', (e) => e.preventDefault());
    $('filter').addEventListener('input', (e) => {
      state.filter = e.target.value.trim().toLowerCase();
      state.orderDirty = true;
      queueRender();
    });
    for (const th of $('watchlist').tHead.rows[0].cells) {
      th.querySelector('button').addEventListener('click', () => setSort(th.dataset.key));
    }
    $('window').addEventListener('change', (e) => {
      state.window = e.target.value;
      for (const row of state.rows.values()) state.dirty.add(row.symbol);
      loadWindow().catch(() => {});
    });
    $('interval').addEventListener('change', (e) => symbolView.setInterval(e.target.value));
    for (const id of ['ov-sma', 'ov-ema', 'ov-bb', 'pane']) $(id).addEventListener('change', () => symbolView.indicatorsChanged());
    document.addEventListener('keydown', (e) => {
      const typing = e.target instanceof HTMLInputElement || e.target instanceof HTMLTextAreaElement || e.target instanceof HTMLSelectElement;
      if (e.key === '/' && !typing) {
        e.preventDefault();
        if (state.route.view !== 'watchlist') location.hash = '#/';
        $('filter').focus();
      } else if (e.key === 'Escape' && state.route.view === 'symbol' && !typing) {
        location.hash = '#/';
      }
    });
    window.addEventListener('hashchange', route);

    state.info = await api('/v1/info');
    state.run = String(state.info.run);
    $('version').textContent = state.info.version;
    const windows = state.info.windows;
    state.window = windows.includes('1m') ? '1m' : windows[windows.length - 1];
    fillSelect($('window'), windows, state.window);
    const intervals = state.info.intervals;
    fillSelect($('interval'), intervals, intervals.includes('1m') ? '1m' : intervals[0]);

    connect();
    await loadWindow().catch(() => {});
    refreshRules();
    setInterval(refreshFeeds, FEEDS_EVERY_MS);
    route();
  }

  window.addEventListener('DOMContentLoaded', () => {
    start().catch((error) => {
      setConnection('down', `cannot start: ${error.message} — reload to retry`);
    });
  });
})();
