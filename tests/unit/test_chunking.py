import pytest

from workers.chunking import Context, chunk_document


def words(text: str) -> int:
    return len(text.split())


DOC = """# Guide

Intro paragraph that explains what the guide is about, long enough to stand on its own as a chunk of text.

## Install

Run the installer. It takes a while, and it prints what it does along the way so that you can follow.

```python
def main():

    print("blank lines inside a fence stay in one block")
```

## Use

Call the API with your key and read the answer it gives back to you, then act on what it says.
"""


def chunks(text: str, max_tokens: int = 256) -> list[tuple[tuple[str, ...], str]]:
    out = chunk_document(text, count_tokens=words, min_chars=60, max_tokens=max_tokens)
    return [(c.heading_path, c.text) for c in out]


def test_heading_paths_and_positions() -> None:
    out = chunk_document(DOC, count_tokens=words, min_chars=60)
    assert [c.heading_path for c in out] == [("Guide",), ("Guide", "Install"), ("Guide", "Install"), ("Guide", "Use")]
    assert [c.text.split("\n")[0] for c in out] == ["# Guide", "## Install", "```python", "## Use"]
    assert [c.position for c in out] == [0, 1, 2, 3]


def test_code_fence_is_one_block_even_with_blank_lines() -> None:
    fence = [t for _, t in chunks(DOC) if t.startswith("```")]
    assert len(fence) == 1 and "blank lines inside" in fence[0] and fence[0].endswith("```")


def test_long_paragraph_is_split_at_sentences_within_the_limit() -> None:
    para = " ".join(f"Sentence number {i} has exactly seven words." for i in range(30))
    out = chunk_document(para, count_tokens=words, max_tokens=20)
    assert len(out) > 5
    assert all(words(c.text) <= 20 for c in out)
    assert all(c.text.endswith(".") for c in out)


def test_tiny_paragraphs_merge_under_the_same_heading() -> None:
    out = chunks("# T\n\nshort one.\n\nshort two.\n\n## Other\n\nshort three.", max_tokens=50)
    assert out == [(("T",), "# T\n\nshort one.\n\nshort two."), (("T", "Other"), "## Other\n\nshort three.")]


def test_inserting_a_paragraph_at_the_top_keeps_the_chunks_below() -> None:
    opening = "A brand new opening paragraph, added by an edit, and long enough to be kept alone."
    edited = DOC.replace("# Guide\n", f"# Guide\n\n{opening}\n")
    before, after = chunks(DOC), chunks(edited)
    # The heading line travels with the new first paragraph; the old one loses it; nothing else moves.
    assert after[0] == (("Guide",), f"# Guide\n\n{opening}")
    assert after[2:] == before[1:]


def test_plain_text_splits_on_blank_lines_without_headings() -> None:
    out = chunk_document("# not a heading\n\nsecond para", content_type="text/plain", count_tokens=words,
                         min_chars=0)
    assert [(c.heading_path, c.text) for c in out] == [((), "# not a heading"), ((), "second para")]


def test_a_section_s_first_chunk_carries_its_heading_line() -> None:
    c = chunk_document(DOC, count_tokens=words, min_chars=60)[1]
    assert c.embed_text == c.text and c.text.startswith("## Install\n\nRun the installer")
    assert c.heading_path == ("Guide", "Install")
    assert len(c.content_hash) == 64 and len(c.path_hash) == 12


def test_renaming_a_heading_changes_one_chunk_and_the_paths_of_the_rest() -> None:
    before = chunk_document(DOC, count_tokens=words, min_chars=60)
    after = chunk_document(DOC.replace("## Install", "## Installation"), count_tokens=words, min_chars=60)
    changed = [a.text for a, b in zip(after, before, strict=True) if a.content_hash != b.content_hash]
    assert changed == [after[1].text]
    assert after[2].content_hash == before[2].content_hash and after[2].path_hash != before[2].path_hash


def test_edits_in_the_middle_and_at_the_end_touch_only_their_chunks() -> None:
    before = chunks(DOC)
    middle = chunks(DOC.replace("It takes a while", "It takes a minute"))
    assert [i for i, (a, b) in enumerate(zip(before, middle, strict=True)) if a != b] == [1]
    end = chunks(DOC + "\nA closing paragraph, appended at the very end of the guide by a later edit.\n")
    assert end[: len(before)] == before and len(end) == len(before) + 1


def test_deleting_a_section_removes_only_its_chunks() -> None:
    before = chunks(DOC)
    cut = DOC[: DOC.index("## Use")]
    assert chunks(cut) == before[:-1]


