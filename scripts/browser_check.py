#!/usr/bin/env python3
"""Open an HTML file in headless Chromium with the network off; report what a reader would hit; take screenshots.

    python scripts/browser_check.py report.html [--screenshot page.png] [--shot '#eval-2=eval.png' ...]

Chromium (Debian's ``chromium``, scripts/setup_browser.sh) is driven through its DevTools protocol over
``--remote-debugging-pipe`` (JSON messages separated by NUL bytes on file descriptors 3 and 4), so
nothing beyond the standard library and the browser is needed: no websocket client, no Selenium or
Playwright download. The page loads from a ``file://`` URL with the network emulated offline, a dead
proxy and every host name unresolvable. Printed (JSON) and returned by ``check_page``:

- ``console``: console errors and warnings, uncaught exceptions and browser log errors (a blocked
  request, a Content-Security-Policy violation);
- ``requests``: every URL the page asked for other than the page itself and ``data:`` URIs;
- ``images``: every ``<img>`` with its natural size after decoding (0 = failed to load);
- ``screenshots``: the PNG files written (full page, and the element of each ``--shot`` selector).

Exit status 1 when there is a console error, a request, or an image that did not load.
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
VIEWPORT = (1366, 768)  # a common laptop screen, in CSS pixels
MAX_SHOT_HEIGHT = 16000  # px: a full-page capture of a very long page stops here


def find_chromium() -> str | None:
    """Path of the Chromium binary: $GFLV2_CHROMIUM, else the first of ``CHROMIUM_NAMES`` on PATH."""
    explicit = os.environ.get("GFLV2_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).is_file() else None
    return next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)


class Chromium:
    """A headless Chromium process and one page session, spoken to over the DevTools pipe."""

    def __init__(self, binary: str, viewport: tuple[int, int] = VIEWPORT, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="gflv2-chromium-")
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def child_fds() -> None:  # the child reads commands on fd 3 and writes replies on fd 4
            r, w = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10), fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)
            os.dup2(r, 3)
            os.dup2(w, 4)

        args = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe", f"--user-data-dir={self.profile}",
                "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--hide-scrollbars",
                "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND", "about:blank"]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     preexec_fn=child_fds, pass_fds=(3, 4), close_fds=True)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._next_id = 0
        self._replies: dict[int, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for method in ("Page.enable", "Runtime.enable", "Log.enable", "Network.enable"):
            self.call(method, session=True)
        self.call("Network.emulateNetworkConditions", {"offline": True, "latency": 0, "downloadThroughput": -1,
                                                       "uploadThroughput": -1}, session=True)
        self.call("Emulation.setDeviceMetricsOverride", {"width": viewport[0], "height": viewport[1], "deviceScaleFactor": 1,
                                                         "mobile": False}, session=True)

    def _read(self) -> None:
        buffer = b""
        while True:
            chunk = os.read(self._from_chrome, 1 << 16)
            if not chunk:
                with self._lock:
                    self._lock.notify_all()
                return
            buffer += chunk
            while b"\0" in buffer:
                raw, buffer = buffer.split(b"\0", 1)
                message = json.loads(raw)
                with self._lock:
                    if "id" in message:
                        self._replies[message["id"]] = message
                    else:
                        self.events.append(message)
                    self._lock.notify_all()

    def call(self, method: str, params: dict[str, Any] | None = None, session: bool = False) -> dict[str, Any]:
        """Send one command and wait for its reply; RuntimeError on a protocol error or a timeout."""
        with self._lock:
            self._next_id += 1
            ident = self._next_id
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        with self._lock:
            while ident not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise RuntimeError(f"chromium did not answer {method} (exit status {self.proc.poll()})")
                self._lock.wait(left)
            reply = self._replies.pop(ident)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def wait_event(self, method: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        with self._lock:
            while not any(e.get("method") == method for e in self.events):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"chromium sent no {method} within {self.timeout:.0f} s")
                self._lock.wait(left)
            return next(e for e in self.events if e.get("method") == method)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        reply = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True}, session=True)
        if "exceptionDetails" in reply:
            raise RuntimeError(f"script failed: {reply['exceptionDetails'].get('text')}")
        return reply["result"].get("value")

    def screenshot(self, path: Path, clip: dict[str, float]) -> Path:
        data = self.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                    "clip": {**clip, "scale": 1}}, session=True)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except RuntimeError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_chrome)
        shutil.rmtree(self.profile, ignore_errors=True)


def _problems(events: list[dict[str, Any]], page_url: str) -> tuple[list[str], list[str]]:
    console, requests = [], []
    for e in events:
        method, p = e.get("method"), e.get("params", {})
        if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "warning", "assert"):
            console.append(f"console.{p['type']}: " + " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            details = p.get("exceptionDetails", {})
            console.append(f"exception: {details.get('exception', {}).get('description') or details.get('text')}")
        elif method == "Log.entryAdded" and p.get("entry", {}).get("level") in ("error", "warning"):
            entry = p["entry"]
            console.append(f"log {entry.get('level')} ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}".strip())
        elif method == "Network.requestWillBeSent":
            url = p.get("request", {}).get("url", "")
            if url != page_url and not url.startswith("data:"):
                requests.append(url)
    return console, requests


def check_page(html: str | os.PathLike[str], screenshot: str | os.PathLike[str] | None = None,
               shots: dict[str, str | os.PathLike[str]] | None = None, clicks: list[str] | None = None,
               binary: str | None = None, viewport: tuple[int, int] = VIEWPORT) -> dict[str, Any]:
    """Load ``html`` offline and return ``{"console", "requests", "images", "screenshots", "clicked", "height"}``.

    screenshot: PNG of the whole page (up to ``MAX_SHOT_HEIGHT`` px). shots: CSS selector -> PNG of that
    element. clicks: CSS selectors clicked after loading (e.g. a sortable header); ``clicked`` then holds,
    per selector, the text of the first cell of its table's first row after the click.
    """
    binary = binary or find_chromium()
    if binary is None:
        raise FileNotFoundError("chromium not found: bash scripts/setup_browser.sh installs it")
    page_url = Path(html).resolve().as_uri()
    browser = Chromium(binary, viewport)
    try:
        browser.call("Page.navigate", {"url": page_url}, session=True)
        browser.wait_event("Page.loadEventFired")
        images = browser.evaluate("Promise.all(Array.from(document.images).map(function (i) {"
                                  "  return i.decode().then(function () { return true; }, function () { return false; })"
                                  "    .then(function (ok) { return {alt: i.alt, decoded: ok, naturalWidth: i.naturalWidth,"
                                  "      naturalHeight: i.naturalHeight, src: i.src.slice(0, 30)}; }); }))")
        height = browser.evaluate("document.documentElement.scrollHeight")
        written = []
        if screenshot is not None:
            written.append(str(browser.screenshot(Path(screenshot), {"x": 0, "y": 0, "width": viewport[0],
                                                                      "height": min(height, MAX_SHOT_HEIGHT)})))
        for selector, path in (shots or {}).items():
            box = browser.evaluate(f"(function () {{ var e = document.querySelector({json.dumps(selector)}); if (!e) return null;"
                                   " var r = e.getBoundingClientRect(); return {x: r.left + window.scrollX, y: r.top + window.scrollY,"
                                   " width: r.width, height: r.height}; })()")
            if box is None:
                raise RuntimeError(f"no element matches {selector}")
            box["height"] = min(box["height"], MAX_SHOT_HEIGHT)
            written.append(str(browser.screenshot(Path(path), box)))
        clicked = {}
        for selector in clicks or []:
            clicked[selector] = browser.evaluate(
                f"(function () {{ var th = document.querySelector({json.dumps(selector)}); th.click();"
                " return th.closest('table').tBodies[0].rows[0].cells[0].textContent; })()")
        time.sleep(0.2)  # late console messages
        with browser._lock:
            events = list(browser.events)
    finally:
        browser.close()
    console, requests = _problems(events, page_url)
    return {"console": console, "requests": requests, "images": images, "screenshots": written, "clicked": clicked,
            "height": height}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html", type=Path)
    parser.add_argument("--screenshot", type=Path, help="PNG of the whole page")
    parser.add_argument("--shot", action="append", default=[], metavar="SELECTOR=PNG", help="PNG of one element; repeatable")
    parser.add_argument("--width", type=int, default=VIEWPORT[0])
    args = parser.parse_args()
    shots = dict(s.rsplit("=", 1) for s in args.shot)
    result = check_page(args.html, args.screenshot, shots, viewport=(args.width, VIEWPORT[1]))
    broken = [i for i in result["images"] if not i["decoded"] or i["naturalWidth"] == 0]
    print(json.dumps({**result, "images": len(result["images"]), "broken_images": broken}, indent=2))
    return 1 if result["console"] or result["requests"] or broken else 0


if __name__ == "__main__":
    sys.exit(main())
