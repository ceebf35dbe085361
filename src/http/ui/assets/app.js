// skald control page: login, dashboard, call detail with supervision,
// agents, test calls and talking to an agent in the browser.
// Plain DOM: every text from the server goes through textContent, never
// innerHTML, so a caller's words or a YAML file cannot inject markup.
import { api, ApiError, EventStream, wsUrl } from './api.js';
import { AudioLink } from './audio.js';

const $ = (sel) => document.querySelector(sel);
const REFRESH_MS = 5000;
const SUPERVISE_LABELS = { listen: 'Listen', whisper: 'Whisper', barge: 'Barge in', takeover: 'Take over', leave: 'Leave' };
/** Modes in which the supervisor's microphone goes to the call. */
const MIC_MODES = new Set(['whisper', 'barge', 'takeover']);

const state = {
  loggedIn: false,
  calls: new Map(), // id -> call (API view, updated by events)
  queueOf: new Map(), // call id -> {queue, position}
  queuesApi: null, // answer of GET /api/v1/queues, or null when absent
  apps: [], // applications from GET /api/v1/agents
  agents: null, // last GET /api/v1/agents answer
  current: null, // the open call: {id, call, turns: Map, events: [], session, link, mode}
  talk: null, // the talk-in-browser AudioLink
  stream: null,
  timers: [],
};

/** Builds an element: el('td', {class: 'x'}, 'text', child…). */
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('data-') || k.startsWith('aria-') || ['href', 'id', 'role', 'title', 'type', 'datetime'].includes(k)) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function showError(where, err, prefix = '') {
  const node = typeof where === 'string' ? $(where) : where;
  const text = err instanceof ApiError ? err.describe() : (err && err.message) || String(err);
  node.textContent = prefix ? `${prefix} — ${text}` : text;
  node.className = node.className.replace(/\b(ok|error)\b/g, '').trim() + ' error';
  node.hidden = false;
}

function showOk(where, text) {
  const node = typeof where === 'string' ? $(where) : where;
  node.textContent = text;
  node.className = node.className.replace(/\b(ok|error)\b/g, '').trim() + ' ok';
  node.hidden = false;
}

/** Shows a request under way (and clears an earlier outcome's style). */
function pending(sel, text) {
  const node = $(sel);
  node.textContent = text;
  node.className = 'result';
}

function fmtDuration(ms) {
  if (ms === null || ms === undefined || ms < 0) return '–';
  const s = Math.floor(ms / 1000);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

function fmtTime(ms) {
  if (!ms) return '–';
  return new Date(ms).toLocaleTimeString();
}

function agentOf(app) {
  const a = state.apps.find((x) => x.name === app);
  return a && a.agent ? `${app} / ${a.agent}` : (app || '–');
}

function isLive(c) {
  return c.live !== false && c.state !== 'ended';
}

// ---------------------------------------------------------------- login

async function boot() {
  $('#login-form').addEventListener('submit', onLogin);
  $('#logout').addEventListener('click', onLogout);
  window.addEventListener('skald-unauthorized', () => {
    if (state.loggedIn) showLogin('Your session has ended; log in again.');
  });
  window.addEventListener('hashchange', route);
  wireCallView();
  wireTestView();
  try {
    await api('GET', '/api/v1/calls?limit=1');
    enterApp();
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) showLogin();
    else showLogin(`skald does not answer as expected: ${e.describe ? e.describe() : e}`);
  }
}

function showLogin(message) {
  leaveApp();
  for (const v of document.querySelectorAll('.view')) v.hidden = true;
  $('#nav').hidden = true;
  $('#session').hidden = true;
  $('#view-login').hidden = false;
  const err = $('#login-error');
  if (message) showError(err, message); else err.hidden = true;
  $('#login-token').focus();
}

async function onLogin(ev) {
  ev.preventDefault();
  const token = $('#login-token').value.trim();
  const button = ev.submitter || $('#login-form button');
  button.disabled = true;
  try {
    await api('POST', '/api/v1/login', { token });
    $('#login-token').value = '';
    $('#login-error').hidden = true;
    enterApp();
  } catch (e) {
    showError('#login-error', e, 'Login failed');
  } finally {
    button.disabled = false;
  }
}

