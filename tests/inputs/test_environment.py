"""REMINDER_* overrides: read as BaseSettings read them, with pydantic-settings loaded for them."""

import copy
import os
import subprocess
import sys
import tomllib
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError, create_model
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from reminder.inputs.config import ENV_PREFIX, Config
from reminder.inputs.environment import with_overrides
from tests.support.project import REPO


class _Settings(BaseSettings):
    """How Config read the environment when it was a BaseSettings: the reference."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (env_settings, init_settings)


Reference: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "Reference",
    __base__=_Settings,
    **{name: (field.annotation, field) for name, field in Config.model_fields.items()},
)

SAMPLE = tomllib.loads((REPO / "config.toml").read_text(encoding="utf-8"))

ENVIRONMENTS = {
    "none": {},
    "config path only": {"REMINDER_CONFIG": "/srv/reminder/config.toml"},
    "nested keys": {
        "REMINDER_SMTP__HOST": "smtp.example.org",
        "REMINDER_SMTP__PORT": "465",
        "REMINDER_SMTP__SECURITY": "tls",
        "REMINDER_SMTP__SENDER": "rappels@irev.fr",
        "REMINDER_SMTP__PASSWORD": "hunter2-secret",
    },
    "a list as JSON": {"REMINDER_REMINDERS__LEADS": '["2d", "30m"]'},
    "lower-case name": {"reminder_cycle__title": "Autre titre"},
    "a whole table as JSON": {"REMINDER_LEDGER": '{"lease": "1m"}'},
    "a list of tables": {"REMINDER_SESSIONS": '[{"date": "2023-03-01", "topic": "Autre"}]'},
    "empty value": {"REMINDER_SMTP__SENDER_NAME": ""},
    "booleans and durations": {
        "REMINDER_HTTP__ENABLED": "false",
        "REMINDER_REMINDERS__LATE_CUTOFF": "2h",
    },
    "not a key": {"REMINDER_NOPE": "1", "REMINDER_SMTPX__HOST": "h", "REMINDER_": "x"},
    "invalid value": {"REMINDER_SMTP__PORT": "lots", "REMINDER_CYCLE__TIMEZONE": "Mars/Olympus"},
    "unknown nested key": {"REMINDER_SMTP__HOTS": "smtp.example.org"},
}


def outcome(build: Any) -> Any:
    try:
        return build().model_dump()
    except ValidationError as exc:
        return [(e["type"], e["loc"], e["msg"], e.get("input")) for e in exc.errors()]


@pytest.mark.parametrize("environment", ENVIRONMENTS.values(), ids=ENVIRONMENTS.keys())
def test_overrides_are_what_a_base_settings_read(
    environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    ours = outcome(lambda: Config(**with_overrides(Config, ENV_PREFIX, copy.deepcopy(SAMPLE))))
    assert ours == outcome(lambda: Reference(**copy.deepcopy(SAMPLE)))


PROBE = """
import sys
from pathlib import Path
from reminder.inputs.config import load_config
config = load_config(Path(sys.argv[1]))
print(config.smtp.host, "pydantic_settings" in sys.modules)
"""


@pytest.mark.parametrize(
    ("environment", "shown"),
    [
        ({}, "None False"),
        ({"REMINDER_CONFIG": "config.toml", "REMINDER_LOG": "x"}, "None False"),
        ({"REMINDER_SMTP__HOST": "localhost"}, "localhost True"),
        ({"reminder_smtp__host": "localhost"}, "localhost True"),
    ],
)
def test_pydantic_settings_is_loaded_only_for_an_override(
    environment: dict[str, str], shown: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("REMINDER")}
    found = subprocess.run(
        [sys.executable, "-c", PROBE, str(REPO / "config.toml")],
        capture_output=True,
        text=True,
        check=True,
        env=env | environment,
    ).stdout.strip()
    assert found == shown
