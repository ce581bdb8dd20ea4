"""Figures 2-5 from hand-made runs: the plotted numbers, and PNGs that are real images."""

from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from laser_repro.artifacts import fig2, fig3, fig4, fig5
from laser_repro.data.dataset import from_sequences, save_dataset
from laser_repro.experiment.specs import Fig2Spec, Fig3Spec, Fig4Spec, Fig5Spec, GridAxis
from test_artifacts_support import write_run

N_USERS = 20


def _dataset(root, name):
    """10 items; training parts use items 0-5 only, so items 6-9 (40%: ceil(3.5) = 4) are cold."""
    items = [{"id": str(i), "title": f"item {i}", "brand": "b", "category": "c"} for i in range(10)]
    seqs, test_targets = [], []
    for u in range(N_USERS):
        t = 6 + u % 4 if u < 8 else u % 6
        seqs.append([u % 6, (u + 1) % 6, (u + 2) % 6, (u + 3) % 6, t])
        test_targets.append(t)
    save_dataset(from_sequences(name, "test", items, [f"u{u}" for u in range(N_USERS)], seqs), root / name)
    return np.array(test_targets)


def _assert_image(path):
    img = mpimg.imread(path)
    assert img.shape[1] >= 1000 and img.shape[0] >= 300, img.shape  # paper width at 200 dpi
    rgb = img[..., :3]
    non_white = (rgb < 0.95).any(axis=-1).mean()
    assert non_white > 0.01, f"{path} looks blank"
    assert len(np.unique(rgb.reshape(-1, 3).round(2), axis=0)) > 10
    assert path.with_suffix(".pdf").stat().st_size > 1000


def test_fig2_cold_subset_numbers_and_image(tmp_path):
    data_dir, runs = tmp_path / "data", tmp_path / "runs"
    targets = _dataset(data_dir, "pet")
    cold_users = np.arange(N_USERS) < 8
    for seed in (0, 1):
        b4r = np.where(cold_users, 50, 0)  # BERT4Rec misses every cold target
        laser = np.where(cold_users & (np.arange(N_USERS) % 2 == 0), 0, 50)  # Laser-C hits 4 of 8 cold
        write_run(runs, "pet", "bert4rec", "main", seed, b4r, targets=targets)
        write_run(runs, "pet", "laser-c", "main", seed, laser, targets=targets)
    spec = Fig2Spec(runs_root=str(runs), seeds=[0, 1], data_root=str(data_dir), datasets=["pet", "games"],
                    methods=["laser-c", "bert4rec"], cold_fraction=0.35)
    data = fig2.compute_fig2(spec)
    assert {n for (d, _), n in data.n_cold_users.items() if d == "pet"} == {8} and data.cold_users_text("pet") == "8"
    assert data.summaries[("pet", "bert4rec", "recall@10")].mean == 0.0
    assert data.summaries[("pet", "laser-c", "recall@10")].mean == pytest.approx(0.5)
    assert len(data.missing()) == 4 and data.unusable == []  # games: 2 methods x 2 seeds, none run
    out = tmp_path / "fig" / "fig2.png"
    fig2.main(spec, out)
    _assert_image(out)
    # finished runs the figure cannot use are gaps with their reason (they were counted as found, and the reason
    # went to a list nothing printed): a run on an unprepared data set, a run without per-user ranks
    write_run(runs, "games", "bert4rec", "main", 0, b4r)
    (Path(write_run(runs, "pet", "laser-c", "main", 1, laser, targets=targets)) / "ranks.npz").unlink()
    data = fig2.compute_fig2(spec)
    assert [(g.path.parent.relative_to(runs).as_posix(), g.kind) for g in data.missing()[-3:]] == [
        ("pet/laser-c/main/seed~0", "unusable"), ("pet/laser-c/main/seed~1", "unusable"),
        ("games/bert4rec/main/seed~0", "unusable")]
    assert "another seed of its cell has no per-user ranks" in data.missing()[-3].markdown
    assert "ranks.npz missing" in data.missing()[-2].markdown and len(data.missing()) == 6
    assert data.missing()[-1].markdown.endswith(f"unusable, its data set is not prepared ({data_dir}/games/stats.json "
                                                "missing), so its cold items are unknown")
    assert "laser-c" not in {m for (_, m) in data.n_cold_users}
    # a seed that tested only users with warm targets (a seeded cap) has no cold value: it is a named gap, and the
    # other seed's value stands (the whole bar was NaN, "nan ± nan (n=2)" in compare.md)
    write_run(runs, "pet", "bert4rec", "main", 1, b4r[~cold_users], targets=targets[~cold_users],
              users=np.arange(N_USERS)[~cold_users])
    data = fig2.compute_fig2(spec)
    s = data.summaries[("pet", "bert4rec", "recall@10")]
    assert (s.n, s.mean) == (1, 0.0) and data.n_cold_users[("pet", "bert4rec")] == 8
    assert len(data.groups[("pet", "bert4rec")].runs) == 1  # the seeds behind the bar: a claim on it is partial
    gap = next(g for g in data.missing() if "pet/bert4rec/main/seed~1" in g.markdown)
    assert gap.markdown.endswith("unusable, none of its test users' targets is a cold item (a seeded subset of the "
                                 "test users?)")


