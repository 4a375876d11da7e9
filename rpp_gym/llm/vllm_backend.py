"""``vllm``: vLLM's offline engine in this process (``vllm.LLM``), with prefix caching on.

A whole batch goes to one ``LLM.chat`` call with one ``SamplingParams`` per request, so vLLM's
scheduler batches it continuously; the prompts of one env share long prefixes (the sentence
banks), which ``enable_prefix_caching`` reuses.

vLLM needs a GPU and is not installed in the project's CI. The mapping from requests to vLLM
calls and from ``RequestOutput`` to :class:`~rpp_gym.llm.base.Completion` is tested by injecting
stand-ins with the same surface through ``llm=`` and ``sampling_params_cls=`` (see
``tests/test_hf_vllm.py``); only the engine construction is untested there.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from rpp_gym.llm.base import Completion, LLMBackendError, LLMRequest

__all__ = ["VLLMBackend"]

_INSTALL = 'the vllm backend needs vLLM (and a GPU): pip install "rpp-gym[vllm]"'


class VLLMBackend:
    """A model served by an in-process vLLM engine.

    Example:
        >>> backend = VLLMBackend("Qwen/Qwen2.5-7B-Instruct", gpu_memory_utilization=0.8)  # doctest: +SKIP

    Args:
        model: A hub model id or a local folder.
        llm: An engine to use instead of building ``vllm.LLM(model, **engine_kwargs)``; anything
            with vLLM's ``chat(messages, sampling_params=..., use_tqdm=...)`` method.
        sampling_params_cls: The ``SamplingParams`` class (default ``vllm.SamplingParams``).
        **engine_kwargs: Passed to ``vllm.LLM``, e.g. ``tensor_parallel_size``,
            ``max_model_len``; ``enable_prefix_caching`` defaults to True.
    """

    def __init__(
        self,
        model: str,
        *,
        llm: Any = None,
        sampling_params_cls: Any = None,
        **engine_kwargs: Any,
    ) -> None:
        self.model = str(model)
        if llm is None or sampling_params_cls is None:
            try:
                import vllm
            except ImportError as e:
                raise ImportError(_INSTALL) from e
            sampling_params_cls = sampling_params_cls or vllm.SamplingParams
            if llm is None:
                engine_kwargs.setdefault("enable_prefix_caching", True)
                llm = vllm.LLM(model=self.model, **engine_kwargs)
        self.llm: Any = llm
        self._sampling_params_cls = sampling_params_cls
        dtype = engine_kwargs.get("dtype")
        self._identity = f"vllm:{self.model}" + (f":{dtype}" if dtype else "")
        self._lock = threading.Lock()
        self._closed = False

    @property
    def identity(self) -> str:
        """``vllm:<model>`` (plus ``:<dtype>`` when one was given)."""
        return self._identity

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model!r})"

    def close(self) -> None:
        """Drop the engine (vLLM frees GPU memory when it is collected); safe to call twice."""
        with self._lock:
            self._closed = True
            self.llm = None

    def _sampling_params(self, request: LLMRequest) -> Any:
        sampling = request.sampling
        kwargs: dict[str, Any] = {
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_tokens,
        }
        if sampling.stop:
            kwargs["stop"] = list(sampling.stop)
        if request.seed is not None and not sampling.greedy:
            kwargs["seed"] = int(request.seed)
        return self._sampling_params_cls(**kwargs)

    def generate(self, requests: Sequence[LLMRequest]) -> list[Completion]:
        """Complete the whole batch in one ``LLM.chat`` call.

        Raises:
            LLMBackendError: vLLM failed, or returned a result without output.
        """
        if self._closed or self.llm is None:
            raise LLMBackendError(f"vllm backend ({self.model}) is closed")
        if not requests:
            return []
        conversations = [[dict(m) for m in request.messages] for request in requests]
        params = [self._sampling_params(request) for request in requests]
        start = time.perf_counter()
        with self._lock:
            try:
                outputs = self.llm.chat(conversations, sampling_params=params, use_tqdm=False)
            except (RuntimeError, ValueError) as e:
                raise LLMBackendError(f"vllm backend ({self.model}): generation failed: {e}") from e
        latency = time.perf_counter() - start
        if len(outputs) != len(requests):
            raise LLMBackendError(f"vllm backend ({self.model}): {len(outputs)} outputs for {len(requests)} requests")
        completions = []
        for i, output in enumerate(outputs):
            if not output.outputs:
                raise LLMBackendError(f"vllm backend ({self.model}): request {i} returned no output")
            best = output.outputs[0]
            completions.append(
                Completion(
                    text=best.text,
                    finish_reason=best.finish_reason or "stop",
                    prompt_tokens=len(output.prompt_token_ids or ()),
                    completion_tokens=len(best.token_ids or ()),
                    latency_s=latency,
                )
            )
        return completions
