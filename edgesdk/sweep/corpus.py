"""Run one bundle over a corpus: a folder (or a list file) of WAVs or .npy feeds -> .npy outputs.

Each input ``INPUTS/sub/clip.wav`` gives ``OUT/sub/clip.npy`` (a bundle with one output) or
``OUT/sub/clip.<output>.npy`` (several), each with a leading batch axis of 1. Inputs whose
outputs are all in OUT already are skipped, so an interrupted run resumes where it stopped.

How an input becomes the bundle's feed:
- ``.npy``: the array is the bundle's single input (a batch axis is added when it has one rank
  less than the input).
- ``.wav`` (16-bit PCM mono): through the manifest's Kaldi fbank front-end (keyword spotters);
  a LightHuBERT bundle gets the waveform itself, run in overlapping windows
  (``edgesdk.runtime.chunking.run_chunked``).

In-process, one runtime session runs the inputs in order, ``batch`` at a time: stacked into one
call where the artifact's batch axis is dynamic and the shapes agree; in calls of N where the
artifact has a fixed batch N > 1, the last call padded with zeros (their outputs dropped); one
input per call otherwise. On Ray, Ray Data's
``map_batches`` runs the same code in actors, one runtime session each, with intra-op threads
set to the CPUs Ray gives each actor; outputs come back to the driver, which writes them.
Workers read INPUTS and BUNDLE by path: on a cluster they must be on a file system every node
sees. Torch-free: this module imports only numpy and the runtime.
"""
from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgesdk.errors import EdgeSDKError, UsageError

INPUT_SUFFIXES = (".wav", ".npy")


@dataclass(frozen=True)
class CorpusItem:
    """One input: its path and its name relative to the corpus root (without the suffix)."""

    path: str
    name: str


@dataclass(frozen=True)
class MapSummary:
    done: int
    skipped: int
    failed: tuple[tuple[str, str, int], ...]  # (name, error, exit code)
    output: str


def discover(inputs: str | Path) -> list[CorpusItem]:
    """A folder (searched recursively) or a text file listing one path per line."""
    inputs = Path(inputs)
    if inputs.is_dir():
        paths = sorted(p for p in inputs.rglob("*") if p.is_file() and p.suffix.lower() in INPUT_SUFFIXES)
        items = [CorpusItem(str(p), str(p.relative_to(inputs).with_suffix(""))) for p in paths]
    elif inputs.is_file():
        items = []
        for line in inputs.read_text().splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            path = Path(line) if Path(line).is_absolute() else inputs.parent / line
            if path.suffix.lower() not in INPUT_SUFFIXES:
                raise UsageError(f"{inputs}: {line} is neither a .wav nor a .npy file")
            items.append(CorpusItem(str(path), str(Path(line).with_suffix("")).lstrip("/")))
    else:
        raise UsageError(f"{inputs} is neither a folder nor a list of inputs")
    if not items:
        raise UsageError(f"{inputs} holds no .wav or .npy inputs")
    names = [item.name for item in items]
    if len(set(names)) != len(names):
        raise UsageError(f"{inputs}: two inputs share a name (e.g. a.wav and a.npy); outputs would collide")
    return items


def output_paths(output: Path, name: str, output_names: Sequence[str]) -> dict[str, Path]:
    if len(output_names) == 1:
        return {output_names[0]: output / f"{name}.npy"}
    return {out: output / f"{name}.{out}.npy" for out in output_names}


