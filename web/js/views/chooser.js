/**
 * The "Move down the process" chooser: a dialog with one button per open step; picking
 * one closes it and opens that step (resuming it first when postponed). Used by the
 * record page's Process button and by a selection in the activities list.
 */

import { h } from "../dom.js";
import { t } from "../i18n.js";
import { icon } from "../icons.js";
import * as time from "../time.js";
import { Status } from "../wire.js";
import { kindLabel } from "./card.js";

/** Show the chooser of `tasks` in `dialog`; `lede` says what they are, `pick(task)` opens
 * one, and focus returns to `returnTo` when the dialog closes. */
export function showChooser(dialog, { tasks, lede, pick, returnTo }) {
  const choice = (task) =>
    h(
      "li",
      {},
      h(
        "button",
        {
          class: "choice",
          type: "button",
          "data-testid": "process-choice",
          "data-task-id": task.id,
          onclick: () => {
            dialog.close();
            pick(task);
          },
        },
        h("span", { class: `kind-icon kind-icon--${task.kind}`, "aria-hidden": "true" }, icon(task.kind)),
        h(
          "span",
          { class: "choice__text" },
          h("span", { class: "choice__title" }, task.title),
          h("span", { class: "choice__meta" }, [kindLabel(task.kind), task.process?.name].filter(Boolean).join(" · ")),
        ),
        task.status === Status.POSTPONED
          ? h(
              "span",
              { class: "status-chip status-chip--postponed" },
              t("record.postponed", { when: time.when(task.postponedUntil ?? Date.now()) }),
            )
          : h("span", { class: "status-chip status-chip--running" }, t("status.running")),
        icon("arrowRight", "icon choice__go"),
      ),
    );
  dialog.replaceChildren(
    h(
      "div",
      { class: "dialog__body", "data-testid": "process-chooser" },
      h(
        "header",
        { class: "dialog__head" },
        h("h2", { class: "dialog__title", id: "dialog-title" }, t("record.choose")),
        h(
          "button",
          { class: "icon-btn", type: "button", "aria-label": t("record.close"), onclick: () => dialog.close() },
          icon("x"),
        ),
      ),
      h("p", { class: "dialog__lede" }, lede),
      h("ul", { class: "choices" }, tasks.map(choice)),
    ),
  );
  dialog.addEventListener("close", () => returnTo?.isConnected && returnTo.focus(), { once: true });
  dialog.showModal();
  dialog.querySelector(".choice")?.focus();
}
