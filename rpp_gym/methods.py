"""Every method of the comparison, by name, evaluated on the same users, candidates and LLM.

``run_method("best-fixed", env_id, split="test")`` returns an
:class:`~rpp_gym.evaluation.EvalResult`; so do the traditional recommenders (scored on the very
candidate lists the env shows) and trained runs (a run directory). The CLI's ``evaluate`` and
``compare`` are thin shells over this module.

=====================  ===========================================================================
method                 what it is
=====================  ===========================================================================
``random``             a uniformly random prompt each round
``llmrank``            LLMRank-style zero-shot prompt: no role, step-by-step reasoning, numbered
                       output, history growing by one item per round
``fewshot-K``          the same prompt with a fixed history of K items (the few-shot baselines)
``fixed:H,R,Q,F``      any fixed joint action
``best-fixed``         the best single fixed prompt, found by exhaustive search on the *train* users
``oracle``             per user, the best fixed prompt (exhaustive search; simulator only; picked
                       on another seed, so it is a fair upper bound for fixed prompts)
``popularity``         training-set popularity (no LLM)
``bpr``                BPR matrix factorisation (no LLM)
``sasrec``             SASRec (no LLM)
``RUN_DIR``            a run written by ``rpp-gym train`` (RPP, MAPPO or a Stable-Baselines3 model);
                       a run trained on an ``RPP-Plus-*`` id is RPP+ and is evaluated on the RPP+
                       variant of the env (same users, candidates and LLM; see
                       :func:`rpp_gym.runs.run_eval_env`)
=====================  ===========================================================================
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from rpp_gym.agents.baselines import FixedPolicy, RandomPolicy
from rpp_gym.evaluation import EvalResult, evaluate

__all__ = ["BUILTIN_METHODS", "MethodContext", "run_method"]

_EVAL_ONLY = ("rounds", "max_tokens", "cache")
_MEMO: dict[tuple[Any, ...], Any] = {}
"""Searched prompts and fitted recommenders, reused across column groups of one comparison."""

BUILTIN_METHODS = (
    "random",
    "llmrank",
    "fewshot-5",
    "fewshot-10",
    "fewshot-20",
    "best-fixed",
    "oracle",
    "popularity",
    "bpr",
    "sasrec",
)
LLMRANK = {"role": "none", "reasoning": "step_by_step", "format": "numbered"}
"""Sentence ids of the LLMRank-style zero-shot prompt (every packaged bank has them)."""


@dataclass
class MethodContext:
    """Where and how every method is evaluated."""

    env_id: str = "RPP-MovieLens-Sim-v0"
    split: str = "test"
    n_users: int | None = None
    seed: int = 0
    env_kwargs: dict[str, Any] | None = None
    search_users: int | None = None
    """Train users the best-fixed search looks at (None: the whole train pool)."""
    search_llm: str | None = "sim"
    """Backend the best-fixed search runs on (675 prompts per user are too many for a CPU LLM); None:
    the evaluation's own backend."""
    quick: bool = False
    """Shorter training for the neural recommenders (tests, smoke runs)."""


def _bank_and_nvec(ctx: MethodContext) -> tuple[Any, np.ndarray]:
    env = gym.make(ctx.env_id, **(ctx.env_kwargs or {}))
    try:
        return env.unwrapped.bank, np.asarray(env.action_space.nvec)
    finally:
        env.close()


def _llmrank_action(bank: Any, history_choice: int) -> list[int]:
    return [history_choice] + [bank.index_of(p, LLMRANK[p]) for p in ("role", "reasoning", "format")]


def _evaluate(policy: Any, ctx: MethodContext, **extra_kwargs: Any) -> EvalResult:
    kwargs = {**(ctx.env_kwargs or {}), **extra_kwargs}
    return evaluate(policy, ctx.env_id, split=ctx.split, n_users=ctx.n_users, seed=ctx.seed, env_kwargs=kwargs)


def run_method(name: str, ctx: MethodContext) -> EvalResult:
    """Evaluate one method (see the module docstring for the names) and label the result ``name``."""
    start = time.perf_counter()
    result = _run(name, ctx)
    result.name = name
    result.wall_s = max(result.wall_s, time.perf_counter() - start)
    return result