async function onLogout() {
  try { await api('POST', '/api/v1/logout'); } catch { /* the session may be gone already */ }
  showLogin('Logged out.');
  $('#login-error').className = 'muted';
}

function enterApp() {
  state.loggedIn = true;
  $('#view-login').hidden = true;
  $('#nav').hidden = false;
  $('#session').hidden = false;
  state.stream = new EventStream({
    onEvent,
    onStatus: (text, ok) => {
      const b = $('#live-status');
      b.textContent = text;
      b.className = `badge ${ok ? 'ok' : 'warn'}`;
    },
    onResync: () => refreshCalls(),
  });
  state.stream.start();
  state.timers.push(setInterval(refreshCalls, REFRESH_MS));
  state.timers.push(setInterval(tick, 1000));
  loadAgents().catch(() => {});
  refreshCalls();
  route();
}

function leaveApp() {
  state.loggedIn = false;
  if (state.stream) state.stream.stop();
  state.stream = null;
  for (const t of state.timers) clearInterval(t);
  state.timers = [];
  closeSupervision();
  stopTalk();
}

// ---------------------------------------------------------------- routing

function route() {
  if (!state.loggedIn) return;
  const hash = location.hash || '#/';
  const m = hash.match(/^#\/calls\/([0-9a-fA-F-]{36})$/);
  const view = m ? 'call' : hash === '#/agents' ? 'agents' : hash === '#/test' ? 'test' : 'dashboard';
  if (!m || (state.current && state.current.id !== m[1])) closeSupervision();
  for (const v of document.querySelectorAll('.view')) v.hidden = v.id !== `view-${view}`;
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.view === view) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  $('#global-error').hidden = true;
  if (view === 'call') openCall(m[1]);
  else if (view === 'agents') showAgents();
  else if (view === 'test') fillAppSelects();
  else renderDashboard();
  const title = document.querySelector(`#view-${view} h2`);
  if (title) title.focus({ preventScroll: true });
}

// ---------------------------------------------------------------- dashboard

async function refreshCalls() {
  if (!state.loggedIn) return;
  try {
    const res = await api('GET', '/api/v1/calls?limit=100');
    const fresh = new Map();
    for (const c of res.calls || []) fresh.set(c.id, c);
    // Calls only the event stream has seen so far stay until the store has them.
    for (const [id, c] of state.calls) if (!fresh.has(id) && c.fromEvents && isLive(c)) fresh.set(id, c);
    state.calls = fresh;
    $('#global-error').hidden = true;
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 401)) showError('#global-error', e, 'Cannot load calls');
  }
  await refreshQueues();
  renderDashboard();
}

async function refreshQueues() {
  if (state.queuesApi === 'absent') return;
  try {
    state.queuesApi = await api('GET', '/api/v1/queues');
  } catch (e) {
    // No queues API in this skald: the panel shows queue events only.
    if (e instanceof ApiError && e.status === 404) state.queuesApi = 'absent';
  }
}

function renderDashboard() {
  const live = [...state.calls.values()].filter(isLive).sort((a, b) => (b.invited_at || 0) - (a.invited_at || 0));
  const recent = [...state.calls.values()].filter((c) => !isLive(c)).slice(0, 20);
  const tbody = $('#live-calls tbody');
  tbody.replaceChildren(...live.map(liveRow));
  $('#live-count').textContent = String(live.length);
  $('#live-empty').hidden = live.length > 0;
  $('#recent-calls tbody').replaceChildren(...recent.map(recentRow));
  renderQueues();
}

