"""The browser side of the console tests: headless Chromium through Selenium, with waits that
have deadlines, axe-core runs, the page's long tasks, its console errors and screenshots
checked to be more than a blank page."""

from __future__ import annotations

import json
import struct
import time
import zlib
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import (
    JavascriptException,
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

# Installed at document start through the DevTools protocol (so the page's CSP does not
# apply): every long task the page has, for the test to read.
LONGTASK_OBSERVER = """
window.__longtasks = [];
try {
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) window.__longtasks.push({start: entry.startTime, duration: entry.duration, name: entry.name});
  }).observe({type: 'longtask', buffered: true});
  window.__longtaskObserver = true;
} catch (error) {
  window.__longtaskObserver = String(error);
}
// Long animation frames, where the browser has them: what a long task was spent on.
window.__frames = [];
try {
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) window.__frames.push({
      start: entry.startTime, duration: entry.duration,
      styleAndLayout: entry.renderStart && entry.styleAndLayoutStart ? entry.startTime + entry.duration - entry.styleAndLayoutStart : null,
      scripts: (entry.scripts || []).map((s) => ({invoker: s.invoker, duration: Math.round(s.duration), source: s.sourceFunctionName + ' ' + (s.sourceURL || '').split('/').pop() + ':' + s.sourceCharPosition}))});
  }).observe({type: 'long-animation-frame', buffered: true});
} catch (error) { /* not in this browser */ }
// The last stream messages the page sent and received (the start of each, not grid
// deltas), for a failed wait's message: what the server said, or did not.
window.__streamLog = [];
(() => {
  const Native = window.WebSocket;
  const note = (direction, data) => {
    const text = typeof data === 'string' ? data : '(binary)';
    if (text.startsWith('{"type":"delta"')) return;
    window.__streamLog.push(`${(Date.now() / 1000 % 1000).toFixed(2)} s ${direction} ${text.slice(0, 160)}`);
    if (window.__streamLog.length > 40) window.__streamLog.shift();
  };
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', (event) => note('<', event.data));
      this.addEventListener('open', () => note('open', ''));
      this.addEventListener('close', (event) => note('close', String(event.code)));
    }
    send(data) {
      note('>', typeof data === 'string' ? data.replace(/"token":"[^"]*"/, '"token":"…"') : data);
      super.send(data);
    }
  };
})();
"""


class Report:
    """What the run measured, written to .build/screenshots/report.json."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.axe: dict = {}
        self.long_tasks: dict = {}
        self.screenshots: dict = {}

    def write(self) -> None:
        (self.directory / "report.json").write_text(json.dumps(
            {"axe": self.axe, "long_tasks": self.long_tasks, "screenshots": self.screenshots}, indent=2))

    def summary(self) -> str:
        pages = len(self.axe)
        serious = sum(page["serious_or_critical"] for page in self.axe.values())
        minor = sum(page["minor_or_moderate"] for page in self.axe.values())
        return (f"axe on {pages} pages: {serious} serious or critical, {minor} minor or moderate; "
                f"long tasks: {self.long_tasks}; screenshots: {self.screenshots}")


class Browser:
    """One Chromium with the console's helpers."""

    def __init__(self, driver, report: Report) -> None:
        self.driver = driver
        self.report = report
        self.base = None
        self.allowed_network: list = []

    @classmethod
    def start(cls, chromium: str, chromedriver: str, report: Report) -> Browser:
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                         "--window-size=1366,900", "--lang=en-US", "--disable-extensions",
                         "--disable-background-timer-throttling", "--disable-renderer-backgrounding"):
            options.add_argument(argument)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(service=Service(chromedriver), options=options)
        driver.set_script_timeout(60)
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": LONGTASK_OBSERVER})
        return cls(driver, report)

    def quit(self) -> None:
        self.driver.quit()

    # ---- navigation and waits

    def open(self, base: str, route: str = "") -> None:
        self.base = base.rstrip("/") + "/"
        self.driver.get(self.base + route)

    def go(self, route: str) -> None:
        """A route of the single-page console, without reloading the page."""
        self.driver.execute_script("location.hash = arguments[0]", route)

    def wait(self, predicate, timeout: float = 30.0, what: str = "the page"):
        """Waits until `predicate(driver)` is truthy; returns it. The failure says what was
        awaited and shows the page's main text."""
        def check(driver):
            try:
                return predicate(driver)
            except (NoSuchElementException, StaleElementReferenceException, JavascriptException):
                return False
        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.1).until(check)
        except TimeoutException:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; the page shows:\n{self.main_text()[:2000]}"
                                 f"\nthe stream's last messages (now {self.stream_clock():.2f} s):\n{self.stream_log()}") from None

    def find(self, css: str, timeout: float = 30.0):
        return self.wait(lambda d: d.find_element(By.CSS_SELECTOR, css), timeout, f"element {css}")

    def gone(self, css: str, timeout: float = 30.0) -> None:
        self.wait(lambda d: not d.find_elements(By.CSS_SELECTOR, css), timeout, f"no element {css}")

    def all(self, css: str) -> list:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def text(self, css: str) -> str:
        return self.driver.find_element(By.CSS_SELECTOR, css).text

    def stream_clock(self) -> float:
        """The page's clock as the stream log's lines show it: seconds, modulo 1000."""
        try:
            return self.driver.execute_script("return Date.now() / 1000 % 1000")
        except Exception:
            return float("nan")

    def stream_log(self) -> str:
        try:
            return "\n".join(self.driver.execute_script("return window.__streamLog || []"))
        except Exception as error:
            return f"(none: {error})"

    def main_text(self) -> str:
        try:
            return self.driver.find_element(By.TAG_NAME, "body").text
        except Exception as error:  # the driver itself failed
            return f"(no page text: {error})"

    def js(self, script: str, *args):
        return self.driver.execute_script(script, *args)

    def click(self, css: str, timeout: float = 30.0) -> None:
        element = self.find(css, timeout)
        self.wait(lambda d: element.is_displayed() and element.is_enabled(), timeout, f"{css} to be clickable")
        element.click()

    def wait_text(self, css: str, expected: str, timeout: float = 30.0) -> str:
        return self.wait(lambda d: expected in d.find_element(By.CSS_SELECTOR, css).text and
                         d.find_element(By.CSS_SELECTOR, css).text, timeout, f"{css} to show {expected!r}")

    # ---- the console's own steps

    def sign_in(self, token: str) -> None:
        field = self.find("#signin-token")
        field.clear()
        field.send_keys(token)
        self.click("#signin-submit")

    def sign_out(self) -> None:
        self.click("#sign-out")
        self.find("#signin-token")

    def app_card(self, app: str):
        return self.find(f'li[data-app="{app}"]')

    def app_state(self, app: str) -> str | None:
        cards = self.all(f'li[data-app="{app}"]')
        return cards[0].get_attribute("data-state") if cards else None

    def grid_cells(self) -> dict:
        """The rows the viewer draws: {key: {column: text}} (the rows in view only)."""
        return self.js("""
            const rows = {};
            for (const tr of document.querySelectorAll('#grid-table tbody tr[data-key]')) {
              const cells = {};
              for (const td of tr.querySelectorAll('td[data-col]')) cells[td.dataset.col] = td.textContent;
              rows[tr.dataset.key] = cells;
            }
            return rows;""")

    def grid_columns(self) -> list:
        return self.js("return [...document.querySelectorAll('#grid-table thead th button')].map(b => b.dataset.column)")[1:]

    # ---- checks

    def axe(self, page: str, context=None) -> list:
        """Runs axe-core; records the counts; returns the serious and critical violations."""
        from axe_selenium_python import Axe
        axe = Axe(self.driver)
        axe.inject()
        results = axe.run(context=context)
        violations = results["violations"]
        serious = [v for v in violations if v.get("impact") in ("serious", "critical")]
        self.report.axe[page] = {
            "serious_or_critical": len(serious),
            "minor_or_moderate": len(violations) - len(serious),
            "rules": sorted({f"{v['id']} ({v.get('impact')})" for v in violations}),
            "passes": len(results.get("passes", [])),
        }
        return [{"id": v["id"], "impact": v["impact"], "help": v["help"],
                 "nodes": [n["target"] for n in v["nodes"]][:5]} for v in serious]

    def assert_accessible(self, page: str, context=None) -> None:
        serious = self.axe(page, context)
        assert not serious, f"axe found serious or critical violations on {page}: {json.dumps(serious, indent=1)}"

    def long_tasks(self, since: float = 0.0) -> list:
        """The page's long tasks (ms) since `since` (performance.now() in the page)."""
        observer = self.js("return window.__longtaskObserver")
        assert observer is True, f"the Long Tasks API is not observed in the page: {observer!r}"
        return self.js("return (window.__longtasks || []).filter(t => t.start >= arguments[0])", since)

    def long_frames(self, since: float = 0.0) -> list:
        """Long animation frames since `since`, with the scripts they ran (for diagnosis)."""
        return self.js("return (window.__frames || []).filter(t => t.start >= arguments[0])", since)

    def now(self) -> float:
        return self.js("return performance.now()")

    def allow_network(self, *fragments: str) -> None:
        """Failed requests whose console line contains one of these are expected (the test
        provoked them: a refused bundle answers 422, and Chromium logs it)."""
        self.allowed_network.extend(fragments)

    def console_errors(self) -> list:
        errors = []
        for entry in self.driver.get_log("browser"):
            if entry.get("level") != "SEVERE":
                continue
            message = entry.get("message", "")
            if entry.get("source") == "network" and any(fragment in message for fragment in self.allowed_network):
                continue
            errors.append(message)
        return errors

    def screenshot(self, name: str, directory: Path, min_colours: int = 8) -> dict:
        """Saves a screenshot and checks it is not blank: enough distinct colours, and no one
        colour covering nearly all of it."""
        png = self.driver.get_screenshot_as_png()
        path = directory / f"{name}.png"
        path.write_bytes(png)
        width, height, pixels = decode_png(png)
        counts: dict = {}
        for y in range(0, height, 2):
            row = pixels[y]
            for x in range(0, width * 3, 6):
                colour = row[x:x + 3]
                counts[colour] = counts.get(colour, 0) + 1
        total = sum(counts.values())
        dominant = max(counts.values()) / total
        facts = {"path": str(path), "width": width, "height": height, "colours": len(counts),
                 "dominant_share": round(dominant, 3)}
        self.report.screenshots[name] = facts
        assert len(counts) >= min_colours and dominant < 0.97, f"the screenshot {name} looks blank: {facts}"
        return facts


