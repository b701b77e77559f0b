"""Peak training memory against dataset size (run in a fresh process per dataset).

Shard frames are memory-mapped, so pages the loader touches appear in RSS as clean, evictable page
cache. The figure that must not grow is the process's own (anonymous) memory: its peak ``RssAnon``
is sampled every 50 ms while the train step runs on random windows of the dataset.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path


def _rss_anon_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    return 0


def measure(shards: str, preset: str, steps: int) -> dict:
    """Train ``steps`` steps on ``shards`` and return peak anonymous and total RSS (MB)."""
    import resource

    import numpy as np

    from foresight.config import load_config
    from foresight.ingest import ShardDataset
    from foresight.model.train import train_model

    cfg = load_config(preset=preset)
    peak = {"anon": 0}
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak["anon"] = max(peak["anon"], _rss_anon_kb())
            time.sleep(0.05)

    threading.Thread(target=sample, daemon=True).start()
    ds = ShardDataset(shards)
    tr, va = ds.split(cfg.train.val_fraction, seed=0)
    tcfg = cfg.train.model_copy(update={"max_steps": steps, "val_every": 10**9, "val_batches": 2})
    out = Path(shards).parent / f"mem-model-{len(ds)}"
    train_model(cfg.model, tcfg, cfg.data.model_dump(mode="json"), tr, va, out, progress=False)
    stop.set()
    frames = int(sum(s["frames"] for s in ds.sources))
    return {
        "frames": frames,
        "gb": float(np.float64(frames) * ds.image_size**2 * 3 / 1e9),
        "peak_anon_mb": peak["anon"] / 1024,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run_in_subprocess(shards: Path, preset: str, steps: int) -> dict:
    """``measure`` in a fresh interpreter so peaks do not mix."""
    code = (
        "import json,sys; from foresight.bench.trainmem import measure; "
        "print(json.dumps(measure(sys.argv[1], sys.argv[2], int(sys.argv[3]))))"
    )
    res = subprocess.run(
        [sys.executable, "-c", code, str(shards), preset, str(steps)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(res.stdout.strip().splitlines()[-1])
