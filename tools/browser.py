"""Headless Chromium driven through the DevTools protocol: the server's page as a person
uses it (pick a photo, wait for the answer, look), for the tests and the docs' screenshot.

    python tools/browser.py --checkpoint RUN/checkpoints/best.pt --index RUN/neighbors \
        --photo photo.png --out docs/serving/page.png

starts `alexnet serve` on 127.0.0.1, opens its page, uploads the photo through the page's
file input, waits for the top-5 list and the Grad-CAM overlay, and saves a screenshot.
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    return None


class Browser:
    """One headless Chromium page; `call` sends a DevTools command and returns its result."""

    def __init__(self, width: int = 1280, height: int = 900, timeout: float = 60) -> None:
        from websockets.sync.client import connect

        # a helper that outlives close() must not fail the caller over a file left in /tmp
        self.profile = tempfile.TemporaryDirectory(ignore_cleanup_errors=True)
        executable = chromium()
        if executable is None:
            raise RuntimeError("no Chromium: `make test` installs Debian's chromium package")
        self.process = subprocess.Popen(
            [executable, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--remote-debugging-port=0", f"--user-data-dir={self.profile.name}",
             f"--window-size={width},{height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "HOME": self.profile.name},
            start_new_session=True,  # its helpers in a process group of their own, for close()
        )  # fmt: skip
        port_file = Path(self.profile.name) / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not (port_file.is_file() and port_file.read_text().strip()):
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.close()
                raise RuntimeError("Chromium did not open its DevTools port")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        pages = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list").read())
        page = next(p for p in pages if p["type"] == "page")
        self.socket = connect(page["webSocketDebuggerUrl"], max_size=64 << 20, open_timeout=30)
        self.socket.__enter__()  # websockets wants its connections entered as contexts
        self.ids = itertools.count(1)
        self.console: list[str] = []
        self.call("Runtime.enable")
        self.call("Page.enable")

    def call(self, method: str, timeout: float = 60, **params) -> dict:
        number = next(self.ids)
        self.socket.send(json.dumps({"id": number, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            message = json.loads(self.socket.recv(timeout=max(0.1, deadline - time.monotonic())))
            if message.get("method") == "Runtime.exceptionThrown":
                self.console.append(json.dumps(message["params"]["exceptionDetails"])[:500])
            if message.get("method") == "Runtime.consoleAPICalled" and message["params"][
                "type"
            ] in ("error", "warning"):
                self.console.append(json.dumps(message["params"]["args"])[:500])
            if message.get("id") == number:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not self.evaluate(expression):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the page never satisfied {expression}")
            time.sleep(0.1)

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete'")

    def upload(self, selector: str, path: str | Path) -> None:
        """Give a file input a file, as a person picking it does (the input's change
        event fires)."""
        root = self.call("DOM.getDocument")["root"]["nodeId"]
        node = self.call("DOM.querySelector", nodeId=root, selector=selector)["nodeId"]
        self.call("DOM.setFileInputFiles", nodeId=node, files=[str(Path(path).resolve())])

    def screenshot(self, path: str | Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        Path(path).write_bytes(base64.b64decode(data["data"]))
        return Path(path)

    def close(self) -> None:
        if getattr(self, "socket", None) is not None:
            self.socket.__exit__(None, None, None)
        # Chromium's helpers (renderers, crashpad) may write into the profile after the
        # browser itself has exited: end the whole group and wait for it to be gone, so
        # that the profile is removed whole.
        self._signal_group(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            self.process.wait()
        deadline = time.monotonic() + 10
        while self._signal_group(0) and time.monotonic() < deadline:
            time.sleep(0.05)
        self._signal_group(signal.SIGKILL)
        self.profile.cleanup()

    def _signal_group(self, sig: int) -> bool:
        """Send `sig` to Chromium's process group; False once no process is left in it."""
        try:
            os.killpg(self.process.pid, sig)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


#: True once the page shows the answer: five classes, the overlay (and neighbors if asked).
ANSWERED = (
    "document.querySelectorAll('#top5 li').length > 0 && "
    "document.querySelector('#overlay img') !== null && "
    "(document.querySelector('#neighbors-section').classList.contains('hidden') || "
    "document.querySelectorAll('#neighbors img').length > 0)"
)


def use_page(url: str, photo: str | Path, shot: str | Path, ten_crop: bool = False) -> dict:
    """Open the page, pick the photo, wait for the answer, screenshot; what the page shows."""
    with Browser() as browser:
        browser.open(url)
        browser.wait_for("document.getElementById('model').textContent.includes('classes')")
        if ten_crop:
            browser.evaluate("document.getElementById('tencrop').checked = true")
        browser.upload("#file", photo)
        browser.wait_for(ANSWERED)
        shown = browser.evaluate(
            "({top: [...document.querySelectorAll('#top5 li')].map(li => "
            "[li.querySelector('.name').textContent, li.querySelector('.p').textContent]), "
            "overlay: document.querySelector('#overlay img').naturalWidth, "
            "neighbors: document.querySelectorAll('#neighbors img').length, "
            "status: document.getElementById('status').textContent, "
            "external: [...document.querySelectorAll('[src],[href]')].map(e => "
            "e.getAttribute('src') || e.getAttribute('href'))"
            ".filter(u => /^(https?:)?\\/\\//.test(u))})"
        )
        browser.screenshot(shot)
        shown["console"] = browser.console
    return shown


def main() -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from alexnet.serve.traffic import Server

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--index", help="the fc7 index of `alexnet neighbors`")
    parser.add_argument("--photo", required=True)
    parser.add_argument("--out", required=True, help="the screenshot (.png)")
    parser.add_argument("--ten-crop", action="store_true")
    args = parser.parse_args()
    options = ("--index", args.index) if args.index else ()
    with Server(args.checkpoint, *options) as server:
        shown = use_page(server.url + "/", args.photo, args.out, args.ten_crop)
    record = {"command": "python " + " ".join(sys.argv), "shown": shown}
    Path(args.out).with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(shown, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