class BundleRunner:
    """One runtime session of a bundle and the rules that turn an input file into its feed."""

    def __init__(self, model: Any):
        """``model``: a loaded ``edgesdk.runtime.Model`` (see ``open``)."""
        self.model = model
        manifest = model.manifest
        source = getattr(model, "path", "the bundle")
        if model.is_streaming:
            raise UsageError(f"{source} is a streaming bundle; map runs full-utterance bundles "
                             "(use `edgesdk run --wav` to stream one file)")
        self.inputs = list(manifest["inputs"])
        if len(self.inputs) != 1:
            raise UsageError(f"map feeds bundles with one input; {source} takes {len(self.inputs)}")
        self.input = self.inputs[0]
        self.output_names = [entry["name"] for entry in manifest["outputs"]]
        self.family = (manifest.get("model") or {}).get("family")
        self.frontend = manifest.get("frontend") or {}
        self.shape = model.static_shape(self.input["name"])
        self.dynamic_batch = bool(self.shape) and isinstance(self.shape[0], str)
        # A static graph's batch (1 for most; EcoFormer's TFLite file exported with batch=N has N).
        self.fixed_batch = self.shape[0] if self.shape and isinstance(self.shape[0], int) and self.shape[0] > 0 else 1

    @classmethod
    def open(cls, bundle: str | Path, threads: int | None = None, backend: str = "auto") -> "BundleRunner":
        """Load ``bundle`` in the runtime (``threads``: intra-op threads) and wrap it."""
        from edgesdk.runtime import load

        return cls(load(bundle, backend=backend, num_threads=threads))

    def _from_wav(self, path: Path) -> np.ndarray:
        from edgesdk.runtime.audio import KaldiFbankFrontend, read_wav

        if self.frontend.get("type") != "kaldi_fbank":
            raise UsageError(f"{path.name}: this bundle has no Kaldi fbank front-end; give .npy feeds instead")
        frontend = KaldiFbankFrontend.from_manifest(self.frontend, str(path))
        features = frontend.model_input(read_wav(path, frontend.sample_rate_hz))  # [frames, mel]
        rank = len(self.shape)
        if rank == 3 and self.shape[2] == features.shape[1]:
            return features[None]
        if rank == 3 and self.shape[1] == features.shape[1]:
            return features.T[None]
        raise UsageError(f"{path.name}: fbank features [frames, {features.shape[1]}] do not fit the input "
                         f"{self.input['name']} {self.shape}")

    def feed(self, path: str | Path) -> np.ndarray:
        """The input array of one file, with a batch axis of 1."""
        path = Path(path)
        if path.suffix.lower() == ".npy":
            try:
                array = np.load(path, allow_pickle=False)
            except (OSError, ValueError) as error:
                raise UsageError(f"{path.name}: not a readable .npy array ({error})") from None
            if array.ndim == len(self.shape) - 1:
                array = array[None]
        else:
            array = self._from_wav(path)
        return np.ascontiguousarray(array, dtype=np.dtype(self.input["dtype"]))

    def run(self, paths: Sequence[str | Path]) -> list[dict[str, np.ndarray] | EdgeSDKError]:
        """Outputs per input, batch axis 1 each; an input that fails gives its error."""
        if self.family == "lighthubert":
            return [self._guard(lambda p=p: self._run_lighthubert(Path(p))) for p in paths]
        feeds: list[np.ndarray | EdgeSDKError] = [self._guard(lambda p=p: self.feed(p)) for p in paths]
        results: list[dict[str, np.ndarray] | EdgeSDKError | None] = [None] * len(paths)
        good = [i for i, f in enumerate(feeds) if isinstance(f, np.ndarray)]
        for i, f in enumerate(feeds):
            if not isinstance(f, np.ndarray):
                results[i] = f
        same_shape = len({feeds[i].shape for i in good}) == 1 and all(feeds[i].shape[0] == 1 for i in good)
        if same_shape and (self.dynamic_batch and len(good) > 1 or self.fixed_batch > 1):
            # Dynamic batch: one call. Fixed batch N (a static graph, e.g. TFLite): calls of N
            # inputs, the last padded with zeros whose outputs are dropped.
            size = len(good) if self.dynamic_batch else self.fixed_batch
            for start in range(0, len(good), size):
                rows = good[start:start + size]
                stacked = np.concatenate([feeds[i] for i in rows])
                if len(rows) < size and not self.dynamic_batch:
                    stacked = np.concatenate([stacked, np.zeros((size - len(rows), *stacked.shape[1:]), stacked.dtype)])
                outputs = self._guard(lambda stacked=stacked: self.model.run({self.input["name"]: stacked}))
                for row, i in enumerate(rows):
                    results[i] = outputs if isinstance(outputs, EdgeSDKError) else {
                        name: value[row:row + 1] for name, value in outputs.items()}
        else:
            for i in good:
                results[i] = self._guard(lambda i=i: self.model.run({self.input["name"]: feeds[i]}))
        return results  # type: ignore[return-value]

    def _run_lighthubert(self, path: Path) -> dict[str, np.ndarray]:
        from edgesdk.runtime.audio import read_wav
        from edgesdk.runtime.chunking import run_chunked

        if path.suffix.lower() == ".npy":
            waveform = np.load(path, allow_pickle=False).astype(np.float32)
        else:
            waveform = read_wav(path).astype(np.float32) / 32768.0
        return run_chunked(self.model, waveform)

    @staticmethod
    def _guard(call: Callable[[], Any]) -> Any:
        try:
            return call()
        except EdgeSDKError as error:
            return error


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".partial")
    with open(temporary, "wb") as handle:
        np.save(handle, array)
    os.replace(temporary, path)  # a killed run never leaves a truncated output to be skipped later


