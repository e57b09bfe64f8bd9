"""Debian's Thunderbird, headless, driven over Marionette: a real calendar client that reads
our mails, shows its invitation bar and applies the entry to its own calendar.

Thunderbird is started with a fresh profile and `--marionette`; the test talks to it over
Marionette's TCP protocol (length-prefixed JSON) and runs scripts in its chrome context:
the same objects its own tests use (MailServices, the calendar manager, the 3-pane window).
Clicks are the bar's own buttons, as a registrant would press them.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

THUNDERBIRD = shutil.which("thunderbird")
COMMAND = [THUNDERBIRD or "thunderbird", "--marionette", "-remote-allow-system-access"]
COMMAND += ["-no-remote", "-profile"]
FOLDER = "Rappels"
PREFS = {
    "marionette.port": 0,  # any free port, written to MarionetteActivePort
    "mail.shell.checkDefaultClient": False,
    "mail.provider.suppress_dialog_on_startup": True,
    "mailnews.start_page.enabled": False,
    "mail.rights.override": True,
    "datareporting.policy.dataSubmissionEnabled": False,
    "toolkit.telemetry.reportingpolicy.firstRun": False,
    "app.update.disabledForTesting": True,
    "mail.spotlight.firstRunDone": True,
    "calendar.timezone.local": "Europe/Paris",
    "calendar.timezone.useSystemTimezone": False,
    "intl.regional_prefs.use_os_locales": False,
}
IMPORTS = """
const { MailServices } = ChromeUtils.importESModule("resource:///modules/MailServices.sys.mjs");
const { cal } = ChromeUtils.importESModule("resource:///modules/calendar/calUtils.sys.mjs");
const about3Pane = () => document.getElementById("tabmail").currentAbout3Pane;
const messageDocument = () => about3Pane().messageBrowser.contentWindow.document;
const barButtons = () => [...messageDocument().querySelectorAll("#imip-view-toolbar > *")]
  .filter(node => node.localName == "toolbarbutton" && !node.hidden);
const barLabel = () => messageDocument().getElementById("imip-bar")
  .querySelector(".msgNotificationBarText, description, label").textContent.trim();
const paris = () => cal.timezoneService.getTimezone("Europe/Paris");
"""


@dataclass(frozen=True)
class Bar:
    """The invitation bar above a message: what it says and the buttons it shows."""

    label: str
    buttons: tuple[str, ...]


class Marionette:
    """Marionette's wire protocol: `length:json` packets, commands [0, id, name, params]."""

    def __init__(self, port: int) -> None:
        self.socket = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.buffer = b""
        self.counter = 0
        self._read()  # the server's greeting
        self.command("WebDriver:NewSession", {"capabilities": {}})
        self.command("Marionette:SetContext", {"value": "chrome"})

    def _read(self) -> Any:
        while b":" not in self.buffer:
            self.buffer += self.socket.recv(65536)
        size, _, rest = self.buffer.partition(b":")
        while len(rest) < int(size):
            rest += self.socket.recv(1 << 20)
        self.buffer = rest[int(size) :]
        return json.loads(rest[: int(size)])

    def command(self, name: str, params: dict[str, Any]) -> Any:
        self.counter += 1
        packet = json.dumps([0, self.counter, name, params]).encode()
        self.socket.sendall(str(len(packet)).encode() + b":" + packet)
        _, _, error, result = self._read()
        if error:
            raise RuntimeError(f"{name}: {error['message']}")
        return result

    def run(self, script: str, *args: Any) -> Any:
        """`script` in Thunderbird's main window, with the module imports above."""
        params = {"script": IMPORTS + script, "args": list(args)}
        return self.command("WebDriver:ExecuteScript", params)["value"]

    def run_async(self, script: str, *args: Any) -> Any:
        """`script` that ends by calling `done(result)`, for the calendar's promises."""
        prelude = "const done = arguments[arguments.length - 1];\n"
        params = {"script": IMPORTS + prelude + script, "args": list(args), "scriptTimeout": 20000}
        return self.command("WebDriver:ExecuteAsyncScript", params)["value"]


