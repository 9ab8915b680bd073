"""Evaluation of generated expressive music: MGEval features with OA/KL, similarity, reports.

Modules: `notes` (scores as arrays, bar lines), `features` (MGEval's features as this
project defines them), `mgeval` and `mgeval_overlap` (MGEval's own definitions and
integration, `--protocol=mgeval`), `expressive` (velocity, microtiming), `similarity`
(chroma, groove, pitch-class entropy), `overlap` (intra/inter-set distances, KDE, OA, KL),
`compare` (per-feature OA under either protocol, exclusions), `corpus` (parallel reading),
`plots`, `pianoroll`, `report` (`write_report`), and the command line in `__main__`
(`python -m evaluation report ...`).
No module imports jax or a model.
"""
