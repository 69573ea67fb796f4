"""The validation table on the terminal, and ``quant_layers.png`` beside the report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from export.validate import Check
from runtime.files import atomic_path

WORST_SHOWN = 3  # layers listed under a failing int8 file


def table(checks: list[Check], keras_size: int, keras_accuracy: float | None,
          quantization: dict[str, Any] | None = None, keras_file: str = "model.keras") -> str:
    header = (f"{'file':<22} {'backend':<11} {'precision':<9} {'size':>9} {'accuracy':>9} "
              f"{'Δ pp':>6} {'agree':>7} {'max|Δp|':>9} {'mean|Δp|':>9}  result")
    rows = [header, "-" * len(header)]
    ref_acc = keras_accuracy
    rows.append(f"{keras_file:<22} {'keras':<11} {'float32':<9} {_kb(keras_size):>9} "
                f"{_pct(ref_acc):>9} {'':>6} {'':>7} {'':>9} {'':>9}  reference")
    for c in checks:
        change = "" if c.accuracy_change_pp is None else f"{c.accuracy_change_pp:+.2f}"
        mark = "[✓]" if c.passed else "[x]"
        if c.backend == "-":
            rows.append(f"{c.file:<22} {'-':<11} {c.precision:<9} {'':>9} {'':>9} {'':>6} "
                        f"{'':>7} {'':>9} {'':>9}  {mark} {c.detail}")
            continue
        rows.append(f"{c.file:<22} {c.backend:<11} {c.precision:<9} {_kb(c.size_bytes):>9} "
                    f"{_pct(c.accuracy):>9} {change:>6} {c.agreement * 100:6.2f}% "
                    f"{_sci(c.max_abs_diff):>9} {_sci(c.mean_abs_diff):>9}  {mark} {c.criterion}")
        rows.extend(_quant_lines(c, (quantization or {}).get(c.file)))
    return "\n".join(rows)


def _quant_lines(check: Check, record: dict[str, Any] | None) -> list[str]:
    """Under an int8 file: what repair did, and for a failing file its worst layers."""
    if not record:
        return []
    lines = []
    if record.get("applied", "none") != "none":
        before = record["before"]
        verb = "repaired" if check.passed else "best repair"
        lines.append(f"{'':<4}↳ {verb} ({record['applied']}); plain int8 was "
                     f"{_pp(before['accuracy_change_pp'])}, {before['agreement'] * 100:.2f} % "
                     "agreement")
    if not check.passed:
        worst = sorted(record["diagnosis"]["layers"], key=lambda e: e["local_sqnr_db"])
        shown = ", ".join(f"{e['layer']} ({e['op']}) {e['local_sqnr_db']:.1f} dB"
                          for e in worst[:WORST_SHOWN])
        lines.append(f"{'':<4}↳ worst layers (own int8 grid SQNR): {shown}")
        if record.get("steps"):
            lines.append(f"{'':<4}↳ repair tried {len(record['steps'])} variant(s), none "
                         "passed (see export_report.json)")
    return lines


def plot_layers(quantization: dict[str, Any], path: Path) -> None:
    """SQNR per layer for every int8 file (and before repair, where it was repaired)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    files = list(quantization.items())
    figure = Figure(figsize=(9, 3.2 * len(files)), layout="constrained")
    axes = figure.subplots(len(files), 1, squeeze=False)[:, 0]
    for ax, (name, record) in zip(axes, files, strict=True):
        layers = record["diagnosis"]["layers"]
        x = range(len(layers))
        ax.plot(x, [e["sqnr_db"] for e in layers], "o-", label="int8 vs float (all error so far)")
        ax.plot(x, [e["local_sqnr_db"] for e in layers], "s--",
                label="own int8 grid (per-channel SQNR)")
        before = record.get("diagnosis_before")
        if before and len(before["layers"]) == len(layers):
            ax.plot(x, [e["sqnr_db"] for e in before["layers"]], "o:", color="grey",
                    label="before repair")
        ax.set_xticks(list(x), [f"{e['layer']}\n{e['op']}" for e in layers], fontsize=7)
        applied = record.get("applied", "none")
        ax.set(ylabel="SQNR (dB)", title=f"{name} ({record['diagnosis']['engine']})"
               + (f": {applied}" if applied != "none" else ""))
        ax.title.set_fontsize(9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=100)


def _pp(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2f} pp"


def _kb(size: int) -> str:
    return f"{size / 1024:.1f} KB"


def _sci(value: float | None) -> str:
    return "NaN/inf" if value is None else f"{value:.2e}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.2f}%"
