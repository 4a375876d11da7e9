"""Prompts: sentence banks (data files per domain), rendering and answer parsing.

>>> from rpp_gym.prompts import load_bank, render_prompt, parse_ranking
>>> bank = load_bank("movie")
>>> prompt = render_prompt(bank, 0, 0, 4, ["Heat (1995)"], ["Casino (1995)", "Se7en (1995)"])
>>> parse_ranking("1. Se7en (1995)\\n2. Casino (1995)", ["Casino (1995)", "Se7en (1995)"]).order
(1, 0)
"""

from __future__ import annotations

from rpp_gym.prompts.bank import (
    HISTORY_MODES,
    PATTERNS,
    SENTENCE_PATTERNS,
    TRAIT_VALUES,
    BankError,
    Sentence,
    SentenceBank,
    available_banks,
    bank_from_dict,
    bank_to_dict,
    bank_to_json,
    load_bank,
)
from rpp_gym.prompts.parse import ParseResult, complete_ranking, normalize_title, parse_ranking
from rpp_gym.prompts.render import render_messages, render_prompt, render_sentences

__all__ = [
    "HISTORY_MODES",
    "PATTERNS",
    "SENTENCE_PATTERNS",
    "TRAIT_VALUES",
    "BankError",
    "ParseResult",
    "Sentence",
    "SentenceBank",
    "available_banks",
    "bank_from_dict",
    "bank_to_dict",
    "bank_to_json",
    "complete_ranking",
    "load_bank",
    "normalize_title",
    "parse_ranking",
    "render_messages",
    "render_prompt",
    "render_sentences",
]
