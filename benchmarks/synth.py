"""Benchmark: generating 1M synthetic events vs numpy drawing 1M Zipf samples (same run).

Run: ``/tmp/venv/bin/python benchmarks/synth.py``
"""

from __future__ import annotations

import sys
import time

import numpy as np

from streamsim import synth


def main() -> None:
    cfg = synth.SynthConfig(
        n_users=20_000,
        n_items=1_000,
        n_topics=10,
        events_per_user=50,
        drifts=(synth.DriftSpec(kind="sudden", start_day=40.0, scope=0.5, drift_type="real"),),
    )
    rng = np.random.Generator(np.random.PCG64(0))
    t = time.perf_counter()
    rng.zipf(1.5, size=1_000_000)
    base = time.perf_counter() - t
    t = time.perf_counter()
    data = synth.generate(cfg, 0)
    gen = time.perf_counter() - t
    sys.stdout.write(
        f"events={data.events.num_rows} generate={gen:.2f}s zipf_1M={base:.3f}s "
        f"ratio={gen / base:.0f}x target<=15s {'OK' if gen <= 15 else 'FAIL'}\n"
    )


if __name__ == "__main__":
    main()
