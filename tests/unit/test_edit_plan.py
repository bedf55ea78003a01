"""``freshet bench edits --plan``: the edit cost of a chunk context, planned from the chunking alone."""

from ops.bench.edits import first_heading, planned_cost
from schemas.change import ChangeEvent
from workers.chunking import Context

PAGE = "# Guide\n\n## Install\n\n{install}\n\n## Use\n\nCall the API and read the answer it gives back."


def ev(version: int, install: str, title: str | None = None, h1: str = "Guide") -> ChangeEvent:
    content = PAGE.format(install=install).replace("# Guide", f"# {h1}")
    return ChangeEvent(doc_id="guide.md", op="upsert", version=version, content=content, title=title)


def words(text: str) -> int:
    return len(text.split())


def test_an_edit_costs_the_chunks_it_touches_and_a_title_change_costs_the_page() -> None:
    history = [ev(1, "Run the installer."), ev(2, "Run the installer, then wait."),
               ev(3, "Run the installer, then wait.", h1="Handbook")]
    none = planned_cost(history, Context(), words, min_chars=0, start=1)
    assert none["chunks"] == 2  # v2: its install chunk; v3: the chunk the renamed H1 opens (joined to Install)
    titled = planned_cost(history, Context(title="all"), words, min_chars=0, start=1, h1_titles=True)
    assert titled["chunks"] == 3  # v3's new title re-embeds the Use chunk as well
    assert titled["chars"] > none["chars"]
    first = planned_cost(history, Context(title="first"), words, min_chars=0, start=1, h1_titles=True)
    assert first["chunks"] == 2  # only the first chunk carries the title: it changed with the H1 anyway
    paths = planned_cost(history, Context(headings=True), words, min_chars=0, start=1)
    assert paths["chunks"] == 3  # the renamed H1 is in every chunk's heading path


def test_first_heading() -> None:
    assert first_heading("intro\n\n# Title here\n\n# Second") == "Title here"
    assert first_heading("## only a section") is None and first_heading(None) is None
