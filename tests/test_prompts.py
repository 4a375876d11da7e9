"""Sentence banks (packaged and user files, validation) and prompt rendering."""

from __future__ import annotations

import json
import pickle
import time
from pathlib import Path
from typing import Any

import pytest

from rpp_gym.prompts import (
    PATTERNS,
    BankError,
    Sentence,
    SentenceBank,
    available_banks,
    bank_from_dict,
    bank_to_dict,
    bank_to_json,
    load_bank,
    parse_ranking,
    render_messages,
    render_prompt,
    render_sentences,
)

HIST = ["Heat (1995)", "Casino (1995)", "Se7en (1995)"]
CANDS = [f"Movie {c} (2000)" for c in "ABCDEFGHIJ"]


@pytest.fixture(scope="module")
def bank() -> SentenceBank:
    return load_bank("movie")


def bank_dict() -> dict[str, Any]:
    return bank_to_dict(load_bank("movie"))


# ---------------------------------------------------------------------------------------------
# Packaged bank


def test_packaged_movie_bank_has_paper_sizes(bank: SentenceBank) -> None:
    assert "movie" in available_banks()
    assert PATTERNS == ("history", "role", "reasoning", "format")
    assert bank.action_sizes() == (3, 5, 9, 5)
    assert bank.history_increments == (0, 1, 2)
    assert len(bank.history_lengths) == 3
    assert (bank.domain, bank.item_noun, bank.item_plural, bank.history_verb) == ("movie", "movie", "movies", "watched")
    assert bank.role[0].id == "none" and bank.role[0].text == ""
    assert all(s.text for s in bank.role[1:])
    assert {p: bank.defaults[p] for p in PATTERNS} == {"history": 0, "role": 0, "reasoning": 0, "format": 0}


def test_packaged_traits(bank: SentenceBank) -> None:
    assert [s.traits["kind"] for s in bank.role] == ["none", "expert", "recommender", "ranker", "enthusiast"]
    weights = [s.traits["history_weight"] for s in bank.reasoning]
    assert weights == ["none", "whole", "preference", "recent", "whole", "recent", "preference", "whole", "recent"]
    assert [s.traits["verbose"] for s in bank.reasoning] == [False, False, False, True, False, True, False, False, True]
    assert [s.traits["layout"] for s in bank.format] == ["index_title", "index_title", "title", "index", "index_title"]
    strictness = [s.traits["strictness"] for s in bank.format]
    assert strictness[4] == 1.0 and strictness[3] > strictness[1] > strictness[0] > strictness[2]
    for s in bank.format:
        assert "{n}" in s.text and "all {n}" in s.text  # asks for a ranking of every candidate


def test_sentence_ids_unique_and_index_of(bank: SentenceBank) -> None:
    for p in PATTERNS[1:]:
        ids = [s.id for s in bank.sentences(p)]
        assert len(set(ids)) == len(ids)
        assert [bank.index_of(p, i) for i in ids] == list(range(len(ids)))
    with pytest.raises(KeyError, match="no role sentence with id 'pirate'"):
        bank.index_of("role", "pirate")


def test_history_pattern_has_choices_not_sentences(bank: SentenceBank) -> None:
    with pytest.raises(ValueError, match="history_choices"):
        bank.sentences("history")
    with pytest.raises(ValueError, match="unknown pattern 'tone'"):
        bank.sentences("tone")
    assert bank.n_choices("history") == 3
    assert bank.history_choices("absolute") == bank.history_lengths
    assert bank.action_sizes("absolute")[0] == len(bank.history_lengths)
    with pytest.raises(ValueError, match="unknown history mode"):
        bank.history_choices("relative")


def test_bank_is_immutable_hashable_and_picklable(bank: SentenceBank) -> None:
    assert pickle.loads(pickle.dumps(bank)) == bank
    assert hash(pickle.loads(pickle.dumps(bank))) == hash(bank)
    with pytest.raises(TypeError):
        bank.role[1].traits["kind"] = "ranker"  # type: ignore[index]
    assert load_bank("movie") is load_bank("movie")  # packaged banks are cached (immutable)


def test_round_trip_through_json_file_and_string(bank: SentenceBank, tmp_path: Path) -> None:
    path = tmp_path / "copy.json"
    path.write_text(bank_to_json(bank), encoding="utf-8")
    assert load_bank(path) == bank
    assert load_bank(str(path)) == bank
    assert load_bank(bank_to_json(bank)) == bank
    assert bank_from_dict(json.loads(bank_to_json(bank))) == bank


# ---------------------------------------------------------------------------------------------
# User banks


