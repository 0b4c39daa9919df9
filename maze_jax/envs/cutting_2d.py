"""The 2D cutting tutorial environment in JAX, flat (one dict action per step), structured (two sub-steps) and
structured with action masks.

Every step a customer orders a piece (the next entry of the demand list, cycling); the agent picks a piece of
its inventory, a rotation of the order and which of the two guillotine cuts comes first. The order is cut
out and the (at most two) leftovers go back to the inventory. A raw piece is always in the inventory: when one
is cut, a fresh one is added. When the inventory is full the oldest piece is dropped. Reward: -1 per raw piece
cut, -2 for an invalid piece choice or a cut that does not fit (nothing changes then). An episode has 180 steps.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

from maze_jax.envs.gymnax_env import EnvSpec
from maze_jax.envs.structured import ACTOR_ID, SubStep

DEMAND = ((1, 2), (1, 2), (1, 1), (2, 2), (1, 2), (1, 1))
VARIANTS = ("flat", "struct", "struct_masked")


@struct.dataclass
class CuttingState:
    inventory: jax.Array  # (max_pieces, 2) int32, oldest first; rows from `size` on are (0, 0)
    size: jax.Array  # pieces in the inventory
    time: jax.Array  # whole steps taken (cuts, valid or not)
    selected: jax.Array  # structured variants: the piece chosen in sub-step 0
    actor: jax.Array  # structured variants: the acting sub-step (0: choose a piece, 1: cut it)
    raw_pieces_used: jax.Array  # raw pieces cut so far this episode


@struct.dataclass
class CuttingParams:
    max_steps_in_episode: int = 180  # whole steps (a structured step is both sub-steps)


def fits(piece: jax.Array, order: jax.Array) -> jax.Array:
    """[order fits unrotated, order fits rotated] into `piece` ((x, y) sizes)."""
    return jnp.stack([jnp.all(order <= piece), jnp.all(order[::-1] <= piece)])


def cut_pieces(piece: jax.Array, order: jax.Array, cut_order: jax.Array) -> jax.Array:
    """The two leftovers (2, 2) of cutting `order` out of a corner of `piece` by two guillotine cuts; cut order 0
    cuts across x first, 1 across y first. Areas: piece = order + leftovers."""
    (px, py), (ox, oy) = piece, order
    first_x = jnp.array([[px - ox, py], [ox, py - oy]])
    first_y = jnp.array([[px, py - oy], [px - ox, oy]])
    return jnp.where(cut_order == 0, first_x, first_y)


class Cutting2D(environment.Environment):
    """The cutting env; `variant` is flat, struct or struct_masked (see the module docstring)."""

    def __init__(self, variant: str = "flat", max_pieces_in_inventory: int = 50, raw_piece_size=(4, 3),
                 demand=DEMAND):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant={variant!r}: expected one of {', '.join(VARIANTS)}")
        self.variant = variant
        self.max_pieces = int(max_pieces_in_inventory)
        self.raw_piece = jnp.asarray(raw_piece_size, jnp.int32)
        self.demand = jnp.asarray(demand, jnp.int32)
        masked = variant == "struct_masked"
        if variant != "flat":
            self.sub_steps = (
                SubStep("select_piece", ("inventory", "inventory_size", "ordered_piece")
                        + (("inventory_mask",) if masked else ()), ("piece_idx",)),
                SubStep("cut", ("selected_piece", "ordered_piece") + (("cutting_mask",) if masked else ()),
                        ("cut_rotation", "cut_order")),
            )
        if masked:
            self.action_masks = {"piece_idx": "inventory_mask", "cut_rotation": "cutting_mask"}

    @property
    def default_params(self) -> CuttingParams:
        return CuttingParams()

    @property
    def name(self) -> str:
        return "tutorial_cutting_2d" + ("" if self.variant == "flat" else "_" + self.variant)

    # --- inventory operations (pure) ---
    def _remove(self, inventory, size, idx):
        slots = jnp.arange(self.max_pieces)
        shifted = inventory[jnp.minimum(slots + (slots >= idx), self.max_pieces - 1)]
        return jnp.where((slots < size - 1)[:, None], shifted, 0), size - 1

    def _add(self, inventory, size, piece):
        """Appends `piece` unless it is empty; a full inventory drops its oldest piece first."""
        keep = jnp.all(piece > 0)
        full = size >= self.max_pieces
        dropped = jnp.where(full, jnp.roll(inventory, -1, axis=0).at[-1].set(0), inventory)
        size_after_drop = jnp.where(full, size - 1, size)
        added = dropped.at[size_after_drop].set(piece)
        return jnp.where(keep, added, inventory), jnp.where(keep, size_after_drop + 1, size)

    def _replenish(self, inventory, size):
        """Adds a raw piece if none is left."""
        slots = jnp.arange(self.max_pieces)
        has_raw = jnp.any(jnp.all(inventory == self.raw_piece, axis=1) & (slots < size))
        added = self._add(inventory, size, self.raw_piece)
        return jnp.where(has_raw, inventory, added[0]), jnp.where(has_raw, size, added[1])

    def ordered_piece(self, state: CuttingState) -> jax.Array:
        return self.demand[state.time % self.demand.shape[0]]

    def cut(self, state: CuttingState, piece_idx, rotation, cut_order):
        """One whole step: the state after cutting the current order from piece `piece_idx`, and the reward."""
        piece_idx = jnp.clip(piece_idx, 0, self.max_pieces - 1)
        piece = state.inventory[piece_idx]
        order = self.ordered_piece(state)
        valid = (piece_idx < state.size) & fits(piece, order)[rotation]
        order = jnp.where(rotation == 1, order[::-1], order)
        inventory, size = self._remove(state.inventory, state.size, piece_idx)
        for leftover in cut_pieces(piece, order, cut_order):
            inventory, size = self._add(inventory, size, leftover)
        inventory, size = self._replenish(inventory, size)
        raw = valid & jnp.all(piece == self.raw_piece)
        reward = jnp.where(valid, -raw.astype(jnp.float32), -2.0)
        state = state.replace(inventory=jnp.where(valid, inventory, state.inventory),
                              size=jnp.where(valid, size, state.size), time=state.time + 1,
                              raw_pieces_used=state.raw_pieces_used + raw)
        return state, reward, {"CuttingEvents/valid_cut": valid.astype(jnp.float32),
                               "CuttingEvents/invalid_cut": (~valid).astype(jnp.float32),
                               "InventoryEvents/piece_replenished": raw.astype(jnp.float32)}

    def info(self, state: CuttingState, cut_events: dict) -> dict:
        """Maze's inventory and cutting events of a step, and its KPI, raw pieces used per whole step so far."""
        events = {**cut_events, "InventoryEvents/pieces_in_inventory": state.size.astype(jnp.float32)}
        usage = state.raw_pieces_used / jnp.maximum(state.time, 1)
        return {"events": events, "kpis": {"raw_piece_usage_per_step": usage.astype(jnp.float32)}}

    # --- gymnax interface ---
    def reset_env(self, key, params):
        empty = jnp.zeros((self.max_pieces, 2), jnp.int32)
        inventory, size = self._add(empty, jnp.int32(0), self.raw_piece)
        zero = jnp.int32(0)
        state = CuttingState(inventory, size, zero, zero, zero, zero)
        return self.get_obs(state, params), state

    def step_env(self, key, state, action, params):
        if self.variant == "flat":
            state, reward, events = self.cut(state, action["piece_idx"], action["cut_rotation"], action["cut_order"])
        else:
            chosen = state.replace(selected=jnp.asarray(action["piece_idx"], jnp.int32), actor=jnp.int32(1))
            cut, cut_reward, events = self.cut(state, state.selected, action["cut_rotation"], action["cut_order"])
            cut = cut.replace(actor=jnp.int32(0))
            choosing = state.actor == 0
            state = jax.tree.map(lambda a, b: jnp.where(choosing, a, b), chosen, cut)
            reward = jnp.where(choosing, 0.0, cut_reward)
            events = jax.tree.map(lambda e: jnp.where(choosing, 0.0, e), events)  # choosing a piece cuts nothing
        return self.get_obs(state, params), state, reward, jnp.bool_(False), self.info(state, events)

    def render_frame(self, state: CuttingState, params=None) -> np.ndarray:
        """A drawing of the state, (H, W, 3) uint8, for videos of rollouts: the inventory's pieces to scale (the
        raw piece grey, the selected one outlined in red), the customer's order, and the raw pieces used so far."""
        from PIL import Image, ImageDraw

        scale, pad, width, height = 20, 8, 640, 400
        image = Image.new("RGB", (width, height), "white")
        draw = ImageDraw.Draw(image)
        inventory, size = np.asarray(state.inventory), int(state.size)
        order = np.asarray(self.ordered_piece(state))
        draw.text((pad, pad), f"step {int(state.time)}  |  raw pieces used {int(state.raw_pieces_used)}  |  "
                              f"{size} pieces  |  order {order[0]} x {order[1]}", fill="black")
        draw.rectangle([width - pad - order[0] * scale, pad + 16, width - pad, pad + 16 + order[1] * scale],
                       fill="#f6c85f", outline="black")
        x, y, row_height = pad, pad + 40, 0
        selected = int(state.selected) if self.variant != "flat" and int(state.actor) == 1 else -1
        for i in range(size):
            w, h = (int(v) * scale for v in inventory[i])
            if x + w + pad > width:
                x, y, row_height = pad, y + row_height + pad, 0
            if y + h > height - pad:
                break
            raw = bool(np.all(inventory[i] == np.asarray(self.raw_piece)))
            draw.rectangle([x, y, x + w, y + h], fill="#bbbbbb" if raw else "#6f9fd8",
                           outline="red" if i == selected else "black", width=3 if i == selected else 1)
            x, row_height = x + w + pad, max(row_height, h)
        return np.asarray(image)

    def get_obs(self, state, params=None, key=None) -> dict:
        order = self.ordered_piece(state)
        obs = {"inventory": state.inventory.astype(jnp.float32),
               "inventory_size": state.size.astype(jnp.float32)[None],
               "ordered_piece": order.astype(jnp.float32)}
        if self.variant == "flat":
            return obs
        selected = jnp.clip(state.selected, 0, self.max_pieces - 1)
        piece = jnp.where(selected < state.size, state.inventory[selected], 0)
        obs.update({"selected_piece": piece.astype(jnp.float32), ACTOR_ID: state.actor})
        if self.variant == "struct_masked":
            slots = jnp.arange(self.max_pieces)
            fits_any = jax.vmap(lambda p: jnp.any(fits(p, order)))(state.inventory)
            obs["inventory_mask"] = fits_any & (slots < state.size)
            obs["cutting_mask"] = fits(piece, order) & (selected < state.size)
        return obs

    def action_space(self, params=None):
        return spaces.Dict({"piece_idx": spaces.Discrete(self.max_pieces), "cut_rotation": spaces.Discrete(2),
                            "cut_order": spaces.Discrete(2)})

    def observation_space(self, params=None):
        n, big = self.max_pieces, float(jnp.max(self.raw_piece))
        boxes = {"inventory": spaces.Box(0.0, big, (n, 2)), "inventory_size": spaces.Box(0.0, float(n), (1,)),
                 "ordered_piece": spaces.Box(0.0, big, (2,))}
        if self.variant != "flat":
            boxes.update({"selected_piece": spaces.Box(0.0, big, (2,)), ACTOR_ID: spaces.Discrete(2)})
        if self.variant == "struct_masked":
            boxes.update({"inventory_mask": spaces.Box(0, 1, (n,), bool), "cutting_mask": spaces.Box(0, 1, (2,), bool)})
        return spaces.Dict(boxes)