def _pending(items: Sequence[CorpusItem], output: Path, output_names: Sequence[str]) -> list[CorpusItem]:
    return [item for item in items
            if not all(p.is_file() for p in output_paths(output, item.name, output_names).values())]


def map_corpus(bundle: str | Path, inputs: str | Path, output: str | Path, *, batch: int = 1,
               threads: int | None = None, backend: str = "auto", ray: Any = None, workers: int = 1,
               progress: Callable[[int, int], None] | None = None) -> MapSummary:
    """Run ``bundle`` over every input not yet in ``output``.

    ``ray``: the ray module of an initialised Ray instance (``edgesdk.executor.RayExecutor``
    starts or joins one) to run on Ray Data with ``workers`` actors; None runs in-process.
    ``threads``: intra-op threads per runtime session (on Ray: CPUs per actor). ``backend``:
    as ``edgesdk.load`` (a bundle whose TFLite file has static shapes and whose ONNX file has
    dynamic ones runs inputs of several lengths only with ``onnxruntime``).
    """
    if batch < 1 or workers < 1 or (threads is not None and threads < 1):
        raise UsageError("batch, workers and threads must be at least 1")
    output = Path(output)
    items = discover(inputs)
    probe_names = _output_names(bundle)
    todo = _pending(items, output, probe_names)
    skipped = len(items) - len(todo)
    failed: list[tuple[str, str, int]] = []
    done = 0

    def store(item: CorpusItem, result: dict[str, np.ndarray] | EdgeSDKError) -> None:
        nonlocal done
        if isinstance(result, EdgeSDKError):
            failed.append((item.name, str(result), result.exit_code))
            return
        for name, path in output_paths(output, item.name, probe_names).items():
            _save(path, result[name])
        done += 1
        if progress is not None:
            progress(done + len(failed), len(todo))

    if todo and ray is None:
        runner = BundleRunner.open(bundle, threads=threads, backend=backend)
        for start in range(0, len(todo), batch):
            group = todo[start:start + batch]
            for item, result in zip(group, runner.run([item.path for item in group])):
                store(item, result)
    elif todo:
        by_name = {item.name: item for item in todo}
        dataset = ray.data.from_items([{"path": item.path, "name": item.name} for item in todo])
        mapped = dataset.map_batches(
            _RayMapper, fn_constructor_kwargs={"bundle": str(Path(bundle).resolve()), "backend": backend}, batch_size=batch,
            batch_format="numpy", concurrency=workers, num_cpus=threads or 1)
        for row in mapped.iter_rows():
            item = by_name[str(row["name"])]
            if row["error"]:
                failed.append((item.name, str(row["error"]), int(row["exit_code"])))
                continue
            with np.load(io.BytesIO(row["outputs"]), allow_pickle=False) as arrays:
                store(item, {name: arrays[name] for name in arrays.files})
    output.mkdir(parents=True, exist_ok=True)
    return MapSummary(done=done, skipped=skipped, failed=tuple(failed), output=str(output))


def _output_names(bundle: str | Path) -> list[str]:
    from edgesdk.runtime.manifest import read_manifest

    return [entry["name"] for entry in read_manifest(bundle, verify_hashes=False)["outputs"]]


class _RayMapper:
    """A Ray Data actor: one runtime session, intra-op threads = the CPUs Ray assigned it."""

    def __init__(self, bundle: str, backend: str = "auto"):
        import ray

        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
        self.runner = BundleRunner.open(bundle, threads=max(1, int(cpus)), backend=backend)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = [str(name) for name in batch["name"]]
        results = self.runner.run([str(path) for path in batch["path"]])
        payloads, errors, codes = [], [], []
        for result in results:
            if isinstance(result, EdgeSDKError):
                payloads.append(b"")
                errors.append(str(result))
                codes.append(result.exit_code)
            else:
                buffer = io.BytesIO()
                np.savez(buffer, **result)
                payloads.append(buffer.getvalue())
                errors.append("")
                codes.append(0)
        return {"name": np.array(names), "outputs": np.array(payloads, dtype=object),
                "error": np.array(errors), "exit_code": np.array(codes)}
