// The myagent-ws web console: one WebSocket, sessions that survive reconnects and reloads.
import { renderMarkdown } from "/static/markdown.js";

const $ = (id) => document.getElementById(id);
const store = window.sessionStorage;
const LOG_LIMIT = 2000;

const state = {
  ws: null,
  attempt: 0,
  opened: false,
  sessionId: store.getItem("myagent.session_id"),
  lastSeq: Number(store.getItem("myagent.last_seq") || 0),
  runs: new Map(),         // run_id -> {box, answer, text, tools: Map(step_id -> card)}
  running: false,
  log: [],
  timer: null,
  seqs: [],                // the session seqs shown, in order (tests check for gaps)
  rebuilt: !store.getItem("myagent.session_id"),  // after a reload: replay the held session once
  resumeFrom: 0,
};
window.__console = state;  // for tests and curious developers

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

function bubble(kind, text) {
  const div = document.createElement("div");
  div.className = `bubble ${kind}`;
  if (text !== undefined) div.textContent = text;
  $("chat").append(div);
  div.scrollIntoView({ block: "end" });
  return div;
}

function note(text) { bubble("note", text); }

function send(frame) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) {
    state.ws.send(JSON.stringify(frame));
    return true;
  }
  note("not connected: the message was not sent");
  return false;
}

function logFrame(direction, frame) {
  state.log.push({ direction, ...frame });
  if (state.log.length > LOG_LIMIT) state.log.shift();
  if ($("log-pane").open) $("log").textContent += `${direction} ${JSON.stringify(frame)}\n`;
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
  ws.onopen = () => { state.opened = true; state.attempt = 0; setConn("connected", "connected"); };
  ws.onmessage = (event) => handle(JSON.parse(event.data));
  ws.onclose = (event) => {
    if (state.ws !== ws) return;
    if (!state.opened) {
      setConn("refused", "error");
      note("connection refused — check the token (the server may require one)");
    } else {
      setConn(`disconnected (${event.code})`, "error");
    }
    const delay = Math.min(30000, 500 * 2 ** state.attempt) * (0.75 + Math.random() / 2);
    state.attempt += 1;
    state.timer = setTimeout(connect, delay);
  };
}

function startSession() {
  state.runs.clear();
  state.seqs = [];
  remember(null, 0);
  send({ event: "user.create_session", agent: $("agent").value || undefined });
}

function resume(fromSeq) {
  state.resumeFrom = fromSeq;
  send({ event: "user.resume_session", session_id: state.sessionId, last_seq: fromSeq });
}

function runOf(frame) {
  if (!frame.run_id) return null;
  let run = state.runs.get(frame.run_id);
  if (!run) {
    const box = bubble("run");
    run = { box, answer: null, text: "", tools: new Map() };
    state.runs.set(frame.run_id, run);
  }
  return run;
}

function toolCard(run, frame) {
  const card = document.createElement("div");
  card.className = "tool";
  card.dataset.status = "running";
  const head = document.createElement("div");
  head.className = "tool-head";
  head.textContent = `🔧 ${frame.metadata.tool}`;
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
  run.box.append(card);
  run.tools.set(frame.step_id, { card, status, result });
}

