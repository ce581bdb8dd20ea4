"""KAR's open-world knowledge: factorization prompts, generation, and a versioned cache (Xi et al., 2023).

Prompts are KAR's product variants (its commented-out ones, which suit Amazon data) without the
star ratings the RecFormer format lacks. The user prompt lists the titles of the first
min(ceil(n/2), 15) items of the user's TRAINING part (KAR's history window; never validation or
test items). Generators: ``template`` (deterministic "knowledge" from title, brand, category and
history titles: a labelled stand-in that needs no LLM), or a causal LLM (``smollm2`` offline,
``chatglm2-6b`` at paper scale) decoding greedily.

The texts live in one JSON file per (data set, generator): :class:`KnowledgeStore`. Each entry is
keyed by the sha256 of (generator, prompt version, an LLM's decoding settings, prompt), so a changed
prompt, generator or answer length never reuses a stale text, and an unchanged one is never generated twice: generation saves after
every batch to a working copy beside the file (``<file>.cache``, not a workflow output, so a failed
or rerun job keeps it, as a run keeps its checkpoint), and writes the file itself once complete.
"""

from __future__ import annotations

import hashlib
import logging
import math
from pathlib import Path
from typing import Callable, Sequence

from laser_repro.data.dataset import SeqDataset
from laser_repro.experiment.registry import KNOWLEDGE_PROMPT_VERSION, KNOWLEDGE_WITHOUT_LLM
from laser_repro.io import read_json, write_json

log = logging.getLogger("laser_repro.kar")
ENCODER_MAX_TOKENS = 512  # the official lm_encoding.py: BERT max_length 512 (user texts end with the answer)
PROMPT_VERSION = KNOWLEDGE_PROMPT_VERSION  # part of every text's key (rule kar_knowledge's params: regenerated)
FACTORS = "genre, functionality, quality, price, design, reputation"


def history_window(n: int) -> int:
    """KAR's history length for a training part of ``n`` items: min(ceil(n / 2), 15)."""
    return min(math.ceil(n / 2), 15)


def item_prompt(item: dict) -> str:
    return (f"Introduce product {item.get('title') or ''}, which is from brand {item.get('brand') or 'unknown'} "
            f"and describe its attributes (including but not limited to {FACTORS}).")


def user_prompt(titles: Sequence[str]) -> str:
    hist = "; ".join(f'"{t}"' for t in titles)
    return (f"Given user's product history: {hist}. Analyze user's preferences on product (consider factors like "
            f"{FACTORS}). Provide clear explanations based on relevant details from the user's product viewing "
            "history and other pertinent factors.")


def user_titles(ds: SeqDataset, u: int) -> list[str]:
    seq = ds.train_sequence(u)
    return [str(ds.items[int(i)].get("title") or "") for i in seq[: history_window(seq.shape[0])]]


def template_item(item: dict) -> str:
    return (f"{item.get('title') or ''}. Brand: {item.get('brand') or 'unknown'}. "
            f"Category: {item.get('category') or 'unknown'}.")


def template_user(titles: Sequence[str]) -> str:
    return "Products the user chose: " + "; ".join(titles) + "."


class KnowledgeStore:
    """A JSON file of generated texts keyed by (generator, prompt version, ``decoding``, prompt): ``decoding`` names
    an LLM's settings (:func:`decoding`; the template has none). With ``resume`` (generating), the texts of its
    working copy ``<file>.cache`` are read too; without (a KAR run reading its input), the file's alone."""

    def __init__(self, path: str | Path, generator: str, resume: bool = True, decoding: str = ""):
        self.path, self.generator, self.decoding = Path(path), generator, decoding
        self.cache = self.path.with_name(self.path.name + ".cache")
        self.entries: dict[str, str] = {}
        for source in (self.cache, self.path) if resume else (self.path,):
            if source.exists():
                blob = read_json(source)
                if not isinstance(blob, dict) or not isinstance(blob.get("entries"), dict):
                    raise ValueError(f"{source}: not a knowledge file (expected an object with 'entries')")
                self.entries.update(blob["entries"])

    def key(self, prompt: str) -> str:
        settings = f"{self.decoding}\n" if self.decoding else ""  # none: the keys written before decoding was keyed
        return hashlib.sha256(f"{self.generator}\n{PROMPT_VERSION}\n{settings}{prompt}".encode()).hexdigest()

    def get_many(self, prompts: Sequence[str], generate: Callable[[list[str]], list[str]],
                 batch: int = 16) -> tuple[list[str], int]:
        """Texts for ``prompts``, generating only the missing ones (saved to the working copy after every batch);
        returns (texts, number generated)."""
        missing = [p for p in dict.fromkeys(prompts) if self.key(p) not in self.entries]
        for s in range(0, len(missing), batch):
            chunk = missing[s : s + batch]
            for p, text in zip(chunk, generate(chunk)):
                self.entries[self.key(p)] = text
            self._write(self.cache)
        return [self.entries[self.key(p)] for p in prompts], len(missing)

    def save(self) -> None:
        """Write the file (atomically) and its working copy: every text generated so far."""
        self._write(self.cache)
        self._write(self.path)

    def _write(self, path: Path) -> None:
        settings = {"decoding": self.decoding} if self.decoding else {}  # the template's file keeps its bytes
        write_json(path, {"generator": self.generator, "prompt_version": PROMPT_VERSION, **settings,
                          "entries": self.entries})


