"""Data the suite did not make is never destroyed, damaged input never imports as wrong data, and
the formats users hold (RecFormer variants, RecBole / UniSRec atomic files) import exactly."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest

from laser_repro.cli import main as cli_main
from laser_repro.data.dataset import data_fingerprint, load_dataset
from laser_repro.data.sources import SOURCES, detect

N_USERS = 120


@pytest.fixture(scope="module")
def small_real(shared_data, tmp_path_factory) -> Path:
    """The first 120 users of the real Scientific set, re-indexed, in RecFormer's format."""
    src = shared_data / "amazon-scientific-recformer"
    load = lambda name: json.loads((src / name).read_text())  # noqa: E731
    train, val, test, umap, smap, meta = (load(f) for f in ("train.json", "val.json", "test.json", "umap.json",
                                                             "smap.json", "meta.json"))
    users = [str(u) for u in range(N_USERS)]
    used = sorted({i for u in users for part in (train, val, test) for i in part.get(u, [])})
    new = {old: k for k, old in enumerate(used)}
    inv_s = {v: k for k, v in smap.items()}
    inv_u = {v: k for k, v in umap.items()}
    out = tmp_path_factory.mktemp("small") / "scientific-small"
    out.mkdir()
    write = lambda name, obj: (out / name).write_text(json.dumps(obj))  # noqa: E731
    for name, part in (("train.json", train), ("val.json", val), ("test.json", test)):
        write(name, {u: [new[i] for i in part[u]] for u in users if u in part})
    write("umap.json", {inv_u[int(u)]: int(u) for u in users})
    write("smap.json", {inv_s[old]: k for k, old in enumerate(used)})
    write("meta.json", {str(k): meta[str(old)] for k, old in enumerate(used)})
    return out


def prepare(src: Path, out: Path, *extra: str, source: str | None = "recformer") -> int:
    args = ["data", "prepare", "--input", str(src), "--name", "s", "--out", str(out), *extra]
    return cli_main(args + (["--source", source] if source else []))


# ---------------------------------------------------------------- --out never destroys data


def test_out_refuses_the_input_folder_and_unrelated_folders(small_real, tmp_path, caplog):
    src = tmp_path / "x"
    shutil.copytree(small_real, src)
    before = sorted(p.name for p in src.iterdir())
    assert prepare(src, src) == 1  # the reproduction: once exit 0 and the raw files gone
    assert "is (or contains) the input folder" in caplog.text
    assert prepare(src, tmp_path) == 1  # a folder that contains the input
    assert sorted(p.name for p in src.iterdir()) == before
    assert prepare(src, src, "--force") == 1  # --force never covers the input folder
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    assert prepare(src, mine) == 1 and (mine / "notes.txt").read_text() == "mine"
    assert "not write (no stats.json / marker)" in caplog.text and "--force" in caplog.text
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert prepare(src, afile) == 1 and afile.read_text() == "x"
    assert not list(tmp_path.glob(".afile*")), "no .NAME.old or temporary folder left behind"
    assert prepare(src, afile, "--force") == 0 and load_dataset(afile).n_users == N_USERS
    # a folder this suite prepared is replaced; an empty folder is fine
    out = tmp_path / "out"
    assert prepare(src, out) == 0 and prepare(src, out) == 0
    # ... unless a file of the user's own was put in it: replacing the folder deleted it
    (out / "my_notes.txt").write_text("annotations")
    assert prepare(src, out) == 1 and (out / "my_notes.txt").read_text() == "annotations"
    assert "also holds files `laser-repro data prepare` did not write (['my_notes.txt'])" in caplog.text
    (out / "my_notes.txt").unlink()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert prepare(src, empty) == 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_outputs_honour_the_umask(small_real, tmp_path):
    old = os.umask(0o022)
    try:
        assert prepare(small_real, tmp_path / "out") == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "out" / "stats.json").stat().st_mode) == 0o644


# ---------------------------------------------------------------- fingerprints


