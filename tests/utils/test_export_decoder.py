"""utils.export_decoder: deployable decoders of one condition."""

from __future__ import annotations

import pytest
import torch

import compressai_psic as psic
from compressai_psic.utils import export_decoder

from ..models.helpers import perturb_triggers, tiny_base


@pytest.fixture(scope="module")
def net():
    model = psic.shield(tiny_base("bmshj2018-hyperprior"), modulation="affine")
    perturb_triggers(model, scale=0.02)
    return model.eval()


def test_pt2_program_decodes_the_condition_at_any_size(net, tmp_path):
    out = tmp_path / "protected.pt2"
    result = export_decoder.export_decoder(net, out, "protected", "pt2", (4, 6))
    assert result["max_abs_error"] < 1e-5
    program = torch.export.load(str(out)).module()
    y = torch.randn(1, 24, 5, 7)
    with torch.no_grad():
        expected = net.g_s(y, net.trigger("protected"))
        assert not torch.allclose(expected, net.g_s(y, net.trigger("full")))
    torch.testing.assert_close(program(y), expected)


def test_onnx_decoder_matches_onnxruntime(net, tmp_path):
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    out = tmp_path / "protected.onnx"
    result = export_decoder.export_decoder(net, out, "protected", "onnx", (4, 6))
    assert result["max_abs_error"] is not None and result["max_abs_error"] < 1e-4
    import onnx

    graph = onnx.load(str(out)).graph
    assert [i.name for i in graph.input] == ["y_hat"]  # no condition input


def test_command_checks_before_loading(tmp_path, capsys):
    existing = tmp_path / "x.onnx"
    existing.write_bytes(b"keep")
    with pytest.raises(SystemExit) as err:
        export_decoder.main(["demo-psic", "-o", str(existing)])
    assert err.value.code == 2 and existing.read_bytes() == b"keep"
    assert "--force" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        export_decoder.main(
            ["demo-psic", "--condition", "2", "-o", str(tmp_path / "y.pt2")]
        )
    assert "[0, 1]" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        export_decoder.main(
            ["no-such", "--format", "pt2", "-o", str(tmp_path / "z.pt2")]
        )
    assert "zoo codecs" in capsys.readouterr().err


def test_command_exports_the_shipped_demo_decoder(tmp_path, capsys):
    out = tmp_path / "demo-protected.pt2"
    assert export_decoder.main(["demo-psic", "--format", "pt2", "-o", str(out)]) == 0
    assert out.is_file() and "max |export − model|" in capsys.readouterr().out
