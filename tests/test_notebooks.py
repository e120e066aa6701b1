"""Every notebook in notebooks/: one skeleton, rendered from the current code with its figures,
no internal words, a named parameter source, no typed result tables, and it runs in quick mode.

Execution needs CIFAR-10 (see data/README.md); without it that test skips, unless
CHAINER_NETS_REQUIRE_DATA=1 (as in CI), where it fails.
"""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

import pytest

from chainer_nets import data as cdata
from chainer_nets import notebook as nb
from chainer_nets import notebook_render as render

SOURCES = render.notebook_sources()
IDS = [s.stem for s in SOURCES]

#: The skeleton's second-level headings, in order (a notebook may add others in between).
SKELETON = [
    "The question",
    "The idea",
    "The equations, next to the code",
    "The block",
    "The network and its parameter count",
    "Recipe and departures",
    "The experiment",
    "The full reproduction",
    "Why it works, and when it fails",
    "What to take away",
    "Appendix: sources",
]
#: Helper calls every notebook makes (the skeleton's cells).
REQUIRED_CALLS = [
    "nb.draw_block",
    "nb.param_check",
    "nb.show_recipe",
    "nb.quick_settings",
    "nb.reproduction",
]
#: Words about how the project is built, never about the papers: none may reach a reader.
INTERNAL = [
    r"\bSPEC\b",
    r"\[MEM",
    r"\bMEM-[A-Z]",
    r"(?i)from memory",
    r"(?i)read by the model's author",
    r"/work/",
    r"(?i)\bsession\b",
    r"(?i)\bagents?\b",
    r"(?i)\bissue \d+",
]
#: A code cell whose source matches this draws a figure.
DRAWS = re.compile(
    r"\bplt\.(show|subplots|figure|plot)\b|\bnb\.(draw_block|plot_log|plot_runs)\(|"
    r"\bnb\.quick_train\((?![^)]*plot=False)"
)


def _has_cifar10() -> bool:
    root = os.environ.get("CHAINER_DATASET_ROOT")
    if root and (Path(root) / "pfnet" / "chainer" / "cifar" / "cifar-10.npz").is_file():
        return True
    return cdata.chainer_cache_path().is_file()


def _need_data() -> None:
    if _has_cifar10():
        return
    msg = (
        "CIFAR-10 not found in Chainer's cache "
        f"({cdata.chainer_cache_path()}); run once with internet access, or set "
        "CHAINER_DATASET_ROOT to a folder holding pfnet/chainer/cifar/cifar-10.npz "
        "(see data/README.md)"
    )
    if os.environ.get("CHAINER_NETS_REQUIRE_DATA") == "1":
        pytest.fail(msg + " [CHAINER_NETS_REQUIRE_DATA=1]")
    pytest.skip(msg)


def _ipynb(source: Path):
    import nbformat

    return nbformat.read(source.with_suffix(".ipynb"), as_version=4)


def _hint(source: Path) -> str:
    return f"run: python -m chainer_nets.notebook_render render {source.stem}"


def test_notebooks_are_discovered() -> None:
    assert {"08_resnet", "11_preact_resnet", "15_wide_resnet"} <= set(IDS)


@pytest.mark.parametrize("source", SOURCES, ids=IDS)
def test_ipynb_matches_py(source: Path) -> None:
    """The committed .ipynb has exactly the cells of its .py (re-render if this fails)."""
    msg = render.out_of_sync(source)
    assert msg is None, f"{msg}; {_hint(source)}"


@pytest.mark.parametrize("source", SOURCES, ids=IDS)
def test_rendered_from_current_code(source: Path) -> None:
    """The .ipynb's outputs come from the package as it is now (its recorded source digest)."""
    msg = render.stale(source)
    assert msg is None, f"{msg}; {_hint(source)}"


@pytest.mark.parametrize("source", SOURCES, ids=IDS)
def test_ipynb_has_outputs_and_stays_small(source: Path) -> None:
    """The rendered notebook was executed (has outputs, no errors) and is reviewable in size."""
    notebook = _ipynb(source)
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert outputs, f"{source.stem}.ipynb has no outputs: render it"
    assert not [o for o in outputs if o.output_type == "error"]
    assert source.with_suffix(".ipynb").stat().st_size < 600_000


@pytest.mark.parametrize("source", SOURCES, ids=IDS)
def test_cells_that_draw_hold_their_figures(source: Path) -> None:
    """Every code cell that draws a figure holds an image output in the rendered .ipynb."""
    missing = [
        i
        for i, c in enumerate(_ipynb(source).cells)
        if c.cell_type == "code"
        and DRAWS.search(c.source)
        and not any("image/png" in o.get("data", {}) for o in c.get("outputs", []))
    ]
    assert not missing, f"cells {missing} draw but hold no image/png; {_hint(source)}"


