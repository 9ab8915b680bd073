"""Results pages (`docs/results/*.md`): written by the command that measured, with its provenance."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from benchmarks import results

REPO = Path(__file__).resolve().parents[1]
PAGES = sorted((REPO / "docs" / "results").glob("*.md"))


def test_printed_text_becomes_markdown():
    printed = ("loading\rloading 3/3\n5 files, 10 notes\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"
               "note after the table\n" + '{"benchmark": "x", "value": 1}\n')
    page = results.body(printed)
    assert page == ("```text\nloading 3/3\n5 files, 10 notes\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
                    "```text\nnote after the table\n```\n\n"
                    "Machine-readable (the last line the command printed):\n\n```json\n"
                    '{"benchmark": "x", "value": 1}\n```\n')


def test_a_finished_run_writes_its_page_with_provenance(tmp_path, capsys):
    path = tmp_path / "sub" / "page.md"
    with results.recorded(path, "A title", argv=["benchmarks/alignment.py", "--max_files", "3"]):
        print("| x |\n|---|\n| 7 |")
    assert "| 7 |" in capsys.readouterr().out  # still printed as it ran
    page = path.read_text()
    assert page.startswith("# A title\n")
    fields = dict(re.findall(r"^- (\w+): (.*)$", page, re.M))
    assert fields["command"] == "`python benchmarks/alignment.py --max_files 3`"
    assert re.match(r"[0-9a-f]{12}", fields["commit"])
    assert "cores" in fields["machine"] and re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", fields["date"])
    assert page.rstrip().endswith("| x |\n|---|\n| 7 |")


def test_a_failed_run_writes_nothing(tmp_path):
    path = tmp_path / "page.md"
    with pytest.raises(RuntimeError):
        with results.recorded(path, "A title"):
            print("| half a table |")
            raise RuntimeError("the measurement broke")
    assert not path.exists()


def test_no_path_only_prints(tmp_path, capsys):
    with results.recorded(None, "A title"):
        print("hello")
    assert capsys.readouterr().out == "hello\n" and not list(tmp_path.iterdir())


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_committed_page_names_its_command_commit_machine_and_date(page):
    text = page.read_text()
    fields = dict(re.findall(r"^- (\w+): (.*)$", text, re.M))
    assert set(results.HEADER_FIELDS) <= set(fields), f"{page.name} lacks a provenance field"
    argv = shlex.split(fields["command"].strip("`"))
    script = next(word for word in argv if word.endswith(".py") or word.startswith("-m"))
    if script.endswith(".py"):
        assert (REPO / script).is_file(), f"{page.name}: {script} is not a committed script"
    assert re.search(rf"--results[ =]docs/results/{re.escape(page.name)}\b", fields["command"]), \
        "a page is written by its own command"
    assert re.match(r"[0-9a-f]{12}", fields["commit"])


def test_the_readme_headlines_are_what_the_pages_say():
    """The README's headline table is written from the pages (`benchmarks/headlines.py`), never typed."""
    from benchmarks import headlines

    readme = (REPO / "README.md").read_text()
    assert headlines.with_table(readme) == readme, "run: python benchmarks/headlines.py --write"
    rows = headlines.table().split("\n\n")[0].splitlines()[2:]
    assert len(rows) >= 6 and all(row.count("](docs/results/") == 1 for row in rows)


def test_the_performer_targets_are_checked_not_typed(tmp_path, monkeypatch):
    from benchmarks import headlines

    page = (REPO / "docs" / "results" / headlines.FINAL_PERFORMER).read_text()
    row = '{"inputs": 1, "performer": {"level": {"velocity_mae": 8.0, "velocity_correlation_within_pieces": 0.6, ' \
          '"microtiming_mae_bins": 1.0}, "regression": {"velocity_mae": 9.0, "microtiming_mae_bins": 2.0}, ' \
          '"no_level": {"velocity_mae": 12.0}, "baselines": {"velocity_mae_piece_mean": 10.0, ' \
          '"microtiming_mae_zero_bins": 2.0, "velocity_mae_training_mean": 13.0}}}'
    (tmp_path / "page.md").write_text(page + "\n" + row + "\n")
    monkeypatch.setattr(headlines, "RESULTS", tmp_path)
    targets = headlines.performer_targets("page.md")
    assert [met for _, _, met in targets] == [True, True, True, True, True]  # 20% below, 8 < 9, ...
    assert targets[0][1] == "8.00 vs 10.00: 20.0% below"


def test_a_changed_page_makes_the_headlines_stale(tmp_path, monkeypatch):
    from benchmarks import headlines

    readme = (REPO / "README.md").read_text()
    for page in PAGES:
        (tmp_path / page.name).write_text(page.read_text())
    shipped = tmp_path / "cadenza_heldout22_shipped.md"
    text = shipped.read_text()
    value = text.split('"velocity_mae": ', 1)[1].split(",", 1)[0]  # the first: the Performer's, level given
    shipped.write_text(text.replace(f'"velocity_mae": {value}', '"velocity_mae": 99.25', 1))
    monkeypatch.setattr(headlines, "RESULTS", tmp_path)
    assert "velocity MAE 99.25" in headlines.table()
    assert headlines.with_table(readme) != readme
