"""The ``psic`` command line (being split into modules; see issue 10)."""

from .models import (
    COMMANDS,
    CLIError,
    Command,
    ModelSpec,
    build_model,
    build_parser,
    compress_tensor,
    decompress_header,
    describe_file,
    main,
    register_command,
)

__all__ = [
    "CLIError",
    "COMMANDS",
    "Command",
    "ModelSpec",
    "build_model",
    "build_parser",
    "compress_tensor",
    "decompress_header",
    "describe_file",
    "main",
    "register_command",
]