function liveRow(c) {
  const q = state.queueOf.get(c.id);
  const since = c.answered_at || c.invited_at;
  return el('tr', { 'data-call-id': c.id },
    el('td', {}, el('span', { class: `badge state-${c.live_state || c.state}`, text: c.live_state || c.state || '?' })),
    el('td', { text: c.from_uri || '–' }),
    el('td', { text: c.did || '–' }),
    el('td', { text: agentOf(c.app) }),
    el('td', { text: q ? `${q.queue} #${q.position ?? '?'}` : '–' }),
    el('td', { class: 'duration', 'data-since': since || '', text: since ? fmtDuration(Date.now() - since) : '–' }),
    el('td', { text: c.transport || c.sip_transport || '–' }),
    el('td', {}, el('a', { href: `#/calls/${c.id}`, class: 'button', 'aria-label': `Open call from ${c.from_uri || 'unknown'}`, text: 'Open' })));
}

function recentRow(c) {
  const dur = c.answered_at && c.ended_at ? c.ended_at - c.answered_at : null;
  return el('tr', { 'data-call-id': c.id },
    el('td', { text: fmtTime(c.invited_at) }),
    el('td', { text: c.direction || '–' }),
    el('td', { text: c.from_uri || '–' }),
    el('td', { text: c.did || c.to_uri || '–' }),
    el('td', { text: c.app || '–' }),
    el('td', { text: fmtDuration(dur) }),
    el('td', { text: c.end_reason || c.state || '–' }),
    el('td', {}, el('a', { href: `#/calls/${c.id}`, class: 'button', text: 'Open' })));
}

function renderQueues() {
  const panel = $('#queues-panel');
  const byQueue = new Map();
  const apiQueues = state.queuesApi && state.queuesApi !== 'absent'
    ? (Array.isArray(state.queuesApi) ? state.queuesApi : state.queuesApi.queues || []) : [];
  for (const q of apiQueues) {
    const name = q.name || q.queue || q.id;
    if (!name) continue;
    const waiting = q.waiting ?? q.length ?? q.size ?? (Array.isArray(q.calls) ? q.calls.length : undefined);
    byQueue.set(name, { waiting, calls: [] });
  }
  for (const [id, { queue, position }] of state.queueOf) {
    const entry = byQueue.get(queue) || { waiting: undefined, calls: [] };
    entry.calls.push({ id, position });
    byQueue.set(queue, entry);
  }
  panel.hidden = byQueue.size === 0 && state.queuesApi === 'absent';
  if (panel.hidden) return;
  const items = [...byQueue.entries()].sort().map(([name, q]) => {
    const waiting = q.waiting ?? q.calls.length;
    const calls = q.calls.sort((a, b) => (a.position ?? 0) - (b.position ?? 0)).map((c) =>
      el('li', {}, el('a', { href: `#/calls/${c.id}`, text: `#${c.position ?? '?'} ${(state.calls.get(c.id) || {}).from_uri || c.id.slice(0, 8)}` })));
    return el('li', { 'data-queue': name }, el('strong', { text: name }), ` — ${waiting} waiting`, calls.length ? el('ol', {}, ...calls) : null);
  });
  $('#queues').replaceChildren(...(items.length ? items : [el('li', { class: 'muted', text: 'No queues.' })]));
}

function tick() {
  for (const td of document.querySelectorAll('td.duration[data-since]')) {
    const since = Number(td.dataset.since);
    if (since) td.textContent = fmtDuration(Date.now() - since);
  }
  if (state.current && state.current.call) renderFacts();
}

// ---------------------------------------------------------------- events

function onEvent(ev) {
  const id = ev.call_id;
  const d = ev.data || {};
  if (ev.kind === 'call.state' && id) {
    const c = state.calls.get(id) || { id, invited_at: ev.at, fromEvents: true, direction: d.direction };
    c.state = d.state;
    c.live_state = d.state === 'ended' ? null : d.state;
    c.live = d.state !== 'ended';
    for (const [k, f] of [['did', 'did'], ['from', 'from_uri'], ['app', 'app'], ['transport', 'transport'], ['end_reason', 'end_reason']]) {
      if (d[k] !== undefined && d[k] !== null) c[f] = d[k];
    }
    if (d.state === 'answered' && !c.answered_at) c.answered_at = ev.at;
    if (d.state === 'ended') {
      c.ended_at = c.ended_at || ev.at;
      state.queueOf.delete(id);
    }
    state.calls.set(id, c);
  } else if (ev.kind === 'queue.joined' || ev.kind === 'queue.position') {
    if (id && d.queue) state.queueOf.set(id, { queue: d.queue, position: d.position });
  } else if (ev.kind === 'queue.left') {
    if (id) state.queueOf.delete(id);
  }
  if (!$('#view-dashboard').hidden) renderDashboard();
  const cur = state.current;
  if (cur && id === cur.id) onCallEvent(ev);
}

