"""The demo's summary table: shared figures, then one block per VLP."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

__all__ = ["format_table"]


def _fmt(value: Optional[float], digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _vlp_rows(
    entry: Dict[str, Any],
    attacks: Sequence[str],
    summary: Optional[Dict[str, Any]] = None,
) -> List[str]:
    recall, asr = entry["recall"], entry["asr"]["protected"]
    title = f"Recall@1, {entry['name']} ({entry['role']})"
    lines = [f"  {title:34}{'image→text':>12}{'text→image':>12}"]
    variants = ["original", "full", "protected"]
    variants += [f"protected_{a}" for a in attacks if f"protected_{a}" in recall]
    for variant in variants:
        lines.append(
            f"  {variant:34}{recall[variant]['i2t']['R@1']:12.3f}"
            f"{recall[variant]['t2i']['R@1']:12.3f}"
        )
    if summary and "worst_blind" in summary["i2t"]:
        lines.append(
            f"  {'worst blind attack (which)':34}"
            f"{summary['i2t']['worst_blind']:12.3f}"
            f"{summary['t2i']['worst_blind']:12.3f}  "
            f"({summary['i2t']['worst_blind_attack']} / "
            f"{summary['t2i']['worst_blind_attack']})"
        )
    if summary and "worst_adaptive" in summary["i2t"]:
        lines.append(
            f"  {'worst adaptive attack (which)':34}"
            f"{summary['i2t']['worst_adaptive']:12.3f}"
            f"{summary['t2i']['worst_adaptive']:12.3f}  "
            f"({summary['i2t']['worst_adaptive_attack']} / "
            f"{summary['t2i']['worst_adaptive_attack']})"
        )
    for reference, label in (("full", "full decode"), ("original", "originals")):
        lines.append(
            f"  {'ASR@1 vs ' + label:34}{asr['vs_' + reference]['i2t']['R@1']:12.3f}"
            f"{asr['vs_' + reference]['t2i']['R@1']:12.3f}"
        )
    return lines


def format_table(report: Dict[str, Any]) -> str:
    """The demo's summary table, as printed: shared figures, then one block per
    VLP (training VLPs first), each labelled with its role."""
    chance = 1.0 / report["num_images"]
    ms_ssim = report.get("ms_ssim") or {}
    lines = [
        f"{report['num_images']} test scenes, one bitstream each; "
        f"chance Recall@1 = {chance:.3f}",
        f"  rate                    {_fmt(report['bpp'])} bpp (real bytes)",
        f"  PSNR full / protected   {_fmt(report['psnr']['full'], 2)} / "
        f"{_fmt(report['psnr']['protected'], 2)} dB",
    ]
    if ms_ssim:
        lines.append(
            f"  MS-SSIM full / protected {_fmt(ms_ssim.get('full'), 4)} / "
            f"{_fmt(ms_ssim.get('protected'), 4)} "
            f"(window {report.get('ms_ssim_window')})"
        )
    dependence = report.get("image_dependence")
    if dependence:
        offset = dependence.get("mean_offset_rgb") or []
        shift = "/".join(f"{v:+.3f}" for v in offset)
        lines.append(
            f"  protected − full: common to all images "
            f"{_fmt(dependence['common_share'])} of its energy, one global RGB "
            f"shift {_fmt(dependence['global_offset_share'])} ({shift})"
        )
    if report.get("fit"):
        lines.append(
            f"  informed attacks fitted on {report['fit']['num_images']} other "
            f"scenes ({report['fit'].get('dataset', 'a separate set')})"
        )
    entries = report.get("vlps") or [
        {
            "name": report.get("vlp", "vlp"),
            "role": report.get("vlp_role", "train"),
            "recall": report["recall"],
            "asr": report["asr"],
        }
    ]
    attacks = report.get("attacks") or report.get("transforms") or []
    summaries = {s["name"]: s for s in (report.get("summary") or {}).get("vlps", [])}
    for entry in entries:
        lines += [""] + _vlp_rows(entry, attacks, summaries.get(entry["name"]))
    return "\n".join(lines)
