"""edgesdk devices: this device, its power sensors (usable or why not), runtimes and delegates."""
from __future__ import annotations

from pathlib import Path

import click

from edgesdk.cli.common import ResultsTable, emit_json, results


@click.command("devices")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON on stdout.")
@click.option(
    "--root",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=Path("/"),
    show_default=True,
    envvar="EDGESDK_SYSFS_ROOT",
    help="File-system root to read /proc, /sys and /etc from, instead of / (a testing aid: a fake "
    "or copied device tree; also set by EDGESDK_SYSFS_ROOT).",
)
def command(as_json: bool, root: Path) -> None:
    """Show the detected device, its power sensors, and the runtimes available here."""
    from edgesdk.devices import describe_system

    facts = describe_system(root)
    if as_json:
        emit_json(facts)
        return
    device, profile = facts["device"], facts["profile"]
    results.print(f"[bold]device[/bold]  {device['model'] or 'unknown'}  ({device['arch']}, {device['os']})")
    results.print(f"[bold]profile[/bold] {profile['name']}: {profile['title']}")
    for item in device["evidence"]:
        results.print(f"  from {item['source']}: {item['fact']}")
    isa = device.get("isa")
    if isa:
        process = f"{isa['process_isa']} ({isa['pointer_bits']}-bit, {isa['implementation']})"
        if isa["emulated"]:
            results.print(f"[bold]process[/bold] {process}: [yellow]emulated[/yellow] on this {device['arch']} host")
        else:
            results.print(f"[bold]process[/bold] {process}")
        for disagreement in isa["disagreements"]:
            results.print(f"  host disagrees: {disagreement}")

    sensors = ResultsTable(title="power sensors")
    for column in ("sensor", "label", "usable", "detail"):
        sensors.add_column(column)
    for sensor in facts["power_sensors"]:
        sensors.add_row(sensor["name"], sensor["label"], "yes" if sensor["available"] else "no", sensor["reason"])
    results.print(sensors)
    if not any(sensor["available"] for sensor in facts["power_sensors"]):
        results.print("no power sensor usable: `edgesdk profile` will report energy as estimated:ops")

    runtimes = ResultsTable(title="runtimes")
    for column in ("runtime", "version", "available here", "preferred order on this profile"):
        runtimes.add_column(column)
    ort, litert = facts["onnxruntime"], facts["litert"]
    runtimes.add_row(
        "onnxruntime",
        str(ort["version"] or "-"),
        ", ".join(ort["providers"]) or ort.get("reason", "not installed"),
        ", ".join(ort["preferred_order"]) or "-",
    )
    runtimes.add_row(
        f"litert ({litert['module']})" if litert["installed"] else "litert",
        str(litert["version"] or "-"),
        ", ".join(litert["delegates"]) or litert.get("reason", "not installed"),
        ", ".join(litert["preferred_order"]) or "-",
    )
    results.print(runtimes)
    results.print(f"backends to prefer here: {', '.join(facts['preferred_backends']) or 'none installed'}")