// ---------------------------------------------------------------- one call

function wireCallView() {
  for (const b of document.querySelectorAll('#supervise-card [data-action]')) {
    b.addEventListener('click', () => supervise(b.dataset.action));
  }
  $('#sup-hangup').addEventListener('click', hangup);
  $('#transfer-form').addEventListener('submit', transfer);
  $('#recording').addEventListener('error', () => {
    $('#recording').hidden = true;
    $('#recording-note').textContent = 'The recording cannot be loaded (it may have been removed).';
  });
}

async function openCall(id) {
  if (state.current && state.current.id === id && state.current.call) { renderCall(); return; }
  state.current = { id, call: null, turns: new Map(), events: [], session: null, link: null, mode: null };
  $('#call-title').textContent = `Call ${id.slice(0, 8)}…`;
  for (const s of ['#transcript', '#events', '#latency tbody', '#call-facts']) $(s).replaceChildren();
  pending('#sup-result', '');
  $('#sup-mode').textContent = '';
  $('#context').textContent = 'none received';
  await loadCall(id);
}

async function loadCall(id) {
  try {
    const call = await api('GET', `/api/v1/calls/${id}`);
    const cur = state.current;
    if (!cur || cur.id !== id) return;
    cur.call = call;
    for (const t of call.turns || []) cur.turns.set(t.seq, t);
    // Stored events first; live ones received meanwhile are kept after them.
    const live = cur.events.filter((e) => e.live);
    cur.events = (call.events || []).concat(live);
    renderCall();
  } catch (e) {
    showError('#global-error', e, 'Cannot load the call');
  }
}

function onCallEvent(ev) {
  const cur = state.current;
  cur.events.push({ kind: ev.kind, at: ev.at, data: ev.data, live: true });
  if (ev.kind === 'transcript.final' && ev.data) cur.turns.set(ev.data.seq, ev.data);
  if (ev.kind === 'call.state' && cur.call) {
    cur.call.state = ev.data.state;
    cur.call.live = ev.data.state !== 'ended';
    cur.call.live_state = cur.call.live ? ev.data.state : null;
    if (ev.data.state === 'answered' && !cur.call.answered_at) cur.call.answered_at = ev.at;
    if (ev.data.state === 'ended') {
      cur.call.ended_at = cur.call.ended_at || ev.at;
      closeSupervision('The call has ended.');
      // The record now has its recording and final numbers.
      setTimeout(() => { if (state.current === cur) { cur.call = null; loadCall(cur.id); } }, 500);
    }
  }
  renderCall();
}

function renderCall() {
  const cur = state.current;
  if (!cur) return;
  renderFacts();
  renderTranscript();
  renderLatency();
  renderContext();
  renderEvents();
  renderRecording();
}

function renderFacts() {
  const c = state.current.call;
  if (!c) return;
  $('#call-title').textContent = `Call from ${c.from_uri || 'unknown'}`;
  const since = c.answered_at || c.invited_at;
  const end = c.ended_at || (isLive(c) ? Date.now() : null);
  const facts = [
    ['State', c.live_state || c.state],
    ['Direction', c.direction],
    ['From', c.from_uri],
    ['To', c.to_uri],
    ['DID', c.did],
    ['App / agent', agentOf(c.app)],
    ['Queue', (state.queueOf.get(c.id) || {}).queue],
    ['Duration', since && end ? fmtDuration(end - since) : null],
    ['Transport', c.transport || c.sip_transport],
    ['Codec', c.codec],
    ['End', c.end_reason],
    ['Id', c.id],
  ];
  $('#call-facts').replaceChildren(...facts.filter(([, v]) => v).flatMap(([k, v]) => [el('dt', { text: k }), el('dd', { text: v })]));
  const live = isLive(c);
  for (const b of document.querySelectorAll('#supervise-card button')) b.disabled = !live;
}

