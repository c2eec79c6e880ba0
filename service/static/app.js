// The myagent-ws web console: one WebSocket, sessions that survive reconnects and reloads.
import { renderMarkdown } from "/static/markdown.js";
import { approvalCard, settle } from "/static/approvals.js";

const $ = (id) => document.getElementById(id);
const store = window.sessionStorage;
const LOG_LIMIT = 2000;
const KEEP_MESSAGES = 200;  // the user's own messages kept for a reload (the server does not echo them)
const TERMINAL = new Set(["agent.final_answer", "agent.interrupted", "agent.error"]);
const CLOSED = {  // close codes of docs/protocol.md, as sentences
  1001: "the server went away", 1006: "the connection dropped",
  1008: "the server closed it: too many refused frames", 1009: "a message was too large for the server",
  1011: "the server hit an internal error", 1013: "the server is over capacity, or this page read too slowly",
};

const state = {
  ws: null,
  attempt: 0,
  opened: false,
  sessionId: store.getItem("myagent.session_id"),
  lastSeq: Number(store.getItem("myagent.last_seq") || 0),
  runs: new Map(),         // run_id -> {box, answer, text, tools: Map(step_id -> card)}
  running: false,
  activeRun: null,         // the run_id of the run going on, as the frames tell
  pendingCreate: false,    // a user.create_session is on its way
  resuming: false,
  shown: new Set(),        // request_ids whose user message is on the page
  log: [],
  timer: null,
  problem: "",             // the last connection problem noted: a retry loop says it once
  retryAfterMs: 0,
  rebuilt: !store.getItem("myagent.session_id"),  // after a reload: replay the held session once
  resumeFrom: 0,
};

function setConn(text, kind) { $("conn").textContent = text; $("conn").dataset.state = kind; }

function setRun(kind) {
  $("run-state").textContent = kind;
  $("run-state").dataset.state = kind;
  state.running = kind === "running";
  $("stop").disabled = !state.running;
  if (!state.running) $("thinking").textContent = "";
}

function remember(sessionId, lastSeq) {
  state.sessionId = sessionId;
  state.lastSeq = lastSeq;
  if (sessionId) store.setItem("myagent.session_id", sessionId);
  else store.removeItem("myagent.session_id");
  store.setItem("myagent.last_seq", String(lastSeq));
}

function keptMessages() {
  try {
    const kept = JSON.parse(store.getItem("myagent.messages") || "{}");
    return kept.session_id === state.sessionId ? kept.items : {};
  } catch { return {}; }
}

function keepMessage(requestId, text) {
  const items = keptMessages();
  items[requestId] = text;
  const ids = Object.keys(items);
  if (ids.length > KEEP_MESSAGES) delete items[ids[0]];
  try { store.setItem("myagent.messages", JSON.stringify({ session_id: state.sessionId, items })); }
  catch { /* storage full: a reload will not show this message */ }
}

function inView(change, always = false) {  // follow the newest line, unless the user scrolled up
  const chat = $("chat");
  const stick = always || chat.scrollHeight - chat.scrollTop - chat.clientHeight < 80;
  change();
  if (stick) chat.scrollTop = chat.scrollHeight;
}

function bubble(kind, text, parent = $("chat")) {
  const div = document.createElement("div");
  div.className = `bubble ${kind}`;
  if (text !== undefined) div.textContent = text;
  inView(() => parent.append(div), kind === "user");
  return div;
}

function note(text) { bubble("note", text); }

function send(frame) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) {
    state.ws.send(JSON.stringify(frame));
    logFrame(">", frame);
    return true;
  }
  note("not connected: the message was not sent");
  return false;
}

function logLine(entry) { return `${entry.direction} ${JSON.stringify(entry.frame)}`; }

function logFrame(direction, frame) {
  const entry = { direction, frame };
  state.log.push(entry);
  if (state.log.length > LOG_LIMIT) state.log.shift();
  if ($("log-pane").open) $("log").textContent += `${logLine(entry)}\n`;
}

