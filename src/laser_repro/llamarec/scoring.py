"""LlamaRec's prompt and its composite score on the shared full-ranking evaluator (Yue et al., 2023).

The ranker sees the retriever's top ``k`` (20) candidates, lettered A-T in retriever order, and
scores them by the LLM's last-position logits of the letters. On the shared evaluator every item
gets a score: the retriever's, except that inside the top ``k`` of a user whose target was
retrieved, the letter logit plus a constant above every retriever score of that user. Recall@10
and NDCG@10 then equal LlamaRec's own "overall" metrics (:func:`llamarec_overall`); MRR is the
suite's untruncated one. The LLM runs only for users whose target is in the top ``k``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

LETTERS = "ABCDEFGHIJKLMNOPQRST"
INSTRUCTION = "Given user history in chronological order, recommend an item from the candidate pool with its index letter."


def build_prompt(history: Sequence[str], candidates: Sequence[str]) -> str:
    """The Alpaca-short prompt of the official code: numbered history titles, lettered candidates."""
    if len(candidates) > len(LETTERS):
        raise ValueError(f"at most {len(LETTERS)} candidates (letters A-T), got {len(candidates)}")
    hist = " \n ".join(f"({i + 1}) {t}" for i, t in enumerate(history))
    pool = " \n ".join(f"({LETTERS[i]}) {t}" for i, t in enumerate(candidates))
    return (f"### Instruction:\n{INSTRUCTION}\n\n### Input:\nUser history: {hist}; \n Candidate pool: {pool}\n\n"
            "### Response:\n")


def composite_scores(retriever: torch.Tensor, top: torch.Tensor, letter_logits: torch.Tensor | None,
                     retrieved: torch.Tensor) -> torch.Tensor:
    """Scores ``[B, n_items]``: the retriever's, with the top-``k`` items of ``retrieved`` rows re-scored by
    their letter logits above every retriever score of the row (``top`` ``[B, k]`` in retriever order,
    ``letter_logits`` ``[B, k]``, ``retrieved`` ``[B]`` bool)."""
    out = retriever.clone().float()
    if letter_logits is None or not bool(retrieved.any()):
        return out
    rows = torch.nonzero(retrieved).flatten()
    logits = letter_logits[rows].float()
    base = out[rows].max(dim=1, keepdim=True).values - logits.min(dim=1, keepdim=True).values + 1.0
    out[rows[:, None], top[rows]] = base + logits
    return out


def llamarec_overall(retriever_ranks: np.ndarray, ranker_ranks: np.ndarray, k_retrieve: int,
                     k: int = 10) -> dict[str, float]:
    """LlamaRec's own test metrics (trainer/llm.py): subset@k over the users whose target is in the
    retriever's top ``k_retrieve`` (ranked there by the LLM, ``ranker_ranks``, 1-based), weighted by
    their share; the other users score 0. Returns recall@k and ndcg@k."""
    retrieved = retriever_ranks <= k_retrieve
    share = float(retrieved.mean())
    sub = ranker_ranks[retrieved]
    recall = float((sub <= k).mean()) if sub.size else 0.0
    ndcg = float(np.where(sub <= k, 1.0 / np.log2(sub + 1), 0.0).mean()) if sub.size else 0.0
    return {f"recall@{k}": recall * share, f"ndcg@{k}": ndcg * share}
