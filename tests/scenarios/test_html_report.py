"""report.html: self-contained, parses as HTML, every embedded image a valid PNG equal to its
plots/ file; the same run gives the same page but for its run metadata; `twin report`
regenerates it (docs/architecture.md, Run outputs)."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import struct
import zlib
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.image
import pytest
from click.testing import CliRunner

from sim.cli import twin
from sim.report.html import METADATA_MARK, run_metadata
from sim.report.plots import PLOTS, latency_cdf_points, shift_boundaries
from sim.report.trace import read_trace
from sim.run.session import run_scenario
from tests.scenarios import harness

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
VOID = {"meta", "img", "br", "hr", "link", "input", "col", "area", "base", "source", "wbr"}
HOSTILE = "Fish & chips <script>alert(1)</script>"
FAULTS = [
    "horizon=12h",
    "mes.reporting=batched",
    "faults.duplicate_rate=0.05",
    "faults.loss_rate=0.02",
    "edge_cases.missing_lot_rate=0.2",
    "edge_cases.ecos_per_week=20",  # REVISION_MISMATCH dead letters
    f"description={HOSTILE}",
]


class Page(HTMLParser):
    """Tags, attributes and text of a page; fails on a closing tag that closes nothing open."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.open: list[str] = []
        self.images: dict[str, str] = {}  # figure id -> img src
        self.text: list[str] = []
        self.doctype = ""
        self.feed(text)
        self.close()

    def handle_decl(self, decl: str) -> None:
        self.doctype = decl

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if tag == "img":
            figure = next(a for t, a in reversed(self.tags) if t == "figure")
            self.images[str(figure["id"]).removeprefix("plot-")] = str(attributes["src"])
        if tag not in VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open[-1] == tag, f"</{tag}> closes {self.open[-1:]}"
        self.open.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def count(self, tag: str) -> int:
        return sum(1 for name, _ in self.tags if name == tag)


def _chunks(png: bytes) -> list[tuple[bytes, bytes]]:
    """(type, data) of every chunk, checking each CRC."""
    assert png.startswith(PNG_SIGNATURE)
    chunks, at = [], len(PNG_SIGNATURE)
    while at < len(png):
        (length,) = struct.unpack(">I", png[at : at + 4])
        kind, data = png[at + 4 : at + 8], png[at + 8 : at + 8 + length]
        (crc,) = struct.unpack(">I", png[at + 8 + length : at + 12 + length])
        assert zlib.crc32(kind + data) == crc, kind
        chunks.append((kind, data))
        at += 12 + length
    return chunks


def _without_metadata(page: str) -> str:
    begin, end = page.index(METADATA_MARK[0]), page.index(METADATA_MARK[1])
    return page[:begin] + page[end:]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    """The same faulty half-day run, twice."""
    base = tmp_path_factory.mktemp("html")
    source = harness.write_scenario(base / "small.yaml", harness.document())
    for name in ("a", "b"):
        run_scenario(source, FAULTS, out_dir=base / name, progress=False)
    return base / "a", base / "b"


def test_report_html_parses_and_holds_the_tables_and_one_image_per_plot(runs):
    out = runs[0]
    text = (out / "report.html").read_text(encoding="utf-8")
    page = Page(text)
    summary = json.loads((out / "summary.json").read_text())
    assert page.doctype.lower() == "doctype html" and page.open == []
    assert page.count("table") >= 7 and page.count("script") == 0 and page.count("link") == 0
    assert sorted(page.images) == sorted(PLOTS) and page.count("img") == len(PLOTS)
    for _tag, attributes in page.tags:
        for name, value in attributes.items():
            assert "http://" not in (value or "") and "https://" not in (value or ""), name
    words = " ".join(page.text)
    for heading in ("Key figures", "Plots", "Detail", "Messages by type", "Core answers",
                    "Dead letters by code", "Edge cases exercised", "Latency per workflow",
                    "Run"):  # fmt: skip
        assert heading in words
    for workflow in summary["latency_ms"]:
        assert workflow in words
    assert HOSTILE in words and "&lt;script&gt;" in text  # escaped, so never a tag
    assert summary["dead_letters"]["total"] > 0 and summary["duplicates"]["delivered"] > 0


