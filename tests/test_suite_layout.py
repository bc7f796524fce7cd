"""The tests mirror the package: each module of the packages in
:data:`MIRRORED` (the core, the losses, the ``.psic`` files, the zoo, the
scraper transforms, the ``utils`` tools, the ``psic`` command, the training
command, the datasets, ``psic demo``, the privacy evaluation and the VLPs) has
its test module (``tests/<package>/test_<module>.py``), each of their test
modules tests its module or subpackage (or is listed with what it tests
instead), and no test module is named after how its tests were found (a
mutation run, a refactor, a first-day walk-through)."""

from __future__ import annotations

import re

from .helpers import ROOT

#: Packages whose every module has ``tests/<package>/test_<module>.py``.
MIRRORED = (
    "models",
    "losses",
    "io",
    "zoo",
    "transforms",
    "utils",
    "cli",
    "train",
    "datasets",
    "demo",
    "evaluation",
    "vlp",
)

#: Modules tested elsewhere, and where.
TESTED_ELSEWHERE = {
    # google.py only declares the shielded classes and their plans: the plans
    # are checked per architecture in test_registry.py, the classes'
    # registration in test_registration.py.
    "models/google.py": ("models/test_registry.py", "models/test_registration.py"),
    # The BD-rate helpers, through eval_model's BD-rates and the plot tool.
    "utils/bd.py": ("utils/test_eval_model.py", "utils/test_plot.py"),
    # The Pareto plot of retrieval reports, with the retrieval tools' reports.
    "utils/pareto.py": ("evaluation/test_retrieval_tools.py",),
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


#: Test modules of the mirrored packages that test no module of theirs.
OTHER_TESTS = {
    "models/test_demo_pin.py": "the shipped demo codec's decodes, pinned",
    "io/test_fuzzing.py": "the decode fuzzer of tools/_lib/fuzzing.py",
    "io/test_cross_device.py": "tools/cross_device.py and tools/decode_breakdown.py "
    "(decodes on another device or thread count, the decode's parts), on the CPU",
    # End to end: each test runs several commands, none belongs to one module.
    "cli/test_round_trips.py": "psic compress then psic decompress, end to end "
    "(sizes, headers, the library's decode, every path, output names)",
    # The harness (tools/) retrains the shipped demo models; its tests sit next
    # to the demo whose models they retrain.
    "demo/test_train_demo_psic.py": "tools/train_demo_psic.py, the harness tool "
    "that retrains the demo codec",
    "demo/test_vlp_training.py": "tools/_lib/vlp_training.py and "
    "tools/train_demo_vlp.py, the harness's scene-CLIP training",
    "evaluation/test_retrieval_tools.py": "tools/eval_retrieval.py and "
    "tools/plot_pareto.py, the harness's retrieval benchmark and its plot",
}


def test_each_test_module_of_the_core_tests_its_module():
    stray = []
    for package in MIRRORED:
        for test in sorted((ROOT / "tests" / package).glob("test_*.py")):
            module = ROOT / "compressai_psic" / package / test.name[len("test_") :]
            # A subpackage (datasets/scenes/) has one test module too.
            subpackage = module.with_suffix("") / "__init__.py"
            tested = module.is_file() or subpackage.is_file()
            key = f"{package}/{test.name}"
            if not tested and key not in OTHER_TESTS:
                stray.append(key)
    assert stray == []


def test_no_test_module_is_named_after_a_tool_run_or_a_refactor():
    names = [p.name for p in (ROOT / "tests").rglob("test_*.py")]
    pattern = r"mutant|mutation|_v\d|refactor|contracts|first_day"
    bad = [n for n in names if re.search(pattern, n)]
    assert bad == []
