"""Quality ablations: does LSH attention learn as well as full attention?

Two tasks, both run by the ``quality`` suite (``python -m suites.run quality``):

- the duplication task of the Reformer paper (sec. 5, Table 2): sequences 0w0w, models
  trained with full attention or LSH-1/2/4 and each evaluated with full attention and
  LSH-1/2/4/8 (:mod:`suites.quality.data`);
- a byte-level language model on real text, the Reformer against a Transformer of equal
  parameter count, steps and tokens seen (:mod:`suites.quality.corpus`).

Training (:mod:`suites.quality.train`) saves checkpoints, so evaluating a trained model
with other hash rounds (:mod:`suites.quality.attention`) needs no retraining.
"""
