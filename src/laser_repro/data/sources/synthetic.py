"""The embedded default data set: a seeded generator of Amazon-2018-format raw files.

It writes ``Synthetic_5.json`` and ``meta_Synthetic.json`` (plain JSON lines, identical bytes
for a given seed) and then goes through the real :mod:`amazon2018` parser. Planted structure
a model can learn:

* items belong to latent categories; a title names its category's product noun and brand,
  so the text carries the category (semantic signal);
* every item has a fixed "companion" item of its category that often follows it
  (collaborative signal that text alone does not reveal);
* users prefer a few categories and drift between them; popularity within a category is
  Zipf-skewed;
* one item has an empty title (dropped by the parser, as in the real data) and some
  interactions share a timestamp (the stable sort keeps file order).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from laser_repro.data.dataset import SeqDataset
from laser_repro.data.sources import amazon2018

CATEGORY = "Synthetic"
# (category, product nouns, brands, adjectives): a pool the generator draws its categories from
POOL = [
    ("Microscopes", ["Microscope", "Slide Kit", "Eyepiece", "Objective Lens"], ["OptiLab", "AmScope"], ["Compound", "Digital", "Stereo"]),
    ("Soldering", ["Soldering Iron", "Solder Wire", "Flux Pen", "Desoldering Pump"], ["Hakko", "Weller"], ["Lead-Free", "Rosin Core", "Adjustable"]),
    ("Adhesives", ["Epoxy", "Super Glue", "Glue Stick", "Tape Roll"], ["Gorilla", "Loctite"], ["Waterproof", "Quick-Set", "Clear"]),
    ("Lab Glassware", ["Beaker", "Flask", "Test Tube", "Graduated Cylinder"], ["Pyrex", "Kimax"], ["Borosilicate", "Graduated", "Heavy-Duty"]),
    ("Safety Gear", ["Safety Glasses", "Nitrile Gloves", "Ear Plugs", "Face Shield"], ["3M", "Honeywell"], ["Anti-Fog", "Disposable", "Impact-Resistant"]),
    ("Measuring Tools", ["Digital Caliper", "Micrometer", "Tape Measure", "Feeler Gauge"], ["Mitutoyo", "Starrett"], ["Stainless", "Metric", "Precision"]),
    ("Fasteners", ["Hex Bolt", "Wood Screw", "Lock Washer", "Wing Nut"], ["Hillman", "Everbilt"], ["Zinc-Plated", "Stainless", "Assorted"]),
    ("Abrasives", ["Sanding Disc", "Sanding Roll", "Grinding Wheel", "Flap Disc"], ["Porter-Cable", "Norton"], ["80 Grit", "120 Grit", "Hook-and-Loop"]),
    ("Pet Bedding", ["Aspen Bedding", "Paper Bedding", "Nesting Material", "Litter Pellets"], ["Kaytee", "Carefresh"], ["Odor-Control", "Natural", "Dust-Free"]),
    ("Aquarium", ["Aquarium Filter", "Air Pump", "Water Conditioner", "Gravel Vacuum"], ["Tetra", "Fluval"], ["Quiet", "Submersible", "Freshwater"]),
    ("Dog Toys", ["Chew Toy", "Rope Toy", "Squeaky Ball", "Puzzle Feeder"], ["Kong", "Nylabone"], ["Durable", "Interactive", "Large"]),
    ("Cat Care", ["Scratching Post", "Cat Litter", "Hairball Remedy", "Feather Wand"], ["PetSafe", "Arm & Hammer"], ["Clumping", "Sisal", "Unscented"]),
    ("Yarn", ["Acrylic Yarn", "Wool Yarn", "Crochet Hook", "Knitting Needles"], ["Lion Brand", "Caron"], ["Chunky", "Soft", "Worsted"]),
    ("Painting", ["Acrylic Paint Set", "Paint Brush Set", "Canvas Panel", "Palette Knife"], ["Liquitex", "Winsor & Newton"], ["Professional", "Student", "Assorted"]),
    ("Console Games", ["Racing Game", "Puzzle Game", "RPG", "Shooter"], ["Nintendo", "Sega"], ["Deluxe", "Classic", "Collector's"]),
    ("Controllers", ["Wireless Controller", "Charging Dock", "Thumb Grips", "Arcade Stick"], ["PowerA", "Hori"], ["Ergonomic", "Wired", "Pro"]),
]


@dataclass(frozen=True)
class SyntheticConfig:
    """Size and structure of the generated data set (defaults: the embedded default)."""

    seed: int = 0
    users: int = 300  # number of users
    items: int = 120  # number of items (one of them gets an empty title and is dropped)
    categories: int = 6  # latent categories, drawn from POOL by the seed
    min_len: int = 5  # 5-core-like: every user has at least this many interactions
    mean_extra_len: float = 4.0  # mean of the geometric number of interactions beyond min_len
    p_companion: float = 0.45  # probability that the next item is the current item's companion
    p_stay: float = 0.75  # probability to stay in the current category (else drift)
    zipf: float = 1.0  # popularity skew within a category


def generate_records(cfg: SyntheticConfig) -> tuple[list[dict], list[dict]]:
    """(review records, meta records) in Amazon 2018 field names; deterministic for a seed."""
    if not 1 <= cfg.categories <= len(POOL):
        raise ValueError(f"categories must be between 1 and {len(POOL)}, got {cfg.categories}")
    if cfg.users < 2:
        raise ValueError(f"users must be at least 2 (a validation and a test user at the least), got {cfg.users}")
    if cfg.seed < 0:
        raise ValueError(f"seed must be >= 0, got {cfg.seed}")
    if cfg.items < cfg.categories * 2:
        raise ValueError(f"items ({cfg.items}) must be at least 2 per category ({cfg.categories})")
    rng = np.random.default_rng(cfg.seed)
    cats = [POOL[k] for k in sorted(rng.choice(len(POOL), cfg.categories, replace=False))]
    item_cat = np.sort(rng.integers(0, cfg.categories, cfg.items))
    item_cat[: cfg.categories] = np.arange(cfg.categories)  # every category has items
    for c in range(cfg.categories):  # and at least 2 (each item's companion is another of its category); the
        if np.count_nonzero(item_cat == c) < 2:  # largest category has > 2 to give when items >= 2 per category
            donor = int(np.argmax(np.bincount(item_cat, minlength=cfg.categories)))
            item_cat[np.flatnonzero(item_cat == donor)[-1]] = c
    item_cat = np.sort(item_cat)
    meta, by_cat = [], [np.flatnonzero(item_cat == c) for c in range(cfg.categories)]
    for i in range(cfg.items):
        name, nouns, brands, adjs = cats[item_cat[i]]
        brand = brands[rng.integers(len(brands))]
        title = f"{brand} {adjs[rng.integers(len(adjs))]} {nouns[rng.integers(len(nouns))]} {chr(65 + i % 26)}{100 + i}"
        meta.append({"asin": f"S{cfg.seed:02d}{i:05d}", "title": title, "brand": brand, "category": ["Synthetic", name]})
    meta[int(rng.integers(cfg.items))]["title"] = ""  # one item without a title
    # popularity within each category and a companion item per item
    weights = []
    for members in by_cat:
        w = 1.0 / (1.0 + rng.permutation(len(members))) ** cfg.zipf
        weights.append(w / w.sum())
    companion = np.array([rng.choice(by_cat[item_cat[i]][by_cat[item_cat[i]] != i]) for i in range(cfg.items)])
    reviews = []
    for u in range(cfg.users):
        n_pref = int(rng.integers(1, 4))
        prefs = rng.choice(cfg.categories, n_pref, replace=False)
        length = cfg.min_len + int(rng.geometric(1.0 / (1.0 + cfg.mean_extra_len))) - 1
        cur_cat = prefs[0]
        item = None
        time = 1_400_000_000 + int(rng.integers(0, 3 * 10**7))
        for _ in range(length):
            if item is not None and rng.random() < cfg.p_companion:
                item = int(companion[item])
            else:
                if rng.random() > cfg.p_stay:
                    cur_cat = prefs[rng.integers(n_pref)]
                members = by_cat[cur_cat]
                item = int(members[rng.choice(len(members), p=weights[cur_cat])])
            time += 86400 * int(rng.integers(0, 4))  # 0 days apart: a tie, kept in file order
            reviews.append(
                {"overall": float(rng.integers(3, 6)), "reviewerID": f"U{cfg.seed:02d}{u:06d}", "asin": meta[item]["asin"], "unixReviewTime": time}
            )
    return reviews, meta


RAW_MARKER = ".laser-repro-synthetic"  # the digests of the raw files this generator wrote into a folder


def write_raw(out_dir: str | Path, cfg: SyntheticConfig) -> tuple[Path, Path]:
    """Write ``Synthetic_5.json`` and ``meta_Synthetic.json`` into ``out_dir`` (same bytes per seed).

    A file of those names is replaced only when this generator wrote it and it is unchanged since (its digest in
    :data:`RAW_MARKER`) or it already holds these bytes: another file there is refused by name, never overwritten."""
    import hashlib

    from laser_repro.io import read_json, write_json, write_text

    out = Path(out_dir)
    reviews, meta = generate_records(cfg)
    paths = out / f"{CATEGORY}_5.json", out / f"meta_{CATEGORY}.json"
    texts = ["".join(json.dumps(r, sort_keys=True) + "\n" for r in recs) for recs in (reviews, meta)]
    ours = read_json(out / RAW_MARKER) if (out / RAW_MARKER).is_file() else {}
    if not isinstance(ours, dict):
        raise ValueError(f"{out / RAW_MARKER}: expected a JSON object of file digests, got {type(ours).__name__}")
    digest = lambda data: hashlib.sha256(data).hexdigest()  # noqa: E731
    new = {path.name: digest(text.encode()) for path, text in zip(paths, texts)}
    # a name's recorded digests: one, or (while a write was under way) the old and the new version
    known = {n: {*(v if isinstance(v, list) else [v])} - {None} for n, v in ours.items()}
    for path in paths:
        if path.exists() and digest(path.read_bytes()) not in known.get(path.name, set()) | {new[path.name]}:
            raise FileExistsError(f"{path}: not a file `--source synthetic` wrote (or changed since, or written before "
                                  f"2026-12-07, when {RAW_MARKER} did not record it); it would be overwritten: move it "
                                  "(or delete it if this suite wrote it), or give --input a folder of its own")
    # both versions recorded first: a session killed between the files leaves only files the record names
    write_json(out / RAW_MARKER, {n: sorted(known.get(n, set()) | {d}) for n, d in new.items()})
    for path, text in zip(paths, texts):
        write_text(path, text)
    write_json(out / RAW_MARKER, new)
    return paths


def prepare(input_path: str | Path, name: str, unescape_html: bool = True, **options: object) -> SeqDataset:
    """Generate raw files into ``input_path`` and parse them with the Amazon 2018 parser.

    ``options`` may set any :class:`SyntheticConfig` field (seed, users, items, ...).
    """
    fields = SyntheticConfig.__dataclass_fields__
    cfg = SyntheticConfig(**{k: v for k, v in options.items() if k in fields and v is not None})
    write_raw(input_path, cfg)
    ds = amazon2018.prepare(input_path, name, category=CATEGORY, unescape_html=unescape_html)
    return SeqDataset(ds.name, ds.items, ds.user_ids, ds.offsets, ds.flat, ds.train_len, source="synthetic")
