"""Compose a prompt from the chosen sentences, the user's history and the candidates.

Pure functions; they run inside ``env.step`` thousands of times per second, so they only join
strings. Block order, separated by blank lines:

1. role-playing sentence (omitted when the chosen role is empty),
2. history records, numbered oldest to newest (or a sentence saying none are shown),
3. the candidates as ``[1] Title`` ... ``[n] Title`` (fixed, not an agent's choice),
4. reasoning guidance,
5. output format.

>>> from rpp_gym.prompts.bank import load_bank
>>> bank = load_bank("movie")
>>> print(render_prompt(bank, 1, 0, 3, ["Heat (1995)", "Casino (1995)"], ["Toy Story (1995)", "Jumanji (1995)"]))
Act as a seasoned film expert.
<BLANKLINE>
I've watched the following movies in the past in order:
1. Heat (1995)
2. Casino (1995)
<BLANKLINE>
Now there are 2 candidate movies that I can watch next:
[1] Toy Story (1995)
[2] Jumanji (1995)
<BLANKLINE>
Please put the candidates in order of priority.
<BLANKLINE>
Answer with the candidate numbers of all 2 movies in ranked order, with no explanations and no other words.
"""

from __future__ import annotations

from collections.abc import Sequence

from rpp_gym.prompts.bank import SentenceBank

__all__ = ["render_messages", "render_prompt", "render_sentences"]


def _pick(bank: SentenceBank, pattern: str, index: int) -> str:
    sentences = bank.sentences(pattern)
    if not 0 <= index < len(sentences):
        raise IndexError(
            f"{pattern} choice {index} is out of range for bank {bank.domain!r} "
            f"({len(sentences)} {pattern} sentences: use 0..{len(sentences) - 1})"
        )
    return sentences[index].text


def render_prompt(
    bank: SentenceBank,
    role: int,
    reasoning: int,
    fmt: int,
    history_titles: Sequence[str],
    candidate_titles: Sequence[str],
) -> str:
    """Render the prompt text for one user at one round.

    Args:
        bank: The sentence bank.
        role: Index of the role sentence (an empty sentence omits the role block).
        reasoning: Index of the reasoning-guidance sentence.
        fmt: Index of the output-format sentence.
        history_titles: The history items to show, oldest first (may be empty).
        candidate_titles: The candidates in the order shown (positions the answer refers to).

    Returns:
        The prompt, blocks separated by blank lines.

    Raises:
        IndexError: if a choice is out of range for the bank.
        ValueError: if there are no candidates.

    >>> from rpp_gym.prompts.bank import load_bank
    >>> bank = load_bank("movie")
    >>> text = render_prompt(bank, 0, 1, 0, [], ["A (2000)", "B (2001)", "C (2002)"])
    >>> print(text.split("\\n\\n")[0])
    None of the movies I've watched before are shown here.
    >>> "all 3 candidates" in text
    True
    """
    n = len(candidate_titles)
    if n == 0:
        raise ValueError("candidate_titles is empty; a ranking prompt needs at least one candidate")
    n_str = str(n)
    role_text = _pick(bank, "role", role)
    reasoning_text = _pick(bank, "reasoning", reasoning)
    format_text = _pick(bank, "format", fmt)
    templates = bank.templates
    if history_titles:
        history_block = "\n".join([templates["history_intro"], *[f"{i}. {t}" for i, t in enumerate(history_titles, 1)]])
    else:
        history_block = templates["history_empty"]
    candidate_block = "\n".join(
        [
            templates["candidates_intro"].replace("{n}", n_str),
            *[f"[{i}] {t}" for i, t in enumerate(candidate_titles, 1)],
        ]
    )
    blocks = [history_block, candidate_block, reasoning_text.replace("{n}", n_str), format_text.replace("{n}", n_str)]
    if role_text:
        blocks.insert(0, role_text.replace("{n}", n_str))
    return "\n\n".join(blocks)


def render_sentences(bank: SentenceBank, role: int, reasoning: int, fmt: int, n_candidates: int) -> dict[str, str]:
    """The three chosen sentences exactly as the prompt shows them (``{n}`` filled in).

    For ``info`` dicts and logs; an empty role stays ``""`` (the prompt omits it).

    >>> from rpp_gym.prompts.bank import load_bank
    >>> render_sentences(load_bank("movie"), 0, 0, 2, 10)["format"]
    'Just write the titles of all 10 candidates in ranked order.'
    """
    n = str(n_candidates)
    return {
        "role": _pick(bank, "role", role).replace("{n}", n),
        "reasoning": _pick(bank, "reasoning", reasoning).replace("{n}", n),
        "format": _pick(bank, "format", fmt).replace("{n}", n),
    }


def render_messages(
    bank: SentenceBank,
    role: int,
    reasoning: int,
    fmt: int,
    history_titles: Sequence[str],
    candidate_titles: Sequence[str],
) -> tuple[dict[str, str], ...]:
    """The prompt as chat messages: one user message (see :func:`render_prompt` for arguments).

    >>> from rpp_gym.prompts.bank import load_bank
    >>> (msg,) = render_messages(load_bank("movie"), 0, 0, 0, ["Heat (1995)"], ["Jumanji (1995)"])
    >>> msg["role"], msg["content"].splitlines()[:2]
    ('user', ["I've watched the following movies in the past in order:", '1. Heat (1995)'])
    """
    return ({"role": "user", "content": render_prompt(bank, role, reasoning, fmt, history_titles, candidate_titles)},)