def stored_texts(ds: SeqDataset, path: str | Path, generator: str | None = None) -> tuple[list[str], list[str]]:
    """(item texts, user texts) of every item and user from a knowledge file; missing entries are an error, and so is
    a file of another generator than ``generator`` (the run's ``knowledge_generator``, which its stand-in mark and
    Table 2's label read)."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"knowledge_file: {path} not found (write it with `laser-repro kar-knowledge`)")
    blob = read_json(path)
    if generator is not None and blob.get("generator") != generator:
        raise ValueError(f"knowledge_file: {path} was written by generator {blob.get('generator')!r}, but this run's "
                         f"knowledge_generator is {generator!r}; name the file's generator (or generate its file)")
    store = KnowledgeStore(path, str(blob.get("generator")), resume=False, decoding=str(blob.get("decoding") or ""))
    item_p = [item_prompt(it) for it in ds.items]
    user_p = [user_prompt(user_titles(ds, u)) for u in range(ds.n_users)]
    missing = sum(store.key(p) not in store.entries for p in item_p + user_p)
    if missing:
        raise ValueError(f"{path}: {missing} of {len(item_p) + len(user_p)} item/user prompts have no text "
                         f"(generator {store.generator}, prompt version {PROMPT_VERSION}); regenerate the file")
    items = [store.entries[store.key(p)] for p in item_p]
    users = [p.split(". Analyze")[0] + ". " + store.entries[store.key(p)] for p in user_p]
    return items, users


def decoding(generator: str, max_new_tokens: int) -> str:
    """The decoding settings an LLM generator's texts depend on (part of their key); the template has none."""
    return "" if generator in KNOWLEDGE_WITHOUT_LLM else f"greedy, max_new_tokens={max_new_tokens}"


def template_generator(ds: SeqDataset) -> Callable[[list[str]], list[str]]:
    """The stand-in: each prompt's deterministic "knowledge" (no LLM)."""
    by_prompt = {item_prompt(it): template_item(it) for it in ds.items}
    for u in range(ds.n_users):
        titles = user_titles(ds, u)
        by_prompt[user_prompt(titles)] = template_user(titles)
    return lambda prompts: [by_prompt[p] for p in prompts]


def llm_generator(name: str, cache_dir: str | None, device, max_new_tokens: int) -> Callable[[list[str]], list[str]]:
    """Greedy decoding with a causal LLM (the LlamaRec ranker's loader: smollm2, tiny-llama, hub ids). ChatGLM2's
    remote code is decoded by :func:`greedy_decode` (no cache, as the spec's fix 3 asks), the others by ``generate``."""
    import torch

    from laser_repro.laser.backbones import HUB
    from laser_repro.llamarec.ranker import load_causal_lm

    model, tok, _ = load_causal_lm(name, cache_dir, [], "none", device)
    model = model.to(device).eval()  # the loader leaves it on the CPU (bf16 on CUDA); the prompts go to ``device``
    tok.padding_side = "left"
    own_loop = name in HUB and HUB[name].family == "chatglm2"

    @torch.no_grad()
    def generate(prompts: list[str]) -> list[str]:
        batch = tok(prompts, return_tensors="pt", padding=True).to(device)
        if own_loop:
            out = greedy_decode(model, batch["input_ids"], batch["attention_mask"], max_new_tokens,
                                tok.eos_token_id, tok.pad_token_id, return_last_logit=True)  # its 65k-word head, once
        else:
            out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id)
        return [tok.decode(o[batch["input_ids"].shape[1]:], skip_special_tokens=True).strip() for o in out]

    return generate


def greedy_decode(model, ids, mask, max_new_tokens: int, eos_id: int, pad_id: int, **forward_kw):
    """Greedy continuation of left-padded ``ids`` [B, T] (``mask`` 1 on real tokens), recomputing every position
    each step (``use_cache=False``, ``return_dict=True``) with position ids that count real tokens only; a row stops
    at its EOS and is padded with ``pad_id`` after it. Returns ``[B, T + n]`` with the new tokens appended.
    ``forward_kw`` go to every forward call (ChatGLM2: ``return_last_logit``)."""
    import torch

    done = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    for _ in range(max_new_tokens):
        positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False,
                       return_dict=True, **forward_kw).logits[:, -1]
        nxt = torch.where(done, torch.full_like(done, pad_id, dtype=ids.dtype), logits.argmax(-1))
        ids = torch.cat([ids, nxt[:, None]], dim=1)
        mask = torch.cat([mask, (~done).to(mask.dtype)[:, None]], dim=1)
        done |= nxt == eos_id
        if bool(done.all()):
            break
    return ids


def knowledge(ds: SeqDataset, store: KnowledgeStore, generate: Callable[[list[str]], list[str]],
              users: Sequence[int] | None = None) -> tuple[list[str], list[str], int]:
    """(item texts, user texts, generated count): prompt + answer for users (KAR's user text), the answer
    for items. ``users`` limits the user prompts generated (others get an empty text)."""
    item_p = [item_prompt(it) for it in ds.items]
    all_users = range(ds.n_users) if users is None else users
    user_p = {u: user_prompt(user_titles(ds, u)) for u in all_users}
    items, n1 = store.get_many(item_p, generate)
    answers, n2 = store.get_many(list(user_p.values()), generate)
    store.save()  # the file itself, complete
    user_text = [""] * ds.n_users
    for (u, p), a in zip(user_p.items(), answers):
        user_text[u] = p.split(". Analyze")[0] + ". " + a  # KAR: the history part of the prompt + the answer
    return items, user_text, n1 + n2
