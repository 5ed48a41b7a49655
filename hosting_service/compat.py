"""Import shim that lets spyne 2.14.0 run on Python 3.12 and later.

spyne vendors six 1.14, whose ``six.moves`` meta-path importer only implements the ``find_module``/
``load_module`` protocol that Python 3.12 removed, so ``import spyne`` fails there with
``No module named 'spyne.util.six.moves'``. :func:`ensure_spyne_importable` puts a small finder in front
of it that speaks the current protocol and delegates to the vendored importer (the fix six 1.16 made
upstream). On Python 3.11 it does nothing. On 3.13 the ``cgi`` module spyne imports comes from the
``legacy-cgi`` distribution, a declared dependency.

Every module of this project that uses spyne imports it after calling this function (the packages
``hosting_service.wire`` and ``client`` call it on import).
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import sys

_PREFIX = "spyne.util.six.moves"


class _SixMovesFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolve ``spyne.util.six.moves.*`` through the vendored six importer's legacy protocol."""

    @staticmethod
    def _legacy():
        six = sys.modules.get("spyne.util.six")
        return getattr(six, "_importer", None)

    def find_spec(self, fullname, path=None, target=None):
        if not fullname.startswith(_PREFIX):
            return None
        legacy = self._legacy()
        if legacy is None or fullname not in legacy.known_modules:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        return self._legacy().load_module(spec.name)

    def exec_module(self, module):
        return None


def ensure_spyne_importable() -> None:
    """Install the finder once, if this Python needs it."""
    if sys.version_info < (3, 12):
        return
    if not any(isinstance(f, _SixMovesFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _SixMovesFinder())
