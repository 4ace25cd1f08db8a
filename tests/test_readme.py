"""The README's Python example runs as written (on a slice of the bundled data)."""

import re
from pathlib import Path

import tfmtl

README = Path(__file__).resolve().parents[1] / "README.md"


def python_example() -> str:
    text = README.read_text()
    section = text[text.index("## Python API") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_example_runs(census, monkeypatch, tmp_path):
    monkeypatch.setattr(tfmtl.datasets, "census_income", lambda path=None: census)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(python_example(), str(README), "exec"), namespace)
    assert set(namespace["preds"]) == {"income", "marital"}
    assert namespace["preds"]["income"].shape == (len(census[1]),)
    assert namespace["scores"]["marital_auc"] > 0.9
    assert (tmp_path / "mmoe.keras").is_file()
    assert type(namespace["reloaded"]) is tfmtl.zoo.MMoE


def test_quick_start_and_ci_run_the_same_test_command():
    quick_start = re.search(r"## Quick start.*?```bash\n(.*?)```", README.read_text(), re.S).group(1).splitlines()
    assert len(quick_start) == 2
    ci = (README.parent / ".ci" / "run").read_text()
    assert quick_start[1] in ci
    assert "--recipe zoo/census-income/mmoe.toml" in quick_start[0]
