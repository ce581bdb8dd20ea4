"""What every trainer shares: device, threads, seeding, the run folder, checkpoints and outputs.

One convention for every method:

* **Device**: ``auto`` = CUDA when available, else CPU. **Threads**: ``num_threads: 0`` leaves
  torch's default, ``n > 0`` sets it.
* **Seeding**: python, numpy and torch are seeded with the run's seed before the model is
  built; trainers draw their per-epoch randomness from seeded generators.
* **Resume**: a checkpoint holds the trainer's state plus every RNG state and the *resume
  hash*: the hash of the resolved config without the trainer's execution-only keys (how a
  run executes, not what it computes). A checkpoint resumes only under the same resume hash;
  its RNG states are restored once the model is rebuilt, so a resumed run ends with the metrics
  of an uninterrupted one.
* **Done**: a run is finished when its ``metrics.json`` records the same resume hash; running
  it again changes nothing (unless its model.pt or ranks.npz was removed: its final checkpoint is then
  tested again to write them, :meth:`RunFolder._rewrite_lost_outputs`).
* **Data**: the prepared data set's fingerprint (``stats.json``) is part of the resume hash and of
  ``metrics.json``; a run config written for other data (its ``data_fingerprint``), or a checkpoint
  of other data, is refused with the reason. So are the fingerprints of the runs and files a run
  reads (an ID model feeding Laser, LlamaRec's retriever, KAR's knowledge file; each config class
  declares them: ``INPUT_RUNS``, ``INPUT_FILES``, ``INPUT_DATASETS``; :mod:`laser_repro.train.inputs`).
* **Retest**: a config may name *test keys* (``test_keys()``: keys that change only which users the
  final test ranks, such as Laser's ``max_eval_users`` under a validation cap). A finished run whose
  config differs from this one only there is not stale: its selected model (the final checkpoint) is
  tested on this config's users, the ranks of users it already tested kept (``OpenedRun.retest``). Where its
  outputs are gone (the workflow removes a job's outputs before rerunning it), its checkpoint, which records
  the training apart from the test keys (``training_hash``), resumes: the run ends by testing this config's users.
* **Stale state**: a checkpoint or metrics.json of another config or data is refused; with
  ``replace_stale`` (the workflow's ``--replace-stale``) it is set aside in ``stale/<its resume hash>/`` and the
  run starts over; it is taken back when that config returns (``RunFolder._stale``, ``_restore``).
* **One writer**: a session holds an exclusive lock on ``{run}/.lock``; a second trainer on the
  same folder is refused (the lock dies with its process). A session that takes the lock removes the
  temporary files a killed session left mid-write (checkpoint, model, metrics, ranks and the files a trainer names
  as its own, e.g. an ID model's text features; see ``io.stale_temporaries``).
* **Finite losses**: a non-finite training loss stops the run with :class:`NonFiniteLoss`; the
  last good checkpoint (the previous epoch's) is kept.
* **Outputs**: ``metrics.json`` (with provenance, see :mod:`laser_repro.runinfo`), ``ranks.npz``
  and ``model.pt`` are written atomically at the end, ``train.log`` appended to.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import functools
import logging
import math
import os
import random
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from laser_repro.config import from_dict, to_dict
from laser_repro.data.dataset import DataChanged, SeqDataset, data_fingerprint, load_dataset
from laser_repro.eval.evaluator import EvalResult, save_ranks
from laser_repro.io import atomic_path, read_json, stale_temporaries
from laser_repro.runinfo import (config_hash, device_description, git_commit, is_ours, log_formatter, provenance,
                                 run_log, write_metrics)
from laser_repro.train.inputs import INPUT_KINDS, MODEL_FILE, declared_inputs

log = logging.getLogger("laser_repro.train")

CHECKPOINT, LOG_FILE, METRICS_FILE, RANKS_FILE = "checkpoint.pt", "train.log", "metrics.json", "ranks.npz"
STALE_DIR = "stale"  # a run folder's results of an earlier config, set aside (RunFolder._stale)
TRAINING_HASH_FILE = "training_hash"  # in a set-aside folder: its checkpoint's training hash (RunFolder._aside_of_training)
WRITER_FILES = (CHECKPOINT, MODEL_FILE, METRICS_FILE, RANKS_FILE)  # written only by the session holding the lock


class NonFiniteLoss(ValueError):
    """The training loss became NaN or infinite: the run stops, its last good checkpoint kept."""


class StaleRun(ValueError):
    """A run folder holds a checkpoint or results of another run config or data set."""


def validated(cfg):
    """Re-check a run config built in code as a YAML file is checked (types, ranges, cross-field rules)."""
    return from_dict(type(cfg), to_dict(cfg))


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda if available else cpu (said loudly when the job was given a GPU torch cannot see: a 7B
    backbone would crawl on the CPU); anything else must exist on this machine."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        given = os.environ.get("CUDA_VISIBLE_DEVICES", "")
        if given not in ("", "-1", "NoDevFiles"):
            log.warning("device auto: this job was given GPU(s) %s (CUDA_VISIBLE_DEVICES), but torch %s sees none: "
                        "running on the CPU; set device: cuda to make such a job fail instead", given, torch.__version__)
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"device: {name!r} is not a torch device ({err}); use auto, cpu or cuda[:N]") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device: {name!r} requested, but this torch ({torch.__version__}) sees no CUDA GPU; "
                             "use device: auto or cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device: {name!r}, but only {torch.cuda.device_count()} CUDA device(s) exist")
        if device.index is not None:
            torch.cuda.set_device(device)  # the run's GPU is the current one: its generator is what checkpoints hold
    return device


def cpu_has_bf16() -> bool:
    """This CPU computes bf16 matmuls natively (AVX512-BF16 / AMX), so autocast pays off."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def cpu_autocast(precision: str, device: torch.device) -> bool:
    """Whether a forward pass runs under bf16 autocast on CPU (``precision``: auto | fp32 | bf16)."""
    if device.type != "cpu" or precision == "fp32":
        return False
    return precision == "bf16" or cpu_has_bf16()


