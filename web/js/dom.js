/**
 * Small DOM helpers: an element builder, the screen-reader announcer, toasts, and the
 * motion preference. Text always goes in as text nodes, never as HTML.
 */

import { t } from "./i18n.js";
import { icon } from "./icons.js";

/** `h("button", {class: "btn", onclick}, "Text", child)`. `null`/`false` children are skipped. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "dataset") {
      Object.assign(el.dataset, value);
    } else if (value === true) {
      el.setAttribute(name, "");
    } else {
      el.setAttribute(name, String(value));
    }
  }
  el.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

export const setText = (el, text) => {
  if (el.textContent !== text) el.textContent = text;
};

const reducedMotion = window.matchMedia("(prefers-reduced-motion: reduce)");
export const motionAllowed = () => !reducedMotion.matches;

/** A page whose frames are held back (a tab behind another in its window) still renders
 * within this long. */
const FRAME_AT_MOST_MS = 40;
const renders = new Map();
let frame = 0;
let frameTimer = 0;

/**
 * Render `fn` with everything else that changed, once, at the next frame (or after
 * FRAME_AT_MOST_MS when the browser holds frames back; at once in a hidden tab, which gets
 * none). The badge, the tab counts and the lists all render through here, so they always
 * show the same feed message, and a later `renderSoon` with the same `key` replaces an
 * earlier one not yet run.
 */
export function renderSoon(key, fn) {
  renders.set(key, fn);
  if (document.hidden) {
    flushRenders();
    return;
  }
  if (!frame) {
    frame = window.requestAnimationFrame(flushRenders);
    frameTimer = window.setTimeout(flushRenders, FRAME_AT_MOST_MS);
  }
}

/** Run every pending render now (before measuring or reading the DOM). */
export function flushRenders() {
  window.cancelAnimationFrame(frame);
  window.clearTimeout(frameTimer);
  frame = 0;
  frameTimer = 0;
  const due = [...renders.values()];
  renders.clear();
  for (const fn of due) {
    try {
      fn();
    } catch (err) {
      console.error("render failed", err);
    }
  }
}

/**
 * The polite aria-live region. Messages said within a short window are merged into one
 * announcement, so a burst of fifty changes is one sentence, not fifty.
 */
export class Announcer {
  #pending = [];
  #timer = 0;

  constructor(region) {
    this.region = region;
  }

  say(message, { group } = {}) {
    this.#pending.push({ message, group });
    window.clearTimeout(this.#timer);
    this.#timer = window.setTimeout(() => this.#flush(), 400);
  }

  #flush() {
    const items = this.#pending;
    this.#pending = [];
    const groups = new Map();
    const lines = [];
    for (const item of items) {
      if (!item.group) {
        lines.push(item.message);
        continue;
      }
      const g = groups.get(item.group.key) ?? { ...item.group, n: 0, first: item.message };
      g.n += 1;
      groups.set(item.group.key, g);
    }
    for (const g of groups.values()) lines.push(g.n === 1 ? g.first : g.many(g.n));
    if (!lines.length) return;
    const p = document.createElement("p");
    p.textContent = lines.join(" ");
    this.region.append(p);
    while (this.region.childElementCount > 5) this.region.firstElementChild.remove();
  }
}

/**
 * Short messages at the bottom of the page (beside the panel, never over it), optionally
 * with one action ("Undo"). At most three at a time; the same message again while it is
 * still shown is not a second toast: the shown one counts it ("×3") and stays longer.
 */
export class Toasts {
  #shown = new Map();

  constructor(region) {
    this.region = region;
  }

  show(message, { tone = "info", action = null, timeout = 5000 } = {}) {
    const key = `${tone}\u0000${message}\u0000${action?.label ?? ""}`;
    const same = this.#shown.get(key);
    if (same?.toast.isConnected && !same.toast.classList.contains("is-leaving")) {
      same.repeat(action);
      return same.close;
    }
    let timer = 0;
    let times = 1;
    let run = action?.run;
    const close = () => {
      window.clearTimeout(timer);
      if (this.#shown.get(key)?.toast === toast) this.#shown.delete(key);
      if (!toast.isConnected) return;
      toast.classList.add("is-leaving");
      window.setTimeout(() => toast.remove(), motionAllowed() ? 180 : 0);
    };
    const arm = () => {
      window.clearTimeout(timer);
      if (timeout) timer = window.setTimeout(close, action ? timeout + 3000 : timeout);
    };
    const actionBtn = action
      ? h(
          "button",
          {
            class: "toast__action",
            type: "button",
            onclick: () => {
              close();
              run();
            },
          },
          action.label,
        )
      : null;
    const counter = h("span", { class: "toast__times", "data-testid": "toast-times", hidden: true });
    const toast = h(
      "div",
      { class: `toast toast--${tone}`, role: tone === "error" ? "alert" : "status", "data-testid": "toast" },
      icon(tone === "error" ? "alert" : "done", "icon toast__icon"),
      h("span", { class: "toast__text" }, message),
      counter,
      actionBtn,
      h(
        "button",
        { class: "toast__close", type: "button", "aria-label": t("page.dismiss"), onclick: close },
        icon("x"),
      ),
    );
    const repeat = (again) => {
      times += 1;
      // An action of the latest occurrence wins (its Undo is the one that makes sense).
      if (again) run = again.run;
      counter.textContent = `×${times}`;
      counter.hidden = false;
      arm();
    };
    this.#shown.set(key, { toast, close, repeat });
    this.region.append(toast);
    while (this.region.childElementCount > 3) this.region.firstElementChild.remove();
    arm();
    return close;
  }
}
