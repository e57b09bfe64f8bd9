"""A small Chrome DevTools Protocol client: drive Debian's headless Chromium from a test."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import aiohttp

from tasks import CHROMIUM as HEADLESS

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# tasks.py's flags (headless, no background traffic), plus a DevTools port for commands.
FLAGS = [*HEADLESS, "--remote-debugging-port=0", "--remote-allow-origins=*"]


class Page:
    """One tab: commands by id, events by name."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self.socket = socket
        self.counter = 0
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: dict[str, asyncio.Queue[dict[str, Any]]] = {}
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.socket:
            data = json.loads(message.data)
            if "id" in data:
                future = self.pending.pop(data["id"])
                if "error" in data:
                    future.set_exception(RuntimeError(f"{data['error']}"))
                else:
                    future.set_result(data.get("result", {}))
            else:
                self.events.setdefault(data["method"], asyncio.Queue()).put_nowait(data["params"])

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        self.counter += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[self.counter] = future
        await self.socket.send_str(
            json.dumps({"id": self.counter, "method": method, "params": params})
        )
        return await asyncio.wait_for(future, 20)

    def expect(self, event: str) -> asyncio.Queue[dict[str, Any]]:
        queue = self.events.setdefault(event, asyncio.Queue())
        while not queue.empty():
            queue.get_nowait()
        return queue

    async def goto(self, url: str) -> None:
        loaded = self.expect("Page.loadEventFired")
        await self.send("Page.navigate", url=url)
        await asyncio.wait_for(loaded.get(), 20)

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    async def click(self, selector: str) -> None:
        """A real mouse click at the element's centre, then the page it leads to."""
        loaded = self.expect("Page.loadEventFired")
        await self.press(selector)
        await asyncio.wait_for(loaded.get(), 20)

    async def press(self, selector: str) -> None:
        """A real mouse click at the element's centre, without waiting for a page."""
        await self.evaluate(
            f"document.querySelector({json.dumps(selector)}).scrollIntoView({{block: 'center'}})"
        )
        # The first of its boxes: a link wrapped over two lines has nothing at the middle
        # of its bounding rectangle.
        box = await self.evaluate(
            f"(() => {{ const r = document.querySelector({json.dumps(selector)})"
            ".getClientRects()[0]; return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        for kind in ("mousePressed", "mouseReleased"):
            await self.send(
                "Input.dispatchMouseEvent",
                type=kind,
                x=box[0],
                y=box[1],
                button="left",
                clickCount=1,
            )

    async def screenshot(self, width: int, height: int, *, mobile: bool) -> bytes:
        """The viewport at this size, as PNG bytes."""
        await self.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=mobile,
        )
        shot = await self.send("Page.captureScreenshot", format="png")
        return base64.b64decode(shot["data"])


@asynccontextmanager
async def chromium(folder: Path) -> AsyncIterator[Page]:
    """Debian's Chromium, headless, with one page ready for commands."""
    assert CHROMIUM is not None
    profile = folder / "chromium-profile"
    process = await asyncio.create_subprocess_exec(
        CHROMIUM,
        *FLAGS,
        f"--user-data-dir={profile}",
        "about:blank",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        for _ in range(300):
            if port_file.exists() and port_file.read_text().count("\n") >= 1:
                break
            await asyncio.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        async with aiohttp.ClientSession() as session:
            async with session.put(f"http://127.0.0.1:{port}/json/new?about:blank") as response:
                target = await response.json(content_type=None)
            async with session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                page = Page(ws)
                await page.send("Page.enable")
                await page.send("Network.enable")
                try:
                    yield page
                finally:
                    page.reader.cancel()
                    with suppress(asyncio.CancelledError):
                        await page.reader
    finally:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()
