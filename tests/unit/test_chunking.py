from workers.chunking import chunk_document


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


def chunks(text: str, **kw: int) -> list[tuple[tuple[str, ...], str]]:
    return [(c.heading_path, c.text) for c in chunk_document(text, count_tokens=words, min_chars=60, **kw)]


def test_heading_paths_and_positions() -> None:
    out = chunk_document(DOC, count_tokens=words, min_chars=60)
    assert [c.heading_path for c in out] == [("Guide",), ("Guide", "Install"), ("Guide", "Install"), ("Guide", "Use")]
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
    assert out == [(("T",), "short one.\n\nshort two."), (("T", "Other"), "short three.")]


def test_inserting_a_paragraph_at_the_top_keeps_the_chunks_below() -> None:
    opening = "A brand new opening paragraph, added by an edit, and long enough to be kept alone."
    edited = DOC.replace("# Guide\n", f"# Guide\n\n{opening}\n")
    before, after = chunks(DOC), chunks(edited)
    assert after[1:] == before
    assert len(after) == len(before) + 1


def test_plain_text_splits_on_blank_lines_without_headings() -> None:
    out = chunk_document("# not a heading\n\nsecond para", content_type="text/plain", count_tokens=words,
                         min_chars=0)
    assert [(c.heading_path, c.text) for c in out] == [((), "# not a heading"), ((), "second para")]


def test_embed_text_carries_the_heading_path() -> None:
    c = chunk_document(DOC, count_tokens=words, min_chars=60)[1]
    assert c.embed_text.startswith("Guide > Install\n\n")
    assert len(c.content_hash) == 64
