"""Phase-diagram sweeps: outcomes against the analytic spinodal, resume, user fields, Dask."""

import csv
import json
import threading

import numpy as np
import pytest
import torch

from crane_viz.analysis.phase import Cancelled, run_sweep, sample_points
from crane_viz.cli import main
from crane_viz.errors import InputError
from crane_viz.nn.checkpoint import save_checkpoint
from crane_viz.nn.model import CRNN, get_config
from crane_viz.physics.equations import spinodal_misfit
from crane_viz.physics.initial import perlin_field
from crane_viz.physics.presets import get_preset
from crane_viz.settings import SweepSettings

P2 = get_preset("coherent-2d")
# (⟨φ⟩, η) far from the analytic line η_max(⟨φ⟩) (1.265 % at 0.5; none outside (0.211, 0.789))
FAR = [(0.5, 0.0), (0.45, 0.002), (0.55, 0.004), (0.12, 0.0), (0.88, 0.003), (0.5, 0.02),
       (0.35, 0.016), (0.6, 0.0)]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """An untrained η-conditioned checkpoint: the sweep machinery does not depend on training."""
    folder = tmp_path_factory.mktemp("ck") / "tiny"
    save_checkpoint(folder, CRNN(get_config("tiny-2d")), name="tiny", preset=P2)
    return str(folder)


def user_cases(tmp_path, size=32):
    fields = np.stack([perlin_field(size, 2, mean=m, amplitude=0.05, cells=4, seed=i)
                       for i, (m, _) in enumerate(FAR)])
    np.save(tmp_path / "fields.npy", fields)
    with open(tmp_path / "params.csv", "w") as f:
        f.write("mean,eta\n" + "".join(f"{m},{e}\n" for m, e in FAR))
    return tmp_path / "fields.npy", tmp_path / "params.csv"


