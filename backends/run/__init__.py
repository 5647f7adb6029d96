"""The pieces of the shared CLI (backends/cli.py) that every backend uses.

    config.py       the options of `train`, their TOML form, and how they become a TrainConfig
    datasets.py     the training sets: toy distributions, sklearn's digits, MNIST IDX files
    checkpoint.py   safetensors checkpoints, atomic writes, finding the newest one
    metrics_log.py  metrics.jsonl and the progress bar's figures
    evaluate.py     sample quality figures (mode metrics, Wasserstein distances)
    plots.py        sample plots and loss curves (matplotlib, Agg)
    trainer.py      the training loop: host-side randomness, chunks of rounds, signals, NaN checks

Nothing here imports a framework: a backend is only ever used through backends.interface.Backend.
The formats are described in docs/cli.md.
"""