function problem(label, kind, sentence) {  // the pill always; the sentence once per outage
  setConn(label, kind);
  if (sentence !== state.problem) { state.problem = sentence; note(sentence); }
}

async function whyRefused(url) {  // a WebSocket that never opened does not say why: ask over HTTP
  let reply;
  try {
    reply = await fetch(url.href.replace(/^ws/, "http"), { cache: "no-store" });
  } catch {
    return ["unreachable", "the server cannot be reached"];
  }
  if (reply.status === 401) {
    return ["refused", store.getItem("myagent.token")
      ? "connection refused: the server did not accept this token; check it and press Connect"
      : "connection refused: this server needs a token; enter it above and press Connect"];
  }
  if (reply.status === 400) return ["disconnected", "the connection failed; reconnecting"];
  const body = await reply.json().catch(() => ({}));
  const why = body.error ?? (reply.status === 503 ? "the server is shutting down or full" : reply.statusText);
  return ["refused", `connection refused (HTTP ${reply.status}): ${why}`];
}

function connect() {
  clearTimeout(state.timer);
  const url = new URL("/ws", window.location.href);
  url.protocol = window.location.protocol === "https:" ? "wss:" : "ws:";
  const token = store.getItem("myagent.token");
  if (token) url.searchParams.set("token", token);
  setConn("connecting", "connecting");
  const ws = new WebSocket(url);
  state.ws = ws;
  state.opened = false;
  ws.onopen = () => {
    state.opened = true; state.attempt = 0; state.problem = "";
    setConn("connected", "connected");
  };
  ws.onmessage = (event) => handle(JSON.parse(event.data));
  ws.onclose = async (event) => {
    if (state.ws !== ws) return;
    const backoff = Math.min(30000, 500 * 2 ** state.attempt) * (0.75 + Math.random() / 2);
    const delay = Math.max(backoff, state.retryAfterMs);
    state.retryAfterMs = 0;
    state.attempt += 1;
    state.timer = setTimeout(connect, delay);
    if (!state.activeRun && state.running) setRun("idle");  // a message that never became a run
    const retry = ` · retrying in ${Math.max(1, Math.round(delay / 1000))} s`;
    if (state.opened) {
      const why = CLOSED[event.code] ?? "the connection closed";
      problem(`disconnected${retry}`, "error", `disconnected (${event.code}): ${why}; reconnecting`);
      return;
    }
    const [label, sentence] = await whyRefused(url);
    if (state.ws === ws) problem(`${label}${retry}`, "error", sentence);
    if (label === "refused" && state.attempt === 1) $("token").focus();
  };
}

function startSession({ closeOld = false } = {}) {
  if (closeOld && state.sessionId) {  // the old session's run stops; its late frames are ignored
    send({ event: "user.close_session", session_id: state.sessionId, request_id: "close" });
  }
  state.runs.clear();
  state.shown.clear();
  state.activeRun = null;
  remember(null, 0);
  state.pendingCreate = true;
  send({ event: "user.create_session", agent: $("agent").value || undefined });
}

function resume(fromSeq) {
  state.resumeFrom = fromSeq;
  state.resuming = true;
  send({ event: "user.resume_session", session_id: state.sessionId, last_seq: fromSeq });
}

function runOf(frame) {
  if (!frame.run_id) return null;
  if (!TERMINAL.has(frame.event)) state.activeRun = frame.run_id;
  let run = state.runs.get(frame.run_id);
  if (!run) {
    const asked = frame.request_id && keptMessages()[frame.request_id];
    if (asked !== undefined && !state.shown.has(frame.request_id)) {  // a replay after a reload
      state.shown.add(frame.request_id);
      bubble("user", asked);
    }
    const box = bubble("run");
    run = { box, answer: null, text: "", tools: new Map() };
    state.runs.set(frame.run_id, run);
  }
  return run;
}