FP32_ATTENTION = "sdpa_fp32"  # the attention implementation fp32_attention registers


def _sdpa_fp32(module, query, key, value, attention_mask, **kwargs):
    """Hugging Face's SDPA attention, computed in fp32 outside autocast (the output in the input dtype)
    when gradients are on; without them (item refresh, evaluation) bf16 SDPA is the faster one."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if not torch.is_grad_enabled():
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    dtype = query.dtype
    with torch.autocast("cpu", enabled=False):
        if attention_mask is not None and attention_mask.is_floating_point():
            attention_mask = attention_mask.float()
        out, weights = sdpa_attention_forward(module, query.float(), key.float(), value.float(), attention_mask,
                                              **kwargs)
    return out.to(dtype), weights


def fp32_attention(model) -> bool:
    """Run the attention of a Hugging Face ``model`` in fp32 under CPU bf16 autocast; True if switched.

    torch's CPU SDPA is slow in bf16: a forward + backward step took 2.8x (tiny Llama), 1.2x (MiniLM)
    and 1.1x (SmolLM2) as long as with fp32 attention, which is also closer to an all-fp32 forward
    (``benchmarks/cpu_attention.md``). Without gradients it is the other way round (a padded no-grad
    forward, 16 x 256 tokens: MiniLM 1.8x, SmolLM2 1.5x faster in bf16), so the swap applies only
    while grad is enabled. The matmuls of the rest of the model stay in bf16. Models whose attention
    is not swappable (remote code) are left as they are.
    """
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    config = getattr(model, "config", None)
    if getattr(config, "_attn_implementation", None) != "sdpa" or not hasattr(model, "set_attn_implementation"):
        return False
    AttentionInterface.register(FP32_ATTENTION, _sdpa_fp32)
    AttentionMaskInterface.register(FP32_ATTENTION, sdpa_mask)
    model.set_attn_implementation(FP32_ATTENTION)
    return config._attn_implementation == FP32_ATTENTION


def check_loss(loss: torch.Tensor, where: str) -> None:
    """Stop the run on a non-finite loss (``where`` names the epoch and step)."""
    value = float(loss.detach())
    if not math.isfinite(value):
        raise NonFiniteLoss(f"{where}: the training loss is {value}; stopping (the last good checkpoint is kept). "
                            "Lower the learning rate or check the data")


def decay_groups(model: torch.nn.Module, weight_decay: float, no_decay: Sequence[str]) -> list[dict]:
    """Optimiser groups as the BERT-era official codes build them: ``weight_decay`` on every parameter whose name
    contains none of ``no_decay``, 0 on the rest (RECFORMER: biases and LayerNorms; LRURec: biases, layer_norm)."""
    named = list(model.named_parameters())
    return [{"params": [p for n, p in named if not any(k in n for k in no_decay)], "weight_decay": weight_decay},
            {"params": [p for n, p in named if any(k in n for k in no_decay)], "weight_decay": 0.0}]


def set_threads(num_threads: int) -> None:
    """``0`` leaves torch's default; ``n > 0`` uses n CPU threads."""
    if num_threads and num_threads > 0:
        torch.set_num_threads(num_threads)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """The generators' states; on CUDA only the current device's, the run's (:func:`resolve_device` makes it
    current): a run uses one GPU, and a resume on a node that shows another number of GPUs must still fit."""
    out = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state()
    return out


def set_rng_state(state: dict) -> None:
    """Restore :func:`rng_state`'s states. A checkpoint before 2026-12-07 holds every visible GPU's state (a list):
    the current device's is restored when that device was among them, else the CUDA generator keeps its seed."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    cuda = state.get("cuda")
    if cuda is None or not torch.cuda.is_available():
        return
    if isinstance(cuda, (list, tuple)):
        index = torch.cuda.current_device()
        if index >= len(cuda):
            log.warning("the checkpoint's CUDA generator states cover %d GPU(s), not device %d: its stream restarts",
                        len(cuda), index)
            return
        cuda = cuda[index]
    torch.cuda.set_rng_state(cuda)


def config_changes(then: dict, now: dict, ignore: Sequence[str] = (), limit: int = 6) -> list[str]:
    """``key: then-value (now now-value)`` for each dotted key whose value differs between two run configs (at most
    ``limit``, then how many more), leaving out the ``ignore`` keys."""
    def flat(d: dict, prefix: str = "") -> dict:
        out = {}
        for k, v in d.items():
            if prefix or k not in ignore:
                out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) and v else {f"{prefix}{k}": v})
        return out

    a, b = flat(then), flat(now)
    changed = [f"{k}: {a.get(k, '(unset)')!r} (now {b.get(k, '(unset)')!r})" for k in sorted(set(a) | set(b))
               if a.get(k, "(unset)") != b.get(k, "(unset)")]
    return changed[:limit] + ([f"{len(changed) - limit} more"] if len(changed) > limit else [])


def resume_hash(config: dict, execution_keys: Sequence[str]) -> str:
    """Hash of the config without ``execution_keys``: a checkpoint resumes only under the same one."""
    return config_hash({k: v for k, v in config.items() if k not in execution_keys})


def save_torch(path: Path, blob: dict) -> None:
    """``torch.save`` atomically, the same bytes for the same content: saved through a file handle, torch names the
    archive's root folder "archive" instead of after the temporary file's random name, so a file's digest
    (:func:`input_fingerprints`) survives a bit-identical retraining."""
    with atomic_path(path, suffix=".pt") as tmp, open(tmp, "wb") as f:
        torch.save(blob, f)


def load_torch(path: Path, what: str, keys: Sequence[str] = (), map_location: Any = "cpu",
               weights_only: bool = False) -> Any:
    """``torch.load`` of ``path``, which must be ``what`` (e.g. "a train-laser run's model.pt") holding ``keys``: a
    damaged file (a partial copy) or one of another kind stops with an error naming the file and what was
    expected, not torch's own ("failed finding central directory") or a bare KeyError."""
    try:
        blob = torch.load(path, map_location=map_location, weights_only=weights_only)
    except FileNotFoundError:
        raise
    except Exception as err:  # noqa: BLE001 (zip, pickle and EOF errors of a damaged file)
        raise ValueError(f"{path}: cannot be read as {what} ({type(err).__name__}: {err}); if it is damaged (a "
                         "partial copy), replace it, or move it away to compute it again") from None
    missing = [k for k in keys if not (isinstance(blob, dict) and k in blob)]
    if missing:
        raise ValueError(f"{path}: not {what} (it has no {', '.join(map(repr, missing))})")
    return blob


