"""TFDS builder: synthetic click-through data with the Criteo schema and a known teacher.

Nothing is downloaded: every example is `jaxemb.data.ctr.generate(spec, index)`, a pure function
of the config's `CTRSpec` and the example index, so the same config builds the same bytes on
every machine. Configs differ only in size (and drift); see `CONFIGS`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds

from jaxemb.data import ctr

_DESCRIPTION = """\
Synthetic click-through-rate data in the Criteo Kaggle schema: 13 dense count features and 26
categorical ids whose per-field cardinalities are Criteo's scaled by the config's `scale`, ids
Zipf-distributed, labels drawn from a seeded teacher (per-id biases, pairwise factorisation-machine
interactions of per-id latent vectors, linear dense terms; about 25% positives). `prob` is the
teacher's click probability: its AUC on a split is the oracle AUC. Generated locally by
`jaxemb.data.ctr.generate`; no third-party data. Licence: same as jaxemb.
"""

_FIELDS = ("scale", "num_train", "num_validation", "num_test", "seed", "zipf", "drift",
           "latent_dim", "sigma_w", "sigma_v", "scale_fm", "sigma_dense", "positive_rate")


@dataclasses.dataclass(eq=False)
class SyntheticCTRConfig(tfds.core.BuilderConfig):
  """A builder config holding one `CTRSpec`."""
  spec: ctr.CTRSpec = dataclasses.field(default_factory=ctr.CTRSpec)


def make_config(name: str, description: str = "", **spec) -> SyntheticCTRConfig:
  """A named config from `CTRSpec` keyword arguments."""
  return SyntheticCTRConfig(name=name, description=description or name, spec=ctr.CTRSpec(**spec))


CONFIGS = {
    "ci": make_config("ci", "CI-sized: ~34k rows in all tables, 100k train examples",
                      scale=1e-3, num_train=100_000, num_validation=10_000, num_test=20_000),
    "cpu": make_config("cpu", "CPU experiment: ~100k rows, 400k train examples",
                       scale=3e-3, num_train=400_000, num_validation=20_000, num_test=50_000),
    "drift": make_config("drift", "as ci, with popularity drift over the data",
                         scale=1e-3, num_train=100_000, num_validation=10_000, num_test=20_000,
                         drift=0.05),
    "full": make_config("full", "~10^7 table rows (0.3 x Criteo), 40M train examples",
                        scale=0.3, num_train=40_000_000, num_validation=1_000_000,
                        num_test=2_000_000),
}


class SyntheticCtr(tfds.core.GeneratorBasedBuilder):
  """Synthetic Criteo-schema CTR data with the teacher's probabilities."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = list(CONFIGS.values())

  def _info(self) -> tfds.core.DatasetInfo:
    spec = self.builder_config.spec
    return tfds.core.DatasetInfo(
        builder=self,
        description=_DESCRIPTION,
        features=tfds.features.FeaturesDict({
            "dense": tfds.features.Tensor(shape=(ctr.NUM_DENSE,), dtype=np.float32),
            "sparse": tfds.features.Tensor(shape=(ctr.NUM_SPARSE,), dtype=np.int32),
            "label": tfds.features.Scalar(dtype=np.int32),
            "prob": tfds.features.Scalar(dtype=np.float32),
            "index": tfds.features.Scalar(dtype=np.int64),
        }),
        supervised_keys=None,
        metadata=tfds.core.MetadataDict(
            cardinalities=list(spec.cardinalities),
            teacher_bias=ctr.teacher_bias(spec),
            **{k: getattr(spec, k) for k in _FIELDS}),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    del dl_manager  # generated, nothing to download
    return {split: self._generate_examples(split)
            for split in ("train", "validation", "test")}

  def _generate_examples(self, split: str) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    for chunk in ctr.generate_split(self.builder_config.spec, split):
      for i, index in enumerate(chunk["index"]):
        yield int(index), {"dense": chunk["dense"][i], "sparse": chunk["sparse"][i],
                           "label": chunk["label"][i], "prob": chunk["prob"][i], "index": index}