def test_fig3_fig4_fig5_images_and_variants(tmp_path, caplog):
    runs = tmp_path / "runs"
    r = lambda k: np.r_[np.zeros(k, int), np.full(20 - k, 50)]  # noqa: E731
    for seed in (0, 1):
        for k, f in enumerate(["0", "0.05", "1"]):
            write_run(runs, "sci", "laser-c", f"xfer~pet-frac~{f}", seed, r(6 + 3 * k))
            write_run(runs, "sci", "bert4rec", "main" if f == "1" else f"frac~{f}", seed, r(1 + 3 * k))
        write_run(runs, "sci", "laser-c", "main", seed, r(10), valid_ranks=r(12))
        write_run(runs, "sci", "laser-c", "K~4", seed, r(10), valid_ranks=r(8))
        write_run(runs, "sci", "laser-c", "lambda~0.1", seed, r(10), valid_ranks=r(14))
        for x, k in (("sasrec", 5), ("bert4rec", 7)):
            write_run(runs, "sci", x, "main", seed, r(k))
        write_run(runs, "sci", "laser-c", "idrec~sasrec", seed, r(8))
    d3 = fig3.compute_fig3(Fig3Spec(runs_root=str(runs), seeds=[0, 1], dataset="sci", source="pet",
                                    methods=["laser-c"], baselines=["bert4rec"], fractions=[0, 0.05, 1]))
    assert d3.summary("laser-c", 0.05, "recall@10").mean == pytest.approx(9 / 20)
    assert d3.summary("bert4rec", 1, "recall@10").mean == pytest.approx(7 / 20)
    assert d3.missing() == []
    out3 = tmp_path / "fig3.png"
    with caplog.at_level("WARNING", logger="laser_repro.artifacts"):
        fig3.plot_fig3(d3, out3)
    _assert_image(out3)
    # the Laser-C runs name no backbone (not the paper's ChatGLM2): the figure's footnote says so
    assert ("† stand-in backbones, not the paper's models (not comparable to its numbers): Laser-C: unknown instead "
            "of chatglm2-6b") in caplog.text

    axes = [GridAxis("K", "mformer.n_experts", [4, 8], 8), GridAxis("lambda", "loss.lb_weight", [0.01, 0.1], 0.010)]
    d4 = fig4.compute_fig4(Fig4Spec(runs_root=str(runs), seeds=[0, 1], dataset="sci", method="laser-c", axes=axes))
    assert d4.groups[("lambda", 0.01)].variant == "main"  # the main value (equal as numbers) reads the main run
    assert d4.summary("K", 4, "recall@10").mean == pytest.approx(8 / 20)  # validation, not test
    assert d4.best_value("lambda", "recall@10") == 0.1
    out4 = tmp_path / "fig4.png"
    fig4.plot_fig4(d4, out4)
    _assert_image(out4)
    with pytest.raises(ValueError, match="no grid axis"):
        fig4.plot_fig4(fig4.compute_fig4(Fig4Spec(runs_root=str(runs), seeds=[0], dataset="sci", method="laser-c")),
                       tmp_path / "empty.png")

    d5 = fig5.compute_fig5(Fig5Spec(runs_root=str(runs), seeds=[0, 1], datasets=["sci"], method="laser-c",
                                    idrecs=["sasrec", "bert4rec", "gru4rec"], collaborative="bert4rec"))
    assert d5.groups[("sci", "fed", "bert4rec")].variant == "main"
    assert d5.summary("sci", "fed", "sasrec", "recall@10").mean == pytest.approx(8 / 20)
    assert len(d5.missing()) == 4  # gru4rec and Laser-C with gru4rec, 2 seeds each
    out5 = tmp_path / "fig5.png"
    fig5.plot_fig5(d5, out5)
    _assert_image(out5)


def test_a_failed_pdf_leaves_the_old_png_and_pdf_together(tmp_path, monkeypatch):
    """save_figure replaced the PNG, then wrote the PDF: a failure in between left a new PNG beside an old PDF."""
    import matplotlib.figure

    from laser_repro.artifacts.plotting import new_figure, save_figure

    fig, _ = new_figure(1, 1)
    png, pdf = save_figure(fig, tmp_path / "fig.png")
    before = png.read_bytes(), pdf.read_bytes()
    real = matplotlib.figure.Figure.savefig

    def no_pdf(self, fname, *args, **kwargs):
        if kwargs.get("format") == "pdf":
            raise OSError("disk full")
        return real(self, fname, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", no_pdf)
    fig, axes = new_figure(1, 1)
    axes.flat[0].plot([0, 1], [1, 0])
    with pytest.raises(OSError, match="disk full"):
        save_figure(fig, png)
    assert (png.read_bytes(), pdf.read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.pdf", "fig.png"]  # no temporary left


def test_line_series_stay_apart_and_a_missing_point_says_n_a():
    """Figure 3 drew RECFORMER (no color of its own: the palette's second) in BERT4Rec's blue with the same marker;
    a missing point was only a gap in its line."""
    import matplotlib.pyplot as plt

    from laser_repro.artifacts.plotting import COLORS, colors_for, line_panel
    from laser_repro.artifacts.significance import summarize

    names = ["laser-c", "llm4rec", "bert4rec", "kar"]  # two with colors of their own, two without
    colors = colors_for(names)
    assert len(set(colors)) == 4 and colors[0] == COLORS["laser-c"] and colors[2] == COLORS["bert4rec"]
    assert colors_for(["bert4rec", "bert4rec"])[1] != COLORS["bert4rec"]  # an own color is taken once
    fig, ax = plt.subplots()
    point = summarize([0.1, 0.12])
    line_panel(ax, ["0", "5%", "100%"], [(n, c, [point, None if n == "kar" else point, point])
                                         for n, c in zip(names, colors)])
    lines = [c.lines[0] for c in ax.containers]  # each series' errorbar: its data line first
    assert [ln.get_color() for ln in lines] == colors
    assert len({ln.get_marker() for ln in lines}) == 4
    na = [t for t in ax.texts if t.get_text() == "n/a"]
    assert len(na) == 1 and na[0].get_color() == colors[3] and na[0].get_position()[0] == 1
    plt.close(fig)
