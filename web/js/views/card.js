/**
 * One task as a card: kind icon, title (a link to the page that completes it), what needs
 * attention (Overdue, Urgent, the due time), kind and process, connected record, time,
 * status and the actions its status allows: a task with `actions` shows its decisions
 * (Approve, Reject …) instead of Complete.
 *
 * `createCard` builds it once; `updateCard` changes only the text and attributes that
 * differ, so focus, hover and animations survive updates. Buttons carry `data-action`;
 * the list that owns the cards handles clicks by delegation.
 */

import { h, setText } from "../dom.js";
import { t } from "../i18n.js";
import { icon } from "../icons.js";
import * as time from "../time.js";
import { Status } from "../wire.js";

const KINDS = new Set(["activity", "email", "edit_record", "page", "other"]);

/** "Activity", "Email", "Record edit", "Page", "Task" in the language shown. */
export const kindLabel = (kind) => t(`kind.${KINDS.has(kind) ? kind : "other"}`);

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

/** One button per decision of the task; `data-outcome` names the action id. */
function decisionButton(action, index, titleId) {
  return h(
    "button",
    {
      class: `btn btn--sm btn--decide ${index === 0 ? "btn--complete" : "btn--quiet"}`,
      type: "button",
      "data-action": "decide",
      "data-testid": "decide",
      "data-outcome": action.id,
      "aria-describedby": titleId,
      ...(action.comment === "none" ? {} : { "aria-haspopup": "dialog", "aria-expanded": "false" }),
    },
    index === 0 ? icon("check") : null,
    h("span", {}, action.label),
  );
}

