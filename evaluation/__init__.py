"""Evaluation of generated expressive music: MGEval features with OA/KL, similarity, reports.

Modules: `notes` (scores as arrays, bar lines), `features` (MGEval), `expressive`
(velocity, microtiming), `similarity` (chroma, groove, pitch-class entropy), `overlap`
(intra/inter-set distances, KDE, OA, KL), `corpus` (parallel reading), `plots`, `report`
(`write_report`), and the command line in `__main__` (`python -m evaluation report ...`).
No module imports jax or a model.
"""
