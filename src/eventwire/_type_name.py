"""The default CloudEvents ``ce_type`` of an event class: ``module.QualName``.

A class defined in the script being run has ``__module__ == "__main__"`` (and, in a
``multiprocessing`` child started by *spawn*, ``"__mp_main__"``), while the same class
imported by name (``eventwire schema export events``, a consumer, a test) has the
module's real name. So the script is named by the module it is when imported: its
``__spec__.name`` when run with ``python -m app.events``, else its file's stem
(``python events.py`` gives ``events``). Only a ``__main__`` with neither (a REPL,
``python -c``) stays ``__main__``. A route's explicit ``type_name=`` always wins; give one
for a contract that must not depend on how the code was started.
"""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["default_type_name"]

_SCRIPT_MODULES = frozenset({"__main__", "__mp_main__"})


def default_type_name(cls: type) -> str:
    """``module.QualName`` of ``cls``, the script being run named as when imported."""
    module = cls.__module__
    if module in _SCRIPT_MODULES:
        module = _importable_name(module) or module
    return f"{module}.{cls.__qualname__}"


def _importable_name(module: str) -> str | None:
    main = sys.modules.get(module)
    spec = getattr(main, "__spec__", None)
    name = getattr(spec, "name", None)
    if isinstance(name, str) and name not in _SCRIPT_MODULES:
        return name.removesuffix(".__main__")  # python -m app (app/__main__.py): "app"
    file = getattr(main, "__file__", None)
    if isinstance(file, str):
        stem = Path(file).stem
        if stem.isidentifier():
            return stem
    return None
