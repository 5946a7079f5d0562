"""edgesdk inspect: what a bundle or a lone model file holds."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from edgesdk.cli.common import ResultsTable, emit_json, print_bundle_notes, results


def _shape(shape: Any) -> str:
    return escape("[" + ", ".join(str(d) for d in shape) + "]")  # "[batch, 8]" is not rich markup


def _flatten(section: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(section, dict):
        rows = []
        for key, value in section.items():
            rows += _flatten(value, f"{prefix}{key}.")
        return rows
    return [(prefix.rstrip("."), section)]


def _size(size_bytes: int) -> str:
    """Bytes for a reader: "912 B", "41.3 kB", "6.52 MB"."""
    if size_bytes < 1000:
        return f"{size_bytes} B"
    return f"{size_bytes / 1e3:.1f} kB" if size_bytes < 1e6 else f"{size_bytes / 1e6:.2f} MB"


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return escape(str(value))
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:.4g}"


def _kept_float_summary(kept: list[dict[str, Any]]) -> str:
    """Kept-float ops counted per reason headline (the text before its first ':'); the measured
    figures after it differ per op and stay in the manifest (``--json``)."""
    counts: dict[str, int] = {}
    for entry in kept:
        headline = entry["reason"].split(":", 1)[0]
        counts[headline] = counts.get(headline, 0) + len(entry["ops"])
    return "; ".join(f"{count} op(s): {headline}" for headline, count in counts.items())


def _precision_table(entries: list[dict[str, Any]]) -> ResultsTable:
    """Every artifact's precision side by side: size, speed and agreement with fp32 PyTorch, recipe."""
    table = ResultsTable(title="precisions")
    for column in ("file", "precision", "size vs float", "speed vs float32", "SQNR dB (min)", "cosine (min)",
                   "task agreement (min)", "quantized ops", "kept float", "tool"):
        table.add_column(column)
    for artifact in entries:
        recipe = artifact.get("recipe") or {}
        outputs = (artifact.get("validation") or {}).get("outputs", {})
        sqnrs = [o["sqnr_db"] for o in outputs.values() if isinstance(o.get("sqnr_db"), (int, float))]
        cosines = [o["cosine_similarity"] for o in outputs.values() if isinstance(o.get("cosine_similarity"), (int, float))]
        agreements: dict[str, float] = {}  # the family checks' figures (bit, top-1, probe agreement)
        for facts in outputs.values():
            for key, value in facts.items():
                if key.endswith("agreement") and isinstance(value, (int, float)):
                    agreements[key] = min(agreements.get(key, value), value)
        size, float_size = artifact.get("size_bytes"), artifact.get("float_size_bytes")
        speed = artifact.get("speed_vs_float32")
        table.add_row(
            artifact["file"], artifact.get("precision", "float32"),
            f"{size / float_size:.2f}x" if size and float_size else "1.00x" if not recipe else "?",
            f"{speed:.2f}x" if isinstance(speed, (int, float)) else "",
            f"{min(sqnrs):.1f}" if sqnrs else "", f"{min(cosines):.5f}" if cosines else "",
            ", ".join(f"{key.replace('_agreement', '').replace('_', ' ')} {value:.2%}" for key, value in agreements.items()),
            escape(", ".join(f"{op} {count}" for op, count in (recipe.get("quantized_ops") or {}).items())),
            escape(_kept_float_summary(recipe.get("kept_float", []))),
            escape(recipe.get("tool", "")),
        )
    return table


@click.command("inspect")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print everything as JSON on stdout.")
def command(path: Path, as_json: bool) -> None:
    """Show manifest, inputs/outputs/state, op histogram and parameters of PATH."""
    from edgesdk.runtime.introspect import describe

    facts = describe(path)
    if as_json:
        emit_json(facts)
        return
    print_bundle_notes(path)
    model = facts.get("model", {})
    title = f"{path}  —  {model.get('family', '?')}" + (f" / {model['preset']}" if model.get("preset") else "")
    results.print(title, style="bold", markup=False)  # not a rule: a pipe has no width to fill
    if model.get("parameters") is not None:
        results.print(f"parameters: {model['parameters']:,}   mode: {facts.get('mode', '?')}   "
                    f"valid: {facts.get('valid', 'not recorded')}")
    if model.get("checkpoint_sha256"):
        results.print(f"checkpoint: {model.get('checkpoint')}  sha256 {model['checkpoint_sha256'][:16]}…", markup=False)
    elif model.get("weights"):
        results.print(f"weights: {model['weights']} (no checkpoint)", markup=False)

    tensors = ResultsTable(title="tensors")
    for column in ("kind", "name", "shape", "dtype"):
        tensors.add_column(column)
    for entry in facts["inputs"]:
        tensors.add_row("input", escape(entry["name"]), _shape(entry["shape"]), entry["dtype"])
    for entry in facts["outputs"]:
        tensors.add_row("output", escape(entry["name"]), _shape(entry["shape"]), entry["dtype"])
    for entry in facts["state"]:
        tensors.add_row("state", escape(f"{entry['input']} → {entry['output']}"), _shape(entry["shape"]),
                        f"{entry['dtype']}, batch axis {entry['batch_axis']}, init {entry.get('init_file', entry['init'])}")
    for artifact in facts["artifacts"]:
        if artifact.get("internal_state"):
            tensors.add_row("state", "internal", escape(artifact["file"]),
                            f"inside the interpreter ({', '.join(artifact['internal_state'])}); a stream's reset() starts a new one")
    for entry in facts.get("context", []):
        tensors.add_row("context", escape(entry["input"]), f"axis {entry['axis']}", f"last {entry['size']} carried")
    for entry in facts.get("constants", []):
        tensors.add_row("constant", escape(entry["name"]), _shape(entry["shape"]), f"{entry['dtype']} = {entry['value']}")
    for entry in facts.get("chunks", []):
        tensors.add_row("chunk", escape(entry["input"]), f"axis {entry['axis']}", f"{entry['size']} new per push")
    results.print(tensors)

    artifacts = ResultsTable(title="artifacts")
    for column in ("file", "format", "precision", "size", "converter / opset", "sha256", "valid"):
        artifacts.add_column(column)
    for artifact in facts["artifacts"]:
        version = artifact.get("converter", "")
        if artifact.get("opset"):
            version += f", opset {artifact['opset']}"
        size = artifact.get("size_bytes")
        artifacts.add_row(artifact["file"], artifact["format"], artifact.get("precision", "float32"),
                          _size(size) if size else "?",
                          escape(version), artifact["sha256"][:12] + "…", str(artifact.get("valid", "?")))
    results.print(artifacts)
    if any(artifact.get("recipe") for artifact in facts["artifacts"]):
        results.print(_precision_table(facts["artifacts"]))

    for section in ("streaming", "frontend", "ops"):
        if facts.get(section):
            table = ResultsTable(title=section, show_header=False)
            table.add_column("key")
            table.add_column("value", justify="right")
            for key, value in _flatten(facts[section]):
                table.add_row(escape(key), _number(value))  # keys like "W_h[m]" are not markup
            results.print(table)

    for artifact in facts["artifacts"]:
        histogram = artifact.get("op_histogram", {})
        table = ResultsTable(title=f"ops in {artifact['file']} ({sum(histogram.values())} nodes)")
        table.add_column("op")
        table.add_column("count", justify="right")
        for op, count in histogram.items():
            table.add_row(escape(op), str(count))
        results.print(table)
