"""`reminder init`: a new cycle's folder from the sample the package carries."""

from __future__ import annotations

import shutil
from pathlib import Path

from ..core.answer import Answer
from ..core.errors import ReminderError

# What a cycle's folder holds: the config (commented for staff), the mail's templates,
# an empty suppression list and an export of fictional registrants to replace.
SAMPLE = ("config.toml", "registrants.csv", "suppression.txt", "templates")


def sample_folder() -> Path:
    """Where the sample lies: inside the installed package (the wheel carries it as
    `reminder/sample`), or at the top of a checkout for an editable install."""
    package = Path(__file__).resolve().parent.parent
    for folder in (package / "sample", package.parent):
        if all((folder / name).exists() for name in SAMPLE):
            return folder
    raise ReminderError(
        f"the sample cycle is missing from this installation ({package / 'sample'}): "
        "reinstall reminder from its wheel or its checkout"
    )


def init(config_path: Path, *, folder: Path) -> Answer:
    """Write a new cycle's folder that passes `reminder check`; never overwrite a file."""
    sample = sample_folder()
    existing = [folder / name for name in SAMPLE if (folder / name).exists()]
    if existing:
        raise ReminderError(
            f"{existing[0]} already exists: `reminder init` never overwrites a cycle; "
            "choose an empty or new folder"
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name in SAMPLE:
            source = sample / name
            if source.is_dir():
                shutil.copytree(source, folder / name)
            else:
                shutil.copyfile(source, folder / name)
    except OSError as exc:
        raise ReminderError(f"cannot write the cycle's folder {folder}: {exc.strerror}") from None
    config = folder / "config.toml"
    return (
        Answer()
        .say(f"wrote a new cycle in {folder}: " + ", ".join(SAMPLE))
        .say(f"next: edit {config} (cycle, dates, sender), replace registrants.csv by your")
        .say(f"form's export, then run `reminder --config {config} check`")
    )
