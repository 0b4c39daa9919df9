"""Collectors that step Python envs (gymnasium, envpool, your own): threads, worker processes and Ray actors.

They feed the same learners as the JAX-env collector (`maze_jax.collectors.jax_envs`), through the same `Trainer`
protocol, but step envs on the host, so they live in the shell."""
