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
export function showNeedsToken(gate, { expired = false } = {}) {
  gate.replaceChildren(
    h(
      "main",
      { class: "gate__card", "aria-labelledby": "gate-title", "data-testid": "needs-token" },
      brand(),
      h("span", { class: "gate__art", "aria-hidden": "true" }, icon("key")),
      h(
        "h1",
        { class: "gate__title", id: "gate-title" },
        expired ? "Your session has ended" : "Open Taskbell from your application",
      ),
      h(
        "p",
        { class: "gate__text" },
        expired
          ? "The sign-in this panel was opened with is no longer valid. Open the communication panel again from your application."
          : "The communication panel shows the process tasks of the person signed in to your business application. That application opens this page with a sign-in token; there is nothing to sign in to here.",
      ),
      h(
        "p",
        { class: "gate__text gate__text--small" },
        "For developers: open ",
        h("code", {}, "/#token=<user token>"),
        ". ",
        h("code", {}, "python -m server token USER"),
        " prints one.",
      ),
    ),
  );
  gate.hidden = false;
}