function renderTranscript() {
  const turns = [...state.current.turns.values()].sort((a, b) => a.seq - b.seq);
  $('#transcript').replaceChildren(...turns.map((t) =>
    el('li', { class: `turn ${t.speaker}`, 'data-speaker': t.speaker },
      el('span', { class: 'speaker', text: t.speaker }),
      el('span', { class: 'text', text: t.text }),
      t.interrupted ? el('span', { class: 'muted', text: ' (interrupted)' }) : null)));
  $('#transcript-empty').hidden = turns.length > 0;
}

function renderLatency() {
  const rows = [...state.current.turns.values()].filter((t) => t.latency && Object.values(t.latency).some((x) => x !== null && x !== undefined)).sort((a, b) => a.seq - b.seq);
  const v = (x) => (x === null || x === undefined ? '–' : String(x));
  $('#latency tbody').replaceChildren(...rows.map((t) =>
    el('tr', {}, el('td', { text: `#${t.seq}` }), el('td', { text: v(t.latency.stt_ms) }), el('td', { text: v(t.latency.agent_ms) }),
      el('td', { text: v(t.latency.tts_ms) }), el('td', { text: v(t.latency.first_packet_ms) }))));
}

function renderContext() {
  const ctx = state.current.events.filter((e) => e.kind === 'context.received').pop();
  $('#context').textContent = ctx ? JSON.stringify(ctx.data, null, 2) : 'none received';
}

function renderEvents() {
  $('#events').replaceChildren(...state.current.events.map((e) =>
    el('li', { 'data-kind': e.kind },
      el('time', { text: fmtTime(e.at) }), ' ',
      el('strong', { text: e.kind }), ' ',
      el('code', { text: JSON.stringify(e.data) }))));
}

function renderRecording() {
  const c = state.current.call;
  const audio = $('#recording');
  const note = $('#recording-note');
  if (!c) return;
  const src = `/api/v1/calls/${c.id}/recording`;
  if (c.recording_path && !isLive(c)) {
    if (audio.getAttribute('src') !== src) audio.setAttribute('src', src);
    audio.hidden = false;
    note.textContent = '';
  } else {
    audio.removeAttribute('src');
    audio.hidden = true;
    note.textContent = c.recording_path ? 'Being recorded; playable when the call ends.' : 'No recording.';
  }
}

// ---------------------------------------------------------------- supervision

async function supervise(action) {
  const cur = state.current;
  if (!cur) return;
  const label = SUPERVISE_LABELS[action] || action;
  const body = { action };
  const text = $('#sup-text').value.trim();
  if (action === 'whisper' && text) body.text = text;
  if (cur.session) body.session = cur.session;
  pending('#sup-result', `${label}…`);
  try {
    const res = await api('POST', `/api/v1/calls/${cur.id}/supervise`, body);
    if (state.current !== cur) return;
    cur.session = res && res.session;
    cur.mode = (res && res.mode) || action;
    showOk('#sup-result', `${label}: ok — mode ${cur.mode}${cur.session ? ` (session ${cur.session})` : ''}`);
    if (action === 'leave' || cur.mode === 'leave' || cur.mode === 'left') {
      closeSupervision('You left the call.');
      return;
    }
    await connectSupervisionAudio(cur, res && res.audio);
  } catch (e) {
    showError('#sup-result', e, `${label} failed`);
  }
}

