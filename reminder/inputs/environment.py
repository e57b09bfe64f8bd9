"""Overrides of config.toml from REMINDER_* variables, read by pydantic-settings when set.

pydantic-settings (with the asyncio and dotenv it imports) takes longer to load than all
the rest `reminder plan` needs, so it is imported only when the environment holds an
override: a variable named after a top-level key, alone (a JSON value) or followed by
`__` and a key within it. What it reads, and how, is then its own, as when the config was
a BaseSettings whose first source was the environment.
"""

from __future__ import annotations

import os
from typing import Any, cast

from pydantic import BaseModel

NESTED = "__"  # REMINDER_SMTP__HOST: smtp.host


def with_overrides(schema: type[BaseModel], prefix: str, data: dict[str, Any]) -> dict[str, Any]:
    """`data` (a config file's tables) with the environment's values for `schema`'s keys
    merged in, the environment winning, key by key in nested tables."""
    # Variable names are matched without regard to case, as pydantic-settings matches them.
    keys = {f"{prefix}{name}".lower() for name in schema.model_fields}
    if not any(_overrides(name.lower(), keys) for name in os.environ):
        return data
    from pydantic._internal._utils import deep_update
    from pydantic_settings import BaseSettings, EnvSettingsSource

    # The source reads only a schema's fields and model_config, which any model has.
    source = EnvSettingsSource(
        cast(type[BaseSettings], schema),
        case_sensitive=False,
        env_prefix=prefix,
        env_nested_delimiter=NESTED,
    )
    return deep_update(data, source())


def _overrides(name: str, keys: set[str]) -> bool:
    key, _, _ = name.partition(NESTED)
    return key in keys
