/**
 * The panel inside the embeddable bell's popover (embed.js, on a host page of another
 * origin). The bell says `{type: "taskbell.bell"}` to the frame each time it loads; from
 * then on an Escape that nothing in the panel handled (a menu, a dialog, a comment form
 * close first) asks the bell to close the popover with `{type: "taskbell.close"}`, posted
 * to that host page's origin only. Not framed by a bell, nothing changes.
 */

let bellOrigin = null;

/** Whether a bell frames this panel (its Escape closes the bell's popover). */
export const framedByBell = () => bellOrigin !== null;

export function followBell() {
  if (window.parent === window) return;
  window.addEventListener("message", (event) => {
    if (event.source === window.parent && event.data?.type === "taskbell.bell" && event.origin !== "null") {
      bellOrigin = event.origin;
    }
  });
  window.addEventListener("keydown", (event) => {
    if (event.key !== "Escape" || event.defaultPrevented || bellOrigin === null) return;
    if (document.querySelector(":popover-open, dialog[open]")) return; // theirs to close first
    window.parent.postMessage({ type: "taskbell.close" }, bellOrigin);
  });
}
