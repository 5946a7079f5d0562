"""LiteRT (TFLite) backend: ai_edge_litert, else tflite_runtime, else tensorflow.lite."""
from __future__ import annotations

import importlib
import logging
import threading
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from edgesdk.errors import BackendUnavailable
from edgesdk.runtime.backends.base import Backend, litert_module

log = logging.getLogger(__name__)

# LiteRT applies XNNPACK to float graphs on CPU by default.
DEFAULT_DELEGATE = "XNNPACK"
# Ops that keep state inside the interpreter between calls (TensorFlow resource variables).
RESOURCE_VARIABLE_OPS = ("VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE")


class LiteRTBackend(Backend):
    name = "litert"

    def __init__(
        self,
        path: str | Path,
        num_threads: int | None = None,
        strict_providers: bool = False,
        providers: Sequence[str] | None = None,
    ):
        module_name = litert_module()
        if module_name is None:
            raise BackendUnavailable(
                "no LiteRT interpreter is installed; pip install ai-edge-litert (or tflite-runtime)"
            )
        unsupported = [p for p in (providers or []) if p.upper() not in (DEFAULT_DELEGATE, "CPU")]
        if unsupported:
            message = f"LiteRT here runs on CPU with {DEFAULT_DELEGATE}; cannot use {', '.join(unsupported)}"
            if strict_providers:
                raise BackendUnavailable(message)
            log.warning(message)
        module = importlib.import_module(module_name)
        interpreter_class = module.Interpreter
        self.package = module_name.split(".")[0]
        self.path, self.num_threads = Path(path), num_threads
        try:
            self.interpreter = interpreter_class(model_path=str(path), num_threads=num_threads)
        except (ValueError, RuntimeError) as error:
            raise BackendUnavailable(f"LiteRT could not load {path}: {error}") from None
        # State the file keeps inside the interpreter (resource variables): the artifact has no
        # state inputs for it; only a new interpreter starts it again (reset_all_variables resets
        # variable tensors, not resource variables -- tests/runtime/test_litert_variables.py).
        op_names = {op["op_name"] for op in self.interpreter._get_ops_details()}
        self.internal_state = [name for name in RESOURCE_VARIABLE_OPS if name in op_names]
        signatures = self.interpreter.get_signature_list()
        if signatures:
            self.signature = next(iter(signatures))
            self.runner = self.interpreter.get_signature_runner(self.signature)
            details = self.runner.get_input_details()
            self.input_shapes = {name: [int(d) for d in info["shape"]] for name, info in details.items()}
            self.input_dtypes = {name: np.dtype(info["dtype"]).name for name, info in details.items()}
            self.output_names = list(signatures[self.signature]["outputs"])
        else:
            # A file without signatures: fall back to tensor indices, named by the file.
            self.signature = None
            self.runner = None
            self.interpreter.allocate_tensors()
            details = self.interpreter.get_input_details()
            self.input_shapes = {d["name"]: [int(x) for x in d["shape"]] for d in details}
            self.input_dtypes = {d["name"]: np.dtype(d["dtype"]).name for d in details}
            self._input_index = {d["name"]: d["index"] for d in details}
            self._output_index = {d["name"]: d["index"] for d in self.interpreter.get_output_details()}
            self.output_names = list(self._output_index)
        self.providers = [f"{DEFAULT_DELEGATE} (CPU, {self.package})"]
        self.fallback = []
        # A LiteRT interpreter owns one set of input/output buffers: two threads calling it at
        # once overwrite each other's tensors and get each other's outputs. One lock per
        # interpreter makes a shared Model safe; benchmarks/bench_threads.py measures its cost.
        self._lock = threading.Lock()

    def fresh(self) -> "LiteRTBackend":
        """A new interpreter of the same file: its internal state (resource variables) at their
        initial values, and its variable tensors reset."""
        engine = LiteRTBackend(self.path, num_threads=self.num_threads)
        engine.interpreter.reset_all_variables()
        return engine

    def run(self, feeds: Mapping[str, np.ndarray], output_names: Sequence[str]) -> list[np.ndarray]:
        with self._lock:
            if self.runner is not None:
                results = self.runner(**feeds)
                # The runner returns views into interpreter buffers: copy before releasing them.
                return [np.array(results[name]) for name in output_names]
            for name, value in feeds.items():
                self.interpreter.set_tensor(self._input_index[name], value)
            self.interpreter.invoke()
            return [np.array(self.interpreter.get_tensor(self._output_index[name])) for name in output_names]