def test_draw_pattern_recognises_figure_cells() -> None:
    """The figure detector itself: what draws and what does not."""
    assert DRAWS.search('nb.draw_block("x -> conv -> y")')
    assert DRAWS.search("fig, ax = plt.subplots()")
    assert DRAWS.search("r = nb.quick_train('resnet20', **QUICK)")
    assert not DRAWS.search("r = nb.quick_train('resnet20', plot=False, **QUICK)")
    assert not DRAWS.search("nb.param_check('resnet20', source='paper')")


@pytest.mark.parametrize("source", SOURCES, ids=IDS)
def test_no_internal_words(source: Path) -> None:
    """No word about how the project is built, in the source or in the rendered outputs."""
    for path in (source, source.with_suffix(".ipynb")):
        text = path.read_text()
        found = [m.group(0) for p in INTERNAL for m in [re.search(p, text)] if m]
        assert not found, f"{path.name} contains {found}"


def test_internal_words_are_caught() -> None:
    """The word list matches what it must and spares ordinary prose."""
    bad = ["see SPEC.md", "[MEM-L] width", "written from memory", "read by the model's author"]
    good = ["the specification of the paper", "memory use per layer", "a special case"]
    assert all(any(re.search(p, t) for p in INTERNAL) for t in bad)
    assert not any(re.search(p, t) for p in INTERNAL for t in good)


def _calls(source: Path, name: str) -> list[ast.Call]:
    tree = ast.parse(source.read_text())
    return [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call)
        and isinstance(n.func, ast.Attribute)
        and n.func.attr == name
        and isinstance(n.func.value, ast.Name)
        and n.func.value.id == "nb"
    ]


@pytest.mark.parametrize("source", SOURCES, ids=IDS)
def test_skeleton(source: Path) -> None:
    """The skeleton's headings in order, the helper imported as ``nb``, its cells' calls, and
    quick settings as one ``QUICK`` dict in the parameters cell."""
    text = source.read_text()
    headings = re.findall(r"^# ## (.+)$", text, re.M)
    at = [next((i for i, h in enumerate(headings) if h.startswith(s)), -1) for s in SKELETON]
    missing = [s for s, i in zip(SKELETON, at, strict=True) if i < 0]
    assert not missing, f"{source.name} lacks the sections {missing}"
    assert at == sorted(at), f"{source.name}: sections out of order {headings}"
    assert "from chainer_nets import notebook as nb\n" in text
    assert "notebook as nbh" not in text
    absent = [c for c in REQUIRED_CALLS if not _calls(source, c.split(".")[1])]
    assert not absent, f"{source.name} never calls {absent}"
    params = text.split('# %% tags=["parameters"]', 1)[1].split("# %%", 1)[0]
    assert re.search(r"^QUICK = dict\(", params, re.M), "quick settings: one QUICK = dict(...)"


@pytest.mark.parametrize("source", SOURCES, ids=IDS)
def test_experiment_prints_its_noise_level(source: Path) -> None:
    """The experiment's output states its noise level (``nb.noise_level`` for an accuracy,
    a sentence starting "Noise level:" for any other measure)."""
    printed = "".join(
        str(o.get("text", "")) for c in _ipynb(source).cells for o in c.get("outputs", [])
    )
    assert "Noise level:" in printed, f"{source.name}: no noise level printed; {_hint(source)}"


@pytest.mark.parametrize("source", SOURCES, ids=IDS)
def test_parameter_check_names_its_source(source: Path) -> None:
    """Every parameter check says where its reference figure comes from, and shows it."""
    for call in _calls(source, "param_check"):
        kw = {k.arg: k.value for k in call.keywords}
        assert "source" in kw, f"{source.name}: param_check without source="
        assert isinstance(kw["source"], ast.Constant) and kw["source"].value in nb.PARAM_SOURCES
    for cell in _ipynb(source).cells:
        if cell.cell_type == "code" and "nb.param_check(" in cell.source:
            shown = "".join(
                str(o.get("data", {}).get("text/markdown", "")) + str(o.get("text", ""))
                for o in cell.outputs
            )
            assert "source of the figure" in shown and "Reference figure:" in shown


@pytest.mark.parametrize("source", SOURCES, ids=IDS)
def test_no_typed_result_tables(source: Path) -> None:
    """Results reach a notebook only through the generated table: no markdown table with an
    accuracy or error column is typed into a markdown cell."""
    for cell in _ipynb(source).cells:
        if cell.cell_type != "markdown":
            continue
        headers = [ln for ln in cell.source.splitlines() if ln.lstrip().startswith("|")][:1]
        assert not [h for h in headers if re.search(r"(?i)acc|error|err\.|top-1", h)], (
            f"{source.name}: a typed result table; use nb.reproduction"
        )


