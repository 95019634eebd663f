"""Evidence for hangs in the browser tests: what the page and the kernels did.

- :data:`TRACE_INIT` (a page init script): the page's kernel connection traffic and
  status changes, and its websocket frames;
- ``peers/lab_kernel_trace.py`` (an IPython startup file :class:`browser_helpers.LabServer`
  installs): what each kernel's shell and control channels received, and its threads'
  stacks on ``SIGUSR1``;
- :func:`diagnosis`: one line telling apart "the page never sent the execute requests",
  "the kernel's shell channel never got them" and "the kernel's main thread never took
  them up"; :func:`write_evidence`: everything, in a file next to the server's log.

Why: a Run All that "stayed queued" (2 of ~10 runs under load) had been read as lost
requests; these traces showed a deadlocked main thread instead (see
``tests/test_kernel_blocked.py``).
"""

from __future__ import annotations

import json
import os
import signal
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

# Installed in the page before JupyterLab loads: a record of what the page does with the
# notebook's kernel, to tell apart, when Run All starts nothing, "the front end never sent
# the requests" from "the kernel got them and did not run them" (see LabPage.run_all).
# - every websocket frame the page sends (count, bytes, per socket; opens and closes);
# - for each kernel connection object of the current notebook (attached when it appears):
#   its status and connection-status changes, and every message through it (direction,
#   channel, type, msg_id, parent msg_id, status, and how many messages the connection
#   held back unsent at that moment: ``pending``).
# Times are ``Date.now()`` ms (the kernel's trace uses the same clock).
TRACE_INIT = r"""(() => {
  const T = window.__beaconTrace = {events: [], sockets: {}, kernels: 0, dropped: 0};
  const push = (e) => {  // the first 10000 events, then the latest 10000
    e.t = Date.now();
    if (T.events.length >= 20000) { T.events.splice(10000, 1); T.dropped++; }
    T.events.push(e);
  };
  const Native = window.WebSocket;
  class TracedWebSocket extends Native {
    constructor(url, protocols) {
      super(url, protocols);
      const key = String(url).replace(/\?.*$/, '');
      const s = T.sockets[key] = T.sockets[key] || {opened: 0, closed: 0, frames: 0, bytes: 0};
      this.addEventListener('open', () => { s.opened++; push({ev: 'ws-open', url: key}); });
      this.addEventListener('close', (c) => {
        s.closed++; push({ev: 'ws-close', url: key, code: c.code});
      });
      this.__beaconStats = s;
    }
    send(data) {
      const s = this.__beaconStats;
      s.frames++;
      s.bytes += data.byteLength || data.size || data.length || 0;
      s.last = Date.now();
      return super.send(data);
    }
  }
  window.WebSocket = TracedWebSocket;
  // comm updates, in short: which model, which keys; index and option counts in full
  const widgetUpdate = (m) => {
    const d = m.content && m.content.data;
    if (!d || !d.state) return undefined;
    const st = d.state, out = {comm: (m.content.comm_id || '').slice(0, 8), method: d.method,
                                keys: Object.keys(st)};
    if ('index' in st) out.index = st.index;
    if ('_options_labels' in st) out.labels = st._options_labels.length;
    return out;
  };
  const seen = new WeakSet();
  setInterval(() => {
    const app = window.jupyterapp;
    const w = app && app.shell && app.shell.currentWidget;
    const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
    if (!k || seen.has(k)) return;
    seen.add(k);
    const id = ++T.kernels;
    push({ev: 'kernel-attached', k: id, kernel: k.id, status: k.status,
          connection: k.connectionStatus});
    k.statusChanged.connect((_, status) => push({ev: 'status', k: id, status}));
    k.connectionStatusChanged.connect((_, c) => push({ev: 'connection', k: id, c}));
    k.anyMessage.connect((_, a) => {
      const m = a.msg;
      push({ev: a.direction, k: id, ch: m.channel, type: m.header.msg_type,
            id: m.header.msg_id, parent: (m.parent_header || {}).msg_id,
            parentType: (m.parent_header || {}).msg_type,
            state: m.content && m.content.execution_state,
            pending: (k._pendingMessages || []).length, widget: widgetUpdate(m)});
    });
  }, 50);
})()"""

# The page's trace and the kernel connection's state, now (JSON-able).
TRACE_STATE = """() => {
  const T = window.__beaconTrace || {};
  const w = window.jupyterapp.shell.currentWidget;
  const sc = w && w.sessionContext;
  const k = sc && sc.session && sc.session.kernel;
  const prompts = Array.from(document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt'))
    .map(p => p.textContent.trim());
  return {now: Date.now(), trace: T, prompts,
          session: sc ? {isReady: sc.isReady, isRestarting: sc.isRestarting,
                         hasNoKernel: sc.hasNoKernel, pendingInput: sc.pendingInput} : null,
          kernel: k ? {id: k.id, status: k.status, connection: k.connectionStatus,
                       pending: (k._pendingMessages || []).length,
                       isRestarting: k._isRestarting, kernelSession: k._kernelSession,
                       futures: k._futures ? k._futures.size : null,
                       subshell: k._subshellId || null,
                       wsState: k._ws ? k._ws.readyState : null} : null};
}"""

