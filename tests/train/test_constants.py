"""Tests of compressai_psic.train.constants: the choices of the training
command are those the rest of the package accepts, and the file names are those
the tool writes."""

from __future__ import annotations

from compressai_psic.train import constants
from compressai_psic.train.arguments import build_parser
from compressai_psic.transforms import (
    default_scraper_transforms,
    purification_transforms,
)


def _choices():
    parser = build_parser()
    return {a.dest: a.choices for a in parser._actions if a.choices}


def test_the_parser_offers_exactly_the_constants():
    choices = _choices()
    assert tuple(choices["stage2_params"]) == constants.STAGE2_PARAMS
    assert tuple(choices["paths"]) == constants.PATH_MODES
    assert tuple(choices["dataset_format"]) == constants.DATASET_FORMATS
    assert tuple(choices["vlp_precision"]) == constants.VLP_PRECISIONS
    assert set(constants.STAGE_DEFAULTS) == {1, 2}
    # Stage 2 fine-tunes: a smaller learning rate and a larger VLP weight.
    one, two = constants.STAGE_DEFAULTS[1], constants.STAGE_DEFAULTS[2]
    assert one.keys() == two.keys()
    assert two["learning_rate"] < one["learning_rate"]
    assert two["lambda_vlp"] > one["lambda_vlp"]


def test_every_eot_choice_names_a_scraper_transform():
    known = {**default_scraper_transforms(), **purification_transforms()}
    assert set(constants.EOT_CHOICES) <= set(known)
    assert len(set(constants.EOT_CHOICES)) == len(constants.EOT_CHOICES)


def test_defaults_are_valid_choices_and_file_names_differ():
    assert constants.DEFAULT_MODEL in _choices()["model"]
    assert constants.DEFAULT_VLP.startswith("open_clip:")
    assert 0 < constants.DEFAULT_LAMBDA < 1
    names = (
        constants.CHECKPOINT_NAME,
        constants.BEST_CHECKPOINT_NAME,
        constants.LOG_FILE_NAME,
    )
    assert len(set(names)) == 3 and all("/" not in name for name in names)
    assert set(constants.__all__) <= set(dir(constants))
