"""The HTML report: self-contained, no script breakout from the embedded data, atomic writes."""

import base64
import json
import re
import struct
import zlib

from gbair.reports import html as report_html

EVIL = "<script>alert(1)</script>"
BREAKOUT = "</script><b>x</b>"


def png_data_uri(width: int = 160, height: int = 40) -> str:
    """A small gray-scale gradient PNG (a stand-in for a plot), built with zlib alone."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    rows = b"".join(b"\0" + bytes(255 * x // (width - 1) for x in range(width)) for _ in range(height))
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def sample_data() -> dict:
    """Two iterations over five training examples; t1's text is a script tag, t2's tries to close ours."""
    train = {
        "ids": ["t0", "t1", "t2", "t3", "t4"],
        "texts": ["cheap pills now", f"hello {EVIL} bye", f"meeting notes {BREAKOUT}", "win a prize", "lunch?"],
        "labels": [1, 0, 0, 1, 0],
        "corrupted": [False, True, None, False, True],
    }

    def influences(*rows):
        return [{"train": t, "dot": d, "cosine": c} for t, d, c in rows]

    return {
        "title": "G-BAIR <demo> report",
        "class_names": ["ham", "spam"],
        "metrics": {"header": ["strategy", "iteration", "accuracy"],
                    "rows": [["tracin", 0, 0.8125], ["tracin", 1, 0.875]]},
        "plots": {"accuracy": png_data_uri()},
        "train": train,
        "iterations": [
            {"strategy": "tracin", "iteration": 0,
             "misclassified": [
                 {"id": "v0", "text": "free money, click", "gold": 1, "predicted": 0,
                  "proponents": influences((1, 2.5, 0.61), (4, 1.25, 0.33)),
                  "opponents": influences((0, -1.5, -0.42))},
                 {"id": "v1", "text": "see you at lunch", "gold": 0, "predicted": 1,
                  "proponents": influences((3, 0.75, 0.2)), "opponents": []},
             ],
             "flagged": [{"train": 1, "score": 3.5}, {"train": 4, "score": 2.0}],
             "n_flagged_corrupted": 2, "precision_so_far": 1.0},
            {"strategy": "tracin", "iteration": 1,
             "misclassified": [
                 {"id": "v2", "text": f"reply {EVIL}", "gold": 1, "predicted": 0,
                  "proponents": influences((2, 0.5, 0.1)), "opponents": influences((3, -0.25, -0.05))},
             ],
             "flagged": [{"train": 2, "score": 1.5}],
             "n_flagged_corrupted": None, "precision_so_far": None},
        ],
    }


def embedded_json(page: str) -> dict:
    match = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S)
    assert match, "no report-data block"
    return json.loads(match.group(1))


def test_no_script_breakout_and_no_urls():
    page = report_html.render_report(sample_data())
    assert "<script>alert(1)" not in page
    assert "</script><b>" not in page
    assert "<demo>" not in page  # the title is escaped in <title> too
    # Exactly the data block and the one code block.
    assert page.count("<script") == 2
    assert page.count("</script>") == 2
    assert page.count('<script type="application/json" id="report-data">') == 1
    assert "http://" not in page and "https://" not in page
    assert "innerHTML" not in page


def test_urls_in_texts_do_not_appear_as_urls():
    data = sample_data()
    data["train"]["texts"][0] = "visit http://spam.example/ or https://x.example"
    page = report_html.render_report(data)
    assert "http://" not in page and "https://" not in page
    assert embedded_json(page)["train"]["texts"][0] == data["train"]["texts"][0]


def test_json_round_trips():
    data = sample_data()
    assert embedded_json(report_html.render_report(data)) == data


def test_non_finite_and_numpy_values_become_json():
    import numpy as np

    data = sample_data()
    data["iterations"][0]["precision_so_far"] = float("nan")
    data["iterations"][0]["flagged"][0]["score"] = np.float32(3.5)
    data["train"]["labels"] = np.array(data["train"]["labels"])
    parsed = embedded_json(report_html.render_report(data))
    assert parsed["iterations"][0]["precision_so_far"] is None
    assert parsed["iterations"][0]["flagged"][0]["score"] == 3.5
    assert parsed["train"]["labels"] == [1, 0, 0, 1, 0]


def test_write_report_is_atomic(tmp_path):
    data = sample_data()
    path = tmp_path / "sub" / "report.html"
    report_html.write_report(path, data)
    assert [p.name for p in path.parent.iterdir()] == ["report.html"]  # no temp file left behind
    assert path.read_text(encoding="utf-8") == report_html.render_report(data)
    assert embedded_json(path.read_text(encoding="utf-8")) == data