# For each execute request of the page: the kernel statuses JupyterLab showed while it
# ran (from its execute_input to its execute_reply), and the control requests the page
# sent meanwhile.
DURING_CELLS = """() => {
  const E = (window.__beaconTrace || {events: []}).events;
  const out = [];
  for (const input of E.filter(e => e.ev === 'recv' && e.type === 'execute_input')) {
    // the end: its execute_reply or its own idle status, whichever the page got first
    const ends = E.filter(e => e.ev === 'recv' && e.parent === input.parent &&
      (e.type === 'execute_reply' || (e.type === 'status' && e.state === 'idle')));
    const end = ends.length ? Math.min(...ends.map(e => e.t)) : Infinity;
    const during = E.filter(e => e.t >= input.t && e.t < end);
    out.push({request: input.parent, ended: ends.length > 0,
              statuses: during.filter(e => e.ev === 'status').map(e => e.status),
              control: during.filter(e => e.ev === 'send' && e.ch === 'control')
                             .map(e => e.type)});
  }
  return out;
}"""


def trace_time(line: str) -> float:
    """The time (``time.time()``) at the start of a kernel trace line (0 if none)."""
    try:
        return float(line.split(" ", 1)[0])
    except ValueError:
        return 0.0


def page_state(page: Any) -> dict:
    """:data:`TRACE_STATE` of ``page``, or a stand-in saying why it could not be read."""
    try:
        return page.evaluate(TRACE_STATE)
    except Exception as exc:  # noqa: BLE001 - evidence, whatever state the page is in
        return {"now": time.time() * 1000, "trace": {}, "error": repr(exc)}


def diagnosis(page: Any, server: Any | None, since: float) -> str:
    """One line: the prompts, and how many execute requests (since ``since``, a
    ``time.time()``) the page sent, the kernel's shell channel received, its main thread
    took up and finished, and the kernel status JupyterLab shows."""
    state = page_state(page)
    if "error" in state:
        return f"page not readable ({state['error']})"
    events = state["trace"].get("events", [])
    sent = sum(1 for e in events if e.get("ev") == "send" and e.get("type") ==
               "execute_request" and e["t"] >= since * 1000)
    traces = server.kernel_traces().values() if server is not None else []
    after = [line for text in traces for line in text.splitlines()
             if " execute_request " in line and trace_time(line) >= since]
    got = sum(1 for line in after if " shell-thread recv " in line)
    taken = sum(1 for line in after if " MainThread " in line and " main recv" in line)
    done = sum(1 for line in after if " MainThread " in line and " main done " in line)
    return (f"prompts {' '.join(state.get('prompts', []))}; execute requests: sent by the "
            f"page {sent}, received by the kernel's shell channel {got}, taken up by its "
            f"main thread {taken}, finished {done}; kernel status shown: "
            f"{(state.get('kernel') or {}).get('status')}")


def write_evidence(page: Any, server: Any, console: str, name: str, title: str,
                   since: float) -> Path:
    """Write ``<server log>.<name>.txt``: the page's state, its trace of the kernel
    connection (times also relative to ``since``), every kernel's trace with its
    threads' stacks (asked for with ``SIGUSR1``), the page's ``console`` and the
    server's log. Returns the path."""
    state = page_state(page)
    for pid in server.kernel_traces():  # the kernels dump their threads' stacks
        with suppress(OSError):
            os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not all(
            "Current thread" in text for text in server.kernel_traces().values()):
        time.sleep(0.1)  # polling the kernels' trace files, with a deadline
    trace = dict(state.pop("trace"))
    events = trace.pop("events", [])
    lines = [f"{title} (written at {state['now'] / 1000:.3f})",
             json.dumps(state, indent=1), json.dumps(trace, indent=1),
             f"--- page: kernel connection events (time, ms since {since:.3f})"]
    for event in events:
        event = dict(event)
        t = event.pop("t")
        lines.append(f"{t / 1000:.3f} {t - since * 1000:+9.0f} {json.dumps(event)}")
    for pid, text in server.kernel_traces().items():
        lines += [f"--- kernel {pid} trace", text]
    lines += ["--- page console", console, "--- server log", server.log()]
    path = server.log_path.with_suffix(f".{name}.txt")
    path.write_text("\n".join(lines) + "\n")
    return path


def record_run_all(server: Any, start: float, started: bool) -> None:
    """Append one JSON line per Run All to ``<server log>.runall.jsonl``: when, whether
    and how fast a cell started, the load average (to count runs and slow starts)."""
    line = {"at": start, "started": started, "after": round(time.time() - start, 3),
            "load": os.getloadavg()[0], "log": server.log_path.name}
    with open(server.log_path.with_suffix(".runall.jsonl"), "a") as out:
        out.write(json.dumps(line) + "\n")
