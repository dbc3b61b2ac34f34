/**
 * The panel's languages: message catalogues (i18n/en.js, de.js, fr.js), `t(key, params)`
 * with plurals through `Intl.PluralRules`, and the `Intl` formatters of the language
 * shown.
 *
 * Which language: the token's `locale` claim, else the browser's languages, else English
 * (`negotiate`). The locale kept is the person's own tag ("de-AT", "en-GB"), so dates
 * and times follow their region; the catalogue is chosen by its language ("de").
 * `<html lang>` always names the language shown.
 *
 * A catalogue entry is a string with `{name}` placeholders, or plural forms
 * `{one: "…", other: "…"}` (any `Intl.PluralRules` category, and exact `"=0"`, `"=1"`
 * forms that win over the category) chosen by the number `params.n`.
 */

import de from "./i18n/de.js";
import en from "./i18n/en.js";
import fr from "./i18n/fr.js";

export const CATALOGUES = Object.freeze({ en, de, fr });
export const FALLBACK = "en";

let current = FALLBACK;
let messages = en;
let pluralRules = new Intl.PluralRules(FALLBACK);
const formats = new Map();

/** A well-formed BCP 47 tag for `value` ("de_DE" → "de-DE"), or null. */
function canonical(value) {
  if (typeof value !== "string" || !value.trim()) return null;
  try {
    return Intl.getCanonicalLocales(value.trim().replace(/_/g, "-"))[0] ?? null;
  } catch {
    return null;
  }
}

const languageOf = (tag) => tag.split("-")[0].toLowerCase();

/** The first of `candidates` (most wanted first) that has a catalogue, as a canonical
 * tag; English when none has. */
export function negotiate(candidates) {
  for (const candidate of candidates) {
    const tag = canonical(candidate);
    if (tag && Object.hasOwn(CATALOGUES, languageOf(tag))) return tag;
  }
  return FALLBACK;
}

/** The language the person asked for: the token's claim first, then the browser's. */
export function wantedLocale(claim = null) {
  const browser = navigator.languages?.length ? navigator.languages : [navigator.language];
  return negotiate([claim, ...browser]);
}

/** Show the panel in `tag` from now on (texts rendered later; `translateDom` for the
 * page's own markup). */
export function setLocale(tag) {
  const chosen = negotiate([tag]);
  current = chosen;
  messages = CATALOGUES[languageOf(chosen)];
  pluralRules = new Intl.PluralRules(chosen);
  formats.clear();
  document.documentElement.lang = chosen;
  return chosen;
}

/** The locale shown ("de-AT"). */
export const locale = () => current;

/** Whether the language shown has its own text for `key` (else `t` falls back to English). */
export const has = (key) => Object.hasOwn(messages, key);

function pick(entry, n, rules = pluralRules) {
  if (typeof entry === "string") return entry;
  const count = Number(n);
  return entry[`=${count}`] ?? entry[rules.select(count)] ?? entry.other;
}

function fill(text, params) {
  return text.replace(/\{(\w+)\}/g, (whole, name) => (Object.hasOwn(params, name) ? String(params[name]) : whole));
}

/** The text of `key` in the language shown, with `params` filled in; a plural entry is
 * chosen by `params.n`. A key missing in that language falls back to English, an unknown
 * key is returned as it is (so a mistake shows, instead of an empty label). */
export function t(key, params = {}) {
  const entry = messages[key] ?? en[key];
  if (entry === undefined) return key;
  return fill(pick(entry, params.n), params);
}

/** A `t` of its own for `tag` (negotiated; `.locale` says which) that leaves the page's
 * language alone: for the embeddable bell, which lives on a host page. */
export function translator(tag) {
  const chosen = negotiate([tag]);
  const table = CATALOGUES[languageOf(chosen)];
  const rules = new Intl.PluralRules(chosen);
  const translate = (key, params = {}) => {
    const entry = table[key] ?? en[key];
    return entry === undefined ? key : fill(pick(entry, params.n, rules), params);
  };
  translate.locale = chosen;
  return translate;
}

/**
 * Like `t`, but placeholders may be DOM nodes: returns the text around them and the
 * nodes, in the order the language puts them ("open {url}. {command} prints one.").
 */
export function tParts(key, params = {}) {
  const entry = messages[key] ?? en[key] ?? key;
  const text = pick(entry, params.n);
  const parts = [];
  let last = 0;
  for (const m of text.matchAll(/\{(\w+)\}/g)) {
    if (!Object.hasOwn(params, m[1])) continue;
    if (m.index > last) parts.push(text.slice(last, m.index));
    const value = params[m[1]];
    parts.push(typeof value === "object" && value !== null ? value : String(value));
    last = m.index + m[0].length;
  }
  if (last < text.length) parts.push(text.slice(last));
  return parts;
}

/** A cached `Intl` formatter of the locale shown. */
function format(kind, Make, options) {
  const key = `${kind}|${JSON.stringify(options)}`;
  let made = formats.get(key);
  if (!made) {
    made = new Make(current, options);
    formats.set(key, made);
  }
  return made;
}

export const dateFormat = (options) => format("date", Intl.DateTimeFormat, options);
export const relativeFormat = (options) => format("relative", Intl.RelativeTimeFormat, options);

/**
 * The page's own markup (index.html) in the language shown: an element with
 * `data-i18n="key"` gets that text, and `data-i18n-attrs="aria-label:key title:key"`
 * those attributes.
 */
export function translateDom(root) {
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-attrs]")) {
    for (const pair of el.dataset.i18nAttrs.split(/\s+/).filter(Boolean)) {
      const [attr, key] = pair.split(":");
      el.setAttribute(attr, t(key));
    }
  }
}
