r"""Exports the decoder of one condition: ``torch.export`` program or ONNX file.

A shielded model's synthesis with a fixed trigger
(:meth:`~compressai_psic.models.ShieldedMixin.synthesis_for`) is an ordinary
module: its trigger is a buffer, so the exported graph has no condition input and
decodes that path only. A service that must never publish the full image ships
the protected decoder alone::

    python -m compressai_psic.utils.export_decoder demo-psic \
        --condition protected --format onnx -o demo-psic-protected.onnx

The input is ``y_hat`` (B, C, h, w), with dynamic ``h`` and ``w``; the output is
the image before CompressAI's clamp to [0, 1]. The export is checked against the
model on a second latent size (with onnxruntime for ONNX, when it is installed).
ONNX needs ``pip install "compressai-psic[onnx]"``.

`"Privacy-Shielded Image Compression: Defending Against Exploitation from
Vision-Language Pretrained Models" <https://arxiv.org/abs/2506.15201>`_, ICML 2025.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

__all__ = ["FORMATS", "build_parser", "export_decoder", "main"]

#: ``pt2``: a ``torch.export`` program (``torch.export.load``); ``onnx``: ONNX.
FORMATS = ("pt2", "onnx")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m compressai_psic.utils.export_decoder",
        description="Export the decoder (g_s with a fixed condition) of a shielded "
        "model as a torch.export program or an ONNX file.",
    )
    parser.add_argument(
        "model", help="a zoo name (e.g. demo-psic) or a checkpoint file (.pth.tar)"
    )
    parser.add_argument(
        "--condition",
        default="protected",
        help="protected (default), full, or a beta in [0, 1]",
    )
    parser.add_argument(
        "--format", choices=FORMATS, default="onnx", help="default: onnx"
    )
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument(
        "--latent-size",
        type=int,
        nargs=2,
        default=(8, 12),
        metavar=("H", "W"),
        help="latent height and width of the example input (default 8 12)",
    )
    parser.add_argument(
        "--no-fold",
        dest="fold",
        action="store_false",
        help="keep the trigger's change as separate operations instead of "
        "folding it into the convolutions (synthesis_for(fold=True))",
    )
    parser.add_argument(
        "-f", "--force", action="store_true", help="replace an existing output file"
    )
    return parser


def _condition(text: str) -> Any:
    if text in ("protected", "full"):
        return text
    try:
        beta = float(text)
    except ValueError:
        raise ValueError(
            f"invalid condition {text!r}: use protected, full or a beta in [0, 1]"
        ) from None
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"invalid condition beta={beta}: must lie in [0, 1]")
    return beta


def _load(model: str):
    from ..models import load_checkpoint
    from ..zoo import codec_names, load_named

    if Path(model).is_file():
        return load_checkpoint(model)
    if model in codec_names():
        return load_named(model, progress=False)
    raise ValueError(
        f"{model!r} is neither a file nor a zoo codec; zoo codecs: {codec_names()}"
    )


def export_decoder(
    net: Any,
    output: Path,
    condition: Any = "protected",
    fmt: str = "onnx",
    latent_size: Sequence[int] = (8, 12),
    fold: bool = True,
) -> Dict[str, Any]:
    """Exports ``net.synthesis_for(condition, fold)`` to ``output`` (folded: the
    condition's constant change is in the convolutions' weights, so the program
    does the base model's work); returns
    ``{"output", "format", "max_abs_error"}``, the error of the export against
    the model on a latent of another size (``None`` where ONNX cannot be run)."""
    import torch

    if fmt not in FORMATS:
        raise ValueError(f"Invalid format {fmt!r}: use one of {list(FORMATS)}")
    decoder = net.synthesis_for(condition, fold=fold).eval()
    first = next(m for m in net.g_s.modules() if hasattr(m, "in_channels"))
    param = next(net.parameters())
    height, width = (int(s) for s in latent_size)
    example = torch.zeros(1, first.in_channels, height, width, dtype=param.dtype)
    check = torch.randn(
        1,
        first.in_channels,
        height + 2,
        width + 3,
        generator=torch.Generator().manual_seed(0),
        dtype=param.dtype,
    )
    dims = {2: torch.export.Dim("h", min=2), 3: torch.export.Dim("w", min=2)}
    with torch.no_grad():
        expected = decoder(check.to(param.device)).cpu()
        if fmt == "pt2":
            program = torch.export.export(
                decoder, (example.to(param.device),), dynamic_shapes=({**dims},)
            )
            torch.export.save(program, str(output))
            loaded = torch.export.load(str(output)).module()
            got = loaded(check.to(param.device)).cpu()
            error: Optional[float] = float((got - expected).abs().max())
        else:
            onnx_program = torch.onnx.export(
                decoder,
                (example.to(param.device),),
                dynamo=True,
                input_names=["y_hat"],
                output_names=["x_hat"],
                dynamic_shapes=({**dims},),
            )
            onnx_program.save(str(output))
            error = _onnxruntime_error(output, check, expected)
    return {"output": str(output), "format": fmt, "max_abs_error": error}


def _onnxruntime_error(path: Path, check: Any, expected: Any) -> Optional[float]:
    try:
        import onnxruntime
    except ImportError:
        return None
    session = onnxruntime.InferenceSession(str(path))
    (got,) = session.run(None, {session.get_inputs()[0].name: check.numpy()})
    return float(abs(got - expected.numpy()).max())


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Everything that can fail without torch fails before the model loads.
    try:
        condition = _condition(args.condition)
    except ValueError as err:
        parser.error(str(err))
    if args.output.exists() and not args.force:
        parser.error(f"{args.output} exists (use --force to replace it)")
    if not args.output.parent.is_dir():
        parser.error(f"output directory not found: {args.output.parent}")
    if args.format == "onnx":
        try:
            import onnx  # noqa: F401
            import onnxscript  # noqa: F401
        except ImportError:
            parser.exit(
                2,
                "ONNX export needs onnx and onnxscript: "
                'pip install "compressai-psic[onnx]"\n',
            )
    try:
        net = _load(args.model)
    except ValueError as err:
        parser.error(str(err))
    result = export_decoder(
        net, args.output, condition, args.format, tuple(args.latent_size), args.fold
    )
    error = result["max_abs_error"]
    checked = "not run (no onnxruntime)" if error is None else f"{error:.2e}"
    print(
        f"{args.output}: {args.format} decoder of {args.model} "
        f"({args.condition}); max |export − model| on another size: {checked}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