def test_messages_by_type_are_the_traces_messages_counted_by_type(runs):
    summary = json.loads((runs[0] / "summary.json").read_text())
    records = read_trace(runs[0] / "trace.jsonl.gz")
    traced = Counter(r["type"] for r in records if r["kind"] == "message")
    assert len(traced) > 3 and summary["events"]["by_type"] == dict(sorted(traced.items()))
    assert sum(traced.values()) == summary["events"]["messages"]
    words = " ".join(Page((runs[0] / "report.html").read_text(encoding="utf-8")).text)
    busiest, sent = traced.most_common(1)[0]
    assert f"{busiest} {sent:,}" in words


def test_every_embedded_image_is_a_valid_png_equal_to_its_plots_file(runs):
    out = runs[0]
    page = Page((out / "report.html").read_text(encoding="utf-8"))
    for name, src in page.images.items():
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix), name
        png = base64.b64decode(src.removeprefix(prefix), validate=True)
        kinds = [kind for kind, _data in _chunks(png)]
        assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and b"IDAT" in kinds
        assert b"tIME" not in kinds  # no date in the file
        width, height = struct.unpack(">II", dict(_chunks(png))[b"IHDR"][:8])
        assert matplotlib.image.imread(io.BytesIO(png), format="png").shape[:2] == (height, width)
        assert (out / "plots" / f"{name}.png").read_bytes() == png


def test_the_same_run_gives_the_same_page_but_for_its_run_metadata(runs):
    """PNGs are byte-for-byte deterministic, so only the run section (wall time, rates) may
    differ between two runs of the same scenario, seed and code."""
    first, second = ((out / "report.html").read_text(encoding="utf-8") for out in runs)
    assert _without_metadata(first) == _without_metadata(second)
    for name in PLOTS:
        png = (runs[0] / "plots" / f"{name}.png").read_bytes()
        assert png == (runs[1] / "plots" / f"{name}.png").read_bytes(), name
    summary = json.loads((runs[0] / "summary.json").read_text())
    metadata = first[first.index(METADATA_MARK[0]) :]
    for figure in ("mfg-twin version", "git commit", "scenario sha256", "messages/s"):
        assert figure in metadata
    assert f"{summary['run']['wall_s']} s" in metadata


def test_twin_report_regenerates_the_page_of_a_copied_run(runs, tmp_path):
    copy = shutil.copytree(runs[0], tmp_path / "copy")
    (copy / "report.html").unlink()
    shutil.rmtree(copy / "plots")
    result = CliRunner().invoke(twin, ["report", str(copy)])
    assert result.exit_code == 0, result.output
    rebuilt = (copy / "report.html").read_text(encoding="utf-8")
    assert rebuilt == (runs[0] / "report.html").read_text(encoding="utf-8")
    assert sorted(path.stem for path in (copy / "plots").glob("*.png")) == sorted(PLOTS)


def test_a_rebuilt_run_without_timings_says_so():
    rows = dict(run_metadata({"seed": 4, "run": {}}, "name: x\n"))
    assert rows["seed"] == "4" and rows["wall time"] == rows["messages/s"] != ""
    assert "not recorded" in rows["wall time"] and len(rows["scenario sha256"]) == 64
    if (Path(__file__).resolve().parents[2] / ".git").exists():  # this checkout's commit
        assert re.fullmatch(r"[0-9a-f]{40}( \(uncommitted changes\))?", rows["git commit"])


def test_plot_inputs_shift_ends_and_cdf_points(runs):
    scenario = harness.scenario()  # 3 x 8 h shifts from Monday 06:00
    assert shift_boundaries(scenario, 86400) == [8 * 3600.0, 16 * 3600.0, 24 * 3600.0]
    histograms = json.loads((runs[0] / "histograms.json").read_text())
    xs, ys = latency_cdf_points(histograms["confirmation"]["total"])
    assert xs == sorted(xs) and ys == sorted(ys) and ys[-1] == 1.0
