// The Interlock dashboard: draws each page from the JSON API (/api/v1/)
// and follows a workflow's Watch stream (Server-Sent Events).
//
// Invariant: every value from the server reaches the page as a text node
// or an attribute set through the DOM (el() below); no HTML is ever built
// from data, so names, arguments, errors and labels always show as text.
'use strict';

(() => {
  const meta = (name) => document.querySelector(`meta[name="${name}"]`).content;
  const CSRF = meta('interlock-csrf');
  const AUTH_ON = meta('interlock-auth') === 'on';
  const FINAL = new Set(['StatusFailed', 'StatusCompleted', 'StatusCancelled', 'StatusStopped', 'StatusSkipped']);
  const STATUSES = ['StatusNotStarted', 'StatusAwaitingApproval', 'StatusRunning', 'StatusPaused',
    'StatusCompleted', 'StatusFailed', 'StatusCancelled', 'StatusStopped', 'StatusInterrupted', 'StatusSkipped'];
  const enc = encodeURIComponent;

  // ---- DOM ---------------------------------------------------------------
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else if (k === 'class') e.className = v;
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    return add(e, kids);
  }
  // Appends kids (nested arrays flattened; null, undefined and false
  // skipped); strings become text nodes.
  function add(node, ...kids) {
    for (const k of kids.flat(Infinity)) {
      if (k === null || k === undefined || k === false) continue;
      node.append(k instanceof Node ? k : document.createTextNode(String(k)));
    }
    return node;
  }
  const $ = (id) => document.getElementById(id);
  const clear = (node) => { while (node.firstChild) node.firstChild.remove(); return node; };
  const short = (s) => (s || '').replace(/^Status/, '').replace(/^EsMode/, '');
  const badge = (status) => el('span', { class: `badge s-${short(status).toLowerCase()}`, 'data-status': short(status) }, short(status) || '-');
  const when = (t) => (t ? String(t).replace('T', ' ').replace(/\.\d+/, '').replace(/(\+00:00|Z)$/, 'Z') : '');
  const table = (head, rows) => el('table', {},
    el('thead', {}, el('tr', {}, head.map((h) => el('th', {}, h)))),
    el('tbody', {}, rows));
  const kv = (obj) => Object.entries(obj || {}).map(([k, v]) => el('span', { class: 'kv' }, `${k}=${v}`));

  function flash(message, kind) {
    const f = $('flash');
    add(clear(f), el('span', {}, message), el('button', { class: 'close', onclick: () => { f.hidden = true; } }, '×'));
    f.className = kind || 'error';
    f.hidden = false;
  }
  const fail = (e) => flash(e.code ? `${e.code}: ${e.message}` : String(e.message || e));

  // ---- API ---------------------------------------------------------------
  class ApiError extends Error {
    constructor(code, message, status) { super(message); this.code = code; this.status = status; }
  }
  function toSignIn() {
    location.assign(`/ui/signin?next=${enc(location.pathname + location.search)}`);
  }
  async function api(method, path, body) {
    const opts = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
    if (method !== 'GET') {
      opts.headers['Content-Type'] = 'application/json';
      opts.headers['X-CSRF-Token'] = CSRF;
      opts.body = JSON.stringify(body || {});
    }
    const r = await fetch(path, opts);
    const text = await r.text();
    let v = null;
    try { v = text ? JSON.parse(text) : null; } catch (_) { v = null; }
    if (r.status === 401 && AUTH_ON && !path.startsWith('/ui/signin')) toSignIn();
    if (!r.ok) throw new ApiError((v && v.code) || String(r.status), (v && v.message) || text, r.status);
    return v;
  }

  // ---- Modal confirmation ------------------------------------------------
  // Resolves to the reason typed, or null when dismissed.
  function confirmDialog({ title, body, confirm, danger, reasonLabel, reasonRequired }) {
    return new Promise((resolve) => {
      const m = $('modal');
      const input = reasonLabel ? el('input', { id: 'modal-reason', type: 'text', autocomplete: 'off' }) : null;
      const err = el('p', { class: 'modal-error', hidden: true });
      const done = (v) => { m.hidden = true; clear(m); resolve(v); };
      const ok = () => {
        const reason = input ? input.value.trim() : '';
        if (reasonRequired && !reason) { err.textContent = 'Say why: the reason is recorded.'; err.hidden = false; return; }
        done(reason);
      };
      add(clear(m), el('div', { class: 'dialog', role: 'dialog', 'aria-modal': 'true' },
        el('h2', {}, title),
        el('p', {}, body),
        input ? el('label', {}, reasonLabel, input) : null,
        err,
        el('div', { class: 'buttons' },
          el('button', { id: 'modal-confirm', class: danger ? 'danger' : 'primary', onclick: ok }, confirm),
          el('button', { id: 'modal-cancel', onclick: () => done(null) }, 'Back'))));
      m.hidden = false;
      if (input) {
        input.addEventListener('keydown', (e) => { if (e.key === 'Enter') ok(); if (e.key === 'Escape') done(null); });
        input.focus();
      }
    });
  }

  // ---- Frame: navigation, identity, STOP ---------------------------------
  let me = { identity: '', grants: [] };
  const may = (g, grants) => {
    const have = grants || me.grants;
    return have.includes(g) || have.includes('admin');
  };

  async function stopEverything() {
    const reason = await confirmDialog({
      title: 'Emergency stop: every workflow',
      body: 'Jobs in flight are cancelled and every running workflow ends Stopped. Submit and Exec are refused until someone sets Go on the E-stop page.',
      confirm: 'STOP everything',
      danger: true,
      reasonLabel: 'Reason (recorded in the audit log)',
      reasonRequired: true,
    });
    if (reason === null) return;
    try {
      await api('POST', '/api/v1/estop', { name: '*', mode: 'EsModeStop', reason });
      flash(`Emergency stop set for every workflow: ${reason}`, 'notice');
      route();
    } catch (e) { fail(e); }
  }

  function frame() {
    const links = [['Workflows', '/ui/'], ['E-stop', '/ui/estop'], ['Buckets', '/ui/buckets'],
      ['Limits', '/ui/limits'], ['Policies', '/ui/policies'], ['Jobs', '/ui/jobs'], ['Audit', '/ui/audit']];
    const top = clear($('top'));
    add(top, 
      el('a', { class: 'brand', href: '/ui/' }, 'Interlock'),
      el('nav', {}, links.map(([t, h]) => el('a', { href: h }, t))),
      el('span', { class: 'who', id: 'who' }, me.identity),
      may('estop') ? el('button', { id: 'stop-all', class: 'danger stop', onclick: stopEverything }, 'STOP') : null,
      AUTH_ON ? el('button', {
        id: 'signout',
        onclick: async () => { try { await api('POST', '/ui/signout'); } finally { location.assign('/ui/signin'); } },
      }, 'Sign out') : null);
  }

  // ---- Pages ---------------------------------------------------------------
  const pages = {};

  pages.workflows = async (main) => {
    const q = new URLSearchParams(location.search);
    const form = el('form', { class: 'filters', id: 'filters' },
      el('label', {}, 'Name ', el('input', { name: 'name', value: q.get('name') || '' })),
      el('label', {}, 'Status ', el('select', { name: 'status' },
        el('option', { value: '' }, 'any'),
        STATUSES.map((s) => el('option', { value: s, selected: q.get('status') === s }, short(s))))),
      el('label', {}, 'Label ', el('input', { name: 'label', placeholder: 'key=value', value: q.get('label') || '' })),
      el('label', {}, 'Created from ', el('input', { name: 'created_from', placeholder: '2026-12-01T00:00:00Z', value: q.get('created_from') || '' })),
      el('label', {}, 'to ', el('input', { name: 'created_to', value: q.get('created_to') || '' })),
      el('button', { type: 'submit' }, 'Filter'));
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const p = new URLSearchParams();
      for (const [k, v] of new FormData(form)) if (String(v).trim()) p.set(k, String(v).trim());
      history.pushState(null, '', `/ui/?${p}`);
      route();
    });
    const list = el('div', { id: 'list' });
    const pager = el('div', { class: 'pager' });
    add(main, el('h1', {}, 'Workflows'), form, list, pager);

    const tokens = [''];
    const load = async () => {
      const p = new URLSearchParams();
      for (const k of ['name', 'status', 'label', 'created_from', 'created_to']) if (q.get(k)) p.set(k, q.get(k));
      p.set('page_size', '50');
      const token = tokens[tokens.length - 1];
      if (token) p.set('page_token', token);
      const r = await api('GET', `/api/v1/workflows?${p}`);
      const rows = (r.workflows || []).map((w) => el('tr', { 'data-id': w.id },
        el('td', {}, el('a', { href: `/ui/workflows/${enc(w.id)}`, class: 'wf-link' }, w.id)),
        el('td', { class: 'name' }, w.name),
        el('td', {}, badge(w.status)),
        el('td', { class: 'reason' }, w.reason),
        el('td', {}, when(w.created)), el('td', {}, when(w.started)), el('td', {}, when(w.ended)),
        el('td', {}, kv(w.labels)),
        el('td', { class: 'desc' }, w.desc)));
      add(clear(list), rows.length
        ? table(['Id', 'Name', 'Status', 'Why', 'Created', 'Started', 'Ended', 'Labels', 'Description'], rows)
        : el('p', { class: 'empty' }, 'No workflow matches.'));
      add(clear(pager), 
        tokens.length > 1 ? el('button', { onclick: () => { tokens.pop(); load().catch(fail); } }, '← Newer') : null,
        r.nextPageToken
          ? el('button', { onclick: () => { tokens.push(r.nextPageToken); load().catch(fail); } }, 'Older →')
          : null);
    };
    await load();
    // Live: the newest page follows new work; older pages stay still.
    return every(2000, () => (tokens.length === 1 ? load() : Promise.resolve()));
  };

  pages.workflow = async (main, id) => {
    let st = await api('GET', `/api/v1/workflows/${enc(id)}`);
    const who = await api('GET', `/api/v1/whoami?workflow=${enc(st.name)}`);
    const grants = who.grants || [];
    const view = el('div', { id: 'workflow' });
    add(main, view);

    const act = async (action, body, note) => {
      try {
        const r = await api('POST', `/api/v1/workflows/${enc(id)}/${action}`, body);
        if (action === 'clone' && r && r.id) { location.assign(`/ui/workflows/${enc(r.id)}`); return; }
        flash(note || `${action}: done`, 'notice');
        await refresh();
      } catch (e) { fail(e); }
    };
    const withReason = (action, title, confirm) => async () => {
      const reason = await confirmDialog({ title, body: `Workflow ${st.name} (${id})`, confirm, danger: true, reasonLabel: 'Reason', reasonRequired: action === 'cancel' });
      if (reason !== null) act(action, action === 'cancel' ? { reason } : { comment: reason });
    };
    const actions = () => {
      const s = st.status;
      const b = [];
      const button = (name, label, handler, cls) => b.push(el('button', { class: `action ${cls || ''}`, 'data-action': name, onclick: handler }, label));
      if (s === 'StatusNotStarted' && may('exec', grants)) button('exec', 'Exec', () => act('exec'), 'primary');
      if (s === 'StatusAwaitingApproval') {
        button('approve', 'Approve', withReason('approve', 'Approve this workflow', 'Approve'));
        button('reject', 'Reject', withReason('reject', 'Reject this workflow', 'Reject'));
      }
      if (s === 'StatusRunning' && may('pause', grants)) button('pause', 'Pause', () => act('pause'));
      if (s === 'StatusPaused' && may('pause', grants)) button('resume', 'Resume', () => act('resume'));
      if (!FINAL.has(s) && may('cancel', grants)) button('cancel', 'Cancel', withReason('cancel', 'Cancel this workflow', 'Cancel workflow'), 'danger');
      if (may('submit', grants)) {
        button('clone', 'Clone', () => act('clone'));
        if (FINAL.has(s) && s !== 'StatusCompleted') button('clone-unfinished', 'Clone unfinished', () => act('clone', { only_unfinished: true }));
      }
      return el('div', { class: 'actions', id: 'actions' }, b);
    };
    const why = () => {
      const failed = [];
      (st.blocks || []).forEach((bl, i) => (bl.jobs || []).forEach((j, k) => {
        if (j.error && (j.status === 'StatusFailed' || j.status === 'StatusInterrupted' || j.fatal)) failed.push(`Block ${i + 1}, job ${k + 1} (${j.name}): ${j.error}`);
      }));
      if (!st.reason && !failed.length) return null;
      return el('div', { class: 'why', id: 'why' }, st.reason ? el('p', {}, st.reason) : null, failed.slice(0, 5).map((f) => el('p', {}, f)));
    };
    const job = (bi, j, ji) => el('tr', { class: 'job', 'data-block': bi, 'data-job': ji },
      el('td', {}, ji + 1),
      el('td', {}, el('b', {}, j.name), j.desc ? el('div', { class: 'desc' }, j.desc) : null),
      el('td', {}, badge(j.status), j.fatal ? el('span', { class: 'fatal' }, ' fatal') : null),
      el('td', {}, (j.attempts || []).length),
      el('td', {}, when(j.started)), el('td', {}, when(j.ended)),
      el('td', { class: 'error' }, j.error, j.waitingFor ? el('div', { class: 'waiting' }, j.waitingFor) : null),
      el('td', {}, kv(j.outputs)),
      el('td', {}, kv(j.args)),
      el('td', {}, j.status === 'StatusInterrupted' && may('exec', grants) ? [
        el('button', { class: 'action', 'data-action': 'retry', onclick: () => act('resolve', { block: bi, job: ji, action: 'RETRY' }) }, 'Retry'),
        el('button', { class: 'action', 'data-action': 'skip', onclick: () => act('resolve', { block: bi, job: ji, action: 'SKIP' }) }, 'Skip'),
      ] : null));
    const block = (b, i) => {
      const jobs = b.jobs || [];
      const done = jobs.filter((j) => FINAL.has(j.status)).length;
      return el('section', { class: 'block', 'data-block': i },
        el('h2', {}, `Block ${i + 1}`, b.desc ? `: ${b.desc}` : '', ' ', badge(b.status)),
        el('p', { class: 'progress-line' },
          el('progress', { max: jobs.length || 1, value: done }),
          ` ${done} of ${jobs.length} jobs ended · at most ${b.rateLimit || 1} at once · failures ${b.failures || 0} of ${b.maxFailures || 0} tolerated`,
          b.started ? ` · started ${when(b.started)}` : '', b.ended ? ` · ended ${when(b.ended)}` : ''),
        table(['#', 'Job', 'Status', 'Attempts', 'Started', 'Ended', 'Error', 'Outputs', 'Args', ''], jobs.map((j, k) => job(i, j, k))));
    };
    const render = () => {
      add(clear(view), 
        el('h1', {}, st.name, ' ', el('span', { id: 'wf-status' }, badge(st.status))),
        el('p', { class: 'muted' }, id, st.desc ? ` · ${st.desc}` : ''),
        why(),
        actions(),
        el('dl', { class: 'facts' },
          [['Created', when(st.created)], ['Started', when(st.started)], ['Ended', when(st.ended)],
            ['Submitted by', st.submittedBy], ['Executed by', st.executedBy],
            ['Run by', st.runBy], ['Policy version', st.policyVersion],
            ['Trace', st.traceId],
            ['Approvals', (st.approvalsNeeded) ? `${st.approvalsValid || 0} of ${st.approvalsNeeded}` : '']]
            .filter(([, v]) => v).map(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]),
          Object.keys(st.labels || {}).length ? [el('dt', {}, 'Labels'), el('dd', {}, kv(st.labels))] : null),
        (st.blocks || []).map(block));
    };
    const refresh = async () => { st = await api('GET', `/api/v1/workflows/${enc(id)}`); render(); };
    render();

    // Job logs, outside the view render() redraws: lines are only ever
    // appended (as text), in `seq` order, each once (a reconnecting stream
    // may send again what was shown), the newest MAX_LOG_LINES kept.
    const MAX_LOG_LINES = 5000;
    const lines = el('pre', { id: 'log-lines', class: 'log-lines', hidden: true });
    const none = el('p', { id: 'no-logs', class: 'muted' }, 'No job has logged anything yet.');
    add(main, el('section', { id: 'logs', class: 'block' }, el('h2', {}, 'Job logs'), none, lines));
    let lastSeq = 0;
    const lastN = new Map(); // attempt → the last line number shown
    const logLine = (l) => {
      const seq = Number(l.seq);
      if (!(seq > lastSeq)) return;
      lastSeq = seq;
      none.hidden = true;
      lines.hidden = false;
      const stick = lines.scrollTop + lines.clientHeight >= lines.scrollHeight - 4;
      const who = `${l.block + 1}.${l.job + 1} #${l.attempt}`;
      const n = Number(l.n);
      const gap = n - (lastN.get(who) || 0) - 1;
      lastN.set(who, n);
      // A gap in an attempt's numbering is lines the server dropped.
      if (gap > 0) add(lines, el('span', { class: 'log dropped' }, `${when(l.at)}  ${who} (${gap} line${gap === 1 ? '' : 's'} dropped)\n`));
      add(lines, el('span', { class: `log ${l.stream}`, 'data-seq': seq },
        `${when(l.at)}  ${who} ${l.stream}| ${l.text}\n`));
      while (lines.childNodes.length > MAX_LOG_LINES) lines.firstChild.remove();
      if (stick) lines.scrollTop = lines.scrollHeight;
    };
    const loadLogs = async () => {
      for (;;) {
        const r = await api('GET', `/api/v1/workflows/${enc(id)}/logs?after=${lastSeq}`);
        (r.lines || []).forEach(logLine);
        if (!r.more || !(r.lines || []).length) return;
      }
    };

    // Live: apply each transition at once, and re-read the full status
    // (attempts, outputs, times) shortly after a burst of them. A hidden
    // tab lets go of its stream (browsers allow few connections per
    // server over HTTP/1.1, and the STOP button must always get one).
    let source = null;
    let pending = null;
    const unfollow = () => { if (source) { source.close(); source = null; } };
    const follow = () => {
      if (source || FINAL.has(st.status) || document.hidden) return;
      source = new EventSource(`/api/v1/workflows/${enc(id)}/watch?logs=true&logs_after=${lastSeq}`);
      source.addEventListener('watch', (ev) => {
        const w = JSON.parse(ev.data);
        if (w.log) { logLine(w.log); return; }
        if (w.snapshot) st = w.snapshot;
        else if (w.transition) {
          const t = w.transition;
          if (t.block < 0) { st.status = t.status; if (t.message) st.reason = t.message; }
          else if (t.job < 0) { if (st.blocks[t.block]) st.blocks[t.block].status = t.status; }
          else if (st.blocks[t.block] && st.blocks[t.block].jobs[t.job]) {
            const j = st.blocks[t.block].jobs[t.job];
            j.status = t.status;
            if (t.message) j.error = t.message;
          }
          if (!pending) pending = setTimeout(() => { pending = null; refresh().catch(fail); }, 300);
        }
        render();
        if (FINAL.has(st.status)) unfollow();
      });
      source.addEventListener('error', (ev) => {
        if (ev.data) {
          const e = JSON.parse(ev.data);
          flash(`Live updates stopped: ${e.code}: ${e.message}`);
          unfollow();
        } else if (source && source.readyState === EventSource.CLOSED) {
          // Refused on reconnect (signed out, gone, overloaded): say so, and
          // read the status once, which sends a signed-out browser to sign in.
          unfollow();
          flash('Live updates stopped; the page shows the status as last read. Reload to follow again.');
          refresh().catch(fail);
        }
        // Otherwise the browser reconnects by itself and starts with a snapshot.
      });
    };
    const visibility = () => {
      if (document.hidden) unfollow();
      else refresh().then(follow).catch(fail);
    };
    document.addEventListener('visibilitychange', visibility);
    await loadLogs().catch(fail);
    follow();
    return () => {
      unfollow();
      if (pending) clearTimeout(pending);
      document.removeEventListener('visibilitychange', visibility);
    };
  };

  pages.estop = async (main) => {
    const s = await api('GET', '/api/v1/estop');
    const rows = (list, where) => (list || []).map((e) => el('tr', { 'data-name': e.name },
      el('td', { class: 'name' }, e.name), el('td', {}, badge(e.mode)), el('td', {}, e.reason), el('td', {}, where)));
    add(main, el('h1', {}, 'Emergency stop'),
      s.error ? el('div', { class: 'why' }, el('p', {}, `Everything is stopped: ${s.error}`)) : null,
      el('p', { class: 'muted' }, `es.json: ${s.path} · loaded ${when(s.loadedAt)} · changes are written to ${s.writtenTo}`),
      table(['Name', 'Mode', 'Reason', 'Where'], [...rows(s.entries, 'es.json'), ...rows(s.shared, 'shared (store)')]));
    if (may('estop')) {
      const name = el('input', { id: 'estop-name', value: '*' });
      const mode = el('select', { id: 'estop-mode' },
        el('option', { value: 'EsModeStop' }, 'Stop (cancel jobs in flight)'),
        el('option', { value: 'EsModeDrain' }, 'Drain (let jobs in flight finish)'),
        el('option', { value: 'EsModeGo' }, 'Go (allow work again)'));
      const set = async (e) => {
        e.preventDefault();
        const n = name.value.trim() || '*';
        const reason = await confirmDialog({
          title: `Set ${short(mode.value)} for ${n === '*' ? 'every workflow' : n}`,
          body: mode.value === 'EsModeGo' ? 'Work may start again.' : 'New work is refused; running workflows end Stopped.',
          confirm: `Set ${short(mode.value)}`, danger: mode.value !== 'EsModeGo', reasonLabel: 'Reason', reasonRequired: true,
        });
        if (reason === null) return;
        try {
          await api('POST', '/api/v1/estop', { name: n, mode: mode.value, reason });
          flash(`${short(mode.value)} set for ${n}`, 'notice');
          route();
        } catch (err) { fail(err); }
      };
      add(main, el('form', { class: 'filters', onsubmit: set },
        el('label', {}, 'Name ', name), el('label', {}, 'Mode ', mode), el('button', { type: 'submit', id: 'estop-set' }, 'Set…')));
    }
    // Who and when: the audit log, for those who may read it.
    if (may('admin')) {
      const a = await api('GET', '/api/v1/audit?action=estop.set&limit=20');
      add(main, el('h2', {}, 'Recent changes'), auditTable(a.entries || []));
    } else {
      add(main, el('p', { class: 'muted' }, 'Who set each entry, and when, is in the audit log (admin grant).'));
    }
  };

  pages.buckets = async (main) => {
    const out = el('div', {});
    add(main, el('h1', {}, 'Buckets'), out);
    const load = async () => {
      const r = await api('GET', '/api/v1/buckets');
      add(clear(out), 
      r.lastError ? el('div', { class: 'why' }, el('p', {}, `buckets.json not taken: ${r.lastError}`)) : null,
      table(['Bucket', 'Key', 'Level', 'Refill', 'Next token in'], (r.buckets || []).map((b) => el('tr', {},
        el('td', { class: 'name' }, b.name),
        el('td', {}, b.keyArg ? `${b.keyArg}=${b.key || '(any, full)'}` : ''),
        el('td', {}, el('meter', { min: 0, max: b.capacity || 1, value: b.available || 0 }), ` ${b.available || 0} / ${b.capacity}`),
        el('td', {}, `${b.refill} per ${b.period}`),
        el('td', {}, b.nextTokenIn || '')))));
    };
    await load();
    return every(2000, load);
  };

  pages.limits = async (main) => {
    const r = await api('GET', '/api/v1/limits');
    add(main, el('h1', {}, 'Blast-radius limits'),
      r.lastError ? el('div', { class: 'why' }, el('p', {}, `limits.json not taken: ${r.lastError}`)) : null,
      table(['Limit', 'Max', 'Counts', 'Per', 'Jobs', 'In use'], (r.limits || []).map((l) => el('tr', {},
        el('td', { class: 'name' }, l.name), el('td', {}, l.max), el('td', {}, l.count), el('td', {}, l.per),
        el('td', {}, (l.jobs || []).join(', ') || 'all'),
        el('td', {}, (l.parts || []).map((p) => el('div', {}, `${p.part ? `${p.part}: ` : ''}${(p.holders || []).join(', ')}${p.waiting ? ` (+${p.waiting} waiting)` : ''}`)))))));
  };

  pages.policies = async (main) => {
    const p = await api('GET', '/api/v1/policies');
    add(main, el('h1', {}, 'Policies'),
      !p.loaded ? el('div', { class: 'why' }, el('p', {}, 'No valid policy file is loaded: every Submit is refused.')) : null,
      p.lastError ? el('div', { class: 'why' }, el('p', {}, `The file on disk is not in force (${when(p.lastErrorAt)}): ${p.lastError}`)) : null,
      el('dl', { class: 'facts' }, el('dt', {}, 'Version'), el('dd', {}, p.version), el('dt', {}, 'Loaded'), el('dd', {}, when(p.loadedAt)), el('dt', {}, 'File'), el('dd', {}, p.path)),
      (p.rules || []).map((w) => el('section', { class: 'block' }, el('h2', {}, w.workflow),
        table(['Policy', 'Settings'], (w.policies || []).map((r) => el('tr', {}, el('td', { class: 'name' }, r.name), el('td', {}, el('code', {}, r.settingsJson))))))));
  };

  pages.jobs = async (main) => {
    const r = await api('GET', '/api/v1/jobs');
    add(main, el('h1', {}, 'Jobs'), table(['Job', 'Description', 'Arguments', 'After a crash'], (r.jobs || []).map((j) => el('tr', {},
      el('td', { class: 'name' }, j.name), el('td', {}, j.description),
      el('td', {}, (j.args || []).map((a) => el('div', {}, el('code', {}, a.name), a.required ? ' (required)' : '', a.format ? ` ${a.format}` : '', a.description ? ` — ${a.description}` : ''))),
      el('td', {}, j.idempotent ? 'safe to re-run' : j.reconcilable ? 'reconciled' : 'interrupted, waits for an operator')))));
  };

  function auditTable(entries) {
    return table(['#', 'At', 'Who', 'Action', 'Target', 'Outcome', 'Detail', 'Peer', 'Request id'], entries.map((e) => el('tr', {},
      el('td', {}, e.id), el('td', {}, when(e.at)), el('td', {}, e.identity), el('td', {}, e.action),
      el('td', {}, e.target), el('td', { class: e.outcome === 'ok' ? '' : 'error' }, e.outcome), el('td', {}, e.detail),
      el('td', {}, e.peer), el('td', {}, e.requestId))));
  }

  pages.audit = async (main) => {
    const q = new URLSearchParams(location.search);
    const form = el('form', { class: 'filters' },
      ['identity', 'action', 'target'].map((k) => el('label', {}, `${k[0].toUpperCase()}${k.slice(1)} `, el('input', { name: k, value: q.get(k) || '' }))),
      el('button', { type: 'submit' }, 'Filter'));
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const p = new URLSearchParams();
      for (const [k, v] of new FormData(form)) if (String(v).trim()) p.set(k, String(v).trim());
      history.pushState(null, '', `/ui/audit?${p}`);
      route();
    });
    const out = el('div', {});
    add(main, el('h1', {}, 'Audit log'), form, out);
    const before = [0];
    const load = async () => {
      const p = new URLSearchParams();
      for (const k of ['identity', 'action', 'target']) if (q.get(k)) p.set(k, q.get(k));
      p.set('limit', '100');
      if (before[before.length - 1]) p.set('before_id', String(before[before.length - 1]));
      const r = await api('GET', `/api/v1/audit?${p}`);
      const next = Number(r.nextBeforeId || 0);
      add(clear(out), auditTable(r.entries || []), el('div', { class: 'pager' },
        before.length > 1 ? el('button', { onclick: () => { before.pop(); load().catch(fail); } }, '← Newer') : null,
        next ? el('button', { onclick: () => { before.push(next); load().catch(fail); } }, 'Older →') : null));
    };
    await load();
  };

  pages.signin = async (main) => {
    const token = el('input', { id: 'token', type: 'password', autocomplete: 'current-password', required: true });
    const err = el('p', { id: 'signin-error', class: 'error', hidden: true });
    const form = el('form', { class: 'signin' },
      el('h1', {}, 'Sign in to Interlock'),
      el('label', {}, 'Token ', token),
      el('button', { type: 'submit', id: 'signin', class: 'primary' }, 'Sign in'),
      err,
      el('p', { class: 'muted' }, 'Use the bearer token the CLI uses (interlock --token). The session ends after 12 hours, on sign-out, or when the token is revoked.'));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      try {
        await api('POST', '/ui/signin', { token: token.value });
        const next = new URLSearchParams(location.search).get('next') || '/ui/';
        // Only a path of this dashboard.
        location.assign(next.startsWith('/ui/') ? next : '/ui/');
      } catch (x) {
        err.textContent = `Not signed in: ${x.message}`;
        err.hidden = false;
      }
    });
    add(main, form);
    token.focus();
  };

  // ---- Router ----------------------------------------------------------------
  function every(ms, f) {
    let stopped = false;
    let timer = null;
    const tick = async () => {
      if (stopped) return;
      try { await f(); } catch (e) { fail(e); }
      if (!stopped) timer = setTimeout(tick, ms);
    };
    timer = setTimeout(tick, ms);
    return () => { stopped = true; clearTimeout(timer); };
  }

  let leave = null;
  async function route() {
    if (leave) { leave(); leave = null; }
    const path = location.pathname.replace(/\/+$/, '') || '/ui';
    const main = clear($('main'));
    let m;
    let page;
    let arg;
    if (path === '/ui' || path === '/ui/workflows') page = 'workflows';
    else if ((m = path.match(/^\/ui\/workflows\/([^/]+)$/))) {
      page = 'workflow';
      try { arg = decodeURIComponent(m[1]); } catch (_) { arg = m[1]; }
    }
    else page = path.replace(/^\/ui\//, '');
    document.body.dataset.page = page;
    if (page !== 'signin') frame();
    if (!Object.hasOwn(pages, page)) {
      add(main, el('h1', {}, 'No such page'), el('p', {}, el('a', { href: '/ui/' }, 'Workflows')));
      document.body.dataset.ready = 'true';
      return;
    }
    try {
      const r = await pages[page](main, arg);
      if (typeof r === 'function') leave = r;
    } catch (e) { fail(e); }
    document.body.dataset.ready = 'true';
  }

  async function start() {
    if (location.pathname !== '/ui/signin') {
      try {
        me = await api('GET', '/api/v1/whoami');
        me.grants = me.grants || [];
      } catch (e) { if (e.status !== 401) fail(e); return; }
    }
    window.addEventListener('popstate', route);
    await route();
  }
  // Exposed for tests and the console: the API helper (CSRF included).
  window.interlock = { api };
  start();
})();
