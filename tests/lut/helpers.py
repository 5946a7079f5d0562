"""Shared by the lut tests: fast exporters (TorchScript ONNX, no validation) and constructed tables.

The CLI and the library export through validated edgesdk bundles (the dynamo exporter, seconds
per block); these tests inject a TorchScript exporter so that the measuring, fitting and search
machinery runs on real ONNX files in seconds.
"""
from __future__ import annotations

from pathlib import Path

import torch

from edgesdk.lut.measure import LatencyFigure
from edgesdk.lut.table import BlockEntry, LatencyTable, SupernetFacts, TableConditions, supernet_facts, table_blocks
from edgesdk.models.lighthubert import HiddenStatesExport, extract_subnet, frames_for_samples


def fast_block_exporter(module, example, folder: Path, fmt: str, precision: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    torch.onnx.export(module, (example,), str(path), input_names=["x"], dynamo=False)
    return path


def fast_subnet_exporter(supernet, subnet, folder: Path, conditions) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    module = HiddenStatesExport(extract_subnet(supernet, subnet), [subnet.layer_num]).eval()
    torch.onnx.export(module, (torch.randn(1, conditions.samples),), str(path), input_names=["waveform"], dynamo=False)
    return path


def constructed_table(supernet, block_ms, *, device_profile: str, seconds: float = 0.5, fmt: str = "onnx",
                      precision: str = "fp32") -> LatencyTable:
    """A table whose block latencies are ``block_ms(key)`` (no measurement): a known answer."""
    config = supernet.config
    samples = int(seconds * 16000)
    conditions = TableConditions(fmt, precision, seconds, samples, frames_for_samples(samples, config.conv_feature_layers),
                                 1, 10, 1, device_profile, "constructed", "onnxruntime", ("CPUExecutionProvider",),
                                 (("onnxruntime", "x"),), None, "absent (constructed)", "2026-01-01T00:00:00Z")
    blocks = tuple(BlockEntry(key, LatencyFigure(block_ms(key), 0.01, 0, 0, 10, 1, "constructed"))
                   for key in table_blocks(config))
    facts: SupernetFacts = supernet_facts(supernet, "tiny-supernet", None)
    return LatencyTable(facts, conditions, blocks)
