"""Neural architecture search of the imitation network with NNI (paper appendix B); the launcher is `nas/search.py`.

- `space`: the search space and the mapping from a tuner sample to `ImitationNetwork` / fusion arguments;
- `trial`: one trial, a short imitation-stage training through `ImitationModule` with a fresh `Trainer`;
- `reward`: the expected SSD speedup at the measured acceptance and the measured FLOPs;
- `export`: trial records and the config fragment that applies the best one to `python -m lightning_ssd fit`.
"""