def test_fingerprint_follows_the_content(small_real, tmp_path):
    assert prepare(small_real, tmp_path / "a") == 0 and prepare(small_real, tmp_path / "b") == 0
    fa, fb = data_fingerprint(tmp_path / "a"), data_fingerprint(tmp_path / "b")
    assert fa == fb and len(fa) == 16
    changed = tmp_path / "changed"
    shutil.copytree(small_real, changed)
    val = json.loads((changed / "val.json").read_text())
    test = json.loads((changed / "test.json").read_text())
    val["0"], test["0"] = test["0"], val["0"]  # one user's last two items swapped
    (changed / "val.json").write_text(json.dumps(val))
    (changed / "test.json").write_text(json.dumps(test))
    assert prepare(changed, tmp_path / "c") == 0
    assert data_fingerprint(tmp_path / "c") != fa
    stats = json.loads((tmp_path / "c" / "stats.json").read_text())
    assert stats["fingerprint"] == data_fingerprint(tmp_path / "c") == load_dataset(tmp_path / "c").fingerprint()


# ---------------------------------------------------------------- malformed RecFormer folders


def damaged(small_real: Path, tmp_path: Path, edit) -> Path:
    out = tmp_path / "damaged"
    shutil.copytree(small_real, out)
    edit(out)
    return out


def edit_json(name, fn, replace: bool = False):
    """Edit ``name`` in place with ``fn`` (or, with ``replace``, write what ``fn`` returns instead)."""
    def edit(folder: Path):
        path = folder / name
        obj = json.loads(path.read_text())
        result = fn(obj)
        path.write_text(json.dumps(result if replace else obj))
    return edit


