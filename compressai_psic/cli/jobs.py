"""Inputs paired with outputs, and a run over them.

One file, several files, or a folder: :func:`pair_files` names the outputs
(next to the inputs, or under ``-o``) and refuses collisions;
:func:`check_jobs` refuses, in one line before any model loads, existing
outputs (unless ``--force``) and, for files given one by one, missing or wrong
inputs; :func:`run_jobs` creates a missing output folder (saying so, in file
and folder mode alike) and runs a command on each pair, where in a folder one
bad input file is reported and the others go on.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Sequence, Set, Tuple

from ..errors import CLIError, PSICFormatError, one_line
from ..io.images import ImageLoadError
from .output import EXIT_OK, PROG, print_error

__all__ = [
    "PSIC_SUFFIX",
    "check_input_file",
    "check_jobs",
    "check_targets",
    "pair_files",
    "run_jobs",
]

PSIC_SUFFIX = ".psic"


def pair_files(
    inputs: Sequence[str],
    output: str | None,
    accept: Callable[[Path], bool],
    suffix: str,
    kind: str,
) -> Tuple[List[Tuple[Path, Path]], bool]:
    """Pairs of (input file, output path) and whether a folder was given.

    Without ``-o`` the output goes next to the input, named with ``suffix``; when
    ``-o`` is an existing folder, outputs go into it with the same names.
    """
    if len(inputs) == 1 and Path(inputs[0]).is_dir():
        folder = Path(inputs[0])
        files = sorted(p for p in folder.iterdir() if p.is_file() and accept(p))
        if not files:
            raise CLIError(f"{folder}: no {kind} files in this folder")
        out_dir = Path(output) if output is not None else folder
        if out_dir.exists() and not out_dir.is_dir():
            raise CLIError(f"{out_dir}: not a folder (the input is a folder)")
        targets = [out_dir / (p.stem + suffix) for p in files]
        seen: Dict[Path, Path] = {}
        for source, target in zip(files, targets):
            if target in seen:
                raise CLIError(
                    f"{seen[target].name} and {source.name} would both be written "
                    f"to {target}"
                )
            seen[target] = source
        return list(zip(files, targets)), True
    for name in inputs:
        if Path(name).is_dir():
            raise CLIError(f"{name}: give one folder on its own, or files")
    into = Path(output) if output is not None and Path(output).is_dir() else None
    if output is not None and into is None and len(inputs) > 1:
        raise CLIError("-o names one output file: give one input, or a folder as -o")
    pairs = []
    for name in inputs:
        source = Path(name)
        if into is not None:
            target = into / (source.stem + suffix)
        elif output is not None:
            target = Path(output)
        else:
            target = source.with_suffix(suffix)
        if target.resolve() == source.resolve():
            raise CLIError(f"{source}: the output would overwrite the input")
        pairs.append((source, target))
    return pairs, False


def check_targets(targets: Sequence[Path], force: bool) -> None:
    """Outputs never replace existing files unless ``--force`` is given."""
    if force:
        return
    for target in targets:
        if target.exists():
            raise CLIError(f"{target} exists; pass -f/--force to replace it")


def check_jobs(
    jobs: Sequence[Tuple[Path, Path]],
    folder: bool,
    force: bool,
    check_input: Callable[[Path], object],
    targets_of: Callable[[Path], Sequence[Path]] = lambda target: [target],
) -> None:
    """Fails in one line, before any model loads, on what would fail later.

    Existing outputs (unless ``force``) and outputs whose folder is a file, in
    every mode: in a folder they are counted in the one line
    (``out/a.png exists (and 6 more outputs); pass -f/--force``). For files
    given one by one also a missing input and one that ``check_input``
    refuses (raising: not an image, not a ``.psic`` file); in a folder those
    are reported per file by :func:`run_jobs`, so that one bad input does not
    stop the others.
    """
    existing: List[Path] = []
    for source, target in jobs:
        if not folder:
            check_input_file(source)
            check_input(source)
        targets = targets_of(target)
        for path in targets:
            _check_parent(path)
        if not force:
            existing.extend(path for path in targets if path.exists())
    if existing:
        more = len(existing) - 1
        also = f" (and {more} more output{'s' if more > 1 else ''})" if more else ""
        them = "them" if more else "it"
        raise CLIError(f"{existing[0]} exists{also}; pass -f/--force to replace {them}")


def check_input_file(source: Path) -> None:
    """``FILE: no such file`` or ``FILE: not a file``, the words of every command."""
    if not source.is_file():
        what = "not a file" if source.exists() else "no such file"
        raise CLIError(f"{source}: {what}")


def _check_parent(path: Path) -> None:
    """The output's folder exists or can be created (no file is in its way)."""
    for folder in (path.parent, *path.parent.parents):
        if folder.exists():
            if not folder.is_dir():
                raise CLIError(f"{path}: {folder} is not a folder")
            return


def _make_folder(folder: Path, quiet: bool, made: Set[Path], bar: bool) -> None:
    """Creates a missing output folder, and says so (once per folder)."""
    if folder.is_dir() or folder in made:
        return
    folder.mkdir(parents=True, exist_ok=True)
    made.add(folder)
    if not quiet:
        print_error(f"{PROG}: note: created the output folder {folder}", bar)


def _progress(items: List, enabled: bool, desc: str) -> Iterator:
    if not enabled:
        yield from items
        return
    from tqdm import tqdm

    yield from tqdm(items, desc=desc, unit="img", file=sys.stderr)


def _say(bar: bool) -> Callable[[str], None]:
    """Prints a result line on stdout, above the progress bar when there is one."""
    if not bar:
        return print
    from tqdm import tqdm

    return lambda message: tqdm.write(message, file=sys.stdout)


def run_jobs(
    jobs: List[Tuple[Path, Path]],
    work: Callable[[Path, Path], str | None],
    folder: bool,
    quiet: bool,
    desc: str,
) -> int:
    """Runs ``work`` on every pair; in folders one bad file does not stop the rest.

    A missing output folder is created before the first file is written to it,
    with a note on stderr (in file and folder mode alike).
    """
    made: Set[Path] = set()
    failures = 0
    bar = folder and not quiet
    say = _say(bar)
    for source, target in _progress(jobs, bar, desc):
        try:
            _make_folder(target.parent, quiet, made, bar)
            message = work(source, target)
        except (CLIError, PSICFormatError, ImageLoadError, OSError) as exc:
            if not folder:
                raise
            failures += 1
            message = one_line(exc)
            if str(source) not in message:
                message = f"{source}: {message}"
            print_error(f"{PROG}: error: {message}", bar)
            continue
        if message and not quiet:
            say(message)
    if failures:
        raise CLIError(f"{failures} of {len(jobs)} files failed")
    if folder and not quiet:
        print(f"{desc}: {len(jobs)} files written to {jobs[0][1].parent}")
    return EXIT_OK
