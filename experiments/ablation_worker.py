"""One ablation run's samples, in a process of its own: `python -m experiments.ablation_worker
WORKDIR ROOT num_prompts,per_prompt,unprompted,prompt_tokens,num_tokens` writes
WORKDIR/eval/samples.json (`experiments.sample_eval`), against ROOT/reference."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from experiments.config_history import saved_config
from experiments.sample_eval import SampleProtocol, score_samples


def main(argv: list[str]) -> None:
    workdir, root, numbers = argv
    num_prompts, per_prompt, unprompted, prompt_tokens, num_tokens = (int(v) for v in numbers.split(","))
    config = saved_config(json.loads((Path(workdir) / "config.json").read_text()), workdir)
    protocol = SampleProtocol(num_prompts, per_prompt, unprompted, prompt_tokens, num_tokens, seed=config.seed)
    result = score_samples(config, workdir, Path(root) / "reference", protocol)
    (Path(workdir) / "eval" / "samples.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
