from schemas.jsonschema import CONTRACTS, JSON_DIR, render


def test_json_schema_files_match_the_models() -> None:
    for filename, model in CONTRACTS.items():
        on_disk = (JSON_DIR / filename).read_text(encoding="utf-8")
        assert on_disk == render(model, filename), f"{filename} is stale: run `freshet schemas`"
