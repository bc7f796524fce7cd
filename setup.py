"""Builds the package's one C extension; everything else is in pyproject.toml.

``compressai_psic.models._bounded_rans`` is the rANS decoder that checks the end of its
input (compressai_psic/models/rans.py). It is optional: without a C compiler the
install goes on, and decoding falls back to CompressAI's decoder on padded strings.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "compressai_psic.models._bounded_rans",
            sources=["compressai_psic/csrc/bounded_rans.c"],
            extra_compile_args=["-O2"],
            optional=True,
        )
    ]
)