def save_checkpoint(path: Path, blob: dict) -> None:
    """Write a checkpoint atomically (a kill mid-write leaves the previous one)."""
    save_torch(path, blob)


class RunFolder:
    """One run's folder and the resume contract (see the module docstring).

    ``config`` is the resolved run config; ``data_fingerprint`` the prepared data set's (it
    replaces the config's own ``data_fingerprint`` key, which is checked against it first);
    ``inputs`` the fingerprints of the run's other inputs (:func:`input_fingerprints`).
    """

    def __init__(self, out_dir: str | Path, config: dict, execution_keys: Sequence[str],
                 data_fingerprint: str | None = None, replace_stale: bool = False,
                 inputs: dict[str, str] | None = None, test_keys: Sequence[str] = ()):
        self.path = Path(out_dir)
        written_for = config.get("data_fingerprint")
        if written_for and data_fingerprint and written_for != data_fingerprint:
            raise StaleRun(f"{config.get('dataset')}: the data set's fingerprint is {data_fingerprint}, but this run "
                           f"config was written for {written_for} (the data was re-prepared since); rewrite the run "
                           "config (the workflow does) or set data_fingerprint to null")
        self.config = {**config, "data_fingerprint": data_fingerprint}
        if inputs:  # runs without other inputs keep the config (and hashes) they always had
            self.config["input_fingerprints"] = dict(inputs)
        self.data_fingerprint = data_fingerprint
        self.execution_keys = tuple(execution_keys)
        self.replace_stale = replace_stale
        self.config_hash = config_hash(self.config)
        self.resume_hash = resume_hash(self.config, self.execution_keys)
        self.test_keys = tuple(test_keys)
        # the training alone (test keys left out): a checkpoint of it resumes under any test keys
        self.training_hash = resume_hash(self.config, self.execution_keys + self.test_keys) if test_keys else None
        # the test keys' values the training ran under (carried in its checkpoints; see training_config)
        self.trained_with = {k: self.config.get(k) for k in self.test_keys}
        self.sessions: list[dict] = []  # where and with which code each session of this run ran (begin_session)
        self.rewriting: dict | None = None  # the record of a finished run whose lost outputs are being rewritten

    @property
    def checkpoint_path(self) -> Path:
        return self.path / CHECKPOINT

    def finished(self) -> dict | None:
        """The metrics.json record when this run (same resume hash) is already complete.

        A metrics.json of another config or data is refused (or set aside with ``replace_stale``, and this
        config's results, set aside before, taken back with their checkpoint).
        """
        path = self.path / METRICS_FILE
        if path.exists():
            record = read_json(path)
            why = self.stale_reason(record)
            if why is None:
                self._restore((MODEL_FILE, RANKS_FILE), whole=False)  # a set-aside killed after moving them
                return None if self._rewrite_lost_outputs() else record
            self._stale(path, why, ours=is_ours(record), tag=record.get("resume_hash") if is_ours(record) else None)
        aside = self.path / STALE_DIR / self.resume_hash[:16]
        if self.replace_stale and all((aside / n).exists() for n in (MODEL_FILE, RANKS_FILE, METRICS_FILE)):
            self._set_aside_checkpoint()  # another config's: its results and checkpoint stay together
            if self._restore((CHECKPOINT, MODEL_FILE, RANKS_FILE, METRICS_FILE)):
                record = read_json(path)
                return record if self.stale_reason(record) is None else None
        return None

    def _rewrite_lost_outputs(self) -> bool:
        """Whether a finished run's model.pt or ranks.npz is gone (removed by hand) while its final checkpoint is
        here: the run then tests that checkpoint again, which writes them and the record (the same metrics on the
        machine and settings it ran on; a trainer that refuses the checkpoint leaves the record: ``rewriting``,
        :func:`run_trainer`). Without the checkpoint the record stands, with a warning: nothing is trained again
        unasked."""
        lost = [n for n in (MODEL_FILE, RANKS_FILE) if not (self.path / n).exists()]
        if not lost:
            return False
        try:
            blob = load_torch(self.checkpoint_path, "a checkpoint") if self.checkpoint_path.exists() else None
        except ValueError:  # damaged: never read further here
            blob = None
        ours = is_ours(blob) and blob.get("resume_hash") == self.resume_hash  # not a foreign or another config's
        if ours:
            log.warning("%s: finished, but its %s is gone; testing the final checkpoint again to write it", self.path,
                        " and ".join(lost))
            self.rewriting = read_json(self.path / METRICS_FILE)
            return True
        log.warning("%s: finished, but its %s is gone and no checkpoint of this run is left to write it from; the "
                    "record stands (remove its metrics.json to train the run again)", self.path, " and ".join(lost))
        return False

    def _set_aside_checkpoint(self) -> None:
        """Set the run folder's checkpoint aside when it is another config's (:meth:`_stale`)."""
        if not self.checkpoint_path.exists():
            return
        blob = self._own_checkpoint()
        if blob.get("resume_hash") != self.resume_hash:
            self._stale(self.checkpoint_path, self._why(blob, "checkpoint"), tag=blob.get("resume_hash"),
                        training=blob.get("training_hash"))

    def _own_checkpoint(self) -> dict:
        """The run folder's checkpoint, refused (never set aside) when this suite did not write it."""
        blob = load_torch(self.checkpoint_path, "a checkpoint")
        if not is_ours(blob):
            self._stale(self.checkpoint_path, "not a checkpoint this suite wrote (expected a dict with a resume_hash)",
                        ours=False)
        return blob

    def stale_reason(self, record: Any) -> str | None:
        """Why a metrics.json ``record`` does not answer this run (other config, data or inputs); None if it does."""
        if not is_ours(record):
            return FOREIGN
        return None if record.get("resume_hash") == self.resume_hash else self._why(record, "results")

    def retest_source(self) -> tuple[dict, dict] | None:
        """``(record, checkpoint)`` of a finished run in this folder that trained exactly this run and differs
        only in its test keys, with the final checkpoint of that run (its selected model); else None."""
        path = self.path / METRICS_FILE
        if not self.test_keys or not path.exists() or not self.checkpoint_path.exists():
            return None
        record = read_json(path)
        theirs = record.get("resume_hash") if isinstance(record, dict) else None
        if not theirs or theirs == self.resume_hash or not self._only_test_keys_differ(record):
            return None
        blob = load_torch(self.checkpoint_path, "a checkpoint")
        # the finished run's final checkpoint, or one a retest killed before its metrics.json went already moved (to
        # this config's hash, or to a third test cap's: the same training either way)
        if not (isinstance(blob, dict) and (blob.get("resume_hash") in (theirs, self.resume_hash) or (
                self.training_hash is not None and blob.get("training_hash") == self.training_hash))):
            return None
        self.trained_with = blob.get("trained_with") or self._trained_with_before(record)
        self.sessions = self._sessions_of(blob)
        return record, blob

    def _trained_with_before(self, record: dict) -> dict:
        """The test keys' values of a finished run whose checkpoint predates ``trained_with``: its model.pt's config
        (a retest never rewrites model.pt), else its metrics.json's."""
        config = record.get("config") or {}
        model = self.path / MODEL_FILE
        if model.exists():
            config = (load_torch(model, "a run's model.pt") or {}).get("config") or config
        return {k: config.get(k) for k in self.test_keys}

    def _only_test_keys_differ(self, record: dict) -> bool:
        """Whether a finished run's ``record`` trained exactly this run (its config differs at most in test keys)."""
        keys = self.execution_keys + self.test_keys
        return bool(self.test_keys) and "config" in record and (
            resume_hash(record["config"], keys) == resume_hash(self.config, keys))

    def _why(self, blob: dict, what: str) -> str:
        their_data, theirs = recorded_fingerprints(blob)
        if their_data and self.data_fingerprint and their_data != self.data_fingerprint:
            return (f"{what} of the data set with fingerprint {their_data}; the data set now has "
                    f"{self.data_fingerprint} (re-prepared since)")
        ours = self.config.get("input_fingerprints") or {}
        changed = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
        if changed and (theirs or "input_fingerprints" in blob):
            return f"{what} computed from other inputs ({', '.join(changed)} changed since)"
        if self._only_test_keys_differ(blob):
            if self.retest_source() is not None:
                return (f"{what} of this very training with other {', '.join(self.test_keys)}: a retest is pending "
                        "(run the trainer again: it tests the selected model on this config's users, no training)")
            return (f"{what} of this very training with other {', '.join(self.test_keys)}, which cannot be retested: "
                    f"its final checkpoint ({self.checkpoint_path.name}) is missing or belongs to another run")
        then = blob.get("config") or {}
        seed = then.get("seed", blob.get("seed"))
        detail = [] if seed is None else [f"seed {seed}"]
        if set(then) - {"seed"}:  # a checkpoint before 2026-12-07 recorded its seed alone
            changes = config_changes(then, self.config, self.execution_keys + ("input_fingerprints", "data_fingerprint"))
            detail += [f"it had {'; '.join(changes)}"] if changes else []
        return f"{what} of a different run config" + (f" ({', '.join(detail)})" if detail else "")

    def _stale(self, path: Path, why: str, ours: bool = True, tag: Any = None, training: Any = None) -> None:
        """Refuse the stale ``path``, or with ``replace_stale`` set it aside (metrics.json with its model and
        ranks) in ``stale/<its resume hash>/``, from where :meth:`_restore` takes it back if that config returns:
        a config tried and reverted keeps its training. Kept: the set it makes, the current config's, and one
        holding this very training under other test keys (:meth:`_aside_of_training`); the rest is removed."""
        if not ours:  # never removed, whatever --replace-stale says: the suite did not write it
            raise StaleRun(f"{path}: {why}; move it away or use another --out folder")
        if not self.replace_stale:
            raise StaleRun(f"{path}: {why} (only {list(self.execution_keys)} may change between sessions); "
                           "delete it, use another --out folder, or pass --replace-stale to start over")
        # its model and ranks go with metrics.json (first: a kill in between leaves the stale record, handled
        # again next time, never them alone)
        names = ([MODEL_FILE, RANKS_FILE] if path.name == METRICS_FILE else []) + [path.name]
        if not (isinstance(tag, str) and re.fullmatch(r"[0-9a-f]{16,}", tag)):  # no hash to come back under
            log.warning("%s: %s; removing it and starting over", path, why)
            for name in names:
                (self.path / name).unlink(missing_ok=True)
            return
        aside = self.path / STALE_DIR / tag[:16]
        log.warning("%s: %s; setting it aside in %s (taken back if this config returns) and starting over", path,
                    why, aside.relative_to(self.path))
        aside.mkdir(parents=True, exist_ok=True)
        if isinstance(training, str):  # the training apart from test keys: another test cap finds it
            (aside / TRAINING_HASH_FILE).write_text(training)
        for name in names:
            if (self.path / name).exists():
                os.replace(self.path / name, aside / name)
        keep = {aside, self.path / STALE_DIR / self.resume_hash[:16], self._aside_of_training()}
        for old in (self.path / STALE_DIR).iterdir():  # the set just made, the current config's, its training's
            if old.is_dir() and old not in keep:
                shutil.rmtree(old)

    def _aside_of_training(self) -> Path | None:
        """A set-aside folder holding a checkpoint of this very training under other test keys (None: none)."""
        if self.training_hash is None or not (self.path / STALE_DIR).is_dir():
            return None
        for folder in sorted((self.path / STALE_DIR).iterdir()):
            marker = folder / TRAINING_HASH_FILE
            if (folder / CHECKPOINT).exists() and marker.exists() and marker.read_text() == self.training_hash:
                return folder
        return None

    def _restore(self, names: Sequence[str], whole: bool = True, aside: Path | None = None) -> bool:
        """Move this config's files set aside by :meth:`_stale` back. ``whole``: only when the last of ``names``
        (which marks them complete) is there and the run folder lacks it; a model or ranks file in the folder is then
        replaced (another config's, stranded by a killed session), a checkpoint kept (the caller has set another
        config's aside). Otherwise only the files the folder lacks come back. Whether anything came back."""
        aside = aside or self.path / STALE_DIR / self.resume_hash[:16]
        if whole and (not (aside / names[-1]).exists() or (self.path / names[-1]).exists()):
            return False
        moved = [name for name in names if (aside / name).exists()
                 and ((whole and name in (MODEL_FILE, RANKS_FILE)) or not (self.path / name).exists())]
        for name in moved:
            os.replace(aside / name, self.path / name)
        if not moved:
            return False
        if not any(p.name != TRAINING_HASH_FILE for p in aside.iterdir()):
            shutil.rmtree(aside)
        log.info("%s: took back %s, set aside when this run's config last changed", self.path,
                 names[-1] if whole else ", ".join(moved))
        return True

    def load_checkpoint(self) -> dict | None:
        """The checkpoint of this run, or None; refuses another config's.

        The trainer rebuilds its model first, then calls :func:`set_rng_state` with ``blob["rng"]``
        (building a model draws random numbers that the uninterrupted run drew before the checkpoint).
        """
        if not self.checkpoint_path.exists() and not self._restore((CHECKPOINT,)) and not (
                (other := self._aside_of_training()) and self._restore((CHECKPOINT,), aside=other)):
            return None
        blob = self._own_checkpoint()
        if blob.get("resume_hash") != self.resume_hash:
            if self.training_hash is not None and blob.get("training_hash") == self.training_hash:
                # the workflow removed the finished run's outputs before rerunning it with other test keys: the
                # training stands, and its run ends by testing this config's users
                log.info("%s: checkpoint of this very training with other %s; resuming it (the final test ranks "
                         "this config's users)", self.checkpoint_path, ", ".join(self.test_keys))
                self.trained_with = blob.get("trained_with", self.trained_with)
                self.sessions = self._sessions_of(blob)
                return blob
            self._stale(self.checkpoint_path, self._why(blob, "checkpoint"), tag=blob.get("resume_hash"),
                        training=blob.get("training_hash"))
            other = self._aside_of_training()
            restored = self._restore((CHECKPOINT,)) or (other is not None and self._restore((CHECKPOINT,), aside=other))
            return self.load_checkpoint() if restored else None
        self.trained_with = blob.get("trained_with", self.trained_with)
        self.sessions = self._sessions_of(blob)
        return blob

    def begin_session(self, device: Any) -> None:
        """Record this session (its device and code) after those of the checkpoint it resumes: metrics.json lists
        them all, and a run whose sessions ran on other devices or code says so."""
        now = {"device": device_description(device), "git_commit": git_commit(),
               "started_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        if len({(x.get("device"), x.get("git_commit")) for x in self.sessions + [now]}) > 1:
            log.warning("%s: this run resumes a checkpoint written on %s; its results mix sessions (metrics.json "
                        "lists them under `sessions`)", self.path, ", ".join(
                            f"{x.get('device')} at commit {str(x.get('git_commit'))[:10]}" for x in self.sessions))
        self.sessions = self.sessions + [now]

    def _sessions_of(self, blob: dict) -> list[dict]:
        """The sessions a checkpoint records (one of unknown device and code for a checkpoint before 2026-12-07)."""
        return list(blob["sessions"]) if "sessions" in blob else [{"device": "unknown (checkpoint before "
                                                                   "sessions were recorded)", "git_commit": "unknown"}]

    def training_config(self) -> dict:
        """The resolved config the training ran under: this run's, with the test keys' values it was trained
        with, without its execution keys. A model.pt records it, so a retest (other test users) or a rerun under
        other execution settings (batch sizes, device, cache) writes the same bytes: runs that start from it
        (``INPUT_RUNS``, fingerprinted by its digest) stay current."""
        return {k: v for k, v in {**self.config, **self.trained_with}.items() if k not in self.execution_keys}

    def save_checkpoint(self, **blob: Any) -> None:
        save_checkpoint(self.checkpoint_path, {**blob, "resume_hash": self.resume_hash, "rng": rng_state(),
                                               "training_hash": self.training_hash, "trained_with": self.trained_with,
                                               "sessions": self.sessions,
                                               "data_fingerprint": self.data_fingerprint,
                                               "input_fingerprints": self.config.get("input_fingerprints", {}),
                                               "config": self.config})  # a stale one then says what changed

    def write_ranks(self, results: dict[str, EvalResult]) -> None:
        save_ranks(self.path / RANKS_FILE, results)

    def write_model(self, blob: dict) -> None:
        """Write model.pt (:func:`save_torch`: the same bytes for the same weights)."""
        save_torch(self.path / MODEL_FILE, blob)

    def write_metrics(self, record: dict, device: Any) -> dict:
        """Add provenance, the resume hash and the folder it is written to (so a copy elsewhere is told apart:
        ``artifacts.runs.misplaced``) to ``record``; write metrics.json atomically."""
        record = {**record, **provenance(self.config, device), "sessions": self.sessions, "resume_hash": self.resume_hash,
                  "data_fingerprint": self.data_fingerprint, "run_folder": str(self.path.absolute())}
        write_metrics(self.path, record)
        return record

    def write_outputs(self, results: dict[str, EvalResult], model: dict, record: dict, device: Any) -> dict:
        """The end of every run: ``ranks.npz``, ``model.pt``, then ``metrics.json``: ``record`` plus each
        split's metrics (with its user count ``n``). Returns the record written."""
        self.write_ranks(results)
        self.write_model(model)
        return self.write_metrics({**record, **{split: r.metrics for split, r in results.items()}}, device)


FOREIGN = "not a metrics.json this suite wrote (expected a JSON object with a resume_hash)"


def check_numerics(checkpoint: dict, now: dict, path: Path) -> None:
    """Refuse to resume a checkpoint written under other numerics than this session's ``now`` (a 4-bit base model
    or not, bf16 autocast or not): ``device``, ``precision: auto`` and ``quantize: auto`` resolve by machine, and
    weights trained on one model's numbers would go on training on another's. Checkpoints written before
    2026-12-07 record none and resume as before."""
    then = checkpoint.get("numerics")
    if then is not None and then != now:
        raise ValueError(f"{path}: written under {then}; this session would run {now}: resume it on a machine and "
                         "settings that give the same (or remove it to train the run again)")


def recorded_fingerprints(blob: dict) -> tuple[str | None, dict[str, str]]:
    """The data set's fingerprint and the input fingerprints (:func:`input_fingerprints`) that a checkpoint or a
    metrics.json ``blob`` was computed from (either may sit at the top or in its ``config``)."""
    config = blob.get("config") or {}
    return (blob.get("data_fingerprint") or config.get("data_fingerprint"),
            config.get("input_fingerprints", blob.get("input_fingerprints")) or {})


def outdated(record: dict) -> str | None:
    """Why a finished run's metrics.json ``record`` no longer answers the data and inputs now on disk (its data set
    re-prepared, an upstream run retrained, an input file changed: what :func:`input_fingerprints` recorded); None
    when they match or cannot be checked here (a data set or input absent, as on a machine holding results alone).
    The trainer's own check (:meth:`RunFolder.stale_reason`) needs the run's config; this one needs only the record."""
    config = record.get("config") if isinstance(record.get("config"), dict) else {}
    data, inputs = recorded_fingerprints(record)
    dataset = config.get("dataset")
    try:
        if data and isinstance(dataset, str) and (Path(dataset) / "stats.json").exists():
            now = data_fingerprint(dataset)
            if now != data:
                return f"its data set {dataset} was re-prepared since (fingerprint {now}; the run read {data})"
        changed = []
        for key, digest in inputs.items():
            now = _fingerprint_now(_recorded_input(config, key))
            if now is not None and now != digest:
                changed.append(key)
    except DataChanged as err:  # a data set it read was edited by hand since
        return str(err)
    return f"computed from other inputs ({', '.join(changed)} changed since)" if changed else None


def _recorded_input(config: dict, key: str) -> Any:
    """The value of an :func:`input_fingerprints` key (dotted, ``pretrain_datasets[1]``) in a recorded config."""
    name, _, index = key.partition("[")
    value: Any = config
    for part in name.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if index:
        i = int(index.rstrip("]"))
        value = value[i] if isinstance(value, list) and i < len(value) else None
    return value


def _fingerprint_now(value: Any) -> str | None:
    """The fingerprint :func:`input_fingerprints` takes of an input path as it is now: a prepared data set's, a
    run's model.pt digest, a file's digest; None when the path is absent or not one of those."""
    if not isinstance(value, str) or not value:
        return None
    path = Path(value)
    if (path / "stats.json").exists():
        return data_fingerprint(path)
    file = path / MODEL_FILE if (path / MODEL_FILE).exists() else path if path.is_file() else None
    if file is None:
        return None
    return cached_digest(file)


def cached_digest(path: Path) -> str:
    """:func:`file_digest`, computed once per version (path, mtime, size) of the file in a process: an artifact
    checks many runs of one upstream model."""
    stat = path.stat()
    return _digest_of_version(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=256)
def _digest_of_version(path: str, mtime_ns: int, size: int) -> str:
    return file_digest(Path(path))


def file_digest(path: Path) -> str:
    """A file's short fingerprint: the first 16 hex digits of its sha256 (``data.download.sha256_of``)."""
    from laser_repro.data.download import sha256_of

    return sha256_of(Path(path))[:16]


def recorded_config(cls, record: dict):
    """The ``cls`` run config a finished run recorded (``metrics.json``'s ``config``), without the
    input fingerprints the trainer added to it (:func:`input_fingerprints`)."""
    return from_dict(cls, {k: v for k, v in record["config"].items() if k != "input_fingerprints"})


def input_fingerprints(cfg) -> dict[str, str]:
    """Fingerprints of the inputs :func:`declared_inputs` lists that exist: runs and files by the sha256 of the
    file (so a retrained upstream run counts as changed even under the same config), data sets by their
    fingerprint. They join the resume contract, so a run never outlives a change of an input (a retrained ID
    model, a regenerated knowledge file): its checkpoint and results become stale. The trainer refuses a run
    whose inputs are missing (:func:`check_inputs`); artifacts read a missing one as "cannot be checked"."""
    out: dict[str, str] = {}
    for key, path, kind in declared_inputs(cfg):
        if path.is_file():
            out[key] = data_fingerprint(path.parent) if kind == "dataset" else cached_digest(path)
    return out


def check_inputs(cfg) -> None:
    """Refuse a run whose named inputs are missing, before its folder is read: an absent input would drop out of
    the resume contract and make the finished run look computed from other inputs (``--replace-stale`` then
    removed it, and the trainer failed on the missing file after that)."""
    named = declared_inputs(cfg)
    if getattr(cfg, "dataset", None):  # the run's own data set first (a raw folder, a typo, a relative path)
        named = [("dataset", Path(cfg.dataset) / "stats.json", "dataset"), *named]
    missing = [f"{key}: {path} is missing (expected {INPUT_KINDS[kind]}"
               + ("" if path.is_absolute() else f"; a relative path is read from {Path.cwd()}") + ")"
               for key, path, kind in named if not path.is_file()]
    missing += [f"{key}: {path.parent} has a {path.name} but no metrics.json a trainer wrote (expected "
                f"{INPUT_KINDS[kind]}: a run killed between its two writes, or a model.pt copied in; run its "
                "trainer on that folder to finish it)"
                for key, path, kind in named if kind == "run" and path.is_file() and not _finished(path.parent)]
    if missing:
        raise FileNotFoundError("; ".join(missing) + "; nothing in the run folder was read or changed")


def _finished(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a metrics.json one of the suite's trainers wrote (its last write: a finished run)."""
    try:
        return is_ours(read_json(run_dir / METRICS_FILE))
    except (OSError, ValueError):
        return False


@dataclass
class OpenedRun:
    """What :func:`open_run` hands a trainer: ``done`` is the finished record (then nothing else is set);
    ``retest`` the record of a finished run to test on this config's users (``checkpoint`` is then its
    final checkpoint: :meth:`RunFolder.retest_source`)."""

    run: RunFolder
    done: dict | None = None
    checkpoint: dict | None = None
    device: torch.device | None = None
    data: SeqDataset | None = None
    retest: dict | None = None


DATASET_REQUIRED = {"dataset": "a prepared data set folder (`laser-repro data prepare`)"}


def run_trainer(cfg, out_dir: str | Path, replace_stale: bool, body: Callable[[Any, OpenedRun], dict],
                required: dict[str, str] = DATASET_REQUIRED, config_of: Callable[[Any], dict] | None = None,
                own_files: tuple[str, ...] = ()) -> dict:
    """One trainer session: validate ``cfg`` (each ``required`` key set; the value says what it must be),
    hold the run folder's lock and log (:func:`run_session`; ``own_files``: the run folder's files this trainer
    writes besides :data:`WRITER_FILES`), open the run (:func:`open_run`; its resume contract is for
    ``config_of(cfg)``, by default the resolved ``cfg``), then ``body(cfg, opened)`` trains and returns
    the metrics record, unless the run is already finished (its record is returned)."""
    cfg = validated(cfg)
    for key, what in required.items():
        if not getattr(cfg, key):
            raise ValueError(f"{key}: missing; set it to {what}")
    check_inputs(cfg)
    with run_session(out_dir, own_files) as out:
        opened = open_run(cfg, out, replace_stale, None if config_of is None else config_of(cfg))
        if opened.done is not None:
            return opened.done
        try:
            return body(cfg, opened)
        except ValueError as err:  # a trainer that refuses the checkpoint (an earlier schedule, other numerics)
            if opened.run.rewriting is None:
                raise
            log.warning("%s: its lost files cannot be written from its checkpoint (%s); the record stands (remove its "
                        "metrics.json to train the run again)", out, str(err).splitlines()[0])
            return opened.run.rewriting


def run_folder(cfg, out_dir: str | Path, replace_stale: bool = False, config: dict | None = None) -> RunFolder:
    """The run folder of ``cfg`` with its resume contract (for ``config``, by default the resolved ``cfg``):
    the data set's fingerprint and the fingerprints of the run's other inputs. Reads, never writes."""
    config = to_dict(cfg) if config is None else config
    # keys added later are left out at their no-op defaults, so runs made before them stay valid
    config = without_neutral(config, getattr(cfg, "HASH_NEUTRAL", {}))
    test_keys = cfg.test_keys() if hasattr(cfg, "test_keys") else ()
    return RunFolder(out_dir, config, getattr(cfg, "EXECUTION_KEYS", ()), data_fingerprint(cfg.dataset),
                     replace_stale, input_fingerprints(cfg), test_keys)


def without_neutral(config: dict, neutral: dict[str, Any]) -> dict:
    """``config`` without each ``neutral`` key (dotted for nested sections: ``bituning.prefix_scale``) that
    holds its no-op value."""
    out = dict(config)
    for key, value in neutral.items():
        head, _, rest = key.partition(".")
        if rest and isinstance(out.get(head), dict):
            out[head] = without_neutral(out[head], {rest: value})
        elif not rest and key in out and out[key] == value:
            del out[key]
    return out


def open_run(cfg, out_dir: Path, replace_stale: bool, config: dict | None = None) -> OpenedRun:
    """The opening every trainer shares: the run folder (the resume contract for ``config``, by default
    the resolved ``cfg``), threads, "already finished", the checkpoint, the seed, the device, the data."""
    run = run_folder(cfg, out_dir, replace_stale, config)
    set_threads(cfg.num_threads)
    source = run.retest_source()
    retest = None
    if source is not None:
        retest, checkpoint = source
        log.info("%s: finished run that differs only in %s found; testing its selected model on this config's "
                 "users", out_dir, ", ".join(run.test_keys))
    else:
        done = run.finished()
        if done is not None:
            log.info("%s: finished run with the same config found; nothing to do", out_dir)
            return OpenedRun(run, done)
        checkpoint = run.load_checkpoint()
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    run.begin_session(device)
    return OpenedRun(run, None, checkpoint, device, load_dataset(cfg.dataset), retest)


@contextlib.contextmanager
def run_lock(out_dir: Path) -> Iterator[None]:
    """Hold ``{out_dir}/.lock`` exclusively; a second holder is refused with who holds it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / ".lock"
    fh = open(path, "a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise ValueError(f"{out_dir}: another trainer is writing this run folder ({holder}); refusing a second "
                             "writer (wait for it, or use another --out)") from None
        except OSError as err:  # a file system without flock (Lustre mounted noflock: ENOSYS; NFS: ENOLCK)
            if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS):
                raise
            log.warning("%s: this file system cannot lock files (%s); going on without the run lock (the workflow "
                        "still runs one job per run folder)", path, err.strerror)
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        fh.flush()
        yield
    finally:
        fh.close()  # releases the lock


@contextlib.contextmanager
def run_session(out_dir: str | Path, own_files: tuple[str, ...] = ()) -> Iterator[Path]:
    """Around one trainer session: the run folder's lock (:func:`run_lock`), and its ``train.log`` receives the
    package's logs. Holding the lock, the session removes (and logs) the temporaries a killed session left for the
    files only the lock's holder writes: :data:`WRITER_FILES` and the trainer's ``own_files``."""
    out_dir = Path(out_dir)
    check_run_folder(out_dir)
    with sigterm_exits(), run_lock(out_dir), run_log(out_dir, LOG_FILE):
        log.info("%s: session started (%s)", out_dir, session_origin())
        for tmp in stale_temporaries(out_dir, WRITER_FILES + tuple(own_files)):  # a killed writer's half-written file
            log.info("%s: removing %s, a temporary file a killed session left", out_dir, tmp.name)
            tmp.unlink()
        try:
            yield out_dir
        except BaseException as exc:  # the job's own log is replaced when Snakemake retries it; train.log stays
            log_end(out_dir / LOG_FILE, exc)
            raise


def check_run_folder(out_dir: Path) -> None:
    """Refuse a ``--out`` that cannot be a run folder: a file, or a prepared data set's folder (a trainer wrote its
    checkpoint, model and metrics into it, and the data set was then refused as holding foreign files)."""
    from laser_repro.data.dataset import MARKER

    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir}: a file; expected a run folder (made if missing)")
    if (out_dir / MARKER).exists() or (out_dir / "interactions.npz").exists():
        raise ValueError(f"--out {out_dir}: a prepared data set's folder; give the run a folder of its own")


def log_end(path: Path, exc: BaseException) -> None:
    """Append how a session ended, with its traceback, to ``path`` (train.log) alone: the console shows the
    error once, as the command's message, without the traceback."""
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, "%s: session ended by %s: %s",
                            (path.parent, type(exc).__name__, exc), (type(exc), exc, exc.__traceback__))
    with contextlib.suppress(OSError), open(path, "a", encoding="utf-8") as f:  # never hides the session's error
        f.write(log_formatter().format(record) + "\n")


def session_origin() -> str:
    """Where a trainer session runs: host, pid and, under SLURM, the job id (a retry is a new job)."""
    import socket

    job = os.environ.get("SLURM_JOB_ID")
    return f"host {socket.gethostname()}, pid {os.getpid()}" + (f", SLURM job {job}" if job else "")


class Terminated(SystemExit):
    """SIGTERM (a SLURM time limit, a cancelled job, Snakemake stopping its jobs) as an exit with status 143."""


@contextlib.contextmanager
def sigterm_exits() -> Iterator[None]:
    """Inside, SIGTERM raises :class:`Terminated`, so that the session logs where it stopped before it exits (its
    outputs are atomic, its checkpoint the last complete one); outside the main thread, nothing changes."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):
        raise Terminated(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