def make_cutting_2d(variant: str = "flat", max_pieces_in_inventory: int = 50, raw_piece_size=(4, 3),
                    demand=DEMAND, max_steps_in_episode: int = 180, **_ignored) -> EnvSpec:
    """The `env` factory of `env=tutorial_cutting_2d[_struct|_struct_masked]`."""
    env = Cutting2D(variant, max_pieces_in_inventory, tuple(raw_piece_size), tuple(map(tuple, demand)))
    return EnvSpec(env, CuttingParams(int(max_steps_in_episode)), env.name)


def greedy_policy_act(first_fit: bool = True):
    """A heuristic for the masked structured env, as `act(params, obs_batch, key, deterministic)`: cut the order
    from the oldest inventory piece it fits (`first_fit`) or from the smallest one (best fit), unrotated if it
    fits so, with cut order 0."""
    def choose(obs):
        mask = obs["inventory_mask"]
        area = obs["inventory"].prod(-1)
        score = jnp.where(mask, -jnp.arange(mask.shape[0]) if first_fit else -area, -jnp.inf)
        rotation = jnp.where(obs["cutting_mask"][0], 0, 1)
        return {"piece_idx": jnp.argmax(score), "cut_rotation": rotation, "cut_order": jnp.int32(0)}

    return lambda params, obs, key, deterministic: jax.vmap(choose)(obs)
