"""The commands of the README and of docs/ as written: every command of the
package's tools parses with its current flags, the offline ``psic`` commands
run in order on real files, the Python blocks compile, and the docs' code
blocks pass ``ruff format --check`` where this ruff formats Markdown. The
scripts of ``tools/`` and ``scripts/`` named in any code of the README, the
changelog, BENCHMARKS.md, docs/ and the model cards, inline code included,
exist, and the options given to them there are their parsers' own."""

from __future__ import annotations

import argparse
import importlib
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator, List, Tuple
from unittest import mock

import numpy as np
import pytest
from PIL import Image

from .helpers import ROOT

#: The documents whose commands are checked (zoo/*.md are model cards kept with
#: the models; their commands are the training tools' own docstrings).
DOCS = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    ROOT / "BENCHMARKS.md",
]

_BLOCK = re.compile(r"```(bash|python)\n(.*?)```", re.S)


def blocks(kind: str) -> Iterator[Tuple[Path, str]]:
    for path in DOCS:
        for match in _BLOCK.finditer(path.read_text(encoding="utf-8")):
            if match.group(1) == kind:
                yield path, match.group(2)


def commands(text: str) -> List[List[str]]:
    """The shell commands of a block: continuations joined, comments and
    ``VAR=value`` prefixes dropped, ``a && b`` split."""
    out = []
    for line in text.replace("\\\n", " ").splitlines():
        for part in re.split(r"&&|;", line):
            argv = shlex.split(part, comments=True)
            while argv and re.fullmatch(r"[A-Z_]+=\S*", argv[0]):
                argv.pop(0)
            if argv:
                out.append(argv)
    return out


def _ours(argv: List[str]) -> bool:
    """A command of this package or of CompressAI (not pip, bash, ruff, …)."""
    if argv[0] == "psic":
        return True
    if argv[0] != "python" or len(argv) < 3:
        return False
    if argv[1] == "-m":
        return argv[2].startswith(("compressai_psic", "compressai.utils"))
    return argv[1].startswith("tools/")


def all_commands() -> List[Tuple[str, List[str]]]:
    return [
        (f"{path.name}: {' '.join(argv)[:70]}", argv)
        for path, text in blocks("bash")
        for argv in commands(text)
        if _ours(argv)
    ]


def _parser_of(argv: List[str]):
    """(parser, arguments) of a command of this package or of CompressAI; None
    for the others (pip, bash, ruff, torchrun, …)."""
    if argv[0] == "psic":
        from compressai_psic import cli

        return cli.build_parser(argv[1] if len(argv) > 1 else None), argv[1:]
    if argv[0] != "python" or len(argv) < 2:
        return None
    if argv[1] == "-m" and len(argv) > 2:
        module, rest = argv[2], argv[3:]
        if module == "compressai_psic":
            from compressai_psic import cli

            return cli.build_parser(rest[0] if rest else None), rest
        if module == "compressai_psic.train":
            from compressai_psic.train import build_parser

            return build_parser(), rest
        if module == "compressai_psic.utils.plot" and rest[:1] == ["pareto"]:
            from compressai_psic.utils import pareto

            return pareto.build_parser(), rest[1:]
        if module.startswith("compressai_psic.utils."):
            return importlib.import_module(module).build_parser(), rest
        if module in ("compressai.utils.eval_model", "compressai.utils.plot"):
            return importlib.import_module(f"{module}.__main__").setup_args(), rest
        raise AssertionError(f"unknown module in the docs: {module}")
    if argv[1].startswith("tools/"):
        tool = importlib.import_module(f"tools.{Path(argv[1]).stem}")
        if hasattr(tool, "build_parser"):
            return tool.build_parser(), argv[2:]
    return None


@pytest.mark.parametrize(
    "argv", [a for _, a in all_commands()], ids=[i for i, _ in all_commands()]
)
def test_documented_command_parses(argv):
    found = _parser_of(argv)
    if found is None:
        pytest.skip("a tool without an argument parser")
    parser, rest = found
    try:
        parser.parse_args([a for a in rest if a != "--help"])
    except SystemExit as exc:  # an unknown or malformed flag
        pytest.fail(f"{' '.join(argv)}: rejected by its parser (exit {exc.code})")


def test_python_blocks_compile():
    for path, text in blocks("python"):
        compile(text, str(path), "exec")


def _photo(path: Path) -> None:
    try:
        import matplotlib

        sample = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
        Image.open(sample).convert("RGB").resize((160, 128)).save(path)
    except ImportError:  # a generated picture when matplotlib is absent
        rng = np.random.default_rng(0)
        Image.fromarray(rng.integers(0, 256, (128, 160, 3), np.uint8)).save(path)


def test_readme_cli_block_runs_as_written(tmp_path, capsys):
    """The README's ``psic`` block, run in order in a folder that holds the files
    it names (a photo, a folder of photos, a checkpoint), offline."""
    from compressai_psic import cli, zoo

    _photo(tmp_path / "photo.jpg")
    (tmp_path / "photos").mkdir()
    for name in ("a.jpg", "b.png"):
        _photo(tmp_path / "photos" / name)
    shutil.copy(
        zoo.named_codec_file("demo-psic"), tmp_path / "my-model-1a2b3c4d.pth.tar"
    )
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = next(t for t in _BLOCK.findall(readme) if "psic info photo.psic" in t[1])
    ran = 0
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)
        for argv in commands(block[1]):
            if argv[:2] == ["psic", "demo"]:
                continue  # 45 s; tests/test_wheel.py runs the demo
            assert cli.main(argv[1:]) == 0, (argv, capsys.readouterr().err)
            ran += 1
    assert ran >= 9
    for name in ("protected.png", "full.png", "both_protected.png", "both_full.png"):
        with Image.open(tmp_path / name) as image:
            assert image.size == (160, 128)
    assert sorted(p.name for p in (tmp_path / "encoded").iterdir()) == [
        "a.psic",
        "b.psic",
    ]


