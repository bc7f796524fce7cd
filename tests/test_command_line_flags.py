"""One meaning for each short flag across the package's command-line tools:
``psic``, the training tool and the ``utils`` tools."""

from __future__ import annotations

import argparse
from typing import Dict, Iterator, Set, Tuple

#: Short flag -> the long names it may stand for. ``-f`` is ``--force`` in every
#: tool. Where CompressAI's own tools give a short flag two meanings
#: (``examples/train.py`` against ``compressai.utils.eval_model`` and
#: ``update_model``), both are kept so that their command lines work here as
#: written: ``-m`` model/metric, ``-d`` dataset/output folder, ``-n``
#: worker count/name (and ``psic demo``'s image count).
SHORT_FLAGS: Dict[str, Set[str]] = {
    "-a": {"--arch", "--architecture"},
    "-c": {"--checkpoint"},
    "-d": {"--dataset", "--dir", "--output_directory"},
    "-e": {"--epochs"},
    "-f": {"--force"},
    "-h": {"--help"},
    "-k": {"--key-file"},
    "-lr": {"--learning-rate"},
    "-m": {"--model", "--metric"},
    "-n": {"--num-workers", "--name", "--num-images"},
    "-o": {"--output", "--output-dir", "--output-file"},
    "-p": {"--path"},
    "-q": {"--quality"},
    "-r": {"--results-file"},
    "-t": {"--title"},
    "-v": {"--verbose"},
}


def _flags(
    parser: argparse.ArgumentParser, name: str
) -> Iterator[Tuple[str, str, str]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, subparser in action.choices.items():
                yield from _flags(subparser, f"{name} {sub}")
            continue
        longs = [o for o in action.option_strings if o.startswith("--")]
        for short in action.option_strings:
            if not short.startswith("--"):
                yield name, short, longs[0] if longs else ""


def _parsers():
    from compressai_psic.cli import build_parser as psic_parser
    from compressai_psic.train import build_parser as train_parser
    from compressai_psic.utils import (
        eval_model,
        export_decoder,
        pareto,
        plot,
        update_model,
    )

    yield "psic", psic_parser()
    yield "train", train_parser()
    for module in (eval_model, export_decoder, pareto, plot, update_model):
        yield module.__name__.rsplit(".", 1)[-1], module.build_parser()


def test_each_short_flag_has_one_meaning():
    seen = []
    for tool, parser in _parsers():
        for where, short, long in _flags(parser, tool):
            assert short in SHORT_FLAGS, f"{where}: {short} ({long}) is a new flag"
            assert long in SHORT_FLAGS[short], f"{where}: {short} means {long}"
            seen.append((where, short))
    forces = {where for where, short in seen if short == "-f"}
    assert {"psic compress", "train", "eval_model pretrained", "plot"} <= forces