function actionsFor(task, titleId, mode) {
  if (mode === "queue" && task.status === Status.RUNNING) {
    return [actionButton("claim", t("card.claim"), "check", "btn--claim", titleId)];
  }
  if (task.status === Status.RUNNING && task.actions?.length) {
    return [
      ...task.actions.map((a, i) => decisionButton(a, i, titleId)),
      actionButton("postpone", t("card.postpone"), "clock", "btn--quiet", titleId),
    ];
  }
  if (task.status === Status.RUNNING) {
    return [
      actionButton("complete", t("card.complete"), "check", "btn--complete", titleId),
      actionButton("postpone", t("card.postpone"), "clock", "btn--quiet", titleId),
    ];
  }
  if (task.status === Status.POSTPONED) {
    return [actionButton("resume", t("card.resume"), "resume", "btn--quiet", titleId)];
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
      r.attention,
      h("p", { class: "card__meta" }, r.kind, r.kindLabel, r.process, r.recordWrap),
      h("div", { class: "card__foot" }, r.actions, r.time),
      r.decide,
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
      r.attention,
      h("p", { class: "card__meta" }, r.kindLabel, r.process, r.time),
      r.recordWrap,
      h("div", { class: "card__foot" }, r.status, r.actions),
      r.decide,
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
    attention: h("p", { class: "card__attention", "data-testid": "attention" }),
    decide: h("div", { class: "card__decide-slot" }),
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

  setText(r.kindLabel, kindLabel(task.kind));
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

  renderAttention(r, task, li);

  // Panel cards say when the task arrived, list cards when it last changed; a postponed
  // one, on either, when it comes back (a future time has no "ago").
  const back = task.status === Status.POSTPONED && task.postponedUntil;
  const at = back ? task.postponedUntil : li.classList.contains("card--panel") ? task.createdAt : task.updatedAt;
  r.time.dateTime = new Date(at).toISOString();
  r.time.title = time.full(at);
  if (back) {
    delete r.time.dataset.relative;
    setText(r.time, t("card.back", { when: time.when(at) }));
  } else {
    r.time.dataset.relative = String(at);
    setText(r.time, time.relative(at));
  }

  const outcome = task.outcome ? (task.actions?.find((a) => a.id === task.outcome)?.label ?? task.outcome) : null;
  const statusText =
    task.status === Status.POSTPONED && task.postponedUntil
      ? t("status.postponedUntil", { when: time.when(task.postponedUntil) })
      : task.status === Status.COMPLETED && outcome
        ? t("status.completedAs", { outcome })
        : t(`status.${task.status}`);
  if (task.comment) r.status.title = task.comment;
  else r.status.removeAttribute("title");
  setText(r.status, statusText);
  r.status.className = `status-chip status-chip--${task.status}`;

  const key = `${task.status}|${(task.actions ?? []).map((a) => `${a.id}:${a.label}:${a.comment}`).join(",")}`;
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

const PRIORITY_FLAG = Object.freeze({ urgent: "card.urgent", high: "card.high" });

/** Overdue and Urgent as an icon and a word (colour is never the only signal), then the
 * due time: "Due in 2 h · 14:00", "Overdue since 09:00". Empty lines stay hidden. */
function renderAttention(r, task, li) {
  const open = task.status === Status.RUNNING || task.status === Status.POSTPONED;
  const overdue = open && (task.overdue || (task.dueAt !== null && task.dueAt <= Date.now()));
  const priority = open && PRIORITY_FLAG[task.priority] ? t(PRIORITY_FLAG[task.priority]) : null;
  li.dataset.priority = task.priority ?? "normal";
  li.dataset.overdue = String(overdue);
  const key = `${overdue}|${priority}|${task.dueAt}|${open}`;
  if (r.attentionKey === key) return;
  r.attentionKey = key;
  const parts = [];
  const dueText =
    open && task.dueAt !== null
      ? h(
          "span",
          {
            class: "card__due",
            "data-testid": "due",
            "data-due": String(task.dueAt),
            "data-overdue": String(overdue),
            title: time.full(task.dueAt),
          },
          time.due(task.dueAt, { overdue }),
        )
      : null;
  if (overdue) {
    // One flag: the icon and "Overdue since 09:00" (or just "Overdue" without a due time).
    parts.push(
      h(
        "span",
        { class: "flag flag--overdue", "data-testid": "flag-overdue" },
        icon("alert"),
        dueText ?? t("card.overdue"),
      ),
    );
  }
  if (priority) {
    parts.push(
      h(
        "span",
        { class: `flag flag--${task.priority}`, "data-testid": `flag-${task.priority}` },
        icon(task.priority === "urgent" ? "flame" : "arrowUp"),
        priority,
      ),
    );
  }
  if (dueText && !overdue) parts.push(dueText);
  r.attention.replaceChildren(...parts);
  r.attention.hidden = parts.length === 0;
}

const COMMENT_WORD = Object.freeze({ optional: "card.commentOptional", required: "card.commentRequired" });
let formNumber = 0;

/**
 * Ask for the comment of a decision inside the card: a labelled text box, the decision's
 * own button to send it and Cancel (Escape too). A required comment cannot go blank: the
 * form says so and keeps focus in the box. `onSubmit(comment)` gets the text (null when
 * left empty). Focus goes back to `opener` when the form closes without a decision.
 */
export function openDecision(li, action, opener, onSubmit) {
  const r = refs.get(li);
  closeDecision(li);
  formNumber += 1;
  const boxId = `decide-box-${formNumber}`;
  const errId = `decide-err-${formNumber}`;
  const required = action.comment === "required";
  const box = h("textarea", {
    id: boxId,
    class: "card__decide-box",
    rows: 2,
    maxlength: 4000,
    "data-testid": "decide-comment",
    "aria-required": required ? "true" : null,
  });
  const err = h(
    "p",
    { id: errId, class: "card__decide-error", "data-testid": "decide-error", hidden: true },
    icon("alert"),
    t("card.commentMissing", { label: action.label }),
  );
  const cancel = () => {
    closeDecision(li);
    opener.focus();
  };
  const form = h(
    "form",
    {
      class: "card__decide",
      "data-testid": "decide-form",
      "aria-label": t("card.decideForm", { label: action.label, title: r.task.title }),
      novalidate: true,
      onsubmit: (event) => {
        event.preventDefault();
        const text = box.value.trim();
        if (required && !text) {
          err.hidden = false;
          box.setAttribute("aria-invalid", "true");
          box.setAttribute("aria-describedby", errId);
          box.focus();
          return;
        }
        closeDecision(li);
        onSubmit(text || null);
      },
      onkeydown: (event) => {
        if (event.key === "Escape") {
          event.preventDefault();
          event.stopPropagation();
          cancel();
        } else if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
          event.preventDefault();
          form.requestSubmit();
        }
      },
    },
    h("label", { class: "card__decide-label", for: boxId }, t(COMMENT_WORD[action.comment] ?? "card.comment")),
    box,
    err,
    h(
      "div",
      { class: "card__decide-buttons" },
      h("button", { class: "btn btn--sm btn--complete", type: "submit", "data-testid": "decide-submit" }, action.label),
      h(
        "button",
        { class: "btn btn--sm btn--quiet", type: "button", "data-testid": "decide-cancel", onclick: cancel },
        t("card.cancel"),
      ),
    ),
  );
  r.decide.replaceChildren(form);
  opener.setAttribute("aria-expanded", "true");
  r.opener = opener;
  box.focus();
}

export function closeDecision(li) {
  const r = refs.get(li);
  if (!r) return;
  r.decide.replaceChildren();
  r.opener?.setAttribute("aria-expanded", "false");
  r.opener = null;
}

/**
 * The undo window of a decision: the card's content gives way to "Approved — Undo" (focus
 * on Undo) until `clearPending`. The card stays where it is, so Undo puts it back as it was.
 */
export function showPending(li, text, onUndo) {
  const r = refs.get(li);
  if (!r) return;
  clearPending(li);
  const undo = h(
    "button",
    { class: "btn btn--sm btn--quiet", type: "button", "data-testid": "undo", onclick: onUndo },
    icon("resume"),
    h("span", {}, t("card.undo")),
  );
  r.pending = h(
    "div",
    { class: "card__pending", role: "status", tabindex: "-1", "data-testid": "pending" },
    icon("check"),
    h("span", { class: "card__pending-text", "data-testid": "pending-text" }, text),
    undo,
  );
  li.dataset.pending = "1";
  li.firstElementChild.hidden = true;
  li.append(r.pending);
  undo.focus();
}

/** End the undo window; `sending` keeps the line (without Undo) while the request runs. */
export function clearPending(li, { sending = false } = {}) {
  const r = li ? refs.get(li) : null;
  if (!r?.pending) return;
  if (sending) {
    const undo = r.pending.querySelector("[data-testid=undo]");
    const hadFocus = undo === document.activeElement;
    undo?.remove();
    if (hadFocus) r.pending.focus();
    return;
  }
  const hadFocus = r.pending.contains(document.activeElement);
  r.pending.remove();
  r.pending = null;
  delete li.dataset.pending;
  li.firstElementChild.hidden = false;
  if (hadFocus) (r.actions.querySelector("button") ?? focusTarget(li))?.focus();
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
  const decide = (task, card, button) => {
    const action = task.actions?.find((a) => a.id === button.dataset.outcome);
    if (!action) return;
    if (action.comment === "none") actions.decide(task, card, action, null);
    else openDecision(card, action, button, (comment) => actions.decide(task, card, action, comment));
  };
  const handlers = {
    complete: (task, card) => void actions.complete(task, card),
    decide,
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
  // Opening a task's page from the card (its title link): the hand-off opens the next
  // step directly after this one is done.
  container.addEventListener("click", (event) => {
    const link = event.target.closest("a.card__title[href]");
    const card = link?.closest("[data-task-id]");
    if (card && container.contains(card)) actions.opened(card.dataset.taskId);
  });
}

/** Where keyboard focus lands on a card when its neighbour disappears. */
export const focusTarget = (li) => li.querySelector(".card__title[href]") ?? li.querySelector("button");