async function connectSupervisionAudio(cur, audioPath) {
  if (audioPath && (!cur.link || cur.link.path !== audioPath)) {
    if (cur.link) cur.link.close();
    const link = new AudioLink(wsUrl(audioPath), {
      onText: (msg) => {
        if (msg.type === 'mode') {
          cur.mode = msg.mode || cur.mode;
          $('#sup-mode').textContent = `Mode: ${cur.mode}`;
          link.setMic(MIC_MODES.has(cur.mode)).catch((e) => showError('#sup-mode', e, 'Microphone'));
        } else if (msg.type === 'ended') {
          closeSupervision('The call has ended.');
        }
      },
      onClose: () => { if (cur.link === link) { cur.link = null; $('#sup-mode').textContent = 'Audio disconnected.'; } },
    });
    link.path = audioPath;
    cur.link = link;
    link.open();
  }
  $('#sup-mode').textContent = `Mode: ${cur.mode}${cur.link ? ' — audio connected' : ''}`;
  if (cur.link) {
    try {
      await cur.link.setMic(MIC_MODES.has(cur.mode));
    } catch (e) {
      showError('#sup-mode', e, 'Microphone unavailable');
    }
  }
}

/** Ends this page's supervision of the open call (tells skald, best effort). */
function closeSupervision(message) {
  const cur = state.current;
  if (!cur) return;
  if (cur.link) cur.link.close();
  cur.link = null;
  if (cur.session && !message) {
    api('POST', `/api/v1/calls/${cur.id}/supervise`, { action: 'leave', session: cur.session }).catch(() => {});
  }
  cur.session = null;
  cur.mode = null;
  if (message) $('#sup-mode').textContent = message;
}

async function hangup() {
  const cur = state.current;
  if (!cur) return;
  pending('#sup-result', 'Hanging up…');
  try {
    await api('POST', `/api/v1/calls/${cur.id}/hangup`);
    showOk('#sup-result', 'Hang up: the call is ending.');
  } catch (e) {
    showError('#sup-result', e, 'Hang up failed');
  }
}

async function transfer(ev) {
  ev.preventDefault();
  const cur = state.current;
  if (!cur) return;
  const target = $('#xfer-target').value.trim();
  const mode = $('#xfer-mode').value;
  pending('#sup-result', 'Transferring…');
  try {
    const res = await api('POST', `/api/v1/calls/${cur.id}/transfer`, { target, mode });
    showOk('#sup-result', `Transfer (${mode}) to ${target}: ${res && res.status ? res.status : 'started'}`);
  } catch (e) {
    showError('#sup-result', e, 'Transfer failed');
  }
}

// ---------------------------------------------------------------- agents

async function loadAgents() {
  const res = await api('GET', '/api/v1/agents');
  state.agents = res;
  state.apps = res.applications || [];
  fillAppSelects();
  return res;
}

async function showAgents() {
  let res;
  try {
    res = await loadAgents();
  } catch (e) {
    showError('#global-error', e, 'Cannot load the agents');
    return;
  }
  $('#agents-dir').textContent = `Directory: ${res.agents_dir}`;
  $('#agents-errors').replaceChildren(...(res.errors || []).map((e) => el('li', { class: 'error', text: e.text })));
  $('#apps tbody').replaceChildren(...state.apps.map((a) =>
    el('tr', {}, el('td', { text: a.name }), el('td', { text: a.type }), el('td', { text: a.agent || '–' }),
      el('td', { text: [...a.dids, ...(a.default ? ['(default)'] : [])].join(', ') || '–' }))));
  $('#agents').replaceChildren(...(res.agents || []).map((a) => {
    const id = `agent-${(a.name || a.file).replace(/[^A-Za-z0-9_-]/g, '_')}`;
    return el('section', { class: `card agent ${a.valid ? 'valid' : 'invalid'}`, 'aria-labelledby': id, 'data-agent': a.name || '' },
      el('h3', { id }, a.name || '(no name)', ' ', el('span', { class: `badge ${a.valid ? 'ok' : 'bad'}`, text: a.valid ? 'valid' : 'invalid' }),
        ' ', el('span', { class: 'badge', text: a.kind })),
      el('p', { class: 'muted', text: a.file }),
      a.applications.length ? el('p', { text: `Used by ${a.applications.join(', ')}${a.dids.length ? ` — DIDs ${a.dids.join(', ')}` : ''}` }) : null,
      a.errors.length ? el('ul', { class: 'errors' }, ...a.errors.map((e) => el('li', { class: 'error', text: e.text }))) : null,
      el('details', {}, el('summary', { text: 'YAML' }), el('pre', { class: 'code yaml', text: a.yaml })));
  }));
}