class Thunderbird:
    """One running Thunderbird: a mailbox for one registrant, and their calendar."""

    def __init__(self, marionette: Marionette) -> None:
        self.marionette = marionette

    def prepare(self, address: str, smtp_port: int) -> None:
        """A local folder, an identity for `address` sending through 127.0.0.1:`smtp_port`,
        and the Home calendar enabled for invitations to that identity."""
        self.marionette.run(
            """
            const [address, port, name] = arguments;
            let local;
            try { local = MailServices.accounts.localFoldersServer; }
            catch (e) { MailServices.accounts.createLocalMailAccount(); }
            local = MailServices.accounts.localFoldersServer;
            const smtp = MailServices.outgoingServer.createServer("smtp")
                .QueryInterface(Ci.nsISmtpServer);
            smtp.hostname = "127.0.0.1";
            smtp.port = port;
            smtp.authMethod = Ci.nsMsgAuthMethod.none;
            smtp.socketType = Ci.nsMsgSocketType.plain;
            const identity = MailServices.accounts.createIdentity();
            identity.email = address;
            identity.fullName = address;
            identity.smtpServerKey = smtp.key;
            MailServices.accounts.findAccountForServer(local).addIdentity(identity);
            local.rootFolder.createSubfolder(name, null);
            const calendar = cal.manager.getCalendars()[0];
            calendar.setProperty("disabled", false);
            calendar.setProperty("imip.identity.key", identity.key);
            about3Pane().displayFolder(local.rootFolder.getChildNamed(name).URI);
            """,
            address,
            smtp_port,
            FOLDER,
        )

    def open_mail(self, data: bytes) -> Bar:
        """`data` delivered into the folder and shown, as a registrant opens it."""
        found = re.search(rb"\r\nMessage-ID:\s*<([^>]+)>", data)  # folded when long
        assert found is not None
        message_id = found.group(1).decode()
        self.marionette.run(
            """
            const folder = MailServices.accounts.localFoldersServer.rootFolder
                .getChildNamed(arguments[1]);
            folder.QueryInterface(Ci.nsIMsgLocalMailFolder)
                .addMessage("From - Mon Jan  1 00:00:00 2023\\n" + arguments[0]);
            """,
            data.decode("ascii").replace("\r\n", "\n"),
            FOLDER,
        )
        self._until(
            """
            const view = about3Pane().gDBView;
            for (let row = 0; row < view.rowCount; row++) {
              if (view.getMsgHdrAt(row).messageId == arguments[0]) {
                if (about3Pane().threadTree.selectedIndex != row) {
                  about3Pane().threadTree.selectedIndex = row;
                }
                return true;
              }
            }
            return false;
            """,
            message_id,
        )
        self._until(
            """
            const bar = messageDocument().getElementById("imip-bar");
            return bar && !bar.hidden && barButtons().length > 0;
            """
        )
        return self.bar()

    def bar(self) -> Bar:
        label, buttons = self.marionette.run(
            """
            return [barLabel(), barButtons().map(button => button.id)];
            """
        )
        return Bar(label.strip(), tuple(buttons))

    def press(self, button: str) -> Bar:
        """Press one of the bar's buttons, and wait for Thunderbird to have acted on it."""
        before = self.bar()
        assert button in before.buttons, f"{button} is not on the bar: {before}"
        self.marionette.run("messageDocument().getElementById(arguments[0]).click();", button)
        self._until(
            """
            return barLabel() != arguments[0];
            """,
            before.label,
        )
        return self.bar()

    def events(self) -> list[dict[str, Any]]:
        """Every event of the calendar, as Thunderbird holds it."""
        found: list[dict[str, Any]] = self.marionette.run_async(
            """
            cal.manager.getCalendars()[0]
              .getItemsAsArray(Ci.calICalendar.ITEM_FILTER_ALL_ITEMS, 0, null, null)
              .then(items => done(items.map(item => ({
                uid: item.id,
                title: item.title,
                start: item.startDate.getInTimezone(paris()).icalString,
                sequence: Number(item.getProperty("SEQUENCE") || 0),
                status: item.getProperty("STATUS"),
                organizer: item.organizer ? item.organizer.id : null,
              }))));
            """
        )
        return found

    def show_calendar(self, day: date) -> None:
        self.marionette.run(
            """
            document.getElementById("tabmail").openTab("calendar");
            window.switchToView("month");
            window.currentView().goToDay(cal.createDateTime(arguments[0]));
            """,
            day.strftime("%Y%m%d"),
        )

    def show_mail(self) -> None:
        self.marionette.run('document.getElementById("tabmail").switchToTab(0);')

    def screenshot(self, path: Path) -> Path:
        shot = self.marionette.command("WebDriver:TakeScreenshot", {"full": False})
        path.write_bytes(base64.b64decode(shot["value"]))
        return path

    def _until(self, script: str, *args: Any, within: float = 20.0) -> None:
        """Wait for a condition in Thunderbird (not for a wall-clock instant)."""
        deadline = time.monotonic() + within
        while not self.marionette.run(script, *args):
            if time.monotonic() > deadline:
                raise AssertionError(f"Thunderbird never met: {script.strip()[:200]}")
            time.sleep(0.05)


@contextmanager
def thunderbird(folder: Path) -> Iterator[Thunderbird]:
    """Thunderbird, headless, on a fresh profile in `folder`; its log beside it."""
    assert THUNDERBIRD is not None
    profile = folder / "thunderbird-profile"
    profile.mkdir(parents=True)
    (profile / "user.js").write_text(
        "".join(f"user_pref({json.dumps(k)}, {json.dumps(v)});\n" for k, v in PREFS.items())
    )
    environment = {
        **os.environ,
        "MOZ_HEADLESS": "1",  # no display needed; screenshots are drawn all the same
        "MOZ_HEADLESS_WIDTH": "1280",
        "MOZ_HEADLESS_HEIGHT": "900",
    }
    with (folder / "thunderbird.log").open("wb") as log:
        process = subprocess.Popen(
            [*COMMAND, str(profile)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environment,
            start_new_session=True,  # its own process group: stopped whole, by its id
        )
        marionette: Marionette | None = None
        try:
            port_file = profile / "MarionetteActivePort"
            started = "Thunderbird starting"
            wait_for(
                lambda: port_file.exists() and port_file.read_text().strip() != "", 60, started
            )
            marionette = Marionette(int(port_file.read_text()))
            ready = "return !!document.getElementById('tabmail')"
            wait_for(lambda: bool(marionette.run(ready)), 30, started)
            yield Thunderbird(marionette)
        finally:
            if marionette is not None:
                with suppress(OSError, RuntimeError):
                    marionette.command("Marionette:Quit", {"flags": ["eForceQuit"]})
                marionette.socket.close()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def wait_for(condition: Callable[[], bool], within: float, what: str) -> None:
    """Wait for a condition (not for a wall-clock instant), failing after `within` s."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not in {within} s")
        time.sleep(0.05)
