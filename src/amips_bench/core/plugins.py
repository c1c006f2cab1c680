"""Extensions loaded by name: modules that register routers or figures.

`AMIPS_BENCH_PLUGINS=pkg.module,other.module` imports those modules wherever the registries are
read (the CLI, the workflow, the comparison), so a router or figure defined outside the package
is found in every place without editing it. A module that cannot be imported stops in one line.
"""

from __future__ import annotations

import importlib
import os

from .errors import InputError

PLUGINS_ENV = "AMIPS_BENCH_PLUGINS"


def load_plugins() -> list[str]:
    """Import the modules named in AMIPS_BENCH_PLUGINS (each once); their names."""
    names = [n.strip() for n in os.environ.get(PLUGINS_ENV, "").split(",") if n.strip()]
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise InputError(f"{PLUGINS_ENV}: cannot import {name!r} ({exc})") from None
    return names
