"""A process for the run-store tests in tests/test_runs.py.

    python tests/_runs_worker.py CONFIG_JSON ROOT OUT [--go FILE] [--sleep SECONDS]

Calls ``load_or_train`` on the config in the store ``ROOT`` and writes
``OUT`` (JSON: how many times it called ``fit``, the metrics, a hash of the
weights, the history) and ``OUT.log`` (the lines ``load_or_train`` logged).
``--go FILE``: first touch ``OUT.ready``, then wait for ``FILE`` to exist (so
that several workers start at once).  ``--sleep``: sleep after every
checkpoint is written (a run that stays mid-way long enough to be killed); the
sleep changes no result.
"""

import argparse
import hashlib
import json
import time
from pathlib import Path


def weights_digest(model) -> str:
    """A hash of the model's weights (equal hashes: bitwise equal weights)."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("root")
    parser.add_argument("out")
    parser.add_argument("--go", default=None)
    parser.add_argument("--sleep", type=float, default=0.0)
    args = parser.parse_args()

    from mixviz import runs, train

    config = train.TrainConfig.from_dict(json.loads(args.config))
    fits = []
    real_fit = runs.fit

    def counting_fit(*a, **kw):
        fits.append(1)
        return real_fit(*a, **kw)

    runs.fit = counting_fit
    if args.sleep > 0:
        real_save = train.save_checkpoint

        def slow_save(obj, path):
            written = real_save(obj, path)
            time.sleep(args.sleep)
            return written

        train.save_checkpoint = slow_save

    out = Path(args.out)
    log_file = Path(f"{out}.log")

    def log(line: str) -> None:
        with open(log_file, "a") as f:
            f.write(line + "\n")

    if args.go is not None:
        Path(f"{out}.ready").touch()
        while not Path(args.go).exists():
            time.sleep(0.01)
    run = runs.load_or_train(config, args.root, log=log)
    out.write_text(json.dumps({"fits": len(fits), "metrics": run.metrics, "weights": weights_digest(run.model),
                               "epoch_sec": run.history["epoch_sec"].tolist(), "path": str(run.path)}))


if __name__ == "__main__":
    main()