@pytest.mark.parametrize("source", SOURCES, ids=IDS)
def test_parameters_cell_is_quick(source: Path) -> None:
    """The committed parameters select the quick CPU mode."""
    text = source.read_text()
    assert '# %% tags=["parameters"]' in text
    assert re.search(r'^MODE = "quick"$', text, re.M)
    assert re.search(r'^DEVICE = "@numpy"$', text, re.M)


def test_quick_settings_are_lighter_only_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    """``quick_settings`` applies the CI overrides only when the tests execute a notebook."""
    quick, ci = {"train_subset": 2048, "epochs": 4}, {"train_subset": 512}
    monkeypatch.delenv(render.CI_ENV, raising=False)
    assert nb.quick_settings(quick, ci) == quick
    monkeypatch.setenv(render.CI_ENV, "1")
    assert nb.quick_settings(quick, ci) == {"train_subset": 512, "epochs": 4}


def test_stale_notebook_is_flagged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A notebook whose recorded digest differs from the package's is reported with the files."""
    import nbformat

    src = tmp_path / "99_x.py"
    src.write_text("# %%\nprint(1)\n")
    book = nbformat.v4.new_notebook()
    files = render.package_files(src)
    book.metadata[render.META_KEY] = {
        "package_digest": render.package_digest(files),
        "package_files": files,
    }
    nbformat.write(book, src.with_suffix(".ipynb"))
    assert render.stale(src) is None
    changed = dict(files, **{"notebook.py": "0" * 16})
    monkeypatch.setattr(render, "package_files", lambda source=None: changed)
    msg = render.stale(src)
    assert msg and "older code" in msg and "notebook.py" in msg


def test_digest_leaves_out_only_other_papers_model_files(tmp_path: Path) -> None:
    """A notebook's digest covers the shared package, its paper's model module and recipe (and
    what they build on, and models it names), not the model modules of unrelated papers."""
    src = tmp_path / "14_x.py"
    src.write_text("# %%\nmodel = 'resnet20'\n")
    files = render.package_files(src)
    everything = render.package_files()
    assert "models/swapout.py" in files and "recipes/swapout.toml" in files
    assert "models/wide_resnet.py" in files  # swapout's units build on WideBasic
    assert "models/resnet.py" in files and "recipes/resnet.toml" in files  # named in a cell
    assert "models/fractalnet.py" not in files and "recipes/fractalnet.toml" not in files
    shared = {k for k in everything if not k.startswith(("models/", "recipes/"))}
    assert shared <= set(files) and "train.py" in files and "blocks.py" in files


def test_noise_level_is_the_binomial_standard_error() -> None:
    """50% on 400 images: sqrt(0.25 / 400) = 2.5 points."""
    assert abs(nb.accuracy_se(50.0, 400) - 2.5) < 1e-9
    assert nb.accuracy_se(0.0, 100) > 0  # never claims zero noise


def test_block_description_is_parsed_into_a_graph() -> None:
    """``a -[label]-> b`` paths become nodes and labelled edges; a cycle is refused."""
    nodes, edges = nb._parse_block("x -> conv#1 -> + -> y; x -[identity]-> +")
    assert nodes == ["x", "conv#1", "+", "y"]
    assert ("x", "+", "identity") in edges and ("conv#1", "+", "") in edges
    assert nb._layers(nodes, edges) == {"x": 0, "conv#1": 1, "+": 2, "y": 3}
    with pytest.raises(ValueError, match="cycle"):
        nb._layers(*nb._parse_block("a -> b -> a"))


def test_shape_table_lists_tuple_outputs() -> None:
    """A link returning two streams (RiR) shows both shapes, not an empty cell."""
    from chainer_nets.registry import get_model

    rows = nb.trace(get_model("rir_wide18"))
    stem = next(r for r in rows if r["path"] == "stem")
    assert stem["out"] == ((1, 48, 32, 32), (1, 48, 32, 32))
    assert nb._shape(stem["out"]) == "1×48×32×32, 1×48×32×32"


@pytest.mark.parametrize("source", SOURCES, ids=IDS)
def test_notebook_executes_in_quick_mode(source: Path) -> None:
    """Run the .py top to bottom in a fresh kernel with the CI settings (asserts must hold)."""
    _need_data()
    pytest.importorskip("nbclient")
    pytest.importorskip("jupytext")
    pytest.importorskip("ipykernel")
    book = render.execute(source, timeout=400, ci=True)
    errors = [
        o
        for c in book.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.output_type == "error"
    ]
    assert not errors
