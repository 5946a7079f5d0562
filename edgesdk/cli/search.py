"""edgesdk search lighthubert: the best subnet for this device under latency, energy and size limits."""
from __future__ import annotations

import json
import time
from pathlib import Path

import click

from edgesdk.cli.common import human
from edgesdk.cli.lut import FAMILIES, _executor, _executor_options, _say, load_supernet
from edgesdk.errors import UsageError


@click.command("search")
@click.argument("family", type=click.Choice(FAMILIES))
@click.option("--lut", "table_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="Latency table from `edgesdk lut build` (validated by `edgesdk lut validate`).")
@click.option("--max-latency-ms", type=float, required=True, help="Latency limit on this device, ms.")
@click.option("--max-energy-mj", type=float, help="Energy limit per inference, mJ (needs a table with measured energy).")
@click.option("--max-params", type=int, help="Parameter limit of the standalone subnet.")
@click.option("--audio", type=click.Path(path_type=Path), required=True, help="Folder of 16 kHz .wav/.flac clips to score on.")
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="The supernet checkpoint the table was built from.")
@click.option("--format", "fmt", type=click.Choice(["onnx", "tflite"]), help="Must match the table's [default: the table's].")
@click.option("--precision", help="Must match the table's [default: the table's].")
@click.option("--seconds", type=float, help="Input length; must match the table's [default: the table's].")
@click.option("--margin", type=float, default=0.05, show_default=True, help="Search below (1 - margin) x the limit.")
@click.option("--budget", type=click.IntRange(min=4), default=100, show_default=True, help="Subnets scored by each search.")
@click.option("--population", type=click.IntRange(min=4), default=16, show_default=True)
@click.option("--remeasure", type=click.IntRange(min=1), default=3, show_default=True,
              help="At most this many of the best candidates are measured whole, best first, until one fits.")
@click.option("--seed", type=int, default=0, show_default=True)
@_executor_options
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True, help="subnet.json to write.")
def command(family, table_path, max_latency_ms, max_energy_mj, max_params, audio, checkpoint, fmt, precision, seconds,
            margin, budget, population, remeasure, seed, use_ray, ray_address, output) -> None:
    """Search FAMILY's subnets scored on your audio (no labels), within the limits, measured on this device."""
    from edgesdk.lut.score import DistillationScorer, load_audio_folder
    from edgesdk.lut.search import Limits, check_search, search_subnet, subnet_json
    from edgesdk.lut.table import LatencyTable

    started = time.perf_counter()
    limits = Limits(max_latency_ms, margin, max_energy_mj, max_params)
    table = LatencyTable.load(table_path)
    clips = load_audio_folder(audio)  # bad audio fails before the model is built
    if table.supernet.checkpoint_sha256 and checkpoint is None:
        raise UsageError(f"{table_path} was built from a checkpoint: give it with --checkpoint")
    supernet = load_supernet(table.supernet.preset if checkpoint is None else None, checkpoint)
    with _executor(use_ray, ray_address) as executor:  # refusals before the scores are prepared
        check_search(supernet, table, limits, format=fmt, precision=precision, seconds=seconds,
                     table_path=str(table_path), executor=executor, say=_say)
    human.print(f"→ scoring on {len(clips.names)} clips from {audio}", markup=False)
    prepared = time.perf_counter()
    scorer = DistillationScorer(supernet, clips)
    scorer_s = time.perf_counter() - prepared
    with _executor(use_ray, ray_address) as executor:
        result = search_subnet(supernet, table, scorer, limits, budget=budget, population=population, remeasure=remeasure,
                               seed=seed, executor=executor, table_path=str(table_path), format=fmt, precision=precision,
                               seconds=seconds, say=_say)
    data = subnet_json(result)
    data["score"]["per_clip_names"] = list(clips.names)
    data["timings_s"].update(scorer_setup=scorer_s, total=time.perf_counter() - started)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    latency = data["latency"]
    click.echo(f"subnet: e={result.chosen.subnet.embed_dim} L={result.chosen.subnet.layer_num} "
               f"heads={list(result.chosen.subnet.heads_num)} ffn={list(result.chosen.subnet.ffn_embed)}")
    click.echo(f"latency: predicted {latency['predicted_ms']:.2f} ms ({latency['predictor']['kind']}), measured "
               f"{latency['measured']['median_ms']:.2f} ms (IQR {latency['measured']['spread_ms']:.2f}) against "
               f"{max_latency_ms:g} ms")
    click.echo(f"score: {result.chosen.score.mean:.4f} ± {result.chosen.score.spread:.4f} over {result.chosen.score.clips} clips; "
               f"random baseline best {result.random.best.score.mean:.4f} ({result.random.evaluations} subnets)")
    click.echo(f"params: {result.chosen.params}")
    click.echo(f"wrote {output} in {time.perf_counter() - started:.0f} s")