def test_user_bank_file_with_domain_placeholders(tmp_path: Path) -> None:
    data = {
        "domain": "music",
        "item_noun": "song",
        "item_plural": "songs",
        "history_verb": "listened to",
        "templates": {
            "history_intro": "I've {history_verb} the following {items} in order:",
            "history_empty": "No {items} are shown.",
            "candidates_intro": "Here are {n} candidate {items}:",
        },
        "history": {"increments": [0, 2], "lengths": [5]},
        "role": [{"id": "none", "text": "", "traits": {"kind": "none"}}],
        "reasoning": [
            {"id": "plain", "text": "Rank each {item}.", "traits": {"history_weight": "none", "verbose": False}}
        ],
        "format": [{"id": "list", "text": "List all {n} {items}.", "traits": {"layout": "title", "strictness": 0.5}}],
    }
    path = tmp_path / "music.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    bank = load_bank(path)
    assert bank.templates["history_intro"] == "I've listened to the following songs in order:"
    assert bank.reasoning[0].text == "Rank each song."
    assert bank.format[0].text == "List all {n} songs."
    assert bank.action_sizes() == (2, 1, 1, 1) and bank.action_sizes("absolute") == (1, 1, 1, 1)
    prompt = render_prompt(bank, 0, 0, 0, ["Song A"], ["Song B", "Song C"])
    assert "Here are 2 candidate songs:\n[1] Song B\n[2] Song C" in prompt
    assert prompt.endswith("List all 2 songs.")


def test_unknown_domain_error_names_the_options() -> None:
    with pytest.raises(FileNotFoundError, match=r"neither a packaged domain \['game', 'movie', 'music'\]"
                       r".*pass a domain name or a path"):
        load_bank("podcast")


def _mutate(path: list[Any], value: Any = None, delete: bool = False) -> dict[str, Any]:
    data = bank_dict()
    target: Any = data
    for key in path[:-1]:
        target = target[key]
    if delete:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "delete", "message"),
    [
        (["reasoning"], None, True, r"bad\.json: key 'reasoning' is missing; add \"reasoning\""),
        (["format"], [], False, r"the format bank is empty; give at least one format sentence"),
        (["reasoning", 2, "id"], "history", False, r"reasoning\[2\] \(id 'history'\): duplicate id 'history'"),
        (
            ["reasoning", 0, "traits", "history_weight"],
            "recentish",
            False,
            r"trait history_weight='recentish' is not allowed; use one of \"none\", \"recent\"",
        ),
        (["reasoning", 0, "traits", "verbose"], "yes", False, r"verbose='yes' is not allowed; use true or false"),
        (
            ["format", 1, "traits", "strictness"],
            1.5,
            False,
            r"strictness=1.5 is not allowed; use a number between 0 and 1",
        ),
        (["format", 0, "traits", "layout"], None, True, r"format\[0\] \(id 'numbered'\): missing trait 'layout'"),
        (["role", 1, "traits", "tone"], "warm", False, r"unknown trait\(s\) \['tone'\]; role traits are \['kind'\]"),
        (
            ["format", 2, "text"],
            "Just write the titles.",
            False,
            r"format\[2\] \(id 'titles_only'\): format sentence .* lacks the \{n\} placeholder; mention the number",
        ),
        (["reasoning", 1, "text"], "Rank {count} of them.", False, r"unknown placeholder \{count\}"),
        (["reasoning", 1, "text"], "  ", False, r"text is empty; only a role sentence may be empty"),
        (["role", 2, "text"], "", False, r"the empty role must have kind 'none'"),
        (
            ["templates", "candidates_intro"],
            "Here are the candidates:",
            False,
            r"template candidates_intro: the \{n\} placeholder is missing",
        ),
        (["templates", "history_empty"], None, True, r"templates \['history_empty'\] are missing"),
        (["templates", "footer"], "Thanks.", False, r"unknown templates \['footer'\]"),
        (
            ["history", "increments"],
            [0, -1],
            False,
            r"history_increments is \(0, -1\); give a non-empty list of non-negative integers",
        ),
        (["defaults", "format"], 5, False, r"defaults\.format=5 is out of range; use an index in \[0, 5\)"),
        (["defaults", "tone"], 0, False, r"defaults name unknown patterns \['tone'\]"),
        (["reasoning_guidance"], [], False, r"unknown key\(s\) \['reasoning_guidance'\]"),
        (["schema_version"], 2, False, r"schema_version 2 is not supported"),
        (["role", 1, "label"], "x", False, r"role\[1\]: unknown key\(s\) \['label'\]"),
        (["role"], {"id": "none"}, False, r"'role' must be a JSON list"),
        (["domain"], "", False, r"domain is ''; set \"domain\" to a non-empty string"),
    ],
)
def test_validation_errors_name_file_pattern_and_fix(
    tmp_path: Path, path: list[Any], value: Any, delete: bool, message: str
) -> None:
    file = tmp_path / "bad.json"
    file.write_text(json.dumps(_mutate(path, value, delete)), encoding="utf-8")
    with pytest.raises(BankError, match=message) as info:
        load_bank(file)
    assert str(file) in str(info.value)


