"""A project of one's own that trains with maze_jax: an environment and a model, configured by `_target_`."""
