"""The data layer on real data (Scientific, MovieLens-100K) and on hand-written raw files."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import pytest

from laser_repro.cli import main as cli_main
from laser_repro.data.dataset import from_sequences, load_dataset, save_dataset
from laser_repro.data.sources import SOURCES, amazon2018
from laser_repro.data.sources.synthetic import SyntheticConfig, write_raw


# ---- real data: Table 1 -------------------------------------------------------------------
def test_scientific_matches_table1(shared_data, tmp_path):
    ds = SOURCES["recformer"](shared_data / "amazon-scientific-recformer", "scientific")
    s = ds.stats()
    assert (s["users"], s["items"], s["interactions"]) == (11041, 5327, 76896)
    assert f"{s['avg_n']:.2f}" == "6.96"
    assert f"{s['density']:.1e}" == "1.3e-03"
    assert ds.eval_users("test").shape[0] == 11039
    assert ds.eval_users("valid").shape[0] == 11039
    # the split is RecFormer's: validation/test targets are the files' items
    val = json.loads((shared_data / "amazon-scientific-recformer" / "val.json").read_text())
    test = json.loads((shared_data / "amazon-scientific-recformer" / "test.json").read_text())
    users = ds.eval_users("test")
    assert ds.targets("valid", users).tolist() == [val[str(u)][0] for u in users]
    assert ds.targets("test", users).tolist() == [test[str(u)][0] for u in users]
    # round trip through the processed format
    save_dataset(ds, tmp_path / "sci")
    back = load_dataset(tmp_path / "sci")
    assert back.stats() == s
    assert np.array_equal(back.flat, ds.flat) and back.items == ds.items


def test_scientific_titles_html_unescaped(shared_data):
    raw = json.loads((shared_data / "amazon-scientific-recformer" / "meta.json").read_text())
    with_entity = [k for k, v in raw.items() if "&amp;" in v["input"][0]["title"]]
    assert with_entity, "the raw Scientific titles contain HTML entities"
    ds = SOURCES["recformer"](shared_data / "amazon-scientific-recformer", "scientific")
    kept = SOURCES["recformer"](shared_data / "amazon-scientific-recformer", "scientific", unescape_html=False)
    k = int(with_entity[0])
    assert "&amp;" not in ds.items[k]["title"] and "&" in ds.items[k]["title"]
    assert "&amp;" in kept.items[k]["title"]


def test_movielens_100k_counts(shared_data):
    ds = SOURCES["movielens"](shared_data / "ml-100k", "ml-100k")
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (943, 1682, 100000)
    toy = ds.items[[it["id"] for it in ds.items].index("1")]
    assert toy == {"id": "1", "title": "Toy Story", "brand": "1995", "category": "Animation Children's Comedy"}
    # the source recorded (stats.json) is the one asked for, not its reader's (was "recbole"); the data are the same
    assert ds.source == "movielens" and SOURCES["recbole"](shared_data / "ml-100k", "x").source == "recbole"
    assert SOURCES["recbole"](shared_data / "ml-100k", "x").fingerprint() == ds.fingerprint()


def test_movielens_ties_broken_by_item_id(tmp_path):
    (tmp_path / "mini.inter").write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        "1\t10\t3\t100\n1\t9\t3\t100\n1\t2\t3\t50\n1\t30\t3\t100\n"
    )
    (tmp_path / "mini.item").write_text(
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
        "2\tA\t1990\tDrama\n9\tB\t1991\tComedy\n10\tC\t1992\tAction\n30\tD\t1993\tHorror\n"
    )
    ds = SOURCES["movielens"](tmp_path, "mini")
    ids = [ds.items[i]["id"] for i in ds.sequence(0)]
    assert ids == ["2", "9", "10", "30"]  # numeric id order, not "10" < "2"


# ---- amazon2018 rules on hand-written raw files ----------------------------------------------
def _write_lines(path: Path, records, gz: bool = False) -> None:
    text = "".join(json.dumps(r) + "\n" if isinstance(r, dict) else r + "\n" for r in records)
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")


META = [
    {"asin": "A", "title": "Alpha &amp; Co Glue", "brand": "Acme", "category": ["Tools", "Glue"]},
    {"asin": "B", "title": "Beta Beaker", "brand": "Pyrex", "category": ["Lab"]},
    {"asin": "C", "title": "", "brand": "NoTitle", "category": ["Lab"]},  # dropped: empty title
    {"asin": "D", "title": "Delta Drill", "brand": "Bosch"},
]
REVIEWS = [
    {"reviewerID": "u1", "asin": "B", "unixReviewTime": 300},
    {"reviewerID": "u1", "asin": "A", "unixReviewTime": 100},
    {"reviewerID": "u1", "asin": "C", "unixReviewTime": 150},
    {"reviewerID": "u1", "asin": "D", "unixReviewTime": 300},  # same time as B: file order kept
    {"reviewerID": "u1", "asin": "A", "unixReviewTime": 400},  # a repeat: kept
    {"reviewerID": "u2", "asin": "D", "unixReviewTime": 5},
    {"reviewerID": "u2", "asin": "E", "unixReviewTime": 6},  # no metadata at all: dropped
]


@pytest.mark.parametrize("gz", [False, True])
def test_amazon2018_rules(tmp_path, gz):
    suffix = ".json.gz" if gz else ".json"
    _write_lines(tmp_path / f"Toy_5{suffix}", REVIEWS, gz)
    _write_lines(tmp_path / f"meta_Toy{suffix}", META, gz)
    ds = amazon2018.prepare(tmp_path, "toy")
    titles = [[ds.items[i]["title"] for i in ds.sequence(u)] for u in range(ds.n_users)]
    assert ds.user_ids == ["u1", "u2"]
    assert titles[0] == ["Alpha & Co Glue", "Beta Beaker", "Delta Drill", "Alpha & Co Glue"]
    assert titles[1] == ["Delta Drill"]
    assert "NoTitle" not in {it["brand"] for it in ds.items}
    assert ds.items[0]["category"] == "Tools Glue" and ds.items[2]["category"] == ""
    # leave-one-out: u1 has 4 items -> 2 train, then valid, test; u2 has 1 -> training only
    assert ds.train_len.tolist() == [2, 1]
    assert ds.history_and_target(0, "test")[1] == ds.sequence(0)[3]
    assert ds.eval_users("test").tolist() == [0]
    # what the rules dropped is counted in the data set's notes (stats.json), not dropped silently
    assert ds.notes == (f"Toy_5{suffix} + meta_Toy{suffix}: dropped 1 metadata records without a title",
                        f"Toy_5{suffix} + meta_Toy{suffix}: dropped 2 reviews of items without titled metadata")
    # a paper name for the category (`category: pet`, as `data download` and the config check take it) finds the
    # files: prepare looked for pet_5.json and failed after the download had worked
    pet = tmp_path / "pet"
    pet.mkdir()
    for name in ("Pet_Supplies_5.json.gz", "meta_Pet_Supplies.json.gz", "Toy_5.json.gz"):
        (pet / name).write_bytes(b"")
    assert amazon2018.find_files(pet, "pet") == (pet / "Pet_Supplies_5.json.gz", pet / "meta_Pet_Supplies.json.gz")


def test_amazon2018_malformed_line_names_file_and_line(tmp_path):
    _write_lines(tmp_path / "Toy_5.json", [json.dumps(REVIEWS[0]), "{not json", json.dumps(REVIEWS[1])])
    _write_lines(tmp_path / "meta_Toy.json", META)
    with pytest.raises(ValueError, match=r"Toy_5\.json:2: malformed JSON"):
        amazon2018.prepare(tmp_path, "toy")


@pytest.mark.parametrize("reviews, meta, message", [
    # a number among string ids: sorting the users was a TypeError traceback
    ([REVIEWS[0], {**REVIEWS[1], "reviewerID": 2}], META,
     r"Toy_5\.json:2: reviewerID 2 and asin 'A': expected strings"),
    ([REVIEWS[0], {**REVIEWS[1], "asin": ["A"]}], META, r"Toy_5\.json:2: reviewerID 'u1' and asin \['A'\]"),
    # a list as the key of the metadata map: "unhashable type: 'list'"
    (REVIEWS, [META[0], {**META[1], "asin": ["B"]}],
     r"meta_Toy\.json:2: 'asin' is \['B'\]; expected a non-empty string"),
])
def test_amazon2018_ids_that_are_not_strings_name_file_and_line(tmp_path, reviews, meta, message):
    _write_lines(tmp_path / "Toy_5.json", reviews)
    _write_lines(tmp_path / "meta_Toy.json", meta)
    with pytest.raises(ValueError, match=message):
        amazon2018.prepare(tmp_path, "toy")


@pytest.mark.parametrize("reviews, meta, message", [
    # true, 1.9 and "7" were read as 1, 1 and 7 (another history order); Infinity was an OverflowError traceback
    *[([REVIEWS[0], {**REVIEWS[1], "unixReviewTime": t}], META,
       rf"Toy_5\.json:2: unixReviewTime {re.escape(repr(t))}: expected an integer") for t in (True, 1.9, "7")],
    ([json.dumps(REVIEWS[0]), '{"reviewerID": "u1", "asin": "A", "unixReviewTime": Infinity}'], META,
     r"Toy_5\.json:2: (unixReviewTime inf: expected an integer|Infinity is not a JSON number)"),
    # a number or a flag became the text "123" / "True" in the prompts
    (REVIEWS, [META[0], {**META[1], "title": 123}], r"meta_Toy\.json:2: title: 123 is int; expected text"),
    (REVIEWS, [META[0], {**META[1], "brand": True}], r"meta_Toy\.json:2: brand: True is bool; expected text"),
])
def test_amazon2018_times_and_texts_of_the_wrong_type_name_file_and_line(tmp_path, reviews, meta, message):
    _write_lines(tmp_path / "Toy_5.json", reviews)
    _write_lines(tmp_path / "meta_Toy.json", meta)
    with pytest.raises(ValueError, match=message):
        amazon2018.prepare(tmp_path, "toy")


def test_a_timestamp_that_is_not_finite_names_file_and_line(tmp_path):
    """float("nan") parsed, and nan compares false both ways: the user's history came out in another order."""
    (tmp_path / "mini.inter").write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                                         "1\t10\t3\t3\n1\t9\t3\tnan\n1\t2\t3\t1\n")
    (tmp_path / "mini.item").write_text("item_id:token\tmovie_title:token_seq\n2\tA\n9\tB\n10\tC\n")
    with pytest.raises(ValueError, match=r"mini\.inter:3: timestamp 'nan' is not a finite number"):
        SOURCES["movielens"](tmp_path, "mini")


