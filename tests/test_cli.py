"""The one command line: every subcommand explains itself; bad input gives a clear error, exit 2."""

from __future__ import annotations

import pytest

from backtests.bench import render_markdown
from backtests.cli import build_parser, main

SUBCOMMANDS = [
    ["catalog", "ingest"],
    ["catalog", "info"],
    ["catalog", "synth"],
    ["catalog", "calibrate"],
    ["teacher", "extract"],
    ["probe"],
    ["distill"],
    ["eval-table"],
    ["bench"],
    ["demo"],
    ["paper"],
    ["fill-validate"],
    ["backtest"],
    ["compare"],
    ["sweep"],
]


@pytest.mark.parametrize("command", SUBCOMMANDS, ids=" ".join)
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--help"])
    assert exit_.value.code == 0
    assert "usage: cmm " + " ".join(command) in capsys.readouterr().out


def test_top_level_help_lists_the_commands(capsys):
    help_text = build_parser().format_help()
    for name in ("catalog", "teacher", "probe", "distill", "eval-table", "bench", "demo"):
        assert name in help_text


def test_info_on_a_folder_that_is_not_a_catalog_is_a_clear_error(tmp_path, capsys):
    assert main(["catalog", "info", "--catalog", str(tmp_path)]) == 2
    assert "is not a catalog" in capsys.readouterr().err


def test_probe_on_an_empty_features_folder_is_a_clear_error(tmp_path, capsys):
    assert main(["probe", "--features", str(tmp_path), "--out", str(tmp_path / "p")]) == 2
    assert "run `cmm teacher extract" in capsys.readouterr().err


def test_distill_with_a_plan_that_does_not_exist_is_a_clear_error(tmp_path, capsys):
    assert main(["distill", "--features", str(tmp_path), "--out", str(tmp_path / "b")]) == 2
    assert "extract.json is missing" in capsys.readouterr().err


def test_unknown_ingest_format_is_refused_by_the_parser(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["catalog", "ingest", "csv", "x.csv", "--catalog", str(tmp_path)])
    assert exit_.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_benchmarks_markdown_names_the_command_for_every_figure():
    figures = {"command": "cmm bench --quick", "machine": {"cores": 2}, "ingest_deltas_per_s": 123456, "speedup": 9999}
    text = render_markdown(figures)
    assert "| `ingest_deltas_per_s` | 123,456 |" in text
    assert text.count("`cmm bench --quick`") >= 3