def read(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_reference_outcomes_follow_the_analytic_line(tiny, tmp_path, capsys):
    """Spectral reference at 32², 60 τ: separated exactly where η < η_max(⟨φ⟩) (points far from it)."""
    fields, params = user_cases(tmp_path)
    out = tmp_path / "pd.csv"
    code = main(["phase-diagram", "--checkpoint", tiny, "--init-fields", str(fields), "--params",
                 str(params), "--horizon", "60", "--reference", "spectral", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    assert "agreement with spectral" in capsys.readouterr().out
    rows = read(out)
    assert list(rows[0]) == ["index", "mean", "eta", "amplitude", "seed", "surrogate_separated",
                             "surrogate_spread", "reference_separated", "reference_spread"]
    for row, (m, e) in zip(rows, FAR):
        expected = e < spinodal_misfit(m, P2)
        assert int(row["reference_separated"]) == expected, (m, e, row["reference_spread"])
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["points"] == len(FAR) and 0 <= summary["agreement"] <= 1
    assert set(summary["points_per_minute"]) == {"surrogate", "reference"}
    assert out.with_suffix(".png").stat().st_size > 10_000
    assert not list(tmp_path.glob("*.part*"))


def test_resume_skips_finished_points(tiny, tmp_path):
    s = SweepSettings(points=12, size=16, cells=4, horizon=3, batch=4)
    out = tmp_path / "pd.csv"
    stop, seen = threading.Event(), []

    def on_rows(rows):
        seen.extend(r["index"] for r in rows)
        stop.set()  # cancel after the first chunk

    with pytest.raises(Cancelled):
        run_sweep(s, tiny, out, on_rows=on_rows, cancel=stop)
    assert seen == [0, 1, 2, 3] and not out.exists()
    assert len(read(out.with_name("pd.csv.part"))) == 4
    computed = []
    summary = run_sweep(s, tiny, out, on_rows=lambda rows: computed.extend(r["index"] for r in rows))
    assert computed == list(range(12)) and summary["computed_points"] == 8  # 4 resumed, 8 new
    assert [int(r["index"]) for r in read(out)] == list(range(12))
    with pytest.raises(ValueError, match="exists"):
        run_sweep(s, tiny, out)


def test_resume_drops_a_torn_last_row_and_refuses_a_damaged_one(tiny, tmp_path):
    """A write cut off mid-row is recomputed; damage before the last row is reported by name."""
    s = SweepSettings(points=6, size=16, cells=4, horizon=2, batch=2)
    out, part = tmp_path / "pd.csv", tmp_path / "pd.csv.part"
    stop = threading.Event()
    with pytest.raises(Cancelled):
        run_sweep(s, tiny, out, on_rows=lambda rows: stop.set(), cancel=stop)
    intact = part.read_text()
    part.write_text(intact + "2,0.41,0.00")  # the third point's row, torn
    computed = []
    run_sweep(s, tiny, out, on_rows=lambda rows: computed.extend(r["index"] for r in rows))
    assert sorted(computed) == list(range(6)) and [int(r["index"]) for r in read(out)] == list(range(6))
    out.unlink()
    stop.clear()
    with pytest.raises(Cancelled):
        run_sweep(s, tiny, out, on_rows=lambda rows: stop.set(), cancel=stop)
    lines = part.read_text().splitlines()
    part.write_text("\n".join([lines[0], "x,y,z", *lines[1:]]) + "\n")
    with pytest.raises(InputError, match="pd.csv.part: row 2 is damaged"):
        run_sweep(s, tiny, out)


def test_resume_refuses_other_settings(tiny, tmp_path):
    out = tmp_path / "pd.csv"
    stop = threading.Event()
    with pytest.raises(Cancelled):
        run_sweep(SweepSettings(points=4, size=16, cells=4, horizon=2, batch=2), tiny, out,
                  on_rows=lambda rows: stop.set(), cancel=stop)
    with pytest.raises(ValueError, match="other settings"):
        run_sweep(SweepSettings(points=4, size=16, cells=4, horizon=5, batch=2), tiny, out)


def test_dask_local_cluster_gives_the_same_rows(tiny, tmp_path):
    s = SweepSettings(points=6, size=16, cells=4, horizon=3, batch=2)
    run_sweep(s, tiny, tmp_path / "a.csv")
    run_sweep(s, tiny, tmp_path / "b.csv", scheduler="local")
    a, b = read(tmp_path / "a.csv"), read(tmp_path / "b.csv")
    assert [r["index"] for r in a] == [r["index"] for r in b]
    np.testing.assert_allclose([float(r["surrogate_spread"]) for r in a],
                               [float(r["surrogate_spread"]) for r in b], rtol=1e-5)


def test_points_and_bad_input(tmp_path, capsys):
    grid = sample_points(SweepSettings(points=16, layout="grid"))
    assert len(grid) == 16 and min(p.mean for p in grid) == 0.2 and max(p.eta for p in grid) == 0.012
    rnd = sample_points(SweepSettings(points=50, seed=3))
    assert len({p.seed for p in rnd}) == 50 and all(0.2 <= p.mean <= 0.8 for p in rnd)
    assert main(["phase-diagram", "--points", "0", "--out", str(tmp_path / "x.csv")]) == 2
    assert "--points must be at least 1" in capsys.readouterr().err
    fields, params = user_cases(tmp_path)
    (tmp_path / "bad.csv").write_text("mean,eta\n0.3,0\n")
    assert main(["phase-diagram", "--init-fields", str(fields), "--params", str(tmp_path / "bad.csv"),
                 "--out", str(tmp_path / "y.csv")]) == 2
    assert "1 rows for 8 fields" in capsys.readouterr().err


def test_a_diverging_surrogate_is_reported_as_diverged(tmp_path):
    """Points whose surrogate blows up are 'diverged' (not homogeneous) and never agree."""
    from crane_viz.analysis.phase import outcome

    model = CRNN(get_config("tiny-2d"))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(1e20 * torch.randn(p.shape, generator=gen))
    folder = save_checkpoint(tmp_path / "wild", model, name="wild", preset=get_preset("coherent-2d"))
    s = SweepSettings(points=4, size=16, cells=4, horizon=4, batch=4, amplitude=0.3, reference="spectral")
    summary = run_sweep(s, str(folder), tmp_path / "pd.csv")
    rows = read(tmp_path / "pd.csv")
    assert summary["surrogate_diverged"] == 4 and summary["agreement"] == 0
    assert [outcome({k: float(v) for k, v in r.items()}) for r in rows] == ["diverged"] * 4


def test_cpu_passes_give_each_case_its_own_case(tiny):
    """A chunk runs the surrogate CPU_PASS cases at a time: every case (the last pass short) gets
    the spread it has when it runs alone, from its own field and with its own η. Running alone or
    in a pass changes the spread by float32 round-off only (≤ 1.2·10⁻⁵ relative measured, 1 and
    2 threads), so 10⁻⁴ tells a case from any other (different seeds: spreads > 10⁻³ apart)."""
    from crane_viz.analysis.phase import CPU_PASS, Point, classify_chunk

    n = 2 * CPU_PASS + 1
    s = SweepSettings(points=n, size=16, horizon=4, batch=n, reference="spectral")
    points = [Point(i, 0.5, 0.01 * i, 0.1, 7 + i) for i in range(n)]
    together, _ = classify_chunk(points, s, tiny)
    alone = [classify_chunk([p], s, tiny)[0][0] for p in points]
    for a, b in zip(together, alone):
        assert a["surrogate_spread"] == pytest.approx(b["surrogate_spread"], rel=1e-4)
        assert a["reference_spread"] == pytest.approx(b["reference_spread"], rel=1e-4)
    spreads = sorted(r["surrogate_spread"] for r in alone)
    assert min(b / a - 1 for a, b in zip(spreads, spreads[1:])) > 1e-3  # the cases differ (≥ 0.37 % measured)
