/**
 * One task as a card: kind icon, title (a link to the page that completes it), kind and
 * process, connected record, time, status and the actions its status allows.
 *
 * `createCard` builds it once; `updateCard` changes only the text and attributes that
 * differ, so focus, hover and animations survive updates. Buttons carry `data-action`;
 * the list that owns the cards handles clicks by delegation.
 */

import { h, setText } from "../dom.js";
import { icon } from "../icons.js";
import * as time from "../time.js";
import { Status } from "../wire.js";

export const KIND_LABEL = Object.freeze({
  activity: "Activity",
  email: "Email",
  edit_record: "Record edit",
  page: "Page",
  other: "Task",
});

const STATUS_LABEL = Object.freeze({
  [Status.RUNNING]: "Running",
  [Status.POSTPONED]: "Postponed",
  [Status.COMPLETED]: "Completed",
  [Status.CANCELED]: "Canceled",
});

export const recordHref = (record) => `#/records/${encodeURIComponent(record.entity)}/${encodeURIComponent(record.id)}`;

const refs = new WeakMap();

function actionButton(action, label, iconName, cls, titleId) {
  return h(
    "button",
    {
      class: `btn btn--sm ${cls}`,
      type: "button",
      "data-action": action,
      "data-testid": action,
      "aria-describedby": titleId,
      ...(action === "postpone" ? { "aria-haspopup": "menu", "aria-expanded": "false" } : {}),
    },
    icon(iconName),
    h("span", {}, label),
  );
}

function actionsFor(task, titleId, mode) {
  if (mode === "queue" && task.status === Status.RUNNING) {
    return [actionButton("claim", "Claim", "check", "btn--claim", titleId)];
  }
  if (task.status === Status.RUNNING) {
    return [
      actionButton("complete", "Complete", "check", "btn--complete", titleId),
      actionButton("postpone", "Postpone", "clock", "btn--quiet", titleId),
    ];
  }
  if (task.status === Status.POSTPONED) {
    return [actionButton("resume", "Resume now", "resume", "btn--quiet", titleId)];
  }
  return [];
}

/** Panel cards are compact (six and more fit beside an 800 px-high page) and say the same
 * as list rows: the title on its own line, then kind · process · record, then the
 * actions and, at the end of that line, when the task arrived. */
function panelLayout(r, titleId) {
  return h(
    "article",
    { class: "card__inner", "aria-labelledby": titleId },
    h(
      "div",
      { class: "card__body" },
      h("div", { class: "card__head" }, r.title),
      h("p", { class: "card__meta" }, r.kind, r.kindLabel, r.process, r.recordWrap),
      h("div", { class: "card__foot" }, r.actions, r.time),
    ),
  );
}

/** List rows (activities, record page): the time of the last change at the end of the
 * meta line, the record below, status and actions to the right. */
function listLayout(r, titleId) {
  return h(
    "article",
    { class: "card__inner", "aria-labelledby": titleId },
    r.kind,
    h(
      "div",
      { class: "card__body" },
      h("div", { class: "card__head" }, r.title),
      h("p", { class: "card__meta" }, r.kindLabel, r.process, r.time),
      r.recordWrap,
      h("div", { class: "card__foot" }, r.status, r.actions),
    ),
  );
}

let cardNumber = 0;

/** `variant`: "panel" (live list) or "list" (activities and record pages: shows status).
 * `mode`: "own" (Complete, Postpone) or "queue" (a role's unclaimed task: Claim). */
export function createCard(task, { variant = "panel", testid = "task-item", mode = "own" } = {}) {
  // One task can be on the page twice for a moment (claimed: leaving the queue, entering
  // the own list), so title ids are numbered rather than derived from the task id.
  cardNumber += 1;
  const titleId = `${variant}-title-${cardNumber}`;
  const r = {
    kind: h("span", { class: "kind-icon", "aria-hidden": "true" }),
    title: h("a", { class: "card__title", id: titleId, "data-testid": "task-title" }),
    kindLabel: h("span", { class: "card__kind" }),
    process: h("span", { class: "card__process" }),
    record: h("a", { class: "card__record", "data-testid": "task-record" }),
    recordWrap: h(variant === "panel" ? "span" : "p", { class: "card__record-line" }),
    time: h("time", { class: "card__time" }),
    status: h("span", { class: "status-chip", "data-testid": "status" }),
    actions: h("div", { class: "card__actions" }),
    state: null,
    key: "",
    titleId,
    mode,
  };
  r.recordWrap.append(r.record);
  const li = h(
    "li",
    { class: `card card--${variant}`, "data-testid": testid, "data-task-id": task.id },
    variant === "panel" ? panelLayout(r, titleId) : listLayout(r, titleId),
  );
  refs.set(li, r);
  updateCard(li, task);
  return li;
}

