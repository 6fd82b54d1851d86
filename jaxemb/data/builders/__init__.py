"""TFDS dataset builders, one package per dataset (importing one registers it)."""
