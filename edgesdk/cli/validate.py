"""edgesdk validate: the on-device self-test of a bundle's samples."""
from __future__ import annotations

from pathlib import Path

import click

from edgesdk.cli.common import emit_json, human, print_bundle_notes, results
from edgesdk.errors import ValidationError


@click.command("validate")
@click.argument("bundle", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--backend", "backends", multiple=True, type=click.Choice(["onnxruntime", "litert"]),
              help="Only these backends (default: every installed one with an artifact).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
def command(bundle: Path, backends: tuple[str, ...], as_json: bool) -> None:
    """Re-run BUNDLE's samples on the backends installed here and compare with PyTorch's outputs."""
    from edgesdk.runtime.selftest import selftest

    print_bundle_notes(bundle)
    report = selftest(bundle, backends or None)
    if as_json:
        emit_json(report)
    lines = human if as_json else results  # the tick lines are the result, unless JSON holds stdout
    for line in report["lines"]:
        lines.print(line, markup=False)
    if not report["passed"]:
        raise ValidationError(f"{bundle}: the samples do not reproduce on this device", report)
    ran = [f"{name} ({facts['artifact']}, {facts['precision']})" for name, facts in report["backends"].items() if facts["passed"]]
    lines.print(f"✓ {bundle}: samples reproduce on {', '.join(ran)}", markup=False)
