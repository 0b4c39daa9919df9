"""Maze's TensorBoard tags for the learners' plain metric names.

The pure updates return plain names (`policy_loss`, `value_loss/<sub-step>`), so research code reads plain metrics;
the table, TensorBoard and the trackers show Maze's tags (`train_PolicyEvents/policy_loss`), made here. Metrics that
are tags already (the episode statistics `train_BaseEnvEvents/...`, the action rows, `check/...`) pass unchanged."""

from __future__ import annotations

EVENT_GROUPS = {  # algorithm: (the group of its metrics, the groups of the exceptions by name)
    "es": ("ESEvents", {}),
    "ppo": ("PolicyEvents", {"value_loss": "CriticEvents"}),
    "a2c": ("PolicyEvents", {"value_loss": "CriticEvents"}),
    "impala": ("PolicyEvents", {"value_loss": "CriticEvents", "critic_value": "CriticEvents",
                                "discounted_returns": "CriticEvents", "importance_weight": "ImpalaEvents"}),
    "sac": ("SACEvents", {}),
}


def is_tag(name: str) -> bool:
    """A TensorBoard tag already: `<prefix>_<Group>Events/...` or `check/...`."""
    head = name.split("/", 1)[0]
    return name.startswith("check/") or ("_" in head and head.endswith("Events"))


def event_group(algorithm: str, name: str) -> str:
    """The Maze event group of metric `name` of `algorithm`; an algorithm of one's own gets `<Name>Events`
    (`one_step_q` -> `OneStepQEvents`)."""
    default = "".join(part.capitalize() for part in algorithm.split("_")) + "Events"
    group, exceptions = EVENT_GROUPS.get(algorithm, (default, {}))
    return exceptions.get(name.split("/", 1)[0], group)


def maze_tags(metrics: dict, algorithm: str) -> dict:
    """`metrics` with every plain name as Maze's training tag, `train_<Group>/<name>`."""
    return {name if is_tag(name) else f"train_{event_group(algorithm, name)}/{name}": value
            for name, value in metrics.items()}