def _run(name: str, ctx: MethodContext) -> EvalResult:
    if name == "random":
        _, nvec = _bank_and_nvec(ctx)
        return _evaluate(RandomPolicy(nvec, seed=ctx.seed), ctx)
    if name == "llmrank":
        bank, _ = _bank_and_nvec(ctx)
        return _evaluate(FixedPolicy(_llmrank_action(bank, bank.history_increments.index(1))), ctx)
    if name.startswith("fewshot-"):
        k = _int_suffix(name)
        bank, _ = _bank_and_nvec(ctx)
        return _evaluate(FixedPolicy(_llmrank_action(bank, 0)), ctx, history_mode="absolute", history_lengths=(k,))
    if name.startswith("fixed:"):
        try:
            action = [int(x) for x in name.split(":", 1)[1].split(",")]
        except ValueError:
            raise ValueError(f"method {name!r}: write a fixed prompt as fixed:H,R,Q,F, e.g. fixed:1,0,3,0") from None
        return _evaluate(FixedPolicy(action), ctx)
    if name == "best-fixed":
        from rpp_gym.agents.search import best_fixed_prompt
        from rpp_gym.envs.config import RPPConfig

        # The search plays whole episodes of the default length: evaluation-only settings (fewer
        # rounds, shorter answers, another cache) do not change which prompt is best.
        search_kwargs = {k: v for k, v in (ctx.env_kwargs or {}).items() if k not in _EVAL_ONLY}
        if ctx.search_llm is not None:
            search_kwargs["llm"] = ctx.search_llm
        config = RPPConfig(**{**gym.spec(ctx.env_id).kwargs, **search_kwargs})
        key = ("best-fixed", repr(config.to_dict()), ctx.search_users, ctx.seed)
        if key not in _MEMO:
            _MEMO[key] = best_fixed_prompt(
                ctx.env_id, split="train", n_users=ctx.search_users, seed=ctx.seed, env_kwargs=search_kwargs
            ).best_action
        return _evaluate(FixedPolicy(_MEMO[key], name="best-fixed"), ctx)
    if name == "oracle":
        return _oracle(ctx)
    if name in ("popularity", "bpr", "sasrec"):
        return _traditional(name, ctx)
    path = Path(name)
    if path.is_dir():
        from rpp_gym.runs import load_run_policy, run_eval_env

        env_id, extra = run_eval_env(path, ctx.env_id)
        if env_id != ctx.env_id:
            ctx = dataclasses.replace(ctx, env_id=env_id)
        return _evaluate(load_run_policy(path), ctx, **extra)
    raise ValueError(
        f"unknown method {name!r}; use one of {', '.join(BUILTIN_METHODS)}, fixed:H,R,Q,F, or a run directory "
        "written by `rpp-gym train`"
    )


def _int_suffix(name: str) -> int:
    try:
        k = int(name.rsplit("-", 1)[1])
    except ValueError:
        raise ValueError(f"method {name!r}: write few-shot baselines as fewshot-K, e.g. fewshot-10") from None
    if k < 0:
        raise ValueError(f"method {name!r}: K must be >= 0")
    return k


def _oracle(ctx: MethodContext) -> EvalResult:
    from rpp_gym.agents.search import per_user_oracle

    llm = (ctx.env_kwargs or {}).get("llm", gym.spec(ctx.env_id).kwargs.get("llm"))
    if not str(llm).startswith("sim"):
        raise ValueError(
            f"the per-user oracle searches every prompt for every user and needs the simulator; "
            f"{ctx.env_id} uses llm={llm!r}: run it on a -Sim- env id or pass llm='sim'"
        )
    found = per_user_oracle(
        ctx.env_id,
        split=ctx.split,
        n_users=ctx.n_users,
        score_seed=ctx.seed,
        select_seed=ctx.seed + 1,
        env_kwargs=ctx.env_kwargs,
    )
    return _evaluate(PerUserPolicy(dict(zip(found.user_ids, found.actions, strict=True)), "oracle"), ctx)


class PerUserPolicy:
    """A fixed joint action per user (e.g. the oracle's picks), told the users by ``evaluate``."""

    def __init__(self, actions: dict[str, np.ndarray], name: str) -> None:
        self.actions = actions
        self.name = name
        self._batch = np.zeros((0, 4), dtype=np.int64)

    def begin(self, user_ids: list[str]) -> None:
        self._batch = np.stack([self.actions[u] for u in user_ids])

    def act(self, obs: np.ndarray) -> np.ndarray:
        return self._batch[: len(obs)]


def _traditional(name: str, ctx: MethodContext) -> EvalResult:
    from rpp_gym.agents.traditional import BPRMF, Popularity, SASRec
    from rpp_gym.data.bundle import load_bundle
    from rpp_gym.envs.config import RPPConfig
    from rpp_gym.evaluation_candidates import evaluate_scorer

    config = RPPConfig(**{**gym.spec(ctx.env_id).kwargs, **(ctx.env_kwargs or {})})
    bundle = load_bundle(config.dataset, config.data_dir, config.bundle_options)
    quick = {"epochs": 3} if ctx.quick else {}
    key = (name, bundle.key or id(bundle), ctx.seed, ctx.quick)
    model = _MEMO.get(key)
    if model is None:  # fitted once per process: the same model scores every column group
        if name == "popularity":
            model = Popularity()
        elif name == "bpr":
            model = BPRMF(**quick, num_threads=1)
        else:
            model = SASRec(**quick, num_threads=1)
        _MEMO[key] = model.fit(bundle, ctx.seed)
    return evaluate_scorer(
        model, ctx.env_id, split=ctx.split, n_users=ctx.n_users, seed=ctx.seed, env_kwargs=ctx.env_kwargs
    )
