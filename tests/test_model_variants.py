"""Model variants: `--set MODEL.PARAM=VALUE` and names like "cnn[test_views=2]": parameters typed from the
estimator's own, validated before anything runs, recorded in params.json, and named distinctly in the tables."""

from __future__ import annotations

import json

import pytest

from fer_bench.cli import main
from fer_bench.data.synthetic import make_synthetic
from fer_bench.errors import FerBenchError
from fer_bench.models import make_model, model_variant, parse_variant, variant_name
from fer_bench.storage import cell_dir


def test_variant_names_round_trip_and_are_canonical():
    assert variant_name("logreg", {}) == "logreg"
    name = variant_name("logreg", {"max_iter": 20, "Cs": (0.01,), "tol": 1e-3})
    assert name == "logreg[Cs=(0.01,),max_iter=20,tol=0.001]"
    assert parse_variant(name) == ("logreg", {"Cs": (0.01,), "max_iter": 20, "tol": 0.001})
    assert parse_variant("cnn[test_views=auto]") == ("cnn", {"test_views": "auto"})
    model = make_model(name, seed=4)
    assert (model.Cs, model.max_iter, model.tol, model.random_state) == ((0.01,), 20, 0.001, 4)


def test_set_values_are_typed_from_the_defaults():
    assert model_variant("logreg", {"max_iter": "20", "tol": "1e-3"}) == "logreg[max_iter=20,tol=0.001]"
    assert model_variant("hog_svm", {"cell_sizes": "(8,)"}) == "hog_svm[cell_sizes=(8,)]"
    assert model_variant("logreg", {"tol": "1"}) == "logreg[tol=1.0]"  # an integer where a float is expected


@pytest.mark.parametrize("assignment, message", [
    ({"C": "0.01"}, "logreg has no parameter 'C'; its parameters: Cs, max_iter"),
    ({"max_iter": "many"}, "expected an integer like its default 300"),
    ({"max_iter": "2.5"}, "expected an integer"),
    ({"tol": "small"}, "expected a number"),
    ({"Cs": "0.01"}, "expected a tuple"),
    ({"seed": "3"}, "has no parameter 'seed'"),  # the grid's --seeds sets it
])
def test_a_bad_setting_is_refused_with_what_and_where(assignment, message):
    with pytest.raises(FerBenchError, match="--set logreg") as info:
        model_variant("logreg", assignment)
    assert message in str(info.value)


@pytest.fixture
def small_data(monkeypatch):
    dataset = make_synthetic(n_train=420, n_public=140, n_private=140, seed=0)
    monkeypatch.setattr("fer_bench.data.load_dataset", lambda *args, **kwargs: dataset)
    return dataset


def test_cli_runs_a_variant_beside_its_model_and_records_its_parameters(tmp_path, small_data, capsys):
    out = tmp_path / "results"
    code = main(["run", "--tasks", "binary", "--models", "logreg,logreg[Cs=(0.01,)]", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    plain = json.loads((cell_dir(out, "binary", "logreg", 0) / "params.json").read_text())
    variant = json.loads((cell_dir(out, "binary", "logreg[Cs=(0.01,)]", 0) / "params.json").read_text())
    assert variant["params"]["Cs"] == [0.01] and plain["params"]["Cs"] != [0.01]
    assert variant["selected"]["C"] == 0.01
    summary = (out / "summary.md").read_text()
    assert "| binary | logreg |" in summary and "| binary | logreg[Cs=(0.01,)] |" in summary

    code = main(["run", "--tasks", "binary", "--models", "logreg", "--set", "logreg.max_iter=20", "--out",
                 str(out), "--no-report"])
    assert code == 0
    assert json.loads((cell_dir(out, "binary", "logreg[max_iter=20]", 0) / "params.json").read_text())[
        "params"]["max_iter"] == 20


@pytest.mark.parametrize("argv, needle", [
    (["--models", "logreg", "--set", "logreg.C=0.01"], "logreg has no parameter 'C'"),
    (["--models", "logreg", "--set", "hog_svm.Cs=(1.0,)"], "model 'hog_svm' is not in the grid"),
    (["--models", "logreg", "--set", "logreg=3"], "expected MODEL.PARAM=VALUE"),
    (["--models", "logreg[Cs]"], "expected param=value inside the brackets"),
])
def test_a_bad_set_is_one_line_and_writes_nothing(tmp_path, small_data, capsys, argv, needle):
    out = tmp_path / "results"
    code = main(["run", "--tasks", "binary", *argv, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_reference_defaults_to_the_cnn_else_the_most_accurate_on_publictest_and_can_be_named(tmp_path, small_data,
                                                                                             capsys):
    import csv

    out = tmp_path / "results"
    assert main(["run", "--tasks", "binary", "--models", "hog_svm,logreg", "--out", str(out)]) == 0
    with open(out / "metrics.csv", newline="") as fh:
        public = {r["model"]: float(r["accuracy"]) for r in csv.DictReader(fh) if r["split"] == "PublicTest"}
    best = max(public, key=public.get)
    other = min(public, key=public.get)
    with open(out / "significance.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {(r["model_a"], r["model_b"]) for r in rows} == {(best, other)}  # no CNN: the most accurate
    summary = (out / "summary.md").read_text()
    assert f"the most accurate model on PublicTest): binary {best}." in summary
    assert "## Is the reference model's difference significant?" in summary

    assert main(["report", "--out", str(out), "--reference", other]) == 0
    with open(out / "significance.csv", newline="") as fh:
        assert {(r["model_a"], r["model_b"]) for r in csv.DictReader(fh)} == {(other, best)}
    assert f"(named with --reference): binary {other}." in (out / "summary.md").read_text()

    capsys.readouterr()
    assert main(["report", "--out", str(out), "--reference", "cnn"]) == 2
    assert "--reference cnn: no cells of that model" in capsys.readouterr().err
    assert main(["run", "--tasks", "binary", "--models", "logreg", "--reference", "nope", "--out",
                 str(tmp_path / "other")]) == 2
    assert not (tmp_path / "other").exists()
