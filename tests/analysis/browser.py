"""A headless Chromium driven over the DevTools protocol through a pipe (no driver, no port, no extra package).

    with Browser("/usr/bin/chromium", profile) as browser:
        browser.open("file:///.../index.html")
        browser.wait_for("document.body.dataset.explorerCount !== undefined")
        count = browser.evaluate("document.body.dataset.explorerCount")
        browser.screenshot(path)
        assert browser.errors() == []

``--remote-debugging-pipe`` makes Chromium read protocol messages from fd 3 and write them to
fd 4, each a JSON object ended by a NUL byte. ``python -m tests.analysis.browser PAGE OUT.png``
screenshots a page (the whole page unless ``--height`` is given).
"""

from __future__ import annotations

import base64
import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional


class BrowserError(RuntimeError):
    pass


class Browser:
    def __init__(self, binary: str, profile: Path, width: int = 1280, height: int = 2000, timeout: float = 60):
        self.binary, self.profile, self.width, self.height, self.timeout = binary, Path(profile), width, height, timeout
        self._next = 0
        self._replies: Dict[int, queue.Queue] = {}
        self._events: "queue.Queue[dict]" = queue.Queue()
        self.events: List[dict] = []  # every event seen, in order
        self.session: Optional[str] = None

    # ------------------------------------------------------------------ process
    def __enter__(self) -> "Browser":
        commands_r, self._commands = os.pipe()
        self._replies_r, replies_w = os.pipe()

        def wire() -> None:  # in the child: the protocol pipes at fds 3 and 4
            a, b = os.dup(commands_r), os.dup(replies_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.profile.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [self.binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
             "--remote-debugging-pipe", f"--user-data-dir={self.profile}", f"--window-size={self.width},{self.height}",
             "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=wire,
            close_fds=False,  # fds 3 and 4 (set by wire) must survive; pipes of ours are not inheritable
        )
        os.close(commands_r)
        os.close(replies_w)
        self._stderr: List[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        target = self.call("Target.createTarget", url="about:blank", session=False)["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True, session=False)["sessionId"]
        for domain in ("Runtime.enable", "Log.enable", "Page.enable"):
            self.call(domain)
        self.call("Emulation.setDeviceMetricsOverride", width=self.width, height=self.height, deviceScaleFactor=1,
                  mobile=False)
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.call("Browser.close", session=False, wait=False)
        except Exception:  # noqa: BLE001  (closing a browser that already died)
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._commands)

    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = os.read(self._replies_r, 1 << 16)
            except OSError:
                break
            if not chunk:
                break
            buffer += chunk
            while b"\0" in buffer:
                raw, buffer = buffer.split(b"\0", 1)
                message = json.loads(raw)
                if "id" in message and message["id"] in self._replies:
                    self._replies[message["id"]].put(message)
                elif "method" in message:
                    self._events.put(message)
        self._events.put({"method": "_closed"})

    def _drain_stderr(self) -> None:
        for line in self.process.stderr:
            self._stderr.append(line.decode(errors="replace"))

    # ------------------------------------------------------------------ protocol
    def call(self, method: str, session: bool = True, wait: bool = True, **params: Any) -> dict:
        self._next += 1
        message: Dict[str, Any] = {"id": self._next, "method": method, "params": params}
        if session and self.session:
            message["sessionId"] = self.session
        reply: queue.Queue = queue.Queue()
        self._replies[self._next] = reply
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        if not wait:
            return {}
        try:
            answer = reply.get(timeout=self.timeout)
        except queue.Empty:
            raise BrowserError(f"no reply to {method} within {self.timeout} s; stderr: {''.join(self._stderr)[-2000:]}")
        if "error" in answer:
            raise BrowserError(f"{method}: {answer['error']}")
        return answer.get("result", {})

    def _pump(self, until: Optional[str] = None, timeout: float = 0.0) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            try:
                event = self._events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return False
            self.events.append(event)
            if until and event.get("method") == until:
                return True

    def open(self, url: str) -> None:
        """Navigate and wait for the load event (scripts ran, images of the page requested)."""
        self.call("Page.navigate", url=url)
        if not self._pump("Page.loadEventFired", self.timeout):
            raise BrowserError(f"{url} did not finish loading within {self.timeout} s")

    def evaluate(self, expression: str, await_promise: bool = False) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=await_promise)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result.get("result", {}).get("value")

    def wait_for(self, condition: str, timeout: Optional[float] = None) -> Any:
        """Poll a JavaScript expression until it is truthy; return its value."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while time.monotonic() < deadline:
            value = self.evaluate(condition)
            if value:
                return value
            self._pump(timeout=0.1)
        raise BrowserError(f"timed out waiting for {condition}")

    def settle(self, seconds: float = 0.3) -> None:
        self._pump(timeout=seconds)

    def screenshot(self, path: Path, full_page: bool = True) -> Path:
        """A PNG of the page (the whole scrollable height when ``full_page``)."""
        height = self.height
        if full_page:
            metrics = self.call("Page.getLayoutMetrics")
            height = int(metrics.get("cssContentSize", metrics.get("contentSize"))["height"])
            self.call("Emulation.setDeviceMetricsOverride", width=self.width, height=height, deviceScaleFactor=1,
                      mobile=False)
            self.settle(0.5)
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=full_page)["data"]
        if full_page:
            self.call("Emulation.setDeviceMetricsOverride", width=self.width, height=self.height, deviceScaleFactor=1,
                      mobile=False)
        Path(path).write_bytes(base64.b64decode(data))
        return Path(path)

    def element_png(self, selector: str, attempts: int = 10) -> bytes:
        """A PNG of the element ``selector`` as drawn on screen (canvases of file:// images cannot be read from JS).

        The page may still be moving: Plotly draws its charts after the page is usable, and a chart
        taller than its placeholder pushes everything below it down. A clip measured before such a
        shift would capture whatever slid into its place, so the element's rectangle must be the same
        before and after the capture (else it is measured and captured again)."""
        self.evaluate(f"document.querySelector({json.dumps(selector)}).scrollIntoView({{block: 'center'}})")
        for _ in range(attempts):
            rect = self._document_rect(selector)
            self.settle(0.2)
            if self._document_rect(selector) != rect:
                continue
            data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                             clip={**rect, "scale": 1})["data"]
            if self._document_rect(selector) == rect:
                return base64.b64decode(data)
        raise BrowserError(f"{selector} kept moving: no steady picture of it in {attempts} attempts")

    def _document_rect(self, selector: str) -> dict:
        return self.evaluate(f"""(function () {{
            var r = document.querySelector({json.dumps(selector)}).getBoundingClientRect();
            return {{x: r.left + window.scrollX, y: r.top + window.scrollY, width: r.width, height: r.height}}; }})()""")

    def errors(self) -> List[str]:
        """Uncaught exceptions, console.error calls and browser errors (failed resource loads) so far."""
        self._pump(timeout=0.05)
        found = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                found.append("exception: " + str(details.get("exception", {}).get("description") or details.get("text")))
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append("console.error: " + " ".join(str(a.get("value", a.get("description"))) for a in params.get("args", [])))
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                entry = params["entry"]
                found.append(f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}".strip())
        return found


def main(argv: List[str]) -> int:
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description="screenshot a page with headless Chromium")
    parser.add_argument("page")
    parser.add_argument("out")
    parser.add_argument("--height", type=int, help="viewport height; the whole page when left out")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--chromium", default=os.environ.get("CHROMIUM", "/usr/bin/chromium"))
    parser.add_argument("--js", help="JavaScript to run (awaited) before the screenshot")
    args = parser.parse_args(argv)
    url = args.page if "://" in args.page else Path(args.page).resolve().as_uri()
    with tempfile.TemporaryDirectory() as profile, Browser(args.chromium, Path(profile), args.width,
                                                           args.height or 1000) as browser:
        browser.open(url)
        browser.settle(1.5)
        if args.js:
            browser.evaluate(args.js, await_promise=True)
            browser.settle(1.0)
        browser.screenshot(Path(args.out), full_page=args.height is None)
        for error in browser.errors():
            print(error, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
