"""The embeddable bell (``/embed.js``, ``<taskbell-bell>``) on a host page of another
origin: a tiny HTTP server of the test's own serves the host application's page with a
strict Content-Security-Policy, and the bell on it follows the person's count live, opens
the panel in a popover frame, works from the keyboard alone, breaks no host policy, and
says plainly when the server's Origin allow-list refuses the host."""

from __future__ import annotations

import socket
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import ConsoleMessage, Locator, Page, expect

from server.auth import mint_token
from tests.browser.conftest import DESKTOP, TIMEZONE, Browsing
from tests.browser.support import SECRET, Producer, new_id, user_token
from tests.support.server_proc import ServerProcess

HOST_CSS = b"""
body { margin: 0; font: 15px/1.5 system-ui, sans-serif; background: #f4f6fa; }
.topbar { display: flex; align-items: center; gap: 16px; padding: 8px 20px;
  background: #fff; border-bottom: 1px solid #dde1ea; }
.topbar a { font-weight: 700; color: #1d2433; text-decoration: none; }
.topbar input { margin-left: auto; padding: 6px 10px; }
main { padding: 24px 20px; }
"""

# Runs first (a file of the host's own origin, as its CSP wants): keeps every policy
# violation the page reports, for the test to read.
HOST_JS = b"""
window.violations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.violations.push(`${e.violatedDirective} ${e.blockedURI}`);
}, true);
"""