export function updateCard(li, task) {
  const r = refs.get(li);
  if (r.task === task) return;
  const changed = r.task && r.task.updatedAt !== task.updatedAt;
  r.task = task;
  li.dataset.status = task.status;
  li.dataset.kind = task.kind;

  if (r.kind.dataset.kind !== task.kind) {
    r.kind.dataset.kind = task.kind;
    r.kind.className = `kind-icon kind-icon--${task.kind}`;
    r.kind.replaceChildren(icon(task.kind));
  }

  const openable = Boolean(task.url) && (task.status === Status.RUNNING || task.status === Status.POSTPONED);
  setText(r.title, task.title);
  if (openable) {
    r.title.setAttribute("href", task.url);
    r.title.removeAttribute("aria-disabled");
  } else {
    r.title.removeAttribute("href");
  }

  setText(r.kindLabel, KIND_LABEL[task.kind]);
  setText(r.process, task.process ? task.process.name : "");
  r.process.hidden = !task.process;

  if (task.record) {
    const href = recordHref(task.record);
    if (r.record.getAttribute("href") !== href) r.record.setAttribute("href", href);
    r.record.replaceChildren(
      icon("record"),
      h("span", { class: "card__record-title" }, task.record.title || task.record.id),
      h("span", { class: "card__record-entity" }, task.record.entity),
    );
    r.recordWrap.hidden = false;
  } else {
    r.recordWrap.hidden = true;
  }

  // Panel cards say when the task arrived; list cards when it last changed.
  const at = li.classList.contains("card--panel") ? task.createdAt : task.updatedAt;
  r.time.dateTime = new Date(at).toISOString();
  r.time.dataset.relative = String(at);
  r.time.title = time.full(at);
  setText(r.time, time.relative(at));

  const statusText =
    task.status === Status.POSTPONED && task.postponedUntil
      ? `Postponed until ${time.when(task.postponedUntil)}`
      : STATUS_LABEL[task.status];
  setText(r.status, statusText);
  r.status.className = `status-chip status-chip--${task.status}`;

  const key = `${task.status}`;
  if (r.key !== key) {
    r.key = key;
    r.actions.replaceChildren(...actionsFor(task, r.titleId, r.mode));
  }

  if (changed && !li.dataset.busy) {
    li.classList.remove("is-updated");
    void li.offsetWidth; // restart the highlight
    li.classList.add("is-updated");
  }
}

/** Mark a card as waiting for the server (after Complete / Postpone / Resume). Buttons
 * stay focusable (aria-disabled, not disabled) so keyboard focus is never lost. */
export function setBusy(li, action) {
  if (!li) return;
  if (action) li.dataset.busy = action;
  else delete li.dataset.busy;
  for (const btn of li.querySelectorAll("button[data-action]")) {
    if (action) btn.setAttribute("aria-disabled", "true");
    else btn.removeAttribute("aria-disabled");
    btn.classList.toggle("is-working", btn.dataset.action === action);
  }
}

export const cardTask = (li) => refs.get(li)?.task ?? null;

/**
 * Clicks on a card's buttons inside `container` → the person's actions: Complete,
 * Postpone (opens the menu under the button), Resume, Claim. One listener per list.
 */
export function delegateCardActions(container, actions, postponeMenu) {
  const handlers = {
    complete: (task, card) => void actions.complete(task, card),
    postpone: (task, card, button) => postponeMenu.open(button, (until) => void actions.postpone(task, card, until)),
    resume: (task, card) => void actions.resume(task, card),
    claim: (task, card) => void actions.claim(task, card),
  };
  container.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button || !container.contains(button)) return;
    const card = button.closest("[data-task-id]");
    const task = card ? cardTask(card) : null;
    if (!task || button.getAttribute("aria-disabled") === "true") return;
    handlers[button.dataset.action]?.(task, card, button);
  });
}

/** Where keyboard focus lands on a card when its neighbour disappears. */
export const focusTarget = (li) => li.querySelector(".card__title[href]") ?? li.querySelector("button");
