/**
 * Small charts drawn by hand as inline SVG (no library, nothing fetched): horizontal bars,
 * one per item, each labelled with its name and its value in words, so colour is never
 * the only signal. Every chart is a `<figure>` whose SVG is one image to screen readers
 * (`role="img"`, its `<title>` and a `<desc>` that says every value), followed by the same
 * figures as a table (in a disclosure, open for anyone who wants the numbers).
 */

import { h } from "../dom.js";
import { t } from "../i18n.js";

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 360;
const LABEL_W = 118; // label column (text ends here, right-aligned)
const VALUE_W = 86; // room after the longest bar for its value
const ROW = 30;
const BAR = 18;

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) el.setAttribute(name, String(value));
  el.append(...children);
  return el;
}

/**
 * `items`: `[{label, value, display, tone}]` (`value` a number ≥ 0 that sets the bar's
 * length, `display` the text shown for it, `tone` a CSS modifier). Returns the figure.
 */
export function barChart({ id, title, caption, valueHeader, items }) {
  const max = Math.max(1, ...items.map((i) => i.value));
  const span = WIDTH - LABEL_W - VALUE_W - 8;
  const height = items.length * ROW + 6;
  const rows = items.map((item, n) => {
    const y = n * ROW + 4;
    // A zero still shows a sliver, so the row does not read as missing.
    const length = item.value > 0 ? Math.max(3, (item.value / max) * span) : 1.5;
    return svg(
      "g",
      { class: `chart__row chart__row--${item.tone}`, "data-label": item.label, "data-value": item.value },
      svg(
        "text",
        { class: "chart__label", x: LABEL_W - 8, y: y + BAR / 2, "dominant-baseline": "central", "text-anchor": "end" },
        item.label,
      ),
      svg("rect", { class: "chart__bar", x: LABEL_W, y, width: length.toFixed(1), height: BAR, rx: 3 }),
      svg(
        "text",
        { class: "chart__value", x: LABEL_W + length + 6, y: y + BAR / 2, "dominant-baseline": "central" },
        item.display,
      ),
    );
  });
  const summary = items.map((i) => `${i.label}: ${i.display}`).join(", ");
  const picture = svg(
    "svg",
    {
      class: "chart__svg",
      viewBox: `0 0 ${WIDTH} ${height}`,
      role: "img",
      "aria-labelledby": `${id}-title ${id}-desc`,
      "data-testid": id,
    },
    svg("title", { id: `${id}-title` }, title),
    svg("desc", { id: `${id}-desc` }, summary),
    svg("line", { class: "chart__axis", x1: LABEL_W, x2: LABEL_W, y1: 0, y2: height }),
    ...rows,
  );
  const table = h(
    "table",
    { class: "chart__table", "data-testid": `${id}-table` },
    h("caption", { class: "visually-hidden" }, title),
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        h("th", { scope: "col" }, t("processes.chart.item")),
        h("th", { scope: "col", class: "num" }, valueHeader),
      ),
    ),
    h(
      "tbody",
      {},
      items.map((i) => h("tr", {}, h("th", { scope: "row" }, i.label), h("td", { class: "num" }, i.display))),
    ),
  );
  return h(
    "figure",
    { class: "chart" },
    h(
      "figcaption",
      { class: "chart__caption" },
      h("span", { class: "chart__title" }, title),
      h("span", { class: "chart__note" }, caption),
    ),
    picture,
    h("details", { class: "chart__figures" }, h("summary", {}, t("processes.chart.asTable")), table),
  );
}
