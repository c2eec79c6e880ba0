// Approval cards: a tool call under `ask` waits for the person at the console (user.approve).

const OUTCOMES = { success: "done", failed: "failed", denied: "refused", expired: "expired" };

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function left(deadline) {
  const s = Math.max(0, Math.round((deadline - Date.now()) / 1000));
  return s >= 120 ? `${Math.floor(s / 60)} min ${s % 60} s left` : `${s} s left`;
}

// The card of an agent.approval_required, inside its tool card: the tool, its arguments,
// Approve / Refuse (with an optional reason) and the time left. `send` sends a frame.
export function approvalCard(tool, frame, sessionId, send) {
  const card = el("div", "approval");
  card.dataset.stepId = frame.step_id;
  const title = el("div", "approval-title", `approve ${frame.metadata.tool}?`);
  const args = el("pre", "approval-args", JSON.stringify(frame.metadata.args ?? {}, null, 2));
  const reason = el("input", "approval-reason");
  reason.placeholder = "reason (optional)";
  reason.setAttribute("aria-label", "Reason");
  const approve = el("button", "approve", "Approve");
  const refuse = el("button", "refuse", "Refuse");
  approve.type = refuse.type = "button";
  const timer = el("span", "approval-time");
  const deadline = Date.parse(frame.timestamp) + frame.timeout_s * 1000;
  const tick = () => { timer.textContent = left(deadline); };
  tick();
  const interval = setInterval(tick, 1000);
  const answer = (approved) => {
    const text = reason.value.trim();
    const sent = send({ event: "user.approve", session_id: sessionId, step_id: frame.step_id,
                        approved, ...(text ? { reason: text } : {}) });
    if (!sent) return;
    approve.disabled = refuse.disabled = reason.disabled = true;
    timer.textContent = approved ? "approved: running…" : "refused";
  };
  approve.addEventListener("click", () => answer(true));
  refuse.addEventListener("click", () => answer(false));
  const buttons = el("div", "approval-buttons");
  buttons.append(approve, refuse, reason, timer);
  card.append(title, args, buttons);
  tool.card.append(card);
  tool.card.dataset.status = "awaiting";
  tool.status.textContent = "waiting for approval";
  tool.approval = { card, stop: () => clearInterval(interval) };
}

// The call ended (or its run did): the approval card goes, the tool card tells the outcome.
export function settle(tool, status, took = "") {
  if (tool.approval) { tool.approval.stop(); tool.approval.card.remove(); tool.approval = null; }
  if (status === undefined) return;
  tool.card.dataset.status = status;
  tool.status.textContent = (OUTCOMES[status] ?? status) + took;
}
