"""HFBackend on a tiny random Llama built here (no hub), and VLLMBackend's mapping via stand-ins."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from rpp_gym.llm import LLMBackend, LLMBackendError, LLMRequest, SamplingParams
from rpp_gym.llm.vllm_backend import VLLMBackend

WORDS = "rank the movies heat fargo babe toy story alien matrix watched list 1 2 3 . : [ ]".split()
TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }} : {{ m['content'] }} {% endfor %}"
    "{% if add_generation_prompt %}assistant :{% endif %}"
)


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    tokenizers = pytest.importorskip("tokenizers")
    folder = tmp_path_factory.mktemp("tiny-llama")
    vocab = {w: i for i, w in enumerate(["<unk>", "<s>", "</s>", "<pad>", "user", "assistant", *WORDS])}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tok.decoder = tokenizers.decoders.WordPiece()
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"
    )
    fast.chat_template = TEMPLATE
    fast.save_pretrained(folder)
    config = transformers.LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=3,
    )
    with torch.random.fork_rng():
        torch.manual_seed(0)
        transformers.LlamaForCausalLM(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def hf(tiny_llama: Path):
    from rpp_gym.llm.hf import HFBackend

    backend = HFBackend(tiny_llama, device="cpu", batch_size=2)
    yield backend
    backend.close()


PROMPTS = ["rank the movies heat fargo", "user watched alien", "rank : [ 1 ] toy story [ 2 ] babe [ 3 ] matrix"]


def test_hf_greedy_batches_match_single_requests(hf) -> None:
    backend: object = hf
    assert isinstance(backend, LLMBackend)
    assert hf.identity == f"hf:{hf.model}:float32"
    sampling = SamplingParams(max_tokens=6)
    batched = hf.generate([LLMRequest.from_prompt(p, sampling) for p in PROMPTS])  # batches of 2, left-padded
    alone = [hf.generate([LLMRequest.from_prompt(p, sampling)])[0] for p in PROMPTS]
    assert [c.text for c in batched] == [c.text for c in alone]
    for prompt, completion in zip(PROMPTS, batched, strict=True):
        rendered = hf._render(LLMRequest.from_prompt(prompt))
        assert rendered == f"user : {prompt} assistant :"  # the chat template is used
        assert completion.prompt_tokens == len(hf.tokenizer(rendered, add_special_tokens=False)["input_ids"])
        assert 1 <= completion.completion_tokens <= 6
        assert completion.finish_reason in ("stop", "length")
        assert completion.finish_reason != "length" or completion.completion_tokens == 6


def test_hf_seeded_sampling_is_reproducible_and_leaves_global_rng_alone(hf) -> None:
    import torch

    hot = SamplingParams(temperature=1.5, max_tokens=8)
    state = torch.random.get_rng_state()
    a = hf.generate([LLMRequest.from_prompt(PROMPTS[0], hot, seed=s) for s in range(6)])
    b = hf.generate([LLMRequest.from_prompt(PROMPTS[1], hot, seed=99), LLMRequest.from_prompt(PROMPTS[0], hot, seed=3)])
    assert torch.equal(state, torch.random.get_rng_state())
    assert b[1].text == a[3].text  # same seed and prompt, different batch: same answer
    assert len({c.text for c in a}) > 1  # different seeds really sample


def test_hf_stop_strings_cut_the_answer(hf) -> None:
    free = hf.generate([LLMRequest.from_prompt(PROMPTS[2], SamplingParams(max_tokens=8))])[0].text
    if not free.split():
        pytest.skip("the random model answered only special tokens")
    stop = free.split()[min(1, len(free.split()) - 1)]
    cut = hf.generate([LLMRequest.from_prompt(PROMPTS[2], SamplingParams(max_tokens=8, stop=(stop,)))])[0]
    assert stop not in cut.text and free.startswith(cut.text.rstrip())
    assert cut.finish_reason == "stop"


def test_hf_missing_transformers_names_the_extra(monkeypatch) -> None:
    from rpp_gym.llm.hf import HFBackend

    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ImportError, match=r'pip install "rpp-gym\[hf\]"'):
        HFBackend("anything")


# --------------------------------------------------------------------------- vLLM via stand-ins


@dataclass
class StandInSamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 16
    stop: list[str] | None = None
    seed: int | None = None


@dataclass
class StandInCompletionOutput:
    text: str
    token_ids: list[int]
    finish_reason: str | None


@dataclass
class StandInRequestOutput:
    prompt_token_ids: list[int]
    outputs: list[StandInCompletionOutput]


@dataclass
class StandInLLM:
    """Has the surface of ``vllm.LLM.chat`` that VLLMBackend uses."""

    calls: list[dict[str, Any]] = field(default_factory=list)
    empty: bool = False

    def chat(self, messages, sampling_params=None, use_tqdm=True):
        self.calls.append({"messages": messages, "sampling_params": sampling_params, "use_tqdm": use_tqdm})
        out = []
        for conversation, params in zip(messages, sampling_params, strict=True):
            words = conversation[-1]["content"].split()
            text = " ".join(words[: params.max_tokens])
            finish = "length" if len(words) > params.max_tokens else "stop"
            out.append(
                StandInRequestOutput(
                    list(range(len(words) + 5)),
                    [] if self.empty else [StandInCompletionOutput(text, list(range(len(text.split()))), finish)],
                )
            )
        return out


def test_vllm_maps_requests_and_outputs() -> None:
    llm = StandInLLM()
    backend = VLLMBackend("org/model", llm=llm, sampling_params_cls=StandInSamplingParams)
    assert isinstance(backend, LLMBackend) and backend.identity == "vllm:org/model"
    requests = [
        LLMRequest.from_prompt("a b c", SamplingParams(max_tokens=2), seed=5),
        LLMRequest(
            ({"role": "system", "content": "be brief"}, {"role": "user", "content": "x y"}),
            SamplingParams(temperature=0.7, top_p=0.9, max_tokens=10, stop=("\n",)),
            seed=42,
        ),
    ]
    first, second = backend.generate(requests)
    assert len(llm.calls) == 1  # the whole batch in one call
    call = llm.calls[0]
    assert call["use_tqdm"] is False
    assert call["messages"] == [
        [{"role": "user", "content": "a b c"}],
        [{"role": "system", "content": "be brief"}, {"role": "user", "content": "x y"}],
    ]
    assert call["sampling_params"] == [
        StandInSamplingParams(temperature=0.0, top_p=1.0, max_tokens=2),  # greedy: no seed
        StandInSamplingParams(temperature=0.7, top_p=0.9, max_tokens=10, stop=["\n"], seed=42),
    ]
    assert (first.text, first.finish_reason, first.prompt_tokens, first.completion_tokens) == ("a b", "length", 8, 2)
    assert (second.text, second.finish_reason, second.prompt_tokens, second.completion_tokens) == ("x y", "stop", 7, 2)
    assert backend.generate([]) == []
    backend.close()
    backend.close()
    with pytest.raises(LLMBackendError, match="closed"):
        backend.generate(requests)


def test_vllm_without_output_is_an_error() -> None:
    backend = VLLMBackend("m", llm=StandInLLM(empty=True), sampling_params_cls=StandInSamplingParams)
    with pytest.raises(LLMBackendError, match="request 0 returned no output"):
        backend.generate([LLMRequest.from_prompt("a")])


def test_vllm_missing_names_the_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(ImportError, match=r'pip install "rpp-gym\[vllm\]"'):
        VLLMBackend("org/model")