def host_page(taskbell: str, token: str | None) -> bytes:
    bell = (
        f'<taskbell-bell token="{token}"></taskbell-bell>'
        if token
        else "<taskbell-bell></taskbell-bell>"
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Acme CRM</title>
<link rel="stylesheet" href="/host.css">
<script src="/host.js"></script>
<script type="module" src="{taskbell}/embed.js"></script>
</head><body>
<header class="topbar"><a href="/" id="home">Acme CRM</a>
<input id="search" aria-label="Search accounts" placeholder="Search accounts">
{bell}</header>
<main><h1>Accounts</h1><p id="content">The host application's own page.</p></main>
</body></html>""".encode()


class HostSite:
    """The host application: its own origin (another port), a strict CSP naming Taskbell."""

    def __init__(self, taskbell: str) -> None:
        parsed = urllib.parse.urlsplit(taskbell)
        ws = f"ws://{parsed.netloc}"
        self.csp = (
            f"default-src 'self'; script-src 'self' {taskbell}; connect-src {taskbell} {ws}; "
            f"frame-src {taskbell}; style-src 'self'; img-src 'self'; base-uri 'none'"
        )
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                query = urllib.parse.parse_qs(url.query)
                if url.path == "/":
                    body, kind = host_page(taskbell, query.get("token", [None])[0]), "text/html"
                elif url.path == "/host.css":
                    body, kind = HOST_CSS, "text/css"
                elif url.path == "/host.js":
                    body, kind = HOST_JS, "text/javascript"
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", f"{kind}; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Content-Security-Policy", site.csp)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, token: str | None) -> str:
        return f"{self.origin}/" + (f"?token={urllib.parse.quote(token)}" if token else "")

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def host(server: ServerProcess) -> Iterator[HostSite]:
    site = HostSite(server.base_url)
    yield site
    site.close()


def open_host(
    browsing: Browsing,
    site: HostSite,
    user: str | None,
    *,
    token: str | None = None,
    browser_locale: str | None = None,
) -> tuple[Page, list[str]]:
    """The host page with the bell (``token``, else one of ``user``; in a browser of
    ``browser_locale`` when given); returns it and its console messages."""
    ctx = None
    if browser_locale is not None:
        ctx = browsing.browser.new_context(
            viewport=DESKTOP,  # type: ignore[arg-type]
            timezone_id=TIMEZONE,
            locale=browser_locale,
        )
        browsing.contexts.append(ctx)
    page = browsing.page(ctx)
    console: list[str] = []

    def keep(msg: ConsoleMessage) -> None:
        console.append(f"{msg.type}: {msg.text}")

    page.on("console", keep)
    page.goto(site.url(token or (user_token(user) if user else None)))
    return page, console


def bell(page: Page) -> Locator:
    return page.locator("taskbell-bell").get_by_role("button")


def wait_live(page: Page) -> None:
    expect(page.locator("taskbell-bell")).to_have_attribute("data-state", "live")


def assert_no_violation(page: Page, console: list[str]) -> None:
    assert page.evaluate("window.violations") == []
    assert not [m for m in console if "Content Security Policy" in m], console


def focused_in_bell(page: Page) -> bool:
    return bool(
        page.evaluate(
            "document.activeElement?.localName === 'taskbell-bell' && "
            "document.activeElement.shadowRoot.activeElement?.localName === 'button'"
        )
    )


def test_the_bell_follows_every_feed_live_on_a_host_page(
    browsing: Browsing, host: HostSite, producer: Producer, user: str, output_dir: Path
) -> None:
    role = new_id("role")
    producer.set_members(role, [user])
    page, console = open_host(browsing, host, user)
    wait_live(page)
    badge = page.locator("taskbell-bell").get_by_test_id("badge")
    expect(badge).to_have_count(0)
    expect(bell(page)).to_have_attribute("aria-label", "Process tasks")

    own = producer.create(user, "Approve invoice INV-7")
    expect(bell(page)).to_have_attribute("aria-label", "1 process task")
    expect(badge).to_have_text("1")
    queued = producer.create_for_role(role, "Check the delivery note")
    expect(bell(page)).to_have_attribute("aria-label", "2 process tasks")
    expect(badge).to_have_attribute("aria-label", "2 process tasks")
    announcer = page.locator("taskbell-bell").get_by_test_id("announcer")
    expect(announcer).to_have_text("2 process tasks")
    expect(announcer).to_have_attribute("aria-live", "polite")
    page.screenshot(path=str(output_dir / "embed-bell-2-tasks.png"))

    producer.complete(own["id"])
    expect(bell(page)).to_have_attribute("aria-label", "1 process task")
    producer.cancel(queued["id"])
    expect(badge).to_have_count(0)
    expect(bell(page)).to_have_attribute("aria-label", "Process tasks")
    assert_no_violation(page, console)
    # The check can fail: an inline style on the host page is reported.
    page.evaluate("document.getElementById('content').setAttribute('style', 'color: red')")
    page.wait_for_function("window.violations.length > 0")


def test_the_popover_opens_the_panel_and_escape_or_a_click_outside_closes_it(
    browsing: Browsing, host: HostSite, producer: Producer, user: str, output_dir: Path
) -> None:
    producer.create(user, "Approve invoice INV-8")
    page, console = open_host(browsing, host, user)
    expect(bell(page)).to_have_attribute("aria-label", "1 process task")
    button = bell(page)
    popover_id = button.get_attribute("aria-controls")
    assert popover_id
    expect(button).to_have_attribute("aria-expanded", "false")

    button.click()
    expect(button).to_have_attribute("aria-expanded", "true")
    popover = page.locator("taskbell-bell").locator(f"#{popover_id}")
    expect(popover).to_be_visible()
    expect(popover).to_have_attribute("role", "dialog")
    panel = page.frame_locator("taskbell-bell >> iframe[data-testid=panel-frame]")
    expect(panel.get_by_test_id("conn-state")).to_have_attribute("data-state", "live")
    expect(panel.get_by_text("Approve invoice INV-8").first).to_be_visible()
    page.screenshot(path=str(output_dir / "embed-popover-open.png"))

    page.keyboard.press("Escape")
    expect(popover).to_be_hidden()
    expect(button).to_have_attribute("aria-expanded", "false")
    assert focused_in_bell(page)

    button.click()
    expect(popover).to_be_visible()
    page.locator("#content").click()
    expect(popover).to_be_hidden()
    expect(button).to_have_attribute("aria-expanded", "false")
    page.screenshot(path=str(output_dir / "embed-popover-closed.png"))
    assert_no_violation(page, console)


def test_the_bell_works_from_the_keyboard_alone(
    browsing: Browsing, host: HostSite, producer: Producer, user: str, output_dir: Path
) -> None:
    producer.create(user, "Approve invoice INV-9")
    page, console = open_host(browsing, host, user)
    button = bell(page)
    expect(button).to_have_attribute("aria-label", "1 process task")
    page.locator("#search").focus()
    page.keyboard.press("Tab")
    assert focused_in_bell(page)
    page.locator("header").screenshot(path=str(output_dir / "embed-bell-focused.png"))

    page.keyboard.press("Enter")
    expect(button).to_have_attribute("aria-expanded", "true")
    page.keyboard.press("Escape")
    expect(button).to_have_attribute("aria-expanded", "false")
    assert focused_in_bell(page)

    page.keyboard.press("Space")
    expect(button).to_have_attribute("aria-expanded", "true")
    frame = page.locator("taskbell-bell").locator("iframe")
    expect(frame).to_have_attribute("title", "Process tasks")
    page.keyboard.press("Escape")
    expect(button).to_have_attribute("aria-expanded", "false")
    assert focused_in_bell(page)
    assert_no_violation(page, console)


def test_a_token_provider_stands_in_for_the_attribute(
    browsing: Browsing, host: HostSite, producer: Producer, user: str
) -> None:
    producer.create(user, "Approve invoice INV-10")
    page, console = open_host(browsing, host, None)
    page.wait_for_function("customElements.get('taskbell-bell') !== undefined")
    token = user_token(user)
    page.evaluate(
        "(token) => { document.querySelector('taskbell-bell').tokenProvider = async () => token; }",
        token,
    )
    wait_live(page)
    expect(bell(page)).to_have_attribute("aria-label", "1 process task")
    assert_no_violation(page, console)


def test_a_token_provider_renews_a_refused_token(
    browsing: Browsing, host: HostSite, producer: Producer, user: str
) -> None:
    producer.create(user, "Approve invoice INV-12")
    stale = user_token(user, "not-the-servers-secret-0123456789abcdef-01234567")
    page, console = open_host(browsing, host, None)
    page.wait_for_function("customElements.get('taskbell-bell') !== undefined")
    page.evaluate(
        """([stale, fresh]) => {
          const el = document.querySelector("taskbell-bell");
          el.tokenProvider = async () => fresh;
          el.setAttribute("token", stale);
        }""",
        [stale, user_token(user)],
    )
    wait_live(page)
    expect(bell(page)).to_have_attribute("aria-label", "1 process task")
    assert_no_violation(page, console)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_host_origin_on_the_allow_list_gets_its_badge(
    browsing: Browsing, make_server: Callable[..., ServerProcess], user: str
) -> None:
    port = free_port()
    site = HostSite(f"http://127.0.0.1:{port}")
    try:
        srv = make_server(
            port=port, TASKBELL_ALLOWED_ORIGINS=f"https://crm.example.com,{site.origin}"
        )
        with Producer(srv.base_url) as producer:
            producer.create(user, "Approve invoice INV-13")
        page, console = open_host(browsing, site, user)
        wait_live(page)
        expect(bell(page)).to_have_attribute("aria-label", "1 process task")
        assert not [m for m in console if "TASKBELL_ALLOWED_ORIGINS" in m], console
        assert_no_violation(page, console)
    finally:
        site.close()


def test_a_host_origin_not_on_the_allow_list_gets_no_badge_and_a_clear_message(
    browsing: Browsing, make_server: Callable[..., ServerProcess], user: str, output_dir: Path
) -> None:
    srv = make_server(TASKBELL_ALLOWED_ORIGINS="https://crm.example.com")
    site = HostSite(srv.base_url)
    try:
        with Producer(srv.base_url) as producer:
            producer.create(user, "Approve invoice INV-11")
        page, console = open_host(browsing, site, user)
        expect(page.locator("taskbell-bell")).to_have_attribute("data-state", "reconnecting")
        page.wait_for_function("window.violations !== undefined")
        expect(page.locator("taskbell-bell").get_by_test_id("badge")).to_have_count(0)
        page.wait_for_timeout(300)
        messages = [m for m in console if "TASKBELL_ALLOWED_ORIGINS" in m]
        assert messages and messages[0].startswith("error:"), console
        assert site.origin in messages[0]
        # What the browser cannot show the page: the server answered the handshake 403.
        handshake = httpx.get(
            f"{srv.base_url}/ws",
            headers={
                "Origin": site.origin,
                "Connection": "Upgrade",
                "Upgrade": "websocket",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            },
        )
        assert handshake.status_code == 403
        page.screenshot(path=str(output_dir / "embed-refused-origin.png"))
        assert_no_violation(page, console)
    finally:
        site.close()


def test_embed_js_is_served_as_a_public_cross_origin_module(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.base_url) as c:
        embed = c.get("/embed.js", headers={"Origin": "https://crm.example.com"})
        module = c.get("/static/js/connection.js", headers={"Origin": "https://crm.example.com"})
        css = c.get("/static/panel.css")
    assert embed.status_code == 200
    assert embed.headers["content-type"].startswith("text/javascript")
    assert embed.headers["access-control-allow-origin"] == "*"
    assert embed.headers["cache-control"] == "public, max-age=300"
    assert embed.headers["x-content-type-options"] == "nosniff"
    assert "customElements.define" in embed.text
    assert module.status_code == 200 and module.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-origin" not in css.headers


def locale_token(user: str, locale: str | None) -> str:
    return mint_token(SECRET, user, 3600, locale=locale)


@pytest.mark.parametrize(
    ("claim", "lang", "one", "three", "none"),
    [
        ("de", "de", "1 Prozessaufgabe", "3 Prozessaufgaben", "Prozessaufgaben"),
        ("fr-CA", "fr-CA", "1 tâche de processus", "3 tâches de processus", "Tâches de processus"),
    ],
)
def test_the_bells_label_is_in_the_tokens_language(
    browsing: Browsing,
    host: HostSite,
    producer: Producer,
    user: str,
    output_dir: Path,
    claim: str,
    lang: str,
    one: str,
    three: str,
    none: str,
) -> None:
    page, console = open_host(browsing, host, None, token=locale_token(user, claim))
    wait_live(page)
    button = bell(page)
    expect(button).to_have_attribute("aria-label", none)
    expect(button).to_have_attribute("lang", lang)
    first = producer.create(user, "INV-20")
    expect(button).to_have_attribute("aria-label", one)
    producer.create(user, "INV-21")
    producer.create(user, "INV-22")
    expect(button).to_have_attribute("aria-label", three)
    badge = page.locator("taskbell-bell").get_by_test_id("badge")
    expect(badge).to_have_attribute("aria-label", three)
    expect(page.locator("taskbell-bell").get_by_test_id("announcer")).to_have_text(three)
    button.click()
    popover = page.locator("taskbell-bell").locator("[role=dialog]")
    expect(popover).to_have_attribute("aria-label", none)
    expect(page.locator("taskbell-bell").locator("iframe")).to_have_attribute("title", none)
    page.keyboard.press("Escape")
    page.screenshot(path=str(output_dir / f"embed-bell-{lang}.png"))
    producer.complete(first["id"])
    expect(button).to_have_attribute("aria-label", three.replace("3", "2"))
    assert page.evaluate("document.documentElement.lang") == "en", "the host page keeps its own"
    assert_no_violation(page, console)


@pytest.mark.parametrize(
    ("claim", "browser_locale", "label"),
    [
        ("xx-YY", "fr-FR", "1 tâche de processus"),  # a claim of no language: the browser's
        (None, "de-DE", "1 Prozessaufgabe"),
        ("not a locale!", "es-ES", "1 process task"),  # neither: English
    ],
)
def test_without_a_known_locale_claim_the_bell_speaks_the_browsers_language_or_english(
    browsing: Browsing,
    host: HostSite,
    producer: Producer,
    user: str,
    claim: str | None,
    browser_locale: str,
    label: str,
) -> None:
    producer.create(user, "INV-23")
    token = locale_token(user, claim)
    page, console = open_host(browsing, host, None, token=token, browser_locale=browser_locale)
    expect(bell(page)).to_have_attribute("aria-label", label)
    assert_no_violation(page, console)


def focused_in_panel_frame(page: Page) -> bool:
    """Whether the keyboard focus is inside the bell's panel frame."""
    return bool(
        page.evaluate(
            "document.activeElement?.localName === 'taskbell-bell' && "
            "document.activeElement.shadowRoot.activeElement?.localName === 'iframe'"
        )
    )


def test_escape_inside_the_panel_closes_the_popover_and_returns_to_the_bell(
    browsing: Browsing, host: HostSite, producer: Producer, user: str
) -> None:
    producer.create(user, "Approve invoice INV-24")
    page, console = open_host(browsing, host, user)
    button = bell(page)
    expect(button).to_have_attribute("aria-label", "1 process task")
    page.locator("#search").focus()
    page.keyboard.press("Tab")
    assert focused_in_bell(page)
    page.keyboard.press("Enter")
    expect(button).to_have_attribute("aria-expanded", "true")
    panel = page.frame_locator("taskbell-bell >> iframe[data-testid=panel-frame]")
    expect(panel.get_by_text("Approve invoice INV-24").first).to_be_visible()
    # Into the panel with the keyboard, and on into its task list.
    page.keyboard.press("Tab")
    page.wait_for_function(
        "document.activeElement?.shadowRoot?.activeElement?.localName === 'iframe'"
    )
    page.keyboard.press("Tab")
    assert focused_in_panel_frame(page)
    page.keyboard.press("Escape")
    expect(button).to_have_attribute("aria-expanded", "false")
    expect(page.locator("taskbell-bell").locator("[role=dialog]")).to_be_hidden()
    assert focused_in_bell(page)
    # Open again: the panel still answers Escape (the bell greets every load of it).
    page.keyboard.press("Enter")
    expect(button).to_have_attribute("aria-expanded", "true")
    page.keyboard.press("Tab")
    page.wait_for_function(
        "document.activeElement?.shadowRoot?.activeElement?.localName === 'iframe'"
    )
    page.keyboard.press("Escape")
    expect(button).to_have_attribute("aria-expanded", "false")
    assert focused_in_bell(page)
    assert_no_violation(page, console)


def test_a_panel_framed_without_the_bell_posts_nothing_until_greeted(
    browsing: Browsing, host: HostSite, server: ServerProcess, user: str
) -> None:
    """The panel asks to be closed only once a bell said hello, and only to its origin."""
    page, _ = open_host(browsing, host, None)
    page.evaluate(
        """([src]) => {
          window.received = [];
          window.addEventListener("message", (e) => {
            window.received.push([e.origin, e.data]);
            document.body.dataset.received = String(window.received.length);
          });
          const frame = document.createElement("iframe");
          frame.id = "plain";
          frame.src = src;
          document.querySelector("main").append(frame);
        }""",
        [f"{server.base_url}/#token={user_token(user)}"],
    )
    plain = page.frame_locator("#plain")
    expect(plain.get_by_test_id("conn-state")).to_have_attribute("data-state", "live")
    frame = next(f for f in page.frames if f.url.startswith(server.base_url))
    inside = plain.get_by_role("button").first  # the keyboard's focus inside the panel
    inside.press("Escape")  # not greeted: nothing is posted
    # Messages of one frame arrive in order: a close would come before this marker.
    frame.evaluate("() => window.parent.postMessage('marker', '*')")
    expect(page.locator("body")).to_have_attribute("data-received", "1")
    assert page.evaluate("window.received") == [[server.base_url, "marker"]]

    page.evaluate(
        "(origin) => document.getElementById('plain').contentWindow"
        ".postMessage({type: 'taskbell.bell'}, origin)",
        server.base_url,
    )
    greeted = "() => import('/static/js/framed.js').then((m) => m.framedByBell())"
    for _ in range(200):  # the greeting crosses to the frame on its own
        if frame.evaluate(greeted):
            break
        page.wait_for_timeout(25)
    inside.press("Escape")
    expect(page.locator("body")).to_have_attribute("data-received", "2")
    received = page.evaluate("window.received")
    assert received[1] == [server.base_url, {"type": "taskbell.close"}]
