"""The validation table on the terminal, and ``export_report.json`` beside the files."""

from __future__ import annotations

from export.validate import Check


def table(checks: list[Check], keras_size: int, keras_accuracy: float | None) -> str:
    header = (f"{'file':<22} {'backend':<11} {'precision':<9} {'size':>9} {'accuracy':>9} "
              f"{'Δ pp':>6} {'agree':>7} {'max|Δp|':>9} {'mean|Δp|':>9}  result")
    rows = [header, "-" * len(header)]
    ref_acc = keras_accuracy
    rows.append(f"{'model.keras':<22} {'keras':<11} {'float32':<9} {_kb(keras_size):>9} "
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
    return "\n".join(rows)


def _kb(size: int) -> str:
    return f"{size / 1024:.1f} KB"


def _sci(value: float | None) -> str:
    return "NaN/inf" if value is None else f"{value:.2e}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.2f}%"
