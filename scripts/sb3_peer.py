"""The peer line of `scripts/bench_learning.py`'s races: Stable-Baselines3 with RL Zoo's settings, trained until an
evaluation mean reaches a threshold. Prints one line: `steps <n> seconds <s>` (seconds since this process started,
imports included), or `steps none seconds <s>` when the budget ran out first.

    python scripts/sb3_peer.py sac Pendulum-v1 -200 --seed 0 [--eval-every 1000 --episodes 8 --budget 20000]

Needs `pip install stable-baselines3` (and torch); it runs in whichever Python has them (`--sb3-python` of
bench_learning.py)."""

import time

START = time.perf_counter()

import argparse  # noqa: E402

import gymnasium  # noqa: E402

# RL Zoo's hyperparameters (rl_zoo3/hyperparams/<algo>.yml); the rest are SB3's defaults.
ZOO = {("sac", "Pendulum-v1"): {"learning_rate": 1e-3},
       ("sac", "LunarLanderContinuous-v3"): {"batch_size": 256, "learning_rate": 7.3e-4, "buffer_size": 1_000_000,
                                            "ent_coef": "auto", "gamma": 0.99, "tau": 0.01, "train_freq": 1,
                                            "gradient_steps": 1, "learning_starts": 10000,
                                            "policy_kwargs": {"net_arch": [400, 300]}}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("algo")
    parser.add_argument("env")
    parser.add_argument("threshold", type=float)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-every", type=int, default=1000)
    parser.add_argument("--episodes", type=int, default=8)
    parser.add_argument("--budget", type=int, default=20000)
    args = parser.parse_args()
    import stable_baselines3
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.evaluation import evaluate_policy

    eval_env = gymnasium.make(args.env)
    reached = {}

    class StopAtThreshold(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps % args.eval_every:
                return True
            mean, _ = evaluate_policy(self.model, eval_env, n_eval_episodes=args.episodes, deterministic=True)
            if mean >= args.threshold:
                reached["steps"], reached["seconds"] = self.num_timesteps, time.perf_counter() - START
                return False
            return True

    algo = getattr(stable_baselines3, args.algo.upper())
    model = algo("MlpPolicy", args.env, seed=args.seed, verbose=0, **ZOO.get((args.algo, args.env), {}))
    model.learn(args.budget, callback=StopAtThreshold())
    print(f"steps {reached.get('steps', 'none')} seconds "
          f"{reached.get('seconds', time.perf_counter() - START):.1f}")


if __name__ == "__main__":
    main()
