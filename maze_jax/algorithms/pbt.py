"""Population-based training's exploit and explore step (Jaderberg et al. 2017, truncation selection), as one pure
function over a population of learner states with a leading member axis.

Every learner's state carries its traced hyperparameters (`hparams`), so a member is its whole state: the worst
`fraction` of the members (by score) each copy the state of a member drawn from the best `fraction` (weights,
optimizer state, hyperparameters, replay buffer: everything the learner holds), then multiply each explored
hyperparameter by a factor drawn from `factors`. A copied member's random key is folded with its index, so it does
not repeat its source's draws. Deterministic for a key: a resumed run repeats it bit for bit.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def exploit_and_explore(learner, scores: jax.Array, key: jax.Array, explored: tuple, fraction: float = 0.25,
                        factors: tuple = (0.8, 1.25)):
    """(new learner states, source: int32 [members], the member each one now continues; itself if kept).

    learner: learner states, leading member axis of size P; scores: float [P] (NaN: worst); explored: names of
    traced hyperparameters to perturb; fraction: the share of members replaced (at least one, at most half)."""
    n = scores.shape[0]
    q = max(1, min(n // 2, int(n * fraction)))
    order = jnp.argsort(jnp.where(jnp.isnan(scores), -jnp.inf, scores))  # ascending: the worst first
    pick, perturb = jax.random.split(key)
    donors = order[n - q:][jax.random.randint(pick, (q,), 0, q)]  # each of the worst draws one of the best
    source = jnp.arange(n).at[order[:q]].set(donors)
    replaced = source != jnp.arange(n)
    copied = jax.tree.map(lambda x: x[source], learner)
    draws = jax.random.choice(perturb, jnp.asarray(factors, jnp.float32), (n, len(explored)))
    hparams = copied.hparams.replace(**{
        name: jnp.where(replaced, getattr(copied.hparams, name) * draws[:, i], getattr(copied.hparams, name))
        for i, name in enumerate(explored)})
    new_keys = jax.vmap(jax.random.fold_in)(copied.key, jnp.arange(n))
    keys = jnp.where(replaced.reshape((n,) + (1,) * (copied.key.ndim - 1)), new_keys, copied.key)
    return copied.replace(hparams=hparams, key=keys), source.astype(jnp.int32)


def spread(hparams, key: jax.Array, explored: tuple, factor: float):
    """A population's first hyperparameters: each member's explored ones multiplied by a log-uniform factor in
    [1 / factor, factor] (members on the leading axis), so that the population starts spread around the config's
    values; factor 1 keeps them."""
    n = jax.tree.leaves(hparams)[0].shape[0]
    logs = jax.random.uniform(key, (n, len(explored)), minval=-1.0, maxval=1.0) * jnp.log(factor)
    return hparams.replace(**{name: getattr(hparams, name) * jnp.exp(logs[:, i]) for i, name in enumerate(explored)})
