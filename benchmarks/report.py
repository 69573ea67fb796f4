"""Rendering only: the terminal table, ``benchmark.md``, ``benchmark.png`` and ``--compare``.

Everything here reads the result dictionary that ``benchmark.json`` holds, so a report can
be re-rendered, or two machines' files compared, without measuring again.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.environment import summary
from benchmarks.stats import ratio
from runtime.files import atomic_path
from runtime.optional import install_hint

COLUMNS = ("file", "backend", "precision", "size", "accuracy", "Δ pp", "agree", "p50 µs",
           "p90 µs", "p99 µs", "engine p50", "img/s @64", "cold ms", "peak MB", "speed-up")
LEFT = {"file", "backend", "precision"}


def cells(rows: Sequence[dict[str, Any]]) -> list[list[str]]:
    """One list of strings per result row, in ``COLUMNS`` order."""
    out = []
    for row in rows:
        latency = row.get("latency_us") or {}
        cold = row.get("cold_start") or {}
        out.append([
            row["file"], row["backend"], row["precision"], kb(row.get("size_bytes")),
            pct(row.get("accuracy")), signed(row.get("accuracy_change_pp"), row),
            pct(row.get("agreement")), us(latency.get("p50")), us(latency.get("p90")),
            us(latency.get("p99")), us((row.get("engine_latency_us") or {}).get("p50")),
            number(row.get("throughput_ips"), 0), cold_ms(cold), number(cold.get("peak_rss_mb"), 1),
            times(row.get("speedup")),
        ])
    return out


def text_table(rows: Sequence[dict[str, Any]]) -> str:
    body = cells(rows)
    widths = [max(len(c), *(len(r[i]) for r in body)) for i, c in enumerate(COLUMNS)]
    lines = [_line(COLUMNS, widths), "  ".join("-" * w for w in widths)]
    lines += [_line(r, widths) for r in body]
    return "\n".join(lines)


def markdown_table(headers: Sequence[str], body: Sequence[Sequence[str]],
                   left: set[str] | None = None) -> str:
    left = LEFT if left is None else left
    align = ["---" if h in left else "---:" for h in headers]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines)


def markdown(result: dict[str, Any]) -> str:
    rows, settings = result["rows"], result["settings"]
    lines = [f"# Benchmark: {result['bundle']}", "",
             f"{result['environment']['created']} · {settings['mode']} mode · "
             f"threads {settings['threads']} · {settings['rounds']} rounds × "
             f"{settings['iterations']} batch-1 calls · cold start ×{settings['repeats']}", "",
             markdown_table(COLUMNS, cells(rows)), ""]
    lines += [f"- {note}" for note in result["notes"]]
    lines += ["", "## Hot path: Classifier call vs raw engine call (batch 1)", "",
              markdown_table(("file", "Classifier p50 µs", "engine p50 µs", "overhead µs",
                              "overhead %", "p50 spread over rounds"), [
                  [r["file"], us(r["latency_us"]["p50"]), us(r["engine_latency_us"]["p50"]),
                   us(r["overhead_us"]), pct(_share(r["overhead_us"], r["latency_us"]["p50"])),
                   pct(r.get("latency_round_spread"))] for r in rows]),
              "", "## Cold start (fresh process, medians)", "",
              markdown_table(("file", "start-up ms", "import ms (runtime + engine)", "load ms",
                              "first prediction ms", "total ms", "peak MB",
                              "TensorFlow imported"), [_cold_cells(r) for r in rows])]
    if result.get("pipeline"):
        lines += ["", *pipeline_markdown(result["pipeline"], rows)]
    lines += ["", "## Method", "", *[f"- {m}" for m in result["method"]],
              "", "## Environment", "", *[f"- {s}" for s in summary(result["environment"])],
              "", "| file | sha256 |", "| --- | --- |"]
    lines += [f"| {name} | `{m['sha256']}` |"
              for name, m in result["environment"]["models"].items()]
    return "\n".join(lines) + "\n"


def pipeline_markdown(pipe: dict[str, Any], rows: Sequence[dict[str, Any]]) -> list[str]:
    names = {"decode_us": "decode JPEG (not the runtime)",
             "preprocess_us": "preprocess (framing + resize)",
             "inference_us": "inference (quantize, engine, dequantize, top-k)",
             "other_us": "classify_frame bookkeeping", "runtime_us": "runtime total per frame"}
    stages = pipe["stages_us"]
    body = [[names[k], us(v["p50"]), us(v["p90"])] for k, v in stages.items()]
    body.append(["of which top-k (timed alone)", us(pipe["topk_us"]["p50"]),
                 us(pipe["topk_us"]["p90"])])
    return [f"## Camera pipeline: {pipe['file']} on {pipe['frame_size']} frames", "",
            f"{pipe['frames']} frames × {pipe['rounds']} rounds ({pipe['source']}); "
            f"{number(pipe['fps_runtime'], 0)} frames/s for the runtime, "
            f"{number(pipe['fps_with_decode'], 0)} with decoding; a digit found in "
            f"{pipe['ink_found']}/{pipe['frames']} frames, top-1 right in "
            f"{pct(pipe['frame_accuracy'])}.", "",
            markdown_table(("stage", "p50 µs", "p90 µs"), body, {"stage"}),
            *_in_context(pipe, rows)]


def _in_context(pipe: dict[str, Any], rows: Sequence[dict[str, Any]]) -> list[str]:
    """The same inference call costs more between frames than back-to-back: say how much."""
    hot = next((r["latency_us"]["p50"] for r in rows if r["file"] == pipe["file"]), None)
    inference = pipe["stages_us"]["inference_us"]["p50"] - pipe["topk_us"]["p50"]
    if not hot:
        return []
    return ["", f"Between frames the inference call (without top-k) takes {us(inference)} µs; "
            f"back-to-back in the hot loop it takes {us(hot)} µs ({inference / hot:.1f}×): "
            "framing a frame evicts the engine's caches, and a camera loop pays that."]


def pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend, or None when it is not installed:
    the figures are extras beside the JSON, never a reason to fail a run."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


NO_PNG = f"no .png: {install_hint('matplotlib')}"


def plot(result: dict[str, Any], path: Path) -> Path | None:
    """Latency vs accuracy scatter and file-size bars; None when matplotlib is missing."""
    plt = pyplot()
    if plt is None:
        return None
    import matplotlib.ticker
    rows = [r for r in result["rows"] if r.get("latency_us")]
    colors = [plt.get_cmap("tab10")(i % 10) for i in range(len(rows))]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    for r, color in zip(rows, colors, strict=True):  # a legend, not labels: ties overlap
        left.scatter(r["latency_us"]["p50"], r["accuracy"] * 100, s=60, color=color,
                     marker="s" if r["backend"] == "keras" else "o",
                     label=f"{r['file']} ({us(r['latency_us']['p50'])} µs)")
    accuracies = [r["accuracy"] * 100 for r in rows]
    left.set_ylim(min(accuracies) - 1.0, max(accuracies) + 0.5)
    left.set_xscale("log")
    left.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    left.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    left.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    left.set_xlabel("batch-1 latency p50 (µs, log scale)")
    left.set_ylabel("accuracy on eval.npz (%)")
    left.set_title("latency vs accuracy (left and up is better)")
    left.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=8, loc="lower right")
    right.barh([r["file"] for r in rows], [r["size_bytes"] / 1024 for r in rows], color=colors)
    right.invert_yaxis()
    right.set_xlabel("file size (KB)")
    right.set_title("size")
    fig.suptitle(f"{Path(result['bundle']).name} · threads {result['settings']['threads']}")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return path


def compare(a: dict[str, Any], b: dict[str, Any], names: tuple[str, str]) -> str:
    """Two runs side by side: per-file p50, throughput and cold start, with B/A ratios."""
    by_b = {r["file"]: r for r in b["rows"]}
    files = [r["file"] for r in a["rows"]] + [f for f in by_b if f not in
                                               {r["file"] for r in a["rows"]}]
    by_a = {r["file"]: r for r in a["rows"]}
    body = []
    for f in files:
        ra, rb = by_a.get(f, {}), by_b.get(f, {})
        row = [f]
        for get, fmt in ((_p50, us), (_ips, lambda v: number(v, 0)), (_cold, lambda v:
                                                                       number(v, 0))):
            va, vb = get(ra), get(rb)
            row += [fmt(va), fmt(vb), times(ratio(va, vb))]
        body.append(row)
    headers = ("file", "p50 µs A", "p50 µs B", "B/A", "img/s A", "img/s B", "B/A",
               "cold ms A", "cold ms B", "B/A")
    lines = [f"# Benchmark comparison: A = {names[0]}, B = {names[1]}", "",
             markdown_table(headers, body, {"file"}), "",
             "B/A below 1 means B is faster for p50 and cold start; above 1 for img/s.", ""]
    differ = [key for key in ("mode", "threads", "iterations", "rounds")
              if a.get("settings", {}).get(key) != b.get("settings", {}).get(key)]
    if differ:
        lines += [f"Settings differ ({', '.join(differ)}): the ratios mix machine and method.",
                  ""]
    for label, run, name in (("A", a, names[0]), ("B", b, names[1])):
        settings = run.get("settings", {})
        lines += [f"## {label}: {name} ({settings.get('mode', '?')} mode, threads "
                  f"{settings.get('threads', '?')})", ""]
        lines += [f"- {s}" for s in summary(run.get("environment", {}))] + [""]
    return "\n".join(lines)


def _p50(row: dict[str, Any]) -> float | None:
    return (row.get("latency_us") or {}).get("p50")


def _ips(row: dict[str, Any]) -> float | None:
    return row.get("throughput_ips")


def _cold(row: dict[str, Any]) -> float | None:
    return (row.get("cold_start") or {}).get("total_ms")


def _share(part: float | None, whole: float | None) -> float | None:
    return None if part is None or not whole else part / whole


def _cold_cells(row: dict[str, Any]) -> list[str]:
    cold = row.get("cold_start") or {}
    imports = number(cold.get("import_ms"), 1)
    if cold.get("import_runtime_ms") is not None:
        imports += (f" ({number(cold['import_runtime_ms'], 0)} + "
                    f"{number(cold.get('import_engine_ms'), 0)})")
    return [row["file"], number(cold.get("startup_ms"), 1), imports,
            *(number(cold.get(k), 1) for k in ("load_ms", "first_ms", "total_ms", "peak_rss_mb")),
            _tf(row)]


def _tf(row: dict[str, Any]) -> str:
    cold = row.get("cold_start") or {}
    if not cold:
        return "-"
    if row["backend"] == "keras":
        return "yes (the reference needs it)"
    return "YES: runtime must not import it" if cold.get("tensorflow_imported") else "no"


def _line(values: Sequence[str], widths: Sequence[int]) -> str:
    return "  ".join(v.ljust(w) if c in LEFT else v.rjust(w)
                     for v, w, c in zip(values, widths, COLUMNS, strict=True))


def kb(size: int | None) -> str:
    return "-" if size is None else f"{size / 1024:.1f} KB"


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.2f}%"


def signed(value: float | None, row: dict[str, Any]) -> str:
    if row.get("reference"):
        return "ref"
    return "-" if value is None else f"{value:+.2f}"


def us(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if abs(value) < 100 else f"{value:.0f}"


def number(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def times(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}×"


def cold_ms(cold: dict[str, Any]) -> str:
    if cold.get("errors") and cold.get("total_ms") is None:
        return "failed"
    return number(cold.get("total_ms"), 0)
