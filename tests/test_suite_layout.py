"""The tests mirror the package: each module of ``compressai_psic.models``,
``compressai_psic.losses`` and ``compressai_psic.io`` has its test module
(``tests/<package>/test_<module>.py``), and no test module is named after how
its tests were found (a mutation run, a refactor)."""

from __future__ import annotations

import re

from .helpers import ROOT

#: Packages whose every module has ``tests/<package>/test_<module>.py``.
MIRRORED = ("models", "losses", "io")

#: Modules tested elsewhere, and where.
TESTED_ELSEWHERE = {
    # google.py only declares the shielded classes and their plans: the plans
    # are checked per architecture in test_registry.py, the classes'
    # registration in test_registration.py.
    "models/google.py": ("models/test_registry.py", "models/test_registration.py"),
}


def test_each_core_module_has_its_test_module():
    missing = []
    for package in MIRRORED:
        for module in sorted((ROOT / "compressai_psic" / package).glob("*.py")):
            if module.name.startswith("__"):
                continue
            key = f"{package}/{module.name}"
            expected = [f"{package}/test_{module.name}"]
            where = TESTED_ELSEWHERE.get(key, expected)
            if not all((ROOT / "tests" / path).is_file() for path in where):
                missing.append(f"{key}: {', '.join(where)}")
    assert missing == []


def test_no_test_module_is_named_after_a_tool_run_or_a_refactor():
    names = [p.name for p in (ROOT / "tests").rglob("test_*.py")]
    bad = [n for n in names if re.search(r"mutant|mutation|_v\d|refactor", n)]
    assert bad == []
