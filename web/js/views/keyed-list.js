/**
 * A list whose DOM is keyed by task id: an item that stays is updated in place (never
 * re-created), a new one slides open, a gone one folds away. Renders are coalesced to
 * one per frame with every other view (dom.js `renderSoon`), so a burst of changes moves
 * the list once, together with the badge.
 *
 * A leaving item stays in the DOM only for its animation and is marked
 * `data-leaving` + inert, with its `data-testid` suffixed `-leaving`.
 */

import { flushRenders, motionAllowed, renderSoon } from "../dom.js";

const ENTER_MS = 240;
const LEAVE_MS = 200;
const CLAIMED_MS = 320;
const EASE = "cubic-bezier(.2, .8, .2, 1)";
/** More simultaneous changes than this are applied without animation: calmer than fifty moving cards. */
const ANIMATE_AT_MOST = 8;

export class KeyedList {
  #nodes = new Map();
  #items = [];
  #animateNext = false;

  /**
   * @param {HTMLElement} container the `<ul>`
   * @param {{create(item): HTMLElement, update(el, item): void, focusTarget?(el): HTMLElement|null}} render
   */
  constructor(container, render) {
    this.container = container;
    this.render = render;
  }

  get size() {
    return this.#nodes.size;
  }

  element(id) {
    return this.#nodes.get(id) ?? null;
  }

  /** Show `items` (in this order) at the next frame; `animate` for live changes. */
  set(items, { animate = true } = {}) {
    this.#items = items;
    this.#animateNext = this.#animateNext || animate;
    renderSoon(this, () => this.#apply());
  }

  /** Apply a pending `set` now (before measuring or reading the DOM). */
  flush() {
    flushRenders();
  }

  #apply() {
    const items = this.#items;
    const wanted = new Set(items.map((i) => i.id));
    const leaving = [...this.#nodes.keys()].filter((id) => !wanted.has(id));
    const entering = items.filter((i) => !this.#nodes.has(i.id)).length;
    const animate =
      this.#animateNext && motionAllowed() && !document.hidden && leaving.length + entering <= ANIMATE_AT_MOST;
    this.#animateNext = false;

    const gone = leaving.map((id) => {
      const el = this.#nodes.get(id);
      this.#nodes.delete(id);
      el.dataset.leaving = "1";
      return el;
    });
    for (const el of gone) this.#leave(el, animate);

    // Moving a node takes focus from what is inside it: a card that moves (re-sorted by
    // the server's overdue flag, say) keeps the keyboard user's place.
    const focused = this.container.contains(document.activeElement) ? document.activeElement : null;
    let prev = null;
    const entered = [];
    for (const item of items) {
      let el = this.#nodes.get(item.id);
      if (el) {
        this.render.update(el, item);
      } else {
        el = this.render.create(item);
        this.#nodes.set(item.id, el);
        entered.push(el);
      }
      const ref = this.#nextLive(prev ? prev.nextElementSibling : this.container.firstElementChild);
      if (ref !== el) this.container.insertBefore(el, ref);
      prev = el;
    }
    if (focused?.isConnected && document.activeElement !== focused) focused.focus({ preventScroll: true });
    if (animate) for (const el of entered) this.#enter(el);
  }

  #nextLive(el) {
    let node = el;
    while (node?.dataset.leaving) node = node.nextElementSibling;
    return node;
  }

  #enter(el) {
    const height = el.offsetHeight;
    el.animate(
      [
        { height: "0px", opacity: 0, transform: "translateY(-6px)" },
        { height: `${height}px`, opacity: 1, transform: "none" },
      ],
      { duration: ENTER_MS, easing: EASE },
    );
  }

  #leave(el, animate) {
    if (el.contains(document.activeElement)) this.#moveFocusFrom(el, document.activeElement);
    el.inert = true;
    if (el.dataset.testid) el.dataset.testid = `${el.dataset.testid}-leaving`;
    if (!animate) {
      el.remove();
      return;
    }
    const height = el.offsetHeight;
    // `data-leave-as="claimed"`: someone took it, so it slides away before folding.
    const claimed = el.dataset.leaveAs === "claimed";
    const anim = el.animate(
      claimed
        ? [
            { height: `${height}px`, opacity: 1, transform: "none" },
            { height: `${height}px`, opacity: 0.5, transform: "translateX(35%)", offset: 0.55 },
            { height: "0px", opacity: 0, transform: "translateX(60%)" },
          ]
        : [
            { height: `${height}px`, opacity: 1 },
            { height: "0px", opacity: 0 },
          ],
      { duration: claimed ? CLAIMED_MS : LEAVE_MS, easing: EASE, fill: "forwards" },
    );
    anim.finished.then(
      () => el.remove(),
      () => el.remove(),
    );
  }

  /** Keyboard users keep their place: focus the same control of the next item (or the
   * previous one, or the list itself). */
  #moveFocusFrom(el, focused) {
    let target = this.#nextLive(el.nextElementSibling);
    if (!target) {
      target = el.previousElementSibling;
      while (target?.dataset.leaving) target = target.previousElementSibling;
    }
    const same = focused.dataset.testid;
    const focusable =
      target && same
        ? (target.querySelector(`[data-testid="${same}"]`) ?? this.render.focusTarget?.(target))
        : target
          ? this.render.focusTarget?.(target)
          : null;
    (focusable ?? this.container).focus({ preventScroll: false });
  }
}
