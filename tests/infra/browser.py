"""Headless Chromium (Debian's `chromium`) driven over the DevTools protocol, for tests of pages
that people click through: open a page, wait for what its script shows, click, read the DOM, take
a screenshot. One browser per `browser()` block, with a profile of its own in the test's tmp dir;
the websocket client is aiohttp's (already a dependency). Nothing downloads."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import shutil
from collections.abc import AsyncIterator
from itertools import count
from pathlib import Path
from typing import Any

import aiohttp
import pytest

INSTALL_HINT = "chromium is not on PATH: install Debian's chromium package (as root: deploy/ensure-chromium.sh)"
_LISTENING = re.compile(r"DevTools listening on (ws://\S+)")
PHONE = (375, 812)  # the volunteer's pages are laid out for a phone this size
DESK = (1366, 900)


def chromium() -> str:
    """Fails (never skips) the calling test when the browser is missing."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail(INSTALL_HINT)
    return found


class PageError(AssertionError):
    pass


class Tab:
    """One page of the browser: its own DevTools session."""

    def __init__(
        self,
        socket: aiohttp.ClientWebSocketResponse,
        session_id: str,
        ids: count[int],
        replies: dict[int, asyncio.Future[Any]],
    ) -> None:
        self._socket, self._session, self._ids, self._replies = socket, session_id, ids, replies
        self.console: list[str] = []

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        message_id = next(self._ids)
        reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._replies[message_id] = reply
        await self._socket.send_json({"id": message_id, "sessionId": self._session, "method": method, "params": params})
        answer = await asyncio.wait_for(reply, 60)
        if "error" in answer:
            raise PageError(f"{method}: {answer['error']}")
        return answer.get("result", {})

    async def evaluate(self, expression: str) -> Any:
        """The value of a script expression in the page (a promise is awaited)."""
        result = await self.send("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise PageError(
                f"{expression[:120]}: {result['exceptionDetails'].get('exception', result['exceptionDetails'])}"
            )
        return result["result"].get("value")

    async def open(self, url: str, *, size: tuple[int, int] = DESK, language: str | None = None) -> None:
        width, height = size
        await self.send(
            "Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=size == PHONE
        )
        if language is not None:  # what the page hears as Accept-Language and navigator.language
            await self.send("Emulation.setLocaleOverride", locale=language)
            await self.send(
                "Network.setUserAgentOverride", userAgent="Mozilla/5.0 beacon-test", acceptLanguage=language
            )
        await self.send("Page.navigate", url=url)
        await self.until("document.readyState === 'complete'", what=f"{url} loaded")

    async def until(self, condition: str, *, what: str = "", within: float = 30.0) -> None:
        """Waits until the expression is truthy in the page (its script fetches, then draws)."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            with contextlib.suppress(PageError):
                if await self.evaluate(f"!!({condition})"):  # an element comes back by value as {}
                    return
            if asyncio.get_running_loop().time() > deadline:
                shown = await self.evaluate("location.href + ': ' + (document.body ? document.body.innerText : '')")
                raise PageError(
                    f"not so within {within:.0f} s: {what or condition}; shown: {str(shown)[:600]!r}; console: {self.console[-10:]}"
                )
            await asyncio.sleep(0.1)

    async def click(self, selector: str) -> None:
        found = await self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (!e) return false; e.click(); return true; }})()"
        )
        if not found:
            raise PageError(f"nothing to click at {selector}")

    async def text(self, selector: str = "body") -> str:
        return await self.evaluate(f"(document.querySelector({json.dumps(selector)}) || {{}}).innerText || ''")

    async def screenshot(self, path: Path) -> Path:
        shot = await self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        print(f"screenshot: {path}")  # shown with -s, and in the failure report
        return path


class Browser:
    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self._socket = socket
        self._ids = count(1)
        self._replies: dict[int, asyncio.Future[Any]] = {}
        self._tabs: dict[str, Tab] = {}
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self._socket:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(message.data)
            if "id" in data and data["id"] in self._replies:
                self._replies.pop(data["id"]).set_result(data)
            elif data.get("method") == "Runtime.consoleAPICalled" and data.get("sessionId") in self._tabs:
                args = data["params"].get("args", [])
                self._tabs[data["sessionId"]].console.append(
                    " ".join(str(a.get("value", a.get("description"))) for a in args)
                )

    async def _browser_call(self, method: str, **params: Any) -> dict[str, Any]:
        message_id = next(self._ids)
        reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._replies[message_id] = reply
        await self._socket.send_json({"id": message_id, "method": method, "params": params})
        answer = await asyncio.wait_for(reply, 60)
        if "error" in answer:
            raise PageError(f"{method}: {answer['error']}")
        return answer["result"]

    async def tab(self) -> Tab:
        target = await self._browser_call("Target.createTarget", url="about:blank")
        attached = await self._browser_call("Target.attachToTarget", targetId=target["targetId"], flatten=True)
        tab = Tab(self._socket, attached["sessionId"], self._ids, self._replies)
        self._tabs[attached["sessionId"]] = tab
        for domain in ("Page", "Runtime", "Network"):
            await tab.send(f"{domain}.enable")
        return tab


@contextlib.asynccontextmanager
async def browser(profile: Path) -> AsyncIterator[Browser]:
    """A headless Chromium with its own profile folder, until the block ends."""
    process = await asyncio.create_subprocess_exec(
        chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
        "--no-first-run", "--no-default-browser-check", f"--user-data-dir={profile}", "--remote-debugging-port=0",
        "about:blank", stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stderr is not None
        seen: list[str] = []
        while line := (await asyncio.wait_for(process.stderr.readline(), 60)).decode(errors="replace"):
            seen.append(line)
            if found := _LISTENING.search(line):
                break
        else:
            raise PageError("chromium did not open its DevTools port: " + "".join(seen[-20:]))
        # The rest of its chatter goes nowhere, so that its pipe never fills.
        drain = asyncio.create_task(_drain(process.stderr))
        async with aiohttp.ClientSession() as session, session.ws_connect(found.group(1), max_msg_size=0) as socket:
            driven = Browser(socket)
            try:
                yield driven
            finally:
                driven._reader.cancel()
        drain.cancel()
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.read(65536):
        pass
