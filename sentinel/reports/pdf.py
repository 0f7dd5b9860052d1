"""PDF through headless Chromium over the DevTools protocol (a pipe, no port, no extra package).

The command-line `--print-to-pdf` cannot set a footer; `Page.printToPDF` can (footerTemplate with the
pageNumber/totalPages classes), so every page carries "第 N 页 共 M 页" / "Page N of M". The table of contents
gets its page numbers in a second pass: the first print is read back with pdftotext (poppler-utils) to find the
page each section heading starts on, the numbers are written into the TOC in the loaded page, and it is printed
again (the TOC's layout does not change, only the digits). Without pdftotext the TOC keeps its links and no
numbers."""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from sentinel.errors import SentinelError


class ReportError(SentinelError):
    """A report cannot be written (a missing tool, an unwritable path)."""


def chromium_binary() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise ReportError("PDF output needs headless Chromium: apt-get install chromium fonts-noto-cjk")


class Chromium:
    """One headless browser reached over --remote-debugging-pipe (fd 3: commands in, fd 4: replies out)."""

    def __init__(self, timeout: float = 600.0) -> None:
        self.timeout = timeout
        self._tmp = tempfile.TemporaryDirectory(prefix="sentinel-chromium-")
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        # Park the child's ends above 10 so that dup2 into 3 and 4 cannot clobber one with the other.
        child_r, child_w = fcntl.fcntl(to_child_r, fcntl.F_DUPFD, 10), fcntl.fcntl(from_child_w, fcntl.F_DUPFD, 10)
        os.close(to_child_r)
        os.close(from_child_w)

        def wire() -> None:  # runs in the child before it closes unlisted fds: the protocol wants fds 3 and 4
            os.dup2(child_r, 3)
            os.dup2(child_w, 4)

        cmd = [
            chromium_binary(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            f"--user-data-dir={self._tmp.name}/profile",
            "--remote-debugging-pipe",
            "about:blank",
        ]
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=wire,  # noqa: PLW1509 - dup2 into fixed fd numbers needs to run in the child
            pass_fds=(3, 4, child_r, child_w),
        )
        os.close(child_r)
        os.close(child_w)
        self._buf = b""
        self._next = 0
        self._events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        self._next += 1
        msg: dict[str, Any] = {"id": self._next, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_child, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read(deadline, method)
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise ReportError(f"Chromium refused {method}: {reply['error'].get('message', reply['error'])}")
                result: dict[str, Any] = reply.get("result", {})
                return result
            if "method" in reply:
                self._events.append(reply)

    def wait_event(self, method: str, session: str) -> None:
        deadline = time.monotonic() + self.timeout
        while True:
            for i, ev in enumerate(self._events):
                if ev.get("method") == method and ev.get("sessionId") == session:
                    del self._events[: i + 1]
                    return
            self._events.append(self._read(deadline, method))

    def _read(self, deadline: float, what: str) -> dict[str, Any]:
        import select

        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ReportError(f"Chromium did not answer {what} within {self.timeout:.0f} s")
            ready, _, _ = select.select([self._from_child], [], [], min(left, 1.0))
            if not ready:
                if self._proc.poll() is not None:
                    raise ReportError(f"Chromium exited while printing: {self._stderr()}")
                continue
            chunk = os.read(self._from_child, 1 << 20)
            if not chunk:
                raise ReportError(f"Chromium closed the DevTools pipe: {self._stderr()}")
            self._buf += chunk
        raw, _, self._buf = self._buf.partition(b"\0")
        message: dict[str, Any] = json.loads(raw)
        return message

    def _stderr(self) -> str:
        if self._proc.poll() is None or self._proc.stderr is None:
            return ""
        return self._proc.stderr.read().decode(errors="replace").strip()[-400:]

    def close(self) -> None:
        try:
            if self._proc.poll() is None:
                self.send("Browser.close")
        except (ReportError, OSError):
            pass
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(5)
        for fd in (self._to_child, self._from_child):
            with contextlib.suppress(OSError):
                os.close(fd)
        if self._proc.stderr is not None:
            self._proc.stderr.close()
        self._tmp.cleanup()

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def print_html(self, page: Path, output: Path, footer: str, toc: bool = True) -> int:
        """Print `page` to `output` with `footer` on every page; returns the page count."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        try:
            self.send("Page.enable", session=session)
            self.send("Page.navigate", {"url": page.as_uri()}, session=session)
            self.wait_event("Page.loadEventFired", session)
            numbering = toc and shutil.which("pdftotext") is not None
            if numbering:  # placeholder digits: a TOC line must not read exactly like the heading it points to
                self._set_numbers(session, None)
            self._print(session, output, footer)
            pages = page_texts(output) if numbering else None
            if toc and pages is not None:
                self._set_numbers(session, heading_pages(pages, self._headings(session)))
                self._print(session, output, footer)
            return len(pages) if pages is not None else 0
        finally:
            self.send("Target.closeTarget", {"targetId": target})

    def evaluate(self, session: str, script: str) -> Any:
        result = self.send("Runtime.evaluate", {"expression": script, "returnByValue": True}, session=session)
        if "exceptionDetails" in result:  # a script error is a bug here, not something to print around
            raise ReportError(f"page script failed: {result['exceptionDetails'].get('text', '')}")
        return result.get("result", {}).get("value")

    def _set_numbers(self, session: str, numbers: dict[str, int] | None) -> None:
        """None: '00' everywhere (first pass); else each entry's page, blank where the heading was not found."""
        script = (
            "(() => { const n = " + json.dumps(numbers) + ";"
            "for (const a of document.querySelectorAll('.toc a')) {"
            " const id = a.getAttribute('href').slice(1); const pg = a.querySelector('.pg');"
            " if (pg) pg.textContent = n === null ? '00' : (n[id] ?? ''); } })()"
        )
        self.evaluate(session, script)

    def _headings(self, session: str) -> list[tuple[str, str]]:
        script = (
            "JSON.stringify([...document.querySelectorAll('.toc a')].map(a => {"
            " const id = a.getAttribute('href').slice(1); const h = document.getElementById(id);"
            " return [id, h ? h.innerText : '']; }))"
        )
        value = self.evaluate(session, script) or "[]"
        return [(str(i), str(text)) for i, text in json.loads(value)]

    def _print(self, session: str, output: Path, footer: str) -> None:
        style = "font-family:'Noto Sans CJK SC','Noto Sans',sans-serif;font-size:8pt;color:#444;width:100%;"
        result = self.send(
            "Page.printToPDF",
            {
                "displayHeaderFooter": True,
                "headerTemplate": "<span></span>",
                "footerTemplate": f'<div style="{style}text-align:center;">{footer}</div>',
                "printBackground": True,
                "preferCSSPageSize": True,
                "transferMode": "ReturnAsStream",
            },
            session=session,
        )
        handle = result["stream"]
        with output.open("wb") as fh:
            while True:
                chunk = self.send("IO.read", {"handle": handle, "size": 1 << 20}, session=session)
                data = chunk.get("data", "")
                fh.write(base64.b64decode(data) if chunk.get("base64Encoded") else data.encode("latin-1"))
                if chunk.get("eof"):
                    break
        self.send("IO.close", {"handle": handle}, session=session)


def page_texts(pdf: Path) -> list[str] | None:
    """Each page's text (pdftotext -layout); None without poppler-utils."""
    tool = shutil.which("pdftotext")
    if tool is None:
        return None
    result = subprocess.run([tool, "-layout", str(pdf), "-"], capture_output=True, text=True, timeout=300, check=False)
    if result.returncode != 0:
        return None
    pages = result.stdout.split("\f")
    return pages[:-1] if pages and not pages[-1].strip() else pages


def _norm(text: str) -> str:
    return "".join(text.split())


def heading_pages(pages: list[str], headings: list[tuple[str, str]]) -> dict[str, int]:
    """Section id → page: the first page after the previous section's page with a line that is exactly the
    heading (TOC lines also carry dots and a number, table cells share their line with other cells)."""
    lines = [{_norm(line) for line in page.splitlines()} for page in pages]
    out: dict[str, int] = {}
    at = 0
    for sid, text in headings:
        want = _norm(text)
        for n in range(at, len(lines)):
            if want and want in lines[n]:
                out[sid] = n + 1
                at = n
                break
    return out


def render_pdf_file(html: str, output: Path, footer: str, browser: Chromium | None = None) -> int:
    """Write `html` as a PDF at `output`; returns the page count (0 when it could not be counted)."""
    with tempfile.TemporaryDirectory(prefix="sentinel-report-") as tmp:
        page = Path(tmp) / "report.html"
        page.write_text(html, encoding="utf-8")
        if browser is not None:
            return browser.print_html(page, output, footer)
        with Chromium() as own:
            return own.print_html(page, output, footer)
