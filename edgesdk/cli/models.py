"""edgesdk models: the registered families, their presets and parameter counts."""
from __future__ import annotations

from typing import Any

import click
from rich.text import Text
from edgesdk.cli.common import ResultsTable, emit_json, results
from edgesdk.cli.export import FAMILY_FLAGS
from edgesdk.errors import UsageError


def _subnet_table(title: str, rows: list[dict[str, Any]]) -> ResultsTable:
    table = ResultsTable(title=title)
    columns = [c for c in rows[0] if c != "subnet"] if rows else []
    for column in columns:
        table.add_column(column, justify="right" if isinstance(rows[0][column], (int, float)) else "left")
    for row in rows:
        table.add_row(*[f"{row[c]:,}" if isinstance(row[c], int) else
                        f"{row[c]:.4g}" if isinstance(row[c], float) else str(row[c]) for c in columns])
    return table


FLAG_SPELLINGS = [flag for flag, _, _ in FAMILY_FLAGS] + ["--no-fold"]


def _option_rows(family: Any) -> list[dict[str, Any]]:
    return [{"name": row.name, "type": row.type.name, "default": row.shown_default(),
             "modes": list(row.modes or family.modes), "command_line": row.type.command_line, "help": row.help}
            for row in family.export_options.declared()]


def _options_lines(name: str, family: Any) -> list[str]:
    """One line per option (name, type, default, modes) and its help below, never cut short."""
    lines = [f"{name} export options (--option NAME=VALUE, or keywords of edgesdk.export):"]
    for row in _option_rows(family):
        python = "" if row["command_line"] else "; Python only"
        lines.append(f"  {row['name']}  ({row['type']}; default {row['default']}; mode {', '.join(row['modes'])}{python})")
        lines.append(f"      {row['help']}")
    return lines


@click.command("models")
@click.argument("family", required=False)
@click.option("--preset", help="With --subnets/--sample: the supernet preset (default: the family's own).")
@click.option("--subnets", is_flag=True, help="LightHuBERT: list the named subnets with parameters and MACs.")
@click.option("--sample", type=int, help="LightHuBERT: sample N valid subnets.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for --sample.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON on stdout.")
def command(family: str | None, preset: str | None, subnets: bool, sample: int | None, seed: int, as_json: bool) -> None:
    """List model families and presets (with parameter counts), or one FAMILY's subnets."""
    from edgesdk.models.registry import FAMILY_MODULES, available_families, get_family, preset_parameters

    if subnets or sample is not None:
        if family is None:
            raise UsageError("--subnets and --sample need a FAMILY (e.g. lighthubert)")
        chosen = get_family(family)
        if chosen.list_subnets is None or chosen.sample_subnets is None:
            raise UsageError(f"{family} has no subnets; only supernet families (lighthubert) do")
        source = preset or None
        rows = chosen.sample_subnets(sample, seed, source) if sample is not None else chosen.list_subnets(source)
        if as_json:
            emit_json(rows)
        else:
            results.print(_subnet_table(f"{family} subnets" + (f" (sampled, seed {seed})" if sample else ""), rows))
        return

    families = {family: get_family(family)} if family else available_families()
    listing = []
    for name, entry in families.items():
        for preset_name, spec in entry.presets.items():
            listing.append({"family": name, "preset": preset_name, "parameters": preset_parameters(entry, preset_name),
                            "small": spec.small, "modes": list(entry.modes), "description": spec.description,
                            "export_options": _option_rows(entry)})
    if as_json:
        emit_json(listing)
        return
    table = ResultsTable(title="edgesdk model presets")
    for column, justify in (("family", "left"), ("preset", "left"), ("parameters", "right"), ("modes", "left")):
        table.add_column(column, justify=justify)  # rich narrows the widest (description) first
    table.add_column("description")
    for row in listing:
        table.add_row(row["family"], row["preset"], f"{row['parameters']:,}", ", ".join(row["modes"]),
                      Text(row["description"]))  # Text: a "[...]" in a description is not markup
    results.print(table)
    if family:
        for line in _options_lines(family, families[family]):
            results.print(line, markup=False)
        results.print(f"Short forms: {', '.join(FLAG_SPELLINGS)}.", markup=False)
    if not family:
        missing = [name for name in FAMILY_MODULES if name not in families]
        if missing:
            results.print(f"not implemented yet: {', '.join(missing)}")