def test_docs_code_blocks_are_formatted():
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed")
    docs = [str(ROOT / "README.md"), str(ROOT / "docs")]
    done = subprocess.run(
        [ruff, "format", "--check", *docs], capture_output=True, text=True, cwd=ROOT
    )
    if "No Python files found" in done.stderr + done.stdout:
        pytest.skip("this ruff does not format Markdown")
    assert done.returncode == 0, done.stdout + done.stderr


#: Every document whose figures name the tool that measured them: the model
#: cards and the changelog too.
FIGURE_DOCS = [
    ROOT / "README.md",
    ROOT / "CHANGELOG.md",
    ROOT / "BENCHMARKS.md",
    *sorted((ROOT / "docs").glob("*.md")),
    *sorted((ROOT / "zoo").glob("*.md")),
]

_FENCE = re.compile(r"```[^\n]*\n(.*?)```", re.S)
_SPAN = re.compile(r"`([^`]+)`")
#: A script of the repository named in a command: tools/x.py, scripts/y.sh, …
_SCRIPT = re.compile(r"(?<![\w./-])((?:tools|scripts)/[\w/]+\.(?:py|sh))")


def code_texts(path: Path) -> Iterator[str]:
    """The code of a document: each fenced block (continuations joined) and each
    inline code span (line breaks inside a span are spaces)."""
    text = path.read_text(encoding="utf-8")
    for match in _FENCE.finditer(text):
        yield match.group(1).replace("\\\n", " ")
    for match in _SPAN.finditer(_FENCE.sub("", text)):
        yield match.group(1).replace("\n", " ")


def script_uses() -> List[Tuple[str, str, List[str]]]:
    """(document, script, the options given to it) for every script of tools/
    or scripts/ that a document's code names; the options are those up to the
    end of that command (``&&``, ``;``, ``|``, a redirection or a comment)."""
    uses = []
    for path in FIGURE_DOCS:
        doc = path.relative_to(ROOT).as_posix()
        for code in code_texts(path):
            for line in code.splitlines():
                for part in re.split(r"&&|;|\|", line):
                    for found in _SCRIPT.finditer(part):
                        rest = part[found.end() :]
                        try:
                            argv = shlex.split(rest, comments=True)
                        except ValueError:  # an unbalanced quote: words will do
                            argv = rest.split()
                        options = []
                        for word in argv:
                            if word.startswith((">", "<", "2>")):
                                break
                            if re.fullmatch(r"--?[A-Za-z][\w-]*(=.*)?", word):
                                options.append(word.split("=", 1)[0])
                        uses.append((doc, found.group(1), options))
    return uses


class _Parsed(Exception):
    """Raised in place of parsing, to hand a tool's parser back."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        super().__init__()
        self.parser = parser


def _tool_options(script: str) -> set:
    """The option strings a ``tools/*.py`` script accepts: those of its
    ``build_parser()``, of the parser its ``parse_args()`` builds, or of the
    package command it wraps (``tools/train.py``)."""
    name = Path(script).stem
    module = importlib.import_module(script[: -len(".py")].replace("/", "."))
    if name == "train":  # `python -m compressai_psic.train` under another name
        from compressai_psic.train import build_parser

        parser = build_parser()
    elif hasattr(module, "build_parser"):
        parser = module.build_parser()
    elif hasattr(module, "parse_args"):  # the parser is built inside parse_args

        def hand_back(self, *args, **kwargs):
            raise _Parsed(self)

        with mock.patch.object(argparse.ArgumentParser, "parse_args", hand_back):
            with pytest.raises(_Parsed) as parsed:
                module.parse_args([])
        parser = parsed.value.parser
    else:
        raise AssertionError(f"{script}: no argument parser to check the docs with")
    return {s for action in parser._actions for s in action.option_strings}


#: Scripts the changelog names as removed (they need not exist).
REMOVED_SCRIPTS = {"tools/eval_rd.py"}  # 0.2.0: replaced by utils.eval_model


def test_docs_name_only_scripts_and_options_that_exist():
    """Every ``tools/…``/``scripts/…`` script named in the code of README,
    CHANGELOG, BENCHMARKS, docs/ and the model cards exists, and every option
    given to a ``tools/*.py`` script there is one its argument parser accepts
    (so that each figure's command can be run as written)."""
    uses = script_uses()
    assert len(uses) > 50, "the docs' commands were not found"
    accepted = {}
    wrong = []
    for doc, script, options in uses:
        if not (ROOT / script).is_file():
            if doc == "CHANGELOG.md" and script in REMOVED_SCRIPTS:
                continue
            wrong.append(f"{doc}: {script} does not exist")
            continue
        if not (options and script.startswith("tools/") and script.endswith(".py")):
            continue
        if script not in accepted:
            accepted[script] = _tool_options(script)
        for option in options:
            if option not in accepted[script]:
                wrong.append(f"{doc}: {script} has no option {option}")
    assert not wrong, "\n".join(sorted(set(wrong)))