def test_moving_a_section_keeps_every_chunk() -> None:
    install = DOC[DOC.index("## Install") : DOC.index("## Use")]
    use = DOC[DOC.index("## Use") :]
    moved = DOC[: DOC.index("## Install")] + use.rstrip("\n") + "\n\n" + install
    before = {c.content_hash for c in chunk_document(DOC, count_tokens=words, min_chars=60)}
    after = {c.content_hash for c in chunk_document(moved, count_tokens=words, min_chars=60)}
    assert before == after


def test_heading_lines_keep_their_parsing_rules() -> None:
    # 1-6 '#' then whitespace; closing '#'s and surrounding whitespace are not part of the title.
    doc = "# A #\n\n####### seven\n\n#no space\n\n##\tTab ##  \n\nbody text\n\n### C#\n\nsharp\n\n## ###\n\nempty title"
    assert [(c.heading_path, c.text) for c in chunk_document(doc, count_tokens=words, min_chars=0)] == [
        (("A",), "# A #\n\n####### seven"),
        (("A",), "#no space"),
        (("A", "Tab"), "##\tTab ##\n\nbody text"),
        (("A", "Tab", "C"), "### C#\n\nsharp"),  # the title loses a trailing '#': kept as it always was
        (("A", ""), "## ###\n\nempty title"),
    ]


@pytest.mark.timeout(5)
def test_a_heading_with_a_long_space_run_is_parsed_at_once() -> None:
    # The case: 14.6 s at n = 2,000 with the old heading regex.
    out = chunk_document("# a" + " " * 2000 + "b\n\ntext", count_tokens=words)
    assert [(c.heading_path, c.text) for c in out] == [(("a" + " " * 2000 + "b",), "# a" + " " * 2000 + "b\n\ntext")]


def test_a_heading_with_no_body_joins_the_next_chunk() -> None:
    # Before: "# Guide" stood alone as a chunk of one heading line (it was followed by a heading).
    doc = "# Guide\n\n## Install\n\nRun the installer and wait.\n\n## Use\n\nCall the API."
    out = chunk_document(doc, count_tokens=words, min_chars=0)
    assert [(c.heading_path, c.text) for c in out] == [
        (("Guide", "Install"), "# Guide\n\n## Install\n\nRun the installer and wait."),
        (("Guide", "Use"), "## Use\n\nCall the API."),
    ]
    # A heading at the very end has nothing to join: it stays.
    assert [c.text for c in chunk_document("para text\n\n# End", count_tokens=words, min_chars=0)] == [
        "para text", "# End"]


def test_context_goes_ahead_of_the_embedded_text_only() -> None:
    doc = "# Guide\n\nIntro text here.\n\n## Install\n\nRun it."
    plain = chunk_document(doc, count_tokens=words, min_chars=0, title="FastAPI  docs")
    assert [c.embed_text for c in plain] == [c.text for c in plain]
    both = chunk_document(doc, count_tokens=words, min_chars=0, title="FastAPI  docs",
                          context=Context(title="all", headings=True))
    assert [c.text for c in both] == [c.text for c in plain]
    assert [c.embed_text for c in both] == [
        "FastAPI docs\nGuide\n\n# Guide\n\nIntro text here.",
        "FastAPI docs\nGuide > Install\n\n## Install\n\nRun it.",
    ]
    titled = chunk_document(doc, count_tokens=words, min_chars=0, title="FastAPI docs", context=Context(title="all"))
    assert titled[1].embed_text == "FastAPI docs\n\n## Install\n\nRun it."
    retitled = chunk_document(doc, count_tokens=words, min_chars=0, title="Other", context=Context(title="all"))
    assert {c.content_hash for c in retitled}.isdisjoint(c.content_hash for c in titled)  # re-embeds all
    assert [c.content_hash for c in chunk_document(doc, count_tokens=words, min_chars=0, title="Other")] == [
        c.content_hash for c in plain]  # without the title in context, a new title re-embeds nothing


def test_the_context_tokens_are_kept_free() -> None:
    para = " ".join(f"w{i}." for i in range(50))
    out = chunk_document(para, count_tokens=words, max_tokens=20, title="one two three four five",
                         context=Context(title="all"))
    assert all(words(c.embed_text) <= 20 for c in out)
    assert all(words(c.text) <= 15 for c in out)


def test_a_first_title_goes_ahead_of_the_first_chunk_only() -> None:
    doc = "# Guide\n\nIntro text here.\n\n## Install\n\nRun it."
    out = chunk_document(doc, count_tokens=words, min_chars=0, title="FastAPI docs", context=Context(title="first"))
    assert [c.embed_text for c in out] == ["FastAPI docs\n\n# Guide\n\nIntro text here.", "## Install\n\nRun it."]
    other = chunk_document(doc, count_tokens=words, min_chars=0, title="Other", context=Context(title="first"))
    assert [a.content_hash == b.content_hash for a, b in zip(out, other, strict=True)] == [False, True]
