"""The pretrained models the suite knows by name, without torch (run configs check their names with it).

``HUB``: the paper-scale models (hub id, family, pinned revision); ``OFFLINE``: what loads without a
network (random tiny models built from a config, MiniLM and SmolLM2 from PyPI). ``local:PATH`` names
any model folder. :func:`check_name` refuses any other name when a run config is read, so a typo
fails with the workflow's config, not inside a job.
"""

from __future__ import annotations

from dataclasses import dataclass

from laser_repro.config import ConfigError


@dataclass(frozen=True)
class HubSpec:
    hub_id: str
    family: str  # gpt2 | llama | chatglm2 | bert
    revision: str  # pinned hub revision (override with backbone_revision)
    remote_code: bool = False


HUB: dict[str, HubSpec] = {
    "gpt2-large": HubSpec("openai-community/gpt2-large", "gpt2", "main"),
    "chatglm2-6b": HubSpec("THUDM/chatglm2-6b", "chatglm2", "main", remote_code=True),
    "llama2-7b": HubSpec("meta-llama/Llama-2-7b-hf", "llama", "main"),
}
OFFLINE = ("tiny-gpt2", "tiny-llama", "minilm", "smollm2")
BACKBONES = (*HUB, *OFFLINE)  # laser.backbones.load_backbone (Laser, LLM4REC, LLM text encoders)
CAUSAL_LMS = (*HUB, "tiny-llama", "smollm2")  # llamarec.ranker.load_causal_lm (LlamaRec's ranker, KAR's generator)
GENERATORS = ("template", *CAUSAL_LMS)  # KAR's knowledge generators


def check_name(key: str, value: str, names: tuple[str, ...]) -> None:
    """Refuse ``value`` for run-config ``key`` unless it is one of ``names`` or ``local:PATH``."""
    if value in names or (value.startswith("local:") and len(value) > len("local:")):
        return
    raise ConfigError(f"{key}: unknown name {value!r}; expected one of {list(names)} or local:PATH")