def test_invalid_json_is_reported_with_the_file(tmp_path: Path) -> None:
    file = tmp_path / "broken.json"
    file.write_text('{"domain": "movie",', encoding="utf-8")
    with pytest.raises(BankError, match=r"broken\.json: invalid JSON"):
        load_bank(file)


def test_with_sentence_adds_and_validates(bank: SentenceBank) -> None:
    s = Sentence("critic", "Act as a film critic.", {"kind": "expert"})
    bigger = bank.with_sentence("role", s)
    assert bigger.role[-1] == s and len(bigger.role) == len(bank.role) + 1
    assert len(bank.role) == 5  # the original is untouched
    assert bigger.action_sizes() == (3, 6, 9, 5)
    assert load_bank(bank_to_json(bigger)) == bigger
    with pytest.raises(BankError, match="duplicate id 'expert'"):
        bank.with_sentence("role", Sentence("expert", "Be an expert.", {"kind": "expert"}))
    with pytest.raises(BankError, match=r"lacks the \{n\} placeholder"):
        bank.with_sentence("format", Sentence("f9", "Rank them.", {"layout": "title", "strictness": 0.3}))
    with pytest.raises(ValueError, match="history pattern has no sentences"):
        bank.with_sentence("history", s)


# ---------------------------------------------------------------------------------------------
# Rendering


def test_render_block_order_and_numbering(bank: SentenceBank) -> None:
    prompt = render_prompt(bank, 2, 3, 4, HIST, CANDS)
    blocks = prompt.split("\n\n")
    assert blocks == [
        bank.role[2].text,
        "I've watched the following movies in the past in order:\n1. Heat (1995)\n2. Casino (1995)\n3. Se7en (1995)",
        "Now there are 10 candidate movies that I can watch next:\n"
        + "\n".join(f"[{i}] {t}" for i, t in enumerate(CANDS, 1)),
        bank.reasoning[3].text,
        bank.format[4].text.replace("{n}", "10"),
    ]
    assert "{" not in prompt


def test_render_omits_empty_role_and_reports_empty_history(bank: SentenceBank) -> None:
    prompt = render_prompt(bank, 0, 0, 0, [], CANDS[:3])
    blocks = prompt.split("\n\n")
    assert len(blocks) == 4
    assert blocks[0] == bank.templates["history_empty"]
    assert blocks[1].startswith("Now there are 3 candidate movies")
    assert "all 3 candidates" in blocks[3]


def test_render_errors(bank: SentenceBank) -> None:
    with pytest.raises(IndexError, match=r"format choice 5 is out of range .* use 0\.\.4"):
        render_prompt(bank, 0, 0, 5, HIST, CANDS)
    with pytest.raises(IndexError, match="role choice -1"):
        render_prompt(bank, -1, 0, 0, HIST, CANDS)
    with pytest.raises(ValueError, match="candidate_titles is empty"):
        render_prompt(bank, 0, 0, 0, HIST, [])


def test_render_sentences_match_the_prompt(bank: SentenceBank) -> None:
    shown = render_sentences(bank, 0, 5, 4, len(CANDS))
    prompt = render_prompt(bank, 0, 5, 4, HIST, CANDS)
    assert shown["role"] == ""
    assert shown["reasoning"] in prompt and shown["format"] in prompt and "{n}" not in shown["format"]


def test_render_messages_is_one_user_message(bank: SentenceBank) -> None:
    messages = render_messages(bank, 1, 1, 1, HIST, CANDS)
    assert messages == ({"role": "user", "content": render_prompt(bank, 1, 1, 1, HIST, CANDS)},)


def test_rendered_candidate_block_parses_back(bank: SentenceBank) -> None:
    # An LLM that echoes the candidate block returns the shown order.
    prompt = render_prompt(bank, 0, 0, 0, HIST, CANDS)
    block = prompt.split("\n\n")[1]
    result = parse_ranking(block, CANDS, HIST)
    assert result.order == tuple(range(10)) and result.unknown_lines == 1


def test_render_is_fast(bank: SentenceBank) -> None:
    n = 2000
    start = time.perf_counter()
    for i in range(n):
        render_prompt(bank, i % 5, i % 9, i % 5, HIST * 4, CANDS)
    per_call = (time.perf_counter() - start) / n
    assert per_call < 100e-6, f"{per_call * 1e6:.1f} us per prompt"
