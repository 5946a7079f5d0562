"""What thread safety costs a shared LiteRT Model: the lock, and the alternative it was chosen over.

One run, one machine, the LMUFormer scv2 streaming step (seeded weights; latency does not
depend on the weights' values), 1 intra-op thread per interpreter:

* single thread, one stream: the locked ``LiteRTBackend.run`` (what ``Stream.push`` calls) against
  the bare signature runner of the same interpreter, interleaved call by call: the lock's cost;
* two threads, two streams: one shared interpreter behind its lock (the runtime's choice)
  against one interpreter per thread (no lock, twice the tensor arenas): throughput in steps/s.

    python benchmarks/bench_threads.py [--steps 2000]

Writes benchmarks/results/threads.md (``--output``) and prints it.
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _export_step(folder: Path) -> Path:
    import edgesdk

    model = edgesdk.create_model("lmuformer", preset="scv2")
    return Path(edgesdk.export(model, folder / "scv2", formats=("tflite",), mode="stream", random_weights=True).path)


def _steps_per_second(runners, feeds_per_runner, steps: int) -> float:
    """Run each runner in its own thread for ``steps`` calls; total calls per second."""
    barrier = threading.Barrier(len(runners) + 1)

    def work(runner, feeds):
        barrier.wait()
        for _ in range(steps):
            runner(feeds)

    threads = [threading.Thread(target=work, args=pair) for pair in zip(runners, feeds_per_runner)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    return len(runners) * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "threads.md")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import edgesdk
    from edgesdk.runtime.backends.litert import LiteRTBackend

    with tempfile.TemporaryDirectory() as tmp:
        bundle = _export_step(Path(tmp))
        model = edgesdk.load(bundle, backend="litert", num_threads=1)
        artifact = bundle / model.artifact["file"]
        stream = model.stream()
        feeds = {model._input_map[k]: v for k, v in model.example_feeds(seed=0).items()}
        for state in model.state_spec:
            feeds[model._input_map[state.input]] = state.initial(1)
        names = list(model._backend_output_names)

        locked = LiteRTBackend(artifact, num_threads=1)
        bare_runner = locked.runner

        def locked_call(f):
            return locked.run(f, names)

        def bare_call(f):
            results = bare_runner(**f)
            return [np.array(results[n]) for n in names]

        for _ in range(50):
            locked_call(feeds), bare_call(feeds)
        locked_times, bare_times = [], []
        for _ in range(args.steps):
            start = time.perf_counter(); locked_call(feeds); locked_times.append(time.perf_counter() - start)
            start = time.perf_counter(); bare_call(feeds); bare_times.append(time.perf_counter() - start)
        locked_us, bare_us = np.median(locked_times) * 1e6, np.median(bare_times) * 1e6

        shared = _steps_per_second([locked_call, locked_call], [feeds, feeds], args.steps)
        second = LiteRTBackend(artifact, num_threads=1)
        per_thread = _steps_per_second(
            [locked_call, lambda f: second.run(f, names)], [feeds, dict(feeds)], args.steps)
        del stream

    lines = [
        "# Thread safety of a shared LiteRT Model",
        "",
        f"LMUFormer scv2 streaming step, LiteRT, 1 intra-op thread per interpreter, {args.steps} steps per figure.",
        "",
        "| what | figure |",
        "|---|---|",
        f"| one thread: locked run, median per step | {locked_us:.1f} µs |",
        f"| one thread: bare runner, median per step | {bare_us:.1f} µs |",
        f"| lock cost, ratio locked / bare | {locked_us / bare_us:.3f} |",
        f"| two threads, one shared interpreter behind its lock | {shared:.0f} steps/s |",
        f"| two threads, one interpreter each | {per_thread:.0f} steps/s |",
        f"| ratio per-thread interpreters / shared | {per_thread / shared:.2f} |",
        "",
        "At one thread the lock costs the ratio above (within noise of 1). Two threads on one interpreter serialise;",
        "one interpreter per thread runs in parallel where cores are free. The runtime shares one",
        "interpreter per Model (correct, least memory); a server that wants parallel LiteRT",
        "throughput loads one Model per worker thread.",
    ]
    text = "\n".join(lines) + "\n"
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