function ended(frame, kind) {
  if (state.activeRun === frame.run_id) state.activeRun = null;
  setRun(kind);
}

function toolCard(run, frame) {
  const card = document.createElement("div");
  card.className = "tool";
  card.dataset.status = "running";
  const head = document.createElement("div");
  head.className = "tool-head";
  head.textContent = frame.metadata.tool;
  const status = document.createElement("span");
  status.className = "tool-status";
  status.textContent = "running…";
  head.append(" ", status);
  const args = document.createElement("code");
  args.className = "tool-args";
  args.textContent = JSON.stringify(frame.metadata.args ?? {});
  const result = document.createElement("div");
  result.className = "tool-result";
  card.append(head, args, result);
  inView(() => run.box.append(card));
  run.tools.set(frame.step_id, { card, status, result });
}

function handle(frame) {
  logFrame("<", frame);
  const created = frame.event === "agent.session_created" && state.pendingCreate;
  if (frame.session_id && frame.session_id !== state.sessionId && !created) return;  // an old session
  if (frame.request_id === "close") return;  // the answer to closing an old session
  if (frame.seq !== undefined && frame.session_id === state.sessionId) {
    if (frame.seq <= state.lastSeq) return;  // already shown (a replay overlapping what we saw)
    remember(state.sessionId, frame.seq);
  }
  const run = runOf(frame);
  switch (frame.event) {
    case "system.connected": {
      const select = $("agent");
      const chosen = select.value || store.getItem("myagent.agent");
      select.replaceChildren(...frame.agents.map((name) => new Option(name, name)));
      if (chosen && frame.agents.includes(chosen)) select.value = chosen;
      if (state.sessionId) {
        if (!state.rebuilt) { state.rebuilt = true; state.lastSeq = 0; }  // a reload: show it all
        resume(state.lastSeq);
      } else {
        startSession();
      }
      break;
    }
    case "agent.session_created":
      state.pendingCreate = false;
      remember(frame.session_id, frame.seq);
      note(`new session with ${frame.agent}`);
      setRun("idle");
      break;
    case "agent.session_resumed":
      state.resuming = false;
      note(`session resumed (${frame.replayed} missed events replayed)`);
      break;
    case "agent.thinking":
      setRun("running");
      $("thinking").textContent = frame.content;
      break;
    case "agent.tool_call":
      setRun("running");
      $("thinking").textContent = `running ${frame.metadata.tool}…`;
      if (run.answer) {  // the model spoke before calling a tool: keep it, answer below the card
        run.answer.className = "interim";
        run.answer = null;
        run.text = "";
      }
      toolCard(run, frame);
      if (frame.metadata.status === "awaiting_approval") {
        $("thinking").textContent = `${frame.metadata.tool} waits for your approval`;
      }
      break;
    case "agent.approval_required": {
      const tool = run.tools.get(frame.step_id);
      if (tool && !tool.approval) approvalCard(tool, frame, state.sessionId, send);
      break;
    }
    case "agent.tool_result": {
      const tool = run.tools.get(frame.step_id);
      if (!tool) break;
      const took = typeof frame.metadata.duration_s === "number"
        ? ` in ${(frame.metadata.duration_s * 1000).toFixed(0)} ms` : "";
      const ran = ["success", "failed"].includes(frame.metadata.status);  // else it never ran
      settle(tool, frame.metadata.status, ran ? took : "");
      tool.result.textContent = frame.content;
      break;
    }
    case "agent.partial_answer":
      setRun("running");
      $("thinking").textContent = "answering…";
      run.text += frame.content;
      inView(() => {
        if (!run.answer) { run.answer = document.createElement("div"); run.answer.className = "answer streaming"; run.box.append(run.answer); }
        run.answer.textContent = run.text;
      });
      break;
    case "agent.final_answer":
      inView(() => {
        if (!run.answer) { run.answer = document.createElement("div"); run.box.append(run.answer); }
        run.answer.className = "answer";
        run.answer.replaceChildren(renderMarkdown(frame.content));
      });
      ended(frame, "idle");
      break;
    case "agent.interrupted":
      for (const tool of run?.tools.values() ?? []) {
        settle(tool);
        if (["running", "awaiting"].includes(tool.card.dataset.status)) { tool.card.dataset.status = "failed"; tool.status.textContent = "cancelled"; }
      }
      if (run) { const end = document.createElement("div"); end.className = "interrupted"; end.textContent = "⏹ interrupted"; inView(() => run.box.append(end)); }
      ended(frame, "interrupted");
      break;
    case "agent.error":
      if (frame.code === "replay_unavailable" && frame.oldest_seq > state.resumeFrom + 1
          && state.lastSeq < frame.oldest_seq) {  // older events are gone: show what is held
        note("the oldest events of this session are no longer held");
        state.lastSeq = frame.oldest_seq - 1;
        resume(state.lastSeq);
        break;
      }
      if (state.resuming && ["replay_unavailable", "session_not_found"].includes(frame.code) && !frame.run_id) {
        state.resuming = false;
        note(`could not resume the session (${frame.code}): starting a new one`);
        startSession();
        break;
      }
      state.pendingCreate = false;
      bubble("error", `${frame.error} [${frame.code}]`, run?.box);
      if (frame.run_id) for (const tool of run?.tools.values() ?? []) settle(tool);
      if (frame.run_id) ended(frame, "error");
      else if (state.running && !state.activeRun) setRun("idle");  // the message never became a run
      break;
    case "system.shutdown":
      state.retryAfterMs = frame.retry_after_s * 1000;
      note(`the server is restarting; reconnecting in about ${frame.retry_after_s} s`);
      break;
    default:
      break;
  }
}

