"""One loaded Model shared by many threads gives each thread the answers it gets alone."""
from __future__ import annotations

import threading

import numpy as np
import pytest

import edgesdk

THREADS = 8
STEPS = 60


def _run_alone(model, sequence):
    stream = model.stream()
    return np.stack([stream.push({"features": step})["logits"] for step in sequence])


def _run_in_threads(target, count):
    errors = []

    def guarded(index):
        try:
            target(index)
        except Exception as error:  # collected and re-raised in the main thread
            errors.append(error)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


@pytest.mark.parametrize("backend", ["onnxruntime", "litert"])
def test_eight_threads_pushing_separate_streams_match_each_stream_run_alone(streaming_bundle, backend):
    model = edgesdk.load(streaming_bundle, backend=backend)
    rng = np.random.default_rng(7)
    sequences = [rng.standard_normal((STEPS, 1, 1, 40)).astype(np.float32) for _ in range(THREADS)]
    alone = [_run_alone(model, sequence) for sequence in sequences]
    # Different sequences must give different outputs, or cross-talk could not show.
    assert np.abs(alone[0] - alone[1]).max() > 1e-3

    together = [None] * THREADS

    def work(index):
        together[index] = _run_alone(model, sequences[index])

    _run_in_threads(work, THREADS)
    for index in range(THREADS):
        np.testing.assert_array_equal(together[index], alone[index], err_msg=f"thread {index}")


@pytest.mark.parametrize("backend", ["onnxruntime", "litert"])
def test_eight_threads_calling_run_match_the_calls_made_alone(stateless_bundle, backend):
    model = edgesdk.load(stateless_bundle, backend=backend)
    rng = np.random.default_rng(11)
    feeds = [rng.standard_normal((1, 40, 17)).astype(np.float32) for _ in range(THREADS)]
    alone = [model.run({"features": f}) for f in feeds]
    together = [[] for _ in range(THREADS)]

    def work(index):
        for _ in range(20):
            together[index].append(model.run({"features": feeds[index]}))

    _run_in_threads(work, THREADS)
    for index in range(THREADS):
        for result in together[index]:
            for name, value in alone[index].items():
                np.testing.assert_array_equal(result[name], value, err_msg=f"thread {index} {name}")
