/**
 * Before the panel: in demo mode, "Who are you?" (pick a demo person or type a name;
 * the page gets the token itself); outside demo mode without a token, a note that the
 * host application must open the panel with one.
 */

import { h } from "../dom.js";
import { t, tParts } from "../i18n.js";
import { icon } from "../icons.js";

const initials = (name) => name.charAt(0).toUpperCase();

function brand() {
  return h(
    "div",
    { class: "gate__brand" },
    h("span", { class: "brand__mark", "aria-hidden": "true" }),
    h("span", { class: "brand__name" }, "Taskbell"),
  );
}

/** Resolves with the chosen user once the session holds a token. */
export function pickDemoUser(gate, { users, session, lastUser }) {
  return new Promise((resolve) => {
    const error = h("p", { class: "form__error", role: "alert", id: "who-error" });
    const choose = async (user, button) => {
      error.textContent = "";
      button?.setAttribute("aria-busy", "true");
      try {
        await session.signInDemo(user);
        resolve(user);
      } catch (err) {
        error.textContent = t("gate.signInFailed", { user, message: err.message });
        button?.removeAttribute("aria-busy");
      }
    };
    const field = h("input", {
      class: "input",
      id: "who-name",
      name: "user",
      autocomplete: "username",
      placeholder: t("gate.example"),
      pattern: "[A-Za-z0-9_.@-]{1,64}",
      "data-testid": "who-name",
      "aria-describedby": "who-error",
    });
    const people = users.map((user) =>
      h(
        "li",
        {},
        h(
          "button",
          {
            class: `person${user === lastUser ? " person--last" : ""}`,
            type: "button",
            "data-testid": "who-user",
            "data-user": user,
            onclick: (event) => void choose(user, event.currentTarget),
          },
          h("span", { class: `avatar avatar--${users.indexOf(user) % 5}`, "aria-hidden": "true" }, initials(user)),
          h("span", { class: "person__name" }, user),
          user === lastUser ? h("span", { class: "person__hint" }, t("gate.lastTime")) : null,
          icon("arrowRight", "icon person__go"),
        ),
      ),
    );
    gate.replaceChildren(
      h(
        "main",
        { class: "gate__card", "aria-labelledby": "who-title" },
        brand(),
        h("h1", { class: "gate__title", id: "who-title" }, t("gate.who")),
        h("p", { class: "gate__text" }, t("gate.demoText")),
        h("ul", { class: "people" }, people),
        h(
          "form",
          {
            class: "gate__form",
            onsubmit: (event) => {
              event.preventDefault();
              const name = field.value.trim();
              if (!/^[\w.@-]{1,64}$/.test(name)) {
                error.textContent = t("gate.badName");
                field.focus();
                return;
              }
              void choose(name, event.submitter);
            },
          },
          h("label", { class: "form__label", for: "who-name" }, t("gate.someoneElse")),
          h(
            "div",
            { class: "gate__row" },
            field,
            h("button", { class: "btn btn--primary", type: "submit", "data-testid": "who-submit" }, t("gate.continue")),
          ),
          error,
        ),
      ),
    );
    gate.hidden = false;
    gate.querySelector(".person")?.focus();
  });
}

/** Outside demo mode, without a token: nothing to do but explain. */
export function showNeedsToken(gate) {
  gate.replaceChildren(
    h(
      "main",
      { class: "gate__card", "aria-labelledby": "gate-title", "data-testid": "needs-token" },
      brand(),
      h("span", { class: "gate__art", "aria-hidden": "true" }, icon("key")),
      h("h1", { class: "gate__title", id: "gate-title" }, t("gate.needsToken")),
      h("p", { class: "gate__text" }, t("gate.needsTokenText")),
      developerHint(),
    ),
  );
  gate.hidden = false;
}

function developerHint() {
  return h(
    "p",
    { class: "gate__text gate__text--small" },
    ...tParts("gate.devHint", {
      url: h("code", {}, `/#token=<${t("gate.userToken")}>`),
      command: h("code", {}, `python -m server token ${t("gate.userArg")}`),
    }),
  );
}

/** Catalogue keys of the title and text for each reason. */
const REFUSED = Object.freeze({
  invalid: { title: "gate.invalid", text: "gate.invalidText" },
  expired: { title: "gate.expired", text: "gate.expiredText" },
  revoked: { title: "gate.revoked", text: "gate.revokedText" },
});

/**
 * The server refused the token before the panel ever showed anything (or the page could
 * tell by itself that it is no token at all / has expired): a whole page that says so,
 * instead of a panel whose placeholders never fill. `why`: "invalid" | "expired" |
 * "revoked". In demo mode it offers to pick a person again (`onPickAgain`); elsewhere only
 * the host application can hand over a new token.
 */
export function showTokenRefused(gate, { why, demo, onPickAgain }) {
  const say = REFUSED[why] ?? REFUSED.invalid;
  const next = demo
    ? h(
        "div",
        { class: "gate__actions" },
        h(
          "button",
          { class: "btn btn--primary", type: "button", "data-testid": "pick-again", onclick: () => onPickAgain() },
          icon("arrowRight"),
          h("span", {}, t("gate.pickAgain")),
        ),
      )
    : h("p", { class: "gate__text" }, t("gate.openAgain"));
  gate.replaceChildren(
    h(
      "main",
      { class: "gate__card", "aria-labelledby": "gate-title", "data-testid": "token-refused", "data-why": why },
      brand(),
      h("span", { class: "gate__art gate__art--alert", "aria-hidden": "true" }, icon("alert")),
      h("h1", { class: "gate__title", id: "gate-title" }, t(say.title)),
      h("p", { class: "gate__text" }, demo ? t("gate.demoAgain", { text: t(say.text) }) : t(say.text)),
      next,
      demo ? null : developerHint(),
    ),
  );
  gate.hidden = false;
  gate.querySelector("button, h1")?.focus?.();
}