function handle(frame) {
  logFrame("<", frame);
  if (frame.seq !== undefined && frame.session_id === state.sessionId) {
    if (frame.seq <= state.lastSeq) return;  // already shown (a replay overlapping what we saw)
    remember(state.sessionId, frame.seq);
    state.seqs.push(frame.seq);
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
      remember(frame.session_id, frame.seq);
      state.seqs = [frame.seq];
      note(`new session with ${frame.agent}`);
      setRun("idle");
      break;
    case "agent.session_resumed":
      note(`session resumed (${frame.replayed} missed events replayed)`);
      break;
    case "agent.thinking":
      setRun("running");
      $("thinking").textContent = frame.content;
      break;
    case "agent.tool_call":
      setRun("running");
      toolCard(run, frame);
      break;
    case "agent.tool_result": {
      const tool = run.tools.get(frame.step_id);
      if (!tool) break;
      const ok = frame.metadata.status === "success";
      const took = frame.metadata.duration_s !== undefined
        ? ` in ${(frame.metadata.duration_s * 1000).toFixed(0)} ms` : "";
      tool.card.dataset.status = ok ? "success" : "failed";
      tool.status.textContent = (ok ? "done" : "failed") + took;
      tool.result.textContent = frame.content;
      break;
    }
    case "agent.partial_answer":
      setRun("running");
      if (!run.answer) { run.answer = document.createElement("div"); run.answer.className = "answer streaming"; run.box.append(run.answer); }
      run.text += frame.content;
      run.answer.textContent = run.text;
      run.answer.scrollIntoView({ block: "end" });
      break;
    case "agent.final_answer":
      if (!run.answer) { run.answer = document.createElement("div"); run.box.append(run.answer); }
      run.answer.className = "answer";
      run.answer.replaceChildren(renderMarkdown(frame.content));
      setRun("idle");
      break;
    case "agent.interrupted":
      for (const tool of run?.tools.values() ?? []) {
        if (tool.card.dataset.status === "running") { tool.card.dataset.status = "failed"; tool.status.textContent = "cancelled"; }
      }
      if (run) { const end = document.createElement("div"); end.className = "interrupted"; end.textContent = "⏹ interrupted"; run.box.append(end); }
      setRun("interrupted");
      break;
    case "agent.error":
      if (frame.code === "replay_unavailable" && frame.oldest_seq > state.resumeFrom + 1
          && state.lastSeq < frame.oldest_seq) {  // older events are gone: show what is held
        note("the oldest events of this session are no longer held");
        state.lastSeq = frame.oldest_seq - 1;
        resume(state.lastSeq);
        break;
      }
      if (["replay_unavailable", "session_not_found"].includes(frame.code) && !frame.run_id) {
        note(`could not resume the session (${frame.code}): starting a new one`);
        startSession();
        break;
      }
      bubble("error", `${frame.error} [${frame.code}]`);
      if (frame.run_id) setRun("error");
      break;
    case "system.shutdown":
      note(`the server is restarting; reconnecting in about ${frame.retry_after_s} s`);
      break;
    default:
      break;
  }
}

$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("input").value.trim();
  if (!text || !state.sessionId) return;
  const frame = { event: "user.message", session_id: state.sessionId, content: text,
                  request_id: crypto.randomUUID?.() ?? String(Date.now()) };
  if (send(frame)) {
    logFrame(">", frame);
    bubble("user", text);
    $("input").value = "";
    setRun("running");
  }
});

$("input").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); $("composer").requestSubmit(); }
});

function stop() {
  if (state.running && state.sessionId) send({ event: "user.cancel", session_id: state.sessionId });
}
$("stop").addEventListener("click", stop);
document.addEventListener("keydown", (event) => { if (event.key === "Escape") stop(); });

$("new-session").addEventListener("click", () => { $("chat").replaceChildren(); startSession(); });
$("agent").addEventListener("change", () => {
  store.setItem("myagent.agent", $("agent").value);
  $("chat").replaceChildren();
  startSession();
});

$("token").value = store.getItem("myagent.token") || "";
$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  store.setItem("myagent.token", $("token").value);
  state.attempt = 0;
  const old = state.ws;
  state.ws = null;
  old?.close();
  connect();
});

$("log-pane").addEventListener("toggle", () => {
  if ($("log-pane").open) $("log").textContent = state.log.map((f) => `${f.direction} ${JSON.stringify(f)}`).join("\n") + "\n";
});
$("copy-log").addEventListener("click", async () => {
  const text = JSON.stringify(state.log, null, 2);
  try { await navigator.clipboard.writeText(text); note("event log copied"); }
  catch { $("log").textContent = text; note("select the log text to copy it"); }
});

connect();