def test_amazon2018_missing_files_and_empty_result(tmp_path):
    with pytest.raises(FileNotFoundError, match="_5.json"):
        amazon2018.prepare(tmp_path, "toy")
    _write_lines(tmp_path / "Toy_5.json", REVIEWS)
    with pytest.raises(FileNotFoundError, match="meta_Toy"):
        amazon2018.prepare(tmp_path, "toy")
    _write_lines(tmp_path / "meta_Toy.json", [{"asin": "Z", "title": "Zed"}])
    with pytest.raises(ValueError, match="no interaction left"):
        amazon2018.prepare(tmp_path, "toy")


def test_prepare_cli_leaves_no_partial_output(tmp_path, capsys):
    raw = tmp_path / "raw"
    raw.mkdir()
    _write_lines(raw / "Toy_5.json", [json.dumps(REVIEWS[0]), "{broken"])
    _write_lines(raw / "meta_Toy.json", META)
    out = tmp_path / "out"
    rc = cli_main(["data", "prepare", "--source", "amazon2018", "--input", str(raw), "--name", "toy", "--out", str(out)])
    assert rc == 1
    assert not out.exists() and list(tmp_path.iterdir()) == [raw]
    _write_lines(raw / "Toy_5.json", REVIEWS)
    assert cli_main(["data", "prepare", "--source", "amazon2018", "--input", str(raw), "--name", "toy", "--out", str(out)]) == 0
    assert load_dataset(out).n_interactions == 5  # 7 reviews less the no-title and no-meta items
    assert cli_main(["data", "stats", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["users"] == 2


def test_unknown_source_is_rejected(capsys):
    with pytest.raises(SystemExit) as exc:
        cli_main(["data", "prepare", "--source", "nope", "--input", "x", "--name", "x", "--out", "y"])
    assert exc.value.code == 2 and "invalid choice: 'nope'" in capsys.readouterr().err


# ---- the synthetic default data set -----------------------------------------------------------
def test_synthetic_is_deterministic(tmp_path):
    a = write_raw(tmp_path / "a", SyntheticConfig(seed=3))
    b = write_raw(tmp_path / "b", SyntheticConfig(seed=3))
    c = write_raw(tmp_path / "c", SyntheticConfig(seed=4))
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    assert a[0].read_bytes() != c[0].read_bytes()


def test_synthetic_overwrites_only_its_own_raw_files(tmp_path):
    """`--source synthetic` wrote its raw files into any --input, over a file of the same name it had not written."""
    a = write_raw(tmp_path / "raw", SyntheticConfig(seed=3))
    write_raw(tmp_path / "raw", SyntheticConfig(seed=4, users=50))  # its own files, other settings: replaced
    assert a[0].read_bytes() == write_raw(tmp_path / "b", SyntheticConfig(seed=4, users=50))[0].read_bytes()
    a[1].write_text('{"asin": "mine"}\n')  # edited by hand since
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "Synthetic_5.json").write_text("a user's own file\n")
    for folder, name in ((tmp_path / "raw", "meta_Synthetic.json"), (tmp_path / "other", "Synthetic_5.json")):
        with pytest.raises(FileExistsError, match=f"{name}: not a file `--source synthetic` wrote"):
            write_raw(folder, SyntheticConfig(seed=4, users=50))
    assert a[1].read_text() == '{"asin": "mine"}\n'
    assert (tmp_path / "other" / "Synthetic_5.json").read_text() == "a user's own file\n"


def test_synthetic_raw_files_stay_its_own_after_a_kill_between_them(tmp_path, monkeypatch):
    """Killed after writing the first raw file and before its record, the next run (another seed) refused the
    suite's own file as a user's."""
    import laser_repro.io as io

    write_raw(tmp_path, SyntheticConfig(seed=3))
    io_write, written = io.write_text, []

    def killed_after_one(path, text):
        if Path(path).name == "meta_Synthetic.json":
            raise KeyboardInterrupt("killed between the two raw files")
        written.append(Path(path).name)
        return io_write(path, text)

    monkeypatch.setattr(io, "write_text", killed_after_one)  # write_raw imports it when called
    with pytest.raises(KeyboardInterrupt):
        write_raw(tmp_path, SyntheticConfig(seed=4))
    monkeypatch.setattr(io, "write_text", io_write)
    assert "Synthetic_5.json" in written  # seed 4's reviews beside seed 3's metadata
    b = write_raw(tmp_path, SyntheticConfig(seed=5))  # both are its own: replaced
    assert [p.read_bytes() for p in b] == [p.read_bytes() for p in write_raw(tmp_path / "c", SyntheticConfig(seed=5))]


def test_synthetic_structure_is_learnable(tmp_path):
    """Popularity and item-to-item transitions beat random ranking by a wide margin."""
    ds = SOURCES["synthetic"](tmp_path / "raw", "synthetic", seed=0)
    assert ds.n_items == 119  # one of the 120 generated items has no title and is dropped
    assert ds.n_users == 300 and ds.lengths.min() >= 3
    counts = np.bincount(np.concatenate([ds.train_sequence(u) for u in range(ds.n_users)]), minlength=ds.n_items)
    trans = np.zeros((ds.n_items, ds.n_items))
    for u in range(ds.n_users):
        s = ds.train_sequence(u)
        np.add.at(trans, (s[:-1], s[1:]), 1.0)
    users = ds.eval_users("test")
    pop_hits = trans_hits = 0
    top_pop = set(np.argsort(-counts, kind="stable")[:10].tolist())
    for u in users:
        hist, target = ds.history_and_target(int(u), "test")
        pop_hits += target in top_pop
        scores = trans[hist[-1]] + 1e-3 * counts  # next-item transitions, popularity breaks ties
        trans_hits += target in set(np.argsort(-scores, kind="stable")[:10].tolist())
    random_recall = 10 / ds.n_items
    assert pop_hits / len(users) > 1.5 * random_recall
    assert trans_hits / len(users) > 3 * random_recall


def test_from_sequences_validates():
    items = [{"id": "a", "title": "t", "brand": "b", "category": "c"}]
    with pytest.raises(ValueError, match="out of range"):
        from_sequences("x", "test", items, ["u"], [[0, 1]])
    with pytest.raises(ValueError, match="empty"):
        from_sequences("x", "test", items, [], [])


@pytest.mark.parametrize("field, value, message", [
    ("users", 0, r"users must be at least 2"),  # was "no interaction left after dropping items without a title"
    ("users", 1, r"users must be at least 2"),
    ("categories", 0, r"categories must be between 1 and"),  # was numpy's "high <= 0"
    ("seed", -1, r"seed must be >= 0"),
])
def test_synthetic_sizes_are_checked_by_name(tmp_path, field, value, message):
    from laser_repro.data.sources.synthetic import generate_records

    with pytest.raises(ValueError, match=message):
        generate_records(SyntheticConfig(**{field: value}))


@pytest.mark.parametrize("categories, items", [(6, 12), (6, 20), (16, 40)])
def test_synthetic_takes_every_size_its_check_accepts(categories, items):
    """The check allows 2 items per category, the generator guaranteed 1: numpy's "a cannot be empty" for nearly
    every seed of these sizes. Each category now has 2 or more, so each item has a companion in its category."""
    from laser_repro.data.sources.synthetic import generate_records

    for seed in range(20):
        reviews, meta = generate_records(SyntheticConfig(categories=categories, items=items, seed=seed, users=20))
        cats = [m["category"][1] for m in meta]
        assert len(meta) == items and len(set(cats)) == categories
        assert min(cats.count(c) for c in set(cats)) >= 2 and reviews
