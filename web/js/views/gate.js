/**
 * Before the panel: in demo mode, "Who are you?" (pick a demo person or type a name;
 * the page gets the token itself); outside demo mode without a token, a note that the
 * host application must open the panel with one.
 */

import { h } from "../dom.js";
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
        error.textContent = `Couldn't sign in as ${user}: ${err.message}`;
        button?.removeAttribute("aria-busy");
      }
    };
    const field = h("input", {
      class: "input",
      id: "who-name",
      name: "user",
      autocomplete: "username",
      placeholder: "e.g. dana",
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
          user === lastUser ? h("span", { class: "person__hint" }, "last time") : null,
          icon("arrowRight", "icon person__go"),
        ),
      ),
    );
    gate.replaceChildren(
      h(
        "main",
        { class: "gate__card", "aria-labelledby": "who-title" },
        brand(),
        h("h1", { class: "gate__title", id: "who-title" }, "Who are you?"),
        h(
          "p",
          { class: "gate__text" },
          "This is a demo: pick a person and Taskbell signs you in. Each tab can be someone else.",
        ),
        h("ul", { class: "people" }, people),
        h(
          "form",
          {
            class: "gate__form",
            onsubmit: (event) => {
              event.preventDefault();
              const name = field.value.trim();
              if (!/^[\w.@-]{1,64}$/.test(name)) {
                error.textContent = "Use letters, digits and . _ @ - (at most 64).";
                field.focus();
                return;
              }
              void choose(name, event.submitter);
            },
          },
          h("label", { class: "form__label", for: "who-name" }, "Someone else"),
          h(
            "div",
            { class: "gate__row" },
            field,
            h("button", { class: "btn btn--primary", type: "submit", "data-testid": "who-submit" }, "Continue"),
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
      h("h1", { class: "gate__title", id: "gate-title" }, "Open Taskbell from your application"),
      h(
        "p",
        { class: "gate__text" },
        "The communication panel shows the process tasks of the person signed in to your business application. That application opens this page with a sign-in token; there is nothing to sign in to here.",
      ),
      developerHint(),
    ),
  );
  gate.hidden = false;
}

function developerHint() {
  return h(
    "p",
    { class: "gate__text gate__text--small" },
    "For developers: open ",
    h("code", {}, "/#token=<user token>"),
    ". ",
    h("code", {}, "python -m server token USER"),
    " prints one.",
  );
}

const REFUSED = Object.freeze({
  invalid: {
    title: "This sign-in link doesn't work",
    text: "The token this panel was opened with isn't valid here: it may be damaged, or made for another Taskbell server.",
  },
  expired: {
    title: "Your session has ended",
    text: "The sign-in this panel was opened with is no longer valid.",
  },
  revoked: {
    title: "You were signed out",
    text: "Your sign-in was withdrawn by your organisation.",
  },
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
          h("span", {}, "Pick a person again"),
        ),
      )
    : h(
        "p",
        { class: "gate__text" },
        "Open the communication panel again from your application; it signs you in afresh.",
      );
  gate.replaceChildren(
    h(
      "main",
      { class: "gate__card", "aria-labelledby": "gate-title", "data-testid": "token-refused", "data-why": why },
      brand(),
      h("span", { class: "gate__art gate__art--alert", "aria-hidden": "true" }, icon("alert")),
      h("h1", { class: "gate__title", id: "gate-title" }, say.title),
      h(
        "p",
        { class: "gate__text" },
        demo ? `${say.text} This is a demo: pick a person and Taskbell signs you in.` : say.text,
      ),
      next,
      demo ? null : developerHint(),
    ),
  );
  gate.hidden = false;
  gate.querySelector("button, h1")?.focus?.();
}
