"""sha256 of every preset's actor + critic weights after N env steps (default 8,192).

The bit-identity check of a change that must not alter behaviour: run it before and after and
compare (``python scripts/hash_presets.py > before.txt``; change; ``... > after.txt``; ``diff``).
Each preset runs in its own process (the seed is process-wide), with one evaluation episode and
no run directory.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys

from rlopt.presets import preset_names

_CHILD = """
import hashlib, sys
from agents import build_agent
from rlopt.config import load_config
from rlopt.trainer import Trainer
cfg = load_config(sys.argv[1], [f"total_steps={sys.argv[2]}", "eval.episodes=1"])
agent = build_agent(cfg)
Trainer(agent, run_dir=None, progress=False).train(cfg.total_steps)
digest = hashlib.sha256()
for module in (agent.actor, agent.critic):
    if module is None:
        continue
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
print(digest.hexdigest())
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--steps", type=int, default=8192, help="env steps per preset (default 8192)")
    parser.add_argument("presets", nargs="*", help="preset names (default: all)")
    args = parser.parse_args()
    for name in args.presets or preset_names():
        out = subprocess.run([sys.executable, "-c", _CHILD, name, str(args.steps)], capture_output=True, text=True)
        line = out.stdout.strip().splitlines()[-1] if out.returncode == 0 and out.stdout.strip() else f"FAILED: {out.stderr.strip().splitlines()[-1:]}"
        print(f"{name} {line}", flush=True)


if __name__ == "__main__":
    main()
