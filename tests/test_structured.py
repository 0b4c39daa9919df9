"""Action masking, dict and multi-discrete actions, and per-sub-step networks of structured envs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from maze_jax.algorithms.losses import sub_step_weights
from maze_jax.envs.cutting_2d import make_cutting_2d
from maze_jax.envs.structured import masked_logits
from maze_jax.models import build_actor_critic, build_policy
from maze_jax.models.distributions import Categorical, Joint, distribution_for

MLP = {"_target_": "maze_jax.models.FlattenConcatPolicy", "hidden_units": [16]}


def test_masked_choices_are_never_sampled_have_zero_probability_and_no_entropy():
    dist = Categorical(5)
    logits = jnp.array([3.0, 0.5, -1.0, 2.0, 0.0])
    allowed = jnp.array([False, True, True, False, True])
    out = masked_logits(logits, allowed)
    samples = jax.vmap(lambda k: dist.sample(k, out))(jax.random.split(jax.random.key(0), 5000))
    assert set(np.unique(samples).tolist()) == {1, 2, 4}
    assert int(dist.mode(out)) == 1  # the best allowed, not the best overall (0)
    probs = jnp.exp(jax.vmap(lambda a: dist.log_prob(out, a))(jnp.arange(5)))
    assert probs[0] == 0.0 and probs[3] == 0.0
    np.testing.assert_allclose(probs.sum(), 1.0, rtol=1e-6)
    renormalised = jax.nn.softmax(logits[jnp.array([1, 2, 4])])
    np.testing.assert_allclose(dist.entropy(out), -(renormalised * jnp.log(renormalised)).sum(), rtol=1e-5)
    grads = jax.grad(lambda x: dist.log_prob(masked_logits(x, allowed), jnp.int32(1)))(logits)
    assert grads[0] == 0.0 and grads[3] == 0.0  # masked logits get no gradient


def test_joint_distribution_of_a_dict_space_sums_heads():
    from gymnax.environments import spaces

    dist = distribution_for(spaces.Dict({"a": spaces.Discrete(3), "b": spaces.Discrete(2)}), order=("b", "a"))
    assert [name for name, _ in dist.heads] == ["b", "a"] and dist.n_outputs == 5
    out = jnp.array([0.0, 1.0, 2.0, 0.0, -1.0])
    action = dist.sample(jax.random.key(1), out)
    assert set(action) == {"a", "b"}
    expected = Categorical(2).log_prob(out[:2], action["b"]) + Categorical(3).log_prob(out[2:], action["a"])
    np.testing.assert_allclose(dist.log_prob(out, action), expected, rtol=1e-6)
    assert dist.mode(out) == {"b": 1, "a": 0}


def test_multi_discrete_actions_are_integer_vectors():
    from maze_jax.envs.spaces import MultiDiscrete

    space = MultiDiscrete([3, 4])
    dist = distribution_for(space)
    assert isinstance(dist, Joint) and dist.stacked and dist.n_outputs == 7
    out = jnp.zeros((10, 7))
    actions = dist.sample(jax.random.key(0), out)
    assert actions.shape == (10, 2) and bool(space.contains(actions[0]))
    np.testing.assert_allclose(dist.log_prob(out, actions), jnp.full(10, -np.log(3) - np.log(4)), rtol=1e-6)
    np.testing.assert_allclose(dist.entropy(out[0]), np.log(3) + np.log(4), rtol=1e-6)


@pytest.mark.slow
def test_structured_policy_has_a_network_per_sub_step_and_only_the_acting_one_counts():
    spec = make_cutting_2d("struct_masked")
    policy = build_policy(MLP, spec)
    obs, state = spec.env.reset(jax.random.key(0), spec.params)
    for _ in range(2):  # one whole step: the raw piece cut, so several pieces take the next order
        obs, state, *_ = spec.env.step(jax.random.key(0), state, {"piece_idx": 0, "cut_rotation": 0, "cut_order": 0},
                                       spec.params)
    assert int(obs["inventory_mask"].sum()) >= 2 and int(obs["actor_id"]) == 0
    params = policy.init(jax.random.key(1), obs)
    assert set(params["params"]) == {"networks_0", "networks_1"}
    batch = jax.tree.map(lambda x: x[None], obs)
    out = policy.outputs(params, batch)
    action = policy.dist.sample(jax.random.key(2), out)
    assert int(action["cut_rotation"][0]) == 0 and int(action["cut_order"][0]) == 0  # inactive heads: point mass
    only_selection = Categorical(50).log_prob(out[0, :50], action["piece_idx"][0])
    np.testing.assert_allclose(policy.dist.log_prob(out, action)[0], only_selection, rtol=1e-6)
    assert bool(obs["inventory_mask"][action["piece_idx"][0]])
    # the cut sub-step's network gets no gradient from the selection sub-step
    grads = jax.grad(lambda p: policy.dist.log_prob(policy.outputs(p, batch), action).sum())(params)
    assert all(float(jnp.abs(g).sum()) == 0.0 for g in jax.tree.leaves(grads["params"]["networks_1"]))
    assert any(float(jnp.abs(g).sum()) > 0.0 for g in jax.tree.leaves(grads["params"]["networks_0"]))


def test_structured_critic_picks_the_acting_sub_steps_value():
    spec = make_cutting_2d("struct")
    model = build_actor_critic(MLP, None, spec)
    obs, state = spec.env.reset(jax.random.key(0), spec.params)
    params = model.init(jax.random.key(1), obs)
    assert set(params["critic"]["params"]) == {"networks_0", "networks_1"}
    batch = jax.tree.map(lambda x: jnp.stack([x, x]), obs)
    batch["actor_id"] = jnp.array([0, 1])
    values = model.value(params, batch)
    critic = model.critic.networks
    sub_obs = lambda i: {k: obs[k] for k in model.critic.observation_keys[i]}
    for i in (0, 1):
        expected = critic[i].apply({"params": params["critic"]["params"][f"networks_{i}"]}, sub_obs(i))[0]
        np.testing.assert_allclose(values[i], expected, rtol=1e-6)


def test_sub_step_losses_are_sums_of_per_sub_step_means():
    weights = sub_step_weights(jnp.array([0, 1, 0, 0]), 2)
    x = jnp.array([1.0, 10.0, 3.0, 5.0])
    np.testing.assert_allclose((weights * x[:, None]).sum(0), [3.0, 10.0])
    np.testing.assert_allclose((weights * x[:, None]).sum(), 13.0)


def test_shared_critic_is_refused_for_structured_envs():
    from maze_jax.config import ConfigError

    with pytest.raises(ConfigError, match="critic=separate"):
        build_actor_critic(MLP, {"shared": True}, make_cutting_2d("struct"))


@pytest.mark.learning
def test_ppo_learns_a_multi_discrete_bandit():
    """An env of our own with a MultiDiscrete action: each step pays 1 per entry equal to the target [1, 0]."""
    from flax import struct
    from gymnax.environments import environment, spaces

    from maze_jax.collectors import policy_params
    from maze_jax.envs.spaces import MultiDiscrete
    from maze_jax.research import make_train
    from maze_jax.shell.settings import compose_config

    @struct.dataclass
    class Params(environment.EnvParams):
        max_steps_in_episode: int = 10

    class Bandit(environment.Environment):
        default_params = Params()

        def reset_env(self, key, params):
            return jnp.ones(2), environment.EnvState(time=0)

        def step_env(self, key, state, action, params):
            reward = (action == jnp.array([1, 0])).sum().astype(jnp.float32)
            return jnp.ones(2), environment.EnvState(time=state.time + 1), reward, jnp.bool_(False), {}

        def action_space(self, params=None):
            return MultiDiscrete([3, 2])

        def observation_space(self, params=None):
            return spaces.Box(0.0, 1.0, (2,))

    cfg, _ = compose_config(["algorithm=ppo", "runner=dev", "algorithm.n_epochs=4", "algorithm.epoch_length=5",
                             "algorithm.n_rollout_steps=20", "algorithm.batch_size=20", "algorithm.lr=0.01",
                             "model.hidden_units=[8]"])
    train = make_train(cfg, env=Bandit())
    state, _ = jax.jit(train)(jax.random.key(0))
    action = train.algorithm.policy.act(policy_params(state), jnp.ones((1, 2)), jax.random.key(0), True)
    np.testing.assert_array_equal(action[0], [1, 0])