CASES = {  # name: (edit, expected message)
    "second val item": (edit_json("val.json", lambda v: v["3"].append(v["3"][0])),
                        r"val\.json: user 3: expected exactly one item \(leave-one-out\), got 2"),
    "float item id": (edit_json("train.json", lambda t: t["5"].__setitem__(0, float(t["5"][0]))),
                      r"train\.json: user 5: expected a list of integer item indices"),
    "val without test": (edit_json("test.json", lambda t: t.pop("7")),
                         r"val\.json and test\.json must hold the same users.*user 7 is only in val\.json"),
    "test without val": (edit_json("val.json", lambda t: t.pop("8")),
                         r"user 8 is only in test\.json"),
    "untitled meta": (edit_json("meta.json", lambda m: m["4"]["input"][0].__setitem__("title", "")),
                      r"has no title"),
    "item out of range": (edit_json("test.json", lambda t: t.__setitem__("2", [10**6])),
                          r"test\.json: user 2: item index 1000000 out of range"),
    "val is a list": (edit_json("val.json", lambda v: list(v.values()), replace=True),
                      r"val\.json: expected a JSON object \{user_idx: \[item_idx, \.\.\.\]\}, got list"),
    "eval user without history": (edit_json("train.json", lambda t: t.__setitem__("9", [])),
                                  r"train\.json: user 9 has validation/test items but no training items"),
    "user key out of range": (edit_json("train.json", lambda t: t.__setitem__("99999", [1, 2])),
                              r"train\.json: user key '99999' is not a user index"),
    "not UTF-8": (lambda f: (f / "smap.json").write_bytes(b'{"\xff": 0}'), r"smap\.json: not UTF-8"),
    "umap is a list": (edit_json("umap.json", lambda u: list(u), replace=True),  # was an AttributeError traceback
                       r"umap\.json: expected a JSON object \{original_id: index\}, got list"),
    "boolean index": (edit_json("smap.json", lambda m: m.__setitem__(next(iter(m)), True)),
                      r"smap\.json: index True of .* is not a unique integer"),
    "meta input an object": (edit_json("meta.json", lambda m: m["0"].__setitem__("input", m["0"]["input"][0])),
                             r"meta\.json: item .*: 'input' is dict; expected a list of objects"),  # was a KeyError
    # json keeps the last of two equal keys: user 0's history was silently replaced
    "repeated user key": (lambda f: (f / "train.json").write_text((f / "train.json").read_text()[:-1] + ', "0": [1]}'),
                          r"train\.json: key '0' appears twice in one object"),
    # "01" is int 1: user 1's history was silently replaced
    "leading zero": (edit_json("train.json", lambda t: t.__setitem__("01", t["1"])),
                     r"train\.json: user key '01' is not a user index"),
    # a number became the title "123" in every prompt
    "numeric title": (edit_json("meta.json", lambda m: m["4"]["input"][0].__setitem__("title", 123)),
                      r"meta\.json: item .* title: 123 is int; expected text or a list of texts"),
    # a release cut in val.json and test.json alike: its users became training-only and their last two items vanished
    "evaluated user cut from val and test": (
        lambda f: [edit_json(n, lambda v: v.pop("6"))(f) for n in ("val.json", "test.json")],
        r"val\.json, .*test\.json: user '.*' \(index 6\) has \d+ training items but no validation or test item "
        r"\(1 such users\)"),
    # a user with nothing anywhere was counted in Table 1's users, average length and density
    "user without interactions": (edit_json("umap.json", lambda u: u.__setitem__("ghost", len(u))),
                                  r"umap\.json: user 'ghost' \(index \d+\) has no item in train\.json, val\.json or "
                                  r"test\.json \(1 such users\)"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_recformer_folders_stop_with_file_and_user(small_real, tmp_path, caplog, case):
    edit, message = CASES[case]
    folder = damaged(small_real, tmp_path, edit)
    assert prepare(folder, tmp_path / "out") == 1
    assert not (tmp_path / "out").exists()
    import re

    assert re.search(message, caplog.text), caplog.text[-500:]


def test_user_split_release_is_refused_with_the_counts(small_real, tmp_path, caplog):
    def user_split(folder: Path):
        val, test = (json.loads((folder / f).read_text()) for f in ("val.json", "test.json"))
        keys = sorted(val, key=int)
        (folder / "val.json").write_text(json.dumps({k: val[k] for k in keys[::2]}))
        (folder / "test.json").write_text(json.dumps({k: test[k] for k in keys[1::2]}))
    assert prepare(damaged(small_real, tmp_path, user_split), tmp_path / "out") == 1
    assert "A user-split protocol is not supported" in caplog.text and "0 in both" in caplog.text


def test_title_only_meta_is_a_supported_variant(small_real, tmp_path):
    def title_only(folder: Path):
        meta = json.loads((folder / "meta.json").read_text())
        smap = json.loads((folder / "smap.json").read_text())
        inv = {v: k for k, v in smap.items()}
        (folder / "meta_data.json").write_text(json.dumps({inv[int(k)]: v["input"][0]["title"] for k, v in meta.items()}))
        (folder / "meta.json").unlink()
    folder = damaged(small_real, tmp_path, title_only)
    assert prepare(folder, tmp_path / "out") == 0 and prepare(small_real, tmp_path / "ref") == 0
    ds, ref = load_dataset(tmp_path / "out"), load_dataset(tmp_path / "ref")
    assert np.array_equal(ds.flat, ref.flat) and [it["title"] for it in ds.items] == [it["title"] for it in ref.items]
    assert all(it["brand"] == "" and it["category"] == "" for it in ds.items)


# ---------------------------------------------------------------- damaged raw files (Amazon 2018)


def test_truncated_gzip_and_non_utf8_name_the_file(tmp_path, caplog):
    raw = tmp_path / "raw"
    raw.mkdir()
    lines = "".join(json.dumps({"reviewerID": f"u{k % 7}", "asin": f"A{k % 11}", "unixReviewTime": k}) + "\n"
                    for k in range(3000))
    blob = gzip.compress(lines.encode())
    (raw / "Toy_5.json.gz").write_bytes(blob[: len(blob) // 2])
    (raw / "meta_Toy.json").write_text("".join(json.dumps({"asin": f"A{k}", "title": f"t{k}"}) + "\n" for k in range(11)))
    args = ["data", "prepare", "--input", str(raw), "--name", "t", "--out", str(tmp_path / "out")]
    assert cli_main(args) == 1  # source detected: amazon2018
    assert "Toy_5.json.gz:" in caplog.text and "truncated gzip" in caplog.text
    (raw / "Toy_5.json.gz").write_bytes(blob)
    (raw / "meta_Toy.json").write_bytes(b'{"asin": "A1", "title": "caf\xe9"}\n')
    assert cli_main(args) == 1
    assert "meta_Toy.json:1: not UTF-8" in caplog.text
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- RecBole / UniSRec atomic files


def write_atomic(path: Path, header: list[str], rows: list[list]) -> None:
    path.write_text("\t".join(header) + "\n" + "".join("\t".join(map(str, r)) + "\n" for r in rows))


def test_recbole_plain_inter_file(tmp_path):
    write_atomic(tmp_path / "toy.inter", ["user_id:token", "item_id:token", "timestamp:float"],
                 [["u1", "i2", 30], ["u1", "i1", 10], ["u1", "i3", 20], ["u2", "i1", 5], ["u1", "i4", 40]])
    write_atomic(tmp_path / "toy.item", ["item_id:token", "title:token_seq", "brand:token", "categories:token_seq"],
                 [[f"i{k}", f"Title {k}", "B", "Cat"] for k in range(1, 5)])
    assert detect(tmp_path) == "recbole"
    ds = SOURCES["recbole"](tmp_path, "toy")
    seq = [ds.items[i]["id"] for i in ds.sequence(ds.user_ids.index("u1"))]
    assert seq == ["i1", "i3", "i2", "i4"] and ds.train_len[ds.user_ids.index("u1")] == 2
    assert ds.items[0] == {"id": "i1", "title": "Title 1", "brand": "B", "category": "Cat"}
    write_atomic(tmp_path / "toy.inter", ["user_id:token", "item_id:token", "timestamp:floaty"], [["u1", "i1", 1]])
    with pytest.raises(ValueError, match=r"toy\.inter:1: header field 'timestamp:floaty' is not 'name:type'"):
        SOURCES["recbole"](tmp_path, "toy")


def unisrec_folder(folder: Path, sequences: dict[str, list[str]], max_len: int = 50) -> None:
    """UniSRec's pre-split files for ``sequences`` (each: train rows, a valid row, a test row)."""
    header = ["user_id:token", "item_id_list:token_seq", "item_id:token"]
    rows = {"train": [], "valid": [], "test": []}
    for u, seq in sequences.items():
        for t in range(1, len(seq) - 2):
            rows["train"].append([u, " ".join(seq[max(0, t - max_len):t]), seq[t]])
        if len(seq) >= 3:
            rows["valid"].append([u, " ".join(seq[max(0, len(seq) - 2 - max_len):-2]), seq[-2]])
            rows["test"].append([u, " ".join(seq[max(0, len(seq) - 1 - max_len):-1]), seq[-1]])
    for split, r in rows.items():
        write_atomic(folder / f"toy.{split}.inter", header, r)
    items = sorted({i for s in sequences.values() for i in s}, key=int)
    write_atomic(folder / "toy.text", ["item_id:token", "text:token_seq"], [[i, f"text of {i}"] for i in items])
    (folder / "toy.item2index").write_text("".join(f"asin{i}\t{i}\n" for i in items))


def test_unisrec_pre_split_maps_onto_leave_one_out_exactly(tmp_path, caplog):
    seqs = {"1": ["5", "3", "9", "3", "7"], "2": ["4", "5", "6"], "3": ["8", "9", "2", "6"]}
    unisrec_folder(tmp_path, seqs)
    assert detect(tmp_path) == "recbole"
    ds = SOURCES["recbole"](tmp_path, "toy")
    for u, seq in seqs.items():
        k = ds.user_ids.index(u)
        assert [ds.items[i]["id"] for i in ds.sequence(k)] == [f"asin{i}" for i in seq]
        assert ds.history_and_target(k, "valid")[1] == ds.sequence(k)[-2]  # the list's last item = validation
        assert ds.history_and_target(k, "test")[1] == ds.sequence(k)[-1]
    assert ds.items[0]["title"].startswith("text of")
    # a list longer than UniSRec's maximum (50): its validation row keeps the last 50 items, its train rows (one per
    # training target) hold them all: the whole sequence is rebuilt (it lost its 8 oldest items, with a note)
    long = {"1": [str(10 + k) for k in range(60)], "2": ["4", "5", "6"]}
    folder = tmp_path / "long"
    folder.mkdir()
    unisrec_folder(folder, long)
    with open(folder / "toy.item2index", "a") as fh:
        fh.write("other\t12\n")  # index 12 given to a second original id
    with pytest.raises(ValueError, match=r"toy\.item2index:\d+: index '12' appears twice \(also for 'asin12'\)"):
        SOURCES["recbole"](folder, "toy")
    unisrec_folder(folder, long)
    ds = SOURCES["recbole"](folder, "toy")
    k = ds.user_ids.index("1")
    assert [ds.items[i]["id"] for i in ds.sequence(k)] == [f"asin{i}" for i in long["1"]] and ds.train_len[k] == 58
    assert not ds.notes and "maximum length" not in caplog.text
    train = (folder / "toy.train.inter").read_text().splitlines()
    bad = next(n for n, line in enumerate(train) if line.startswith("1\t") and line.endswith("\t30"))
    (folder / "toy.train.inter").write_text("\n".join(train[:bad] + [train[bad].replace(" 29\t30", " 28\t30")]
                                                   + train[bad + 1:]) + "\n")
    with pytest.raises(ValueError, match=rf"toy\.train\.inter:{bad + 1}: user '1': the history does not continue"):
        SOURCES["recbole"](folder, "toy")
    unisrec_folder(folder, long)
    # a test history that does not continue the validation row is refused with file, line and user
    lines = (folder / "toy.test.inter").read_text().splitlines()
    row = next(k for k, line in enumerate(lines) if line.startswith("2\t"))
    lines[row] = lines[row].replace("\t4 5\t", "\t5 4\t")
    (folder / "toy.test.inter").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"toy\.test\.inter:\d+: user '2': the test history must end with"):
        SOURCES["recbole"](folder, "toy")


def test_unknown_folder_names_the_formats_looked_for(tmp_path, caplog):
    (tmp_path / "readme.txt").write_text("nothing here")
    assert cli_main(["data", "prepare", "--input", str(tmp_path), "--name", "x", "--out", str(tmp_path / "o")]) == 1
    for fmt in ("amazon2018", "recformer", "recbole"):
        assert fmt in caplog.text
    assert "pass --source" in caplog.text


# ---------------------------------------------------------------- fuzz: damage a real set 20 ways


def _fuzz_edit(kind: int, rng: np.random.Generator):
    """One of twenty damages (truncate, flip types, drop keys, duplicate users, wrong splits)."""
    def pick(d: dict) -> str:
        keys = sorted(d, key=lambda k: int(k) if k.isdigit() else 0)
        return keys[int(rng.integers(len(keys)))]

    def truncate(name):
        def edit(f: Path):
            b = (f / name).read_bytes()
            (f / name).write_bytes(b[: int(rng.integers(1, len(b) - 1))])
        return edit

    edits = [
        truncate("train.json"), truncate("val.json"), truncate("meta.json"), truncate("smap.json"),
        edit_json("train.json", lambda t: t.__setitem__(pick(t), [str(i) for i in t[pick(t)]] or ["x"])),
        edit_json("val.json", lambda v: v.__setitem__(pick(v), [float(v[pick(v)][0]) + 0.5])),
        edit_json("test.json", lambda t: t.pop(pick(t))),
        edit_json("val.json", lambda v: v.pop(pick(v))),
        edit_json("umap.json", lambda m: m.__setitem__("duplicate-user", m[pick(m)])),
        edit_json("smap.json", lambda m: m.pop(pick(m))),
        edit_json("test.json", lambda t: t.__setitem__(pick(t), [-1])),
        edit_json("val.json", lambda v: v.__setitem__(pick(v), [])),
        edit_json("meta.json", lambda m: m.pop(pick(m))),
        edit_json("meta.json", lambda m: m[pick(m)]["input"][0].pop("title")),
        edit_json("train.json", lambda t: t.__setitem__(pick(t), None)),
        edit_json("umap.json", lambda m: m.__setitem__(pick(m), "zero")),
        lambda f: (f / "test.json").unlink(),
        edit_json("test.json", lambda t: {k: v for k, v in t.items() if int(k) % 2}, replace=True),  # user-split
        edit_json("val.json", lambda v: v.__setitem__(pick(v), v[pick(v)] + v[pick(v)])),
        edit_json("train.json", lambda t: dict(reversed(list(t.items()))), replace=True),  # harmless: key order
    ]
    return edits[kind]


@pytest.mark.parametrize("seed", range(20))
def test_fuzz_damaged_real_data_imports_correctly_or_fails_cleanly(small_real, tmp_path, seed, caplog):
    rng = np.random.default_rng(seed)
    folder = damaged(small_real, tmp_path, _fuzz_edit(seed, rng))
    rc = prepare(folder, tmp_path / "out")
    if rc == 0:  # accepted: it must be the same data (a harmless damage)
        assert prepare(small_real, tmp_path / "ref") == 0
        assert data_fingerprint(tmp_path / "out") == data_fingerprint(tmp_path / "ref"), seed
    else:
        assert rc == 1 and not (tmp_path / "out").exists()
        error = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"][-1]
        assert any(name in error for name in ("train.json", "val.json", "test.json", "umap.json", "smap.json",
                                              "meta.json", str(folder))), error
