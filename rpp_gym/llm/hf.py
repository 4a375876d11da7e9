"""``hf``: a transformers causal LM in this process, with batched generation.

For GPU boxes without an inference server. Requests are rendered with the tokenizer's chat
template (plain prompt text when it has none), left-padded and generated in batches of
``batch_size``. Greedy requests (temperature 0) with the same ``max_tokens`` and stop strings
share a batch. A *sampled* request with a seed is generated on its own, with torch's RNG seeded
from the request inside :func:`torch.random.fork_rng` (the global RNG state is restored
afterwards), so its answer does not depend on the rest of the batch; unseeded sampled requests
are batched together.

``transformers`` and ``torch`` are imported only when an :class:`HFBackend` is created.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rpp_gym.llm.base import Completion, LLMBackendError, LLMRequest, SamplingParams

__all__ = ["HFBackend"]

_INSTALL = 'the hf backend needs transformers and torch: pip install "rpp-gym[hf]"'


def _import() -> tuple[Any, Any]:
    try:
        import torch
        import transformers
    except ImportError as e:
        raise ImportError(_INSTALL) from e
    return torch, transformers


def _resolve_device(device: str, torch: Any) -> str:
    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def _resolve_dtype(dtype: Any, device: str, torch: Any) -> Any:
    if dtype is None:
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float16 if device.startswith("mps") else torch.float32
    if isinstance(dtype, str) and dtype != "auto":
        resolved = getattr(torch, dtype, None)
        if not isinstance(resolved, torch.dtype):
            raise ValueError(f"dtype={dtype!r} is not a torch dtype; use e.g. 'bfloat16', 'float16' or 'float32'")
        return resolved
    return dtype


def _stop_on_strings(tokenizer: Any, stops: Sequence[str], prompt_len: int) -> Any:
    """A stopping criterion that ends each row once its decoded answer contains a stop string.

    (transformers' own ``stop_strings`` needs a tokenizer whose vocabulary it can analyse;
    decoding works with every tokenizer.)
    """
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class StopOnStrings(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            texts = tokenizer.batch_decode(input_ids[:, prompt_len:], skip_special_tokens=True)
            done = [any(stop in text for stop in stops if stop) for text in texts]
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([StopOnStrings()])


class HFBackend:
    """A Hugging Face causal LM generating in batches on one device.

    Example:
        >>> backend = HFBackend("HuggingFaceTB/SmolLM2-360M-Instruct", device="cuda")  # doctest: +SKIP

    Args:
        name_or_path: A hub model id or a local folder saved with ``save_pretrained``.
        device: ``"auto"`` (CUDA, else MPS, else CPU), or a torch device string.
        dtype: Weights dtype (a torch dtype or its name, or ``"auto"``); default bfloat16 on
            CUDA when supported (float16 otherwise), float16 on MPS, float32 on CPU.
        trust_remote_code: Passed to ``from_pretrained``.
        batch_size: Most prompts per ``generate`` call.
        model: A loaded model to use instead of loading ``name_or_path``.
        tokenizer: A loaded tokenizer to use instead of loading ``name_or_path``.
    """

    def __init__(
        self,
        name_or_path: str | Path,
        *,
        device: str = "auto",
        dtype: Any = None,
        trust_remote_code: bool = False,
        batch_size: int = 16,
        model: Any = None,
        tokenizer: Any = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be at least 1")
        torch, transformers = _import()
        self._torch = torch
        self.device = _resolve_device(device, torch)
        self.batch_size = batch_size
        self.model = str(name_or_path)
        try:
            if tokenizer is None:
                tokenizer = transformers.AutoTokenizer.from_pretrained(
                    name_or_path, trust_remote_code=trust_remote_code
                )
            if model is None:
                torch_dtype = _resolve_dtype(dtype, self.device, torch)
                version = tuple(int(p) for p in transformers.__version__.split(".")[:2] if p.isdigit())
                dtype_kw = "dtype" if version >= (4, 56) else "torch_dtype"
                model = transformers.AutoModelForCausalLM.from_pretrained(
                    name_or_path, trust_remote_code=trust_remote_code, **{dtype_kw: torch_dtype}
                )
            model = model.to(self.device).eval()
        except OSError as e:
            raise LLMBackendError(f"hf backend: could not load {name_or_path!r}: {e}") from e
        tokenizer.padding_side = "left"
        if tokenizer.pad_token_id is None:
            if tokenizer.eos_token is None:
                raise LLMBackendError(f"hf backend: the tokenizer of {name_or_path!r} has neither pad nor eos token")
            tokenizer.pad_token = tokenizer.eos_token
        self.tokenizer = tokenizer
        self.hf_model = model
        eos = model.generation_config.eos_token_id
        if eos is None:
            eos = tokenizer.eos_token_id
        self._eos = set(eos if isinstance(eos, (list, tuple)) else [eos]) - {None}
        self._dtype = str(getattr(model, "dtype", dtype)).removeprefix("torch.")
        self._identity = f"hf:{self.model}:{self._dtype}"
        self._lock = threading.Lock()
        self._closed = False

    @property
    def identity(self) -> str:
        """``hf:<name or path>:<dtype>``."""
        return self._identity

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model!r}, device={self.device!r}, dtype={self._dtype})"

    def close(self) -> None:
        """Free the model (and cached GPU memory); safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self.hf_model = None
            if self.device.startswith("cuda"):
                self._torch.cuda.empty_cache()

    # ---- generation ------------------------------------------------------------------------

    def _render(self, request: LLMRequest) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            return str(
                self.tokenizer.apply_chat_template(
                    [dict(m) for m in request.messages], add_generation_prompt=True, tokenize=False
                )
            )
        return request.prompt

    def generate(self, requests: Sequence[LLMRequest]) -> list[Completion]:
        """Complete every request (see the module docstring for how they are batched)."""
        if self._closed:
            raise LLMBackendError(f"hf backend ({self.model}) is closed")
        groups: dict[tuple[Any, ...], list[int]] = {}
        for i, request in enumerate(requests):
            sampling = request.sampling
            if sampling.greedy:
                key: tuple[Any, ...] = ("greedy", sampling.max_tokens, sampling.stop)
            elif request.seed is not None:
                key = ("seeded", i)
            else:
                key = ("sampled", sampling)
            groups.setdefault(key, []).append(i)
        out: list[Completion | None] = [None] * len(requests)
        with self._lock:
            for key, indices in groups.items():
                for start in range(0, len(indices), self.batch_size):
                    chunk = indices[start : start + self.batch_size]
                    first = requests[chunk[0]]
                    seed = first.seed if key[0] == "seeded" else None
                    texts = [self._render(requests[i]) for i in chunk]
                    for i, completion in zip(chunk, self._run(texts, first.sampling, seed), strict=True):
                        out[i] = completion
        return [c for c in out if c is not None]

    def _run(self, texts: list[str], sampling: SamplingParams, seed: int | None) -> list[Completion]:
        torch = self._torch
        templated = bool(getattr(self.tokenizer, "chat_template", None))
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=not templated)
        enc = {k: v.to(self.device) for k, v in enc.items()}
        config = self.hf_model.generation_config.__class__.from_dict(self.hf_model.generation_config.to_dict())
        config.max_new_tokens = sampling.max_tokens
        config.pad_token_id = self.tokenizer.pad_token_id
        config.do_sample = not sampling.greedy
        if sampling.greedy:
            config.temperature, config.top_p, config.top_k = None, None, None
        else:
            config.temperature, config.top_p, config.top_k = sampling.temperature, sampling.top_p, None
        kwargs: dict[str, Any] = {"generation_config": config}
        if sampling.stop:
            kwargs["stopping_criteria"] = _stop_on_strings(self.tokenizer, sampling.stop, enc["input_ids"].shape[1])
        start = time.perf_counter()
        try:
            if sampling.greedy:
                with torch.inference_mode():
                    generated = self.hf_model.generate(**enc, **kwargs)
            else:
                devices = [torch.device(self.device)] if self.device.startswith("cuda") else []
                with torch.random.fork_rng(devices=devices), torch.inference_mode():
                    torch.manual_seed(seed if seed is not None else int.from_bytes(os.urandom(8), "little") >> 1)
                    generated = self.hf_model.generate(**enc, **kwargs)
        except (RuntimeError, ValueError) as e:
            raise LLMBackendError(f"hf backend ({self.model}): generation failed: {e}") from e
        latency = time.perf_counter() - start
        prompt_len = enc["input_ids"].shape[1]
        prompt_counts = enc["attention_mask"].sum(dim=1).tolist()
        pad = self.tokenizer.pad_token_id
        completions = []
        for row, prompt_tokens in zip(generated[:, prompt_len:].tolist(), prompt_counts, strict=True):
            count = next((j + 1 for j, token in enumerate(row) if token in self._eos), None)
            hit_eos = count is not None
            if count is None:
                count = len(row)
                while count and row[count - 1] == pad and pad not in self._eos:
                    count -= 1  # finished early (stop string) and padded while others went on
            text = self.tokenizer.decode(row[:count], skip_special_tokens=True)
            cut = [text.find(s) for s in sampling.stop if s and s in text]
            hit_stop = bool(cut)
            if cut:
                text = text[: min(cut)]
            finish = "stop" if hit_eos or hit_stop or count < sampling.max_tokens else "length"
            completions.append(
                Completion(
                    text=text,
                    finish_reason=finish,
                    prompt_tokens=int(prompt_tokens),
                    completion_tokens=count,
                    latency_s=latency,
                )
            )
        return completions
