"""The RPP agent: its update is the documented A2C TD update, it learns, it saves and reloads."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import rpp_gym  # noqa: F401
from rpp_gym.agents.baselines import RandomPolicy
from rpp_gym.agents.rpp import (
    Agent,
    Args,
    RPPPolicy,
    a2c_losses,
    gae,
    load_agent,
    load_policy,
    main,
    mappo_losses,
    train,
)
from rpp_gym.evaluation import evaluate

ENV_ID = "RPP-MovieLens-Sim-v0"


# ---- the update, by hand ---------------------------------------------------------------------


def _forward_by_hand(seq: torch.nn.Sequential, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(last hidden activation, output) of a Linear-Tanh-Linear-Tanh-Linear MLP, in float64 numpy."""
    w = [seq[i].weight.detach().double().numpy() for i in (0, 2, 4)]
    b = [seq[i].bias.detach().double().numpy() for i in (0, 2, 4)]
    h = np.tanh(np.tanh(x @ w[0].T + b[0]) @ w[1].T + b[1])
    return h, h @ w[2].T + b[2]


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def test_a2c_update_matches_a_hand_computation() -> None:
    torch.manual_seed(0)
    nvec = [2, 3, 2, 2]
    agent = Agent(obs_dim=3, nvec=nvec, hidden=4).double()
    with torch.no_grad():  # make the output layers matter (they start near zero)
        for p in agent.parameters():
            p.add_(0.3 * torch.randn_like(p))
    obs = np.array([[0.1, -0.5, 0.3], [0.7, 0.2, -0.1], [-0.4, 0.4, 0.9]])
    next_obs = np.array([[0.2, -0.4, 0.3], [0.6, 0.1, 0.0], [0.0, 0.0, 0.0]])
    actions = np.array([[1, 2, 0, 1], [0, 0, 1, 1], [1, 1, 1, 0]])
    rewards = np.array([1.0, 0.0, 0.5])  # each user's own reward
    dones = np.array([0.0, 0.0, 1.0])  # the third user's episode ends: no bootstrap
    gamma, ent_coef = 0.95, 0.1

    losses = a2c_losses(
        agent, torch.tensor(obs), torch.tensor(actions), torch.tensor(rewards), torch.tensor(next_obs),
        torch.tensor(dones), gamma, ent_coef,
    )
    agent.zero_grad()
    (losses["actor_loss"] + losses["critic_loss"]).backward()

    # by hand: TD errors per user
    h_c, v = _forward_by_hand(agent.critic, obs)
    _, v_next = _forward_by_hand(agent.critic, next_obs)
    v, v_next = v[:, 0], v_next[:, 0]
    delta = rewards + gamma * v_next * (1 - dones) - v
    np.testing.assert_allclose(losses["delta"].numpy(), delta, rtol=1e-10)
    assert losses["critic_loss"].item() == pytest.approx(0.5 * np.mean(delta**2), rel=1e-10)
    # d critic_loss / d V(s_i) = -delta_i / B (the target is held fixed)
    g_v = -delta / len(delta)
    np.testing.assert_allclose(agent.critic[4].bias.grad.numpy(), [g_v.sum()], rtol=1e-10)
    np.testing.assert_allclose(agent.critic[4].weight.grad.numpy(), (g_v @ h_c)[None], rtol=1e-10)

    actor_loss, entropy = 0.0, 0.0
    for k, n in enumerate(nvec):
        h, z = _forward_by_hand(agent.actors[k], obs)
        logp = _log_softmax(z)
        p = np.exp(logp)
        ent_k = -(p * logp).sum(axis=1)
        onehot = np.eye(n)[actions[:, k]]
        actor_loss += -np.mean(delta * logp[np.arange(3), actions[:, k]])
        entropy += ent_k.mean()
        # d/dz of -delta * log p(a) is -delta (onehot - p); of -c * H it is c * p * (log p + H)
        g_z = (-delta[:, None] * (onehot - p) + ent_coef * p * (logp + ent_k[:, None])) / len(delta)
        np.testing.assert_allclose(agent.actors[k][4].bias.grad.numpy(), g_z.sum(axis=0), rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(agent.actors[k][4].weight.grad.numpy(), g_z.T @ h, rtol=1e-8, atol=1e-12)
    actor_loss -= ent_coef * entropy
    assert losses["entropy"].item() == pytest.approx(entropy, rel=1e-10)
    assert losses["actor_loss"].item() == pytest.approx(actor_loss, rel=1e-10)
    # the actors' loss does not reach the critic and vice versa (separate optimisers, no leaks)
    agent.zero_grad()
    losses = a2c_losses(
        agent, torch.tensor(obs), torch.tensor(actions), torch.tensor(rewards), torch.tensor(next_obs),
        torch.tensor(dones), gamma, ent_coef,
    )
    losses["actor_loss"].backward()
    assert all(p.grad is None or not p.grad.any() for p in agent.critic_parameters())


def test_gae_matches_a_hand_computation() -> None:
    r = torch.tensor([[1.0], [0.0], [0.5]])
    v = torch.tensor([[0.2], [0.4], [0.1]])
    d = torch.tensor([[0.0], [0.0], [1.0]])
    adv, ret = gae(r, v, d, torch.tensor([9.0]), gamma=0.9, lam=0.5)
    d2 = 0.5 - 0.1  # terminal: the 9.0 bootstrap is ignored
    d1 = 0.0 + 0.9 * 0.1 - 0.4
    d0 = 1.0 + 0.9 * 0.4 - 0.2
    a2, a1 = d2, d1 + 0.45 * d2
    a0 = d0 + 0.45 * a1
    np.testing.assert_allclose(adv[:, 0].numpy(), [a0, a1, a2], rtol=1e-6)
    np.testing.assert_allclose(ret.numpy(), (adv + v).numpy())


def test_mappo_loss_at_ratio_one_is_the_policy_gradient_per_agent() -> None:
    torch.manual_seed(1)
    agent = Agent(3, [2, 3, 2, 2], hidden=4)
    obs = torch.randn(5, 3)
    actions, logp, _, value = agent.get_action_and_value(obs)
    adv = torch.randn(5)
    out = mappo_losses(agent, obs, actions, logp.detach(), adv, value.detach() + 1, value.detach(), 0.2, 0.0,
                       norm_adv=False)
    # ratio 1: loss = -mean(adv) per agent, summed over the four agents
    assert out["actor_loss"].item() == pytest.approx(-4 * adv.mean().item(), rel=1e-5)
    assert out["critic_loss"].item() == pytest.approx(0.5, rel=1e-5)
    assert out["approx_kl"].item() == pytest.approx(0.0, abs=1e-7)


# ---- training --------------------------------------------------------------------------------

TINY = {"num_envs": 16, "total_timesteps": 16 * 5 * 4, "hidden": 16, "env_kwargs": {"rounds": 5}}


@pytest.mark.parametrize("algo", ["a2c", "mappo"])
def test_seeded_runs_reproduce_exactly(algo: str) -> None:
    a = train(Args(algo=algo, seed=3, **TINY))
    b = train(Args(algo=algo, seed=3, **TINY))
    c = train(Args(algo=algo, seed=4, **TINY))
    assert a.curve == b.curve and len(a.curve) == (20 if algo == "a2c" else 4)
    for (name, pa), pb in zip(a.agent.state_dict().items(), b.agent.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    assert a.curve != c.curve


def test_every_learned_part_is_trained() -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)  # the same initialisation train() uses for seed 3
        before = Agent(92, [3, 5, 9, 5], hidden=16)
    result = train(Args(seed=3, **TINY))
    for (name, p0), p1 in zip(before.state_dict().items(), result.agent.state_dict().values(), strict=True):
        assert not torch.equal(p0, p1), f"{name} did not change in training"
    assert result.env_config["rounds"] == 5 and result.env_config["split"] == "train"


def test_short_training_beats_random_far_outside_the_seed_spread() -> None:
    # 12k user-rounds of mappo (about 5 CPU seconds a seed) on 5-round episodes
    env_kwargs = {"rounds": 5}
    kwargs = {"split": "test", "n_users": 100, "env_kwargs": env_kwargs}
    args = {"algo": "mappo", "num_envs": 32, "total_timesteps": 12_000, "env_kwargs": env_kwargs}
    seeds = (1, 2, 3)
    policies = [train(Args(seed=s, **args)).policy() for s in seeds]
    trained = [evaluate(p, ENV_ID, seed=s, **kwargs).per_user().mean() for p, s in zip(policies, seeds, strict=True)]
    random = [evaluate(RandomPolicy([3, 5, 9, 5], seed=s), ENV_ID, seed=s, **kwargs).per_user().mean() for s in seeds]
    gain = np.mean(trained) - np.mean(random)
    spread = max(np.std(trained, ddof=1), np.std(random, ddof=1))
    assert gain > 0.05 and gain > 5 * spread, (trained, random)


def test_checkpoint_round_trip(tmp_path) -> None:
    path = tmp_path / "rpp.pt"
    result = train(Args(seed=5, save_path=str(path), exp_name="tiny", **TINY))
    assert result.checkpoint == path
    _, meta = load_agent(path)
    assert meta["env_id"] == ENV_ID and meta["env_config"] == result.env_config
    assert meta["args"]["seed"] == 5 and meta["args"]["env_kwargs"] == {"rounds": 5}
    obs = np.random.default_rng(0).uniform(-1, 1, (64, 92)).astype(np.float32)
    greedy = load_policy(path)
    assert greedy.name == "tiny"
    np.testing.assert_array_equal(greedy.act(obs), result.policy().act(obs))
    # stochastic: the same seed gives the same samples, another seed others
    s1, s2 = load_policy(path, deterministic=False, seed=7), result.policy(deterministic=False, seed=7)
    np.testing.assert_array_equal(s1.act(obs), s2.act(obs))
    assert not np.array_equal(s1.act(obs), load_policy(path, deterministic=False, seed=8).act(obs))
    # and it plugs into evaluate
    res = evaluate(greedy, ENV_ID, split="valid", n_users=8, env_kwargs={"rounds": 5})
    assert res.actions.shape == (8, 5, 4) and res.name == "tiny"


def test_callback_sees_every_update() -> None:
    events: list[dict] = []
    result = train(Args(seed=2, **TINY), callback=events.append)
    assert [e["seen"] for e in events] == result.curve_steps
    assert [e["reward"] for e in events] == result.curve
    assert all(0.0 <= e["ndcg@1"] <= 1.0 and e["agent"] is result.agent for e in events)
    assert {"actor_loss", "critic_loss", "entropy"} <= set(events[-1]["losses"])


def test_interrupt_saves_and_resume_continues(tmp_path) -> None:
    path = tmp_path / "agent.pt"
    args = Args(algo="mappo", seed=2, save_path=str(path), **TINY)  # 4 updates of 80 transitions

    def stop_after_two(event: dict) -> None:
        if event["update"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(args, callback=stop_after_two)
    _, meta = load_agent(path)
    assert meta["seen"] == 160 and set(meta["optimizers"]) == {"actor", "critic"}
    resumed = train(args, resume_from=path)
    assert resumed.curve_steps == [240, 320]
    assert load_agent(path)[1]["seen"] == 320


def test_policy_protocol_shapes() -> None:
    policy = RPPPolicy(Agent(92, [3, 5, 9, 5], hidden=8))
    act = policy.act(np.zeros((3, 92), dtype=np.float32))
    assert act.dtype == np.int64 and act.shape == (3, 4)
    assert ((act >= 0) & (act < [3, 5, 9, 5])).all()


def test_cli_help_lists_every_args_field(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--algo", "--total-timesteps", "--gamma", "--actor-lr", "--critic-lr", "--env-kwargs", "--save-path"):
        assert flag in out
    assert "Discount factor" in out


def test_cli_trains_and_saves(tmp_path, capsys) -> None:
    path = tmp_path / "cli.pt"
    assert main(["--algo", "mappo", "--num-envs", "8", "--total-timesteps", "80", "--hidden", "8",
                 "--env-kwargs", '{"rounds": 5}', "--save-path", str(path)]) == 0
    assert path.exists() and "saved" in capsys.readouterr().out


def test_bad_args_are_refused() -> None:
    with pytest.raises(ValueError, match="algo"):
        Args(algo="ppo")
    with pytest.raises(TypeError):
        Args(learning_rate=1e-3)  # type: ignore[call-arg]


# ---- RPP+: masked actions --------------------------------------------------------------------

PLUS_ID = "RPP-Plus-MovieLens-Sim-v0"


def test_masked_slots_get_zero_probability_and_are_never_chosen() -> None:
    nvec = [3, 6, 6, 6]
    agent = Agent(10 + sum(nvec), nvec, hidden=8, mask_start=10)
    rng = np.random.default_rng(0)
    obs = rng.uniform(-1, 1, (256, 10 + sum(nvec))).astype(np.float32)
    bits = rng.random((256, sum(nvec))) < 0.5
    bits[:, : nvec[0]] = True  # history is never masked
    for lo in np.cumsum(nvec)[:-1]:
        bits[:, lo] = True  # every pattern keeps its default slot
    obs[:, 10:] = bits
    masks = np.split(bits, np.cumsum(nvec)[:-1], axis=1)
    with torch.no_grad():  # make an empty slot each actor's favourite, so only the mask keeps it out
        for k in range(1, 4):
            agent.actors[k][-1].bias[-1] = 50.0
    x = torch.as_tensor(obs)
    log_probs = [torch.log_softmax(z, -1) for z in agent.get_logits(x)]
    for lp, m in zip(log_probs, masks, strict=True):
        assert torch.all(lp.exp()[torch.as_tensor(~m)] == 0)
        assert torch.allclose(lp.exp().sum(-1), torch.ones(len(obs)))
    gen = torch.Generator().manual_seed(0)
    for deterministic in (True, False):
        action, logp, entropy, _ = agent.get_action_and_value(x, generator=gen, deterministic=deterministic)
        chosen = np.stack([m[np.arange(len(obs)), action[:, k].numpy()] for k, m in enumerate(masks)], 1)
        assert chosen.all()
        assert torch.isfinite(logp).all() and torch.isfinite(entropy).all()
    # the losses stay finite and differentiable with masked logits
    action, _, _, _ = agent.get_action_and_value(x, generator=gen)
    losses = a2c_losses(agent, x, action, torch.ones(len(obs)), x, torch.ones(len(obs)), 0.9, 0.01)
    (losses["actor_loss"] + losses["critic_loss"]).backward()
    assert all(torch.isfinite(p.grad).all() for p in agent.parameters() if p.grad is not None)
    # without the mask the favourite empty slot is what a greedy actor picks
    plain = Agent(10 + sum(nvec), nvec, hidden=8)
    plain.load_state_dict(agent.state_dict())
    assert (plain.get_action_and_value(x, deterministic=True)[0][:, 1:] == 5).all()


def test_mask_start_must_match_the_action_space() -> None:
    with pytest.raises(ValueError, match="mask_slice"):
        Agent(60, [3, 6, 6, 6], mask_start=30)


@pytest.mark.parametrize("algo", ["a2c", "mappo"])
def test_agent_trains_on_rpp_plus_episode_scope(algo: str) -> None:
    # invalid_action="raise" (the default): choosing a single empty slot would stop the run
    args = Args(algo=algo, seed=1, env_id=PLUS_ID, num_envs=8, total_timesteps=8 * 5 * 3, hidden=16,
                env_kwargs={"rounds": 5})
    result = train(args)
    assert result.agent.mask_start is not None and result.bank_path is None
    assert result.eval_env_kwargs == {"rounds": 5}
    res = evaluate(result.policy(deterministic=False, seed=3), PLUS_ID, split="valid", n_users=16,
                   env_kwargs=result.eval_env_kwargs)
    # it ran with invalid_action="raise", so no empty slot was chosen; and the masked sampling
    # does reach the slots rewrites filled after the first round (5 original roles)
    assert res.actions.shape == (16, 5, 4) and (res.actions[:, 1:, 1] >= 5).any()


def test_global_bank_is_saved_with_the_agent_and_used_to_evaluate_and_resume(tmp_path) -> None:
    from rpp_gym.envs.refine import load_slot_bank

    def ids(bank) -> dict:  # type: ignore[no-untyped-def]
        return {p: [s and s.id for s in bank.sentences[p]] for p in bank.sentences}

    path = tmp_path / "agent.pt"
    env_kwargs = {"rounds": 5, "scope": "global", "every": 1, "min_trials": 1}
    # 4 updates of 40 transitions; the bank grows during the first 2, then stays
    args = Args(algo="mappo", seed=2, env_id=PLUS_ID, num_envs=8, total_timesteps=8 * 5 * 4, hidden=16,
                env_kwargs=env_kwargs, save_path=str(path), refine_steps=80)

    def stop_after_two(event: dict) -> None:
        if event["update"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(args, callback=stop_after_two)
    bank_file = tmp_path / "bank.json"
    grown = load_slot_bank(bank_file)
    assert any(grown.mask(p).sum() > grown.original[p].sum() for p in ("role", "reasoning", "format")), (
        "the global bank should have grown"
    )
    seen_banks: list[dict] = []

    def watch(event: dict) -> None:
        seen_banks.append(ids(event["env"].unwrapped.core.bank_of(0)))

    result = train(args, resume_from=path, callback=watch)
    assert result.bank_path == bank_file and result.curve_steps == [120, 160]
    assert seen_banks[0] == ids(grown), "the resumed run acts in the bank saved with its checkpoint"
    assert result.eval_env_kwargs == {**env_kwargs, "bank_file": str(bank_file), "every": 0, "update_stats": False}
    agent, _ = load_agent(path)
    assert agent.mask_start == result.agent.mask_start and agent.stats_start == result.agent.stats_start
    # evaluated on the frozen bank: neither its sentences nor its statistics move, so no test user's
    # observation depends on another's rewards
    vec = gym.make_vec(PLUS_ID, num_envs=8, split="valid", **result.eval_env_kwargs)
    core = vec.unwrapped.core
    obs, _ = vec.reset(seed=0)
    stats = obs[:, core.stats_slice].copy()
    policy = load_policy(path)
    for _ in range(5):
        obs, *_ = vec.step(policy.act(obs))
        np.testing.assert_array_equal(obs[:, core.stats_slice], stats)
    assert ids(core.bank_of(0)) == ids(load_slot_bank(bank_file)) and stats.any()
    vec.close()


def test_slot_value_gain_prefers_the_slots_that_earned_most_wherever_they_are() -> None:
    nvec = [3, 4, 4, 4]
    s = sum(nvec[1:])
    obs_dim = 5 + 2 * s + sum(nvec)
    agent = Agent(obs_dim, nvec, hidden=8, mask_start=5 + 2 * s, stats_start=5)
    plain = Agent(obs_dim, nvec, hidden=8, mask_start=5 + 2 * s)
    plain.load_state_dict({k: v for k, v in agent.state_dict().items() if k != "slot_value_gain"})
    x = torch.zeros((2, obs_dim))
    x[:, 5 + 2 * s :] = 1.0
    x[:, 5 + 2 * s + 3 + 3] = 0.0  # role slot 3 is empty
    x[0, 5:9] = torch.tensor([0.2, 0.9, 0.4, 0.95])  # role means: slot 1 best among the valid ones
    x[1, 5:9] = torch.tensor([0.2, 0.4, 0.9, 0.0])  # another bank: slot 2 best
    # the gain starts at 0: the same policy as without it, and it is trained with the actors
    for a, b in zip(agent.get_logits(x), plain.get_logits(x), strict=True):
        torch.testing.assert_close(a, b)
    assert any(p is agent.slot_value_gain for p in agent.actor_parameters())
    with torch.no_grad():
        agent.slot_value_gain.fill_(5.0)
        for layer in agent.actors:
            layer[-1].weight.zero_()
            layer[-1].bias.zero_()
    role = torch.softmax(agent.get_logits(x)[1], -1)
    assert role.argmax(-1).tolist() == [1, 2] and (role[:, 3] == 0).all()
    with pytest.raises(ValueError, match="needs mask_start"):
        Agent(obs_dim, nvec, stats_start=5)


def test_refine_steps_grows_the_global_bank_then_freezes_it(tmp_path) -> None:
    from rpp_gym.envs.refine import load_slot_bank

    env_kwargs = {"rounds": 5, "scope": "global", "every": 1, "min_trials": 1}
    versions: list[int] = []
    live: list[dict] = []

    trials: list[int] = []

    def watch(event: dict) -> None:
        bank = event["env"].unwrapped.core.bank_of(0)
        versions.append(bank.version)
        trials.append(sum(int(c.sum()) for c in bank.count.values()))
        live[:] = [{p: [s and s.id for s in bank.sentences[p]] for p in bank.sentences}]

    args = Args(algo="mappo", seed=2, env_id=PLUS_ID, num_envs=8, total_timesteps=8 * 5 * 5, hidden=16,
                env_kwargs=env_kwargs, refine_steps=8 * 5 * 2, bank_path=str(tmp_path / "bank.json"))
    result = train(args, callback=watch)
    assert versions[0] < versions[1], "the bank grows while refining"
    assert versions[1] == versions[-1], "and stays as it is after refine_steps"
    assert trials[0] < trials[1] == trials[-1], "statistics too: training then sees the env it is evaluated in"
    saved = load_slot_bank(result.bank_path)  # the grown bank, as the agent last saw it
    assert {p: [s and s.id for s in saved.sentences[p]] for p in saved.sentences} == live[0]
    assert any(saved.mask(p).sum() > saved.original[p].sum() for p in saved.sentences)
    with pytest.raises(ValueError, match="refine_steps=40 freezes a global RPP\\+ bank"):
        train(Args(env_id=PLUS_ID, env_kwargs={"rounds": 5}, num_envs=8, total_timesteps=80, refine_steps=40))
    with pytest.raises(ValueError, match="refine_steps=-1"):
        Args(refine_steps=-1)