def decode_png(data: bytes):
    """(width, height, rows of RGB bytes) of an 8-bit RGB or RGBA, non-interlaced PNG (what
    Chromium's screenshots are)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    at = 8
    idat = b""
    width = height = colour_type = None
    while at < len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        chunk = data[at + 8:at + 8 + length]
        at += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", chunk)
            assert depth == 8 and colour_type in (2, 6) and interlace == 0, f"unexpected PNG format {depth}/{colour_type}/{interlace}"
        elif kind == b"IDAT":
            idat += chunk
        elif kind == b"IEND":
            break
    channels = 4 if colour_type == 6 else 3
    stride = width * channels
    raw = zlib.decompress(idat)
    rows = []
    previous = bytearray(stride)
    at = 0
    for _ in range(height):
        kind = raw[at]
        line = bytearray(raw[at + 1:at + 1 + stride])
        at += 1 + stride
        if kind == 1:
            for i in range(channels, stride):
                line[i] = (line[i] + line[i - channels]) & 0xFF
        elif kind == 2:
            for i in range(stride):
                line[i] = (line[i] + previous[i]) & 0xFF
        elif kind == 3:
            for i in range(stride):
                left = line[i - channels] if i >= channels else 0
                line[i] = (line[i] + ((left + previous[i]) >> 1)) & 0xFF
        elif kind == 4:
            for i in range(stride):
                a = line[i - channels] if i >= channels else 0
                b = previous[i]
                c = previous[i - channels] if i >= channels else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        previous = line
        if channels == 4:
            rgb = bytearray()
            for i in range(0, stride, 4):
                rgb += line[i:i + 3]
            rows.append(bytes(rgb))
        else:
            rows.append(bytes(line))
    return width, height, rows


def wait_until(predicate, timeout: float, what: str, interval: float = 0.2):
    """Polls a Python-side condition with a deadline; returns its value."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {last!r}")
        time.sleep(interval)