function fillAppSelects() {
  for (const sel of [$('#tc-app'), $('#talk-app')]) {
    const keep = sel.value;
    const apps = sel.id === 'talk-app' ? state.apps.filter((a) => a.type === 'voice-agent') : state.apps;
    sel.replaceChildren(...apps.map((a) => el('option', { value: a.name, text: a.agent ? `${a.name} (${a.agent})` : `${a.name} (${a.type})` })));
    if (keep && apps.some((a) => a.name === keep)) sel.value = keep;
  }
}

// ---------------------------------------------------------------- test call and talk

function wireTestView() {
  $('#test-call-form').addEventListener('submit', startTestCall);
  $('#talk-start').addEventListener('click', startTalk);
  $('#talk-stop').addEventListener('click', () => { stopTalk(); pending('#talk-result', 'Stopped.'); });
}

async function startTestCall(ev) {
  ev.preventDefault();
  const body = { to: $('#tc-to').value.trim(), app: $('#tc-app').value };
  const trunk = $('#tc-trunk').value.trim();
  const from = $('#tc-from').value.trim();
  if (trunk) body.trunk = trunk;
  if (from) body.from = from;
  const result = $('#tc-result');
  pending('#tc-result', 'Calling…');
  try {
    const res = await api('POST', '/api/v1/calls', body);
    result.replaceChildren('Call placed: ', el('a', { href: `#/calls/${res.id}`, 'data-call-id': res.id, text: res.id }));
    result.className = 'result ok';
    refreshCalls();
  } catch (e) {
    showError(result, e, 'Could not start the call');
  }
}

async function startTalk() {
  const app = $('#talk-app').value;
  const result = $('#talk-result');
  if (!app) { showError(result, 'Choose an application first.'); return; }
  stopTalk();
  const path = `/api/v1/talk?app=${encodeURIComponent(app)}`;
  let opened = false;
  $('#talk-transcript').replaceChildren();
  pending('#talk-result', 'Connecting…');
  const link = new AudioLink(wsUrl(path), {
    onOpen: async () => {
      opened = true;
      $('#talk-start').disabled = true;
      $('#talk-stop').disabled = false;
      try {
        await link.setMic(true);
        showOk(result, `Connected to ${app} — speak now.`);
      } catch (e) {
        showError(result, e, 'Microphone unavailable');
      }
    },
    onText: (msg) => {
      if (msg.type === 'transcript') {
        $('#talk-transcript').append(el('li', { class: `turn ${msg.speaker}` }, el('span', { class: 'speaker', text: msg.speaker }), el('span', { class: 'text', text: msg.text })));
      } else if (msg.type === 'clear') {
        link.player.clear(); // barge-in: the agent stops talking now
      } else if (msg.type === 'error' && msg.message) {
        showError(result, msg.message);
      }
    },
    onClose: async () => {
      stopTalk();
      if (opened) { result.textContent = 'The conversation has ended.'; result.className = 'result'; return; }
      // The upgrade was refused: ask the same URL over plain HTTP for its reason.
      try {
        await api('GET', path);
        showError(result, 'the server refused the audio WebSocket');
      } catch (e) {
        showError(result, e, 'Talk in the browser is not available');
      }
    },
  });
  state.talk = link;
  link.open();
}

function stopTalk() {
  if (state.talk) state.talk.close();
  state.talk = null;
  $('#talk-start').disabled = false;
  $('#talk-stop').disabled = true;
}

boot();