$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("input").value.trim();
  if (!text) return;
  if (!state.sessionId) { note("no session yet: wait until the console is connected"); return; }
  const frame = { event: "user.message", session_id: state.sessionId, content: text,
                  request_id: crypto.randomUUID?.() ?? `${Date.now()}-${Math.random()}` };
  if (send(frame)) {
    state.shown.add(frame.request_id);
    keepMessage(frame.request_id, text);
    bubble("user", text);
    $("input").value = "";
    setRun("running");
  }
});

$("input").addEventListener("keydown", (event) => {
  if (event.isComposing || event.keyCode === 229) return;  // Enter confirms an IME composition
  if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); $("composer").requestSubmit(); }
});

function stop() {
  if (state.running && state.sessionId) send({ event: "user.cancel", session_id: state.sessionId });
}
$("stop").addEventListener("click", stop);
document.addEventListener("keydown", (event) => { if (event.key === "Escape") stop(); });

$("new-session").addEventListener("click", () => { $("chat").replaceChildren(); startSession({ closeOld: true }); });
$("agent").addEventListener("change", () => {
  store.setItem("myagent.agent", $("agent").value);
  $("chat").replaceChildren();
  startSession({ closeOld: true });
});

$("token").value = store.getItem("myagent.token") || "";
$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  store.setItem("myagent.token", $("token").value);
  state.attempt = 0;
  state.problem = "";
  const old = state.ws;
  state.ws = null;
  old?.close();
  connect();
});

$("log-pane").addEventListener("toggle", () => {
  if ($("log-pane").open) $("log").textContent = state.log.map((entry) => `${logLine(entry)}\n`).join("");
});
$("copy-log").addEventListener("click", async () => {
  const text = JSON.stringify(state.log.map(({ direction, frame }) => ({ direction, ...frame })), null, 2);
  try { await navigator.clipboard.writeText(text); note("event log copied"); }
  catch { $("log").textContent = text; note("select the log text to copy it"); }
});

connect();
