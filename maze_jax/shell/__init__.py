"""The imperative shell: console table, TensorBoard, checkpoints and the host training loop."""
